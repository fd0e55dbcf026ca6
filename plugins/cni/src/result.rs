//! ADD results for every spec version, and conversion between them.
//!
//! Plugins build one model, [`CniResult`], which is the 1.1.0 result (the superset), and the
//! skeleton renders it in the config's `cniVersion` with [`CniResult::to_json`]. Incoming
//! `prevResult`s in any version are read back into the same model with
//! [`CniResult::from_json`]. Field names and omission rules follow the reference library's Go
//! structs (`pkg/types/100`, `040`, `020`): `dns` is always printed (a Go struct is never
//! omitted), `ips[].interface` is an index into `interfaces` and is omitted when unknown, and
//! the pre-1.0 formats carry `version` on every IP. Results for 0.1.0/0.2.0 can hold one
//! address per family, so rendering a richer result in them is an error, as in the reference.

use crate::error::{CniError, DECODING_FAILURE, INCOMPATIBLE_VERSION};
use crate::version::Version;
use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::net::IpAddr;

/// One interface created or touched by the plugin chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Path of the namespace the interface lives in; empty for host interfaces.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
    #[serde(
        default,
        rename = "socketPath",
        skip_serializing_if = "String::is_empty"
    )]
    pub socket_path: String,
    #[serde(default, rename = "pciID", skip_serializing_if = "String::is_empty")]
    pub pci_id: String,
}

/// An address assigned to an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    /// Address with the prefix length of its subnet, e.g. `10.1.2.2/24`.
    pub address: IpNetwork,
    pub gateway: Option<IpAddr>,
    /// Index into [`CniResult::interfaces`]; `None` in IPAM results.
    pub interface: Option<usize>,
}

/// A route to be present in the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    #[serde(with = "net_str")]
    pub dst: IpNetwork,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u32>,
}

impl Default for Route {
    fn default() -> Self {
        Route {
            dst: IpNetwork::V4(ipnetwork::Ipv4Network::from(
                std::net::Ipv4Addr::UNSPECIFIED,
            )),
            gw: None,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }
}

impl Default for IpConfig {
    fn default() -> Self {
        IpConfig {
            address: IpNetwork::V4(ipnetwork::Ipv4Network::from(
                std::net::Ipv4Addr::UNSPECIFIED,
            )),
            gateway: None,
            interface: None,
        }
    }
}

/// DNS settings; every field optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        *self == Dns::default()
    }
}

/// The result of ADD, independent of the version it is printed in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

mod net_str {
    use ipnetwork::IpNetwork;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(n: &IpNetwork, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(n)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<IpNetwork, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|e| serde::de::Error::custom(format!("{s:?}: {e}")))
    }
}

fn is_v4(n: &IpNetwork) -> bool {
    matches!(n, IpNetwork::V4(_))
}

fn ip_json(ip: &IpConfig, with_version: bool) -> Value {
    let mut m = Map::new();
    if with_version {
        m.insert(
            "version".into(),
            json!(if is_v4(&ip.address) { "4" } else { "6" }),
        );
    }
    if let Some(i) = ip.interface {
        m.insert("interface".into(), json!(i));
    }
    m.insert("address".into(), json!(ip.address.to_string()));
    if let Some(gw) = ip.gateway {
        m.insert("gateway".into(), json!(gw.to_string()));
    }
    Value::Object(m)
}

fn decode_err(what: &str, e: impl std::fmt::Display) -> CniError {
    CniError::with_details(
        DECODING_FAILURE,
        format!("failed to decode {what}"),
        e.to_string(),
    )
}

impl CniResult {
    /// Renders the result in spec version `version` (which must be supported).
    pub fn to_value(&self, version: &str) -> Result<Value, CniError> {
        let v = Version::parse(version)?;
        if v < Version::V0_3_0 {
            return self.to_legacy_value(version);
        }
        let with_ip_version = v < Version::V1_0_0;
        let mut m = Map::new();
        m.insert("cniVersion".into(), json!(version));
        if !self.interfaces.is_empty() {
            m.insert("interfaces".into(), json!(self.interfaces));
        }
        if !self.ips.is_empty() {
            let ips: Vec<Value> = self
                .ips
                .iter()
                .map(|ip| ip_json(ip, with_ip_version))
                .collect();
            m.insert("ips".into(), Value::Array(ips));
        }
        if !self.routes.is_empty() {
            let routes: Vec<Value> = self
                .routes
                .iter()
                .map(|r| {
                    if v < Version::V1_1_0 {
                        // Route attributes beyond dst/gw arrived with 1.1.0.
                        let mut o = Map::new();
                        o.insert("dst".into(), json!(r.dst.to_string()));
                        if let Some(gw) = r.gw {
                            o.insert("gw".into(), json!(gw.to_string()));
                        }
                        Value::Object(o)
                    } else {
                        json!(r)
                    }
                })
                .collect();
            m.insert("routes".into(), Value::Array(routes));
        }
        m.insert("dns".into(), json!(self.dns));
        Ok(Value::Object(m))
    }

    /// 0.1.0 / 0.2.0: `ip4` and `ip6` objects, routes split by family.
    fn to_legacy_value(&self, version: &str) -> Result<Value, CniError> {
        let mut m = Map::new();
        m.insert("cniVersion".into(), json!(version));
        let mut any = false;
        for (key, v4) in [("ip4", true), ("ip6", false)] {
            let mut fam = self.ips.iter().filter(|ip| is_v4(&ip.address) == v4);
            let Some(ip) = fam.next() else { continue };
            if fam.next().is_some() {
                return Err(CniError::new(
                    INCOMPATIBLE_VERSION,
                    format!(
                        "CNI version {version} does not support more than 1 address per family"
                    ),
                ));
            }
            any = true;
            let mut o = Map::new();
            o.insert("ip".into(), json!(ip.address.to_string()));
            if let Some(gw) = ip.gateway {
                o.insert("gateway".into(), json!(gw.to_string()));
            }
            let routes: Vec<Value> = self
                .routes
                .iter()
                .filter(|r| is_v4(&r.dst) == v4)
                .map(|r| {
                    let mut ro = Map::new();
                    ro.insert("dst".into(), json!(r.dst.to_string()));
                    if let Some(gw) = r.gw {
                        ro.insert("gw".into(), json!(gw.to_string()));
                    }
                    Value::Object(ro)
                })
                .collect();
            if !routes.is_empty() {
                o.insert("routes".into(), Value::Array(routes));
            }
            m.insert(key.into(), Value::Object(o));
        }
        if !any {
            return Err(CniError::new(
                INCOMPATIBLE_VERSION,
                "cannot convert: no valid IP addresses",
            ));
        }
        m.insert("dns".into(), json!(self.dns));
        Ok(Value::Object(m))
    }

    /// Renders the result as the JSON text printed on stdout.
    pub fn to_json(&self, version: &str) -> Result<String, CniError> {
        let v = self.to_value(version)?;
        serde_json::to_string_pretty(&v).map_err(|e| CniError::internal(e.to_string()))
    }

    /// Reads a result in any supported version. `default_version` is used when the object has
    /// no `cniVersion` (the reference injects the config's version into a bare prevResult).
    pub fn from_value(v: &Value, default_version: &str) -> Result<CniResult, CniError> {
        let obj = v
            .as_object()
            .ok_or_else(|| decode_err("result", "not a JSON object"))?;
        let version = obj
            .get("cniVersion")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or(default_version);
        let parsed = Version::parse(version)?;
        if parsed < Version::V0_3_0 {
            return Self::from_legacy(obj);
        }
        let mut out = CniResult::default();
        if let Some(ifs) = obj.get("interfaces").filter(|v| !v.is_null()) {
            out.interfaces = serde_json::from_value(ifs.clone())
                .map_err(|e| decode_err("result interfaces", e))?;
        }
        if let Some(ips) = obj.get("ips").and_then(Value::as_array) {
            for ip in ips {
                out.ips.push(parse_ip(ip)?);
            }
        }
        if let Some(routes) = obj.get("routes").filter(|v| !v.is_null()) {
            out.routes = serde_json::from_value(routes.clone())
                .map_err(|e| decode_err("result routes", e))?;
        }
        if let Some(dns) = obj.get("dns").filter(|v| !v.is_null()) {
            out.dns =
                serde_json::from_value(dns.clone()).map_err(|e| decode_err("result dns", e))?;
        }
        Ok(out)
    }

    fn from_legacy(obj: &Map<String, Value>) -> Result<CniResult, CniError> {
        let mut out = CniResult::default();
        for key in ["ip4", "ip6"] {
            let Some(fam) = obj.get(key).and_then(Value::as_object) else {
                continue;
            };
            let address = fam
                .get("ip")
                .and_then(Value::as_str)
                .ok_or_else(|| decode_err("result", format!("{key}.ip missing")))?
                .parse::<IpNetwork>()
                .map_err(|e| decode_err(&format!("result {key}.ip"), e))?;
            let gateway = match fam.get("gateway").and_then(Value::as_str) {
                Some(g) => Some(
                    g.parse::<IpAddr>()
                        .map_err(|e| decode_err(&format!("result {key}.gateway"), e))?,
                ),
                None => None,
            };
            out.ips.push(IpConfig {
                address,
                gateway,
                interface: None,
            });
            if let Some(routes) = fam.get("routes").filter(|v| !v.is_null()) {
                let mut r: Vec<Route> = serde_json::from_value(routes.clone())
                    .map_err(|e| decode_err(&format!("result {key}.routes"), e))?;
                out.routes.append(&mut r);
            }
        }
        if let Some(dns) = obj.get("dns").filter(|v| !v.is_null()) {
            out.dns =
                serde_json::from_value(dns.clone()).map_err(|e| decode_err("result dns", e))?;
        }
        Ok(out)
    }

    /// Parses result JSON text (e.g. a delegated plugin's stdout).
    pub fn from_json(s: &[u8], default_version: &str) -> Result<CniResult, CniError> {
        let v: Value = serde_json::from_slice(s).map_err(|e| decode_err("result", e))?;
        Self::from_value(&v, default_version)
    }

    /// Index of the interface named `name` living in a sandbox (a container interface).
    pub fn sandbox_interface(&self, name: &str) -> Option<usize> {
        self.interfaces
            .iter()
            .position(|i| i.name == name && !i.sandbox.is_empty())
    }
}

fn parse_ip(v: &Value) -> Result<IpConfig, CniError> {
    let address = v
        .get("address")
        .and_then(Value::as_str)
        .ok_or_else(|| decode_err("result ips", "address missing"))?
        .parse::<IpNetwork>()
        .map_err(|e| decode_err("result ips[].address", e))?;
    let gateway = match v.get("gateway").and_then(Value::as_str) {
        Some(g) if !g.is_empty() => Some(
            g.parse::<IpAddr>()
                .map_err(|e| decode_err("result ips[].gateway", e))?,
        ),
        _ => None,
    };
    let interface = match v.get("interface") {
        None | Some(Value::Null) => None,
        Some(i) => Some(
            i.as_u64()
                .ok_or_else(|| decode_err("result ips[].interface", "not an index"))?
                as usize,
        ),
    };
    Ok(IpConfig {
        address,
        gateway,
        interface,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface {
                    name: "cni0".into(),
                    mac: "0a:58:0a:01:02:01".into(),
                    ..Default::default()
                },
                Interface {
                    name: "eth0".into(),
                    mac: "0a:58:0a:01:02:02".into(),
                    sandbox: "/run/netns/t1".into(),
                    ..Default::default()
                },
            ],
            ips: vec![
                IpConfig {
                    address: "10.1.2.2/24".parse().unwrap(),
                    gateway: Some("10.1.2.1".parse().unwrap()),
                    interface: Some(1),
                },
                IpConfig {
                    address: "2001:db8::2/64".parse().unwrap(),
                    gateway: Some("2001:db8::1".parse().unwrap()),
                    interface: Some(1),
                },
            ],
            routes: vec![Route {
                dst: "0.0.0.0/0".parse().unwrap(),
                gw: Some("10.1.2.1".parse().unwrap()),
                mtu: Some(1400),
                ..Default::default()
            }],
            dns: Dns::default(),
        }
    }

    #[test]
    fn renders_1_1_0_with_route_attributes() {
        let v = sample().to_value("1.1.0").unwrap();
        assert_eq!(v["cniVersion"], "1.1.0");
        assert_eq!(
            v["ips"][0],
            json!({"interface":1,"address":"10.1.2.2/24","gateway":"10.1.2.1"})
        );
        assert_eq!(v["routes"][0]["mtu"], 1400);
        assert_eq!(v["dns"], json!({}));
        assert_eq!(
            v["interfaces"][0],
            json!({"name":"cni0","mac":"0a:58:0a:01:02:01"})
        );
    }

    #[test]
    fn renders_1_0_0_without_new_route_fields() {
        let v = sample().to_value("1.0.0").unwrap();
        assert_eq!(v["routes"][0], json!({"dst":"0.0.0.0/0","gw":"10.1.2.1"}));
        assert!(v["ips"][0].get("version").is_none());
    }

    #[test]
    fn renders_0_4_0_and_0_3_x_with_ip_version() {
        for ver in ["0.3.0", "0.3.1", "0.4.0"] {
            let v = sample().to_value(ver).unwrap();
            assert_eq!(v["cniVersion"], ver);
            assert_eq!(v["ips"][0]["version"], "4");
            assert_eq!(v["ips"][1]["version"], "6");
        }
    }

    #[test]
    fn renders_0_2_0_per_family() {
        let v = sample().to_value("0.2.0").unwrap();
        assert_eq!(v["ip4"]["ip"], "10.1.2.2/24");
        assert_eq!(
            v["ip4"]["routes"][0],
            json!({"dst":"0.0.0.0/0","gw":"10.1.2.1"})
        );
        assert_eq!(v["ip6"]["gateway"], "2001:db8::1");
        assert!(v.get("interfaces").is_none());
    }

    #[test]
    fn legacy_refuses_two_addresses_per_family_or_none() {
        let mut r = sample();
        r.ips.push(IpConfig {
            address: "10.9.0.2/24".parse().unwrap(),
            ..Default::default()
        });
        let e = r.to_value("0.2.0").unwrap_err();
        assert!(
            e.msg
                .contains("does not support more than 1 address per family")
        );
        r.ips.clear();
        let e = r.to_value("0.1.0").unwrap_err();
        assert_eq!(e.msg, "cannot convert: no valid IP addresses");
    }

    #[test]
    fn round_trips_every_version() {
        for ver in crate::version::SUPPORTED {
            let r = sample();
            let text = r.to_json(ver).unwrap();
            let back = CniResult::from_json(text.as_bytes(), ver).unwrap();
            if Version::parse(ver).unwrap() < Version::V0_3_0 {
                assert_eq!(back.ips.len(), 2);
                assert_eq!(back.ips[0].interface, None);
            } else if Version::parse(ver).unwrap() < Version::V1_1_0 {
                assert_eq!(back.interfaces, r.interfaces);
                assert_eq!(back.ips, r.ips);
                assert_eq!(back.routes[0].mtu, None);
            } else {
                assert_eq!(back, r);
            }
        }
    }

    #[test]
    fn bad_prev_result_is_a_decoding_error() {
        let e = CniResult::from_json(
            br#"{"cniVersion":"1.0.0","ips":[{"address":"nope"}]}"#,
            "1.0.0",
        )
        .unwrap_err();
        assert_eq!(e.code, DECODING_FAILURE);
    }

    #[test]
    fn missing_version_uses_default() {
        let r = CniResult::from_json(br#"{"ip4":{"ip":"10.0.0.2/24"}}"#, "0.2.0").unwrap();
        assert_eq!(r.ips[0].address.to_string(), "10.0.0.2/24");
    }
}
