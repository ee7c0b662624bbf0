//! The QA snapshot as data: what `convoy snapshot` and the AnalyticsActor write, and what
//! the HTML report renders. Every type is `Serialize`/`Deserialize` with camelCase keys;
//! every number is an integer (milliseconds, counts) or a fixed-point decimal string
//! ([`Percent`]), so the canonical JSON never depends on float formatting.
//!
//! Ordering is part of the model: queue rows by `(queueId, mediaType)`, SLA rows by clock
//! in [`ClockKind::ALL`] order, breaches by `(conversationId, clock, subject)`, timeline
//! buckets by start, conversations by id, mismatches by `(queueId, mediaType, measure)`.
//! [`super::build::build_snapshot`] produces them so; nothing downstream sorts again.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::sla::{ClockKind, SlaOutcome};

/// A half-open interval `[from, to)`, the snapshot's period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Interval {
    #[serde(with = "millis_time")]
    pub from: DateTime<Utc>,
    #[serde(with = "millis_time")]
    pub to: DateTime<Utc>,
}

impl Interval {
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.from <= at && at < self.to
    }

    /// `start/end` as Genesys wants it (`2025-03-04T00:00:00.000Z/…`).
    pub fn genesys(&self) -> String {
        format!(
            "{}/{}",
            millis_time::text(&self.from),
            millis_time::text(&self.to)
        )
    }

    /// The folder name of a snapshot: `20250304T000000Z_20250305T000000Z`.
    pub fn folder_name(&self) -> String {
        format!(
            "{}_{}",
            self.from.format("%Y%m%dT%H%M%SZ"),
            self.to.format("%Y%m%dT%H%M%SZ")
        )
    }
}

/// A ratio as a fixed-point decimal string with two places (`"93.75"`), computed with
/// integer arithmetic (half up), so the same counts always print the same.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Percent(pub String);

impl Percent {
    /// `numerator / denominator` in percent, `None` when the denominator is 0.
    pub fn of(numerator: u64, denominator: u64) -> Option<Percent> {
        if denominator == 0 {
            return None;
        }
        // Hundredths of a percent, rounded half up.
        let scaled = (u128::from(numerator) * 20_000 + u128::from(denominator))
            / (2 * u128::from(denominator));
        Some(Percent(format!("{}.{:02}", scaled / 100, scaled % 100)))
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Median and p90 of a duration metric over the detail rows of a group, in ms.
///
/// Percentile method: **nearest rank** on the sorted values — the p-th percentile is the
/// value at 1-based rank `ceil(p/100 × n)`. So the median of an even count is the lower of
/// the two middle values, and every reported value is one that was measured (no
/// interpolation, no floats). `None` when no row carries the metric.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DurationStats {
    /// Rows carrying the metric.
    pub count: u64,
    pub median_ms: Option<u64>,
    pub p90_ms: Option<u64>,
}

/// Genesys' service level: answered within the target over (answered + abandoned).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceLevel {
    pub target_ms: u64,
    /// Answered sessions whose `tAnswered` is at most the target.
    pub answered_within_target: u64,
    pub answered: u64,
    pub abandoned: u64,
    /// `answeredWithinTarget / (answered + abandoned)`; `None` with nothing to count.
    pub percent: Option<Percent>,
}

/// One queue and media type, from the detail rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueRow {
    pub queue_id: String,
    /// Lower-case analytics media type (`message`, `voice`, …).
    pub media_type: String,
    /// ACD sessions offered (`nOffered`).
    pub offered: u64,
    /// Agent sessions connected (`nConnected`).
    pub answered: u64,
    /// ACD sessions abandoned (`tAbandon` present).
    pub abandoned: u64,
    /// Agent sessions that ended in a transfer (`nTransferred`).
    pub transferred: u64,
    pub handle: DurationStats,
    pub talk: DurationStats,
    pub acw: DurationStats,
    /// Time to answer (`tAnswered`).
    pub answer: DurationStats,
    pub service_level: ServiceLevel,
}

/// Convoy's SLA outcomes of one clock decided in the interval (from the outbox database).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlaClockRow {
    pub clock: String,
    pub compliant: u64,
    pub breached: u64,
    pub failed: u64,
    pub missing_receipt: u64,
    pub abandoned: u64,
    pub total: u64,
    /// `compliant / (total - abandoned)`: an abandoned clock is neither met nor missed.
    pub compliance_percent: Option<Percent>,
}

/// One breached SLA outcome.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Breach {
    pub conversation_id: String,
    pub clock: String,
    /// The clock's subject: the ACD participant id or the message id.
    pub subject: String,
    pub queue_id: Option<String>,
    #[serde(with = "millis_time")]
    pub deadline: DateTime<Utc>,
    /// Set when the clock was met late ("achieved late").
    #[serde(with = "millis_time::option", default)]
    pub fulfilled_at: Option<DateTime<Utc>>,
}

/// Conversations that started in one bucket of the interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelineBucket {
    #[serde(with = "millis_time")]
    pub start: DateTime<Utc>,
    #[serde(with = "millis_time")]
    pub end: DateTime<Utc>,
    pub conversations: u64,
}

/// One conversation as the detail rows show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationRow {
    pub conversation_id: String,
    #[serde(with = "millis_time")]
    pub start: DateTime<Utc>,
    /// `None` while it was still in progress when read.
    #[serde(with = "millis_time::option", default)]
    pub end: Option<DateTime<Utc>>,
    /// The first queue it was offered to, if any.
    pub queue_id: Option<String>,
    pub media_type: Option<String>,
    pub offered: u64,
    pub answered: u64,
    pub abandoned: u64,
    pub transferred: u64,
    /// Sums over its agent sessions, `None` when no session carries the metric.
    pub handle_ms: Option<u64>,
    pub talk_ms: Option<u64>,
    pub acw_ms: Option<u64>,
    /// The first answer's `tAnswered`.
    pub answer_ms: Option<u64>,
}

/// Which measure of a queue row disagreed with the aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    Offered,
    Answered,
    Abandoned,
}

/// Detail rows and the aggregates query disagree on one measure of one group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mismatch {
    pub queue_id: String,
    pub media_type: String,
    pub measure: Measure,
    pub details: u64,
    pub aggregates: u64,
}

/// Detail rows reconciled against the aggregates (offered, answered, abandoned per queue
/// and media type). A group present on one side only is a mismatch against 0.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reconciliation {
    pub clean: bool,
    pub groups_compared: u64,
    pub mismatches: Vec<Mismatch>,
}

/// How the detail rows were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetailsSource {
    /// Only the synchronous details query.
    Query,
    /// Only async details jobs.
    Jobs,
    /// Jobs up to the availability watermark, the query after it.
    QueryAndJobs,
}

/// How far the snapshot's data can be trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trust {
    /// The details jobs' `dataAvailabilityDate` when the snapshot was taken, capped at the
    /// interval's end: the data lake had everything before it. Equal to the interval's
    /// end means the whole interval was settled in Genesys' data lake; earlier means the
    /// detail rows after it came from the near-real-time query and may still change
    /// (conversations in progress, metrics not yet emitted).
    #[serde(with = "millis_time::option", default)]
    pub data_availability_date: Option<DateTime<Utc>>,
    pub details_source: DetailsSource,
    /// Conversations read in the interval that had not ended yet.
    pub conversations_in_progress: u64,
    pub reconciliation: Reconciliation,
}

/// One clock's outcomes in one queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueSla {
    pub queue_id: String,
    pub outcomes: SlaClockRow,
}

/// A QA snapshot of one interval. See the module docs for the ordering guarantees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// Version of this document's shape.
    pub schema: u32,
    pub interval: Interval,
    pub queues: Vec<QueueRow>,
    pub sla: Vec<SlaClockRow>,
    /// The `answer` clock's outcomes per queue (by queue id), beside each queue's service
    /// level; outcomes without a queue are only in [`Snapshot::sla`].
    pub answer_sla_by_queue: Vec<QueueSla>,
    pub breaches: Vec<Breach>,
    pub timeline: Vec<TimelineBucket>,
    pub conversations: Vec<ConversationRow>,
    pub trust: Trust,
}

/// The schema of [`Snapshot`] this code writes.
pub const SNAPSHOT_SCHEMA: u32 = 1;

/// One SLA outcome Convoy decided, as the outbox database keeps it (`sla_outcomes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredOutcome {
    pub conversation_id: String,
    pub clock: ClockKind,
    pub subject: String,
    pub outcome: SlaOutcome,
    #[serde(with = "millis_time")]
    pub deadline: DateTime<Utc>,
    #[serde(with = "millis_time::option", default)]
    pub fulfilled_at: Option<DateTime<Utc>>,
    pub queue_id: Option<String>,
    pub messenger_type: Option<String>,
    /// When the clock settled (the outcome signal's `at`): what places it in an interval.
    #[serde(with = "millis_time")]
    pub decided_at: DateTime<Utc>,
}

impl StoredOutcome {
    /// The key in the outbox database: `{conversation}/{clock}/{subject}`.
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}",
            self.conversation_id,
            self.clock.as_str(),
            self.subject
        )
    }
}

/// RFC 3339 UTC with exactly three fractional digits, the way Genesys writes instants:
/// one spelling per instant, whatever the input's precision or offset.
pub mod millis_time {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn text(at: &DateTime<Utc>) -> String {
        at.to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&text(at))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let raw = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&raw)
            .map(|at| at.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }

    pub mod option {
        use chrono::{DateTime, Utc};
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(
            at: &Option<DateTime<Utc>>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match at {
                Some(at) => serializer.serialize_str(&super::text(at)),
                None => serializer.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            let raw = Option::<String>::deserialize(d)?;
            raw.map(|raw| {
                DateTime::parse_from_rfc3339(&raw)
                    .map(|at| at.with_timezone(&Utc))
                    .map_err(serde::de::Error::custom)
            })
            .transpose()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn percent_is_fixed_point_rounded_half_up() {
        assert_eq!(Percent::of(15, 16), Some(Percent("93.75".to_owned())));
        assert_eq!(Percent::of(2, 3), Some(Percent("66.67".to_owned())));
        assert_eq!(Percent::of(1, 3), Some(Percent("33.33".to_owned())));
        assert_eq!(Percent::of(0, 5), Some(Percent("0.00".to_owned())));
        assert_eq!(Percent::of(5, 5), Some(Percent("100.00".to_owned())));
        assert_eq!(Percent::of(1, 0), None);
    }

    #[test]
    fn instants_always_print_with_milliseconds_in_utc() {
        let at = DateTime::parse_from_rfc3339("2025-03-04T15:05:12+01:00").unwrap();
        assert_eq!(
            millis_time::text(&at.with_timezone(&Utc)),
            "2025-03-04T14:05:12.000Z"
        );
    }
}
