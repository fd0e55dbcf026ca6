//! Helpers shared by the host-local black-box tests.
//!
//! Every test runs the built `host-local` executable as a runtime does (a fresh process, `CNI_*`
//! environment, config on stdin) through `testutil::Invocation`, and most run the reference
//! `/usr/lib/cni/host-local` beside it on a separate data directory with the same config, so
//! results and on-disk state can be compared field for field. host-local never enters the
//! container namespace, so `CNI_NETNS` is just a path that is not the test's own namespace
//! and no root or namespaces are needed.

#![allow(clippy::unwrap_used, dead_code)]

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use twill_testutil::{Invocation, Outcome, TempDir, our_plugin, reference_dir};

/// `CNI_NETNS` for every call: host-local does not open it; it only must not name our own.
pub const NETNS: &str = "/run/netns/twill-host-local-unused";
/// The network name, hence the directory under the data dir.
pub const NET: &str = "mynet";
/// The versions both plugins support and that can carry a result (the reference 1.1.1 stops
/// at 1.0.0).
pub const SHARED_VERSIONS: &[&str] = &["1.0.0", "0.4.0", "0.3.1", "0.2.0"];

pub fn ours() -> PathBuf {
    our_plugin("host-local")
}

pub fn reference() -> PathBuf {
    let p = reference_dir().join("host-local");
    assert!(
        p.is_file(),
        "{} missing: apt-get install containernetworking-plugins",
        p.display()
    );
    p
}

/// A network config: `ipam` gets `type` and `dataDir` added, `extra` is merged at the top.
pub fn conf(version: &str, data_dir: &Path, ipam: &Value, extra: &Value) -> String {
    let mut ipam = ipam.clone();
    ipam["type"] = json!("host-local");
    ipam["dataDir"] = json!(data_dir.to_string_lossy());
    let mut v = json!({"cniVersion": version, "name": NET, "ipam": ipam});
    if let Some(extra) = extra.as_object() {
        for (k, x) in extra {
            v[k] = x.clone();
        }
    }
    v.to_string()
}

/// File name -> content of a network directory (empty when it does not exist).
pub fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let e = e.unwrap();
        let content = std::fs::read(e.path()).unwrap();
        out.insert(
            e.file_name().to_string_lossy().into_owned(),
            String::from_utf8_lossy(&content).into_owned(),
        );
    }
    out
}

/// The reservation files only (names that parse as addresses).
pub fn reservations(dir: &Path) -> BTreeMap<String, String> {
    snapshot(dir)
        .into_iter()
        .filter(|(k, _)| k.parse::<std::net::IpAddr>().is_ok())
        .collect()
}

/// One plugin binary with its own data directory.
pub struct Side {
    pub bin: PathBuf,
    pub data: TempDir,
}

impl Side {
    pub fn new(bin: PathBuf, label: &str) -> Side {
        Side {
            bin,
            data: TempDir::new(&format!("hl-{label}")),
        }
    }

    pub fn ours() -> Side {
        Side::new(ours(), "ours")
    }

    pub fn reference() -> Side {
        Side::new(reference(), "ref")
    }

    pub fn net_dir(&self) -> PathBuf {
        self.data.path().join(NET)
    }

    pub fn conf(&self, version: &str, ipam: &Value, extra: &Value) -> String {
        conf(version, self.data.path(), ipam, extra)
    }

    pub fn inv(&self, cmd: &str, id: &str) -> Invocation {
        Invocation::new(&self.bin, cmd, id, NETNS, "eth0", "/usr/lib/cni")
    }

    pub fn run(&self, cmd: &str, id: &str, stdin: &str) -> Outcome {
        self.inv(cmd, id).run(stdin)
    }

    pub fn snapshot(&self) -> BTreeMap<String, String> {
        snapshot(&self.net_dir())
    }

    pub fn reservations(&self) -> BTreeMap<String, String> {
        reservations(&self.net_dir())
    }
}

/// Both plugins, each on its own data directory, fed the same calls.
pub struct Twin {
    pub ours: Side,
    pub reference: Side,
}

/// One call to run on both sides.
#[derive(Clone)]
pub struct Call<'a> {
    pub cmd: &'a str,
    pub id: &'a str,
    pub ifname: &'a str,
    pub version: &'a str,
    pub ipam: &'a Value,
    pub extra: &'a Value,
    pub env: &'a [(&'a str, &'a str)],
}

impl<'a> Call<'a> {
    pub fn new(cmd: &'a str, id: &'a str, version: &'a str, ipam: &'a Value) -> Call<'a> {
        const NONE: &Value = &Value::Null;
        Call {
            cmd,
            id,
            ifname: "eth0",
            version,
            ipam,
            extra: NONE,
            env: &[],
        }
    }

    pub fn extra(mut self, extra: &'a Value) -> Self {
        self.extra = extra;
        self
    }

    pub fn env(mut self, env: &'a [(&'a str, &'a str)]) -> Self {
        self.env = env;
        self
    }

    pub fn ifname(mut self, ifname: &'a str) -> Self {
        self.ifname = ifname;
        self
    }

    fn run_on(&self, side: &Side) -> Outcome {
        let mut inv = Invocation::new(
            &side.bin,
            self.cmd,
            self.id,
            NETNS,
            self.ifname,
            "/usr/lib/cni",
        );
        for (k, v) in self.env {
            inv = inv.set(k, v);
        }
        inv.run(&side.conf(self.version, self.ipam, self.extra))
    }
}

impl Twin {
    pub fn new() -> Twin {
        Twin {
            ours: Side::ours(),
            reference: Side::reference(),
        }
    }

    /// Runs `call` on both and asserts the same outcome: on success the same stdout JSON
    /// (field for field), on failure the same message. Returns our outcome.
    pub fn same(&self, call: &Call) -> Outcome {
        let theirs = call.run_on(&self.reference);
        let ours = call.run_on(&self.ours);
        assert_eq!(
            ours.success, theirs.success,
            "{} {}: ours {:?} / reference {:?}",
            call.cmd, call.id, ours.stdout, theirs.stdout
        );
        if ours.success {
            if theirs.stdout.trim().is_empty() {
                assert_eq!(ours.stdout.trim(), "", "{} printed output", call.cmd);
            } else {
                assert_eq!(
                    ours.json(),
                    theirs.json(),
                    "{} {} result",
                    call.cmd,
                    call.id
                );
            }
        } else {
            assert_eq!(
                ours.json()["msg"],
                theirs.json()["msg"],
                "{} {} error message",
                call.cmd,
                call.id
            );
        }
        ours
    }

    /// Both data directories hold the same files with the same contents.
    pub fn assert_same_state(&self) {
        assert_eq!(self.ours.snapshot(), self.reference.snapshot());
    }
}
