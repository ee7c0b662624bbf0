//! The parser against every sample frame and conversation body in `tests/fixtures/genesys`
//! (a copy of `shared/genesys/payloads`), and against broken variants of them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::conversation::{Conversation, Lifecycle, Transition};
use crate::model::{CommunicationState, MessageStatus};
use crate::stream::duplicates::RecentBodies;
use serde_json::json;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/genesys/",
            $name
        ))
    };
}

const CONVERSATION: &str = "bc806344-066c-4947-b770-9d25dee501a3";

fn snapshot_of(text: &str) -> (SnapshotTopic, ConversationSnapshot) {
    match classify(text).unwrap() {
        Classified::Snapshot { topic, snapshot } => (topic, snapshot),
        other => panic!("expected a snapshot, got {other:?}"),
    }
}

fn with_change(text: &str, change: impl FnOnce(&mut Value)) -> String {
    let mut value: Value = serde_json::from_str(text).unwrap();
    change(&mut value);
    value.to_string()
}

#[test]
fn heartbeat_pong_and_socket_closing_are_recognised() {
    assert_eq!(
        classify(fixture!("ws_heartbeat.json")).unwrap(),
        Classified::Heartbeat
    );
    assert_eq!(
        classify(fixture!("ws_pong.json")).unwrap(),
        Classified::Pong
    );
    assert_eq!(
        classify(fixture!("ws_socket_closing.json")).unwrap(),
        Classified::SocketClosing {
            message: Some("Socket is closing for maintenance; reconnect".to_owned())
        }
    );
}

#[test]
fn other_system_frames_keep_their_topic_and_reason() {
    match classify(fixture!("ws_system_no_longer_subscribed.json")).unwrap() {
        Classified::System { topic, body } => {
            assert_eq!(topic, "v2.system.no_longer_subscribed");
            assert_eq!(body.reason.as_deref(), Some("another_channel_subscribed"));
            assert_eq!(
                body.system_topic_type.as_deref(),
                Some("no_longer_subscribed")
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn websocket_protocol_replies_are_channel_replies() {
    match classify(fixture!("ws_subscribe_ack.json")).unwrap() {
        Classified::ChannelReply(reply) => {
            assert_eq!(reply.result.as_deref(), Some("200"));
            assert_eq!(reply.topics.len(), 2);
        }
        other => panic!("unexpected {other:?}"),
    }
    match classify(fixture!("ws_channel_gone_404.json")).unwrap() {
        Classified::ChannelReply(reply) => assert_eq!(reply.result.as_deref(), Some("404")),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn client_frames_are_not_server_frames() {
    // `{"message":"ping"}` and the subscribe request are what a client sends; receiving one
    // means something is wrong, and the error says which field is missing.
    for text in [
        fixture!("ws_client_ping.json"),
        fixture!("ws_client_subscribe_request.json"),
    ] {
        assert_eq!(
            classify(text).unwrap_err(),
            ParseError::MissingField {
                path: "topicName".to_owned()
            }
        );
    }
}

#[test]
fn user_topic_alerting_snapshot_has_every_participant_message_and_attachment() {
    let (topic, snapshot) = snapshot_of(fixture!(
        "ws_event_user_conversations_message_alerting.json"
    ));
    assert_eq!(
        topic.subject,
        TopicSubject::User("c1969995-565b-4c59-881c-83a921a85da9".to_owned())
    );
    assert_eq!(topic.shape, SnapshotShape::AllMedia);
    assert_eq!(snapshot.conversation_id.text().as_str(), CONVERSATION);
    assert_eq!(snapshot.participants.len(), 3);
    let customer = &snapshot.participants[0];
    assert_eq!(customer.communications.len(), 1);
    assert_eq!(
        customer.messages.len(),
        2,
        "both messages of the customer leg"
    );
    let with_media = &customer.messages[1];
    assert_eq!(
        with_media.id.text().as_str(),
        "f8161c17c59feab52d24b4dac2574443"
    );
    assert_eq!(with_media.media.len(), 1);
    let attachment = &with_media.media[0];
    assert_eq!(attachment.mime_type.as_deref(), Some("image/jpeg"));
    assert_eq!(attachment.size_bytes, Some(48213));
    assert_eq!(attachment.name.as_deref(), Some("receipt.jpg"));
    assert_eq!(
        snapshot.participants[2].communications[0].state,
        Some(CommunicationState::Alerting)
    );

    let mut conversation = Conversation::new(snapshot.conversation_id.clone());
    conversation.apply_snapshot(&snapshot).unwrap();
    let lifecycles: Vec<Lifecycle> = conversation
        .state
        .participants
        .values()
        .map(|p| p.lifecycle())
        .collect();
    // Participants are keyed by id: 578b… agent, d822… customer, fa8e… acd.
    assert_eq!(
        lifecycles,
        vec![Lifecycle::Joined, Lifecycle::Active, Lifecycle::Left]
    );
}

#[test]
fn queue_topic_connected_and_disconnected_snapshots_parse() {
    let (topic, connected) = snapshot_of(fixture!(
        "ws_event_queue_conversations_message_connected.json"
    ));
    assert_eq!(
        topic.subject,
        TopicSubject::Queue("ff1633b1-a1f1-4efb-abe7-1a0a9021dd32".to_owned())
    );
    let (_, disconnected) = snapshot_of(fixture!(
        "ws_event_queue_conversations_message_disconnected.json"
    ));
    let mut conversation = Conversation::new(connected.conversation_id.clone());
    conversation.apply_snapshot(&connected).unwrap();
    let outcome = conversation.apply_snapshot(&disconnected).unwrap();
    assert!(
        outcome.transitions.contains(&Transition::ConversationEnded),
        "{outcome:?}"
    );
    assert!(conversation.state.is_ended());
}

#[test]
fn terminated_voice_call_ends_with_wrapup_pending() {
    let (_, snapshot) = snapshot_of(fixture!(
        "ws_event_queue_conversations_call_terminated.json"
    ));
    assert_eq!(snapshot.participants.len(), 4);
    let mut conversation = Conversation::new(snapshot.conversation_id.clone());
    conversation.apply_snapshot(&snapshot).unwrap();
    assert!(conversation.state.is_ended());
    // The agent's after-call work is pending and no wrap-up is recorded yet.
    assert!(!conversation.state.is_finished());
}

#[test]
fn messages_topic_reads_message_ids_from_message_objects() {
    let (topic, snapshot) =
        snapshot_of(fixture!("ws_event_user_conversations_messages_topic.json"));
    assert_eq!(topic.shape, SnapshotShape::Messages);
    let customer = &snapshot.participants[0];
    assert_eq!(customer.state, Some(CommunicationState::Connected));
    let ids: Vec<String> = customer.messages.iter().map(|m| m.id.to_string()).collect();
    assert_eq!(
        ids,
        [
            "b38d568b4350476983c4f34f7923f0a8",
            "fd715b6eb448b2cfdf42e27d01eb08fe"
        ]
    );
    assert_eq!(customer.messages[1].status, Some(MessageStatus::Read));
    assert_eq!(
        snapshot.participants[1]
            .user_id
            .as_ref()
            .map(|id| id.text().to_string()),
        Some("c1969995-565b-4c59-881c-83a921a85da9".to_owned())
    );
}

#[test]
fn detail_events_carry_their_kind() {
    let cases = [
        (
            fixture!("ws_event_detail_customer_start.json"),
            "customer.start",
        ),
        (
            fixture!("ws_event_detail_customer_end.json"),
            "customer.end",
        ),
        (fixture!("ws_event_detail_acd_start.json"), "acd.start"),
        (fixture!("ws_event_detail_acd_end.json"), "acd.end"),
        (fixture!("ws_event_detail_user_start.json"), "user.start"),
        (fixture!("ws_event_detail_user_end.json"), "user.end"),
        (fixture!("ws_event_detail_acw.json"), "acw"),
    ];
    for (text, kind) in cases {
        match classify(text).unwrap() {
            Classified::Detail(event) => {
                assert_eq!(event.kind, kind);
                assert_eq!(event.conversation_id.text().as_str(), CONVERSATION);
                assert!(event.body.event_time.is_some());
            }
            other => panic!("{kind}: unexpected {other:?}"),
        }
    }
}

#[test]
fn transcription_segments_have_side_text_times_and_confidence() {
    let text = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/transcription_event.json"
    ));
    let Classified::Transcription(event) = classify(text).unwrap() else {
        panic!("expected transcription");
    };
    assert_eq!(event.segments.len(), 2);
    let first = &event.segments[0];
    assert!(first.is_final);
    assert_eq!(first.speaker, crate::model::TranscriptChannel::External);
    assert_eq!(first.text, "hi I was charged twice for my order");
    assert_eq!(first.start_ms, Some(1741101601118 + 2040));
    assert_eq!(first.end_ms, Some(1741101601118 + 2040 + 3110));
    assert_eq!(first.confidence, Some(0.91));
    assert!(!event.segments[1].is_final);
}

#[test]
fn rest_conversation_bodies_parse_with_both_shapes() {
    let value: Value =
        serde_json::from_str(fixture!("rest_get_conversation_response.json")).unwrap();
    let snapshot = read_conversation_body(value, "").unwrap();
    assert_eq!(snapshot.conversation_id.text().as_str(), CONVERSATION);
    assert!(snapshot.start_time.is_some());
    let value: Value =
        serde_json::from_str(fixture!("rest_get_message_conversation_response.json")).unwrap();
    let snapshot = read_message_conversation_body(value, "").unwrap();
    assert_eq!(snapshot.participants[0].messages.len(), 2);
}

#[test]
fn every_event_fixture_classifies_without_error() {
    let frames = [
        fixture!("ws_heartbeat.json"),
        fixture!("ws_pong.json"),
        fixture!("ws_socket_closing.json"),
        fixture!("ws_system_no_longer_subscribed.json"),
        fixture!("ws_subscribe_ack.json"),
        fixture!("ws_channel_gone_404.json"),
        fixture!("ws_event_user_conversations_message_alerting.json"),
        fixture!("ws_event_queue_conversations_message_connected.json"),
        fixture!("ws_event_queue_conversations_message_disconnected.json"),
        fixture!("ws_event_queue_conversations_call_terminated.json"),
        fixture!("ws_event_user_conversations_messages_topic.json"),
    ];
    for text in frames {
        classify(text).unwrap();
    }
}

#[test]
fn a_malformed_time_names_its_path() {
    let text = with_change(
        fixture!("ws_event_user_conversations_message_alerting.json"),
        |v| {
            v["eventBody"]["participants"][0]["messages"][0]["messages"][1]["messageTime"] =
                json("yesterday");
        },
    );
    let error = classify(&text).unwrap_err();
    assert_eq!(
        error.path(),
        Some("eventBody.participants[0].messages[0].messages[1].messageTime")
    );
    assert!(matches!(error, ParseError::Malformed { .. }));
}

#[test]
fn a_missing_participant_id_names_its_path() {
    let text = with_change(
        fixture!("ws_event_queue_conversations_message_connected.json"),
        |v| {
            v["eventBody"]["participants"][1]
                .as_object_mut()
                .unwrap()
                .remove("id");
        },
    );
    assert_eq!(
        classify(&text).unwrap_err(),
        ParseError::MissingField {
            path: "eventBody.participants[1].id".to_owned()
        }
    );
}

#[test]
fn a_missing_message_id_and_attachment_url_name_their_paths() {
    let text = with_change(
        fixture!("ws_event_user_conversations_messages_topic.json"),
        |v| {
            v["eventBody"]["participants"][0]["messages"][1]["message"] = json!({});
        },
    );
    assert_eq!(
        classify(&text).unwrap_err().path(),
        Some("eventBody.participants[0].messages[1].message.id")
    );
    let text = with_change(
        fixture!("ws_event_user_conversations_message_alerting.json"),
        |v| {
            v["eventBody"]["participants"][0]["messages"][0]["messages"][1]["media"][0]
                .as_object_mut()
                .unwrap()
                .remove("url");
        },
    );
    assert_eq!(
        classify(&text).unwrap_err().path(),
        Some("eventBody.participants[0].messages[0].messages[1].media[0].url")
    );
}

#[test]
fn wrong_types_name_their_paths() {
    let text = with_change(
        fixture!("ws_event_queue_conversations_call_terminated.json"),
        |v| {
            v["eventBody"]["participants"] = json!({"not": "a list"});
        },
    );
    assert_eq!(
        classify(&text).unwrap_err().path(),
        Some("eventBody.participants")
    );
    let text = with_change(
        fixture!("ws_event_user_conversations_message_alerting.json"),
        |v| {
            v["eventBody"]["participants"][0]["messages"][0]["messages"][0]
                ["messageSegmentCount"] = json!(-3);
        },
    );
    assert_eq!(
        classify(&text).unwrap_err().path(),
        Some("eventBody.participants[0].messages[0].messages[0].messageSegmentCount")
    );
    let text = with_change(fixture!("ws_heartbeat.json"), |v| v["topicName"] = json!(7));
    assert_eq!(classify(&text).unwrap_err().path(), Some("topicName"));
}

#[test]
fn unknown_fields_and_enum_values_are_kept_not_rejected() {
    let text = with_change(
        fixture!("ws_event_user_conversations_message_alerting.json"),
        |v| {
            v["eventBody"]["brandNewField"] = json!({"x": 1});
            v["eventBody"]["participants"][2]["messages"][0]["state"] = json("hovering");
            v["eventBody"]["participants"][0]["messages"][0]["messages"][0]["messageStatus"] =
                json("teleported");
        },
    );
    let (_, snapshot) = snapshot_of(&text);
    assert_eq!(
        snapshot.participants[2].communications[0].state,
        Some(CommunicationState::Unknown("hovering".to_owned()))
    );
    assert_eq!(
        snapshot.participants[0].messages[0].status,
        Some(MessageStatus::Unknown("teleported".to_owned()))
    );
}

#[test]
fn not_json_and_not_utf8_are_typed_errors() {
    assert!(matches!(
        classify("{\"topicName\":"),
        Err(ParseError::NotJson { .. })
    ));
    assert!(matches!(
        classify("[1,2]"),
        Err(ParseError::NotAnObject { .. })
    ));
    assert!(matches!(
        classify_bytes(&[0x7b, 0xff, 0x7d]),
        Err(ParseError::NotUtf8 { offset: 1 })
    ));
}

#[test]
fn topics_map_to_their_subject_and_shape() {
    let topic = snapshot_topic("v2.routing.queues.q1.conversations.calls").unwrap();
    assert_eq!(topic.subject, TopicSubject::Queue("q1".to_owned()));
    assert_eq!(topic.shape, SnapshotShape::Medium("calls".to_owned()));
    assert!(snapshot_topic("v2.users.u1.presence").is_none());
    assert!(snapshot_topic("v2.users.u1.conversations.messages.extra").is_none());
    let frame = r#"{"topicName":"v2.users.u1.presence","eventBody":{}}"#;
    assert_eq!(
        classify(frame).unwrap(),
        Classified::UnknownTopic {
            topic: "v2.users.u1.presence".to_owned()
        }
    );
}

/// The borrowed parts a duplicate's check reads give every topic the shape (or the
/// refusal) of the owned topic.
#[test]
fn a_topic_s_borrowed_parts_agree_with_the_owned_topic() {
    for topic in [
        "v2.routing.queues.q1.conversations",
        "v2.routing.queues.q1.conversations.messages",
        "v2.routing.queues.q1.conversations.calls",
        "v2.users.u1.conversations",
        "v2.users.u1.conversations.emails",
        "v2.users.u1.conversations.",
        "v2.users.u1.conversations.messages.extra",
        "v2.users.u1.presence",
        "v2.users.u1",
        "v2.users..conversations",
        "v2.routing.queues.q1.conversationsx",
        "v2.detail.events.conversation.c1.acd.start",
        "",
    ] {
        let owned = snapshot_topic(topic);
        let parts = snapshot_topic_parts(topic);
        assert_eq!(
            parts.as_ref().map(SnapshotTopicParts::body_shape),
            owned.as_ref().map(|owned| fresh::body_shape(&owned.shape)),
            "{topic}"
        );
        if let (Some(parts), Some(owned)) = (parts, owned) {
            let subject = match owned.subject {
                TopicSubject::User(id) => (true, id),
                TopicSubject::Queue(id) => (false, id),
            };
            assert_eq!((parts.user, parts.id.to_owned()), subject, "{topic}");
        }
    }
}

fn json(text: &str) -> Value {
    Value::String(text.to_owned())
}

/// The hand-written read (`parse::scan`) and the owned read of one snapshot frame; the
/// scan must answer on its own, without leaving the body to the owned read.
fn both_reads(text: &str) -> (ConversationSnapshot, ConversationSnapshot) {
    let envelope: RawEnvelope<'_> = serde_json::from_str(text).unwrap();
    let topic = snapshot_topic(envelope.topic_name.as_deref().unwrap()).unwrap();
    let body = envelope.event_body.unwrap().get();
    let scanned = scan::body(body, fresh::body_shape(&topic.shape));
    let owned = read_snapshot_owned(Body::Raw(body), &topic.shape);
    (scanned.expect(text), owned.unwrap())
}

#[test]
fn the_scan_gives_the_same_snapshot_as_the_owned_model() {
    let fixtures = [
        fixture!("ws_event_user_conversations_message_alerting.json"),
        fixture!("ws_event_queue_conversations_message_connected.json"),
        fixture!("ws_event_queue_conversations_message_disconnected.json"),
        fixture!("ws_event_queue_conversations_call_terminated.json"),
        fixture!("ws_event_user_conversations_messages_topic.json"),
    ];
    let mut frames: Vec<String> = fixtures.iter().map(|text| text.to_string()).collect();
    // What the scan handles its own way: escaped text (not borrowable), attributes that
    // are not text or are null, errorInfo, null lists, wrap-ups (a negative duration),
    // media arrays out of `Medium`'s order, escaped member names.
    frames.push(with_change(fixtures[0], |v| {
        let participant = &mut v["eventBody"]["participants"][0];
        participant["name"] = json("Dana \"DJ\" Customer\\n\u{e9}");
        participant["attributes"] = json!({
            "n": 7, "b": true, "gone": null, "obj": {"a": [1, 2.5]}, "text": "x\ty",
            "dup": "first"
        });
        participant["wrapup"] = json!({
            "code": "c-1", "name": "Sold", "notes": "line\nbreak", "tags": ["t"],
            "durationSeconds": 12, "endTime": "2025-03-04T14:09:00.000Z"
        });
        participant["messages"][0]["errorInfo"] = json!({"code": "x"});
        participant["messages"][0]["afterCallWork"] = json!({"state": "pending"});
        participant["messages"][0]["messagesTranscriptUri"] = json("https://t/1");
        participant["calls"] = Value::Null;
        v["eventBody"]["participants"][1]["messages"][0]["errorInfo"] = Value::Null;
    }));
    frames.push(with_change(fixtures[0], |v| {
        let participant = &mut v["eventBody"]["participants"][0];
        participant["wrapup"] = json!({"code": "c", "durationSeconds": -4});
        let messages = participant["messages"][0].clone();
        let mut chat = messages.clone();
        chat["id"] = json("chat-1");
        chat["messagesTranscriptUri"] = json("https://t/chat");
        let mut call = messages.clone();
        call["id"] = json("call-1");
        call["messages"] = json!([]);
        // Written before `calls` (keys sorted), taken after them.
        let mut callback = messages;
        callback["id"] = json("callback-1");
        callback["messages"][0]["messageId"] = json("m-callback");
        participant["chats"] = json!([chat]);
        participant["calls"] = json!([call]);
        participant["callbacks"] = json!([callback]);
        participant["emails"] = json!([{"id": "email-1", "state": "connected"}]);
    }));
    frames.push(
        fixtures[0]
            .replacen("\"participants\"", "\"p\\u0061rticipants\"", 1)
            .replace("\"messageStatus\"", "\"message\\u0053tatus\""),
    );
    frames.push(with_change(fixtures[4], |v| {
        let participant = &mut v["eventBody"]["participants"][0];
        participant["errorInfo"] = json!({"code": "x"});
        participant["user"] = json!({"id": "u-1", "name": "n"});
        participant["queue"] = json!({"id": "q\u{2603}"});
        participant["wrapupSkipped"] = json!(true);
        participant["attributes"] = Value::Null;
    }));
    let corpus = crate::bench::corpus::generate(400, 7).unwrap();
    frames.extend(corpus.frames.into_iter().map(|frame| frame.text));
    let mut compared = 0;
    for text in &frames {
        if !matches!(classify(text), Ok(Classified::Snapshot { .. })) {
            continue;
        }
        let (scanned, owned) = both_reads(text);
        assert_eq!(scanned, owned, "{text}");
        compared += 1;
    }
    assert!(compared > 300, "{compared} snapshots compared");
}

#[test]
fn a_body_the_scan_declines_is_named_by_the_owned_read() {
    // A participant that is not an object is declined by the scan; the owned read, with
    // path tracking, says where.
    let text = with_change(
        fixture!("ws_event_queue_conversations_message_connected.json"),
        |v| v["eventBody"]["participants"][1] = json!(7),
    );
    assert_eq!(
        classify(&text).unwrap_err().path(),
        Some("eventBody.participants[1]")
    );
    // A wrong type in a field only the owned model reads: still named, as before.
    let text = with_change(
        fixture!("ws_event_queue_conversations_message_connected.json"),
        |v| v["eventBody"]["participants"][0]["attributes"] = json!(["a"]),
    );
    assert_eq!(
        classify(&text).unwrap_err().path(),
        Some("eventBody.participants[0].attributes")
    );
}

/// `fixture` with another envelope: its body on `topic`, members in the given layout.
fn envelope_of(fixture: &str, topic: &str, layout: &str) -> String {
    let body = serde_json::from_str::<Value>(fixture).unwrap()["eventBody"].to_string();
    layout.replace("TOPIC", topic).replace("BODY", &body)
}

#[test]
fn a_byte_identical_body_on_another_topic_is_a_duplicate_and_not_read_again() {
    let fixture = fixture!("ws_event_user_conversations_message_alerting.json");
    let user = "v2.users.c1969995-565b-4c59-881c-83a921a85da9.conversations";
    let queue = "v2.routing.queues.ff1633b1-a1f1-4efb-abe7-1a0a9021dd32.conversations";
    let mut recent = RecentBodies::default();
    let first = envelope_of(
        fixture,
        user,
        r#"{"topicName":"TOPIC","version":"2","eventBody":BODY,"metadata":{"CorrelationId":"a"}}"#,
    );
    let Ok(Fresh::Frame(Classified::Snapshot { snapshot, .. })) =
        classify_bytes_fresh(first.as_bytes(), &mut recent)
    else {
        panic!("the first copy is read");
    };
    assert_eq!(snapshot.conversation_id.text().as_str(), CONVERSATION);
    // The same body on the queue topic, in every envelope layout: topic first or last,
    // other metadata, no metadata, whitespace (the full path finds it then).
    for layout in [
        r#"{"topicName":"TOPIC","version":"2","eventBody":BODY,"metadata":{"CorrelationId":"b"}}"#,
        r#"{"eventBody":BODY,"metadata":{"CorrelationId":"c"},"topicName":"TOPIC","version":"2"}"#,
        r#"{"version":"2","topicName":"TOPIC","eventBody":BODY}"#,
        r#"{ "topicName": "TOPIC", "eventBody": BODY }"#,
    ] {
        let copy = envelope_of(fixture, queue, layout);
        assert_eq!(
            classify_bytes_fresh(copy.as_bytes(), &mut recent),
            Ok(Fresh::Duplicate),
            "{layout}"
        );
    }
    // The same bytes read with the other shape are read (here: they do not fit it).
    let messages = envelope_of(
        fixture,
        &format!("{queue}.messages"),
        r#"{"topicName":"TOPIC","eventBody":BODY}"#,
    );
    assert_eq!(
        classify_bytes_fresh(messages.as_bytes(), &mut recent),
        classify(&messages).map(Fresh::Frame)
    );
    // Another body (one byte apart) is read.
    let changed = first.replace("Dana Customer", "Dana CustomeR");
    assert!(matches!(
        classify_bytes_fresh(changed.as_bytes(), &mut recent),
        Ok(Fresh::Frame(Classified::Snapshot { .. }))
    ));
}

#[test]
fn a_copy_in_a_broken_envelope_gets_the_same_error_as_without_the_filter() {
    let fixture = fixture!("ws_event_queue_conversations_message_connected.json");
    let queue = "v2.routing.queues.ff1633b1-a1f1-4efb-abe7-1a0a9021dd32.conversations";
    let mut recent = RecentBodies::default();
    let first = envelope_of(fixture, queue, r#"{"topicName":"TOPIC","eventBody":BODY}"#);
    classify_bytes_fresh(first.as_bytes(), &mut recent).unwrap();
    for layout in [
        r#"{"topicName":"TOPIC","eventBody":BODY,}"#,
        r#"{"topicName":"TOPIC","eventBody":BODY} x"#,
        r#"{"topicName":"TOPIC","eventBody":BODY,"topicName":"TOPIC"}"#,
        r#"{"topicName":"TOPIC","eventBody":BODY,"eventBody":{}}"#,
        r#"{"topicName":"TOPIC","eventBody":BODY,"result":1,"result":2}"#,
        r#"{"topicName":"TOPIC","eventBody":BODY,"metadata":{"CorrelationId":}}"#,
        r#"{"topicName":"TOPIC","eventBody":BODY"#,
        r#"{"eventBody":BODY,"topicName":7}"#,
    ] {
        let copy = envelope_of(fixture, queue, layout);
        let expected = classify(&copy).unwrap_err();
        assert_eq!(
            classify_bytes_fresh(copy.as_bytes(), &mut recent),
            Err(expected),
            "{layout}"
        );
    }
}
