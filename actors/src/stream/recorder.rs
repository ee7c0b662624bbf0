//! `--record FILE`: the raw capture of every received text frame and of every Genesys REST
//! answer to a read, so a production incident can be looked at with `convoy inspect FILE`
//! and replayed offline with `convoy replay FILE`.
//!
//! The line format is `convoy::recording`'s (a frame: `{"receivedAt", "frame"}`; a REST
//! answer: `{"receivedAt", "rest"}`, never a credential). Each line is serialised whole
//! and appended with one write, flushed at once, so a crash loses at most the line being
//! written, another process can tail the file, and the stream's and the REST client's
//! handles on the same file (both `O_APPEND`, both on the daemon's main arbiter) never
//! interleave inside a line.
//!
//! Owns the file only. It must never be fatal: a capture is a diagnostic aid, so a failed
//! open or write is logged and counted (`convoy_stream_record_errors_total`) and the
//! stream goes on. It never blocks for long either: lines go through a bounded
//! `BufWriter` and are flushed at once, nothing is queued in memory.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use convoy::recording::{frame_line, rest_line, RestExchange};

use crate::telemetry::names;

/// The writer's buffer: one typical frame fits; a larger one is written straight through.
const BUFFER_BYTES: usize = 64 * 1024;

/// An open capture file.
pub struct Recorder {
    path: PathBuf,
    out: BufWriter<File>,
    /// Whether the previous write failed: errors are logged when a failure streak starts
    /// and when it ends, not once per frame (a full disk would flood the log), and are
    /// counted every time.
    failing: bool,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("path", &self.path)
            .field("failing", &self.failing)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// Opens `path` for appending (creating it). On failure the error is logged and
    /// counted and `None` comes back: the stream runs without a capture.
    pub fn open(path: &Path) -> Option<Recorder> {
        match OpenOptions::new().create(true).append(true).open(path) {
            Ok(file) => {
                tracing::info!(path = %path.display(), "Recording received frames.");
                Some(Recorder {
                    path: path.to_owned(),
                    out: BufWriter::with_capacity(BUFFER_BYTES, file),
                    failing: false,
                })
            }
            Err(error) => {
                count_error();
                tracing::error!(
                    path = %path.display(),
                    %error,
                    "Cannot open the frame capture file; running without --record."
                );
                None
            }
        }
    }

    /// Appends one frame. Never fails from the caller's point of view.
    pub fn record(&mut self, received_at: DateTime<Utc>, frame: &str) {
        self.append(frame_line(received_at, frame));
    }

    /// Appends one REST answer. Never fails from the caller's point of view.
    pub fn record_rest(&mut self, received_at: DateTime<Utc>, exchange: &RestExchange) {
        self.append(rest_line(received_at, exchange));
    }

    fn append(&mut self, mut line: String) {
        line.push('\n');
        let result = self.write_line(line.as_bytes());
        match (result, self.failing) {
            (Ok(()), false) => {}
            (Ok(()), true) => {
                self.failing = false;
                tracing::info!(path = %self.path.display(), "Frame capture writes succeed again.");
            }
            (Err(error), failing) => {
                count_error();
                if !failing {
                    tracing::warn!(
                        path = %self.path.display(),
                        %error,
                        "Cannot write to the frame capture file; frames are not being recorded."
                    );
                }
                self.failing = true;
            }
        }
    }

    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        // The buffer is empty between lines: a line longer than it goes straight through
        // in one write, a shorter one leaves in one write at the flush.
        self.out.write_all(line)?;
        self.out.flush()
    }
}

fn count_error() {
    metrics::counter!(names::STREAM_RECORD_ERRORS).increment(1);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn each_frame_becomes_one_flushed_json_line_with_its_receive_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capture.jsonl");
        let mut recorder = Recorder::open(&path).unwrap();
        let at = DateTime::parse_from_rfc3339("2026-11-24T10:00:00.250Z")
            .unwrap()
            .with_timezone(&Utc);
        recorder.record(at, r#"{"topicName":"channel.metadata"}"#);
        recorder.record(at, "not json at all\nwith a newline");
        // Flushed per line: readable without dropping the recorder.
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["receivedAt"], "2026-11-24T10:00:00.250Z");
        assert_eq!(lines[0]["frame"], r#"{"topicName":"channel.metadata"}"#);
        assert_eq!(lines[1]["frame"], "not json at all\nwith a newline");
    }

    #[test]
    fn a_rest_answer_becomes_one_line_beside_the_frames_without_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capture.jsonl");
        let mut frames = Recorder::open(&path).unwrap();
        // The REST client holds its own handle on the same file.
        let mut rest = Recorder::open(&path).unwrap();
        let at = Utc::now();
        frames.record(at, "frame one");
        let big_body = format!("{{\"pad\":\"{}\"}}", "x".repeat(3 * BUFFER_BYTES));
        rest.record_rest(
            at,
            &RestExchange::new(
                "GET",
                "/api/v2/conversations/c1",
                200,
                [("authorization", "Bearer tok-123"), ("etag", "\"3\"")],
                big_body.as_bytes(),
            ),
        );
        frames.record(at, "frame two");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("tok-123"));
        let recording = convoy::recording::parse_recording(&text).unwrap();
        assert_eq!(recording.frames(), 2);
        assert_eq!(recording.rest_answers(), 1);
        match &recording.lines[1].entry {
            convoy::recording::Recorded::Rest(exchange) => {
                assert_eq!(exchange.body, big_body);
                assert_eq!(exchange.etag(), Some("\"3\""));
            }
            other => panic!("not a REST line: {other:?}"),
        }
    }

    #[test]
    fn an_existing_capture_is_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capture.jsonl");
        std::fs::write(&path, "{\"receivedAt\":\"x\",\"frame\":\"old\"}\n").unwrap();
        let mut recorder = Recorder::open(&path).unwrap();
        recorder.record(Utc::now(), "new");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
    }

    #[test]
    fn an_unopenable_path_is_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Recorder::open(&dir.path().join("missing-dir/capture.jsonl")).is_none());
    }
}
