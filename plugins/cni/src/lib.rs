//! The CNI 1.1 contract, shared by every Twill plugin.
//!
//! A plugin is a type implementing [`skel::Plugin`] and a `main` that calls [`skel::main`].
//! Everything between the runtime and that trait lives here: environment validation
//! ([`env`]), the shared config keys and capability arguments ([`config`]), results in every
//! spec version ([`result`]), error codes ([`error`]), version rules ([`version`]) and running
//! delegated plugins ([`invoke`]). The crate does no networking, so all of it is unit-tested
//! without privileges.

pub mod config;
pub mod env;
pub mod error;
pub mod invoke;
pub mod result;
pub mod skel;
pub mod version;

pub use config::NetConf;
pub use env::{Command, Env};
pub use error::{CniError, Result};
pub use result::{CniResult, Dns, Interface, IpConfig, Route};
pub use skel::{Plugin, Request};
