//! The daemon's part of the netlink layer (VXLAN devices, onlink routes with our protocol,
//! permanent neighbours, FDB entries) against the real kernel, cross-checked with iproute2.
#![allow(clippy::unwrap_used)]

use ipnetwork::IpNetwork;
use std::net::Ipv4Addr;
use twill_net::netlink::{Family, Handle, MacAddr, Netns, Route, VethOptions, VxlanOptions};
use twill_testutil::Netns as TestNs;

fn handle(ns: &TestNs) -> (Netns, Handle) {
    let n = Netns::open(ns.path()).unwrap();
    let h = Handle::in_netns(&n).unwrap();
    (n, h)
}

#[test]
fn vxlan_device_routes_neighbours_and_fdb() {
    let ns = TestNs::new("nlvx");
    let (_n, mut h) = handle(&ns);
    // An underlay: one end of a veth pair with an address.
    h.create_veth(&VethOptions {
        name: "under0",
        peer_name: "under1",
        ..Default::default()
    })
    .unwrap();
    let under = h.link("under0").unwrap();
    h.add_address(&under, &"192.168.77.1/24".parse().unwrap())
        .unwrap();
    h.set_up(&under).unwrap();
    let under1 = h.link("under1").unwrap();
    h.set_up(&under1).unwrap();

    let mac: MacAddr = "02:aa:bb:cc:dd:01".parse().unwrap();
    let opts = VxlanOptions {
        name: "twill.7".into(),
        vni: 7,
        local: Ipv4Addr::new(192, 168, 77, 1),
        underlay_index: under.index,
        port: 8472,
        mtu: 1450,
        mac,
    };
    h.create_vxlan(&opts).unwrap();
    let e = h.create_vxlan(&opts).unwrap_err();
    assert!(e.is_exists(), "{e}");
    let vx = h.link("twill.7").unwrap();
    assert_eq!((vx.mtu, vx.mac), (1450, Some(mac)));
    assert!(h.vxlan_info(&vx).unwrap().matches(&opts));
    let mut other = opts.clone();
    other.port = 4789;
    assert!(!h.vxlan_info(&vx).unwrap().matches(&other));
    h.add_address(&vx, &"10.244.1.0/32".parse().unwrap())
        .unwrap();
    h.set_up(&vx).unwrap();
    let details = ns.ip(&["-d", "link", "show", "twill.7"]);
    assert!(
        details.contains("vxlan id 7") && details.contains("dstport 8472"),
        "{details}"
    );
    assert!(details.contains("nolearning"), "{details}");
    assert!(details.contains("noudpcsum"), "{details}");

    // Route via the peer VTEP, onlink, marked with our protocol.
    let mut r = Route::new("10.244.5.0/24".parse::<IpNetwork>().unwrap());
    r.gateway = Some("10.244.5.0".parse().unwrap());
    r.oif = Some(vx.index);
    r.onlink = true;
    r.protocol = 116;
    h.add_route(&r).unwrap();
    let shown = ns.ip(&["route", "show", "proto", "116"]);
    assert_eq!(
        shown.trim(),
        "10.244.5.0/24 via 10.244.5.0 dev twill.7 onlink"
    );
    let ours: Vec<Route> = h
        .routes(Family::V4)
        .unwrap()
        .into_iter()
        .filter(|r| r.protocol == 116)
        .collect();
    assert_eq!(ours.len(), 1);
    assert!(ours[0].onlink && ours[0].oif == Some(vx.index));

    // Permanent neighbour and FDB entry; replace is idempotent.
    let peer_mac: MacAddr = "02:aa:bb:cc:dd:05".parse().unwrap();
    for _ in 0..2 {
        h.replace_neighbour(&vx, "10.244.5.0".parse().unwrap(), peer_mac)
            .unwrap();
        h.replace_fdb(&vx, peer_mac, "192.168.77.5".parse().unwrap())
            .unwrap();
    }
    let neigh = ns.ip(&["neigh", "show", "dev", "twill.7"]);
    assert_eq!(
        neigh.trim(),
        "10.244.5.0 lladdr 02:aa:bb:cc:dd:05 PERMANENT"
    );
    let fdb =
        String::from_utf8(ns.exec(&["bridge", "fdb", "show", "dev", "twill.7"]).stdout).unwrap();
    assert!(
        fdb.contains("02:aa:bb:cc:dd:05 dst 192.168.77.5 self permanent"),
        "{fdb}"
    );
    let n = h.neighbours(&vx).unwrap();
    assert_eq!(n.len(), 1);
    assert!(n[0].permanent && n[0].mac == peer_mac);
    let f: Vec<_> = h
        .fdb(&vx)
        .unwrap()
        .into_iter()
        .filter(|e| e.dst.is_some())
        .collect();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].dst, Some("192.168.77.5".parse().unwrap()));

    // Deletion; a second delete is a not-found error the caller can ignore.
    h.del_route(&r).unwrap();
    h.del_neighbour(&vx, "10.244.5.0".parse().unwrap()).unwrap();
    h.del_fdb(&vx, peer_mac, Some("192.168.77.5".parse().unwrap()))
        .unwrap();
    assert!(
        h.del_neighbour(&vx, "10.244.5.0".parse().unwrap())
            .unwrap_err()
            .is_not_found()
    );
    assert!(ns.ip(&["route", "show", "proto", "116"]).trim().is_empty());
    assert!(h.neighbours(&vx).unwrap().is_empty());
}
