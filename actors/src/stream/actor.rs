//! The StreamActor's lifecycle and each link's state machine.
//!
//! A link is always in one of these situations, and [`StreamActor::drive`] (called by every
//! event and by a periodic tick) moves it on:
//! - connected and healthy: nothing to do until its rotation is due;
//! - connected, rotation due: open a new channel, subscribe, connect, *then* retire the old
//!   socket (make-before-break); on failure keep the old one and retry after a backoff;
//! - in a gap (socket lost): reconnect — to the same channel when it still exists (HEAD),
//!   otherwise to a new one — after a backoff that resets once a connection proved stable;
//! - an attempt in flight: wait for it (at most one per link).
//!
//! Every successful connect after a gap sends `Reconcile` to the router (counted here, in
//! `convoy_stream_reconciliations_total`, once); a rotation has no gap and sends nothing.
//! Transcription topics ([`super::WatchTranscription`]) ride on the links with room and are
//! synced by one subscription PUT per link per change batch.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, TimeDelta, Utc};
use convoy::ids::ConversationId;
use convoy::model::Channel;
use convoy::stream::rotation::CHANNEL_LIFETIME;
use convoy::stream::{
    plan_channels, rotation_margin, subscription_verdict, ChannelLease, LivenessPolicy, Rejections,
    RotationReason, RotationSchedule, SubscriptionVerdict, MAX_TOPICS_PER_CHANNEL,
};

use super::recorder::Recorder;
use super::ws::{self, BoxedWs, ConnectError, SocketSpec, SocketWiring};
use super::{
    Attempt, ChannelState, GapReason, Link, LinkActivity, LinkStatus, Need, StreamActor,
    StreamCounters, StreamSettings, StreamStatus, TokenExpirySource,
};
use crate::admin::HealthBoard;
use crate::conversation::messages::{Reconcile, RereadConversation, RouteEvent};
use crate::genesys::notifications;
use crate::genesys::oauth::TokenError;
use crate::genesys::rest::{GenesysRest, RestContext, RestError};
use crate::retry_schedule::RetrySchedule;
use crate::supervision::{PanicGuard, RestartBudget, RestartDecision, RestartState, StartPlan};
use crate::telemetry::{names, ActorMetrics};
use crate::token::{GetToken, InvalidateToken, TokenActor};

/// The actor type label in metrics and logs.
pub(super) const ACTOR: &str = "stream";
/// Bound on TCP connect and TLS handshake of the WebSocket.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on the whole WebSocket handshake (connect, upgrade request, 101).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// A connection that lived this long proved the link works: the next loss starts the
/// backoff from the beginning instead of where the last failure streak left it.
const STABLE_AFTER: Duration = Duration::from_secs(30);
const BACKOFF_INITIAL: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long `StopStream` waits for the sockets to finish their close handshakes.
pub(super) const STOP_DEADLINE: Duration = Duration::from_secs(5);
/// Transcription topics added are subscribed at most this often per channel (one PUT
/// carries every change since the last one).
const SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// Transcription topics removed (calls ended) are unsubscribed with the next addition, or
/// after this long.
const REMOVAL_SYNC_INTERVAL: Duration = Duration::from_secs(30);

/// What a successful attempt hands back.
struct Opened {
    channel: Channel,
    /// `None` when an existing channel was reused (its subscriptions stand).
    verdict: Option<SubscriptionVerdict>,
    socket: BoxedWs,
    opened_at: DateTime<Utc>,
}

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error(transparent)]
    Rest(#[from] RestError),
    #[error(transparent)]
    Connect(ConnectError),
    /// The channel to reuse no longer exists.
    #[error("the channel no longer exists")]
    ChannelGone,
}

impl From<ConnectError> for AttemptError {
    fn from(error: ConnectError) -> Self {
        match error {
            ConnectError::ChannelGone => AttemptError::ChannelGone,
            other => AttemptError::Connect(other),
        }
    }
}

impl AttemptError {
    /// Retrying cannot help: Genesys refused the OAuth client itself.
    fn is_configuration(&self) -> bool {
        matches!(
            self,
            AttemptError::Rest(RestError::Token(TokenError::Rejected { .. }))
        )
    }
}

impl StreamActor {
    /// Builds the actor; nothing runs until it is started (ideally with
    /// `actix::Supervisor::start`). The topics are planned into channels of at most 1 000
    /// here; a configuration with none leaves the stream idle (and `/readyz` says so).
    pub fn new(
        settings: StreamSettings,
        rest: RestContext,
        router: Recipient<RouteEvent>,
        reconcile: Recipient<Reconcile>,
        board: Arc<HealthBoard>,
    ) -> Self {
        let liveness = liveness_policy(&settings);
        let links = plan_channels(&settings.topics, MAX_TOPICS_PER_CHANNEL)
            .into_iter()
            .map(Link::new)
            .collect();
        StreamActor {
            settings,
            liveness,
            rest_context: rest,
            router,
            reconcile,
            board,
            links,
            rest: None,
            ws_client: None,
            recorder: None,
            next_connection: 0,
            stopping: false,
            has_started: false,
            restart: RestartState::new(RestartBudget::default()),
            token_expiry: None,
            counters: StreamCounters::default(),
            rereads: None,
            gate: None,
            publisher: None,
            warned_margin: false,
            _panic_guard: PanicGuard::essential(ACTOR),
        }
    }

    /// Plans token-expiry rotations from `source` (see [`TokenExpirySource`]).
    pub fn with_token_expiry(mut self, source: TokenExpirySource) -> Self {
        self.token_expiry = Some(source);
        self
    }

    /// Where conversations go whose events the router did not take: the router's own
    /// reconciliation set (de-duplicated, paced, persisted at shutdown).
    pub fn with_rereads(mut self, rereads: Recipient<RereadConversation>) -> Self {
        self.rereads = Some(rereads);
        self
    }

    /// The outbox's gate: while it is closed (outbox full, commits failing) sockets stop
    /// reading frames, so Genesys' frames wait in TCP instead of Convoy's memory.
    pub fn with_gate(mut self, gate: Arc<crate::outbox_writer::OutboxGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// The cluster's ingest role: conversation frames go to the JetStream stream (their
    /// exact bytes, awaiting each publish ack) instead of the router.
    pub fn with_publisher(mut self, publisher: crate::cluster::ingest::FramePublisher) -> Self {
        self.publisher = Some(publisher);
        self
    }

    /// The periodic check: rotations due, retries due, retired sockets, gauges, health.
    /// Fine-grained enough for short test channel lifetimes, at most once a second.
    fn tick_interval(&self) -> Duration {
        (self.settings.stream.rotate_before_expiry / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(1))
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        for index in 0..self.links.len() {
            self.drive(index, ctx);
            if let Some(link) = self.links.get_mut(index) {
                link.retiring.retain(|socket| !socket.is_finished());
            }
        }
        self.publish_health();
    }

    fn drive_all(&mut self, ctx: &mut Context<Self>) {
        for index in 0..self.links.len() {
            self.drive(index, ctx);
        }
    }

    /// Moves link `index` on if it is free to act (see the module docs).
    pub(super) fn drive(&mut self, index: usize, ctx: &mut Context<Self>) {
        // Before `started()` built the clients there is nothing to drive with; checked
        // first so a rotation is never marked started and then not run.
        if self.stopping || self.rest.is_none() || self.ws_client.is_none() {
            return;
        }
        let Some(link) = self.links.get_mut(index) else {
            return;
        };
        if link.pending.is_some() || link.retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        let attempt = if let Some(need) = link.need {
            Attempt::Connect(need)
        } else if link.current.is_some() {
            let due = link
                .channel
                .as_mut()
                .and_then(|state| state.schedule.start_due(Utc::now()));
            match due {
                Some(reason) => Attempt::Rotate(reason),
                None => {
                    self.sync_subscriptions(index, ctx);
                    return;
                }
            }
        } else {
            return;
        };
        self.start_attempt(index, attempt, ctx);
    }

    fn start_attempt(&mut self, index: usize, attempt: Attempt, ctx: &mut Context<Self>) {
        let (Some(rest), Some(ws_client)) = (self.rest.clone(), self.ws_client.clone()) else {
            return;
        };
        let Some(link) = self.links.get(index) else {
            return;
        };
        let reuse = match attempt {
            Attempt::Connect(need) if !need.fresh_channel => {
                link.channel.as_ref().map(|state| state.channel.clone())
            }
            _ => None,
        };
        // A revoked token must not create the next channel; before a token-expiry
        // rotation a fresh token is needed too, or the new channel dies with the old token
        // (`ChannelLease::token_expires`).
        let renew_token = match attempt {
            Attempt::Connect(need) => need.renew_token,
            Attempt::Rotate(reason) => reason == RotationReason::TokenExpiry,
        };
        tracing::debug!(
            link = index,
            ?attempt,
            reuse = reuse.as_ref().map(|channel| channel.id.as_str()),
            "Stream link attempt."
        );
        let topics = link.topics.clone();
        let transcriptions: Vec<String> = link.transcriptions.iter().cloned().collect();
        let version = link.subs_version;
        let tokens = self.rest_context.tokens.clone();
        let max_frame_bytes = self.settings.stream.max_frame_bytes;
        let work = async move {
            if renew_token {
                renew_cached_token(&tokens).await;
            }
            match reuse {
                Some(channel) => {
                    reconnect_channel(&rest, &ws_client, channel, max_frame_bytes).await
                }
                None => {
                    open_channel(&rest, &ws_client, topics, transcriptions, max_frame_bytes).await
                }
            }
        };
        let handle = ctx.spawn(
            work.into_actor(self)
                .map(move |result, actor, ctx| actor.finish_attempt(index, attempt, result, ctx)),
        );
        if let Some(link) = self.links.get_mut(index) {
            link.pending = Some((handle, attempt));
            link.attempt_version = version;
        }
    }

    fn finish_attempt(
        &mut self,
        index: usize,
        attempt: Attempt,
        result: Result<Opened, AttemptError>,
        ctx: &mut Context<Self>,
    ) {
        if let Some(link) = self.links.get_mut(index) {
            link.pending = None;
        }
        if self.stopping {
            // Dropping the socket closes the connection: a stopped stream takes no frames.
            return;
        }
        match result {
            Ok(opened) => self.connected(index, attempt, opened, ctx),
            Err(error) => self.attempt_failed(index, attempt, error, ctx),
        }
    }

    fn connected(
        &mut self,
        index: usize,
        attempt: Attempt,
        opened: Opened,
        ctx: &mut Context<Self>,
    ) {
        let connection = self.next_connection;
        self.next_connection += 1;
        let token_expires = self.token_expires();
        let rotate_before_expiry = self.settings.stream.rotate_before_expiry;
        let wiring = SocketWiring {
            events: ctx.address().recipient(),
            router: self.router.clone(),
            activity: match self.links.get(index) {
                Some(link) => link.activity.clone(),
                None => return,
            },
            recorder: self.recorder.clone(),
            board: self.board.clone(),
            gate: self.gate.clone(),
            publisher: self.publisher.clone(),
        };
        let spec = SocketSpec {
            link: index,
            connection,
            channel_id: opened.channel.id.clone(),
            max_frame_bytes: self.settings.stream.max_frame_bytes,
            liveness: self.liveness,
        };
        let handle = ws::spawn(opened.socket, spec, wiring);
        let Some(link) = self.links.get_mut(index) else {
            handle.abort();
            return;
        };

        if let Some(verdict) = opened.verdict {
            // A new channel: new lease, new schedule, subscribed to the transcription
            // topics as they were when the attempt began.
            link.synced_version = link.attempt_version;
            let previous_token_expiry = link
                .channel
                .as_ref()
                .and_then(|state| state.schedule.lease().token_expires);
            // The margins are checked against the lifetimes actually granted: a margin as
            // long as a lifetime would make every rotation due at once, in a loop.
            let now = Utc::now();
            let channel_life = opened
                .channel
                .expires
                .and_then(|expires| (expires - opened.opened_at).to_std().ok())
                .unwrap_or(CHANNEL_LIFETIME);
            let channel_margin = rotation_margin(rotate_before_expiry, channel_life);
            let token_margin = token_expires
                .and_then(|expires| (expires - now).to_std().ok())
                .map(|life| (life, rotation_margin(rotate_before_expiry, life)));
            let fallbacks = [("channel", channel_life, channel_margin)]
                .into_iter()
                .chain(token_margin.map(|(life, margin)| ("token", life, margin)))
                .filter(|(_, _, margin)| margin.fell_back);
            for (what, life, margin) in fallbacks {
                if !self.warned_margin {
                    tracing::warn!(
                        link = index,
                        lifetime_ms = life.as_millis() as u64,
                        rotate_before_expiry_ms = rotate_before_expiry.as_millis() as u64,
                        using_ms = margin.margin.as_millis() as u64,
                        what,
                        "stream.rotate_before_expiry is too long for the {what} lifetime Genesys granted; rotating a quarter of the lifetime before expiry instead. Lower stream.rotate_before_expiry."
                    );
                }
                self.warned_margin = true;
            }
            let token_margin = token_margin.map_or(rotate_before_expiry, |(_, m)| m.margin);
            let token_expires = token_expires.filter(|&expires| {
                // A token that did not get any younger through a token-expiry rotation
                // would make the next token-expiry rotation due at once, in a loop.
                // Channel expiry and the channel's 404 reply still cover this channel.
                let margin = TimeDelta::from_std(token_margin).unwrap_or(TimeDelta::MAX);
                let due_at_once = expires
                    .checked_sub_signed(margin)
                    .is_none_or(|due| due <= now);
                let not_younger = attempt == Attempt::Rotate(RotationReason::TokenExpiry)
                    && previous_token_expiry.is_some_and(|old| expires <= old);
                if due_at_once || not_younger {
                    tracing::warn!(
                        link = index,
                        %expires,
                        "The token would need rotating at once; not planning a token-expiry rotation for this channel."
                    );
                }
                !(due_at_once || not_younger)
            });
            let lease = ChannelLease::new(opened.opened_at, opened.channel.expires, token_expires);
            link.channel = Some(ChannelState {
                channel: opened.channel,
                schedule: RotationSchedule::with_margins(
                    channel_margin.margin,
                    token_margin,
                    lease,
                ),
            });
            log_verdict(index, &verdict);
            link.verdict = Some(verdict);
        }
        let channel_id = link
            .channel
            .as_ref()
            .map(|state| state.channel.id.clone())
            .unwrap_or_default();

        if let Some(old) = link.current.replace(handle) {
            // Make-before-break: the new socket is reading; now the old one goes. It keeps
            // routing what it still receives until the peer's Close (drain).
            old.close(true);
            link.retiring.push(old);
        }
        link.need = None;
        link.retry_at = None;
        self.restart.recovered();
        link.counters.connects += 1;
        self.counters.connects += 1;
        metrics::counter!(names::STREAM_CONNECTS).increment(1);

        let reconcile_reason = match attempt {
            Attempt::Rotate(reason) => {
                link.counters.rotations += 1;
                self.counters.rotations += 1;
                metrics::counter!(names::STREAM_ROTATIONS, "reason" => reason.as_str())
                    .increment(1);
                tracing::info!(
                    link = index,
                    channel = %channel_id,
                    reason = reason.as_str(),
                    "Rotated to a new notification channel."
                );
                // Make-before-break: the old socket kept reading until the new one was
                // connected, so nothing was missed and there is nothing to reconcile.
                None
            }
            Attempt::Connect(need) => {
                tracing::info!(
                    link = index,
                    channel = %channel_id,
                    after = need.reason.as_str(),
                    topics = link.topics.len(),
                    transcriptions = link.transcriptions.len(),
                    "Notification socket connected."
                );
                if link.topics.is_empty() {
                    // A channel of transcription topics only: a re-read recovers no
                    // transcript line, so a gap there has nothing to reconcile.
                    None
                } else if need.reason == GapReason::Startup {
                    Some("startup")
                } else {
                    Some("reconnect")
                }
            }
        };
        // Genesys replays nothing: whatever happened since the last frame before the gap
        // must be re-read.
        let gap_started_at = link
            .gap_started_at
            .take()
            .or_else(|| link.activity.last_frame_at())
            .unwrap_or_else(Utc::now);
        if let Some(reason) = reconcile_reason {
            self.send_reconcile(gap_started_at, reason);
        }
        self.publish_health();
        // Transcription topics that changed while the attempt ran.
        self.sync_subscriptions(index, ctx);
    }

    fn attempt_failed(
        &mut self,
        index: usize,
        attempt: Attempt,
        error: AttemptError,
        ctx: &mut Context<Self>,
    ) {
        if error.is_configuration() {
            // Nothing a retry here can fix. Stopping hands the decision to the supervisor:
            // its restart budget ends the process non-zero if this persists.
            tracing::error!(link = index, %error, "Cannot open a notification channel: the OAuth client is refused. Check genesys.client_id and genesys.client_secret.");
            ActorMetrics::handler_error(ACTOR);
            ctx.stop();
            return;
        }
        let Some(link) = self.links.get_mut(index) else {
            return;
        };
        if let (Attempt::Connect(need), AttemptError::ChannelGone) = (attempt, &error) {
            if !need.fresh_channel {
                tracing::info!(
                    link = index,
                    "The channel to reconnect to no longer exists; creating a new one."
                );
                link.need = Some(Need {
                    fresh_channel: true,
                    ..need
                });
                self.drive(index, ctx);
                return;
            }
        }
        if let (Attempt::Rotate(_), Some(state)) = (attempt, link.channel.as_mut()) {
            state.schedule.abandoned();
        }
        let delay = link.backoff.next_delay();
        link.retry_at = Some(Instant::now() + delay);
        tracing::warn!(
            link = index,
            ?attempt,
            %error,
            retry_in_ms = delay.as_millis() as u64,
            connected = link.current.is_some(),
            "Notification channel attempt failed; retrying."
        );
        ctx.run_later(delay, move |actor, ctx| actor.drive(index, ctx));
    }

    /// Link `index` lost its current socket (or must give it up): open a gap and plan the
    /// reconnect. The socket, if still running, is closed with drain.
    pub(super) fn lose_connection(&mut self, index: usize, need: Need, ctx: &mut Context<Self>) {
        let Some(link) = self.links.get_mut(index) else {
            return;
        };
        if let Some(socket) = link.current.take() {
            if socket.connected_at.elapsed() >= STABLE_AFTER {
                link.backoff.reset();
            }
            socket.close(true);
            link.retiring.push(socket);
        }
        let last_frame = link.activity.last_frame_at().unwrap_or_else(Utc::now);
        link.gap_started_at = Some(
            link.gap_started_at
                .map_or(last_frame, |open| open.min(last_frame)),
        );
        link.need = Some(match link.need {
            Some(open) => Need {
                reason: open.reason,
                fresh_channel: open.fresh_channel || need.fresh_channel,
                renew_token: open.renew_token || need.renew_token,
            },
            None => need,
        });
        link.counters.reconnects += 1;
        self.counters.reconnects += 1;
        metrics::counter!(names::STREAM_RECONNECTS, "reason" => need.reason.as_str()).increment(1);
        // The first reconnect is nearly immediate; a streak of failures backs off.
        let delay = link.backoff.next_delay();
        link.retry_at = Some(Instant::now() + delay);
        tracing::warn!(
            link = index,
            reason = need.reason.as_str(),
            fresh_channel = need.fresh_channel,
            reconnect_in_ms = delay.as_millis() as u64,
            "Notification socket lost; reconnecting."
        );
        ctx.run_later(delay, move |actor, ctx| actor.drive(index, ctx));
        self.publish_health();
    }

    /// Follows or stops following one voice call's transcription topic. A new topic goes to
    /// the first channel with room (configured topics plus transcriptions under 1 000), or
    /// to a new channel when all are full; the change is subscribed within
    /// [`SYNC_INTERVAL`] (one PUT per channel for every change since the last).
    pub(super) fn watch_transcription(
        &mut self,
        conversation_id: &ConversationId,
        watch: bool,
        ctx: &mut Context<Self>,
    ) {
        let topic = format!(
            "v2.conversations.{}.transcription",
            conversation_id.text().as_str()
        );
        let placed = self
            .links
            .iter()
            .position(|link| link.transcriptions.contains(&topic));
        match (watch, placed) {
            (true, Some(_)) | (false, None) => return,
            (false, Some(index)) => {
                if let Some(link) = self.links.get_mut(index) {
                    link.transcriptions.remove(&topic);
                    link.subs_version += 1;
                }
            }
            (true, None) => {
                let loads: Vec<usize> = self
                    .links
                    .iter()
                    .map(|link| link.topics.len() + link.transcriptions.len())
                    .collect();
                let index = match convoy::stream::place_topic(&loads, MAX_TOPICS_PER_CHANNEL) {
                    Some(index) => index,
                    None => {
                        // Every channel is full: one more, connected by the usual path.
                        let mut link = Link::new(Vec::new());
                        link.need = Some(Need {
                            reason: GapReason::Startup,
                            fresh_channel: true,
                            renew_token: false,
                        });
                        self.links.push(link);
                        tracing::info!(
                            channels = self.links.len(),
                            "Every notification channel is full; adding one for transcription topics."
                        );
                        self.links.len() - 1
                    }
                };
                if let Some(link) = self.links.get_mut(index) {
                    link.transcriptions.insert(topic);
                    link.subs_version += 1;
                    link.additions_pending = true;
                }
                self.drive(index, ctx);
            }
        }
        let total: usize = self
            .links
            .iter()
            .map(|link| link.transcriptions.len())
            .sum();
        metrics::gauge!(names::STREAM_TRANSCRIPTION_TOPICS).set(total as f64);
    }

    /// Replaces link `index`'s subscriptions with its configured plus transcription topics
    /// when they changed, at most once per [`SYNC_INTERVAL`], only on a connected channel
    /// with no attempt running (an attempt subscribes a new channel with the whole set).
    fn sync_subscriptions(&mut self, index: usize, ctx: &mut Context<Self>) {
        let Some(rest) = self.rest.clone() else {
            return;
        };
        let Some(link) = self.links.get_mut(index) else {
            return;
        };
        if link.synced_version == link.subs_version
            || link.syncing
            || link.pending.is_some()
            || link.current.is_none()
            || self.stopping
        {
            return;
        }
        let Some(channel_id) = link.channel.as_ref().map(|state| state.channel.id.clone()) else {
            return;
        };
        let since_last = link.last_sync_at.map(|at| at.elapsed());
        let wait = if link.additions_pending {
            SYNC_INTERVAL
        } else {
            REMOVAL_SYNC_INTERVAL
        };
        if since_last.is_some_and(|elapsed| elapsed < wait) {
            return;
        }
        link.syncing = true;
        link.additions_pending = false;
        link.last_sync_at = Some(Instant::now());
        let version = link.subs_version;
        let transcriptions: Vec<String> = link.transcriptions.iter().cloned().collect();
        let desired: Vec<String> = link
            .topics
            .iter()
            .chain(link.transcriptions.iter())
            .cloned()
            .collect();
        let work =
            async move { notifications::replace_subscriptions(&rest, &channel_id, &desired).await };
        ctx.spawn(work.into_actor(self).map(move |result, actor, ctx| {
            let Some(link) = actor.links.get_mut(index) else {
                return;
            };
            link.syncing = false;
            match result {
                Ok(listing) => {
                    link.synced_version = link.synced_version.max(version);
                    let verdict = subscription_verdict(&transcriptions, &listing);
                    tracing::debug!(
                        link = index,
                        transcriptions = verdict.permitted.len(),
                        rejected = verdict.rejected.len(),
                        "Transcription topics subscribed."
                    );
                    for rejected in &verdict.rejected {
                        tracing::info!(link = index, topic = %rejected.topic, reason = %rejected.reason, "Genesys refused a transcription topic.");
                    }
                }
                Err(error) => {
                    // Retried by the next drive: the versions still differ.
                    link.additions_pending = true;
                    tracing::warn!(link = index, %error, "Could not update the transcription subscriptions; retrying.");
                }
            }
            actor.sync_subscriptions(index, ctx);
        }));
    }

    /// The router did not take an event of `conversation_id`: the router re-reads it.
    /// `do_send`: a rare control message that must not be lost to a full mailbox.
    pub(super) fn owe_reread(&mut self, conversation_id: ConversationId) {
        match &self.rereads {
            Some(rereads) => rereads.do_send(RereadConversation { conversation_id }),
            None => tracing::warn!(
                %conversation_id,
                "An event the router did not take is not re-read: no re-read recipient."
            ),
        }
    }

    fn send_reconcile(&mut self, gap_started_at: DateTime<Utc>, reason: &'static str) {
        self.counters.reconciliations += 1;
        metrics::counter!(names::STREAM_RECONCILIATIONS, "reason" => reason).increment(1);
        tracing::info!(%gap_started_at, reason, "Asking the router to reconcile the gap.");
        // `do_send`: a rare control message; the router sweeps behind live traffic.
        self.reconcile.do_send(Reconcile {
            gap_started_at,
            reason,
        });
    }

    /// Stops every socket and attempt (restart or stop). Returns the tasks to wait for.
    pub(super) fn take_sockets(&mut self, ctx: &mut Context<Self>) -> Vec<ws::SocketHandle> {
        let mut sockets = Vec::new();
        for link in &mut self.links {
            if let Some((handle, _)) = link.pending.take() {
                ctx.cancel_future(handle);
            }
            if let Some(socket) = link.current.take() {
                let last_frame = link.activity.last_frame_at().unwrap_or_else(Utc::now);
                link.gap_started_at = Some(
                    link.gap_started_at
                        .map_or(last_frame, |open| open.min(last_frame)),
                );
                sockets.push(socket);
            }
            sockets.append(&mut link.retiring);
        }
        sockets
    }

    pub(super) fn status(&self) -> StreamStatus {
        let mut rejections = Rejections::default();
        for link in &self.links {
            rejections.absorb(&link.activity.rejections());
        }
        StreamStatus {
            links: self.links.iter().map(Link::status).collect(),
            totals: self.counters,
            rejections,
            stopping: self.stopping,
        }
    }

    /// The health board and the stream gauges, from the links' state.
    pub(super) fn publish_health(&self) {
        let connected = self
            .links
            .iter()
            .filter(|link| link.current.is_some())
            .count();
        let rejected: Vec<(String, String)> = self
            .links
            .iter()
            .filter_map(|link| link.verdict.as_ref())
            .flat_map(|verdict| verdict.rejected.iter())
            .map(|rejected| (rejected.topic.clone(), rejected.reason.clone()))
            .collect();
        let permitted: usize = self
            .links
            .iter()
            .filter_map(|link| link.verdict.as_ref())
            .map(|verdict| verdict.permitted.len())
            .sum();
        let last_heartbeat = self
            .links
            .iter()
            .filter_map(|link| link.activity.last_heartbeat_at())
            .max();
        metrics::gauge!(names::STREAM_CHANNELS_CONNECTED).set(connected as f64);
        metrics::gauge!(names::STREAM_REJECTED_TOPICS).set(rejected.len() as f64);
        if let Some(at) = last_heartbeat {
            metrics::gauge!(names::STREAM_HEARTBEAT_AGE).set(at.elapsed().as_secs_f64());
        }
        self.board.set_channels(self.links.len(), connected);
        // Before the first verdict the board keeps saying "not subscribed yet".
        if self.links.iter().any(|link| link.verdict.is_some()) {
            self.board.set_subscriptions(permitted, rejected);
        }
    }

    /// When the current token expires, as wall-clock time (the rotation schedule's
    /// currency), if a source was given.
    fn token_expires(&self) -> Option<DateTime<Utc>> {
        let expires = (self.token_expiry.as_ref()?)()?;
        let left = expires.saturating_duration_since(Instant::now());
        Utc::now().checked_add_signed(TimeDelta::from_std(left).ok()?)
    }
}

impl Link {
    fn new(topics: Vec<String>) -> Self {
        Link {
            transcriptions: std::collections::BTreeSet::new(),
            subs_version: 0,
            synced_version: 0,
            attempt_version: 0,
            syncing: false,
            additions_pending: false,
            last_sync_at: None,
            topics,
            activity: Rc::new(LinkActivity::default()),
            current: None,
            channel: None,
            verdict: None,
            need: None,
            pending: None,
            retry_at: None,
            backoff: RetrySchedule::new(BACKOFF_INITIAL, BACKOFF_MAX),
            gap_started_at: None,
            retiring: Vec::new(),
            counters: StreamCounters::default(),
        }
    }

    fn status(&self) -> LinkStatus {
        LinkStatus {
            topics: self.topics.len(),
            channel_id: self.channel.as_ref().map(|state| state.channel.id.clone()),
            channel_expires: self
                .channel
                .as_ref()
                .map(|state| state.schedule.lease().channel_expires),
            connected: self.current.is_some(),
            permitted: self
                .verdict
                .as_ref()
                .map(|verdict| verdict.permitted.clone())
                .unwrap_or_default(),
            rejected: self
                .verdict
                .as_ref()
                .map(|verdict| verdict.rejected.clone())
                .unwrap_or_default(),
            last_frame_at: self.activity.last_frame_at(),
            counters: self.counters,
            rejections: self.activity.rejections(),
            transcriptions: self.transcriptions.len(),
        }
    }
}

impl Actor for StreamActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Everything that is dropped on a restart is (re)built here (anchors.md §2.4).
        self.rest = Some(GenesysRest::new(self.rest_context.clone()));
        self.ws_client = Some(ws::ws_client(CONNECT_TIMEOUT, HANDSHAKE_TIMEOUT));
        if self.recorder.is_none() {
            if let Some(path) = &self.settings.record {
                self.recorder =
                    Recorder::open(path).map(|recorder| Rc::new(RefCell::new(recorder)));
            }
        }
        if !self.has_started {
            self.has_started = true;
            let lookback =
                TimeDelta::from_std(self.settings.startup_lookback).unwrap_or(TimeDelta::MAX);
            let now = Utc::now();
            let gap_started_at = now.checked_sub_signed(lookback).unwrap_or(now);
            for link in &mut self.links {
                link.gap_started_at = Some(gap_started_at);
                link.need = Some(Need {
                    reason: GapReason::Startup,
                    fresh_channel: true,
                    renew_token: false,
                });
            }
            if self.links.is_empty() {
                tracing::warn!("No notification topics configured; the stream stays idle.");
            } else {
                tracing::info!(
                    topics = self.settings.topics.len(),
                    channels = self.links.len(),
                    "Starting the notification stream."
                );
            }
        }
        match self.restart.next_start() {
            StartPlan::Now => ctx.run_later(Duration::ZERO, |actor, ctx| actor.drive_all(ctx)),
            StartPlan::After(delay) => {
                // The tick must not start attempts before the restart backoff is over.
                let resume_at = Instant::now() + delay;
                for link in &mut self.links {
                    link.retry_at = Some(resume_at);
                }
                ctx.run_later(delay, |actor, ctx| actor.drive_all(ctx))
            }
            // The restart budget is exhausted and the System is stopping: stay idle.
            StartPlan::Never => return,
        };
        ctx.run_interval(self.tick_interval(), |actor, ctx| actor.tick(ctx));
        self.publish_health();
    }
}

impl Supervised for StreamActor {
    fn restarting(&mut self, ctx: &mut Self::Context) {
        // The context already dropped our timers and attempts; the socket tasks are not
        // in the context (they are arbiter tasks), so end them here.
        for socket in self.take_sockets(ctx) {
            socket.abort();
        }
        for link in &mut self.links {
            link.pending = None;
            link.retry_at = None;
            if link.need.is_none() {
                link.need = Some(Need {
                    reason: GapReason::Restart,
                    fresh_channel: true,
                    renew_token: false,
                });
                link.counters.reconnects += 1;
                self.counters.reconnects += 1;
                metrics::counter!(names::STREAM_RECONNECTS, "reason" => GapReason::Restart.as_str())
                    .increment(1);
            }
        }
        if self.restart.restarting(ACTOR) == RestartDecision::GiveUp {
            // The System is being stopped; `started()` will begin nothing.
            self.stopping = true;
        }
        self.publish_health();
    }
}

/// A policy that cannot work (config validation should have refused it) is replaced by
/// the nearest one that can, loudly, rather than failing a running daemon.
fn liveness_policy(settings: &StreamSettings) -> LivenessPolicy {
    let ping = settings.stream.ping_after_idle;
    let silence = settings.stream.reconnect_after_silence;
    LivenessPolicy::new(ping, silence).unwrap_or_else(|error| {
        let ping_after_idle = ping.max(Duration::from_millis(100));
        let fixed = LivenessPolicy {
            ping_after_idle,
            reconnect_after_silence: silence.max(ping_after_idle * 2),
        };
        tracing::error!(%error, ?fixed, "Invalid stream liveness settings; using a corrected policy.");
        fixed
    })
}

/// Logs a subscription verdict: one WARN per rejected topic, with Genesys' reason.
fn log_verdict(index: usize, verdict: &SubscriptionVerdict) {
    for rejected in &verdict.rejected {
        tracing::warn!(
            link = index,
            topic = %rejected.topic,
            reason = %rejected.reason,
            missing_permissions = ?rejected.missing_permissions,
            "Genesys rejected a notification topic; its conversations will not be followed."
        );
    }
    tracing::info!(
        link = index,
        permitted = verdict.permitted.len(),
        rejected = verdict.rejected.len(),
        "Subscribed notification topics."
    );
}

/// Drops the cached token so the next call fetches a fresh one. The TokenActor only drops
/// it if it is still the cached one, so a token refreshed meanwhile survives.
async fn renew_cached_token(tokens: &Addr<TokenActor>) {
    ActorMetrics::sent("token");
    match tokens.send(GetToken).await {
        Ok(Ok(token)) => tokens.do_send(InvalidateToken { token }),
        Ok(Err(_)) => {}
        // Never enqueued: it will never be handled.
        Err(_) => ActorMetrics::undelivered("token"),
    }
}

/// New channel, its subscriptions (configured topics and transcription topics), its
/// socket. The verdict is about the configured topics: a refused transcription topic (a
/// call that just ended) is no reason to be unready.
async fn open_channel(
    rest: &GenesysRest,
    ws_client: &awc::Client,
    topics: Vec<String>,
    transcriptions: Vec<String>,
    max_frame_bytes: usize,
) -> Result<Opened, AttemptError> {
    let opened_at = Utc::now();
    let channel = notifications::create_channel(rest).await?;
    let desired: Vec<String> = topics.iter().chain(&transcriptions).cloned().collect();
    let listing = notifications::replace_subscriptions(rest, &channel.id, &desired).await?;
    let verdict = subscription_verdict(&topics, &listing);
    let socket = ws::connect(
        ws_client,
        &channel.connect_uri,
        max_frame_bytes,
        HANDSHAKE_TIMEOUT,
    )
    .await?;
    Ok(Opened {
        channel,
        verdict: Some(verdict),
        socket,
        opened_at,
    })
}

/// A new socket on an existing channel, if the channel still exists (its subscriptions
/// stay; HEAD does not extend its life, so its lease is unchanged).
async fn reconnect_channel(
    rest: &GenesysRest,
    ws_client: &awc::Client,
    channel: Channel,
    max_frame_bytes: usize,
) -> Result<Opened, AttemptError> {
    if !notifications::channel_exists(rest, &channel.id).await? {
        return Err(AttemptError::ChannelGone);
    }
    let socket = ws::connect(
        ws_client,
        &channel.connect_uri,
        max_frame_bytes,
        HANDSHAKE_TIMEOUT,
    )
    .await?;
    Ok(Opened {
        channel,
        verdict: None,
        socket,
        opened_at: Utc::now(),
    })
}
