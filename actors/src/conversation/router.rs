//! ConversationRouter: the single owner of the map from conversation id to actor, and of
//! the reconciliation set.
//!
//! All actors run on one arbiter, so plain maps owned here are enough. The routing
//! decisions (cap and eviction order, generations, tombstones) are the pure
//! `ConversationRegistry`; this actor holds the addresses and does the I/O of re-reads.
//! It never waits for a conversation to *process* an input, and conversations never wait
//! on REST, so one slow conversation cannot stall the stream.
//!
//! Decisions:
//! - **One actor per conversation, always.** A conversation being retired (finished, idle,
//!   evicted) stays in the map as `Retiring` until its actor answers `StopConversation`
//!   with its final state; inputs for it meanwhile are held here and delivered to the
//!   next incarnation (or joined against the final state). No input can start a second
//!   actor in between.
//! - **The cap never turns a conversation away.** At `conversations.max_live` the least
//!   recently active conversation is retired to make room; its version is remembered (and
//!   Genesys shows it in `convoy.version`), and its next event rebuilds it.
//! - **Reconciliation is a de-duplicated set** of conversations to re-read, worked off in
//!   the background at background priority in the token bucket, a few at a time. A re-read
//!   is one more input for its conversation: it never blocks live inputs, and a
//!   conversation already in the set is not queued twice however many gaps come.
//! - **Shutdown persists what is owed** (live conversations, queued re-reads, conversations
//!   still owing writes) in the durable store, so the next start re-reads them whatever
//!   their age.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use convoy::conversation::registry::{ConversationRegistry, Generation, Recency, Route};
use convoy::conversation::{Conversation, ConversationSnapshot};
use convoy::ids::ConversationId;
use serde_json::json;

use super::actor::{
    Apply, ConversationActor, ConversationDeps, SharedConversation, StopConversation,
};
use super::messages::{
    Applied, ConversationInput, Reconcile, RereadConversation, RouteConfirmed, RouteError,
    RouteEvent,
};
use super::view::{ConversationViews, Residence};
use super::writer::ConversationRetired;
use crate::admin::{ConversationLoad, HealthBoard};
use crate::genesys::conversations::read_conversation;
use crate::genesys::rest::{GenesysRest, RestContext, RestError, RestRequest};
use crate::retry_schedule::nth_delay;
use crate::store::DurableStore;
use crate::stream::WatchTranscription;
use crate::supervision::PanicGuard;
use crate::telemetry::{names, ActorMetrics};

/// Router knobs from `conversations.*`.
#[derive(Debug, Clone)]
pub struct RouterSettings {
    pub max_live: usize,
    pub tombstone_capacity: usize,
    pub tombstone_ttl: Duration,
    /// How many conversations that are no longer live stay visible on `/conversations`.
    pub finished_views: usize,
    /// A live conversation with no input for this long is retired (its next event
    /// rebuilds it).
    pub idle_timeout: Duration,
    /// Background re-reads in flight at once.
    pub reread_concurrency: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Finished,
    Idle,
    /// Made room at the `max_live` cap.
    Capacity,
    /// Cluster worker role: the conversation's partition passed to another worker.
    PartitionLost,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Finished => "finished",
            StopReason::Idle => "idle",
            StopReason::Capacity => "capacity",
            StopReason::PartitionLost => "partition_lost",
        }
    }
}

/// A conversation actor's state is finished: retire it. Sent with `do_send`.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ReadyToStop {
    pub id: ConversationId,
    pub generation: Generation,
}

/// Cluster worker role: `partition` passed to another worker. Its live conversations are
/// retired (their final word is the new owner's: it rebuilds them from REST and consumes
/// what this worker did not acknowledge) and their owed re-reads dropped, so nothing of
/// them is applied, handed to the SLA actor or written from here any more.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "usize")]
pub struct ReleasePartition {
    pub partitions: convoy::cluster::Partitions,
    pub partition: u16,
}

/// Graceful shutdown: take no more inputs and persist every conversation something is
/// still owed for (`also_owed`: the writer's conversations with writes outstanding).
/// Answers how many conversations were persisted.
#[derive(Debug, Message)]
#[rtype(result = "usize")]
pub struct ShutdownConversations {
    pub also_owed: Vec<ConversationId>,
}

/// Test and admin access: the address of a live conversation actor.
#[derive(Debug, Message)]
#[rtype(result = "Option<Addr<ConversationActor>>")]
pub struct LookupConversation(pub ConversationId);

/// Where voice conversations ask for their transcription topics (the stream, which is
/// started after the router because it needs the router's address).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ConnectTranscription(pub Recipient<WatchTranscription>);

/// Counters for tests and benchmarks.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "RouterStats")]
pub struct GetRouterStats;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, MessageResponse)]
pub struct RouterStats {
    pub live: usize,
    pub retiring: usize,
    pub rereads_owed: usize,
    pub rereads_in_flight: usize,
    /// Actors started since boot.
    pub spawned: u64,
    /// Participant lifecycle transitions observed since boot.
    pub lifecycle_transitions: u64,
    /// Conversations retired to make room at the cap since boot.
    pub evicted_at_capacity: u64,
    /// Re-reads owed by the last run (from the durable store) not yet settled.
    pub stored_owed: usize,
    /// Inputs routed but not yet applied, plus conversations whose facts are not yet
    /// committed (zero: the conversation side is quiescent).
    pub unsettled: i64,
}

enum Slot {
    Live {
        generation: Generation,
        addr: Addr<ConversationActor>,
    },
    /// Asked to stop; inputs that arrive meanwhile wait here for the next incarnation.
    Retiring {
        generation: Generation,
        held: Vec<(ConversationInput, DateTime<Utc>, Option<Applied>)>,
    },
}

/// Conversations to re-read, each once, in the order they were owed.
#[derive(Debug, Default)]
struct RereadSet {
    order: VecDeque<ConversationId>,
    members: HashSet<ConversationId>,
}

impl RereadSet {
    fn insert(&mut self, id: ConversationId) {
        if self.members.insert(id.clone()) {
            self.order.push_back(id);
        }
    }

    fn pop(&mut self) -> Option<ConversationId> {
        let id = self.order.pop_front()?;
        self.members.remove(&id);
        Some(id)
    }

    fn len(&self) -> usize {
        self.order.len()
    }

    fn retain(&mut self, keep: impl Fn(&ConversationId) -> bool) {
        self.order.retain(|id| keep(id));
        self.members.retain(|id| keep(id));
    }
}

/// A bounded map in least-recently-touched order.
struct Bounded<V> {
    capacity: usize,
    values: HashMap<ConversationId, V>,
    order: Recency,
}

impl<V> Bounded<V> {
    fn new(capacity: usize) -> Self {
        Bounded {
            capacity,
            values: HashMap::new(),
            order: Recency::default(),
        }
    }

    /// Inserts; returns the entries pushed out by the bound.
    fn insert(&mut self, id: ConversationId, value: V, now: Duration) -> Vec<ConversationId> {
        self.order.touch(&id, now);
        self.values.insert(id, value);
        let mut evicted = Vec::new();
        while self.values.len() > self.capacity {
            let Some(oldest) = self.order.least_recent().cloned() else {
                break;
            };
            self.order.remove(&oldest);
            self.values.remove(&oldest);
            evicted.push(oldest);
        }
        evicted
    }

    fn get(&self, id: &ConversationId) -> Option<&V> {
        self.values.get(id)
    }

    fn remove(&mut self, id: &ConversationId) -> Option<V> {
        self.order.remove(id);
        self.values.remove(id)
    }
}

pub struct ConversationRouter {
    registry: ConversationRegistry,
    slots: HashMap<ConversationId, Slot>,
    deps: ConversationDeps,
    settings: RouterSettings,
    rest_context: RestContext,
    rest: Option<GenesysRest>,
    writer: Option<Recipient<ConversationRetired>>,
    store: Option<Arc<DurableStore>>,
    origin: Instant,
    shutting_down: bool,
    /// Final states of finished conversations (shared with their views): a late input is
    /// joined against it; a real change (a read receipt after wrap-up) brings the
    /// conversation back from it, without a REST re-read.
    final_states: Bounded<SharedConversation>,
    /// Versions of evicted or crashed conversations, so their next incarnation continues
    /// above them.
    version_floors: Bounded<u64>,
    /// Views of conversations no longer live, oldest first, bounded by `finished_views`.
    resting_views: Bounded<()>,
    rereads: RereadSet,
    rereads_in_flight: HashSet<ConversationId>,
    reread_failures: u32,
    reread_paused_until: Option<Instant>,
    /// Ids loaded from the durable store: settled there once their re-read succeeded.
    stored_owed: HashSet<ConversationId>,
    /// The start of the earliest gap not yet swept by discovery.
    discovery: DiscoverySweep,
    /// Conversations whose re-read was sent while the running discovery sweep was open:
    /// their state is known from after the gap, so the sweep's findings skip them.
    sent_during_discovery: HashSet<ConversationId>,
    spawned: u64,
    evicted_at_capacity: u64,
    cap_warned_at: Option<Instant>,
    evictions_since_warning: u64,
    last_eviction_at: Option<Instant>,
    /// Where `/readyz` reads the live count against the cap; `None` in tests without one.
    board: Option<Arc<HealthBoard>>,
    _panic_guard: PanicGuard,
}

impl ConversationRouter {
    pub fn new(
        deps: ConversationDeps,
        settings: RouterSettings,
        rest_context: RestContext,
        writer: Option<Recipient<ConversationRetired>>,
        store: Option<Arc<DurableStore>>,
    ) -> Self {
        ConversationRouter {
            registry: ConversationRegistry::new(
                settings.max_live,
                settings.tombstone_capacity,
                settings.tombstone_ttl,
            ),
            slots: HashMap::new(),
            final_states: Bounded::new(settings.tombstone_capacity),
            version_floors: Bounded::new(settings.tombstone_capacity.max(settings.max_live)),
            resting_views: Bounded::new(settings.finished_views),
            deps,
            settings,
            rest_context,
            rest: None,
            writer,
            store,
            origin: Instant::now(),
            shutting_down: false,
            rereads: RereadSet::default(),
            rereads_in_flight: HashSet::new(),
            reread_failures: 0,
            reread_paused_until: None,
            stored_owed: HashSet::new(),
            discovery: DiscoverySweep::default(),
            sent_during_discovery: HashSet::new(),
            spawned: 0,
            evicted_at_capacity: 0,
            cap_warned_at: None,
            evictions_since_warning: 0,
            last_eviction_at: None,
            board: None,
            _panic_guard: PanicGuard::essential("router"),
        }
    }

    /// Reports the live count against `conversations.max_live` (and the evictions the cap
    /// caused) to the health board, for `/readyz`.
    pub fn with_board(mut self, board: Option<Arc<HealthBoard>>) -> Self {
        self.board = board;
        self
    }

    pub fn views(&self) -> ConversationViews {
        Arc::clone(&self.deps.views)
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn live_count(&self) -> usize {
        self.slots
            .values()
            .filter(|slot| matches!(slot, Slot::Live { .. }))
            .count()
    }

    fn publish_gauges(&self) {
        let live = self.registry.live().len();
        metrics::gauge!(names::CONVERSATIONS_LIVE).set(live as f64);
        metrics::gauge!(names::REREADS_OWED).set(self.rereads.len() as f64);
        if let Some(board) = &self.board {
            board.set_conversations(ConversationLoad {
                live,
                max_live: self.settings.max_live,
                evicted_at_capacity: self.evicted_at_capacity,
                last_eviction_at: self.last_eviction_at,
            });
        }
    }

    /// Starts an actor for `id` from what is known of it: its final state (a finished
    /// conversation coming back), or an empty state above its version floor.
    fn spawn(
        &mut self,
        id: &ConversationId,
        generation: Generation,
        ctx: &mut Context<Self>,
    ) -> Addr<ConversationActor> {
        let known = match self.final_states.get(id) {
            Some(final_state) => final_state.snapshot(),
            None => {
                let mut fresh = Conversation::new(id.clone());
                if let Some(floor) = self.version_floors.remove(id) {
                    fresh.raise_version_to(floor);
                }
                fresh
            }
        };
        self.resting_views.remove(id);
        let addr = ConversationActor::new(
            id.clone(),
            generation,
            known,
            self.deps.clone(),
            ctx.address(),
        )
        .start();
        self.slots.insert(
            id.clone(),
            Slot::Live {
                generation,
                addr: addr.clone(),
            },
        );
        self.spawned += 1;
        self.publish_gauges();
        addr
    }

    /// Routes one input: to the live actor, held for a retiring one, dropped by a
    /// tombstone when it changes nothing, or to a new actor (evicting at the cap).
    fn deliver(
        &mut self,
        input: ConversationInput,
        observed_at: DateTime<Utc>,
        applied: Option<Applied>,
        ctx: &mut Context<Self>,
    ) -> Result<(), RouteError> {
        if self.shutting_down {
            return Err(RouteError::ShuttingDown);
        }
        let id = input.conversation_id().clone();
        if let Some(Slot::Retiring { held, .. }) = self.slots.get_mut(&id) {
            held.push((input, observed_at, applied));
            return Ok(());
        }
        let now = self.now();
        let mut route = self.registry.route(&id, now);
        if let Route::Tombstoned { .. } = route {
            if !self.changes_finished(&input) {
                tracing::debug!(conversation_id = %id, "Input for a finished conversation changes nothing; dropped.");
                metrics::counter!(names::CONVERSATION_TOMBSTONED_EVENTS).increment(1);
                if let Some(applied) = applied {
                    applied.confirm();
                }
                return Ok(());
            }
            // New information about a finished conversation: bring it back.
            self.registry.lift(&id);
            route = self.registry.route(&id, now);
        }
        let addr = match route {
            Route::Deliver(generation) => match self.slots.get(&id) {
                Some(Slot::Live {
                    generation: stored,
                    addr,
                }) if *stored == generation && addr.connected() => addr.clone(),
                _ => self.rebuild_crashed(&id, generation, &input, ctx),
            },
            Route::Spawn(generation) => self.spawn(&id, generation, ctx),
            Route::SpawnEvicting {
                generation,
                evict,
                evicted_generation,
            } => {
                self.warn_at_cap();
                self.evicted_at_capacity += 1;
                self.last_eviction_at = Some(Instant::now());
                tracing::debug!(conversation_id = %evict, max_live = self.settings.max_live, "At the live cap: retiring the least recently active conversation.");
                metrics::counter!(names::CONVERSATIONS_EVICTED, "reason" => StopReason::Capacity.as_str())
                    .increment(1);
                self.retire(evict, evicted_generation, StopReason::Capacity, ctx);
                self.spawn(&id, generation, ctx)
            }
            Route::Tombstoned { .. } => {
                if let Some(applied) = applied {
                    applied.confirm();
                }
                return Ok(());
            }
        };
        ActorMetrics::sent("conversation");
        self.deps.tallies.input_routed();
        // `do_send`: the actor applies inputs without waiting on anything and runs on this
        // arbiter, so its queue drains as fast as this router fills it; the stream's wait
        // on this router's bounded mailbox is the back-pressure.
        addr.do_send(Apply {
            input,
            observed_at,
            applied,
        });
        Ok(())
    }

    /// Says, at most every few minutes, that the cap is making conversations take turns:
    /// nothing is lost, but each comeback costs a rebuild, so the operator should know.
    fn warn_at_cap(&mut self) {
        self.evictions_since_warning += 1;
        let due = self
            .cap_warned_at
            .is_none_or(|at| at.elapsed() >= CAP_WARNING_EVERY);
        if due {
            tracing::warn!(
                max_live = self.settings.max_live,
                evicted = self.evictions_since_warning,
                "conversations.max_live reached: the least recently active conversations are retired to make room and rebuilt on their next event."
            );
            self.cap_warned_at = Some(Instant::now());
            self.evictions_since_warning = 0;
        }
    }

    /// The live actor is dead (a panic kills it silently): count it and start a new
    /// incarnation above the last version seen, rebuilt from REST.
    fn rebuild_crashed(
        &mut self,
        id: &ConversationId,
        live_generation: Generation,
        input: &ConversationInput,
        ctx: &mut Context<Self>,
    ) -> Addr<ConversationActor> {
        metrics::counter!(names::ACTOR_RESTARTS, "actor" => "conversation").increment(1);
        metrics::counter!(names::CONVERSATIONS_EVICTED, "reason" => "crashed").increment(1);
        tracing::warn!(conversation_id = %id, "Conversation actor was dead; rebuilding it from REST.");
        let last_version = self
            .deps
            .views
            .get(id)
            .map(|view| view.conversation.read().version);
        if let Some(version) = last_version {
            self.version_floors.insert(id.clone(), version, self.now());
        }
        // The registry routed to this conversation, so it is live there: a new
        // generation takes the dead one's slot.
        let generation = self.registry.replace(id).unwrap_or(live_generation);
        let addr = self.spawn(id, generation, ctx);
        if !matches!(input, ConversationInput::Snapshot(_)) {
            self.owe_reread(id.clone(), ctx);
        }
        addr
    }

    /// Whether `input` would change the final state of a finished conversation (without
    /// a final state on record, any input counts as a change).
    fn changes_finished(&self, input: &ConversationInput) -> bool {
        let Some(known) = self.final_states.get(input.conversation_id()) else {
            return true;
        };
        let mut probe = known.snapshot();
        let outcome = match input {
            ConversationInput::Snapshot(snapshot) => probe.apply_snapshot(snapshot),
            ConversationInput::Transcription(event) => probe.apply_transcription(event),
        };
        outcome.is_ok_and(|outcome| outcome.changed)
    }

    /// Asks a live actor to stop; holds its inputs until it answers with its final state.
    /// The registry must already have released the slot.
    fn retire(
        &mut self,
        id: ConversationId,
        generation: Generation,
        reason: StopReason,
        ctx: &mut Context<Self>,
    ) {
        let Some(Slot::Live { addr, .. }) = self.slots.get(&id) else {
            return;
        };
        let addr = addr.clone();
        self.slots.insert(
            id.clone(),
            Slot::Retiring {
                generation,
                held: Vec::new(),
            },
        );
        ctx.spawn(
            addr.send(StopConversation)
                .into_actor(self)
                .map(move |answer, router, ctx| {
                    router.retired(
                        id,
                        generation,
                        reason,
                        answer.ok().and_then(Result::ok),
                        ctx,
                    );
                }),
        );
    }

    /// A retirement completed (`final_state` is `None` when the actor had died).
    fn retired(
        &mut self,
        id: ConversationId,
        generation: Generation,
        reason: StopReason,
        final_state: Option<Conversation>,
        ctx: &mut Context<Self>,
    ) {
        let held = match self.slots.get(&id) {
            Some(Slot::Retiring {
                generation: stored, ..
            }) if *stored == generation => match self.slots.remove(&id) {
                Some(Slot::Retiring { held, .. }) => held,
                _ => Vec::new(),
            },
            _ => return,
        };
        let now = self.now();
        let view = self
            .deps
            .views
            .get(&id)
            .map(|view| view.conversation.clone());
        let residence = match (reason, &final_state) {
            (StopReason::Finished, Some(state)) => {
                self.registry.tombstone(&id, state.version, now);
                if let Some(shared) = view {
                    self.final_states.insert(id.clone(), shared, now);
                }
                Residence::Finished
            }
            (_, Some(state)) => {
                self.version_floors.insert(id.clone(), state.version, now);
                Residence::Evicted
            }
            (_, None) => {
                metrics::counter!(names::ACTOR_RESTARTS, "actor" => "conversation").increment(1);
                tracing::warn!(conversation_id = %id, "Conversation actor died while retiring; its next event rebuilds it.");
                if let Some(shared) = view {
                    self.version_floors
                        .insert(id.clone(), shared.read().version, now);
                }
                Residence::Crashed
            }
        };
        if reason != StopReason::Capacity {
            metrics::counter!(names::CONVERSATIONS_EVICTED, "reason" => reason.as_str())
                .increment(1);
        }
        if let Some(mut entry) = self.deps.views.get_mut(&id) {
            entry.residence = residence;
        }
        for pushed_out in self.resting_views.insert(id.clone(), (), now) {
            let resting = self
                .deps
                .views
                .get(&pushed_out)
                .is_some_and(|view| view.residence != Residence::Live);
            if resting {
                self.deps.views.remove(&pushed_out);
            }
        }
        if reason == StopReason::Finished {
            if let Some(writer) = &self.writer {
                writer.do_send(ConversationRetired(id.clone()));
            }
        }
        self.publish_gauges();
        for (input, observed_at, applied) in held {
            if let Err(error) = self.deliver(input, observed_at, applied, ctx) {
                tracing::debug!(conversation_id = %id, %error, "Held input not delivered.");
            }
        }
    }

    fn sweep_idle(&mut self, ctx: &mut Context<Self>) {
        let Some(cutoff) = self.now().checked_sub(self.settings.idle_timeout) else {
            return;
        };
        for (id, generation) in self.registry.idle_since(cutoff) {
            if self.registry.retire(&id, generation) {
                tracing::debug!(conversation_id = %id, "Idle conversation retired.");
                self.retire(id, generation, StopReason::Idle, ctx);
            }
        }
    }

    fn owe_reread(&mut self, id: ConversationId, ctx: &mut Context<Self>) {
        if !self.rereads_in_flight.contains(&id) {
            self.rereads.insert(id);
        }
        self.pump_rereads(ctx);
    }

    /// Starts background re-reads up to the concurrency budget. Each waits in the token
    /// bucket at background priority, so live writes go first.
    fn pump_rereads(&mut self, ctx: &mut Context<Self>) {
        self.publish_gauges();
        if self.shutting_down {
            return;
        }
        if let Some(until) = self.reread_paused_until {
            if Instant::now() < until {
                return;
            }
            self.reread_paused_until = None;
        }
        let Some(rest) = self.rest.clone() else {
            return;
        };
        while self.rereads_in_flight.len() < self.settings.reread_concurrency.max(1) {
            let Some(id) = self.rereads.pop() else {
                break;
            };
            self.rereads_in_flight.insert(id.clone());
            if self.discovery.is_running() {
                self.sent_during_discovery.insert(id.clone());
            }
            let rest = rest.clone();
            let fetch = async move {
                let result = read_conversation(&rest, &id)
                    .await
                    .map(|read| read.snapshot);
                (id, result)
            };
            ctx.spawn(fetch.into_actor(self).map(|(id, result), router, ctx| {
                router.rereads_in_flight.remove(&id);
                router.reread_done(id, result, ctx);
                router.pump_rereads(ctx);
            }));
        }
        self.publish_gauges();
    }

    fn reread_done(
        &mut self,
        id: ConversationId,
        result: Result<ConversationSnapshot, RestError>,
        ctx: &mut Context<Self>,
    ) {
        match result {
            Ok(snapshot) => {
                metrics::counter!(names::REREADS, "outcome" => "ok").increment(1);
                self.reread_failures = 0;
                self.settle_stored(&id);
                let observed_at = self.deps.clock.now();
                if let Err(error) = self.deliver(
                    ConversationInput::Snapshot(snapshot),
                    observed_at,
                    None,
                    ctx,
                ) {
                    tracing::debug!(conversation_id = %id, %error, "Re-read not delivered.");
                }
            }
            // Gone (or never visible to this client): nothing more can be learnt.
            Err(error @ RestError::Rejected { .. }) => {
                metrics::counter!(names::REREADS, "outcome" => "failed").increment(1);
                tracing::warn!(conversation_id = %id, %error, "Could not re-read a conversation; giving it up.");
                self.settle_stored(&id);
            }
            Err(error) => {
                metrics::counter!(names::REREADS, "outcome" => "failed").increment(1);
                self.reread_failures = self.reread_failures.saturating_add(1);
                let pause = nth_delay(
                    Duration::from_secs(1),
                    Duration::from_secs(60),
                    self.reread_failures,
                );
                tracing::warn!(conversation_id = %id, %error, pause_ms = pause.as_millis() as u64, "Re-read failed; it stays owed.");
                self.rereads.insert(id);
                self.reread_paused_until = Some(Instant::now() + pause);
                ctx.run_later(pause, |router, ctx| router.pump_rereads(ctx));
            }
        }
    }

    fn settle_stored(&mut self, id: &ConversationId) {
        if !self.stored_owed.remove(id) {
            return;
        }
        if let Some(store) = &self.store {
            if let Err(error) = store.settle_reread(id) {
                tracing::error!(%error, conversation_id = %id, "Could not settle an owed re-read in the durable store.");
            }
        }
    }

    /// Runs the discovery for the pending gap: conversations started during it (analytics)
    /// join the re-read set, with finished conversations still waiting for receipts (a
    /// receipt missed during the gap changed them, and analytics lists conversations by
    /// their start only).
    fn start_discovery(&mut self, ctx: &mut Context<Self>) {
        let Some(rest) = self.rest.clone() else {
            return;
        };
        let Some(since) = self.discovery.start() else {
            return;
        };
        let discovery = async move { discover(&rest, since, Utc::now()).await };
        ctx.spawn(discovery.into_actor(self).map(|found, router, ctx| {
            let again = router.discovery.finish();
            let sent_during = std::mem::take(&mut router.sent_during_discovery);
            let awaiting: Vec<ConversationId> = router
                .final_states
                .values
                .iter()
                .filter(|(_, state)| state.read().state.awaits_receipts())
                .map(|(id, _)| id.clone())
                .collect();
            let mut count = 0;
            let already_read = |id: &ConversationId| {
                sent_during.contains(id) || router.rereads_in_flight.contains(id)
            };
            for id in discovery_rereads(found, awaiting, already_read) {
                if matches!(router.slots.get(&id), Some(Slot::Live { .. })) {
                    continue;
                }
                count += 1;
                router.rereads.insert(id);
            }
            tracing::info!(conversations = count, "Discovery finished.");
            router.pump_rereads(ctx);
            if again {
                router.start_discovery(ctx);
            }
        }));
    }

    /// Everything something is still owed for, with the best version known.
    fn owed_now(&self, also_owed: Vec<ConversationId>) -> Vec<(ConversationId, u64)> {
        let version = |id: &ConversationId| {
            self.deps
                .views
                .get(id)
                .map_or(0, |view| view.conversation.read().version)
                .max(self.version_floors.get(id).copied().unwrap_or(0))
        };
        let mut ids: HashSet<ConversationId> = self.slots.keys().cloned().collect();
        ids.extend(self.rereads.members.iter().cloned());
        ids.extend(self.rereads_in_flight.iter().cloned());
        ids.extend(self.stored_owed.iter().cloned());
        ids.extend(also_owed);
        let mut owed: Vec<(ConversationId, u64)> = ids
            .into_iter()
            .map(|id| {
                let v = version(&id);
                (id, v)
            })
            .collect();
        owed.sort();
        owed
    }
}

impl Actor for ConversationRouter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // The stream waits on this mailbox (back-pressure); keep it roomy but bounded.
        ctx.set_mailbox_capacity(1024);
        self.rest = Some(GenesysRest::new(self.rest_context.clone()));
        let sweep_every = (self.settings.idle_timeout / 4)
            .clamp(Duration::from_millis(100), Duration::from_secs(30));
        ctx.run_interval(sweep_every, |router, ctx| router.sweep_idle(ctx));
        // Work owed by an earlier run (shutdown or crash), whatever its age.
        if let Some(store) = &self.store {
            match store.owed_rereads() {
                Ok(owed) => {
                    if !owed.is_empty() {
                        tracing::info!(conversations = owed.len(), store = %store.path().display(), "Re-reading conversations owed by the last run.");
                    }
                    let now = self.now();
                    for (id, version) in owed {
                        self.version_floors.insert(id.clone(), version, now);
                        self.stored_owed.insert(id.clone());
                        self.rereads.insert(id);
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "Could not read the re-reads owed by the last run.")
                }
            }
        }
        self.pump_rereads(ctx);
    }
}

impl Handler<RouteEvent> for ConversationRouter {
    type Result = Result<(), RouteError>;

    fn handle(&mut self, event: RouteEvent, ctx: &mut Self::Context) -> Self::Result {
        ActorMetrics::handled("router");
        let result = self.deliver(event.input, event.observed_at, None, ctx);
        if result.is_err() {
            ActorMetrics::handler_error("router");
        }
        result
    }
}

impl Handler<RouteConfirmed> for ConversationRouter {
    type Result = Result<(), RouteError>;

    fn handle(&mut self, routed: RouteConfirmed, ctx: &mut Self::Context) -> Self::Result {
        ActorMetrics::handled("router");
        let event = routed.event;
        let result = self.deliver(event.input, event.observed_at, Some(routed.applied), ctx);
        if result.is_err() {
            ActorMetrics::handler_error("router");
        }
        result
    }
}

impl Handler<RereadConversation> for ConversationRouter {
    type Result = ();

    fn handle(&mut self, reread: RereadConversation, ctx: &mut Self::Context) {
        self.owe_reread(reread.conversation_id, ctx);
    }
}

impl Handler<ReadyToStop> for ConversationRouter {
    type Result = ();

    fn handle(&mut self, ready: ReadyToStop, ctx: &mut Self::Context) {
        let is_current = matches!(
            self.slots.get(&ready.id),
            Some(Slot::Live { generation, .. }) if *generation == ready.generation
        );
        if is_current && self.registry.retire(&ready.id, ready.generation) {
            self.retire(ready.id, ready.generation, StopReason::Finished, ctx);
        }
    }
}

impl Handler<ReleasePartition> for ConversationRouter {
    type Result = usize;

    fn handle(&mut self, released: ReleasePartition, ctx: &mut Self::Context) -> usize {
        let in_partition = |id: &ConversationId| {
            released.partitions.of(id.text().as_str()).0 == released.partition
        };
        let live: Vec<(ConversationId, Generation)> = self
            .slots
            .iter()
            .filter_map(|(id, slot)| match slot {
                Slot::Live { generation, .. } if in_partition(id) => {
                    Some((id.clone(), *generation))
                }
                _ => None,
            })
            .collect();
        let mut retired = 0;
        for (id, generation) in live {
            if self.registry.retire(&id, generation) {
                self.retire(id, generation, StopReason::PartitionLost, ctx);
                retired += 1;
            }
        }
        self.rereads.retain(|id| !in_partition(id));
        tracing::info!(
            partition = released.partition,
            conversations = retired,
            "Released a lost partition's conversations."
        );
        self.publish_gauges();
        retired
    }
}

impl Handler<LookupConversation> for ConversationRouter {
    type Result = Option<Addr<ConversationActor>>;

    fn handle(&mut self, lookup: LookupConversation, _: &mut Self::Context) -> Self::Result {
        match self.slots.get(&lookup.0) {
            Some(Slot::Live { addr, .. }) => Some(addr.clone()),
            _ => None,
        }
    }
}

impl Handler<ConnectTranscription> for ConversationRouter {
    type Result = ();

    fn handle(&mut self, connect: ConnectTranscription, _: &mut Self::Context) {
        self.deps.transcription = Some(connect.0);
    }
}

impl Handler<GetRouterStats> for ConversationRouter {
    type Result = RouterStats;

    fn handle(&mut self, _: GetRouterStats, _: &mut Self::Context) -> RouterStats {
        RouterStats {
            live: self.live_count(),
            retiring: self.slots.len() - self.live_count(),
            rereads_owed: self.rereads.len(),
            rereads_in_flight: self.rereads_in_flight.len(),
            spawned: self.spawned,
            lifecycle_transitions: self
                .deps
                .tallies
                .lifecycle_transitions
                .load(std::sync::atomic::Ordering::Relaxed),
            evicted_at_capacity: self.evicted_at_capacity,
            stored_owed: self.stored_owed.len(),
            unsettled: self.deps.tallies.unsettled(),
        }
    }
}

impl Handler<ShutdownConversations> for ConversationRouter {
    type Result = usize;

    fn handle(&mut self, shutdown: ShutdownConversations, _: &mut Self::Context) -> usize {
        self.shutting_down = true;
        let owed = self.owed_now(shutdown.also_owed);
        let count = owed.len();
        match &self.store {
            Some(store) => match store.owe_rereads(&owed) {
                Ok(()) => tracing::info!(
                    conversations = count,
                    store = %store.path().display(),
                    "Persisted the conversations still owed work; the next start re-reads them."
                ),
                Err(error) => tracing::error!(
                    %error,
                    conversations = count,
                    "Could not persist the conversations still owed work; the next start only discovers the last hour."
                ),
            },
            None => tracing::info!(conversations = count, "No durable store: conversations still owed work are left to the next start's discovery."),
        }
        // Release the database file: the next start (a new process, or a new daemon in
        // this one) opens it again.
        self.store = None;
        count
    }
}

/// How often, at most, reaching the live cap is logged.
const CAP_WARNING_EVERY: Duration = Duration::from_secs(300);
/// How much earlier than the reported gap start a discovery sweep looks.
const DISCOVERY_MARGIN: chrono::Duration = chrono::Duration::minutes(10);

/// The discovery sweeps after stream gaps, of the router or the cluster's ingest: one
/// runs at a time, and gaps reported meanwhile are covered by one more, from the
/// earliest of their starts (a sweep already running covers only its own gap).
#[derive(Debug, Default)]
pub(crate) struct DiscoverySweep {
    pending: Option<DateTime<Utc>>,
    running: bool,
}

impl DiscoverySweep {
    /// A gap that started at `gap_started_at` is to be swept.
    pub(crate) fn ask(&mut self, gap_started_at: DateTime<Utc>) {
        self.pending = Some(match self.pending {
            Some(pending) => pending.min(gap_started_at),
            None => gap_started_at,
        });
    }

    /// Where the sweep to run now starts, if one is owed and none is running. The gap
    /// is dated by when Convoy *received* its last frame; a backlog on the socket means
    /// that frame was produced earlier, so the sweep looks [`DISCOVERY_MARGIN`] further
    /// back (one analytics page more, re-reads only of conversations not tracked).
    pub(crate) fn start(&mut self) -> Option<DateTime<Utc>> {
        if self.running {
            return None;
        }
        let since = self.pending.take()?;
        self.running = true;
        Some(since - DISCOVERY_MARGIN)
    }

    pub(crate) fn is_running(&self) -> bool {
        self.running
    }

    /// The running sweep ended; whether another is owed.
    pub(crate) fn finish(&mut self) -> bool {
        self.running = false;
        self.pending.is_some()
    }
}
/// The details query serves at most 100 000 results per query (API.md §6.1): 1 000 pages.
const DISCOVERY_MAX_PAGES: u32 = 1_000;
const DISCOVERY_PAGE_SIZE: u32 = 100;

impl Handler<Reconcile> for ConversationRouter {
    type Result = ();

    fn handle(&mut self, reconcile: Reconcile, ctx: &mut Self::Context) {
        tracing::info!(reason = reconcile.reason, since = %reconcile.gap_started_at, "Reconciling after a stream gap.");
        // Every tracked conversation may have changed during the gap: re-read each, once,
        // in the background.
        let live: Vec<ConversationId> = self
            .slots
            .iter()
            .filter(|(_, slot)| matches!(slot, Slot::Live { .. }))
            .map(|(id, _)| id.clone())
            .collect();
        for id in live {
            if !self.rereads_in_flight.contains(&id) {
                self.rereads.insert(id);
            }
        }
        self.discovery.ask(reconcile.gap_started_at);
        self.start_discovery(ctx);
        self.pump_rereads(ctx);
    }
}

/// The order discovery owes its re-reads in: finished conversations still waiting for
/// receipts first, then the conversations analytics found, each once. A receipt clock is
/// timed by when Convoy sees the receipt (events carry no receipt time), so a receipt
/// missed in the gap must not queue behind every conversation of the discovery window:
/// with a few hundred of them re-read two at a time, it waited half a minute in the
/// chaos run and its clock ended `missing_receipt` although the receipt came at once.
/// A conversation `already_read` (its re-read was sent after the gap, while the sweep
/// ran, or is in flight) is left out: reading it again would learn nothing, and at a
/// restart with thousands owed it cost hundreds of requests of the budget.
fn discovery_rereads(
    found: Vec<ConversationId>,
    awaiting: Vec<ConversationId>,
    already_read: impl Fn(&ConversationId) -> bool,
) -> Vec<ConversationId> {
    let mut seen = HashSet::new();
    awaiting
        .into_iter()
        .chain(found)
        .filter(|id| !already_read(id) && seen.insert(id.clone()))
        .collect()
}

/// Conversations that started in `[since, until]`, from the analytics details query
/// (the only way to learn about conversations whose events were missed).
pub(crate) async fn discover(
    rest: &GenesysRest,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Vec<ConversationId> {
    let route = "POST /api/v2/analytics/conversations/details/query";
    let interval = format!(
        "{}/{}",
        since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        (until + chrono::Duration::seconds(1)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    let mut found = Vec::new();
    for page in 1..=DISCOVERY_MAX_PAGES {
        let body = json!({
            "interval": interval,
            "order": "asc",
            "orderBy": "conversationStart",
            "paging": { "pageSize": DISCOVERY_PAGE_SIZE, "pageNumber": page },
        });
        let request =
            RestRequest::post("/api/v2/analytics/conversations/details/query", route, body)
                .background();
        let response = match rest.call(request).await {
            Ok(response) => response,
            Err(error) => {
                tracing::warn!(%error, page, "Discovery query failed; conversations started during the gap may be missed until their next event.");
                break;
            }
        };
        let page_body: serde_json::Value = match response.json(route) {
            Ok(value) => value,
            Err(error) => {
                tracing::warn!(%error, page, "Unreadable discovery page.");
                break;
            }
        };
        let conversations = page_body
            .get("conversations")
            .and_then(serde_json::Value::as_array)
            .cloned()
            .unwrap_or_default();
        let count = conversations.len();
        found.extend(
            conversations
                .iter()
                .filter_map(|c| c.get("conversationId").and_then(serde_json::Value::as_str))
                .map(ConversationId::from),
        );
        if count < DISCOVERY_PAGE_SIZE as usize {
            break;
        }
        if page == DISCOVERY_MAX_PAGES {
            tracing::warn!(
                %interval,
                conversations = found.len(),
                "Discovery reached the details query's 100 000-result cap; conversations past it are learnt only from their next event."
            );
        }
    }
    // Paging an active interval can repeat rows (API.md §6.1): dedupe.
    found.sort();
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_discovery_sweep_at_a_time_and_gaps_meanwhile_merge_into_the_next() {
        let at = |minute: u32| {
            chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 12, 3, 10, minute, 0).unwrap()
        };
        let mut sweep = DiscoverySweep::default();
        assert_eq!(sweep.start(), None, "nothing asked");
        sweep.ask(at(30));
        assert_eq!(sweep.start(), Some(at(30) - DISCOVERY_MARGIN));
        assert!(sweep.is_running());
        sweep.ask(at(40));
        sweep.ask(at(35));
        assert_eq!(sweep.start(), None, "one at a time");
        assert!(sweep.finish(), "another is owed");
        assert_eq!(
            sweep.start(),
            Some(at(35) - DISCOVERY_MARGIN),
            "the earliest gap"
        );
        assert!(!sweep.finish());
        assert_eq!(sweep.start(), None);
    }

    fn ids(names: &[&str]) -> Vec<ConversationId> {
        names
            .iter()
            .map(|name| ConversationId::from(*name))
            .collect()
    }

    #[test]
    fn discovery_rereads_conversations_awaiting_receipts_first_and_each_once() {
        let none = |_: &ConversationId| false;
        assert_eq!(
            discovery_rereads(ids(&["a", "b", "c"]), ids(&["c", "x"]), none),
            ids(&["c", "x", "a", "b"])
        );
        assert_eq!(
            discovery_rereads(ids(&["a"]), Vec::new(), none),
            ids(&["a"])
        );
        assert_eq!(
            discovery_rereads(Vec::new(), ids(&["x"]), none),
            ids(&["x"])
        );
    }

    #[test]
    fn discovery_skips_conversations_already_re_read_during_the_sweep() {
        let read = ids(&["b", "x"]);
        assert_eq!(
            discovery_rereads(ids(&["a", "b", "c"]), ids(&["x", "y"]), |id| read
                .contains(id)),
            ids(&["y", "a", "c"])
        );
    }
}
