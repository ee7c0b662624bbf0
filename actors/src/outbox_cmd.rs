//! `convoy outbox status|dead|retry-dead`: what the durable outbox holds, and putting dead
//! letters back, while the daemon runs or not.
//!
//! redb lets one process open the file at `outbox.path`. The command first opens it
//! itself (no daemon running: it reads and writes the file directly); when the file is
//! held by another process ([`StoreError::Locked`], redb's `DatabaseAlreadyOpen`), it asks
//! the daemon holding it through the admin API at `admin.listen` instead: `GET /outbox`,
//! `GET /outbox/dead`, `POST /outbox/retry-dead` (served by `crate::admin`). Both paths
//! run the same store calls, so they answer the same. Opening read-only was not an option:
//! redb refuses a read-only open while a writer holds the file, too.
//!
//! The wire types of those routes and the text rendering live here, shared by the admin
//! server and the command.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use convoy::config::Config;
use serde::{Deserialize, Serialize};

use crate::store::{DeadLetter, DurableStore, OutboxStatus, StoreError};

/// Which dead letters `retry-dead` moves back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    All,
    Ids(Vec<String>),
}

/// Body of `POST /outbox/retry-dead`: `{"ids": ["r1", …]}` or `{"all": true}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryDeadRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
}

/// Why a [`RetryDeadRequest`] selects nothing definite.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetryRequestError {
    #[error("give either `ids` or `\"all\": true`, not both")]
    Both,
    #[error("give `ids` (a non-empty list of record ids) or `\"all\": true`")]
    Neither,
}

impl RetryDeadRequest {
    pub fn from_selection(selection: &Selection) -> RetryDeadRequest {
        match selection {
            Selection::All => RetryDeadRequest {
                ids: None,
                all: true,
            },
            Selection::Ids(ids) => RetryDeadRequest {
                ids: Some(ids.clone()),
                all: false,
            },
        }
    }

    /// The selection this request names; an empty `ids` list names nothing, which is
    /// refused rather than read as "all" or as a silent no-op.
    pub fn selection(&self) -> Result<Selection, RetryRequestError> {
        let ids = self.ids.as_ref().filter(|ids| !ids.is_empty());
        match (ids, self.all) {
            (Some(_), true) => Err(RetryRequestError::Both),
            (None, false) => Err(RetryRequestError::Neither),
            (None, true) => Ok(Selection::All),
            (Some(ids), false) => Ok(Selection::Ids(ids.clone())),
        }
    }
}

/// Answer of `POST /outbox/retry-dead`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryDeadAnswer {
    /// Dead letters moved back to the end of the outbox.
    pub retried: usize,
    /// Requested ids that were not dead letters.
    pub unknown: Vec<String>,
}

/// Body of `GET /outbox/dead`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLettersBody {
    pub count: usize,
    pub dead_letters: Vec<DeadLetter>,
}

/// Moves the selected dead letters back to the outbox, accepted again at `at`, and names
/// the requested ids that were not dead letters.
pub fn retry_dead(
    store: &DurableStore,
    selection: &Selection,
    at: DateTime<Utc>,
) -> Result<RetryDeadAnswer, StoreError> {
    match selection {
        Selection::All => Ok(RetryDeadAnswer {
            retried: store.retry_dead(None, at)?,
            unknown: Vec::new(),
        }),
        Selection::Ids(ids) => {
            let dead = store.dead_letters()?;
            let unknown = ids
                .iter()
                .filter(|id| !dead.iter().any(|letter| &letter.record.id == *id))
                .cloned()
                .collect();
            Ok(RetryDeadAnswer {
                retried: store.retry_dead(Some(ids), at)?,
                unknown,
            })
        }
    }
}

/// Output format of `status` and `dead`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Why a `convoy outbox` command failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "outbox.path {path} is held by another process, and the admin API of a daemon \
         holding it did not answer at {url}: {detail}"
    )]
    AdminUnreachable {
        path: String,
        url: String,
        detail: String,
    },
    #[error("the admin API answered {status} at {url}: {body}")]
    AdminRefused {
        url: String,
        status: u16,
        body: String,
    },
    #[error("cannot read the admin API's answer at {url}: {detail}")]
    AdminAnswer { url: String, detail: String },
}

/// What a command prints, and whether it did all it was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub text: String,
    pub complete: bool,
}

/// Where the outbox is read from.
enum Access {
    File(DurableStore),
    Daemon { base: String },
}

impl Access {
    fn open(config: &Config) -> Result<Access, OutboxError> {
        match DurableStore::open_existing(&config.outbox.path) {
            Ok(store) => Ok(Access::File(store)),
            Err(StoreError::Locked { .. }) => Ok(Access::Daemon {
                base: admin_base(config.admin.listen),
            }),
            Err(error) => Err(error.into()),
        }
    }

    fn describe(&self, config: &Config) -> String {
        match self {
            Access::File(_) => format!("{} (read directly)", config.outbox.path.display()),
            Access::Daemon { base } => format!(
                "{} (held by the daemon, read through {base})",
                config.outbox.path.display()
            ),
        }
    }
}

/// Where a client reaches `admin.listen`: a wildcard address is reached on loopback.
pub fn admin_base(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, listen.port()))
}

/// `convoy outbox status`.
pub async fn status(
    config: &Config,
    format: Format,
    now: DateTime<Utc>,
) -> Result<Report, OutboxError> {
    let access = Access::open(config)?;
    let status: OutboxStatus = match &access {
        Access::File(store) => store.status()?,
        Access::Daemon { base } => get_json(config, base, "/outbox").await?,
    };
    let text = match format {
        Format::Json => json_line(&serde_json::json!({
            "path": config.outbox.path,
            "through_daemon": matches!(access, Access::Daemon { .. }),
            "status": status,
            "oldest_pending_age_seconds": oldest_age(&status, now).map(|age| age.as_secs()),
        })),
        Format::Text => render_status(&status, now, &access.describe(config)),
    };
    Ok(Report {
        text,
        complete: true,
    })
}

/// `convoy outbox dead`.
pub async fn dead(config: &Config, format: Format) -> Result<Report, OutboxError> {
    let access = Access::open(config)?;
    let letters = match &access {
        Access::File(store) => store.dead_letters()?,
        Access::Daemon { base } => {
            get_json::<DeadLettersBody>(config, base, "/outbox/dead")
                .await?
                .dead_letters
        }
    };
    let text = match format {
        Format::Json => json_line(&DeadLettersBody {
            count: letters.len(),
            dead_letters: letters,
        }),
        Format::Text => render_dead(&letters, &access.describe(config)),
    };
    Ok(Report {
        text,
        complete: true,
    })
}

/// `convoy outbox retry-dead`: incomplete when a requested id was not a dead letter.
pub async fn retry(
    config: &Config,
    selection: &Selection,
    now: DateTime<Utc>,
) -> Result<Report, OutboxError> {
    let access = Access::open(config)?;
    let answer = match &access {
        Access::File(store) => retry_dead(store, selection, now)?,
        Access::Daemon { base } => {
            let url = format!("{base}/outbox/retry-dead");
            let response = admin_request(config, awc::Client::default().post(&url))
                .send_json(&RetryDeadRequest::from_selection(selection))
                .await;
            read_json(config, &url, response).await?
        }
    };
    Ok(render_retry(&answer, &access.describe(config)))
}

/// Body of `GET /outbox/sla-outcomes?from=&to=`: the SLA outcomes decided in `[from, to)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlaOutcomesBody {
    pub count: usize,
    pub outcomes: Vec<convoy::analytics::model::StoredOutcome>,
}

/// The SLA outcomes decided in `[from, to)`, for `convoy snapshot`: from the file, or
/// through the daemon holding it.
pub async fn sla_outcomes(
    config: &Config,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<convoy::analytics::model::StoredOutcome>, OutboxError> {
    match Access::open(config)? {
        Access::File(store) => Ok(store.sla_outcomes(from, to)?),
        Access::Daemon { base } => {
            let query: String = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("from", &from.to_rfc3339_opts(SecondsFormat::Millis, true))
                .append_pair("to", &to.to_rfc3339_opts(SecondsFormat::Millis, true))
                .finish();
            let body: SlaOutcomesBody =
                get_json(config, &base, &format!("/outbox/sla-outcomes?{query}")).await?;
            Ok(body.outcomes)
        }
    }
}

/// Generous: the daemon's blocking pool may be busy committing.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The timeout, and `admin.token` as a bearer token when one is set.
fn admin_request(config: &Config, request: awc::ClientRequest) -> awc::ClientRequest {
    let request = request.timeout(ADMIN_TIMEOUT);
    match &config.admin.token {
        Some(token) => request.insert_header((
            actix_web::http::header::AUTHORIZATION,
            format!("Bearer {}", token.expose_secret()),
        )),
        None => request,
    }
}

async fn get_json<T: serde::de::DeserializeOwned>(
    config: &Config,
    base: &str,
    path: &str,
) -> Result<T, OutboxError> {
    let url = format!("{base}{path}");
    let response = admin_request(config, awc::Client::default().get(&url))
        .send()
        .await;
    read_json(config, &url, response).await
}

async fn read_json<T, S>(
    config: &Config,
    url: &str,
    response: Result<awc::ClientResponse<S>, awc::error::SendRequestError>,
) -> Result<T, OutboxError>
where
    T: serde::de::DeserializeOwned,
    S: futures_util::Stream<Item = Result<bytes::Bytes, actix_web::error::PayloadError>> + Unpin,
{
    let mut response = response.map_err(|error| OutboxError::AdminUnreachable {
        path: config.outbox.path.display().to_string(),
        url: url.to_owned(),
        detail: error.to_string(),
    })?;
    let answer = |detail: String| OutboxError::AdminAnswer {
        url: url.to_owned(),
        detail,
    };
    let body = response
        .body()
        .limit(64 * 1024 * 1024)
        .await
        .map_err(|error| answer(error.to_string()))?;
    if !response.status().is_success() {
        return Err(OutboxError::AdminRefused {
            url: url.to_owned(),
            status: response.status().as_u16(),
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    serde_json::from_slice(&body).map_err(|error| answer(error.to_string()))
}

fn json_line(value: &impl Serialize) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|error| {
        // Every value here is plain data; a failure would be a bug worth seeing.
        format!("{{\"error\": {:?}}}", error.to_string())
    });
    text.push('\n');
    text
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn oldest_age(status: &OutboxStatus, now: DateTime<Utc>) -> Option<Duration> {
    status
        .oldest_pending_at
        .map(|oldest| (now - oldest).to_std().unwrap_or(Duration::ZERO))
}

/// The text of `status`.
pub fn render_status(status: &OutboxStatus, now: DateTime<Utc>, source: &str) -> String {
    let oldest = match (status.oldest_pending_at, oldest_age(status, now)) {
        (Some(at), Some(age)) => format!(
            "{} ({} ago)",
            timestamp(at),
            humantime::format_duration(Duration::from_secs(age.as_secs()))
        ),
        _ => "-".to_owned(),
    };
    format!(
        "outbox: {source}\n\
         pending records:    {}\n\
         oldest pending:     {oldest}\n\
         dead letters:       {}\n\
         summaries pending:  {}\n\
         SLA books:          {}\n\
         owed re-reads:      {}\n",
        status.pending,
        status.dead_lettered,
        status.summaries_pending,
        status.sla_books,
        status.owed_rereads,
    )
}

/// The text of `dead`: one block per dead letter, oldest first.
pub fn render_dead(letters: &[DeadLetter], source: &str) -> String {
    let mut text = format!("outbox: {source}\n{} dead letter(s)\n", letters.len());
    for letter in letters {
        let record = &letter.record;
        let status = letter
            .failure
            .status
            .map_or_else(|| "no answer".to_owned(), |status| status.to_string());
        text.push_str(&format!(
            "\n{} (conversation {}, kind {})\n  reason:    {}\n  status:    {status}\n  \
             attempts:  {} (first {}, last {})\n  accepted:  {} (seq {})\n",
            record.id,
            record.conversation_id,
            record.kind,
            letter.failure.reason,
            letter.failure.attempts,
            timestamp(letter.failure.first_attempt_at),
            timestamp(letter.failure.last_attempt_at),
            timestamp(letter.accepted_at),
            letter.seq,
        ));
        if let Some(key) = &letter.failure.idempotency_key {
            text.push_str(&format!("  batch key: {key}\n"));
        }
        if let Some(body) = &letter.failure.body_excerpt {
            text.push_str(&format!("  body:      {body}\n"));
        }
    }
    text
}

/// The report of `retry-dead`.
pub fn render_retry(answer: &RetryDeadAnswer, source: &str) -> Report {
    let mut text = format!(
        "outbox: {source}\nmoved {} dead letter(s) back to the end of the outbox\n",
        answer.retried
    );
    for id in &answer.unknown {
        text.push_str(&format!("not a dead letter: {id}\n"));
    }
    Report {
        text,
        complete: answer.unknown.is_empty(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_request_names_ids_or_all_and_nothing_else() {
        let parse = |body: &str| {
            serde_json::from_str::<RetryDeadRequest>(body)
                .unwrap()
                .selection()
        };
        assert_eq!(parse(r#"{"all":true}"#), Ok(Selection::All));
        assert_eq!(
            parse(r#"{"ids":["r1","r2"]}"#),
            Ok(Selection::Ids(vec!["r1".into(), "r2".into()]))
        );
        assert_eq!(
            parse(r#"{"ids":["r1"],"all":true}"#),
            Err(RetryRequestError::Both)
        );
        assert_eq!(parse(r#"{}"#), Err(RetryRequestError::Neither));
        assert_eq!(
            parse(r#"{"ids":[]}"#),
            Err(RetryRequestError::Neither),
            "an empty list is not read as all"
        );
        assert_eq!(parse(r#"{"all":false}"#), Err(RetryRequestError::Neither));
        for selection in [Selection::All, Selection::Ids(vec!["r1".into()])] {
            assert_eq!(
                RetryDeadRequest::from_selection(&selection).selection(),
                Ok(selection)
            );
        }
    }

    #[test]
    fn a_wildcard_admin_address_is_reached_on_loopback() {
        assert_eq!(
            admin_base("0.0.0.0:9464".parse().unwrap()),
            "http://127.0.0.1:9464"
        );
        assert_eq!(
            admin_base("[::]:9464".parse().unwrap()),
            "http://[::1]:9464"
        );
        assert_eq!(
            admin_base("10.1.2.3:80".parse().unwrap()),
            "http://10.1.2.3:80"
        );
    }

    #[test]
    fn status_text_names_every_count_and_the_oldest_age() {
        let now = DateTime::from_timestamp(1_700_000_100, 0).unwrap();
        let status = OutboxStatus {
            pending: 12,
            dead_lettered: 1,
            oldest_pending_at: DateTime::from_timestamp(1_700_000_000, 0),
            summaries_pending: 3,
            sla_books: 4,
            owed_rereads: 5,
        };
        let text = render_status(&status, now, "data/outbox.redb");
        for expected in [
            "pending records:    12",
            "(1m 40s ago)",
            "dead letters:       1",
            "summaries pending:  3",
            "SLA books:          4",
            "owed re-reads:      5",
        ] {
            assert!(text.contains(expected), "{expected} in\n{text}");
        }
    }

    #[test]
    fn an_unknown_id_makes_a_retry_incomplete() {
        let answer = RetryDeadAnswer {
            retried: 1,
            unknown: vec!["typo".into()],
        };
        let report = render_retry(&answer, "f");
        assert!(!report.complete);
        assert!(report.text.contains("not a dead letter: typo"));
    }
}
