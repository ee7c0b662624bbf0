//! `kill -9` of `convoy run` during a simulated run, restarted each time on the same
//! `outbox.path`, against an in-process emulator and `crm-sink`. At the end the sink holds
//! every expected record (de-duplicated by id), every conversation summary is final, and
//! the SLA outcomes are those of a run without kills.
//!
//! Why "the outcomes of a run without kills" is checkable: see `support`'s module doc.
//!
//! The kill points are seeded: the seed is printed (and `CRM_KILL_SEED` replays it).
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(unix)]

mod support;

use std::time::{Duration, Instant};

use convoy::simulator::Scenario;
use convoy_actors::crm_sink::{CrmSink, CrmSinkOptions};
use convoy_actors::emulator::{Emulator, EmulatorOptions};
use convoy_actors::simulator::{Simulator, SimulatorOptions};
use convoy_actors::store::DurableStore;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::{all_finished, daemon_files, sink_problems, truth, Convoy, Log, FAST};

const KILLS: usize = 4;
/// Generous: the machine running the tests may be loaded.
const DEADLINE: Duration = Duration::from_secs(240);

#[actix_rt::test]
async fn kill_9_at_random_points_loses_nothing_and_changes_no_outcome() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let seed = support::seed("CRM_KILL_SEED");
    let mut rng = StdRng::seed_from_u64(seed);
    let http = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let emulator = Emulator::start(EmulatorOptions {
        rate_limit_per_minute: 0,
        heartbeat: Duration::from_secs(1),
        ..EmulatorOptions::default()
    })
    .await
    .unwrap();
    let sink = CrmSink::start(CrmSinkOptions::default()).await.unwrap();
    let files = daemon_files(&emulator, &sink, "15s");
    let log = Log::default();

    let mut child = Convoy::spawn(&files.config, 0, &log);
    let mut options = SimulatorOptions::new(
        &emulator.base_url(),
        emulator.client_id(),
        emulator.client_secret(),
    );
    options.scenario = Scenario::from_toml(FAST).unwrap();
    options.conversations = 40;
    options.concurrency = 10;
    options.rate_per_second = Some(4.0);
    options.seed = seed;
    options.poll_interval = Duration::from_millis(100);
    options.conversation_slack = Duration::from_secs(120);
    options.max_retries = 20;
    let simulation = actix_rt::spawn(async move { Simulator::new(options).run().await });

    for kill in 0..KILLS {
        let up_ms = rng.gen_range(1_500..5_000);
        let down_ms = rng.gen_range(100..2_000);
        actix_rt::time::sleep(Duration::from_millis(up_ms)).await;
        child.kill_9();
        println!(
            "kill {kill}: after {up_ms} ms up, {} records at the sink; down {down_ms} ms",
            sink.records().len()
        );
        actix_rt::time::sleep(Duration::from_millis(down_ms)).await;
        child = Convoy::spawn(&files.config, kill + 1, &log);
    }
    let report = simulation.await.unwrap().unwrap();
    assert_eq!(report.conversations_failed, 0, "{report}");

    let started = Instant::now();
    let mut last = Vec::new();
    let settled = loop {
        child.assert_alive();
        let truth = truth(&http, &emulator).await;
        if all_finished(&truth) {
            last = sink_problems(&sink, &truth);
            if last.is_empty() {
                break true;
            }
        }
        if started.elapsed() > DEADLINE {
            break false;
        }
        actix_rt::time::sleep(Duration::from_millis(500)).await;
    };
    // The last run ends gracefully: everything sent, nothing left or dead-lettered.
    let exit = child.terminate(Duration::from_secs(60)).await;
    assert!(
        settled,
        "seed {seed}: {} problems, first: {:?}\n{}",
        last.len(),
        &last[..last.len().min(15)],
        log.tail(80)
    );
    assert_eq!(exit.code(), Some(0), "seed {seed}");
    assert_eq!(log.panics(), Vec::<String>::new(), "seed {seed}");
    let status = DurableStore::open(&files.outbox).unwrap().status().unwrap();
    assert_eq!(status.pending, 0, "seed {seed}: {status:?}");
    assert_eq!(status.dead_lettered, 0, "seed {seed}: {status:?}");
    assert_eq!(status.summaries_pending, 0, "seed {seed}: {status:?}");
    sink.stop().await;
    emulator.stop().await;
}
