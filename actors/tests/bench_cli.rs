//! `convoy bench memory` as a user runs it: the real binary spawns conversations, measures
//! and exits 0 with its figure. No timing or size is asserted (the machine is shared); the
//! figures themselves are recorded in the README's "Benchmarks" section.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};

#[test]
fn bench_memory_reports_a_positive_figure_per_live_conversation() {
    let report = run_bench(&["memory", "--conversations", "200", "--format", "json"]);
    assert_eq!(report["conversations"], 200);
    let per_conversation = report["bytes_per_live_conversation"].as_f64().unwrap();
    assert!(per_conversation > 0.0, "{report}");
}

#[test]
fn bench_core_reports_rates_and_their_ratio_on_a_generated_corpus() {
    let report = run_bench(&[
        "core",
        "--generate",
        "200",
        "--seed",
        "1",
        "--passes",
        "1",
        "--format",
        "json",
    ]);
    assert_eq!(report["frames"], 200);
    assert_eq!(report["totals"]["frames"], 200);
    assert!(
        report["totals"]["records"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert!(report["bytes"].as_u64().unwrap() >= 200 * 1000, "{report}");
    for field in [
        "seconds",
        "frames_per_second",
        "baseline_frames_per_second",
        "ratio",
    ] {
        assert!(report[field].as_f64().unwrap() > 0.0, "{field}: {report}");
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

fn run_bench(args: &[&str]) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_convoy"))
        .arg("bench")
        .args(args)
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
    serde_json::from_str(&stdout).unwrap()
}

#[test]
fn bench_e2e_reports_each_step_with_consistent_counts_latencies_and_a_chart() {
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("e2e.svg");
    let report = run_bench(&[
        "e2e",
        "--rate",
        "200",
        "--duration",
        "2s",
        "--fsync",
        "on",
        "--corpus",
        "300",
        "--format",
        "json",
        "--chart",
        chart.to_str().unwrap(),
    ]);
    assert_eq!(report["corpus_frames"], 300);
    let modes = report["modes"].as_array().unwrap();
    assert_eq!(modes.len(), 1);
    assert_eq!(modes[0]["fsync"], true);
    let steps = modes[0]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "no search without --search: {report}");
    let step = &steps[0];
    assert_eq!(step["offered_frames_per_second"], 200);
    assert_eq!(step["frames"], 400);
    assert!(step["frames_read"].as_u64().unwrap() >= 400, "{step}");
    assert!(step["sustained_frames_per_second"].as_f64().unwrap() > 0.0);
    let committed = step["frames_committed"].as_u64().unwrap();
    assert!(committed > 0 && committed <= 400, "{step}");
    let latency = &step["latency_ms"];
    let (p50, p90, p99, max) = (
        latency["p50"].as_f64().unwrap(),
        latency["p90"].as_f64().unwrap(),
        latency["p99"].as_f64().unwrap(),
        latency["max"].as_f64().unwrap(),
    );
    assert!(
        0.0 < p50 && p50 <= p90 && p90 <= p99 && p99 <= max,
        "{latency}"
    );
    assert!(modes[0]["crm_records_received"].as_u64().unwrap() > 0);
    // The step's work: 400 frames read, parsed, joined and committed cost CPU time.
    assert!(step["cpu_seconds"].as_f64().unwrap() > 0.0, "{step}");
    assert!(step["cpu_us_per_frame"].as_f64().unwrap() > 0.0, "{step}");
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("<polyline"),
        "{svg}"
    );
}

#[test]
fn bench_restart_reports_ready_drained_and_reconciled_at_a_tiny_size() {
    let report = run_bench(&[
        "restart",
        "--pending",
        "300",
        "--conversations",
        "3",
        "--requests-per-minute",
        "6000",
        "--max-wait",
        "120s",
        "--format",
        "json",
    ]);
    assert_eq!(report["pending"], 300);
    assert_eq!(report["conversations"], 3);
    assert!(
        report["crm_records_received"].as_u64().unwrap() >= 300,
        "{report}"
    );
    assert_eq!(report["rereads_left"], 0, "{report}");
    for field in ["ready_seconds", "drained_seconds", "reconciled_seconds"] {
        assert!(report[field].as_f64().unwrap() >= 0.0, "{field}: {report}");
    }
}

/// `convoy bench cluster` at a tiny size: one worker, a few conversations, a real
/// `nats-server` (on PATH, as the cluster tests need). Checks the report's shape only.
#[test]
fn bench_cluster_reports_each_worker_count_with_frames_convergence_and_cpu() {
    let output = Command::new(env!("CARGO_BIN_EXE_convoy"))
        .args([
            "bench",
            "cluster",
            "--workers",
            "1",
            "--conversations",
            "5",
            "--partitions",
            "4",
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
    assert_eq!(report["conversations"], 5);
    assert_eq!(report["partitions"], 4);
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{stdout}");
    let run = &runs[0];
    assert_eq!(run["workers"], 1);
    assert_eq!(run["partitions_per_worker"], serde_json::json!([4.0]));
    assert!(run["frames_consumed"].as_f64().unwrap() > 0.0, "{run}");
    assert!(run["frames_published"].as_f64().unwrap() > 0.0, "{run}");
    assert!(run["converged_seconds"].as_f64().is_some(), "{run}");
    assert_eq!(run["remaining_differences"], 0);
    assert!(run["process_cpu_seconds"].as_f64().unwrap() > 0.0, "{run}");
    assert!(run["nats_cpu_seconds"].as_f64().unwrap() >= 0.0, "{run}");
}

#[test]
fn bench_cluster_refuses_a_worker_count_of_zero() {
    let output = Command::new(env!("CARGO_BIN_EXE_convoy"))
        .args(["bench", "cluster", "--workers", "0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--workers"), "{stderr}");
}
