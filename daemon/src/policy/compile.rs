//! The pure compiler: a [`Model`] snapshot and this node's name in, the desired
//! `inet twill_policy` table out. No I/O; the applier turns the difference between two
//! outputs into one nftables transaction.
//!
//! Layout (see docs/policy.md for an `nft list table` excerpt):
//! - two base chains on the forward hook, `egress` (priority filter - 1) and `ingress`
//!   (filter). Each accepts established/related traffic first (reply traffic of an allowed
//!   connection, and the cost for every packet after a connection's first), then dispatches
//!   through a verdict map keyed by pod address (`egress4`/`egress6` by source,
//!   `ingress4`/`ingress6` by destination). Only pods on this node that a policy isolates
//!   are keys, so the per-packet cost does not grow with pods or policies elsewhere. Two
//!   base chains because an `accept` ends only its own chain: a packet between two pods of
//!   this node must pass the source's egress and then the destination's ingress.
//! - per namespace with policies, `ns-in/<ns>` and `ns-out/<ns>`: one `jump` per policy of
//!   the namespace, guarded by the policy's selected-pod set (`sel4/<ns>/<policy>`), then
//!   `counter drop` (and, with `--policy-log`, a rate-limited nflog rule before it).
//!   Policies only select pods of their own namespace, so a pod is only ever checked
//!   against its namespace's policies.
//! - per policy and direction, `pol-in/<ns>/<name>` (`pol-out/...`): each rule becomes
//!   `peer match × port match` nft rules ending in `counter accept` (the counters are the
//!   policy's). Selector peers are one address set per rule (`peer4/<ns>/<name>/in0`);
//!   ipBlocks are prefix matches with `!=` for every `except`; numeric ports and `endPort`
//!   ranges are plain matches; named ports resolve per destination pod into a concatenated
//!   set `daddr . l4proto . dport` (`nport4/<ns>/<name>/in0`), so a name one pod does not
//!   define matches nothing on that pod.
//!
//! Every chain and set a policy needs exists whenever the policy does, even with no pod to
//! fill it, so that pod churn (added, removed, relabelled) changes set elements only.
//! IPv6 sets and rules are generated only when the cluster has an IPv6 pod address or an
//! IPv6 ipBlock. Host-network pods are never enforced and never a selector peer (their
//! addresses are the node's).

use super::naming;
use super::semantics::{Direction, in_block};
use crate::source::model::{
    Model, NetworkPolicy, ObjectKey, Peer, Pod, PolicyRule, PortRef, Protocol, Selector,
};
use rustc_hash::FxHashMap as HashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::rc::Rc;
use twill_net::nft::{
    AddrField, BaseChain, Chain, ChainType, CmpOp, CtState, Family, Field, Hook, KeyPart, KeyType,
    L4Proto, LimitUnit, PortField, Rule, Set, SetElem, Stmt, Table, Verdict,
};

/// The table the engine owns.
pub const TABLE: &str = "twill_policy";
/// Priority of the `egress` base chain (before `ingress`, which is at `filter`).
pub const EGRESS_PRIORITY: i32 = -1;
pub const INGRESS_PRIORITY: i32 = 0;

/// nflog settings for denied packets (`--policy-log`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDenied {
    pub group: u16,
    /// Packets per second logged per namespace and direction.
    pub rate: u32,
}

/// What the compile depends on besides the model.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Options {
    /// `--node-name`: only pods with this `spec.nodeName` are enforced.
    pub node: String,
    pub log_denied: Option<LogDenied>,
}

/// The compiler's output: the table, and what each policy became (for `/status`,
/// `netctl policy show` and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    pub table: Table,
    pub policies: BTreeMap<ObjectKey, PolicyObjects>,
    /// Pods on this node isolated in at least one direction.
    pub enforced_pods: BTreeSet<ObjectKey>,
}

/// The nftables objects one policy owns, and the local pods it selects.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct PolicyObjects {
    pub chains: Vec<String>,
    pub sets: Vec<String>,
    /// Pods on this node the policy selects.
    pub local_pods: Vec<String>,
}

impl Compiled {
    pub fn element_count(&self) -> usize {
        self.table.sets.iter().map(|s| s.elements.len()).sum()
    }
}

/// Address families the cluster uses.
#[derive(Debug, Clone, Copy)]
struct Families {
    v6: bool,
}

impl Families {
    fn list(self) -> &'static [IpFamily] {
        if self.v6 {
            &[IpFamily::V4, IpFamily::V6]
        } else {
            &[IpFamily::V4]
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum IpFamily {
    V4,
    V6,
}

impl IpFamily {
    fn of(ip: &IpAddr) -> IpFamily {
        if ip.is_ipv4() {
            IpFamily::V4
        } else {
            IpFamily::V6
        }
    }
    fn v6(self) -> bool {
        self == IpFamily::V6
    }
    fn addr_key(self) -> KeyType {
        match self {
            IpFamily::V4 => KeyType::Ipv4Addr,
            IpFamily::V6 => KeyType::Ipv6Addr,
        }
    }
    fn saddr(self) -> Field {
        match self {
            IpFamily::V4 => Field::IpSaddr,
            IpFamily::V6 => Field::Ip6Saddr,
        }
    }
    fn daddr(self) -> Field {
        match self {
            IpFamily::V4 => Field::IpDaddr,
            IpFamily::V6 => Field::Ip6Daddr,
        }
    }
}

/// The pods and namespaces of a model, indexed once per compile.
struct Index<'a> {
    /// Non-host-network pods with at least one address, by namespace.
    by_ns: HashMap<&'a str, Vec<&'a Pod>>,
    all: Vec<&'a Pod>,
}

impl<'a> Index<'a> {
    fn new(model: &'a Model) -> Index<'a> {
        let mut by_ns: HashMap<&str, Vec<&Pod>> = HashMap::default();
        let mut all = Vec::new();
        for p in model.pods.values() {
            if p.host_network || p.ips.is_empty() {
                continue;
            }
            by_ns.entry(p.namespace.as_str()).or_default().push(p);
            all.push(p);
        }
        Index { by_ns, all }
    }

    fn in_ns(&self, ns: &str) -> &[&'a Pod] {
        self.by_ns.get(ns).map(Vec::as_slice).unwrap_or(&[])
    }
}

fn l4(p: Protocol) -> L4Proto {
    match p {
        Protocol::Tcp => L4Proto::Tcp,
        Protocol::Udp => L4Proto::Udp,
        Protocol::Sctp => L4Proto::Sctp,
    }
}

/// Compiles `model` for the node `opts.node`.
pub fn compile(model: &Model, opts: &Options) -> Compiled {
    let idx = Index::new(model);
    let fams = Families {
        v6: idx.all.iter().any(|p| p.ips.iter().any(IpAddr::is_ipv6))
            || model.policies.values().any(|p| {
                p.ingress.iter().chain(&p.egress).any(|r| {
                    r.peers
                        .iter()
                        .any(|peer| matches!(peer, Peer::IpBlock(b) if b.cidr.is_ipv6()))
                })
            }),
    };
    let mut c = Compiler {
        model,
        idx,
        fams,
        opts,
        sets: Vec::new(),
        chains: Vec::new(),
        out: Compiled {
            table: Table {
                family: Family::Inet,
                name: TABLE.into(),
                chains: Vec::new(),
                sets: Vec::new(),
            },
            policies: BTreeMap::new(),
            enforced_pods: BTreeSet::new(),
        },
        ns_cache: HashMap::default(),
        peer_cache: HashMap::default(),
        elem_cache: HashMap::default(),
        local_cache: HashMap::default(),
    };
    c.run();
    let Compiler {
        mut out,
        sets,
        chains,
        ..
    } = c;
    out.table.sets = sets;
    out.table.chains = chains;
    out
}

/// A selector peer as the cache knows it: the policy's namespace when it matters (a
/// `podSelector` alone), and the peer.
type PeerKey<'a> = (Option<&'a str>, &'a Peer);

struct Compiler<'a> {
    model: &'a Model,
    idx: Index<'a>,
    fams: Families,
    opts: &'a Options,
    sets: Vec<Set>,
    chains: Vec<Chain>,
    out: Compiled,
    /// Namespaces matching a namespace selector.
    ns_cache: HashMap<&'a Selector, Rc<Vec<&'a str>>>,
    /// Pods one selector peer matches: the namespace is part of the key only for a
    /// `podSelector` alone (it means the policy's namespace). Policies repeat peers a lot
    /// (the same namespace selector in every namespace), so each is evaluated once.
    peer_cache: HashMap<PeerKey<'a>, Rc<Vec<&'a Pod>>>,
    /// Address elements of one selector peer, per family.
    elem_cache: HashMap<(PeerKey<'a>, IpFamily), Rc<Vec<SetElem>>>,
    /// Pods of this node each policy (namespace, name) selects.
    local_cache: HashMap<(&'a str, &'a str), Rc<Vec<&'a Pod>>>,
}

impl<'a> Compiler<'a> {
    fn run(&mut self) {
        let model = self.model;
        // Policies by namespace, in name order (BTreeMap order of the model).
        let mut by_ns: BTreeMap<&str, Vec<&NetworkPolicy>> = BTreeMap::new();
        for p in model.policies.values() {
            by_ns.entry(p.namespace.as_str()).or_default().push(p);
        }
        // Dispatch maps: local isolated pods -> their namespace chain.
        let mut vmaps: BTreeMap<(Direction, IpFamily), Vec<SetElem>> = BTreeMap::new();
        let mut ns_chains = Vec::new();
        for (ns, pols) in &by_ns {
            for dir in [Direction::Egress, Direction::Ingress] {
                let isolating: Vec<&NetworkPolicy> = pols
                    .iter()
                    .copied()
                    .filter(|p| super::semantics::isolates(p, dir))
                    .collect();
                if isolating.is_empty() {
                    continue;
                }
                let chain_name = naming::ns_chain(dir, ns);
                let mut chain = Chain::regular(&chain_name);
                let mut isolated: BTreeMap<ObjectKey, &Pod> = BTreeMap::new();
                for pol in &isolating {
                    for pod in self.local_selected(pol).iter().copied() {
                        isolated.insert(pod.key(), pod);
                    }
                    if super::semantics::rules(pol, dir).is_empty() {
                        continue;
                    }
                    for fam in self.fams.list() {
                        chain.rules.push(Rule::new(vec![
                            Stmt::Lookup {
                                fields: vec![match dir {
                                    Direction::Ingress => fam.daddr(),
                                    Direction::Egress => fam.saddr(),
                                }],
                                set: naming::sel_set(fam.v6(), &pol.namespace, &pol.name),
                                negate: false,
                            },
                            Stmt::Verdict(Verdict::Jump(naming::policy_chain(
                                dir,
                                &pol.namespace,
                                &pol.name,
                            ))),
                        ]));
                    }
                }
                if let Some(log) = &self.opts.log_denied {
                    chain.rules.push(Rule::new(vec![
                        Stmt::Limit {
                            rate: log.rate,
                            per: LimitUnit::Second,
                            burst: log.rate.max(1),
                        },
                        Stmt::Log {
                            prefix: Some(naming::log_prefix(dir, ns)),
                            group: Some(log.group),
                        },
                    ]));
                }
                chain.rules.push(Rule::new(vec![
                    Stmt::Counter {
                        packets: 0,
                        bytes: 0,
                    },
                    Stmt::Verdict(Verdict::Drop),
                ]));
                for pod in isolated.into_values() {
                    self.out.enforced_pods.insert(pod.key());
                    for ip in &pod.ips {
                        vmaps
                            .entry((dir, IpFamily::of(ip)))
                            .or_default()
                            .push(SetElem {
                                key: vec![KeyPart::Addr(*ip)],
                                verdict: Some(Verdict::Jump(chain_name.clone())),
                            });
                    }
                }
                ns_chains.push(chain);
            }
        }
        for pol in model.policies.values() {
            self.policy(pol);
        }
        // Base chains and maps first in the listing, as an operator reads them.
        let mut base = Vec::new();
        let mut maps = Vec::new();
        for (dir, prio) in [
            (Direction::Egress, EGRESS_PRIORITY),
            (Direction::Ingress, INGRESS_PRIORITY),
        ] {
            let mut chain = Chain::base(
                dir.as_str(),
                BaseChain::new(ChainType::Filter, Hook::Forward, prio),
            );
            chain.rules.push(Rule::new(vec![
                Stmt::CtState(vec![CtState::Established, CtState::Related]),
                Stmt::Verdict(Verdict::Accept),
            ]));
            for fam in self.fams.list() {
                let name = naming::dispatch_map(dir, fam.v6());
                chain.rules.push(Rule::new(vec![Stmt::Vmap {
                    fields: vec![match dir {
                        Direction::Ingress => fam.daddr(),
                        Direction::Egress => fam.saddr(),
                    }],
                    map: name.clone(),
                }]));
                let mut elements = vmaps.remove(&(dir, *fam)).unwrap_or_default();
                elements.sort_by(|a, b| a.key.cmp(&b.key));
                maps.push(Set {
                    elements,
                    ..Set::vmap(&name, vec![fam.addr_key()])
                });
            }
            base.push(chain);
        }
        base.append(&mut ns_chains);
        base.append(&mut self.chains);
        self.chains = base;
        maps.append(&mut self.sets);
        self.sets = maps;
    }

    /// Pods on this node that `pol` selects.
    fn local_selected(&mut self, pol: &'a NetworkPolicy) -> Rc<Vec<&'a Pod>> {
        let key = (pol.namespace.as_str(), pol.name.as_str());
        if let Some(v) = self.local_cache.get(&key) {
            return v.clone();
        }
        let v: Rc<Vec<&Pod>> = Rc::new(
            self.idx
                .in_ns(&pol.namespace)
                .iter()
                .copied()
                .filter(|p| {
                    p.node_name.as_deref() == Some(self.opts.node.as_str())
                        && pol.pod_selector.matches(&p.labels)
                })
                .collect(),
        );
        self.local_cache.insert(key, v.clone());
        v
    }

    /// Namespaces whose labels match `sel`.
    fn namespaces_matching(&mut self, sel: &'a Selector) -> Rc<Vec<&'a str>> {
        if let Some(v) = self.ns_cache.get(sel) {
            return v.clone();
        }
        let v: Rc<Vec<&str>> = Rc::new(
            self.model
                .namespaces
                .values()
                .filter(|n| sel.matches(&n.labels))
                .map(|n| n.name.as_str())
                .collect(),
        );
        self.ns_cache.insert(sel, v.clone());
        v
    }

    /// The cache key of a selector peer of a policy in `ns`.
    fn peer_key(ns: &'a str, peer: &'a Peer) -> PeerKey<'a> {
        match peer {
            Peer::Pods(_) => (Some(ns), peer),
            _ => (None, peer),
        }
    }

    /// Pods one selector peer (of a policy in `ns`) matches; nothing for an ipBlock.
    fn peer_pods(&mut self, ns: &'a str, peer: &'a Peer) -> Rc<Vec<&'a Pod>> {
        let key = Self::peer_key(ns, peer);
        if let Some(v) = self.peer_cache.get(&key) {
            return v.clone();
        }
        let mut out: Vec<&Pod> = Vec::new();
        match peer {
            Peer::IpBlock(_) => {}
            Peer::Pods(sel) => out.extend(
                self.idx
                    .in_ns(ns)
                    .iter()
                    .copied()
                    .filter(|p| sel.matches(&p.labels)),
            ),
            Peer::Namespaces(nsel) => {
                for n in self.namespaces_matching(nsel).iter() {
                    out.extend(self.idx.in_ns(n).iter().copied());
                }
            }
            Peer::PodsInNamespaces { pods, namespaces } => {
                for n in self.namespaces_matching(namespaces).iter() {
                    out.extend(
                        self.idx
                            .in_ns(n)
                            .iter()
                            .copied()
                            .filter(|p| pods.matches(&p.labels)),
                    );
                }
            }
        }
        let v = Rc::new(out);
        self.peer_cache.insert(key, v.clone());
        v
    }

    /// Pods the selector peers of `rule` match (policy namespace `ns`).
    fn selector_peer_pods(&mut self, ns: &'a str, rule: &'a PolicyRule) -> Vec<&'a Pod> {
        let mut out: Vec<&Pod> = Vec::new();
        for peer in &rule.peers {
            out.extend(self.peer_pods(ns, peer).iter().copied());
        }
        out
    }

    /// The address elements of `rule`'s selector peers for one family, sorted, no repeats.
    fn peer_elements(&mut self, ns: &'a str, rule: &'a PolicyRule, fam: IpFamily) -> Vec<SetElem> {
        let mut parts: Vec<Rc<Vec<SetElem>>> = Vec::new();
        for peer in rule.peers.iter().filter(|p| !matches!(p, Peer::IpBlock(_))) {
            let key = (Self::peer_key(ns, peer), fam);
            let elems = match self.elem_cache.get(&key) {
                Some(e) => e.clone(),
                None => {
                    let pods = self.peer_pods(ns, peer);
                    let e = Rc::new(addr_elements(pods.iter().copied(), fam));
                    self.elem_cache.insert(key, e.clone());
                    e
                }
            };
            parts.push(elems);
        }
        match parts.as_slice() {
            [one] => one.as_ref().clone(),
            _ => {
                let mut all: Vec<SetElem> = parts.iter().flat_map(|p| p.iter().cloned()).collect();
                all.sort_unstable_by(|a, b| a.key.cmp(&b.key));
                all.dedup();
                all
            }
        }
    }

    fn policy(&mut self, pol: &'a NetworkPolicy) {
        let mut objs = PolicyObjects::default();
        let local = self.local_selected(pol);
        objs.local_pods = local.iter().map(|p| p.key().to_string()).collect();
        let has_rules = [Direction::Ingress, Direction::Egress]
            .iter()
            .any(|d| !super::semantics::rules(pol, *d).is_empty());
        if has_rules {
            for fam in self.fams.list() {
                let name = naming::sel_set(fam.v6(), &pol.namespace, &pol.name);
                let elements = addr_elements(local.iter().copied(), *fam);
                objs.sets.push(name.clone());
                self.sets.push(Set {
                    elements,
                    ..Set::new(&name, vec![fam.addr_key()])
                });
            }
        }
        for dir in [Direction::Ingress, Direction::Egress] {
            let rules = super::semantics::rules(pol, dir);
            if rules.is_empty() {
                continue;
            }
            let chain_name = naming::policy_chain(dir, &pol.namespace, &pol.name);
            let mut chain = Chain::regular(&chain_name);
            for (ri, rule) in rules.iter().enumerate() {
                self.rule(pol, dir, ri, rule, &local, &mut chain, &mut objs);
            }
            objs.chains.push(chain_name);
            self.chains.push(chain);
        }
        self.out.policies.insert(pol.key(), objs);
    }

    #[allow(clippy::too_many_arguments)]
    fn rule(
        &mut self,
        pol: &'a NetworkPolicy,
        dir: Direction,
        ri: usize,
        rule: &'a PolicyRule,
        local: &[&'a Pod],
        chain: &mut Chain,
        objs: &mut PolicyObjects,
    ) {
        let peer_field = match dir {
            Direction::Ingress => AddrField::Saddr,
            Direction::Egress => AddrField::Daddr,
        };
        let has_selector_peers = rule.peers.iter().any(|p| !matches!(p, Peer::IpBlock(_)));
        let blocks: Vec<&crate::source::model::IpBlock> = rule
            .peers
            .iter()
            .filter_map(|p| match p {
                Peer::IpBlock(b) => Some(b),
                _ => None,
            })
            .collect();
        let named: Vec<(&str, Protocol)> = rule
            .ports
            .iter()
            .filter_map(|pp| match &pp.port {
                Some(PortRef::Name(n)) => Some((n.as_str(), pp.protocol)),
                _ => None,
            })
            .collect();
        // Pods whose named ports count: the destination of the connection.
        let named_targets: Vec<&Pod> = if named.is_empty() {
            Vec::new()
        } else {
            match dir {
                Direction::Ingress => local.to_vec(),
                Direction::Egress if rule.peers.is_empty() => self.idx.all.clone(),
                Direction::Egress => {
                    let mut t = self.selector_peer_pods(&pol.namespace, rule);
                    if !blocks.is_empty() {
                        t.extend(self.idx.all.iter().copied().filter(|p| {
                            p.ips
                                .iter()
                                .any(|ip| blocks.iter().any(|b| in_block(b, *ip)))
                        }));
                    }
                    t
                }
            }
        };
        // Port matches shared by both families.
        let mut port_matches: Vec<Vec<Stmt>> = Vec::new();
        for pp in &rule.ports {
            let proto = l4(pp.protocol);
            match (&pp.port, pp.end_port) {
                (None, _) => port_matches.push(vec![Stmt::L4Proto(proto)]),
                (Some(PortRef::Number(lo)), Some(hi)) if hi > *lo => {
                    port_matches.push(vec![Stmt::PortRange {
                        proto,
                        field: PortField::Dport,
                        lo: *lo,
                        hi,
                    }])
                }
                (Some(PortRef::Number(p)), _) => port_matches.push(vec![Stmt::dport(proto, *p)]),
                (Some(PortRef::Name(_)), _) => {}
            }
        }
        let tag = naming::rule_tag(dir, ri);
        for fam in self.fams.list() {
            // Peer matches for this family; `None` in the list means "any peer".
            let mut peer_matches: Vec<Vec<Stmt>> = Vec::new();
            if rule.peers.is_empty() {
                peer_matches.push(Vec::new());
            }
            if has_selector_peers {
                let name = naming::peer_set(fam.v6(), &pol.namespace, &pol.name, &tag);
                let elements = self.peer_elements(&pol.namespace, rule, *fam);
                objs.sets.push(name.clone());
                self.sets.push(Set {
                    elements,
                    ..Set::new(&name, vec![fam.addr_key()])
                });
                peer_matches.push(vec![Stmt::Lookup {
                    fields: vec![match peer_field {
                        AddrField::Saddr => fam.saddr(),
                        AddrField::Daddr => fam.daddr(),
                    }],
                    set: name,
                    negate: false,
                }]);
            }
            for b in &blocks {
                if IpFamily::of(&b.cidr.ip()) != *fam {
                    continue;
                }
                for half in whole_family_halves(b.cidr) {
                    let mut m = vec![Stmt::ip(peer_field, CmpOp::Eq, half)];
                    m.extend(
                        b.except
                            .iter()
                            .map(|e| Stmt::ip(peer_field, CmpOp::Neq, *e)),
                    );
                    peer_matches.push(m);
                }
            }
            let mut ports = port_matches.clone();
            if !named.is_empty() {
                let name = naming::named_port_set(fam.v6(), &pol.namespace, &pol.name, &tag);
                let mut elements: BTreeSet<Vec<KeyPart>> = BTreeSet::new();
                for pod in &named_targets {
                    for (pname, proto) in &named {
                        for cp in &pod.ports {
                            if cp.protocol == *proto && cp.name.as_deref() == Some(*pname) {
                                for ip in pod.ips.iter().filter(|ip| IpFamily::of(ip) == *fam) {
                                    elements.insert(vec![
                                        KeyPart::Addr(*ip),
                                        KeyPart::Proto(proto.number()),
                                        KeyPart::Port(cp.port),
                                    ]);
                                }
                            }
                        }
                    }
                }
                objs.sets.push(name.clone());
                self.sets.push(Set {
                    elements: elements
                        .into_iter()
                        .map(|key| SetElem { key, verdict: None })
                        .collect(),
                    ..Set::new(
                        &name,
                        vec![fam.addr_key(), KeyType::InetProto, KeyType::InetService],
                    )
                });
                ports.push(vec![Stmt::Lookup {
                    fields: vec![fam.daddr(), Field::L4Proto, Field::ThDport],
                    set: name,
                    negate: false,
                }]);
            }
            if ports.is_empty() {
                ports.push(Vec::new());
            }
            for pm in &peer_matches {
                for port in &ports {
                    // A rule with no address in it matches both families: emit it once.
                    let family_specific =
                        !pm.is_empty() || port.iter().any(|s| matches!(s, Stmt::Lookup { .. }));
                    if !family_specific && *fam != IpFamily::V4 {
                        continue;
                    }
                    let mut stmts = pm.clone();
                    stmts.extend(port.iter().cloned());
                    stmts.push(Stmt::Counter {
                        packets: 0,
                        bytes: 0,
                    });
                    stmts.push(Stmt::Verdict(Verdict::Accept));
                    chain
                        .rules
                        .push(Rule::new(stmts).with_comment(&naming::rule_comment(pol, dir, ri)));
                }
            }
        }
    }
}

/// `cidr`, or, for `0.0.0.0/0` and `::/0` (which nftables cannot express as a prefix
/// match: it matches every address and so says nothing), the two halves that cover the
/// family, so the rule still matches only that family.
fn whole_family_halves(cidr: ipnetwork::IpNetwork) -> Vec<ipnetwork::IpNetwork> {
    use std::net::{Ipv4Addr, Ipv6Addr};
    if cidr.prefix() != 0 {
        return vec![cidr];
    }
    let (lo, hi): (IpAddr, IpAddr) = if cidr.is_ipv4() {
        (
            Ipv4Addr::UNSPECIFIED.into(),
            Ipv4Addr::new(128, 0, 0, 0).into(),
        )
    } else {
        (
            Ipv6Addr::UNSPECIFIED.into(),
            Ipv6Addr::new(0x8000, 0, 0, 0, 0, 0, 0, 0).into(),
        )
    };
    [lo, hi]
        .into_iter()
        .filter_map(|a| ipnetwork::IpNetwork::new(a, 1).ok())
        .collect()
}

/// Address elements of `pods` for one family, sorted and without duplicates.
fn addr_elements<'p>(pods: impl Iterator<Item = &'p Pod>, fam: IpFamily) -> Vec<SetElem> {
    let mut ips: Vec<IpAddr> = pods
        .flat_map(|p| p.ips.iter().copied())
        .filter(|ip| IpFamily::of(ip) == fam)
        .collect();
    ips.sort_unstable();
    ips.dedup();
    ips.into_iter()
        .map(|ip| SetElem {
            key: vec![KeyPart::Addr(ip)],
            verdict: None,
        })
        .collect()
}
