//! The policy engine's task: every new model snapshot is compiled for this node and the
//! difference applied in one transaction; every `resync` the kernel's table is read back
//! and, if anything (an operator, another program) changed it, replaced as a whole.
//!
//! Change tracking before sync (kube-proxy): nothing is programmed before the source has
//! read every input once, so a restart never flashes an empty or partial ruleset; a
//! failed apply leaves the previous ruleset in force (the batch is atomic), is reported in
//! `/status` and the log, and is retried with back-off as a full replacement. The task
//! owns the one copy of "what the kernel holds"; the HTTP API reads the latest snapshot
//! through [`State::policy_view`](crate::state::State).

use super::apply::{self, table_ref};
use super::compile::{self, Compiled, Options};
use crate::source::model::Model;
use crate::state::{PolicyStatus, State, now};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use twill_net::nft::{Stmt, Table};

/// What the API serves: the model and the compiled output the kernel now holds.
#[derive(Debug)]
pub struct View {
    pub model: Arc<Model>,
    pub compiled: Arc<Compiled>,
    pub opts: Options,
}

/// Back-off after a failed apply: 100 ms doubling to 10 s.
fn backoff(failures: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << failures.min(7))).min(Duration::from_secs(10))
}

/// `t` with counters zeroed and set elements sorted, for comparing what we wrote with what
/// the kernel holds.
pub fn normalized(t: &Table) -> Table {
    let mut t = t.clone();
    for c in &mut t.chains {
        for r in &mut c.rules {
            for s in &mut r.stmts {
                if let Stmt::Counter { packets, bytes } = s {
                    *packets = 0;
                    *bytes = 0;
                }
            }
        }
    }
    t.chains.sort_by(|a, b| a.name.cmp(&b.name));
    t.sets.sort_by(|a, b| a.name.cmp(&b.name));
    for s in &mut t.sets {
        s.elements.sort_by(|a, b| a.key.cmp(&b.key));
    }
    t
}

/// Runs until `shutdown`; `models` comes from the source.
pub async fn run(
    mut models: watch::Receiver<Arc<Model>>,
    opts: Options,
    state: Arc<State>,
    resync: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    // What the kernel holds: the last compile applied (shared with the API, never copied).
    let mut applied: Option<Arc<Compiled>> = None;
    let mut session: Option<twill_net::nft::Session> = None;
    let mut failures = 0u32;
    let mut tick = tokio::time::interval(resync);
    tick.tick().await;
    state.update(|s| s.policy = Some(PolicyStatus::default()));
    loop {
        let verify = tokio::select! {
            _ = shutdown.changed() => return,
            r = models.changed() => {
                if r.is_err() {
                    return;
                }
                false
            }
            _ = tick.tick() => true,
            _ = tokio::time::sleep(backoff(failures)), if failures > 0 => false,
        };
        let model = models.borrow_and_update().clone();
        if !model.synced {
            continue;
        }
        let t0 = Instant::now();
        let compiled = tokio::task::block_in_place(|| compile::compile(&model, &opts));
        let compile_us = t0.elapsed().as_micros() as u64;
        if verify && let Some(ours) = &applied {
            let kernel = tokio::task::block_in_place(|| twill_net::nft::read_table(&table_ref()));
            let intact = matches!(&kernel, Ok(Some(k)) if normalized(k) == normalized(&ours.table));
            if !intact {
                tracing::warn!(
                    "table inet {} differs from what twilld wrote; replacing it",
                    compile::TABLE
                );
                applied = None;
            }
        }
        let (tx, summary) = apply::plan(applied.as_ref().map(|c| &c.table), &compiled.table);
        let t1 = Instant::now();
        let result = tokio::task::block_in_place(|| apply::commit_on(&tx, &mut session));
        let apply_us = t1.elapsed().as_micros() as u64;
        match result {
            Ok(()) => {
                if !summary.is_noop() {
                    tracing::info!(
                        generation = model.generation,
                        full = summary.full,
                        elements_added = summary.elements_added,
                        elements_removed = summary.elements_removed,
                        chains_rewritten = summary.chains_rewritten,
                        compile_us,
                        apply_us,
                        "policy ruleset applied"
                    );
                }
                failures = 0;
                let compiled = Arc::new(compiled);
                applied = Some(compiled.clone());
                state.update(|s| {
                    s.policy = Some(PolicyStatus {
                        applied_generation: model.generation,
                        applied_at: Some(now()),
                        error: None,
                        policies: model.policies.len(),
                        enforced_pods: compiled.enforced_pods.len(),
                        sets: compiled.table.sets.len(),
                        chains: compiled.table.chains.len(),
                        elements: compiled.element_count(),
                        compile_us,
                        apply_us,
                    });
                });
                if let Ok(mut v) = state.policy_view.lock() {
                    *v = Some(Arc::new(View {
                        model: model.clone(),
                        compiled,
                        opts: opts.clone(),
                    }));
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                applied = None;
                state
                    .policy_apply_errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let msg = format!(
                    "apply policy ruleset (generation {}) to table inet {}: {e}; the previous ruleset stays in force",
                    model.generation,
                    compile::TABLE
                );
                tracing::error!(error = %msg, "policy apply failed; will retry");
                state.record_error(msg.clone());
                state.update(|s| {
                    if let Some(p) = &mut s.policy {
                        p.error = Some(msg);
                    }
                });
            }
        }
    }
}
