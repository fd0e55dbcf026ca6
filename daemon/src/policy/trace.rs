//! A packet tracer over a compiled table: which base chains, rules, sets and maps a packet
//! meets, and the verdict. Pure: it reads the typed [`Table`] the compiler produced (or the
//! one read back from the kernel), never the kernel itself.
//!
//! It exists so `netctl policy explain` can name the nftables objects behind a verdict and
//! so tests can check the compiled ruleset against [`super::semantics`] for every case of
//! the upstream suite, SCTP included, without a kernel. It implements exactly the
//! statements the compiler emits; anything else is an error, not a guess.

use std::net::IpAddr;
use twill_net::nft::{
    AddrField, Chain, CmpOp, CtState, Field, Hook, KeyPart, PortField, Rule, Set, Stmt, Table,
    Verdict,
};

/// What the tracer needs to know of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number.
    pub proto: u8,
    pub dport: u16,
    pub ct: CtState,
}

/// One rule that matched on the way.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Step {
    pub chain: String,
    /// Position in the chain, from 0.
    pub rule: usize,
    /// The rule as `nft` prints it.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Trace {
    pub accepted: bool,
    pub steps: Vec<Step>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TraceError {
    #[error("chain {0} does not exist")]
    NoChain(String),
    #[error("set {0} does not exist")]
    NoSet(String),
    #[error("cannot trace statement {0}")]
    Unsupported(String),
    #[error("jumps nest deeper than 16 chains at {0}")]
    TooDeep(String),
}

enum Outcome {
    /// Fell off the end of the chain or hit `return`.
    Continue,
    Accept,
    Drop,
}

/// Traces `pkt` through every base chain of `table` on `hook`, in priority order, as the
/// kernel does: `drop` ends it, `accept` passes it to the next base chain.
pub fn trace(table: &Table, hook: Hook, pkt: &Packet) -> Result<Trace, TraceError> {
    let mut bases: Vec<&Chain> = table
        .chains
        .iter()
        .filter(|c| c.base.as_ref().is_some_and(|b| b.hook == hook))
        .collect();
    bases.sort_by_key(|c| c.base.as_ref().map(|b| b.priority));
    let t = Tracer { table };
    let mut steps = Vec::new();
    for c in bases {
        match t.chain(c, pkt, &mut steps, 0)? {
            Outcome::Drop => {
                return Ok(Trace {
                    accepted: false,
                    steps,
                });
            }
            Outcome::Accept | Outcome::Continue => {}
        }
    }
    Ok(Trace {
        accepted: true,
        steps,
    })
}

struct Tracer<'a> {
    table: &'a Table,
}

impl Tracer<'_> {
    fn find_chain(&self, name: &str) -> Result<&Chain, TraceError> {
        self.table
            .chains
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| TraceError::NoChain(name.to_owned()))
    }

    fn find_set(&self, name: &str) -> Result<&Set, TraceError> {
        self.table
            .sets
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| TraceError::NoSet(name.to_owned()))
    }

    fn chain(
        &self,
        c: &Chain,
        pkt: &Packet,
        steps: &mut Vec<Step>,
        depth: usize,
    ) -> Result<Outcome, TraceError> {
        if depth > 16 {
            return Err(TraceError::TooDeep(c.name.clone()));
        }
        for (i, r) in c.rules.iter().enumerate() {
            let mut step = || {
                steps.push(Step {
                    chain: c.name.clone(),
                    rule: i,
                    text: r.render(self.table.family),
                })
            };
            match self.rule(r, pkt)? {
                None => continue,
                Some(v) => {
                    step();
                    match v {
                        Verdict::Accept => return Ok(Outcome::Accept),
                        Verdict::Drop => return Ok(Outcome::Drop),
                        Verdict::Continue => continue,
                        Verdict::Return => return Ok(Outcome::Continue),
                        Verdict::Jump(n) => {
                            let callee = self.find_chain(&n)?;
                            match self.chain(callee, pkt, steps, depth + 1)? {
                                Outcome::Continue => continue,
                                other => return Ok(other),
                            }
                        }
                        Verdict::Goto(n) => {
                            let callee = self.find_chain(&n)?;
                            return self.chain(callee, pkt, steps, depth + 1);
                        }
                    }
                }
            }
        }
        Ok(Outcome::Continue)
    }

    /// The verdict a rule reaches, `None` when it does not match (or has no verdict).
    fn rule(&self, r: &Rule, pkt: &Packet) -> Result<Option<Verdict>, TraceError> {
        for s in &r.stmts {
            match s {
                Stmt::Verdict(v) => return Ok(Some(v.clone())),
                Stmt::Counter { .. } | Stmt::Log { .. } | Stmt::Limit { .. } => {}
                Stmt::Vmap { fields, map } => {
                    let Some(key) = key_of(fields, pkt) else {
                        return Ok(None);
                    };
                    let m = self.find_set(map)?;
                    return Ok(m
                        .elements
                        .iter()
                        .find(|e| e.key == key)
                        .and_then(|e| e.verdict.clone()));
                }
                other => {
                    if !self.matches(other, pkt)? {
                        return Ok(None);
                    }
                }
            }
        }
        Ok(None)
    }

    fn matches(&self, s: &Stmt, pkt: &Packet) -> Result<bool, TraceError> {
        let cmp = |op: &CmpOp, b: bool| match op {
            CmpOp::Eq => b,
            CmpOp::Neq => !b,
        };
        Ok(match s {
            Stmt::Ip { field, op, net } => {
                let a = match field {
                    AddrField::Saddr => pkt.src,
                    AddrField::Daddr => pkt.dst,
                };
                // A match of the other family is not met (nft adds `meta nfproto`).
                a.is_ipv4() == net.is_ipv4() && cmp(op, net.contains(a))
            }
            Stmt::L4Proto(p) => pkt.proto == p.number(),
            Stmt::Port {
                proto,
                field: PortField::Dport,
                op,
                port,
            } => pkt.proto == proto.number() && cmp(op, pkt.dport == *port),
            Stmt::PortRange {
                proto,
                field: PortField::Dport,
                lo,
                hi,
            } => pkt.proto == proto.number() && (*lo..=*hi).contains(&pkt.dport),
            Stmt::CtState(states) => states.contains(&pkt.ct),
            Stmt::Lookup {
                fields,
                set,
                negate,
            } => {
                let Some(key) = key_of(fields, pkt) else {
                    return Ok(false);
                };
                let found = self.find_set(set)?.elements.iter().any(|e| e.key == key);
                found != *negate
            }
            other => return Err(TraceError::Unsupported(format!("{other:?}"))),
        })
    }
}

/// The lookup key a packet yields, `None` when a field does not apply (wrong family).
fn key_of(fields: &[Field], pkt: &Packet) -> Option<Vec<KeyPart>> {
    fields
        .iter()
        .map(|f| match f {
            Field::IpSaddr => pkt.src.is_ipv4().then_some(KeyPart::Addr(pkt.src)),
            Field::IpDaddr => pkt.dst.is_ipv4().then_some(KeyPart::Addr(pkt.dst)),
            Field::Ip6Saddr => pkt.src.is_ipv6().then_some(KeyPart::Addr(pkt.src)),
            Field::Ip6Daddr => pkt.dst.is_ipv6().then_some(KeyPart::Addr(pkt.dst)),
            Field::L4Proto => Some(KeyPart::Proto(pkt.proto)),
            Field::ThDport => Some(KeyPart::Port(pkt.dport)),
        })
        .collect()
}
