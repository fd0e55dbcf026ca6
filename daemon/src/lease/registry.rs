//! The etcd side of leases: every read and write the daemon makes to etcd, nothing else.
//!
//! Modelled on flannel's `pkg/subnet/etcd/registry.go`, kept apart from the policy in
//! [`super::manager`] so the policy reads as policy. Differences from flannel that matter:
//! - A claim is one transaction, create-if-absent (`create_revision == 0`) bound to an etcd
//!   lease; two nodes racing for one subnet cannot both win.
//! - Taking back our own lease after a restart compares `mod_revision`, so a subnet that
//!   changed hands in the meantime is never stolen.
//! - Listing returns the store revision so the watch resumes exactly after it.

use super::record::{LeaseAttrs, config_key, parse_subnet_key, subnet_key, subnets_prefix};
use crate::netconf::{ConfigError, NetConfig};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp,
    WatchOptions, WatchStream,
};
use ipnetwork::Ipv4Network;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("etcd {op}: {source}")]
    Etcd {
        op: String,
        #[source]
        source: etcd_client::Error,
    },
    #[error("no network config at {key}: put a net-conf.json there (see cni-conf/net-conf.json)")]
    NoConfig { key: String },
    #[error("{key}: {source}")]
    BadConfig {
        key: String,
        #[source]
        source: ConfigError,
    },
    #[error("lease {key}: value is not valid lease JSON: {problem}")]
    BadLease { key: String, problem: String },
    #[error("watch of {prefix}: history compacted at revision {compacted}; re-list needed")]
    Compacted { prefix: String, compacted: i64 },
    #[error("keep-alive stream of lease {lease_id:x} closed without an answer")]
    KeepAliveClosed { lease_id: i64 },
    #[error("watch of {prefix} ended: {reason}")]
    WatchEnded { prefix: String, reason: String },
}

fn etcd(op: impl Into<String>) -> impl FnOnce(etcd_client::Error) -> RegistryError {
    let op = op.into();
    move |source| RegistryError::Etcd { op, source }
}

/// etcd reports an expired or revoked lease as an error on keep-alive; for us it is an answer.
fn is_lease_not_found(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::LeaseKeepAliveError(m) => m.contains("not found"),
        // etcd: "etcdserver: requested lease not found"
        etcd_client::Error::GRpcStatus(s) => s.message().contains("lease not found"),
        _ => false,
    }
}

/// One subnet lease as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub subnet: Ipv4Network,
    pub attrs: LeaseAttrs,
    /// etcd lease id the key is attached to (0 = none).
    pub lease_id: i64,
    pub mod_revision: i64,
}

/// A change to the set of leases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseEvent {
    Added(Lease),
    Removed(Ipv4Network),
}

/// Connection to etcd plus the key prefix.
#[derive(Clone)]
pub struct Registry {
    client: Client,
    prefix: String,
}

impl Registry {
    /// Connects lazily: an unreachable etcd is reported by the first call, not here, so the
    /// daemon can start (and keep forwarding) while etcd is down.
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<Registry, RegistryError> {
        let opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        let client = Client::connect(endpoints, Some(opts))
            .await
            .map_err(etcd(format!("connect to {}", endpoints.join(","))))?;
        Ok(Registry {
            client,
            prefix: prefix.trim_end_matches('/').to_owned(),
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// One key, with an error that names it.
    async fn get(&self, key: &str) -> Result<etcd_client::GetResponse, RegistryError> {
        self.client
            .clone()
            .get(key, None)
            .await
            .map_err(etcd(format!("get {key}")))
    }

    /// Reads and validates `<prefix>/config`.
    pub async fn config(&self) -> Result<NetConfig, RegistryError> {
        let key = config_key(&self.prefix);
        let resp = self.get(&key).await?;
        let kv = resp
            .kvs()
            .first()
            .ok_or_else(|| RegistryError::NoConfig { key: key.clone() })?;
        let text = String::from_utf8_lossy(kv.value());
        NetConfig::parse(&text).map_err(|source| RegistryError::BadConfig { key, source })
    }

    /// Writes `<prefix>/config` (used by tests and `netctl`).
    pub async fn put_config(&self, text: &str) -> Result<(), RegistryError> {
        let key = config_key(&self.prefix);
        self.client
            .clone()
            .put(key.clone(), text, None)
            .await
            .map_err(etcd(format!("put {key}")))?;
        Ok(())
    }

    /// All leases and the store revision they were read at. Keys under `subnets/` that do not
    /// parse are returned as errors in the second list rather than dropped silently.
    pub async fn list(&self) -> Result<(Vec<Lease>, Vec<RegistryError>, i64), RegistryError> {
        let prefix = subnets_prefix(&self.prefix);
        let resp = self
            .client
            .clone()
            .get(prefix.clone(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(etcd(format!("list {prefix}")))?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        let mut leases = Vec::new();
        let mut bad = Vec::new();
        for kv in resp.kvs() {
            match self.decode(kv.key(), kv.value(), kv.lease(), kv.mod_revision()) {
                Ok(l) => leases.push(l),
                Err(e) => bad.push(e),
            }
        }
        Ok((leases, bad, revision))
    }

    fn decode(
        &self,
        key: &[u8],
        value: &[u8],
        lease_id: i64,
        mod_revision: i64,
    ) -> Result<Lease, RegistryError> {
        let key = String::from_utf8_lossy(key).into_owned();
        let subnet =
            parse_subnet_key(&self.prefix, &key).ok_or_else(|| RegistryError::BadLease {
                key: key.clone(),
                problem: "key is not <a.b.c.d>-<len>".into(),
            })?;
        let attrs: LeaseAttrs =
            serde_json::from_slice(value).map_err(|e| RegistryError::BadLease {
                key: key.clone(),
                problem: e.to_string(),
            })?;
        Ok(Lease {
            subnet,
            attrs,
            lease_id,
            mod_revision,
        })
    }

    /// Claims `subnet` if nobody holds it: grants an etcd lease of `ttl` and creates the key
    /// bound to it in one transaction. Returns the etcd lease id, or `None` if the subnet was
    /// taken (the granted lease is revoked again).
    pub async fn create(
        &self,
        subnet: Ipv4Network,
        attrs: &LeaseAttrs,
        ttl: Duration,
    ) -> Result<Option<i64>, RegistryError> {
        let key = subnet_key(&self.prefix, subnet);
        let compare = Compare::create_revision(key.clone(), CompareOp::Equal, 0);
        self.put_bound(&key, attrs, ttl, compare).await
    }

    /// Re-binds an existing key to a fresh etcd lease, only if it still has `mod_revision`
    /// (nobody changed it since we read it).
    pub async fn take_over(
        &self,
        lease: &Lease,
        attrs: &LeaseAttrs,
        ttl: Duration,
    ) -> Result<Option<i64>, RegistryError> {
        let key = subnet_key(&self.prefix, lease.subnet);
        let compare = Compare::mod_revision(key.clone(), CompareOp::Equal, lease.mod_revision);
        self.put_bound(&key, attrs, ttl, compare).await
    }

    async fn put_bound(
        &self,
        key: &str,
        attrs: &LeaseAttrs,
        ttl: Duration,
        compare: Compare,
    ) -> Result<Option<i64>, RegistryError> {
        let mut c = self.client.clone();
        let ttl_secs = ttl.as_secs().max(1) as i64;
        let grant = c
            .lease_grant(ttl_secs, None)
            .await
            .map_err(etcd(format!("grant lease for {key}")))?;
        let id = grant.id();
        let value = serde_json::to_string(attrs).map_err(|e| RegistryError::BadLease {
            key: key.to_owned(),
            problem: e.to_string(),
        })?;
        let txn = Txn::new().when([compare]).and_then([TxnOp::put(
            key,
            value,
            Some(PutOptions::new().with_lease(id)),
        )]);
        let resp = c.txn(txn).await.map_err(etcd(format!("claim {key}")));
        match resp {
            Ok(r) if r.succeeded() => Ok(Some(id)),
            other => {
                // Lost the race (or failed): give the lease back so it does not linger.
                let _ = c.lease_revoke(id).await;
                other.map(|_| None)
            }
        }
    }

    /// Remaining TTL of an etcd lease in seconds; `None` when it no longer exists.
    pub async fn ttl(&self, lease_id: i64) -> Result<Option<i64>, RegistryError> {
        let r = self
            .client
            .clone()
            .lease_time_to_live(lease_id, None)
            .await
            .map_err(etcd(format!("ttl of lease {lease_id:x}")))?;
        Ok((r.ttl() > 0).then_some(r.ttl()))
    }

    /// One keep-alive round trip; returns the new TTL (`None`: the lease is gone).
    pub async fn renew(&self, lease_id: i64) -> Result<Option<i64>, RegistryError> {
        let mut c = self.client.clone();
        let result = async {
            let (mut keeper, mut stream) = c.lease_keep_alive(lease_id).await?;
            keeper.keep_alive().await?;
            stream.message().await
        }
        .await;
        match result {
            Ok(Some(m)) => Ok((m.ttl() > 0).then_some(m.ttl())),
            // A stream closed without an answer says nothing about the lease: retry.
            Ok(None) => Err(RegistryError::KeepAliveClosed { lease_id }),
            Err(e) if is_lease_not_found(&e) => Ok(None),
            Err(e) => Err(etcd(format!("renew lease {lease_id:x}"))(e)),
        }
    }

    /// The etcd lease id the key of `subnet` is bound to; `None` when the key does not exist.
    pub async fn holder(&self, subnet: Ipv4Network) -> Result<Option<i64>, RegistryError> {
        let key = subnet_key(&self.prefix, subnet);
        let resp = self.get(&key).await?;
        Ok(resp.kvs().first().map(|kv| kv.lease()))
    }

    /// Revokes an etcd lease (and deletes the keys bound to it).
    pub async fn revoke(&self, lease_id: i64) -> Result<(), RegistryError> {
        match self.client.clone().lease_revoke(lease_id).await {
            Ok(_) => Ok(()),
            Err(e) if is_lease_not_found(&e) => Ok(()),
            Err(e) => Err(etcd(format!("revoke lease {lease_id:x}"))(e)),
        }
    }

    /// Compacts the store's history up to `revision` (operators' housekeeping; tests use it to
    /// exercise the re-list path of watchers).
    pub async fn compact(&self, revision: i64) -> Result<(), RegistryError> {
        self.client
            .clone()
            .compact(revision, None)
            .await
            .map_err(etcd(format!("compact at revision {revision}")))?;
        Ok(())
    }

    /// Deletes a subnet's key and revokes its lease (graceful leave, tests).
    pub async fn delete(&self, subnet: Ipv4Network) -> Result<(), RegistryError> {
        let key = subnet_key(&self.prefix, subnet);
        self.client
            .clone()
            .delete(key.clone(), None)
            .await
            .map_err(etcd(format!("delete {key}")))?;
        Ok(())
    }

    /// Watches all leases from `revision` (exclusive of what a list at `revision` returned).
    pub async fn watch(&self, after_revision: i64) -> Result<LeaseWatch, RegistryError> {
        let prefix = subnets_prefix(&self.prefix);
        let stream = self
            .client
            .clone()
            .watch(
                prefix.clone(),
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(after_revision + 1),
                ),
            )
            .await
            .map_err(etcd(format!("watch {prefix}")))?;
        Ok(LeaseWatch {
            registry: self.clone(),
            stream,
            prefix,
        })
    }
}

/// A running watch of the lease prefix.
pub struct LeaseWatch {
    registry: Registry,
    stream: WatchStream,
    prefix: String,
}

impl LeaseWatch {
    /// The next batch of events and the revision of the newest one (resume a broken watch
    /// after it). Compaction is an error after which only a fresh list is correct.
    pub async fn next(&mut self) -> Result<(Vec<LeaseEvent>, i64), RegistryError> {
        loop {
            let msg = self
                .stream
                .message()
                .await
                .map_err(etcd(format!("watch {}", self.prefix)))?
                .ok_or_else(|| RegistryError::WatchEnded {
                    prefix: self.prefix.clone(),
                    reason: "stream closed".into(),
                })?;
            if msg.compact_revision() > 0 {
                return Err(RegistryError::Compacted {
                    prefix: self.prefix.clone(),
                    compacted: msg.compact_revision(),
                });
            }
            if msg.canceled() {
                return Err(RegistryError::WatchEnded {
                    prefix: self.prefix.clone(),
                    reason: msg.cancel_reason().to_owned(),
                });
            }
            if msg.events().is_empty() {
                continue;
            }
            // Resume point: the newest event delivered (the header's revision may be ahead of
            // events this watch has not sent yet).
            let mut revision = 0;
            let mut out = Vec::new();
            for ev in msg.events() {
                let Some(kv) = ev.kv() else { continue };
                revision = revision.max(kv.mod_revision());
                match ev.event_type() {
                    EventType::Put => {
                        match self.registry.decode(
                            kv.key(),
                            kv.value(),
                            kv.lease(),
                            kv.mod_revision(),
                        ) {
                            Ok(l) => out.push(LeaseEvent::Added(l)),
                            Err(e) => {
                                // A known subnet whose value no longer parses must not keep
                                // its old, valid entry programmed.
                                tracing::warn!(error = %e, "malformed lease update; dropping the peer");
                                let key = String::from_utf8_lossy(kv.key());
                                if let Some(subnet) = parse_subnet_key(&self.registry.prefix, &key)
                                {
                                    out.push(LeaseEvent::Removed(subnet));
                                }
                            }
                        }
                    }
                    EventType::Delete => {
                        let key = String::from_utf8_lossy(kv.key());
                        if let Some(subnet) = parse_subnet_key(&self.registry.prefix, &key) {
                            out.push(LeaseEvent::Removed(subnet));
                        }
                    }
                }
            }
            return Ok((out, revision));
        }
    }
}
