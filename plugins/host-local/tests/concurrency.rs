//! Concurrent ADDs (H11): many processes at once on one data directory get distinct
//! addresses, because every call holds the directory's flock; and since the reference takes
//! the same lock, ours and the reference's processes running together do too.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::thread;
use twill_testutil::{Invocation, Outcome, TempDir};

/// Runs one ADD per (binary, id) at the same time; returns each call's id and outcome.
fn parallel_adds(calls: Vec<(PathBuf, String)>, conf: &str) -> Vec<(String, Outcome)> {
    let handles: Vec<_> = calls
        .into_iter()
        .map(|(bin, id)| {
            let conf = conf.to_owned();
            thread::spawn(move || {
                let out =
                    Invocation::new(&bin, "ADD", &id, NETNS, "eth0", "/usr/lib/cni").run(&conf);
                (id, out)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// The first address of each successful ADD.
fn addresses(results: &[(String, Outcome)]) -> Vec<(String, String)> {
    results
        .iter()
        .map(|(id, out)| {
            let v = out.ok();
            (
                id.clone(),
                v["ips"][0]["address"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn check_distinct(results: &[(String, String)], dir: &std::path::Path) {
    let addrs: BTreeSet<&str> = results.iter().map(|(_, a)| a.as_str()).collect();
    assert_eq!(
        addrs.len(),
        results.len(),
        "duplicate addresses: {results:?}"
    );
    let files = reservations(dir);
    for (id, addr) in results {
        let ip = addr.split('/').next().unwrap();
        assert_eq!(files[ip], format!("{id}\r\neth0"), "file of {ip}");
    }
}

#[test]
fn fifty_parallel_adds_get_fifty_addresses() {
    let data = TempDir::new("hl-par");
    let conf = conf(
        "1.0.0",
        data.path(),
        &json!({"subnet": "10.20.0.0/24"}),
        &Value::Null,
    );
    let calls = (0..50).map(|i| (ours(), format!("par{i}"))).collect();
    let results = addresses(&parallel_adds(calls, &conf));
    check_distinct(&results, &data.path().join(NET));
    assert_eq!(reservations(&data.path().join(NET)).len(), 50);
    let last = std::fs::read_to_string(data.path().join(NET).join("last_reserved_ip.0")).unwrap();
    assert!(
        results
            .iter()
            .any(|(_, a)| a.starts_with(&format!("{last}/")))
    );
}

#[test]
fn h11_ours_and_the_reference_in_parallel_share_the_lock() {
    let data = TempDir::new("hl-mix");
    let conf = conf(
        "1.0.0",
        data.path(),
        &json!({"ranges": [[{"subnet": "10.21.0.0/24"}], [{"subnet": "fd21::/120"}]]}),
        &Value::Null,
    );
    let calls = (0..40)
        .map(|i| {
            let bin = if i % 2 == 0 { ours() } else { reference() };
            (bin, format!("mix{i}"))
        })
        .collect();
    let results = addresses(&parallel_adds(calls, &conf));
    check_distinct(&results, &data.path().join(NET));
    // Each call also holds one IPv6 address: 80 files in all, no duplicate.
    assert_eq!(reservations(&data.path().join(NET)).len(), 80);
}

#[test]
fn parallel_adds_of_one_attachment_succeed_once() {
    // Without a shared lock two processes could both pass the duplicate check and reserve
    // two addresses for one (container, ifname); half the processes are the reference's.
    let data = TempDir::new("hl-dup");
    let conf = conf(
        "1.0.0",
        data.path(),
        &json!({"subnet": "10.22.0.0/24"}),
        &Value::Null,
    );
    let calls = (0..20)
        .map(|i| {
            let bin = if i % 2 == 0 { ours() } else { reference() };
            (bin, "same".to_owned())
        })
        .collect();
    let results = parallel_adds(calls, &conf);
    let ok = results.iter().filter(|(_, o)| o.success).count();
    assert_eq!(ok, 1, "{results:?}");
    for (_, o) in results.iter().filter(|(_, o)| !o.success) {
        let msg = o.json()["msg"].as_str().unwrap().to_owned();
        assert!(msg.contains("duplicate allocation is not allowed"), "{msg}");
    }
    assert_eq!(reservations(&data.path().join(NET)).len(), 1);
}

/// True when /proc/locks shows `pid` waiting for a lock.
fn blocked_on_lock(pid: u32) -> bool {
    let locks = std::fs::read_to_string("/proc/locks").unwrap();
    locks.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.get(1) == Some(&"->") && f.get(5) == Some(&pid.to_string().as_str())
    })
}

#[test]
fn add_waits_for_the_lock_and_then_sees_the_holders_changes() {
    use nix::fcntl::{Flock, FlockArg};
    use std::io::Write;
    use std::process::{Command, Stdio};

    let data = TempDir::new("hl-lock");
    let dir = data.path().join(NET);
    std::fs::create_dir_all(&dir).unwrap();
    let lock = std::fs::File::create(dir.join("lock")).unwrap();
    // Another process (the reference, say) holds the lock.
    let held = Flock::lock(lock, FlockArg::LockExclusive).unwrap();

    let conf = conf(
        "1.0.0",
        data.path(),
        &json!({"subnet": "10.23.0.0/24"}),
        &Value::Null,
    );
    let mut child = Command::new(ours())
        .env_clear()
        .envs([
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "waiter"),
            ("CNI_NETNS", NETNS),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/usr/lib/cni"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.as_bytes())
        .unwrap();
    // Wait until the plugin is queued on the lock; it must not finish before that.
    loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "ADD finished while another process held the lock"
        );
        if blocked_on_lock(child.id()) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // While holding the lock, the holder takes .2.
    std::fs::write(dir.join("10.23.0.2"), "holder\r\neth0").unwrap();
    drop(held);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ips"][0]["address"], "10.23.0.3/24");
}
