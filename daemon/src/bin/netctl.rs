//! `netctl`: what an operator runs when pods cannot reach each other.
//!
//! - `netctl leases`: every subnet lease in etcd (subnet, node address, backend, TTL left).
//! - `netctl status`: this node as twilld sees it (lease, backend, peers seen against routes
//!   programmed, unreachable peers, last errors), from twilld's `/status`.
//! - `netctl routes`: what twilld owns in the kernel against what it should own, entry by entry.
//! - `netctl policy list|show NS/NAME|explain SRC DST PORT/PROTO`: NetworkPolicies as this
//!   node enforces them, and why a connection is allowed or denied (from twilld's
//!   `/policy/*`, computed from the same model and compiler that program the kernel).
//!
//! Tables by default, `-o json` for scripts. Every failure says what to do next.

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;
use twilld::backend::apply;
use twilld::lease::registry::Registry;
use twilld::state::Status;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Debug, Parser)]
#[command(
    name = "netctl",
    version,
    about = "Inspect Twill networking on this node"
)]
struct Cli {
    /// etcd endpoints, comma separated (as given to twilld).
    #[arg(
        long,
        global = true,
        env = "TWILL_ETCD_ENDPOINTS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    etcd_endpoints: Vec<String>,
    /// Key prefix of the network config and leases (as given to twilld).
    #[arg(
        long,
        global = true,
        env = "TWILL_ETCD_PREFIX",
        default_value = "/twill/network"
    )]
    etcd_prefix: String,
    /// twilld's --metrics-addr, where /status is served.
    #[arg(
        long,
        global = true,
        env = "TWILL_METRICS_ADDR",
        default_value = "127.0.0.1:9464"
    )]
    daemon: SocketAddr,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value = "table")]
    output: Output,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// All subnet leases in etcd.
    Leases,
    /// This node's lease, backend, peers and recent errors (from twilld).
    Status,
    /// Routes, neighbours and FDB entries twilld owns against what it should own.
    Routes,
    /// NetworkPolicies: list, show one, explain a connection.
    #[command(subcommand)]
    Policy(PolicyCmd),
}

#[derive(Debug, Subcommand)]
enum PolicyCmd {
    /// Every NetworkPolicy: selector, types, rules, selected pods, packets accepted here.
    List,
    /// One policy: selected pods, each rule's resolved peers and ports, nftables objects.
    Show {
        /// NAMESPACE/NAME
        policy: String,
    },
    /// Why SRC can or cannot reach DST: the policies selecting each end, the verdict, the
    /// rule that allowed it, and the nftables rules the packet meets on each node.
    Explain {
        /// Source: NAMESPACE/POD or an address.
        src: String,
        /// Destination: NAMESPACE/POD or an address.
        dst: String,
        /// PORT/PROTO, e.g. 80/tcp (protocol defaults to TCP).
        port: String,
    },
}

fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.len());
            }
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out.push('\n');
        out.push_str(&line(r.clone()));
    }
    out
}

async fn leases(cli: &Cli) -> Result<String, String> {
    let reg = Registry::connect(&cli.etcd_endpoints, &cli.etcd_prefix)
        .await
        .map_err(|e| etcd_hint(cli, e))?;
    let (leases, bad, _) = reg.list().await.map_err(|e| etcd_hint(cli, e))?;
    let mut rows = Vec::new();
    let mut json_rows = Vec::new();
    for l in &leases {
        let ttl = if l.lease_id == 0 {
            None
        } else {
            reg.ttl(l.lease_id).await.map_err(|e| etcd_hint(cli, e))?
        };
        let ttl_text = ttl.map(fmt_secs).unwrap_or_else(|| "-".into());
        rows.push(vec![
            l.subnet.to_string(),
            l.attrs.public_ip.to_string(),
            l.attrs.backend_type.clone(),
            if l.attrs.node_name.is_empty() {
                "-".into()
            } else {
                l.attrs.node_name.clone()
            },
            ttl_text,
        ]);
        json_rows.push(json!({
            "subnet": l.subnet.to_string(), "publicIP": l.attrs.public_ip.to_string(),
            "backend": l.attrs.backend_type, "backendData": l.attrs.backend_data,
            "node": l.attrs.node_name, "ttlSeconds": ttl,
        }));
    }
    Ok(match cli.output {
        Output::Json => json!({"leases": json_rows, "invalid": bad.iter().map(|e| e.to_string()).collect::<Vec<_>>()}).to_string(),
        Output::Table => {
            let mut t = if rows.is_empty() {
                format!("no leases under {}/subnets/ (is twilld running on any node?)", cli.etcd_prefix)
            } else {
                table(&["SUBNET", "NODE IP", "BACKEND", "NODE", "TTL"], &rows)
            };
            for e in bad {
                t.push_str(&format!("\nwarning: {e}"));
            }
            t
        }
    })
}

fn fmt_secs(s: i64) -> String {
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

fn etcd_hint(cli: &Cli, e: impl std::fmt::Display) -> String {
    format!(
        "{e}\nhint: is etcd reachable at {}? pass --etcd-endpoints (or TWILL_ETCD_ENDPOINTS) as given to twilld",
        cli.etcd_endpoints.join(",")
    )
}

/// GETs `path` from twilld; a non-2xx answer's body is the error (twilld writes it for
/// operators).
fn fetch<T: serde::de::DeserializeOwned>(cli: &Cli, path: &str) -> Result<T, String> {
    let url = format!("http://{}{path}", cli.daemon);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent.get(&url).call().map_err(|e| {
        format!(
            "cannot reach twilld at {url}: {e}\nhint: is twilld running on this node? (pass --daemon as its --metrics-addr)"
        )
    })?;
    let code = resp.status();
    let body = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("read twilld's answer to {url}: {e}"))?;
    if !code.is_success() {
        return Err(body.trim_end().to_owned());
    }
    serde_json::from_str::<Value>(&body)
        .and_then(serde_json::from_value)
        .map_err(|e| format!("twilld answered {url} with something unexpected: {e}"))
}

fn fetch_status(cli: &Cli) -> Result<Status, String> {
    fetch(cli, "/status")
}

/// Percent-encodes a query value (pod names and addresses need little, but `/` and `:` must
/// survive).
fn q(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn policy(cli: &Cli, cmd: &PolicyCmd) -> Result<String, String> {
    use twilld::policy::explain::{Explanation, PolicyReport, PolicySummary};
    let json = |v: &dyn erased::Ser| v.to_json();
    match cmd {
        PolicyCmd::List => {
            let list: Vec<PolicySummary> = fetch(cli, "/policy/list")?;
            if let Output::Json = cli.output {
                return Ok(json(&list));
            }
            if list.is_empty() {
                return Ok("no NetworkPolicies: every pod accepts all traffic".into());
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|p| {
                    vec![
                        p.policy.clone(),
                        p.pod_selector.clone(),
                        p.types.join(","),
                        format!("{}/{}", p.ingress_rules, p.egress_rules),
                        format!("{} ({} here)", p.selected_pods, p.local_pods),
                        p.packets.to_string(),
                    ]
                })
                .collect();
            Ok(table(
                &[
                    "POLICY",
                    "POD SELECTOR",
                    "TYPES",
                    "RULES IN/OUT",
                    "PODS",
                    "ACCEPTED PKTS",
                ],
                &rows,
            ))
        }
        PolicyCmd::Show { policy } => {
            let r: PolicyReport = fetch(cli, &format!("/policy/show?policy={}", q(policy)))?;
            if let Output::Json = cli.output {
                return Ok(json(&r));
            }
            let s = &r.summary;
            let mut out = format!(
                "policy:       {}\npod selector: {}\ntypes:        {}\naccepted:     {} packets, {} bytes on this node\nselected pods ({}):",
                s.policy,
                s.pod_selector,
                s.types.join(", "),
                s.packets,
                s.bytes,
                r.selected.len()
            );
            for p in &r.selected {
                out.push_str(&format!("\n  {p}"));
            }
            if r.rules.is_empty() {
                out.push_str("\nrules: none (every connection in the listed directions is denied)");
            }
            for rule in &r.rules {
                out.push_str(&format!("\n{}[{}]:", rule.direction, rule.index));
                let peer_word = if rule.direction == "ingress" {
                    "from"
                } else {
                    "to"
                };
                if rule.peers.is_empty() {
                    out.push_str(&format!("\n  {peer_word}: every peer"));
                }
                for peer in &rule.peers {
                    out.push_str(&format!(
                        "\n  {peer_word}: {} -> {} pods",
                        peer.peer,
                        peer.pods.len()
                    ));
                    for p in &peer.pods {
                        out.push_str(&format!("\n    {p}"));
                    }
                }
                if rule.ports.is_empty() {
                    out.push_str("\n  ports: every port and protocol");
                }
                for port in &rule.ports {
                    out.push_str(&format!("\n  port: {}", port.port));
                    for res in &port.resolved {
                        out.push_str(&format!("\n    {res}"));
                    }
                }
            }
            out.push_str(&format!(
                "\nnftables (table inet twill_policy):\n  chains: {}\n  sets:   {}",
                r.nft.chains.join(" "),
                r.nft.sets.join(" ")
            ));
            Ok(out)
        }
        PolicyCmd::Explain { src, dst, port } => {
            let (num, proto) = port.split_once('/').unwrap_or((port.as_str(), "tcp"));
            let e: Explanation = fetch(
                cli,
                &format!(
                    "/policy/explain?src={}&dst={}&port={}&protocol={}",
                    q(src),
                    q(dst),
                    q(num),
                    q(proto)
                ),
            )?;
            if let Output::Json = cli.output {
                return Ok(json(&e));
            }
            let end = |i: &twilld::policy::explain::EndInfo| match (&i.pod, &i.node) {
                (Some(p), Some(n)) => format!("{p} ({}, node {n})", i.ip),
                (Some(p), None) => format!("{p} ({})", i.ip),
                _ => format!("{} (not a pod)", i.ip),
            };
            let side = |name: &str, s: &twilld::policy::explain::SideReport| {
                let mut out = format!("{name}:");
                if s.isolated_by.is_empty() {
                    out.push_str(" not isolated (no policy selects this end for it): allowed");
                    return out;
                }
                out.push_str(&format!(" isolated by {}", s.isolated_by.join(", ")));
                match &s.allowed_by {
                    Some(r) => out.push_str(&format!("\n  allowed by {r}")),
                    None => out.push_str("\n  DENIED: no rule of these policies matches"),
                }
                out
            };
            let mut out = format!(
                "{} -> {} {}/{}: {}\n{}\n{}",
                end(&e.src),
                end(&e.dst),
                e.port,
                e.protocol,
                if e.allowed { "ALLOWED" } else { "DENIED" },
                side("egress (source side)", &e.egress),
                side("ingress (destination side)", &e.ingress),
            );
            for t in &e.traces {
                out.push_str(&format!(
                    "\nnftables on {} ({}):",
                    t.node,
                    if t.accepted { "accepted" } else { "dropped" }
                ));
                if t.rules.is_empty() {
                    out.push_str("\n  no rule applies: neither end is isolated on this node");
                }
                for r in &t.rules {
                    out.push_str(&format!("\n  {r}"));
                }
            }
            if !e.consistent {
                out.push_str("\nwarning: the nftables verdict differs from the Kubernetes verdict: this is a Twill bug, please report it with `netctl policy explain -o json`");
            }
            Ok(out)
        }
    }
}

/// JSON rendering for any serializable answer.
mod erased {
    pub trait Ser {
        fn to_json(&self) -> String;
    }
    impl<T: serde::Serialize> Ser for T {
        fn to_json(&self) -> String {
            serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
        }
    }
}

fn status(cli: &Cli) -> Result<String, String> {
    let s = fetch_status(cli)?;
    if let Output::Json = cli.output {
        return serde_json::to_string(&status_json(&s)).map_err(|e| e.to_string());
    }
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    let expires = s
        .lease_expires_at
        .map(|t| fmt_secs(t as i64 - twilld::state::now() as i64))
        .unwrap_or_else(|| "-".into());
    let mut out = format!(
        "node:        {}\nlease:       {} ({:?}, expires in {})\nnetwork:     {}\nbackend:     {}\nunderlay:    {} ({})\npeers:       {} seen; programmed: {} routes, {} neighbours, {} fdb entries",
        s.node,
        opt(&s.subnet),
        s.lease_phase,
        expires,
        opt(&s.network),
        s.backend,
        s.underlay,
        s.public_ip,
        s.peers_seen,
        s.routes_programmed,
        s.neighbours_programmed,
        s.fdb_programmed
    );
    if s.subnet.is_none() {
        out.push_str("\nno lease yet: check `netctl leases` and the last errors below");
    }
    for u in &s.unreachable_peers {
        out.push_str(&format!("\nunreachable: {u}"));
    }
    if !s.last_errors.is_empty() {
        out.push_str("\nlast errors:");
        for e in &s.last_errors {
            out.push_str(&format!("\n  {e}"));
        }
    }
    Ok(out)
}

fn status_json(s: &Status) -> Value {
    serde_json::to_value(s).unwrap_or(Value::Null)
}

fn routes(cli: &Cli) -> Result<String, String> {
    let s = fetch_status(cli)?;
    let mut h = twill_net::netlink::Handle::current().map_err(|e| format!("open netlink: {e}"))?;
    let owned = apply::owned(&mut h, s.overlay_dev.as_deref())
        .map_err(|e| format!("read kernel state: {e}"))?;
    let mut rows = Vec::new();
    let mut compare = |kind: &str, want: &[String], have: Vec<String>| {
        let want: BTreeSet<&String> = want.iter().collect();
        let have_set: BTreeSet<&String> = have.iter().collect();
        for w in &want {
            let st = if have_set.contains(w) {
                "ok"
            } else {
                "MISSING"
            };
            rows.push((kind.to_owned(), (*w).clone(), st.to_owned()));
        }
        for h in &have_set {
            if !want.contains(h) {
                rows.push((kind.to_owned(), (*h).clone(), "STALE".to_owned()));
            }
        }
    };
    compare(
        "route",
        &s.desired_routes,
        owned.routes.iter().map(|r| r.to_string()).collect(),
    );
    compare(
        "neigh",
        &s.desired_neighbours,
        owned.neighbours.iter().map(|n| n.to_string()).collect(),
    );
    compare(
        "fdb",
        &s.desired_fdb,
        owned.fdb.iter().map(|f| f.to_string()).collect(),
    );
    Ok(match cli.output {
        Output::Json => json!(
            rows.iter()
                .map(|(k, e, st)| json!({"kind": k, "entry": e, "state": st}))
                .collect::<Vec<_>>()
        )
        .to_string(),
        Output::Table => {
            let bad = rows.iter().filter(|r| r.2 != "ok").count();
            let body: Vec<Vec<String>> =
                rows.into_iter().map(|(k, e, st)| vec![k, e, st]).collect();
            let mut t = table(&["KIND", "ENTRY", "STATE"], &body);
            t.push_str(&if bad == 0 {
                "\nkernel matches twilld's plan".to_owned()
            } else {
                format!("\n{bad} entries differ: twilld repairs them on its next reconcile; if they persist see `netctl status` errors")
            });
            t
        }
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Leases => leases(&cli).await,
        Cmd::Status => status(&cli),
        Cmd::Routes => routes(&cli),
        Cmd::Policy(ref p) => policy(&cli, p),
    };
    match result {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("netctl: {e}");
            ExitCode::FAILURE
        }
    }
}
