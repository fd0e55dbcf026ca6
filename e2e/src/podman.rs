//! podman as a real CNI client, confined to one test.
//!
//! podman 4.3 on this machine uses CNI: it reads a conflist from `--network-config-dir`, finds
//! plugins through `cni_plugin_dirs` in containers.conf (`CONTAINERS_CONF`), and runs them in the
//! network namespace podman itself runs in. So podman runs under `nsenter --net=<node ns>`:
//! every bridge, veth, nftables/iptables rule and sysctl the plugins create lands in the test's
//! "node" namespace, and podman has no path to the root namespace's firewall (the conflist holds
//! no `firewall` plugin and podman's CNI backend programs none itself). `ip netns exec` does not
//! work for this: it remounts /sys and hides the cgroup mounts runc needs.
//!
//! All of podman's own state goes to a temporary directory (storage root and run root with the
//! `vfs` driver, which mounts nothing; libpod's tmp dir with file locks instead of the shared
//! `/dev/shm` lock segment; no events, `k8s-file` logs), so parallel tests and the host's podman
//! never see each other. What podman still writes outside: libcni's result cache
//! `/var/lib/cni/results/<net>-<id>-<if>` (removed again on `rm`) and the image blob-info cache in
//! `/var/lib/containers/cache`; neither is configurable in podman 4.3.
//!
//! The image is a busybox-static rootfs, tarred once into a cache directory and `podman import`ed
//! into the temporary store (a fraction of a second). runc is required (crun refuses this
//! machine's hybrid cgroups) and ulimits are explicit (podman's defaults exceed what runc may
//! set here).
//!
//! This is test support: failures panic with the command and its output, and every guard
//! ([`Podman`], [`Container`]) cleans up on drop, also while a test unwinds.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use twill_testutil::{Netns, TempDir, require_tool};

/// The local test image.
pub const IMAGE: &str = "localhost/twill-e2e-busybox:v1";
/// The content the image's `/www/index.html` serves (trimmed).
pub const INDEX_HTML: &str = "twill-e2e: hello from busybox httpd";
/// busybox applets linked in the image's `/bin`.
const APPLETS: &[&str] = &[
    "sh", "httpd", "nc", "cat", "echo", "ls", "ip", "sleep", "wget", "ping",
];
/// Explicit limits (podman's defaults exceed what runc may set in this environment).
const ULIMITS: &[&str] = &[
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

/// What podman needs to run here, with the package providing it.
pub const TOOLS: &[(&str, &str)] = &[
    ("podman", "podman"),
    ("runc", "runc"),
    ("nsenter", "util-linux"),
    ("busybox", "busybox-static"),
    ("tar", "tar"),
];

/// Fails the test unless podman and its helpers are installed.
pub fn require_tools() {
    for (tool, package) in TOOLS {
        require_tool(tool, package);
    }
}

/// A podman confined to a node namespace and a temporary state directory; on drop it
/// force-removes every container in its store, then the store.
#[derive(Debug)]
pub struct Podman {
    node_path: PathBuf,
    network_config_dir: PathBuf,
    state: TempDir,
}

impl Podman {
    /// podman running in `node`, with plugins from `plugin_dir` and networks from
    /// `network_config_dir`.
    pub fn new(node: &Netns, plugin_dir: &Path, network_config_dir: &Path) -> Podman {
        require_tools();
        let state = TempDir::new("podman");
        for d in ["root", "runroot", "tmp"] {
            std::fs::create_dir_all(state.path().join(d))
                .unwrap_or_else(|e| panic!("create podman {d} dir: {e}"));
        }
        let p = Podman {
            node_path: node.path(),
            network_config_dir: network_config_dir.to_path_buf(),
            state,
        };
        write(
            &p.containers_conf(),
            &containers_conf(plugin_dir, network_config_dir, &p.dir("tmp")),
        );
        write(
            &p.storage_conf(),
            &storage_conf(&p.dir("root"), &p.dir("runroot")),
        );
        p
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.state.path().join(name)
    }

    fn containers_conf(&self) -> PathBuf {
        self.dir("containers.conf")
    }

    fn storage_conf(&self) -> PathBuf {
        self.dir("storage.conf")
    }

    /// `nsenter --net=<node> podman <global flags>`; append the subcommand.
    pub fn command(&self) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.node_path.display()))
            .arg("podman")
            .arg("--root")
            .arg(self.dir("root"))
            .arg("--runroot")
            .arg(self.dir("runroot"))
            .arg("--tmpdir")
            .arg(self.dir("tmp"))
            .args([
                "--storage-driver",
                "vfs",
                "--runtime",
                "runc",
                "--cgroup-manager",
                "cgroupfs",
            ])
            .args(["--events-backend", "none"])
            .arg("--network-config-dir")
            .arg(&self.network_config_dir)
            .env("CONTAINERS_CONF", self.containers_conf())
            .env("CONTAINERS_STORAGE_CONF", self.storage_conf());
        c
    }

    /// Runs `podman <args>` and returns its output, whatever the exit status.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut c = self.command();
        c.args(args);
        c.output().unwrap_or_else(|e| panic!("run {c:?}: {e}"))
    }

    /// Runs `podman <args>`, fails the test unless it succeeds, returns stdout.
    pub fn run_ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "podman {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Makes [`IMAGE`] available in this store: re-used when present, else imported from the
    /// rootfs tarball in `cache_dir` (built there first if missing).
    pub fn ensure_image(&self, cache_dir: &Path) -> &'static str {
        if self.run(&["image", "exists", IMAGE]).status.success() {
            return IMAGE;
        }
        let tarball = rootfs_tarball(cache_dir);
        self.run_ok(&["import", &tarball.to_string_lossy(), IMAGE]);
        IMAGE
    }

    /// `podman run -d` with explicit ulimits and `args` (options, image, command); the returned
    /// guard removes the container on drop.
    pub fn run_detached(&self, args: &[&str]) -> Container<'_> {
        let mut full = vec!["run", "-d"];
        full.extend_from_slice(ULIMITS);
        full.extend_from_slice(args);
        let out = self.run_ok(&full);
        let id = out.lines().last().unwrap_or_default().trim().to_string();
        assert!(
            id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "podman run -d printed no container id: {out:?}"
        );
        Container {
            podman: self,
            id: Some(id),
        }
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // The store is private to this value, so --all only reaches this test's containers.
        let _ = self.run(&["rm", "--all", "--force", "--time", "0"]);
    }
}

/// A running container; force-removed on drop unless [`Container::remove`] already did.
#[derive(Debug)]
pub struct Container<'a> {
    podman: &'a Podman,
    id: Option<String>,
}

impl Container<'_> {
    /// The full 64-hex-digit id (what podman passes as `CNI_CONTAINERID`).
    pub fn id(&self) -> &str {
        self.id.as_deref().unwrap_or_default()
    }

    /// `podman inspect` of the container (the first and only element).
    pub fn inspect(&self) -> Value {
        let out = self
            .podman
            .run_ok(&["inspect", "--type", "container", self.id()]);
        let v: Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("podman inspect output ({e}): {out}"));
        v.get(0)
            .cloned()
            .unwrap_or_else(|| panic!("podman inspect returned no container: {out}"))
    }

    /// `podman rm -f -t 0`: removes the container (and so runs CNI DEL); fails the test if
    /// podman reports an error.
    pub fn remove(mut self) {
        if let Some(id) = self.id.take() {
            self.podman.run_ok(&["rm", "--force", "--time", "0", &id]);
        }
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let _ = self.podman.run(&["rm", "--force", "--time", "0", &id]);
        }
    }
}

/// libcni's cached result for an attachment (podman 4.3 cannot move this cache).
pub fn cni_cache_file(network: &str, container_id: &str, ifname: &str) -> PathBuf {
    PathBuf::from("/var/lib/cni/results").join(format!("{network}-{container_id}-{ifname}"))
}

fn containers_conf(plugin_dir: &Path, network_config_dir: &Path, tmp_dir: &Path) -> String {
    format!(
        "# Written by the twill e2e harness: podman confined to one test.\n\
         [containers]\n\
         default_sysctls = []\n\
         log_driver = \"k8s-file\"\n\
         \n\
         [network]\n\
         network_backend = \"cni\"\n\
         cni_plugin_dirs = [{}]\n\
         network_config_dir = {}\n\
         \n\
         [engine]\n\
         cgroup_manager = \"cgroupfs\"\n\
         events_logger = \"none\"\n\
         lock_type = \"file\"\n\
         runtime = \"runc\"\n\
         tmp_dir = {}\n",
        toml_str(plugin_dir),
        toml_str(network_config_dir),
        toml_str(tmp_dir)
    )
}

fn storage_conf(root: &Path, runroot: &Path) -> String {
    format!(
        "[storage]\ndriver = \"vfs\"\ngraphroot = {}\nrunroot = {}\n",
        toml_str(root),
        toml_str(runroot)
    )
}

/// A TOML basic string holding `p`.
fn toml_str(p: &Path) -> String {
    let s = p.to_string_lossy();
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn write(path: &Path, content: &str) {
    std::fs::write(path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// The rootfs tarball in `cache_dir`, built if missing. Built under a process-unique name and
/// renamed into place, so parallel tests never read a half-written tarball.
fn rootfs_tarball(cache_dir: &Path) -> PathBuf {
    let tarball = cache_dir.join("twill-e2e-busybox-v1.tar");
    if tarball.is_file() {
        return tarball;
    }
    let busybox = crate::which("busybox")
        .unwrap_or_else(|| panic!("busybox not found: apt-get install busybox-static"));
    let rootfs = TempDir::new("rootfs");
    let bin = rootfs.path().join("bin");
    let www = rootfs.path().join("www");
    for d in [&bin, &www, &rootfs.path().join("tmp")] {
        std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("create {}: {e}", d.display()));
    }
    std::fs::copy(&busybox, bin.join("busybox"))
        .unwrap_or_else(|e| panic!("copy {}: {e}", busybox.display()));
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", bin.join(applet))
            .unwrap_or_else(|e| panic!("link {applet}: {e}"));
    }
    write(&www.join("index.html"), &format!("{INDEX_HTML}\n"));
    std::fs::create_dir_all(cache_dir)
        .unwrap_or_else(|e| panic!("create {}: {e}", cache_dir.display()));
    let partial = cache_dir.join(format!(".twill-e2e-busybox-v1.tar.{}", std::process::id()));
    let out = Command::new("tar")
        .arg("-C")
        .arg(rootfs.path())
        .args(["--owner=0", "--group=0", "--numeric-owner", "-cf"])
        .arg(&partial)
        .arg(".")
        .output()
        .unwrap_or_else(|e| panic!("run tar: {e}"));
    assert!(
        out.status.success(),
        "tar of the rootfs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&partial, &tarball)
        .unwrap_or_else(|e| panic!("rename {}: {e}", partial.display()));
    tarball
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_conf_points_podman_at_the_plugins_under_test() {
        let conf = containers_conf(
            Path::new("/usr/lib/cni"),
            Path::new("/tmp/c\"onf"),
            Path::new("/tmp/t"),
        );
        assert!(conf.contains("network_backend = \"cni\""));
        assert!(conf.contains("cni_plugin_dirs = [\"/usr/lib/cni\"]"));
        assert!(conf.contains("network_config_dir = \"/tmp/c\\\"onf\""));
        assert!(conf.contains("lock_type = \"file\""));
        assert!(conf.contains("tmp_dir = \"/tmp/t\""));
    }

    #[test]
    fn cache_file_is_named_like_libcni() {
        assert_eq!(
            cni_cache_file("net1", "abc", "eth0"),
            PathBuf::from("/var/lib/cni/results/net1-abc-eth0")
        );
    }
}
