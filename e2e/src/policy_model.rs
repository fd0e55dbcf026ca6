//! A synthetic but realistic cluster for the NetworkPolicy benchmark: namespaces, pods spread
//! over nodes, and a mix of NetworkPolicies of the shapes real clusters use.
//!
//! The generator is a pure function of its [`Params`] (a seed included), so two runs of the
//! benchmark compile exactly the same model and their figures can be compared; the unit tests
//! hold it to its counts and to determinism. The random numbers come from SplitMix64, written
//! out here rather than taken from a crate, because its sequence must never change under us
//! with a dependency update.
//!
//! Shape (defaults): 50 namespaces labelled `team` and `env`, 100 pods each (`app` from ten
//! values, `tier` following the app, `version`; container ports named `http`, `metrics` and
//! one per app such as `postgres`), every node hosting the same number of pods with each
//! namespace spread over all nodes, addresses from one /24 per node inside 10.240.0.0/14, and
//! 20 policies per namespace: default deny in both directions, allows from same-namespace
//! `app` selectors (labels and expressions), namespaceSelector and namespaceSelector +
//! podSelector peers, ipBlocks with `except`, numeric ports, `endPort` ranges, named ports and
//! egress rules.
//!
//! Three pods of the first namespace are the benchmark's real pods (a namespace each, see
//! `bench-policy`): `bench-server` and `bench-client` on the first node, `bench-remote` on the
//! second; the namespace's last two policies let the clients reach the server's iperf3 port
//! and nothing else is special about them, so the first packet of a connection between them
//! goes through the same chains as any other pod's.

use ipnetwork::{IpNetwork, Ipv4Network};
use std::net::{IpAddr, Ipv4Addr};
use twilld::source::model::{
    ContainerPort, IpBlock, Labels, Model, NAMESPACE_NAME_LABEL, Namespace, NetworkPolicy, Node,
    ObjectKey, Peer, Pod, PolicyPort, PolicyRule, PortRef, Protocol, Requirement, Selector,
    SelectorOp,
};

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub seed: u64,
    pub namespaces: usize,
    /// Pods per namespace; more than `nodes` (the first namespace holds two real pods on
    /// the first node and one on the second).
    pub pods_per_namespace: usize,
    /// Policies per namespace; at least 4.
    pub policies_per_namespace: usize,
    /// At least 2; `namespaces * pods_per_namespace` must be a multiple of it, and a node
    /// holds at most 240 pods (one /24 each).
    pub nodes: usize,
}

impl Default for Params {
    /// The issue's scale: 1,000 policies over 5,000 pods in 50 namespaces on 50 nodes.
    fn default() -> Params {
        Params {
            seed: 0x7769_6c6c,
            namespaces: 50,
            pods_per_namespace: 100,
            policies_per_namespace: 20,
            nodes: 50,
        }
    }
}

/// The pod network: node `k` gets `10.240.0.0/14`'s `k`-th /24.
pub const POD_NETWORK: &str = "10.240.0.0/14";
/// TCP port the real pods' policies allow (iperf3's default).
pub const IPERF_PORT: u16 = 5201;

/// The real pods: the iperf3 server and a client on the measured node, and a client on
/// another node.
pub const SERVER: (&str, &str) = ("ns-00", "bench-server");
pub const CLIENT: (&str, &str) = ("ns-00", "bench-client");
pub const REMOTE: (&str, &str) = ("ns-00", "bench-remote");

/// The ten `app` values, each with its tier and its own named container port.
const APPS: [(&str, &str, &str, u16); 10] = [
    ("web", "frontend", "https", 8443),
    ("frontend", "frontend", "https", 8443),
    ("gateway", "frontend", "admin", 8001),
    ("api", "backend", "grpc", 9000),
    ("auth", "backend", "grpc", 9000),
    ("search", "backend", "grpc", 9000),
    ("worker", "backend", "jobs", 7000),
    ("queue", "backend", "amqp", 5672),
    ("db", "data", "postgres", 5432),
    ("cache", "data", "redis", 6379),
];
const TEAMS: [&str; 8] = [
    "payments",
    "search",
    "identity",
    "platform",
    "data",
    "growth",
    "mobile",
    "observability",
];
const VERSIONS: [&str; 3] = ["v1", "v2", "v3"];
/// "The internet" in ipBlocks, as real policies write it (the engine compiles it to the
/// two halves of the IPv4 space).
const INTERNET: &str = "0.0.0.0/0";
/// The namespace the monitoring system runs in (the first of team `observability`).
const MONITORING: &str = "ns-07";

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and fixed forever.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`; the modulo bias is irrelevant at these sizes).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Fisher-Yates.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// `node-<k>`.
pub fn node_name(k: usize) -> String {
    format!("node-{k}")
}

/// `ns-<nn>`.
pub fn namespace_name(n: usize) -> String {
    format!("ns-{n:02}")
}

/// The /24 of node `k`.
pub fn node_subnet(k: usize) -> Ipv4Network {
    let base = u32::from(Ipv4Addr::new(10, 240, 0, 0)) + (k as u32) * 256;
    Ipv4Network::new(Ipv4Addr::from(base), 24).expect("a /24")
}

/// The gateway (bridge) address of node `k`'s subnet.
pub fn node_gateway(k: usize) -> Ipv4Addr {
    node_subnet(k).nth(1).expect("a /24 has .1")
}

/// The `j`-th pod address of node `k` (from .10 up).
fn pod_ip(k: usize, j: usize) -> Ipv4Addr {
    node_subnet(k)
        .nth(10 + j as u32)
        .expect("at most 240 pods per node")
}

fn labels(kv: &[(&str, &str)]) -> Labels {
    kv.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn sel(kv: &[(&str, &str)]) -> Selector {
    Selector::labels(kv)
}

fn expr(key: &str, op: SelectorOp, values: &[&str]) -> Selector {
    Selector {
        match_labels: Labels::new(),
        match_expressions: vec![Requirement {
            key: key.into(),
            op,
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        }],
    }
}

fn port(protocol: Protocol, p: u16) -> PolicyPort {
    PolicyPort {
        protocol,
        port: Some(PortRef::Number(p)),
        end_port: None,
    }
}

fn tcp(p: u16) -> PolicyPort {
    port(Protocol::Tcp, p)
}

fn range(protocol: Protocol, lo: u16, hi: u16) -> PolicyPort {
    PolicyPort {
        protocol,
        port: Some(PortRef::Number(lo)),
        end_port: Some(hi),
    }
}

fn named(name: &str) -> PolicyPort {
    PolicyPort {
        protocol: Protocol::Tcp,
        port: Some(PortRef::Name(name.into())),
        end_port: None,
    }
}

fn block(cidr: &str, except: &[&str]) -> Peer {
    let net = |s: &str| s.parse::<IpNetwork>().expect("literal cidr");
    Peer::IpBlock(IpBlock {
        cidr: net(cidr),
        except: except.iter().map(|e| net(e)).collect(),
    })
}

fn rule(peers: Vec<Peer>, ports: Vec<PolicyPort>) -> PolicyRule {
    PolicyRule { peers, ports }
}

/// A policy with the isolation the API server would resolve from its rules.
fn policy(
    ns: &str,
    name: &str,
    pod_selector: Selector,
    ingress: Option<Vec<PolicyRule>>,
    egress: Option<Vec<PolicyRule>>,
) -> NetworkPolicy {
    NetworkPolicy {
        namespace: ns.into(),
        name: name.into(),
        pod_selector,
        ingress_isolation: ingress.is_some(),
        egress_isolation: egress.is_some(),
        ingress: ingress.unwrap_or_default(),
        egress: egress.unwrap_or_default(),
    }
}

/// The container ports of a pod of `app`.
fn container_ports(app: usize) -> Vec<ContainerPort> {
    let (_, _, pname, pnum) = APPS[app];
    vec![
        ContainerPort {
            name: Some("http".into()),
            port: 8080,
            protocol: Protocol::Tcp,
        },
        ContainerPort {
            name: Some("metrics".into()),
            port: 9090,
            protocol: Protocol::Tcp,
        },
        ContainerPort {
            name: Some(pname.into()),
            port: pnum,
            protocol: Protocol::Tcp,
        },
    ]
}

/// Policy number `i` of namespace `ns` (team `team`); 20 shapes, repeated beyond 20.
fn shaped_policy(rng: &mut Rng, ns: &str, team: &str, nss: &[String], i: usize) -> NetworkPolicy {
    let app = |rng: &mut Rng| APPS[rng.below(APPS.len())].0;
    let round = i / 20;
    let name = |base: &str| {
        if round == 0 {
            base.to_owned()
        } else {
            format!("{base}-{round}")
        }
    };
    let any = Selector::default();
    match i % 20 {
        0 => policy(ns, &name("default-deny-ingress"), any, Some(vec![]), None),
        1 => policy(ns, &name("default-deny-egress"), any, None, Some(vec![])),
        2 => policy(
            ns,
            &name("allow-dns"),
            any,
            None,
            Some(vec![rule(
                vec![
                    block("10.96.0.10/32", &[]),
                    Peer::Namespaces(sel(&[(NAMESPACE_NAME_LABEL, "kube-system")])),
                ],
                vec![port(Protocol::Udp, 53), tcp(53)],
            )]),
        ),
        3 => policy(
            ns,
            &name("allow-web-from-frontends"),
            sel(&[("app", "web")]),
            Some(vec![rule(
                vec![
                    Peer::Pods(sel(&[("app", "frontend")])),
                    Peer::Pods(sel(&[("app", "gateway")])),
                ],
                vec![named("http")],
            )]),
            None,
        ),
        4 => policy(
            ns,
            &name("allow-api"),
            sel(&[("app", "api")]),
            Some(vec![rule(
                vec![Peer::Pods(expr(
                    "app",
                    SelectorOp::In,
                    &["web", "frontend"],
                ))],
                vec![tcp(8080), named("grpc")],
            )]),
            None,
        ),
        5 => policy(
            ns,
            &name("allow-db"),
            sel(&[("app", "db")]),
            Some(vec![rule(
                vec![
                    Peer::Pods(sel(&[("app", "api")])),
                    Peer::Pods(sel(&[("app", "worker")])),
                ],
                vec![named("postgres")],
            )]),
            None,
        ),
        6 => policy(
            ns,
            &name("allow-cache"),
            sel(&[("app", "cache")]),
            Some(vec![rule(
                vec![Peer::Pods(sel(&[("tier", "backend")]))],
                vec![tcp(6379)],
            )]),
            None,
        ),
        7 => policy(
            ns,
            &name("allow-monitoring"),
            Selector::default(),
            Some(vec![rule(
                vec![Peer::Namespaces(sel(&[(NAMESPACE_NAME_LABEL, MONITORING)]))],
                vec![named("metrics")],
            )]),
            None,
        ),
        8 => policy(
            ns,
            &name("allow-team-gateways"),
            sel(&[("app", "api")]),
            Some(vec![rule(
                vec![Peer::PodsInNamespaces {
                    pods: sel(&[("app", "gateway")]),
                    namespaces: sel(&[("team", team)]),
                }],
                vec![tcp(8080)],
            )]),
            None,
        ),
        9 => policy(
            ns,
            &name("allow-prod-frontends"),
            sel(&[("tier", "frontend")]),
            Some(vec![rule(
                vec![Peer::PodsInNamespaces {
                    pods: sel(&[("tier", "frontend")]),
                    namespaces: Selector {
                        match_labels: labels(&[("team", team)]),
                        match_expressions: expr("env", SelectorOp::In, &["prod"]).match_expressions,
                    },
                }],
                vec![tcp(80), tcp(443)],
            )]),
            None,
        ),
        10 => policy(
            ns,
            &name("allow-internet-to-gateway"),
            sel(&[("app", "gateway")]),
            Some(vec![rule(
                vec![block(INTERNET, &["10.0.0.0/8", "100.64.0.0/10"])],
                vec![tcp(80), tcp(443)],
            )]),
            None,
        ),
        11 => policy(
            ns,
            &name("allow-office"),
            sel(&[("app", "web")]),
            Some(vec![rule(
                vec![block("192.168.0.0/16", &["192.168.13.0/24"])],
                vec![range(Protocol::Tcp, 8000, 8100)],
            )]),
            None,
        ),
        12 => policy(
            ns,
            &name("allow-worker-ranges"),
            sel(&[("app", "worker")]),
            Some(vec![rule(
                vec![Peer::Pods(sel(&[("tier", "backend")]))],
                vec![
                    range(Protocol::Tcp, 30000, 32767),
                    range(Protocol::Udp, 5000, 5100),
                ],
            )]),
            None,
        ),
        13 => policy(
            ns,
            &name("api-egress"),
            sel(&[("app", "api")]),
            None,
            Some(vec![
                rule(
                    vec![Peer::Pods(sel(&[("app", "db")]))],
                    vec![named("postgres")],
                ),
                rule(vec![Peer::Pods(sel(&[("app", "cache")]))], vec![tcp(6379)]),
                rule(
                    vec![Peer::Pods(sel(&[("app", "queue")]))],
                    vec![named("amqp")],
                ),
            ]),
        ),
        14 => policy(
            ns,
            &name("frontend-egress"),
            sel(&[("tier", "frontend")]),
            None,
            Some(vec![rule(
                vec![
                    Peer::Pods(sel(&[("app", "api")])),
                    Peer::PodsInNamespaces {
                        pods: sel(&[("app", "api")]),
                        namespaces: sel(&[("team", team)]),
                    },
                ],
                vec![named("http"), named("grpc")],
            )]),
        ),
        15 => policy(
            ns,
            &name("worker-egress"),
            sel(&[("app", "worker")]),
            None,
            Some(vec![
                rule(
                    vec![block(INTERNET, &["10.0.0.0/8", "127.0.0.0/8"])],
                    vec![tcp(443)],
                ),
                rule(vec![Peer::Pods(sel(&[("app", "queue")]))], vec![]),
            ]),
        ),
        16 => {
            let target = app(rng);
            policy(
                ns,
                &name(&format!("canary-{target}")),
                Selector {
                    match_labels: labels(&[("app", target)]),
                    match_expressions: expr("version", SelectorOp::NotIn, &["v1"])
                        .match_expressions,
                },
                Some(vec![rule(
                    vec![Peer::Pods(expr("version", SelectorOp::In, &["v2", "v3"]))],
                    vec![named("http")],
                )]),
                None,
            )
        }
        17 => {
            let target = app(rng);
            let from = rng.pick(nss);
            policy(
                ns,
                &name(&format!("allow-{target}-from-{from}")),
                sel(&[("app", target)]),
                Some(vec![rule(
                    vec![Peer::Namespaces(sel(&[(NAMESPACE_NAME_LABEL, from)]))],
                    vec![],
                )]),
                None,
            )
        }
        18 => policy(
            ns,
            &name("search"),
            sel(&[("app", "search")]),
            Some(vec![rule(
                vec![Peer::PodsInNamespaces {
                    pods: sel(&[("app", "api")]),
                    namespaces: Selector {
                        match_labels: labels(&[("team", team)]),
                        match_expressions: expr("env", SelectorOp::NotIn, &["dev"])
                            .match_expressions,
                    },
                }],
                vec![named("grpc")],
            )]),
            Some(vec![
                rule(
                    vec![Peer::PodsInNamespaces {
                        pods: sel(&[("app", "search")]),
                        namespaces: sel(&[("team", team)]),
                    }],
                    vec![named("grpc")],
                ),
                rule(
                    vec![block("10.100.0.0/16", &["10.100.5.0/24"])],
                    vec![tcp(9200)],
                ),
            ]),
        ),
        _ => policy(
            ns,
            &name("allow-auth"),
            sel(&[("app", "auth")]),
            Some(vec![rule(
                vec![Peer::PodsInNamespaces {
                    pods: Selector {
                        match_labels: labels(&[("tier", "frontend")]),
                        match_expressions: expr("app", SelectorOp::In, &["gateway"])
                            .match_expressions,
                    },
                    namespaces: Selector::default(),
                }],
                vec![named("grpc"), tcp(8443)],
            )]),
            None,
        ),
    }
}

/// The two policies that let the real pods talk: the server accepts the clients on the
/// iperf3 port, the clients may connect to it.
fn bench_policies(ns: &str) -> [NetworkPolicy; 2] {
    [
        policy(
            ns,
            "web-bench-server",
            sel(&[("role", "bench-server")]),
            Some(vec![rule(
                vec![Peer::Pods(sel(&[("role", "bench-client")]))],
                vec![tcp(IPERF_PORT)],
            )]),
            None,
        ),
        policy(
            ns,
            "web-bench-client",
            sel(&[("role", "bench-client")]),
            None,
            Some(vec![rule(
                vec![Peer::Pods(sel(&[("role", "bench-server")]))],
                vec![tcp(IPERF_PORT)],
            )]),
        ),
    ]
}

/// The model of `p`, `synced`, generation 1.
pub fn generate(p: &Params) -> Model {
    assert!(p.pods_per_namespace > p.nodes && p.policies_per_namespace >= 4 && p.nodes >= 2);
    let total = p.namespaces * p.pods_per_namespace;
    assert!(
        total.is_multiple_of(p.nodes) && total / p.nodes <= 240,
        "pods must spread evenly, at most 240 per node"
    );
    let mut rng = Rng::new(p.seed);
    let mut m = Model {
        generation: 1,
        synced: true,
        ..Model::default()
    };
    for k in 0..p.nodes {
        let name = node_name(k);
        m.nodes.insert(
            name.clone(),
            Node {
                name,
                labels: labels(&[("topology.kubernetes.io/zone", ["a", "b", "c"][k % 3])]),
                internal_ips: vec![IpAddr::V4(Ipv4Addr::new(192, 168, 100, 10 + k as u8))],
                pod_cidrs: vec![IpNetwork::V4(node_subnet(k))],
            },
        );
    }
    let nss: Vec<String> = (0..p.namespaces).map(namespace_name).collect();
    let mut teams = Vec::new();
    for (n, ns) in nss.iter().enumerate() {
        // Every team owns namespaces; most run in production.
        let team = TEAMS[n % TEAMS.len()];
        let env = *rng.pick(&["prod", "prod", "prod", "staging", "dev"]);
        teams.push(team);
        m.namespaces.insert(
            ns.clone(),
            Namespace {
                name: ns.clone(),
                labels: labels(&[("team", team), ("env", env), (NAMESPACE_NAME_LABEL, ns)]),
            },
        );
    }
    // Node of each pod: namespace n's pods take the node slots 0..pods in a shuffled order,
    // rotated by n, so every node holds the same count and every namespace is spread.
    let mut next_slot = vec![0usize; p.nodes];
    for (n, ns) in nss.iter().enumerate() {
        let mut order: Vec<usize> = (0..p.pods_per_namespace).collect();
        rng.shuffle(&mut order);
        let node_of = |slot: usize| (slot + 7 * n) % p.nodes;
        if n == 0 {
            // Real pods 0 and 1 on node 0, real pod 2 on node 1: swap slots into place.
            for (i, want) in [(0usize, 0usize), (1, 0), (2, 1)] {
                let j = (i..order.len())
                    .find(|&j| node_of(order[j]) == want)
                    .expect("every node has a slot in every namespace");
                order.swap(i, j);
            }
        }
        for (i, slot) in order.into_iter().enumerate() {
            let k = node_of(slot);
            let ip = pod_ip(k, next_slot[k]);
            next_slot[k] += 1;
            let version = *rng.pick(&VERSIONS);
            let (app, name, extra) = match (n, i) {
                (0, 0) => (0, SERVER.1.to_owned(), Some("bench-server")),
                (0, 1) => (3, CLIENT.1.to_owned(), Some("bench-client")),
                (0, 2) => (3, REMOTE.1.to_owned(), Some("bench-client")),
                _ => {
                    let a = rng.below(APPS.len());
                    (a, format!("{}-{i}", APPS[a].0), None)
                }
            };
            let (app_name, tier, _, _) = APPS[app];
            let mut l = labels(&[("app", app_name), ("tier", tier), ("version", version)]);
            let mut ports = container_ports(app);
            if let Some(role) = extra {
                l.insert("role".into(), role.into());
                ports.push(ContainerPort {
                    name: Some("iperf".into()),
                    port: IPERF_PORT,
                    protocol: Protocol::Tcp,
                });
            }
            let pod = Pod {
                namespace: ns.clone(),
                name,
                labels: l,
                node_name: Some(node_name(k)),
                ips: vec![IpAddr::V4(ip)],
                ports,
                host_network: false,
            };
            m.pods.insert(pod.key(), pod);
        }
    }
    for (n, ns) in nss.iter().enumerate() {
        let count = p.policies_per_namespace;
        let mut pols: Vec<NetworkPolicy> = (0..count)
            .map(|i| shaped_policy(&mut rng, ns, teams[n], &nss, i))
            .collect();
        if n == 0 {
            pols.truncate(count - 2);
            pols.extend(bench_policies(ns));
        }
        for pol in pols {
            m.policies.insert(pol.key(), pol);
        }
    }
    m
}

/// The model with every pod scheduled on `node` (the compile's worst case).
pub fn all_on(model: &Model, node: &str) -> Model {
    let mut m = model.clone();
    for pod in m.pods.values_mut() {
        pod.node_name = Some(node.to_owned());
    }
    m
}

/// The pod whose labels the label-change measurement flips: the first ordinary pod on
/// `node` (not a real pod), in key order.
pub fn churn_pod(model: &Model, node: &str) -> ObjectKey {
    model
        .pods
        .values()
        .find(|p| p.node_name.as_deref() == Some(node) && !p.labels.contains_key("role"))
        .map(Pod::key)
        .expect("an ordinary pod on the node")
}

/// The two `app` values the label change alternates between: both are selected by peers
/// of several policies (`web` by `allow-api`, `api` by `allow-db`, `allow-search`, ...).
pub const CHURN_APPS: [(&str, &str); 2] = [("web", "frontend"), ("api", "backend")];

/// A copy of `model` with `pod` relabelled to the `k`-th (mod 2) of [`CHURN_APPS`] and the
/// generation increased, as the source would publish it.
pub fn relabelled(model: &Model, pod: &ObjectKey, k: usize) -> Model {
    let mut m = model.clone();
    let (app, tier) = CHURN_APPS[k % 2];
    let p = m.pods.get_mut(pod).expect("pod in model");
    p.labels.insert("app".into(), app.into());
    p.labels.insert("tier".into(), tier.into());
    m.generation += 1;
    m
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn small() -> Params {
        Params {
            seed: 7,
            namespaces: 6,
            pods_per_namespace: 12,
            policies_per_namespace: 20,
            nodes: 4,
        }
    }

    #[test]
    fn default_scale_is_the_issue_s() {
        let m = generate(&Params::default());
        assert_eq!(m.namespaces.len(), 50);
        assert_eq!(m.pods.len(), 5000);
        assert_eq!(m.policies.len(), 1000);
        assert_eq!(m.nodes.len(), 50);
        let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
        for p in m.pods.values() {
            *per_node.entry(p.node_name.as_deref().unwrap()).or_default() += 1;
        }
        assert_eq!(per_node.len(), 50);
        assert!(per_node.values().all(|&c| c == 100), "{per_node:?}");
        let apps: BTreeSet<&str> = m.pods.values().map(|p| p.labels["app"].as_str()).collect();
        assert_eq!(apps.len(), 10);
    }

    #[test]
    fn same_seed_same_model_other_seed_other_model() {
        let a = generate(&small());
        let b = generate(&small());
        assert_eq!(a.pods, b.pods);
        assert_eq!(a.policies, b.policies);
        assert_eq!(a.namespaces, b.namespaces);
        let c = generate(&Params { seed: 8, ..small() });
        assert_ne!(a.pods, c.pods);
    }

    #[test]
    fn addresses_are_unique_and_inside_the_node_subnet() {
        let m = generate(&Params::default());
        let net: Ipv4Network = POD_NETWORK.parse().unwrap();
        let mut seen = BTreeSet::new();
        for p in m.pods.values() {
            let [IpAddr::V4(ip)] = p.ips[..] else {
                panic!("one IPv4 address: {:?}", p.ips)
            };
            assert!(seen.insert(ip), "{ip} twice");
            assert!(net.contains(ip));
            let k: usize = p.node_name.as_deref().unwrap()[5..].parse().unwrap();
            assert!(
                node_subnet(k).contains(ip),
                "{ip} outside node-{k}'s subnet"
            );
            assert_ne!(ip, node_gateway(k));
        }
    }

    #[test]
    fn counts_hold_at_other_sizes() {
        let m = generate(&small());
        assert_eq!((m.namespaces.len(), m.pods.len()), (6, 72));
        assert_eq!(m.policies.len(), 6 * 20);
        let m = generate(&Params {
            policies_per_namespace: 45,
            ..small()
        });
        assert_eq!(m.policies.len(), 6 * 45, "names stay unique past 20");
    }

    #[test]
    fn every_shape_is_there() {
        let m = generate(&Params::default());
        let rules = || {
            m.policies
                .values()
                .flat_map(|p| p.ingress.iter().chain(&p.egress))
        };
        let peers = || rules().flat_map(|r| &r.peers);
        let ports = || rules().flat_map(|r| &r.ports);
        assert!(
            m.policies
                .values()
                .any(|p| p.ingress_isolation && p.ingress.is_empty())
        );
        assert!(
            m.policies
                .values()
                .any(|p| p.egress_isolation && p.egress.is_empty())
        );
        assert!(m.policies.values().any(|p| !p.egress.is_empty()));
        assert!(peers().any(|p| matches!(p, Peer::Pods(_))));
        assert!(peers().any(|p| matches!(p, Peer::Namespaces(_))));
        assert!(peers().any(|p| matches!(p, Peer::PodsInNamespaces { .. })));
        assert!(peers().any(|p| matches!(p, Peer::IpBlock(b) if !b.except.is_empty())));
        assert!(ports().any(|p| p.end_port.is_some()));
        assert!(ports().any(|p| matches!(p.port, Some(PortRef::Name(_)))));
        assert!(
            ports().any(|p| p.end_port.is_none() && matches!(p.port, Some(PortRef::Number(_))))
        );
        assert!(
            m.policies
                .values()
                .any(|p| !p.pod_selector.match_expressions.is_empty())
        );
    }

    #[test]
    fn real_pods_sit_where_the_benchmark_wires_them() {
        let m = generate(&Params::default());
        let get = |(ns, name): (&str, &str)| &m.pods[&ObjectKey::new(ns, name)];
        let (s, c, r) = (get(SERVER), get(CLIENT), get(REMOTE));
        assert_eq!(s.node_name.as_deref(), Some("node-0"));
        assert_eq!(c.node_name.as_deref(), Some("node-0"));
        assert_eq!(r.node_name.as_deref(), Some("node-1"));
        assert_eq!(s.ips, vec![IpAddr::V4(Ipv4Addr::new(10, 240, 0, 10))]);
        assert_eq!(c.ips, vec![IpAddr::V4(Ipv4Addr::new(10, 240, 0, 11))]);
        assert_eq!(r.ips, vec![IpAddr::V4(Ipv4Addr::new(10, 240, 1, 10))]);
        assert_eq!(
            m.policies
                .values()
                .filter(|p| p.namespace == "ns-00")
                .count(),
            20
        );
    }

    #[test]
    fn relabelling_moves_one_pod_between_app_values() {
        let m = generate(&small());
        let key = churn_pod(&m, "node-0");
        let a = relabelled(&m, &key, 0);
        let b = relabelled(&a, &key, 1);
        assert_eq!(a.pods[&key].labels["app"], "web");
        assert_eq!(b.pods[&key].labels["app"], "api");
        assert_eq!(b.generation, m.generation + 2);
        let changed = m.pods.iter().filter(|(k, p)| b.pods[*k] != **p).count();
        assert!(changed <= 1);
    }

    fn compiled(m: &Model, node: &str) -> twilld::policy::compile::Compiled {
        twilld::policy::compile::compile(
            m,
            &twilld::policy::compile::Options {
                node: node.into(),
                log_denied: None,
            },
        )
    }

    #[test]
    fn the_compiled_table_lets_the_clients_reach_the_iperf_port_only() {
        use twill_net::nft::{CtState, Hook};
        use twilld::policy::trace::{Packet, trace};
        let m = generate(&small());
        let table = compiled(&m, "node-0").table;
        let ip = |(ns, name): (&str, &str)| m.pods[&ObjectKey::new(ns, name)].ips[0];
        let pass = |src, dport, ct| {
            let pkt = Packet {
                src: ip(src),
                dst: ip(SERVER),
                proto: 6,
                dport,
                ct,
            };
            trace(&table, Hook::Forward, &pkt).unwrap()
        };
        assert!(pass(CLIENT, IPERF_PORT, CtState::New).accepted);
        assert!(pass(REMOTE, IPERF_PORT, CtState::New).accepted);
        assert!(!pass(CLIENT, IPERF_PORT + 1, CtState::New).accepted);
        let est = pass(CLIENT, IPERF_PORT, CtState::Established);
        assert!(est.accepted);
        let new = pass(CLIENT, IPERF_PORT, CtState::New);
        assert!(
            new.steps.len() > est.steps.len(),
            "a new connection goes through the policy chains"
        );
    }

    #[test]
    fn a_label_change_is_an_element_change() {
        use twilld::policy::apply::plan;
        let m = generate(&small());
        let key = churn_pod(&m, "node-0");
        let mut prev = compiled(&m, "node-0").table;
        for k in 0..4 {
            let next = compiled(&relabelled(&m, &key, k), "node-0").table;
            let (_, sum) = plan(Some(&prev), &next);
            assert!(sum.elements_only(), "{sum:?}");
            if k > 0 {
                assert!(!sum.is_noop(), "the pod enters and leaves peer sets");
            }
            prev = next;
        }
    }
}

// ---------------------------------------------------------------------------------------
// The model as manifests, for measuring through twilld's `--manifests` source.

fn selector_json(s: &Selector) -> serde_json::Value {
    let exprs: Vec<serde_json::Value> = s
        .match_expressions
        .iter()
        .map(|r| serde_json::json!({"key": r.key, "operator": r.op.as_str(), "values": r.values}))
        .collect();
    serde_json::json!({"matchLabels": s.match_labels, "matchExpressions": exprs})
}

fn rule_json(r: &PolicyRule, peer_key: &str) -> serde_json::Value {
    let peers: Vec<serde_json::Value> = r
        .peers
        .iter()
        .map(|p| match p {
            Peer::Pods(s) => serde_json::json!({"podSelector": selector_json(s)}),
            Peer::Namespaces(s) => serde_json::json!({"namespaceSelector": selector_json(s)}),
            Peer::PodsInNamespaces { pods, namespaces } => serde_json::json!({
                "podSelector": selector_json(pods),
                "namespaceSelector": selector_json(namespaces),
            }),
            Peer::IpBlock(b) => serde_json::json!({"ipBlock": {
                "cidr": b.cidr.to_string(),
                "except": b.except.iter().map(ToString::to_string).collect::<Vec<_>>(),
            }}),
        })
        .collect();
    let ports: Vec<serde_json::Value> = r
        .ports
        .iter()
        .map(|pp| {
            let mut v = serde_json::json!({"protocol": pp.protocol.as_str()});
            match &pp.port {
                Some(PortRef::Number(n)) => v["port"] = serde_json::json!(n),
                Some(PortRef::Name(n)) => v["port"] = serde_json::json!(n),
                None => {}
            }
            if let Some(e) = pp.end_port {
                v["endPort"] = serde_json::json!(e);
            }
            v
        })
        .collect();
    let mut v = serde_json::json!({ "ports": ports });
    v[peer_key] = serde_json::json!(peers);
    v
}

/// `pol` as a networking.k8s.io/v1 NetworkPolicy object.
pub fn policy_json(pol: &NetworkPolicy) -> serde_json::Value {
    let mut types = Vec::new();
    if pol.ingress_isolation {
        types.push("Ingress");
    }
    if pol.egress_isolation {
        types.push("Egress");
    }
    serde_json::json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"namespace": pol.namespace, "name": pol.name},
        "spec": {
            "podSelector": selector_json(&pol.pod_selector),
            "policyTypes": types,
            "ingress": pol.ingress.iter().map(|r| rule_json(r, "from")).collect::<Vec<_>>(),
            "egress": pol.egress.iter().map(|r| rule_json(r, "to")).collect::<Vec<_>>(),
        },
    })
}

/// `pod` as a v1 Pod object (spec and the status fields twilld reads).
pub fn pod_json(pod: &Pod) -> serde_json::Value {
    let ports: Vec<serde_json::Value> = pod
        .ports
        .iter()
        .map(|c| {
            let mut v =
                serde_json::json!({"containerPort": c.port, "protocol": c.protocol.as_str()});
            if let Some(n) = &c.name {
                v["name"] = serde_json::json!(n);
            }
            v
        })
        .collect();
    let ips: Vec<serde_json::Value> = pod
        .ips
        .iter()
        .map(|ip| serde_json::json!({"ip": ip.to_string()}))
        .collect();
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"namespace": pod.namespace, "name": pod.name, "labels": pod.labels},
        "spec": {
            "nodeName": pod.node_name,
            "hostNetwork": pod.host_network,
            "containers": [{"name": "main", "image": "bench", "ports": ports}],
        },
        "status": {"podIP": pod.ips.first().map(ToString::to_string), "podIPs": ips},
    })
}

/// One manifest file per namespace (`<ns>.json`, a `List` of the Namespace, its pods and its
/// policies), as an operator would keep them.
pub fn namespace_manifest(model: &Model, ns: &str) -> String {
    let mut items = Vec::new();
    if let Some(n) = model.namespaces.get(ns) {
        let mut labels = n.labels.clone();
        labels.remove(twilld::source::model::NAMESPACE_NAME_LABEL);
        items.push(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "labels": labels},
        }));
    }
    items.extend(
        model
            .pods
            .values()
            .filter(|p| p.namespace == ns)
            .map(pod_json),
    );
    items.extend(
        model
            .policies
            .values()
            .filter(|p| p.namespace == ns)
            .map(policy_json),
    );
    serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
}

#[cfg(test)]
mod manifest_tests {
    use super::*;
    use twilld::source::convert::Object;

    /// The manifests read back through twilld's own parser give exactly the model's pods,
    /// policies and namespaces, so the daemon measurement loads the same model.
    #[test]
    fn namespace_manifests_read_back_as_the_model() {
        let m = generate(&Params::default());
        let mut pods = 0;
        let mut policies = 0;
        for ns in m.namespaces.keys() {
            let name = format!("{ns}.json");
            let objs = twilld::source::manifests::parse_file(&name, &namespace_manifest(&m, ns))
                .unwrap_or_else(|e| panic!("{name}: {e:?}"));
            for o in objs.values() {
                match o {
                    Object::Pod(p) => {
                        assert_eq!(Some(p), m.pods.get(&p.key()));
                        pods += 1;
                    }
                    Object::NetworkPolicy(p) => {
                        assert_eq!(Some(p), m.policies.get(&p.key()));
                        policies += 1;
                    }
                    Object::Namespace(n) => assert_eq!(Some(n), m.namespaces.get(&n.name)),
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        assert_eq!((pods, policies), (m.pods.len(), m.policies.len()));
    }
}
