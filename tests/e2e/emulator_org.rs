//! The emulator's org over the wire, as a Genesys client sees it: the directory listings,
//! open messaging creating and continuing conversations that synthetic agents answer, the
//! conversation REST paths with their 202/200 answers and their 404/400/409 errors, strict
//! `If-Match`, receipts, analytics (details paging, the 100 000 cap, aggregates, async jobs)
//! and the control routes (org, routing, truth, voice, touch). Snapshots received on a
//! subscribed WebSocket parse with Convoy's own parser. Every wait is on a condition with a
//! generous deadline; every port is ephemeral.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use awc::http::{Method, StatusCode};
use awc::ws;
use convoy::parse::{classify_value, Classified};
use convoy_actors::emulator::{Emulator, EmulatorOptions};
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::support::eventually;

const DEADLINE: Duration = Duration::from_secs(15);

fn client() -> awc::Client {
    crate::support::install_crypto();
    awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish()
}

fn options(strict: bool) -> EmulatorOptions {
    EmulatorOptions {
        rate_limit_per_minute: 0,
        seed: 11,
        strict_if_match: strict,
        ..EmulatorOptions::default()
    }
}

#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: awc::http::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// An emulator with a token, and the org's directory.
struct Harness {
    emulator: Emulator,
    client: awc::Client,
    token: String,
    queues: Vec<String>,
    integrations: Vec<String>,
    users: Vec<String>,
}

impl Harness {
    async fn start(strict: bool) -> Harness {
        let emulator = Emulator::start(options(strict)).await.unwrap();
        let client = client();
        let mut response = client
            .post(format!("{}/oauth/token", emulator.base_url()))
            .basic_auth(emulator.client_id(), emulator.client_secret())
            .send_form(&[("grant_type", "client_credentials")])
            .await
            .unwrap();
        let token: Value = response.json().await.unwrap();
        let token = token["access_token"].as_str().unwrap().to_owned();
        let mut harness = Harness {
            emulator,
            client,
            token,
            queues: Vec::new(),
            integrations: Vec::new(),
            users: Vec::new(),
        };
        let org = harness.control(Method::GET, "/org", None).await;
        assert_eq!(org.status, StatusCode::OK);
        for queue in org.body["queues"].as_array().unwrap() {
            harness
                .queues
                .push(queue["id"].as_str().unwrap().to_owned());
            harness
                .integrations
                .push(queue["integrationId"].as_str().unwrap().to_owned());
        }
        for user in org.body["users"].as_array().unwrap() {
            harness.users.push(user["id"].as_str().unwrap().to_owned());
        }
        harness
    }

    async fn send(
        &self,
        url: String,
        method: Method,
        body: Option<Value>,
        headers: &[(&str, &str)],
        bearer: bool,
    ) -> Answer {
        let mut request = self.client.request(method, url);
        if bearer {
            request = request.bearer_auth(&self.token);
        }
        for (name, value) in headers {
            request = request.insert_header((*name, *value));
        }
        let mut response = match body {
            Some(body) => request.send_json(&body).await,
            None => request.send().await,
        }
        .expect("the emulator answers");
        let bytes = response.body().limit(64 * 1024 * 1024).await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("JSON body, got {:?}", String::from_utf8_lossy(&bytes)))
        };
        Answer {
            status: response.status(),
            headers: response.headers().clone(),
            body,
        }
    }

    async fn api(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.api_with(method, path, body, &[]).await
    }

    async fn api_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let url = format!("{}/api/v2{path}", self.emulator.base_url());
        self.send(url, method, body, headers, true).await
    }

    async fn control(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let url = format!("{}/emulator/v1{path}", self.emulator.base_url());
        self.send(url, method, body, &[], false).await
    }

    /// Sends an inbound open message; returns the echo.
    async fn inbound(&self, queue: usize, sender: &str, metadata: Value) -> Value {
        let answer = self
            .api(
                Method::POST,
                &format!(
                    "/conversations/messages/{}/inbound/open/message?prefetchConversationId=true",
                    self.integrations[queue]
                ),
                Some(json!({
                    "channel": {
                        "messageId": format!("ext-{sender}"),
                        "from": { "id": sender, "idType": "Email", "nickname": "Dana" },
                        "time": "2025-03-04T14:05:12.301Z",
                    },
                    "text": "Hi, my order never arrived",
                    "metadata": metadata,
                })),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
        answer.body
    }

    async fn truth_of(&self, id: &str) -> Value {
        let truth = self.control(Method::GET, "/truth", None).await;
        truth.body["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// Waits until the conversation has ended and every agent has wrapped up.
    async fn finished(&self, id: &str) -> bool {
        eventually(DEADLINE, || async {
            let truth = self.truth_of(id).await;
            truth["ended"] == true
                && truth["participants"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|p| p["purpose"] == "agent")
                    .all(|p| p["wrapup"].is_object())
        })
        .await
    }
}

fn fast(outcome: &str) -> Value {
    json!({
        "convoy.sim.answerAfterMs": "60",
        "convoy.sim.replyAfterMs": "60",
        "convoy.sim.agentReplies": "2",
        "convoy.sim.wrapupAfterMs": "60",
        "convoy.sim.outcome": outcome,
    })
}

fn error_of(answer: &Answer, status: StatusCode, code: &str) {
    assert_eq!(answer.status, status, "{:?}", answer.body);
    assert_eq!(answer.body["code"], code, "{:?}", answer.body);
    assert_eq!(answer.body["status"], status.as_u16());
    assert!(answer.body["message"].is_string());
    assert!(
        answer.body["contextId"].is_string(),
        "the gate adds the contextId"
    );
}

#[actix_rt::test]
async fn directory_listings_page_the_org_in_the_real_shape() {
    let h = Harness::start(false).await;
    let queues = h.api(Method::GET, "/routing/queues", None).await;
    assert_eq!(queues.status, StatusCode::OK);
    assert_eq!(queues.body["total"], 2);
    assert_eq!(queues.body["pageNumber"], 1);
    let names: Vec<&str> = queues.body["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["Queue 1", "Queue 2"]);
    let users = h
        .api(Method::GET, "/users?pageSize=4&pageNumber=2", None)
        .await;
    assert_eq!(users.body["entities"].as_array().unwrap().len(), 2);
    assert_eq!(users.body["pageCount"], 2);
    assert_eq!(users.body["total"], 6);
    assert!(users.body.get("nextUri").is_none());
    assert_eq!(
        users.body["firstUri"],
        "/api/v2/users?pageSize=4&pageNumber=1"
    );
    let bad = h.api(Method::GET, "/users?pageSize=lots", None).await;
    error_of(&bad, StatusCode::BAD_REQUEST, "bad.request");
    let routing = h.control(Method::GET, "/routing", None).await;
    assert_eq!(routing.body["outcome"], "answered");
    h.emulator.stop().await;
}

#[actix_rt::test]
async fn an_open_message_is_routed_answered_and_wrapped_up_and_rest_reads_it() {
    let h = Harness::start(false).await;
    let echo = h.inbound(0, "dana@example.com", fast("answered")).await;
    let id = echo["conversationId"].as_str().unwrap().to_owned();
    assert_eq!(echo["id"].as_str().unwrap().len(), 32);
    assert_eq!(echo["channel"]["id"], h.integrations[0].as_str());

    let conversation = h
        .api(Method::GET, &format!("/conversations/{id}"), None)
        .await;
    assert_eq!(conversation.status, StatusCode::OK);
    assert!(
        conversation.header("etag").is_none(),
        "no ETag unless strict"
    );
    assert!(conversation.body["startTime"].is_string());
    let snapshot = convoy::parse::read_conversation_body(conversation.body.clone(), "").unwrap();
    assert_eq!(snapshot.conversation_id.text().as_str(), id);

    assert!(h.finished(&id).await, "the synthetic agent finishes");
    let truth = h.truth_of(&id).await;
    let replies: Vec<&Value> = truth["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["direction"] == "outbound")
        .collect();
    assert_eq!(replies.len(), 2);
    let message = h
        .api(Method::GET, &format!("/conversations/messages/{id}"), None)
        .await;
    assert_eq!(message.status, StatusCode::OK);
    let read = convoy::parse::read_message_conversation_body(message.body.clone(), "").unwrap();
    assert_eq!(read.participants.len(), 3);
    let ended = h
        .api(Method::GET, &format!("/conversations/{id}"), None)
        .await;
    assert!(ended.body["endTime"].is_string());

    // Receipts move the first reply to delivered, then read.
    let reply = replies[0]["id"].as_str().unwrap().to_owned();
    for (status, expected) in [("Delivered", "delivery-success"), ("Read", "read")] {
        let receipt = h
            .api(
                Method::POST,
                &format!(
                    "/conversations/messages/{}/inbound/open/receipt",
                    h.integrations[0]
                ),
                Some(json!({ "id": reply, "channel": { "to": { "id": "dana@example.com" }, "time": "2025-03-04T14:06:01.900Z" }, "status": status })),
            )
            .await;
        assert_eq!(receipt.status, StatusCode::OK, "{:?}", receipt.body);
        let data = h
            .api(
                Method::GET,
                &format!("/conversations/messages/{id}/messages/{reply}"),
                None,
            )
            .await;
        assert_eq!(data.body["status"], expected);
    }
    let typing = h
        .api(
            Method::POST,
            &format!("/conversations/messages/{}/inbound/open/event", h.integrations[0]),
            Some(json!({ "channel": { "from": { "id": "dana@example.com", "idType": "Email" }, "time": "2025-03-04T14:05:58.000Z" }, "events": [{ "eventType": "Typing" }] })),
        )
        .await;
    assert_eq!(typing.status, StatusCode::OK);
    h.emulator.stop().await;
}

#[actix_rt::test]
async fn unknown_ids_are_404_and_malformed_bodies_are_400() {
    let h = Harness::start(false).await;
    let missing = h.api(Method::GET, "/conversations/nope", None).await;
    error_of(&missing, StatusCode::NOT_FOUND, "not.found");
    let missing = h
        .api(Method::GET, "/conversations/messages/nope", None)
        .await;
    error_of(&missing, StatusCode::NOT_FOUND, "not.found");
    let unknown_integration = h
        .api(
            Method::POST,
            "/conversations/messages/nope/inbound/open/message",
            Some(json!({ "channel": { "from": { "id": "x", "idType": "Email" }, "time": "2025-03-04T14:05:12.301Z" }, "text": "hi" })),
        )
        .await;
    error_of(&unknown_integration, StatusCode::NOT_FOUND, "not.found");
    let no_channel = h
        .api(
            Method::POST,
            &format!(
                "/conversations/messages/{}/inbound/open/message",
                h.integrations[0]
            ),
            Some(json!({ "text": "hi" })),
        )
        .await;
    error_of(&no_channel, StatusCode::BAD_REQUEST, "bad.request");
    assert!(
        no_channel.body["message"]
            .as_str()
            .unwrap()
            .contains("channel"),
        "{:?}",
        no_channel.body
    );
    let not_json = h
        .send(
            format!(
                "{}/api/v2/conversations/messages/{}/inbound/open/message",
                h.emulator.base_url(),
                h.integrations[0]
            ),
            Method::POST,
            None,
            &[("content-type", "application/json")],
            true,
        )
        .await;
    error_of(&not_json, StatusCode::BAD_REQUEST, "bad.request");
    let echo = h.inbound(0, "e@example.com", fast("answered")).await;
    let id = echo["conversationId"].as_str().unwrap();
    let no_participant = h
        .api(
            Method::PATCH,
            &format!("/conversations/{id}/participants/nope"),
            Some(json!({ "state": "disconnected" })),
        )
        .await;
    error_of(&no_participant, StatusCode::NOT_FOUND, "not.found");
    let bad_query = h
        .api(
            Method::POST,
            "/analytics/conversations/details/query",
            Some(json!({ "paging": { "pageSize": 10, "pageNumber": 1 } })),
        )
        .await;
    error_of(&bad_query, StatusCode::BAD_REQUEST, "bad.request");
    let no_job = h
        .api(
            Method::GET,
            "/analytics/conversations/details/jobs/nope",
            None,
        )
        .await;
    error_of(&no_job, StatusCode::NOT_FOUND, "not.found");
    h.emulator.stop().await;
}

#[actix_rt::test]
async fn strict_mode_sends_etags_and_answers_409_to_a_stale_if_match() {
    let h = Harness::start(true).await;
    let echo = h
        .inbound(
            0,
            "s@example.com",
            json!({ "convoy.sim.answerAfterMs": "600000" }),
        )
        .await;
    let id = echo["conversationId"].as_str().unwrap().to_owned();
    let got = h
        .api(Method::GET, &format!("/conversations/{id}"), None)
        .await;
    let etag = got.header("etag").unwrap().to_owned();
    let customer = got.body["participants"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/conversations/{id}/participants/{customer}/attributes");
    let attributes = json!({ "attributes": { "convoy.state": "active" } });
    let ok = h
        .api_with(
            Method::PATCH,
            &path,
            Some(attributes.clone()),
            &[("If-Match", etag.as_str())],
        )
        .await;
    assert_eq!(ok.status, StatusCode::ACCEPTED);
    assert_eq!(ok.body, Value::Null, "the generic variant answers no body");
    let after = h
        .api(Method::GET, &format!("/conversations/messages/{id}"), None)
        .await;
    let fresh = after.header("etag").unwrap().to_owned();
    assert_ne!(fresh, etag);
    // Another writer changes the conversation.
    let touched = h
        .control(Method::POST, &format!("/conversations/{id}/touch"), None)
        .await;
    assert_eq!(touched.status, StatusCode::OK);
    let stale = h
        .api_with(
            Method::PATCH,
            &format!("/conversations/messages/{id}/participants/{customer}/attributes"),
            Some(attributes.clone()),
            &[("If-Match", fresh.as_str())],
        )
        .await;
    error_of(&stale, StatusCode::CONFLICT, "general.conflict");
    assert_eq!(
        stale.body["message"],
        "The version number of the modified resource must match the version number in the database."
    );
    let current = h
        .api(Method::GET, &format!("/conversations/{id}"), None)
        .await;
    let etag = current.header("etag").unwrap().to_owned();
    let retried = h
        .api_with(
            Method::PATCH,
            &format!("/conversations/messages/{id}/participants/{customer}/attributes"),
            Some(attributes),
            &[("If-Match", etag.as_str())],
        )
        .await;
    assert_eq!(retried.status, StatusCode::ACCEPTED);
    assert!(retried.body["attributes"]["other.writer"]
        .as_str()
        .is_some());
    h.emulator.stop().await;
}

#[actix_rt::test]
async fn commands_disconnect_send_and_wrap_up_through_rest() {
    let h = Harness::start(false).await;
    let echo = h
        .inbound(
            1,
            "c@example.com",
            json!({ "convoy.sim.answerAfterMs": "0", "convoy.sim.agentReplies": "0", "convoy.sim.wrapupAfterMs": "600000" }),
        )
        .await;
    let id = echo["conversationId"].as_str().unwrap().to_owned();
    // Wait for the agent to connect.
    let connected = eventually(DEADLINE, || async {
        h.truth_of(&id).await["participants"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["purpose"] == "agent" && p["state"] == "connected")
    })
    .await;
    assert!(connected);
    let truth = h.truth_of(&id).await;
    let agent = truth["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["purpose"] == "agent")
        .unwrap()
        .clone();
    let agent_id = agent["id"].as_str().unwrap();
    let communication = agent["communicationId"].as_str().unwrap();
    let sent = h
        .api(
            Method::POST,
            &format!("/conversations/messages/{id}/communications/{communication}/messages"),
            Some(json!({ "textBody": "Sorry about that!" })),
        )
        .await;
    assert_eq!(sent.status, StatusCode::OK, "{:?}", sent.body);
    assert_eq!(sent.body["status"], "queued");
    let both = h
        .api(
            Method::POST,
            &format!("/conversations/messages/{id}/communications/{communication}/messages"),
            Some(json!({ "textBody": "x", "mediaIds": ["m"] })),
        )
        .await;
    error_of(&both, StatusCode::BAD_REQUEST, "bad.request");
    let disconnect = h
        .api(
            Method::PATCH,
            &format!("/conversations/messages/{id}/participants/{agent_id}"),
            Some(json!({ "state": "disconnected" })),
        )
        .await;
    assert_eq!(disconnect.status, StatusCode::ACCEPTED);
    let again = h
        .api(
            Method::PATCH,
            &format!("/conversations/{id}/participants/{agent_id}"),
            Some(json!({ "state": "disconnected" })),
        )
        .await;
    error_of(&again, StatusCode::CONFLICT, "general.conflict");
    let wrapup = h
        .api(
            Method::PATCH,
            &format!("/conversations/{id}/participants/{agent_id}"),
            Some(json!({ "wrapup": { "code": "d62d5012-851d-4d2b-95cd-7e4dc4bcd618", "notes": "Refund issued" } })),
        )
        .await;
    assert_eq!(wrapup.status, StatusCode::ACCEPTED);
    assert!(h.finished(&id).await);
    let over = h
        .api(
            Method::PATCH,
            &format!("/conversations/messages/{id}"),
            Some(json!({ "state": "disconnected" })),
        )
        .await;
    error_of(&over, StatusCode::CONFLICT, "general.conflict");

    // A second conversation disconnected as a whole: 200 with the Conversation.
    let echo = h.inbound(1, "c2@example.com", json!({})).await;
    let second = echo["conversationId"].as_str().unwrap().to_owned();
    let closed = h
        .api(
            Method::PATCH,
            &format!("/conversations/messages/{second}"),
            Some(json!({ "state": "disconnected" })),
        )
        .await;
    assert_eq!(closed.status, StatusCode::OK, "{:?}", closed.body);
    assert!(closed.body["endTime"].is_string());

    // Agentless and voice.
    let agentless = h
        .api(
            Method::POST,
            "/conversations/messages/agentless",
            Some(json!({ "fromAddress": h.integrations[0], "toAddress": "z@example.com", "toAddressMessengerType": "open", "textBody": "Your refund was processed." })),
        )
        .await;
    assert_eq!(
        agentless.status,
        StatusCode::ACCEPTED,
        "{:?}",
        agentless.body
    );
    let outbound = agentless.body["conversationId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        eventually(DEADLINE, || async {
            h.truth_of(&outbound).await["ended"] == true
        })
        .await
    );
    let voice = h
        .control(
            Method::POST,
            "/conversations/voice",
            Some(json!({ "queueId": h.queues[0], "answer_after_ms": 40, "reply_after_ms": 40, "wrapup_after_ms": 40 })),
        )
        .await;
    assert_eq!(voice.status, StatusCode::CREATED, "{:?}", voice.body);
    let call = voice.body["id"].as_str().unwrap().to_owned();
    assert!(h.finished(&call).await);
    let truth = h.truth_of(&call).await;
    assert!(truth["participants"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["state"] == "terminated"));
    let unknown_queue = h
        .control(
            Method::POST,
            "/conversations/voice",
            Some(json!({ "queueId": "nope" })),
        )
        .await;
    assert_eq!(unknown_queue.status, StatusCode::NOT_FOUND);
    h.emulator.stop().await;
}

#[actix_rt::test]
async fn analytics_are_computed_from_what_ran_and_page_without_gaps() {
    let h = Harness::start(false).await;
    let profile = h
        .control(
            Method::PUT,
            "/routing",
            Some(json!({ "answer_after_ms": 20, "reply_after_ms": 20, "agent_replies": 1, "wrapup_after_ms": 20 })),
        )
        .await;
    assert_eq!(profile.status, StatusCode::OK);
    assert_eq!(profile.body["answer_after_ms"], 20);
    let mut ids = BTreeSet::new();
    for n in 0..30 {
        let echo = h
            .inbound(n % 2, &format!("a{n}@example.com"), json!({}))
            .await;
        ids.insert(echo["conversationId"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        assert!(h.finished(id).await);
    }
    let interval = "2000-01-01T00:00:00.000Z/2100-01-01T00:00:00.000Z";
    let mut seen = Vec::new();
    for page in 1..=4 {
        let answer = h
            .api(
                Method::POST,
                "/analytics/conversations/details/query",
                Some(json!({ "interval": interval, "order": "desc", "paging": { "pageSize": 8, "pageNumber": page } })),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
        assert_eq!(answer.body["totalHits"], 30);
        for conversation in answer.body["conversations"].as_array().unwrap() {
            seen.push(conversation["conversationId"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(seen.len(), 30);
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), ids);
    let filtered = h
        .api(
            Method::POST,
            "/analytics/conversations/details/query",
            Some(json!({ "interval": interval, "segmentFilters": [{ "type": "and", "predicates": [{ "dimension": "queueId", "value": h.queues[1] }, { "dimension": "mediaType", "value": "message" }] }] })),
        )
        .await;
    assert_eq!(filtered.body["totalHits"], 15);
    let capped = h
        .api(
            Method::POST,
            "/analytics/conversations/details/query",
            Some(
                json!({ "interval": interval, "paging": { "pageSize": 100, "pageNumber": 1001 } }),
            ),
        )
        .await;
    error_of(&capped, StatusCode::BAD_REQUEST, "bad.request");
    assert_eq!(
        capped.body["message"],
        "Pagination may not exceed 100000 results."
    );

    let aggregates = h
        .api(
            Method::POST,
            "/analytics/conversations/aggregates/query",
            Some(json!({ "interval": interval, "granularity": "P1D", "groupBy": ["queueId"], "metrics": ["nOffered", "nConnected", "tHandle"] })),
        )
        .await;
    assert_eq!(aggregates.status, StatusCode::OK, "{:?}", aggregates.body);
    let mut offered = 0;
    for result in aggregates.body["results"].as_array().unwrap() {
        for data in result["data"].as_array().unwrap() {
            for metric in data["metrics"].as_array().unwrap() {
                if metric["metric"] == "nOffered" {
                    offered += metric["stats"]["count"].as_i64().unwrap();
                }
            }
        }
    }
    assert_eq!(offered, 30);

    let job = h
        .api(
            Method::POST,
            "/analytics/conversations/details/jobs",
            Some(json!({ "interval": interval })),
        )
        .await;
    assert_eq!(job.status, StatusCode::ACCEPTED);
    let job = job.body["jobId"].as_str().unwrap().to_owned();
    let fulfilled = eventually(DEADLINE, || async {
        h.api(
            Method::GET,
            &format!("/analytics/conversations/details/jobs/{job}"),
            None,
        )
        .await
        .body["state"]
            == "FULFILLED"
    })
    .await;
    assert!(fulfilled);
    let mut paged = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = h
            .api(
                Method::GET,
                &format!("/analytics/conversations/details/jobs/{job}/results?pageSize=7&cursor={cursor}"),
                None,
            )
            .await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        for conversation in page.body["conversations"].as_array().unwrap() {
            paged.push(conversation["conversationId"].as_str().unwrap().to_owned());
        }
        match page.body["cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(paged.len(), 30);
    assert_eq!(paged.iter().cloned().collect::<BTreeSet<_>>(), ids);
    let availability = h
        .api(
            Method::GET,
            "/analytics/conversations/details/jobs/availability",
            None,
        )
        .await;
    assert!(availability.body["dataAvailabilityDate"].is_string());
    let cancelled = h
        .api(
            Method::DELETE,
            &format!("/analytics/conversations/details/jobs/{job}"),
            None,
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::NO_CONTENT);
    h.emulator.stop().await;
}

#[actix_rt::test]
async fn snapshots_on_a_subscribed_socket_parse_as_convoy_snapshots() {
    let h = Harness::start(false).await;
    let channel = h.api(Method::POST, "/notifications/channels", None).await;
    assert_eq!(channel.status, StatusCode::OK, "{:?}", channel.body);
    let topics: Vec<Value> = h
        .queues
        .iter()
        .flat_map(|q| {
            [
                json!({ "id": format!("v2.routing.queues.{q}.conversations") }),
                json!({ "id": format!("v2.routing.queues.{q}.conversations.messages") }),
            ]
        })
        .chain(
            h.users
                .iter()
                .map(|u| json!({ "id": format!("v2.users.{u}.conversations") })),
        )
        .collect();
    let subscribed = h
        .api(
            Method::PUT,
            &format!(
                "/notifications/channels/{}/subscriptions",
                channel.body["id"].as_str().unwrap()
            ),
            Some(Value::Array(topics)),
        )
        .await;
    assert_eq!(subscribed.status, StatusCode::OK, "{:?}", subscribed.body);
    let (_, mut socket) = h
        .client
        .ws(channel.body["connectUri"].as_str().unwrap())
        .max_frame_size(16 * 1024 * 1024)
        .connect()
        .await
        .unwrap();
    let echo = h.inbound(0, "w@example.com", fast("answered")).await;
    let id = echo["conversationId"].as_str().unwrap().to_owned();
    let until = Instant::now() + DEADLINE;
    let mut shapes = BTreeSet::new();
    let mut saw_user_topic = false;
    let mut saw_end = false;
    while Instant::now() < until && !(saw_end && saw_user_topic && shapes.len() == 2) {
        let left = until.saturating_duration_since(Instant::now());
        let Ok(Some(Ok(frame))) = actix_rt::time::timeout(left, socket.next()).await else {
            break;
        };
        let ws::Frame::Text(bytes) = frame else {
            continue;
        };
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        if value["topicName"] == "channel.metadata" {
            continue;
        }
        let topic = value["topicName"].as_str().unwrap().to_owned();
        match classify_value(value).unwrap() {
            Classified::Snapshot {
                snapshot,
                topic: parsed,
            } => {
                assert_eq!(snapshot.conversation_id.text().as_str(), id);
                shapes.insert(format!("{:?}", parsed.shape));
                saw_user_topic |= topic.starts_with("v2.users.");
                saw_end |= !snapshot.participants.is_empty()
                    && snapshot.participants.iter().all(|p| p.end_time.is_some());
            }
            other => panic!("{topic} classified as {other:?}"),
        }
    }
    assert_eq!(shapes.len(), 2, "both body shapes arrived: {shapes:?}");
    assert!(
        saw_user_topic,
        "the agent's user topic carried the conversation"
    );
    assert!(saw_end, "the final snapshot arrived");
    h.emulator.stop().await;
}
