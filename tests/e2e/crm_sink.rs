//! The CRM test server over HTTP: batches with idempotency keys and de-duplication,
//! conditional conversation writes, credentials, inspection routes, and every injected
//! fault (5xx, 429 + Retry-After, delay, dropped connection), deterministic from the seed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use awc::http::StatusCode;
use convoy_actors::crm_sink::{CrmSink, CrmSinkOptions, FaultSettings, SinkAuth};
use serde_json::{json, Value};

fn client() -> awc::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish()
}

/// Status, `ETag`, `Retry-After` and JSON body (Null when empty) of one request.
struct Answer {
    status: StatusCode,
    etag: Option<String>,
    retry_after: Option<String>,
    replayed: bool,
    body: Value,
}

async fn send(request: awc::ClientRequest, body: Option<&Value>) -> Answer {
    let mut response = match body {
        Some(body) => request.send_json(body).await,
        None => request.send().await,
    }
    .expect("the sink answers");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
    };
    let etag = header("ETag");
    let retry_after = header("Retry-After");
    let replayed = header("Idempotent-Replayed").is_some();
    let bytes = response.body().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    Answer {
        status: response.status(),
        etag,
        retry_after,
        replayed,
        body,
    }
}

fn records(ids: &[&str], conversation: &str) -> Value {
    json!({ "records": ids.iter().map(|id| json!({
        "id": id, "conversationId": conversation, "kind": "message", "payload": { "text": id }
    })).collect::<Vec<_>>() })
}

async fn post_batch(
    client: &awc::Client,
    sink: &CrmSink,
    key: Option<&str>,
    body: &Value,
) -> Answer {
    let mut request = client.post(format!("{}/records:batch", sink.base_url()));
    if let Some(key) = key {
        request = request.insert_header(("Idempotency-Key", key));
    }
    send(request, Some(body)).await
}

#[actix_rt::test]
async fn starts_in_process_on_an_ephemeral_port_within_milliseconds() {
    let started = Instant::now();
    let sink = CrmSink::start(CrmSinkOptions::default()).await.unwrap();
    let elapsed = started.elapsed();
    assert!(
        sink.base_url().starts_with("http://127.0.0.1:"),
        "{}",
        sink.base_url()
    );
    assert!(!sink.base_url().ends_with(":0"));
    assert!(elapsed < Duration::from_secs(2), "start took {elapsed:?}");
    let answer = send(
        client().get(format!("{}/_sink/stats", sink.base_url())),
        None,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["requests"], 0);
    sink.stop().await;
}

#[actix_rt::test]
async fn batches_need_an_idempotency_key_and_dedupe_by_record_id() {
    let sink = CrmSink::start(CrmSinkOptions::default()).await.unwrap();
    let client = client();

    let missing = post_batch(&client, &sink, None, &records(&["r1"], "c1")).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing.body["error"], "missing_idempotency_key");

    let first = post_batch(&client, &sink, Some("k1"), &records(&["r1", "r2"], "c1")).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.body, json!({ "accepted": 2, "duplicates": 0 }));

    let overlap = post_batch(&client, &sink, Some("k2"), &records(&["r2", "r3"], "c2")).await;
    assert_eq!(overlap.body, json!({ "accepted": 1, "duplicates": 1 }));

    // Same key, same body: the original answer, nothing processed again.
    let replay = post_batch(&client, &sink, Some("k1"), &records(&["r1", "r2"], "c1")).await;
    assert_eq!(replay.status, StatusCode::OK);
    assert!(replay.replayed);
    assert_eq!(replay.body, json!({ "accepted": 2, "duplicates": 0 }));

    // Same key, different body: refused.
    let reused = post_batch(&client, &sink, Some("k1"), &records(&["r9"], "c1")).await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reused.body["error"], "idempotency_key_reused");

    let ids: Vec<String> = sink.records().into_iter().map(|r| r.id).collect();
    assert_eq!(ids, ["r1", "r2", "r3"]);

    let listed = send(
        client.get(format!("{}/_sink/records", sink.base_url())),
        None,
    )
    .await;
    assert_eq!(listed.body["records"].as_array().unwrap().len(), 3);
    assert_eq!(listed.body["records"][2]["conversationId"], "c2");
    let filtered = send(
        client.get(format!(
            "{}/_sink/records?conversationId=c2",
            sink.base_url()
        )),
        None,
    )
    .await;
    assert_eq!(filtered.body["records"].as_array().unwrap().len(), 1);

    let stats = sink.stats();
    assert_eq!(stats.batches, 2);
    assert_eq!(stats.duplicates, 1);
    assert_eq!(stats.idempotent_replays, 1);
    assert_eq!(stats.idempotency_conflicts, 1);
    assert_eq!(stats.requests, 5);

    let reset = send(
        client.delete(format!("{}/_sink/records", sink.base_url())),
        None,
    )
    .await;
    assert_eq!(reset.status, StatusCode::NO_CONTENT);
    assert!(sink.records().is_empty());
    assert_eq!(sink.stats().requests, 0);
    sink.stop().await;
}

#[actix_rt::test]
async fn malformed_and_oversized_batches_are_refused_with_the_path() {
    let sink = CrmSink::start(CrmSinkOptions {
        max_batch: 2,
        ..CrmSinkOptions::default()
    })
    .await
    .unwrap();
    let client = client();
    let bad = json!({ "records": [{ "id": "a", "conversationId": "c" }] });
    let answer = post_batch(&client, &sink, Some("k"), &bad).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.body["error"], "invalid_request");
    assert!(
        answer.body["message"]
            .as_str()
            .unwrap()
            .contains("records[0]"),
        "{}",
        answer.body
    );
    let big = post_batch(&client, &sink, Some("k"), &records(&["a", "b", "c"], "c")).await;
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(sink.stats().rejected, 2);
    sink.stop().await;
}

#[actix_rt::test]
async fn conversation_documents_follow_etags() {
    let sink = CrmSink::start(CrmSinkOptions::default()).await.unwrap();
    let client = client();
    let url = format!("{}/conversations/conv-1", sink.base_url());

    let missing = send(client.get(&url), None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.body["error"], "not_found");

    // If-Match on a document that does not exist: 412.
    let stale = send(
        client.put(&url).insert_header(("If-Match", "\"1\"")),
        Some(&json!({"v": 0})),
    )
    .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);

    let created = send(
        client.put(&url).insert_header(("If-None-Match", "*")),
        Some(&json!({ "v": 1 })),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.etag.as_deref(), Some("\"1\""));

    let again = send(
        client.put(&url).insert_header(("If-None-Match", "*")),
        Some(&json!({ "v": 1 })),
    )
    .await;
    assert_eq!(again.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(again.body["error"], "precondition_failed");
    assert_eq!(again.etag.as_deref(), Some("\"1\""));

    let read = send(client.get(&url), None).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.etag.as_deref(), Some("\"1\""));
    assert_eq!(read.body, json!({ "v": 1 }));

    let updated = send(
        client.put(&url).insert_header(("If-Match", "\"1\"")),
        Some(&json!({ "v": 2 })),
    )
    .await;
    assert_eq!(updated.status, StatusCode::OK);
    assert_eq!(updated.etag.as_deref(), Some("\"2\""));

    // A writer still holding version 1 loses.
    let lost = send(
        client.put(&url).insert_header(("If-Match", "\"1\"")),
        Some(&json!({ "v": 3 })),
    )
    .await;
    assert_eq!(lost.status, StatusCode::PRECONDITION_FAILED);
    assert!(lost.body["message"].as_str().unwrap().contains("version 2"));
    assert_eq!(
        sink.conversation("conv-1").unwrap().document,
        json!({ "v": 2 })
    );

    let unchanged = send(
        client.get(&url).insert_header(("If-None-Match", "\"2\"")),
        None,
    )
    .await;
    assert_eq!(unchanged.status, StatusCode::NOT_MODIFIED);

    let bad_tag = send(
        client.put(&url).insert_header(("If-Match", "2")),
        Some(&json!({ "v": 3 })),
    )
    .await;
    assert_eq!(bad_tag.status, StatusCode::BAD_REQUEST);

    let listed = send(
        client.get(format!("{}/_sink/conversations", sink.base_url())),
        None,
    )
    .await;
    assert_eq!(listed.body["conversations"][0]["version"], 2);
    let stats = sink.stats();
    assert_eq!(stats.conversation_writes, 2);
    assert_eq!(stats.precondition_failures, 3);
    sink.stop().await;
}

#[actix_rt::test]
async fn unconditional_writes_can_be_required_to_carry_a_precondition() {
    let lenient = CrmSink::start(CrmSinkOptions::default()).await.unwrap();
    let strict = CrmSink::start(CrmSinkOptions {
        require_precondition: true,
        ..CrmSinkOptions::default()
    })
    .await
    .unwrap();
    let client = client();
    let upsert = send(
        client.put(format!("{}/conversations/c", lenient.base_url())),
        Some(&json!({ "a": 1 })),
    )
    .await;
    assert_eq!(upsert.status, StatusCode::CREATED);
    let refused = send(
        client.put(format!("{}/conversations/c", strict.base_url())),
        Some(&json!({ "a": 1 })),
    )
    .await;
    assert_eq!(refused.status, StatusCode::PRECONDITION_REQUIRED);
    assert_eq!(refused.body["error"], "precondition_required");
    lenient.stop().await;
    strict.stop().await;
}

#[actix_rt::test]
async fn credentials_are_checked_on_contract_routes_only() {
    let sink = CrmSink::start(CrmSinkOptions {
        auth: "bearer:sink-token".parse::<SinkAuth>().unwrap(),
        ..CrmSinkOptions::default()
    })
    .await
    .unwrap();
    let client = client();
    let body = records(&["a"], "c");
    let anonymous = post_batch(&client, &sink, Some("k"), &body).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.body["error"], "unauthorized");
    let wrong = send(
        client
            .post(format!("{}/records:batch", sink.base_url()))
            .insert_header(("Idempotency-Key", "k"))
            .bearer_auth("nope"),
        Some(&body),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let right = send(
        client
            .post(format!("{}/records:batch", sink.base_url()))
            .insert_header(("Idempotency-Key", "k"))
            .bearer_auth("sink-token"),
        Some(&body),
    )
    .await;
    assert_eq!(right.status, StatusCode::OK);
    // The inspection routes stay open.
    let stats = send(client.get(format!("{}/_sink/stats", sink.base_url())), None).await;
    assert_eq!(stats.body["unauthorized"], 2);
    sink.stop().await;

    let basic = CrmSink::start(CrmSinkOptions {
        auth: "basic:crm:pa:ss".parse::<SinkAuth>().unwrap(),
        ..CrmSinkOptions::default()
    })
    .await
    .unwrap();
    let url = format!("{}/conversations/x", basic.base_url());
    let wrong = send(client.get(&url).basic_auth("crm", "pass"), None).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let right = send(client.get(&url).basic_auth("crm", "pa:ss"), None).await;
    assert_eq!(right.status, StatusCode::NOT_FOUND);
    basic.stop().await;
}

#[actix_rt::test]
async fn injected_errors_and_rate_limits_are_answered_and_counted() {
    let sink = CrmSink::start(CrmSinkOptions {
        faults: FaultSettings {
            error_ratio: 1.0,
            ..FaultSettings::default()
        },
        ..CrmSinkOptions::default()
    })
    .await
    .unwrap();
    let client = client();
    let answer = post_batch(&client, &sink, Some("k"), &records(&["a"], "c")).await;
    assert!(answer.status.is_server_error(), "{}", answer.status);
    assert_eq!(answer.body["error"], "injected_fault");
    assert!(sink.records().is_empty());

    // Switch to rate limiting over the control route.
    let set = send(
        client.put(format!("{}/_sink/faults", sink.base_url())),
        Some(&json!({ "rate_limit_ratio": 1.0, "retry_after_secs": 7 })),
    )
    .await;
    assert_eq!(set.status, StatusCode::OK);
    let limited = post_batch(&client, &sink, Some("k"), &records(&["a"], "c")).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.retry_after.as_deref(), Some("7"));

    let invalid = send(
        client.put(format!("{}/_sink/faults", sink.base_url())),
        Some(&json!({ "error_ratio": 0.7, "reset_ratio": 0.7 })),
    )
    .await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
    let unknown = send(
        client.put(format!("{}/_sink/faults", sink.base_url())),
        Some(&json!({ "eror_ratio": 0.1 })),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);

    let stats = sink.stats();
    assert_eq!(stats.faults.errors, 1);
    assert_eq!(stats.faults.rate_limited, 1);
    assert_eq!(stats.batches, 0);
    sink.stop().await;
}

#[actix_rt::test]
async fn a_reset_drops_the_connection_without_any_response() {
    let sink = CrmSink::start(CrmSinkOptions {
        faults: FaultSettings {
            reset_ratio: 1.0,
            ..FaultSettings::default()
        },
        ..CrmSinkOptions::default()
    })
    .await
    .unwrap();
    let client = client();
    let result = client
        .post(format!("{}/records:batch", sink.base_url()))
        .insert_header(("Idempotency-Key", "k"))
        .send_json(&records(&["a"], "c"))
        .await;
    assert!(
        result.is_err(),
        "expected no response, got {:?}",
        result.map(|r| r.status())
    );
    assert_eq!(sink.stats().faults.resets, 1);
    assert!(sink.records().is_empty());
    // The sink itself is fine: the next request (faults off) is served.
    sink.set_faults(FaultSettings::default()).unwrap();
    let answer = post_batch(&client, &sink, Some("k"), &records(&["a"], "c")).await;
    assert_eq!(answer.status, StatusCode::OK);
    sink.stop().await;
}

#[actix_rt::test]
async fn delay_slows_every_contract_request() {
    let sink = CrmSink::start(CrmSinkOptions {
        faults: FaultSettings {
            delay_ms: 150,
            ..FaultSettings::default()
        },
        ..CrmSinkOptions::default()
    })
    .await
    .unwrap();
    let client = client();
    let started = Instant::now();
    let answer = send(
        client.get(format!("{}/conversations/x", sink.base_url())),
        None,
    )
    .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert!(started.elapsed() >= Duration::from_millis(150));
    // Inspection is never delayed (no assertion on its speed: only that it is not counted).
    send(client.get(format!("{}/_sink/stats", sink.base_url())), None).await;
    assert_eq!(sink.stats().faults.delayed, 1);
    sink.stop().await;
}

#[actix_rt::test]
async fn the_same_seed_injects_the_same_faults_in_the_same_order() {
    let faults = FaultSettings {
        error_ratio: 0.3,
        rate_limit_ratio: 0.3,
        ..FaultSettings::default()
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        let sink = CrmSink::start(CrmSinkOptions {
            faults,
            seed: 42,
            ..CrmSinkOptions::default()
        })
        .await
        .unwrap();
        let client = client();
        let mut statuses = Vec::new();
        for n in 0..40 {
            let answer = post_batch(
                &client,
                &sink,
                Some(&format!("k{n}")),
                &records(&[&format!("r{n}")], "c"),
            )
            .await;
            statuses.push(answer.status.as_u16());
        }
        sink.stop().await;
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1]);
    assert!(
        runs[0].contains(&200) && runs[0].contains(&429),
        "{:?}",
        runs[0]
    );
    assert!(runs[0].iter().any(|s| *s >= 500), "{:?}", runs[0]);
}

#[actix_rt::test]
async fn unknown_routes_answer_json_404() {
    let sink = CrmSink::start(CrmSinkOptions::default()).await.unwrap();
    let answer = send(client().get(format!("{}/nope", sink.base_url())), None).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.body["error"], "not_found");
    sink.stop().await;
}
