//! Firewall hooks of the bridge plugin: `ipMasq` and `macspoofchk`.
//!
//! The rules themselves are nftables programs in `twill_net::nft` (`masq`: table
//! `inet twill_masq`; `macspoof`: our own bridge-family table); this module is the one place
//! the bridge plugin calls them and turns their errors into CNI errors naming the attachment.
//!
//! Call sites (all in this crate):
//! - ADD (`add.rs`): [`macspoof_setup`] right after the veth is on the bridge (undo:
//!   [`macspoof_teardown`]); [`masq_setup`] after the addresses and gateway are configured
//!   (undo: [`masq_teardown`]).
//! - DEL (`del.rs`): [`macspoof_teardown`] and [`masq_teardown`] after IPAM DEL.
//! - CHECK (`check.rs`): [`masq_check`] after the addresses and routes are verified.
//! - GC (`lib.rs`): [`masq_gc`] before IPAM GC.

use crate::config::MasqBackend;
use ipnetwork::IpNetwork;
use twill_cni::CniError;
use twill_net::netlink::MacAddr;
use twill_net::nft::{NftError, macspoof, masq};

/// The attachment whose rules a hook manages.
#[derive(Debug, Clone, Copy)]
pub struct Attachment<'a> {
    pub network: &'a str,
    pub container_id: &'a str,
    pub ifname: &'a str,
}

fn nft_err(what: &str, a: &Attachment<'_>, e: NftError) -> CniError {
    CniError::internal(format!(
        "{what} for container {} interface {}: {e}",
        a.container_id, a.ifname
    ))
}

/// Masquerade traffic from `pod_addrs` leaving their subnets. Every `ipMasqBackend` value is
/// served by nftables: `iptables` is accepted so existing configs keep working, but we never
/// fork iptables (the reference's cost) and the rules live in our own `inet twill_masq`.
pub fn masq_setup(
    a: &Attachment<'_>,
    pod_addrs: &[IpNetwork],
    _backend: MasqBackend,
) -> Result<(), CniError> {
    masq::setup(a.network, a.container_id, a.ifname, pod_addrs)
        .map_err(|e| nft_err("set up masquerade", a, e))
}

/// Remove the attachment's masquerade rules; absent rules are success.
pub fn masq_teardown(a: &Attachment<'_>, _backend: MasqBackend) -> Result<(), CniError> {
    masq::teardown(a.network, a.container_id, a.ifname)
        .map_err(|e| nft_err("remove masquerade", a, e))
}

/// Verify the attachment's masquerade rules exist for `pod_addrs`.
pub fn masq_check(
    a: &Attachment<'_>,
    pod_addrs: &[IpNetwork],
    _backend: MasqBackend,
) -> Result<(), CniError> {
    masq::check(a.network, a.container_id, a.ifname, pod_addrs)
        .map_err(|e| nft_err("check masquerade", a, e))
}

/// Remove masquerade rules of `network` whose `(container id, ifname)` is not in `valid`.
pub fn masq_gc(
    network: &str,
    valid: &[(String, String)],
    _backend: MasqBackend,
) -> Result<(), CniError> {
    masq::gc(network, valid)
        .map_err(|e| CniError::internal(format!("gc masquerade rules of network {network}: {e}")))
}

/// Drop frames from the container whose source MAC is not `container_mac`.
pub fn macspoof_setup(
    a: &Attachment<'_>,
    host_veth: &str,
    container_mac: MacAddr,
) -> Result<(), CniError> {
    macspoof::setup(
        a.network,
        a.container_id,
        a.ifname,
        host_veth,
        &container_mac.to_string(),
    )
    .map_err(|e| nft_err("set up mac spoof check", a, e))
}

/// Remove the attachment's MAC spoof check; absent rules are success.
pub fn macspoof_teardown(a: &Attachment<'_>) -> Result<(), CniError> {
    macspoof::teardown(a.network, a.container_id, a.ifname)
        .map_err(|e| nft_err("remove mac spoof check", a, e))
}

/// Remove MAC spoof checks of `network` whose `(container id, ifname)` is not in `valid`.
pub fn macspoof_gc(network: &str, valid: &[(String, String)]) -> Result<(), CniError> {
    macspoof::gc(network, valid)
        .map_err(|e| CniError::internal(format!("gc mac spoof checks of network {network}: {e}")))
}
