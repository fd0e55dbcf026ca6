//! The one in-memory model of the Kubernetes objects twilld acts on, as validated values.
//!
//! Both sources (a manifest directory, the Kubernetes API) turn what they read into these
//! types; the controllers (the NetworkPolicy engine now, the service proxy next) only ever
//! see a [`Model`] snapshot, never a source. Keeping the model our own (not k8s-openapi's
//! types, whose every field is optional) means validation happens once, at the edge, with an
//! error that names the object, and the compilers are pure functions over values that are
//! known to be well formed.
//!
//! A snapshot is immutable and shared (`Arc<Model>`); a source publishes a new one on every
//! change, with a higher `generation`.

use ipnetwork::IpNetwork;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

/// Labels, sorted so that everything derived from them is deterministic.
pub type Labels = BTreeMap<String, String>;

/// `namespace/name` of a namespaced object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: &str, name: &str) -> ObjectKey {
        ObjectKey {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The label every namespace carries implicitly, as the API server sets it.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    pub name: String,
    /// Includes `kubernetes.io/metadata.name=<name>`.
    pub labels: Labels,
}

/// Transport protocols a NetworkPolicy port or a container port can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }

    /// `TCP`, `UDP`, `SCTP` as Kubernetes spells them.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }

    /// Parses the Kubernetes spelling (exact, upper case, as the API server requires).
    pub fn parse(s: &str) -> Option<Protocol> {
        match s {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `spec.containers[].ports[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPort {
    pub name: Option<String>,
    pub port: u16,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    /// `spec.nodeName`; `None` while unscheduled.
    pub node_name: Option<String>,
    /// `status.podIPs` (or `status.podIP`), IPv4 and/or IPv6; empty until the pod has one.
    pub ips: Vec<IpAddr>,
    pub ports: Vec<ContainerPort>,
    /// `spec.hostNetwork`: such pods share the node's addresses and are never enforced.
    pub host_network: bool,
}

impl Pod {
    pub fn key(&self) -> ObjectKey {
        ObjectKey::new(&self.namespace, &self.name)
    }
}

/// `matchExpressions[].operator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SelectorOp {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl SelectorOp {
    pub fn parse(s: &str) -> Option<SelectorOp> {
        match s {
            "In" => Some(SelectorOp::In),
            "NotIn" => Some(SelectorOp::NotIn),
            "Exists" => Some(SelectorOp::Exists),
            "DoesNotExist" => Some(SelectorOp::DoesNotExist),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SelectorOp::In => "In",
            SelectorOp::NotIn => "NotIn",
            SelectorOp::Exists => "Exists",
            SelectorOp::DoesNotExist => "DoesNotExist",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Requirement {
    pub key: String,
    pub op: SelectorOp,
    /// Non-empty for In/NotIn, empty for Exists/DoesNotExist (validated by the source).
    pub values: Vec<String>,
}

/// A label selector. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Selector {
    pub match_labels: Labels,
    pub match_expressions: Vec<Requirement>,
}

impl Selector {
    /// `matchLabels` only: every `(key, value)` pair must be present.
    pub fn labels(kv: &[(&str, &str)]) -> Selector {
        Selector {
            match_labels: kv
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            match_expressions: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// Whether `labels` satisfy every term (the API server's semantics: NotIn and
    /// DoesNotExist match objects without the key).
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let got = labels.get(&r.key);
                match r.op {
                    SelectorOp::In => got.is_some_and(|v| r.values.contains(v)),
                    SelectorOp::NotIn => got.is_none_or(|v| !r.values.contains(v)),
                    SelectorOp::Exists => got.is_some(),
                    SelectorOp::DoesNotExist => got.is_none(),
                }
            })
    }
}

impl fmt::Display for Selector {
    /// `kubectl`'s selector syntax: `app=web,tier in (a,b),!legacy`; `{}` when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("{}");
        }
        let mut parts: Vec<String> = self
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for r in &self.match_expressions {
            parts.push(match r.op {
                SelectorOp::In => format!("{} in ({})", r.key, r.values.join(",")),
                SelectorOp::NotIn => format!("{} notin ({})", r.key, r.values.join(",")),
                SelectorOp::Exists => r.key.clone(),
                SelectorOp::DoesNotExist => format!("!{}", r.key),
            });
        }
        f.write_str(&parts.join(","))
    }
}

/// `ipBlock`: `cidr` minus every `except` (each validated to lie inside `cidr`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpBlock {
    pub cidr: IpNetwork,
    pub except: Vec<IpNetwork>,
}

/// One entry of `from`/`to`. Exactly one of the shapes Kubernetes allows.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Peer {
    /// `podSelector` alone: pods of the policy's own namespace.
    Pods(Selector),
    /// `namespaceSelector` alone: every pod of the matching namespaces.
    Namespaces(Selector),
    /// Both in one peer: matching pods in matching namespaces.
    PodsInNamespaces {
        pods: Selector,
        namespaces: Selector,
    },
    IpBlock(IpBlock),
}

/// A port: by number or by a container port's name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortRef {
    Number(u16),
    Name(String),
}

/// One entry of `ports`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyPort {
    /// Defaults to TCP, as the API server does.
    pub protocol: Protocol,
    /// `None`: every port of `protocol`.
    pub port: Option<PortRef>,
    /// `endPort`: only with a numeric `port`, and `>= port` (validated by the source).
    pub end_port: Option<u16>,
}

/// One ingress or egress rule. `peers` empty means every peer (the field was absent or
/// empty); `ports` empty means every port and protocol.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyRule {
    pub peers: Vec<Peer>,
    pub ports: Vec<PolicyPort>,
}

/// A networking.k8s.io/v1 NetworkPolicy, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPolicy {
    pub namespace: String,
    pub name: String,
    pub pod_selector: Selector,
    /// `policyTypes` resolved: explicit, or Ingress always plus Egress when the policy has
    /// egress rules.
    pub ingress_isolation: bool,
    pub egress_isolation: bool,
    pub ingress: Vec<PolicyRule>,
    pub egress: Vec<PolicyRule>,
}

impl NetworkPolicy {
    pub fn key(&self) -> ObjectKey {
        ObjectKey::new(&self.namespace, &self.name)
    }
}

/// A node: what the service proxy and `netctl` need of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub labels: Labels,
    /// `status.addresses` of type InternalIP.
    pub internal_ips: Vec<IpAddr>,
    /// `spec.podCIDRs`.
    pub pod_cidrs: Vec<IpNetwork>,
}

/// `spec.ports[]` of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub name: Option<String>,
    pub protocol: Protocol,
    pub port: u16,
    pub target_port: Option<PortRef>,
    pub node_port: Option<u16>,
}

/// A Service: the fields the service proxy consumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    /// `ClusterIP`, `NodePort`, `LoadBalancer` or `ExternalName`.
    pub service_type: String,
    /// `spec.clusterIPs` (`None` is not stored: headless services have none).
    pub cluster_ips: Vec<IpAddr>,
    pub external_ips: Vec<IpAddr>,
    pub load_balancer_ips: Vec<IpAddr>,
    pub ports: Vec<ServicePort>,
    pub selector: Labels,
    /// `spec.sessionAffinity == ClientIP`, with its timeout in seconds.
    pub session_affinity_timeout: Option<u32>,
    /// `spec.externalTrafficPolicy == Local`.
    pub external_traffic_local: bool,
    /// `spec.internalTrafficPolicy == Local`.
    pub internal_traffic_local: bool,
}

/// One endpoint of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub addresses: Vec<IpAddr>,
    /// `conditions.ready` (absent counts as ready, as kube-proxy reads it).
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    pub node_name: Option<String>,
}

/// `ports[]` of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointPort {
    pub name: Option<String>,
    pub protocol: Protocol,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSlice {
    pub namespace: String,
    pub name: String,
    /// The `kubernetes.io/service-name` label.
    pub service_name: String,
    /// `IPv4` or `IPv6`.
    pub address_type: String,
    pub endpoints: Vec<Endpoint>,
    pub ports: Vec<EndpointPort>,
}

/// A consistent snapshot of everything the sources know.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Model {
    /// Increases with every published change.
    pub generation: u64,
    /// Whether every input has been read completely once (a controller programs nothing
    /// before that, so a restart never flashes an empty ruleset).
    pub synced: bool,
    pub namespaces: BTreeMap<String, Namespace>,
    pub pods: BTreeMap<ObjectKey, Pod>,
    pub policies: BTreeMap<ObjectKey, NetworkPolicy>,
    pub services: BTreeMap<ObjectKey, Service>,
    pub endpoint_slices: BTreeMap<ObjectKey, EndpointSlice>,
    pub nodes: BTreeMap<String, Node>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> Labels {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn selector_semantics_follow_the_api_server() {
        let l = labels(&[("app", "web"), ("tier", "fe")]);
        assert!(Selector::default().matches(&l));
        let req = |key: &str, op, values: &[&str]| Selector {
            match_labels: Labels::new(),
            match_expressions: vec![Requirement {
                key: key.into(),
                op,
                values: values.iter().map(|s| (*s).to_owned()).collect(),
            }],
        };
        assert!(req("app", SelectorOp::In, &["web", "db"]).matches(&l));
        assert!(!req("app", SelectorOp::In, &["db"]).matches(&l));
        assert!(req("app", SelectorOp::NotIn, &["db"]).matches(&l));
        assert!(req("missing", SelectorOp::NotIn, &["x"]).matches(&l));
        assert!(!req("missing", SelectorOp::In, &["x"]).matches(&l));
        assert!(req("tier", SelectorOp::Exists, &[]).matches(&l));
        assert!(req("missing", SelectorOp::DoesNotExist, &[]).matches(&l));
        assert!(!req("tier", SelectorOp::DoesNotExist, &[]).matches(&l));
        let both = Selector {
            match_labels: labels(&[("app", "web")]),
            match_expressions: req("tier", SelectorOp::In, &["be"]).match_expressions,
        };
        assert!(!both.matches(&l));
        assert_eq!(both.to_string(), "app=web,tier in (be)");
    }
}
