//! Subnet leases: what is stored in etcd ([`record`]) and which subnet to claim ([`alloc`]).
//! Pure, so the rules are unit-tested without etcd; the etcd client sits on top.

pub mod alloc;
pub mod manager;
pub mod record;
pub mod registry;
