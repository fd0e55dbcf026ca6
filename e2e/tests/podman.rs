//! podman drives the plugins under test as a real CNI client.
//!
//! A test namespace plays the node; podman runs inside it (see `twill_e2e::podman`) with a
//! conflist `bridge (isGateway, ipMasq, host-local) + portmap (portMappings)`. The container
//! serves HTTP with busybox httpd on 8080, published on a host port; the test fetches the page
//! through the published port from the node namespace, then removes the container and checks
//! that DEL left nothing behind: the host-local reservation, the host-side veth, every nftables
//! and iptables rule naming the container, the container's namespace and libcni's cache entry.
//!
//! Plugins: ours (`target/<profile>`) by default; `TWILL_E2E_PLUGIN_DIR=/usr/lib/cni` runs the
//! same test against the reference plugins.

#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};
use twill_e2e::plugins;
use twill_e2e::podman::{self, Podman};
use twill_e2e::subnet::Subnet24;
use twill_testutil::{Netns, TempDir, require_root, require_tool, unique};

/// The test network: names unique per run so parallel runs never meet.
struct Network {
    name: String,
    bridge: String,
    subnet: Subnet24,
}

fn conflist(net: &Network, data_dir: &Path) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": net.name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": net.bridge,
                "isGateway": true,
                "ipMasq": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": net.subnet.cidr()}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": data_dir
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    })
}

/// GET `url` from inside `ns` with curl; the body on success.
fn http_get(ns: &Netns, url: &str) -> Result<String, String> {
    let out = ns
        .command("curl")
        .args(["--silent", "--show-error", "--fail", "--max-time", "3", url])
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Retries `http_get` while the server starts; gives up after `patience` with the last error.
fn http_get_eventually(ns: &Netns, url: &str, patience: Duration) -> String {
    let start = Instant::now();
    loop {
        match http_get(ns, url) {
            Ok(body) => return body,
            Err(e) if start.elapsed() > patience => {
                panic!("GET {url} from {} never answered: {e}", ns.name)
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Every nftables and iptables rule in `ns`, as text (both, whichever backend wrote them).
fn firewall_dump(ns: &Netns) -> String {
    let mut dump = String::new();
    for cmd in [
        &["nft", "list", "ruleset"][..],
        &["iptables-save"][..],
        &["ip6tables-save"][..],
    ] {
        let out = ns.command(cmd[0]).args(&cmd[1..]).output().unwrap();
        assert!(
            out.status.success(),
            "{cmd:?} in {} failed: {}",
            ns.name,
            String::from_utf8_lossy(&out.stderr)
        );
        dump.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    dump
}

/// Names of the links enslaved to `bridge` in `ns`.
fn bridge_ports(ns: &Netns, bridge: &str) -> Vec<String> {
    let out = ns.ip(&["-j", "link", "show", "master", bridge]);
    let links: Value =
        serde_json::from_str(if out.trim().is_empty() { "[]" } else { &out }).unwrap();
    links
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ifname"].as_str().unwrap().to_string())
        .collect()
}

fn link_exists(ns: &Netns, name: &str) -> bool {
    ns.command("ip")
        .args(["link", "show", "dev", name])
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn podman_container_gets_an_address_and_a_published_port_and_del_cleans_up() {
    require_root();
    podman::require_tools();
    require_tool("curl", "curl");
    require_tool("nft", "nftables");
    require_tool("iptables-save", "iptables");
    let plugin_dir = plugins::dir_under_test();
    plugins::require(&plugin_dir, &["bridge", "host-local", "portmap"]);
    eprintln!("plugins under test: {}", plugin_dir.display());

    // Guards drop in reverse order: container, podman store, temp dirs, node namespace.
    let node = Netns::new("e2en");
    let conf_dir = TempDir::new("e2e-conf");
    let data_dir = TempDir::new("e2e-ipam");
    let net = Network {
        name: unique("twe2e"),
        bridge: unique("tbr"),
        subnet: Subnet24::unique(),
    };
    std::fs::write(
        conf_dir.path().join(format!("{}.conflist", net.name)),
        serde_json::to_string_pretty(&conflist(&net, data_dir.path())).unwrap(),
    )
    .unwrap();
    let podman = Podman::new(&node, &plugin_dir, conf_dir.path());
    let image = podman.ensure_image(Path::new(env!("CARGO_TARGET_TMPDIR")));

    let host_port = 20000 + std::process::id() % 20000;
    let publish = format!("{host_port}:8080");
    let ctr = podman.run_detached(&[
        "--network",
        &net.name,
        "-p",
        &publish,
        image,
        "/bin/httpd",
        "-f",
        "-p",
        "8080",
        "-h",
        "/www",
    ]);
    let id = ctr.id().to_string();

    // The address podman reports came from host-local in our subnet.
    let inspect = ctr.inspect();
    let settings = &inspect["NetworkSettings"]["Networks"][&net.name];
    let ip: Ipv4Addr = settings["IPAddress"]
        .as_str()
        .unwrap_or_else(|| panic!("no address for {} in podman inspect: {settings}", net.name))
        .parse()
        .unwrap();
    assert!(
        net.subnet.contains_host(ip),
        "{ip} is not a host address of {}",
        net.subnet.cidr()
    );
    assert_ne!(
        ip,
        net.subnet.gateway(),
        "the container got the gateway address"
    );
    assert_eq!(settings["Gateway"], net.subnet.gateway().to_string());
    assert_eq!(settings["IPPrefixLen"], 24);
    let sandbox = inspect["NetworkSettings"]["SandboxKey"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        Path::new(&sandbox).exists(),
        "container namespace {sandbox} missing"
    );

    // The server answers on the pod address (so it is up), then through the published port on
    // the node's bridge address: DNAT by portmap for traffic the node itself sends.
    let direct = http_get_eventually(
        &node,
        &format!("http://{ip}:8080/"),
        Duration::from_secs(20),
    );
    assert_eq!(direct.trim(), podman::INDEX_HTML);
    let published = format!("http://{}:{host_port}/", net.subnet.gateway());
    let body = http_get_eventually(&node, &published, Duration::from_secs(5));
    assert_eq!(
        body.trim(),
        podman::INDEX_HTML,
        "wrong page through {published}"
    );

    // What ADD left on the node, so the checks after DEL cannot pass vacuously.
    let ipam_file = data_dir.path().join(&net.name).join(ip.to_string());
    let reservation = std::fs::read_to_string(&ipam_file).unwrap_or_else(|e| {
        panic!(
            "host-local reservation {} unreadable: {e}",
            ipam_file.display()
        )
    });
    assert_eq!(
        reservation.lines().next(),
        Some(id.as_str()),
        "reservation holds another id"
    );
    let ports = bridge_ports(&node, &net.bridge);
    assert_eq!(
        ports.len(),
        1,
        "expected exactly the container's veth on {}: {ports:?}",
        net.bridge
    );
    let veth = ports[0].clone();
    let rules = firewall_dump(&node);
    assert!(
        rules.contains(&id),
        "no nftables/iptables rule names container {id}:\n{rules}"
    );
    let cache = podman::cni_cache_file(&net.name, &id, "eth0");

    ctr.remove();

    assert!(
        !ipam_file.exists(),
        "host-local reservation {} survived DEL",
        ipam_file.display()
    );
    assert!(!link_exists(&node, &veth), "host veth {veth} survived DEL");
    assert!(
        bridge_ports(&node, &net.bridge).is_empty(),
        "ports left on {}",
        net.bridge
    );
    let rules = firewall_dump(&node);
    let left: Vec<&str> = rules.lines().filter(|l| l.contains(&id)).collect();
    assert!(
        left.is_empty(),
        "rules for container {id} survived DEL:\n{}",
        left.join("\n")
    );
    assert!(
        !Path::new(&sandbox).exists(),
        "container namespace {sandbox} survived rm"
    );
    assert!(
        !cache.exists(),
        "libcni cache {} survived rm",
        cache.display()
    );
    assert!(
        link_exists(&node, &net.bridge),
        "the bridge itself must stay (DEL never removes it)"
    );
}
