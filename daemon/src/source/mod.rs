//! Where Kubernetes objects come from: a directory of manifests (`--manifests`) or the
//! Kubernetes API (`--kubeconfig`, or the in-cluster service account). Both feed one
//! [`model::Model`], published as immutable snapshots that the controllers compile from.
//!
//! The layers, each testable on its own:
//! - [`convert`]: k8s-openapi objects to model values, with the API server's defaults and
//!   validation (pure);
//! - [`store`]: objects by origin, cross-object checks, snapshots with a generation (pure);
//! - [`manifests`] and [`kube`]: the two sources, each one task that owns a store;
//! - this module: [`spawn`], and the [`Publisher`] both sources share so that the model and
//!   `/status` (`Status.source`) move in one step: the snapshot is sent first and the status
//!   written right after, so `/status` never reports a generation or a file digest that the
//!   model channel has not carried yet.

pub mod convert;
pub mod kube;
pub mod manifests;
pub mod model;
pub mod store;

use crate::state::{FileStatus, SourceStatus, State};
use model::Model;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use store::Store;
use tokio::sync::watch;

/// Where the objects come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceConfig {
    /// `--manifests DIR`: every `*.yaml`, `*.yml`, `*.json` directly in DIR.
    Manifests(PathBuf),
    /// `--kubeconfig PATH`: the API server and credentials of its current context.
    Kubeconfig(PathBuf),
    /// The pod's service account (`KUBERNETES_SERVICE_HOST` and
    /// `/var/run/secrets/kubernetes.io/serviceaccount`).
    InCluster,
}

/// A running source.
pub struct SourceHandle {
    /// The latest snapshot. Starts as an empty, unsynced model of generation 0; every
    /// published change carries a higher generation. A controller programs nothing before
    /// `synced` is true.
    pub models: watch::Receiver<Arc<Model>>,
    /// The source's task; it ends after `shutdown` turns true.
    pub task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("manifest directory {dir}: {source}")]
    ManifestDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("watch manifest directory {dir}: {source}")]
    Notify {
        dir: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error("kubeconfig {path}: {problem}")]
    Kubeconfig { path: PathBuf, problem: String },
    #[error("in-cluster config: {0}")]
    InCluster(String),
    #[error("kubernetes client: {0}")]
    Client(String),
}

/// Starts the source described by `cfg`.
///
/// Returns once the source is set up (the directory exists and is watched; the kubeconfig
/// is valid and a client is built), not once it has synced: wait for `synced` on
/// [`SourceHandle::models`]. From then on the source keeps `state`'s `Status.source` up to
/// date ([`SourceStatus`]: `kind`, `synced`, `generation`, per-file `files` for manifests,
/// current `errors`), always after the model of that generation was sent. It stops when
/// `shutdown` turns true.
pub async fn spawn(
    cfg: SourceConfig,
    state: Arc<State>,
    shutdown: watch::Receiver<bool>,
) -> Result<SourceHandle, SourceError> {
    let (tx, models) = watch::channel(Arc::new(Model::default()));
    let task = match cfg {
        SourceConfig::Manifests(dir) => {
            let publisher = Publisher::new(manifests::KIND, tx, state);
            manifests::spawn(dir, publisher, shutdown).await?
        }
        SourceConfig::Kubeconfig(path) => {
            let (client, server) = self::kube::client_from_kubeconfig(&path).await?;
            let publisher = Publisher::new(self::kube::KIND, tx, state);
            self::kube::spawn(client, server, publisher, shutdown)
        }
        SourceConfig::InCluster => {
            let (client, server) = self::kube::client_in_cluster().await?;
            let publisher = Publisher::new(self::kube::KIND, tx, state);
            self::kube::spawn(client, server, publisher, shutdown)
        }
    };
    Ok(SourceHandle { models, task })
}

/// A store plus the two places its snapshots go: the model channel and `/status`.
pub struct Publisher {
    kind: &'static str,
    pub store: Store,
    tx: watch::Sender<Arc<Model>>,
    state: Arc<State>,
}

impl Publisher {
    pub fn new(kind: &'static str, tx: watch::Sender<Arc<Model>>, state: Arc<State>) -> Self {
        Publisher {
            kind,
            store: Store::new(),
            tx,
            state,
        }
    }

    /// Builds the model; sends it if it changed; then writes the status. `files` (manifest
    /// source) gets its `objects` counts filled from what is in force; `errors` are the
    /// source's own problems, to which the store's cross-object problems are added.
    pub fn publish(&mut self, mut files: BTreeMap<String, FileStatus>, mut errors: Vec<String>) {
        // Manifest origins are file names, worth naming in a problem; API origins are kinds.
        let build = self.store.build(self.kind == manifests::KIND);
        if let Some(model) = build.changed {
            tracing::debug!(
                source = self.kind,
                generation = model.generation,
                synced = model.synced,
                pods = model.pods.len(),
                policies = model.policies.len(),
                "model published"
            );
            self.tx.send_replace(model);
        }
        for (name, f) in files.iter_mut() {
            f.objects = build.in_force.get(name).copied().unwrap_or(0);
        }
        errors.extend(build.problems);
        let model = self.store.current();
        let status = SourceStatus {
            kind: self.kind.to_owned(),
            synced: model.synced,
            generation: model.generation,
            files,
            errors,
        };
        self.state.update(|s| s.source = Some(status));
    }
}
