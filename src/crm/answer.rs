//! What an answer to `POST /records:batch` means for the records it carried, and how a
//! conversation summary is merged after a 412. Vector's shape: a classification kept apart
//! from the retry schedule, which the shell owns. Unlike Vector's HTTP sink, nothing is
//! discarded: a non-retryable answer is a dead letter, kept with its context.
//!
//! | answer | verdict |
//! |---|---|
//! | 2xx without `results` | every record acknowledged |
//! | 2xx/207 with per-record `results` | acknowledged; 4xx results dead-lettered, 408/429/5xx results retried |
//! | 408, 429, 5xx | retry the whole batch (same Idempotency-Key); `Retry-After` wins |
//! | 401, 403 | retry: a rotated credential or a skewed clock is an operator's fix, not the records' fault |
//! | 409 | retry: the same key is still being processed (a resend raced the first attempt) |
//! | other 4xx (400, 413, 422, …) | dead letter, with a body excerpt |
//!
//! An outage must never dead-letter a record, so every answer that does not judge the
//! records themselves is retried, forever, with backoff. Owns decisions only: time is an
//! argument (`now`, to read an HTTP-date `Retry-After`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::BatchResponse;
use crate::retry::parse_retry_after;

/// Longest body excerpt kept with a dead letter, in bytes.
pub const EXCERPT_MAX_BYTES: usize = 512;

/// What to do with a batch after the CRM answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchVerdict {
    /// The CRM took the batch: delete it from the outbox, except the records listed here.
    Acknowledged {
        /// Records the CRM refused for what they are (per-record 4xx): dead-letter them.
        rejected: Vec<RecordRejection>,
        /// Records the CRM could not take now (per-record 408/429/5xx): keep them pending.
        retry: Vec<String>,
    },
    /// Nothing was judged: send the same batch again with the same Idempotency-Key, after
    /// `after` when the CRM said so (it wins over the backoff).
    Retry {
        status: u16,
        after: Option<Duration>,
        reason: String,
    },
    /// The CRM refused the batch as such: dead-letter every record with this context.
    DeadLetter { status: u16, excerpt: String },
}

impl BatchVerdict {
    /// Whether this answer asks the sender to slow down (for adaptive concurrency): 429,
    /// 503 and timeouts do, an ordinary 500 does too (an overloaded CRM often says so).
    pub fn is_back_pressure(&self) -> bool {
        match self {
            BatchVerdict::Retry { status, .. } => matches!(status, 408 | 429 | 500..=599),
            _ => false,
        }
    }

    /// Low-cardinality label for metrics and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            BatchVerdict::Acknowledged { .. } => "acknowledged",
            BatchVerdict::Retry { .. } => "retry",
            BatchVerdict::DeadLetter { .. } => "dead_letter",
        }
    }
}

/// One record a 2xx/207 answer refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRejection {
    pub id: String,
    pub status: u16,
    /// The CRM's `error: message`, or the status when it gave none.
    pub reason: String,
}

/// Classifies the answer to a batch of records whose ids are `sent_ids`. `retry_after` is
/// the raw `Retry-After` header; `now` reads its HTTP-date form. A per-record result naming
/// an id that was not sent is ignored; a sent record the results do not mention counts as
/// acknowledged, as the batch's 2xx says.
pub fn classify_batch_answer(
    status: u16,
    retry_after: Option<&str>,
    body: &[u8],
    sent_ids: &[String],
    now: DateTime<Utc>,
) -> BatchVerdict {
    match status {
        200..=299 => acknowledged(body, sent_ids),
        401 | 403 | 408 | 409 | 429 | 500..=599 => BatchVerdict::Retry {
            status,
            after: retry_after.and_then(|value| parse_retry_after(value, now).ok()),
            reason: retry_reason(status, body),
        },
        _ => BatchVerdict::DeadLetter {
            status,
            excerpt: excerpt(body),
        },
    }
}

fn acknowledged(body: &[u8], sent_ids: &[String]) -> BatchVerdict {
    let mut rejected = Vec::new();
    let mut retry = Vec::new();
    // A 2xx whose body is not ours still means "stored": the status is the contract, the
    // body only refines it.
    let results = serde_json::from_slice::<BatchResponse>(body)
        .map(|response| response.results)
        .unwrap_or_default();
    for result in results {
        if !sent_ids.contains(&result.id) {
            continue;
        }
        match result.status {
            200..=299 => {}
            408 | 429 | 500..=599 => retry.push(result.id),
            status => {
                let reason = match (&result.error, &result.message) {
                    (Some(error), Some(message)) => format!("{error}: {message}"),
                    (Some(text), None) | (None, Some(text)) => text.clone(),
                    (None, None) => format!("status {status}"),
                };
                rejected.push(RecordRejection {
                    id: result.id,
                    status,
                    reason,
                });
            }
        }
    }
    BatchVerdict::Acknowledged { rejected, retry }
}

fn retry_reason(status: u16, body: &[u8]) -> String {
    let excerpt = excerpt(body);
    if excerpt.is_empty() {
        format!("status {status}")
    } else {
        format!("status {status}: {excerpt}")
    }
}

/// At most [`EXCERPT_MAX_BYTES`] of `body` as text, cut at a character boundary; bytes that
/// are not UTF-8 read as U+FFFD.
pub fn excerpt(body: &[u8]) -> String {
    // Four extra bytes so a character cut by the window is whole or replaced, never both.
    let window = &body[..body.len().min(EXCERPT_MAX_BYTES + 4)];
    let text = String::from_utf8_lossy(window);
    let mut end = text.len().min(EXCERPT_MAX_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].trim().to_owned()
}

/// The document to write after a 412 on a summary upsert: the CRM's current document
/// (`theirs`) with Convoy's fields (`ours`) written over it. Every field of `ours` wins; an
/// `owned_fields` entry `ours` no longer has is removed (Convoy owns it, and it is gone);
/// every other field of theirs — a CRM user's note, another integration's tag — is kept.
/// When either side is not a JSON object, ours wins whole.
pub fn merge_summary(theirs: &Value, ours: &Value, owned_fields: &[&str]) -> Value {
    let (Value::Object(theirs), Value::Object(ours)) = (theirs, ours) else {
        return ours.clone();
    };
    let mut merged: Map<String, Value> = theirs.clone();
    for field in owned_fields {
        if !ours.contains_key(*field) {
            merged.remove(*field);
        }
    }
    for (field, value) in ours {
        merged.insert(field.clone(), value.clone());
    }
    Value::Object(merged)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|id| (*id).to_owned()).collect()
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 5, 12, 0, 0).unwrap()
    }

    fn classify(status: u16, retry_after: Option<&str>, body: &[u8]) -> BatchVerdict {
        classify_batch_answer(status, retry_after, body, &ids(&["a", "b", "c"]), now())
    }

    #[test]
    fn a_plain_2xx_acknowledges_every_record() {
        for body in [
            &br#"{"accepted":3,"duplicates":0}"#[..],
            b"",
            b"not json at all",
        ] {
            assert_eq!(
                classify(200, None, body),
                BatchVerdict::Acknowledged {
                    rejected: vec![],
                    retry: vec![]
                }
            );
        }
    }

    #[test]
    fn a_207_dead_letters_only_rejected_records_and_retries_transient_ones() {
        let body = json!({"accepted": 1, "duplicates": 0, "results": [
            {"id": "a", "status": 201},
            {"id": "b", "status": 422, "error": "rejected", "message": "payload too odd"},
            {"id": "c", "status": 503},
            {"id": "not-sent", "status": 400},
        ]})
        .to_string();
        assert_eq!(
            classify(207, None, body.as_bytes()),
            BatchVerdict::Acknowledged {
                rejected: vec![RecordRejection {
                    id: "b".into(),
                    status: 422,
                    reason: "rejected: payload too odd".into()
                }],
                retry: vec!["c".into()],
            }
        );
    }

    #[test]
    fn a_rejection_without_text_names_its_status() {
        let body = br#"{"accepted":0,"duplicates":0,"results":[{"id":"a","status":400}]}"#;
        let BatchVerdict::Acknowledged { rejected, .. } = classify(207, None, body) else {
            panic!("a 207 acknowledges");
        };
        assert_eq!(rejected[0].reason, "status 400");
    }

    #[test]
    fn transient_answers_retry_and_retry_after_wins() {
        for status in [408, 429, 500, 501, 502, 503, 504, 401, 403, 409] {
            assert!(
                matches!(
                    classify(status, None, b""),
                    BatchVerdict::Retry { after: None, .. }
                ),
                "{status} must be retried"
            );
        }
        assert_eq!(
            classify(429, Some("7"), b""),
            BatchVerdict::Retry {
                status: 429,
                after: Some(Duration::from_secs(7)),
                reason: "status 429".into()
            }
        );
        let BatchVerdict::Retry { after, .. } =
            classify(503, Some("Mon, 05 Jan 2026 12:00:30 GMT"), b"")
        else {
            panic!("503 retries");
        };
        assert_eq!(after, Some(Duration::from_secs(30)));
        // An unreadable Retry-After leaves the backoff in charge.
        let BatchVerdict::Retry { after, reason, .. } =
            classify(503, Some("soon"), br#"{"error":"down"}"#)
        else {
            panic!("503 retries");
        };
        assert_eq!(after, None);
        assert_eq!(reason, r#"status 503: {"error":"down"}"#);
    }

    #[test]
    fn back_pressure_is_429_5xx_and_timeouts_only() {
        assert!(classify(429, None, b"").is_back_pressure());
        assert!(classify(503, None, b"").is_back_pressure());
        assert!(classify(408, None, b"").is_back_pressure());
        assert!(!classify(401, None, b"").is_back_pressure());
        assert!(!classify(200, None, b"").is_back_pressure());
        assert!(!classify(400, None, b"").is_back_pressure());
    }

    #[test]
    fn other_client_errors_dead_letter_with_an_excerpt() {
        for status in [400, 404, 413, 422] {
            assert_eq!(
                classify(status, Some("5"), br#" {"error":"bad"} "#),
                BatchVerdict::DeadLetter {
                    status,
                    excerpt: r#"{"error":"bad"}"#.into()
                }
            );
        }
    }

    #[test]
    fn excerpts_are_bounded_and_cut_at_a_character_boundary() {
        let long = "é".repeat(400); // 800 bytes, two per character
        let cut = excerpt(long.as_bytes());
        assert_eq!(cut.len(), EXCERPT_MAX_BYTES);
        assert!(cut.chars().all(|c| c == 'é'));
        let odd = format!("x{long}"); // the 512th byte is the first half of an 'é'
        let cut = excerpt(odd.as_bytes());
        assert_eq!(cut.len(), EXCERPT_MAX_BYTES - 1);
        assert_eq!(excerpt(b"\xff\xfeok"), "\u{fffd}\u{fffd}ok");
        let invalid = vec![0xffu8; 1000];
        assert!(excerpt(&invalid).len() <= EXCERPT_MAX_BYTES);
    }

    #[test]
    fn a_merged_summary_keeps_foreign_fields_and_convoys_win() {
        let theirs = json!({
            "participants": ["old"], "note": "VIP, call back", "tags": ["x"], "slaTallies": {"a": 1}
        });
        let ours = json!({"participants": ["p1", "p2"], "messageCounts": {"inbound": 3}});
        let merged = merge_summary(
            &theirs,
            &ours,
            &["participants", "messageCounts", "slaTallies"],
        );
        assert_eq!(
            merged,
            json!({
                "participants": ["p1", "p2"],
                "messageCounts": {"inbound": 3},
                "note": "VIP, call back",
                "tags": ["x"],
            })
        );
        assert_eq!(merge_summary(&json!("junk"), &ours, &[]), ours);
    }
}
