//! `netpol-agent`: the program every pod of the NetworkPolicy suite runs, in the pod's
//! network namespace.
//!
//! - `netpol-agent serve` listens on TCP and UDP ports 80 and 81 on all addresses (TCP:
//!   accept, write one byte, close; UDP: echo every datagram) and prints `ready` once all
//!   four sockets are bound, so the harness waits on that line instead of sleeping.
//! - `netpol-agent probe --timeout-ms N TARGET...` (`TARGET` = `ip:port/tcp|udp`) probes
//!   every target at once, one thread each, and prints one line per target in the order
//!   given: `ip:port/proto ok|fail` (why a probe failed goes to stderr, so stdout stays a
//!   fixed format).
//!
//! Why a binary of our own and not `nc`/python: the suite probes a few hundred cells and a
//! denied cell costs a whole timeout, so all targets of one source must be probed
//! concurrently by one process, with one exact timeout; spawning a process per cell would
//! dominate the run on 2 cores. It uses only `std` (threads and blocking sockets): it runs
//! for about a second and must start fast.
//!
//! A TCP probe counts as `ok` only when the connection is accepted *and* the server's byte
//! comes back, so the reply direction is exercised too (as upstream's agnhost does). A UDP
//! probe re-sends its datagram every 200 ms until an echo arrives or the timeout expires,
//! because a single lost datagram (ARP resolution, a ruleset swap) must not read as "denied".
//! SCTP is not supported: this kernel has no SCTP sockets.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const PORTS: [u16; 2] = [80, 81];
const USAGE: &str =
    "usage: netpol-agent serve | netpol-agent probe --timeout-ms N ip:port/tcp|udp...";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Tcp,
    Udp,
}

#[derive(Debug, Clone)]
struct Target {
    text: String,
    addr: SocketAddr,
    proto: Proto,
}

fn parse_target(s: &str) -> Result<Target, String> {
    let (addr, proto) = s
        .rsplit_once('/')
        .ok_or_else(|| format!("target {s:?}: expected ip:port/tcp|udp"))?;
    let proto = match proto {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        other => return Err(format!("target {s:?}: unsupported protocol {other:?}")),
    };
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| format!("target {s:?}: bad address: {e}"))?;
    Ok(Target {
        text: s.to_owned(),
        addr,
        proto,
    })
}

fn probe_tcp(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    let left = deadline.saturating_duration_since(Instant::now());
    s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
        .map_err(|e| format!("set timeout: {e}"))?;
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(1) => Ok(()),
        Ok(_) => Err("connection closed without the server's byte".into()),
        Err(e) => Err(format!("read: {e}")),
    }
}

fn probe_udp(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let bind = if addr.is_ipv6() {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    };
    let s = UdpSocket::bind(bind).map_err(|e| format!("bind: {e}"))?;
    s.connect(addr).map_err(|e| format!("connect: {e}"))?;
    let payload = format!("netpol-agent probe {addr}");
    let mut buf = [0u8; 256];
    let mut last_err = String::from("no answer");
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(format!("timeout ({last_err})"));
        }
        if let Err(e) = s.send(payload.as_bytes()) {
            // ECONNREFUSED from an earlier ICMP error, or EPERM from a local drop.
            last_err = format!("send: {e}");
        }
        let wait = deadline
            .saturating_duration_since(now)
            .min(Duration::from_millis(200))
            .max(Duration::from_millis(1));
        s.set_read_timeout(Some(wait))
            .map_err(|e| format!("set timeout: {e}"))?;
        match s.recv(&mut buf) {
            Ok(n) if &buf[..n] == payload.as_bytes() => return Ok(()),
            Ok(_) => last_err = "unexpected answer".into(),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => last_err = format!("recv: {e}"),
        }
    }
}

fn probe(args: &[String]) -> Result<(), String> {
    let mut timeout = Duration::from_millis(1000);
    let mut targets = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--timeout-ms" {
            let v = it.next().ok_or("--timeout-ms needs a value")?;
            let ms: u64 = v.parse().map_err(|e| format!("--timeout-ms {v:?}: {e}"))?;
            timeout = Duration::from_millis(ms);
        } else {
            targets.push(parse_target(a)?);
        }
    }
    if targets.is_empty() {
        return Err(USAGE.into());
    }
    let handles: Vec<_> = targets
        .into_iter()
        .map(|t| {
            std::thread::spawn(move || {
                let r = match t.proto {
                    Proto::Tcp => probe_tcp(t.addr, timeout),
                    Proto::Udp => probe_udp(t.addr, timeout),
                };
                (t, r)
            })
        })
        .collect();
    let mut out = String::new();
    for h in handles {
        let (t, r) = h.join().map_err(|_| "a probe thread panicked")?;
        match r {
            Ok(()) => out.push_str(&format!("{} ok\n", t.text)),
            Err(e) => {
                eprintln!("{}: {e}", t.text);
                out.push_str(&format!("{} fail\n", t.text));
            }
        }
    }
    std::io::stdout()
        .write_all(out.as_bytes())
        .map_err(|e| format!("write stdout: {e}"))
}

fn serve() -> Result<(), String> {
    let mut threads = Vec::new();
    for port in PORTS {
        let l =
            TcpListener::bind(("0.0.0.0", port)).map_err(|e| format!("bind tcp/{port}: {e}"))?;
        threads.push(std::thread::spawn(move || {
            for conn in l.incoming() {
                match conn {
                    Ok(mut c) => {
                        let _ = c.write_all(b"1");
                    }
                    Err(e) => {
                        eprintln!("accept tcp/{port}: {e}");
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                }
            }
        }));
        let u = UdpSocket::bind(("0.0.0.0", port)).map_err(|e| format!("bind udp/{port}: {e}"))?;
        threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            loop {
                match u.recv_from(&mut buf) {
                    Ok((n, peer)) => {
                        let _ = u.send_to(&buf[..n], peer);
                    }
                    Err(e) => {
                        eprintln!("recv udp/{port}: {e}");
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                }
            }
        }));
    }
    println!("ready");
    std::io::stdout()
        .flush()
        .map_err(|e| format!("write stdout: {e}"))?;
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("serve") => serve(),
        Some("probe") => probe(&args[1..]),
        _ => Err(USAGE.into()),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netpol-agent: {e}");
            ExitCode::from(2)
        }
    }
}
