//! Bulk output of the real `convoy` binary is buffered (one `write` per buffer, not per
//! token) and still complete: every report is printed, including those buffered when a
//! malformed frame made the run fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};

const HEARTBEAT: &str =
    r#"{"topicName":"channel.metadata","eventBody":{"message":"WebSocket Heartbeat"}}"#;

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/genesys")
        .join(name);
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    value.to_string()
}

/// Many frames (far more than one buffer of reports), the last one malformed: stdout holds
/// one report per frame in order, the last with its error, and the run exits 2.
#[test]
fn inspect_prints_every_report_of_a_large_capture_even_when_it_fails_at_the_end() {
    let snapshot = fixture("ws_event_queue_conversations_message_connected.json");
    let frames = 3000;
    let mut capture = String::new();
    for index in 0..frames - 1 {
        let frame = if index % 2 == 0 { &snapshot } else { HEARTBEAT };
        let line = serde_json::json!({ "receivedAt": "2025-03-04T14:00:00.000Z", "frame": frame });
        capture.push_str(&line.to_string());
        capture.push('\n');
    }
    capture.push_str("{\"topicName\": \n");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.jsonl");
    std::fs::write(&path, capture).unwrap();

    let output = Command::new(env!("CARGO_BIN_EXE_convoy"))
        .args(["inspect", path.to_str().unwrap()])
        .stdin(Stdio::null())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reports: Vec<serde_json::Value> = serde_json::Deserializer::from_slice(&output.stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(reports.len(), frames);
    for (position, report) in reports.iter().enumerate() {
        assert_eq!(report["index"], position + 1);
    }
    assert_eq!(reports[0]["classification"], "snapshot");
    assert_eq!(reports[1]["classification"], "heartbeat");
    assert!(
        reports[frames - 1]["error"].is_string(),
        "{}",
        reports[frames - 1]
    );
}
