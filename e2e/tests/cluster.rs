//! Multi-node suites: real etcd, one real twilld per node namespace, pods through the twill
//! CNI plugin (bridge + host-local), traffic between pods on different nodes.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::process::Stdio;
use std::time::Duration;
use twill_e2e::cluster::Cluster;

const VXLAN: &str = r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#;
const VXLAN_DR: &str =
    r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","DirectRouting":true}}"#;
const HOST_GW: &str = r#"{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}"#;

/// 3 nodes, 2 pods each, daemons running and every node holding routes to both peers.
fn three_nodes_two_pods(conf: &str) -> Cluster {
    let mut c = Cluster::new(3, conf);
    c.start_daemons();
    for i in 1..=3 {
        c.add_pod(i);
        c.add_pod(i);
    }
    // Routes go in first, then neighbours and FDB entries: wait for the whole pass.
    let overlay = if conf == VXLAN { 4 } else { 0 };
    c.wait_until(
        "routes (and tunnel entries) to both peers on every node",
        Duration::from_secs(30),
        |c| {
            (1..=3).all(|i| {
                c.owned_routes(i).len() == 2 && c.overlay_entries(i, "twill.1").len() == overlay
            })
        },
    );
    c
}

fn assert_mesh(c: &Cluster) {
    let failed = c.ping_mesh(3);
    assert!(
        failed.is_empty(),
        "pod pairs without connectivity: {failed:?}"
    );
}

#[test]
fn vxlan_full_mesh() {
    let c = three_nodes_two_pods(VXLAN);
    for i in 1..=3 {
        for r in c.owned_routes(i) {
            assert!(r.contains("dev twill.1 onlink"), "node{i}: {r}");
        }
        // Two peers: a neighbour and an FDB entry each.
        assert_eq!(c.overlay_entries(i, "twill.1").len(), 4, "node{i}");
    }
    assert_mesh(&c);
}

#[test]
fn vxlan_direct_routing_full_mesh() {
    let c = three_nodes_two_pods(VXLAN_DR);
    // All nodes share one L2 segment: plain routes via the peers' addresses, no tunnel entries.
    for i in 1..=3 {
        for r in c.owned_routes(i) {
            assert!(
                r.contains("via 192.168.100.") && r.contains("dev eth0"),
                "node{i}: {r}"
            );
        }
        assert!(c.overlay_entries(i, "twill.1").is_empty(), "node{i}");
    }
    assert_mesh(&c);
}

#[test]
fn host_gw_full_mesh() {
    let c = three_nodes_two_pods(HOST_GW);
    for i in 1..=3 {
        for r in c.owned_routes(i) {
            assert!(
                r.contains("via 192.168.100.") && r.contains("dev eth0"),
                "node{i}: {r}"
            );
        }
    }
    assert_mesh(&c);
}

fn kernel_state(c: &Cluster, i: u8) -> (Vec<String>, Vec<String>) {
    (c.owned_routes(i), c.overlay_entries(i, "twill.1"))
}

/// Parses ping's summary: (transmitted, received).
fn ping_counts(out: &str) -> (u32, u32) {
    let line = out
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no ping summary in {out:?}"));
    let nums: Vec<u32> = line
        .split(|ch: char| !ch.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(2)
        .map(|s| s.parse().unwrap())
        .collect();
    (nums[0], nums[1])
}

#[test]
fn daemon_restart_keeps_traffic_and_kernel_state() {
    let mut c = three_nodes_two_pods(VXLAN);
    let before: Vec<_> = (1..=3).map(|i| kernel_state(&c, i)).collect();
    let subnets_before: Vec<_> = (1..=3)
        .map(|i| c.wait_subnet_file(i).node_subnet())
        .collect();
    // A ping stream from a pod on node 1 to a pod on node 2, every 50 ms for 6 s.
    let target = c.pods.iter().find(|p| p.node == 2).unwrap().ip;
    let from = c.pods.iter().position(|p| p.node == 1).unwrap();
    let stream = c.pods[from]
        .ns
        .command("ping")
        .args(["-i", "0.05", "-w", "6", "-W", "1", &target.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // SIGKILL both ends' daemons, then start them again.
    c.nodes[0].kill_daemon();
    c.nodes[1].kill_daemon();
    std::thread::sleep(Duration::from_millis(500));
    c.start_daemon(1);
    c.start_daemon(2);
    let out = stream.wait_with_output().unwrap();
    let (sent, received) = ping_counts(&String::from_utf8_lossy(&out.stdout));
    assert!(sent > 50, "ping stream too short: {sent}");
    assert!(
        sent - received <= 2,
        "lost {} of {sent} packets across the restart",
        sent - received
    );
    // The restarted processes have reconciled (their counters start at zero), ...
    c.wait_until(
        "restarted daemons reconciled",
        Duration::from_secs(20),
        |c| (1..=2).all(|i| c.metric(i, "twill_reconciles_total").unwrap_or(0.0) >= 1.0),
    );
    // ... kept their subnets (taken back, not claimed anew) ...
    for i in 1..=2 {
        assert_eq!(
            c.wait_subnet_file(i).node_subnet(),
            subnets_before[usize::from(i - 1)]
        );
    }
    let leases = c.with_registry(async |r| r.list().await.unwrap().0);
    assert_eq!(leases.len(), 3, "no lease added or lost: {leases:?}");
    // ... and left the kernel exactly as it was.
    let after: Vec<_> = (1..=3).map(|i| kernel_state(&c, i)).collect();
    assert_eq!(before, after, "kernel state changed across the restart");
    assert_mesh(&c);
}

#[test]
fn a_node_that_leaves_disappears_from_every_route_table() {
    let mut c = three_nodes_two_pods(VXLAN);
    let gone = c.wait_subnet_file(3).node_subnet();
    c.nodes[2].kill_daemon();
    c.with_registry(async move |r| r.delete(gone).await)
        .unwrap();
    c.wait_until(
        "node3's subnet gone from nodes 1 and 2",
        Duration::from_secs(20),
        |c| {
            (1..=2).all(|i| {
                let routes = c.owned_routes(i);
                routes.len() == 1 && !routes.iter().any(|r| r.starts_with(&gone.to_string()))
            })
        },
    );
    for i in 1..=2 {
        let entries = c.overlay_entries(i, "twill.1");
        assert_eq!(
            entries.len(),
            2,
            "node{i}: only the remaining peer's entries: {entries:?}"
        );
        assert!(
            !entries.iter().any(|e| e.contains("192.168.100.3")),
            "node{i}: {entries:?}"
        );
    }
    // Pods on the two remaining nodes still reach each other.
    let a = c.pods.iter().position(|p| p.node == 1).unwrap();
    let b = c.pods.iter().find(|p| p.node == 2).unwrap().ip;
    assert!(c.ping(a, b));
}

#[test]
fn etcd_outage_keeps_the_data_plane_and_recovers() {
    let mut c = Cluster::new(2, VXLAN);
    // 3 s leases: renewed every second, so the outage below is noticed.
    c.lease_ttl_secs = 3;
    c.start_daemons();
    c.add_pod(1);
    c.add_pod(2);
    c.wait_until("routes", Duration::from_secs(30), |c| {
        (1..=2).all(|i| c.owned_routes(i).len() == 1)
    });
    assert_mesh(&c);
    let subnets: Vec<_> = (1..=2)
        .map(|i| c.wait_subnet_file(i).node_subnet())
        .collect();
    c.etcd.stop();
    c.wait_until(
        "both daemons report etcd unreachable",
        Duration::from_secs(20),
        |c| (1..=2).all(|i| c.status(i)["lease_phase"] == "etcd_unreachable"),
    );
    // Traffic keeps flowing while etcd is away, and health says why it is degraded.
    assert_mesh(&c);
    for i in 1..=2 {
        assert!(c.metric(i, "twill_etcd_errors_total").unwrap() >= 1.0);
        assert_eq!(c.metric(i, "twill_etcd_reachable"), Some(0.0));
    }
    c.etcd.resume();
    c.wait_until("both daemons renew again", Duration::from_secs(30), |c| {
        (1..=2).all(|i| c.status(i)["lease_phase"] == "held")
    });
    // Same subnets, in etcd and in the subnet files.
    let leased: HashSet<_> = c
        .with_registry(async |r| r.list().await.unwrap().0)
        .iter()
        .map(|l| l.subnet)
        .collect();
    for i in 1..=2 {
        let s = c.wait_subnet_file(i).node_subnet();
        assert_eq!(s, subnets[usize::from(i - 1)]);
        assert!(leased.contains(&s), "{s} not leased: {leased:?}");
        assert_eq!(c.metric(i, "twill_etcd_reachable"), Some(1.0));
    }
    assert_mesh(&c);
}

#[test]
fn twenty_nodes_started_at_once_get_distinct_subnets() {
    let mut c = Cluster::new(20, VXLAN);
    c.start_daemons();
    let mut subnets = HashSet::new();
    for i in 1..=20 {
        assert!(
            subnets.insert(c.wait_subnet_file(i).node_subnet()),
            "node{i} duplicates a subnet"
        );
    }
    let leases = c.with_registry(async |r| r.list().await.unwrap().0);
    assert_eq!(leases.len(), 20);
    c.wait_until(
        "every node routes to 19 peers",
        Duration::from_secs(60),
        |c| (1..=20).all(|i| c.owned_routes(i).len() == 19),
    );
}

#[test]
fn pods_reach_the_outside_through_the_daemons_masquerade() {
    let mut c = Cluster::new(2, VXLAN);
    c.start_daemons();
    let p = c.add_pod(1);
    let q = c.add_pod(2);
    c.wait_until("routes", Duration::from_secs(30), |c| {
        (1..=2).all(|i| c.owned_routes(i).len() == 1)
    });
    // The underlay gateway has no route to the pod network: only masqueraded pods get answers.
    let outside: std::net::Ipv4Addr = "192.168.100.254".parse().unwrap();
    assert!(c.ping(p, outside), "pod on node1 reaches the outside");
    assert!(c.ping(q, outside), "pod on node2 reaches the outside");
    let table = String::from_utf8_lossy(
        &c.nodes[0]
            .ns
            .exec(&["nft", "list", "table", "inet", "twill_node"])
            .stdout,
    )
    .into_owned();
    assert!(
        table.contains("ip saddr 10.244.0.0/16 masquerade"),
        "{table}"
    );
    // Pod to pod keeps its source address: the return rule comes first.
    assert!(
        table.contains("ip saddr 10.244.0.0/16 ip daddr 10.244.0.0/16 return"),
        "{table}"
    );
    assert!(c.ping(p, c.pods[q].ip));
    // Someone flushes our chain: the next reconcile pass puts it back.
    let flush = c.nodes[0]
        .ns
        .exec(&["nft", "flush", "chain", "inet", "twill_node", "postrouting"]);
    assert!(flush.status.success());
    let masq_rule = |c: &Cluster| {
        let t = c.nodes[0]
            .ns
            .exec(&["nft", "list", "table", "inet", "twill_node"]);
        String::from_utf8_lossy(&t.stdout).contains("ip saddr 10.244.0.0/16 masquerade")
    };
    assert!(!masq_rule(&c), "flushed");
    c.wait_until(
        "masquerade chain restored",
        Duration::from_secs(20),
        masq_rule,
    );
    assert!(c.ping(p, outside));
}

fn in_node(c: &Cluster, i: u8, program: &str, args: &[&str]) -> (bool, String, String) {
    let out = c.nodes[usize::from(i - 1)]
        .ns
        .command(program)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn netctl(c: &Cluster, i: u8, args: &[&str]) -> (bool, String, String) {
    let bin = twill_testutil::bin_dir().join("netctl");
    let endpoint = c.etcd.endpoint.clone();
    let mut full = vec!["--etcd-endpoints", endpoint.as_str()];
    full.extend_from_slice(args);
    in_node(c, i, bin.to_str().unwrap(), &full)
}

#[test]
fn netctl_metrics_and_health_tell_the_operator_what_is_going_on() {
    let mut c = Cluster::new(3, VXLAN);
    // No periodic resync during the test: the deleted route below must stay missing until
    // the test itself causes a reconcile.
    c.resync_secs = 3600;
    c.start_daemons();
    c.wait_until("routes", Duration::from_secs(30), |c| {
        (1..=3).all(|i| c.owned_routes(i).len() == 2)
    });
    // leases: all three, table and JSON.
    let (ok, out, err) = netctl(&c, 1, &["leases"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("SUBNET"), "{out}");
    for i in 1..=3 {
        assert!(out.contains(&format!("192.168.100.{i}")), "{out}");
        assert!(out.contains(&format!("node{i}")), "{out}");
    }
    let (ok, out, _) = netctl(&c, 1, &["leases", "-o", "json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["leases"].as_array().unwrap().len(), 3);
    assert!(v["leases"][0]["ttlSeconds"].as_i64().unwrap() > 0);
    // status of node 1.
    let (ok, out, err) = netctl(&c, 1, &["status"]);
    assert!(ok, "{err}");
    let subnet = c.wait_subnet_file(1).node_subnet().to_string();
    assert!(
        out.contains(&subnet) && out.contains("vxlan") && out.contains("2 seen"),
        "{out}"
    );
    // routes: everything in place, then a deleted route shows as MISSING until repaired.
    let (ok, out, _) = netctl(&c, 1, &["routes"]);
    assert!(ok && out.contains("kernel matches twilld's plan"), "{out}");
    let victim = c.owned_routes(1)[0].clone();
    let dst = victim.split_whitespace().next().unwrap().to_owned();
    c.nodes[0].ns.ip(&["route", "del", &dst]);
    let (_, out, _) = netctl(&c, 1, &["routes", "-o", "json"]);
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .any(|r| r["state"] == "MISSING" && r["entry"].as_str().unwrap().starts_with(&dst)),
        "{out}"
    );
    // Any peer change makes twilld reconcile everything: a new node's lease repairs the route.
    let extra: ipnetwork::Ipv4Network = "10.244.251.0/24".parse().unwrap();
    c.with_registry(async move |r| {
        let attrs = twilld::lease::record::LeaseAttrs {
            public_ip: "192.168.100.9".parse().unwrap(),
            backend_type: "vxlan".into(),
            backend_data: serde_json::json!({"VNI": 1, "VtepMAC": "02:54:c0:a8:64:09"}),
            node_name: "node9".into(),
        };
        r.create(extra, &attrs, Duration::from_secs(600))
            .await
            .unwrap()
            .unwrap();
    });
    c.wait_until("the deleted route repaired", Duration::from_secs(20), |c| {
        c.owned_routes(1).contains(&victim)
    });
    let (ok, out, _) = netctl(&c, 1, &["routes"]);
    assert!(ok && out.contains("kernel matches twilld's plan"), "{out}");
    // metrics and health.
    let (ok, metrics, _) = in_node(
        &c,
        1,
        "curl",
        &["-s", "-m", "2", "http://127.0.0.1:9464/metrics"],
    );
    assert!(ok);
    for m in [
        "twill_lease_held 1",
        "twill_peers 3",
        "twill_routes_programmed 3",
        "twill_etcd_errors_total 0",
    ] {
        assert!(metrics.contains(m), "{m} missing in\n{metrics}");
    }
    let (_, health, _) = in_node(
        &c,
        1,
        "curl",
        &["-s", "-m", "2", "http://127.0.0.1:9464/healthz"],
    );
    assert_eq!(health, "ok\n");
    // Errors that say what to do.
    let (ok, _, err) = in_node(
        &c,
        1,
        twill_testutil::bin_dir().join("netctl").to_str().unwrap(),
        &["--daemon", "127.0.0.1:1", "status"],
    );
    assert!(
        !ok && err.contains("is twilld running on this node?"),
        "{err}"
    );
}

#[test]
fn startup_sweeps_stale_routes_it_owns_and_leaves_others_alone() {
    let mut c = Cluster::new(2, VXLAN);
    // Before twilld starts: a stale route of ours (protocol 116) and a foreign static route.
    c.nodes[0].ns.ip(&[
        "route",
        "add",
        "10.244.77.0/24",
        "via",
        "192.168.100.77",
        "proto",
        "116",
    ]);
    c.nodes[0]
        .ns
        .ip(&["route", "add", "10.99.0.0/16", "via", "192.168.100.99"]);
    c.start_daemons();
    c.wait_until(
        "stale route swept, peer route added",
        Duration::from_secs(30),
        |c| {
            let r = c.owned_routes(1);
            r.len() == 1 && !r[0].starts_with("10.244.77.0")
        },
    );
    let all = c.nodes[0].ns.ip(&["route", "show"]);
    assert!(
        all.contains("10.99.0.0/16 via 192.168.100.99"),
        "foreign route kept: {all}"
    );
}

#[test]
fn host_gw_peer_that_is_not_on_link_is_reported_not_black_holed() {
    let mut c = Cluster::new(2, HOST_GW);
    c.start_daemons();
    c.wait_until("routes", Duration::from_secs(30), |c| {
        (1..=2).all(|i| c.owned_routes(i).len() == 1)
    });
    // A third node somewhere behind a router (not on the underlay segment).
    let subnet: ipnetwork::Ipv4Network = "10.244.250.0/24".parse().unwrap();
    c.with_registry(async move |r| {
        let attrs = twilld::lease::record::LeaseAttrs {
            public_ip: "172.31.0.9".parse().unwrap(),
            backend_type: "host-gw".into(),
            backend_data: serde_json::Value::Null,
            node_name: "far-away".into(),
        };
        r.create(subnet, &attrs, Duration::from_secs(600))
            .await
            .unwrap()
            .unwrap();
    });
    c.wait_until(
        "node1 reports the unreachable peer",
        Duration::from_secs(20),
        |c| {
            let (_, m, _) = in_node(
                c,
                1,
                "curl",
                &["-s", "-m", "2", "http://127.0.0.1:9464/metrics"],
            );
            m.contains("twill_peers_unreachable 1")
        },
    );
    assert!(
        !c.owned_routes(1)
            .iter()
            .any(|r| r.starts_with("10.244.250.0"))
    );
    let (_, status, _) = netctl(&c, 1, &["status"]);
    assert!(
        status.contains("unreachable: 10.244.250.0/24") && status.contains("not on-link"),
        "{status}"
    );
}
