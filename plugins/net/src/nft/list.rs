//! Reading nf_tables back: whether a table or chain exists, the rules of a chain with their
//! handles and comments, the named sets and maps of a table with their elements, and a whole
//! table as a typed [`Table`].
//!
//! Dumps are consistent snapshots or nothing: a dump the kernel flags `NLM_F_DUMP_INTR`
//! (the ruleset changed while it was being read, as the CNI `netlinksafe` package handles
//! for routes) is retried, and a table read as several dumps (chains, rules, sets, then the
//! elements of each set: the kernel lists elements one set at a time) is retried when the
//! ruleset generation differs between them. After a few attempts the caller gets
//! [`NftError::Interrupted`] rather than a torn view. All dumps of one read share one socket.
//!
//! Sets are typed from the kernel's key type id (nft's datatype ids packed 6 bits per part),
//! so sets written by `nft` read back like ours. Anonymous sets (nft's `{ a, b }` inside a
//! rule) are not listed; a named set with a key type or flags the model cannot express is an
//! error naming the set rather than something silently skipped. Elements come back in the
//! order `nft list` prints them ([`Set::sorted_elements`]).

use super::NftError;
use super::expr::{lift, verdict_from};
use super::model::{Chain, KeyPart, KeyType, ListedRule, Rule, Set, SetElem, TYPE_BITS, Table};
use super::sock::{self, NfSocket};
use super::tx::TableRef;
use super::wire::{self, Query, RawElem, RawSet};

const ATTEMPTS: u32 = 10;
const ENOENT: i32 = libc::ENOENT;

/// The messages of one complete dump and the generation they were read at.
struct Dump {
    msgs: Vec<Vec<u8>>,
    generation: Option<u16>,
}

/// Runs a dump on `sock`, retrying while the kernel reports it interrupted.
fn dump_on(sock: &NfSocket, q: &Query<'_>, reply: u16, what: &str) -> Result<Dump, NftError> {
    let bytes = wire::query_bytes(q, 1).map_err(|reason| NftError::Invalid {
        what: what.to_owned(),
        reason,
    })?;
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
            set: None,
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
            set: None,
            dump: false,
        },
        wire::NFT_MSG_NEWCHAIN,
        &format!("look up chain {}/{chain}", table.name),
    )
}

fn rules_dump(table: &TableRef, chain: Option<&str>, what: &str) -> Result<Dump, NftError> {
    rules_dump_on(&NfSocket::open()?, table, chain, what)
}

fn rules_dump_on(
    sock: &NfSocket,
    table: &TableRef,
    chain: Option<&str>,
    what: &str,
) -> Result<Dump, NftError> {
    dump_on(
        sock,
        &Query {
            msg: wire::NFT_MSG_GETRULE,
            family: table.family.nfproto(),
            table: Some(&table.name),
            chain,
            set: None,
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

/// Every rule of a table with the name of its chain, in one dump: what counters need,
/// without the sets and their elements (a table read for counters alone would carry every
/// element of every set). A missing table has no rules.
pub fn table_rules(table: &TableRef) -> Result<Vec<(String, ListedRule)>, NftError> {
    let what = format!("list rules of table {table}");
    let d = match rules_dump(table, None, &what) {
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        other => other?,
    };
    parse_rules(table, &d, &what)
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

/// The kernel's key type id as key types: one nft datatype id, or several packed
/// [`TYPE_BITS`] each with the first part highest.
fn key_types(id: u32) -> Option<Vec<KeyType>> {
    let mut parts = Vec::new();
    let mut rest = id;
    while rest != 0 {
        parts.push(KeyType::from_nft_id(rest & ((1 << TYPE_BITS) - 1))?);
        rest >>= TYPE_BITS;
    }
    parts.reverse();
    (!parts.is_empty()).then_some(parts)
}

/// Splits a key into parts of `types` (padded to 4 bytes each in a concatenation).
fn key_parts(types: &[KeyType], bytes: &[u8]) -> Option<Vec<KeyPart>> {
    let concat = types.len() > 1;
    let mut out = Vec::new();
    let mut rest = bytes;
    for t in types {
        let stride = if concat {
            t.byte_len().div_ceil(4) * 4
        } else {
            t.byte_len()
        };
        let part = rest.get(..stride)?;
        out.push(KeyPart::from_bytes(*t, part.get(..t.byte_len())?)?);
        rest = &rest[stride..];
    }
    rest.is_empty().then_some(out)
}

/// A set as the model describes it, or why it cannot be described.
fn to_set(raw: &RawSet, elems: &[RawElem]) -> Result<Set, String> {
    let known = wire::SET_MAP | wire::SET_CONCAT;
    if raw.flags & !known != 0 {
        return Err(format!(
            "flags 0x{:x} are not supported",
            raw.flags & !known
        ));
    }
    let key = key_types(raw.key_type)
        .ok_or_else(|| format!("key type 0x{:x} is not supported", raw.key_type))?;
    let vmap = raw.flags & wire::SET_MAP != 0;
    if vmap && raw.data_type != Some(wire::DATA_VERDICT) {
        return Err("only verdict maps are supported".to_owned());
    }
    let mut set = Set {
        name: raw.name.clone(),
        key,
        vmap,
        comment: raw.comment.clone(),
        elements: Vec::with_capacity(elems.len()),
    };
    if set.key_len() != raw.key_len as usize {
        return Err(format!(
            "key length {} does not match type {}",
            raw.key_len,
            set.type_text()
        ));
    }
    for e in elems {
        let key = key_parts(&set.key, &e.key)
            .filter(|_| e.flags & wire::SET_ELEM_INTERVAL_END == 0 && !e.other_data)
            .ok_or_else(|| format!("element 0x{} cannot be read", hex(&e.key)))?;
        let verdict = match (&e.verdict, vmap) {
            (Some((code, chain)), true) => Some(
                verdict_from(*code, chain.as_deref())
                    .ok_or_else(|| format!("element verdict {code} is not supported"))?,
            ),
            (None, false) => None,
            _ => return Err("element data does not match the set type".to_owned()),
        };
        set.elements.push(SetElem { key, verdict });
    }
    set.elements = set.sorted_elements();
    Ok(set)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// The named sets of a table with their elements, read on `sock`, with the generations of
/// the dumps they came from.
fn read_sets(
    sock: &NfSocket,
    table: &TableRef,
    what: &str,
) -> Result<(Vec<Set>, Vec<Option<u16>>), NftError> {
    let protocol = |reason: String| NftError::Protocol {
        what: what.to_owned(),
        reason,
    };
    let d = dump_on(
        sock,
        &Query {
            msg: wire::NFT_MSG_GETSET,
            family: table.family.nfproto(),
            table: Some(&table.name),
            chain: None,
            set: None,
            dump: true,
        },
        wire::NFT_MSG_NEWSET,
        what,
    )?;
    let mut gens = vec![d.generation];
    let mut raw = Vec::new();
    for m in &d.msgs {
        let s = wire::parse_set(m).map_err(protocol)?;
        if s.table == table.name && s.flags & wire::SET_ANONYMOUS == 0 {
            raw.push(s);
        }
    }
    raw.sort_by_key(|s| s.handle);
    let mut out = Vec::with_capacity(raw.len());
    for r in &raw {
        let e = dump_on(
            sock,
            &Query {
                msg: wire::NFT_MSG_GETSETELEM,
                family: table.family.nfproto(),
                table: Some(&table.name),
                chain: None,
                set: Some(&r.name),
                dump: true,
            },
            wire::NFT_MSG_NEWSETELEM,
            what,
        )?;
        if !e.msgs.is_empty() {
            gens.push(e.generation);
        }
        let mut elems = Vec::new();
        for m in &e.msgs {
            let p = wire::parse_elems(m).map_err(protocol)?;
            if p.table == table.name && p.set == r.name {
                elems.extend(p.elems);
            }
        }
        out.push(
            to_set(r, &elems)
                .map_err(|reason| protocol(format!("set {}/{}: {reason}", table.name, r.name)))?,
        );
    }
    Ok((out, gens))
}

/// Whether all dumps of one read saw the same ruleset generation.
fn consistent(gens: &[Option<u16>]) -> bool {
    let mut seen = gens.iter().flatten();
    match seen.next() {
        Some(g) => seen.all(|x| x == g),
        None => true,
    }
}

/// The named sets and verdict maps of a table, in creation order, each with its elements
/// (in the order `nft list` prints them). A missing table has no sets.
pub fn list_sets(table: &TableRef) -> Result<Vec<Set>, NftError> {
    let what = format!("list sets of table {table}");
    let sock = NfSocket::open()?;
    for _ in 0..ATTEMPTS {
        let (sets, gens) = match read_sets(&sock, table, &what) {
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            other => other?,
        };
        if consistent(&gens) {
            return Ok(sets);
        }
    }
    Err(NftError::Interrupted {
        what,
        attempts: ATTEMPTS,
    })
}

/// The whole table (chains in creation order, each with its rules; named sets and maps in
/// creation order, each with its elements), or `None` when it does not exist. The dumps are
/// retried until all come from the same generation.
pub fn read_table(table: &TableRef) -> Result<Option<Table>, NftError> {
    let what = format!("list table {table}");
    let sock = NfSocket::open()?;
    for _ in 0..ATTEMPTS {
        if !table_exists(table)? {
            return Ok(None);
        }
        let chains = dump_on(
            &sock,
            &Query {
                msg: wire::NFT_MSG_GETCHAIN,
                family: table.family.nfproto(),
                table: Some(&table.name),
                chain: None,
                set: None,
                dump: true,
            },
            wire::NFT_MSG_NEWCHAIN,
            &what,
        )?;
        let rules = rules_dump_on(&sock, table, None, &what)?;
        let (sets, mut gens) = read_sets(&sock, table, &what)?;
        gens.extend([chains.generation, rules.generation]);
        if !consistent(&gens) {
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
            chains: raw
                .into_iter()
                .map(|c| Chain {
                    name: c.name,
                    base: c.base,
                    rules: Vec::new(),
                })
                .collect(),
            sets,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::model::Verdict;

    fn raw(flags: u32, key_type: u32, key_len: u32) -> RawSet {
        RawSet {
            table: "t".into(),
            name: "s".into(),
            handle: 1,
            flags,
            key_type,
            key_len,
            data_type: (flags & wire::SET_MAP != 0).then_some(wire::DATA_VERDICT),
            comment: None,
        }
    }

    #[test]
    fn key_types_unpack_like_nft() {
        assert_eq!(key_types(7), Some(vec![KeyType::Ipv4Addr]));
        assert_eq!(
            key_types(0x730d),
            Some(vec![
                KeyType::Ipv4Addr,
                KeyType::InetProto,
                KeyType::InetService
            ])
        );
        assert_eq!(key_types(0), None);
        // ether_addr (9) is not modelled.
        assert_eq!(key_types(9), None);
        let parts = key_parts(
            &[KeyType::Ipv6Addr, KeyType::InetService],
            &[[0u8; 15].as_slice(), &[1, 0, 80, 0, 0]].concat(),
        );
        assert_eq!(
            parts,
            Some(vec![
                KeyPart::Addr("::1".parse().unwrap()),
                KeyPart::Port(80)
            ])
        );
        assert_eq!(key_parts(&[KeyType::InetService], &[0, 80, 0]), None);
    }

    #[test]
    fn kernel_sets_become_model_sets_or_named_errors() {
        let e = |key: &[u8], verdict| RawElem {
            key: key.to_vec(),
            verdict,
            ..RawElem::default()
        };
        let s = to_set(
            &raw(wire::SET_MAP, 7, 4),
            &[
                e(&[10, 0, 0, 2], Some((1, None))),
                e(&[10, 0, 0, 1], Some((-3, Some("c".into())))),
            ],
        )
        .unwrap();
        assert!(s.vmap);
        assert_eq!(
            s.elements,
            vec![
                SetElem::map(
                    vec![KeyPart::Addr("10.0.0.1".parse().unwrap())],
                    Verdict::Jump("c".into())
                ),
                SetElem::map(
                    vec![KeyPart::Addr("10.0.0.2".parse().unwrap())],
                    Verdict::Accept
                ),
            ]
        );
        // Interval sets, wrong lengths and data where none belongs are refused.
        assert!(to_set(&raw(0x4, 7, 4), &[]).is_err());
        assert!(to_set(&raw(0, 7, 16), &[]).is_err());
        assert!(to_set(&raw(0, 7, 4), &[e(&[1, 2, 3, 4], Some((1, None)))]).is_err());
        assert!(to_set(&raw(0, 7, 4), &[e(&[1, 2, 3], None)]).is_err());
    }
}
