//! Neighbour (ARP/NDP) entries and bridge/VXLAN forwarding-database entries.
//!
//! Both live in the kernel's neighbour tables, so they share one message type: an IPv4
//! neighbour is `AF_INET` (IP -> MAC on a device); an FDB entry is `AF_BRIDGE` with `NTF_SELF`
//! on the VXLAN device itself (MAC -> remote VTEP IP in `NDA_DST`), which is what `bridge fdb
//! append ... dev twill.1 dst 192.0.2.7 self permanent` sends. The daemon installs both as
//! `NUD_PERMANENT` on a device it owns, so ownership is by device: everything permanent on
//! `twill.<VNI>` is ours, nothing else is touched.

use super::error::Result;
use super::handle::Handle;
use super::link::Link;
use super::mac::MacAddr;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::RouteType;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::net::Ipv4Addr;

/// A permanent IPv4 neighbour entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub ifindex: u32,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    pub permanent: bool,
}

/// A forwarding-database entry of a VXLAN device: frames for `mac` go to VTEP `dst`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdbEntry {
    pub ifindex: u32,
    pub mac: MacAddr,
    pub dst: Option<Ipv4Addr>,
    pub permanent: bool,
}

/// The fields we read from a neighbour message of either family.
struct Entry {
    ip: Option<Ipv4Addr>,
    mac: Option<MacAddr>,
    permanent: bool,
}

impl Entry {
    fn decode(n: &NeighbourMessage) -> Entry {
        let mut e = Entry {
            ip: None,
            mac: None,
            permanent: n.header.state == NeighbourState::Permanent,
        };
        for a in &n.attributes {
            match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => e.ip = Some(*v4),
                // AF_BRIDGE messages carry the VTEP address untyped.
                NeighbourAttribute::Destination(NeighbourAddress::Other(b)) if b.len() == 4 => {
                    e.ip = Some(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
                }
                NeighbourAttribute::LinkLayerAddress(b) => e.mac = MacAddr::from_bytes(b),
                _ => {}
            }
        }
        e
    }
}

fn neigh_msg(family: AddressFamily, ifindex: u32) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = family;
    m.header.ifindex = ifindex;
    m.header.kind = RouteType::Unicast;
    m
}

impl Handle {
    /// Adds or replaces a permanent neighbour entry `ip -> mac` on `link`.
    pub fn replace_neighbour(&mut self, link: &Link, ip: Ipv4Addr, mac: MacAddr) -> Result<()> {
        let mut m = neigh_msg(AddressFamily::Inet, link.index);
        m.header.state = NeighbourState::Permanent;
        m.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
        m.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.0.to_vec()));
        let what = format!("replace neighbour {ip} lladdr {mac} dev {}", link.name);
        self.request(
            RouteNetlinkMessage::NewNeighbour(m),
            NLM_F_CREATE | NLM_F_REPLACE,
            &what,
        )
        .map(|_| ())
    }

    /// Deletes the neighbour entry for `ip` on `link`; a missing one is `ENOENT`.
    pub fn del_neighbour(&mut self, link: &Link, ip: Ipv4Addr) -> Result<()> {
        let mut m = neigh_msg(AddressFamily::Inet, link.index);
        m.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
        let what = format!("delete neighbour {ip} dev {}", link.name);
        self.request(RouteNetlinkMessage::DelNeighbour(m), 0, &what)
            .map(|_| ())
    }

    /// IPv4 neighbour entries of `link`.
    pub fn neighbours(&mut self, link: &Link) -> Result<Vec<Neighbour>> {
        let entries = self.dump_entries(AddressFamily::Inet, link, "neighbours")?;
        Ok(entries
            .into_iter()
            .filter_map(|e| {
                Some(Neighbour {
                    ifindex: link.index,
                    ip: e.ip?,
                    mac: e.mac?,
                    permanent: e.permanent,
                })
            })
            .collect())
    }

    /// Dumps the `family` neighbour table and keeps `link`'s entries, decoded.
    fn dump_entries(
        &mut self,
        family: AddressFamily,
        link: &Link,
        what: &str,
    ) -> Result<Vec<Entry>> {
        let m = neigh_msg(family, link.index);
        let what = format!("list {what} of {}", link.name);
        let msgs = self.dump(RouteNetlinkMessage::GetNeighbour(m), &what)?;
        Ok(msgs
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewNeighbour(n) if n.header.ifindex == link.index => {
                    Some(Entry::decode(n))
                }
                _ => None,
            })
            .collect())
    }

    /// Adds or replaces a permanent FDB entry `mac -> dst` on VXLAN device `link`.
    pub fn replace_fdb(&mut self, link: &Link, mac: MacAddr, dst: Ipv4Addr) -> Result<()> {
        let mut m = neigh_msg(AddressFamily::Bridge, link.index);
        m.header.state = NeighbourState::Permanent;
        m.header.flags = NeighbourFlags::Own;
        m.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.0.to_vec()));
        m.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(dst)));
        let what = format!("replace fdb {mac} dst {dst} dev {}", link.name);
        self.request(
            RouteNetlinkMessage::NewNeighbour(m),
            NLM_F_CREATE | NLM_F_REPLACE,
            &what,
        )
        .map(|_| ())
    }

    /// Deletes the FDB entry `mac -> dst` on `link`.
    pub fn del_fdb(&mut self, link: &Link, mac: MacAddr, dst: Option<Ipv4Addr>) -> Result<()> {
        let mut m = neigh_msg(AddressFamily::Bridge, link.index);
        m.header.flags = NeighbourFlags::Own;
        m.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.0.to_vec()));
        if let Some(dst) = dst {
            m.attributes
                .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(dst)));
        }
        let what = format!("delete fdb {mac} dev {}", link.name);
        self.request(RouteNetlinkMessage::DelNeighbour(m), 0, &what)
            .map(|_| ())
    }

    /// FDB entries of `link` (its own entries, e.g. a VXLAN device's remote VTEPs).
    pub fn fdb(&mut self, link: &Link) -> Result<Vec<FdbEntry>> {
        let entries = self.dump_entries(AddressFamily::Bridge, link, "fdb")?;
        Ok(entries
            .into_iter()
            .filter_map(|e| {
                Some(FdbEntry {
                    ifindex: link.index,
                    mac: e.mac?,
                    dst: e.ip,
                    permanent: e.permanent,
                })
            })
            .collect())
    }
}
