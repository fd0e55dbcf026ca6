//! The one applier of the policy engine: turns the difference between the table in the
//! kernel and the desired one into a single nftables transaction (all or nothing), so a
//! failed apply leaves the previous ruleset in force.
//!
//! [`plan`] is pure and golden-tested; [`commit`] sends it. Two shapes:
//! - **full** (first apply after start, after any failure, or when the kernel's table is
//!   not what we last wrote): `add table; delete table; add table; ...everything`, which
//!   atomically replaces whatever was there (the leading `add` makes the delete safe when
//!   the table is absent);
//! - **incremental**: new chains, new sets with their elements, element deletions and
//!   additions in existing sets, chains whose rules changed are flushed and refilled, then
//!   removed chains and sets go. Pod churn only changes elements, so it produces element
//!   operations only. The order satisfies the kernel's references: a chain exists before a
//!   map element jumps to it, a set before a rule looks it up, and rules and elements that
//!   reference a chain or set are gone before it is deleted.

use super::compile::TABLE;
use rustc_hash::FxHashMap as HashMap;
use std::collections::HashSet;
use twill_net::nft::{
    Chain, Family, NftError, Session, Set, SetElem, Table, TableRef, Transaction,
};

/// The engine's table.
pub fn table_ref() -> TableRef {
    TableRef::new(Family::Inet, TABLE)
}

/// What a plan does, for logs and `/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanSummary {
    pub full: bool,
    pub chains_added: usize,
    pub chains_rewritten: usize,
    pub chains_removed: usize,
    pub sets_added: usize,
    pub sets_removed: usize,
    pub elements_added: usize,
    pub elements_removed: usize,
}

impl PlanSummary {
    /// Nothing to send.
    pub fn is_noop(&self) -> bool {
        *self == PlanSummary::default()
    }

    /// Only set elements change (what pod churn must produce).
    pub fn elements_only(&self) -> bool {
        !self.full
            && self.chains_added == 0
            && self.chains_rewritten == 0
            && self.chains_removed == 0
            && self.sets_added == 0
            && self.sets_removed == 0
    }
}

/// The transaction that turns `current` (what the kernel holds, `None` when unknown) into
/// `next`.
pub fn plan(current: Option<&Table>, next: &Table) -> (Transaction, PlanSummary) {
    match current {
        Some(cur) => {
            let idx = Index::new(cur, next);
            if idx.incremental_possible(next) {
                incremental(cur, next, &idx)
            } else {
                full(next)
            }
        }
        None => full(next),
    }
}

/// The chains and sets of both tables by name, built once per plan.
struct Index<'a> {
    cur_chains: HashMap<&'a str, &'a Chain>,
    next_chains: HashMap<&'a str, &'a Chain>,
    cur_sets: HashMap<&'a str, &'a Set>,
    next_sets: HashMap<&'a str, &'a Set>,
}

impl<'a> Index<'a> {
    fn new(cur: &'a Table, next: &'a Table) -> Index<'a> {
        Index {
            cur_chains: cur.chains.iter().map(|c| (c.name.as_str(), c)).collect(),
            next_chains: next.chains.iter().map(|c| (c.name.as_str(), c)).collect(),
            cur_sets: cur.sets.iter().map(|s| (s.name.as_str(), s)).collect(),
            next_sets: next.sets.iter().map(|s| (s.name.as_str(), s)).collect(),
        }
    }

    /// Base chains and set definitions never change in place: when one would, start over.
    fn incremental_possible(&self, next: &Table) -> bool {
        next.chains.iter().all(|c| {
            self.cur_chains
                .get(c.name.as_str())
                .is_none_or(|old| old.base == c.base)
        }) && next.sets.iter().all(|s| {
            self.cur_sets
                .get(s.name.as_str())
                .is_none_or(|old| old.key == s.key && old.vmap == s.vmap)
        })
    }
}

fn full(next: &Table) -> (Transaction, PlanSummary) {
    let t = table_ref();
    let mut tx = Transaction::new();
    let mut sum = PlanSummary {
        full: true,
        ..PlanSummary::default()
    };
    tx.add_table(&t).delete_table(&t).add_table(&t);
    for c in &next.chains {
        tx.add_chain(&t, &c.name, c.base);
        sum.chains_added += 1;
    }
    for s in &next.sets {
        tx.add_set(&t, s);
        sum.sets_added += 1;
        sum.elements_added += s.elements.len();
    }
    for c in &next.chains {
        for r in &c.rules {
            tx.add_rule(&t, &c.name, r.clone());
        }
    }
    (tx, sum)
}

fn incremental(cur: &Table, next: &Table, idx: &Index<'_>) -> (Transaction, PlanSummary) {
    let t = table_ref();
    let mut tx = Transaction::new();
    let mut sum = PlanSummary::default();
    let (cur_chains, next_chains) = (&idx.cur_chains, &idx.next_chains);
    let (cur_sets, next_sets) = (&idx.cur_sets, &idx.next_sets);

    // 1. New chains, empty (map elements and rules may refer to them).
    for c in &next.chains {
        if !cur_chains.contains_key(c.name.as_str()) {
            tx.add_chain(&t, &c.name, c.base);
            sum.chains_added += 1;
        }
    }
    // 2. New sets with their elements.
    for s in &next.sets {
        if !cur_sets.contains_key(s.name.as_str()) {
            tx.add_set(&t, s);
            sum.sets_added += 1;
            sum.elements_added += s.elements.len();
        }
    }
    // 3. Elements of sets on both sides: deletions first (a changed map verdict is a
    //    deletion and an addition of the same key).
    let mut additions: Vec<(&str, Vec<SetElem>)> = Vec::new();
    for s in &next.sets {
        let Some(old) = cur_sets.get(s.name.as_str()) else {
            continue;
        };
        if old.elements == s.elements {
            continue;
        }
        let (gone, new) = element_diff(&old.elements, &s.elements);
        if !gone.is_empty() {
            sum.elements_removed += gone.len();
            tx.delete_elements(&t, &s.name, &gone);
        }
        if !new.is_empty() {
            additions.push((s.name.as_str(), new));
        }
    }
    for (set, new) in additions {
        sum.elements_added += new.len();
        tx.add_elements(&t, set, &new);
    }
    // 4. Chains whose rules changed: flushed and refilled; new chains filled.
    for c in &next.chains {
        match cur_chains.get(c.name.as_str()) {
            Some(old) if old.rules == c.rules => {}
            Some(_) => {
                tx.flush_chain(&t, &c.name);
                sum.chains_rewritten += 1;
                for r in &c.rules {
                    tx.add_rule(&t, &c.name, r.clone());
                }
            }
            None => {
                for r in &c.rules {
                    tx.add_rule(&t, &c.name, r.clone());
                }
            }
        }
    }
    // 5. Removed chains: all flushed before any is deleted (they may jump to each other).
    let removed: Vec<&str> = cur
        .chains
        .iter()
        .map(|c| c.name.as_str())
        .filter(|n| !next_chains.contains_key(n))
        .collect();
    for c in &removed {
        tx.flush_chain(&t, c);
    }
    // Map elements jumping to removed chains were deleted in step 3.
    for c in &removed {
        tx.delete_chain(&t, c);
        sum.chains_removed += 1;
    }
    // 6. Removed sets, now that no rule refers to them.
    for s in &cur.sets {
        if !next_sets.contains_key(s.name.as_str()) {
            tx.delete_set(&t, &s.name);
            sum.sets_removed += 1;
        }
    }
    (tx, sum)
}

/// The elements of `old` not in `new` (to delete) and of `new` not in `old` (to add). The
/// compiler emits elements sorted by key, so this is one merge pass without hashing (at
/// 100,000 elements, hashing the big peer sets of every changed set cost milliseconds per
/// label change); unsorted input (a table read back from the kernel) falls back to sets.
pub fn element_diff(old: &[SetElem], new: &[SetElem]) -> (Vec<SetElem>, Vec<SetElem>) {
    let sorted = |v: &[SetElem]| v.windows(2).all(|w| w[0].key < w[1].key);
    if !(sorted(old) && sorted(new)) {
        let want: HashSet<&SetElem> = new.iter().collect();
        let have: HashSet<&SetElem> = old.iter().collect();
        return (
            old.iter().filter(|e| !want.contains(e)).cloned().collect(),
            new.iter().filter(|e| !have.contains(e)).cloned().collect(),
        );
    }
    let (mut gone, mut added) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < old.len() && j < new.len() {
        match old[i].key.cmp(&new[j].key) {
            std::cmp::Ordering::Less => {
                gone.push(old[i].clone());
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                added.push(new[j].clone());
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                // Same key, other verdict: a map element moves to another chain.
                if old[i].verdict != new[j].verdict {
                    gone.push(old[i].clone());
                    added.push(new[j].clone());
                }
                i += 1;
                j += 1;
            }
        }
    }
    gone.extend(old[i..].iter().cloned());
    added.extend(new[j..].iter().cloned());
    (gone, added)
}

/// Sends `tx` (one batch). Netlink calls block: call from a blocking context.
pub fn commit(tx: &Transaction) -> Result<(), NftError> {
    if tx.is_empty() {
        return Ok(());
    }
    tx.commit()
}

/// Sends `tx` on the applier's long-lived socket, opening it first if needed; after an
/// error the socket is dropped so the next attempt starts clean.
pub fn commit_on(tx: &Transaction, session: &mut Option<Session>) -> Result<(), NftError> {
    if tx.is_empty() {
        return Ok(());
    }
    let s = match session.take() {
        Some(s) => s,
        None => Session::open()?,
    };
    tx.commit_on(&s)?;
    *session = Some(s);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::element_diff;
    use twill_net::nft::{KeyPart, SetElem, Verdict};

    fn e(last: u8, verdict: Option<&str>) -> SetElem {
        SetElem {
            key: vec![KeyPart::Addr(std::net::IpAddr::from([10, 0, 0, last]))],
            verdict: verdict.map(|c| Verdict::Jump(c.into())),
        }
    }

    #[test]
    fn element_diff_merges_sorted_and_hashes_unsorted() {
        let old = vec![e(1, None), e(2, None), e(4, None)];
        let new = vec![e(2, None), e(3, None), e(4, None), e(5, None)];
        let (gone, added) = element_diff(&old, &new);
        assert_eq!(gone, vec![e(1, None)]);
        assert_eq!(added, vec![e(3, None), e(5, None)]);
        let unsorted_old = vec![e(4, None), e(1, None), e(2, None)];
        let (gone2, mut added2) = element_diff(&unsorted_old, &new);
        added2.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!((gone2, added2), (gone, added));
        // A map element whose verdict changes is deleted and added again.
        let (gone, added) = element_diff(&[e(1, Some("ns-in/a"))], &[e(1, Some("ns-in/b"))]);
        assert_eq!(gone, vec![e(1, Some("ns-in/a"))]);
        assert_eq!(added, vec![e(1, Some("ns-in/b"))]);
    }
}
