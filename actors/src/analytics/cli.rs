//! `convoy snapshot --from RFC3339 --to RFC3339 [--config F] [--out DIR]
//! [--format json,csv,html]`: one QA snapshot on demand, into `DIR/<from>_<to>/`.
//!
//! SLA outcomes come from the outbox database at `outbox.path`: read directly when no
//! daemon holds it, through the daemon's admin API (`GET /outbox/sla-outcomes`) when one
//! does, like `convoy outbox`. Genesys is read with the configured OAuth client, through
//! the same token bucket as the daemon's calls (`genesys.requests_per_minute`).

use std::path::PathBuf;
use std::sync::Arc;

use actix::Actor;
use chrono::{DateTime, Utc};
use convoy::analytics::model::Interval;
use convoy::analytics::output::{Formats, OutputFile, UnknownFormat};
use convoy::analytics::plan::PlanLimits;
use convoy::analytics::Snapshot;
use convoy::config::{ClientSecret, Config};

use super::snapshot::{self, SnapshotError, TakeSettings, Taken};
use crate::genesys::oauth::TokenEndpoint;
use crate::genesys::rest::{GenesysRest, RestContext, SharedBucket};
use crate::outbox_cmd::{self, OutboxError};
use crate::token::{TokenActor, TokenStats};

/// The arguments of `convoy snapshot`, as typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotArgs {
    pub from: String,
    pub to: String,
    /// `None`: `analytics.output_dir`.
    pub out: Option<PathBuf>,
    /// `json,csv,html`.
    pub format: String,
    /// Draw a progress line on stderr (the binary: when stderr is a terminal).
    pub progress: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotCliError {
    #[error("--{argument}: {value:?} is not an RFC 3339 instant such as 2025-03-04T00:00:00Z")]
    BadInstant {
        argument: &'static str,
        value: String,
    },
    #[error("--to ({to}) must be after --from ({from})")]
    EmptyInterval { from: String, to: String },
    #[error(transparent)]
    Format(#[from] UnknownFormat),
    #[error("genesys.client_secret_file was not resolved to a secret")]
    SecretNotLoaded,
    #[error("SLA outcomes: {0}")]
    Outcomes(#[from] OutboxError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

impl SnapshotCliError {
    /// A bad command line (exit 2), as opposed to a failure at run time (exit 1).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            SnapshotCliError::BadInstant { .. }
                | SnapshotCliError::EmptyInterval { .. }
                | SnapshotCliError::Format(_)
        )
    }
}

/// What `convoy snapshot` reports.
#[derive(Debug, Clone)]
pub struct SnapshotReport {
    pub folder: PathBuf,
    pub snapshot: Snapshot,
}

impl SnapshotReport {
    /// The summary printed on stdout.
    pub fn text(&self) -> String {
        let s = &self.snapshot;
        let trust = &s.trust;
        let mut text = format!(
            "Snapshot {} written to {}\n  conversations: {}  queues: {}  breaches: {}\n",
            s.interval.genesys(),
            self.folder.display(),
            s.conversations.len(),
            s.queues.len(),
            s.breaches.len(),
        );
        match trust.data_availability_date {
            Some(at) => text.push_str(&format!(
                "  data availability (details jobs): {}\n",
                convoy::analytics::model::millis_time::text(&at)
            )),
            None => text.push_str("  data availability: unknown\n"),
        }
        if trust.reconciliation.clean {
            text.push_str("  reconciliation with the aggregates: clean\n");
        } else {
            text.push_str(&format!(
                "  reconciliation with the aggregates: {} mismatches (see manifest.json)\n",
                trust.reconciliation.mismatches.len()
            ));
        }
        text
    }
}

fn instant(argument: &'static str, value: &str) -> Result<DateTime<Utc>, SnapshotCliError> {
    DateTime::parse_from_rfc3339(value.trim())
        .map(|at| at.with_timezone(&Utc))
        .map_err(|_| SnapshotCliError::BadInstant {
            argument,
            value: value.to_owned(),
        })
}

/// `--from`/`--to` as an interval, each argument named in its error.
pub fn parse_interval(from: &str, to: &str) -> Result<Interval, SnapshotCliError> {
    let interval = Interval {
        from: instant("from", from)?,
        to: instant("to", to)?,
    };
    if interval.to <= interval.from {
        return Err(SnapshotCliError::EmptyInterval {
            from: from.to_owned(),
            to: to.to_owned(),
        });
    }
    Ok(interval)
}

/// `report.html`: the QA report of the snapshot (`convoy::report`), from the same data as
/// the other files, so the manifest hashes it like them and it is byte-identical too.
pub fn html_report(taken: &Taken) -> OutputFile {
    let data = convoy::analytics::report_data::report_data(&taken.snapshot, &taken.queries);
    OutputFile {
        name: "report.html".to_owned(),
        bytes: convoy::report::render_html(&data).into_bytes(),
    }
}

/// The service level's answer target: Convoy's `sla.answer` threshold, so the service
/// level and the `answer` SLA tallies measure against the same target.
pub fn take_settings(config: &Config) -> TakeSettings {
    TakeSettings {
        limits: PlanLimits::GENESYS,
        service_level_target_ms: u64::try_from(config.sla.answer.as_millis()).unwrap_or(u64::MAX),
    }
}

/// A REST client of its own (token actor, bucket) for a one-off command. Must run inside
/// an actix System.
pub fn rest_client(config: &Config) -> Result<GenesysRest, SnapshotCliError> {
    let ClientSecret::Value(secret) = &config.genesys.client_secret else {
        return Err(SnapshotCliError::SecretNotLoaded);
    };
    let tokens = TokenActor::new(
        TokenEndpoint {
            login_base: config.genesys.endpoints.login_base.clone(),
            client_id: config.genesys.client_id.clone(),
            client_secret: secret.clone(),
        },
        Arc::new(TokenStats::default()),
    )
    .start();
    Ok(GenesysRest::new(RestContext {
        api_base: config.genesys.endpoints.api_base.clone(),
        tokens,
        bucket: Arc::new(SharedBucket::new(config.genesys.requests_per_minute)),
        transport: Default::default(),
    }))
}

/// `convoy snapshot`. Must run inside an actix System.
pub async fn run_snapshot(
    config: &Config,
    args: &SnapshotArgs,
) -> Result<SnapshotReport, SnapshotCliError> {
    let interval = parse_interval(&args.from, &args.to)?;
    let formats = Formats::parse(&args.format)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| config.analytics.output_dir.clone());
    let outcomes = outbox_cmd::sla_outcomes(config, interval.from, interval.to).await?;
    let rest = rest_client(config)?;
    let mut line = ProgressLine::new(args.progress);
    let taken = snapshot::take(
        &rest,
        interval,
        outcomes,
        take_settings(config),
        &mut |rows| line.update(rows),
    )
    .await;
    line.finish();
    let taken = taken?;
    let html = formats.html.then(|| html_report(&taken));
    let folder = snapshot::write(&out, &taken, formats, html.into_iter().collect())?;
    Ok(SnapshotReport {
        folder,
        snapshot: taken.snapshot,
    })
}

/// An `indicatif` spinner on stderr counting the conversations read (the total is unknown
/// up front: `totalHits` is approximate), redrawn at most ten times a second; nothing when
/// disabled or when stderr is not a terminal (indicatif hides itself there).
struct ProgressLine {
    bar: Option<indicatif::ProgressBar>,
}

impl ProgressLine {
    fn new(enabled: bool) -> ProgressLine {
        let bar = enabled.then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                None,
                indicatif::ProgressDrawTarget::stderr_with_hz(10),
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{spinner} {elapsed} conversations read: {pos}",
            ) {
                bar.set_style(style);
            }
            bar
        });
        ProgressLine { bar }
    }

    fn update(&mut self, rows: usize) {
        if let Some(bar) = &self.bar {
            bar.set_position(rows as u64);
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn bad_arguments_are_named() {
        let error = parse_interval("yesterday", "2025-03-05T00:00:00Z").unwrap_err();
        assert!(
            error.to_string().starts_with("--from: \"yesterday\""),
            "{error}"
        );
        let error = parse_interval("2025-03-05T00:00:00Z", "2025-03-05").unwrap_err();
        assert!(error.to_string().starts_with("--to: "), "{error}");
        let error = parse_interval("2025-03-05T00:00:00Z", "2025-03-04T00:00:00Z").unwrap_err();
        assert!(
            error.to_string().contains("must be after --from"),
            "{error}"
        );
        let interval = parse_interval("2025-03-04T01:00:00+01:00", "2025-03-05T00:00:00Z").unwrap();
        assert_eq!(
            interval.genesys(),
            "2025-03-04T00:00:00.000Z/2025-03-05T00:00:00.000Z"
        );
    }
}
