//! Errors of the netlink layer.
//!
//! Every error names the object and the operation (`add address 10.1.2.1/24 to br-test`)
//! and, when the kernel or a system call refused, the errno in the words Go's `syscall`
//! package uses (`file exists`, `no such device`), so our messages read like the reference
//! plugins' and callers can still branch on the errno ([`NetlinkError::errno`],
//! [`NetlinkError::is_not_found`], [`NetlinkError::is_exists`]) instead of on text.

use std::fmt;

/// An error from a netlink request, a namespace operation or a sysctl access.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The kernel (a netlink NACK) or a system call refused with `errno`.
    #[error("{what}: {}", Errno(*errno))]
    Os { what: String, errno: i32 },
    /// The kernel answered something we could not decode or did not expect.
    #[error("{what}: {msg}")]
    Protocol { what: String, msg: String },
    /// A dump kept being interrupted by concurrent changes (`NLM_F_DUMP_INTR`).
    #[error("{what}: dump interrupted {attempts} times by concurrent changes")]
    DumpInterrupted { what: String, attempts: u32 },
    /// Waiting for a state the object did not reach.
    #[error("{what}: {msg}")]
    Timeout { what: String, msg: String },
    /// Invalid argument detected before anything was sent.
    #[error("{what}: {msg}")]
    Invalid { what: String, msg: String },
}

impl NetlinkError {
    pub(crate) fn os(what: impl Into<String>, errno: i32) -> Self {
        NetlinkError::Os {
            what: what.into(),
            errno: errno.abs(),
        }
    }

    pub(crate) fn io(what: impl Into<String>, e: &std::io::Error) -> Self {
        match e.raw_os_error() {
            Some(errno) => Self::os(what, errno),
            None => NetlinkError::Protocol {
                what: what.into(),
                msg: e.to_string(),
            },
        }
    }

    pub(crate) fn nix(what: impl Into<String>, e: nix::errno::Errno) -> Self {
        Self::os(what, e as i32)
    }

    pub(crate) fn protocol(what: impl Into<String>, msg: impl fmt::Display) -> Self {
        NetlinkError::Protocol {
            what: what.into(),
            msg: msg.to_string(),
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, msg: impl fmt::Display) -> Self {
        NetlinkError::Invalid {
            what: what.into(),
            msg: msg.to_string(),
        }
    }

    /// The errno, when the kernel or a system call refused.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Os { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    /// The object does not exist (`ENODEV` for links, `ENOENT` for paths and routes,
    /// `EADDRNOTAVAIL` for addresses, `ESRCH` for routes).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.errno(),
            Some(libc::ENODEV | libc::ENOENT | libc::EADDRNOTAVAIL | libc::ESRCH)
        )
    }

    /// The object already exists (`EEXIST`).
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }
}

/// An errno rendered like Go's `syscall.Errno`: lowercase, no "(os error N)".
pub struct Errno(pub i32);

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let desc = match self.0 {
            // nix says "... on transport endpoint"; Go and glibc do not.
            libc::EOPNOTSUPP => "Operation not supported",
            e => nix::errno::Errno::from_raw(e).desc(),
        };
        if desc.is_empty() || desc == "Unknown errno" {
            return write!(f, "errno {}", self.0);
        }
        let mut chars = desc.chars();
        if let Some(first) = chars.next() {
            // "File exists" -> "file exists"; acronyms such as "I/O error" keep their case.
            let second_upper = desc.chars().nth(1).is_some_and(|c| c.is_ascii_uppercase());
            if second_upper || desc.starts_with("I/O") {
                write!(f, "{desc}")?;
            } else {
                write!(f, "{}{}", first.to_ascii_lowercase(), chars.as_str())?;
            }
        }
        Ok(())
    }
}

/// Result alias of this module.
pub type Result<T, E = NetlinkError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_like_the_reference() {
        let e = NetlinkError::os("add address 10.1.2.1/24 to br-test", -libc::EEXIST);
        assert_eq!(
            e.to_string(),
            "add address 10.1.2.1/24 to br-test: file exists"
        );
        assert!(e.is_exists());
        let e = NetlinkError::os("get link eth9", libc::ENODEV);
        assert_eq!(e.to_string(), "get link eth9: no such device");
        assert!(e.is_not_found());
        assert_eq!(Errno(libc::EIO).to_string(), "I/O error");
    }
}
