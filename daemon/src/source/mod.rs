//! Where Kubernetes objects come from: a directory of manifests (`--manifests`) or the
//! Kubernetes API (`--kubeconfig`, or the in-cluster service account). Both feed one
//! [`model::Model`], published as immutable snapshots that the controllers compile from.

pub mod convert;
pub mod model;
pub mod store;
