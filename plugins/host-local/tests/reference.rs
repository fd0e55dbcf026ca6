//! Scenarios H1-H10 and H12 of `reference-plugin-scenarios.md`, each run on our binary and on
//! the reference `/usr/lib/cni/host-local` (separate data directories, same config) and
//! compared field for field: stdout JSON, error messages and every file the plugins leave.
//! Error *codes* differ on purpose (the reference answers 999 for everything; we use the
//! spec's codes), so they are asserted on our side only.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{Value, json};
use std::fs;

/// The first address of a result in any version's shape.
fn first_ip(v: &Value) -> String {
    match v.get("ips") {
        Some(ips) => ips[0]["address"].as_str().unwrap().to_owned(),
        None => v["ip4"]["ip"].as_str().unwrap().to_owned(),
    }
}

fn all_ips(v: &Value) -> Vec<String> {
    match v.get("ips") {
        Some(ips) => ips
            .as_array()
            .unwrap()
            .iter()
            .map(|ip| ip["address"].as_str().unwrap().to_owned())
            .collect(),
        None => ["ip4", "ip6"]
            .iter()
            .filter_map(|k| v.get(*k))
            .map(|f| f["ip"].as_str().unwrap().to_owned())
            .collect(),
    }
}

fn read(t: &Twin, name: &str) -> String {
    fs::read_to_string(t.ours.net_dir().join(name)).unwrap()
}

#[test]
fn h1_to_h5_and_h12_match_the_reference_in_every_version() {
    for version in SHARED_VERSIONS {
        let t = Twin::new();
        let ipam = json!({"subnet": "10.1.2.0/24"});
        let add = |id: &'static str| Call::new("ADD", id, version, &ipam);

        // H1: first address .2, gateway .1, an IPAM result (no interfaces, no index).
        let out = t.same(&add("c1")).ok();
        assert_eq!(first_ip(&out), "10.1.2.2/24", "{version}");
        assert_eq!(out["cniVersion"], *version);
        assert!(out.get("interfaces").is_none());
        if let Some(ips) = out.get("ips") {
            assert_eq!(ips[0]["gateway"], "10.1.2.1");
            assert!(ips[0].get("interface").is_none());
        } else {
            assert_eq!(out["ip4"]["gateway"], "10.1.2.1");
        }
        assert_eq!(read(&t, "10.1.2.2"), "c1\r\neth0");
        assert_eq!(read(&t, "last_reserved_ip.0"), "10.1.2.2");
        assert!(t.ours.net_dir().join("lock").is_file());
        t.assert_same_state();

        // H2: the same (c1, eth0) again is refused and changes nothing.
        let before = t.ours.snapshot();
        let err = t.same(&add("c1"));
        assert_eq!(err.code(), 999);
        assert_eq!(
            err.json()["msg"],
            "failed to allocate for range 0: 10.1.2.2 has been allocated to c1, duplicate allocation is not allowed"
        );
        assert_eq!(t.ours.snapshot(), before);
        t.assert_same_state();

        // H3: another container gets the next address.
        assert_eq!(first_ip(&t.same(&add("c2")).ok()), "10.1.2.3/24");

        // H12 (first half): CHECK after ADD, where the version allows CHECK.
        let check = Call::new("CHECK", "c1", version, &ipam);
        if ["1.0.0", "0.4.0"].contains(version) {
            t.same(&check).ok();
        } else {
            assert_eq!(t.same(&check).code(), 1);
        }

        // H4: DEL twice, and DEL of an id never added, all succeed.
        for id in ["c1", "c1", "never-added"] {
            t.same(&Call::new("DEL", id, version, &ipam)).ok();
        }
        assert!(!t.ours.net_dir().join("10.1.2.2").exists());
        t.assert_same_state();

        // H12 (second half): CHECK after DEL fails.
        if ["1.0.0", "0.4.0"].contains(version) {
            let err = t.same(&check);
            assert_eq!(
                err.json()["msg"],
                "host-local: Failed to find address added by container c1"
            );
        }

        // H5: round robin continues after .3 instead of reusing .2.
        assert_eq!(first_ip(&t.same(&add("c3")).ok()), "10.1.2.4/24");
        t.assert_same_state();
    }
}

#[test]
fn h6_small_subnet_is_exhausted_after_five() {
    let t = Twin::new();
    let ipam = json!({"subnet": "10.0.0.0/29"});
    for (i, id) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        let out = t.same(&Call::new("ADD", id, "1.0.0", &ipam)).ok();
        assert_eq!(first_ip(&out), format!("10.0.0.{}/29", i + 2));
    }
    let before = t.ours.snapshot();
    let err = t.same(&Call::new("ADD", "f", "1.0.0", &ipam));
    assert_eq!(err.code(), 999);
    assert_eq!(
        err.json()["msg"],
        "failed to allocate for range 0: no IP addresses available in range set: 10.0.0.1-10.0.0.6"
    );
    assert_eq!(t.ours.snapshot(), before);
    t.assert_same_state();
}

#[test]
fn h7_too_small_subnet_is_a_config_error_before_any_disk_access() {
    let t = Twin::new();
    let err = t.same(&Call::new(
        "ADD",
        "c1",
        "1.0.0",
        &json!({"subnet": "10.0.0.0/31"}),
    ));
    assert_eq!(err.code(), 7);
    assert_eq!(
        err.json()["msg"],
        "invalid range set 0: Network 10.0.0.0/31 too small to allocate from"
    );
    assert!(!t.ours.net_dir().exists());
    assert!(!t.reference.net_dir().exists());
}

#[test]
fn h8_dual_stack_with_routes_and_resolv_conf() {
    let resolv = twill_testutil::TempDir::new("hl-resolv");
    let path = resolv.path().join("resolv.conf");
    fs::write(
        &path,
        "# test\nnameserver 192.0.2.0\nnameserver 2001:db8::53\ndomain example.com\n\
         search a.example b.example\noptions ndots:5 rotate\n",
    )
    .unwrap();
    for version in SHARED_VERSIONS {
        let t = Twin::new();
        let ipam = json!({
            "ranges": [
                [{"subnet": "10.1.2.0/24"}, {"subnet": "10.2.2.0/24", "rangeStart": "10.2.2.10", "rangeEnd": "10.2.2.20", "gateway": "10.2.2.254"}],
                [{"subnet": "2001:db8:0:1::/64", "rangeStart": "2001:db8:0:1::10"}]
            ],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.1.2.1"}, {"dst": "::/0"}],
            "resolvConf": path.to_string_lossy(),
        });
        let out = t.same(&Call::new("ADD", "dual", version, &ipam)).ok();
        assert_eq!(
            all_ips(&out),
            ["10.1.2.2/24", "2001:db8:0:1::10/64"],
            "{version}"
        );
        assert_eq!(read(&t, "last_reserved_ip.0"), "10.1.2.2");
        assert_eq!(read(&t, "last_reserved_ip.1"), "2001:db8:0:1::10");
        // A requested IPv6 address whose text form compresses differently.
        let extra = json!({"args": {"cni": {"ips": ["2001:db8:0:1:1:0:0:1", "10.2.2.15"]}}});
        let out = t
            .same(&Call::new("ADD", "req", version, &ipam).extra(&extra))
            .ok();
        assert_eq!(all_ips(&out), ["10.2.2.15/24", "2001:db8:0:1:1::1/64"]);
        if let Some(dns) = out.get("dns") {
            assert_eq!(dns["nameservers"], json!(["192.0.2.0", "2001:db8::53"]));
        }
        t.assert_same_state();
        t.same(&Call::new("DEL", "dual", version, &ipam)).ok();
        t.assert_same_state();
    }
}

#[test]
fn h9_requested_addresses_from_args_capability_and_cni_args() {
    let t = Twin::new();
    let ipam = json!({"ranges": [[{"subnet": "10.1.2.0/24"}, {"subnet": "10.1.3.0/24"}], [{"subnet": "2001:db8:1::/64"}]]});
    let args = json!({"args": {"cni": {"ips": ["10.1.2.88"]}}});
    let out = t
        .same(&Call::new("ADD", "a", "1.0.0", &ipam).extra(&args))
        .ok();
    assert_eq!(all_ips(&out), ["10.1.2.88/24", "2001:db8:1::2/64"]);
    // Several sets and families at once, bare and with a prefix.
    let args = json!({"args": {"cni": {"ips": ["10.1.3.77", "2001:db8:1::99/64"]}}});
    let out = t
        .same(&Call::new("ADD", "b", "1.0.0", &ipam).extra(&args))
        .ok();
    assert_eq!(all_ips(&out), ["10.1.3.77/24", "2001:db8:1::99/64"]);
    // The ips capability.
    let rc = json!({"runtimeConfig": {"ips": ["10.1.2.61/24"]}});
    let out = t
        .same(&Call::new("ADD", "c", "1.0.0", &ipam).extra(&rc))
        .ok();
    assert_eq!(first_ip(&out), "10.1.2.61/24");
    // CNI_ARGS IP=.
    let env = [("CNI_ARGS", "IP=10.1.2.70")];
    let out = t
        .same(&Call::new("ADD", "d", "1.0.0", &ipam).env(&env))
        .ok();
    assert_eq!(first_ip(&out), "10.1.2.70/24");
    // IgnoreUnknown lets runtimes pass their own keys; without it they are refused.
    let env = [("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=p;IP=10.1.2.71")];
    let out = t
        .same(&Call::new("ADD", "e", "1.0.0", &ipam).env(&env))
        .ok();
    assert_eq!(first_ip(&out), "10.1.2.71/24");
    let env = [("CNI_ARGS", "K8S_POD_NAME=p")];
    let err = t.same(&Call::new("ADD", "f", "1.0.0", &ipam).env(&env));
    assert_eq!(err.code(), 4);
    assert_eq!(err.json()["msg"], "ARGS: unknown args [\"K8S_POD_NAME=p\"]");
    t.assert_same_state();
}

#[test]
fn h10_runtime_ip_ranges_are_range_set_zero() {
    let t = Twin::new();
    let ipam = json!({"subnet": "10.1.2.0/24"});
    let rc = json!({"runtimeConfig": {"ipRanges": [[{"subnet": "10.9.0.0/24"}]]}});
    let out = t
        .same(&Call::new("ADD", "c1", "1.0.0", &ipam).extra(&rc))
        .ok();
    assert_eq!(all_ips(&out), ["10.9.0.2/24", "10.1.2.2/24"]);
    assert_eq!(read(&t, "last_reserved_ip.0"), "10.9.0.2");
    assert_eq!(read(&t, "last_reserved_ip.1"), "10.1.2.2");
    t.assert_same_state();
    // Without the capability the static subnet is set 0 again; last_reserved_ip.0 names an
    // address outside it, so round robin restarts at the start: .2 is held (c1's address
    // from set 1), so .3.
    let out = t.same(&Call::new("ADD", "c2", "1.0.0", &ipam)).ok();
    assert_eq!(all_ips(&out), ["10.1.2.3/24"]);
    t.assert_same_state();
}

#[test]
fn legacy_single_range_keys_and_defaults() {
    let t = Twin::new();
    // rangeStart/rangeEnd/gateway next to subnet; a gateway outside the subnet is accepted
    // by 1.1.1 (so .1 is handed out first).
    let ipam = json!({"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.1", "rangeEnd": "10.0.0.3", "gateway": "10.0.1.5"});
    for (id, want) in [
        ("a", "10.0.0.1/24"),
        ("b", "10.0.0.2/24"),
        ("c", "10.0.0.3/24"),
    ] {
        let out = t.same(&Call::new("ADD", id, "0.4.0", &ipam)).ok();
        assert_eq!(first_ip(&out), want);
        assert_eq!(out["ips"][0]["gateway"], "10.0.1.5");
    }
    assert_eq!(t.same(&Call::new("ADD", "d", "0.4.0", &ipam)).code(), 999);
    // IPv6 defaults: the last address of the subnet is usable.
    let ipam = json!({"subnet": "fd00::/126"});
    for (id, want) in [("e", "fd00::2/126"), ("f", "fd00::3/126")] {
        let out = t.same(&Call::new("ADD", id, "0.3.1", &ipam)).ok();
        assert_eq!(first_ip(&out), want);
    }
    t.assert_same_state();
}

#[test]
fn legacy_id_only_files_are_found_and_released() {
    let t = Twin::new();
    let ipam = json!({"subnet": "10.1.2.0/24"});
    t.same(&Call::new("ADD", "other", "1.0.0", &ipam)).ok();
    for side in [&t.ours, &t.reference] {
        fs::write(side.net_dir().join("10.1.2.50"), "legacy").unwrap();
    }
    t.same(&Call::new("CHECK", "legacy", "1.0.0", &ipam)).ok();
    // A legacy file of the id counts as an existing allocation.
    let err = t.same(&Call::new("ADD", "legacy", "1.0.0", &ipam));
    assert!(
        err.json()["msg"]
            .as_str()
            .unwrap()
            .contains("10.1.2.50 has been allocated to legacy")
    );
    t.same(&Call::new("DEL", "legacy", "1.0.0", &ipam)).ok();
    assert!(!t.ours.net_dir().join("10.1.2.50").exists());
    t.assert_same_state();
}

#[test]
fn one_container_on_two_interfaces() {
    let t = Twin::new();
    let ipam = json!({"subnet": "10.1.2.0/24"});
    t.same(&Call::new("ADD", "dummy", "1.0.0", &ipam)).ok();
    let out = t
        .same(&Call::new("ADD", "dummy", "1.0.0", &ipam).ifname("eth1"))
        .ok();
    assert_eq!(first_ip(&out), "10.1.2.3/24");
    assert_eq!(read(&t, "10.1.2.3"), "dummy\r\neth1");
    t.same(&Call::new("DEL", "dummy", "1.0.0", &ipam)).ok();
    assert!(!t.ours.net_dir().join("10.1.2.2").exists());
    assert!(t.ours.net_dir().join("10.1.2.3").exists());
    t.same(&Call::new("CHECK", "dummy", "1.0.0", &ipam).ifname("eth1"))
        .ok();
    t.assert_same_state();
}

#[test]
fn config_errors_have_the_references_message_and_code_7() {
    let cases = [
        json!({"subnet": "10.0.0.1/24"}),
        json!({"subnet": "10.0.0.0/24", "rangeStart": "10.0.1.5"}),
        json!({"subnet": "10.0.0.0/24", "rangeEnd": "10.0.1.5"}),
        json!({"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.10", "rangeEnd": "10.0.0.5"}),
        json!({"subnet": "fd00::/127"}),
        json!({}),
        json!({"ranges": []}),
        json!({"ranges": [[]]}),
        json!({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.0.0.0/25"}]]}),
        json!({"ranges": [[{"subnet": "10.0.0.0/24"}, {"subnet": "10.0.0.0/25"}]]}),
        json!({"ranges": [[{"subnet": "10.0.0.0/24"}, {"subnet": "fd00::/64"}]]}),
    ];
    for ipam in &cases {
        let t = Twin::new();
        let err = t.same(&Call::new("ADD", "c1", "1.0.0", ipam));
        assert_eq!(err.code(), 7, "{ipam}");
        assert!(!t.ours.net_dir().exists(), "{ipam}: nothing on disk");
    }
    let no_ipam = r#"{"cniVersion":"1.0.0","name":"mynet"}"#;
    let theirs = Side::reference().run("ADD", "c1", no_ipam);
    let err = Side::ours().run("ADD", "c1", no_ipam);
    assert_eq!(err.json()["msg"], theirs.json()["msg"]);
    assert_eq!(
        (err.code(), err.json()["msg"].as_str().unwrap()),
        (7, "IPAM config missing 'ipam' key")
    );
}

#[test]
fn old_versions_refuse_two_addresses_per_family() {
    let t = Twin::new();
    let ipam = json!({"ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "10.3.2.0/24"}]]});
    let err = t.same(&Call::new("ADD", "c1", "0.2.0", &ipam));
    assert_eq!(err.code(), 1);
    assert_eq!(
        err.json()["msg"],
        "CNI version 0.2.0 does not support more than 1 address per family"
    );
    assert!(!t.ours.net_dir().exists());
}

#[test]
fn parse_errors_name_the_field() {
    let s = Side::ours();
    let cases = [
        (
            json!({"subnet": "garbage"}),
            "ipam.subnet: invalid CIDR address: garbage",
        ),
        (
            json!({"ranges": [[{"subnet": "10.0.0.0/24", "gateway": "x"}]]}),
            "ipam.ranges[0][0].gateway: invalid IP address: x",
        ),
        (
            json!({"subnet": "10.0.0.0/24", "routes": [{"dst": "nope"}]}),
            "ipam.routes[0]: ",
        ),
        (
            json!({"subnet": "10.0.0.0/24", "resolvConf": "/nonexistent/resolv.conf"}),
            "ipam.resolvConf: read /nonexistent/resolv.conf: ",
        ),
    ];
    for (ipam, want) in cases {
        let err = s.run("ADD", "c1", &s.conf("1.0.0", &ipam, &Value::Null));
        assert_eq!(err.code(), 7, "{ipam}");
        let msg = err.json()["msg"].as_str().unwrap().to_owned();
        assert!(
            msg.starts_with(want),
            "{msg:?} does not start with {want:?}"
        );
        assert!(reservations(&s.net_dir()).is_empty());
    }
    let extra = json!({"args": {"cni": {"ips": ["zz"]}}});
    let err = s.run(
        "ADD",
        "c1",
        &s.conf("1.0.0", &json!({"subnet": "10.0.0.0/24"}), &extra),
    );
    assert_eq!(
        (err.code(), err.json()["msg"].as_str().unwrap()),
        (7, "args.cni.ips[0]: invalid IP address zz")
    );
}

#[test]
fn args_win_over_cni_args() {
    // The reference 1.1.1 unions both and then fails because two addresses fall in one set;
    // the conventions say a plugin that reads `args` ignores the same key in CNI_ARGS.
    let s = Side::ours();
    let extra = json!({"args": {"cni": {"ips": ["10.1.2.72"]}}});
    let out = s
        .inv("ADD", "c1")
        .set("CNI_ARGS", "IP=10.1.2.71")
        .run(&s.conf("1.0.0", &json!({"subnet": "10.1.2.0/24"}), &extra))
        .ok();
    assert_eq!(first_ip(&out), "10.1.2.72/24");
    assert_eq!(s.reservations().len(), 1);
}

#[test]
fn routes_keep_their_1_1_0_attributes() {
    let s = Side::ours();
    let ipam = json!({"subnet": "10.1.2.0/24", "routes": [{"dst": "10.0.0.0/8", "gw": "10.1.2.1", "mtu": 1400, "priority": 10}]});
    let out = s
        .run("ADD", "c1", &s.conf("1.1.0", &ipam, &Value::Null))
        .ok();
    assert_eq!(out["cniVersion"], "1.1.0");
    assert_eq!(
        out["routes"],
        json!([{"dst": "10.0.0.0/8", "gw": "10.1.2.1", "mtu": 1400, "priority": 10}])
    );
    assert_eq!(
        out["ips"],
        json!([{"address": "10.1.2.2/24", "gateway": "10.1.2.1"}])
    );
    assert_eq!(out["dns"], json!({}));
}
