//! What the CRM sink holds: unique records in arrival order, the idempotency keys it has
//! answered and those still being processed, the conversation documents with their
//! versions, and counters. Plain state behind one mutex; the handlers in [`super::routes`]
//! do the HTTP.
//!
//! Answered idempotency keys are kept with their request bodies, so a client could grow
//! them without limit: only the [`MAX_ANSWERED_KEYS`] most recent are remembered (the
//! oldest forgotten first), as a CRM keeps keys for a retention window. A key resent
//! after it was forgotten is processed again, and its records count as duplicates.

use std::collections::{HashMap, HashSet, VecDeque};

use convoy::crm::{
    decide_write, BatchRequest, BatchResponse, CrmRecord, Precondition, RecordResult, WriteOutcome,
    WriteRefused,
};
use serde::{Deserialize, Serialize};

/// Answered idempotency keys remembered at most (with their bodies: up to about 100 MB
/// at Convoy's default batches of 100 records of about 1 KB).
pub const MAX_ANSWERED_KEYS: usize = 1_000;

/// Counters the sink exposes at `GET /_sink/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkStats {
    /// Requests to the CRM contract routes, whatever their answer (faults included).
    pub requests: u64,
    /// Batches processed for the first time under their idempotency key.
    pub batches: u64,
    /// Records in those batches, duplicates included.
    pub records_received: u64,
    /// Records that were new.
    pub accepted: u64,
    /// Records the sink already held (same record id).
    pub duplicates: u64,
    /// Batches answered from the idempotency cache (same key, same body).
    pub idempotent_replays: u64,
    /// Batches refused because their key was used with a different body (422).
    pub idempotency_conflicts: u64,
    /// Batches refused because the first request with their key was still running (409).
    #[serde(default)]
    pub idempotency_in_progress: u64,
    /// Records refused one by one in a 207 answer (`--reject-ratio`); never stored.
    #[serde(default)]
    pub records_rejected: u64,
    /// Requests refused as malformed (400, 413, 428).
    pub rejected: u64,
    /// Requests refused for missing or wrong credentials (401).
    pub unauthorized: u64,
    pub conversation_reads: u64,
    /// Conversation writes that succeeded (200/201).
    pub conversation_writes: u64,
    /// Conversation writes refused with 412.
    pub precondition_failures: u64,
    pub faults: FaultStats,
}

/// Faults injected so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultStats {
    /// 500/503 answers.
    pub errors: u64,
    /// 429 answers.
    pub rate_limited: u64,
    /// Connections dropped without an answer, the request not handled.
    pub resets: u64,
    /// Connections dropped without an answer after the request was handled (stored).
    #[serde(default)]
    pub resets_after_store: u64,
    /// Requests slowed down by `delay_ms`.
    pub delayed: u64,
}

impl FaultStats {
    pub fn total(&self) -> u64 {
        self.errors + self.rate_limited + self.resets + self.resets_after_store
    }
}

/// A stored conversation document and its version (the ETag).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredDocument {
    pub id: String,
    pub version: u64,
    pub document: serde_json::Value,
}

/// Per-record judgement (`--reject-ratio`): answers 207 with one result per record, and
/// refuses a share of the records. Whether a record is refused depends only on the seed and
/// its id, so a resent record meets the same verdict (as a CRM refusing a bad record does).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecordJudge {
    pub reject_ratio: f64,
    pub seed: u64,
}

impl RecordJudge {
    pub fn rejects(&self, record_id: &str) -> bool {
        // FNV-1a over the seed and the id: stable across runs and platforms.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in self.seed.to_le_bytes().iter().chain(record_id.as_bytes()) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        // FNV's high bits barely change between ids like `r1`/`r2`: mix them (murmur3's
        // finaliser) before reading a uniform draw from them.
        hash ^= hash >> 33;
        hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
        hash ^= hash >> 33;
        hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        hash ^= hash >> 33;
        let unit = (hash >> 11) as f64 / ((1u64 << 53) as f64);
        unit < self.reject_ratio
    }
}

/// What a new request under an idempotency key may do (IETF Idempotency-Key draft).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchStart {
    /// A new key: process it; the key is now "in progress".
    Fresh,
    /// Same key and body as a finished request: its answer again.
    Replayed(BatchResponse),
    /// Same key, different body (422).
    KeyReused,
    /// Same key while the first request is still being processed (409).
    InProgress,
}

/// How a batch under an idempotency key was handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Processed now.
    Processed(BatchResponse),
    /// Same key and same body as before: the original answer, nothing processed.
    Replayed(BatchResponse),
    /// Same key, different body.
    KeyReused,
}

/// Everything the sink remembers.
#[derive(Debug, Default)]
pub struct SinkStore {
    records: Vec<CrmRecord>,
    record_ids: HashSet<String>,
    /// Idempotency key → (request body as JSON, the answer given).
    answered: HashMap<String, (serde_json::Value, BatchResponse)>,
    /// The keys of `answered`, oldest first.
    answered_order: VecDeque<String>,
    /// Idempotency key → request body, while that request is being processed.
    in_progress: HashMap<String, serde_json::Value>,
    conversations: HashMap<String, StoredDocument>,
    /// Document ids in creation order, so listings are stable.
    conversation_order: Vec<String>,
    pub stats: SinkStats,
}

impl SinkStore {
    /// Admits a request under its idempotency key before it is processed: a fresh key is
    /// marked in progress until [`SinkStore::apply_batch`] or [`SinkStore::abandon_batch`].
    /// `body` is compared semantically (whitespace and key order do not matter).
    pub fn begin_batch(&mut self, key: &str, body: &serde_json::Value) -> BatchStart {
        if let Some((earlier, response)) = self.answered.get(key) {
            return if earlier == body {
                self.stats.idempotent_replays += 1;
                BatchStart::Replayed(response.clone())
            } else {
                self.stats.idempotency_conflicts += 1;
                BatchStart::KeyReused
            };
        }
        if let Some(running) = self.in_progress.get(key) {
            return if running == body {
                self.stats.idempotency_in_progress += 1;
                BatchStart::InProgress
            } else {
                self.stats.idempotency_conflicts += 1;
                BatchStart::KeyReused
            };
        }
        self.in_progress.insert(key.to_owned(), body.clone());
        BatchStart::Fresh
    }

    /// The request under `key` ended without being processed (an injected fault): the key
    /// is free again, as if it never came.
    pub fn abandon_batch(&mut self, key: &str) {
        self.in_progress.remove(key);
    }

    /// Applies a batch under its idempotency key. `body` is the request as JSON, compared
    /// semantically (whitespace and key order do not matter) when the key comes again.
    /// With a `judge`, every record gets a result and refused records are not stored.
    pub fn apply_batch(
        &mut self,
        key: &str,
        body: serde_json::Value,
        batch: BatchRequest,
        judge: Option<&RecordJudge>,
    ) -> BatchOutcome {
        self.in_progress.remove(key);
        if let Some((earlier, response)) = self.answered.get(key) {
            return if *earlier == body {
                self.stats.idempotent_replays += 1;
                BatchOutcome::Replayed(response.clone())
            } else {
                self.stats.idempotency_conflicts += 1;
                BatchOutcome::KeyReused
            };
        }
        let mut response = BatchResponse {
            accepted: 0,
            duplicates: 0,
            results: Vec::new(),
        };
        for record in batch.records {
            self.stats.records_received += 1;
            let id = record.id.clone();
            let status = if self.record_ids.contains(&id) {
                response.duplicates += 1;
                200
            } else if judge.is_some_and(|judge| judge.rejects(&id)) {
                self.stats.records_rejected += 1;
                422
            } else {
                self.record_ids.insert(id.clone());
                response.accepted += 1;
                self.records.push(record);
                201
            };
            if judge.is_some() {
                let rejected = status == 422;
                response.results.push(RecordResult {
                    id,
                    status,
                    error: rejected.then(|| "rejected".to_owned()),
                    message: rejected
                        .then(|| "record refused by crm-sink's --reject-ratio".to_owned()),
                });
            }
        }
        self.stats.batches += 1;
        self.stats.accepted += response.accepted as u64;
        self.stats.duplicates += response.duplicates as u64;
        self.answered
            .insert(key.to_owned(), (body, response.clone()));
        self.answered_order.push_back(key.to_owned());
        while self.answered_order.len() > MAX_ANSWERED_KEYS {
            if let Some(oldest) = self.answered_order.pop_front() {
                self.answered.remove(&oldest);
            }
        }
        BatchOutcome::Processed(response)
    }

    /// All unique records in arrival order.
    pub fn records(&self) -> &[CrmRecord] {
        &self.records
    }

    pub fn conversation(&self, id: &str) -> Option<&StoredDocument> {
        self.conversations.get(id)
    }

    /// All conversation documents in creation order.
    pub fn conversations(&self) -> Vec<StoredDocument> {
        self.conversation_order
            .iter()
            .filter_map(|id| self.conversations.get(id).cloned())
            .collect()
    }

    /// Writes a conversation document if the precondition holds.
    pub fn put_conversation(
        &mut self,
        id: &str,
        precondition: &Precondition,
        document: serde_json::Value,
    ) -> Result<WriteOutcome, WriteRefused> {
        let current = self.conversations.get(id).map(|stored| stored.version);
        let outcome = decide_write(current, precondition);
        match outcome {
            Ok(WriteOutcome::Created { version } | WriteOutcome::Updated { version }) => {
                self.stats.conversation_writes += 1;
                if current.is_none() {
                    self.conversation_order.push(id.to_owned());
                }
                self.conversations.insert(
                    id.to_owned(),
                    StoredDocument {
                        id: id.to_owned(),
                        version,
                        document,
                    },
                );
            }
            Err(_) => self.stats.precondition_failures += 1,
        }
        outcome
    }

    /// Forgets records, idempotency keys, documents and counters.
    pub fn reset(&mut self) {
        *self = SinkStore::default();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::ops::Not;

    use super::*;
    use serde_json::json;

    fn batch(ids: &[&str]) -> (serde_json::Value, BatchRequest) {
        let body = json!({ "records": ids.iter().map(|id| json!({
            "id": id, "conversationId": "c1", "kind": "message", "payload": {}
        })).collect::<Vec<_>>() });
        let request = serde_json::from_value(body.clone()).unwrap();
        (body, request)
    }

    #[test]
    fn records_are_deduplicated_by_id_across_batches() {
        let mut store = SinkStore::default();
        let (body, request) = batch(&["a", "b"]);
        assert_eq!(
            store.apply_batch("k1", body, request, None),
            BatchOutcome::Processed(BatchResponse {
                accepted: 2,
                duplicates: 0,
                results: vec![]
            })
        );
        let (body, request) = batch(&["b", "c", "c"]);
        assert_eq!(
            store.apply_batch("k2", body, request, None),
            BatchOutcome::Processed(BatchResponse {
                accepted: 1,
                duplicates: 2,
                results: vec![]
            })
        );
        let ids: Vec<&str> = store.records().iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(store.stats.duplicates, 2);
        assert_eq!(store.stats.records_received, 5);
    }

    #[test]
    fn only_the_most_recent_idempotency_keys_are_remembered() {
        let mut store = SinkStore::default();
        for n in 0..=MAX_ANSWERED_KEYS {
            let (body, request) = batch(&[&format!("r{n}")]);
            store.apply_batch(&format!("k{n}"), body, request, None);
        }
        assert_eq!(store.answered.len(), MAX_ANSWERED_KEYS);
        assert_eq!(store.answered_order.len(), MAX_ANSWERED_KEYS);
        // The newest key still replays; the oldest was forgotten and counts as new, its
        // record as a duplicate.
        let newest = format!("r{MAX_ANSWERED_KEYS}");
        let (body, request) = batch(&[&newest]);
        let replay = store.apply_batch(&format!("k{MAX_ANSWERED_KEYS}"), body, request, None);
        assert!(matches!(replay, BatchOutcome::Replayed(_)), "{replay:?}");
        let (body, request) = batch(&["r0"]);
        assert_eq!(
            store.apply_batch("k0", body, request, None),
            BatchOutcome::Processed(BatchResponse {
                accepted: 0,
                duplicates: 1,
                results: vec![]
            })
        );
        assert_eq!(store.records().len(), MAX_ANSWERED_KEYS + 1);
    }

    #[test]
    fn a_repeated_key_replays_or_conflicts() {
        let mut store = SinkStore::default();
        let (body, request) = batch(&["a"]);
        store.apply_batch("k", body.clone(), request.clone(), None);
        assert_eq!(
            store.apply_batch("k", body, request, None),
            BatchOutcome::Replayed(BatchResponse {
                accepted: 1,
                duplicates: 0,
                results: vec![]
            })
        );
        let (other, request) = batch(&["z"]);
        assert_eq!(
            store.apply_batch("k", other, request, None),
            BatchOutcome::KeyReused
        );
        assert_eq!(store.records().len(), 1);
        assert_eq!(store.stats.batches, 1);
        assert_eq!(store.stats.idempotent_replays, 1);
        assert_eq!(store.stats.idempotency_conflicts, 1);
    }

    #[test]
    fn a_key_is_in_progress_until_applied_or_abandoned() {
        let mut store = SinkStore::default();
        let (body, request) = batch(&["a"]);
        assert_eq!(store.begin_batch("k", &body), BatchStart::Fresh);
        assert_eq!(store.begin_batch("k", &body), BatchStart::InProgress);
        let (other, _) = batch(&["z"]);
        assert_eq!(store.begin_batch("k", &other), BatchStart::KeyReused);
        store.apply_batch("k", body.clone(), request, None);
        assert!(matches!(
            store.begin_batch("k", &body),
            BatchStart::Replayed(BatchResponse { accepted: 1, .. })
        ));
        assert_eq!(store.begin_batch("k2", &body), BatchStart::Fresh);
        store.abandon_batch("k2");
        assert_eq!(store.begin_batch("k2", &body), BatchStart::Fresh);
        assert_eq!(store.stats.idempotency_in_progress, 1);
    }

    #[test]
    fn a_judge_answers_every_record_and_stores_only_the_accepted_ones() {
        let judge = RecordJudge {
            reject_ratio: 0.5,
            seed: 3,
        };
        let ids: Vec<String> = (0..200).map(|n| format!("r{n}")).collect();
        let rejected = ids.iter().filter(|id| judge.rejects(id)).count();
        assert!((60..=140).contains(&rejected), "{rejected} of 200 rejected");
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let (body, request) = batch(&refs);
        let mut store = SinkStore::default();
        let BatchOutcome::Processed(response) =
            store.apply_batch("k", body, request.clone(), Some(&judge))
        else {
            panic!("a fresh key is processed");
        };
        assert_eq!(response.results.len(), 200);
        assert_eq!(response.accepted, 200 - rejected);
        assert_eq!(store.records().len(), 200 - rejected);
        for result in &response.results {
            let refused = judge.rejects(&result.id);
            assert_eq!(result.status, if refused { 422 } else { 201 });
            assert_eq!(result.error.is_some(), refused);
        }
        // A resend meets the same verdicts; the stored ones are now duplicates.
        let (body, request) = batch(&refs);
        let BatchOutcome::Processed(again) = store.apply_batch("k2", body, request, Some(&judge))
        else {
            panic!("a fresh key is processed");
        };
        assert_eq!(again.duplicates, 200 - rejected);
        assert_eq!(
            again.results.iter().filter(|r| r.status == 422).count(),
            rejected
        );
        assert!(RecordJudge {
            reject_ratio: 0.0,
            seed: 3
        }
        .rejects("r1")
        .not());
        assert!(RecordJudge {
            reject_ratio: 1.0,
            seed: 3
        }
        .rejects("r1"));
    }

    #[test]
    fn documents_carry_versions_and_reset_forgets_everything() {
        let mut store = SinkStore::default();
        assert_eq!(
            store.put_conversation("c1", &Precondition::IfNoneMatchAny, json!({"v": 1})),
            Ok(WriteOutcome::Created { version: 1 })
        );
        assert!(store
            .put_conversation("c1", &Precondition::IfMatch(vec![7]), json!({"v": 2}))
            .is_err());
        assert_eq!(store.conversation("c1").unwrap().document, json!({"v": 1}));
        assert_eq!(
            store.put_conversation("c1", &Precondition::IfMatch(vec![1]), json!({"v": 2})),
            Ok(WriteOutcome::Updated { version: 2 })
        );
        assert_eq!(store.conversations().len(), 1);
        assert_eq!(store.stats.precondition_failures, 1);
        store.reset();
        assert!(store.conversation("c1").is_none());
        assert_eq!(store.stats, SinkStats::default());
    }
}
