//! `validate`: the merged configuration tree in, a total [`Config`] or every problem out.
//!
//! The walk never stops at the first mistake: an operator fixing a config file should see
//! all of them in one run. Values of secret keys are redacted in every problem, and
//! unknown keys are reported by name only (a mistyped `client_secrt` still holds a secret).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::http_url::{parse_http_url, UrlError};
use super::keys::{closest_key, env_var_name, is_secret_key, is_section, is_table, key_spec};
use super::{
    defaults, AdminConfig, AnalyticsConfig, AnalyticsSchedule, ClientSecret, ClusterConfig,
    ClusterRole, Config, ConversationsConfig, CrmAuth, CrmConfig, GenesysConfig, GenesysEndpoints,
    LogConfig, LogFormat, OutboxConfig, Region, Secret, ShutdownConfig, SlaConfig, SlaQueueConfig,
    StreamConfig, REDACTED,
};
use crate::duration::{format_duration, parse_duration};
use crate::sla::{
    parse_date, parse_time_zone, Calendar, ClockKind, OpeningRange, Share, ThresholdOverrides,
};

/// The days of a calendar's week, Monday first (the order of [`Calendar::new`]'s week).
const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// A notification channel holds at most 1 000 topics (API.md §3.4); each followed id
/// takes two.
const MAX_TOPICS: usize = 1_000;
/// A channel lives 24 h; rotation must start before that.
const CHANNEL_LIFETIME: Duration = Duration::from_secs(24 * 3_600);
const ONE_SECOND: Duration = Duration::from_secs(1);
const ONE_MINUTE: Duration = Duration::from_secs(60);
const ONE_DAY: Duration = Duration::from_secs(24 * 3_600);
const THIRTY_DAYS: Duration = Duration::from_secs(30 * 24 * 3_600);
const ONE_YEAR: Duration = Duration::from_secs(366 * 24 * 3_600);
/// Longest value text quoted in a problem; a pasted certificate need not fill the terminal.
const MAX_SHOWN_VALUE: usize = 120;

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The dotted key, e.g. `genesys.region`.
    pub key: String,
    /// The offending value as written (JSON syntax), `***` for secret keys, `None` when
    /// the key is missing or unknown.
    pub value: Option<String>,
    /// Where the value came from, e.g. `file /etc/convoy.toml`, `env CONVOY_SLA__READ`,
    /// `default config`.
    pub source: Option<String>,
    /// What is wrong and, where possible, what would be right.
    pub reason: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key)?;
        if let Some(value) = &self.value {
            write!(f, " = {value}")?;
        }
        if let Some(source) = &self.source {
            write!(f, " (from {source})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl std::error::Error for ConfigProblem {}

/// Every problem found in one validation, in the order the keys were checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_problems(.problems))]
pub struct ConfigErrors {
    problems: Vec<ConfigProblem>,
}

fn render_problems(problems: &[ConfigProblem]) -> String {
    let noun = if problems.len() == 1 {
        "problem"
    } else {
        "problems"
    };
    let mut out = format!("{} configuration {noun}:", problems.len());
    for problem in problems {
        out.push_str("\n  - ");
        out.push_str(&problem.to_string());
    }
    out
}

impl ConfigErrors {
    pub fn new(problems: Vec<ConfigProblem>) -> Self {
        ConfigErrors { problems }
    }

    pub fn problems(&self) -> &[ConfigProblem] {
        &self.problems
    }

    pub fn into_problems(self) -> Vec<ConfigProblem> {
        self.problems
    }

    /// Adds a problem found outside the pure walk (an unreadable secret file, a log
    /// filter the tracing crate refuses).
    pub fn push(&mut self, problem: ConfigProblem) {
        self.problems.push(problem);
    }

    pub fn len(&self) -> usize {
        self.problems.len()
    }

    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the merged configuration tree and builds the [`Config`].
///
/// `tree` is the merge of all layers (a JSON object of sections). `origin` names where a
/// key's value came from (`"env CONVOY_SLA__READ"`); it is only used to enrich problems.
/// Keys that have a default may be absent; the built-in defaults in [`defaults`] apply.
pub fn validate(
    tree: &Value,
    origin: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let mut check = Checker {
        root: tree,
        origin,
        problems: Vec::new(),
    };
    check.shape();

    let endpoints = check.endpoints();
    let client_id = check.client_id();
    let client_secret = check.client_secret();
    let requests_per_minute = check
        .integer("genesys.requests_per_minute", 1, 100_000)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(defaults::REQUESTS_PER_MINUTE);
    let login_unreachable_exit_after = check.duration_or(
        "genesys.login_unreachable_exit_after",
        ONE_SECOND,
        Duration::from_secs(24 * 3_600),
        defaults::LOGIN_UNREACHABLE_EXIT_AFTER,
    );
    let conditional_writes = match check.text("genesys.if_match") {
        None | Some("off") => false,
        Some("etag") => true,
        Some(other) => {
            let reason = format!("expected \"off\" or \"etag\", found \"{other}\"");
            check.report("genesys.if_match", reason);
            false
        }
    };
    let write_back = match check.text("genesys.write_back") {
        None | Some("lifecycle") => true,
        Some("off") => false,
        Some(other) => {
            let reason = format!("expected \"lifecycle\" or \"off\", found \"{other}\"");
            check.report("genesys.write_back", reason);
            true
        }
    };
    let queues = check.id_list("genesys.queues");
    let users = check.id_list("genesys.users");
    check.followed(queues.as_deref(), users.as_deref());

    let sla = check.sla();
    let crm = check.crm();
    let outbox = OutboxConfig {
        path: check.path_or("outbox.path", defaults::OUTBOX_PATH),
        max_records: check
            .integer("outbox.max_records", 1_000, 1_000_000_000)
            .unwrap_or(defaults::OUTBOX_MAX_RECORDS),
    };
    let analytics = AnalyticsConfig {
        schedule: check.analytics_schedule(),
        output_dir: check.path_or("analytics.output_dir", defaults::ANALYTICS_OUTPUT_DIR),
        keep_outcomes: check
            .duration("analytics.keep_outcomes", ONE_DAY, ONE_YEAR)
            .unwrap_or(defaults::ANALYTICS_KEEP_OUTCOMES),
    };
    let admin = AdminConfig {
        listen: check.admin_listen(),
        token: check.secret("admin.token"),
    };
    let log = LogConfig {
        format: check.log_format(),
        filter: check
            .text("log.filter")
            .map_or_else(|| defaults::LOG_FILTER.to_owned(), str::to_owned),
    };
    let stream = check.stream();
    let conversations = ConversationsConfig {
        max_live: check
            .integer("conversations.max_live", 1, 10_000_000)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(defaults::CONVERSATIONS_MAX_LIVE),
        idle_timeout: check.duration_or(
            "conversations.idle_timeout",
            ONE_SECOND,
            THIRTY_DAYS,
            defaults::CONVERSATIONS_IDLE_TIMEOUT,
        ),
    };
    let shutdown = ShutdownConfig {
        deadline: check.duration_or(
            "shutdown.deadline",
            ONE_SECOND,
            Duration::from_secs(3_600),
            defaults::SHUTDOWN_DEADLINE,
        ),
    };
    let cluster = check.cluster(stream.rotate_before_expiry);

    // Every required value that is `None` here has already been reported.
    let (Some(endpoints), Some(client_id), Some(client_secret), Some(queues), Some(users)) =
        (endpoints, client_id, client_secret, queues, users)
    else {
        return Err(ConfigErrors::new(check.problems));
    };
    if !check.problems.is_empty() {
        return Err(ConfigErrors::new(check.problems));
    }
    Ok(Config {
        genesys: GenesysConfig {
            endpoints,
            client_id,
            client_secret,
            requests_per_minute,
            conditional_writes,
            write_back,
            login_unreachable_exit_after,
            queues,
            users,
        },
        sla,
        crm,
        outbox,
        analytics,
        admin,
        log,
        stream,
        conversations,
        shutdown,
        cluster,
    })
}

/// The walk's state: the tree, the origin lookup, and the problems so far.
struct Checker<'t, 'o> {
    root: &'t Value,
    origin: &'o dyn Fn(&str) -> Option<String>,
    problems: Vec<ConfigProblem>,
}

/// How a URL key is used: a bare origin (Convoy appends the API paths) or a full endpoint.
#[derive(Clone, Copy, PartialEq, Eq)]
enum UrlUse {
    Origin,
    Endpoint,
}

/// The CRM credential keys and the `crm.auth` value each belongs to.
const CRM_CREDENTIALS: [(&str, &str); 4] = [
    ("crm.token", "bearer"),
    ("crm.username", "basic"),
    ("crm.password", "basic"),
    ("crm.hmac_secret", "hmac"),
];

impl<'t> Checker<'t, '_> {
    // ---- lookups and reporting -------------------------------------------------------

    fn lookup(&self, key: &str) -> Option<&'t Value> {
        let mut node = self.root;
        for part in key.split('.') {
            node = node.as_object()?.get(part)?;
        }
        Some(node)
    }

    fn present(&self, key: &str) -> bool {
        self.lookup(key).is_some()
    }

    /// Reports a problem with the value at `key`, quoting it (redacted if secret).
    fn report(&mut self, key: &str, reason: impl Into<String>) {
        let value = self.lookup(key).map(|value| shown_value(key, value));
        self.report_with(key, value, reason);
    }

    fn report_with(&mut self, key: &str, value: Option<String>, reason: impl Into<String>) {
        let source = (self.origin)(key);
        self.problems.push(ConfigProblem {
            key: key.to_owned(),
            value,
            source,
            reason: reason.into(),
        });
    }

    /// Reports a missing key, unless its section is not a table (already reported: one
    /// mistake, one line).
    fn report_missing(&mut self, key: &str, reason: impl Into<String>) {
        let section = key.split('.').next().unwrap_or(key);
        if self.lookup(section).is_some_and(|value| !value.is_object()) {
            return;
        }
        self.report_with(key, None, reason);
    }

    fn report_unknown(&mut self, key: &str) {
        let mut reason = "unknown key".to_owned();
        if let Some(known) = closest_key(key) {
            reason.push_str(&format!("; did you mean {known}"));
            let from_env = (self.origin)(key).is_some_and(|source| source.starts_with("env"));
            if from_env && key_spec(&known).is_some() {
                reason.push_str(&format!(" ({})", env_var_name(&known)));
            }
            reason.push('?');
        }
        // Unknown keys are reported by name only: the value might be a mistyped secret.
        self.report_with(key, None, reason);
    }

    // ---- shape -------------------------------------------------------------------------

    /// Top level must be a table of known sections, each a table of known keys; tables of
    /// named entries (`sla.queues.<id>`) are walked down to their keys.
    fn shape(&mut self) {
        let Some(root) = self.root.as_object() else {
            let found = kind_of(self.root);
            self.report_with(
                "(root)",
                None,
                format!("expected a table of settings, found {found}"),
            );
            return;
        };
        for (section, value) in root {
            if !is_section(section) {
                self.report_unknown(section);
                continue;
            }
            self.shape_table(section, value);
        }
    }

    fn shape_table(&mut self, key: &str, value: &Value) {
        let Some(table) = value.as_object() else {
            self.report(
                key,
                format!("expected a table of settings, found {}", kind_of(value)),
            );
            return;
        };
        for (name, child) in table {
            let child_key = format!("{key}.{name}");
            if key_spec(&child_key).is_some() {
                continue;
            }
            if is_table(&child_key) {
                self.shape_table(&child_key, child);
            } else {
                self.report_unknown(&child_key);
            }
        }
    }

    // ---- typed getters: `None` when absent or invalid (invalid is reported) -----------

    fn text(&mut self, key: &str) -> Option<&'t str> {
        let value = self.lookup(key)?;
        let Some(text) = value.as_str() else {
            self.report(key, format!("expected a string, found {}", kind_of(value)));
            return None;
        };
        if text.trim().is_empty() {
            self.report(key, "must not be empty");
            return None;
        }
        Some(text)
    }

    fn secret(&mut self, key: &str) -> Option<Secret<String>> {
        self.text(key).map(|text| Secret::new(text.to_owned()))
    }

    fn integer(&mut self, key: &str, min: u64, max: u64) -> Option<u64> {
        let value = self.lookup(key)?;
        let Some(number) = value.as_number() else {
            self.report(
                key,
                format!("expected an integer, found {}", kind_of(value)),
            );
            return None;
        };
        let in_range = number.as_u64().filter(|n| (min..=max).contains(n));
        if in_range.is_none() {
            let reason = if number.is_f64() {
                format!("expected an integer between {min} and {max}")
            } else {
                format!("must be between {min} and {max}")
            };
            self.report(key, reason);
        }
        in_range
    }

    fn duration(&mut self, key: &str, min: Duration, max: Duration) -> Option<Duration> {
        let text = self.text(key)?;
        match parse_duration(text) {
            Ok(duration) if duration < min => {
                self.report(key, format!("must be at least {}", format_duration(min)));
                None
            }
            Ok(duration) if duration > max => {
                self.report(key, format!("must be at most {}", format_duration(max)));
                None
            }
            Ok(duration) => Some(duration),
            Err(error) => {
                self.report(key, error.to_string());
                None
            }
        }
    }

    fn duration_or(
        &mut self,
        key: &str,
        min: Duration,
        max: Duration,
        default: Duration,
    ) -> Duration {
        self.duration(key, min, max).unwrap_or(default)
    }

    fn path_or(&mut self, key: &str, default: &str) -> PathBuf {
        PathBuf::from(self.text(key).unwrap_or(default))
    }

    fn boolean(&mut self, key: &str) -> Option<bool> {
        let value = self.lookup(key)?;
        let flag = value.as_bool();
        if flag.is_none() {
            self.report(
                key,
                format!("expected true or false, found {}", kind_of(value)),
            );
        }
        flag
    }

    /// An http(s) URL. Plain `http://` is refused unless the host is loopback or
    /// `allow_key` is `true` (its value passed in as `allowed`): the client secret, bearer
    /// tokens and CRM credentials would otherwise cross the network in clear text.
    fn url(
        &mut self,
        key: &str,
        usage: UrlUse,
        (allow_key, allowed): (&str, bool),
    ) -> Option<String> {
        let text = self.text(key)?.trim();
        let url = match parse_http_url(text) {
            Ok(url) => url,
            Err(UrlError::HasCredentials) => {
                // Never echo the credentials this problem is about.
                self.report_with(
                    key,
                    Some(REDACTED.to_owned()),
                    UrlError::HasCredentials.reason(),
                );
                return None;
            }
            Err(error) => {
                self.report(
                    key,
                    format!("{}; expected e.g. https://host[:port]", error.reason()),
                );
                return None;
            }
        };
        if usage == UrlUse::Origin && !url.is_origin() {
            self.report(
                key,
                "give only scheme://host[:port]; Convoy appends the /api/v2 and /oauth paths itself",
            );
            return None;
        }
        if url.plain_http && !url.is_loopback() && !allowed {
            let carried = if key.starts_with("crm.") {
                "the CRM credentials and every record"
            } else {
                "the client secret and the bearer tokens"
            };
            self.report(
                key,
                format!(
                    "plain http:// to a host that is not loopback would send {carried} in clear \
                     text; use https://, or set {allow_key} = true if the network in between is \
                     trusted (e.g. a TLS-terminating proxy next to Convoy)"
                ),
            );
            return None;
        }
        Some(text.trim_end_matches('/').to_owned())
    }

    /// A list of UUIDs: a list, or one string of comma-separated ids (how the
    /// environment spells a list when not written `[a,b]`). Absent is an empty list.
    fn id_list(&mut self, key: &str) -> Option<Vec<String>> {
        self.text_list_of(key, "ids", "not UUIDs", is_uuid)
    }

    /// A list of non-empty texts, spelled like an id list (`noun` names the items in
    /// problems).
    fn text_list(&mut self, key: &str, noun: &str) -> Option<Vec<String>> {
        self.text_list_of(key, noun, "expected non-empty strings, found", |_| true)
    }

    /// A list of texts that `accept` takes (`rejected` introduces the others in the
    /// problem), spelled as a list or, from the environment, one comma-separated string;
    /// duplicates removed, order kept. Absent is an empty list.
    fn text_list_of(
        &mut self,
        key: &str,
        noun: &str,
        rejected: &str,
        accept: fn(&str) -> bool,
    ) -> Option<Vec<String>> {
        let Some(value) = self.lookup(key) else {
            return Some(Vec::new());
        };
        // Only the environment and flags spell a list as text; in a TOML file a string is
        // a mistake (`queues = "a,b"` meant `["a", "b"]`) and so is one item holding many.
        let spelled_as_text = (self.origin)(key)
            .is_some_and(|source| source.starts_with("env") || source.starts_with("flag"));
        let items: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            Value::String(_) if spelled_as_text => vec![value],
            Value::String(_) => {
                self.report(
                    key,
                    format!("expected a list of {noun}, found a string; write [\"a\", \"b\"]"),
                );
                return None;
            }
            other => {
                self.report(
                    key,
                    format!("expected a list of {noun}, found {}", kind_of(other)),
                );
                return None;
            }
        };
        let mut texts: Vec<String> = Vec::new();
        let mut bad: Vec<String> = Vec::new();
        for item in items {
            let parts: Vec<&str> = match item.as_str() {
                Some(text) if !spelled_as_text => vec![text.trim()],
                Some(text) => text
                    .trim_matches(|c| c == '[' || c == ']')
                    .split(',')
                    .map(|part| part.trim().trim_matches('"'))
                    .filter(|part| !part.is_empty())
                    .collect(),
                None => {
                    bad.push(item.to_string());
                    continue;
                }
            };
            for part in parts {
                if part.is_empty() || !accept(part) {
                    bad.push(format!("\"{part}\""));
                } else if !texts.iter().any(|known| known == part) {
                    texts.push(part.to_owned());
                }
            }
        }
        if !bad.is_empty() {
            self.report(key, format!("{rejected}: {}", bad.join(", ")));
            return None;
        }
        Some(texts)
    }

    // ---- sections ----------------------------------------------------------------------

    fn endpoints(&mut self) -> Option<GenesysEndpoints> {
        let region_given = self.present("genesys.region");
        let api_given = self.present("genesys.api_base");
        let login_given = self.present("genesys.login_base");
        let region = self.region();
        const ALLOW: &str = "genesys.allow_insecure_http";
        let allow = (ALLOW, self.boolean(ALLOW).unwrap_or(false));
        let api_base = self.url("genesys.api_base", UrlUse::Origin, allow);
        let login_base = self.url("genesys.login_base", UrlUse::Origin, allow);

        if region_given && (api_given || login_given) {
            self.report(
                "genesys.region",
                "conflicts with genesys.api_base/genesys.login_base: give either a region or both base URLs",
            );
            return None;
        }
        if region_given {
            return region.map(|region| GenesysEndpoints {
                region: Some(region),
                api_base: region.api_base(),
                login_base: region.login_base(),
            });
        }
        match (api_given, login_given) {
            (false, false) => {
                self.report_missing(
                    "genesys.region",
                    "required: a region domain such as mypurecloud.com \
                     (or both genesys.api_base and genesys.login_base)",
                );
                None
            }
            (true, false) => {
                self.report_missing(
                    "genesys.login_base",
                    "required together with genesys.api_base",
                );
                None
            }
            (false, true) => {
                self.report_missing(
                    "genesys.api_base",
                    "required together with genesys.login_base",
                );
                None
            }
            (true, true) => Some(GenesysEndpoints {
                region: None,
                api_base: api_base?,
                login_base: login_base?,
            }),
        }
    }

    fn region(&mut self) -> Option<Region> {
        let text = self.text("genesys.region")?;
        if let Some(region) = Region::from_domain(text) {
            return Some(region);
        }
        let mut reason = "unknown region".to_owned();
        if let Some(likely) = Region::suggest(text) {
            reason.push_str(&format!(" (did you mean {}?)", likely.domain()));
        }
        reason.push_str(&format!("; known regions: {}", Region::known_domains()));
        self.report("genesys.region", reason);
        None
    }

    fn client_id(&mut self) -> Option<String> {
        if !self.present("genesys.client_id") {
            self.report_missing(
                "genesys.client_id",
                "required: the OAuth client id (a UUID)",
            );
            return None;
        }
        let text = self.text("genesys.client_id")?.trim();
        if !is_uuid(text) {
            self.report("genesys.client_id", "expected a UUID (the OAuth client id)");
            return None;
        }
        Some(text.to_owned())
    }

    fn client_secret(&mut self) -> Option<ClientSecret> {
        let inline_given = self.present("genesys.client_secret");
        let file_given = self.present("genesys.client_secret_file");
        let inline = self.secret("genesys.client_secret");
        let file = self.text("genesys.client_secret_file");
        match (inline_given, file_given) {
            (true, true) => {
                self.report(
                    "genesys.client_secret",
                    "conflicts with genesys.client_secret_file: give exactly one",
                );
                None
            }
            (false, false) => {
                self.report_missing(
                    "genesys.client_secret",
                    "required: set genesys.client_secret or genesys.client_secret_file (exactly one)",
                );
                None
            }
            (true, false) => inline.map(ClientSecret::Value),
            (false, true) => file.map(|path| ClientSecret::File(PathBuf::from(path))),
        }
    }

    fn followed(&mut self, queues: Option<&[String]>, users: Option<&[String]>) {
        let (Some(queues), Some(users)) = (queues, users) else {
            return;
        };
        if queues.is_empty() && users.is_empty() {
            self.report_missing(
                "genesys.queues",
                "follow at least one queue or user: set genesys.queues and/or genesys.users",
            );
        }
        let topics = 2 * (queues.len() + users.len());
        if topics > MAX_TOPICS {
            self.report(
                "genesys.queues",
                format!(
                    "{} queues and users give {topics} topics; one notification channel holds at most {MAX_TOPICS} ({} ids)",
                    queues.len() + users.len(),
                    MAX_TOPICS / 2
                ),
            );
        }
    }

    fn sla(&mut self) -> SlaConfig {
        let threshold = |check: &mut Self, kind: ClockKind, default| {
            let key = format!("sla.{}", kind.as_str());
            check.duration_or(&key, ONE_SECOND, THIRTY_DAYS, default)
        };
        let answer = threshold(self, ClockKind::Answer, defaults::SLA_ANSWER);
        let first_response =
            threshold(self, ClockKind::FirstResponse, defaults::SLA_FIRST_RESPONSE);
        let next_response = threshold(self, ClockKind::NextResponse, defaults::SLA_NEXT_RESPONSE);
        let delivery = threshold(self, ClockKind::Delivery, defaults::SLA_DELIVERY);
        let read = threshold(self, ClockKind::Read, defaults::SLA_READ);
        let warn_at = self.share("sla.warn_at").unwrap_or_default();
        let no_read_receipt = match self.lookup("sla.no_read_receipt") {
            None => SlaConfig::default().no_read_receipt,
            Some(_) => self
                .text_list("sla.no_read_receipt", "messenger types")
                .unwrap_or_default(),
        };
        let tick = self.duration_or(
            "sla.tick",
            Duration::from_millis(10),
            ONE_MINUTE,
            defaults::SLA_TICK,
        );
        let calendars = self.calendars();
        let queues = self.sla_queues();
        let messenger_types = self.sla_messenger_types();
        SlaConfig {
            answer,
            first_response,
            next_response,
            delivery,
            read,
            warn_at,
            no_read_receipt,
            tick,
            queues,
            messenger_types,
            calendars,
        }
    }

    /// The names of a table of named entries (`sla.queues`), in order; a non-table is
    /// reported by [`Checker::shape`].
    fn entry_names(&self, key: &str) -> Vec<String> {
        self.lookup(key)
            .and_then(Value::as_object)
            .map(|table| table.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// `sla.warn_at`: a share of the threshold, `0.8` or `"80%"` (or `"0.8"` from the
    /// environment), strictly between 0 and 1.
    fn share(&mut self, key: &str) -> Option<Share> {
        let value = self.lookup(key)?;
        let fraction = match value {
            Value::Number(number) => number.as_f64(),
            Value::String(text) => {
                let text = text.trim();
                match text.strip_suffix('%') {
                    Some(percent) => percent.trim().parse::<f64>().ok().map(|p| p / 100.0),
                    None => text.parse::<f64>().ok(),
                }
            }
            _ => None,
        };
        let share = fraction.and_then(Share::from_fraction);
        if share.is_none() {
            self.report(
                key,
                "expected a share of the threshold strictly between 0 and 1, such as 0.8 or \"80%\"",
            );
        }
        share
    }

    /// Threshold overrides under `prefix` (`sla.queues.<id>`) for `kinds`.
    fn overrides(&mut self, prefix: &str, kinds: &[ClockKind]) -> ThresholdOverrides {
        let mut overrides = ThresholdOverrides::default();
        for kind in kinds {
            let key = format!("{prefix}.{}", kind.as_str());
            if let Some(threshold) = self.duration(&key, ONE_SECOND, THIRTY_DAYS) {
                overrides.set(*kind, threshold);
            }
        }
        overrides
    }

    fn sla_queues(&mut self) -> BTreeMap<String, SlaQueueConfig> {
        let calendar_names = self.entry_names("sla.calendars");
        let mut queues = BTreeMap::new();
        for id in self.entry_names("sla.queues") {
            let prefix = format!("sla.queues.{id}");
            if !is_uuid(&id) {
                self.report_with(
                    &prefix,
                    None,
                    "the name of a queue table must be the queue's id (a UUID)",
                );
                continue;
            }
            let thresholds = self.overrides(&prefix, &ClockKind::ALL);
            let calendar_key = format!("{prefix}.calendar");
            let calendar = self.text(&calendar_key).map(str::trim).and_then(|name| {
                if calendar_names.iter().any(|known| known == name) {
                    return Some(name.to_owned());
                }
                let known = if calendar_names.is_empty() {
                    "none is defined".to_owned()
                } else {
                    format!("defined: {}", calendar_names.join(", "))
                };
                self.report(
                    &calendar_key,
                    format!("no calendar of that name under sla.calendars ({known})"),
                );
                None
            });
            queues.insert(
                id,
                SlaQueueConfig {
                    thresholds,
                    calendar,
                },
            );
        }
        queues
    }

    fn sla_messenger_types(&mut self) -> BTreeMap<String, ThresholdOverrides> {
        let mut types = BTreeMap::new();
        for name in self.entry_names("sla.messenger_types") {
            let prefix = format!("sla.messenger_types.{name}");
            let kinds = [
                ClockKind::FirstResponse,
                ClockKind::NextResponse,
                ClockKind::Delivery,
                ClockKind::Read,
            ];
            let overrides = self.overrides(&prefix, &kinds);
            types.insert(name, overrides);
        }
        types
    }

    fn calendars(&mut self) -> BTreeMap<String, Calendar> {
        let mut calendars = BTreeMap::new();
        for name in self.entry_names("sla.calendars") {
            if let Some(calendar) = self.calendar(&name) {
                calendars.insert(name, calendar);
            }
        }
        calendars
    }

    fn calendar(&mut self, name: &str) -> Option<Calendar> {
        let prefix = format!("sla.calendars.{name}");
        let zone_key = format!("{prefix}.time_zone");
        if !self.present(&zone_key) {
            self.report_missing(
                &zone_key,
                "required: the calendar's IANA time zone, such as \"Europe/Berlin\"",
            );
        }
        let time_zone = self
            .text(&zone_key)
            .and_then(|text| match parse_time_zone(text) {
                Ok(zone) => Some(zone),
                Err(error) => {
                    self.report(&zone_key, error.to_string());
                    None
                }
            });
        let mut valid = true;
        let mut week: [Vec<OpeningRange>; 7] = Default::default();
        for (day, ranges) in WEEKDAYS.iter().zip(week.iter_mut()) {
            let key = format!("{prefix}.{day}");
            let Some(texts) = self.text_list(&key, "opening ranges") else {
                valid = false;
                continue;
            };
            let (good, bad): (Vec<_>, Vec<_>) = texts
                .iter()
                .map(|text| OpeningRange::parse(text))
                .partition(Result::is_ok);
            ranges.extend(good.into_iter().flatten());
            if let Some(Err(error)) = bad.into_iter().next() {
                self.report(&key, error.to_string());
                valid = false;
            }
        }
        let closed_key = format!("{prefix}.closed");
        let mut closed = BTreeSet::new();
        match self.text_list(&closed_key, "dates") {
            Some(texts) => {
                for text in texts {
                    match parse_date(&text) {
                        Ok(date) => {
                            closed.insert(date);
                        }
                        Err(error) => {
                            self.report(&closed_key, error.to_string());
                            valid = false;
                        }
                    }
                }
            }
            None => valid = false,
        }
        let time_zone = time_zone?;
        if !valid {
            return None;
        }
        match Calendar::new(time_zone, week, closed) {
            Ok(calendar) => Some(calendar),
            Err(error) => {
                self.report_with(
                    &prefix,
                    None,
                    format!("{error}; give at least one day, e.g. monday = [\"09:00-18:00\"]"),
                );
                None
            }
        }
    }

    fn crm(&mut self) -> Option<CrmConfig> {
        let endpoint_given = self.present("crm.endpoint");
        const ALLOW: &str = "crm.allow_insecure_http";
        let allow = (ALLOW, self.boolean(ALLOW).unwrap_or(false));
        let endpoint = self.url("crm.endpoint", UrlUse::Endpoint, allow);
        let auth_name = self.text("crm.auth").unwrap_or("none");
        let token = self.secret("crm.token");
        let username = self.text("crm.username");
        let password = self.secret("crm.password");
        let hmac_secret = self.secret("crm.hmac_secret");

        let known_auth = matches!(auth_name, "none" | "bearer" | "basic" | "hmac");
        if !known_auth {
            self.report("crm.auth", "expected one of none, bearer, basic, hmac");
        } else {
            // Credentials are required exactly when their auth is chosen: a token left
            // behind after switching to hmac is a mistake worth a line.
            for (key, owner) in CRM_CREDENTIALS {
                match (owner == auth_name, self.present(key)) {
                    (true, false) => {
                        self.report_missing(key, format!("required when crm.auth = \"{owner}\""))
                    }
                    (false, true) => self.report(
                        key,
                        format!(
                            "only used when crm.auth = \"{owner}\", but crm.auth is \"{auth_name}\""
                        ),
                    ),
                    _ => {}
                }
            }
            if auth_name != "none" && !endpoint_given {
                self.report_missing(
                    "crm.endpoint",
                    format!("required when crm.auth = \"{auth_name}\" (without an endpoint CRM sync is off)"),
                );
            }
        }
        let batch_size = self
            .integer("crm.batch_size", 1, 1_000)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(defaults::CRM_BATCH_SIZE);
        let flush_interval = self.duration_or(
            "crm.flush_interval",
            Duration::from_millis(10),
            ONE_DAY,
            defaults::CRM_FLUSH_INTERVAL,
        );
        let max_batch_bytes = self
            .integer("crm.max_batch_bytes", 1_024, 64 * 1024 * 1024)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(defaults::CRM_MAX_BATCH_BYTES);
        let max_in_flight = self
            .integer("crm.max_in_flight", 1, 256)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(defaults::CRM_MAX_IN_FLIGHT);
        let request_timeout = self.duration_or(
            "crm.request_timeout",
            Duration::from_millis(100),
            Duration::from_secs(10 * 60),
            defaults::CRM_REQUEST_TIMEOUT,
        );
        let retry_max_delay = self.duration_or(
            "crm.retry_max_delay",
            ONE_SECOND,
            ONE_DAY,
            defaults::CRM_RETRY_MAX_DELAY,
        );

        let auth = match auth_name {
            "bearer" => CrmAuth::Bearer { token: token? },
            "basic" => CrmAuth::Basic {
                username: username?.to_owned(),
                password: password?,
            },
            "hmac" => CrmAuth::Hmac {
                secret: hmac_secret?,
            },
            _ => CrmAuth::None,
        };
        Some(CrmConfig {
            endpoint: endpoint?,
            auth,
            batch_size,
            flush_interval,
            max_batch_bytes,
            max_in_flight,
            request_timeout,
            retry_max_delay,
        })
    }

    fn analytics_schedule(&mut self) -> AnalyticsSchedule {
        if self.lookup("analytics.schedule").and_then(Value::as_str) == Some("off") {
            return AnalyticsSchedule::Off;
        }
        self.duration("analytics.schedule", ONE_MINUTE, THIRTY_DAYS)
            .map_or(
                AnalyticsSchedule::Every(defaults::ANALYTICS_EVERY),
                AnalyticsSchedule::Every,
            )
    }

    fn admin_listen(&mut self) -> SocketAddr {
        let Some(text) = self.text("admin.listen") else {
            return defaults::ADMIN_LISTEN;
        };
        match text.trim().parse() {
            Ok(address) => address,
            Err(_) => {
                self.report(
                    "admin.listen",
                    "expected an IP address and port such as 127.0.0.1:9464 or [::1]:9464",
                );
                defaults::ADMIN_LISTEN
            }
        }
    }

    fn log_format(&mut self) -> LogFormat {
        let Some(text) = self.text("log.format") else {
            return LogFormat::Text;
        };
        LogFormat::parse(text.trim()).unwrap_or_else(|| {
            self.report("log.format", "expected \"text\" or \"json\"");
            LogFormat::Text
        })
    }

    fn stream(&mut self) -> StreamConfig {
        let max_frame_bytes = self
            .integer("stream.max_frame_bytes", 4 * 1024, 64 * 1024 * 1024)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(defaults::STREAM_MAX_FRAME_BYTES);
        let ping_after_idle = self.duration_or(
            "stream.ping_after_idle",
            ONE_SECOND,
            Duration::from_secs(3_600),
            defaults::STREAM_PING_AFTER_IDLE,
        );
        let reconnect_after_silence = self.duration_or(
            "stream.reconnect_after_silence",
            ONE_SECOND,
            Duration::from_secs(3_600),
            defaults::STREAM_RECONNECT_AFTER_SILENCE,
        );
        if reconnect_after_silence <= ping_after_idle {
            // Otherwise the watchdog gives up before the ping could be answered.
            self.report(
                "stream.reconnect_after_silence",
                format!(
                    "must be longer than stream.ping_after_idle ({})",
                    format_duration(ping_after_idle)
                ),
            );
        }
        // Production wants minutes; the emulator's short test channels want seconds.
        let rotate_before_expiry = self.duration_or(
            "stream.rotate_before_expiry",
            ONE_SECOND,
            CHANNEL_LIFETIME - ONE_MINUTE,
            defaults::STREAM_ROTATE_BEFORE_EXPIRY,
        );
        StreamConfig {
            max_frame_bytes,
            ping_after_idle,
            reconnect_after_silence,
            rotate_before_expiry,
        }
    }

    /// `cluster.*`. Every key is checked even when the cluster is off, so a typo in a
    /// prepared config shows before the day it is switched on.
    fn cluster(&mut self, rotate_before_expiry: Duration) -> Option<ClusterConfig> {
        let enabled = self.boolean("cluster.enabled").unwrap_or(false);
        let nats_url = self.text("cluster.nats_url").and_then(|url| {
            let problem = nats_url_problem(url);
            if let Some(reason) = problem {
                self.report("cluster.nats_url", reason);
                return None;
            }
            Some(url.to_owned())
        });
        let partitions = self
            .integer("cluster.partitions", 1, 4_096)
            .and_then(|n| u16::try_from(n).ok())
            .unwrap_or(defaults::CLUSTER_PARTITIONS);
        let role = match self.text("cluster.role") {
            None => ClusterRole::Both,
            Some(text) => ClusterRole::parse(text).unwrap_or_else(|| {
                let reason =
                    format!("expected \"ingest\", \"worker\" or \"both\", found \"{text}\"");
                self.report("cluster.role", reason);
                ClusterRole::Both
            }),
        };
        let lease_ttl = self.duration_or(
            "cluster.lease_ttl",
            Duration::from_secs(3),
            Duration::from_secs(600),
            defaults::CLUSTER_LEASE_TTL,
        );
        let stream = self.text("cluster.stream").map_or_else(
            || defaults::CLUSTER_STREAM.to_owned(),
            |name| {
                let valid = name.len() <= 64
                    && name
                        .bytes()
                        .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
                if !valid {
                    self.report(
                        "cluster.stream",
                        "a JetStream stream name: at most 64 of A-Z, a-z, 0-9, _ and -",
                    );
                }
                name.to_owned()
            },
        );
        let replicas = self
            .integer("cluster.replicas", 1, 5)
            .and_then(|n| u8::try_from(n).ok())
            .unwrap_or(defaults::CLUSTER_REPLICAS);
        let duplicate_window = self.duration_or(
            "cluster.duplicate_window",
            ONE_SECOND,
            ONE_DAY,
            defaults::CLUSTER_DUPLICATE_WINDOW,
        );
        if duplicate_window < rotate_before_expiry {
            // During a rotation the old channel may deliver until its expiry, this long
            // after the new one started: both copies of an event must fall in one window.
            self.report(
                "cluster.duplicate_window",
                format!(
                    "must be at least stream.rotate_before_expiry ({}), how long two \
                     channels may deliver the same events during a rotation",
                    format_duration(rotate_before_expiry)
                ),
            );
        }
        if !enabled {
            return None;
        }
        let Some(nats_url) = nats_url else {
            if !self.present("cluster.nats_url") {
                self.report_missing(
                    "cluster.nats_url",
                    "required when cluster.enabled = true (e.g. \"nats://127.0.0.1:4222\")",
                );
            }
            return None;
        };
        Some(ClusterConfig {
            nats_url,
            partitions,
            role,
            lease_ttl,
            stream,
            replicas,
            duplicate_window,
        })
    }
}

/// Why `url` is not a NATS server URL Convoy accepts, or `None` when it is.
fn nats_url_problem(url: &str) -> Option<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Some("expected nats://host:port or tls://host:port".to_owned());
    };
    if scheme != "nats" && scheme != "tls" {
        return Some(format!(
            "expected the scheme nats:// or tls://, found \"{scheme}://\""
        ));
    }
    let authority = rest.split('/').next().unwrap_or(rest);
    if authority.contains('@') {
        // A URL is logged and shown by `config check`; credentials must not be.
        return Some("credentials in the URL are not accepted (they would be logged)".to_owned());
    }
    // `[::1]:4222`: the port follows the bracketed IPv6 address, if any.
    let split = match authority.rfind(']') {
        Some(end) => authority[end..].rfind(':').map(|at| end + at),
        None => authority.rfind(':'),
    };
    let (host, port) = match split {
        Some(at) => (&authority[..at], Some(&authority[at + 1..])),
        None => (authority, None),
    };
    if host.is_empty() {
        return Some("the URL names no host".to_owned());
    }
    if port.is_some_and(|port| port.parse::<u16>().map_or(true, |port| port == 0)) {
        return Some("the port must be a number between 1 and 65535".to_owned());
    }
    None
}

/// How a problem quotes a value: JSON syntax, redacted for secrets, shortened if long.
fn shown_value(key: &str, value: &Value) -> String {
    if is_secret_key(key) {
        return REDACTED.to_owned();
    }
    let text = value.to_string();
    if text.chars().count() <= MAX_SHOWN_VALUE {
        return text;
    }
    let mut short: String = text.chars().take(MAX_SHOWN_VALUE).collect();
    short.push('…');
    short
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(number) if number.is_f64() => "a number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a table",
    }
}

/// 8-4-4-4-12 hex digits, the shape of every Genesys object id.
fn is_uuid(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, byte)| match i {
            8 | 13 | 18 | 23 => *byte == b'-',
            _ => byte.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
