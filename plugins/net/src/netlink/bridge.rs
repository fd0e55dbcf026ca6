//! Bridge VLAN entries of a port (`bridge vlan add/del/show`).
//!
//! These live in the `AF_BRIDGE` family: `RTM_SETLINK`/`RTM_DELLINK` with an
//! `IFLA_AF_SPEC` holding `IFLA_BRIDGE_VLAN_INFO {flags, vid}`, and a dump of `AF_BRIDGE`
//! links with `IFLA_EXT_MASK = RTEXT_FILTER_BRVLAN` to read them back (the kernel has no
//! single-link GET for this family). They only work on bridges with `vlan_filtering` and on
//! kernels built with `CONFIG_BRIDGE_VLAN_FILTERING`; elsewhere the kernel answers
//! `EOPNOTSUPP`, which we pass on unchanged.

use super::error::Result;
use super::handle::Handle;
use super::link::Link;
use netlink_packet_route::link::{
    AfSpecBridge, BridgeFlag, BridgeVlanInfo, BridgeVlanInfoFlags, LinkAttribute, LinkExtentMask,
    LinkMessage,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

/// One VLAN entry of a bridge port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BridgeVlan {
    pub vid: u16,
    /// Untagged ingress frames are classified into this VLAN.
    pub pvid: bool,
    /// Frames leave the port untagged.
    pub untagged: bool,
}

fn vlan_msg(port: &Link, vlan: &BridgeVlan) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.interface_family = AddressFamily::Bridge;
    m.header.index = port.index;
    let mut flags = BridgeVlanInfoFlags::empty();
    if vlan.pvid {
        flags |= BridgeVlanInfoFlags::Pvid;
    }
    if vlan.untagged {
        flags |= BridgeVlanInfoFlags::Untagged;
    }
    m.attributes.push(LinkAttribute::AfSpecBridge(vec![
        AfSpecBridge::Flags(BridgeFlag::Controller),
        AfSpecBridge::VlanInfo(BridgeVlanInfo {
            flags,
            vid: vlan.vid,
        }),
    ]));
    m
}

impl Handle {
    /// Adds (or updates the flags of) a VLAN on a bridge port.
    pub fn add_bridge_vlan(&mut self, port: &Link, vlan: &BridgeVlan) -> Result<()> {
        let what = format!("add vlan {} to bridge port {}", vlan.vid, port.name);
        self.request(RouteNetlinkMessage::SetLink(vlan_msg(port, vlan)), 0, &what)
            .map(|_| ())
    }

    /// Removes a VLAN from a bridge port.
    pub fn del_bridge_vlan(&mut self, port: &Link, vid: u16) -> Result<()> {
        let what = format!("delete vlan {vid} from bridge port {}", port.name);
        let v = BridgeVlan {
            vid,
            pvid: false,
            untagged: false,
        };
        self.request(RouteNetlinkMessage::DelLink(vlan_msg(port, &v)), 0, &what)
            .map(|_| ())
    }

    /// The VLAN entries of a bridge port (empty when VLAN filtering is off).
    pub fn bridge_vlans(&mut self, port: &Link) -> Result<Vec<BridgeVlan>> {
        let mut m = LinkMessage::default();
        m.header.interface_family = AddressFamily::Bridge;
        m.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::Brvlan]));
        let what = format!("list vlans of bridge port {}", port.name);
        let msgs = self.dump(RouteNetlinkMessage::GetLink(m), &what)?;
        let mut out = Vec::new();
        for msg in msgs {
            let RouteNetlinkMessage::NewLink(l) = msg else {
                continue;
            };
            if l.header.index != port.index {
                continue;
            }
            for a in &l.attributes {
                if let LinkAttribute::AfSpecBridge(spec) = a {
                    for s in spec {
                        if let AfSpecBridge::VlanInfo(info) = s {
                            out.push(BridgeVlan {
                                vid: info.vid,
                                pvid: info.flags.contains(BridgeVlanInfoFlags::Pvid),
                                untagged: info.flags.contains(BridgeVlanInfoFlags::Untagged),
                            });
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::link::OperState;
    use netlink_packet_core::Emitable;

    #[test]
    fn vlan_request_encodes_af_spec_like_iproute2() {
        let port = Link {
            index: 7,
            name: "veth1".into(),
            kind: Some("veth".into()),
            mac: None,
            mtu: 1500,
            up: true,
            promisc: false,
            oper_state: OperState::Up,
            master: Some(2),
            peer_index: None,
            vlan_filtering: None,
            bridge_port: None,
        };
        let m = vlan_msg(
            &port,
            &BridgeVlan {
                vid: 100,
                pvid: true,
                untagged: true,
            },
        );
        let mut buf = vec![0u8; m.buffer_len()];
        m.emit(&mut buf);
        // ifinfomsg: family AF_BRIDGE (7), index 7.
        assert_eq!(buf[0], 7);
        assert_eq!(u32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]), 7);
        // IFLA_AF_SPEC (26) nesting IFLA_BRIDGE_FLAGS=MASTER and
        // IFLA_BRIDGE_VLAN_INFO {flags PVID|UNTAGGED = 6, vid 100}.
        let attrs = &buf[16..];
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]);
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        assert_eq!((len, kind), (4 + 8 + 8, 26));
        assert_eq!(&attrs[4..8], &[6, 0, 0, 0]); // len 6, type IFLA_BRIDGE_FLAGS
        assert_eq!(u16::from_ne_bytes([attrs[8], attrs[9]]), 1); // BRIDGE_FLAGS_MASTER
        assert_eq!(&attrs[12..16], &[8, 0, 2, 0]); // len 8, type IFLA_BRIDGE_VLAN_INFO
        assert_eq!(u16::from_ne_bytes([attrs[16], attrs[17]]), 6);
        assert_eq!(u16::from_ne_bytes([attrs[18], attrs[19]]), 100);
    }
}
