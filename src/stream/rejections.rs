//! The bad input one stream link was sent: how many messages were skipped as malformed
//! (each with the JSON path its [`ParseError`] names) or refused by the reassembly caps,
//! and the most recent few of them — bounded in number and in size, so a hostile or broken
//! peer cannot grow it: at most [`RECENT_REJECTIONS`] entries, each reason cut to
//! [`MAX_REASON_CHARS`] characters (serde quotes a mistyped string whole, and a giant
//! string would otherwise be copied into every report and log line).
//!
//! The shell counts into it and shows it per daemon (`GetStreamStatus`), beside the
//! process-wide metric and the log line.

use std::collections::VecDeque;

use serde::Serialize;

use crate::parse::ParseError;

/// How many recent rejections a link keeps.
pub const RECENT_REJECTIONS: usize = 32;
/// How much of an error's text a rejection (and its log line) keeps.
pub const MAX_REASON_CHARS: usize = 200;

/// Why a message was not processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectionKind {
    /// Skipped: it could not be parsed. The connection carries on.
    Malformed,
    /// Refused by the reassembly caps (too large, too many fragments, broken framing).
    /// The connection is closed and the stream reconnects and reconciles.
    Refused,
}

/// One rejected message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub kind: RejectionKind,
    /// The parse error's category (`not_utf8`, `not_json`, `not_an_object`, `malformed`,
    /// `missing_field`) or the refusal's reason (`too_large`, `too_many_fragments`, …).
    pub reason: &'static str,
    /// The JSON path the error names; `$` when it names none (the whole frame).
    pub path: String,
    /// What was wrong, at most [`MAX_REASON_CHARS`] characters.
    pub detail: String,
    /// The message's size (for a refusal: at least this many bytes had arrived; 0 when
    /// the WebSocket client refused a single frame before any of it was read).
    pub bytes: usize,
}

/// Counts since the link was built, and the recent rejections.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Rejections {
    pub malformed: u64,
    pub refused: u64,
    pub recent: VecDeque<Rejection>,
}

impl Rejections {
    /// A message that did not parse, of `bytes` bytes. Returns what was recorded (the
    /// shell logs the same bounded text).
    pub fn malformed(&mut self, error: &ParseError, bytes: usize) -> Rejection {
        self.malformed = self.malformed.saturating_add(1);
        self.push(Rejection {
            kind: RejectionKind::Malformed,
            reason: parse_error_reason(error),
            path: error.path().unwrap_or("$").to_owned(),
            detail: bounded(&error.to_string(), MAX_REASON_CHARS),
            bytes,
        })
    }

    /// A message the reassembly caps refused (`reason`: `ReassemblyError::as_str`).
    pub fn refused(&mut self, reason: &'static str, detail: &str, bytes: usize) -> Rejection {
        self.refused = self.refused.saturating_add(1);
        self.push(Rejection {
            kind: RejectionKind::Refused,
            reason,
            path: "$".to_owned(),
            detail: bounded(detail, MAX_REASON_CHARS),
            bytes,
        })
    }

    /// Everything rejected since the link was built.
    pub fn total(&self) -> u64 {
        self.malformed.saturating_add(self.refused)
    }

    fn push(&mut self, rejection: Rejection) -> Rejection {
        if self.recent.len() >= RECENT_REJECTIONS {
            self.recent.pop_front();
        }
        self.recent.push_back(rejection.clone());
        rejection
    }

    /// Adds `other`'s counts and recent entries (the daemon's total over its links); the
    /// result keeps the cap, `other`'s entries counting as the newer.
    pub fn absorb(&mut self, other: &Rejections) {
        self.malformed = self.malformed.saturating_add(other.malformed);
        self.refused = self.refused.saturating_add(other.refused);
        for rejection in &other.recent {
            if self.recent.len() >= RECENT_REJECTIONS {
                self.recent.pop_front();
            }
            self.recent.push_back(rejection.clone());
        }
    }
}

/// The category of a parse error, as a stable label.
pub fn parse_error_reason(error: &ParseError) -> &'static str {
    match error {
        ParseError::NotUtf8 { .. } => "not_utf8",
        ParseError::NotJson { .. } => "not_json",
        ParseError::NotAnObject { .. } => "not_an_object",
        ParseError::Malformed { .. } => "malformed",
        ParseError::MissingField { .. } => "missing_field",
    }
}

/// `text` cut to at most `max_chars` characters (on a character boundary), saying how
/// long it was when it had to be cut.
pub fn bounded(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        None => text.to_owned(),
        Some((cut, _)) => format!("{}… ({} bytes in all)", &text[..cut], text.len()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::parse::classify;

    #[test]
    fn a_malformed_frame_is_counted_with_the_path_its_error_names() {
        let mut rejections = Rejections::default();
        let frame = r#"{"topicName":"v2.routing.queues.q1.conversations","eventBody":{"id":"c1","participants":[{"id":7}]}}"#;
        let error = classify(frame).unwrap_err();
        let recorded = rejections.malformed(&error, frame.len());
        assert_eq!(rejections.malformed, 1);
        assert_eq!(recorded.kind, RejectionKind::Malformed);
        assert_eq!(recorded.path, error.path().unwrap());
        assert!(
            recorded.path.contains("participants[0]"),
            "{}",
            recorded.path
        );
        assert_eq!(recorded.bytes, frame.len());
    }

    #[test]
    fn an_error_naming_no_path_is_recorded_at_the_root() {
        let mut rejections = Rejections::default();
        let error = crate::parse::classify_bytes(b"\xff\xfe").unwrap_err();
        let recorded = rejections.malformed(&error, 2);
        assert_eq!(recorded.path, "$");
        assert_eq!(recorded.reason, "not_utf8");
    }

    #[test]
    fn a_giant_mistyped_string_does_not_grow_the_record() {
        let giant = "x".repeat(1_000_000);
        let frame = format!(
            r#"{{"topicName":"v2.routing.queues.q1.conversations","eventBody":{{"id":"c1","participants":"{giant}"}}}}"#
        );
        let error = classify(&frame).unwrap_err();
        assert!(error.to_string().len() > 1_000_000, "serde quotes it whole");
        let mut rejections = Rejections::default();
        let recorded = rejections.malformed(&error, frame.len());
        assert!(recorded.detail.chars().count() <= MAX_REASON_CHARS + 40);
        assert!(
            recorded.detail.contains("bytes in all"),
            "{}",
            recorded.detail
        );
    }

    #[test]
    fn only_the_most_recent_rejections_are_kept_but_all_are_counted() {
        let mut rejections = Rejections::default();
        let error = classify("[]").unwrap_err();
        for bytes in 0..(RECENT_REJECTIONS + 10) {
            rejections.malformed(&error, bytes);
        }
        rejections.refused("too_large", "message too large", 9_999);
        assert_eq!(rejections.malformed, (RECENT_REJECTIONS + 10) as u64);
        assert_eq!(rejections.refused, 1);
        assert_eq!(rejections.total(), (RECENT_REJECTIONS + 11) as u64);
        assert_eq!(rejections.recent.len(), RECENT_REJECTIONS);
        assert_eq!(
            rejections.recent.back().unwrap().kind,
            RejectionKind::Refused
        );
        assert_eq!(rejections.recent.front().unwrap().bytes, 11);
    }

    #[test]
    fn absorbing_adds_counts_and_keeps_the_cap() {
        let error = classify("1").unwrap_err();
        let mut first = Rejections::default();
        let mut second = Rejections::default();
        for _ in 0..RECENT_REJECTIONS {
            first.malformed(&error, 1);
            second.refused("too_large", "big", 2);
        }
        first.absorb(&second);
        assert_eq!((first.malformed, first.refused), (32, 32));
        assert_eq!(first.recent.len(), RECENT_REJECTIONS);
        assert!(first
            .recent
            .iter()
            .all(|rejection| rejection.kind == RejectionKind::Refused));
    }

    #[test]
    fn bounded_cuts_on_a_character_boundary() {
        assert_eq!(bounded("short", 10), "short");
        let cut = bounded("ééééé", 2);
        assert!(cut.starts_with("éé…"), "{cut}");
        assert!(cut.ends_with("(10 bytes in all)"), "{cut}");
    }
}
