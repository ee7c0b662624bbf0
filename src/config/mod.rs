//! The total, validated configuration of the daemon.
//!
//! This module owns the typed [`Config`], the Genesys [`Region`] table, [`Secret`] and the
//! pure [`validate`] that turns a merged configuration tree (whatever the layers produced:
//! built-in defaults, a file, the environment, flags) into a `Config` or into *every*
//! problem at once. It never reads files, the environment or the clock: the shell
//! (`convoy-actors`' `config_load`) merges the layers, reads `genesys.client_secret_file`
//! and hands this module a `serde_json::Value` plus a way to name where each key came from.

mod http_url;
mod keys;
mod region;
mod secret;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::sla::{Calendar, Share, ThresholdOverrides};

pub use keys::{
    closest_key, env_name, env_value_is_text, env_var_name, is_secret_key, is_section, is_table,
    key_spec, EnvName, KeyKind, KeySpec, CONFIG_FILE_ENV, ENV_PREFIX, KEYS, TOOL_ENV_PREFIXES,
};
pub use region::{Region, REGIONS};
pub use secret::{Secret, REDACTED};
pub use validate::{validate, ConfigErrors, ConfigProblem};

/// Defaults, in one place. `config/default.toml` writes the same values down for people
/// to read; a shell test checks the two agree.
pub mod defaults {
    use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
    use std::time::Duration;

    pub const REQUESTS_PER_MINUTE: u32 = 300;
    pub const SLA_ANSWER: Duration = Duration::from_secs(20);
    pub const SLA_FIRST_RESPONSE: Duration = Duration::from_secs(5 * 60);
    pub const SLA_NEXT_RESPONSE: Duration = Duration::from_secs(5 * 60);
    pub const SLA_DELIVERY: Duration = Duration::from_secs(60);
    pub const SLA_READ: Duration = Duration::from_secs(30 * 60);
    /// `sla.warn_at`, in basis points of the threshold.
    pub const SLA_WARN_AT_BASIS_POINTS: u16 = 8_000;
    pub const SLA_NO_READ_RECEIPT: &[&str] = &["sms"];
    pub const SLA_TICK: Duration = Duration::from_secs(1);
    pub const CRM_BATCH_SIZE: usize = 100;
    pub const CRM_FLUSH_INTERVAL: Duration = Duration::from_secs(5);
    pub const CRM_MAX_BATCH_BYTES: usize = 1024 * 1024;
    pub const CRM_MAX_IN_FLIGHT: usize = 8;
    pub const CRM_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
    pub const CRM_RETRY_MAX_DELAY: Duration = Duration::from_secs(60);
    pub const OUTBOX_PATH: &str = "data/outbox.redb";
    pub const OUTBOX_MAX_RECORDS: u64 = 1_000_000;
    pub const ANALYTICS_EVERY: Duration = Duration::from_secs(3_600);
    pub const ANALYTICS_OUTPUT_DIR: &str = "data/snapshots";
    pub const ANALYTICS_KEEP_OUTCOMES: Duration = Duration::from_secs(35 * 24 * 3_600);
    pub const ADMIN_LISTEN: SocketAddr =
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9464));
    pub const LOG_FILTER: &str = "info";
    pub const LOGIN_UNREACHABLE_EXIT_AFTER: Duration = Duration::from_secs(5 * 60);
    pub const STREAM_MAX_FRAME_BYTES: usize = 1024 * 1024;
    pub const STREAM_PING_AFTER_IDLE: Duration = Duration::from_secs(35);
    pub const STREAM_RECONNECT_AFTER_SILENCE: Duration = Duration::from_secs(60);
    pub const STREAM_ROTATE_BEFORE_EXPIRY: Duration = Duration::from_secs(10 * 60);
    pub const CONVERSATIONS_MAX_LIVE: usize = 10_000;
    pub const CONVERSATIONS_IDLE_TIMEOUT: Duration = Duration::from_secs(2 * 3_600);
    pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(20);
    pub const CLUSTER_PARTITIONS: u16 = 64;
    pub const CLUSTER_LEASE_TTL: Duration = Duration::from_secs(15);
    pub const CLUSTER_STREAM: &str = "CONVOY_FRAMES";
    pub const CLUSTER_REPLICAS: u8 = 1;
    pub const CLUSTER_DUPLICATE_WINDOW: Duration = Duration::from_secs(20 * 60);
}

/// Everything the daemon is configured with. Built only by [`validate`], so every value
/// in it has been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub genesys: GenesysConfig,
    pub sla: SlaConfig,
    /// `None` when `crm.endpoint` is absent: CRM sync is off.
    pub crm: Option<CrmConfig>,
    pub outbox: OutboxConfig,
    pub analytics: AnalyticsConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
    pub stream: StreamConfig,
    pub conversations: ConversationsConfig,
    pub shutdown: ShutdownConfig,
    /// `None` when `cluster.enabled` is false (the default): one process, no NATS.
    pub cluster: Option<ClusterConfig>,
}

impl Config {
    /// The notification topics to subscribe to, queues first then users, each id giving
    /// its conversation topic and its messages topic.
    pub fn topics(&self) -> Vec<String> {
        self.genesys.topics()
    }

    /// Settings that are valid but risky or misleading: printed by `config check` and
    /// logged at start-up, never fatal. Today: an admin API reachable from the network.
    /// The shell adds its file checks.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if !self.admin.is_loopback() {
            let guard = if self.admin.token.is_some() {
                "admin.token guards every route but /healthz and /readyz"
            } else {
                "without admin.token anyone who reaches it can read /conversations \
                 (customer names, attachment URLs) and /metrics"
            };
            warnings.push(format!(
                "admin.listen = {} is not a loopback address: the admin API is reachable from \
                 the network; {guard}",
                self.admin.listen
            ));
        }
        warnings
    }
}

/// Where Genesys is and who Convoy is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenesysConfig {
    pub endpoints: GenesysEndpoints,
    /// The OAuth client id (a UUID).
    pub client_id: String,
    pub client_secret: ClientSecret,
    /// The token bucket size per OAuth client.
    pub requests_per_minute: u32,
    /// `genesys.if_match = "etag"`: before writing, read the conversation's `ETag` and
    /// send it as `If-Match` (409/412 → re-read, re-apply). Real Genesys sends no ETag on
    /// conversations and ignores `If-Match`, so the default is `"off"`; the emulator's
    /// `--strict-if-match` enforces it.
    pub conditional_writes: bool,
    /// `genesys.write_back = "lifecycle"` (default): write each participant's lifecycle to
    /// its `convoy.participant_state` / `convoy.version` attributes. `"off"`: follow only,
    /// never write to Genesys.
    pub write_back: bool,
    /// Without a valid token, how long the login host may stay unreachable (transport
    /// errors, 5xx, 429 from `/oauth/token`) before the process exits with code 5 so the
    /// service manager reports it.
    pub login_unreachable_exit_after: Duration,
    /// Queue ids to follow (UUIDs, duplicates removed, order kept).
    pub queues: Vec<String>,
    /// User ids to follow (UUIDs, duplicates removed, order kept).
    pub users: Vec<String>,
}

impl GenesysConfig {
    /// See [`Config::topics`].
    pub fn topics(&self) -> Vec<String> {
        let queues = self.queues.iter().flat_map(|id| {
            [
                format!("v2.routing.queues.{id}.conversations"),
                format!("v2.routing.queues.{id}.conversations.messages"),
            ]
        });
        let users = self.users.iter().flat_map(|id| {
            [
                format!("v2.users.{id}.conversations"),
                format!("v2.users.{id}.conversations.messages"),
            ]
        });
        queues.chain(users).collect()
    }
}

/// The two origins Convoy talks to, without trailing slashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenesysEndpoints {
    /// The region they were derived from; `None` when both were given explicitly (the
    /// emulator, a proxy).
    pub region: Option<Region>,
    /// `https://api.<domain>` or the explicit `genesys.api_base`.
    pub api_base: String,
    /// `https://login.<domain>` or the explicit `genesys.login_base`.
    pub login_base: String,
}

/// The OAuth client secret, given inline or as a file the shell reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientSecret {
    Value(Secret<String>),
    /// `genesys.client_secret_file`. The shell's loader replaces it with `Value` after
    /// reading the file, so a loaded `Config` holds `Value`.
    File(PathBuf),
}

impl ClientSecret {
    /// The secret, once it is known (always, after the shell loaded the config).
    pub fn value(&self) -> Option<&Secret<String>> {
        match self {
            ClientSecret::Value(secret) => Some(secret),
            ClientSecret::File(_) => None,
        }
    }
}

/// The SLA clocks' thresholds, overrides and calendars (`sla.*`); the rules that use them
/// are in [`crate::sla`], which builds its [`SlaPolicy`](crate::sla::SlaPolicy) from this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaConfig {
    /// ACD participant joined → a human agent connected.
    pub answer: Duration,
    /// Customer's first message → the first agent response.
    pub first_response: Duration,
    /// A later unanswered customer message → the next agent response.
    pub next_response: Duration,
    /// Outbound message first seen → delivered.
    pub delivery: Duration,
    /// Delivered → read.
    pub read: Duration,
    /// Share of a threshold at which a warning is emitted.
    pub warn_at: Share,
    /// Messenger types without read receipts (no `read` clock).
    pub no_read_receipt: Vec<String>,
    /// The SlaActor's timer tick: breaches are emitted within one tick of their deadline.
    pub tick: Duration,
    /// `sla.queues.<queue-id>`, by queue id.
    pub queues: BTreeMap<String, SlaQueueConfig>,
    /// `sla.messenger_types.<type>`, by messenger type (`sms`, `whatsapp`, ...).
    pub messenger_types: BTreeMap<String, ThresholdOverrides>,
    /// `sla.calendars.<name>`, by name.
    pub calendars: BTreeMap<String, Calendar>,
}

impl Default for SlaConfig {
    fn default() -> SlaConfig {
        SlaConfig {
            answer: defaults::SLA_ANSWER,
            first_response: defaults::SLA_FIRST_RESPONSE,
            next_response: defaults::SLA_NEXT_RESPONSE,
            delivery: defaults::SLA_DELIVERY,
            read: defaults::SLA_READ,
            warn_at: Share::default(),
            no_read_receipt: defaults::SLA_NO_READ_RECEIPT
                .iter()
                .map(|name| (*name).to_owned())
                .collect(),
            tick: defaults::SLA_TICK,
            queues: BTreeMap::new(),
            messenger_types: BTreeMap::new(),
            calendars: BTreeMap::new(),
        }
    }
}

/// `sla.queues.<queue-id>`: threshold overrides and the business-hours calendar of a queue.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SlaQueueConfig {
    pub thresholds: ThresholdOverrides,
    /// The name of a `sla.calendars.<name>` table.
    pub calendar: Option<String>,
}

/// The CRM sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrmConfig {
    /// An http(s) URL.
    pub endpoint: String,
    pub auth: CrmAuth,
    /// Records per request, 1..=1000.
    pub batch_size: usize,
    /// How long a partial batch may wait before it is sent.
    pub flush_interval: Duration,
    /// Most encoded record bytes per request (a single larger record still goes, alone).
    pub max_batch_bytes: usize,
    /// Ceiling of the adaptive number of batches in flight (AIMD starts at 1).
    pub max_in_flight: usize,
    /// How long one request may take before it counts as failed ("maybe delivered": resent
    /// with the same Idempotency-Key).
    pub request_timeout: Duration,
    /// Cap of the backoff between retries of a batch. Transient failures (408, 429, 5xx,
    /// connection errors) are retried forever: an outage never dead-letters a record.
    pub retry_max_delay: Duration,
}

/// How Convoy authenticates to the CRM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrmAuth {
    None,
    Bearer {
        token: Secret<String>,
    },
    Basic {
        username: String,
        password: Secret<String>,
    },
    /// The body is signed with HMAC-SHA256 under this key.
    Hmac {
        secret: Secret<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxConfig {
    /// The redb file holding accepted records until the CRM acknowledges them.
    pub path: PathBuf,
    /// Pending records at which accepting stops (back-pressure) until the CRM catches up;
    /// nothing is dropped.
    pub max_records: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalyticsConfig {
    pub schedule: AnalyticsSchedule,
    /// Where QA snapshot files are written.
    pub output_dir: PathBuf,
    /// How long decided SLA outcomes stay in the outbox database for snapshots.
    pub keep_outcomes: Duration,
}

/// `analytics.schedule`: `"off"` or an interval such as `"1h"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnalyticsSchedule {
    Off,
    Every(Duration),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Where `/metrics`, `/healthz` and `/readyz` listen.
    pub listen: SocketAddr,
    /// `admin.token`: when set, every route but the health probes needs it as a bearer
    /// token (`/conversations` shows customer names and attachment URLs).
    pub token: Option<Secret<String>>,
}

impl AdminConfig {
    /// True when the admin API is reachable only from this machine.
    pub fn is_loopback(&self) -> bool {
        self.listen.ip().is_loopback()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing `EnvFilter` directive such as `info,convoy=debug`; `RUST_LOG` overrides it.
    pub filter: String,
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// `"text"` or `"json"`; `None` otherwise.
    pub fn parse(text: &str) -> Option<LogFormat> {
        match text {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// The Notifications WebSocket's liveness policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamConfig {
    /// Largest accepted frame (after continuation reassembly).
    pub max_frame_bytes: usize,
    /// Send `{"message":"ping"}` after this long without a frame (Genesys heartbeats ~30 s).
    pub ping_after_idle: Duration,
    /// Treat the socket as dead after this long without any frame; > `ping_after_idle`.
    pub reconnect_after_silence: Duration,
    /// Start make-before-break rotation this long before the channel's 24 h expiry.
    pub rotate_before_expiry: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConversationsConfig {
    /// At most this many conversation actors at once.
    pub max_live: usize,
    /// A conversation with no event for this long is evicted (and rebuilt from REST if it
    /// shows up again).
    pub idle_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownConfig {
    /// How long a graceful shutdown may take before the process exits anyway.
    pub deadline: Duration,
}

/// `cluster.*`: several Convoy instances sharing the work through NATS JetStream. Only
/// built when `cluster.enabled = true`; see [`crate::cluster`] for the rules it feeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `nats://host:port` or `tls://host:port`, without credentials.
    pub nats_url: String,
    /// How many partitions conversations are hashed into, 1..=4096. Part of the wire
    /// contract: every instance of a cluster must use the same count.
    pub partitions: u16,
    pub role: ClusterRole,
    /// A partition lease not renewed for this long may be taken by another worker.
    pub lease_ttl: Duration,
    /// The JetStream stream holding the frames (`[A-Za-z0-9_-]`, at most 64).
    pub stream: String,
    /// JetStream replicas of the stream and the KV buckets, 1..=5.
    pub replicas: u8,
    /// JetStream's duplicate window on `Nats-Msg-Id`; at least `stream.rotate_before_expiry`,
    /// the longest two channels of one ingest overlap.
    pub duplicate_window: Duration,
}

/// `cluster.role`: what this instance does in a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterRole {
    /// Holds the Genesys channels and publishes frames.
    Ingest,
    /// Owns partitions and runs their conversations.
    Worker,
    Both,
}

impl ClusterRole {
    /// `"ingest"`, `"worker"` or `"both"`; `None` otherwise.
    pub fn parse(text: &str) -> Option<ClusterRole> {
        match text {
            "ingest" => Some(ClusterRole::Ingest),
            "worker" => Some(ClusterRole::Worker),
            "both" => Some(ClusterRole::Both),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            ClusterRole::Ingest => "ingest",
            ClusterRole::Worker => "worker",
            ClusterRole::Both => "both",
        }
    }
}
