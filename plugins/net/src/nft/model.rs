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

/// A table with its chains in creation order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub family: Family,
    pub name: String,
    pub chains: Vec<Chain>,
    pub sets: Vec<Set>,
}

impl Table {
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
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
    /// Kernel expressions we did not generate and cannot name; kept so a reader sees them.
    Unknown(String),
    Lookup {
        fields: Vec<Field>,
        set: String,
        negate: bool,
    },
    Vmap {
        fields: Vec<Field>,
        map: String,
    },
    CtState(Vec<CtState>),
    Counter {
        packets: u64,
        bytes: u64,
    },
    Limit {
        rate: u32,
        per: LimitUnit,
        burst: u32,
    },
    Log {
        prefix: Option<String>,
        group: Option<u16>,
    },
    PortRange {
        proto: L4Proto,
        field: PortField,
        lo: u16,
        hi: u16,
    },
}

// SHIM (replaced by the nft-sets branch)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    Ipv4Addr,
    Ipv6Addr,
    InetProto,
    InetService,
}
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
    pub fn key_type(self) -> KeyType {
        match self {
            Field::IpSaddr | Field::IpDaddr => KeyType::Ipv4Addr,
            Field::Ip6Saddr | Field::Ip6Daddr => KeyType::Ipv6Addr,
            Field::L4Proto => KeyType::InetProto,
            Field::ThDport => KeyType::InetService,
        }
    }
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyPart {
    Addr(IpAddr),
    Proto(u8),
    Port(u16),
}
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SetElem {
    pub key: Vec<KeyPart>,
    pub verdict: Option<Verdict>,
}
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Set {
    pub name: String,
    pub key: Vec<KeyType>,
    pub vmap: bool,
    pub comment: Option<String>,
    pub elements: Vec<SetElem>,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CtState {
    Invalid,
    Established,
    Related,
    New,
    Untracked,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitUnit {
    Second,
    Minute,
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

    fn render(&self, family: Family, out: &mut String) {
        let op = |op: &CmpOp| match op {
            CmpOp::Eq => "",
            CmpOp::Neq => "!= ",
        };
        // Writing into a String cannot fail.
        let _ = match self {
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
            Stmt::Verdict(v) => match v {
                Verdict::Accept => write!(out, "accept"),
                Verdict::Drop => write!(out, "drop"),
                Verdict::Continue => write!(out, "continue"),
                Verdict::Return => write!(out, "return"),
                Verdict::Jump(c) => write!(out, "jump {c}"),
                Verdict::Goto(c) => write!(out, "goto {c}"),
            },
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
            Stmt::Unknown(s) => write!(out, "{s}"),
            other => write!(out, "{other:?}"),
        };
    }
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
        for (i, c) in self.chains.iter().enumerate() {
            if i > 0 {
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
            sets: vec![],
        };
        assert_eq!(
            t.to_string(),
            "table ip t {\n\tchain hostports {\n\t}\n\n\tchain prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t\tfib daddr type local jump hostports\n\t}\n}\n"
        );
    }
}
