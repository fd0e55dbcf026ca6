//! `twilld`, the per-node daemon, as a library (the `twilld` and `netctl` binaries are thin).
//!
//! - [`netconf`]: the cluster network config (flannel's net-conf.json), pure.
//! - [`lease`]: subnet leases in etcd: format, choice, registry, and the policy that claims,
//!   renews, re-claims and follows peers.
//! - [`backend`]: vxlan and host-gw: pure planning of routes/neighbours/FDB from the peer set,
//!   and the one applier that reconciles the kernel against it.
//! - [`masq`]: masquerade of pod traffic leaving the cluster, in twilld's own nftables table.
//! - [`state`] and [`http`]: what the daemon reports (`/metrics`, `/healthz`, `/status`).
//! - [`policy`]: the NetworkPolicy engine (pure compiler, tracer, one applier, controller).
//! - [`source`]: the model of Kubernetes objects and the sources that feed it.
//! - [`run`]: start-up order and the reconcile loop.

pub mod backend;
pub mod http;
pub mod lease;
pub mod masq;
pub mod netconf;
pub mod policy;
pub mod run;
pub mod source;
pub mod state;
