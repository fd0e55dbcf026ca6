//! `twilld`: flags, logging and signals around [`twilld::run::run`].

use clap::Parser;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::watch;

/// Twill's per-node daemon: leases this node's pod subnet from etcd and connects it to the
/// other nodes.
#[derive(Debug, Parser)]
#[command(name = "twilld", version)]
struct Flags {
    /// etcd endpoints, comma separated.
    #[arg(
        long,
        env = "TWILL_ETCD_ENDPOINTS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    etcd_endpoints: Vec<String>,
    /// Key prefix of the network config and leases.
    #[arg(long, env = "TWILL_ETCD_PREFIX", default_value = "/twill/network")]
    etcd_prefix: String,
    /// Underlay interface (default: the one holding the IPv4 default route).
    #[arg(long)]
    iface: Option<String>,
    /// Address peers reach this node at (default: the first IPv4 address of --iface).
    #[arg(long)]
    public_ip: Option<Ipv4Addr>,
    /// Where the node subnet is published for the twill CNI plugin.
    #[arg(long, default_value = twill_subnet_file::DEFAULT_PATH)]
    subnet_file: PathBuf,
    /// Serve /metrics, /healthz and /status (read by netctl) here.
    #[arg(long, env = "TWILL_METRICS_ADDR", default_value = "127.0.0.1:9464")]
    metrics_addr: SocketAddr,
    /// This node's name (default: the hostname).
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,
    /// Masquerade pod traffic leaving the cluster network.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    ip_masq: bool,
    /// Subnet lease TTL in seconds (renewed every third of it, at most hourly).
    #[arg(long, default_value_t = 24 * 3600)]
    lease_ttl_secs: u64,
    /// Full reconcile interval in seconds, in addition to reacting to every peer change.
    #[arg(long, default_value_t = 60)]
    resync_secs: u64,
    /// Log as JSON lines (for log collectors); the level comes from RUST_LOG.
    #[arg(long)]
    log_json: bool,
    /// Read Kubernetes objects (Namespaces, Pods, NetworkPolicies, ...) from every *.yaml,
    /// *.yml and *.json file in this directory, following changes; enables the
    /// NetworkPolicy engine.
    #[arg(long, conflicts_with = "kubeconfig")]
    manifests: Option<PathBuf>,
    /// Watch Kubernetes objects through the API server of this kubeconfig's current
    /// context; enables the NetworkPolicy engine. In a pod (KUBERNETES_SERVICE_HOST set)
    /// the service account is used without this flag.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Log packets NetworkPolicy denies to this nflog group (rate-limited per namespace
    /// and direction by --policy-log-rate).
    #[arg(long, value_name = "NFLOG_GROUP", num_args = 0..=1, default_missing_value = "100")]
    policy_log: Option<u16>,
    /// Denied packets logged per second, per namespace and direction.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    policy_log_rate: u32,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if flags.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
    let opts = twilld::run::Options {
        etcd_endpoints: flags.etcd_endpoints,
        etcd_prefix: flags.etcd_prefix,
        iface: flags.iface,
        public_ip: flags.public_ip,
        subnet_file: flags.subnet_file,
        metrics_addr: Some(flags.metrics_addr),
        node_name: flags.node_name.unwrap_or_else(hostname),
        ip_masq: flags.ip_masq,
        lease_ttl: Duration::from_secs(flags.lease_ttl_secs.max(1)),
        resync: Duration::from_secs(flags.resync_secs.max(1)),
        source: match (flags.manifests, flags.kubeconfig) {
            (Some(dir), _) => Some(twilld::source::SourceConfig::Manifests(dir)),
            (None, Some(path)) => Some(twilld::source::SourceConfig::Kubeconfig(path)),
            (None, None) if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() => {
                Some(twilld::source::SourceConfig::InCluster)
            }
            (None, None) => None,
        },
        policy_log: flags
            .policy_log
            .map(|group| twilld::policy::compile::LogDenied {
                group,
                rate: flags.policy_log_rate,
            }),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        stop_tx.send_replace(true);
    });
    twilld::run::run(opts, stop_rx).await
}
