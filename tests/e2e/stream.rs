//! The StreamActor against the in-process emulator, as a deployment runs against Genesys:
//! channel, subscriptions (rejected topics reported), WebSocket to `connectUri`, snapshots
//! handed to the router in order, reconciliation after every gap, reconnect after a drop,
//! make-before-break rotation on `socket_closing` and before expiry, recovery after token
//! expiry and revocation, pings that keep a quiet socket alive, several channels for more
//! than 1 000 topics, the `--record` capture, and a clean stop. The socket task's watchdog,
//! continuation reassembly and Ping/Close answers are also driven frame by frame through
//! a scripted socket.
//!
//! A probe actor stands in for the router and records what it receives. Every wait is on
//! a condition with a generous deadline; every port is ephemeral.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use actix::{Actor, Addr, Context, Handler, Supervisor};
use awc::error::WsProtocolError;
use awc::ws::{Frame, Message};
use chrono::Utc;
use convoy::config::{Secret, StreamConfig};
use convoy::model::CommunicationState;
use convoy::stream::LivenessPolicy;
use convoy_actors::admin::HealthBoard;
use convoy_actors::conversation::messages::{ConversationInput, Reconcile, RouteError, RouteEvent};
use convoy_actors::emulator::{Emulator, EmulatorOptions};
use convoy_actors::genesys::oauth::TokenEndpoint;
use convoy_actors::genesys::rest::{RestContext, SharedBucket};
use convoy_actors::stream::ws::{self, SocketSpec, SocketWiring, PING_FRAME};
use convoy_actors::stream::{
    GetStreamStatus, LinkActivity, SocketEnd, SocketEvent, SocketSignal, StopStream, StreamActor,
    StreamSettings, StreamStatus, WatchTranscription,
};
use convoy_actors::telemetry::{names, sample, Telemetry};
use convoy_actors::token::{TokenActor, TokenStats};
use futures_util::{Sink, Stream};
use serde_json::{json, Value};

use crate::support::{client, eventually};

/// Generous: two cores shared by every test of the binary.
const DEADLINE: Duration = Duration::from_secs(30);

// ---- The probe standing in for the router -----------------------------------------------

#[derive(Default)]
struct ProbeLog {
    events: Vec<RouteEvent>,
    reconciles: Vec<Reconcile>,
    sockets: Vec<SocketEvent>,
}

type Log = Arc<Mutex<ProbeLog>>;

struct Probe {
    log: Log,
    /// Answer this many `RouteEvent`s with `AtCapacity` before taking any.
    refusals: usize,
}

impl Probe {
    fn new(log: &Log) -> Probe {
        Probe {
            log: log.clone(),
            refusals: 0,
        }
    }
}

impl Actor for Probe {
    type Context = Context<Self>;
}

impl Handler<RouteEvent> for Probe {
    type Result = Result<(), RouteError>;

    fn handle(&mut self, event: RouteEvent, _: &mut Self::Context) -> Self::Result {
        if self.refusals > 0 {
            self.refusals -= 1;
            return Err(RouteError::AtCapacity { max_live: 1 });
        }
        self.log.lock().unwrap().events.push(event);
        Ok(())
    }
}

impl Handler<Reconcile> for Probe {
    type Result = ();

    fn handle(&mut self, reconcile: Reconcile, _: &mut Self::Context) {
        self.log.lock().unwrap().reconciles.push(reconcile);
    }
}

impl Handler<SocketEvent> for Probe {
    type Result = ();

    fn handle(&mut self, event: SocketEvent, _: &mut Self::Context) {
        self.log.lock().unwrap().sockets.push(event);
    }
}

// ---- Harness ------------------------------------------------------------------------------

fn stream_config() -> StreamConfig {
    StreamConfig {
        max_frame_bytes: 4 * 1024 * 1024,
        ping_after_idle: Duration::from_secs(5),
        reconnect_after_silence: Duration::from_secs(10),
        rotate_before_expiry: Duration::from_secs(1),
    }
}

/// Emulator options for these tests: short heartbeats so liveness has frames to see, no
/// rate limit.
fn emulator_options() -> EmulatorOptions {
    EmulatorOptions {
        heartbeat: Duration::from_millis(200),
        rate_limit_per_minute: 0,
        seed: 11,
        ..EmulatorOptions::default()
    }
}

struct Setup {
    emulator: EmulatorOptions,
    stream: StreamConfig,
    /// Topics besides the first queue's conversation topic.
    extra_topics: Vec<String>,
    record: Option<PathBuf>,
    token_expiry: Option<convoy_actors::stream::TokenExpirySource>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            emulator: emulator_options(),
            stream: stream_config(),
            extra_topics: Vec::new(),
            record: None,
            token_expiry: None,
        }
    }
}

struct Harness {
    emulator: Emulator,
    http: awc::Client,
    stream: Addr<StreamActor>,
    log: Log,
    board: Arc<HealthBoard>,
    queue: String,
    telemetry: Telemetry,
}

impl Harness {
    async fn start(setup: Setup) -> Harness {
        let telemetry = Telemetry::install().unwrap();
        let http = client();
        let emulator = Emulator::start(setup.emulator).await.unwrap();
        let org = control(&http, &emulator, "GET", "/org", None).await;
        let queue = org["queues"][0]["id"].as_str().unwrap().to_owned();
        let tokens = TokenActor::new(
            TokenEndpoint {
                login_base: emulator.base_url(),
                client_id: emulator.client_id().to_owned(),
                client_secret: Secret::new(emulator.client_secret().to_owned()),
            },
            Arc::new(TokenStats::default()),
        )
        .start();
        let rest = RestContext {
            api_base: emulator.base_url(),
            tokens,
            bucket: Arc::new(SharedBucket::new(60_000)),
            transport: Default::default(),
        };
        let log: Log = Arc::default();
        let probe = Probe::new(&log).start();
        let board = Arc::new(HealthBoard::new(Duration::from_secs(10)));
        let mut topics = vec![queue_topic(&queue)];
        topics.extend(setup.extra_topics);
        let settings = StreamSettings {
            topics,
            stream: setup.stream,
            record: setup.record,
            startup_lookback: Duration::from_secs(3600),
        };
        let (router, reconcile) = (probe.clone().recipient(), probe.recipient());
        let stream_board = board.clone();
        let token_expiry = setup.token_expiry;
        let stream = Supervisor::start(move |_| {
            let actor = StreamActor::new(settings, rest, router, reconcile, stream_board);
            match token_expiry {
                Some(source) => actor.with_token_expiry(source),
                None => actor,
            }
        });
        Harness {
            emulator,
            http,
            stream,
            log,
            board,
            queue,
            telemetry,
        }
    }

    async fn control(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        control(&self.http, &self.emulator, method, path, body).await
    }

    async fn status(&self) -> StreamStatus {
        self.stream.send(GetStreamStatus).await.unwrap()
    }

    /// Waits until every link is connected; returns the status then.
    async fn connected(&self) -> StreamStatus {
        self.wait_status("the stream did not connect", |s| {
            !s.links.is_empty() && s.links.iter().all(|l| l.connected)
        })
        .await
    }

    /// Polls the status until `condition` holds (panics with the last status otherwise).
    async fn wait_status(
        &self,
        what: &str,
        condition: impl Fn(&StreamStatus) -> bool,
    ) -> StreamStatus {
        let start = Instant::now();
        loop {
            let status = self.status().await;
            if condition(&status) {
                return status;
            }
            assert!(start.elapsed() < DEADLINE, "{what}: {status:#?}");
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn reconciles(&self, reason: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .reconciles
            .iter()
            .filter(|r| r.reason == reason)
            .count()
    }

    async fn wait_reconciles(&self, reason: &str, at_least: usize) {
        let ok = eventually(DEADLINE, || async { self.reconciles(reason) >= at_least }).await;
        let seen: Vec<_> = self
            .log
            .lock()
            .unwrap()
            .reconciles
            .iter()
            .map(|r| r.reason)
            .collect();
        assert!(ok, "expected {at_least} reconcile({reason}); saw {seen:?}");
    }

    /// A fast routed voice call on the subscribed queue; returns its id.
    async fn call(&self) -> String {
        let created = self
            .control(
                "POST",
                "/conversations/voice",
                Some(json!({
                    "queueId": self.queue,
                    "answer_after_ms": 100,
                    "reply_after_ms": 100,
                    "agent_replies": 1,
                    "wrapup_after_ms": 100,
                })),
            )
            .await;
        created["id"].as_str().unwrap().to_owned()
    }

    fn snapshots_of(&self, id: &str) -> Vec<convoy::conversation::ConversationSnapshot> {
        self.log
            .lock()
            .unwrap()
            .events
            .iter()
            .filter_map(|event| match &event.input {
                ConversationInput::Snapshot(snapshot)
                    if snapshot.conversation_id.text().as_str() == id =>
                {
                    Some(snapshot.clone())
                }
                _ => None,
            })
            .collect()
    }

    /// Waits until the probe saw a snapshot of `id` in which every leg has ended.
    async fn wait_call_ended(&self, id: &str) {
        let ok = eventually(DEADLINE, || async {
            self.snapshots_of(id).iter().any(ended)
        })
        .await;
        assert!(
            ok,
            "call {id} never reached the probe as ended; saw {} snapshots",
            self.snapshots_of(id).len()
        );
    }

    fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        sample::value(&self.telemetry.render(), name, labels).unwrap_or(0.0)
    }

    async fn stop(self) {
        self.stream.send(StopStream).await.unwrap();
        self.emulator.stop().await;
    }
}

async fn control(
    http: &awc::Client,
    emulator: &Emulator,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Value {
    let url = format!("{}/emulator/v1{path}", emulator.base_url());
    let request = match method {
        "GET" => http.get(url),
        "PUT" => http.put(url),
        _ => http.post(url),
    };
    let mut response = match body {
        Some(body) => request.send_json(&body).await.unwrap(),
        None => request.send().await.unwrap(),
    };
    assert!(
        response.status().is_success(),
        "{method} {path}: {}",
        response.status()
    );
    response.json().limit(16 * 1024 * 1024).await.unwrap()
}

fn queue_topic(queue: &str) -> String {
    format!("v2.routing.queues.{queue}.conversations")
}

/// Every communication of every participant has ended.
fn ended(snapshot: &convoy::conversation::ConversationSnapshot) -> bool {
    let legs: Vec<_> = snapshot
        .participants
        .iter()
        .flat_map(|p| p.communications.iter())
        .collect();
    !legs.is_empty()
        && legs.iter().all(|c| {
            matches!(
                c.state,
                Some(CommunicationState::Disconnected | CommunicationState::Terminated)
            )
        })
}

fn channel_ids(status: &StreamStatus) -> Vec<Option<String>> {
    status.links.iter().map(|l| l.channel_id.clone()).collect()
}

// ---- Against the emulator -----------------------------------------------------------------

#[actix_rt::test]
async fn boot_subscribes_connects_reconciles_and_routes_a_call_until_it_ends() {
    let harness = Harness::start(Setup::default()).await;
    let status = harness.connected().await;
    assert_eq!(status.links.len(), 1);
    let link = &status.links[0];
    assert_eq!(link.permitted, vec![queue_topic(&harness.queue)]);
    assert!(link.rejected.is_empty());
    assert!(link.channel_id.is_some());

    // Start-up is a gap too: reconcile from the configured lookback (1 h).
    harness.wait_reconciles("startup", 1).await;
    let startup = harness.log.lock().unwrap().reconciles[0].clone();
    let looked_back = Utc::now() - startup.gap_started_at;
    assert!(
        looked_back >= chrono::TimeDelta::minutes(59)
            && looked_back <= chrono::TimeDelta::minutes(61),
        "{looked_back:?}"
    );

    let id = harness.call().await;
    harness.wait_call_ended(&id).await;
    let snapshots = harness.snapshots_of(&id);
    assert!(snapshots.len() >= 2, "{} snapshots", snapshots.len());
    // In order: once a snapshot shows the call ended, none before it did.
    let first_ended = snapshots.iter().position(ended).unwrap();
    assert!(first_ended > 0);
    // Observed times are the receive times, never decreasing on one socket.
    let times: Vec<_> = harness
        .log
        .lock()
        .unwrap()
        .events
        .iter()
        .map(|e| e.observed_at)
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));

    // Readiness: token is not the stream's to report; the stream's own checks pass.
    let readiness = harness.board.readiness_now();
    assert!(readiness.checks.socket.ok, "{readiness:?}");
    assert!(readiness.checks.subscriptions.ok, "{readiness:?}");
    assert!(readiness.checks.last_frame.ok, "{readiness:?}");
    assert!(harness.metric(names::STREAM_CONNECTS, &[]) >= 1.0);
    assert!(harness.metric(names::STREAM_FRAMES, &[("kind", "snapshot")]) >= 2.0);
    assert!(harness.metric(names::STREAM_FRAMES, &[("kind", "heartbeat")]) >= 1.0);
    harness.stop().await;
}

#[actix_rt::test]
async fn a_dropped_socket_reconnects_reconciles_and_later_calls_still_arrive() {
    let harness = Harness::start(Setup::default()).await;
    let before = harness.connected().await;
    harness.wait_reconciles("startup", 1).await;
    let dropped = harness.control("POST", "/sockets/drop", None).await;
    assert_eq!(dropped["sockets"], 1);

    harness.wait_reconciles("reconnect", 1).await;
    let after = harness
        .wait_status("reconnected", |s| {
            s.totals.reconnects >= 1 && s.links[0].connected
        })
        .await;
    // The channel survived the drop: the reconnect reused it.
    assert_eq!(channel_ids(&before), channel_ids(&after));
    let reconnect = harness
        .log
        .lock()
        .unwrap()
        .reconciles
        .iter()
        .find(|r| r.reason == "reconnect")
        .cloned()
        .unwrap();
    // The gap starts at the last frame before it: recent, not the start-up lookback.
    assert!(Utc::now() - reconnect.gap_started_at < chrono::TimeDelta::seconds(30));

    let id = harness.call().await;
    harness.wait_call_ended(&id).await;
    assert!(harness.metric(names::STREAM_RECONNECTS, &[("reason", "dropped")]) >= 1.0);
    harness.stop().await;
}

#[actix_rt::test]
async fn socket_closing_rotates_to_a_new_channel_before_the_old_socket_closes() {
    let harness = Harness::start(Setup::default()).await;
    let before = harness.connected().await;
    harness.wait_reconciles("startup", 1).await;
    harness
        .control("POST", "/sockets/closing?grace_ms=2000", None)
        .await;

    let after = harness
        .wait_status("rotated", |s| {
            s.totals.rotations >= 1
                && s.links[0].connected
                && s.links[0].channel_id != before.links[0].channel_id
        })
        .await;
    // Make-before-break: the old socket was closed by us after the new one connected,
    // so the link never had a gap.
    assert_eq!(after.totals.reconnects, 0, "{after:#?}");
    // Still none after the emulator's own close of the old socket is due.
    actix_rt::time::sleep(Duration::from_millis(2500)).await;
    let later = harness.status().await;
    assert_eq!(later.totals.reconnects, 0, "{later:#?}");
    // No gap, nothing to reconcile: the start-up reconciliation is the only one.
    let reasons: Vec<&str> = harness
        .log
        .lock()
        .unwrap()
        .reconciles
        .iter()
        .map(|r| r.reason)
        .collect();
    assert_eq!(reasons, ["startup"], "a rotation must not sweep");
    assert_eq!(later.totals.reconciliations, 1);
    assert!(later.links[0].connected);
    assert!(harness.metric(names::STREAM_ROTATIONS, &[("reason", "socket_closing")]) >= 1.0);

    let id = harness.call().await;
    harness.wait_call_ended(&id).await;
    harness.stop().await;
}

#[actix_rt::test]
async fn a_channel_is_rotated_before_it_expires() {
    let harness = Harness::start(Setup {
        emulator: EmulatorOptions {
            channel_ttl: Duration::from_secs(3),
            ..emulator_options()
        },
        ..Setup::default()
    })
    .await;
    let first = harness.connected().await;
    let first_expiry = first.links[0].channel_expires.unwrap();
    let after = harness
        .wait_status("rotated before expiry", |s| {
            s.totals.rotations >= 2 && s.links[0].connected
        })
        .await;
    // Two lifetimes passed and the link never had a gap: each channel was replaced about
    // a second before its expiry.
    assert_eq!(after.totals.reconnects, 0, "{after:#?}");
    assert!(after.links[0].channel_expires.unwrap() > first_expiry);
    assert!(harness.metric(names::STREAM_ROTATIONS, &[("reason", "channel_expiry")]) >= 2.0);

    let id = harness.call().await;
    harness.wait_call_ended(&id).await;
    harness.stop().await;
}

#[actix_rt::test]
async fn expired_and_revoked_tokens_are_recovered_with_a_new_channel() {
    let harness = Harness::start(Setup::default()).await;
    let first = harness.connected().await;
    harness.wait_reconciles("startup", 1).await;

    // Every token expires: the emulator kills their channels ({"result":"404"} + close).
    harness.control("POST", "/tokens/expire", None).await;
    let second = harness
        .wait_status("recovered after token expiry", |s| {
            s.links[0].connected && channel_ids(s) != channel_ids(&first)
        })
        .await;
    harness.wait_reconciles("reconnect", 1).await;
    let id = harness.call().await;
    harness.wait_call_ended(&id).await;

    // Revoked: v2.system.token_revoked, then close; the cached token is dropped first.
    harness.control("POST", "/tokens/revoke", None).await;
    harness
        .wait_status("recovered after revocation", |s| {
            s.links[0].connected && channel_ids(s) != channel_ids(&second)
        })
        .await;
    harness.wait_reconciles("reconnect", 2).await;
    let id = harness.call().await;
    harness.wait_call_ended(&id).await;
    assert!(harness.metric(names::STREAM_RECONNECTS, &[("reason", "token_revoked")]) >= 1.0);
    harness.stop().await;
}

#[actix_rt::test]
async fn a_topic_naming_an_unknown_queue_is_reported_as_rejected() {
    let unknown = "v2.routing.queues.00000000-0000-4000-8000-000000000000.conversations";
    let harness = Harness::start(Setup {
        extra_topics: vec![unknown.to_owned()],
        ..Setup::default()
    })
    .await;
    let status = harness.connected().await;
    let link = &status.links[0];
    assert_eq!(link.permitted, vec![queue_topic(&harness.queue)]);
    assert_eq!(link.rejected.len(), 1);
    assert_eq!(link.rejected[0].topic, unknown);
    assert!(!link.rejected[0].reason.is_empty());

    // /readyz names it with the reason.
    let readiness = harness.board.readiness_now();
    assert!(!readiness.checks.subscriptions.ok);
    assert_eq!(readiness.checks.subscriptions.rejected.len(), 1);
    assert_eq!(readiness.checks.subscriptions.rejected[0].topic, unknown);
    assert_eq!(
        readiness.checks.subscriptions.rejected[0].reason,
        link.rejected[0].reason
    );
    // The permitted topic still flows.
    let id = harness.call().await;
    harness.wait_call_ended(&id).await;
    harness.stop().await;
}

#[actix_rt::test]
async fn pings_keep_a_quiet_socket_alive() {
    // No heartbeat for a minute; the watchdog gives up after 1 s of silence unless its
    // pings (every 300 ms of quiet) are answered.
    let harness = Harness::start(Setup {
        emulator: EmulatorOptions {
            heartbeat: Duration::from_secs(60),
            ..emulator_options()
        },
        stream: StreamConfig {
            ping_after_idle: Duration::from_millis(300),
            reconnect_after_silence: Duration::from_secs(1),
            ..stream_config()
        },
        ..Setup::default()
    })
    .await;
    harness.connected().await;
    // Pongs are frames: the last frame time keeps moving without any heartbeat.
    let mut seen = HashSet::new();
    let start = Instant::now();
    while seen.len() < 5 {
        assert!(
            start.elapsed() < DEADLINE,
            "only {} distinct frame times",
            seen.len()
        );
        if let Some(at) = harness.status().await.links[0].last_frame_at {
            seen.insert(at);
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    // Five pongs span well over the 1 s silence deadline: had they not counted, the
    // socket would have been given up.
    let status = harness.status().await;
    assert_eq!(status.totals.reconnects, 0, "{status:#?}");
    assert!(status.links[0].connected);
    assert!(harness.metric(names::STREAM_FRAMES, &[("kind", "pong")]) >= 5.0);
    harness.stop().await;
}

#[actix_rt::test]
async fn more_than_a_thousand_topics_use_several_channels() {
    // 1 000 extra topics (unknown queues, rejected) plus the real one: 1 001 → 2 channels.
    let extra: Vec<String> = (0..1000)
        .map(|n| format!("v2.routing.queues.00000000-0000-4000-8000-{n:012}.conversations"))
        .collect();
    let harness = Harness::start(Setup {
        extra_topics: extra,
        ..Setup::default()
    })
    .await;
    let status = harness.connected().await;
    assert_eq!(
        status.links.len(),
        2,
        "{:?}",
        status.links.iter().map(|l| l.topics).collect::<Vec<_>>()
    );
    assert!(status.links.iter().all(|l| l.topics <= 1000));
    assert_eq!(status.links.iter().map(|l| l.topics).sum::<usize>(), 1001);
    let ids: HashSet<_> = channel_ids(&status).into_iter().collect();
    assert_eq!(ids.len(), 2, "each link has its own channel");
    let rejected: usize = status.links.iter().map(|l| l.rejected.len()).sum();
    assert_eq!(rejected, 1000);
    // One reconciliation per link at start-up.
    harness.wait_reconciles("startup", 2).await;
    let id = harness.call().await;
    harness.wait_call_ended(&id).await;
    harness.stop().await;
}

#[actix_rt::test]
async fn record_appends_each_received_frame_as_a_json_line_inspect_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.jsonl");
    let harness = Harness::start(Setup {
        record: Some(path.clone()),
        ..Setup::default()
    })
    .await;
    harness.connected().await;
    let id = harness.call().await;
    harness.wait_call_ended(&id).await;
    harness.stop().await;

    let text = std::fs::read_to_string(&path).unwrap();
    let mut kinds = HashSet::new();
    for line in text.lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        let received_at = record["receivedAt"].as_str().unwrap();
        chrono::DateTime::parse_from_rfc3339(received_at).unwrap();
        let frame = record["frame"].as_str().unwrap();
        // What `convoy inspect` does with each recorded frame.
        let classified = convoy::parse::classify(frame).unwrap();
        kinds.insert(classified.kind().as_str());
    }
    assert!(kinds.contains("heartbeat"), "{kinds:?}");
    assert!(kinds.contains("snapshot"), "{kinds:?}");
    assert!(text.contains(&id));
}

#[actix_rt::test]
async fn stop_closes_every_socket_and_nothing_reconnects() {
    let harness = Harness::start(Setup::default()).await;
    harness.connected().await;
    harness.stream.send(StopStream).await.unwrap();
    let status = harness.status().await;
    assert!(status.stopping);
    assert!(status.links.iter().all(|l| !l.connected));
    // Drops and expiries after the stop do not bring the stream back.
    harness.control("POST", "/channels/expire", None).await;
    let frames_before = harness.log.lock().unwrap().events.len();
    harness.call().await;
    actix_rt::time::sleep(Duration::from_secs(1)).await;
    let status = harness.status().await;
    assert!(status.links.iter().all(|l| !l.connected));
    assert_eq!(status.totals.reconnects, 0);
    assert_eq!(harness.log.lock().unwrap().events.len(), frames_before);
    // Idempotent.
    harness.stream.send(StopStream).await.unwrap();
    harness.emulator.stop().await;
}

#[actix_rt::test]
async fn a_token_about_to_expire_rotates_the_channel_first() {
    // The token source says the token has 2.5 s left, every time it is asked (as a token
    // refreshed before each rotation would): with a 1 s margin the channel is replaced
    // about every 1.5 s, before the token (and so the channel) would die.
    let source: convoy_actors::stream::TokenExpirySource =
        Arc::new(|| Some(Instant::now() + Duration::from_millis(2500)));
    let harness = Harness::start(Setup {
        token_expiry: Some(source),
        ..Setup::default()
    })
    .await;
    harness.connected().await;
    let status = harness
        .wait_status("rotated before the token expired", |s| {
            s.totals.rotations >= 2 && s.links[0].connected
        })
        .await;
    assert_eq!(status.totals.reconnects, 0, "{status:#?}");
    assert!(harness.metric(names::STREAM_ROTATIONS, &[("reason", "token_expiry")]) >= 2.0);
    harness.stop().await;
}

// ---- One connection's task, frame by frame ------------------------------------------------

/// A socket that yields scripted frames, then nothing, and records what is sent to it.
struct ScriptedSocket<S> {
    frames: S,
    sent: Arc<Mutex<Vec<Message>>>,
}

impl<S> Stream for ScriptedSocket<S>
where
    S: Stream<Item = Result<Frame, WsProtocolError>> + Unpin,
{
    type Item = Result<Frame, WsProtocolError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.frames).poll_next(cx)
    }
}

impl<S: Unpin> Sink<Message> for ScriptedSocket<S> {
    type Error = WsProtocolError;

    fn poll_ready(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), Self::Error> {
        self.sent.lock().unwrap().push(message);
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
}

/// Runs one socket task over `frames` with `policy`, wired to a probe.
fn spawn_scripted(
    frames: Vec<Frame>,
    policy: LivenessPolicy,
    max_frame_bytes: usize,
    refusals: usize,
) -> (Log, Arc<Mutex<Vec<Message>>>, ws::SocketHandle) {
    let log: Log = Arc::default();
    let probe = Probe {
        refusals,
        ..Probe::new(&log)
    }
    .start();
    let sent = Arc::new(Mutex::new(Vec::new()));
    let frames = futures_util::StreamExt::chain(
        futures_util::stream::iter(frames.into_iter().map(Ok)),
        futures_util::stream::pending(),
    );
    let socket = ScriptedSocket {
        frames: Box::pin(frames),
        sent: sent.clone(),
    };
    let handle = ws::spawn(
        Box::new(socket),
        SocketSpec {
            link: 0,
            connection: 7,
            channel_id: "streaming-0-test".to_owned(),
            max_frame_bytes,
            liveness: policy,
        },
        SocketWiring {
            events: probe.clone().recipient(),
            router: probe.recipient(),
            activity: Rc::new(LinkActivity::default()),
            recorder: None,
            board: Arc::new(HealthBoard::default()),
            gate: None,
            publisher: None,
        },
    );
    (log, sent, handle)
}

fn snapshot_frame(conversation: &str) -> String {
    json!({
        "topicName": "v2.routing.queues.q1.conversations",
        "version": "2",
        "eventBody": {
            "id": conversation,
            "participants": [{
                "id": "p1",
                "purpose": "customer",
                "calls": [{"id": "c1", "state": "connected"}]
            }]
        },
        "metadata": {"CorrelationId": "x"}
    })
    .to_string()
}

async fn wait_for<T>(log: &Log, what: &str, find: impl Fn(&ProbeLog) -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(found) = find(&log.lock().unwrap()) {
            return found;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}

fn ended_with(log: &ProbeLog) -> Option<SocketEnd> {
    log.sockets.iter().find_map(|event| match &event.signal {
        SocketSignal::Ended(end) => Some(end.clone()),
        _ => None,
    })
}

#[actix_rt::test]
async fn a_silent_socket_is_pinged_then_given_up() {
    let policy =
        LivenessPolicy::new(Duration::from_millis(100), Duration::from_millis(400)).unwrap();
    let (log, sent, _handle) = spawn_scripted(Vec::new(), policy, 1024, 0);
    let end = wait_for(&log, "the silence verdict", ended_with).await;
    assert!(matches!(end, SocketEnd::Silence { .. }), "{end:?}");
    let sent = sent.lock().unwrap();
    assert_eq!(
        sent.iter()
            .filter(|m| matches!(m, Message::Text(text) if &**text == PING_FRAME))
            .count(),
        1,
        "one ping per idle spell: {sent:?}"
    );
}

#[actix_rt::test]
async fn pings_get_pongs_fragments_are_reassembled_and_a_close_is_answered() {
    let frame = snapshot_frame("conv-1");
    let (head, tail) = frame.as_bytes().split_at(frame.len() / 2);
    let frames = vec![
        Frame::Ping(b"are you there".to_vec().into()),
        Frame::Continuation(ws::Item::FirstText(head.to_vec().into())),
        // Control frames may arrive between fragments.
        Frame::Ping(b"again".to_vec().into()),
        Frame::Continuation(ws::Item::Last(tail.to_vec().into())),
        // A malformed frame is counted and skipped, never fatal.
        Frame::Text(b"{not json".to_vec().into()),
        Frame::Text(snapshot_frame("conv-2").into()),
        Frame::Close(Some(awc::ws::CloseCode::Away.into())),
    ];
    let policy = LivenessPolicy::new(Duration::from_secs(5), Duration::from_secs(10)).unwrap();
    let (log, sent, _handle) = spawn_scripted(frames, policy, 64 * 1024, 0);
    let end = wait_for(&log, "the close", ended_with).await;
    assert_eq!(
        end,
        SocketEnd::PeerClosed {
            code: Some(1001),
            description: None
        }
    );
    let routed: Vec<String> = log
        .lock()
        .unwrap()
        .events
        .iter()
        .map(|e| e.input.conversation_id().to_string())
        .collect();
    assert_eq!(
        routed,
        vec!["conv-1", "conv-2"],
        "in order, the fragmented one whole"
    );
    let sent = sent.lock().unwrap();
    assert!(
        matches!(&sent[0], Message::Pong(p) if &p[..] == b"are you there"),
        "{sent:?}"
    );
    assert!(
        matches!(&sent[1], Message::Pong(p) if &p[..] == b"again"),
        "{sent:?}"
    );
    assert!(
        matches!(sent.last(), Some(Message::Close(Some(_)))),
        "{sent:?}"
    );
}

#[actix_rt::test]
async fn a_message_over_the_byte_cap_ends_the_connection() {
    let big = "x".repeat(600);
    let frames = vec![
        Frame::Continuation(ws::Item::FirstText(big.clone().into())),
        Frame::Continuation(ws::Item::Last(big.into())),
    ];
    let policy = LivenessPolicy::new(Duration::from_secs(5), Duration::from_secs(10)).unwrap();
    let (log, sent, _handle) = spawn_scripted(frames, policy, 1000, 0);
    let end = wait_for(&log, "the refusal", ended_with).await;
    assert_eq!(end, SocketEnd::Reassembly("too_large"));
    let sent = sent.lock().unwrap();
    assert!(
        matches!(sent.last(), Some(Message::Close(Some(reason))) if reason.code == awc::ws::CloseCode::Size),
        "{sent:?}"
    );
}

#[actix_rt::test]
async fn a_router_refusal_never_stalls_the_socket_and_is_reported_for_a_reread() {
    let telemetry = Telemetry::install().unwrap();
    let dropped = |t: &Telemetry| {
        sample::value(
            &t.render(),
            names::STREAM_ROUTE_DROPPED,
            &[("reason", "at_capacity")],
        )
        .unwrap_or(0.0)
    };
    let before = dropped(&telemetry);
    let frames = vec![
        Frame::Text(snapshot_frame("conv-a").into()),
        Frame::Text(snapshot_frame("conv-b").into()),
        Frame::Text(snapshot_frame("conv-c").into()),
        Frame::Close(None),
    ];
    let policy = LivenessPolicy::new(Duration::from_secs(5), Duration::from_secs(10)).unwrap();
    let (log, _sent, _handle) = spawn_scripted(frames, policy, 64 * 1024, 1);
    let end = wait_for(&log, "the close", ended_with).await;
    assert!(matches!(end, SocketEnd::PeerClosed { .. }), "{end:?}");
    let log = log.lock().unwrap();
    let routed: Vec<String> = log
        .events
        .iter()
        .map(|e| e.input.conversation_id().to_string())
        .collect();
    // The refused event is not retried in place (the socket read on, in order) ...
    assert_eq!(routed, vec!["conv-b", "conv-c"]);
    // ... its conversation is handed to the actor to re-read, and the drop is counted.
    let owed: Vec<String> = log
        .sockets
        .iter()
        .filter_map(|event| match &event.signal {
            SocketSignal::Undelivered { conversation_id } => Some(conversation_id.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(owed, vec!["conv-a"]);
    assert!(dropped(&telemetry) - before >= 1.0);
}

#[actix_rt::test]
async fn a_refused_oauth_client_restarts_the_stream_with_backoff_instead_of_spinning() {
    let telemetry = Telemetry::install().unwrap();
    let restarts = |t: &Telemetry| {
        sample::value(&t.render(), names::ACTOR_RESTARTS, &[("actor", "stream")]).unwrap_or(0.0)
    };
    let before = restarts(&telemetry);
    let http = client();
    let emulator = Emulator::start(emulator_options()).await.unwrap();
    let org = control(&http, &emulator, "GET", "/org", None).await;
    let queue = org["queues"][0]["id"].as_str().unwrap().to_owned();
    let tokens = TokenActor::new(
        TokenEndpoint {
            login_base: emulator.base_url(),
            client_id: emulator.client_id().to_owned(),
            client_secret: Secret::new("not-the-secret".to_owned()),
        },
        Arc::new(TokenStats::default()),
    )
    // This test is about the stream: the token actor's own exit is tested in token.rs.
    .with_escalation(convoy_actors::supervision::Escalation::new(|_| {}))
    .start();
    let rest = RestContext {
        api_base: emulator.base_url(),
        tokens,
        bucket: Arc::new(SharedBucket::new(60_000)),
        transport: Default::default(),
    };
    let log: Log = Arc::default();
    let probe = Probe::new(&log).start();
    let board = Arc::new(HealthBoard::default());
    let settings = StreamSettings {
        topics: vec![queue_topic(&queue)],
        stream: stream_config(),
        record: None,
        startup_lookback: Duration::from_secs(60),
    };
    let stream = Supervisor::start(move |_| {
        StreamActor::new(
            settings,
            rest,
            probe.clone().recipient(),
            probe.recipient(),
            board,
        )
    });
    let start = Instant::now();
    while restarts(&telemetry) - before < 3.0 {
        assert!(start.elapsed() < DEADLINE, "the stream was not restarted");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    // Backoff between restarts (100 ms, 200 ms, …): three restarts take a while, and the
    // restarts are few, not a tight loop.
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "{:?}",
        start.elapsed()
    );
    let status = stream.send(GetStreamStatus).await.unwrap();
    assert!(!status.links[0].connected);
    assert!(log.lock().unwrap().reconciles.is_empty());
    stream.send(StopStream).await.unwrap();
    emulator.stop().await;
}

#[actix_rt::test]
async fn a_channel_lifetime_shorter_than_the_margin_does_not_rotate_in_a_loop() {
    // 3 s channels, but rotate_before_expiry is 10 s: the margin falls back to a quarter
    // of the lifetime instead of making every new channel due at once.
    let harness = Harness::start(Setup {
        emulator: EmulatorOptions {
            channel_ttl: Duration::from_secs(3),
            ..emulator_options()
        },
        stream: StreamConfig {
            rotate_before_expiry: Duration::from_secs(10),
            ..stream_config()
        },
        ..Setup::default()
    })
    .await;
    harness.connected().await;
    let start = Instant::now();
    let status = harness
        .wait_status("rotated", |s| {
            s.totals.rotations >= 3 && s.links[0].connected
        })
        .await;
    // Each channel lives about 2.25 s before its rotation; a loop would take a fraction
    // of a second for three. (A lower bound only: a slow machine makes it longer.)
    assert!(
        start.elapsed() >= Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    assert!(status.totals.rotations >= 3);
    harness.stop().await;
}

#[actix_rt::test]
async fn a_token_shorter_than_the_margin_still_rotates_before_it_expires() {
    // Tokens of 2.5 s with the 10 s margin: before, token-expiry rotation was silently
    // dropped; now its margin falls back to a quarter of the token's life.
    let source: convoy_actors::stream::TokenExpirySource =
        Arc::new(|| Some(Instant::now() + Duration::from_millis(2500)));
    let harness = Harness::start(Setup {
        token_expiry: Some(source),
        stream: StreamConfig {
            rotate_before_expiry: Duration::from_secs(10),
            ..stream_config()
        },
        ..Setup::default()
    })
    .await;
    harness.connected().await;
    harness
        .wait_status("rotated before the token expired", |s| {
            s.totals.rotations >= 2 && s.links[0].connected
        })
        .await;
    assert!(harness.metric(names::STREAM_ROTATIONS, &[("reason", "token_expiry")]) >= 2.0);
    harness.stop().await;
}

/// Transcriptions of one conversation the probe received.
fn transcriptions_of(log: &Log, id: &str) -> usize {
    log.lock()
        .unwrap()
        .events
        .iter()
        .filter(|event| {
            matches!(&event.input, ConversationInput::Transcription(t) if t.conversation_id.text().as_str() == id)
        })
        .count()
}

#[actix_rt::test]
async fn watching_a_voice_call_delivers_its_transcription_through_a_rotation() {
    let harness = Harness::start(Setup::default()).await;
    harness.connected().await;
    // A slow call: ten turns a second apart, two utterances each.
    let created = harness
        .control(
            "POST",
            "/conversations/voice",
            Some(json!({
                "queueId": harness.queue,
                "answer_after_ms": 200,
                "reply_after_ms": 1000,
                "agent_replies": 10,
                "wrapup_after_ms": 500,
            })),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    harness.stream.do_send(WatchTranscription {
        conversation_id: convoy::ids::ConversationId::from(id.as_str()),
        watch: true,
    });
    let first = eventually(DEADLINE, || async {
        transcriptions_of(&harness.log, &id) > 0
    })
    .await;
    assert!(
        first,
        "no transcription of the watched call reached the router"
    );
    assert_eq!(harness.status().await.links[0].transcriptions, 1);

    // A rotation re-subscribes the topic on the new channel.
    let before = harness.status().await;
    harness
        .control("POST", "/sockets/closing?grace_ms=300", None)
        .await;
    harness
        .wait_status("rotated", |s| {
            s.totals.rotations >= 1
                && s.links[0].connected
                && s.links[0].channel_id != before.links[0].channel_id
        })
        .await;
    actix_rt::time::sleep(Duration::from_millis(400)).await;
    let seen = transcriptions_of(&harness.log, &id);
    let more = eventually(DEADLINE, || async {
        transcriptions_of(&harness.log, &id) > seen
    })
    .await;
    assert!(more, "no transcription after the rotation ({seen} before)");

    harness.stream.do_send(WatchTranscription {
        conversation_id: convoy::ids::ConversationId::from(id.as_str()),
        watch: false,
    });
    harness
        .wait_status("unwatched", |s| s.links[0].transcriptions == 0)
        .await;
    harness.stop().await;
}

#[actix_rt::test]
async fn a_byte_identical_snapshot_on_another_topic_is_not_routed_again() {
    let queue = snapshot_frame("conv-1");
    // The same body on the agent's user topic, envelope members in another order.
    let body = serde_json::from_str::<Value>(&queue).unwrap()["eventBody"].to_string();
    let user = format!(
        r#"{{"eventBody":{body},"metadata":{{"CorrelationId":"y"}},"topicName":"v2.users.u1.conversations","version":"2"}}"#
    );
    // The same bytes on a `.messages` topic are read with the other shape: routed.
    let messages = queue.replace(".conversations\"", ".conversations.messages\"");
    let changed = queue.replace("\"connected\"", "\"disconnected\"");
    let frames = vec![
        Frame::Text(queue.clone().into()),
        Frame::Text(user.into()),
        Frame::Text(messages.into()),
        Frame::Text(changed.into()),
        // An older copy still among the recent bodies: dropped too.
        Frame::Text(queue.into()),
        Frame::Close(Some(awc::ws::CloseCode::Away.into())),
    ];
    let policy = LivenessPolicy::new(Duration::from_secs(5), Duration::from_secs(10)).unwrap();
    let (log, _sent, _handle) = spawn_scripted(frames, policy, 64 * 1024, 0);
    let end = wait_for(&log, "the close", ended_with).await;
    assert!(matches!(end, SocketEnd::PeerClosed { .. }), "{end:?}");
    let routed = log.lock().unwrap().events.len();
    assert_eq!(routed, 3, "the queue copy, the .messages read, the change");
}
