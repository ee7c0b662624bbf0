//! `convoy replay`: a run recorded against the emulator (`--record`), replayed offline
//! twice at full speed and once paced, gives byte-identical output whose final
//! conversation states equal the emulator's ground truth of the recorded run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use convoy_actors::app::{Daemon, RunOptions};
use convoy_actors::demo::{config_for, discard_private_store};
use convoy_actors::emulator::{Emulator, EmulatorOptions};
use convoy_actors::replay::{self, ReplayError, ReplayOptions, Speed};
use serde_json::Value;

use crate::daemon::Run;
use crate::support::{client, eventually};

const OUTPUT_FILES: [&str; 6] = [
    "records.jsonl",
    "sla_outcomes.jsonl",
    "summaries.jsonl",
    "conversations.jsonl",
    "writes.jsonl",
    "replay.json",
];

fn json_lines(dir: &Path, name: &str) -> Vec<Value> {
    std::fs::read_to_string(dir.join(name))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// What differs between the replayed final states and the truth: whether each
/// conversation ended, each participant's lifecycle, each message's status.
fn differences(replayed: &[Value], truth: &[Value]) -> Vec<String> {
    let list = |value: &Value| value.as_array().cloned().unwrap_or_default();
    let mut problems = Vec::new();
    for conversation in truth {
        let id = &conversation["id"];
        let Some(mine) = replayed.iter().find(|view| &view["conversationId"] == id) else {
            problems.push(format!("{id}: not replayed"));
            continue;
        };
        if mine["ended"] != conversation["ended"] {
            problems.push(format!(
                "{id}: ended {} vs {}",
                mine["ended"], conversation["ended"]
            ));
        }
        for participant in list(&conversation["participants"]) {
            let found = list(&mine["participants"])
                .into_iter()
                .find(|p| p["id"] == participant["id"]);
            if found.map(|p| p["lifecycle"].clone()) != Some(participant["lifecycle"].clone()) {
                problems.push(format!("{id}: participant {} differs", participant["id"]));
            }
        }
        for message in list(&conversation["messages"]) {
            let found = list(&mine["messages"])
                .into_iter()
                .find(|m| m["id"] == message["id"]);
            if found.map(|m| m["status"].clone()) != Some(message["status"].clone()) {
                problems.push(format!("{id}: message {} differs", message["id"]));
            }
        }
    }
    problems
}

#[actix_rt::test]
async fn a_recorded_run_replays_byte_identically_at_any_speed_and_equals_the_truth() {
    let scratch = tempfile::tempdir().unwrap();
    let recording = scratch.path().join("incident.jsonl");
    let emulator = Emulator::start(EmulatorOptions {
        rate_limit_per_minute: 0,
        ..EmulatorOptions::default()
    })
    .await
    .unwrap();
    // Tight SLA targets: the timer's warnings and breaches are part of what is replayed.
    let config = config_for(
        &emulator,
        "",
        "[admin]\nlisten = \"127.0.0.1:0\"\n[sla]\ntick = \"200ms\"\nanswer = \"1s\"\nfirst_response = \"1s\"\nnext_response = \"1s\"\ndelivery = \"1s\"\nread = \"1s\"\n",
    )
    .unwrap();
    let daemon = Daemon::start(
        &config,
        RunOptions {
            record: Some(recording.clone()),
            ..RunOptions::default()
        },
    )
    .await
    .unwrap();
    let ready = eventually(Duration::from_secs(60), || async {
        daemon.board.readiness_now().ready
    })
    .await;
    assert!(ready, "{:?}", daemon.board.readiness_now());
    let run = Run {
        emulator,
        daemon,
        http: client(),
        config: config.clone(),
    };
    // A socket drop in the middle: the reconnect's re-reads are recorded and replayed.
    let drop_socket = {
        let (http, base) = (run.http.clone(), run.emulator.base_url());
        actix_rt::spawn(async move {
            actix_rt::time::sleep(Duration::from_millis(1500)).await;
            let _ = http
                .post(format!("{base}/emulator/v1/sockets/drop"))
                .send()
                .await;
        })
    };
    let report = run.simulate_at(30, 31, 10.0).await;
    drop_socket.await.unwrap();
    assert_eq!(report.conversations_failed, 0, "{report}");
    run.assert_converges().await;
    let truth = run.truth().await;
    let secret = run.emulator.client_secret().to_owned();
    run.stop().await;

    let text = std::fs::read_to_string(&recording).unwrap();
    assert!(text.lines().any(|line| line.contains("\"frame\"")));
    assert!(
        text.lines().any(|line| line.contains("\"rest\"")),
        "the start-up reconciliation's reads are recorded"
    );
    assert!(!text.contains("Bearer") && !text.contains(&secret));

    let mut outputs = Vec::new();
    for (name, speed) in [
        ("max-1", Speed::Max),
        ("max-2", Speed::Max),
        ("times-50", Speed::Times(50.0)),
    ] {
        let out = scratch.path().join(name);
        let options = ReplayOptions {
            recording: recording.clone(),
            out: out.clone(),
            speed,
        };
        let summary = replay::run(&config, &options).await.unwrap();
        assert!(
            summary.frames > 0 && summary.conversations >= 30,
            "{summary:?}"
        );
        assert!(summary.rereads > 0, "the reconnect's re-reads: {summary:?}");
        assert!(
            summary.sla_ticks > 0,
            "deadlines reached on the timer: {summary:?}"
        );
        assert_eq!(summary.unanswered_reads, 0, "{summary:?}");
        outputs.push(out);
    }
    for file in OUTPUT_FILES {
        let first = std::fs::read(outputs[0].join(file)).unwrap();
        for other in &outputs[1..] {
            assert!(
                first == std::fs::read(other.join(file)).unwrap(),
                "{file} differs between {} and {}",
                outputs[0].display(),
                other.display()
            );
        }
    }
    let names: Vec<String> = std::fs::read_dir(&outputs[0])
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names.len(),
        OUTPUT_FILES.len(),
        "only the output stays: {names:?}"
    );

    let replayed = json_lines(&outputs[0], "conversations.jsonl");
    let problems = differences(&replayed, &truth);
    assert!(
        problems.is_empty(),
        "{} differences: {problems:?}",
        problems.len()
    );
    let records = json_lines(&outputs[0], "records.jsonl");
    assert!(!records.is_empty());
    let ids: Vec<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert!(
        ids.windows(2).all(|pair| pair[0] < pair[1]),
        "records sorted by id, once each"
    );
    assert_eq!(
        json_lines(&outputs[0], "summaries.jsonl").len(),
        replayed.len()
    );
    assert!(!json_lines(&outputs[0], "writes.jsonl").is_empty());
}

#[actix_rt::test]
async fn a_bad_line_fails_the_replay_naming_its_line() {
    let scratch = tempfile::tempdir().unwrap();
    let recording = scratch.path().join("bad.jsonl");
    std::fs::write(
        &recording,
        "{\"receivedAt\":\"2026-11-24T10:00:00.000Z\",\"frame\":\"{}\"}\n{\"receivedAt\":\"2026-11-24T10:00:01.000Z\",\"fra\n{\"receivedAt\":\"2026-11-24T10:00:02.000Z\",\"frame\":\"{}\"}\n",
    )
    .unwrap();
    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let config = config_for(&emulator, "", "").unwrap();
    let options = ReplayOptions {
        recording: recording.clone(),
        out: scratch.path().join("out"),
        speed: Speed::Max,
    };
    let error = replay::run(&config, &options).await.unwrap_err();
    assert!(matches!(error, ReplayError::Recording { .. }), "{error}");
    assert!(error.to_string().contains("line 2"), "{error}");
    discard_private_store(&config);
    emulator.stop().await;
}
