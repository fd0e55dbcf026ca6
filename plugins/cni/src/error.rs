//! CNI error results.
//!
//! A plugin that fails prints one JSON object on stdout and exits non-zero. The reference
//! skeleton (`pkg/skel`) prints `{"code","msg","details"}` without `cniVersion`; runtimes
//! (libcni, podman, containerd) only read `code` and `msg`, so we print the same shape and
//! add `cniVersion` only when the caller asks for it. Codes are the spec's table (SPEC.md
//! "Error" section) plus the skeleton's 8 and 999.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Incompatible CNI version.
pub const INCOMPATIBLE_VERSION: u32 = 1;
/// Unsupported field in network configuration; the message names the key and value.
pub const UNSUPPORTED_FIELD: u32 = 2;
/// Container unknown or does not exist.
pub const UNKNOWN_CONTAINER: u32 = 3;
/// Invalid necessary environment variables; the message names them.
pub const INVALID_ENV: u32 = 4;
/// I/O failure, e.g. reading stdin.
pub const IO_FAILURE: u32 = 5;
/// Failed to decode content (JSON).
pub const DECODING_FAILURE: u32 = 6;
/// Invalid network config.
pub const INVALID_NETWORK_CONFIG: u32 = 7;
/// The netns given is the plugin's own (skeleton-only code).
pub const INVALID_NETNS: u32 = 8;
/// Transient: try again later.
pub const TRY_AGAIN_LATER: u32 = 11;
/// STATUS: the plugin cannot serve ADD now.
pub const NOT_AVAILABLE: u32 = 50;
/// STATUS: not available, and existing containers may have limited connectivity.
pub const NOT_AVAILABLE_LIMITED: u32 = 51;
/// Anything a plugin did not classify (skeleton's `ErrInternal`).
pub const INTERNAL: u32 = 999;

/// The error a plugin reports to its runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(code: u32, msg: impl Into<String>, details: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// Invalid network configuration (code 7) naming what is wrong.
    pub fn config(msg: impl Into<String>) -> Self {
        Self::new(INVALID_NETWORK_CONFIG, msg)
    }

    /// A failure of the plugin's own work (code 999), e.g. a netlink or filesystem error.
    pub fn internal(msg: impl Into<String>) -> Self {
        Self::new(INTERNAL, msg)
    }

    /// The error as the JSON object printed on stdout.
    pub fn to_json(&self) -> String {
        // Serializing a struct of strings and an integer cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_else(|_| {
            format!(
                "{{\"code\":{},\"msg\":\"{}\"}}",
                self.code,
                self.msg.escape_default()
            )
        })
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.details.is_empty() {
            write!(f, "{}", self.msg)
        } else {
            write!(f, "{}: {}", self.msg, self.details)
        }
    }
}

impl std::error::Error for CniError {}

/// Folds the errors of steps that keep going past each other (DEL, GC) into one outcome:
/// none is success, one is returned as is (keeping its code), several become one internal
/// error listing them all.
pub fn collect(mut errors: Vec<CniError>) -> std::result::Result<(), CniError> {
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(CniError::internal(
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        )),
    }
}

/// Result alias used throughout the CNI crates.
pub type Result<T> = std::result::Result<T, CniError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_omits_empty_details() {
        let e = CniError::new(7, "missing network name");
        let v: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"code":7,"msg":"missing network name"})
        );
    }

    #[test]
    fn collect_keeps_a_single_code_and_lists_several() {
        assert!(collect(vec![]).is_ok());
        assert_eq!(
            collect(vec![CniError::new(11, "later")]).unwrap_err().code,
            11
        );
        let e = collect(vec![CniError::new(7, "a"), CniError::new(11, "b")]).unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (INTERNAL, "a; b"));
    }

    #[test]
    fn error_json_keeps_details() {
        let e = CniError::with_details(1, "incompatible CNI versions", "config is \"9.9.9\"");
        let v: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(v["details"], "config is \"9.9.9\"");
        assert_eq!(
            e.to_string(),
            "incompatible CNI versions: config is \"9.9.9\""
        );
    }
}
