//! The NetworkPolicy engine: Kubernetes NetworkPolicy (networking.k8s.io/v1) enforced in
//! nftables, for the pods of this node.
//!
//! - [`semantics`]: the API's rules over the model, plainly (explain, and the reference the
//!   compiled ruleset is tested against);
//! - [`naming`]: chain and set names, a pure function of the policy;
//! - [`compile`]: model + node -> the desired `inet twill_policy` table, pure;
//! - [`trace`]: walks a packet through a compiled table, pure (explain, tests);
//! - [`apply`]: the one applier: the difference between two tables as one transaction;
//! - [`controller`]: the task that compiles every new model and applies it.

pub mod apply;
pub mod compile;
pub mod controller;
pub mod explain;
pub mod naming;
pub mod semantics;
pub mod trace;

#[cfg(test)]
mod tests;
