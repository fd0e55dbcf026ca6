//! Which plugin directory a suite runs against.
//!
//! By default the suites run our freshly built plugins (`target/<profile>`, next to the test
//! binary). `TWILL_E2E_PLUGIN_DIR=/usr/lib/cni` points them at the reference plugins instead,
//! which is how a suite proves it can fail for the right reasons and how it was developed before
//! our plugins existed. A missing plugin is a loud failure naming the fix, never a skip.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Environment variable that overrides the plugin directory under test.
pub const PLUGIN_DIR_ENV: &str = "TWILL_E2E_PLUGIN_DIR";

/// `$TWILL_E2E_PLUGIN_DIR` when set and non-empty, else our built binaries
/// ([`twill_testutil::bin_dir`]).
pub fn dir_under_test() -> PathBuf {
    match std::env::var_os(PLUGIN_DIR_ENV) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => twill_testutil::bin_dir(),
    }
}

/// The names in `plugins` that are not executable files in `dir`.
pub fn missing(dir: &Path, plugins: &[&str]) -> Vec<String> {
    plugins
        .iter()
        .filter(|p| {
            let meta = std::fs::metadata(dir.join(p));
            !matches!(meta, Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .map(|p| p.to_string())
        .collect()
}

/// Fails the test when `dir` lacks one of `plugins`, saying how to get them.
pub fn require(dir: &Path, plugins: &[&str]) {
    let missing = missing(dir, plugins);
    assert!(
        missing.is_empty(),
        "plugins {missing:?} missing in {}: build ours with `cargo build --workspace` (make test does), \
         or set {PLUGIN_DIR_ENV}=/usr/lib/cni to run against the reference plugins \
         (apt-get install containernetworking-plugins)",
        dir.display()
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn missing_lists_absent_and_non_executable_plugins() {
        let dir = twill_testutil::TempDir::new("plugins");
        std::fs::write(dir.path().join("bridge"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            dir.path().join("bridge"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(dir.path().join("portmap"), "").unwrap();
        std::fs::set_permissions(
            dir.path().join("portmap"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        assert_eq!(
            missing(dir.path(), &["bridge", "portmap", "host-local"]),
            vec!["portmap".to_string(), "host-local".to_string()]
        );
    }
}
