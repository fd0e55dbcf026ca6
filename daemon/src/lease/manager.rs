//! Lease policy: which subnet to claim, keeping it, getting it back, and following peers.
//!
//! Modelled on flannel's `local_manager.go`, with the lessons of its issue history applied:
//! - After a restart a node takes back the lease carrying its PublicIP, else the subnet from
//!   its subnet file if still free, so pods keep their addresses.
//! - Renewal runs well before expiry (every third of the TTL, at most hourly); while etcd is
//!   unreachable it retries with back-off and the data plane is left alone. If the lease
//!   expired meanwhile, the same subnet is claimed again when it is still free.
//! - Peers are delivered level-triggered: every change publishes the *whole* peer set
//!   (a `tokio::sync::watch` value), so a backend that missed an update still converges.
//!   A broken watch resumes after the last event it delivered; a compacted history forces a
//!   fresh list.

use super::alloc;
use super::record::LeaseAttrs;
use super::registry::{Lease, LeaseEvent, Registry, RegistryError};
use crate::netconf::NetConfig;
use ipnetwork::Ipv4Network;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Who this node is, as written into its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    pub name: String,
    pub public_ip: Ipv4Addr,
    pub backend_type: String,
    pub backend_data: serde_json::Value,
}

impl NodeIdentity {
    pub fn attrs(&self) -> LeaseAttrs {
        LeaseAttrs {
            public_ip: self.public_ip,
            backend_type: self.backend_type.clone(),
            backend_data: self.backend_data.clone(),
            node_name: self.name.clone(),
        }
    }
}

/// A subnet this node holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldLease {
    pub subnet: Ipv4Network,
    pub lease_id: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(
        "network {network} is full: all {capacity} /{len} subnets are leased; enlarge Network or shrink SubnetLen in the network config"
    )]
    NetworkFull {
        network: Ipv4Network,
        capacity: u32,
        len: u8,
    },
}

/// How many list-and-claim rounds to try before declaring the network full; each round
/// re-lists, so only a network that stays full through all of them is reported full.
const CLAIM_ROUNDS: usize = 3;

/// Claims a subnet for `me`. See the module note for the order of preference.
pub async fn acquire(
    reg: &Registry,
    cfg: &NetConfig,
    me: &NodeIdentity,
    previous: Option<Ipv4Network>,
    ttl: Duration,
) -> Result<HeldLease, LeaseError> {
    let attrs = me.attrs();
    for _ in 0..CLAIM_ROUNDS {
        let (leases, _bad, _rev) = reg.list().await?;
        // 1. A lease already carrying our PublicIP (we restarted, or our lease was written by
        //    a previous incarnation of this node): take it over if it is valid for the config.
        if let Some(mine) = leases
            .iter()
            .find(|l| l.attrs.public_ip == me.public_ip && alloc::is_valid_subnet(cfg, l.subnet))
            && let Some(id) = reg.take_over(mine, &attrs, ttl).await?
        {
            // The key now lives on the new etcd lease; the old one would linger for its TTL.
            if mine.lease_id != 0
                && mine.lease_id != id
                && let Err(e) = reg.revoke(mine.lease_id).await
            {
                tracing::warn!(error = %e, "could not revoke the previous etcd lease");
            }
            tracing::info!(subnet = %mine.subnet, "took back our existing lease");
            return Ok(HeldLease {
                subnet: mine.subnet,
                lease_id: id,
            });
        }
        // 2. The previous subnet, then 3. a free one starting at our seeded offset.
        let taken: Vec<Ipv4Network> = leases.iter().map(|l| l.subnet).collect();
        for subnet in alloc::candidates(cfg, &taken, previous, alloc::seed_for(&me.name)) {
            if let Some(id) = reg.create(subnet, &attrs, ttl).await? {
                tracing::info!(subnet = %subnet, reused = (Some(subnet) == previous), "claimed subnet");
                return Ok(HeldLease {
                    subnet,
                    lease_id: id,
                });
            }
            tracing::debug!(subnet = %subnet, "subnet taken meanwhile; trying the next");
        }
    }
    Err(LeaseError::NetworkFull {
        network: cfg.network,
        capacity: cfg.capacity(),
        len: cfg.subnet_len,
    })
}

/// The interval between renewals for a TTL: a third of it, between 1 s and 1 h.
pub fn renew_interval(ttl: Duration) -> Duration {
    (ttl / 3).clamp(Duration::from_secs(1), Duration::from_secs(3600))
}

/// Back-off for retries against etcd: 1 s doubling to 30 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.min(5)).min(Duration::from_secs(30))
}

/// What the lease keeper reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseStatus {
    /// Held and renewed; `ttl_secs` as of the last renewal.
    Held { lease: HeldLease, ttl_secs: i64 },
    /// Held as far as we know, but etcd is unreachable; `error` is the last failure.
    EtcdUnreachable { lease: HeldLease, error: String },
}

impl LeaseStatus {
    pub fn lease(&self) -> HeldLease {
        match self {
            LeaseStatus::Held { lease, .. } | LeaseStatus::EtcdUnreachable { lease, .. } => *lease,
        }
    }
}

/// Keeps `lease` alive until `shutdown` fires, re-claiming it if it expired. Publishes every
/// state change on `status`.
pub async fn keep(
    reg: Registry,
    cfg: NetConfig,
    me: NodeIdentity,
    mut lease: HeldLease,
    ttl: Duration,
    status: watch::Sender<LeaseStatus>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut attempt = 0u32;
    let mut wait = renew_interval(ttl);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        // Renewed, and the key is still bound to our etcd lease (another node with the same
        // PublicIP, or an operator, may have taken it over): only then do we still hold it.
        let renewed = match reg.renew(lease.lease_id).await {
            Ok(Some(ttl_secs)) => match reg.holder(lease.subnet).await {
                Ok(Some(id)) if id == lease.lease_id => Ok(Some(ttl_secs)),
                Ok(_) => Ok(None),
                Err(e) => Err(e),
            },
            other => other,
        };
        let outcome = match renewed {
            Ok(Some(ttl_secs)) => Ok(ttl_secs),
            Ok(None) => {
                tracing::warn!(subnet = %lease.subnet, "lease expired or taken over while we were away; claiming again");
                match acquire(&reg, &cfg, &me, Some(lease.subnet), ttl).await {
                    Ok(new) => {
                        if new.subnet != lease.subnet {
                            tracing::error!(old = %lease.subnet, new = %new.subnet,
                                "our old subnet was taken by another node; pods need new addresses");
                        }
                        lease = new;
                        reg.ttl(lease.lease_id)
                            .await
                            .map(|t| t.unwrap_or(0))
                            .map_err(LeaseError::from)
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e.into()),
        };
        match outcome {
            Ok(ttl_secs) => {
                attempt = 0;
                wait = renew_interval(ttl);
                status.send_replace(LeaseStatus::Held { lease, ttl_secs });
            }
            Err(e) => {
                tracing::warn!(error = %e, subnet = %lease.subnet, "lease renewal failed; data plane unchanged, retrying");
                wait = backoff(attempt);
                attempt = attempt.saturating_add(1);
                status.send_replace(LeaseStatus::EtcdUnreachable {
                    lease,
                    error: e.to_string(),
                });
            }
        }
    }
}

/// The set of peer leases (every lease but our own), keyed by subnet.
pub type PeerSet = BTreeMap<Ipv4Network, Lease>;

/// Follows all leases and publishes the full peer set after every change (`None` until the
/// first complete list, so nothing is programmed or swept from a partial view). Runs until
/// `shutdown`. A broken watch resumes after the last event it delivered; only when etcd has
/// compacted that history (or nothing was listed yet) is the whole prefix listed again.
/// Failures are retried with back-off and counted in `errors`.
pub async fn watch_peers(
    reg: Registry,
    mut own: watch::Receiver<LeaseStatus>,
    peers: watch::Sender<Option<Arc<PeerSet>>>,
    errors: Arc<std::sync::atomic::AtomicU64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut known: Option<Known> = None;
    let mut attempt = 0u32;
    loop {
        let before = known.as_ref().map(|k| k.revision);
        let result = tokio::select! {
            r = follow(&reg, &mut own, &peers, &mut known) => r,
            _ = shutdown.changed() => return,
        };
        if let Err(e) = result {
            errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if matches!(e, RegistryError::Compacted { .. }) {
                tracing::warn!(error = %e, "lease history compacted; re-listing");
                known = None;
            } else {
                tracing::warn!(error = %e, "lease watch interrupted; resuming");
            }
        }
        if known.as_ref().map(|k| k.revision) != before {
            attempt = 0;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff(attempt)) => {}
            _ = shutdown.changed() => return,
        }
        attempt = attempt.saturating_add(1).min(5);
    }
}

/// Every lease (ours included) as of `revision`. Which one is ours is decided only when the
/// peer set is published, so a change of our own subnet (re-claim after expiry) can never
/// leave a peer out or keep our own subnet in.
struct Known {
    all: PeerSet,
    revision: i64,
}

fn publish(
    all: &PeerSet,
    own: &watch::Receiver<LeaseStatus>,
    peers: &watch::Sender<Option<Arc<PeerSet>>>,
) {
    let mine = own.borrow().lease().subnet;
    let set: PeerSet = all
        .iter()
        .filter(|(s, _)| **s != mine)
        .map(|(s, l)| (*s, l.clone()))
        .collect();
    peers.send_replace(Some(Arc::new(set)));
}

async fn follow(
    reg: &Registry,
    own: &mut watch::Receiver<LeaseStatus>,
    peers: &watch::Sender<Option<Arc<PeerSet>>>,
    known: &mut Option<Known>,
) -> Result<(), RegistryError> {
    let k = match known {
        Some(k) => k,
        None => {
            let (leases, bad, revision) = reg.list().await?;
            for e in bad {
                tracing::warn!(error = %e, "ignoring malformed lease");
            }
            let all: PeerSet = leases.into_iter().map(|l| (l.subnet, l)).collect();
            known.insert(Known { all, revision })
        }
    };
    publish(&k.all, own, peers);
    let mut w = reg.watch(k.revision).await?;
    // Once the lease keeper is gone our subnet can no longer change: stop asking.
    let mut own_alive = true;
    loop {
        tokio::select! {
            r = own.changed(), if own_alive => {
                if r.is_err() {
                    own_alive = false;
                    continue;
                }
            }
            r = w.next() => {
                let (events, revision) = r?;
                for ev in events {
                    match ev {
                        LeaseEvent::Added(l) => {
                            k.all.insert(l.subnet, l);
                        }
                        LeaseEvent::Removed(s) => {
                            k.all.remove(&s);
                        }
                    }
                }
                k.revision = k.revision.max(revision);
            }
        }
        publish(&k.all, own, peers);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_well_before_expiry() {
        assert_eq!(
            renew_interval(Duration::from_secs(24 * 3600)),
            Duration::from_secs(3600)
        );
        assert_eq!(
            renew_interval(Duration::from_secs(30)),
            Duration::from_secs(10)
        );
        assert_eq!(
            renew_interval(Duration::from_secs(1)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn backoff_is_bounded() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(60), Duration::from_secs(30));
    }
}
