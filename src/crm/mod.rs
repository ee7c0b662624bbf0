//! The CRM contract Convoy syncs to, as plain types and decisions: the record shape, the
//! batch request and response bodies, the error body, entity tags and the conditional-write
//! rule of `PUT /conversations/{id}`. Both sides use it: Convoy's CRM client and the test
//! server `convoy crm-sink` (in `convoy_actors::crm_sink`). No I/O here.
//!
//! The contract:
//! - `POST /records:batch` with [`BatchRequest`] and an `Idempotency-Key` header → 200
//!   [`BatchResponse`]; records are de-duplicated by [`CrmRecord::id`]. A CRM that judges
//!   records one by one answers 207 with per-record `results` (see [`BatchResponse`]):
//!   only the records with a 2xx result were stored. The Idempotency-Key follows the IETF
//!   draft: missing → 400, reused with another body → 422, reused while the first request
//!   is still being processed → 409, reused after completion → the stored answer again.
//! - Authentication: none, `Authorization: Bearer`, HTTP Basic, or an HMAC-SHA256
//!   signature ([`signing`]: `X-Convoy-Timestamp` + `X-Convoy-Signature`).
//! - `GET /conversations/{id}` → the stored document, `ETag: "<version>"`.
//! - `PUT /conversations/{id}` with `If-Match: "<version>"` (update) or `If-None-Match: *`
//!   (create) → 200/201 with the new `ETag`, or 412 [`CrmErrorBody`] when the precondition
//!   does not hold.

pub mod answer;
pub mod batching;
pub mod concurrency;
pub mod config_file;
pub mod records;
pub mod signing;

use serde::{Deserialize, Serialize};

/// Header carrying the client's idempotency key on `POST /records:batch`.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

/// One record Convoy emits for the CRM: a fact about one conversation. The `id` is stable
/// across resends, so a sink that de-duplicates by it makes resends harmless.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CrmRecord {
    pub id: String,
    pub conversation_id: String,
    /// What the record says, e.g. `message`, `participant`, `sla-breach`, `summary`.
    pub kind: String,
    /// Kind-specific content; opaque to the contract.
    #[serde(default)]
    pub payload: Payload,
}

/// A record's payload: JSON text, kept exactly as it was written. Convoy serialises a
/// payload once, when the record is made, and the outbox, the batcher and the CRM client
/// pass the text along without building a tree of it; a payload read back (from the
/// outbox, or by the test server) keeps its bytes, so a resent batch hashes to the same
/// `Idempotency-Key`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Payload(Box<serde_json::value::RawValue>);

impl Payload {
    /// The payload of a value serialised as JSON.
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Result<Payload, serde_json::Error> {
        serde_json::value::to_raw_value(value).map(Payload)
    }

    /// The JSON text.
    pub fn text(&self) -> &str {
        self.0.get()
    }

    /// The payload as a JSON tree (for a reader that looks into it).
    pub fn to_value(&self) -> serde_json::Value {
        // The text is JSON: it was serialised or parsed as such.
        serde_json::from_str(self.text()).unwrap_or(serde_json::Value::Null)
    }

    /// One top-level field, if the payload is an object that has it.
    pub fn field(&self, name: &str) -> Option<serde_json::Value> {
        match self.to_value() {
            serde_json::Value::Object(mut fields) => fields.remove(name),
            _ => None,
        }
    }
}

impl Default for Payload {
    /// `null`, as an absent payload reads.
    fn default() -> Self {
        Payload(Box::default())
    }
}

impl From<serde_json::Value> for Payload {
    fn from(value: serde_json::Value) -> Self {
        // Serialising a tree cannot fail (its map keys are strings).
        Payload::of(&value).unwrap_or_default()
    }
}

impl PartialEq for Payload {
    /// The same JSON text (payloads are compared as stored and sent).
    fn eq(&self, other: &Self) -> bool {
        self.text() == other.text()
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text())
    }
}

/// Body of `POST /records:batch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRequest {
    pub records: Vec<CrmRecord>,
}

/// Success body of `POST /records:batch`: how many records were new and how many the sink
/// already held (same record id).
///
/// A 207 answer adds `results`, one per record of the request:
/// `{"accepted":1,"duplicates":0,"results":[{"id":"r1","status":201},
/// {"id":"r2","status":422,"error":"rejected","message":"why"}]}`. A record whose result
/// status is not 2xx was not stored; a 2xx answer without `results` stored every record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchResponse {
    pub accepted: usize,
    pub duplicates: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<RecordResult>,
}

/// The verdict on one record of a batch, in a 207 [`BatchResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordResult {
    pub id: String,
    /// 200 (duplicate) or 201 (stored) when accepted; a 4xx when rejected (never retried
    /// by Convoy: dead-lettered); 408/429/5xx when the CRM could not take it now (retried).
    pub status: u16,
    /// Machine-readable code of a rejection, e.g. `rejected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Error body of every non-2xx answer of the CRM contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrmErrorBody {
    /// Machine-readable code, e.g. `precondition_failed`, `idempotency_key_reused`.
    pub error: String,
    /// Human-readable explanation.
    pub message: String,
}

impl CrmErrorBody {
    pub fn new(error: &str, message: impl Into<String>) -> CrmErrorBody {
        CrmErrorBody {
            error: error.to_owned(),
            message: message.into(),
        }
    }
}

/// Why a batch body is not a valid [`BatchRequest`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Not JSON, or not the batch shape; `path` names where (`records[2].conversationId`).
    #[error("invalid batch body at `{path}`: {message}")]
    Malformed { path: String, message: String },
    /// A required string is empty.
    #[error("`{path}` must not be empty")]
    EmptyField { path: String },
    /// More records than the sink accepts in one batch.
    #[error("batch holds {count} records, more than the limit of {limit}")]
    TooLarge { count: usize, limit: usize },
}

/// Reads and validates a batch body: JSON of the [`BatchRequest`] shape, every record with a
/// non-empty `id`, `conversationId` and `kind`, and at most `limit` records.
pub fn parse_batch(body: &[u8], limit: usize) -> Result<BatchRequest, BatchError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let batch: BatchRequest =
        serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
            BatchError::Malformed {
                path: error.path().to_string(),
                message: error.inner().to_string(),
            }
        })?;
    if batch.records.len() > limit {
        return Err(BatchError::TooLarge {
            count: batch.records.len(),
            limit,
        });
    }
    for (index, record) in batch.records.iter().enumerate() {
        for (field, value) in [
            ("id", &record.id),
            ("conversationId", &record.conversation_id),
            ("kind", &record.kind),
        ] {
            if value.is_empty() {
                return Err(BatchError::EmptyField {
                    path: format!("records[{index}].{field}"),
                });
            }
        }
    }
    Ok(batch)
}

/// The strong entity tag of a document version: `"<version>"` (quotes included).
pub fn format_etag(version: u64) -> String {
    format!("\"{version}\"")
}

/// Reads an entity tag written by [`format_etag`]; a weak tag (`W/"3"`) reads as its
/// version. `None` when the text is not such a tag.
pub fn parse_etag(text: &str) -> Option<u64> {
    let text = text.trim();
    let text = text.strip_prefix("W/").unwrap_or(text);
    text.strip_prefix('"')?.strip_suffix('"')?.parse().ok()
}

/// The precondition a conditional `PUT /conversations/{id}` carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// Neither `If-Match` nor `If-None-Match`.
    None,
    /// `If-Match: *`: the document must exist.
    IfMatchAny,
    /// `If-Match: "3", "4"`: the current version must be one of these.
    IfMatch(Vec<u64>),
    /// `If-None-Match: *`: the document must not exist yet.
    IfNoneMatchAny,
}

/// Why [`Precondition::from_headers`] refused the headers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreconditionError {
    #[error("If-Match value `{0}` is not a list of entity tags")]
    BadIfMatch(String),
    #[error("only `If-None-Match: *` is supported on PUT, got `{0}`")]
    BadIfNoneMatch(String),
    #[error("If-Match and If-None-Match must not be combined")]
    Both,
}

impl Precondition {
    /// Reads the precondition from the raw `If-Match` / `If-None-Match` header values.
    pub fn from_headers(
        if_match: Option<&str>,
        if_none_match: Option<&str>,
    ) -> Result<Precondition, PreconditionError> {
        match (if_match, if_none_match) {
            (Some(_), Some(_)) => Err(PreconditionError::Both),
            (None, None) => Ok(Precondition::None),
            (None, Some(value)) if value.trim() == "*" => Ok(Precondition::IfNoneMatchAny),
            (None, Some(value)) => Err(PreconditionError::BadIfNoneMatch(value.to_owned())),
            (Some(value), None) if value.trim() == "*" => Ok(Precondition::IfMatchAny),
            (Some(value), None) => value
                .split(',')
                .map(|tag| parse_etag(tag).ok_or_else(|| tag.trim().to_owned()))
                .collect::<Result<Vec<u64>, String>>()
                .map(Precondition::IfMatch)
                .map_err(|_| PreconditionError::BadIfMatch(value.to_owned())),
        }
    }
}

/// What a conditional write does when its precondition holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// No document existed: it is created with this version (201).
    Created { version: u64 },
    /// The document is replaced with this version (200).
    Updated { version: u64 },
}

/// Why a conditional write is refused (412).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteRefused {
    #[error("document already exists at version {current}")]
    AlreadyExists { current: u64 },
    #[error("document does not exist")]
    Missing,
    #[error("document is at version {current}, not {expected:?}")]
    Stale { current: u64, expected: Vec<u64> },
}

/// Decides a `PUT` against the stored version (`None` when there is no document): versions
/// start at 1 and grow by one per accepted write. An unconditional write always succeeds
/// (whether the sink allows it at all is the sink's policy).
pub fn decide_write(
    current: Option<u64>,
    precondition: &Precondition,
) -> Result<WriteOutcome, WriteRefused> {
    let next = |current: Option<u64>| match current {
        None => WriteOutcome::Created { version: 1 },
        Some(version) => WriteOutcome::Updated {
            version: version.saturating_add(1),
        },
    };
    match (precondition, current) {
        (Precondition::None, _) => Ok(next(current)),
        (Precondition::IfNoneMatchAny, Some(current)) => {
            Err(WriteRefused::AlreadyExists { current })
        }
        (Precondition::IfNoneMatchAny, None) => Ok(next(None)),
        (Precondition::IfMatchAny | Precondition::IfMatch(_), None) => Err(WriteRefused::Missing),
        (Precondition::IfMatchAny, Some(_)) => Ok(next(current)),
        (Precondition::IfMatch(expected), Some(version)) => {
            if expected.contains(&version) {
                Ok(next(current))
            } else {
                Err(WriteRefused::Stale {
                    current: version,
                    expected: expected.clone(),
                })
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trips_in_camel_case() {
        let body = br#"{"records":[{"id":"r1","conversationId":"c1","kind":"message","payload":{"a":1}}]}"#;
        let batch = parse_batch(body, 10).unwrap();
        assert_eq!(batch.records[0].conversation_id, "c1");
        let text = serde_json::to_string(&batch).unwrap();
        assert!(text.contains("\"conversationId\":\"c1\""));
    }

    #[test]
    fn malformed_batch_names_the_path() {
        let body =
            br#"{"records":[{"id":"r1","conversationId":"c1","kind":"k"},{"id":"r2","kind":"k"}]}"#;
        let error = parse_batch(body, 10).unwrap_err();
        match error {
            BatchError::Malformed { path, .. } => assert_eq!(path, "records[1]"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn empty_record_id_is_refused() {
        let body = br#"{"records":[{"id":"","conversationId":"c1","kind":"k"}]}"#;
        assert_eq!(
            parse_batch(body, 10).unwrap_err(),
            BatchError::EmptyField {
                path: "records[0].id".into()
            }
        );
    }

    #[test]
    fn oversized_batch_is_refused() {
        let body = br#"{"records":[{"id":"a","conversationId":"c","kind":"k"},{"id":"b","conversationId":"c","kind":"k"}]}"#;
        assert_eq!(
            parse_batch(body, 1).unwrap_err(),
            BatchError::TooLarge { count: 2, limit: 1 }
        );
    }

    #[test]
    fn etags_round_trip_and_weak_tags_read() {
        assert_eq!(format_etag(7), "\"7\"");
        assert_eq!(parse_etag("\"7\""), Some(7));
        assert_eq!(parse_etag(" W/\"7\" "), Some(7));
        assert_eq!(parse_etag("7"), None);
        assert_eq!(parse_etag("\"x\""), None);
    }

    #[test]
    fn preconditions_read_from_headers() {
        assert_eq!(
            Precondition::from_headers(None, None).unwrap(),
            Precondition::None
        );
        assert_eq!(
            Precondition::from_headers(None, Some("*")).unwrap(),
            Precondition::IfNoneMatchAny
        );
        assert_eq!(
            Precondition::from_headers(Some("\"2\", \"3\""), None).unwrap(),
            Precondition::IfMatch(vec![2, 3])
        );
        assert!(Precondition::from_headers(Some("2"), None).is_err());
        assert!(Precondition::from_headers(None, Some("\"2\"")).is_err());
        assert!(Precondition::from_headers(Some("*"), Some("*")).is_err());
    }

    #[test]
    fn create_only_when_absent() {
        assert_eq!(
            decide_write(None, &Precondition::IfNoneMatchAny),
            Ok(WriteOutcome::Created { version: 1 })
        );
        assert_eq!(
            decide_write(Some(1), &Precondition::IfNoneMatchAny),
            Err(WriteRefused::AlreadyExists { current: 1 })
        );
    }

    #[test]
    fn update_only_at_the_expected_version() {
        assert_eq!(
            decide_write(Some(3), &Precondition::IfMatch(vec![3])),
            Ok(WriteOutcome::Updated { version: 4 })
        );
        assert_eq!(
            decide_write(Some(4), &Precondition::IfMatch(vec![3])),
            Err(WriteRefused::Stale {
                current: 4,
                expected: vec![3]
            })
        );
        assert_eq!(
            decide_write(None, &Precondition::IfMatch(vec![1])),
            Err(WriteRefused::Missing)
        );
        assert_eq!(
            decide_write(None, &Precondition::IfMatchAny),
            Err(WriteRefused::Missing)
        );
    }

    #[test]
    fn unconditional_write_creates_then_updates() {
        assert_eq!(
            decide_write(None, &Precondition::None),
            Ok(WriteOutcome::Created { version: 1 })
        );
        assert_eq!(
            decide_write(Some(1), &Precondition::None),
            Ok(WriteOutcome::Updated { version: 2 })
        );
    }
}
