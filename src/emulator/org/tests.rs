//! Unit tests of the emulated org with synthetic time: the routing lifecycle by ticks,
//! snapshots read by Convoy's own parser and joined up to the ground truth, receipts,
//! optimistic concurrency, REST errors, and analytics computed from what ran.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{json, Value};

use super::*;
use crate::conversation::Conversation;
use crate::emulator::envelope;
use crate::ids::{ConversationId, MessageId, ParticipantId};
use crate::parse::{classify_value, Classified};

fn t(ms: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 4, 14, 0, 0).unwrap() + Duration::milliseconds(ms)
}

fn org() -> Org {
    Org::new(OrgOptions::default(), t(0))
}

fn strict_org() -> Org {
    Org::new(
        OrgOptions {
            strict_if_match: true,
            ..OrgOptions::default()
        },
        t(0),
    )
}

fn fast(outcome: &str) -> Value {
    json!({
        "convoy.sim.answerAfterMs": "1000",
        "convoy.sim.replyAfterMs": "1000",
        "convoy.sim.agentReplies": "2",
        "convoy.sim.wrapupAfterMs": "1000",
        "convoy.sim.outcome": outcome,
    })
}

fn inbound_body(sender: &str, text: &str, metadata: Value) -> Value {
    json!({
        "channel": {
            "messageId": format!("ext-{sender}-{text}"),
            "from": { "id": sender, "idType": "Email", "nickname": "Dana" },
            "time": "2025-03-04T14:05:12.301Z",
        },
        "text": text,
        "metadata": metadata,
    })
}

/// Sends an inbound open message; returns (conversation id, message id, events).
fn inbound(
    org: &mut Org,
    queue: usize,
    sender: &str,
    metadata: Value,
    now: DateTime<Utc>,
) -> (String, String, Vec<TopicEvent>) {
    let integration = org.integration_ids()[queue].clone();
    let applied = org
        .open_inbound_message(
            &integration,
            &inbound_body(sender, "hello", metadata),
            true,
            now,
        )
        .unwrap();
    (
        applied.body["conversationId"].as_str().unwrap().to_owned(),
        applied.body["id"].as_str().unwrap().to_owned(),
        applied.events,
    )
}

/// Ticks every `step` ms from `from` to `to` (inclusive), collecting events.
fn run(org: &mut Org, from: i64, to: i64, step: i64) -> Vec<TopicEvent> {
    let mut events = Vec::new();
    let mut now = from;
    while now <= to {
        events.extend(org.tick(t(now)));
        now += step;
    }
    events
}

fn snapshot_of(event: &TopicEvent) -> crate::conversation::ConversationSnapshot {
    match classify_value(envelope(event, "x")).unwrap() {
        Classified::Snapshot { snapshot, .. } => snapshot,
        other => panic!("{} did not classify as a snapshot: {other:?}", event.topic),
    }
}

fn truth_of(org: &Org, id: &str) -> TruthConversation {
    org.truth()
        .conversations
        .into_iter()
        .find(|c| c.id == id)
        .unwrap()
}

fn participant<'a>(truth: &'a TruthConversation, purpose: &str) -> Vec<&'a TruthParticipant> {
    truth
        .participants
        .iter()
        .filter(|p| p.purpose == purpose)
        .collect()
}

/// Joins every event with Convoy's own state machine and checks it reaches the truth.
fn assert_join_reaches_truth(org: &Org, events: &[TopicEvent]) {
    let mut joined: BTreeMap<String, Conversation> = BTreeMap::new();
    // Real-time transcription is not a snapshot (tested on its own).
    for event in events
        .iter()
        .filter(|e| !e.topic.ends_with(".transcription"))
    {
        let snapshot = snapshot_of(event);
        let id = snapshot.conversation_id.to_string();
        joined
            .entry(id.clone())
            .or_insert_with(|| Conversation::new(ConversationId::from(id.as_str())))
            .apply_snapshot(&snapshot)
            .unwrap();
    }
    let truth = org.truth();
    assert_eq!(joined.len(), truth.conversations.len());
    for expected in &truth.conversations {
        let state = &joined[&expected.id].state;
        assert_eq!(state.is_ended(), expected.ended, "ended of {}", expected.id);
        assert_eq!(state.participants.len(), expected.participants.len());
        for p in &expected.participants {
            let record = &state.participants[&ParticipantId::from(p.id.as_str())];
            assert_eq!(
                record.lifecycle().as_str(),
                p.lifecycle,
                "participant {}",
                p.id
            );
            assert_eq!(
                record.attributes,
                p.attributes.clone().into_iter().collect(),
                "attributes of {}",
                p.id
            );
            assert_eq!(record.recorded_wrapup().is_some(), p.wrapup.is_some());
            assert_eq!(record.user_id().map(|id| id.to_string()), p.user_id);
        }
        assert_eq!(state.messages.len(), expected.messages.len());
        for m in &expected.messages {
            let record = &state.messages[&MessageId::from(m.id.as_str())];
            assert_eq!(
                record.status().map(|s| s.as_str().to_owned()),
                Some(m.status.clone()),
                "status of {}",
                m.id
            );
            assert_eq!(record.participant_id.text().as_str(), m.participant_id);
            assert_eq!(record.media.len(), m.media.len());
        }
    }
}

#[test]
fn a_message_conversation_goes_through_the_whole_routing_lifecycle_by_ticks() {
    let mut org = org();
    let (id, _, created) = inbound(&mut org, 0, "dana@example.com", fast("answered"), t(0));
    // Queue topic, its .messages variant; no agent yet.
    let topics: Vec<&str> = created.iter().map(|e| e.topic.as_str()).collect();
    let queue = &org.queue_ids()[0];
    assert_eq!(
        topics,
        vec![
            format!("v2.routing.queues.{queue}.conversations"),
            format!("v2.routing.queues.{queue}.conversations.messages"),
        ]
    );
    let truth = truth_of(&org, &id);
    assert_eq!(participant(&truth, "customer")[0].state, "connected");
    assert_eq!(participant(&truth, "acd")[0].state, "connected");

    assert!(org.tick(t(499)).is_empty());
    let offered = org.tick(t(500));
    assert!(!offered.is_empty());
    let truth = truth_of(&org, &id);
    let agent = participant(&truth, "agent")[0].clone();
    assert_eq!(agent.state, "alerting");
    assert_eq!(participant(&truth, "acd")[0].state, "disconnected");
    let user = agent.user_id.clone().unwrap();
    assert!(offered
        .iter()
        .any(|e| e.topic == format!("v2.users.{user}.conversations.messages")));

    org.tick(t(1000));
    assert_eq!(
        participant(&truth_of(&org, &id), "agent")[0].state,
        "connected"
    );
    org.tick(t(2000));
    org.tick(t(3000));
    let truth = truth_of(&org, &id);
    let replies: Vec<&TruthMessage> = truth
        .messages
        .iter()
        .filter(|m| m.direction == "outbound")
        .collect();
    assert_eq!(replies.len(), 2);
    assert!(replies
        .iter()
        .all(|m| m.status == "sent" && m.participant_id == agent.id));
    assert!(!truth.ended);

    org.tick(t(3500));
    let truth = truth_of(&org, &id);
    assert!(truth.ended);
    assert_eq!(participant(&truth, "customer")[0].state, "disconnected");
    assert!(participant(&truth, "agent")[0].wrapup.is_none());
    let body = org.get_conversation(&id).unwrap().body;
    let acw = body.participants[2].messages[0]
        .after_call_work
        .clone()
        .unwrap();
    assert_eq!(acw.state, Some(crate::model::AfterCallWorkState::Pending));

    org.tick(t(4000));
    let truth = truth_of(&org, &id);
    let wrapup = participant(&truth, "agent")[0].wrapup.clone().unwrap();
    assert_eq!(wrapup.name.as_deref(), Some("Resolved"));
    assert!(org.tick(t(10_000)).is_empty(), "nothing left to do");
}

#[test]
fn every_snapshot_parses_and_the_join_reaches_the_truth() {
    let mut org = org();
    let mut events = Vec::new();
    let (answered, _, e) = inbound(&mut org, 0, "a@example.com", fast("answered"), t(0));
    events.extend(e);
    let (_, _, e) = inbound(&mut org, 1, "b@example.com", fast("abandon"), t(10));
    events.extend(e);
    let (_, _, e) = inbound(&mut org, 0, "c@example.com", fast("transfer"), t(20));
    events.extend(e);
    // An attachment on the running conversation.
    let integration = org.integration_ids()[0].clone();
    let attachment = json!({
        "channel": { "from": { "id": "a@example.com", "idType": "Email" }, "time": "2025-03-04T14:05:40.112Z" },
        "content": [{ "attachment": { "mediaType": "Image", "url": "https://files.example/label.jpg", "mime": "image/jpeg", "filename": "label.jpg" } }],
    });
    events.extend(
        org.open_inbound_message(&integration, &attachment, false, t(30))
            .unwrap()
            .events,
    );
    let voice = org
        .create_voice_conversation(&json!({ "queueId": org.queue_ids()[1], "answer_after_ms": 1000, "reply_after_ms": 1000, "wrapup_after_ms": 1000 }), t(40))
        .unwrap();
    events.extend(voice.events);
    let agentless = org
        .send_agentless(
            &json!({ "fromAddress": integration, "toAddress": "z@example.com", "toAddressMessengerType": "open", "textBody": "Your refund is on its way" }),
            t(50),
        )
        .unwrap();
    events.extend(agentless.events);
    events.extend(run(&mut org, 0, 2500, 100));
    // Receipts for the first reply, an attribute write, then everything finishes.
    let truth = truth_of(&org, &answered);
    let reply = truth
        .messages
        .iter()
        .find(|m| m.direction == "outbound")
        .unwrap();
    for status in ["Delivered", "Read"] {
        let receipt = json!({ "id": reply.id, "channel": { "to": { "id": "a@example.com" }, "time": "2025-03-04T14:06:01.900Z" }, "status": status });
        events.extend(
            org.open_inbound_receipt(&integration, &receipt, t(2600))
                .unwrap()
                .events,
        );
    }
    let customer = participant(&truth, "customer")[0].id.clone();
    events.extend(
        org.patch_participant_attributes(
            PathFamily::Any,
            &answered,
            &customer,
            &json!({ "attributes": { "crmCaseId": "CS-1" } }),
            None,
            t(2700),
        )
        .unwrap()
        .events,
    );
    events.extend(run(&mut org, 2800, 10_000, 100));

    assert!(events.len() > 30);
    let truth = org.truth();
    assert_eq!(truth.conversations.len(), 5);
    assert!(truth.conversations.iter().all(|c| c.ended));
    let voice = truth
        .conversations
        .iter()
        .find(|c| c.media_type == "voice")
        .unwrap();
    assert!(voice.participants.iter().all(|p| p.state == "terminated"));
    let answered = truth_of(&org, &answered);
    assert!(answered.messages.iter().any(|m| m.status == "read"));
    assert_eq!(
        answered
            .messages
            .iter()
            .filter(|m| !m.media.is_empty())
            .count(),
        1
    );
    assert_join_reaches_truth(&org, &events);
}

#[test]
fn a_transfer_hands_the_conversation_to_a_second_agent() {
    let mut org = org();
    let (id, _, _) = inbound(&mut org, 0, "t@example.com", fast("transfer"), t(0));
    run(&mut org, 0, 10_000, 50);
    let truth = truth_of(&org, &id);
    let agents = participant(&truth, "agent");
    assert_eq!(agents.len(), 2);
    assert_ne!(agents[0].user_id, agents[1].user_id);
    assert_eq!(
        agents[0].wrapup.as_ref().unwrap().name.as_deref(),
        Some("Transferred")
    );
    assert_eq!(
        agents[1].wrapup.as_ref().unwrap().name.as_deref(),
        Some("Resolved")
    );
    assert!(truth
        .messages
        .iter()
        .filter(|m| m.direction == "outbound")
        .all(|m| m.participant_id == agents[1].id));
}

#[test]
fn an_abandoned_conversation_never_reaches_an_agent() {
    let mut org = org();
    let (id, _, _) = inbound(&mut org, 0, "gone@example.com", fast("abandon"), t(0));
    run(&mut org, 0, 5_000, 100);
    let truth = truth_of(&org, &id);
    assert!(truth.ended);
    assert!(participant(&truth, "agent").is_empty());
    assert_eq!(participant(&truth, "customer")[0].lifecycle, "left");
}

#[test]
fn a_voice_call_goes_offering_connected_disconnected_terminated_then_wraps_up() {
    let mut org = org();
    let queue = org.queue_ids()[0].clone();
    let created = org
        .create_voice_conversation(&json!({ "queueId": queue, "answer_after_ms": 1000, "reply_after_ms": 1000, "agent_replies": 1, "wrapup_after_ms": 2000 }), t(0))
        .unwrap();
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        participant(&truth_of(&org, &id), "customer")[0].state,
        "offering"
    );
    org.tick(t(0));
    assert_eq!(
        participant(&truth_of(&org, &id), "customer")[0].state,
        "connected"
    );
    run(&mut org, 100, 2900, 100);
    assert_eq!(
        participant(&truth_of(&org, &id), "agent")[0].state,
        "connected"
    );
    org.tick(t(3000));
    let truth = truth_of(&org, &id);
    assert!(truth.participants.iter().all(|p| p.state == "terminated"));
    assert!(participant(&truth, "agent")[0].wrapup.is_none());
    org.tick(t(4000));
    assert!(participant(&truth_of(&org, &id), "agent")[0]
        .wrapup
        .is_some());
    // Voice conversations are not message conversations.
    assert!(matches!(
        org.get_message_conversation(&id),
        Err(OrgError::NotFound { .. })
    ));
    let body = org.get_conversation(&id).unwrap().body;
    assert_eq!(body.participants[0].calls.len(), 1);
    assert!(org
        .create_voice_conversation(&json!({ "queueId": "nope" }), t(0))
        .is_err());
    assert!(matches!(
        org.create_voice_conversation(&json!({ "queueId": queue, "bogus": 1 }), t(0)),
        Err(OrgError::BadRequest(_))
    ));
}

#[test]
fn receipts_move_statuses_forward_and_publish_snapshots() {
    let mut org = org();
    let (id, inbound_id, _) = inbound(&mut org, 0, "r@example.com", fast("answered"), t(0));
    run(&mut org, 0, 3000, 100);
    let integration = org.integration_ids()[0].clone();
    let outbound: Vec<String> = truth_of(&org, &id)
        .messages
        .iter()
        .filter(|m| m.direction == "outbound")
        .map(|m| m.id.clone())
        .collect();
    let receipt = |message: &str, status: &str| json!({ "id": message, "channel": { "to": { "id": "r@example.com" }, "time": "2025-03-04T14:06:01.900Z" }, "status": status, "isFinalReceipt": false });
    let status_of = |org: &Org, message: &str| {
        truth_of(org, &id)
            .messages
            .iter()
            .find(|m| m.id == message)
            .unwrap()
            .status
            .clone()
    };
    let delivered = org
        .open_inbound_receipt(&integration, &receipt(&outbound[0], "Delivered"), t(3100))
        .unwrap();
    assert!(!delivered.events.is_empty());
    assert_eq!(delivered.body["type"], "Receipt");
    assert_eq!(status_of(&org, &outbound[0]), "delivery-success");
    org.open_inbound_receipt(&integration, &receipt(&outbound[0], "Read"), t(3200))
        .unwrap();
    assert_eq!(status_of(&org, &outbound[0]), "read");
    // A late Delivered does not move it back, and publishes nothing.
    let late = org
        .open_inbound_receipt(&integration, &receipt(&outbound[0], "Delivered"), t(3300))
        .unwrap();
    assert!(late.events.is_empty());
    assert_eq!(status_of(&org, &outbound[0]), "read");
    org.open_inbound_receipt(&integration, &receipt(&outbound[1], "Failed"), t(3400))
        .unwrap();
    assert_eq!(status_of(&org, &outbound[1]), "delivery-failed");
    // Unknown or inbound message ids, unknown integration, bad status.
    assert!(matches!(
        org.open_inbound_receipt(&integration, &receipt("0000", "Read"), t(0)),
        Err(OrgError::NotFound { .. })
    ));
    assert!(matches!(
        org.open_inbound_receipt(&integration, &receipt(&inbound_id, "Read"), t(0)),
        Err(OrgError::NotFound { .. })
    ));
    assert!(matches!(
        org.open_inbound_receipt("nope", &receipt(&outbound[0], "Read"), t(0)),
        Err(OrgError::NotFound { .. })
    ));
    let error = org
        .open_inbound_receipt(&integration, &receipt(&outbound[0], "Seen"), t(0))
        .unwrap_err();
    assert!(
        error.to_string().contains("status must be one of"),
        "{error}"
    );
}

#[test]
fn strict_mode_answers_409_to_a_stale_if_match_and_sends_an_etag() {
    let mut org = strict_org();
    let (id, _, _) = inbound(&mut org, 0, "s@example.com", fast("answered"), t(0));
    let got = org.get_conversation(&id).unwrap();
    let etag = got.etag.clone().unwrap();
    assert_eq!(etag, "\"1\"");
    assert_eq!(
        org.get_message_conversation(&id).unwrap().etag,
        Some(etag.clone())
    );
    let customer = got.body.participants[0].id.clone().unwrap();
    let attributes = json!({ "attributes": { "convoy.state": "active" } });
    let ok = org
        .patch_participant_attributes(
            PathFamily::Messages,
            &id,
            &customer,
            &attributes,
            Some(&etag),
            t(10),
        )
        .unwrap();
    assert_eq!(ok.body["attributes"]["convoy.state"], "active");
    // Another writer moves the version on.
    let touched = org.touch(&id, t(20)).unwrap();
    assert_eq!(touched.body["version"], 3);
    assert!(!touched.events.is_empty());
    let stale = org
        .patch_participant_attributes(
            PathFamily::Any,
            &id,
            &customer,
            &attributes,
            Some("\"2\""),
            t(30),
        )
        .unwrap_err();
    assert_eq!(
        stale,
        OrgError::VersionMismatch {
            current: 3,
            given: "\"2\"".to_owned()
        }
    );
    let body = stale.error_body();
    assert_eq!(body.status, Some(409));
    assert_eq!(body.code.as_deref(), Some("general.conflict"));
    assert_eq!(org.truth().if_match_conflicts, 1, "the conflict is counted");
    assert_eq!(
        body.message.as_deref(),
        Some("The version number of the modified resource must match the version number in the database.")
    );
    // The current version, `W/` and `*` pass; no If-Match passes.
    for tag in ["\"3\"", "W/\"4\"", "*"] {
        org.patch_participant_attributes(
            PathFamily::Any,
            &id,
            &customer,
            &attributes,
            Some(tag),
            t(40),
        )
        .unwrap();
    }
    org.patch_participant_attributes(PathFamily::Any, &id, &customer, &attributes, None, t(50))
        .unwrap();
    let attributes_now = &truth_of(&org, &id).participants[0].attributes;
    assert_eq!(attributes_now["other.writer"], "touch-3");
}

#[test]
fn a_conflict_is_cross_writer_only_when_another_writer_made_the_version_stale() {
    let mut org = strict_org();
    let (id, _, _) = inbound(&mut org, 0, "w@example.com", fast("answered"), t(0));
    let customer = org.get_conversation(&id).unwrap().body.participants[0]
        .id
        .clone()
        .unwrap();
    let attributes = json!({ "attributes": { "convoy.state": "active" } });
    let write = |org: &mut Org, version: u64, writer: &str, at: i64| {
        org.patch_participant_attributes_by(
            PathFamily::Any,
            &id,
            &customer,
            &attributes,
            Some(&format!("\"{version}\"")),
            Some(writer),
            t(at),
        )
    };
    // a writes 1 → 2; the org itself (routing, a message) moves it to 3; a's stale 2
    // is a conflict, but no other writer's.
    write(&mut org, 1, "worker-a", 10).unwrap();
    org.touch(&id, t(20)).unwrap();
    write(&mut org, 2, "worker-a", 30).unwrap_err();
    assert_eq!(org.truth().if_match_conflicts, 1);
    assert_eq!(org.truth().cross_writer_conflicts, 0);
    // b takes over from what it read (3) and writes → 4; a, still holding 3, is refused
    // — and that is two writers at once.
    write(&mut org, 3, "worker-b", 40).unwrap();
    write(&mut org, 3, "worker-a", 50).unwrap_err();
    assert_eq!(org.truth().if_match_conflicts, 2);
    assert_eq!(org.truth().cross_writer_conflicts, 1);
    // b's own stale version, overtaken only by b itself, is not.
    write(&mut org, 3, "worker-b", 60).unwrap_err();
    assert_eq!(org.truth().cross_writer_conflicts, 1);
    assert_eq!(org.truth().attribute_writers, ["worker-a", "worker-b"]);
}

#[test]
fn without_strict_mode_if_match_is_ignored_and_no_etag_is_sent() {
    let mut org = org();
    let (id, _, _) = inbound(&mut org, 0, "n@example.com", fast("answered"), t(0));
    let got = org.get_conversation(&id).unwrap();
    assert_eq!(got.etag, None);
    let customer = got.body.participants[0].id.clone().unwrap();
    org.touch(&id, t(10)).unwrap();
    org.patch_participant_attributes(
        PathFamily::Any,
        &id,
        &customer,
        &json!({ "attributes": { "k": "v" } }),
        Some("\"1\""),
        t(20),
    )
    .unwrap();
}

#[test]
fn participant_patch_disconnects_wraps_up_and_refuses_a_second_disconnect() {
    let mut org = org();
    let (id, _, _) = inbound(&mut org, 0, "p@example.com", fast("answered"), t(0));
    run(&mut org, 0, 1500, 100);
    let agent = participant(&truth_of(&org, &id), "agent")[0].id.clone();
    let applied = org
        .patch_participant(
            PathFamily::Messages,
            &id,
            &agent,
            &json!({ "state": "disconnected" }),
            t(1600),
        )
        .unwrap();
    assert!(!applied.events.is_empty());
    let truth = truth_of(&org, &id);
    assert!(truth.ended, "the customer follows the last agent out");
    assert_eq!(participant(&truth, "customer")[0].state, "disconnected");
    let again = org.patch_participant(
        PathFamily::Any,
        &id,
        &agent,
        &json!({ "state": "disconnected" }),
        t(1700),
    );
    assert!(matches!(again, Err(OrgError::Conflict(_))));
    org.patch_participant(
        PathFamily::Any,
        &id,
        &agent,
        &json!({ "wrapup": { "code": "d62d5012-851d-4d2b-95cd-7e4dc4bcd618", "notes": "Refund issued", "durationSeconds": 29 } }),
        t(1800),
    )
    .unwrap();
    let wrapup = participant(&truth_of(&org, &id), "agent")[0]
        .wrapup
        .clone()
        .unwrap();
    assert_eq!(wrapup.notes.as_deref(), Some("Refund issued"));
    // The synthetic agent's later steps do nothing now.
    run(&mut org, 1900, 10_000, 100);
    let truth = truth_of(&org, &id);
    assert_eq!(
        truth
            .messages
            .iter()
            .filter(|m| m.direction == "outbound")
            .count(),
        0
    );
    assert_eq!(
        participant(&truth, "agent")[0]
            .wrapup
            .as_ref()
            .unwrap()
            .notes
            .as_deref(),
        Some("Refund issued")
    );
    // Errors.
    assert!(matches!(
        org.patch_participant(
            PathFamily::Any,
            &id,
            "nope",
            &json!({ "state": "disconnected" }),
            t(0)
        ),
        Err(OrgError::NotFound {
            kind: "participant",
            ..
        })
    ));
    assert!(matches!(
        org.patch_participant(
            PathFamily::Any,
            "nope",
            &agent,
            &json!({ "state": "disconnected" }),
            t(0)
        ),
        Err(OrgError::NotFound { .. })
    ));
    assert!(matches!(
        org.patch_participant(
            PathFamily::Any,
            &id,
            &agent,
            &json!({ "state": "connected" }),
            t(0)
        ),
        Err(OrgError::BadRequest(_))
    ));
    assert!(matches!(
        org.patch_participant(PathFamily::Any, &id, &agent, &json!({}), t(0)),
        Err(OrgError::BadRequest(_))
    ));
    let error = org
        .patch_participant_attributes(
            PathFamily::Any,
            &id,
            &agent,
            &json!({ "attributes": { "n": 1 } }),
            None,
            t(0),
        )
        .unwrap_err();
    assert!(error.to_string().contains("attributes.n"), "{error}");
}

#[test]
fn disconnecting_a_message_conversation_returns_it_ended() {
    let mut org = org();
    let (id, _, _) = inbound(&mut org, 0, "d@example.com", fast("answered"), t(0));
    run(&mut org, 0, 1500, 100);
    let applied = org
        .disconnect_message_conversation(&id, &json!({ "state": "disconnected" }), t(1600))
        .unwrap();
    assert_eq!(applied.body.end_time, Some(t(1600)));
    assert!(applied
        .body
        .participants
        .iter()
        .all(|p| p.end_time.is_some()));
    assert!(matches!(
        org.disconnect_message_conversation(&id, &json!({ "state": "disconnected" }), t(1700)),
        Err(OrgError::Conflict(_))
    ));
    assert!(matches!(
        org.disconnect_message_conversation(&id, &json!({ "state": "parked" }), t(1700)),
        Err(OrgError::BadRequest(_))
    ));
    // A new message from the same sender starts a new conversation.
    let (next, _, _) = inbound(&mut org, 0, "d@example.com", fast("answered"), t(2000));
    assert_ne!(next, id);
}

#[test]
fn sending_a_message_queues_it_then_sends_it_on_the_next_tick() {
    let mut org = org();
    let (id, _, _) = inbound(
        &mut org,
        0,
        "m@example.com",
        json!({ "convoy.sim.answerAfterMs": "0", "convoy.sim.agentReplies": "0", "convoy.sim.wrapupAfterMs": "60000" }),
        t(0),
    );
    org.tick(t(0));
    let body = org.get_message_conversation(&id).unwrap().body;
    let agent = body
        .participants
        .iter()
        .find(|p| p.purpose == Some(crate::model::Purpose::Agent))
        .unwrap();
    let comm = org.get_conversation(&id).unwrap().body.participants[2].messages[0]
        .id
        .clone()
        .unwrap();
    assert_eq!(
        agent.state,
        Some(crate::model::CommunicationState::Connected)
    );
    let sent = org
        .send_message(
            &id,
            &comm,
            &json!({ "textBody": "Sorry about that!" }),
            t(100),
        )
        .unwrap();
    assert_eq!(sent.body["status"], "queued");
    assert_eq!(sent.body["direction"], "outbound");
    assert_eq!(sent.body["normalizedMessage"]["text"], "Sorry about that!");
    assert_eq!(
        sent.body["createdBy"]["id"],
        agent.user.as_ref().unwrap().id.clone().unwrap()
    );
    let message = sent.body["id"].as_str().unwrap().to_owned();
    assert_eq!(message.len(), 32);
    assert!(!org.tick(t(200)).is_empty());
    assert_eq!(org.get_message(&id, &message).unwrap()["status"], "sent");
    let media = org
        .send_message(
            &id,
            &comm,
            &json!({ "mediaIds": ["3a55eeec-5bb6-497a-a478-8e2f353f67db"] }),
            t(300),
        )
        .unwrap();
    assert_eq!(
        media.body["normalizedMessage"]["content"][0]["attachment"]["id"],
        "3a55eeec-5bb6-497a-a478-8e2f353f67db"
    );
    // Errors: both kinds at once, the customer's communication, unknown communication.
    assert!(matches!(
        org.send_message(
            &id,
            &comm,
            &json!({ "textBody": "x", "mediaIds": ["y"] }),
            t(0)
        ),
        Err(OrgError::BadRequest(_))
    ));
    let customer_comm = org.get_conversation(&id).unwrap().body.participants[0].messages[0]
        .id
        .clone()
        .unwrap();
    assert!(matches!(
        org.send_message(&id, &customer_comm, &json!({ "textBody": "x" }), t(0)),
        Err(OrgError::BadRequest(_))
    ));
    assert!(matches!(
        org.send_message(&id, "nope", &json!({ "textBody": "x" }), t(0)),
        Err(OrgError::NotFound {
            kind: "communication",
            ..
        })
    ));
    org.disconnect_message_conversation(&id, &json!({ "state": "disconnected" }), t(400))
        .unwrap();
    assert!(matches!(
        org.send_message(&id, &comm, &json!({ "textBody": "x" }), t(500)),
        Err(OrgError::Conflict(_))
    ));
}

#[test]
fn agentless_send_creates_an_outbound_conversation_that_ends_once_sent() {
    let mut org = org();
    let integration = org.integration_ids()[1].clone();
    // payloads/agentless_send_request.json, with this org's integration as the sender.
    let mut request = json!({
        "fromAddress": "3f9e2f1e-cf08-4a6e-8399-7b41013f335d",
        "toAddress": "customer-4711@example.com",
        "toAddressMessengerType": "open",
        "textBody": "Your refund for order A-1029 has been processed.",
        "useExistingActiveConversation": false,
    });
    request["fromAddress"] = json!(integration);
    let sent = org.send_agentless(&request, t(0)).unwrap();
    let id = sent.body["conversationId"].as_str().unwrap().to_owned();
    assert_eq!(sent.body["message"]["status"], "queued");
    assert_eq!(
        sent.body["message"]["normalizedMessage"]["originatingEntity"],
        "Bot"
    );
    assert!(sent
        .events
        .iter()
        .any(|e| e.topic.ends_with(".conversations.messages")));
    org.tick(t(10));
    let truth = truth_of(&org, &id);
    assert!(truth.ended);
    assert_eq!(truth.messages[0].status, "sent");
    assert_eq!(truth.messages[0].direction, "outbound");
    request["fromAddress"] = json!("not-an-integration");
    assert!(matches!(
        org.send_agentless(&request, t(0)),
        Err(OrgError::BadRequest(_))
    ));
    request["fromAddress"] = json!(integration);
    request["toAddressMessengerType"] = json!("pigeon");
    assert!(matches!(
        org.send_agentless(&request, t(0)),
        Err(OrgError::BadRequest(_))
    ));
}

#[test]
fn malformed_open_messaging_bodies_are_400s_that_name_the_problem() {
    let mut org = org();
    let integration = org.integration_ids()[0].clone();
    let missing_from = json!({ "channel": { "time": "2025-03-04T14:05:12.301Z" }, "text": "hi" });
    let error = org
        .open_inbound_message(&integration, &missing_from, false, t(0))
        .unwrap_err();
    assert_eq!(error.status(), 400);
    assert!(error.to_string().contains("from"), "{error}");
    let bad_time = json!({ "channel": { "from": { "id": "x", "idType": "Email" }, "time": "yesterday" }, "text": "hi" });
    let error = org
        .open_inbound_message(&integration, &bad_time, false, t(0))
        .unwrap_err();
    assert!(error.to_string().contains("channel.time"), "{error}");
    let empty = json!({ "channel": { "from": { "id": "x", "idType": "Email" }, "time": "2025-03-04T14:05:12.301Z" } });
    assert!(matches!(
        org.open_inbound_message(&integration, &empty, false, t(0)),
        Err(OrgError::BadRequest(_))
    ));
    let no_url = json!({ "channel": { "from": { "id": "x", "idType": "Email" }, "time": "2025-03-04T14:05:12.301Z" }, "content": [{ "attachment": { "mediaType": "Image" } }] });
    let error = org
        .open_inbound_message(&integration, &no_url, false, t(0))
        .unwrap_err();
    assert!(
        error.to_string().contains("content[0].attachment.url"),
        "{error}"
    );
    let bad_override = inbound_body("x", "hi", json!({ "convoy.sim.outcome": "explode" }));
    assert!(org
        .open_inbound_message(&integration, &bad_override, false, t(0))
        .unwrap_err()
        .to_string()
        .contains("convoy.sim.outcome"));
    assert!(matches!(
        org.open_inbound_message("nope", &inbound_body("x", "hi", json!({})), false, t(0)),
        Err(OrgError::NotFound {
            kind: "integration",
            ..
        })
    ));
    assert_eq!(
        org.conversation_count(),
        0,
        "no failed request created anything"
    );
    let typing: Value = json!({ "channel": { "from": { "id": "x", "idType": "Email" }, "time": "2025-03-04T14:05:58.000Z" }, "events": [{ "eventType": "Typing" }] });
    let echo = org.open_inbound_event(&integration, &typing, t(0)).unwrap();
    assert_eq!(echo["type"], "Event");
    assert!(org
        .open_inbound_event(
            &integration,
            &json!({ "channel": typing["channel"], "events": [] }),
            t(0)
        )
        .is_err());
    assert!(matches!(
        parse_json_body(b"{not json"),
        Err(OrgError::BadRequest(_))
    ));
    assert_eq!(parse_json_body(b"").unwrap(), json!({}));
    let not_found = org.get_conversation("nope").unwrap_err().error_body();
    assert_eq!(not_found.code.as_deref(), Some("not.found"));
    assert_eq!(
        not_found.message.as_deref(),
        Some("The requested resource was not found.")
    );
}

#[test]
fn the_open_message_echo_carries_the_genesys_id_and_the_prefetched_conversation() {
    let mut org = org();
    let integration = org.integration_ids()[0].clone();
    let request = inbound_body(
        "customer-4711@example.com",
        "Hi, my order A-1029 never arrived",
        json!({ "source": "acme-portal" }),
    );
    let echo = org
        .open_inbound_message(&integration, &request, true, t(0))
        .unwrap()
        .body;
    assert_eq!(echo["id"].as_str().unwrap().len(), 32);
    assert_eq!(echo["channel"]["id"], integration.as_str());
    assert_eq!(echo["channel"]["platform"], "Open");
    assert_eq!(echo["metadata"]["source"], "acme-portal");
    assert!(echo["conversationId"].is_string());
    let again = org
        .open_inbound_message(&integration, &request, false, t(10))
        .unwrap()
        .body;
    assert!(again.get("conversationId").is_none());
    assert_eq!(
        org.conversation_count(),
        1,
        "the second message continues the conversation"
    );
}

#[test]
fn the_same_seed_and_calls_give_the_same_org() {
    let play = || {
        let mut org = org();
        inbound(&mut org, 0, "a@example.com", fast("transfer"), t(0));
        inbound(&mut org, 1, "b@example.com", fast("answered"), t(5));
        run(&mut org, 0, 10_000, 250);
        serde_json::to_value(org.truth()).unwrap()
    };
    assert_eq!(play(), play());
}

fn details(org: &Org, body: Value) -> Value {
    org.details_query(&body).unwrap()
}

const DAY: &str = "2025-03-04T00:00:00.000Z/2025-03-05T00:00:00.000Z";

/// 250 conversations across two queues; pairs start at the same millisecond so the order
/// relies on the conversationId tie-break.
fn busy_org() -> Org {
    let mut org = org();
    for n in 0..250 {
        let outcome = match n % 5 {
            0 => "abandon",
            1 => "transfer",
            _ => "answered",
        };
        inbound(
            &mut org,
            n % 2,
            &format!("c{n}@example.com"),
            fast(outcome),
            t((n as i64 / 2) * 40),
        );
    }
    run(&mut org, 0, 20_000, 100);
    org
}

fn ids_of(page: &Value) -> Vec<String> {
    page["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["conversationId"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn details_paging_over_250_conversations_neither_repeats_nor_skips() {
    let org = busy_org();
    let all: BTreeSet<String> = org
        .truth()
        .conversations
        .iter()
        .map(|c| c.id.clone())
        .collect();
    for order in ["asc", "desc"] {
        for size in [100u64, 37] {
            let mut seen = Vec::new();
            for number in 1.. {
                let page = details(
                    &org,
                    json!({ "interval": DAY, "order": order, "paging": { "pageSize": size, "pageNumber": number } }),
                );
                assert_eq!(page["totalHits"], 250);
                let ids = ids_of(&page);
                if ids.is_empty() {
                    break;
                }
                assert!(ids.len() as u64 <= size);
                seen.extend(ids);
            }
            let unique: BTreeSet<String> = seen.iter().cloned().collect();
            assert_eq!(seen.len(), 250, "{order} by {size}: repeated or skipped");
            assert_eq!(unique, all);
            let starts: Vec<String> = seen
                .iter()
                .map(|id| iso(truth_of(&org, id).start_time))
                .collect();
            let mut sorted = starts.clone();
            sorted.sort();
            if order == "desc" {
                sorted.reverse();
            }
            assert_eq!(starts, sorted, "{order} order by conversationStart");
        }
    }
    // Only conversations that started in the interval.
    let early = details(
        &org,
        json!({ "interval": "2025-03-04T14:00:00.000Z/2025-03-04T14:00:00.400Z" }),
    );
    assert_eq!(early["totalHits"], 20);
    let none = details(
        &org,
        json!({ "interval": "2025-03-05T00:00:00.000Z/2025-03-06T00:00:00.000Z" }),
    );
    assert_eq!(none["totalHits"], 0);
}

#[test]
fn details_filters_select_by_dimension() {
    let mut org = busy_org();
    let queue = org.queue_ids()[0].clone();
    let voice = org
        .create_voice_conversation(&json!({ "queueId": queue }), t(30_000))
        .unwrap()
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let hits = |org: &Org, body: Value| details(org, body)["totalHits"].as_u64().unwrap();
    let by_queue = json!({ "interval": DAY, "segmentFilters": [{ "type": "and", "predicates": [{ "type": "dimension", "dimension": "queueId", "operator": "matches", "value": queue }] }] });
    assert_eq!(hits(&org, by_queue), 126);
    let voice_only = json!({ "interval": DAY, "segmentFilters": [{ "type": "and", "predicates": [{ "dimension": "mediaType", "value": "voice" }] }] });
    assert_eq!(ids_of(&details(&org, voice_only)), vec![voice.clone()]);
    let by_id = json!({ "interval": DAY, "conversationFilters": [{ "type": "or", "predicates": [{ "dimension": "conversationId", "value": voice }, { "dimension": "conversationId", "value": "nope" }] }] });
    assert_eq!(hits(&org, by_id), 1);
    // Abandoned conversations have no agent participant.
    let with_agent = json!({ "interval": DAY, "segmentFilters": [{ "type": "and", "predicates": [{ "dimension": "purpose", "value": "agent" }] }] });
    assert_eq!(hits(&org, with_agent), 200);
    let user = org.user_ids()[0].clone();
    let by_user = json!({ "interval": DAY, "segmentFilters": [{ "type": "and", "predicates": [{ "dimension": "userId", "value": user }] }] });
    let expected = org
        .truth()
        .conversations
        .iter()
        .filter(|c| {
            c.participants
                .iter()
                .any(|p| p.user_id.as_deref() == Some(user.as_str()))
        })
        .count() as u64;
    assert!(expected > 0);
    assert_eq!(hits(&org, by_user), expected);
    let ended = json!({ "interval": DAY, "conversationFilters": [{ "type": "and", "predicates": [{ "dimension": "conversationEnd", "operator": "exists" }] }] });
    assert_eq!(hits(&org, ended), 250, "the voice call is still running");
    // The same segment must satisfy an and-filter.
    let impossible = json!({ "interval": DAY, "segmentFilters": [{ "type": "and", "predicates": [{ "dimension": "purpose", "value": "customer" }, { "dimension": "segmentType", "value": "wrapup" }] }] });
    assert_eq!(hits(&org, impossible), 0);
    let unknown = json!({ "interval": DAY, "segmentFilters": [{ "type": "and", "predicates": [{ "dimension": "shoeSize", "value": "9" }] }] });
    assert!(org
        .details_query(&unknown)
        .unwrap_err()
        .to_string()
        .contains("shoeSize"));
}

#[test]
fn details_query_validates_interval_and_paging() {
    let org = org();
    assert!(matches!(
        org.details_query(&json!({})),
        Err(OrgError::BadRequest(_))
    ));
    assert!(matches!(
        org.details_query(&json!({ "interval": "yesterday" })),
        Err(OrgError::BadRequest(_))
    ));
    let too_big = json!({ "interval": DAY, "paging": { "pageSize": 101, "pageNumber": 1 } });
    assert!(matches!(
        org.details_query(&too_big),
        Err(OrgError::BadRequest(_))
    ));
    let too_deep = json!({ "interval": DAY, "paging": { "pageSize": 100, "pageNumber": 1001 } });
    let error = org.details_query(&too_deep).unwrap_err();
    assert_eq!(error, OrgError::PaginationLimit);
    let body = error.error_body();
    assert_eq!(
        body.message.as_deref(),
        Some("Pagination may not exceed 100000 results.")
    );
    assert_eq!(
        (body.status, body.code.as_deref()),
        (Some(400), Some("bad.request"))
    );
    let last_allowed =
        json!({ "interval": DAY, "paging": { "pageSize": 100, "pageNumber": 1000 } });
    assert!(org.details_query(&last_allowed).is_ok());
    let default = details(&org, json!({ "interval": DAY }));
    assert_eq!(default, json!({ "conversations": [], "totalHits": 0 }));
}

#[test]
fn details_sessions_carry_metrics_and_segments_from_what_ran() {
    let mut org = org();
    let (id, _, _) = inbound(&mut org, 0, "a@example.com", fast("answered"), t(0));
    run(&mut org, 0, 5000, 100);
    let page = details(&org, json!({ "interval": DAY }));
    let conversation = &page["conversations"][0];
    assert_eq!(conversation["conversationId"], id.as_str());
    assert_eq!(conversation["conversationEnd"], "2025-03-04T14:00:03.500Z");
    let agent = conversation["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["purpose"] == "agent")
        .unwrap();
    let metric = |name: &str| {
        agent["sessions"][0]["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap()["value"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(metric("tAnswered"), 1000);
    assert_eq!(metric("tAlert"), 500);
    assert_eq!(metric("tTalk"), 2500);
    assert_eq!(metric("tAcw"), 500);
    assert_eq!(metric("tHandle"), 3000);
    let kinds: Vec<&str> = agent["sessions"][0]["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["segmentType"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["alert", "interact", "wrapup"]);
}

#[test]
fn aggregates_count_what_ran() {
    let org = busy_org();
    let query = json!({
        "interval": DAY,
        "groupBy": ["queueId", "mediaType"],
        "metrics": ["nOffered", "nConnected", "tAnswered", "tTalk", "tAcw", "tHandle", "nTransferred"],
    });
    let response = org.aggregates_query(&query).unwrap();
    let results = response["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    let mut offered = 0;
    for result in results {
        assert_eq!(result["group"]["mediaType"], "message");
        let metrics = result["data"][0]["metrics"].as_array().unwrap();
        let stats =
            |name: &str| metrics.iter().find(|m| m["metric"] == name).unwrap()["stats"].clone();
        offered += stats("nOffered")["count"].as_i64().unwrap();
        // 125 per queue: 25 abandoned, 25 transferred (two agents connect), 75 answered.
        assert_eq!(stats("nOffered")["count"], 125);
        assert_eq!(stats("nConnected")["count"], 125);
        assert_eq!(stats("nTransferred")["count"], 25);
        let answered = stats("tAnswered");
        assert_eq!(answered["count"], 125);
        assert_eq!(answered["min"], 500);
        assert_eq!(answered["max"], 1000);
        assert_eq!(answered["sum"], 100 * 1000 + 25 * 500);
        assert_eq!(stats("tAcw")["count"], 125);
    }
    assert_eq!(offered, 250);
    // Hourly buckets: everything started within 14:00–15:00.
    let hourly = org
        .aggregates_query(
            &json!({ "interval": DAY, "granularity": "PT1H", "metrics": ["nOffered"] }),
        )
        .unwrap();
    assert_eq!(hourly["results"][0]["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        hourly["results"][0]["data"][0]["interval"],
        "2025-03-04T14:00:00.000Z/2025-03-04T15:00:00.000Z"
    );
    assert_eq!(
        hourly["results"][0]["data"][0]["metrics"][0]["stats"]["count"],
        250
    );
    // Per user: the connected counts add up.
    let by_user = org
        .aggregates_query(&json!({ "interval": DAY, "groupBy": ["userId"], "metrics": ["nConnected"], "filter": { "type": "and", "predicates": [{ "dimension": "queueId", "value": org.queue_ids()[0] }] } }))
        .unwrap();
    let per_user: Vec<i64> = by_user["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["data"][0]["metrics"][0]["stats"]["count"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(per_user.len(), 3);
    assert_eq!(per_user.iter().sum::<i64>(), 125);
    // Errors.
    assert!(org
        .aggregates_query(&json!({ "interval": DAY, "metrics": ["nBogus"] }))
        .is_err());
    assert!(org
        .aggregates_query(&json!({ "interval": DAY, "metrics": [] }))
        .is_err());
    assert!(org
        .aggregates_query(
            &json!({ "interval": DAY, "metrics": ["nOffered"], "granularity": "1 hour" })
        )
        .is_err());
    assert!(org
        .aggregates_query(
            &json!({ "interval": DAY, "metrics": ["nOffered"], "groupBy": ["shoeSize"] })
        )
        .is_err());
}

#[test]
fn iso_periods_parse() {
    use super::analytics::period;
    assert_eq!(period("PT30M").unwrap(), Duration::minutes(30));
    assert_eq!(period("PT1H").unwrap(), Duration::hours(1));
    assert_eq!(period("P1D").unwrap(), Duration::days(1));
    assert_eq!(period("P1DT12H").unwrap(), Duration::hours(36));
    assert_eq!(period("P1W").unwrap(), Duration::days(7));
    for bad in [
        "",
        "P",
        "PT",
        "1H",
        "PT1X",
        "P0D",
        "PTH",
        "PT9223372036854776S",
        "P99999999999999W",
    ] {
        assert!(period(bad).is_err(), "{bad}");
    }
}

#[test]
fn details_jobs_go_queued_pending_fulfilled_and_page_by_cursor() {
    let mut org = busy_org();
    let created = org
        .create_details_job(&json!({ "interval": DAY, "order": "asc" }), t(100_000))
        .unwrap();
    let job = created["jobId"].as_str().unwrap().to_owned();
    assert_eq!(
        org.details_job_status(&job, t(100_000)).unwrap()["state"],
        "QUEUED"
    );
    assert!(matches!(
        org.details_job_results(&job, None, None, t(100_001)),
        Err(OrgError::BadRequest(_))
    ));
    assert_eq!(
        org.details_job_status(&job, t(100_100)).unwrap()["state"],
        "PENDING"
    );
    org.tick(t(100_300));
    let status = org.details_job_status(&job, t(100_300)).unwrap();
    assert_eq!(status["state"], "FULFILLED");
    assert!(status["completionDate"].is_string());
    // New conversations after fulfilment do not change the frozen results.
    inbound(
        &mut org,
        0,
        "late@example.com",
        fast("answered"),
        t(100_400),
    );
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = org
            .details_job_results(&job, cursor.as_deref(), Some("37"), t(100_500))
            .unwrap();
        seen.extend(ids_of(&page));
        match page.get("cursor").and_then(Value::as_str) {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(seen.len(), 250);
    assert_eq!(unique.len(), 250);
    assert!(org
        .details_job_results(&job, Some("garbage"), None, t(100_500))
        .is_err());
    assert!(org
        .details_job_results(&job, None, Some("0"), t(100_500))
        .is_err());
    org.cancel_details_job(&job, t(100_600)).unwrap();
    assert_eq!(
        org.details_job_status(&job, t(100_700)).unwrap()["state"],
        "CANCELLED"
    );
    assert!(matches!(
        org.details_job_status("nope", t(0)),
        Err(OrgError::NotFound { .. })
    ));
    assert!(matches!(
        org.cancel_details_job("nope", t(0)),
        Err(OrgError::NotFound { .. })
    ));
    assert!(org.details_jobs_availability(t(5))["dataAvailabilityDate"].is_string());
    // Expiry after a day.
    let other = org
        .create_details_job(&json!({ "interval": DAY }), t(0))
        .unwrap()["jobId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        org.details_job_status(&other, t(90_000_000)).unwrap()["state"],
        "EXPIRED"
    );
}

#[test]
fn routing_profile_is_set_by_a_partial_put() {
    let mut org = org();
    let profile = org
        .set_routing_profile(&json!({ "answer_after_ms": 10, "outcome": "transfer" }))
        .unwrap();
    assert_eq!(profile.answer_after_ms, 10);
    assert_eq!(profile.outcome, RoutingOutcome::Transfer);
    assert_eq!(
        profile.reply_after_ms,
        RoutingProfile::default().reply_after_ms
    );
    assert!(org
        .set_routing_profile(&json!({ "answerAfterMs": 10 }))
        .is_err());
    assert_eq!(org.routing_profile(), &profile);
    let directory = org.directory();
    assert_eq!(directory.queues.len(), 2);
    assert_eq!(directory.users.len(), 6);
    assert_eq!(
        serde_json::to_value(&directory).unwrap()["queues"][0]["integrationId"],
        directory.queues[0].integration_id.as_str()
    );
}

#[test]
fn a_voice_call_is_transcribed_in_real_time_in_turns() {
    let mut org = org();
    let queue = org.queue_ids()[0].clone();
    let created = org
        .create_voice_conversation(&json!({ "queueId": queue, "answer_after_ms": 1000, "reply_after_ms": 1000, "agent_replies": 2, "wrapup_after_ms": 2000 }), t(0))
        .unwrap();
    let id = created.body["id"].as_str().unwrap().to_owned();
    let mut events = Vec::new();
    for ms in (0..=6000).step_by(100) {
        events.extend(org.tick(t(ms)));
    }
    let topic = format!("v2.conversations.{id}.transcription");
    let segments: Vec<_> = events
        .iter()
        .filter(|event| event.topic == topic)
        .map(
            |event| match classify_value(envelope(event, "x")).unwrap() {
                Classified::Transcription(transcription) => transcription,
                other => panic!("expected a transcription, got {other:?}"),
            },
        )
        .flat_map(|transcription| {
            assert_eq!(transcription.conversation_id.text().as_str(), id);
            transcription.segments
        })
        .collect();
    assert_eq!(segments.len(), 4, "two turns of customer + agent");
    let sides: Vec<_> = segments
        .iter()
        .map(|s| s.speaker.as_str().to_owned())
        .collect();
    assert_eq!(sides, ["EXTERNAL", "INTERNAL", "EXTERNAL", "INTERNAL"]);
    assert!(segments
        .iter()
        .all(|s| s.is_final && s.start_ms.is_some() && s.end_ms > s.start_ms));
    // Joined into Convoy's state, every utterance is kept once.
    let mut conversation = Conversation::new(ConversationId::from(id.as_str()));
    for event in events.iter().filter(|event| event.topic == topic) {
        if let Classified::Transcription(transcription) =
            classify_value(envelope(event, "x")).unwrap()
        {
            conversation.apply_transcription(&transcription).unwrap();
        }
    }
    assert_eq!(conversation.state.transcript.len(), 4);
}

/// Each agent's live legs in conversations still being routed, counted the slow way (every
/// conversation, every leg): what the load index must always equal.
fn agent_load_by_scan(org: &Org) -> Vec<usize> {
    org.directory
        .agents
        .iter()
        .map(|agent| {
            org.conversations
                .iter()
                .filter(|conv| !conv.plan.is_empty())
                .flat_map(|conv| conv.participants.iter())
                .filter(|part| part.is_live() && part.user_id.as_deref() == Some(&agent.id))
                .count()
        })
        .collect()
}

fn agent_load_indexed(org: &Org) -> Vec<usize> {
    (0..org.directory.agents.len())
        .map(|agent| org.agent_load.of(agent))
        .collect()
}

/// The agent (index into the directory) of the conversation's first agent leg.
fn first_agent_of(org: &Org, id: &str) -> usize {
    let conv = &org.conversations[org.by_id[id]];
    let user = conv
        .participants
        .iter()
        .find_map(|part| part.user_id.clone())
        .unwrap_or_else(|| panic!("{id} has no agent"));
    org.agent_of_user[&user]
}

#[test]
fn ten_thousand_queued_conversations_are_offered_evenly_to_three_agents() {
    // Issue #11: 10 000 conversations waiting on one queue of three agents (the org's
    // default: two queues of three). Correctness only; the timing is in the README.
    let mut org = org();
    let waiting = json!({
        "convoy.sim.answerAfterMs": "2000",
        "convoy.sim.agentReplies": "0",
        "convoy.sim.wrapupAfterMs": "60000",
    });
    let ids: Vec<String> = (0..10_000)
        .map(|n| {
            inbound(
                &mut org,
                0,
                &format!("q{n}@example.com"),
                waiting.clone(),
                t(0),
            )
            .0
        })
        .collect();
    assert!(
        org.tick(t(999)).is_empty(),
        "nothing is due before the offers"
    );
    assert_eq!(org.due.len(), 10_000);

    let offered = org.tick(t(1_000));
    // Each offer publishes the snapshot on the queue's and the agent's topics, both kinds.
    assert_eq!(offered.len(), 10_000 * 4);
    assert_eq!(agent_load_indexed(&org), agent_load_by_scan(&org));
    assert_eq!(agent_load_indexed(&org), vec![3334, 3333, 3333, 0, 0, 0]);
    for (n, id) in ids.iter().enumerate().take(9) {
        assert_eq!(first_agent_of(&org, id), n % 3, "round robin among equals");
    }

    // Five of agent 1's conversations end: it is the least busy until it catches up.
    let of_agent_1: Vec<&String> = ids
        .iter()
        .filter(|id| first_agent_of(&org, id) == 1)
        .take(5)
        .collect();
    for id in &of_agent_1 {
        org.disconnect_message_conversation(id, &json!({ "state": "disconnected" }), t(1_100))
            .unwrap();
    }
    assert_eq!(agent_load_indexed(&org), vec![3334, 3328, 3333, 0, 0, 0]);
    assert_eq!(agent_load_indexed(&org), agent_load_by_scan(&org));

    let now_offered = json!({
        "convoy.sim.answerAfterMs": "0",
        "convoy.sim.agentReplies": "0",
        "convoy.sim.wrapupAfterMs": "60000",
    });
    let late: Vec<String> = (0..5)
        .map(|n| {
            inbound(
                &mut org,
                0,
                &format!("late{n}@example.com"),
                now_offered.clone(),
                t(1_200),
            )
            .0
        })
        .collect();
    org.tick(t(1_200));
    for id in &late {
        assert_eq!(
            first_agent_of(&org, id),
            1,
            "{id} went to the least busy agent"
        );
    }
    assert_eq!(agent_load_indexed(&org), vec![3334, 3333, 3333, 0, 0, 0]);
    assert_eq!(agent_load_indexed(&org), agent_load_by_scan(&org));
    // Every conversation keeps its remaining steps (inert for the five that ended).
    assert_eq!(org.due.len(), 10_005);
}
