//! Switching plugins over one data directory: the reference and ours take turns allocating
//! and releasing on the same `<dataDir>/<network>/`. No address may be handed out twice or
//! lost, round robin continues from `last_reserved_ip.N` whoever wrote it, each releases what
//! the other allocated, and every file looks the same whoever wrote it.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{Value, json};
use std::path::Path;
use twill_testutil::{Invocation, Outcome, TempDir};

struct Shared {
    data: TempDir,
    conf: String,
}

impl Shared {
    fn new(ipam: Value) -> Shared {
        let data = TempDir::new("hl-interop");
        let conf = conf("1.0.0", data.path(), &ipam, &Value::Null);
        Shared { data, conf }
    }

    fn run(&self, bin: &Path, cmd: &str, id: &str) -> Outcome {
        Invocation::new(bin, cmd, id, NETNS, "eth0", "/usr/lib/cni").run(&self.conf)
    }

    fn add(&self, bin: &Path, id: &str) -> Vec<String> {
        let v = self.run(bin, "ADD", id).ok();
        v["ips"]
            .as_array()
            .unwrap()
            .iter()
            .map(|ip| ip["address"].as_str().unwrap().to_owned())
            .collect()
    }

    fn dir(&self) -> std::path::PathBuf {
        self.data.path().join(NET)
    }
}

#[test]
fn reference_and_ours_take_turns_on_one_data_directory() {
    let (refp, oursp) = (reference(), ours());
    let s =
        Shared::new(json!({"ranges": [[{"subnet": "10.0.0.0/29"}], [{"subnet": "fd00::/125"}]]}));

    // The reference starts the network.
    assert_eq!(s.add(&refp, "a1"), ["10.0.0.2/29", "fd00::2/125"]);
    assert_eq!(s.add(&refp, "a2"), ["10.0.0.3/29", "fd00::3/125"]);
    assert_eq!(s.add(&refp, "a3"), ["10.0.0.4/29", "fd00::4/125"]);
    // We continue its round robin and reuse nothing it holds.
    assert_eq!(s.add(&oursp, "b1"), ["10.0.0.5/29", "fd00::5/125"]);
    assert_eq!(s.add(&oursp, "b2"), ["10.0.0.6/29", "fd00::6/125"]);
    // The IPv4 set is full for both.
    let before = snapshot(&s.dir());
    for bin in [&oursp, &refp] {
        let err = s.run(bin, "ADD", "x");
        assert!(
            err.json()["msg"]
                .as_str()
                .unwrap()
                .starts_with("failed to allocate for range 0: no IP addresses available"),
            "{}",
            err.stdout
        );
    }
    assert_eq!(snapshot(&s.dir()), before);

    // Each releases one the other allocated.
    s.run(&oursp, "DEL", "a2").ok();
    s.run(&refp, "DEL", "b1").ok();
    assert!(!s.dir().join("10.0.0.3").exists() && !s.dir().join("fd00::3").exists());
    assert!(!s.dir().join("10.0.0.5").exists() && !s.dir().join("fd00::5").exists());

    // Round robin goes on from whatever the other wrote last.
    assert_eq!(s.add(&refp, "a4"), ["10.0.0.3/29", "fd00::7/125"]);
    assert_eq!(s.add(&oursp, "b4"), ["10.0.0.5/29", "fd00::3/125"]);
    assert!(!s.run(&refp, "ADD", "a5").success);

    // CHECK sees allocations whoever made them.
    s.run(&oursp, "CHECK", "a1").ok();
    s.run(&refp, "CHECK", "b2").ok();
    assert!(!s.run(&oursp, "CHECK", "a2").success);

    // Nothing lost, nothing twice, one format.
    let want: Vec<(&str, &str)> = vec![
        ("10.0.0.2", "a1"),
        ("10.0.0.3", "a4"),
        ("10.0.0.4", "a3"),
        ("10.0.0.5", "b4"),
        ("10.0.0.6", "b2"),
        ("fd00::2", "a1"),
        ("fd00::3", "b4"),
        ("fd00::4", "a3"),
        ("fd00::6", "b2"),
        ("fd00::7", "a4"),
    ];
    let got = reservations(&s.dir());
    let want_map: std::collections::BTreeMap<String, String> = want
        .iter()
        .map(|(ip, id)| (ip.to_string(), format!("{id}\r\neth0")))
        .collect();
    assert_eq!(got, want_map);
    let all = snapshot(&s.dir());
    assert_eq!(all["last_reserved_ip.0"], "10.0.0.5");
    assert_eq!(all["last_reserved_ip.1"], "fd00::3");

    // Tear down alternately; only the bookkeeping stays.
    for (i, id) in ["a1", "a3", "a4", "b2", "b4"].iter().enumerate() {
        let bin = if i % 2 == 0 { &oursp } else { &refp };
        s.run(bin, "DEL", id).ok();
    }
    let left: Vec<String> = snapshot(&s.dir()).into_keys().collect();
    assert_eq!(left, ["last_reserved_ip.0", "last_reserved_ip.1", "lock"]);
}

#[test]
fn a_directory_we_wrote_reads_the_same_to_the_reference() {
    // Ours allocates everything with requested and dynamic addresses; the reference then
    // finds each attachment (duplicate ADD refused, CHECK passes) and releases it.
    let (refp, oursp) = (reference(), ours());
    let s = Shared::new(json!({"subnet": "10.30.0.0/24"}));
    for i in 0..5 {
        s.add(&oursp, &format!("o{i}"));
    }
    for i in 0..5 {
        let id = format!("o{i}");
        let err = s.run(&refp, "ADD", &id);
        assert!(
            err.stdout.contains("duplicate allocation is not allowed"),
            "{}",
            err.stdout
        );
        s.run(&refp, "CHECK", &id).ok();
        s.run(&refp, "DEL", &id).ok();
    }
    assert!(reservations(&s.dir()).is_empty());
    // And the reference continues after our last address.
    assert_eq!(s.add(&refp, "r"), ["10.30.0.7/24"]);
}
