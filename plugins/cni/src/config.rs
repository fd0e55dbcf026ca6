//! Network configuration: the keys every plugin shares, conflists, and the well-known
//! capability arguments (`runtimeConfig`) and `args`.
//!
//! Each plugin deserializes its own typed config from the same stdin; this module only holds
//! what the skeleton must understand to validate a request (version, name) and the shapes
//! that several plugins read (IPAM type, `runtimeConfig.portMappings`, `ipRanges`, `ips`,
//! `mac`, GC's valid attachments). Unknown keys are ignored here and passed through untouched
//! to delegates, as the spec requires.

use crate::error::{CniError, DECODING_FAILURE, INVALID_NETWORK_CONFIG};
use crate::result::Dns;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The keys every plugin config shares.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NetConf {
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type", default)]
    pub plugin_type: String,
    #[serde(default)]
    pub ipam: Option<IpamConf>,
    #[serde(default)]
    pub dns: Option<Dns>,
    #[serde(rename = "prevResult", default)]
    pub prev_result: Option<Value>,
    #[serde(rename = "runtimeConfig", default)]
    pub runtime_config: Option<Value>,
    #[serde(default)]
    pub args: Option<Value>,
    #[serde(rename = "cni.dev/valid-attachments", default)]
    pub valid_attachments: Option<Vec<Attachment>>,
    /// The name used by tag spec-v1.1.0; libcni sends both.
    #[serde(rename = "cni.dev/attachments", default)]
    pub attachments_legacy: Option<Vec<Attachment>>,
}

/// The `ipam` object: only `type` is common, the rest belongs to the IPAM plugin.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct IpamConf {
    #[serde(rename = "type", default)]
    pub ipam_type: String,
}

/// One `(containerID, ifname)` pair the runtime still uses (GC input).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// A configuration list as a runtime stores it on disk.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Conflist {
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    #[serde(rename = "cniVersions", default, skip_serializing_if = "Vec::is_empty")]
    pub cni_versions: Vec<String>,
    pub name: String,
    #[serde(rename = "disableCheck", default)]
    pub disable_check: bool,
    #[serde(rename = "disableGC", default)]
    pub disable_gc: bool,
    pub plugins: Vec<Value>,
}

/// `runtimeConfig.portMappings[]` (capability `portMappings`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct PortMapping {
    #[serde(rename = "hostPort")]
    pub host_port: i64,
    #[serde(rename = "containerPort")]
    pub container_port: i64,
    #[serde(default)]
    pub protocol: String,
    #[serde(rename = "hostIP", default)]
    pub host_ip: String,
}

/// One entry of a host-local range set (also the `ipRanges` capability).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct RangeConf {
    pub subnet: String,
    #[serde(
        rename = "rangeStart",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub range_start: Option<String>,
    #[serde(rename = "rangeEnd", default, skip_serializing_if = "Option::is_none")]
    pub range_end: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
}

/// The well-known capability arguments a runtime may put into `runtimeConfig`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RuntimeConfig {
    #[serde(rename = "portMappings", default)]
    pub port_mappings: Vec<PortMapping>,
    #[serde(rename = "ipRanges", default)]
    pub ip_ranges: Vec<Vec<RangeConf>>,
    #[serde(default)]
    pub ips: Vec<String>,
    #[serde(default)]
    pub mac: Option<String>,
}

/// `args.cni` (the conventions' replacement for `CNI_ARGS`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CniArgs {
    #[serde(default)]
    pub ips: Vec<String>,
    #[serde(default)]
    pub mac: Option<String>,
}

impl NetConf {
    /// Parses the shared keys. A wrongly typed shared key is a decoding error (code 6).
    pub fn from_value(v: &Value) -> Result<NetConf, CniError> {
        NetConf::deserialize(v).map_err(|e| {
            CniError::with_details(
                DECODING_FAILURE,
                "error unmarshall network config",
                e.to_string(),
            )
        })
    }

    /// `runtimeConfig` typed; a malformed capability is invalid config (code 7).
    pub fn runtime(&self) -> Result<RuntimeConfig, CniError> {
        match &self.runtime_config {
            None | Some(Value::Null) => Ok(RuntimeConfig::default()),
            Some(v) => RuntimeConfig::deserialize(v).map_err(|e| {
                CniError::with_details(
                    INVALID_NETWORK_CONFIG,
                    "invalid runtimeConfig",
                    e.to_string(),
                )
            }),
        }
    }

    /// `args.cni` typed.
    pub fn cni_args(&self) -> Result<CniArgs, CniError> {
        match self.args.as_ref().and_then(|a| a.get("cni")) {
            None | Some(Value::Null) => Ok(CniArgs::default()),
            Some(v) => CniArgs::deserialize(v).map_err(|e| {
                CniError::with_details(INVALID_NETWORK_CONFIG, "invalid args.cni", e.to_string())
            }),
        }
    }

    /// GC's attachments still in use: the union of both key spellings.
    pub fn gc_valid_attachments(&self) -> Vec<Attachment> {
        let mut out: Vec<Attachment> = Vec::new();
        for a in self
            .valid_attachments
            .iter()
            .chain(self.attachments_legacy.iter())
            .flatten()
        {
            if !out.contains(a) {
                out.push(a.clone());
            }
        }
        out
    }
}

/// Network names follow the container id rule: `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`.
pub fn validate_network_name(name: &str) -> Result<(), CniError> {
    if name.is_empty() {
        return Err(CniError::config("missing network name"));
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !(first_ok && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))) {
        return Err(CniError::with_details(
            INVALID_NETWORK_CONFIG,
            "invalid characters found in network name",
            name,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shared_keys_and_capabilities() {
        let v = json!({
            "cniVersion": "1.1.0", "name": "mynet", "type": "bridge",
            "ipam": {"type": "host-local", "subnet": "10.1.2.0/24"},
            "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
                               "mac": "02:00:00:00:00:01"},
            "args": {"cni": {"ips": ["10.1.2.88"]}},
            "cni.dev/valid-attachments": [{"containerID": "a", "ifname": "eth0"}],
            "cni.dev/attachments": [{"containerID": "a", "ifname": "eth0"}, {"containerID": "b", "ifname": "eth0"}],
            "unknown": {"kept": true}
        });
        let c = NetConf::from_value(&v).unwrap();
        assert_eq!(c.ipam.as_ref().unwrap().ipam_type, "host-local");
        let rc = c.runtime().unwrap();
        assert_eq!(rc.port_mappings[0].host_port, 8080);
        assert_eq!(rc.mac.as_deref(), Some("02:00:00:00:00:01"));
        assert_eq!(c.cni_args().unwrap().ips, vec!["10.1.2.88"]);
        assert_eq!(c.gc_valid_attachments().len(), 2);
    }

    #[test]
    fn wrong_types_name_the_field() {
        let e = NetConf::from_value(&json!({"name": 5})).unwrap_err();
        assert_eq!(e.code, 6);
        let c = NetConf::from_value(&json!({"name": "x", "runtimeConfig": {"portMappings": "no"}}))
            .unwrap();
        let e = c.runtime().unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.details.contains("invalid type"), "{}", e.details);
    }

    #[test]
    fn network_names() {
        assert_eq!(
            validate_network_name("").unwrap_err().msg,
            "missing network name"
        );
        assert!(validate_network_name("my-net_1.x").is_ok());
        assert_eq!(validate_network_name("../x").unwrap_err().code, 7);
    }
}
