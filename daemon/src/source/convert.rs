//! From k8s-openapi objects to the validated [`model`](super::model) types, pure.
//!
//! k8s-openapi mirrors the API's schema, where almost every field is optional and strings
//! stand for enums; the controllers should never see that. So this is the one place that
//! applies the API server's defaults (protocol TCP, `policyTypes`, the namespace's
//! `kubernetes.io/metadata.name` label, `default` namespace) and its validation rules
//! (selector operators and values, label syntax, `ipBlock` CIDRs and exceptions, ports and
//! `endPort`). Objects from the API server have passed that validation already; manifests
//! read from a directory have not, and a file written by hand is exactly where a typo lives.
//!
//! Every error carries the object (`NetworkPolicy x/allow-web`) and the JSON path of the
//! field (`spec.ingress[0].from[1].podSelector.matchExpressions[0].operator`), so an operator
//! can go straight to the line.

use super::model::{
    self, ContainerPort, Endpoint, EndpointPort, IpBlock, Labels, NAMESPACE_NAME_LABEL, Peer,
    PolicyPort, PolicyRule, PortRef, Protocol, Requirement, Selector, SelectorOp, ServicePort,
};
use ipnetwork::IpNetwork;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::api::networking::v1 as networking;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::fmt;
use std::net::IpAddr;

/// The object kinds the model holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Namespace,
    Node,
    Pod,
    NetworkPolicy,
    Service,
    EndpointSlice,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Namespace,
        Kind::Node,
        Kind::Pod,
        Kind::NetworkPolicy,
        Kind::Service,
        Kind::EndpointSlice,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Node => "Node",
            Kind::Pod => "Pod",
            Kind::NetworkPolicy => "NetworkPolicy",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
        }
    }

    /// The `apiVersion` this kind is read in.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Namespace | Kind::Node | Kind::Pod | Kind::Service => "v1",
            Kind::NetworkPolicy => "networking.k8s.io/v1",
            Kind::EndpointSlice => "discovery.k8s.io/v1",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn namespaced(self) -> bool {
        !matches!(self, Kind::Namespace | Kind::Node)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identity of one object: kind, namespace (empty for cluster-scoped kinds) and name.
/// Displays as `Pod ns/name` or `Namespace name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl ObjectId {
    /// The id of an object of `kind` with this metadata, applying the `default` namespace
    /// to namespaced kinds.
    pub fn from_meta(kind: Kind, meta: &ObjectMeta) -> ObjectId {
        ObjectId::new(
            kind,
            meta.namespace.as_deref(),
            meta.name.as_deref().unwrap_or(""),
        )
    }

    pub fn new(kind: Kind, namespace: Option<&str>, name: &str) -> ObjectId {
        let namespace = if kind.namespaced() {
            match namespace {
                Some(ns) if !ns.is_empty() => ns.to_owned(),
                _ => DEFAULT_NAMESPACE.to_owned(),
            }
        } else {
            String::new()
        };
        ObjectId {
            kind,
            namespace,
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = if self.name.is_empty() {
            "<no name>"
        } else {
            &self.name
        };
        if self.kind.namespaced() {
            write!(f, "{} {}/{}", self.kind, self.namespace, name)
        } else {
            write!(f, "{} {}", self.kind, name)
        }
    }
}

/// The namespace of a namespaced object without `metadata.namespace`.
pub const DEFAULT_NAMESPACE: &str = "default";

/// One converted object.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    Namespace(model::Namespace),
    Node(model::Node),
    Pod(model::Pod),
    NetworkPolicy(model::NetworkPolicy),
    Service(model::Service),
    EndpointSlice(model::EndpointSlice),
}

impl Object {
    pub fn id(&self) -> ObjectId {
        match self {
            Object::Namespace(o) => ObjectId::new(Kind::Namespace, None, &o.name),
            Object::Node(o) => ObjectId::new(Kind::Node, None, &o.name),
            Object::Pod(o) => ObjectId::new(Kind::Pod, Some(&o.namespace), &o.name),
            Object::NetworkPolicy(o) => {
                ObjectId::new(Kind::NetworkPolicy, Some(&o.namespace), &o.name)
            }
            Object::Service(o) => ObjectId::new(Kind::Service, Some(&o.namespace), &o.name),
            Object::EndpointSlice(o) => {
                ObjectId::new(Kind::EndpointSlice, Some(&o.namespace), &o.name)
            }
        }
    }
}

/// A field of an object that is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{object}: {field}: {problem}")]
pub struct ConvertError {
    pub object: ObjectId,
    /// JSON path of the field, as in the manifest (`spec.ingress[0].ports[1].endPort`).
    pub field: String,
    pub problem: String,
}

/// Builds errors for one object.
struct Ctx {
    id: ObjectId,
}

impl Ctx {
    fn err(&self, field: impl Into<String>, problem: impl Into<String>) -> ConvertError {
        ConvertError {
            object: self.id.clone(),
            field: field.into(),
            problem: problem.into(),
        }
    }
}

fn start(kind: Kind, meta: &ObjectMeta) -> Result<Ctx, ConvertError> {
    let ctx = Ctx {
        id: ObjectId::from_meta(kind, meta),
    };
    match meta.name.as_deref() {
        None | Some("") => return Err(ctx.err("metadata.name", "is required")),
        Some(name) => {
            if let Err(p) = check_dns_subdomain(name) {
                return Err(ctx.err("metadata.name", p));
            }
        }
    }
    if kind.namespaced()
        && let Err(p) = check_dns_label(&ctx.id.namespace)
    {
        return Err(ctx.err("metadata.namespace", p));
    }
    Ok(ctx)
}

fn labels(ctx: &Ctx, meta: &ObjectMeta) -> Result<Labels, ConvertError> {
    let labels = meta.labels.clone().unwrap_or_default();
    check_labels(ctx, "metadata.labels", &labels)?;
    Ok(labels)
}

fn check_labels(ctx: &Ctx, path: &str, labels: &Labels) -> Result<(), ConvertError> {
    for (k, v) in labels {
        check_label_key(k).map_err(|p| ctx.err(format!("{path}[{k:?}]"), p))?;
        check_label_value(v).map_err(|p| ctx.err(format!("{path}[{k:?}]"), p))?;
    }
    Ok(())
}

pub fn namespace(ns: &core::Namespace) -> Result<model::Namespace, ConvertError> {
    let ctx = start(Kind::Namespace, &ns.metadata)?;
    if let Err(p) = check_dns_label(&ctx.id.name) {
        return Err(ctx.err("metadata.name", p));
    }
    let mut labels = labels(&ctx, &ns.metadata)?;
    labels.insert(NAMESPACE_NAME_LABEL.to_owned(), ctx.id.name.clone());
    Ok(model::Namespace {
        name: ctx.id.name,
        labels,
    })
}

/// A namespace that exists without being declared (`default`, `kube-system`, ...).
pub fn implicit_namespace(name: &str) -> model::Namespace {
    let mut labels = Labels::new();
    labels.insert(NAMESPACE_NAME_LABEL.to_owned(), name.to_owned());
    model::Namespace {
        name: name.to_owned(),
        labels,
    }
}

fn parse_ip(ctx: &Ctx, field: &str, s: &str) -> Result<IpAddr, ConvertError> {
    s.parse()
        .map_err(|_| ctx.err(field, format!("{s:?} is not an IP address")))
}

fn protocol(ctx: &Ctx, field: &str, p: Option<&str>) -> Result<Protocol, ConvertError> {
    match p {
        None => Ok(Protocol::Tcp),
        Some(s) => Protocol::parse(s)
            .ok_or_else(|| ctx.err(field, format!("{s:?} is not one of TCP, UDP, SCTP"))),
    }
}

fn port_number(ctx: &Ctx, field: &str, n: i32) -> Result<u16, ConvertError> {
    match u16::try_from(n) {
        Ok(p) if p >= 1 => Ok(p),
        _ => Err(ctx.err(field, format!("{n} is not a port number (1-65535)"))),
    }
}

fn port_ref(ctx: &Ctx, field: &str, p: &IntOrString) -> Result<PortRef, ConvertError> {
    match p {
        IntOrString::Int(n) => Ok(PortRef::Number(port_number(ctx, field, *n)?)),
        IntOrString::String(s) => {
            // A numeric string is accepted by the API server's IntOrString decoding only as
            // a string; a name must be an IANA service name.
            check_port_name(s).map_err(|p| ctx.err(field, p))?;
            Ok(PortRef::Name(s.clone()))
        }
    }
}

pub fn pod(pod: &core::Pod) -> Result<model::Pod, ConvertError> {
    let ctx = start(Kind::Pod, &pod.metadata)?;
    let labels = labels(&ctx, &pod.metadata)?;
    let spec = pod.spec.as_ref();
    let mut ports = Vec::new();
    for (ci, c) in spec
        .map(|s| s.containers.as_slice())
        .unwrap_or(&[])
        .iter()
        .enumerate()
    {
        for (pi, p) in c.ports.as_deref().unwrap_or(&[]).iter().enumerate() {
            let path = format!("spec.containers[{ci}].ports[{pi}]");
            let port = port_number(&ctx, &format!("{path}.containerPort"), p.container_port)?;
            let protocol = protocol(&ctx, &format!("{path}.protocol"), p.protocol.as_deref())?;
            if let Some(name) = &p.name {
                check_port_name(name).map_err(|e| ctx.err(format!("{path}.name"), e))?;
            }
            ports.push(ContainerPort {
                name: p.name.clone(),
                port,
                protocol,
            });
        }
    }
    let mut ips = Vec::new();
    if let Some(status) = &pod.status {
        match status.pod_ips.as_deref() {
            Some(list) if !list.is_empty() => {
                for (i, ip) in list.iter().enumerate() {
                    ips.push(parse_ip(&ctx, &format!("status.podIPs[{i}].ip"), &ip.ip)?);
                }
            }
            _ => {
                if let Some(ip) = status.pod_ip.as_deref().filter(|s| !s.is_empty()) {
                    ips.push(parse_ip(&ctx, "status.podIP", ip)?);
                }
            }
        }
    }
    Ok(model::Pod {
        namespace: ctx.id.namespace.clone(),
        name: ctx.id.name.clone(),
        labels,
        node_name: spec
            .and_then(|s| s.node_name.clone())
            .filter(|s| !s.is_empty()),
        ips,
        ports,
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
    })
}

fn selector(ctx: &Ctx, path: &str, sel: &LabelSelector) -> Result<Selector, ConvertError> {
    let match_labels = sel.match_labels.clone().unwrap_or_default();
    check_labels(ctx, &format!("{path}.matchLabels"), &match_labels)?;
    let mut match_expressions = Vec::new();
    for (i, r) in sel
        .match_expressions
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .enumerate()
    {
        let rpath = format!("{path}.matchExpressions[{i}]");
        check_label_key(&r.key).map_err(|p| ctx.err(format!("{rpath}.key"), p))?;
        let op = SelectorOp::parse(&r.operator).ok_or_else(|| {
            ctx.err(
                format!("{rpath}.operator"),
                format!(
                    "{:?} is not one of In, NotIn, Exists, DoesNotExist",
                    r.operator
                ),
            )
        })?;
        let values = r.values.clone().unwrap_or_default();
        match op {
            SelectorOp::In | SelectorOp::NotIn if values.is_empty() => {
                return Err(ctx.err(
                    format!("{rpath}.values"),
                    format!("must be non-empty when operator is {}", op.as_str()),
                ));
            }
            SelectorOp::Exists | SelectorOp::DoesNotExist if !values.is_empty() => {
                return Err(ctx.err(
                    format!("{rpath}.values"),
                    format!("must be empty when operator is {}", op.as_str()),
                ));
            }
            _ => {}
        }
        for (j, v) in values.iter().enumerate() {
            check_label_value(v).map_err(|p| ctx.err(format!("{rpath}.values[{j}]"), p))?;
        }
        match_expressions.push(Requirement {
            key: r.key.clone(),
            op,
            values,
        });
    }
    Ok(Selector {
        match_labels,
        match_expressions,
    })
}

/// Parses a CIDR as the API server does: a prefix length is required; host bits are
/// cleared (the API server tolerates them in ipBlock).
fn parse_cidr(ctx: &Ctx, field: &str, s: &str) -> Result<IpNetwork, ConvertError> {
    let bad = || ctx.err(field, format!("{s:?} is not a CIDR (like 10.0.0.0/8)"));
    if !s.contains('/') {
        return Err(bad());
    }
    let net: IpNetwork = s.parse().map_err(|_| bad())?;
    IpNetwork::new(net.network(), net.prefix()).map_err(|_| bad())
}

fn ip_block(ctx: &Ctx, path: &str, b: &networking::IPBlock) -> Result<IpBlock, ConvertError> {
    let cidr = parse_cidr(ctx, &format!("{path}.cidr"), &b.cidr)?;
    let mut except = Vec::new();
    for (i, e) in b.except.as_deref().unwrap_or(&[]).iter().enumerate() {
        let field = format!("{path}.except[{i}]");
        let net = parse_cidr(ctx, &field, e)?;
        if net.is_ipv4() != cidr.is_ipv4() {
            return Err(ctx.err(
                field,
                format!("{e:?} is not of the same IP family as cidr {:?}", b.cidr),
            ));
        }
        if net.prefix() <= cidr.prefix() || !cidr.contains(net.network()) {
            return Err(ctx.err(
                field,
                format!("{e:?} must be a strict subset of cidr {:?}", b.cidr),
            ));
        }
        except.push(net);
    }
    Ok(IpBlock { cidr, except })
}

fn peer(ctx: &Ctx, path: &str, p: &networking::NetworkPolicyPeer) -> Result<Peer, ConvertError> {
    match (&p.pod_selector, &p.namespace_selector, &p.ip_block) {
        (None, None, Some(b)) => Ok(Peer::IpBlock(ip_block(ctx, &format!("{path}.ipBlock"), b)?)),
        (_, _, Some(_)) => Err(ctx.err(
            path,
            "ipBlock may not be combined with podSelector or namespaceSelector",
        )),
        (Some(ps), None, None) => Ok(Peer::Pods(selector(
            ctx,
            &format!("{path}.podSelector"),
            ps,
        )?)),
        (None, Some(ns), None) => Ok(Peer::Namespaces(selector(
            ctx,
            &format!("{path}.namespaceSelector"),
            ns,
        )?)),
        (Some(ps), Some(ns), None) => Ok(Peer::PodsInNamespaces {
            pods: selector(ctx, &format!("{path}.podSelector"), ps)?,
            namespaces: selector(ctx, &format!("{path}.namespaceSelector"), ns)?,
        }),
        (None, None, None) => Err(ctx.err(
            path,
            "must specify one of podSelector, namespaceSelector, ipBlock",
        )),
    }
}

fn policy_port(
    ctx: &Ctx,
    path: &str,
    p: &networking::NetworkPolicyPort,
) -> Result<PolicyPort, ConvertError> {
    let protocol = protocol(ctx, &format!("{path}.protocol"), p.protocol.as_deref())?;
    let port = match &p.port {
        None => None,
        Some(r) => Some(port_ref(ctx, &format!("{path}.port"), r)?),
    };
    let end_port = match p.end_port {
        None => None,
        Some(e) => {
            let field = format!("{path}.endPort");
            let end = port_number(ctx, &field, e)?;
            match &port {
                Some(PortRef::Number(start)) if end >= *start => Some(end),
                Some(PortRef::Number(start)) => {
                    return Err(ctx.err(
                        field,
                        format!("{end} must be greater than or equal to port {start}"),
                    ));
                }
                Some(PortRef::Name(_)) => {
                    return Err(ctx.err(field, "may not be used with a named port"));
                }
                None => return Err(ctx.err(field, "may not be used without port")),
            }
        }
    };
    Ok(PolicyPort {
        protocol,
        port,
        end_port,
    })
}

fn rule(
    ctx: &Ctx,
    path: &str,
    peers_field: &str,
    peers: Option<&[networking::NetworkPolicyPeer]>,
    ports: Option<&[networking::NetworkPolicyPort]>,
) -> Result<PolicyRule, ConvertError> {
    let mut out = PolicyRule::default();
    for (i, p) in peers.unwrap_or(&[]).iter().enumerate() {
        out.peers
            .push(peer(ctx, &format!("{path}.{peers_field}[{i}]"), p)?);
    }
    for (i, p) in ports.unwrap_or(&[]).iter().enumerate() {
        out.ports
            .push(policy_port(ctx, &format!("{path}.ports[{i}]"), p)?);
    }
    Ok(out)
}

pub fn network_policy(
    np: &networking::NetworkPolicy,
) -> Result<model::NetworkPolicy, ConvertError> {
    let ctx = start(Kind::NetworkPolicy, &np.metadata)?;
    labels(&ctx, &np.metadata)?;
    let default_spec = networking::NetworkPolicySpec::default();
    let spec = np.spec.as_ref().unwrap_or(&default_spec);
    let pod_selector = match &spec.pod_selector {
        Some(s) => selector(&ctx, "spec.podSelector", s)?,
        None => Selector::default(),
    };
    let mut ingress = Vec::new();
    for (i, r) in spec.ingress.as_deref().unwrap_or(&[]).iter().enumerate() {
        ingress.push(rule(
            &ctx,
            &format!("spec.ingress[{i}]"),
            "from",
            r.from.as_deref(),
            r.ports.as_deref(),
        )?);
    }
    let mut egress = Vec::new();
    for (i, r) in spec.egress.as_deref().unwrap_or(&[]).iter().enumerate() {
        egress.push(rule(
            &ctx,
            &format!("spec.egress[{i}]"),
            "to",
            r.to.as_deref(),
            r.ports.as_deref(),
        )?);
    }
    let (ingress_isolation, egress_isolation) = match spec.policy_types.as_deref() {
        None | Some([]) => (true, !egress.is_empty()),
        Some(types) => {
            if types.len() > 2 {
                return Err(ctx.err("spec.policyTypes", "may not have more than 2 entries"));
            }
            let (mut i, mut e) = (false, false);
            for (n, t) in types.iter().enumerate() {
                match t.as_str() {
                    "Ingress" => i = true,
                    "Egress" => e = true,
                    other => {
                        return Err(ctx.err(
                            format!("spec.policyTypes[{n}]"),
                            format!("{other:?} is not one of Ingress, Egress"),
                        ));
                    }
                }
            }
            (i, e)
        }
    };
    Ok(model::NetworkPolicy {
        namespace: ctx.id.namespace.clone(),
        name: ctx.id.name.clone(),
        pod_selector,
        ingress_isolation,
        egress_isolation,
        ingress,
        egress,
    })
}

pub fn node(node: &core::Node) -> Result<model::Node, ConvertError> {
    let ctx = start(Kind::Node, &node.metadata)?;
    let labels = labels(&ctx, &node.metadata)?;
    let mut internal_ips = Vec::new();
    if let Some(addrs) = node.status.as_ref().and_then(|s| s.addresses.as_deref()) {
        for (i, a) in addrs.iter().enumerate() {
            if a.type_ == "InternalIP" {
                internal_ips.push(parse_ip(
                    &ctx,
                    &format!("status.addresses[{i}].address"),
                    &a.address,
                )?);
            }
        }
    }
    let mut pod_cidrs = Vec::new();
    if let Some(spec) = &node.spec {
        match spec.pod_cidrs.as_deref() {
            Some(list) if !list.is_empty() => {
                for (i, c) in list.iter().enumerate() {
                    pod_cidrs.push(parse_cidr(&ctx, &format!("spec.podCIDRs[{i}]"), c)?);
                }
            }
            _ => {
                if let Some(c) = spec.pod_cidr.as_deref().filter(|s| !s.is_empty()) {
                    pod_cidrs.push(parse_cidr(&ctx, "spec.podCIDR", c)?);
                }
            }
        }
    }
    Ok(model::Node {
        name: ctx.id.name,
        labels,
        internal_ips,
        pod_cidrs,
    })
}

const SERVICE_TYPES: [&str; 4] = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];

/// The API server's default for `sessionAffinityConfig.clientIP.timeoutSeconds` (3 hours).
const DEFAULT_AFFINITY_TIMEOUT: u32 = 10800;

pub fn service(svc: &core::Service) -> Result<model::Service, ConvertError> {
    let ctx = start(Kind::Service, &svc.metadata)?;
    labels(&ctx, &svc.metadata)?;
    let default_spec = core::ServiceSpec::default();
    let spec = svc.spec.as_ref().unwrap_or(&default_spec);
    let service_type = spec.type_.clone().unwrap_or_else(|| "ClusterIP".to_owned());
    if !SERVICE_TYPES.contains(&service_type.as_str()) {
        return Err(ctx.err(
            "spec.type",
            format!(
                "{service_type:?} is not one of {}",
                SERVICE_TYPES.join(", ")
            ),
        ));
    }
    let ips = |field: &str, list: Option<&[String]>| -> Result<Vec<IpAddr>, ConvertError> {
        let mut out = Vec::new();
        for (i, s) in list.unwrap_or(&[]).iter().enumerate() {
            if s.is_empty() || s == "None" {
                continue;
            }
            out.push(parse_ip(&ctx, &format!("{field}[{i}]"), s)?);
        }
        Ok(out)
    };
    let cluster_ips = match spec.cluster_ips.as_deref() {
        Some(list) if !list.is_empty() => ips("spec.clusterIPs", Some(list))?,
        _ => match spec.cluster_ip.as_deref() {
            Some(s) if !s.is_empty() && s != "None" => vec![parse_ip(&ctx, "spec.clusterIP", s)?],
            _ => Vec::new(),
        },
    };
    let external_ips = ips("spec.externalIPs", spec.external_ips.as_deref())?;
    let mut load_balancer_ips = Vec::new();
    if let Some(ingress) = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_deref())
    {
        for (i, ing) in ingress.iter().enumerate() {
            if let Some(ip) = ing.ip.as_deref().filter(|s| !s.is_empty()) {
                load_balancer_ips.push(parse_ip(
                    &ctx,
                    &format!("status.loadBalancer.ingress[{i}].ip"),
                    ip,
                )?);
            }
        }
    }
    let mut ports = Vec::new();
    for (i, p) in spec.ports.as_deref().unwrap_or(&[]).iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        if let Some(name) = &p.name {
            check_dns_label(name).map_err(|e| ctx.err(format!("{path}.name"), e))?;
        }
        let node_port = match p.node_port {
            None | Some(0) => None,
            Some(n) => Some(port_number(&ctx, &format!("{path}.nodePort"), n)?),
        };
        ports.push(ServicePort {
            name: p.name.clone(),
            protocol: protocol(&ctx, &format!("{path}.protocol"), p.protocol.as_deref())?,
            port: port_number(&ctx, &format!("{path}.port"), p.port)?,
            target_port: match &p.target_port {
                None => None,
                Some(t) => Some(port_ref(&ctx, &format!("{path}.targetPort"), t)?),
            },
            node_port,
        });
    }
    let selector = spec.selector.clone().unwrap_or_default();
    check_labels(&ctx, "spec.selector", &selector)?;
    let session_affinity_timeout = match spec.session_affinity.as_deref() {
        None | Some("None") => None,
        Some("ClientIP") => {
            let t = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds);
            match t {
                None => Some(DEFAULT_AFFINITY_TIMEOUT),
                Some(t) if (1..=86400).contains(&t) => Some(t.unsigned_abs()),
                Some(t) => {
                    return Err(ctx.err(
                        "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                        format!("{t} is not within 1-86400"),
                    ));
                }
            }
        }
        Some(other) => {
            return Err(ctx.err(
                "spec.sessionAffinity",
                format!("{other:?} is not one of None, ClientIP"),
            ));
        }
    };
    let traffic_local = |field: &str, v: Option<&str>| match v {
        None | Some("Cluster") => Ok(false),
        Some("Local") => Ok(true),
        Some(other) => Err(ctx.err(field, format!("{other:?} is not one of Cluster, Local"))),
    };
    Ok(model::Service {
        namespace: ctx.id.namespace.clone(),
        name: ctx.id.name.clone(),
        service_type,
        cluster_ips,
        external_ips,
        load_balancer_ips,
        ports,
        selector,
        session_affinity_timeout,
        external_traffic_local: traffic_local(
            "spec.externalTrafficPolicy",
            spec.external_traffic_policy.as_deref(),
        )?,
        internal_traffic_local: traffic_local(
            "spec.internalTrafficPolicy",
            spec.internal_traffic_policy.as_deref(),
        )?,
    })
}

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

pub fn endpoint_slice(es: &discovery::EndpointSlice) -> Result<model::EndpointSlice, ConvertError> {
    let ctx = start(Kind::EndpointSlice, &es.metadata)?;
    let labels = labels(&ctx, &es.metadata)?;
    let is_ip = match es.address_type.as_str() {
        "IPv4" | "IPv6" => true,
        "FQDN" => false,
        other => {
            return Err(ctx.err(
                "addressType",
                format!("{other:?} is not one of IPv4, IPv6, FQDN"),
            ));
        }
    };
    let mut endpoints = Vec::new();
    for (i, e) in es.endpoints.iter().enumerate() {
        let mut addresses = Vec::new();
        if is_ip {
            for (j, a) in e.addresses.iter().enumerate() {
                let ip = parse_ip(&ctx, &format!("endpoints[{i}].addresses[{j}]"), a)?;
                if ip.is_ipv4() != (es.address_type == "IPv4") {
                    return Err(ctx.err(
                        format!("endpoints[{i}].addresses[{j}]"),
                        format!("{a:?} is not an {} address", es.address_type),
                    ));
                }
                addresses.push(ip);
            }
        }
        let c = e.conditions.clone().unwrap_or_default();
        let ready = c.ready.unwrap_or(true);
        endpoints.push(Endpoint {
            addresses,
            ready,
            serving: c.serving.unwrap_or(ready),
            terminating: c.terminating.unwrap_or(false),
            node_name: e.node_name.clone(),
        });
    }
    let mut ports = Vec::new();
    for (i, p) in es.ports.as_deref().unwrap_or(&[]).iter().enumerate() {
        // A port without a number means "all ports"; the service proxy cannot use it.
        let Some(n) = p.port else { continue };
        ports.push(EndpointPort {
            name: p.name.clone().filter(|s| !s.is_empty()),
            protocol: protocol(&ctx, &format!("ports[{i}].protocol"), p.protocol.as_deref())?,
            port: port_number(&ctx, &format!("ports[{i}].port"), n)?,
        });
    }
    Ok(model::EndpointSlice {
        namespace: ctx.id.namespace.clone(),
        name: ctx.id.name.clone(),
        service_name: labels.get(SERVICE_NAME_LABEL).cloned().unwrap_or_default(),
        address_type: es.address_type.clone(),
        endpoints,
        ports,
    })
}

// Syntax checks, after k8s.io/apimachinery/pkg/util/validation. Each returns the problem
// as a phrase that follows the field path.

fn is_alnum_lower(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// RFC 1123 label: at most 63 of `[a-z0-9-]`, starting and ending alphanumeric.
fn check_dns_label(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| is_alnum_lower(c) || c == '-')
        && s.starts_with(is_alnum_lower)
        && s.ends_with(is_alnum_lower);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a DNS label (at most 63 lower-case alphanumerics or '-', starting and ending alphanumeric)"
        ))
    }
}

/// RFC 1123 subdomain: at most 253 characters, dot-separated labels.
fn check_dns_subdomain(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.chars().all(|c| is_alnum_lower(c) || c == '-')
                && l.starts_with(is_alnum_lower)
                && l.ends_with(is_alnum_lower)
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a DNS subdomain (lower-case alphanumerics, '-' and '.', at most 253)"
        ))
    }
}

/// The name part of a label key and a non-empty label value: at most 63 of
/// `[A-Za-z0-9_.-]`, starting and ending alphanumeric.
fn is_qualified_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn check_label_key(k: &str) -> Result<(), String> {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix
        && check_dns_subdomain(p).is_err()
    {
        return Err(format!("key {k:?}: prefix {p:?} is not a DNS subdomain"));
    }
    if !is_qualified_name_part(name) {
        return Err(format!(
            "key {k:?} is not a qualified name (at most 63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric, with an optional DNS subdomain prefix and '/')"
        ));
    }
    Ok(())
}

fn check_label_value(v: &str) -> Result<(), String> {
    if v.is_empty() || is_qualified_name_part(v) {
        Ok(())
    } else {
        Err(format!(
            "value {v:?} is not a label value (at most 63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric)"
        ))
    }
}

/// IANA service name, as a named port must be: at most 15 of `[a-z0-9-]`, at least one
/// letter, no leading, trailing or double '-'.
fn check_port_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 15
        && s.chars().all(|c| is_alnum_lower(c) || c == '-')
        && s.chars().any(|c| c.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a port name (at most 15 lower-case alphanumerics or '-', with a letter)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn np(v: serde_json::Value) -> Result<model::NetworkPolicy, ConvertError> {
        let obj: networking::NetworkPolicy = serde_json::from_value(v).expect("k8s shape");
        network_policy(&obj)
    }

    fn np_err(spec: serde_json::Value) -> String {
        match np(json!({"metadata": {"namespace": "x", "name": "allow-web"}, "spec": spec})) {
            Ok(p) => panic!("accepted: {p:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn bad_operator_names_object_and_field() {
        let e = np_err(json!({"ingress": [{"from": [
            {"podSelector": {}},
            {"podSelector": {"matchExpressions": [{"key": "app", "operator": "Like", "values": ["a"]}]}}
        ]}]}));
        assert_eq!(
            e,
            "NetworkPolicy x/allow-web: spec.ingress[0].from[1].podSelector.matchExpressions[0].operator: \"Like\" is not one of In, NotIn, Exists, DoesNotExist"
        );
    }

    #[test]
    fn selector_values_follow_the_operator() {
        let e =
            np_err(json!({"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}));
        assert!(
            e.contains("spec.podSelector.matchExpressions[0].values: must be non-empty"),
            "{e}"
        );
        let e = np_err(json!({"podSelector": {"matchExpressions": [
            {"key": "a", "operator": "Exists", "values": ["x"]}]}}));
        assert!(e.contains("must be empty when operator is Exists"), "{e}");
        let p = np(json!({"metadata": {"name": "p"}, "spec": {"podSelector": {
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]}}}))
        .expect("valid");
        assert_eq!(p.namespace, "default");
        assert_eq!(p.pod_selector.to_string(), "app=web,tier notin (db)");
    }

    #[test]
    fn label_syntax() {
        assert!(check_label_key("app").is_ok());
        assert!(check_label_key("example.com/app-name_1").is_ok());
        assert!(check_label_key("Example.com/app").is_err());
        assert!(check_label_key("-app").is_err());
        assert!(check_label_key(&"a".repeat(64)).is_err());
        assert!(check_label_key("a/b/c").is_err());
        assert!(check_label_value("").is_ok());
        assert!(check_label_value("Web.1").is_ok());
        assert!(check_label_value("web!").is_err());
        let e = np_err(json!({"podSelector": {"matchLabels": {"app": "no spaces"}}}));
        assert!(e.contains("spec.podSelector.matchLabels[\"app\"]"), "{e}");
    }

    #[test]
    fn ip_blocks() {
        let ok = np(
            json!({"metadata": {"name": "p"}, "spec": {"egress": [{"to": [
            {"ipBlock": {"cidr": "10.0.0.1/8", "except": ["10.1.0.0/16"]}}]}]}}),
        )
        .expect("valid");
        assert_eq!(
            ok.egress[0].peers[0],
            Peer::IpBlock(IpBlock {
                cidr: "10.0.0.0/8".parse().expect("cidr"),
                except: vec!["10.1.0.0/16".parse().expect("cidr")],
            })
        );
        let e = np_err(json!({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]}));
        assert!(
            e.contains("spec.ingress[0].from[0].ipBlock.cidr: \"10.0.0.0/33\" is not a CIDR"),
            "{e}"
        );
        let e = np_err(json!({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.1"}}]}]}));
        assert!(e.contains("is not a CIDR"), "{e}");
        let e = np_err(
            json!({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}]}]}),
        );
        assert!(
            e.contains("ipBlock.except[0]: \"11.0.0.0/16\" must be a strict subset"),
            "{e}"
        );
        let e = np_err(
            json!({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8"]}}]}]}),
        );
        assert!(e.contains("strict subset"), "{e}");
        let e = np_err(
            json!({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["fd00::/64"]}}]}]}),
        );
        assert!(e.contains("same IP family"), "{e}");
        let e = np_err(
            json!({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]}),
        );
        assert!(
            e.contains("spec.ingress[0].from[0]: ipBlock may not be combined"),
            "{e}"
        );
        let e = np_err(json!({"ingress": [{"from": [{}]}]}));
        assert!(e.contains("must specify one of"), "{e}");
    }

    #[test]
    fn ports_and_end_ports() {
        let p = np(
            json!({"metadata": {"name": "p"}, "spec": {"ingress": [{"ports": [
            {"port": 80},
            {"protocol": "UDP", "port": "dns"},
            {"port": 8000, "endPort": 9000},
            {"protocol": "SCTP"}]}]}}),
        )
        .expect("valid");
        let ports = &p.ingress[0].ports;
        assert_eq!(
            ports[0],
            PolicyPort {
                protocol: Protocol::Tcp,
                port: Some(PortRef::Number(80)),
                end_port: None
            }
        );
        assert_eq!(ports[1].port, Some(PortRef::Name("dns".into())));
        assert_eq!(ports[1].protocol, Protocol::Udp);
        assert_eq!(ports[2].end_port, Some(9000));
        assert_eq!(
            ports[3],
            PolicyPort {
                protocol: Protocol::Sctp,
                port: None,
                end_port: None
            }
        );
        for (spec, want) in [
            (json!({"port": 0}), "ports[0].port: 0 is not a port number"),
            (json!({"port": 65536}), "is not a port number"),
            (
                json!({"port": 90, "endPort": 80}),
                "ports[0].endPort: 80 must be greater than or equal to port 90",
            ),
            (
                json!({"port": "http", "endPort": 80}),
                "may not be used with a named port",
            ),
            (json!({"endPort": 80}), "may not be used without port"),
            (
                json!({"protocol": "tcp"}),
                "ports[0].protocol: \"tcp\" is not one of TCP, UDP, SCTP",
            ),
            (json!({"port": "HTTP"}), "is not a port name"),
        ] {
            let e = np_err(json!({"ingress": [{"ports": [spec]}]}));
            assert!(e.contains(want), "{e} does not contain {want}");
        }
    }

    #[test]
    fn policy_types_default_and_explicit() {
        let p = np(json!({"metadata": {"name": "p"}, "spec": {"podSelector": {}}})).expect("valid");
        assert!(p.ingress_isolation && !p.egress_isolation);
        let p = np(json!({"metadata": {"name": "p"}, "spec": {"egress": [{}]}})).expect("valid");
        assert!(p.ingress_isolation && p.egress_isolation);
        assert_eq!(p.egress, vec![PolicyRule::default()]);
        let p = np(json!({"metadata": {"name": "p"}, "spec": {"policyTypes": ["Egress"]}}))
            .expect("valid");
        assert!(!p.ingress_isolation && p.egress_isolation);
        let e = np_err(json!({"policyTypes": ["Ingress", "Sideways"]}));
        assert!(
            e.contains("spec.policyTypes[1]: \"Sideways\" is not one of Ingress, Egress"),
            "{e}"
        );
    }

    #[test]
    fn namespaces_carry_their_name_label() {
        let ns: core::Namespace =
            serde_json::from_value(json!({"metadata": {"name": "web", "labels": {"team": "a"}}}))
                .expect("shape");
        let ns = namespace(&ns).expect("valid");
        assert_eq!(
            ns.labels.get(NAMESPACE_NAME_LABEL).map(String::as_str),
            Some("web")
        );
        assert_eq!(ns.labels.get("team").map(String::as_str), Some("a"));
        let bad: core::Namespace =
            serde_json::from_value(json!({"metadata": {"name": "Web"}})).expect("shape");
        assert!(
            namespace(&bad)
                .unwrap_err()
                .to_string()
                .starts_with("Namespace Web: metadata.name")
        );
    }

    #[test]
    fn pods() {
        let p: core::Pod = serde_json::from_value(json!({
            "metadata": {"namespace": "x", "name": "web-1", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [
                {"name": "http", "containerPort": 8080},
                {"containerPort": 53, "protocol": "UDP"}]}]},
            "status": {"podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}, {"ip": "fd00::5"}]}
        }))
        .expect("shape");
        let p = pod(&p).expect("valid");
        assert_eq!(p.node_name.as_deref(), Some("n1"));
        assert_eq!(p.ips.len(), 2);
        assert!(p.ips[1].is_ipv6());
        assert_eq!(
            p.ports[0],
            ContainerPort {
                name: Some("http".into()),
                port: 8080,
                protocol: Protocol::Tcp
            }
        );
        assert_eq!(p.ports[1].protocol, Protocol::Udp);
        assert!(!p.host_network);

        let p: core::Pod = serde_json::from_value(json!({
            "metadata": {"name": "a"}, "spec": {"containers": [], "hostNetwork": true},
            "status": {"podIP": "10.0.0.6"}}))
        .expect("shape");
        let p = pod(&p).expect("valid");
        assert_eq!(p.namespace, "default");
        assert!(p.host_network);
        assert_eq!(p.ips, vec!["10.0.0.6".parse::<IpAddr>().expect("ip")]);

        let p: core::Pod = serde_json::from_value(json!({
            "metadata": {"name": "a", "namespace": "x"}, "status": {"podIP": "10.0.0.300"}}))
        .expect("shape");
        assert_eq!(
            pod(&p).unwrap_err().to_string(),
            "Pod x/a: status.podIP: \"10.0.0.300\" is not an IP address"
        );
        let p: core::Pod =
            serde_json::from_value(json!({"metadata": {"namespace": "x"}})).expect("shape");
        assert_eq!(
            pod(&p).unwrap_err().to_string(),
            "Pod x/<no name>: metadata.name: is required"
        );
    }

    #[test]
    fn services_and_slices() {
        let s: core::Service = serde_json::from_value(json!({
            "metadata": {"namespace": "x", "name": "web"},
            "spec": {"clusterIPs": ["10.96.0.10", "fd00::10"], "selector": {"app": "web"},
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
                "sessionAffinity": "ClientIP", "externalTrafficPolicy": "Local"}
        }))
        .expect("shape");
        let s = service(&s).expect("valid");
        assert_eq!(s.service_type, "ClusterIP");
        assert_eq!(s.cluster_ips.len(), 2);
        assert_eq!(s.ports[0].target_port, Some(PortRef::Name("http".into())));
        assert_eq!(s.session_affinity_timeout, Some(DEFAULT_AFFINITY_TIMEOUT));
        assert!(s.external_traffic_local && !s.internal_traffic_local);

        let es: discovery::EndpointSlice = serde_json::from_value(json!({
            "metadata": {"namespace": "x", "name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.5"], "conditions": {"ready": false}, "nodeName": "n1"}],
            "ports": [{"name": "http", "port": 8080}]
        })).expect("shape");
        let es = endpoint_slice(&es).expect("valid");
        assert_eq!(es.service_name, "web");
        assert!(!es.endpoints[0].ready && !es.endpoints[0].serving);
        assert_eq!(es.ports[0].port, 8080);

        let n: core::Node = serde_json::from_value(json!({
            "metadata": {"name": "n1"}, "spec": {"podCIDR": "10.244.1.0/24"},
            "status": {"addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "192.0.2.1"}]}
        })).expect("shape");
        let n = node(&n).expect("valid");
        assert_eq!(n.internal_ips.len(), 1);
        assert_eq!(n.pod_cidrs.len(), 1);
    }
}
