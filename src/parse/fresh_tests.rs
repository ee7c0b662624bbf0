//! The fast paths of `classify_bytes_fresh` against its full path: the same answer, the
//! same bodies remembered, on generated corpora, every envelope layout and mutated frames.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde_json::Value;

use std::borrow::Cow;
use std::ops::Range;

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

/// Each `,`, `}` and `]` of a frame (inside strings too, where it is only text) replaced by
/// each of the others and by `;`: the full path's answer every time. A member or element
/// followed by anything but a comma or its own container's closing bracket is not JSON,
/// and the scan must not take it.
#[test]
fn every_separator_and_bracket_swapped_gets_the_full_path_s_answer() {
    for fixture in [ALL_MEDIA, PER_PARTICIPANT] {
        let frame = serde_json::from_str::<Value>(fixture).unwrap().to_string();
        let mut refused = 0;
        for (at, byte) in frame.bytes().enumerate() {
            if !matches!(byte, b',' | b'}' | b']') {
                continue;
            }
            for other in [",", "}", "]", ";"] {
                if other.as_bytes()[0] == byte {
                    continue;
                }
                let mut text = frame.clone();
                text.replace_range(at..at + 1, other);
                if assert_same_as_in_full(&text, &mut RecentBodies::default()).is_err() {
                    refused += 1;
                }
            }
        }
        assert!(refused > 100, "{refused}");
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

proptest! {
    // Haystacks of a few letters, so the needle and near misses of it are common.
    #[test]
    fn the_last_occurrence_is_found_as_str_rfind_finds_it(
        haystack in "[\"ab]{0,40}",
        needle in "[\"ab]{1,4}",
    ) {
        prop_assert_eq!(
            last_at(haystack.as_bytes(), needle.as_bytes()),
            haystack.rfind(needle.as_str())
        );
    }
}

/// One read of a frame with a given body shape: its topic, and its body's snapshot (or
/// the error reading it) with where the body's text is.
type OnePass = (
    Option<String>,
    Option<(Result<ConversationSnapshot, ParseError>, Range<usize>)>,
);

/// The scan's read of a frame; `None` where it declines.
fn scanned(text: &str, shape: BodyShape) -> Option<OnePass> {
    scan::envelope(text, shape).map(|envelope| {
        (
            envelope.topic_name.map(Cow::into_owned),
            envelope.body.map(|(snapshot, span)| (Ok(snapshot), span)),
        )
    })
}

/// The full path's read of the same frame: the envelope with its body as raw text (its
/// span where the raw text sits), the body read by the owned model with path tracking.
fn read_in_full(text: &str, shape: BodyShape) -> Option<OnePass> {
    let envelope = read_envelope(text).ok()?;
    let shape = match shape {
        BodyShape::AllMedia => SnapshotShape::AllMedia,
        BodyShape::PerParticipant => SnapshotShape::Messages,
    };
    let body = envelope.event_body.map(|raw| {
        let start = raw.get().as_ptr() as usize - text.as_ptr() as usize;
        let snapshot =
            super::super::read_snapshot_owned(super::super::Body::Raw(raw.get()), &shape);
        (snapshot, start..start + raw.get().len())
    });
    Some((envelope.topic_name, body))
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
fn the_scan_reads_every_generated_and_fixture_frame_as_the_full_path_does() {
    let corpus = crate::bench::corpus::generate(600, 9).unwrap();
    let frames = corpus.frames.iter().map(|frame| frame.text.clone()).chain(
        SNAPSHOT_FIXTURES
            .iter()
            .chain(&MORE_ALL_MEDIA)
            .map(|f| f.to_string()),
    );
    let mut read = 0;
    for text in frames {
        let topic: Value = serde_json::from_str::<Value>(&text).unwrap()["topicName"].clone();
        let own = body_shape(&snapshot_topic(topic.as_str().unwrap()).unwrap().shape);
        // In its own shape a real frame is never left to the full path.
        let answer = scanned(&text, own).unwrap_or_else(|| panic!("declined: {text}"));
        assert_eq!(Some(answer), read_in_full(&text, own), "{text}");
        read += 1;
        // In the other shape the scan may decline (an all-media participant's `messages`
        // are communications, without message ids); where it answers, it agrees.
        let other = match own {
            BodyShape::AllMedia => BodyShape::PerParticipant,
            BodyShape::PerParticipant => BodyShape::AllMedia,
        };
        if let Some(answer) = scanned(&text, other) {
            assert_eq!(Some(answer), read_in_full(&text, other), "{text}");
        }
    }
    assert!(read > 500);
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

/// Where the scan answers, the full path reads the envelope too and gives the same topic
/// and span, and the same snapshot unless the owned model refuses a member the scan does
/// not read (it is lenient there, as the lean read before it). Returns whether the scan
/// answered.
fn assert_scan_agrees(text: &str, shape: BodyShape) -> Result<bool, TestCaseError> {
    let Some((topic, body)) = scanned(text, shape) else {
        return Ok(false);
    };
    let in_full = read_in_full(text, shape);
    prop_assert!(in_full.is_some(), "the envelope reads in full: {}", text);
    let (full_topic, full_body) = in_full.unwrap();
    prop_assert_eq!(topic, full_topic, "{}", text);
    match (body, full_body) {
        (Some((snapshot, span)), Some((full_snapshot, full_span))) => {
            prop_assert_eq!(span, full_span, "{}", text);
            if let Ok(full_snapshot) = full_snapshot {
                prop_assert_eq!(snapshot, Ok(full_snapshot), "{}", text);
            }
        }
        (body, full_body) => prop_assert_eq!(body.is_some(), full_body.is_some(), "{}", text),
    }
    Ok(true)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn where_the_scan_answers_it_answers_as_the_full_path_on_retyped_frames(
        (text, shape) in retyped_frame()
    ) {
        assert_scan_agrees(&text, shape)?;
    }

    #[test]
    fn where_the_scan_answers_it_answers_as_the_full_path_with_an_escaped_member_name(
        fixture in 0usize..2,
        at in any::<prop::sample::Index>(),
    ) {
        // Serde matches `"i\u0064"` to the field `id`, and so must the scan.
        let text = SNAPSHOT_FIXTURES[fixture];
        let names: Vec<usize> = text.match_indices("\":").map(|(end, _)| end).collect();
        let end = names[at.index(names.len())];
        let start = text[..end].rfind('"').unwrap() + 1;
        prop_assume!(start < end);
        let first = text.as_bytes()[start];
        let escaped = format!("{}\\u{:04x}{}", &text[..start], first, &text[start + 1..]);
        let shape = if fixture == 0 { BodyShape::AllMedia } else { BodyShape::PerParticipant };
        // Escaped names are unescaped and matched: the scan answers.
        prop_assert!(assert_scan_agrees(&escaped, shape)?, "declined: {}", escaped);
    }

    #[test]
    fn where_the_scan_answers_it_answers_as_the_full_path_on_mutated_frames(
        (text, _) in mutated_frame(),
        all_media in any::<bool>(),
    ) {
        let shape = if all_media { BodyShape::AllMedia } else { BodyShape::PerParticipant };
        assert_scan_agrees(&text, shape)?;
    }
}
