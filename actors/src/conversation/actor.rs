//! ConversationActor: the joined state of one conversation and the effects it causes.
//!
//! Every input (stream snapshot, REST re-read) is handled as one `AtomicResponse`: join,
//! derive effects, perform the attribute writes with their conflict loop, publish the
//! view. actix would otherwise interleave the next event of this conversation in the middle
//! of the read-modify-write (actix#308), and a write could be computed from a state that
//! is no longer current. The actor never panics on Genesys data; if it dies anyway, the
//! router rebuilds it from REST on the next event.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use convoy::conversation::effects::{effects_for, reapply, DomainEvent, Effect};
use convoy::conversation::registry::Generation;
use convoy::conversation::{ApplyOutcome, Conversation};
use convoy::ids::ConversationId;
use convoy::parse::read_conversation_body;
use dashmap::DashMap;
use serde_json::json;

use super::messages::ConversationInput;
use super::router::{ConversationRouter, ConversationStopped, ReadyToStop, StopReason};
use crate::genesys::rest::{GenesysRest, RestContext, RestError, RestRequest};
use crate::retry_schedule::RetrySchedule;
use crate::supervision::PanicGuard;
use crate::telemetry::{names, ActorMetrics};

/// What every conversation actor is given at spawn; cheap to clone.
#[derive(Clone)]
pub struct ConversationDeps {
    pub rest: RestContext,
    /// What Convoy believes, per conversation, for `/conversations` (written here, read by
    /// the admin server on other threads; no guard is ever held across an await).
    pub views: Arc<DashMap<ConversationId, serde_json::Value>>,
    /// Downstream consumers of domain events (SLA, CRM); tests plug a probe in.
    pub downstream: Option<Recipient<DomainEvents>>,
    pub idle_timeout: Duration,
    /// Attempts of one attribute write through conflicts before giving up.
    pub write_attempts: u32,
    /// `genesys.if_match = "etag"`: re-read the ETag before writing when none is known.
    pub conditional_writes: bool,
    /// Raised by the router at shutdown: inputs still queued are not applied (Genesys
    /// keeps the truth; the next start reconciles), only the work in flight finishes.
    pub shutting_down: Arc<AtomicBool>,
}

/// The domain events of one applied input, in order.
///
/// Edge: conversation → downstream with `send().await` under a timeout (data path with
/// back-pressure); a timeout is counted and logged, never retried forever.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct DomainEvents {
    pub events: Vec<DomainEvent>,
    /// When Convoy observed the input that caused them: SLA clocks run on observation
    /// time, because Genesys events carry no timestamp.
    pub observed_at: DateTime<Utc>,
}

/// Apply one input. Sent by the router with `try_send` (its mailbox is bounded).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Apply {
    pub input: ConversationInput,
    pub observed_at: DateTime<Utc>,
}

/// Re-read the conversation through REST and join it (reconciliation after a gap).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Reread;

/// Stop after the inputs already queued (graceful shutdown, or the router retiring a
/// finished or idle conversation).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopConversation {
    pub reason: StopReason,
}

/// Fault injection for resilience tests: the actor panics in its handler, as a bug would.
/// Reachable only through the Rust API (no HTTP route).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct InjectPanic;

/// Bounded mailbox: the router back-pressures the stream when a conversation falls behind.
pub const MAILBOX_CAPACITY: usize = 64;

pub struct ConversationActor {
    id: ConversationId,
    generation: Generation,
    conversation: Conversation,
    /// ETag of the last re-read, when the server sends one (the emulator in strict mode;
    /// real Genesys sends none and ignores If-Match on conversations).
    etag: Option<String>,
    /// Built after a crash or for a conversation discovered by reconciliation: the first
    /// input starts with a REST re-read so no state is lost.
    rebuild_from_rest: bool,
    deps: ConversationDeps,
    router: Addr<ConversationRouter>,
    rest: Option<GenesysRest>,
    idle_timer: Option<SpawnHandle>,
    stop_reason: StopReason,
    stop_requested: bool,
    /// Attribute writes that failed transiently; retried (via a re-read) with backoff.
    /// A conversation with writes outstanding does not retire.
    deferred_writes: Vec<Effect>,
    write_retry: RetrySchedule,
    /// Counts a panic; not essential: the router rebuilds the conversation from REST.
    _panic_guard: PanicGuard,
}

impl ConversationActor {
    /// `known` is the state a previous incarnation finished with (a late receipt brings
    /// a finished conversation back); `rebuild_from_rest` starts from a REST re-read
    /// instead (crash recovery, discovery).
    pub fn new(
        id: ConversationId,
        generation: Generation,
        known: Option<Conversation>,
        rebuild_from_rest: bool,
        deps: ConversationDeps,
        router: Addr<ConversationRouter>,
    ) -> Self {
        ConversationActor {
            conversation: known.unwrap_or_else(|| Conversation::new(id.clone())),
            id,
            generation,
            etag: None,
            rebuild_from_rest,
            deps,
            router,
            rest: None,
            idle_timer: None,
            stop_reason: StopReason::Idle,
            stop_requested: false,
            deferred_writes: Vec::new(),
            write_retry: RetrySchedule::new(Duration::from_secs(1), Duration::from_secs(60)),
            _panic_guard: PanicGuard::counted("conversation"),
        }
    }

    fn arm_idle_timer(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.idle_timer.take() {
            ctx.cancel_future(handle);
        }
        // An actor with a live timer never stops on its own when its addresses drop
        // (actix#285): the idle timeout is the explicit stop for conversations that never
        // send a final snapshot.
        self.idle_timer = Some(ctx.run_later(self.deps.idle_timeout, |actor, _| {
            actor.request_stop(StopReason::Idle);
        }));
    }

    /// Shares the caller's REST client (same arbiter thread: the router's).
    pub fn with_rest(mut self, rest: GenesysRest) -> Self {
        self.rest = Some(rest);
        self
    }

    /// Asks the router to retire this actor. Stopping directly would lose inputs the
    /// router queued meanwhile (actix drops a stopping actor's mailbox); the router first
    /// removes the entry, so new inputs go elsewhere, then sends `StopConversation`,
    /// which queues behind everything already delivered here.
    fn request_stop(&mut self, reason: StopReason) {
        if self.stop_requested {
            return;
        }
        self.stop_requested = true;
        self.router.do_send(ReadyToStop {
            id: self.id.clone(),
            generation: self.generation,
            version: self.conversation.version,
            reason,
        });
    }

    fn publish_view(&self) {
        let mut view = convoy::inspect::describe_state(&self.conversation.state);
        if let serde_json::Value::Object(map) = &mut view {
            map.insert("version".to_owned(), json!(self.conversation.version));
        }
        self.deps.views.insert(self.id.clone(), view);
    }

    /// Runs one unit of work atomically. The join of an input happens at once (so
    /// `/conversations` shows it even while writes wait for the rate limit); the re-read
    /// (rebuild, reconciliation) and the writes with their conflict loop run in the
    /// atomic future, so the next input of this conversation waits for them.
    fn run_atomically(
        &mut self,
        input: Option<ConversationInput>,
        observed_at: DateTime<Utc>,
        force_reread: bool,
    ) -> AtomicResponse<Self, ()> {
        let Some(rest) = self.rest.clone() else {
            return AtomicResponse::new(Box::pin(actix::fut::ready(())));
        };
        if self.deps.shutting_down.load(Ordering::Relaxed) {
            return AtomicResponse::new(Box::pin(actix::fut::ready(())));
        }
        let mut work = Work {
            conversation: self.conversation.clone(),
            etag: self.etag.clone(),
            events: Vec::new(),
            pending: std::mem::take(&mut self.deferred_writes),
            deferred: Vec::new(),
            write_attempts: self.deps.write_attempts,
            conditional_writes: self.deps.conditional_writes,
            shutting_down: Arc::clone(&self.deps.shutting_down),
        };
        let reread = force_reread || self.rebuild_from_rest;
        self.rebuild_from_rest = false;
        if !reread {
            if let Some(input) = &input {
                work.apply_input(input);
                self.conversation = work.conversation.clone();
                self.publish_view();
            }
        }
        let future = async move {
            if reread {
                work.reread_and_join(&rest).await;
                if let Some(input) = input {
                    work.apply_input(&input);
                }
                // Writes carried over from an earlier attempt are recomputed against
                // what Genesys shows now (some may have landed after all).
                let version = work.conversation.version;
                work.pending = reapply(&work.pending, &work.conversation.state, version)
                    .into_iter()
                    .filter(Effect::is_write)
                    .collect();
            }
            work.perform_writes(&rest).await;
            work
        };
        AtomicResponse::new(Box::pin(future.into_actor(self).then(
            move |work, actor, ctx| {
                actor.conversation = work.conversation;
                actor.etag = work.etag;
                actor.publish_view();
                let events = work.events;
                let downstream = actor.deps.downstream.clone();
                if actor.deferred_writes.is_empty() {
                    actor.write_retry.reset();
                    if actor.conversation.state.is_finished() {
                        actor.request_stop(StopReason::Finished);
                    }
                } else {
                    // Try again later through a re-read, which recomputes the writes.
                    let delay = actor.write_retry.next_delay();
                    ctx.run_later(delay, |_, ctx| ctx.notify(Reread));
                }
                async move {
                    if let (Some(downstream), false) = (downstream, events.is_empty()) {
                        let sent = downstream
                            .send(DomainEvents {
                                events,
                                observed_at,
                            })
                            .timeout(Duration::from_secs(10))
                            .await;
                        if sent.is_err() {
                            metrics::counter!(names::ACTOR_SEND_TIMEOUTS, "actor" => "conversation")
                            .increment(1);
                            tracing::warn!("Downstream did not accept domain events in time.");
                        }
                    }
                }
                .into_actor(actor)
            },
        )))
    }
}

/// The state a unit of work operates on: a copy of the actor's, written back at the end.
/// Safe because the work is atomic: nothing else touches the actor meanwhile.
struct Work {
    conversation: Conversation,
    etag: Option<String>,
    events: Vec<DomainEvent>,
    pending: Vec<Effect>,
    /// Writes that could not be made now (retries exhausted, conflicts persisting): kept
    /// by the actor and retried later, never dropped silently.
    deferred: Vec<Effect>,
    write_attempts: u32,
    conditional_writes: bool,
    shutting_down: Arc<AtomicBool>,
}

impl Work {
    fn record(&mut self, outcome: &ApplyOutcome) {
        if !outcome.stale.is_empty() {
            metrics::counter!(names::CONVERSATION_STALE_INPUTS)
                .increment(outcome.stale.len() as u64);
        }
        for effect in effects_for(&self.conversation.state, outcome) {
            match effect {
                Effect::Notify(event) => self.events.push(event),
                write @ Effect::PatchAttributes { .. } => self.pending.push(write),
            }
        }
    }

    fn apply_input(&mut self, input: &ConversationInput) {
        let outcome = match input {
            ConversationInput::Snapshot(snapshot) => self.conversation.apply_snapshot(snapshot),
            ConversationInput::Transcription(event) => self.conversation.apply_transcription(event),
        };
        match outcome {
            Ok(outcome) => self.record(&outcome),
            // The router only delivers inputs of this conversation; a mismatch is a bug
            // upstream, reported rather than applied.
            Err(error) => tracing::error!(%error, "Input for another conversation ignored."),
        }
    }

    /// GET the conversation and join it like a snapshot; remembers the ETag if any.
    async fn reread_and_join(&mut self, rest: &GenesysRest) -> bool {
        let id = self.conversation.id().clone();
        let route = "GET /api/v2/conversations/{id}";
        let response = match rest
            .call(RestRequest::get(
                format!("/api/v2/conversations/{id}"),
                route,
            ))
            .await
        {
            Ok(response) => response,
            Err(error) => {
                tracing::warn!(conversation_id = %id, %error, "Could not re-read the conversation.");
                return false;
            }
        };
        let value: serde_json::Value = match response.json(route) {
            Ok(value) => value,
            Err(error) => {
                tracing::warn!(conversation_id = %id, %error, "Unreadable conversation body.");
                return false;
            }
        };
        match read_conversation_body(value, "") {
            Ok(snapshot) => {
                self.etag = response.etag;
                match self.conversation.apply_snapshot(&snapshot) {
                    Ok(outcome) => {
                        self.record(&outcome);
                        true
                    }
                    Err(error) => {
                        tracing::error!(%error, "REST returned another conversation.");
                        false
                    }
                }
            }
            Err(error) => {
                tracing::warn!(conversation_id = %id, %error, "Malformed conversation body.");
                false
            }
        }
    }

    /// Performs the pending attribute writes. On 409/412: re-read, re-join, recompute
    /// the writes against the fresh state (`reapply`), retry with backoff, bounded.
    async fn perform_writes(&mut self, rest: &GenesysRest) {
        let mut schedule = RetrySchedule::new(Duration::from_millis(50), Duration::from_secs(2));
        let mut attempt = 0;
        if self.conditional_writes && self.etag.is_none() && !self.pending.is_empty() {
            // If-Match needs a version to match: learn it (and join what it shows).
            self.reread_and_join(rest).await;
        }
        while !self.pending.is_empty() {
            attempt += 1;
            let writes = std::mem::take(&mut self.pending);
            let mut conflicted = Vec::new();
            for write in writes {
                // At shutdown only the request already under way finishes; the rest is
                // rewritten by the next start's reconciliation (Genesys keeps the truth).
                if self.shutting_down.load(Ordering::Relaxed) {
                    return;
                }
                let Effect::PatchAttributes {
                    conversation_id,
                    participant_id,
                    attributes,
                } = &write
                else {
                    continue;
                };
                let route = "PATCH /api/v2/conversations/{id}/participants/{id}/attributes";
                let mut request = RestRequest::patch(
                    format!("/api/v2/conversations/{conversation_id}/participants/{participant_id}/attributes"),
                    route,
                    json!({ "attributes": attributes }),
                );
                if let Some(etag) = &self.etag {
                    request = request.header("If-Match", etag.clone());
                }
                match rest.call(request).await {
                    Ok(_) => {}
                    Err(RestError::Conflict { .. }) => conflicted.push(write),
                    // 400/403/404: retrying the same write cannot succeed; an operator
                    // must look (permissions, a deleted conversation).
                    Err(error @ RestError::Rejected { .. }) => {
                        ActorMetrics::handler_error("conversation");
                        tracing::error!(conversation_id = %conversation_id, %error, "Genesys refused an attribute write.");
                    }
                    Err(error) => {
                        tracing::warn!(conversation_id = %conversation_id, %error, "Attribute write failed; it will be retried.");
                        self.deferred.push(write);
                    }
                }
            }
            if conflicted.is_empty() {
                return;
            }
            metrics::counter!(names::REST_CONFLICT_RETRIES).increment(conflicted.len() as u64);
            if self.shutting_down.load(Ordering::Relaxed) {
                return;
            }
            if attempt >= self.write_attempts {
                tracing::warn!(
                    conversation_id = %self.conversation.id(),
                    attempts = attempt,
                    "Attribute writes still conflicting; retrying later."
                );
                self.deferred.extend(conflicted);
                return;
            }
            actix_rt::time::sleep(schedule.next_delay()).await;
            if self.reread_and_join(rest).await {
                let version = self.conversation.version;
                // The re-read may itself have queued writes (new transitions); merge them
                // with the conflicted ones, recomputed against the fresh state.
                let mut recomputed = std::mem::take(&mut self.pending);
                recomputed.extend(conflicted);
                self.pending = reapply(&recomputed, &self.conversation.state, version)
                    .into_iter()
                    .filter(Effect::is_write)
                    .collect();
            } else {
                self.pending = conflicted;
            }
        }
    }
}

impl Actor for ConversationActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        if self.rest.is_none() {
            self.rest = Some(GenesysRest::new(self.deps.rest.clone()));
        }
        self.arm_idle_timer(ctx);
        metrics::counter!(names::CONVERSATIONS_STARTED).increment(1);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if std::thread::panicking() {
            // Dying from a panic: the router must rebuild this conversation from REST.
            self.stop_reason = StopReason::Crashed;
        }
        let final_state =
            (self.stop_reason == StopReason::Finished).then(|| self.conversation.clone());
        self.router.do_send(ConversationStopped {
            id: self.id.clone(),
            generation: self.generation,
            version: self.conversation.version,
            reason: self.stop_reason,
            final_state,
        });
    }
}

impl Handler<Apply> for ConversationActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, message: Apply, ctx: &mut Self::Context) -> Self::Result {
        ActorMetrics::handled("conversation");
        self.arm_idle_timer(ctx);
        self.run_atomically(Some(message.input), message.observed_at, false)
    }
}

impl Handler<Reread> for ConversationActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: Reread, _: &mut Self::Context) -> Self::Result {
        self.run_atomically(None, Utc::now(), true)
    }
}

impl Handler<StopConversation> for ConversationActor {
    type Result = ();

    fn handle(&mut self, stop: StopConversation, ctx: &mut Self::Context) {
        self.stop_reason = stop.reason;
        ctx.stop();
    }
}

impl Handler<InjectPanic> for ConversationActor {
    type Result = ();

    #[allow(clippy::panic)]
    fn handle(&mut self, _: InjectPanic, _: &mut Self::Context) {
        panic!("injected panic in conversation {}", self.id);
    }
}
