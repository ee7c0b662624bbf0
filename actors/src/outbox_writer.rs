//! The outbox's one writer thread (group commit) and the gate that turns a full or
//! failing outbox into back-pressure on the stream.
//!
//! Everything Convoy accepts — CRM records, conversation summaries, SLA clock state — is
//! committed here, off the actors' threads: the thread takes the first waiting commit,
//! then every other one already queued (up to [`GROUP_LIMIT`]), and writes them in **one**
//! redb transaction, so under load many handovers share one fsync. A handover counts as
//! accepted only when its commit is durable (its `done` channel answers then).
//!
//! A failing commit (disk full, I/O error) is retried until it succeeds — nothing accepted
//! is dropped — and meanwhile the gate is closed, so the stream stops reading frames
//! (TCP back-pressure towards Genesys) instead of growing queues in memory. The gate is
//! closed as well while the outbox holds `outbox.max_records` or more pending records.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use tokio::sync::{oneshot, Notify};

use crate::store::{Commit, CommitReport, DurableStore};
use crate::telemetry::names;

/// Most commits grouped into one transaction.
const GROUP_LIMIT: usize = 512;
/// Pause between attempts of a failing commit.
const RETRY_FAILED_COMMIT_AFTER: Duration = Duration::from_secs(1);
/// Commits queued but not yet durable above which the gate closes: the disk is behind.
const MAX_BACKLOG: usize = 4_096;

/// Says whether the pipeline can take more frames; shared by the writer (pending grows),
/// the CRM batcher (pending shrinks), the stream (waits) and `/readyz`.
#[derive(Debug)]
pub struct OutboxGate {
    pending: AtomicU64,
    /// Records appended to the outbox by this process (duplicates of pending ones
    /// excluded): what "accepted" means.
    appended: AtomicU64,
    cap: u64,
    backlog: AtomicUsize,
    failing: AtomicBool,
    released: AtomicBool,
    changed: Notify,
}

/// Why the gate is closed, for `/readyz` and the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateClosed {
    /// `outbox.max_records` pending records reached: the CRM is not keeping up.
    OutboxFull,
    /// Commits are failing (disk).
    CommitFailing,
    /// Commits are queued faster than the disk takes them.
    CommitBacklog,
}

impl GateClosed {
    pub fn as_str(self) -> &'static str {
        match self {
            GateClosed::OutboxFull => "outbox_full",
            GateClosed::CommitFailing => "commit_failing",
            GateClosed::CommitBacklog => "commit_backlog",
        }
    }
}

impl OutboxGate {
    /// `pending`: the records the outbox holds at start.
    pub fn new(cap: u64, pending: u64) -> OutboxGate {
        let gate = OutboxGate {
            pending: AtomicU64::new(pending),
            appended: AtomicU64::new(0),
            cap,
            backlog: AtomicUsize::new(0),
            failing: AtomicBool::new(false),
            released: AtomicBool::new(false),
            changed: Notify::new(),
        };
        gate.publish();
        gate
    }

    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::SeqCst)
    }

    /// `None` when open.
    pub fn closed_because(&self) -> Option<GateClosed> {
        if self.failing.load(Ordering::SeqCst) {
            Some(GateClosed::CommitFailing)
        } else if self.pending() >= self.cap {
            Some(GateClosed::OutboxFull)
        } else if self.backlog.load(Ordering::SeqCst) >= MAX_BACKLOG {
            Some(GateClosed::CommitBacklog)
        } else {
            None
        }
    }

    /// Resolves once the pipeline takes frames again (at once if it does, or after
    /// [`OutboxGate::release`]).
    pub async fn wait_open(&self) {
        loop {
            if self.released.load(Ordering::SeqCst) || self.closed_because().is_none() {
                return;
            }
            let changed = self.changed.notified();
            if self.released.load(Ordering::SeqCst) || self.closed_because().is_none() {
                return;
            }
            // A bounded wait: a missed wake-up costs at most this, never a stall.
            let _ = tokio::time::timeout(Duration::from_millis(500), changed).await;
        }
    }

    /// Shutdown: nobody waits on the gate any more.
    pub fn release(&self) {
        self.released.store(true, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// Records appended since this process started (a record whose id was already pending
    /// is not appended again).
    pub fn appended(&self) -> u64 {
        self.appended.load(Ordering::SeqCst)
    }

    pub fn records_accepted(&self, count: u64) {
        self.appended.fetch_add(count, Ordering::SeqCst);
        self.pending.fetch_add(count, Ordering::SeqCst);
        self.publish();
    }

    /// Records left the outbox (acknowledged or dead-lettered).
    pub fn records_left(&self, count: u64) {
        let _ = self
            .pending
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_sub(count))
            });
        self.publish();
    }

    /// The pending count read back from the store (after `retry-dead`, or to correct
    /// drift).
    pub fn set_pending(&self, count: u64) {
        self.pending.store(count, Ordering::SeqCst);
        self.publish();
    }

    fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
        self.publish();
    }

    fn backlog_changed(&self, delta: isize) {
        if delta >= 0 {
            self.backlog
                .fetch_add(delta.unsigned_abs(), Ordering::SeqCst);
        } else {
            self.backlog
                .fetch_sub(delta.unsigned_abs(), Ordering::SeqCst);
        }
        self.publish();
    }

    fn publish(&self) {
        metrics::gauge!(names::OUTBOX_PENDING).set(self.pending() as f64);
        let closed = self.closed_because();
        metrics::gauge!(names::OUTBOX_BACKPRESSURE).set(if closed.is_some() { 1.0 } else { 0.0 });
        if closed.is_none() {
            self.changed.notify_waiters();
        }
    }
}

struct Job {
    commit: Commit,
    done: Option<oneshot::Sender<()>>,
    /// When the frames whose facts this commit carries were received (only collected
    /// while a [`CommitLatency`] is attached).
    observed: Vec<DateTime<Utc>>,
}

/// Highest latency the histogram tells apart (longer ones are clamped to it): an hour.
const LATENCY_CEILING_MICROS: u64 = 3_600_000_000;

/// Latency from a frame's receipt (the socket task's read) to the durable commit of what
/// it caused, in microseconds, in an HDR histogram. Attached by `convoy bench e2e` only:
/// without it the writer collects no timestamps and records nothing.
#[derive(Debug)]
pub struct CommitLatency {
    histogram: Mutex<Histogram<u64>>,
}

impl CommitLatency {
    /// Three significant digits from 1 µs to an hour: ~0.1 % error in a fixed ~200 KB.
    pub fn new() -> Result<CommitLatency, hdrhistogram::CreationError> {
        Ok(CommitLatency {
            histogram: Mutex::new(Histogram::new_with_bounds(1, LATENCY_CEILING_MICROS, 3)?),
        })
    }

    /// Records one latency (negative ones, from a clock step, count as zero).
    pub fn record(&self, observed_at: DateTime<Utc>, durable_at: DateTime<Utc>) {
        let micros = (durable_at - observed_at)
            .num_microseconds()
            .unwrap_or(i64::MAX)
            .clamp(1, LATENCY_CEILING_MICROS as i64) as u64;
        let mut histogram = self
            .histogram
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        histogram.saturating_record(micros);
    }

    /// Latencies recorded since the last take.
    pub fn len(&self) -> u64 {
        self.histogram
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What was recorded since the last take, and a fresh start.
    pub fn take(&self) -> Histogram<u64> {
        let mut histogram = self
            .histogram
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let taken = histogram.clone();
        histogram.reset();
        taken
    }
}

/// Called on the writer thread after each durable group commit.
pub type AfterCommit = Box<dyn Fn(&CommitReport) + Send>;

/// The handle to the writer thread. Dropping it (or [`OutboxWriter::close`]) lets the
/// thread finish the commits already queued and end.
pub struct OutboxWriter {
    jobs: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    gate: Arc<OutboxGate>,
    /// Whether a [`CommitLatency`] is attached (callers then pass receipt times).
    timed: bool,
}

impl std::fmt::Debug for OutboxWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxWriter").finish_non_exhaustive()
    }
}

impl OutboxWriter {
    pub fn start(
        store: Arc<DurableStore>,
        gate: Arc<OutboxGate>,
        after_commit: AfterCommit,
    ) -> std::io::Result<OutboxWriter> {
        OutboxWriter::start_timed(store, gate, after_commit, None)
    }

    /// [`OutboxWriter::start`], recording into `latency` (when given) how long each
    /// frame took from receipt to durable.
    pub fn start_timed(
        store: Arc<DurableStore>,
        gate: Arc<OutboxGate>,
        after_commit: AfterCommit,
        latency: Option<Arc<CommitLatency>>,
    ) -> std::io::Result<OutboxWriter> {
        let (jobs, inbox) = mpsc::channel();
        let thread_gate = Arc::clone(&gate);
        let timed = latency.is_some();
        let thread = std::thread::Builder::new()
            .name("convoy-outbox-writer".to_owned())
            .spawn(move || {
                write_loop(
                    &store,
                    &thread_gate,
                    &inbox,
                    &after_commit,
                    latency.as_deref(),
                )
            })?;
        Ok(OutboxWriter {
            jobs: Some(jobs),
            thread: Some(thread),
            gate,
            timed,
        })
    }

    /// Whether receipt times passed to [`OutboxWriter::submit_observed`] are used.
    pub fn timed(&self) -> bool {
        self.timed
    }

    /// Queues a commit; the answer resolves once it is durable. An empty commit resolves
    /// at once.
    pub fn submit(&self, commit: Commit) -> oneshot::Receiver<()> {
        self.submit_observed(commit, Vec::new())
    }

    /// [`OutboxWriter::submit`] of the facts of frames received at `observed`.
    pub fn submit_observed(
        &self,
        commit: Commit,
        observed: Vec<DateTime<Utc>>,
    ) -> oneshot::Receiver<()> {
        let (done, answer) = oneshot::channel();
        if commit.records.is_empty() && commit.summaries.is_empty() && commit.sla_books.is_empty() {
            let _ = done.send(());
            return answer;
        }
        if let Some(jobs) = &self.jobs {
            self.gate.backlog_changed(1);
            if let Err(mpsc::SendError(job)) = jobs.send(Job {
                commit,
                done: Some(done),
                observed,
            }) {
                // The thread is gone (closed): the answer channel drops, the caller
                // sees a refusal and keeps its facts.
                self.gate.backlog_changed(-1);
                drop(job);
            }
        }
        answer
    }

    /// Commits what is queued and ends the thread. Blocks until then.
    pub fn close(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("The outbox writer thread panicked.");
            }
        }
    }
}

impl Drop for OutboxWriter {
    fn drop(&mut self) {
        self.shut();
    }
}

fn write_loop(
    store: &DurableStore,
    gate: &OutboxGate,
    inbox: &Receiver<Job>,
    after_commit: &AfterCommit,
    latency: Option<&CommitLatency>,
) {
    loop {
        let first = match inbox.recv_timeout(Duration::from_secs(3600)) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut group = vec![first];
        while group.len() < GROUP_LIMIT {
            match inbox.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let commits: Vec<Commit> = group
            .iter_mut()
            .map(|job| std::mem::take(&mut job.commit))
            .collect();
        let started = std::time::Instant::now();
        let report = loop {
            match store.commit(&commits, Utc::now()) {
                Ok(report) => break report,
                Err(error) => {
                    gate.set_failing(true);
                    metrics::counter!(names::OUTBOX_COMMIT_FAILURES).increment(1);
                    tracing::error!(%error, commits = commits.len(), "Outbox commit failed; retrying (the stream is paused meanwhile).");
                    std::thread::sleep(RETRY_FAILED_COMMIT_AFTER);
                }
            }
        };
        gate.set_failing(false);
        metrics::histogram!(names::OUTBOX_COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
        metrics::histogram!(names::OUTBOX_GROUP_SIZE).record(commits.len() as f64);
        gate.records_accepted(report.appended as u64);
        if let Some(latency) = latency {
            let durable_at = Utc::now();
            for observed_at in group.iter().flat_map(|job| &job.observed) {
                latency.record(*observed_at, durable_at);
            }
        }
        after_commit(&report);
        let answered = group.len();
        for job in group {
            if let Some(done) = job.done {
                let _ = done.send(());
            }
        }
        gate.backlog_changed(-(answered as isize));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::Mutex;

    use convoy::crm::CrmRecord;

    use super::*;

    fn record(id: &str) -> CrmRecord {
        CrmRecord {
            id: id.to_owned(),
            conversation_id: "c1".to_owned(),
            kind: "message.status".to_owned(),
            payload: serde_json::json!({"schema": 1}).into(),
        }
    }

    /// The folder (kept alive), the store, the gate, the writer, and the records
    /// appended per group commit.
    type Rig = (
        tempfile::TempDir,
        Arc<DurableStore>,
        Arc<OutboxGate>,
        OutboxWriter,
        Arc<Mutex<Vec<usize>>>,
    );

    fn writer_at(cap: u64) -> Rig {
        let folder = tempfile::tempdir().unwrap();
        let store = Arc::new(DurableStore::open(&folder.path().join("outbox.redb")).unwrap());
        let gate = Arc::new(OutboxGate::new(cap, 0));
        let reports = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&reports);
        let writer = OutboxWriter::start(
            Arc::clone(&store),
            Arc::clone(&gate),
            Box::new(move |report| seen.lock().unwrap().push(report.appended)),
        )
        .unwrap();
        (folder, store, gate, writer, reports)
    }

    #[actix_rt::test]
    async fn a_commit_is_answered_only_once_durable_and_counted_in_the_gate() {
        let (_folder, store, gate, writer, reports) = writer_at(1_000);
        let answer = writer.submit(Commit {
            records: vec![record("r1"), record("r2")],
            ..Commit::default()
        });
        answer.await.unwrap();
        assert_eq!(store.status().unwrap().pending, 2);
        assert_eq!(gate.pending(), 2);
        assert_eq!(reports.lock().unwrap().iter().sum::<usize>(), 2);
        assert_eq!(gate.closed_because(), None);
    }

    #[actix_rt::test]
    async fn many_commits_queued_together_share_transactions_and_all_land() {
        let (_folder, store, _gate, writer, reports) = writer_at(1_000_000);
        let answers: Vec<_> = (0..300)
            .map(|n| {
                writer.submit(Commit {
                    records: vec![record(&format!("r{n}"))],
                    ..Commit::default()
                })
            })
            .collect();
        for answer in answers {
            answer.await.unwrap();
        }
        assert_eq!(store.status().unwrap().pending, 300);
        let groups = reports.lock().unwrap().len();
        assert!(
            groups < 300,
            "300 queued commits took {groups} transactions: no grouping"
        );
    }

    #[actix_rt::test]
    async fn the_gate_closes_at_the_cap_and_opens_when_records_leave() {
        let (_folder, _store, gate, writer, _reports) = writer_at(3);
        writer
            .submit(Commit {
                records: vec![record("a"), record("b"), record("c")],
                ..Commit::default()
            })
            .await
            .unwrap();
        assert_eq!(gate.closed_because(), Some(GateClosed::OutboxFull));
        let waiting = Arc::clone(&gate);
        let opened = actix_rt::spawn(async move { waiting.wait_open().await });
        gate.records_left(1);
        tokio::time::timeout(Duration::from_secs(30), opened)
            .await
            .expect("the gate opened")
            .unwrap();
        assert_eq!(gate.closed_because(), None);
    }

    #[actix_rt::test]
    async fn a_closed_writer_refuses_instead_of_losing_silently() {
        let (_folder, _store, _gate, writer, _reports) = writer_at(10);
        let mut writer = writer;
        writer.shut();
        let answer = writer.submit(Commit {
            records: vec![record("late")],
            ..Commit::default()
        });
        assert!(answer.await.is_err(), "the caller keeps its facts");
    }
}
