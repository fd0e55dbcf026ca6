//! Pure decisions of ADD: gateways, default routes, bridge addresses, the result layout.
//!
//! Kept free of I/O so the rules the reference `bridge.go` encodes in `calcGateways`,
//! `calcGatewayIP` and `ensureAddr` are unit-tested directly:
//! - every IP of the result belongs to the container interface (index 2);
//! - with `isGateway`, a missing gateway is the subnet's first address (network + 1);
//! - with `isDefaultGateway`, a default route via that gateway is added per family unless
//!   IPAM already returned a default route *with a gateway* for that family;
//! - the bridge keeps at most one IPv4 address (a different one is a conflict unless
//!   `forceAddress`, which replaces it) while IPv6 addresses accumulate as long as their
//!   prefixes do not overlap.

use ipnetwork::IpNetwork;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use twill_cni::{CniResult, Interface, Route};

/// Index of the container interface in the result (`[bridge, host veth, container]`).
pub const CONTAINER_IF: usize = 2;

/// The subnet's first address: network + 1 (`calcGatewayIP`).
pub fn gateway_of(addr: &IpNetwork) -> IpAddr {
    match addr {
        IpNetwork::V4(n) => IpAddr::V4(Ipv4Addr::from(u32::from(n.network()).wrapping_add(1))),
        IpNetwork::V6(n) => IpAddr::V6(Ipv6Addr::from(u128::from(n.network()).wrapping_add(1))),
    }
}

fn default_route_dst(v4: bool) -> IpNetwork {
    let ip = if v4 {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    };
    IpNetwork::new(ip, 0).unwrap_or_else(|_| IpNetwork::from(ip))
}

/// Gateway addresses (with the prefix length of their subnet) to put on the bridge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gateways {
    pub v4: Vec<IpNetwork>,
    pub v6: Vec<IpNetwork>,
}

/// Rewrites an IPAM result into the bridge's result: sets `ips[].interface`, fills
/// gateways, appends default routes. Returns the bridge addresses when `is_gateway`.
pub fn apply_gateways(
    result: &mut CniResult,
    is_gateway: bool,
    is_default_gateway: bool,
) -> Gateways {
    let mut gws = Gateways::default();
    let mut default_found = [false, false]; // [v4, v6]
    for ip in result.ips.iter_mut() {
        let v4 = ip.address.is_ipv4();
        let fam = usize::from(!v4);
        ip.interface = Some(CONTAINER_IF);
        if ip.gateway.is_none() && is_gateway {
            ip.gateway = Some(gateway_of(&ip.address));
        }
        if is_default_gateway && !default_found[fam] {
            let dst = default_route_dst(v4);
            default_found[fam] = result.routes.iter().any(|r| r.gw.is_some() && r.dst == dst);
            if !default_found[fam] {
                result.routes.push(Route {
                    dst,
                    gw: ip.gateway,
                    ..Default::default()
                });
                default_found[fam] = true;
            }
        }
        if is_gateway
            && let Some(gw) = ip.gateway
            && let Ok(net) = IpNetwork::new(gw, ip.address.prefix())
        {
            let list = if v4 { &mut gws.v4 } else { &mut gws.v6 };
            if !list.contains(&net) {
                list.push(net);
            }
        }
    }
    gws
}

/// What to do to get `want` onto the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddrPlan {
    /// Already there.
    Present,
    /// Remove these (forced) and add `want`.
    Add { remove: Vec<IpNetwork> },
    /// The bridge holds `existing`, which may not coexist with `want`.
    Conflict { existing: IpNetwork },
}

fn overlaps(a: &IpNetwork, b: &IpNetwork) -> bool {
    a.contains(b.ip()) || b.contains(a.ip())
}

/// `ensureAddr`: `existing` are the bridge's addresses of `want`'s family.
pub fn plan_bridge_addr(existing: &[IpNetwork], want: &IpNetwork, force: bool) -> AddrPlan {
    if existing.contains(want) {
        return AddrPlan::Present;
    }
    let mut remove = Vec::new();
    for a in existing {
        if want.is_ipv4() || overlaps(a, want) {
            if !force {
                return AddrPlan::Conflict { existing: *a };
            }
            remove.push(*a);
        }
    }
    AddrPlan::Add { remove }
}

/// The three interfaces of the result: bridge, host veth, container veth.
pub struct Ends<'a> {
    pub bridge: (&'a str, String),
    pub host: (&'a str, String),
    pub container: (&'a str, String),
    pub sandbox: &'a str,
}

pub fn interfaces(e: &Ends<'_>) -> Vec<Interface> {
    vec![
        Interface {
            name: e.bridge.0.to_owned(),
            mac: e.bridge.1.clone(),
            ..Default::default()
        },
        Interface {
            name: e.host.0.to_owned(),
            mac: e.host.1.clone(),
            ..Default::default()
        },
        Interface {
            name: e.container.0.to_owned(),
            mac: e.container.1.clone(),
            sandbox: e.sandbox.to_owned(),
            ..Default::default()
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use twill_cni::IpConfig;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    fn ipam(addrs: &[(&str, Option<&str>)]) -> CniResult {
        CniResult {
            ips: addrs
                .iter()
                .map(|(a, gw)| IpConfig {
                    address: net(a),
                    gateway: gw.map(|g| g.parse().unwrap()),
                    interface: None,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn gateway_is_network_plus_one() {
        assert_eq!(gateway_of(&net("10.1.2.7/24")).to_string(), "10.1.2.1");
        assert_eq!(
            gateway_of(&net("2001:db8::5/64")).to_string(),
            "2001:db8::1"
        );
        assert_eq!(gateway_of(&net("10.0.0.9/8")).to_string(), "10.0.0.1");
    }

    #[test]
    fn default_gateway_dual_stack() {
        let mut r = ipam(&[("10.1.2.2/24", None), ("2001:db8::2/64", None)]);
        let gws = apply_gateways(&mut r, true, true);
        assert!(r.ips.iter().all(|i| i.interface == Some(2)));
        assert_eq!(r.ips[0].gateway.unwrap().to_string(), "10.1.2.1");
        assert_eq!(r.ips[1].gateway.unwrap().to_string(), "2001:db8::1");
        let routes: Vec<String> = r
            .routes
            .iter()
            .map(|x| format!("{} via {}", x.dst, x.gw.unwrap()))
            .collect();
        assert_eq!(routes, ["0.0.0.0/0 via 10.1.2.1", "::/0 via 2001:db8::1"]);
        assert_eq!(gws.v4, vec![net("10.1.2.1/24")]);
        assert_eq!(gws.v6, vec![net("2001:db8::1/64")]);
    }

    #[test]
    fn ipam_gateway_and_existing_default_route_are_kept() {
        let mut r = ipam(&[("10.1.2.2/24", Some("10.1.2.254")), ("10.1.3.2/24", None)]);
        r.routes.push(Route {
            dst: net("0.0.0.0/0"),
            gw: Some("10.1.2.99".parse().unwrap()),
            ..Default::default()
        });
        let gws = apply_gateways(&mut r, true, true);
        assert_eq!(
            r.routes.len(),
            1,
            "a default route with a gateway exists already"
        );
        assert_eq!(r.ips[0].gateway.unwrap().to_string(), "10.1.2.254");
        assert_eq!(gws.v4, vec![net("10.1.2.254/24"), net("10.1.3.1/24")]);
    }

    #[test]
    fn default_route_without_gateway_does_not_count() {
        let mut r = ipam(&[("10.1.2.2/24", None)]);
        r.routes.push(Route {
            dst: net("0.0.0.0/0"),
            ..Default::default()
        });
        apply_gateways(&mut r, true, true);
        assert_eq!(r.routes.len(), 2);
        assert_eq!(r.routes[1].gw.unwrap().to_string(), "10.1.2.1");
    }

    #[test]
    fn no_gateway_flags_only_set_the_interface() {
        let mut r = ipam(&[("10.1.2.2/24", None)]);
        let gws = apply_gateways(&mut r, false, false);
        assert_eq!(r.ips[0].interface, Some(2));
        assert_eq!(r.ips[0].gateway, None);
        assert!(r.routes.is_empty());
        assert_eq!(gws, Gateways::default());
    }

    #[test]
    fn one_default_route_per_family_even_with_many_addresses() {
        let mut r = ipam(&[
            ("10.1.2.2/24", None),
            ("2001:db8::2/64", None),
            ("fd00::2/64", None),
        ]);
        let gws = apply_gateways(&mut r, true, true);
        assert_eq!(r.routes.len(), 2);
        assert_eq!(gws.v6.len(), 2);
    }

    #[test]
    fn ensure_addr_matrix() {
        // IPv4: a different address conflicts unless forced.
        let have = [net("10.0.0.1/8")];
        assert_eq!(
            plan_bridge_addr(&have, &net("10.1.2.3/16"), false),
            AddrPlan::Conflict {
                existing: net("10.0.0.1/8")
            }
        );
        assert_eq!(
            plan_bridge_addr(&have, &net("10.1.2.3/16"), true),
            AddrPlan::Add {
                remove: vec![net("10.0.0.1/8")]
            }
        );
        assert_eq!(
            plan_bridge_addr(&have, &net("10.0.0.1/8"), false),
            AddrPlan::Present
        );
        assert_eq!(
            plan_bridge_addr(&[], &net("10.0.0.1/8"), false),
            AddrPlan::Add { remove: vec![] }
        );
        // IPv6: overlapping prefixes conflict, disjoint ones accumulate; link-local stays.
        let have6 = [net("2001:db8:1::1/48"), net("fe80::1/64")];
        assert_eq!(
            plan_bridge_addr(&have6, &net("2001:db8:1:2::1/64"), false),
            AddrPlan::Conflict {
                existing: net("2001:db8:1::1/48")
            }
        );
        assert_eq!(
            plan_bridge_addr(&have6, &net("fd00:1234::1/64"), false),
            AddrPlan::Add { remove: vec![] }
        );
        assert_eq!(
            plan_bridge_addr(&have6, &net("2001:db8:1:2::1/64"), true),
            AddrPlan::Add {
                remove: vec![net("2001:db8:1::1/48")]
            }
        );
    }

    #[test]
    fn interfaces_layout() {
        let ifs = interfaces(&Ends {
            bridge: ("br-test", "02:00:00:00:00:01".into()),
            host: ("veth1234abcd", "02:00:00:00:00:02".into()),
            container: ("eth0", "02:00:00:00:00:03".into()),
            sandbox: "/run/netns/t1",
        });
        let v = serde_json::to_value(&ifs).unwrap();
        assert_eq!(
            v,
            serde_json::json!([
                {"name":"br-test","mac":"02:00:00:00:00:01"},
                {"name":"veth1234abcd","mac":"02:00:00:00:00:02"},
                {"name":"eth0","mac":"02:00:00:00:00:03","sandbox":"/run/netns/t1"}
            ])
        );
    }
}
