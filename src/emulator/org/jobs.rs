//! Async conversation-details jobs: `POST …/details/jobs` → 202 `{jobId}`; the job moves
//! `QUEUED → PENDING → FULFILLED` as time passes (checked on every tick and status read);
//! at fulfilment its result set is frozen in query order, so cursor pages over it never
//! repeat or skip a conversation; `DELETE` cancels; results expire a day after submission.

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use super::analytics::{Analyzed, DetailsQuery, Selection};
use super::{iso, Org, OrgError};

/// A job stays `QUEUED` this long after submission.
pub const JOB_QUEUED_MS: i64 = 40;
/// A job is `FULFILLED` this long after submission.
pub const JOB_FULFILLED_MS: i64 = 200;
/// Default and largest `pageSize` of a results page.
pub const JOB_DEFAULT_PAGE_SIZE: usize = 100;
pub const JOB_MAX_PAGE_SIZE: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JobState {
    Queued,
    Pending,
    Fulfilled,
    Cancelled,
    Expired,
}

impl JobState {
    fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "QUEUED",
            JobState::Pending => "PENDING",
            JobState::Fulfilled => "FULFILLED",
            JobState::Cancelled => "CANCELLED",
            JobState::Expired => "EXPIRED",
        }
    }
}

pub(super) struct DetailsJob {
    submitted: DateTime<Utc>,
    completed: Option<DateTime<Utc>>,
    expires: DateTime<Utc>,
    state: JobState,
    selection: Selection,
    results: Vec<Value>,
}

fn cursor_for(offset: usize) -> String {
    format!("c{offset:x}")
}

fn offset_of(cursor: &str) -> Option<usize> {
    usize::from_str_radix(cursor.strip_prefix('c')?, 16).ok()
}

impl Org {
    fn job_mut(&mut self, job_id: &str) -> Result<&mut DetailsJob, OrgError> {
        self.jobs.get_mut(job_id).ok_or_else(|| OrgError::NotFound {
            kind: "job",
            id: job_id.to_owned(),
        })
    }

    /// Moves every job along to `now`; fulfilling a job freezes its results.
    pub(super) fn advance_jobs(&mut self, now: DateTime<Utc>) {
        let ids: Vec<String> = self.jobs.keys().cloned().collect();
        for id in ids {
            self.advance_job(&id, now);
        }
    }

    fn advance_job(&mut self, job_id: &str, now: DateTime<Utc>) {
        let Some(job) = self.jobs.get(job_id) else {
            return;
        };
        let age = (now - job.submitted).num_milliseconds();
        let next = match job.state {
            JobState::Cancelled | JobState::Expired => job.state,
            _ if now >= job.expires => JobState::Expired,
            JobState::Fulfilled => JobState::Fulfilled,
            _ if age >= JOB_FULFILLED_MS => JobState::Fulfilled,
            _ if age >= JOB_QUEUED_MS => JobState::Pending,
            _ => JobState::Queued,
        };
        if next == job.state {
            return;
        }
        let results = if next == JobState::Fulfilled {
            job.selection
                .select(&self.conversations, &self.directory, true, now)
                .iter()
                .map(Analyzed::to_json)
                .collect()
        } else {
            Vec::new()
        };
        if let Some(job) = self.jobs.get_mut(job_id) {
            if next == JobState::Fulfilled {
                job.results = results;
                job.completed = Some(now);
            }
            if next == JobState::Expired {
                job.results = Vec::new();
            }
            job.state = next;
        }
    }

    /// `POST /api/v2/analytics/conversations/details/jobs` → 202 `{"jobId"}`. Selects
    /// conversations with any activity in the interval.
    pub fn create_details_job(
        &mut self,
        body: &Value,
        now: DateTime<Utc>,
    ) -> Result<Value, OrgError> {
        let query = DetailsQuery::parse(body, "AsyncConversationQuery")?;
        let selection = query.selection()?;
        let now = self.remember_now(now);
        let id = self.ids.uuid();
        self.jobs.insert(
            id.clone(),
            DetailsJob {
                submitted: now,
                completed: None,
                expires: now + Duration::days(1),
                state: JobState::Queued,
                selection,
                results: Vec::new(),
            },
        );
        Ok(json!({ "jobId": id }))
    }

    /// `GET /api/v2/analytics/conversations/details/jobs/{jobId}`.
    pub fn details_job_status(
        &mut self,
        job_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Value, OrgError> {
        let now = self.remember_now(now);
        self.job_mut(job_id)?;
        self.advance_job(job_id, now);
        let job = self.job_mut(job_id)?;
        let mut status = json!({
            "state": job.state.as_str(),
            "submissionDate": iso(job.submitted),
            "expirationDate": iso(job.expires),
        });
        if let (Some(completed), Some(object)) = (job.completed, status.as_object_mut()) {
            object.insert("completionDate".to_owned(), json!(iso(completed)));
        }
        Ok(status)
    }

    /// `GET /api/v2/analytics/conversations/details/jobs/{jobId}/results?cursor=&pageSize=`:
    /// a page of the frozen results; `cursor` is present while more remain.
    pub fn details_job_results(
        &mut self,
        job_id: &str,
        cursor: Option<&str>,
        page_size: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Value, OrgError> {
        let now = self.remember_now(now);
        self.job_mut(job_id)?;
        self.advance_job(job_id, now);
        let size = match page_size {
            None => JOB_DEFAULT_PAGE_SIZE,
            Some(text) => text
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|&n| (1..=JOB_MAX_PAGE_SIZE).contains(&n))
                .ok_or_else(|| {
                    OrgError::BadRequest(format!(
                        "pageSize must be an integer from 1 to {JOB_MAX_PAGE_SIZE}, got {text:?}."
                    ))
                })?,
        };
        let job = self.job_mut(job_id)?;
        if job.state != JobState::Fulfilled {
            return Err(OrgError::BadRequest(format!(
                "Results are not available: the job is {}.",
                job.state.as_str()
            )));
        }
        let offset = match cursor.filter(|c| !c.is_empty()) {
            None => 0,
            Some(text) => offset_of(text)
                .filter(|&o| o <= job.results.len())
                .ok_or_else(|| OrgError::BadRequest(format!("cursor {text:?} is not valid.")))?,
        };
        let end = offset.saturating_add(size).min(job.results.len());
        let page: Vec<Value> = job.results[offset..end].to_vec();
        let mut body = json!({
            "conversations": page,
            "dataAvailabilityDate": iso(job.completed.unwrap_or(now)),
        });
        if let (true, Some(object)) = (end < job.results.len(), body.as_object_mut()) {
            object.insert("cursor".to_owned(), json!(cursor_for(end)));
        }
        Ok(body)
    }

    /// `DELETE /api/v2/analytics/conversations/details/jobs/{jobId}`.
    pub fn cancel_details_job(&mut self, job_id: &str, now: DateTime<Utc>) -> Result<(), OrgError> {
        self.remember_now(now);
        let job = self.job_mut(job_id)?;
        job.state = JobState::Cancelled;
        job.results = Vec::new();
        Ok(())
    }

    /// `GET /api/v2/analytics/conversations/details/jobs/availability`: the emulator's data
    /// lake has no lag, so data is available up to `now`.
    pub fn details_jobs_availability(&self, now: DateTime<Utc>) -> Value {
        json!({ "dataAvailabilityDate": iso(super::truncate_ms(now)) })
    }
}
