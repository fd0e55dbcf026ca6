//! ADD: bridge, veth pair, IPAM, addresses, gateway, then the result.
//!
//! The order is the reference's (`cmdAdd`), because runtimes and tests observe it: the
//! bridge is ensured first, the veth pair is created and enslaved, IPAM runs, the container
//! side is configured, the gateway goes onto the bridge, and ADD waits (about 2.5 s at
//! most) for the host end to be operationally up. Every step that leaves something behind
//! registers its undo with a [`Rollback`], so a failure at any later step releases the IPAM
//! allocation, removes the veth pair and the firewall rules, and leaves only shared state
//! (the bridge, its gateway address, forwarding sysctls) as the reference does: those may
//! already serve other containers being added concurrently.

use crate::config::Config;
use crate::firewall::{self, Attachment};
use crate::plan::{self, AddrPlan, Ends, Gateways};
use crate::rollback::Rollback;
use crate::{container_err, nl};
use ipnetwork::IpNetwork;
use std::io::Read;
use std::time::Duration;
use twill_cni::env::Command;
use twill_cni::error::INCOMPATIBLE_VERSION;
use twill_cni::version::Version;
use twill_cni::{CniError, CniResult, Request, invoke};
use twill_net::netlink::{
    BridgeOptions, BridgePort, BridgeVlan, Family, Handle, Link, Netns, OperState, Route,
    RouteScope, VethOptions, sysctl,
};

/// Delays between looks at the host veth's state (reference: 0, 50, 500, 1000, 1000 ms).
const OPER_UP_DELAYS: [Duration; 4] = [
    Duration::from_millis(50),
    Duration::from_millis(500),
    Duration::from_millis(1000),
    Duration::from_millis(1000),
];

/// How many random host-side names to try before giving up.
const VETH_NAME_ATTEMPTS: usize = 10;

pub(crate) fn add(req: &Request, conf: &Config) -> Result<CniResult, CniError> {
    let env = &req.env;
    // Results before 0.3.0 need an IP; refuse a layer-2 ADD at those versions before
    // creating anything (the reference creates the veth first and then fails to print).
    if conf.ipam_type.is_none() && Version::parse(&req.version)? < Version::V0_3_0 {
        return Err(CniError::new(
            INCOMPATIBLE_VERSION,
            "cannot convert: no valid IP addresses",
        ));
    }
    let netns = Netns::open(&env.netns).map_err(nl)?;
    let mut host = Handle::current().map_err(nl)?;
    let mut cont = Handle::in_netns(&netns).map_err(nl)?;
    if cont.find_link(&env.ifname).map_err(nl)?.is_some() {
        return Err(container_err(&env.ifname));
    }
    let mut rollback = Rollback::new();

    let bridge = ensure_bridge(&mut host, conf)?;
    let (host_veth, cont_veth) = create_veth(&mut host, &mut cont, &netns, conf, &env.ifname)?;
    let host_name = host_veth.name.clone();
    rollback.push(format!("delete veth {host_name}"), move || {
        delete_link_by_name(&host_name)
    });
    attach_port(&mut host, &bridge, &host_veth, conf)?;

    let attachment = Attachment {
        network: &conf.network,
        container_id: &env.container_id,
        ifname: &env.ifname,
    };
    let cont_mac = cont_veth
        .mac
        .ok_or_else(|| CniError::internal(format!("{} has no MAC address", env.ifname)))?;
    if conf.macspoofchk {
        firewall::macspoof_setup(&attachment, &host_veth.name, cont_mac)?;
        let (net, cid, ifname) = (
            conf.network.clone(),
            env.container_id.clone(),
            env.ifname.clone(),
        );
        rollback.push("remove macspoofchk rules", move || {
            let a = Attachment {
                network: &net,
                container_id: &cid,
                ifname: &ifname,
            };
            firewall::macspoof_teardown(&a).map_err(|e| e.to_string())
        });
    }

    let mut result = CniResult::default();
    let mut vlan_iface: Option<String> = None;
    if let Some(ipam) = &conf.ipam_type {
        let ipam_result = invoke::delegate_add(ipam, env, &req.stdin, &req.version)?;
        let (ipam_owned, env_owned, stdin) = (ipam.clone(), env.clone(), req.stdin.clone());
        rollback.push(format!("release IPAM allocation ({ipam})"), move || {
            invoke::delegate(&ipam_owned, Command::Del, &env_owned, &stdin)
                .map_err(|e| e.to_string())
        });
        result.ips = ipam_result.ips;
        result.routes = ipam_result.routes;
        result.dns = ipam_result.dns;
        if result.ips.is_empty() {
            return Err(CniError::internal("IPAM plugin returned missing IP config"));
        }
        let gateways = plan::apply_gateways(&mut result, conf.is_gateway, conf.is_default_gateway);
        configure_container(&mut cont, &netns, &cont_veth, &result, conf)?;
        if conf.is_gateway && (!gateways.v4.is_empty() || !gateways.v6.is_empty()) {
            if conf.vlan != 0 {
                // With an access VLAN the gateway lives on `<bridge>.<vlan>`, a veth whose
                // peer is an access port of that VLAN (shared by the network, never undone).
                let gw_link = ensure_vlan_gateway(&mut host, &bridge, conf)?;
                configure_gateway(&mut host, &gw_link, &gateways, conf)?;
                vlan_iface = Some(gw_link.name);
            } else {
                configure_gateway(&mut host, &bridge, &gateways, conf)?;
            }
        }
        if conf.ip_masq {
            let pod_addrs: Vec<IpNetwork> = result.ips.iter().map(|i| i.address).collect();
            firewall::masq_setup(&attachment, &pod_addrs, conf.masq_backend)?;
            let (net, cid, ifname) = (
                conf.network.clone(),
                env.container_id.clone(),
                env.ifname.clone(),
            );
            let backend = conf.masq_backend;
            rollback.push("remove ipMasq rules", move || {
                let a = Attachment {
                    network: &net,
                    container_id: &cid,
                    ifname: &ifname,
                };
                firewall::masq_teardown(&a, backend).map_err(|e| e.to_string())
            });
        }
    } else if !conf.disable_container_interface {
        cont.set_up(&cont_veth).map_err(nl)?;
    }

    let host_veth = if conf.disable_container_interface {
        // A container end left down keeps the host end down: nothing to wait for.
        host.link(&host_veth.name).map_err(nl)?
    } else {
        wait_port_up(&mut host, &host_veth.name)?
    };
    // The bridge's MAC may change when its first port arrives; report the final one.
    let bridge = host.link(&bridge.name).map_err(nl)?;
    let cont_veth = cont.link(&env.ifname).map_err(nl)?;
    result.interfaces = plan::interfaces(&Ends {
        bridge: (&bridge.name, mac_str(&bridge)),
        host: (&host_veth.name, mac_str(&host_veth)),
        container: (&cont_veth.name, mac_str(&cont_veth)),
        sandbox: &env.netns,
    });
    if let Some(name) = &vlan_iface {
        let l = host.link(name).map_err(nl)?;
        result.interfaces.push(twill_cni::Interface {
            name: l.name.clone(),
            mac: mac_str(&l),
            ..Default::default()
        });
    }
    if let Some(dns) = &conf.dns {
        result.dns = dns.clone();
    }
    // A result the config's version cannot express (two IPv4 addresses at 0.2.0) must fail
    // while the rollback is still armed.
    result.to_value(&req.version)?;
    rollback.commit();
    Ok(result)
}

/// Waits for the host end to be operationally up (`bridge port in error state` otherwise).
fn wait_port_up(host: &mut Handle, name: &str) -> Result<Link, CniError> {
    match host.wait_oper_state(name, OperState::Up, &OPER_UP_DELAYS) {
        Ok(l) => Ok(l),
        Err(twill_net::netlink::NetlinkError::Timeout { .. }) => {
            let state = host.link(name).map_err(nl)?.oper_state;
            Err(CniError::internal(format!(
                "bridge port in error state: {state}"
            )))
        }
        Err(e) => Err(nl(e)),
    }
}

fn mac_str(l: &Link) -> String {
    l.mac.map(|m| m.to_string()).unwrap_or_default()
}

fn delete_link_by_name(name: &str) -> Result<(), String> {
    let mut h = Handle::current().map_err(|e| e.to_string())?;
    match h.find_link(name) {
        Ok(Some(l)) => h.delete_link(&l).map_err(|e| e.to_string()),
        Ok(None) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// Creates the bridge if needed, or checks that the existing link is one; brings it up.
fn ensure_bridge(host: &mut Handle, conf: &Config) -> Result<Link, CniError> {
    let name = &conf.bridge;
    let not_bridge = || CniError::internal(format!("{name:?} already exists but is not a bridge"));
    let mut br = match host.find_link(name).map_err(nl)? {
        Some(l) => l,
        None => {
            let created = host.create_bridge(&BridgeOptions {
                name,
                mtu: conf.mtu,
                vlan_filtering: conf.vlan_filtering(),
            });
            match created {
                Ok(()) => {}
                // Created concurrently by another ADD: use it.
                Err(e) if e.is_exists() => {}
                Err(e) => {
                    return Err(CniError::internal(format!(
                        "failed to create bridge {name:?}: {e}"
                    )));
                }
            }
            host.link(name).map_err(nl)?
        }
    };
    if !br.is_bridge() {
        return Err(not_bridge());
    }
    if conf.vlan_filtering() && br.vlan_filtering != Some(true) {
        host.set_vlan_filtering(&br, true).map_err(nl)?;
    }
    if conf.promisc && !br.promisc {
        host.set_promisc(&br, true).map_err(nl)?;
    }
    // We own the routes of this interface; router advertisements must not add others.
    let _ = sysctl::write(None, &format!("net/ipv6/conf/{name}/accept_ra"), "0");
    if !br.up {
        host.set_up(&br).map_err(nl)?;
        br = host.link(name).map_err(nl)?;
    }
    Ok(br)
}

fn random_veth_name() -> Result<String, CniError> {
    let mut b = [0u8; 4];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| CniError::internal(format!("read /dev/urandom: {e}")))?;
    Ok(format!(
        "veth{:02x}{:02x}{:02x}{:02x}",
        b[0], b[1], b[2], b[3]
    ))
}

/// Creates the pair: `veth<random>` on the host, `ifname` directly in the container.
fn create_veth(
    host: &mut Handle,
    cont: &mut Handle,
    netns: &Netns,
    conf: &Config,
    ifname: &str,
) -> Result<(Link, Link), CniError> {
    for _ in 0..VETH_NAME_ATTEMPTS {
        let name = random_veth_name()?;
        let created = host.create_veth(&VethOptions {
            name: &name,
            peer_name: ifname,
            peer_netns: Some(netns),
            mtu: conf.mtu,
            mac: None,
            peer_mac: conf.mac,
        });
        match created {
            Ok(()) => {
                let h = host.link(&name).map_err(nl)?;
                host.set_up(&h).map_err(nl)?;
                let h = host.link(&name).map_err(nl)?;
                let c = cont.link(ifname).map_err(nl)?;
                return Ok((h, c));
            }
            Err(e) if e.is_exists() => {
                if host.find_link(&name).map_err(nl)?.is_some() {
                    continue; // our random name was taken: draw another
                }
                return Err(container_err(ifname));
            }
            Err(e) => return Err(nl(e)),
        }
    }
    Err(CniError::internal(format!(
        "failed to find a free host-side veth name after {VETH_NAME_ATTEMPTS} attempts"
    )))
}

/// Enslaves the host end, sets hairpin/isolation and VLANs.
fn attach_port(
    host: &mut Handle,
    bridge: &Link,
    port: &Link,
    conf: &Config,
) -> Result<(), CniError> {
    host.set_master(port, bridge).map_err(nl)?;
    host.set_bridge_port(
        port,
        &BridgePort {
            hairpin: conf.hairpin,
            isolated: conf.port_isolation,
        },
    )
    .map_err(nl)?;
    if !conf.vlan_filtering() {
        return Ok(());
    }
    if !conf.preserve_default_vlan {
        for v in host.bridge_vlans(port).map_err(nl)? {
            host.del_bridge_vlan(port, v.vid).map_err(nl)?;
        }
    }
    if conf.vlan != 0 {
        host.add_bridge_vlan(
            port,
            &BridgeVlan {
                vid: conf.vlan,
                pvid: true,
                untagged: true,
            },
        )
        .map_err(nl)?;
    }
    for vid in &conf.vlan_trunk {
        host.add_bridge_vlan(
            port,
            &BridgeVlan {
                vid: *vid,
                pvid: false,
                untagged: false,
            },
        )
        .map_err(nl)?;
    }
    Ok(())
}

/// `<bridge>.<vlan>`: a host veth carrying the gateway address whose peer is an untagged
/// access port of the VLAN on the bridge (the reference's `ensureVlanInterface`).
fn ensure_vlan_gateway(host: &mut Handle, bridge: &Link, conf: &Config) -> Result<Link, CniError> {
    let name = format!("{}.{}", bridge.name, conf.vlan);
    if name.len() > 15 {
        return Err(CniError::config(format!(
            "vlan gateway interface name {name:?} is longer than 15 bytes: use a shorter bridge name"
        )));
    }
    if let Some(l) = host.find_link(&name).map_err(nl)? {
        return Ok(l);
    }
    let port_conf = Config {
        hairpin: false,
        port_isolation: false,
        vlan_trunk: Vec::new(),
        ..conf.clone()
    };
    for _ in 0..VETH_NAME_ATTEMPTS {
        let peer = random_veth_name()?;
        let created = host.create_veth(&VethOptions {
            name: &name,
            peer_name: &peer,
            peer_netns: None,
            mtu: Some(bridge.mtu),
            mac: None,
            peer_mac: None,
        });
        match created {
            Ok(()) => {
                let port = host.link(&peer).map_err(nl)?;
                host.set_up(&port).map_err(nl)?;
                attach_port(host, bridge, &port, &port_conf)?;
                let gw = host.link(&name).map_err(nl)?;
                host.set_up(&gw).map_err(nl)?;
                return host.link(&name).map_err(nl);
            }
            Err(e) if e.is_exists() => {
                // Created concurrently by another ADD, or our random peer name was taken.
                if let Some(l) = host.find_link(&name).map_err(nl)? {
                    return Ok(l);
                }
            }
            Err(e) => return Err(nl(e)),
        }
    }
    Err(CniError::internal(format!(
        "failed to create vlan gateway {name}: no free veth name after {VETH_NAME_ATTEMPTS} attempts"
    )))
}

/// Sysctls, addresses, link up and routes inside the container (`ipam.ConfigureIface`).
fn configure_container(
    cont: &mut Handle,
    netns: &Netns,
    link: &Link,
    result: &CniResult,
    conf: &Config,
) -> Result<(), CniError> {
    let ifname = link.name.as_str();
    let has_v6 = result.ips.iter().any(|i| i.address.is_ipv6());
    let enable_dad = conf.enable_dad;
    netns
        .run(|| -> Result<(), CniError> {
            // Best effort, as in the reference: a kernel without IPv6 has no such files.
            if enable_dad {
                let _ = sysctl::write(None, &format!("net/ipv6/conf/{ifname}/enhanced_dad"), "1");
                let _ = sysctl::write(None, &format!("net/ipv6/conf/{ifname}/accept_dad"), "1");
            } else {
                let _ = sysctl::write(None, &format!("net/ipv6/conf/{ifname}/accept_dad"), "0");
            }
            let _ = sysctl::write(None, &format!("net/ipv4/conf/{ifname}/arp_notify"), "1");
            if has_v6 {
                for dev in ["lo", ifname] {
                    let key = format!("net/ipv6/conf/{dev}/disable_ipv6");
                    if sysctl::read(None, &key).map(|v| v != "0").unwrap_or(false) {
                        sysctl::write(None, &key, "0").map_err(|e| {
                            CniError::internal(format!("failed to enable IPv6 on {dev}: {e}"))
                        })?;
                    }
                }
            }
            Ok(())
        })
        .map_err(nl)??;

    let mut v4gw = None;
    let mut v6gw = None;
    for ip in &result.ips {
        if ip.interface != Some(plan::CONTAINER_IF) {
            continue;
        }
        cont.add_address(link, &ip.address).map_err(nl)?;
        let slot = if ip.address.is_ipv4() {
            &mut v4gw
        } else {
            &mut v6gw
        };
        if slot.is_none() {
            *slot = ip.gateway;
        }
    }
    cont.set_up(link).map_err(nl)?;
    for r in &result.routes {
        let mut route = Route::new(r.dst);
        route.gateway = r.gw.or(if r.dst.is_ipv4() { v4gw } else { v6gw });
        route.oif = Some(link.index);
        route.metric = r.priority;
        if let Some(t) = r.table {
            route.table = t;
        }
        if let Some(s) = r.scope.and_then(|s| u8::try_from(s).ok()) {
            route.scope = RouteScope::from_u8(s);
        }
        cont.add_route(&route).map_err(nl)?;
    }
    Ok(())
}

/// Gateway addresses on `bridge` (the bridge, or its VLAN gateway veth) with `ensureAddr`
/// semantics, a pinned bridge MAC, forwarding on.
fn configure_gateway(
    host: &mut Handle,
    bridge: &Link,
    gws: &Gateways,
    conf: &Config,
) -> Result<(), CniError> {
    for (family, list) in [(Family::V4, &gws.v4), (Family::V6, &gws.v6)] {
        for gw in list {
            let existing: Vec<IpNetwork> = host
                .addresses(Some(bridge), Some(family))
                .map_err(nl)?
                .into_iter()
                .map(|a| a.address)
                .collect();
            match plan::plan_bridge_addr(&existing, gw, conf.force_address) {
                AddrPlan::Present => {}
                AddrPlan::Conflict { .. } => {
                    return Err(CniError::internal(format!(
                        "failed to set bridge addr: {:?} already has an IP address different from {gw}",
                        bridge.name
                    )));
                }
                AddrPlan::Add { remove } => {
                    for old in &remove {
                        host.del_address(bridge, old).map_err(nl)?;
                    }
                    match host.add_address(bridge, gw) {
                        Ok(()) => {}
                        Err(e) if e.is_exists() => {}
                        Err(e) => return Err(nl(e)),
                    }
                }
            }
            // Pin the MAC the bridge had before its first port arrived (the reference does
            // the same with its stale snapshot): otherwise the bridge takes the lowest port
            // MAC and changes as ports come and go. Setting it marks it user-assigned.
            // A bridge whose last port left has the all-zero MAC; pin the current one then.
            let pinned = match bridge.mac.filter(|m| m.0 != [0; 6] && bridge.is_bridge()) {
                Some(m) => Some(m),
                None => host.link(&bridge.name).map_err(nl)?.mac,
            };
            if let Some(mac) = pinned.filter(|m| m.0 != [0; 6] && bridge.is_bridge()) {
                host.set_mac(bridge, mac).map_err(nl)?;
            }
        }
        if !list.is_empty() {
            let key = match family {
                Family::V4 => "net/ipv4/ip_forward",
                Family::V6 => "net/ipv6/conf/all/forwarding",
            };
            if sysctl::read(None, key).map_err(nl)? != "1" {
                sysctl::write(None, key, "1")
                    .map_err(|e| CniError::internal(format!("failed to enable forwarding: {e}")))?;
            }
        }
    }
    Ok(())
}
