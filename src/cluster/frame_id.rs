//! The `Nats-Msg-Id` of a published frame: JetStream drops a message whose id it saw
//! within the stream's duplicate window (`cluster.duplicate_window`), so the id decides
//! which two frames are "the same".
//!
//! Genesys sends every conversation change as a full snapshot, once per matching
//! subscription (the queue topic and the user topic of one conversation), and again on
//! both channels while a rotation overlaps them; two ingest instances in hot standby each
//! receive their own copy. None of these copies carries a sequence number, and
//! `metadata.CorrelationId` is a tracing id, not the identity of the change. What the
//! copies share is the body. So the id is
//! `<conversation id>:<kind>:<first 128 bits of SHA-256 of the canonical body, hex>`:
//!
//! - the **body**, canonicalised (object keys sorted, no whitespace), so the key order
//!   and spacing of a serializer do not matter;
//! - the **kind** of topic (`c` conversation snapshot, `m` message snapshot, `r` a
//!   reconciliation result read through REST, `t` a transcription event), not the full topic name: the queue and the
//!   user topic carry the same snapshot and a worker applies it the same way, so one
//!   copy suffices; but a `.messages` body and a conversation body are different facts;
//! - **not** the receive time, the channel or `CorrelationId`, which differ per copy.
//!
//! A snapshot identical to one published a moment earlier adds nothing: snapshots are
//! idempotent and stale ones are discarded by the join, so dropping it is harmless.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::canonical::{hex, sorted_keys};

/// What a published frame holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A `…conversations` topic's snapshot.
    Conversation,
    /// A `…conversations.messages` topic's snapshot.
    Messages,
    /// A conversation read through REST after a gap (reconciliation).
    Reconciled,
    /// A `v2.conversations.{id}.transcription` event (voice calls).
    Transcription,
}

impl FrameKind {
    /// The kind of a notification topic, or `None` for topics that carry no conversation
    /// (`channel.metadata`, `v2.system.*`): those are never published.
    pub fn of_topic(topic_name: &str) -> Option<FrameKind> {
        if topic_name.ends_with(".conversations.messages") {
            Some(FrameKind::Messages)
        } else if topic_name.ends_with(".conversations") {
            Some(FrameKind::Conversation)
        } else if topic_name.starts_with("v2.conversations.")
            && topic_name.ends_with(".transcription")
        {
            Some(FrameKind::Transcription)
        } else {
            None
        }
    }

    fn tag(&self) -> char {
        match self {
            FrameKind::Conversation => 'c',
            FrameKind::Messages => 'm',
            FrameKind::Reconciled => 'r',
            FrameKind::Transcription => 't',
        }
    }
}

/// The `Nats-Msg-Id` of a frame about `conversation_id` (see the module doc).
pub fn frame_msg_id(conversation_id: &str, kind: FrameKind, body: &Value) -> String {
    let canonical = canonical_text(body);
    let digest = Sha256::digest(canonical.as_bytes());
    format!(
        "{}:{}:{}",
        conversation_id.trim().to_ascii_lowercase(),
        kind.tag(),
        hex(&digest[..16])
    )
}

/// The body with object keys sorted at every level and no whitespace.
fn canonical_text(body: &Value) -> String {
    sorted_keys(body.clone()).to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const CONV: &str = "3f2a6c1e-8b7d-4e2f-9a1b-2c3d4e5f6a7b";

    fn snapshot(state: &str) -> Value {
        json!({
            "id": CONV,
            "participants": [
                {"id": "p1", "purpose": "customer", "state": state, "attributes": {"b": 1, "a": "x"}},
            ],
        })
    }

    #[test]
    fn the_queue_and_the_user_topic_copy_of_one_snapshot_share_an_id() {
        let queue = FrameKind::of_topic("v2.routing.queues.q1.conversations").unwrap();
        let user = FrameKind::of_topic("v2.users.u1.conversations").unwrap();
        assert_eq!(
            frame_msg_id(CONV, queue, &snapshot("connected")),
            frame_msg_id(CONV, user, &snapshot("connected"))
        );
    }

    #[test]
    fn key_order_and_whitespace_of_the_body_do_not_matter() {
        let a: Value = serde_json::from_str(r#"{"id":"c","n":[1,{"y":2,"x":1}]}"#).unwrap();
        let b: Value =
            serde_json::from_str("{ \"n\" : [ 1, { \"x\": 1, \"y\": 2 } ],\n \"id\": \"c\" }")
                .unwrap();
        assert_eq!(
            frame_msg_id(CONV, FrameKind::Conversation, &a),
            frame_msg_id(CONV, FrameKind::Conversation, &b)
        );
    }

    #[test]
    fn a_changed_snapshot_a_different_kind_or_conversation_is_a_new_frame() {
        let base = frame_msg_id(CONV, FrameKind::Conversation, &snapshot("connected"));
        assert_ne!(
            base,
            frame_msg_id(CONV, FrameKind::Conversation, &snapshot("disconnected"))
        );
        assert_ne!(
            base,
            frame_msg_id(CONV, FrameKind::Messages, &snapshot("connected"))
        );
        assert_ne!(
            base,
            frame_msg_id(CONV, FrameKind::Reconciled, &snapshot("connected"))
        );
        let other = "00000000-0000-4000-8000-000000000000";
        assert_ne!(
            base,
            frame_msg_id(other, FrameKind::Conversation, &snapshot("connected"))
        );
    }

    #[test]
    fn the_id_is_pinned_and_short() {
        let id = frame_msg_id(
            &CONV.to_uppercase(),
            FrameKind::Conversation,
            &json!({"a": 1}),
        );
        // SHA-256 of `{"a":1}` begins 015abd7f5cc57a2dd94b7590f04ad808.
        assert_eq!(id, format!("{CONV}:c:015abd7f5cc57a2dd94b7590f04ad808"));
    }

    #[test]
    fn only_conversation_topics_are_published() {
        assert_eq!(FrameKind::of_topic("channel.metadata"), None);
        assert_eq!(FrameKind::of_topic("v2.system.socket_closing"), None);
        assert_eq!(
            FrameKind::of_topic("v2.users.u1.conversations.messages"),
            Some(FrameKind::Messages)
        );
        assert_eq!(
            FrameKind::of_topic("v2.conversations.c1.transcription"),
            Some(FrameKind::Transcription)
        );
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "[a-z \"\\\\]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn the_canonical_form_is_json_that_reads_back_to_the_same_value(value in arb_json()) {
            let canonical = canonical_text(&value);
            let back: Value = serde_json::from_str(&canonical).unwrap();
            prop_assert_eq!(back, value.clone());
            // And a re-serialisation (any key order) hashes the same.
            let reparsed: Value = serde_json::from_str(&serde_json::to_string_pretty(&value).unwrap()).unwrap();
            prop_assert_eq!(
                frame_msg_id(CONV, FrameKind::Conversation, &value),
                frame_msg_id(CONV, FrameKind::Conversation, &reparsed)
            );
        }
    }
}
