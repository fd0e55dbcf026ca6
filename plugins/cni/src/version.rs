//! CNI spec versions.
//!
//! Versions are matched as exact strings against [`SUPPORTED`], like the reference skeleton
//! (`pkg/version/reconcile.go`): `"1.0"` or `"1.2.0"` are refused even though they parse. A
//! config without `cniVersion` is `0.1.0` (`pkg/types/create`). Ordering comparisons (is
//! CHECK allowed, is GC allowed) use the parsed triple.

use crate::error::{CniError, DECODING_FAILURE, INCOMPATIBLE_VERSION};
use std::cmp::Ordering;

/// The version this library speaks natively and prints for VERSION.
pub const CURRENT: &str = "1.1.0";

/// Every version a Twill plugin accepts in its config, oldest first.
pub const SUPPORTED: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// The version assumed when a config carries no `cniVersion`.
pub const IMPLICIT: &str = "0.1.0";

/// A parsed `major.minor.patch` version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    pub const V0_3_0: Version = Version(0, 3, 0);
    pub const V0_4_0: Version = Version(0, 4, 0);
    pub const V1_0_0: Version = Version(1, 0, 0);
    pub const V1_1_0: Version = Version(1, 1, 0);

    /// Parses `major.minor.patch`; anything else is a decoding error (code 6), like the
    /// skeleton's semver check.
    pub fn parse(s: &str) -> Result<Version, CniError> {
        let bad = || {
            CniError::with_details(
                DECODING_FAILURE,
                format!("invalid version {s:?}"),
                "the version must be major.minor.patch",
            )
        };
        let mut parts = s.split('.');
        let mut next = || -> Result<u32, CniError> {
            parts
                .next()
                .ok_or_else(bad)?
                .parse::<u32>()
                .map_err(|_| bad())
        };
        let v = Version(next()?, next()?, next()?);
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(v)
    }

    pub fn cmp_str(a: &str, b: &str) -> Option<Ordering> {
        Some(Version::parse(a).ok()?.cmp(&Version::parse(b).ok()?))
    }
}

/// Fails with code 1 unless `v` is one of [`SUPPORTED`], naming the supported list like the
/// reference (`config is "X", plugin supports [...]`).
pub fn ensure_supported(v: &str) -> Result<(), CniError> {
    if SUPPORTED.contains(&v) {
        return Ok(());
    }
    let list: Vec<String> = SUPPORTED.iter().map(|s| format!("{s:?}")).collect();
    Err(CniError::with_details(
        INCOMPATIBLE_VERSION,
        "incompatible CNI versions",
        format!("config is {v:?}, plugin supports [{}]", list.join(" ")),
    ))
}

/// The VERSION verb's answer.
pub fn version_info_json() -> String {
    serde_json::json!({ "cniVersion": CURRENT, "supportedVersions": SUPPORTED }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders() {
        assert!(Version::parse("0.4.0").unwrap() < Version::parse("1.0.0").unwrap());
        assert!(Version::parse("0.3.1").unwrap() < Version::V0_4_0);
        assert_eq!(Version::parse("1.1.0").unwrap(), Version::V1_1_0);
        assert!(Version::parse("1.0").is_err());
        assert!(Version::parse("1.0.0.0").is_err());
        assert!(Version::parse("a.b.c").is_err());
    }

    #[test]
    fn exact_string_match() {
        assert!(ensure_supported("1.1.0").is_ok());
        assert!(ensure_supported("0.2.0").is_ok());
        let e = ensure_supported("9.9.9").unwrap_err();
        assert_eq!(e.code, 1);
        assert!(e.details.contains("\"1.1.0\""), "{}", e.details);
        assert!(ensure_supported("1.0").is_err());
    }
}
