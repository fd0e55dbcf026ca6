//! Firewall hooks of the bridge plugin: `ipMasq` and `macspoofchk`.
//!
//! The rules themselves are nftables programs in `twill_net::nft` (written separately);
//! this module is the one place the bridge plugin calls them, so the call sites in ADD,
//! DEL, CHECK and GC stay fixed while the implementation lands. Until it does, every hook
//! fails with a clear error instead of pretending the rules exist.
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

/// The attachment whose rules a hook manages.
#[derive(Debug, Clone, Copy)]
pub struct Attachment<'a> {
    pub network: &'a str,
    pub container_id: &'a str,
    pub ifname: &'a str,
}

fn masq_unavailable() -> CniError {
    CniError::internal("ipMasq is not available yet")
}

fn macspoof_unavailable() -> CniError {
    CniError::internal("macspoofchk is not available yet")
}

/// Masquerade traffic from `pod_addrs` leaving their subnets.
/// Lead: `twill_net::nft::masq::setup(a.network, a.container_id, a.ifname, pod_addrs)`.
pub fn masq_setup(
    a: &Attachment<'_>,
    pod_addrs: &[IpNetwork],
    backend: MasqBackend,
) -> Result<(), CniError> {
    let _ = (a, pod_addrs, backend);
    Err(masq_unavailable())
}

/// Remove the attachment's masquerade rules; absent rules are success.
/// Lead: `twill_net::nft::masq::teardown(a.network, a.container_id, a.ifname)`.
pub fn masq_teardown(a: &Attachment<'_>, backend: MasqBackend) -> Result<(), CniError> {
    let _ = (a, backend);
    Err(masq_unavailable())
}

/// Verify the attachment's masquerade rules exist for `pod_addrs`.
/// Lead: `twill_net::nft::masq::check(..)`.
pub fn masq_check(
    a: &Attachment<'_>,
    pod_addrs: &[IpNetwork],
    backend: MasqBackend,
) -> Result<(), CniError> {
    let _ = (a, pod_addrs, backend);
    Err(masq_unavailable())
}

/// Remove masquerade rules of `network` whose `(container id, ifname)` is not in `valid`.
/// Lead: `twill_net::nft::masq::gc(network, valid)`.
pub fn masq_gc(
    network: &str,
    valid: &[(String, String)],
    backend: MasqBackend,
) -> Result<(), CniError> {
    let _ = (network, valid, backend);
    Err(masq_unavailable())
}

/// Drop frames from the container whose source MAC is not `container_mac`.
/// Lead: `twill_net::nft::macspoof::setup(container_id, ifname, host_veth, container_mac)`.
pub fn macspoof_setup(
    a: &Attachment<'_>,
    host_veth: &str,
    container_mac: MacAddr,
) -> Result<(), CniError> {
    let _ = (a, host_veth, container_mac);
    Err(macspoof_unavailable())
}

/// Remove the attachment's MAC spoof check; absent rules are success.
/// Lead: `twill_net::nft::macspoof::teardown(container_id, ifname)`.
pub fn macspoof_teardown(a: &Attachment<'_>) -> Result<(), CniError> {
    let _ = a;
    Err(macspoof_unavailable())
}
