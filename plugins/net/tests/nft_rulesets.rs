//! The bridge plugin's rule sets (masquerade, MAC spoof check) in real namespaces: the
//! kernel holds exactly what we expect (`nft list` text), replace/teardown/GC touch only
//! their owner, and packets prove the rules work: a masqueraded pod's source is rewritten,
//! a spoofed source MAC is dropped.

#![allow(clippy::unwrap_used)]

use ipnetwork::IpNetwork;
use twill_net::nft::{self, macspoof, masq};
use twill_testutil::traffic::{Proto, Server, ask};
use twill_testutil::{Netns, require_tool, unique};

mod common;
use common::run;

fn nft_list(ns: &Netns, family: &str, table: &str) -> String {
    require_tool("nft", "nftables");
    ns.exec_ok(&["nft", "list", "table", family, table])
}

fn nets(s: &[&str]) -> Vec<IpNetwork> {
    s.iter().map(|n| n.parse().unwrap()).collect()
}

/// A veth from `a` (named `a_if`, address `a_addr`) to `b` (named `b_if`, address `b_addr`).
fn link(a: &Netns, a_if: &str, a_addr: &str, b: &Netns, b_if: &str, b_addr: &str) {
    a.ip(&[
        "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.name,
    ]);
    a.ip(&["addr", "add", a_addr, "dev", a_if]);
    a.ip(&["link", "set", a_if, "up"]);
    b.ip(&["addr", "add", b_addr, "dev", b_if]);
    b.ip(&["link", "set", b_if, "up"]);
}

fn forwarding(ns: &Netns) {
    ns.exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
}

#[test]
fn masq_rules_per_attachment_replace_teardown_check_gc() {
    let ns = Netns::new("masq");
    let c1 = nets(&["10.1.2.2/24", "2001:db8:1::2/64"]);
    run(&ns, || {
        masq::setup("mynet", "c1", "eth0", &c1).unwrap();
        masq::setup("mynet", "c2", "eth0", &nets(&["10.1.2.3/24"])).unwrap();
        masq::setup("other", "c3", "eth0", &nets(&["10.9.0.2/16"])).unwrap();
        // A second ADD of the same attachment replaces its rules.
        masq::setup("mynet", "c1", "eth0", &c1).unwrap();
    });
    assert_eq!(
        nft_list(&ns, "inet", "twill_masq"),
        "\
table inet twill_masq {
\tchain masq_checks {
\t\tip saddr 10.1.2.3 ip daddr != 10.1.2.0/24 masquerade comment \"c2 if=eth0 net=mynet\"
\t\tip saddr 10.9.0.2 ip daddr != 10.9.0.0/16 masquerade comment \"c3 if=eth0 net=other\"
\t\tip saddr 10.1.2.2 ip daddr != 10.1.2.0/24 masquerade comment \"c1 if=eth0 net=mynet\"
\t\tip6 saddr 2001:db8:1::2 ip6 daddr != 2001:db8:1::/64 masquerade comment \"c1 if=eth0 net=mynet\"
\t}

\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tip daddr 224.0.0.0/4 return
\t\tip6 daddr ff00::/8 return
\t\tgoto masq_checks
\t}
}
"
    );
    run(&ns, || {
        masq::check("mynet", "c1", "eth0", &c1).unwrap();
        // CHECK compares content: another address for c1 is an error naming the rule.
        let e = masq::check("mynet", "c1", "eth0", &nets(&["10.1.2.9/24"])).unwrap_err();
        assert!(
            e.to_string()
                .contains("ip saddr 10.1.2.9 ip daddr != 10.1.2.0/24 masquerade"),
            "{e}"
        );
        // Scoped by network: c1 is unknown on "other".
        assert!(masq::check("other", "c1", "eth0", &c1).is_err());

        masq::teardown("mynet", "c2", "eth0").unwrap();
        masq::teardown("mynet", "c2", "eth0").unwrap();
        assert!(masq::check("mynet", "c2", "eth0", &nets(&["10.1.2.3/24"])).is_err());
        masq::check("mynet", "c1", "eth0", &c1).unwrap();

        // GC of "mynet" keeps the valid c1 and never looks at "other".
        masq::setup("mynet", "c4", "eth1", &nets(&["10.1.2.4/24"])).unwrap();
        masq::gc("mynet", &[("c1".into(), "eth0".into())]).unwrap();
        masq::check("mynet", "c1", "eth0", &c1).unwrap();
        masq::check("other", "c3", "eth0", &nets(&["10.9.0.2/16"])).unwrap();
        assert!(masq::check("mynet", "c4", "eth1", &nets(&["10.1.2.4/24"])).is_err());
        let left: Vec<_> = nft::list_rules(&masq::table(), masq::CHECKS_CHAIN)
            .unwrap()
            .into_iter()
            .map(|r| r.rule.comment.unwrap())
            .collect();
        assert_eq!(
            left,
            [
                "c3 if=eth0 net=other",
                "c1 if=eth0 net=mynet",
                "c1 if=eth0 net=mynet"
            ]
        );

        // A damaged dispatch chain is reported, and the next setup repairs it.
        let mut tx = nft::Transaction::new();
        tx.flush_chain(&masq::table(), masq::POSTROUTING_CHAIN);
        tx.commit().unwrap();
        let e = masq::check("mynet", "c1", "eth0", &c1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "masquerade chain twill_masq/postrouting is missing or changed"
        );
        masq::setup("mynet", "c1", "eth0", &c1).unwrap();
        masq::check("mynet", "c1", "eth0", &c1).unwrap();
    });
}

#[test]
fn masq_teardown_and_gc_without_table_succeed() {
    let ns = Netns::new("masq0");
    run(&ns, || {
        masq::teardown("mynet", "c1", "eth0").unwrap();
        masq::gc("mynet", &[]).unwrap();
        let e = masq::check("mynet", "c1", "eth0", &nets(&["10.1.2.2/24"])).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
        assert!(!nft::table_exists(&masq::table()).unwrap());
    });
}

#[test]
fn masquerade_rewrites_the_source_of_traffic_leaving_the_subnet() {
    // pod (10.98.0.2) -- node (10.98.0.1 | 172.31.0.1, 10.98.200.1) -- ext (172.31.0.2)
    //                                                                  -- near (10.98.200.2)
    let node = Netns::new("mqn");
    let pod = Netns::new("mqp");
    let ext = Netns::new("mqe");
    let near = Netns::new("mqs");
    let (vp, vx, vs) = (unique("vp"), unique("vx"), unique("vs"));
    link(&node, &vp, "10.98.0.1/24", &pod, "eth0", "10.98.0.2/24");
    link(&node, &vx, "172.31.0.1/24", &ext, "eth0", "172.31.0.2/24");
    link(
        &node,
        &vs,
        "10.98.200.1/24",
        &near,
        "eth0",
        "10.98.200.2/24",
    );
    pod.ip(&["route", "add", "default", "via", "10.98.0.1"]);
    // Both servers can route back to the pod, so without masquerade they see its address.
    ext.ip(&["route", "add", "10.98.0.0/16", "via", "172.31.0.1"]);
    near.ip(&["route", "add", "10.98.0.0/16", "via", "10.98.200.1"]);
    forwarding(&node);
    let _far_srv = Server::start(&ext, Proto::Tcp, "172.31.0.2", 8000, "ext");
    let _near_srv = Server::start(&near, Proto::Tcp, "10.98.200.2", 8000, "near");

    assert_eq!(
        ask(&pod, Proto::Tcp, "172.31.0.2", 8000).unwrap(),
        "ext 10.98.0.2"
    );
    // The pod's subnet for masquerading is 10.98.0.0/16: the near server is inside it.
    let addrs = nets(&["10.98.0.2/16"]);
    run(&node, || masq::setup("mynet", "c1", "eth0", &addrs)).unwrap();
    assert_eq!(
        ask(&pod, Proto::Tcp, "172.31.0.2", 8000).unwrap(),
        "ext 172.31.0.1"
    );
    assert_eq!(
        ask(&pod, Proto::Tcp, "10.98.200.2", 8000).unwrap(),
        "near 10.98.0.2"
    );
    run(&node, || masq::teardown("mynet", "c1", "eth0")).unwrap();
    assert_eq!(
        ask(&pod, Proto::Tcp, "172.31.0.2", 8000).unwrap(),
        "ext 10.98.0.2"
    );
}

#[test]
fn macspoof_rule_per_attachment() {
    let ns = Netns::new("msp");
    run(&ns, || {
        macspoof::setup("mynet", "c1", "eth0", "veth1", "02:00:00:00:00:01").unwrap();
        macspoof::setup("mynet", "c2", "eth0", "veth2", "0A:58:0A:01:02:03").unwrap();
        // Re-ADD with a new MAC replaces c1's rule.
        macspoof::setup("mynet", "c1", "eth0", "veth1", "02:00:00:00:00:09").unwrap();
    });
    assert_eq!(
        nft_list(&ns, "bridge", "twill_macspoof"),
        "\
table bridge twill_macspoof {
\tchain prerouting {
\t\ttype filter hook prerouting priority dstnat; policy accept;
\t\tiifname \"veth2\" ether saddr != 0a:58:0a:01:02:03 drop comment \"c2 if=eth0 net=mynet\"
\t\tiifname \"veth1\" ether saddr != 02:00:00:00:00:09 drop comment \"c1 if=eth0 net=mynet\"
\t}
}
"
    );
    run(&ns, || {
        macspoof::check("mynet", "c1", "eth0", "veth1", "02:00:00:00:00:09").unwrap();
        assert!(macspoof::check("mynet", "c1", "eth0", "veth1", "02:00:00:00:00:01").is_err());
        macspoof::teardown("mynet", "c1", "eth0").unwrap();
        macspoof::teardown("mynet", "c1", "eth0").unwrap();
        assert!(macspoof::check("mynet", "c1", "eth0", "veth1", "02:00:00:00:00:09").is_err());
        macspoof::check("mynet", "c2", "eth0", "veth2", "0a:58:0a:01:02:03").unwrap();
        // GC is scoped by network: another network's GC keeps c2, ours removes it.
        macspoof::setup("mynet", "c3", "eth0", "veth3", "02:00:00:00:00:03").unwrap();
        macspoof::gc("othernet", &[]).unwrap();
        macspoof::check("mynet", "c2", "eth0", "veth2", "0a:58:0a:01:02:03").unwrap();
        macspoof::gc("mynet", &[("c3".to_owned(), "eth0".to_owned())]).unwrap();
        assert!(macspoof::check("mynet", "c2", "eth0", "veth2", "0a:58:0a:01:02:03").is_err());
        macspoof::check("mynet", "c3", "eth0", "veth3", "02:00:00:00:00:03").unwrap();
    });
    let empty = Netns::new("msp0");
    run(&empty, || macspoof::teardown("mynet", "c1", "eth0")).unwrap();
}

#[test]
fn macspoof_drops_frames_with_a_foreign_source_mac() {
    // pod eth0 (MAC 02:00:00:00:00:02) -- vethX in bridge br0 (10.97.0.1) of the node
    let node = Netns::new("msn");
    let pod = Netns::new("msq");
    let veth = unique("vh");
    node.ip(&["link", "add", "br0", "type", "bridge"]);
    node.ip(&["addr", "add", "10.97.0.1/24", "dev", "br0"]);
    node.ip(&["link", "set", "br0", "up"]);
    node.ip(&[
        "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &pod.name,
    ]);
    node.ip(&["link", "set", &veth, "master", "br0", "up"]);
    pod.ip(&["link", "set", "eth0", "address", "02:00:00:00:00:02"]);
    pod.ip(&["addr", "add", "10.97.0.2/24", "dev", "eth0"]);
    pod.ip(&["link", "set", "eth0", "up"]);
    let _srv = Server::start(&node, Proto::Tcp, "10.97.0.1", 8000, "node");

    assert_eq!(
        ask(&pod, Proto::Tcp, "10.97.0.1", 8000).unwrap(),
        "node 10.97.0.2"
    );
    // The container is supposed to have ...:01; it sends from ...:02, so it is cut off.
    run(&node, || {
        macspoof::setup("mynet", "c1", "eth0", &veth, "02:00:00:00:00:01")
    })
    .unwrap();
    pod.ip(&["neigh", "flush", "dev", "eth0"]);
    assert!(ask(&pod, Proto::Tcp, "10.97.0.1", 8000).is_err());
    run(&node, || macspoof::teardown("mynet", "c1", "eth0")).unwrap();
    // Forget the failed ARP resolution so the pod asks again.
    pod.ip(&["neigh", "flush", "dev", "eth0"]);
    assert_eq!(
        ask(&pod, Proto::Tcp, "10.97.0.1", 8000).unwrap(),
        "node 10.97.0.2"
    );
    // With its real MAC the container passes the check.
    run(&node, || {
        macspoof::setup("mynet", "c1", "eth0", &veth, "02:00:00:00:00:02")
    })
    .unwrap();
    pod.ip(&["neigh", "flush", "dev", "eth0"]);
    assert_eq!(
        ask(&pod, Proto::Tcp, "10.97.0.1", 8000).unwrap(),
        "node 10.97.0.2"
    );
}
