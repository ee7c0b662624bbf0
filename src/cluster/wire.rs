//! What a published frame looks like on the JetStream stream: **a wire contract** between
//! the ingest role (which publishes) and the worker role (which consumes), possibly
//! different versions of Convoy during a rolling upgrade.
//!
//! - Stream `cluster.stream`, subjects [`STREAM_SUBJECTS`] (`convoy.frames.>`); the
//!   subject of one message is its conversation's partition ([`super::Partition::subject`]).
//! - Payload: the exact bytes Genesys sent — the WebSocket frame text for
//!   [`PayloadKind::Frame`], the body of `GET /api/v2/conversations/{id}` for
//!   [`PayloadKind::Reread`] — so a worker runs the very parser the single process runs.
//! - Headers ([`FrameHeaders`]): `Nats-Msg-Id` (JetStream's de-duplication key, see
//!   [`super::frame_id`]), `Convoy-Kind` (`frame` | `reread`), `Convoy-Observed-At` (when
//!   the ingest received it, RFC 3339 UTC with microseconds: SLA clocks run on observation
//!   time, never on when a worker got round to it) and `Convoy-Conversation`.
//! - One durable pull consumer per partition, named [`consumer_name`] (`convoy-p<N>`).
//!
//! Pure: no NATS client here; the shell turns [`FrameHeaders::pairs`] into NATS headers
//! and hands [`FrameHeaders::decode`] a lookup over the ones it received.

use chrono::{DateTime, SecondsFormat, Utc};

use super::partition::{Partition, SUBJECT_PREFIX};
use crate::ids::ConversationId;

/// Every subject the stream holds.
pub const STREAM_SUBJECTS: &str = "convoy.frames.>";
/// JetStream's de-duplication header.
pub const MSG_ID: &str = "Nats-Msg-Id";
/// `frame` or `reread`.
pub const KIND: &str = "Convoy-Kind";
/// When the ingest observed the payload.
pub const OBSERVED_AT: &str = "Convoy-Observed-At";
/// The conversation the payload is about.
pub const CONVERSATION: &str = "Convoy-Conversation";

/// What the payload bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadKind {
    /// A Notifications WebSocket frame, as received.
    Frame,
    /// A REST `GET /api/v2/conversations/{id}` body (reconciliation).
    Reread,
}

impl PayloadKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            PayloadKind::Frame => "frame",
            PayloadKind::Reread => "reread",
        }
    }

    fn parse(text: &str) -> Option<PayloadKind> {
        match text {
            "frame" => Some(PayloadKind::Frame),
            "reread" => Some(PayloadKind::Reread),
            _ => None,
        }
    }
}

/// The headers of one published payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameHeaders {
    pub msg_id: String,
    pub kind: PayloadKind,
    pub observed_at: DateTime<Utc>,
    pub conversation_id: ConversationId,
}

/// Why a received message's headers cannot be read. Names the header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("header {0} is missing")]
    Missing(&'static str),
    #[error("header {header} is not valid: {value:?} ({expected})")]
    Invalid {
        header: &'static str,
        value: String,
        expected: &'static str,
    },
}

impl FrameHeaders {
    /// The headers to publish, in a fixed order.
    pub fn pairs(&self) -> [(&'static str, String); 4] {
        [
            (MSG_ID, self.msg_id.clone()),
            (KIND, self.kind.as_str().to_owned()),
            (OBSERVED_AT, format_observed_at(self.observed_at)),
            (CONVERSATION, self.conversation_id.to_string()),
        ]
    }

    /// Reads the headers of a received message; `header` looks one up by name.
    pub fn decode<'a>(
        header: impl Fn(&'static str) -> Option<&'a str>,
    ) -> Result<FrameHeaders, WireError> {
        let required = |name: &'static str| {
            header(name)
                .map(str::trim)
                .filter(|value| !value.is_empty())
                .ok_or(WireError::Missing(name))
        };
        let msg_id = required(MSG_ID)?.to_owned();
        let kind_text = required(KIND)?;
        let kind = PayloadKind::parse(kind_text).ok_or_else(|| WireError::Invalid {
            header: KIND,
            value: kind_text.to_owned(),
            expected: "frame or reread",
        })?;
        let observed_text = required(OBSERVED_AT)?;
        let observed_at = DateTime::parse_from_rfc3339(observed_text)
            .map_err(|_| WireError::Invalid {
                header: OBSERVED_AT,
                value: observed_text.to_owned(),
                expected: "an RFC 3339 time",
            })?
            .with_timezone(&Utc);
        let conversation_id = ConversationId::from(required(CONVERSATION)?);
        Ok(FrameHeaders {
            msg_id,
            kind,
            observed_at,
            conversation_id,
        })
    }
}

/// RFC 3339, UTC (`Z`), microseconds: precise enough for SLA clocks, fixed width.
pub fn format_observed_at(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The durable consumer of one partition: `convoy-p<N>`.
pub fn consumer_name(partition: Partition) -> String {
    format!("convoy-p{}", partition.0)
}

/// The partition a subject names (`convoy.frames.<N>`), if it is one.
pub fn partition_of_subject(subject: &str) -> Option<Partition> {
    let number = subject.strip_prefix(SUBJECT_PREFIX)?.strip_prefix('.')?;
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    number.parse().ok().map(Partition)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::collections::HashMap;

    fn sample() -> FrameHeaders {
        FrameHeaders {
            msg_id: "c1:c:00ff".to_owned(),
            kind: PayloadKind::Reread,
            observed_at: Utc.timestamp_opt(1_767_225_600, 123_456_000).unwrap(),
            conversation_id: ConversationId::from("c1"),
        }
    }

    fn decode_map(map: &HashMap<&'static str, String>) -> Result<FrameHeaders, WireError> {
        FrameHeaders::decode(|name| map.get(name).map(String::as_str))
    }

    #[test]
    fn headers_round_trip_and_are_pinned() {
        let pairs = sample().pairs();
        assert_eq!(
            pairs,
            [
                ("Nats-Msg-Id", "c1:c:00ff".to_owned()),
                ("Convoy-Kind", "reread".to_owned()),
                (
                    "Convoy-Observed-At",
                    "2026-01-01T00:00:00.123456Z".to_owned()
                ),
                ("Convoy-Conversation", "c1".to_owned()),
            ]
        );
        let map: HashMap<_, _> = pairs.into_iter().collect();
        assert_eq!(decode_map(&map).unwrap(), sample());
    }

    #[test]
    fn a_missing_or_blank_header_is_named() {
        for name in [MSG_ID, KIND, OBSERVED_AT, CONVERSATION] {
            let mut map: HashMap<_, _> = sample().pairs().into_iter().collect();
            map.remove(name);
            assert_eq!(decode_map(&map), Err(WireError::Missing(name)));
            map.insert(name, "  ".to_owned());
            assert_eq!(decode_map(&map), Err(WireError::Missing(name)));
        }
    }

    #[test]
    fn a_bad_kind_or_time_is_named_with_its_value() {
        let mut map: HashMap<_, _> = sample().pairs().into_iter().collect();
        map.insert(KIND, "snapshot".to_owned());
        let error = decode_map(&map).unwrap_err();
        assert!(matches!(error, WireError::Invalid { header: KIND, .. }));
        assert!(error.to_string().contains("\"snapshot\""));

        let mut map: HashMap<_, _> = sample().pairs().into_iter().collect();
        map.insert(OBSERVED_AT, "yesterday".to_owned());
        assert!(matches!(
            decode_map(&map),
            Err(WireError::Invalid {
                header: OBSERVED_AT,
                ..
            })
        ));
    }

    #[test]
    fn an_offset_time_is_read_as_utc() {
        let mut map: HashMap<_, _> = sample().pairs().into_iter().collect();
        map.insert(OBSERVED_AT, "2026-01-01T02:00:00.123456+02:00".to_owned());
        assert_eq!(decode_map(&map).unwrap().observed_at, sample().observed_at);
    }

    #[test]
    fn consumers_and_subjects_name_their_partition() {
        assert_eq!(consumer_name(Partition(7)), "convoy-p7");
        assert_eq!(
            partition_of_subject(&Partition(42).subject()),
            Some(Partition(42))
        );
        assert_eq!(partition_of_subject("convoy.frames."), None);
        assert_eq!(partition_of_subject("convoy.frames.x"), None);
        assert_eq!(partition_of_subject("convoy.framesx.1"), None);
        assert_eq!(partition_of_subject("other.1"), None);
    }
}
