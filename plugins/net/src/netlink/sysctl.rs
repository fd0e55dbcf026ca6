//! Sysctls under `/proc/sys`, in this or another network namespace.
//!
//! The `net.*` tree is per namespace and is resolved in the namespace of the thread that
//! opens the file, so writing another namespace's sysctl means opening the file from a
//! thread inside it: [`write`] and [`read`] with `Some(ns)` run on a short-lived thread via
//! [`Netns::run`]. Keys are paths relative to `/proc/sys` with `/` separators
//! (`net/ipv4/conf/eth0/arp_notify`): the dotted form cannot name interfaces whose names
//! contain dots (`br0.100`).

use super::error::{NetlinkError, Result};
use super::ns::Netns;
use std::path::PathBuf;

fn path_of(key: &str) -> Result<PathBuf> {
    let bad = key.is_empty()
        || key.starts_with('/')
        || key
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(NetlinkError::invalid(
            format!("sysctl {key:?}"),
            "must be a relative path below /proc/sys",
        ));
    }
    Ok(PathBuf::from("/proc/sys").join(key))
}

fn write_here(key: &str, value: &str) -> Result<()> {
    let p = path_of(key)?;
    std::fs::write(&p, value.as_bytes())
        .map_err(|e| NetlinkError::io(format!("write sysctl {key}={value}"), &e))
}

fn read_here(key: &str) -> Result<String> {
    let p = path_of(key)?;
    std::fs::read_to_string(&p)
        .map(|s| s.trim_end().to_owned())
        .map_err(|e| NetlinkError::io(format!("read sysctl {key}"), &e))
}

/// Writes `value` to sysctl `key` in `ns` (the caller's namespace when `None`).
pub fn write(ns: Option<&Netns>, key: &str, value: &str) -> Result<()> {
    match ns {
        None => write_here(key, value),
        Some(ns) => ns.run(|| write_here(key, value))?,
    }
}

/// Reads sysctl `key` in `ns` (the caller's namespace when `None`), without the newline.
pub fn read(ns: Option<&Netns>, key: &str) -> Result<String> {
    match ns {
        None => read_here(key),
        Some(ns) => ns.run(|| read_here(key))?,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_below_proc_sys() {
        assert_eq!(
            path_of("net/ipv4/conf/br0.100/forwarding").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/conf/br0.100/forwarding")
        );
        for bad in ["", "/etc/passwd", "net/../../etc", "net//x", "net/./x"] {
            assert!(path_of(bad).is_err(), "{bad}");
        }
    }
}
