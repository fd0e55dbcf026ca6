//! Reading nf_tables back: whether a table or chain exists, the rules of a chain with their
//! handles and comments, and a whole table as a typed [`Table`].
//!
//! Dumps are consistent snapshots or nothing: a dump the kernel flags `NLM_F_DUMP_INTR`
//! (the ruleset changed while it was being read, as the CNI `netlinksafe` package handles
//! for routes) is retried, and a table read as two dumps (chains, then rules) is retried when
//! the ruleset generation differs between them. After a few attempts the caller gets
//! [`NftError::Interrupted`] rather than a torn view.

use super::NftError;
use super::expr::lift;
use super::model::{Chain, ListedRule, Rule, Table};
use super::sock::{self, NfSocket};
use super::tx::TableRef;
use super::wire::{self, Query};

const ATTEMPTS: u32 = 10;
const ENOENT: i32 = libc::ENOENT;

/// The messages of one complete dump and the generation they were read at.
struct Dump {
    msgs: Vec<Vec<u8>>,
    generation: Option<u16>,
}

/// Runs a dump, retrying while the kernel reports it interrupted.
fn dump(q: &Query<'_>, reply: u16, what: &str) -> Result<Dump, NftError> {
    let bytes = wire::query_bytes(q, 1).map_err(|reason| NftError::Invalid {
        what: what.to_owned(),
        reason,
    })?;
    let sock = NfSocket::open()?;
    for _ in 0..ATTEMPTS {
        sock.send(&bytes, what)?;
        let mut out = Dump {
            msgs: Vec::new(),
            generation: None,
        };
        let mut interrupted = false;
        'read: loop {
            let d = sock.recv(what)?;
            let msgs = sock::split(&d).map_err(|reason| NftError::Protocol {
                what: what.to_owned(),
                reason,
            })?;
            for m in msgs {
                if m.flags & sock::NLM_F_DUMP_INTR != 0 {
                    interrupted = true;
                }
                match m.ty {
                    sock::NLMSG_DONE => {
                        match m.errno() {
                            Some(0) | None => {}
                            Some(libc::EINTR) => interrupted = true,
                            Some(errno) => {
                                return Err(NftError::Kernel {
                                    what: what.to_owned(),
                                    errno,
                                });
                            }
                        }
                        break 'read;
                    }
                    sock::NLMSG_ERROR => match m.errno() {
                        Some(0) => {}
                        Some(errno) => {
                            return Err(NftError::Kernel {
                                what: what.to_owned(),
                                errno,
                            });
                        }
                        None => {
                            return Err(NftError::Protocol {
                                what: what.to_owned(),
                                reason: "short error message".to_owned(),
                            });
                        }
                    },
                    t if t == wire::nft_type(reply) => {
                        out.generation = m.generation();
                        out.msgs.push(m.bytes.to_vec());
                    }
                    _ => {}
                }
            }
        }
        if !interrupted {
            return Ok(out);
        }
    }
    Err(NftError::Interrupted {
        what: what.to_owned(),
        attempts: ATTEMPTS,
    })
}

/// Sends a query for one object: `Ok(false)` when the kernel says it does not exist.
fn exists(q: &Query<'_>, reply: u16, what: &str) -> Result<bool, NftError> {
    let bytes = wire::query_bytes(q, 1).map_err(|reason| NftError::Invalid {
        what: what.to_owned(),
        reason,
    })?;
    let sock = NfSocket::open()?;
    sock.send(&bytes, what)?;
    loop {
        let d = sock.recv(what)?;
        let msgs = sock::split(&d).map_err(|reason| NftError::Protocol {
            what: what.to_owned(),
            reason,
        })?;
        for m in msgs {
            if m.ty == wire::nft_type(reply) {
                return Ok(true);
            }
            if m.ty == sock::NLMSG_ERROR {
                return match m.errno() {
                    Some(ENOENT) => Ok(false),
                    Some(errno) => Err(NftError::Kernel {
                        what: what.to_owned(),
                        errno,
                    }),
                    None => Err(NftError::Protocol {
                        what: what.to_owned(),
                        reason: "short error message".to_owned(),
                    }),
                };
            }
        }
    }
}

/// Whether the table exists in the caller's network namespace.
pub fn table_exists(table: &TableRef) -> Result<bool, NftError> {
    exists(
        &Query {
            msg: wire::NFT_MSG_GETTABLE,
            family: table.family.nfproto(),
            table: Some(&table.name),
            chain: None,
            dump: false,
        },
        wire::NFT_MSG_NEWTABLE,
        &format!("look up table {table}"),
    )
}

/// Whether the chain exists (false also when the table does not).
pub fn chain_exists(table: &TableRef, chain: &str) -> Result<bool, NftError> {
    exists(
        &Query {
            msg: wire::NFT_MSG_GETCHAIN,
            family: table.family.nfproto(),
            table: Some(&table.name),
            chain: Some(chain),
            dump: false,
        },
        wire::NFT_MSG_NEWCHAIN,
        &format!("look up chain {}/{chain}", table.name),
    )
}

fn rules_dump(table: &TableRef, chain: Option<&str>, what: &str) -> Result<Dump, NftError> {
    dump(
        &Query {
            msg: wire::NFT_MSG_GETRULE,
            family: table.family.nfproto(),
            table: Some(&table.name),
            chain,
            dump: true,
        },
        wire::NFT_MSG_NEWRULE,
        what,
    )
}

fn parse_rules(
    table: &TableRef,
    d: &Dump,
    what: &str,
) -> Result<Vec<(String, ListedRule)>, NftError> {
    let mut out = Vec::new();
    for m in &d.msgs {
        let raw = wire::parse_rule(m).map_err(|reason| NftError::Protocol {
            what: what.to_owned(),
            reason,
        })?;
        // Older kernels ignore the table filter of a rule dump; filter here as well.
        if raw.table != table.name {
            continue;
        }
        out.push((
            raw.chain,
            ListedRule {
                handle: raw.handle,
                rule: Rule {
                    stmts: lift(table.family, &raw.exprs),
                    comment: raw.comment,
                },
            },
        ));
    }
    Ok(out)
}

/// The rules of a chain in order, with handles and comments. A missing table or chain has
/// no rules.
pub fn list_rules(table: &TableRef, chain: &str) -> Result<Vec<ListedRule>, NftError> {
    let what = format!("list rules of chain {}/{chain}", table.name);
    let d = match rules_dump(table, Some(chain), &what) {
        // Kernels answer a dump of a missing table either with nothing or with ENOENT.
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        other => other?,
    };
    Ok(parse_rules(table, &d, &what)?
        .into_iter()
        .filter(|(c, _)| c == chain)
        .map(|(_, r)| r)
        .collect())
}

/// The rules of a chain whose comment is exactly `comment`.
pub fn rules_with_comment(
    table: &TableRef,
    chain: &str,
    comment: &str,
) -> Result<Vec<ListedRule>, NftError> {
    Ok(list_rules(table, chain)?
        .into_iter()
        .filter(|r| r.rule.comment.as_deref() == Some(comment))
        .collect())
}

/// The whole table (chains in creation order, each with its rules), or `None` when it does
/// not exist. Chain and rule dumps are retried until both come from the same generation.
pub fn read_table(table: &TableRef) -> Result<Option<Table>, NftError> {
    let what = format!("list table {table}");
    for _ in 0..ATTEMPTS {
        if !table_exists(table)? {
            return Ok(None);
        }
        let chains = dump(
            &Query {
                msg: wire::NFT_MSG_GETCHAIN,
                family: table.family.nfproto(),
                table: Some(&table.name),
                chain: None,
                dump: true,
            },
            wire::NFT_MSG_NEWCHAIN,
            &what,
        )?;
        let rules = rules_dump(table, None, &what)?;
        if chains.generation.is_some()
            && rules.generation.is_some()
            && chains.generation != rules.generation
        {
            continue;
        }
        let mut raw = Vec::new();
        for m in &chains.msgs {
            let c = wire::parse_chain(m).map_err(|reason| NftError::Protocol {
                what: what.clone(),
                reason,
            })?;
            if c.table == table.name {
                raw.push(c);
            }
        }
        raw.sort_by_key(|c| c.handle);
        let mut out = Table {
            family: table.family,
            name: table.name.clone(),
            sets: vec![],
            chains: raw
                .into_iter()
                .map(|c| Chain {
                    name: c.name,
                    base: c.base,
                    rules: Vec::new(),
                })
                .collect(),
        };
        for (chain, r) in parse_rules(table, &rules, &what)? {
            if let Some(c) = out.chains.iter_mut().find(|c| c.name == chain) {
                c.rules.push(r.rule);
            }
        }
        return Ok(Some(out));
    }
    Err(NftError::Interrupted {
        what,
        attempts: ATTEMPTS,
    })
}
