//! host-local IPAM: hands out addresses from configured ranges and remembers them in files.
//!
//! A drop-in for the reference `/usr/lib/cni/host-local`: same configuration, same result,
//! same on-disk state, same lock, so a node can switch between the two plugins with
//! allocations intact. The crate is split the way the reference is, with the I/O at the
//! edges:
//! - [`config`] (pure): stdin + `CNI_ARGS` to validated range sets;
//! - [`range`] (pure): defaults, membership and overlap of ranges;
//! - [`allocator`] (pure): the round-robin policy, DEL and GC over a [`allocator::Store`];
//! - [`disk`]: the store as files under `<dataDir>/<network>/`, under an flock;
//! - [`dns`]: `resolvConf` into the result's `dns`.
//!
//! Error texts are the reference's wherever it has one (runtimes and operators grep for
//! them), but the codes are the spec's: configuration errors are 7, `CNI_ARGS` errors 4, a
//! requested address that the config cannot serve 7, STATUS failures 50, and failures of
//! the allocation itself (range exhausted, address taken, duplicate, file system) 999 like
//! the reference.
//!
//! Beyond the reference 1.1.1: GC and STATUS (spec 1.1.0); DEL, GC and STATUS read only the
//! network name and `dataDir`, so a broken or runtime-supplied range config never blocks a
//! release; `args.cni.ips` replaces `CNI_ARGS IP=` instead of adding to it.

pub mod allocator;
pub mod config;
pub mod disk;
pub mod dns;
pub mod range;

use allocator::{AllocError, SetError, StoreError};
use config::ConfigError;
use std::path::PathBuf;
use twill_cni::error::{INTERNAL, INVALID_NETWORK_CONFIG, NOT_AVAILABLE};
use twill_cni::{CniError, CniResult, Dns, IpConfig, Plugin, Request};

/// Everything host-local can fail with, each with its CNI code ([`Error::code`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("ipam.resolvConf: read {path}: {source}")]
    ResolvConf {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Alloc(#[from] AllocError),
    #[error("host-local: Failed to find address added by container {0}")]
    NotFound(String),
    /// DEL or GC went on past these failures.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Teardown(Vec<StoreError>),
    #[error("host-local is not available: {0}")]
    NotAvailable(StoreError),
}

impl Error {
    pub fn code(&self) -> u32 {
        match self {
            Error::Config(e) => e.code(),
            Error::ResolvConf { .. } => INVALID_NETWORK_CONFIG,
            Error::Alloc(AllocError::Unfulfilled(_))
            | Error::Alloc(AllocError::Set {
                source: SetError::Gateway(_),
                ..
            }) => INVALID_NETWORK_CONFIG,
            Error::NotAvailable(_) => NOT_AVAILABLE,
            Error::Store(_) | Error::Alloc(_) | Error::NotFound(_) | Error::Teardown(_) => INTERNAL,
        }
    }
}

impl From<Error> for CniError {
    fn from(e: Error) -> CniError {
        CniError::new(e.code(), e.to_string())
    }
}

/// The plugin.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostLocal;

impl HostLocal {
    fn add_inner(&self, req: &Request) -> Result<CniResult, Error> {
        let conf = config::load(&req.value, &req.version, &req.env.args)?;
        let dns = match &conf.resolv_conf {
            Some(path) => dns::read(path).map_err(|source| Error::ResolvConf {
                path: path.clone(),
                source,
            })?,
            None => Dns::default(),
        };
        let mut store = disk::DiskStore::open(&conf.location.data_dir, &conf.location.name)?;
        let allocs = allocator::allocate(
            &mut store,
            &conf.ranges,
            &allocator::Request {
                id: &req.env.container_id,
                ifname: &req.env.ifname,
                requested: &conf.requested,
            },
        )?;
        Ok(CniResult {
            interfaces: Vec::new(),
            ips: allocs
                .into_iter()
                .map(|a| IpConfig {
                    address: a.address,
                    gateway: Some(a.gateway),
                    interface: None,
                })
                .collect(),
            routes: conf.routes,
            dns,
        })
    }

    fn del_inner(&self, req: &Request) -> Result<(), Error> {
        let loc = config::location(&req.value)?;
        let mut store = disk::DiskStore::open(&loc.data_dir, &loc.name)?;
        let released = allocator::release(&mut store, &req.env.container_id, &req.env.ifname)?;
        if released.errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Teardown(released.errors))
        }
    }

    fn check_inner(&self, req: &Request) -> Result<(), Error> {
        let conf = config::load(&req.value, &req.version, &req.env.args)?;
        let store = disk::DiskStore::open(&conf.location.data_dir, &conf.location.name)?;
        if allocator::find(&store, &req.env.container_id, &req.env.ifname)?.is_empty() {
            return Err(Error::NotFound(req.env.container_id.clone()));
        }
        Ok(())
    }

    fn gc_inner(&self, req: &Request) -> Result<(), Error> {
        let loc = config::location(&req.value)?;
        let mut store = disk::DiskStore::open(&loc.data_dir, &loc.name)?;
        let released = allocator::gc(&mut store, &req.conf.gc_valid_attachments())?;
        if released.errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Teardown(released.errors))
        }
    }

    fn status_inner(&self, req: &Request) -> Result<(), Error> {
        let loc = config::location(&req.value)?;
        disk::check_writable(&loc.data_dir, &loc.name).map_err(Error::NotAvailable)
    }
}

impl Plugin for HostLocal {
    fn about(&self) -> String {
        format!(
            "CNI host-local plugin (twill {})",
            env!("CARGO_PKG_VERSION")
        )
    }

    fn add(&self, req: &Request) -> Result<CniResult, CniError> {
        Ok(self.add_inner(req)?)
    }

    fn del(&self, req: &Request) -> Result<(), CniError> {
        Ok(self.del_inner(req)?)
    }

    fn check(&self, req: &Request) -> Result<(), CniError> {
        Ok(self.check_inner(req)?)
    }

    fn status(&self, req: &Request) -> Result<(), CniError> {
        Ok(self.status_inner(req)?)
    }

    fn gc(&self, req: &Request) -> Result<(), CniError> {
        Ok(self.gc_inner(req)?)
    }
}
