//! Request signing and idempotency keys of the CRM contract: the HMAC-SHA256 signature a
//! client puts on `POST /records:batch` (and every contract request) when the CRM demands
//! `hmac` auth, and the idempotency key of a batch. Pure functions of their inputs: the
//! timestamp is an argument, never read from a clock.
//!
//! Signature: `X-Convoy-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`
//! with `X-Convoy-Timestamp: <unix seconds>`. Signing the timestamp with the body lets the
//! receiver refuse replays older than its window (the sink: 5 minutes).

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::CrmRecord;
use crate::canonical::hex;

/// Header carrying the unix time (seconds) the request was signed at.
pub const TIMESTAMP_HEADER: &str = "X-Convoy-Timestamp";
/// Header carrying `sha256=<hex>`, the signature of [`TIMESTAMP_HEADER`] `.` body.
pub const SIGNATURE_HEADER: &str = "X-Convoy-Signature";
/// Prefix of the [`SIGNATURE_HEADER`] value, naming the algorithm.
pub const SIGNATURE_PREFIX: &str = "sha256=";

/// Lowercase hex HMAC-SHA256 of `timestamp + "." + body` under `secret`.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    hex(&mac(secret, timestamp, body).finalize().into_bytes())
}

/// The full [`SIGNATURE_HEADER`] value: `sha256=<hex>`.
pub fn signature_header_value(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    format!("{SIGNATURE_PREFIX}{}", sign(secret, timestamp, body))
}

/// Whether `header` (a [`SIGNATURE_HEADER`] value) is the signature of `timestamp.body`.
/// The comparison is constant-time, so a forger learns nothing from how long a refusal took.
pub fn verify(secret: &[u8], timestamp: &str, body: &[u8], header: &str) -> bool {
    let Some(hex_signature) = header.trim().strip_prefix(SIGNATURE_PREFIX) else {
        return false;
    };
    let Some(signature) = unhex(hex_signature) else {
        return false;
    };
    mac(secret, timestamp, body)
        .verify_slice(&signature)
        .is_ok()
}

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length (long keys are hashed), so this cannot fail; the
    // fallback keeps the function total without a panic path.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| <Hmac<Sha256> as KeyInit>::new(&Default::default()));
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `Idempotency-Key` of a batch: hex SHA-256 of its records' JSON (ids *and*
/// payloads, in order). The same records resent always carry the same key, so a resend
/// after a "maybe delivered" failure is recognised by the CRM whether or not Convoy
/// restarted in between; a batch that reuses ids with other content (a fact derived again
/// after a restart, with a later `observedAt`) gets another key instead of being refused
/// as a reused key with a different body (422).
pub fn idempotency_key(records: &[CrmRecord]) -> String {
    let mut hasher = Sha256::new();
    // Serialising plain records cannot fail; an empty input hashes the same either way.
    let bytes = serde_json::to_vec(records).unwrap_or_default();
    hasher.update(&bytes);
    hex(&hasher.finalize())
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| {
            let high = char::from(pair[0]).to_digit(16)?;
            let low = char::from(pair[1]).to_digit(16)?;
            u8::try_from(high * 16 + low).ok()
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_hmac_sha256_vector() {
        // RFC 4231 test case 2: the HMAC itself is the standard one.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // And the signature is the HMAC of exactly `timestamp.body`.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"k").unwrap();
        mac.update(b"1700000000.{\"records\":[]}");
        assert_eq!(
            sign(b"k", "1700000000", b"{\"records\":[]}"),
            hex(&mac.finalize().into_bytes())
        );
    }

    #[test]
    fn a_signature_verifies_only_for_its_secret_timestamp_and_body() {
        let header = signature_header_value(b"secret", "1700000000", b"body");
        assert!(header.starts_with("sha256="));
        assert!(verify(b"secret", "1700000000", b"body", &header));
        assert!(!verify(b"other", "1700000000", b"body", &header));
        assert!(!verify(b"secret", "1700000001", b"body", &header));
        assert!(!verify(b"secret", "1700000000", b"bodY", &header));
        assert!(!verify(b"secret", "1700000000", b"body", "sha1=00"));
        assert!(!verify(b"secret", "1700000000", b"body", "sha256=zz"));
        assert!(!verify(b"secret", "1700000000", b"body", "sha256=abc"));
    }

    #[test]
    fn the_idempotency_key_is_stable_and_depends_on_every_record_and_the_order() {
        let record = |id: &str, observed: &str| CrmRecord {
            id: id.to_owned(),
            conversation_id: "c".to_owned(),
            kind: "message.status".to_owned(),
            payload: serde_json::json!({"schema": 1, "observedAt": observed}).into(),
        };
        let a = record("a", "t1");
        let b = record("b", "t1");
        let key = idempotency_key(&[a.clone(), b.clone()]);
        assert_eq!(key.len(), 64);
        assert_eq!(key, idempotency_key(&[a.clone(), b.clone()]));
        assert_ne!(key, idempotency_key(&[b.clone(), a.clone()]));
        assert_ne!(key, idempotency_key(std::slice::from_ref(&a)));
        // Same ids, other content: another key (never a 422 for a reused key).
        assert_ne!(key, idempotency_key(&[a, record("b", "t2")]));
    }
}
