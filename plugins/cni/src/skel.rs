//! The plugin skeleton: turns environment + stdin into one typed call and prints the outcome.
//!
//! Modelled on the reference `pkg/skel`: a plugin's `main` is one call to [`main`] with a type
//! implementing [`Plugin`]. [`run`] takes the environment lookup, stdin and the output streams
//! as arguments so the whole contract (codes, version checks, output format) is unit-tested
//! without spawning a process. The order of checks follows the reference so runtimes see the
//! same first error: environment, then stdin JSON, network name, version, verb-specific version
//! gates, the "own netns" guard, and only then the plugin.

use crate::config::{NetConf, validate_network_name};
use crate::env::{Command, Env};
use crate::error::{CniError, DECODING_FAILURE, INCOMPATIBLE_VERSION, INVALID_NETNS, IO_FAILURE};
use crate::result::CniResult;
use crate::version::{self, Version};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::io::{Read, Write};

/// One invocation, validated.
#[derive(Debug, Clone)]
pub struct Request {
    pub env: Env,
    /// stdin exactly as received (delegates get these bytes).
    pub stdin: Vec<u8>,
    /// stdin parsed.
    pub value: Value,
    /// The keys every plugin shares.
    pub conf: NetConf,
    /// The config's `cniVersion` (`0.1.0` when absent); results are printed in it.
    pub version: String,
}

impl Request {
    /// The plugin's own config type. Errors name the field (serde's message) with code 7.
    pub fn config<T: DeserializeOwned>(&self) -> Result<T, CniError> {
        T::deserialize(&self.value).map_err(|e| {
            CniError::with_details(
                crate::error::INVALID_NETWORK_CONFIG,
                format!("invalid {} network config", self.conf.plugin_type),
                e.to_string(),
            )
        })
    }

    /// `prevResult` read into the result model, if present and non-null.
    pub fn prev_result(&self) -> Result<Option<CniResult>, CniError> {
        match &self.conf.prev_result {
            None | Some(Value::Null) => Ok(None),
            Some(v) => CniResult::from_value(v, &self.version).map(Some),
        }
    }

    /// Builds a request without a process (tests, and plugins that delegate to themselves).
    pub fn new(env: Env, stdin: Vec<u8>) -> Result<Request, CniError> {
        let value: Value = serde_json::from_slice(&stdin).map_err(|e| {
            CniError::new(
                DECODING_FAILURE,
                format!("error unmarshall network config: {e}"),
            )
        })?;
        let conf = NetConf::from_value(&value)?;
        let version = if conf.cni_version.is_empty() {
            version::IMPLICIT.to_owned()
        } else {
            conf.cni_version.clone()
        };
        Ok(Request {
            env,
            stdin,
            value,
            conf,
            version,
        })
    }
}

/// What a CNI plugin implements. Verbs a plugin does not support keep the defaults, which
/// succeed silently like the reference skeleton's nil functions.
pub trait Plugin {
    /// First line of the "about" text printed when `CNI_COMMAND` is unset.
    fn about(&self) -> String;
    fn add(&self, req: &Request) -> Result<CniResult, CniError>;
    fn del(&self, req: &Request) -> Result<(), CniError>;
    fn check(&self, req: &Request) -> Result<(), CniError>;
    fn status(&self, _req: &Request) -> Result<(), CniError> {
        Ok(())
    }
    fn gc(&self, _req: &Request) -> Result<(), CniError> {
        Ok(())
    }
}

/// Runs one invocation and returns the exit status. Nothing is printed on stdout except the
/// result (ADD, VERSION) or one error object.
pub fn run(
    plugin: &dyn Plugin,
    lookup: impl Fn(&str) -> Option<String>,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> i32 {
    match dispatch(plugin, lookup, stdin, stdout, stderr) {
        Ok(()) => 0,
        Err(e) => {
            let _ = stdout.write_all(e.to_json().as_bytes());
            let _ = stdout.flush();
            1
        }
    }
}

fn dispatch(
    plugin: &dyn Plugin,
    lookup: impl Fn(&str) -> Option<String>,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Result<(), CniError> {
    let Some(env) = Env::from_lookup(&lookup)? else {
        let _ = writeln!(
            stderr,
            "{}\nCNI protocol versions supported: {}",
            plugin.about(),
            version::SUPPORTED.join(", ")
        );
        return Ok(());
    };
    if env.command == Command::Version {
        return write_out(stdout, &version::version_info_json());
    }
    let mut buf = Vec::new();
    stdin
        .read_to_end(&mut buf)
        .map_err(|e| CniError::new(IO_FAILURE, format!("error reading from stdin: {e}")))?;
    let req = Request::new(env, buf)?;
    validate_network_name(&req.conf.name)?;
    version::ensure_supported(&req.version)?;
    let min = match req.env.command {
        Command::Check => Some(Version::V0_4_0),
        Command::Gc | Command::Status => Some(Version::V1_1_0),
        _ => None,
    };
    if let Some(min) = min
        && Version::parse(&req.version)? < min
    {
        return Err(CniError::new(
            INCOMPATIBLE_VERSION,
            format!("config version does not allow {}", req.env.command.as_str()),
        ));
    }
    if matches!(
        req.env.command,
        Command::Add | Command::Check | Command::Del
    ) && is_own_netns(&req.env.netns)
    {
        return Err(CniError::new(
            INVALID_NETNS,
            "plugin's netns and netns from CNI_NETNS should not be the same",
        ));
    }
    match req.env.command {
        Command::Add => {
            let result = plugin.add(&req)?;
            write_out(stdout, &result.to_json(&req.version)?)
        }
        Command::Del => plugin.del(&req),
        Command::Check => plugin.check(&req),
        Command::Status => plugin.status(&req),
        Command::Gc => plugin.gc(&req),
        Command::Version => Ok(()),
    }
}

fn write_out(stdout: &mut dyn Write, s: &str) -> Result<(), CniError> {
    stdout
        .write_all(s.as_bytes())
        .and_then(|_| stdout.flush())
        .map_err(|e| CniError::new(IO_FAILURE, format!("error writing result: {e}")))
}

/// True when `path` names the network namespace this process is in.
fn is_own_netns(path: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    if path.is_empty() {
        return false;
    }
    match (
        std::fs::metadata(path),
        std::fs::metadata("/proc/self/ns/net"),
    ) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Entry point for a plugin executable: runs with the process environment and exits.
pub fn main(plugin: &dyn Plugin) -> ! {
    let code = run(
        plugin,
        |k| std::env::var(k).ok(),
        &mut std::io::stdin().lock(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::IpConfig;
    use std::cell::RefCell;

    #[derive(Default)]
    struct Fake {
        calls: RefCell<Vec<&'static str>>,
    }

    impl Plugin for Fake {
        fn about(&self) -> String {
            "CNI fake plugin".into()
        }
        fn add(&self, _req: &Request) -> Result<CniResult, CniError> {
            self.calls.borrow_mut().push("add");
            Ok(CniResult {
                ips: vec![IpConfig {
                    address: "10.0.0.2/24".parse().map_err(|_| CniError::internal("x"))?,
                    ..Default::default()
                }],
                ..Default::default()
            })
        }
        fn del(&self, _req: &Request) -> Result<(), CniError> {
            self.calls.borrow_mut().push("del");
            Ok(())
        }
        fn check(&self, _req: &Request) -> Result<(), CniError> {
            self.calls.borrow_mut().push("check");
            Ok(())
        }
    }

    fn call(
        cmd: &str,
        stdin: &str,
        extra: &[(&str, &str)],
    ) -> (i32, String, String, Vec<&'static str>) {
        let p = Fake::default();
        let mut vars: Vec<(String, String)> = vec![
            ("CNI_COMMAND".into(), cmd.into()),
            ("CNI_CONTAINERID".into(), "c1".into()),
            ("CNI_NETNS".into(), "/run/netns/does-not-exist".into()),
            ("CNI_IFNAME".into(), "eth0".into()),
            ("CNI_PATH".into(), "/usr/lib/cni".into()),
        ];
        for (k, v) in extra {
            vars.retain(|(n, _)| n != k);
            if *v != "<unset>" {
                vars.push((k.to_string(), v.to_string()));
            }
        }
        let mut out = Vec::new();
        let mut err = Vec::new();
        let code = run(
            &p,
            |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()),
            &mut stdin.as_bytes(),
            &mut out,
            &mut err,
        );
        let calls = p.calls.borrow().clone();
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
            calls,
        )
    }

    fn code_of(out: &str) -> u64 {
        let v: Value = serde_json::from_str(out).unwrap();
        v["code"].as_u64().unwrap()
    }

    #[test]
    fn version_ignores_stdin() {
        let (code, out, _, _) = call("VERSION", "garbage", &[]);
        assert_eq!(code, 0);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["cniVersion"], "1.1.0");
        assert_eq!(v["supportedVersions"].as_array().unwrap().len(), 7);
    }

    #[test]
    fn about_when_no_command() {
        let (code, out, err, _) = call("", "", &[("CNI_COMMAND", "<unset>")]);
        assert_eq!((code, out.as_str()), (0, ""));
        assert!(err.starts_with("CNI fake plugin\nCNI protocol versions supported: 0.1.0"));
    }

    #[test]
    fn add_prints_result_in_config_version() {
        let (code, out, _, calls) = call("ADD", r#"{"cniVersion":"0.4.0","name":"n"}"#, &[]);
        assert_eq!(code, 0, "{out}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["cniVersion"], "0.4.0");
        assert_eq!(v["ips"][0]["version"], "4");
        assert_eq!(calls, vec!["add"]);
    }

    #[test]
    fn error_codes_in_order() {
        assert_eq!(code_of(&call("ADD", "not json", &[]).1), 6);
        assert_eq!(code_of(&call("ADD", r#"{"cniVersion":"1.0.0"}"#, &[]).1), 7);
        assert_eq!(
            code_of(&call("ADD", r#"{"cniVersion":"9.9.9","name":"n"}"#, &[]).1),
            1
        );
        assert_eq!(
            code_of(&call("ADD", r#"{"cniVersion":"1.0","name":"n"}"#, &[]).1),
            1
        );
        assert_eq!(
            code_of(&call("CHECK", r#"{"cniVersion":"0.3.1","name":"n"}"#, &[]).1),
            1
        );
        assert_eq!(
            code_of(&call("GC", r#"{"cniVersion":"1.0.0","name":"n"}"#, &[]).1),
            1
        );
        assert_eq!(
            code_of(&call("STATUS", r#"{"cniVersion":"1.0.0","name":"n"}"#, &[]).1),
            1
        );
        assert_eq!(
            code_of(&call("ADD", "{}", &[("CNI_IFNAME", "<unset>")]).1),
            4
        );
        assert_eq!(code_of(&call("ADD", "{}", &[("CNI_IFNAME", "a/b")]).1), 4);
        assert_eq!(code_of(&call("ADD", "{}", &[("CNI_CONTAINERID", "")]).1), 3);
        assert_eq!(
            code_of(&call("ADD", "{}", &[("CNI_CONTAINERID", "-bad")]).1),
            4
        );
    }

    #[test]
    fn missing_version_means_0_1_0() {
        let (code, out, _, _) = call("ADD", r#"{"name":"n"}"#, &[]);
        assert_eq!(code, 0, "{out}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["cniVersion"], "0.1.0");
        assert_eq!(v["ip4"]["ip"], "10.0.0.2/24");
    }

    #[test]
    fn unimplemented_verbs_succeed_silently() {
        let (code, out, _, _) = call("GC", r#"{"cniVersion":"1.1.0","name":"n"}"#, &[]);
        assert_eq!((code, out.as_str()), (0, ""));
    }

    #[test]
    fn own_netns_is_refused() {
        let (code, out, _, calls) = call(
            "ADD",
            r#"{"cniVersion":"1.1.0","name":"n"}"#,
            &[("CNI_NETNS", "/proc/self/ns/net")],
        );
        assert_eq!(code, 1);
        assert_eq!(code_of(&out), 8);
        assert!(calls.is_empty());
    }
}
