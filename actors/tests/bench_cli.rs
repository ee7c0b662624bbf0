//! `convoy bench memory` as a user runs it: the real binary spawns conversations, measures
//! and exits 0 with its figure. No timing or size is asserted (the machine is shared); the
//! figures themselves are recorded in the README's "Benchmarks" section.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};

#[test]
fn bench_memory_reports_a_positive_figure_per_live_conversation() {
    let output = Command::new(env!("CARGO_BIN_EXE_convoy"))
        .args([
            "bench",
            "memory",
            "--conversations",
            "200",
            "--format",
            "json",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["conversations"], 200);
    let per_conversation = report["bytes_per_live_conversation"].as_f64().unwrap();
    assert!(per_conversation > 0.0, "{stdout}");
}

#[test]
fn bench_core_reports_rates_and_their_ratio_on_a_generated_corpus() {
    let output = Command::new(env!("CARGO_BIN_EXE_convoy"))
        .args([
            "bench",
            "core",
            "--generate",
            "200",
            "--seed",
            "1",
            "--passes",
            "1",
            "--format",
            "json",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["frames"], 200);
    assert_eq!(report["totals"]["frames"], 200);
    assert!(
        report["totals"]["records"].as_u64().unwrap() > 0,
        "{stdout}"
    );
    assert!(report["bytes"].as_u64().unwrap() >= 200 * 1000, "{stdout}");
    for field in [
        "seconds",
        "frames_per_second",
        "baseline_frames_per_second",
        "ratio",
    ] {
        assert!(report[field].as_f64().unwrap() > 0.0, "{field}: {stdout}");
    }
}

#[test]
fn bench_core_reads_a_recorded_capture_and_refuses_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.jsonl");
    let heartbeat =
        r#"{"topicName":"channel.metadata","eventBody":{"message":"WebSocket Heartbeat"}}"#;
    let line = serde_json::json!({ "receivedAt": "2026-11-24T10:00:00.000Z", "frame": heartbeat });
    std::fs::write(&path, format!("{line}\n{heartbeat}\n")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_convoy"))
        .args([
            "bench", "core", "--passes", "1", "--format", "json", "--input",
        ])
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["frames"], 2);
    assert_eq!(report["totals"]["other_frames"], 2);

    let missing = Command::new(env!("CARGO_BIN_EXE_convoy"))
        .args(["bench", "core", "--input"])
        .arg(dir.path().join("absent.jsonl"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("absent.jsonl"));
}
