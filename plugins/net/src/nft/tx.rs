//! Transactions: an ordered list of operations applied atomically, or not at all.
//!
//! A [`Transaction`] is plain data until [`Transaction::commit`]: compilers return one, golden
//! tests compare its text (one `nft -f` script line per operation, the format of the
//! reference plugins' `knftables` fake), and the applier sends it as one nfnetlink batch.
//! When any operation fails the kernel aborts the whole batch: nothing of it is applied.
//!
//! Errors name the object. The kernel answers each failed message with an error carrying the
//! message's sequence number, so a failure maps back to its operation (`add rule to chain
//! twill_portmap/hostports: no such file or directory`, `add element to set
//! twill_policy/foo: ...`). We do not request an acknowledgement per message (see `sock.rs`
//! for why): a batch that gets no error back was applied, and on kernels from 6.10 the
//! acknowledgement of the batch end message confirms the kernel read all of it.
//!
//! Size. One operation can become several messages: the elements of a set are split over
//! as many `NEWSETELEM`/`DELSETELEM` messages as needed to keep each element list under the
//! 64 KiB a netlink attribute can hold, as nft does. A policy engine's batch of 5,000 sets,
//! 10,000 rules and 100,000 elements is one `sendto` of a few megabytes; the socket's send
//! buffer is raised to fit it.
//!
//! Ordering rules. The kernel applies a batch in order and checks references as it goes,
//! so operations must be ordered like this:
//! - create before use: the table before its chains and sets; a chain before the rules and
//!   the map elements that jump or go to it; a set before the rules that look it up and
//!   before its elements;
//! - drop references before the referenced object: delete (or flush) the rules that look up
//!   a set before deleting the set; delete the map elements (or flush or delete the map) and
//!   the rules that jump to a chain before deleting the chain, else the kernel refuses with
//!   `EBUSY` (`delete chain t/c: device or resource busy`). [`Transaction::validate`] (and so
//!   `commit`) refuses a transaction that deletes a chain before an element deletion, given
//!   with its verdict, of a map element that jumps to it;
//! - a chain's own rules need not be deleted first: on current kernels deleting the chain
//!   removes them;
//! - changing a map element's verdict is deleting the element and adding it again, in that
//!   order, in one transaction: adding an existing key with another verdict is refused
//!   (`EEXIST`).
//!
//! Adding an element that exists unchanged, or a set or chain that exists with the same type,
//! is not an error; deleting an element that does not exist is (`ENOENT`, a stale delete).

use super::NftError;
use super::expr::lower;
use super::model::{BaseChain, Family, Rule, Set, SetElem, Verdict};
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
    AddSet,
    DeleteSet,
    FlushSet,
    AddElements,
    DeleteElements,
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
    /// Removes a chain (and its rules) that nothing jumps to.
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
    /// Creates the set or map if missing (an existing one must have the same type); its
    /// `elements` are not part of this operation ([`Transaction::add_set`] adds them with a
    /// following [`Op::AddElements`]).
    AddSet {
        table: TableRef,
        set: Set,
    },
    /// Removes a set or map that no rule refers to.
    DeleteSet {
        table: TableRef,
        set: String,
    },
    /// Removes every element; `map` only chooses the script keyword (`flush map`).
    FlushSet {
        table: TableRef,
        set: String,
        map: bool,
    },
    /// Adds elements (existing identical ones are kept).
    AddElements {
        table: TableRef,
        set: String,
        elems: Vec<SetElem>,
    },
    /// Removes elements by key (verdicts are not sent).
    DeleteElements {
        table: TableRef,
        set: String,
        elems: Vec<SetElem>,
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
            Op::AddSet { .. } => OpKind::AddSet,
            Op::DeleteSet { .. } => OpKind::DeleteSet,
            Op::FlushSet { .. } => OpKind::FlushSet,
            Op::AddElements { .. } => OpKind::AddElements,
            Op::DeleteElements { .. } => OpKind::DeleteElements,
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
            Op::AddSet { table, set } => {
                format!("add {} {}/{}", set.keyword(), table.name, set.name)
            }
            Op::DeleteSet { table, set } => format!("delete set {}/{set}", table.name),
            Op::FlushSet { table, set, .. } => format!("flush set {}/{set}", table.name),
            Op::AddElements { table, set, .. } => {
                format!("add element to set {}/{set}", table.name)
            }
            Op::DeleteElements { table, set, .. } => {
                format!("delete element from set {}/{set}", table.name)
            }
        }
    }

    /// The messages of this operation (several for a long element list); `index` is the
    /// operation's position in its transaction.
    fn encode(&self, index: usize) -> Result<Vec<WireMsg>, String> {
        use wire::{NLM_F_APPEND, NLM_F_CREATE};
        let one = |m: Result<WireMsg, String>| m.map(|m| vec![m]);
        match self {
            Op::AddTable(t) => one(wire::table_msg(
                wire::NFT_MSG_NEWTABLE,
                NLM_F_CREATE,
                t.family.nfproto(),
                &t.name,
            )),
            Op::DeleteTable(t) => one(wire::table_msg(
                wire::NFT_MSG_DELTABLE,
                0,
                t.family.nfproto(),
                &t.name,
            )),
            Op::AddChain { table, chain, base } => one(wire::chain_msg(
                wire::NFT_MSG_NEWCHAIN,
                NLM_F_CREATE,
                table.family.nfproto(),
                (&table.name, chain),
                base.as_ref(),
            )),
            Op::DeleteChain { table, chain } => one(wire::chain_msg(
                wire::NFT_MSG_DELCHAIN,
                0,
                table.family.nfproto(),
                (&table.name, chain),
                None,
            )),
            Op::FlushChain { table, chain } => one(wire::rule_msg(
                wire::NFT_MSG_DELRULE,
                0,
                &RuleSpec {
                    family: table.family.nfproto(),
                    table: &table.name,
                    chain: Some(chain),
                    handle: None,
                    exprs: &[],
                    comment: None,
                },
            )),
            Op::AddRule { table, chain, rule } => {
                let exprs = lower(table.family, rule).map_err(|e| e.0)?;
                if exprs.is_empty() {
                    return Err("a rule needs at least one statement".to_owned());
                }
                one(wire::rule_msg(
                    wire::NFT_MSG_NEWRULE,
                    NLM_F_CREATE | NLM_F_APPEND,
                    &RuleSpec {
                        family: table.family.nfproto(),
                        table: &table.name,
                        chain: Some(chain),
                        handle: None,
                        exprs: &exprs,
                        comment: rule.comment.as_deref(),
                    },
                ))
            }
            Op::DeleteRule {
                table,
                chain,
                handle,
            } => one(wire::rule_msg(
                wire::NFT_MSG_DELRULE,
                0,
                &RuleSpec {
                    family: table.family.nfproto(),
                    table: &table.name,
                    chain: Some(chain),
                    handle: Some(*handle),
                    exprs: &[],
                    comment: None,
                },
            )),
            Op::AddSet { table, set } => one(wire::set_msg(
                wire::NFT_MSG_NEWSET,
                NLM_F_CREATE,
                table.family.nfproto(),
                (&table.name, &set.name),
                Some((set, u32::try_from(index + 1).unwrap_or(u32::MAX))),
            )),
            Op::DeleteSet { table, set } => one(wire::set_msg(
                wire::NFT_MSG_DELSET,
                0,
                table.family.nfproto(),
                (&table.name, set),
                None,
            )),
            Op::FlushSet { table, set, .. } => wire::elems_msgs(
                wire::NFT_MSG_DELSETELEM,
                0,
                table.family.nfproto(),
                (&table.name, set),
                &[],
                false,
            ),
            Op::AddElements { table, set, elems } => {
                if elems.is_empty() {
                    return Err("no elements".to_owned());
                }
                wire::elems_msgs(
                    wire::NFT_MSG_NEWSETELEM,
                    NLM_F_CREATE,
                    table.family.nfproto(),
                    (&table.name, set),
                    elems,
                    true,
                )
            }
            Op::DeleteElements { table, set, elems } => {
                if elems.is_empty() {
                    return Err("no elements".to_owned());
                }
                wire::elems_msgs(
                    wire::NFT_MSG_DELSETELEM,
                    0,
                    table.family.nfproto(),
                    (&table.name, set),
                    elems,
                    false,
                )
            }
        }
    }
}

/// `{ a, b }` as in an `nft -f` element statement.
fn elems_text(elems: &[SetElem], with_verdicts: bool) -> String {
    let items: Vec<String> = elems
        .iter()
        .map(|e| {
            if with_verdicts {
                e.to_string()
            } else {
                SetElem::key(e.key.clone()).to_string()
            }
        })
        .collect();
    format!("{{ {} }}", items.join(", "))
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
            Op::AddSet { table, set } => {
                write!(
                    f,
                    "add {} {table} {} {{ type {};",
                    set.keyword(),
                    set.name,
                    set.type_text()
                )?;
                if let Some(c) = &set.comment {
                    write!(f, " comment \"{c}\";")?;
                }
                write!(f, " }}")
            }
            Op::DeleteSet { table, set } => write!(f, "delete set {table} {set}"),
            Op::FlushSet { table, set, map } => {
                let kw = if *map { "map" } else { "set" };
                write!(f, "flush {kw} {table} {set}")
            }
            Op::AddElements { table, set, elems } => {
                write!(f, "add element {table} {set} {}", elems_text(elems, true))
            }
            Op::DeleteElements { table, set, elems } => {
                write!(
                    f,
                    "delete element {table} {set} {}",
                    elems_text(elems, false)
                )
            }
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

    /// Creates the set or verdict map, then adds its elements if it has any.
    pub fn add_set(&mut self, t: &TableRef, set: &Set) -> &mut Self {
        self.ops.push(Op::AddSet {
            table: t.clone(),
            set: Set {
                elements: Vec::new(),
                ..set.clone()
            },
        });
        self.add_elements(t, &set.name, &set.elements)
    }

    /// Deletes a set or map; the rules that refer to it must be gone first.
    pub fn delete_set(&mut self, t: &TableRef, name: &str) -> &mut Self {
        self.ops.push(Op::DeleteSet {
            table: t.clone(),
            set: name.to_owned(),
        });
        self
    }

    /// Removes all elements of a set (or of a map this transaction added; see
    /// [`Transaction::flush_map`]).
    pub fn flush_set(&mut self, t: &TableRef, name: &str) -> &mut Self {
        let map = self.ops.iter().any(|op| {
            matches!(op, Op::AddSet { table, set } if table == t && set.name == name && set.vmap)
        });
        self.ops.push(Op::FlushSet {
            table: t.clone(),
            set: name.to_owned(),
            map,
        });
        self
    }

    /// Removes all elements of a verdict map. The kernel message is that of
    /// [`Transaction::flush_set`]; only the script differs, as `nft` refuses `flush set` on a
    /// map.
    pub fn flush_map(&mut self, t: &TableRef, name: &str) -> &mut Self {
        self.ops.push(Op::FlushSet {
            table: t.clone(),
            set: name.to_owned(),
            map: true,
        });
        self
    }

    /// Adds elements to a set or map; nothing when `elems` is empty.
    pub fn add_elements(&mut self, t: &TableRef, set: &str, elems: &[SetElem]) -> &mut Self {
        if !elems.is_empty() {
            self.ops.push(Op::AddElements {
                table: t.clone(),
                set: set.to_owned(),
                elems: elems.to_vec(),
            });
        }
        self
    }

    /// Deletes elements by key; nothing when `elems` is empty.
    pub fn delete_elements(&mut self, t: &TableRef, set: &str, elems: &[SetElem]) -> &mut Self {
        if !elems.is_empty() {
            self.ops.push(Op::DeleteElements {
                table: t.clone(),
                set: set.to_owned(),
                elems: elems.to_vec(),
            });
        }
        self
    }

    /// Appends the operations of `other`.
    pub fn extend(&mut self, other: Transaction) -> &mut Self {
        self.ops.extend(other.ops);
        self
    }

    /// Checks every operation can be encoded (names, comments, statements per family,
    /// elements against the sets this transaction declares) and that no chain is deleted
    /// before a map element that jumps to it, without touching the kernel.
    pub fn validate(&self) -> Result<(), NftError> {
        self.check().and_then(|()| self.encode().map(|_| ()))
    }

    /// The checks of [`Transaction::validate`] that need more than one operation; linear in
    /// the number of operations, as a policy batch has tens of thousands.
    fn check(&self) -> Result<(), NftError> {
        use std::collections::HashMap;
        // Elements of a set declared earlier in this transaction must fit it.
        let mut declared: HashMap<(&TableRef, &str), &Set> = HashMap::new();
        for op in &self.ops {
            match op {
                Op::AddSet { table, set } => {
                    declared.insert((table, set.name.as_str()), set);
                }
                Op::AddElements { table, set, elems } => {
                    let Some(decl) = declared.get(&(table, set.as_str())) else {
                        continue;
                    };
                    for e in elems {
                        decl.check_elem(e).map_err(|reason| NftError::Invalid {
                            what: op.describe(),
                            reason,
                        })?;
                    }
                }
                _ => {}
            }
        }
        // A chain must not be deleted before the deletion of a map element jumping to it:
        // walking backwards, remember the first later deletion per target chain.
        let mut later: HashMap<(&TableRef, &str), (&Op, &SetElem)> = HashMap::new();
        for op in self.ops.iter().rev() {
            match op {
                Op::DeleteElements { table, elems, .. } => {
                    for e in elems {
                        if let Some(Verdict::Jump(c) | Verdict::Goto(c)) = &e.verdict {
                            later.insert((table, c.as_str()), (op, e));
                        }
                    }
                }
                Op::DeleteChain { table, chain } => {
                    if let Some((del, e)) = later.get(&(table, chain.as_str())) {
                        return Err(NftError::Invalid {
                            what: op.describe(),
                            reason: format!(
                                "must come after {}, whose element {e} refers to the chain",
                                del.describe()
                            ),
                        });
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The messages of all operations, each with the index of its operation.
    fn encode(&self) -> Result<Vec<(usize, WireMsg)>, NftError> {
        let mut out = Vec::with_capacity(self.ops.len());
        for (i, op) in self.ops.iter().enumerate() {
            let msgs = op.encode(i).map_err(|reason| NftError::Invalid {
                what: op.describe(),
                reason,
            })?;
            out.extend(msgs.into_iter().map(|m| (i, m)));
        }
        Ok(out)
    }

    /// Applies all operations in one atomic batch in the caller's network namespace.
    pub fn commit(&self) -> Result<(), NftError> {
        if self.ops.is_empty() {
            return Ok(());
        }
        self.commit_on(&Session::open()?)
    }

    /// Like [`Transaction::commit`], on a socket kept open across transactions (in the
    /// namespace the session was opened in). A long-running applier uses one: closing a
    /// netfilter socket after a transaction that deleted objects waits for the kernel's
    /// RCU grace period (5-7 ms measured), which is most of a small update's latency.
    pub fn commit_on(&self, session: &Session) -> Result<(), NftError> {
        if self.ops.is_empty() {
            return Ok(());
        }
        let sock = &session.sock;
        self.check()?;
        let msgs = self.encode()?;
        let mut batch = nftnl::Batch::new();
        for (_, m) in &msgs {
            batch.add(m, nftnl::MsgType::Add);
        }
        let batch = batch.finalize();
        let seqs = batch.sequence_numbers();
        let n = msgs.len() as u32;
        // Kernels from 6.10 acknowledge the batch begin and end messages (the `nftnl`
        // crate asks for it there); those take the first and last sequence numbers.
        let ends_acked = seqs.end - seqs.start == n + 2;
        let first = if ends_acked {
            seqs.start + 1
        } else {
            seqs.start
        };
        let bytes: Vec<u8> = batch.iter().flatten().copied().collect();
        drop(batch);
        let what = "apply nftables transaction";
        sock.reserve(bytes.len(), msgs.len() + 2);
        sock.send(&bytes, what)?;
        drop(bytes);
        let (datagrams, lost) = sock.drain(what)?;
        let outcome = collect_replies(&datagrams, first, n, ends_acked.then(|| seqs.end - 1))
            .map_err(|reason| NftError::Protocol {
                what: what.to_owned(),
                reason,
            })?;
        if let Some((idx, errno)) = outcome.first_error {
            let op = &self.ops[msgs[idx].0];
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
        if lost {
            return Err(NftError::Protocol {
                what: what.to_owned(),
                reason: "replies were dropped (receive buffer full)".to_owned(),
            });
        }
        if ends_acked && !outcome.end_acked {
            return Err(NftError::Protocol {
                what: what.to_owned(),
                reason: "no acknowledgement for the end of the batch".to_owned(),
            });
        }
        Ok(())
    }
}

/// A netfilter socket kept open for many transactions (see [`Transaction::commit_on`]).
/// It stays bound to the network namespace of the thread that opened it.
pub struct Session {
    sock: NfSocket,
}

impl Session {
    pub fn open() -> Result<Session, NftError> {
        Ok(Session {
            sock: NfSocket::open()?,
        })
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Session")
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

/// What the kernel answered to a batch of `n` messages numbered from `first`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Replies {
    /// The failed message with the lowest index and its errno.
    first_error: Option<(usize, i32)>,
    /// An error not tied to one message (e.g. reported on the batch begin message).
    batch_error: Option<i32>,
    /// The batch end message (sequence number `end`) was acknowledged.
    end_acked: bool,
}

fn collect_replies(
    datagrams: &[Vec<u8>],
    first: u32,
    n: u32,
    end: Option<u32>,
) -> Result<Replies, String> {
    let mut out = Replies::default();
    for d in datagrams {
        for m in sock::split(d)? {
            if m.ty != sock::NLMSG_ERROR {
                continue;
            }
            let errno = m.errno().ok_or("short error message")?;
            if m.seq >= first && m.seq < first + n {
                let idx = (m.seq - first) as usize;
                if errno != 0 && out.first_error.is_none_or(|(i, _)| idx < i) {
                    out.first_error = Some((idx, errno));
                }
            } else if errno != 0 {
                if out.batch_error.is_none() {
                    out.batch_error = Some(errno);
                }
            } else if Some(m.seq) == end {
                out.end_acked = true;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::model::{ChainType, Field, Hook, KeyPart, KeyType, Stmt, Verdict};

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
    fn replies_map_errors_to_messages() {
        // Begin (1) and end (6) acknowledged, message 3 failed, message 4 failed later.
        let d = vec![[err(1, 0), err(4, 22), err(3, 2), err(6, 0)].concat()];
        let o = collect_replies(&d, 2, 4, Some(6)).unwrap();
        assert_eq!(o.first_error, Some((1, 2)));
        assert_eq!((o.batch_error, o.end_acked), (None, true));
        // An error on the batch begin message belongs to no operation.
        let o = collect_replies(&[err(1, 1)], 2, 2, Some(4)).unwrap();
        assert_eq!((o.batch_error, o.end_acked), (Some(1), false));
        assert_eq!(
            collect_replies(&[], 1, 2, None).unwrap(),
            Replies::default()
        );
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

    fn v4(s: &str) -> KeyPart {
        KeyPart::Addr(s.parse().unwrap())
    }

    #[test]
    fn set_operations_script_text() {
        let t = TableRef::new(Family::Inet, "t");
        let mut s = Set::new("s", vec![KeyType::Ipv4Addr]);
        s.comment = Some("x".into());
        let mut m = Set::vmap("m", vec![KeyType::Ipv4Addr]);
        m.elements = vec![SetElem::map(
            vec![v4("10.0.0.1")],
            Verdict::Jump("c".into()),
        )];
        let c = Set::new(
            "c",
            vec![KeyType::Ipv6Addr, KeyType::InetProto, KeyType::InetService],
        );
        let mut tx = Transaction::new();
        tx.add_set(&t, &s)
            .add_set(&t, &m)
            .add_set(&t, &c)
            .add_elements(&t, "s", &[SetElem::key(vec![v4("10.0.0.1")])])
            .add_elements(
                &t,
                "c",
                &[SetElem::key(vec![
                    KeyPart::Addr("2001:db8::1".parse().unwrap()),
                    KeyPart::Proto(6),
                    KeyPart::Port(443),
                ])],
            )
            .add_elements(&t, "s", &[])
            .delete_elements(&t, "m", &m.elements)
            .flush_set(&t, "s")
            .flush_set(&t, "m")
            .delete_set(&t, "s");
        assert_eq!(
            tx.to_string(),
            "add set inet t s { type ipv4_addr; comment \"x\"; }\n\
             add map inet t m { type ipv4_addr : verdict; }\n\
             add element inet t m { 10.0.0.1 : jump c }\n\
             add set inet t c { type ipv6_addr . inet_proto . inet_service; }\n\
             add element inet t s { 10.0.0.1 }\n\
             add element inet t c { 2001:db8::1 . tcp . 443 }\n\
             delete element inet t m { 10.0.0.1 }\n\
             flush set inet t s\n\
             flush map inet t m\n\
             delete set inet t s\n"
        );
        tx.validate().unwrap();
        let described: Vec<String> = tx.ops.iter().map(Op::describe).collect();
        assert_eq!(
            &described[..3],
            ["add set t/s", "add map t/m", "add element to set t/m"]
        );
        assert_eq!(described[6], "delete element from set t/m");
    }

    #[test]
    fn long_element_lists_are_split_across_messages() {
        let t = TableRef::new(Family::Inet, "t");
        let elems: Vec<SetElem> = (0..20_000u32)
            .map(|i| SetElem::key(vec![KeyPart::Addr(std::net::Ipv4Addr::from(i).into())]))
            .collect();
        let mut tx = Transaction::new();
        tx.add_set(&t, &Set::new("s", vec![KeyType::Ipv4Addr]))
            .add_elements(&t, "s", &elems)
            .add_rule(
                &t,
                "c",
                Rule::new(vec![Stmt::lookup(&[Field::IpSaddr], "s")]),
            );
        let msgs = tx.encode().unwrap();
        // 16 bytes per IPv4 element, at most 60 KiB of them per message.
        let owners: Vec<usize> = msgs.iter().map(|(op, _)| *op).collect();
        assert_eq!(owners.iter().filter(|o| **o == 1).count(), 6);
        assert_eq!((owners[0], owners[owners.len() - 1]), (0, 2));
        for (_, m) in &msgs {
            let mut buf = vec![0u64; (nftnl::nft_nlmsg_maxsize() as usize).div_ceil(8)];
            // SAFETY: the buffer has room for the largest message.
            unsafe { nftnl::NlMsg::write(m, buf.as_mut_ptr().cast(), 1, nftnl::MsgType::Add) };
            let len = (buf[0] & 0xffff_ffff) as usize;
            assert!(len <= u16::MAX as usize, "message of {len} bytes");
        }
    }

    #[test]
    fn chains_are_deleted_after_the_elements_jumping_to_them() {
        let t = TableRef::new(Family::Ip, "t");
        let e = SetElem::map(vec![v4("10.0.0.1")], Verdict::Goto("c".into()));
        let mut tx = Transaction::new();
        tx.delete_elements(&t, "m", std::slice::from_ref(&e))
            .delete_chain(&t, "c");
        tx.validate().unwrap();
        let mut tx = Transaction::new();
        tx.delete_chain(&t, "c")
            .delete_elements(&t, "m", std::slice::from_ref(&e));
        let err = tx.validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "delete chain t/c: must come after delete element from set t/m, whose element 10.0.0.1 : goto c refers to the chain"
        );
        // Another table's chain of the same name is not concerned.
        let mut tx = Transaction::new();
        tx.delete_chain(&TableRef::new(Family::Ip, "u"), "c")
            .delete_elements(&t, "m", &[e]);
        tx.validate().unwrap();
    }
}
