//! Real packets for tests: a tiny TCP or UDP server in a namespace that answers every
//! connection or datagram with its name and the peer address it saw, and a client that asks
//! it once. "Which server answered" shows where DNAT sent the traffic; "which address it saw"
//! shows whether SNAT/masquerade rewrote the source.
//!
//! Both sides are `python3` (installed on the development and CI machines) so no test
//! binary has to be built; the server prints `ready` once it listens, so tests wait on that
//! line instead of sleeping, and it is killed by PID when dropped. A client that gets no
//! answer fails after a timeout: that bounds a failing test, it never decides a passing one.

use crate::{Netns, require_tool};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

const PYTHON: &str = "/usr/bin/python3";

const SERVER: &str = r#"
import socket, sys
proto, host, port, name = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
if proto == "tcp":
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(64)
    print("ready", flush=True)
    while True:
        c, a = s.accept()
        c.sendall(("%s %s" % (name, a[0])).encode())
        c.close()
else:
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind((host, port))
    print("ready", flush=True)
    while True:
        d, a = s.recvfrom(2048)
        s.sendto(("%s %s" % (name, a[0])).encode(), a)
"#;

const CLIENT: &str = r#"
import socket, sys
proto, host, port, sport, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
if proto == "tcp":
    s = socket.create_connection((host, port), timeout=timeout)
    print(s.recv(256).decode())
else:
    s = socket.socket(fam, socket.SOCK_DGRAM)
    if sport:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", sport))
    s.settimeout(timeout)
    s.sendto(b"hello", (host, port))
    print(s.recvfrom(256)[0].decode())
"#;

/// Seconds a client waits for an answer before the attempt counts as failed.
pub const CLIENT_TIMEOUT_SECS: u32 = 3;

/// `tcp` or `udp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// A server answering `<name> <peer address>`, killed on drop.
#[derive(Debug)]
pub struct Server {
    child: Child,
}

impl Server {
    /// Starts listening on `addr:port` inside `ns` and returns once it is ready.
    pub fn start(ns: &Netns, proto: Proto, addr: &str, port: u16, name: &str) -> Server {
        require_tool("python3", "python3");
        let mut child = ns
            .command(PYTHON)
            .args(["-c", SERVER, proto.as_str(), addr, &port.to_string(), name])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let server = Server { child };
        assert_eq!(
            line.trim(),
            "ready",
            "server {name} on {addr}:{port} did not start"
        );
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asks the server at `addr:port` from inside `ns` once; `Ok("<name> <peer>")` or the
/// client's error.
pub fn ask(ns: &Netns, proto: Proto, addr: &str, port: u16) -> Result<String, String> {
    ask_from(ns, proto, addr, port, 0)
}

/// [`ask`] from a fixed local port (`0` = any), so repeated UDP asks share one conntrack
/// entry.
pub fn ask_from(
    ns: &Netns,
    proto: Proto,
    addr: &str,
    port: u16,
    src_port: u16,
) -> Result<String, String> {
    require_tool("python3", "python3");
    let out = ns
        .command(PYTHON)
        .args([
            "-c",
            CLIENT,
            proto.as_str(),
            addr,
            &port.to_string(),
            &src_port.to_string(),
            &CLIENT_TIMEOUT_SECS.to_string(),
        ])
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(err.lines().last().unwrap_or("no output").to_owned())
    }
}
