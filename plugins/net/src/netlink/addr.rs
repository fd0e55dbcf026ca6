//! IP addresses of links (`ip address`).
//!
//! IPv4 addresses are sent with `IFA_LOCAL` = `IFA_ADDRESS` and, for prefixes shorter than
//! /31, the directed broadcast (`IFA_BROADCAST`), which is what the reference plugins'
//! netlink library does and what `ip address show` then prints as `brd`. IPv6 addresses
//! carry `IFA_ADDRESS` only. Listing reads `IFA_LOCAL` first for IPv4 (on point-to-point
//! links `IFA_ADDRESS` is the peer) and filters in user space, because without strict
//! checking the kernel ignores the filter fields of a dump request.

use super::error::Result;
use super::handle::Handle;
use super::link::Link;
use ipnetwork::{IpNetwork, Ipv4Network};
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::net::IpAddr;

/// IP family selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(addr: &IpAddr) -> Family {
        if addr.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }

    pub(crate) fn af(self) -> AddressFamily {
        match self {
            Family::V4 => AddressFamily::Inet,
            Family::V6 => AddressFamily::Inet6,
        }
    }
}

/// Scope of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrScope {
    Universe,
    Site,
    Link,
    Host,
    Other(u8),
}

/// An address configured on a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// Index of the link holding it.
    pub index: u32,
    /// Address and prefix length, e.g. `10.1.2.1/24`.
    pub address: IpNetwork,
    pub scope: AddrScope,
    /// Still doing duplicate address detection (IPv6).
    pub tentative: bool,
}

fn base_msg(link: &Link, addr: &IpNetwork) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.family = Family::of(&addr.ip()).af();
    m.header.prefix_len = addr.prefix();
    m.header.index = link.index;
    match addr {
        IpNetwork::V4(v4) => {
            m.attributes
                .push(AddressAttribute::Local(IpAddr::V4(v4.ip())));
            m.attributes
                .push(AddressAttribute::Address(IpAddr::V4(v4.ip())));
        }
        IpNetwork::V6(v6) => {
            m.attributes
                .push(AddressAttribute::Address(IpAddr::V6(v6.ip())));
        }
    }
    m
}

fn from_message(m: &AddressMessage) -> Option<Address> {
    let mut local = None;
    let mut address = None;
    let mut flags: Option<AddressFlags> = None;
    for a in &m.attributes {
        match a {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            AddressAttribute::Flags(f) => flags = Some(*f),
            _ => {}
        }
    }
    let ip = local.or(address)?;
    let net = IpNetwork::new(ip, m.header.prefix_len).ok()?;
    let tentative = match flags {
        Some(f) => f.contains(AddressFlags::Tentative),
        None => m.header.flags.contains(AddressHeaderFlags::Tentative),
    };
    let scope = match m.header.scope {
        AddressScope::Universe => AddrScope::Universe,
        AddressScope::Site => AddrScope::Site,
        AddressScope::Link => AddrScope::Link,
        AddressScope::Host => AddrScope::Host,
        AddressScope::Nowhere => AddrScope::Other(255),
        AddressScope::Other(v) => AddrScope::Other(v),
        _ => AddrScope::Other(0),
    };
    Some(Address {
        index: m.header.index,
        address: net,
        scope,
        tentative,
    })
}

impl Handle {
    /// Adds `addr` to `link`; an address already present is `EEXIST`.
    pub fn add_address(&mut self, link: &Link, addr: &IpNetwork) -> Result<()> {
        let mut m = base_msg(link, addr);
        if let IpNetwork::V4(v4) = addr
            && v4.prefix() < 31
            && let Ok(net) = Ipv4Network::new(v4.network(), v4.prefix())
        {
            m.attributes
                .push(AddressAttribute::Broadcast(net.broadcast()));
        }
        let what = format!("add address {addr} to {}", link.name);
        self.request(
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_CREATE | NLM_F_EXCL,
            &what,
        )
        .map(|_| ())
    }

    /// Removes `addr` from `link`; a missing address is `EADDRNOTAVAIL`.
    pub fn del_address(&mut self, link: &Link, addr: &IpNetwork) -> Result<()> {
        let what = format!("delete address {addr} from {}", link.name);
        self.request(
            RouteNetlinkMessage::DelAddress(base_msg(link, addr)),
            0,
            &what,
        )
        .map(|_| ())
    }

    /// Addresses of the namespace, optionally only those of one link and/or family.
    pub fn addresses(
        &mut self,
        link: Option<&Link>,
        family: Option<Family>,
    ) -> Result<Vec<Address>> {
        let mut m = AddressMessage::default();
        if let Some(f) = family {
            m.header.family = f.af();
        }
        let what = match link {
            Some(l) => format!("list addresses of {}", l.name),
            None => "list addresses".to_owned(),
        };
        let msgs = self.dump(RouteNetlinkMessage::GetAddress(m), &what)?;
        Ok(msgs
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => from_message(a),
                _ => None,
            })
            .filter(|a| link.is_none_or(|l| l.index == a.index))
            .filter(|a| family.is_none_or(|f| Family::of(&a.address.ip()) == f))
            .collect())
    }
}
