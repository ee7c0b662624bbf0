//! Issue 3's acceptance run: 200 simulated conversations while a WebSocket client written
//! here receives the snapshots on every subscribed topic, then the emulator's analytics
//! return exactly those conversations, paged without repeats or gaps.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use awc::ws;
use convoy::conversation::Conversation;
use convoy::ids::ConversationId;
use convoy::parse::{classify, Classified};
use convoy::simulator::Scenario;
use convoy_actors::emulator::{Emulator, EmulatorOptions};
use convoy_actors::simulator::{Simulator, SimulatorOptions};
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::support::{client, emulator_token, eventually};

const FAST: &str = include_str!("../../config/examples/scenario-fast.toml");

async fn api(
    http: &awc::Client,
    emulator: &Emulator,
    token: &str,
    method: &str,
    path: &str,
    body: Value,
) -> Value {
    let url = format!("{}/api/v2{path}", emulator.base_url());
    let request = match method {
        "PUT" => http.put(url),
        _ => http.post(url),
    }
    .insert_header(("Authorization", format!("Bearer {token}")));
    let mut response = request.send_json(&body).await.unwrap();
    assert!(
        response.status().is_success(),
        "{method} {path}: {}",
        response.status()
    );
    response.json().limit(64 * 1024 * 1024).await.unwrap()
}

#[actix_rt::test]
async fn two_hundred_conversations_reach_a_websocket_client_and_page_through_analytics() {
    let http = client();
    let emulator = Emulator::start(EmulatorOptions {
        rate_limit_per_minute: 0,
        heartbeat: Duration::from_secs(1),
        // This test reads every frame of the load: on a loaded machine its reader may fall
        // more than the default 1 024 frames behind, which would measure the slow-reader
        // drop (covered elsewhere), not the frames' content.
        socket_outbox: 1 << 20,
        ..EmulatorOptions::default()
    })
    .await
    .unwrap();
    let token = emulator_token(&http, &emulator).await;
    let org: Value = http
        .get(format!("{}/emulator/v1/org", emulator.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut topics = Vec::new();
    for queue in org["queues"].as_array().unwrap() {
        let id = queue["id"].as_str().unwrap();
        topics.push(format!("v2.routing.queues.{id}.conversations"));
        topics.push(format!("v2.routing.queues.{id}.conversations.messages"));
    }
    for user in org["users"].as_array().unwrap() {
        let id = user["id"].as_str().unwrap();
        topics.push(format!("v2.users.{id}.conversations"));
        topics.push(format!("v2.users.{id}.conversations.messages"));
    }
    let channel = api(
        &http,
        &emulator,
        &token,
        "POST",
        "/notifications/channels",
        json!({}),
    )
    .await;
    let channel_id = channel["id"].as_str().unwrap();
    let subscriptions = api(
        &http,
        &emulator,
        &token,
        "PUT",
        &format!("/notifications/channels/{channel_id}/subscriptions"),
        Value::Array(topics.iter().map(|t| json!({ "id": t })).collect()),
    )
    .await;
    let permitted = subscriptions["entities"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["state"] == "Permitted")
        .count();
    assert_eq!(permitted, topics.len());

    // The WebSocket client: every text frame is kept, in arrival order.
    let (_, mut socket) = http
        .ws(channel["connectUri"].as_str().unwrap())
        .max_frame_size(16 * 1024 * 1024)
        .connect()
        .await
        .unwrap();
    let frames: Rc<RefCell<Vec<String>>> = Rc::default();
    let closed = Rc::new(RefCell::new(false));
    let reader = {
        let frames = frames.clone();
        let closed = closed.clone();
        actix_rt::spawn(async move {
            while let Some(frame) = socket.next().await {
                match frame {
                    Ok(ws::Frame::Text(bytes)) => frames
                        .borrow_mut()
                        .push(String::from_utf8(bytes.to_vec()).unwrap()),
                    Ok(ws::Frame::Close(_)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            *closed.borrow_mut() = true;
        })
    };

    let mut options = SimulatorOptions::new(
        &emulator.base_url(),
        emulator.client_id(),
        emulator.client_secret(),
    );
    options.scenario = Scenario::from_toml(FAST).unwrap();
    options.conversations = 200;
    options.concurrency = 40;
    options.rate_per_second = Some(200.0);
    options.seed = 11;
    options.poll_interval = Duration::from_millis(100);
    options.conversation_slack = Duration::from_secs(120);
    let report = Simulator::new(options).run().await.unwrap();
    assert_eq!(report.conversations_completed, 200, "{report}");
    assert_eq!(report.conversations_failed, 0, "{report}");

    // Every conversation of the truth, joined from what the socket delivered, must end
    // where the emulator's ground truth is.
    let truth: Value = http
        .get(format!("{}/emulator/v1/truth", emulator.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .limit(64 * 1024 * 1024)
        .await
        .unwrap();
    let truth = truth["conversations"].as_array().unwrap().clone();
    // Agentless shapes with several sends open one conversation per send, so the org ran
    // at least as many conversations as the simulator planned.
    assert!(truth.len() >= 200, "{}", truth.len());
    let expected_end: BTreeMap<String, Value> = truth
        .iter()
        .map(|c| (c["id"].as_str().unwrap().to_owned(), c.clone()))
        .collect();
    let caught_up = eventually(Duration::from_secs(60), || {
        let frames = frames.clone();
        let expected_end = expected_end.clone();
        async move { mismatches(&frames.borrow(), &expected_end).is_empty() }
    })
    .await;
    assert!(!*closed.borrow(), "the socket was closed during the run");
    assert!(
        caught_up,
        "{:?}",
        mismatches(&frames.borrow(), &expected_end)
            .iter()
            .take(10)
            .collect::<Vec<_>>()
    );
    reader.abort();

    // Analytics: the details query over the run, paged by 37, returns each conversation
    // exactly once and all of them.
    let interval = format!(
        "{}/{}",
        (chrono::Utc::now() - chrono::Duration::hours(1))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        (chrono::Utc::now() + chrono::Duration::minutes(1))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    let mut seen = Vec::new();
    let mut total_hits = None;
    for page in 1.. {
        let body = json!({"interval": interval, "order": "asc", "paging": {"pageSize": 37, "pageNumber": page}});
        let result = api(
            &http,
            &emulator,
            &token,
            "POST",
            "/analytics/conversations/details/query",
            body,
        )
        .await;
        total_hits.get_or_insert(result["totalHits"].as_u64().unwrap());
        let conversations = result["conversations"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if conversations.is_empty() {
            break;
        }
        seen.extend(
            conversations
                .iter()
                .map(|c| c["conversationId"].as_str().unwrap().to_owned()),
        );
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(
        unique.len(),
        seen.len(),
        "a conversation was repeated across pages"
    );
    assert_eq!(unique.len(), truth.len());
    assert_eq!(total_hits, Some(truth.len() as u64));
    assert!(unique.iter().all(|id| expected_end.contains_key(*id)));
    emulator.stop().await;
}

/// Conversations whose joined socket snapshots differ from the truth (per participant
/// lifecycle and per message status), as readable lines.
fn mismatches(frames: &[String], truth: &BTreeMap<String, Value>) -> Vec<String> {
    let mut joined: BTreeMap<String, Conversation> = BTreeMap::new();
    for frame in frames {
        if let Ok(Classified::Snapshot { snapshot, .. }) = classify(frame) {
            let id = snapshot.conversation_id.to_string();
            let conversation = joined.entry(id).or_insert_with(|| {
                Conversation::new(ConversationId::from(
                    snapshot.conversation_id.text().as_str(),
                ))
            });
            conversation.apply_snapshot(&snapshot).unwrap();
        }
    }
    let mut problems = Vec::new();
    for (id, expected) in truth {
        let Some(conversation) = joined.get(id) else {
            problems.push(format!("{id}: no snapshot received"));
            continue;
        };
        for participant in expected["participants"].as_array().unwrap() {
            let pid = participant["id"].as_str().unwrap();
            let lifecycle = conversation
                .state
                .participants
                .get(&pid.into())
                .map(|p| p.lifecycle().as_str());
            if lifecycle != participant["lifecycle"].as_str() {
                problems.push(format!(
                    "{id}/{pid}: {lifecycle:?} vs {}",
                    participant["lifecycle"]
                ));
            }
        }
        for message in expected["messages"].as_array().unwrap() {
            let mid = message["id"].as_str().unwrap();
            let status = conversation
                .state
                .messages
                .get(&mid.into())
                .and_then(|m| m.status())
                .map(|s| s.as_str().to_owned());
            if status.as_deref() != message["status"].as_str() {
                problems.push(format!(
                    "{id}/message {mid}: {status:?} vs {}",
                    message["status"]
                ));
            }
        }
    }
    problems
}
