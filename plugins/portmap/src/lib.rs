//! The `portmap` CNI plugin: host ports forwarded to a pod, with nftables.
//!
//! Chained after an interface plugin (bridge, ptp), it reads the pod's addresses from
//! `prevResult` and the mappings from `runtimeConfig.portMappings` (capability
//! `portMappings`), and programs DNAT for traffic arriving at the node, from the node itself
//! (including 127.0.0.1) and from the pod to its own mapping (hairpin). It behaves like the
//! reference plugin's nftables backend ([`rules`] lists the differences), with three
//! additions: everything one ADD changes is one atomic nftables batch (a failure leaves
//! nothing behind), CHECK compares rule content rather than counting rules, and GC (spec
//! 1.1) removes the rules of attachments the runtime no longer lists, within this network.
//!
//! Order of ADD, as in the reference: validate the whole config, require `prevResult`,
//! pass it through untouched when there are no mappings; then set `route_localnet` on the
//! pod-facing interface (IPv4 with `snat`), apply the rules, and delete stale UDP conntrack
//! entries for the mapped host ports so running UDP flows pick up the new destination
//! (failures there are reported on stderr only, like the reference). DEL needs no
//! `prevResult` or mappings: it removes whatever rules this attachment owns.

pub mod config;
pub mod kernel;
pub mod rules;

use config::{PortmapConf, RawConf};
use std::collections::HashSet;
use std::net::IpAddr;
use twill_cni::error::INVALID_NETWORK_CONFIG;
use twill_cni::{CniError, CniResult, Plugin, Request};
use twill_net::nft::owner::Owner;

/// The plugin.
pub struct Portmap;

fn owner(req: &Request) -> Owner {
    Owner::new(&req.env.container_id, &req.env.ifname, Some(&req.conf.name))
}

fn conf_of(req: &Request) -> Result<PortmapConf, CniError> {
    let raw: RawConf = req.config()?;
    let mappings = config::raw_mappings(req.conf.runtime_config.as_ref())?;
    config::parse(&raw, &mappings)
}

fn pod_ips(req: &Request, prev: &CniResult) -> Vec<IpAddr> {
    let (v4, v6) = config::container_ips(prev, &req.env.ifname);
    [v4, v6].into_iter().flatten().map(|n| n.ip()).collect()
}

impl Plugin for Portmap {
    fn about(&self) -> String {
        "CNI portmap plugin (twill, nftables)".to_owned()
    }

    fn add(&self, req: &Request) -> Result<CniResult, CniError> {
        let conf = conf_of(req)?;
        let prev = req.prev_result()?.ok_or_else(|| {
            CniError::new(INVALID_NETWORK_CONFIG, "must be called as chained plugin")
        })?;
        if conf.mappings.is_empty() {
            return Ok(prev);
        }
        let pods = pod_ips(req, &prev);
        if pods.is_empty() {
            return Ok(prev);
        }
        let comment = owner(req).comment();
        if conf.snat
            && let Some(IpAddr::V4(v4)) = pods.iter().find(|p| p.is_ipv4())
        {
            kernel::enable_route_localnet(*v4)
                .map_err(|e| CniError::internal(format!("unable to enable route_localnet: {e}")))?;
        }
        kernel::apply(&conf, &comment, &pods).map_err(|e| {
            CniError::internal(format!(
                "unable to set up nftables rules for port mappings: {e}"
            ))
        })?;
        let udp: Vec<u16> = conf
            .mappings
            .iter()
            .filter(|m| m.protocol == twill_net::nft::L4Proto::Udp)
            .map(|m| m.host_port)
            .collect();
        if !udp.is_empty() {
            for pod in &pods {
                if let Err(e) = kernel::flush_udp(pod, &udp) {
                    eprintln!(
                        "portmap: failed to delete stale UDP conntrack entries for {pod}: {e}"
                    );
                }
            }
        }
        Ok(prev)
    }

    fn del(&self, req: &Request) -> Result<(), CniError> {
        kernel::remove(&owner(req).comment())
            .map_err(|e| CniError::internal(format!("error deleting nftables rules: {e}")))
    }

    fn check(&self, req: &Request) -> Result<(), CniError> {
        let conf = conf_of(req)?;
        let prev = req
            .prev_result()?
            .ok_or_else(|| CniError::new(INVALID_NETWORK_CONFIG, "Required prevResult missing"))?;
        if conf.mappings.is_empty() {
            return Ok(());
        }
        let pods = pod_ips(req, &prev);
        kernel::verify(&conf, &owner(req).comment(), &pods)
            .map_err(|e| CniError::internal(e.to_string()))
    }

    fn gc(&self, req: &Request) -> Result<(), CniError> {
        let network = &req.conf.name;
        let keep: HashSet<String> = req
            .conf
            .gc_valid_attachments()
            .iter()
            .map(|a| Owner::new(&a.container_id, &a.ifname, Some(network)).comment())
            .collect();
        kernel::gc(network, &keep)
            .map_err(|e| CniError::internal(format!("garbage-collect port mappings: {e}")))
    }
}
