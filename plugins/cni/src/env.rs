//! The invocation environment (`CNI_*` variables) and its validation.
//!
//! Validation mirrors the reference skeleton (`pkg/skel/skel.go`, `pkg/utils/utils.go`) so a
//! runtime sees the same codes from us as from the reference plugins: a missing required
//! variable is code 4 naming every missing one, a malformed container id or interface name is
//! code 4, an unknown verb is code 4. One deliberate refinement: a `CNI_CONTAINERID` that is
//! *set but empty* is code 3 (`missing containerID`, the spec's "container unknown"), while an
//! unset one is code 4 like any other missing variable; the Go skeleton cannot tell the two
//! apart because `os.Getenv` returns "" for both.

use crate::error::{CniError, INVALID_ENV, UNKNOWN_CONTAINER};
use std::collections::HashMap;

/// The CNI verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl Command {
    pub fn parse(s: &str) -> Result<Command, CniError> {
        Ok(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            other => {
                return Err(CniError::new(
                    INVALID_ENV,
                    format!("unknown CNI_COMMAND: {other}"),
                ));
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Status => "STATUS",
            Command::Gc => "GC",
        }
    }
}

/// The validated environment of one invocation. Fields a verb does not require may be empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    pub command: Command,
    pub container_id: String,
    /// Path of the container's network namespace; may be empty for DEL.
    pub netns: String,
    pub ifname: String,
    /// `CNI_ARGS` as ordered key/value pairs.
    pub args: Vec<(String, String)>,
    /// `CNI_PATH` split on `:`.
    pub path: Vec<String>,
}

impl Env {
    /// Reads `CNI_*` from a variable lookup (injected so tests need no process).
    /// Returns `Ok(None)` when `CNI_COMMAND` is absent (the caller prints the "about" text).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<Env>, CniError> {
        let Some(cmd) = get("CNI_COMMAND").filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let command = Command::parse(&cmd)?;
        if command == Command::Version {
            return Ok(Some(Env {
                command,
                container_id: String::new(),
                netns: String::new(),
                ifname: String::new(),
                args: Vec::new(),
                path: Vec::new(),
            }));
        }
        let per_verb = matches!(command, Command::Add | Command::Del | Command::Check);
        let required: &[&str] = match command {
            Command::Add | Command::Check => {
                &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"]
            }
            Command::Del => &["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"],
            Command::Gc | Command::Status | Command::Version => &["CNI_PATH"],
        };
        let raw_id = get("CNI_CONTAINERID");
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|name| match get(name) {
                None => true,
                // Set-but-empty container ids get their own code 3 below.
                Some(v) => v.is_empty() && *name != "CNI_CONTAINERID",
            })
            .collect();
        if !missing.is_empty() {
            return Err(CniError::new(
                INVALID_ENV,
                format!("required env variables [{}] missing", missing.join(",")),
            ));
        }
        let container_id = raw_id.unwrap_or_default();
        let ifname = get("CNI_IFNAME").unwrap_or_default();
        if per_verb {
            validate_container_id(&container_id)?;
            validate_ifname(&ifname)?;
        }
        let args = parse_cni_args(&get("CNI_ARGS").unwrap_or_default())?;
        let path = get("CNI_PATH")
            .unwrap_or_default()
            .split(':')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(Some(Env {
            command,
            container_id,
            netns: get("CNI_NETNS").unwrap_or_default(),
            ifname,
            args,
            path,
        }))
    }

    /// Reads the process environment.
    pub fn from_process() -> Result<Option<Env>, CniError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// The value of a `CNI_ARGS` key, if present.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Container ids: non-empty, `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`.
pub fn validate_container_id(id: &str) -> Result<(), CniError> {
    if id.is_empty() {
        return Err(CniError::new(UNKNOWN_CONTAINER, "missing containerID"));
    }
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !(first_ok && rest_ok) {
        return Err(CniError::with_details(
            INVALID_ENV,
            "invalid characters in containerID",
            id,
        ));
    }
    Ok(())
}

/// Interface names: 1..=15 bytes, not `.`/`..`, no `/`, `:` or whitespace.
pub fn validate_ifname(name: &str) -> Result<(), CniError> {
    let bad = |msg: &str, details: &str| Err(CniError::with_details(INVALID_ENV, msg, details));
    if name.is_empty() {
        return bad("interface name is empty", "");
    }
    if name.len() > 15 {
        return bad(
            "interface name is too long",
            "interface name should be less than 16 characters",
        );
    }
    if name == "." || name == ".." {
        return bad("interface name is . or ..", "");
    }
    for c in name.chars() {
        if c == '/' || c == ':' || c.is_whitespace() {
            return bad(
                "interface name contains / or : or whitespace characters",
                "",
            );
        }
    }
    Ok(())
}

/// Parses `K=V;K2=V2`. Keys and values may not be empty of `=`.
pub fn parse_cni_args(s: &str) -> Result<Vec<(String, String)>, CniError> {
    let mut out = Vec::new();
    for pair in s.split(';').filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(CniError::with_details(
                INVALID_ENV,
                "invalid CNI_ARGS pair",
                format!("{pair:?} is not KEY=VALUE"),
            ));
        };
        out.push((k.to_owned(), v.to_owned()));
    }
    Ok(out)
}

/// Environment map used by tests and by delegation.
pub fn to_env_map(env: &Env) -> HashMap<&'static str, String> {
    let mut m = HashMap::new();
    m.insert("CNI_COMMAND", env.command.as_str().to_owned());
    m.insert("CNI_CONTAINERID", env.container_id.clone());
    m.insert("CNI_NETNS", env.netns.clone());
    m.insert("CNI_IFNAME", env.ifname.clone());
    let args: Vec<String> = env.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
    m.insert("CNI_ARGS", args.join(";"));
    m.insert("CNI_PATH", env.path.join(":"));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    const ADD: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/run/netns/t1"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
        ("CNI_ARGS", "IP=10.1.2.3;K8S_POD_NAME=x"),
    ];

    fn with(over: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut v: Vec<_> = ADD
            .iter()
            .filter(|(k, _)| !over.iter().any(|(o, _)| o == k))
            .copied()
            .collect();
        v.extend(over.iter().filter(|(_, v)| *v != "<unset>").copied());
        v
    }

    #[test]
    fn parses_add() {
        let e = Env::from_lookup(lookup(ADD)).unwrap().unwrap();
        assert_eq!(e.command, Command::Add);
        assert_eq!(e.path, vec!["/opt/cni/bin", "/usr/lib/cni"]);
        assert_eq!(e.arg("IP"), Some("10.1.2.3"));
    }

    #[test]
    fn no_command_is_about() {
        assert_eq!(Env::from_lookup(|_| None).unwrap(), None);
    }

    #[test]
    fn unknown_command_is_code_4() {
        let e = Env::from_lookup(lookup(&with(&[("CNI_COMMAND", "FOO")]))).unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (4, "unknown CNI_COMMAND: FOO"));
    }

    #[test]
    fn missing_variables_are_listed() {
        let v = with(&[("CNI_IFNAME", "<unset>"), ("CNI_NETNS", "")]);
        let e = Env::from_lookup(lookup(&v)).unwrap_err();
        assert_eq!(e.code, 4);
        assert_eq!(
            e.msg,
            "required env variables [CNI_NETNS,CNI_IFNAME] missing"
        );
    }

    #[test]
    fn del_does_not_need_netns() {
        let v = with(&[("CNI_COMMAND", "DEL"), ("CNI_NETNS", "<unset>")]);
        assert!(Env::from_lookup(lookup(&v)).unwrap().is_some());
    }

    #[test]
    fn gc_and_status_need_only_path() {
        for cmd in ["GC", "STATUS"] {
            let v = [("CNI_COMMAND", cmd), ("CNI_PATH", "/x")];
            assert!(Env::from_lookup(lookup(&v)).unwrap().is_some());
            let v = [("CNI_COMMAND", cmd)];
            assert_eq!(Env::from_lookup(lookup(&v)).unwrap_err().code, 4);
        }
    }

    #[test]
    fn container_id_rules() {
        let e = Env::from_lookup(lookup(&with(&[("CNI_CONTAINERID", "")]))).unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (3, "missing containerID"));
        let e = Env::from_lookup(lookup(&with(&[("CNI_CONTAINERID", "<unset>")]))).unwrap_err();
        assert_eq!(e.code, 4);
        let e = Env::from_lookup(lookup(&with(&[("CNI_CONTAINERID", "-bad")]))).unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (4, "invalid characters in containerID")
        );
        assert!(validate_container_id("a1_b.c-d").is_ok());
        assert!(validate_container_id("a b").is_err());
    }

    #[test]
    fn ifname_rules() {
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "abcdefghijklmnop"] {
            assert_eq!(validate_ifname(bad).unwrap_err().code, 4, "{bad:?}");
        }
        assert!(validate_ifname("abcdefghijklmno").is_ok());
        assert!(validate_ifname("eth0").is_ok());
    }

    #[test]
    fn cni_args_must_be_pairs() {
        assert!(parse_cni_args("A").is_err());
        assert_eq!(parse_cni_args("").unwrap(), vec![]);
        assert_eq!(
            parse_cni_args("A=1;B=").unwrap(),
            vec![("A".into(), "1".into()), ("B".into(), "".into())]
        );
    }
}
