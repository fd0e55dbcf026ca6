//! Backends connect this node to its peers. [`plan`] computes what the kernel should hold;
//! the netlink applier (next) makes it so, level-triggered, owning only what it marks.

pub mod plan;
