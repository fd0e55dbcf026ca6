//! `resolvConf`: a resolv.conf file read into the result's `dns`, as the reference does.
//!
//! Same rules as the reference `dns.go`: comment (`#`, `;`) and blank lines are skipped, a
//! line needs a keyword and a value, `nameserver` appends one server, `domain` sets the
//! domain (the last one wins), `search` and `options` append all their words. Parsing is pure;
//! [`read`] only adds the file access.

use std::path::Path;
use twill_cni::Dns;

/// Parses resolv.conf text.
pub fn parse(text: &str) -> Dns {
    let mut dns = Dns::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 2 {
            continue;
        }
        let rest = fields[1..].iter().map(|s| (*s).to_owned());
        match fields[0] {
            "nameserver" => dns.nameservers.push(fields[1].to_owned()),
            "domain" => dns.domain = fields[1].to_owned(),
            "search" => dns.search.extend(rest),
            "options" => dns.options.extend(rest),
            _ => {}
        }
    }
    dns
}

/// Reads and parses the file at `path`.
pub fn read(path: &Path) -> std::io::Result<Dns> {
    let bytes = std::fs::read(path)?;
    Ok(parse(&String::from_utf8_lossy(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_the_reference() {
        let d = parse(
            "# comment\n; other\n\nnameserver 192.0.2.0\nnameserver   192.0.2.1 ignored\n\
             domain a.example\ndomain example.com\nsearch a.example b.example\n\
             options ndots:5 rotate\noptions edns0\nbogus\nsortlist 10.0.0.0\n",
        );
        assert_eq!(d.nameservers, ["192.0.2.0", "192.0.2.1"]);
        assert_eq!(d.domain, "example.com");
        assert_eq!(d.search, ["a.example", "b.example"]);
        assert_eq!(d.options, ["ndots:5", "rotate", "edns0"]);
        assert!(parse("").is_empty());
    }
}
