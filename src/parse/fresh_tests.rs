//! The fast paths of `classify_bytes_fresh` against its full path: the same answer, the
//! same bodies remembered, on generated corpora, every envelope layout and mutated frames.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde_json::Value;

use super::*;
use crate::conversation::ConversationSnapshot;

const ALL_MEDIA: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/genesys/ws_event_user_conversations_message_alerting.json"
));
const PER_PARTICIPANT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/genesys/ws_event_user_conversations_messages_topic.json"
));
const USER: &str = "v2.users.c1969995-565b-4c59-881c-83a921a85da9.conversations";

/// `classify_bytes_fresh` and the full path on two copies of `recent`: the same answer
/// and the same bodies remembered afterwards.
fn assert_same_as_in_full(text: &str, recent: &mut RecentBodies) -> Result<Fresh, ParseError> {
    let mut in_full = recent.clone();
    let fast = classify_bytes_fresh(text.as_bytes(), recent);
    let expected = if text.trim_start().starts_with('{') {
        classify_fresh_in_full(text, &mut in_full)
    } else {
        super::super::classify_bytes(text.as_bytes()).map(Fresh::Frame)
    };
    assert_eq!(fast, expected, "{text}");
    assert_eq!(*recent, in_full, "{text}");
    fast
}

fn compact_body(fixture: &str) -> String {
    serde_json::from_str::<Value>(fixture).unwrap()["eventBody"].to_string()
}

#[test]
fn every_generated_frame_gets_the_full_path_s_answer_and_snapshots_take_one_pass() {
    let corpus = crate::bench::corpus::generate(800, 3).unwrap();
    let mut recent = RecentBodies::default();
    let (mut fresh, mut duplicates) = (0, 0);
    for frame in &corpus.frames {
        // On its own, with nothing recent, a snapshot frame is read in one pass.
        let alone = read_in_one_pass(&frame.text, &mut RecentBodies::default());
        assert!(
            matches!(alone, Some(Ok(Fresh::Frame(Classified::Snapshot { .. })))),
            "{}",
            frame.text
        );
        match assert_same_as_in_full(&frame.text, &mut recent).unwrap() {
            Fresh::Frame(_) => fresh += 1,
            Fresh::Duplicate => duplicates += 1,
        }
    }
    assert!(
        fresh > 200 && duplicates > 200,
        "{fresh} read, {duplicates} dropped"
    );
}

#[test]
fn the_remembered_body_is_exactly_the_envelope_s_body_in_every_layout() {
    for (fixture, topic) in [
        (ALL_MEDIA, USER.to_owned()),
        (PER_PARTICIPANT, format!("{USER}.messages")),
    ] {
        let body = compact_body(fixture);
        for layout in [
            r#"{"topicName":"TOPIC","version":"2","eventBody":BODY,"metadata":{"CorrelationId":"a"}}"#,
            r#"{"eventBody":BODY,"metadata":{"CorrelationId":"a"},"topicName":"TOPIC","version":"2"}"#,
            r#"{"eventBody":BODY,"topicName":"TOPIC"}"#,
            r#"{"topicName":"TOPIC","eventBody":BODY}"#,
            " \n{ \"topicName\" : \"TOPIC\" ,\t\"eventBody\" :\r\nBODY\n}\n ",
            " {\"eventBody\"  :  BODY  , \"topicName\"\n:\"TOPIC\" } ",
            r#"{"eventBody":BODY,"result":"200","topicName":"TOPIC"}"#,
        ] {
            let text = layout.replace("TOPIC", &topic).replace("BODY", &body);
            let mut recent = RecentBodies::default();
            let Some(Ok(Fresh::Frame(Classified::Snapshot { .. }))) =
                read_in_one_pass(&text, &mut recent)
            else {
                panic!("read in one pass: {text}");
            };
            assert_eq!(recent.len(), 1);
            assert_eq!(
                recent.prefix_of(body.as_bytes()).map(BodyKey::body_len),
                Some(body.len()),
                "{text}"
            );
            assert_same_as_in_full(&text, &mut RecentBodies::default()).unwrap();
            // And read again, it is a copy.
            assert_eq!(
                assert_same_as_in_full(&text, &mut recent),
                Ok(Fresh::Duplicate),
                "{text}"
            );
        }
    }
}

#[test]
fn unusual_and_broken_envelopes_get_the_full_path_s_answer() {
    let all_media = compact_body(ALL_MEDIA);
    let per_participant = compact_body(PER_PARTICIPANT);
    let messages = format!("{USER}.messages");
    let layouts = [
        // A `topicName` member inside the body, after the real topic: a wrong guess.
        r#"{"version":"2","topicName":"TOPIC","eventBody":BODY_WITH_FAKE_TOPIC}"#,
        r#"{"eventBody":BODY_WITH_FAKE_TOPIC,"topicName":"TOPIC"}"#,
        // Escaped member names, escaped topics, a null or missing topic or body.
        r#"{"event\u0042ody":BODY,"topicName":"TOPIC"}"#,
        r#"{"eventBody":BODY,"topic\u004eame":"TOPIC"}"#,
        r#"{"eventBody":BODY,"topicName":"v2.users.c1969995\u002d565b-4c59-881c-83a921a85da9.conversations"}"#,
        r#"{"eventBody":BODY,"topicName":null}"#,
        r#"{"eventBody":BODY,"result":"200"}"#,
        r#"{"eventBody":null,"topicName":"TOPIC"}"#,
        r#"{"eventBody":[BODY],"topicName":"TOPIC"}"#,
        r#"{"topicName":"TOPIC"}"#,
        // Repeated members, null or not.
        r#"{"eventBody":BODY,"topicName":"TOPIC","topicName":null}"#,
        r#"{"topicName":null,"eventBody":BODY,"topicName":"TOPIC"}"#,
        r#"{"eventBody":BODY,"eventBody":null,"topicName":"TOPIC"}"#,
        r#"{"eventBody":BODY,"topicName":"TOPIC","result":null,"result":1}"#,
        // Not JSON, or not only JSON.
        r#"{"eventBody":BODY,"topicName":"TOPIC",}"#,
        r#"{"eventBody":BODY,"topicName":"TOPIC"}}"#,
        r#"{"eventBody":BODY,"topicName":"TOPIC"} x"#,
        "{\"eventBody\":BODY,\"topicName\":\"TOPIC\"}\u{a0}",
        "{\"eventBody\":BODY,\u{a0}\"topicName\":\"TOPIC\"}",
        r#"{"eventBody":BODY,"topicName":"TOPIC""#,
        r#"{"eventBody":BODY "topicName":"TOPIC"}"#,
        r#"{"eventBody":BODY,"topicName":7}"#,
        r#"{"topicName":"TOPIC","eventBody":BODY,"metadata":{"CorrelationId":}}"#,
        r#"["eventBody",BODY,"topicName","TOPIC"]"#,
    ];
    for (body, topic, other_topic) in [
        (&all_media, USER, messages.as_str()),
        (&per_participant, messages.as_str(), USER),
    ] {
        let with_fake_topic = format!(
            r#"{},"attributes":{{"topicName":"{other_topic}"}}}}"#,
            body.strip_suffix('}').unwrap()
        );
        for layout in layouts {
            for topic in [topic, other_topic] {
                let text = layout
                    .replace("BODY_WITH_FAKE_TOPIC", &with_fake_topic)
                    .replace("BODY", body)
                    .replace("TOPIC", topic);
                assert_same_as_in_full(&text, &mut RecentBodies::default()).ok();
                // With the body recent, in both shapes.
                let mut recent = RecentBodies::default();
                for shape in [BodyShape::AllMedia, BodyShape::PerParticipant] {
                    recent.remember(BodyKey::of(shape, body.as_bytes()), body.as_bytes());
                }
                assert_same_as_in_full(&text, &mut recent).ok();
            }
        }
    }
}

/// A frame with one to three edits: a few bytes deleted, or a JSON-ish piece inserted
/// (whitespace, punctuation, members, an escape, a non-ASCII space).
fn mutated_frame() -> impl Strategy<Value = (String, bool)> {
    let base = prop_oneof![
        Just(ALL_MEDIA.to_owned()),
        Just(PER_PARTICIPANT.to_owned()),
        Just(
            serde_json::json!({
                "eventBody": serde_json::from_str::<Value>(ALL_MEDIA).unwrap()["eventBody"],
                "metadata": {"CorrelationId": "a"},
                "topicName": USER,
                "version": "2",
            })
            .to_string()
        ),
    ];
    let piece = prop_oneof![
        Just(" "),
        Just("\n"),
        Just(","),
        Just("}"),
        Just("{"),
        Just("\""),
        Just("\\"),
        Just(":"),
        Just("null"),
        Just("\u{a0}"),
        Just(r#""topicName":"v2.users.u.conversations.messages","#),
        Just(r#""eventBody":{},"#),
        Just(r#""result":1,"#),
    ];
    let edit = (any::<prop::sample::Index>(), 0usize..4, piece);
    (base, prop::collection::vec(edit, 1..=3), any::<bool>()).prop_map(
        |(mut text, edits, primed)| {
            for (at, delete, piece) in edits {
                let mut at = at.index(text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                let mut end = (at + delete).min(text.len());
                while !text.is_char_boundary(end) {
                    end += 1;
                }
                text.replace_range(at..end, if delete == 0 { piece } else { "" });
            }
            (text, primed)
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_mutated_frame_gets_the_full_path_s_answer((text, primed) in mutated_frame()) {
        let mut recent = RecentBodies::default();
        if primed {
            for fixture in [ALL_MEDIA, PER_PARTICIPANT] {
                let body = compact_body(fixture);
                for shape in [BodyShape::AllMedia, BodyShape::PerParticipant] {
                    recent.remember(BodyKey::of(shape, body.as_bytes()), body.as_bytes());
                }
            }
        }
        let mut in_full = recent.clone();
        let fast = classify_bytes_fresh(text.as_bytes(), &mut recent);
        let expected = if text.trim_start().starts_with('{') {
            classify_fresh_in_full(&text, &mut in_full)
        } else {
            super::super::classify_bytes(text.as_bytes()).map(Fresh::Frame)
        };
        prop_assert_eq!(fast, expected);
        prop_assert_eq!(recent, in_full);
    }
}

/// The hand-written scan and serde's derived readers on one frame, as the one-pass read
/// uses them: each answer as (topic, snapshot or its error, body span). The scan may
/// decline (`None`) where serde answers, never the other way round.
type OnePass = (
    Option<String>,
    Option<(Result<ConversationSnapshot, ParseError>, Range<usize>)>,
);

fn one_pass_answer(envelope: OnePassEnvelope<'_>) -> OnePass {
    (
        envelope.topic_name.map(|topic| topic.as_str().to_owned()),
        envelope
            .body
            .map(|(body, span)| (body.into_snapshot("eventBody"), span)),
    )
}

fn scan_and_serde(text: &str, shape: BodyShape) -> (Option<OnePass>, Option<OnePass>) {
    let scanned = lean::scan::envelope(text, shape).map(|scanned| {
        one_pass_answer(OnePassEnvelope {
            topic_name: scanned.topic_name,
            body: scanned.body,
        })
    });
    (
        scanned,
        read_envelope_with_serde(text, shape).map(one_pass_answer),
    )
}

const SNAPSHOT_FIXTURES: [&str; 2] = [ALL_MEDIA, PER_PARTICIPANT];

/// More all-media snapshots: a call with its wrap-up, queue-side message snapshots.
const MORE_ALL_MEDIA: [&str; 3] = [
    include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/genesys/ws_event_queue_conversations_call_terminated.json"
    )),
    include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/genesys/ws_event_queue_conversations_message_connected.json"
    )),
    include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/genesys/ws_event_queue_conversations_message_disconnected.json"
    )),
];

#[test]
fn the_scan_reads_every_generated_and_fixture_frame_as_serde_does() {
    let corpus = crate::bench::corpus::generate(600, 9).unwrap();
    let frames = corpus.frames.iter().map(|frame| frame.text.clone()).chain(
        SNAPSHOT_FIXTURES
            .iter()
            .chain(&MORE_ALL_MEDIA)
            .map(|f| f.to_string()),
    );
    let mut read = 0;
    for text in frames {
        for shape in [BodyShape::AllMedia, BodyShape::PerParticipant] {
            let (scanned, by_serde) = scan_and_serde(&text, shape);
            // Real frames never need serde's help.
            let scanned = scanned.unwrap_or_else(|| panic!("declined: {text}"));
            assert_eq!(Some(&scanned), by_serde.as_ref(), "{text}");
            read += 1;
        }
    }
    assert!(read > 1_000);
}

/// A snapshot fixture with one value somewhere replaced by another of any type (the
/// typed members get the wrong type, a null, a number out of range, an escape).
fn retyped_frame() -> impl Strategy<Value = (String, BodyShape)> {
    let replacement = prop_oneof![
        Just(Value::Null),
        Just(Value::Bool(true)),
        Just(serde_json::json!(0)),
        Just(serde_json::json!(7)),
        Just(serde_json::json!(-3)),
        Just(serde_json::json!(1.5)),
        Just(serde_json::json!(4_294_967_296u64)),
        Just(serde_json::json!(u64::MAX)),
        Just(serde_json::json!(i64::MIN)),
        Just(serde_json::json!("x")),
        Just(serde_json::json!("é\n\"quoted\"\\")),
        Just(serde_json::json!("2025-03-04T09:00:00.900Z")),
        Just(serde_json::json!([])),
        Just(serde_json::json!([1, "a", null])),
        Just(serde_json::json!({})),
        Just(serde_json::json!({"id": "a\tb", "x": [{}]})),
    ];
    (0usize..2, any::<prop::sample::Index>(), replacement).prop_map(|(fixture, at, replacement)| {
        let mut frame: Value = serde_json::from_str(SNAPSHOT_FIXTURES[fixture]).unwrap();
        let mut places = Vec::new();
        every_place(&frame, &mut Vec::new(), &mut places);
        let place = &places[at.index(places.len())];
        let mut node = &mut frame;
        for step in place {
            node = match step {
                Step::Member(name) => &mut node[name.as_str()],
                Step::Element(index) => &mut node[*index],
            };
        }
        *node = replacement;
        let shape = if fixture == 0 {
            BodyShape::AllMedia
        } else {
            BodyShape::PerParticipant
        };
        (frame.to_string(), shape)
    })
}

#[derive(Clone)]
enum Step {
    Member(String),
    Element(usize),
}

fn every_place(node: &Value, path: &mut Vec<Step>, places: &mut Vec<Vec<Step>>) {
    places.push(path.clone());
    match node {
        Value::Object(members) => {
            for (name, value) in members {
                path.push(Step::Member(name.clone()));
                every_place(value, path, places);
                path.pop();
            }
        }
        Value::Array(elements) => {
            for (index, value) in elements.iter().enumerate() {
                path.push(Step::Element(index));
                every_place(value, path, places);
                path.pop();
            }
        }
        _ => {}
    }
}

fn assert_scan_agrees(text: &str, shape: BodyShape) -> Result<(), TestCaseError> {
    let (scanned, by_serde) = scan_and_serde(text, shape);
    if let Some(scanned) = scanned {
        prop_assert_eq!(Some(scanned), by_serde, "{}", text);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn where_the_scan_answers_it_answers_as_serde_on_retyped_frames(
        (text, shape) in retyped_frame()
    ) {
        assert_scan_agrees(&text, shape)?;
    }

    #[test]
    fn where_the_scan_answers_it_answers_as_serde_with_an_escaped_member_name(
        fixture in 0usize..2,
        at in any::<prop::sample::Index>(),
    ) {
        // Serde matches `"i\u0064"` to the field `id`; the scan must leave it to serde.
        let text = SNAPSHOT_FIXTURES[fixture];
        let names: Vec<usize> = text.match_indices("\":").map(|(end, _)| end).collect();
        let end = names[at.index(names.len())];
        let start = text[..end].rfind('"').unwrap() + 1;
        prop_assume!(start < end);
        let first = text.as_bytes()[start];
        let escaped = format!("{}\\u{:04x}{}", &text[..start], first, &text[start + 1..]);
        let shape = if fixture == 0 { BodyShape::AllMedia } else { BodyShape::PerParticipant };
        assert_scan_agrees(&escaped, shape)?;
    }

    #[test]
    fn where_the_scan_answers_it_answers_as_serde_on_mutated_frames(
        (text, _) in mutated_frame(),
        all_media in any::<bool>(),
    ) {
        let shape = if all_media { BodyShape::AllMedia } else { BodyShape::PerParticipant };
        assert_scan_agrees(&text, shape)?;
    }
}
