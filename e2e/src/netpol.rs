//! The NetworkPolicy conformance harness: the upstream Kubernetes cases replayed against a
//! real multi-node [`Cluster`], through the same manifest directory an operator would use.
//!
//! Why it is built this way:
//! - **The manifest directory is the API server.** The harness keeps the objects as the API
//!   server would hold them (a [`World`]: namespaces, pods, policies) and renders it to one
//!   file per object (`ns-x.yaml`, `pod-x-a.yaml`, `netpol-x-<name>.yaml`), each written
//!   atomically (dotfile temp name, then rename in the same directory), so a daemon never
//!   reads half a file. Only files whose bytes change are rewritten.
//! - **No sleeps.** A change counts as enforced when every node's `/status` reports the
//!   sha256 of every file now in the directory (and no other), a synced source, and a policy
//!   generation equal to the source generation ([`policy_sync_problem`], the pure check behind
//!   [`Cluster::wait_policies_applied`]).
//! - **Probes are parallel.** A denied cell costs a whole timeout, so each source pod runs one
//!   `netpol-agent probe` for all its targets of a step at once, and all sources run at
//!   the same time: a step costs about one timeout, whatever its size. An allowed cell that
//!   fails is retried once (and reported); a denied cell is never retried.
//! - **Addresses are real.** The cases' expectations were computed for assumed pod addresses;
//!   the pods here get whatever the CNI plugin gives them, so each `ipBlock` CIDR that is an
//!   assumed pod's /32 is rewritten to that pod's real /32 ([`IpBlockRewrite`]), and any other
//!   block must contain the whole cluster network (then the cells do not depend on the
//!   addresses). Anything else is an error, so a future case that needs recomputed cells fails
//!   loudly instead of passing by accident.
//! - **SCTP is not probed** (this kernel has no SCTP sockets); those probes are counted as
//!   skipped. The compiler's own tests cover SCTP rules.
//!
//! YAML is emitted by a tiny block-style writer ([`to_yaml`]) with every string and key
//! double-quoted (JSON escapes are valid YAML escapes), so no value can be misread as a
//! number, boolean or null.

use crate::cluster::Cluster;
use ipnetwork::Ipv4Network;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Labels of a namespace or pod.
pub type Labels = BTreeMap<String, String>;

/// What can go wrong in the harness (not in the system under test: those are mismatches).
#[derive(Debug, thiserror::Error)]
pub enum NetpolError {
    #[error("manifest {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parse conformance cases: {0}")]
    Cases(#[from] serde_json::Error),
    #[error("action {action}: {reason}")]
    Action { action: String, reason: String },
    #[error("policy {policy}: {reason}")]
    IpBlock { policy: String, reason: String },
    #[error("case {case} step {step}: {reason}")]
    Case {
        case: String,
        step: usize,
        reason: String,
    },
    #[error("probe from {pod}: {reason}")]
    Probe { pod: String, reason: String },
    #[error("cluster: {0}")]
    Cluster(String),
    /// The daemons did not apply a change in time (with every node's status).
    #[error("{0}")]
    Apply(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> NetpolError + '_ {
    move |source| NetpolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

// ---------------------------------------------------------------------------------------
// Manifest files

/// Whether twilld reads a file of this name: `*.yaml`, `*.yml`, `*.json`, not hidden (our
/// temp files are dotfiles), not an editor's lock file (`#...`).
pub fn is_manifest_name(name: &str) -> bool {
    !name.starts_with('.')
        && !name.starts_with('#')
        && [".yaml", ".yml", ".json"]
            .iter()
            .any(|ext| name.len() > ext.len() && name.ends_with(ext))
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every manifest file in `dir` (see [`is_manifest_name`]) with the SHA-256 of its bytes.
pub fn manifest_hashes(dir: &Path) -> Result<BTreeMap<String, String>, NetpolError> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if !is_manifest_name(&name) || !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        out.insert(name, sha256_hex(&bytes));
    }
    Ok(out)
}

/// Writes `dir/name` atomically: `dir/.name.tmp`, then a rename in the same directory.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), NetpolError> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(io_err(&path))
}

/// Removes `dir/name`; a missing file is success.
pub fn remove_manifest(dir: &Path, name: &str) -> Result<(), NetpolError> {
    let path = dir.join(name);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&path)(e)),
        _ => Ok(()),
    }
}

/// Renders `v` as block-style YAML; strings and keys are always double-quoted.
pub fn to_yaml(v: &Value) -> String {
    match v {
        Value::Object(m) if !m.is_empty() => yaml_lines(v).join("\n") + "\n",
        Value::Array(a) if !a.is_empty() => yaml_lines(v).join("\n") + "\n",
        _ => yaml_scalar(v) + "\n",
    }
}

fn yaml_scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => Value::String(s.clone()).to_string(),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
    }
}

fn is_block(v: &Value) -> bool {
    match v {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    }
}

/// Lines of a non-empty collection, at indentation 0.
fn yaml_lines(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    match v {
        Value::Object(m) => {
            for (k, val) in m {
                let key = Value::String(k.clone()).to_string();
                if is_block(val) {
                    out.push(format!("{key}:"));
                    out.extend(yaml_lines(val).into_iter().map(|l| format!("  {l}")));
                } else {
                    out.push(format!("{key}: {}", yaml_scalar(val)));
                }
            }
        }
        Value::Array(a) => {
            for item in a {
                if is_block(item) {
                    let mut lines = yaml_lines(item).into_iter();
                    if let Some(first) = lines.next() {
                        out.push(format!("- {first}"));
                    }
                    out.extend(lines.map(|l| format!("  {l}")));
                } else {
                    out.push(format!("- {}", yaml_scalar(item)));
                }
            }
        }
        _ => out.push(yaml_scalar(v)),
    }
    out
}

// ---------------------------------------------------------------------------------------
// The wait contract

/// Why node `status` (twilld's `/status` JSON) does not yet show the manifest directory
/// whose files hash to `expected` (file name -> hex SHA-256) as applied; `None` when it does.
pub fn policy_sync_problem(status: &Value, expected: &BTreeMap<String, String>) -> Option<String> {
    if status.is_null() {
        return Some("/status does not answer".into());
    }
    let st: twilld::state::Status = match serde_json::from_value(status.clone()) {
        Ok(s) => s,
        Err(e) => return Some(format!("/status unreadable: {e}")),
    };
    let Some(src) = st.source else {
        return Some("no source in /status (twilld not started with --manifests?)".into());
    };
    let mut problems = Vec::new();
    for (name, sha) in expected {
        match src.files.get(name) {
            None => problems.push(format!("{name} not read yet")),
            Some(f) if f.sha256 != *sha => {
                problems.push(format!("{name} read in an older version"))
            }
            Some(_) => {}
        }
    }
    let gone: Vec<&str> = src
        .files
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .map(String::as_str)
        .collect();
    if !gone.is_empty() {
        problems.push(format!("still lists removed files {gone:?}"));
    }
    if !src.synced {
        problems.push("source not synced".into());
    }
    match st.policy {
        None => problems.push("no policy engine in /status".into()),
        Some(p) => {
            if let Some(e) = p.error {
                problems.push(format!("policy error: {e}"));
            }
            if p.applied_generation != src.generation {
                problems.push(format!(
                    "applied generation {} != source generation {}",
                    p.applied_generation, src.generation
                ));
            }
        }
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

// ---------------------------------------------------------------------------------------
// Objects

/// One pod of the fixture: where it runs and the address the CNI plugin gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodObject {
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    /// 1-based node index (`spec.nodeName: node<i>`).
    pub node: u8,
    pub ip: Ipv4Addr,
    /// Index in [`Cluster::pods`].
    pub index: usize,
}

impl PodObject {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The ports every pod serves, as `(port, protocol)`.
pub const SERVED: [(u16, &str); 6] = [
    (80, "TCP"),
    (80, "UDP"),
    (81, "TCP"),
    (81, "UDP"),
    (80, "SCTP"),
    (81, "SCTP"),
];

/// A Namespace manifest. `kubernetes.io/metadata.name` is left to the reader, as the API
/// server adds it.
pub fn namespace_manifest(name: &str, labels: &Labels) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": labels},
    })
}

/// A Pod manifest as the API server reports a running pod: scheduled on `node<i>`, one
/// container per served port named `serve-<port>-<proto>`, `status.podIP(s)` set.
pub fn pod_manifest(p: &PodObject) -> Value {
    let containers: Vec<Value> = SERVED
        .iter()
        .map(|(port, proto)| {
            let suffix = format!("{port}-{}", proto.to_lowercase());
            json!({
                "name": format!("cont-{suffix}"),
                "image": "netpol-agent",
                "ports": [{"containerPort": port, "name": format!("serve-{suffix}"), "protocol": proto}],
            })
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": p.name, "namespace": p.namespace, "labels": p.labels},
        "spec": {"nodeName": format!("node{}", p.node), "containers": containers},
        "status": {
            "phase": "Running",
            "hostIP": format!("{}.{}", crate::cluster::UNDERLAY, p.node),
            "podIP": p.ip.to_string(),
            "podIPs": [{"ip": p.ip.to_string()}],
        },
    })
}

/// The objects the cluster's "API server" holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct World {
    pub namespaces: BTreeMap<String, Labels>,
    /// By `namespace/name`.
    pub pods: BTreeMap<String, PodObject>,
    /// By (namespace, name).
    pub policies: BTreeMap<(String, String), Value>,
}

impl World {
    /// The manifest directory's content: file name -> YAML.
    pub fn files(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (name, labels) in &self.namespaces {
            out.insert(
                format!("ns-{name}.yaml"),
                to_yaml(&namespace_manifest(name, labels)),
            );
        }
        for p in self.pods.values() {
            out.insert(
                format!("pod-{}-{}.yaml", p.namespace, p.name),
                to_yaml(&pod_manifest(p)),
            );
        }
        for ((ns, name), pol) in &self.policies {
            out.insert(format!("netpol-{ns}-{name}.yaml"), to_yaml(pol));
        }
        out
    }

    /// Makes the manifest files in `dir` equal to [`World::files`]: changed files are
    /// rewritten atomically, files of objects that are gone are removed. Returns how many
    /// files were written or removed.
    pub fn sync_to(&self, dir: &Path) -> Result<usize, NetpolError> {
        let current = manifest_hashes(dir)?;
        let desired = self.files();
        let mut changes = 0;
        for (name, yaml) in &desired {
            if current.get(name) != Some(&sha256_hex(yaml.as_bytes())) {
                write_atomic(dir, name, yaml.as_bytes())?;
                changes += 1;
            }
        }
        for name in current.keys().filter(|n| !desired.contains_key(*n)) {
            remove_manifest(dir, name)?;
            changes += 1;
        }
        Ok(changes)
    }

    /// Applies one action of the conformance format. `fixture` is the world at the start
    /// (pods can only be re-created from it: each needs a real namespace and agent);
    /// policies go through `rewrite` (see [`IpBlockRewrite`]).
    pub fn apply(
        &mut self,
        action: &Value,
        fixture: &World,
        rewrite: &IpBlockRewrite,
    ) -> Result<(), NetpolError> {
        let kind = action["action"].as_str().unwrap_or_default();
        let err = |reason: String| NetpolError::Action {
            action: kind.to_owned(),
            reason,
        };
        let text = |field: &str| {
            action[field]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| err(format!("missing string field {field:?}")))
        };
        let labels = || -> Result<Labels, NetpolError> {
            serde_json::from_value(action["labels"].clone())
                .map_err(|e| err(format!("labels: {e}")))
        };
        match kind {
            "create_policy" | "update_policy" => {
                let mut policy = action["policy"].clone();
                let ns = policy["metadata"]["namespace"].as_str().unwrap_or_default();
                let name = policy["metadata"]["name"].as_str().unwrap_or_default();
                if ns.is_empty() || name.is_empty() {
                    return Err(err("policy without metadata.namespace/name".into()));
                }
                let key = (ns.to_owned(), name.to_owned());
                let (ns, name) = (key.0.clone(), key.1.clone());
                rewrite.rewrite_policy(&mut policy)?;
                let exists = self.policies.contains_key(&key);
                if kind == "create_policy" && exists {
                    return Err(err(format!("policy {ns}/{name} already exists")));
                }
                if kind == "update_policy" && !exists {
                    return Err(err(format!("policy {ns}/{name} does not exist")));
                }
                self.policies.insert(key, policy);
            }
            "delete_policy" => {
                let key = (text("namespace")?, text("name")?);
                if self.policies.remove(&key).is_none() {
                    return Err(err(format!("no policy {}/{}", key.0, key.1)));
                }
            }
            "delete_all_policies" => self.policies.clear(),
            "add_namespace_labels" | "set_namespace_labels" => {
                let ns = text("namespace")?;
                let new = labels()?;
                let l = self
                    .namespaces
                    .get_mut(&ns)
                    .ok_or_else(|| err(format!("no namespace {ns}")))?;
                if kind == "set_namespace_labels" {
                    l.clear();
                }
                l.extend(new);
            }
            "add_pod_labels" | "set_pod_labels" => {
                let pod = text("pod")?;
                let new = labels()?;
                let p = self
                    .pods
                    .get_mut(&pod)
                    .ok_or_else(|| err(format!("no pod {pod}")))?;
                if kind == "set_pod_labels" {
                    p.labels.clear();
                }
                p.labels.extend(new);
            }
            "create_namespace" => {
                let ns = text("namespace")?;
                let l = if action["labels"].is_null() {
                    Labels::from([("ns".to_owned(), ns.clone())])
                } else {
                    labels()?
                };
                if self.namespaces.insert(ns.clone(), l).is_some() {
                    return Err(err(format!("namespace {ns} already exists")));
                }
            }
            "delete_namespace" => {
                let ns = text("namespace")?;
                if self.namespaces.remove(&ns).is_none() {
                    return Err(err(format!("no namespace {ns}")));
                }
                self.pods.retain(|_, p| p.namespace != ns);
                self.policies.retain(|(n, _), _| *n != ns);
            }
            "create_pod" => {
                let pod = text("pod")?;
                let mut p = fixture.pods.get(&pod).cloned().ok_or_else(|| {
                    err(format!(
                        "pod {pod} is not in this cluster's fixture (each pod needs a namespace and an agent)"
                    ))
                })?;
                if !action["labels"].is_null() {
                    p.labels = labels()?;
                }
                if !self.namespaces.contains_key(&p.namespace) {
                    return Err(err(format!("no namespace {}", p.namespace)));
                }
                if self.pods.insert(pod.clone(), p).is_some() {
                    return Err(err(format!("pod {pod} already exists")));
                }
            }
            "delete_pod" => {
                let pod = text("pod")?;
                if self.pods.remove(&pod).is_none() {
                    return Err(err(format!("no pod {pod}")));
                }
            }
            other => return Err(err(format!("unknown action {other:?}"))),
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// ipBlock addresses

/// Maps the cases' assumed pod addresses to the real ones in `ipBlock` CIDRs.
#[derive(Debug, Clone)]
pub struct IpBlockRewrite {
    /// The cluster's pod network; a block containing all of it needs no rewriting.
    pub cluster: Ipv4Network,
    /// Assumed address -> (pod key, its real address if this cluster has that pod).
    pub pods: BTreeMap<Ipv4Addr, (String, Option<Ipv4Addr>)>,
}

impl IpBlockRewrite {
    /// `assumed`: pod key -> assumed address (`model.pod_ips_assumed`); `actual`: the pods
    /// of this cluster.
    pub fn new(
        cluster: Ipv4Network,
        assumed: &BTreeMap<String, Ipv4Addr>,
        actual: &BTreeMap<String, PodObject>,
    ) -> IpBlockRewrite {
        let pods = assumed
            .iter()
            .map(|(key, ip)| (*ip, (key.clone(), actual.get(key).map(|p| p.ip))))
            .collect();
        IpBlockRewrite { cluster, pods }
    }

    /// The CIDR to use instead of `cidr`, or why the case's cells cannot hold here.
    pub fn rewrite_cidr(&self, cidr: &str) -> Result<String, String> {
        let net: Ipv4Network = cidr
            .parse()
            .map_err(|e| format!("ipBlock {cidr:?} is not an IPv4 CIDR: {e}"))?;
        let pod = if net.prefix() == 32 {
            self.pods.get(&net.ip())
        } else {
            None
        };
        if let Some((key, real)) = pod {
            return match real {
                Some(ip) => Ok(format!("{ip}/32")),
                None => Err(format!(
                    "ipBlock {cidr} is the assumed address of {key}, a pod this cluster does not have"
                )),
            };
        }
        if net.prefix() <= self.cluster.prefix() && net.contains(self.cluster.network()) {
            return Ok(cidr.to_owned());
        }
        Err(format!(
            "ipBlock {cidr} is neither an assumed pod /32 nor a block containing the cluster network {}: its expected cells would need recomputing for the real pod addresses",
            self.cluster
        ))
    }

    /// Rewrites every `ipBlock` (`cidr` and `except`) in `policy`.
    pub fn rewrite_policy(&self, policy: &mut Value) -> Result<(), NetpolError> {
        let name = format!(
            "{}/{}",
            policy["metadata"]["namespace"].as_str().unwrap_or("?"),
            policy["metadata"]["name"].as_str().unwrap_or("?")
        );
        self.walk(policy).map_err(|reason| NetpolError::IpBlock {
            policy: name,
            reason,
        })
    }

    fn walk(&self, v: &mut Value) -> Result<(), String> {
        match v {
            Value::Object(m) => {
                if let Some(Value::Object(block)) = m.get_mut("ipBlock") {
                    self.rewrite_block(block)?;
                }
                for (k, child) in m.iter_mut() {
                    if k != "ipBlock" {
                        self.walk(child)?;
                    }
                }
            }
            Value::Array(a) => {
                for child in a {
                    self.walk(child)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn rewrite_block(&self, block: &mut Map<String, Value>) -> Result<(), String> {
        match block.get_mut("cidr") {
            Some(Value::String(c)) => *c = self.rewrite_cidr(c)?,
            _ => return Err("ipBlock without a cidr string".into()),
        }
        if let Some(except) = block.get_mut("except") {
            let Value::Array(list) = except else {
                return Err("ipBlock except is not a list".into());
            };
            for e in list {
                match e {
                    Value::String(c) => *c = self.rewrite_cidr(c)?,
                    _ => return Err("ipBlock except entry is not a string".into()),
                }
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The conformance file

/// `netpol-upstream.json` (fields the harness does not use are ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct Conformance {
    pub model: ConformanceModel,
    pub cases: Vec<Case>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ConformanceModel {
    pub namespaces: BTreeMap<String, Labels>,
    pub pod_ips_assumed: BTreeMap<String, Ipv4Addr>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Case {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub pods: Vec<String>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Step {
    pub actions: Vec<Value>,
    pub pods: Vec<String>,
    pub probes: Vec<Probe>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Probe {
    pub port: u16,
    pub protocol: String,
    pub rows: Vec<String>,
}

impl Conformance {
    pub fn parse(text: &str) -> Result<Conformance, NetpolError> {
        Ok(serde_json::from_str(text)?)
    }

    /// Every policy of every case, as written in the file.
    pub fn policies(&self) -> impl Iterator<Item = (&Case, &Value)> {
        self.cases.iter().flat_map(|c| {
            c.steps
                .iter()
                .flat_map(|s| s.actions.iter())
                .filter(|a| !a["policy"].is_null())
                .map(move |a| (c, &a["policy"]))
        })
    }

    /// Every pod a case or step names.
    pub fn pods_named(&self) -> BTreeSet<&str> {
        self.cases
            .iter()
            .flat_map(|c| {
                c.pods
                    .iter()
                    .chain(c.steps.iter().flat_map(|s| s.pods.iter()))
                    .map(String::as_str)
            })
            .collect()
    }
}

/// A transport protocol of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    pub fn parse(s: &str) -> Option<Proto> {
        match s {
            "TCP" => Some(Proto::Tcp),
            "UDP" => Some(Proto::Udp),
            "SCTP" => Some(Proto::Sctp),
            _ => None,
        }
    }

    /// As the agent spells it (`tcp`, `udp`, `sctp`).
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

/// One cell of a reachability matrix.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cell {
    pub src: String,
    pub dst: String,
    pub port: u16,
    pub proto: Proto,
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} {}->{}",
            self.port,
            self.proto.as_str(),
            self.src,
            self.dst
        )
    }
}

/// The cells of a step to probe, with the expected outcome (`true`: allowed); pod-to-self
/// cells are left out. Returns the cells and how many SCTP cells were skipped.
pub fn step_cells(step: &Step) -> Result<(Vec<(Cell, bool)>, usize), String> {
    let n = step.pods.len();
    let mut cells = Vec::new();
    let mut sctp = 0;
    for p in &step.probes {
        let proto = Proto::parse(&p.protocol)
            .ok_or_else(|| format!("unknown protocol {:?}", p.protocol))?;
        if p.rows.len() != n || p.rows.iter().any(|r| r.len() != n) {
            return Err(format!(
                "{}/{}: matrix is not {n}x{n}",
                p.port,
                proto.as_str()
            ));
        }
        for (i, row) in p.rows.iter().enumerate() {
            for (j, ch) in row.chars().enumerate() {
                if i == j {
                    continue;
                }
                let expected = match ch {
                    '1' => true,
                    '0' => false,
                    other => return Err(format!("matrix cell {other:?} is not 0 or 1")),
                };
                if proto == Proto::Sctp {
                    sctp += 1;
                    continue;
                }
                let cell = Cell {
                    src: step.pods[i].clone(),
                    dst: step.pods[j].clone(),
                    port: p.port,
                    proto,
                };
                cells.push((cell, expected));
            }
        }
    }
    Ok((cells, sctp))
}

// ---------------------------------------------------------------------------------------
// Reports

/// A cell whose outcome differs from the expectation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub case: String,
    /// 1-based.
    pub step: usize,
    pub cell: Cell,
    pub expected: bool,
    pub got: bool,
}

fn verdict(allowed: bool) -> &'static str {
    if allowed { "allowed" } else { "denied" }
}

impl fmt::Display for Mismatch {
    /// `case step port/proto src->dst expected X got Y`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} step {} {} expected {} got {}",
            self.case,
            self.step,
            self.cell,
            verdict(self.expected),
            verdict(self.got)
        )
    }
}

/// What one case did.
#[derive(Debug, Clone, Default)]
pub struct CaseReport {
    pub id: String,
    pub steps: usize,
    /// Cells probed (TCP and UDP, pod-to-self excluded).
    pub cells: usize,
    pub sctp_skipped: usize,
    pub mismatches: Vec<Mismatch>,
    /// Allowed cells that failed once and passed on the retry.
    pub retried: Vec<String>,
    /// Time spent waiting for the daemons to apply changes.
    pub waited: Duration,
    pub elapsed: Duration,
}

impl fmt::Display for CaseReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} step(s), {} cells checked, {} mismatches",
            self.id,
            self.steps,
            self.cells,
            self.mismatches.len()
        )?;
        if self.sctp_skipped > 0 {
            write!(f, ", {} SCTP cells not probed", self.sctp_skipped)?;
        }
        if !self.retried.is_empty() {
            write!(f, ", retried: {}", self.retried.join(", "))?;
        }
        write!(
            f,
            " [{:.1} s, {:.1} s waiting for apply]",
            self.elapsed.as_secs_f64(),
            self.waited.as_secs_f64()
        )
    }
}

// ---------------------------------------------------------------------------------------
// The harness

/// How long the harness waits for every node to apply a change. A change takes tens of
/// milliseconds; this only bounds a broken daemon.
pub const APPLY_TIMEOUT: Duration = Duration::from_secs(15);

/// How to build a policy test cluster.
#[derive(Debug, Clone)]
pub struct HarnessOptions {
    pub nodes: u8,
    /// flannel-style net-conf.json.
    pub net_conf: String,
    /// Namespaces and their labels (without `kubernetes.io/metadata.name`).
    pub namespaces: Vec<(String, Labels)>,
    /// `(namespace, pod name, node)`; each pod is labelled `pod=<name>`.
    pub pods: Vec<(String, String, u8)>,
    /// Per-probe timeout (a denied cell costs this much).
    pub probe_timeout: Duration,
}

/// A running cluster with the policy fixture in place.
pub struct Harness {
    pub cluster: Cluster,
    /// The objects at the start (what a reset restores).
    pub fixture: World,
    /// The objects now.
    pub world: World,
    pub probe_timeout: Duration,
    pub agent: PathBuf,
}

impl fmt::Debug for Harness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Harness")
            .field("pods", &self.world.pods.len())
            .finish()
    }
}

impl Harness {
    /// Cluster, daemons, pods with their agents serving, the fixture's manifests applied
    /// and every pod reaching every other pod (no policies yet).
    pub fn start(opts: &HarnessOptions) -> Result<Harness, NetpolError> {
        let agent = twill_testutil::bin_dir().join("netpol-agent");
        if !agent.is_file() {
            return Err(NetpolError::Cluster(format!(
                "{} is missing: cargo build --workspace --all-targets",
                agent.display()
            )));
        }
        let mut cluster = Cluster::new(opts.nodes, &opts.net_conf);
        cluster.use_manifests();
        cluster.start_daemons();
        let n = usize::from(opts.nodes);
        let peers = n.saturating_sub(1);
        let vxlan = opts.net_conf.contains("vxlan") && !opts.net_conf.contains("DirectRouting");
        cluster.wait_until(
            "routes (and tunnel entries) to every peer on every node",
            Duration::from_secs(30),
            |c| {
                (1..=opts.nodes).all(|i| {
                    c.owned_routes(i).len() == peers
                        && (!vxlan || c.overlay_entries(i, "twill.1").len() == 2 * peers)
                })
            },
        );
        let mut world = World {
            namespaces: opts.namespaces.iter().cloned().collect(),
            ..World::default()
        };
        for (ns, name, node) in &opts.pods {
            if !world.namespaces.contains_key(ns) {
                return Err(NetpolError::Cluster(format!(
                    "pod {ns}/{name}: no namespace {ns}"
                )));
            }
            if *node == 0 || *node > opts.nodes {
                return Err(NetpolError::Cluster(format!(
                    "pod {ns}/{name}: no node{node}"
                )));
            }
            let index = cluster.add_pod(*node);
            cluster.spawn_in_pod(index, &agent, &["serve"], Some("ready"));
            let p = PodObject {
                namespace: ns.clone(),
                name: name.clone(),
                labels: Labels::from([("pod".to_owned(), name.clone())]),
                node: *node,
                ip: cluster.pods[index].ip,
                index,
            };
            world.pods.insert(p.key(), p);
        }
        let h = Harness {
            cluster,
            fixture: world.clone(),
            world,
            probe_timeout: opts.probe_timeout,
            agent,
        };
        h.world.sync_to(&h.cluster.manifests_dir())?;
        h.wait_applied()?;
        h.wait_full_mesh()?;
        h.check_probes_see_drops()?;
        Ok(h)
    }

    /// The probes must tell a dropped cell from an open one (or every "denied" expectation
    /// would pass for the wrong reason): a drop rule for port 80 in one pod's own namespace
    /// (table `inet netpol_selfcheck`, removed again) must turn TCP and UDP 80 to `fail`
    /// after about the probe timeout, while port 81 stays `ok`.
    fn check_probes_see_drops(&self) -> Result<(), NetpolError> {
        let mut keys = self.fixture.pods.keys();
        let (Some(src), Some(dst)) = (keys.next(), keys.next()) else {
            return Ok(());
        };
        let pod = &self.cluster.pods[self.pod(dst)?.index];
        let rules = self.cluster.dir().join("selfcheck.nft");
        std::fs::write(
            &rules,
            "table inet netpol_selfcheck {\n  chain input {\n    type filter hook input priority 0; policy accept;\n    tcp dport 80 drop\n    udp dport 80 drop\n  }\n}\n",
        )
        .map_err(io_err(&rules))?;
        let nft = |args: &[&str]| -> Result<(), NetpolError> {
            let out = pod.ns.command("nft").args(args).output();
            match out {
                Ok(o) if o.status.success() => Ok(()),
                Ok(o) => Err(NetpolError::Cluster(format!(
                    "nft {args:?} in {dst}: {}",
                    String::from_utf8_lossy(&o.stderr)
                ))),
                Err(e) => Err(NetpolError::Cluster(format!("nft {args:?} in {dst}: {e}"))),
            }
        };
        nft(&["-f", &rules.to_string_lossy()])?;
        let cells: Vec<Cell> = [
            (80, Proto::Tcp),
            (80, Proto::Udp),
            (81, Proto::Tcp),
            (81, Proto::Udp),
        ]
        .into_iter()
        .map(|(port, proto)| Cell {
            src: src.clone(),
            dst: dst.clone(),
            port,
            proto,
        })
        .collect();
        let start = Instant::now();
        let got = self.probe(&cells);
        let took = start.elapsed();
        nft(&["delete", "table", "inet", "netpol_selfcheck"])?;
        let got = got?;
        if got != [false, false, true, true] {
            return Err(NetpolError::Cluster(format!(
                "probe self-check: with port 80 dropped in {dst}, {src} got {got:?} for {cells:?} (want fail, fail, ok, ok)"
            )));
        }
        if took < self.probe_timeout {
            return Err(NetpolError::Cluster(format!(
                "probe self-check: dropped cells failed after {took:?}, before the {:?} timeout",
                self.probe_timeout
            )));
        }
        Ok(())
    }

    /// Every pod reaches every other pod on TCP and UDP port 80 (retried for up to 20 s,
    /// while the last routes and neighbours are programmed).
    fn wait_full_mesh(&self) -> Result<(), NetpolError> {
        let keys: Vec<&String> = self.world.pods.keys().collect();
        let mut cells = Vec::new();
        for s in &keys {
            for d in &keys {
                if s != d {
                    for proto in [Proto::Tcp, Proto::Udp] {
                        cells.push(Cell {
                            src: (*s).clone(),
                            dst: (*d).clone(),
                            port: 80,
                            proto,
                        });
                    }
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.probe(&cells)?;
            let failed: Vec<String> = cells
                .iter()
                .zip(&got)
                .filter(|(_, ok)| !**ok)
                .map(|(c, _)| c.to_string())
                .collect();
            if failed.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(NetpolError::Cluster(format!(
                    "pods do not reach each other without policies: {failed:?}"
                )));
            }
        }
    }

    /// Waits (up to [`APPLY_TIMEOUT`]) until every node applied the manifest directory as it
    /// is now. Returns the time waited.
    pub fn wait_applied(&self) -> Result<Duration, NetpolError> {
        self.cluster
            .try_wait_policies_applied(APPLY_TIMEOUT)
            .map_err(NetpolError::Apply)
    }

    /// Writes the current world to the manifest directory.
    pub fn sync(&self) -> Result<usize, NetpolError> {
        self.world.sync_to(&self.cluster.manifests_dir())
    }

    /// Back to the fixture: no policies, the original labels; waits until applied.
    pub fn reset(&mut self) -> Result<Duration, NetpolError> {
        self.world = self.fixture.clone();
        self.sync()?;
        self.wait_applied()
    }

    fn pod(&self, key: &str) -> Result<&PodObject, NetpolError> {
        self.fixture.pods.get(key).ok_or_else(|| {
            NetpolError::Cluster(format!("pod {key} is not in this cluster's fixture"))
        })
    }

    /// Probes `cells` (TCP/UDP only): one agent per source pod, all at once, each probing
    /// all its targets concurrently. Returns whether each cell was reachable.
    pub fn probe(&self, cells: &[Cell]) -> Result<Vec<bool>, NetpolError> {
        let mut by_src: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        let mut targets = Vec::with_capacity(cells.len());
        for c in cells {
            if c.proto == Proto::Sctp {
                return Err(NetpolError::Probe {
                    pod: c.src.clone(),
                    reason: "SCTP cannot be probed on this kernel".into(),
                });
            }
            let t = format!("{}:{}/{}", self.pod(&c.dst)?.ip, c.port, c.proto.as_str());
            by_src.entry(&c.src).or_default().insert(t.clone());
            targets.push(t);
        }
        let ms = self.probe_timeout.as_millis().to_string();
        let mut running = Vec::new();
        for (src, ts) in &by_src {
            let pod = self.pod(src)?;
            let child = self.cluster.pods[pod.index]
                .ns
                .command(&self.agent)
                .arg("probe")
                .args(["--timeout-ms", &ms])
                .args(ts)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| NetpolError::Probe {
                    pod: src.to_string(),
                    reason: format!("spawn agent: {e}"),
                })?;
            running.push((*src, child));
        }
        let mut results: BTreeMap<(&str, String), bool> = BTreeMap::new();
        let mut failure = None;
        for (src, child) in running {
            let out = match child.wait_with_output() {
                Ok(o) => o,
                Err(e) => {
                    failure.get_or_insert(NetpolError::Probe {
                        pod: src.to_owned(),
                        reason: format!("wait for agent: {e}"),
                    });
                    continue;
                }
            };
            if !out.status.success() {
                failure.get_or_insert(NetpolError::Probe {
                    pod: src.to_owned(),
                    reason: format!(
                        "agent exited with {}: {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr)
                    ),
                });
                continue;
            }
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let mut it = line.split_whitespace();
                if let (Some(t), Some(v)) = (it.next(), it.next()) {
                    results.insert((src, t.to_owned()), v == "ok");
                }
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        cells
            .iter()
            .zip(targets)
            .map(|(c, t)| {
                results
                    .get(&(c.src.as_str(), t.clone()))
                    .copied()
                    .ok_or_else(|| NetpolError::Probe {
                        pod: c.src.clone(),
                        reason: format!("no result for {t}"),
                    })
            })
            .collect()
    }

    /// Probes `expected` cells and compares: an allowed cell that fails is probed once more
    /// (and reported in `retried`); a denied cell is never retried. Returns the mismatches
    /// `(cell, expected, got)`.
    pub fn check(
        &self,
        expected: &[(Cell, bool)],
        retried: &mut Vec<String>,
    ) -> Result<Vec<(Cell, bool, bool)>, NetpolError> {
        let cells: Vec<Cell> = expected.iter().map(|(c, _)| c.clone()).collect();
        let mut got = self.probe(&cells)?;
        let want: Vec<bool> = expected.iter().map(|(_, e)| *e).collect();
        let again: Vec<usize> = (0..cells.len()).filter(|&i| want[i] && !got[i]).collect();
        if !again.is_empty() {
            let retry_cells: Vec<Cell> = again.iter().map(|&i| cells[i].clone()).collect();
            let second = self.probe(&retry_cells)?;
            for (&i, ok) in again.iter().zip(second) {
                if ok {
                    retried.push(cells[i].to_string());
                    got[i] = true;
                }
            }
        }
        Ok((0..cells.len())
            .filter(|&i| got[i] != want[i])
            .map(|i| (cells[i].clone(), want[i], got[i]))
            .collect())
    }

    /// Replays one case from a reset cluster.
    pub fn run_case(
        &mut self,
        case: &Case,
        rewrite: &IpBlockRewrite,
    ) -> Result<CaseReport, NetpolError> {
        let start = Instant::now();
        let mut report = CaseReport {
            id: case.id.clone(),
            steps: case.steps.len(),
            ..CaseReport::default()
        };
        report.waited += self.reset()?;
        for (n, step) in case.steps.iter().enumerate() {
            let step_err = |reason: String| NetpolError::Case {
                case: case.id.clone(),
                step: n + 1,
                reason,
            };
            for a in &step.actions {
                self.world.apply(a, &self.fixture, rewrite)?;
            }
            for p in &step.pods {
                if !self.world.pods.contains_key(p) {
                    return Err(step_err(format!("probes pod {p}, which does not exist")));
                }
            }
            self.sync()?;
            report.waited += self.wait_applied()?;
            let (cells, sctp) = step_cells(step).map_err(step_err)?;
            report.sctp_skipped += sctp;
            report.cells += cells.len();
            let bad = self.check(&cells, &mut report.retried)?;
            report
                .mismatches
                .extend(bad.into_iter().map(|(cell, expected, got)| Mismatch {
                    case: case.id.clone(),
                    step: n + 1,
                    cell,
                    expected,
                    got,
                }));
        }
        report.elapsed = start.elapsed();
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ns: &str, name: &str, ip: &str) -> PodObject {
        PodObject {
            namespace: ns.into(),
            name: name.into(),
            labels: Labels::from([("pod".to_owned(), name.to_owned())]),
            node: 1,
            ip: ip.parse().expect("ip"),
            index: 0,
        }
    }

    fn rewrite() -> IpBlockRewrite {
        let assumed = BTreeMap::from([
            ("x/a".to_owned(), "10.244.1.10".parse().expect("ip")),
            ("x/d".to_owned(), "10.244.1.13".parse().expect("ip")),
        ]);
        let actual = BTreeMap::from([("x/a".to_owned(), pod("x", "a", "10.244.57.3"))]);
        IpBlockRewrite::new("10.244.0.0/16".parse().expect("net"), &assumed, &actual)
    }

    #[test]
    fn ip_blocks_map_assumed_pods_and_keep_wide_blocks() {
        let r = rewrite();
        assert_eq!(
            r.rewrite_cidr("10.244.1.10/32").as_deref(),
            Ok("10.244.57.3/32")
        );
        assert_eq!(r.rewrite_cidr("0.0.0.0/4").as_deref(), Ok("0.0.0.0/4"));
        assert_eq!(
            r.rewrite_cidr("10.244.0.0/16").as_deref(),
            Ok("10.244.0.0/16")
        );
        assert!(r.rewrite_cidr("10.244.1.0/24").is_err(), "a pod's /24");
        assert!(
            r.rewrite_cidr("10.244.1.13/32").is_err(),
            "pod not in cluster"
        );
        assert!(r.rewrite_cidr("10.0.0.0/24").is_err());
        assert!(r.rewrite_cidr("fd00::/8").is_err());
        let mut pol = json!({"metadata": {"namespace": "x", "name": "p"}, "spec": {"egress": [
            {"to": [{"ipBlock": {"cidr": "0.0.0.0/4", "except": ["10.244.1.10/32"]}}]}
        ]}});
        r.rewrite_policy(&mut pol).expect("rewrite");
        assert_eq!(
            pol["spec"]["egress"][0]["to"][0]["ipBlock"]["except"][0],
            "10.244.57.3/32"
        );
        let mut bad = json!({"metadata": {"namespace": "x", "name": "p"}, "spec": {"ingress": [
            {"from": [{"ipBlock": {"cidr": "10.244.1.0/24"}}]}
        ]}});
        let e = r
            .rewrite_policy(&mut bad)
            .expect_err("a /24 must be refused");
        assert!(e.to_string().contains("x/p"), "{e}");
    }

    #[test]
    fn yaml_quotes_every_string() {
        let v = json!({"metadata": {"name": "a", "labels": {"on": "yes", "n": "1"}},
                       "spec": {"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}],
                                 "ports": [{"port": 80, "protocol": "TCP"}]}], "egress": [], "policyTypes": ["Ingress"]}});
        let y = to_yaml(&v);
        assert_eq!(
            y,
            r#""metadata":
  "labels":
    "n": "1"
    "on": "yes"
  "name": "a"
"spec":
  "egress": []
  "ingress":
    - "from":
        - "podSelector":
            "matchLabels":
              "pod": "b"
      "ports":
        - "port": 80
          "protocol": "TCP"
  "podSelector": {}
  "policyTypes":
    - "Ingress"
"#
        );
    }

    fn status(files: Value, synced: bool, generation: u64, applied: u64, error: Value) -> Value {
        json!({"source": {"kind": "manifests", "synced": synced, "generation": generation,
                          "files": files, "errors": []},
               "policy": {"applied_generation": applied, "error": error}})
    }

    #[test]
    fn sync_contract() {
        let expected = BTreeMap::from([
            ("a.yaml".to_owned(), "aa".to_owned()),
            ("b.yaml".to_owned(), "bb".to_owned()),
        ]);
        let files = json!({"a.yaml": {"sha256": "aa"}, "b.yaml": {"sha256": "bb", "error": "bad"}});
        assert_eq!(
            policy_sync_problem(&status(files.clone(), true, 4, 4, Value::Null), &expected),
            None
        );
        let not = |st: Value| policy_sync_problem(&st, &expected).expect("not in sync");
        assert!(not(Value::Null).contains("does not answer"));
        assert!(not(json!({"node": "node1"})).contains("no source"));
        assert!(not(status(files.clone(), false, 4, 4, Value::Null)).contains("synced"));
        assert!(not(status(files.clone(), true, 5, 4, Value::Null)).contains("generation"));
        assert!(not(status(files.clone(), true, 4, 4, json!("boom"))).contains("boom"));
        let stale = json!({"a.yaml": {"sha256": "old"}, "b.yaml": {"sha256": "bb"}});
        assert!(not(status(stale, true, 4, 4, Value::Null)).contains("a.yaml"));
        let extra = json!({"a.yaml": {"sha256": "aa"}, "b.yaml": {"sha256": "bb"}, "c.yaml": {}});
        assert!(not(status(extra, true, 4, 4, Value::Null)).contains("c.yaml"));
        let missing = json!({"a.yaml": {"sha256": "aa"}});
        assert!(not(status(missing, true, 4, 4, Value::Null)).contains("b.yaml"));
    }

    #[test]
    fn manifest_names_and_hashes() {
        assert!(
            is_manifest_name("ns-x.yaml")
                && is_manifest_name("a.yml")
                && is_manifest_name("a.json")
        );
        assert!(!is_manifest_name(".ns-x.yaml.tmp") && !is_manifest_name("notes.txt"));
        assert!(!is_manifest_name(".yaml") && !is_manifest_name("#a.yaml"));
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn actions_change_the_world() {
        let mut w = World::default();
        w.namespaces.insert(
            "x".into(),
            Labels::from([("ns".to_owned(), "x".to_owned())]),
        );
        let a = pod("x", "a", "10.244.57.3");
        w.pods.insert(a.key(), a);
        let fixture = w.clone();
        let r = rewrite();
        let pol = json!({"action": "create_policy", "policy": {"metadata": {"namespace": "x", "name": "p"},
            "spec": {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.244.1.10/32"}}]}]}}});
        w.apply(&pol, &fixture, &r).expect("create");
        assert!(w.apply(&pol, &fixture, &r).is_err(), "created twice");
        let files = w.files();
        assert!(files["netpol-x-p.yaml"].contains("10.244.57.3/32"));
        assert!(files.contains_key("ns-x.yaml") && files.contains_key("pod-x-a.yaml"));
        w.apply(
            &json!({"action": "add_pod_labels", "pod": "x/a", "labels": {"t": "i"}}),
            &fixture,
            &r,
        )
        .expect("labels");
        assert_eq!(w.pods["x/a"].labels.len(), 2);
        w.apply(
            &json!({"action": "add_namespace_labels", "namespace": "x", "labels": {"u": "1"}}),
            &fixture,
            &r,
        )
        .expect("labels");
        assert_eq!(w.namespaces["x"]["u"], "1");
        w.apply(&json!({"action": "delete_all_policies"}), &fixture, &r)
            .expect("delete all");
        assert!(w.policies.is_empty());
        assert!(w.apply(&json!({"action": "dance"}), &fixture, &r).is_err());
        assert!(
            w.apply(
                &json!({"action": "create_pod", "pod": "y-2/a"}),
                &fixture,
                &r
            )
            .is_err()
        );
    }

    #[test]
    fn step_cells_skip_self_and_sctp() {
        let step: Step = serde_json::from_value(json!({"actions": [], "pods": ["x/a", "x/b"],
            "probes": [{"port": 80, "protocol": "TCP", "rows": ["10", "01"]},
                       {"port": 81, "protocol": "SCTP", "rows": ["11", "11"]}]}))
        .expect("step");
        let (cells, sctp) = step_cells(&step).expect("cells");
        assert_eq!(sctp, 2);
        assert_eq!(cells.len(), 2);
        assert!(cells.iter().all(|(_, e)| !*e));
        assert_eq!(cells[0].0.to_string(), "80/tcp x/a->x/b");
    }

    #[test]
    fn mismatch_line() {
        let m = Mismatch {
            case: "upstream-tcp-15".into(),
            step: 2,
            cell: Cell {
                src: "z/a".into(),
                dst: "x/a".into(),
                port: 80,
                proto: Proto::Tcp,
            },
            expected: false,
            got: true,
        };
        assert_eq!(
            m.to_string(),
            "upstream-tcp-15 step 2 80/tcp z/a->x/a expected denied got allowed"
        );
    }

    #[test]
    fn world_sync_writes_only_changes() {
        let dir = twill_testutil::TempDir::new("netpol-sync");
        let mut w = World::default();
        w.namespaces.insert("x".into(), Labels::new());
        assert_eq!(w.sync_to(dir.path()).expect("sync"), 1);
        assert_eq!(w.sync_to(dir.path()).expect("sync"), 0);
        std::fs::write(dir.path().join("stray.yaml"), "x").expect("write");
        std::fs::write(dir.path().join("notes.txt"), "x").expect("write");
        assert_eq!(w.sync_to(dir.path()).expect("sync"), 1, "stray removed");
        assert!(
            dir.path().join("notes.txt").exists(),
            "non-manifests left alone"
        );
        let h = manifest_hashes(dir.path()).expect("hashes");
        assert_eq!(h.keys().collect::<Vec<_>>(), ["ns-x.yaml"]);
    }
}
