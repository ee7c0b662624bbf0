//! `convoy demo`: the whole pipeline on one machine with nothing to configure. It starts
//! the emulator in-process, runs the daemon against it exactly as against Genesys (same
//! paths, same stream, same REST writes), drives simulated conversations through it, and
//! checks that what Convoy believes equals the emulator's ground truth, with Convoy's
//! participant attributes written back. A CRM test server (`convoy crm-sink`) runs
//! in-process too: the demo ends with the SLA outcomes Convoy recorded there, by clock and
//! outcome, and the CRM records synced (by kind, dead letters, summaries), each checked
//! against the simulator's expectation ([`convoy::simulator::expect::compare_sla`]).
//!
//! It runs Convoy as users run it: `config/default.toml` and `convoy emulate`'s defaults
//! (300 requests a minute per token, 30 s heartbeats), except what [`CHANGES`] lists —
//! and the caller's `CONVOY_*` variables are ignored, so a shell set up for a real org
//! cannot break it.
//!
//! [`differences`] (or [`differences_by`]) and [`unwritten_attributes`] are the comparison
//! the end-to-end and reliability tests use too.

use std::io::Write;
use std::path::PathBuf;

use std::time::{Duration, Instant};

use crate::conversation::ConversationViews;
use convoy::ids::ConversationId;
use convoy::simulator::Scenario;
use serde_json::Value;

use std::collections::BTreeMap;

use convoy::simulator::expect::{compare_sla, describe_tallies, ExpectedOutcomes, SlaComparison};
use convoy::simulator::SlaThresholds;
use convoy::sla::{SlaPolicy, SlaTallies};

use crate::app::{Daemon, RunOptions};
use crate::config_load::{self, Layers};
use crate::crm::GetCrmStats;
use crate::crm_sink::{CrmSink, CrmSinkOptions};
use crate::emulator::{Emulator, EmulatorOptions};
use crate::simulator::{Simulator, SimulatorOptions};

/// The scenario the demo plays unless told otherwise: every conversation shape, with
/// delays on both sides of the demo's SLA thresholds ([`DEMO_SLA`]), so every SLA outcome
/// shows up.
pub const DEMO_SCENARIO: &str = include_str!("../../config/examples/scenario-sla.toml");

/// The demo's `[sla]` thresholds: seconds rather than the defaults' minutes, so every
/// clock settles within the demo (`answer` and `tick` are set on the loaded configuration,
/// the others through the loader).
pub const DEMO_SLA: &str = "[sla]\nfirst_response = \"4s\"\ndelivery = \"2s\"\nread = \"2s\"\n";
const DEMO_SLA_ANSWER: Duration = Duration::from_secs(2);
const DEMO_SLA_NEXT_RESPONSE: Duration = Duration::from_secs(4);
const DEMO_SLA_TICK: Duration = Duration::from_millis(200);

/// Everything the demo sets differently from `config/default.toml` and `convoy emulate`,
/// as `demo --help` and the README list it.
pub const CHANGES: &[&str] = &[
    "the emulator runs in-process on a free port of 127.0.0.1, seeded with --seed (emulate: 0)",
    "genesys.api_base and genesys.login_base: that emulator; genesys.client_id and \
     genesys.client_secret: its default client; genesys.queues: every queue of its org",
    "admin.listen = 127.0.0.1:0 (a free port, printed), so a daemon on 9464 is no obstacle",
    "outbox.path: a fresh file in the system's temporary folder, so a daemon using \
     data/outbox.redb here is no obstacle",
    "crm.endpoint: a CRM test server (convoy crm-sink) running in-process on a free port",
    "analytics.schedule = off: no scheduled QA snapshot is written into the working folder",
    "sla.answer = 2s, sla.first_response = 4s, sla.next_response = 4s, sla.delivery = 2s, \
     sla.read = 2s, sla.tick = 200ms, so every SLA clock settles within the demo",
    "logs: warnings and errors only, so the demo's own lines stay readable",
    "CONVOY_* environment variables are ignored (config/default.toml plus the lines above)",
];

/// How long the demo waits without any progress towards the ground truth before it
/// reports the differences.
pub const SETTLE_WITHOUT_PROGRESS: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub conversations: usize,
    pub seed: u64,
    pub scenario: Option<PathBuf>,
    /// How long to wait, after the simulation, without Convoy getting any closer to the
    /// ground truth (Convoy's writes are paced by the rate limit, so a long run may need
    /// minutes; a stuck one is given up after this).
    pub settle: Duration,
}

/// What the demo found.
#[derive(Debug, Clone)]
pub struct DemoReport {
    pub conversations: usize,
    pub differences: Vec<String>,
    pub unwritten: Vec<String>,
    pub admin: std::net::SocketAddr,
    pub metrics: Vec<String>,
    /// Expected `sla.outcome` records by clock and outcome.
    pub expected_sla: SlaTallies,
    /// The `sla.outcome` records at the CRM against the expectation.
    pub sla: SlaComparison,
    pub crm: CrmSynced,
}

/// What reached the CRM test server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrmSynced {
    /// Records stored, by kind (`participant.transition`, `sla.outcome`, ...).
    pub records_by_kind: BTreeMap<String, usize>,
    /// Records Convoy dead-lettered (the CRM refused them).
    pub dead_letters: u64,
    /// Conversations with a summary document at the CRM, of those the emulator knows.
    pub summaries: usize,
    /// Summaries whose SLA tallies differ from the expectation.
    pub summary_differences: Vec<String>,
}

impl DemoReport {
    /// Convoy equals the ground truth, and the CRM holds exactly the expected SLA
    /// outcomes and summaries, nothing dead-lettered.
    pub fn converged(&self) -> bool {
        self.differences.is_empty()
            && self.unwritten.is_empty()
            && self.sla.differences.is_empty()
            && self.crm.summary_differences.is_empty()
            && self.crm.dead_letters == 0
    }

    /// Every difference found, ground truth first.
    pub fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = self
            .differences
            .iter()
            .chain(&self.unwritten)
            .chain(&self.sla.differences)
            .chain(&self.crm.summary_differences)
            .cloned()
            .collect();
        if self.crm.dead_letters > 0 {
            problems.push(format!("{} records dead-lettered", self.crm.dead_letters));
        }
        problems
    }

    /// The summary table's SLA and CRM lines.
    pub fn business_lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "SLA outcomes at the CRM: {}",
            describe_tallies(&self.sla.actual)
        )];
        lines.push(format!(
            "  expected:             {}",
            describe_tallies(&self.expected_sla)
        ));
        let mut check = format!(
            "  checked: {} equal the expectation, {} differ, {} missing",
            self.sla.matched,
            self.sla.differences.len() - self.sla.missing.min(self.sla.differences.len()),
            self.sla.missing
        );
        if self.sla.close_calls > 0 {
            check.push_str(&format!(
                ", {} close calls (within 500 ms of a threshold) not checked",
                self.sla.close_calls
            ));
        }
        lines.push(check);
        let kinds: Vec<String> = self
            .crm
            .records_by_kind
            .iter()
            .map(|(kind, count)| format!("{count} {kind}"))
            .collect();
        lines.push(format!(
            "CRM records synced: {} ({}); {} dead-lettered; {} of {} conversation summaries stored",
            self.crm.records_by_kind.values().sum::<usize>(),
            if kinds.is_empty() {
                "none".to_owned()
            } else {
                kinds.join(", ")
            },
            self.crm.dead_letters,
            self.crm.summaries,
            self.conversations
        ));
        lines
    }
}

/// Why the demo could not run. Each variant's text carries its cause (none is chained as
/// a `source`, so a printer walking the chain does not repeat it).
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("emulator: {0}")]
    Emulator(String),
    #[error("demo configuration: {0}")]
    Config(String),
    #[error("scenario {0}")]
    Scenario(String),
    #[error("daemon: {0}")]
    Boot(String),
    #[error("simulator: {0}")]
    Simulator(String),
    #[error("reading the emulator's truth: {0}")]
    Truth(String),
    #[error("CRM test server: {0}")]
    Crm(String),
}

impl DemoError {
    /// A problem with what the caller gave (the scenario file): exit code 2, not 1.
    pub fn is_usage(&self) -> bool {
        matches!(self, DemoError::Config(_) | DemoError::Scenario(_))
    }
}

/// Runs the demo. Must run inside an actix System.
pub async fn run(options: DemoOptions) -> Result<DemoReport, DemoError> {
    // Read the scenario first: a mistake in it is the caller's, reported before anything
    // starts.
    let scenario = read_scenario(options.scenario.as_deref())?;
    // `convoy emulate`'s defaults (the org is seeded with the emulator's seed).
    let emulator = Emulator::start(EmulatorOptions {
        seed: options.seed,
        ..EmulatorOptions::default()
    })
    .await
    .map_err(|error| DemoError::Emulator(error.to_string()))?;
    let sink = match CrmSink::start(CrmSinkOptions::default()).await {
        Ok(sink) => sink,
        Err(error) => {
            emulator.stop().await;
            return Err(DemoError::Crm(error.to_string()));
        }
    };
    let result = run_against(&emulator, &sink, &options, scenario).await;
    sink.stop().await;
    emulator.stop().await;
    result
}

fn read_scenario(path: Option<&std::path::Path>) -> Result<Scenario, DemoError> {
    match path {
        Some(path) => crate::simulator::read_scenario_file(path).map_err(DemoError::Scenario),
        None => Scenario::from_toml(DEMO_SCENARIO)
            .map_err(|error| DemoError::Scenario(format!("(built in): {error}"))),
    }
}

/// The daemon's configuration: `config/default.toml` and exactly the lines [`CHANGES`]
/// names, through the real loader, without the caller's environment.
fn demo_config(emulator: &Emulator, crm: &str) -> Result<convoy::config::Config, DemoError> {
    let text = format!(
        "{genesys}[admin]\nlisten = \"127.0.0.1:0\"\n{outbox}[crm]\nendpoint = \"{crm}\"\n[analytics]\nschedule = \"off\"\n{DEMO_SLA}",
        genesys = genesys_section(emulator),
        outbox = private_store(),
    );
    let mut config = load_from_text(&text, true)?;
    config.sla.answer = DEMO_SLA_ANSWER;
    config.sla.next_response = DEMO_SLA_NEXT_RESPONSE;
    config.sla.tick = DEMO_SLA_TICK;
    Ok(config)
}

/// The thresholds a daemon with `config` judges by, for the simulator's expectations.
pub fn sla_thresholds(config: &convoy::config::Config) -> SlaThresholds {
    SlaThresholds::from_thresholds(
        &SlaPolicy::from_config(&config.sla).thresholds,
        config.sla.no_read_receipt.iter().cloned(),
    )
}

/// The `[genesys]` lines that point a daemon at `emulator`: its bases, its default client
/// and every queue of its org. The section stays open for more keys.
fn genesys_section(emulator: &Emulator) -> String {
    format!(
        "[genesys]\napi_base = \"{base}\"\nlogin_base = \"{base}\"\nclient_id = \"{id}\"\n\
         client_secret = \"{secret}\"\nqueues = {queues}\n",
        base = emulator.base_url(),
        id = emulator.client_id(),
        secret = emulator.client_secret(),
        queues = serde_json::to_string(&emulator.queue_ids()).unwrap_or_else(|_| "[]".to_owned()),
    )
}

async fn run_against(
    emulator: &Emulator,
    sink: &CrmSink,
    options: &DemoOptions,
    scenario: Scenario,
) -> Result<DemoReport, DemoError> {
    let config = demo_config(emulator, &sink.base_url())?;

    let daemon = Daemon::start(&config, RunOptions::default())
        .await
        .map_err(|error| DemoError::Boot(error.to_string()))?;
    let ready = wait_until(Duration::from_secs(30), || async {
        daemon.board.readiness_now().ready
    })
    .await;
    if !ready {
        tracing::warn!("Convoy did not report ready within 30 s; simulating anyway.");
    }

    // The simulator at its own defaults but for what the demo's flags choose.
    let mut simulation = SimulatorOptions::new(
        &emulator.base_url(),
        emulator.client_id(),
        emulator.client_secret(),
    );
    simulation.scenario = scenario;
    simulation.conversations = options.conversations;
    simulation.seed = options.seed;
    simulation.sla = sla_thresholds(&config);
    // Conversations of the SLA scenario last up to ~12 s: play more of them at once.
    simulation.concurrency = 25;
    let report = Simulator::new(simulation)
        .run()
        .await
        .map_err(|error| DemoError::Simulator(error.to_string()))?;
    tracing::info!(
        completed = report.conversations_completed,
        "Simulation finished."
    );

    let http = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let truth_url = format!("{}/emulator/v1/truth", emulator.base_url());
    let mut truth = read_truth(&http, &truth_url).await?;
    let remaining = |truth: &[Value]| {
        differences(&daemon.views, truth).len() + unwritten_attributes(truth).len()
    };
    let mut least = remaining(&truth);
    let mut deadline = Instant::now() + options.settle;
    while least > 0 && Instant::now() < deadline {
        actix_rt::time::sleep(Duration::from_millis(500)).await;
        truth = read_truth(&http, &truth_url).await?;
        let now = remaining(&truth);
        if now < least {
            // Progress (writes drain at the rate limit's pace): wait on.
            least = now;
            deadline = Instant::now() + options.settle;
        }
    }
    let expected = report.expected;
    let sla = wait_for_outcomes(sink, &expected, options.settle).await;
    let rendered = daemon.telemetry.render();
    let metrics = rendered
        .lines()
        .filter(|line| {
            !line.starts_with('#')
                && (line.starts_with("convoy_stream_frames_total")
                    || line.starts_with("convoy_conversations_started_total")
                    || line.starts_with("convoy_genesys_requests_total")
                    || line.starts_with("convoy_genesys_conflict_retries_total"))
                && !line.ends_with(" 0")
        })
        .map(str::to_owned)
        .collect();
    let dead_letters = match &daemon.crm {
        Some(crm) => crm
            .send(GetCrmStats)
            .await
            .map_or(0, |stats| stats.records_dead_lettered),
        None => 0,
    };
    let crm = crm_synced(sink, &expected, &truth, dead_letters);
    let report = DemoReport {
        conversations: truth.len(),
        differences: differences(&daemon.views, &truth),
        unwritten: unwritten_attributes(&truth),
        admin: daemon.admin.local_addr(),
        metrics,
        expected_sla: expected.totals.sla_outcomes.clone(),
        sla,
        crm,
    };
    daemon.shutdown().await;
    Ok(report)
}

/// Waits until every expected `sla.outcome` record is at the CRM, as long as more keep
/// arriving within `settle`; returns the last comparison.
async fn wait_for_outcomes(
    sink: &CrmSink,
    expected: &ExpectedOutcomes,
    settle: Duration,
) -> SlaComparison {
    let mut comparison = compare_sla(expected, &sink.records());
    let mut least = comparison.missing;
    let mut deadline = Instant::now() + settle;
    while comparison.missing > 0 && Instant::now() < deadline {
        actix_rt::time::sleep(Duration::from_millis(200)).await;
        comparison = compare_sla(expected, &sink.records());
        if comparison.missing < least {
            least = comparison.missing;
            deadline = Instant::now() + settle;
        }
    }
    // The summaries follow their records: give the last upserts a moment.
    let summaries = expected.tallies_by_conversation();
    let _ = wait_until(settle, || async {
        summaries.iter().all(|(id, tallies)| {
            sink.conversation(id)
                .is_some_and(|doc| doc.document["sla"] == tallies_json(tallies))
        })
    })
    .await;
    comparison
}

/// What reached the CRM: records by kind, summaries of the emulator's conversations, and
/// the summaries whose SLA tallies differ from the expectation.
fn crm_synced(
    sink: &CrmSink,
    expected: &ExpectedOutcomes,
    truth: &[Value],
    dead_letters: u64,
) -> CrmSynced {
    let mut records_by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for record in sink.records() {
        *records_by_kind.entry(record.kind).or_default() += 1;
    }
    let summaries = truth
        .iter()
        .filter(|conversation| sink.conversation(text(&conversation["id"])).is_some())
        .count();
    let summary_differences = expected
        .tallies_by_conversation()
        .iter()
        .filter_map(|(id, tallies)| {
            let wanted = tallies_json(tallies);
            let stored = sink
                .conversation(id)
                .map(|doc| doc.document["sla"].clone())
                .unwrap_or_default();
            (stored != wanted).then(|| format!("{id}: summary sla {stored}, expected {wanted}"))
        })
        .collect();
    CrmSynced {
        records_by_kind,
        dead_letters,
        summaries,
        summary_differences,
    }
}

/// SLA tallies as the summary document shows them: `{"answer": {"compliant": 1}}`.
pub fn tallies_json(tallies: &SlaTallies) -> Value {
    Value::Object(
        tallies
            .iter()
            .map(|(clock, outcomes)| {
                (
                    clock.as_str().to_owned(),
                    Value::Object(
                        outcomes
                            .iter()
                            .map(|(outcome, count)| {
                                (outcome.as_str().to_owned(), Value::from(*count))
                            })
                            .collect(),
                    ),
                )
            })
            .collect(),
    )
}

/// The configuration of a daemon following every queue of `emulator`, loaded through
/// the real loader (embedded defaults, then a file): a `[genesys]` section pointing at the
/// emulator with a generous request budget and `genesys_extra` lines, plus `extra_toml`
/// (other sections).
pub fn config_for(
    emulator: &Emulator,
    genesys_extra: &str,
    extra_toml: &str,
) -> Result<convoy::config::Config, DemoError> {
    // Each in-process daemon gets a durable store of its own (a second daemon cannot open
    // the same redb file, and a store left by an earlier run would carry its state into
    // this one), unless the caller names one; a caller's [outbox] section without a path
    // (e.g. a cap) gets the private path added.
    let extra = if names_outbox_path(extra_toml) {
        extra_toml.to_owned()
    } else if extra_toml.contains("[outbox]") {
        extra_toml.replacen("[outbox]\n", &private_store(), 1)
    } else {
        format!("{}{extra_toml}", private_store())
    };
    // Scheduled QA snapshots only when the caller asks for them: they would add analytics
    // requests to every run and write into the working directory.
    let extra = if extra.contains("[analytics]") {
        extra
    } else {
        format!("{extra}[analytics]\nschedule = \"off\"\n")
    };
    let text = format!(
        "# Written for an in-process emulator.\n{genesys}{budget}{genesys_extra}\n{extra}",
        genesys = genesys_section(emulator),
        budget = if genesys_extra.contains("requests_per_minute") {
            ""
        } else {
            "requests_per_minute = 60000\n"
        },
    );
    load_from_text(&text, false)
}

/// Loads `text` as the file layer over the built-in defaults (through a temporary file,
/// as the loader reads files), with or without the environment layer.
fn load_from_text(
    text: &str,
    ignore_environment: bool,
) -> Result<convoy::config::Config, DemoError> {
    let path = std::env::temp_dir().join(format!(
        "convoy-{}-{}.toml",
        std::process::id(),
        CONFIG_FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::File::create(&path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|error| DemoError::Config(format!("{}: {error}", path.display())))?;
    let loaded = config_load::load(&Layers {
        file: Some(path.clone()),
        flags: Vec::new(),
        ignore_environment,
    });
    let _ = std::fs::remove_file(&path);
    loaded.map_err(|error| DemoError::Config(error.to_string()))
}

/// Whether `toml` sets `outbox.path` itself (in its `[outbox]` section).
fn names_outbox_path(toml: &str) -> bool {
    toml.split("[outbox]").nth(1).is_some_and(|section| {
        section
            .split("\n[")
            .next()
            .unwrap_or_default()
            .lines()
            .any(|line| line.trim_start().starts_with("path"))
    })
}

/// An `[outbox]` section naming a store no other daemon uses: a fresh folder under the
/// system's temporary folder (a second daemon cannot open the same redb file).
fn private_store() -> String {
    let folder = std::env::temp_dir().join(format!(
        "convoy-store-{}-{}",
        std::process::id(),
        STORES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    format!(
        "[outbox]\npath = {:?}\n",
        folder.join("outbox.redb").display().to_string()
    )
}

/// Distinguishes the stores of several daemons started by one process.
static STORES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Distinguishes the temporary files of several configurations built by one process.
static CONFIG_FILES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

async fn read_truth(http: &awc::Client, url: &str) -> Result<Vec<Value>, DemoError> {
    let mut response = http
        .get(url)
        .send()
        .await
        .map_err(|error| DemoError::Truth(error.to_string()))?;
    let body: Value = response
        .json()
        .limit(256 * 1024 * 1024)
        .await
        .map_err(|error| DemoError::Truth(error.to_string()))?;
    Ok(body
        .get("conversations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default())
}

async fn wait_until<F, Fut>(deadline: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + deadline;
    while Instant::now() < until {
        if condition().await {
            return true;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

fn list(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// Differences between what Convoy believes (the `/conversations` views) and the
/// emulator's ground truth (`GET /emulator/v1/truth`): whether each conversation ended,
/// each participant's lifecycle, each message's status. Empty when they agree.
pub fn differences(views: &ConversationViews, truth: &[Value]) -> Vec<String> {
    differences_by(
        |id| {
            views
                .get(&ConversationId::from(id))
                .map(|view| view.value().clone().to_json(None))
        },
        truth,
    )
}

/// [`differences`] against views however they are reached: `view_of` gives a
/// conversation's view as `/conversations` shows it (a test of a `convoy run` child
/// process reads them over the admin API).
pub fn differences_by(view_of: impl Fn(&str) -> Option<Value>, truth: &[Value]) -> Vec<String> {
    let mut problems = Vec::new();
    for conversation in truth {
        let id = text(&conversation["id"]);
        let Some(view) = view_of(id) else {
            problems.push(format!("{id}: not tracked"));
            continue;
        };
        if view["ended"] != conversation["ended"] {
            problems.push(format!(
                "{id}: ended {} vs truth {}",
                view["ended"], conversation["ended"]
            ));
        }
        for participant in list(&conversation["participants"]) {
            let pid = &participant["id"];
            match list(&view["participants"])
                .iter()
                .find(|mine| &mine["id"] == pid)
            {
                None => problems.push(format!("{id}: participant {pid} missing")),
                Some(mine) if mine["lifecycle"] != participant["lifecycle"] => {
                    problems.push(format!(
                        "{id}: participant {pid} lifecycle {} vs truth {}",
                        mine["lifecycle"], participant["lifecycle"]
                    ))
                }
                Some(_) => {}
            }
        }
        for message in list(&conversation["messages"]) {
            let mid = &message["id"];
            match list(&view["messages"])
                .iter()
                .find(|mine| &mine["id"] == mid)
            {
                None => problems.push(format!("{id}: message {mid} missing")),
                Some(mine) if mine["status"] != message["status"] => problems.push(format!(
                    "{id}: message {mid} status {} vs truth {}",
                    mine["status"], message["status"]
                )),
                Some(_) => {}
            }
        }
    }
    problems
}

/// Participants whose `convoy.participant_state` attribute (as the truth shows it) is not
/// their final lifecycle.
pub fn unwritten_attributes(truth: &[Value]) -> Vec<String> {
    truth
        .iter()
        .flat_map(|conversation| {
            list(&conversation["participants"])
                .iter()
                .map(move |participant| (conversation, participant))
        })
        .filter(|(_, participant)| {
            participant["attributes"]["convoy.participant_state"] != participant["lifecycle"]
        })
        .map(|(conversation, participant)| {
            format!(
                "{}/{}: attribute {} vs lifecycle {}",
                text(&conversation["id"]),
                text(&participant["id"]),
                participant["attributes"]["convoy.participant_state"],
                participant["lifecycle"]
            )
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn only_an_outbox_section_with_a_path_names_the_store() {
        assert!(names_outbox_path("[outbox]\npath = \"x.redb\"\n"));
        assert!(names_outbox_path(
            "[crm]\nbatch_size = 5\n[outbox]\n  path = \"x\"\n"
        ));
        assert!(!names_outbox_path("[outbox]\nmax_records = 1000\n"));
        assert!(!names_outbox_path(
            "[outbox]\nmax_records = 1000\n[log]\npath_like = 1\n"
        ));
        assert!(!names_outbox_path(
            "[crm]\nendpoint = \"http://127.0.0.1:1\"\n"
        ));
    }

    fn report() -> DemoReport {
        DemoReport {
            conversations: 1,
            differences: Vec::new(),
            unwritten: Vec::new(),
            admin: "127.0.0.1:1".parse().unwrap(),
            metrics: Vec::new(),
            expected_sla: SlaTallies::new(),
            sla: SlaComparison::default(),
            crm: CrmSynced::default(),
        }
    }

    #[test]
    fn an_sla_difference_a_summary_difference_or_a_dead_letter_fails_the_demo() {
        assert!(report().converged());
        let mut wrong_outcome = report();
        wrong_outcome
            .sla
            .differences
            .push("c1 read: breached, expected compliant".into());
        assert!(!wrong_outcome.converged());
        assert_eq!(wrong_outcome.problems().len(), 1);
        let mut wrong_summary = report();
        wrong_summary
            .crm
            .summary_differences
            .push("c1: summary".into());
        assert!(!wrong_summary.converged());
        let mut dead = report();
        dead.crm.dead_letters = 2;
        assert!(!dead.converged());
        assert_eq!(dead.problems(), vec!["2 records dead-lettered".to_owned()]);
    }

    #[test]
    fn the_business_lines_show_outcomes_by_clock_and_records_by_kind() {
        let mut report = report();
        let mut tallies = SlaTallies::new();
        tallies
            .entry(convoy::sla::ClockKind::Answer)
            .or_default()
            .insert(convoy::sla::SlaOutcome::Compliant, 3);
        report.sla.actual = tallies.clone();
        report.expected_sla = tallies;
        report.sla.matched = 3;
        report.crm.records_by_kind.insert("sla.outcome".into(), 3);
        report.crm.summaries = 1;
        let lines = report.business_lines().join("\n");
        assert!(
            lines.contains("SLA outcomes at the CRM: answer 3 compliant"),
            "{lines}"
        );
        assert!(
            lines.contains("3 equal the expectation, 0 differ, 0 missing"),
            "{lines}"
        );
        assert!(
            lines.contains("CRM records synced: 3 (3 sla.outcome); 0 dead-lettered; 1 of 1"),
            "{lines}"
        );
    }
}
