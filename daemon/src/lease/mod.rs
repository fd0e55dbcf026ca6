//! Subnet leases. Storage apart from policy (flannel's registry.go vs local_manager.go):
//! [`record`] (keys and values in flannel's format) and [`alloc`] (which subnet to try) are
//! pure and unit-tested without etcd; [`registry`] is every etcd call and nothing else;
//! [`manager`] is the policy (claim, renew, re-claim, follow peers), tested against a real etcd.

pub mod alloc;
pub mod manager;
pub mod record;
pub mod registry;
