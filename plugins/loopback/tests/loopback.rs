//! The `loopback` executable run as a runtime runs it, against a namespace the test
//! creates, compared with the reference `/usr/lib/cni/loopback`.
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use twill_testutil::{Invocation, Netns, bin_dir, our_plugin, reference_dir};

fn conf(version: &str) -> String {
    json!({"cniVersion": version, "name": "lo", "type": "loopback"}).to_string()
}

fn ours(cmd: &str, ns: &Netns) -> Invocation {
    Invocation::new(
        &our_plugin("loopback"),
        cmd,
        "c1",
        &ns.path_str(),
        "lo",
        &bin_dir().to_string_lossy(),
    )
}

fn theirs(cmd: &str, ns: &Netns) -> Invocation {
    let dir = reference_dir();
    Invocation::new(
        &dir.join("loopback"),
        cmd,
        "c1",
        &ns.path_str(),
        "lo",
        &dir.to_string_lossy(),
    )
}

fn lo_up(ns: &Netns) -> bool {
    ns.ip(&["link", "show", "lo"]).contains(",UP")
}

fn fresh_ns_with_lo_down() -> Netns {
    let ns = Netns::new("lo");
    ns.ip(&["link", "set", "lo", "down"]);
    assert!(!lo_up(&ns));
    ns
}

#[test]
fn add_brings_lo_up_and_reports_it_like_the_reference() {
    for version in ["1.0.0", "1.1.0"] {
        let ns = fresh_ns_with_lo_down();
        let r = ours("ADD", &ns).run(&conf(version)).ok();
        assert!(lo_up(&ns));
        assert_eq!(
            r,
            json!({
                "cniVersion": version,
                "interfaces": [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": ns.path_str()}],
                "ips": [{"interface": 0, "address": "127.0.0.1/8"}, {"interface": 0, "address": "::1/128"}],
                "dns": {}
            })
        );
    }
}

#[test]
fn results_match_the_reference() {
    // 1.0.0: identical. 0.4.0/0.3.1: identical except the `version` field the spec requires
    // on each IP, which the reference omits (it prints a 1.0.0 result under the old label).
    for version in ["1.0.0", "0.4.0", "0.3.1"] {
        let a = fresh_ns_with_lo_down();
        let b = fresh_ns_with_lo_down();
        let mut mine = ours("ADD", &a).run(&conf(version)).ok();
        let mut reference = theirs("ADD", &b).run(&conf(version)).ok();
        if version != "1.0.0" {
            for ip in mine["ips"].as_array().unwrap() {
                let want = if ip["address"] == "127.0.0.1/8" {
                    "4"
                } else {
                    "6"
                };
                assert_eq!(ip["version"], want, "{version}");
            }
        }
        for (r, ns) in [(&mut mine, &a), (&mut reference, &b)] {
            assert_eq!(r["interfaces"][0]["sandbox"], ns.path_str());
            r["interfaces"][0]["sandbox"] = json!("<ns>");
            for ip in r["ips"].as_array_mut().unwrap() {
                ip.as_object_mut().unwrap().remove("version");
            }
        }
        assert_eq!(mine, reference, "{version}");
    }
}

#[test]
fn legacy_versions_use_the_legacy_format() {
    let ns = fresh_ns_with_lo_down();
    let r = ours("ADD", &ns).run(&conf("0.2.0")).ok();
    assert_eq!(r["ip4"]["ip"], "127.0.0.1/8");
    assert_eq!(r["ip6"]["ip"], "::1/128");
}

#[test]
fn prev_result_passes_through() {
    let ns = fresh_ns_with_lo_down();
    let prev = json!({"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": ns.path_str()}],
                      "ips": [{"interface": 0, "address": "10.1.2.2/24"}], "dns": {}});
    let mut c: Value = serde_json::from_str(&conf("1.0.0")).unwrap();
    c["prevResult"] = prev.clone();
    let r = ours("ADD", &ns).run(&c.to_string()).ok();
    assert_eq!(r, prev);
    assert!(lo_up(&ns));
}

#[test]
fn del_sets_lo_down_and_is_idempotent() {
    let ns = fresh_ns_with_lo_down();
    ours("ADD", &ns).run(&conf("1.0.0")).ok();
    ours("CHECK", &ns).run(&conf("1.0.0")).ok();
    ours("DEL", &ns).run(&conf("1.0.0")).ok();
    assert!(!lo_up(&ns));
    ours("DEL", &ns).run(&conf("1.0.0")).ok();
    let out = ours("CHECK", &ns).run(&conf("1.0.0"));
    assert_eq!(out.code(), 999);
    assert_eq!(out.json()["msg"], "loopback interface is down");
    ours("DEL", &ns)
        .set("CNI_NETNS", "/run/netns/twill-no-such-ns")
        .run(&conf("1.0.0"))
        .ok();
    ours("DEL", &ns).unset("CNI_NETNS").run(&conf("1.0.0")).ok();
    // CHECK and ADD need the namespace.
    assert!(
        !ours("CHECK", &ns)
            .set("CNI_NETNS", "/run/netns/twill-no-such-ns")
            .run(&conf("1.0.0"))
            .success
    );
    assert!(
        !ours("ADD", &ns)
            .set("CNI_NETNS", "/run/netns/twill-no-such-ns")
            .run(&conf("1.0.0"))
            .success
    );
}

#[test]
fn p_errors_of_the_skeleton() {
    let ns = Netns::new("lo");
    let c = conf("1.0.0");
    let v = ours("VERSION", &ns).run("").ok();
    assert_eq!(v["supportedVersions"].as_array().unwrap().len(), 7);
    let out = ours("ADD", &ns).unset("CNI_COMMAND").run("");
    assert!(out.success && out.stderr.contains("CNI loopback plugin"));
    assert_eq!(ours("ADD", &ns).unset("CNI_IFNAME").run(&c).code(), 4);
    assert_eq!(
        ours("ADD", &ns)
            .set("CNI_IFNAME", "a234567890123456")
            .run(&c)
            .code(),
        4
    );
    assert_eq!(ours("ADD", &ns).set("CNI_IFNAME", "a/b").run(&c).code(), 4);
    assert_eq!(
        ours("ADD", &ns).set("CNI_CONTAINERID", "").run(&c).code(),
        3
    );
    assert_eq!(
        ours("ADD", &ns)
            .set("CNI_CONTAINERID", "-bad")
            .run(&c)
            .code(),
        4
    );
    assert_eq!(ours("ADD", &ns).run("not json").code(), 6);
    assert_eq!(ours("ADD", &ns).run(r#"{"cniVersion":"1.0.0"}"#).code(), 7);
    assert_eq!(ours("ADD", &ns).run(&conf("9.9.9")).code(), 1);
    assert_eq!(ours("CHECK", &ns).run(&conf("0.3.1")).code(), 1);
    assert_eq!(ours("GC", &ns).run(&c).code(), 1);
    assert_eq!(ours("STATUS", &ns).run(&c).code(), 1);
    // GC and STATUS at 1.1.0 have nothing to do.
    assert_eq!(ours("GC", &ns).run(&conf("1.1.0")).ok(), Value::Null);
    assert_eq!(ours("STATUS", &ns).run(&conf("1.1.0")).ok(), Value::Null);
}
