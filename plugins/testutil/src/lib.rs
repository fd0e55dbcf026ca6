//! Test support shared by the plugin and end-to-end tests.
//!
//! Every privileged test works inside network namespaces it creates through [`Netns`], whose
//! `Drop` removes them again (also when the test panics), so nothing leaks into the root
//! namespace. Plugins are run exactly as a runtime runs them: a fresh process with `CNI_*`
//! variables and the config on stdin, optionally entered into a "host" namespace first so the
//! plugin's host-side work (bridges, nftables, sysctls) stays inside the test's namespaces.
//! Missing privileges or tools fail the test with a message saying what to install; nothing
//! skips silently.

#![allow(clippy::unwrap_used)]

pub mod traffic;

use serde_json::Value;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call, at most `prefix.len() + 9` bytes (interface names
/// must stay within 15).
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("{prefix}{:x}{:x}", std::process::id() % 0xfffff, n)
}

/// Fails the test unless it runs as root.
pub fn require_root() {
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test needs root (network namespaces); run it as root, e.g. sudo make test");
    }
}

/// Fails the test unless `tool` is on PATH, naming the Debian package to install.
pub fn require_tool(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    if !found {
        panic!("{tool} not found: install it with `apt-get install {package}` (make test does)");
    }
}

/// Directory of the workspace's built executables (`target/<profile>`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap();
    // Test binaries live in target/<profile>/deps/, other binaries in target/<profile>/.
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().unwrap().to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// Path of one of our built plugins; fails with a hint when it was not built.
pub fn our_plugin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.is_file(),
        "{} is missing: build the workspace first (cargo build --workspace, as make test does)",
        p.display()
    );
    p
}

/// The reference plugins' directory.
pub fn reference_dir() -> PathBuf {
    let d = PathBuf::from("/usr/lib/cni");
    assert!(
        d.join("bridge").is_file(),
        "reference CNI plugins not found in /usr/lib/cni: apt-get install containernetworking-plugins"
    );
    d
}

/// A network namespace at `/run/netns/<name>`, removed on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates `/run/netns/<unique name>` with `lo` up.
    pub fn new(prefix: &str) -> Netns {
        require_root();
        require_tool("ip", "iproute2");
        let name = unique(prefix);
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    pub fn path_str(&self) -> String {
        self.path().to_string_lossy().into_owned()
    }

    /// Runs `ip <args>` inside the namespace and returns stdout; panics on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run_ok(Command::new("ip").args(&full))
    }

    /// Runs a program inside the namespace (with /sys remounted, via `ip netns exec`).
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .unwrap()
    }

    /// Like [`Netns::exec`] but panics on failure and returns stdout.
    pub fn exec_ok(&self, args: &[&str]) -> String {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(args);
        run_ok(&mut c)
    }

    /// A `Command` that will run inside this namespace (setns before exec, no /sys remount).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        let file = std::fs::File::open(self.path()).unwrap();
        // SAFETY: only async-signal-safe calls (setns) run between fork and exec.
        unsafe {
            c.pre_exec(move || {
                use std::os::fd::AsRawFd;
                if libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

fn run_ok(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{:?} failed: {}{}",
        c,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What one plugin invocation printed.
#[derive(Debug)]
pub struct Outcome {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// stdout parsed as JSON (panics with the text if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {:?} / {}",
                self.stdout, self.stderr
            )
        })
    }

    /// The error code of a failed call.
    pub fn code(&self) -> u64 {
        assert!(
            !self.success,
            "expected failure, got success: {}",
            self.stdout
        );
        self.json()["code"].as_u64().unwrap()
    }

    /// Asserts success and returns stdout as JSON (Null when empty).
    pub fn ok(&self) -> Value {
        assert!(
            self.success,
            "plugin failed: {} {}",
            self.stdout, self.stderr
        );
        if self.stdout.trim().is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }
}

/// The address (without prefix length) of the first IP in an ADD result.
pub fn first_ip(result: &Value) -> String {
    result["ips"][0]["address"]
        .as_str()
        .and_then(|a| a.split('/').next())
        .unwrap_or_else(|| panic!("no ips[0].address in {result}"))
        .to_owned()
}

/// One plugin invocation as a runtime performs it.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub bin: PathBuf,
    pub env: Vec<(String, String)>,
    /// Namespace the plugin process runs in (the test's "host"); `None` = the test's own.
    pub host_ns: Option<String>,
}

impl Invocation {
    /// `CNI_COMMAND=<cmd>`, plus `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME` and `CNI_PATH`
    /// set from the arguments (use [`Invocation::set`]/[`Invocation::unset`] to change them).
    pub fn new(
        bin: &Path,
        cmd: &str,
        container_id: &str,
        netns: &str,
        ifname: &str,
        cni_path: &str,
    ) -> Invocation {
        Invocation {
            bin: bin.to_path_buf(),
            env: vec![
                ("CNI_COMMAND".into(), cmd.into()),
                ("CNI_CONTAINERID".into(), container_id.into()),
                ("CNI_NETNS".into(), netns.into()),
                ("CNI_IFNAME".into(), ifname.into()),
                ("CNI_PATH".into(), cni_path.into()),
            ],
            host_ns: None,
        }
    }

    pub fn set(mut self, k: &str, v: &str) -> Self {
        self.env.retain(|(n, _)| n != k);
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn unset(mut self, k: &str) -> Self {
        self.env.retain(|(n, _)| n != k);
        self
    }

    pub fn in_ns(mut self, ns: &Netns) -> Self {
        self.host_ns = Some(ns.name.clone());
        self
    }

    pub fn command(&self, cmd: &str) -> Self {
        self.clone().set("CNI_COMMAND", cmd)
    }

    /// Runs the plugin with `stdin` and collects its output.
    pub fn run(&self, stdin: &str) -> Outcome {
        let mut c = match &self.host_ns {
            Some(n) => Netns { name: n.clone() }.command_keep(&self.bin),
            None => Command::new(&self.bin),
        };
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        // A plugin that fails before reading stdin (bad environment) closes the pipe early.
        if let Err(e) = child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "write stdin: {e}");
        }
        let out = child.wait_with_output().unwrap();
        Outcome {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Netns {
    /// [`Netns::command`] for a namespace this value does not own (it is not removed).
    fn command_keep(self, program: &Path) -> Command {
        let c = self.command(program);
        std::mem::forget(self);
        c
    }
}

/// A temporary directory removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let p = std::env::temp_dir().join(unique(&format!("twill-{prefix}-")));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn str(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A real etcd server (`etcd-server` package) on its own data directory, killed on drop.
/// Listens on loopback, or on `ip` inside a namespace for cluster tests.
#[derive(Debug)]
pub struct Etcd {
    pub endpoint: String,
    child: Option<std::process::Child>,
    args: Vec<String>,
    netns: Option<String>,
    _data: TempDir,
}

impl Etcd {
    /// Starts etcd on 127.0.0.1 with free ports and waits until it serves.
    pub fn start() -> Etcd {
        Self::start_on(None, "127.0.0.1")
    }

    /// Starts etcd listening on `ip`, inside namespace `netns` if given.
    pub fn start_on(netns: Option<&Netns>, ip: &str) -> Etcd {
        require_tool("etcd", "etcd-server");
        let data = TempDir::new("etcd");
        let (cport, pport) = (free_port(), free_port());
        let name = "twilltest";
        let client = format!("http://{ip}:{cport}");
        let peer = format!("http://{ip}:{pport}");
        let args = vec![
            "--name".into(),
            name.into(),
            "--data-dir".into(),
            data.str(),
            "--listen-client-urls".into(),
            client.clone(),
            "--advertise-client-urls".into(),
            client.clone(),
            "--listen-peer-urls".into(),
            peer.clone(),
            "--initial-advertise-peer-urls".into(),
            peer.clone(),
            "--initial-cluster".into(),
            format!("{name}={peer}"),
            "--log-level".into(),
            "error".into(),
        ];
        let mut e = Etcd {
            endpoint: client,
            child: None,
            args,
            netns: netns.map(|n| n.name.clone()),
            _data: data,
        };
        e.resume();
        e
    }

    /// Stops the server (SIGKILL), keeping its data for [`Etcd::resume`].
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same data and address, waiting until it serves.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "etcd already running");
        let mut cmd = match &self.netns {
            Some(n) => Netns { name: n.clone() }.command_keep(Path::new("etcd")),
            None => Command::new("etcd"),
        };
        let child = cmd
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let hostport = self.endpoint.trim_start_matches("http://").to_owned();
        for _ in 0..200 {
            if self.healthy(&hostport) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("etcd at {} did not become healthy", self.endpoint);
    }

    fn healthy(&self, hostport: &str) -> bool {
        use std::io::Read;
        let probe = |s: &mut std::net::TcpStream| -> std::io::Result<String> {
            s.set_read_timeout(Some(std::time::Duration::from_secs(1)))?;
            write!(s, "GET /health HTTP/1.0\r\nHost: {hostport}\r\n\r\n")?;
            let mut body = String::new();
            s.read_to_string(&mut body)?;
            Ok(body)
        };
        let connect = || -> std::io::Result<String> {
            match &self.netns {
                // Loopback-only probes suffice when etcd runs in our namespace; inside another
                // namespace, ask curl there.
                Some(n) => {
                    let out = Netns { name: n.clone() }
                        .command_keep(Path::new("curl"))
                        .args(["-s", "-m", "1", &format!("http://{hostport}/health")])
                        .output()?;
                    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
                }
                None => {
                    let mut s = std::net::TcpStream::connect(hostport)?;
                    probe(&mut s)
                }
            }
        };
        connect()
            .map(|b| b.contains("\"health\":\"true\""))
            .unwrap_or(false)
    }

    /// The server's PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP port free on loopback right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
