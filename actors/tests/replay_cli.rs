//! `convoy replay` as a user runs it: no configuration needed, the output files written,
//! a bad recording line named with its number, a bad `--speed` refused as usage.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

const HEARTBEAT: &str =
    r#"{"topicName":"channel.metadata","eventBody":{"message":"WebSocket Heartbeat"}}"#;

fn replay(recording: &Path, out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_convoy"))
        .arg("replay")
        .arg(recording)
        .arg("--out")
        .arg(out)
        .args(extra)
        .env_remove("CONVOY_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn line(at: &str, frame: &str) -> String {
    serde_json::json!({"receivedAt": at, "frame": frame}).to_string()
}

#[test]
fn a_recording_replays_without_any_configuration_into_the_documented_files() {
    let dir = tempfile::tempdir().unwrap();
    let recording = dir.path().join("incident.jsonl");
    std::fs::write(
        &recording,
        format!(
            "{}\n{}\n",
            line("2026-11-24T10:00:00.000Z", HEARTBEAT),
            line("2026-11-24T10:00:30.000Z", HEARTBEAT)
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let output = replay(&recording, &out, &["--speed", "1000"]);
    assert!(
        output.status.success(),
        "exit {:?}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "conversations.jsonl",
            "records.jsonl",
            "replay.json",
            "sla_outcomes.jsonl",
            "summaries.jsonl",
            "writes.jsonl"
        ]
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("replay.json")).unwrap()).unwrap();
    assert_eq!(manifest["frames"], 2);
    assert_eq!(manifest["lastReceivedAt"], "2026-11-24T10:00:30.000Z");
}

#[test]
fn a_non_json_line_fails_the_replay_naming_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let recording = dir.path().join("incident.jsonl");
    std::fs::write(
        &recording,
        format!(
            "{}\nnot json\n",
            line("2026-11-24T10:00:00.000Z", HEARTBEAT)
        ),
    )
    .unwrap();
    let output = replay(&recording, &dir.path().join("out"), &[]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 2: not JSON"), "{stderr}");
}

#[test]
fn a_speed_that_is_not_a_positive_factor_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = replay(
        &dir.path().join("missing.jsonl"),
        &dir.path().join("out"),
        &["--speed", "0"],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--speed"));
}
