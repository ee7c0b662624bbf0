//! Issue 12: Convoy split into roles over a real `nats-server -js` (loopback, ephemeral
//! port, fresh store). Ingest and worker are whole daemons (`app::Daemon`, what
//! `convoy run` starts) in this process, against the emulator and the CRM sink, driven by
//! the simulator. Each run ends when the worker's conversations equal the emulator's truth,
//! every participant carries Convoy's attribute, and every expected CRM record arrived —
//! or fails with the differences after a generous deadline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use convoy::simulator::Scenario;
use convoy_actors::app::{Daemon, RunOptions};
use convoy_actors::cluster::nats::connect;
use convoy_actors::crm_sink::{CrmSink, CrmSinkOptions};
use convoy_actors::demo::{config_for, differences, discard_private_store, unwritten_attributes};
use convoy_actors::emulator::{Emulator, EmulatorOptions};
use convoy_actors::simulator::{Simulator, SimulatorOptions};
use convoy_actors::stream::GetStreamStatus;
use serde_json::Value;

use crate::nats::NatsServer;
use crate::support::{self, client, eventually};

const FAST: &str = include_str!("../../config/examples/scenario-fast.toml");
/// Small partitions count: every partition gets conversations in a short run.
const PARTITIONS: u16 = 8;
const STREAM: &str = "CONVOY_FRAMES";

/// One emulator, one NATS, one CRM sink, any number of role daemons.
struct Cluster {
    nats: NatsServer,
    emulator: Emulator,
    sink: CrmSink,
    http: awc::Client,
    /// Writes carry `If-Match` (the emulator refuses a stale one).
    strict: bool,
    /// Every daemon's configuration: their private stores go with the cluster.
    configs: std::sync::Mutex<Vec<convoy::config::Config>>,
}

impl Cluster {
    async fn start(options: EmulatorOptions) -> Cluster {
        let strict = options.strict_if_match;
        let nats = NatsServer::start();
        let emulator = Emulator::start(EmulatorOptions {
            rate_limit_per_minute: 0,
            ..options
        })
        .await
        .unwrap();
        let sink = CrmSink::start(CrmSinkOptions::default()).await.unwrap();
        Cluster {
            nats,
            emulator,
            sink,
            http: client(),
            strict,
            configs: std::sync::Mutex::default(),
        }
    }

    fn config(&self, role: &str) -> convoy::config::Config {
        let extra = format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n\
             [sla]\ndelivery = \"3s\"\nread = \"3s\"\n\
             [crm]\nendpoint = \"{sink}\"\nbatch_size = 20\nflush_interval = \"200ms\"\nretry_max_delay = \"1s\"\n\
             [cluster]\nenabled = true\nnats_url = \"{nats}\"\nrole = \"{role}\"\npartitions = {PARTITIONS}\n",
            sink = self.sink.base_url(),
            nats = self.nats.url(),
        );
        let genesys = if self.strict {
            "if_match = \"etag\""
        } else {
            ""
        };
        let config = config_for(&self.emulator, genesys, &extra).unwrap();
        if let Ok(mut configs) = self.configs.lock() {
            configs.push(config.clone());
        }
        config
    }

    /// Starts a daemon in `role` and waits until `/readyz` says it is ready.
    async fn daemon(&self, role: &str) -> Daemon {
        let daemon = Daemon::start(&self.config(role), RunOptions::default())
            .await
            .unwrap();
        let ready = eventually(Duration::from_secs(60), || async {
            daemon.board.readiness_now().ready
        })
        .await;
        assert!(ready, "{role}: {:?}", daemon.board.readiness_now());
        daemon
    }

    /// Attribute writes the emulator refused for a stale `If-Match`.
    async fn if_match_conflicts(&self) -> u64 {
        let mut response = self
            .http
            .get(format!("{}/emulator/v1/truth", self.emulator.base_url()))
            .send()
            .await
            .unwrap();
        let body: Value = response.json().limit(256 * 1024 * 1024).await.unwrap();
        body["ifMatchConflicts"].as_u64().unwrap()
    }

    async fn truth(&self) -> Vec<Value> {
        support::truth(&self.http, &self.emulator).await
    }

    async fn simulate(&self, conversations: usize, seed: u64) {
        let mut options = SimulatorOptions::new(
            &self.emulator.base_url(),
            self.emulator.client_id(),
            self.emulator.client_secret(),
        );
        options.scenario = Scenario::from_toml(FAST).unwrap();
        options.conversations = conversations;
        options.concurrency = 40;
        options.rate_per_second = Some(20.0);
        options.seed = seed;
        options.poll_interval = Duration::from_millis(100);
        options.conversation_slack = Duration::from_secs(120);
        options.max_retries = 20;
        let report = Simulator::new(options).run().await.unwrap();
        assert_eq!(report.conversations_failed, 0, "{report}");
    }

    /// The worker's conversations equal the truth and every attribute is written.
    async fn assert_converges(&self, worker: &Daemon) {
        let converged = eventually(Duration::from_secs(180), || async {
            let truth = self.truth().await;
            differences(&worker.views, &truth).is_empty() && unwritten_attributes(&truth).is_empty()
        })
        .await;
        if !converged {
            let truth = self.truth().await;
            let mut problems = differences(&worker.views, &truth);
            problems.extend(unwritten_attributes(&truth));
            panic!(
                "{} differences, first: {:?}",
                problems.len(),
                &problems[..problems.len().min(10)]
            );
        }
    }

    /// Every participant lifecycle and message status of the truth is a record at the
    /// sink (which holds each record id once).
    async fn assert_every_expected_record(&self) {
        let truth = self.truth().await;
        let missing = || {
            let ids: BTreeSet<String> = self.sink.records().into_iter().map(|r| r.id).collect();
            expected_records(&truth)
                .into_iter()
                .filter(|record| !ids.contains(record))
                .collect::<Vec<_>>()
        };
        let arrived = eventually(Duration::from_secs(120), || async { missing().is_empty() }).await;
        let missing = missing();
        assert!(
            arrived,
            "{} expected records missing, first: {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
    }

    /// Every `Nats-Msg-Id` the stream holds, in order.
    async fn stored_frame_ids(&self) -> Vec<String> {
        let cluster = self.config("worker").cluster.unwrap();
        let nats = connect(&cluster, "convoy-test").await.unwrap();
        let mut stream = nats.jetstream.get_stream(STREAM).await.unwrap();
        let info = stream.info().await.unwrap();
        let (first, last) = (info.state.first_sequence, info.state.last_sequence);
        let mut ids = Vec::new();
        for sequence in first..=last {
            let message = stream.get_raw_message(sequence).await.unwrap();
            let id = message
                .headers
                .get("Nats-Msg-Id")
                .map(|value| value.as_str().to_owned())
                .unwrap_or_default();
            ids.push(id);
        }
        ids
    }

    /// Shuts the daemons down in order (each within its deadline), then the cluster.
    async fn stop_with<const N: usize>(self, daemons: [(&str, Daemon); N]) {
        for (role, daemon) in daemons {
            assert!(
                daemon.shutdown().await,
                "{role} shutdown missed its deadline"
            );
        }
        self.stop().await;
    }

    async fn stop(self) {
        for config in self
            .configs
            .lock()
            .map(|configs| configs.clone())
            .unwrap_or_default()
        {
            discard_private_store(&config);
        }
        self.emulator.stop().await;
        self.sink.stop().await;
        drop(self.nats);
    }
}

fn expected_records(truth: &[Value]) -> Vec<String> {
    let mut expected = Vec::new();
    for conversation in truth {
        let id = conversation["id"].as_str().unwrap();
        for participant in conversation["participants"].as_array().unwrap() {
            expected.push(format!(
                "{id}/participant/{}/{}",
                participant["id"].as_str().unwrap(),
                participant["lifecycle"].as_str().unwrap()
            ));
        }
        for message in conversation["messages"].as_array().unwrap() {
            if let Some(status) = message["status"].as_str() {
                expected.push(format!(
                    "{id}/message/{}/{status}",
                    message["id"].as_str().unwrap()
                ));
            }
        }
    }
    expected
}

async fn channel_connects(daemon: &Daemon) -> u64 {
    let stream = daemon.stream.as_ref().expect("an ingest holds channels");
    let status = stream.send(GetStreamStatus).await.unwrap();
    status.totals.connects
}

#[actix_rt::test]
async fn one_ingest_and_one_worker_end_equal_to_the_truth_with_every_crm_record() {
    let cluster = Cluster::start(EmulatorOptions {
        strict_if_match: true,
        ..EmulatorOptions::default()
    })
    .await;
    let worker = cluster.daemon("worker").await;
    assert!(worker.stream.is_none(), "a worker holds no Genesys channel");
    let ingest = cluster.daemon("ingest").await;
    assert!(channel_connects(&ingest).await > 0);

    cluster.simulate(60, 12).await;
    cluster.assert_converges(&worker).await;
    cluster.assert_every_expected_record().await;
    // The ingest ran no conversation itself: everything went through the stream.
    assert!(ingest.views.is_empty(), "the ingest applied frames itself");
    let ids = cluster.stored_frame_ids().await;
    assert!(ids.len() >= 60, "{} messages in the stream", ids.len());
    // One worker cannot race itself: what the emulator counts here is the baseline of
    // the failover run's count (the simulator moving a conversation between Convoy's
    // read of its version and its write).
    println!(
        "one worker: {} If-Match conflicts, all resolved",
        cluster.if_match_conflicts().await
    );

    cluster
        .stop_with([("ingest", ingest), ("worker", worker)])
        .await;
}

/// Voice calls with ingest and worker apart: the worker's conversation actor cannot ask
/// the ingest's stream for the call's transcription topic, so the ingest follows it from
/// the snapshots it publishes; the transcript reaches the worker through the stream, and
/// the ingest stops following once the call has ended.
#[actix_rt::test]
async fn a_voice_call_is_transcribed_with_ingest_and_worker_apart() {
    let cluster = Cluster::start(EmulatorOptions::default()).await;
    let worker = cluster.daemon("worker").await;
    let ingest = cluster.daemon("ingest").await;
    let id = support::slow_voice_call(&cluster.http, &cluster.emulator).await;
    let transcribed = support::shows_transcript(&worker.views, &id).await;
    assert!(
        transcribed,
        "no transcript segment reached the worker: {:?}",
        worker.views.get(&id).map(|view| view.to_json(None))
    );
    cluster.assert_converges(&worker).await;
    let stream = ingest.stream.clone().unwrap();
    let unfollowed = eventually(Duration::from_secs(30), || async {
        let status = stream.send(GetStreamStatus).await.unwrap();
        status.links.iter().all(|link| link.transcriptions == 0)
    })
    .await;
    assert!(unfollowed, "the ingest still follows the ended call");
    assert!(ingest.views.is_empty(), "the ingest applied frames itself");

    cluster
        .stop_with([("ingest", ingest), ("worker", worker)])
        .await;
}

/// Hot standby: two ingests hold the same subscriptions and publish the same frames;
/// JetStream's duplicate window keeps one copy of each, so the stream holds no frame id
/// twice and the worker applies each change once.
#[actix_rt::test]
async fn two_ingests_in_hot_standby_publish_each_frame_once() {
    let cluster = Cluster::start(EmulatorOptions::default()).await;
    let worker = cluster.daemon("worker").await;
    let first = cluster.daemon("ingest").await;
    let second = cluster.daemon("ingest").await;
    assert!(channel_connects(&first).await > 0 && channel_connects(&second).await > 0);

    cluster.simulate(40, 34).await;
    cluster.assert_converges(&worker).await;
    cluster.assert_every_expected_record().await;

    let ids = cluster.stored_frame_ids().await;
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert!(!ids.is_empty());
    assert_eq!(
        distinct.len(),
        ids.len(),
        "the stream holds a frame id twice"
    );
    assert!(first.views.is_empty() && second.views.is_empty());

    cluster
        .stop_with([
            ("first ingest", first),
            ("second ingest", second),
            ("worker", worker),
        ])
        .await;
}
