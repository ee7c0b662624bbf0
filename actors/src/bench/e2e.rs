//! `convoy bench e2e`: the whole live path at a given offered load, in one process on
//! loopback — emulator → WebSocket → Convoy (stream, router, conversation actors, SLA
//! actor) → outbox (redb, group commit) → CRM batcher → CRM test server.
//!
//! The load: a corpus generated from the emulated org ([`convoy::bench::generate`], 2–20 KB
//! snapshots, interleaved, each change on several topics) replayed endlessly under fresh
//! conversation ids ([`Replay`]). A load thread of its own writes the frames straight into
//! the emulator's socket outbox ([`SocketFeed`]) at the offered rate, waiting when the
//! outbox is full: the emulator's REST side and org model are not involved, so they cannot
//! be the bottleneck, and a Convoy that falls behind shows as a sustained rate under the
//! offered one instead of a dropped socket. Convoy's write-back is off (the replayed
//! conversations do not exist in the emulator's org); its CRM output is on.
//!
//! Latency is taken from the socket task's receipt of a frame (the `observed_at` every
//! handover carries) to the durable commit of the records it caused, on the outbox
//! writer's thread ([`CommitLatency`]), in an HDR histogram. Frames that cause no record
//! (the same change on another topic, an older snapshot) commit nothing and are not in it.
//!
//! Each fsync mode gets a daemon of its own (a fresh outbox); each rate is one step of
//! `--duration` on it. A step *passes* when Convoy read every frame at ≥ 95 % of the
//! offered rate and the p99 stayed under `--target-p99`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use convoy::bench::{generate, RateSearch, Replay};
use convoy::duration::parse_duration;
use convoy::svg::{self, Axis, LineChart, Series, Size};
use hdrhistogram::Histogram;
use serde::Serialize;

use super::{metric_sum, seconds, BenchError, OutputFormat};
use crate::app::{BenchHooks, Daemon, RunOptions};
use crate::crm_sink::{CrmSink, CrmSinkOptions};
use crate::demo::{config_for, discard_private_store};
use crate::emulator::{Emulator, EmulatorOptions, SocketFeed};
use crate::outbox_writer::CommitLatency;
use crate::telemetry::names;

/// The latency target.
pub const TARGET_P99: Duration = Duration::from_millis(50);
/// Share of the offered rate Convoy must read for a step to count as kept up.
pub const KEPT_UP: f64 = 0.95;
/// The default offered rates before the search.
const DEFAULT_RATES: [u32; 2] = [1_000, 5_000];

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FsyncMode {
    /// fsync every group commit (Convoy's only production mode).
    On,
    /// No fsync (redb `Durability::None`): what the fsync costs.
    Off,
    /// Both, one after the other.
    Both,
}

impl FsyncMode {
    fn modes(self) -> Vec<bool> {
        match self {
            FsyncMode::On => vec![true],
            FsyncMode::Off => vec![false],
            FsyncMode::Both => vec![true, false],
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct E2eArgs {
    /// Offered rates in frames per second (`--rate 1000,5000`); default 1000 and 5000,
    /// then the search.
    #[arg(long, value_delimiter = ',', value_name = "R")]
    pub rate: Vec<u32>,
    /// After the given rates, search the highest whose p99 stays under --target-p99 (on by
    /// default when no --rate is given).
    #[arg(long)]
    pub search: bool,
    /// Length of each step (one rate).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// fsync per group commit: on, off or both.
    #[arg(long, value_enum, default_value_t = FsyncMode::Both)]
    pub fsync: FsyncMode,
    /// The p99 a passing rate must stay under.
    #[arg(long, value_parser = parse_duration, default_value = "50ms")]
    pub target_p99: Duration,
    /// Rates the search may measure at most (per fsync mode).
    #[arg(long, default_value_t = 8)]
    pub search_steps: usize,
    /// The search never offers more than this.
    #[arg(long, default_value_t = 100_000)]
    pub max_rate: u32,
    /// Frames in the generated corpus (replayed under fresh ids as often as needed).
    #[arg(long, default_value_t = 20_000)]
    pub corpus: usize,
    /// Seed of the corpus.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write an SVG chart of sustained rate and latency against offered load here.
    #[arg(long, value_name = "FILE.svg")]
    pub chart: Option<PathBuf>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencyMs {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl LatencyMs {
    pub fn of(histogram: &Histogram<u64>) -> LatencyMs {
        let ms = |micros: u64| (micros as f64 / 10.0).round() / 100.0;
        if histogram.is_empty() {
            return LatencyMs::default();
        }
        LatencyMs {
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            max: ms(histogram.max()),
        }
    }
}

/// One rate on one daemon.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub offered_frames_per_second: u32,
    /// Frames the load thread wrote.
    pub frames: u64,
    /// Frames Convoy's sockets read in the step.
    pub frames_read: u64,
    /// From the first frame written to the last one read.
    pub seconds: f64,
    pub sustained_frames_per_second: f64,
    /// Convoy read every frame at ≥ 95 % of the offered rate.
    pub kept_up: bool,
    /// Frames whose records were committed (those in the histogram).
    pub frames_committed: u64,
    /// Receipt → durable commit.
    pub latency_ms: LatencyMs,
    /// Kept up and p99 under the target.
    pub passed: bool,
    /// CPU time (user + system) the whole process used during the step — Convoy, and
    /// the in-process emulator, CRM test server and load thread beside it.
    pub cpu_seconds: f64,
    /// `cpu_seconds` per frame read, in microseconds: the work a frame costs, far less
    /// sensitive to a loaded machine than the latencies.
    pub cpu_us_per_frame: f64,
}

/// One fsync mode: its steps in the order run, and the search's answer.
#[derive(Debug, Clone, Serialize)]
pub struct ModeReport {
    pub fsync: bool,
    pub steps: Vec<StepReport>,
    /// The highest offered rate that passed.
    pub best_passing_frames_per_second: Option<u32>,
    /// The highest sustained rate of any step.
    pub peak_sustained_frames_per_second: f64,
    /// Records the CRM test server received by the end of this mode.
    pub crm_records_received: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct E2eReport {
    pub corpus_frames: usize,
    pub corpus_bytes: usize,
    pub step_seconds: f64,
    pub target_p99_ms: f64,
    pub modes: Vec<ModeReport>,
    pub command: String,
}

impl E2eReport {
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "convoy bench e2e: emulator → WebSocket → Convoy → outbox → CRM test server, on \
             loopback\ncorpus: {} frames, {:.1} MB, replayed under fresh conversation ids; \
             {} s per rate; target p99 < {} ms\ncommand: {}\n",
            self.corpus_frames,
            self.corpus_bytes as f64 / 1e6,
            self.step_seconds,
            self.target_p99_ms,
            self.command,
        );
        for mode in &self.modes {
            out.push_str(&format!(
                "\nfsync per commit: {}\n{:>9} {:>11} {:>8} {:>10} {:>8} {:>8} {:>8} {:>8} {:>11}  verdict\n",
                if mode.fsync { "on" } else { "off" },
                "offered/s",
                "sustained/s",
                "frames",
                "committed",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "max ms",
                "CPU µs/fr",
            ));
            for step in &mode.steps {
                let verdict = match (step.kept_up, step.passed) {
                    (_, true) => "pass",
                    (false, _) => "fell behind",
                    (true, false) => "p99 over target",
                };
                out.push_str(&format!(
                    "{:>9} {:>11.0} {:>8} {:>10} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>11.0}  {verdict}\n",
                    step.offered_frames_per_second,
                    step.sustained_frames_per_second,
                    step.frames_read,
                    step.frames_committed,
                    step.latency_ms.p50,
                    step.latency_ms.p90,
                    step.latency_ms.p99,
                    step.latency_ms.max,
                    step.cpu_us_per_frame,
                ));
            }
            out.push_str(&format!(
                "highest passing rate: {}; peak sustained: {:.0} frames/s; CRM records received: {}\n",
                mode.best_passing_frames_per_second
                    .map_or_else(|| "none".to_owned(), |rate| format!("{rate} frames/s")),
                mode.peak_sustained_frames_per_second,
                mode.crm_records_received,
            ));
        }
        out
    }
}

/// Sustained rate and latency (p50, p99) against offered load, per fsync mode: two
/// [`svg::line_chart`]s in one document. The target p99 is drawn as a flat series across
/// the offered rates.
pub fn chart(report: &E2eReport) -> String {
    let mode_name = |mode: &ModeReport| if mode.fsync { "fsync on" } else { "fsync off" };
    // The search measures rates out of order; a line is drawn in the order given.
    let by_offered = |mut points: Vec<(f64, f64)>| {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        points.dedup_by(|a, b| a.0 == b.0);
        points
    };
    let offered: Vec<f64> = by_offered(
        report
            .modes
            .iter()
            .flat_map(|mode| &mode.steps)
            .map(|step| {
                let x = f64::from(step.offered_frames_per_second);
                (x, x)
            })
            .collect(),
    )
    .into_iter()
    .map(|(x, _)| x)
    .collect();
    let mut throughput = vec![Series {
        name: "offered".to_owned(),
        points: offered.iter().map(|&x| (x, x)).collect(),
    }];
    throughput.extend(report.modes.iter().map(|mode| {
        Series {
            name: format!("sustained, {}", mode_name(mode)),
            points: by_offered(
                mode.steps
                    .iter()
                    .map(|s| {
                        (
                            f64::from(s.offered_frames_per_second),
                            s.sustained_frames_per_second,
                        )
                    })
                    .collect(),
            ),
        }
    }));
    let mut latency = Vec::new();
    for mode in &report.modes {
        let pick_p99: fn(&LatencyMs) -> f64 = |l| l.p99;
        let pick_p50: fn(&LatencyMs) -> f64 = |l| l.p50;
        for (name, pick) in [("p99", pick_p99), ("p50", pick_p50)] {
            latency.push(Series {
                name: format!("{name}, {}", mode_name(mode)),
                points: by_offered(
                    mode.steps
                        .iter()
                        .map(|s| (f64::from(s.offered_frames_per_second), pick(&s.latency_ms)))
                        .collect(),
                ),
            });
        }
    }
    if let (Some(&low), Some(&high)) = (offered.first(), offered.last()) {
        latency.push(Series {
            name: format!("target p99 {} ms", report.target_p99_ms),
            points: vec![(low, report.target_p99_ms), (high, report.target_p99_ms)],
        });
    }
    let size = Size {
        width: 820.0,
        height: 340.0,
    };
    svg::stacked_line_charts(&[
        LineChart {
            title: "convoy bench e2e: sustained against offered load".to_owned(),
            x: Axis::linear("offered frames/s"),
            y: Axis::linear("frames/s read"),
            series: throughput,
            size,
        },
        LineChart {
            title: "Frame receipt → durable outbox commit".to_owned(),
            x: Axis::linear("offered frames/s"),
            y: Axis::log10("latency, ms (log)"),
            series: latency,
            size,
        },
    ])
}

/// The command line that reproduces this run.
fn command_line(args: &E2eArgs, rates: &[u32], search: bool) -> String {
    let mut line = format!(
        "convoy bench e2e --rate {} --duration {}s --fsync {} --corpus {} --seed {}",
        rates
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(","),
        args.duration.as_secs_f64(),
        match args.fsync {
            FsyncMode::On => "on",
            FsyncMode::Off => "off",
            FsyncMode::Both => "both",
        },
        args.corpus,
        args.seed,
    );
    if search {
        line.push_str(&format!(
            " --search --search-steps {} --max-rate {} --target-p99 {}ms",
            args.search_steps,
            args.max_rate,
            args.target_p99.as_millis()
        ));
    }
    line
}

pub async fn run(args: E2eArgs) -> Result<bool, BenchError> {
    if args.rate.contains(&0) {
        return Err(BenchError::Usage("--rate must be above 0".to_owned()));
    }
    if args.duration.is_zero() || args.corpus == 0 {
        return Err(BenchError::Usage(
            "--duration and --corpus must be above 0".to_owned(),
        ));
    }
    let (rates, search) = if args.rate.is_empty() {
        (DEFAULT_RATES.to_vec(), true)
    } else {
        (args.rate.clone(), args.search)
    };
    let corpus =
        generate(args.corpus, args.seed).map_err(|error| BenchError::Corpus(error.to_string()))?;
    let replay = Arc::new(Replay::new(&corpus));
    drop(corpus);
    let emulator = Emulator::start(EmulatorOptions {
        rate_limit_per_minute: 0,
        seed: args.seed,
        ..EmulatorOptions::default()
    })
    .await
    .map_err(|error| BenchError::Emulator(error.to_string()))?;
    let sink = match CrmSink::start(CrmSinkOptions::default()).await {
        Ok(sink) => sink,
        Err(error) => {
            emulator.stop().await;
            return Err(BenchError::Daemon(format!("CRM test server: {error}")));
        }
    };
    let mut modes = Vec::new();
    let mut outcome = Ok(());
    let mut cursor = 0usize;
    for fsync in args.fsync.modes() {
        match run_mode(
            &emulator,
            &sink,
            &args,
            &rates,
            search,
            fsync,
            &replay,
            &mut cursor,
        )
        .await
        {
            Ok(mode) => modes.push(mode),
            Err(error) => {
                outcome = Err(error);
                break;
            }
        }
    }
    sink.stop().await;
    emulator.stop().await;
    outcome?;
    let report = E2eReport {
        corpus_frames: replay.len(),
        corpus_bytes: replay.bytes(),
        step_seconds: seconds(args.duration),
        target_p99_ms: args.target_p99.as_secs_f64() * 1000.0,
        modes,
        command: command_line(&args, &rates, search),
    };
    if let Some(path) = &args.chart {
        let svg = chart(&report);
        std::fs::write(path, svg)
            .map_err(|error| BenchError::Output(format!("{}: {error}", path.display())))?;
    }
    super::print_report(&report, args.format, |report| report.to_text())?;
    // Measured: exit 0 whether or not the target was met (the report says).
    Ok(true)
}

#[allow(clippy::too_many_arguments)]
async fn run_mode(
    emulator: &Emulator,
    sink: &CrmSink,
    args: &E2eArgs,
    rates: &[u32],
    search: bool,
    fsync: bool,
    replay: &Arc<Replay>,
    cursor: &mut usize,
) -> Result<ModeReport, BenchError> {
    let config = config_for(
        emulator,
        "write_back = \"off\"\n",
        &format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n[crm]\nendpoint = \"{}\"\n",
            sink.base_url()
        ),
    )
    .map_err(|error| BenchError::Daemon(error.to_string()))?;
    let latency =
        Arc::new(CommitLatency::new().map_err(|error| BenchError::Daemon(error.to_string()))?);
    let daemon = Daemon::start(
        &config,
        RunOptions {
            bench: BenchHooks {
                no_fsync: !fsync,
                commit_latency: Some(Arc::clone(&latency)),
            },
            ..RunOptions::default()
        },
    )
    .await
    .map_err(|error| BenchError::Daemon(error.to_string()))?;
    let result = steps(
        emulator, &daemon, args, rates, search, replay, cursor, &latency,
    )
    .await;
    daemon.shutdown().await;
    // Each mode's daemon had an outbox of its own; nothing in it is wanted after the run.
    discard_private_store(&config);
    let steps = result?;
    let mut search_state = RateSearch::new(rates[0], args.max_rate, 0);
    for step in &steps {
        search_state.record(step.offered_frames_per_second, step.passed);
    }
    Ok(ModeReport {
        fsync,
        best_passing_frames_per_second: search_state.best(),
        peak_sustained_frames_per_second: steps
            .iter()
            .map(|step| step.sustained_frames_per_second)
            .fold(0.0, f64::max),
        steps,
        crm_records_received: sink.stats().records_received,
    })
}

#[allow(clippy::too_many_arguments)]
async fn steps(
    emulator: &Emulator,
    daemon: &Daemon,
    args: &E2eArgs,
    rates: &[u32],
    search: bool,
    replay: &Arc<Replay>,
    cursor: &mut usize,
    latency: &CommitLatency,
) -> Result<Vec<StepReport>, BenchError> {
    let feeds = wait_for_socket(emulator, daemon).await?;
    // A short warm-up: connections, allocator, the first conversations.
    let _ = step(
        daemon,
        args,
        500,
        Duration::from_secs(1),
        &feeds,
        replay,
        cursor,
        latency,
    )
    .await?;
    let mut steps = Vec::new();
    let mut searcher = RateSearch::new(
        rates.last().copied().unwrap_or(1_000),
        args.max_rate,
        if search { args.search_steps } else { 0 },
    );
    // The rates asked for first, then the search's next rate after each result.
    let mut asked = rates.iter().copied();
    while let Some(rate) = asked.next().or_else(|| searcher.next_rate()) {
        let report = step(
            daemon,
            args,
            rate,
            args.duration,
            &feeds,
            replay,
            cursor,
            latency,
        )
        .await?;
        searcher.record(rate, report.passed);
        steps.push(report);
    }
    Ok(steps)
}

/// Waits until Convoy is ready and its channel's socket is connected to the emulator.
async fn wait_for_socket(
    emulator: &Emulator,
    daemon: &Daemon,
) -> Result<Vec<SocketFeed>, BenchError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let feeds = emulator.shared().socket_feeds();
        if daemon.board.readiness_now().ready && !feeds.is_empty() {
            return Ok(feeds);
        }
        if Instant::now() > deadline {
            return Err(BenchError::Daemon(
                "Convoy did not report ready with a connected socket within 60 s".to_owned(),
            ));
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Frames Convoy's sockets have read so far (every kind).
fn frames_read(daemon: &Daemon) -> u64 {
    metric_sum(&daemon.telemetry.render(), names::STREAM_FRAMES) as u64
}

/// One rate for `duration`: load thread, wait until Convoy read everything and its
/// commits settled, then the histogram.
#[allow(clippy::too_many_arguments)]
async fn step(
    daemon: &Daemon,
    args: &E2eArgs,
    rate: u32,
    duration: Duration,
    feeds: &[SocketFeed],
    replay: &Arc<Replay>,
    cursor: &mut usize,
    latency: &CommitLatency,
) -> Result<StepReport, BenchError> {
    let frames = ((f64::from(rate) * duration.as_secs_f64()).round() as usize).max(1);
    let before = frames_read(daemon);
    drop(latency.take());
    let first = *cursor;
    *cursor += frames;
    let cpu_before = super::process_cpu_seconds()?;
    let started = Instant::now();
    let load = {
        let feeds = feeds.to_vec();
        let replay = Arc::clone(replay);
        std::thread::Builder::new()
            .name("convoy-bench-load".to_owned())
            .spawn(move || offer(&replay, &feeds, first, frames, rate))
            .map_err(|error| BenchError::Daemon(format!("starting the load thread: {error}")))?
    };
    // Convoy read the step's frames (heartbeats may add one or two) — or gave up.
    let give_up = started + duration * 3 + Duration::from_secs(60);
    let mut read = 0;
    let mut last_read_at = started;
    while read < frames as u64 {
        // Rendering the metrics runs on the daemon's own thread: not too often.
        actix_rt::time::sleep(Duration::from_millis(100)).await;
        let now_read = frames_read(daemon).saturating_sub(before);
        if now_read > read {
            read = now_read;
            last_read_at = Instant::now();
        }
        if Instant::now() > give_up {
            break;
        }
    }
    let elapsed = last_read_at.duration_since(started);
    let written = load
        .join()
        .map_err(|_| BenchError::Daemon("the load thread panicked".to_owned()))?;
    if written < frames {
        return Err(BenchError::Stalled(format!(
            "the emulator's socket ended after {written} of {frames} frames at {rate} frames/s"
        )));
    }
    // The commits of the last frames: settled once the histogram stops growing.
    let settle_by = Instant::now() + Duration::from_secs(30);
    let mut count = latency.len();
    loop {
        actix_rt::time::sleep(Duration::from_millis(300)).await;
        let now = latency.len();
        if now == count || Instant::now() > settle_by {
            break;
        }
        count = now;
    }
    let histogram = latency.take();
    let cpu_seconds = super::process_cpu_seconds()? - cpu_before;
    let sustained = read as f64 / elapsed.as_secs_f64().max(1e-3);
    let kept_up = read >= frames as u64 && sustained >= f64::from(rate) * KEPT_UP;
    let latency_ms = LatencyMs::of(&histogram);
    let passed =
        kept_up && !histogram.is_empty() && latency_ms.p99 < args.target_p99.as_secs_f64() * 1000.0;
    Ok(StepReport {
        offered_frames_per_second: rate,
        frames: frames as u64,
        frames_read: read,
        seconds: seconds(elapsed),
        sustained_frames_per_second: sustained.round(),
        kept_up,
        frames_committed: histogram.len(),
        latency_ms,
        passed,
        cpu_seconds: (cpu_seconds * 100.0).round() / 100.0,
        cpu_us_per_frame: (cpu_seconds * 1e6 / read.max(1) as f64).round(),
    })
}

/// The load thread: frames `first..first + count` of the replay, at `rate` per second,
/// to every socket (Convoy has one). Returns how many were written.
fn offer(replay: &Replay, feeds: &[SocketFeed], first: usize, count: usize, rate: u32) -> usize {
    let started = Instant::now();
    let mut sent = 0;
    while sent < count {
        let due = ((started.elapsed().as_secs_f64() * f64::from(rate)) as usize + 1).min(count);
        while sent < due {
            let Some(frame) = replay.frame(first + sent) else {
                return sent;
            };
            for feed in feeds {
                if !feed.send_blocking(frame.clone()) {
                    return sent;
                }
            }
            sent += 1;
        }
        if sent < count {
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    sent
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn percentiles_are_read_in_milliseconds_from_microseconds() {
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for micros in 1..=1000u64 {
            histogram.record(micros * 100).unwrap();
        }
        let latency = LatencyMs::of(&histogram);
        assert!((latency.p50 - 50.0).abs() < 0.1, "{latency:?}");
        assert!((latency.p90 - 90.0).abs() < 0.1, "{latency:?}");
        assert!((latency.p99 - 99.0).abs() < 0.1, "{latency:?}");
        assert!((latency.max - 100.0).abs() < 0.1, "{latency:?}");
        assert_eq!(
            LatencyMs::of(&Histogram::new(3).unwrap()),
            LatencyMs::default()
        );
    }

    fn step_at(offered: u32, sustained: f64, p50: f64, p99: f64) -> StepReport {
        StepReport {
            offered_frames_per_second: offered,
            frames: u64::from(offered),
            frames_read: u64::from(offered),
            seconds: 1.0,
            sustained_frames_per_second: sustained,
            kept_up: true,
            frames_committed: 10,
            latency_ms: LatencyMs {
                p50,
                p90: p99,
                p99,
                max: p99,
            },
            passed: p99 < 50.0,
            cpu_seconds: 1.0,
            cpu_us_per_frame: 100.0,
        }
    }

    #[test]
    fn the_chart_stacks_throughput_over_latency_with_every_mode_and_the_target() {
        let mode = |fsync: bool| ModeReport {
            fsync,
            // The search's order, not the offered order.
            steps: vec![
                step_at(5_000, 4_900.0, 3.0, 80.0),
                step_at(1_000, 1_000.0, 1.0, 9.0),
                step_at(2_000, 1_990.0, 2.0, 30.0),
            ],
            best_passing_frames_per_second: Some(2_000),
            peak_sustained_frames_per_second: 4_900.0,
            crm_records_received: 30,
        };
        let report = E2eReport {
            corpus_frames: 10,
            corpus_bytes: 100,
            step_seconds: 1.0,
            target_p99_ms: 50.0,
            modes: vec![mode(true), mode(false)],
            command: "convoy bench e2e".to_owned(),
        };
        let svg = chart(&report);
        assert_eq!(svg, chart(&report), "deterministic");
        assert_eq!(svg.matches("<svg").count(), 3, "two panels in one document");
        for name in [
            "offered",
            "sustained, fsync on",
            "sustained, fsync off",
            "p99, fsync on",
            "p50, fsync off",
            "target p99 50 ms",
        ] {
            assert!(svg.contains(&format!("<title>{name}</title>")), "{name}");
        }
        // offered, 2 sustained, 4 latency lines and the target: all drawn as lines.
        assert_eq!(svg.matches("<polyline").count(), 8);
        // Each line runs left to right although the steps were measured out of order.
        for line in svg.split("points=\"").skip(1) {
            let xs: Vec<f64> = line[..line.find('"').unwrap()]
                .split(' ')
                .map(|point| point.split(',').next().unwrap().parse().unwrap())
                .collect();
            assert!(xs.windows(2).all(|w| w[0] < w[1]), "{xs:?}");
        }
    }

    #[test]
    fn the_command_line_names_what_reproduces_the_run() {
        let args = E2eArgs {
            rate: Vec::new(),
            search: false,
            duration: Duration::from_secs(10),
            fsync: FsyncMode::Both,
            target_p99: TARGET_P99,
            search_steps: 8,
            max_rate: 100_000,
            corpus: 20_000,
            seed: 1,
            chart: None,
            format: OutputFormat::Text,
        };
        assert_eq!(
            command_line(&args, &[1_000, 5_000], true),
            "convoy bench e2e --rate 1000,5000 --duration 10s --fsync both --corpus 20000 \
             --seed 1 --search --search-steps 8 --max-rate 100000 --target-p99 50ms"
        );
    }
}
