//! `convoy bench`: measurements of the live path at contact-center scale, run as one
//! process on this machine (no network beyond 127.0.0.1).
//!
//! - [`core`]: the pure live path's throughput against parsing alone (`convoy bench
//!   core`);
//! - [`memory`]: resident memory per live conversation (`convoy bench memory`).
//! - [`burst`]: the burst at Genesys' real request budget, end to end
//!   (`convoy bench burst`): when Convoy's views and Genesys' attributes converge;
//! - [`e2e`]: sustained frames per second and receipt-to-durable latency of the whole
//!   live path at offered loads (`convoy bench e2e`);
//! - [`restart`]: time to ready, to drain a full outbox and to reconcile after a restart
//!   (`convoy bench restart`);
//! - [`cluster`]: the cluster roles' throughput with 1, 2 and 3 workers (`convoy bench
//!   cluster`).
//!
//! This module owns the command line of each, the helpers they share (reading the
//! process's resident memory, summing a metric from the Prometheus text, formatting) and
//! the exit codes: 0 measured, 1 the run did not converge or could not run, 2 bad usage.

pub mod burst;
pub mod cluster;
pub mod core;
pub mod e2e;
pub mod memory;
pub mod restart;

use std::process::ExitCode;
use std::time::Duration;

use crate::logging;

/// `convoy bench core|memory|burst|e2e|restart|cluster`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum BenchCommand {
    /// Frames per second and MB/s of everything Convoy does with a frame but I/O (parse,
    /// classify, join, transitions, facts, SLA clocks, CRM records), next to parsing the
    /// same frames into serde's IgnoredAny, and the ratio of the two.
    Core(core::CoreArgs),
    /// Resident memory per live conversation: spawn N synthetic conversations in the
    /// router, measure the process's RSS before and after, then retire them.
    Memory(memory::MemoryArgs),
    /// The 1 000-conversation burst at Genesys' real request budget: an in-process
    /// emulator (no emulator-side limit), the full daemon, the simulator unpaced; reports
    /// when Convoy's views equal the truth and when every attribute is written.
    Burst(burst::BurstArgs),
    /// The whole live path on loopback (emulator → WebSocket → Convoy → outbox → CRM test
    /// server) at offered loads: sustained frames per second and the latency from a
    /// frame's receipt to its durable commit (p50, p90, p99, max), with and without fsync.
    E2e(e2e::E2eArgs),
    /// Restart cost: start on an outbox holding pending CRM records and conversations
    /// owed a re-read (against the emulator's rate limit); time to ready, to drain the
    /// outbox, and to reconcile.
    Restart(restart::RestartArgs),
    /// Cluster throughput (issue 12) with 1, 2 and 3 workers: a `nats-server -js` child,
    /// one ingest and W workers in this process against the emulator, the simulator
    /// unpaced; frames consumed per second, time until the views equal the truth, CPU time.
    Cluster(cluster::ClusterArgs),
}

/// How a bench prints its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

/// Why a bench could not run or did not reach its end.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("invalid arguments: {0}")]
    Usage(String),
    #[error("emulator: {0}")]
    Emulator(String),
    #[error("daemon: {0}")]
    Daemon(String),
    #[error("reading resident memory from {path}: {detail}")]
    Memory { path: &'static str, detail: String },
    #[error("reading CPU time from {path}: {detail}")]
    Cpu { path: &'static str, detail: String },
    #[error("{0}")]
    Stalled(String),
    #[error("simulator: {0}")]
    Simulator(String),
    #[error("writing the report: {0}")]
    Output(String),
    #[error("building the corpus: {0}")]
    Corpus(String),
}

/// Exit code for a bench that ran but did not converge, or could not run.
const EXIT_FAILED: u8 = 1;
/// Exit code for bad usage (same as clap's).
const EXIT_USAGE: u8 = 2;

/// `convoy bench …` as a process: warnings-only logs, an actix System, the report on
/// stdout, the exit code.
pub fn main(command: BenchCommand) -> ExitCode {
    // The bench's own lines must stay readable; RUST_LOG still overrides.
    let _ = logging::init(&convoy::config::LogConfig {
        format: convoy::config::LogFormat::Text,
        filter: "warn".to_owned(),
    });
    let outcome = actix_rt::System::new().block_on(async move {
        match command {
            BenchCommand::Core(args) => core::run(args).await,
            BenchCommand::Memory(args) => memory::run(args).await,
            BenchCommand::Burst(args) => burst::run(args).await,
            BenchCommand::E2e(args) => e2e::run(args).await,
            BenchCommand::Restart(args) => restart::run(args).await,
            BenchCommand::Cluster(args) => cluster::run(args).await,
        }
    });
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(EXIT_FAILED),
        Err(error @ BenchError::Usage(_)) => {
            eprintln!("convoy bench: {error}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(error) => {
            eprintln!("convoy bench: {error}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// Prints a report as `format` asks: its text, or one pretty JSON document.
pub fn print_report<R: serde::Serialize>(
    report: &R,
    format: OutputFormat,
    to_text: impl FnOnce(&R) -> String,
) -> Result<(), BenchError> {
    let text = match format {
        OutputFormat::Text => to_text(report),
        OutputFormat::Json => serde_json::to_string_pretty(report)
            .map(|json| json + "\n")
            .map_err(|error| BenchError::Output(error.to_string()))?,
    };
    write_report(&text)
}

/// The emulator's ground truth, read in-process (the same JSON `GET /emulator/v1/truth`
/// serves, without an HTTP round trip per poll).
pub fn emulator_truth(
    emulator: &crate::emulator::Emulator,
) -> Result<Vec<serde_json::Value>, BenchError> {
    let truth = emulator
        .shared()
        .org
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .truth();
    let value = serde_json::to_value(&truth)
        .map_err(|error| BenchError::Emulator(format!("serialising the truth: {error}")))?;
    Ok(match value {
        serde_json::Value::Object(mut map) => match map.remove("conversations") {
            Some(serde_json::Value::Array(conversations)) => conversations,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    })
}

/// Writes a report to stdout in one piece and flushes; a failed write (a closed pipe, a
/// full disk) is an error, never a panic as `print!` would make it.
pub fn write_report(text: &str) -> Result<(), BenchError> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|error| BenchError::Output(error.to_string()))
}

const PROC_STATUS: &str = "/proc/self/status";

/// This process's resident set size in bytes (`VmRSS` of `/proc/self/status`).
pub fn resident_bytes() -> Result<u64, BenchError> {
    let status = std::fs::read_to_string(PROC_STATUS).map_err(|error| BenchError::Memory {
        path: PROC_STATUS,
        detail: error.to_string(),
    })?;
    parse_vm_rss(&status).ok_or_else(|| BenchError::Memory {
        path: PROC_STATUS,
        detail: "no readable VmRSS line".to_owned(),
    })
}

const PROC_STAT: &str = "/proc/self/stat";
/// The unit of `utime` and `stime` in `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux).
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// CPU time this process has used so far, user plus system, in seconds (10 ms
/// resolution): a measure of work far less sensitive to a loaded machine than wall time.
pub fn process_cpu_seconds() -> Result<f64, BenchError> {
    let stat = std::fs::read_to_string(PROC_STAT).map_err(|error| BenchError::Cpu {
        path: PROC_STAT,
        detail: error.to_string(),
    })?;
    let ticks = parse_cpu_ticks(&stat).ok_or_else(|| BenchError::Cpu {
        path: PROC_STAT,
        detail: "no readable utime and stime".to_owned(),
    })?;
    Ok(ticks as f64 / CLOCK_TICKS_PER_SECOND)
}

/// `utime + stime` (fields 14 and 15) of a `/proc/<pid>/stat` line, in clock ticks. The
/// command name (field 2, in parentheses) may hold spaces and parentheses itself, so the
/// fields are counted from its last `)`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    user.checked_add(system)
}

/// The `VmRSS:   123456 kB` line of `/proc/<pid>/status`, in bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let mut fields = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = fields.next()?.parse().ok()?;
    let scale = match fields.next()? {
        "kB" => 1024,
        "mB" | "MB" => 1024 * 1024,
        "B" => 1,
        _ => return None,
    };
    value.checked_mul(scale)
}

/// The sum of every series of `name` in Prometheus text (`name 3` or `name{..} 3`);
/// 0 when absent.
pub fn metric_sum(rendered: &str, name: &str) -> f64 {
    metric_series(rendered, name)
        .into_iter()
        .map(|(_, value)| value)
        .sum()
}

/// Every series of `name` in Prometheus text: its label set (`{outcome="landed"}`, or
/// empty) and value.
pub fn metric_series(rendered: &str, name: &str) -> Vec<(String, f64)> {
    rendered
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (labels, value) = match rest.as_bytes().first()? {
                b'{' => {
                    // Label values may hold braces (`route="GET /x/{id}"`); the label set
                    // ends at the last one, the value is a number.
                    let close = rest.rfind('}')?;
                    (&rest[..=close], rest[close + 1..].trim())
                }
                b' ' => ("", rest.trim()),
                _ => return None,
            };
            Some((labels.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// Bytes in binary units, e.g. `3.9 KiB`, `812.4 MiB`.
pub fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value.abs() >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Seconds with millisecond precision, for reports.
pub fn seconds(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const STATUS: &str =
        "Name:\tconvoy\nVmPeak:\t  200000 kB\nVmRSS:\t   10240 kB\nRssAnon:\t    8000 kB\n";

    #[test]
    fn cpu_ticks_are_user_plus_system_counted_after_the_command_name() {
        let stat = "4242 (convoy (bench) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 \
                    1234 56 0 0 20 0 9 0 100 200000 3000 18446744073709551615\n";
        assert_eq!(parse_cpu_ticks(stat), Some(1234 + 56));
        assert_eq!(parse_cpu_ticks("4242 (convoy) S 1 2"), None, "cut short");
        assert_eq!(parse_cpu_ticks("no parenthesis at all"), None);
        assert!(process_cpu_seconds().unwrap() >= 0.0);
    }

    #[test]
    fn vm_rss_is_read_in_bytes_from_the_status_file() {
        assert_eq!(parse_vm_rss(STATUS), Some(10240 * 1024));
    }

    #[test]
    fn a_status_without_vm_rss_or_with_an_unknown_unit_reads_as_nothing() {
        assert_eq!(parse_vm_rss("Name:\tconvoy\nVmPeak:\t 1 kB\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\t 12 pages\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\t twelve kB\n"), None);
    }

    #[test]
    fn a_metric_sums_every_series_and_ignores_longer_names_and_comments() {
        let text = "# HELP convoy_writes_total writes\n\
                    # TYPE convoy_writes_total counter\n\
                    convoy_writes_total{outcome=\"landed\"} 7\n\
                    convoy_writes_total{outcome=\"conflict\"} 2\n\
                    convoy_writes_total_extra 100\n\
                    convoy_other 5\n\
                    convoy_requests_total{route=\"GET /c/{id}\",class=\"2xx\"} 4\n";
        assert_eq!(metric_sum(text, "convoy_writes_total"), 9.0);
        assert_eq!(metric_sum(text, "convoy_other"), 5.0);
        assert_eq!(metric_sum(text, "convoy_absent"), 0.0);
        assert_eq!(metric_sum(text, "convoy_requests_total"), 4.0);
        assert_eq!(
            metric_series(text, "convoy_writes_total"),
            vec![
                ("{outcome=\"landed\"}".to_owned(), 7.0),
                ("{outcome=\"conflict\"}".to_owned(), 2.0)
            ]
        );
    }

    #[test]
    fn bytes_print_in_binary_units() {
        assert_eq!(human_bytes(512.0), "512 B");
        assert_eq!(human_bytes(4096.0), "4.0 KiB");
        assert_eq!(human_bytes(1.5 * 1024.0 * 1024.0), "1.5 MiB");
        assert_eq!(human_bytes(-2048.0), "-2.0 KiB");
    }

    #[test]
    fn seconds_keep_milliseconds() {
        assert_eq!(seconds(Duration::from_micros(1_234_567)), 1.235);
    }
}
