//! What the CRM sink holds: unique records in arrival order, the idempotency keys it has
//! answered, the conversation documents with their versions, and counters. Plain state
//! behind one mutex; the handlers in [`super::routes`] do the HTTP.

use std::collections::{HashMap, HashSet};

use convoy::crm::{
    decide_write, BatchRequest, BatchResponse, CrmRecord, Precondition, WriteOutcome, WriteRefused,
};
use serde::{Deserialize, Serialize};

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
    /// Connections dropped without an answer.
    pub resets: u64,
    /// Requests slowed down by `delay_ms`.
    pub delayed: u64,
}

impl FaultStats {
    pub fn total(&self) -> u64 {
        self.errors + self.rate_limited + self.resets
    }
}

/// A stored conversation document and its version (the ETag).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredDocument {
    pub id: String,
    pub version: u64,
    pub document: serde_json::Value,
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
    conversations: HashMap<String, StoredDocument>,
    /// Document ids in creation order, so listings are stable.
    conversation_order: Vec<String>,
    pub stats: SinkStats,
}

impl SinkStore {
    /// Applies a batch under its idempotency key. `body` is the request as JSON, compared
    /// semantically (whitespace and key order do not matter) when the key comes again.
    pub fn apply_batch(
        &mut self,
        key: &str,
        body: serde_json::Value,
        batch: BatchRequest,
    ) -> BatchOutcome {
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
            if self.record_ids.insert(record.id.clone()) {
                response.accepted += 1;
                self.records.push(record);
            } else {
                response.duplicates += 1;
            }
        }
        self.stats.batches += 1;
        self.stats.accepted += response.accepted as u64;
        self.stats.duplicates += response.duplicates as u64;
        self.answered
            .insert(key.to_owned(), (body, response.clone()));
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
            store.apply_batch("k1", body, request),
            BatchOutcome::Processed(BatchResponse {
                accepted: 2,
                duplicates: 0,
                results: vec![]
            })
        );
        let (body, request) = batch(&["b", "c", "c"]);
        assert_eq!(
            store.apply_batch("k2", body, request),
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
    fn a_repeated_key_replays_or_conflicts() {
        let mut store = SinkStore::default();
        let (body, request) = batch(&["a"]);
        store.apply_batch("k", body.clone(), request.clone());
        assert_eq!(
            store.apply_batch("k", body, request),
            BatchOutcome::Replayed(BatchResponse {
                accepted: 1,
                duplicates: 0,
                results: vec![]
            })
        );
        let (other, request) = batch(&["z"]);
        assert_eq!(
            store.apply_batch("k", other, request),
            BatchOutcome::KeyReused
        );
        assert_eq!(store.records().len(), 1);
        assert_eq!(store.stats.batches, 1);
        assert_eq!(store.stats.idempotent_replays, 1);
        assert_eq!(store.stats.idempotency_conflicts, 1);
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
