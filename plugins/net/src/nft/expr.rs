//! Kernel-level nftables expressions, and the translation between them and [`Stmt`]s.
//!
//! The kernel knows no `ip saddr 10.0.0.0/24`: it runs a register machine (`payload load 3b @
//! network header + 12 => reg 1; cmp eq reg 1 0x0a0000`). [`lower`] emits exactly the sequences
//! that `nft` 1.0.x emits for the same statement (byte-aligned prefixes load only the prefix
//! bytes, other prefixes load the whole address and mask it; inet tables get a `meta nfproto`
//! dependency before an address match; `dnat` sets both min and max registers), so a rule we
//! add and the same rule added by `nft -f` are identical in the kernel and `nft list` prints
//! ours the same way. [`lift`] reverses that for rules read back from the kernel; a sequence
//! it does not recognise becomes [`Stmt::Unknown`] with a register-level description.
//!
//! Quirks followed for identity with nft:
//! - a rule matches its address family once: after the first IPv4 match of an inet or
//!   bridge rule, later IPv4 fields carry no `meta nfproto` (EtherType) dependency of their
//!   own; lifting tracks the family the rule has matched so far;
//! - a lookup key is loaded field after field into consecutive 32-bit registers (registers
//!   are 4 bytes since Linux 4.1), each field padded to 4 bytes, and registers are named the
//!   old 128-bit way when one starts there (`ip daddr . meta l4proto . th dport` loads reg
//!   1, 9, 10; see [`reg_name`]); the set key is padded the same way;
//! - `ct state a,b` is a load, a mask with the state bits and a compare with zero;
//! - counters are written fresh (0 packets, 0 bytes) whatever the model says, and read back
//!   with the kernel's values;
//! - port ranges are written as one `range` expression; nft 1.0 writes `cmp gte` + `cmp
//!   lte`, and both lift to [`Stmt::PortRange`];
//! - the kernel reports level 4 for a `log` without one; that is the default and lifts away.
//!
//! Everything here is pure: the FFI to libnftnl lives in `wire.rs`.

use super::model::{
    AddrField, CmpOp, CtState, Family, Field, IfField, L4Proto, LimitUnit, PortField, Rule, Stmt,
    Verdict, normalize,
};
use ipnetwork::IpNetwork;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Register holding the verdict.
pub const REG_VERDICT: u32 = 0;
/// First 128-bit data register (as used by `nft`).
pub const REG_1: u32 = 1;
/// Second 128-bit data register.
pub const REG_2: u32 = 2;

pub const PAYLOAD_LL: u32 = 0;
pub const PAYLOAD_NETWORK: u32 = 1;
pub const PAYLOAD_TRANSPORT: u32 = 2;

/// First 32-bit data register; registers 1-4 are the 128-bit names of 32-bit registers
/// 0, 4, 8 and 12.
pub const REG32_00: u32 = 8;
/// Number of 32-bit data registers (64 bytes).
pub const REG32_COUNT: u32 = 16;

pub const CMP_EQ: u32 = 0;
pub const CMP_NEQ: u32 = 1;
pub const CMP_LTE: u32 = 3;
pub const CMP_GTE: u32 = 5;

pub const RANGE_EQ: u32 = 0;

/// `NFT_LOOKUP_F_INV`: the lookup matches when the key is absent.
pub const LOOKUP_F_INV: u32 = 1;

/// `NFT_CT_STATE`.
pub const CT_STATE: u32 = 0;

/// `NFT_LIMIT_PKTS`.
pub const LIMIT_PKTS: u32 = 0;
/// The log level the kernel reports for a `log` without one (`warn`).
pub const LOG_LEVEL_DEFAULT: u32 = 4;
/// Longest log prefix (`NF_LOG_PREFIXLEN` without its NUL).
pub const LOG_PREFIX_MAX: usize = 127;

pub const META_IIFNAME: u32 = 6;
pub const META_OIFNAME: u32 = 7;
pub const META_NFPROTO: u32 = 15;
pub const META_L4PROTO: u32 = 16;

pub const FIB_F_DADDR: u32 = 1 << 1;
pub const FIB_RESULT_ADDRTYPE: u32 = 3;
/// `RTN_LOCAL`: an address of this host.
pub const RTN_LOCAL: u32 = 2;

pub const NAT_DNAT: u32 = 1;
pub const NAT_RANGE_MAP_IPS: u32 = 1;
pub const NAT_RANGE_PROTO_SPECIFIED: u32 = 2;

pub const NF_DROP: i32 = 0;
pub const NF_ACCEPT: i32 = 1;
pub const NFT_CONTINUE: i32 = -1;
pub const NFT_JUMP: i32 = -3;
pub const NFT_GOTO: i32 = -4;
pub const NFT_RETURN: i32 = -5;

const IFNAMSIZ: usize = 16;
const ETH_P_IP: [u8; 2] = [0x08, 0x00];
const ETH_P_IPV6: [u8; 2] = [0x86, 0xdd];

/// One kernel expression, with the attributes we set or read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Payload {
        base: u32,
        offset: u32,
        len: u32,
        dreg: u32,
    },
    Cmp {
        sreg: u32,
        op: u32,
        data: Vec<u8>,
    },
    Bitwise {
        sreg: u32,
        dreg: u32,
        len: u32,
        mask: Vec<u8>,
        xor: Vec<u8>,
    },
    Meta {
        key: u32,
        dreg: u32,
    },
    Fib {
        flags: u32,
        result: u32,
        dreg: u32,
    },
    /// `immediate` loading data into a register.
    Data {
        dreg: u32,
        data: Vec<u8>,
    },
    /// `immediate` setting the verdict register.
    Verdict {
        code: i32,
        chain: Option<String>,
    },
    Nat {
        nat_type: u32,
        family: u32,
        reg_addr: Option<(u32, u32)>,
        reg_proto: Option<(u32, u32)>,
        flags: u32,
    },
    Masq {
        flags: u32,
    },
    /// `lookup`: with `dreg` set to [`REG_VERDICT`] it is a verdict map lookup.
    Lookup {
        sreg: u32,
        dreg: Option<u32>,
        set: String,
        flags: u32,
    },
    Ct {
        key: u32,
        dreg: u32,
    },
    Counter {
        packets: u64,
        bytes: u64,
    },
    Limit {
        rate: u64,
        /// Seconds.
        unit: u64,
        burst: u32,
        kind: u32,
        flags: u32,
    },
    Log {
        prefix: Option<String>,
        group: Option<u16>,
        level: Option<u32>,
        flags: u32,
    },
    Range {
        sreg: u32,
        op: u32,
        from: Vec<u8>,
        to: Vec<u8>,
    },
    /// Any other expression: its name and a description of its attributes.
    Other(String),
}

impl fmt::Display for Expr {
    /// Close to `nft --debug=netlink` output, for [`Stmt::Unknown`] and error messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => {
                let base = match *base {
                    PAYLOAD_LL => "link",
                    PAYLOAD_NETWORK => "network",
                    PAYLOAD_TRANSPORT => "transport",
                    _ => "unknown",
                };
                write!(
                    f,
                    "[ payload load {len}b @ {base} header + {offset} => reg {dreg} ]"
                )
            }
            Expr::Cmp { sreg, op, data } => {
                write!(f, "[ cmp {} reg {sreg} 0x{} ]", cmp_name(*op), hex(data))
            }
            Expr::Bitwise {
                sreg,
                dreg,
                mask,
                xor,
                ..
            } => write!(
                f,
                "[ bitwise reg {dreg} = ( reg {sreg} & 0x{} ) ^ 0x{} ]",
                hex(mask),
                hex(xor)
            ),
            Expr::Meta { key, dreg } => write!(f, "[ meta load {key} => reg {dreg} ]"),
            Expr::Fib {
                flags,
                result,
                dreg,
            } => write!(f, "[ fib flags 0x{flags:x} result {result} => reg {dreg} ]"),
            Expr::Data { dreg, data } => write!(f, "[ immediate reg {dreg} 0x{} ]", hex(data)),
            Expr::Verdict { code, chain } => match chain {
                Some(c) => write!(f, "[ immediate reg 0 verdict {code} -> {c} ]"),
                None => write!(f, "[ immediate reg 0 verdict {code} ]"),
            },
            Expr::Nat {
                nat_type,
                family,
                reg_addr,
                reg_proto,
                flags,
            } => write!(
                f,
                "[ nat type {nat_type} family {family} addr {reg_addr:?} proto {reg_proto:?} flags 0x{flags:x} ]"
            ),
            Expr::Masq { flags } => write!(f, "[ masq flags 0x{flags:x} ]"),
            Expr::Lookup {
                sreg,
                dreg,
                set,
                flags,
            } => match dreg {
                Some(d) => write!(f, "[ lookup reg {sreg} set {set} dreg {d} 0x{flags:x} ]"),
                None => write!(f, "[ lookup reg {sreg} set {set} 0x{flags:x} ]"),
            },
            Expr::Ct { key, dreg } => write!(f, "[ ct load {key} => reg {dreg} ]"),
            Expr::Counter { packets, bytes } => {
                write!(f, "[ counter pkts {packets} bytes {bytes} ]")
            }
            Expr::Limit {
                rate,
                unit,
                burst,
                kind,
                flags,
            } => write!(
                f,
                "[ limit rate {rate}/{unit}s burst {burst} type {kind} flags 0x{flags:x} ]"
            ),
            Expr::Log {
                prefix,
                group,
                level,
                flags,
            } => write!(
                f,
                "[ log prefix {prefix:?} group {group:?} level {level:?} flags 0x{flags:x} ]"
            ),
            Expr::Range { sreg, op, from, to } => write!(
                f,
                "[ range {} reg {sreg} 0x{} 0x{} ]",
                if *op == RANGE_EQ { "eq" } else { "neq" },
                hex(from),
                hex(to)
            ),
            Expr::Other(s) => write!(f, "[ {s} ]"),
        }
    }
}

fn cmp_name(op: u32) -> &'static str {
    match op {
        0 => "eq",
        1 => "neq",
        2 => "lt",
        3 => "lte",
        4 => "gt",
        5 => "gte",
        _ => "op?",
    }
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

fn cmp_op(op: CmpOp) -> u32 {
    match op {
        CmpOp::Eq => CMP_EQ,
        CmpOp::Neq => CMP_NEQ,
    }
}

fn addr_bytes(a: &IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// The kernel's verdict code and target chain (verdict registers and map elements).
pub fn verdict_code(v: &Verdict) -> (i32, Option<&str>) {
    match v {
        Verdict::Accept => (NF_ACCEPT, None),
        Verdict::Drop => (NF_DROP, None),
        Verdict::Continue => (NFT_CONTINUE, None),
        Verdict::Return => (NFT_RETURN, None),
        Verdict::Jump(c) => (NFT_JUMP, Some(c)),
        Verdict::Goto(c) => (NFT_GOTO, Some(c)),
    }
}

/// The verdict for a kernel code and chain; `None` for codes we do not model.
pub fn verdict_from(code: i32, chain: Option<&str>) -> Option<Verdict> {
    Some(match (code, chain) {
        (NF_ACCEPT, None) => Verdict::Accept,
        (NF_DROP, None) => Verdict::Drop,
        (NFT_CONTINUE, None) => Verdict::Continue,
        (NFT_RETURN, None) => Verdict::Return,
        (NFT_JUMP, Some(c)) => Verdict::Jump(c.to_owned()),
        (NFT_GOTO, Some(c)) => Verdict::Goto(c.to_owned()),
        _ => return None,
    })
}

/// Why a statement cannot be put into a table of some family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LowerError(pub String);

impl fmt::Display for LowerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The kernel expressions for `rule` in a table of `family`.
///
/// Like `nft`, a rule carries an address family dependency once: after the first IPv4
/// (IPv6) match of an inet or bridge rule, later IPv4 (IPv6) fields rely on it.
pub fn lower(family: Family, rule: &Rule) -> Result<Vec<Expr>, LowerError> {
    let mut out = Vec::new();
    let mut known = None;
    for s in &rule.stmts {
        lower_stmt(family, &mut known, s, &mut out)?;
    }
    Ok(out)
}

/// `known`: the address family the rule has already matched (`Some(true)` for IPv4).
fn lower_stmt(
    family: Family,
    known: &mut Option<bool>,
    s: &Stmt,
    out: &mut Vec<Expr>,
) -> Result<(), LowerError> {
    match s {
        Stmt::Ip { field, op, net } => lower_ip(family, known, (*field, *op, net), out)?,
        Stmt::L4Proto(p) => {
            out.push(Expr::Meta {
                key: META_L4PROTO,
                dreg: REG_1,
            });
            out.push(Expr::Cmp {
                sreg: REG_1,
                op: CMP_EQ,
                data: vec![p.number()],
            });
        }
        Stmt::Port {
            proto,
            field,
            op,
            port,
        } => {
            load_port(*proto, *field, out);
            out.push(Expr::Cmp {
                sreg: REG_1,
                op: cmp_op(*op),
                data: port.to_be_bytes().to_vec(),
            });
        }
        Stmt::FibDaddrLocal => {
            out.push(Expr::Fib {
                flags: FIB_F_DADDR,
                result: FIB_RESULT_ADDRTYPE,
                dreg: REG_1,
            });
            out.push(Expr::Cmp {
                sreg: REG_1,
                op: CMP_EQ,
                data: RTN_LOCAL.to_ne_bytes().to_vec(),
            });
        }
        Stmt::Ifname { field, op, name } => {
            if name.is_empty() || name.len() >= IFNAMSIZ || name.contains('\0') {
                return Err(LowerError(format!("invalid interface name {name:?}")));
            }
            let mut data = name.as_bytes().to_vec();
            data.resize(IFNAMSIZ, 0);
            out.push(Expr::Meta {
                key: match field {
                    IfField::Iifname => META_IIFNAME,
                    IfField::Oifname => META_OIFNAME,
                },
                dreg: REG_1,
            });
            out.push(Expr::Cmp {
                sreg: REG_1,
                op: cmp_op(*op),
                data,
            });
        }
        Stmt::EtherSaddr { op, mac } => {
            if family != Family::Bridge {
                return Err(LowerError(format!(
                    "ether saddr is only supported in bridge tables, not {family}"
                )));
            }
            out.push(Expr::Payload {
                base: PAYLOAD_LL,
                offset: 6,
                len: 6,
                dreg: REG_1,
            });
            out.push(Expr::Cmp {
                sreg: REG_1,
                op: cmp_op(*op),
                data: mac.to_vec(),
            });
        }
        Stmt::Verdict(v) => {
            let (code, chain) = verdict_code(v);
            out.push(Expr::Verdict {
                code,
                chain: chain.map(str::to_owned),
            });
        }
        Stmt::Masquerade => out.push(Expr::Masq { flags: 0 }),
        Stmt::Dnat { addr, port } => {
            let ok = match family {
                Family::Ip => addr.is_ipv4(),
                Family::Ip6 => addr.is_ipv6(),
                Family::Inet => true,
                Family::Bridge => false,
            };
            if !ok {
                return Err(LowerError(format!(
                    "dnat to {addr} is not possible in a {family} table"
                )));
            }
            out.push(Expr::Data {
                dreg: REG_1,
                data: addr_bytes(addr),
            });
            let mut flags = NAT_RANGE_MAP_IPS;
            let mut reg_proto = None;
            if let Some(p) = port {
                out.push(Expr::Data {
                    dreg: REG_2,
                    data: p.to_be_bytes().to_vec(),
                });
                flags |= NAT_RANGE_PROTO_SPECIFIED;
                reg_proto = Some((REG_2, REG_2));
            }
            out.push(Expr::Nat {
                nat_type: NAT_DNAT,
                family: u32::from(Family::of(addr).nfproto()),
                reg_addr: Some((REG_1, REG_1)),
                reg_proto,
                flags,
            });
        }
        Stmt::Lookup {
            fields,
            set,
            negate,
        } => {
            let sreg = lower_fields(family, known, fields, out)?;
            out.push(Expr::Lookup {
                sreg,
                dreg: None,
                set: set_ref(set)?,
                flags: if *negate { LOOKUP_F_INV } else { 0 },
            });
        }
        Stmt::Vmap { fields, map } => {
            let sreg = lower_fields(family, known, fields, out)?;
            out.push(Expr::Lookup {
                sreg,
                dreg: Some(REG_VERDICT),
                set: set_ref(map)?,
                flags: 0,
            });
        }
        Stmt::CtState(states) => {
            if states.is_empty() {
                return Err(LowerError("ct state needs at least one state".to_owned()));
            }
            let mask = states.iter().fold(0u32, |m, s| m | s.bit());
            out.push(Expr::Ct {
                key: CT_STATE,
                dreg: REG_1,
            });
            out.push(Expr::Bitwise {
                sreg: REG_1,
                dreg: REG_1,
                len: 4,
                mask: mask.to_ne_bytes().to_vec(),
                xor: vec![0; 4],
            });
            out.push(Expr::Cmp {
                sreg: REG_1,
                op: CMP_NEQ,
                data: vec![0; 4],
            });
        }
        // A fresh counter, whatever values the model carries.
        Stmt::Counter { .. } => out.push(Expr::Counter {
            packets: 0,
            bytes: 0,
        }),
        Stmt::Limit { rate, per, burst } => {
            if *rate == 0 || *burst == 0 {
                return Err(LowerError(format!(
                    "limit rate {rate} burst {burst}: both must be at least 1"
                )));
            }
            out.push(Expr::Limit {
                rate: u64::from(*rate),
                unit: per.seconds(),
                burst: *burst,
                kind: LIMIT_PKTS,
                flags: 0,
            });
        }
        Stmt::Log { prefix, group } => {
            if let Some(p) = prefix
                && (p.len() > LOG_PREFIX_MAX || p.contains('\0') || p.contains('"'))
            {
                return Err(LowerError(format!(
                    "log prefix {p:?} is longer than {LOG_PREFIX_MAX} bytes or contains a NUL or a double quote"
                )));
            }
            out.push(Expr::Log {
                prefix: prefix.clone(),
                group: *group,
                level: None,
                flags: 0,
            });
        }
        Stmt::PortRange {
            proto,
            field,
            lo,
            hi,
        } => {
            if lo > hi {
                return Err(LowerError(format!("port range {lo}-{hi} is empty")));
            }
            load_port(*proto, *field, out);
            out.push(Expr::Range {
                sreg: REG_1,
                op: RANGE_EQ,
                from: lo.to_be_bytes().to_vec(),
                to: hi.to_be_bytes().to_vec(),
            });
        }
        Stmt::Unknown(s) => {
            return Err(LowerError(format!("cannot encode unknown statement {s:?}")));
        }
    }
    Ok(())
}

fn port_offset(field: PortField) -> u32 {
    match field {
        PortField::Sport => 0,
        PortField::Dport => 2,
    }
}

/// The register name `nft` uses for 32-bit register `idx` (0-15): the 128-bit name
/// (`NFT_REG_1`..`NFT_REG_4`) when the register starts one, else `NFT_REG32_<idx>`.
pub fn reg_name(idx: u32) -> u32 {
    if idx.is_multiple_of(4) {
        REG_1 + idx / 4
    } else {
        REG32_00 + idx
    }
}

/// The 32-bit register index of a data register name (either naming).
pub fn reg_index(reg: u32) -> Option<u32> {
    match reg {
        1..=4 => Some((reg - 1) * 4),
        r if (REG32_00..REG32_00 + REG32_COUNT).contains(&r) => Some(r - REG32_00),
        _ => None,
    }
}

fn set_ref(name: &str) -> Result<String, LowerError> {
    if name.is_empty() || name.len() > 255 {
        return Err(LowerError(format!("invalid set name {name:?}")));
    }
    Ok(name.to_owned())
}

/// Loads `fields` into consecutive 32-bit registers from register 0 (after the address
/// family dependency the table needs), as `nft` does for a lookup key; returns the first
/// register's name.
fn lower_fields(
    family: Family,
    known: &mut Option<bool>,
    fields: &[Field],
    out: &mut Vec<Expr>,
) -> Result<u32, LowerError> {
    if fields.is_empty() {
        return Err(LowerError("a lookup needs at least one field".to_owned()));
    }
    let v4 = fields_family(fields)
        .ok_or_else(|| LowerError("a lookup cannot mix IPv4 and IPv6 header fields".to_owned()))?;
    if let Some(v4) = v4 {
        push_dependency(family, known, v4, out).map_err(|()| {
            LowerError(format!(
                "{} does not belong in a {family} table",
                fields_name(fields)
            ))
        })?;
    }
    let mut idx = 0u32;
    for f in fields {
        let dreg = reg_name(idx);
        out.push(match f {
            Field::IpSaddr | Field::IpDaddr | Field::Ip6Saddr | Field::Ip6Daddr => {
                let (offset, len) = field_offset(*f);
                Expr::Payload {
                    base: PAYLOAD_NETWORK,
                    offset,
                    len,
                    dreg,
                }
            }
            Field::L4Proto => Expr::Meta {
                key: META_L4PROTO,
                dreg,
            },
            Field::ThDport => Expr::Payload {
                base: PAYLOAD_TRANSPORT,
                offset: 2,
                len: 2,
                dreg,
            },
        });
        idx += f.key_type().byte_len().div_ceil(4) as u32;
    }
    if idx > REG32_COUNT {
        return Err(LowerError(format!(
            "{} is longer than the 64 bytes of the registers",
            fields_name(fields)
        )));
    }
    Ok(reg_name(0))
}

fn fields_name(fields: &[Field]) -> String {
    fields
        .iter()
        .map(|f| f.as_str())
        .collect::<Vec<_>>()
        .join(" . ")
}

/// `Some(Some(true))` when the fields include IPv4 header fields, `Some(Some(false))` for
/// IPv6, `Some(None)` for neither, `None` for both.
fn fields_family(fields: &[Field]) -> Option<Option<bool>> {
    let mut v4 = None;
    for f in fields {
        match (v4, f.is_ipv4()) {
            (Some(a), Some(b)) if a != b => return None,
            (_, Some(b)) => v4 = Some(b),
            _ => {}
        }
    }
    Some(v4)
}

/// Network header offset and length of an address field.
fn field_offset(f: Field) -> (u32, u32) {
    match f {
        Field::IpSaddr => (12, 4),
        Field::IpDaddr => (16, 4),
        Field::Ip6Saddr => (8, 16),
        Field::Ip6Daddr => (24, 16),
        Field::L4Proto | Field::ThDport => (0, 0),
    }
}

/// The match `nft` puts before a network header load so the load only sees packets of
/// that address family: none in ip/ip6 tables (where the family must match), `meta
/// nfproto` in inet tables, the EtherType in bridge tables; none when the rule has already
/// matched the family (`known`).
fn push_dependency(
    family: Family,
    known: &mut Option<bool>,
    v4: bool,
    out: &mut Vec<Expr>,
) -> Result<(), ()> {
    let before = known.replace(v4);
    match (family, v4) {
        (Family::Ip, true) | (Family::Ip6, false) => {}
        (Family::Inet | Family::Bridge, _) if before == Some(v4) => {}
        (Family::Inet, _) => {
            out.push(Expr::Meta {
                key: META_NFPROTO,
                dreg: REG_1,
            });
            out.push(Expr::Cmp {
                sreg: REG_1,
                op: CMP_EQ,
                data: vec![if v4 { Family::Ip } else { Family::Ip6 }.nfproto()],
            });
        }
        (Family::Bridge, _) => {
            out.push(Expr::Payload {
                base: PAYLOAD_LL,
                offset: 12,
                len: 2,
                dreg: REG_1,
            });
            out.push(Expr::Cmp {
                sreg: REG_1,
                op: CMP_EQ,
                data: if v4 { ETH_P_IP } else { ETH_P_IPV6 }.to_vec(),
            });
        }
        _ => return Err(()),
    }
    Ok(())
}

/// `meta l4proto P` and the port field of the transport header loaded into register 1: the
/// common start of a port match and a port range.
fn load_port(proto: L4Proto, field: PortField, out: &mut Vec<Expr>) {
    out.push(Expr::Meta {
        key: META_L4PROTO,
        dreg: REG_1,
    });
    out.push(Expr::Cmp {
        sreg: REG_1,
        op: CMP_EQ,
        data: vec![proto.number()],
    });
    out.push(Expr::Payload {
        base: PAYLOAD_TRANSPORT,
        offset: port_offset(field),
        len: 2,
        dreg: REG_1,
    });
}

fn lower_ip(
    family: Family,
    known: &mut Option<bool>,
    (field, op, net): (AddrField, CmpOp, &IpNetwork),
    out: &mut Vec<Expr>,
) -> Result<(), LowerError> {
    let v4 = net.is_ipv4();
    push_dependency(family, known, v4, out)
        .map_err(|()| LowerError(format!("address {net} does not belong in a {family} table")))?;
    let prefix = u32::from(net.prefix());
    if prefix == 0 {
        return Err(LowerError(format!("prefix {net} matches every address")));
    }
    let (full, offset) = match (v4, field) {
        (true, AddrField::Saddr) => (4u32, 12u32),
        (true, AddrField::Daddr) => (4, 16),
        (false, AddrField::Saddr) => (16, 8),
        (false, AddrField::Daddr) => (16, 24),
    };
    let bytes = addr_bytes(&normalize(*net).network());
    if prefix % 8 == 0 {
        let len = prefix / 8;
        out.push(Expr::Payload {
            base: PAYLOAD_NETWORK,
            offset,
            len,
            dreg: REG_1,
        });
        out.push(Expr::Cmp {
            sreg: REG_1,
            op: cmp_op(op),
            data: bytes[..len as usize].to_vec(),
        });
    } else {
        out.push(Expr::Payload {
            base: PAYLOAD_NETWORK,
            offset,
            len: full,
            dreg: REG_1,
        });
        out.push(Expr::Bitwise {
            sreg: REG_1,
            dreg: REG_1,
            len: full,
            mask: prefix_mask(full, prefix),
            xor: vec![0; full as usize],
        });
        out.push(Expr::Cmp {
            sreg: REG_1,
            op: cmp_op(op),
            data: bytes,
        });
    }
    Ok(())
}

fn prefix_mask(len: u32, prefix: u32) -> Vec<u8> {
    (0..len)
        .map(|i| {
            let bits = prefix.saturating_sub(i * 8).min(8);
            if bits == 0 { 0 } else { 0xffu8 << (8 - bits) }
        })
        .collect()
}

/// Length of the leading run of one bits, if the mask is a contiguous prefix.
fn mask_prefix(mask: &[u8]) -> Option<u32> {
    let mut prefix = 0u32;
    let mut ended = false;
    for &b in mask {
        if ended {
            if b != 0 {
                return None;
            }
            continue;
        }
        let ones = b.leading_ones();
        if ones < 8 {
            // The bits after the leading ones must be zero.
            if b << ones != 0 {
                return None;
            }
            ended = true;
        }
        prefix += ones;
    }
    Some(prefix)
}

/// The statements for kernel expressions of a rule in a `family` table.
pub fn lift(family: Family, exprs: &[Expr]) -> Vec<Stmt> {
    let mut out = Vec::new();
    let mut i = 0;
    // The address family the rule has matched so far (see `lower`).
    let mut known: Option<bool> = None;
    while i < exprs.len() {
        let rest = &exprs[i..];
        let (stmt, used) = lift_ip(family, known, rest)
            .or_else(|| lift_port(rest))
            .or_else(|| lift_port_range(rest))
            .or_else(|| lift_lookup(family, known, rest))
            .or_else(|| lift_ct_state(rest))
            .or_else(|| lift_simple(family, rest))
            .or_else(|| lift_dnat(family, rest))
            .unwrap_or_else(|| (Stmt::Unknown(rest[0].to_string()), 1));
        match &stmt {
            Stmt::Ip { net, .. } => known = Some(net.is_ipv4()),
            Stmt::Lookup { fields, .. } | Stmt::Vmap { fields, .. } => {
                if let Some(Some(v4)) = fields_family(fields) {
                    known = Some(v4);
                }
            }
            _ => {}
        }
        out.push(stmt);
        i += used;
    }
    out
}

fn cmp_after(e: Option<&Expr>, reg: u32) -> Option<(CmpOp, &[u8])> {
    match e {
        Some(Expr::Cmp { sreg, op, data }) if *sreg == reg => {
            let op = match *op {
                CMP_EQ => CmpOp::Eq,
                CMP_NEQ => CmpOp::Neq,
                _ => return None,
            };
            Some((op, data.as_slice()))
        }
        _ => None,
    }
}

/// An address family dependency at the start of `e`: `(Some(is_ipv4), 2)`, or `(known, 0)`
/// when there is none (the family the rule matched earlier, if any); `None` when it is
/// malformed.
fn lift_dependency(
    family: Family,
    known: Option<bool>,
    e: &[Expr],
) -> Option<(Option<bool>, usize)> {
    Some(match e {
        [Expr::Meta { key, dreg }, next, ..] if *key == META_NFPROTO => {
            let (op, data) = cmp_after(Some(next), *dreg)?;
            if op != CmpOp::Eq || data.len() != 1 {
                return None;
            }
            match Family::from_nfproto(data[0])? {
                Family::Ip => (Some(true), 2),
                Family::Ip6 => (Some(false), 2),
                _ => return None,
            }
        }
        [
            Expr::Payload {
                base: PAYLOAD_LL,
                offset: 12,
                len: 2,
                dreg,
            },
            next,
            ..,
        ] if family == Family::Bridge => {
            let (op, data) = cmp_after(Some(next), *dreg)?;
            match (op, data) {
                (CmpOp::Eq, d) if d == ETH_P_IP => (Some(true), 2),
                (CmpOp::Eq, d) if d == ETH_P_IPV6 => (Some(false), 2),
                _ => return None,
            }
        }
        _ => (known, 0),
    })
}

fn lift_ip(family: Family, known: Option<bool>, e: &[Expr]) -> Option<(Stmt, usize)> {
    // Optional dependency that tells the address family.
    let (dep_v4, skip) = lift_dependency(family, known, e)?;
    let v4 = match (family, dep_v4) {
        (_, Some(v)) => v,
        (Family::Ip, None) => true,
        (Family::Ip6, None) => false,
        _ => return None,
    };
    let Expr::Payload {
        base: PAYLOAD_NETWORK,
        offset,
        len,
        dreg,
    } = e.get(skip)?
    else {
        return None;
    };
    let (full, field) = match (v4, *offset) {
        (true, 12) => (4u32, AddrField::Saddr),
        (true, 16) => (4, AddrField::Daddr),
        (false, 8) => (16, AddrField::Saddr),
        (false, 24) => (16, AddrField::Daddr),
        _ => return None,
    };
    if *len == 0 || *len > full {
        return None;
    }
    let (prefix, cmp_idx) = match e.get(skip + 1) {
        Some(Expr::Bitwise {
            sreg,
            dreg: d2,
            len: blen,
            mask,
            xor,
        }) if sreg == dreg && d2 == dreg => {
            if *blen != *len || xor.iter().any(|b| *b != 0) || mask.len() != *len as usize {
                return None;
            }
            (mask_prefix(mask)?, skip + 2)
        }
        _ => (len * 8, skip + 1),
    };
    let (op, data) = cmp_after(e.get(cmp_idx), *dreg)?;
    if data.len() != *len as usize {
        return None;
    }
    let mut bytes = data.to_vec();
    bytes.resize(full as usize, 0);
    let addr: IpAddr = if v4 {
        let b: [u8; 4] = bytes.try_into().ok()?;
        Ipv4Addr::from(b).into()
    } else {
        let b: [u8; 16] = bytes.try_into().ok()?;
        Ipv6Addr::from(b).into()
    };
    let net = IpNetwork::new(addr, u8::try_from(prefix).ok()?).ok()?;
    Some((Stmt::ip(field, op, net), cmp_idx + 1))
}

/// What [`load_port`] emits: `meta l4proto P` compared, then a transport port loaded.
/// Returns the protocol, the field, the register holding the port and the expressions
/// after the load.
fn lift_port_load(e: &[Expr]) -> Option<(L4Proto, PortField, u32, &[Expr])> {
    let [
        Expr::Meta { key, dreg },
        c1,
        Expr::Payload {
            base: PAYLOAD_TRANSPORT,
            offset,
            len: 2,
            dreg: d2,
        },
        rest @ ..,
    ] = e
    else {
        return None;
    };
    if *key != META_L4PROTO {
        return None;
    }
    let (CmpOp::Eq, [proto]) = cmp_after(Some(c1), *dreg)? else {
        return None;
    };
    let field = match offset {
        0 => PortField::Sport,
        2 => PortField::Dport,
        _ => return None,
    };
    Some((L4Proto::from_number(*proto), field, *d2, rest))
}

fn lift_port(e: &[Expr]) -> Option<(Stmt, usize)> {
    let (proto, field, reg, rest) = lift_port_load(e)?;
    let (op, data) = cmp_after(rest.first(), reg)?;
    let port = u16::from_be_bytes(data.try_into().ok()?);
    Some((
        Stmt::Port {
            proto,
            field,
            op,
            port,
        },
        4,
    ))
}

fn lift_simple(family: Family, e: &[Expr]) -> Option<(Stmt, usize)> {
    match e {
        [Expr::Meta { key, dreg }, c, ..] if *key == META_L4PROTO => {
            let (CmpOp::Eq, [p]) = cmp_after(Some(c), *dreg)? else {
                return None;
            };
            Some((Stmt::L4Proto(L4Proto::from_number(*p)), 2))
        }
        [Expr::Meta { key, dreg }, c, ..] if *key == META_IIFNAME || *key == META_OIFNAME => {
            let (op, data) = cmp_after(Some(c), *dreg)?;
            // An exact match carries the terminating NUL; without it, it is a prefix match.
            let end = data.iter().position(|b| *b == 0)?;
            if data[end..].iter().any(|b| *b != 0) {
                return None;
            }
            let name = String::from_utf8(data[..end].to_vec()).ok()?;
            let field = if *key == META_IIFNAME {
                IfField::Iifname
            } else {
                IfField::Oifname
            };
            Some((Stmt::Ifname { field, op, name }, 2))
        }
        [
            Expr::Fib {
                flags,
                result,
                dreg,
            },
            c,
            ..,
        ] if *flags == FIB_F_DADDR && *result == FIB_RESULT_ADDRTYPE => {
            let (CmpOp::Eq, data) = cmp_after(Some(c), *dreg)? else {
                return None;
            };
            (data == RTN_LOCAL.to_ne_bytes()).then_some((Stmt::FibDaddrLocal, 2))
        }
        [
            Expr::Payload {
                base: PAYLOAD_LL,
                offset: 6,
                len: 6,
                dreg,
            },
            c,
            ..,
        ] if family == Family::Bridge => {
            let (op, data) = cmp_after(Some(c), *dreg)?;
            Some((
                Stmt::EtherSaddr {
                    op,
                    mac: data.try_into().ok()?,
                },
                2,
            ))
        }
        [Expr::Verdict { code, chain }, ..] => {
            Some((Stmt::Verdict(verdict_from(*code, chain.as_deref())?), 1))
        }
        [Expr::Masq { flags: 0 }, ..] => Some((Stmt::Masquerade, 1)),
        [Expr::Counter { packets, bytes }, ..] => Some((
            Stmt::Counter {
                packets: *packets,
                bytes: *bytes,
            },
            1,
        )),
        [
            Expr::Limit {
                rate,
                unit,
                burst,
                kind: LIMIT_PKTS,
                flags: 0,
            },
            ..,
        ] => {
            let per = match unit {
                1 => LimitUnit::Second,
                60 => LimitUnit::Minute,
                _ => return None,
            };
            Some((
                Stmt::Limit {
                    rate: u32::try_from(*rate).ok()?,
                    per,
                    burst: *burst,
                },
                1,
            ))
        }
        [
            Expr::Log {
                prefix,
                group,
                level,
                flags: 0,
            },
            ..,
        ] => {
            // The kernel reports the default level of a kernel-log `log`; nflog has none.
            let default_level = match group {
                None => level.is_none_or(|l| l == LOG_LEVEL_DEFAULT),
                Some(_) => level.is_none(),
            };
            default_level.then(|| {
                (
                    Stmt::Log {
                        prefix: prefix.clone(),
                        group: *group,
                    },
                    1,
                )
            })
        }
        _ => None,
    }
}

/// `tcp dport 1000-2000`, from a `range` expression or from the `cmp gte` + `cmp lte` pair
/// `nft` 1.0 emits.
fn lift_port_range(e: &[Expr]) -> Option<(Stmt, usize)> {
    let (proto, field, reg, rest) = lift_port_load(e)?;
    let port = |d: &[u8]| Some(u16::from_be_bytes(d.try_into().ok()?));
    let (lo, hi, used) = match rest {
        [
            Expr::Range {
                sreg,
                op: RANGE_EQ,
                from,
                to,
            },
            ..,
        ] if *sreg == reg => (port(from)?, port(to)?, 4),
        [
            Expr::Cmp {
                sreg: s1,
                op: CMP_GTE,
                data: from,
            },
            Expr::Cmp {
                sreg: s2,
                op: CMP_LTE,
                data: to,
            },
            ..,
        ] if *s1 == reg && *s2 == reg => (port(from)?, port(to)?, 5),
        _ => return None,
    };
    Some((
        Stmt::PortRange {
            proto,
            field,
            lo,
            hi,
        },
        used,
    ))
}

/// A set lookup or verdict map: an optional family dependency, loads into consecutive
/// registers, `lookup`.
fn lift_lookup(family: Family, known: Option<bool>, e: &[Expr]) -> Option<(Stmt, usize)> {
    let (dep_v4, skip) = lift_dependency(family, known, e)?;
    let mut loads: Vec<(Field, u32)> = Vec::new();
    let mut i = skip;
    loop {
        let load = match e.get(i) {
            Some(Expr::Payload {
                base: PAYLOAD_NETWORK,
                offset,
                len,
                dreg,
            }) => {
                let f = match (offset, len) {
                    (12, 4) => Field::IpSaddr,
                    (16, 4) => Field::IpDaddr,
                    (8, 16) => Field::Ip6Saddr,
                    (24, 16) => Field::Ip6Daddr,
                    _ => return None,
                };
                (f, *dreg)
            }
            Some(Expr::Payload {
                base: PAYLOAD_TRANSPORT,
                offset: 2,
                len: 2,
                dreg,
            }) => (Field::ThDport, *dreg),
            Some(Expr::Meta { key, dreg }) if *key == META_L4PROTO => (Field::L4Proto, *dreg),
            _ => break,
        };
        loads.push(load);
        i += 1;
    }
    let Some(Expr::Lookup {
        sreg,
        dreg,
        set,
        flags,
    }) = e.get(i)
    else {
        return None;
    };
    if loads.is_empty() {
        return None;
    }
    let mut idx = reg_index(*sreg)?;
    for (f, reg) in &loads {
        if reg_index(*reg)? != idx {
            return None;
        }
        idx += f.key_type().byte_len().div_ceil(4) as u32;
    }
    let fields: Vec<Field> = loads.iter().map(|(f, _)| *f).collect();
    let ok = match (fields_family(&fields)?, dep_v4) {
        (Some(v4), Some(dep)) => v4 == dep,
        (Some(v4), None) => matches!((family, v4), (Family::Ip, true) | (Family::Ip6, false)),
        (None, None) => true,
        // A dependency of its own means address fields; one from earlier does not.
        (None, Some(_)) => skip == 0,
    };
    if !ok {
        return None;
    }
    let stmt = match (dreg, *flags) {
        (None, f) if f & !LOOKUP_F_INV == 0 => Stmt::Lookup {
            fields,
            set: set.clone(),
            negate: f & LOOKUP_F_INV != 0,
        },
        (Some(REG_VERDICT), 0) => Stmt::Vmap {
            fields,
            map: set.clone(),
        },
        _ => return None,
    };
    Some((stmt, i + 1))
}

/// `ct state a,b`: load, mask with the state bits, compare with zero.
fn lift_ct_state(e: &[Expr]) -> Option<(Stmt, usize)> {
    let [
        Expr::Ct {
            key: CT_STATE,
            dreg,
        },
        Expr::Bitwise {
            sreg,
            dreg: d2,
            len: 4,
            mask,
            xor,
        },
        Expr::Cmp {
            sreg: s3,
            op: CMP_NEQ,
            data,
        },
        ..,
    ] = e
    else {
        return None;
    };
    if sreg != dreg || d2 != dreg || s3 != dreg {
        return None;
    }
    if xor.iter().any(|b| *b != 0) || data.as_slice() != [0u8; 4] {
        return None;
    }
    let mask = u32::from_ne_bytes(mask.as_slice().try_into().ok()?);
    let states: Vec<CtState> = CtState::ALL
        .into_iter()
        .filter(|s| mask & s.bit() != 0)
        .collect();
    let known = states.iter().fold(0, |m, s| m | s.bit());
    (mask != 0 && known == mask).then_some((Stmt::CtState(states), 3))
}

fn lift_dnat(family: Family, e: &[Expr]) -> Option<(Stmt, usize)> {
    let Expr::Data { dreg: ra, data } = e.first()? else {
        return None;
    };
    let addr: IpAddr = match data.len() {
        4 => Ipv4Addr::from(<[u8; 4]>::try_from(data.as_slice()).ok()?).into(),
        16 => Ipv6Addr::from(<[u8; 16]>::try_from(data.as_slice()).ok()?).into(),
        _ => return None,
    };
    let (port, used) = match e.get(1)? {
        Expr::Data { dreg: rp, data } if data.len() == 2 => {
            (Some((*rp, u16::from_be_bytes([data[0], data[1]]))), 2)
        }
        _ => (None, 1),
    };
    let Expr::Nat {
        nat_type: NAT_DNAT,
        family: nat_family,
        reg_addr: Some((amin, amax)),
        reg_proto,
        flags,
    } = e.get(used)?
    else {
        return None;
    };
    if *nat_family != u32::from(Family::of(&addr).nfproto()) || amin != ra || amax != ra {
        return None;
    }
    if family != Family::Inet && Family::of(&addr) != family {
        return None;
    }
    let port = match (port, reg_proto) {
        (Some((rp, p)), Some((pmin, pmax))) if *pmin == rp && *pmax == rp => {
            if *flags != NAT_RANGE_MAP_IPS | NAT_RANGE_PROTO_SPECIFIED {
                return None;
            }
            Some(p)
        }
        (None, None) => {
            if *flags != NAT_RANGE_MAP_IPS {
                return None;
            }
            None
        }
        _ => return None,
    };
    Some((Stmt::Dnat { addr, port }, used + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::model::parse_mac;

    fn round_trip(family: Family, stmts: Vec<Stmt>) -> Vec<Expr> {
        let rule = Rule::new(stmts.clone());
        let exprs = lower(family, &rule).unwrap();
        assert_eq!(lift(family, &exprs), stmts, "{exprs:#?}");
        exprs
    }

    #[test]
    fn masks() {
        assert_eq!(prefix_mask(4, 20), vec![0xff, 0xff, 0xf0, 0]);
        assert_eq!(prefix_mask(4, 4), vec![0xf0, 0, 0, 0]);
        assert_eq!(mask_prefix(&[0xff, 0xff, 0xf0, 0]), Some(20));
        assert_eq!(mask_prefix(&[0xff, 0xfe, 0, 0]), Some(15));
        assert_eq!(mask_prefix(&[0xff, 0x0f, 0, 0]), None);
        assert_eq!(mask_prefix(&[0xf0, 0, 0, 1]), None);
    }

    #[test]
    fn byte_aligned_prefix_loads_only_prefix_bytes() {
        // As `nft` does: `ip daddr != 10.1.2.0/24` is a 3-byte load and compare.
        let e = round_trip(
            Family::Inet,
            vec![Stmt::ip(
                AddrField::Daddr,
                CmpOp::Neq,
                "10.1.2.7/24".parse().unwrap(),
            )],
        );
        assert_eq!(
            e,
            vec![
                Expr::Meta {
                    key: META_NFPROTO,
                    dreg: 1
                },
                Expr::Cmp {
                    sreg: 1,
                    op: CMP_EQ,
                    data: vec![2]
                },
                Expr::Payload {
                    base: PAYLOAD_NETWORK,
                    offset: 16,
                    len: 3,
                    dreg: 1
                },
                Expr::Cmp {
                    sreg: 1,
                    op: CMP_NEQ,
                    data: vec![10, 1, 2]
                },
            ]
        );
    }

    #[test]
    fn unaligned_prefix_is_masked() {
        let e = round_trip(
            Family::Ip,
            vec![
                Stmt::ip(AddrField::Daddr, CmpOp::Eq, "224.0.0.0/4".parse().unwrap()),
                Stmt::Verdict(Verdict::Return),
            ],
        );
        assert_eq!(
            e[1],
            Expr::Bitwise {
                sreg: 1,
                dreg: 1,
                len: 4,
                mask: vec![0xf0, 0, 0, 0],
                xor: vec![0; 4]
            }
        );
        round_trip(
            Family::Ip6,
            vec![Stmt::ip(
                AddrField::Saddr,
                CmpOp::Eq,
                "2001:db8:0:10::/60".parse().unwrap(),
            )],
        );
    }

    #[test]
    fn everything_we_emit_lifts_back() {
        round_trip(
            Family::Ip,
            vec![
                Stmt::ip_addr(AddrField::Daddr, CmpOp::Eq, "192.168.0.2".parse().unwrap()),
                Stmt::dport(L4Proto::Tcp, 8083),
                Stmt::Dnat {
                    addr: "10.0.0.2".parse().unwrap(),
                    port: Some(83),
                },
            ],
        );
        round_trip(
            Family::Ip6,
            vec![
                Stmt::dport(L4Proto::Sctp, 8080),
                Stmt::Dnat {
                    addr: "2001:db8::2".parse().unwrap(),
                    port: None,
                },
            ],
        );
        round_trip(
            Family::Ip,
            vec![
                Stmt::FibDaddrLocal,
                Stmt::Verdict(Verdict::Jump("hostports".into())),
            ],
        );
        round_trip(
            Family::Inet,
            vec![Stmt::L4Proto(L4Proto::Udp), Stmt::Masquerade],
        );
        round_trip(
            Family::Bridge,
            vec![
                Stmt::Ifname {
                    field: IfField::Iifname,
                    op: CmpOp::Eq,
                    name: "veth1234".into(),
                },
                Stmt::EtherSaddr {
                    op: CmpOp::Neq,
                    mac: parse_mac("02:00:00:00:00:01").unwrap(),
                },
                Stmt::Verdict(Verdict::Drop),
            ],
        );
        round_trip(
            Family::Bridge,
            vec![Stmt::ip_addr(
                AddrField::Saddr,
                CmpOp::Eq,
                "10.0.0.1".parse().unwrap(),
            )],
        );
    }

    #[test]
    fn misplaced_statements_are_refused() {
        let r = Rule::new(vec![Stmt::ip_addr(
            AddrField::Saddr,
            CmpOp::Eq,
            "::1".parse().unwrap(),
        )]);
        assert!(lower(Family::Ip, &r).is_err());
        let r = Rule::new(vec![Stmt::EtherSaddr {
            op: CmpOp::Eq,
            mac: [0; 6],
        }]);
        assert!(lower(Family::Inet, &r).is_err());
        let r = Rule::new(vec![Stmt::ip(
            AddrField::Saddr,
            CmpOp::Eq,
            "0.0.0.0/0".parse().unwrap(),
        )]);
        assert!(lower(Family::Ip, &r).is_err());
        let r = Rule::new(vec![Stmt::Ifname {
            field: IfField::Iifname,
            op: CmpOp::Eq,
            name: "a-very-long-name".into(),
        }]);
        assert!(lower(Family::Ip, &r).is_err());
    }

    #[test]
    fn unknown_expressions_stay_visible() {
        let s = lift(
            Family::Ip,
            &[Expr::Other("counter".into()), Expr::Masq { flags: 0 }],
        );
        assert_eq!(
            s,
            vec![Stmt::Unknown("[ counter ]".into()), Stmt::Masquerade]
        );
        // An interface prefix match (no NUL) is not an exact name.
        let s = lift(
            Family::Ip,
            &[
                Expr::Meta {
                    key: META_IIFNAME,
                    dreg: 1,
                },
                Expr::Cmp {
                    sreg: 1,
                    op: 0,
                    data: b"veth".to_vec(),
                },
            ],
        );
        assert!(matches!(s[0], Stmt::Unknown(_)));
    }

    #[test]
    fn lookups_use_nft_registers() {
        // `nft --debug=netlink` for `ip daddr . meta l4proto . th dport @c3` in an inet
        // table: payload => reg 1, meta => reg 9, payload => reg 10, lookup reg 1.
        let e = round_trip(
            Family::Inet,
            vec![Stmt::lookup(
                &[Field::IpDaddr, Field::L4Proto, Field::ThDport],
                "c3",
            )],
        );
        let regs: Vec<u32> = e
            .iter()
            .filter_map(|x| match x {
                Expr::Payload { dreg, .. } | Expr::Meta { dreg, .. } => Some(*dreg),
                _ => None,
            })
            .collect();
        assert_eq!(regs, vec![1, 1, 9, 10]);
        assert_eq!(
            e.last(),
            Some(&Expr::Lookup {
                sreg: 1,
                dreg: None,
                set: "c3".into(),
                flags: 0
            })
        );
        // IPv6: the address fills reg 1 (four 32-bit registers), then 2 and 13.
        let e = round_trip(
            Family::Ip6,
            vec![Stmt::lookup(
                &[Field::Ip6Daddr, Field::L4Proto, Field::ThDport],
                "c6",
            )],
        );
        let regs: Vec<u32> = e
            .iter()
            .filter_map(|x| match x {
                Expr::Payload { dreg, .. } | Expr::Meta { dreg, .. } => Some(*dreg),
                _ => None,
            })
            .collect();
        assert_eq!(regs, vec![1, 2, 13]);
        assert_eq!(
            (reg_name(0), reg_name(1), reg_name(4), reg_name(9)),
            (1, 9, 2, 17)
        );
        assert_eq!(
            (reg_index(1), reg_index(9), reg_index(2), reg_index(5)),
            (Some(0), Some(1), Some(4), None)
        );
    }

    #[test]
    fn policy_statements_lift_back() {
        round_trip(
            Family::Inet,
            vec![
                Stmt::ct_state(&[CtState::Established, CtState::Related]),
                Stmt::Verdict(Verdict::Accept),
            ],
        );
        round_trip(
            Family::Ip,
            vec![
                Stmt::Lookup {
                    fields: vec![Field::IpSaddr],
                    set: "s".into(),
                    negate: true,
                },
                Stmt::Vmap {
                    fields: vec![Field::IpDaddr, Field::ThDport],
                    map: "m".into(),
                },
            ],
        );
        round_trip(
            Family::Bridge,
            vec![
                Stmt::lookup(&[Field::Ip6Saddr], "s6"),
                Stmt::Counter {
                    packets: 0,
                    bytes: 0,
                },
            ],
        );
        round_trip(
            Family::Inet,
            vec![
                Stmt::lookup(&[Field::L4Proto], "p"),
                Stmt::lookup(&[Field::ThDport], "sv"),
            ],
        );
        round_trip(
            Family::Ip6,
            vec![
                Stmt::PortRange {
                    proto: L4Proto::Other(33),
                    field: PortField::Sport,
                    lo: 5,
                    hi: 6,
                },
                Stmt::Limit {
                    rate: 7,
                    per: LimitUnit::Minute,
                    burst: 3,
                },
                Stmt::Log {
                    prefix: Some("p ".into()),
                    group: None,
                },
                Stmt::Log {
                    prefix: None,
                    group: Some(2),
                },
            ],
        );
        // The kernel reports the default level of a kernel-log `log`.
        assert_eq!(
            lift(
                Family::Ip,
                &[Expr::Log {
                    prefix: None,
                    group: None,
                    level: Some(LOG_LEVEL_DEFAULT),
                    flags: 0
                }]
            ),
            vec![Stmt::Log {
                prefix: None,
                group: None
            }]
        );
    }

    #[test]
    fn a_rule_matches_its_address_family_once() {
        // nft: `ip saddr @s ip daddr vmap @m` in an inet table has one `meta nfproto`.
        let e = round_trip(
            Family::Inet,
            vec![
                Stmt::lookup(&[Field::IpSaddr], "s"),
                Stmt::ip(AddrField::Daddr, CmpOp::Neq, "10.0.0.0/8".parse().unwrap()),
                Stmt::Vmap {
                    fields: vec![Field::IpDaddr],
                    map: "m".into(),
                },
            ],
        );
        let deps = e
            .iter()
            .filter(|x| matches!(x, Expr::Meta { key, .. } if *key == META_NFPROTO))
            .count();
        assert_eq!(deps, 1);
        // Rules that repeat the dependency (as we wrote them before) lift the same.
        let mut twice = lower(
            Family::Inet,
            &Rule::new(vec![Stmt::lookup(&[Field::IpSaddr], "s")]),
        )
        .unwrap();
        twice.extend(twice.clone());
        assert_eq!(
            lift(Family::Inet, &twice),
            vec![
                Stmt::lookup(&[Field::IpSaddr], "s"),
                Stmt::lookup(&[Field::IpSaddr], "s")
            ]
        );
    }

    #[test]
    fn port_ranges_written_by_nft_lift() {
        // nft 1.0 writes `tcp dport 1000-2000` as two comparisons; we write `range`.
        let nft = [
            Expr::Meta {
                key: META_L4PROTO,
                dreg: 1,
            },
            Expr::Cmp {
                sreg: 1,
                op: CMP_EQ,
                data: vec![6],
            },
            Expr::Payload {
                base: PAYLOAD_TRANSPORT,
                offset: 2,
                len: 2,
                dreg: 1,
            },
            Expr::Cmp {
                sreg: 1,
                op: CMP_GTE,
                data: 1000u16.to_be_bytes().to_vec(),
            },
            Expr::Cmp {
                sreg: 1,
                op: CMP_LTE,
                data: 2000u16.to_be_bytes().to_vec(),
            },
        ];
        let want = Stmt::PortRange {
            proto: L4Proto::Tcp,
            field: PortField::Dport,
            lo: 1000,
            hi: 2000,
        };
        assert_eq!(lift(Family::Inet, &nft), vec![want.clone()]);
        let ours = lower(Family::Inet, &Rule::new(vec![want])).unwrap();
        assert!(
            matches!(ours[3], Expr::Range { op: RANGE_EQ, .. }),
            "{ours:?}"
        );
    }

    #[test]
    fn bad_policy_statements_are_refused() {
        let refused = |family, s: Stmt| lower(family, &Rule::new(vec![s])).is_err();
        assert!(refused(Family::Ip, Stmt::lookup(&[Field::Ip6Saddr], "s")));
        assert!(refused(
            Family::Inet,
            Stmt::lookup(&[Field::IpSaddr, Field::Ip6Daddr], "s")
        ));
        assert!(refused(Family::Inet, Stmt::lookup(&[], "s")));
        assert!(refused(Family::Inet, Stmt::lookup(&[Field::IpSaddr], "")));
        assert!(refused(
            Family::Inet,
            Stmt::lookup(
                &[
                    Field::Ip6Saddr,
                    Field::Ip6Daddr,
                    Field::Ip6Saddr,
                    Field::Ip6Daddr,
                    Field::L4Proto
                ],
                "s"
            )
        ));
        assert!(refused(Family::Inet, Stmt::CtState(vec![])));
        assert!(refused(
            Family::Inet,
            Stmt::Limit {
                rate: 1,
                per: LimitUnit::Second,
                burst: 0
            }
        ));
        assert!(refused(
            Family::Inet,
            Stmt::Log {
                prefix: Some("a\"b".into()),
                group: None
            }
        ));
        assert!(refused(
            Family::Inet,
            Stmt::PortRange {
                proto: L4Proto::Tcp,
                field: PortField::Dport,
                lo: 2,
                hi: 1
            }
        ));
        // Counters are always written fresh.
        assert_eq!(
            lower(
                Family::Ip,
                &Rule::new(vec![Stmt::Counter {
                    packets: 5,
                    bytes: 9
                }])
            )
            .unwrap(),
            vec![Expr::Counter {
                packets: 0,
                bytes: 0
            }]
        );
    }
}
