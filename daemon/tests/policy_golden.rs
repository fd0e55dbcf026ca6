//! Golden tests of the policy engine's output: the `nft -f` scripts of a full apply and of
//! the incremental applies that follow a pod relabel and a policy change, for a model that
//! uses every feature (selectors alone and together, ipBlock with except, numeric, ranged and
//! named ports, TCP/UDP/SCTP, IPv4 and IPv6, egress, deny logging). A diff here is a change in
//! what reaches the kernel: review it, then regenerate with `TWILL_UPDATE_GOLDEN=1`.
//! `policy_kernel.rs` feeds the same scripts to `nft -c -f` in a namespace.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use twilld::policy::apply::plan;
use twilld::policy::compile::{LogDenied, Options, compile};
use twilld::source::model::*;

pub fn golden_model() -> Model {
    let mut m = Model {
        synced: true,
        ..Model::default()
    };
    for ns in ["x", "y"] {
        let mut labels = Labels::new();
        labels.insert(NAMESPACE_NAME_LABEL.into(), ns.into());
        labels.insert("team".into(), format!("t-{ns}"));
        m.namespaces.insert(
            ns.into(),
            Namespace {
                name: ns.into(),
                labels,
            },
        );
    }
    let pods = [
        ("x", "a", "node1", "10.1.0.10", "fd00::10", "web"),
        ("x", "b", "node1", "10.1.0.11", "fd00::11", "client"),
        ("y", "c", "node2", "10.2.0.10", "fd00:2::10", "client"),
    ];
    for (ns, name, node, v4, v6, app) in pods {
        let mut labels = Labels::new();
        labels.insert("app".into(), app.into());
        m.pods.insert(
            ObjectKey::new(ns, name),
            Pod {
                namespace: ns.into(),
                name: name.into(),
                labels,
                node_name: Some(node.into()),
                ips: vec![v4.parse().unwrap(), v6.parse().unwrap()],
                ports: vec![
                    ContainerPort {
                        name: Some("http".into()),
                        port: 8080,
                        protocol: Protocol::Tcp,
                    },
                    ContainerPort {
                        name: Some("sig".into()),
                        port: 9000,
                        protocol: Protocol::Sctp,
                    },
                ],
                host_network: false,
            },
        );
    }
    let sel = |k: &str, v: &str| Selector::labels(&[(k, v)]);
    let web = NetworkPolicy {
        namespace: "x".into(),
        name: "web".into(),
        pod_selector: sel("app", "web"),
        ingress_isolation: true,
        egress_isolation: true,
        ingress: vec![
            PolicyRule {
                peers: vec![
                    Peer::Pods(sel("app", "client")),
                    Peer::PodsInNamespaces {
                        pods: sel("app", "client"),
                        namespaces: Selector {
                            match_labels: Labels::new(),
                            match_expressions: vec![Requirement {
                                key: "team".into(),
                                op: SelectorOp::In,
                                values: vec!["t-y".into()],
                            }],
                        },
                    },
                ],
                ports: vec![
                    PolicyPort {
                        protocol: Protocol::Tcp,
                        port: Some(PortRef::Name("http".into())),
                        end_port: None,
                    },
                    PolicyPort {
                        protocol: Protocol::Sctp,
                        port: Some(PortRef::Name("sig".into())),
                        end_port: None,
                    },
                ],
            },
            PolicyRule {
                peers: vec![Peer::IpBlock(IpBlock {
                    cidr: "192.168.0.0/16".parse().unwrap(),
                    except: vec!["192.168.5.0/24".parse().unwrap()],
                })],
                ports: vec![PolicyPort {
                    protocol: Protocol::Udp,
                    port: Some(PortRef::Number(5000)),
                    end_port: Some(5010),
                }],
            },
        ],
        egress: vec![PolicyRule {
            peers: vec![Peer::Namespaces(sel("team", "t-y"))],
            ports: vec![PolicyPort {
                protocol: Protocol::Udp,
                port: Some(PortRef::Number(53)),
                end_port: None,
            }],
        }],
    };
    let deny = NetworkPolicy {
        namespace: "y".into(),
        name: "deny-all".into(),
        pod_selector: Selector::default(),
        ingress_isolation: true,
        egress_isolation: false,
        ingress: vec![],
        egress: vec![],
    };
    m.policies.insert(web.key(), web);
    m.policies.insert(deny.key(), deny);
    m
}

pub fn golden_options() -> Options {
    Options {
        node: "node1".into(),
        log_denied: Some(LogDenied {
            group: 100,
            rate: 10,
        }),
    }
}

fn check(name: &str, got: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var("TWILL_UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (TWILL_UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(
        got, want,
        "{name} changed; review, then TWILL_UPDATE_GOLDEN=1"
    );
}

#[test]
fn full_apply_script() {
    let c = compile(&golden_model(), &golden_options());
    let (tx, summary) = plan(None, &c.table);
    assert!(summary.full);
    check("policy-full.nft", &tx.to_string());
    check("policy-table.txt", &c.table.to_string());
}

#[test]
fn relabel_is_an_element_update() {
    let m1 = golden_model();
    let mut m2 = m1.clone();
    // x/b stops being a client: it leaves the peer sets, nothing else changes.
    m2.pods
        .get_mut(&ObjectKey::new("x", "b"))
        .unwrap()
        .labels
        .insert("app".into(), "batch".into());
    let (c1, c2) = (
        compile(&m1, &golden_options()),
        compile(&m2, &golden_options()),
    );
    let (tx, summary) = plan(Some(&c1.table), &c2.table);
    assert!(summary.elements_only(), "{summary:?}");
    check("policy-relabel.nft", &tx.to_string());
}

#[test]
fn policy_change_rewrites_only_its_objects() {
    let m1 = golden_model();
    let mut m2 = m1.clone();
    m2.policies.remove(&ObjectKey::new("y", "deny-all"));
    let (c1, c2) = (
        compile(&m1, &golden_options()),
        compile(&m2, &golden_options()),
    );
    let (tx, _) = plan(Some(&c1.table), &c2.table);
    check("policy-delete.nft", &tx.to_string());
}

/// The golden scripts are what `nft -f` accepts: loaded by nft itself in a namespace, the
/// full script builds exactly the golden table, and the incremental scripts apply on top.
#[test]
fn nft_accepts_the_golden_scripts() {
    twill_testutil::require_tool("nft", "nftables");
    let ns = twill_testutil::Netns::new("tpg");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let load = |name: &str, check_only: bool| {
        let path = dir.join(name);
        let mut args = vec!["nft"];
        if check_only {
            args.push("-c");
        }
        args.extend(["-f", path.to_str().unwrap()]);
        ns.exec_ok(&args);
    };
    load("policy-full.nft", false);
    let listed = ns.exec_ok(&["nft", "list", "table", "inet", "twill_policy"]);
    let want = std::fs::read_to_string(dir.join("policy-table.txt")).unwrap();
    assert_eq!(listed, want);
    load("policy-relabel.nft", true);
    load("policy-delete.nft", true);
}
