//! The `bridge` executable run exactly as a runtime runs it: inside a test "host"
//! namespace (so the bridge, veths, sysctls stay there), with `CNI_NETNS` a second test
//! namespace and IPAM = our `host-local` from the same build directory. Scenario ids (B1,
//! P3, ...) are those of `reference-plugin-scenarios.md`. Where the reference plugin can run
//! the same case, its result is compared field for field (generated names and MACs aside).
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use std::path::Path;
use twill_net::netlink::{Netns as NlNetns, sysctl};
use twill_testutil::{
    Invocation, Netns, TempDir, bin_dir, our_plugin, reference_dir, require_tool,
};

/// One test's world: a host namespace, a container namespace and an IPAM data dir.
struct World {
    host: Netns,
    cont: Netns,
    data: TempDir,
}

impl World {
    fn new() -> World {
        World {
            host: Netns::new("brh"),
            cont: Netns::new("brc"),
            data: TempDir::new("bridge"),
        }
    }

    /// B1's config at `version`, with `extra` keys merged in.
    fn conf(&self, version: &str, extra: Value) -> String {
        let mut v = json!({
            "cniVersion": version,
            "name": "mynet",
            "type": "bridge",
            "bridge": "br-test",
            "isDefaultGateway": true,
            "ipam": {"type": "host-local", "subnet": "10.1.2.0/24", "dataDir": self.data.str()}
        });
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        v.to_string()
    }

    /// Our bridge, container `c1`, `eth0` in `self.cont`, run inside `self.host`.
    fn inv(&self, cmd: &str) -> Invocation {
        self.inv_for(cmd, "c1", &self.cont, "eth0")
    }

    fn inv_for(&self, cmd: &str, cid: &str, cont: &Netns, ifname: &str) -> Invocation {
        Invocation::new(
            &our_plugin("bridge"),
            cmd,
            cid,
            &cont.path_str(),
            ifname,
            &bin_dir().to_string_lossy(),
        )
        .in_ns(&self.host)
    }

    /// IP files host-local keeps for the network (its lock and last_reserved files aside).
    fn allocations(&self) -> Vec<String> {
        let dir = self.data.path().join("mynet");
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return vec![];
        };
        let mut v: Vec<String> = rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "lock" && !n.starts_with("last_reserved_ip"))
            .collect();
        v.sort();
        v
    }

    fn host_sysctl(&self, key: &str) -> String {
        sysctl::read(Some(&NlNetns::open(self.host.path()).unwrap()), key).unwrap()
    }

    fn cont_sysctl(&self, key: &str) -> String {
        sysctl::read(Some(&NlNetns::open(self.cont.path()).unwrap()), key).unwrap()
    }
}

/// `ip -o link` names in a namespace (without `@peer`).
fn links(ns: &Netns) -> Vec<String> {
    ns.ip(&["-o", "link", "show"])
        .lines()
        .map(|l| {
            l.split(':')
                .nth(1)
                .unwrap()
                .trim()
                .split('@')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect()
}

fn host_veth(result: &Value) -> String {
    result["interfaces"][1]["name"].as_str().unwrap().to_owned()
}

/// Replaces generated values (host veth name, MACs, namespace paths) so two results can be compared.
fn normalize(mut v: Value) -> Value {
    if let Some(ifs) = v["interfaces"].as_array_mut() {
        for i in ifs {
            if i["name"].as_str().unwrap_or("").starts_with("veth") {
                i["name"] = json!("veth*");
            }
            if i.get("mac").is_some() {
                i["mac"] = json!("<mac>");
            }
            if i.get("sandbox").is_some() {
                i["sandbox"] = json!("<sandbox>");
            }
        }
    }
    v
}

#[test]
fn b1_add_configures_bridge_veth_container_and_forwarding() {
    for version in ["1.0.0", "1.1.0"] {
        let w = World::new();
        let r = w.inv("ADD").run(&w.conf(version, json!({}))).ok();
        assert_eq!(r["cniVersion"], version);
        let ifs = r["interfaces"].as_array().unwrap();
        assert_eq!(ifs.len(), 3, "{r}");
        assert_eq!(ifs[0]["name"], "br-test");
        assert!(ifs[1]["name"].as_str().unwrap().starts_with("veth"));
        assert_eq!(ifs[2]["name"], "eth0");
        assert_eq!(ifs[2]["sandbox"], w.cont.path_str());
        assert!(ifs[0].get("sandbox").is_none() && ifs[1].get("sandbox").is_none());
        for i in ifs {
            assert_eq!(i["mac"].as_str().unwrap().len(), 17, "{i}");
        }
        assert_eq!(
            r["ips"],
            json!([{"interface": 2, "address": "10.1.2.2/24", "gateway": "10.1.2.1"}])
        );
        assert_eq!(r["routes"], json!([{"dst": "0.0.0.0/0", "gw": "10.1.2.1"}]));
        assert_eq!(r["dns"], json!({}));

        // Host: the bridge is up with the gateway, the veth is its port, nothing else.
        let veth = host_veth(&r);
        let mut names = links(&w.host);
        names.sort();
        let mut want = vec!["br-test".to_owned(), "lo".to_owned(), veth.clone()];
        want.sort();
        assert_eq!(names, want);
        let br = w.host.ip(&["-d", "link", "show", "br-test"]);
        assert!(
            br.contains(",UP") && br.contains("vlan_filtering 0"),
            "{br}"
        );
        assert!(!br.contains("PROMISC"), "{br}");
        assert!(
            br.contains(ifs[0]["mac"].as_str().unwrap()),
            "result has the bridge's MAC"
        );
        assert_ne!(ifs[0]["mac"], ifs[1]["mac"], "the bridge keeps its own MAC");
        let addr = w.host.ip(&["addr", "show", "br-test"]);
        assert!(addr.contains("inet 10.1.2.1/24 brd 10.1.2.255"), "{addr}");
        let port = w.host.ip(&["-d", "link", "show", &veth]);
        assert!(
            port.contains("master br-test") && port.contains("state UP"),
            "{port}"
        );
        assert!(port.contains("hairpin off"), "{port}");
        assert_eq!(w.host_sysctl("net/ipv4/ip_forward"), "1");
        assert_eq!(w.host_sysctl("net/ipv6/conf/br-test/accept_ra"), "0");

        // Container: eth0 up with the address and the default route.
        let eth0 = w.cont.ip(&["addr", "show", "eth0"]);
        assert!(
            eth0.contains("state UP") && eth0.contains("inet 10.1.2.2/24"),
            "{eth0}"
        );
        assert!(eth0.contains(ifs[2]["mac"].as_str().unwrap()));
        let routes = w.cont.ip(&["route", "show", "default"]);
        assert!(routes.contains("default via 10.1.2.1 dev eth0"), "{routes}");
        assert_eq!(w.cont_sysctl("net/ipv4/conf/eth0/arp_notify"), "1");
        assert_eq!(w.cont_sysctl("net/ipv6/conf/eth0/accept_dad"), "0");
        assert_eq!(w.allocations(), vec!["10.1.2.2"]);
    }
}

#[test]
fn b1_dual_stack_and_ipv6() {
    let w = World::new();
    let conf = w.conf(
        "1.0.0",
        json!({"ipam": {"type": "host-local", "dataDir": w.data.str(),
                        "ranges": [[{"subnet": "192.168.0.0/24"}], [{"subnet": "fd00::/64"}]]}}),
    );
    let r = w.inv("ADD").run(&conf).ok();
    assert_eq!(
        r["ips"],
        json!([
            {"interface": 2, "address": "192.168.0.2/24", "gateway": "192.168.0.1"},
            {"interface": 2, "address": "fd00::2/64", "gateway": "fd00::1"}
        ])
    );
    assert_eq!(
        r["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": "192.168.0.1"}, {"dst": "::/0", "gw": "fd00::1"}])
    );
    let addr = w.host.ip(&["addr", "show", "br-test"]);
    assert!(
        addr.contains("192.168.0.1/24") && addr.contains("fd00::1/64"),
        "{addr}"
    );
    assert_eq!(w.host_sysctl("net/ipv6/conf/all/forwarding"), "1");
    let r6 = w.cont.ip(&["-6", "route", "show", "default"]);
    assert!(r6.contains("via fd00::1 dev eth0"), "{r6}");
    let a6 = w.cont.ip(&["-6", "addr", "show", "eth0"]);
    assert!(
        a6.contains("fd00::2/64") && !a6.contains("tentative"),
        "{a6}"
    );
    w.inv("DEL").run(&conf).ok();
    assert!(w.allocations().is_empty());
}

#[test]
fn b2_del_is_idempotent_and_keeps_the_bridge() {
    let w = World::new();
    let conf = w.conf("1.0.0", json!({}));
    let r = w.inv("ADD").run(&conf).ok();
    let veth = host_veth(&r);
    assert_eq!(w.allocations().len(), 1);

    w.inv("DEL").run(&conf).ok();
    assert!(!links(&w.host).contains(&veth));
    assert!(!links(&w.cont).contains(&"eth0".to_owned()));
    assert!(
        links(&w.host).contains(&"br-test".to_owned()),
        "the bridge stays"
    );
    assert!(w.allocations().is_empty());

    w.inv("DEL").run(&conf).ok();
    w.inv("DEL")
        .set("CNI_NETNS", "/run/netns/twill-deleted-netns")
        .run(&conf)
        .ok();
    w.inv("DEL").set("CNI_NETNS", "").run(&conf).ok();
    w.inv("DEL").unset("CNI_NETNS").run(&conf).ok();
    // DEL without a prior ADD, in a namespace that never had the interface.
    let other = Netns::new("brc");
    w.inv_for("DEL", "never-added", &other, "eth0")
        .run(&conf)
        .ok();
    assert!(links(&w.host).contains(&"br-test".to_owned()));
}

#[test]
fn b2_del_with_the_namespace_gone_still_releases_the_ip() {
    let w = World::new();
    let cont = Netns::new("brc");
    let conf = w.conf("1.0.0", json!({}));
    w.inv_for("ADD", "c9", &cont, "eth0").run(&conf).ok();
    let path = cont.path_str();
    drop(cont);
    assert_eq!(w.allocations().len(), 1);
    Invocation::new(
        &our_plugin("bridge"),
        "DEL",
        "c9",
        &path,
        "eth0",
        &bin_dir().to_string_lossy(),
    )
    .in_ns(&w.host)
    .run(&conf)
    .ok();
    assert!(w.allocations().is_empty());
}

#[test]
fn b5_hairpin_mode() {
    let w = World::new();
    let r = w
        .inv("ADD")
        .run(&w.conf("1.0.0", json!({"hairpinMode": true})))
        .ok();
    let port = w.host.ip(&["-d", "link", "show", &host_veth(&r)]);
    assert!(port.contains("hairpin on"), "{port}");
    let sysfs = w.host.exec_ok(&[
        "cat",
        &format!("/sys/class/net/{}/brport/hairpin_mode", host_veth(&r)),
    ]);
    assert_eq!(sysfs.trim(), "1");
}

#[test]
fn b6_hairpin_with_promisc_is_refused_before_any_change() {
    let w = World::new();
    let out = w
        .inv("ADD")
        .run(&w.conf("1.0.0", json!({"hairpinMode": true, "promiscMode": true})));
    assert_eq!(out.code(), 7);
    assert_eq!(
        out.json()["msg"],
        "cannot set hairpin mode and promiscuous mode at the same time"
    );
    assert_eq!(links(&w.host), vec!["lo"]);
    assert!(w.allocations().is_empty());
}

#[test]
fn b7_promisc_mode() {
    let w = World::new();
    w.inv("ADD")
        .run(&w.conf("1.0.0", json!({"promiscMode": true})))
        .ok();
    let br = w.host.ip(&["link", "show", "br-test"]);
    assert!(br.contains("PROMISC"), "{br}");
    // CHECK compares the bridge's promiscuous mode with the config.
}

#[test]
fn b8_mtu_on_new_bridge_and_both_veth_ends() {
    let w = World::new();
    let r = w
        .inv("ADD")
        .run(&w.conf("1.0.0", json!({"mtu": 1400})))
        .ok();
    assert!(w.cont.ip(&["link", "show", "eth0"]).contains("mtu 1400"));
    assert!(
        w.host
            .ip(&["link", "show", &host_veth(&r)])
            .contains("mtu 1400")
    );
    assert!(w.host.ip(&["link", "show", "br-test"]).contains("mtu 1400"));
}

fn kernel_has_bridge_vlan_filtering() -> bool {
    let out = std::process::Command::new("sh")
        .args(["-c", "zcat /proc/config.gz 2>/dev/null"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.is_empty() || text.lines().any(|l| l == "CONFIG_BRIDGE_VLAN_FILTERING=y")
}

#[test]
fn b9_access_vlan_or_a_clean_refusal_without_kernel_support() {
    let w = World::new();
    let conf = w.conf(
        "1.0.0",
        json!({"vlan": 100, "preserveDefaultVlan": false, "isDefaultGateway": false, "ipam": {}}),
    );
    let out = w.inv("ADD").run(&conf);
    if !kernel_has_bridge_vlan_filtering() {
        // This kernel cannot filter VLANs on bridges: the request fails at the first
        // step and leaves nothing behind.
        assert_eq!(out.code(), 999);
        let msg = out.json()["msg"].as_str().unwrap().to_owned();
        assert_eq!(
            msg,
            "failed to create bridge \"br-test\": create bridge br-test: operation not supported"
        );
        assert_eq!(links(&w.host), vec!["lo"]);
        assert_eq!(links(&w.cont), vec!["lo"]);
        return;
    }
    let r = out.ok();
    require_tool("bridge", "iproute2");
    let vlans = w
        .host
        .exec_ok(&["bridge", "vlan", "show", "dev", &host_veth(&r)]);
    assert!(vlans.contains("100 PVID Egress Untagged"), "{vlans}");
    assert!(!vlans.contains(" 1 PVID"), "{vlans}");
    assert!(
        w.host
            .ip(&["-d", "link", "show", "br-test"])
            .contains("vlan_filtering 1")
    );
}

#[test]
fn b10_vlan_out_of_range_has_the_reference_message() {
    let w = World::new();
    for vlan in [5000, -100] {
        let out = w.inv("ADD").run(&w.conf("1.0.0", json!({"vlan": vlan})));
        assert_eq!(out.code(), 7);
        assert_eq!(
            out.json()["msg"],
            format!("invalid VLAN ID {vlan} (must be between 0 and 4094)")
        );
    }
    assert_eq!(links(&w.host), vec!["lo"]);
}

#[test]
fn b12_bridge_address_conflict_then_force_address() {
    let w = World::new();
    w.host.ip(&["link", "add", "br-test", "type", "bridge"]);
    w.host.ip(&["addr", "add", "10.0.0.9/8", "dev", "br-test"]);
    let out = w.inv("ADD").run(&w.conf("1.0.0", json!({})));
    assert_eq!(out.code(), 999);
    let msg = out.json()["msg"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("\"br-test\" already has an IP address different from 10.1.2.1/24"),
        "{msg}"
    );

    w.inv("ADD")
        .run(&w.conf("1.0.0", json!({"forceAddress": true})))
        .ok();
    let v4: Vec<String> = w
        .host
        .ip(&["-4", "-o", "addr", "show", "br-test"])
        .lines()
        .map(|l| l.split_whitespace().nth(3).unwrap().to_owned())
        .collect();
    assert_eq!(v4, vec!["10.1.2.1/24"]);
}

#[test]
fn b12_ipv6_prefixes_accumulate_unless_they_overlap() {
    let w = World::new();
    w.host.ip(&["link", "add", "br-test", "type", "bridge"]);
    w.host
        .ip(&["addr", "add", "2001:db8:1::1/48", "dev", "br-test"]);
    let conf6 = |subnet: &str| {
        w.conf(
            "1.0.0",
            json!({"ipam": {"type": "host-local", "subnet": subnet, "dataDir": w.data.str()}}),
        )
    };
    let out = w.inv("ADD").run(&conf6("2001:db8:1:2::/64"));
    assert_eq!(out.code(), 999, "{}", out.stdout);
    w.inv("ADD").run(&conf6("fd00:1234::/64")).ok();
    let a = w.host.ip(&["-6", "addr", "show", "br-test"]);
    assert!(
        a.contains("2001:db8:1::1/48") && a.contains("fd00:1234::1/64"),
        "{a}"
    );
}

#[test]
fn b13_existing_container_interface_is_an_error_and_allocates_nothing() {
    let w = World::new();
    w.cont.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
    ]);
    let out = w.inv("ADD").run(&w.conf("1.0.0", json!({})));
    assert!(!out.success);
    assert_eq!(
        out.json()["msg"],
        "container veth name provided (eth0) already exists"
    );
    assert!(w.allocations().is_empty());
    assert!(links(&w.host).iter().all(|l| !l.starts_with("veth")));
}

#[test]
fn b14_mac_precedence() {
    let cases = [
        ("02:00:00:00:00:01", json!({}), "02:00:00:00:00:01"),
        (
            "02:00:00:00:00:01",
            json!({"args": {"cni": {"mac": "02:00:00:00:00:02"}}}),
            "02:00:00:00:00:02",
        ),
        (
            "02:00:00:00:00:01",
            json!({"args": {"cni": {"mac": "02:00:00:00:00:02"}},
                   "runtimeConfig": {"mac": "02:00:00:00:00:03"}}),
            "02:00:00:00:00:03",
        ),
    ];
    for (env_mac, extra, want) in cases {
        let w = World::new();
        let r = w
            .inv("ADD")
            .set("CNI_ARGS", &format!("IgnoreUnknown=1;MAC={env_mac}"))
            .run(&w.conf("1.0.0", extra))
            .ok();
        assert_eq!(r["interfaces"][2]["mac"], want);
        assert!(w.cont.ip(&["link", "show", "eth0"]).contains(want));
    }
}

#[test]
fn b15_layer2_only() {
    let w = World::new();
    let conf = w.conf("1.0.0", json!({"ipam": {}, "isDefaultGateway": false}));
    let r = w.inv("ADD").run(&conf).ok();
    assert_eq!(r["interfaces"].as_array().unwrap().len(), 3);
    assert!(r.get("ips").is_none() && r.get("routes").is_none(), "{r}");
    let eth0 = w.cont.ip(&["addr", "show", "eth0"]);
    assert!(
        eth0.contains("state UP") && !eth0.contains("inet "),
        "{eth0}"
    );
    w.inv("DEL").run(&conf).ok();

    // 0.2.0 cannot express a result without IPs: refused before anything is created.
    let out = w.inv("ADD").run(&w.conf("0.2.0", json!({"ipam": {}})));
    assert_eq!(out.json()["msg"], "cannot convert: no valid IP addresses");
    assert!(!links(&w.cont).contains(&"eth0".to_owned()));
    assert!(links(&w.host).iter().all(|l| !l.starts_with("veth")));
}

#[test]
fn b16_check_after_add_and_after_damage() {
    let w = World::new();
    let conf = w.conf("1.0.0", json!({}));
    let r = w.inv("ADD").run(&conf).ok();
    let mut with_prev: Value = serde_json::from_str(&conf).unwrap();
    with_prev["prevResult"] = r.clone();
    let checked = with_prev.to_string();
    w.inv("CHECK").run(&checked).ok();

    // No prevResult.
    let out = w.inv("CHECK").run(&conf);
    assert_eq!(out.json()["msg"], "Required prevResult missing");

    // A prevResult for another sandbox.
    let mut other = with_prev.clone();
    other["prevResult"]["interfaces"][2]["sandbox"] = json!("/run/netns/elsewhere");
    assert!(!w.inv("CHECK").run(&other.to_string()).success);

    // The host veth removed from the bridge.
    w.host.ip(&["link", "set", &host_veth(&r), "nomaster"]);
    let out = w.inv("CHECK").run(&checked);
    assert!(
        out.json()["msg"]
            .as_str()
            .unwrap()
            .contains("CNI veth created for bridge")
    );
    w.host
        .ip(&["link", "set", &host_veth(&r), "master", "br-test"]);
    w.inv("CHECK").run(&checked).ok();

    // The container's address removed.
    w.cont.ip(&["addr", "del", "10.1.2.2/24", "dev", "eth0"]);
    let out = w.inv("CHECK").run(&checked);
    assert!(!out.success);
    assert_eq!(
        out.json()["msg"],
        "Failed to match addr 10.1.2.2/24 on interface eth0"
    );
}

#[test]
fn b16_check_fails_when_the_default_route_is_gone() {
    let w = World::new();
    let conf = w.conf("0.4.0", json!({}));
    let r = w.inv("ADD").run(&conf).ok();
    let mut with_prev: Value = serde_json::from_str(&conf).unwrap();
    with_prev["prevResult"] = r;
    w.inv("CHECK").run(&with_prev.to_string()).ok();
    w.cont.ip(&["route", "del", "default"]);
    let out = w.inv("CHECK").run(&with_prev.to_string());
    assert_eq!(
        out.json()["msg"],
        "Failed to find route 0.0.0.0/0 via 10.1.2.1 in the container"
    );
}

#[test]
fn b17_failure_after_ipam_releases_the_ip_and_removes_the_veth() {
    let w = World::new();
    // An earlier container holds .2, so the file count is not trivially zero.
    let first = Netns::new("brc");
    w.inv_for("ADD", "c0", &first, "eth0")
        .run(&w.conf("1.0.0", json!({})))
        .ok();
    let before = w.allocations();
    assert_eq!(before, vec!["10.1.2.2"]);
    let host_links_before = links(&w.host);

    // The bridge gets an address from another subnet: ADD fails after IPAM allocated .3.
    w.host.ip(&["addr", "del", "10.1.2.1/24", "dev", "br-test"]);
    w.host.ip(&["addr", "add", "10.0.0.9/8", "dev", "br-test"]);
    let out = w.inv("ADD").run(&w.conf("1.0.0", json!({})));
    assert!(!out.success);
    assert!(
        out.json()["msg"]
            .as_str()
            .unwrap()
            .contains("already has an IP address")
    );

    assert_eq!(w.allocations(), before, "the allocation was released");
    assert_eq!(
        links(&w.host),
        host_links_before,
        "the host veth was removed"
    );
    assert_eq!(links(&w.cont), vec!["lo"], "the container end was removed");
}

#[test]
fn p_errors_of_the_skeleton() {
    let w = World::new();
    let conf = w.conf("1.0.0", json!({}));
    // P1 VERSION.
    let v = w.inv("VERSION").run("").ok();
    let versions: Vec<&str> = v["supportedVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    for want in ["0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        assert!(versions.contains(&want));
    }
    // P2 about text without CNI_COMMAND.
    let out = w.inv("ADD").unset("CNI_COMMAND").run("");
    assert!(out.success && out.stdout.is_empty());
    assert!(out.stderr.contains("CNI bridge plugin"), "{}", out.stderr);
    // P3 interface names.
    assert_eq!(w.inv("ADD").unset("CNI_IFNAME").run(&conf).code(), 4);
    assert_eq!(
        w.inv("ADD")
            .set("CNI_IFNAME", "a234567890123456")
            .run(&conf)
            .code(),
        4
    );
    assert_eq!(w.inv("ADD").set("CNI_IFNAME", "a/b").run(&conf).code(), 4);
    // P4 container ids.
    assert_eq!(w.inv("ADD").set("CNI_CONTAINERID", "").run(&conf).code(), 3);
    assert_eq!(
        w.inv("ADD")
            .set("CNI_CONTAINERID", "-bad")
            .run(&conf)
            .code(),
        4
    );
    // P5, P6, P7.
    assert_eq!(w.inv("ADD").run("not json").code(), 6);
    assert_eq!(
        w.inv("ADD")
            .run(r#"{"cniVersion":"1.0.0","type":"bridge"}"#)
            .code(),
        7
    );
    let out = w.inv("ADD").run(&w.conf("9.9.9", json!({})));
    assert_eq!(out.code(), 1);
    assert!(
        out.json()["details"]
            .as_str()
            .unwrap()
            .contains("\"1.1.0\"")
    );
    // P8, P9.
    assert_eq!(w.inv("CHECK").run(&w.conf("0.3.1", json!({}))).code(), 1);
    assert_eq!(w.inv("GC").run(&conf).code(), 1);
    assert_eq!(w.inv("STATUS").run(&conf).code(), 1);
    // None of that touched anything.
    assert_eq!(links(&w.host), vec!["lo"]);
    assert!(w.allocations().is_empty());
}

#[test]
fn status_and_gc_are_forwarded_to_ipam() {
    let w = World::new();
    let conf = w.conf("1.1.0", json!({}));
    w.inv("STATUS").run(&conf).ok();
    let stale = Netns::new("brc");
    w.inv_for("ADD", "stale", &stale, "eth0").run(&conf).ok();
    w.inv("ADD").run(&conf).ok();
    assert_eq!(w.allocations().len(), 2);
    let mut gc: Value = serde_json::from_str(&conf).unwrap();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "c1", "ifname": "eth0"}]);
    w.inv("GC").run(&gc.to_string()).ok();
    assert_eq!(
        w.allocations(),
        vec!["10.1.2.3"],
        "only c1's address survives"
    );
    // STATUS of a layer-2 network has no IPAM to ask.
    w.inv("STATUS")
        .run(&w.conf("1.1.0", json!({"ipam": {}})))
        .ok();
}

fn nft_list(ns: &Netns, what: &[&str]) -> String {
    require_tool("nft", "nftables");
    let mut args = vec!["nft", "list"];
    args.extend_from_slice(what);
    String::from_utf8_lossy(&ns.exec(&args).stdout).into_owned()
}

/// A namespace "outside" the cluster, reachable from the host only: it has no route back to
/// the pod subnet, so it can only answer a pod whose traffic was masqueraded.
fn outside(w: &World) -> Netns {
    let ext = Netns::new("brx");
    w.host.ip(&[
        "link", "add", "ext0", "type", "veth", "peer", "name", "eth0", "netns", &ext.name,
    ]);
    w.host.ip(&["addr", "add", "192.0.2.1/24", "dev", "ext0"]);
    w.host.ip(&["link", "set", "ext0", "up"]);
    ext.ip(&["addr", "add", "192.0.2.2/24", "dev", "eth0"]);
    ext.ip(&["link", "set", "eth0", "up"]);
    ext
}

fn ping_ok(from: &Netns, to: &str) -> bool {
    require_tool("ping", "iputils-ping");
    from.exec(&["ping", "-c", "1", "-W", "1", to])
        .status
        .success()
}

#[test]
fn b3_b4_ipmasq_rules_packets_check_and_del() {
    let w = World::new();
    let ext = outside(&w);
    // Without ipMasq the outside cannot answer (no route back): the test can fail.
    let plain = Netns::new("brc");
    w.inv_for("ADD", "plain", &plain, "eth0")
        .run(&w.conf("1.0.0", json!({})))
        .ok();
    assert!(!ping_ok(&plain, "192.0.2.2"), "reply without masquerade?");
    for backend in [None, Some("nftables"), Some("iptables")] {
        let mut extra = json!({"ipMasq": true});
        if let Some(b) = backend {
            extra["ipMasqBackend"] = json!(b);
        }
        let conf = w.conf("1.0.0", extra);
        let result = w.inv("ADD").run(&conf).ok();
        let ip = twill_testutil::first_ip(&result);
        let table = nft_list(&w.host, &["table", "inet", "twill_masq"]);
        assert!(
            table.contains(&format!("ip saddr {ip} ip daddr != 10.1.2.0/24 masquerade")),
            "{table}"
        );
        assert_eq!(
            table.matches("comment").count(),
            1,
            "one rule for the one pod: {table}"
        );
        assert!(
            ping_ok(&w.cont, "192.0.2.2"),
            "masqueraded ping to the outside ({backend:?})"
        );
        // Pod to pod on the same subnet is not masqueraded (and works).
        assert!(ping_ok(&w.cont, "10.1.2.2"));
        let mut check: Value = serde_json::from_str(&conf).unwrap();
        check["prevResult"] = result.clone();
        w.inv("CHECK").run(&check.to_string()).ok();
        w.inv("DEL").run(&conf).ok();
        let table = nft_list(&w.host, &["table", "inet", "twill_masq"]);
        assert!(!table.contains(&ip), "rule removed on DEL: {table}");
        // CHECK now fails: the rule (and the interface) are gone.
        assert!(!w.inv("CHECK").run(&check.to_string()).success);
        w.inv("DEL").run(&conf).ok();
    }
    drop(ext);
}

#[test]
fn ipmasq_gc_removes_rules_of_vanished_containers() {
    let w = World::new();
    let conf = w.conf("1.1.0", json!({"ipMasq": true}));
    let other = Netns::new("brc");
    w.inv("ADD").run(&conf).ok();
    w.inv_for("ADD", "gone", &other, "eth0").run(&conf).ok();
    assert_eq!(
        nft_list(&w.host, &["table", "inet", "twill_masq"])
            .matches("comment")
            .count(),
        2
    );
    let mut gc: Value = serde_json::from_str(&conf).unwrap();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "c1", "ifname": "eth0"}]);
    w.inv("GC").run(&gc.to_string()).ok();
    let table = nft_list(&w.host, &["table", "inet", "twill_masq"]);
    assert_eq!(table.matches("comment").count(), 1, "{table}");
    assert!(table.contains("c1"), "{table}");
    assert_eq!(w.allocations(), vec!["10.1.2.2"]);
}

#[test]
fn b11_macspoofchk_drops_spoofed_frames_and_is_removed_on_del() {
    let w = World::new();
    let conf = w.conf("1.0.0", json!({"macspoofchk": true}));
    let result = w.inv("ADD").run(&conf).ok();
    let ruleset = nft_list(&w.host, &["ruleset"]);
    assert!(ruleset.contains(&host_veth(&result)), "{ruleset}");
    assert!(ruleset.contains("c1"), "{ruleset}");
    assert!(ping_ok(&w.cont, "10.1.2.1"), "genuine MAC passes");
    // Spoof: change the container's MAC behind the plugin's back; frames now get dropped.
    w.cont.ip(&["neigh", "flush", "all"]);
    w.cont
        .ip(&["link", "set", "eth0", "address", "02:de:ad:be:ef:01"]);
    assert!(!ping_ok(&w.cont, "10.1.2.1"), "spoofed MAC must be dropped");
    w.inv("DEL").run(&conf).ok();
    let ruleset = nft_list(&w.host, &["ruleset"]);
    assert!(!ruleset.contains("c1"), "{ruleset}");
}

/// Runs the reference bridge for the same scenario in its own namespaces.
fn reference_add(version: &str, extra: Value) -> Value {
    let w = World::new();
    let ref_dir = reference_dir();
    let conf = w.conf(version, extra);
    Invocation::new(
        &ref_dir.join("bridge"),
        "ADD",
        "c1",
        &w.cont.path_str(),
        "eth0",
        &ref_dir.to_string_lossy(),
    )
    .in_ns(&w.host)
    .run(&conf)
    .ok()
}

#[test]
fn results_match_the_reference_plugin() {
    let cases = [
        ("1.0.0", json!({})),
        ("0.4.0", json!({})),
        ("1.0.0", json!({"ipam": {}, "isDefaultGateway": false})),
        (
            "0.4.0",
            json!({"mtu": 1400, "hairpinMode": true, "dns": {"nameservers": ["192.0.2.53"], "search": ["example.org"]}}),
        ),
        (
            "1.0.0",
            json!({"isDefaultGateway": false, "isGateway": true,
                         "args": {"cni": {"mac": "02:00:00:00:00:02"}}}),
        ),
        ("0.3.1", json!({"isDefaultGateway": false})),
    ];
    for (version, extra) in cases {
        let theirs = reference_add(version, extra.clone());
        let w = World::new();
        let ours = w.inv("ADD").run(&w.conf(version, extra.clone())).ok();
        assert_eq!(
            normalize(ours.clone()),
            normalize(theirs.clone()),
            "{version} {extra}"
        );
        // MACs are generated but their presence and the chosen one must agree.
        if extra.get("args").is_some() {
            assert_eq!(ours["interfaces"][2]["mac"], theirs["interfaces"][2]["mac"]);
        }
    }
}

#[test]
fn two_containers_ping_each_other_and_the_gateway() {
    require_tool("busybox", "busybox-static");
    let w = World::new();
    let other = Netns::new("brc");
    let conf = w.conf("1.0.0", json!({}));
    w.inv("ADD").run(&conf).ok();
    w.inv_for("ADD", "c2", &other, "eth0").run(&conf).ok();
    let ping = |ns: &Netns, ip: &str| {
        let out = ns.exec(&["busybox", "ping", "-c", "1", "-W", "5", ip]);
        assert!(
            out.status.success(),
            "ping {ip} from {}: {}{}",
            ns.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ping(&w.cont, "10.1.2.3");
    ping(&other, "10.1.2.2");
    ping(&w.cont, "10.1.2.1");
    ping(&other, "10.1.2.1");
}

#[test]
fn reference_dir_and_our_binaries_exist() {
    assert!(Path::new(&reference_dir()).join("host-local").is_file());
    assert!(
        bin_dir().join("host-local").is_file(),
        "host-local must be built beside bridge"
    );
}

#[test]
fn concurrent_adds_share_one_new_bridge() {
    let w = World::new();
    let conts: Vec<Netns> = (0..4).map(|_| Netns::new("brc")).collect();
    let conf = w.conf("1.0.0", json!({}));
    let results: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = conts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let inv = w.inv_for("ADD", &format!("par{i}"), c, "eth0");
                let conf = conf.clone();
                s.spawn(move || inv.run(&conf).ok())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ips: Vec<String> = results
        .iter()
        .map(|r| r["ips"][0]["address"].as_str().unwrap().to_owned())
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 4, "{ips:?}");
    let ports = w.host.ip(&["-o", "link", "show", "master", "br-test"]);
    assert_eq!(ports.lines().count(), 4, "{ports}");
    let v4 = w.host.ip(&["-4", "-o", "addr", "show", "br-test"]);
    assert_eq!(v4.lines().count(), 1, "{v4}");
}

#[test]
fn add_with_a_missing_netns_names_it_and_changes_nothing() {
    let w = World::new();
    let out = w
        .inv("ADD")
        .set("CNI_NETNS", "/run/netns/twill-missing")
        .run(&w.conf("1.0.0", json!({})));
    assert_eq!(
        out.json()["msg"],
        "open netns /run/netns/twill-missing: no such file or directory"
    );
    assert_eq!(links(&w.host), vec!["lo"]);
    assert!(w.allocations().is_empty());
}

#[test]
fn macspoofchk_gc_removes_checks_of_vanished_containers() {
    let w = World::new();
    let conf = w.conf("1.1.0", json!({"macspoofchk": true}));
    let other = Netns::new("brc");
    w.inv("ADD").run(&conf).ok();
    w.inv_for("ADD", "gone", &other, "eth0").run(&conf).ok();
    let ruleset = nft_list(&w.host, &["table", "bridge", "twill_macspoof"]);
    assert!(
        ruleset.contains("gone if=eth0") && ruleset.contains("c1 if=eth0"),
        "{ruleset}"
    );
    let mut gc: Value = serde_json::from_str(&conf).unwrap();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "c1", "ifname": "eth0"}]);
    w.inv("GC").run(&gc.to_string()).ok();
    let ruleset = nft_list(&w.host, &["table", "bridge", "twill_macspoof"]);
    assert!(
        !ruleset.contains("gone if=eth0") && ruleset.contains("c1 if=eth0"),
        "{ruleset}"
    );
}
