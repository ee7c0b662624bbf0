//! AttributeWriter: performs the participant-attribute writes Genesys is owed, for every
//! conversation, inside the one token bucket — apart from the conversations themselves.
//!
//! A conversation applies its inputs at once and hands over what its state still owes
//! ([`OweWrites`]); the schedule (`convoy::conversation::writeback`) decides what goes
//! next: round robin across conversations, one write in flight per conversation, the
//! latest state only, retried until it lands or is refused for a reason retrying cannot
//! fix. So a rate-limited write never holds a conversation's inputs back, and a burst of
//! conversations costs one PATCH per participant and state still owed when its turn
//! comes, not one per transition.
//!
//! If-Match (`genesys.if_match = "etag"`): the writer keeps each conversation's ETag (from
//! a GET or the last write's response). A 409/412 re-reads the conversation: the ETag is
//! refreshed, and the snapshot goes to the router like any input, so the conversation
//! re-states its debt against what Genesys shows now before the write goes again.
//!
//! Never drops a debt silently: a refusal is counted and logged at ERROR and shown in the
//! conversation's admin view; at shutdown, the conversations still owing writes are handed
//! back for the durable store, and the next start re-reads them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;
use convoy::conversation::effects::AttributeWrite;
use convoy::conversation::writeback::{WriteBackQueue, WriteBackStats, WriteJob, WriteOutcome};
use convoy::ids::ConversationId;
use serde_json::json;

use super::messages::{ConversationInput, RouteEvent};
use super::view::WriteStatuses;
use crate::cluster::fence::{Fence, FenceError};
use crate::genesys::conversations::read_conversation;
use crate::genesys::rest::{path_segment, GenesysRest, RestContext, RestError, RestRequest};
use crate::retry_schedule::nth_delay;
use crate::supervision::PanicGuard;
use crate::telemetry::{names, ActorMetrics};

const WRITE_ROUTE: &str = "PATCH /api/v2/conversations/{id}/participants/{id}/attributes";

/// What a conversation's state owes Genesys now (all of it; an empty list settles the
/// debt). Edge: conversation actor → writer with `do_send` (never waits: the writer's
/// work is REST, the conversation's is not); the message is small and replaces the last.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct OweWrites {
    pub conversation_id: ConversationId,
    pub writes: Vec<AttributeWrite>,
}

/// The conversation left memory for good (finished and retired): forget what only waited
/// for an echo. Edge: router → writer, `do_send`.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct ConversationRetired(pub ConversationId);

/// Shutdown: start no new write; answer with the conversations that still owe writes, for
/// the durable store. Edge: daemon shutdown → writer, `send().await` under the deadline.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Vec<ConversationId>")]
pub struct StopWrites;

/// The schedule's counters (tests, `convoy bench`).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "WriteBackStats")]
pub struct GetWriteStats;

/// Writer knobs.
#[derive(Debug, Clone)]
pub struct WriterSettings {
    /// Writes in flight at once across all conversations. They wait in the token bucket,
    /// so a few suffice to keep it busy.
    pub max_in_flight: usize,
    /// `genesys.if_match = "etag"`.
    pub conditional_writes: bool,
    /// Cluster worker role: hold the conversation's write fence before each PATCH (see
    /// `crate::cluster::fence`); a worker that lost the partition does not write. `None`
    /// in single-process mode.
    pub fence: Option<Fence>,
}

pub struct AttributeWriter {
    context: RestContext,
    rest: Option<GenesysRest>,
    /// Where re-read snapshots go (the router), like any input.
    inputs: Recipient<RouteEvent>,
    settings: WriterSettings,
    queue: WriteBackQueue,
    statuses: WriteStatuses,
    etags: HashMap<ConversationId, String>,
    in_flight: usize,
    origin: Instant,
    wake: Option<(Duration, SpawnHandle)>,
    stopped: bool,
    _panic_guard: PanicGuard,
}

impl AttributeWriter {
    pub fn new(
        context: RestContext,
        inputs: Recipient<RouteEvent>,
        settings: WriterSettings,
        statuses: WriteStatuses,
    ) -> Self {
        AttributeWriter {
            context,
            rest: None,
            inputs,
            settings,
            queue: WriteBackQueue::new(),
            statuses,
            etags: HashMap::new(),
            in_flight: 0,
            origin: Instant::now(),
            wake: None,
            stopped: false,
            _panic_guard: PanicGuard::essential("writer"),
        }
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// Starts as many jobs as the in-flight budget allows, then sleeps until the next
    /// backing-off conversation is due.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.stopped {
            return;
        }
        while self.in_flight < self.settings.max_in_flight {
            let now = self.now();
            let Some(job) = self.queue.next_job(now) else {
                break;
            };
            self.in_flight += 1;
            self.publish_status(&job.conversation_id);
            self.start_job(job, ctx);
        }
        self.publish_gauges();
        self.arm_wake(ctx);
    }

    fn arm_wake(&mut self, ctx: &mut Context<Self>) {
        let Some(at) = self.queue.next_wake() else {
            return;
        };
        if let Some((armed_at, handle)) = self.wake.take() {
            if armed_at <= at {
                self.wake = Some((armed_at, handle));
                return;
            }
            ctx.cancel_future(handle);
        }
        let delay = at.saturating_sub(self.now());
        let handle = ctx.run_later(delay, |writer, ctx| {
            writer.wake = None;
            writer.pump(ctx);
        });
        self.wake = Some((at, handle));
    }

    fn start_job(&mut self, job: WriteJob, ctx: &mut Context<Self>) {
        let Some(rest) = self.rest.clone() else {
            return;
        };
        let etag = if self.settings.conditional_writes {
            self.etags.get(&job.conversation_id).cloned()
        } else {
            None
        };
        let conditional = self.settings.conditional_writes;
        let inputs = self.inputs.clone();
        let failures = self.queue.failures(&job.conversation_id);
        let fence = self.settings.fence.clone();
        let work = async move {
            let token = match &fence {
                None => None,
                Some(fence) => match fence.acquire(job.conversation_id.text().as_str()).await {
                    Ok(token) => Some(token),
                    Err(error) => {
                        // Not ours any more: the new owner writes it (dropped here). NATS
                        // unreachable: not written now, retried with the transient backoff.
                        tracing::debug!(conversation_id = %job.conversation_id, %error, "Attribute write not fenced; not written.");
                        let outcome = match error {
                            FenceError::NotOwner { .. } | FenceError::Conflict { .. } => {
                                Attempt::HandedOff
                            }
                            FenceError::Corrupt { .. } | FenceError::Kv(_) => Attempt::Transient,
                        };
                        let etag = match outcome {
                            Attempt::HandedOff => EtagUpdate::Forget,
                            _ => EtagUpdate::Keep,
                        };
                        return (job, AttemptResult { outcome, etag });
                    }
                },
            };
            let agent = fence.as_ref().map(Fence::user_agent);
            let result = write_once(&rest, &job, etag, conditional, agent, &inputs).await;
            if let (Some(fence), Some(token), Attempt::Landed) = (&fence, &token, &result.outcome) {
                if let Err(error) = fence.advance(token, token.record.version + 1).await {
                    tracing::debug!(conversation_id = %job.conversation_id, %error, "Landed write not recorded in its fence.");
                }
            }
            (job, result)
        };
        ctx.spawn(
            work.into_actor(self)
                .map(move |(job, result), writer, ctx| {
                    writer.in_flight = writer.in_flight.saturating_sub(1);
                    let now = writer.now();
                    let outcome = match result.outcome {
                        Attempt::Landed => WriteOutcome::Landed,
                        Attempt::Conflict => WriteOutcome::Conflict {
                            // The re-read is already on its way to the conversation; a short pause
                            // lets it re-state the debt first.
                            retry_at: now
                                + nth_delay(
                                    Duration::from_millis(100),
                                    Duration::from_secs(30),
                                    failures,
                                ),
                        },
                        // `GenesysRest::call` already waited out any Retry-After (the
                        // bucket pauses every caller), so the backoff is all that is left.
                        Attempt::Transient => WriteOutcome::Transient {
                            retry_at: now
                                + nth_delay(
                                    Duration::from_secs(1),
                                    Duration::from_secs(60),
                                    failures,
                                ),
                        },
                        Attempt::Refused { reason } => WriteOutcome::Refused { reason },
                        Attempt::HandedOff => WriteOutcome::HandedOff,
                    };
                    match result.etag {
                        EtagUpdate::Keep => {}
                        EtagUpdate::Set(etag) => {
                            writer.etags.insert(job.conversation_id.clone(), etag);
                        }
                        EtagUpdate::Forget => {
                            writer.etags.remove(&job.conversation_id);
                        }
                    }
                    record_outcome(&job, &outcome);
                    writer.queue.finish(&job, outcome);
                    writer.publish_status(&job.conversation_id);
                    writer.pump(ctx);
                }),
        );
    }

    fn publish_status(&self, id: &ConversationId) {
        match self.queue.status(id) {
            Some(status) => {
                self.statuses.insert(id.clone(), status);
            }
            None => {
                self.statuses.remove(id);
            }
        }
    }

    fn publish_gauges(&self) {
        let stats = self.queue.stats();
        metrics::gauge!(names::WRITE_BACK_OWED).set(stats.owed as f64);
        metrics::gauge!(names::WRITE_BACK_CONVERSATIONS).set(stats.conversations as f64);
    }
}

fn record_outcome(job: &WriteJob, outcome: &WriteOutcome) {
    let label = match outcome {
        WriteOutcome::Landed => "landed",
        WriteOutcome::Conflict { .. } => "conflict",
        WriteOutcome::Transient { .. } => "transient",
        WriteOutcome::Refused { .. } => "refused",
        WriteOutcome::HandedOff => "handed_off",
    };
    metrics::counter!(names::WRITE_BACK_WRITES, "outcome" => label).increment(1);
    match outcome {
        WriteOutcome::Refused { reason } => {
            ActorMetrics::handler_error("writer");
            tracing::error!(
                conversation_id = %job.conversation_id,
                participant_id = %job.write.participant_id,
                %reason,
                "Genesys refused an attribute write; it will not be retried."
            );
        }
        WriteOutcome::Transient { .. } => tracing::debug!(
            conversation_id = %job.conversation_id,
            participant_id = %job.write.participant_id,
            "Attribute write failed; retrying later."
        ),
        WriteOutcome::Landed | WriteOutcome::Conflict { .. } | WriteOutcome::HandedOff => {}
    }
}

enum Attempt {
    Landed,
    Conflict,
    Transient,
    Refused {
        reason: String,
    },
    /// The write fence belongs to another worker (cluster mode).
    HandedOff,
}

enum EtagUpdate {
    Keep,
    Set(String),
    Forget,
}

struct AttemptResult {
    outcome: Attempt,
    etag: EtagUpdate,
}

/// One write: learn the ETag first when If-Match needs one, PATCH, and on a conflict
/// re-read so the conversation re-states its debt.
async fn write_once(
    rest: &GenesysRest,
    job: &WriteJob,
    mut etag: Option<String>,
    conditional: bool,
    agent: Option<&str>,
    inputs: &Recipient<RouteEvent>,
) -> AttemptResult {
    let mut update = EtagUpdate::Keep;
    if conditional && etag.is_none() {
        match reread(rest, &job.conversation_id, inputs).await {
            Ok(fresh) => {
                etag = fresh.clone();
                update = fresh.map_or(EtagUpdate::Keep, EtagUpdate::Set);
            }
            Err(outcome) => {
                return AttemptResult {
                    outcome,
                    etag: EtagUpdate::Keep,
                }
            }
        }
    }
    let id = &job.conversation_id;
    let id_text = id.text();
    let participant_id = job.write.participant_id.text();
    let segments = path_segment(&id_text, "conversation id", WRITE_ROUTE).and_then(|conv| {
        let participant = path_segment(&participant_id, "participant id", WRITE_ROUTE)?;
        Ok((conv, participant))
    });
    let (conversation_segment, participant_segment) = match segments {
        Ok(segments) => segments,
        Err(error) => {
            return AttemptResult {
                outcome: Attempt::Refused {
                    reason: error.to_string(),
                },
                etag: update,
            }
        }
    };
    let mut request = RestRequest::patch(
        format!(
            "/api/v2/conversations/{conversation_segment}/participants/{participant_segment}/attributes"
        ),
        WRITE_ROUTE,
        json!({ "attributes": job.write.attributes() }),
    );
    // Background, like re-reads: a backlog of writes (minutes of it at 300 requests per
    // minute after a burst) must not starve the re-reads that restore tracking after a
    // gap, nor they the writes. Both wait in one FIFO behind the stream's own calls.
    request = request.background();
    if let Some(etag) = &etag {
        request = request.header("If-Match", etag.clone());
    }
    if let Some(agent) = agent {
        request = request.header("User-Agent", agent);
    }
    match rest.call(request).await {
        Ok(response) => AttemptResult {
            outcome: Attempt::Landed,
            // The write changed the conversation's version: a new ETag, or none known.
            etag: response.etag.map_or(EtagUpdate::Forget, EtagUpdate::Set),
        },
        Err(RestError::Conflict { .. }) => {
            metrics::counter!(names::REST_CONFLICT_RETRIES).increment(1);
            let etag = match reread(rest, id, inputs).await {
                Ok(Some(fresh)) => EtagUpdate::Set(fresh),
                Ok(None) | Err(_) => EtagUpdate::Forget,
            };
            AttemptResult {
                outcome: Attempt::Conflict,
                etag,
            }
        }
        Err(error @ (RestError::Rejected { .. } | RestError::UnsafeId { .. })) => AttemptResult {
            outcome: Attempt::Refused {
                reason: error.to_string(),
            },
            etag: update,
        },
        Err(error) => {
            tracing::debug!(conversation_id = %id, %error, "Attribute write failed.");
            AttemptResult {
                outcome: Attempt::Transient,
                etag: update,
            }
        }
    }
}

/// GETs the conversation, forwards it to the router as an input, returns its ETag.
async fn reread(
    rest: &GenesysRest,
    id: &ConversationId,
    inputs: &Recipient<RouteEvent>,
) -> Result<Option<String>, Attempt> {
    let read = match read_conversation(rest, id).await {
        Ok(read) => read,
        Err(error @ (RestError::Rejected { .. } | RestError::UnsafeId { .. })) => {
            return Err(Attempt::Refused {
                reason: error.to_string(),
            })
        }
        // An unreadable body says nothing about the ETag: forget it, re-read next time.
        Err(RestError::Malformed { .. }) => return Ok(None),
        Err(_) => return Err(Attempt::Transient),
    };
    // `do_send`: the router never waits on the writer, so this cannot deadlock, and
    // losing the snapshot would only delay the re-statement until the next event.
    inputs.do_send(RouteEvent {
        input: ConversationInput::Snapshot(read.snapshot),
        observed_at: Utc::now(),
    });
    Ok(read.etag)
}

impl Actor for AttributeWriter {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Self::Context) {
        // awc's client is not `Send`: built here, on this actor's arbiter.
        self.rest = Some(GenesysRest::new(self.context.clone()));
        self.publish_gauges();
    }
}

impl Handler<OweWrites> for AttributeWriter {
    type Result = ();

    fn handle(&mut self, owe: OweWrites, ctx: &mut Self::Context) {
        ActorMetrics::handled("writer");
        self.queue.owe(&owe.conversation_id, owe.writes);
        self.publish_status(&owe.conversation_id);
        self.pump(ctx);
    }
}

impl Handler<ConversationRetired> for AttributeWriter {
    type Result = ();

    fn handle(&mut self, retired: ConversationRetired, _: &mut Self::Context) {
        self.queue.forget_settled(&retired.0);
        if self.queue.status(&retired.0).is_none() {
            self.etags.remove(&retired.0);
        }
        self.publish_status(&retired.0);
    }
}

impl Handler<StopWrites> for AttributeWriter {
    type Result = MessageResult<StopWrites>;

    fn handle(&mut self, _: StopWrites, _: &mut Self::Context) -> Self::Result {
        self.stopped = true;
        MessageResult(self.queue.owing_conversations())
    }
}

impl Handler<GetWriteStats> for AttributeWriter {
    type Result = MessageResult<GetWriteStats>;

    fn handle(&mut self, _: GetWriteStats, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.queue.stats())
    }
}
