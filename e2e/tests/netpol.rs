//! NetworkPolicy conformance on a real cluster: the upstream Kubernetes e2e cases
//! (`testdata/netpol-upstream.json`, a copy of the steering repo's conformance file so a
//! clean clone has it) replayed against three twilld nodes reading one manifest directory,
//! and the daemons' handling of bad manifests while policies are in force.
//!
//! Layout: namespaces x, y, z (`ns=<name>`), pods a, b, c in each (`pod=<name>`), spread so
//! that every namespace has a pod on every node, so most cells cross nodes through VXLAN.
//! Each pod runs `netpol-agent serve` (TCP and UDP 80 and 81).
//!
//! Environment:
//! - `NETPOL_CASE=upstream-tcp-15[,upstream-udp-01...]` runs only those cases.
//!
//! Run with `--nocapture` to see one line per case as it finishes.
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use twill_e2e::netpol::{
    Cell, Conformance, Harness, HarnessOptions, IpBlockRewrite, Labels, NetpolError, Proto, World,
    remove_manifest, to_yaml, write_atomic,
};

const CASES: &str = include_str!("../testdata/netpol-upstream.json");
const VXLAN: &str = r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#;
const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn options(nodes: u8, namespaces: &[&str], pods: &[(&str, &str, u8)]) -> HarnessOptions {
    HarnessOptions {
        nodes,
        net_conf: VXLAN.into(),
        namespaces: namespaces
            .iter()
            .map(|n| ((*n).to_owned(), labels(&[("ns", n)])))
            .collect(),
        pods: pods
            .iter()
            .map(|(ns, p, node)| ((*ns).to_owned(), (*p).to_owned(), *node))
            .collect(),
        probe_timeout: PROBE_TIMEOUT,
    }
}

/// Every namespace has a pod on every node.
const PLACEMENT: [(&str, &str, u8); 9] = [
    ("x", "a", 1),
    ("x", "b", 2),
    ("x", "c", 3),
    ("y", "a", 2),
    ("y", "b", 3),
    ("y", "c", 1),
    ("z", "a", 3),
    ("z", "b", 1),
    ("z", "c", 2),
];

#[test]
fn upstream_network_policy_cases() {
    let started = Instant::now();
    let conf = Conformance::parse(CASES).expect("testdata/netpol-upstream.json parses");
    let only: Option<BTreeSet<String>> = std::env::var("NETPOL_CASE")
        .ok()
        .filter(|v| !v.is_empty())
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect());
    if let Some(only) = &only {
        let known: BTreeSet<&str> = conf.cases.iter().map(|c| c.id.as_str()).collect();
        let unknown: Vec<&String> = only
            .iter()
            .filter(|id| !known.contains(id.as_str()))
            .collect();
        assert!(
            unknown.is_empty(),
            "NETPOL_CASE names unknown cases {unknown:?}"
        );
    }
    // The file's namespaces are ours (plus the label the API server adds).
    for (ns, l) in &conf.model.namespaces {
        assert_eq!(
            l,
            &labels(&[("ns", ns), ("kubernetes.io/metadata.name", ns)]),
            "model namespace {ns}"
        );
    }
    let h = Harness::start(&options(3, &["x", "y", "z"], &PLACEMENT)).expect("cluster");
    let mut h = h;
    println!(
        "cluster up in {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        h.fixture
            .pods
            .values()
            .map(|p| format!("{} node{} {}", p.key(), p.node, p.ip))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // Every pod a case names exists here, and every ipBlock is one we can map.
    let missing: Vec<&str> = conf
        .pods_named()
        .into_iter()
        .filter(|p| !h.fixture.pods.contains_key(*p))
        .collect();
    assert!(
        missing.is_empty(),
        "cases name pods this cluster does not create: {missing:?}"
    );
    let rewrite = IpBlockRewrite::new(
        "10.244.0.0/16".parse().unwrap(),
        &conf.model.pod_ips_assumed,
        &h.fixture.pods,
    );
    let bad_blocks: Vec<String> = conf
        .policies()
        .filter_map(|(case, pol)| {
            rewrite
                .rewrite_policy(&mut pol.clone())
                .err()
                .map(|e| format!("{}: {e}", case.id))
        })
        .collect();
    assert!(
        bad_blocks.is_empty(),
        "ipBlocks the harness cannot map to this cluster's addresses:\n{}",
        bad_blocks.join("\n")
    );

    let mut mismatches = Vec::new();
    let mut errors = Vec::new();
    let (mut cases, mut cells, mut sctp_only) = (0, 0, Vec::new());
    let mut apply_failures = 0;
    for case in &conf.cases {
        if only.as_ref().is_some_and(|o| !o.contains(&case.id)) {
            continue;
        }
        match h.run_case(case, &rewrite) {
            Ok(r) => {
                println!("{r}");
                cases += 1;
                cells += r.cells;
                if r.cells == 0 && r.sctp_skipped > 0 {
                    sctp_only.push(r.id.clone());
                }
                mismatches.extend(r.mismatches.iter().map(|m| m.to_string()));
            }
            Err(e) => {
                println!("{}: error: {e}", case.id);
                let apply = matches!(e, NetpolError::Apply(_));
                errors.push(format!("{}: {e}", case.id));
                // A daemon that stops applying changes would cost a timeout per case.
                apply_failures = if apply { apply_failures + 1 } else { 0 };
                if apply_failures >= 3 {
                    errors
                        .push("three cases in a row not applied in time: the rest not run".into());
                    break;
                }
            }
        }
    }
    println!(
        "{cases} cases, {cells} cells, {} mismatches, {} errors in {:.1} s; SCTP-only cases not probed: {sctp_only:?}",
        mismatches.len(),
        errors.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        mismatches.is_empty() && errors.is_empty(),
        "{} mismatching cells:\n{}\n{} case errors:\n{}",
        mismatches.len(),
        mismatches.join("\n"),
        errors.len(),
        errors.join("\n")
    );
}

/// Every error text node `status` holds about `file`: its `files[file].error` and the
/// `source.errors` entries naming it.
fn errors_about(status: &Value, file: &str) -> Vec<String> {
    let src = &status["source"];
    let mut out: Vec<String> = src["files"][file]["error"]
        .as_str()
        .map(|e| vec![e.to_owned()])
        .unwrap_or_default();
    if let Some(list) = src["errors"].as_array() {
        out.extend(
            list.iter()
                .filter_map(Value::as_str)
                .filter(|e| e.contains(file))
                .map(str::to_owned),
        );
    }
    out
}

/// Asserts every node reports `file` as bad, naming each of `words` (the object) in one of
/// those reports.
fn assert_reported(h: &Harness, file: &str, words: &[&str]) {
    for i in 1..=h.cluster.nodes.len() as u8 {
        let st = h.cluster.status(i);
        let errs = errors_about(&st, file);
        assert!(
            !errs.is_empty(),
            "node{i} reports no error for {file}; source status:\n{}",
            serde_json::to_string_pretty(&st["source"]).unwrap()
        );
        assert!(
            errs.iter().any(|e| words.iter().all(|w| e.contains(w))),
            "node{i}: no error about {file} names {words:?}: {errs:?}"
        );
    }
}

/// Waits until every node applied the manifest directory; panics with their status.
fn applied(h: &Harness) -> Duration {
    h.wait_applied().unwrap_or_else(|e| panic!("{e}"))
}

fn cell(src: &str, dst: &str) -> Cell {
    Cell {
        src: src.into(),
        dst: dst.into(),
        port: 80,
        proto: Proto::Tcp,
    }
}

/// `(cell, expected)` pairs: one denied and one allowed by the policy in force, on TCP and
/// UDP.
fn in_force_cells() -> Vec<(Cell, bool)> {
    let mut v = Vec::new();
    for proto in [Proto::Tcp, Proto::Udp] {
        v.push((
            Cell {
                proto,
                ..cell("y/a", "x/a")
            },
            false,
        ));
        v.push((
            Cell {
                proto,
                ..cell("x/b", "x/a")
            },
            true,
        ));
        v.push((
            Cell {
                proto,
                ..cell("x/a", "y/a")
            },
            true,
        ));
    }
    v
}

fn assert_policy_holds(h: &Harness, when: &str) {
    let mut retried = Vec::new();
    let bad = h.check(&in_force_cells(), &mut retried).expect("probe");
    assert!(
        bad.is_empty(),
        "{when}: cells differ from the policy in force: {:?}",
        bad.iter()
            .map(|(c, e, g)| format!("{c} expected {e} got {g}"))
            .collect::<Vec<_>>()
    );
    if !retried.is_empty() {
        println!("{when}: retried {retried:?}");
    }
}

/// 10 MB that is neither UTF-8 nor YAML (xorshift, so the test needs no randomness).
fn garbage() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..10 * 1024 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// `netctl policy` on node 1 against the running daemons: list, show and explain.
fn netctl_policy_explains(h: &Harness) {
    let run = |args: &[&str]| {
        let out = h.cluster.nodes[0]
            .ns
            .command(twill_testutil::bin_dir().join("netctl"))
            .args(args)
            .output()
            .expect("run netctl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "netctl {args:?} failed: {err}");
        text
    };
    let list: Value = serde_json::from_str(&run(&["policy", "list", "-o", "json"])).unwrap();
    assert_eq!(list[0]["policy"], "x/allow-from-x", "{list}");
    assert_eq!(list[0]["selected_pods"], 1, "{list}");
    let table = run(&["policy", "list"]);
    assert!(
        table.contains("x/allow-from-x") && table.contains("pod=a"),
        "{table}"
    );
    let show: Value =
        serde_json::from_str(&run(&["policy", "show", "x/allow-from-x", "-o", "json"])).unwrap();
    assert!(
        show["selected"][0].as_str().unwrap().starts_with("x/a "),
        "{show}"
    );
    // The probes before this let x/b reach x/a on node 1: its rules counted them.
    assert!(
        show["summary"]["packets"].as_u64().unwrap() > 0,
        "accepted packets on node1: {show}"
    );
    let peers = show["rules"][0]["peers"][0]["pods"].as_array().unwrap();
    assert_eq!(peers.len(), 2, "x/a and x/b are the peers: {show}");
    // y/a (node 2) -> x/a (node 1): denied on x/a's node, by the ingress side.
    let denied: Value = serde_json::from_str(&run(&[
        "policy", "explain", "y/a", "x/a", "80/tcp", "-o", "json",
    ]))
    .unwrap();
    assert_eq!(denied["allowed"], false, "{denied}");
    assert_eq!(denied["consistent"], true, "{denied}");
    assert_eq!(
        denied["ingress"]["isolated_by"][0], "x/allow-from-x",
        "{denied}"
    );
    let node1 = denied["traces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["node"] == "node1")
        .expect("a trace on x/a's node");
    assert_eq!(node1["accepted"], false, "{denied}");
    // x/b -> x/a: allowed by rule 0, peer 0.
    println!("{}", run(&["policy", "explain", "y/a", "x/a", "80/tcp"]));
    println!("{}", run(&["policy", "show", "x/allow-from-x"]));
    let allowed = run(&["policy", "explain", "x/b", "x/a", "80/tcp"]);
    println!("{allowed}");
    assert!(allowed.contains("ALLOWED"), "{allowed}");
    assert!(
        allowed.contains("allowed by x/allow-from-x ingress[0] from[0]"),
        "{allowed}"
    );
    assert!(allowed.contains("pol-in/x/allow-from-x"), "{allowed}");
}

#[test]
fn bad_manifests_are_reported_and_policies_in_force_hold() {
    let mut h = Harness::start(&options(
        2,
        &["x", "y"],
        &[("x", "a", 1), ("x", "b", 2), ("y", "a", 2)],
    ))
    .expect("cluster");
    // x/a accepts only its own namespace.
    let policy = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "allow-from-x", "namespace": "x"},
        "spec": {"podSelector": {"matchLabels": {"pod": "a"}},
                 "ingress": [{"from": [{"podSelector": {}}]}],
                 "policyTypes": ["Ingress"]},
    });
    let fixture: World = h.fixture.clone();
    let no_rewrite = IpBlockRewrite::new(
        "10.244.0.0/16".parse().unwrap(),
        &BTreeMap::new(),
        &BTreeMap::new(),
    );
    h.world
        .apply(
            &json!({"action": "create_policy", "policy": policy}),
            &fixture,
            &no_rewrite,
        )
        .expect("create policy");
    h.sync().expect("write manifests");
    applied(&h);
    assert_policy_holds(&h, "before the bad files");
    netctl_policy_explains(&h);

    let dir = h.cluster.manifests_dir();
    // (a) a file that does not parse.
    write_atomic(
        &dir,
        "broken.yaml",
        b"kind: NetworkPolicy\nmetadata: {name: [unclosed\n",
    )
    .unwrap();
    // (b) a policy in a namespace that does not exist.
    let missing_ns = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "np-missing-ns", "namespace": "nowhere"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    });
    write_atomic(
        &dir,
        "netpol-nowhere-np-missing-ns.yaml",
        to_yaml(&missing_ns).as_bytes(),
    )
    .unwrap();
    // (c) a selector with an invalid operator (if it were taken as "match all", it would
    // isolate x/b and the allowed cells below would fail).
    let bad_op = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "np-bad-operator", "namespace": "x"},
        "spec": {"podSelector": {"matchExpressions": [{"key": "pod", "operator": "Maybe", "values": ["b"]}]},
                 "policyTypes": ["Ingress"]},
    });
    write_atomic(
        &dir,
        "netpol-x-np-bad-operator.yaml",
        to_yaml(&bad_op).as_bytes(),
    )
    .unwrap();
    // (d) 10 MB of garbage.
    write_atomic(&dir, "garbage.yaml", &garbage()).unwrap();
    let waited = applied(&h);
    println!(
        "bad files read and applied in {:.1} s",
        waited.as_secs_f64()
    );
    assert_reported(&h, "broken.yaml", &[]);
    assert_reported(
        &h,
        "netpol-nowhere-np-missing-ns.yaml",
        &["np-missing-ns", "nowhere"],
    );
    assert_reported(&h, "netpol-x-np-bad-operator.yaml", &["np-bad-operator"]);
    assert_reported(&h, "garbage.yaml", &[]);
    for i in 1..=2 {
        let st = h.cluster.status(i);
        assert!(
            errors_about(&st, "netpol-x-allow-from-x.yaml").is_empty(),
            "node{i}: the good policy file is not in error: {}",
            serde_json::to_string_pretty(&st["source"]).unwrap()
        );
    }
    assert_policy_holds(&h, "with the bad files");

    // (e) the policy in force turns unparseable: its last good version stays in force.
    let good = "netpol-x-allow-from-x.yaml";
    let mut broken = std::fs::read(dir.join(good)).unwrap();
    broken.extend_from_slice(b"\"spec\": [unclosed\n");
    write_atomic(&dir, good, &broken).unwrap();
    applied(&h);
    assert_reported(&h, good, &[]);
    assert_policy_holds(&h, "with the policy's own file broken");

    // Everything repaired: no error left, the policy still holds.
    for f in [
        "broken.yaml",
        "netpol-nowhere-np-missing-ns.yaml",
        "netpol-x-np-bad-operator.yaml",
        "garbage.yaml",
    ] {
        remove_manifest(&dir, f).unwrap();
    }
    h.sync().expect("restore manifests");
    applied(&h);
    for i in 1..=2 {
        let st = h.cluster.status(i);
        let files = st["source"]["files"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let file_errors: Vec<&String> = files
            .iter()
            .filter(|(_, f)| !f["error"].is_null())
            .map(|(n, _)| n)
            .collect();
        assert!(
            file_errors.is_empty()
                && st["source"]["errors"]
                    .as_array()
                    .is_none_or(|e| e.is_empty()),
            "node{i}: errors left after the repair: {}",
            serde_json::to_string_pretty(&st["source"]).unwrap()
        );
    }
    assert_policy_holds(&h, "after the repair");
}
