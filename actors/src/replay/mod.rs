//! `convoy replay FILE --out DIR [--speed max|realtime|N]`: a recorded incident (a
//! `convoy run --record` capture) replayed offline through the same actors as the daemon —
//! router, conversation actors, attribute writer, SlaActor, outbox writer, CrmBatchActor —
//! on virtual time taken from the recorded receive times.
//!
//! - **No network.** REST reads are answered from the recording ([`ReplayRest`]); writes
//!   by a deterministic fake, logged; the CRM is the crm-sink's store in process
//!   ([`InProcessSink`]). The outbox is a scratch file in DIR, deleted at the end.
//! - **Inputs.** Each frame is classified as the stream does and routed with its receive
//!   time; a recorded conversation GET (a re-read the daemon made after a gap, a missed
//!   event or a write conflict) is offered to [`ReplayRest`] and asked for again through
//!   the router's re-read path, so its snapshot enters at the time it was received. Other
//!   recorded reads (analytics discovery pages) only named conversations whose re-reads
//!   follow in the recording; they are not asked for.
//! - **Virtual time, one step at a time.** Before each line the clock moves to the line's
//!   receive time (never back); the SLA clocks are ticked at every `sla.tick` boundary
//!   where something is due up to it; after each line (and tick) the driver waits until
//!   the pipeline is quiescent — every routed input applied, its facts committed to the
//!   outbox, no re-read or attribute write outstanding — before the next. So the output
//!   does not depend on scheduling or speed: `realtime`/`N` only sleep the recorded gaps
//!   (divided by N) between lines. The CRM batcher drains the outbox as it goes and is
//!   flushed at the end: what it holds does not depend on when batches left (ids are
//!   stable, the sink keeps each once, the latest summary wins).
//! - **Output** (canonical: sorted keys, one JSON document per line, no wall-clock time):
//!   `records.jsonl` (every CRM record, by id), `sla_outcomes.jsonl` (the `sla.outcome`
//!   records among them), `summaries.jsonl` (the CRM's conversation documents, by
//!   conversation id), `conversations.jsonl` (final states, as `/conversations` shows
//!   them, by id), `writes.jsonl` (attribute writes attempted, in order) and
//!   `replay.json` (counts).
//! - **Not reproduced**: what only wall-clock time decides in the daemon — idle
//!   retirement (replayed conversations stay live until they finish or the cap retires
//!   them), back-offs, rate limiting, the stream's own reconnects (their effects, the
//!   re-reads, are replayed), and SLA deadlines after the last recorded line.

mod rest;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, Addr, Arbiter, AsyncContext};
use chrono::{DateTime, SecondsFormat, Utc};
use convoy::config::{Config, CrmAuth};
use convoy::ids::ConversationId;
use convoy::parse::{classify_bytes, Classified};
use convoy::recording::{parse_recording, Recorded, RecordingError};
use convoy::sla::SlaPolicy;
use dashmap::DashMap;
use serde_json::{json, Value};

pub use rest::{ReplayRest, WriteAttempt};

use crate::app::{router_settings, writer_settings};
use crate::clock::Clock;
use crate::conversation::messages::{ConversationInput, RereadConversation, RouteEvent};
use crate::conversation::router::GetRouterStats;
use crate::conversation::writer::GetWriteStats;
use crate::conversation::{
    start_conversations_with_clock, AttributeWriter, ConversationRouter, ConversationViews,
    ConversationsSetup, WriteStatuses,
};
use crate::crm::client::InProcessSink;
use crate::crm::{CrmBatchActor, CrmSettings, FlushAndStop, OutboxChanged};
use crate::genesys::rest::{RestContext, RestTransport, SharedBucket};
use crate::outbox_writer::{AfterCommit, OutboxGate, OutboxWriter};
use crate::sla::{NextDue, SlaActor, SlaSettings, SlaViews, StopSla, TickNow};
use crate::store::{DurableStore, StoreError};
use crate::token::TokenActor;

/// How long one step (a line, a tick) may take to become quiescent before the replay
/// fails: generous, a step is milliseconds of work.
const STEP_DEADLINE: Duration = Duration::from_secs(60);
/// How long the final CRM flush may take.
const FLUSH_DEADLINE: Duration = Duration::from_secs(120);
/// The scratch outbox, inside DIR, removed at the end.
const SCRATCH_OUTBOX: &str = ".replay-outbox.redb";

/// How fast the recording is fed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// No pause between lines.
    Max,
    /// The recorded gaps divided by this factor (`realtime` is 1).
    Times(f64),
}

impl std::str::FromStr for Speed {
    type Err = String;

    fn from_str(text: &str) -> Result<Speed, String> {
        match text {
            "max" => Ok(Speed::Max),
            "realtime" => Ok(Speed::Times(1.0)),
            number => match number.parse::<f64>() {
                Ok(factor) if factor.is_finite() && factor > 0.0 => Ok(Speed::Times(factor)),
                _ => Err(format!(
                    "--speed takes max, realtime or a factor above 0 (e.g. 50), not {text:?}"
                )),
            },
        }
    }
}

#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub recording: PathBuf,
    pub out: PathBuf,
    pub speed: Speed,
}

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read the recording {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the recording {}: {source}", path.display())]
    Recording {
        path: PathBuf,
        source: RecordingError,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("scratch outbox: {0}")]
    Store(#[from] StoreError),
    #[error("cannot start the outbox writer thread: {0}")]
    OutboxWriter(std::io::Error),
    #[error("the pipeline did not settle within {} s after {step}", STEP_DEADLINE.as_secs())]
    Stalled { step: String },
    #[error("an actor of the pipeline stopped: {0}")]
    ActorGone(#[from] actix::MailboxError),
    #[error("the CRM flush left {pending} records and {summaries} summaries undelivered")]
    NotDrained { pending: u64, summaries: u64 },
}

/// What a replay did (the content of `replay.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    pub lines: usize,
    pub frames: usize,
    pub rest_answers: usize,
    pub truncated_tail: bool,
    pub malformed_frames: u64,
    pub inputs: u64,
    pub rereads: u64,
    pub sla_ticks: u64,
    pub conversations: usize,
    pub records: usize,
    pub sla_outcomes: usize,
    pub summaries: usize,
    pub writes: usize,
    pub unanswered_reads: u64,
    pub unused_answers: usize,
    pub first_received_at: Option<DateTime<Utc>>,
    pub last_received_at: Option<DateTime<Utc>>,
}

impl ReplaySummary {
    pub fn to_json(&self) -> Value {
        let stamp = |at: Option<DateTime<Utc>>| {
            at.map(|at| at.to_rfc3339_opts(SecondsFormat::Millis, true))
        };
        json!({
            "lines": self.lines,
            "frames": self.frames,
            "restAnswers": self.rest_answers,
            "truncatedTail": self.truncated_tail,
            "malformedFrames": self.malformed_frames,
            "inputs": self.inputs,
            "rereads": self.rereads,
            "slaTicks": self.sla_ticks,
            "conversations": self.conversations,
            "records": self.records,
            "slaOutcomes": self.sla_outcomes,
            "summaries": self.summaries,
            "writes": self.writes,
            "unansweredReads": self.unanswered_reads,
            "unusedAnswers": self.unused_answers,
            "firstReceivedAt": stamp(self.first_received_at),
            "lastReceivedAt": stamp(self.last_received_at),
        })
    }
}

/// The pipeline a replay runs: the daemon's actors, wired as `app::Daemon` wires them,
/// minus the stream, the token actor, the admin server and the network.
struct Pipeline {
    clock: Clock,
    router: Addr<ConversationRouter>,
    writer: Addr<AttributeWriter>,
    sla: Addr<SlaActor>,
    crm: Addr<CrmBatchActor>,
    store: Arc<DurableStore>,
    rest: Arc<ReplayRest>,
    sink: InProcessSink,
    views: ConversationViews,
    arbiters: Vec<Arbiter>,
}

impl Pipeline {
    fn start(config: &Config, clock: Clock, scratch: &Path) -> Result<Pipeline, ReplayError> {
        // A fresh outbox every time: the same input must give the same output.
        remove_scratch(scratch);
        let store = Arc::new(DurableStore::open(scratch)?);
        let gate = Arc::new(OutboxGate::new(config.outbox.max_records, 0));
        let sink = InProcessSink::new();
        let mut crm_config = config
            .crm
            .clone()
            .unwrap_or_else(|| placeholder_crm(config));
        // In process: no credential is needed, and a batch may leave at once (what the
        // sink holds does not depend on how records were batched).
        crm_config.auth = CrmAuth::None;
        crm_config.flush_interval = Duration::ZERO;
        let crm_arbiter = Arbiter::new();
        let crm = {
            let (store, gate, sink) = (Arc::clone(&store), Arc::clone(&gate), sink.clone());
            CrmBatchActor::start_in_arbiter(&crm_arbiter.handle(), move |_| {
                CrmBatchActor::new(
                    CrmSettings {
                        config: crm_config,
                        in_process: Some(sink),
                    },
                    store,
                    gate,
                )
            })
        };
        let notify = crm.clone().recipient::<OutboxChanged>();
        let after_commit: AfterCommit = Box::new(move |report| {
            notify.do_send(OutboxChanged {
                records: report.appended,
                summaries: report.summaries.clone(),
            });
        });
        let writer_thread = OutboxWriter::start(Arc::clone(&store), gate, after_commit)
            .map_err(ReplayError::OutboxWriter)?;
        let sla_arbiter = Arbiter::new();
        let sla_settings = SlaSettings {
            policy: SlaPolicy::from_config(&config.sla),
            tick: config.sla.tick,
            keep_records: true,
            clock: clock.clone(),
        };
        let sla = {
            let store = Arc::clone(&store);
            let views: SlaViews = Arc::new(DashMap::new());
            SlaActor::start_in_arbiter(&sla_arbiter.handle(), move |_| {
                SlaActor::new(sla_settings, &store, writer_thread, views)
            })
        };
        let rest = Arc::new(ReplayRest::new(clock.clone()));
        // Never asked (the replay transport answers before a token is needed): an address
        // whose actor never runs, so nothing reaches a login server.
        let tokens = actix::Context::<TokenActor>::new().address();
        let views: ConversationViews = Arc::new(DashMap::new());
        let write_statuses: WriteStatuses = Arc::new(DashMap::new());
        let (router, writer) = start_conversations_with_clock(
            ConversationsSetup {
                rest: RestContext {
                    api_base: "replay:".to_owned(),
                    tokens,
                    bucket: Arc::new(SharedBucket::new(config.genesys.requests_per_minute)),
                    transport: RestTransport::Replay(Arc::clone(&rest)),
                },
                views: Arc::clone(&views),
                write_statuses,
                // Idle retirement is a wall-clock memory measure: off, or a replay's
                // output would depend on its speed.
                router: router_settings(config.conversations.max_live, Duration::MAX / 4),
                // Conditional writes need ETags from GETs the fake does not make; the
                // recorded GETs are replayed as re-reads instead.
                writer: writer_settings(false),
                write_back: config.genesys.write_back,
                store: None,
                handover: Some(sla.clone().recipient()),
                census: None,
                // No admin server and no /readyz in a replay.
                board: None,
            },
            clock.clone(),
        );
        Ok(Pipeline {
            clock,
            router,
            writer,
            sla,
            crm,
            store,
            rest,
            sink,
            views,
            arbiters: vec![crm_arbiter, sla_arbiter],
        })
    }

    /// Whether nothing is left to do: every routed input applied and its facts
    /// committed, no conversation retiring, no re-read or attribute write outstanding.
    async fn idle(&self) -> Result<bool, ReplayError> {
        let router = self.router.send(GetRouterStats).await?;
        if router.unsettled != 0
            || router.retiring != 0
            || router.rereads_owed != 0
            || router.rereads_in_flight != 0
        {
            return Ok(false);
        }
        let writes = self.writer.send(GetWriteStats).await?;
        Ok(writes.in_flight == 0 && writes.owed == 0)
    }

    /// Waits until [`Self::idle`] holds twice in a row: a message an actor sent while the
    /// first answer was on its way (a retirement request) is seen by the second.
    async fn settle(&self, step: impl FnOnce() -> String) -> Result<(), ReplayError> {
        let deadline = Instant::now() + STEP_DEADLINE;
        let mut idle_in_a_row = 0;
        while idle_in_a_row < 2 {
            if self.idle().await? {
                idle_in_a_row += 1;
            } else {
                idle_in_a_row = 0;
                if Instant::now() >= deadline {
                    return Err(ReplayError::Stalled { step: step() });
                }
                actix_rt::time::sleep(Duration::from_millis(1)).await;
            }
        }
        Ok(())
    }

    /// Ticks the SLA clocks at every `tick` boundary where something is due, up to `until`.
    async fn tick_until(
        &self,
        until: DateTime<Utc>,
        tick: Duration,
        ticks: &mut u64,
    ) -> Result<(), ReplayError> {
        let step = tick.max(Duration::from_millis(1)).as_micros().max(1) as i64;
        loop {
            let Some(due) = self.sla.send(NextDue).await? else {
                return Ok(());
            };
            let micros = due.timestamp_micros();
            // The first boundary at or after the deadline, later than now (a deadline the
            // tick did not settle must not hold the clock still).
            let mut at = micros.div_euclid(step) * step;
            if at < micros {
                at += step;
            }
            let now = self.clock.now().timestamp_micros();
            if at <= now {
                at = (now.div_euclid(step) + 1) * step;
            }
            let Some(at) = DateTime::from_timestamp_micros(at).filter(|at| *at <= until) else {
                return Ok(());
            };
            self.clock.advance_to(at);
            self.sla.send(TickNow).await?;
            *ticks += 1;
            self.settle(|| format!("the SLA tick at {at}")).await?;
        }
    }

    /// Commits what the SLA actor holds, then lets the CRM batcher deliver everything.
    async fn drain(&self) -> Result<(), ReplayError> {
        self.sla.send(StopSla).await?;
        self.crm
            .send(FlushAndStop {
                deadline: Instant::now() + FLUSH_DEADLINE,
            })
            .await?;
        let status = self.store.status()?;
        if status.pending > 0 || status.summaries_pending > 0 {
            return Err(ReplayError::NotDrained {
                pending: status.pending,
                summaries: status.summaries_pending,
            });
        }
        Ok(())
    }

    fn stop(self) {
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
        self.router
            .do_send(crate::conversation::ShutdownConversations {
                also_owed: Vec::new(),
            });
    }
}

/// A CRM configuration for a daemon configured without one: the replay's sink stands in.
fn placeholder_crm(config: &Config) -> convoy::config::CrmConfig {
    let _ = config;
    convoy::config::CrmConfig {
        endpoint: "http://127.0.0.1/replay".to_owned(),
        auth: CrmAuth::None,
        batch_size: 100,
        flush_interval: Duration::ZERO,
        max_batch_bytes: 1024 * 1024,
        max_in_flight: 8,
        request_timeout: Duration::from_secs(30),
        retry_max_delay: Duration::from_secs(60),
    }
}

fn remove_scratch(path: &Path) {
    // Absent is the usual case; anything else surfaces when the store is opened.
    let _ = std::fs::remove_file(path);
}

/// A conversation GET's conversation id (`/api/v2/conversations/{id}`, nothing after).
fn reread_of(method: &str, path: &str) -> Option<ConversationId> {
    if method != "GET" {
        return None;
    }
    let id = path.strip_prefix("/api/v2/conversations/")?;
    (!id.is_empty() && !id.contains(['/', '?'])).then(|| ConversationId::from(id))
}

/// Replays `options.recording` with `config` and writes the output to `options.out`.
/// Must run inside an actix System.
pub async fn run(config: &Config, options: &ReplayOptions) -> Result<ReplaySummary, ReplayError> {
    let text = std::fs::read(&options.recording).map_err(|source| ReplayError::Read {
        path: options.recording.clone(),
        source,
    })?;
    let recording = parse_recording(&String::from_utf8_lossy(&text)).map_err(|source| {
        ReplayError::Recording {
            path: options.recording.clone(),
            source,
        }
    })?;
    std::fs::create_dir_all(&options.out).map_err(|source| ReplayError::Write {
        path: options.out.clone(),
        source,
    })?;
    let mut summary = ReplaySummary {
        lines: recording.lines.len(),
        frames: recording.frames(),
        rest_answers: recording.rest_answers(),
        truncated_tail: recording.truncated_tail,
        first_received_at: recording.lines.first().map(|line| line.received_at),
        last_received_at: recording.lines.iter().map(|line| line.received_at).max(),
        ..ReplaySummary::default()
    };
    let start = summary.first_received_at.unwrap_or_default();
    let clock = Clock::virtual_at(start);
    let scratch = options.out.join(SCRATCH_OUTBOX);
    let pipeline = Pipeline::start(config, clock.clone(), &scratch)?;
    let outcome = feed(&pipeline, config, options.speed, &recording, &mut summary).await;
    let outcome = match outcome {
        Ok(()) => pipeline.drain().await,
        Err(error) => Err(error),
    };
    let written = outcome.and_then(|()| write_output(&pipeline, &options.out, &mut summary));
    pipeline.stop();
    remove_scratch(&scratch);
    written.map(|()| summary)
}

async fn feed(
    pipeline: &Pipeline,
    config: &Config,
    speed: Speed,
    recording: &convoy::recording::Recording,
    summary: &mut ReplaySummary,
) -> Result<(), ReplayError> {
    let mut previous: Option<DateTime<Utc>> = None;
    for line in &recording.lines {
        if let (Speed::Times(factor), Some(previous)) = (speed, previous) {
            let gap = (line.received_at - previous).to_std().unwrap_or_default();
            actix_rt::time::sleep(gap.div_f64(factor)).await;
        }
        previous = Some(line.received_at);
        pipeline
            .tick_until(line.received_at, config.sla.tick, &mut summary.sla_ticks)
            .await?;
        pipeline.clock.advance_to(line.received_at);
        let observed_at = pipeline.clock.now();
        match &line.entry {
            Recorded::Frame(frame) => match classify_bytes(frame.as_bytes()) {
                Ok(Classified::Snapshot { snapshot, .. }) => {
                    route(pipeline, ConversationInput::Snapshot(snapshot), observed_at).await?;
                    summary.inputs += 1;
                }
                Ok(Classified::Transcription(event)) => {
                    route(
                        pipeline,
                        ConversationInput::Transcription(event),
                        observed_at,
                    )
                    .await?;
                    summary.inputs += 1;
                }
                // Heartbeats, channel and system messages: the stream's business, not
                // the pipeline's.
                Ok(_) => {}
                Err(error) => {
                    summary.malformed_frames += 1;
                    tracing::warn!(line = line.line, %error, "Malformed frame skipped, as the stream skips it.");
                }
            },
            Recorded::Rest(exchange) => {
                pipeline.rest.offer(exchange.clone());
                if let Some(conversation_id) = reread_of(&exchange.method, &exchange.path) {
                    pipeline
                        .router
                        .do_send(RereadConversation { conversation_id });
                    summary.rereads += 1;
                }
            }
        }
        pipeline.settle(|| format!("line {}", line.line)).await?;
    }
    if let Some(last) = summary.last_received_at {
        pipeline
            .tick_until(last, config.sla.tick, &mut summary.sla_ticks)
            .await?;
    }
    Ok(())
}

async fn route(
    pipeline: &Pipeline,
    input: ConversationInput,
    observed_at: DateTime<Utc>,
) -> Result<(), ReplayError> {
    let id = input.conversation_id().clone();
    if let Err(error) = pipeline
        .router
        .send(RouteEvent { input, observed_at })
        .await?
    {
        // As the stream does: an event the router did not take is re-read (here: from
        // what the recording holds).
        tracing::warn!(conversation_id = %id, %error, "The router did not take an event.");
    }
    Ok(())
}

/// Writes the output files (see the module docs).
fn write_output(
    pipeline: &Pipeline,
    out: &Path,
    summary: &mut ReplaySummary,
) -> Result<(), ReplayError> {
    let mut records = pipeline.sink.records();
    records.sort_by(|a, b| a.id.cmp(&b.id));
    let records: Vec<Value> = records
        .iter()
        .map(|record| serde_json::to_value(record).unwrap_or(Value::Null))
        .collect();
    let outcomes: Vec<Value> = records
        .iter()
        .filter(|record| {
            record["id"]
                .as_str()
                .is_some_and(|id| id.contains("/sla/") && id.ends_with("/outcome"))
        })
        .cloned()
        .collect();
    let mut documents = pipeline.sink.conversations();
    documents.sort_by(|a, b| a.id.cmp(&b.id));
    // The document only: how many upserts it took depends on when batches left.
    let summaries: Vec<Value> = documents.into_iter().map(|doc| doc.document).collect();
    let mut conversations: Vec<(String, Value)> = pipeline
        .views
        .iter()
        .map(|entry| (entry.key().to_string(), entry.value().to_json(None)))
        .collect();
    conversations.sort_by(|a, b| a.0.cmp(&b.0));
    let conversations: Vec<Value> = conversations.into_iter().map(|(_, view)| view).collect();
    let writes: Vec<Value> = pipeline
        .rest
        .writes()
        .iter()
        .map(WriteAttempt::to_json)
        .collect();
    summary.records = records.len();
    summary.sla_outcomes = outcomes.len();
    summary.summaries = summaries.len();
    summary.conversations = conversations.len();
    summary.writes = writes.len();
    summary.unanswered_reads = pipeline.rest.unanswered();
    summary.unused_answers = pipeline.rest.unused();
    for (name, lines) in [
        ("records.jsonl", &records),
        ("sla_outcomes.jsonl", &outcomes),
        ("summaries.jsonl", &summaries),
        ("conversations.jsonl", &conversations),
        ("writes.jsonl", &writes),
    ] {
        write_file(&out.join(name), &json_lines(lines))?;
    }
    let mut manifest = summary.to_json().to_string();
    manifest.push('\n');
    write_file(&out.join("replay.json"), &manifest)
}

/// One JSON document per line; keys sorted (serde_json's maps are ordered by key).
fn json_lines(values: &[Value]) -> String {
    let mut text = String::new();
    for value in values {
        text.push_str(&value.to_string());
        text.push('\n');
    }
    text
}

fn write_file(path: &Path, text: &str) -> Result<(), ReplayError> {
    std::fs::write(path, text).map_err(|source| ReplayError::Write {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn speeds_read_as_documented() {
        assert_eq!("max".parse::<Speed>(), Ok(Speed::Max));
        assert_eq!("realtime".parse::<Speed>(), Ok(Speed::Times(1.0)));
        assert_eq!("50".parse::<Speed>(), Ok(Speed::Times(50.0)));
        for bad in ["0", "-2", "fast", "NaN", "inf"] {
            assert!(bad.parse::<Speed>().is_err(), "{bad}");
        }
    }

    #[test]
    fn only_a_conversation_get_is_replayed_as_a_reread() {
        assert_eq!(
            reread_of("GET", "/api/v2/conversations/c1"),
            Some(ConversationId::from("c1"))
        );
        for (method, path) in [
            ("POST", "/api/v2/conversations/c1"),
            ("GET", "/api/v2/conversations/c1/participants/p1"),
            ("GET", "/api/v2/conversations/"),
            ("POST", "/api/v2/analytics/conversations/details/query"),
        ] {
            assert_eq!(reread_of(method, path), None, "{method} {path}");
        }
    }
}
