//! The worker role (`cluster.role = worker | both`): for each partition this worker owns,
//! a durable pull consumer (`convoy-p<N>`, filter `convoy.frames.<N>`, explicit ack,
//! deliver all, at most [`MAX_ACK_PENDING`] unacknowledged) feeds the ConversationRouter,
//! exactly as the socket task does in a single process.
//!
//! Each message's headers are decoded by `convoy::cluster::wire`; the payload is parsed by
//! the same parser as the single process — `classify_bytes` for a WebSocket `frame`, the
//! REST conversation parser for a `reread` — and routed with the header's observation
//! time (SLA clocks run on when the ingest saw it, not on when this worker got to it).
//!
//! **When a message is acknowledged.** Only once the conversation actor has applied it and
//! every fact it produced is committed in the outbox: the consumer sends
//! [`RouteConfirmed`], whose `Applied` the conversation actor answers when its handover to
//! the SlaActor (which answers only after the outbox commit) has come back with nothing
//! left unsettled. A completion is plumbed through rather than acking in order once the
//! router took the input, because the router's acceptance says nothing about durability:
//! a worker killed between acceptance and commit would lose the frame, which is exactly
//! the failure the cluster exists to survive. The partition's consumer keeps routing
//! while earlier messages await their commit (the SlaActor commits in groups, so waiting
//! for each commit before routing the next would cost a commit per frame); JetStream's
//! `max_ack_pending` bounds how many wait. A message whose completion is dropped (the
//! actor crashed, shutdown closed the outbox) or that the router refused (at capacity) is
//! negatively acknowledged with a delay, so JetStream redelivers it; a redelivered
//! snapshot may arrive after a newer one, which the join discards as stale, as it does
//! for the stream's own duplicates and re-reads.
//!
//! **Ownership.** A [`PartitionChange::Acquired`] starts the partition's task: it loads
//! the partition's SLA clocks from NATS KV (`sla_kv.rs`), starts the rebuild from REST,
//! then consumes. [`PartitionChange::Lost`] aborts it at once, dropping every message
//! still awaiting its commit unacknowledged (the next owner gets them again), retires the
//! partition's conversations from the router and drops its clocks from the SlaActor. The
//! lease actor (`lease_actor.rs`) sends the changes; a consumer never decides ownership
//! itself.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix::prelude::*;
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::AckKind;
use chrono::Utc;
use convoy::cluster::{consumer_name, FrameHeaders, Partition, Partitions, PayloadKind};
use convoy::parse::{classify_bytes, Classified};
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;

use super::nats::Nats;
use super::PartitionChange;
use crate::conversation::messages::{
    Applied, ConversationInput, RereadConversation, RouteConfirmed, RouteError, RouteEvent,
};
use crate::conversation::router::{discover, ReleasePartition};
use crate::conversation::ConversationRouter;
use crate::genesys::conversations::parse_conversation_read;
use crate::genesys::rest::{GenesysRest, RestContext};
use crate::retry_schedule::RetrySchedule;
use crate::sla::{DropPartitionClocks, LoadPartitionClocks, SlaActor};
use crate::telemetry::{names, ActorMetrics};

/// Unacknowledged messages per partition consumer: how many frames may wait for their
/// commit at once (JetStream stops delivering beyond it).
pub const MAX_ACK_PENDING: i64 = 256;
/// A message not acknowledged for this long is delivered again (to this or the next
/// owner). Longer than any commit; a message routed and waiting is not "lost" sooner.
pub const ACK_WAIT: Duration = Duration::from_secs(30);
/// Redelivery delay after a refusal (router at capacity) or a dropped completion.
const NAK_DELAY: Duration = Duration::from_secs(1);
/// How long a routed message may wait for its commit before it is given back.
const COMMIT_WAIT: Duration = Duration::from_secs(25);

/// How far back a partition's rebuild looks for its conversations.
pub const REBUILD_LOOKBACK: chrono::Duration = chrono::Duration::hours(1);

/// What the consumers need beyond NATS.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    pub stream: String,
    pub partitions: Partitions,
}

/// Consumer lag per running partition, summed into one gauge (a label per partition
/// would be up to 4 096 series).
#[derive(Debug, Default)]
struct Lag {
    pending: HashMap<u16, u64>,
}

impl Lag {
    fn set(&mut self, partition: u16, pending: Option<u64>) {
        match pending {
            Some(pending) => self.pending.insert(partition, pending),
            None => self.pending.remove(&partition),
        };
        metrics::gauge!(names::CLUSTER_CONSUMER_LAG).set(self.pending.values().sum::<u64>() as f64);
    }
}

/// Runs one consumer task per owned partition.
pub struct ConsumerActor {
    nats: Nats,
    settings: ConsumerSettings,
    router: Addr<ConversationRouter>,
    running: HashMap<u16, actix_rt::task::JoinHandle<()>>,
    lag: Arc<Mutex<Lag>>,
    /// `/readyz`'s count of running partition consumers.
    consuming: Arc<AtomicUsize>,
    /// Rebuild a partition's conversations from REST when it is acquired (see
    /// [`ConsumerActor::with_rebuild`]).
    rebuild: Option<GenesysRest>,
    rebuild_context: Option<RestContext>,
    /// The SLA clocks that move with a partition (see [`ConsumerActor::with_sla_clocks`]).
    sla: Option<Addr<SlaActor>>,
}

impl ConsumerActor {
    /// Consumes the partitions a lease actor hands it ([`PartitionChange`]).
    pub fn new(nats: Nats, settings: ConsumerSettings, router: Addr<ConversationRouter>) -> Self {
        ConsumerActor {
            nats,
            settings,
            router,
            running: HashMap::new(),
            lag: Arc::new(Mutex::new(Lag::default())),
            consuming: Arc::new(AtomicUsize::new(0)),
            rebuild: None,
            rebuild_context: None,
            sla: None,
        }
    }

    /// On every `Acquired`, the partition's SLA clocks are loaded from NATS KV (the
    /// previous owner's mirror) before anything of it is rebuilt or consumed, so a clock
    /// running when the previous owner died carries on here instead of starting afresh
    /// from what this worker observes; on `Lost` they are dropped here (the new owner
    /// runs them: two owners would emit every breach twice).
    pub fn with_sla_clocks(mut self, sla: Addr<SlaActor>) -> Self {
        self.sla = Some(sla);
        self
    }

    /// On every `Acquired`, the conversations of that partition started within
    /// [`REBUILD_LOOKBACK`] (the analytics discovery query, as a single process does at
    /// start-up) are re-read into the router. A partition taken over from a dead worker
    /// thus has its conversations rebuilt from REST: their facts are derived again under
    /// the same record ids, so what was committed in the dead worker's outbox but never
    /// reached the CRM arrives from here (the CRM keeps one of each), and a conversation
    /// whose last frame the dead worker had acknowledged is not left half-known here.
    pub fn with_rebuild(mut self, rest: RestContext) -> Self {
        self.rebuild_context = Some(rest);
        self
    }

    /// The partition's conversations re-read into the router (see [`Self::with_rebuild`]).
    fn rebuild_partition(&self, partition: u16) -> Option<impl std::future::Future<Output = ()>> {
        let rest = self.rebuild.clone()?;
        let partitions = self.settings.partitions;
        let router = self.router.clone();
        Some(async move {
            let until = Utc::now();
            let found = discover(&rest, until - REBUILD_LOOKBACK, until).await;
            let mine: Vec<_> = found
                .into_iter()
                .filter(|id| partitions.of(id.text().as_str()).0 == partition)
                .collect();
            tracing::info!(
                partition,
                conversations = mine.len(),
                "Rebuilding an acquired partition's conversations from REST."
            );
            for conversation_id in mine {
                ActorMetrics::sent("router");
                router.do_send(RereadConversation { conversation_id });
            }
        })
    }

    /// Where `/readyz` reads how many partitions are being consumed.
    pub fn with_health(mut self, consuming: Arc<AtomicUsize>) -> Self {
        self.consuming = consuming;
        self
    }

    fn publish_gauges(&self) {
        metrics::gauge!(names::CLUSTER_PARTITIONS_CONSUMING).set(self.running.len() as f64);
        self.consuming.store(self.running.len(), Ordering::Relaxed);
    }

    /// Partitions with a running consumer task.
    pub fn consuming(&self) -> Vec<u16> {
        let mut partitions: Vec<u16> = self
            .running
            .iter()
            .filter(|(_, task)| !task.is_finished())
            .map(|(partition, _)| *partition)
            .collect();
        partitions.sort_unstable();
        partitions
    }
}

impl Actor for ConsumerActor {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Self::Context) {
        // The REST client is built on this actor's arbiter (awc's client is not `Send`).
        self.rebuild = self.rebuild_context.clone().map(GenesysRest::new);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        for (_, task) in self.running.drain() {
            task.abort();
        }
        self.publish_gauges();
    }
}

impl Handler<PartitionChange> for ConsumerActor {
    type Result = ();

    fn handle(&mut self, change: PartitionChange, _: &mut Self::Context) {
        ActorMetrics::handled("consumer");
        match change {
            PartitionChange::Acquired { partition } => {
                if let Some(task) = self.running.get(&partition) {
                    if !task.is_finished() {
                        return;
                    }
                }
                tracing::info!(partition, "Consuming a partition.");
                let clocks = self.sla.clone();
                let rebuild = self.rebuild_partition(partition);
                let consumer = consume(
                    self.nats.clone(),
                    self.settings.stream.clone(),
                    Partition(partition),
                    self.router.clone(),
                    Arc::clone(&self.lag),
                );
                // In this order: the clocks first (a rebuilt or consumed conversation
                // would start clocks of its own, and loading keeps those over the
                // mirror's), then the rebuild's re-reads, then the stream.
                let task = actix_rt::spawn(async move {
                    if let Some(sla) = clocks {
                        if !load_partition_clocks(&sla, partition).await {
                            return;
                        }
                    }
                    if let Some(rebuild) = rebuild {
                        actix_rt::spawn(rebuild);
                    }
                    consumer.await;
                });
                self.running.insert(partition, task);
            }
            PartitionChange::Lost { partition } => {
                if let Some(task) = self.running.remove(&partition) {
                    // Dropping the task drops every message still waiting for its commit:
                    // none of them is acknowledged by this worker any more.
                    task.abort();
                    tracing::info!(partition, "Stopped consuming a partition.");
                }
                // Its conversations and clocks are the new owner's now.
                self.router.do_send(ReleasePartition {
                    partitions: self.settings.partitions,
                    partition,
                });
                if let Some(sla) = &self.sla {
                    sla.do_send(DropPartitionClocks { partition });
                }
                self.lag
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .set(partition, None);
            }
        }
        self.publish_gauges();
    }
}

/// Shutdown: stop every partition consumer; what is not acknowledged is delivered again
/// (to this worker's next start or another worker).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct StopConsuming;

impl Handler<StopConsuming> for ConsumerActor {
    type Result = ();

    fn handle(&mut self, _: StopConsuming, ctx: &mut Self::Context) {
        for (_, task) in self.running.drain() {
            task.abort();
        }
        self.publish_gauges();
        ctx.stop();
    }
}

/// Which partitions have a running consumer (for `/readyz` and tests).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Vec<u16>")]
pub struct GetConsuming;

impl Handler<GetConsuming> for ConsumerActor {
    type Result = Vec<u16>;

    fn handle(&mut self, _: GetConsuming, _: &mut Self::Context) -> Vec<u16> {
        self.consuming()
    }
}

/// Loads the partition's SLA clocks from NATS KV, retrying with backoff while NATS does
/// not answer: consuming without them would restart the previous owner's clocks from
/// what this worker observes (a breach already counting down would be missed or doubled).
/// The task is aborted when the partition is lost, which ends the retries. `false`: the
/// SlaActor is gone (shutdown), so nothing could commit what would be consumed.
async fn load_partition_clocks(sla: &Addr<SlaActor>, partition: u16) -> bool {
    let mut schedule = RetrySchedule::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        match sla.send(LoadPartitionClocks { partition }).await {
            Ok(Ok(loaded)) => {
                tracing::info!(
                    partition,
                    conversations = loaded,
                    "SLA clocks of an acquired partition loaded."
                );
                return true;
            }
            Ok(Err(error)) => {
                let pause = schedule.next_delay();
                tracing::warn!(partition, %error, pause_ms = pause.as_millis() as u64, "Cannot load the partition's SLA clocks from NATS KV; trying again before consuming it.");
                actix_rt::time::sleep(pause).await;
            }
            Err(_) => {
                tracing::warn!(partition, "SLA actor gone; the partition is not consumed.");
                return false;
            }
        }
    }
}

/// One partition's consumer, for as long as it is owned: (re)creates the durable consumer
/// and consumes; a failure (NATS gone, stream missing) is retried with backoff.
async fn consume(
    nats: Nats,
    stream_name: String,
    partition: Partition,
    router: Addr<ConversationRouter>,
    lag: Arc<Mutex<Lag>>,
) {
    let mut schedule = RetrySchedule::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        match consume_once(&nats, &stream_name, partition, &router, &lag, &mut schedule).await {
            Ok(()) => return,
            Err(error) => {
                let pause = schedule.next_delay();
                tracing::warn!(
                    partition = partition.0,
                    %error,
                    pause_ms = pause.as_millis() as u64,
                    "Partition consumer failed; starting it again."
                );
                actix_rt::time::sleep(pause).await;
            }
        }
    }
}

/// Returns `Ok` only when the router is shutting down (nothing more to consume).
async fn consume_once(
    nats: &Nats,
    stream_name: &str,
    partition: Partition,
    router: &Addr<ConversationRouter>,
    lag: &Mutex<Lag>,
    schedule: &mut RetrySchedule,
) -> Result<(), String> {
    let stream = nats
        .jetstream
        .get_stream(stream_name)
        .await
        .map_err(|error| format!("stream {stream_name}: {error}"))?;
    let name = consumer_name(partition);
    let consumer: async_nats::jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            &name,
            pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: partition.subject(),
                ack_policy: AckPolicy::Explicit,
                deliver_policy: DeliverPolicy::All,
                ack_wait: ACK_WAIT,
                max_ack_pending: MAX_ACK_PENDING,
                ..Default::default()
            },
        )
        .await
        .map_err(|error| format!("consumer {name}: {error}"))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|error| format!("messages of {name}: {error}"))?;
    schedule.reset();
    // Messages routed and waiting for their commit; polled here, so aborting this task
    // (partition lost) drops them unacknowledged.
    let mut awaiting = FuturesUnordered::new();
    loop {
        tokio::select! {
            Some(()) = awaiting.next(), if !awaiting.is_empty() => {}
            next = messages.next() => {
                let message = match next {
                    None => return Err(format!("the message stream of {name} ended")),
                    Some(Err(error)) => return Err(format!("receiving from {name}: {error}")),
                    Some(Ok(message)) => message,
                };
                if let Ok(info) = message.info() {
                    if info.delivered > 1 {
                        metrics::counter!(names::CLUSTER_REDELIVERIES).increment(1);
                    }
                    lag.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .set(partition.0, Some(info.pending));
                }
                match route(&message, router).await {
                    Routed::Awaiting(done) => awaiting.push(settle(message, done)),
                    Routed::Finished(outcome, ack) => {
                        metrics::counter!(names::CLUSTER_CONSUMED, "outcome" => outcome).increment(1);
                        let _ = message.ack_with(ack).await;
                    }
                    Routed::ShuttingDown => return Ok(()),
                }
            }
        }
    }
}

enum Routed {
    /// Routed; acknowledge once this resolves.
    Awaiting(tokio::sync::oneshot::Receiver<()>),
    /// Nothing more to do: answer with this ack kind, counted under this outcome.
    Finished(&'static str, AckKind),
    ShuttingDown,
}

/// Decodes, parses and routes one message.
async fn route(
    message: &async_nats::jetstream::Message,
    router: &Addr<ConversationRouter>,
) -> Routed {
    let headers = message.headers.as_ref();
    let decoded = FrameHeaders::decode(|name| {
        headers
            .and_then(|headers| headers.get(name))
            .map(|value| value.as_str())
    });
    let headers = match decoded {
        Ok(headers) => headers,
        Err(error) => {
            tracing::error!(subject = %message.subject, %error, "A message on the frames stream has unreadable headers; dropped.");
            return Routed::Finished("malformed", AckKind::Term);
        }
    };
    let input = match parse_payload(headers.kind, &message.payload) {
        Ok(Some(input)) => input,
        Ok(None) => return Routed::Finished("ignored", AckKind::Ack),
        Err(error) => {
            tracing::error!(
                subject = %message.subject,
                conversation = %headers.conversation_id,
                kind = headers.kind.as_str(),
                %error,
                "A message on the frames stream cannot be parsed; dropped."
            );
            return Routed::Finished("malformed", AckKind::Term);
        }
    };
    let (applied, done) = Applied::channel();
    let event = RouteConfirmed {
        event: RouteEvent {
            input,
            observed_at: headers.observed_at,
        },
        applied,
    };
    ActorMetrics::sent("router");
    match router.send(event).await {
        Ok(Ok(())) => Routed::Awaiting(done),
        Ok(Err(RouteError::ShuttingDown)) | Err(MailboxError::Closed) => Routed::ShuttingDown,
        Ok(Err(error)) => {
            tracing::debug!(conversation = %headers.conversation_id, %error, "The router did not take a frame; JetStream delivers it again.");
            Routed::Finished("refused", AckKind::Nak(Some(NAK_DELAY)))
        }
        Err(MailboxError::Timeout) => Routed::Finished("refused", AckKind::Nak(Some(NAK_DELAY))),
    }
}

/// The payload parsed as the single process parses it; `None` for frames that carry
/// nothing the router takes.
fn parse_payload(kind: PayloadKind, payload: &[u8]) -> Result<Option<ConversationInput>, String> {
    match kind {
        PayloadKind::Frame => match classify_bytes(payload).map_err(|error| error.to_string())? {
            Classified::Snapshot { snapshot, .. } => {
                Ok(Some(ConversationInput::Snapshot(snapshot)))
            }
            Classified::Transcription(event) => Ok(Some(ConversationInput::Transcription(event))),
            _ => Ok(None),
        },
        PayloadKind::Reread => parse_conversation_read(payload)
            .map(|snapshot| Some(ConversationInput::Snapshot(snapshot)))
            .map_err(|error| error.to_string()),
    }
}

/// Acknowledges `message` once its commit is confirmed; gives it back otherwise.
async fn settle(message: async_nats::jetstream::Message, done: tokio::sync::oneshot::Receiver<()>) {
    let confirmed = matches!(actix_rt::time::timeout(COMMIT_WAIT, done).await, Ok(Ok(())));
    let (outcome, ack) = if confirmed {
        ("acked", AckKind::Ack)
    } else {
        ("uncommitted", AckKind::Nak(Some(NAK_DELAY)))
    };
    metrics::counter!(names::CLUSTER_CONSUMED, "outcome" => outcome).increment(1);
    if let Err(error) = message.ack_with(ack).await {
        tracing::warn!(%error, "Could not acknowledge a frame; JetStream delivers it again.");
    }
}
