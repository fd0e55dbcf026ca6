//! VXLAN devices for the daemon's vxlan backend.
//!
//! Created the way flannel creates `flannel.<VNI>`: learning off (the daemon programs every
//! neighbour and FDB entry itself, so the kernel must not learn or flood), a zero outer UDP
//! checksum as RFC 7348 recommends for IPv4 (the inner packet carries its own), a fixed local VTEP
//! address and underlay device, the UDP port from the config, and a stable MAC chosen by the
//! caller so the lease's `VtepMAC` survives a re-create. An existing device with the same
//! parameters is reused as is, which is what lets a daemon restart keep traffic flowing; one
//! with different parameters is reported so the caller can replace it.

use super::error::Result;
use super::handle::Handle;
use super::link::Link;
use super::mac::MacAddr;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage,
};
use std::net::Ipv4Addr;

/// Parameters of a VXLAN device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanOptions {
    pub name: String,
    pub vni: u32,
    /// Local VTEP (underlay) address.
    pub local: Ipv4Addr,
    /// Underlay device index.
    pub underlay_index: u32,
    /// UDP destination port.
    pub port: u16,
    pub mtu: u32,
    pub mac: MacAddr,
}

/// What the kernel reports for an existing VXLAN device.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VxlanInfo {
    pub vni: Option<u32>,
    pub local: Option<Ipv4Addr>,
    pub underlay_index: Option<u32>,
    pub port: Option<u16>,
    pub learning: Option<bool>,
}

impl VxlanInfo {
    /// True when a device with these attributes can serve `opts` unchanged.
    pub fn matches(&self, opts: &VxlanOptions) -> bool {
        self.vni == Some(opts.vni)
            && self.local == Some(opts.local)
            && self.underlay_index == Some(opts.underlay_index)
            && self.port == Some(opts.port)
            && self.learning == Some(false)
    }
}

impl Handle {
    /// Creates the VXLAN device (down; the caller sets the address and brings it up).
    pub fn create_vxlan(&mut self, opts: &VxlanOptions) -> Result<()> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(opts.name.clone()));
        m.attributes.push(LinkAttribute::Mtu(opts.mtu));
        m.attributes
            .push(LinkAttribute::Address(opts.mac.0.to_vec()));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Vxlan),
            LinkInfo::Data(InfoData::Vxlan(vec![
                InfoVxlan::Id(opts.vni),
                InfoVxlan::Local(opts.local),
                InfoVxlan::Link(opts.underlay_index),
                InfoVxlan::Port(opts.port),
                InfoVxlan::Learning(false),
                InfoVxlan::UDPCsum(false),
            ])),
        ]));
        let what = format!(
            "create vxlan {} (vni {} local {} port {})",
            opts.name, opts.vni, opts.local, opts.port
        );
        self.request(
            RouteNetlinkMessage::NewLink(m),
            NLM_F_CREATE | NLM_F_EXCL,
            &what,
        )
        .map(|_| ())
    }

    /// The VXLAN attributes of `link` (`None` fields when the kernel did not report them).
    pub fn vxlan_info(&mut self, link: &Link) -> Result<VxlanInfo> {
        let mut m = LinkMessage::default();
        m.header.index = link.index;
        let what = format!("get vxlan attributes of {}", link.name);
        let msgs = self.request(RouteNetlinkMessage::GetLink(m), 0, &what)?;
        let mut info = VxlanInfo::default();
        for msg in &msgs {
            let RouteNetlinkMessage::NewLink(l) = msg else {
                continue;
            };
            for a in &l.attributes {
                let LinkAttribute::LinkInfo(infos) = a else {
                    continue;
                };
                for i in infos {
                    let LinkInfo::Data(InfoData::Vxlan(attrs)) = i else {
                        continue;
                    };
                    for v in attrs {
                        match v {
                            InfoVxlan::Id(id) => info.vni = Some(*id),
                            InfoVxlan::Local(ip) => info.local = Some(*ip),
                            InfoVxlan::Link(idx) => info.underlay_index = Some(*idx),
                            InfoVxlan::Port(p) => info.port = Some(*p),
                            InfoVxlan::Learning(on) => info.learning = Some(*on),
                            _ => {}
                        }
                    }
                }
            }
        }
        Ok(info)
    }
}
