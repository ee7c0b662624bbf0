//! The StreamActor: Convoy's only source of live conversation events. It turns the
//! configured topics into Genesys Notifications channels (at most 1 000 topics each),
//! subscribes them, keeps one WebSocket per channel alive (watchdog, ping, reconnect with
//! backoff), rotates each channel make-before-break before it dies (`socket_closing`,
//! channel expiry, token expiry; margins checked against the granted lifetimes), hands
//! conversation data to the router in order, after every real gap (not a rotation) asks
//! the router to reconcile, because Genesys replays nothing, re-reads the conversations of
//! events the router did not take, and follows the transcription topic of every live voice
//! call the router names ([`WatchTranscription`]).
//!
//! Layout (witnet style): this file holds the state and the messages, [`actor`] the
//! lifecycle and the link state machine, [`handlers`] the message handlers, [`ws`] the
//! socket I/O (one local task per connection), [`recorder`] the `--record` capture.
//!
//! What it must never do: decide anything about a conversation (the router and the
//! conversation actors do), drop a conversation event silently (every drop is counted and
//! its conversation re-read), block on the router without bound, or end the process on
//! bad input from the wire.
//!
//! Decisions:
//! - **One actor, several links.** A link is one planned slice of the topics
//!   (`plan_channels`) with its own channel, socket, watchdog, rotation schedule and
//!   backoff. One actor keeps the health picture (`/readyz`, rejected topics) in one place;
//!   links fail and recover independently, so a drop on one channel never touches the
//!   others.
//! - **Reconnect in the actor, not by supervised restart.** A restart would tear down
//!   every link for one link's failure and cannot express make-before-break (the old
//!   socket must outlive the new one's start). Each link reconnects itself with a
//!   [`RetrySchedule`] backoff that resets only after a connection proved stable. The
//!   actor still runs under `actix::Supervisor`: should it ever stop (an unrecoverable
//!   configuration error), `restarting()` aborts its sockets and H7's `RestartState`
//!   paces the restart and enforces the restart budget (exit non-zero when exceeded).
//! - **Ordered delivery by construction.** Each connection's task awaits the router for
//!   one event before it reads the next frame ([`ws`]), so frames are never reordered and
//!   a slow router back-pressures the socket (for at most one send timeout per event), not
//!   this actor's mailbox.

mod actor;
mod handlers;
pub mod recorder;
pub mod ws;

use std::cell::Cell;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Message, MessageResponse, Recipient, SpawnHandle};
use chrono::{DateTime, Utc};
use convoy::config::StreamConfig;
use convoy::model::Channel;
use convoy::stream::{
    LivenessPolicy, RejectedTopic, Rejection, Rejections, RotationReason, RotationSchedule,
    SubscriptionVerdict,
};
use serde::Serialize;

use crate::admin::HealthBoard;
use crate::conversation::messages::{Reconcile, RereadConversation, RouteEvent};
use crate::genesys::rest::{GenesysRest, RestContext};
use crate::retry_schedule::RetrySchedule;
use crate::supervision::{PanicGuard, RestartState};
use recorder::Recorder;
use ws::SocketHandle;

/// What the StreamActor is built from (besides its collaborators).
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// Every topic to follow (queues' and users' conversation topics). Duplicates collapse.
    pub topics: Vec<String>,
    pub stream: StreamConfig,
    /// `--record FILE`: append every received frame as a JSON line.
    pub record: Option<PathBuf>,
    /// At start-up nothing tells Convoy what happened before it ran: the first
    /// reconciliation looks back this far for conversations to discover.
    pub startup_lookback: Duration,
}

/// The actor. See the module docs.
pub struct StreamActor {
    settings: StreamSettings,
    /// Validated liveness policy (a bad pair falls back to a safe one, logged).
    liveness: LivenessPolicy,
    rest_context: RestContext,
    router: Recipient<RouteEvent>,
    reconcile: Recipient<Reconcile>,
    board: Arc<HealthBoard>,
    /// One per planned channel; built in `new`, kept across restarts.
    links: Vec<Link>,
    /// Created in `started()`: awc clients are not `Send` and belong to this arbiter.
    rest: Option<GenesysRest>,
    ws_client: Option<awc::Client>,
    /// Opened in `started()`; shared by the socket tasks (same thread, never borrowed
    /// across an await).
    recorder: Option<Rc<RefCell<Recorder>>>,
    /// Connection ids are unique for the actor's life, so a late report from a replaced
    /// connection is recognised and ignored.
    next_connection: u64,
    /// `StopStream` was received: no new connection, no reconnect, ever.
    stopping: bool,
    /// Whether `started()` has run before (then it is a supervised restart).
    has_started: bool,
    restart: RestartState,
    /// Where the current token's expiry comes from, for token-expiry rotation
    /// ([`StreamActor::with_token_expiry`]); without it only the reactive paths (the
    /// channel's `404`, `token_revoked`) cover a dying token.
    token_expiry: Option<TokenExpirySource>,
    counters: StreamCounters,
    /// Where conversations go whose events the router did not take.
    rereads: Option<Recipient<RereadConversation>>,
    gate: Option<Arc<crate::outbox_writer::OutboxGate>>,
    /// The cluster's ingest role: frames are published instead of routed.
    publisher: Option<crate::cluster::ingest::FramePublisher>,
    /// `stream.rotate_before_expiry` did not fit a granted lifetime (warned once).
    warned_margin: bool,
    /// Counts a panic and stops the System: a dead stream would silently stop all input.
    _panic_guard: PanicGuard,
}

/// Reads when the current access token expires (monotonic), e.g. from the TokenActor's
/// bookkeeping. Called on the actor's thread when a channel is created.
pub type TokenExpirySource = Arc<dyn Fn() -> Option<Instant> + Send + Sync>;

/// Totals since the actor was built (also exported as metrics; kept here for
/// [`GetStreamStatus`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StreamCounters {
    pub connects: u64,
    pub reconnects: u64,
    pub rotations: u64,
    pub reconciliations: u64,
}

/// One slice of the topics and everything about keeping it flowing.
struct Link {
    topics: Vec<String>,
    /// Last frame and heartbeat on any of this link's sockets (old and new overlap during a
    /// rotation), written by the socket tasks.
    activity: Rc<LinkActivity>,
    /// The socket frames are taken from now; `None` during a gap.
    current: Option<SocketHandle>,
    /// The channel `current` is on (kept through a drop, so a reconnect can reuse it).
    channel: Option<ChannelState>,
    /// The latest subscription verdict.
    verdict: Option<SubscriptionVerdict>,
    /// What the link must do when it is free: connect again after a loss.
    need: Option<Need>,
    /// The attempt running now (connect or rotation), at most one.
    pending: Option<(SpawnHandle, Attempt)>,
    /// Backoff gate: no attempt before this.
    retry_at: Option<Instant>,
    backoff: RetrySchedule,
    /// When the open gap began (the last frame before it); reported with the next
    /// reconciliation.
    gap_started_at: Option<DateTime<Utc>>,
    /// Sockets being closed after a rotation or a rebuild; kept so a stop or a restart can
    /// end them too.
    retiring: Vec<SocketHandle>,
    counters: StreamCounters,
    /// `v2.conversations.{id}.transcription` topics of live voice calls placed on this
    /// link ([`WatchTranscription`]), subscribed next to `topics`.
    transcriptions: BTreeSet<String>,
    /// Bumped on every change of `transcriptions`.
    subs_version: u64,
    /// The version the channel's subscriptions on the server correspond to.
    synced_version: u64,
    /// The version the attempt running now subscribes (a new channel).
    attempt_version: u64,
    /// A subscription PUT is in flight.
    syncing: bool,
    /// A topic was added since the last sync (removals alone can wait: an ended call's
    /// topic carries nothing).
    additions_pending: bool,
    last_sync_at: Option<Instant>,
}

struct ChannelState {
    channel: Channel,
    schedule: RotationSchedule,
}

/// Why a link has no socket, as a metric label (`convoy_stream_reconnects_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GapReason {
    Startup,
    /// The actor itself was restarted by its supervisor.
    Restart,
    /// The connection ended without a close frame (network failure, emulator drop).
    Dropped,
    /// The peer closed the socket.
    Closed,
    /// No frame within `reconnect_after_silence`.
    Silence,
    /// A protocol error, an unreadable message, a failed write.
    Error,
    /// `{"result":"404"}` on the socket: the channel no longer exists.
    ChannelGone,
    NoLongerSubscribed,
    TokenRevoked,
    /// Any other `v2.system.*` frame.
    System,
}

impl GapReason {
    pub fn as_str(self) -> &'static str {
        match self {
            GapReason::Startup => "startup",
            GapReason::Restart => "restart",
            GapReason::Dropped => "dropped",
            GapReason::Closed => "closed",
            GapReason::Silence => "silence",
            GapReason::Error => "error",
            GapReason::ChannelGone => "channel_gone",
            GapReason::NoLongerSubscribed => "no_longer_subscribed",
            GapReason::TokenRevoked => "token_revoked",
            GapReason::System => "system",
        }
    }
}

/// A link that lost its socket must connect again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Need {
    reason: GapReason,
    /// The old channel is unusable (gone, superseded, its token revoked): create one.
    /// Otherwise the old channel is checked (HEAD) and reused if it still exists.
    fresh_channel: bool,
    /// Drop the cached token before creating the channel (it was revoked).
    renew_token: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    Connect(Need),
    Rotate(RotationReason),
}

/// Shared between a link and its socket tasks. Same thread only (`Rc`, `Cell`).
#[derive(Debug, Default)]
pub struct LinkActivity {
    last_frame_at: Cell<Option<DateTime<Utc>>>,
    last_heartbeat_at: Cell<Option<Instant>>,
    /// Messages skipped as malformed or refused by the caps, on any of the link's sockets.
    rejections: RefCell<Rejections>,
}

impl LinkActivity {
    pub fn frame_seen(&self, at: DateTime<Utc>) {
        let latest = self.last_frame_at.get().map_or(at, |last| last.max(at));
        self.last_frame_at.set(Some(latest));
    }

    pub fn heartbeat_seen(&self, at: Instant) {
        let latest = self.last_heartbeat_at.get().map_or(at, |last| last.max(at));
        self.last_heartbeat_at.set(Some(latest));
    }

    pub fn last_frame_at(&self) -> Option<DateTime<Utc>> {
        self.last_frame_at.get()
    }

    pub fn last_heartbeat_at(&self) -> Option<Instant> {
        self.last_heartbeat_at.get()
    }

    /// A message that did not parse: counted, kept (bounded) and returned for the log.
    pub fn malformed(&self, error: &convoy::parse::ParseError, bytes: usize) -> Rejection {
        self.rejections.borrow_mut().malformed(error, bytes)
    }

    /// A message the reassembly caps refused: counted, kept (bounded) and returned.
    pub fn refused(&self, reason: &'static str, detail: &str, bytes: usize) -> Rejection {
        self.rejections.borrow_mut().refused(reason, detail, bytes)
    }

    pub fn rejections(&self) -> Rejections {
        self.rejections.borrow().clone()
    }
}

// ---- Messages --------------------------------------------------------------------------

/// Shutdown step 1: stop accepting frames. Pending connects are cancelled, every socket is
/// closed cleanly (Close sent, the peer's awaited briefly), nothing reconnects afterwards.
/// Resolves when the sockets are closed (bounded). Idempotent.
///
/// Edge: shutdown sequence → StreamActor, `send().await`.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct StopStream;

/// What the stream looks like now (tests, diagnostics).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "StreamStatus")]
pub struct GetStreamStatus;

/// Follow (or stop following) one conversation's real-time transcription topic,
/// `v2.conversations.{id}.transcription`. Voice calls only: the router asks when a voice
/// conversation goes live and again when it ends or is evicted.
///
/// Edge: router → stream with `do_send` (rare control message, one per voice call start
/// and end; the router must never wait on the stream, which waits on the router).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct WatchTranscription {
    pub conversation_id: convoy::ids::ConversationId,
    /// `true` to subscribe, `false` to unsubscribe.
    pub watch: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, MessageResponse)]
pub struct StreamStatus {
    pub links: Vec<LinkStatus>,
    pub totals: StreamCounters,
    /// Every link's rejections together (this daemon's, unlike the process-wide metrics).
    pub rejections: Rejections,
    pub stopping: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkStatus {
    pub topics: usize,
    pub channel_id: Option<String>,
    pub channel_expires: Option<DateTime<Utc>>,
    pub connected: bool,
    pub permitted: Vec<String>,
    pub rejected: Vec<RejectedTopic>,
    pub last_frame_at: Option<DateTime<Utc>>,
    pub counters: StreamCounters,
    /// Bad input this link was sent: counts and the most recent, with their JSON paths.
    pub rejections: Rejections,
    /// Transcription topics placed on this channel (subscribed or about to be).
    pub transcriptions: usize,
}

/// A connection task's report to the actor (internal edge, `do_send`: rare control).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SocketEvent {
    pub link: usize,
    pub connection: u64,
    pub signal: SocketSignal,
}

/// What a connection saw that only the actor can act on.
#[derive(Debug, Clone, PartialEq)]
pub enum SocketSignal {
    /// `v2.system.socket_closing`: rotate now.
    SocketClosing,
    /// Any other `v2.system.*` frame.
    System {
        topic: String,
        system_topic_type: Option<String>,
        reason: Option<String>,
    },
    /// `{"result":"404", …}`: the channel no longer exists.
    ChannelGone { message: Option<String> },
    /// The connection's task has ended.
    Ended(SocketEnd),
    /// The router did not take an event of this conversation (other than for shutdown):
    /// the actor re-reads it through REST.
    Undelivered {
        conversation_id: convoy::ids::ConversationId,
    },
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketEnd {
    /// The actor asked (rotation, rebuild, stop).
    ClosedByUs {
        drain: bool,
    },
    PeerClosed {
        code: Option<u16>,
        description: Option<String>,
    },
    /// The stream ended without a close frame.
    Dropped,
    Silence {
        silent_for: Duration,
    },
    ProtocolError(String),
    /// Continuation reassembly refused a frame (label of the error).
    Reassembly(&'static str),
}

impl SocketEnd {
    fn gap_reason(&self) -> GapReason {
        match self {
            SocketEnd::ClosedByUs { .. } | SocketEnd::PeerClosed { .. } => GapReason::Closed,
            SocketEnd::Dropped => GapReason::Dropped,
            SocketEnd::Silence { .. } => GapReason::Silence,
            SocketEnd::ProtocolError(_) | SocketEnd::Reassembly(_) => GapReason::Error,
        }
    }
}
