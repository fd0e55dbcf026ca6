//! The twill plugin run as a runtime runs it, in a test "node" namespace, delegating to our
//! built bridge and host-local. The subnet file is written by the test (the daemon's part is
//! covered by the cluster suites in e2e/).
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use std::path::Path;
use twill_subnet_file::SubnetFile;
use twill_testutil::{Invocation, Netns, TempDir, bin_dir, our_plugin};

struct Node {
    ns: Netns,
    dir: TempDir,
}

impl Node {
    fn new() -> Node {
        our_plugin("bridge");
        our_plugin("host-local");
        Node {
            ns: Netns::new("twt"),
            dir: TempDir::new("twill-plugin"),
        }
    }

    fn subnet_file(&self) -> std::path::PathBuf {
        self.dir.path().join("subnet.env")
    }

    fn write_subnet(&self, subnet: &str, mtu: u32) {
        SubnetFile {
            network: "10.244.0.0/16".parse().unwrap(),
            subnet: subnet.parse().unwrap(),
            mtu,
            ipmasq: true,
        }
        .write_atomic(&self.subnet_file())
        .unwrap();
    }

    fn conf(&self, version: &str) -> String {
        json!({
            "cniVersion": version,
            "name": "twill",
            "type": "twill",
            "subnetFile": self.subnet_file(),
            "dataDir": self.dir.path().join("delegates"),
            "ipam": {"dataDir": self.dir.path().join("ipam")},
            "delegate": {"bridge": "tw0"},
        })
        .to_string()
    }

    fn call(&self, cmd: &str, id: &str, pod: &Netns) -> Invocation {
        Invocation::new(
            &our_plugin("twill"),
            cmd,
            id,
            &pod.path_str(),
            "eth0",
            &bin_dir().to_string_lossy(),
        )
        .in_ns(&self.ns)
    }

    fn ipam_files(&self) -> Vec<String> {
        let d = self.dir.path().join("ipam/twill");
        let mut v: Vec<String> = std::fs::read_dir(&d)
            .map(|it| {
                it.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("10."))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn status_is_not_ready_until_the_subnet_file_exists() {
    let node = Node::new();
    let pod = Netns::new("twp");
    let status = node
        .call("STATUS", "x", &pod)
        .unset("CNI_CONTAINERID")
        .unset("CNI_NETNS")
        .unset("CNI_IFNAME");
    let out = status.run(&node.conf("1.1.0"));
    assert_eq!(out.code(), 50, "{}", out.stdout);
    assert!(out.json()["msg"].as_str().unwrap().contains("subnet.env"));
    // ADD fails clearly (try again later) and leaves nothing behind.
    let out = node.call("ADD", "c1", &pod).run(&node.conf("1.1.0"));
    assert_eq!(out.code(), 11, "{}", out.stdout);
    assert_eq!(count_files(&node.dir.path().join("delegates")), 0);
    node.write_subnet("10.244.5.1/24", 1450);
    status.run(&node.conf("1.1.0")).ok();
}

#[test]
fn add_check_del_through_bridge_and_host_local() {
    let node = Node::new();
    node.write_subnet("10.244.5.1/24", 1450);
    let pod = Netns::new("twp");
    let result = node.call("ADD", "c1", &pod).run(&node.conf("1.0.0")).ok();
    assert_eq!(result["ips"][0]["address"], "10.244.5.2/24");
    assert_eq!(result["ips"][0]["gateway"], "10.244.5.1");
    assert_eq!(result["interfaces"][0]["name"], "tw0");
    let routes: Vec<&str> = result["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["dst"].as_str().unwrap())
        .collect();
    assert!(
        routes.contains(&"10.244.0.0/16") && routes.contains(&"0.0.0.0/0"),
        "{routes:?}"
    );
    // Kernel: pod MTU from the subnet file, gateway on the node's bridge.
    assert!(pod.ip(&["link", "show", "eth0"]).contains("mtu 1450"));
    assert!(
        node.ns
            .ip(&["addr", "show", "tw0"])
            .contains("10.244.5.1/24")
    );
    // CHECK with the result as prevResult.
    let mut check_conf: Value = serde_json::from_str(&node.conf("1.0.0")).unwrap();
    check_conf["prevResult"] = result.clone();
    node.call("CHECK", "c1", &pod)
        .run(&check_conf.to_string())
        .ok();
    // DEL after the subnet file and the config changed uses what ADD used: the address is
    // released from the data directory ADD allocated it in, not the one configured now.
    node.write_subnet("10.244.9.1/24", 1450);
    let mut changed: Value = serde_json::from_str(&node.conf("1.0.0")).unwrap();
    changed["ipam"]["dataDir"] = json!(node.dir.path().join("elsewhere"));
    node.call("DEL", "c1", &pod).run(&changed.to_string()).ok();
    assert!(node.ipam_files().is_empty(), "{:?}", node.ipam_files());
    assert!(pod.ip(&["link"]).lines().all(|l| !l.contains("eth0")));
    assert_eq!(count_files(&node.dir.path().join("delegates")), 0);
    // DEL again is fine.
    node.call("DEL", "c1", &pod).run(&node.conf("1.0.0")).ok();
}

#[test]
fn del_without_stored_config_falls_back_to_the_subnet_file() {
    let node = Node::new();
    node.write_subnet("10.244.5.1/24", 1450);
    let pod = Netns::new("twp");
    node.call("ADD", "c1", &pod).run(&node.conf("1.0.0")).ok();
    std::fs::remove_dir_all(node.dir.path().join("delegates")).unwrap();
    node.call("DEL", "c1", &pod).run(&node.conf("1.0.0")).ok();
    assert!(node.ipam_files().is_empty());
}

#[test]
fn gc_releases_attachments_the_runtime_no_longer_has() {
    let node = Node::new();
    node.write_subnet("10.244.5.1/24", 1450);
    let (a, b) = (Netns::new("twp"), Netns::new("twp"));
    node.call("ADD", "keep", &a).run(&node.conf("1.1.0")).ok();
    node.call("ADD", "gone", &b).run(&node.conf("1.1.0")).ok();
    assert_eq!(node.ipam_files().len(), 2);
    let mut gc: Value = serde_json::from_str(&node.conf("1.1.0")).unwrap();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    node.call("GC", "x", &a)
        .unset("CNI_CONTAINERID")
        .unset("CNI_NETNS")
        .unset("CNI_IFNAME")
        .run(&gc.to_string())
        .ok();
    assert_eq!(node.ipam_files(), vec!["10.244.5.2".to_string()]);
    let stored: Vec<String> = std::fs::read_dir(node.dir.path().join("delegates"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(stored, vec!["keep:eth0".to_string()]);
}

#[test]
fn bad_config_names_the_field() {
    let node = Node::new();
    node.write_subnet("10.244.5.1/24", 1450);
    let pod = Netns::new("twp");
    let mut conf: Value = serde_json::from_str(&node.conf("1.0.0")).unwrap();
    conf["delegate"] = json!({"type": "macvlan"});
    let out = node.call("ADD", "c1", &pod).run(&conf.to_string());
    assert_eq!(out.code(), 7);
    assert!(
        out.json()["msg"]
            .as_str()
            .unwrap()
            .starts_with("delegate.type")
    );
    assert!(node.ipam_files().is_empty());
    conf["subnetFile"] = json!(5);
    let out = node.call("ADD", "c1", &pod).run(&conf.to_string());
    assert_eq!(out.code(), 7);
    assert!(
        out.json()["details"]
            .as_str()
            .unwrap()
            .contains("invalid type"),
        "{}",
        out.stdout
    );
}
