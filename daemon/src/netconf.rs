//! The cluster network config stored at `<prefix>/config`: flannel's net-conf.json schema.
//!
//! We read flannel's keys unchanged (`Network`, `SubnetLen`, `SubnetMin`, `SubnetMax`,
//! `Backend`) so an existing flannel etcd store, or a flannel ConfigMap, works as is. Defaults
//! and the validation rules follow flannel's `pkg/subnet/config.go` (SubnetLen 24 for networks
//! of /22 or larger, first subnet skipped so the network address is never a node subnet,
//! SubnetMin/Max aligned on SubnetLen), but every error names the field and its value, which
//! flannel's messages do not always do. Parsing is pure so it is fuzzable and unit-tested.

use ipnetwork::Ipv4Network;
use serde::Deserialize;
use serde_json::Value;
use std::net::Ipv4Addr;

/// A config error naming the key and the problem.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("network config: {field}: {problem}")]
pub struct ConfigError {
    pub field: &'static str,
    pub problem: String,
}

fn err(field: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        field,
        problem: problem.into(),
    }
}

/// Which backend connects the nodes, with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendConfig {
    Vxlan(VxlanOptions),
    HostGw,
}

impl BackendConfig {
    /// The `BackendType` string stored in leases (flannel's spelling).
    pub fn type_name(&self) -> &'static str {
        match self {
            BackendConfig::Vxlan(_) => "vxlan",
            BackendConfig::HostGw => "host-gw",
        }
    }
}

/// VXLAN options (`Backend` keys of flannel's vxlan backend).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanOptions {
    /// VXLAN network identifier; device name is `twill.<vni>`.
    pub vni: u32,
    /// UDP destination port.
    pub port: u16,
    /// Device MTU; `None` = underlay MTU minus 50.
    pub mtu: Option<u32>,
    /// Plain routes for peers on the same L2 segment.
    pub direct_routing: bool,
}

/// The validated cluster network config with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    pub network: Ipv4Network,
    pub subnet_len: u8,
    /// First node subnet (network address of it).
    pub subnet_min: Ipv4Addr,
    /// Last node subnet (network address of it).
    pub subnet_max: Ipv4Addr,
    pub backend: BackendConfig,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(rename = "Network")]
    network: Option<String>,
    #[serde(rename = "SubnetLen")]
    subnet_len: Option<u8>,
    #[serde(rename = "SubnetMin")]
    subnet_min: Option<String>,
    #[serde(rename = "SubnetMax")]
    subnet_max: Option<String>,
    #[serde(rename = "Backend")]
    backend: Option<Value>,
    // flannel keys we accept and ignore for IPv4-only operation.
    #[serde(rename = "EnableIPv4")]
    _enable_ipv4: Option<bool>,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: Option<bool>,
    #[serde(rename = "IPv6Network")]
    _ipv6_network: Option<String>,
}

impl NetConfig {
    /// Parses and validates net-conf.json text.
    pub fn parse(text: &str) -> Result<NetConfig, ConfigError> {
        let raw: Raw = serde_json::from_str(text).map_err(|e| err("(document)", e.to_string()))?;
        if raw.enable_ipv6 == Some(true) {
            return Err(err("EnableIPv6", "IPv6 pod networks are not supported yet"));
        }
        let network_text = raw.network.ok_or_else(|| err("Network", "missing"))?;
        let network: Ipv4Network = network_text.parse().map_err(|e| {
            err(
                "Network",
                format!("{network_text:?} is not an IPv4 CIDR: {e}"),
            )
        })?;
        if network.network() != network.ip() {
            return Err(err(
                "Network",
                format!(
                    "{network_text:?} has host bits set (did you mean {}/{}?)",
                    network.network(),
                    network.prefix()
                ),
            ));
        }
        let plen = network.prefix();
        let subnet_len = match raw.subnet_len {
            Some(0) | None => {
                if plen > 28 {
                    return Err(err(
                        "Network",
                        format!("{network} is too small: the smallest useful network is a /28"),
                    ));
                } else if plen <= 22 {
                    24
                } else {
                    plen + 2
                }
            }
            Some(l) => {
                if l > 30 {
                    return Err(err("SubnetLen", format!("{l} is too long: at most 30")));
                }
                if l < plen + 2 {
                    return Err(err(
                        "SubnetLen",
                        format!(
                            "{l} leaves {network} fewer than four subnets: use at least {}",
                            plen + 2
                        ),
                    ));
                }
                l
            }
        };
        let size = 1u32 << (32 - subnet_len);
        let mask = u32::MAX << (32 - subnet_len);
        let base = u32::from(network.network());
        let last = u32::from(network.broadcast());
        let bound = |field: &'static str,
                     v: Option<String>,
                     default: u32|
         -> Result<Ipv4Addr, ConfigError> {
            let Some(text) = v else {
                return Ok(Ipv4Addr::from(default));
            };
            let ip: Ipv4Addr = text
                .parse()
                .map_err(|e| err(field, format!("{text:?} is not an IPv4 address: {e}")))?;
            if !network.contains(ip) {
                return Err(err(field, format!("{ip} is not in Network {network}")));
            }
            if u32::from(ip) & mask != u32::from(ip) {
                return Err(err(
                    field,
                    format!("{ip} is not on a /{subnet_len} boundary"),
                ));
            }
            Ok(ip)
        };
        let subnet_min = bound("SubnetMin", raw.subnet_min, base + size)?;
        // flannel: SubnetMax defaults to the last subnet of the network (Network.Next() - size).
        let subnet_max = bound("SubnetMax", raw.subnet_max, last & mask)?;
        if subnet_min > subnet_max {
            return Err(err(
                "SubnetMin",
                format!("{subnet_min} is above SubnetMax {subnet_max}"),
            ));
        }
        let backend = parse_backend(raw.backend)?;
        Ok(NetConfig {
            network,
            subnet_len,
            subnet_min,
            subnet_max,
            backend,
        })
    }

    /// How many node subnets the config allows.
    pub fn capacity(&self) -> u32 {
        let size = 1u32 << (32 - self.subnet_len);
        (u32::from(self.subnet_max) - u32::from(self.subnet_min)) / size + 1
    }
}

fn parse_backend(v: Option<Value>) -> Result<BackendConfig, ConfigError> {
    let Some(v) = v else {
        // flannel's default backend is udp; ours is vxlan, the fastest one without setup.
        return Ok(BackendConfig::Vxlan(VxlanOptions {
            vni: 1,
            port: 8472,
            mtu: None,
            direct_routing: false,
        }));
    };
    let obj = v
        .as_object()
        .ok_or_else(|| err("Backend", "must be an object"))?;
    let ty = obj
        .get("Type")
        .and_then(Value::as_str)
        .ok_or_else(|| err("Backend.Type", "missing (vxlan or host-gw)"))?;
    let allowed: &[&str] = match ty {
        "vxlan" => &[
            "Type",
            "VNI",
            "Port",
            "MTU",
            "DirectRouting",
            "GBP",
            "Learning",
            "MacPrefix",
        ],
        "host-gw" => &["Type"],
        other => {
            return Err(err(
                "Backend.Type",
                format!("{other:?} is not supported: use vxlan or host-gw"),
            ));
        }
    };
    if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(err(
            "Backend",
            format!("unknown key {k:?} for backend {ty}"),
        ));
    }
    let num = |field: &'static str, key: &str, max: u64| -> Result<Option<u64>, ConfigError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => {
                let n = v
                    .as_u64()
                    .ok_or_else(|| err(field, format!("{v} is not a non-negative integer")))?;
                if n > max {
                    return Err(err(field, format!("{n} is out of range (at most {max})")));
                }
                Ok(Some(n))
            }
        }
    };
    match ty {
        "host-gw" => Ok(BackendConfig::HostGw),
        _ => {
            let vni = num("Backend.VNI", "VNI", 0xff_ffff)?.unwrap_or(1) as u32;
            let port = num("Backend.Port", "Port", 65535)?.unwrap_or(8472) as u16;
            if port == 0 {
                return Err(err("Backend.Port", "0 is not a port"));
            }
            let mtu = num("Backend.MTU", "MTU", 65535)?.map(|m| m as u32);
            if let Some(m) = mtu
                && m < 576
            {
                return Err(err(
                    "Backend.MTU",
                    format!("{m} is below the IPv4 minimum of 576"),
                ));
            }
            let direct_routing = match obj.get("DirectRouting") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(v) => {
                    return Err(err(
                        "Backend.DirectRouting",
                        format!("{v} is not a boolean"),
                    ));
                }
            };
            Ok(BackendConfig::Vxlan(VxlanOptions {
                vni,
                port,
                mtu,
                direct_routing,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flannel_defaults() {
        let c =
            NetConfig::parse(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#).unwrap();
        assert_eq!(c.subnet_len, 24);
        assert_eq!(c.subnet_min, Ipv4Addr::new(10, 244, 1, 0));
        assert_eq!(c.subnet_max, Ipv4Addr::new(10, 244, 255, 0));
        assert_eq!(c.capacity(), 255);
        assert_eq!(
            c.backend,
            BackendConfig::Vxlan(VxlanOptions {
                vni: 1,
                port: 8472,
                mtu: None,
                direct_routing: false
            })
        );
    }

    #[test]
    fn small_networks_split_in_four() {
        let c = NetConfig::parse(r#"{"Network":"10.0.0.0/26"}"#).unwrap();
        assert_eq!(c.subnet_len, 28);
        assert_eq!(c.subnet_min, Ipv4Addr::new(10, 0, 0, 16));
        assert_eq!(c.subnet_max, Ipv4Addr::new(10, 0, 0, 48));
        assert_eq!(
            NetConfig::parse(r#"{"Network":"10.0.0.0/29"}"#)
                .unwrap_err()
                .field,
            "Network"
        );
    }

    #[test]
    fn explicit_bounds_and_backend_options() {
        let c = NetConfig::parse(
            r#"{"Network":"10.5.0.0/16","SubnetLen":26,"SubnetMin":"10.5.1.0","SubnetMax":"10.5.1.192",
                "Backend":{"Type":"vxlan","VNI":42,"Port":4789,"MTU":1400,"DirectRouting":true}}"#,
        )
        .unwrap();
        assert_eq!(c.capacity(), 4);
        assert_eq!(
            c.backend,
            BackendConfig::Vxlan(VxlanOptions {
                vni: 42,
                port: 4789,
                mtu: Some(1400),
                direct_routing: true
            })
        );
        let c =
            NetConfig::parse(r#"{"Network":"10.5.0.0/16","Backend":{"Type":"host-gw"}}"#).unwrap();
        assert_eq!(c.backend.type_name(), "host-gw");
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"{}"#, "Network"),
            (r#"{"Network":"10.0.0.1/16"}"#, "Network"),
            (r#"{"Network":"banana"}"#, "Network"),
            (r#"{"Network":"10.0.0.0/16","SubnetLen":17}"#, "SubnetLen"),
            (r#"{"Network":"10.0.0.0/16","SubnetLen":31}"#, "SubnetLen"),
            (
                r#"{"Network":"10.0.0.0/16","SubnetMin":"10.1.0.0"}"#,
                "SubnetMin",
            ),
            (
                r#"{"Network":"10.0.0.0/16","SubnetMax":"10.0.3.7"}"#,
                "SubnetMax",
            ),
            (
                r#"{"Network":"10.0.0.0/16","SubnetMin":"10.0.9.0","SubnetMax":"10.0.3.0"}"#,
                "SubnetMin",
            ),
            (
                r#"{"Network":"10.0.0.0/16","Backend":{"Type":"udpp"}}"#,
                "Backend.Type",
            ),
            (r#"{"Network":"10.0.0.0/16","Backend":{}}"#, "Backend.Type"),
            (
                r#"{"Network":"10.0.0.0/16","Backend":{"Type":"vxlan","VNI":-1}}"#,
                "Backend.VNI",
            ),
            (
                r#"{"Network":"10.0.0.0/16","Backend":{"Type":"vxlan","Port":70000}}"#,
                "Backend.Port",
            ),
            (
                r#"{"Network":"10.0.0.0/16","Backend":{"Type":"vxlan","DirectRouting":"yes"}}"#,
                "Backend.DirectRouting",
            ),
            (
                r#"{"Network":"10.0.0.0/16","Backend":{"Type":"host-gw","VNI":1}}"#,
                "Backend",
            ),
            (r#"{"Network":"10.0.0.0/16","Bogus":1}"#, "(document)"),
        ];
        for (text, field) in cases {
            let e = NetConfig::parse(text).unwrap_err();
            assert_eq!(e.field, field, "{text}: {e}");
        }
    }
}
