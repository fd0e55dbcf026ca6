//! Transactions: an ordered list of operations applied atomically, or not at all.
//!
//! A [`Transaction`] is plain data until [`Transaction::commit`]: compilers return one, golden
//! tests compare its text (one `nft -f` script line per operation, the format of the
//! reference plugins' `knftables` fake), and the applier sends it as one nfnetlink batch.
//! Every operation gets its own acknowledgement, so a kernel error names the exact object that
//! failed (`add rule to chain twill_portmap/hostports: no such file or directory`). When any
//! operation fails the kernel aborts the whole batch: nothing of it is applied.

use super::NftError;
use super::expr::lower;
use super::model::{BaseChain, Family, Rule};
use super::sock::{self, NfSocket};
use super::wire::{self, RuleSpec, WireMsg};
use std::fmt;

/// A table: family and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableRef {
    pub family: Family,
    pub name: String,
}

impl TableRef {
    pub fn new(family: Family, name: &str) -> TableRef {
        TableRef {
            family,
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.family, self.name)
    }
}

/// What an operation does, for callers that react to a particular failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    AddTable,
    DeleteTable,
    AddChain,
    FlushChain,
    DeleteChain,
    AddRule,
    DeleteRule,
    /// The batch as a whole (e.g. the final commit).
    Batch,
}

/// One operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Creates the table if missing.
    AddTable(TableRef),
    DeleteTable(TableRef),
    /// Creates the chain if missing (a base chain must then have the same hook and type).
    AddChain {
        table: TableRef,
        chain: String,
        base: Option<BaseChain>,
    },
    /// Removes every rule of the chain.
    FlushChain {
        table: TableRef,
        chain: String,
    },
    /// Removes an empty chain that nothing jumps to.
    DeleteChain {
        table: TableRef,
        chain: String,
    },
    /// Appends a rule.
    AddRule {
        table: TableRef,
        chain: String,
        rule: Rule,
    },
    DeleteRule {
        table: TableRef,
        chain: String,
        handle: u64,
    },
}

impl Op {
    pub fn kind(&self) -> OpKind {
        match self {
            Op::AddTable(_) => OpKind::AddTable,
            Op::DeleteTable(_) => OpKind::DeleteTable,
            Op::AddChain { .. } => OpKind::AddChain,
            Op::FlushChain { .. } => OpKind::FlushChain,
            Op::DeleteChain { .. } => OpKind::DeleteChain,
            Op::AddRule { .. } => OpKind::AddRule,
            Op::DeleteRule { .. } => OpKind::DeleteRule,
        }
    }

    /// Names the operation and its object, for error messages.
    pub fn describe(&self) -> String {
        match self {
            Op::AddTable(t) => format!("add table {t}"),
            Op::DeleteTable(t) => format!("delete table {t}"),
            Op::AddChain { table, chain, .. } => format!("add chain {}/{chain}", table.name),
            Op::FlushChain { table, chain } => format!("flush chain {}/{chain}", table.name),
            Op::DeleteChain { table, chain } => format!("delete chain {}/{chain}", table.name),
            Op::AddRule { table, chain, .. } => {
                format!("add rule to chain {}/{chain}", table.name)
            }
            Op::DeleteRule {
                table,
                chain,
                handle,
            } => format!("delete rule {handle} from chain {}/{chain}", table.name),
        }
    }

    fn encode(&self) -> Result<WireMsg, String> {
        use wire::{NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE};
        match self {
            Op::AddTable(t) => wire::table_msg(
                wire::NFT_MSG_NEWTABLE,
                NLM_F_CREATE | NLM_F_ACK,
                t.family.nfproto(),
                &t.name,
            ),
            Op::DeleteTable(t) => wire::table_msg(
                wire::NFT_MSG_DELTABLE,
                NLM_F_ACK,
                t.family.nfproto(),
                &t.name,
            ),
            Op::AddChain { table, chain, base } => wire::chain_msg(
                wire::NFT_MSG_NEWCHAIN,
                NLM_F_CREATE | NLM_F_ACK,
                table.family.nfproto(),
                (&table.name, chain),
                base.as_ref(),
            ),
            Op::DeleteChain { table, chain } => wire::chain_msg(
                wire::NFT_MSG_DELCHAIN,
                NLM_F_ACK,
                table.family.nfproto(),
                (&table.name, chain),
                None,
            ),
            Op::FlushChain { table, chain } => wire::rule_msg(
                wire::NFT_MSG_DELRULE,
                NLM_F_ACK,
                &RuleSpec {
                    family: table.family.nfproto(),
                    table: &table.name,
                    chain: Some(chain),
                    handle: None,
                    exprs: &[],
                    comment: None,
                },
            ),
            Op::AddRule { table, chain, rule } => {
                let exprs = lower(table.family, rule).map_err(|e| e.0)?;
                if exprs.is_empty() {
                    return Err("a rule needs at least one statement".to_owned());
                }
                wire::rule_msg(
                    wire::NFT_MSG_NEWRULE,
                    NLM_F_CREATE | NLM_F_APPEND | NLM_F_ACK,
                    &RuleSpec {
                        family: table.family.nfproto(),
                        table: &table.name,
                        chain: Some(chain),
                        handle: None,
                        exprs: &exprs,
                        comment: rule.comment.as_deref(),
                    },
                )
            }
            Op::DeleteRule {
                table,
                chain,
                handle,
            } => wire::rule_msg(
                wire::NFT_MSG_DELRULE,
                NLM_F_ACK,
                &RuleSpec {
                    family: table.family.nfproto(),
                    table: &table.name,
                    chain: Some(chain),
                    handle: Some(*handle),
                    exprs: &[],
                    comment: None,
                },
            ),
        }
    }
}

impl fmt::Display for Op {
    /// The operation as an `nft -f` script line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::AddTable(t) => write!(f, "add table {t}"),
            Op::DeleteTable(t) => write!(f, "delete table {t}"),
            Op::AddChain { table, chain, base } => {
                write!(f, "add chain {table} {chain}")?;
                if let Some(b) = base {
                    write!(
                        f,
                        " {{ type {} hook {} priority {}; policy {}; }}",
                        b.chain_type.as_str(),
                        b.hook.as_str(),
                        b.priority,
                        match b.policy {
                            super::model::Policy::Accept => "accept",
                            super::model::Policy::Drop => "drop",
                        }
                    )?;
                }
                Ok(())
            }
            Op::FlushChain { table, chain } => write!(f, "flush chain {table} {chain}"),
            Op::DeleteChain { table, chain } => write!(f, "delete chain {table} {chain}"),
            Op::AddRule { table, chain, rule } => {
                write!(f, "add rule {table} {chain} {}", rule.render(table.family))
            }
            Op::DeleteRule {
                table,
                chain,
                handle,
            } => write!(f, "delete rule {table} {chain} handle {handle}"),
        }
    }
}

/// Operations applied together by [`Transaction::commit`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transaction {
    pub ops: Vec<Op>,
}

impl Transaction {
    pub fn new() -> Transaction {
        Transaction::default()
    }

    // SHIM
    pub fn add_set(&mut self, _t: &TableRef, _s: &super::Set) -> &mut Self { self }
    pub fn delete_set(&mut self, _t: &TableRef, _n: &str) -> &mut Self { self }
    pub fn flush_set(&mut self, _t: &TableRef, _n: &str) -> &mut Self { self }
    pub fn add_elements(&mut self, _t: &TableRef, _n: &str, _e: &[super::SetElem]) -> &mut Self { self }
    pub fn delete_elements(&mut self, _t: &TableRef, _n: &str, _e: &[super::SetElem]) -> &mut Self { self }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn add_table(&mut self, t: &TableRef) -> &mut Self {
        self.ops.push(Op::AddTable(t.clone()));
        self
    }

    pub fn delete_table(&mut self, t: &TableRef) -> &mut Self {
        self.ops.push(Op::DeleteTable(t.clone()));
        self
    }

    /// Adds a regular chain (`base: None`) or a base chain.
    pub fn add_chain(&mut self, t: &TableRef, chain: &str, base: Option<BaseChain>) -> &mut Self {
        self.ops.push(Op::AddChain {
            table: t.clone(),
            chain: chain.to_owned(),
            base,
        });
        self
    }

    pub fn flush_chain(&mut self, t: &TableRef, chain: &str) -> &mut Self {
        self.ops.push(Op::FlushChain {
            table: t.clone(),
            chain: chain.to_owned(),
        });
        self
    }

    pub fn delete_chain(&mut self, t: &TableRef, chain: &str) -> &mut Self {
        self.ops.push(Op::DeleteChain {
            table: t.clone(),
            chain: chain.to_owned(),
        });
        self
    }

    pub fn add_rule(&mut self, t: &TableRef, chain: &str, rule: Rule) -> &mut Self {
        self.ops.push(Op::AddRule {
            table: t.clone(),
            chain: chain.to_owned(),
            rule,
        });
        self
    }

    pub fn delete_rule(&mut self, t: &TableRef, chain: &str, handle: u64) -> &mut Self {
        self.ops.push(Op::DeleteRule {
            table: t.clone(),
            chain: chain.to_owned(),
            handle,
        });
        self
    }

    /// Appends the operations of `other`.
    pub fn extend(&mut self, other: Transaction) -> &mut Self {
        self.ops.extend(other.ops);
        self
    }

    /// Checks every operation can be encoded (names, comments, statements per family)
    /// without touching the kernel.
    pub fn validate(&self) -> Result<(), NftError> {
        self.encode().map(|_| ())
    }

    fn encode(&self) -> Result<Vec<WireMsg>, NftError> {
        self.ops
            .iter()
            .map(|op| {
                op.encode().map_err(|reason| NftError::Invalid {
                    what: op.describe(),
                    reason,
                })
            })
            .collect()
    }

    /// Applies all operations in one atomic batch in the caller's network namespace.
    pub fn commit(&self) -> Result<(), NftError> {
        if self.ops.is_empty() {
            return Ok(());
        }
        let msgs = self.encode()?;
        let mut batch = nftnl::Batch::new();
        for m in &msgs {
            batch.add(m, nftnl::MsgType::Add);
        }
        let batch = batch.finalize();
        let seqs = batch.sequence_numbers();
        let n = msgs.len() as u32;
        // Kernels from 6.10 acknowledge the batch begin and end messages too; those take
        // the first and last sequence numbers.
        let first = if seqs.end - seqs.start == n + 2 {
            seqs.start + 1
        } else {
            seqs.start
        };
        let bytes: Vec<u8> = batch.iter().flatten().copied().collect();
        let what = "apply nftables transaction";
        let sock = NfSocket::open()?;
        sock.reserve(bytes.len(), msgs.len() + 2);
        sock.send(&bytes, what)?;
        let datagrams = sock.drain(what)?;
        let outcome = collect_acks(&datagrams, first, n).map_err(|reason| NftError::Protocol {
            what: what.to_owned(),
            reason,
        })?;
        if let Some((idx, errno)) = outcome.first_error {
            let op = &self.ops[idx];
            return Err(NftError::Rejected {
                op: op.describe(),
                kind: op.kind(),
                errno,
            });
        }
        if let Some(errno) = outcome.batch_error {
            return Err(NftError::Rejected {
                op: "commit nftables transaction".to_owned(),
                kind: OpKind::Batch,
                errno,
            });
        }
        if let Some(idx) = outcome.unacked {
            return Err(NftError::Protocol {
                what: what.to_owned(),
                reason: format!("no acknowledgement for {}", self.ops[idx].describe()),
            });
        }
        Ok(())
    }
}

impl fmt::Display for Transaction {
    /// The transaction as an `nft -f` script, one operation per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for op in &self.ops {
            writeln!(f, "{op}")?;
        }
        Ok(())
    }
}

/// What the kernel answered to a batch of `n` operations numbered from `first`.
#[derive(Debug, Default, PartialEq, Eq)]
struct AckOutcome {
    /// The failed operation with the lowest index and its errno.
    first_error: Option<(usize, i32)>,
    /// An error not tied to one operation (e.g. reported on the batch begin message).
    batch_error: Option<i32>,
    /// An operation without any reply.
    unacked: Option<usize>,
}

fn collect_acks(datagrams: &[Vec<u8>], first: u32, n: u32) -> Result<AckOutcome, String> {
    let mut acked = vec![false; n as usize];
    let mut out = AckOutcome::default();
    for d in datagrams {
        for m in sock::split(d)? {
            if m.ty != sock::NLMSG_ERROR {
                continue;
            }
            let errno = m.errno().ok_or("short error message")?;
            if m.seq >= first && m.seq < first + n {
                let idx = (m.seq - first) as usize;
                acked[idx] = true;
                if errno != 0 && out.first_error.is_none_or(|(i, _)| idx < i) {
                    out.first_error = Some((idx, errno));
                }
            } else if errno != 0 && out.batch_error.is_none() {
                out.batch_error = Some(errno);
            }
        }
    }
    out.unacked = acked.iter().position(|a| !a);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::model::{ChainType, Hook, Stmt, Verdict};

    fn err(seq: u32, errno: i32) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&36u32.to_ne_bytes());
        v.extend_from_slice(&2u16.to_ne_bytes());
        v.extend_from_slice(&0u16.to_ne_bytes());
        v.extend_from_slice(&seq.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        v.extend_from_slice(&(-errno).to_ne_bytes());
        v.extend_from_slice(&[0u8; 16]);
        v
    }

    #[test]
    fn acks_map_errors_to_operations() {
        let d = vec![[err(1, 0), err(2, 0), err(3, 2), err(4, 0), err(5, 0)].concat()];
        let o = collect_acks(&d, 2, 3).unwrap();
        assert_eq!(o.first_error, Some((1, 2)));
        assert_eq!((o.batch_error, o.unacked), (None, None));
        let o = collect_acks(&[err(1, 1)], 2, 2).unwrap();
        assert_eq!((o.batch_error, o.unacked), (Some(1), Some(0)));
    }

    #[test]
    fn script_text() {
        let t = TableRef::new(Family::Ip, "t");
        let mut tx = Transaction::new();
        tx.add_table(&t)
            .add_chain(&t, "hostports", None)
            .add_chain(
                &t,
                "prerouting",
                Some(BaseChain::new(ChainType::Nat, Hook::Prerouting, -100)),
            )
            .flush_chain(&t, "prerouting")
            .add_rule(
                &t,
                "prerouting",
                Rule::new(vec![
                    Stmt::FibDaddrLocal,
                    Stmt::Verdict(Verdict::Jump("hostports".into())),
                ]),
            )
            .delete_rule(&t, "hostports", 4);
        assert_eq!(
            tx.to_string(),
            "add table ip t\n\
             add chain ip t hostports\n\
             add chain ip t prerouting { type nat hook prerouting priority -100; policy accept; }\n\
             flush chain ip t prerouting\n\
             add rule ip t prerouting fib daddr type local jump hostports\n\
             delete rule ip t hostports handle 4\n"
        );
        tx.validate().unwrap();
        assert_eq!(tx.ops[4].describe(), "add rule to chain t/prerouting");
    }

    #[test]
    fn invalid_operations_fail_before_the_kernel() {
        let t = TableRef::new(Family::Ip, "t");
        let mut tx = Transaction::new();
        tx.add_rule(
            &t,
            "c",
            Rule::new(vec![Stmt::Masquerade]).with_comment(&"x".repeat(200)),
        );
        let e = tx.validate().unwrap_err();
        assert!(
            e.to_string().starts_with("add rule to chain t/c: comment"),
            "{e}"
        );
        let mut tx = Transaction::new();
        tx.add_chain(&t, "a\0b", None);
        assert!(tx.validate().is_err());
    }
}
