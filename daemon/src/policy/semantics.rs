//! NetworkPolicy semantics over the model, written straight from the Kubernetes API
//! reference: which policies select a pod, whether a peer matches, whether a port matches,
//! and the verdict for one connection.
//!
//! This is deliberately a second, independent statement of the rules the compiler turns into
//! nftables: `netctl policy explain` uses it to name the Kubernetes rule that allowed a flow,
//! and tests check that tracing a packet through the compiled ruleset agrees with it. It is
//! not on the packet path, so it favours clarity over speed.

use crate::source::model::{
    IpBlock, Model, NetworkPolicy, Peer, Pod, PolicyPort, PolicyRule, PortRef, Protocol,
};
use std::net::IpAddr;

/// One end of a connection: a pod of the model, or just an address.
#[derive(Debug, Clone, Copy)]
pub struct End<'a> {
    pub pod: Option<&'a Pod>,
    pub ip: IpAddr,
}

impl<'a> End<'a> {
    /// The pod holding `ip`, if the model has one (host-network pods share node addresses
    /// and are never found this way).
    pub fn of_ip(model: &'a Model, ip: IpAddr) -> End<'a> {
        let pod = model
            .pods
            .values()
            .find(|p| !p.host_network && p.ips.contains(&ip));
        End { pod, ip }
    }
}

/// Which direction of a pod's isolation a rule belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// Whether `policy` selects `pod` (same namespace, `podSelector` matches).
pub fn selects(policy: &NetworkPolicy, pod: &Pod) -> bool {
    !pod.host_network
        && pod.namespace == policy.namespace
        && policy.pod_selector.matches(&pod.labels)
}

/// Whether `policy` isolates its selected pods in `dir`.
pub fn isolates(policy: &NetworkPolicy, dir: Direction) -> bool {
    match dir {
        Direction::Ingress => policy.ingress_isolation,
        Direction::Egress => policy.egress_isolation,
    }
}

/// The rules of `policy` for `dir` (empty when the policy does not isolate that way).
pub fn rules(policy: &NetworkPolicy, dir: Direction) -> &[PolicyRule] {
    match dir {
        Direction::Ingress if policy.ingress_isolation => &policy.ingress,
        Direction::Egress if policy.egress_isolation => &policy.egress,
        _ => &[],
    }
}

/// `ip` lies in the block and in none of its exceptions.
pub fn in_block(b: &IpBlock, ip: IpAddr) -> bool {
    b.cidr.contains(ip) && !b.except.iter().any(|e| e.contains(ip))
}

/// Whether `peer` (of a policy in namespace `policy_ns`) matches the remote end.
pub fn peer_matches(model: &Model, policy_ns: &str, peer: &Peer, remote: &End) -> bool {
    let ns_labels = |pod: &Pod| model.namespaces.get(&pod.namespace).map(|n| &n.labels);
    match peer {
        Peer::IpBlock(b) => in_block(b, remote.ip),
        Peer::Pods(sel) => remote
            .pod
            .is_some_and(|p| !p.host_network && p.namespace == policy_ns && sel.matches(&p.labels)),
        Peer::Namespaces(nsel) => remote
            .pod
            .is_some_and(|p| !p.host_network && ns_labels(p).is_some_and(|l| nsel.matches(l))),
        Peer::PodsInNamespaces { pods, namespaces } => remote.pod.is_some_and(|p| {
            !p.host_network
                && pods.matches(&p.labels)
                && ns_labels(p).is_some_and(|l| namespaces.matches(l))
        }),
    }
}

/// The port number a `PortRef` means on `dst` for `proto`: a number as is, a name through
/// the destination pod's container ports (no pod, or no such name: nothing).
pub fn resolve_port(pref: &PortRef, proto: Protocol, dst: Option<&Pod>) -> Option<u16> {
    match pref {
        PortRef::Number(n) => Some(*n),
        PortRef::Name(name) => dst?
            .ports
            .iter()
            .find(|c| c.protocol == proto && c.name.as_deref() == Some(name.as_str()))
            .map(|c| c.port),
    }
}

/// Whether one `ports` entry matches the connection.
pub fn port_matches(pp: &PolicyPort, dst: Option<&Pod>, proto: Protocol, port: u16) -> bool {
    if pp.protocol != proto {
        return false;
    }
    match &pp.port {
        None => true,
        Some(pref) => match resolve_port(pref, proto, dst) {
            None => false,
            Some(lo) => match pp.end_port {
                Some(hi) => (lo..=hi).contains(&port),
                None => lo == port,
            },
        },
    }
}

/// The rule, peer and port that allowed a connection in one direction.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Allowed {
    /// `namespace/name` of the policy.
    pub policy: String,
    pub rule: usize,
    /// Index in `from`/`to`; `None` when the rule has no peers (every peer).
    pub peer: Option<usize>,
    /// Index in `ports`; `None` when the rule has no ports (every port).
    pub port: Option<usize>,
}

/// The verdict for one direction.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Side {
    /// The end is not a pod, or no policy isolates it this way: allowed.
    NotIsolated,
    Allowed(Allowed),
    /// Isolated by `policies`, and no rule of theirs matched.
    Denied {
        policies: Vec<String>,
    },
}

impl Side {
    pub fn allows(&self) -> bool {
        !matches!(self, Side::Denied { .. })
    }
}

/// The verdict of `dir` for the pod at `local` talking to `remote` (ingress: `remote` is the
/// source; egress: the destination). `dst_pod` resolves named ports.
pub fn evaluate_side(
    model: &Model,
    dir: Direction,
    local: &End,
    remote: &End,
    proto: Protocol,
    port: u16,
) -> Side {
    let Some(pod) = local.pod.filter(|p| !p.host_network) else {
        return Side::NotIsolated;
    };
    let dst_pod = match dir {
        Direction::Ingress => Some(pod),
        Direction::Egress => remote.pod,
    };
    let mut isolating = Vec::new();
    for pol in model.policies.values() {
        if !selects(pol, pod) || !isolates(pol, dir) {
            continue;
        }
        isolating.push(pol.key().to_string());
        for (ri, rule) in rules(pol, dir).iter().enumerate() {
            let peer = if rule.peers.is_empty() {
                Some(None)
            } else {
                rule.peers
                    .iter()
                    .position(|p| peer_matches(model, &pol.namespace, p, remote))
                    .map(Some)
            };
            let portm = if rule.ports.is_empty() {
                Some(None)
            } else {
                rule.ports
                    .iter()
                    .position(|pp| port_matches(pp, dst_pod, proto, port))
                    .map(Some)
            };
            if let (Some(peer), Some(port)) = (peer, portm) {
                return Side::Allowed(Allowed {
                    policy: pol.key().to_string(),
                    rule: ri,
                    peer,
                    port,
                });
            }
        }
    }
    if isolating.is_empty() {
        Side::NotIsolated
    } else {
        Side::Denied {
            policies: isolating,
        }
    }
}

/// Both directions of one connection `src -> dst`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Evaluation {
    pub egress: Side,
    pub ingress: Side,
}

impl Evaluation {
    pub fn allowed(&self) -> bool {
        self.egress.allows() && self.ingress.allows()
    }
}

pub fn evaluate(model: &Model, src: &End, dst: &End, proto: Protocol, port: u16) -> Evaluation {
    Evaluation {
        egress: evaluate_side(model, Direction::Egress, src, dst, proto, port),
        ingress: evaluate_side(model, Direction::Ingress, dst, src, proto, port),
    }
}
