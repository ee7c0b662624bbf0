//! CrmBatchActor: delivers the outbox to the CRM — records in batches, conversation
//! summaries as conditional upserts — and deletes from the outbox only what the CRM
//! acknowledged.
//!
//! - **Batches** follow the pure planner (`convoy::crm::batching`): by count, bytes and
//!   age; records of one conversation are never reordered (a conversation with a batch
//!   in flight or waiting for a retry contributes nothing to another batch).
//! - **Concurrency** across conversations is adaptive (`convoy::crm::concurrency`, AIMD
//!   as Vector's ARC): it starts at 1, grows while answers come back fast, halves on
//!   429/5xx/timeouts.
//! - **Retries**: 408/429/5xx, connection errors and timeouts resend the *same* batch
//!   with the *same* `Idempotency-Key` (a reset after the request was written may have
//!   delivered it) after an exponential backoff with jitter (the `backoff` crate, capped at
//!   `crm.retry_max_delay`); a `Retry-After` wins. Transient failures are retried forever:
//!   an outage of the CRM never dead-letters anything.
//! - **Dead letters**: other 4xx refuse the batch, per-record rejections in a 2xx/207
//!   body refuse only those records; either way the records are written to the dead-letter
//!   table with their context before they leave the pending queue.
//! - **Summaries**: one upsert in flight per conversation (`PUT` with `If-None-Match: *`
//!   to create, `If-Match` to update); a 412 reads the CRM's document, merges (Convoy's
//!   fields win, the others are kept) and tries again. Newer summaries committed meanwhile
//!   replace the pending one in the outbox (latest wins) and go next.
//!
//! The actor runs on its own arbiter: its outbox calls block that thread only.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use backoff::backoff::Backoff;
use backoff::ExponentialBackoff;
use chrono::{DateTime, Utc};
use convoy::config::CrmConfig;
use convoy::crm::answer::{merge_summary, BatchVerdict};
use convoy::crm::batching::{plan, BatchPolicy, PendingRecord};
use convoy::crm::concurrency::{Aimd, AimdSettings, RequestOutcome};
use convoy::crm::records::SUMMARY_OWNED_FIELDS;
use convoy::crm::signing::idempotency_key;
use serde_json::Value;

use super::client::{CrmCallError, CrmClient, InProcessSink, PutOutcome, UpsertPrecondition};
use crate::outbox_writer::OutboxGate;
use crate::store::{DeadLetterNew, DeliveryFailure, DurableStore, OutboxRecord};
use crate::supervision::PanicGuard;
use crate::telemetry::{names, ActorMetrics};

/// Records of the outbox kept in memory for planning; the rest are read as these go.
const WINDOW: usize = 10_000;
/// Summary upserts in flight at once (each conversation at most one).
const SUMMARIES_IN_FLIGHT: usize = 4;
/// 412 → GET → merge → PUT rounds within one attempt before backing off.
const CONFLICT_ROUNDS: u32 = 5;
/// How often the timer re-plans, refreshes the age gauge and re-reads summaries.
const HOUSEKEEPING_EVERY: Duration = Duration::from_millis(250);

#[derive(Debug, Clone)]
pub struct CrmSettings {
    pub config: CrmConfig,
    /// `convoy replay`: deliver to this in-process sink instead of `config.endpoint`.
    pub in_process: Option<InProcessSink>,
}

impl CrmSettings {
    fn policy(&self) -> BatchPolicy {
        BatchPolicy {
            max_records: self.config.batch_size,
            max_bytes: self.config.max_batch_bytes,
            max_age: self.config.flush_interval,
        }
    }

    fn backoff(&self) -> ExponentialBackoff {
        ExponentialBackoff {
            initial_interval: Duration::from_millis(500),
            max_interval: self.config.retry_max_delay,
            multiplier: 2.0,
            randomization_factor: 0.3,
            // Retried forever: an outage must never dead-letter.
            max_elapsed_time: None,
            ..ExponentialBackoff::default()
        }
    }
}

/// The outbox writer committed new records or summaries. Sent with `do_send` from the
/// writer thread.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct OutboxChanged {
    pub records: usize,
    /// The conversations whose pending summary was written: only those are read again.
    pub summaries: Vec<String>,
}

/// `retry-dead` moved records back: forget the window and read the outbox again.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ReloadOutbox;

/// Shutdown: send what can be sent until `deadline`, then stop (the rest stays in the
/// outbox for the next start).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct FlushAndStop {
    pub deadline: Instant,
}

/// Per-daemon tallies for tests and the demo (the metrics recorder is process-wide).
#[derive(Debug, Message)]
#[rtype(result = "CrmStats")]
pub struct GetCrmStats;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrmStats {
    pub batches_sent: u64,
    pub records_acknowledged: u64,
    pub records_dead_lettered: u64,
    pub retries: u64,
    pub summaries_stored: u64,
    pub summary_conflicts_resolved: u64,
    pub concurrency_limit: usize,
    pub window: usize,
    pub in_flight: usize,
    pub waiting_retry: usize,
    pub summaries_pending: usize,
}

struct Batch {
    id: u64,
    records: Vec<OutboxRecord>,
    key: String,
    attempts: u32,
    first_attempt_at: Option<DateTime<Utc>>,
    backoff: ExponentialBackoff,
}

impl Batch {
    fn conversations(&self) -> HashSet<String> {
        self.records
            .iter()
            .map(|r| r.record.conversation_id.clone())
            .collect()
    }
}

struct SummaryJob {
    document: Value,
    revision: u64,
}

pub struct CrmBatchActor {
    settings: CrmSettings,
    store: Arc<DurableStore>,
    gate: Arc<OutboxGate>,
    client: Option<Rc<CrmClient>>,
    /// Pending records not in a batch, seq order.
    window: VecDeque<Windowed>,
    /// Highest seq read from the outbox.
    loaded_up_to: Option<u64>,
    /// Seqs taken into batches (in flight or waiting): never read into the window again.
    batched: HashSet<u64>,
    /// Conversation → the batch holding its oldest records.
    busy: HashMap<String, u64>,
    next_batch: u64,
    in_flight: usize,
    /// Batches waiting to be sent again (their conversations stay busy), by batch id.
    retrying: HashMap<u64, Batch>,
    retry_timers: HashMap<u64, SpawnHandle>,
    /// Retries the CRM itself timed (`Retry-After`): never called early.
    told_to_wait: HashSet<u64>,
    /// Retries whose time came (or that a recovered CRM called early), sent first.
    due_retries: VecDeque<u64>,
    aimd: Aimd,
    origin: Instant,
    wake: Option<SpawnHandle>,
    summaries: BTreeMap<String, SummaryJob>,
    summaries_in_flight: HashSet<String>,
    /// Per conversation: a summary the CRM refuses for what it is (not a transient
    /// failure) waits out its own backoff.
    summary_backoff: HashMap<String, (Instant, ExponentialBackoff)>,
    /// While the CRM fails transiently, summaries pause together: one probe per backoff
    /// step instead of every pending conversation retrying on its own.
    summaries_paused: Option<(Instant, ExponentialBackoff)>,
    summaries_dirty: bool,
    /// Conversations whose summary was committed since the last read.
    summaries_changed: BTreeSet<String>,
    etags: HashMap<String, String>,
    stopping: bool,
    /// Answers `FlushAndStop` once drained or out of time.
    flushed: Option<tokio::sync::oneshot::Sender<()>>,
    stats: CrmStats,
    _panic_guard: PanicGuard,
}

impl CrmBatchActor {
    pub fn new(
        settings: CrmSettings,
        store: Arc<DurableStore>,
        gate: Arc<OutboxGate>,
    ) -> CrmBatchActor {
        let aimd = Aimd::new(AimdSettings::new(settings.config.max_in_flight));
        CrmBatchActor {
            settings,
            store,
            gate,
            client: None,
            window: VecDeque::new(),
            loaded_up_to: None,
            batched: HashSet::new(),
            busy: HashMap::new(),
            next_batch: 0,
            in_flight: 0,
            retrying: HashMap::new(),
            retry_timers: HashMap::new(),
            told_to_wait: HashSet::new(),
            due_retries: VecDeque::new(),
            aimd,
            origin: Instant::now(),
            wake: None,
            summaries: BTreeMap::new(),
            summaries_in_flight: HashSet::new(),
            summary_backoff: HashMap::new(),
            summaries_paused: None,
            summaries_dirty: true,
            summaries_changed: BTreeSet::new(),
            etags: HashMap::new(),
            stopping: false,
            flushed: None,
            stats: CrmStats::default(),
            _panic_guard: PanicGuard::essential("crm"),
        }
    }

    /// Tops the window up from the outbox.
    fn load(&mut self) {
        if self.window.len() >= WINDOW / 2 {
            return;
        }
        match self
            .store
            .pending_records(self.loaded_up_to, WINDOW - self.window.len())
        {
            Ok(records) => {
                for record in records {
                    self.loaded_up_to = Some(record.seq);
                    if !self.batched.contains(&record.seq) {
                        self.window.push_back(Windowed::from(record));
                    }
                }
            }
            Err(error) => {
                tracing::error!(%error, "Cannot read pending records from the outbox; retrying.")
            }
        }
    }

    fn now_offset(&self) -> Duration {
        self.origin.elapsed()
    }

    /// Sends every batch that is due while the concurrency limit allows; arms a timer for
    /// the next partial batch.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        self.load();
        while self.aimd.has_room() {
            let Some(id) = self.due_retries.pop_front() else {
                break;
            };
            if let Some(batch) = self.retrying.remove(&id) {
                self.send(batch, ctx);
            }
        }
        let policy = self.settings.policy();
        // While a batch waits out a backoff the CRM is failing: it alone probes, and no
        // new batch is opened (the records wait in the outbox, not in retry loops).
        // What the planner reads, taken from the window once per pump (sizes were
        // measured when the records were read from the outbox).
        let mut pending: Vec<PendingRecord> = self.window.iter().map(|w| w.plan.clone()).collect();
        while self.aimd.has_room() && self.retrying.is_empty() {
            let busy = &self.busy;
            let planned = plan(&policy, &pending, &|conversation| {
                busy.contains_key(conversation)
            });
            if planned.is_empty() {
                break;
            }
            let now = Utc::now();
            if !(planned.ready(&policy, now) || self.stopping) {
                if let Some(due) = planned.due(&policy) {
                    let wait = (due - now).to_std().unwrap_or(Duration::ZERO);
                    self.arm_wake(wait, ctx);
                }
                break;
            }
            let chosen: HashSet<u64> = planned.seqs.iter().copied().collect();
            let mut records = Vec::with_capacity(chosen.len());
            self.window.retain(|windowed| {
                if chosen.contains(&windowed.plan.seq) {
                    records.push(windowed.record.clone());
                    false
                } else {
                    true
                }
            });
            pending.retain(|record| !chosen.contains(&record.seq));
            let sent: Vec<_> = records.iter().map(|r| r.record.clone()).collect();
            self.next_batch += 1;
            let batch = Batch {
                id: self.next_batch,
                key: idempotency_key(&sent),
                records,
                attempts: 0,
                first_attempt_at: None,
                backoff: self.settings.backoff(),
            };
            for record in &batch.records {
                self.batched.insert(record.seq);
            }
            for conversation in batch.conversations() {
                self.busy.insert(conversation, batch.id);
            }
            self.send(batch, ctx);
        }
        self.publish();
    }

    fn arm_wake(&mut self, wait: Duration, ctx: &mut Context<Self>) {
        if let Some(handle) = self.wake.take() {
            ctx.cancel_future(handle);
        }
        self.wake = Some(ctx.run_later(wait, |actor, ctx| {
            actor.wake = None;
            actor.pump(ctx);
        }));
    }

    fn send(&mut self, mut batch: Batch, ctx: &mut Context<Self>) {
        let Some(client) = self.client.clone() else {
            return;
        };
        batch.attempts += 1;
        let now = Utc::now();
        batch.first_attempt_at.get_or_insert(now);
        self.aimd.start();
        self.in_flight += 1;
        self.stats.batches_sent += 1;
        for record in &batch.records {
            metrics::counter!(names::CRM_RECORDS_SENT, "kind" => record.record.kind.clone())
                .increment(1);
        }
        metrics::histogram!(names::CRM_BATCH_RECORDS).record(batch.records.len() as f64);
        let started = self.now_offset();
        let started_at = Instant::now();
        let records: Vec<_> = batch.records.iter().map(|r| r.record.clone()).collect();
        let key = batch.key.clone();
        let call = async move {
            client
                .post_batch(&records, &key)
                .await
                .map(|answer| answer.verdict)
        };
        ctx.spawn(call.into_actor(self).map(move |answer, actor, ctx| {
            actor.in_flight -= 1;
            let elapsed = started_at.elapsed();
            actor.answered(batch, answer, started, elapsed, ctx);
        }));
        self.publish();
    }

    fn answered(
        &mut self,
        mut batch: Batch,
        answer: Result<BatchVerdict, CrmCallError>,
        started: Duration,
        elapsed: Duration,
        ctx: &mut Context<Self>,
    ) {
        let now = self.now_offset();
        let verdict = match answer {
            Ok(verdict) => verdict,
            Err(error) => {
                // Connection refused or reset, timeout: maybe delivered. Same key again.
                let back_pressure = error.is_back_pressure();
                self.aimd.finish(
                    started,
                    now,
                    if back_pressure {
                        RequestOutcome::BackPressure
                    } else {
                        RequestOutcome::Other
                    },
                );
                metrics::histogram!(names::CRM_REQUEST_SECONDS, "outcome" => "error")
                    .record(elapsed.as_secs_f64());
                tracing::warn!(%error, attempt = batch.attempts, records = batch.records.len(), "CRM batch not answered; it is sent again with the same Idempotency-Key.");
                self.retry_later(batch, None, ctx);
                self.pump(ctx);
                return;
            }
        };
        metrics::histogram!(names::CRM_REQUEST_SECONDS, "outcome" => verdict.as_str())
            .record(elapsed.as_secs_f64());
        self.aimd.finish(
            started,
            now,
            if verdict.is_back_pressure() {
                RequestOutcome::BackPressure
            } else if matches!(verdict, BatchVerdict::Acknowledged { .. }) {
                RequestOutcome::Success
            } else {
                RequestOutcome::Other
            },
        );
        match verdict {
            BatchVerdict::Acknowledged { rejected, retry } => {
                let refused: HashMap<&str, _> =
                    rejected.iter().map(|r| (r.id.as_str(), r)).collect();
                let again: HashSet<&str> = retry.iter().map(String::as_str).collect();
                let mut acknowledged = Vec::new();
                let mut letters = Vec::new();
                let mut resend = Vec::new();
                for record in &batch.records {
                    let id = record.record.id.as_str();
                    if let Some(rejection) = refused.get(id) {
                        letters.push(self.letter(
                            &batch,
                            record,
                            Some(rejection.status),
                            format!("rejected by the CRM: {}", rejection.reason),
                            None,
                        ));
                    } else if again.contains(id) {
                        resend.push(record.clone());
                    } else {
                        acknowledged.push(record);
                    }
                }
                self.acknowledge(&acknowledged);
                self.dead_letter(&batch, letters);
                if batch.attempts > 1 || !self.retry_timers.is_empty() {
                    self.crm_is_back(ctx);
                }
                if resend.is_empty() {
                    self.release(&batch);
                } else {
                    // The records the CRM could not take now go again, alone, under a
                    // key of their own (the body differs).
                    let sent: Vec<_> = resend.iter().map(|r| r.record.clone()).collect();
                    batch.key = idempotency_key(&sent);
                    batch.records = resend;
                    self.release_all_but(&batch);
                    self.retry_later(batch, None, ctx);
                }
            }
            BatchVerdict::Retry {
                status,
                after,
                reason,
            } => {
                tracing::warn!(status, %reason, attempt = batch.attempts, records = batch.records.len(), "CRM asked to retry the batch.");
                self.retry_later(batch, after, ctx);
            }
            BatchVerdict::DeadLetter { status, excerpt } => {
                tracing::error!(
                    status,
                    records = batch.records.len(),
                    "CRM refused the batch; its records go to the dead letters."
                );
                let letters = batch
                    .records
                    .iter()
                    .map(|record| {
                        self.letter(
                            &batch,
                            record,
                            Some(status),
                            format!("batch refused with HTTP {status}"),
                            Some(excerpt.clone()),
                        )
                    })
                    .collect();
                self.dead_letter(&batch, letters);
                self.release(&batch);
            }
        }
        self.pump(ctx);
    }

    fn letter(
        &self,
        batch: &Batch,
        record: &OutboxRecord,
        status: Option<u16>,
        reason: String,
        excerpt: Option<String>,
    ) -> DeadLetterNew {
        let now = Utc::now();
        DeadLetterNew {
            seq: record.seq,
            failure: DeliveryFailure {
                status,
                reason,
                body_excerpt: excerpt,
                attempts: batch.attempts,
                first_attempt_at: batch.first_attempt_at.unwrap_or(now),
                last_attempt_at: now,
                idempotency_key: Some(batch.key.clone()),
            },
        }
    }

    fn acknowledge(&mut self, records: &[&OutboxRecord]) {
        if records.is_empty() {
            return;
        }
        let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
        match self.store.acknowledge(&seqs) {
            Ok(_) => {
                for record in records {
                    metrics::counter!(names::CRM_RECORDS_ACKNOWLEDGED, "kind" => record.record.kind.clone())
                        .increment(1);
                    self.batched.remove(&record.seq);
                }
                self.stats.records_acknowledged += records.len() as u64;
                self.gate.records_left(records.len() as u64);
            }
            Err(error) => {
                // They stay pending and go again after a restart: the CRM dedupes by id.
                tracing::error!(%error, records = records.len(), "Cannot delete acknowledged records from the outbox.");
            }
        }
    }

    fn dead_letter(&mut self, batch: &Batch, letters: Vec<DeadLetterNew>) {
        if letters.is_empty() {
            return;
        }
        match self.store.dead_letter(&letters) {
            Ok(_) => {
                for letter in &letters {
                    self.batched.remove(&letter.seq);
                    if let Some(record) = batch.records.iter().find(|r| r.seq == letter.seq) {
                        metrics::counter!(names::CRM_RECORDS_DEAD_LETTERED, "kind" => record.record.kind.clone())
                            .increment(1);
                    }
                }
                self.stats.records_dead_lettered += letters.len() as u64;
                self.gate.records_left(letters.len() as u64);
            }
            Err(error) => {
                tracing::error!(%error, records = letters.len(), "Cannot write dead letters; the records stay pending.");
            }
        }
    }

    /// The batch is done: its conversations may go again.
    fn release(&mut self, batch: &Batch) {
        for conversation in batch.conversations() {
            if self.busy.get(&conversation) == Some(&batch.id) {
                self.busy.remove(&conversation);
            }
        }
    }

    /// Only the conversations still in `batch` stay busy.
    fn release_all_but(&mut self, batch: &Batch) {
        let still = batch.conversations();
        self.busy
            .retain(|conversation, id| *id != batch.id || still.contains(conversation));
    }

    fn retry_later(&mut self, mut batch: Batch, after: Option<Duration>, ctx: &mut Context<Self>) {
        let backoff = batch
            .backoff
            .next_backoff()
            .unwrap_or(self.settings.config.retry_max_delay);
        let wait = after.unwrap_or(backoff);
        self.stats.retries += 1;
        for record in &batch.records {
            metrics::counter!(names::CRM_RECORDS_RETRIED, "kind" => record.record.kind.clone())
                .increment(1);
        }
        let wait = if self.stopping {
            wait.min(Duration::from_millis(200))
        } else {
            wait
        };
        let id = batch.id;
        self.retrying.insert(id, batch);
        if after.is_some() {
            self.told_to_wait.insert(id);
        }
        let timer = ctx.run_later(wait, move |actor, ctx| {
            actor.retry_timers.remove(&id);
            actor.told_to_wait.remove(&id);
            actor.due_retries.push_back(id);
            actor.pump(ctx);
        });
        self.retry_timers.insert(id, timer);
        self.publish();
    }

    /// The CRM answered a batch with a 2xx: whatever waits for a backoff after an outage
    /// goes now (in order, within the concurrency limit) instead of up to
    /// `crm.retry_max_delay` later; summaries likewise. A wait the CRM asked for
    /// (`Retry-After`) is kept.
    fn crm_is_back(&mut self, ctx: &mut Context<Self>) {
        let mut waiting: Vec<u64> = self
            .retry_timers
            .keys()
            .filter(|id| !self.told_to_wait.contains(id))
            .copied()
            .collect();
        waiting.sort_unstable();
        for id in waiting {
            if let Some(timer) = self.retry_timers.remove(&id) {
                ctx.cancel_future(timer);
                self.due_retries.push_back(id);
            }
        }
        self.summary_backoff.clear();
        self.summaries_paused = None;
    }

    /// Brings the summaries to send up to date with the outbox: all of them after a start
    /// or a failed read, else only those committed since (reading every pending summary
    /// at each commit cost time in proportion to the backlog, per summary sent).
    fn refresh_summaries(&mut self) {
        if !self.summaries_dirty {
            self.refresh_changed_summaries();
            return;
        }
        self.summaries_dirty = false;
        self.summaries_changed.clear();
        match self.store.pending_summaries() {
            Ok(pending) => {
                self.summaries = pending
                    .into_iter()
                    .map(|summary| {
                        (
                            summary.conversation_id,
                            SummaryJob {
                                document: summary.document,
                                revision: summary.revision,
                            },
                        )
                    })
                    .collect();
            }
            Err(error) => {
                self.summaries_dirty = true;
                tracing::error!(%error, "Cannot read pending summaries from the outbox.");
            }
        }
    }

    fn refresh_changed_summaries(&mut self) {
        if self.summaries_changed.is_empty() {
            return;
        }
        let changed: Vec<String> = std::mem::take(&mut self.summaries_changed)
            .into_iter()
            .collect();
        match self.store.pending_summaries_of(&changed) {
            Ok(pending) => {
                // Absent ones were settled meanwhile: nothing to send for them.
                for id in &changed {
                    self.summaries.remove(id);
                }
                for summary in pending {
                    self.summaries.insert(
                        summary.conversation_id,
                        SummaryJob {
                            document: summary.document,
                            revision: summary.revision,
                        },
                    );
                }
            }
            Err(error) => {
                self.summaries_dirty = true;
                tracing::error!(%error, "Cannot read changed summaries from the outbox.");
            }
        }
    }

    fn pump_summaries(&mut self, ctx: &mut Context<Self>) {
        self.refresh_summaries();
        let Some(client) = self.client.clone() else {
            return;
        };
        let now = Instant::now();
        let probing = match &self.summaries_paused {
            Some((until, _)) if *until > now => return,
            Some(_) => true,
            None => false,
        };
        let room = if probing { 1 } else { SUMMARIES_IN_FLIGHT };
        let ready: Vec<String> = self
            .summaries
            .keys()
            .filter(|id| !self.summaries_in_flight.contains(*id))
            .filter(|id| {
                self.summary_backoff
                    .get(*id)
                    .is_none_or(|(not_before, _)| *not_before <= now)
            })
            .take(room.saturating_sub(self.summaries_in_flight.len()))
            .cloned()
            .collect();
        for id in ready {
            let Some(job) = self.summaries.get(&id) else {
                continue;
            };
            let document = job.document.clone();
            let revision = job.revision;
            let etag = self.etags.get(&id).cloned();
            self.summaries_in_flight.insert(id.clone());
            let client = Rc::clone(&client);
            let conversation = id.clone();
            let upsert =
                async move { upsert_summary(&client, &conversation, document, etag).await };
            ctx.spawn(upsert.into_actor(self).map(move |result, actor, ctx| {
                actor.summaries_in_flight.remove(&id);
                match result {
                    Ok((etag, conflicts)) => {
                        actor.etags.insert(id.clone(), etag);
                        actor.summary_backoff.remove(&id);
                        actor.summaries_paused = None;
                        actor.stats.summaries_stored += 1;
                        let outcome = if conflicts > 0 {
                            actor.stats.summary_conflicts_resolved += u64::from(conflicts);
                            "conflict_resolved"
                        } else {
                            "stored"
                        };
                        metrics::counter!(names::CRM_SUMMARY_UPSERTS, "outcome" => outcome)
                            .increment(1);
                        if let Err(error) = actor.store.settle_summary(&id, revision) {
                            tracing::error!(%error, conversation_id = %id, "Cannot settle the summary in the outbox; it is sent again.");
                        }
                        if actor.summaries.get(&id).map(|job| job.revision) == Some(revision) {
                            actor.summaries.remove(&id);
                        }
                    }
                    Err(error) => {
                        metrics::counter!(names::CRM_SUMMARY_UPSERTS, "outcome" => "failed")
                            .increment(1);
                        actor.etags.remove(&id);
                        if error.is_transient() {
                            let first_failure = actor.summaries_paused.is_none();
                            let backoff_settings = actor.settings.backoff();
                            let (until, backoff) = actor
                                .summaries_paused
                                .get_or_insert((Instant::now(), backoff_settings));
                            let wait = backoff
                                .next_backoff()
                                .unwrap_or(actor.settings.config.retry_max_delay);
                            *until = Instant::now() + wait;
                            if first_failure {
                                tracing::warn!(%error, conversation_id = %id, retry_in_ms = wait.as_millis() as u64, "Summary upsert failed; summaries pause and retry until the CRM takes them.");
                            } else {
                                tracing::debug!(%error, conversation_id = %id, retry_in_ms = wait.as_millis() as u64, "Summary upsert failed again.");
                            }
                            if actor.summaries_paused.is_some() {
                                let wake = wait + Duration::from_millis(10);
                                ctx.run_later(wake, |actor, ctx| actor.pump_summaries(ctx));
                            }
                            return;
                        }
                        let first_failure = !actor.summary_backoff.contains_key(&id);
                        let backoff_settings = actor.settings.backoff();
                        let entry = actor
                            .summary_backoff
                            .entry(id.clone())
                            .or_insert((Instant::now(), backoff_settings));
                        let wait = entry
                            .1
                            .next_backoff()
                            .unwrap_or(actor.settings.config.retry_max_delay);
                        entry.0 = Instant::now() + wait;
                        // One WARN per conversation and outage; the metric counts the rest.
                        if first_failure {
                            tracing::warn!(%error, conversation_id = %id, retry_in_ms = wait.as_millis() as u64, "Summary upsert failed; retrying until it lands.");
                        } else {
                            tracing::debug!(%error, conversation_id = %id, retry_in_ms = wait.as_millis() as u64, "Summary upsert failed again.");
                        }
                    }
                }
                actor.pump_summaries(ctx);
            }));
        }
        self.publish();
    }

    fn publish(&mut self) {
        self.stats.concurrency_limit = self.aimd.limit();
        self.stats.window = self.window.len();
        self.stats.in_flight = self.in_flight;
        self.stats.waiting_retry = self.retrying.len();
        self.stats.summaries_pending = self.summaries.len();
        metrics::gauge!(names::CRM_CONCURRENCY_LIMIT).set(self.aimd.limit() as f64);
        metrics::gauge!(names::CRM_BATCHES_IN_FLIGHT).set(self.in_flight as f64);
        metrics::gauge!(names::CRM_SUMMARIES_PENDING).set(self.summaries.len() as f64);
    }

    fn housekeeping(&mut self, ctx: &mut Context<Self>) {
        // The store's counts are the truth (O(1) in redb): they correct the gate after
        // `convoy outbox retry-dead` and any drift between commits and acknowledgements.
        if let Ok(status) = self.store.status() {
            self.gate.set_pending(status.pending);
            let age = status.oldest_pending_at.map_or(0.0, |at| {
                (Utc::now() - at)
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .as_secs_f64()
            });
            metrics::gauge!(names::OUTBOX_OLDEST_AGE).set(age);
        }
        self.pump(ctx);
        self.pump_summaries(ctx);
    }

    fn drained(&self) -> bool {
        self.window.is_empty()
            && self.in_flight == 0
            && self.retrying.is_empty()
            && self.summaries.is_empty()
            && self.summaries_in_flight.is_empty()
    }
}

/// One summary upsert: create or update, resolving 412s by merging with the CRM's
/// document. Returns the stored ETag and how many conflicts were resolved.
async fn upsert_summary(
    client: &CrmClient,
    conversation: &str,
    ours: Value,
    known_etag: Option<String>,
) -> Result<(String, u32), CrmCallError> {
    let mut precondition = match known_etag {
        Some(etag) => UpsertPrecondition::Match(etag),
        None => UpsertPrecondition::Create,
    };
    let mut document = ours.clone();
    let mut conflicts = 0;
    loop {
        match client
            .put_summary(conversation, &document, precondition.clone())
            .await?
        {
            PutOutcome::Stored { etag } => return Ok((etag, conflicts)),
            PutOutcome::PreconditionFailed => {
                conflicts += 1;
                if conflicts > CONFLICT_ROUNDS {
                    return Err(CrmCallError::Status {
                        status: 412,
                        retry_after: None,
                        excerpt: format!(
                            "{conflicts} conflicting writes in a row on conversation {conversation}"
                        ),
                    });
                }
                match client.get_summary(conversation).await? {
                    Some((theirs, etag)) => {
                        document = merge_summary(&theirs, &ours, SUMMARY_OWNED_FIELDS);
                        precondition = UpsertPrecondition::Match(etag);
                    }
                    None => {
                        document = ours.clone();
                        precondition = UpsertPrecondition::Create;
                    }
                }
            }
        }
    }
}

/// A pending record in the window with what the planner needs of it, measured once when
/// it is read from the outbox (not at every plan).
struct Windowed {
    record: OutboxRecord,
    plan: PendingRecord,
}

impl From<OutboxRecord> for Windowed {
    fn from(record: OutboxRecord) -> Windowed {
        // The encoded size: ids, kind and payload, plus the JSON around them.
        let size = record.record.id.len()
            + record.record.conversation_id.len()
            + record.record.kind.len()
            + record.record.payload.text().len()
            + 64;
        let plan = PendingRecord {
            seq: record.seq,
            conversation_id: record.record.conversation_id.clone(),
            size,
            accepted_at: record.accepted_at,
        };
        Windowed { record, plan }
    }
}

impl Actor for CrmBatchActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let client = match &self.settings.in_process {
            Some(sink) => CrmClient::in_process(&self.settings.config, sink.clone()),
            None => CrmClient::new(&self.settings.config),
        };
        self.client = Some(Rc::new(client));
        ctx.run_interval(HOUSEKEEPING_EVERY, |actor, ctx| actor.housekeeping(ctx));
        self.pump(ctx);
        self.pump_summaries(ctx);
    }
}

impl Handler<OutboxChanged> for CrmBatchActor {
    type Result = ();

    fn handle(&mut self, changed: OutboxChanged, ctx: &mut Self::Context) {
        ActorMetrics::handled("crm");
        self.summaries_changed.extend(changed.summaries);
        if changed.records > 0 {
            self.pump(ctx);
        }
    }
}

impl Handler<ReloadOutbox> for CrmBatchActor {
    type Result = ();

    fn handle(&mut self, _: ReloadOutbox, ctx: &mut Self::Context) {
        self.window.clear();
        self.loaded_up_to = None;
        match self.store.status() {
            Ok(status) => self.gate.set_pending(status.pending),
            Err(error) => tracing::warn!(%error, "Cannot read the outbox status."),
        }
        self.pump(ctx);
    }
}

impl Handler<FlushAndStop> for CrmBatchActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, flush: FlushAndStop, ctx: &mut Self::Context) -> Self::Result {
        self.stopping = true;
        self.summaries_dirty = true;
        self.pump(ctx);
        self.pump_summaries(ctx);
        let (done, stopped) = tokio::sync::oneshot::channel();
        self.flushed = Some(done);
        self.wait_drained(flush.deadline, ctx);
        Box::pin(async move {
            let _ = stopped.await;
        })
    }
}

impl CrmBatchActor {
    fn wait_drained(&mut self, deadline: Instant, ctx: &mut Context<Self>) {
        if self.drained() || Instant::now() >= deadline {
            if !self.drained() {
                tracing::info!(
                    pending = self.gate.pending(),
                    "Shutdown: records still pending stay in the outbox for the next start."
                );
            }
            if let Some(done) = self.flushed.take() {
                let _ = done.send(());
            }
            ctx.stop();
            return;
        }
        self.pump(ctx);
        ctx.run_later(Duration::from_millis(50), move |actor, ctx| {
            actor.wait_drained(deadline, ctx)
        });
    }
}

impl Handler<GetCrmStats> for CrmBatchActor {
    type Result = MessageResult<GetCrmStats>;

    fn handle(&mut self, _: GetCrmStats, _: &mut Self::Context) -> Self::Result {
        self.publish();
        MessageResult(self.stats.clone())
    }
}
