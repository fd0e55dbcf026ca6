//! The Kubernetes API as a source: one kube-rs watcher per kind (Namespace, Node, Pod,
//! NetworkPolicy, Service, EndpointSlice), all feeding one store.
//!
//! kube-rs's `watcher` does the protocol: list (paged), then watch from the list's
//! resourceVersion with bookmarks, resume a dropped watch from the last version seen, and
//! start over with a list after `410 Gone` delivered as a watch ERROR event. Two things it
//! leaves to us, done here:
//! - **Back-off.** The watcher retries as fast as it is polled; after an error each kind's
//!   task sleeps (100 ms doubling to 10 s), and the error shows in `/status` until the next
//!   event, or until the watch has been quiet for a second past its back-off (a resumed
//!   watch on a quiet kind delivers nothing, and the watcher swallows bookmarks, so silence
//!   is the only sign of a healthy connection that kube-rs gives).
//! - **A 410 answered to the watch request itself** (HTTP 410 rather than an ERROR event)
//!   leaves kube's watcher retrying the same stale version forever; we drop that watcher and
//!   start a new one, which lists again.
//!
//! A list replaces everything known of that kind at once (the `Init`..`InitDone` events are
//! buffered), so objects deleted while we were disconnected disappear. The model is
//! `synced` only after every kind's first list, so a controller never acts on a partial
//! cluster (kube-proxy's rule). Events are applied in batches: whatever arrived while the
//! previous model was being built goes into the next one.
//!
//! Objects the API server accepted can still fail our conversion (an address we cannot
//! parse); such an object is left out and reported by kind, namespace and name until it is
//! fixed or deleted.

use super::convert::{self, ConvertError, Kind, Object, ObjectId};
use super::{Publisher, SourceError};
use ::kube::runtime::watcher;
use ::kube::{Api, Client, Resource};
use futures::StreamExt;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::api::networking::v1 as networking;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::path::Path;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// `SourceStatus.kind` of this source.
pub const KIND: &str = "kubernetes";

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// A failed watch that has been quiet this long (beyond its back-off) counts as recovered.
const RECOVERED_AFTER: Duration = Duration::from_secs(1);

/// Most events applied in one model build.
const MAX_BATCH: usize = 10_000;

/// A client for the current context of the kubeconfig at `path`, and the server's URL.
pub async fn client_from_kubeconfig(path: &Path) -> Result<(Client, String), SourceError> {
    let err = |problem: String| SourceError::Kubeconfig {
        path: path.to_owned(),
        problem,
    };
    let kc = ::kube::config::Kubeconfig::read_from(path).map_err(|e| err(chain(&e)))?;
    let cfg = ::kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| err(chain(&e)))?;
    let url = cfg.cluster_url.to_string();
    let client = Client::try_from(cfg).map_err(|e| SourceError::Client(chain(&e)))?;
    Ok((client, url))
}

/// A client for the pod's service account, and the server's URL.
pub async fn client_in_cluster() -> Result<(Client, String), SourceError> {
    let cfg = ::kube::Config::incluster().map_err(|e| SourceError::InCluster(chain(&e)))?;
    let url = cfg.cluster_url.to_string();
    let client = Client::try_from(cfg).map_err(|e| SourceError::Client(chain(&e)))?;
    Ok((client, url))
}

/// An error with its causes (`client error (Connect): tcp connect error: connection
/// refused`); kube's own messages stop at the first.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let msg = s.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        cur = s.source();
    }
    out
}

/// What a kind's watcher tells the store task.
#[derive(Debug)]
enum Msg {
    /// A complete list of the kind (after `InitDone`).
    Listed(Kind, Vec<Converted>),
    Applied(Converted),
    Deleted(ObjectId),
    /// The watch of a kind failed (`None`: it works again).
    WatchError(Kind, Option<String>),
}

/// A converted object, or why it could not be (the error names the object).
type Converted = Result<Object, ConvertError>;

/// Starts the six watchers and the task that builds models from them. `server` names the
/// API server in errors.
pub fn spawn(
    client: Client,
    server: String,
    publisher: Publisher,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let (tx, rx) = mpsc::unbounded_channel();
    let watchers = AbortOnDrop(vec![
        tokio::spawn(watch_kind::<core::Namespace>(
            Api::all(client.clone()),
            Kind::Namespace,
            server.clone(),
            |o| convert::namespace(o).map(Object::Namespace),
            tx.clone(),
        )),
        tokio::spawn(watch_kind::<core::Node>(
            Api::all(client.clone()),
            Kind::Node,
            server.clone(),
            |o| convert::node(o).map(Object::Node),
            tx.clone(),
        )),
        tokio::spawn(watch_kind::<core::Pod>(
            Api::all(client.clone()),
            Kind::Pod,
            server.clone(),
            |o| convert::pod(o).map(Object::Pod),
            tx.clone(),
        )),
        tokio::spawn(watch_kind::<networking::NetworkPolicy>(
            Api::all(client.clone()),
            Kind::NetworkPolicy,
            server.clone(),
            |o| convert::network_policy(o).map(Object::NetworkPolicy),
            tx.clone(),
        )),
        tokio::spawn(watch_kind::<core::Service>(
            Api::all(client.clone()),
            Kind::Service,
            server.clone(),
            |o| convert::service(o).map(Object::Service),
            tx.clone(),
        )),
        tokio::spawn(watch_kind::<discovery::EndpointSlice>(
            Api::all(client),
            Kind::EndpointSlice,
            server.clone(),
            |o| convert::endpoint_slice(o).map(Object::EndpointSlice),
            tx,
        )),
    ]);
    tokio::spawn(async move {
        // The watchers end with this task, also when it is aborted.
        let _watchers = watchers;
        run_store(rx, publisher, shutdown).await;
    })
}

/// Aborts the watcher tasks when dropped.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

async fn run_store(
    mut rx: mpsc::UnboundedReceiver<Msg>,
    mut publisher: Publisher,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut listed: BTreeSet<Kind> = BTreeSet::new();
    let mut invalid: BTreeMap<ObjectId, String> = BTreeMap::new();
    let mut watch_errors: BTreeMap<Kind, String> = BTreeMap::new();
    publisher.publish(BTreeMap::new(), Vec::new());
    loop {
        let first = tokio::select! {
            r = shutdown.changed() => {
                if r.is_err() || *shutdown.borrow() {
                    return;
                }
                continue;
            }
            m = rx.recv() => match m {
                Some(m) => m,
                None => return,
            },
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        for m in batch {
            match m {
                Msg::Listed(kind, items) => {
                    invalid.retain(|id, _| id.kind != kind);
                    let mut objects = BTreeMap::new();
                    for c in items {
                        match c {
                            Ok(o) => {
                                objects.insert(o.id(), o);
                            }
                            Err(e) => {
                                invalid.insert(e.object.clone(), e.to_string());
                            }
                        }
                    }
                    tracing::debug!(kind = %kind, objects = objects.len(), "listed");
                    publisher.store.set_origin(kind.as_str(), objects);
                    if listed.insert(kind) && listed.len() == Kind::ALL.len() {
                        tracing::info!("kubernetes source synced");
                        publisher.store.set_synced();
                    }
                }
                Msg::Applied(Ok(o)) => {
                    let id = o.id();
                    invalid.remove(&id);
                    publisher.store.upsert(id.kind.as_str(), o);
                }
                Msg::Applied(Err(e)) => {
                    tracing::warn!(error = %e, "object left out");
                    publisher.store.delete(e.object.kind.as_str(), &e.object);
                    invalid.insert(e.object.clone(), e.to_string());
                }
                Msg::Deleted(id) => {
                    invalid.remove(&id);
                    publisher.store.delete(id.kind.as_str(), &id);
                }
                Msg::WatchError(kind, Some(e)) => {
                    watch_errors.insert(kind, e);
                }
                Msg::WatchError(kind, None) => {
                    watch_errors.remove(&kind);
                }
            }
        }
        let errors = watch_errors
            .values()
            .chain(invalid.values())
            .cloned()
            .collect();
        publisher.publish(BTreeMap::new(), errors);
    }
}

fn is_gone(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::WatchStartFailed(::kube::Error::Api(s))
        | watcher::Error::InitialListFailed(::kube::Error::Api(s))
        | watcher::Error::WatchFailed(::kube::Error::Api(s)) => s.code == 410,
        _ => false,
    }
}

/// Watches one kind for ever, sending what it sees to the store task.
async fn watch_kind<K>(
    api: Api<K>,
    kind: Kind,
    server: String,
    conv: fn(&K) -> Result<Object, ConvertError>,
    tx: mpsc::UnboundedSender<Msg>,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let convert = conv;
    let mut backoff = BACKOFF_MIN;
    let mut failing = false;
    loop {
        let mut stream = watcher(api.clone(), watcher::Config::default()).boxed();
        let mut buffer: Vec<Converted> = Vec::new();
        loop {
            let ev = if failing {
                // A resumed watch says nothing until something changes; a watch that still
                // fails says so again within the back-off. Quiet for longer means it works.
                match tokio::time::timeout(backoff + RECOVERED_AFTER, stream.next()).await {
                    Ok(ev) => ev,
                    Err(_) => {
                        failing = false;
                        backoff = BACKOFF_MIN;
                        tracing::info!(kind = %kind, "watch works again");
                        let _ = tx.send(Msg::WatchError(kind, None));
                        continue;
                    }
                }
            } else {
                stream.next().await
            };
            let Some(ev) = ev else { break };
            let msg = match ev {
                Ok(ev) => {
                    if failing {
                        failing = false;
                        backoff = BACKOFF_MIN;
                        tracing::info!(kind = %kind, "watch works again");
                        let _ = tx.send(Msg::WatchError(kind, None));
                    }
                    match ev {
                        watcher::Event::Init => {
                            buffer.clear();
                            None
                        }
                        watcher::Event::InitApply(o) => {
                            buffer.push(convert(&o));
                            None
                        }
                        watcher::Event::InitDone => {
                            Some(Msg::Listed(kind, std::mem::take(&mut buffer)))
                        }
                        watcher::Event::Apply(o) => Some(Msg::Applied(convert(&o))),
                        watcher::Event::Delete(o) => {
                            Some(Msg::Deleted(ObjectId::from_meta(kind, o.meta())))
                        }
                    }
                }
                Err(e) => {
                    let gone = is_gone(&e);
                    let msg = format!("watch {kind} at {server}: {}", chain(&e));
                    tracing::warn!(error = %msg, retry_in = ?backoff, "watch failed");
                    failing = true;
                    let _ = tx.send(Msg::WatchError(kind, Some(msg)));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    if gone {
                        // A fresh watcher lists again.
                        break;
                    }
                    None
                }
            };
            if let Some(m) = msg
                && tx.send(m).is_err()
            {
                return;
            }
        }
        if tx.is_closed() {
            return;
        }
    }
}
