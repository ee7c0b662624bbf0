//! The plan that reads every detail row of an interval, as a state machine: the shell
//! asks [`DetailsPlan::next_step`] what to send, sends it (through the rate-limited REST
//! client), and feeds the typed answer back. The plan decides paging, splitting and the
//! choice between the synchronous query and the async jobs; it never sends anything.
//!
//! # Query or jobs (the rule)
//! - An interval of at most [`PlanLimits::max_query_interval`] (7 days) is read with the
//!   **synchronous details query**, page by page (`pageSize` 100, `pageNumber` 1, 2, …)
//!   until a page comes back short. The query returns the conversations that *started*
//!   in its interval.
//! - A longer interval is bulk extraction, which Genesys directs to the **async details
//!   jobs**: the part before the jobs' `dataAvailabilityDate` watermark is read with one
//!   job (cursor pages until no cursor); jobs see nothing after the watermark, so the part
//!   after it is read with the query, in pieces of at most 7 days. Jobs return every
//!   conversation with *any activity* in their interval: rows that started outside the
//!   piece are dropped, so both paths select by conversation start, like the aggregates.
//! - **The 100 000-result cap**: the query refuses `pageSize × pageNumber` beyond
//!   [`PlanLimits::result_cap`]. When a first page reports more hits than the cap (or the
//!   next page would pass it), the piece is split in halves and each half read on its own;
//!   rows already read stay (dedupe).
//!
//! Rows are deduplicated by conversation id (paging an active interval can repeat a row;
//! the later read wins) and come out sorted by id.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::model::{DetailsSource, Interval};
use super::wire::{AnalyticsConversation, DetailsPage, JobResultsPage, JobState, JobStatus};

pub const DETAILS_QUERY_PATH: &str = "/api/v2/analytics/conversations/details/query";
pub const DETAILS_JOBS_PATH: &str = "/api/v2/analytics/conversations/details/jobs";
pub const AVAILABILITY_PATH: &str = "/api/v2/analytics/conversations/details/jobs/availability";
pub const AGGREGATES_QUERY_PATH: &str = "/api/v2/analytics/conversations/aggregates/query";

/// The metrics the aggregates query asks for (what the emulator and Genesys both serve).
pub const AGGREGATE_METRICS: [&str; 8] = [
    "nOffered",
    "nConnected",
    "nTransferred",
    "tAnswered",
    "tAbandon",
    "tTalk",
    "tAcw",
    "tHandle",
];

/// The limits the plan works within; [`PlanLimits::GENESYS`] in production, smaller in
/// tests so a split is cheap to provoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanLimits {
    pub page_size: u64,
    pub result_cap: u64,
    pub max_query_interval: Duration,
}

impl PlanLimits {
    pub const GENESYS: PlanLimits = PlanLimits {
        page_size: 100,
        result_cap: 100_000,
        max_query_interval: Duration::days(7),
    };
}

impl Default for PlanLimits {
    fn default() -> Self {
        PlanLimits::GENESYS
    }
}

/// How one piece of the interval is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    Query(Interval),
    Job(Interval),
}

/// The pieces of `interval` (see the module docs for the rule).
pub fn pieces(interval: Interval, watermark: DateTime<Utc>, limits: &PlanLimits) -> Vec<Piece> {
    let length = interval.to - interval.from;
    if length <= limits.max_query_interval {
        return vec![Piece::Query(interval)];
    }
    let mut pieces = Vec::new();
    let mut from = interval.from;
    if watermark > interval.from {
        let to = watermark.min(interval.to);
        pieces.push(Piece::Job(Interval {
            from: interval.from,
            to,
        }));
        from = to;
    }
    while from < interval.to {
        let to = (from + limits.max_query_interval).min(interval.to);
        pieces.push(Piece::Query(Interval { from, to }));
        from = to;
    }
    pieces
}

/// A request the plan wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `POST` [`DETAILS_QUERY_PATH`].
    Query { body: Value },
    /// `POST` [`DETAILS_JOBS_PATH`] → 202 `{jobId}`.
    CreateJob { body: Value },
    /// `GET …/jobs/{jobId}`; `poll` is true after an unfinished status (wait before it).
    JobStatus { job_id: String, poll: bool },
    /// `GET …/jobs/{jobId}/results[?cursor=]`.
    JobResults {
        job_id: String,
        cursor: Option<String>,
    },
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Send(Request),
    /// Every piece is read.
    Done,
}

/// A query as the manifest records it: endpoint and exact body. Status polls and result
/// cursors are not recorded (their number and job ids vary run to run; the job's query is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentQuery {
    pub endpoint: String,
    pub body: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the details query still exceeds the {cap}-result cap on the interval {interval} and it cannot be split further")]
    CapUnsplittable { interval: String, cap: u64 },
    #[error("details job {job_id} ended {state:?}: {message}")]
    JobFailed {
        job_id: String,
        state: JobState,
        message: String,
    },
    #[error("{answer} was fed to the plan while it waited for {waiting}")]
    OutOfTurn {
        answer: &'static str,
        waiting: &'static str,
    },
}

#[derive(Debug, Clone)]
enum Current {
    Query {
        interval: Interval,
        page_number: u64,
    },
    JobCreating {
        interval: Interval,
    },
    Job {
        interval: Interval,
        job_id: String,
        polls: u64,
        fulfilled: bool,
        cursor: Option<String>,
    },
}

impl Current {
    fn name(&self) -> &'static str {
        match self {
            Current::Query { .. } => "a details query page",
            Current::JobCreating { .. } => "a job creation",
            Current::Job {
                fulfilled: false, ..
            } => "a job status",
            Current::Job {
                fulfilled: true, ..
            } => "a job results page",
        }
    }
}

/// What the plan read.
#[derive(Debug, Clone, PartialEq)]
pub struct DetailsRead {
    /// Deduplicated, sorted by conversation id.
    pub conversations: Vec<AnalyticsConversation>,
    pub queries: Vec<SentQuery>,
    pub source: DetailsSource,
    /// Requests answered (query pages, job statuses and result pages).
    pub requests: u64,
    /// Times a piece was split on the result cap.
    pub splits: u64,
    /// The latest `dataAvailabilityDate` a job results page reported.
    pub data_availability_date: Option<DateTime<Utc>>,
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct DetailsPlan {
    limits: PlanLimits,
    pieces: VecDeque<Piece>,
    current: Option<Current>,
    rows: BTreeMap<String, AnalyticsConversation>,
    queries: Vec<SentQuery>,
    used_query: bool,
    used_jobs: bool,
    requests: u64,
    splits: u64,
    data_availability_date: Option<DateTime<Utc>>,
}

impl DetailsPlan {
    /// A plan for `interval`, given the jobs' availability watermark.
    pub fn new(interval: Interval, watermark: DateTime<Utc>, limits: PlanLimits) -> DetailsPlan {
        DetailsPlan {
            limits,
            pieces: pieces(interval, watermark, &limits).into(),
            current: None,
            rows: BTreeMap::new(),
            queries: Vec::new(),
            used_query: false,
            used_jobs: false,
            requests: 0,
            splits: 0,
            data_availability_date: None,
        }
    }

    /// Conversations read so far (for progress).
    pub fn rows(&self) -> usize {
        self.rows.len()
    }

    fn query_body(&self, interval: &Interval, page_number: u64) -> Value {
        json!({
            "interval": interval.genesys(),
            "order": "asc",
            "orderBy": "conversationStart",
            "paging": { "pageSize": self.limits.page_size, "pageNumber": page_number },
        })
    }

    /// The next request, or [`Step::Done`].
    pub fn next_step(&mut self) -> Step {
        if self.current.is_none() {
            self.current = match self.pieces.pop_front() {
                None => return Step::Done,
                Some(Piece::Query(interval)) => Some(Current::Query {
                    interval,
                    page_number: 1,
                }),
                Some(Piece::Job(interval)) => Some(Current::JobCreating { interval }),
            };
        }
        let request = match &self.current {
            None => return Step::Done,
            Some(Current::Query {
                interval,
                page_number,
            }) => {
                let body = self.query_body(interval, *page_number);
                self.used_query = true;
                self.queries.push(SentQuery {
                    endpoint: format!("POST {DETAILS_QUERY_PATH}"),
                    body: body.clone(),
                });
                Request::Query { body }
            }
            Some(Current::JobCreating { interval }) => {
                let body = json!({
                    "interval": interval.genesys(),
                    "order": "asc",
                    "orderBy": "conversationStart",
                });
                self.used_jobs = true;
                self.queries.push(SentQuery {
                    endpoint: format!("POST {DETAILS_JOBS_PATH}"),
                    body: body.clone(),
                });
                Request::CreateJob { body }
            }
            Some(Current::Job {
                job_id,
                fulfilled: false,
                polls,
                ..
            }) => Request::JobStatus {
                job_id: job_id.clone(),
                poll: *polls > 0,
            },
            Some(Current::Job {
                job_id,
                fulfilled: true,
                cursor,
                ..
            }) => Request::JobResults {
                job_id: job_id.clone(),
                cursor: cursor.clone(),
            },
        };
        Step::Send(request)
    }

    fn keep(&mut self, interval: &Interval, conversations: Vec<AnalyticsConversation>) {
        for conversation in conversations {
            if interval.contains(conversation.conversation_start) {
                self.rows
                    .insert(conversation.conversation_id.clone(), conversation);
            }
        }
    }

    fn out_of_turn(&self, answer: &'static str) -> PlanError {
        PlanError::OutOfTurn {
            answer,
            waiting: self.current.as_ref().map_or("nothing", Current::name),
        }
    }

    /// The answer to a [`Request::Query`].
    pub fn query_page(&mut self, page: DetailsPage) -> Result<(), PlanError> {
        let Some(Current::Query {
            interval,
            page_number,
        }) = self.current.clone()
        else {
            return Err(self.out_of_turn("a details query page"));
        };
        self.requests += 1;
        let size = self.limits.page_size;
        let cap = self.limits.result_cap;
        if page_number == 1 && page.total_hits > cap {
            return self.split(interval);
        }
        let short = (page.conversations.len() as u64) < size;
        self.keep(&interval, page.conversations);
        if short {
            self.current = None;
        } else if (page_number + 1).saturating_mul(size) > cap {
            if page_number.saturating_mul(size) >= page.total_hits {
                // Exactly at the cap and every hit read.
                self.current = None;
            } else {
                // The interval grew past the cap while it was read: read it again in halves.
                self.split(interval)?;
            }
        } else {
            self.current = Some(Current::Query {
                interval,
                page_number: page_number + 1,
            });
        }
        Ok(())
    }

    fn split(&mut self, interval: Interval) -> Result<(), PlanError> {
        let half = (interval.to - interval.from) / 2;
        if half < Duration::milliseconds(1) {
            return Err(PlanError::CapUnsplittable {
                interval: interval.genesys(),
                cap: self.limits.result_cap,
            });
        }
        let middle = interval.from + half;
        self.pieces.push_front(Piece::Query(Interval {
            from: middle,
            to: interval.to,
        }));
        self.pieces.push_front(Piece::Query(Interval {
            from: interval.from,
            to: middle,
        }));
        self.splits += 1;
        self.current = None;
        Ok(())
    }

    /// The answer to a [`Request::CreateJob`].
    pub fn job_created(&mut self, job_id: String) -> Result<(), PlanError> {
        let Some(Current::JobCreating { interval }) = self.current.clone() else {
            return Err(self.out_of_turn("a job creation"));
        };
        self.requests += 1;
        self.current = Some(Current::Job {
            interval,
            job_id,
            polls: 0,
            fulfilled: false,
            cursor: None,
        });
        Ok(())
    }

    /// The answer to a [`Request::JobStatus`].
    pub fn job_status(&mut self, status: JobStatus) -> Result<(), PlanError> {
        let Some(Current::Job {
            interval,
            job_id,
            polls,
            fulfilled: false,
            ..
        }) = self.current.clone()
        else {
            return Err(self.out_of_turn("a job status"));
        };
        self.requests += 1;
        match status.state {
            JobState::Queued | JobState::Pending => {
                self.current = Some(Current::Job {
                    interval,
                    job_id,
                    polls: polls + 1,
                    fulfilled: false,
                    cursor: None,
                });
                Ok(())
            }
            JobState::Fulfilled => {
                self.current = Some(Current::Job {
                    interval,
                    job_id,
                    polls,
                    fulfilled: true,
                    cursor: None,
                });
                Ok(())
            }
            state => Err(PlanError::JobFailed {
                job_id,
                state,
                message: status.error_message.unwrap_or_default(),
            }),
        }
    }

    /// The answer to a [`Request::JobResults`].
    pub fn job_page(&mut self, page: JobResultsPage) -> Result<(), PlanError> {
        let Some(Current::Job {
            interval,
            job_id,
            polls,
            fulfilled: true,
            ..
        }) = self.current.clone()
        else {
            return Err(self.out_of_turn("a job results page"));
        };
        self.requests += 1;
        if let Some(at) = page.data_availability_date {
            self.data_availability_date =
                Some(self.data_availability_date.map_or(at, |d| d.max(at)));
        }
        self.keep(&interval, page.conversations);
        self.current = page
            .cursor
            .filter(|c| !c.is_empty())
            .map(|cursor| Current::Job {
                interval,
                job_id,
                polls,
                fulfilled: true,
                cursor: Some(cursor),
            });
        Ok(())
    }

    /// Everything read; call after [`Step::Done`].
    pub fn finish(self) -> DetailsRead {
        let source = match (self.used_query, self.used_jobs) {
            (_, false) => DetailsSource::Query,
            (false, true) => DetailsSource::Jobs,
            (true, true) => DetailsSource::QueryAndJobs,
        };
        DetailsRead {
            conversations: self.rows.into_values().collect(),
            queries: self.queries,
            source,
            requests: self.requests,
            splits: self.splits,
            data_availability_date: self.data_availability_date,
        }
    }
}

/// The aggregates query of `interval`: grouped by queue and media type, one bucket (no
/// granularity), UTC.
pub fn aggregates_body(interval: &Interval) -> Value {
    json!({
        "interval": interval.genesys(),
        "timeZone": "UTC",
        "groupBy": ["queueId", "mediaType"],
        "metrics": AGGREGATE_METRICS,
    })
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

    fn interval(from: &str, to: &str) -> Interval {
        Interval {
            from: at(from),
            to: at(to),
        }
    }

    fn conversation(id: &str, start: DateTime<Utc>) -> AnalyticsConversation {
        AnalyticsConversation {
            conversation_id: id.to_owned(),
            conversation_start: start,
            conversation_end: None,
            participants: Vec::new(),
        }
    }

    /// A fake details query over `data` (sorted by start, then id), honouring the cap.
    fn answer_query(body: &Value, data: &[AnalyticsConversation], cap: u64) -> DetailsPage {
        let text = body["interval"].as_str().unwrap();
        let (from, to) = text.split_once('/').unwrap();
        let (from, to) = (at(from), at(to));
        let size = body["paging"]["pageSize"].as_u64().unwrap();
        let number = body["paging"]["pageNumber"].as_u64().unwrap();
        assert!(size * number <= cap, "the plan asked past the cap: {body}");
        let hits: Vec<_> = data
            .iter()
            .filter(|c| from <= c.conversation_start && c.conversation_start < to)
            .cloned()
            .collect();
        DetailsPage {
            total_hits: hits.len() as u64,
            conversations: hits
                .into_iter()
                .skip(((number - 1) * size) as usize)
                .take(size as usize)
                .collect(),
        }
    }

    fn run(plan: &mut DetailsPlan, data: &[AnalyticsConversation], cap: u64) {
        for _ in 0..10_000 {
            match plan.next_step() {
                Step::Done => return,
                Step::Send(Request::Query { body }) => {
                    plan.query_page(answer_query(&body, data, cap)).unwrap()
                }
                other => panic!("unexpected step {other:?}"),
            }
        }
        panic!("the plan never finished");
    }

    fn data(count: usize, from: DateTime<Utc>, every: Duration) -> Vec<AnalyticsConversation> {
        (0..count)
            .map(|i| conversation(&format!("c{i:05}"), from + every * i as i32))
            .collect()
    }

    #[test]
    fn pages_through_the_query_until_a_short_page() {
        let day = interval("2025-03-04T00:00:00Z", "2025-03-05T00:00:00Z");
        let rows = data(250, day.from, Duration::minutes(5));
        let mut plan = DetailsPlan::new(day, day.to, PlanLimits::GENESYS);
        run(&mut plan, &rows, 100_000);
        let read = plan.finish();
        assert_eq!(read.conversations.len(), 250);
        assert_eq!(read.requests, 3, "pages of 100, 100, 50");
        let pages: Vec<u64> = read
            .queries
            .iter()
            .map(|q| q.body["paging"]["pageNumber"].as_u64().unwrap())
            .collect();
        assert_eq!(pages, vec![1, 2, 3]);
        assert_eq!(read.source, DetailsSource::Query);
    }

    #[test]
    fn splits_the_interval_in_halves_when_the_cap_would_be_hit() {
        let day = interval("2025-03-04T00:00:00Z", "2025-03-05T00:00:00Z");
        let rows = data(40, day.from, Duration::minutes(30));
        let limits = PlanLimits {
            page_size: 4,
            result_cap: 12,
            max_query_interval: Duration::days(7),
        };
        let mut plan = DetailsPlan::new(day, day.to, limits);
        run(&mut plan, &rows, limits.result_cap);
        let read = plan.finish();
        let ids: Vec<_> = read
            .conversations
            .iter()
            .map(|c| c.conversation_id.clone())
            .collect();
        let expected: Vec<_> = rows.iter().map(|c| c.conversation_id.clone()).collect();
        assert_eq!(ids, expected, "every conversation read exactly once");
        // 40 in 20 h: halves of 24 (split again: 12 + 12) and 16 (split again: 12 + 4).
        assert_eq!(read.splits, 3);
    }

    #[test]
    fn a_cap_that_no_split_can_meet_is_an_error() {
        let instant = at("2025-03-04T00:00:00Z");
        let tiny = Interval {
            from: instant,
            to: instant + Duration::milliseconds(1),
        };
        let rows = data(5, instant, Duration::zero());
        let limits = PlanLimits {
            page_size: 1,
            result_cap: 2,
            max_query_interval: Duration::days(7),
        };
        let mut plan = DetailsPlan::new(tiny, tiny.to, limits);
        let Step::Send(Request::Query { body }) = plan.next_step() else {
            panic!("expected a query");
        };
        let error = plan.query_page(answer_query(&body, &rows, 2)).unwrap_err();
        assert!(matches!(error, PlanError::CapUnsplittable { cap: 2, .. }));
    }

    #[test]
    fn repeated_rows_are_kept_once_with_the_later_read() {
        let day = interval("2025-03-04T00:00:00Z", "2025-03-05T00:00:00Z");
        let limits = PlanLimits {
            page_size: 2,
            ..PlanLimits::GENESYS
        };
        let mut plan = DetailsPlan::new(day, day.to, limits);
        let first = conversation("a", day.from);
        let mut again = first.clone();
        again.conversation_end = Some(day.from + Duration::minutes(3));
        plan.next_step();
        plan.query_page(DetailsPage {
            total_hits: 3,
            conversations: vec![first, conversation("b", day.from)],
        })
        .unwrap();
        plan.next_step();
        plan.query_page(DetailsPage {
            total_hits: 3,
            conversations: vec![again.clone()],
        })
        .unwrap();
        assert_eq!(plan.next_step(), Step::Done);
        let read = plan.finish();
        assert_eq!(read.conversations.len(), 2);
        assert_eq!(read.conversations[0], again);
    }

    #[test]
    fn a_long_interval_uses_a_job_before_the_watermark_and_the_query_after() {
        let month = interval("2025-02-01T00:00:00Z", "2025-03-05T00:00:00Z");
        let watermark = at("2025-03-01T12:00:00Z");
        assert_eq!(
            pieces(month, watermark, &PlanLimits::GENESYS),
            vec![
                Piece::Job(interval("2025-02-01T00:00:00Z", "2025-03-01T12:00:00Z")),
                Piece::Query(interval("2025-03-01T12:00:00Z", "2025-03-05T00:00:00Z")),
            ]
        );
        let week = interval("2025-03-01T00:00:00Z", "2025-03-08T00:00:00Z");
        assert_eq!(
            pieces(week, watermark, &PlanLimits::GENESYS),
            vec![Piece::Query(week)],
            "seven days or less: the query"
        );
        let early = at("2025-01-01T00:00:00Z");
        assert_eq!(
            pieces(month, early, &PlanLimits::GENESYS).len(),
            5,
            "nothing in the data lake yet: the query in pieces of at most seven days"
        );
    }

    #[test]
    fn a_job_is_created_polled_and_read_by_cursor_keeping_rows_that_started_in_it() {
        let month = interval("2025-02-01T00:00:00Z", "2025-03-01T00:00:00Z");
        let mut plan = DetailsPlan::new(month, month.to, PlanLimits::GENESYS);
        let Step::Send(Request::CreateJob { body }) = plan.next_step() else {
            panic!("expected a job");
        };
        assert_eq!(body["interval"], month.genesys());
        plan.job_created("j1".to_owned()).unwrap();
        assert_eq!(
            plan.next_step(),
            Step::Send(Request::JobStatus {
                job_id: "j1".to_owned(),
                poll: false
            })
        );
        plan.job_status(JobStatus {
            state: JobState::Pending,
            error_message: None,
        })
        .unwrap();
        assert_eq!(
            plan.next_step(),
            Step::Send(Request::JobStatus {
                job_id: "j1".to_owned(),
                poll: true
            })
        );
        plan.job_status(JobStatus {
            state: JobState::Fulfilled,
            error_message: None,
        })
        .unwrap();
        assert!(matches!(
            plan.next_step(),
            Step::Send(Request::JobResults { cursor: None, .. })
        ));
        plan.job_page(JobResultsPage {
            conversations: vec![
                conversation("before", month.from - Duration::hours(1)),
                conversation("in", month.from),
            ],
            cursor: Some("c2".to_owned()),
            data_availability_date: Some(month.to),
        })
        .unwrap();
        assert_eq!(
            plan.next_step(),
            Step::Send(Request::JobResults {
                job_id: "j1".to_owned(),
                cursor: Some("c2".to_owned())
            })
        );
        plan.job_page(JobResultsPage {
            conversations: vec![conversation("later", month.from + Duration::days(3))],
            cursor: None,
            data_availability_date: Some(month.to),
        })
        .unwrap();
        assert_eq!(plan.next_step(), Step::Done);
        let read = plan.finish();
        let ids: Vec<_> = read
            .conversations
            .iter()
            .map(|c| c.conversation_id.as_str())
            .collect();
        assert_eq!(ids, vec!["in", "later"]);
        assert_eq!(read.source, DetailsSource::Jobs);
        assert_eq!(read.queries.len(), 1, "polls and cursors are not queries");
    }

    #[test]
    fn a_failed_job_is_an_error_naming_it() {
        let month = interval("2025-02-01T00:00:00Z", "2025-03-01T00:00:00Z");
        let mut plan = DetailsPlan::new(month, month.to, PlanLimits::GENESYS);
        plan.next_step();
        plan.job_created("j9".to_owned()).unwrap();
        plan.next_step();
        let error = plan
            .job_status(JobStatus {
                state: JobState::Failed,
                error_message: Some("boom".to_owned()),
            })
            .unwrap_err();
        assert_eq!(error.to_string(), "details job j9 ended Failed: boom");
    }

    #[test]
    fn an_answer_out_of_turn_is_refused() {
        let day = interval("2025-03-04T00:00:00Z", "2025-03-05T00:00:00Z");
        let mut plan = DetailsPlan::new(day, day.to, PlanLimits::GENESYS);
        assert!(matches!(
            plan.job_created("x".to_owned()),
            Err(PlanError::OutOfTurn { .. })
        ));
    }
}
