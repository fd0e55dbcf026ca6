//! What the daemon knows about itself, shared by the run loop, `/metrics`, `/healthz` and
//! the `/status` JSON that `netctl status` reads.
//!
//! One struct of atomics and small locked values written by the tasks that own each part
//! (lease keeper, peer watch, reconcile loop) and only read by the HTTP handlers, so the
//! handlers never wait on netlink or etcd.

use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// How many recent errors `/status` keeps.
const KEEP_ERRORS: usize = 20;

/// Lease state as reported to operators.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LeasePhase {
    /// No lease yet (etcd unreachable at start, or the network is full).
    #[default]
    Acquiring,
    Held,
    /// We hold a lease but cannot reach etcd to renew it.
    EtcdUnreachable,
}

/// A snapshot for `/status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Status {
    pub node: String,
    pub backend: String,
    pub public_ip: String,
    pub underlay: String,
    pub network: Option<String>,
    pub subnet: Option<String>,
    pub lease_phase: LeasePhase,
    /// Unix time the lease expires (as of the last renewal).
    pub lease_expires_at: Option<u64>,
    pub peers_seen: usize,
    pub routes_programmed: usize,
    pub neighbours_programmed: usize,
    pub fdb_programmed: usize,
    pub unreachable_peers: Vec<String>,
    /// What the last reconcile wanted, rendered like iproute2 (`netctl routes` compares it
    /// with the kernel).
    pub desired_routes: Vec<String>,
    pub desired_neighbours: Vec<String>,
    pub desired_fdb: Vec<String>,
    /// Our overlay device, if the backend has one.
    pub overlay_dev: Option<String>,
    pub last_reconcile_at: Option<u64>,
    pub last_errors: Vec<String>,
    /// The Kubernetes object source (`--manifests` or `--kubeconfig`), when one is set.
    pub source: Option<SourceStatus>,
    /// The NetworkPolicy engine, when a source is set.
    pub policy: Option<PolicyStatus>,
}

/// What the object source has read, for `/status` and for tests that wait for a change to
/// reach the model.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct SourceStatus {
    /// `manifests` or `kubernetes`.
    pub kind: String,
    /// Every input has been read completely once.
    pub synced: bool,
    /// The generation of the last model published.
    pub generation: u64,
    /// Manifest source only: every file read, by file name relative to the directory.
    pub files: std::collections::BTreeMap<String, FileStatus>,
    /// Current problems (a file that does not parse, an object that fails validation, a
    /// watch that cannot connect), each naming the file and the object.
    pub errors: Vec<String>,
}

/// One manifest file as last read.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct FileStatus {
    /// Hex SHA-256 of the bytes last read (whether or not they parsed).
    pub sha256: String,
    /// Objects in force from this file (from its last good version when it is broken).
    pub objects: usize,
    /// Why the bytes last read were refused, if they were.
    pub error: Option<String>,
}

/// The NetworkPolicy engine's last compile and apply.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct PolicyStatus {
    /// The model generation whose ruleset is in the kernel (0: nothing applied yet).
    pub applied_generation: u64,
    /// Unix time of the last successful apply.
    pub applied_at: Option<u64>,
    /// Why the last compile or apply failed (the previous ruleset stays in force).
    pub error: Option<String>,
    pub policies: usize,
    /// Pods on this node that at least one policy isolates.
    pub enforced_pods: usize,
    pub sets: usize,
    pub chains: usize,
    pub elements: usize,
    /// Wall time of the last compile and of the last apply, in microseconds.
    pub compile_us: u64,
    pub apply_us: u64,
}

/// Shared daemon state.
#[derive(Debug, Default)]
pub struct State {
    pub status: Mutex<Status>,
    pub etcd_errors: AtomicU64,
    pub backend_errors: AtomicU64,
    pub reconciles: AtomicU64,
    pub watch_errors: std::sync::Arc<AtomicU64>,
    /// Failed policy applies (each kept the previous ruleset).
    pub policy_apply_errors: AtomicU64,
    /// The policy engine's latest applied snapshot, for the API (`netctl policy`).
    pub policy_view: Mutex<Option<std::sync::Arc<crate::policy::controller::View>>>,
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl State {
    /// Applies `f` to the status under the lock.
    pub fn update(&self, f: impl FnOnce(&mut Status)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }

    pub fn snapshot(&self) -> Status {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Records an error for `/status` (newest last, bounded).
    pub fn record_error(&self, msg: String) {
        self.update(|s| {
            s.last_errors.push(format!("{} {msg}", now()));
            let n = s.last_errors.len();
            if n > KEEP_ERRORS {
                s.last_errors.drain(..n - KEEP_ERRORS);
            }
        });
    }

    pub fn count(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_bounded() {
        let s = State::default();
        for i in 0..30 {
            s.record_error(format!("e{i}"));
        }
        let snap = s.snapshot();
        assert_eq!(snap.last_errors.len(), KEEP_ERRORS);
        assert!(snap.last_errors.last().unwrap().ends_with("e29"));
    }
}
