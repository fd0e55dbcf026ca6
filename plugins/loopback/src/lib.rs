//! The `loopback` CNI plugin: a drop-in for the reference `plugins/main/loopback`.
//!
//! ADD brings `CNI_IFNAME` (runtimes pass `lo`) up inside the container's namespace and
//! reports it with the kernel's loopback addresses (`127.0.0.1/8`, `::1/128`) and the
//! all-zero MAC, like the reference; a `prevResult` from an earlier plugin is passed through
//! unchanged. DEL sets it down again and is idempotent: a namespace that no longer exists
//! is success. CHECK fails unless the interface is up.
//!
//! The reference prints its result with a quirk: it labels a 1.0.0-shaped result with the
//! config's version, so at 0.3.x/0.4.0 its `ips` lack the `version` field those formats
//! require, and at 0.1.0/0.2.0 it prints `interfaces`/`ips`. We print each version's
//! proper format (identical at 1.0.0 and later).

use ipnetwork::IpNetwork;
use twill_cni::{CniError, CniResult, Interface, IpConfig, Plugin, Request};
use twill_net::netlink::{Family, Handle, NetlinkError, Netns};

/// The plugin, for [`twill_cni::skel::main`].
pub struct Loopback;

fn nl(e: NetlinkError) -> CniError {
    CniError::internal(e.to_string())
}

fn open(netns: &str) -> Result<Netns, CniError> {
    Netns::open(netns).map_err(nl)
}

/// The result of ADD for the addresses found on the interface.
pub fn build_result(ifname: &str, sandbox: &str, addrs: &[IpNetwork]) -> CniResult {
    let first = |v4: bool| addrs.iter().find(|a| a.is_ipv4() == v4).copied();
    CniResult {
        interfaces: vec![Interface {
            name: ifname.to_owned(),
            mac: "00:00:00:00:00:00".into(),
            sandbox: sandbox.to_owned(),
            ..Default::default()
        }],
        ips: [first(true), first(false)]
            .into_iter()
            .flatten()
            .map(|address| IpConfig {
                address,
                gateway: None,
                interface: Some(0),
            })
            .collect(),
        ..Default::default()
    }
}

impl Plugin for Loopback {
    fn about(&self) -> String {
        format!("CNI loopback plugin (twill {})", env!("CARGO_PKG_VERSION"))
    }

    fn add(&self, req: &Request) -> Result<CniResult, CniError> {
        let env = &req.env;
        let ns = open(&env.netns)?;
        let mut h = Handle::in_netns(&ns).map_err(nl)?;
        let link = h.link(&env.ifname).map_err(nl)?;
        h.set_up(&link).map_err(nl)?;
        let mut addrs = Vec::new();
        for fam in [Family::V4, Family::V6] {
            for a in h.addresses(Some(&link), Some(fam)).map_err(nl)? {
                if !a.address.ip().is_loopback() {
                    return Err(CniError::internal(format!(
                        "loopback interface found with non-loopback address {:?}",
                        a.address.ip().to_string()
                    )));
                }
                addrs.push(a.address);
            }
        }
        if let Some(prev) = req.prev_result()? {
            return Ok(prev);
        }
        Ok(build_result(&env.ifname, &env.netns, &addrs))
    }

    fn del(&self, req: &Request) -> Result<(), CniError> {
        let env = &req.env;
        if env.netns.is_empty() {
            return Ok(());
        }
        let ns = match Netns::open(&env.netns) {
            Ok(ns) => ns,
            Err(e) if e.is_not_found() || matches!(e, NetlinkError::Invalid { .. }) => {
                return Ok(());
            }
            Err(e) => return Err(nl(e)),
        };
        let mut h = Handle::in_netns(&ns).map_err(nl)?;
        match h.find_link(&env.ifname).map_err(nl)? {
            Some(link) => h.set_down(&link).map_err(nl),
            None => Ok(()),
        }
    }

    fn check(&self, req: &Request) -> Result<(), CniError> {
        let env = &req.env;
        let ns = open(&env.netns)?;
        let mut h = Handle::in_netns(&ns).map_err(nl)?;
        let link = h.link(&env.ifname).map_err(nl)?;
        if !link.up {
            return Err(CniError::internal("loopback interface is down"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_like_the_reference() {
        let addrs: Vec<IpNetwork> =
            vec!["127.0.0.1/8".parse().unwrap(), "::1/128".parse().unwrap()];
        let r = build_result("lo", "/run/netns/x", &addrs);
        let v = r.to_value("1.0.0").unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "cniVersion": "1.0.0",
                "interfaces": [{"name":"lo","mac":"00:00:00:00:00:00","sandbox":"/run/netns/x"}],
                "ips": [{"interface":0,"address":"127.0.0.1/8"},{"interface":0,"address":"::1/128"}],
                "dns": {}
            })
        );
        let v = r.to_value("0.2.0").unwrap();
        assert_eq!(v["ip4"]["ip"], "127.0.0.1/8");
        assert_eq!(v["ip6"]["ip"], "::1/128");
    }

    #[test]
    fn without_ipv6_only_the_v4_address() {
        let addrs: Vec<IpNetwork> = vec!["127.0.0.1/8".parse().unwrap()];
        let r = build_result("lo", "/run/netns/x", &addrs);
        assert_eq!(r.ips.len(), 1);
    }
}
