//! Routes (`ip route`).
//!
//! A [`Route`] is the small subset CNI and the daemon use: destination, gateway, output
//! link, table, scope, metric, protocol and preferred source. Tables above 255 need the
//! `RTA_TABLE` attribute (the header field is one byte), so the table always travels as the
//! attribute and the header carries it only when it fits, as iproute2 does. Adds use
//! `NLM_F_CREATE | NLM_F_EXCL`, so an identical route is `EEXIST` rather than a silent
//! duplicate. Listing skips cached clones (`RTM_F_CLONED`, IPv6 exceptions) which are not
//! configuration.

use super::addr::Family;
use super::error::Result;
use super::handle::Handle;
use ipnetwork::IpNetwork;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol,
    RouteScope as NlScope, RouteType,
};
use std::net::IpAddr;

/// The main routing table.
pub const TABLE_MAIN: u32 = 254;
/// The local routing table (addresses of this host).
pub const TABLE_LOCAL: u32 = 255;
/// `RTPROT_BOOT`: what `ip route add` uses for routes configured by hand or by tools.
pub const PROTO_BOOT: u8 = 3;
/// `RTPROT_KERNEL`: routes the kernel installed for an address's prefix.
pub const PROTO_KERNEL: u8 = 2;

/// Route scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteScope {
    /// Reached through a gateway (or anywhere); the default.
    Universe,
    Site,
    /// Directly on the link.
    Link,
    /// This host.
    Host,
    Nowhere,
    Other(u8),
}

impl RouteScope {
    /// The numeric scope (`RT_SCOPE_*`), as CNI 1.1 results carry it.
    pub fn as_u8(self) -> u8 {
        match self {
            RouteScope::Universe => 0,
            RouteScope::Site => 200,
            RouteScope::Link => 253,
            RouteScope::Host => 254,
            RouteScope::Nowhere => 255,
            RouteScope::Other(v) => v,
        }
    }

    pub fn from_u8(v: u8) -> RouteScope {
        match v {
            0 => RouteScope::Universe,
            200 => RouteScope::Site,
            253 => RouteScope::Link,
            254 => RouteScope::Host,
            255 => RouteScope::Nowhere,
            o => RouteScope::Other(o),
        }
    }
}

/// A unicast route (listing also returns local/broadcast ones, see [`Route::unicast`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: IpNetwork,
    pub gateway: Option<IpAddr>,
    /// Output link index.
    pub oif: Option<u32>,
    pub table: u32,
    pub scope: RouteScope,
    /// Priority (`RTA_PRIORITY`), lower wins.
    pub metric: Option<u32>,
    /// `RTPROT_*`.
    pub protocol: u8,
    /// Preferred source address.
    pub prefsrc: Option<IpAddr>,
    /// Route type is unicast (false for local, broadcast, ... entries seen in dumps).
    pub unicast: bool,
    /// `RTNH_F_ONLINK`: the gateway is reachable on `oif` even without a connected prefix
    /// (VXLAN VTEP routes).
    pub onlink: bool,
}

impl Route {
    /// A route to `dst` in the main table, scope universe, protocol boot.
    pub fn new(dst: IpNetwork) -> Route {
        Route {
            dst,
            gateway: None,
            oif: None,
            table: TABLE_MAIN,
            scope: RouteScope::Universe,
            metric: None,
            protocol: PROTO_BOOT,
            prefsrc: None,
            unicast: true,
            onlink: false,
        }
    }

    pub fn family(&self) -> Family {
        Family::of(&self.dst.ip())
    }

    /// Short description for error messages: `10.0.0.0/8 via 10.1.2.1 dev 5 table 254`.
    pub fn describe(&self) -> String {
        let mut s = self.dst.to_string();
        if let Some(gw) = self.gateway {
            s.push_str(&format!(" via {gw}"));
        }
        if let Some(oif) = self.oif {
            s.push_str(&format!(" dev {oif}"));
        }
        if self.table != TABLE_MAIN {
            s.push_str(&format!(" table {}", self.table));
        }
        if let Some(m) = self.metric {
            s.push_str(&format!(" metric {m}"));
        }
        if self.onlink {
            s.push_str(" onlink");
        }
        s
    }

    fn to_message(&self) -> RouteMessage {
        let mut m = RouteMessage::default();
        m.header.address_family = self.family().af();
        m.header.destination_prefix_length = self.dst.prefix();
        m.header.table = u8::try_from(self.table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
        m.header.protocol = RouteProtocol::from(self.protocol);
        m.header.scope = NlScope::from(self.scope.as_u8());
        m.header.kind = RouteType::Unicast;
        if self.onlink {
            m.header.flags = RouteFlags::Onlink;
        }
        m.attributes.push(RouteAttribute::Table(self.table));
        if self.dst.prefix() > 0 {
            m.attributes
                .push(RouteAttribute::Destination(route_addr(self.dst.network())));
        }
        if let Some(gw) = self.gateway {
            m.attributes.push(RouteAttribute::Gateway(route_addr(gw)));
        }
        if let Some(oif) = self.oif {
            m.attributes.push(RouteAttribute::Oif(oif));
        }
        if let Some(metric) = self.metric {
            m.attributes.push(RouteAttribute::Priority(metric));
        }
        if let Some(src) = self.prefsrc {
            m.attributes
                .push(RouteAttribute::PrefSource(route_addr(src)));
        }
        m
    }

    fn from_message(m: &RouteMessage) -> Option<Route> {
        let family = match m.header.address_family {
            netlink_packet_route::AddressFamily::Inet => Family::V4,
            netlink_packet_route::AddressFamily::Inet6 => Family::V6,
            _ => return None,
        };
        let mut dst_ip: Option<IpAddr> = None;
        let mut r = Route::new(default_dst(family));
        r.table = u32::from(m.header.table);
        r.scope = RouteScope::from_u8(u8::from(m.header.scope));
        r.protocol = u8::from(m.header.protocol);
        r.unicast = m.header.kind == RouteType::Unicast;
        r.onlink = m.header.flags.contains(RouteFlags::Onlink);
        for a in &m.attributes {
            match a {
                RouteAttribute::Destination(d) => dst_ip = ip_of(d),
                RouteAttribute::Gateway(g) => r.gateway = ip_of(g),
                RouteAttribute::Oif(i) => r.oif = Some(*i),
                RouteAttribute::Table(t) => r.table = *t,
                RouteAttribute::Priority(p) => r.metric = Some(*p),
                RouteAttribute::PrefSource(s) => r.prefsrc = ip_of(s),
                _ => {}
            }
        }
        if let Some(ip) = dst_ip {
            r.dst = IpNetwork::new(ip, m.header.destination_prefix_length).ok()?;
        }
        Some(r)
    }
}

fn default_dst(f: Family) -> IpNetwork {
    let ip = match f {
        Family::V4 => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        Family::V6 => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    };
    IpNetwork::new(ip, 0).unwrap_or_else(|_| IpNetwork::from(ip))
}

fn route_addr(ip: IpAddr) -> RouteAddress {
    match ip {
        IpAddr::V4(v4) => RouteAddress::Inet(v4),
        IpAddr::V6(v6) => RouteAddress::Inet6(v6),
    }
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

impl Handle {
    /// Adds a route; an identical one is `EEXIST`.
    pub fn add_route(&mut self, route: &Route) -> Result<()> {
        let what = format!("add route {}", route.describe());
        self.request(
            RouteNetlinkMessage::NewRoute(route.to_message()),
            NLM_F_CREATE | NLM_F_EXCL,
            &what,
        )
        .map(|_| ())
    }

    /// Adds `route` or replaces the route with the same destination, table and metric
    /// (e.g. a peer's new gateway) in one request, so there is no moment without a route.
    pub fn replace_route(&mut self, route: &Route) -> Result<()> {
        let what = format!("replace route {}", route.describe());
        self.request(
            RouteNetlinkMessage::NewRoute(route.to_message()),
            NLM_F_CREATE | NLM_F_REPLACE,
            &what,
        )
        .map(|_| ())
    }

    /// Deletes the route matching `route`'s destination, table and, where set, gateway,
    /// output link and metric; a missing one is `ESRCH`.
    pub fn del_route(&mut self, route: &Route) -> Result<()> {
        let what = format!("delete route {}", route.describe());
        let mut m = route.to_message();
        // Deleting must not insist on the protocol/scope we would use for adding.
        m.header.protocol = RouteProtocol::Unspec;
        m.header.scope = NlScope::NoWhere;
        self.request(RouteNetlinkMessage::DelRoute(m), 0, &what)
            .map(|_| ())
    }

    /// Routes of one family in every table, without cached clones.
    pub fn routes(&mut self, family: Family) -> Result<Vec<Route>> {
        let mut m = RouteMessage::default();
        m.header.address_family = family.af();
        let what = format!(
            "list {} routes",
            if family == Family::V4 { "ipv4" } else { "ipv6" }
        );
        let msgs = self.dump(RouteNetlinkMessage::GetRoute(m), &what)?;
        Ok(msgs
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r)
                    if !r.header.flags.contains(RouteFlags::Cloned) =>
                {
                    Route::from_message(r)
                }
                _ => None,
            })
            .collect())
    }
}
