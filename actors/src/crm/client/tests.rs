//! The client against `convoy crm-sink` on 127.0.0.1:0: every auth mode, refused
//! credentials, conditional summary writes, per-record 207 answers, and the "maybe
//! delivered" cases (connection lost after the sink stored the batch, timeouts) resolved
//! by resending with the same key.

use std::rc::Rc;
use std::time::{Duration, Instant};

use convoy::config::Secret;
use convoy::crm::answer::RecordRejection;
use serde_json::json;

use super::*;
use crate::crm_sink::{CrmSink, CrmSinkOptions, FaultSettings, RecordJudge, SinkAuth};

fn config(endpoint: &str, auth: CrmAuth) -> CrmConfig {
    CrmConfig {
        endpoint: endpoint.to_owned(),
        auth,
        batch_size: 100,
        flush_interval: Duration::from_secs(1),
        max_batch_bytes: 1024 * 1024,
        max_in_flight: 8,
        request_timeout: Duration::from_secs(30),
        retry_max_delay: Duration::from_secs(60),
    }
}

fn records(ids: &[&str]) -> Vec<CrmRecord> {
    ids.iter()
        .map(|id| CrmRecord {
            id: (*id).to_owned(),
            conversation_id: "c1".to_owned(),
            kind: "message.status".to_owned(),
            payload: json!({"schema": 1}).into(),
        })
        .collect()
}

async fn sink(options: CrmSinkOptions) -> CrmSink {
    CrmSink::start(options).await.unwrap()
}

fn acknowledged_all() -> BatchVerdict {
    BatchVerdict::Acknowledged {
        rejected: vec![],
        retry: vec![],
    }
}

/// Polls `condition` every 10 ms until it holds or 30 s pass.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}

#[actix_rt::test]
async fn every_auth_mode_is_accepted_by_a_sink_demanding_it() {
    let modes = [
        ("none", CrmAuth::None),
        (
            "bearer:t0ken",
            CrmAuth::Bearer {
                token: Secret::new("t0ken".to_owned()),
            },
        ),
        (
            "basic:crm:pa:ss",
            CrmAuth::Basic {
                username: "crm".to_owned(),
                password: Secret::new("pa:ss".to_owned()),
            },
        ),
        (
            "hmac:k3y",
            CrmAuth::Hmac {
                secret: Secret::new("k3y".to_owned()),
            },
        ),
    ];
    for (sink_auth, client_auth) in modes {
        let sink = sink(CrmSinkOptions {
            auth: sink_auth.parse::<SinkAuth>().unwrap(),
            ..CrmSinkOptions::default()
        })
        .await;
        let client = CrmClient::new(&config(&sink.base_url(), client_auth));
        let answer = client
            .post_batch(&records(&["a", "b"]), "key-1")
            .await
            .unwrap();
        assert_eq!(answer.status, 200, "{sink_auth}");
        assert_eq!(answer.verdict, acknowledged_all());
        let stored = client
            .put_summary("c1", &json!({"n": 1}), UpsertPrecondition::Create)
            .await
            .unwrap();
        assert_eq!(
            stored,
            PutOutcome::Stored {
                etag: "\"1\"".into()
            },
            "{sink_auth}"
        );
        assert!(
            client.get_summary("c1").await.unwrap().is_some(),
            "{sink_auth}"
        );
        assert_eq!(sink.records().len(), 2);
        sink.stop().await;
    }
}

#[actix_rt::test]
async fn a_wrong_credential_is_refused_and_never_hidden_in_debug() {
    let sink = sink(CrmSinkOptions {
        auth: "hmac:right".parse::<SinkAuth>().unwrap(),
        ..CrmSinkOptions::default()
    })
    .await;
    let client = CrmClient::new(&config(
        &sink.base_url(),
        CrmAuth::Hmac {
            secret: Secret::new("wrong".to_owned()),
        },
    ));
    assert!(!format!("{client:?}").contains("wrong"));
    let answer = client.post_batch(&records(&["a"]), "k").await.unwrap();
    assert_eq!(answer.status, 401);
    // A credential is an operator's fix, never the records' fault: retried, not dead.
    assert!(matches!(
        answer.verdict,
        BatchVerdict::Retry { status: 401, .. }
    ));
    let refused = client.get_summary("c1").await.unwrap_err();
    assert!(matches!(refused, CrmCallError::Status { status: 401, .. }));
    assert!(refused.is_transient());
    assert!(sink.records().is_empty());
    assert_eq!(sink.stats().unauthorized, 2);

    let bearer = CrmClient::new(&config(
        &sink.base_url(),
        CrmAuth::Bearer {
            token: Secret::new("right".to_owned()),
        },
    ));
    assert_eq!(
        bearer
            .post_batch(&records(&["a"]), "k")
            .await
            .unwrap()
            .status,
        401
    );
    sink.stop().await;
}

#[actix_rt::test]
async fn summary_writes_follow_entity_tags_and_a_stale_one_gets_412() {
    let sink = sink(CrmSinkOptions::default()).await;
    let client = CrmClient::new(&config(&sink.base_url(), CrmAuth::None));
    assert_eq!(client.get_summary("c 1/x").await.unwrap(), None);
    let put = |n: i64, precondition: UpsertPrecondition| {
        let client = &client;
        async move {
            client
                .put_summary("c 1/x", &json!({"n": n}), precondition)
                .await
                .unwrap()
        }
    };
    let matching = |etag: &str| UpsertPrecondition::Match(etag.to_owned());
    assert_eq!(
        put(1, UpsertPrecondition::Create).await,
        PutOutcome::Stored {
            etag: "\"1\"".into()
        }
    );
    assert_eq!(
        put(2, UpsertPrecondition::Create).await,
        PutOutcome::PreconditionFailed
    );
    assert_eq!(
        put(3, matching("\"1\"")).await,
        PutOutcome::Stored {
            etag: "\"2\"".into()
        }
    );
    assert_eq!(
        put(4, matching("\"1\"")).await,
        PutOutcome::PreconditionFailed
    );
    assert_eq!(
        client.get_summary("c 1/x").await.unwrap(),
        Some((json!({"n": 3}), "\"2\"".to_owned()))
    );
    assert_eq!(sink.stats().precondition_failures, 2);
    sink.stop().await;
}

#[actix_rt::test]
async fn a_207_answer_names_exactly_the_rejected_records() {
    let sink = sink(CrmSinkOptions {
        reject_ratio: 0.4,
        seed: 7,
        ..CrmSinkOptions::default()
    })
    .await;
    let judge = RecordJudge {
        reject_ratio: 0.4,
        seed: 7,
    };
    let client = CrmClient::new(&config(&sink.base_url(), CrmAuth::None));
    let ids: Vec<String> = (0..30).map(|n| format!("rec-{n}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let answer = client.post_batch(&records(&refs), "k207").await.unwrap();
    assert_eq!(answer.status, 207);
    let BatchVerdict::Acknowledged { rejected, retry } = answer.verdict else {
        panic!("a 207 acknowledges the batch");
    };
    assert!(retry.is_empty());
    let expected: Vec<&String> = ids.iter().filter(|id| judge.rejects(id)).collect();
    assert!(!expected.is_empty() && expected.len() < ids.len());
    assert_eq!(rejected.iter().map(|r| &r.id).collect::<Vec<_>>(), expected);
    assert!(rejected
        .iter()
        .all(|RecordRejection { status, reason, .. }| {
            *status == 422 && reason.starts_with("rejected")
        }));
    assert_eq!(sink.records().len(), ids.len() - expected.len());
    sink.stop().await;
}

#[actix_rt::test]
async fn a_batch_stored_but_never_answered_is_maybe_delivered_and_a_resend_replays() {
    let sink = sink(CrmSinkOptions {
        faults: FaultSettings {
            reset_after_store_ratio: 1.0,
            ..FaultSettings::default()
        },
        ..CrmSinkOptions::default()
    })
    .await;
    let client = CrmClient::new(&config(&sink.base_url(), CrmAuth::None));
    let batch = records(&["a", "b", "c"]);
    let key = convoy::crm::signing::idempotency_key(&batch);
    let lost = client.post_batch(&batch, &key).await.unwrap_err();
    assert!(lost.maybe_delivered(), "{lost:?}");
    assert!(lost.is_transient());
    assert_eq!(sink.records().len(), 3, "the sink stored the batch");
    assert_eq!(sink.stats().faults.resets_after_store, 1);

    sink.set_faults(FaultSettings::default()).unwrap();
    let again = client.post_batch(&batch, &key).await.unwrap();
    assert_eq!(again.status, 200);
    assert!(again.replayed);
    assert_eq!(again.verdict, acknowledged_all());
    assert_eq!(sink.records().len(), 3, "nothing stored twice");
    assert_eq!(sink.stats().idempotent_replays, 1);
    sink.stop().await;
}

#[actix_rt::test]
async fn a_connection_dropped_before_handling_stores_nothing_and_a_resend_is_fresh() {
    let sink = sink(CrmSinkOptions {
        faults: FaultSettings {
            reset_ratio: 1.0,
            ..FaultSettings::default()
        },
        ..CrmSinkOptions::default()
    })
    .await;
    let client = CrmClient::new(&config(&sink.base_url(), CrmAuth::None));
    let lost = client.post_batch(&records(&["a"]), "k").await.unwrap_err();
    assert!(lost.maybe_delivered(), "{lost:?}");
    assert!(sink.records().is_empty());
    sink.set_faults(FaultSettings::default()).unwrap();
    let again = client.post_batch(&records(&["a"]), "k").await.unwrap();
    assert!(
        !again.replayed,
        "the key was freed when the sink dropped the request"
    );
    assert_eq!(sink.records().len(), 1);
    sink.stop().await;
}

#[actix_rt::test]
async fn the_same_key_while_the_first_request_runs_gets_409_then_the_stored_answer() {
    let sink = sink(CrmSinkOptions {
        faults: FaultSettings {
            delay_ms: 1_500,
            ..FaultSettings::default()
        },
        ..CrmSinkOptions::default()
    })
    .await;
    let client = Rc::new(CrmClient::new(&config(&sink.base_url(), CrmAuth::None)));
    let first = {
        let client = Rc::clone(&client);
        actix_rt::spawn(async move { client.post_batch(&records(&["a"]), "busy").await })
    };
    // The sink counts the delay once it admitted the key: from then on it is in progress.
    eventually("the first request is in progress", || {
        sink.stats().faults.delayed >= 1
    })
    .await;
    let second = client.post_batch(&records(&["a"]), "busy").await.unwrap();
    assert_eq!(second.status, 409);
    assert!(matches!(
        second.verdict,
        BatchVerdict::Retry { status: 409, .. }
    ));
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status, 200);
    let third = client.post_batch(&records(&["a"]), "busy").await.unwrap();
    assert!(third.replayed);
    assert_eq!(sink.records().len(), 1);
    assert_eq!(sink.stats().idempotency_in_progress, 1);
    sink.stop().await;
}

#[actix_rt::test]
async fn a_timeout_is_maybe_delivered_back_pressure() {
    let sink = sink(CrmSinkOptions {
        faults: FaultSettings {
            delay_ms: 5_000,
            ..FaultSettings::default()
        },
        ..CrmSinkOptions::default()
    })
    .await;
    let mut slow = config(&sink.base_url(), CrmAuth::None);
    slow.request_timeout = Duration::from_millis(200);
    let client = CrmClient::new(&slow);
    let error = client.post_batch(&records(&["a"]), "k").await.unwrap_err();
    assert!(
        matches!(
            error,
            CrmCallError::MaybeDelivered {
                timed_out: true,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_back_pressure());
    sink.stop().await;
}

#[actix_rt::test]
async fn a_refused_connection_was_not_sent() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = CrmClient::new(&config(&format!("http://127.0.0.1:{port}"), CrmAuth::None));
    let error = client.post_batch(&records(&["a"]), "k").await.unwrap_err();
    assert!(matches!(error, CrmCallError::NotSent(_)), "{error:?}");
    assert!(!error.maybe_delivered());
    assert!(error.is_transient());
}

#[test]
fn path_segments_are_percent_encoded() {
    assert_eq!(encode_path_segment("c 1/x"), "c%201%2Fx");
    assert_eq!(encode_path_segment("3f0a-9B_~."), "3f0a-9B_~.");
}

#[actix_rt::test]
async fn the_in_process_sink_answers_as_the_crm_sink_does() {
    let sink = InProcessSink::new();
    let client = CrmClient::in_process(
        &config("http://127.0.0.1/replay", CrmAuth::None),
        sink.clone(),
    );
    let first = client
        .post_batch(&records(&["r1", "r2"]), "k1")
        .await
        .unwrap();
    assert_eq!((first.status, first.verdict), (200, acknowledged_all()));
    // A resend under the same key, and a record held already under a new one: stored once.
    client
        .post_batch(&records(&["r1", "r2"]), "k1")
        .await
        .unwrap();
    client
        .post_batch(&records(&["r2", "r3"]), "k2")
        .await
        .unwrap();
    let ids: Vec<String> = sink.records().into_iter().map(|r| r.id).collect();
    assert_eq!(ids, ["r1", "r2", "r3"]);
    // Summaries: create once, replace under the ETag read, refuse a stale one.
    assert_eq!(client.get_summary("c1").await.unwrap(), None);
    let PutOutcome::Stored { etag } = client
        .put_summary("c1", &json!({"v": 1}), UpsertPrecondition::Create)
        .await
        .unwrap()
    else {
        panic!("not stored");
    };
    assert_eq!(
        client
            .put_summary("c1", &json!({"v": 9}), UpsertPrecondition::Create)
            .await
            .unwrap(),
        PutOutcome::PreconditionFailed
    );
    client
        .put_summary(
            "c1",
            &json!({"v": 2}),
            UpsertPrecondition::Match(etag.clone()),
        )
        .await
        .unwrap();
    assert_eq!(
        client
            .put_summary("c1", &json!({"v": 3}), UpsertPrecondition::Match(etag))
            .await
            .unwrap(),
        PutOutcome::PreconditionFailed
    );
    let (document, _) = client.get_summary("c1").await.unwrap().unwrap();
    assert_eq!(document, json!({"v": 2}));
    assert_eq!(sink.conversations().len(), 1);
}
