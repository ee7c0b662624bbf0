//! The attribute write-back schedule as plain data: which participant writes Genesys is
//! owed, in which order they go out, and what a write's outcome does to the debt.
//!
//! Why a schedule of its own: a conversation applies its inputs at once and never waits on
//! REST (a write can wait minutes for the rate limit). What it owes is handed here as the
//! full set of [`AttributeWrite`]s its state still needs ([`WriteBackQueue::owe`]), and
//! replaces whatever was owed before: superseded intermediate states are never written,
//! and a participant has at most one pending write.
//!
//! - **Fair**: conversations take turns, one write per turn, round robin, so a busy
//!   conversation never starves the others inside the one token bucket.
//! - **Serialised per conversation**: at most one write of a conversation is in flight, so
//!   the If-Match conflict loop stays atomic with respect to that conversation's writes.
//! - **Never dropped silently**: a transient failure waits (the shell's backoff) and
//!   retries; only a refusal retrying cannot fix (400/403/404) ends a write, and is counted
//!   in [`WriteBackStats::refused`].
//! - **Landed but not yet shown**: a write that succeeded is remembered until Genesys'
//!   echo shows it, so the state seen in between (still showing the old value) does not
//!   send the same write twice.
//!
//! Never performs a request, never reads the clock: time is a monotonic offset the shell
//! passes in.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use serde::Serialize;

use super::effects::AttributeWrite;
use super::lifecycle::Lifecycle;
use crate::ids::{ConversationId, ParticipantId};

/// One write to perform now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteJob {
    pub conversation_id: ConversationId,
    pub write: AttributeWrite,
}

/// How a write ended, as the shell classified the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// 2xx: Genesys took it.
    Landed,
    /// 409/412: the conversation changed under the write; the shell re-reads it (which
    /// re-states what is owed) and the write goes again after `retry_at`.
    Conflict { retry_at: Duration },
    /// 5xx, 429, 408, transport: try again at `retry_at`.
    Transient { retry_at: Duration },
    /// 400/403/404: retrying the same write cannot succeed; an operator must look.
    Refused { reason: String },
    /// Cluster worker role: another worker owns the conversation now (its partition's
    /// lease, or its write fence, passed on). Everything this queue held for it is that
    /// worker's to write: dropped here, not retried.
    HandedOff,
}

/// What one conversation owes.
#[derive(Debug, Clone, Default)]
struct Debt {
    owed: BTreeMap<ParticipantId, AttributeWrite>,
    /// Landed writes not yet shown by an echo: participant → lifecycle written.
    landed: BTreeMap<ParticipantId, Lifecycle>,
    in_flight: Option<ParticipantId>,
    /// Consecutive failed attempts (for the shell's backoff); reset by a landed write.
    failures: u32,
    /// In `ready` or `waiting`.
    queued: bool,
    last_refusal: Option<String>,
}

impl Debt {
    fn is_settled(&self) -> bool {
        self.owed.is_empty() && self.in_flight.is_none()
    }
}

/// Counters for metrics and the admin view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WriteBackStats {
    /// Writes owed now (one per participant at most).
    pub owed: usize,
    /// Conversations with at least one write owed or in flight.
    pub conversations: usize,
    pub in_flight: usize,
    pub landed: u64,
    /// Writes replaced by a newer state before they went out (coalescing).
    pub superseded: u64,
    pub conflicts: u64,
    pub transient_failures: u64,
    pub refused: u64,
    /// Conversations whose writes passed to another cluster worker.
    pub handed_off: u64,
}

/// A conversation's write-back status, for its admin view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConversationWriteStatus {
    pub owed: Vec<AttributeWrite>,
    pub in_flight: Option<ParticipantId>,
    pub failures: u32,
    pub last_refusal: Option<String>,
}

/// See the module docs.
#[derive(Debug, Clone, Default)]
pub struct WriteBackQueue {
    debts: HashMap<ConversationId, Debt>,
    /// Conversations whose turn it is, in turn order.
    ready: VecDeque<ConversationId>,
    /// Conversations backing off, by the time their turn comes again.
    waiting: BTreeSet<(Duration, ConversationId)>,
    stats: WriteBackStats,
}

impl WriteBackQueue {
    pub fn new() -> Self {
        WriteBackQueue::default()
    }

    /// States what `conversation_id` owes now: the writes its latest state needs (all of
    /// them: an empty list means Genesys shows everything). Replaces the earlier debt.
    pub fn owe(&mut self, conversation_id: &ConversationId, writes: Vec<AttributeWrite>) {
        let debt = self.debts.entry(conversation_id.clone()).or_default();
        let wanted: BTreeMap<ParticipantId, AttributeWrite> = writes
            .into_iter()
            .map(|write| (write.participant_id.clone(), write))
            .collect();
        // A landed write the state does not list any more is shown now: forget it.
        debt.landed
            .retain(|participant, _| wanted.contains_key(participant));
        let mut owed = BTreeMap::new();
        for (participant, write) in wanted {
            if debt.landed.get(&participant) == Some(&write.lifecycle) {
                continue;
            }
            if let Some(previous) = debt.owed.get(&participant) {
                if previous.lifecycle != write.lifecycle {
                    self.stats.superseded += 1;
                }
            }
            owed.insert(participant, write);
        }
        debt.owed = owed;
        if debt.is_settled() {
            if debt.landed.is_empty() {
                self.debts.remove(conversation_id);
            }
            return;
        }
        if !debt.queued && debt.in_flight.is_none() {
            debt.queued = true;
            self.ready.push_back(conversation_id.clone());
        }
    }

    /// The conversation is gone from memory for good (finished and retired): drop what
    /// only waited for an echo. Owed writes stay: they still go out.
    pub fn forget_settled(&mut self, conversation_id: &ConversationId) {
        if self
            .debts
            .get(conversation_id)
            .is_some_and(|debt| debt.is_settled())
        {
            self.debts.remove(conversation_id);
        }
    }

    /// The next write to perform at `now`, if any conversation's turn has come.
    pub fn next_job(&mut self, now: Duration) -> Option<WriteJob> {
        self.wake_due(now);
        while let Some(conversation_id) = self.ready.pop_front() {
            let Some(debt) = self.debts.get_mut(&conversation_id) else {
                continue;
            };
            debt.queued = false;
            if debt.in_flight.is_some() {
                continue;
            }
            let Some(write) = debt.owed.values().next().cloned() else {
                continue;
            };
            debt.in_flight = Some(write.participant_id.clone());
            return Some(WriteJob {
                conversation_id,
                write,
            });
        }
        None
    }

    /// Records how `job` ended and schedules the conversation's next turn.
    pub fn finish(&mut self, job: &WriteJob, outcome: WriteOutcome) {
        let Some(debt) = self.debts.get_mut(&job.conversation_id) else {
            return;
        };
        debt.in_flight = None;
        let participant = &job.write.participant_id;
        let still_owed = |debt: &Debt| {
            debt.owed
                .get(participant)
                .is_some_and(|owed| owed.lifecycle == job.write.lifecycle)
        };
        let mut retry_at = None;
        match outcome {
            WriteOutcome::HandedOff => {
                self.stats.handed_off += 1;
                self.debts.remove(&job.conversation_id);
                return;
            }
            WriteOutcome::Landed => {
                self.stats.landed += 1;
                debt.failures = 0;
                debt.landed.insert(participant.clone(), job.write.lifecycle);
                if still_owed(debt) {
                    debt.owed.remove(participant);
                }
            }
            WriteOutcome::Conflict { retry_at: at } => {
                self.stats.conflicts += 1;
                debt.failures = debt.failures.saturating_add(1);
                retry_at = Some(at);
            }
            WriteOutcome::Transient { retry_at: at } => {
                self.stats.transient_failures += 1;
                debt.failures = debt.failures.saturating_add(1);
                retry_at = Some(at);
            }
            WriteOutcome::Refused { reason } => {
                self.stats.refused += 1;
                if still_owed(debt) {
                    debt.owed.remove(participant);
                }
                debt.last_refusal = Some(reason);
            }
        }
        if debt.owed.is_empty() {
            if debt.landed.is_empty() && debt.last_refusal.is_none() {
                self.debts.remove(&job.conversation_id);
            }
            return;
        }
        debt.queued = true;
        match retry_at {
            Some(at) => {
                self.waiting.insert((at, job.conversation_id.clone()));
            }
            // Back of the line: the other conversations take their turn first.
            None => self.ready.push_back(job.conversation_id.clone()),
        }
    }

    /// When the earliest backing-off conversation is due (for the shell's timer).
    pub fn next_wake(&self) -> Option<Duration> {
        self.waiting.first().map(|(at, _)| *at)
    }

    /// Consecutive failures of the conversation's writes (the shell's backoff input).
    pub fn failures(&self, conversation_id: &ConversationId) -> u32 {
        self.debts
            .get(conversation_id)
            .map_or(0, |debt| debt.failures)
    }

    /// Conversations that still owe writes (persisted at shutdown: the next start re-reads
    /// them and the state re-states the debt).
    pub fn owing_conversations(&self) -> Vec<ConversationId> {
        let mut ids: Vec<ConversationId> = self
            .debts
            .iter()
            .filter(|(_, debt)| !debt.is_settled())
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    pub fn status(&self, conversation_id: &ConversationId) -> Option<ConversationWriteStatus> {
        self.debts
            .get(conversation_id)
            .map(|debt| ConversationWriteStatus {
                owed: debt.owed.values().cloned().collect(),
                in_flight: debt.in_flight.clone(),
                failures: debt.failures,
                last_refusal: debt.last_refusal.clone(),
            })
    }

    pub fn stats(&self) -> WriteBackStats {
        let mut stats = self.stats;
        stats.owed = self.debts.values().map(|debt| debt.owed.len()).sum();
        stats.conversations = self.debts.values().filter(|d| !d.is_settled()).count();
        stats.in_flight = self
            .debts
            .values()
            .filter(|debt| debt.in_flight.is_some())
            .count();
        stats
    }

    fn wake_due(&mut self, now: Duration) {
        while let Some(first) = self.waiting.first() {
            if first.0 > now {
                break;
            }
            if let Some((_, id)) = self.waiting.pop_first() {
                self.ready.push_back(id);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn conversation(text: &str) -> ConversationId {
        ConversationId::from(text)
    }

    fn write(participant: &str, lifecycle: Lifecycle, version: u64) -> AttributeWrite {
        AttributeWrite {
            participant_id: ParticipantId::from(participant),
            lifecycle,
            version,
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_newer_state_replaces_the_owed_write_before_it_goes_out() {
        let mut queue = WriteBackQueue::new();
        let c = conversation("c");
        queue.owe(&c, vec![write("a", Lifecycle::Joined, 1)]);
        queue.owe(&c, vec![write("a", Lifecycle::Active, 2)]);
        queue.owe(&c, vec![write("a", Lifecycle::Left, 3)]);
        let job = queue.next_job(secs(0)).unwrap();
        assert_eq!(job.write, write("a", Lifecycle::Left, 3));
        assert_eq!(queue.stats().superseded, 2);
        queue.finish(&job, WriteOutcome::Landed);
        assert_eq!(queue.next_job(secs(0)), None, "one write for three states");
    }

    #[test]
    fn a_handed_off_conversation_drops_everything_it_owed_and_is_not_retried() {
        let mut queue = WriteBackQueue::new();
        let (lost, kept) = (conversation("lost"), conversation("kept"));
        queue.owe(
            &lost,
            vec![
                write("a", Lifecycle::Active, 1),
                write("b", Lifecycle::Active, 1),
            ],
        );
        queue.owe(&kept, vec![write("x", Lifecycle::Active, 1)]);
        let job = queue.next_job(secs(0)).unwrap();
        assert_eq!(job.conversation_id, lost);
        queue.finish(&job, WriteOutcome::HandedOff);
        assert!(queue.status(&lost).is_none(), "nothing kept of it");
        assert_eq!(queue.stats().handed_off, 1);
        let next = queue.next_job(secs(3600)).unwrap();
        assert_eq!(
            next.conversation_id, kept,
            "only the other conversation is left"
        );
        queue.finish(&next, WriteOutcome::Landed);
        assert_eq!(queue.next_job(secs(3600)), None);
        assert_eq!(queue.owing_conversations(), Vec::<ConversationId>::new());
    }

    #[test]
    fn conversations_take_turns_one_write_each() {
        let mut queue = WriteBackQueue::new();
        let (busy, quiet) = (conversation("busy"), conversation("quiet"));
        queue.owe(
            &busy,
            vec![
                write("a", Lifecycle::Active, 1),
                write("b", Lifecycle::Active, 1),
                write("c", Lifecycle::Active, 1),
            ],
        );
        queue.owe(&quiet, vec![write("x", Lifecycle::Active, 1)]);
        let mut order = Vec::new();
        while let Some(job) = queue.next_job(secs(0)) {
            order.push(job.conversation_id.to_string());
            queue.finish(&job, WriteOutcome::Landed);
        }
        assert_eq!(order, ["busy", "quiet", "busy", "busy"]);
    }

    #[test]
    fn one_write_per_conversation_is_in_flight_at_a_time() {
        let mut queue = WriteBackQueue::new();
        let c = conversation("c");
        queue.owe(
            &c,
            vec![
                write("a", Lifecycle::Active, 1),
                write("b", Lifecycle::Active, 1),
            ],
        );
        let first = queue.next_job(secs(0)).unwrap();
        // A new statement of the debt while the write is out does not release a second one.
        queue.owe(
            &c,
            vec![
                write("a", Lifecycle::Active, 2),
                write("b", Lifecycle::Left, 2),
            ],
        );
        assert_eq!(queue.next_job(secs(0)), None);
        queue.finish(&first, WriteOutcome::Landed);
        let second = queue.next_job(secs(0)).unwrap();
        assert_eq!(second.write, write("b", Lifecycle::Left, 2));
    }

    #[test]
    fn a_landed_write_is_not_sent_again_while_its_echo_is_on_the_way() {
        let mut queue = WriteBackQueue::new();
        let c = conversation("c");
        queue.owe(&c, vec![write("a", Lifecycle::Active, 1)]);
        let job = queue.next_job(secs(0)).unwrap();
        queue.finish(&job, WriteOutcome::Landed);
        // Another change arrives before the echo: the state still shows the old value.
        queue.owe(&c, vec![write("a", Lifecycle::Active, 2)]);
        assert_eq!(queue.next_job(secs(0)), None);
        // The echo arrives: nothing owed, nothing remembered.
        queue.owe(&c, Vec::new());
        assert_eq!(queue.stats().conversations, 0);
        assert!(queue.status(&c).is_none());
    }

    #[test]
    fn a_transient_failure_is_retried_at_the_time_given_never_dropped() {
        let mut queue = WriteBackQueue::new();
        let c = conversation("c");
        queue.owe(&c, vec![write("a", Lifecycle::Active, 1)]);
        for attempt in 1..=50u64 {
            let job = queue.next_job(secs(attempt * 100)).unwrap();
            let retry_at = secs(attempt * 100 + 60);
            queue.finish(&job, WriteOutcome::Transient { retry_at });
            assert_eq!(queue.next_job(retry_at - Duration::from_millis(1)), None);
            assert_eq!(queue.next_wake(), Some(retry_at));
            assert_eq!(queue.failures(&c), attempt as u32);
        }
        let job = queue.next_job(secs(10_000)).unwrap();
        queue.finish(&job, WriteOutcome::Landed);
        assert_eq!(queue.failures(&c), 0);
        assert_eq!(queue.stats().owed, 0);
        assert_eq!(queue.stats().transient_failures, 50);
    }

    #[test]
    fn a_refused_write_ends_and_is_counted_and_shown() {
        let mut queue = WriteBackQueue::new();
        let c = conversation("c");
        queue.owe(&c, vec![write("a", Lifecycle::Active, 1)]);
        let job = queue.next_job(secs(0)).unwrap();
        queue.finish(
            &job,
            WriteOutcome::Refused {
                reason: "403 missing permission".to_owned(),
            },
        );
        assert_eq!(queue.next_job(secs(0)), None);
        assert_eq!(queue.stats().refused, 1);
        assert_eq!(
            queue.status(&c).unwrap().last_refusal.as_deref(),
            Some("403 missing permission")
        );
    }

    #[test]
    fn a_conflict_keeps_the_write_for_after_the_reread() {
        let mut queue = WriteBackQueue::new();
        let c = conversation("c");
        queue.owe(&c, vec![write("a", Lifecycle::Active, 1)]);
        let job = queue.next_job(secs(0)).unwrap();
        queue.finish(&job, WriteOutcome::Conflict { retry_at: secs(1) });
        // The re-read re-states the debt with the latest state.
        queue.owe(&c, vec![write("a", Lifecycle::Left, 2)]);
        assert_eq!(queue.next_job(secs(0)), None, "backing off");
        let again = queue.next_job(secs(1)).unwrap();
        assert_eq!(again.write, write("a", Lifecycle::Left, 2));
        assert_eq!(queue.stats().conflicts, 1);
    }

    #[test]
    fn the_owing_conversations_are_listed_for_persistence() {
        let mut queue = WriteBackQueue::new();
        queue.owe(&conversation("b"), vec![write("x", Lifecycle::Active, 1)]);
        queue.owe(&conversation("a"), vec![write("y", Lifecycle::Active, 1)]);
        queue.owe(&conversation("settled"), Vec::new());
        assert_eq!(
            queue.owing_conversations(),
            vec![conversation("a"), conversation("b")]
        );
    }

    proptest! {
        /// Whatever the interleaving of new debts and outcomes, every conversation's final
        /// debt is written exactly with its latest values, and nothing is lost.
        #[test]
        fn the_latest_debt_always_goes_out(
            steps in proptest::collection::vec((0u8..4, 0u8..3, 0u8..5, 0u8..4), 1..80),
        ) {
            let lifecycles = [Lifecycle::Pending, Lifecycle::Joined, Lifecycle::Active, Lifecycle::Left, Lifecycle::Failed];
            let mut queue = WriteBackQueue::new();
            let mut latest: HashMap<(ConversationId, ParticipantId), Lifecycle> = HashMap::new();
            let mut shown: HashMap<(ConversationId, ParticipantId), Lifecycle> = HashMap::new();
            let mut now = Duration::ZERO;
            for (step, (conversation_index, participant_index, lifecycle_index, action)) in steps.into_iter().enumerate() {
                let version = step as u64 + 1;
                let c = conversation(&format!("c{conversation_index}"));
                let p = ParticipantId::from(format!("p{participant_index}").as_str());
                latest.insert((c.clone(), p.clone()), lifecycles[lifecycle_index as usize]);
                let owed: Vec<AttributeWrite> = latest
                    .iter()
                    .filter(|((cid, _), _)| *cid == c)
                    .filter(|(key, lifecycle)| shown.get(*key) != Some(*lifecycle))
                    .map(|((_, pid), lifecycle)| AttributeWrite { participant_id: pid.clone(), lifecycle: *lifecycle, version })
                    .collect();
                queue.owe(&c, owed);
                now += Duration::from_secs(1);
                if let Some(job) = queue.next_job(now) {
                    let outcome = match action {
                        0 => WriteOutcome::Transient { retry_at: now + Duration::from_secs(2) },
                        1 => WriteOutcome::Conflict { retry_at: now },
                        _ => WriteOutcome::Landed,
                    };
                    if outcome == WriteOutcome::Landed {
                        shown.insert((job.conversation_id.clone(), job.write.participant_id.clone()), job.write.lifecycle);
                    }
                    queue.finish(&job, outcome);
                }
            }
            // Drain: every write now lands.
            for _ in 0..1_000 {
                now += Duration::from_secs(100);
                let Some(job) = queue.next_job(now) else { break };
                shown.insert((job.conversation_id.clone(), job.write.participant_id.clone()), job.write.lifecycle);
                queue.finish(&job, WriteOutcome::Landed);
            }
            for (key, lifecycle) in &latest {
                prop_assert_eq!(shown.get(key), Some(lifecycle), "{:?}", key);
            }
        }
    }
}
