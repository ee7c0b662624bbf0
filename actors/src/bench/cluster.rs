//! `convoy bench cluster`: throughput of the cluster roles (issue 12) with 1, 2 and 3
//! workers on this machine. For each worker count W it starts a fresh `nats-server -js`
//! (found on PATH; loopback, a free port, a temporary store, killed at the end), a fresh
//! in-process emulator, one ingest and W worker daemons in this process (what
//! `convoy run` starts with `cluster.role = ingest | worker`), waits until the workers
//! hold every partition, then drives N conversations through the simulator unpaced. It
//! reports per W:
//!
//! - frames the workers consumed (`convoy_cluster_consumed_total`, summed) and their rate
//!   over the time from the load's start until the views equalled the truth;
//! - when every conversation first equalled the emulator's truth in some worker's views;
//! - CPU time of this process (emulator, simulator, ingest, workers) and of
//!   `nats-server`, user plus system.
//!
//! Every role shares this process's cores: on a 2-core machine more workers cannot add
//! CPU, so the figures show the cost of coordination, not scaling.
//!
//! It exits 1 when a run did not converge within `--max-wait`.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use convoy::duration::parse_duration;
use convoy::simulator::Scenario;
use serde::Serialize;
use serde_json::Value;

use super::{metric_sum, process_cpu_seconds, seconds, BenchError, OutputFormat};
use crate::app::{Daemon, RunOptions};
use crate::cluster::worker::GetConsuming;
use crate::demo::{config_for, differences, discard_private_store};
use crate::emulator::{Emulator, EmulatorOptions};
use crate::simulator::{Simulator, SimulatorOptions};
use crate::telemetry::names;
use convoy::config::Config;

/// The short-lived scenario the cluster tests use: conversations last seconds, not
/// minutes, so a run stays well under a minute.
const FAST_SCENARIO: &str = include_str!("../../../config/examples/scenario-fast.toml");
/// How long `nats-server` may take to accept connections on a loaded machine.
const NATS_START_DEADLINE: Duration = Duration::from_secs(60);
/// How long a daemon may take to report ready, and the workers to hold every partition.
const READY_DEADLINE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// Worker counts to measure, one run each (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub workers: Vec<usize>,
    /// Conversations the simulator drives in each run.
    #[arg(long, default_value_t = 200)]
    pub conversations: usize,
    /// Conversations in flight at once in the simulator.
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// `cluster.partitions` of each run.
    #[arg(long, default_value_t = 16)]
    pub partitions: u16,
    /// Seed of the emulator and the simulator (the same load for every W).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Give up on a run (exit 1) if the views have not converged this long after its
    /// load started.
    #[arg(long, value_parser = parse_duration, default_value = "3m")]
    pub max_wait: Duration,
    /// Report format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// One run: one ingest, `workers` workers.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerRun {
    pub workers: usize,
    /// Partitions each worker consumed when the load started.
    pub partitions_per_worker: Vec<f64>,
    /// Growth of `convoy_cluster_published_total` during the load (the ingest's).
    pub frames_published: f64,
    /// Growth of `convoy_cluster_consumed_total` during the load (every worker's).
    pub frames_consumed: f64,
    /// `frames_consumed` over `converged_seconds` (or the time waited, if it never did).
    pub frames_consumed_per_second: f64,
    /// Every conversation first equalled the truth in some worker's views, seconds from
    /// the load's start.
    pub converged_seconds: Option<f64>,
    pub remaining_differences: usize,
    pub simulator_failed: usize,
    /// CPU time of this process (emulator, simulator, ingest and workers) during the load.
    pub process_cpu_seconds: f64,
    /// CPU time of `nats-server` during the load.
    pub nats_cpu_seconds: f64,
    /// A few of what still differed, if anything.
    pub sample_problems: Vec<String>,
}

/// What `convoy bench cluster` measured.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterReport {
    pub conversations: usize,
    pub concurrency: usize,
    pub partitions: u16,
    pub runs: Vec<WorkerRun>,
}

impl ClusterReport {
    pub fn converged(&self) -> bool {
        self.runs.iter().all(|run| run.converged_seconds.is_some())
    }

    pub fn to_text(&self) -> String {
        let mut out = format!(
            "convoy bench cluster: {} conversations (simulator unpaced, concurrency {}), {} \
             partitions, one ingest, in one process with nats-server beside it\n\
             workers  partitions each   published  consumed  consumed/s  converged   CPU convoy  CPU nats\n",
            self.conversations, self.concurrency, self.partitions
        );
        for run in &self.runs {
            let owned: Vec<String> = run
                .partitions_per_worker
                .iter()
                .map(|p| format!("{p:.0}"))
                .collect();
            let converged = match run.converged_seconds {
                Some(secs) => format!("{secs:.1} s"),
                None => "never".to_owned(),
            };
            out.push_str(&format!(
                "{:>7}  {:<16} {:>10.0} {:>9.0} {:>11.0}  {:<10} {:>9.2} s {:>7.2} s\n",
                run.workers,
                owned.join("/"),
                run.frames_published,
                run.frames_consumed,
                run.frames_consumed_per_second,
                converged,
                run.process_cpu_seconds,
                run.nats_cpu_seconds,
            ));
        }
        for run in self
            .runs
            .iter()
            .filter(|run| run.converged_seconds.is_none())
        {
            out.push_str(&format!(
                "NOT CONVERGED with {} workers: {} differences ({} simulator failures); first:\n",
                run.workers, run.remaining_differences, run.simulator_failed
            ));
            for problem in &run.sample_problems {
                out.push_str(&format!("  {problem}\n"));
            }
        }
        if self.converged() {
            out.push_str("OK: every run converged\n");
        }
        out
    }
}

/// Runs the bench and prints its report; `Ok(false)` when a run did not converge. Must
/// run inside an actix System.
pub async fn run(args: ClusterArgs) -> Result<bool, BenchError> {
    if args.conversations == 0
        || args.concurrency == 0
        || args.partitions == 0
        || args.workers.is_empty()
        || args.workers.contains(&0)
    {
        return Err(BenchError::Usage(
            "--conversations, --concurrency, --partitions and every --workers count must be \
             at least 1"
                .to_owned(),
        ));
    }
    let mut runs = Vec::new();
    for &workers in &args.workers {
        runs.push(run_one(&args, workers).await?);
    }
    let report = ClusterReport {
        conversations: args.conversations,
        concurrency: args.concurrency,
        partitions: args.partitions,
        runs,
    };
    super::print_report(&report, args.format, |report| report.to_text())?;
    Ok(report.converged())
}

async fn run_one(args: &ClusterArgs, workers: usize) -> Result<WorkerRun, BenchError> {
    let nats = NatsServer::start()?;
    let emulator = Emulator::start(EmulatorOptions {
        rate_limit_per_minute: 0,
        seed: args.seed,
        ..EmulatorOptions::default()
    })
    .await
    .map_err(|error| BenchError::Emulator(error.to_string()))?;
    let (mut daemons, mut configs) = (Vec::new(), Vec::new());
    let result = run_roles(args, workers, &nats, &emulator, &mut daemons, &mut configs).await;
    for daemon in daemons {
        daemon.shutdown().await;
    }
    for config in &configs {
        discard_private_store(config);
    }
    emulator.stop().await;
    drop(nats);
    result
}

async fn start_role(
    args: &ClusterArgs,
    role: &str,
    nats: &NatsServer,
    emulator: &Emulator,
    configs: &mut Vec<Config>,
) -> Result<Daemon, BenchError> {
    let extra = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\
         [cluster]\nenabled = true\nnats_url = \"{url}\"\nrole = \"{role}\"\npartitions = {partitions}\n",
        url = nats.url,
        partitions = args.partitions,
    );
    // A budget far above the load: the cluster's throughput is measured, not Genesys'.
    let config = config_for(emulator, "requests_per_minute = 100000", &extra)
        .map_err(|error| BenchError::Daemon(error.to_string()))?;
    // Its private store goes when the run ends, whatever happens to the daemon.
    configs.push(config.clone());
    let daemon = Daemon::start(&config, RunOptions::default())
        .await
        .map_err(|error| BenchError::Daemon(format!("{role}: {error}")))?;
    let ready_by = Instant::now() + READY_DEADLINE;
    while !daemon.board.readiness_now().ready {
        if Instant::now() > ready_by {
            let readiness = format!("{:?}", daemon.board.readiness_now());
            daemon.shutdown().await;
            return Err(BenchError::Daemon(format!(
                "{role} did not report ready within {} s: {readiness}",
                READY_DEADLINE.as_secs()
            )));
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(daemon)
}

/// Starts the roles into `daemons` (the ingest first, so the caller stops them all even
/// on an error), drives the load and measures.
async fn run_roles(
    args: &ClusterArgs,
    workers: usize,
    nats: &NatsServer,
    emulator: &Emulator,
    daemons: &mut Vec<Daemon>,
    configs: &mut Vec<Config>,
) -> Result<WorkerRun, BenchError> {
    for _ in 0..workers {
        daemons.push(start_role(args, "worker", nats, emulator, configs).await?);
    }
    let partitions_per_worker = wait_for_partitions(args, &daemons[..]).await?;
    daemons.push(start_role(args, "ingest", nats, emulator, configs).await?);
    let (worker_daemons, ingest) = daemons.split_at(workers);

    let scenario = Scenario::from_toml(FAST_SCENARIO)
        .map_err(|error| BenchError::Simulator(format!("the fast scenario: {error}")))?;
    let mut simulation = SimulatorOptions::new(
        &emulator.base_url(),
        emulator.client_id(),
        emulator.client_secret(),
    );
    simulation.scenario = scenario;
    simulation.conversations = args.conversations;
    simulation.concurrency = args.concurrency;
    simulation.rate_per_second = None;
    simulation.seed = args.seed;

    // The metrics recorder is process-wide: every daemon here renders the same counters,
    // summed over every role and every earlier run, so a run counts their growth.
    let counters = |daemon: &Daemon| {
        let rendered = daemon.telemetry.render();
        (
            metric_sum(&rendered, names::CLUSTER_PUBLISHED),
            metric_sum(&rendered, names::CLUSTER_CONSUMED),
        )
    };
    let (published_before, consumed_before) = counters(&ingest[0]);
    let cpu_before = process_cpu_seconds()?;
    let nats_cpu_before = nats.cpu_seconds()?;
    let start = Instant::now();
    let simulator = actix_rt::spawn(async move { Simulator::new(simulation).run().await });
    let mut simulator = Some(simulator);
    let mut simulator_failed = 0;
    let mut simulator_error = None;
    let mut converged = None;
    let deadline = start + args.max_wait;
    let differing = loop {
        if let Some(handle) = simulator.as_ref() {
            if handle.is_finished() {
                if let Some(handle) = simulator.take() {
                    match handle.await {
                        Ok(Ok(report)) => simulator_failed = report.conversations_failed,
                        Ok(Err(error)) => simulator_error = Some(error.to_string()),
                        Err(error) => simulator_error = Some(error.to_string()),
                    }
                }
            }
        }
        let truth = super::emulator_truth(emulator)?;
        let emulator_done = simulator.is_none()
            && truth.len() >= args.conversations
            && truth.iter().all(|c| c["ended"] == true);
        let differing = differences_in_any(worker_daemons, &truth);
        if emulator_done && differing.is_empty() {
            converged = Some(start.elapsed());
            break differing;
        }
        if simulator_error.is_some() || Instant::now() >= deadline {
            break differing;
        }
        actix_rt::time::sleep(Duration::from_millis(200)).await;
    };
    let elapsed = converged.unwrap_or_else(|| start.elapsed());
    let process_cpu = process_cpu_seconds()? - cpu_before;
    let nats_cpu = nats.cpu_seconds()? - nats_cpu_before;
    let (published_after, consumed_after) = counters(&ingest[0]);
    let frames_published = published_after - published_before;
    let frames_consumed = consumed_after - consumed_before;
    let mut sample_problems: Vec<String> = simulator_error
        .iter()
        .map(|error| format!("simulator: {error}"))
        .collect();
    sample_problems.extend(differing.iter().take(10).cloned());
    Ok(WorkerRun {
        workers,
        partitions_per_worker,
        frames_published,
        frames_consumed,
        frames_consumed_per_second: rate(frames_consumed, elapsed),
        converged_seconds: converged.map(seconds),
        remaining_differences: differing.len(),
        simulator_failed,
        process_cpu_seconds: round_centis(process_cpu),
        nats_cpu_seconds: round_centis(nats_cpu),
        sample_problems,
    })
}

/// Waits until the workers together consume every partition (so the load does not race
/// the first lease round), then up to the same deadline for each worker to consume
/// some; returns how many each consumes.
async fn wait_for_partitions(
    args: &ClusterArgs,
    workers: &[Daemon],
) -> Result<Vec<f64>, BenchError> {
    let all = usize::from(args.partitions);
    let by = Instant::now() + READY_DEADLINE;
    loop {
        let mut consuming = Vec::new();
        for daemon in workers {
            let Some(consumers) = daemon.consumers.as_ref() else {
                return Err(BenchError::Daemon(
                    "a worker started without partition consumers".to_owned(),
                ));
            };
            let partitions = consumers.send(GetConsuming).await.map_err(|error| {
                BenchError::Daemon(format!("asking a worker's consumers: {error}"))
            })?;
            consuming.push(partitions.len());
        }
        let total: usize = consuming.iter().sum();
        let spread = consuming.iter().all(|&held| held > 0) || all < workers.len();
        let counts = || consuming.iter().map(|&held| held as f64).collect();
        if total >= all && spread {
            return Ok(counts());
        }
        if Instant::now() > by {
            if total >= all {
                // Held, if unevenly: measure what the lease rules settled on.
                return Ok(counts());
            }
            return Err(BenchError::Daemon(format!(
                "the workers consumed {total} of {all} partitions after {} s",
                READY_DEADLINE.as_secs()
            )));
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Truth conversations no worker's views agree with: a conversation whose partition
/// moved between workers is stale at the one that lost it and current at the other.
fn differences_in_any(workers: &[Daemon], truth: &[Value]) -> Vec<String> {
    let mut problems = Vec::new();
    for conversation in truth {
        let per_worker: Vec<Vec<String>> = workers
            .iter()
            .map(|daemon| differences(&daemon.views, std::slice::from_ref(conversation)))
            .collect();
        if per_worker.iter().all(|found| !found.is_empty()) {
            // Report what the worker that knows the conversation best sees.
            if let Some(fewest) = per_worker.into_iter().min_by_key(Vec::len) {
                problems.extend(fewest);
            }
        }
    }
    problems
}

/// `count / elapsed`, 0 for no time at all.
pub fn rate(count: f64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        (count / secs).round()
    } else {
        0.0
    }
}

fn round_centis(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// A `nats-server -js` child: loopback, a free port, a temporary store; killed (and its
/// store removed) on drop.
struct NatsServer {
    child: Child,
    /// The store (`-sd`) and the log; removed when dropped.
    dir: std::path::PathBuf,
    url: String,
}

impl NatsServer {
    fn start() -> Result<NatsServer, BenchError> {
        let nats_error = |detail: String| BenchError::Daemon(format!("nats-server: {detail}"));
        let port_probe = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|error| nats_error(format!("finding a free port: {error}")))?;
        let port = port_probe.port();
        // Unique per process and port: several runs of one bench never share a store.
        let dir =
            std::env::temp_dir().join(format!("convoy-bench-nats-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|error| {
            nats_error(format!(
                "creating the store directory {}: {error}",
                dir.display()
            ))
        })?;
        let child = Command::new("nats-server")
            .arg("-js")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .arg("-sd")
            .arg(dir.join("store"))
            .arg("-l")
            .arg(dir.join("nats.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| {
                // Nothing was started in it: the empty store directory goes too.
                let _ = std::fs::remove_dir_all(&dir);
                nats_error(format!(
                    "cannot start `nats-server` ({error}): the cluster bench needs it on PATH \
                     (Debian: apt-get install nats-server)"
                ))
            })?;
        let mut server = NatsServer {
            child,
            dir,
            url: format!("nats://127.0.0.1:{port}"),
        };
        let by = Instant::now() + NATS_START_DEADLINE;
        loop {
            match server.child.try_wait() {
                Ok(Some(status)) => {
                    return Err(nats_error(format!(
                        "exited at start ({status}); port {port} may have been taken"
                    )))
                }
                Ok(None) => {}
                Err(error) => return Err(nats_error(format!("its status: {error}"))),
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(server);
            }
            if Instant::now() > by {
                return Err(nats_error(format!(
                    "not accepting connections on port {port} after {} s",
                    NATS_START_DEADLINE.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's CPU time so far, user plus system, in seconds.
    fn cpu_seconds(&self) -> Result<f64, BenchError> {
        let path = format!("/proc/{}/stat", self.child.id());
        let stat = std::fs::read_to_string(&path).map_err(|error| BenchError::Cpu {
            path: "/proc/<nats-server>/stat",
            detail: error.to_string(),
        })?;
        let ticks = super::parse_cpu_ticks(&stat).ok_or_else(|| BenchError::Cpu {
            path: "/proc/<nats-server>/stat",
            detail: "no readable utime and stime".to_owned(),
        })?;
        Ok(ticks as f64 / super::CLOCK_TICKS_PER_SECOND)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        // Already gone is fine: the bench only needs it not to outlive the run.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn run(workers: usize, converged: Option<f64>) -> WorkerRun {
        WorkerRun {
            workers,
            partitions_per_worker: vec![8.0, 8.0],
            frames_published: 1000.0,
            frames_consumed: 1000.0,
            frames_consumed_per_second: 100.0,
            converged_seconds: converged,
            remaining_differences: usize::from(converged.is_none()),
            simulator_failed: 0,
            process_cpu_seconds: 3.5,
            nats_cpu_seconds: 0.5,
            sample_problems: vec!["c1: not tracked".to_owned()],
        }
    }

    #[test]
    fn a_report_converged_only_when_every_run_did() {
        let report = |runs| ClusterReport {
            conversations: 10,
            concurrency: 5,
            partitions: 16,
            runs,
        };
        let good = report(vec![run(1, Some(10.0)), run(2, Some(11.0))]);
        assert!(good.converged());
        let text = good.to_text();
        assert!(text.contains("8/8"), "{text}");
        assert!(text.contains("OK: every run converged"), "{text}");
        let bad = report(vec![run(1, Some(10.0)), run(2, None)]);
        assert!(!bad.converged());
        let text = bad.to_text();
        assert!(text.contains("NOT CONVERGED with 2 workers"), "{text}");
        assert!(text.contains("c1: not tracked"), "{text}");
    }

    #[test]
    fn a_rate_is_a_count_per_second_and_zero_without_time() {
        assert_eq!(rate(500.0, Duration::from_secs(2)), 250.0);
        assert_eq!(rate(500.0, Duration::ZERO), 0.0);
    }
}
