//! The QA report: one self-contained HTML page over a snapshot's figures.
//!
//! Owns [`ReportData`] — everything the page shows, already computed — and
//! [`render_html`]. The report decides nothing about the data: the snapshot computes the
//! medians, service levels and reconciliation; this module lays them out, formats them for
//! humans and says loudly when the data may be incomplete.
//!
//! The page must open offline in any browser, years later, from an attachment: no external
//! assets (inline CSS, inline SVG charts from [`crate::svg`]), no JavaScript. It is
//! deterministic — the same data gives byte-identical HTML — so snapshots can be hashed in
//! their manifest and compared. Every text from outside (queue names, media types,
//! conversation ids, query descriptions) is escaped.

mod example;
pub mod format;
mod html;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::sla::ClockKind;

pub use html::render_html;

/// Everything the QA report shows for one interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReportData {
    pub title: String,
    pub interval: Interval,
    pub trust: Trust,
    /// One row per queue and media type, in the order to show them.
    pub queues: Vec<QueueRow>,
    /// Convoy's SLA outcomes per clock, in the order to show them.
    pub sla_by_clock: Vec<ClockOutcomes>,
    pub breaches: Vec<Breach>,
    /// Conversations started per bucket, oldest first.
    pub conversations_over_time: Vec<Bucket>,
    /// Every conversation of the interval; breaches link to them.
    pub conversation_ids: Vec<String>,
}

/// The half-open interval `[from, to)` the report covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Interval {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// How far the figures can be trusted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Trust {
    /// The details jobs' `dataAvailabilityDate`: analytics data after it may still be
    /// missing. `None` when the snapshot could not learn it.
    pub data_availability_date: Option<DateTime<Utc>>,
    /// When the figures were read; `None` where the output must depend on the data alone
    /// (a QA snapshot's files are byte-identical for the same data, whenever taken).
    pub generated_at: Option<DateTime<Utc>>,
    /// The queries the snapshot ran, as the manifest records them.
    pub queries: Vec<QuerySummary>,
    /// Where the detail rows and the aggregates disagree; empty when they agree.
    pub mismatches: Vec<Mismatch>,
}

/// One query of the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuerySummary {
    /// e.g. `conversation details query`, `details job`, `aggregates query`.
    pub name: String,
    /// What it asked for (endpoint, grouping, filter), in words or as the request body.
    pub description: String,
    pub requests: u64,
    pub rows: u64,
}

/// A figure the detail rows and the aggregates count differently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mismatch {
    pub queue: String,
    pub media_type: String,
    /// `offered`, `answered` or `abandoned`.
    pub metric: String,
    pub details_count: u64,
    pub aggregates_count: u64,
}

/// Median and 90th percentile of a duration, in milliseconds; `None` without data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DurationStats {
    pub median_ms: Option<u64>,
    pub p90_ms: Option<u64>,
}

/// One queue and media type over the interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueueRow {
    pub queue: String,
    pub media_type: String,
    pub offered: u64,
    pub answered: u64,
    pub abandoned: u64,
    pub transferred: u64,
    pub handle: DurationStats,
    pub talk: DurationStats,
    pub acw: DurationStats,
    /// Genesys' service level: answered within the target over answered plus abandoned,
    /// as a fraction in `[0, 1]`; `None` when nothing was answered or abandoned.
    pub service_level: Option<f64>,
    /// Convoy's `answer` clock outcomes for this queue, shown beside the service level.
    pub answer_sla: OutcomeCounts,
}

/// How many clocks settled with each outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutcomeCounts {
    pub compliant: u64,
    pub breached: u64,
    pub failed: u64,
    pub missing_receipt: u64,
    pub abandoned: u64,
}

impl OutcomeCounts {
    pub fn total(&self) -> u64 {
        self.compliant + self.breached + self.failed + self.missing_receipt + self.abandoned
    }

    /// Compliant over every settled clock; `None` when none settled.
    pub fn compliance(&self) -> Option<f64> {
        match self.total() {
            0 => None,
            total => Some(self.compliant as f64 / total as f64),
        }
    }
}

/// Convoy's outcomes of one clock kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClockOutcomes {
    pub clock: ClockKind,
    pub outcomes: OutcomeCounts,
}

/// A clock that missed its deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Breach {
    pub conversation_id: String,
    pub clock: ClockKind,
    /// What the clock timed: a participant or a message, as the CRM record names it.
    pub subject: String,
    pub deadline: DateTime<Utc>,
    /// When the clock was fulfilled after all; `None` if it never was.
    pub fulfilled_at: Option<DateTime<Utc>>,
}

/// Conversations started in `[start, start + bucket length)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Bucket {
    pub start: DateTime<Utc>,
    pub count: u64,
}

/// Why the report warns that its data may be incomplete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incompleteness {
    /// The snapshot could not learn the analytics availability watermark.
    UnknownWatermark,
    /// Analytics data after the watermark may still be missing.
    WatermarkBeforeIntervalEnd {
        watermark: DateTime<Utc>,
        interval_end: DateTime<Utc>,
    },
    /// The detail rows and the aggregates disagree somewhere.
    Mismatches { count: usize },
}

impl ReportData {
    /// Every reason to distrust the figures, in the order the warning lists them.
    pub fn incompleteness(&self) -> Vec<Incompleteness> {
        let mut reasons = Vec::new();
        match self.trust.data_availability_date {
            None => reasons.push(Incompleteness::UnknownWatermark),
            Some(watermark) if watermark < self.interval.to => {
                reasons.push(Incompleteness::WatermarkBeforeIntervalEnd {
                    watermark,
                    interval_end: self.interval.to,
                })
            }
            Some(_) => {}
        }
        if !self.trust.mismatches.is_empty() {
            reasons.push(Incompleteness::Mismatches {
                count: self.trust.mismatches.len(),
            });
        }
        reasons
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compliance_is_compliant_over_every_settled_clock() {
        let counts = OutcomeCounts {
            compliant: 6,
            breached: 1,
            failed: 1,
            missing_receipt: 1,
            abandoned: 1,
        };
        assert_eq!(counts.total(), 10);
        assert_eq!(counts.compliance(), Some(0.6));
        assert_eq!(OutcomeCounts::default().compliance(), None);
    }

    #[test]
    fn a_late_watermark_and_mismatches_make_the_data_incomplete() {
        let data = ReportData::example();
        let reasons = data.incompleteness();
        assert!(matches!(
            reasons.as_slice(),
            [
                Incompleteness::WatermarkBeforeIntervalEnd { .. },
                Incompleteness::Mismatches { count: 1 }
            ]
        ));
    }

    #[test]
    fn a_watermark_at_the_interval_end_without_mismatches_is_complete() {
        let mut data = ReportData::example();
        data.trust.data_availability_date = Some(data.interval.to);
        data.trust.mismatches.clear();
        assert_eq!(data.incompleteness(), Vec::new());
        data.trust.data_availability_date = None;
        assert_eq!(
            data.incompleteness(),
            vec![Incompleteness::UnknownWatermark]
        );
    }

    #[test]
    fn report_data_round_trips_through_json_in_camel_case() {
        let data = ReportData::example();
        let json = serde_json::to_string(&data).unwrap_or_default();
        assert!(json.contains("\"dataAvailabilityDate\""));
        assert!(json.contains("\"missingReceipt\""));
        assert!(json.contains("\"clock\":\"first_response\""));
        let back: ReportData = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, data);
    }
}
