//! The Genesys analytics responses Convoy reads, typed: the details query page
//! (`AnalyticsConversationQueryResponse`), the details job's status, results page and
//! availability, and the aggregates response (`ConversationAggregateQueryResponse`).
//!
//! Only the fields a snapshot uses are modelled; unknown fields are ignored (Genesys adds
//! fields). A response that does not fit is a [`WireError`] naming the response and the
//! JSON path of the offending field — never a panic.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// A response that does not read as its type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{what}: {path}: {reason}")]
    Malformed {
        /// The response type (`AnalyticsConversationQueryResponse`, …).
        what: &'static str,
        /// JSON path of the field that failed (`conversations[3].participants[0].sessions`).
        path: String,
        reason: String,
    },
}

fn read<T: DeserializeOwned>(body: &[u8], what: &'static str) -> Result<T, WireError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        WireError::Malformed {
            what,
            path,
            reason: error.into_inner().to_string(),
        }
    })?;
    deserializer.end().map_err(|error| WireError::Malformed {
        what,
        path: ".".to_owned(),
        reason: error.to_string(),
    })?;
    Ok(value)
}

/// `{name, value, emitDate}`: `t…` values are milliseconds, `n…` counts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionMetric {
    pub name: String,
    pub value: i64,
    #[serde(default)]
    pub emit_date: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Segment {
    pub segment_start: DateTime<Utc>,
    #[serde(default)]
    pub segment_end: Option<DateTime<Utc>>,
    pub segment_type: String,
    #[serde(default)]
    pub queue_id: Option<String>,
    #[serde(default)]
    pub disconnect_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    #[serde(default)]
    pub session_id: Option<String>,
    pub media_type: String,
    #[serde(default)]
    pub metrics: Vec<SessionMetric>,
    #[serde(default)]
    pub segments: Vec<Segment>,
}

impl Session {
    /// The queue the session belongs to: the first segment naming one.
    pub fn queue_id(&self) -> Option<&str> {
        self.segments
            .iter()
            .find_map(|segment| segment.queue_id.as_deref())
    }

    /// The value of metric `name`, if emitted (the first when repeated).
    pub fn metric(&self, name: &str) -> Option<i64> {
        self.metrics
            .iter()
            .find(|metric| metric.name == name)
            .map(|metric| metric.value)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    #[serde(default)]
    pub participant_id: Option<String>,
    #[serde(default)]
    pub purpose: Option<String>,
    #[serde(default)]
    pub sessions: Vec<Session>,
}

/// `AnalyticsConversation`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalyticsConversation {
    pub conversation_id: String,
    pub conversation_start: DateTime<Utc>,
    #[serde(default)]
    pub conversation_end: Option<DateTime<Utc>>,
    #[serde(default)]
    pub participants: Vec<Participant>,
}

/// `AnalyticsConversationQueryResponse`: one page of the synchronous details query.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DetailsPage {
    #[serde(default)]
    pub conversations: Vec<AnalyticsConversation>,
    /// Approximate while data for the interval still arrives.
    #[serde(default)]
    pub total_hits: u64,
}

/// `{jobId}` (202 of the job creation).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobCreated {
    pub job_id: String,
}

/// `AsyncQueryStatus.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    Queued,
    Pending,
    Fulfilled,
    Failed,
    Cancelled,
    Expired,
}

/// `AsyncQueryStatus`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    pub state: JobState,
    #[serde(default)]
    pub error_message: Option<String>,
}

/// A page of a job's results; `cursor` is present while more remain.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobResultsPage {
    #[serde(default)]
    pub conversations: Vec<AnalyticsConversation>,
    #[serde(default)]
    pub cursor: Option<String>,
    #[serde(default)]
    pub data_availability_date: Option<DateTime<Utc>>,
}

/// `GET …/details/jobs/availability`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Availability {
    pub data_availability_date: DateTime<Utc>,
}

/// `StatisticalSummary`, the fields Convoy reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    #[serde(default)]
    pub count: Option<i64>,
    #[serde(default)]
    pub sum: Option<i64>,
    #[serde(default)]
    pub min: Option<i64>,
    #[serde(default)]
    pub max: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AggregateMetric {
    pub metric: String,
    #[serde(default)]
    pub stats: Stats,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AggregateData {
    pub interval: String,
    #[serde(default)]
    pub metrics: Vec<AggregateMetric>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AggregateResult {
    #[serde(default)]
    pub group: BTreeMap<String, String>,
    #[serde(default)]
    pub data: Vec<AggregateData>,
}

/// `ConversationAggregateQueryResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AggregatesResponse {
    #[serde(default)]
    pub results: Vec<AggregateResult>,
}

/// Counts of one `(queueId, mediaType)` group summed over every data interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AggregateCounts {
    pub offered: u64,
    pub answered: u64,
    pub abandoned: u64,
}

impl AggregatesResponse {
    /// `(queueId, mediaType)` → counts: `nOffered.count`, `nConnected.count` and
    /// `tAbandon.count` (a timer's `count` is how many sessions emitted it). Results
    /// without both dimensions (no queue) are left out: they cannot be reconciled.
    pub fn counts(&self) -> BTreeMap<(String, String), AggregateCounts> {
        let mut counts: BTreeMap<(String, String), AggregateCounts> = BTreeMap::new();
        for result in &self.results {
            let (Some(queue), Some(media)) =
                (result.group.get("queueId"), result.group.get("mediaType"))
            else {
                continue;
            };
            let entry = counts.entry((queue.clone(), media.clone())).or_default();
            for data in &result.data {
                for metric in &data.metrics {
                    let count = u64::try_from(metric.stats.count.unwrap_or(0)).unwrap_or(0);
                    match metric.metric.as_str() {
                        "nOffered" => entry.offered += count,
                        "nConnected" => entry.answered += count,
                        "tAbandon" => entry.abandoned += count,
                        _ => {}
                    }
                }
            }
        }
        counts
    }
}

pub fn details_page(body: &[u8]) -> Result<DetailsPage, WireError> {
    read(body, "AnalyticsConversationQueryResponse")
}

pub fn job_created(body: &[u8]) -> Result<JobCreated, WireError> {
    read(body, "AsyncQueryResponse")
}

pub fn job_status(body: &[u8]) -> Result<JobStatus, WireError> {
    read(body, "AsyncQueryStatus")
}

pub fn job_results(body: &[u8]) -> Result<JobResultsPage, WireError> {
    read(body, "AnalyticsConversationAsyncQueryResponse")
}

pub fn availability(body: &[u8]) -> Result<Availability, WireError> {
    read(body, "DataAvailabilityResponse")
}

pub fn aggregates(body: &[u8]) -> Result<AggregatesResponse, WireError> {
    read(body, "ConversationAggregateQueryResponse")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const DETAILS: &str = r#"{
      "totalHits": 1,
      "conversations": [{
        "conversationId": "c1",
        "conversationStart": "2025-03-04T14:05:12.301Z",
        "conversationEnd": "2025-03-04T14:09:02.118Z",
        "participants": [{
          "participantId": "p1", "purpose": "agent",
          "sessions": [{
            "mediaType": "message",
            "metrics": [{"name": "tHandle", "value": 246630, "emitDate": "2025-03-04T14:09:31.500Z"}],
            "segments": [{"segmentStart": "2025-03-04T14:05:21.560Z", "segmentType": "alert", "queueId": "q1"}]
          }]
        }]
      }]
    }"#;

    #[test]
    fn a_details_page_reads_sessions_metrics_and_segment_queues() {
        let page = details_page(DETAILS.as_bytes()).unwrap();
        assert_eq!(page.total_hits, 1);
        let session = &page.conversations[0].participants[0].sessions[0];
        assert_eq!(session.queue_id(), Some("q1"));
        assert_eq!(session.metric("tHandle"), Some(246_630));
        assert_eq!(session.metric("tTalk"), None);
    }

    #[test]
    fn a_bad_field_is_named_by_its_json_path() {
        let body = DETAILS.replace(r#""value": 246630"#, r#""value": "long""#);
        let error = details_page(body.as_bytes()).unwrap_err();
        let WireError::Malformed { what, path, .. } = error;
        assert_eq!(what, "AnalyticsConversationQueryResponse");
        assert_eq!(
            path,
            "conversations[0].participants[0].sessions[0].metrics[0].value"
        );
    }

    #[test]
    fn a_missing_conversation_id_is_an_error_not_a_panic() {
        let body = DETAILS.replace(r#""conversationId": "c1","#, "");
        assert!(matches!(
            details_page(body.as_bytes()),
            Err(WireError::Malformed { .. })
        ));
    }

    #[test]
    fn aggregate_counts_sum_over_data_intervals_per_queue_and_media_type() {
        let body = r#"{"results": [
          {"group": {"queueId": "q1", "mediaType": "message"}, "data": [
            {"interval": "a/b", "metrics": [{"metric": "nOffered", "stats": {"count": 12}},
                                            {"metric": "nConnected", "stats": {"count": 11}}]},
            {"interval": "b/c", "metrics": [{"metric": "nOffered", "stats": {"count": 2}},
                                            {"metric": "tAbandon", "stats": {"count": 1, "sum": 9000, "min": 9000, "max": 9000}}]}]},
          {"group": {"mediaType": "message"}, "data": []}
        ]}"#;
        let counts = aggregates(body.as_bytes()).unwrap().counts();
        assert_eq!(counts.len(), 1);
        assert_eq!(
            counts[&("q1".to_owned(), "message".to_owned())],
            AggregateCounts {
                offered: 14,
                answered: 11,
                abandoned: 1
            }
        );
    }

    #[test]
    fn job_status_reads_every_state() {
        for (text, state) in [
            ("QUEUED", JobState::Queued),
            ("PENDING", JobState::Pending),
            ("FULFILLED", JobState::Fulfilled),
            ("FAILED", JobState::Failed),
            ("CANCELLED", JobState::Cancelled),
            ("EXPIRED", JobState::Expired),
        ] {
            let body = format!(r#"{{"state": "{text}"}}"#);
            assert_eq!(job_status(body.as_bytes()).unwrap().state, state);
        }
    }
}
