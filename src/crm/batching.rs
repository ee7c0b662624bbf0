//! Which pending outbox records go into the next `POST /records:batch`, and when a partial
//! batch should go anyway. Vector's batch shape (is full / fits / age) as pure functions of
//! the outbox's pending list; the CrmBatchActor owns the outbox and the timers.
//!
//! The ordering rule: records of one conversation reach the CRM in outbox order. So a
//! conversation with a batch in flight contributes nothing to another batch until that one
//! is done (acknowledged, dead-lettered or back in the queue), and a batch only ever holds
//! a conversation's *oldest* pending records, in seq order. Across conversations, several
//! batches may be in flight at once.
//!
//! Owns decisions only: never reads the clock (`now` is an argument).

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// When a batch is full, and how long a partial one may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPolicy {
    /// Most records in one batch (`crm.batch_size`), at least 1.
    pub max_records: usize,
    /// Most encoded record bytes in one batch (`crm.max_batch_bytes`). A single record
    /// larger than this still goes, alone: refusing it would block its conversation forever.
    pub max_bytes: usize,
    /// Longest a record waits for a fuller batch (`crm.flush_interval`).
    pub max_age: Duration,
}

/// One record waiting in the outbox, as the planner needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRecord {
    /// Outbox sequence number: the order records were accepted in.
    pub seq: u64,
    pub conversation_id: String,
    /// Size of the record's JSON encoding, in bytes.
    pub size: usize,
    /// When the outbox committed it.
    pub accepted_at: DateTime<Utc>,
}

/// The next batch: which records, and whether it is full.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchPlan {
    /// Outbox seqs, in outbox order.
    pub seqs: Vec<u64>,
    /// Sum of the planned records' sizes.
    pub bytes: usize,
    /// The batch reached `max_records`, or the next eligible record would pass `max_bytes`:
    /// waiting cannot make it fuller.
    pub full: bool,
    /// The earliest `accepted_at` among the planned records.
    pub oldest: Option<DateTime<Utc>>,
}

impl BatchPlan {
    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }

    /// When this batch should be sent: at once when full (the oldest record's time, already
    /// past), else when its oldest record has waited `max_age`. `None` when empty.
    pub fn due(&self, policy: &BatchPolicy) -> Option<DateTime<Utc>> {
        let oldest = self.oldest?;
        if self.full {
            return Some(oldest);
        }
        let max_age = chrono::Duration::from_std(policy.max_age).unwrap_or(chrono::Duration::MAX);
        Some(
            oldest
                .checked_add_signed(max_age)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        )
    }

    /// Whether the batch should be sent at `now`.
    pub fn ready(&self, policy: &BatchPolicy, now: DateTime<Utc>) -> bool {
        self.due(policy).is_some_and(|due| due <= now)
    }
}

/// Plans the next batch from `pending` (in outbox order) skipping every conversation for
/// which `busy` says a batch is in flight. Records are taken in outbox order; the first one
/// that does not fit ends the batch, so a conversation is never split around a later record
/// of its own, and the outbox's global order is kept as far as the busy set allows.
pub fn plan(
    policy: &BatchPolicy,
    pending: &[PendingRecord],
    busy: &impl Fn(&str) -> bool,
) -> BatchPlan {
    let max_records = policy.max_records.max(1);
    let mut plan = BatchPlan::default();
    // Conversations passed over in this scan: their later records must wait too, or they
    // would overtake the earlier one.
    let mut blocked: HashSet<&str> = HashSet::new();
    for record in pending {
        let conversation = record.conversation_id.as_str();
        if blocked.contains(conversation) {
            continue;
        }
        if busy(conversation) {
            blocked.insert(conversation);
            continue;
        }
        if plan.seqs.len() >= max_records {
            plan.full = true;
            break;
        }
        let bytes = plan.bytes.saturating_add(record.size);
        if !plan.seqs.is_empty() && bytes > policy.max_bytes {
            plan.full = true;
            break;
        }
        plan.seqs.push(record.seq);
        plan.bytes = bytes;
        plan.oldest = Some(match plan.oldest {
            Some(oldest) => oldest.min(record.accepted_at),
            None => record.accepted_at,
        });
    }
    if plan.seqs.len() >= max_records || plan.bytes >= policy.max_bytes {
        plan.full = !plan.seqs.is_empty();
    }
    plan
}

/// The seqs of the next batch (see [`plan`]).
pub fn plan_batch(
    policy: &BatchPolicy,
    pending: &[PendingRecord],
    busy: &impl Fn(&str) -> bool,
) -> Vec<u64> {
    plan(policy, pending, busy).seqs
}

/// When the next batch is due (see [`BatchPlan::due`]); `None` when nothing can go.
pub fn due(
    policy: &BatchPolicy,
    pending: &[PendingRecord],
    busy: &impl Fn(&str) -> bool,
) -> Option<DateTime<Utc>> {
    plan(policy, pending, busy).due(policy)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::HashMap;

    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;

    fn at(second: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_767_225_600 + second, 0).unwrap()
    }

    fn record(seq: u64, conversation: &str, size: usize, second: i64) -> PendingRecord {
        PendingRecord {
            seq,
            conversation_id: conversation.to_owned(),
            size,
            accepted_at: at(second),
        }
    }

    fn policy(max_records: usize, max_bytes: usize) -> BatchPolicy {
        BatchPolicy {
            max_records,
            max_bytes,
            max_age: Duration::from_secs(5),
        }
    }

    fn idle(_: &str) -> bool {
        false
    }

    #[test]
    fn takes_records_in_outbox_order_up_to_the_count() {
        let pending = [
            record(1, "a", 10, 0),
            record(2, "b", 10, 1),
            record(3, "a", 10, 2),
        ];
        let plan = plan(&policy(2, 1000), &pending, &idle);
        assert_eq!(plan.seqs, [1, 2]);
        assert!(plan.full);
        assert_eq!(plan.bytes, 20);
        assert_eq!(plan.due(&policy(2, 1000)), Some(at(0)));
    }

    #[test]
    fn stops_before_the_record_that_would_pass_the_byte_limit() {
        let pending = [
            record(1, "a", 60, 0),
            record(2, "b", 50, 0),
            record(3, "c", 10, 0),
        ];
        let plan = plan(&policy(10, 100), &pending, &idle);
        // Record 3 would fit, but taking it would let it overtake record 2 of the outbox.
        assert_eq!(plan.seqs, [1]);
        assert!(plan.full);
    }

    #[test]
    fn a_record_larger_than_the_byte_limit_goes_alone() {
        let pending = [record(1, "a", 500, 0), record(2, "a", 1, 0)];
        let plan = plan(&policy(10, 100), &pending, &idle);
        assert_eq!(plan.seqs, [1]);
        assert!(plan.full);
    }

    #[test]
    fn a_conversation_with_a_batch_in_flight_contributes_nothing() {
        let pending = [
            record(1, "a", 1, 0),
            record(2, "b", 1, 0),
            record(3, "a", 1, 0),
            record(4, "c", 1, 0),
        ];
        let plan = plan(&policy(10, 100), &pending, &|c: &str| c == "a");
        assert_eq!(plan.seqs, [2, 4]);
        assert!(!plan.full);
    }

    #[test]
    fn a_partial_batch_waits_for_its_oldest_record_to_reach_max_age() {
        let pending = [record(1, "a", 1, 10), record(2, "b", 1, 3)];
        let policy = policy(10, 100);
        let plan = plan(&policy, &pending, &idle);
        assert_eq!(plan.due(&policy), Some(at(8)));
        assert!(!plan.ready(&policy, at(7)));
        assert!(plan.ready(&policy, at(8)));
        assert_eq!(due(&policy, &pending, &idle), Some(at(8)));
    }

    #[test]
    fn nothing_is_due_when_nothing_can_go() {
        let policy = policy(10, 100);
        assert_eq!(due(&policy, &[], &idle), None);
        let pending = [record(1, "a", 1, 0)];
        assert_eq!(due(&policy, &pending, &|_: &str| true), None);
        assert!(plan_batch(&policy, &pending, &|_: &str| true).is_empty());
    }

    #[test]
    fn a_batch_exactly_at_the_byte_limit_is_full() {
        let pending = [record(1, "a", 50, 0), record(2, "b", 50, 0)];
        let plan = plan(&policy(10, 100), &pending, &idle);
        assert_eq!(plan.seqs, [1, 2]);
        assert!(plan.full);
    }

    fn pending_strategy() -> impl Strategy<Value = Vec<PendingRecord>> {
        prop::collection::vec((0..5u8, 1..200usize, 0..60i64), 0..40).prop_map(|rows| {
            rows.into_iter()
                .enumerate()
                .map(|(index, (conversation, size, second))| {
                    record(index as u64 + 1, &format!("c{conversation}"), size, second)
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn never_reorders_a_conversation_and_respects_the_limits(
            pending in pending_strategy(),
            busy in prop::collection::hash_set(0..5u8, 0..3),
            max_records in 1..10usize,
            max_bytes in 1..600usize,
        ) {
            let busy: HashSet<String> = busy.into_iter().map(|c| format!("c{c}")).collect();
            let is_busy = |c: &str| busy.contains(c);
            let policy = policy(max_records, max_bytes);
            let plan = plan(&policy, &pending, &is_busy);
            let by_seq: HashMap<u64, &PendingRecord> =
                pending.iter().map(|r| (r.seq, r)).collect();

            // Outbox order, and never a busy conversation.
            prop_assert!(plan.seqs.windows(2).all(|w| w[0] < w[1]));
            for seq in &plan.seqs {
                prop_assert!(!busy.contains(&by_seq[seq].conversation_id));
            }
            // Per conversation, the batch holds exactly its oldest pending records.
            let mut conversations: HashMap<&str, Vec<u64>> = HashMap::new();
            for r in &pending {
                conversations.entry(r.conversation_id.as_str()).or_default().push(r.seq);
            }
            for (conversation, seqs) in &conversations {
                let taken: Vec<u64> = plan.seqs.iter().copied()
                    .filter(|s| by_seq[s].conversation_id == *conversation).collect();
                prop_assert_eq!(&seqs[..taken.len()], &taken[..]);
            }
            // Limits, except a lone oversized record.
            prop_assert!(plan.seqs.len() <= max_records);
            let bytes: usize = plan.seqs.iter().map(|s| by_seq[s].size).sum();
            prop_assert_eq!(bytes, plan.bytes);
            prop_assert!(bytes <= max_bytes || plan.seqs.len() == 1);
            // Progress: something goes whenever an idle conversation has a record.
            let any_idle = pending.iter().any(|r| !busy.contains(&r.conversation_id));
            prop_assert_eq!(plan.is_empty(), !any_idle);
        }
    }
}
