//! Lease keys and values in etcd, in flannel's format.
//!
//! Key: `<prefix>/subnets/<a.b.c.d>-<len>`; value: `{"PublicIP": ..., "BackendType": ...,
//! "BackendData": {...}}`. Keeping flannel's format means `netctl leases` reads a flannel
//! store and a flannel node reads ours. Unknown value keys are ignored (flannel adds
//! `PublicIPv6` and friends); a key under `subnets/` that does not parse is reported, not
//! silently skipped, by the caller.

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::net::Ipv4Addr;

/// The value stored for one node's subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseAttrs {
    #[serde(rename = "PublicIP")]
    pub public_ip: Ipv4Addr,
    #[serde(rename = "BackendType", default)]
    pub backend_type: String,
    /// Backend-specific data, e.g. `{"VNI":1,"VtepMAC":"..."}` for vxlan.
    #[serde(
        rename = "BackendData",
        default,
        skip_serializing_if = "Value::is_null"
    )]
    pub backend_data: Value,
    /// Our addition: the node that holds the lease (flannel ignores unknown keys).
    #[serde(rename = "NodeName", default, skip_serializing_if = "String::is_empty")]
    pub node_name: String,
}

/// The key prefix under which subnet leases live.
pub fn subnets_prefix(prefix: &str) -> String {
    format!("{}/subnets/", prefix.trim_end_matches('/'))
}

/// `<prefix>/subnets/10.244.5.0-24`.
pub fn subnet_key(prefix: &str, subnet: Ipv4Network) -> String {
    format!(
        "{}{}-{}",
        subnets_prefix(prefix),
        subnet.network(),
        subnet.prefix()
    )
}

/// `<prefix>/config`.
pub fn config_key(prefix: &str) -> String {
    format!("{}/config", prefix.trim_end_matches('/'))
}

/// Parses the subnet out of a lease key; `None` when the key is not a lease key.
pub fn parse_subnet_key(prefix: &str, key: &str) -> Option<Ipv4Network> {
    let rest = key.strip_prefix(&subnets_prefix(prefix))?;
    let (ip, len) = rest.split_once('-')?;
    let net = Ipv4Network::new(ip.parse().ok()?, len.parse().ok()?).ok()?;
    (net.network() == net.ip()).then_some(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let n: Ipv4Network = "10.244.5.0/24".parse().unwrap();
        let k = subnet_key("/twill/network/", n);
        assert_eq!(k, "/twill/network/subnets/10.244.5.0-24");
        assert_eq!(parse_subnet_key("/twill/network", &k), Some(n));
        assert_eq!(
            parse_subnet_key("/twill/network", "/twill/network/subnets/10.244.5.1-24"),
            None
        );
        assert_eq!(
            parse_subnet_key("/twill/network", "/twill/network/config"),
            None
        );
        assert_eq!(
            config_key("/coreos.com/network"),
            "/coreos.com/network/config"
        );
    }

    #[test]
    fn reads_flannel_values() {
        let v = r#"{"PublicIP":"192.168.1.10","PublicIPv6":null,"BackendType":"vxlan",
                    "BackendData":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}}"#;
        let a: LeaseAttrs = serde_json::from_str(v).unwrap();
        assert_eq!(a.public_ip, Ipv4Addr::new(192, 168, 1, 10));
        assert_eq!(a.backend_data["VtepMAC"], "aa:bb:cc:dd:ee:ff");
        let back = serde_json::to_value(&a).unwrap();
        assert_eq!(back["BackendType"], "vxlan");
        assert!(back.get("NodeName").is_none());
    }
}
