//! How the simulator learns what happens in the conversations it plays: one Genesys
//! notification channel subscribed to the conversation topics of the queues its
//! conversations are routed to, and one WebSocket, as the daemon follows an org — instead
//! of re-reading every conversation over REST, which spends the token's request budget
//! (300 per minute by default) many times over.
//!
//! - [`open_channel`]: `POST /api/v2/notifications/channels`, then `PUT …/subscriptions`
//!   with the topics; a refused topic is an error (the run could not see its
//!   conversations).
//! - [`Feed`]: what the socket has shown so far, per conversation ([`Followed`], merged
//!   from snapshots by `convoy::simulator::follow`), with the instant each agent message
//!   was first seen (receipts are timed from it). Drivers wait on it.
//! - [`follow`]: the socket loop. It answers pings, watches for silence, feeds every
//!   conversation snapshot to the [`Feed`], and reconnects (a new channel when the old
//!   one is gone). Events sent while it was away are lost (Genesys replays nothing), so
//!   every reconnect bumps the feed's generation and the drivers re-read their
//!   conversation once over REST; while it is down they re-read at the poll interval.
//!
//! It never decides anything about a conversation's script (the driver does) and never
//! ends the run: the run ends it by dropping it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use actix_web::rt::time::Instant;
use awc::ws::{Frame, Message};
use convoy::model::{Channel, ChannelTopic, EntityListing, TopicRequest};
use convoy::parse::{classify_bytes, read_message_conversation_body, Classified};
use convoy::simulator::follow::{progress, Followed};
use convoy::stream::subscription_verdict;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::Notify;

use super::client::{ApiClient, CallError};
use crate::retry_schedule::RetrySchedule;
use crate::stream::ws::{self, BoxedWs, ConnectError, PING_FRAME};

/// Largest notification frame read (a conversation snapshot is a few KiB).
const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;
/// Bound on the WebSocket handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Genesys sends a heartbeat every 30 s: this long without any frame earns a ping, twice
/// this long means the socket is dead.
const IDLE: Duration = Duration::from_secs(45);

/// Why the channel could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("{what} answered an unexpected body: {detail}")]
    Malformed { what: &'static str, detail: String },
    #[error("the notification channel refused topics: {0}")]
    Rejected(String),
    #[error("could not connect the notification WebSocket: {0}")]
    Connect(#[from] ConnectError),
}

/// Creates a channel and subscribes `topics` to it.
pub async fn open_channel(client: &ApiClient, topics: &[String]) -> Result<Channel, FollowError> {
    let created = client.post_empty("/api/v2/notifications/channels").await?;
    let channel: Channel =
        serde_json::from_value(created).map_err(|error| FollowError::Malformed {
            what: "POST /api/v2/notifications/channels",
            detail: error.to_string(),
        })?;
    // The id goes into a path: refuse one that would need escaping.
    let safe = !channel.id.is_empty()
        && channel
            .id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'));
    if !safe || channel.connect_uri.is_empty() {
        return Err(FollowError::Malformed {
            what: "POST /api/v2/notifications/channels",
            detail: format!(
                "channel id {:?} with connectUri {:?}",
                channel.id, channel.connect_uri
            ),
        });
    }
    let body: Vec<TopicRequest> = topics
        .iter()
        .map(|topic| TopicRequest { id: topic.clone() })
        .collect();
    let body = serde_json::to_value(body).map_err(|error| FollowError::Malformed {
        what: "the subscription request",
        detail: error.to_string(),
    })?;
    let path = format!(
        "/api/v2/notifications/channels/{}/subscriptions?ignoreErrors=true",
        channel.id
    );
    let listing = client.put(&path, &body).await?;
    let listing: EntityListing<ChannelTopic> =
        serde_json::from_value(listing).map_err(|error| FollowError::Malformed {
            what: "PUT /api/v2/notifications/channels/{id}/subscriptions",
            detail: error.to_string(),
        })?;
    let verdict = subscription_verdict(topics, &listing.entities);
    if !verdict.all_permitted() {
        let rejected: Vec<String> = verdict
            .rejected
            .iter()
            .map(|topic| format!("{} ({})", topic.topic, topic.reason))
            .collect();
        return Err(FollowError::Rejected(rejected.join(", ")));
    }
    Ok(channel)
}

/// Connects the channel's WebSocket.
pub async fn connect(http: &awc::Client, channel: &Channel) -> Result<BoxedWs, ConnectError> {
    ws::connect(http, &channel.connect_uri, MAX_FRAME_BYTES, CONNECT_TIMEOUT).await
}

/// The WebSocket client (HTTP/1.1 only, bounded connect and handshake).
pub fn ws_client() -> awc::Client {
    ws::ws_client(CONNECT_TIMEOUT, CONNECT_TIMEOUT)
}

/// One conversation as the feed knows it.
#[derive(Debug, Default)]
struct Entry {
    followed: Followed,
    /// When each of `followed.agent_messages()` was first seen, same order.
    seen_at: Vec<Instant>,
}

/// What a driver learns from one look at the feed.
#[derive(Debug, Clone, PartialEq)]
pub struct Look {
    /// Agent messages after the first `known`, with when each was first seen.
    pub new_agent_messages: Vec<(String, Instant)>,
    pub ended: bool,
    /// Snapshots seen of the conversation (0: none yet).
    pub snapshots: usize,
    /// Bumped by every reconnect: events may have been missed before it.
    pub generation: u64,
    pub connected: bool,
}

#[derive(Debug, Default)]
struct FeedState {
    conversations: HashMap<String, Entry>,
    generation: u64,
    connected: bool,
}

/// What the socket (and the drivers' re-reads) have shown, shared by the drivers of one
/// run on one thread.
#[derive(Debug, Default)]
pub struct Feed {
    state: RefCell<FeedState>,
    /// Woken on every change; drivers wait on it next to their own timers.
    pub changed: Notify,
}

impl Feed {
    /// Merges one snapshot of `conversation_id` seen at `now`.
    pub fn apply(&self, snapshot: &convoy::conversation::ConversationSnapshot, now: Instant) {
        {
            let mut state = self.state.borrow_mut();
            let entry = state
                .conversations
                .entry(snapshot.conversation_id.to_string())
                .or_default();
            let revealed = entry.followed.apply(progress(snapshot));
            entry.seen_at.extend((0..revealed).map(|_| now));
        }
        self.changed.notify_waiters();
    }

    /// Merges a REST `GET /api/v2/conversations/messages/{id}` body.
    pub fn apply_rest(&self, body: serde_json::Value, now: Instant) -> Result<(), String> {
        let snapshot = read_message_conversation_body(body, "$").map_err(|e| e.to_string())?;
        self.apply(&snapshot, now);
        Ok(())
    }

    pub fn look(&self, conversation_id: &str, known: usize) -> Look {
        let state = self.state.borrow();
        let (new_agent_messages, ended, snapshots) = match state.conversations.get(conversation_id)
        {
            Some(entry) => (
                entry
                    .followed
                    .agent_messages()
                    .iter()
                    .zip(&entry.seen_at)
                    .skip(known)
                    .map(|(id, at)| (id.clone(), *at))
                    .collect(),
                entry.followed.ended(),
                entry.followed.snapshots(),
            ),
            None => (Vec::new(), false, 0),
        };
        Look {
            new_agent_messages,
            ended,
            snapshots,
            generation: state.generation,
            connected: state.connected,
        }
    }

    /// The current connection generation (see [`Look::generation`]).
    pub fn generation(&self) -> u64 {
        self.state.borrow().generation
    }

    /// Drops what is known of a conversation whose driver is done.
    pub fn forget(&self, conversation_id: &str) {
        self.state
            .borrow_mut()
            .conversations
            .remove(conversation_id);
    }

    /// The socket is up (`true`) or down. Coming back up starts a new generation.
    pub fn set_connected(&self, connected: bool) {
        {
            let mut state = self.state.borrow_mut();
            if connected && !state.connected {
                state.generation += 1;
            }
            state.connected = connected;
        }
        self.changed.notify_waiters();
    }
}

/// Follows the channel for as long as the run lasts (the caller drops this future when the
/// drivers are done). Reconnects with backoff; a channel that is gone is replaced.
pub async fn follow(
    client: &ApiClient,
    http: &awc::Client,
    topics: &[String],
    feed: &Feed,
    mut channel: Channel,
    mut socket: BoxedWs,
) -> std::convert::Infallible {
    let mut schedule = RetrySchedule::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        feed.set_connected(true);
        let started = Instant::now();
        let end = read(&mut socket, feed).await;
        feed.set_connected(false);
        tracing::warn!(channel = %channel.id, %end, "The notification socket ended; reconnecting.");
        if started.elapsed() > Duration::from_secs(60) {
            schedule = RetrySchedule::new(Duration::from_millis(200), Duration::from_secs(10));
        }
        socket = loop {
            actix_web::rt::time::sleep(schedule.next_delay()).await;
            match connect(http, &channel).await {
                Ok(socket) => break socket,
                Err(ConnectError::ChannelGone) => match open_channel(client, topics).await {
                    Ok(fresh) => channel = fresh,
                    Err(error) => {
                        tracing::warn!(%error, "Could not open a new notification channel.");
                    }
                },
                Err(error) => {
                    tracing::warn!(%error, "Could not reconnect the notification socket.")
                }
            }
        };
    }
}

/// Reads one connection until it ends; returns why.
async fn read(socket: &mut BoxedWs, feed: &Feed) -> String {
    let mut pinged = false;
    loop {
        let frame = match actix_web::rt::time::timeout(IDLE, socket.next()).await {
            Err(_) if pinged => return format!("silent for {:?}", IDLE * 2),
            Err(_) => {
                pinged = true;
                if let Err(error) = socket.send(Message::Text(PING_FRAME.into())).await {
                    return format!("sending a ping: {error}");
                }
                continue;
            }
            Ok(None) => return "closed".to_owned(),
            Ok(Some(Err(error))) => return error.to_string(),
            Ok(Some(Ok(frame))) => frame,
        };
        pinged = false;
        match frame {
            Frame::Text(bytes) => match classify_bytes(&bytes) {
                Ok(Classified::Snapshot { snapshot, .. }) => feed.apply(&snapshot, Instant::now()),
                Ok(Classified::SocketClosing { .. }) => return "socket_closing".to_owned(),
                Ok(_) => {}
                Err(error) => tracing::debug!(%error, "Unreadable notification frame skipped."),
            },
            Frame::Ping(payload) => {
                if let Err(error) = socket.send(Message::Pong(payload)).await {
                    return format!("sending a pong: {error}");
                }
            }
            Frame::Close(reason) => {
                let _ = socket.send(Message::Close(reason.clone())).await;
                return format!("closed by the server: {reason:?}");
            }
            // Genesys sends whole text frames; nothing else carries conversation data.
            Frame::Binary(_) | Frame::Continuation(_) | Frame::Pong(_) => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(agent_state: &str, messages: &[&str]) -> serde_json::Value {
        json!({
            "id": "5c8a7e0e-9d3c-4a57-9b1e-8a7c7d0e0001",
            "participants": [
                { "id": "p1", "purpose": "customer", "state": agent_state },
                { "id": "p2", "purpose": "agent", "state": agent_state,
                  "messages": messages.iter().enumerate().map(|(k, id)| json!({
                      "messageId": id,
                      "messageTime": format!("2025-01-01T00:00:0{k}.000Z"),
                      "messageStatus": "sent"
                  })).collect::<Vec<_>>() }
            ]
        })
    }

    #[actix_rt::test]
    async fn a_look_shows_what_is_new_since_the_last_one_with_when_it_was_seen() {
        let feed = Feed::default();
        let id = "5c8a7e0e-9d3c-4a57-9b1e-8a7c7d0e0001";
        assert_eq!(feed.look(id, 0).snapshots, 0);
        let first = Instant::now();
        feed.apply_rest(body("connected", &["a"]), first).unwrap();
        let later = first + Duration::from_secs(1);
        feed.apply_rest(body("disconnected", &["a", "b"]), later)
            .unwrap();
        let look = feed.look(id, 1);
        assert_eq!(look.new_agent_messages, vec![("b".to_owned(), later)]);
        assert!(look.ended);
        assert_eq!(look.snapshots, 2);
        feed.forget(id);
        assert_eq!(feed.look(id, 0).snapshots, 0);
    }

    #[test]
    fn every_reconnect_starts_a_new_generation() {
        let feed = Feed::default();
        assert!(!feed.look("x", 0).connected);
        feed.set_connected(true);
        let first = feed.look("x", 0).generation;
        feed.set_connected(false);
        assert!(!feed.look("x", 0).connected);
        feed.set_connected(true);
        assert_eq!(feed.look("x", 0).generation, first + 1);
    }
}
