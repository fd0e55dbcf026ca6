//! The one place the daemon changes routes, neighbours and FDB entries: makes the kernel
//! match a [`Desired`] state, touching only what twilld owns.
//!
//! Ownership: routes carry protocol [`RTPROT_TWILL`] (so `ip route show proto 116` lists
//! exactly ours, and a route another agent added is never removed); neighbour and FDB entries
//! are ours when they are permanent entries on our own VXLAN device. Reconcile is
//! mark-and-sweep against a fresh dump every time (level-triggered): entries that should exist
//! are replaced in place (one netlink request, no gap), then entries we own that should not
//! exist are deleted. Nothing is deleted before the first complete peer list arrived (the
//! caller guarantees this), which together with in-place replacement is why restarting the
//! daemon does not interrupt pod traffic.
//!
//! Calls go through the plugins' synchronous netlink layer; each is a sub-millisecond request
//! on a socket owned by the single reconcile task, so they run inline rather than through a
//! second, asynchronous netlink implementation.

use super::plan::{Desired, FdbSpec, NeighSpec, RTPROT_TWILL, RouteSpec, diff};
use ipnetwork::{IpNetwork, Ipv4Network};
use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use twill_net::netlink::{Family, Handle, Link, MacAddr, NetlinkError, Route, TABLE_MAIN};

/// What one reconcile pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub routes_added: usize,
    pub routes_deleted: usize,
    pub neighbours_added: usize,
    pub neighbours_deleted: usize,
    pub fdb_added: usize,
    pub fdb_deleted: usize,
    /// Failures; the pass continues past each one.
    pub errors: Vec<String>,
    /// What we own in the kernel after the pass (routes, neighbours, FDB entries).
    pub owned: (usize, usize, usize),
}

impl Report {
    pub fn changed(&self) -> bool {
        self.routes_added
            + self.routes_deleted
            + self.neighbours_added
            + self.neighbours_deleted
            + self.fdb_added
            + self.fdb_deleted
            > 0
    }
}

/// What twilld currently owns in the kernel, in plan terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owned {
    pub routes: BTreeSet<RouteSpec>,
    pub neighbours: BTreeSet<NeighSpec>,
    pub fdb: BTreeSet<FdbSpec>,
    /// Destinations of main-table routes somebody else owns: never replaced by us.
    pub foreign: BTreeSet<Ipv4Network>,
}

/// Reads what we own: routes with our protocol, and permanent neighbour/FDB entries on
/// `overlay_dev` (if it exists).
pub fn owned(h: &mut Handle, overlay_dev: Option<&str>) -> Result<Owned, NetlinkError> {
    let links = h.links()?;
    let names: HashMap<u32, String> = links.iter().map(|l| (l.index, l.name.clone())).collect();
    let mut out = Owned::default();
    for r in h.routes(Family::V4)? {
        if r.table != TABLE_MAIN || !r.unicast {
            continue;
        }
        if r.protocol != RTPROT_TWILL {
            if let IpNetwork::V4(dst) = r.dst {
                out.foreign.insert(dst);
            }
            continue;
        }
        let (IpNetwork::V4(dst), Some(IpAddr::V4(gw))) = (r.dst, r.gateway) else {
            continue;
        };
        let dev = r
            .oif
            .and_then(|i| names.get(&i).cloned())
            .unwrap_or_default();
        out.routes.insert(RouteSpec {
            dst,
            gateway: gw,
            dev,
            onlink: r.onlink,
        });
    }
    if let Some(dev) = overlay_dev
        && let Some(link) = links.iter().find(|l| l.name == dev)
    {
        for n in h.neighbours(link)? {
            if n.permanent {
                out.neighbours.insert(NeighSpec {
                    dev: dev.to_owned(),
                    ip: n.ip,
                    mac: n.mac.0,
                });
            }
        }
        for f in h.fdb(link)? {
            if let (true, Some(dst)) = (f.permanent, f.dst) {
                out.fdb.insert(FdbSpec {
                    dev: dev.to_owned(),
                    mac: f.mac.0,
                    dst,
                });
            }
        }
    }
    Ok(out)
}

fn kernel_route(spec: &RouteSpec, link: &Link) -> Route {
    let mut r = Route::new(IpNetwork::V4(spec.dst));
    r.gateway = Some(IpAddr::V4(spec.gateway));
    r.oif = Some(link.index);
    r.onlink = spec.onlink;
    r.protocol = RTPROT_TWILL;
    r
}

/// Makes the kernel match `want`. Continues past failures and reports them all.
pub fn reconcile(h: &mut Handle, want: &Desired, overlay_dev: Option<&str>) -> Report {
    let mut rep = Report::default();
    let have = match owned(h, overlay_dev) {
        Ok(o) => o,
        Err(e) => {
            rep.errors.push(format!("read kernel state: {e}"));
            return rep;
        }
    };
    let mut links: HashMap<String, Option<Link>> = HashMap::new();
    let mut link = |h: &mut Handle, name: &str| -> Result<Link, String> {
        if !links.contains_key(name) {
            let l = h.find_link(name).map_err(|e| e.to_string())?;
            links.insert(name.to_owned(), l);
        }
        links
            .get(name)
            .cloned()
            .flatten()
            .ok_or_else(|| format!("device {name} does not exist"))
    };

    // Routes: replace what differs (keyed by destination, so a changed gateway is one
    // in-place replace), then delete destinations we own that are no longer wanted.
    let route_changes = diff(&want.routes, &have.routes);
    let wanted_dsts: BTreeSet<Ipv4Network> = want.routes.iter().map(|r| r.dst).collect();
    for spec in &route_changes.add {
        if have.foreign.contains(&spec.dst) {
            // NLM_F_REPLACE matches on destination only: it would take over (and a later
            // sweep would delete) a connected or static route the node depends on.
            rep.errors.push(format!(
                "route to {} exists and is not twilld's (protocol {RTPROT_TWILL}); not replaced",
                spec.dst
            ));
            continue;
        }
        match link(h, &spec.dev).and_then(|l| {
            h.replace_route(&kernel_route(spec, &l))
                .map_err(|e| e.to_string())
        }) {
            Ok(()) => rep.routes_added += 1,
            Err(e) => rep.errors.push(e),
        }
    }
    for spec in route_changes
        .del
        .iter()
        .filter(|r| !wanted_dsts.contains(&r.dst))
    {
        let result = match link(h, &spec.dev) {
            Ok(l) => h.del_route(&kernel_route(spec, &l)),
            // Device gone: its routes went with it.
            Err(_) => Ok(()),
        };
        match result {
            Ok(()) => rep.routes_deleted += 1,
            Err(e) if e.is_not_found() => {}
            Err(e) => rep.errors.push(e.to_string()),
        }
    }

    // Neighbours: keyed by (dev, ip); replace sets the MAC in place.
    let neigh_changes = diff(&want.neighbours, &have.neighbours);
    let wanted_ips: BTreeSet<(String, std::net::Ipv4Addr)> = want
        .neighbours
        .iter()
        .map(|n| (n.dev.clone(), n.ip))
        .collect();
    for n in &neigh_changes.add {
        match link(h, &n.dev).and_then(|l| {
            h.replace_neighbour(&l, n.ip, MacAddr(n.mac))
                .map_err(|e| e.to_string())
        }) {
            Ok(()) => rep.neighbours_added += 1,
            Err(e) => rep.errors.push(e),
        }
    }
    for n in neigh_changes
        .del
        .iter()
        .filter(|n| !wanted_ips.contains(&(n.dev.clone(), n.ip)))
    {
        match link(h, &n.dev).map(|l| h.del_neighbour(&l, n.ip)) {
            Ok(Ok(())) => rep.neighbours_deleted += 1,
            Ok(Err(e)) if !e.is_not_found() => rep.errors.push(e.to_string()),
            _ => {}
        }
    }

    // FDB: (mac, dst) pairs; a MAC pointing elsewhere is replaced, stale pairs deleted.
    let fdb_changes = diff(&want.fdb, &have.fdb);
    for f in &fdb_changes.add {
        match link(h, &f.dev).and_then(|l| {
            h.replace_fdb(&l, MacAddr(f.mac), f.dst)
                .map_err(|e| e.to_string())
        }) {
            Ok(()) => rep.fdb_added += 1,
            Err(e) => rep.errors.push(e),
        }
    }
    for f in &fdb_changes.del {
        match link(h, &f.dev).map(|l| h.del_fdb(&l, MacAddr(f.mac), Some(f.dst))) {
            Ok(Ok(())) => rep.fdb_deleted += 1,
            Ok(Err(e)) if !e.is_not_found() => rep.errors.push(e.to_string()),
            _ => {}
        }
    }
    rep.owned = if rep.changed() || !rep.errors.is_empty() {
        match owned(h, overlay_dev) {
            Ok(o) => (o.routes.len(), o.neighbours.len(), o.fdb.len()),
            Err(e) => {
                rep.errors
                    .push(format!("read kernel state after changes: {e}"));
                (0, 0, 0)
            }
        }
    } else {
        (have.routes.len(), have.neighbours.len(), have.fdb.len())
    };
    rep
}
