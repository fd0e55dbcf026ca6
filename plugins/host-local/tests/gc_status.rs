//! Spec 1.1.0 verbs the reference 1.1.1 does not have: GC (scenario C1) and STATUS, plus a
//! full ADD/CHECK/DEL cycle in 1.1.0. The reference cannot serve as the oracle here (it
//! refuses config version 1.1.0), so the expectations are the spec's.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{Value, json};
use std::fs;
use twill_testutil::{Invocation, Outcome};

const IPAM: fn() -> Value =
    || json!({"ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "fd00:1::/64"}]]});

fn add(s: &Side, id: &str, ifname: &str) -> Value {
    s.inv("ADD", id)
        .set("CNI_IFNAME", ifname)
        .run(&s.conf("1.1.0", &IPAM(), &Value::Null))
        .ok()
}

/// GC as a runtime sends it: only CNI_COMMAND and CNI_PATH, attachments in stdin.
fn gc(s: &Side, attachments: Value) -> Outcome {
    runtime_only(s, "GC").run(&s.conf("1.1.0", &IPAM(), &attachments))
}

fn runtime_only(s: &Side, cmd: &str) -> Invocation {
    s.inv(cmd, "")
        .unset("CNI_CONTAINERID")
        .unset("CNI_NETNS")
        .unset("CNI_IFNAME")
}

fn holders(s: &Side) -> Vec<String> {
    s.reservations().into_values().collect()
}

#[test]
fn c1_gc_releases_what_the_runtime_no_longer_lists() {
    let s = Side::ours();
    add(&s, "c1", "eth0");
    add(&s, "c2", "eth0");
    add(&s, "c2", "eth1");
    assert_eq!(s.reservations().len(), 6);
    let out = gc(
        &s,
        json!({"cni.dev/valid-attachments": [{"containerID": "c2", "ifname": "eth0"}]}),
    );
    assert_eq!(out.ok(), Value::Null, "GC prints nothing on success");
    assert_eq!(holders(&s), ["c2\r\neth0", "c2\r\neth0"]);
    // Bookkeeping stays.
    let all = s.snapshot();
    for f in ["lock", "last_reserved_ip.0", "last_reserved_ip.1"] {
        assert!(all.contains_key(f), "{f} removed");
    }
    // CHECK still finds the survivor, and no longer c1.
    s.inv("CHECK", "c2")
        .run(&s.conf("1.1.0", &IPAM(), &Value::Null))
        .ok();
    assert!(
        !s.inv("CHECK", "c1")
            .run(&s.conf("1.1.0", &IPAM(), &Value::Null))
            .success
    );
}

#[test]
fn gc_reads_both_attachment_keys_and_keeps_legacy_files_of_valid_containers() {
    let s = Side::ours();
    add(&s, "a", "eth0");
    add(&s, "b", "eth0");
    fs::write(s.net_dir().join("10.1.2.100"), "legacy-ok").unwrap();
    fs::write(s.net_dir().join("10.1.2.101"), "legacy-gone").unwrap();
    // The spec-v1.1.0 tag's key name, as libcni also sends it.
    let out = gc(
        &s,
        json!({"cni.dev/attachments": [
            {"containerID": "a", "ifname": "eth0"},
            {"containerID": "legacy-ok", "ifname": "eth0"}
        ]}),
    );
    out.ok();
    let left: Vec<String> = s.reservations().into_keys().collect();
    assert_eq!(left, ["10.1.2.100", "10.1.2.2", "fd00:1::2"]);
    // Nothing listed: everything goes.
    gc(&s, json!({"cni.dev/valid-attachments": []})).ok();
    assert!(s.reservations().is_empty());
}

#[test]
fn gc_works_when_the_ranges_are_broken() {
    let s = Side::ours();
    add(&s, "a", "eth0");
    let broken = json!({"subnet": "10.0.0.0/31"});
    runtime_only(&s, "GC")
        .run(&s.conf("1.1.0", &broken, &json!({"cni.dev/valid-attachments": []})))
        .ok();
    assert!(s.reservations().is_empty());
}

#[test]
fn full_cycle_in_1_1_0() {
    let s = Side::ours();
    let out = add(&s, "c1", "eth0");
    assert_eq!(out["cniVersion"], "1.1.0");
    assert_eq!(
        out["ips"],
        json!([{"address": "10.1.2.2/24", "gateway": "10.1.2.1"}, {"address": "fd00:1::2/64", "gateway": "fd00:1::1"}])
    );
    assert!(out.get("interfaces").is_none());
    let conf = s.conf("1.1.0", &IPAM(), &Value::Null);
    s.inv("CHECK", "c1").run(&conf).ok();
    s.inv("DEL", "c1").run(&conf).ok();
    s.inv("DEL", "c1").unset("CNI_NETNS").run(&conf).ok();
    assert!(s.reservations().is_empty());
    assert!(!s.inv("CHECK", "c1").run(&conf).success);
}

#[test]
fn status_is_ready_when_the_data_directory_is_writable() {
    let s = Side::ours();
    let out = runtime_only(&s, "STATUS").run(&s.conf("1.1.0", &IPAM(), &Value::Null));
    assert_eq!(out.ok(), Value::Null);
    assert_eq!(
        s.snapshot().into_keys().collect::<Vec<_>>(),
        ["lock"],
        "STATUS leaves only what ADD would create"
    );
    // Ranges supplied only at ADD time (ipRanges capability) do not make STATUS fail.
    let out = runtime_only(&s, "STATUS").run(&s.conf("1.1.0", &json!({}), &Value::Null));
    out.ok();
}

#[test]
fn status_is_50_when_the_data_directory_cannot_be_created() {
    let s = Side::ours();
    let file = s.data.path().join("not-a-dir");
    fs::write(&file, "").unwrap();
    let conf = conf("1.1.0", &file, &IPAM(), &Value::Null);
    let out = runtime_only(&s, "STATUS").run(&conf);
    assert_eq!(out.code(), 50);
    let msg = out.json()["msg"].as_str().unwrap().to_owned();
    assert!(
        msg.contains(&file.join(NET).display().to_string()),
        "{msg} names the directory"
    );
    // ADD on the same config fails too (with a store error), and leaves nothing.
    let err = s.run("ADD", "c1", &conf);
    assert_eq!(err.code(), 999);
}
