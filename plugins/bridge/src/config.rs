//! The bridge plugin's network configuration, parsed and validated before anything is
//! touched.
//!
//! Keys, defaults and error texts follow the reference `plugins/main/bridge/bridge.go`
//! (`loadNetConf`, `collectVlanTrunk`) so a config written for it behaves the same here:
//! `bridge` defaults to `cni0`, `isDefaultGateway` implies `isGateway`, `preserveDefaultVlan`
//! defaults to true, and the container MAC comes from `runtimeConfig.mac`, else
//! `args.cni.mac`, else `CNI_ARGS` `MAC=`. Unlike the reference, every invalid value is
//! found here, up front, with code 7 and a message naming the key; the reference finds some
//! of them (a bad MAC, an unknown masquerade backend) only halfway through ADD.

use serde::Deserialize;
use twill_cni::{CniError, Dns, Request};
use twill_net::netlink::MacAddr;

/// Bridge name used when `bridge` is absent.
pub const DEFAULT_BRIDGE: &str = "cni0";

/// Which masquerading implementation `ipMasqBackend` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MasqBackend {
    /// Not set: the implementation's choice.
    #[default]
    Auto,
    Iptables,
    Nftables,
}

/// One `vlanTrunk` entry: a single `id` and/or a `minID`..=`maxID` range.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct VlanTrunk {
    #[serde(rename = "minID", default)]
    pub min_id: Option<i64>,
    #[serde(rename = "maxID", default)]
    pub max_id: Option<i64>,
    #[serde(default)]
    pub id: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct Raw {
    #[serde(default)]
    bridge: Option<String>,
    #[serde(rename = "isGateway", default)]
    is_gateway: bool,
    #[serde(rename = "isDefaultGateway", default)]
    is_default_gateway: bool,
    #[serde(rename = "forceAddress", default)]
    force_address: bool,
    #[serde(rename = "ipMasq", default)]
    ip_masq: bool,
    #[serde(rename = "ipMasqBackend", default)]
    ip_masq_backend: Option<String>,
    #[serde(default)]
    mtu: i64,
    #[serde(rename = "hairpinMode", default)]
    hairpin_mode: bool,
    #[serde(rename = "promiscMode", default)]
    promisc_mode: bool,
    #[serde(default)]
    vlan: i64,
    #[serde(rename = "vlanTrunk", default)]
    vlan_trunk: Option<Vec<VlanTrunk>>,
    #[serde(rename = "preserveDefaultVlan", default)]
    preserve_default_vlan: Option<bool>,
    #[serde(default)]
    macspoofchk: bool,
    #[serde(default)]
    enabledad: bool,
    #[serde(rename = "disableContainerInterface", default)]
    disable_container_interface: bool,
    #[serde(rename = "portIsolation", default)]
    port_isolation: bool,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub network: String,
    pub bridge: String,
    /// Put the gateway address on the bridge (also true when `is_default_gateway`).
    pub is_gateway: bool,
    pub is_default_gateway: bool,
    pub force_address: bool,
    pub ip_masq: bool,
    pub masq_backend: MasqBackend,
    /// `None`: kernel default.
    pub mtu: Option<u32>,
    pub hairpin: bool,
    pub promisc: bool,
    /// Access VLAN (PVID, untagged); 0 = none.
    pub vlan: u16,
    /// Tagged VLANs, sorted and unique.
    pub vlan_trunk: Vec<u16>,
    pub preserve_default_vlan: bool,
    pub macspoofchk: bool,
    pub enable_dad: bool,
    pub disable_container_interface: bool,
    pub port_isolation: bool,
    /// The container interface's MAC, after precedence.
    pub mac: Option<MacAddr>,
    /// The IPAM plugin; `None` for `ipam: {}` or no `ipam` (layer 2 only).
    pub ipam_type: Option<String>,
    /// `dns` from the config, used instead of IPAM's when set.
    pub dns: Option<Dns>,
}

impl Config {
    /// VLAN filtering is needed on the bridge.
    pub fn vlan_filtering(&self) -> bool {
        self.vlan != 0 || !self.vlan_trunk.is_empty()
    }
}

/// Expands `vlanTrunk` into sorted unique VLAN ids, with the reference's error texts.
pub fn collect_vlan_trunk(trunk: &[VlanTrunk]) -> Result<Vec<u16>, String> {
    let valid = |v: i64| (1..=4094).contains(&v);
    let mut out = std::collections::BTreeSet::new();
    for item in trunk {
        match (item.min_id, item.max_id) {
            (Some(min), Some(max)) => {
                if !valid(min) {
                    return Err("incorrect trunk minID parameter".into());
                }
                if !valid(max) {
                    return Err("incorrect trunk maxID parameter".into());
                }
                if max < min {
                    return Err("minID is greater than maxID in trunk parameter".into());
                }
                out.extend((min..=max).filter_map(|v| u16::try_from(v).ok()));
            }
            (None, Some(_)) => {
                return Err(
                    "minID and maxID should be configured simultaneously, minID is missing".into(),
                );
            }
            (Some(_), None) => {
                return Err(
                    "minID and maxID should be configured simultaneously, maxID is missing".into(),
                );
            }
            (None, None) => {}
        }
        if let Some(id) = item.id {
            if !valid(id) {
                return Err("incorrect trunk id parameter".into());
            }
            out.extend(u16::try_from(id).ok());
        }
    }
    Ok(out.into_iter().collect())
}

/// The MAC sources in increasing precedence: `CNI_ARGS MAC=`, `args.cni.mac`,
/// `runtimeConfig.mac`. Empty strings do not count. Returns the winner and the key it came
/// from (for error messages).
pub fn pick_mac<'a>(
    cni_args: Option<&'a str>,
    args_cni: Option<&'a str>,
    runtime: Option<&'a str>,
) -> Option<(&'a str, &'static str)> {
    [
        (runtime, "runtimeConfig.mac"),
        (args_cni, "args.cni.mac"),
        (cni_args, "CNI_ARGS MAC"),
    ]
    .into_iter()
    .find_map(|(v, key)| v.filter(|s| !s.is_empty()).map(|s| (s, key)))
}

fn bad(msg: impl Into<String>) -> CniError {
    CniError::config(msg)
}

fn validate_bridge_name(name: &str) -> Result<(), CniError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(bad(format!(
            "invalid bridge name {name:?}: must be 1-15 bytes without '/', ':' or whitespace"
        )))
    }
}

impl Config {
    /// Parses and validates the request's config.
    pub fn from_request(req: &Request) -> Result<Config, CniError> {
        let raw: Raw = req.config()?;
        if raw.vlan < 0 || raw.vlan > 4094 {
            return Err(bad(format!(
                "invalid VLAN ID {} (must be between 0 and 4094)",
                raw.vlan
            )));
        }
        let vlan_trunk =
            collect_vlan_trunk(raw.vlan_trunk.as_deref().unwrap_or_default()).map_err(bad)?;
        if raw.vlan > 0 && !vlan_trunk.is_empty() {
            return Err(bad("cannot set vlan and vlanTrunk at the same time"));
        }
        if raw.hairpin_mode && raw.promisc_mode {
            return Err(bad(
                "cannot set hairpin mode and promiscuous mode at the same time",
            ));
        }
        let mtu = match raw.mtu {
            0 => None,
            m if (68..=65535).contains(&m) => u32::try_from(m).ok(),
            m => {
                return Err(bad(format!(
                    "invalid mtu {m} (must be between 68 and 65535)"
                )));
            }
        };
        let masq_backend = match raw.ip_masq_backend.as_deref() {
            None | Some("") => MasqBackend::Auto,
            Some("iptables") => MasqBackend::Iptables,
            Some("nftables") => MasqBackend::Nftables,
            Some(other) => return Err(bad(format!("unknown ipmasq backend {other:?}"))),
        };
        let bridge = raw
            .bridge
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| DEFAULT_BRIDGE.into());
        validate_bridge_name(&bridge)?;

        let ipam_type = req
            .conf
            .ipam
            .as_ref()
            .map(|i| i.ipam_type.clone())
            .filter(|t| !t.is_empty());
        if raw.disable_container_interface && ipam_type.is_some() {
            return Err(bad(
                "cannot use IPAM when DisableContainerInterface flag is set",
            ));
        }

        let runtime = req.conf.runtime()?;
        let args = req.conf.cni_args()?;
        let mac = match pick_mac(
            req.env.arg("MAC"),
            args.mac.as_deref(),
            runtime.mac.as_deref(),
        ) {
            None => None,
            Some((s, key)) => {
                let m: MacAddr = s
                    .parse()
                    .map_err(|_| bad(format!("invalid MAC address {s:?} in {key}")))?;
                if !m.is_unicast() {
                    return Err(bad(format!(
                        "invalid MAC address {s:?} in {key}: must be unicast"
                    )));
                }
                Some(m)
            }
        };

        Ok(Config {
            network: req.conf.name.clone(),
            bridge,
            is_gateway: raw.is_gateway || raw.is_default_gateway,
            is_default_gateway: raw.is_default_gateway,
            force_address: raw.force_address,
            ip_masq: raw.ip_masq,
            masq_backend,
            mtu,
            hairpin: raw.hairpin_mode,
            promisc: raw.promisc_mode,
            vlan: u16::try_from(raw.vlan).unwrap_or(0),
            vlan_trunk,
            preserve_default_vlan: raw.preserve_default_vlan.unwrap_or(true),
            macspoofchk: raw.macspoofchk,
            enable_dad: raw.enabledad,
            disable_container_interface: raw.disable_container_interface,
            port_isolation: raw.port_isolation,
            mac,
            ipam_type,
            dns: req.conf.dns.clone().filter(|d| !d.is_empty()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use twill_cni::{Command, Env};

    fn req(stdin: &str, cni_args: &[(&str, &str)]) -> Request {
        let env = Env {
            command: Command::Add,
            container_id: "c1".into(),
            netns: "/run/netns/x".into(),
            ifname: "eth0".into(),
            args: cni_args
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            path: vec![],
        };
        Request::new(env, stdin.as_bytes().to_vec()).unwrap()
    }

    fn parse(stdin: &str) -> Result<Config, CniError> {
        Config::from_request(&req(stdin, &[]))
    }

    #[test]
    fn defaults() {
        let c = parse(r#"{"cniVersion":"1.0.0","name":"n","type":"bridge"}"#).unwrap();
        assert_eq!(c.bridge, "cni0");
        assert!(!c.is_gateway && !c.is_default_gateway && !c.ip_masq);
        assert_eq!(c.mtu, None);
        assert!(c.preserve_default_vlan);
        assert_eq!(c.ipam_type, None);
        assert_eq!(c.mac, None);
        assert_eq!(c.masq_backend, MasqBackend::Auto);
    }

    #[test]
    fn default_gateway_implies_gateway_and_ipam_is_read() {
        let c = parse(
            r#"{"cniVersion":"1.0.0","name":"n","type":"bridge","bridge":"br-test",
                "isDefaultGateway":true,"mtu":1400,"ipam":{"type":"host-local"}}"#,
        )
        .unwrap();
        assert!(c.is_gateway && c.is_default_gateway);
        assert_eq!(c.mtu, Some(1400));
        assert_eq!(c.ipam_type.as_deref(), Some("host-local"));
        let c = parse(r#"{"cniVersion":"1.0.0","name":"n","type":"bridge","ipam":{}}"#).unwrap();
        assert_eq!(c.ipam_type, None, "ipam: {{}} is layer 2 only");
    }

    #[test]
    fn vlan_range_with_the_reference_message() {
        for v in [-100, 4095, 5000] {
            let e = parse(&format!(
                r#"{{"cniVersion":"1.0.0","name":"n","vlan":{v}}}"#
            ))
            .unwrap_err();
            assert_eq!(e.code, 7);
            assert_eq!(
                e.msg,
                format!("invalid VLAN ID {v} (must be between 0 and 4094)")
            );
        }
        assert_eq!(
            parse(r#"{"cniVersion":"1.0.0","name":"n","vlan":4094}"#)
                .unwrap()
                .vlan,
            4094
        );
        let c = parse(r#"{"cniVersion":"1.0.0","name":"n","vlan":100}"#).unwrap();
        assert!(c.vlan_filtering());
    }

    #[test]
    fn hairpin_and_promisc_exclude_each_other() {
        let e = parse(r#"{"cniVersion":"1.0.0","name":"n","hairpinMode":true,"promiscMode":true}"#)
            .unwrap_err();
        assert_eq!(e.code, 7);
        assert_eq!(
            e.msg,
            "cannot set hairpin mode and promiscuous mode at the same time"
        );
    }

    #[test]
    fn other_invalid_values_name_the_key() {
        let cases = [
            (
                r#""ipMasqBackend":"ebpf""#,
                "unknown ipmasq backend \"ebpf\"",
            ),
            (
                r#""mtu":-1"#,
                "invalid mtu -1 (must be between 68 and 65535)",
            ),
            (
                r#""bridge":"a-name-that-is-too-long""#,
                "invalid bridge name",
            ),
            (
                r#""vlan":5,"vlanTrunk":[{"id":7}]"#,
                "cannot set vlan and vlanTrunk at the same time",
            ),
            (
                r#""disableContainerInterface":true,"ipam":{"type":"host-local"}"#,
                "cannot use IPAM when DisableContainerInterface flag is set",
            ),
            (
                r#""runtimeConfig":{"mac":"nope"}"#,
                "invalid MAC address \"nope\" in runtimeConfig.mac",
            ),
            (
                r#""args":{"cni":{"mac":"01:00:00:00:00:00"}}"#,
                "must be unicast",
            ),
        ];
        for (extra, want) in cases {
            let e = parse(&format!(r#"{{"cniVersion":"1.0.0","name":"n",{extra}}}"#)).unwrap_err();
            assert_eq!(e.code, 7, "{extra}");
            assert!(e.msg.contains(want), "{extra}: {}", e.msg);
        }
        let e = parse(r#"{"cniVersion":"1.0.0","name":"n","mtu":"big"}"#).unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.details.contains("invalid type"), "{}", e.details);
    }

    #[test]
    fn mac_precedence_runtime_config_then_args_then_cni_args() {
        let stdin =
            |args: &str, rc: &str| format!(r#"{{"cniVersion":"1.0.0","name":"n"{args}{rc}}}"#);
        let a = r#","args":{"cni":{"mac":"02:00:00:00:00:02"}}"#;
        let r = r#","runtimeConfig":{"mac":"02:00:00:00:00:03"}"#;
        let env = [("MAC", "02:00:00:00:00:01")];
        let mac = |s: &str, e: &[(&str, &str)]| {
            Config::from_request(&req(s, e))
                .unwrap()
                .mac
                .map(|m| m.to_string())
        };
        assert_eq!(
            mac(&stdin("", ""), &env).as_deref(),
            Some("02:00:00:00:00:01")
        );
        assert_eq!(
            mac(&stdin(a, ""), &env).as_deref(),
            Some("02:00:00:00:00:02")
        );
        assert_eq!(
            mac(&stdin(a, r), &env).as_deref(),
            Some("02:00:00:00:00:03")
        );
        assert_eq!(
            mac(&stdin("", r), &[]).as_deref(),
            Some("02:00:00:00:00:03")
        );
        assert_eq!(mac(&stdin("", ""), &[]), None);
        // Empty values do not win.
        assert_eq!(
            pick_mac(Some("02:00:00:00:00:01"), Some(""), Some("")),
            Some(("02:00:00:00:00:01", "CNI_ARGS MAC"))
        );
    }

    #[test]
    fn vlan_trunk_like_the_reference() {
        let t = |min: Option<i64>, max: Option<i64>, id: Option<i64>| VlanTrunk {
            min_id: min,
            max_id: max,
            id,
        };
        assert_eq!(
            collect_vlan_trunk(&[t(None, None, Some(101)), t(Some(200), Some(203), None)]).unwrap(),
            vec![101, 200, 201, 202, 203]
        );
        assert_eq!(
            collect_vlan_trunk(&[t(Some(5), Some(6), Some(5))]).unwrap(),
            vec![5, 6],
            "duplicates collapse"
        );
        let err = |x: VlanTrunk| collect_vlan_trunk(&[x]).unwrap_err();
        assert_eq!(
            err(t(Some(0), Some(5), None)),
            "incorrect trunk minID parameter"
        );
        assert_eq!(
            err(t(Some(1), Some(4095), None)),
            "incorrect trunk maxID parameter"
        );
        assert_eq!(
            err(t(Some(9), Some(5), None)),
            "minID is greater than maxID in trunk parameter"
        );
        assert!(err(t(None, Some(5), None)).ends_with("minID is missing"));
        assert!(err(t(Some(5), None, None)).ends_with("maxID is missing"));
        assert_eq!(err(t(None, None, Some(-1))), "incorrect trunk id parameter");
        assert!(collect_vlan_trunk(&[]).unwrap().is_empty());
    }
}
