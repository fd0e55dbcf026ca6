//! Typed description of the nftables objects we own, with the canonical text rendering.
//!
//! Compilers (portmap, masquerade, MAC spoof check, later policy and services) produce these
//! values; the applier turns them into one netlink transaction ([`super::Transaction`]); the
//! lister reads the kernel back into the same values ([`super::read_table`]). Rendering follows
//! `nft list table` output of nftables 1.0.x for the subset we use (same statement spelling,
//! priority names, tabs and blank lines), so a golden test can compare our rendering with a
//! fixed text and an integration test can compare it with what `nft` itself prints.
//!
//! Statements ([`Stmt`]) are at the level `nft` prints them (`tcp dport 8080`,
//! `ip saddr 10.0.0.0/24`), not at the register level: [`super::expr`] lowers them to kernel
//! expressions and lifts kernel expressions back, and anything it cannot lift stays visible as
//! [`Stmt::Unknown`] instead of being dropped.
//!
//! Named sets and verdict maps ([`Set`]) are what a policy engine scales with: one rule
//! `ip saddr @pods_of_x` instead of one rule per pod. Their keys are typed with nft's own
//! datatypes ([`KeyType`]; a concatenation such as `ipv4_addr . inet_proto . inet_service`
//! is a list of them), which is what the kernel stores and what `nft list` prints. A set is
//! unordered in the kernel, so [`Set`] equality ignores element order, and the rendering
//! sorts and wraps elements exactly as nft 1.0 does (by value; concatenations by their bytes
//! read as one little-endian number, nft's quirk; 2, 5 or 1 element per line by type), so a
//! kernel test can compare whole tables with `nft list table` text. Protocol numbers are
//! named only for the few protocols every `/etc/protocols` has; others stay numbers, where
//! nft would print a name from the host's file.

use ipnetwork::IpNetwork;
use std::fmt::{self, Write as _};
use std::net::IpAddr;

/// Address family of a table (`nfproto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Ip,
    Ip6,
    Inet,
    Bridge,
}

impl Family {
    /// The kernel's `NFPROTO_*` value.
    pub fn nfproto(self) -> u8 {
        match self {
            Family::Inet => 1,
            Family::Ip => 2,
            Family::Bridge => 7,
            Family::Ip6 => 10,
        }
    }

    pub fn from_nfproto(v: u8) -> Option<Family> {
        match v {
            1 => Some(Family::Inet),
            2 => Some(Family::Ip),
            7 => Some(Family::Bridge),
            10 => Some(Family::Ip6),
            _ => None,
        }
    }

    /// The keyword `nft` uses (`ip`, `ip6`, `inet`, `bridge`).
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
            Family::Inet => "inet",
            Family::Bridge => "bridge",
        }
    }

    /// The single-address family of `addr` (`ip` or `ip6`).
    pub fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::Ip,
            IpAddr::V6(_) => Family::Ip6,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Netfilter hook of a base chain. The numbers are the same in the ip, ip6, inet and bridge
/// families (`NF_INET_*` / `NF_BR_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

impl Hook {
    pub fn number(self) -> u32 {
        match self {
            Hook::Prerouting => 0,
            Hook::Input => 1,
            Hook::Forward => 2,
            Hook::Output => 3,
            Hook::Postrouting => 4,
        }
    }

    pub fn from_number(n: u32) -> Option<Hook> {
        Some(match n {
            0 => Hook::Prerouting,
            1 => Hook::Input,
            2 => Hook::Forward,
            3 => Hook::Output,
            4 => Hook::Postrouting,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
        }
    }
}

/// Type of a base chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChainType {
    Filter,
    Nat,
    Route,
}

impl ChainType {
    pub fn as_str(self) -> &'static str {
        match self {
            ChainType::Filter => "filter",
            ChainType::Nat => "nat",
            ChainType::Route => "route",
        }
    }

    pub fn parse(s: &str) -> Option<ChainType> {
        Some(match s {
            "filter" => ChainType::Filter,
            "nat" => ChainType::Nat,
            "route" => ChainType::Route,
            _ => return None,
        })
    }
}

/// Verdict for packets that reach the end of a base chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    Accept,
    Drop,
}

/// Hook, type, priority and policy of a base chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BaseChain {
    pub chain_type: ChainType,
    pub hook: Hook,
    /// Lower runs earlier; e.g. -100 is `dstnat` and 100 `srcnat` in the ip families.
    pub priority: i32,
    pub policy: Policy,
}

impl BaseChain {
    pub fn new(chain_type: ChainType, hook: Hook, priority: i32) -> BaseChain {
        BaseChain {
            chain_type,
            hook,
            priority,
            policy: Policy::Accept,
        }
    }
}

/// A chain and (when read from the kernel or wanted in full) its rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    /// `None` for a regular chain reached only by jump/goto.
    pub base: Option<BaseChain>,
    pub rules: Vec<Rule>,
}

impl Chain {
    pub fn regular(name: &str) -> Chain {
        Chain {
            name: name.to_owned(),
            base: None,
            rules: Vec::new(),
        }
    }

    pub fn base(name: &str, base: BaseChain) -> Chain {
        Chain {
            name: name.to_owned(),
            base: Some(base),
            rules: Vec::new(),
        }
    }
}

/// A table with its chains and its named sets and maps, each in creation order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub family: Family,
    pub name: String,
    pub chains: Vec<Chain>,
    /// Rendered before the chains, as `nft list` does.
    pub sets: Vec<Set>,
}

impl Table {
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }

    pub fn set(&self, name: &str) -> Option<&Set> {
        self.sets.iter().find(|s| s.name == name)
    }
}

/// `saddr` or `daddr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrField {
    Saddr,
    Daddr,
}

/// Comparison of a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    Neq,
}

/// Transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum L4Proto {
    Tcp,
    Udp,
    Sctp,
    Other(u8),
}

impl L4Proto {
    pub fn number(self) -> u8 {
        match self {
            L4Proto::Tcp => 6,
            L4Proto::Udp => 17,
            L4Proto::Sctp => 132,
            L4Proto::Other(n) => n,
        }
    }

    pub fn from_number(n: u8) -> L4Proto {
        match n {
            6 => L4Proto::Tcp,
            17 => L4Proto::Udp,
            132 => L4Proto::Sctp,
            n => L4Proto::Other(n),
        }
    }

    /// `tcp`, `udp`, `sctp`; `None` for protocols without a port keyword here.
    pub fn keyword(self) -> Option<&'static str> {
        match self {
            L4Proto::Tcp => Some("tcp"),
            L4Proto::Udp => Some("udp"),
            L4Proto::Sctp => Some("sctp"),
            L4Proto::Other(_) => None,
        }
    }
}

/// `sport` or `dport` (same offsets in tcp, udp and sctp headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortField {
    Sport,
    Dport,
}

/// `iifname` or `oifname`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IfField {
    Iifname,
    Oifname,
}

/// A verdict statement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Verdict {
    Accept,
    Drop,
    Continue,
    Return,
    Jump(String),
    Goto(String),
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Accept => f.write_str("accept"),
            Verdict::Drop => f.write_str("drop"),
            Verdict::Continue => f.write_str("continue"),
            Verdict::Return => f.write_str("return"),
            Verdict::Jump(c) => write!(f, "jump {c}"),
            Verdict::Goto(c) => write!(f, "goto {c}"),
        }
    }
}

/// The datatype of one part of a set key (nft's `ipv4_addr`, `ipv6_addr`, `inet_proto`,
/// `inet_service`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyType {
    Ipv4Addr,
    Ipv6Addr,
    InetProto,
    InetService,
}

/// nft's `TYPE_BITS`: a concatenation's type id is the part ids, 6 bits each, first part
/// highest.
pub const TYPE_BITS: u32 = 6;

impl KeyType {
    /// nft's datatype id (`enum datatypes`), which the kernel stores as the set key type.
    pub fn nft_id(self) -> u32 {
        match self {
            KeyType::Ipv4Addr => 7,
            KeyType::Ipv6Addr => 8,
            KeyType::InetProto => 12,
            KeyType::InetService => 13,
        }
    }

    pub fn from_nft_id(id: u32) -> Option<KeyType> {
        Some(match id {
            7 => KeyType::Ipv4Addr,
            8 => KeyType::Ipv6Addr,
            12 => KeyType::InetProto,
            13 => KeyType::InetService,
            _ => return None,
        })
    }

    /// The name `nft` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Ipv4Addr => "ipv4_addr",
            KeyType::Ipv6Addr => "ipv6_addr",
            KeyType::InetProto => "inet_proto",
            KeyType::InetService => "inet_service",
        }
    }

    /// Bytes of a value, before any padding.
    pub fn byte_len(self) -> usize {
        match self {
            KeyType::Ipv4Addr => 4,
            KeyType::Ipv6Addr => 16,
            KeyType::InetProto => 1,
            KeyType::InetService => 2,
        }
    }

    /// Whether `part` is a value of this type.
    pub fn accepts(self, part: &KeyPart) -> bool {
        matches!(
            (self, part),
            (KeyType::Ipv4Addr, KeyPart::Addr(IpAddr::V4(_)))
                | (KeyType::Ipv6Addr, KeyPart::Addr(IpAddr::V6(_)))
                | (KeyType::InetProto, KeyPart::Proto(_))
                | (KeyType::InetService, KeyPart::Port(_))
        )
    }
}

/// What a set lookup loads from the packet: `ip saddr`, `ip daddr`, `ip6 saddr`,
/// `ip6 daddr`, `meta l4proto`, `th dport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    IpSaddr,
    IpDaddr,
    Ip6Saddr,
    Ip6Daddr,
    L4Proto,
    ThDport,
}

impl Field {
    /// The datatype of the loaded value (what the set's key must be at this position).
    pub fn key_type(self) -> KeyType {
        match self {
            Field::IpSaddr | Field::IpDaddr => KeyType::Ipv4Addr,
            Field::Ip6Saddr | Field::Ip6Daddr => KeyType::Ipv6Addr,
            Field::L4Proto => KeyType::InetProto,
            Field::ThDport => KeyType::InetService,
        }
    }

    /// `Some(true)` for IPv4 header fields, `Some(false)` for IPv6, `None` otherwise.
    pub fn is_ipv4(self) -> Option<bool> {
        match self {
            Field::IpSaddr | Field::IpDaddr => Some(true),
            Field::Ip6Saddr | Field::Ip6Daddr => Some(false),
            Field::L4Proto | Field::ThDport => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Field::IpSaddr => "ip saddr",
            Field::IpDaddr => "ip daddr",
            Field::Ip6Saddr => "ip6 saddr",
            Field::Ip6Daddr => "ip6 daddr",
            Field::L4Proto => "meta l4proto",
            Field::ThDport => "th dport",
        }
    }
}

/// One part of a set element's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyPart {
    Addr(IpAddr),
    Proto(u8),
    Port(u16),
}

impl KeyPart {
    /// The value as the kernel compares it: addresses and ports in network byte order.
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            KeyPart::Addr(IpAddr::V4(a)) => a.octets().to_vec(),
            KeyPart::Addr(IpAddr::V6(a)) => a.octets().to_vec(),
            KeyPart::Proto(p) => vec![*p],
            KeyPart::Port(p) => p.to_be_bytes().to_vec(),
        }
    }

    /// The datatype this part belongs to.
    pub fn key_type(&self) -> KeyType {
        match self {
            KeyPart::Addr(IpAddr::V4(_)) => KeyType::Ipv4Addr,
            KeyPart::Addr(IpAddr::V6(_)) => KeyType::Ipv6Addr,
            KeyPart::Proto(_) => KeyType::InetProto,
            KeyPart::Port(_) => KeyType::InetService,
        }
    }

    /// Reads a part of type `ty` from exactly `ty.byte_len()` bytes.
    pub fn from_bytes(ty: KeyType, b: &[u8]) -> Option<KeyPart> {
        Some(match ty {
            KeyType::Ipv4Addr => KeyPart::Addr(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
            KeyType::Ipv6Addr => KeyPart::Addr(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
            KeyType::InetProto => KeyPart::Proto(*<&[u8; 1]>::try_from(b).ok()?.first()?),
            KeyType::InetService => KeyPart::Port(u16::from_be_bytes(b.try_into().ok()?)),
        })
    }
}

/// `tcp`, `udp`, ... for the protocols `nft` names on a stock system, else the number.
pub fn proto_name(p: u8) -> String {
    match p {
        1 => "icmp".to_owned(),
        6 => "tcp".to_owned(),
        17 => "udp".to_owned(),
        58 => "ipv6-icmp".to_owned(),
        132 => "sctp".to_owned(),
        n => n.to_string(),
    }
}

impl fmt::Display for KeyPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyPart::Addr(a) => write!(f, "{a}"),
            KeyPart::Proto(p) => f.write_str(&proto_name(*p)),
            KeyPart::Port(p) => write!(f, "{p}"),
        }
    }
}

/// Bytes of a key in the kernel's layout: the parts in order, each zero-padded to a
/// multiple of 4 bytes when there are several (a concatenation spans consecutive 32-bit
/// registers), unpadded when there is one.
pub fn key_bytes(key: &[KeyPart]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in key {
        out.extend_from_slice(&p.bytes());
        if key.len() > 1 {
            out.resize(out.len().div_ceil(4) * 4, 0);
        }
    }
    out
}

/// One element of a set or verdict map.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SetElem {
    /// One part per key type of the set, in order.
    pub key: Vec<KeyPart>,
    /// The verdict of a verdict map's element (`Accept`, `Drop`, `Jump`, `Goto`); `None` in
    /// a plain set.
    pub verdict: Option<Verdict>,
}

impl SetElem {
    /// An element of a plain set.
    pub fn key(key: Vec<KeyPart>) -> SetElem {
        SetElem { key, verdict: None }
    }

    /// An element of a verdict map.
    pub fn map(key: Vec<KeyPart>, verdict: Verdict) -> SetElem {
        SetElem {
            key,
            verdict: Some(verdict),
        }
    }
}

impl fmt::Display for SetElem {
    /// `10.0.0.1 . tcp . 80`, or `10.0.0.1 : jump c` in a map.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.key.iter().enumerate() {
            if i > 0 {
                f.write_str(" . ")?;
            }
            write!(f, "{p}")?;
        }
        if let Some(v) = &self.verdict {
            write!(f, " : {v}")?;
        }
        Ok(())
    }
}

/// A named set (`vmap: false`) or verdict map (`vmap: true`) with its elements.
///
/// Equality ignores the order of the elements (the kernel keeps none); the listing returns
/// them, and the rendering prints them, in the order `nft list` uses.
#[derive(Debug, Clone, Eq)]
pub struct Set {
    pub name: String,
    /// One type, or several for a concatenation (`ipv4_addr . inet_proto . inet_service`).
    pub key: Vec<KeyType>,
    /// A verdict map (`type ipv4_addr : verdict`): every element carries a verdict.
    pub vmap: bool,
    pub comment: Option<String>,
    pub elements: Vec<SetElem>,
}

impl PartialEq for Set {
    fn eq(&self, other: &Set) -> bool {
        let norm = |s: &Set| {
            let mut e: Vec<_> = s.elements.iter().map(|e| (key_bytes(&e.key), e)).collect();
            e.sort_by(|a, b| a.0.cmp(&b.0));
            e.dedup();
            e.into_iter().map(|(_, e)| e.clone()).collect::<Vec<_>>()
        };
        self.name == other.name
            && self.key == other.key
            && self.vmap == other.vmap
            && self.comment == other.comment
            && norm(self) == norm(other)
    }
}

impl Set {
    /// An empty set of `key`.
    pub fn new(name: &str, key: Vec<KeyType>) -> Set {
        Set {
            name: name.to_owned(),
            key,
            vmap: false,
            comment: None,
            elements: Vec::new(),
        }
    }

    /// An empty verdict map from `key`.
    pub fn vmap(name: &str, key: Vec<KeyType>) -> Set {
        Set {
            vmap: true,
            ..Set::new(name, key)
        }
    }

    /// The kernel's key type: nft's datatype id, or for a concatenation the ids packed
    /// [`TYPE_BITS`] each, first part in the highest bits.
    pub fn key_type_id(&self) -> u32 {
        self.key
            .iter()
            .fold(0, |acc, t| (acc << TYPE_BITS) | t.nft_id())
    }

    /// Bytes of a key: the sum of the parts, each padded to 4 bytes in a concatenation.
    pub fn key_len(&self) -> usize {
        if self.key.len() > 1 {
            self.key.iter().map(|t| t.byte_len().div_ceil(4) * 4).sum()
        } else {
            self.key.iter().map(|t| t.byte_len()).sum()
        }
    }

    /// `ipv4_addr . inet_service`, with ` : verdict` for a map.
    pub fn type_text(&self) -> String {
        let mut out = self
            .key
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(" . ");
        if self.vmap {
            out.push_str(" : verdict");
        }
        out
    }

    /// `set` or `map`.
    pub fn keyword(&self) -> &'static str {
        if self.vmap { "map" } else { "set" }
    }

    /// Why `elem` cannot be an element of this set, if it cannot.
    pub fn check_elem(&self, elem: &SetElem) -> Result<(), String> {
        let fits = elem.key.len() == self.key.len()
            && self.key.iter().zip(&elem.key).all(|(t, p)| t.accepts(p));
        if !fits {
            return Err(format!(
                "element {elem} does not match type {}",
                self.type_text()
            ));
        }
        match (&elem.verdict, self.vmap) {
            (None, true) => Err(format!("element {elem} of a verdict map has no verdict")),
            (Some(_), false) => Err(format!("element {elem} of a set has a verdict")),
            _ => Ok(()),
        }
    }

    /// The elements in the order `nft list` prints them: by value for one key type; for a
    /// concatenation by the key read as one host-endian (little-endian) number, which is how
    /// nft 1.0 compares concatenated values.
    pub fn sorted_elements(&self) -> Vec<SetElem> {
        let concat = self.key.len() > 1;
        let mut e: Vec<(Vec<u8>, &SetElem)> = self
            .elements
            .iter()
            .map(|e| {
                let mut k = key_bytes(&e.key);
                if concat {
                    k.reverse();
                }
                (k, e)
            })
            .collect();
        e.sort_by(|a, b| a.0.cmp(&b.0));
        e.into_iter().map(|(_, e)| e.clone()).collect()
    }

    /// Elements per line in `nft list` output (nft's `calculate_delim`).
    fn per_line(&self) -> usize {
        match self.key.as_slice() {
            [KeyType::Ipv4Addr] => 2,
            [KeyType::InetProto] | [KeyType::InetService] => 5,
            _ => 1,
        }
    }

    /// The `set`/`map` block as `nft list table` prints it inside a table (one tab indent).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "\t{} {} {{", self.keyword(), self.name);
        let _ = writeln!(out, "\t\ttype {}", self.type_text());
        if let Some(c) = &self.comment {
            let _ = writeln!(out, "\t\tcomment \"{c}\"");
        }
        let elems = self.sorted_elements();
        if !elems.is_empty() {
            out.push_str("\t\telements = { ");
            let per_line = self.per_line();
            for (i, e) in elems.iter().enumerate() {
                if i > 0 {
                    out.push_str(if i % per_line == 0 {
                        ",\n\t\t\t     "
                    } else {
                        ", "
                    });
                }
                let _ = write!(out, "{e}");
            }
            out.push_str(" }\n");
        }
        out.push_str("\t}\n");
        out
    }
}

/// A conntrack state, in the order `nft` prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CtState {
    Invalid,
    Established,
    Related,
    New,
    Untracked,
}

impl CtState {
    pub const ALL: [CtState; 5] = [
        CtState::Invalid,
        CtState::Established,
        CtState::Related,
        CtState::New,
        CtState::Untracked,
    ];

    /// The kernel's state bit (`NF_CT_STATE_*_BIT`).
    pub fn bit(self) -> u32 {
        match self {
            CtState::Invalid => 1,
            CtState::Established => 1 << 1,
            CtState::Related => 1 << 2,
            CtState::New => 1 << 3,
            CtState::Untracked => 1 << 6,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CtState::Invalid => "invalid",
            CtState::Established => "established",
            CtState::Related => "related",
            CtState::New => "new",
            CtState::Untracked => "untracked",
        }
    }
}

/// The time unit of a rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitUnit {
    Second,
    Minute,
}

impl LimitUnit {
    /// Seconds per unit (the kernel's `NFTA_LIMIT_UNIT`).
    pub fn seconds(self) -> u64 {
        match self {
            LimitUnit::Second => 1,
            LimitUnit::Minute => 60,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LimitUnit::Second => "second",
            LimitUnit::Minute => "minute",
        }
    }
}

/// The burst `nft` assumes (and does not print) for a packet rate limit.
pub const LIMIT_DEFAULT_BURST: u32 = 5;

/// One statement of a rule, at the level `nft` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Stmt {
    /// `ip saddr 10.0.0.2`, `ip6 daddr != 2001:db8::/64`: the family follows the network.
    /// Host bits of `net` are zero (use [`Stmt::ip`] to build it).
    Ip {
        field: AddrField,
        op: CmpOp,
        net: IpNetwork,
    },
    /// `meta l4proto tcp`.
    L4Proto(L4Proto),
    /// `tcp dport 8080`: the transport protocol match and the port match together.
    Port {
        proto: L4Proto,
        field: PortField,
        op: CmpOp,
        port: u16,
    },
    /// `fib daddr type local`: the destination is an address of this host.
    FibDaddrLocal,
    /// `iifname "veth1"`.
    Ifname {
        field: IfField,
        op: CmpOp,
        name: String,
    },
    /// `ether saddr 02:00:00:00:00:01` (bridge family).
    EtherSaddr {
        op: CmpOp,
        mac: [u8; 6],
    },
    Verdict(Verdict),
    /// `masquerade`.
    Masquerade,
    /// `dnat to 10.0.0.2:80`.
    Dnat {
        addr: IpAddr,
        port: Option<u16>,
    },
    /// `ip saddr @s`, `ip daddr . meta l4proto . th dport @s`, `ip saddr != @s`: the fields,
    /// loaded into consecutive registers, looked up in the named set, whose key types must
    /// be the fields' [`Field::key_type`]s in order.
    Lookup {
        fields: Vec<Field>,
        set: String,
        negate: bool,
    },
    /// `ip daddr vmap @m`: the verdict of the map element matching the fields.
    Vmap {
        fields: Vec<Field>,
        map: String,
    },
    /// `ct state established,related`: any of the states. Listing returns them in
    /// [`CtState`] order; build with [`Stmt::ct_state`] to compare equal.
    CtState(Vec<CtState>),
    /// `counter packets 0 bytes 0`. Always written as a fresh counter (the values are
    /// ignored); listing returns the kernel's values.
    Counter {
        packets: u64,
        bytes: u64,
    },
    /// `limit rate 10/second burst 5 packets` (nft omits `burst 5 packets`, its default, and
    /// so does the rendering). `rate` and `burst` are packets and at least 1.
    Limit {
        rate: u32,
        per: LimitUnit,
        burst: u32,
    },
    /// `log prefix "x" group 100`: to the kernel log, or to nflog group `group`.
    Log {
        prefix: Option<String>,
        group: Option<u16>,
    },
    /// `tcp dport 1000-2000`: a port in `lo..=hi` (`lo <= hi`).
    PortRange {
        proto: L4Proto,
        field: PortField,
        lo: u16,
        hi: u16,
    },
    /// Kernel expressions we did not generate and cannot name; kept so a reader sees them.
    Unknown(String),
}

impl Stmt {
    /// An address match with the host bits of `net` cleared (`10.1.2.2/24` -> `10.1.2.0/24`).
    pub fn ip(field: AddrField, op: CmpOp, net: IpNetwork) -> Stmt {
        Stmt::Ip {
            field,
            op,
            net: normalize(net),
        }
    }

    /// An exact address match (`/32` or `/128`).
    pub fn ip_addr(field: AddrField, op: CmpOp, addr: IpAddr) -> Stmt {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        // A full-length prefix is always valid.
        let net = IpNetwork::new(addr, prefix).unwrap_or_else(|_| IpNetwork::from(addr));
        Stmt::Ip { field, op, net }
    }

    /// `tcp dport N` and friends.
    pub fn dport(proto: L4Proto, port: u16) -> Stmt {
        Stmt::Port {
            proto,
            field: PortField::Dport,
            op: CmpOp::Eq,
            port,
        }
    }

    /// `ct state` with the states in [`CtState`] order, without duplicates (the order the
    /// listing returns).
    pub fn ct_state(states: &[CtState]) -> Stmt {
        let mut v = states.to_vec();
        v.sort();
        v.dedup();
        Stmt::CtState(v)
    }

    /// `ip saddr @set` and friends.
    pub fn lookup(fields: &[Field], set: &str) -> Stmt {
        Stmt::Lookup {
            fields: fields.to_vec(),
            set: set.to_owned(),
            negate: false,
        }
    }

    fn render(&self, family: Family, out: &mut String) {
        // Writing into a String cannot fail.
        let _ = self.write_text(family, out);
    }

    fn write_text(&self, family: Family, out: &mut String) -> fmt::Result {
        let op = |op: &CmpOp| match op {
            CmpOp::Eq => "",
            CmpOp::Neq => "!= ",
        };
        match self {
            Stmt::Ip { field, op: o, net } => {
                let fam = if net.is_ipv4() { "ip" } else { "ip6" };
                let field = match field {
                    AddrField::Saddr => "saddr",
                    AddrField::Daddr => "daddr",
                };
                let full = if net.is_ipv4() { 32 } else { 128 };
                if net.prefix() == full {
                    write!(out, "{fam} {field} {}{}", op(o), net.ip())
                } else {
                    write!(
                        out,
                        "{fam} {field} {}{}/{}",
                        op(o),
                        net.network(),
                        net.prefix()
                    )
                }
            }
            Stmt::L4Proto(p) => match p.keyword() {
                Some(k) => write!(out, "meta l4proto {k}"),
                None => write!(out, "meta l4proto {}", p.number()),
            },
            Stmt::Port {
                proto,
                field,
                op: o,
                port,
            } => {
                let field = match field {
                    PortField::Sport => "sport",
                    PortField::Dport => "dport",
                };
                match proto.keyword() {
                    Some(k) => write!(out, "{k} {field} {}{port}", op(o)),
                    None => write!(
                        out,
                        "meta l4proto {} th {field} {}{port}",
                        proto.number(),
                        op(o)
                    ),
                }
            }
            Stmt::FibDaddrLocal => write!(out, "fib daddr type local"),
            Stmt::Ifname { field, op: o, name } => {
                let kw = match field {
                    IfField::Iifname => "iifname",
                    IfField::Oifname => "oifname",
                };
                write!(out, "{kw} {}\"{name}\"", op(o))
            }
            Stmt::EtherSaddr { op: o, mac } => {
                write!(out, "ether saddr {}{}", op(o), format_mac(mac))
            }
            Stmt::Verdict(v) => write!(out, "{v}"),
            Stmt::Masquerade => write!(out, "masquerade"),
            Stmt::Dnat { addr, port } => {
                let fam = match (family, addr) {
                    (Family::Inet, IpAddr::V4(_)) => "ip ",
                    (Family::Inet, IpAddr::V6(_)) => "ip6 ",
                    _ => "",
                };
                match (addr, port) {
                    (IpAddr::V4(a), Some(p)) => write!(out, "dnat {fam}to {a}:{p}"),
                    (IpAddr::V6(a), Some(p)) => write!(out, "dnat {fam}to [{a}]:{p}"),
                    (a, None) => write!(out, "dnat {fam}to {a}"),
                }
            }
            Stmt::Lookup {
                fields,
                set,
                negate,
            } => {
                let neg = if *negate { "!= " } else { "" };
                write!(out, "{} {neg}@{set}", fields_text(fields))
            }
            Stmt::Vmap { fields, map } => write!(out, "{} vmap @{map}", fields_text(fields)),
            Stmt::CtState(states) => {
                let s: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
                write!(out, "ct state {}", s.join(","))
            }
            Stmt::Counter { packets, bytes } => {
                write!(out, "counter packets {packets} bytes {bytes}")
            }
            Stmt::Limit { rate, per, burst } => {
                write!(out, "limit rate {rate}/{}", per.as_str())?;
                if *burst != LIMIT_DEFAULT_BURST && *burst != 0 {
                    write!(out, " burst {burst} packets")?;
                }
                Ok(())
            }
            Stmt::Log { prefix, group } => {
                out.push_str("log");
                if let Some(p) = prefix {
                    write!(out, " prefix \"{p}\"")?;
                }
                if let Some(g) = group {
                    write!(out, " group {g}")?;
                }
                Ok(())
            }
            Stmt::PortRange {
                proto,
                field,
                lo,
                hi,
            } => {
                let field = match field {
                    PortField::Sport => "sport",
                    PortField::Dport => "dport",
                };
                match proto.keyword() {
                    Some(k) => write!(out, "{k} {field} {lo}-{hi}"),
                    None => write!(out, "meta l4proto {} th {field} {lo}-{hi}", proto.number()),
                }
            }
            Stmt::Unknown(s) => write!(out, "{s}"),
        }
    }
}

/// `ip daddr . meta l4proto . th dport`.
fn fields_text(fields: &[Field]) -> String {
    fields
        .iter()
        .map(|f| f.as_str())
        .collect::<Vec<_>>()
        .join(" . ")
}

/// Clears the host bits of a network.
pub fn normalize(net: IpNetwork) -> IpNetwork {
    IpNetwork::new(net.network(), net.prefix()).unwrap_or(net)
}

/// `02:00:00:00:00:01`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff` (either case).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in out.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// A rule: statements in order and an optional comment (kept in the rule's user data).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    pub stmts: Vec<Stmt>,
    pub comment: Option<String>,
}

impl Rule {
    pub fn new(stmts: Vec<Stmt>) -> Rule {
        Rule {
            stmts,
            comment: None,
        }
    }

    pub fn with_comment(mut self, comment: &str) -> Rule {
        self.comment = Some(comment.to_owned());
        self
    }

    /// The rule as `nft` prints it inside a chain of a `family` table.
    pub fn render(&self, family: Family) -> String {
        let mut out = String::new();
        for (i, s) in self.stmts.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            s.render(family, &mut out);
        }
        if let Some(c) = &self.comment {
            if !out.is_empty() {
                out.push(' ');
            }
            let _ = write!(out, "comment \"{c}\"");
        }
        out
    }
}

/// A rule read from the kernel, with the handle needed to delete it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedRule {
    pub handle: u64,
    pub rule: Rule,
}

/// `nft`'s name for a standard priority (`dstnat`, `srcnat`, `filter + 5`), or the number.
///
/// Mirrors nftables' `prio2str`: a name is used when the priority is within 10 of a standard
/// value that is valid for this family and hook.
pub fn priority_name(family: Family, hook: Hook, prio: i32) -> String {
    let std: &[(i32, &str)] = if family == Family::Bridge {
        &[
            (-300, "dstnat"),
            (-200, "filter"),
            (100, "out"),
            (300, "srcnat"),
        ]
    } else {
        &[
            (-300, "raw"),
            (-150, "mangle"),
            (-100, "dstnat"),
            (0, "filter"),
            (50, "security"),
            (100, "srcnat"),
        ]
    };
    for &(val, name) in std {
        if (prio - val).abs() > 10 {
            continue;
        }
        if !std_prio_compatible(family, hook, val) {
            break;
        }
        let off = prio - val;
        return match off.cmp(&0) {
            std::cmp::Ordering::Equal => name.to_owned(),
            std::cmp::Ordering::Greater => format!("{name} + {off}"),
            std::cmp::Ordering::Less => format!("{name} - {}", -off),
        };
    }
    prio.to_string()
}

fn std_prio_compatible(family: Family, hook: Hook, val: i32) -> bool {
    if family == Family::Bridge {
        return match val {
            -300 => hook == Hook::Prerouting,
            -200 => true,
            100 => hook == Hook::Output,
            300 => hook == Hook::Postrouting,
            _ => false,
        };
    }
    match val {
        0 | -300 | -150 | 50 => true,
        -100 => hook == Hook::Prerouting,
        100 => hook == Hook::Postrouting,
        _ => false,
    }
}

impl BaseChain {
    /// `type nat hook prerouting priority dstnat; policy accept;`
    pub fn render(&self, family: Family) -> String {
        format!(
            "type {} hook {} priority {}; policy {};",
            self.chain_type.as_str(),
            self.hook.as_str(),
            priority_name(family, self.hook, self.priority),
            match self.policy {
                Policy::Accept => "accept",
                Policy::Drop => "drop",
            }
        )
    }
}

impl fmt::Display for Table {
    /// The table as `nft list table` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "table {} {} {{", self.family, self.name)?;
        for (i, s) in self.sets.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            f.write_str(&s.render())?;
        }
        for (i, c) in self.chains.iter().enumerate() {
            if i > 0 || !self.sets.is_empty() {
                writeln!(f)?;
            }
            writeln!(f, "\tchain {} {{", c.name)?;
            if let Some(b) = &c.base {
                writeln!(f, "\t\t{}", b.render(self.family))?;
            }
            for r in &c.rules {
                writeln!(f, "\t\t{}", r.render(self.family))?;
            }
            writeln!(f, "\t}}")?;
        }
        writeln!(f, "}}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_are_named_like_nft() {
        assert_eq!(priority_name(Family::Ip, Hook::Prerouting, -100), "dstnat");
        assert_eq!(priority_name(Family::Ip, Hook::Output, -100), "-100");
        assert_eq!(
            priority_name(Family::Inet, Hook::Postrouting, 100),
            "srcnat"
        );
        assert_eq!(priority_name(Family::Inet, Hook::Input, 5), "filter + 5");
        assert_eq!(priority_name(Family::Ip, Hook::Input, -3), "filter - 3");
        assert_eq!(
            priority_name(Family::Bridge, Hook::Prerouting, -300),
            "dstnat"
        );
        assert_eq!(priority_name(Family::Bridge, Hook::Input, -300), "-300");
        assert_eq!(priority_name(Family::Ip, Hook::Input, 1000), "1000");
    }

    #[test]
    fn statements_render_like_nft() {
        let r = Rule::new(vec![
            Stmt::ip_addr(AddrField::Daddr, CmpOp::Eq, "192.168.0.2".parse().unwrap()),
            Stmt::dport(L4Proto::Tcp, 8083),
            Stmt::Dnat {
                addr: "10.0.0.2".parse().unwrap(),
                port: Some(83),
            },
        ])
        .with_comment("abc");
        assert_eq!(
            r.render(Family::Ip),
            "ip daddr 192.168.0.2 tcp dport 8083 dnat to 10.0.0.2:83 comment \"abc\""
        );
        let r = Rule::new(vec![
            Stmt::ip(
                AddrField::Saddr,
                CmpOp::Neq,
                "2001:db8::5/64".parse().unwrap(),
            ),
            Stmt::Dnat {
                addr: "2001:db8::2".parse().unwrap(),
                port: Some(80),
            },
        ]);
        assert_eq!(
            r.render(Family::Ip6),
            "ip6 saddr != 2001:db8::/64 dnat to [2001:db8::2]:80"
        );
        assert_eq!(
            r.render(Family::Inet),
            "ip6 saddr != 2001:db8::/64 dnat ip6 to [2001:db8::2]:80"
        );
        let r = Rule::new(vec![
            Stmt::Ifname {
                field: IfField::Iifname,
                op: CmpOp::Eq,
                name: "veth1".into(),
            },
            Stmt::EtherSaddr {
                op: CmpOp::Neq,
                mac: parse_mac("02:00:00:00:00:0A").unwrap(),
            },
            Stmt::Verdict(Verdict::Drop),
        ]);
        assert_eq!(
            r.render(Family::Bridge),
            "iifname \"veth1\" ether saddr != 02:00:00:00:00:0a drop"
        );
    }

    #[test]
    fn macs_parse_strictly() {
        assert_eq!(parse_mac("02:00:00:00:00:01"), Some([2, 0, 0, 0, 0, 1]));
        assert_eq!(parse_mac("02:00:00:00:00"), None);
        assert_eq!(parse_mac("02:00:00:00:00:01:02"), None);
        assert_eq!(parse_mac("2:00:00:00:00:01"), None);
        assert_eq!(parse_mac("zz:00:00:00:00:01"), None);
    }

    #[test]
    fn table_renders_like_nft_list() {
        let mut pre = Chain::base(
            "prerouting",
            BaseChain::new(ChainType::Nat, Hook::Prerouting, -100),
        );
        pre.rules.push(Rule::new(vec![
            Stmt::FibDaddrLocal,
            Stmt::Verdict(Verdict::Jump("hostports".into())),
        ]));
        let t = Table {
            family: Family::Ip,
            name: "t".into(),
            chains: vec![Chain::regular("hostports"), pre],
            sets: Vec::new(),
        };
        assert_eq!(
            t.to_string(),
            "table ip t {\n\tchain hostports {\n\t}\n\n\tchain prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t\tfib daddr type local jump hostports\n\t}\n}\n"
        );
    }

    fn v4(s: &str) -> KeyPart {
        KeyPart::Addr(s.parse().unwrap())
    }

    #[test]
    fn sets_render_like_nft_list() {
        // Captured from `nft list table ip w` (nftables 1.0.6) after loading the same
        // sets with `nft -f`: elements sorted, wrapped 2 (IPv4), 5 (ports) or 1 (IPv6,
        // concatenations) per line.
        let mut a = Set::new("a", vec![KeyType::Ipv4Addr]);
        a.elements = (1..=12)
            .rev()
            .map(|i| SetElem::key(vec![v4(&format!("10.0.0.{i}"))]))
            .collect();
        let mut b = Set::new("b", vec![KeyType::InetService]);
        b.elements = (1..=25)
            .map(|p| SetElem::key(vec![KeyPart::Port(p)]))
            .collect();
        let mut d = Set::new(
            "d",
            vec![KeyType::Ipv4Addr, KeyType::InetProto, KeyType::InetService],
        );
        d.elements = vec![
            SetElem::key(vec![v4("10.0.0.2"), KeyPart::Proto(17), KeyPart::Port(4)]),
            SetElem::key(vec![v4("10.0.0.1"), KeyPart::Proto(6), KeyPart::Port(1)]),
            SetElem::key(vec![v4("10.0.0.1"), KeyPart::Proto(6), KeyPart::Port(3)]),
            SetElem::key(vec![v4("10.0.0.1"), KeyPart::Proto(6), KeyPart::Port(2)]),
        ];
        let mut e = Set::new("e", vec![KeyType::Ipv6Addr]);
        e.elements = (1..=3)
            .map(|i| SetElem::key(vec![KeyPart::Addr(format!("::{i}").parse().unwrap())]))
            .collect();
        let mut m = Set::vmap("m", vec![KeyType::Ipv4Addr]);
        m.elements = (1..=5)
            .map(|i| {
                let v = if i == 5 {
                    Verdict::Drop
                } else {
                    Verdict::Accept
                };
                SetElem::map(vec![v4(&format!("10.0.0.{i}"))], v)
            })
            .collect();
        let mut n = Set::vmap("n", vec![KeyType::Ipv4Addr, KeyType::InetService]);
        n.elements = vec![
            SetElem::map(
                vec![v4("10.0.0.2"), KeyPart::Port(81)],
                Verdict::Jump("x".into()),
            ),
            SetElem::map(vec![v4("10.0.0.1"), KeyPart::Port(80)], Verdict::Accept),
        ];
        let mut em = Set::new("em", vec![KeyType::Ipv4Addr]);
        em.comment = Some("c".into());
        let t = Table {
            family: Family::Ip,
            name: "w".into(),
            chains: vec![Chain::regular("x")],
            sets: vec![a, b, d, e, m, n, em],
        };
        assert_eq!(
            t.to_string(),
            "table ip w {
	set a {
		type ipv4_addr
		elements = { 10.0.0.1, 10.0.0.2,
			     10.0.0.3, 10.0.0.4,
			     10.0.0.5, 10.0.0.6,
			     10.0.0.7, 10.0.0.8,
			     10.0.0.9, 10.0.0.10,
			     10.0.0.11, 10.0.0.12 }
	}

	set b {
		type inet_service
		elements = { 1, 2, 3, 4, 5,
			     6, 7, 8, 9, 10,
			     11, 12, 13, 14, 15,
			     16, 17, 18, 19, 20,
			     21, 22, 23, 24, 25 }
	}

	set d {
		type ipv4_addr . inet_proto . inet_service
		elements = { 10.0.0.1 . tcp . 1,
			     10.0.0.1 . tcp . 2,
			     10.0.0.1 . tcp . 3,
			     10.0.0.2 . udp . 4 }
	}

	set e {
		type ipv6_addr
		elements = { ::1,
			     ::2,
			     ::3 }
	}

	map m {
		type ipv4_addr : verdict
		elements = { 10.0.0.1 : accept, 10.0.0.2 : accept,
			     10.0.0.3 : accept, 10.0.0.4 : accept,
			     10.0.0.5 : drop }
	}

	map n {
		type ipv4_addr . inet_service : verdict
		elements = { 10.0.0.1 . 80 : accept,
			     10.0.0.2 . 81 : jump x }
	}

	set em {
		type ipv4_addr
		comment \"c\"
	}

	chain x {
	}
}
"
        );
    }

    #[test]
    fn set_keys_are_typed_like_nft() {
        let s = Set::new(
            "s",
            vec![KeyType::Ipv4Addr, KeyType::InetProto, KeyType::InetService],
        );
        // `nft --debug=mnl add set ... { type ipv4_addr . inet_proto . inet_service; }`
        // sends key type 0x730d and key length 12.
        assert_eq!((s.key_type_id(), s.key_len()), (0x730d, 12));
        assert_eq!(Set::new("p", vec![KeyType::InetProto]).key_len(), 1);
        assert_eq!(Set::new("v", vec![KeyType::Ipv6Addr]).key_type_id(), 8);
        let e = SetElem::key(vec![v4("10.0.0.1"), KeyPart::Proto(6), KeyPart::Port(80)]);
        assert_eq!(
            key_bytes(&e.key),
            vec![10, 0, 0, 1, 6, 0, 0, 0, 0, 80, 0, 0]
        );
        assert_eq!(key_bytes(&[KeyPart::Port(443)]), vec![1, 187]);
        assert!(s.check_elem(&e).is_ok());
        assert!(s.check_elem(&SetElem::key(vec![v4("10.0.0.1")])).is_err());
        let m = Set::vmap("m", vec![KeyType::Ipv4Addr]);
        assert!(m.check_elem(&SetElem::key(vec![v4("10.0.0.1")])).is_err());
        assert!(
            m.check_elem(&SetElem::map(vec![v4("10.0.0.1")], Verdict::Accept))
                .is_ok()
        );
    }

    #[test]
    fn sets_compare_as_sets() {
        let mut a = Set::new("a", vec![KeyType::InetService]);
        a.elements = vec![
            SetElem::key(vec![KeyPart::Port(2)]),
            SetElem::key(vec![KeyPart::Port(1)]),
        ];
        let mut b = a.clone();
        b.elements.reverse();
        assert_eq!(a, b);
        b.elements.pop();
        assert_ne!(a, b);
    }

    #[test]
    fn policy_statements_render_like_nft() {
        let r = Rule::new(vec![
            Stmt::ct_state(&[CtState::Related, CtState::Established, CtState::Related]),
            Stmt::Lookup {
                fields: vec![Field::IpDaddr, Field::L4Proto, Field::ThDport],
                set: "s".into(),
                negate: true,
            },
            Stmt::Vmap {
                fields: vec![Field::Ip6Saddr],
                map: "m".into(),
            },
            Stmt::Counter {
                packets: 1,
                bytes: 60,
            },
            Stmt::Limit {
                rate: 10,
                per: LimitUnit::Second,
                burst: 5,
            },
            Stmt::Limit {
                rate: 1,
                per: LimitUnit::Minute,
                burst: 20,
            },
            Stmt::Log {
                prefix: Some("x".into()),
                group: Some(100),
            },
            Stmt::PortRange {
                proto: L4Proto::Tcp,
                field: PortField::Dport,
                lo: 1000,
                hi: 2000,
            },
        ]);
        assert_eq!(
            r.render(Family::Inet),
            "ct state established,related ip daddr . meta l4proto . th dport != @s \
             ip6 saddr vmap @m counter packets 1 bytes 60 limit rate 10/second \
             limit rate 1/minute burst 20 packets log prefix \"x\" group 100 tcp dport 1000-2000"
        );
    }
}
