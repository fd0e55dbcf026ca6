//! `twilld`, the per-node daemon (being built, issue 3).
//!
//! So far: the pure parts of subnet leasing — the cluster network config (flannel's
//! net-conf.json), lease keys and values in flannel's etcd format, and the choice of a subnet
//! to claim. The etcd client, the backends and the binary come next.

pub mod lease;
pub mod netconf;
