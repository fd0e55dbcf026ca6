//! The end-to-end harness: the parts of a container runtime we need to drive our CNI plugins
//! the way production drives them, and the measuring around it.
//!
//! Everything here runs against a *plugin directory* chosen at run time, never against
//! hard-wired binaries, so the same suite checks our plugins and the reference plugins in
//! `/usr/lib/cni` (the behaviour and the speed we must match). That is also how the harness was
//! developed before our plugins existed.
//!
//! - [`plugins`]: which directory is under test and whether it holds what a suite needs.
//! - [`chain`]: a minimal runtime (libcni's request derivation and chain order), timed per
//!   plugin process; used by the benchmark.
//! - [`subnet`]: unique test subnets.
//! - [`stats`] and [`report`]: pure summaries and the `docs/benchmarks.md` rendering.
//! - [`policy_model`]: the seeded cluster of namespaces, pods and NetworkPolicies the policy
//!   benchmark compiles; [`policy_report`]: its section of `docs/benchmarks.md`.
//! - [`cluster`]: a multi-node cluster in namespaces: underlay, real etcd, one `twilld` per
//!   node, pods through the `twill` CNI plugin.
//! - [`netpol`]: the NetworkPolicy conformance harness on top of [`cluster`]: objects as
//!   manifest files, the wait for the daemons to apply them, parallel probes through the
//!   `netpol-agent` binary.
//! - [`iperf`]: one iperf3 client run, read from its JSON report.
//! - [`podman`]: podman as a real CNI client, confined to a test "node" namespace and to its
//!   own temporary state.
//!
//! Nothing in the workspace depends on this crate; it depends on `twill-testutil` for
//! namespaces, temporary directories and plugin invocation.

pub mod chain;
pub mod cluster;
pub mod iperf;
pub mod netpol;
pub mod plugins;
pub mod podman;
pub mod policy_model;
pub mod policy_report;
pub mod report;
pub mod stats;
pub mod subnet;

use std::path::PathBuf;

/// The first `tool` on `PATH`, if any.
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}
