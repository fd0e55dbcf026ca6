//! The `bridge` CNI plugin: a drop-in for the reference `plugins/main/bridge`.
//!
//! A Linux bridge on the host (created on first use, never deleted), one veth pair per
//! attachment with the container end created directly in the container's namespace, the
//! host end enslaved to the bridge, and addresses from a delegated IPAM plugin. Layout:
//! - [`config`]: keys, defaults and validation (pure; everything is validated before
//!   anything is touched);
//! - [`plan`]: gateway, default-route, bridge-address and result decisions (pure);
//! - `add`, `del`, `check`: the kernel side, over `twill_net::netlink`;
//! - [`firewall`]: the `ipMasq` / `macspoofchk` hooks;
//! - [`rollback`]: undo guards that make a failed ADD leave nothing behind.
//!
//! Results, errors and idempotence follow the reference so runtimes cannot tell the
//! difference; where we differ it is stricter validation (code 7 before any change) and
//! errors that name the object and the errno.

mod add;
mod check;
pub mod config;
mod del;
pub mod firewall;
pub mod plan;
pub mod rollback;

use config::Config;
use twill_cni::env::Command;
use twill_cni::{CniError, CniResult, Plugin, Request, invoke};
use twill_net::netlink::NetlinkError;

/// The plugin, for [`twill_cni::skel::main`].
pub struct Bridge;

/// A kernel error as a CNI error (code 999, the message names object and errno).
pub(crate) fn nl(e: NetlinkError) -> CniError {
    CniError::internal(e.to_string())
}

/// The reference's text for "CNI_IFNAME already exists in the container".
pub(crate) fn container_err(ifname: &str) -> CniError {
    CniError::internal(format!(
        "container veth name provided ({ifname}) already exists"
    ))
}

impl Plugin for Bridge {
    fn about(&self) -> String {
        format!("CNI bridge plugin (twill {})", env!("CARGO_PKG_VERSION"))
    }

    fn add(&self, req: &Request) -> Result<CniResult, CniError> {
        let conf = Config::from_request(req)?;
        add::add(req, &conf)
    }

    fn del(&self, req: &Request) -> Result<(), CniError> {
        let conf = Config::from_request(req)?;
        del::del(req, &conf)
    }

    fn check(&self, req: &Request) -> Result<(), CniError> {
        let conf = Config::from_request(req)?;
        check::check(req, &conf)
    }

    fn status(&self, req: &Request) -> Result<(), CniError> {
        let conf = Config::from_request(req)?;
        match &conf.ipam_type {
            Some(ipam) => invoke::delegate(ipam, Command::Status, &req.env, &req.stdin),
            None => Ok(()),
        }
    }

    /// Removes firewall rules of attachments not in the valid list, then forwards GC to
    /// IPAM; keeps going past the first error and reports both.
    fn gc(&self, req: &Request) -> Result<(), CniError> {
        let conf = Config::from_request(req)?;
        let mut errors: Vec<CniError> = Vec::new();
        let valid: Vec<(String, String)> = req
            .conf
            .gc_valid_attachments()
            .into_iter()
            .map(|a| (a.container_id, a.ifname))
            .collect();
        if conf.ip_masq
            && conf.ipam_type.is_some()
            && let Err(e) = firewall::masq_gc(&conf.network, &valid, conf.masq_backend)
        {
            errors.push(e);
        }
        if conf.macspoofchk
            && let Err(e) = firewall::macspoof_gc(&conf.network, &valid)
        {
            errors.push(e);
        }
        if let Some(ipam) = &conf.ipam_type
            && let Err(e) = invoke::delegate(ipam, Command::Gc, &req.env, &req.stdin)
        {
            errors.push(e);
        }
        twill_cni::error::collect(errors)
    }
}
