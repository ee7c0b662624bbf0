//! The emulator's platform over the wire, as a Genesys client sees it: OAuth, the `/api/v2`
//! gate (401s, 429 with Retry-After, correlation and rate-limit headers, injected faults),
//! Notifications channels and subscriptions with their limits, and the channel WebSockets
//! (heartbeat, ping/pong, one socket per channel, no replay, socket_closing, expiry).
//! Every wait is on a condition with a generous deadline; every port is ephemeral.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use awc::http::{Method, StatusCode};
use awc::ws;
use convoy::emulator::TopicEvent;
use convoy_actors::emulator::{Emulator, EmulatorOptions};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

/// Long enough for a loaded 2-core CI machine; the tests finish far sooner when it is not.
const DEADLINE: Duration = Duration::from_secs(10);

fn client() -> awc::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish()
}

/// Options for tests: no rate limit unless a test sets one, slow heartbeats unless a test
/// wants them.
fn options() -> EmulatorOptions {
    EmulatorOptions {
        rate_limit_per_minute: 0,
        seed: 7,
        ..EmulatorOptions::default()
    }
}

/// Status, the headers the tests look at, and the JSON body (Null when empty).
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

/// Reads a sent request's response into an [`Answer`]. A macro because awc's response type
/// depends on its compression features.
macro_rules! answer {
    ($sent:expr) => {{
        let mut response = $sent.expect("the emulator answers");
        let bytes = response.body().limit(16 * 1024 * 1024).await.unwrap();
        to_answer(response.status(), response.headers().clone(), &bytes)
    }};
}

fn to_answer(status: StatusCode, headers: awc::http::header::HeaderMap, bytes: &[u8]) -> Answer {
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(bytes)
            .unwrap_or_else(|_| panic!("JSON body, got {:?}", String::from_utf8_lossy(bytes)))
    };
    Answer {
        status,
        headers,
        body,
    }
}

async fn request_token(
    client: &awc::Client,
    emulator: &Emulator,
    id: &str,
    secret: &str,
    form: &[(&str, &str)],
) -> Answer {
    answer!(
        client
            .post(format!("{}/oauth/token", emulator.base_url()))
            .basic_auth(id, secret)
            .send_form(&form)
            .await
    )
}

async fn token(client: &awc::Client, emulator: &Emulator) -> String {
    let answer = request_token(
        client,
        emulator,
        emulator.client_id(),
        emulator.client_secret(),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    answer.body["access_token"].as_str().unwrap().to_owned()
}

/// One `/api/v2` call with a bearer token (or none).
async fn api(
    client: &awc::Client,
    emulator: &Emulator,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let mut request = client.request(method, format!("{}/api/v2{path}", emulator.base_url()));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    answer!(match body {
        Some(body) => request.send_json(&body).await,
        None => request.send().await,
    })
}

/// One control-API call.
async fn control(
    client: &awc::Client,
    emulator: &Emulator,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Answer {
    let request = client.request(method, format!("{}/emulator/v1{path}", emulator.base_url()));
    answer!(match body {
        Some(body) => request.send_json(&body).await,
        None => request.send().await,
    })
}

async fn create_channel(client: &awc::Client, emulator: &Emulator, token: &str) -> Value {
    let created = api(
        client,
        emulator,
        Method::POST,
        "/notifications/channels",
        Some(token),
        None,
    )
    .await;
    assert_eq!(created.status, StatusCode::OK, "{:?}", created.body);
    created.body
}

async fn subscribe(
    client: &awc::Client,
    emulator: &Emulator,
    token: &str,
    channel: &Value,
    topics: &[String],
) {
    let body = Value::from(
        topics
            .iter()
            .map(|t| json!({ "id": t }))
            .collect::<Vec<_>>(),
    );
    let path = format!(
        "/notifications/channels/{}/subscriptions",
        channel["id"].as_str().unwrap()
    );
    let answer = api(
        client,
        emulator,
        Method::PUT,
        &path,
        Some(token),
        Some(body),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
}

fn queue_ids(emulator: &Emulator) -> Vec<String> {
    emulator
        .shared()
        .org
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .queue_ids()
}

fn user_ids(emulator: &Emulator) -> Vec<String> {
    emulator
        .shared()
        .org
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .user_ids()
}

fn queue_topic(emulator: &Emulator) -> String {
    format!("v2.routing.queues.{}.conversations", queue_ids(emulator)[0])
}

fn publish(emulator: &Emulator, topic: &str, n: u64) {
    emulator.shared().publish(vec![TopicEvent {
        topic: topic.to_owned(),
        body: json!({ "n": n }),
    }]);
}

// ---- WebSocket helpers ---------------------------------------------------------------

/// What a socket produced next.
#[derive(Debug)]
enum Received {
    Text(Value),
    Pong,
    Closed,
    /// Nothing within the deadline.
    Silent,
}

/// An awc WebSocket, named by what the tests need of it.
trait Socket:
    futures_util::Stream<Item = Result<ws::Frame, awc::error::WsProtocolError>>
    + futures_util::Sink<ws::Message, Error = awc::error::WsProtocolError>
    + Unpin
{
}

impl<T> Socket for T where
    T: futures_util::Stream<Item = Result<ws::Frame, awc::error::WsProtocolError>>
        + futures_util::Sink<ws::Message, Error = awc::error::WsProtocolError>
        + Unpin
{
}

async fn connect(client: &awc::Client, connect_uri: &str) -> impl Socket {
    let (_, framed) = client
        .ws(connect_uri)
        .max_frame_size(16 * 1024 * 1024)
        .connect()
        .await
        .expect("the socket connects");
    framed
}

async fn receive(socket: &mut impl Socket, deadline: Duration) -> Received {
    match actix_rt::time::timeout(deadline, socket.next()).await {
        Err(_) => Received::Silent,
        Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(ws::Frame::Close(_)))) => Received::Closed,
        Ok(Some(Ok(ws::Frame::Text(bytes)))) => {
            Received::Text(serde_json::from_slice(&bytes).unwrap())
        }
        Ok(Some(Ok(ws::Frame::Pong(_)))) => Received::Pong,
        Ok(Some(Ok(other))) => panic!("unexpected frame {other:?}"),
    }
}

fn is_heartbeat(frame: &Value) -> bool {
    frame["topicName"] == "channel.metadata"
        && frame["eventBody"]["message"] == "WebSocket Heartbeat"
}

/// The next text frame that is not a heartbeat; panics on close or silence.
async fn next_text(socket: &mut impl Socket) -> Value {
    let until = Instant::now() + DEADLINE;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match receive(socket, left).await {
            Received::Text(frame) if is_heartbeat(&frame) => continue,
            Received::Text(frame) => return frame,
            Received::Pong => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// Waits until the socket is closed, returning the non-heartbeat text frames seen first.
async fn until_closed(socket: &mut impl Socket) -> Vec<Value> {
    let until = Instant::now() + DEADLINE;
    let mut seen = Vec::new();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match receive(socket, left).await {
            Received::Text(frame) if is_heartbeat(&frame) => {}
            Received::Text(frame) => seen.push(frame),
            Received::Pong => {}
            Received::Closed => return seen,
            Received::Silent => panic!("the socket stayed open; saw {seen:?}"),
        }
    }
}

async fn send_text(socket: &mut impl Socket, text: &str) {
    socket
        .send(ws::Message::Text(text.to_owned().into()))
        .await
        .unwrap();
}

// ---- OAuth ---------------------------------------------------------------------------

#[actix_rt::test]
async fn client_credentials_get_a_token_and_bad_credentials_get_the_oauth_errors() {
    let emulator = Emulator::start(EmulatorOptions {
        token_ttl: Duration::from_secs(3600),
        ..options()
    })
    .await
    .unwrap();
    let client = client();
    let (id, secret) = (emulator.client_id(), emulator.client_secret());
    let grant = [("grant_type", "client_credentials")];

    let ok = request_token(&client, &emulator, id, secret, &grant).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.body["token_type"], "bearer");
    assert_eq!(ok.body["expires_in"], 3600);
    assert!(!ok.body["access_token"].as_str().unwrap().is_empty());

    let unknown = request_token(&client, &emulator, "nobody", secret, &grant).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        unknown.body,
        json!({"error":"invalid_client","description":"client not found","error_description":"client not found"})
    );

    let wrong = request_token(&client, &emulator, id, "guess", &grant).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        wrong.body,
        json!({"error":"invalid_client","description":"authentication failed","error_description":"authentication failed"})
    );

    let no_grant = request_token(&client, &emulator, id, secret, &[]).await;
    assert_eq!(no_grant.status, StatusCode::BAD_REQUEST);
    assert_eq!(no_grant.body["error"], "invalid_request");
    let other_grant = request_token(
        &client,
        &emulator,
        id,
        secret,
        &[("grant_type", "password")],
    )
    .await;
    assert_eq!(other_grant.status, StatusCode::BAD_REQUEST);
    assert_eq!(other_grant.body["error"], "unsupported_grant_type");
    emulator.stop().await;
}

// ---- the /api/v2 gate ----------------------------------------------------------------

#[actix_rt::test]
async fn api_calls_without_or_with_a_bad_token_get_the_two_401_bodies() {
    let emulator = Emulator::start(options()).await.unwrap();
    let client = client();
    let path = "/notifications/channels";

    let missing = api(&client, &emulator, Method::GET, path, None, None).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.body["code"], "authentication.required");
    assert_eq!(missing.body["status"], 401);
    let correlation = missing.header("ININ-Correlation-Id").unwrap();
    assert_eq!(missing.body["contextId"], correlation);

    let forged = api(&client, &emulator, Method::GET, path, Some("forged"), None).await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    assert_eq!(forged.body["code"], "bad.credentials");
    assert_eq!(forged.body["message"], "Invalid login credentials.");

    let token = token(&client, &emulator).await;
    let fine = api(&client, &emulator, Method::GET, path, Some(&token), None).await;
    assert_eq!(fine.status, StatusCode::OK);
    assert!(fine.header("ININ-Correlation-Id").is_some());
    // These tests switch the limit off, and an unlimited emulator reports no budget (the
    // rate-limit test below checks the headers with a limit).
    assert!(fine.header("inin-ratelimit-count").is_none());
    let unknown = api(
        &client,
        &emulator,
        Method::GET,
        "/no/such/path",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.body["code"], "not.found");
    assert_eq!(
        unknown.body["contextId"],
        unknown.header("ININ-Correlation-Id").unwrap()
    );
    emulator.stop().await;
}

#[actix_rt::test]
async fn calls_past_the_per_token_rate_get_429_with_retry_after() {
    let emulator = Emulator::start(EmulatorOptions {
        rate_limit_per_minute: 3,
        ..options()
    })
    .await
    .unwrap();
    let client = client();
    let token = token(&client, &emulator).await;
    let path = "/notifications/channels";
    for count in 1..=3 {
        let answer = api(&client, &emulator, Method::GET, path, Some(&token), None).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(
            answer.header("inin-ratelimit-count"),
            Some(count.to_string().as_str())
        );
        assert_eq!(answer.header("inin-ratelimit-allowed"), Some("3"));
    }
    let refused = api(&client, &emulator, Method::GET, path, Some(&token), None).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.body["code"], "too.many.requests.retry.after");
    let retry_after: u64 = refused.header("Retry-After").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(
        refused.body["message"],
        format!("Rate limit exceeded the maximum. Retry the request in [{retry_after}] seconds")
    );
    assert!(refused.header("inin-ratelimit-reset").is_some());

    // Another token has its own budget.
    let other = self::token(&client, &emulator).await;
    let answer = api(&client, &emulator, Method::GET, path, Some(&other), None).await;
    assert_eq!(answer.status, StatusCode::OK);
    emulator.stop().await;
}

#[actix_rt::test]
async fn injected_faults_answer_a_share_of_calls_with_5xx_error_bodies() {
    let emulator = Emulator::start(options()).await.unwrap();
    let client = client();
    let token = token(&client, &emulator).await;
    let faults = json!({"error_ratio": 0.5, "rate_limit_ratio": 0.0, "latency_ms": 0, "duplicate_ratio": 0.0, "reorder_ratio": 0.0});
    let set = control(
        &client,
        &emulator,
        Method::PUT,
        "/faults",
        Some(faults.clone()),
    )
    .await;
    assert_eq!(set.status, StatusCode::OK);
    let read = control(&client, &emulator, Method::GET, "/faults", None).await;
    assert_eq!(read.body, faults);

    let mut failed = 0;
    for _ in 0..100 {
        let answer = api(
            &client,
            &emulator,
            Method::GET,
            "/notifications/channels",
            Some(&token),
            None,
        )
        .await;
        match answer.status.as_u16() {
            200 => {}
            500 => {
                failed += 1;
                assert_eq!(answer.body["code"], "internal.server.error");
                assert_eq!(
                    answer.body["contextId"],
                    answer.header("ININ-Correlation-Id").unwrap()
                );
            }
            503 => {
                failed += 1;
                assert_eq!(answer.body["code"], "service.unavailable");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!((25..=75).contains(&failed), "{failed} of 100 failed");

    let refused = control(
        &client,
        &emulator,
        Method::PUT,
        "/faults",
        Some(json!({"error_ratio": 2.0})),
    )
    .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);

    // Latency is added to every call.
    control(
        &client,
        &emulator,
        Method::PUT,
        "/faults",
        Some(json!({"latency_ms": 150})),
    )
    .await;
    let started = Instant::now();
    let answer = api(
        &client,
        &emulator,
        Method::GET,
        "/notifications/channels",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(150));
    emulator.stop().await;
}

#[actix_rt::test]
async fn the_same_seed_injects_the_same_faults() {
    async fn statuses(seed: u64) -> Vec<u16> {
        let emulator = Emulator::start(EmulatorOptions { seed, ..options() })
            .await
            .unwrap();
        let client = client();
        let token = token(&client, &emulator).await;
        control(
            &client,
            &emulator,
            Method::PUT,
            "/faults",
            Some(json!({"error_ratio": 0.3, "rate_limit_ratio": 0.2})),
        )
        .await;
        let mut statuses = Vec::new();
        for _ in 0..30 {
            let answer = api(
                &client,
                &emulator,
                Method::GET,
                "/notifications/channels",
                Some(&token),
                None,
            )
            .await;
            statuses.push(answer.status.as_u16());
        }
        emulator.stop().await;
        statuses
    }
    let first = statuses(11).await;
    assert_eq!(first, statuses(11).await);
    assert!(first.contains(&429));
}

// ---- channels and subscriptions ------------------------------------------------------

#[actix_rt::test]
async fn channels_are_created_listed_checked_and_unknown_ones_are_404() {
    let emulator = Emulator::start(options()).await.unwrap();
    let client = client();
    let token = token(&client, &emulator).await;
    let channel = create_channel(&client, &emulator, &token).await;
    let id = channel["id"].as_str().unwrap();
    assert!(id.starts_with("streaming-0-"));
    let ws_base = emulator.base_url().replacen("http://", "ws://", 1);
    assert_eq!(channel["connectUri"], format!("{ws_base}/channels/{id}"));
    assert!(channel["expires"].as_str().unwrap().ends_with('Z'));

    let listed = api(
        &client,
        &emulator,
        Method::GET,
        "/notifications/channels?includechannels=token",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(listed.body["entities"][0]["id"], id);

    let head = api(
        &client,
        &emulator,
        Method::HEAD,
        &format!("/notifications/channels/{id}"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(head.status, StatusCode::OK);
    let head = api(
        &client,
        &emulator,
        Method::HEAD,
        "/notifications/channels/streaming-0-nope",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(head.status, StatusCode::NOT_FOUND);
    let subscriptions = api(
        &client,
        &emulator,
        Method::GET,
        "/notifications/channels/streaming-0-nope/subscriptions",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(subscriptions.status, StatusCode::NOT_FOUND);
    assert_eq!(subscriptions.body["code"], "not.found");

    // The WebSocket of an unknown channel is refused at the upgrade.
    let refused = client
        .ws(format!("{ws_base}/channels/streaming-0-nope"))
        .connect()
        .await;
    assert!(matches!(
        refused,
        Err(awc::error::WsClientError::InvalidResponseStatus(
            StatusCode::NOT_FOUND
        ))
    ));
    emulator.stop().await;
}

#[actix_rt::test]
async fn subscriptions_are_permitted_or_rejected_per_topic() {
    let emulator = Emulator::start(options()).await.unwrap();
    let client = client();
    let token = token(&client, &emulator).await;
    let channel = create_channel(&client, &emulator, &token).await;
    let path = format!(
        "/notifications/channels/{}/subscriptions",
        channel["id"].as_str().unwrap()
    );
    let queue = queue_topic(&emulator);
    let user = format!("v2.users.{}.conversations.messages", user_ids(&emulator)[0]);
    let topics =
        json!([{"id": queue}, {"id": user}, {"id": "v2.routing.queues.not-a-queue.conversations"}]);

    let put = api(
        &client,
        &emulator,
        Method::PUT,
        &format!("{path}?ignoreErrors=true"),
        Some(&token),
        Some(topics.clone()),
    )
    .await;
    assert_eq!(put.status, StatusCode::OK, "{:?}", put.body);
    let states: Vec<(&str, &str)> = put.body["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_str().unwrap(), t["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        vec![
            (queue.as_str(), "Permitted"),
            (user.as_str(), "Permitted"),
            ("v2.routing.queues.not-a-queue.conversations", "Rejected"),
        ]
    );
    assert!(put.body["entities"][2]["rejectionReason"].is_string());
    let got = api(&client, &emulator, Method::GET, &path, Some(&token), None).await;
    assert_eq!(got.body["entities"].as_array().unwrap().len(), 2);

    // Without ignoreErrors the whole call fails and nothing changes.
    let refused = api(
        &client,
        &emulator,
        Method::POST,
        &format!("{path}?ignoreErrors=false"),
        Some(&token),
        Some(topics),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let invalid = api(
        &client,
        &emulator,
        Method::POST,
        &path,
        Some(&token),
        Some(json!([{"id": "v2.nonsense"}])),
    )
    .await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
    assert_eq!(invalid.body["code"], "bad.request");

    // 1 001 topics on one channel: 400.
    let many: Vec<Value> = (0..1001)
        .map(|i| json!({ "id": format!("v2.conversations.c{i}.transcription") }))
        .collect();
    let too_many = api(
        &client,
        &emulator,
        Method::PUT,
        &path,
        Some(&token),
        Some(Value::from(many)),
    )
    .await;
    assert_eq!(too_many.status, StatusCode::BAD_REQUEST);
    assert_eq!(too_many.body["status"], 400);
    assert!(too_many.body["contextId"].is_string());

    let deleted = api(
        &client,
        &emulator,
        Method::DELETE,
        &path,
        Some(&token),
        None,
    )
    .await;
    assert!(deleted.status.is_success());
    let got = api(&client, &emulator, Method::GET, &path, Some(&token), None).await;
    assert_eq!(got.body["entities"], json!([]));

    let malformed = api(
        &client,
        &emulator,
        Method::PUT,
        &path,
        Some(&token),
        Some(json!({"id": "not an array"})),
    )
    .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.body["code"], "bad.request");
    emulator.stop().await;
}

#[actix_rt::test]
async fn the_twenty_first_channel_evicts_the_oldest_and_tells_its_socket() {
    let emulator = Emulator::start(options()).await.unwrap();
    let client = client();
    let token = token(&client, &emulator).await;
    let oldest = create_channel(&client, &emulator, &token).await;
    let mut first_socket = connect(&client, oldest["connectUri"].as_str().unwrap()).await;
    // Every channel has a socket, so the oldest last-used one goes.
    let mut sockets = Vec::new();
    for _ in 1..20 {
        let channel = create_channel(&client, &emulator, &token).await;
        sockets.push(connect(&client, channel["connectUri"].as_str().unwrap()).await);
    }
    let newest = create_channel(&client, &emulator, &token).await;

    let farewell = until_closed(&mut first_socket).await;
    assert_eq!(farewell.len(), 1, "{farewell:?}");
    assert_eq!(farewell[0]["topicName"], "v2.system.no_longer_subscribed");
    assert_eq!(farewell[0]["eventBody"]["channelId"], oldest["id"]);
    let oldest_id = oldest["id"].as_str().unwrap();
    let head = api(
        &client,
        &emulator,
        Method::HEAD,
        &format!("/notifications/channels/{oldest_id}"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(head.status, StatusCode::NOT_FOUND);
    let listed = api(
        &client,
        &emulator,
        Method::GET,
        "/notifications/channels",
        Some(&token),
        None,
    )
    .await;
    let ids: Vec<&Value> = listed.body["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["id"])
        .collect();
    assert_eq!(ids.len(), 20);
    assert!(ids.contains(&&newest["id"]));
    emulator.stop().await;
}

// ---- WebSockets ----------------------------------------------------------------------

#[actix_rt::test]
async fn a_socket_gets_heartbeats_pongs_and_subscribe_acks() {
    let emulator = Emulator::start(EmulatorOptions {
        heartbeat: Duration::from_millis(100),
        ..options()
    })
    .await
    .unwrap();
    let client = client();
    let token = token(&client, &emulator).await;
    let channel = create_channel(&client, &emulator, &token).await;
    let mut socket = connect(&client, channel["connectUri"].as_str().unwrap()).await;

    match receive(&mut socket, DEADLINE).await {
        Received::Text(frame) => assert!(is_heartbeat(&frame), "{frame}"),
        other => panic!("expected a heartbeat, got {other:?}"),
    }

    send_text(&mut socket, r#"{"message":"ping"}"#).await;
    assert_eq!(
        next_text(&mut socket).await,
        json!({"topicName": "channel.metadata", "eventBody": {"message": "pong"}})
    );

    // RFC 6455 Ping is answered with Pong.
    socket.send(ws::Message::Ping("hi".into())).await.unwrap();
    let until = Instant::now() + DEADLINE;
    loop {
        match receive(&mut socket, until.saturating_duration_since(Instant::now())).await {
            Received::Pong => break,
            Received::Text(frame) if is_heartbeat(&frame) => {}
            other => panic!("expected a pong, got {other:?}"),
        }
    }

    let queue = queue_topic(&emulator);
    send_text(
        &mut socket,
        &json!({"message": "subscribe", "topics": [queue], "correlationId": "abc"}).to_string(),
    )
    .await;
    let ack = next_text(&mut socket).await;
    assert_eq!(ack["result"], "200");
    assert_eq!(ack["status"], "subscribed");
    assert_eq!(ack["correlationId"], "abc");
    publish(&emulator, &queue, 1);
    let event = next_text(&mut socket).await;
    assert_eq!(event["topicName"], queue.as_str());
    assert_eq!(event["eventBody"]["n"], 1);
    assert!(event["metadata"]["CorrelationId"].is_string());
    emulator.stop().await;
}

#[actix_rt::test]
async fn a_second_socket_replaces_the_first_and_missed_events_are_not_replayed() {
    let emulator = Emulator::start(options()).await.unwrap();
    let client = client();
    let token = token(&client, &emulator).await;
    let channel = create_channel(&client, &emulator, &token).await;
    let queue = queue_topic(&emulator);
    subscribe(
        &client,
        &emulator,
        &token,
        &channel,
        std::slice::from_ref(&queue),
    )
    .await;
    let uri = channel["connectUri"].as_str().unwrap();

    let mut first = connect(&client, uri).await;
    let mut second = connect(&client, uri).await;
    assert!(until_closed(&mut first).await.is_empty());
    publish(&emulator, &queue, 1);
    assert_eq!(next_text(&mut second).await["eventBody"]["n"], 1);

    // Drop every socket; what is published meanwhile is lost.
    let dropped = control(&client, &emulator, Method::POST, "/sockets/drop", None).await;
    assert_eq!(dropped.body["sockets"], 1);
    until_closed(&mut second).await;
    publish(&emulator, &queue, 2);
    let mut third = connect(&client, uri).await;
    publish(&emulator, &queue, 3);
    assert_eq!(next_text(&mut third).await["eventBody"]["n"], 3);
    emulator.stop().await;
}

#[actix_rt::test]
async fn socket_closing_is_announced_then_the_socket_closes_after_the_grace() {
    let emulator = Emulator::start(options()).await.unwrap();
    let client = client();
    let token = token(&client, &emulator).await;
    let channel = create_channel(&client, &emulator, &token).await;
    let uri = channel["connectUri"].as_str().unwrap();
    let mut socket = connect(&client, uri).await;
    // Make sure the socket is registered before the announcement.
    send_text(&mut socket, r#"{"message":"ping"}"#).await;
    next_text(&mut socket).await;

    let closing = control(
        &client,
        &emulator,
        Method::POST,
        "/sockets/closing?grace_ms=200",
        None,
    )
    .await;
    assert_eq!(closing.body["sockets"], 1);
    let seen = until_closed(&mut socket).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["topicName"], "v2.system.socket_closing");

    // The channel survives: the client reconnects to the same connectUri.
    let mut again = connect(&client, uri).await;
    send_text(&mut again, r#"{"message":"ping"}"#).await;
    assert_eq!(next_text(&mut again).await["eventBody"]["message"], "pong");
    emulator.stop().await;
}

#[actix_rt::test]
async fn token_expiry_kills_the_channels_it_created() {
    let emulator = Emulator::start(EmulatorOptions {
        token_ttl: Duration::from_secs(1),
        ..options()
    })
    .await
    .unwrap();
    let client = client();
    let token = token(&client, &emulator).await;
    let channel = create_channel(&client, &emulator, &token).await;
    let mut socket = connect(&client, channel["connectUri"].as_str().unwrap()).await;
    let seen = until_closed(&mut socket).await;
    assert_eq!(
        seen,
        vec![json!({"result": "404", "message": "Channel not found or expired"})]
    );

    let expired = api(
        &client,
        &emulator,
        Method::GET,
        "/notifications/channels",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
    assert_eq!(expired.body["code"], "bad.credentials");
    let fresh = self::token(&client, &emulator).await;
    let id = channel["id"].as_str().unwrap();
    let head = api(
        &client,
        &emulator,
        Method::HEAD,
        &format!("/notifications/channels/{id}"),
        Some(&fresh),
        None,
    )
    .await;
    assert_eq!(head.status, StatusCode::NOT_FOUND);
    emulator.stop().await;
}

#[actix_rt::test]
async fn revoking_tokens_through_the_control_api_kills_their_channels() {
    let emulator = Emulator::start(options()).await.unwrap();
    let client = client();
    let token = token(&client, &emulator).await;
    let channel = create_channel(&client, &emulator, &token).await;
    let mut socket = connect(&client, channel["connectUri"].as_str().unwrap()).await;
    send_text(&mut socket, r#"{"message":"ping"}"#).await;
    next_text(&mut socket).await;

    let revoked = control(&client, &emulator, Method::POST, "/tokens/revoke", None).await;
    assert_eq!(revoked.body["channels_closed"], 1);
    let seen = until_closed(&mut socket).await;
    assert_eq!(seen[0]["topicName"], "v2.system.token_revoked");
    let refused = api(
        &client,
        &emulator,
        Method::GET,
        "/notifications/channels",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(refused.body["code"], "bad.credentials");

    let token = self::token(&client, &emulator).await;
    create_channel(&client, &emulator, &token).await;
    let expired = control(&client, &emulator, Method::POST, "/tokens/expire", None).await;
    assert_eq!(expired.body["channels_closed"], 1);
    emulator.stop().await;
}

#[actix_rt::test]
async fn a_channel_expires_after_the_channel_ttl_unless_resubscribed() {
    let emulator = Emulator::start(EmulatorOptions {
        channel_ttl: Duration::from_secs(1),
        ..options()
    })
    .await
    .unwrap();
    let client = client();
    let token = token(&client, &emulator).await;
    let channel = create_channel(&client, &emulator, &token).await;
    let id = channel["id"].as_str().unwrap().to_owned();
    let mut socket = connect(&client, channel["connectUri"].as_str().unwrap()).await;
    let started = Instant::now();
    let seen = until_closed(&mut socket).await;
    assert!(started.elapsed() < DEADLINE);
    assert_eq!(seen[0]["result"], "404");
    let head = api(
        &client,
        &emulator,
        Method::HEAD,
        &format!("/notifications/channels/{id}"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(head.status, StatusCode::NOT_FOUND);
    // Connecting to the dead channel is refused.
    let refused = client
        .ws(channel["connectUri"].as_str().unwrap())
        .connect()
        .await;
    assert!(refused.is_err());

    // The control API expires channels at once.
    let other = create_channel(&client, &emulator, &token).await;
    let mut socket = connect(&client, other["connectUri"].as_str().unwrap()).await;
    let expired = control(&client, &emulator, Method::POST, "/channels/expire", None).await;
    assert_eq!(expired.body["channels_closed"], 1);
    until_closed(&mut socket).await;
    emulator.stop().await;
}

#[actix_rt::test]
async fn the_duplicate_fault_sends_published_events_twice() {
    let emulator = Emulator::start(options()).await.unwrap();
    let client = client();
    let token = token(&client, &emulator).await;
    let channel = create_channel(&client, &emulator, &token).await;
    let queue = queue_topic(&emulator);
    subscribe(
        &client,
        &emulator,
        &token,
        &channel,
        std::slice::from_ref(&queue),
    )
    .await;
    let mut socket = connect(&client, channel["connectUri"].as_str().unwrap()).await;
    send_text(&mut socket, r#"{"message":"ping"}"#).await;
    next_text(&mut socket).await;
    control(
        &client,
        &emulator,
        Method::PUT,
        "/faults",
        Some(json!({"duplicate_ratio": 1.0})),
    )
    .await;
    publish(&emulator, &queue, 1);
    let first = next_text(&mut socket).await;
    let second = next_text(&mut socket).await;
    assert_eq!(first, second);
    assert_eq!(first["eventBody"]["n"], 1);
    emulator.stop().await;
}

#[actix_rt::test]
async fn a_socket_that_does_not_read_is_dropped_and_the_emulator_keeps_serving() {
    let emulator = Emulator::start(options()).await.unwrap();
    let client = client();
    let token = token(&client, &emulator).await;
    let channel = create_channel(&client, &emulator, &token).await;
    let queue = queue_topic(&emulator);
    subscribe(
        &client,
        &emulator,
        &token,
        &channel,
        std::slice::from_ref(&queue),
    )
    .await;
    // Connected, then never read: the kernel buffers fill, then the outbox.
    let _idle = connect(&client, channel["connectUri"].as_str().unwrap()).await;
    let attached = || {
        !emulator
            .shared()
            .platform
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .sockets()
            .is_empty()
    };
    assert!(attached());
    let padding = "x".repeat(16 * 1024);
    let mut published = 0;
    while attached() && published < 20_000 {
        let events = (0..100)
            .map(|n| TopicEvent {
                topic: queue.clone(),
                body: json!({ "n": n, "padding": padding }),
            })
            .collect();
        emulator.shared().publish(events);
        published += 100;
        actix_rt::time::sleep(Duration::from_millis(1)).await;
    }
    let until = Instant::now() + DEADLINE;
    while attached() && Instant::now() < until {
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !attached(),
        "the idle socket was not dropped after {published} events"
    );

    let answer = api(
        &client,
        &emulator,
        Method::GET,
        "/notifications/channels",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    emulator.stop().await;
}
