//! `--record FILE`: the raw capture of every received text frame, so a production incident
//! can be replayed later with `convoy inspect FILE`.
//!
//! One JSON line per frame, `{"receivedAt": "<RFC 3339, ms, UTC>", "frame": "<raw text>"}`,
//! appended and flushed per line, so a crash loses at most the line being written and
//! another process can tail the file.
//!
//! Owns the file only. It must never be fatal: a capture is a diagnostic aid, so a failed
//! open or write is logged and counted (`convoy_stream_record_errors_total`) and the
//! stream goes on. It never blocks for long either: lines go through a bounded
//! `BufWriter` and are flushed at once, nothing is queued in memory.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};

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
        let result = self.write_line(received_at, frame);
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

    fn write_line(&mut self, received_at: DateTime<Utc>, frame: &str) -> std::io::Result<()> {
        let line = serde_json::json!({
            "receivedAt": received_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "frame": frame,
        });
        serde_json::to_writer(&mut self.out, &line)?;
        self.out.write_all(b"\n")?;
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
