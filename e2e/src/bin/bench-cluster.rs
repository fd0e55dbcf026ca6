//! `bench-cluster`: the daemon's data plane and control plane, measured in one run.
//!
//! 1. TCP throughput (iperf3, one stream) pod to pod across two nodes for `host-gw` and
//!    `vxlan`, each against the underlay itself (node to node) in the same cluster, the two
//!    alternating so machine noise hits both; the ratio pod/underlay is what the backend
//!    costs.
//! 2. Control-plane latency: with 1,000 peer leases already programmed, the time from a new
//!    lease being written to etcd to its route being in the node's kernel (the node's route
//!    table is watched from inside its namespace over netlink).
//!
//! Writes the `cluster` section of `docs/benchmarks.md`.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use twill_e2e::cluster::Cluster;
use twill_e2e::iperf::Server;
use twill_e2e::report;
use twill_e2e::stats::{median, median_ci95, summarize};
use twill_net::netlink::{Family, Handle, Netns as NlNetns};
use twill_testutil::Netns;

/// Rounds per placement. The machine's own noise is large and fast (a single stream on the
/// underlay swings between 8 and 16 Gbit/s from one half-second to the next), so precision
/// comes from many short paired runs, not from a few long ones: 60 pinned rounds put the 95 %
/// interval of the median ratio within about ±0.03.
const ROUNDS_PINNED: usize = 60;
const ROUNDS_UNPINNED: usize = 30;
/// Seconds per iperf3 run. At the cluster's RTT (tens of microseconds) TCP is at full speed
/// within a millisecond, so one second measures the steady state.
const SECONDS: u32 = 1;
const LEASES: usize = 1000;
const SAMPLES: usize = 20;

/// What the issue asks of each backend, pod to pod as a share of the underlay.
fn target(backend: &str) -> f64 {
    match backend {
        "host-gw" => 0.85,
        _ => 0.70,
    }
}

/// One iperf3 run from `ns` to `ip`, in bits per second; `pin` puts the client on CPU 0 and
/// the server on CPU 1.
fn iperf(ns: &Netns, ip: Ipv4Addr, pin: bool) -> f64 {
    let mut args = vec![
        "-c".to_owned(),
        ip.to_string(),
        "-t".into(),
        SECONDS.to_string(),
        "-J".into(),
    ];
    if pin {
        args.extend(["-A".to_owned(), "0,1".to_owned()]);
    }
    twill_e2e::iperf::client_bps(ns, &args)
}

/// Medians of one placement: underlay and pod throughput, and of the per-round ratios with
/// their 95 % interval.
struct Throughput {
    backend: &'static str,
    pinned: bool,
    rounds: usize,
    underlay: f64,
    pods: f64,
    ratio: f64,
    ci: (f64, f64),
}

impl Throughput {
    /// The result as a row of the report's table (also what the terminal shows).
    fn row(&self) -> String {
        let target = target(self.backend);
        format!(
            "| {} | {} | {} | {:.2} Gbit/s | {:.2} Gbit/s | **{:.3}** | {:.3}–{:.3} | ≥ {:.2} {} |\n",
            self.backend,
            if self.pinned { "pinned" } else { "unpinned" },
            self.rounds,
            self.underlay / 1e9,
            self.pods / 1e9,
            self.ratio,
            self.ci.0,
            self.ci.1,
            target,
            if self.ratio >= target {
                "met"
            } else {
                "**not met**"
            }
        )
    }
}

/// Each round measures the underlay and the pods back to back (in alternating order, so
/// neither always runs second), and the round's ratio compares the two under the same
/// machine conditions; the median of the ratios is reported.
fn throughput(backend: &'static str, conf: &str) -> Vec<Throughput> {
    let mut c = Cluster::new(2, conf);
    c.start_daemons();
    let a = c.add_pod(1);
    let b = c.add_pod(2);
    c.wait_until("routes", Duration::from_secs(30), |c| {
        (1..=2).all(|i| c.owned_routes(i).len() == 1)
    });
    let mut out = Vec::new();
    for (pinned, rounds) in [(true, ROUNDS_PINNED), (false, ROUNDS_UNPINNED)] {
        // Fresh servers per placement: a server keeps the CPU affinity a pinned client
        // asked for.
        let _servers = (
            Server::start(&c.nodes[1].ns, None),
            Server::start(&c.pods[b].ns, None),
        );
        let under_run = || iperf(&c.nodes[0].ns, c.nodes[1].ip(), pinned);
        let pod_run = || iperf(&c.pods[a].ns, c.pods[b].ip, pinned);
        let (mut under, mut pods, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            let (u, p) = if round % 2 == 0 {
                let u = under_run();
                (u, pod_run())
            } else {
                let p = pod_run();
                (under_run(), p)
            };
            under.push(u);
            pods.push(p);
            ratios.push(p / u);
        }
        out.push(Throughput {
            backend,
            pinned,
            rounds,
            underlay: median(&under).expect("rounds"),
            pods: median(&pods).expect("rounds"),
            ratio: median(&ratios).expect("rounds"),
            ci: median_ci95(&ratios).expect("enough rounds"),
        });
    }
    out
}

/// Time from writing a lease to its route appearing on node 1, `SAMPLES` times, with
/// `LEASES` leases present.
fn lease_latency() -> Vec<Duration> {
    let mut c = Cluster::new(
        1,
        r#"{"Network":"10.0.0.0/8","SubnetLen":24,"Backend":{"Type":"vxlan"}}"#,
    );
    c.start_daemons();
    let attrs = |i: usize| twilld::lease::record::LeaseAttrs {
        public_ip: Ipv4Addr::new(192, 168, 100, 10 + (i % 200) as u8),
        backend_type: "vxlan".into(),
        backend_data: serde_json::json!({"VNI": 1, "VtepMAC": format!("02:55:00:00:{:02x}:{:02x}", i / 256, i % 256)}),
        node_name: format!("fake-{i}"),
    };
    let subnet = |i: usize| -> ipnetwork::Ipv4Network {
        Ipv4Network::new(
            Ipv4Addr::new(10, 100 + (i / 256) as u8, (i % 256) as u8, 0),
            24,
        )
        .expect("subnet")
    };
    use ipnetwork::Ipv4Network;
    c.with_registry(async |r| {
        for i in 0..LEASES {
            r.create(subnet(i), &attrs(i), Duration::from_secs(3600))
                .await
                .expect("create")
                .expect("free");
        }
    });
    c.wait_until("1000 routes programmed", Duration::from_secs(120), |c| {
        c.owned_routes(1).len() == LEASES
    });
    let ns = NlNetns::open(c.nodes[0].ns.path()).expect("node netns");
    let mut samples = Vec::new();
    for k in 0..SAMPLES {
        let target = subnet(LEASES + k);
        let ns_ref = &ns;
        let found = std::thread::scope(|s| {
            let watcher = s.spawn(move || {
                let mut h = Handle::in_netns(ns_ref).expect("netlink");
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    let routes = h.routes(Family::V4).expect("dump routes");
                    if routes
                        .iter()
                        .any(|r| r.dst == ipnetwork::IpNetwork::V4(target))
                    {
                        return Some(Instant::now());
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                None
            });
            std::thread::sleep(Duration::from_millis(50));
            let a = attrs(LEASES + k);
            // The clock starts right before the write, after the client is connected.
            let t0 = c.with_registry(async move |r| {
                let t0 = Instant::now();
                r.create(target, &a, Duration::from_secs(3600))
                    .await
                    .expect("create");
                t0
            });
            watcher.join().expect("watcher").map(|t| t - t0)
        });
        samples.push(found.unwrap_or_else(|| panic!("route to {target} never appeared")));
    }
    samples
}

fn main() {
    let output = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("docs/benchmarks.md"));
    twill_testutil::require_tool("iperf3", "iperf3");
    let mut results = Vec::new();
    for (name, conf) in [
        (
            "host-gw",
            r#"{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}"#,
        ),
        (
            "vxlan",
            r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#,
        ),
    ] {
        for t in throughput(name, conf) {
            print!("{}", t.row());
            results.push(t);
        }
    }
    let lat = lease_latency();
    let s = summarize(&lat).expect("samples");
    println!(
        "lease to route with {LEASES} leases: median {}, p90 {}",
        report::ms(s.median),
        report::ms(s.p90)
    );

    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut body = String::new();
    body.push_str("## twilld: pod throughput against the underlay, and lease-to-route latency\n\n");
    body.push_str("Written by `e2e/src/bin/bench-cluster.rs` (`make bench`).\n\n");
    body.push_str(&format!(
        "- Date: {} (UTC); machine: {} CPUs, Linux {}\n- Command: `target/release/bench-cluster`\n",
        report::date_from_unix(secs),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        kernel.trim()
    ));
    body.push_str(&format!(
        "\nThroughput: a 2-node cluster in namespaces (veths on an underlay bridge, MTU 1500) per backend; \
         one TCP stream, `iperf3 -t {SECONDS}` against servers that stay up for the whole placement. Each round \
         measures the underlay (node to node) and pod to pod (pod on node 1 to pod on node 2) back to back, in \
         alternating order; the table gives the medians of the throughputs and of the per-round ratios, with a \
         distribution-free 95 % interval for the median ratio (binomial order statistics). Many short rounds \
         rather than a few long ones because this machine's noise is large and fast: the underlay alone swings \
         between 8 and 16 Gbit/s from one half-second to the next. \
         *pinned*: iperf3 client on CPU 0 and server on CPU 1 (`-A 0,1`); *unpinned*: wherever the scheduler \
         puts them. *target*: what issue 3 asks (host-gw ≥ 0.85, vxlan ≥ 0.70 of the underlay).\n\n"
    ));
    body.push_str(
        "| backend | placement | rounds | underlay (node to node) | pod to pod | pod/underlay | 95 % interval | target |\n\
         |---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for t in &results {
        body.push_str(&t.row());
    }
    body.push_str(&format!(
        "\nControl plane: one node with {LEASES} vxlan peer leases programmed (1,000 routes, neighbours and FDB \
         entries); then {SAMPLES} times a new lease is written to etcd and the node's route table is polled over \
         netlink (1 ms) until the route is there.\n\n| leases present | median | p90 | max |\n|---:|---:|---:|---:|\n| {LEASES} | {} | {} | {} |\n",
        report::ms(s.median),
        report::ms(s.p90),
        report::ms(lat.iter().copied().max().unwrap_or_default())
    ));
    let old = std::fs::read_to_string(&output).unwrap_or_default();
    std::fs::write(&output, report::replace_section(&old, "cluster", &body)).expect("write report");
    println!("wrote {}", output.display());
}
