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
//! Everything here is pure: the FFI to libnftnl lives in `wire.rs`.

use super::model::{
    AddrField, CmpOp, Family, IfField, L4Proto, PortField, Rule, Stmt, Verdict, normalize,
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

pub const CMP_EQ: u32 = 0;
pub const CMP_NEQ: u32 = 1;

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

/// Why a statement cannot be put into a table of some family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LowerError(pub String);

impl fmt::Display for LowerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The kernel expressions for `rule` in a table of `family`.
pub fn lower(family: Family, rule: &Rule) -> Result<Vec<Expr>, LowerError> {
    let mut out = Vec::new();
    for s in &rule.stmts {
        lower_stmt(family, s, &mut out)?;
    }
    Ok(out)
}

fn lower_stmt(family: Family, s: &Stmt, out: &mut Vec<Expr>) -> Result<(), LowerError> {
    match s {
        Stmt::Ip { field, op, net } => lower_ip(family, *field, *op, net, out)?,
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
                offset: match field {
                    PortField::Sport => 0,
                    PortField::Dport => 2,
                },
                len: 2,
                dreg: REG_1,
            });
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
            let (code, chain) = match v {
                Verdict::Accept => (NF_ACCEPT, None),
                Verdict::Drop => (NF_DROP, None),
                Verdict::Continue => (NFT_CONTINUE, None),
                Verdict::Return => (NFT_RETURN, None),
                Verdict::Jump(c) => (NFT_JUMP, Some(c.clone())),
                Verdict::Goto(c) => (NFT_GOTO, Some(c.clone())),
            };
            out.push(Expr::Verdict { code, chain });
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
        Stmt::Unknown(s) => {
            return Err(LowerError(format!("cannot encode unknown statement {s:?}")));
        }
        other => return Err(LowerError(format!("shim {other:?}"))),
    }
    Ok(())
}

fn lower_ip(
    family: Family,
    field: AddrField,
    op: CmpOp,
    net: &IpNetwork,
    out: &mut Vec<Expr>,
) -> Result<(), LowerError> {
    let v4 = net.is_ipv4();
    match (family, v4) {
        (Family::Ip, true) | (Family::Ip6, false) => {}
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
        _ => {
            return Err(LowerError(format!(
                "address {net} does not belong in a {family} table"
            )));
        }
    }
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
    while i < exprs.len() {
        let rest = &exprs[i..];
        let (stmt, used) = lift_ip(family, rest)
            .or_else(|| lift_port(rest))
            .or_else(|| lift_simple(family, rest))
            .or_else(|| lift_dnat(family, rest))
            .unwrap_or_else(|| (Stmt::Unknown(rest[0].to_string()), 1));
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

fn lift_ip(family: Family, e: &[Expr]) -> Option<(Stmt, usize)> {
    // Optional dependency that tells the address family.
    let (dep_v4, skip) = match e {
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
        _ => (None, 0),
    };
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

fn lift_port(e: &[Expr]) -> Option<(Stmt, usize)> {
    let [
        Expr::Meta { key, dreg },
        c1,
        Expr::Payload {
            base: PAYLOAD_TRANSPORT,
            offset,
            len: 2,
            dreg: d2,
        },
        c2,
        ..,
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
    let (op, data) = cmp_after(Some(c2), *d2)?;
    let port = u16::from_be_bytes(data.try_into().ok()?);
    Some((
        Stmt::Port {
            proto: L4Proto::from_number(*proto),
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
            let v = match (*code, chain) {
                (NF_ACCEPT, None) => Verdict::Accept,
                (NF_DROP, None) => Verdict::Drop,
                (NFT_CONTINUE, None) => Verdict::Continue,
                (NFT_RETURN, None) => Verdict::Return,
                (NFT_JUMP, Some(c)) => Verdict::Jump(c.clone()),
                (NFT_GOTO, Some(c)) => Verdict::Goto(c.clone()),
                _ => return None,
            };
            Some((Stmt::Verdict(v), 1))
        }
        [Expr::Masq { flags: 0 }, ..] => Some((Stmt::Masquerade, 1)),
        _ => None,
    }
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
}
