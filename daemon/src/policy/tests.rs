//! Unit tests of the compiler, the tracer and the planner, on hand-built models. The
//! tracer walks the compiled table, so "the packet is dropped" here means the compiled
//! nftables rules drop it; `semantics` is the independent statement of the API's rules
//! each result is checked against.

use super::apply::plan;
use super::compile::{Options, compile};
use super::semantics::{self, End};
use super::trace::{Packet, trace};
use crate::source::model::*;
use std::net::IpAddr;
use twill_net::nft::{CtState, Hook, KeyPart};

pub(crate) fn labels(kv: &[(&str, &str)]) -> Labels {
    kv.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

pub(crate) fn sel(kv: &[(&str, &str)]) -> Selector {
    Selector::labels(kv)
}

pub(crate) struct M(pub Model);

impl M {
    pub fn new(namespaces: &[&str]) -> M {
        let mut m = Model {
            synced: true,
            ..Model::default()
        };
        for n in namespaces {
            let mut l = labels(&[("ns", n)]);
            l.insert(NAMESPACE_NAME_LABEL.into(), (*n).into());
            m.namespaces.insert(
                (*n).into(),
                Namespace {
                    name: (*n).into(),
                    labels: l,
                },
            );
        }
        M(m)
    }

    pub fn pod(mut self, key: &str, node: &str, ips: &[&str], l: &[(&str, &str)]) -> M {
        let (ns, name) = key.split_once('/').expect("ns/name");
        let ports = [80u16, 81]
            .iter()
            .flat_map(|p| {
                [Protocol::Tcp, Protocol::Udp, Protocol::Sctp]
                    .into_iter()
                    .map(move |proto| ContainerPort {
                        name: Some(format!("serve-{p}-{}", proto.as_str().to_lowercase())),
                        port: *p,
                        protocol: proto,
                    })
            })
            .collect();
        self.0.pods.insert(
            ObjectKey::new(ns, name),
            Pod {
                namespace: ns.into(),
                name: name.into(),
                labels: labels(l),
                node_name: Some(node.into()),
                ips: ips.iter().map(|s| s.parse().expect("ip")).collect(),
                ports,
                host_network: false,
            },
        );
        self
    }

    pub fn policy(mut self, p: NetworkPolicy) -> M {
        self.0.policies.insert(p.key(), p);
        self
    }
}

pub(crate) fn policy(key: &str, selector: Selector) -> NetworkPolicy {
    let (ns, name) = key.split_once('/').expect("ns/name");
    NetworkPolicy {
        namespace: ns.into(),
        name: name.into(),
        pod_selector: selector,
        ingress_isolation: true,
        egress_isolation: false,
        ingress: vec![],
        egress: vec![],
    }
}

fn tcp(p: u16) -> PolicyPort {
    PolicyPort {
        protocol: Protocol::Tcp,
        port: Some(PortRef::Number(p)),
        end_port: None,
    }
}

/// Whether the compiled tables of both ends' nodes let `src -> dst` through, checked
/// against the semantics.
fn allowed(m: &Model, src: &str, dst: &str, proto: Protocol, port: u16) -> bool {
    let s: IpAddr = src.parse().expect("ip");
    let d: IpAddr = dst.parse().expect("ip");
    let se = End::of_ip(m, s);
    let de = End::of_ip(m, d);
    let mut nodes: Vec<String> = [se.pod, de.pod]
        .iter()
        .flatten()
        .filter_map(|p| p.node_name.clone())
        .collect();
    nodes.dedup();
    let pkt = Packet {
        src: s,
        dst: d,
        proto: proto.number(),
        dport: port,
        ct: CtState::New,
    };
    let nft = nodes.iter().all(|n| {
        let c = compile(
            m,
            &Options {
                node: n.clone(),
                log_denied: None,
            },
        );
        trace(&c.table, Hook::Forward, &pkt)
            .expect("trace")
            .accepted
    });
    let sem = semantics::evaluate(m, &se, &de, proto, port).allowed();
    assert_eq!(
        nft, sem,
        "{src} -> {dst} {proto}/{port}: nft {nft}, semantics {sem}"
    );
    nft
}

fn opts(node: &str) -> Options {
    Options {
        node: node.into(),
        log_denied: None,
    }
}

fn three_pods() -> M {
    M::new(&["x", "y"])
        .pod("x/a", "n1", &["10.0.1.10"], &[("pod", "a")])
        .pod("x/b", "n2", &["10.0.2.10"], &[("pod", "b")])
        .pod("y/a", "n1", &["10.0.1.11"], &[("pod", "a")])
}

#[test]
fn no_policy_allows_everything_and_dispatches_nothing() {
    let m = three_pods().0;
    assert!(allowed(&m, "10.0.2.10", "10.0.1.10", Protocol::Tcp, 80));
    let c = compile(&m, &opts("n1"));
    assert!(c.table.sets.iter().all(|s| s.elements.is_empty()));
    assert!(c.enforced_pods.is_empty());
}

#[test]
fn default_deny_ingress_isolates_selected_pods_only() {
    let m = three_pods().policy(policy("x/deny", Selector::default())).0;
    assert!(!allowed(&m, "10.0.2.10", "10.0.1.10", Protocol::Tcp, 80));
    assert!(!allowed(&m, "10.0.1.11", "10.0.1.10", Protocol::Udp, 81));
    assert!(
        allowed(&m, "10.0.1.10", "10.0.1.11", Protocol::Tcp, 80),
        "egress not isolated"
    );
    let c = compile(&m, &opts("n1"));
    assert_eq!(c.enforced_pods.len(), 1, "only x/a is on n1 and in x");
    let map = c
        .table
        .sets
        .iter()
        .find(|s| s.name == "ingress4")
        .expect("map");
    assert_eq!(map.elements.len(), 1);
}

#[test]
fn replies_and_established_flows_pass() {
    let m = three_pods().policy(policy("x/deny", Selector::default())).0;
    let c = compile(&m, &opts("n1"));
    let pkt = Packet {
        src: "10.0.2.10".parse().expect("ip"),
        dst: "10.0.1.10".parse().expect("ip"),
        proto: 6,
        dport: 80,
        ct: CtState::Established,
    };
    assert!(
        trace(&c.table, Hook::Forward, &pkt)
            .expect("trace")
            .accepted
    );
}

#[test]
fn pod_and_namespace_selectors_alone_and_together() {
    let mut p = policy("x/allow", sel(&[("pod", "a")]));
    p.ingress = vec![PolicyRule {
        peers: vec![
            Peer::Pods(sel(&[("pod", "b")])),
            Peer::PodsInNamespaces {
                pods: sel(&[("pod", "a")]),
                namespaces: sel(&[("ns", "y")]),
            },
        ],
        ports: vec![],
    }];
    let m = three_pods()
        .pod("y/b", "n2", &["10.0.2.11"], &[("pod", "b")])
        .policy(p)
        .0;
    assert!(
        allowed(&m, "10.0.2.10", "10.0.1.10", Protocol::Tcp, 80),
        "x/b: pods peer"
    );
    assert!(
        allowed(&m, "10.0.1.11", "10.0.1.10", Protocol::Udp, 9),
        "y/a: both"
    );
    assert!(
        !allowed(&m, "10.0.2.11", "10.0.1.10", Protocol::Tcp, 80),
        "y/b: neither"
    );
    let mut q = policy("x/nsonly", sel(&[("pod", "a")]));
    q.ingress = vec![PolicyRule {
        peers: vec![Peer::Namespaces(Selector {
            match_labels: Labels::new(),
            match_expressions: vec![Requirement {
                key: "ns".into(),
                op: SelectorOp::NotIn,
                values: vec!["x".into()],
            }],
        })],
        ports: vec![],
    }];
    let m = three_pods()
        .pod("y/b", "n2", &["10.0.2.11"], &[("pod", "b")])
        .policy(q)
        .0;
    assert!(allowed(&m, "10.0.2.11", "10.0.1.10", Protocol::Tcp, 80));
    assert!(!allowed(&m, "10.0.2.10", "10.0.1.10", Protocol::Tcp, 80));
}

#[test]
fn ports_numbers_ranges_protocols_and_sctp() {
    let mut p = policy("x/ports", Selector::default());
    p.ingress = vec![PolicyRule {
        peers: vec![],
        ports: vec![
            tcp(80),
            PolicyPort {
                protocol: Protocol::Udp,
                port: Some(PortRef::Number(1000)),
                end_port: Some(2000),
            },
            PolicyPort {
                protocol: Protocol::Sctp,
                port: None,
                end_port: None,
            },
        ],
    }];
    let m = three_pods().policy(p).0;
    let (s, d) = ("10.0.2.10", "10.0.1.10");
    assert!(allowed(&m, s, d, Protocol::Tcp, 80));
    assert!(!allowed(&m, s, d, Protocol::Tcp, 81));
    assert!(
        !allowed(&m, s, d, Protocol::Udp, 80),
        "TCP port does not open UDP"
    );
    assert!(allowed(&m, s, d, Protocol::Udp, 1000));
    assert!(allowed(&m, s, d, Protocol::Udp, 2000));
    assert!(!allowed(&m, s, d, Protocol::Udp, 2001));
    assert!(allowed(&m, s, d, Protocol::Sctp, 7));
    assert!(!allowed(&m, s, d, Protocol::Tcp, 7), "SCTP is not TCP");
    let c = compile(&m, &opts("n1"));
    let rules: Vec<String> = c
        .table
        .chains
        .iter()
        .find(|c| c.name == "pol-in/x/ports")
        .expect("policy chain")
        .rules
        .iter()
        .map(|r| r.render(c.table.family))
        .collect();
    assert!(
        rules
            .iter()
            .any(|r| r.starts_with("udp dport 1000-2000 counter")),
        "{rules:?}"
    );
    assert!(
        rules
            .iter()
            .any(|r| r.starts_with("meta l4proto sctp counter")),
        "{rules:?}"
    );
}

#[test]
fn named_ports_resolve_per_destination_pod() {
    let mut m = three_pods();
    // x/c names port 8080 "serve-80-tcp"; x/a keeps 80; x/d does not define it.
    m = m.pod("x/c", "n1", &["10.0.1.12"], &[("pod", "c")]).pod(
        "x/d",
        "n1",
        &["10.0.1.13"],
        &[("pod", "d")],
    );
    if let Some(p) = m.0.pods.get_mut(&ObjectKey::new("x", "c")) {
        for cp in &mut p.ports {
            if cp.name.as_deref() == Some("serve-80-tcp") {
                cp.port = 8080;
            }
        }
    }
    if let Some(p) = m.0.pods.get_mut(&ObjectKey::new("x", "d")) {
        p.ports.clear();
    }
    let mut p = policy("x/named", Selector::default());
    p.ingress = vec![PolicyRule {
        peers: vec![],
        ports: vec![PolicyPort {
            protocol: Protocol::Tcp,
            port: Some(PortRef::Name("serve-80-tcp".into())),
            end_port: None,
        }],
    }];
    let m = m.policy(p).0;
    let s = "10.0.2.10";
    assert!(allowed(&m, s, "10.0.1.10", Protocol::Tcp, 80));
    assert!(!allowed(&m, s, "10.0.1.12", Protocol::Tcp, 80));
    assert!(allowed(&m, s, "10.0.1.12", Protocol::Tcp, 8080));
    assert!(
        !allowed(&m, s, "10.0.1.13", Protocol::Tcp, 80),
        "name not defined"
    );
    assert!(
        !allowed(&m, s, "10.0.1.10", Protocol::Udp, 80),
        "name is per protocol"
    );
    let c = compile(&m, &opts("n1"));
    let set = c
        .table
        .sets
        .iter()
        .find(|s| s.name == "nport4/x/named/in0")
        .expect("named port set");
    assert_eq!(
        set.elements
            .iter()
            .map(|e| e.key.clone())
            .collect::<Vec<_>>(),
        vec![
            vec![
                KeyPart::Addr("10.0.1.10".parse().expect("ip")),
                KeyPart::Proto(6),
                KeyPart::Port(80)
            ],
            vec![
                KeyPart::Addr("10.0.1.12".parse().expect("ip")),
                KeyPart::Proto(6),
                KeyPart::Port(8080)
            ],
        ]
    );
}

#[test]
fn egress_named_ports_resolve_on_the_destination() {
    let mut p = policy("x/eg", sel(&[("pod", "a")]));
    p.ingress_isolation = false;
    p.egress_isolation = true;
    p.egress = vec![PolicyRule {
        peers: vec![Peer::Namespaces(sel(&[("ns", "y")]))],
        ports: vec![PolicyPort {
            protocol: Protocol::Udp,
            port: Some(PortRef::Name("serve-81-udp".into())),
            end_port: None,
        }],
    }];
    let m = three_pods().policy(p).0;
    assert!(allowed(&m, "10.0.1.10", "10.0.1.11", Protocol::Udp, 81));
    assert!(!allowed(&m, "10.0.1.10", "10.0.1.11", Protocol::Udp, 80));
    assert!(
        !allowed(&m, "10.0.1.10", "10.0.2.10", Protocol::Udp, 81),
        "x/b not in y"
    );
}

#[test]
fn ip_blocks_with_except_match_pod_addresses_too() {
    let mut p = policy("x/cidr", sel(&[("pod", "a")]));
    p.ingress = vec![PolicyRule {
        peers: vec![Peer::IpBlock(IpBlock {
            cidr: "10.0.0.0/16".parse().expect("net"),
            except: vec!["10.0.1.11/32".parse().expect("net")],
        })],
        ports: vec![tcp(80)],
    }];
    let m = three_pods().policy(p).0;
    assert!(allowed(&m, "10.0.2.10", "10.0.1.10", Protocol::Tcp, 80));
    assert!(
        !allowed(&m, "10.0.1.11", "10.0.1.10", Protocol::Tcp, 80),
        "except"
    );
    assert!(
        !allowed(&m, "10.9.0.1", "10.0.1.10", Protocol::Tcp, 80),
        "outside"
    );
    let c = compile(&m, &opts("n1"));
    let chain = c
        .table
        .chains
        .iter()
        .find(|c| c.name == "pol-in/x/cidr")
        .expect("chain");
    assert_eq!(
        chain.rules[0].render(c.table.family),
        "ip saddr 10.0.0.0/16 ip saddr != 10.0.1.11 tcp dport 80 counter packets 0 bytes 0 accept comment \"x/cidr ingress[0]\""
    );
}

#[test]
fn union_of_policies_and_egress_with_ingress() {
    let mut a = policy("x/allow-80", sel(&[("pod", "a")]));
    a.ingress = vec![PolicyRule {
        peers: vec![],
        ports: vec![tcp(80)],
    }];
    let mut b = policy("x/allow-81", sel(&[("pod", "a")]));
    b.ingress = vec![PolicyRule {
        peers: vec![],
        ports: vec![tcp(81)],
    }];
    let mut e = policy("x/egress-deny", sel(&[("pod", "b")]));
    e.ingress_isolation = false;
    e.egress_isolation = true;
    let m = three_pods().policy(a).policy(b).policy(e).0;
    assert!(allowed(&m, "10.0.1.11", "10.0.1.10", Protocol::Tcp, 80));
    assert!(allowed(&m, "10.0.1.11", "10.0.1.10", Protocol::Tcp, 81));
    assert!(!allowed(&m, "10.0.1.11", "10.0.1.10", Protocol::Tcp, 82));
    assert!(
        !allowed(&m, "10.0.2.10", "10.0.1.10", Protocol::Tcp, 80),
        "x/b egress denied"
    );
    assert!(!allowed(&m, "10.0.2.10", "10.0.1.11", Protocol::Tcp, 80));
}

#[test]
fn ipv6_pods_get_ipv6_sets_and_rules() {
    let mut p = policy("x/v6", sel(&[("pod", "a")]));
    p.ingress = vec![PolicyRule {
        peers: vec![
            Peer::Pods(sel(&[("pod", "b")])),
            Peer::IpBlock(IpBlock {
                cidr: "fd00:9::/64".parse().expect("net"),
                except: vec![],
            }),
        ],
        ports: vec![tcp(80)],
    }];
    let m = M::new(&["x"])
        .pod("x/a", "n1", &["10.0.1.10", "fd00::a"], &[("pod", "a")])
        .pod("x/b", "n2", &["10.0.2.10", "fd00::b"], &[("pod", "b")])
        .pod("x/c", "n2", &["10.0.2.11", "fd00::c"], &[("pod", "c")])
        .policy(p)
        .0;
    assert!(allowed(&m, "fd00::b", "fd00::a", Protocol::Tcp, 80));
    assert!(!allowed(&m, "fd00::c", "fd00::a", Protocol::Tcp, 80));
    assert!(allowed(&m, "fd00:9::1", "fd00::a", Protocol::Tcp, 80));
    assert!(!allowed(&m, "fd00:9::1", "fd00::a", Protocol::Tcp, 81));
    assert!(allowed(&m, "10.0.2.10", "10.0.1.10", Protocol::Tcp, 80));
    let c = compile(&m, &opts("n1"));
    for s in ["ingress6", "sel6/x/v6", "peer6/x/v6/in0"] {
        assert!(c.table.sets.iter().any(|x| x.name == s), "{s}");
    }
}

#[test]
fn pod_churn_changes_set_elements_only() {
    let mut p = policy("x/allow", sel(&[("pod", "a")]));
    p.ingress = vec![PolicyRule {
        peers: vec![Peer::Pods(sel(&[("role", "client")]))],
        ports: vec![PolicyPort {
            protocol: Protocol::Tcp,
            port: Some(PortRef::Name("serve-80-tcp".into())),
            end_port: None,
        }],
    }];
    let base = three_pods().policy(p);
    let before = compile(&base.0, &opts("n1"));
    // A new selected pod on this node, a relabelled peer, a pod removed.
    let mut after = base
        .pod("x/new", "n1", &["10.0.1.20"], &[("pod", "a")])
        .pod("x/cl", "n2", &["10.0.2.20"], &[("role", "client")]);
    after.0.pods.remove(&ObjectKey::new("y", "a"));
    if let Some(b) = after.0.pods.get_mut(&ObjectKey::new("x", "b")) {
        b.labels.insert("role".into(), "client".into());
    }
    let next = compile(&after.0, &opts("n1"));
    let (_, summary) = plan(Some(&before.table), &next.table);
    assert!(summary.elements_only(), "{summary:?}");
    assert!(summary.elements_added >= 4, "{summary:?}");
    let (_, none) = plan(Some(&next.table), &next.table);
    assert!(none.is_noop());
    let (_, full) = plan(None, &next.table);
    assert!(full.full);
}

#[test]
fn host_network_pods_are_never_enforced() {
    let mut m = three_pods().policy(policy("x/deny", Selector::default()));
    if let Some(p) = m.0.pods.get_mut(&ObjectKey::new("x", "a")) {
        p.host_network = true;
    }
    let c = compile(&m.0, &opts("n1"));
    assert!(c.enforced_pods.is_empty());
}

/// A small deterministic generator (no dependency needed for this).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn compiled_rules_agree_with_the_semantics_on_random_models() {
    let mut rng = Lcg(7);
    for round in 0..40 {
        let mut m = M::new(&["x", "y", "z"]);
        let vals = ["a", "b", "c"];
        let mut ips = Vec::new();
        for (i, ns) in ["x", "y", "z"].iter().enumerate() {
            for j in 0..3 {
                let ip = format!("10.{}.{}.{}", round % 200, i, j + 1);
                let node = format!("n{}", rng.next(2));
                let l = [
                    ("app", vals[rng.next(3) as usize]),
                    ("tier", vals[rng.next(3) as usize]),
                ];
                m = m.pod(&format!("{ns}/p{j}"), &node, &[&ip], &l);
                ips.push(ip);
            }
        }
        for k in 0..(1 + rng.next(4)) {
            let ns = ["x", "y", "z"][rng.next(3) as usize];
            let mut p = policy(
                &format!("{ns}/p{k}"),
                sel(&[("app", vals[rng.next(3) as usize])]),
            );
            p.egress_isolation = rng.next(2) == 0;
            p.ingress_isolation = !p.egress_isolation || rng.next(2) == 0;
            let rule = |rng: &mut Lcg| {
                let mut peers = Vec::new();
                for _ in 0..rng.next(3) {
                    peers.push(match rng.next(4) {
                        0 => Peer::Pods(sel(&[("tier", vals[rng.next(3) as usize])])),
                        1 => {
                            Peer::Namespaces(sel(&[("ns", ["x", "y", "z"][rng.next(3) as usize])]))
                        }
                        2 => Peer::PodsInNamespaces {
                            pods: sel(&[("app", vals[rng.next(3) as usize])]),
                            namespaces: Selector::default(),
                        },
                        _ => Peer::IpBlock(IpBlock {
                            cidr: format!("10.{}.0.0/16", round % 200).parse().expect("net"),
                            except: vec![
                                format!("10.{}.{}.0/24", round % 200, rng.next(3))
                                    .parse()
                                    .expect("net"),
                            ],
                        }),
                    });
                }
                let mut ports = Vec::new();
                for _ in 0..rng.next(3) {
                    ports.push(match rng.next(3) {
                        0 => tcp(80),
                        1 => PolicyPort {
                            protocol: Protocol::Udp,
                            port: Some(PortRef::Name("serve-81-udp".into())),
                            end_port: None,
                        },
                        _ => PolicyPort {
                            protocol: Protocol::Tcp,
                            port: Some(PortRef::Number(79)),
                            end_port: Some(80),
                        },
                    });
                }
                PolicyRule { peers, ports }
            };
            if p.ingress_isolation {
                let n = rng.next(3);
                p.ingress = (0..n).map(|_| rule(&mut rng)).collect();
            }
            if p.egress_isolation {
                let n = rng.next(3);
                p.egress = (0..n).map(|_| rule(&mut rng)).collect();
            }
            m = m.policy(p);
        }
        for s in &ips {
            for d in &ips {
                if s == d {
                    continue;
                }
                for (proto, port) in [
                    (Protocol::Tcp, 80),
                    (Protocol::Udp, 81),
                    (Protocol::Tcp, 81),
                ] {
                    allowed(&m.0, s, d, proto, port);
                }
            }
        }
    }
}

#[test]
fn an_ip_block_of_everything_is_two_halves_of_one_family() {
    let mut p = policy("x/internet", sel(&[("pod", "a")]));
    p.ingress = vec![PolicyRule {
        peers: vec![Peer::IpBlock(IpBlock {
            cidr: "0.0.0.0/0".parse().expect("net"),
            except: vec!["10.0.2.0/24".parse().expect("net")],
        })],
        ports: vec![],
    }];
    let m = three_pods().policy(p).0;
    assert!(allowed(&m, "203.0.113.9", "10.0.1.10", Protocol::Tcp, 80));
    assert!(allowed(&m, "10.0.1.11", "10.0.1.10", Protocol::Tcp, 80));
    assert!(
        !allowed(&m, "10.0.2.10", "10.0.1.10", Protocol::Tcp, 80),
        "except"
    );
    let c = compile(&m, &opts("n1"));
    let rules: Vec<String> = c
        .table
        .chains
        .iter()
        .find(|c| c.name == "pol-in/x/internet")
        .expect("chain")
        .rules
        .iter()
        .map(|r| r.render(c.table.family))
        .collect();
    assert_eq!(rules.len(), 2, "{rules:?}");
    assert!(
        rules[0].starts_with("ip saddr 0.0.0.0/1 ip saddr != 10.0.2.0/24"),
        "{rules:?}"
    );
    assert!(
        rules[1].starts_with("ip saddr 128.0.0.0/1 ip saddr != 10.0.2.0/24"),
        "{rules:?}"
    );
}
