//! DEL: remove the container interface, release the IP, remove the firewall rules.
//!
//! Idempotent as the spec and the reference `cmdDel` require: an empty `CNI_NETNS`, a
//! namespace path that no longer exists (or no longer is a namespace, e.g. the empty file a
//! bind mount leaves behind), and a missing interface all mean "already gone" and only IPAM
//! DEL remains. A failure to delete an interface that *does* exist stops DEL before IPAM
//! DEL, like the reference, so the address stays reserved while it may still be in use and
//! the runtime's retry can finish the job. The firewall teardowns run alongside the
//! interface deletion (see [`del`]), keep going past each other's errors, and all errors are
//! reported. The bridge is never deleted: it is
//! shared by every container of the network.

use crate::config::Config;
use crate::firewall::{self, Attachment};
use crate::nl;
use twill_cni::env::Command;
use twill_cni::{CniError, Request, invoke};
use twill_net::netlink::{Handle, NetlinkError, Netns};

pub(crate) fn del(req: &Request, conf: &Config) -> Result<(), CniError> {
    let env = &req.env;
    let a = Attachment {
        network: &conf.network,
        container_id: &env.container_id,
        ifname: &env.ifname,
    };
    // The firewall teardowns do not depend on the interface, so they run while the kernel
    // deletes the veth pair: both mostly wait for RCU grace periods (unregistering two
    // devices; releasing deleted nftables rules when the batch socket closes), and
    // overlapping the waits roughly halves DEL's wall time.
    let (link, mut errors) = std::thread::scope(|s| {
        let link = s.spawn(|| -> Result<(), CniError> {
            if env.netns.is_empty() {
                return Ok(());
            }
            match Netns::open(&env.netns) {
                Ok(ns) => delete_container_link(&ns, &env.ifname),
                Err(e) if gone(&e) => Ok(()),
                Err(e) => Err(nl(e)),
            }
        });
        let errors = firewall_teardown(conf, &a);
        let link = link.join().unwrap_or_else(|_| {
            Err(CniError::internal(
                "delete container interface: thread panicked",
            ))
        });
        (link, errors)
    });
    // An interface that exists but cannot be deleted keeps its address reserved.
    link?;
    if let Some(ipam) = &conf.ipam_type
        && let Err(e) = invoke::delegate(ipam, Command::Del, env, &req.stdin)
    {
        errors.insert(0, e);
    }
    twill_cni::error::collect(errors)
}

/// Removes the attachment's firewall rules; keeps going past errors and returns them all.
fn firewall_teardown(conf: &Config, a: &Attachment<'_>) -> Vec<CniError> {
    let mut errors = Vec::new();
    if conf.macspoofchk
        && let Err(e) = firewall::macspoof_teardown(a)
    {
        errors.push(e);
    }
    if conf.ip_masq
        && conf.ipam_type.is_some()
        && let Err(e) = firewall::masq_teardown(a, conf.masq_backend)
    {
        errors.push(e);
    }
    errors
}

/// The namespace is gone: its path is missing or is not a namespace any more.
fn gone(e: &NetlinkError) -> bool {
    e.is_not_found() || matches!(e, NetlinkError::Invalid { .. })
}

fn delete_container_link(ns: &Netns, ifname: &str) -> Result<(), CniError> {
    let mut h = Handle::in_netns(ns).map_err(nl)?;
    let Some(link) = h.find_link(ifname).map_err(nl)? else {
        return Ok(());
    };
    match h.delete_link(&link) {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(nl(e)),
    }
}
