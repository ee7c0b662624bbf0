//! The ingest role (`cluster.role = ingest | both`): the TokenActor and StreamActor run as
//! in a single process, but conversation data goes to the JetStream stream instead of the
//! local router.
//!
//! - **Frames.** The socket task hands the exact bytes of each conversation frame to
//!   [`FramePublisher::publish`] and awaits the stream's publish ack before it reads the
//!   next frame: one frame in flight per socket, so a slow or absent NATS back-pressures
//!   the socket exactly like the router (or the OutboxGate) does in a single process, and
//!   frames of one socket reach the stream in the order they were read. A failed publish
//!   is retried with backoff; one that still fails after [`PUBLISH_GIVE_UP`] is reported
//!   like an event the router did not take (counted, logged, its conversation re-read and
//!   published as a `reread`), never dropped silently.
//! - **Reconciliation.** Genesys replays nothing after a gap, so the [`IngestActor`]
//!   answers the stream's `Reconcile` the way the router does in a single process: it
//!   re-reads every conversation it published a frame for within
//!   `conversations.idle_timeout` (the router retires a conversation idle that long too)
//!   plus the conversations the analytics discovery query finds for the gap (the router's
//!   own [`discover`]), and publishes each REST body as a `reread` on the conversation's
//!   partition. Workers thus see one ordered stream per partition.
//! - **Transcription.** The workers' conversation actors cannot ask a remote stream to
//!   follow a voice call's transcription topic, so the ingest decides from the snapshots
//!   and re-reads it publishes (`convoy::cluster::transcription`): it asks its own
//!   StreamActor to follow a call while a snapshot shows a leg live and to stop when one
//!   shows the call ended (or nothing of it came for `conversations.idle_timeout`). The
//!   transcription frames are published like any other frame of the conversation.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix::prelude::*;
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use convoy::cluster::{
    call_liveness, frame_msg_id, CallFollow, CallLiveness, FrameHeaders, FrameKind, Partitions,
    PayloadKind, WatchChange,
};
use convoy::ids::ConversationId;
use serde_json::Value;

use super::nats::Nats;
use crate::conversation::messages::{Reconcile, RereadConversation};
use crate::conversation::router::{discover, DiscoverySweep};
use crate::genesys::conversations::{parse_conversation_read, read_conversation_raw};
use crate::genesys::rest::{GenesysRest, RestContext, RestError};
use crate::retry_schedule::RetrySchedule;
use crate::stream::WatchTranscription;
use crate::telemetry::{names, ActorMetrics};

/// How long one payload is retried before it is reported undelivered.
pub const PUBLISH_GIVE_UP: Duration = Duration::from_secs(60);
/// How long one publish may wait for its ack.
const PUBLISH_ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Background re-reads in flight at once (as the router's).
const REREADS_IN_FLIGHT: usize = 2;

/// A payload that could not be published within [`PUBLISH_GIVE_UP`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not published within {:?}: {last_error}", PUBLISH_GIVE_UP)]
pub struct PublishGaveUp {
    pub last_error: String,
}

/// Conversations the ingest published a frame for, with when (what a reconciliation
/// re-reads) and whether their call's transcription is followed.
#[derive(Debug, Default)]
struct LiveSet {
    seen: HashMap<ConversationId, (Instant, CallFollow)>,
}

/// Publishes payloads to the frames stream. Cheap to clone; shared by every socket task
/// of the StreamActor and the [`IngestActor`].
#[derive(Clone)]
pub struct FramePublisher {
    nats: Nats,
    partitions: Partitions,
    live: Arc<Mutex<LiveSet>>,
    /// Conversations not seen for this long are no longer re-read after a gap.
    forget_after: Duration,
    /// The StreamActor, once started: where live calls' transcriptions are asked for.
    transcription: Arc<std::sync::OnceLock<Recipient<WatchTranscription>>>,
}

impl std::fmt::Debug for FramePublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FramePublisher")
            .field("partitions", &self.partitions.count())
            .finish_non_exhaustive()
    }
}

impl FramePublisher {
    pub fn new(nats: Nats, partitions: Partitions, forget_after: Duration) -> Self {
        FramePublisher {
            nats,
            partitions,
            live: Arc::new(Mutex::new(LiveSet::default())),
            forget_after,
            transcription: Arc::default(),
        }
    }

    /// Live voice calls' transcription topics are asked of `stream` from now on (the
    /// StreamActor starts after the publisher it is given).
    pub fn follow_transcriptions(&self, stream: Recipient<WatchTranscription>) {
        let _ = self.transcription.set(stream);
    }

    /// Publishes one WebSocket frame about `conversation_id` and waits for the stream's
    /// ack (retrying with backoff). `topic_name` decides the frame id's kind; `call` is
    /// what the frame shows of the conversation's voice legs.
    pub async fn publish_frame(
        &self,
        bytes: Bytes,
        conversation_id: &ConversationId,
        call: CallLiveness,
        observed_at: DateTime<Utc>,
    ) -> Result<(), PublishGaveUp> {
        let headers = frame_headers(&bytes, conversation_id, observed_at);
        self.remember(conversation_id, call);
        self.publish(bytes, headers).await
    }

    /// Publishes one REST body of `conversation_id` as a `reread`.
    pub async fn publish_reread(
        &self,
        body: Bytes,
        conversation_id: &ConversationId,
        observed_at: DateTime<Utc>,
    ) -> Result<(), PublishGaveUp> {
        let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        // A call found only by a re-read (its frames fell into a gap) is followed too.
        let call = parse_conversation_read(&body)
            .map_or(CallLiveness::Silent, |snapshot| call_liveness(&snapshot));
        self.remember(conversation_id, call);
        let headers = FrameHeaders {
            msg_id: frame_msg_id(
                conversation_id.text().as_str(),
                FrameKind::Reconciled,
                &value,
            ),
            kind: PayloadKind::Reread,
            observed_at,
            conversation_id: conversation_id.clone(),
        };
        self.publish(body, headers).await
    }

    /// The conversations seen within `forget_after`; older ones are forgotten (and a
    /// forgotten call's transcription no longer followed).
    fn live_ids(&self) -> Vec<ConversationId> {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let forget_after = self.forget_after;
        live.seen.retain(|id, (at, follow)| {
            let keep = at.elapsed() < forget_after;
            if !keep {
                self.ask_stream(id, follow.forget());
            }
            keep
        });
        metrics::gauge!(names::CLUSTER_INGEST_TRACKED).set(live.seen.len() as f64);
        live.seen.keys().cloned().collect()
    }

    fn remember(&self, id: &ConversationId, call: CallLiveness) {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let (at, follow) = live
            .seen
            .entry(id.clone())
            .or_insert_with(|| (now, CallFollow::default()));
        *at = now;
        let (next, change) = follow.observe(call);
        *follow = next;
        self.ask_stream(id, change);
    }

    /// Sent with `do_send`: the stream never waits on the socket tasks that call this.
    fn ask_stream(&self, id: &ConversationId, change: Option<WatchChange>) {
        let (Some(change), Some(stream)) = (change, self.transcription.get()) else {
            return;
        };
        stream.do_send(WatchTranscription {
            conversation_id: id.clone(),
            watch: change == WatchChange::Watch,
        });
    }

    async fn publish(&self, payload: Bytes, headers: FrameHeaders) -> Result<(), PublishGaveUp> {
        let subject = self
            .partitions
            .of(headers.conversation_id.text().as_str())
            .subject();
        let mut header_map = async_nats::HeaderMap::new();
        for (name, value) in headers.pairs() {
            header_map.insert(name, value.as_str());
        }
        let kind = headers.kind.as_str();
        let started = Instant::now();
        let mut schedule = RetrySchedule::new(Duration::from_millis(50), Duration::from_secs(5));
        loop {
            let publish = PublishMessage::build()
                .payload(payload.clone())
                .headers(header_map.clone());
            let attempt = async {
                let ack = self
                    .nats
                    .jetstream
                    .send_publish(subject.clone(), publish)
                    .await
                    .map_err(|error| error.to_string())?;
                ack.await.map_err(|error| error.to_string())
            };
            let error = match actix_rt::time::timeout(PUBLISH_ACK_TIMEOUT, attempt).await {
                Ok(Ok(ack)) => {
                    let outcome = if ack.duplicate { "duplicate" } else { "stored" };
                    metrics::counter!(names::CLUSTER_PUBLISHED, "kind" => kind, "outcome" => outcome)
                        .increment(1);
                    return Ok(());
                }
                Ok(Err(error)) => error,
                Err(_) => format!("no publish ack within {PUBLISH_ACK_TIMEOUT:?}"),
            };
            if started.elapsed() >= PUBLISH_GIVE_UP {
                metrics::counter!(names::CLUSTER_PUBLISHED, "kind" => kind, "outcome" => "gave_up")
                    .increment(1);
                tracing::error!(
                    conversation = %headers.conversation_id,
                    %subject,
                    %error,
                    "Could not publish to the frames stream; the conversation will be re-read."
                );
                return Err(PublishGaveUp { last_error: error });
            }
            metrics::counter!(names::CLUSTER_PUBLISH_RETRIES, "kind" => kind).increment(1);
            let pause = schedule.next_delay();
            tracing::warn!(
                conversation = %headers.conversation_id,
                %subject,
                %error,
                pause_ms = pause.as_millis() as u64,
                "Publish to the frames stream failed; retrying."
            );
            actix_rt::time::sleep(pause).await;
        }
    }
}

/// The headers of a WebSocket frame: its id hashes the `eventBody` under the kind of its
/// topic (see `convoy::cluster::frame_id`). A frame whose JSON cannot be re-read here
/// (it classified, so it can) falls back to hashing the whole text.
pub fn frame_headers(
    bytes: &[u8],
    conversation_id: &ConversationId,
    observed_at: DateTime<Utc>,
) -> FrameHeaders {
    let value: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    let topic = value
        .get("topicName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    // Media-specific topics (`….conversations.calls`) carry the per-participant shape of
    // `.messages`.
    let kind = FrameKind::of_topic(topic).unwrap_or(FrameKind::Messages);
    let body = value.get("eventBody").unwrap_or(&value);
    FrameHeaders {
        msg_id: frame_msg_id(conversation_id.text().as_str(), kind, body),
        kind: PayloadKind::Frame,
        observed_at,
        conversation_id: conversation_id.clone(),
    }
}

/// Re-reads conversations through REST and publishes their bodies: the ingest side of
/// reconciliation (module doc).
pub struct IngestActor {
    publisher: FramePublisher,
    rest_context: RestContext,
    rest: Option<GenesysRest>,
    queue: VecDeque<ConversationId>,
    queued: HashSet<ConversationId>,
    in_flight: HashSet<ConversationId>,
    discovery: DiscoverySweep,
    failures: u32,
    paused_until: Option<Instant>,
}

impl IngestActor {
    pub fn new(publisher: FramePublisher, rest_context: RestContext) -> Self {
        IngestActor {
            publisher,
            rest_context,
            rest: None,
            queue: VecDeque::new(),
            queued: HashSet::new(),
            in_flight: HashSet::new(),
            discovery: DiscoverySweep::default(),
            failures: 0,
            paused_until: None,
        }
    }

    fn owe(&mut self, id: ConversationId) {
        if !self.in_flight.contains(&id) && self.queued.insert(id.clone()) {
            self.queue.push_back(id);
        }
    }

    fn pump(&mut self, ctx: &mut Context<Self>) {
        metrics::gauge!(names::REREADS_OWED).set(self.queue.len() as f64);
        if let Some(until) = self.paused_until {
            if Instant::now() < until {
                return;
            }
            self.paused_until = None;
        }
        let Some(rest) = self.rest.clone() else {
            return;
        };
        while self.in_flight.len() < REREADS_IN_FLIGHT {
            let Some(id) = self.queue.pop_front() else {
                break;
            };
            self.queued.remove(&id);
            self.in_flight.insert(id.clone());
            let rest = rest.clone();
            let publisher = self.publisher.clone();
            let work = async move {
                let outcome = match read_conversation_raw(&rest, &id).await {
                    Ok(read) => publisher
                        .publish_reread(read.body, &id, Utc::now())
                        .await
                        .map_err(RereadFailure::Publish),
                    Err(error) => Err(RereadFailure::Rest(error)),
                };
                (id, outcome)
            };
            ctx.spawn(work.into_actor(self).map(|(id, outcome), actor, ctx| {
                actor.in_flight.remove(&id);
                actor.reread_done(id, outcome, ctx);
                actor.pump(ctx);
            }));
        }
    }

    fn reread_done(
        &mut self,
        id: ConversationId,
        outcome: Result<(), RereadFailure>,
        ctx: &mut Context<Self>,
    ) {
        match outcome {
            Ok(()) => {
                metrics::counter!(names::REREADS, "outcome" => "ok").increment(1);
                self.failures = 0;
            }
            Err(RereadFailure::Rest(error @ RestError::Rejected { .. })) => {
                metrics::counter!(names::REREADS, "outcome" => "failed").increment(1);
                tracing::warn!(conversation_id = %id, %error, "Could not re-read a conversation; giving it up.");
            }
            Err(failure) => {
                metrics::counter!(names::REREADS, "outcome" => "failed").increment(1);
                self.failures = self.failures.saturating_add(1);
                let pause = crate::retry_schedule::nth_delay(
                    Duration::from_secs(1),
                    Duration::from_secs(60),
                    self.failures,
                );
                tracing::warn!(conversation_id = %id, error = %failure, pause_ms = pause.as_millis() as u64, "Re-read not published; it stays owed.");
                self.owe(id);
                self.paused_until = Some(Instant::now() + pause);
                ctx.run_later(pause, |actor, ctx| actor.pump(ctx));
            }
        }
    }

    fn start_discovery(&mut self, ctx: &mut Context<Self>) {
        let Some(rest) = self.rest.clone() else {
            return;
        };
        let Some(since) = self.discovery.start() else {
            return;
        };
        let discovery = async move { discover(&rest, since, Utc::now()).await };
        ctx.spawn(discovery.into_actor(self).map(|found, actor, ctx| {
            let again = actor.discovery.finish();
            let count = found.len();
            for id in found {
                actor.owe(id);
            }
            tracing::info!(conversations = count, "Discovery finished.");
            actor.pump(ctx);
            if again {
                actor.start_discovery(ctx);
            }
        }));
    }
}

#[derive(Debug, thiserror::Error)]
enum RereadFailure {
    #[error("{0}")]
    Rest(RestError),
    #[error("{0}")]
    Publish(PublishGaveUp),
}

impl Actor for IngestActor {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Self::Context) {
        self.rest = Some(GenesysRest::new(self.rest_context.clone()));
    }
}

impl Handler<Reconcile> for IngestActor {
    type Result = ();

    fn handle(&mut self, reconcile: Reconcile, ctx: &mut Self::Context) {
        ActorMetrics::handled("ingest");
        let live = self.publisher.live_ids();
        tracing::info!(
            reason = reconcile.reason,
            since = %reconcile.gap_started_at,
            live = live.len(),
            "Reconciling after a stream gap: re-reading and publishing."
        );
        for id in live {
            self.owe(id);
        }
        self.discovery.ask(reconcile.gap_started_at);
        self.start_discovery(ctx);
        self.pump(ctx);
    }
}

impl Handler<RereadConversation> for IngestActor {
    type Result = ();

    fn handle(&mut self, reread: RereadConversation, ctx: &mut Self::Context) {
        ActorMetrics::handled("ingest");
        self.owe(reread.conversation_id);
        self.pump(ctx);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_queue_and_user_topic_copies_of_a_frame_share_an_id() {
        let id = ConversationId::from("c1");
        let at = Utc::now();
        let body = json!({"id": "c1", "participants": []});
        let queue = json!({"topicName": "v2.routing.queues.q1.conversations", "eventBody": body, "metadata": {"CorrelationId": "a"}});
        let user = json!({"topicName": "v2.users.u1.conversations", "eventBody": body, "metadata": {"CorrelationId": "b"}});
        let a = frame_headers(queue.to_string().as_bytes(), &id, at);
        let b = frame_headers(user.to_string().as_bytes(), &id, at);
        assert_eq!(a.msg_id, b.msg_id);
        assert_eq!(a.kind, PayloadKind::Frame);
        let messages =
            json!({"topicName": "v2.users.u1.conversations.messages", "eventBody": body});
        assert_ne!(
            frame_headers(messages.to_string().as_bytes(), &id, at).msg_id,
            a.msg_id
        );
    }
}
