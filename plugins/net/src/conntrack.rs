//! Connection tracking: finding and deleting flows over ctnetlink.
//!
//! Why: UDP has no connection end, so a conntrack entry created before a port mapping
//! existed (or while it pointed at another pod) keeps steering a client's datagrams to the
//! old destination for as long as the client keeps sending; a new DNAT rule is never
//! consulted. The portmap plugin therefore deletes UDP entries for its host ports after
//! installing its rules, as the reference plugin does with `conntrack -D`-like netlink calls.
//!
//! The kernel offers no "delete by destination port": we dump the table of one address
//! family and delete each matching entry by its original tuple (plus its zone), copied byte
//! for byte from the dump. An entry that vanished in between (`ENOENT`) is not an error.
//! Messages are built and parsed here (pure functions, unit-tested); the socket is the
//! netfilter socket of [`crate::nft`].

use crate::netlink::Errno;
use crate::nft::NftError;
use crate::nft::sock::{self, NfSocket};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_ZONE: u16 = 18;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;

/// IP protocol number of UDP.
pub const UDP: u8 = 17;
/// IP protocol number of TCP.
pub const TCP: u8 = 6;

/// Errors of conntrack operations.
#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    /// The kernel refused a request.
    #[error("{what}: {}", Errno(*errno))]
    Kernel { what: String, errno: i32 },
    /// The kernel answered something we cannot read.
    #[error("{what}: unexpected reply from the kernel: {reason}")]
    Protocol { what: String, reason: String },
    /// The netfilter socket failed.
    #[error(transparent)]
    Socket(#[from] NftError),
}

/// Address family of a conntrack table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    fn af(self) -> u8 {
        match self {
            Family::V4 => libc::AF_INET as u8,
            Family::V6 => libc::AF_INET6 as u8,
        }
    }

    pub fn of(addr: &IpAddr) -> Family {
        if addr.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }
}

/// One tracked flow, described by its original direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    /// The `CTA_TUPLE_ORIG` attribute as the kernel sent it, to delete exactly this entry.
    tuple: Vec<u8>,
    /// The `CTA_ZONE` attribute, if any.
    zone: Option<Vec<u8>>,
}

#[cfg(test)]
fn attr(ty: u16, value: &[u8]) -> Vec<u8> {
    let len = 4 + value.len();
    let mut v = Vec::with_capacity(len.div_ceil(4) * 4);
    v.extend_from_slice(&(len as u16).to_ne_bytes());
    v.extend_from_slice(&ty.to_ne_bytes());
    v.extend_from_slice(value);
    v.resize(len.div_ceil(4) * 4, 0);
    v
}

/// An attribute copied with its alignment padding, ready to be appended to a message.
fn padded(whole: &[u8]) -> Vec<u8> {
    let mut v = whole.to_vec();
    v.resize(whole.len().div_ceil(4) * 4, 0);
    v
}

/// One attribute: type without flags, value, and the whole attribute with its header.
type Attr<'a> = (u16, &'a [u8], &'a [u8]);

/// The attributes of `buf`, lengths checked.
fn attrs(buf: &[u8]) -> Result<Vec<Attr<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = buf;
    while rest.len() >= 4 {
        let len = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
        let ty = u16::from_ne_bytes([rest[2], rest[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > rest.len() {
            return Err(format!("bad attribute length {len}"));
        }
        out.push((ty, &rest[4..len], &rest[..len]));
        rest = rest.get(len.div_ceil(4) * 4..).unwrap_or(&[]);
    }
    Ok(out)
}

fn message(msg: u16, flags: u16, family: Family, seq: u32, attrs: &[u8]) -> Vec<u8> {
    let len = 16 + 4 + attrs.len();
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&(len as u32).to_ne_bytes());
    v.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | msg).to_ne_bytes());
    v.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    v.extend_from_slice(&seq.to_ne_bytes());
    v.extend_from_slice(&0u32.to_ne_bytes());
    // nfgenmsg: family, version 0, resource id 0.
    v.extend_from_slice(&[family.af(), 0, 0, 0]);
    v.extend_from_slice(attrs);
    v
}

/// The request dumping every entry of `family`.
fn dump_request(family: Family, seq: u32) -> Vec<u8> {
    message(IPCTNL_MSG_CT_GET, NLM_F_DUMP, family, seq, &[])
}

/// The request deleting `flow`.
fn delete_request(family: Family, flow: &Flow, seq: u32) -> Vec<u8> {
    let mut a = flow.tuple.clone();
    if let Some(z) = &flow.zone {
        a.extend_from_slice(z);
    }
    message(IPCTNL_MSG_CT_DELETE, NLM_F_ACK, family, seq, &a)
}

fn addr_of(v: &[u8]) -> Option<IpAddr> {
    match v.len() {
        4 => Some(Ipv4Addr::from(<[u8; 4]>::try_from(v).ok()?).into()),
        16 => Some(Ipv6Addr::from(<[u8; 16]>::try_from(v).ok()?).into()),
        _ => None,
    }
}

fn port_of(v: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(v.try_into().ok()?))
}

/// Parses the payload (after `nfgenmsg`) of one conntrack entry message.
fn parse_flow(payload: &[u8]) -> Result<Option<Flow>, String> {
    let mut tuple = None;
    let mut zone = None;
    for (ty, value, whole) in attrs(payload)? {
        match ty {
            CTA_TUPLE_ORIG => tuple = Some((value, whole)),
            CTA_ZONE => zone = Some(padded(whole)),
            _ => {}
        }
    }
    let Some((value, whole)) = tuple else {
        return Ok(None);
    };
    let (mut src, mut dst, mut proto, mut sport, mut dport) = (None, None, None, 0, 0);
    for (ty, v, _) in attrs(value)? {
        match ty {
            CTA_TUPLE_IP => {
                for (t, a, _) in attrs(v)? {
                    match t {
                        CTA_IP_V4_SRC | CTA_IP_V6_SRC => src = addr_of(a),
                        CTA_IP_V4_DST | CTA_IP_V6_DST => dst = addr_of(a),
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for (t, a, _) in attrs(v)? {
                    match t {
                        CTA_PROTO_NUM => proto = a.first().copied(),
                        CTA_PROTO_SRC_PORT => sport = port_of(a).unwrap_or(0),
                        CTA_PROTO_DST_PORT => dport = port_of(a).unwrap_or(0),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let (Some(src), Some(dst), Some(proto)) = (src, dst, proto) else {
        return Ok(None);
    };
    // Resend the tuple marked nested, as the kernel expects it.
    let mut tuple = padded(whole);
    let ty = u16::from_ne_bytes([tuple[2], tuple[3]]) | NLA_F_NESTED;
    tuple[2..4].copy_from_slice(&ty.to_ne_bytes());
    Ok(Some(Flow {
        proto,
        src,
        dst,
        sport,
        dport,
        tuple,
        zone,
    }))
}

/// Every tracked flow of `family` in the caller's network namespace.
pub fn flows(family: Family) -> Result<Vec<Flow>, ConntrackError> {
    let what = "list conntrack entries";
    let proto_err = |reason: String| ConntrackError::Protocol {
        what: what.to_owned(),
        reason,
    };
    let sock = NfSocket::open()?;
    sock.send(&dump_request(family, 1), what)?;
    let mut out = Vec::new();
    loop {
        let d = sock.recv(what)?;
        for m in sock::split(&d).map_err(proto_err)? {
            match m.ty {
                sock::NLMSG_DONE => return Ok(out),
                sock::NLMSG_ERROR => match m.errno() {
                    Some(0) => {}
                    Some(errno) => {
                        return Err(ConntrackError::Kernel {
                            what: what.to_owned(),
                            errno,
                        });
                    }
                    None => return Err(proto_err("short error message".to_owned())),
                },
                t if t == (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW => {
                    let p = m.payload();
                    if p.len() < 4 {
                        return Err(proto_err("short conntrack message".to_owned()));
                    }
                    if let Some(f) = parse_flow(&p[4..]).map_err(proto_err)? {
                        out.push(f);
                    }
                }
                _ => {}
            }
        }
    }
}

/// Deletes one flow; a flow already gone is not an error.
pub fn delete(family: Family, flow: &Flow) -> Result<(), ConntrackError> {
    let what = format!(
        "delete conntrack entry {} {}:{} -> {}:{}",
        flow.proto, flow.src, flow.sport, flow.dst, flow.dport
    );
    let sock = NfSocket::open()?;
    sock.send(&delete_request(family, flow, 1), &what)?;
    loop {
        let d = sock.recv(&what)?;
        for m in sock::split(&d).map_err(|reason| ConntrackError::Protocol {
            what: what.clone(),
            reason,
        })? {
            if m.ty == sock::NLMSG_ERROR {
                return match m.errno() {
                    Some(0 | libc::ENOENT) => Ok(()),
                    Some(errno) => Err(ConntrackError::Kernel { what, errno }),
                    None => Err(ConntrackError::Protocol {
                        what,
                        reason: "short error message".to_owned(),
                    }),
                };
            }
        }
    }
}

/// Deletes every entry of `family` with protocol `proto` whose original destination port
/// is one of `ports`; returns how many were deleted.
pub fn delete_by_dport(family: Family, proto: u8, ports: &[u16]) -> Result<usize, ConntrackError> {
    if ports.is_empty() {
        return Ok(0);
    }
    let mut n = 0;
    for f in flows(family)? {
        if f.proto == proto && ports.contains(&f.dport) {
            delete(family, &f)?;
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(ty: u16, parts: &[Vec<u8>]) -> Vec<u8> {
        attr(ty | NLA_F_NESTED, &parts.concat())
    }

    fn entry() -> Vec<u8> {
        let ip = nested(
            CTA_TUPLE_IP,
            &[
                attr(CTA_IP_V4_SRC, &[10, 0, 0, 1]),
                attr(CTA_IP_V4_DST, &[10, 0, 0, 2]),
            ],
        );
        let proto = nested(
            CTA_TUPLE_PROTO,
            &[
                attr(CTA_PROTO_NUM, &[UDP]),
                attr(CTA_PROTO_SRC_PORT, &4000u16.to_be_bytes()),
                attr(CTA_PROTO_DST_PORT, &53u16.to_be_bytes()),
            ],
        );
        [
            nested(CTA_TUPLE_ORIG, &[ip.clone(), proto.clone()]),
            nested(2, &[ip, proto]),
            attr(CTA_ZONE, &7u16.to_be_bytes()),
        ]
        .concat()
    }

    #[test]
    fn parses_the_original_tuple() {
        let f = parse_flow(&entry()).unwrap().unwrap();
        assert_eq!(f.proto, UDP);
        assert_eq!((f.src.to_string(), f.sport), ("10.0.0.1".to_owned(), 4000));
        assert_eq!((f.dst.to_string(), f.dport), ("10.0.0.2".to_owned(), 53));
        assert_eq!(f.zone, Some(attr(CTA_ZONE, &7u16.to_be_bytes())));
        assert_eq!(parse_flow(&attr(CTA_ZONE, &[0, 1])).unwrap(), None);
        assert!(parse_flow(&[8, 0, 1, 0]).is_err());
    }

    #[test]
    fn delete_carries_tuple_and_zone() {
        let f = parse_flow(&entry()).unwrap().unwrap();
        let m = delete_request(Family::V4, &f, 9);
        assert_eq!(
            u16::from_ne_bytes([m[4], m[5]]),
            (1 << 8) | IPCTNL_MSG_CT_DELETE
        );
        assert_eq!(u16::from_ne_bytes([m[6], m[7]]), NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(m[16], libc::AF_INET as u8);
        let a = attrs(&m[20..]).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].0, CTA_TUPLE_ORIG);
        assert_eq!(a[1].0, CTA_ZONE);
        assert_eq!(
            u32::from_ne_bytes([m[0], m[1], m[2], m[3]]) as usize,
            m.len()
        );
        let d = dump_request(Family::V6, 1);
        assert_eq!(u16::from_ne_bytes([d[6], d[7]]), NLM_F_REQUEST | NLM_F_DUMP);
        assert_eq!(d[16], libc::AF_INET6 as u8);
    }
}
