//! A Kubernetes-like cluster on one machine, built from network namespaces.
//!
//! ```text
//!   underlay ns:  br0 192.168.100.254/24 ── etcd (real etcd-server on the underlay)
//!                  │ n1      │ n2      │ nN        (veth ports of br0)
//!   node ns i:    eth0 192.168.100.i/24, default route via .254, one twilld
//!                  └─ cni0 ── pods (namespaces) attached through the twill CNI plugin
//! ```
//!
//! Every namespace, process and temporary directory belongs to the [`Cluster`] value and is
//! removed when it drops, also when a test panics. Nodes run the real `twilld` and pods are
//! created exactly as a runtime would: the `twill` plugin executed in the node's namespace
//! with `CNI_*` variables and the config on stdin, delegating to our `bridge` and
//! `host-local`. Each node keeps its own subnet file, IPAM and delegate directories, so many
//! "nodes" share one filesystem without seeing each other's state.
//!
//! Kubernetes objects reach the daemons through one manifest directory per cluster
//! ([`Cluster::manifests_dir`], passed with `--manifests` through [`Cluster::daemon_args`]):
//! it is the cluster's API server, shared by every node, each of which enforces the policies
//! of the pods scheduled on it. Whether a change has reached the kernel is read from each
//! daemon's `/status` ([`Cluster::wait_policies_applied`]), never guessed with a sleep.
//! Processes a test starts inside pods ([`Cluster::spawn_in_pod`]) are killed by PID before
//! the daemons when the cluster drops.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use twill_testutil::{Etcd, Invocation, Netns, TempDir, bin_dir};
use twilld::lease::registry::Registry;

/// The etcd key prefix the cluster uses.
pub const PREFIX: &str = "/twill/network";
/// The underlay subnet (private to the cluster's own namespaces).
pub const UNDERLAY: &str = "192.168.100";

/// One node: its namespace, daemon and files.
#[derive(Debug)]
pub struct Node {
    pub index: u8,
    pub ns: Netns,
    pub dir: PathBuf,
    daemon: Option<Child>,
}

impl Node {
    pub fn name(&self) -> String {
        format!("node{}", self.index)
    }

    pub fn ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(192, 168, 100, self.index)
    }

    pub fn subnet_file(&self) -> PathBuf {
        self.dir.join("subnet.env")
    }

    pub fn log_file(&self) -> PathBuf {
        self.dir.join("twilld.log")
    }

    /// The daemon's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    /// PID of the running twilld.
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(|c| c.id())
    }

    /// Kills twilld (SIGKILL: the harshest restart) and waits for it.
    pub fn kill_daemon(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The `twill` plugin config for pods on this node.
    pub fn cni_config(&self) -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": "twill",
            "type": "twill",
            "subnetFile": self.subnet_file(),
            "dataDir": self.dir.join("delegates"),
            "ipam": {"dataDir": self.dir.join("ipam")},
        })
    }
}

/// A pod: its namespace and address.
#[derive(Debug)]
pub struct Pod {
    pub node: u8,
    pub id: String,
    pub ns: Netns,
    pub ip: Ipv4Addr,
}

/// The whole cluster. Drop order: pods, daemons, nodes, etcd, underlay, files.
pub struct Cluster {
    pub pods: Vec<Pod>,
    pub nodes: Vec<Node>,
    pub etcd: Etcd,
    pub underlay: Netns,
    pub tmp: TempDir,
    pub net_conf: String,
    /// `--lease-ttl-secs` for daemons started from now on (default 24 h).
    pub lease_ttl_secs: u64,
    /// `--resync-secs` for daemons started from now on (default 5).
    pub resync_secs: u64,
    /// Extra twilld arguments for daemons started from now on (e.g. `--manifests DIR`).
    pub daemon_args: Vec<String>,
    /// Processes started in pods (agents, servers), killed by PID when the cluster drops.
    background: Vec<Child>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

fn run_ok(ns: &Netns, args: &[&str]) {
    ns.ip(args);
}

/// Runs a future on a small runtime (the harness is synchronous).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

impl Cluster {
    /// Underlay, etcd with `net_conf` at `<prefix>/config`, and `n` node namespaces (no
    /// daemons yet: see [`Cluster::start_daemons`]).
    pub fn new(n: u8, net_conf: &str) -> Cluster {
        let tmp = TempDir::new("cluster");
        let underlay = Netns::new("twu");
        run_ok(&underlay, &["link", "add", "br0", "type", "bridge"]);
        run_ok(
            &underlay,
            &["addr", "add", &format!("{UNDERLAY}.254/24"), "dev", "br0"],
        );
        run_ok(&underlay, &["link", "set", "br0", "up"]);
        let etcd = Etcd::start_on(Some(&underlay), &format!("{UNDERLAY}.254"));
        let mut nodes = Vec::new();
        for i in 1..=n {
            let ns = Netns::new("twn");
            let port = format!("n{i}");
            run_ok(
                &underlay,
                &[
                    "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
                ],
            );
            run_ok(&underlay, &["link", "set", &port, "master", "br0", "up"]);
            run_ok(
                &ns,
                &["addr", "add", &format!("{UNDERLAY}.{i}/24"), "dev", "eth0"],
            );
            run_ok(&ns, &["link", "set", "eth0", "up"]);
            run_ok(
                &ns,
                &["route", "add", "default", "via", &format!("{UNDERLAY}.254")],
            );
            let dir = tmp.path().join(format!("node{i}"));
            std::fs::create_dir_all(&dir).expect("node dir");
            nodes.push(Node {
                index: i,
                ns,
                dir,
                daemon: None,
            });
        }
        std::fs::create_dir_all(tmp.path().join("manifests")).expect("manifests dir");
        let c = Cluster {
            pods: Vec::new(),
            nodes,
            etcd,
            underlay,
            tmp,
            net_conf: net_conf.to_owned(),
            lease_ttl_secs: 24 * 3600,
            resync_secs: 5,
            daemon_args: Vec::new(),
            background: Vec::new(),
        };
        let conf = c.net_conf.clone();
        c.with_registry(async move |r| r.put_config(&conf).await)
            .expect("put network config");
        c
    }

    /// Runs `f` with an etcd client. etcd listens on the underlay only, so the client lives
    /// on a scoped thread that entered the underlay namespace (its sockets are created
    /// there); the test's own namespace never gets a route to the cluster.
    pub fn with_registry<T: Send>(&self, f: impl AsyncFnOnce(&Registry) -> T + Send) -> T {
        let endpoint = self.etcd.endpoint.clone();
        let ns =
            twill_net::netlink::Netns::open(self.underlay.path()).expect("open underlay netns");
        ns.run(move || {
            block_on(async move {
                let reg = Registry::connect(std::slice::from_ref(&endpoint), PREFIX)
                    .await
                    .expect("connect etcd");
                f(&reg).await
            })
        })
        .expect("enter underlay netns")
    }

    /// The cluster's manifest directory (Namespaces, Pods, NetworkPolicies): what the
    /// daemons read when started with `--manifests` (see [`Cluster::daemon_args`]).
    pub fn manifests_dir(&self) -> PathBuf {
        self.tmp.path().join("manifests")
    }

    /// Makes daemons started from now on read [`Cluster::manifests_dir`].
    pub fn use_manifests(&mut self) {
        let dir = self.manifests_dir().to_string_lossy().into_owned();
        self.daemon_args.extend(["--manifests".to_owned(), dir]);
    }

    /// Waits (up to 30 s) until every node has read the manifest directory as it is now and
    /// put the resulting ruleset in the kernel; see [`Cluster::wait_policies_applied_within`].
    pub fn wait_policies_applied(&self) -> Duration {
        self.wait_policies_applied_within(Duration::from_secs(30))
    }

    /// Waits until, on every node, `/status` shows: each manifest file now in the directory
    /// with the sha256 of its current bytes and no other file, `source.synced`, and
    /// `policy.applied_generation == source.generation` with no `policy.error`. Returns how
    /// long it took; panics after `timeout` with every node's status and what it lacks.
    pub fn wait_policies_applied_within(&self, timeout: Duration) -> Duration {
        self.try_wait_policies_applied(timeout)
            .unwrap_or_else(|report| panic!("{report}"))
    }

    /// [`Cluster::wait_policies_applied_within`] returning the failure report instead of
    /// panicking.
    pub fn try_wait_policies_applied(&self, timeout: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        let expected = crate::netpol::manifest_hashes(&self.manifests_dir())
            .map_err(|e| format!("read {}: {e}", self.manifests_dir().display()))?;
        loop {
            let problems: Vec<(u8, Value, Option<String>)> = (1..=self.nodes.len() as u8)
                .map(|i| {
                    let st = self.status(i);
                    let p = crate::netpol::policy_sync_problem(&st, &expected);
                    (i, st, p)
                })
                .collect();
            if problems.iter().all(|(_, _, p)| p.is_none()) {
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                let report: Vec<String> = problems
                    .iter()
                    .map(|(i, st, p)| {
                        let shown = json!({"source": st["source"], "policy": st["policy"]});
                        format!(
                            "--- node{i}: {} ---\n{}\nlog tail:\n{}",
                            p.as_deref().unwrap_or("in sync"),
                            serde_json::to_string_pretty(&shown).unwrap_or_default(),
                            tail(&self.nodes[usize::from(*i - 1)].log(), 15)
                        )
                    })
                    .collect();
                return Err(format!(
                    "policies not applied on every node within {timeout:?}; expected files {}\n{}",
                    serde_json::to_string_pretty(&expected).unwrap_or_default(),
                    report.join("\n")
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts `program args` in pod `p`'s namespace and keeps it running until the cluster
    /// drops. With `ready_line`, waits until the program prints that line on stdout (up to
    /// 10 s). Returns its PID.
    pub fn spawn_in_pod(
        &mut self,
        p: usize,
        program: &Path,
        args: &[&str],
        ready_line: Option<&str>,
    ) -> u32 {
        let pod = &self.pods[p];
        let mut child = pod
            .ns
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {} in {}: {e}", program.display(), pod.id));
        let pid = child.id();
        let stdout = child.stdout.take();
        self.background.push(child);
        if let (Some(want), Some(out)) = (ready_line, stdout) {
            let (tx, rx) = std::sync::mpsc::channel();
            let want = want.to_owned();
            std::thread::spawn(move || {
                let found = BufReader::new(out)
                    .lines()
                    .map_while(Result::ok)
                    .any(|l| l.trim() == want);
                let _ = tx.send(found);
            });
            let found = rx.recv_timeout(Duration::from_secs(10)).unwrap_or(false);
            assert!(
                found,
                "{} in pod {} did not print {ready_line:?} within 10 s",
                program.display(),
                self.pods[p].id
            );
        }
        pid
    }

    /// twilld's `/status` on node `i`, as JSON (Null when it does not answer).
    pub fn status(&self, i: u8) -> Value {
        self.http_get(i, "/status")
            .and_then(|b| serde_json::from_str(&b).ok())
            .unwrap_or(Value::Null)
    }

    /// twilld's `/metrics` text on node `i` (empty when it does not answer).
    pub fn metrics(&self, i: u8) -> String {
        self.http_get(i, "/metrics").unwrap_or_default()
    }

    /// A metric's value on node `i`, if exported.
    pub fn metric(&self, i: u8, name: &str) -> Option<f64> {
        self.metrics(i).lines().find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == name).then(|| v.trim().parse().ok()).flatten()
        })
    }

    fn http_get(&self, i: u8, path: &str) -> Option<String> {
        twill_testutil::require_tool("curl", "curl");
        let out = self.nodes[usize::from(i - 1)]
            .ns
            .command("curl")
            .args(["-s", "-m", "2", &format!("http://127.0.0.1:9464{path}")])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts twilld on node `i` (1-based) and waits for its subnet file.
    pub fn start_daemon(&mut self, i: u8) {
        let endpoint = self.etcd.endpoint.clone();
        let (resync, ttl) = (
            self.resync_secs.to_string(),
            self.lease_ttl_secs.to_string(),
        );
        let node = &mut self.nodes[usize::from(i - 1)];
        assert!(
            node.daemon.is_none(),
            "twilld already runs on {}",
            node.name()
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.log_file())
            .expect("log file");
        let log2 = log.try_clone().expect("log file");
        let child = node
            .ns
            .command(bin_dir().join("twilld"))
            .args([
                "--etcd-endpoints",
                &endpoint,
                "--etcd-prefix",
                PREFIX,
                "--subnet-file",
                &node.subnet_file().to_string_lossy(),
                "--node-name",
                &node.name(),
                "--metrics-addr",
                "127.0.0.1:9464",
                "--resync-secs",
                &resync,
                "--lease-ttl-secs",
                &ttl,
            ])
            .args(&self.daemon_args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .expect("spawn twilld (cargo build --workspace builds it)");
        node.daemon = Some(child);
    }

    /// Starts every daemon, then waits until each has written its subnet file.
    pub fn start_daemons(&mut self) {
        for i in 1..=self.nodes.len() as u8 {
            self.start_daemon(i);
        }
        for i in 1..=self.nodes.len() as u8 {
            self.wait_subnet_file(i);
        }
    }

    /// Waits until node `i` has a subnet file.
    pub fn wait_subnet_file(&self, i: u8) -> twill_subnet_file::SubnetFile {
        let node = &self.nodes[usize::from(i - 1)];
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(f) = twill_subnet_file::SubnetFile::read(&node.subnet_file()) {
                return f;
            }
            assert!(
                Instant::now() < deadline,
                "{} wrote no subnet file in 30 s; log:\n{}",
                node.name(),
                node.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Creates a pod on node `i` through the twill CNI plugin and returns its index in
    /// `self.pods`.
    pub fn add_pod(&mut self, i: u8) -> usize {
        let node = &self.nodes[usize::from(i - 1)];
        let n = self.pods.iter().filter(|p| p.node == i).count();
        let id = format!("pod-{i}-{n}");
        let ns = Netns::new("twp");
        let out = Invocation::new(
            &bin_dir().join("twill"),
            "ADD",
            &id,
            &ns.path_str(),
            "eth0",
            &bin_dir().to_string_lossy(),
        )
        .in_ns(&node.ns)
        .run(&node.cni_config().to_string());
        let result = out.ok();
        let ip: Ipv4Addr = twill_testutil::first_ip(&result)
            .parse()
            .unwrap_or_else(|_| panic!("no IPv4 address in {result}"));
        self.pods.push(Pod {
            node: i,
            id,
            ns,
            ip,
        });
        self.pods.len() - 1
    }

    /// Runs DEL for pod `p` (the pod namespace stays until the pod value drops).
    pub fn del_pod(&self, p: usize) {
        let pod = &self.pods[p];
        let node = &self.nodes[usize::from(pod.node - 1)];
        Invocation::new(
            &bin_dir().join("twill"),
            "DEL",
            &pod.id,
            &pod.ns.path_str(),
            "eth0",
            &bin_dir().to_string_lossy(),
        )
        .in_ns(&node.ns)
        .run(&node.cni_config().to_string())
        .ok();
    }

    /// Pings `to` from pod `from` once (1 s timeout); true when answered.
    pub fn ping(&self, from: usize, to: Ipv4Addr) -> bool {
        twill_testutil::require_tool("ping", "iputils-ping");
        self.pods[from]
            .ns
            .command("ping")
            .args(["-c", "1", "-W", "1", &to.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Every pod pings every other pod; returns the pairs that failed (after `retries`
    /// attempts each, so routes still being programmed are not counted as failures).
    pub fn ping_mesh(&self, retries: u32) -> Vec<(String, String)> {
        let mut failed = Vec::new();
        for a in 0..self.pods.len() {
            for b in 0..self.pods.len() {
                if a == b {
                    continue;
                }
                let ok = (0..retries.max(1)).any(|_| self.ping(a, self.pods[b].ip));
                if !ok {
                    failed.push((self.pods[a].id.clone(), self.pods[b].id.clone()));
                }
            }
        }
        failed
    }

    /// `ip route show proto 116` on node `i`: the routes twilld owns, sorted.
    pub fn owned_routes(&self, i: u8) -> Vec<String> {
        let mut v: Vec<String> = self.nodes[usize::from(i - 1)]
            .ns
            .ip(&["route", "show", "proto", "116"])
            .lines()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect();
        v.sort();
        v
    }

    /// Neighbour and FDB entries on `dev` of node `i`, sorted (empty when no such device).
    pub fn overlay_entries(&self, i: u8, dev: &str) -> Vec<String> {
        let ns = &self.nodes[usize::from(i - 1)].ns;
        let neigh = ns.exec(&["ip", "neigh", "show", "dev", dev]);
        let fdb = ns.exec(&["bridge", "fdb", "show", "dev", dev]);
        let mut v: Vec<String> = String::from_utf8_lossy(&neigh.stdout)
            .lines()
            .chain(String::from_utf8_lossy(&fdb.stdout).lines())
            .map(|l| l.trim().to_owned())
            .filter(|l| l.contains("PERMANENT") || l.contains("dst "))
            .collect();
        v.sort();
        v
    }

    /// Waits until `check` holds, up to `timeout`; panics with `what` and the daemon logs.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Cluster) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        while !check(self) {
            if Instant::now() > deadline {
                let logs: Vec<String> = self
                    .nodes
                    .iter()
                    .map(|n| format!("--- {} ---\n{}", n.name(), n.log()))
                    .collect();
                panic!("timed out waiting for {what}\n{}", logs.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The node directory (subnet file, IPAM data, logs).
    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }
}

/// The last `n` lines of `s`.
fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.background {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in &mut self.nodes {
            n.kill_daemon();
        }
    }
}
