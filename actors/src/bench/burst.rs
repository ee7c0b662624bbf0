//! `convoy bench burst`: the scenario as a benchmark. An in-process emulator with
//! no emulator-side rate limit, the full daemon at Genesys' real per-token budget (300
//! requests a minute unless told otherwise), and the simulator driving N conversations
//! unpaced at concurrency 50. It reports, from the start of the burst:
//!
//! - when the emulator's last conversation ended (its ground truth's latest `endTime`);
//! - when Convoy's views first equalled the truth ([`differences`] empty);
//! - when every participant carried its `convoy.participant_state` attribute
//!   ([`unwritten_attributes`] empty) — the write-back drains at the bucket's pace;
//! - PATCHes against lifecycle transitions (coalescing), socket reconnects, requests.
//!
//! It exits 1 when the views or the attributes did not converge within `--max-wait`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use convoy::duration::parse_duration;
use convoy::simulator::Scenario;
use serde::Serialize;
use serde_json::Value;

use super::{metric_series, metric_sum, seconds, BenchError, OutputFormat};
use crate::app::{Daemon, RunOptions};
use crate::demo::{config_for, differences, discard_private_store, unwritten_attributes};
use crate::emulator::{Emulator, EmulatorOptions};
use crate::simulator::{SimulationReport, Simulator, SimulatorOptions};
use crate::telemetry::names;

#[derive(Debug, Clone, clap::Args)]
pub struct BurstArgs {
    /// Conversations the simulator drives.
    #[arg(long, default_value_t = 1000)]
    pub conversations: usize,
    /// Convoy's request budget (`genesys.requests_per_minute`); Genesys' real per-token
    /// limit is 300.
    #[arg(long, default_value_t = 300)]
    pub requests_per_minute: u32,
    /// Conversations in flight at once in the simulator.
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// Seed of the emulator and the simulator.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Scenario file (TOML); default: the simulator's built-in mix.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Give up (exit 1) if Convoy has not converged this long after the burst started.
    #[arg(long, value_parser = parse_duration, default_value = "60m")]
    pub max_wait: Duration,
    /// How often to print progress on stderr (0s: never).
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub progress_every: Duration,
    /// Report format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// What `convoy bench burst` measured. Times are seconds from the burst's start.
#[derive(Debug, Clone, Serialize)]
pub struct BurstReport {
    pub conversations: usize,
    pub requests_per_minute: u32,
    pub concurrency: usize,
    pub simulator_completed: usize,
    pub simulator_failed: usize,
    /// The simulator returned (every conversation played and checked on its side).
    pub simulator_finished_seconds: Option<f64>,
    /// The emulator's last conversation ended (latest `endTime` of its truth).
    pub emulator_last_end_seconds: Option<f64>,
    /// Convoy's views first equalled the truth after every conversation ended.
    pub views_converged_seconds: Option<f64>,
    /// Every participant first carried its lifecycle in `convoy.participant_state`.
    pub attributes_converged_seconds: Option<f64>,
    pub remaining_differences: usize,
    pub remaining_unwritten: usize,
    /// A few of what still differed, if anything.
    pub sample_problems: Vec<String>,
    /// `convoy_write_back_writes_total`, every outcome.
    pub patches: f64,
    /// `convoy_write_back_writes_total` per outcome label.
    pub patches_by_outcome: Vec<(String, f64)>,
    /// `convoy_participant_transitions_total`.
    pub lifecycle_transitions: f64,
    pub socket_reconnects: f64,
    pub reconciliations: f64,
    pub genesys_requests: f64,
    pub rate_limited: f64,
    pub conversations_started: f64,
}

impl BurstReport {
    pub fn converged(&self) -> bool {
        self.views_converged_seconds.is_some() && self.attributes_converged_seconds.is_some()
    }

    pub fn to_text(&self) -> String {
        let at = |value: Option<f64>| match value {
            Some(secs) => format!("{secs:.1} s"),
            None => "never (within --max-wait)".to_owned(),
        };
        let ratio = if self.lifecycle_transitions > 0.0 {
            format!(
                " ({:.2} per transition)",
                self.patches / self.lifecycle_transitions
            )
        } else {
            String::new()
        };
        let by_outcome: Vec<String> = self
            .patches_by_outcome
            .iter()
            .map(|(labels, value)| format!("{labels} {value}"))
            .collect();
        let mut out = format!(
            "convoy bench burst: {} conversations, Convoy at {} requests/minute, simulator \
             unpaced at concurrency {}\n\
             simulator: {} completed, {} failed, finished at {}\n\
             emulator's last conversation ended:  {}\n\
             Convoy's views equal the truth:      {}\n\
             every attribute written:             {}\n\
             PATCHes: {}{ratio} [{}]; lifecycle transitions: {}\n\
             socket reconnects: {}; reconciliations: {}; Genesys requests: {} ({} rate-limited); \
             conversation actors started: {}\n",
            self.conversations,
            self.requests_per_minute,
            self.concurrency,
            self.simulator_completed,
            self.simulator_failed,
            at(self.simulator_finished_seconds),
            at(self.emulator_last_end_seconds),
            at(self.views_converged_seconds),
            at(self.attributes_converged_seconds),
            self.patches,
            by_outcome.join(", "),
            self.lifecycle_transitions,
            self.socket_reconnects,
            self.reconciliations,
            self.genesys_requests,
            self.rate_limited,
            self.conversations_started,
        );
        if self.converged() {
            out.push_str("OK: converged\n");
        } else {
            out.push_str(&format!(
                "NOT CONVERGED: {} differences, {} unwritten attributes; first:\n",
                self.remaining_differences, self.remaining_unwritten
            ));
            for problem in &self.sample_problems {
                out.push_str(&format!("  {problem}\n"));
            }
        }
        out
    }
}

/// Runs the bench and prints its report; `Ok(false)` when it did not converge. Must run
/// inside an actix System.
pub async fn run(args: BurstArgs) -> Result<bool, BenchError> {
    if args.conversations == 0 || args.concurrency == 0 || args.requests_per_minute == 0 {
        return Err(BenchError::Usage(
            "--conversations, --concurrency and --requests-per-minute must be at least 1"
                .to_owned(),
        ));
    }
    let scenario = match &args.scenario {
        None => Scenario::default(),
        Some(path) => crate::simulator::read_scenario_file(path).map_err(BenchError::Usage)?,
    };
    let emulator = Emulator::start(EmulatorOptions {
        rate_limit_per_minute: 0,
        seed: args.seed,
        ..EmulatorOptions::default()
    })
    .await
    .map_err(|error| BenchError::Emulator(error.to_string()))?;
    let result = run_against(&emulator, &args, scenario).await;
    emulator.stop().await;
    let report = result?;
    super::print_report(&report, args.format, |report| report.to_text())?;
    Ok(report.converged())
}

async fn run_against(
    emulator: &Emulator,
    args: &BurstArgs,
    scenario: Scenario,
) -> Result<BurstReport, BenchError> {
    let config = config_for(
        emulator,
        &format!("requests_per_minute = {}", args.requests_per_minute),
        "[admin]\nlisten = \"127.0.0.1:0\"\n",
    )
    .map_err(|error| BenchError::Daemon(error.to_string()))?;
    let daemon = Daemon::start(&config, RunOptions::default())
        .await
        .map_err(|error| BenchError::Daemon(error.to_string()))?;
    let ready_by = Instant::now() + Duration::from_secs(60);
    while !daemon.board.readiness_now().ready {
        if Instant::now() > ready_by {
            daemon.shutdown().await;
            return Err(BenchError::Daemon(
                "Convoy did not report ready within 60 s".to_owned(),
            ));
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }

    let mut simulation = SimulatorOptions::new(
        &emulator.base_url(),
        emulator.client_id(),
        emulator.client_secret(),
    );
    simulation.scenario = scenario;
    simulation.conversations = args.conversations;
    simulation.concurrency = args.concurrency;
    // Unpaced: the emulator advertises no budget, so nothing caps it either.
    simulation.rate_per_second = None;
    simulation.seed = args.seed;

    let wall_start = Utc::now();
    let start = Instant::now();
    let simulator = actix_rt::spawn(async move { Simulator::new(simulation).run().await });
    let mut simulator = Some(simulator);
    let mut simulated: Option<SimulationReport> = None;
    let mut simulator_finished = None;
    let mut simulator_error = None;
    let mut emulator_last_end = None;
    let mut views_converged = None;
    let mut attributes_converged = None;
    let mut last_progress = Instant::now();
    let deadline = start + args.max_wait;

    let (differing, unwritten) = loop {
        if let Some(handle) = simulator.as_ref() {
            if handle.is_finished() {
                if let Some(handle) = simulator.take() {
                    simulator_finished = Some(start.elapsed());
                    match handle.await {
                        Ok(Ok(report)) => simulated = Some(report),
                        Ok(Err(error)) => simulator_error = Some(error.to_string()),
                        Err(error) => simulator_error = Some(error.to_string()),
                    }
                }
            }
        }
        let truth = super::emulator_truth(emulator)?;
        let emulator_done = simulator.is_none() && all_ended(&truth, args.conversations);
        if emulator_done && emulator_last_end.is_none() {
            emulator_last_end = Some(
                last_end(&truth)
                    .map(|end| end_offset(wall_start, end))
                    .unwrap_or_else(|| start.elapsed()),
            );
        }
        let differing = differences(&daemon.views, &truth);
        let unwritten = unwritten_attributes(&truth);
        if emulator_done && views_converged.is_none() && differing.is_empty() {
            views_converged = Some(start.elapsed());
        }
        if emulator_done && attributes_converged.is_none() && unwritten.is_empty() {
            attributes_converged = Some(start.elapsed());
        }
        if !args.progress_every.is_zero() && last_progress.elapsed() >= args.progress_every {
            last_progress = Instant::now();
            let rendered = daemon.telemetry.render();
            eprintln!(
                "bench burst: {:>6.0} s: {} conversations in the truth, {} ended; {} differences; {} unwritten; write-back owed {}; PATCHes {}",
                start.elapsed().as_secs_f64(),
                truth.len(),
                truth.iter().filter(|c| c["ended"] == true).count(),
                differing.len(),
                unwritten.len(),
                metric_sum(&rendered, names::WRITE_BACK_OWED),
                metric_sum(&rendered, names::WRITE_BACK_WRITES),
            );
        }
        let done = views_converged.is_some() && attributes_converged.is_some();
        if done || simulator_error.is_some() || Instant::now() >= deadline {
            break (differing, unwritten);
        }
        actix_rt::time::sleep(Duration::from_millis(500)).await;
    };

    let rendered = daemon.telemetry.render();
    let mut sample_problems: Vec<String> = simulator_error
        .iter()
        .map(|error| format!("simulator: {error}"))
        .collect();
    sample_problems.extend(differing.iter().chain(&unwritten).take(10).cloned());
    let report = BurstReport {
        conversations: args.conversations,
        requests_per_minute: args.requests_per_minute,
        concurrency: args.concurrency,
        simulator_completed: simulated.as_ref().map_or(0, |r| r.conversations_completed),
        simulator_failed: simulated.as_ref().map_or(0, |r| r.conversations_failed),
        simulator_finished_seconds: simulator_finished.map(seconds),
        emulator_last_end_seconds: emulator_last_end.map(seconds),
        views_converged_seconds: views_converged.map(seconds),
        attributes_converged_seconds: attributes_converged.map(seconds),
        remaining_differences: differing.len(),
        remaining_unwritten: unwritten.len(),
        sample_problems,
        patches: metric_sum(&rendered, names::WRITE_BACK_WRITES),
        patches_by_outcome: metric_series(&rendered, names::WRITE_BACK_WRITES),
        lifecycle_transitions: metric_sum(&rendered, names::PARTICIPANT_TRANSITIONS),
        socket_reconnects: metric_sum(&rendered, names::STREAM_RECONNECTS),
        reconciliations: metric_sum(&rendered, names::STREAM_RECONCILIATIONS),
        genesys_requests: metric_sum(&rendered, names::REST_REQUESTS),
        rate_limited: metric_sum(&rendered, names::REST_RATE_LIMITED),
        conversations_started: metric_sum(&rendered, names::CONVERSATIONS_STARTED),
    };
    daemon.shutdown().await;
    discard_private_store(&config);
    Ok(report)
}

/// At least `expected` conversations, every one ended.
pub fn all_ended(truth: &[Value], expected: usize) -> bool {
    truth.len() >= expected && truth.iter().all(|c| c["ended"] == true)
}

/// The latest `endTime` of the truth.
pub fn last_end(truth: &[Value]) -> Option<DateTime<Utc>> {
    truth
        .iter()
        .filter_map(|c| c["endTime"].as_str())
        .filter_map(|text| DateTime::parse_from_rfc3339(text).ok())
        .map(|time| time.with_timezone(&Utc))
        .max()
}

/// `end - start` as a duration (zero if the end is earlier).
pub fn end_offset(start: DateTime<Utc>, end: DateTime<Utc>) -> Duration {
    (end - start).to_std().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn the_emulator_is_done_when_every_expected_conversation_ended() {
        let ended = json!({"ended": true});
        let open = json!({"ended": false});
        assert!(all_ended(&[ended.clone(), ended.clone()], 2));
        assert!(
            !all_ended(std::slice::from_ref(&ended), 2),
            "one is still missing"
        );
        assert!(!all_ended(&[ended, open], 2));
    }

    #[test]
    fn the_last_end_is_the_latest_end_time_and_open_conversations_have_none() {
        let truth = [
            json!({"endTime": "2025-01-01T10:00:05.000Z"}),
            json!({"endTime": null}),
            json!({"endTime": "2025-01-01T10:00:09.250Z"}),
        ];
        let start: DateTime<Utc> = "2025-01-01T10:00:00Z".parse().unwrap();
        let end = last_end(&truth).unwrap();
        assert_eq!(end_offset(start, end), Duration::from_millis(9250));
        assert_eq!(last_end(&[json!({"endTime": null})]), None);
        assert_eq!(end_offset(end, start), Duration::ZERO);
    }

    fn report(views: Option<f64>, attributes: Option<f64>) -> BurstReport {
        BurstReport {
            conversations: 1000,
            requests_per_minute: 300,
            concurrency: 50,
            simulator_completed: 1000,
            simulator_failed: 0,
            simulator_finished_seconds: Some(20.0),
            emulator_last_end_seconds: Some(15.0),
            views_converged_seconds: views,
            attributes_converged_seconds: attributes,
            remaining_differences: usize::from(views.is_none()),
            remaining_unwritten: 0,
            sample_problems: vec!["c1: not tracked".to_owned()],
            patches: 900.0,
            patches_by_outcome: vec![("{outcome=\"landed\"}".to_owned(), 900.0)],
            lifecycle_transitions: 3000.0,
            socket_reconnects: 0.0,
            reconciliations: 1.0,
            genesys_requests: 1000.0,
            rate_limited: 0.0,
            conversations_started: 1000.0,
        }
    }

    #[test]
    fn a_burst_converged_only_when_views_and_attributes_both_did() {
        assert!(report(Some(16.0), Some(300.0)).converged());
        assert!(!report(Some(16.0), None).converged());
        assert!(!report(None, Some(300.0)).converged());
    }

    #[test]
    fn the_text_report_names_each_figure_and_what_did_not_converge() {
        let text = report(Some(16.0), Some(300.0)).to_text();
        assert!(
            text.contains("Convoy's views equal the truth:      16.0 s"),
            "{text}"
        );
        assert!(
            text.contains("PATCHes: 900 (0.30 per transition)"),
            "{text}"
        );
        assert!(text.contains("OK: converged"), "{text}");
        let text = report(None, None).to_text();
        assert!(text.contains("never (within --max-wait)"), "{text}");
        assert!(text.contains("NOT CONVERGED: 1 differences"), "{text}");
        assert!(text.contains("c1: not tracked"), "{text}");
    }
}
