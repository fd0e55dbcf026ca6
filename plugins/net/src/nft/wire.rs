//! The FFI boundary: our objects to and from libnftnl's netlink encoding.
//!
//! The `nftnl` crate's safe wrappers cover part of what we need (its `Batch` frames a
//! transaction and is used as is), but its `Rule` borrows a `Chain` that borrows a `Table`,
//! it fixes the registers of `cmp`/`payload`, has no `fib` expression and cannot read rules
//! back. So messages are built here from `nftnl-sys` calls and handed to `Batch` through the
//! crate's public `NlMsg` trait, and kernel replies are parsed with libnftnl's
//! `*_nlmsg_parse`. Every `unsafe` block of the nft module is in this file; each libnftnl
//! object is owned by a guard that frees it on drop. libnftnl copies every string and byte
//! buffer it is given, so no Rust memory outlives a call.
//!
//! Messages from the kernel are copied into 8-byte aligned buffers before libnftnl reads
//! them, because a received byte vector gives no alignment guarantee.
//!
//! Sets are encoded as nft encodes them, so `nft list` prints ours: the key type is nft's
//! datatype id (concatenations packed 6 bits per part), the user data records the key's byte
//! order (nft needs it to print ports and addresses) and the comment, a verdict map has
//! `NFT_SET_MAP` and data type `NFT_DATA_VERDICT`. The kernel requires an id on every new
//! set (unique within the batch). Unlike nft we also send a concatenation's field lengths
//! (`NFTA_SET_DESC_CONCAT`), which the kernel accepts only together with `NFT_SET_CONCAT`;
//! nft 1.0 sends them only for interval concatenations. Element keys are the model's bytes;
//! libnftnl copies a key into a 64-byte buffer without checking its length, so we check it.

use super::expr::{Expr, verdict_code};
use super::model::{BaseChain, ChainType, Hook, KeyType, Policy, Set, SetElem, key_bytes};
use nftnl::nftnl_sys::{self as sys, libc};
use std::ffi::{CStr, CString, c_char, c_void};
use std::ptr::NonNull;

pub(crate) const NFT_MSG_NEWTABLE: u16 = 0;
pub(crate) const NFT_MSG_GETTABLE: u16 = 1;
pub(crate) const NFT_MSG_DELTABLE: u16 = 2;
pub(crate) const NFT_MSG_NEWCHAIN: u16 = 3;
pub(crate) const NFT_MSG_GETCHAIN: u16 = 4;
pub(crate) const NFT_MSG_DELCHAIN: u16 = 5;
pub(crate) const NFT_MSG_NEWRULE: u16 = 6;
pub(crate) const NFT_MSG_GETRULE: u16 = 7;
pub(crate) const NFT_MSG_DELRULE: u16 = 8;
pub(crate) const NFT_MSG_NEWSET: u16 = 9;
pub(crate) const NFT_MSG_GETSET: u16 = 10;
pub(crate) const NFT_MSG_DELSET: u16 = 11;
pub(crate) const NFT_MSG_NEWSETELEM: u16 = 12;
pub(crate) const NFT_MSG_GETSETELEM: u16 = 13;
pub(crate) const NFT_MSG_DELSETELEM: u16 = 14;

/// `nlmsg_type` of an nf_tables message (`NFNL_SUBSYS_NFTABLES << 8 | msg`).
pub(crate) fn nft_type(msg: u16) -> u16 {
    (10 << 8) | msg
}

pub(crate) const NLM_F_DUMP: u16 = 0x300;
pub(crate) const NLM_F_APPEND: u16 = 0x800;
pub(crate) const NLM_F_CREATE: u16 = 0x400;

/// Longest comment `nft` accepts (`NFTNL_UDATA_COMMENT_MAXLEN` with its NUL).
pub const COMMENT_MAX: usize = 127;
const UDATA_RULE_COMMENT: u8 = 0;

/// Set flags (`NFT_SET_*`).
pub(crate) const SET_ANONYMOUS: u32 = 0x1;
pub(crate) const SET_MAP: u32 = 0x8;
pub(crate) const SET_CONCAT: u32 = 0x80;
/// `NFT_DATA_VERDICT`: the data type of a verdict map.
pub(crate) const DATA_VERDICT: u32 = 0xffff_ff00;
/// Set user data TLVs, as nft writes them (`enum nftnl_udata_set_types`).
const UDATA_SET_KEYBYTEORDER: u8 = 0;
const UDATA_SET_DATABYTEORDER: u8 = 1;
const UDATA_SET_COMMENT: u8 = 7;
/// nft's `BYTEORDER_BIG_ENDIAN`, recorded for keys held in network byte order.
const BYTEORDER_BIG_ENDIAN: u32 = 2;
/// Element flags (`NFT_SET_ELEM_*`) we do not model.
pub(crate) const SET_ELEM_INTERVAL_END: u32 = 0x1;
/// Longest key (`NFT_DATA_VALUE_MAXLEN`, the 16 32-bit registers).
pub(crate) const KEY_MAX: usize = 64;
/// Bytes of elements per `NEWSETELEM`/`DELSETELEM` message: the element list is one
/// netlink attribute, whose length field has 16 bits, and the whole message must fit in
/// the `nft_nlmsg_maxsize()` buffer `Batch` hands out. nft splits the same way. libnftnl
/// numbers the element attributes 1, 2, 3, ... (the kernel ignores their type, libnftnl's
/// own parser does not); at 16 bytes or more per element a message holds at most 3,840,
/// far from the 0x4000 where the number would reach the attribute flag bits.
pub(crate) const ELEMS_PER_MSG_BYTES: usize = 60 * 1024;

/// A NUL-free C string, or a message naming what was wrong.
fn cstr(s: &str, what: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{what} {s:?} contains a NUL byte"))
}

/// Rule user data holding `comment` the way `nft` stores it (a TLV with the NUL included).
pub(crate) fn encode_comment(comment: &str) -> Result<Vec<u8>, String> {
    if comment.len() > COMMENT_MAX {
        return Err(format!(
            "comment {comment:?} is longer than {COMMENT_MAX} bytes"
        ));
    }
    if comment.contains('\0') || comment.contains('"') {
        return Err(format!(
            "comment {comment:?} contains a NUL or a double quote"
        ));
    }
    let mut out = vec![UDATA_RULE_COMMENT, (comment.len() + 1) as u8];
    out.extend_from_slice(comment.as_bytes());
    out.push(0);
    Ok(out)
}

/// The comment in rule user data, if any.
pub(crate) fn decode_comment(udata: &[u8]) -> Option<String> {
    let mut rest = udata;
    while rest.len() >= 2 {
        let (ty, len) = (rest[0], rest[1] as usize);
        let value = rest.get(2..2 + len)?;
        if ty == UDATA_RULE_COMMENT {
            let end = value.iter().position(|b| *b == 0).unwrap_or(value.len());
            return String::from_utf8(value[..end].to_vec()).ok();
        }
        rest = &rest[2 + len..];
    }
    None
}

macro_rules! owned {
    ($name:ident, $raw:ty, $alloc:path, $free:path) => {
        pub(crate) struct $name(NonNull<$raw>);

        impl $name {
            fn new() -> Result<Self, String> {
                // SAFETY: plain allocation; null is handled.
                NonNull::new(unsafe { $alloc() })
                    .map($name)
                    .ok_or_else(|| "out of memory".to_owned())
            }

            fn ptr(&self) -> *mut $raw {
                self.0.as_ptr()
            }
        }

        impl Drop for $name {
            fn drop(&mut self) {
                // SAFETY: we own the object and free it exactly once.
                unsafe { $free(self.0.as_ptr()) }
            }
        }
    };
}

owned!(
    OwnedTable,
    sys::nftnl_table,
    sys::nftnl_table_alloc,
    sys::nftnl_table_free
);
owned!(
    OwnedChain,
    sys::nftnl_chain,
    sys::nftnl_chain_alloc,
    sys::nftnl_chain_free
);
owned!(
    OwnedRule,
    sys::nftnl_rule,
    sys::nftnl_rule_alloc,
    sys::nftnl_rule_free
);
owned!(
    OwnedSet,
    sys::nftnl_set,
    sys::nftnl_set_alloc,
    sys::nftnl_set_free
);

/// An expression not yet handed to a rule.
struct OwnedExpr(NonNull<sys::nftnl_expr>);

impl Drop for OwnedExpr {
    fn drop(&mut self) {
        // SAFETY: still owned by us (ownership moves to the rule only through `into_raw`).
        unsafe { sys::nftnl_expr_free(self.0.as_ptr()) }
    }
}

impl OwnedExpr {
    fn into_raw(self) -> *mut sys::nftnl_expr {
        let p = self.0.as_ptr();
        std::mem::forget(self);
        p
    }
}

enum Obj {
    Table(OwnedTable),
    Chain(OwnedChain),
    Rule(OwnedRule),
    /// A set declaration (`NEWSET`, `DELSET`, `GETSET`).
    Set(OwnedSet),
    /// A set reference and its elements (`NEWSETELEM`, `DELSETELEM`, `GETSETELEM`).
    Elems(OwnedSet),
}

/// One message of a transaction, ready to be written into an `nftnl::Batch`.
pub(crate) struct WireMsg {
    msg_type: u16,
    family: u16,
    flags: u16,
    obj: Obj,
}

// SAFETY: `write` builds one header and one object payload, both bounded by the object's
// attributes (names limited to 256 bytes by `cstr` callers, at most a few dozen expressions,
// at most `ELEMS_PER_MSG_BYTES` of set elements), below `nft_nlmsg_maxsize()` which `Batch`
// guarantees.
unsafe impl nftnl::NlMsg for WireMsg {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, _msg_type: nftnl::MsgType) {
        // SAFETY: `buf` has room for a maximal message (trait contract); the objects are
        // valid for the lifetime of `self`.
        unsafe {
            let nlh = sys::nftnl_nlmsg_build_hdr(
                buf.cast::<c_char>(),
                self.msg_type,
                self.family,
                self.flags,
                seq,
            );
            match &self.obj {
                Obj::Table(t) => sys::nftnl_table_nlmsg_build_payload(nlh, t.ptr()),
                Obj::Chain(c) => sys::nftnl_chain_nlmsg_build_payload(nlh, c.ptr()),
                Obj::Rule(r) => sys::nftnl_rule_nlmsg_build_payload(nlh, r.ptr()),
                Obj::Set(st) => sys::nftnl_set_nlmsg_build_payload(nlh, st.ptr()),
                Obj::Elems(st) => sys::nftnl_set_elems_nlmsg_build_payload(nlh, st.ptr()),
            }
        }
    }
}

/// What to put into a table message.
pub(crate) fn table_msg(msg: u16, flags: u16, family: u8, name: &str) -> Result<WireMsg, String> {
    let t = OwnedTable::new()?;
    let name = cstr(name, "table name")?;
    // SAFETY: `t` is a valid table; libnftnl copies the string.
    unsafe {
        sys::nftnl_table_set_u32(t.ptr(), sys::NFTNL_TABLE_FAMILY as u16, u32::from(family));
        sys::nftnl_table_set_str(t.ptr(), sys::NFTNL_TABLE_NAME as u16, name.as_ptr());
    }
    Ok(WireMsg {
        msg_type: msg,
        family: u16::from(family),
        flags,
        obj: Obj::Table(t),
    })
}

fn new_chain(family: u8, table: &str, name: &str) -> Result<OwnedChain, String> {
    let c = OwnedChain::new()?;
    let table = cstr(table, "table name")?;
    let name = cstr(name, "chain name")?;
    // SAFETY: `c` is a valid chain; libnftnl copies the strings.
    unsafe {
        sys::nftnl_chain_set_u32(c.ptr(), sys::NFTNL_CHAIN_FAMILY as u16, u32::from(family));
        sys::nftnl_chain_set_str(c.ptr(), sys::NFTNL_CHAIN_TABLE as u16, table.as_ptr());
        sys::nftnl_chain_set_str(c.ptr(), sys::NFTNL_CHAIN_NAME as u16, name.as_ptr());
    }
    Ok(c)
}

/// A chain message; `base` makes it a base chain.
pub(crate) fn chain_msg(
    msg: u16,
    flags: u16,
    family: u8,
    (table, name): (&str, &str),
    base: Option<&BaseChain>,
) -> Result<WireMsg, String> {
    let c = new_chain(family, table, name)?;
    if let Some(b) = base {
        let ty = cstr(b.chain_type.as_str(), "chain type")?;
        let policy: u32 = match b.policy {
            Policy::Accept => 1,
            Policy::Drop => 0,
        };
        // SAFETY: valid chain; the type string is copied.
        unsafe {
            sys::nftnl_chain_set_u32(c.ptr(), sys::NFTNL_CHAIN_HOOKNUM as u16, b.hook.number());
            sys::nftnl_chain_set_s32(c.ptr(), sys::NFTNL_CHAIN_PRIO as u16, b.priority);
            sys::nftnl_chain_set_str(c.ptr(), sys::NFTNL_CHAIN_TYPE as u16, ty.as_ptr());
            sys::nftnl_chain_set_u32(c.ptr(), sys::NFTNL_CHAIN_POLICY as u16, policy);
        }
    }
    Ok(WireMsg {
        msg_type: msg,
        family: u16::from(family),
        flags,
        obj: Obj::Chain(c),
    })
}

/// Where a rule message points, and what it carries.
pub(crate) struct RuleSpec<'a> {
    pub family: u8,
    pub table: &'a str,
    /// `None` for a flush of the whole table.
    pub chain: Option<&'a str>,
    pub handle: Option<u64>,
    pub exprs: &'a [Expr],
    pub comment: Option<&'a str>,
}

fn new_rule(spec: &RuleSpec<'_>) -> Result<OwnedRule, String> {
    let r = OwnedRule::new()?;
    let table = cstr(spec.table, "table name")?;
    // SAFETY: valid rule; strings are copied.
    unsafe {
        sys::nftnl_rule_set_u32(
            r.ptr(),
            sys::NFTNL_RULE_FAMILY as u16,
            u32::from(spec.family),
        );
        sys::nftnl_rule_set_str(r.ptr(), sys::NFTNL_RULE_TABLE as u16, table.as_ptr());
    }
    if let Some(chain) = spec.chain {
        let chain = cstr(chain, "chain name")?;
        // SAFETY: as above.
        unsafe { sys::nftnl_rule_set_str(r.ptr(), sys::NFTNL_RULE_CHAIN as u16, chain.as_ptr()) };
    }
    if let Some(h) = spec.handle {
        // SAFETY: as above.
        unsafe { sys::nftnl_rule_set_u64(r.ptr(), sys::NFTNL_RULE_HANDLE as u16, h) };
    }
    for e in spec.exprs {
        let e = build_expr(e)?;
        // SAFETY: the rule takes ownership of the expression.
        unsafe { sys::nftnl_rule_add_expr(r.ptr(), e.into_raw()) };
    }
    if let Some(c) = spec.comment {
        let udata = encode_comment(c)?;
        // SAFETY: libnftnl copies `udata`.
        let rc = unsafe {
            sys::nftnl_rule_set_data(
                r.ptr(),
                sys::NFTNL_RULE_USERDATA as u16,
                udata.as_ptr().cast::<c_void>(),
                udata.len() as u32,
            )
        };
        if rc < 0 {
            return Err("out of memory".to_owned());
        }
    }
    Ok(r)
}

pub(crate) fn rule_msg(msg: u16, flags: u16, spec: &RuleSpec<'_>) -> Result<WireMsg, String> {
    Ok(WireMsg {
        msg_type: msg,
        family: u16::from(spec.family),
        flags,
        obj: Obj::Rule(new_rule(spec)?),
    })
}

/// Set user data as nft writes it: the key's byte order (so nft prints keys correctly), a
/// map's data byte order, and the comment.
pub(crate) fn encode_set_udata(set: &Set) -> Result<Vec<u8>, String> {
    let order = match set.key.as_slice() {
        [KeyType::Ipv4Addr | KeyType::Ipv6Addr | KeyType::InetService] => BYTEORDER_BIG_ENDIAN,
        _ => 0,
    };
    let mut out = vec![UDATA_SET_KEYBYTEORDER, 4];
    out.extend_from_slice(&order.to_ne_bytes());
    if set.vmap {
        out.extend_from_slice(&[UDATA_SET_DATABYTEORDER, 4]);
        out.extend_from_slice(&0u32.to_ne_bytes());
    }
    if let Some(c) = &set.comment {
        let tlv = encode_comment(c)?;
        out.push(UDATA_SET_COMMENT);
        out.extend_from_slice(&tlv[1..]);
    }
    Ok(out)
}

/// The comment in set user data, if any.
pub(crate) fn decode_set_comment(udata: &[u8]) -> Option<String> {
    let mut rest = udata;
    while rest.len() >= 2 {
        let (ty, len) = (rest[0], rest[1] as usize);
        let value = rest.get(2..2 + len)?;
        if ty == UDATA_SET_COMMENT {
            let end = value.iter().position(|b| *b == 0).unwrap_or(value.len());
            return String::from_utf8(value[..end].to_vec()).ok();
        }
        rest = &rest[2 + len..];
    }
    None
}

fn new_set(family: u8, table: &str, name: &str) -> Result<OwnedSet, String> {
    let st = OwnedSet::new()?;
    let table = cstr(table, "table name")?;
    let name = cstr(name, "set name")?;
    // SAFETY: `st` is a valid set; libnftnl copies the strings.
    let rc = unsafe {
        sys::nftnl_set_set_u32(st.ptr(), sys::NFTNL_SET_FAMILY as u16, u32::from(family));
        sys::nftnl_set_set_str(st.ptr(), sys::NFTNL_SET_TABLE as u16, table.as_ptr())
            | sys::nftnl_set_set_str(st.ptr(), sys::NFTNL_SET_NAME as u16, name.as_ptr())
    };
    if rc < 0 {
        return Err("out of memory".to_owned());
    }
    Ok(st)
}

/// A set message; `decl` (for `NEWSET`) carries the key, map flag and comment, and the id
/// the kernel requires to tell sets of one batch apart (unique within the batch).
pub(crate) fn set_msg(
    msg: u16,
    flags: u16,
    family: u8,
    (table, name): (&str, &str),
    decl: Option<(&Set, u32)>,
) -> Result<WireMsg, String> {
    let st = new_set(family, table, name)?;
    if let Some((set, id)) = decl {
        if set.key.is_empty() {
            return Err("a set needs a key type".to_owned());
        }
        if set.key_len() > KEY_MAX {
            return Err(format!(
                "key {} is longer than {KEY_MAX} bytes",
                set.type_text()
            ));
        }
        let concat = set.key.len() > 1;
        let mut set_flags = 0;
        if set.vmap {
            set_flags |= SET_MAP;
        }
        if concat {
            // The kernel takes field lengths only for sets flagged as concatenations.
            set_flags |= SET_CONCAT;
        }
        let udata = encode_set_udata(set)?;
        let fields: Vec<u8> = set.key.iter().map(|t| t.byte_len() as u8).collect();
        // SAFETY: valid set; libnftnl copies the data buffers.
        let rc = unsafe {
            let p = st.ptr();
            sys::nftnl_set_set_u32(p, sys::NFTNL_SET_ID as u16, id);
            sys::nftnl_set_set_u32(p, sys::NFTNL_SET_FLAGS as u16, set_flags);
            sys::nftnl_set_set_u32(p, sys::NFTNL_SET_KEY_TYPE as u16, set.key_type_id());
            sys::nftnl_set_set_u32(p, sys::NFTNL_SET_KEY_LEN as u16, set.key_len() as u32);
            if set.vmap {
                sys::nftnl_set_set_u32(p, sys::NFTNL_SET_DATA_TYPE as u16, DATA_VERDICT);
                sys::nftnl_set_set_u32(p, sys::NFTNL_SET_DATA_LEN as u16, 0);
            }
            let mut rc = sys::nftnl_set_set_data(
                p,
                sys::NFTNL_SET_USERDATA as u16,
                udata.as_ptr().cast::<c_void>(),
                udata.len() as u32,
            );
            if concat {
                // libnftnl counts the fields up to the first zero length.
                rc |= sys::nftnl_set_set_data(
                    p,
                    sys::NFTNL_SET_DESC_CONCAT as u16,
                    fields.as_ptr().cast::<c_void>(),
                    fields.len() as u32,
                );
            }
            rc
        };
        if rc < 0 {
            return Err("out of memory".to_owned());
        }
    }
    Ok(WireMsg {
        msg_type: msg,
        family: u16::from(family),
        flags,
        obj: Obj::Set(st),
    })
}

/// Bytes one element takes in an element list message (nests, key, verdict).
fn elem_wire_len(e: &SetElem, with_data: bool) -> usize {
    let align = |n: usize| n.div_ceil(4) * 4;
    let mut n = 4 + 4 + 4 + align(key_bytes(&e.key).len());
    if let (true, Some(v)) = (with_data, &e.verdict) {
        n += 4 + 4 + 8;
        if let (_, Some(c)) = verdict_code(v) {
            n += 4 + align(c.len() + 1);
        }
    }
    n
}

/// Element messages for `elems` of a set, split so that no element list exceeds
/// [`ELEMS_PER_MSG_BYTES`]. `with_data: false` sends keys only (deletion). No elements
/// makes one message without a list, which for `DELSETELEM` flushes the set.
pub(crate) fn elems_msgs(
    msg: u16,
    flags: u16,
    family: u8,
    (table, set): (&str, &str),
    elems: &[SetElem],
    with_data: bool,
) -> Result<Vec<WireMsg>, String> {
    let mut out = Vec::new();
    let mut rest = elems;
    loop {
        let mut n = 0;
        let mut bytes = 0;
        while let Some(e) = rest.get(n) {
            let len = elem_wire_len(e, with_data);
            if n > 0 && bytes + len > ELEMS_PER_MSG_BYTES {
                break;
            }
            bytes += len;
            n += 1;
        }
        let (chunk, tail) = rest.split_at(n);
        let st = new_set(family, table, set)?;
        for e in chunk {
            add_elem(&st, e, with_data)?;
        }
        out.push(WireMsg {
            msg_type: msg,
            family: u16::from(family),
            flags,
            obj: Obj::Elems(st),
        });
        rest = tail;
        if rest.is_empty() {
            return Ok(out);
        }
    }
}

fn add_elem(st: &OwnedSet, e: &SetElem, with_data: bool) -> Result<(), String> {
    let key = key_bytes(&e.key);
    if key.is_empty() {
        return Err("a set element needs a key".to_owned());
    }
    if key.len() > KEY_MAX {
        return Err(format!(
            "element {e}: key of {} bytes is longer than {KEY_MAX}",
            key.len()
        ));
    }
    let verdict = match (with_data, &e.verdict) {
        (true, Some(v)) => {
            let (code, chain) = verdict_code(v);
            let chain = chain.map(|c| cstr(c, "chain name")).transpose()?;
            Some((code, chain))
        }
        _ => None,
    };
    // SAFETY: allocation; null handled.
    let el = NonNull::new(unsafe { sys::nftnl_set_elem_alloc() })
        .ok_or_else(|| "out of memory".to_owned())?;
    let p = el.as_ptr();
    // SAFETY: `p` is a valid element; the key fits libnftnl's 64-byte key buffer (checked
    // above) and is copied, as is the chain name.
    let rc = unsafe {
        let mut rc = sys::nftnl_set_elem_set(
            p,
            sys::NFTNL_SET_ELEM_KEY as u16,
            key.as_ptr().cast::<c_void>(),
            key.len() as u32,
        );
        if let Some((code, chain)) = &verdict {
            sys::nftnl_set_elem_set_u32(p, sys::NFTNL_SET_ELEM_VERDICT as u16, *code as u32);
            if let Some(c) = chain {
                rc |= sys::nftnl_set_elem_set_str(p, sys::NFTNL_SET_ELEM_CHAIN as u16, c.as_ptr());
            }
        }
        rc
    };
    // SAFETY: the set takes ownership of the element, also when we report an error.
    unsafe { sys::nftnl_set_elem_add(st.ptr(), p) };
    if rc < 0 {
        return Err("out of memory".to_owned());
    }
    Ok(())
}

fn build_expr(e: &Expr) -> Result<OwnedExpr, String> {
    let name: &CStr = match e {
        Expr::Payload { .. } => c"payload",
        Expr::Cmp { .. } => c"cmp",
        Expr::Bitwise { .. } => c"bitwise",
        Expr::Meta { .. } => c"meta",
        Expr::Fib { .. } => c"fib",
        Expr::Data { .. } | Expr::Verdict { .. } => c"immediate",
        Expr::Nat { .. } => c"nat",
        Expr::Masq { .. } => c"masq",
        Expr::Lookup { .. } => c"lookup",
        Expr::Ct { .. } => c"ct",
        Expr::Counter { .. } => c"counter",
        Expr::Limit { .. } => c"limit",
        Expr::Log { .. } => c"log",
        Expr::Range { .. } => c"range",
        Expr::Other(s) => return Err(format!("cannot encode expression {s:?}")),
    };
    // SAFETY: allocation; null handled.
    let ex = NonNull::new(unsafe { sys::nftnl_expr_alloc(name.as_ptr()) })
        .map(OwnedExpr)
        .ok_or_else(|| "out of memory".to_owned())?;
    let p = ex.0.as_ptr();
    let set_u32 = |attr: u32, v: u32| {
        // SAFETY: `p` is a valid expression of the type owning `attr`.
        unsafe { sys::nftnl_expr_set_u32(p, attr as u16, v) }
    };
    let set_u64 = |attr: u32, v: u64| {
        // SAFETY: `p` is a valid expression of the type owning `attr`.
        unsafe { sys::nftnl_expr_set_u64(p, attr as u16, v) }
    };
    let set_data = |attr: u32, d: &[u8]| {
        // SAFETY: libnftnl copies `d`.
        unsafe { sys::nftnl_expr_set(p, attr as u16, d.as_ptr().cast::<c_void>(), d.len() as u32) }
    };
    let set_str = |attr: u32, v: &str, what: &str| -> Result<(), String> {
        let v = cstr(v, what)?;
        // SAFETY: the string is copied.
        if unsafe { sys::nftnl_expr_set_str(p, attr as u16, v.as_ptr()) } < 0 {
            return Err("out of memory".to_owned());
        }
        Ok(())
    };
    match e {
        Expr::Payload {
            base,
            offset,
            len,
            dreg,
        } => {
            set_u32(sys::NFTNL_EXPR_PAYLOAD_DREG, *dreg);
            set_u32(sys::NFTNL_EXPR_PAYLOAD_BASE, *base);
            set_u32(sys::NFTNL_EXPR_PAYLOAD_OFFSET, *offset);
            set_u32(sys::NFTNL_EXPR_PAYLOAD_LEN, *len);
        }
        Expr::Cmp { sreg, op, data } => {
            set_u32(sys::NFTNL_EXPR_CMP_SREG, *sreg);
            set_u32(sys::NFTNL_EXPR_CMP_OP, *op);
            set_data(sys::NFTNL_EXPR_CMP_DATA, data);
        }
        Expr::Bitwise {
            sreg,
            dreg,
            len,
            mask,
            xor,
        } => {
            set_u32(sys::NFTNL_EXPR_BITWISE_SREG, *sreg);
            set_u32(sys::NFTNL_EXPR_BITWISE_DREG, *dreg);
            set_u32(sys::NFTNL_EXPR_BITWISE_LEN, *len);
            set_data(sys::NFTNL_EXPR_BITWISE_MASK, mask);
            set_data(sys::NFTNL_EXPR_BITWISE_XOR, xor);
        }
        Expr::Meta { key, dreg } => {
            set_u32(sys::NFTNL_EXPR_META_KEY, *key);
            set_u32(sys::NFTNL_EXPR_META_DREG, *dreg);
        }
        Expr::Fib {
            flags,
            result,
            dreg,
        } => {
            set_u32(sys::NFTNL_EXPR_FIB_FLAGS, *flags);
            set_u32(sys::NFTNL_EXPR_FIB_RESULT, *result);
            set_u32(sys::NFTNL_EXPR_FIB_DREG, *dreg);
        }
        Expr::Data { dreg, data } => {
            set_u32(sys::NFTNL_EXPR_IMM_DREG, *dreg);
            set_data(sys::NFTNL_EXPR_IMM_DATA, data);
        }
        Expr::Verdict { code, chain } => {
            set_u32(sys::NFTNL_EXPR_IMM_DREG, super::expr::REG_VERDICT);
            set_u32(sys::NFTNL_EXPR_IMM_VERDICT, *code as u32);
            if let Some(c) = chain {
                let c = cstr(c, "chain name")?;
                // SAFETY: the string is copied.
                unsafe { sys::nftnl_expr_set_str(p, sys::NFTNL_EXPR_IMM_CHAIN as u16, c.as_ptr()) };
            }
        }
        Expr::Nat {
            nat_type,
            family,
            reg_addr,
            reg_proto,
            flags,
        } => {
            set_u32(sys::NFTNL_EXPR_NAT_TYPE, *nat_type);
            set_u32(sys::NFTNL_EXPR_NAT_FAMILY, *family);
            if let Some((min, max)) = reg_addr {
                set_u32(sys::NFTNL_EXPR_NAT_REG_ADDR_MIN, *min);
                set_u32(sys::NFTNL_EXPR_NAT_REG_ADDR_MAX, *max);
            }
            if let Some((min, max)) = reg_proto {
                set_u32(sys::NFTNL_EXPR_NAT_REG_PROTO_MIN, *min);
                set_u32(sys::NFTNL_EXPR_NAT_REG_PROTO_MAX, *max);
            }
            if *flags != 0 {
                set_u32(sys::NFTNL_EXPR_NAT_FLAGS, *flags);
            }
        }
        Expr::Masq { flags } => {
            if *flags != 0 {
                set_u32(sys::NFTNL_EXPR_MASQ_FLAGS, *flags);
            }
        }
        Expr::Lookup {
            sreg,
            dreg,
            set,
            flags,
        } => {
            set_u32(sys::NFTNL_EXPR_LOOKUP_SREG, *sreg);
            if let Some(d) = dreg {
                set_u32(sys::NFTNL_EXPR_LOOKUP_DREG, *d);
            }
            set_str(sys::NFTNL_EXPR_LOOKUP_SET, set, "set name")?;
            if *flags != 0 {
                set_u32(sys::NFTNL_EXPR_LOOKUP_FLAGS, *flags);
            }
        }
        Expr::Ct { key, dreg } => {
            set_u32(sys::NFTNL_EXPR_CT_KEY, *key);
            set_u32(sys::NFTNL_EXPR_CT_DREG, *dreg);
        }
        Expr::Counter { packets, bytes } => {
            set_u64(sys::NFTNL_EXPR_CTR_PACKETS, *packets);
            set_u64(sys::NFTNL_EXPR_CTR_BYTES, *bytes);
        }
        Expr::Limit {
            rate,
            unit,
            burst,
            kind,
            flags,
        } => {
            set_u64(sys::NFTNL_EXPR_LIMIT_RATE, *rate);
            set_u64(sys::NFTNL_EXPR_LIMIT_UNIT, *unit);
            set_u32(sys::NFTNL_EXPR_LIMIT_BURST, *burst);
            set_u32(sys::NFTNL_EXPR_LIMIT_TYPE, *kind);
            set_u32(sys::NFTNL_EXPR_LIMIT_FLAGS, *flags);
        }
        Expr::Log {
            prefix,
            group,
            level,
            flags,
        } => {
            if let Some(pre) = prefix {
                set_str(sys::NFTNL_EXPR_LOG_PREFIX, pre, "log prefix")?;
            }
            if let Some(g) = group {
                // SAFETY: as for `set_u32`.
                unsafe { sys::nftnl_expr_set_u16(p, sys::NFTNL_EXPR_LOG_GROUP as u16, *g) };
            }
            if let Some(l) = level {
                set_u32(sys::NFTNL_EXPR_LOG_LEVEL, *l);
            }
            if *flags != 0 {
                set_u32(sys::NFTNL_EXPR_LOG_FLAGS, *flags);
            }
        }
        Expr::Range { sreg, op, from, to } => {
            set_u32(sys::NFTNL_EXPR_RANGE_SREG, *sreg);
            set_u32(sys::NFTNL_EXPR_RANGE_OP, *op);
            set_data(sys::NFTNL_EXPR_RANGE_FROM_DATA, from);
            set_data(sys::NFTNL_EXPR_RANGE_TO_DATA, to);
        }
        Expr::Other(_) => {}
    }
    Ok(ex)
}

/// Reads one expression of a parsed rule.
///
/// # Safety
/// `p` must be a valid expression owned by a live rule.
unsafe fn parse_expr(p: *const sys::nftnl_expr) -> Expr {
    let is_set = |attr: u32| unsafe { sys::nftnl_expr_is_set(p, attr as u16) };
    let u32_of = |attr: u32| unsafe { sys::nftnl_expr_get_u32(p, attr as u16) };
    let data_of = |attr: u32| -> Vec<u8> {
        let mut len = 0u32;
        // SAFETY: libnftnl returns a pointer to `len` bytes inside the expression, or null.
        let d = unsafe { sys::nftnl_expr_get(p, attr as u16, &mut len) };
        if d.is_null() {
            return Vec::new();
        }
        // SAFETY: as above.
        unsafe { std::slice::from_raw_parts(d.cast::<u8>(), len as usize) }.to_vec()
    };
    let str_of = |attr: u32| -> Option<String> {
        // SAFETY: a NUL-terminated string owned by the expression, or null.
        let s = unsafe { sys::nftnl_expr_get_str(p, attr as u16) };
        (!s.is_null()).then(|| unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned())
    };
    let u64_of = |attr: u32| unsafe { sys::nftnl_expr_get_u64(p, attr as u16) };
    let opt_u32 = |attr: u32| is_set(attr).then(|| u32_of(attr));
    let name = str_of(sys::NFTNL_EXPR_NAME).unwrap_or_default();
    match name.as_str() {
        "payload" if !is_set(sys::NFTNL_EXPR_PAYLOAD_SREG) => Expr::Payload {
            base: u32_of(sys::NFTNL_EXPR_PAYLOAD_BASE),
            offset: u32_of(sys::NFTNL_EXPR_PAYLOAD_OFFSET),
            len: u32_of(sys::NFTNL_EXPR_PAYLOAD_LEN),
            dreg: u32_of(sys::NFTNL_EXPR_PAYLOAD_DREG),
        },
        "cmp" => Expr::Cmp {
            sreg: u32_of(sys::NFTNL_EXPR_CMP_SREG),
            op: u32_of(sys::NFTNL_EXPR_CMP_OP),
            data: data_of(sys::NFTNL_EXPR_CMP_DATA),
        },
        // Only the mask-and-xor form (op 0, `NFT_BITWISE_BOOL`); shifts stay unknown.
        "bitwise"
            if !is_set(sys::NFTNL_EXPR_BITWISE_OP) || u32_of(sys::NFTNL_EXPR_BITWISE_OP) == 0 =>
        {
            Expr::Bitwise {
                sreg: u32_of(sys::NFTNL_EXPR_BITWISE_SREG),
                dreg: u32_of(sys::NFTNL_EXPR_BITWISE_DREG),
                len: u32_of(sys::NFTNL_EXPR_BITWISE_LEN),
                mask: data_of(sys::NFTNL_EXPR_BITWISE_MASK),
                xor: data_of(sys::NFTNL_EXPR_BITWISE_XOR),
            }
        }
        "meta" if !is_set(sys::NFTNL_EXPR_META_SREG) => Expr::Meta {
            key: u32_of(sys::NFTNL_EXPR_META_KEY),
            dreg: u32_of(sys::NFTNL_EXPR_META_DREG),
        },
        "fib" => Expr::Fib {
            flags: u32_of(sys::NFTNL_EXPR_FIB_FLAGS),
            result: u32_of(sys::NFTNL_EXPR_FIB_RESULT),
            dreg: u32_of(sys::NFTNL_EXPR_FIB_DREG),
        },
        "immediate" => {
            let dreg = u32_of(sys::NFTNL_EXPR_IMM_DREG);
            if dreg == super::expr::REG_VERDICT {
                Expr::Verdict {
                    code: u32_of(sys::NFTNL_EXPR_IMM_VERDICT) as i32,
                    chain: if is_set(sys::NFTNL_EXPR_IMM_CHAIN) {
                        str_of(sys::NFTNL_EXPR_IMM_CHAIN)
                    } else {
                        None
                    },
                }
            } else {
                Expr::Data {
                    dreg,
                    data: data_of(sys::NFTNL_EXPR_IMM_DATA),
                }
            }
        }
        "nat" => {
            let pair = |min: u32, max: u32| {
                is_set(min).then(|| {
                    let lo = u32_of(min);
                    (lo, if is_set(max) { u32_of(max) } else { lo })
                })
            };
            Expr::Nat {
                nat_type: u32_of(sys::NFTNL_EXPR_NAT_TYPE),
                family: u32_of(sys::NFTNL_EXPR_NAT_FAMILY),
                reg_addr: pair(
                    sys::NFTNL_EXPR_NAT_REG_ADDR_MIN,
                    sys::NFTNL_EXPR_NAT_REG_ADDR_MAX,
                ),
                reg_proto: pair(
                    sys::NFTNL_EXPR_NAT_REG_PROTO_MIN,
                    sys::NFTNL_EXPR_NAT_REG_PROTO_MAX,
                ),
                flags: u32_of(sys::NFTNL_EXPR_NAT_FLAGS),
            }
        }
        "masq" if !is_set(sys::NFTNL_EXPR_MASQ_REG_PROTO_MIN) => Expr::Masq {
            flags: u32_of(sys::NFTNL_EXPR_MASQ_FLAGS),
        },
        "lookup" if is_set(sys::NFTNL_EXPR_LOOKUP_SET) => Expr::Lookup {
            sreg: u32_of(sys::NFTNL_EXPR_LOOKUP_SREG),
            dreg: opt_u32(sys::NFTNL_EXPR_LOOKUP_DREG),
            set: str_of(sys::NFTNL_EXPR_LOOKUP_SET).unwrap_or_default(),
            flags: opt_u32(sys::NFTNL_EXPR_LOOKUP_FLAGS).unwrap_or(0),
        },
        "ct" if is_set(sys::NFTNL_EXPR_CT_DREG) && !is_set(sys::NFTNL_EXPR_CT_DIR) => Expr::Ct {
            key: u32_of(sys::NFTNL_EXPR_CT_KEY),
            dreg: u32_of(sys::NFTNL_EXPR_CT_DREG),
        },
        "counter" => Expr::Counter {
            packets: u64_of(sys::NFTNL_EXPR_CTR_PACKETS),
            bytes: u64_of(sys::NFTNL_EXPR_CTR_BYTES),
        },
        "limit" => Expr::Limit {
            rate: u64_of(sys::NFTNL_EXPR_LIMIT_RATE),
            unit: u64_of(sys::NFTNL_EXPR_LIMIT_UNIT),
            burst: u32_of(sys::NFTNL_EXPR_LIMIT_BURST),
            kind: u32_of(sys::NFTNL_EXPR_LIMIT_TYPE),
            flags: opt_u32(sys::NFTNL_EXPR_LIMIT_FLAGS).unwrap_or(0),
        },
        "log"
            if !is_set(sys::NFTNL_EXPR_LOG_SNAPLEN) && !is_set(sys::NFTNL_EXPR_LOG_QTHRESHOLD) =>
        {
            Expr::Log {
                prefix: if is_set(sys::NFTNL_EXPR_LOG_PREFIX) {
                    str_of(sys::NFTNL_EXPR_LOG_PREFIX)
                } else {
                    None
                },
                group: is_set(sys::NFTNL_EXPR_LOG_GROUP)
                    // SAFETY: a valid log expression with the group set.
                    .then(|| unsafe {
                        sys::nftnl_expr_get_u16(p, sys::NFTNL_EXPR_LOG_GROUP as u16)
                    }),
                level: opt_u32(sys::NFTNL_EXPR_LOG_LEVEL),
                flags: opt_u32(sys::NFTNL_EXPR_LOG_FLAGS).unwrap_or(0),
            }
        }
        "range" => Expr::Range {
            sreg: u32_of(sys::NFTNL_EXPR_RANGE_SREG),
            op: u32_of(sys::NFTNL_EXPR_RANGE_OP),
            from: data_of(sys::NFTNL_EXPR_RANGE_FROM_DATA),
            to: data_of(sys::NFTNL_EXPR_RANGE_TO_DATA),
        },
        other => Expr::Other(other.to_owned()),
    }
}

/// An 8-byte aligned copy of one netlink message, for libnftnl's parsers.
struct Aligned(Vec<u64>);

impl Aligned {
    fn new(msg: &[u8]) -> Aligned {
        let mut v = vec![0u64; msg.len().div_ceil(8).max(2)];
        // SAFETY: `v` has at least `msg.len()` bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(msg.as_ptr(), v.as_mut_ptr().cast::<u8>(), msg.len())
        };
        Aligned(v)
    }

    fn nlh(&self) -> *const libc::nlmsghdr {
        self.0.as_ptr().cast()
    }
}

fn get_str(s: *const c_char) -> String {
    if s.is_null() {
        return String::new();
    }
    // SAFETY: a NUL-terminated string owned by a live libnftnl object.
    unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
}

/// A rule as the kernel reported it, before lifting.
#[derive(Debug)]
pub(crate) struct RawRule {
    pub table: String,
    pub chain: String,
    pub handle: u64,
    pub exprs: Vec<Expr>,
    pub comment: Option<String>,
}

/// Parses one `NFT_MSG_NEWRULE` message.
pub(crate) fn parse_rule(msg: &[u8]) -> Result<RawRule, String> {
    let r = OwnedRule::new()?;
    let a = Aligned::new(msg);
    // SAFETY: `a` holds a complete netlink message; `r` is valid.
    if unsafe { sys::nftnl_rule_nlmsg_parse(a.nlh(), r.ptr()) } < 0 {
        return Err("malformed rule message".to_owned());
    }
    // SAFETY: getters on a valid rule; returned pointers live as long as `r`.
    let (table, chain, handle, comment) = unsafe {
        let mut len = 0u32;
        let ud = sys::nftnl_rule_get_data(r.ptr(), sys::NFTNL_RULE_USERDATA as u16, &mut len);
        let comment = if ud.is_null() {
            None
        } else {
            decode_comment(std::slice::from_raw_parts(ud.cast::<u8>(), len as usize))
        };
        (
            get_str(sys::nftnl_rule_get_str(
                r.ptr(),
                sys::NFTNL_RULE_TABLE as u16,
            )),
            get_str(sys::nftnl_rule_get_str(
                r.ptr(),
                sys::NFTNL_RULE_CHAIN as u16,
            )),
            sys::nftnl_rule_get_u64(r.ptr(), sys::NFTNL_RULE_HANDLE as u16),
            comment,
        )
    };
    let mut exprs = Vec::new();
    // SAFETY: the iterator is destroyed before `r`; each expression is read while valid.
    unsafe {
        let it = sys::nftnl_expr_iter_create(r.ptr());
        if it.is_null() {
            return Err("out of memory".to_owned());
        }
        loop {
            let e = sys::nftnl_expr_iter_next(it);
            if e.is_null() {
                break;
            }
            exprs.push(parse_expr(e));
        }
        sys::nftnl_expr_iter_destroy(it);
    }
    Ok(RawRule {
        table,
        chain,
        handle,
        exprs,
        comment,
    })
}

/// A chain as the kernel reported it.
#[derive(Debug)]
pub(crate) struct RawChain {
    pub table: String,
    pub name: String,
    pub handle: u64,
    pub base: Option<BaseChain>,
}

/// Parses one `NFT_MSG_NEWCHAIN` message.
pub(crate) fn parse_chain(msg: &[u8]) -> Result<RawChain, String> {
    let c = OwnedChain::new()?;
    let a = Aligned::new(msg);
    // SAFETY: complete message, valid chain.
    if unsafe { sys::nftnl_chain_nlmsg_parse(a.nlh(), c.ptr()) } < 0 {
        return Err("malformed chain message".to_owned());
    }
    // SAFETY: getters on a valid chain.
    unsafe {
        let p = c.ptr();
        let base = if sys::nftnl_chain_is_set(p, sys::NFTNL_CHAIN_HOOKNUM as u16) {
            let ty = get_str(sys::nftnl_chain_get_str(p, sys::NFTNL_CHAIN_TYPE as u16));
            let hook = sys::nftnl_chain_get_u32(p, sys::NFTNL_CHAIN_HOOKNUM as u16);
            Some(BaseChain {
                chain_type: ChainType::parse(&ty)
                    .ok_or_else(|| format!("unknown chain type {ty:?}"))?,
                hook: Hook::from_number(hook).ok_or_else(|| format!("unknown hook {hook}"))?,
                priority: sys::nftnl_chain_get_s32(p, sys::NFTNL_CHAIN_PRIO as u16),
                policy: if sys::nftnl_chain_get_u32(p, sys::NFTNL_CHAIN_POLICY as u16) == 0 {
                    Policy::Drop
                } else {
                    Policy::Accept
                },
            })
        } else {
            None
        };
        Ok(RawChain {
            table: get_str(sys::nftnl_chain_get_str(p, sys::NFTNL_CHAIN_TABLE as u16)),
            name: get_str(sys::nftnl_chain_get_str(p, sys::NFTNL_CHAIN_NAME as u16)),
            handle: sys::nftnl_chain_get_u64(p, sys::NFTNL_CHAIN_HANDLE as u16),
            base,
        })
    }
}

/// A set as the kernel reported it.
#[derive(Debug)]
pub(crate) struct RawSet {
    pub table: String,
    pub name: String,
    pub handle: u64,
    pub flags: u32,
    pub key_type: u32,
    pub key_len: u32,
    pub data_type: Option<u32>,
    pub comment: Option<String>,
}

fn set_str_of(st: &OwnedSet, attr: u32) -> String {
    // SAFETY: getter on a valid set; the string lives as long as `st`.
    get_str(unsafe { sys::nftnl_set_get_str(st.ptr(), attr as u16) })
}

fn set_u32_of(st: &OwnedSet, attr: u32) -> Option<u32> {
    // SAFETY: getters on a valid set.
    unsafe {
        sys::nftnl_set_is_set(st.ptr(), attr as u16)
            .then(|| sys::nftnl_set_get_u32(st.ptr(), attr as u16))
    }
}

/// Parses one `NFT_MSG_NEWSET` message.
pub(crate) fn parse_set(msg: &[u8]) -> Result<RawSet, String> {
    let st = OwnedSet::new()?;
    let a = Aligned::new(msg);
    // SAFETY: complete message, valid set.
    if unsafe { sys::nftnl_set_nlmsg_parse(a.nlh(), st.ptr()) } < 0 {
        return Err("malformed set message".to_owned());
    }
    // SAFETY: getters on a valid set; the user data lives as long as `st`.
    let (handle, comment) = unsafe {
        let p = st.ptr();
        let mut len = 0u32;
        let ud = sys::nftnl_set_get_data(p, sys::NFTNL_SET_USERDATA as u16, &mut len);
        let comment = if ud.is_null() {
            None
        } else {
            decode_set_comment(std::slice::from_raw_parts(ud.cast::<u8>(), len as usize))
        };
        (
            sys::nftnl_set_get_u64(p, sys::NFTNL_SET_HANDLE as u16),
            comment,
        )
    };
    Ok(RawSet {
        table: set_str_of(&st, sys::NFTNL_SET_TABLE),
        name: set_str_of(&st, sys::NFTNL_SET_NAME),
        handle,
        flags: set_u32_of(&st, sys::NFTNL_SET_FLAGS).unwrap_or(0),
        key_type: set_u32_of(&st, sys::NFTNL_SET_KEY_TYPE).ok_or("set without key type")?,
        key_len: set_u32_of(&st, sys::NFTNL_SET_KEY_LEN).ok_or("set without key length")?,
        data_type: set_u32_of(&st, sys::NFTNL_SET_DATA_TYPE),
        comment,
    })
}

/// An element as the kernel reported it.
#[derive(Debug, Default)]
pub(crate) struct RawElem {
    pub key: Vec<u8>,
    pub flags: u32,
    /// Verdict code and chain, for a verdict map's element.
    pub verdict: Option<(i32, Option<String>)>,
    /// The element carries data other than a verdict.
    pub other_data: bool,
}

/// The elements of one `NFT_MSG_NEWSETELEM` message, with its table and set names.
pub(crate) struct RawElems {
    pub table: String,
    pub set: String,
    pub elems: Vec<RawElem>,
}

unsafe extern "C" fn collect_elem(e: *mut sys::nftnl_set_elem, data: *mut c_void) -> libc::c_int {
    // SAFETY: `data` is the `Vec<RawElem>` passed by `parse_elems`; `e` is a valid element
    // of the set being iterated.
    unsafe {
        let out = &mut *data.cast::<Vec<RawElem>>();
        let is_set = |attr: u32| sys::nftnl_set_elem_is_set(e, attr as u16);
        let mut raw = RawElem::default();
        if is_set(sys::NFTNL_SET_ELEM_KEY) {
            let mut len = 0u32;
            let k = sys::nftnl_set_elem_get(e, sys::NFTNL_SET_ELEM_KEY as u16, &mut len);
            if !k.is_null() {
                raw.key = std::slice::from_raw_parts(k.cast::<u8>(), len as usize).to_vec();
            }
        }
        if is_set(sys::NFTNL_SET_ELEM_FLAGS) {
            raw.flags = sys::nftnl_set_elem_get_u32(e, sys::NFTNL_SET_ELEM_FLAGS as u16);
        }
        if is_set(sys::NFTNL_SET_ELEM_VERDICT) {
            let code = sys::nftnl_set_elem_get_u32(e, sys::NFTNL_SET_ELEM_VERDICT as u16) as i32;
            let chain = is_set(sys::NFTNL_SET_ELEM_CHAIN).then(|| {
                get_str(sys::nftnl_set_elem_get_str(
                    e,
                    sys::NFTNL_SET_ELEM_CHAIN as u16,
                ))
            });
            raw.verdict = Some((code, chain));
        }
        raw.other_data = is_set(sys::NFTNL_SET_ELEM_DATA);
        out.push(raw);
    }
    0
}

/// Parses one `NFT_MSG_NEWSETELEM` message.
pub(crate) fn parse_elems(msg: &[u8]) -> Result<RawElems, String> {
    let st = OwnedSet::new()?;
    let a = Aligned::new(msg);
    // SAFETY: complete message, valid set.
    if unsafe { sys::nftnl_set_elems_nlmsg_parse(a.nlh(), st.ptr()) } < 0 {
        return Err("malformed set element message".to_owned());
    }
    let mut elems: Vec<RawElem> = Vec::new();
    // SAFETY: the callback only touches `elems` and the element it is given.
    unsafe {
        sys::nftnl_set_elem_foreach(
            st.ptr(),
            Some(collect_elem),
            (&mut elems as *mut Vec<RawElem>).cast::<c_void>(),
        )
    };
    Ok(RawElems {
        table: set_str_of(&st, sys::NFTNL_SET_TABLE),
        set: set_str_of(&st, sys::NFTNL_SET_NAME),
        elems,
    })
}

/// A query: `NFT_MSG_GET*` for one object, or a dump when `dump` is set.
pub(crate) struct Query<'a> {
    pub msg: u16,
    pub family: u8,
    pub table: Option<&'a str>,
    pub chain: Option<&'a str>,
    /// The set whose elements `NFT_MSG_GETSETELEM` lists.
    pub set: Option<&'a str>,
    pub dump: bool,
}

/// The bytes of a query message with sequence number `seq`.
pub(crate) fn query_bytes(q: &Query<'_>, seq: u32) -> Result<Vec<u8>, String> {
    // Requests carry at most two names of at most 256 bytes each.
    let mut buf = vec![0u64; 1024];
    let flags = if q.dump { NLM_F_DUMP } else { 0 };
    let wire = match q.msg {
        NFT_MSG_GETTABLE => table_msg(q.msg, flags, q.family, q.table.unwrap_or(""))?,
        NFT_MSG_GETCHAIN => {
            let c = OwnedChain::new()?;
            // SAFETY: valid chain; strings copied.
            unsafe {
                sys::nftnl_chain_set_u32(c.ptr(), sys::NFTNL_CHAIN_FAMILY as u16, q.family.into())
            };
            if let Some(t) = q.table {
                let t = cstr(t, "table name")?;
                // SAFETY: as above.
                unsafe {
                    sys::nftnl_chain_set_str(c.ptr(), sys::NFTNL_CHAIN_TABLE as u16, t.as_ptr())
                };
            }
            if let Some(n) = q.chain {
                let n = cstr(n, "chain name")?;
                // SAFETY: as above.
                unsafe {
                    sys::nftnl_chain_set_str(c.ptr(), sys::NFTNL_CHAIN_NAME as u16, n.as_ptr())
                };
            }
            WireMsg {
                msg_type: q.msg,
                family: q.family.into(),
                flags,
                obj: Obj::Chain(c),
            }
        }
        NFT_MSG_GETRULE => rule_msg(
            q.msg,
            flags,
            &RuleSpec {
                family: q.family,
                table: q.table.unwrap_or(""),
                chain: q.chain,
                handle: None,
                exprs: &[],
                comment: None,
            },
        )?,
        NFT_MSG_GETSET => {
            let st = OwnedSet::new()?;
            // SAFETY: valid set.
            unsafe {
                sys::nftnl_set_set_u32(st.ptr(), sys::NFTNL_SET_FAMILY as u16, q.family.into())
            };
            if let Some(t) = q.table {
                let t = cstr(t, "table name")?;
                // SAFETY: valid set; the string is copied.
                if unsafe {
                    sys::nftnl_set_set_str(st.ptr(), sys::NFTNL_SET_TABLE as u16, t.as_ptr())
                } < 0
                {
                    return Err("out of memory".to_owned());
                }
            }
            WireMsg {
                msg_type: q.msg,
                family: q.family.into(),
                flags,
                obj: Obj::Set(st),
            }
        }
        NFT_MSG_GETSETELEM => WireMsg {
            msg_type: q.msg,
            family: q.family.into(),
            flags,
            obj: Obj::Elems(new_set(
                q.family,
                q.table.unwrap_or(""),
                q.set.unwrap_or(""),
            )?),
        },
        other => return Err(format!("unsupported query {other}")),
    };
    if [q.table, q.chain, q.set]
        .iter()
        .any(|n| n.is_some_and(|n| n.len() > 256))
    {
        return Err("name longer than 256 bytes".to_owned());
    }
    // SAFETY: 8 KiB buffer, far more than a header with two bounded names.
    unsafe {
        nftnl::NlMsg::write(
            &wire,
            buf.as_mut_ptr().cast::<c_void>(),
            seq,
            nftnl::MsgType::Add,
        )
    };
    let bytes: &[u8] =
        // SAFETY: reinterpreting the u64 buffer as bytes.
        unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), buf.len() * 8) };
    let len = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    Ok(bytes[..len.min(bytes.len())].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_are_stored_like_nft() {
        // `nft --debug=netlink` shows `userdata = { \x00\x04abc\x00 }` for comment "abc".
        assert_eq!(encode_comment("abc").unwrap(), b"\x00\x04abc\x00".to_vec());
        assert_eq!(decode_comment(b"\x00\x04abc\x00").as_deref(), Some("abc"));
        assert_eq!(
            decode_comment(b"\x01\x01x\x00\x04abc\x00").as_deref(),
            Some("abc")
        );
        assert_eq!(decode_comment(b"\x00\x09abc"), None);
        assert!(encode_comment(&"x".repeat(128)).is_err());
        assert!(encode_comment("a\"b").is_err());
    }

    #[test]
    fn queries_and_rules_encode() {
        let q = Query {
            msg: NFT_MSG_GETRULE,
            family: 2,
            table: Some("t"),
            chain: Some("c"),
            set: None,
            dump: true,
        };
        let b = query_bytes(&q, 7).unwrap();
        // nlmsghdr: type, flags (REQUEST | DUMP), seq.
        assert_eq!(u16::from_ne_bytes([b[4], b[5]]), nft_type(NFT_MSG_GETRULE));
        assert_eq!(u16::from_ne_bytes([b[6], b[7]]), 1 | NLM_F_DUMP);
        assert_eq!(u32::from_ne_bytes([b[8], b[9], b[10], b[11]]), 7);
        assert_eq!(b[16], 2);
    }

    #[test]
    fn rules_round_trip_through_libnftnl() {
        use crate::nft::expr::lower;
        use crate::nft::model::{Family, L4Proto, Rule, Stmt};
        let rule = Rule::new(vec![
            Stmt::dport(L4Proto::Udp, 53),
            Stmt::Dnat {
                addr: "10.0.0.2".parse().unwrap(),
                port: Some(5353),
            },
        ]);
        let exprs = lower(Family::Ip, &rule).unwrap();
        let msg = rule_msg(
            NFT_MSG_NEWRULE,
            NLM_F_CREATE | NLM_F_APPEND,
            &RuleSpec {
                family: 2,
                table: "t",
                chain: Some("c"),
                handle: Some(9),
                exprs: &exprs,
                comment: Some("hello"),
            },
        )
        .unwrap();
        let mut buf = vec![0u64; 8192];
        unsafe { nftnl::NlMsg::write(&msg, buf.as_mut_ptr().cast(), 1, nftnl::MsgType::Add) };
        let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), 65536) };
        let len = u32::from_ne_bytes(bytes[..4].try_into().unwrap()) as usize;
        let raw = parse_rule(&bytes[..len]).unwrap();
        assert_eq!(
            (raw.table.as_str(), raw.chain.as_str(), raw.handle),
            ("t", "c", 9)
        );
        assert_eq!(raw.comment.as_deref(), Some("hello"));
        assert_eq!(raw.exprs, exprs);
    }

    fn bytes_of(m: &WireMsg) -> Vec<u8> {
        let mut buf = vec![0u64; (nftnl::nft_nlmsg_maxsize() as usize).div_ceil(8)];
        // SAFETY: the buffer has room for the largest message.
        unsafe { nftnl::NlMsg::write(m, buf.as_mut_ptr().cast(), 1, nftnl::MsgType::Add) };
        // SAFETY: reinterpreting the u64 buffer as bytes.
        let b = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), buf.len() * 8) };
        let len = u32::from_ne_bytes(b[..4].try_into().unwrap()) as usize;
        b[..len].to_vec()
    }

    #[test]
    fn sets_round_trip_through_libnftnl() {
        use crate::nft::model::{KeyType, Set};
        let mut s = Set::vmap("m", vec![KeyType::Ipv4Addr, KeyType::InetService]);
        s.comment = Some("policy".into());
        let msg = set_msg(NFT_MSG_NEWSET, NLM_F_CREATE, 1, ("t", "m"), Some((&s, 7))).unwrap();
        let raw = parse_set(&bytes_of(&msg)).unwrap();
        assert_eq!((raw.table.as_str(), raw.name.as_str()), ("t", "m"));
        assert_eq!(raw.flags, SET_MAP | SET_CONCAT);
        assert_eq!((raw.key_type, raw.key_len), ((7 << 6) | 13, 8));
        assert_eq!(raw.data_type, Some(DATA_VERDICT));
        assert_eq!(raw.comment.as_deref(), Some("policy"));
        // As nft writes it: key byte order (big endian for an address), comment.
        let plain = Set::new("s", vec![KeyType::Ipv4Addr]);
        assert_eq!(encode_set_udata(&plain).unwrap(), [0, 4, 2, 0, 0, 0]);
        assert_eq!(
            decode_set_comment(&encode_set_udata(&s).unwrap()).as_deref(),
            Some("policy")
        );
    }

    #[test]
    fn elements_round_trip_through_libnftnl() {
        use crate::nft::model::{KeyPart, SetElem, Verdict};
        let elems = vec![
            SetElem::map(
                vec![
                    KeyPart::Addr("10.0.0.1".parse().unwrap()),
                    KeyPart::Port(80),
                ],
                Verdict::Jump("pods".into()),
            ),
            SetElem::map(
                vec![
                    KeyPart::Addr("10.0.0.2".parse().unwrap()),
                    KeyPart::Port(81),
                ],
                Verdict::Drop,
            ),
        ];
        // libnftnl parses back only lists of one element (see `ELEMS_PER_MSG_BYTES`).
        let one = |e: &SetElem, with_data| {
            let msgs = elems_msgs(
                NFT_MSG_NEWSETELEM,
                NLM_F_CREATE,
                1,
                ("t", "m"),
                std::slice::from_ref(e),
                with_data,
            )
            .unwrap();
            assert_eq!(msgs.len(), 1);
            parse_elems(&bytes_of(&msgs[0])).unwrap()
        };
        let raw = one(&elems[0], true);
        assert_eq!((raw.table.as_str(), raw.set.as_str()), ("t", "m"));
        assert_eq!(raw.elems.len(), 1);
        assert_eq!(raw.elems[0].key, vec![10, 0, 0, 1, 0, 80, 0, 0]);
        assert_eq!(raw.elems[0].verdict, Some((-3, Some("pods".into()))));
        assert_eq!(one(&elems[1], true).elems[0].verdict, Some((0, None)));
        // Deletion sends keys only.
        assert_eq!(one(&elems[0], false).elems[0].verdict, None);
        let both = elems_msgs(NFT_MSG_NEWSETELEM, 0, 1, ("t", "m"), &elems, true).unwrap();
        assert_eq!(both.len(), 1);
        // No elements: one message without a list (a flush).
        let msgs = elems_msgs(NFT_MSG_DELSETELEM, 0, 1, ("t", "m"), &[], false).unwrap();
        assert_eq!(msgs.len(), 1);
        assert!(parse_elems(&bytes_of(&msgs[0])).unwrap().elems.is_empty());
        // Keys longer than the registers are refused.
        let long = SetElem::key(vec![KeyPart::Addr("::1".parse().unwrap()); 5]);
        assert!(elems_msgs(NFT_MSG_NEWSETELEM, 0, 1, ("t", "s"), &[long], true).is_err());
    }
}
