//! Channel WebSockets at `ws://HOST/channels/{id}` (API.md §3.3): no authentication (the
//! channel is bound to its token), JSON text frames, heartbeats, ping → pong, the
//! WebSocket-side subscribe protocol, RFC 6455 Ping answered with Pong, one socket per
//! channel, and for bad-input tests any bytes the control API is handed ([`RawFrame`]).
//! Each socket is one task that owns the actix-ws session; everything else talks to it
//! through a bounded outbox ([`SocketHandle`]), so a slow reader costs at most
//! [`OUTBOX_CAPACITY`] frames before it is dropped — the emulator never buffers without
//! bound and never blocks a publisher on a client.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{CloseCode, CloseReason, Message, MessageStream, Session};
use convoy::emulator::platform::{frames, ChannelId, SocketId, WsCommandOutcome};
use tokio::sync::{mpsc, Notify};

use super::{lock, EmulatorShared};

/// Frames a socket may have queued before it counts as not reading and is dropped.
pub const OUTBOX_CAPACITY: usize = 1024;
/// Largest frame accepted from a client; subscribe commands are small.
const MAX_INBOUND_FRAME: usize = 256 * 1024;

/// What the rest of the emulator asks of a socket.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// Send this text frame.
    Frame(String),
    /// Send these bytes as they are (the control API's raw frames: bad input tests).
    Raw(RawFrame),
    /// Send this last frame (if any), then a close frame, then end.
    Close(Option<String>),
    /// End the connection without a close frame, as a network failure would.
    Drop,
}

/// A frame pushed through the control API (`POST /emulator/v1/sockets/raw`), sent
/// without any check: what a broken or hostile server could send.
#[derive(Debug, Clone)]
pub(crate) enum RawFrame {
    /// One text frame (the bytes are UTF-8: the route checked).
    Text(String),
    /// One binary frame.
    Binary(bytes::Bytes),
    /// A text message whose bytes are not checked for UTF-8, sent as a first text
    /// fragment and an empty last one (a single text frame must be UTF-8 on this side).
    UncheckedText(bytes::Bytes),
}

/// The registry's side of a socket.
pub(crate) struct SocketHandle {
    outbox: mpsc::Sender<Outbound>,
    /// Wakes the task to drop the connection at once (outbox overflow, `Drop` that does not
    /// fit in the outbox).
    kill: Arc<Notify>,
}

impl SocketHandle {
    pub(crate) fn feed(&self) -> SocketFeed {
        SocketFeed {
            outbox: self.outbox.clone(),
        }
    }

    /// Queues without waiting. A full outbox means the client is not reading: drop it.
    pub(crate) fn send(&self, message: Outbound) {
        match self.outbox.try_send(message) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(
                    capacity = self.outbox.max_capacity(),
                    "Emulator socket outbox full; dropping the socket."
                );
                self.kill.notify_one();
            }
            // The task already ended; it removes itself from the registry.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// A load generator's handle on one socket's outbox ([`super::EmulatorShared::socket_feeds`]).
#[derive(Debug, Clone)]
pub struct SocketFeed {
    outbox: mpsc::Sender<Outbound>,
}

impl SocketFeed {
    /// Queues one text frame, waiting while the outbox is full (the client is behind).
    /// False once the socket is gone.
    pub async fn send(&self, frame: String) -> bool {
        self.outbox.send(Outbound::Frame(frame)).await.is_ok()
    }

    /// [`SocketFeed::send`] from a plain thread (not a runtime's): the load generator runs
    /// on its own thread so it does not take turns with the daemon it measures.
    pub fn send_blocking(&self, frame: String) -> bool {
        self.outbox.blocking_send(Outbound::Frame(frame)).is_ok()
    }

    /// Whether the socket has ended.
    pub fn is_closed(&self) -> bool {
        self.outbox.is_closed()
    }
}

/// `GET /channels/{id}` with an upgrade: 404 ErrorBody for an unknown or dead channel.
pub(super) async fn connect(
    req: HttpRequest,
    body: web::Payload,
    path: web::Path<String>,
    shared: web::Data<EmulatorShared>,
) -> Result<HttpResponse, actix_web::Error> {
    let channel = ChannelId(path.into_inner());
    // The handshake first: a plain GET must not take the channel's socket slot.
    let (response, session, stream) = actix_ws::handle(&req, body)?;
    let now = shared.now();
    let attached = lock(&shared.platform).attach_socket(channel.as_str(), now);
    let attached = match attached {
        Ok(attached) => attached,
        Err(_) => {
            let context = uuid::Uuid::new_v4().to_string();
            return Ok(HttpResponse::build(StatusCode::NOT_FOUND).json(frames::not_found(&context)));
        }
    };
    let (outbox, inbox) = mpsc::channel(shared.socket_outbox);
    let kill = Arc::new(Notify::new());
    {
        let mut sockets = lock(&shared.sockets);
        sockets.insert(
            attached.socket,
            SocketHandle {
                outbox,
                kill: kill.clone(),
            },
        );
        // One socket per channel: the previous one is closed.
        if let Some(replaced) = attached.replaced.and_then(|old| sockets.get(&old)) {
            replaced.send(Outbound::Close(None));
        }
    }
    tracing::debug!(%channel, socket = attached.socket.0, "Emulator socket connected.");
    let stream = stream.max_frame_size(MAX_INBOUND_FRAME);
    let task = SocketTask {
        shared: shared.clone(),
        channel,
        socket: attached.socket,
        session,
        kill,
    };
    actix_web::rt::spawn(task.run(stream, inbox));
    Ok(response)
}

/// Why the socket loop ended.
enum End {
    /// Send a close frame (and this last text first).
    Close(Option<String>, CloseCode),
    /// Just stop: the peer is gone, or a drop was asked for.
    Drop,
}

struct SocketTask {
    shared: web::Data<EmulatorShared>,
    channel: ChannelId,
    socket: SocketId,
    session: Session,
    kill: Arc<Notify>,
}

impl SocketTask {
    /// Sends one text frame, unless a kill arrives while the client is not reading.
    async fn send(&mut self, frame: String) -> Result<(), End> {
        tokio::select! {
            sent = self.session.text(frame) => sent.map_err(|_| End::Drop),
            _ = self.kill.notified() => Err(End::Drop),
        }
    }

    /// Sends a control-API frame as it is, unless a kill arrives meanwhile.
    async fn send_raw(&mut self, frame: RawFrame) -> Result<(), End> {
        let mut session = self.session.clone();
        let kill = self.kill.clone();
        let sending = async move {
            match frame {
                RawFrame::Text(text) => session.text(text).await,
                RawFrame::Binary(bytes) => session.binary(bytes).await,
                RawFrame::UncheckedText(bytes) => {
                    session
                        .continuation(actix_ws::Item::FirstText(bytes))
                        .await?;
                    session
                        .continuation(actix_ws::Item::Last(bytes::Bytes::new()))
                        .await
                }
            }
        };
        tokio::select! {
            sent = sending => sent.map_err(|_| End::Drop),
            _ = kill.notified() => Err(End::Drop),
        }
    }

    async fn run(mut self, mut stream: MessageStream, mut inbox: mpsc::Receiver<Outbound>) {
        let period = self.shared.heartbeat;
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let end = loop {
            let step = tokio::select! {
                _ = self.kill.notified() => Err(End::Drop),
                _ = heartbeat.tick() => self.send(frames::heartbeat_frame()).await,
                outbound = inbox.recv() => match outbound {
                    Some(Outbound::Frame(frame)) => self.send(frame).await,
                    Some(Outbound::Raw(frame)) => self.send_raw(frame).await,
                    Some(Outbound::Close(last)) => Err(End::Close(last, CloseCode::Normal)),
                    Some(Outbound::Drop) | None => Err(End::Drop),
                },
                inbound = stream.recv() => self.on_inbound(inbound).await,
            };
            if let Err(end) = step {
                break end;
            }
        };
        if let End::Close(last, code) = end {
            if let Some(last) = last {
                // Bounded: a client that stopped reading must not keep the task alive.
                let _ = tokio::time::timeout(Duration::from_secs(1), self.session.text(last)).await;
            }
            let reason = CloseReason {
                code,
                description: None,
            };
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                self.session.clone().close(Some(reason)),
            )
            .await;
        }
        // Dropping the session ends the response body: the connection closes.
        lock(&self.shared.sockets).remove(&self.socket);
        let now = self.shared.now();
        lock(&self.shared.platform).detach_socket(&self.channel, self.socket, now);
        tracing::debug!(channel = %self.channel, socket = self.socket.0, "Emulator socket ended.");
    }

    async fn on_inbound(
        &mut self,
        inbound: Option<Result<Message, actix_ws::ProtocolError>>,
    ) -> Result<(), End> {
        match inbound {
            Some(Ok(Message::Text(text))) => {
                let now = self.shared.now();
                let outcome = lock(&self.shared.platform).ws_command(&self.channel, &text, now);
                match outcome {
                    WsCommandOutcome::Reply(reply) => self.send(reply).await,
                    WsCommandOutcome::ChannelGone => Err(End::Close(
                        Some(frames::channel_gone_frame()),
                        CloseCode::Normal,
                    )),
                }
            }
            Some(Ok(Message::Ping(payload))) => {
                tokio::select! {
                    sent = self.session.pong(&payload) => sent.map_err(|_| End::Drop),
                    _ = self.kill.notified() => Err(End::Drop),
                }
            }
            Some(Ok(Message::Close(_))) => Err(End::Close(None, CloseCode::Normal)),
            // Binary frames, pongs and continuations carry nothing for the emulator.
            Some(Ok(_)) => Ok(()),
            Some(Err(error)) => {
                tracing::debug!(%error, "Emulator socket protocol error.");
                Err(End::Close(None, CloseCode::Protocol))
            }
            None => Err(End::Drop),
        }
    }
}
