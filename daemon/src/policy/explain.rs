//! What `netctl policy list|show|explain` print, built purely from a model snapshot and
//! compiled tables (the daemon serves these as JSON; netctl renders them).
//!
//! `explain` answers "why can (or can't) SRC reach DST on PORT/PROTO" twice: in Kubernetes
//! terms from [`super::semantics`] (which policies select each end, which rule, peer and
//! port allowed it, or that none did) and in nftables terms by tracing the packet through
//! the tables compiled for the source's node and for the destination's node (the
//! `egress` checks run where the source lives, `ingress` where the destination lives).
//! `consistent` says whether the two agree; a `false` there is a bug in Twill.

use super::compile::{self, Compiled, Options, PolicyObjects};
use super::semantics::{self, Direction, End, Evaluation, Side};
use super::trace::{self, Packet, Trace};
use crate::source::model::{Model, NetworkPolicy, ObjectKey, Peer, PortRef, Protocol};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use twill_net::nft::{CtState, Hook, Stmt, Table};

/// One end of an explained connection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EndInfo {
    pub ip: IpAddr,
    /// `namespace/name` when the address is a pod's.
    pub pod: Option<String>,
    pub node: Option<String>,
}

/// One direction of the verdict.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SideReport {
    /// Policies isolating the local end in this direction.
    pub isolated_by: Vec<String>,
    pub allowed: bool,
    /// The rule that allowed it: `x/allow-web ingress[0] from[1] ports[0]`.
    pub allowed_by: Option<String>,
}

/// The nftables walk on one node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeTrace {
    pub node: String,
    pub accepted: bool,
    /// Every rule the packet matched, as `chain #n: rule`.
    pub rules: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Explanation {
    pub src: EndInfo,
    pub dst: EndInfo,
    pub port: u16,
    pub protocol: String,
    pub allowed: bool,
    pub egress: SideReport,
    pub ingress: SideReport,
    pub traces: Vec<NodeTrace>,
    /// The Kubernetes verdict and the nftables verdict agree.
    pub consistent: bool,
}

/// Resolves `ns/pod` or an address.
pub fn resolve<'a>(model: &'a Model, s: &str) -> Result<End<'a>, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(End::of_ip(model, ip));
    }
    let Some((ns, name)) = s.split_once('/') else {
        return Err(format!("{s:?}: expected namespace/pod or an IP address"));
    };
    let pod = model
        .pods
        .get(&ObjectKey::new(ns, name))
        .ok_or_else(|| format!("pod {ns}/{name} is not known"))?;
    let ip = *pod
        .ips
        .first()
        .ok_or_else(|| format!("pod {ns}/{name} has no address yet"))?;
    Ok(End { pod: Some(pod), ip })
}

fn end_info(e: &End) -> EndInfo {
    EndInfo {
        ip: e.ip,
        pod: e.pod.map(|p| p.key().to_string()),
        node: e.pod.and_then(|p| p.node_name.clone()),
    }
}

fn side_report(model: &Model, dir: Direction, local: &End, side: &Side) -> SideReport {
    let isolated_by = match local.pod {
        Some(pod) => model
            .policies
            .values()
            .filter(|p| semantics::selects(p, pod) && semantics::isolates(p, dir))
            .map(|p| p.key().to_string())
            .collect(),
        None => Vec::new(),
    };
    let (peer_word, allowed_by) = match dir {
        Direction::Ingress => ("from", None::<String>),
        Direction::Egress => ("to", None),
    };
    let allowed_by = match side {
        Side::Allowed(a) => {
            let mut s = format!("{} {}[{}]", a.policy, dir.as_str(), a.rule);
            match a.peer {
                Some(i) => s.push_str(&format!(" {peer_word}[{i}]")),
                None => s.push_str(&format!(" (every {peer_word} peer)")),
            }
            match a.port {
                Some(i) => s.push_str(&format!(" ports[{i}]")),
                None => s.push_str(" (every port)"),
            }
            Some(s)
        }
        _ => allowed_by,
    };
    SideReport {
        isolated_by,
        allowed: side.allows(),
        allowed_by,
    }
}

fn node_trace(node: &str, table: &Table, pkt: &Packet) -> Result<NodeTrace, String> {
    let t: Trace = trace::trace(table, Hook::Forward, pkt).map_err(|e| e.to_string())?;
    Ok(NodeTrace {
        node: node.to_owned(),
        accepted: t.accepted,
        rules: t
            .steps
            .iter()
            // The compiled table's counters are zero: they say nothing here.
            .map(|s| {
                format!(
                    "{} #{}: {}",
                    s.chain,
                    s.rule,
                    s.text.replace(" counter packets 0 bytes 0", " counter")
                )
            })
            .collect(),
    })
}

/// Explains `src -> dst` on `port`/`proto`; `base` carries the compile options other than
/// the node.
pub fn explain(
    model: &Model,
    base: &Options,
    src: &str,
    dst: &str,
    port: u16,
    proto: Protocol,
) -> Result<Explanation, String> {
    let s = resolve(model, src)?;
    let d = resolve(model, dst)?;
    let ev: Evaluation = semantics::evaluate(model, &s, &d, proto, port);
    let pkt = Packet {
        src: s.ip,
        dst: d.ip,
        proto: proto.number(),
        dport: port,
        ct: CtState::New,
    };
    let mut nodes: Vec<String> = [s.pod, d.pod]
        .iter()
        .flatten()
        .filter(|p| !p.host_network)
        .filter_map(|p| p.node_name.clone())
        .collect();
    nodes.dedup();
    let mut traces = Vec::new();
    for n in &nodes {
        let opts = Options {
            node: n.clone(),
            ..base.clone()
        };
        let c = compile::compile(model, &opts);
        traces.push(node_trace(n, &c.table, &pkt)?);
    }
    let nft_allowed = traces.iter().all(|t| t.accepted);
    Ok(Explanation {
        src: end_info(&s),
        dst: end_info(&d),
        port,
        protocol: proto.as_str().to_owned(),
        allowed: ev.allowed(),
        egress: side_report(model, Direction::Egress, &s, &ev.egress),
        ingress: side_report(model, Direction::Ingress, &d, &ev.ingress),
        traces,
        consistent: nft_allowed == ev.allowed(),
    })
}

/// A line of `netctl policy list`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PolicySummary {
    pub policy: String,
    pub pod_selector: String,
    /// `Ingress`, `Egress`.
    pub types: Vec<String>,
    pub ingress_rules: usize,
    pub egress_rules: usize,
    /// Pods the policy selects in the whole cluster, and on this node.
    pub selected_pods: usize,
    pub local_pods: usize,
    /// Packets and bytes its rules accepted on this node.
    pub packets: u64,
    pub bytes: u64,
}

/// A resolved peer of `netctl policy show`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PeerReport {
    /// The peer as written: `pods: app=web in namespaces: team=a`, `ipBlock 10.0.0.0/8 except ...`.
    pub peer: String,
    /// Pods it matches now (`namespace/name address`).
    pub pods: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PortReport {
    /// `80/TCP`, `8000-8080/TCP`, `serve-80-tcp/TCP`, `all/UDP`.
    pub port: String,
    /// Named ports: what the name means on each selected destination pod.
    pub resolved: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RuleReport {
    pub direction: String,
    pub index: usize,
    /// Empty: every peer.
    pub peers: Vec<PeerReport>,
    /// Empty: every port and protocol.
    pub ports: Vec<PortReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PolicyReport {
    pub summary: PolicySummary,
    /// `namespace/name address node` of every selected pod.
    pub selected: Vec<String>,
    pub rules: Vec<RuleReport>,
    /// Chains and sets on this node.
    pub nft: PolicyObjects,
}

fn types(p: &NetworkPolicy) -> Vec<String> {
    let mut t = Vec::new();
    if p.ingress_isolation {
        t.push("Ingress".into());
    }
    if p.egress_isolation {
        t.push("Egress".into());
    }
    t
}

/// Sums the counters of the rules in a policy's chains in `kernel` (the table as read
/// back, counters included).
pub fn counters(kernel: Option<&Table>, objs: &PolicyObjects) -> (u64, u64) {
    let Some(t) = kernel else { return (0, 0) };
    let mut sum = (0, 0);
    for c in t.chains.iter().filter(|c| objs.chains.contains(&c.name)) {
        for r in &c.rules {
            for s in &r.stmts {
                if let Stmt::Counter { packets, bytes } = s {
                    sum.0 += packets;
                    sum.1 += bytes;
                }
            }
        }
    }
    sum
}

fn summary(
    model: &Model,
    c: &Compiled,
    kernel: Option<&Table>,
    p: &NetworkPolicy,
) -> PolicySummary {
    let objs = c.policies.get(&p.key()).cloned().unwrap_or_default();
    let (packets, bytes) = counters(kernel, &objs);
    PolicySummary {
        policy: p.key().to_string(),
        pod_selector: p.pod_selector.to_string(),
        types: types(p),
        ingress_rules: semantics::rules(p, Direction::Ingress).len(),
        egress_rules: semantics::rules(p, Direction::Egress).len(),
        selected_pods: model
            .pods
            .values()
            .filter(|pod| semantics::selects(p, pod))
            .count(),
        local_pods: objs.local_pods.len(),
        packets,
        bytes,
    }
}

/// `netctl policy list`.
pub fn list(model: &Model, c: &Compiled, kernel: Option<&Table>) -> Vec<PolicySummary> {
    model
        .policies
        .values()
        .map(|p| summary(model, c, kernel, p))
        .collect()
}

fn peer_text(p: &Peer) -> String {
    match p {
        Peer::Pods(s) => format!("pods: {s}"),
        Peer::Namespaces(n) => format!("namespaces: {n}"),
        Peer::PodsInNamespaces { pods, namespaces } => {
            format!("pods: {pods} in namespaces: {namespaces}")
        }
        Peer::IpBlock(b) => {
            let mut s = format!("ipBlock {}", b.cidr);
            if !b.except.is_empty() {
                let ex: Vec<String> = b.except.iter().map(ToString::to_string).collect();
                s.push_str(&format!(" except {}", ex.join(",")));
            }
            s
        }
    }
}

/// `netctl policy show NS/NAME`.
pub fn show(
    model: &Model,
    c: &Compiled,
    kernel: Option<&Table>,
    key: &ObjectKey,
) -> Option<PolicyReport> {
    let p = model.policies.get(key)?;
    let selected: Vec<&crate::source::model::Pod> = model
        .pods
        .values()
        .filter(|pod| semantics::selects(p, pod))
        .collect();
    let pod_line = |pod: &crate::source::model::Pod| {
        let ips: Vec<String> = pod.ips.iter().map(ToString::to_string).collect();
        format!("{} {}", pod.key(), ips.join(","))
    };
    let mut rules = Vec::new();
    for dir in [Direction::Ingress, Direction::Egress] {
        for (i, r) in semantics::rules(p, dir).iter().enumerate() {
            let peers = r
                .peers
                .iter()
                .map(|peer| PeerReport {
                    peer: peer_text(peer),
                    pods: model
                        .pods
                        .values()
                        .filter(|pod| !pod.host_network && !pod.ips.is_empty())
                        .filter(|pod| {
                            let end = End {
                                pod: Some(pod),
                                ip: pod.ips[0],
                            };
                            semantics::peer_matches(model, &p.namespace, peer, &end)
                        })
                        .map(pod_line)
                        .collect(),
                })
                .collect();
            let ports = r
                .ports
                .iter()
                .map(|pp| {
                    let port = match (&pp.port, pp.end_port) {
                        (None, _) => format!("all/{}", pp.protocol),
                        (Some(PortRef::Number(lo)), Some(hi)) => {
                            format!("{lo}-{hi}/{}", pp.protocol)
                        }
                        (Some(PortRef::Number(n)), None) => format!("{n}/{}", pp.protocol),
                        (Some(PortRef::Name(n)), _) => format!("{n}/{}", pp.protocol),
                    };
                    let resolved = match (&pp.port, dir) {
                        (Some(pref @ PortRef::Name(_)), Direction::Ingress) => selected
                            .iter()
                            .map(|pod| {
                                match semantics::resolve_port(pref, pp.protocol, Some(pod)) {
                                    Some(n) => format!("{}: {n}", pod.key()),
                                    None => format!("{}: not defined (matches nothing)", pod.key()),
                                }
                            })
                            .collect(),
                        (Some(PortRef::Name(_)), Direction::Egress) => {
                            vec!["resolved on each destination pod".into()]
                        }
                        _ => Vec::new(),
                    };
                    PortReport { port, resolved }
                })
                .collect();
            rules.push(RuleReport {
                direction: dir.as_str().into(),
                index: i,
                peers,
                ports,
            });
        }
    }
    Some(PolicyReport {
        summary: summary(model, c, kernel, p),
        selected: selected
            .iter()
            .map(|pod| {
                format!(
                    "{} {}",
                    pod_line(pod),
                    pod.node_name.as_deref().unwrap_or("(unscheduled)")
                )
            })
            .collect(),
        rules,
        nft: c.policies.get(key).cloned().unwrap_or_default(),
    })
}
