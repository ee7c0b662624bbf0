//! Issue 12's failover run: two ingests (hot standby) and three workers, each a real
//! `convoy run` child process, sharing the work through a real `nats-server -js` (loopback, ephemeral port),
//! against an in-process emulator in strict `If-Match` mode and `crm-sink`, driven by the
//! simulator. Mid-run one worker is killed with SIGKILL: its partition leases expire, the
//! other two take the partitions over, rebuild those conversations from REST and continue
//! from the frames it had not acknowledged. Later the standby ingest is killed too: the
//! other ingest's frames carry on alone.
//!
//! At the end: every conversation of the emulator's truth equals a surviving worker's
//! view and carries Convoy's attribute; the CRM holds every expected record (de-duplicated
//! by id), every final summary and the SLA outcomes the truth implies (`support`'s module
//! doc); every partition is owned by a survivor; no run's stderr tells of a panic; and
//! no conversation was written by two workers at once: the emulator counts a strict
//! `If-Match` conflict as cross-writer when another writer (workers name themselves in
//! `User-Agent`) made the version stale, and that count is 0. The plain conflict count
//! is printed, not asserted: a single worker sees conflicts too (the simulator moves a
//! conversation between Convoy's read of its version and its write).
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(unix)]

mod support;

#[path = "../../tests/e2e/nats.rs"]
mod nats;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use convoy::simulator::Scenario;
use convoy_actors::crm_sink::{CrmSink, CrmSinkOptions};
use convoy_actors::demo::{differences_by, unwritten_attributes};
use convoy_actors::emulator::{Emulator, EmulatorOptions};
use convoy_actors::simulator::{Simulator, SimulatorOptions};
use serde_json::Value;
use support::{
    admin_views, all_finished, daemon_files, sink_problems, truth, Convoy, DaemonFiles, Log, FAST,
};

use nats::NatsServer;

const PARTITIONS: u16 = 8;
const CONVERSATIONS: usize = 60;

/// A `convoy run` configuration in `role`: `daemon_files`' plus strict `If-Match` writes
/// and the cluster section.
fn role_files(emulator: &Emulator, sink: &CrmSink, nats: &NatsServer, role: &str) -> DaemonFiles {
    // Receipt thresholds longer than a takeover (lease TTL 3 s + JetStream's ack wait
    // of 30 s before the dead worker's unacknowledged frames are delivered again): the
    // clocks themselves move with the partition (NATS KV), but a receipt the dead worker
    // had read and not acknowledged reaches the new owner only after the ack wait, and
    // a threshold shorter than that would breach on the delay of the handover itself.
    let files = daemon_files(emulator, sink, "40s");
    let text = std::fs::read_to_string(&files.config).unwrap();
    let text = text.replacen(
        "requests_per_minute = 60000\n",
        "requests_per_minute = 60000\nif_match = \"etag\"\n",
        1,
    );
    let text = format!(
        "{text}[cluster]\nenabled = true\nnats_url = \"{}\"\nrole = \"{role}\"\npartitions = {PARTITIONS}\nlease_ttl = \"3s\"\n",
        nats.url()
    );
    std::fs::write(&files.config, text).unwrap();
    files
}

/// The sum of every series of `name` on a daemon's `/metrics`.
async fn metric(http: &awc::Client, admin: SocketAddr, name: &str) -> f64 {
    let Ok(mut response) = http.get(format!("http://{admin}/metrics")).send().await else {
        return 0.0;
    };
    let Ok(body) = response.body().limit(16 * 1024 * 1024).await else {
        return 0.0;
    };
    String::from_utf8_lossy(&body)
        .lines()
        .filter(|line| {
            line.starts_with(name) && matches!(line.as_bytes().get(name.len()), Some(b' ' | b'{'))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn ready(http: &awc::Client, admin: SocketAddr) -> bool {
    http.get(format!("http://{admin}/readyz"))
        .send()
        .await
        .is_ok_and(|response| response.status().is_success())
}

/// Polls `condition` every 200 ms until it holds or `deadline` passes.
async fn eventually<F, Fut>(deadline: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + deadline;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() > until {
            return false;
        }
        actix_rt::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The emulator's strict `If-Match` conflicts (all, cross-writer) and the writers it saw.
async fn if_match_conflicts(http: &awc::Client, emulator: &Emulator) -> (u64, u64, Vec<String>) {
    let mut response = http
        .get(format!("{}/emulator/v1/truth", emulator.base_url()))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().limit(256 * 1024 * 1024).await.unwrap();
    (
        body["ifMatchConflicts"].as_u64().unwrap(),
        body["crossWriterConflicts"].as_u64().unwrap(),
        serde_json::from_value(body["attributeWriters"].clone()).unwrap(),
    )
}

#[actix_rt::test]
async fn a_worker_and_the_standby_ingest_killed_mid_run_lose_nothing() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let nats = NatsServer::start();
    let emulator = Emulator::start(EmulatorOptions {
        rate_limit_per_minute: 0,
        heartbeat: Duration::from_secs(1),
        strict_if_match: true,
        ..EmulatorOptions::default()
    })
    .await
    .unwrap();
    let sink = CrmSink::start(CrmSinkOptions::default()).await.unwrap();
    let log = Log::default();

    // Three workers; the partitions settle among them before any traffic, so only the
    // killed worker's partitions move during the run.
    let worker_files: Vec<DaemonFiles> = (0..3)
        .map(|_| role_files(&emulator, &sink, &nats, "worker"))
        .collect();
    let mut workers: Vec<Convoy> = worker_files
        .iter()
        .enumerate()
        .map(|(run, files)| Convoy::spawn(&files.config, run, &log))
        .collect();
    let mut admins = Vec::new();
    for worker in &mut workers {
        admins.push(worker.admin(Duration::from_secs(120)).await);
    }
    let settled = eventually(Duration::from_secs(120), || async {
        let mut total = 0.0;
        for admin in &admins {
            let consuming = metric(&http, *admin, "convoy_cluster_partitions_consuming").await;
            if consuming < 1.0 || !ready(&http, *admin).await {
                return false;
            }
            total += consuming;
        }
        total == f64::from(PARTITIONS)
    })
    .await;
    assert!(
        settled,
        "the partitions never settled over three workers:\n{}",
        log.tail(60)
    );

    let ingest_files = role_files(&emulator, &sink, &nats, "ingest");
    let standby_files = role_files(&emulator, &sink, &nats, "ingest");
    let mut ingest = Convoy::spawn(&ingest_files.config, 3, &log);
    let mut standby = Convoy::spawn(&standby_files.config, 4, &log);
    for child in [&mut ingest, &mut standby] {
        let admin = child.admin(Duration::from_secs(120)).await;
        assert!(
            eventually(Duration::from_secs(60), || ready(&http, admin)).await,
            "an ingest never became ready:\n{}",
            log.tail(60)
        );
    }

    let mut options = SimulatorOptions::new(
        &emulator.base_url(),
        emulator.client_id(),
        emulator.client_secret(),
    );
    options.scenario = Scenario::from_toml(FAST).unwrap();
    options.conversations = CONVERSATIONS;
    options.concurrency = 10;
    options.rate_per_second = Some(10.0);
    options.seed = 12;
    options.poll_interval = Duration::from_millis(100);
    options.conversation_slack = Duration::from_secs(120);
    options.max_retries = 30;
    let simulation = actix_rt::spawn(async move { Simulator::new(options).run().await });

    // Kill a worker once the run is well under way (records reach the CRM).
    let under_way = eventually(Duration::from_secs(120), || async {
        sink.records().len() >= 40
    })
    .await;
    assert!(under_way, "no traffic reached the CRM:\n{}", log.tail(60));
    let killed_partitions = metric(&http, admins[1], "convoy_cluster_partitions_consuming").await;
    workers[1].kill_9();
    println!(
        "killed worker 1 (owning {killed_partitions} partitions) with {} records at the sink",
        sink.records().len()
    );

    // Later, the standby ingest.
    let later = sink.records().len() + 40;
    let further = eventually(Duration::from_secs(120), || async {
        sink.records().len() >= later
    })
    .await;
    assert!(
        further,
        "the run stalled after the worker was killed:\n{}",
        log.tail(60)
    );
    standby.kill_9();
    println!(
        "killed the standby ingest with {} records at the sink",
        sink.records().len()
    );

    let report = simulation.await.unwrap().unwrap();
    assert_eq!(report.conversations_failed, 0, "{report}");

    let survivors = [(0usize, admins[0]), (2, admins[2])];
    let started = Instant::now();
    let mut last: Vec<String>;
    let converged = loop {
        for (index, _) in survivors {
            workers[index].assert_alive();
        }
        ingest.assert_alive();
        let truth = truth(&http, &emulator).await;
        last = Vec::new();
        if !all_finished(&truth) {
            last.push("the emulator still has conversations going".to_owned());
        }
        // Each conversation's view from the surviving worker that owns it now; were it
        // in both, the later version.
        let mut views: BTreeMap<String, Value> = BTreeMap::new();
        for (_, admin) in survivors {
            for (id, view) in admin_views(&http, admin).await {
                let newer = views
                    .get(&id)
                    .is_none_or(|seen| view["version"].as_u64() > seen["version"].as_u64());
                if newer {
                    views.insert(id, view);
                }
            }
        }
        last.extend(differences_by(|id| views.get(id).cloned(), &truth));
        last.extend(unwritten_attributes(&truth));
        last.extend(sink_problems(&sink, &truth));
        if last.is_empty() {
            break true;
        }
        if started.elapsed() > Duration::from_secs(240) {
            break false;
        }
        actix_rt::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        converged,
        "{} problems, first: {:#?}\n{}",
        last.len(),
        &last[..last.len().min(20)],
        log.tail(80)
    );
    let (conflicts, cross_writer, writers) = if_match_conflicts(&http, &emulator).await;
    println!("emulator If-Match conflicts (each resolved by a re-read): {conflicts}");
    // The count below could only stay 0 by accident if the workers were not told apart.
    let workers_seen = writers
        .iter()
        .filter(|writer| writer.contains("(worker "))
        .count();
    assert!(workers_seen >= 2, "writers seen: {writers:?}");
    assert_eq!(
        cross_writer,
        0,
        "a conversation was written by two workers at once\n{}",
        log.tail(80)
    );
    let taken_over = metric(&http, admins[0], "convoy_cluster_partitions_consuming").await
        + metric(&http, admins[2], "convoy_cluster_partitions_consuming").await;
    assert_eq!(
        taken_over,
        f64::from(PARTITIONS),
        "the survivors own every partition"
    );

    for (index, _) in survivors {
        let exit = workers[index].terminate(Duration::from_secs(60)).await;
        assert_eq!(exit.code(), Some(0), "{}", log.tail(40));
    }
    let exit = ingest.terminate(Duration::from_secs(60)).await;
    assert_eq!(exit.code(), Some(0), "{}", log.tail(40));
    let panics = log.panics();
    assert!(panics.is_empty(), "{panics:#?}");
    sink.stop().await;
    emulator.stop().await;
}
