//! `--metrics-addr`: Prometheus `/metrics`, `/healthz`, and `/status` (JSON for `netctl`).
//!
//! Metrics are rendered from [`State`] at scrape time into a fresh registry
//! (prometheus-client's text encoder), so there is one source of truth and no metric can
//! drift from what `/status` reports. `/healthz` is 200 while the node holds a lease (also
//! when etcd is unreachable: the data plane still forwards, which is what health is about)
//! and 503 before the first lease, with the reason in the body.

use crate::state::{LeasePhase, State};
use axum::Router;
use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

fn gauge(reg: &mut Registry, name: &str, help: &str, v: i64) {
    let g: Gauge = Gauge::default();
    g.set(v);
    reg.register(name, help, g);
}

fn counter(reg: &mut Registry, name: &str, help: &str, v: u64) {
    let c: Counter = Counter::default();
    c.inc_by(v);
    reg.register(name, help, c);
}

/// The Prometheus text exposition of `state`.
pub fn render_metrics(state: &State) -> String {
    let s = state.snapshot();
    let mut reg = Registry::with_prefix("twill");
    gauge(
        &mut reg,
        "lease_held",
        "1 while this node holds its subnet lease",
        i64::from(s.lease_phase != LeasePhase::Acquiring),
    );
    gauge(
        &mut reg,
        "etcd_reachable",
        "1 while etcd answers lease renewals",
        i64::from(s.lease_phase == LeasePhase::Held),
    );
    gauge(
        &mut reg,
        "lease_expiry_timestamp_seconds",
        "Unix time the subnet lease expires, as of the last renewal",
        s.lease_expires_at.unwrap_or(0) as i64,
    );
    gauge(
        &mut reg,
        "peers",
        "Peer leases seen in etcd",
        s.peers_seen as i64,
    );
    gauge(
        &mut reg,
        "peers_unreachable",
        "Peers that cannot be programmed (e.g. host-gw peer not on-link)",
        s.unreachable_peers.len() as i64,
    );
    gauge(
        &mut reg,
        "routes_programmed",
        "Routes twilld owns in the kernel",
        s.routes_programmed as i64,
    );
    gauge(
        &mut reg,
        "fdb_entries_programmed",
        "FDB entries twilld owns",
        s.fdb_programmed as i64,
    );
    let load = |c: &AtomicU64| State::count(c);
    counter(
        &mut reg,
        "backend_errors",
        "Failed route/neighbour/FDB programming operations",
        load(&state.backend_errors),
    );
    counter(
        &mut reg,
        "etcd_errors",
        "Failed etcd requests (lease claim and renewal)",
        load(&state.etcd_errors),
    );
    counter(
        &mut reg,
        "lease_watch_errors",
        "Interrupted lease watches (resumed; re-listed after compaction)",
        load(&state.watch_errors),
    );
    counter(
        &mut reg,
        "reconciles",
        "Completed reconcile passes",
        load(&state.reconciles),
    );
    if let Some(p) = &s.policy {
        let gauges: [(&str, &str, i64); 7] = [
            (
                "policy_applied_generation",
                "Model generation whose NetworkPolicy ruleset is in the kernel",
                p.applied_generation as i64,
            ),
            (
                "policies",
                "NetworkPolicies in the model",
                p.policies as i64,
            ),
            (
                "policy_enforced_pods",
                "Pods on this node isolated by at least one NetworkPolicy",
                p.enforced_pods as i64,
            ),
            (
                "policy_set_elements",
                "Elements in the sets and maps of table inet twill_policy",
                p.elements as i64,
            ),
            (
                "policy_compile_microseconds",
                "Wall time of the last policy compile",
                p.compile_us as i64,
            ),
            (
                "policy_apply_microseconds",
                "Wall time of the last policy apply (one nftables transaction)",
                p.apply_us as i64,
            ),
            (
                "policy_apply_failing",
                "1 while the last policy apply failed (the previous ruleset stays in force)",
                i64::from(p.error.is_some()),
            ),
        ];
        for (name, help, v) in gauges {
            gauge(&mut reg, name, help, v);
        }
        counter(
            &mut reg,
            "policy_apply_errors",
            "Failed policy applies",
            load(&state.policy_apply_errors),
        );
    }
    if let Some(src) = &s.source {
        gauge(
            &mut reg,
            "source_synced",
            "1 once the Kubernetes object source has read every input",
            i64::from(src.synced),
        );
        gauge(
            &mut reg,
            "source_errors",
            "Current source problems (broken files, invalid objects, failing watches)",
            src.errors.len() as i64,
        );
    }
    let mut out = String::new();
    if encode(&mut out, &reg).is_err() {
        return String::new();
    }
    out
}

async fn metrics(AxState(state): AxState<Arc<State>>) -> impl IntoResponse {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        render_metrics(&state),
    )
}

async fn healthz(AxState(state): AxState<Arc<State>>) -> impl IntoResponse {
    let s = state.snapshot();
    match s.lease_phase {
        LeasePhase::Held => (StatusCode::OK, "ok\n".to_string()),
        LeasePhase::EtcdUnreachable => (
            StatusCode::OK,
            "ok: forwarding; etcd unreachable, lease renewal retrying\n".to_string(),
        ),
        LeasePhase::Acquiring => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "no subnet lease yet{}\n",
                s.last_errors
                    .last()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ),
        ),
    }
}

async fn status(AxState(state): AxState<Arc<State>>) -> impl IntoResponse {
    Json(state.snapshot())
}

type Query = axum::extract::Query<std::collections::HashMap<String, String>>;

/// The policy engine's latest snapshot, or the reason there is none.
fn policy_view(
    state: &State,
) -> Result<Arc<crate::policy::controller::View>, (StatusCode, String)> {
    state
        .policy_view
        .lock()
        .ok()
        .and_then(|v| v.clone())
        .ok_or((
            StatusCode::SERVICE_UNAVAILABLE,
            "no policy ruleset applied yet: twilld needs --manifests or --kubeconfig, and the source must have synced (see netctl status)\n".into(),
        ))
}

/// The engine's chains as the kernel holds them now, rules only (for counters); `None` if
/// they cannot be read. Sets are left out: their elements say nothing about counters.
async fn kernel_table() -> Option<twill_net::nft::Table> {
    tokio::task::spawn_blocking(|| {
        let t = crate::policy::apply::table_ref();
        let rules = twill_net::nft::table_rules(&t).ok()?;
        let mut chains: Vec<twill_net::nft::Chain> = Vec::new();
        for (chain, r) in rules {
            match chains.last_mut() {
                Some(c) if c.name == chain => c.rules.push(r.rule),
                _ => {
                    let mut c = twill_net::nft::Chain::regular(&chain);
                    c.rules.push(r.rule);
                    chains.push(c);
                }
            }
        }
        Some(twill_net::nft::Table {
            family: t.family,
            name: t.name,
            chains,
            sets: Vec::new(),
        })
    })
    .await
    .ok()
    .flatten()
}

async fn policy_list(AxState(state): AxState<Arc<State>>) -> axum::response::Response {
    let v = match policy_view(&state) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let kernel = kernel_table().await;
    Json(crate::policy::explain::list(
        &v.model,
        &v.compiled,
        kernel.as_ref(),
    ))
    .into_response()
}

async fn policy_show(
    AxState(state): AxState<Arc<State>>,
    axum::extract::Query(q): Query,
) -> axum::response::Response {
    let v = match policy_view(&state) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let Some((ns, name)) = q.get("policy").and_then(|p| p.split_once('/')) else {
        return (StatusCode::BAD_REQUEST, "policy: expected namespace/name\n").into_response();
    };
    let key = crate::source::model::ObjectKey::new(ns, name);
    let kernel = kernel_table().await;
    match crate::policy::explain::show(&v.model, &v.compiled, kernel.as_ref(), &key) {
        Some(r) => Json(r).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            format!("NetworkPolicy {key} is not known (netctl policy list shows what is)\n"),
        )
            .into_response(),
    }
}

async fn policy_explain(
    AxState(state): AxState<Arc<State>>,
    axum::extract::Query(q): Query,
) -> axum::response::Response {
    let v = match policy_view(&state) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let arg = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    let port: u16 = match arg("port").parse() {
        Ok(p) => p,
        Err(_) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("port: {:?} is not a port number\n", arg("port")),
            )
                .into_response();
        }
    };
    let Some(proto) = crate::source::model::Protocol::parse(&arg("protocol").to_uppercase()) else {
        return (
            StatusCode::BAD_REQUEST,
            format!(
                "protocol: {:?} is not one of TCP, UDP, SCTP\n",
                arg("protocol")
            ),
        )
            .into_response();
    };
    match crate::policy::explain::explain(&v.model, &v.opts, arg("src"), arg("dst"), port, proto) {
        Ok(e) => Json(e).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    }
}

/// The router: `/metrics`, `/healthz`, `/status`, and the policy API netctl reads
/// (`/policy/list`, `/policy/show?policy=NS/NAME`,
/// `/policy/explain?src=&dst=&port=&protocol=`).
pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/status", get(status))
        .route("/policy/list", get(policy_list))
        .route("/policy/show", get(policy_show))
        .route("/policy/explain", get(policy_explain))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_reflect_state() {
        let st = State::default();
        st.update(|s| {
            s.lease_phase = LeasePhase::Held;
            s.peers_seen = 3;
        });
        st.backend_errors
            .fetch_add(2, std::sync::atomic::Ordering::Relaxed);
        let text = render_metrics(&st);
        assert!(text.contains("twill_lease_held 1"), "{text}");
        assert!(text.contains("twill_peers 3"), "{text}");
        assert!(text.contains("twill_backend_errors_total 2"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
