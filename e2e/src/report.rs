//! `docs/benchmarks.md`: the benchmark's figures with what is needed to trust and repeat them.
//!
//! A figure without its date, machine, exact command and method cannot be compared with
//! anything, so the page carries all of them; the rendering is a pure function of the measured
//! summaries so it is tested without running anything. Ratios compare the two sides of one run
//! only: the page says so, because numbers from different runs on this shared machine differ
//! more than the plugins do.

use crate::stats::{Summary, ratio};
use std::fmt::Write;
use std::time::Duration;

/// The machine a run was measured on.
#[derive(Debug, Clone)]
pub struct Machine {
    pub nproc: usize,
    pub kernel: String,
    pub cpu: String,
}

impl Machine {
    /// This machine: CPU count, kernel release and CPU model.
    pub fn this() -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        Machine {
            nproc: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|k| k.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
            cpu,
        }
    }
}

/// Everything about a run except the figures.
#[derive(Debug, Clone)]
pub struct Meta {
    /// `YYYY-MM-DD` (UTC).
    pub date: String,
    pub machine: Machine,
    /// The exact command line that produced the page.
    pub command: String,
    pub iterations: usize,
    pub ours_dir: String,
    pub reference_dir: String,
}

/// One measured line: a scenario's call (ADD, DEL or ADD+DEL) on both sides.
#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: String,
    pub call: String,
    pub ours: Summary,
    pub reference: Summary,
}

/// The Markdown page.
pub fn render(meta: &Meta, rows: &[Row]) -> String {
    let mut s = String::new();
    let m = &meta.machine;
    // Writing to a String cannot fail; the results are ignored on purpose.
    let _ = writeln!(s, "## CNI plugins: ours against the reference plugins\n");
    let _ = writeln!(
        s,
        "Written by `e2e/src/bin/bench-plugins.rs` (`make bench`).\n"
    );
    let _ = writeln!(s, "- Date: {} (UTC)", meta.date);
    let _ = writeln!(
        s,
        "- Machine: {} CPUs ({}), Linux {}",
        m.nproc, m.cpu, m.kernel
    );
    let _ = writeln!(s, "- Command: `{}`", meta.command);
    let _ = writeln!(
        s,
        "- Ours: `{}`; reference: `{}`",
        meta.ours_dir, meta.reference_dir
    );
    let _ = writeln!(s, "- Iterations: {} per side and scenario", meta.iterations);
    if meta.ours_dir == meta.reference_dir {
        let _ = writeln!(
            s,
            "- **Harness check**: both sides ran the same plugins, so the ratios show only the \
             measurement noise of this run."
        );
    }
    let _ = writeln!(
        s,
        "\nMethod: inside a test host namespace, each iteration runs ADD then DEL of one container \
         (fresh container ID, the container namespace re-used), exec'ing the plugins as a runtime \
         does (environment + config on stdin; DEL in reverse order with the final result as \
         `prevResult`). A time is the wall clock from spawning each plugin process to reaping \
         it, summed over the chain (delegated `host-local` runs inside `bridge`'s time). The \
         sides alternate (ours, reference, ours, ...) and each has its own host namespace; one \
         untimed warm-up per side creates the bridge and the long-lived firewall tables. Both \
         sides get the same configuration; `portmap` runs its default backend.\n"
    );
    let _ = writeln!(
        s,
        "| scenario | call | ours median | ours p90 | reference median | reference p90 | ours/reference (median) |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {:.2} |",
            r.scenario,
            r.call,
            ms(r.ours.median),
            ms(r.ours.p90),
            ms(r.reference.median),
            ms(r.reference.p90),
            ratio(r.ours.median, r.reference.median)
        );
    }
    s
}

/// The page header shared by every benchmark section.
pub const PAGE_HEADER: &str = "# Benchmarks\n\nEach section is written by one benchmark binary (`make bench` runs them all). \
Compare the columns of one run only: figures from different runs on this shared machine differ \
more than the things measured do.\n";

/// Replaces (or appends) the section `name` of a benchmarks page with `body`. Sections are
/// delimited by `<!-- bench:NAME -->` / `<!-- /bench:NAME -->` so each benchmark rewrites only
/// its own figures. An empty page gets [`PAGE_HEADER`] first.
pub fn replace_section(page: &str, name: &str, body: &str) -> String {
    let open = format!("<!-- bench:{name} -->");
    let close = format!("<!-- /bench:{name} -->");
    let block = format!("{open}\n{}\n{close}", body.trim_end());
    let page = if page.trim().is_empty() {
        PAGE_HEADER.to_owned()
    } else {
        page.to_owned()
    };
    match (page.find(&open), page.find(&close)) {
        (Some(a), Some(b)) if b > a => format!("{}{block}{}", &page[..a], &page[b + close.len()..]),
        _ => format!("{}\n{block}\n", page.trim_end()),
    }
}

/// `12.3 ms`.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// The UTC date `YYYY-MM-DD` of a Unix time (Howard Hinnant's `civil_from_days`).
pub fn date_from_unix(secs: u64) -> String {
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(median_ms: u64, p90_ms: u64) -> Summary {
        Summary {
            n: 30,
            median: Duration::from_millis(median_ms),
            p90: Duration::from_millis(p90_ms),
        }
    }

    fn meta(ours: &str) -> Meta {
        Meta {
            date: "2026-11-22".into(),
            machine: Machine {
                nproc: 2,
                kernel: "6.1.0".into(),
                cpu: "Test CPU".into(),
            },
            command: "target/release/bench-plugins --iterations 30".into(),
            iterations: 30,
            ours_dir: ours.into(),
            reference_dir: "/usr/lib/cni".into(),
        }
    }

    #[test]
    fn page_has_provenance_and_one_line_per_row() {
        let rows = [Row {
            scenario: "bridge + host-local".into(),
            call: "ADD".into(),
            ours: summary(10, 12),
            reference: summary(40, 50),
        }];
        let page = render(&meta("target/release"), &rows);
        assert!(page.contains("- Date: 2026-11-22 (UTC)"));
        assert!(page.contains("- Machine: 2 CPUs (Test CPU), Linux 6.1.0"));
        assert!(page.contains("- Command: `target/release/bench-plugins --iterations 30`"));
        assert!(page.contains(
            "| bridge + host-local | ADD | 10.0 ms | 12.0 ms | 40.0 ms | 50.0 ms | 0.25 |"
        ));
        assert!(!page.contains("Harness check"));
    }

    #[test]
    fn same_directory_on_both_sides_is_flagged() {
        assert!(render(&meta("/usr/lib/cni"), &[]).contains("Harness check"));
    }

    #[test]
    fn sections_are_replaced_in_place_or_appended() {
        let page = replace_section("", "plugins", "## A\nfirst");
        assert!(page.starts_with("# Benchmarks"));
        let page = replace_section(&page, "cluster", "## B\nx");
        let page = replace_section(&page, "plugins", "## A\nsecond");
        assert!(page.contains("second") && !page.contains("first"));
        assert!(
            page.find("## A").unwrap() < page.find("## B").unwrap(),
            "order kept"
        );
        assert_eq!(page.matches("<!-- bench:plugins -->").count(), 1);
    }

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(date_from_unix(0), "1970-01-01");
        assert_eq!(date_from_unix(951_782_400), "2000-02-29");
        assert_eq!(date_from_unix(1_798_502_400), "2026-12-29");
    }
}
