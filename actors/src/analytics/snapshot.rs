//! Taking one snapshot: the REST calls the pure plan ([`convoy::analytics::plan`]) asks
//! for, through the rate-limited Genesys client at background priority, then the build
//! and the files. Shared by `convoy snapshot` and the AnalyticsActor.

use std::path::{Path, PathBuf};
use std::time::Duration;

use convoy::analytics::build::{build_snapshot, SnapshotInputs};
use convoy::analytics::model::{Interval, StoredOutcome};
use convoy::analytics::output::{self, Formats, OutputError, OutputFile};
use convoy::analytics::plan::{
    aggregates_body, DetailsPlan, PlanError, PlanLimits, Request, SentQuery, Step,
    AGGREGATES_QUERY_PATH, AVAILABILITY_PATH, DETAILS_JOBS_PATH, DETAILS_QUERY_PATH,
};
use convoy::analytics::wire::{self, WireError};
use convoy::analytics::Snapshot;

use crate::genesys::rest::{path_segment, GenesysRest, RestError, RestRequest};
use crate::retry_schedule::RetrySchedule;

/// How long a details job may take to be fulfilled before the snapshot gives up.
const JOB_DEADLINE: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("Genesys analytics: {0}")]
    Rest(#[from] RestError),
    #[error("Genesys analytics answer: {0}")]
    Wire(#[from] WireError),
    #[error("{0}")]
    Plan(#[from] PlanError),
    #[error("details job {job_id} was not fulfilled within {minutes} minutes")]
    JobTimedOut { job_id: String, minutes: u64 },
    #[error("{0}")]
    Output(#[from] OutputError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A snapshot and the queries that read it (for the manifest).
#[derive(Debug, Clone)]
pub struct Taken {
    pub snapshot: Snapshot,
    pub queries: Vec<SentQuery>,
    /// REST requests answered.
    pub requests: u64,
}

/// What a snapshot is read with, besides the interval and the outcomes.
#[derive(Debug, Clone, Copy)]
pub struct TakeSettings {
    pub limits: PlanLimits,
    pub service_level_target_ms: u64,
}

/// Reads the interval's detail rows and aggregates from Genesys and builds the snapshot
/// with `outcomes` (Convoy's SLA outcomes, read from the outbox). `progress` is told the
/// number of conversations read after every page.
pub async fn take(
    rest: &GenesysRest,
    interval: Interval,
    outcomes: Vec<StoredOutcome>,
    settings: TakeSettings,
    progress: &mut dyn FnMut(usize),
) -> Result<Taken, SnapshotError> {
    let availability = rest
        .call(
            RestRequest::get(
                AVAILABILITY_PATH,
                "GET /api/v2/analytics/conversations/details/jobs/availability",
            )
            .background(),
        )
        .await?;
    let watermark = wire::availability(&availability.body)?.data_availability_date;
    let mut plan = DetailsPlan::new(interval, watermark, settings.limits);
    let mut poll = RetrySchedule::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut job_started: Option<std::time::Instant> = None;
    loop {
        let request = match plan.next_step() {
            Step::Done => break,
            Step::Send(request) => request,
        };
        match request {
            Request::Query { body } => {
                let answer = rest
                    .call(
                        RestRequest::post(
                            DETAILS_QUERY_PATH,
                            "POST /api/v2/analytics/conversations/details/query",
                            body,
                        )
                        .background(),
                    )
                    .await?;
                plan.query_page(wire::details_page(&answer.body)?)?;
            }
            Request::CreateJob { body } => {
                let answer = rest
                    .call(
                        RestRequest::post(
                            DETAILS_JOBS_PATH,
                            "POST /api/v2/analytics/conversations/details/jobs",
                            body,
                        )
                        .background(),
                    )
                    .await?;
                plan.job_created(wire::job_created(&answer.body)?.job_id)?;
                job_started = Some(std::time::Instant::now());
                poll = RetrySchedule::new(Duration::from_millis(100), Duration::from_secs(5));
            }
            Request::JobStatus {
                job_id,
                poll: again,
            } => {
                if again {
                    if job_started.is_some_and(|started| started.elapsed() > JOB_DEADLINE) {
                        return Err(SnapshotError::JobTimedOut {
                            job_id,
                            minutes: JOB_DEADLINE.as_secs() / 60,
                        });
                    }
                    actix_rt::time::sleep(poll.next_delay()).await;
                }
                let route = "GET /api/v2/analytics/conversations/details/jobs/{id}";
                let segment = path_segment(&job_id, "job id", route)?;
                let answer = rest
                    .call(
                        RestRequest::get(format!("{DETAILS_JOBS_PATH}/{segment}"), route)
                            .background(),
                    )
                    .await?;
                plan.job_status(wire::job_status(&answer.body)?)?;
            }
            Request::JobResults { job_id, cursor } => {
                let route = "GET /api/v2/analytics/conversations/details/jobs/{id}/results";
                let segment = path_segment(&job_id, "job id", route)?;
                let mut path = format!("{DETAILS_JOBS_PATH}/{segment}/results");
                if let Some(cursor) = cursor {
                    let encoded: String =
                        url::form_urlencoded::byte_serialize(cursor.as_bytes()).collect();
                    path.push_str("?cursor=");
                    path.push_str(&encoded);
                }
                let answer = rest
                    .call(RestRequest::get(path, route).background())
                    .await?;
                plan.job_page(wire::job_results(&answer.body)?)?;
            }
        }
        progress(plan.rows());
    }
    let aggregates_query = aggregates_body(&interval);
    let answer = rest
        .call(
            RestRequest::post(
                AGGREGATES_QUERY_PATH,
                "POST /api/v2/analytics/conversations/aggregates/query",
                aggregates_query.clone(),
            )
            .background(),
        )
        .await?;
    let aggregates = wire::aggregates(&answer.body)?;
    let read = plan.finish();
    let mut queries = read.queries;
    queries.push(SentQuery {
        endpoint: format!("POST {AGGREGATES_QUERY_PATH}"),
        body: aggregates_query,
    });
    // A job's own page may report a later watermark than the availability asked first.
    // Capped at the interval's end: what the data lake holds after the interval does not
    // concern this snapshot, and a snapshot of a settled interval taken again must be
    // byte-identical even though the watermark moved on.
    let seen = read
        .data_availability_date
        .map_or(watermark, |seen| seen.max(watermark));
    let data_availability_date = Some(seen.min(interval.to));
    let snapshot = build_snapshot(&SnapshotInputs {
        interval,
        conversations: read.conversations,
        aggregates,
        outcomes,
        data_availability_date,
        details_source: read.source,
        service_level_target_ms: settings.service_level_target_ms,
    });
    Ok(Taken {
        snapshot,
        queries,
        requests: read.requests + 2,
    })
}

/// Writes the snapshot's files into `out/<from>_<to>/` (replacing a previous snapshot of
/// the same interval) and returns that folder. The files are first written to a sibling
/// `.partial` folder, then renamed into place, so a reader never sees half a snapshot.
///
/// `extra` are files rendered elsewhere (the HTML report), hashed in the manifest.
pub fn write(
    out: &Path,
    taken: &Taken,
    formats: Formats,
    extra: Vec<OutputFile>,
) -> Result<PathBuf, SnapshotError> {
    let files = output::render(&taken.snapshot, &taken.queries, formats, extra)?;
    let folder = out.join(taken.snapshot.interval.folder_name());
    let partial = out.join(format!(
        ".{}.partial",
        taken.snapshot.interval.folder_name()
    ));
    let fail = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SnapshotError::Write { path, source }
    };
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(fail(&partial))?;
    }
    std::fs::create_dir_all(&partial).map_err(fail(&partial))?;
    for file in &files {
        let path = partial.join(&file.name);
        std::fs::write(&path, &file.bytes).map_err(fail(&path))?;
    }
    if folder.exists() {
        std::fs::remove_dir_all(&folder).map_err(fail(&folder))?;
    }
    std::fs::rename(&partial, &folder).map_err(fail(&folder))?;
    Ok(folder)
}
