//! Backends connect this node to its peers: a closed set, so an enum (CONVENTIONS 5).
//!
//! [`plan`] computes what the kernel should hold from the full peer set (pure), [`apply`]
//! makes the kernel match it. This module holds what differs per backend: the identity a
//! node publishes in its lease (`BackendType`, `BackendData`), the device it needs (the VXLAN
//! device for `vxlan`, nothing for `host-gw`), the pod MTU, and which plan function applies.

pub mod apply;
pub mod plan;

use crate::lease::manager::PeerSet;
use crate::netconf::{BackendConfig, NetConfig, VxlanOptions as VxlanConf};
use ipnetwork::{IpNetwork, Ipv4Network};
use plan::{Desired, Underlay};
use serde_json::{Value, json};
use std::net::Ipv4Addr;
use twill_net::netlink::{Family, Handle, Link, MacAddr, NetlinkError, VxlanOptions};

/// VXLAN overhead: outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8.
pub const VXLAN_OVERHEAD: u32 = 50;

/// The underlay as discovered at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnderlayInfo {
    pub dev: String,
    pub index: u32,
    pub mtu: u32,
    pub public_ip: Ipv4Addr,
    pub prefixes: Vec<Ipv4Network>,
}

impl UnderlayInfo {
    pub fn as_plan(&self) -> Underlay {
        Underlay {
            dev: self.dev.clone(),
            prefixes: self.prefixes.clone(),
        }
    }
}

/// Finds the underlay: `iface` if given, else the device of the IPv4 default route; the
/// public IP is `public_ip` if given, else the device's first IPv4 address.
pub fn discover_underlay(
    h: &mut Handle,
    iface: Option<&str>,
    public_ip: Option<Ipv4Addr>,
) -> Result<UnderlayInfo, String> {
    let link: Link = match iface {
        Some(name) => h.link(name).map_err(|e| format!("--iface {name}: {e}"))?,
        None => {
            let routes = h.routes(Family::V4).map_err(|e| e.to_string())?;
            let oif = routes
                .iter()
                .find(|r| {
                    r.dst.prefix() == 0
                        && r.table == twill_net::netlink::TABLE_MAIN
                        && r.oif.is_some()
                })
                .and_then(|r| r.oif)
                .ok_or("no IPv4 default route to pick the underlay interface from: pass --iface")?;
            h.link_by_index(oif).map_err(|e| e.to_string())?
        }
    };
    let addrs = h
        .addresses(Some(&link), Some(Family::V4))
        .map_err(|e| e.to_string())?;
    let prefixes: Vec<Ipv4Network> = addrs
        .iter()
        .filter_map(|a| match a.address {
            IpNetwork::V4(n) => Some(n),
            IpNetwork::V6(_) => None,
        })
        .collect();
    let public_ip = match public_ip {
        Some(ip) => ip,
        None => prefixes.first().map(|p| p.ip()).ok_or_else(|| {
            format!(
                "{} has no IPv4 address: pass --public-ip or --iface",
                link.name
            )
        })?,
    };
    Ok(UnderlayInfo {
        dev: link.name.clone(),
        index: link.index,
        mtu: link.mtu,
        public_ip,
        prefixes,
    })
}

/// The VTEP MAC of a node: locally administered, derived from its PublicIP so it is the same
/// across restarts and device re-creation (peers' FDB and neighbour entries stay valid).
pub fn vtep_mac(public_ip: Ipv4Addr) -> MacAddr {
    let o = public_ip.octets();
    MacAddr([0x02, 0x54, o[0], o[1], o[2], o[3]])
}

/// The active backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Vxlan(VxlanConf),
    HostGw,
}

impl Backend {
    pub fn from_config(cfg: &NetConfig) -> Backend {
        match &cfg.backend {
            BackendConfig::Vxlan(v) => Backend::Vxlan(v.clone()),
            BackendConfig::HostGw => Backend::HostGw,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Backend::Vxlan(_) => "vxlan",
            Backend::HostGw => "host-gw",
        }
    }

    /// `BackendData` published in our lease.
    pub fn backend_data(&self, underlay: &UnderlayInfo) -> Value {
        match self {
            Backend::Vxlan(v) => {
                json!({"VNI": v.vni, "VtepMAC": vtep_mac(underlay.public_ip).to_string()})
            }
            Backend::HostGw => Value::Null,
        }
    }

    /// Name of our overlay device, if the backend has one.
    pub fn overlay_dev(&self) -> Option<String> {
        match self {
            Backend::Vxlan(v) => Some(format!("twill.{}", v.vni)),
            Backend::HostGw => None,
        }
    }

    /// MTU for pod interfaces.
    pub fn mtu(&self, underlay: &UnderlayInfo) -> u32 {
        match self {
            Backend::Vxlan(v) => v.mtu.unwrap_or(underlay.mtu.saturating_sub(VXLAN_OVERHEAD)),
            Backend::HostGw => underlay.mtu,
        }
    }

    /// Creates or adopts the backend's device for our `subnet`. An existing device with the
    /// right parameters is kept as is (traffic keeps flowing across daemon restarts); one
    /// with other parameters is re-created.
    pub fn setup(
        &self,
        h: &mut Handle,
        underlay: &UnderlayInfo,
        subnet: Ipv4Network,
    ) -> Result<(), NetlinkError> {
        let Backend::Vxlan(v) = self else {
            return Ok(());
        };
        let name = format!("twill.{}", v.vni);
        let opts = VxlanOptions {
            name: name.clone(),
            vni: v.vni,
            local: underlay.public_ip,
            underlay_index: underlay.index,
            port: v.port,
            mtu: self.mtu(underlay),
            mac: vtep_mac(underlay.public_ip),
        };
        let link = match h.find_link(&name)? {
            Some(l) if h.vxlan_info(&l)?.matches(&opts) && l.mac == Some(opts.mac) => l,
            Some(l) => {
                tracing::warn!(device = %name, "existing VXLAN device has other parameters; re-creating it");
                h.delete_link(&l)?;
                h.create_vxlan(&opts)?;
                h.link(&name)?
            }
            None => {
                h.create_vxlan(&opts)?;
                h.link(&name)?
            }
        };
        if link.mtu != opts.mtu {
            h.set_mtu(&link, opts.mtu)?;
        }
        // The VTEP address: our subnet's network address as a /32 (flannel's layout).
        let vtep = IpNetwork::V4(Ipv4Network::from(subnet.network()));
        let addrs = h.addresses(Some(&link), Some(Family::V4))?;
        for a in &addrs {
            if a.address != vtep {
                h.del_address(&link, &a.address)?;
            }
        }
        if !addrs.iter().any(|a| a.address == vtep) {
            h.add_address(&link, &vtep)?;
        }
        if !link.up {
            h.set_up(&link)?;
        }
        Ok(())
    }

    /// What the kernel should hold for `peers`.
    pub fn desired(&self, peers: &PeerSet, underlay: &UnderlayInfo) -> Desired {
        match self {
            Backend::Vxlan(v) => plan::vxlan(
                peers,
                &format!("twill.{}", v.vni),
                &underlay.as_plan(),
                v.direct_routing,
            ),
            Backend::HostGw => plan::host_gw(peers, &underlay.as_plan()),
        }
    }
}

/// The gateway address of a node subnet (first host), as written to the subnet file.
pub fn gateway_of(subnet: Ipv4Network) -> Ipv4Network {
    let gw = Ipv4Addr::from(u32::from(subnet.network()) + 1);
    Ipv4Network::new(gw, subnet.prefix()).unwrap_or(subnet)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vtep_mac_is_stable_and_local() {
        let m = vtep_mac(Ipv4Addr::new(192, 168, 50, 7));
        assert_eq!(m.to_string(), "02:54:c0:a8:32:07");
        assert_eq!(m, vtep_mac(Ipv4Addr::new(192, 168, 50, 7)));
    }

    #[test]
    fn gateway_is_first_host() {
        assert_eq!(
            gateway_of("10.244.5.0/24".parse().unwrap()).to_string(),
            "10.244.5.1/24"
        );
    }

    #[test]
    fn mtu_per_backend() {
        let u = UnderlayInfo {
            dev: "eth0".into(),
            index: 2,
            mtu: 1500,
            public_ip: Ipv4Addr::new(192, 168, 50, 7),
            prefixes: vec![],
        };
        let vx = Backend::Vxlan(VxlanConf {
            vni: 1,
            port: 8472,
            mtu: None,
            direct_routing: false,
        });
        assert_eq!(vx.mtu(&u), 1450);
        assert_eq!(Backend::HostGw.mtu(&u), 1500);
        assert_eq!(vx.backend_data(&u)["VtepMAC"], "02:54:c0:a8:32:07");
        assert_eq!(vx.overlay_dev().as_deref(), Some("twill.1"));
    }
}
