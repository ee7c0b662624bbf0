//! ConversationActor: the joined state of one conversation and what it causes.
//!
//! Apply first, write later: every input (stream snapshot, transcription, REST re-read) is
//! joined at once, in the handler, with no `.await`: transitions, facts, the admin view. What the new state owes Genesys (Convoy's participant attributes) is handed to the
//! [`AttributeWriter`](super::writer::AttributeWriter), which writes it when the token
//! bucket allows. So a rate-limited or failing write never holds a conversation's inputs
//! back, and nothing of a conversation waits on REST.
//!
//! Facts (what the SLA clocks and CRM records are computed from) are handed over to the
//! [`SlaActor`](crate::sla::SlaActor) and count as handed over only once it answers that
//! they are committed to the outbox: until then they stay here, in order, and are sent
//! again (merged with newer ones) after a refusal or a timeout. A retiring actor stops
//! only after its last facts are handed over.
//!
//! The actor never panics on Genesys data; if it dies anyway, the router rebuilds it from
//! REST on the next event. It has no timers: the router retires it when it finishes, sits
//! idle, or must make room at the cap.

use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use convoy::conversation::effects::{owed_writes, Transition};
use convoy::conversation::facts::facts;
use convoy::conversation::registry::Generation;
use convoy::conversation::{Conversation, Medium};
use convoy::crm::records::ConversationSummary;
use convoy::ids::ConversationId;

use super::messages::Applied;
use super::messages::ConversationInput;
use super::router::{ConversationRouter, ReadyToStop};
use super::view::{ConversationView, ConversationViews, Residence};
use super::writer::OweWrites;
use crate::sla::{Handover, HandoverRefused, HandoverStep};
use crate::stream::WatchTranscription;
use crate::supervision::PanicGuard;
use crate::telemetry::{names, ActorMetrics};

/// One conversation's state, shared by its actor (the only writer) and the admin view
/// (readers): one copy in memory. Locks are held only to apply or to serialise, never
/// across an `.await`; a poisoned lock (a panic mid-apply) still holds a joined state.
#[derive(Debug, Clone)]
pub struct SharedConversation(Arc<RwLock<Conversation>>);

impl SharedConversation {
    pub fn new(conversation: Conversation) -> Self {
        SharedConversation(Arc::new(RwLock::new(conversation)))
    }

    pub fn read(&self) -> RwLockReadGuard<'_, Conversation> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Conversation> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// A copy of the state now.
    pub fn snapshot(&self) -> Conversation {
        self.read().clone()
    }
}

/// Counts the conversation actors alive per conversation, for tests that prove there is
/// never more than one (an input racing a retirement). Decremented on drop, so an actor
/// that dies in a panic is counted out too.
#[derive(Debug, Default)]
pub struct ActorCensus {
    alive: dashmap::DashMap<ConversationId, usize>,
    most_at_once: std::sync::atomic::AtomicUsize,
}

impl ActorCensus {
    /// The most actors ever alive at once for one conversation.
    pub fn most_at_once(&self) -> usize {
        self.most_at_once.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn enter(&self, id: &ConversationId) {
        let mut alive = self.alive.entry(id.clone()).or_insert(0);
        *alive += 1;
        self.most_at_once
            .fetch_max(*alive, std::sync::atomic::Ordering::SeqCst);
    }

    fn leave(&self, id: &ConversationId) {
        if let Some(mut alive) = self.alive.get_mut(id) {
            *alive = alive.saturating_sub(1);
        }
        self.alive.remove_if(id, |_, alive| *alive == 0);
    }
}

/// Holds an actor's place in the census until the actor is dropped.
struct CensusEntry {
    census: Arc<ActorCensus>,
    id: ConversationId,
}

impl Drop for CensusEntry {
    fn drop(&mut self) {
        self.census.leave(&self.id);
    }
}

/// What every conversation actor is given at spawn; cheap to clone.
#[derive(Clone)]
pub struct ConversationDeps {
    /// What Convoy believes, per conversation, for `/conversations`.
    pub views: ConversationViews,
    /// Where facts go (the SlaActor, which commits them to the outbox); tests plug a
    /// probe in. `None`: facts are not kept.
    pub handover: Option<Recipient<Handover>>,
    /// Where attribute debts go; `None` with `genesys.write_back = "off"`.
    pub writer: Option<Recipient<OweWrites>>,
    /// Where voice calls ask for their transcription topic; `None` in tests without a stream.
    pub transcription: Option<Recipient<WatchTranscription>>,
    /// Tests only: counts actors per conversation.
    pub census: Option<Arc<ActorCensus>>,
    /// This router's own tallies (the metrics are process-wide).
    pub tallies: Arc<ConversationTallies>,
    /// Stamps inputs that do not come with their observation time (re-reads).
    pub clock: crate::clock::Clock,
}

/// Tallies of one router's conversations, readable without touching an actor
/// (`GetRouterStats`): the metrics recorder is process-wide, these are per daemon.
#[derive(Debug, Default)]
pub struct ConversationTallies {
    pub lifecycle_transitions: std::sync::atomic::AtomicU64,
    /// Inputs routed to conversation actors and not yet applied, plus conversations
    /// holding facts the SlaActor has not yet answered committed: zero when the
    /// conversation side has nothing left to do (`convoy replay` waits for that).
    unsettled: std::sync::atomic::AtomicI64,
}

impl ConversationTallies {
    /// See the field: zero when every routed input is applied and its facts committed.
    pub fn unsettled(&self) -> i64 {
        self.unsettled.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The router routed one input to an actor.
    pub(super) fn input_routed(&self) {
        self.unsettled
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    fn settle(&self, change: i64) {
        if change != 0 {
            self.unsettled
                .fetch_add(change, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// Apply one input. Sent by the router.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Apply {
    pub input: ConversationInput,
    pub observed_at: DateTime<Utc>,
    /// Answered once applied and its facts committed (the cluster's worker acks then).
    pub applied: Option<Applied>,
}

/// Stop after the inputs already queued and hand the final state back. Sent by the
/// router (retirement, eviction, shutdown) with `send`: it holds any new input for this
/// conversation until the answer, so there is never a second actor for one conversation.
#[derive(Debug, Message)]
#[rtype(result = "Result<Conversation, ()>")]
pub struct StopConversation;

/// How long one handover may wait for the SlaActor's mailbox and commit before it is
/// sent again.
const HANDOVER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Pause before sending facts again after a refusal.
const HANDOVER_RETRY_AFTER: std::time::Duration = std::time::Duration::from_millis(500);

/// Fault injection for resilience tests: the actor panics in its handler, as a bug would.
/// Reachable only through the Rust API (no HTTP route).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct InjectPanic;

pub struct ConversationActor {
    id: ConversationId,
    generation: Generation,
    shared: SharedConversation,
    deps: ConversationDeps,
    router: Addr<ConversationRouter>,
    /// The transcription topic of this (voice) conversation is followed.
    watching_transcription: bool,
    retirement_requested: bool,
    /// The last debt handed to the writer was empty (the writer holds nothing for it).
    stated_settled: bool,
    /// Facts not yet confirmed committed, oldest first.
    unhanded: Vec<HandoverStep>,
    /// The summary to hand over with them (the latest state's).
    unhanded_summary: Option<ConversationSummary>,
    /// A handover is on its way; the next one waits for its answer (keeps order).
    handing_over: bool,
    /// Inputs applied whose facts are not yet all committed: confirmed when nothing is
    /// left unsettled, dropped (never confirmed) when the facts cannot be committed.
    awaiting_commit: Vec<Applied>,
    /// The router asked this actor to stop: answer once the facts are handed over.
    stopping: Option<tokio::sync::oneshot::Sender<Conversation>>,
    _census: Option<CensusEntry>,
    /// Counts a panic; not essential: the router rebuilds the conversation from REST.
    _panic_guard: PanicGuard,
}

impl ConversationActor {
    /// `known` is the state to start from: the final state of a finished conversation a
    /// late receipt brings back, or an empty one carrying the version floor of an evicted,
    /// crashed or restarted one.
    pub fn new(
        id: ConversationId,
        generation: Generation,
        known: Conversation,
        deps: ConversationDeps,
        router: Addr<ConversationRouter>,
    ) -> Self {
        let shared = SharedConversation::new(known);
        deps.views.insert(
            id.clone(),
            ConversationView {
                conversation: shared.clone(),
                residence: Residence::Live,
            },
        );
        let census = deps.census.clone().map(|census| {
            census.enter(&id);
            CensusEntry {
                census,
                id: id.clone(),
            }
        });
        ConversationActor {
            _census: census,
            id,
            generation,
            shared,
            deps,
            router,
            watching_transcription: false,
            retirement_requested: false,
            stated_settled: false,
            unhanded: Vec::new(),
            unhanded_summary: None,
            handing_over: false,
            awaiting_commit: Vec::new(),
            stopping: None,
            _panic_guard: PanicGuard::counted("conversation"),
        }
    }

    fn apply(
        &mut self,
        input: &ConversationInput,
        observed_at: DateTime<Utc>,
        ctx: &mut Context<Self>,
    ) {
        let mut conversation = self.shared.write();
        let outcome = match input {
            ConversationInput::Snapshot(snapshot) => conversation.apply_snapshot(snapshot),
            ConversationInput::Transcription(event) => conversation.apply_transcription(event),
        };
        let outcome = match outcome {
            Ok(outcome) => outcome,
            // The router only delivers inputs of this conversation; a mismatch is a bug
            // upstream, reported rather than applied.
            Err(error) => {
                ActorMetrics::handler_error("conversation");
                tracing::error!(%error, "Input for another conversation ignored.");
                return;
            }
        };
        if !outcome.stale.is_empty() {
            metrics::counter!(names::CONVERSATION_STALE_INPUTS)
                .increment(outcome.stale.len() as u64);
        }
        if outcome.own_attributes_changed {
            metrics::counter!(names::CONVERSATION_ECHOES).increment(1);
        }
        if !outcome.changed && !outcome.own_attributes_changed {
            return;
        }
        // What Genesys shows was written at some version: never continue below it (a
        // conversation rebuilt after an eviction, a crash or a restart).
        let floor = conversation.written_version();
        conversation.raise_version_to(floor);
        let lifecycle_moves = outcome
            .transitions
            .iter()
            .filter(|t| {
                matches!(
                    t,
                    Transition::ParticipantJoined { .. }
                        | Transition::ParticipantBecameActive { .. }
                        | Transition::ParticipantLeft { .. }
                        | Transition::ParticipantFailed { .. }
                        | Transition::ParticipantAdded { .. }
                )
            })
            .count();
        if lifecycle_moves > 0 {
            metrics::counter!(names::PARTICIPANT_TRANSITIONS).increment(lifecycle_moves as u64);
            self.deps
                .tallies
                .lifecycle_transitions
                .fetch_add(lifecycle_moves as u64, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(writer) = &self.deps.writer {
            // The whole debt, every time the state moved: it replaces the last statement,
            // so only the latest state is ever written. Nothing owed, stated already:
            // most inputs (messages, receipts) change no lifecycle and cost the writer
            // nothing.
            let writes = owed_writes(&conversation.state, conversation.version);
            let settled = writes.is_empty();
            if !(settled && self.stated_settled) {
                writer.do_send(OweWrites {
                    conversation_id: self.id.clone(),
                    writes,
                });
            }
            self.stated_settled = settled;
        }
        let facts = facts(&conversation.state, &outcome);
        let finished = conversation.state.is_finished();
        let live_call = is_live_call(&conversation);
        if self.deps.handover.is_some() && (!facts.is_empty() || finished) {
            self.unhanded_summary = Some(ConversationSummary::of(
                &conversation.state,
                conversation.version,
            ));
            drop(conversation);
            self.unhanded.push(HandoverStep {
                observed_at,
                facts,
                finished,
            });
            self.hand_over(ctx);
        } else {
            drop(conversation);
        }
        self.follow_transcription(live_call);
        if finished {
            self.request_retirement();
        }
    }

    /// Sends the facts not yet handed over, unless a handover is on its way (its answer
    /// sends the rest: one at a time keeps them in order).
    fn hand_over(&mut self, ctx: &mut Context<Self>) {
        if self.handing_over || self.unhanded.is_empty() {
            return;
        }
        let (Some(recipient), Some(summary)) =
            (self.deps.handover.clone(), self.unhanded_summary.clone())
        else {
            return;
        };
        let steps: Arc<[HandoverStep]> = std::mem::take(&mut self.unhanded).into();
        let handover = Handover {
            conversation_id: self.id.clone(),
            steps: Arc::clone(&steps),
            summary,
        };
        self.handing_over = true;
        let sent = recipient.send(handover).timeout(HANDOVER_TIMEOUT);
        ctx.spawn(sent.into_actor(self).map(move |answer, actor, ctx| {
            // Unsettled now (a handover was on its way); settled at the end if nothing
            // remains to hand over.
            actor.handing_over = false;
            match answer {
                Ok(Ok(())) => {}
                // Only a shutdown closes the outbox writer or the SlaActor: the next start
                // re-reads this conversation (it is owed work, persisted by the router) and
                // derives the same facts again, under the same record ids.
                Ok(Err(HandoverRefused::WriterClosed)) | Err(MailboxError::Closed) => {
                    // Not committed: whoever waits for these inputs must not take them
                    // as done (the cluster's worker leaves them unacknowledged).
                    actor.awaiting_commit.clear();
                    tracing::info!(conversation = %actor.id, facts = steps.len(), "Facts not handed over before shutdown; the next start derives them again.");
                }
                Ok(Err(refused @ HandoverRefused::NotMirrored)) => {
                    tracing::warn!(conversation = %actor.id, error = %refused, "Handover not mirrored; handing the facts over again.");
                    actor.retry_handover(steps.to_vec(), ctx);
                    return;
                }
                Err(error) => {
                    tracing::warn!(conversation = %actor.id, %error, "Handover not answered; handing the facts over again.");
                    actor.retry_handover(steps.to_vec(), ctx);
                    return;
                }
            }
            if actor.unhanded.is_empty() {
                actor.unhanded_summary = None;
                actor.deps.tallies.settle(-1);
                for applied in actor.awaiting_commit.drain(..) {
                    applied.confirm();
                }
                actor.finish_stop(ctx);
            } else {
                actor.hand_over(ctx);
            }
        }));
    }

    /// Facts not yet answered committed (on their way or waiting).
    fn unsettled(&self) -> bool {
        self.handing_over || !self.unhanded.is_empty()
    }

    /// Puts refused facts back in front of the newer ones and tries again shortly.
    fn retry_handover(&mut self, mut steps: Vec<HandoverStep>, ctx: &mut Context<Self>) {
        steps.append(&mut self.unhanded);
        self.unhanded = steps;
        ctx.run_later(HANDOVER_RETRY_AFTER, |actor, ctx| actor.hand_over(ctx));
    }

    /// Stops now if the router asked to and every fact is handed over.
    fn finish_stop(&mut self, ctx: &mut Context<Self>) {
        if self.handing_over || !self.unhanded.is_empty() {
            return;
        }
        if let Some(answer) = self.stopping.take() {
            let _ = answer.send(self.shared.snapshot());
            ctx.stop();
        }
    }

    /// Voice calls carry their transcript on a topic of their own: follow it while the
    /// call is live.
    fn follow_transcription(&mut self, live_call: bool) {
        if live_call == self.watching_transcription {
            return;
        }
        if let Some(stream) = &self.deps.transcription {
            self.watching_transcription = live_call;
            stream.do_send(WatchTranscription {
                conversation_id: self.id.clone(),
                watch: live_call,
            });
        }
    }

    /// Asks the router to retire this actor. Stopping directly would lose inputs the
    /// router queued meanwhile (actix drops a stopping actor's mailbox); the router holds
    /// new inputs, then sends `StopConversation`, which queues behind every input
    /// already delivered here.
    fn request_retirement(&mut self) {
        if self.retirement_requested {
            return;
        }
        self.retirement_requested = true;
        self.router.do_send(ReadyToStop {
            id: self.id.clone(),
            generation: self.generation,
        });
    }
}

/// A voice leg that has not ended.
fn is_live_call(conversation: &Conversation) -> bool {
    !conversation.state.is_ended()
        && conversation.state.participants.values().any(|participant| {
            participant
                .communications
                .values()
                .any(|leg| leg.medium == Medium::Calls && !leg.lifecycle().is_ended())
        })
}

impl Actor for ConversationActor {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Self::Context) {
        metrics::counter!(names::CONVERSATIONS_STARTED).increment(1);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.follow_transcription(false);
    }
}

impl Handler<Apply> for ConversationActor {
    type Result = ();

    fn handle(&mut self, message: Apply, ctx: &mut Self::Context) {
        ActorMetrics::handled("conversation");
        let was_unsettled = self.unsettled();
        self.apply(&message.input, message.observed_at, ctx);
        if let Some(applied) = message.applied {
            if self.unsettled() {
                self.awaiting_commit.push(applied);
            } else {
                applied.confirm();
            }
        }
        // The input is applied; its facts may now wait for their commit.
        self.deps
            .tallies
            .settle(i64::from(self.unsettled()) - i64::from(was_unsettled) - 1);
    }
}

impl Handler<StopConversation> for ConversationActor {
    type Result = ResponseFuture<Result<Conversation, ()>>;

    fn handle(&mut self, _: StopConversation, ctx: &mut Self::Context) -> Self::Result {
        self.follow_transcription(false);
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.stopping = Some(answer);
        self.finish_stop(ctx);
        Box::pin(async move { answered.await.map_err(|_| ()) })
    }
}

impl Handler<InjectPanic> for ConversationActor {
    type Result = ();

    #[allow(clippy::panic)]
    fn handle(&mut self, _: InjectPanic, _: &mut Self::Context) {
        panic!("injected panic in conversation {}", self.id);
    }
}
