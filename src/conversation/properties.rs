//! Property tests of the join (proptest, default case count):
//! 1. any permutation and duplication of a conversation's snapshots yields the same state;
//! 2. the parser never panics on arbitrary JSON or arbitrary bytes;
//! 3. the version never decreases.
//!
//! Snapshots are generated freely from small pools of ids and values, not from a
//! consistent "story": the join must converge even for contradictory inputs, which covers
//! every ordering a real stream can produce and more.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;

use super::snapshot::*;
use super::state::Conversation;
use crate::ids::{CommunicationId, ConversationId, IdText, MessageId, ParticipantId};
use crate::model::{
    AfterCallWorkState, CommunicationState, Direction, DisconnectType, MessageStatus, MessageType,
    Purpose,
};

const CONVERSATION: &str = "c0";

fn time() -> impl Strategy<Value = Option<DateTime<Utc>>> {
    prop::option::of((0i64..5).prop_map(|s| Utc.timestamp_opt(1_741_000_000 + s, 0).unwrap()))
}

/// Ids of every shape the compact id type holds differently (inline UUIDs in either case,
/// inline 32-hex, other text), so the state's maps order and compare them together.
fn id_text(prefix: &'static str, n: u8) -> String {
    match n % 4 {
        0 => format!("{prefix}{n}"),
        1 => format!("4c2b6f0e-2a1d-4b8e-9f3a-0c1d2e3f4a5{n}"),
        2 => format!("4C2B6F0E-2A1D-4B8E-9F3A-0C1D2E3F4A5{n}"),
        _ => format!("0123456789abcdef0123456789abcde{n}"),
    }
}

fn optional_text(pool: &'static [&'static str]) -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop::sample::select(pool).prop_map(str::to_owned))
}

fn communication_state() -> impl Strategy<Value = Option<CommunicationState>> {
    prop::option::of(prop_oneof![
        prop::sample::select(CommunicationState::KNOWN.to_vec()),
        Just(CommunicationState::Unknown("hovering".to_owned())),
    ])
}

fn message_status() -> impl Strategy<Value = Option<MessageStatus>> {
    prop::option::of(prop_oneof![
        prop::sample::select(MessageStatus::KNOWN.to_vec()),
        Just(MessageStatus::Unknown("teleported".to_owned())),
    ])
}

fn disconnect_type() -> impl Strategy<Value = Option<DisconnectType>> {
    prop::option::of(prop::sample::select(vec![
        DisconnectType::Client,
        DisconnectType::Peer,
        DisconnectType::Error,
        DisconnectType::TransportFailure,
    ]))
}

fn wrapup() -> impl Strategy<Value = Option<WrapupRecord>> {
    prop::option::of((0u8..2, time()).prop_map(|(code, end_time)| WrapupRecord {
        end_time,
        code: Some(format!("code-{code}")),
        name: None,
        notes: None,
        duration_seconds: None,
    }))
}

fn communication() -> impl Strategy<Value = CommunicationSnapshot> {
    (
        0u8..2,
        communication_state(),
        disconnect_type(),
        any::<bool>(),
        time(),
        prop::option::of(prop::sample::select(AfterCallWorkState::KNOWN.to_vec())),
        wrapup(),
        (
            prop::option::of(prop::sample::select(vec![
                Direction::Inbound,
                Direction::Outbound,
                Direction::Unknown("sideways".to_owned()),
            ])),
            prop::option::of(prop::sample::select(vec![
                MessageType::Open,
                MessageType::Unknown("pigeon".to_owned()),
            ])),
            optional_text(&["https://example.invalid/t1", "https://example.invalid/t2"]),
        ),
    )
        .prop_map(
            |(
                id,
                state,
                disconnect_type,
                error,
                time,
                after_call_work,
                wrapup,
                (direction, message_type, transcript_uri),
            )| {
                CommunicationSnapshot {
                    id: CommunicationId::from(format!("leg-{id}")),
                    medium: Medium::Messages,
                    state,
                    direction,
                    disconnect_type,
                    error,
                    connected_time: time,
                    disconnected_time: None,
                    message_type,
                    transcript_uri,
                    after_call_work,
                    wrapup,
                }
            },
        )
}

fn attachment() -> impl Strategy<Value = Attachment> {
    (0u8..3, prop::option::of(0u64..3)).prop_map(|(n, size)| Attachment {
        url: format!("https://example.invalid/{n}"),
        id: (n > 0).then(|| format!("media-{n}")),
        mime_type: Some("image/png".to_owned()),
        size_bytes: size,
        name: None,
    })
}

fn message() -> impl Strategy<Value = MessageSnapshot> {
    (
        0u8..4,
        prop::option::of(0u8..2),
        message_status(),
        time(),
        prop::option::of(1u32..3),
        prop::collection::vec(attachment(), 0..2),
        prop::collection::vec(
            prop::sample::select(vec![
                Sticker {
                    id: Some("s1".to_owned()),
                    url: None,
                },
                Sticker {
                    id: None,
                    url: Some("https://example.invalid/s2".to_owned()),
                },
            ]),
            0..2,
        ),
        optional_text(&["https://example.invalid/m1"]),
    )
        .prop_map(
            |(id, leg, status, message_time, segment_count, media, stickers, transcript_uri)| {
                MessageSnapshot {
                    id: MessageId::from(id_text("m", id)),
                    communication_id: leg.map(|leg| CommunicationId::from(format!("leg-{leg}"))),
                    status,
                    message_time,
                    segment_count,
                    media,
                    stickers,
                    transcript_uri,
                }
            },
        )
}

fn participant() -> impl Strategy<Value = ParticipantSnapshot> {
    (
        0u8..4,
        prop::option::of(prop::sample::select(vec![
            Purpose::Customer,
            Purpose::Agent,
            Purpose::Acd,
            Purpose::Unknown("oracle".to_owned()),
        ])),
        communication_state(),
        disconnect_type(),
        (time(), time(), prop::option::of(any::<bool>()), wrapup()),
        prop::collection::btree_map(
            prop::sample::select(vec!["a".to_owned(), "b".to_owned()]),
            prop::sample::select(vec!["x".to_owned(), "y".to_owned()]),
            0..2,
        ),
        prop::collection::vec(communication(), 0..3),
        prop::collection::vec(message(), 0..3),
        (
            optional_text(&["Ann", "Bob"]),
            optional_text(&["4c2b6f0e-2a1d-4b8e-9f3a-0c1d2e3f4a5b", "user-x"]),
            optional_text(&["0123456789ABCDEF0123456789ABCDEF", "queue-x"]),
        ),
    )
        .prop_map(
            |(
                id,
                purpose,
                state,
                disconnect_type,
                (connected, end, wrapup_required, wrapup),
                attributes,
                communications,
                messages,
                (name, user_id, queue_id),
            )| {
                ParticipantSnapshot {
                    id: ParticipantId::from(id_text("p", id)),
                    purpose,
                    name,
                    user_id: user_id.as_deref().map(IdText::new),
                    queue_id: queue_id.as_deref().map(IdText::new),
                    state,
                    disconnect_type,
                    error: false,
                    connected_time: connected,
                    end_time: end,
                    wrapup_required,
                    wrapup_skipped: None,
                    wrapup,
                    attributes,
                    communications,
                    messages,
                }
            },
        )
}

fn snapshot() -> impl Strategy<Value = ConversationSnapshot> {
    (prop::collection::vec(participant(), 0..4), time()).prop_map(|(participants, end_time)| {
        ConversationSnapshot {
            conversation_id: ConversationId::from(CONVERSATION),
            start_time: None,
            end_time,
            participants,
        }
    })
}

/// Snapshots plus a reordering with duplicates: each index of the original appears at least
/// once in `order`, in shuffled positions, some more than once.
fn snapshots_and_replay() -> impl Strategy<Value = (Vec<ConversationSnapshot>, Vec<usize>)> {
    prop::collection::vec(snapshot(), 1..6).prop_flat_map(|snapshots| {
        let count = snapshots.len();
        let duplicates = prop::collection::vec(0..count, 0..count + 2);
        (Just(snapshots), duplicates).prop_flat_map(move |(snapshots, duplicates)| {
            let mut order: Vec<usize> = (0..count).collect();
            order.extend(duplicates);
            (Just(snapshots), Just(order).prop_shuffle())
        })
    })
}

fn apply_all<'a>(snapshots: impl IntoIterator<Item = &'a ConversationSnapshot>) -> Conversation {
    let mut conversation = Conversation::new(ConversationId::from(CONVERSATION));
    for snapshot in snapshots {
        conversation.apply_snapshot(snapshot).unwrap();
    }
    conversation
}

proptest! {
    #[test]
    fn any_order_and_duplication_converges((snapshots, order) in snapshots_and_replay()) {
        let in_order = apply_all(&snapshots);
        let replayed = apply_all(order.iter().map(|&i| &snapshots[i]));
        prop_assert_eq!(&in_order.state, &replayed.state);
        // Derived views agree too.
        prop_assert_eq!(in_order.state.is_ended(), replayed.state.is_ended());
        for (id, participant) in &in_order.state.participants {
            prop_assert_eq!(participant.lifecycle(), replayed.state.participants[id].lifecycle());
        }
    }

    #[test]
    fn the_join_reports_what_a_copy_of_the_state_before_would_show(
        (snapshots, order) in snapshots_and_replay(),
        own in prop::collection::vec((0usize..4, 0u8..3, any::<bool>()), 0..6),
    ) {
        // Some snapshots also carry Convoy's own attributes (echoes of its writes).
        let mut snapshots = snapshots;
        for (at, version, active) in own {
            if let Some(participant) = snapshots.get_mut(at).and_then(|s| s.participants.first_mut()) {
                participant.attributes.insert("convoy.version".to_owned(), version.to_string());
                participant.attributes.insert(
                    "convoy.participant_state".to_owned(),
                    if active { "active" } else { "joined" }.to_owned(),
                );
            }
        }
        let mut conversation = Conversation::new(ConversationId::from(CONVERSATION));
        for &i in &order {
            let before = conversation.state.clone();
            let outcome = conversation.apply_snapshot(&snapshots[i]).unwrap();
            let (changed, own_only, transitions) =
                crate::conversation::state::outcome_from_copy(&before, &conversation.state);
            prop_assert_eq!(outcome.changed, changed);
            prop_assert_eq!(outcome.own_attributes_changed, own_only);
            prop_assert_eq!(outcome.transitions, transitions);
        }
    }

    #[test]
    fn applying_a_snapshot_twice_changes_nothing_the_second_time(snapshots in prop::collection::vec(snapshot(), 1..5)) {
        let mut conversation = apply_all(&snapshots);
        let version = conversation.version;
        let outcome = conversation.apply_snapshot(snapshots.last().unwrap()).unwrap();
        prop_assert!(!outcome.changed);
        prop_assert!(outcome.transitions.is_empty());
        prop_assert_eq!(conversation.version, version);
    }

    #[test]
    fn version_never_decreases_and_lifecycles_never_regress((snapshots, order) in snapshots_and_replay()) {
        let mut conversation = Conversation::new(ConversationId::from(CONVERSATION));
        let mut last_version = 0;
        for &i in &order {
            let before: Vec<_> = conversation
                .state
                .participants
                .iter()
                .map(|(id, p)| (id.clone(), p.lifecycle()))
                .collect();
            let outcome = conversation.apply_snapshot(&snapshots[i]).unwrap();
            prop_assert!(outcome.version >= last_version);
            prop_assert_eq!(outcome.version, conversation.version);
            prop_assert_eq!(outcome.changed, outcome.version > last_version);
            last_version = outcome.version;
            for (id, lifecycle) in before {
                prop_assert!(conversation.state.participants[&id].lifecycle() >= lifecycle);
            }
        }
    }

    #[test]
    fn parser_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = crate::parse::classify_bytes(&bytes);
    }

    #[test]
    fn parser_never_panics_on_arbitrary_json(value in arbitrary_json()) {
        let _ = crate::parse::classify_value(value.clone());
        // Also as the body of every topic family Convoy understands.
        for topic in [
            "v2.users.u1.conversations",
            "v2.routing.queues.q1.conversations.messages",
            "v2.conversations.c1.transcription",
            "v2.detail.events.conversation.c1.acd.end",
            "v2.system.socket_closing",
            "channel.metadata",
        ] {
            let frame = serde_json::json!({ "topicName": topic, "eventBody": value });
            let _ = crate::parse::classify_value(frame);
        }
    }

    #[test]
    fn parser_never_panics_on_mutated_real_frames(path in prop::collection::vec(0usize..8, 1..6), replacement in arbitrary_json()) {
        let text = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/genesys/ws_event_user_conversations_message_alerting.json"
        ));
        let mut value: serde_json::Value = serde_json::from_str(text).unwrap();
        replace_somewhere(&mut value, &path, replacement);
        let _ = crate::parse::classify_value(value);
    }
}

/// Walks down `path` (choosing among children by index modulo their count) and replaces
/// the node reached, so mutations land deep inside realistic frames.
fn replace_somewhere(
    value: &mut serde_json::Value,
    path: &[usize],
    replacement: serde_json::Value,
) {
    let Some((&step, rest)) = path.split_first() else {
        *value = replacement;
        return;
    };
    let child = match value {
        serde_json::Value::Object(map) if !map.is_empty() => {
            let index = step % map.len();
            map.values_mut().nth(index)
        }
        serde_json::Value::Array(items) if !items.is_empty() => {
            let index = step % items.len();
            items.get_mut(index)
        }
        _ => None,
    };
    match child {
        Some(child) => replace_somewhere(child, rest, replacement),
        None => *value = replacement,
    }
}

fn arbitrary_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map_or(serde_json::Value::Null, serde_json::Value::Number)),
        prop::sample::select(vec![
            "",
            "id",
            "connected",
            "2025-03-04T14:05:12.301Z",
            "not-a-date",
            "received",
            "v2.system.x",
            "pong",
        ])
        .prop_map(serde_json::Value::from),
        ".{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "id",
                    "topicName",
                    "eventBody",
                    "participants",
                    "messages",
                    "messageId",
                    "message",
                    "state",
                    "messageTime",
                    "media",
                    "url",
                    "transcripts",
                    "alternatives",
                    "utteranceId",
                    "calls",
                    "attributes",
                    "result",
                    "wrapup",
                ])
                .prop_map(str::to_owned),
                inner,
                0..6,
            )
            .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        ]
    })
}
