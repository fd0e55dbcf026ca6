//! `twilld`, the per-node daemon (being built, issue 3).
//!
//! So far: the pure parts of subnet leasing — the cluster network config (flannel's
//! net-conf.json), lease keys and values in flannel's etcd format, and the choice of a subnet
//! to claim, the etcd registry and lease policy (claim, renew, re-claim, follow peers),
//! and the pure planning of backend state. The netlink applier and the binary come next.

pub mod backend;
pub mod http;
pub mod lease;
pub mod masq;
pub mod netconf;
pub mod run;
pub mod state;
