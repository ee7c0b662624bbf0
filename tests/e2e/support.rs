//! Shared helpers of the end-to-end tests: the rustls provider, an awc client, and
//! waiting on a condition with a generous deadline instead of sleeping and hoping.
#![allow(dead_code, clippy::expect_used)]

use std::future::Future;
use std::time::{Duration, Instant};

/// awc/rustls need exactly one process-wide crypto provider (deps.md trap 2).
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Logs when RUST_LOG asks for them (e.g. RUST_LOG=convoy_actors=debug); silent otherwise.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

pub fn client() -> awc::Client {
    install_crypto();
    awc::Client::builder()
        .timeout(Duration::from_secs(20))
        .finish()
}

/// Polls `condition` every 20 ms until it returns true or `deadline` passes; returns
/// whether it became true. Deadlines are generous: CI machines are small and loaded.
pub async fn eventually<F, Fut>(deadline: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = Instant::now() + deadline;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A client-credentials token from the emulator's `/oauth/token`.
pub async fn emulator_token(
    http: &awc::Client,
    emulator: &convoy_actors::emulator::Emulator,
) -> String {
    let mut response = http
        .post(format!("{}/oauth/token", emulator.base_url()))
        .basic_auth(emulator.client_id(), emulator.client_secret())
        .send_form(&[("grant_type", "client_credentials")])
        .await
        .expect("the token endpoint answers");
    let body: serde_json::Value = response.json().await.expect("a token response");
    body["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned()
}

/// Calls the emulator's control API (`/emulator/v1{path}`) and returns the JSON answer;
/// panics on a non-2xx status.
pub async fn control(
    http: &awc::Client,
    emulator: &convoy_actors::emulator::Emulator,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> serde_json::Value {
    let url = format!("{}/emulator/v1{path}", emulator.base_url());
    let request = match method {
        "GET" => http.get(url),
        "PUT" => http.put(url),
        _ => http.post(url),
    };
    let mut response = match body {
        Some(body) => request.send_json(&body).await,
        None => request.send().await,
    }
    .expect("the control API answers");
    assert!(
        response.status().is_success(),
        "{method} {path}: {}",
        response.status()
    );
    response
        .json()
        .limit(256 * 1024 * 1024)
        .await
        .expect("a JSON answer")
}

/// The emulator's ground truth: every conversation it ran.
pub async fn truth(
    http: &awc::Client,
    emulator: &convoy_actors::emulator::Emulator,
) -> Vec<serde_json::Value> {
    control(http, emulator, "GET", "/truth", None).await["conversations"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Starts a voice call on the org's first queue, slow enough (three turns 1.5 s apart)
/// that it is still live when a daemon subscribes its transcription topic; its id.
pub async fn slow_voice_call(
    http: &awc::Client,
    emulator: &convoy_actors::emulator::Emulator,
) -> convoy::ids::ConversationId {
    let org = control(http, emulator, "GET", "/org", None).await;
    let queue = org["queues"][0]["id"].as_str().expect("a queue").to_owned();
    let created = control(
        http,
        emulator,
        "POST",
        "/conversations/voice",
        Some(serde_json::json!({
            "queueId": queue,
            "answer_after_ms": 500,
            "reply_after_ms": 1500,
            "agent_replies": 3,
            "wrapup_after_ms": 500,
        })),
    )
    .await;
    convoy::ids::ConversationId::from(created["id"].as_str().expect("a conversation id"))
}

/// Waits (60 s at most) until the conversation's view shows a transcript segment.
pub async fn shows_transcript(
    views: &convoy_actors::conversation::ConversationViews,
    id: &convoy::ids::ConversationId,
) -> bool {
    eventually(Duration::from_secs(60), || async {
        views.get(id).is_some_and(|view| {
            view.to_json(None)["transcript"]
                .as_array()
                .is_some_and(|segments| !segments.is_empty())
        })
    })
    .await
}

/// Whether every conversation of the emulator's ground truth has ended with every agent's
/// wrap-up recorded (nothing more will happen to it).
pub fn all_finished(truth: &[serde_json::Value]) -> bool {
    truth.iter().all(|c| {
        c["ended"] == true
            && c["participants"].as_array().is_some_and(|participants| {
                participants
                    .iter()
                    .all(|p| p["purpose"] != "agent" || !p["wrapup"].is_null())
            })
    })
}

/// How `push_raw_frame` puts bytes on the wire (the emulator's `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RawKind {
    /// One text frame (the bytes must be UTF-8).
    Text,
    /// One binary frame.
    Binary,
    /// A text message whose bytes are not checked for UTF-8.
    UncheckedText,
}

/// Pushes `bytes` as one WebSocket message to the socket of `channel` (every socket when
/// `None`) through the emulator (`POST /emulator/v1/sockets/raw`); returns how many
/// sockets it was queued on.
pub async fn push_raw_frame(
    http: &awc::Client,
    emulator: &convoy_actors::emulator::Emulator,
    channel: Option<&str>,
    kind: RawKind,
    bytes: &[u8],
) -> u64 {
    let kind = match kind {
        RawKind::Text => "text",
        RawKind::Binary => "binary",
        RawKind::UncheckedText => "unchecked_text",
    };
    let mut url = format!(
        "{}/emulator/v1/sockets/raw?kind={kind}",
        emulator.base_url()
    );
    if let Some(channel) = channel {
        url.push_str(&format!("&channel={channel}"));
    }
    let mut response = http
        .post(url)
        .insert_header(("Content-Type", "application/octet-stream"))
        .timeout(Duration::from_secs(30))
        .send_body(bytes.to_vec())
        .await
        .expect("the control API answers");
    assert!(
        response.status().is_success(),
        "raw frame: {}",
        response.status()
    );
    let body: serde_json::Value = response.json().await.expect("a JSON answer");
    body["sockets"].as_u64().expect("a socket count")
}
