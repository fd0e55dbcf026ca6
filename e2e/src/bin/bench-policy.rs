//! `bench-policy`: the NetworkPolicy engine at the issue's scale, measured in one run.
//!
//! 1. Compile + full apply of 1,000 NetworkPolicies over 5,000 pods in 50 namespaces
//!    (`e2e/src/policy_model.rs`, seeded), for `node-0` (100 local pods, the realistic case)
//!    and with all 5,000 pods on `node-0` (the worst case), into a node namespace of its own.
//! 2. One pod's labels changing, recompiled and applied incrementally: the time until the
//!    kernel has acknowledged the change, for both cases; and end to end through twilld
//!    (`--manifests`): from rewriting the pod's manifest file to `/status` showing it applied.
//! 3. Pod-to-pod TCP throughput (iperf3, one stream) with the `node-0` table loaded against
//!    none, in paired rounds, over a bridge (same node) and routed through the node (from
//!    another node).
//!
//! Everything runs in network namespaces this binary creates and removes; the engine's code
//! runs on a thread that entered the node's namespace (never the root namespace), and every
//! process it starts is stopped by PID. The measurements assert nothing about time (the page
//! states each target and whether it is met); they do assert what would make a figure
//! meaningless: that every label change planned set elements only, that the kernel holds
//! exactly the compiled table afterwards, and that the iperf3 connections really went through
//! the policy chains (their accept counters moved).
//!
//! Writes the `policy` section of `docs/benchmarks.md` (or of the file named as the first
//! argument). Options: `--runs N` (measurement 1, default 7), `--changes N` (measurement 2,
//! default 30), `--rounds N` (measurement 3 per path, default 40).

use ipnetwork::Ipv4Network;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use twill_e2e::cluster::Cluster;
use twill_e2e::iperf::Server;
use twill_e2e::policy_model::{
    self, CLIENT, IPERF_PORT, Params, REMOTE, SERVER, all_on, churn_pod, generate, relabelled,
};
use twill_e2e::policy_report::{
    self, DaemonChange, FullApply, LabelChange, Meta, PolicyRun, Size, Throughput,
};
use twill_e2e::report::{self, Machine};
use twill_e2e::stats::{median, median_ci95, summarize};
use twill_net::netlink::Netns as NlNetns;
use twill_net::nft::{self, Stmt, Table, Transaction};
use twill_testutil::Netns;
use twilld::policy::apply::{self, table_ref};
use twilld::policy::compile::{Compiled, Options, compile};
use twilld::policy::controller::normalized;
use twilld::source::model::{Model, ObjectKey};

/// The node every measurement compiles for.
const NODE: &str = "node-0";
/// Seconds per iperf3 run (see bench-cluster: at these RTTs one second is steady state, and
/// many short paired rounds beat a few long ones on this noisy machine).
const SECONDS: u32 = 1;
/// Pause between loading or removing the table and an iperf3 run.
const SETTLE: Duration = Duration::from_millis(300);

struct Args {
    output: PathBuf,
    runs: usize,
    changes: usize,
    rounds: usize,
}

fn args() -> Args {
    let mut a = Args {
        output: PathBuf::from("docs/benchmarks.md"),
        runs: 7,
        changes: 30,
        rounds: 40,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut num = |name: &str| -> usize {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a number"))
        };
        match arg.as_str() {
            "--runs" => a.runs = num("--runs").max(1),
            "--changes" => a.changes = num("--changes").max(1),
            "--rounds" => a.rounds = num("--rounds").max(6),
            _ if !arg.starts_with("--") => a.output = PathBuf::from(arg),
            _ => panic!("unknown option {arg} (--runs N, --changes N, --rounds N, [OUTPUT])"),
        }
    }
    a
}

fn opts() -> Options {
    Options {
        node: NODE.into(),
        log_denied: None,
    }
}

fn size(c: &Compiled) -> Size {
    Size {
        enforced_pods: c.enforced_pods.len(),
        chains: c.table.chains.len(),
        rules: c.table.chains.iter().map(|ch| ch.rules.len()).sum(),
        sets: c.table.sets.len(),
        elements: c.element_count(),
    }
}

/// Removes the engine's table if present (the leading add makes the delete safe).
fn delete_table() {
    let mut tx = Transaction::new();
    tx.add_table(&table_ref()).delete_table(&table_ref());
    tx.commit().expect("delete table inet twill_policy");
}

/// Compiles and commits the full table for `model`; returns what was committed.
fn apply_full(model: &Model) -> Table {
    let c = compile(model, &opts());
    let (tx, _) = apply::plan(None, &c.table);
    apply::commit(&tx).expect("full apply of the policy table");
    c.table
}

/// Panics unless the kernel's table is the compiled one.
fn assert_kernel_holds(expected: &Table) {
    let kernel = nft::read_table(&table_ref())
        .expect("read table inet twill_policy")
        .expect("table inet twill_policy exists");
    assert!(
        normalized(&kernel) == normalized(expected),
        "the kernel's table differs from the compiled one"
    );
}

/// Measurement 1 for one case. Runs on a thread in the node's namespace.
fn full_apply(case: &str, model: &Model, runs: usize) -> FullApply {
    let (mut comp, mut create, mut replace, mut total, mut total_r) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut sz = None;
    for run in 0..=runs {
        delete_table();
        let t0 = Instant::now();
        let c = compile(model, &opts());
        let t1 = Instant::now();
        let (tx, sum) = apply::plan(None, &c.table);
        apply::commit(&tx).expect("full apply (create)");
        let t2 = Instant::now();
        assert!(sum.full);
        let (tx, _) = apply::plan(None, &c.table);
        apply::commit(&tx).expect("full apply (replace)");
        let t3 = Instant::now();
        if run == 0 {
            // Warm-up; and once, the kernel must hold what we compiled.
            assert_kernel_holds(&c.table);
            sz = Some(size(&c));
            continue;
        }
        comp.push(t1 - t0);
        create.push(t2 - t1);
        replace.push(t3 - t2);
        total.push(t2 - t0);
        total_r.push((t1 - t0) + (t3 - t2));
    }
    let s = |v: &[Duration]| summarize(v).expect("runs");
    FullApply {
        case: case.into(),
        size: sz.expect("warm-up run"),
        compile: s(&comp),
        create: s(&create),
        replace: s(&replace),
        total: s(&total),
        total_replace: s(&total_r),
    }
}

/// Measurement 2 for one case. Runs on a thread in the node's namespace.
fn label_changes(case: &str, model: &Model, changes: usize) -> LabelChange {
    let pod = churn_pod(model, NODE);
    let mut prev = apply_full(model);
    let (mut comp, mut plans, mut commits, mut total, mut elems) =
        (vec![], vec![], vec![], vec![], vec![]);
    // One socket for all changes, as twilld's controller keeps one.
    let mut session = None;
    // Change 0 is a warm-up (and may be a no-op: the pod may already carry that label).
    for k in 0..=changes {
        // The source's work: the new snapshot exists before the controller sees it.
        let next = relabelled(model, &pod, k);
        let t0 = Instant::now();
        let c = compile(&next, &opts());
        let t1 = Instant::now();
        let (tx, sum) = apply::plan(Some(&prev), &c.table);
        let tp = Instant::now();
        apply::commit_on(&tx, &mut session).expect("incremental apply");
        let t2 = Instant::now();
        assert!(sum.elements_only(), "a label change planned {sum:?}");
        prev = c.table;
        if k == 0 {
            continue;
        }
        assert!(!sum.is_noop(), "the label change changed no set element");
        comp.push(t1 - t0);
        plans.push(tp - t1);
        commits.push(t2 - tp);
        total.push(t2 - t0);
        elems.push(sum.elements_added + sum.elements_removed);
    }
    assert_kernel_holds(&prev);
    let s = |v: &[Duration]| summarize(v).expect("changes");
    LabelChange {
        case: case.into(),
        elements: (
            elems.iter().copied().min().unwrap_or(0),
            elems.iter().copied().max().unwrap_or(0),
        ),
        compile: s(&comp),
        plan: s(&plans),
        commit: s(&commits),
        total: s(&total),
    }
}

/// The node namespace with its bridge, the two real pods on it, and a namespace routed
/// through the node holding the remote client (a pod of `node-1` as the node sees it).
struct Testbed {
    node: Netns,
    server: Netns,
    client: Netns,
    remote: Netns,
}

fn pod_ip(model: &Model, (ns, name): (&str, &str)) -> Ipv4Addr {
    match model.pods[&ObjectKey::new(ns, name)].ips[0] {
        std::net::IpAddr::V4(ip) => ip,
        other => panic!("IPv4 pod address expected, got {other}"),
    }
}

fn testbed(model: &Model) -> Testbed {
    let node = Netns::new("bpn");
    node.exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    node.ip(&["link", "add", "br0", "type", "bridge"]);
    let gw = policy_model::node_gateway(0);
    node.ip(&["addr", "add", &format!("{gw}/24"), "dev", "br0"]);
    node.ip(&["link", "set", "br0", "up"]);
    // Bridged IPv4 must meet the forward hook, as on a Kubernetes node.
    node.exec_ok(&["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"]);
    let mut pods = Vec::new();
    for (i, who) in [SERVER, CLIENT].into_iter().enumerate() {
        let ns = Netns::new("bpp");
        let host = format!("vb{i}");
        node.ip(&[
            "link", "add", &host, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
        ]);
        node.ip(&["link", "set", &host, "master", "br0", "up"]);
        ns.ip(&[
            "addr",
            "add",
            &format!("{}/24", pod_ip(model, who)),
            "dev",
            "eth0",
        ]);
        ns.ip(&["link", "set", "eth0", "up"]);
        ns.ip(&["route", "add", "default", "via", &gw.to_string()]);
        pods.push(ns);
    }
    let remote = Netns::new("bpr");
    node.ip(&[
        "link",
        "add",
        "vrem",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        &remote.name,
    ]);
    let rgw = policy_model::node_gateway(1);
    node.ip(&["addr", "add", &format!("{rgw}/24"), "dev", "vrem"]);
    node.ip(&["link", "set", "vrem", "up"]);
    remote.ip(&[
        "addr",
        "add",
        &format!("{}/24", pod_ip(model, REMOTE)),
        "dev",
        "eth0",
    ]);
    remote.ip(&["link", "set", "eth0", "up"]);
    remote.ip(&["route", "add", "default", "via", &rgw.to_string()]);
    let client = pods.pop().expect("client");
    let server = pods.pop().expect("server");
    Testbed {
        node,
        server,
        client,
        remote,
    }
}

impl Testbed {
    /// Runs `f` on a thread whose network namespace is the node's.
    fn in_node<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        NlNetns::open(self.node.path())
            .expect("open the node namespace")
            .run(f)
            .expect("run in the node namespace")
    }
}

/// One pinned iperf3 run (client on CPU 0, server on CPU 1) from `ns` to `ip`, in bit/s.
fn iperf(ns: &Netns, ip: Ipv4Addr) -> f64 {
    let args = [
        "-c".to_owned(),
        ip.to_string(),
        "-p".into(),
        IPERF_PORT.to_string(),
        "-t".into(),
        SECONDS.to_string(),
        "-A".into(),
        "0,1".into(),
        "-J".into(),
    ];
    twill_e2e::iperf::client_bps(ns, &args)
}

/// Packets counted by the `counter` statements of chain `chain` in the kernel's table.
fn counted(chain: &str) -> u64 {
    let t = nft::read_table(&table_ref())
        .expect("read table inet twill_policy")
        .expect("table inet twill_policy exists");
    t.chains
        .iter()
        .filter(|c| c.name == chain)
        .flat_map(|c| &c.rules)
        .flat_map(|r| &r.stmts)
        .map(|s| match s {
            Stmt::Counter { packets, .. } => *packets,
            _ => 0,
        })
        .sum()
}

/// Measurement 3: paired rounds with and without the table, per path.
fn throughput(bed: &Testbed, model: &Model, rounds: usize) -> Vec<Throughput> {
    let server_ip = pod_ip(model, SERVER);
    // Conntrack is active on every twill node (masquerade); load it in both arms.
    let pod_net: Ipv4Network = policy_model::POD_NETWORK.parse().expect("pod network");
    bed.in_node(|| {
        twilld::masq::transaction(pod_net)
            .commit()
            .expect("masquerade table")
    });
    let load = || {
        bed.in_node(|| {
            apply_full(model);
        })
    };
    let unload = || bed.in_node(delete_table);
    let _server = Server::start(&bed.server, Some(IPERF_PORT));
    let mut out = Vec::new();
    for (path, client, clients_chain) in [
        (
            "same node (bridge)",
            &bed.client,
            Some("pol-out/ns-00/web-bench-client"),
        ),
        ("from another node (routed)", &bed.remote, None),
    ] {
        // The connections must have gone through the policy chains: a fresh table's accept
        // counters move only for packets that reached them.
        load();
        iperf(client, server_ip);
        let (in_count, out_count) = bed.in_node(|| {
            (
                counted("pol-in/ns-00/web-bench-server"),
                clients_chain.map(counted),
            )
        });
        assert!(
            in_count > 0,
            "{path}: the server's ingress policy saw nothing"
        );
        assert!(
            out_count.is_none_or(|c| c > 0),
            "{path}: the client's egress policy saw nothing"
        );
        let (mut with, mut without, mut ratios) = (vec![], vec![], vec![]);
        for round in 0..rounds {
            let run = |policies: bool| {
                if policies {
                    load()
                } else {
                    unload()
                }
                // Let the kernel finish freeing the previous table (RCU callbacks) before
                // the clock runs, so that neither arm pays for the other's set-up.
                std::thread::sleep(SETTLE);
                iperf(client, server_ip)
            };
            let (w, wo) = if round % 2 == 0 {
                let w = run(true);
                (w, run(false))
            } else {
                let wo = run(false);
                (run(true), wo)
            };
            with.push(w);
            without.push(wo);
            ratios.push(w / wo);
        }
        let t = Throughput {
            path: path.into(),
            rounds,
            without: median(&without).expect("rounds"),
            with: median(&with).expect("rounds"),
            ratio: median(&ratios).expect("rounds"),
            ci: median_ci95(&ratios).expect("at least 6 rounds"),
        };
        println!(
            "throughput {path}: without {:.2} Gbit/s, with {:.2} Gbit/s, ratio {:.3} ({:.3}–{:.3})",
            t.without / 1e9,
            t.with / 1e9,
            t.ratio,
            t.ci.0,
            t.ci.1
        );
        out.push(t);
    }
    unload();
    out
}

/// `/status` of the twilld in `ns`, read over HTTP from a thread inside that namespace (a
/// `curl` process per poll would add milliseconds to every sample).
fn status_in(ns: &Netns) -> serde_json::Value {
    use std::io::{Read, Write};
    let get = || -> Option<serde_json::Value> {
        let mut s = std::net::TcpStream::connect("127.0.0.1:9464").ok()?;
        s.write_all(b"GET /status HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        let json = body.split_once("\r\n\r\n")?.1;
        serde_json::from_str(json).ok()
    };
    NlNetns::open(ns.path())
        .ok()
        .and_then(|h| h.run(get).ok().flatten())
        .unwrap_or(serde_json::Value::Null)
}

/// Polls `/status` every millisecond until the manifests as they are now are applied.
fn wait_applied(ns: &Netns, dir: &std::path::Path, limit: Duration) -> Duration {
    let expected = twill_e2e::netpol::manifest_hashes(dir).expect("hash manifests");
    let t0 = Instant::now();
    loop {
        let st = status_in(ns);
        match twill_e2e::netpol::policy_sync_problem(&st, &expected) {
            None => return t0.elapsed(),
            Some(why) => assert!(
                t0.elapsed() < limit,
                "twilld did not apply the manifests: {why}"
            ),
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Measurement 2 end to end through twilld: a one-node cluster (real etcd, twilld with
/// `--manifests`), the model written as one file per namespace with `node-0`'s pods on the
/// node; then the churn pod's namespace file is rewritten with its labels flipped, and the
/// time runs until `/status` shows that file's content applied to the kernel (the source has
/// read it and the policy engine's applied generation caught up). Returns it with the time
/// the daemon took to load the whole model (in `load`).
fn daemon_change(model: &Model, changes: usize) -> DaemonChange {
    let node = "node1";
    let mut m = model.clone();
    for p in m.pods.values_mut() {
        if p.node_name.as_deref() == Some(NODE) {
            p.node_name = Some(node.to_owned());
        }
    }
    let mut c = Cluster::new(
        1,
        r#"{"Network":"10.240.0.0/14","Backend":{"Type":"host-gw"}}"#,
    );
    c.use_manifests();
    let dir = c.manifests_dir();
    std::fs::create_dir_all(&dir).expect("manifests dir");
    for ns in m.namespaces.keys() {
        twill_e2e::netpol::write_atomic(
            &dir,
            &format!("{ns}.json"),
            policy_model::namespace_manifest(&m, ns).as_bytes(),
        )
        .expect("write manifest");
    }
    let t0 = Instant::now();
    c.start_daemons();
    let ns = &c.nodes[0].ns;
    wait_applied(ns, &dir, Duration::from_secs(120));
    let load = t0.elapsed();
    let pod = churn_pod(&m, node);
    let mut total = Vec::new();
    for k in 0..=changes {
        m = relabelled(&m, &pod, k);
        let text = policy_model::namespace_manifest(&m, &pod.namespace);
        let t = Instant::now();
        twill_e2e::netpol::write_atomic(&dir, &format!("{}.json", pod.namespace), text.as_bytes())
            .expect("rewrite manifest");
        wait_applied(ns, &dir, Duration::from_secs(10));
        if k > 0 {
            total.push(t.elapsed());
        }
    }
    DaemonChange {
        total: summarize(&total).expect("changes"),
        load,
        poll: Duration::from_millis(1),
    }
}

/// The 1-minute load average.
fn load() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

fn main() {
    let a = args();
    let load_before = load();
    twill_testutil::require_root();
    twill_testutil::require_tool("iperf3", "iperf3");
    let params = Params::default();
    let model = generate(&params);
    let worst = all_on(&model, NODE);
    let local = model
        .pods
        .values()
        .filter(|p| p.node_name.as_deref() == Some(NODE))
        .count();
    let cases = [
        (format!("{NODE} ({local} local pods)"), &model),
        (
            format!("worst case (all {} pods on {NODE})", worst.pods.len()),
            &worst,
        ),
    ];

    let bed = testbed(&model);
    let (full, label) = bed.in_node(|| {
        let mut full = Vec::new();
        let mut label = Vec::new();
        for (case, m) in &cases {
            let f = full_apply(case, m, a.runs);
            println!(
                "full apply {case}: compile {} + create {} = {} (p90 {}); replace total {} (p90 {}); \
                 {} chains, {} rules, {} sets, {} elements",
                report::ms(f.compile.median),
                report::ms(f.create.median),
                report::ms(f.total.median),
                report::ms(f.total.p90),
                report::ms(f.total_replace.median),
                report::ms(f.total_replace.p90),
                f.size.chains,
                f.size.rules,
                f.size.sets,
                f.size.elements
            );
            full.push(f);
            let l = label_changes(case, m, a.changes);
            println!(
                "label change {case}: compile {} + plan {} + commit {} = {} (p90 {}), {}–{} elements",
                report::ms(l.compile.median),
                report::ms(l.plan.median),
                report::ms(l.commit.median),
                report::ms(l.total.median),
                report::ms(l.total.p90),
                l.elements.0,
                l.elements.1
            );
            label.push(l);
        }
        delete_table();
        (full, label)
    });
    let daemon = daemon_change(&model, a.changes);
    println!(
        "through twilld: model loaded in {}; label change {} (p90 {})",
        report::ms(daemon.load),
        report::ms(daemon.total.median),
        report::ms(daemon.total.p90)
    );
    let daemon = Some(daemon);
    let tput = throughput(&bed, &model, a.rounds);
    drop(bed);

    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let command = std::iter::once("target/release/bench-policy".to_owned())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let run = PolicyRun {
        meta: Meta {
            date: report::date_from_unix(secs),
            machine: Machine::this(),
            command,
            namespaces: model.namespaces.len(),
            pods: model.pods.len(),
            policies: model.policies.len(),
            nodes: model.nodes.len(),
            seed: params.seed,
            load: (load_before, load()),
        },
        full_runs: a.runs,
        full,
        label_changes: a.changes,
        label,
        daemon,
        iperf_seconds: SECONDS,
        throughput: tput,
    };
    for v in policy_report::verdicts(&run) {
        println!("{v}");
    }
    let old = std::fs::read_to_string(&a.output).unwrap_or_default();
    std::fs::write(
        &a.output,
        report::replace_section(&old, "policy", &policy_report::render(&run)),
    )
    .expect("write report");
    println!("wrote {}", a.output.display());
}
