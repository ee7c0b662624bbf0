//! See the module docs of [`crate::sla`].

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use convoy::analytics::model::StoredOutcome;
use convoy::conversation::facts::{sla_observations, Fact};
use convoy::crm::records::{fact_record, sla_record, ConversationSummary};
use convoy::crm::CrmRecord;
use convoy::ids::ConversationId;
use convoy::sla::{
    clocks_started, OpenClock, SlaBook, SlaPolicy, SlaSignal, SlaSignalKind, SlaTallies,
};
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::clock::Clock;
use crate::cluster::kv::KvError;
use crate::cluster::sla_kv::SlaClockStore;
use crate::outbox_writer::OutboxWriter;
use crate::store::{Commit, DurableStore};
use crate::supervision::PanicGuard;
use crate::telemetry::{names, ActorMetrics};

/// The open clocks of each conversation, for `/conversations/{id}` (read without asking
/// the actor).
pub type SlaViews = Arc<DashMap<ConversationId, Vec<OpenClock>>>;

/// Facts of one applied input.
#[derive(Debug, Clone)]
pub struct HandoverStep {
    /// When Convoy observed the input: SLA clocks run on observation time.
    pub observed_at: DateTime<Utc>,
    pub facts: Vec<Fact>,
    /// Nothing more is expected of the conversation after this input.
    pub finished: bool,
}

/// Conversation → SlaActor: facts to make durable. Answered `Ok` only once the records,
/// the summary and the clocks they caused are committed to the outbox; until then the
/// conversation keeps them and sends them again after a refusal or a timeout (ids are
/// stable and the clocks idempotent, so a resend is harmless).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), HandoverRefused>")]
pub struct Handover {
    pub conversation_id: ConversationId,
    /// Shared with the conversation, which keeps them until the answer (to send them
    /// again after a refusal) without a copy per handover.
    pub steps: Arc<[HandoverStep]>,
    /// The conversation as it stands after the last step.
    pub summary: ConversationSummary,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandoverRefused {
    #[error("the outbox writer is closed (shutting down)")]
    WriterClosed,
    /// Cluster worker role: committed, but the books did not reach NATS KV. The
    /// conversation hands the facts over again (ids stable, clocks idempotent), and its
    /// inputs stay unacknowledged until then.
    #[error("the SLA clocks did not reach NATS KV")]
    NotMirrored,
}

/// Shutdown: commit what is queued, close the outbox writer, stop.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopSla;

/// One book for the mirroring task, and, on a commit's last, who waits for the writes.
struct MirrorBook {
    id: ConversationId,
    /// The book's JSON as committed (`None`: delete it).
    book: Option<Box<RawValue>>,
    done: Option<tokio::sync::oneshot::Sender<bool>>,
}

/// Per-daemon tallies (the metrics recorder is process-wide).
#[derive(Debug, Message)]
#[rtype(result = "SlaStats")]
pub struct GetSlaStats;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlaStats {
    pub conversations: usize,
    pub open_clocks: usize,
    pub warnings: u64,
    pub breaches: u64,
    pub outcomes: u64,
    pub records_accepted: u64,
}

#[derive(Debug, Clone)]
pub struct SlaSettings {
    pub policy: SlaPolicy,
    /// Breaches are emitted within one tick of their deadline.
    pub tick: Duration,
    /// Commit CRM records and summaries (only when a CRM is configured: nothing else
    /// would ever take them out of the outbox). The clocks' state is kept either way.
    pub keep_records: bool,
    /// The system clock, or (`convoy replay`) a virtual one: then no timer runs and the
    /// driver sends [`TickNow`] at the virtual instants it chooses.
    pub clock: Clock,
}

/// `convoy replay`: emit what is due at the clock's (virtual) now; answered once the
/// commits it caused are durable.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct TickNow;

/// `convoy replay`: the earliest deadline of a running clock, if any.
#[derive(Debug, Message)]
#[rtype(result = "Option<DateTime<Utc>>")]
pub struct NextDue;

/// What the outbox keeps per conversation with running clocks: the clocks and the
/// latest summary (a breach found by the timer after a restart updates the summary too).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tracked {
    book: SlaBook,
    summary: Option<ConversationSummary>,
    /// The messaging platform of the conversation (from its message facts), stored with
    /// its SLA outcomes.
    #[serde(default)]
    messenger_type: Option<String>,
}

/// A conversation's entry in the outbox's SLA table: its running clocks, or — once every
/// clock settled — its final tallies, kept for [`SETTLED_KEPT_FOR`] so a conversation
/// rebuilt after a restart (a re-read derives all its facts again) neither starts its
/// clocks again nor overwrites its summary's tallies with new ones.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum StoredBook {
    Settled {
        settled_at: DateTime<Utc>,
        tallies: SlaTallies,
        /// The settled book itself (absent in entries written before it was kept):
        /// a worker taking its partition over re-commits its outcome records.
        #[serde(default)]
        book: Option<Box<SlaBook>>,
        #[serde(default)]
        messenger_type: Option<String>,
    },
    Open(Box<Tracked>),
}

/// [`StoredBook`] as it is written: borrowed, serialised straight to JSON text (the same
/// text as the owned form, without a copy of the clocks and summary per handover).
#[derive(Serialize)]
#[serde(untagged)]
enum StoredBookOut<'a> {
    Settled {
        settled_at: DateTime<Utc>,
        tallies: &'a SlaTallies,
        book: &'a SlaBook,
        #[serde(skip_serializing_if = "Option::is_none")]
        messenger_type: Option<&'a str>,
    },
    Open(&'a Tracked),
}

impl StoredBookOut<'_> {
    fn to_json(&self) -> Result<Box<RawValue>, serde_json::Error> {
        serde_json::value::to_raw_value(self)
    }
}

/// How long the final tallies of a settled conversation stay in the outbox. A restart
/// rediscovers the last hour's conversations; a day is ample.
const SETTLED_KEPT_FOR: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// Settled conversations remembered (their tallies only) so a late fact of one — a read
/// receipt after the end — updates its summary without starting its clocks again
/// (outcomes are final).
const SETTLED_MEMORY: usize = 100_000;

pub struct SlaActor {
    settings: SlaSettings,
    tracked: HashMap<ConversationId, Tracked>,
    due: BTreeSet<(DateTime<Utc>, ConversationId)>,
    due_of: HashMap<ConversationId, DateTime<Utc>>,
    settled: HashMap<ConversationId, SlaTallies>,
    settled_order: VecDeque<(DateTime<Utc>, ConversationId)>,
    writer: Option<OutboxWriter>,
    views: SlaViews,
    /// Summary revisions only grow, across restarts too (they start at the boot time in
    /// microseconds), so the outbox keeps the latest summary of a conversation.
    revision: u64,
    stats: SlaStats,
    /// Cluster worker role: the books are mirrored into NATS KV so they move with their
    /// partition (`crate::cluster::sla_kv`). `None` in single-process mode.
    cluster_clocks: Option<SlaClockStore>,
    /// Feeds the mirroring task (started with the actor), in commit order.
    mirror: Option<tokio::sync::mpsc::UnboundedSender<MirrorBook>>,
    _panic_guard: PanicGuard,
}

impl SlaActor {
    /// `store` gives back the clocks a previous run left running.
    pub fn new(
        settings: SlaSettings,
        store: &DurableStore,
        writer: OutboxWriter,
        views: SlaViews,
    ) -> SlaActor {
        let now = settings.clock.now();
        // Counted once here, then kept by every change (see `publish_view`).
        let open_clocks = views.iter().map(|entry| entry.value().len()).sum();
        let mut actor = SlaActor {
            tracked: HashMap::new(),
            due: BTreeSet::new(),
            due_of: HashMap::new(),
            settled: HashMap::new(),
            settled_order: VecDeque::new(),
            writer: Some(writer),
            views,
            revision: u64::try_from(settings.clock.now().timestamp_micros()).unwrap_or(0),
            stats: SlaStats {
                open_clocks,
                ..SlaStats::default()
            },
            cluster_clocks: None,
            mirror: None,
            _panic_guard: PanicGuard::essential("sla"),
            settings,
        };
        let mut expired = Commit::default();
        match store.sla_books() {
            Ok(books) => {
                for (id, value) in books {
                    let id = ConversationId::from(id.as_str());
                    match serde_json::from_value::<StoredBook>(value) {
                        Ok(StoredBook::Open(tracked)) => actor.resume(id, *tracked),
                        Ok(StoredBook::Settled {
                            settled_at,
                            tallies,
                            ..
                        }) => {
                            if now - settled_at > SETTLED_KEPT_FOR {
                                expired.sla_books.push((id.to_string(), None));
                            } else {
                                actor.remember_settled(&id, tallies, settled_at);
                            }
                        }
                        Err(error) => {
                            tracing::error!(conversation_id = %id, %error, "Unreadable SLA clocks in the outbox; left there.")
                        }
                    }
                }
                if let Err(error) = store.commit(&[expired], now) {
                    tracing::warn!(%error, "Cannot drop expired settled SLA entries; they go at the next start.");
                }
                tracing::info!(
                    conversations = actor.tracked.len(),
                    "SLA clocks resumed from the outbox."
                );
            }
            Err(error) => {
                tracing::error!(%error, "Cannot read the SLA clocks from the outbox; they start afresh.")
            }
        }
        actor.publish_open_clocks();
        actor
    }

    /// Running clocks resumed (from this worker's outbox, or from NATS KV on a
    /// partition taken over): timers set again, the view published.
    fn resume(&mut self, id: ConversationId, tracked: Tracked) {
        self.tracked.insert(id.clone(), tracked);
        self.reschedule(&id);
        self.publish_view(&id);
    }

    /// The records and outcomes of every signal a book taken over has already emitted
    /// (same record ids): the previous owner may have committed them only to its own
    /// outbox, which nobody sends any more; the CRM de-duplicates by id.
    fn replay_emitted(
        &self,
        id: &ConversationId,
        book: &SlaBook,
        messenger_type: Option<String>,
        now: DateTime<Utc>,
        into: &mut Commit,
    ) {
        let signals = book.emitted_signals(&self.settings.policy);
        if self.settings.keep_records {
            into.records
                .extend(signals.iter().map(|signal| sla_record(id, signal, now)));
        }
        into.sla_outcomes
            .extend(stored_outcomes(id, &signals, messenger_type));
    }

    /// Cluster worker role: mirror every book into `<stream>_sla` and answer
    /// [`LoadPartitionClocks`] / [`DropPartitionClocks`].
    pub fn with_cluster_clocks(mut self, clocks: SlaClockStore) -> SlaActor {
        self.cluster_clocks = Some(clocks);
        self
    }

    /// Hands the books of a commit to the mirroring task (cluster mode only). The answer
    /// says, once the last of them was written (or refused as no longer ours), whether
    /// all of them reached NATS KV.
    fn mirror(
        &self,
        books: &[(String, Option<Box<RawValue>>)],
    ) -> Option<tokio::sync::oneshot::Receiver<bool>> {
        let mirror = self.mirror.as_ref()?;
        let (last, earlier) = books.split_last()?;
        let send = |(id, book): &(String, Option<Box<RawValue>>), done| {
            // The task ends only with the actor (then `done` is dropped: not mirrored).
            let _ = mirror.send(MirrorBook {
                id: ConversationId::from(id.as_str()),
                book: book.clone(),
                done,
            });
        };
        for entry in earlier {
            send(entry, None);
        }
        let (done, mirrored) = tokio::sync::oneshot::channel();
        send(last, Some(done));
        Some(mirrored)
    }

    fn next_revision(&mut self) -> u64 {
        self.revision += 1;
        self.revision
    }

    fn reschedule(&mut self, id: &ConversationId) {
        if let Some(previous) = self.due_of.remove(id) {
            self.due.remove(&(previous, id.clone()));
        }
        if let Some(next) = self.tracked.get(id).and_then(|t| t.book.next_due()) {
            self.due.insert((next, id.clone()));
            self.due_of.insert(id.clone(), next);
        }
    }

    /// Publishes the open clocks of `id` and keeps the total up to date by the change
    /// (only this actor writes the views), instead of summing every view per handover.
    fn publish_view(&mut self, id: &ConversationId) {
        let replaced = match self.tracked.get(id).map(|t| t.book.open_clocks()) {
            Some(open) if !open.is_empty() => {
                self.stats.open_clocks += open.len();
                self.views.insert(id.clone(), open)
            }
            _ => self.views.remove(id).map(|(_, open)| open),
        };
        self.stats.open_clocks = self
            .stats
            .open_clocks
            .saturating_sub(replaced.map_or(0, |open| open.len()));
    }

    fn publish_open_clocks(&mut self) {
        self.stats.conversations = self.tracked.len();
        metrics::gauge!(names::SLA_OPEN_CLOCKS).set(self.stats.open_clocks as f64);
    }

    fn count_signals(&mut self, signals: &[SlaSignal]) {
        for signal in signals {
            let clock = signal.clock.as_str();
            match &signal.kind {
                SlaSignalKind::Warning => {
                    self.stats.warnings += 1;
                    metrics::counter!(names::SLA_WARNINGS, "clock" => clock).increment(1);
                }
                SlaSignalKind::Breach => {
                    self.stats.breaches += 1;
                    metrics::counter!(names::SLA_BREACHES, "clock" => clock).increment(1);
                }
                SlaSignalKind::Outcome(outcome) => {
                    self.stats.outcomes += 1;
                    metrics::counter!(names::SLA_OUTCOMES, "clock" => clock, "outcome" => outcome.as_str())
                        .increment(1);
                }
            }
        }
    }

    /// The commit for one conversation after its clocks moved: the records, the summary
    /// (if any), the clocks (removed once settled) and the outcomes the `signals` decided,
    /// in the same transaction as their `sla.outcome` records (kept without a CRM too:
    /// QA snapshots read them).
    fn commit_for(
        &mut self,
        id: &ConversationId,
        mut records: Vec<CrmRecord>,
        signals: &[SlaSignal],
    ) -> Commit {
        let revision = self.next_revision();
        let keep = self.settings.keep_records;
        if !keep {
            records.clear();
        }
        let messenger_type = self
            .tracked
            .get(id)
            .and_then(|tracked| tracked.messenger_type.clone());
        let mut commit = Commit {
            records,
            sla_outcomes: stored_outcomes(id, signals, messenger_type),
            ..Commit::default()
        };
        let Some(tracked) = self.tracked.get(id) else {
            return commit;
        };
        let tallies = tracked.book.tallies();
        if let (true, Some(summary)) = (keep, &tracked.summary) {
            match summary.document_json(&tallies) {
                Ok(document) => {
                    commit.summaries.push((id.to_string(), document, revision));
                }
                Err(error) => {
                    tracing::error!(conversation_id = %id, %error, "Conversation summary not serialisable; not sent.")
                }
            }
        }
        if tracked.book.is_settled() {
            let settled_at = self.settings.clock.now();
            let stored = StoredBookOut::Settled {
                settled_at,
                tallies: &tallies,
                book: &tracked.book,
                messenger_type: tracked.messenger_type.as_deref(),
            };
            match stored.to_json() {
                Ok(json) => commit.sla_books.push((id.to_string(), Some(json))),
                Err(error) => {
                    tracing::error!(conversation_id = %id, %error, "Settled SLA tallies not serialisable; removed.");
                    commit.sla_books.push((id.to_string(), None));
                }
            }
            self.tracked.remove(id);
            self.remember_settled(id, tallies, settled_at);
        } else {
            match StoredBookOut::Open(tracked).to_json() {
                Ok(json) => commit.sla_books.push((id.to_string(), Some(json))),
                Err(error) => {
                    tracing::error!(conversation_id = %id, %error, "SLA clocks not serialisable; kept in memory only.")
                }
            }
        }
        self.count_accepted(&commit.records);
        commit
    }

    /// Every record committed counts as accepted, whichever path committed it.
    fn count_accepted(&mut self, records: &[CrmRecord]) {
        // One counter update per kind, not per record (a handover has a few kinds).
        let mut by_kind: Vec<(&str, u64)> = Vec::new();
        for record in records {
            match by_kind.iter_mut().find(|(kind, _)| *kind == record.kind) {
                Some((_, count)) => *count += 1,
                None => by_kind.push((record.kind.as_str(), 1)),
            }
        }
        for (kind, count) in by_kind {
            metrics::counter!(names::CRM_RECORDS_ACCEPTED, "kind" => kind.to_owned())
                .increment(count);
        }
        self.stats.records_accepted += records.len() as u64;
    }

    /// Remembers the final tallies of a settled conversation; the oldest are forgotten
    /// past [`SETTLED_MEMORY`] or [`SETTLED_KEPT_FOR`], and dropped from the outbox then.
    fn remember_settled(&mut self, id: &ConversationId, tallies: SlaTallies, at: DateTime<Utc>) {
        if self.settled.insert(id.clone(), tallies).is_none() {
            self.settled_order.push_back((at, id.clone()));
        }
        let now = self.settings.clock.now();
        while let Some((at, oldest)) = self.settled_order.front().cloned() {
            if self.settled_order.len() <= SETTLED_MEMORY && now - at <= SETTLED_KEPT_FOR {
                break;
            }
            self.settled_order.pop_front();
            self.settled.remove(&oldest);
            let books = vec![(oldest.to_string(), None)];
            drop(self.mirror(&books));
            if let Some(writer) = &self.writer {
                drop(writer.submit(Commit {
                    sla_books: books,
                    ..Commit::default()
                }));
            }
        }
    }

    /// Emits what is due now (warnings, breaches, settlements) and commits it. Commits of
    /// the timer have nobody waiting: the writer retries a failing commit until it lands
    /// (the answers come back for `convoy replay`, which waits for them).
    fn tick(&mut self, now: DateTime<Utc>) -> Vec<tokio::sync::oneshot::Receiver<()>> {
        let mut committed = Vec::new();
        let due: Vec<ConversationId> = self
            .due
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| id.clone())
            .collect();
        for id in due {
            let Some(tracked) = self.tracked.get_mut(&id) else {
                self.reschedule(&id);
                continue;
            };
            let signals = tracked.book.tick(&self.settings.policy, now);
            self.count_signals(&signals);
            let records = signals.iter().map(|s| sla_record(&id, s, now)).collect();
            let commit = self.commit_for(&id, records, &signals);
            // Nobody waits for the timer's mirror either: the next commit of the
            // conversation (or the next tick) writes its book again.
            drop(self.mirror(&commit.sla_books));
            if let Some(writer) = &self.writer {
                committed.push(writer.submit(commit));
            }
            self.reschedule(&id);
            self.publish_view(&id);
        }
        self.publish_open_clocks();
        committed
    }
}

impl Actor for SlaActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(clocks) = self.cluster_clocks.clone() {
            let (mirror, mut books) = tokio::sync::mpsc::unbounded_channel();
            self.mirror = Some(mirror);
            // One task, so each conversation's books reach KV in commit order.
            ctx.spawn(
                async move {
                    while let Some(MirrorBook { id, book, done }) = books.recv().await {
                        let saved = clocks.save(id.text().as_str(), book.as_deref()).await;
                        if let Err(error) = &saved {
                            tracing::warn!(conversation_id = %id, %error, "SLA clocks not mirrored to NATS KV; the outbox still has them.");
                        }
                        if let Some(done) = done {
                            let _ = done.send(saved.is_ok());
                        }
                    }
                }
                .into_actor(self),
            );
        }
        // Deadlines that passed while Convoy was down are emitted at once.
        drop(self.tick(self.settings.clock.now()));
        if !self.settings.clock.is_virtual() {
            ctx.run_interval(self.settings.tick, |actor, _| {
                // Nobody waits on the timer's commits; the writer lands them regardless.
                drop(actor.tick(actor.settings.clock.now()));
            });
        }
    }
}

impl Handler<TickNow> for SlaActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: TickNow, _: &mut Self::Context) -> Self::Result {
        let committed = self.tick(self.settings.clock.now());
        Box::pin(async move {
            for answer in committed {
                let _ = answer.await;
            }
        })
    }
}

impl Handler<NextDue> for SlaActor {
    type Result = Option<DateTime<Utc>>;

    fn handle(&mut self, _: NextDue, _: &mut Self::Context) -> Self::Result {
        self.due.first().map(|(at, _)| *at)
    }
}

impl Handler<Handover> for SlaActor {
    type Result = ResponseFuture<Result<(), HandoverRefused>>;

    fn handle(&mut self, handover: Handover, _: &mut Self::Context) -> Self::Result {
        ActorMetrics::handled("sla");
        let id = handover.conversation_id;
        if !self.tracked.contains_key(&id) {
            if let (true, Some(tallies)) = (self.settings.keep_records, self.settled.get(&id)) {
                let document = match handover.summary.document_json(tallies) {
                    Ok(document) => Some(document),
                    Err(error) => {
                        tracing::error!(conversation_id = %id, %error, "Conversation summary not serialisable; not sent.");
                        None
                    }
                };
                let records: Vec<CrmRecord> = handover
                    .steps
                    .iter()
                    .flat_map(|step| {
                        step.facts
                            .iter()
                            .map(|fact| fact_record(&id, fact, step.observed_at))
                    })
                    .collect();
                let revision = self.next_revision();
                // Late facts of a settled conversation are accepted records too.
                self.count_accepted(&records);
                let commit = Commit {
                    records,
                    summaries: document
                        .map(|document| (id.to_string(), document, revision))
                        .into_iter()
                        .collect(),
                    ..Commit::default()
                };
                return self.submit(commit, &handover.steps, None);
            }
            if self.settled.contains_key(&id) {
                // Outcomes are final and no CRM takes records: nothing to keep.
                return Box::pin(async { Ok(()) });
            }
        }
        let policy = &self.settings.policy;
        let mut records = Vec::new();
        let mut signals = Vec::new();
        let open_before = self
            .tracked
            .get(&id)
            .map(|t| t.book.open_clocks())
            .unwrap_or_default();
        let tracked = self.tracked.entry(id.clone()).or_insert_with(|| Tracked {
            book: SlaBook::new(id.text().as_str()),
            summary: None,
            messenger_type: None,
        });
        for step in handover.steps.iter() {
            for fact in &step.facts {
                if let Fact::MessageStatus {
                    messenger_type: Some(messenger_type),
                    ..
                } = fact
                {
                    tracked.messenger_type = Some(messenger_type.clone());
                }
            }
            records.extend(
                step.facts
                    .iter()
                    .map(|fact| fact_record(&id, fact, step.observed_at)),
            );
            let observations = sla_observations(&step.facts, step.finished);
            let caused = tracked
                .book
                .observe(policy, &observations, step.observed_at);
            records.extend(caused.iter().map(|s| sla_record(&id, s, step.observed_at)));
            signals.extend(caused);
        }
        tracked.summary = Some(handover.summary);
        let open_after = tracked.book.open_clocks();
        for clock in clocks_started(&open_before, &open_after, &signals) {
            metrics::counter!(names::SLA_CLOCKS_STARTED, "clock" => clock.as_str()).increment(1);
        }
        self.count_signals(&signals);
        let commit = self.commit_for(&id, records, &signals);
        let mirrored = self.mirror(&commit.sla_books);
        self.reschedule(&id);
        self.publish_view(&id);
        self.publish_open_clocks();
        self.submit(commit, &handover.steps, mirrored)
    }
}

/// The outcome signals among `signals`, as the outbox's `sla_outcomes` table keeps them.
fn stored_outcomes(
    id: &ConversationId,
    signals: &[SlaSignal],
    messenger_type: Option<String>,
) -> Vec<StoredOutcome> {
    signals
        .iter()
        .filter_map(|signal| match signal.kind {
            SlaSignalKind::Outcome(outcome) => Some(StoredOutcome {
                conversation_id: id.to_string(),
                clock: signal.clock,
                subject: signal.subject.id().to_owned(),
                outcome,
                deadline: signal.deadline,
                fulfilled_at: signal.fulfilled_at,
                queue_id: signal.queue_id.clone(),
                messenger_type: messenger_type.clone(),
                decided_at: signal.at,
            }),
            _ => None,
        })
        .collect()
}

impl SlaActor {
    /// Queues the commit; the answer resolves once it is durable — and, in the cluster,
    /// once its books are in NATS KV too (`mirrored`): the worker acknowledges the frame
    /// only then, so a partition's next owner never loads books older than what the
    /// stream will not deliver again.
    /// `steps`: the handover's, whose receipt times a bench's latency probe records.
    fn submit(
        &self,
        commit: Commit,
        steps: &[HandoverStep],
        mirrored: Option<tokio::sync::oneshot::Receiver<bool>>,
    ) -> ResponseFuture<Result<(), HandoverRefused>> {
        let Some(writer) = &self.writer else {
            return Box::pin(async { Err(HandoverRefused::WriterClosed) });
        };
        let observed = if writer.timed() {
            steps.iter().map(|step| step.observed_at).collect()
        } else {
            Vec::new()
        };
        let committed = writer.submit_observed(commit, observed);
        Box::pin(async move {
            committed.await.map_err(|_| HandoverRefused::WriterClosed)?;
            let Some(mirrored) = mirrored else {
                return Ok(());
            };
            match mirrored.await {
                Ok(true) => Ok(()),
                Ok(false) | Err(_) => Err(HandoverRefused::NotMirrored),
            }
        })
    }
}

impl Handler<StopSla> for SlaActor {
    type Result = ();

    fn handle(&mut self, _: StopSla, ctx: &mut Self::Context) {
        if let Some(writer) = self.writer.take() {
            // Blocks this actor's own thread until the queued commits are durable.
            writer.close();
        }
        ctx.stop();
    }
}

impl Handler<GetSlaStats> for SlaActor {
    type Result = MessageResult<GetSlaStats>;

    fn handle(&mut self, _: GetSlaStats, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.stats.clone())
    }
}

/// Cluster worker role, on `PartitionChange::Acquired`: load the partition's SLA books
/// from NATS KV (the previous owner's clocks) and resume them here, before the
/// partition's frames are consumed. Answers how many conversations were loaded.
#[derive(Debug, Message)]
#[rtype(result = "Result<usize, KvError>")]
pub struct LoadPartitionClocks {
    pub partition: u16,
}

/// Cluster worker role, on `PartitionChange::Lost`: forget the partition's clocks here
/// (the new owner runs them; two owners would emit every breach twice) and drop them
/// from this worker's outbox. KV keeps them for the new owner.
#[derive(Debug, Message)]
#[rtype(result = "usize")]
pub struct DropPartitionClocks {
    pub partition: u16,
}

impl Handler<LoadPartitionClocks> for SlaActor {
    type Result = ResponseActFuture<Self, Result<usize, KvError>>;

    fn handle(&mut self, load: LoadPartitionClocks, _: &mut Self::Context) -> Self::Result {
        let Some(clocks) = self.cluster_clocks.clone() else {
            return Box::pin(actix::fut::ready(Ok(0)));
        };
        Box::pin(
            async move { clocks.load_partition(load.partition).await }
                .into_actor(self)
                .map(|loaded, actor, _| {
                    let loaded = loaded?;
                    let count = loaded.len();
                    let mut books = Vec::new();
                    let mut replayed = Commit::default();
                    let now = actor.settings.clock.now();
                    for stored in loaded {
                        let id = ConversationId::from(stored.conversation.as_str());
                        // A conversation already running here (its frames came first) keeps
                        // its own clocks: they are newer than the mirror's.
                        if actor.tracked.contains_key(&id) || actor.settled.contains_key(&id) {
                            continue;
                        }
                        match serde_json::from_value::<StoredBook>(stored.book.clone()) {
                            Ok(StoredBook::Open(tracked)) => {
                                actor.replay_emitted(&id, &tracked.book, tracked.messenger_type.clone(), now, &mut replayed);
                                actor.resume(id.clone(), *tracked);
                            }
                            Ok(StoredBook::Settled {
                                settled_at,
                                tallies,
                                book,
                                messenger_type,
                            }) => {
                                if let Some(book) = book {
                                    actor.replay_emitted(&id, &book, messenger_type, now, &mut replayed);
                                }
                                actor.remember_settled(&id, tallies, settled_at);
                            }
                            Err(error) => {
                                tracing::error!(conversation_id = %id, %error, "Unreadable SLA clocks in NATS KV; skipped.");
                                continue;
                            }
                        }
                        match serde_json::value::to_raw_value(&stored.book) {
                            Ok(raw) => books.push((id.to_string(), Some(raw))),
                            Err(error) => {
                                tracing::error!(conversation_id = %id, %error, "SLA clocks from NATS KV not serialisable; kept in memory only.");
                            }
                        }
                    }
                    actor.publish_open_clocks();
                    // This worker's outbox keeps them too, so its own restart resumes them;
                    // with them go the records of what the books already emitted.
                    actor.count_accepted(&replayed.records);
                    if let Some(writer) = &actor.writer {
                        drop(writer.submit(Commit {
                            sla_books: books,
                            ..replayed
                        }));
                    }
                    Ok(count)
                }),
        )
    }
}

impl Handler<DropPartitionClocks> for SlaActor {
    type Result = usize;

    fn handle(&mut self, lost: DropPartitionClocks, _: &mut Self::Context) -> usize {
        let Some(clocks) = self.cluster_clocks.clone() else {
            return 0;
        };
        let in_partition =
            |id: &ConversationId| clocks.partition_of(id.text().as_str()) == lost.partition;
        let dropped: Vec<ConversationId> = self
            .tracked
            .keys()
            .chain(self.settled.keys())
            .filter(|id| in_partition(id))
            .cloned()
            .collect();
        for id in &dropped {
            self.tracked.remove(id);
            self.settled.remove(id);
            self.reschedule(id);
            self.publish_view(id);
        }
        self.settled_order.retain(|(_, id)| !in_partition(id));
        self.publish_open_clocks();
        if let Some(writer) = &self.writer {
            drop(writer.submit(Commit {
                sla_books: dropped.iter().map(|id| (id.to_string(), None)).collect(),
                ..Commit::default()
            }));
        }
        dropped.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use convoy::sla::{ClockKind, SlaOutcome};

    use super::*;

    #[test]
    fn a_book_written_borrowed_reads_back_as_the_stored_form() {
        let tracked = Tracked {
            book: SlaBook::new("c1"),
            summary: None,
            messenger_type: Some("whatsapp".to_owned()),
        };
        let open = StoredBookOut::Open(&tracked).to_json().unwrap();
        match serde_json::from_str::<StoredBook>(open.get()).unwrap() {
            StoredBook::Open(read) => {
                assert_eq!(read.messenger_type.as_deref(), Some("whatsapp"));
                assert_eq!(read.book.open_clocks(), tracked.book.open_clocks());
            }
            StoredBook::Settled { .. } => panic!("an open book read back as settled"),
        }
        let tallies: SlaTallies = BTreeMap::from([(
            ClockKind::Answer,
            BTreeMap::from([(SlaOutcome::Compliant, 2)]),
        )]);
        let settled_at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let settled = StoredBookOut::Settled {
            settled_at,
            tallies: &tallies,
            book: &tracked.book,
            messenger_type: Some("whatsapp"),
        }
        .to_json()
        .unwrap();
        match serde_json::from_str::<StoredBook>(settled.get()).unwrap() {
            StoredBook::Settled {
                settled_at: at,
                tallies: read,
                book,
                messenger_type,
            } => {
                assert_eq!((at, read), (settled_at, tallies));
                assert_eq!(book.map(|book| *book), Some(tracked.book.clone()));
                assert_eq!(messenger_type.as_deref(), Some("whatsapp"));
            }
            StoredBook::Open(_) => panic!("a settled book read back as open"),
        }
        // Written before settled entries kept their book: still settled, no book.
        let older = r#"{"settled_at":"2023-11-14T22:13:20Z","tallies":{}}"#;
        match serde_json::from_str::<StoredBook>(older).unwrap() {
            StoredBook::Settled { book, .. } => assert!(book.is_none()),
            StoredBook::Open(_) => panic!("a settled book read back as open"),
        }
    }
}
