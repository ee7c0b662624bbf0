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
//! Faults happen in the middle of the run ([`inject_faults`]): once a third of the
//! conversations are tracked the CRM answers every request with a 5xx for [`CRM_OUTAGE`];
//! once two thirds have finished every notification socket is dropped. Both must be
//! survived with nothing lost: the same checks run afterwards, and the summary counts the
//! reconnects and the CRM retries. SLA clocks run on observation time and Genesys replays
//! nothing after a drop, so the clocks of conversations live around the socket gap are
//! close calls (counted, not checked; [`exposed_to_gap`]). On a terminal a live progress line shows on stderr;
//! the end is a summary table ([`DemoReport::table`]) whose every line is checked.
//!
//! [`differences`] (or [`differences_by`]) and [`unwritten_attributes`] are the comparison
//! the end-to-end and reliability tests use too.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;

use std::time::{Duration, Instant};

use chrono::{DateTime, Timelike, Utc};

use crate::conversation::ConversationViews;
use convoy::ids::ConversationId;
use convoy::simulator::scenario::ShapeKind;
use convoy::simulator::Scenario;
use serde_json::Value;

use std::collections::BTreeMap;

use convoy::crm::CrmRecord;
use convoy::simulator::expect::{compare_sla, ExpectedOutcomes, SlaComparison};
use convoy::simulator::SlaThresholds;
use convoy::sla::{ClockKind, SlaOutcome, SlaPolicy, SlaTallies};

use crate::app::{Daemon, RunOptions};
use crate::config_load::{self, Layers};
use crate::crm::GetCrmStats;
use crate::crm_sink::{CrmSink, CrmSinkOptions, FaultSettings as CrmFaults};
use crate::emulator::{Emulator, EmulatorOptions};
use crate::simulator::{Simulator, SimulatorOptions};
use crate::stream::GetStreamStatus;

/// The scenario the demo plays unless told otherwise: every conversation shape (messages
/// with photos, late, failed and missing receipts, transfers, abandons, agentless notices,
/// voice calls transcribed in real time), with delays on both sides of the demo's SLA
/// thresholds ([`DEMO_SLA`]), so every SLA outcome shows up.
pub const DEMO_SCENARIO: &str = include_str!("../../config/examples/scenario-demo.toml");

/// The demo's `[sla]` thresholds: seconds rather than the defaults' minutes, so every
/// clock settles within the demo (`answer` and `tick` are set on the loaded configuration,
/// the others through the loader).
pub const DEMO_SLA: &str = "[sla]\nfirst_response = \"4s\"\ndelivery = \"2s\"\nread = \"2s\"\n";
const DEMO_SLA_ANSWER: Duration = Duration::from_secs(2);
const DEMO_SLA_NEXT_RESPONSE: Duration = Duration::from_secs(4);
const DEMO_SLA_TICK: Duration = Duration::from_millis(200);

/// Conversations the demo plays unless told otherwise (`convoy demo --conversations`).
pub const DEFAULT_CONVERSATIONS: usize = 300;

/// The request budget of the demo's emulator and daemon. Genesys allows 300 requests a
/// minute per OAuth client; a few hundred conversations write back several participant
/// states each, which at 300/min takes many minutes. The demo shows the pipeline, not the
/// budget: it grants 20 times that (`convoy bench burst` keeps the real 300).
pub const DEMO_REQUESTS_PER_MINUTE: u32 = 6_000;

/// How long the CRM answers every request with a 5xx in the middle of the run.
pub const CRM_OUTAGE: Duration = Duration::from_secs(5);

/// Everything the demo sets differently from `config/default.toml` and `convoy emulate`,
/// as `demo --help` and the README list it.
pub const CHANGES: &[&str] = &[
    "the emulator runs in-process on a free port of 127.0.0.1, seeded with --seed (emulate: 0)",
    "the emulator allows 6000 requests a minute per token (Genesys and emulate: 300) and \
     genesys.requests_per_minute = 6000, so a few hundred conversations' write-backs fit \
     in a minute",
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
    "faults on purpose: the CRM test server answers 5xx for 5 s once a third of the \
     conversations are tracked, and every notification socket is dropped once two thirds \
     have finished",
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
    /// Draw the live progress line on stderr (the CLI: when stderr is a terminal).
    pub progress: bool,
    /// Drop the sockets and take the CRM down in the middle of the run.
    pub faults: bool,
}

impl DemoOptions {
    /// The demo as `convoy demo` runs it without flags (progress line off).
    pub fn new(conversations: usize, seed: u64) -> DemoOptions {
        DemoOptions {
            conversations,
            seed,
            scenario: None,
            settle: SETTLE_WITHOUT_PROGRESS,
            progress: false,
            faults: true,
        }
    }
}

/// What the demo found.
#[derive(Debug, Clone)]
pub struct DemoReport {
    pub conversations: usize,
    pub differences: Vec<String>,
    pub unwritten: Vec<String>,
    pub admin: std::net::SocketAddr,
    pub metrics: Vec<String>,
    /// Expected `sla.outcome` records by clock and outcome, close calls left out.
    pub expected_sla: SlaTallies,
    /// Conversations live around the socket gap (their SLA clocks are close calls).
    pub exposed: usize,
    /// The `sla.outcome` records at the CRM against the expectation.
    pub sla: SlaComparison,
    pub crm: CrmSynced,
    /// Conversations the simulator planned, and those it played to their end.
    pub planned: usize,
    pub completed: usize,
    /// Conversations of the ground truth Convoy tracks.
    pub tracked: usize,
    /// Participants of the ground truth, and those whose final lifecycle is not among the
    /// `participant.transition` records at the CRM.
    pub participants: usize,
    pub transitions_missing: Vec<String>,
    /// The faults injected in the middle of the run.
    pub faults: FaultLog,
    /// Voice calls of the ground truth.
    pub voice_calls: usize,
    pub transcripts: Transcripts,
    /// Notification sockets Convoy re-established.
    pub reconnects: u64,
    /// Batches Convoy's CRM batcher sent again (5xx, 429, lost answers).
    pub crm_retries: u64,
    /// Records still in Convoy's outbox at the end.
    pub outbox_pending: u64,
    /// From the start of the emulator to the end of the checks.
    pub wall: Duration,
    /// The wall-clock interval the demo's conversations fall in (from the daemon's start,
    /// before the first conversation, to after the checks): what a QA snapshot of the demo
    /// covers.
    pub interval: (DateTime<Utc>, DateTime<Utc>),
    /// The QA snapshot of [`DemoReport::interval`] the demo took at the end.
    pub snapshot: Option<DemoSnapshot>,
}

/// The demo's QA snapshot (`convoy snapshot` of its interval against its emulator) and
/// what it is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoSnapshot {
    /// The snapshot's folder: `snapshot.json`, the CSVs, `manifest.json`, `report.html`.
    pub folder: PathBuf,
    pub conversations: usize,
    /// Its SLA outcomes (from the outbox) and the `sla.outcome` records at the CRM.
    pub outcomes: u64,
    pub crm_outcomes: u64,
    /// Mismatches between its detail rows and the aggregates.
    pub mismatches: usize,
}

/// The real-time transcripts of the simulated calls: what Convoy holds against the
/// utterances the emulator transcribed. Genesys replays nothing after a socket drop, so a
/// call live around the gap may miss utterances (in Convoy as against Genesys); every
/// other call must hold all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transcripts {
    /// Segments Convoy holds, over the calls the simulator placed.
    pub segments: u64,
    /// Utterances the plan has the emulator transcribe.
    pub expected: u64,
    /// Of the missing ones, those of calls live around the socket gap.
    pub lost_in_gap: u64,
    pub differences: Vec<String>,
}

/// How far around the socket gap a conversation counts as exposed to it: Convoy learns of
/// the conversations that started in the gap from the reconciliation re-read (then
/// subscribes a call's transcription topic), and receipts follow a message by seconds.
const GAP_SETTLE: Duration = Duration::from_secs(5);

/// What [`inject_faults`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultLog {
    /// Faults were asked for (`DemoOptions::faults`).
    pub planned: bool,
    /// Sockets the emulator dropped (`None`: not done).
    pub sockets_dropped: Option<usize>,
    /// When the sockets were dropped, and when Convoy had every socket back.
    pub socket_gap: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// How long the CRM answered 5xx (`None`: not done).
    pub crm_outage: Option<Duration>,
    /// Requests the CRM test server answered with a 5xx during the outage.
    pub crm_errors: u64,
    /// Why a fault could not be injected.
    pub problems: Vec<String>,
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
        self.problems().is_empty()
    }

    /// Every difference found, ground truth first.
    pub fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = self
            .differences
            .iter()
            .chain(&self.unwritten)
            .chain(&self.sla.differences)
            .chain(&self.crm.summary_differences)
            .chain(&self.transitions_missing)
            .chain(&self.transcripts.differences)
            .chain(&self.faults.problems)
            .cloned()
            .collect();
        if self.crm.dead_letters > 0 {
            problems.push(format!("{} records dead-lettered", self.crm.dead_letters));
        }
        match &self.snapshot {
            None => problems.push("no QA snapshot was taken".to_owned()),
            Some(snapshot) => {
                if snapshot.conversations != self.conversations {
                    problems.push(format!(
                        "the QA snapshot holds {} conversations, the emulator {}",
                        snapshot.conversations, self.conversations
                    ));
                }
                if snapshot.outcomes != snapshot.crm_outcomes {
                    problems.push(format!(
                        "the QA snapshot holds {} SLA outcomes, the CRM {}",
                        snapshot.outcomes, snapshot.crm_outcomes
                    ));
                }
                if snapshot.mismatches > 0 {
                    problems.push(format!(
                        "the QA snapshot's details and aggregates disagree {} times",
                        snapshot.mismatches
                    ));
                }
            }
        }
        if self.completed < self.planned {
            problems.push(format!(
                "the simulator played {} of {} conversations to their end",
                self.completed, self.planned
            ));
        }
        if self.outbox_pending > 0 {
            problems.push(format!(
                "{} records still pending in Convoy's outbox",
                self.outbox_pending
            ));
        }
        problems
    }

    /// The summary table: what Convoy did, what the ground truth and the expectation say,
    /// and whether they agree (`ok`, `DIFF`; blank where nothing is expected).
    pub fn table(&self) -> String {
        let mut rows: Vec<Row> = vec![
            Row::checked(
                "conversations tracked (ground truth)",
                self.tracked,
                self.conversations,
            ),
            Row::checked(
                "  played to their end by the simulator",
                self.completed,
                self.planned,
            ),
            Row::checked(
                "participants, final lifecycle at the CRM",
                self.participants - self.transitions_missing.len().min(self.participants),
                self.participants,
            ),
            Row::info(
                "participant transitions synced",
                self.crm
                    .records_by_kind
                    .get("participant.transition")
                    .copied()
                    .unwrap_or(0),
            ),
        ];
        rows.push(Row::info("voice calls", self.voice_calls));
        let mut segments = Row::checked(
            "  transcript segments",
            self.transcripts.segments,
            self.transcripts.expected,
        );
        if self.transcripts.differences.is_empty() && self.transcripts.lost_in_gap > 0 {
            segments.verdict = "lost in the socket gap";
        }
        rows.push(segments);
        let mut clocks: BTreeMap<(ClockKind, SlaOutcome), (u64, u64)> = BTreeMap::new();
        for (clock, outcomes) in &self.expected_sla {
            for (outcome, count) in outcomes {
                clocks.entry((*clock, *outcome)).or_default().1 += u64::from(*count);
            }
        }
        for (clock, outcomes) in &self.sla.actual {
            for (outcome, count) in outcomes {
                clocks.entry((*clock, *outcome)).or_default().0 += u64::from(*count);
            }
        }
        // A close call (within 500 ms of a threshold) may tip either way in a real run:
        // its clock's counts may differ without the check failing.
        let tolerated = self.sla.close_calls > 0 && self.sla.differences.is_empty();
        for ((clock, outcome), (actual, expected)) in clocks {
            let mut row = Row::checked(
                &format!("SLA {} {}", clock.as_str(), outcome.as_str()),
                actual,
                expected,
            );
            if actual != expected && tolerated {
                row.verdict = "close call";
            }
            rows.push(row);
        }
        rows.push(Row::checked(
            "SLA outcomes equal to the expectation",
            self.sla.matched,
            self.sla.matched + self.sla.differences.len(),
        ));
        if self.sla.close_calls > 0 {
            rows.push(Row::info(
                "  not checked (close calls, socket gap)",
                self.sla.close_calls,
            ));
        }
        let total: usize = self.crm.records_by_kind.values().sum();
        rows.push(Row::info("records synced to the CRM", total));
        for (kind, count) in &self.crm.records_by_kind {
            rows.push(Row::info(&format!("  {kind}"), *count));
        }
        rows.push(Row::checked(
            "summaries with the expected SLA tallies",
            self.crm.summaries - self.crm.summary_differences.len().min(self.crm.summaries),
            self.crm.summaries,
        ));
        rows.push(Row::checked("dead letters", self.crm.dead_letters, 0u64));
        rows.push(Row::checked(
            "outbox pending at the end",
            self.outbox_pending,
            0u64,
        ));
        if let Some(sockets) = self.faults.sockets_dropped {
            rows.push(Row::info("sockets dropped (fault)", sockets));
            if let Some((dropped, back)) = self.faults.socket_gap {
                rows.push(Row {
                    what: "  Convoy's sockets back after".to_owned(),
                    convoy: format!(
                        "{:.1} s",
                        (back - dropped).num_milliseconds() as f64 / 1000.0
                    ),
                    expected: String::new(),
                    verdict: "",
                });
                rows.push(Row::info(
                    "  conversations live around the gap",
                    self.exposed,
                ));
            }
            let mut row = Row::info("reconnects survived", self.reconnects);
            row.expected = "at least 1".to_owned();
            row.verdict = if self.reconnects >= 1 || sockets == 0 {
                "ok"
            } else {
                "DIFF"
            };
            rows.push(row);
        }
        if let Some(outage) = self.faults.crm_outage {
            rows.push(Row {
                what: "CRM outage (fault)".to_owned(),
                convoy: format!(
                    "{:.1} s, {} answered 5xx",
                    outage.as_secs_f64(),
                    self.faults.crm_errors
                ),
                expected: String::new(),
                verdict: "",
            });
        }
        rows.push(Row::info("CRM retries", self.crm_retries));
        if let Some(snapshot) = &self.snapshot {
            rows.push(Row::checked(
                "QA snapshot: conversations",
                snapshot.conversations,
                self.conversations,
            ));
            rows.push(Row::checked(
                "  SLA outcomes (outbox) vs the CRM",
                snapshot.outcomes,
                snapshot.crm_outcomes,
            ));
            rows.push(Row::checked(
                "  details vs aggregates mismatches",
                snapshot.mismatches,
                0usize,
            ));
        }
        rows.push(Row {
            what: "wall time".to_owned(),
            convoy: format!("{:.1} s", self.wall.as_secs_f64()),
            expected: String::new(),
            verdict: "",
        });
        render_table(&rows)
    }
}

/// One line of the summary table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    what: String,
    convoy: String,
    expected: String,
    verdict: &'static str,
}

impl Row {
    fn checked(what: &str, actual: impl Count, expected: impl Count) -> Row {
        let (actual, expected) = (actual.count(), expected.count());
        Row {
            what: what.to_owned(),
            convoy: actual.to_string(),
            expected: expected.to_string(),
            verdict: if actual == expected { "ok" } else { "DIFF" },
        }
    }

    fn info(what: &str, value: impl Count) -> Row {
        Row {
            what: what.to_owned(),
            convoy: value.count().to_string(),
            expected: String::new(),
            verdict: "",
        }
    }
}

/// A count of the table, whatever integer type its source keeps it in.
trait Count {
    fn count(self) -> u64;
}

impl Count for u64 {
    fn count(self) -> u64 {
        self
    }
}

impl Count for usize {
    fn count(self) -> u64 {
        u64::try_from(self).unwrap_or(u64::MAX)
    }
}

fn render_table(rows: &[Row]) -> String {
    // A column is as wide as its widest cell, and at least its heading.
    let width = |cell: fn(&Row) -> &str, heading: usize| {
        rows.iter()
            .map(|row| cell(row).len())
            .max()
            .unwrap_or(0)
            .max(heading)
    };
    let what = width(|row| &row.what, 4);
    let convoy = width(|row| &row.convoy, 6);
    let expected = width(|row| &row.expected, 8);
    let mut out = format!(
        "{:<what$}  {:>convoy$}  {:>expected$}  check\n",
        "", "Convoy", "expected"
    );
    for row in rows {
        let line = format!(
            "{:<what$}  {:>convoy$}  {:>expected$}  {}",
            row.what, row.convoy, row.expected, row.verdict
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
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
    #[error("QA snapshot: {0}")]
    Snapshot(String),
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
    let started = Instant::now();
    // `convoy emulate`'s defaults (the org is seeded with the emulator's seed) but for the
    // request budget (see [`DEMO_REQUESTS_PER_MINUTE`]).
    let emulator = Emulator::start(EmulatorOptions {
        seed: options.seed,
        rate_limit_per_minute: DEMO_REQUESTS_PER_MINUTE,
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
    let result = run_against(&emulator, &sink, &options, scenario, started).await;
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
        "{genesys}requests_per_minute = {DEMO_REQUESTS_PER_MINUTE}\n[admin]\nlisten = \"127.0.0.1:0\"\n{outbox}[crm]\nendpoint = \"{crm}\"\n[analytics]\nschedule = \"off\"\n{DEMO_SLA}",
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
    started: Instant,
) -> Result<DemoReport, DemoError> {
    let config = demo_config(emulator, &sink.base_url())?;

    let daemon = Daemon::start(&config, RunOptions::default())
        .await
        .map_err(|error| DemoError::Boot(error.to_string()))?;
    // The conversations start after this instant (whole seconds: analytics intervals).
    let interval_start = Utc::now().with_nanosecond(0).unwrap_or_else(Utc::now);
    let phase = Cell::new("starting");
    let faults = RefCell::new(FaultLog {
        planned: options.faults,
        ..FaultLog::default()
    });
    let mut line = ProgressLine::new(options.progress, options.conversations, started);
    let outcome = {
        let work = play_and_check(
            emulator,
            sink,
            &daemon,
            options,
            scenario,
            &config,
            (&phase, &faults),
        );
        tokio::pin!(work);
        // The progress line is drawn between the steps of the work, on the same thread.
        loop {
            tokio::select! {
                outcome = &mut work => break outcome,
                () = actix_rt::time::sleep(ProgressLine::INTERVAL) => {
                    line.draw(&Glance::of(&daemon, sink, phase.get(), &faults.borrow()));
                }
            }
        }
    };
    line.finish();
    daemon.shutdown().await;
    let mut report = outcome?;
    report.faults = faults.take();
    report.interval = (interval_start, Utc::now());
    // The QA snapshot of the demo's interval, as `convoy snapshot` takes it: the daemon has
    // stopped (its outbox holds the SLA outcomes and can be opened) and the emulator
    // still answers the analytics queries.
    let snapshot = take_snapshot(&config, report.interval, &report).await;
    discard_private_store(&config);
    report.snapshot = Some(snapshot?);
    report.wall = started.elapsed();
    Ok(report)
}

/// Where the demo's snapshots go: the system's temporary folder, so a demo never writes
/// into the folder it was started from.
fn snapshot_dir() -> PathBuf {
    std::env::temp_dir().join("convoy-demo-snapshots")
}

async fn take_snapshot(
    config: &convoy::config::Config,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    report: &DemoReport,
) -> Result<DemoSnapshot, DemoError> {
    let args = crate::analytics::cli::SnapshotArgs {
        from: from.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        to: to.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        out: Some(snapshot_dir()),
        format: "json,csv,html".to_owned(),
        progress: false,
    };
    let taken = crate::analytics::cli::run_snapshot(config, &args)
        .await
        .map_err(|error| DemoError::Snapshot(error.to_string()))?;
    let outcomes = taken.snapshot.sla.iter().map(|row| row.total).sum();
    let crm_outcomes = report
        .crm
        .records_by_kind
        .get("sla.outcome")
        .map_or(0, |count| *count as u64);
    Ok(DemoSnapshot {
        folder: taken.folder,
        conversations: taken.snapshot.conversations.len(),
        outcomes,
        crm_outcomes,
        mismatches: taken.snapshot.trust.reconciliation.mismatches.len(),
    })
}

/// Plays the simulation with the faults beside it, waits for Convoy to settle, and
/// compares. `status` is the phase shown on the progress line and the fault log.
async fn play_and_check(
    emulator: &Emulator,
    sink: &CrmSink,
    daemon: &Daemon,
    options: &DemoOptions,
    scenario: Scenario,
    config: &convoy::config::Config,
    (phase, faults): (&Cell<&'static str>, &RefCell<FaultLog>),
) -> Result<DemoReport, DemoError> {
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
    simulation.sla = sla_thresholds(config);
    // Conversations of the demo's scenario last up to ~12 s: play many of them at once.
    simulation.concurrency = DEMO_CONCURRENCY;
    phase.set("simulating");
    let simulate = async {
        Simulator::new(simulation)
            .run()
            .await
            .map_err(|error| DemoError::Simulator(error.to_string()))
    };
    let inject = async {
        if options.faults {
            inject_faults(emulator, sink, daemon, options.conversations, faults).await;
        }
    };
    let (report, ()) = futures_util::future::join(simulate, inject).await;
    let report = report?;
    tracing::info!(
        completed = report.conversations_completed,
        "Simulation finished."
    );

    phase.set("settling");
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
    // SLA clocks run on observation time, and Genesys replays nothing after a drop: a
    // conversation live around the socket gap is observed late or in part (a queue wait
    // inside the gap is never seen). Its clocks are close calls: counted, not checked.
    let gap = faults.borrow().socket_gap;
    let exposed = exposed_to_gap(&truth, gap);
    let mut expected = report.expected;
    for conversation in &mut expected.conversations {
        let ids = conversation
            .messages
            .iter()
            .filter_map(|message| message.conversation_id.as_deref())
            .chain(conversation.conversation_id.as_deref());
        if ids.into_iter().any(|id| exposed.contains(id)) {
            for clock in &mut conversation.sla {
                clock.close_call = true;
            }
        }
    }
    let checked = |records: Vec<CrmRecord>| -> Vec<CrmRecord> {
        records
            .into_iter()
            .filter(|record| !exposed.contains(&record.conversation_id))
            .collect()
    };
    let sla = wait_for_outcomes(sink, &expected, &checked, options.settle).await;
    // Every participant's final lifecycle is a `participant.transition` record.
    let _ = wait_until(options.settle, || async {
        missing_transitions(&truth, &sink.records()).is_empty()
    })
    .await;
    // The outbox drains once the CRM acknowledged everything.
    let _ = wait_until(options.settle, || async { daemon.gate.pending() == 0 }).await;
    phase.set("checking");
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
    let crm_stats = match &daemon.crm {
        Some(crm) => crm.send(GetCrmStats).await.ok(),
        None => None,
    };
    let dead_letters = crm_stats
        .as_ref()
        .map_or(0, |stats| stats.records_dead_lettered);
    let reconnects = match &daemon.stream {
        Some(stream) => stream
            .send(GetStreamStatus)
            .await
            .map_or(0, |status| status.totals.reconnects),
        None => 0,
    };
    let records = sink.records();
    let crm = crm_synced(sink, &expected, &truth, dead_letters);
    let transcripts = transcripts(&daemon.views, &expected, &exposed);
    let tracked = truth
        .iter()
        .filter(|conversation| {
            daemon
                .views
                .contains_key(&ConversationId::from(text(&conversation["id"])))
        })
        .count();
    Ok(DemoReport {
        conversations: truth.len(),
        differences: differences(&daemon.views, &truth),
        unwritten: unwritten_attributes(&truth),
        admin: daemon.admin.local_addr(),
        metrics,
        expected_sla: decided_tallies(&expected),
        exposed: exposed.len(),
        sla,
        crm,
        planned: report.conversations_planned,
        completed: report.conversations_completed,
        tracked,
        participants: truth
            .iter()
            .map(|conversation| list(&conversation["participants"]).len())
            .sum(),
        transitions_missing: missing_transitions(&truth, &records),
        faults: FaultLog::default(),
        voice_calls: truth
            .iter()
            .filter(|conversation| conversation["mediaType"] == "voice")
            .count(),
        transcripts,
        reconnects,
        crm_retries: crm_stats.map_or(0, |stats| stats.retries),
        outbox_pending: daemon.gate.pending(),
        wall: Duration::ZERO,
        interval: (DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MIN_UTC),
        snapshot: None,
    })
}

/// Conversations the simulator plays at once: the demo's last ~12 s at most, so a few
/// hundred of them finish within a minute.
const DEMO_CONCURRENCY: usize = 100;

/// Compares the transcript segments Convoy holds for each simulated call with the
/// utterances its plan has the emulator transcribe. A call live around the socket gap
/// (`exposed`) may hold fewer; no call may hold more.
fn transcripts(
    views: &ConversationViews,
    expected: &ExpectedOutcomes,
    exposed: &HashSet<String>,
) -> Transcripts {
    let mut result = Transcripts::default();
    for call in expected
        .conversations
        .iter()
        .filter(|conversation| conversation.kind == ShapeKind::Voice)
    {
        let Some(id) = &call.conversation_id else {
            continue;
        };
        let held = views
            .get(&ConversationId::from(id.as_str()))
            .map_or(0, |view| {
                view.value().conversation.read().state.transcript.len()
            });
        let held = u64::try_from(held).unwrap_or(u64::MAX);
        result.segments += held;
        result.expected += call.utterances;
        if held < call.utterances && exposed.contains(id) {
            result.lost_in_gap += call.utterances - held;
        } else if held != call.utterances {
            result.differences.push(format!(
                "{id}: {held} transcript segments, {} utterances transcribed",
                call.utterances
            ));
        }
    }
    result
}

/// The conversations of the ground truth live around the socket gap `(dropped, back)`:
/// started before Convoy was back (plus [`GAP_SETTLE`]: the calls and conversations that
/// started in the gap are learned from the reconciliation re-read) and not ended
/// [`GAP_SETTLE`] before the drop (late receipts of a finished conversation).
pub fn exposed_to_gap(
    truth: &[Value],
    gap: Option<(DateTime<Utc>, DateTime<Utc>)>,
) -> HashSet<String> {
    let Some((dropped, back)) = gap else {
        return HashSet::new();
    };
    let settle = chrono::Duration::from_std(GAP_SETTLE).unwrap_or_default();
    let time = |conversation: &Value, key: &str| {
        conversation[key]
            .as_str()
            .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
            .map(|time| time.with_timezone(&Utc))
    };
    truth
        .iter()
        .filter(|conversation| {
            let started =
                time(conversation, "startTime").is_none_or(|start| start <= back + settle);
            let ended_before =
                time(conversation, "endTime").is_some_and(|end| end + settle < dropped);
            started && !ended_before
        })
        .map(|conversation| text(&conversation["id"]).to_owned())
        .collect()
}

/// Expected `sla.outcome` records by clock and outcome, close calls left out.
fn decided_tallies(expected: &ExpectedOutcomes) -> SlaTallies {
    let mut tallies = SlaTallies::new();
    for (_, _, clock) in expected.clocks() {
        if !clock.close_call {
            *tallies
                .entry(clock.clock)
                .or_default()
                .entry(clock.outcome)
                .or_default() += 1;
        }
    }
    tallies
}

/// Participants of the ground truth whose final lifecycle has no `participant.transition`
/// record (`{conversation}/participant/{participant}/{lifecycle}`) among `records`.
pub fn missing_transitions(truth: &[Value], records: &[CrmRecord]) -> Vec<String> {
    let ids: HashSet<&str> = records
        .iter()
        .filter(|record| record.kind == "participant.transition")
        .map(|record| record.id.as_str())
        .collect();
    truth
        .iter()
        .flat_map(|conversation| {
            list(&conversation["participants"])
                .iter()
                .map(move |participant| (conversation, participant))
        })
        .filter_map(|(conversation, participant)| {
            let id = format!(
                "{}/participant/{}/{}",
                text(&conversation["id"]),
                text(&participant["id"]),
                text(&participant["lifecycle"])
            );
            (!ids.contains(id.as_str())).then(|| format!("{id}: no such record at the CRM"))
        })
        .collect()
}

/// The faults of the run's middle: the CRM down for [`CRM_OUTAGE`] once a third of the
/// `planned` conversations are tracked; every notification socket dropped once two thirds
/// have finished (the last third still live, so the gap hits live traffic while most
/// conversations' SLA clocks stay checkable). A fault not injected is a problem.
async fn inject_faults(
    emulator: &Emulator,
    sink: &CrmSink,
    daemon: &Daemon,
    planned: usize,
    log: &RefCell<FaultLog>,
) {
    let views = &daemon.views;
    let want = |share: usize| (planned * share / 3).max(1);
    let tracked = wait_until(FAULT_WAIT, || async { views.len() >= want(1) }).await;
    if tracked {
        crm_outage(sink, log).await;
    } else {
        log.borrow_mut()
            .problems
            .push("the CRM outage was not injected: too few conversations tracked".into());
    }
    let finished = wait_until(FAULT_WAIT, || async {
        views
            .iter()
            .filter(|view| view.value().conversation.read().state.is_finished())
            .count()
            >= want(2)
    })
    .await;
    if finished {
        drop_sockets(emulator, daemon, log).await;
    } else {
        log.borrow_mut()
            .problems
            .push("the socket drop was not injected: too few conversations finished".into());
    }
}

/// The CRM test server answers every request with a 5xx for [`CRM_OUTAGE`].
async fn crm_outage(sink: &CrmSink, log: &RefCell<FaultLog>) {
    let before = sink.stats().faults.errors;
    let down = Instant::now();
    if let Err(error) = sink.set_faults(CrmFaults {
        error_ratio: 1.0,
        ..CrmFaults::default()
    }) {
        log.borrow_mut()
            .problems
            .push(format!("the CRM outage could not start: {error}"));
        return;
    }
    actix_rt::time::sleep(CRM_OUTAGE).await;
    // Default settings cannot be refused.
    let _ = sink.set_faults(CrmFaults::default());
    let mut log = log.borrow_mut();
    log.crm_outage = Some(down.elapsed());
    log.crm_errors = sink.stats().faults.errors - before;
}

/// The emulator drops every notification socket (no close frame); the gap lasts until
/// Convoy has all its sockets back.
async fn drop_sockets(emulator: &Emulator, daemon: &Daemon, log: &RefCell<FaultLog>) {
    let http = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let url = format!("{}/emulator/v1/sockets/drop", emulator.base_url());
    let reconnects = || {
        let stream = daemon.stream.clone();
        async move {
            let Some(stream) = stream else {
                return (0, false);
            };
            stream
                .send(GetStreamStatus)
                .await
                .map(|status| {
                    (
                        status.totals.reconnects,
                        status.links.iter().all(|link| link.connected),
                    )
                })
                .unwrap_or((0, false))
        }
    };
    let (before, _) = reconnects().await;
    let dropped_at = Utc::now();
    match http.post(&url).send().await {
        Ok(mut response) if response.status().is_success() => {
            let body: Value = response.json().await.unwrap_or_default();
            let sockets = body["sockets"].as_u64().unwrap_or(0);
            log.borrow_mut().sockets_dropped = Some(usize::try_from(sockets).unwrap_or(0));
            let back = wait_until(FAULT_WAIT, || async {
                let (now, connected) = reconnects().await;
                now > before && connected
            })
            .await;
            if back {
                log.borrow_mut().socket_gap = Some((dropped_at, Utc::now()));
            } else {
                log.borrow_mut()
                    .problems
                    .push("Convoy did not reconnect after the socket drop".into());
            }
        }
        Ok(response) => log
            .borrow_mut()
            .problems
            .push(format!("the socket drop answered {}", response.status())),
        Err(error) => log
            .borrow_mut()
            .problems
            .push(format!("the socket drop failed: {error}")),
    }
}

/// How long a fault waits for its share of the conversations to be tracked or finished.
const FAULT_WAIT: Duration = Duration::from_secs(120);

/// What the progress line shows, read between two steps of the work.
struct Glance {
    phase: &'static str,
    tracked: usize,
    finished: usize,
    synced: u64,
    pending: u64,
    faults: String,
}

impl Glance {
    fn of(daemon: &Daemon, sink: &CrmSink, phase: &'static str, faults: &FaultLog) -> Glance {
        let finished = daemon
            .views
            .iter()
            .filter(|view| view.value().conversation.read().state.is_finished())
            .count();
        let mut done = Vec::new();
        if let Some(sockets) = faults.sockets_dropped {
            done.push(format!("{sockets} sockets dropped"));
        }
        if let Some(outage) = faults.crm_outage {
            done.push(format!("CRM down {:.0} s", outage.as_secs_f64()));
        }
        Glance {
            phase,
            tracked: daemon.views.len(),
            finished,
            synced: sink.stats().accepted,
            pending: daemon.gate.pending(),
            faults: done.join(", "),
        }
    }
}

/// The live line on stderr: `\r`-redrawn, only when enabled (a terminal).
struct ProgressLine {
    enabled: bool,
    planned: usize,
    started: Instant,
    drawn: bool,
}

impl ProgressLine {
    const INTERVAL: Duration = Duration::from_millis(250);

    fn new(enabled: bool, planned: usize, started: Instant) -> ProgressLine {
        ProgressLine {
            enabled,
            planned,
            started,
            drawn: false,
        }
    }

    fn draw(&mut self, glance: &Glance) {
        if !self.enabled {
            return;
        }
        let line = progress_text(glance, self.planned, self.started.elapsed());
        let mut stderr = std::io::stderr().lock();
        // Clear to the end of the line: the previous line may have been longer.
        let _ = write!(stderr, "\r{line}\x1b[K");
        let _ = stderr.flush();
        self.drawn = true;
    }

    fn finish(&mut self) {
        if self.drawn {
            let _ = writeln!(std::io::stderr());
        }
    }
}

fn progress_text(glance: &Glance, planned: usize, elapsed: Duration) -> String {
    let mut line = format!(
        "{:>5.1} s {:<10} conversations {} of ~{planned} tracked, {} finished | CRM records {} | outbox pending {}",
        elapsed.as_secs_f64(),
        glance.phase,
        glance.tracked,
        glance.finished,
        glance.synced,
        glance.pending,
    );
    if !glance.faults.is_empty() {
        line.push_str(" | ");
        line.push_str(&glance.faults);
    }
    line
}

/// Waits until every expected `sla.outcome` record is at the CRM, as long as more keep
/// arriving within `settle`; returns the last comparison.
async fn wait_for_outcomes(
    sink: &CrmSink,
    expected: &ExpectedOutcomes,
    checked: &dyn Fn(Vec<CrmRecord>) -> Vec<CrmRecord>,
    settle: Duration,
) -> SlaComparison {
    let mut comparison = compare_sla(expected, &checked(sink.records()));
    let mut least = comparison.missing;
    let mut deadline = Instant::now() + settle;
    while comparison.missing > 0 && Instant::now() < deadline {
        actix_rt::time::sleep(Duration::from_millis(200)).await;
        comparison = compare_sla(expected, &checked(sink.records()));
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

/// Removes the folder [`private_store`] made for a daemon of `config`, once nothing will
/// open it again: a demo or a bench run must not leave its outbox behind in the
/// temporary folder (a bench's can hold hundreds of megabytes). A store the caller named
/// is left alone.
pub fn discard_private_store(config: &convoy::config::Config) {
    let Some(folder) = config.outbox.path.parent() else {
        return;
    };
    let private = folder.parent() == Some(std::env::temp_dir().as_path())
        && folder
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with(&format!("convoy-store-{}-", std::process::id())));
    if private {
        if let Err(error) = std::fs::remove_dir_all(folder) {
            tracing::debug!(folder = %folder.display(), %error, "could not remove a private store");
        }
    }
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
    fn a_private_store_is_removed_and_a_named_one_is_left_alone() {
        const GENESYS: &str = "[genesys]\nregion = \"mypurecloud.com\"\n\
            client_id = \"4c2b6f0e-2a1d-4b8e-9f3a-0c1d2e3f4a5b\"\nclient_secret = \"s\"\n\
            queues = [\"5d3c7a1f-3b2e-4c9f-8a4b-1d2e3f4a5b6c\"]\n";
        let config =
            load_from_text(&format!("{GENESYS}{}", private_store()), true).expect("config");
        let folder = config.outbox.path.parent().expect("folder").to_owned();
        std::fs::create_dir_all(&folder).expect("folder created");
        std::fs::write(&config.outbox.path, b"outbox").expect("file written");
        discard_private_store(&config);
        assert!(!folder.exists(), "{} left behind", folder.display());

        let named = std::env::temp_dir().join(format!("convoy-named-{}", std::process::id()));
        std::fs::create_dir_all(&named).expect("folder created");
        let text = format!(
            "[outbox]\npath = {:?}\n",
            named.join("outbox.redb").display().to_string()
        );
        discard_private_store(&load_from_text(&format!("{GENESYS}{text}"), true).expect("config"));
        assert!(named.exists(), "a store the caller named was removed");
        std::fs::remove_dir_all(&named).expect("cleaned up");
    }

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
            exposed: 0,
            sla: SlaComparison::default(),
            crm: CrmSynced::default(),
            planned: 1,
            completed: 1,
            tracked: 1,
            participants: 2,
            transitions_missing: Vec::new(),
            faults: FaultLog::default(),
            voice_calls: 0,
            transcripts: Transcripts::default(),
            reconnects: 0,
            crm_retries: 0,
            outbox_pending: 0,
            wall: Duration::from_millis(1500),
            interval: (DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MIN_UTC),
            snapshot: Some(DemoSnapshot {
                folder: PathBuf::from("/tmp/s"),
                conversations: 1,
                outcomes: 0,
                crm_outcomes: 0,
                mismatches: 0,
            }),
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
    fn the_table_shows_outcomes_by_clock_against_the_expectation() {
        let mut report = report();
        let mut tallies = SlaTallies::new();
        tallies
            .entry(ClockKind::Answer)
            .or_default()
            .insert(SlaOutcome::Compliant, 3);
        report.expected_sla = tallies.clone();
        tallies
            .entry(ClockKind::Read)
            .or_default()
            .insert(SlaOutcome::Breached, 1);
        report.sla.actual = tallies;
        report.sla.matched = 3;
        report.crm.records_by_kind.insert("sla.outcome".into(), 4);
        report.crm.summaries = 1;
        report.crm_retries = 7;
        let table = report.table();
        let line = |start: &str| {
            table
                .lines()
                .find(|line| line.starts_with(start))
                .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|| panic!("no line {start:?} in\n{table}"))
        };
        assert_eq!(line("SLA answer compliant"), "SLA answer compliant 3 3 ok");
        assert_eq!(line("SLA read breached"), "SLA read breached 1 0 DIFF");
        assert_eq!(line("records synced"), "records synced to the CRM 4");
        assert_eq!(line("  sla.outcome").trim(), "sla.outcome 4");
        assert_eq!(line("CRM retries"), "CRM retries 7");
        assert_eq!(line("wall time"), "wall time 1.5 s");
        assert_eq!(line("dead letters"), "dead letters 0 0 ok");
        // Every line is aligned: the numbers end in the same column.
        let header = table.lines().next().unwrap();
        assert!(header.ends_with("Convoy  expected  check"), "{header}");
    }

    #[test]
    fn faults_show_with_the_reconnects_they_must_cause() {
        let mut report = report();
        report.faults = FaultLog {
            planned: true,
            sockets_dropped: Some(2),
            socket_gap: None,
            crm_outage: Some(Duration::from_secs(5)),
            crm_errors: 12,
            problems: Vec::new(),
        };
        let table = report.table();
        assert!(table.contains("reconnects survived"), "{table}");
        assert!(table.contains("5.0 s, 12 answered 5xx"), "{table}");
        let reconnects = table
            .lines()
            .find(|line| line.starts_with("reconnects survived"))
            .unwrap();
        assert!(reconnects.ends_with("DIFF"), "{reconnects}");
        report.reconnects = 2;
        assert!(report
            .table()
            .lines()
            .any(|line| line.starts_with("reconnects survived") && line.ends_with("ok")));
    }

    #[test]
    fn a_missing_final_lifecycle_record_is_a_difference() {
        let truth = vec![serde_json::json!({
            "id": "c1",
            "participants": [
                {"id": "p1", "lifecycle": "left"},
                {"id": "p2", "lifecycle": "left"},
            ],
        })];
        let record = |id: &str| CrmRecord {
            id: id.to_owned(),
            conversation_id: "c1".to_owned(),
            kind: "participant.transition".to_owned(),
            payload: Value::Null.into(),
        };
        let records = vec![
            record("c1/participant/p1/active"),
            record("c1/participant/p1/left"),
            record("c1/participant/p2/active"),
        ];
        assert_eq!(
            missing_transitions(&truth, &records),
            vec!["c1/participant/p2/left: no such record at the CRM".to_owned()]
        );
        let mut report = report();
        report.transitions_missing = missing_transitions(&truth, &records);
        assert!(!report.converged());
    }

    #[test]
    fn the_progress_line_names_the_phase_the_counts_and_the_faults() {
        let glance = Glance {
            phase: "simulating",
            tracked: 40,
            finished: 12,
            synced: 300,
            pending: 9,
            faults: "2 sockets dropped".to_owned(),
        };
        let line = progress_text(&glance, 300, Duration::from_millis(12_300));
        assert_eq!(
            line,
            " 12.3 s simulating conversations 40 of ~300 tracked, 12 finished | CRM records 300 | outbox pending 9 | 2 sockets dropped"
        );
    }
}
