//! One iperf3 client run, for the benchmarks that compare pod throughput within one run.
//!
//! The client is started right after its server, which may not listen yet: a run without a
//! JSON result is retried (20 times, 100 ms apart) rather than preceded by a sleep.

use std::process::{Child, Stdio};
use std::time::Duration;
use twill_testutil::Netns;

/// Runs `iperf3 ARGS` (which must include `-c HOST` and `-J`) inside `ns`; bits per second
/// received. Panics when no run produced a result.
pub fn client_bps(ns: &Netns, args: &[String]) -> f64 {
    for _ in 0..20 {
        let out = ns
            .command("iperf3")
            .args(args)
            .output()
            .expect("run iperf3 (apt-get install iperf3)");
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            && let Some(bps) = v["end"]["sum_received"]["bits_per_second"].as_f64()
        {
            return bps;
        }
        // Server not listening yet.
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("iperf3 {} produced no result", args.join(" "));
}

/// An iperf3 server, killed by PID on drop (also when a measurement panics) so it never
/// keeps a namespace alive.
#[derive(Debug)]
pub struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Server {
    /// `iperf3 -s` inside `ns`, on `port` or iperf3's default.
    pub fn start(ns: &Netns, port: Option<u16>) -> Server {
        let mut args = vec!["-s".to_owned()];
        if let Some(p) = port {
            args.extend(["-p".to_owned(), p.to_string()]);
        }
        Server(
            ns.command("iperf3")
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start iperf3 server (apt-get install iperf3)"),
        )
    }
}
