//! The 48 cases of the upstream NetworkPolicy e2e suite (`e2e/testdata/netpol-upstream.json`,
//! format in that directory's README), replayed without a kernel: every policy goes through
//! the same conversion the sources use, the compiler builds each node's table, and every
//! cell of every probe matrix is traced through the tables of the source's and the
//! destination's nodes. The SCTP cases run here, since this kernel has no SCTP sockets for
//! the e2e suite to probe with. Pods use the addresses the matrices were computed for
//! (`model.pod_ips_assumed`) and are spread over three nodes, so both same-node and
//! cross-node cells occur.
#![allow(clippy::unwrap_used)]

use k8s_openapi::api::networking::v1::NetworkPolicy as K8sPolicy;
use serde_json::Value;
use std::net::IpAddr;
use twill_net::nft::{CtState, Hook};
use twilld::policy::compile::{Options, compile};
use twilld::policy::semantics::{self, End};
use twilld::policy::trace::{Packet, trace};
use twilld::source::convert;
use twilld::source::model::*;

fn cases() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../e2e/testdata/netpol-upstream.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ports() -> Vec<ContainerPort> {
    let mut v = Vec::new();
    for port in [80u16, 81] {
        for proto in [Protocol::Tcp, Protocol::Udp, Protocol::Sctp] {
            v.push(ContainerPort {
                name: Some(format!("serve-{port}-{}", proto.as_str().to_lowercase())),
                port,
                protocol: proto,
            });
        }
    }
    v
}

fn ns(m: &mut Model, name: &str, labels: Labels) {
    let mut l = labels;
    l.insert(NAMESPACE_NAME_LABEL.into(), name.into());
    m.namespaces.insert(
        name.into(),
        Namespace {
            name: name.into(),
            labels: l,
        },
    );
}

/// The starting model of a case: namespaces x, y, z (and any other a case names), its pods
/// at their assumed addresses on nodes n1..n3 in turn.
fn initial(doc: &Value, pods: &[String]) -> Model {
    let mut m = Model {
        synced: true,
        ..Model::default()
    };
    let assumed = &doc["model"]["pod_ips_assumed"];
    for (i, key) in pods.iter().enumerate() {
        let (n, name) = key.split_once('/').unwrap();
        if !m.namespaces.contains_key(n) {
            let mut l = Labels::new();
            l.insert("ns".into(), n.into());
            ns(&mut m, n, l);
        }
        let mut labels = Labels::new();
        labels.insert("pod".into(), name.into());
        let ip: IpAddr = assumed[key].as_str().unwrap().parse().unwrap();
        m.pods.insert(
            ObjectKey::new(n, name),
            Pod {
                namespace: n.into(),
                name: name.into(),
                labels,
                node_name: Some(format!("n{}", i % 3 + 1)),
                ips: vec![ip],
                ports: ports(),
                host_network: false,
            },
        );
    }
    m
}

fn labels_of(v: &Value) -> Labels {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect()
}

fn apply_action(m: &mut Model, a: &Value) {
    match a["action"].as_str().unwrap() {
        "create_policy" | "update_policy" => {
            let k: K8sPolicy = serde_json::from_value(a["policy"].clone()).unwrap();
            let p = convert::network_policy(&k).unwrap();
            m.policies.insert(p.key(), p);
        }
        "delete_policy" => {
            m.policies.remove(&ObjectKey::new(
                a["namespace"].as_str().unwrap(),
                a["name"].as_str().unwrap(),
            ));
        }
        "delete_all_policies" => m.policies.clear(),
        "add_namespace_labels" | "set_namespace_labels" => {
            let n = m
                .namespaces
                .get_mut(a["namespace"].as_str().unwrap())
                .unwrap();
            if a["action"] == "set_namespace_labels" {
                n.labels.retain(|k, _| k == NAMESPACE_NAME_LABEL);
            }
            n.labels.extend(labels_of(&a["labels"]));
        }
        "add_pod_labels" | "set_pod_labels" => {
            let (n, name) = a["pod"].as_str().unwrap().split_once('/').unwrap();
            let p = m.pods.get_mut(&ObjectKey::new(n, name)).unwrap();
            if a["action"] == "set_pod_labels" {
                p.labels.clear();
            }
            p.labels.extend(labels_of(&a["labels"]));
        }
        other => panic!("action {other} is not replayed by this test; add it"),
    }
}

fn proto(s: &str) -> Protocol {
    Protocol::parse(s).unwrap()
}

/// The verdict of the compiled tables on both ends' nodes.
fn nft_allows(m: &Model, src: &Pod, dst: &Pod, p: Protocol, port: u16) -> bool {
    let pkt = Packet {
        src: src.ips[0],
        dst: dst.ips[0],
        proto: p.number(),
        dport: port,
        ct: CtState::New,
    };
    let mut nodes = vec![
        src.node_name.clone().unwrap(),
        dst.node_name.clone().unwrap(),
    ];
    nodes.dedup();
    nodes.iter().all(|n| {
        let c = compile(
            m,
            &Options {
                node: n.clone(),
                log_denied: None,
            },
        );
        trace(&c.table, Hook::Forward, &pkt).unwrap().accepted
    })
}

#[test]
fn every_upstream_case_matches_through_the_compiled_tables() {
    let doc = cases();
    let mut mismatches = Vec::new();
    let mut cells = 0;
    let mut sctp_cells = 0;
    for case in doc["cases"].as_array().unwrap() {
        let id = case["id"].as_str().unwrap();
        let pods: Vec<String> = case["pods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_owned())
            .collect();
        let mut m = initial(&doc, &pods);
        for (si, step) in case["steps"].as_array().unwrap().iter().enumerate() {
            for a in step["actions"].as_array().unwrap() {
                apply_action(&mut m, a);
            }
            let step_pods: Vec<&Pod> = step["pods"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| {
                    let (n, name) = k.as_str().unwrap().split_once('/').unwrap();
                    m.pods.get(&ObjectKey::new(n, name)).unwrap()
                })
                .collect();
            for probe in step["probes"].as_array().unwrap() {
                let p = proto(probe["protocol"].as_str().unwrap());
                let port = probe["port"].as_u64().unwrap() as u16;
                for (i, row) in probe["rows"].as_array().unwrap().iter().enumerate() {
                    for (j, cell) in row.as_str().unwrap().chars().enumerate() {
                        if i == j {
                            continue;
                        }
                        let (s, d) = (step_pods[i], step_pods[j]);
                        let want = cell == '1';
                        let got = nft_allows(&m, s, d, p, port);
                        let sem = semantics::evaluate(
                            &m,
                            &End {
                                pod: Some(s),
                                ip: s.ips[0],
                            },
                            &End {
                                pod: Some(d),
                                ip: d.ips[0],
                            },
                            p,
                            port,
                        )
                        .allowed();
                        cells += 1;
                        if p == Protocol::Sctp {
                            sctp_cells += 1;
                        }
                        if got != want || sem != want {
                            mismatches.push(format!(
                                "{id} step {si} {port}/{p} {}->{}: expected {want}, nftables {got}, semantics {sem}",
                                s.key(),
                                d.key()
                            ));
                        }
                    }
                }
            }
        }
    }
    eprintln!("{cells} cells checked ({sctp_cells} SCTP)");
    assert!(cells > 400, "the file was read: {cells} cells");
    assert!(sctp_cells > 0);
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
