//! Links: lookup, attribute changes, deletion, and creation of veth pairs and bridges.
//!
//! Operations take the [`Link`] they act on (not a bare index) so every error can name the
//! interface. A veth pair is created in one request with its peer placed directly in the
//! target namespace (`IFLA_NET_NS_FD` inside the peer's `ifinfomsg`), as netavark does: no
//! thread ever enters the container namespace to create it, and the kernel checks the peer
//! name against the *target* namespace, so an existing container interface of that name is
//! an `EEXIST` from the very request that would have clashed. Bridge-port attributes
//! (hairpin = `IFLA_BRPORT_MODE`, isolation) are set as bridge "slave data" on the port, the
//! way `ip link set ... type bridge_slave` does.

use super::error::{NetlinkError, Result};
use super::handle::Handle;
use super::mac::MacAddr;
use super::ns::Netns;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    InfoBridge, InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth,
    LinkAttribute, LinkFlags, LinkInfo, LinkMessage, State,
};
use std::fmt;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

/// RFC 2863 operational state (`IFLA_OPERSTATE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperState {
    Unknown,
    NotPresent,
    Down,
    LowerLayerDown,
    Testing,
    Dormant,
    Up,
}

impl fmt::Display for OperState {
    /// Lowercase like `ip link` and the reference plugins' messages (`down`, `up`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OperState::Unknown => "unknown",
            OperState::NotPresent => "not-present",
            OperState::Down => "down",
            OperState::LowerLayerDown => "lower-layer-down",
            OperState::Testing => "testing",
            OperState::Dormant => "dormant",
            OperState::Up => "up",
        })
    }
}

impl From<&State> for OperState {
    fn from(s: &State) -> Self {
        match s {
            State::NotPresent => OperState::NotPresent,
            State::Down => OperState::Down,
            State::LowerLayerDown => OperState::LowerLayerDown,
            State::Testing => OperState::Testing,
            State::Dormant => OperState::Dormant,
            State::Up => OperState::Up,
            _ => OperState::Unknown,
        }
    }
}

/// Bridge-port attributes of a link enslaved to a bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BridgePort {
    /// Hairpin mode (`IFLA_BRPORT_MODE`): frames may leave through the port they came in.
    pub hairpin: bool,
    /// Port isolation (`IFLA_BRPORT_ISOLATED`): isolated ports cannot talk to each other.
    pub isolated: bool,
}

/// A snapshot of one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `IFLA_INFO_KIND` (`bridge`, `veth`, ...); `None` for devices without one (e.g. `lo`).
    pub kind: Option<String>,
    pub mac: Option<MacAddr>,
    pub mtu: u32,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// `IFF_PROMISC`.
    pub promisc: bool,
    pub oper_state: OperState,
    /// Index of the master (bridge) this link is enslaved to.
    pub master: Option<u32>,
    /// `IFLA_LINK`: for a veth the peer's index, in the peer's namespace.
    pub peer_index: Option<u32>,
    /// Bridges only: `vlan_filtering`.
    pub vlan_filtering: Option<bool>,
    /// Bridge ports only.
    pub bridge_port: Option<BridgePort>,
}

impl Link {
    pub fn is_bridge(&self) -> bool {
        self.kind.as_deref() == Some("bridge")
    }

    pub fn is_veth(&self) -> bool {
        self.kind.as_deref() == Some("veth")
    }

    pub(crate) fn from_message(m: &LinkMessage) -> Link {
        let mut link = Link {
            index: m.header.index,
            name: String::new(),
            kind: None,
            mac: None,
            mtu: 0,
            up: m.header.flags.contains(LinkFlags::Up),
            promisc: m.header.flags.contains(LinkFlags::Promisc),
            oper_state: OperState::Unknown,
            master: None,
            peer_index: None,
            vlan_filtering: None,
            bridge_port: None,
        };
        for a in &m.attributes {
            match a {
                LinkAttribute::IfName(n) => link.name = n.clone(),
                LinkAttribute::Address(b) => link.mac = MacAddr::from_bytes(b),
                LinkAttribute::Mtu(v) => link.mtu = *v,
                LinkAttribute::OperState(s) => link.oper_state = s.into(),
                LinkAttribute::Controller(i) if *i != 0 => link.master = Some(*i),
                LinkAttribute::Link(i) if *i != 0 => link.peer_index = Some(*i),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        match info {
                            LinkInfo::Kind(k) => link.kind = Some(k.to_string()),
                            LinkInfo::Data(InfoData::Bridge(attrs)) => {
                                for b in attrs {
                                    if let InfoBridge::VlanFiltering(on) = b {
                                        link.vlan_filtering = Some(*on);
                                    }
                                }
                            }
                            LinkInfo::PortData(InfoPortData::BridgePort(attrs)) => {
                                let mut port = BridgePort::default();
                                for p in attrs {
                                    match p {
                                        InfoBridgePort::HairpinMode(on) => port.hairpin = *on,
                                        InfoBridgePort::Isolated(on) => port.isolated = *on,
                                        _ => {}
                                    }
                                }
                                link.bridge_port = Some(port);
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }
}

/// A new bridge.
#[derive(Debug, Clone, Default)]
pub struct BridgeOptions<'a> {
    pub name: &'a str,
    /// `None`: the kernel default (1500).
    pub mtu: Option<u32>,
    /// Set `vlan_filtering` at creation.
    pub vlan_filtering: bool,
}

/// A new veth pair: `name` here, `peer_name` in `peer_netns` (here when `None`).
#[derive(Debug, Default)]
pub struct VethOptions<'a> {
    pub name: &'a str,
    pub peer_name: &'a str,
    pub peer_netns: Option<&'a Netns>,
    /// MTU of both ends; `None` for the kernel default.
    pub mtu: Option<u32>,
    /// MAC of the local end; `None`: random.
    pub mac: Option<MacAddr>,
    /// MAC of the peer; `None`: random.
    pub peer_mac: Option<MacAddr>,
}

fn link_msg(index: u32) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m
}

fn one_link(msgs: Vec<RouteNetlinkMessage>, what: &str) -> Result<Link> {
    msgs.iter()
        .find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(Link::from_message(l)),
            _ => None,
        })
        .ok_or_else(|| NetlinkError::protocol(what, "no link in the kernel's answer"))
}

impl Handle {
    /// The link named `name`; a missing one is `ENODEV` ([`NetlinkError::is_not_found`]).
    pub fn link(&mut self, name: &str) -> Result<Link> {
        let what = format!("get link {name}");
        let mut m = link_msg(0);
        m.attributes.push(LinkAttribute::IfName(name.to_owned()));
        let msgs = self.request(RouteNetlinkMessage::GetLink(m), 0, &what)?;
        one_link(msgs, &what)
    }

    /// Like [`Handle::link`] but a missing link is `Ok(None)`.
    pub fn find_link(&mut self, name: &str) -> Result<Option<Link>> {
        match self.link(name) {
            Ok(l) => Ok(Some(l)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The link with index `index`.
    pub fn link_by_index(&mut self, index: u32) -> Result<Link> {
        let what = format!("get link {index}");
        let msgs = self.request(RouteNetlinkMessage::GetLink(link_msg(index)), 0, &what)?;
        one_link(msgs, &what)
    }

    /// Every link of the namespace.
    pub fn links(&mut self) -> Result<Vec<Link>> {
        let msgs = self.dump(RouteNetlinkMessage::GetLink(link_msg(0)), "list links")?;
        Ok(msgs
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(Link::from_message(l)),
                _ => None,
            })
            .collect())
    }

    fn set_link(&mut self, m: LinkMessage, what: &str) -> Result<()> {
        self.request(RouteNetlinkMessage::SetLink(m), 0, what)
            .map(|_| ())
    }

    fn set_flag(&mut self, link: &Link, flag: LinkFlags, on: bool, what: &str) -> Result<()> {
        let mut m = link_msg(link.index);
        if on {
            m.header.flags = flag;
        }
        m.header.change_mask = flag;
        self.set_link(m, what)
    }

    /// Administratively up.
    pub fn set_up(&mut self, link: &Link) -> Result<()> {
        self.set_flag(link, LinkFlags::Up, true, &format!("set {} up", link.name))
    }

    /// Administratively down.
    pub fn set_down(&mut self, link: &Link) -> Result<()> {
        self.set_flag(
            link,
            LinkFlags::Up,
            false,
            &format!("set {} down", link.name),
        )
    }

    pub fn set_promisc(&mut self, link: &Link, on: bool) -> Result<()> {
        let what = format!(
            "set promiscuous mode {} on {}",
            if on { "on" } else { "off" },
            link.name
        );
        self.set_flag(link, LinkFlags::Promisc, on, &what)
    }

    pub fn set_mtu(&mut self, link: &Link, mtu: u32) -> Result<()> {
        let mut m = link_msg(link.index);
        m.attributes.push(LinkAttribute::Mtu(mtu));
        self.set_link(m, &format!("set mtu {mtu} on {}", link.name))
    }

    pub fn set_mac(&mut self, link: &Link, mac: MacAddr) -> Result<()> {
        let mut m = link_msg(link.index);
        m.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
        self.set_link(m, &format!("set mac {mac} on {}", link.name))
    }

    /// Enslaves `link` to `master` (a bridge).
    pub fn set_master(&mut self, link: &Link, master: &Link) -> Result<()> {
        let mut m = link_msg(link.index);
        m.attributes.push(LinkAttribute::Controller(master.index));
        self.set_link(
            m,
            &format!("connect {} to bridge {}", link.name, master.name),
        )
    }

    /// Releases `link` from its master.
    pub fn set_nomaster(&mut self, link: &Link) -> Result<()> {
        let mut m = link_msg(link.index);
        m.attributes.push(LinkAttribute::Controller(0));
        self.set_link(m, &format!("release {} from its master", link.name))
    }

    pub fn rename(&mut self, link: &Link, new_name: &str) -> Result<()> {
        let mut m = link_msg(link.index);
        m.attributes
            .push(LinkAttribute::IfName(new_name.to_owned()));
        self.set_link(m, &format!("rename {} to {new_name}", link.name))
    }

    /// Deletes the link (for a veth, both ends).
    pub fn delete_link(&mut self, link: &Link) -> Result<()> {
        let what = format!("delete link {}", link.name);
        self.request(RouteNetlinkMessage::DelLink(link_msg(link.index)), 0, &what)
            .map(|_| ())
    }

    /// Creates a bridge. An existing link of that name is `EEXIST`.
    pub fn create_bridge(&mut self, opts: &BridgeOptions<'_>) -> Result<()> {
        let mut m = link_msg(0);
        m.attributes
            .push(LinkAttribute::IfName(opts.name.to_owned()));
        if let Some(mtu) = opts.mtu {
            m.attributes.push(LinkAttribute::Mtu(mtu));
        }
        let mut info = vec![LinkInfo::Kind(InfoKind::Bridge)];
        if opts.vlan_filtering {
            info.push(LinkInfo::Data(InfoData::Bridge(vec![
                InfoBridge::VlanFiltering(true),
            ])));
        }
        m.attributes.push(LinkAttribute::LinkInfo(info));
        let what = format!("create bridge {}", opts.name);
        self.request(
            RouteNetlinkMessage::NewLink(m),
            NLM_F_CREATE | NLM_F_EXCL,
            &what,
        )
        .map(|_| ())
    }

    /// Turns `vlan_filtering` of an existing bridge on or off.
    pub fn set_vlan_filtering(&mut self, bridge: &Link, on: bool) -> Result<()> {
        let mut m = link_msg(bridge.index);
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Bridge),
            LinkInfo::Data(InfoData::Bridge(vec![InfoBridge::VlanFiltering(on)])),
        ]));
        let what = format!("set vlan_filtering {} on {}", u8::from(on), bridge.name);
        self.request(RouteNetlinkMessage::NewLink(m), 0, &what)
            .map(|_| ())
    }

    /// Sets bridge-port attributes of `port` (which must be enslaved to a bridge).
    pub fn set_bridge_port(&mut self, port: &Link, attrs: &BridgePort) -> Result<()> {
        let mut m = link_msg(port.index);
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![
                InfoBridgePort::HairpinMode(attrs.hairpin),
                InfoBridgePort::Isolated(attrs.isolated),
            ])),
        ]));
        let what = format!(
            "set hairpin {} isolated {} on bridge port {}",
            u8::from(attrs.hairpin),
            u8::from(attrs.isolated),
            port.name
        );
        self.request(RouteNetlinkMessage::NewLink(m), 0, &what)
            .map(|_| ())
    }

    /// Creates a veth pair in one request, the peer directly in its namespace. `EEXIST` if
    /// either name is taken (in its own namespace).
    pub fn create_veth(&mut self, opts: &VethOptions<'_>) -> Result<()> {
        let mut peer = link_msg(0);
        peer.attributes
            .push(LinkAttribute::IfName(opts.peer_name.to_owned()));
        if let Some(mtu) = opts.mtu {
            peer.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(mac) = opts.peer_mac {
            peer.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
        }
        if let Some(ns) = opts.peer_netns {
            peer.attributes
                .push(LinkAttribute::NetNsFd(ns.as_fd().as_raw_fd()));
        }
        let mut m = link_msg(0);
        m.attributes
            .push(LinkAttribute::IfName(opts.name.to_owned()));
        if let Some(mtu) = opts.mtu {
            m.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(mac) = opts.mac {
            m.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
        }
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        let what = match opts.peer_netns {
            Some(ns) => format!(
                "create veth pair {} / {} (in {})",
                opts.name,
                opts.peer_name,
                ns.path().display()
            ),
            None => format!("create veth pair {} / {}", opts.name, opts.peer_name),
        };
        self.request(
            RouteNetlinkMessage::NewLink(m),
            NLM_F_CREATE | NLM_F_EXCL,
            &what,
        )
        .map(|_| ())
    }

    /// Polls `name` until its operational state is `want`, sleeping `delays` between looks
    /// (the first look is immediate). Returns the last snapshot; on timeout the error
    /// carries the state last seen.
    pub fn wait_oper_state(
        &mut self,
        name: &str,
        want: OperState,
        delays: &[Duration],
    ) -> Result<Link> {
        let mut link = self.link(name)?;
        for d in delays {
            if link.oper_state == want {
                return Ok(link);
            }
            std::thread::sleep(*d);
            link = self.link(name)?;
        }
        if link.oper_state == want {
            return Ok(link);
        }
        Err(NetlinkError::Timeout {
            what: format!("wait for {name} to become {want}"),
            msg: format!("state is {}", link.oper_state),
        })
    }
}
