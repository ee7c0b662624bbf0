//! Bounded servers: every server Convoy ships refuses an oversized request body with 413
//! before buffering it (the admin API, the emulator, the CRM sink). And the daemon's own
//! limits (issue 11, reliability suite "Limits"), each with back-pressure or a clear
//! signal and never a crash or a silent loss: a WebSocket message over
//! `stream.max_frame_bytes` is refused (counted for the daemon, metric, log), the socket
//! reconnects and the gap is reconciled; a flood of conversations past
//! `conversations.max_live` makes them take turns (the least recently active retired,
//! rebuilt on its next event: counted, logged, shown on `/readyz`) and every one still
//! reaches the truth. The outbox cap is `crm_sync.rs`'s
//! `a_full_outbox_applies_back_pressure_and_drains_without_loss`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use convoy_actors::admin::{
    AdminServer, ConversationViews, HealthBoard, OutboxView, WriteStatuses,
};
use convoy_actors::crm_sink::{CrmSink, CrmSinkOptions};
use convoy_actors::emulator::{Emulator, EmulatorOptions};
use convoy_actors::outbox_writer::OutboxGate;
use convoy_actors::sla::SlaViews;
use convoy_actors::telemetry::Telemetry;

use convoy::stream::rejections::RejectionKind;
use convoy_actors::telemetry::names;
use serde_json::{json, Value};

use crate::daemon::Run;
use crate::support::{client, eventually, push_raw_frame, RawKind};

/// A JSON array of `bytes` bytes (a string element, so it is well-formed).
fn oversized_json(bytes: usize) -> String {
    format!("[\"{}\"]", "x".repeat(bytes))
}

async fn status_of(method: &str, url: String, body: String) -> u16 {
    let http = client();
    let request = match method {
        "PUT" => http.put(url),
        _ => http.post(url),
    }
    .insert_header(("Content-Type", "application/json"))
    .timeout(Duration::from_secs(30));
    request.send_body(body).await.unwrap().status().as_u16()
}

#[actix_rt::test]
async fn the_admin_api_refuses_bodies_over_its_limit() {
    let server = AdminServer::start(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(HealthBoard::new(Duration::from_secs(60))),
        ConversationViews::default(),
        WriteStatuses::default(),
        Telemetry::install().unwrap(),
        OutboxView {
            gate: Arc::new(OutboxGate::new(1_000, 0)),
            sla: SlaViews::default(),
        },
        None,
    )
    .unwrap();
    let url = format!("http://{}/outbox/retry-dead", server.local_addr());
    let too_big = oversized_json(convoy_actors::admin::MAX_BODY_BYTES + 1);
    assert_eq!(status_of("POST", url.clone(), too_big).await, 413);
    // Within the limit the request reaches the route, which reads it (and finds no
    // selection in it).
    assert_eq!(status_of("POST", url, "{}".to_owned()).await, 400);
    server.stop().await;
}

#[actix_rt::test]
async fn the_emulator_refuses_json_bodies_over_its_limit() {
    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let url = format!("{}/emulator/v1/faults", emulator.base_url());
    let too_big = oversized_json(convoy_actors::emulator::api::MAX_JSON_BODY_BYTES + 1);
    assert_eq!(status_of("PUT", url, too_big).await, 413);
    emulator.stop().await;
}

#[actix_rt::test]
async fn the_crm_sink_refuses_bodies_over_its_limit() {
    let sink = CrmSink::start(CrmSinkOptions::default()).await.unwrap();
    let url = format!("{}/records:batch", sink.base_url());
    let too_big = oversized_json(convoy_actors::crm_sink::MAX_BODY_BYTES + 1);
    assert_eq!(status_of("POST", url, too_big).await, 413);
    sink.stop().await;
}

/// `stream.max_frame_bytes` in the tests below (64 KiB; the lowest allowed is 4 KiB).
const FRAME_CAP: usize = 64 * 1024;

/// A valid heartbeat frame padded to `bytes` bytes with an extra field Convoy ignores.
fn padded_heartbeat(bytes: usize) -> Vec<u8> {
    let frame = json!({
        "topicName": "channel.metadata",
        "eventBody": {"message": "WebSocket Heartbeat"},
        "padding": "",
    })
    .to_string();
    let padding = bytes.saturating_sub(frame.len());
    frame
        .replace(
            r#""padding":"""#,
            &format!(r#""padding":"{}""#, "p".repeat(padding)),
        )
        .into_bytes()
}

async fn readyz(run: &Run) -> (u16, Value) {
    let mut response = run
        .http
        .get(format!("http://{}/readyz", run.daemon.admin.local_addr()))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    (response.status().as_u16(), body)
}

#[actix_rt::test]
async fn a_websocket_message_over_max_frame_bytes_is_refused_then_the_stream_reconnects_and_catches_up(
) {
    let run = Run::start(
        EmulatorOptions::default(),
        &format!("[stream]\nmax_frame_bytes = {FRAME_CAP}\n"),
    )
    .await;
    let refused_metric = run.metric(names::STREAM_OVERSIZED_FRAMES).await;
    let before = run.stream_status().await;
    let channel = before.links[0].channel_id.clone().unwrap();
    let connects_before = before.totals.connects;
    // Just under the cap: an ordinary frame, skipped by nobody.
    let under = padded_heartbeat(FRAME_CAP - 1024);
    assert_eq!(
        push_raw_frame(
            &run.http,
            &run.emulator,
            Some(&channel),
            RawKind::Text,
            &under
        )
        .await,
        1
    );
    // Over it: refused before it is buffered whole.
    let over = padded_heartbeat(FRAME_CAP * 2);
    assert_eq!(
        push_raw_frame(
            &run.http,
            &run.emulator,
            Some(&channel),
            RawKind::Text,
            &over
        )
        .await,
        1
    );
    let refused = eventually(Duration::from_secs(60), || async {
        let status = run.stream_status().await;
        status.rejections.refused >= 1 && status.totals.connects > connects_before
    })
    .await;
    let status = run.stream_status().await;
    assert!(refused, "refused and reconnected: {status:?}");
    // Exactly the one over the cap, with the reason and the setting's value.
    assert_eq!(status.rejections.refused, 1, "{:?}", status.rejections);
    assert_eq!(status.rejections.malformed, 0, "{:?}", status.rejections);
    let rejection = &status.rejections.recent[0];
    assert_eq!(rejection.kind, RejectionKind::Refused);
    assert_eq!(rejection.reason, "too_large");
    assert!(
        rejection
            .detail
            .contains(&format!("stream.max_frame_bytes = {FRAME_CAP}")),
        "{rejection:?}"
    );
    assert!(status.totals.reconnects >= 1, "{:?}", status.totals);
    assert!(
        status.totals.reconciliations >= 1,
        "the gap is reconciled: {:?}",
        status.totals
    );
    assert!(run.metric(names::STREAM_OVERSIZED_FRAMES).await > refused_metric);
    // Back to work: ready again, and a conversation started now is followed to the end.
    let ready = eventually(Duration::from_secs(60), || async {
        run.daemon.board.readiness_now().ready
    })
    .await;
    assert!(ready, "{:?}", run.daemon.board.readiness_now());
    let report = run.simulate(3, 7).await;
    assert_eq!(report.conversations_failed, 0, "{report}");
    run.assert_converges().await;
    run.stop().await;
}

/// `conversations.max_live` in the flood below, far under the conversations run at once.
const MAX_LIVE: usize = 4;

#[actix_rt::test]
async fn a_flood_past_max_live_takes_turns_is_reported_on_readyz_and_loses_no_conversation() {
    let run = Run::start(
        EmulatorOptions::default(),
        &format!("[conversations]\nmax_live = {MAX_LIVE}\n"),
    )
    .await;
    let (_, body) = readyz(&run).await;
    assert_eq!(body["checks"]["conversations"]["max_live"], MAX_LIVE);
    assert_eq!(body["checks"]["conversations"]["evicted_at_capacity"], 0);

    // Forty conversations started at 40 a second: far more live at once than the cap.
    let report = run.simulate_at(40, 4040, 40.0).await;
    assert_eq!(report.conversations_failed, 0, "{report}");
    // Nothing lost: every conversation, retired at the cap or not, ends equal to the truth.
    run.assert_converges().await;
    assert!(run.truth().await.len() >= 40);

    let stats = run.router_stats().await;
    assert!(
        stats.evicted_at_capacity > 0,
        "the cap was reached and made room: {stats:?}"
    );
    assert!(stats.live <= MAX_LIVE, "{stats:?}");
    // The signal: counted for this daemon, on `/readyz` (ready all the same: turn-taking
    // loses nothing), and in the process-wide metric.
    let (status, body) = readyz(&run).await;
    assert_eq!(status, 200, "{body}");
    let check = &body["checks"]["conversations"];
    assert_eq!(check["ok"], true, "{check}");
    assert_eq!(
        check["evicted_at_capacity"], stats.evicted_at_capacity,
        "{check}"
    );
    assert!(
        check["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("retired")),
        "{check}"
    );
    assert!(
        run.metric(names::CONVERSATIONS_EVICTED).await >= stats.evicted_at_capacity as f64,
        "the eviction counter counts them"
    );
    run.stop().await;
}
