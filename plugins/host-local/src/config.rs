//! The host-local configuration: from stdin JSON and `CNI_ARGS` to validated range sets.
//!
//! The keys and their meaning are the reference's (`backend/allocator/config.go`): range sets
//! come from `ipam.ranges`, the legacy `ipam.subnet` (+ `rangeStart`, `rangeEnd`, `gateway`)
//! becomes set 0, and the `ipRanges` capability is prepended before both. Requested addresses
//! come from `args.cni.ips` (or, only when that is absent, `CNI_ARGS` `IP=`, as the
//! conventions say a plugin that understands `args` must ignore the `CNI_ARGS` key) plus the
//! `ips` capability. The reference 1.1.1 unions `args` and `CNI_ARGS`; we follow the spec.
//!
//! The JSON is walked by hand rather than through one serde struct so every error names the
//! exact field (`ipam.ranges[1][0].subnet: invalid CIDR address: 10.0.0.0`): serde's messages
//! carry no path. Validation texts after parsing are the reference's, in its order: no
//! ranges, each set in order, addresses per family for old spec versions, then overlaps
//! between sets. Parsing is pure; reading `resolvConf` happens in the plugin.

use crate::range::{RangeError, RangeSet, RangeSpec, canonical};
use ipnetwork::IpNetwork;
use serde_json::{Map, Value};
use std::net::IpAddr;
use std::path::PathBuf;
use twill_cni::Route;
use twill_cni::error::{INCOMPATIBLE_VERSION, INVALID_ENV, INVALID_NETWORK_CONFIG};
use twill_cni::version::Version;

/// Where the reference keeps its state when `dataDir` is not set.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

/// A configuration error; every variant maps to one CNI error code (see [`ConfigError::code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("IPAM config missing 'ipam' key")]
    MissingIpam,
    /// A key with a wrong type or an unparsable value.
    #[error("{field}: {reason}")]
    Field { field: String, reason: String },
    /// `CNI_ARGS` that the reference would refuse (texts are the reference's).
    #[error("ARGS: {0}")]
    EnvArgs(String),
    #[error("no IP ranges specified")]
    NoRanges,
    #[error("invalid range set {index}: {source}")]
    InvalidRangeSet { index: usize, source: RangeError },
    #[error("range set {0} overlaps with {1}")]
    Overlap(usize, usize),
    #[error("CNI version {0} does not support more than 1 address per family")]
    TooManyPerFamily(String),
}

impl ConfigError {
    /// CNI error code: 4 for `CNI_ARGS`, 1 for a spec version that cannot carry the result,
    /// 7 for everything in the network configuration.
    pub fn code(&self) -> u32 {
        match self {
            ConfigError::EnvArgs(_) => INVALID_ENV,
            ConfigError::TooManyPerFamily(_) => INCOMPATIBLE_VERSION,
            _ => INVALID_NETWORK_CONFIG,
        }
    }
}

fn field(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Field {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Where the allocations of one network live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The network `name` (the directory under `data_dir`).
    pub name: String,
    pub data_dir: PathBuf,
}

/// Everything ADD and CHECK need, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpamConfig {
    pub location: Location,
    /// Range set `i` allocates one address and records `last_reserved_ip.<i>`.
    pub ranges: Vec<RangeSet>,
    /// Echoed into the result unchanged.
    pub routes: Vec<Route>,
    pub resolv_conf: Option<PathBuf>,
    /// Addresses the runtime asked for, canonical and without duplicates, in request order.
    pub requested: Vec<IpAddr>,
}

/// A string value at `path`, `None` when absent or null.
fn opt_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a str>, ConfigError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(field(path, format!("expected a string, got {other}"))),
    }
}

fn opt_array<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a [Value], ConfigError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(other) => Err(field(path, format!("expected an array, got {other}"))),
    }
}

fn as_object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, ConfigError> {
    v.as_object()
        .ok_or_else(|| field(path, format!("expected an object, got {v}")))
}

/// `a.b.c` as an optional object.
fn opt_object<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a Map<String, Value>>, ConfigError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => as_object(v, path).map(Some),
    }
}

/// A CIDR as the reference reads one: the address keeps its host bits, a prefix is required.
pub fn parse_cidr(s: &str) -> Result<IpNetwork, String> {
    let bad = || format!("invalid CIDR address: {s}");
    let (addr, len) = s.split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let len: u8 = len.parse().map_err(|_| bad())?;
    IpNetwork::new(addr, len).map_err(|_| bad())
}

fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse::<IpAddr>()
        .map(canonical)
        .map_err(|_| format!("invalid IP address: {s}"))
}

/// A requested address: bare or with a prefix (the prefix is ignored), like the reference's
/// `ip.IP`.
fn parse_requested(s: &str) -> Result<IpAddr, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(canonical(ip));
    }
    if s.contains('/')
        && let Ok(n) = parse_cidr(s)
    {
        return Ok(canonical(n.ip()));
    }
    Err(format!("invalid IP address {s}"))
}

fn parse_range(v: &Value, path: &str) -> Result<RangeSpec, ConfigError> {
    let obj = as_object(v, path)?;
    let subnet_path = format!("{path}.subnet");
    let subnet =
        opt_str(obj, "subnet", &subnet_path)?.ok_or_else(|| field(&subnet_path, "missing"))?;
    let subnet = parse_cidr(subnet).map_err(|e| field(&subnet_path, e))?;
    range_spec(obj, subnet, path)
}

/// The optional `rangeStart`, `rangeEnd` and `gateway` of a range object.
fn range_spec(
    obj: &Map<String, Value>,
    subnet: IpNetwork,
    path: &str,
) -> Result<RangeSpec, ConfigError> {
    let ip = |key: &str| -> Result<Option<IpAddr>, ConfigError> {
        let p = format!("{path}.{key}");
        opt_str(obj, key, &p)?
            .map(|s| parse_ip(s).map_err(|e| field(&p, e)))
            .transpose()
    };
    Ok(RangeSpec {
        subnet,
        range_start: ip("rangeStart")?,
        range_end: ip("rangeEnd")?,
        gateway: ip("gateway")?,
    })
}

fn parse_range_sets(list: &[Value], path: &str) -> Result<Vec<Vec<RangeSpec>>, ConfigError> {
    let mut sets = Vec::with_capacity(list.len());
    for (i, set) in list.iter().enumerate() {
        let set_path = format!("{path}[{i}]");
        let items = set
            .as_array()
            .ok_or_else(|| field(&set_path, format!("expected an array of ranges, got {set}")))?;
        let mut specs = Vec::with_capacity(items.len());
        for (j, r) in items.iter().enumerate() {
            specs.push(parse_range(r, &format!("{set_path}[{j}]"))?);
        }
        sets.push(specs);
    }
    Ok(sets)
}

fn parse_ip_list(list: &[Value], path: &str) -> Result<Vec<IpAddr>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, v)| {
            let p = format!("{path}[{i}]");
            let s = v
                .as_str()
                .ok_or_else(|| field(&p, format!("expected a string, got {v}")))?;
            parse_requested(s).map_err(|e| field(&p, e))
        })
        .collect()
}

/// `CNI_ARGS` as the reference's `IPAMEnvArgs`: `IP` and `IgnoreUnknown` are understood, any
/// other key is an error unless `IgnoreUnknown` is true.
fn parse_env_args(args: &[(String, String)]) -> Result<Option<IpAddr>, ConfigError> {
    let mut ip = None;
    let mut ignore_unknown = false;
    let mut unknown = Vec::new();
    for (k, v) in args {
        match k.as_str() {
            "IP" => {
                ip = Some(parse_requested(v).map_err(|e| {
                    ConfigError::EnvArgs(format!(
                        "error parsing value of pair {:?}: {e}",
                        format!("{k}={v}")
                    ))
                })?)
            }
            "IgnoreUnknown" => {
                ignore_unknown = match v.to_ascii_lowercase().as_str() {
                    "1" | "true" => true,
                    "0" | "false" => false,
                    _ => {
                        return Err(ConfigError::EnvArgs(format!(
                            "error parsing value of pair {:?}: boolean unmarshal error: invalid input {v}",
                            format!("{k}={v}")
                        )));
                    }
                }
            }
            _ => unknown.push(format!("{k}={v}")),
        }
    }
    if !unknown.is_empty() && !ignore_unknown {
        let quoted: Vec<String> = unknown.iter().map(|u| format!("{u:?}")).collect();
        return Err(ConfigError::EnvArgs(format!(
            "unknown args [{}]",
            quoted.join(" ")
        )));
    }
    Ok(ip)
}

fn ipam_object(conf: &Value) -> Result<&Map<String, Value>, ConfigError> {
    let top = as_object(conf, "config")?;
    match top.get("ipam") {
        None | Some(Value::Null) => Err(ConfigError::MissingIpam),
        Some(v) => as_object(v, "ipam"),
    }
}

/// Only the network name and `dataDir`: all DEL, GC and STATUS need, so they keep working
/// when the ranges are broken or only supplied at ADD time through `ipRanges`.
pub fn location(conf: &Value) -> Result<Location, ConfigError> {
    let ipam = ipam_object(conf)?;
    let name = conf
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let data_dir = match opt_str(ipam, "dataDir", "ipam.dataDir")? {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(DEFAULT_DATA_DIR),
    };
    Ok(Location { name, data_dir })
}

/// Parses and validates the whole configuration for ADD and CHECK.
///
/// `version` is the config's `cniVersion` (results below 0.3.0 hold one address per family);
/// `env_args` is `CNI_ARGS`.
pub fn load(
    conf: &Value,
    version: &str,
    env_args: &[(String, String)],
) -> Result<IpamConfig, ConfigError> {
    let location = location(conf)?;
    let ipam = ipam_object(conf)?;
    let top = as_object(conf, "config")?;

    // Requested addresses: args.cni.ips wins over CNI_ARGS IP=, then the ips capability.
    let env_ip = parse_env_args(env_args)?;
    let args_ips = match opt_object(top, "args", "args")? {
        Some(args) => match opt_object(args, "cni", "args.cni")? {
            Some(cni) => parse_ip_list(opt_array(cni, "ips", "args.cni.ips")?, "args.cni.ips")?,
            None => Vec::new(),
        },
        None => Vec::new(),
    };
    let runtime = opt_object(top, "runtimeConfig", "runtimeConfig")?;
    let runtime_ips = match runtime {
        Some(rc) => parse_ip_list(
            opt_array(rc, "ips", "runtimeConfig.ips")?,
            "runtimeConfig.ips",
        )?,
        None => Vec::new(),
    };
    let mut requested: Vec<IpAddr> = Vec::new();
    let first = if args_ips.is_empty() {
        env_ip.into_iter().collect()
    } else {
        args_ips
    };
    for ip in first.into_iter().chain(runtime_ips) {
        if !requested.contains(&ip) {
            requested.push(ip);
        }
    }

    let mut routes = Vec::new();
    for (i, r) in opt_array(ipam, "routes", "ipam.routes")?.iter().enumerate() {
        let route: Route = serde_json::from_value(r.clone())
            .map_err(|e| field(format!("ipam.routes[{i}]"), e.to_string()))?;
        routes.push(route);
    }
    let resolv_conf = opt_str(ipam, "resolvConf", "ipam.resolvConf")?
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);

    // Range sets: ipRanges capability, then the legacy single range, then ipam.ranges.
    let mut specs: Vec<Vec<RangeSpec>> = Vec::new();
    if let Some(rc) = runtime {
        specs.extend(parse_range_sets(
            opt_array(rc, "ipRanges", "runtimeConfig.ipRanges")?,
            "runtimeConfig.ipRanges",
        )?);
    }
    if let Some(subnet) = opt_str(ipam, "subnet", "ipam.subnet")? {
        let subnet = parse_cidr(subnet).map_err(|e| field("ipam.subnet", e))?;
        specs.push(vec![range_spec(ipam, subnet, "ipam")?]);
    }
    specs.extend(parse_range_sets(
        opt_array(ipam, "ranges", "ipam.ranges")?,
        "ipam.ranges",
    )?);
    if specs.is_empty() {
        return Err(ConfigError::NoRanges);
    }

    let mut ranges = Vec::with_capacity(specs.len());
    for (index, set) in specs.iter().enumerate() {
        ranges.push(
            RangeSet::new(set).map_err(|source| ConfigError::InvalidRangeSet { index, source })?,
        );
    }
    let v4 = ranges.iter().filter(|s| s.is_ipv4()).count();
    let v6 = ranges.len() - v4;
    if (v4 > 1 || v6 > 1) && !Version::parse(version).is_ok_and(|v| v >= Version::V0_3_0) {
        return Err(ConfigError::TooManyPerFamily(version.to_owned()));
    }
    for (i, a) in ranges.iter().enumerate() {
        for (j, b) in ranges.iter().enumerate().skip(i + 1) {
            if a.overlaps(b) {
                return Err(ConfigError::Overlap(i, j));
            }
        }
    }
    Ok(IpamConfig {
        location,
        ranges,
        routes,
        resolv_conf,
        requested,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn load_ok(v: Value) -> IpamConfig {
        load(&v, "1.0.0", &[]).unwrap()
    }

    fn load_err(v: Value) -> ConfigError {
        load(&v, "1.0.0", &[]).unwrap_err()
    }

    fn net(ipam: Value) -> Value {
        json!({"cniVersion": "1.0.0", "name": "mynet", "ipam": ipam})
    }

    #[test]
    fn legacy_subnet_is_set_zero_before_ranges() {
        let c = load_ok(net(json!({
            "type": "host-local", "subnet": "10.1.2.0/24", "rangeStart": "10.1.2.10",
            "rangeEnd": "10.1.2.20", "gateway": "10.1.2.254",
            "ranges": [[{"subnet": "fd00::/64"}]], "dataDir": "/tmp/x",
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.1.2.1"}],
            "resolvConf": "/etc/resolv.conf"
        })));
        assert_eq!(
            c.location,
            Location {
                name: "mynet".into(),
                data_dir: "/tmp/x".into()
            }
        );
        assert_eq!(c.ranges.len(), 2);
        let r = &c.ranges[0].ranges()[0];
        assert_eq!(
            (r.start, r.end, r.gateway),
            (ip("10.1.2.10"), ip("10.1.2.20"), ip("10.1.2.254"))
        );
        assert!(!c.ranges[1].is_ipv4());
        assert_eq!(c.routes.len(), 2);
        assert_eq!(c.routes[1].gw, Some(ip("10.1.2.1")));
        assert_eq!(c.resolv_conf, Some(PathBuf::from("/etc/resolv.conf")));
    }

    #[test]
    fn defaults() {
        let c = load_ok(net(json!({"subnet": "10.1.2.0/24"})));
        assert_eq!(c.location.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert!(c.routes.is_empty());
        assert_eq!(c.resolv_conf, None);
        assert!(c.requested.is_empty());
        // rangeStart without subnet is ignored, as in the reference.
        let e = load_err(net(json!({"rangeStart": "10.1.2.5"})));
        assert_eq!(e, ConfigError::NoRanges);
        assert_eq!(e.to_string(), "no IP ranges specified");
    }

    #[test]
    fn runtime_ranges_are_prepended() {
        let mut v = net(json!({"subnet": "10.1.2.0/24", "ranges": [[{"subnet": "10.3.0.0/16"}]]}));
        v["runtimeConfig"] = json!({"ipRanges": [[{"subnet": "10.9.0.0/24"}]]});
        let c = load_ok(v);
        let firsts: Vec<String> = c
            .ranges
            .iter()
            .map(|s| s.ranges()[0].subnet.to_string())
            .collect();
        assert_eq!(firsts, ["10.9.0.0/24", "10.1.2.0/24", "10.3.0.0/16"]);
    }

    #[test]
    fn missing_ipam() {
        let e = load_err(json!({"cniVersion": "1.0.0", "name": "n"}));
        assert_eq!(
            (e.code(), e.to_string().as_str()),
            (7, "IPAM config missing 'ipam' key")
        );
    }

    #[test]
    fn field_errors_name_the_field() {
        let cases = [
            (
                json!({"subnet": "garbage"}),
                "ipam.subnet: invalid CIDR address: garbage",
            ),
            (
                json!({"subnet": "10.0.0.0"}),
                "ipam.subnet: invalid CIDR address: 10.0.0.0",
            ),
            (
                json!({"subnet": "10.0.0.0/33"}),
                "ipam.subnet: invalid CIDR address: 10.0.0.0/33",
            ),
            (
                json!({"subnet": 5}),
                "ipam.subnet: expected a string, got 5",
            ),
            (
                json!({"subnet": "10.0.0.0/24", "rangeStart": "zz"}),
                "ipam.rangeStart: invalid IP address: zz",
            ),
            (
                json!({"ranges": [[{"subnet": "10.0.0.0/24"}, {"gateway": "10.0.1.1"}]]}),
                "ipam.ranges[0][1].subnet: missing",
            ),
            (
                json!({"ranges": [{"subnet": "10.0.0.0/24"}]}),
                "ipam.ranges[0]: expected an array of ranges, got {\"subnet\":\"10.0.0.0/24\"}",
            ),
            (
                json!({"ranges": "x"}),
                "ipam.ranges: expected an array, got \"x\"",
            ),
            (
                json!({"subnet": "10.0.0.0/24", "routes": "x"}),
                "ipam.routes: expected an array, got \"x\"",
            ),
            (
                json!({"subnet": "10.0.0.0/24", "dataDir": 1}),
                "ipam.dataDir: expected a string, got 1",
            ),
        ];
        for (ipam, want) in cases {
            let e = load_err(net(ipam));
            assert_eq!((e.code(), e.to_string()), (7, want.to_string()));
        }
        let e = load_err(net(
            json!({"subnet": "10.0.0.0/24", "routes": [{"gw": "10.0.0.1"}]}),
        ));
        assert!(
            e.to_string()
                .starts_with("ipam.routes[0]: missing field `dst`"),
            "{e}"
        );
        let mut v = net(json!({"subnet": "10.0.0.0/24"}));
        v["runtimeConfig"] = json!({"ipRanges": [[{"subnet": "x"}]]});
        assert_eq!(
            load_err(v).to_string(),
            "runtimeConfig.ipRanges[0][0].subnet: invalid CIDR address: x"
        );
    }

    #[test]
    fn range_validation_texts_are_the_references() {
        let cases = [
            (
                json!({"subnet": "10.0.0.0/31"}),
                "invalid range set 0: Network 10.0.0.0/31 too small to allocate from",
            ),
            (
                json!({"subnet": "10.0.0.1/24"}),
                "invalid range set 0: Network has host bits set. For a subnet mask of length 24 the network address is 10.0.0.0",
            ),
            (
                json!({"subnet": "10.0.0.0/24", "rangeStart": "10.0.1.5"}),
                "invalid range set 0: RangeStart 10.0.1.5 not in network 10.0.0.0/24",
            ),
            (
                json!({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.0.0.0/25"}]]}),
                "range set 0 overlaps with 1",
            ),
            (
                json!({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.1.0.0/24"}], [{"subnet": "10.1.0.128/25"}]]}),
                "range set 1 overlaps with 2",
            ),
            (
                json!({"ranges": [[]]}),
                "invalid range set 0: empty range set",
            ),
            (
                json!({"ranges": [[{"subnet": "10.0.0.0/24"}, {"subnet": "fd00::/64"}]]}),
                "invalid range set 0: mixed address families",
            ),
        ];
        for (ipam, want) in cases {
            let e = load_err(net(ipam));
            assert_eq!((e.code(), e.to_string()), (7, want.to_string()));
        }
    }

    #[test]
    fn old_versions_hold_one_address_per_family() {
        let v = net(json!({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.1.0.0/24"}]]}));
        let e = load(&v, "0.2.0", &[]).unwrap_err();
        assert_eq!(
            (e.code(), e.to_string().as_str()),
            (
                1,
                "CNI version 0.2.0 does not support more than 1 address per family"
            )
        );
        assert!(load(&v, "0.3.0", &[]).is_ok());
        let v = net(json!({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "fd00::/64"}]]}));
        assert!(load(&v, "0.1.0", &[]).is_ok());
    }

    #[test]
    fn requested_ips_args_win_over_cni_args() {
        let env = [("IP".to_string(), "10.1.2.70".to_string())];
        let c = load(&net(json!({"subnet": "10.1.2.0/24"})), "1.0.0", &env).unwrap();
        assert_eq!(c.requested, [ip("10.1.2.70")]);
        let mut v = net(json!({"subnet": "10.1.2.0/24"}));
        v["args"] = json!({"cni": {"ips": ["10.1.2.72", "10.1.2.73/24", "10.1.2.72"]}});
        v["runtimeConfig"] = json!({"ips": ["10.1.2.74/24"]});
        let c = load(&v, "1.0.0", &env).unwrap();
        assert_eq!(
            c.requested,
            [ip("10.1.2.72"), ip("10.1.2.73"), ip("10.1.2.74")]
        );
        v["args"] = json!({"cni": {"ips": ["zz"]}});
        assert_eq!(
            load(&v, "1.0.0", &[]).unwrap_err().to_string(),
            "args.cni.ips[0]: invalid IP address zz"
        );
    }

    #[test]
    fn cni_args_like_the_reference() {
        let v = net(json!({"subnet": "10.1.2.0/24"}));
        let args = |s: &[(&str, &str)]| -> Vec<(String, String)> {
            s.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let e = load(&v, "1.0.0", &args(&[("FOO", "bar")])).unwrap_err();
        assert_eq!(
            (e.code(), e.to_string().as_str()),
            (4, "ARGS: unknown args [\"FOO=bar\"]")
        );
        assert!(
            load(
                &v,
                "1.0.0",
                &args(&[("IgnoreUnknown", "1"), ("K8S_POD_NAME", "x")])
            )
            .is_ok()
        );
        assert!(
            load(
                &v,
                "1.0.0",
                &args(&[("IgnoreUnknown", "TRUE"), ("K8S_POD_NAME", "x")])
            )
            .is_ok()
        );
        let e = load(&v, "1.0.0", &args(&[("IP", "zz")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "ARGS: error parsing value of pair \"IP=zz\": invalid IP address zz"
        );
    }

    #[test]
    fn location_ignores_broken_ranges() {
        let v = net(json!({"subnet": "10.0.0.0/31", "dataDir": "/d"}));
        assert_eq!(
            location(&v).unwrap(),
            Location {
                name: "mynet".into(),
                data_dir: "/d".into()
            }
        );
        assert_eq!(
            location(&json!({"name": "n"})).unwrap_err(),
            ConfigError::MissingIpam
        );
    }
}
