//! CHECK: does the attachment still look like ADD left it?
//!
//! Follows the reference `cmdCheck`: IPAM CHECK first, then a prevResult is required; the
//! bridge named in the config must be a bridge whose MAC (if recorded) and promiscuous mode
//! match; the container interface recorded with `sandbox == CNI_NETNS` must be a veth with
//! the recorded MAC; one of the recorded host interfaces must be its peer and be enslaved
//! to the bridge; and the container must still hold every recorded address and route (other
//! routes added by later plugins are tolerated, as the spec asks).

use crate::config::Config;
use crate::firewall::{self, Attachment};
use crate::nl;
use ipnetwork::IpNetwork;
use twill_cni::env::Command;
use twill_cni::{CniError, Interface, Request, invoke};
use twill_net::netlink::{Family, Handle, Link, Netns};

fn fail(msg: impl Into<String>) -> CniError {
    CniError::internal(msg)
}

pub(crate) fn check(req: &Request, conf: &Config) -> Result<(), CniError> {
    let env = &req.env;
    let netns = Netns::open(&env.netns).map_err(nl)?;
    if let Some(ipam) = &conf.ipam_type {
        invoke::delegate(ipam, Command::Check, env, &req.stdin)?;
    }
    let prev = req
        .prev_result()?
        .ok_or_else(|| CniError::config("Required prevResult missing"))?;

    let bridge_rec = prev.interfaces.iter().find(|i| i.name == conf.bridge);
    let cont_rec = prev
        .interfaces
        .iter()
        .find(|i| i.name == env.ifname && i.sandbox == env.netns);

    let mut host = Handle::current().map_err(nl)?;
    let bridge = check_bridge(&mut host, bridge_rec, conf)?;
    let Some(cont_rec) = cont_rec else {
        return Err(fail(format!(
            "Sandbox in prevResult doesn't match configured netns: {}",
            env.netns
        )));
    };
    let mut cont = Handle::in_netns(&netns).map_err(nl)?;
    let cont_link = check_container(&mut cont, cont_rec)?;

    let mut veth_found = false;
    for rec in &prev.interfaces {
        if rec.name == conf.bridge || rec.name == cont_rec.name || !rec.sandbox.is_empty() {
            continue;
        }
        let Some(l) = host.find_link(&rec.name).map_err(nl)? else {
            continue;
        };
        if !l.is_veth()
            || Some(l.index) != cont_link.peer_index
            || l.peer_index != Some(cont_link.index)
            || l.master != Some(bridge.index)
        {
            continue;
        }
        if !rec.mac.is_empty() && l.mac.map(|m| m.to_string()).as_deref() != Some(rec.mac.as_str())
        {
            return Err(fail(format!(
                "Interface {} Mac doesn't match: {} not found",
                rec.name, rec.mac
            )));
        }
        veth_found = true;
        break;
    }
    if !veth_found {
        return Err(fail(format!(
            "CNI veth created for bridge {} was not found",
            conf.bridge
        )));
    }

    // Addresses and routes recorded for the container interface.
    let cont_index = prev.sandbox_interface(&env.ifname);
    let have: Vec<IpNetwork> = cont
        .addresses(Some(&cont_link), None)
        .map_err(nl)?
        .into_iter()
        .map(|a| a.address)
        .collect();
    let mut pod_addrs = Vec::new();
    for ip in &prev.ips {
        if ip.interface.is_some() && ip.interface != cont_index {
            continue;
        }
        if !have.contains(&ip.address) {
            return Err(fail(format!(
                "Failed to match addr {} on interface {}",
                ip.address, env.ifname
            )));
        }
        pod_addrs.push(ip.address);
    }
    let mut routes = cont.routes(Family::V4).map_err(nl)?;
    routes.extend(cont.routes(Family::V6).map_err(nl)?);
    for r in &prev.routes {
        let found = routes.iter().any(|k| {
            k.table == r.table.unwrap_or(twill_net::netlink::TABLE_MAIN)
                && k.dst == r.dst
                && (r.gw.is_none() || k.gateway == r.gw)
        });
        if !found {
            let via = r.gw.map(|g| format!(" via {g}")).unwrap_or_default();
            return Err(fail(format!(
                "Failed to find route {}{via} in the container",
                r.dst
            )));
        }
    }

    if conf.ip_masq && conf.ipam_type.is_some() {
        let a = Attachment {
            network: &conf.network,
            container_id: &env.container_id,
            ifname: &env.ifname,
        };
        firewall::masq_check(&a, &pod_addrs, conf.masq_backend)?;
    }
    Ok(())
}

fn check_bridge(
    host: &mut Handle,
    rec: Option<&Interface>,
    conf: &Config,
) -> Result<Link, CniError> {
    let Some(rec) = rec else {
        return Err(fail(format!(
            "CNI created bridge {} in host namespace was not found",
            conf.bridge
        )));
    };
    let link = host
        .find_link(&rec.name)
        .map_err(nl)?
        .ok_or_else(|| fail(format!("Interface name {} not found", rec.name)))?;
    if !link.is_bridge() {
        return Err(fail(format!(
            "Interface {} does not have link type of bridge",
            rec.name
        )));
    }
    if !rec.mac.is_empty() && link.mac.map(|m| m.to_string()).as_deref() != Some(rec.mac.as_str()) {
        return Err(fail(format!(
            "Bridge interface {} Mac doesn't match: {}",
            rec.name, rec.mac
        )));
    }
    if link.promisc != conf.promisc {
        return Err(fail(format!(
            "Bridge interface {} configured Promisc Mode {} doesn't match current state: {}",
            rec.name, conf.promisc, link.promisc
        )));
    }
    Ok(link)
}

fn check_container(cont: &mut Handle, rec: &Interface) -> Result<Link, CniError> {
    let link = cont
        .find_link(&rec.name)
        .map_err(nl)?
        .ok_or_else(|| fail(format!("Interface name {} not found", rec.name)))?;
    if !link.is_veth() {
        return Err(fail(format!(
            "Error: Container interface {} not of type veth",
            rec.name
        )));
    }
    if !rec.mac.is_empty() && link.mac.map(|m| m.to_string()).as_deref() != Some(rec.mac.as_str()) {
        return Err(fail(format!(
            "Interface {} Mac {} doesn't match container Mac: {}",
            rec.name,
            rec.mac,
            link.mac.map(|m| m.to_string()).unwrap_or_default()
        )));
    }
    Ok(link)
}
