//! `kill -9` of `convoy run` during a simulated run, restarted each time on the same
//! `outbox.path`, against an in-process emulator and `crm-sink`. At the end the sink holds
//! every expected record (de-duplicated by id), every conversation summary is final, and
//! the SLA outcomes are those of a run without kills.
//!
//! **Why "the outcomes of a run without kills" is checkable.** The answer and response
//! thresholds are one hour (receipts: 15 s, so that the receipt clocks of finished conversations, which wait
//! for their deadline, settle within the test) while the fast scenario answers and
//! receipts within a fraction of a second and a kill costs a few seconds of downtime: no
//! downtime can push a clock over its threshold, so
//! the outcome of every clock is a function of the emulator's truth alone — `delivery`:
//! `failed` for a `delivery-failed` message, `compliant` once delivered or read,
//! `missing_receipt` otherwise; `read`: `compliant` for a read message, `missing_receipt`
//! for one delivered and never read; never `breached`.
//! A run without kills produces exactly that, so the test compares against the truth.
//!
//! The kill points are seeded: the seed is printed (and `CRM_KILL_SEED` replays it).
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(unix)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use convoy::simulator::Scenario;
use convoy_actors::crm_sink::{CrmSink, CrmSinkOptions};
use convoy_actors::emulator::{Emulator, EmulatorOptions};
use convoy_actors::simulator::{Simulator, SimulatorOptions};
use convoy_actors::store::DurableStore;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

const FAST: &str = include_str!("../../config/examples/scenario-fast.toml");
const KILLS: usize = 4;
/// Generous: the machine running the tests may be loaded.
const DEADLINE: Duration = Duration::from_secs(240);

fn spawn_convoy(config: &Path, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_convoy"))
        .args(["run", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

async fn truth(http: &awc::Client, emulator: &Emulator) -> Vec<Value> {
    let mut response = http
        .get(format!("{}/emulator/v1/truth", emulator.base_url()))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().limit(256 * 1024 * 1024).await.unwrap();
    body["conversations"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn all_finished(truth: &[Value]) -> bool {
    truth.iter().all(|c| {
        c["ended"] == true
            && c["participants"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["purpose"] != "agent" || !p["wrapup"].is_null())
    })
}

/// What still differs between the sink and the truth (empty when the sink is final).
fn problems(sink: &CrmSink, truth: &[Value]) -> Vec<String> {
    let records = sink.records();
    let ids: BTreeSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
    let mut problems = Vec::new();
    if ids.len() != records.len() {
        problems.push("the sink holds a record twice".to_owned());
    }
    // clock → outcome → count, from the sink's records and from the truth.
    let mut outcomes: BTreeMap<(String, String), u64> = BTreeMap::new();
    for record in records.iter().filter(|r| r.kind == "sla.outcome") {
        *outcomes
            .entry((
                record.payload["clock"].as_str().unwrap_or("?").to_owned(),
                record.payload["outcome"].as_str().unwrap_or("?").to_owned(),
            ))
            .or_default() += 1;
    }
    let mut expected: BTreeMap<(String, String), u64> = BTreeMap::new();
    for conversation in truth {
        let id = conversation["id"].as_str().unwrap();
        let document = sink.conversation(id).map(|stored| stored.document);
        match &document {
            None => problems.push(format!("{id}: no summary")),
            Some(document) if document["finished"] != true => {
                problems.push(format!("{id}: summary not finished"));
            }
            Some(_) => {}
        }
        for participant in conversation["participants"].as_array().unwrap() {
            let pid = participant["id"].as_str().unwrap();
            let lifecycle = participant["lifecycle"].as_str().unwrap();
            let record = format!("{id}/participant/{pid}/{lifecycle}");
            if !ids.contains(record.as_str()) {
                problems.push(format!("missing {record}"));
            }
            let shown = document.as_ref().and_then(|d| {
                d["participants"]
                    .as_array()?
                    .iter()
                    .find(|p| p["id"] == pid)
                    .map(|p| p["lifecycle"].clone())
            });
            if shown.as_ref().and_then(Value::as_str) != Some(lifecycle) {
                problems.push(format!(
                    "{id}: {pid} is {shown:?} in the summary, {lifecycle} in truth"
                ));
            }
        }
        for message in conversation["messages"].as_array().unwrap() {
            let mid = message["id"].as_str().unwrap();
            let status = message["status"].as_str().unwrap();
            let record = format!("{id}/message/{mid}/{status}");
            if !ids.contains(record.as_str()) {
                problems.push(format!("missing {record}"));
            }
            if message["direction"] != "outbound" {
                continue;
            }
            let delivery = match status {
                "delivery-failed" => "failed",
                "delivery-success" | "read" => "compliant",
                _ => "missing_receipt",
            };
            *expected
                .entry(("delivery".to_owned(), delivery.to_owned()))
                .or_default() += 1;
            let read = match status {
                "read" => Some("compliant"),
                "delivery-success" => Some("missing_receipt"),
                _ => None,
            };
            if let Some(read) = read {
                *expected
                    .entry(("read".to_owned(), read.to_owned()))
                    .or_default() += 1;
            }
        }
    }
    for (key, count) in &expected {
        let got = outcomes.get(key).copied().unwrap_or(0);
        if got != *count {
            problems.push(format!(
                "sla {key:?}: {got} outcomes, truth implies {count}"
            ));
        }
    }
    for ((clock, outcome), count) in &outcomes {
        if outcome == "breached" {
            problems.push(format!(
                "{count} {clock} clocks breached with wide thresholds"
            ));
        }
    }
    problems
}

#[actix_rt::test]
async fn kill_9_at_random_points_loses_nothing_and_changes_no_outcome() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let seed: u64 = std::env::var("CRM_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(7, |d| d.as_secs())
        });
    println!("kill points seeded with CRM_KILL_SEED={seed}");
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
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox.redb");
    let config = dir.path().join("convoy.toml");
    let log = dir.path().join("convoy.log");
    let mut file = std::fs::File::create(&config).unwrap();
    write!(
        file,
        "[genesys]\napi_base = \"{base}\"\nlogin_base = \"{base}\"\nclient_id = \"{id}\"\n\
         client_secret = \"{secret}\"\nqueues = {queues}\nrequests_per_minute = 60000\n\
         [sla]\nanswer = \"1h\"\nfirst_response = \"1h\"\nnext_response = \"1h\"\n\
         delivery = \"15s\"\nread = \"15s\"\n\
         [crm]\nendpoint = \"{crm}\"\nbatch_size = 20\nflush_interval = \"200ms\"\n\
         retry_max_delay = \"1s\"\n\
         [outbox]\npath = {outbox:?}\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n[shutdown]\ndeadline = \"10s\"\n[log]\nfilter = \"warn\"\n",
        base = emulator.base_url(),
        id = emulator.client_id(),
        secret = emulator.client_secret(),
        queues = serde_json::to_string(&emulator.queue_ids()).unwrap(),
        crm = sink.base_url(),
        outbox = outbox.display().to_string(),
    )
    .unwrap();
    drop(file);

    let mut child = spawn_convoy(&config, &log);
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
        child.kill().unwrap();
        child.wait().unwrap();
        println!(
            "kill {kill}: after {up_ms} ms up, {} records at the sink; down {down_ms} ms",
            sink.records().len()
        );
        actix_rt::time::sleep(Duration::from_millis(down_ms)).await;
        child = spawn_convoy(&config, &log);
    }
    let report = simulation.await.unwrap().unwrap();
    assert_eq!(report.conversations_failed, 0, "{report}");

    let started = Instant::now();
    let mut last = Vec::new();
    let settled = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            panic!(
                "convoy exited with {exit:?}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        let truth = truth(&http, &emulator).await;
        if all_finished(&truth) {
            last = problems(&sink, &truth);
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
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let exit = child.wait().unwrap();
    assert!(
        settled,
        "seed {seed}: {} problems, first: {:?}\n{}",
        last.len(),
        &last[..last.len().min(15)],
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(exit.code(), Some(0), "seed {seed}");
    let status = DurableStore::open(&outbox).unwrap().status().unwrap();
    assert_eq!(status.pending, 0, "seed {seed}: {status:?}");
    assert_eq!(status.dead_lettered, 0, "seed {seed}: {status:?}");
    assert_eq!(status.summaries_pending, 0, "seed {seed}: {status:?}");
    sink.stop().await;
    emulator.stop().await;
}
