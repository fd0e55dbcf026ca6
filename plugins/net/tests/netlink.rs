//! The netlink layer against the real kernel, inside namespaces each test creates.
//! Every change is cross-checked with iproute2 where it can see it.
#![allow(clippy::unwrap_used)]

use ipnetwork::IpNetwork;
use std::time::Duration;
use twill_net::netlink::{
    BridgeOptions, BridgePort, Family, Handle, MacAddr, Netns, OperState, Route, RouteScope,
    VethOptions, sysctl,
};
use twill_testutil::Netns as TestNs;

fn handle(ns: &TestNs) -> (Netns, Handle) {
    let n = Netns::open(ns.path()).unwrap();
    let h = Handle::in_netns(&n).unwrap();
    (n, h)
}

fn net(s: &str) -> IpNetwork {
    s.parse().unwrap()
}

#[test]
fn handle_does_not_move_the_calling_thread() {
    let ns = TestNs::new("nlth");
    let before = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    let (n, mut h) = handle(&ns);
    assert_eq!(
        std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
        before
    );
    assert!(!n.is_current().unwrap());
    // The handle sees the test namespace (only lo), not ours.
    let links = h.links().unwrap();
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(links[0].name, "lo");
}

#[test]
fn opening_a_missing_or_foreign_path_fails_clearly() {
    let e = Netns::open("/run/netns/twill-no-such-ns").unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert_eq!(
        e.to_string(),
        "open netns /run/netns/twill-no-such-ns: no such file or directory"
    );
    let e = Netns::open("/etc/hostname").unwrap_err();
    assert!(e.to_string().contains("not a network namespace"), "{e}");
}

#[test]
fn bridge_lifecycle_and_link_attributes() {
    let ns = TestNs::new("nlbr");
    let (_n, mut h) = handle(&ns);
    assert!(h.find_link("br-t").unwrap().is_none());
    let e = h.link("br-t").unwrap_err();
    assert_eq!(e.to_string(), "get link br-t: no such device");

    h.create_bridge(&BridgeOptions {
        name: "br-t",
        mtu: Some(1400),
        vlan_filtering: false,
    })
    .unwrap();
    let e = h
        .create_bridge(&BridgeOptions {
            name: "br-t",
            ..Default::default()
        })
        .unwrap_err();
    assert!(e.is_exists());
    assert_eq!(e.to_string(), "create bridge br-t: file exists");

    let br = h.link("br-t").unwrap();
    assert!(br.is_bridge());
    assert_eq!(br.mtu, 1400);
    assert_eq!(br.vlan_filtering, Some(false));
    assert!(!br.up && !br.promisc);
    assert_eq!(h.link_by_index(br.index).unwrap().name, "br-t");

    let mac: MacAddr = "02:00:00:00:aa:01".parse().unwrap();
    h.set_mac(&br, mac).unwrap();
    h.set_mtu(&br, 1300).unwrap();
    h.set_promisc(&br, true).unwrap();
    h.set_up(&br).unwrap();
    let br = h.link("br-t").unwrap();
    assert_eq!(
        (br.mac, br.mtu, br.promisc, br.up),
        (Some(mac), 1300, true, true)
    );
    let shown = ns.ip(&["-d", "link", "show", "br-t"]);
    assert!(
        shown.contains("02:00:00:00:aa:01") && shown.contains("mtu 1300"),
        "{shown}"
    );
    assert!(
        shown.contains("PROMISC") && shown.contains(",UP"),
        "{shown}"
    );

    h.set_promisc(&br, false).unwrap();
    h.set_down(&br).unwrap();
    let br = h.link("br-t").unwrap();
    assert!(!br.promisc && !br.up);

    h.rename(&br, "br-renamed").unwrap();
    let br = h.link("br-renamed").unwrap();
    h.delete_link(&br).unwrap();
    assert!(h.find_link("br-renamed").unwrap().is_none());
    let e = h.delete_link(&br).unwrap_err();
    assert!(e.is_not_found(), "{e}");
}

#[test]
fn veth_peer_is_created_directly_in_the_other_namespace() {
    let host = TestNs::new("nlvh");
    let cont = TestNs::new("nlvc");
    let (_hn, mut h) = handle(&host);
    let (cn, mut c) = handle(&cont);
    let peer_mac: MacAddr = "02:00:00:00:00:07".parse().unwrap();
    h.create_veth(&VethOptions {
        name: "vethtest0",
        peer_name: "eth0",
        peer_netns: Some(&cn),
        mtu: Some(1450),
        mac: None,
        peer_mac: Some(peer_mac),
    })
    .unwrap();
    let hv = h.link("vethtest0").unwrap();
    let cv = c.link("eth0").unwrap();
    assert!(hv.is_veth() && cv.is_veth());
    assert_eq!((hv.mtu, cv.mtu), (1450, 1450));
    assert_eq!(cv.mac, Some(peer_mac));
    assert_eq!(hv.peer_index, Some(cv.index));
    assert_eq!(cv.peer_index, Some(hv.index));
    assert!(
        h.find_link("eth0").unwrap().is_none(),
        "peer must not appear in the host"
    );
    assert!(
        cont.ip(&["link", "show", "eth0"])
            .contains("02:00:00:00:00:07")
    );

    // The peer name is checked in the target namespace.
    let e = h
        .create_veth(&VethOptions {
            name: "vethtest1",
            peer_name: "eth0",
            peer_netns: Some(&cn),
            ..Default::default()
        })
        .unwrap_err();
    assert!(e.is_exists(), "{e}");
    assert!(
        h.find_link("vethtest1").unwrap().is_none(),
        "nothing half-created"
    );

    // Oper state: down until both ends are up.
    let e = h
        .wait_oper_state("vethtest0", OperState::Up, &[Duration::from_millis(10)])
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("wait for vethtest0 to become up: state is"),
        "{e}"
    );
    h.set_up(&hv).unwrap();
    c.set_up(&cv).unwrap();
    let up = h
        .wait_oper_state(
            "vethtest0",
            OperState::Up,
            &[
                Duration::from_millis(50),
                Duration::from_millis(500),
                Duration::from_secs(1),
            ],
        )
        .unwrap();
    assert_eq!(up.oper_state, OperState::Up);

    // Deleting one end removes the pair.
    h.delete_link(&hv).unwrap();
    assert!(c.find_link("eth0").unwrap().is_none());
}

#[test]
fn bridge_ports_hairpin_and_isolation() {
    let ns = TestNs::new("nlbp");
    let (_n, mut h) = handle(&ns);
    h.create_bridge(&BridgeOptions {
        name: "br-p",
        ..Default::default()
    })
    .unwrap();
    h.create_veth(&VethOptions {
        name: "vp0",
        peer_name: "vp1",
        ..Default::default()
    })
    .unwrap();
    let br = h.link("br-p").unwrap();
    let port = h.link("vp0").unwrap();
    assert_eq!(port.bridge_port, None);
    h.set_master(&port, &br).unwrap();
    let port = h.link("vp0").unwrap();
    assert_eq!(port.master, Some(br.index));
    assert_eq!(port.bridge_port, Some(BridgePort::default()));

    h.set_bridge_port(
        &port,
        &BridgePort {
            hairpin: true,
            isolated: true,
        },
    )
    .unwrap();
    let port = h.link("vp0").unwrap();
    assert_eq!(
        port.bridge_port,
        Some(BridgePort {
            hairpin: true,
            isolated: true
        })
    );
    let shown = ns.ip(&["-d", "link", "show", "vp0"]);
    assert!(
        shown.contains("hairpin on") && shown.contains("isolated on"),
        "{shown}"
    );

    h.set_nomaster(&port).unwrap();
    assert_eq!(h.link("vp0").unwrap().master, None);
    // Port attributes need a bridge.
    assert!(h.set_bridge_port(&port, &BridgePort::default()).is_err());
}

fn kernel_has_vlan_filtering() -> bool {
    use std::io::Read;
    let Ok(f) = std::fs::File::open("/proc/config.gz") else {
        return true;
    };
    let mut out = String::new();
    let mut gz = std::process::Command::new("zcat")
        .stdin(f)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    gz.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    gz.wait().unwrap();
    out.lines().any(|l| l == "CONFIG_BRIDGE_VLAN_FILTERING=y")
}

#[test]
fn bridge_vlans_or_a_clear_error_without_kernel_support() {
    let ns = TestNs::new("nlvl");
    let (_n, mut h) = handle(&ns);
    let res = h.create_bridge(&BridgeOptions {
        name: "br-v",
        mtu: None,
        vlan_filtering: true,
    });
    if !kernel_has_vlan_filtering() {
        let e = res.unwrap_err();
        assert_eq!(e.to_string(), "create bridge br-v: operation not supported");
        assert!(h.find_link("br-v").unwrap().is_none());
        return;
    }
    res.unwrap();
    let br = h.link("br-v").unwrap();
    assert_eq!(br.vlan_filtering, Some(true));
    h.create_veth(&VethOptions {
        name: "vv0",
        peer_name: "vv1",
        ..Default::default()
    })
    .unwrap();
    let port = h.link("vv0").unwrap();
    h.set_master(&port, &br).unwrap();
    let vlans = h.bridge_vlans(&port).unwrap();
    assert!(
        vlans.iter().any(|v| v.vid == 1 && v.pvid && v.untagged),
        "{vlans:?}"
    );
    h.del_bridge_vlan(&port, 1).unwrap();
    h.add_bridge_vlan(
        &port,
        &twill_net::netlink::BridgeVlan {
            vid: 100,
            pvid: true,
            untagged: true,
        },
    )
    .unwrap();
    let vlans = h.bridge_vlans(&port).unwrap();
    assert_eq!(vlans.len(), 1, "{vlans:?}");
    assert_eq!(
        (vlans[0].vid, vlans[0].pvid, vlans[0].untagged),
        (100, true, true)
    );
}

#[test]
fn addresses_v4_and_v6() {
    let ns = TestNs::new("nlad");
    let (_n, mut h) = handle(&ns);
    h.create_bridge(&BridgeOptions {
        name: "br-test",
        ..Default::default()
    })
    .unwrap();
    let br = h.link("br-test").unwrap();
    h.set_up(&br).unwrap();
    h.add_address(&br, &net("10.1.2.1/24")).unwrap();
    let e = h.add_address(&br, &net("10.1.2.1/24")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "add address 10.1.2.1/24 to br-test: file exists"
    );
    h.add_address(&br, &net("2001:db8::1/64")).unwrap();

    let shown = ns.ip(&["addr", "show", "br-test"]);
    assert!(shown.contains("inet 10.1.2.1/24 brd 10.1.2.255"), "{shown}");
    assert!(shown.contains("inet6 2001:db8::1/64"), "{shown}");

    let v4 = h.addresses(Some(&br), Some(Family::V4)).unwrap();
    assert_eq!(v4.len(), 1);
    assert_eq!(v4[0].address, net("10.1.2.1/24"));
    let v6: Vec<_> = h
        .addresses(Some(&br), Some(Family::V6))
        .unwrap()
        .into_iter()
        .map(|a| a.address)
        .collect();
    assert!(v6.contains(&net("2001:db8::1/64")), "{v6:?}");
    let all = h.addresses(None, None).unwrap();
    assert!(
        all.iter().any(|a| a.address == net("127.0.0.1/8")),
        "lo is listed too"
    );

    h.del_address(&br, &net("10.1.2.1/24")).unwrap();
    assert!(h.addresses(Some(&br), Some(Family::V4)).unwrap().is_empty());
    let e = h.del_address(&br, &net("10.1.2.1/24")).unwrap_err();
    assert!(e.is_not_found(), "{e}");
}

#[test]
fn routes_with_gateway_table_scope_and_metric() {
    let ns = TestNs::new("nlrt");
    let (_n, mut h) = handle(&ns);
    h.create_veth(&VethOptions {
        name: "r0",
        peer_name: "r1",
        ..Default::default()
    })
    .unwrap();
    let r0 = h.link("r0").unwrap();
    let r1 = h.link("r1").unwrap();
    h.set_up(&r0).unwrap();
    h.set_up(&r1).unwrap();
    h.add_address(&r0, &net("10.9.0.1/24")).unwrap();
    h.add_address(&r0, &net("fd00:9::1/64")).unwrap();

    let mut via = Route::new(net("10.20.0.0/16"));
    via.gateway = Some("10.9.0.2".parse().unwrap());
    via.oif = Some(r0.index);
    via.metric = Some(50);
    h.add_route(&via).unwrap();
    let e = h.add_route(&via).unwrap_err();
    assert!(e.is_exists());
    assert_eq!(
        e.to_string(),
        format!(
            "add route 10.20.0.0/16 via 10.9.0.2 dev {} metric 50: file exists",
            r0.index
        )
    );

    let mut link_scoped = Route::new(net("10.30.0.0/16"));
    link_scoped.oif = Some(r0.index);
    link_scoped.scope = RouteScope::Link;
    link_scoped.table = 1000;
    h.add_route(&link_scoped).unwrap();

    let mut default6 = Route::new(net("::/0"));
    default6.gateway = Some("fd00:9::2".parse().unwrap());
    default6.oif = Some(r0.index);
    h.add_route(&default6).unwrap();

    let shown = ns.ip(&["route", "show", "10.20.0.0/16"]);
    assert!(
        shown.contains("via 10.9.0.2 dev r0") && shown.contains("metric 50"),
        "{shown}"
    );
    let shown = ns.ip(&["route", "show", "table", "1000"]);
    assert!(shown.contains("10.30.0.0/16 dev r0 scope link"), "{shown}");
    let shown = ns.ip(&["-6", "route", "show", "default"]);
    assert!(shown.contains("via fd00:9::2 dev r0"), "{shown}");

    let v4 = h.routes(Family::V4).unwrap();
    let got = v4.iter().find(|r| r.dst == net("10.20.0.0/16")).unwrap();
    assert_eq!(
        (got.gateway, got.metric, got.oif),
        (via.gateway, Some(50), Some(r0.index))
    );
    let got = v4.iter().find(|r| r.dst == net("10.30.0.0/16")).unwrap();
    assert_eq!((got.table, got.scope), (1000, RouteScope::Link));
    let v6 = h.routes(Family::V6).unwrap();
    assert!(
        v6.iter()
            .any(|r| r.dst.prefix() == 0 && r.gateway == default6.gateway)
    );

    h.del_route(&via).unwrap();
    h.del_route(&link_scoped).unwrap();
    h.del_route(&default6).unwrap();
    let v4 = h.routes(Family::V4).unwrap();
    assert!(
        !v4.iter()
            .any(|r| r.dst == net("10.20.0.0/16") || r.dst == net("10.30.0.0/16"))
    );
    let e = h.del_route(&via).unwrap_err();
    assert!(e.is_not_found(), "{e}");
}

#[test]
fn sysctls_are_written_in_the_target_namespace_only() {
    let ns = TestNs::new("nlsc");
    let n = Netns::open(ns.path()).unwrap();
    let root_before = sysctl::read(None, "net/ipv4/conf/lo/arp_notify").unwrap();
    let target = if root_before == "1" { "0" } else { "1" };
    sysctl::write(Some(&n), "net/ipv4/conf/lo/arp_notify", target).unwrap();
    assert_eq!(
        sysctl::read(Some(&n), "net/ipv4/conf/lo/arp_notify").unwrap(),
        target
    );
    let shown = ns.exec_ok(&["sysctl", "-n", "net.ipv4.conf.lo.arp_notify"]);
    assert_eq!(shown.trim(), target);
    assert_eq!(
        sysctl::read(None, "net/ipv4/conf/lo/arp_notify").unwrap(),
        root_before
    );

    let e = sysctl::write(Some(&n), "net/ipv4/conf/nope0/arp_notify", "1").unwrap_err();
    assert_eq!(
        e.to_string(),
        "write sysctl net/ipv4/conf/nope0/arp_notify=1: no such file or directory"
    );
}
