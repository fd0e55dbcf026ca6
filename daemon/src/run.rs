//! The daemon's life: get a lease, set up the backend, publish the subnet file, then keep the
//! lease, follow peers and reconcile the kernel until told to stop.
//!
//! Order matters for operators and for pods:
//! 1. Nothing in the kernel is touched until the node holds a lease (an unreachable etcd at
//!    start leaves a running data plane exactly as it was; we retry with back-off).
//! 2. The subnet file is written only after the lease is held and the backend device exists,
//!    so a pod started through the `twill` plugin always lands in a routed subnet.
//! 3. Routes are swept only after the first complete list of peers (see `apply`).
//! 4. On SIGTERM nothing is removed and the lease is not revoked: a restart (upgrade,
//!    crash) must not interrupt pod traffic, and the next start takes the same lease back.
//!
//! The controllers over Kubernetes objects (the NetworkPolicy engine) start first, beside
//! the HTTP server: they depend on the object source, not on etcd, so an etcd outage at
//! start does not hold back policy updates. Each is its own task with its own module; this
//! file only starts them.

use crate::backend::{self, Backend, UnderlayInfo, apply, plan};
use crate::lease::manager::{self, HeldLease, LeaseStatus, NodeIdentity, PeerSet};
use crate::lease::registry::Registry;
use crate::netconf::NetConfig;
use crate::source::SourceConfig;
use crate::state::{LeasePhase, State, now};
use ipnetwork::Ipv4Network;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::watch;
use twill_net::netlink::Handle;
use twill_subnet_file::SubnetFile;

/// Everything the flags decide.
#[derive(Debug, Clone)]
pub struct Options {
    pub etcd_endpoints: Vec<String>,
    pub etcd_prefix: String,
    pub iface: Option<String>,
    pub public_ip: Option<Ipv4Addr>,
    pub subnet_file: PathBuf,
    pub metrics_addr: Option<SocketAddr>,
    pub node_name: String,
    /// Masquerade pod traffic leaving the cluster network.
    pub ip_masq: bool,
    pub lease_ttl: Duration,
    /// Full resync interval even without peer changes (level-triggered repair).
    pub resync: Duration,
    /// Where Kubernetes objects come from; `None` turns the policy engine off.
    pub source: Option<SourceConfig>,
    /// nflog for packets NetworkPolicy denies (`--policy-log`).
    pub policy_log: Option<crate::policy::compile::LogDenied>,
}

/// Runs until `shutdown` becomes true. Errors only for what an operator must fix first
/// (bad flags, no underlay); everything else is retried and reported.
pub async fn run(opts: Options, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let state = Arc::new(State::default());
    let mut handle = Handle::current().map_err(|e| anyhow::anyhow!("open netlink: {e}"))?;
    let underlay = backend::discover_underlay(&mut handle, opts.iface.as_deref(), opts.public_ip)
        .map_err(|e| anyhow::anyhow!("underlay: {e}"))?;
    tracing::info!(iface = %underlay.dev, public_ip = %underlay.public_ip, mtu = underlay.mtu, "underlay");
    state.update(|s| {
        s.node = opts.node_name.clone();
        s.public_ip = underlay.public_ip.to_string();
        s.underlay = underlay.dev.clone();
    });

    if let Some(addr) = opts.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("--metrics-addr {addr}: {e}"))?;
        let app = crate::http::router(state.clone());
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.changed().await;
                })
                .await;
        });
    }

    // 0. Controllers over Kubernetes objects.
    if let Some(cfg) = opts.source.clone() {
        let src = crate::source::spawn(cfg, state.clone(), shutdown.clone())
            .await
            .map_err(|e| anyhow::anyhow!("object source: {e}"))?;
        let popts = crate::policy::compile::Options {
            node: opts.node_name.clone(),
            log_denied: opts.policy_log.clone(),
        };
        tokio::spawn(crate::policy::controller::run(
            src.models,
            popts,
            state.clone(),
            opts.resync,
            shutdown.clone(),
        ));
    }

    // 1. etcd, config and lease, retried until they work.
    let previous = SubnetFile::read(&opts.subnet_file)
        .ok()
        .map(|f| f.node_subnet());
    let Some((reg, cfg, backend, me, lease)) =
        acquire_until_held(&opts, &underlay, previous, &state, &mut shutdown).await
    else {
        return Ok(());
    };
    state.update(|s| {
        s.backend = backend.type_name().into();
        s.overlay_dev = backend.overlay_dev();
        s.network = Some(cfg.network.to_string());
    });

    // 2. Backend device, then the subnet file.
    if let Err(e) = backend.setup(&mut handle, &underlay, lease.subnet) {
        anyhow::bail!("set up {} backend: {e}", backend.type_name());
    }
    if let Err(e) = crate::masq::apply(cfg.network, opts.ip_masq) {
        anyhow::bail!("masquerade rules (table inet {}): {e}", crate::masq::TABLE);
    }
    write_subnet_file(&opts, &cfg, &backend, &underlay, lease.subnet)?;

    // 3. Keep the lease and follow peers.
    let (status_tx, mut status_rx) = watch::channel(LeaseStatus::Held {
        lease,
        ttl_secs: opts.lease_ttl.as_secs() as i64,
    });
    let (peers_tx, mut peers_rx) = watch::channel(None::<Arc<PeerSet>>);
    tokio::spawn(manager::keep(
        reg.clone(),
        cfg.clone(),
        me.clone(),
        lease,
        opts.lease_ttl,
        status_tx,
        shutdown.clone(),
    ));
    tokio::spawn(manager::watch_peers(
        reg.clone(),
        status_rx.clone(),
        peers_tx,
        state.watch_errors.clone(),
        shutdown.clone(),
    ));

    // 4. Reconcile on every peer change and periodically.
    let overlay = backend.overlay_dev();
    let mut current = lease;
    let mut tick = tokio::time::interval(opts.resync);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            r = status_rx.changed() => {
                if r.is_err() { break; }
                let st = status_rx.borrow_and_update().clone();
                on_lease_status(&state, &st, opts.lease_ttl);
                let held = st.lease();
                if held.subnet != current.subnet {
                    // Re-claimed a different subnet: new VTEP address and subnet file.
                    if let Err(e) = backend.setup(&mut handle, &underlay, held.subnet) {
                        state.record_error(format!("backend setup for {}: {e}", held.subnet));
                    }
                    if let Err(e) = write_subnet_file(&opts, &cfg, &backend, &underlay, held.subnet) {
                        state.record_error(e.to_string());
                    }
                }
                current = held;
                continue;
            }
            r = peers_rx.changed() => { if r.is_err() { break; } }
            _ = tick.tick() => {}
        }
        let Some(peers) = peers_rx.borrow_and_update().clone() else {
            continue;
        };
        // Level-triggered: the masquerade table is checked with the routes, healing it if
        // something flushed it. Netlink calls block (briefly): tell the runtime.
        let masq = tokio::task::block_in_place(|| crate::masq::apply(cfg.network, opts.ip_masq));
        if let Err(e) = masq {
            state.backend_errors.fetch_add(1, Ordering::Relaxed);
            state.record_error(format!("masquerade rules: {e}"));
        }
        let (usable, refused) = plan::screen(&peers, &cfg, current.subnet, &underlay.as_plan());
        let mut want = backend.desired(&usable, &underlay);
        want.unreachable.extend(refused);
        let report = tokio::task::block_in_place(|| {
            apply::reconcile(&mut handle, &want, overlay.as_deref())
        });
        state.reconciles.fetch_add(1, Ordering::Relaxed);
        if report.changed() {
            tracing::info!(?report, peers = peers.len(), "reconciled");
        }
        for e in &report.errors {
            state.backend_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "backend programming failed; will retry");
            state.record_error(e.clone());
        }
        let unreachable: Vec<String> = want
            .unreachable
            .iter()
            .map(|(s, why)| format!("{s}: {why}"))
            .collect();
        for u in &unreachable {
            tracing::error!(peer = %u, "peer cannot be programmed");
        }
        state.update(|s| {
            s.peers_seen = peers.len();
            (
                s.routes_programmed,
                s.neighbours_programmed,
                s.fdb_programmed,
            ) = report.owned;
            s.desired_routes = want.routes.iter().map(|r| r.to_string()).collect();
            s.desired_neighbours = want.neighbours.iter().map(|n| n.to_string()).collect();
            s.desired_fdb = want.fdb.iter().map(|f| f.to_string()).collect();
            s.unreachable_peers = unreachable;
            s.last_reconcile_at = Some(now());
        });
    }
    tracing::info!("stopping; kernel state and lease left in place for the next start");
    Ok(())
}

fn on_lease_status(state: &State, st: &LeaseStatus, ttl: Duration) {
    match st {
        LeaseStatus::Held { lease, ttl_secs } => state.update(|s| {
            s.lease_phase = LeasePhase::Held;
            s.subnet = Some(lease.subnet.to_string());
            s.lease_expires_at = Some(now() + (*ttl_secs).max(0) as u64);
        }),
        LeaseStatus::EtcdUnreachable { lease, error } => {
            state.etcd_errors.fetch_add(1, Ordering::Relaxed);
            state.record_error(format!("etcd: {error}"));
            state.update(|s| {
                s.lease_phase = LeasePhase::EtcdUnreachable;
                s.subnet = Some(lease.subnet.to_string());
                if s.lease_expires_at.is_none() {
                    s.lease_expires_at = Some(now() + ttl.as_secs());
                }
            });
        }
    }
}

type Acquired = (Registry, NetConfig, Backend, NodeIdentity, HeldLease);

async fn acquire_until_held(
    opts: &Options,
    underlay: &UnderlayInfo,
    previous: Option<Ipv4Network>,
    state: &State,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<Acquired> {
    let mut attempt = 0u32;
    loop {
        let result: anyhow::Result<Acquired> = async {
            let reg = Registry::connect(&opts.etcd_endpoints, &opts.etcd_prefix).await?;
            let cfg = reg.config().await?;
            let backend = Backend::from_config(&cfg);
            let me = NodeIdentity {
                name: opts.node_name.clone(),
                public_ip: underlay.public_ip,
                backend_type: backend.type_name().into(),
                backend_data: backend.backend_data(underlay),
            };
            let lease = manager::acquire(&reg, &cfg, &me, previous, opts.lease_ttl).await?;
            Ok((reg, cfg, backend, me, lease))
        }
        .await;
        match result {
            Ok(a) => {
                state.update(|s| {
                    s.lease_phase = LeasePhase::Held;
                    s.subnet = Some(a.4.subnet.to_string());
                    s.lease_expires_at = Some(now() + opts.lease_ttl.as_secs());
                });
                tracing::info!(subnet = %a.4.subnet, backend = a.2.type_name(), "lease held");
                return Some(a);
            }
            Err(e) => {
                state.etcd_errors.fetch_add(1, Ordering::Relaxed);
                state.record_error(format!("{e:#}"));
                tracing::warn!(error = %format!("{e:#}"), "cannot get a lease yet; retrying");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(manager::backoff(attempt)) => {}
            _ = shutdown.changed() => return None,
        }
        attempt = attempt.saturating_add(1);
    }
}

fn write_subnet_file(
    opts: &Options,
    cfg: &NetConfig,
    backend: &Backend,
    underlay: &UnderlayInfo,
    subnet: Ipv4Network,
) -> anyhow::Result<()> {
    let f = SubnetFile {
        network: cfg.network,
        subnet: backend::gateway_of(subnet),
        mtu: backend.mtu(underlay),
        ipmasq: opts.ip_masq,
    };
    f.write_atomic(&opts.subnet_file)?;
    tracing::info!(path = %opts.subnet_file.display(), subnet = %f.subnet, "subnet file written");
    Ok(())
}
