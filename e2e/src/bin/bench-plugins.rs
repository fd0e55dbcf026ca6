//! `bench-plugins`: times our CNI plugins against the reference plugins, as a runtime runs them,
//! and writes `docs/benchmarks.md`.
//!
//! Two scenarios, both measured per container as ADD then DEL:
//! (a) `bridge` + `host-local` with `ipMasq`; (b) the same bridge chained with `portmap` and one
//! port mapping. Each side (ours, reference) gets its own test host namespace and container
//! namespace, so one side's bridge, tables and conntrack never influence the other; the sides
//! alternate within one run (ours, reference, ours, ...) so machine noise (other builds on these
//! 2 cores) hits both alike. Plugin processes are exec'd through `twill_e2e::chain`, i.e. with
//! the CNI environment and the config on stdin, and only their wall-clock time is counted.
//!
//! The release profile aborts on panic, which would skip the namespaces' `Drop`; so everything
//! that can be checked (root, tools, plugin binaries, output directory) is checked with an error
//! before the first namespace exists, and the run itself returns errors instead of panicking.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use twill_e2e::chain::{Attachment, Chain};
use twill_e2e::report::{self, Machine, Meta, Row};
use twill_e2e::stats::summarize;
use twill_e2e::subnet::Subnet24;
use twill_e2e::{plugins, which};
use twill_testutil::{Netns, TempDir};

const USAGE: &str =
    "usage: bench-plugins [--iterations N] [--ours DIR] [--reference DIR] [--output FILE]

Times ADD+DEL of bridge+host-local (ipMasq) and bridge+portmap, ours against the reference
plugins, alternating in one run, and writes the medians, p90 and ratios to FILE.
  --iterations N   timed ADD+DEL per side and scenario (default 30)
  --ours DIR       our plugins (default: the directory of this executable, target/release)
  --reference DIR  the reference plugins (default /usr/lib/cni)
  --output FILE    the report (default docs/benchmarks.md, relative to the current directory)
Needs root: it creates network namespaces (and removes them).";

const PLUGINS: &[&str] = &["bridge", "host-local", "portmap"];
const TOOLS: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("iptables", "iptables"),
    ("nft", "nftables"),
];

#[derive(Debug, PartialEq)]
struct Args {
    iterations: usize,
    ours: PathBuf,
    reference: PathBuf,
    output: PathBuf,
}

/// Parses the flags after the program name; `Ok(None)` means help was asked for.
fn parse_args(argv: &[String], default_ours: PathBuf) -> Result<Option<Args>> {
    let mut args = Args {
        iterations: 30,
        ours: default_ours,
        reference: PathBuf::from("/usr/lib/cni"),
        output: PathBuf::from("docs/benchmarks.md"),
    };
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let value = it
            .next()
            .with_context(|| format!("flag {flag} needs a value\n\n{USAGE}"))?;
        match flag.as_str() {
            "--iterations" => {
                args.iterations = value
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .with_context(|| format!("--iterations {value}: not a positive integer"))?
            }
            "--ours" => args.ours = PathBuf::from(value),
            "--reference" => args.reference = PathBuf::from(value),
            "--output" => args.output = PathBuf::from(value),
            _ => bail!("unknown flag {flag}\n\n{USAGE}"),
        }
    }
    Ok(Some(args))
}

/// One measured configuration.
struct Scenario {
    key: &'static str,
    title: &'static str,
    portmap: bool,
}

const SCENARIOS: [Scenario; 2] = [
    Scenario {
        key: "a",
        title: "bridge + host-local (ipMasq)",
        portmap: false,
    },
    Scenario {
        key: "b",
        title: "bridge + host-local (ipMasq) + portmap (1 mapping)",
        portmap: true,
    },
];

fn conflist(s: &Scenario, subnet: Subnet24, data_dir: &Path) -> Value {
    let mut plugins = vec![json!({
        "type": "bridge",
        "bridge": format!("tbench{}", s.key),
        "isGateway": true,
        "ipMasq": true,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": subnet.cidr()}]],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": data_dir
        }
    })];
    if s.portmap {
        plugins.push(json!({"type": "portmap", "capabilities": {"portMappings": true}}));
    }
    json!({"cniVersion": "1.0.0", "name": format!("bench-{}", s.key), "plugins": plugins})
}

fn capability_args() -> Value {
    json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]})
}

/// Timings of one side in one scenario.
#[derive(Default)]
struct Samples {
    add: Vec<Duration>,
    del: Vec<Duration>,
    total: Vec<Duration>,
}

/// One side of the comparison: its plugins and the namespaces they run in.
struct Side {
    dir: PathBuf,
    host: Netns,
    container: Netns,
    data: TempDir,
    lists: Vec<Value>,
    samples: Vec<Samples>,
}

impl Side {
    fn new(label: &str, dir: &Path) -> Side {
        let host = Netns::new(&format!("tbh{label}"));
        let container = Netns::new(&format!("tbc{label}"));
        let data = TempDir::new("bench-ipam");
        let lists = SCENARIOS
            .iter()
            .map(|s| conflist(s, Subnet24::unique(), data.path()))
            .collect();
        Side {
            dir: dir.to_path_buf(),
            host,
            container,
            data,
            lists,
            samples: SCENARIOS.iter().map(|_| Samples::default()).collect(),
        }
    }

    /// ADD then DEL of container `id` in scenario `index`; returns (ADD, DEL) times.
    fn add_del(&self, index: usize, id: &str) -> Result<(Duration, Duration)> {
        let chain = Chain {
            list: &self.lists[index],
            plugin_dir: &self.dir,
            host: &self.host,
        };
        let att = Attachment {
            container_id: id.into(),
            netns: self.container.path_str(),
            ifname: "eth0".into(),
            capability_args: capability_args(),
        };
        let add = chain.add(&att)?;
        let del = chain.del(&att, &add.value)?;
        Ok((add.elapsed, del))
    }
}

fn main() -> Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    let exe_dir = std::env::current_exe()
        .context("locate this executable")?
        .parent()
        .map(Path::to_path_buf)
        .context("this executable has no directory")?;
    let Some(args) = parse_args(argv.get(1..).unwrap_or_default(), exe_dir)? else {
        println!("{USAGE}");
        return Ok(());
    };
    preflight(&args)?;
    let meta = Meta {
        date: report::date_from_unix(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs()),
        machine: Machine::this(),
        command: argv.join(" "),
        iterations: args.iterations,
        // Relative to where `make bench` runs (the repository), so the page names no path
        // of the machine it was measured on.
        ours_dir: std::env::current_dir()
            .ok()
            .and_then(|cwd| args.ours.strip_prefix(cwd).ok().map(Path::to_path_buf))
            .unwrap_or_else(|| args.ours.clone())
            .display()
            .to_string(),
        reference_dir: args.reference.display().to_string(),
    };
    let rows = measure(&args)?;
    let old = std::fs::read_to_string(&args.output).unwrap_or_default();
    let page = report::replace_section(&old, "plugins", &report::render(&meta, &rows));
    std::fs::write(&args.output, &page)
        .with_context(|| format!("write {}", args.output.display()))?;
    println!(
        "{}",
        page.lines()
            .filter(|l| l.starts_with('|'))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let written = std::fs::canonicalize(&args.output).unwrap_or_else(|_| args.output.clone());
    println!("wrote {}", written.display());
    Ok(())
}

/// Everything that would otherwise fail halfway, with namespaces to clean up.
fn preflight(args: &Args) -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "bench-plugins needs root (it creates network namespaces); run it as root, e.g. sudo make bench"
        );
    }
    for (tool, package) in TOOLS {
        if which(tool).is_none() {
            bail!("{tool} not found: install it with `apt-get install {package}`");
        }
    }
    for (side, dir, hint) in [
        (
            "our",
            &args.ours,
            "build them with `cargo build --release --workspace --bins` (make bench does) or pass --ours DIR",
        ),
        (
            "reference",
            &args.reference,
            "apt-get install containernetworking-plugins, or pass --reference DIR",
        ),
    ] {
        let missing = plugins::missing(dir, PLUGINS);
        if !missing.is_empty() {
            bail!(
                "{side} plugins {missing:?} missing in {}: {hint}",
                dir.display()
            );
        }
    }
    if let Some(dir) = args.output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("create output directory {}", dir.display()))?;
    }
    Ok(())
}

fn measure(args: &Args) -> Result<Vec<Row>> {
    let mut sides = [Side::new("o", &args.ours), Side::new("r", &args.reference)];
    let labels = ["ours", "reference"];
    eprintln!(
        "ours: {} (host ns {}), reference: {} (host ns {})",
        sides[0].dir.display(),
        sides[0].host.name,
        sides[1].dir.display(),
        sides[1].host.name
    );
    for (index, s) in SCENARIOS.iter().enumerate() {
        for (side, label) in sides.iter().zip(labels) {
            side.add_del(index, &format!("warmup-{}", s.key))
                .with_context(|| format!("warm-up of {label} in scenario {}", s.title))?;
        }
    }
    for i in 0..args.iterations {
        for (index, s) in SCENARIOS.iter().enumerate() {
            for (side, label) in sides.iter_mut().zip(labels) {
                let (add, del) = side
                    .add_del(index, &format!("bench-{}-{i}", s.key))
                    .with_context(|| format!("iteration {i} of {label} in scenario {}", s.title))?;
                let samples = &mut side.samples[index];
                samples.add.push(add);
                samples.del.push(del);
                samples.total.push(add + del);
            }
        }
        if (i + 1) % 10 == 0 || i + 1 == args.iterations {
            eprintln!("{}/{} iterations", i + 1, args.iterations);
        }
    }
    let leftover: Vec<_> = sides
        .iter()
        .flat_map(|s| std::fs::read_dir(s.data.path()).into_iter().flatten())
        .flatten()
        .flat_map(|net| {
            std::fs::read_dir(net.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|f| f.file_name().to_string_lossy().into_owned())
        .filter(|name| name.parse::<std::net::Ipv4Addr>().is_ok())
        .collect();
    if !leftover.is_empty() {
        bail!("host-local reservations left after DEL: {leftover:?}");
    }
    let mut rows = Vec::new();
    for (index, s) in SCENARIOS.iter().enumerate() {
        let (o, r) = (&sides[0].samples[index], &sides[1].samples[index]);
        for (call, ours, reference) in [
            ("ADD", &o.add, &r.add),
            ("DEL", &o.del, &r.del),
            ("ADD+DEL", &o.total, &r.total),
        ] {
            let (Some(ours), Some(reference)) = (summarize(ours), summarize(reference)) else {
                bail!("no samples for {call} in scenario {}", s.title);
            };
            rows.push(Row {
                scenario: s.title.into(),
                call: call.into(),
                ours,
                reference,
            });
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn defaults() {
        let a = parse_args(&[], PathBuf::from("target/release"))
            .unwrap()
            .unwrap();
        assert_eq!(
            a,
            Args {
                iterations: 30,
                ours: PathBuf::from("target/release"),
                reference: PathBuf::from("/usr/lib/cni"),
                output: PathBuf::from("docs/benchmarks.md"),
            }
        );
    }

    #[test]
    fn flags_override_defaults() {
        let a = parse_args(
            &argv("--iterations 5 --ours /usr/lib/cni --reference /opt/ref --output /tmp/b.md"),
            PathBuf::new(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(a.iterations, 5);
        assert_eq!(a.ours, PathBuf::from("/usr/lib/cni"));
        assert_eq!(a.reference, PathBuf::from("/opt/ref"));
        assert_eq!(a.output, PathBuf::from("/tmp/b.md"));
    }

    #[test]
    fn bad_flags_are_errors_naming_the_flag() {
        let e = parse_args(&argv("--iterations 0"), PathBuf::new()).unwrap_err();
        assert!(e.to_string().starts_with("--iterations 0: "), "{e}");
        let e = parse_args(&argv("--bogus 1"), PathBuf::new()).unwrap_err();
        assert!(e.to_string().starts_with("unknown flag --bogus"), "{e}");
        let e = parse_args(&argv("--ours"), PathBuf::new()).unwrap_err();
        assert!(
            e.to_string().starts_with("flag --ours needs a value"),
            "{e}"
        );
        assert!(
            parse_args(&argv("--help"), PathBuf::new())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn portmap_scenario_chains_portmap_with_the_capability() {
        let list = conflist(&SCENARIOS[1], Subnet24([10, 128, 1]), Path::new("/tmp/d"));
        let plugins = list["plugins"].as_array().unwrap();
        assert_eq!(plugins.len(), 2);
        assert_eq!(plugins[0]["ipMasq"], true);
        assert_eq!(plugins[1]["capabilities"]["portMappings"], true);
        assert_eq!(
            conflist(&SCENARIOS[0], Subnet24([10, 128, 1]), Path::new("/tmp/d"))["plugins"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
}
