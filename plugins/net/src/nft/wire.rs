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

use super::expr::Expr;
use super::model::{BaseChain, ChainType, Hook, Policy};
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

/// `nlmsg_type` of an nf_tables message (`NFNL_SUBSYS_NFTABLES << 8 | msg`).
pub(crate) fn nft_type(msg: u16) -> u16 {
    (10 << 8) | msg
}

pub(crate) const NLM_F_ACK: u16 = 0x4;
pub(crate) const NLM_F_DUMP: u16 = 0x300;
pub(crate) const NLM_F_APPEND: u16 = 0x800;
pub(crate) const NLM_F_CREATE: u16 = 0x400;

/// Longest comment `nft` accepts (`NFTNL_UDATA_COMMENT_MAXLEN` with its NUL).
pub const COMMENT_MAX: usize = 127;
const UDATA_RULE_COMMENT: u8 = 0;

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
}

/// One message of a transaction, ready to be written into an `nftnl::Batch`.
pub(crate) struct WireMsg {
    msg_type: u16,
    family: u16,
    flags: u16,
    obj: Obj,
}

// SAFETY: `write` builds one header and one object payload, both bounded by the object's
// attributes (names limited to 256 bytes by `cstr` callers, at most a few dozen expressions),
// far below `nft_nlmsg_maxsize()` which `Batch` guarantees.
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
    let set_data = |attr: u32, d: &[u8]| {
        // SAFETY: libnftnl copies `d`.
        unsafe { sys::nftnl_expr_set(p, attr as u16, d.as_ptr().cast::<c_void>(), d.len() as u32) }
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

/// A query: `NFT_MSG_GET*` for one object, or a dump when `dump` is set.
pub(crate) struct Query<'a> {
    pub msg: u16,
    pub family: u8,
    pub table: Option<&'a str>,
    pub chain: Option<&'a str>,
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
        other => return Err(format!("unsupported query {other}")),
    };
    if q.table.is_some_and(|t| t.len() > 256) || q.chain.is_some_and(|c| c.len() > 256) {
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
            NLM_F_CREATE | NLM_F_APPEND | NLM_F_ACK,
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
}
