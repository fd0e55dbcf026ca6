//! Who a rule belongs to, written into its comment.
//!
//! Rules of many containers share our chains, and DEL, CHECK and GC must find exactly one
//! attachment's rules, so every rule carries a comment naming its owner:
//! `<containerID> if=<ifname> net=<network>` (the network is left out where the caller has
//! none, e.g. the MAC spoof check). The reference plugins key rules by container id alone,
//! which makes GC of one network delete the rules of containers attached only to another;
//! keeping the network in the comment lets GC stay inside its own network.
//!
//! A comment holds at most 127 bytes, so each part is kept verbatim only when it is short
//! enough and made of name characters; otherwise it is replaced by `#` and 16 hex digits of
//! its SHA-256. The choice depends on the part alone, so GC can compute the network part of
//! any owner's comment, and hashed and verbatim parts never collide (`#` is not a name
//! character).

use sha2::{Digest, Sha256};

/// Longest verbatim container id (the usual 64 hex digits fit).
const MAX_ID: usize = 64;
const MAX_IFNAME: usize = 15;
/// 127 bytes minus the other parts at their maximum and the separators.
const MAX_NETWORK: usize = 39;

fn token(s: &str, max: usize) -> String {
    let plain = !s.is_empty()
        && s.len() <= max
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '@'));
    if plain {
        return s.to_owned();
    }
    let digest = Sha256::digest(s.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("#{hex}")
}

/// The attachment that owns a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub container_id: String,
    pub ifname: String,
    pub network: Option<String>,
}

impl Owner {
    pub fn new(container_id: &str, ifname: &str, network: Option<&str>) -> Owner {
        Owner {
            container_id: container_id.to_owned(),
            ifname: ifname.to_owned(),
            network: network.map(str::to_owned),
        }
    }

    /// The comment put on this owner's rules (at most 127 bytes).
    pub fn comment(&self) -> String {
        let mut s = format!(
            "{} if={}",
            token(&self.container_id, MAX_ID),
            token(&self.ifname, MAX_IFNAME)
        );
        if let Some(n) = &self.network {
            s.push_str(" net=");
            s.push_str(&network_token(n));
        }
        s
    }
}

/// The `net=` part of comments for `network`.
pub fn network_token(network: &str) -> String {
    token(network, MAX_NETWORK)
}

/// The `net=` part of an owner comment, if the comment has our shape.
pub fn comment_network(comment: &str) -> Option<&str> {
    let mut parts = comment.split(' ');
    let (_id, ifname, net) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !ifname.starts_with("if=") {
        return None;
    }
    net.strip_prefix("net=")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_when_short() {
        let o = Owner::new("3f2a9c", "eth0", Some("mynet"));
        assert_eq!(o.comment(), "3f2a9c if=eth0 net=mynet");
        assert_eq!(comment_network(&o.comment()), Some("mynet"));
        assert_eq!(Owner::new("c1", "eth0", None).comment(), "c1 if=eth0");
        assert_eq!(comment_network("c1 if=eth0"), None);
        assert_eq!(comment_network("something else entirely"), None);
    }

    #[test]
    fn long_parts_are_hashed_and_fit() {
        let id = "a".repeat(64);
        let net = "n".repeat(39);
        let c = Owner::new(&id, "a-long-ifname15", Some(&net)).comment();
        assert_eq!(c.len(), 127);
        assert!(c.ends_with(&net));
        let long = "n".repeat(40);
        let c = Owner::new(&"b".repeat(300), "eth0\"x", Some(&long)).comment();
        assert!(c.len() <= 127, "{c}");
        assert_eq!(comment_network(&c), Some(network_token(&long).as_str()));
        assert!(network_token(&long).starts_with('#'));
        assert_ne!(network_token(&long), network_token(&"n".repeat(41)));
    }
}
