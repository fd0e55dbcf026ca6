//! `make demo`: a 3-node Twill cluster with VXLAN on this machine, in network namespaces.
//!
//! Starts a real etcd on an underlay bridge, one twilld per node, two pods per node through the
//! twill CNI plugin (bridge + host-local), prints the ping matrix, `netctl leases` and
//! `netctl status`, and removes everything again (also on Ctrl-C or failure: the cluster value
//! owns every namespace and process).

use std::time::{Duration, Instant};
use twill_e2e::cluster::Cluster;
use twill_testutil::bin_dir;

const NET_CONF: &str = r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":1}}"#;

fn netctl(c: &Cluster, node: usize, args: &[&str]) -> String {
    let bin = bin_dir().join("netctl");
    let out = c.nodes[node]
        .ns
        .command(&bin)
        .arg("--etcd-endpoints")
        .arg(&c.etcd.endpoint)
        .args(args)
        .output();
    match out {
        Ok(o) => format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => format!("netctl: {e}"),
    }
}

/// `TWILL_DEMO_HOLD_SECS=N` keeps the cluster up for N seconds before the teardown, so that a
/// developer can look at the namespaces (the teardown still runs, so nothing is left behind).
fn hold_secs() -> Option<u64> {
    let v = std::env::var("TWILL_DEMO_HOLD_SECS").ok()?;
    match v.parse() {
        Ok(n) => Some(n),
        Err(_) => {
            eprintln!("TWILL_DEMO_HOLD_SECS={v:?} is not a number of seconds; not holding");
            None
        }
    }
}

fn main() {
    let t0 = Instant::now();
    println!("== Twill demo: 3 nodes, VXLAN, 2 pods per node (all inside network namespaces)");
    let mut c = Cluster::new(3, NET_CONF);
    println!(
        "etcd on the underlay at {} with config {NET_CONF}",
        c.etcd.endpoint
    );
    c.start_daemons();
    for n in &c.nodes {
        let f = c.wait_subnet_file(n.index);
        println!(
            "{}  eth0 {}  twilld pid {:?}  leased {}  (subnet file: TWILL_SUBNET={} TWILL_MTU={})",
            n.name(),
            n.ip(),
            n.daemon_pid(),
            f.node_subnet(),
            f.subnet,
            f.mtu
        );
    }
    for i in 1..=3 {
        for _ in 0..2 {
            let p = c.add_pod(i);
            println!(
                "pod {} on node{i}: {} (twill CNI ADD -> bridge + host-local)",
                c.pods[p].id, c.pods[p].ip
            );
        }
    }
    c.wait_until(
        "every node routes to its 2 peers",
        Duration::from_secs(30),
        |c| (1..=3).all(|i| c.owned_routes(i).len() == 2),
    );
    println!("\n== ping matrix (row pings column; ok = answered)");
    let ids: Vec<String> = c.pods.iter().map(|p| p.id.clone()).collect();
    print!("{:<10}", "");
    for id in &ids {
        print!("{id:>9}");
    }
    println!();
    let mut failures = 0;
    for (a, id) in ids.iter().enumerate() {
        print!("{id:<10}");
        for b in 0..c.pods.len() {
            let cell = if a == b {
                "-"
            } else if (0..3).any(|_| c.ping(a, c.pods[b].ip)) {
                "ok"
            } else {
                failures += 1;
                "FAIL"
            };
            print!("{cell:>9}");
        }
        println!();
    }
    println!("\n== node1 routes owned by twilld (ip route show proto 116)");
    for r in c.owned_routes(1) {
        println!("  {r}");
    }
    println!("\n== netctl leases\n{}", netctl(&c, 0, &["leases"]));
    println!("== netctl status (node1)\n{}", netctl(&c, 0, &["status"]));
    if let Some(secs) = hold_secs() {
        println!("\n== holding the cluster for {secs} s (TWILL_DEMO_HOLD_SECS); look around with:");
        println!(
            "  ip netns exec {} ip route       # the underlay",
            c.underlay.name
        );
        for n in &c.nodes {
            println!(
                "  ip netns exec {} ip route       # {}",
                n.ns.name,
                n.name()
            );
        }
        for p in &c.pods {
            println!(
                "  ip netns exec {} ip addr        # pod {}",
                p.ns.name, p.id
            );
        }
        std::thread::sleep(Duration::from_secs(secs));
    }
    println!("\n== tearing down: pods, daemons, nodes, etcd, underlay");
    for p in 0..c.pods.len() {
        c.del_pod(p);
    }
    drop(c);
    println!(
        "done in {:.1} s{}",
        t0.elapsed().as_secs_f64(),
        if failures == 0 {
            ", all pods reached each other".to_owned()
        } else {
            format!(", {failures} pairs FAILED")
        }
    );
    if failures > 0 {
        std::process::exit(1);
    }
}
