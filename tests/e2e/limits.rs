//! Bounded servers: every server Convoy ships refuses an oversized request body with 413
//! before buffering it (the admin API, the emulator, the CRM sink).
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

use crate::support::client;

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
