//! The AnalyticsActor: on `analytics.schedule`, a snapshot of the previous whole interval
//! (see `convoy::analytics::schedule`) into `analytics.output_dir`; the end of what it
//! covered is committed to the outbox database, so a failed run is retried with backoff
//! and the next success covers everything missed — never silently skipped. It also prunes
//! SLA outcomes older than `analytics.keep_outcomes`.
//!
//! One snapshot at a time. It runs on its own arbiter: its disk work (the outbox reads,
//! the files) blocks only it, and its REST calls queue at background priority in the
//! shared token bucket behind the live path.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use convoy::analytics::model::Interval;
use convoy::analytics::output::Formats;
use convoy::analytics::schedule::{due_interval, retry_after};

use super::snapshot::{self, TakeSettings};
use crate::genesys::rest::{GenesysRest, RestContext};
use crate::store::DurableStore;
use crate::telemetry::{names, ActorMetrics};

/// How often the actor checks whether an interval is due (and prunes outcomes).
const CHECK_EVERY: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
pub struct AnalyticsSettings {
    /// `analytics.schedule`; `None` when off (the actor then only prunes).
    pub every: Option<Duration>,
    pub output_dir: PathBuf,
    pub keep_outcomes: Duration,
    pub take: TakeSettings,
}

/// Per-daemon tallies (the metrics recorder is process-wide).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnalyticsStats {
    pub taken: u64,
    pub failed: u64,
    pub last_folder: Option<PathBuf>,
    pub covered_to: Option<DateTime<Utc>>,
}

#[derive(Debug, Message)]
#[rtype(result = "AnalyticsStats")]
pub struct GetAnalyticsStats;

pub struct AnalyticsActor {
    settings: AnalyticsSettings,
    store: Arc<DurableStore>,
    context: RestContext,
    rest: Option<GenesysRest>,
    running: bool,
    failures: u32,
    not_before: Option<DateTime<Utc>>,
    stats: AnalyticsStats,
}

impl AnalyticsActor {
    pub fn new(
        settings: AnalyticsSettings,
        store: Arc<DurableStore>,
        context: RestContext,
    ) -> Self {
        AnalyticsActor {
            settings,
            store,
            context,
            rest: None,
            running: false,
            failures: 0,
            not_before: None,
            stats: AnalyticsStats::default(),
        }
    }

    fn prune(&self, now: DateTime<Utc>) {
        let keep = chrono::Duration::from_std(self.settings.keep_outcomes)
            .unwrap_or(chrono::Duration::days(35));
        match self.store.prune_sla_outcomes(now - keep) {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "Old SLA outcomes pruned from the outbox."),
            Err(error) => {
                tracing::warn!(%error, "Cannot prune old SLA outcomes; trying again later.")
            }
        }
    }

    fn check(&mut self, ctx: &mut Context<Self>) {
        let now = Utc::now();
        self.prune(now);
        let Some(every) = self.settings.every else {
            return;
        };
        if self.running || self.not_before.is_some_and(|at| now < at) {
            return;
        }
        let every = chrono::Duration::from_std(every).unwrap_or(chrono::Duration::hours(1));
        let covered_to = match self.store.analytics_covered_to() {
            Ok(covered) => covered,
            Err(error) => {
                tracing::warn!(%error, "Cannot read the analytics watermark; trying again later.");
                return;
            }
        };
        self.stats.covered_to = covered_to;
        let Some(interval) = due_interval(now, every, covered_to) else {
            return;
        };
        let Some(rest) = self.rest.clone() else {
            return;
        };
        self.running = true;
        let store = Arc::clone(&self.store);
        let settings = self.settings.clone();
        let started = Instant::now();
        let work = async move { run_once(&rest, &store, &settings, interval).await };
        ctx.spawn(work.into_actor(self).map(move |result, actor, _| {
            actor.running = false;
            metrics::histogram!(names::ANALYTICS_SECONDS).record(started.elapsed().as_secs_f64());
            match result {
                Ok((folder, rows, mismatches)) => {
                    actor.failures = 0;
                    actor.not_before = None;
                    actor.stats.taken += 1;
                    actor.stats.last_folder = Some(folder.clone());
                    actor.stats.covered_to = Some(interval.to);
                    metrics::counter!(names::ANALYTICS_SNAPSHOTS, "result" => "taken").increment(1);
                    metrics::counter!(names::ANALYTICS_ROWS).increment(rows);
                    metrics::gauge!(names::ANALYTICS_MISMATCHES).set(mismatches as f64);
                    tracing::info!(
                        interval = %interval.genesys(),
                        folder = %folder.display(),
                        rows,
                        mismatches,
                        "QA snapshot taken."
                    );
                }
                Err(error) => {
                    actor.failures += 1;
                    actor.stats.failed += 1;
                    let wait = retry_after(actor.failures, every);
                    actor.not_before = Some(Utc::now() + wait);
                    metrics::counter!(names::ANALYTICS_SNAPSHOTS, "result" => "failed")
                        .increment(1);
                    tracing::warn!(
                        interval = %interval.genesys(),
                        %error,
                        failures = actor.failures,
                        retry_in_s = wait.num_seconds(),
                        "QA snapshot failed; retrying, and the next success covers this interval."
                    );
                }
            }
        }));
    }
}

/// One scheduled snapshot: outcomes from the store, Genesys, the files, then the
/// watermark (only after the files are in place).
async fn run_once(
    rest: &GenesysRest,
    store: &DurableStore,
    settings: &AnalyticsSettings,
    interval: Interval,
) -> Result<(PathBuf, u64, usize), String> {
    let outcomes = store
        .sla_outcomes(interval.from, interval.to)
        .map_err(|error| error.to_string())?;
    let taken = snapshot::take(rest, interval, outcomes, settings.take, &mut |_| {})
        .await
        .map_err(|error| error.to_string())?;
    let html = super::cli::html_report(&taken);
    let folder = snapshot::write(&settings.output_dir, &taken, Formats::default(), vec![html])
        .map_err(|error| error.to_string())?;
    store
        .set_analytics_covered_to(interval.to)
        .map_err(|error| error.to_string())?;
    Ok((
        folder,
        taken.snapshot.conversations.len() as u64,
        taken.snapshot.trust.reconciliation.mismatches.len(),
    ))
}

impl Actor for AnalyticsActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // awc's client is not Send: built here, on this actor's thread.
        self.rest = Some(GenesysRest::new(self.context.clone()));
        self.check(ctx);
        ctx.run_interval(CHECK_EVERY, |actor, ctx| actor.check(ctx));
    }
}

impl Handler<GetAnalyticsStats> for AnalyticsActor {
    type Result = MessageResult<GetAnalyticsStats>;

    fn handle(&mut self, _: GetAnalyticsStats, _: &mut Self::Context) -> Self::Result {
        ActorMetrics::handled("analytics");
        MessageResult(self.stats.clone())
    }
}
