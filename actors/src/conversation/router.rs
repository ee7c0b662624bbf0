//! ConversationRouter: the single owner of the map from conversation id to actor.
//!
//! All actors run on one arbiter, so a plain `HashMap` owned here is enough (anchors.md
//! §2.5). The routing decisions (cap, generations, tombstones) are the pure
//! `ConversationRegistry`; this actor holds the addresses and does the I/O of the
//! reconciliation sweep. It never waits for a conversation to *process* an event — only
//! for the event to be queued — so one slow conversation cannot stall the stream.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use convoy::conversation::registry::{ConversationRegistry, Generation, Route};
use convoy::conversation::Conversation;
use convoy::ids::ConversationId;
use dashmap::DashMap;
use serde_json::json;

use super::actor::{Apply, ConversationActor, ConversationDeps, Reread, StopConversation};
use super::messages::{ConversationInput, Reconcile, RouteError, RouteEvent};
use crate::genesys::rest::{GenesysRest, RestRequest};
use crate::telemetry::{names, ActorMetrics};

/// Router knobs from `conversations.*`.
#[derive(Debug, Clone)]
pub struct RouterSettings {
    pub max_live: usize,
    pub tombstone_capacity: usize,
    pub tombstone_ttl: Duration,
    /// How many finished conversations stay visible on `/conversations`.
    pub finished_views: usize,
}

/// Sent by a conversation actor from `stopped()`.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ConversationStopped {
    pub id: ConversationId,
    pub generation: Generation,
    pub version: u64,
    pub reason: StopReason,
    /// The joined state of a finished conversation, kept with its tombstone.
    pub final_state: Option<Conversation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Finished,
    Idle,
    Crashed,
    Shutdown,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Finished => "finished",
            StopReason::Idle => "idle",
            StopReason::Crashed => "crashed",
            StopReason::Shutdown => "shutdown",
        }
    }
}

/// A conversation actor is done (finished, or idle): retire it. Sent with `do_send`.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ReadyToStop {
    pub id: ConversationId,
    pub generation: Generation,
    pub version: u64,
    pub reason: StopReason,
}

/// Graceful shutdown: take no more events, let every conversation finish the work in
/// progress, answer when all have stopped (or the caller's timeout fires).
#[derive(Debug, Message)]
#[rtype(result = "usize")]
pub struct ShutdownConversations;

/// Test and admin access: the address of a live conversation actor.
#[derive(Debug, Message)]
#[rtype(result = "Option<Addr<ConversationActor>>")]
pub struct LookupConversation(pub ConversationId);

pub struct ConversationRouter {
    registry: ConversationRegistry,
    actors: HashMap<ConversationId, (Generation, Addr<ConversationActor>)>,
    deps: ConversationDeps,
    settings: RouterSettings,
    origin: Instant,
    shutting_down: bool,
    /// Finished conversations whose views are kept, oldest first.
    finished: VecDeque<ConversationId>,
    /// The final state of finished conversations (bounded like the tombstones, oldest
    /// first). A late input is joined against it: a duplicate changes nothing and is
    /// dropped; a real change (a read receipt after wrap-up) brings the conversation back
    /// from this state, without a REST re-read.
    final_states: HashMap<ConversationId, Conversation>,
    final_order: VecDeque<ConversationId>,
    rest: Option<GenesysRest>,
    reconciling: bool,
    /// Conversations whose actor died: the next incarnation starts from a REST re-read.
    crashed: std::collections::HashSet<ConversationId>,
    /// The start of the earliest gap not yet swept.
    pending_reconcile: Option<DateTime<Utc>>,
}

impl ConversationRouter {
    pub fn new(deps: ConversationDeps, settings: RouterSettings) -> Self {
        ConversationRouter {
            registry: ConversationRegistry::new(
                settings.max_live,
                settings.tombstone_capacity,
                settings.tombstone_ttl,
            ),
            actors: HashMap::new(),
            deps,
            settings,
            origin: Instant::now(),
            shutting_down: false,
            finished: VecDeque::new(),
            final_states: HashMap::new(),
            final_order: VecDeque::new(),
            rest: None,
            reconciling: false,
            pending_reconcile: None,
            crashed: std::collections::HashSet::new(),
        }
    }

    pub fn views(&self) -> Arc<DashMap<ConversationId, serde_json::Value>> {
        Arc::clone(&self.deps.views)
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn spawn(
        &mut self,
        id: &ConversationId,
        generation: Generation,
        rebuild: bool,
        ctx: &mut Context<Self>,
    ) -> Addr<ConversationActor> {
        // A conversation coming back after it finished starts from its final state.
        let known = self.final_states.get(id).cloned();
        let rebuild = self.crashed.remove(id) || rebuild;
        let actor = ConversationActor::new(
            id.clone(),
            generation,
            known,
            rebuild,
            self.deps.clone(),
            ctx.address(),
        );
        // One awc client (and its connection pool) for every conversation on this
        // arbiter: a client per actor opened a TCP connection per conversation.
        let actor = match &self.rest {
            Some(rest) => actor.with_rest(rest.clone()),
            None => actor,
        };
        let addr = actor.start();
        self.actors.insert(id.clone(), (generation, addr.clone()));
        metrics::gauge!(names::CONVERSATIONS_LIVE).set(self.actors.len() as f64);
        addr
    }

    /// Finds or spawns the actor for `id`. `rebuild` makes a new actor start from REST
    /// (crash recovery, discovery). Returns `None` when the event must be dropped
    /// (tombstoned) and `Err` for back-pressure.
    fn actor_for(
        &mut self,
        input: &ConversationInput,
        rebuild: bool,
        ctx: &mut Context<Self>,
    ) -> Result<Option<Addr<ConversationActor>>, RouteError> {
        let id = input.conversation_id();
        let now = self.now();
        match self.registry.route(id, now) {
            Route::Tombstoned { .. } => {
                // Reconciliation re-reads finished conversations too: a receipt missed
                // during the gap changes a finished conversation's messages.
                if !rebuild && !self.changes_finished(input) {
                    tracing::debug!(conversation_id = %id, known = self.final_states.contains_key(id), "Input for a finished conversation changes nothing; dropped.");
                    metrics::counter!(names::CONVERSATION_TOMBSTONED_EVENTS).increment(1);
                    return Ok(None);
                }
                // New information about a finished conversation: bring it back.
                self.registry.lift(id);
                match self.registry.route(id, now) {
                    Route::Spawn(generation) => Ok(Some(self.spawn(id, generation, rebuild, ctx))),
                    Route::AtCapacity => Err(RouteError::AtCapacity {
                        max_live: self.settings.max_live,
                    }),
                    Route::Deliver(_) | Route::Tombstoned { .. } => Ok(None),
                }
            }
            Route::AtCapacity => Err(RouteError::AtCapacity {
                max_live: self.settings.max_live,
            }),
            Route::Spawn(generation) => Ok(Some(self.spawn(id, generation, rebuild, ctx))),
            Route::Deliver(generation) => {
                let live = self
                    .actors
                    .get(id)
                    .filter(|(stored, addr)| *stored == generation && addr.connected())
                    .map(|(_, addr)| addr.clone());
                if let Some(addr) = live {
                    return Ok(Some(addr));
                }
                // The actor died (a panic kills it silently) or its entry is gone: count it
                // and rebuild from the source of truth under a new generation.
                metrics::counter!(names::ACTOR_RESTARTS, "actor" => "conversation").increment(1);
                metrics::counter!(names::CONVERSATIONS_EVICTED, "reason" => "crashed").increment(1);
                tracing::warn!(conversation_id = %id, "Conversation actor was dead; rebuilding it from REST.");
                match self.registry.replace(id) {
                    Some(generation) => Ok(Some(self.spawn(id, generation, true, ctx))),
                    None => Err(RouteError::Timeout(id.clone())),
                }
            }
        }
    }

    fn deliver(
        &mut self,
        input: ConversationInput,
        observed_at: DateTime<Utc>,
        rebuild: bool,
        ctx: &mut Context<Self>,
    ) -> Result<(), RouteError> {
        if self.shutting_down {
            return Err(RouteError::ShuttingDown);
        }
        let id = input.conversation_id().clone();
        let Some(addr) = self.actor_for(&input, rebuild, ctx)? else {
            return Ok(());
        };
        match addr.try_send(Apply {
            input: input.clone(),
            observed_at,
        }) {
            Ok(()) => {
                ActorMetrics::sent("conversation");
                Ok(())
            }
            // Full: this conversation is behind; the stream retries after a pause.
            Err(SendError::Full(_)) => {
                metrics::counter!(names::ACTOR_SEND_TIMEOUTS, "actor" => "conversation")
                    .increment(1);
                Err(RouteError::Timeout(id))
            }
            // Died between the liveness check and the send: rebuild and try once more.
            Err(SendError::Closed(_)) => {
                metrics::counter!(names::ACTOR_RESTARTS, "actor" => "conversation").increment(1);
                tracing::warn!(conversation_id = %id, "Conversation actor was dead; rebuilding it from REST.");
                let addr = match self.registry.replace(&id) {
                    Some(generation) => self.spawn(&id, generation, true, ctx),
                    None => return Err(RouteError::Timeout(id)),
                };
                addr.try_send(Apply { input, observed_at })
                    .map_err(|_| RouteError::Timeout(id))
            }
        }
    }

    /// Whether `input` would change the final state of a finished conversation (without
    /// a final state on record, any input counts as a change).
    fn changes_finished(&self, input: &ConversationInput) -> bool {
        let Some(known) = self.final_states.get(input.conversation_id()) else {
            return true;
        };
        let mut probe = known.clone();
        let outcome = match input {
            ConversationInput::Snapshot(snapshot) => probe.apply_snapshot(snapshot),
            ConversationInput::Transcription(event) => probe.apply_transcription(event),
        };
        outcome.is_ok_and(|outcome| outcome.changed)
    }

    fn keep_final_state(&mut self, id: ConversationId, state: Conversation) {
        if self.final_states.insert(id.clone(), state).is_none() {
            self.final_order.push_back(id);
        }
        while self.final_order.len() > self.settings.tombstone_capacity {
            if let Some(oldest) = self.final_order.pop_front() {
                self.final_states.remove(&oldest);
            }
        }
    }

    fn keep_finished_view(&mut self, id: ConversationId) {
        self.finished.push_back(id);
        while self.finished.len() > self.settings.finished_views {
            if let Some(oldest) = self.finished.pop_front() {
                if !self.actors.contains_key(&oldest) {
                    self.deps.views.remove(&oldest);
                }
            }
        }
    }
}

impl Actor for ConversationRouter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // The stream waits on this mailbox (back-pressure); keep it roomy but bounded.
        ctx.set_mailbox_capacity(1024);
        self.rest = Some(GenesysRest::new(self.deps.rest.clone()));
    }
}

impl Handler<RouteEvent> for ConversationRouter {
    type Result = Result<(), RouteError>;

    fn handle(&mut self, event: RouteEvent, ctx: &mut Self::Context) -> Self::Result {
        ActorMetrics::handled("router");
        let result = self.deliver(event.input, event.observed_at, false, ctx);
        if result.is_err() {
            ActorMetrics::handler_error("router");
        }
        result
    }
}

impl Handler<ReadyToStop> for ConversationRouter {
    type Result = ();

    fn handle(&mut self, ready: ReadyToStop, _: &mut Self::Context) {
        let Some((generation, addr)) = self.actors.get(&ready.id).cloned() else {
            return;
        };
        if generation != ready.generation {
            return;
        }
        // Remove first: inputs from now on go to a new incarnation (or the tombstone);
        // the stop queues behind every input already delivered to this one.
        let now = self.now();
        let removed = match ready.reason {
            StopReason::Finished => {
                self.registry
                    .finished(&ready.id, generation, ready.version, now)
            }
            StopReason::Idle | StopReason::Crashed | StopReason::Shutdown => {
                self.registry.stopped(&ready.id, generation)
            }
        };
        if removed {
            self.actors.remove(&ready.id);
            metrics::counter!(names::CONVERSATIONS_EVICTED, "reason" => ready.reason.as_str())
                .increment(1);
            metrics::gauge!(names::CONVERSATIONS_LIVE).set(self.actors.len() as f64);
            if ready.reason == StopReason::Idle {
                // Nothing more will be learnt; the view is rebuilt from REST if the
                // conversation shows up again.
                self.deps.views.remove(&ready.id);
            }
        }
        addr.do_send(StopConversation {
            reason: ready.reason,
        });
    }
}

impl Handler<ConversationStopped> for ConversationRouter {
    type Result = ();

    fn handle(&mut self, stopped: ConversationStopped, _: &mut Self::Context) {
        if let (StopReason::Finished, Some(state)) = (stopped.reason, stopped.final_state) {
            self.keep_final_state(stopped.id.clone(), state);
            self.keep_finished_view(stopped.id.clone());
        }
        // A stop the router did not ask for (shutdown, or anything else): free the slot
        // if this incarnation still holds it.
        let is_current = self
            .actors
            .get(&stopped.id)
            .is_some_and(|(generation, _)| *generation == stopped.generation);
        if is_current && self.registry.stopped(&stopped.id, stopped.generation) {
            self.actors.remove(&stopped.id);
            metrics::gauge!(names::CONVERSATIONS_LIVE).set(self.actors.len() as f64);
            if stopped.reason == StopReason::Crashed {
                metrics::counter!(names::ACTOR_RESTARTS, "actor" => "conversation").increment(1);
                metrics::counter!(names::CONVERSATIONS_EVICTED, "reason" => "crashed").increment(1);
                tracing::warn!(conversation_id = %stopped.id, "Conversation actor died; the next event rebuilds it from REST.");
                self.crashed.insert(stopped.id);
            }
        }
    }
}

impl Handler<LookupConversation> for ConversationRouter {
    type Result = Option<Addr<ConversationActor>>;

    fn handle(&mut self, lookup: LookupConversation, _: &mut Self::Context) -> Self::Result {
        self.actors.get(&lookup.0).map(|(_, addr)| addr.clone())
    }
}

impl Handler<ShutdownConversations> for ConversationRouter {
    type Result = ResponseFuture<usize>;

    fn handle(&mut self, _: ShutdownConversations, _: &mut Self::Context) -> Self::Result {
        self.shutting_down = true;
        self.deps
            .shutting_down
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let addresses: Vec<_> = self.actors.values().map(|(_, addr)| addr.clone()).collect();
        let count = addresses.len();
        Box::pin(async move {
            // `send` queues behind the input in progress, so each actor finishes its
            // atomic read-modify-write before it stops.
            let stops = addresses.into_iter().map(|addr| {
                addr.send(StopConversation {
                    reason: StopReason::Shutdown,
                })
            });
            futures_util::future::join_all(stops).await;
            count
        })
    }
}

/// How much earlier than the reported gap start a discovery sweep looks.
const DISCOVERY_MARGIN: chrono::Duration = chrono::Duration::minutes(10);
/// Pages of the analytics details query per discovery sweep, at most.
const DISCOVERY_MAX_PAGES: u32 = 100;
const DISCOVERY_PAGE_SIZE: u32 = 100;

impl Handler<Reconcile> for ConversationRouter {
    type Result = ();

    fn handle(&mut self, reconcile: Reconcile, ctx: &mut Self::Context) {
        metrics::counter!(names::STREAM_RECONCILIATIONS, "reason" => reconcile.reason).increment(1);
        tracing::info!(reason = reconcile.reason, since = %reconcile.gap_started_at, "Reconciling after a stream gap.");
        // Every tracked conversation re-reads itself, behind its live events. `do_send`:
        // a rare control message that must not be lost to a full mailbox.
        for (_, addr) in self.actors.values() {
            addr.do_send(Reread);
        }
        // A sweep already running covers only its own gap: widen the next one to cover
        // this gap too, and run it when the current one ends.
        let since = match self.pending_reconcile {
            Some(pending) => pending.min(reconcile.gap_started_at),
            None => reconcile.gap_started_at,
        };
        self.pending_reconcile = Some(since);
        if !self.reconciling {
            self.start_discovery(ctx);
        }
    }
}

impl ConversationRouter {
    /// Runs the discovery for the pending gap: conversations started during it (analytics)
    /// plus finished conversations still waiting for receipts (a receipt missed during the
    /// gap changed them, and analytics only lists conversations by their start).
    fn start_discovery(&mut self, ctx: &mut Context<Self>) {
        let (Some(since), Some(rest)) = (self.pending_reconcile.take(), self.rest.clone()) else {
            return;
        };
        self.reconciling = true;
        // The gap is dated by when Convoy *received* its last frame; a backlog on the
        // socket means that frame was produced earlier, and conversations that started in
        // between were lost with the backlog. Looking further back costs one analytics
        // page and GETs only for conversations Convoy does not track.
        let since = since - DISCOVERY_MARGIN;
        let discovery = async move { discover(&rest, since, Utc::now()).await };
        ctx.spawn(discovery.into_actor(self).map(|mut found, router, ctx| {
            router.reconciling = false;
            found.extend(
                router
                    .final_states
                    .iter()
                    .filter(|(_, state)| state.state.awaits_receipts())
                    .map(|(id, _)| id.clone()),
            );
            found.sort();
            found.dedup();
            tracing::info!(conversations = found.len(), "Discovery finished.");
            let observed_at = Utc::now();
            for id in found {
                if router.actors.contains_key(&id) {
                    continue;
                }
                // Start from REST: the empty snapshot carries nothing, the rebuild's
                // re-read does the work (joined into the final state, if one is known).
                let input = ConversationInput::Snapshot(convoy::conversation::ConversationSnapshot {
                    conversation_id: id.clone(),
                    start_time: None,
                    end_time: None,
                    participants: Vec::new(),
                });
                if let Err(error) = router.deliver(input, observed_at, true, ctx) {
                    tracing::warn!(conversation_id = %id, %error, "Could not re-read a conversation after a gap.");
                }
            }
            if router.pending_reconcile.is_some() {
                router.start_discovery(ctx);
            }
        }));
    }
}

/// Conversations that started in `[since, until]`, from the analytics details query
/// (the only way to learn about conversations whose events were missed).
async fn discover(
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
                tracing::warn!(%error, "Discovery query failed; conversations started during the gap may be missed until their next event.");
                break;
            }
        };
        let page_body: serde_json::Value = match response.json(route) {
            Ok(value) => value,
            Err(error) => {
                tracing::warn!(%error, "Unreadable discovery page.");
                break;
            }
        };
        let conversations = page_body
            .get("conversations")
            .and_then(serde_json::Value::as_array)
            .cloned()
            .unwrap_or_default();
        let count = conversations.len();
        tracing::debug!(page, count, "Discovery page read.");
        found.extend(
            conversations
                .iter()
                .filter_map(|c| c.get("conversationId").and_then(serde_json::Value::as_str))
                .map(ConversationId::from),
        );
        if count < DISCOVERY_PAGE_SIZE as usize {
            break;
        }
    }
    // Paging an active interval can repeat rows (API.md §6.1): dedupe.
    found.sort();
    found.dedup();
    found
}
