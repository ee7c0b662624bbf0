//! The `convoy run --record FILE` capture format, written by the daemon and read by
//! `convoy replay`: one JSON object per line, in the order Convoy received things.
//!
//! - A notification frame: `{"receivedAt": "<RFC 3339, ms, UTC>", "frame": "<raw text>"}`
//!   (the only kind older recordings hold; they still read).
//! - A Genesys REST answer to a read (a conversation GET, an analytics query page):
//!   `{"receivedAt": …, "rest": {"method", "path", "status", "headers", "body"}}`, with
//!   only the headers a replay needs ([`KEPT_HEADERS`]: the ETag). The request's
//!   `Authorization` header and the token are never part of it: [`RestExchange`] has no
//!   field that could hold them.
//!
//! Reading: a blank line is ignored; a line that is not one of the two shapes is an error
//! naming its line number ([`RecordingError`]) — a recording is evidence, and replaying
//! around a hole would give output that looks complete but is not. The one exception is a
//! last line without its newline that does not parse: the recorder flushes line by line,
//! so that is the line a crash cut short; it is skipped and counted
//! ([`Recording::truncated_tail`]).

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// The response headers a REST line keeps (lower case); every other header is dropped.
pub const KEPT_HEADERS: &[&str] = &["etag"];

/// One REST answer as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestExchange {
    pub method: String,
    /// The path under the API base, query included.
    pub path: String,
    pub status: u16,
    /// Only [`KEPT_HEADERS`], names in lower case.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The body as received (UTF-8, lossy).
    pub body: String,
}

impl RestExchange {
    /// An exchange keeping only the [`KEPT_HEADERS`] of `headers` (any case).
    pub fn new<'a>(
        method: &str,
        path: &str,
        status: u16,
        headers: impl IntoIterator<Item = (&'a str, &'a str)>,
        body: &[u8],
    ) -> RestExchange {
        let headers = headers
            .into_iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value))
            .filter(|(name, _)| KEPT_HEADERS.contains(&name.as_str()))
            .map(|(name, value)| (name, value.to_owned()))
            .collect();
        RestExchange {
            method: method.to_ascii_uppercase(),
            path: path.to_owned(),
            status,
            headers,
            body: String::from_utf8_lossy(body).into_owned(),
        }
    }

    pub fn etag(&self) -> Option<&str> {
        self.headers.get("etag").map(String::as_str)
    }
}

/// What one line holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    Frame(String),
    Rest(RestExchange),
}

/// One line of a recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedLine {
    /// 1-based line number in the file.
    pub line: usize,
    pub received_at: DateTime<Utc>,
    pub entry: Recorded,
}

/// A whole recording, read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recording {
    pub lines: Vec<RecordedLine>,
    /// A last line cut short by a crash was skipped.
    pub truncated_tail: bool,
}

impl Recording {
    pub fn frames(&self) -> usize {
        self.lines
            .iter()
            .filter(|line| matches!(line.entry, Recorded::Frame(_)))
            .count()
    }

    pub fn rest_answers(&self) -> usize {
        self.lines.len() - self.frames()
    }
}

/// Why a recording cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordingError {
    #[error("line {line}: not JSON: {detail}")]
    NotJson { line: usize, detail: String },
    #[error("line {line}: {detail}")]
    Shape { line: usize, detail: String },
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Wire {
    received_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    frame: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rest: Option<RestExchange>,
}

fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The line (without its newline) recording `frame` received at `at`.
pub fn frame_line(at: DateTime<Utc>, frame: &str) -> String {
    to_line(&Wire {
        received_at: stamp(at),
        frame: Some(frame.to_owned()),
        rest: None,
    })
}

/// The line (without its newline) recording a REST answer received at `at`.
pub fn rest_line(at: DateTime<Utc>, exchange: &RestExchange) -> String {
    to_line(&Wire {
        received_at: stamp(at),
        frame: None,
        rest: Some(exchange.clone()),
    })
}

fn to_line(wire: &Wire) -> String {
    // Strings and integers only: serialising cannot fail.
    serde_json::to_string(wire).unwrap_or_default()
}

/// Reads one line; `number` is 1-based.
pub fn parse_line(number: usize, text: &str) -> Result<RecordedLine, RecordingError> {
    let wire: Wire = serde_json::from_str(text).map_err(|error| {
        if error.is_data() {
            RecordingError::Shape {
                line: number,
                detail: format!("not a recorded frame or REST answer: {error}"),
            }
        } else {
            RecordingError::NotJson {
                line: number,
                detail: error.to_string(),
            }
        }
    })?;
    let received_at = DateTime::parse_from_rfc3339(&wire.received_at)
        .map_err(|error| RecordingError::Shape {
            line: number,
            detail: format!("receivedAt {:?} is not RFC 3339: {error}", wire.received_at),
        })?
        .with_timezone(&Utc);
    let entry = match (wire.frame, wire.rest) {
        (Some(frame), None) => Recorded::Frame(frame),
        (None, Some(rest)) => Recorded::Rest(rest),
        _ => {
            return Err(RecordingError::Shape {
                line: number,
                detail: "a line holds exactly one of \"frame\" and \"rest\"".to_owned(),
            })
        }
    };
    Ok(RecordedLine {
        line: number,
        received_at,
        entry,
    })
}

/// Reads a whole recording (see the module docs for what is an error).
pub fn parse_recording(text: &str) -> Result<Recording, RecordingError> {
    let mut recording = Recording::default();
    let unterminated_tail = !text.is_empty() && !text.ends_with('\n');
    let count = text.lines().count();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(index + 1, line) {
            Ok(parsed) => recording.lines.push(parsed),
            Err(_) if unterminated_tail && index + 1 == count => recording.truncated_tail = true,
            Err(error) => return Err(error),
        }
    }
    Ok(recording)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn an_old_frame_only_recording_still_reads() {
        let text = "{\"receivedAt\":\"2026-11-24T10:00:00.250Z\",\"frame\":\"{\\\"topicName\\\":\\\"channel.metadata\\\"}\"}\n\n{\"receivedAt\":\"2026-11-24T10:00:01.000Z\",\"frame\":\"x\"}\n";
        let recording = parse_recording(text).unwrap();
        assert_eq!(recording.frames(), 2);
        assert_eq!(recording.rest_answers(), 0);
        assert_eq!(
            recording.lines[0].received_at,
            at("2026-11-24T10:00:00.250Z")
        );
        assert_eq!(
            recording.lines[0].entry,
            Recorded::Frame(r#"{"topicName":"channel.metadata"}"#.to_owned())
        );
        assert_eq!(recording.lines[1].line, 3, "line numbers count blank lines");
        assert!(!recording.truncated_tail);
    }

    #[test]
    fn a_rest_line_round_trips_and_keeps_no_credential() {
        let exchange = RestExchange::new(
            "get",
            "/api/v2/conversations/c1",
            200,
            [
                ("Authorization", "Bearer secret-token-123"),
                ("ETag", "\"7\""),
                ("Set-Cookie", "session=secret-token-123"),
                ("inin-correlation-id", "abc"),
            ],
            br#"{"id":"c1"}"#,
        );
        let line = rest_line(at("2026-11-24T10:00:02.000Z"), &exchange);
        assert!(!line.contains("secret-token-123"), "{line}");
        assert!(
            !line.to_ascii_lowercase().contains("authorization"),
            "{line}"
        );
        let parsed = parse_line(1, &line).unwrap();
        assert_eq!(parsed.entry, Recorded::Rest(exchange.clone()));
        assert_eq!(exchange.method, "GET");
        assert_eq!(exchange.etag(), Some("\"7\""));
        assert_eq!(exchange.headers.len(), 1);
    }

    #[test]
    fn a_frame_line_written_reads_back() {
        let line = frame_line(at("2026-11-24T10:00:00.250Z"), "not json\nwith a newline");
        assert!(!line.contains('\n'));
        let parsed = parse_line(4, &line).unwrap();
        assert_eq!(parsed.line, 4);
        assert_eq!(
            parsed.entry,
            Recorded::Frame("not json\nwith a newline".to_owned())
        );
    }

    #[test]
    fn a_non_json_line_is_an_error_naming_its_line() {
        let good = frame_line(at("2026-11-24T10:00:00Z"), "a");
        let text = format!("{good}\nthis is not json\n{good}\n");
        let error = parse_recording(&text).unwrap_err();
        assert!(
            matches!(error, RecordingError::NotJson { line: 2, .. }),
            "{error}"
        );
        assert!(error.to_string().starts_with("line 2: "), "{error}");
    }

    #[test]
    fn a_truncated_line_in_the_middle_is_an_error_naming_its_line() {
        let good = frame_line(at("2026-11-24T10:00:00Z"), "a");
        let cut = &good[..good.len() / 2];
        let text = format!("{good}\n{cut}\n{good}\n");
        let error = parse_recording(&text).unwrap_err();
        assert!(
            matches!(error, RecordingError::NotJson { line: 2, .. }),
            "{error}"
        );
    }

    #[test]
    fn a_last_line_cut_short_by_a_crash_is_skipped_and_counted() {
        let good = frame_line(at("2026-11-24T10:00:00Z"), "a");
        let cut = &good[..good.len() / 2];
        let recording = parse_recording(&format!("{good}\n{good}\n{cut}")).unwrap();
        assert_eq!(recording.frames(), 2);
        assert!(recording.truncated_tail);
        // Complete (newline-terminated) but bad: an error, not a crash's trace.
        let error = parse_recording(&format!("{good}\n{cut}\n")).unwrap_err();
        assert!(matches!(error, RecordingError::NotJson { line: 2, .. }));
    }

    #[test]
    fn lines_of_the_wrong_shape_are_errors_naming_their_line() {
        for (text, needle) in [
            (r#"{"receivedAt":"2026-11-24T10:00:00Z"}"#, "exactly one"),
            (
                r#"{"receivedAt":"2026-11-24T10:00:00Z","frame":"a","rest":{"method":"GET","path":"/","status":200,"body":""}}"#,
                "exactly one",
            ),
            (r#"{"receivedAt":"yesterday","frame":"a"}"#, "RFC 3339"),
            (r#"{"frame":"a"}"#, "receivedAt"),
            (r#"[1,2]"#, "not a recorded"),
        ] {
            let error = parse_line(9, text).unwrap_err();
            assert!(
                matches!(error, RecordingError::Shape { line: 9, .. }),
                "{text}: {error}"
            );
            assert!(error.to_string().contains(needle), "{text}: {error}");
        }
    }
}
