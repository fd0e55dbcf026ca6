//! What the kernel should hold for a set of peers, and the difference to what it holds.
//!
//! Pure on purpose (CONVENTIONS 2 and 4): a backend is a function from (config, our node,
//! the full peer set) to a [`Desired`] state of routes, neighbour entries and FDB entries;
//! [`diff`] compares it with a dump of what we own and yields the changes. The applier that
//! talks netlink stays small, and every rule here (DirectRouting, on-link checks, VTEP
//! addressing) is unit-tested without a kernel.
//!
//! Addressing follows flannel so a mixed cluster works: a node's VTEP address is the network
//! address of its subnet (`10.244.5.0`), a peer subnet is routed `via <its VTEP> dev twill.<VNI>
//! onlink`, with a permanent neighbour entry (VTEP address -> VTEP MAC) and an FDB entry
//! (VTEP MAC -> peer PublicIP). host-gw routes a peer subnet via its PublicIP on the underlay,
//! which only works when that address is on-link: otherwise the peer is reported, never
//! silently black-holed.

use crate::lease::alloc;
use crate::lease::manager::PeerSet;
use crate::netconf::NetConfig;
use ipnetwork::Ipv4Network;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use twill_net::netlink::MacAddr;

/// Route protocol number marking routes installed by twilld (`ip route show proto 116`).
/// Unassigned in iproute2's rt_protos; lets start-up reconcile tell our routes from others.
pub const RTPROT_TWILL: u8 = 116;

/// One route we want.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteSpec {
    pub dst: Ipv4Network,
    pub gateway: Ipv4Addr,
    /// Output device name.
    pub dev: String,
    /// Gateway not in a connected prefix of `dev` (VXLAN VTEPs).
    pub onlink: bool,
}

/// One permanent neighbour entry (IP -> MAC) on a device.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NeighSpec {
    pub dev: String,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
}

/// One FDB entry (MAC -> remote VTEP) on a VXLAN device.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FdbSpec {
    pub dev: String,
    pub mac: [u8; 6],
    pub dst: Ipv4Addr,
}

fn fmt_mac(m: &[u8; 6]) -> String {
    MacAddr(*m).to_string()
}

/// Rendered like `ip route`: `10.244.5.0/24 via 10.244.5.0 dev twill.1 onlink`.
impl std::fmt::Display for RouteSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} via {} dev {}", self.dst, self.gateway, self.dev)?;
        if self.onlink {
            write!(f, " onlink")?;
        }
        Ok(())
    }
}

/// Rendered like `ip neigh`: `10.244.5.0 lladdr 02:54:c0:a8:32:02 dev twill.1`.
impl std::fmt::Display for NeighSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} lladdr {} dev {}",
            self.ip,
            fmt_mac(&self.mac),
            self.dev
        )
    }
}

/// Rendered like `bridge fdb`: `02:54:c0:a8:32:02 dst 192.168.50.2 dev twill.1`.
impl std::fmt::Display for FdbSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} dst {} dev {}",
            fmt_mac(&self.mac),
            self.dst,
            self.dev
        )
    }
}

/// Everything one backend wants in the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub routes: BTreeSet<RouteSpec>,
    pub neighbours: BTreeSet<NeighSpec>,
    pub fdb: BTreeSet<FdbSpec>,
    /// Peers that cannot be programmed, with the reason (reported in logs and metrics).
    pub unreachable: Vec<(Ipv4Network, String)>,
}

/// What this node knows about its underlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Underlay {
    /// Underlay device name.
    pub dev: String,
    /// Connected IPv4 prefixes of the underlay device (address with prefix length).
    pub prefixes: Vec<Ipv4Network>,
}

impl Underlay {
    /// True when `ip` is directly reachable on the underlay segment.
    pub fn is_onlink(&self, ip: Ipv4Addr) -> bool {
        self.prefixes.iter().any(|p| p.contains(ip))
    }
}

/// The VTEP address of a node subnet: its network address.
pub fn vtep_ip(subnet: Ipv4Network) -> Ipv4Addr {
    subnet.network()
}

/// Parses `aa:bb:cc:dd:ee:ff` (two hex digits per octet, as `MacAddr` requires).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    s.parse::<MacAddr>().ok().map(|m| m.0)
}

/// Drops peers that must not be programmed, with the reason: a subnet this config could not
/// have handed out (a stale lease from an older config, a hand-written key), one overlapping
/// our own subnet, or one overlapping the underlay's prefixes. Routing any of them would
/// replace a route the node depends on.
pub fn screen(
    peers: &PeerSet,
    cfg: &NetConfig,
    own: Ipv4Network,
    underlay: &Underlay,
) -> (PeerSet, Vec<(Ipv4Network, String)>) {
    let mut ok = PeerSet::new();
    let mut refused = Vec::new();
    for (subnet, lease) in peers {
        let why = if !alloc::is_valid_subnet(cfg, *subnet) {
            Some(format!(
                "lease {subnet} is not a /{} inside {}..{} of network {}; ignored",
                cfg.subnet_len, cfg.subnet_min, cfg.subnet_max, cfg.network
            ))
        } else if alloc::overlaps(*subnet, own) {
            Some(format!(
                "lease {subnet} overlaps this node's subnet {own}; ignored"
            ))
        } else {
            underlay
                .prefixes
                .iter()
                .find(|p| alloc::overlaps(**p, *subnet))
                .map(|p| format!("lease {subnet} overlaps the underlay prefix {p}; ignored"))
        };
        match why {
            Some(w) => refused.push((*subnet, w)),
            None => {
                ok.insert(*subnet, lease.clone());
            }
        }
    }
    (ok, refused)
}

/// host-gw: a route to each peer subnet via its PublicIP on the underlay.
pub fn host_gw(peers: &PeerSet, underlay: &Underlay) -> Desired {
    let mut d = Desired::default();
    for (subnet, lease) in peers {
        let gw = lease.attrs.public_ip;
        if !underlay.is_onlink(gw) {
            d.unreachable.push((
                *subnet,
                format!(
                    "host-gw: peer PublicIP {gw} is not on-link on {} ({}); use vxlan for routed underlays",
                    underlay.dev,
                    fmt_prefixes(&underlay.prefixes)
                ),
            ));
            continue;
        }
        d.routes.insert(RouteSpec {
            dst: *subnet,
            gateway: gw,
            dev: underlay.dev.clone(),
            onlink: false,
        });
    }
    d
}

/// vxlan: per peer a route via its VTEP (onlink), a neighbour and an FDB entry; with
/// `direct_routing`, peers on the same segment get a plain route via their PublicIP instead.
pub fn vxlan(
    peers: &PeerSet,
    vxlan_dev: &str,
    underlay: &Underlay,
    direct_routing: bool,
) -> Desired {
    let mut d = Desired::default();
    for (subnet, lease) in peers {
        let public = lease.attrs.public_ip;
        if direct_routing && underlay.is_onlink(public) {
            d.routes.insert(RouteSpec {
                dst: *subnet,
                gateway: public,
                dev: underlay.dev.clone(),
                onlink: false,
            });
            continue;
        }
        let mac = lease
            .attrs
            .backend_data
            .get("VtepMAC")
            .and_then(|v| v.as_str())
            .and_then(parse_mac);
        let Some(mac) = mac else {
            d.unreachable.push((
                *subnet,
                format!(
                    "vxlan: lease of {public} has no valid BackendData.VtepMAC (backend {:?})",
                    lease.attrs.backend_type
                ),
            ));
            continue;
        };
        let vtep = vtep_ip(*subnet);
        d.routes.insert(RouteSpec {
            dst: *subnet,
            gateway: vtep,
            dev: vxlan_dev.to_owned(),
            onlink: true,
        });
        d.neighbours.insert(NeighSpec {
            dev: vxlan_dev.to_owned(),
            ip: vtep,
            mac,
        });
        d.fdb.insert(FdbSpec {
            dev: vxlan_dev.to_owned(),
            mac,
            dst: public,
        });
    }
    d
}

fn fmt_prefixes(p: &[Ipv4Network]) -> String {
    if p.is_empty() {
        return "no IPv4 address".into();
    }
    p.iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Changes that turn `have` into `want`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes<T> {
    pub add: Vec<T>,
    pub del: Vec<T>,
}

impl<T> Changes<T> {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.del.is_empty()
    }
}

/// Set difference both ways: what to add and what to delete.
pub fn diff<T: Ord + Clone>(want: &BTreeSet<T>, have: &BTreeSet<T>) -> Changes<T> {
    Changes {
        add: want.difference(have).cloned().collect(),
        del: have.difference(want).cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::record::LeaseAttrs;
    use crate::lease::registry::Lease;

    fn peer(subnet: &str, ip: [u8; 4], mac: Option<&str>) -> (Ipv4Network, Lease) {
        let subnet: Ipv4Network = subnet.parse().unwrap();
        let data = match mac {
            Some(m) => serde_json::json!({"VNI": 1, "VtepMAC": m}),
            None => serde_json::Value::Null,
        };
        (
            subnet,
            Lease {
                subnet,
                attrs: LeaseAttrs {
                    public_ip: Ipv4Addr::from(ip),
                    backend_type: "vxlan".into(),
                    backend_data: data,
                    node_name: String::new(),
                },
                lease_id: 1,
                mod_revision: 1,
            },
        )
    }

    fn underlay() -> Underlay {
        Underlay {
            dev: "eth0".into(),
            prefixes: vec!["192.168.50.0/24".parse().unwrap()],
        }
    }

    #[test]
    fn vxlan_programs_route_neighbour_and_fdb() {
        let peers: PeerSet = [peer(
            "10.244.5.0/24",
            [192, 168, 50, 2],
            Some("02:00:00:00:00:02"),
        )]
        .into();
        let d = vxlan(&peers, "twill.1", &underlay(), false);
        let r = d.routes.iter().next().unwrap();
        assert_eq!(
            (r.gateway, r.dev.as_str(), r.onlink),
            (Ipv4Addr::new(10, 244, 5, 0), "twill.1", true)
        );
        let n = d.neighbours.iter().next().unwrap();
        assert_eq!(
            (n.ip, n.mac),
            (Ipv4Addr::new(10, 244, 5, 0), [2, 0, 0, 0, 0, 2])
        );
        let f = d.fdb.iter().next().unwrap();
        assert_eq!(f.dst, Ipv4Addr::new(192, 168, 50, 2));
        assert!(d.unreachable.is_empty());
    }

    #[test]
    fn vxlan_direct_routing_only_for_same_segment() {
        let peers: PeerSet = [
            peer(
                "10.244.5.0/24",
                [192, 168, 50, 2],
                Some("02:00:00:00:00:02"),
            ),
            peer("10.244.6.0/24", [172, 16, 0, 9], Some("02:00:00:00:00:03")),
        ]
        .into();
        let d = vxlan(&peers, "twill.1", &underlay(), true);
        let routes: Vec<_> = d
            .routes
            .iter()
            .map(|r| (r.dst.to_string(), r.dev.clone()))
            .collect();
        assert_eq!(
            routes,
            vec![
                ("10.244.5.0/24".to_string(), "eth0".to_string()),
                ("10.244.6.0/24".to_string(), "twill.1".to_string())
            ]
        );
        assert_eq!(d.fdb.len(), 1);
    }

    #[test]
    fn vxlan_peer_without_mac_is_reported() {
        let peers: PeerSet = [peer("10.244.5.0/24", [192, 168, 50, 2], None)].into();
        let d = vxlan(&peers, "twill.1", &underlay(), false);
        assert!(d.routes.is_empty());
        assert_eq!(d.unreachable.len(), 1);
        assert!(d.unreachable[0].1.contains("VtepMAC"));
    }

    #[test]
    fn host_gw_refuses_off_link_peers_loudly() {
        let peers: PeerSet = [
            peer("10.244.5.0/24", [192, 168, 50, 2], None),
            peer("10.244.6.0/24", [10, 0, 0, 1], None),
        ]
        .into();
        let d = host_gw(&peers, &underlay());
        assert_eq!(d.routes.len(), 1);
        assert_eq!(
            d.routes.iter().next().unwrap().gateway,
            Ipv4Addr::new(192, 168, 50, 2)
        );
        assert_eq!(d.unreachable.len(), 1);
        assert!(
            d.unreachable[0].1.contains("not on-link"),
            "{}",
            d.unreachable[0].1
        );
    }

    #[test]
    fn screen_refuses_subnets_that_would_hijack_routes() {
        let cfg = NetConfig::parse(r#"{"Network":"10.244.0.0/16"}"#).unwrap();
        let own: Ipv4Network = "10.244.1.0/24".parse().unwrap();
        let mut u = underlay();
        u.prefixes.push("10.244.9.0/24".parse().unwrap());
        let peers: PeerSet = [
            peer("10.244.5.0/24", [192, 168, 50, 2], None),
            peer("10.244.1.0/24", [192, 168, 50, 3], None),
            peer("10.244.9.0/24", [192, 168, 50, 4], None),
            peer("0.0.0.0/0", [192, 168, 50, 5], None),
            peer("10.244.6.0/25", [192, 168, 50, 6], None),
        ]
        .into();
        let (ok, refused) = screen(&peers, &cfg, own, &u);
        assert_eq!(
            ok.keys().map(|k| k.to_string()).collect::<Vec<_>>(),
            vec!["10.244.5.0/24"]
        );
        assert_eq!(refused.len(), 4, "{refused:?}");
    }

    #[test]
    fn diff_both_ways() {
        let want: BTreeSet<u8> = [1, 2, 3].into();
        let have: BTreeSet<u8> = [2, 3, 4].into();
        let c = diff(&want, &have);
        assert_eq!((c.add, c.del), (vec![1], vec![4]));
        assert!(diff(&want, &want).is_empty());
    }

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("0a:0B:0c:0d:0e:0f"),
            Some([10, 11, 12, 13, 14, 15])
        );
        assert_eq!(parse_mac("0a:0b:0c:0d:0e"), None);
        assert_eq!(parse_mac("0a:0b:0c:0d:0e:0f:00"), None);
        assert_eq!(parse_mac("zz:0b:0c:0d:0e:0f"), None);
        assert_eq!(parse_mac("+f:0b:0c:0d:0e:0f"), None);
    }
}
