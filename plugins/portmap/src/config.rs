//! The portmap configuration, validated completely before anything touches the kernel.
//!
//! Keys and messages follow the reference plugin (`plugins/meta/portmap/main.go`) so
//! runtimes and operators see the same errors: `Invalid host port number: 0`, `Cannot
//! specify externalSetMarkChain and markMasqBit`, `nftables backend was requested but
//! configuration contains iptables-specific options [conditionsV4]`. We implement the
//! nftables backend only and default to it; `backend: iptables` is refused with code 2
//! (unsupported field) naming the key and value, rather than silently programming nftables.
//!
//! nftables `conditionsV4/V6` are raw `nft` syntax in the reference (prepended to its jump
//! rules). We accept the subset that covers their documented use, address and interface
//! matches (`ip daddr != 10.0.0.0/8`, `iifname "eth0"`), and apply them to each of the
//! attachment's DNAT rules, so one network's conditions never leak into another's; anything
//! else is refused with code 2 naming the token. All functions here are pure.

use ipnetwork::IpNetwork;
use serde::Deserialize;
use serde_json::Value;
use std::net::IpAddr;
use twill_cni::error::{INVALID_NETWORK_CONFIG, UNSUPPORTED_FIELD};
use twill_cni::{CniError, CniResult, config::PortMapping};
use twill_net::nft::{AddrField, CmpOp, IfField, L4Proto, Stmt};

/// The reference default when `markMasqBit` is absent (unused by the nftables backend).
pub const DEFAULT_MARK_BIT: i64 = 13;

/// One forwarded port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: L4Proto,
    /// `None`: every local address. `0.0.0.0` / `::` mean every address of that family.
    pub host_ip: Option<IpAddr>,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortmapConf {
    pub mappings: Vec<Mapping>,
    /// Masquerade hairpin (pod to its own mapping) and localhost-originated traffic.
    pub snat: bool,
    /// Masquerade all traffic to the pod's mapped ports, whatever its source.
    pub masq_all: bool,
    pub conditions_v4: Vec<Stmt>,
    pub conditions_v6: Vec<Stmt>,
}

/// Our keys of the plugin config (the reference's, with its spelling).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawConf {
    #[serde(default)]
    pub snat: Option<bool>,
    #[serde(default)]
    pub masq_all: Option<bool>,
    #[serde(default)]
    pub mark_masq_bit: Option<i64>,
    #[serde(default)]
    pub external_set_mark_chain: Option<String>,
    #[serde(default, rename = "conditionsV4")]
    pub conditions_v4: Option<Vec<String>>,
    #[serde(default, rename = "conditionsV6")]
    pub conditions_v6: Option<Vec<String>>,
    #[serde(default)]
    pub backend: Option<String>,
}

fn invalid(msg: impl Into<String>) -> CniError {
    CniError::new(INVALID_NETWORK_CONFIG, msg)
}

fn unsupported(msg: impl Into<String>) -> CniError {
    CniError::new(UNSUPPORTED_FIELD, msg)
}

/// Which backend a list of conditions is written for (reference `detectBackendOfConditions`:
/// iptables arguments start with `-`).
fn conditions_backend(c: &Option<Vec<String>>) -> Option<&'static str> {
    let first = c.as_ref()?.first()?;
    if first.is_empty() {
        return None;
    }
    Some(if first.starts_with('-') {
        "iptables"
    } else {
        "nftables"
    })
}

/// Validates everything but the port mappings: mark options, backend, conditions.
pub fn validate_options(raw: &RawConf) -> Result<(Vec<Stmt>, Vec<Stmt>), CniError> {
    if raw.mark_masq_bit.is_some() && raw.external_set_mark_chain.is_some() {
        return Err(invalid(
            "Cannot specify externalSetMarkChain and markMasqBit",
        ));
    }
    let bit = raw.mark_masq_bit.unwrap_or(DEFAULT_MARK_BIT);
    if !(0..=31).contains(&bit) {
        return Err(invalid("MasqMarkBit must be between 0 and 31"));
    }
    let mut iptables_only = Vec::new();
    let mut nftables_only = Vec::new();
    if raw.external_set_mark_chain.is_some() {
        iptables_only.push("externalSetMarkChain");
    }
    for (key, c) in [
        ("conditionsV4", &raw.conditions_v4),
        ("conditionsV6", &raw.conditions_v6),
    ] {
        match conditions_backend(c) {
            Some("iptables") => iptables_only.push(key),
            Some(_) => nftables_only.push(key),
            None => {}
        }
    }
    let backend = raw.backend.as_deref().unwrap_or("nftables");
    let (wrong, wrong_keys) = match backend {
        "iptables" => ("nftables", &nftables_only),
        _ => ("iptables", &iptables_only),
    };
    if !wrong_keys.is_empty() {
        return Err(invalid(format!(
            "{backend} backend was requested but configuration contains {wrong}-specific options [{}]",
            wrong_keys.join(" ")
        )));
    }
    match backend {
        "nftables" => {}
        "iptables" => {
            return Err(unsupported(
                "unsupported backend \"iptables\" (field backend): this portmap programs nftables only; remove the field or set it to \"nftables\"",
            ));
        }
        other => return Err(invalid(format!("unrecognized backend {other:?}"))),
    }
    Ok((
        parse_conditions("conditionsV4", raw.conditions_v4.as_deref(), false)?,
        parse_conditions("conditionsV6", raw.conditions_v6.as_deref(), true)?,
    ))
}

/// Parses nftables conditions (address and interface matches) for one family.
pub fn parse_conditions(
    key: &str,
    tokens: Option<&[String]>,
    v6: bool,
) -> Result<Vec<Stmt>, CniError> {
    let words: Vec<&str> = tokens
        .unwrap_or(&[])
        .iter()
        .flat_map(|t| t.split_whitespace())
        .collect();
    let bad = |what: String| unsupported(format!("unsupported {key} {words:?}: {what}"));
    let mut out = Vec::new();
    let mut i = 0;
    let op_at = |i: usize| match words.get(i) {
        Some(&"!=") => (CmpOp::Neq, 1),
        Some(&"==") => (CmpOp::Eq, 1),
        _ => (CmpOp::Eq, 0),
    };
    while i < words.len() {
        match words[i] {
            fam @ ("ip" | "ip6") => {
                if (fam == "ip6") != v6 {
                    return Err(bad(format!("{fam} matches do not belong in {key}")));
                }
                let field = match words.get(i + 1) {
                    Some(&"saddr") => AddrField::Saddr,
                    Some(&"daddr") => AddrField::Daddr,
                    other => {
                        return Err(bad(format!(
                            "{fam} {} is not supported",
                            other.unwrap_or(&"")
                        )));
                    }
                };
                let (op, skip) = op_at(i + 2);
                let value = words
                    .get(i + 2 + skip)
                    .ok_or_else(|| bad(format!("{fam} {} needs an address", words[i + 1])))?;
                let net: IpNetwork = match value.parse::<IpNetwork>() {
                    Ok(n) => n,
                    Err(_) => return Err(bad(format!("{value:?} is not an address or prefix"))),
                };
                if net.is_ipv6() != v6 || net.prefix() == 0 {
                    return Err(bad(format!(
                        "{value:?} does not fit {fam} {}",
                        words[i + 1]
                    )));
                }
                out.push(Stmt::ip(field, op, net));
                i += 3 + skip;
            }
            kw @ ("iifname" | "oifname") => {
                let (op, skip) = op_at(i + 1);
                let name = words
                    .get(i + 1 + skip)
                    .map(|n| n.trim_matches('"'))
                    .filter(|n| !n.is_empty() && n.len() < 16 && !n.contains('*'))
                    .ok_or_else(|| bad(format!("{kw} needs an interface name")))?;
                out.push(Stmt::Ifname {
                    field: if kw == "iifname" {
                        IfField::Iifname
                    } else {
                        IfField::Oifname
                    },
                    op,
                    name: name.to_owned(),
                });
                i += 2 + skip;
            }
            other => {
                return Err(bad(format!(
                    "{other:?} is not supported (only ip/ip6 saddr/daddr and iifname/oifname matches)"
                )));
            }
        }
    }
    Ok(out)
}

fn port(n: i64) -> Option<u16> {
    u16::try_from(n).ok().filter(|p| *p > 0)
}

/// Validates `runtimeConfig.portMappings` (reference messages for the port numbers).
pub fn validate_mappings(raw: &[PortMapping]) -> Result<Vec<Mapping>, CniError> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, m) in raw.iter().enumerate() {
        let container_port = port(m.container_port).ok_or_else(|| {
            invalid(format!(
                "Invalid container port number: {}",
                m.container_port
            ))
        })?;
        let host_port = port(m.host_port)
            .ok_or_else(|| invalid(format!("Invalid host port number: {}", m.host_port)))?;
        let protocol = match m.protocol.to_ascii_lowercase().as_str() {
            // Runtimes always send it; an absent protocol means TCP as in Kubernetes.
            "" | "tcp" => L4Proto::Tcp,
            "udp" => L4Proto::Udp,
            "sctp" => L4Proto::Sctp,
            _ => {
                return Err(invalid(format!(
                    "Invalid protocol {:?} in portMappings[{i}]: must be tcp, udp or sctp",
                    m.protocol
                )));
            }
        };
        let host_ip = if m.host_ip.is_empty() {
            None
        } else {
            Some(m.host_ip.parse::<IpAddr>().map_err(|_| {
                invalid(format!(
                    "Invalid hostIP {:?} in portMappings[{i}]",
                    m.host_ip
                ))
            })?)
        };
        out.push(Mapping {
            host_port,
            container_port,
            protocol,
            host_ip,
        });
    }
    Ok(out)
}

/// The whole configuration of a request.
pub fn parse(raw: &RawConf, mappings: &[PortMapping]) -> Result<PortmapConf, CniError> {
    let (conditions_v4, conditions_v6) = validate_options(raw)?;
    Ok(PortmapConf {
        mappings: validate_mappings(mappings)?,
        snat: raw.snat.unwrap_or(true),
        masq_all: raw.masq_all.unwrap_or(false),
        conditions_v4,
        conditions_v6,
    })
}

/// The container's addresses, one per family, as the reference picks them from
/// `prevResult`: IPs whose interface is `ifname` inside a sandbox, or that name no
/// interface (or an index out of range); the first of each family wins.
pub fn container_ips(prev: &CniResult, ifname: &str) -> (Option<IpNetwork>, Option<IpNetwork>) {
    let (mut v4, mut v6) = (None, None);
    for ip in &prev.ips {
        let slot = if ip.address.is_ipv4() {
            &mut v4
        } else {
            &mut v6
        };
        if slot.is_some() {
            continue;
        }
        if let Some(iface) = ip.interface.and_then(|i| prev.interfaces.get(i))
            && (iface.name != ifname || iface.sandbox.is_empty())
        {
            continue;
        }
        *slot = Some(ip.address);
    }
    (v4, v6)
}

/// `runtimeConfig.portMappings` from the request's JSON (absent = none).
pub fn raw_mappings(runtime_config: Option<&Value>) -> Result<Vec<PortMapping>, CniError> {
    match runtime_config.and_then(|r| r.get("portMappings")) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(v) => Vec::<PortMapping>::deserialize(v).map_err(|e| {
            CniError::with_details(
                INVALID_NETWORK_CONFIG,
                "invalid runtimeConfig.portMappings",
                e.to_string(),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use twill_cni::{Interface, IpConfig};

    fn raw(v: Value) -> RawConf {
        serde_json::from_value(v).unwrap()
    }

    fn pm(host: i64, cont: i64, proto: &str, ip: &str) -> PortMapping {
        PortMapping {
            host_port: host,
            container_port: cont,
            protocol: proto.into(),
            host_ip: ip.into(),
        }
    }

    #[test]
    fn port_numbers_use_the_reference_messages() {
        let e = validate_mappings(&[pm(0, 80, "tcp", "")]).unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (7, "Invalid host port number: 0"));
        let e = validate_mappings(&[pm(8080, -1, "tcp", "")]).unwrap_err();
        assert_eq!(e.msg, "Invalid container port number: -1");
        let e = validate_mappings(&[pm(70000, 80, "tcp", "")]).unwrap_err();
        assert_eq!(e.msg, "Invalid host port number: 70000");
        let e = validate_mappings(&[pm(80, 80, "tcp", ""), pm(81, 80, "icmp", "")]).unwrap_err();
        assert_eq!(
            e.msg,
            "Invalid protocol \"icmp\" in portMappings[1]: must be tcp, udp or sctp"
        );
        let e = validate_mappings(&[pm(80, 80, "udp", "1.2.3")]).unwrap_err();
        assert_eq!(e.msg, "Invalid hostIP \"1.2.3\" in portMappings[0]");
        let ok = validate_mappings(&[pm(80, 8080, "UDP", "::"), pm(81, 81, "", "")]).unwrap();
        assert_eq!(ok[0].protocol, L4Proto::Udp);
        assert_eq!(ok[0].host_ip, Some("::".parse().unwrap()));
        assert_eq!(ok[1].protocol, L4Proto::Tcp);
    }

    #[test]
    fn backend_and_mark_options_like_the_reference() {
        let e = validate_options(&raw(
            json!({"externalSetMarkChain": "KUBE-MARK-MASQ", "markMasqBit": 5}),
        ))
        .unwrap_err();
        assert_eq!(e.msg, "Cannot specify externalSetMarkChain and markMasqBit");
        let e = validate_options(&raw(json!({"markMasqBit": 32}))).unwrap_err();
        assert_eq!(e.msg, "MasqMarkBit must be between 0 and 31");
        let e = validate_options(&raw(json!({"backend": "iptables", "conditionsV4": ["aaa", "bbbb"], "conditionsV6": ["ccc"]})))
            .unwrap_err();
        assert_eq!(
            e.msg,
            "iptables backend was requested but configuration contains nftables-specific options [conditionsV4 conditionsV6]"
        );
        let e = validate_options(&raw(json!({"backend": "nftables", "externalSetMarkChain": "KUBE-MARK-MASQ", "conditionsV4": ["-a", "b"], "conditionsV6": ["-c", "d"]})))
            .unwrap_err();
        assert_eq!(
            e.msg,
            "nftables backend was requested but configuration contains iptables-specific options [externalSetMarkChain conditionsV4 conditionsV6]"
        );
        // Without a backend we are nftables, so iptables conditions are refused the same way.
        let e = validate_options(&raw(json!({"conditionsV4": ["-d", "1.2.3.4"]}))).unwrap_err();
        assert!(
            e.msg.starts_with("nftables backend was requested"),
            "{}",
            e.msg
        );
        let e = validate_options(&raw(json!({"backend": "iptables"}))).unwrap_err();
        assert_eq!(e.code, 2);
        assert!(
            e.msg.contains("backend") && e.msg.contains("\"iptables\""),
            "{}",
            e.msg
        );
        let e = validate_options(&raw(json!({"backend": "ipvs"}))).unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (7, "unrecognized backend \"ipvs\"")
        );
        assert!(validate_options(&raw(json!({"markMasqBit": 5, "backend": "nftables"}))).is_ok());
    }

    #[test]
    fn nftables_conditions_subset() {
        let c = parse_conditions(
            "conditionsV4",
            Some(&[
                "ip daddr".into(),
                "!=".into(),
                "10.0.0.0/8".into(),
                "iifname".into(),
                "\"eth0\"".into(),
            ]),
            false,
        )
        .unwrap();
        assert_eq!(
            c,
            vec![
                Stmt::ip(AddrField::Daddr, CmpOp::Neq, "10.0.0.0/8".parse().unwrap()),
                Stmt::Ifname {
                    field: IfField::Iifname,
                    op: CmpOp::Eq,
                    name: "eth0".into()
                },
            ]
        );
        let e = parse_conditions(
            "conditionsV4",
            Some(&["meta".into(), "mark".into(), "1".into()]),
            false,
        )
        .unwrap_err();
        assert_eq!(e.code, 2);
        assert!(e.msg.starts_with("unsupported conditionsV4"), "{}", e.msg);
        assert!(parse_conditions("conditionsV4", Some(&["ip6 saddr ::1".into()]), false).is_err());
        assert!(
            parse_conditions("conditionsV6", Some(&["ip6 saddr 10.0.0.1".into()]), true).is_err()
        );
        assert!(parse_conditions("conditionsV4", Some(&["ip daddr".into()]), false).is_err());
    }

    #[test]
    fn container_ips_like_the_reference() {
        // Reference "correctly parses an ADD config": the host-side IP is ignored.
        let prev = CniResult {
            interfaces: vec![
                Interface {
                    name: "host".into(),
                    ..Default::default()
                },
                Interface {
                    name: "container".into(),
                    sandbox: "netns".into(),
                    ..Default::default()
                },
            ],
            ips: vec![
                IpConfig {
                    address: "10.0.0.1/24".parse().unwrap(),
                    gateway: None,
                    interface: Some(0),
                },
                IpConfig {
                    address: "10.0.0.2/24".parse().unwrap(),
                    gateway: None,
                    interface: Some(1),
                },
                IpConfig {
                    address: "2001:db8:1::2/64".parse().unwrap(),
                    gateway: None,
                    interface: Some(1),
                },
            ],
            ..Default::default()
        };
        let (v4, v6) = container_ips(&prev, "container");
        assert_eq!(v4, Some("10.0.0.2/24".parse().unwrap()));
        assert_eq!(v6, Some("2001:db8:1::2/64".parse().unwrap()));
        // "does not fail on missing prevResult interface index".
        let prev = CniResult {
            ips: vec![IpConfig {
                address: "10.0.0.2/24".parse().unwrap(),
                gateway: None,
                interface: None,
            }],
            ..Default::default()
        };
        assert_eq!(
            container_ips(&prev, "container").0,
            Some("10.0.0.2/24".parse().unwrap())
        );
        assert_eq!(container_ips(&prev, "container").1, None);
    }

    #[test]
    fn defaults() {
        let c = parse(&RawConf::default(), &[pm(8080, 80, "tcp", "")]).unwrap();
        assert!(c.snat && !c.masq_all);
        assert!(c.conditions_v4.is_empty());
        let m = raw_mappings(Some(
            &json!({"portMappings": [{"hostPort": 1, "containerPort": 2, "protocol": "tcp"}]}),
        ))
        .unwrap();
        assert_eq!(m.len(), 1);
        assert!(raw_mappings(None).unwrap().is_empty());
        assert_eq!(
            raw_mappings(Some(&json!({"portMappings": "x"})))
                .unwrap_err()
                .code,
            7
        );
    }
}
