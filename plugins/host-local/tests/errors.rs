//! Failed ADDs: the right code, the reference's message, and nothing left on disk from the
//! failed call (no reservation file, `last_reserved_ip.N` as before; for configuration
//! errors not even the network directory).

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{Value, json};
use std::fs;

fn msg(o: &twill_testutil::Outcome) -> String {
    o.json()["msg"].as_str().unwrap().to_owned()
}

#[test]
fn exhausted_range() {
    let t = Twin::new();
    let ipam = json!({"subnet": "10.0.0.0/30"});
    t.same(&Call::new("ADD", "a", "1.0.0", &ipam)).ok();
    let before = t.ours.snapshot();
    let err = t.same(&Call::new("ADD", "b", "1.0.0", &ipam));
    assert_eq!(err.code(), 999);
    assert_eq!(
        msg(&err),
        "failed to allocate for range 0: no IP addresses available in range set: 10.0.0.1-10.0.0.2"
    );
    assert_eq!(t.ours.snapshot(), before);
    t.assert_same_state();
}

#[test]
fn bad_subnet_and_overlapping_ranges_touch_nothing() {
    let cases = [
        (
            json!({"subnet": "10.0.0.0/31"}),
            "invalid range set 0: Network 10.0.0.0/31 too small to allocate from",
        ),
        (
            json!({"subnet": "10.0.0.5/24"}),
            "invalid range set 0: Network has host bits set. For a subnet mask of length 24 the network address is 10.0.0.0",
        ),
        (
            json!({"ranges": [[{"subnet": "10.0.0.0/16"}], [{"subnet": "fd00::/64"}], [{"subnet": "10.0.5.0/24"}]]}),
            "range set 0 overlaps with 2",
        ),
    ];
    for (ipam, want) in cases {
        let t = Twin::new();
        let err = t.same(&Call::new("ADD", "c1", "1.0.0", &ipam));
        assert_eq!((err.code(), msg(&err).as_str()), (7, want));
        assert!(!t.ours.net_dir().exists());
        assert!(!t.reference.net_dir().exists());
    }
    // Not a CIDR at all: our message names the field (the reference's does not).
    let s = Side::ours();
    let err = s.run(
        "ADD",
        "c1",
        &s.conf("1.0.0", &json!({"subnet": "10.0.0.0/x"}), &Value::Null),
    );
    assert_eq!(
        (err.code(), msg(&err).as_str()),
        (7, "ipam.subnet: invalid CIDR address: 10.0.0.0/x")
    );
    assert!(!s.net_dir().exists());
}

#[test]
fn requested_ip_taken() {
    let t = Twin::new();
    let ipam = json!({"subnet": "10.1.2.0/24"});
    let want = json!({"args": {"cni": {"ips": ["10.1.2.88"]}}});
    t.same(&Call::new("ADD", "a", "1.0.0", &ipam).extra(&want))
        .ok();
    let before = t.ours.snapshot();
    let err = t.same(&Call::new("ADD", "b", "1.0.0", &ipam).extra(&want));
    assert_eq!(err.code(), 999);
    assert_eq!(
        msg(&err),
        "failed to allocate for range 0: requested IP address 10.1.2.88 is not available in range set 10.1.2.1-10.1.2.254"
    );
    assert_eq!(t.ours.snapshot(), before);
    t.assert_same_state();
}

#[test]
fn requested_gateway() {
    let t = Twin::new();
    let ipam = json!({"subnet": "10.1.2.0/24"});
    t.same(&Call::new("ADD", "a", "1.0.0", &ipam)).ok();
    let before = t.ours.snapshot();
    let gw = json!({"runtimeConfig": {"ips": ["10.1.2.1"]}});
    let err = t.same(&Call::new("ADD", "b", "1.0.0", &ipam).extra(&gw));
    assert_eq!(err.code(), 7);
    assert_eq!(
        msg(&err),
        "failed to allocate for range 0: requested ip 10.1.2.1 is subnet's gateway"
    );
    assert_eq!(t.ours.snapshot(), before);
    t.assert_same_state();
}

#[test]
fn failure_in_a_later_set_rolls_back_the_earlier_sets() {
    // Set 0 hands out an address dynamically, then set 1 fails: our guard removes the
    // set-0 file *and* restores last_reserved_ip.0. (The reference removes the file but
    // leaves last_reserved_ip.0 moved on, so only the messages are compared.)
    let t = Twin::new();
    let ipam = json!({"ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "10.3.0.0/24"}]]});
    let want = json!({"args": {"cni": {"ips": ["10.3.0.9"]}}});
    t.same(&Call::new("ADD", "a", "1.0.0", &ipam).extra(&want))
        .ok();
    let before = t.ours.snapshot();
    assert_eq!(before["last_reserved_ip.0"], "10.1.2.2");
    let err = t.same(&Call::new("ADD", "b", "1.0.0", &ipam).extra(&want));
    assert_eq!(err.code(), 999);
    assert_eq!(
        msg(&err),
        "failed to allocate for range 1: requested IP address 10.3.0.9 is not available in range set 10.3.0.1-10.3.0.254"
    );
    assert_eq!(t.ours.snapshot(), before);
    assert_eq!(
        t.ours.reservations(),
        t.reference.reservations(),
        "same reservations as the reference"
    );

    // A requested address no range set holds: every set allocated, then all rolled back.
    let stray = json!({"args": {"cni": {"ips": ["10.9.9.9"]}}});
    let err = t.same(&Call::new("ADD", "c", "1.0.0", &ipam).extra(&stray));
    assert_eq!(
        (err.code(), msg(&err).as_str()),
        (7, "failed to allocate all requested IPs: 10.9.9.9")
    );
    assert_eq!(t.ours.snapshot(), before);
}

#[test]
fn a_first_allocation_that_fails_leaves_no_last_reserved_file() {
    let s = Side::ours();
    let ipam = json!({"ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "10.3.0.0/30"}]]});
    // Fill set 1's only address with a file written by hand (as an old plugin would have).
    fs::create_dir_all(s.net_dir()).unwrap();
    fs::write(s.net_dir().join("10.3.0.2"), "someone").unwrap();
    let before = s.snapshot();
    let err = s.run("ADD", "c1", &s.conf("1.0.0", &ipam, &Value::Null));
    assert_eq!(err.code(), 999);
    assert_eq!(
        msg(&err),
        "failed to allocate for range 1: no IP addresses available in range set: 10.3.0.1-10.3.0.2"
    );
    let mut after = s.snapshot();
    // The lock file is created by opening the store, before anything can fail.
    assert_eq!(after.remove("lock").as_deref(), Some(""));
    assert_eq!(after, before);
}

#[test]
fn del_releases_even_when_the_config_no_longer_validates() {
    // DEL reads only the network name and dataDir (the spec: DEL is best effort), so an
    // edited range config, unknown CNI_ARGS or ranges that came from the ipRanges capability
    // never keep an address allocated. The reference fails these DELs.
    let s = Side::ours();
    let rc = json!({"runtimeConfig": {"ipRanges": [[{"subnet": "10.9.0.0/24"}]]}});
    s.run("ADD", "a", &s.conf("1.0.0", &json!({}), &rc)).ok();
    s.run(
        "ADD",
        "b",
        &s.conf("1.0.0", &json!({"subnet": "10.1.2.0/24"}), &Value::Null),
    )
    .ok();
    assert_eq!(s.reservations().len(), 2);
    let broken = s.conf("1.0.0", &json!({"subnet": "10.1.2.0/31"}), &Value::Null);
    s.inv("DEL", "a")
        .set("CNI_ARGS", "K8S_POD_NAME=x")
        .run(&broken)
        .ok();
    s.run("DEL", "b", &broken).ok();
    assert!(s.reservations().is_empty());
    let theirs = Side::reference();
    assert!(
        !theirs
            .run(
                "DEL",
                "a",
                &theirs.conf("1.0.0", &json!({"subnet": "10.1.2.0/31"}), &Value::Null)
            )
            .success
    );
}
