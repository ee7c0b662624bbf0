//! Issue 4's acceptance runs: the whole daemon (`app::Daemon`, exactly what `convoy run`
//! starts) against the emulator, driven by the simulator. Each run ends when Convoy's
//! `/conversations` equals the emulator's ground truth and every participant carries
//! Convoy's attribute — or fails with the differences after a generous deadline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use convoy::conversation::writeback::WriteBackStats;
use convoy::simulator::Scenario;
use convoy_actors::app::{Daemon, RunOptions};
use convoy_actors::conversation::actor::InjectPanic;
use convoy_actors::conversation::router::{GetRouterStats, LookupConversation, RouterStats};
use convoy_actors::conversation::writer::GetWriteStats;
use convoy_actors::demo::{config_for, differences, discard_private_store, unwritten_attributes};
use convoy_actors::emulator::{Emulator, EmulatorOptions};
use convoy_actors::simulator::{SimulationReport, Simulator, SimulatorOptions};
use serde_json::{json, Value};

use crate::support::{self, client, eventually};

const FAST: &str = include_str!("../../config/examples/scenario-fast.toml");

pub struct Run {
    pub emulator: Emulator,
    pub daemon: Daemon,
    pub http: awc::Client,
    pub config: convoy::config::Config,
}

async fn start_ready(config: &convoy::config::Config) -> Daemon {
    let daemon = Daemon::start(config, RunOptions::default()).await.unwrap();
    let ready = eventually(Duration::from_secs(60), || async {
        daemon.board.readiness_now().ready
    })
    .await;
    assert!(ready, "{:?}", daemon.board.readiness_now());
    daemon
}

impl Run {
    /// The daemon's stream, as it stands now.
    pub async fn stream_status(&self) -> convoy_actors::stream::StreamStatus {
        self.daemon
            .stream
            .as_ref()
            .expect("the daemon runs a stream")
            .send(convoy_actors::stream::GetStreamStatus)
            .await
            .expect("the stream answers")
    }

    pub async fn start(options: EmulatorOptions, extra_toml: &str) -> Run {
        Run::start_with(options, "", extra_toml).await
    }

    /// `genesys_extra`: lines of the `[genesys]` section (e.g. `requests_per_minute = 300`).
    pub async fn start_with(
        options: EmulatorOptions,
        genesys_extra: &str,
        extra_toml: &str,
    ) -> Run {
        let mut genesys_extra = genesys_extra.to_owned();
        if options.strict_if_match {
            genesys_extra.push_str("\nif_match = \"etag\"");
        }
        let http = client();
        let emulator = Emulator::start(EmulatorOptions {
            rate_limit_per_minute: 0,
            ..options
        })
        .await
        .unwrap();
        let config = config_for(
            &emulator,
            &genesys_extra,
            &format!("[admin]\nlisten = \"127.0.0.1:0\"\n{extra_toml}"),
        )
        .unwrap();
        let daemon = start_ready(&config).await;
        Run {
            emulator,
            daemon,
            http,
            config,
        }
    }

    /// This daemon's write-back counts (the metrics are shared by every test in the
    /// process, these are not).
    pub async fn write_stats(&self) -> WriteBackStats {
        self.daemon.writer.send(GetWriteStats).await.unwrap()
    }

    pub async fn router_stats(&self) -> RouterStats {
        self.daemon.router.send(GetRouterStats).await.unwrap()
    }

    pub async fn control(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        support::control(&self.http, &self.emulator, method, path, body).await
    }

    pub async fn truth(&self) -> Vec<Value> {
        support::truth(&self.http, &self.emulator).await
    }

    pub async fn simulate(&self, conversations: usize, seed: u64) -> SimulationReport {
        self.simulate_at(conversations, seed, 100.0).await
    }

    /// Starts `rate` conversations a second.
    pub async fn simulate_at(
        &self,
        conversations: usize,
        seed: u64,
        rate: f64,
    ) -> SimulationReport {
        let mut options = SimulatorOptions::new(
            &self.emulator.base_url(),
            self.emulator.client_id(),
            self.emulator.client_secret(),
        );
        options.scenario = Scenario::from_toml(FAST).unwrap();
        options.conversations = conversations;
        options.concurrency = 40;
        options.rate_per_second = Some(rate);
        options.seed = seed;
        options.poll_interval = Duration::from_millis(100);
        options.conversation_slack = Duration::from_secs(120);
        options.max_retries = 20;
        Simulator::new(options).run().await.unwrap()
    }

    /// Waits for Convoy to equal the truth; panics with what still differs.
    pub async fn assert_converges(&self) {
        let converged = eventually(Duration::from_secs(180), || async {
            let truth = self.truth().await;
            differences(&self.daemon.views, &truth).is_empty()
                && unwritten_attributes(&truth).is_empty()
        })
        .await;
        if !converged {
            let truth = self.truth().await;
            let mut problems = differences(&self.daemon.views, &truth);
            problems.extend(unwritten_attributes(&truth));
            panic!(
                "{} differences, first: {:?}",
                problems.len(),
                &problems[..problems.len().min(10)]
            );
        }
    }

    /// The sum of every series of a metric on the admin server's `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        let mut response = self
            .http
            .get(format!("http://{}/metrics", self.daemon.admin.local_addr()))
            .send()
            .await
            .unwrap();
        let body = response.body().limit(16 * 1024 * 1024).await.unwrap();
        String::from_utf8_lossy(&body)
            .lines()
            .filter(|line| {
                line.starts_with(name)
                    && matches!(line.as_bytes().get(name.len()), Some(b' ' | b'{'))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Stops the daemon and the emulator, and removes the daemon's outbox folder from the
    /// temporary folder (nothing reopens it after the test).
    pub async fn stop(self) {
        assert!(self.daemon.shutdown().await, "shutdown missed its deadline");
        self.emulator.stop().await;
        discard_private_store(&self.config);
    }
}

#[actix_rt::test]
async fn two_hundred_conversations_end_equal_to_the_truth_with_attributes_written() {
    let run = Run::start(EmulatorOptions::default(), "").await;
    let report = run.simulate(200, 21).await;
    assert_eq!(report.conversations_failed, 0, "{report}");
    run.assert_converges().await;
    assert!(run.truth().await.len() >= 200);
    assert!(run.metric("convoy_stream_frames_total").await > 0.0);
    run.stop().await;
}

#[actix_rt::test]
async fn chaos_drops_closings_expiries_duplicates_and_failures_still_converge() {
    let run = Run::start(
        EmulatorOptions {
            heartbeat: Duration::from_millis(500),
            channel_ttl: Duration::from_secs(6),
            token_ttl: Duration::from_secs(30),
            ..EmulatorOptions::default()
        },
        "[stream]\nping_after_idle = \"1s\"\nreconnect_after_silence = \"3s\"\nrotate_before_expiry = \"2s\"\n",
    )
    .await;
    let reconnects_before = run.metric("convoy_stream_reconnects_total").await;
    let retries_before = run.metric("convoy_genesys_retries_total").await;
    let rotations_before = run.metric("convoy_stream_rotations_total").await;
    run.control(
        "PUT",
        "/faults",
        Some(json!({"error_ratio": 0.1, "rate_limit_ratio": 0.1, "duplicate_ratio": 0.2, "reorder_ratio": 0.2})),
    )
    .await;
    // Chaos runs beside the simulation until it ends.
    let done = Rc::new(Cell::new(false));
    let chaos = {
        let done = done.clone();
        let base = run.emulator.base_url();
        let http = run.http.clone();
        actix_rt::spawn(async move {
            let post = |path: &'static str| {
                let request = http.post(format!("{base}/emulator/v1{path}"));
                async move {
                    let _ = request.send().await;
                }
            };
            // Every kind of fault at least once, however fast the simulation is.
            let mut round = 0u32;
            while !done.get() || round < 4 {
                actix_rt::time::sleep(Duration::from_millis(1500)).await;
                round += 1;
                match round % 4 {
                    1 => post("/sockets/drop").await,
                    2 => post("/sockets/closing?grace_ms=1000").await,
                    3 => post("/tokens/expire").await,
                    _ => post("/sockets/drop").await,
                }
            }
        })
    };
    let report = run.simulate(200, 22).await;
    done.set(true);
    chaos.await.unwrap();
    run.control("PUT", "/faults", Some(json!({}))).await;
    assert_eq!(report.conversations_failed, 0, "{report}");
    run.assert_converges().await;
    // Recovery is asynchronous; the counters are read once it has had time to happen.
    let visible = eventually(Duration::from_secs(60), || async {
        run.metric("convoy_stream_reconnects_total").await > reconnects_before
            && run.metric("convoy_genesys_retries_total").await > retries_before
            && run.metric("convoy_stream_rotations_total").await > rotations_before
    })
    .await;
    assert!(
        visible,
        "reconnects, retries and rotations must all show on /metrics"
    );
    run.stop().await;
}

#[actix_rt::test]
async fn strict_if_match_with_another_writer_resolves_every_conflict() {
    let run = Run::start(
        EmulatorOptions {
            strict_if_match: true,
            ..EmulatorOptions::default()
        },
        "",
    )
    .await;
    let conflicts_before = run.metric("convoy_genesys_conflict_retries_total").await;
    let done = Rc::new(Cell::new(false));
    let writer = {
        let done = done.clone();
        let base = run.emulator.base_url();
        let http = run.http.clone();
        actix_rt::spawn(async move {
            while !done.get() {
                actix_rt::time::sleep(Duration::from_millis(50)).await;
                let Ok(mut response) = http.get(format!("{base}/emulator/v1/truth")).send().await
                else {
                    continue;
                };
                let Ok(truth) = response.json::<Value>().limit(256 * 1024 * 1024).await else {
                    continue;
                };
                for conversation in truth["conversations"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .take(40)
                {
                    let id = conversation["id"].as_str().unwrap_or_default();
                    let _ = http
                        .post(format!("{base}/emulator/v1/conversations/{id}/touch"))
                        .send()
                        .await;
                }
            }
        })
    };
    let report = run.simulate(60, 23).await;
    done.set(true);
    writer.await.unwrap();
    assert_eq!(report.conversations_failed, 0, "{report}");
    run.assert_converges().await;
    assert!(run.metric("convoy_genesys_conflict_retries_total").await > conflicts_before);
    // The other writer's key is still there: Convoy writes only its own keys.
    let truth = run.truth().await;
    assert!(truth.iter().any(|c| c["participants"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["attributes"].get("other.writer").is_some())));
    run.stop().await;
}

#[actix_rt::test]
async fn a_conversation_actor_killed_by_a_panic_is_rebuilt_and_ends_correct() {
    let run = Run::start(EmulatorOptions::default(), "").await;
    // Slow agents so conversations stay live long enough to be hit.
    run.control("PUT", "/routing", Some(json!({"answer_after_ms": 1500, "reply_after_ms": 500, "agent_replies": 2, "wrapup_after_ms": 500})))
        .await;
    let restarts_before = run.metric("convoy_actor_restarts_total").await;
    let token = support::emulator_token(&run.http, &run.emulator).await;
    let org = run.control("GET", "/org", None).await;
    let integration = org["queues"][0]["integrationId"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut response = run
        .http
        .post(format!(
            "{}/api/v2/conversations/messages/{integration}/inbound/open/message?prefetchConversationId=true",
            run.emulator.base_url()
        ))
        .insert_header(("Authorization", format!("Bearer {token}")))
        .send_json(&json!({"channel": {"from": {"id": "panic-customer", "idType": "Opaque"}, "time": chrono::Utc::now().to_rfc3339()}, "text": "hi"}))
        .await
        .unwrap();
    let conversation: Value = response.json().await.unwrap();
    let id = convoy::ids::ConversationId::from(conversation["conversationId"].as_str().unwrap());
    let tracked = eventually(Duration::from_secs(30), || async {
        run.daemon
            .router
            .send(LookupConversation(id.clone()))
            .await
            .unwrap()
            .is_some()
    })
    .await;
    assert!(tracked, "the conversation was never tracked");
    let actor = run
        .daemon
        .router
        .send(LookupConversation(id.clone()))
        .await
        .unwrap()
        .unwrap();
    actor.do_send(InjectPanic);
    let dead = eventually(Duration::from_secs(10), || {
        let actor = actor.clone();
        async move { !actor.connected() }
    })
    .await;
    assert!(dead, "the injected panic did not kill the actor");
    // The conversation goes on in the emulator; the next event rebuilds the actor.
    let ended = eventually(Duration::from_secs(60), || async {
        support::all_finished(&run.truth().await)
    })
    .await;
    assert!(ended, "the emulator did not finish the conversation");
    run.assert_converges().await;
    let restarts = run.metric("convoy_actor_restarts_total").await;
    assert!(
        restarts > restarts_before,
        "restarts {restarts} vs {restarts_before}; {}",
        run.daemon
            .telemetry
            .render()
            .lines()
            .filter(|l| l.contains("restart") || l.contains("panic") || l.contains("evicted"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(run.metric("convoy_actor_panics_total").await > 0.0);
    run.stop().await;
}
