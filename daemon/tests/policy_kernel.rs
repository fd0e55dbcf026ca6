//! The policy engine against the real kernel: a node namespace with a bridge, three pod
//! namespaces on it (same-node traffic crosses the bridge, so it is seen through
//! br_netfilter) and an "outside" namespace routed through the node (traffic from other
//! nodes takes this path). Real TCP and UDP servers answer, or the packets are dropped.
//! Each test builds its own namespaces; they are removed on drop, also on failure.
#![allow(clippy::unwrap_used)]

use twill_net::netlink::Netns as NsHandle;
use twill_net::nft::{self, Table};
use twill_testutil::Netns;
use twill_testutil::traffic::{Proto, Server, ask};
use twilld::policy::apply::{self, table_ref};
use twilld::policy::compile::{Options, compile};
use twilld::policy::controller::normalized;
use twilld::source::model::*;

struct Node {
    node: Netns,
    pods: Vec<(String, Netns, String, String)>,
    outside: Netns,
    _servers: Vec<Server>,
}

const PODS: [(&str, &str, &str); 3] = [
    ("x/a", "10.50.0.10", "fd50::10"),
    ("x/b", "10.50.0.11", "fd50::11"),
    ("y/c", "10.50.0.12", "fd50::12"),
];
const OUTSIDE: &str = "10.60.0.2";

fn setup() -> Node {
    twill_testutil::require_tool("nft", "nftables");
    let node = Netns::new("tpn");
    node.ip(&["link", "add", "br0", "type", "bridge"]);
    node.ip(&["addr", "add", "10.50.0.1/24", "dev", "br0"]);
    node.ip(&["addr", "add", "fd50::1/64", "dev", "br0", "nodad"]);
    node.ip(&["link", "set", "br0", "up"]);
    node.exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    node.exec_ok(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    let mut pods = Vec::new();
    let mut servers = Vec::new();
    for (i, (key, v4, v6)) in PODS.iter().enumerate() {
        let ns = Netns::new("tpp");
        let host = format!("vp{i}");
        node.ip(&[
            "link", "add", &host, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
        ]);
        node.ip(&["link", "set", &host, "master", "br0", "up"]);
        ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", "eth0"]);
        ns.ip(&["addr", "add", &format!("{v6}/64"), "dev", "eth0", "nodad"]);
        ns.ip(&["link", "set", "eth0", "up"]);
        ns.ip(&["route", "add", "default", "via", "10.50.0.1"]);
        ns.ip(&["-6", "route", "add", "default", "via", "fd50::1"]);
        for port in [80, 81] {
            servers.push(Server::start(&ns, Proto::Tcp, "0.0.0.0", port, key));
            servers.push(Server::start(&ns, Proto::Udp, "0.0.0.0", port, key));
            servers.push(Server::start(&ns, Proto::Tcp, v6, port, key));
        }
        pods.push((key.to_string(), ns, v4.to_string(), v6.to_string()));
    }
    let outside = Netns::new("tpo");
    node.ip(&[
        "link",
        "add",
        "vout",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        &outside.name,
    ]);
    node.ip(&["addr", "add", "10.60.0.1/24", "dev", "vout"]);
    node.ip(&["link", "set", "vout", "up"]);
    outside.ip(&["addr", "add", &format!("{OUTSIDE}/24"), "dev", "eth0"]);
    outside.ip(&["link", "set", "eth0", "up"]);
    outside.ip(&["route", "add", "10.50.0.0/24", "via", "10.60.0.1"]);
    servers.push(Server::start(&outside, Proto::Tcp, OUTSIDE, 80, "outside"));
    Node {
        node,
        pods,
        outside,
        _servers: servers,
    }
}

impl Node {
    fn pod(&self, key: &str) -> &Netns {
        &self.pods.iter().find(|p| p.0 == key).unwrap().1
    }

    fn v4(&self, key: &str) -> &str {
        &self.pods.iter().find(|p| p.0 == key).unwrap().2
    }

    fn v6(&self, key: &str) -> &str {
        &self.pods.iter().find(|p| p.0 == key).unwrap().3
    }

    /// Runs `f` with the calling thread's namespace being the node's.
    fn in_node<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        NsHandle::open(self.node.path()).unwrap().run(f).unwrap()
    }

    fn apply(&self, current: Option<&Table>, next: &Table) -> Result<(), nft::NftError> {
        let (tx, _) = apply::plan(current, next);
        self.in_node(|| apply::commit(&tx))
    }

    fn kernel(&self) -> Option<Table> {
        self.in_node(|| nft::read_table(&table_ref())).unwrap()
    }
}

fn model(policies: Vec<NetworkPolicy>) -> Model {
    let mut m = Model {
        synced: true,
        ..Model::default()
    };
    for ns in ["x", "y"] {
        let mut labels = Labels::new();
        labels.insert(NAMESPACE_NAME_LABEL.into(), ns.into());
        m.namespaces.insert(
            ns.into(),
            Namespace {
                name: ns.into(),
                labels,
            },
        );
    }
    for (key, v4, v6) in PODS {
        let (ns, name) = key.split_once('/').unwrap();
        let mut labels = Labels::new();
        labels.insert("pod".into(), name.into());
        m.pods.insert(
            ObjectKey::new(ns, name),
            Pod {
                namespace: ns.into(),
                name: name.into(),
                labels,
                node_name: Some("node1".into()),
                ips: vec![v4.parse().unwrap(), v6.parse().unwrap()],
                ports: vec![ContainerPort {
                    name: Some("web".into()),
                    port: 81,
                    protocol: Protocol::Tcp,
                }],
                host_network: false,
            },
        );
    }
    for p in policies {
        m.policies.insert(p.key(), p);
    }
    m
}

fn sel(k: &str, v: &str) -> Selector {
    Selector::labels(&[(k, v)])
}

fn ingress_policy(key: &str, selector: Selector, rules: Vec<PolicyRule>) -> NetworkPolicy {
    let (ns, name) = key.split_once('/').unwrap();
    NetworkPolicy {
        namespace: ns.into(),
        name: name.into(),
        pod_selector: selector,
        ingress_isolation: true,
        egress_isolation: false,
        ingress: rules,
        egress: vec![],
    }
}

fn opts() -> Options {
    Options {
        node: "node1".into(),
        log_denied: None,
    }
}

fn reach(from: &Netns, addr: &str, proto: Proto, port: u16) -> bool {
    ask(from, proto, addr, port).is_ok()
}

#[test]
fn policies_allow_and_deny_real_traffic() {
    let n = setup();
    // x/a accepts TCP on its named port "web" (81) from x/b only, and UDP 80 from the
    // outside network's 10.60.0.0/24 except nothing.
    let pol = ingress_policy(
        "x/a-web",
        sel("pod", "a"),
        vec![
            PolicyRule {
                peers: vec![Peer::Pods(sel("pod", "b"))],
                ports: vec![PolicyPort {
                    protocol: Protocol::Tcp,
                    port: Some(PortRef::Name("web".into())),
                    end_port: None,
                }],
            },
            PolicyRule {
                peers: vec![Peer::IpBlock(IpBlock {
                    cidr: "10.60.0.0/24".parse().unwrap(),
                    except: vec![],
                })],
                ports: vec![PolicyPort {
                    protocol: Protocol::Udp,
                    port: Some(PortRef::Number(80)),
                    end_port: None,
                }],
            },
        ],
    );
    let m = model(vec![pol]);
    // With --policy-log: the rate-limited nflog rule is accepted by the kernel too.
    let log_opts = Options {
        log_denied: Some(twilld::policy::compile::LogDenied {
            group: 100,
            rate: 10,
        }),
        ..opts()
    };
    let c = compile(&m, &log_opts);
    n.apply(None, &c.table).unwrap();
    assert_eq!(
        normalized(&n.kernel().unwrap()),
        normalized(&c.table),
        "read back"
    );
    // nft itself prints exactly our rendering of the compiled table.
    let listed = n
        .node
        .exec_ok(&["nft", "list", "table", "inet", "twill_policy"]);
    println!("{listed}");
    assert_eq!(listed, c.table.to_string());

    let a = n.v4("x/a").to_owned();
    assert!(
        reach(n.pod("x/b"), &a, Proto::Tcp, 81),
        "x/b -> x/a web: allowed"
    );
    assert!(
        !reach(n.pod("x/b"), &a, Proto::Tcp, 80),
        "x/b -> x/a 80: no rule"
    );
    assert!(
        !reach(n.pod("y/c"), &a, Proto::Tcp, 81),
        "y/c is not pod=b in x"
    );
    assert!(reach(&n.outside, &a, Proto::Udp, 80), "routed, ipBlock");
    assert!(!reach(&n.outside, &a, Proto::Tcp, 81), "routed, no rule");
    // IPv6: x/b's IPv6 address is a selector peer too.
    let a6 = n.v6("x/a").to_owned();
    assert!(reach(n.pod("x/b"), &a6, Proto::Tcp, 81), "IPv6 allowed");
    assert!(!reach(n.pod("y/c"), &a6, Proto::Tcp, 81), "IPv6 denied");
    // Not isolated: x/b accepts everything, and x/a may send anywhere (replies included).
    assert!(reach(n.pod("x/a"), n.v4("x/b"), Proto::Tcp, 80));
    assert!(reach(n.pod("y/c"), n.v4("x/b"), Proto::Udp, 81));
    // The node itself (kubelet probes) always reaches its pods.
    assert!(reach(&n.node, &a, Proto::Tcp, 80), "node -> pod");
    // Counters count what the policy accepted.
    let k = n.kernel().unwrap();
    let objs = c.policies.values().next().unwrap();
    let (packets, _) = twilld::policy::explain::counters(Some(&k), objs);
    assert!(packets >= 3, "accepted packets counted: {packets}");
    // ... and the namespace chain's drop rule counts what was denied.
    let drops: u64 = k
        .chains
        .iter()
        .find(|c| c.name == "ns-in/x")
        .unwrap()
        .rules
        .iter()
        .flat_map(|r| &r.stmts)
        .filter_map(|s| match s {
            nft::Stmt::Counter { packets, .. } => Some(*packets),
            _ => None,
        })
        .sum();
    assert!(drops >= 3, "denied packets counted: {drops}");
}

#[test]
fn pod_churn_is_applied_incrementally_and_a_failed_apply_keeps_the_ruleset() {
    let n = setup();
    let pol = ingress_policy(
        "x/from-b",
        sel("pod", "a"),
        vec![PolicyRule {
            peers: vec![Peer::Pods(sel("role", "client"))],
            ports: vec![],
        }],
    );
    let m1 = model(vec![pol]);
    let c1 = compile(&m1, &opts());
    n.apply(None, &c1.table).unwrap();
    let a = n.v4("x/a").to_owned();
    assert!(
        !reach(n.pod("x/b"), &a, Proto::Tcp, 80),
        "x/b has no role yet"
    );

    // Relabel x/b: set elements only, and now it gets through.
    let mut m2 = m1.clone();
    m2.pods
        .get_mut(&ObjectKey::new("x", "b"))
        .unwrap()
        .labels
        .insert("role".into(), "client".into());
    let c2 = compile(&m2, &opts());
    let (tx, summary) = apply::plan(Some(&c1.table), &c2.table);
    assert!(summary.elements_only(), "{summary:?}");
    assert_eq!(summary.elements_added, 2, "IPv4 and IPv6 address");
    n.in_node(|| apply::commit(&tx)).unwrap();
    assert!(
        reach(n.pod("x/b"), &a, Proto::Tcp, 80),
        "relabelled peer allowed"
    );
    assert_eq!(normalized(&n.kernel().unwrap()), normalized(&c2.table));

    // A transaction the kernel refuses (a rule jumping to a chain that does not exist)
    // changes nothing.
    let mut broken = c2.table.clone();
    if let Some(ch) = broken.chains.iter_mut().find(|c| c.name == "ns-in/x") {
        ch.rules.insert(
            0,
            nft::Rule::new(vec![nft::Stmt::Verdict(nft::Verdict::Jump(
                "missing".into(),
            ))]),
        );
    }
    assert!(n.apply(Some(&c2.table), &broken).is_err());
    assert_eq!(
        normalized(&n.kernel().unwrap()),
        normalized(&c2.table),
        "kept"
    );
    assert!(reach(n.pod("x/b"), &a, Proto::Tcp, 80));
    assert!(!reach(n.pod("y/c"), &a, Proto::Tcp, 80));

    // Deleting the policy removes its chains and sets; x/a is open again.
    let m3 = model(vec![]);
    let c3 = compile(&m3, &opts());
    n.apply(Some(&c2.table), &c3.table).unwrap();
    assert!(reach(n.pod("y/c"), &a, Proto::Tcp, 80));
    assert_eq!(normalized(&n.kernel().unwrap()), normalized(&c3.table));
    // A full apply over a table someone else modified replaces it atomically.
    n.apply(None, &c1.table).unwrap();
    assert_eq!(normalized(&n.kernel().unwrap()), normalized(&c1.table));
}

#[test]
fn egress_isolation_blocks_the_source_side() {
    let n = setup();
    let (ns, name) = ("x", "b-egress");
    let pol = NetworkPolicy {
        namespace: ns.into(),
        name: name.into(),
        pod_selector: sel("pod", "b"),
        ingress_isolation: false,
        egress_isolation: true,
        ingress: vec![],
        egress: vec![
            PolicyRule {
                peers: vec![Peer::Namespaces(sel(NAMESPACE_NAME_LABEL, "y"))],
                ports: vec![PolicyPort {
                    protocol: Protocol::Tcp,
                    port: Some(PortRef::Number(80)),
                    end_port: Some(81),
                }],
            },
            // "The internet": every IPv4 address but the pod network, on TCP 80.
            PolicyRule {
                peers: vec![Peer::IpBlock(IpBlock {
                    cidr: "0.0.0.0/0".parse().unwrap(),
                    except: vec!["10.50.0.0/24".parse().unwrap()],
                })],
                ports: vec![PolicyPort {
                    protocol: Protocol::Tcp,
                    port: Some(PortRef::Number(80)),
                    end_port: None,
                }],
            },
        ],
    };
    let c = compile(&model(vec![pol]), &opts());
    n.apply(None, &c.table).unwrap();
    let b = n.pod("x/b");
    assert!(
        reach(b, n.v4("y/c"), Proto::Tcp, 81),
        "to namespace y, 80-81"
    );
    assert!(!reach(b, n.v4("y/c"), Proto::Udp, 80), "UDP not listed");
    assert!(!reach(b, n.v4("x/a"), Proto::Tcp, 80), "x/a is not in y");
    assert!(
        reach(b, OUTSIDE, Proto::Tcp, 80),
        "outside: 0.0.0.0/0 except the pods"
    );
    assert!(
        !reach(b, n.v6("x/a"), Proto::Tcp, 80),
        "0.0.0.0/0 is IPv4 only"
    );
    assert!(
        reach(n.pod("x/a"), OUTSIDE, Proto::Tcp, 80),
        "x/a is not isolated"
    );
    assert!(
        reach(n.pod("x/a"), n.v4("x/b"), Proto::Tcp, 80),
        "ingress to x/b open; replies pass"
    );
}

/// A listener on an nflog group, in the namespace it was opened in: what `--policy-log`
/// sends there is read back, not assumed.
struct NflogListener(netlink_sys::Socket);

const NFNL_SUBSYS_ULOG: u16 = 4;
const NFULNL_MSG_PACKET: u16 = 0;
const NFULNL_MSG_CONFIG: u16 = 1;
const NFULA_CFG_CMD: u16 = 1;
const NFULNL_CFG_CMD_BIND: u8 = 1;
const NFULA_PREFIX: u16 = 10;

impl NflogListener {
    /// Binds `group` (NFULNL_CFG_CMD_BIND), as `ulogd` or `nft monitor`-style tools do.
    fn bind(group: u16) -> NflogListener {
        let mut s = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_NETFILTER).unwrap();
        s.bind_auto().unwrap();
        // nlmsghdr + nfgenmsg + one attribute (NFULA_CFG_CMD, 1 byte padded to 4).
        let mut msg = Vec::new();
        let len: u32 = 16 + 4 + 8;
        msg.extend(len.to_ne_bytes());
        msg.extend(((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG).to_ne_bytes());
        msg.extend((libc::NLM_F_REQUEST as u16 | libc::NLM_F_ACK as u16).to_ne_bytes());
        msg.extend(1u32.to_ne_bytes()); // seq
        msg.extend(0u32.to_ne_bytes()); // pid
        msg.extend([libc::AF_UNSPEC as u8, 0]); // nfgenmsg: family, version
        msg.extend(group.to_be_bytes()); // res_id: the group
        msg.extend(5u16.to_ne_bytes()); // nla_len: 4 + 1
        msg.extend(NFULA_CFG_CMD.to_ne_bytes());
        msg.extend([NFULNL_CFG_CMD_BIND, 0, 0, 0]);
        let kernel = netlink_sys::SocketAddr::new(0, 0);
        s.send_to(&msg, &kernel, 0).unwrap();
        let mut buf = vec![0u8; 8192];
        let n = s.recv(&mut &mut buf[..], 0).unwrap();
        // NLMSG_ERROR with errno 0: bound.
        assert!(n >= 20, "short nflog bind reply");
        let errno = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
        assert_eq!(errno, 0, "bind nflog group {group}: errno {}", -errno);
        let tv = libc::timeval {
            tv_sec: 5,
            tv_usec: 0,
        };
        // SAFETY: a valid socket and a timeval of the right size.
        unsafe {
            use std::os::fd::AsRawFd;
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
        }
        NflogListener(s)
    }

    /// The prefixes of the packets logged so far (waits up to 5 s for the first).
    fn prefixes(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = self.0.recv(&mut &mut buf[..], 0) {
            let mut off = 0;
            while off + 16 <= n {
                let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
                let ty = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().unwrap());
                if len < 16 || off + len > n {
                    break;
                }
                if ty == (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET {
                    let mut a = off + 20;
                    while a + 4 <= off + len {
                        let alen = u16::from_ne_bytes(buf[a..a + 2].try_into().unwrap()) as usize;
                        let aty =
                            u16::from_ne_bytes(buf[a + 2..a + 4].try_into().unwrap()) & 0x7fff;
                        if alen < 4 {
                            break;
                        }
                        if aty == NFULA_PREFIX {
                            let v = &buf[a + 4..a + alen];
                            let v = v.split(|b| *b == 0).next().unwrap_or(v);
                            out.push(String::from_utf8_lossy(v).into_owned());
                        }
                        a += (alen + 3) & !3;
                    }
                }
                off += (len + 3) & !3;
            }
            if !out.is_empty() {
                break;
            }
        }
        out
    }
}

#[test]
fn denied_packets_are_logged_to_the_nflog_group() {
    let n = setup();
    let pol = ingress_policy("x/deny-a", sel("pod", "a"), vec![]);
    let opts = Options {
        log_denied: Some(twilld::policy::compile::LogDenied { group: 7, rate: 10 }),
        ..opts()
    };
    let c = compile(&model(vec![pol]), &opts);
    n.apply(None, &c.table).unwrap();
    let listener = n.in_node(|| NflogListener::bind(7));
    assert!(!reach(n.pod("y/c"), n.v4("x/a"), Proto::Udp, 80));
    let prefixes = listener.prefixes();
    assert!(
        prefixes.iter().any(|p| p == "twill-deny ingress x: "),
        "nflog group 7 got {prefixes:?}"
    );
}
