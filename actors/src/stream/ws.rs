//! Socket I/O for one Notifications WebSocket connection: connect, then one local task per
//! connection that reads frames in order and does everything that must happen per frame.
//!
//! The task owns the awc socket (it is not `Send`, so the task is spawned on the actor's
//! arbiter with `actix_rt::spawn`) and:
//! - answers RFC 6455 Ping with Pong and Close with Close (awc does neither by itself,
//!   anchors.md §3 #13);
//! - reassembles continuation frames under a byte cap and a fragment cap
//!   ([`Reassembler`], §3 #11);
//! - runs the connection's watchdog ([`Liveness`]): any frame resets it, an idle socket
//!   gets `{"message":"ping"}`, a silent one is given up (§3 #13, API.md §3.3);
//! - records each text frame (`--record`), classifies it, counts it by kind, and hands
//!   conversation data to the router **in order**: it awaits each delivery before reading
//!   the next frame, so a slow router back-pressures this socket (TCP) instead of growing
//!   a queue, and frames of one socket can never overtake each other. An event the router
//!   refuses (other than for shutdown) is counted, logged and reported, so the actor
//!   re-reads that conversation later; the socket reads on;
//! - reports what only the actor can decide (socket_closing, other `v2.system.*`, a
//!   `404` channel reply, the end of the connection) as [`SocketEvent`]s.
//!
//! It must never decide about channels (rotation, rebuild, reconnect: the actor does), and
//! never end the process: every failure ends this connection with an [`SocketEnd`] reason.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{MailboxError, Recipient};
use awc::error::{WsClientError, WsProtocolError};
use awc::ws::{CloseCode, CloseReason, Frame, Message};
use chrono::{DateTime, Utc};
use convoy::cluster::{call_liveness, CallLiveness};
use convoy::ids::ConversationId;
use convoy::parse::{classify_bytes_fresh, Classified, FrameKind, Fresh};
use convoy::stream::duplicates::RecentBodies;
use convoy::stream::{
    FramePart, Liveness, LivenessDecision, LivenessPolicy, Reassembled, Reassembler,
};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::mpsc;

use super::recorder::Recorder;
use super::{LinkActivity, SocketEnd, SocketEvent, SocketSignal};
use crate::admin::HealthBoard;
use crate::cluster::ingest::FramePublisher;
use crate::conversation::messages::{ConversationInput, RouteError, RouteEvent};
use crate::outbox_writer::OutboxGate;
use crate::telemetry::{names, ActorMetrics};

/// actix-http's continuation item (`Frame::Continuation`). awc does not re-export it;
/// actix-ws re-exports the same type (one actix-http in the tree).
pub use actix_ws::Item;

/// The actor type label of the StreamActor, whose mailbox the reports go to.
const STREAM_ACTOR: &str = "stream";

/// The application-level ping Genesys answers with a pong (API.md §3.3).
pub const PING_FRAME: &str = r#"{"message":"ping"}"#;
/// One `send` to the router may wait this long for its mailbox and its answer. A router
/// that does not take an event in time never stalls the socket: the event is counted,
/// logged and its conversation re-read later ([`SocketSignal::Undelivered`]).
const ROUTE_SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on writing one frame (pong, ping, close) to a peer that does not read.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// After our Close, how long to wait for the peer's Close (and, when draining, keep
/// routing the frames it still sends).
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// The most fragments one message may span. Genesys sends whole frames; a peer that
/// fragments into more pieces than this is misbehaving.
pub const MAX_FRAGMENTS: usize = 1024;

/// What an awc WebSocket is, named by what this module needs of it.
pub trait WsSocket:
    Stream<Item = Result<Frame, WsProtocolError>> + Sink<Message, Error = WsProtocolError> + Unpin
{
}

impl<T> WsSocket for T where
    T: Stream<Item = Result<Frame, WsProtocolError>>
        + Sink<Message, Error = WsProtocolError>
        + Unpin
{
}

/// A connected socket, ready for [`spawn`].
pub type BoxedWs = Box<dyn WsSocket>;

/// Why a connect failed. awc's errors are not `Send`; only their text crosses over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The handshake was answered 404: the channel no longer exists.
    #[error("the channel is gone (HTTP 404 on the WebSocket handshake)")]
    ChannelGone,
    #[error("WebSocket handshake failed: {0}")]
    Handshake(String),
    #[error("WebSocket connect timed out after {0:?}")]
    Timeout(Duration),
}

/// The WebSocket client of one actor (awc's `Client` is not `Send`: build it in
/// `started()`).
///
/// HTTP/1.1 only: awc offers `h2` and `http/1.1` by ALPN, and when a `wss://` server
/// picks h2 the upgrade fails ("Tunnels are not supported for http2 connection", deps.md
/// trap 1). The connector's timeout bounds TCP connect and TLS; the client's timeout
/// bounds the whole handshake (awc's 5 s default would otherwise apply, anchors.md §3 #15).
pub fn ws_client(connect_timeout: Duration, handshake_timeout: Duration) -> awc::Client {
    let connector = awc::Connector::new()
        .max_http_version(awc::http::Version::HTTP_11)
        .timeout(connect_timeout)
        .handshake_timeout(connect_timeout);
    awc::Client::builder()
        .connector(connector)
        .timeout(handshake_timeout)
        .finish()
}

/// Connects to `connect_uri` verbatim, with no Authorization header: the channel is bound
/// to the token that created it (API.md §3.3). `max_frame_bytes` replaces awc's 64 KiB
/// default (anchors.md §3 #12).
pub async fn connect(
    client: &awc::Client,
    connect_uri: &str,
    max_frame_bytes: usize,
    handshake_timeout: Duration,
) -> Result<BoxedWs, ConnectError> {
    let handshake = client
        .ws(connect_uri)
        .max_frame_size(max_frame_bytes)
        .connect();
    // Belt and braces over the client timeout: a connect must never hang the link.
    match actix_rt::time::timeout(handshake_timeout, handshake).await {
        Err(_) => Err(ConnectError::Timeout(handshake_timeout)),
        Ok(Err(WsClientError::InvalidResponseStatus(status))) if status.as_u16() == 404 => {
            Err(ConnectError::ChannelGone)
        }
        Ok(Err(error)) => Err(ConnectError::Handshake(error.to_string())),
        Ok(Ok((_, framed))) => Ok(Box::new(framed)),
    }
}

/// How the task was asked to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketCommand {
    /// Send Close and wait briefly for the peer's. `drain`: keep routing the data frames
    /// the peer sends before its Close (a rotation retiring the old socket: those frames
    /// may not have reached the new one). Without `drain` (shutdown) they are discarded.
    Close { drain: bool },
}

/// What one connection's task is given.
pub struct SocketSpec {
    pub link: usize,
    pub connection: u64,
    pub channel_id: String,
    pub max_frame_bytes: usize,
    pub liveness: LivenessPolicy,
}

/// Where the task's output goes.
#[derive(Clone)]
pub struct SocketWiring {
    pub events: Recipient<SocketEvent>,
    pub router: Recipient<RouteEvent>,
    pub activity: Rc<LinkActivity>,
    pub recorder: Option<Rc<RefCell<Recorder>>>,
    /// `/readyz`'s "last frame recent".
    pub board: Arc<HealthBoard>,
    /// Closed while the outbox cannot take more: the socket waits before routing.
    pub gate: Option<Arc<OutboxGate>>,
    /// The cluster's ingest role: conversation frames are published to the JetStream
    /// stream (the exact bytes) instead of being routed here.
    pub publisher: Option<FramePublisher>,
}

/// The actor's side of a running connection.
pub struct SocketHandle {
    pub connection: u64,
    pub channel_id: String,
    pub connected_at: Instant,
    commands: mpsc::UnboundedSender<SocketCommand>,
    join: actix_rt::task::JoinHandle<()>,
}

impl std::fmt::Debug for SocketHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketHandle")
            .field("connection", &self.connection)
            .field("channel_id", &self.channel_id)
            .finish_non_exhaustive()
    }
}

impl SocketHandle {
    /// Asks the task to close cleanly; a task that already ended ignores it.
    pub fn close(&self, drain: bool) {
        let _ = self.commands.send(SocketCommand::Close { drain });
    }

    /// Ends the task at once (restart, or a close that overran its deadline).
    pub fn abort(&self) {
        self.join.abort();
    }

    pub fn is_finished(&self) -> bool {
        self.join.is_finished()
    }

    /// Resolves when the task has ended.
    pub fn into_join(self) -> actix_rt::task::JoinHandle<()> {
        self.join
    }
}

/// Starts the task of a freshly connected socket on the current arbiter.
pub fn spawn(socket: BoxedWs, spec: SocketSpec, wiring: SocketWiring) -> SocketHandle {
    let (commands, inbox) = mpsc::unbounded_channel();
    let connection = spec.connection;
    let channel_id = spec.channel_id.clone();
    let task = SocketTask {
        reassembler: Reassembler::new(spec.max_frame_bytes, MAX_FRAGMENTS),
        liveness: Liveness::new(spec.liveness, Duration::ZERO),
        origin: Instant::now(),
        recent: RecentBodies::default(),
        socket,
        spec,
        wiring,
    };
    let join = actix_rt::spawn(task.run(inbox));
    SocketHandle {
        connection,
        channel_id,
        connected_at: Instant::now(),
        commands,
        join,
    }
}

/// What to do after one frame.
enum Step {
    Continue,
    End(SocketEnd),
}

struct SocketTask {
    socket: BoxedWs,
    spec: SocketSpec,
    wiring: SocketWiring,
    reassembler: Reassembler,
    liveness: Liveness,
    /// Origin of the watchdog's monotonic clock.
    origin: Instant,
    /// The snapshot bodies this socket read last: a byte-identical copy (the same change
    /// on another topic) is dropped before its typed parse.
    recent: RecentBodies,
}

impl SocketTask {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    async fn run(mut self, mut inbox: mpsc::UnboundedReceiver<SocketCommand>) {
        let end = self.read_loop(&mut inbox).await;
        let end = match end {
            SocketEnd::ClosedByUs { drain } => {
                self.close_handshake(drain).await;
                SocketEnd::ClosedByUs { drain }
            }
            other => other,
        };
        tracing::debug!(
            link = self.spec.link,
            connection = self.spec.connection,
            channel = %self.spec.channel_id,
            end = ?end,
            "Stream socket ended."
        );
        self.report(SocketSignal::Ended(end));
    }

    async fn read_loop(&mut self, inbox: &mut mpsc::UnboundedReceiver<SocketCommand>) -> SocketEnd {
        loop {
            let now = self.now();
            let next_check_at = match self.liveness.decide(now) {
                LivenessDecision::Healthy { next_check_at } => next_check_at,
                LivenessDecision::SendPing => {
                    tracing::debug!(
                        connection = self.spec.connection,
                        "Stream idle; sending a ping."
                    );
                    if let Err(end) = self.send(Message::Text(PING_FRAME.into())).await {
                        return end;
                    }
                    self.liveness.ping_sent(self.now());
                    continue;
                }
                LivenessDecision::Reconnect { silent_for } => {
                    return SocketEnd::Silence { silent_for };
                }
            };
            let deadline = tokio::time::Instant::from_std(self.origin + next_check_at);
            tokio::select! {
                // Commands first: a close asked for must not wait behind a busy socket.
                biased;
                command = inbox.recv() => match command {
                    Some(SocketCommand::Close { drain }) => return SocketEnd::ClosedByUs { drain },
                    // The actor dropped its handle without a word (it restarted): stop.
                    None => return SocketEnd::ClosedByUs { drain: false },
                },
                frame = self.socket.next() => match frame {
                    None => return SocketEnd::Dropped,
                    Some(Err(WsProtocolError::Overflow)) => {
                        // awc refused one frame over `max_frame_size`, before reassembly
                        // (its size is not known: more than the cap).
                        self.refused_message("too_large", None);
                        return SocketEnd::Reassembly("too_large");
                    }
                    Some(Err(error)) => return SocketEnd::ProtocolError(error.to_string()),
                    Some(Ok(frame)) => {
                        if let Step::End(end) = self.on_frame(frame, true).await {
                            return end;
                        }
                    }
                },
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// Sends one frame, bounded: a peer that does not read must not stall the task.
    async fn send(&mut self, message: Message) -> Result<(), SocketEnd> {
        match actix_rt::time::timeout(SEND_TIMEOUT, self.socket.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(SocketEnd::ProtocolError(format!("sending: {error}"))),
            Err(_) => Err(SocketEnd::ProtocolError(format!(
                "sending took longer than {SEND_TIMEOUT:?}"
            ))),
        }
    }

    /// One frame off the wire. `route`: deliver conversation data (false while closing
    /// without drain).
    async fn on_frame(&mut self, frame: Frame, route: bool) -> Step {
        let now = self.now();
        // Any frame, control frames included, is a sign of life.
        self.liveness.frame_received(now);
        self.wiring.board.frame_seen(Instant::now());
        let part = match frame {
            Frame::Ping(payload) => {
                return match self.send(Message::Pong(payload)).await {
                    Ok(()) => Step::Continue,
                    Err(end) => Step::End(end),
                };
            }
            Frame::Pong(_) => return Step::Continue,
            Frame::Close(reason) => {
                // Echo the close (RFC 6455 §5.5.1), best effort: the peer is leaving anyway.
                let _ = self.send(Message::Close(reason.clone())).await;
                return Step::End(SocketEnd::PeerClosed {
                    code: reason.as_ref().map(|r| u16::from(r.code)),
                    description: reason.and_then(|r| r.description),
                });
            }
            Frame::Text(bytes) => FramePart::Text(bytes.to_vec()),
            Frame::Binary(bytes) => FramePart::Binary(bytes.to_vec()),
            Frame::Continuation(Item::FirstText(bytes)) => FramePart::ContinueFirst {
                text: true,
                bytes: bytes.to_vec(),
            },
            Frame::Continuation(Item::FirstBinary(bytes)) => FramePart::ContinueFirst {
                text: false,
                bytes: bytes.to_vec(),
            },
            Frame::Continuation(Item::Continue(bytes)) => FramePart::Continue(bytes.to_vec()),
            Frame::Continuation(Item::Last(bytes)) => FramePart::ContinueLast(bytes.to_vec()),
        };
        match self.reassembler.push(part) {
            Ok(None) => Step::Continue,
            Ok(Some(message)) => self.on_message(message, route).await,
            Err(error) => {
                metrics::counter!(names::STREAM_FRAMES, "kind" => "malformed").increment(1);
                // 1009 for a message too big (a setting can fix it), 1002 for broken
                // framing (nothing to configure); best effort.
                let code = match error {
                    convoy::stream::ReassemblyError::TooLarge { size, .. } => {
                        self.refused_message(error.as_str(), Some(size));
                        CloseCode::Size
                    }
                    convoy::stream::ReassemblyError::TooManyFragments { .. } => {
                        self.refused_message(error.as_str(), None);
                        CloseCode::Size
                    }
                    _ => {
                        self.wiring
                            .activity
                            .refused(error.as_str(), &error.to_string(), 0);
                        tracing::warn!(
                            connection = self.spec.connection,
                            channel = %self.spec.channel_id,
                            reason = error.as_str(),
                            %error,
                            "WebSocket message refused; the framing can no longer be trusted, reconnecting."
                        );
                        CloseCode::Protocol
                    }
                };
                let _ = self
                    .send(Message::Close(Some(CloseReason {
                        code,
                        description: None,
                    })))
                    .await;
                Step::End(SocketEnd::Reassembly(error.as_str()))
            }
        }
    }

    /// A message the caps refused ends this socket and costs a reconnect plus a full
    /// reconciliation: say so loudly, naming the setting, every time.
    /// `size`: how much of the message had arrived, when known.
    fn refused_message(&self, reason: &'static str, size: Option<usize>) {
        metrics::counter!(names::STREAM_OVERSIZED_FRAMES, "reason" => reason).increment(1);
        let max_frame_bytes = self.spec.max_frame_bytes;
        let detail = match size {
            Some(size) => format!(
                "message of at least {size} bytes refused (stream.max_frame_bytes = {max_frame_bytes}, at most {MAX_FRAGMENTS} fragments)"
            ),
            None => format!(
                "message refused (stream.max_frame_bytes = {max_frame_bytes}, at most {MAX_FRAGMENTS} fragments)"
            ),
        };
        self.wiring
            .activity
            .refused(reason, &detail, size.unwrap_or(0));
        tracing::warn!(
            connection = self.spec.connection,
            channel = %self.spec.channel_id,
            reason,
            size_bytes = size,
            max_frame_bytes = self.spec.max_frame_bytes,
            max_fragments = MAX_FRAGMENTS,
            "A WebSocket message exceeded stream.max_frame_bytes (or the fragment cap); the socket is closed and the stream reconnects and reconciles. Raise stream.max_frame_bytes if this repeats."
        );
    }

    /// A complete message: record, classify, count, act.
    async fn on_message(&mut self, mut message: Reassembled, route: bool) -> Step {
        let received_at = Utc::now();
        self.wiring.activity.frame_seen(received_at);
        self.record(received_at, &message.bytes);
        let classified = match classify_bytes_fresh(&message.bytes, &mut self.recent) {
            Ok(Fresh::Frame(classified)) => classified,
            Ok(Fresh::Duplicate) => {
                // Seen, recorded and proof of life like any frame (above and in
                // `on_frame`); joining it again would change nothing, so it is not routed.
                metrics::counter!(names::STREAM_FRAMES, "kind" => FrameKind::Snapshot.as_str())
                    .increment(1);
                metrics::counter!(names::STREAM_DUPLICATE_SNAPSHOTS).increment(1);
                return Step::Continue;
            }
            Err(error) => {
                // Never fatal: one bad frame must not cost the connection. Counted for
                // this daemon with its JSON path; the log gets the same bounded text (a
                // mistyped giant string is quoted whole by serde).
                metrics::counter!(names::STREAM_FRAMES, "kind" => "malformed").increment(1);
                let rejection = self.wiring.activity.malformed(&error, message.bytes.len());
                tracing::warn!(
                    connection = self.spec.connection,
                    channel = %self.spec.channel_id,
                    path = %rejection.path,
                    reason = rejection.reason,
                    error = %rejection.detail,
                    bytes = rejection.bytes,
                    "Malformed frame skipped."
                );
                return Step::Continue;
            }
        };
        metrics::counter!(names::STREAM_FRAMES, "kind" => classified.kind().as_str()).increment(1);
        match classified {
            Classified::Heartbeat => {
                self.liveness.heartbeat_received(self.now());
                self.wiring.activity.heartbeat_seen(Instant::now());
            }
            Classified::Pong => {}
            Classified::SocketClosing { message } => {
                tracing::info!(
                    connection = self.spec.connection,
                    channel = %self.spec.channel_id,
                    message = message.as_deref().unwrap_or(""),
                    "Genesys announced the socket will close."
                );
                self.report(SocketSignal::SocketClosing);
            }
            Classified::System { topic, body } => {
                self.report(SocketSignal::System {
                    topic,
                    system_topic_type: body.system_topic_type,
                    reason: body.reason,
                });
            }
            Classified::ChannelReply(reply) => {
                if reply.result.as_deref() == Some("404") {
                    self.report(SocketSignal::ChannelGone {
                        message: reply.message,
                    });
                } else {
                    tracing::debug!(
                        connection = self.spec.connection,
                        result = reply.result.as_deref().unwrap_or(""),
                        status = reply.status.as_deref().unwrap_or(""),
                        "Channel reply."
                    );
                }
            }
            Classified::Snapshot { snapshot, .. } => {
                if route && self.wiring.publisher.is_some() {
                    let bytes = std::mem::take(&mut message.bytes);
                    let call = call_liveness(&snapshot);
                    return self
                        .publish(bytes, &snapshot.conversation_id, call, received_at)
                        .await;
                }
                if route {
                    return self
                        .route(ConversationInput::Snapshot(snapshot), received_at)
                        .await;
                }
            }
            Classified::Transcription(event) => {
                if route && self.wiring.publisher.is_some() {
                    let bytes = std::mem::take(&mut message.bytes);
                    return self
                        .publish(
                            bytes,
                            &event.conversation_id,
                            CallLiveness::Silent,
                            received_at,
                        )
                        .await;
                }
                if route {
                    return self
                        .route(ConversationInput::Transcription(event), received_at)
                        .await;
                }
            }
            // Detail events and topics Convoy does not follow carry nothing the router
            // takes; they are counted above.
            Classified::Detail(_) | Classified::UnknownTopic { .. } => {}
        }
        Step::Continue
    }

    fn record(&self, received_at: DateTime<Utc>, bytes: &[u8]) {
        let Some(recorder) = &self.wiring.recorder else {
            return;
        };
        let text = String::from_utf8_lossy(bytes);
        // Never held across an await: the borrow ends with this statement.
        recorder.borrow_mut().record(received_at, &text);
    }

    /// Hands one event to the router and waits for it to be taken (in-order delivery).
    /// Never ends the connection: an event the router did not take is re-read later.
    async fn route(&mut self, input: ConversationInput, observed_at: DateTime<Utc>) -> Step {
        let conversation_id = input.conversation_id().clone();
        if let Some(gate) = &self.wiring.gate {
            gate.wait_open().await;
        }
        let event = RouteEvent { input, observed_at };
        let outcome = deliver(&self.wiring.router, event).await;
        // The socket was not read while the router held us up; that quiet is ours, not
        // the peer's, so the watchdog starts a fresh window instead of declaring silence.
        self.liveness.frame_received(self.now());
        if let Delivery::Dropped(reason) = outcome {
            if reason != "shutting_down" && reason != "router_gone" {
                self.report(SocketSignal::Undelivered { conversation_id });
            }
        }
        Step::Continue
    }

    /// The cluster's ingest: publishes the frame's exact bytes and waits for the stream's
    /// ack (retried inside), in order, like [`Self::route`]. A frame that could not be
    /// published is re-read and published as a `reread` later (reported like an event
    /// the router did not take).
    async fn publish(
        &mut self,
        bytes: Vec<u8>,
        conversation_id: &ConversationId,
        call: CallLiveness,
        observed_at: DateTime<Utc>,
    ) -> Step {
        let Some(publisher) = self.wiring.publisher.clone() else {
            return Step::Continue;
        };
        let outcome = publisher
            .publish_frame(bytes.into(), conversation_id, call, observed_at)
            .await;
        // Waiting on NATS is our quiet, not the peer's (as for the router).
        self.liveness.frame_received(self.now());
        if outcome.is_err() {
            self.report(SocketSignal::Undelivered {
                conversation_id: conversation_id.clone(),
            });
        }
        Step::Continue
    }

    /// After our Close: wait for the peer's Close (bounded), routing data frames meanwhile
    /// if `drain`.
    async fn close_handshake(&mut self, drain: bool) {
        if self
            .send(Message::Close(Some(CloseReason {
                code: CloseCode::Normal,
                description: None,
            })))
            .await
            .is_err()
        {
            return;
        }
        let until = tokio::time::Instant::now() + CLOSE_WAIT;
        loop {
            let frame = match tokio::time::timeout_at(until, self.socket.next()).await {
                Err(_) | Ok(None) | Ok(Some(Err(_))) => return,
                Ok(Some(Ok(frame))) => frame,
            };
            match frame {
                Frame::Close(_) => return,
                frame => {
                    if let Step::End(_) = self.on_frame(frame, drain).await {
                        return;
                    }
                }
            }
        }
    }

    fn report(&self, signal: SocketSignal) {
        // `do_send`: rare control messages; the actor's mailbox is never the data path.
        ActorMetrics::sent(STREAM_ACTOR);
        self.wiring.events.do_send(SocketEvent {
            link: self.spec.link,
            connection: self.spec.connection,
            signal,
        });
    }
}

/// The outcome of handing one event to the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// Not delivered; the reason is a metric label.
    Dropped(&'static str),
}

/// `send().await` under [`ROUTE_SEND_TIMEOUT`], once. A refusal other than shutdown
/// (`AtCapacity`, `Timeout`, no answer in time) is counted in
/// `convoy_stream_route_dropped_total{reason}` and logged; the caller has the conversation
/// re-read. The socket is never held up beyond the timeout.
pub async fn deliver(router: &Recipient<RouteEvent>, event: RouteEvent) -> Delivery {
    ActorMetrics::sent("router");
    // Only the id is needed afterwards: the event itself (often a whole snapshot) moves.
    let conversation_id = event.input.conversation_id().clone();
    let reason = match router.send(event).timeout(ROUTE_SEND_TIMEOUT).await {
        Ok(Ok(())) => return Delivery::Delivered,
        Ok(Err(RouteError::ShuttingDown)) => {
            metrics::counter!(names::STREAM_ROUTE_DROPPED, "reason" => "shutting_down")
                .increment(1);
            tracing::debug!("The router is shutting down; a stream event was not delivered.");
            return Delivery::Dropped("shutting_down");
        }
        Err(MailboxError::Closed) => {
            // Never enqueued: it will never be handled.
            ActorMetrics::undelivered("router");
            metrics::counter!(names::STREAM_ROUTE_DROPPED, "reason" => "router_gone").increment(1);
            tracing::error!(
                conversation = %conversation_id,
                "The router is gone; a stream event could not be delivered."
            );
            return Delivery::Dropped("router_gone");
        }
        Ok(Err(RouteError::AtCapacity { .. })) => "at_capacity",
        Ok(Err(RouteError::Timeout(_))) => "timeout",
        Err(MailboxError::Timeout) => {
            ActorMetrics::send_timeout("router");
            "send_timeout"
        }
    };
    metrics::counter!(names::STREAM_ROUTE_DROPPED, "reason" => reason).increment(1);
    tracing::warn!(
        conversation = %conversation_id,
        reason,
        "The router did not take a stream event; its conversation will be re-read."
    );
    Delivery::Dropped(reason)
}
