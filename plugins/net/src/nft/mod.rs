//! nftables through libnftnl: typed rulesets, atomic transactions, and reading them back.
//!
//! Layers, from pure to kernel:
//! - [`model`]: tables, chains, rules, named sets and verdict maps as typed values with the
//!   `nft list` text rendering (golden tests compare it; integration tests compare it with
//!   `nft` itself);
//! - [`expr`]: statements lowered to the kernel's register-level expressions and lifted back
//!   (set lookups and verdict maps, `ct state`, counters, limits, log, port ranges included);
//! - [`Transaction`]: an ordered list of operations, printable as an `nft -f` script and
//!   applied as one nfnetlink batch (all or nothing), with each kernel error naming its
//!   object; batches of a policy engine's size (thousands of sets and rules, a hundred
//!   thousand elements) go out in one datagram, element lists split across messages;
//! - listing ([`list_rules`], [`list_sets`], [`read_table`], [`table_exists`],
//!   [`chain_exists`]): dumps retried when the kernel flags them interrupted or when they
//!   straddle a ruleset change;
//! - rule sets built on top: [`masq`] (bridge `ipMasq`) and [`macspoof`] (bridge
//!   `macspoofchk`); the portmap plugin has its own compiler.
//!
//! Why libnftnl and not `nft`: a CNI plugin runs for every pod, and forking `nft` costs a
//! process, a ruleset parse and a full cache fetch each time. libnftnl only encodes and
//! decodes messages; we talk to the kernel ourselves over a `NETLINK_NETFILTER` socket.
//! Everything applies to the network namespace of the calling thread, which for a plugin is
//! the node's namespace.
//!
//! Ownership: each rule set lives in tables of its own (`twill_*`), never in tables other
//! software manages, and each rule carries an [`owner`] comment so DEL, CHECK and GC touch
//! exactly one attachment's rules.

pub mod expr;
mod list;
pub mod macspoof;
pub mod masq;
pub mod model;
pub mod owner;
pub(crate) mod sock;
mod tx;
mod wire;

pub use list::{
    chain_exists, list_rules, list_sets, read_table, rules_with_comment, table_exists, table_rules,
};
pub use model::{
    AddrField, BaseChain, Chain, ChainType, CmpOp, CtState, Family, Field, Hook, IfField, KeyPart,
    KeyType, L4Proto, LimitUnit, ListedRule, Policy, PortField, Rule, Set, SetElem, Stmt, Table,
    Verdict,
};
pub use tx::{Op, OpKind, Session, TableRef, Transaction};
pub use wire::COMMENT_MAX;

/// Errors of nftables operations. Messages name the object and the cause, lowercase.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// The kernel refused one operation of a transaction; nothing of it was applied.
    #[error("{op}: {}", errno_text(*errno))]
    Rejected {
        op: String,
        kind: OpKind,
        errno: i32,
    },
    /// A socket call or a query failed.
    #[error("{what}: {}", errno_text(*errno))]
    Kernel { what: String, errno: i32 },
    /// The request cannot be encoded (bad name, comment, statement for the family).
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
    /// The kernel answered something we cannot read.
    #[error("{what}: unexpected reply from the kernel: {reason}")]
    Protocol { what: String, reason: String },
    /// The ruleset kept changing while we read it.
    #[error("{what}: the ruleset kept changing while it was read ({attempts} attempts)")]
    Interrupted { what: String, attempts: u32 },
    /// CHECK found a rule missing or different.
    #[error("{0}")]
    Missing(String),
}

impl NftError {
    /// The kernel's errno, when the kernel refused something.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NftError::Rejected { errno, .. } | NftError::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    /// The object (table, chain, rule) does not exist.
    pub fn is_not_found(&self) -> bool {
        self.errno() == Some(libc::ENOENT)
    }

    /// A delete hit an object that disappeared since we listed it (a concurrent change);
    /// building the transaction again from a fresh listing is the remedy.
    pub fn is_stale_delete(&self) -> bool {
        matches!(
            self,
            NftError::Rejected {
                kind: OpKind::DeleteRule
                    | OpKind::DeleteChain
                    | OpKind::DeleteSet
                    | OpKind::DeleteElements,
                errno: libc::ENOENT,
                ..
            }
        )
    }
}

/// `strerror` text the way the netlink layer prints it (`no such file or directory`).
fn errno_text(errno: i32) -> String {
    crate::netlink::Errno(errno).to_string()
}

/// Runs `attempt` (list, build, commit) again when a concurrent change removed a rule it
/// meant to delete, at most three times.
pub fn retry_stale(mut attempt: impl FnMut() -> Result<(), NftError>) -> Result<(), NftError> {
    let mut left = 3;
    loop {
        match attempt() {
            Err(e) if e.is_stale_delete() && left > 1 => left -= 1,
            other => return other,
        }
    }
}

/// Deletes, in one batch, the rules of `chain` owned by attachments of `network` that are not
/// in `valid` (`(container id, ifname)` pairs); other networks' rules and rules without an
/// owner comment are left alone. GC of every per-attachment rule set.
pub(crate) fn gc_owned_rules(
    t: &TableRef,
    chain: &str,
    network: &str,
    valid: &[(String, String)],
) -> Result<(), NftError> {
    let net = owner::network_token(network);
    let keep: std::collections::HashSet<String> = valid
        .iter()
        .map(|(id, ifname)| owner::Owner::new(id, ifname, Some(network)).comment())
        .collect();
    retry_stale(|| {
        let mut tx = Transaction::new();
        for r in list_rules(t, chain)? {
            let Some(c) = r.rule.comment.as_deref() else {
                continue;
            };
            if owner::comment_network(c) == Some(net.as_str()) && !keep.contains(c) {
                tx.delete_rule(t, chain, r.handle);
            }
        }
        tx.commit()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_like_the_convention() {
        let e = NftError::Rejected {
            op: "add rule to chain twill_portmap/hostports".into(),
            kind: OpKind::AddRule,
            errno: libc::ENOENT,
        };
        assert_eq!(
            e.to_string(),
            "add rule to chain twill_portmap/hostports: no such file or directory"
        );
        assert!(e.is_not_found());
        assert!(!e.is_stale_delete());
    }

    #[test]
    fn retries_only_stale_deletes() {
        let mut n = 0;
        let r = retry_stale(|| {
            n += 1;
            Err(NftError::Rejected {
                op: "x".into(),
                kind: OpKind::DeleteRule,
                errno: libc::ENOENT,
            })
        });
        assert!(r.is_err());
        assert_eq!(n, 3);
        let mut n = 0;
        let _ = retry_stale(|| {
            n += 1;
            Err(NftError::Missing("x".into()))
        });
        assert_eq!(n, 1);
    }
}
