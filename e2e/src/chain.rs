//! A minimal CNI runtime: what each plugin of a conflist receives, in which order, timed.
//!
//! The request derivation follows SPEC §3 as libcni implements it: each plugin object gets the
//! list's `cniVersion` and `name`, loses `capabilities`, and gains `runtimeConfig` holding only
//! the capability arguments it declared; ADD runs the plugins in order, each receiving the
//! previous result as `prevResult`; DEL runs them in reverse, each receiving the final ADD
//! result. Building the request is a pure function so it is unit-tested here; running it goes
//! through [`twill_testutil::Invocation`], which execs the plugin exactly as a runtime does
//! (environment + stdin) inside the test's host namespace. The measured time of a call is the
//! wall clock from spawning the plugin process to reaping it, the cost a runtime pays.

use serde_json::{Map, Value};
use std::path::Path;
use std::time::{Duration, Instant};
use twill_testutil::{Invocation, Netns};

/// Why a chain call failed.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("conflist {field}: {problem}")]
    Conflist { field: String, problem: String },
    #[error("{command} {plugin} for container {container_id} failed: {output}")]
    PluginFailed {
        command: String,
        plugin: String,
        container_id: String,
        output: String,
    },
    #[error("{command} {plugin} for container {container_id} printed no JSON result: {source}")]
    BadResult {
        command: String,
        plugin: String,
        container_id: String,
        source: serde_json::Error,
    },
}

/// One container attachment, as the runtime describes it to every plugin.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub container_id: String,
    /// Path of the container's network namespace (`CNI_NETNS`).
    pub netns: String,
    pub ifname: String,
    /// Capability arguments the runtime offers (e.g. `{"portMappings": [...]}`); each plugin
    /// receives the subset named in its `capabilities`.
    pub capability_args: Value,
}

/// A value and the wall-clock time it took.
#[derive(Debug, Clone)]
pub struct Timed<T> {
    pub value: T,
    pub elapsed: Duration,
}

/// The stdin of plugin `index` of conflist `list` (SPEC §3 "Deriving request configuration").
pub fn request_config(
    list: &Value,
    index: usize,
    capability_args: &Value,
    prev_result: Option<&Value>,
) -> Result<Value, ChainError> {
    let version = list_str(list, "cniVersion")?;
    let name = list_str(list, "name")?;
    let plugin = plugins(list)?
        .get(index)
        .and_then(Value::as_object)
        .ok_or_else(|| conflist_error(&format!("plugins[{index}]"), "missing or not an object"))?;
    let mut conf: Map<String, Value> = plugin.clone();
    let capabilities = conf.remove("capabilities");
    conf.insert("cniVersion".into(), Value::String(version.into()));
    conf.insert("name".into(), Value::String(name.into()));
    let runtime: Map<String, Value> = capabilities
        .as_ref()
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(_, enabled)| enabled.as_bool() == Some(true))
        .filter_map(|(key, _)| capability_args.get(key).map(|v| (key.clone(), v.clone())))
        .collect();
    if !runtime.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(runtime));
    }
    if let Some(prev) = prev_result {
        conf.insert("prevResult".into(), prev.clone());
    }
    Ok(Value::Object(conf))
}

/// A conflist bound to a plugin directory and a host namespace.
#[derive(Debug, Clone, Copy)]
pub struct Chain<'a> {
    pub list: &'a Value,
    /// Where the plugin executables are; also `CNI_PATH`.
    pub plugin_dir: &'a Path,
    /// The namespace the plugins run in (the test's "host").
    pub host: &'a Netns,
}

impl Chain<'_> {
    /// ADD through every plugin in order; returns the final result and the summed time of the
    /// plugin processes.
    pub fn add(&self, att: &Attachment) -> Result<Timed<Value>, ChainError> {
        let mut prev: Option<Value> = None;
        let mut elapsed = Duration::ZERO;
        for index in 0..plugins(self.list)?.len() {
            let conf = request_config(self.list, index, &att.capability_args, prev.as_ref())?;
            let call = self.call("ADD", index, att, &conf)?;
            elapsed += call.elapsed;
            prev = Some(call.value);
        }
        let value = prev.ok_or_else(|| conflist_error("plugins", "empty"))?;
        Ok(Timed { value, elapsed })
    }

    /// DEL through every plugin in reverse order, each given `final_result` as `prevResult`;
    /// returns the summed time of the plugin processes.
    pub fn del(&self, att: &Attachment, final_result: &Value) -> Result<Duration, ChainError> {
        let mut elapsed = Duration::ZERO;
        for index in (0..plugins(self.list)?.len()).rev() {
            let conf = request_config(self.list, index, &att.capability_args, Some(final_result))?;
            elapsed += self.call("DEL", index, att, &conf)?.elapsed;
        }
        Ok(elapsed)
    }

    fn call(
        &self,
        command: &str,
        index: usize,
        att: &Attachment,
        conf: &Value,
    ) -> Result<Timed<Value>, ChainError> {
        let plugin = conf.get("type").and_then(Value::as_str).ok_or_else(|| {
            conflist_error(&format!("plugins[{index}].type"), "missing or not a string")
        })?;
        let cni_path = self.plugin_dir.to_string_lossy();
        let invocation = Invocation::new(
            &self.plugin_dir.join(plugin),
            command,
            &att.container_id,
            &att.netns,
            &att.ifname,
            &cni_path,
        )
        .in_ns(self.host);
        let stdin = conf.to_string();
        let start = Instant::now();
        let out = invocation.run(&stdin);
        let elapsed = start.elapsed();
        if !out.success {
            return Err(ChainError::PluginFailed {
                command: command.into(),
                plugin: plugin.into(),
                container_id: att.container_id.clone(),
                output: format!("{}{}", out.stdout.trim(), out.stderr.trim()),
            });
        }
        let value = if out.stdout.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&out.stdout).map_err(|source| ChainError::BadResult {
                command: command.into(),
                plugin: plugin.into(),
                container_id: att.container_id.clone(),
                source,
            })?
        };
        Ok(Timed { value, elapsed })
    }
}

fn plugins(list: &Value) -> Result<&Vec<Value>, ChainError> {
    list.get("plugins")
        .and_then(Value::as_array)
        .ok_or_else(|| conflist_error("plugins", "missing or not a list"))
}

fn list_str<'a>(list: &'a Value, key: &str) -> Result<&'a str, ChainError> {
    list.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| conflist_error(key, "missing or not a string"))
}

fn conflist_error(field: &str, problem: &str) -> ChainError {
    ChainError::Conflist {
        field: field.into(),
        problem: problem.into(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn list() -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": "net1",
            "plugins": [
                {"type": "bridge", "bridge": "br0", "ipam": {"type": "host-local"}},
                {"type": "portmap", "capabilities": {"portMappings": true, "bandwidth": false}, "snat": true}
            ]
        })
    }

    #[test]
    fn first_plugin_gets_version_and_name_and_no_prev_result() {
        let conf = request_config(&list(), 0, &json!({}), None).unwrap();
        assert_eq!(
            conf,
            json!({"type": "bridge", "bridge": "br0", "ipam": {"type": "host-local"},
                   "cniVersion": "1.0.0", "name": "net1"})
        );
    }

    #[test]
    fn capabilities_become_runtime_config_for_declared_keys_only() {
        let args = json!({
            "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
            "bandwidth": {"ingressRate": 1},
            "ips": ["10.0.0.9/24"]
        });
        let prev = json!({"cniVersion": "1.0.0", "ips": []});
        let conf = request_config(&list(), 1, &args, Some(&prev)).unwrap();
        assert_eq!(
            conf,
            json!({"type": "portmap", "snat": true, "cniVersion": "1.0.0", "name": "net1",
                   "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]},
                   "prevResult": prev})
        );
    }

    #[test]
    fn declared_capability_without_argument_adds_no_runtime_config() {
        let conf = request_config(&list(), 1, &json!({}), None).unwrap();
        assert!(conf.get("runtimeConfig").is_none());
        assert!(conf.get("capabilities").is_none());
    }

    #[test]
    fn malformed_conflists_name_the_field() {
        let err =
            request_config(&json!({"name": "n", "plugins": []}), 0, &json!({}), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "conflist cniVersion: missing or not a string"
        );
        let err = request_config(&list(), 2, &json!({}), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "conflist plugins[2]: missing or not an object"
        );
    }
}
