//! Scenarios P1-P9: the skeleton's contract, run on our binary and, where the reference 1.1.1
//! speaks the same protocol, compared with it.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{Value, json};

fn good_conf(version: &str, side: &Side) -> String {
    side.conf(version, &json!({"subnet": "10.1.2.0/24"}), &Value::Null)
}

#[test]
fn p1_version() {
    let s = Side::ours();
    let v = s.inv("VERSION", "c1").run("").ok();
    assert_eq!(v["cniVersion"], "1.1.0");
    assert_eq!(
        v["supportedVersions"],
        json!([
            "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"
        ])
    );
    // Everything the reference supports, we support.
    let r = Side::reference().inv("VERSION", "c1").run("").ok();
    for ver in r["supportedVersions"].as_array().unwrap() {
        assert!(v["supportedVersions"].as_array().unwrap().contains(ver));
    }
}

#[test]
fn p2_about_without_command() {
    for side in [Side::ours(), Side::reference()] {
        let out = side.inv("ADD", "c1").unset("CNI_COMMAND").run("");
        assert!(out.success);
        assert_eq!(out.stdout, "");
        assert!(
            out.stderr.starts_with("CNI host-local plugin"),
            "{}",
            out.stderr
        );
        assert!(
            out.stderr
                .contains("CNI protocol versions supported: 0.1.0")
        );
    }
}

/// Runs the same invocation change on both plugins and returns (ours, reference).
fn both(
    change: impl Fn(twill_testutil::Invocation) -> twill_testutil::Invocation,
    stdin: impl Fn(&Side) -> String,
) -> (twill_testutil::Outcome, twill_testutil::Outcome) {
    let (o, r) = (Side::ours(), Side::reference());
    let ours = change(o.inv("ADD", "c1")).run(&stdin(&o));
    let theirs = change(r.inv("ADD", "c1")).run(&stdin(&r));
    (ours, theirs)
}

#[test]
fn p3_bad_interface_names() {
    let cases: [fn(twill_testutil::Invocation) -> twill_testutil::Invocation; 3] = [
        |i| i.unset("CNI_IFNAME"),
        |i| i.set("CNI_IFNAME", "abcdefghijklmnop"),
        |i| i.set("CNI_IFNAME", "a/b"),
    ];
    for change in cases {
        let (ours, theirs) = both(change, |s| good_conf("1.0.0", s));
        assert_eq!(ours.code(), 4);
        assert_eq!(theirs.code(), 4);
        assert_eq!(ours.json()["msg"], theirs.json()["msg"]);
    }
}

#[test]
fn p4_bad_container_ids() {
    // Set but empty: code 3 ("missing containerID"); the reference cannot tell it from
    // unset and answers 4.
    let (ours, _) = both(|i| i.set("CNI_CONTAINERID", ""), |s| good_conf("1.0.0", s));
    assert_eq!(
        (ours.code(), ours.json()["msg"].as_str().unwrap()),
        (3, "missing containerID")
    );
    let (ours, theirs) = both(
        |i| i.set("CNI_CONTAINERID", "-bad"),
        |s| good_conf("1.0.0", s),
    );
    assert_eq!((ours.code(), theirs.code()), (4, 4));
    assert_eq!(ours.json()["msg"], theirs.json()["msg"]);
}

#[test]
fn p5_stdin_not_json() {
    let (ours, theirs) = both(|i| i, |_| "not json".into());
    assert_eq!((ours.code(), theirs.code()), (6, 6));
}

#[test]
fn p6_config_without_name() {
    let (ours, theirs) = both(
        |i| i,
        |s| {
            let mut v: Value = serde_json::from_str(&good_conf("1.0.0", s)).unwrap();
            v.as_object_mut().unwrap().remove("name");
            v.to_string()
        },
    );
    assert_eq!((ours.code(), theirs.code()), (7, 7));
    assert_eq!(ours.json()["msg"], "missing network name");
    assert!(!Side::ours().net_dir().exists());
}

#[test]
fn p7_unknown_version() {
    let (ours, theirs) = both(|i| i, |s| good_conf("9.9.9", s));
    assert_eq!((ours.code(), theirs.code()), (1, 1));
    assert_eq!(ours.json()["msg"], theirs.json()["msg"]);
    let details = ours.json()["details"].as_str().unwrap().to_owned();
    assert!(details.contains("\"1.1.0\""), "{details}");
}

#[test]
fn p8_check_needs_0_4_0() {
    let (ours, theirs) = both(|i| i.set("CNI_COMMAND", "CHECK"), |s| good_conf("0.3.1", s));
    assert_eq!((ours.code(), theirs.code()), (1, 1));
    assert_eq!(ours.json()["msg"], theirs.json()["msg"]);
}

#[test]
fn p9_gc_and_status_need_1_1_0() {
    let s = Side::ours();
    for cmd in ["GC", "STATUS"] {
        let out = s
            .inv(cmd, "")
            .unset("CNI_CONTAINERID")
            .unset("CNI_NETNS")
            .unset("CNI_IFNAME")
            .run(&good_conf("1.0.0", &s));
        assert_eq!(out.code(), 1);
        assert_eq!(
            out.json()["msg"],
            format!("config version does not allow {cmd}")
        );
    }
    assert!(!s.net_dir().exists());
}
