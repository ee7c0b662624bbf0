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
