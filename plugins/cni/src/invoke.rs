//! Executing delegated plugins (IPAM, or bridge/host-local from the `twill` meta plugin).
//!
//! Like the reference `pkg/invoke`: the delegate is found by its `type` in `CNI_PATH`, gets the
//! caller's environment with `CNI_COMMAND` replaced, and the config bytes on stdin. A
//! delegate's error object is passed back unchanged (same code), so the runtime sees the real
//! cause; a delegate that prints no parsable error becomes code 999 naming the plugin.

use crate::env::{Command, Env};
use crate::error::{CniError, INTERNAL};
use crate::result::CniResult;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command as Process, Stdio};

/// Finds the executable for plugin `plugin_type` in the `CNI_PATH` directories.
pub fn find_plugin(plugin_type: &str, path: &[String]) -> Result<PathBuf, CniError> {
    if plugin_type.is_empty() || plugin_type.contains('/') {
        return Err(CniError::config(format!(
            "invalid plugin type {plugin_type:?}: must be a file name"
        )));
    }
    for dir in path {
        let candidate = PathBuf::from(dir).join(plugin_type);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(CniError::internal(format!(
        "failed to find plugin {plugin_type:?} in path {path:?}"
    )))
}

/// Runs `plugin_type` with verb `command` and returns its stdout.
pub fn exec(
    plugin_type: &str,
    command: Command,
    env: &Env,
    stdin: &[u8],
) -> Result<Vec<u8>, CniError> {
    let bin = find_plugin(plugin_type, &env.path)?;
    let mut proc = Process::new(&bin);
    for (k, v) in crate::env::to_env_map(env) {
        proc.env(k, v);
    }
    proc.env("CNI_COMMAND", command.as_str())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = proc
        .spawn()
        .map_err(|e| CniError::internal(format!("exec delegate plugin {}: {e}", bin.display())))?;
    if let Some(mut w) = child.stdin.take() {
        // A delegate that exits without reading stdin closes the pipe; its exit status tells.
        let _ = w.write_all(stdin);
    }
    let out = child.wait_with_output().map_err(|e| {
        CniError::internal(format!("wait for delegate plugin {}: {e}", bin.display()))
    })?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    match serde_json::from_slice::<CniError>(&out.stdout) {
        Ok(e) => Err(e),
        Err(_) => Err(CniError::with_details(
            INTERNAL,
            format!("delegate plugin {plugin_type} failed ({})", out.status),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        )),
    }
}

/// Delegated ADD: returns the delegate's result read in `version`.
pub fn delegate_add(
    plugin_type: &str,
    env: &Env,
    stdin: &[u8],
    version: &str,
) -> Result<CniResult, CniError> {
    let out = exec(plugin_type, Command::Add, env, stdin)?;
    CniResult::from_json(&out, version)
}

/// Delegated DEL, CHECK, STATUS or GC: success or the delegate's error.
pub fn delegate(
    plugin_type: &str,
    command: Command,
    env: &Env,
    stdin: &[u8],
) -> Result<(), CniError> {
    exec(plugin_type, command, env, stdin).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_paths_as_types() {
        assert_eq!(find_plugin("../x", &[]).unwrap_err().code, 7);
        assert_eq!(find_plugin("", &[]).unwrap_err().code, 7);
    }

    #[test]
    fn missing_plugin_names_the_path() {
        let e = find_plugin("no-such-plugin", &["/nonexistent".into()]).unwrap_err();
        assert!(e.msg.contains("no-such-plugin") && e.msg.contains("/nonexistent"));
    }
}
