//! The emulated Genesys Cloud platform as plain state (API.md §1–§3, §7): OAuth clients and
//! client-credentials tokens, the per-token rate limit, Notifications channels with their
//! subscriptions and the one socket each may have, fan-out of topic events to channels, and
//! the fault-injection settings. Everything takes `now` as an argument and every "random"
//! choice (tokens, channel ids, correlation ids, faults) comes from generators seeded with
//! the emulator's seed, so a run is reproducible.
//!
//! What it must never do: perform I/O, read the clock, or expose a secret (client secret,
//! access tokens) through `Debug`. Sockets themselves belong to the shell; here a socket is
//! only a [`SocketId`] attached to a channel, so the rules (one socket per channel, no
//! replay, eviction prefers idle channels) are decided and tested without a network.

mod faults;
pub mod frames;
mod rate;
mod topics;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::emulator::{envelope, TopicEvent};
use crate::model::{Channel, ChannelTopic, EntityListing, OAuthError, TokenResponse};

pub use faults::{FaultSettings, FaultSettingsError, RequestFault};
pub use rate::{RateDecision, RateWindow};
pub use topics::{classify, Directory, TopicVerdict};

/// Channels one OAuth client may hold; creating one more evicts one (API.md §3.4).
pub const MAX_CHANNELS_PER_CLIENT: usize = 20;
/// Topics one channel may hold; more is a 400 (API.md §3.4).
pub const MAX_TOPICS_PER_CHANNEL: usize = 1000;
/// How long a reorder-held event waits for a next event before it is released anyway, so
/// reordering never turns into loss.
pub const REORDER_HOLD_MS: i64 = 500;

/// The client id accepted when none is configured (a UUID, like real client ids).
pub const DEFAULT_CLIENT_ID: &str = "0c6f3f4e-6a3e-4c1e-9a35-2d2f1b7c9e01";
/// The client secret accepted when none is configured. Emulator-only; never a real secret.
pub const DEFAULT_CLIENT_SECRET: &str = "convoy-emulator-secret";

/// What the platform is configured with.
#[derive(Clone, PartialEq, Eq)]
pub struct PlatformOptions {
    pub client_id: String,
    pub client_secret: String,
    /// Lifetime of an access token (`expires_in`).
    pub token_ttl: TimeDelta,
    /// Lifetime of a channel from creation or from its last re-subscription.
    pub channel_ttl: TimeDelta,
    /// Requests per minute per token; 0 disables the limit.
    pub rate_limit_per_minute: u32,
    pub seed: u64,
}

impl Default for PlatformOptions {
    fn default() -> Self {
        PlatformOptions {
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            client_secret: DEFAULT_CLIENT_SECRET.to_owned(),
            token_ttl: TimeDelta::hours(24),
            channel_ttl: TimeDelta::hours(24),
            rate_limit_per_minute: 300,
            seed: 0,
        }
    }
}

impl std::fmt::Debug for PlatformOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformOptions")
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("token_ttl", &self.token_ttl)
            .field("channel_ttl", &self.channel_ttl)
            .field("rate_limit_per_minute", &self.rate_limit_per_minute)
            .field("seed", &self.seed)
            .finish()
    }
}

/// An issued token, by number: the token text itself never leaves [`Platform`] except in
/// the token response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenId(pub u64);

/// One WebSocket connection to a channel, as the platform knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(pub u64);

/// A Notifications channel id (`streaming-0-<26 lowercase alphanumerics>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ChannelId(pub String);

impl ChannelId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ChannelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The authenticated caller of an `/api/v2` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub token: TokenId,
    pub client_id: String,
}

/// Client credentials from the token request's Basic header.
#[derive(Clone, Copy)]
pub struct ClientCredentials<'a> {
    pub client_id: &'a str,
    pub client_secret: &'a str,
}

/// Why `POST /oauth/token` refused (API.md §1.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRequestError {
    #[error("no client credentials in the Authorization header")]
    MissingCredentials,
    #[error("unknown client id")]
    UnknownClient,
    #[error("wrong client secret")]
    WrongSecret,
    #[error("grant_type missing")]
    MissingGrantType,
    #[error("unsupported grant_type {0}")]
    UnsupportedGrantType(String),
}

impl TokenRequestError {
    pub fn status(&self) -> u16 {
        match self {
            // RFC 6749 §5.2: failed client authentication is 401 `invalid_client`.
            TokenRequestError::MissingCredentials | TokenRequestError::WrongSecret => 401,
            TokenRequestError::UnknownClient
            | TokenRequestError::MissingGrantType
            | TokenRequestError::UnsupportedGrantType(_) => 400,
        }
    }

    /// The three-field OAuth error body.
    pub fn body(&self) -> OAuthError {
        match self {
            TokenRequestError::MissingCredentials | TokenRequestError::WrongSecret => {
                frames::oauth_error("invalid_client", "authentication failed")
            }
            TokenRequestError::UnknownClient => {
                frames::oauth_error("invalid_client", "client not found")
            }
            TokenRequestError::MissingGrantType => {
                frames::oauth_error("invalid_request", "grant_type is required")
            }
            TokenRequestError::UnsupportedGrantType(grant) => frames::oauth_error(
                "unsupported_grant_type",
                &format!("grant type {grant} is not supported"),
            ),
        }
    }
}

/// Why a bearer token was refused (API.md §1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// 401 `authentication.required`.
    #[error("no bearer token")]
    Missing,
    /// 401 `bad.credentials`: unknown, expired or revoked.
    #[error("invalid, expired or revoked bearer token")]
    BadCredentials,
}

/// Why a Notifications call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// 404: unknown, expired, evicted, another client's, or its token is gone.
    #[error("channel not found")]
    ChannelNotFound,
    /// 400: more than [`MAX_TOPICS_PER_CHANNEL`] topics would be on the channel.
    #[error("{requested} topics exceed the limit of {limit} per channel")]
    TooManyTopics { requested: usize, limit: usize },
    /// 400 (without ignoreErrors): some topics are not topics of this org.
    #[error("invalid topics")]
    InvalidTopics(Vec<ChannelTopic>),
    /// 403 (without ignoreErrors): some topics name queues or users the org does not have.
    #[error("topics not permitted")]
    ForbiddenTopics(Vec<ChannelTopic>),
}

impl NotifyError {
    pub fn status(&self) -> u16 {
        match self {
            NotifyError::ChannelNotFound => 404,
            NotifyError::TooManyTopics { .. } | NotifyError::InvalidTopics(_) => 400,
            NotifyError::ForbiddenTopics(_) => 403,
        }
    }

    /// The ErrorBody to answer with.
    pub fn body(&self, context_id: &str) -> serde_json::Value {
        match self {
            NotifyError::ChannelNotFound => frames::not_found(context_id),
            NotifyError::TooManyTopics { requested, limit } => frames::bad_request(
                &format!(
                    "Channel topic limit exceeded: {requested} topics requested, at most {limit} allowed."
                ),
                context_id,
            ),
            NotifyError::InvalidTopics(topics) => {
                let mut body = frames::bad_request(
                    &format!("Invalid topics: {}", topic_names(topics)),
                    context_id,
                );
                body["details"] = rejection_details(topics);
                body
            }
            NotifyError::ForbiddenTopics(topics) => {
                let mut body = frames::error_body(
                    403,
                    "not.authorized",
                    &format!("Not authorized to subscribe to: {}", topic_names(topics)),
                    context_id,
                );
                body["details"] = rejection_details(topics);
                body
            }
        }
    }
}

fn topic_names(topics: &[ChannelTopic]) -> String {
    const SHOWN: usize = 10;
    let mut names = topics
        .iter()
        .take(SHOWN)
        .map(|topic| topic.id.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if topics.len() > SHOWN {
        names.push_str(&format!(" and {} more", topics.len() - SHOWN));
    }
    names
}

fn rejection_details(topics: &[ChannelTopic]) -> serde_json::Value {
    topics
        .iter()
        .map(|topic| {
            serde_json::json!({
                "errorCode": topic.rejection_reason.clone().unwrap_or_default(),
                "fieldName": "id",
                "entityId": topic.id,
            })
        })
        .collect()
}

/// Which channels `GET /api/v2/notifications/channels` lists (`includechannels`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelListScope {
    /// The caller token's channels (the default).
    Token,
    /// Every channel of the caller's OAuth client; other tokens' channels without id.
    OAuthClient,
}

/// `POST` adds topics, `PUT` replaces the set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeMode {
    Add,
    Replace,
}

/// Why a channel went away. Decides the farewell frame on its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosureReason {
    /// Pushed out by the 21st channel of its client.
    Evicted,
    /// Its `expires` passed without a re-subscription (or the control API expired it).
    ChannelExpired,
    /// The token that created it expired.
    TokenExpired,
    /// The token that created it was revoked.
    TokenRevoked,
}

/// A channel that ceased to exist; the shell says goodbye on its socket and closes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelClosure {
    pub channel: ChannelId,
    pub client_id: String,
    pub socket: Option<SocketId>,
    pub reason: ClosureReason,
}

/// A frame for one socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub channel: ChannelId,
    pub socket: SocketId,
    pub frame: String,
}

/// A socket accepted on a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketAttach {
    pub socket: SocketId,
    /// The socket this one replaces (one socket per channel): the shell closes it.
    pub replaced: Option<SocketId>,
}

/// What to do with a text frame a client sent on its socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsCommandOutcome {
    /// Send this frame back.
    Reply(String),
    /// The channel is gone: send `{"result":"404",…}` and close.
    ChannelGone,
}

struct TokenRecord {
    client_id: String,
    expires_at: DateTime<Utc>,
    revoked: bool,
    rate: RateWindow,
}

impl TokenRecord {
    fn is_alive(&self, now: DateTime<Utc>) -> bool {
        !self.revoked && now < self.expires_at
    }
}

struct HeldFrame {
    frame: String,
    since: DateTime<Utc>,
}

struct ChannelRecord {
    client_id: String,
    token: TokenId,
    connect_uri: String,
    created: DateTime<Utc>,
    expires: DateTime<Utc>,
    last_used: DateTime<Utc>,
    /// Permitted topics in subscription order (GET lists them in that order).
    topics: Vec<String>,
    topic_set: BTreeSet<String>,
    socket: Option<SocketId>,
    /// An event held back by the reorder fault, sent after the next one.
    held: Option<HeldFrame>,
}

impl ChannelRecord {
    fn view(&self, id: &ChannelId) -> Channel {
        Channel {
            id: id.0.clone(),
            connect_uri: self.connect_uri.clone(),
            expires: Some(self.expires),
        }
    }

    fn listing(&self, id: &ChannelId) -> EntityListing<ChannelTopic> {
        EntityListing {
            entities: self
                .topics
                .iter()
                .map(|topic| permitted(id, topic))
                .collect(),
        }
    }
}

fn subscriptions_uri(id: &ChannelId) -> String {
    format!("/api/v2/notifications/channels/{id}/subscriptions")
}

fn permitted(id: &ChannelId, topic: &str) -> ChannelTopic {
    ChannelTopic {
        id: topic.to_owned(),
        state: Some("Permitted".to_owned()),
        rejection_reason: None,
        missing_permissions: Vec::new(),
        self_uri: Some(subscriptions_uri(id)),
    }
}

fn rejected(id: &ChannelId, topic: &str, reason: &str) -> ChannelTopic {
    ChannelTopic {
        id: topic.to_owned(),
        state: Some("Rejected".to_owned()),
        rejection_reason: Some(reason.to_owned()),
        missing_permissions: Vec::new(),
        self_uri: Some(subscriptions_uri(id)),
    }
}

/// The whole platform state. One instance per emulator, behind the shell's mutex.
pub struct Platform {
    options: PlatformOptions,
    directory: Directory,
    /// Tokens, channel ids and correlation ids.
    ids: StdRng,
    /// Fault draws: a separate stream so turning faults on does not change the ids a
    /// seeded run produces.
    fault_draws: StdRng,
    faults: FaultSettings,
    next_token: u64,
    next_socket: u64,
    token_ids: HashMap<String, TokenId>,
    tokens: BTreeMap<TokenId, TokenRecord>,
    channels: BTreeMap<ChannelId, ChannelRecord>,
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platform")
            .field("options", &self.options)
            .field("tokens", &self.tokens.len())
            .field("channels", &self.channels.keys().collect::<Vec<_>>())
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const LOWER_ALPHANUMERIC: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

fn random_text(rng: &mut StdRng, alphabet: &[u8], len: usize) -> String {
    (0..len)
        .map(|_| char::from(alphabet[rng.gen_range(0..alphabet.len())]))
        .collect()
}

impl Platform {
    pub fn new(options: PlatformOptions) -> Platform {
        // Two independent streams from one seed.
        let ids = StdRng::seed_from_u64(options.seed);
        let fault_draws = StdRng::seed_from_u64(options.seed ^ 0x5eed_fa17_0000_0001);
        Platform {
            options,
            directory: Directory::default(),
            ids,
            fault_draws,
            faults: FaultSettings::default(),
            next_token: 1,
            next_socket: 1,
            token_ids: HashMap::new(),
            tokens: BTreeMap::new(),
            channels: BTreeMap::new(),
        }
    }

    pub fn options(&self) -> &PlatformOptions {
        &self.options
    }

    /// The queue and user ids subscriptions may name.
    pub fn set_directory(&mut self, queues: Vec<String>, users: Vec<String>) {
        self.directory = Directory {
            queues: queues.into_iter().collect(),
            users: users.into_iter().collect(),
        };
    }

    /// A fresh correlation id (UUID v4 layout) from the seeded stream.
    pub fn correlation_id(&mut self) -> String {
        let mut bytes: [u8; 16] = self.ids.gen();
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    }

    // ---- OAuth -------------------------------------------------------------------------

    /// `POST /oauth/token` with client credentials.
    pub fn issue_token(
        &mut self,
        credentials: Option<ClientCredentials<'_>>,
        grant_type: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<TokenResponse, TokenRequestError> {
        let credentials = credentials.ok_or(TokenRequestError::MissingCredentials)?;
        if credentials.client_id != self.options.client_id {
            return Err(TokenRequestError::UnknownClient);
        }
        if credentials.client_secret != self.options.client_secret {
            return Err(TokenRequestError::WrongSecret);
        }
        match grant_type {
            None | Some("") => return Err(TokenRequestError::MissingGrantType),
            Some("client_credentials") => {}
            Some(other) => return Err(TokenRequestError::UnsupportedGrantType(other.to_owned())),
        }
        let access_token = loop {
            let candidate = random_text(&mut self.ids, ALPHANUMERIC, 48);
            if !self.token_ids.contains_key(&candidate) {
                break candidate;
            }
        };
        let id = TokenId(self.next_token);
        self.next_token += 1;
        self.token_ids.insert(access_token.clone(), id);
        self.tokens.insert(
            id,
            TokenRecord {
                client_id: credentials.client_id.to_owned(),
                expires_at: now + self.options.token_ttl,
                revoked: false,
                rate: RateWindow::per_minute(self.options.rate_limit_per_minute),
            },
        );
        Ok(TokenResponse {
            access_token,
            token_type: "bearer".to_owned(),
            expires_in: self
                .faults
                .token_expires_in_s
                .unwrap_or(self.options.token_ttl.num_seconds().max(0) as u64),
        })
    }

    /// Every access token alive now (issued, not yet swept): what a leak test looks for
    /// in a client's output.
    pub fn access_tokens(&self) -> Vec<String> {
        self.token_ids.keys().cloned().collect()
    }

    /// Checks the bearer token of an `/api/v2` call (the text after `Bearer `).
    pub fn authenticate(
        &self,
        bearer: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Caller, AuthError> {
        let bearer = bearer.filter(|b| !b.is_empty()).ok_or(AuthError::Missing)?;
        let id = *self
            .token_ids
            .get(bearer)
            .ok_or(AuthError::BadCredentials)?;
        match self.tokens.get(&id) {
            Some(record) if record.is_alive(now) => Ok(Caller {
                token: id,
                client_id: record.client_id.clone(),
            }),
            _ => Err(AuthError::BadCredentials),
        }
    }

    /// Counts one request against the token's per-minute budget.
    pub fn check_rate(&mut self, token: TokenId, now: DateTime<Utc>) -> RateDecision {
        match self.tokens.get_mut(&token) {
            Some(record) => record.rate.hit(now),
            // A token swept between authentication and here: let the handler see it gone.
            None => RateWindow::per_minute(0).hit(now),
        }
    }

    /// Expires every token now; their channels die. Returns the dead channels.
    pub fn expire_tokens(&mut self, now: DateTime<Utc>) -> Vec<ChannelClosure> {
        for record in self.tokens.values_mut() {
            record.expires_at = record.expires_at.min(now);
        }
        self.sweep(now)
    }

    /// Revokes every token; their channels die. Returns the dead channels.
    pub fn revoke_tokens(&mut self, now: DateTime<Utc>) -> Vec<ChannelClosure> {
        for record in self.tokens.values_mut() {
            record.revoked = true;
        }
        self.sweep(now)
    }

    // ---- faults ------------------------------------------------------------------------

    pub fn faults(&self) -> &FaultSettings {
        &self.faults
    }

    pub fn set_faults(&mut self, faults: FaultSettings) -> Result<(), FaultSettingsError> {
        faults.validate()?;
        self.faults = faults;
        Ok(())
    }

    /// Whether this `/api/v2` call is answered by an injected fault instead.
    pub fn draw_request_fault(&mut self) -> Option<RequestFault> {
        faults::draw_request_fault(&mut self.faults, &mut self.fault_draws)
    }

    // ---- channels ----------------------------------------------------------------------

    fn channel_alive(&self, record: &ChannelRecord, now: DateTime<Utc>) -> bool {
        now < record.expires
            && self
                .tokens
                .get(&record.token)
                .is_some_and(|token| token.is_alive(now))
    }

    /// The caller's live channel, or 404.
    fn owned_channel(
        &self,
        caller: &Caller,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<ChannelId, NotifyError> {
        let id = ChannelId(id.to_owned());
        match self.channels.get(&id) {
            Some(record)
                if record.client_id == caller.client_id && self.channel_alive(record, now) =>
            {
                Ok(id)
            }
            _ => Err(NotifyError::ChannelNotFound),
        }
    }

    /// `POST /api/v2/notifications/channels`. `connect_base` is the WebSocket origin the
    /// shell serves (`ws://127.0.0.1:PORT`). Also returns the channels that died: expired
    /// ones found on the way and the one evicted to stay within the per-client limit.
    pub fn create_channel(
        &mut self,
        caller: &Caller,
        connect_base: &str,
        now: DateTime<Utc>,
    ) -> (Channel, Vec<ChannelClosure>) {
        let mut closures = self.sweep(now);
        while self
            .channels
            .values()
            .filter(|record| record.client_id == caller.client_id)
            .count()
            >= MAX_CHANNELS_PER_CLIENT
        {
            // The oldest last-used, preferring channels nobody is listening on.
            let victim = self
                .channels
                .iter()
                .filter(|(_, record)| record.client_id == caller.client_id)
                .min_by_key(|(id, record)| {
                    (
                        record.socket.is_some(),
                        record.last_used,
                        record.created,
                        (*id).clone(),
                    )
                })
                .map(|(id, _)| id.clone());
            let Some(victim) = victim else { break };
            if let Some(record) = self.channels.remove(&victim) {
                closures.push(ChannelClosure {
                    channel: victim,
                    client_id: record.client_id,
                    socket: record.socket,
                    reason: ClosureReason::Evicted,
                });
            }
        }
        let id = loop {
            let candidate = ChannelId(format!(
                "streaming-0-{}",
                random_text(&mut self.ids, LOWER_ALPHANUMERIC, 26)
            ));
            if !self.channels.contains_key(&candidate) {
                break candidate;
            }
        };
        // Genesys times carry milliseconds; keep `expires` printable the same way.
        let now_ms = now.trunc_subsecs(3);
        let record = ChannelRecord {
            client_id: caller.client_id.clone(),
            token: caller.token,
            connect_uri: format!("{}/channels/{}", connect_base.trim_end_matches('/'), id),
            created: now,
            expires: now_ms + self.options.channel_ttl,
            last_used: now,
            topics: Vec::new(),
            topic_set: BTreeSet::new(),
            socket: None,
            held: None,
        };
        let view = record.view(&id);
        self.channels.insert(id, record);
        (view, closures)
    }

    /// `GET /api/v2/notifications/channels?includechannels=…`, oldest first. Channels of
    /// other tokens (scope `OAuthClient`) are listed with `expires` only: their ids are
    /// not the caller's to use.
    pub fn list_channels(
        &self,
        caller: &Caller,
        scope: ChannelListScope,
        now: DateTime<Utc>,
    ) -> EntityListing<serde_json::Value> {
        let mut visible: Vec<(&ChannelId, &ChannelRecord)> = self
            .channels
            .iter()
            .filter(|(_, record)| {
                record.client_id == caller.client_id && self.channel_alive(record, now)
            })
            .filter(|(_, record)| {
                scope == ChannelListScope::OAuthClient || record.token == caller.token
            })
            .collect();
        visible.sort_by_key(|(id, record)| (record.created, (*id).clone()));
        EntityListing {
            entities: visible
                .into_iter()
                .map(|(id, record)| {
                    if record.token == caller.token {
                        serde_json::to_value(record.view(id)).unwrap_or_default()
                    } else {
                        serde_json::json!({ "expires": record.view(id).expires })
                    }
                })
                .collect(),
        }
    }

    /// `HEAD /api/v2/notifications/channels/{id}`: exists and valid. Extends nothing.
    pub fn channel_exists(&self, caller: &Caller, id: &str, now: DateTime<Utc>) -> bool {
        self.owned_channel(caller, id, now).is_ok()
    }

    /// `GET …/channels/{id}/subscriptions`.
    pub fn subscriptions(
        &mut self,
        caller: &Caller,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<EntityListing<ChannelTopic>, NotifyError> {
        let id = self.owned_channel(caller, id, now)?;
        let record = self
            .channels
            .get_mut(&id)
            .ok_or(NotifyError::ChannelNotFound)?;
        record.last_used = now;
        Ok(record.listing(&id))
    }

    /// `POST` (add) or `PUT` (replace) `…/channels/{id}/subscriptions?ignoreErrors=`.
    /// Returns the channel's subscriptions after the call plus this call's rejected topics.
    /// Re-subscribing extends the channel's life by the channel TTL (API.md §3.4).
    pub fn subscribe(
        &mut self,
        caller: &Caller,
        id: &str,
        topics: &[String],
        mode: SubscribeMode,
        ignore_errors: bool,
        now: DateTime<Utc>,
    ) -> Result<EntityListing<ChannelTopic>, NotifyError> {
        let id = self.owned_channel(caller, id, now)?;
        self.apply_subscription(&id, topics, mode, ignore_errors, now)
    }

    fn apply_subscription(
        &mut self,
        id: &ChannelId,
        topics: &[String],
        mode: SubscribeMode,
        ignore_errors: bool,
        now: DateTime<Utc>,
    ) -> Result<EntityListing<ChannelTopic>, NotifyError> {
        let mut seen = BTreeSet::new();
        let requested: Vec<&String> = topics.iter().filter(|t| seen.insert(*t)).collect();
        let record = self.channels.get(id).ok_or(NotifyError::ChannelNotFound)?;
        let resulting = match mode {
            SubscribeMode::Replace => requested.len(),
            SubscribeMode::Add => {
                record.topics.len()
                    + requested
                        .iter()
                        .filter(|t| !record.topic_set.contains(**t))
                        .count()
            }
        };
        if resulting > MAX_TOPICS_PER_CHANNEL {
            return Err(NotifyError::TooManyTopics {
                requested: resulting,
                limit: MAX_TOPICS_PER_CHANNEL,
            });
        }
        let verdicts: Vec<(&String, TopicVerdict)> = requested
            .iter()
            .map(|topic| (*topic, classify(topic, &self.directory)))
            .collect();
        let collect = |wanted: fn(&TopicVerdict) -> bool| -> Vec<ChannelTopic> {
            verdicts
                .iter()
                .filter(|(_, verdict)| wanted(verdict))
                .map(|(topic, verdict)| {
                    rejected(id, topic, verdict.rejection_reason().unwrap_or_default())
                })
                .collect()
        };
        let rejections = collect(|v| !v.is_permitted());
        if !ignore_errors {
            let invalid = collect(|v| matches!(v, TopicVerdict::Invalid(_)));
            if !invalid.is_empty() {
                return Err(NotifyError::InvalidTopics(invalid));
            }
            if !rejections.is_empty() {
                return Err(NotifyError::ForbiddenTopics(rejections));
            }
        }
        let ttl = self.options.channel_ttl;
        let record = self
            .channels
            .get_mut(id)
            .ok_or(NotifyError::ChannelNotFound)?;
        if mode == SubscribeMode::Replace {
            record.topics.clear();
            record.topic_set.clear();
        }
        for (topic, verdict) in &verdicts {
            if verdict.is_permitted() && record.topic_set.insert((*topic).clone()) {
                record.topics.push((*topic).clone());
            }
        }
        record.expires = now.trunc_subsecs(3) + ttl;
        record.last_used = now;
        let mut listing = record.listing(id);
        listing.entities.extend(rejections);
        Ok(listing)
    }

    /// `DELETE …/channels/{id}/subscriptions`: removes every topic.
    pub fn unsubscribe_all(
        &mut self,
        caller: &Caller,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), NotifyError> {
        let id = self.owned_channel(caller, id, now)?;
        let record = self
            .channels
            .get_mut(&id)
            .ok_or(NotifyError::ChannelNotFound)?;
        record.topics.clear();
        record.topic_set.clear();
        record.last_used = now;
        Ok(())
    }

    /// Expires every channel now. Returns the dead channels.
    pub fn expire_channels(&mut self, now: DateTime<Utc>) -> Vec<ChannelClosure> {
        for record in self.channels.values_mut() {
            record.expires = record.expires.min(now);
        }
        self.sweep(now)
    }

    /// Removes tokens past their life and the channels that died with them or on their
    /// own expiry. The shell calls it periodically and closes the returned sockets.
    pub fn sweep(&mut self, now: DateTime<Utc>) -> Vec<ChannelClosure> {
        let mut dead_tokens: HashMap<TokenId, ClosureReason> = HashMap::new();
        for (id, record) in &self.tokens {
            if record.revoked {
                dead_tokens.insert(*id, ClosureReason::TokenRevoked);
            } else if now >= record.expires_at {
                dead_tokens.insert(*id, ClosureReason::TokenExpired);
            }
        }
        self.tokens.retain(|id, _| !dead_tokens.contains_key(id));
        self.token_ids.retain(|_, id| !dead_tokens.contains_key(id));

        let dead_channels: Vec<(ChannelId, ClosureReason)> = self
            .channels
            .iter()
            .filter_map(|(id, record)| {
                let reason = if let Some(reason) = dead_tokens.get(&record.token) {
                    *reason
                } else if !self.tokens.contains_key(&record.token) {
                    ClosureReason::TokenExpired
                } else if now >= record.expires {
                    ClosureReason::ChannelExpired
                } else {
                    return None;
                };
                Some((id.clone(), reason))
            })
            .collect();
        dead_channels
            .into_iter()
            .filter_map(|(id, reason)| {
                let record = self.channels.remove(&id)?;
                Some(ChannelClosure {
                    channel: id,
                    client_id: record.client_id,
                    socket: record.socket,
                    reason,
                })
            })
            .collect()
    }

    /// The frame a closing channel's socket gets before it is closed.
    pub fn farewell_frame(&mut self, closure: &ChannelClosure) -> String {
        let correlation_id = self.correlation_id();
        match closure.reason {
            ClosureReason::Evicted => frames::system_frame(
                "no_longer_subscribed",
                "another_channel_subscribed",
                "channel superseded",
                closure.channel.as_str(),
                &closure.client_id,
                &correlation_id,
            ),
            ClosureReason::TokenRevoked => frames::system_frame(
                "token_revoked",
                "user_tokens_revoked",
                "the token of this channel was revoked",
                closure.channel.as_str(),
                &closure.client_id,
                &correlation_id,
            ),
            ClosureReason::ChannelExpired | ClosureReason::TokenExpired => {
                frames::channel_gone_frame()
            }
        }
    }

    /// `v2.system.socket_closing` with a fresh correlation id.
    pub fn socket_closing_frame(&mut self) -> String {
        let correlation_id = self.correlation_id();
        frames::socket_closing_frame(&correlation_id)
    }

    // ---- sockets -----------------------------------------------------------------------

    /// A WebSocket upgrade on `/channels/{id}` (no authentication: the channel is bound to
    /// its token). The previous socket, if any, is replaced.
    pub fn attach_socket(
        &mut self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<SocketAttach, NotifyError> {
        let id = ChannelId(id.to_owned());
        let alive = self
            .channels
            .get(&id)
            .is_some_and(|record| self.channel_alive(record, now));
        if !alive {
            return Err(NotifyError::ChannelNotFound);
        }
        let socket = SocketId(self.next_socket);
        self.next_socket += 1;
        let record = self
            .channels
            .get_mut(&id)
            .ok_or(NotifyError::ChannelNotFound)?;
        let replaced = record.socket.replace(socket);
        // Whatever was held for the old socket is lost with it: no replay.
        record.held = None;
        record.last_used = now;
        Ok(SocketAttach { socket, replaced })
    }

    /// The socket ended (closed by the client, dropped, replaced). Only the channel's
    /// current socket is detached, so a late notice about a replaced socket is harmless.
    pub fn detach_socket(&mut self, id: &ChannelId, socket: SocketId, now: DateTime<Utc>) {
        if let Some(record) = self.channels.get_mut(id) {
            if record.socket == Some(socket) {
                record.socket = None;
                record.held = None;
                record.last_used = now;
            }
        }
    }

    /// Detaches every socket (`POST /emulator/v1/sockets/drop`); the shell closes them.
    pub fn detach_all_sockets(&mut self, now: DateTime<Utc>) -> Vec<(ChannelId, SocketId)> {
        let mut detached = Vec::new();
        for (id, record) in &mut self.channels {
            if let Some(socket) = record.socket.take() {
                record.held = None;
                record.last_used = now;
                detached.push((id.clone(), socket));
            }
        }
        detached
    }

    /// Every attached socket.
    pub fn sockets(&self) -> Vec<(ChannelId, SocketId)> {
        self.channels
            .iter()
            .filter_map(|(id, record)| record.socket.map(|socket| (id.clone(), socket)))
            .collect()
    }

    /// A text frame from a client: `{"message":"ping"}`, or the WebSocket-side
    /// `subscribe`/`unsubscribe` protocol (API.md §3.3).
    pub fn ws_command(
        &mut self,
        id: &ChannelId,
        text: &str,
        now: DateTime<Utc>,
    ) -> WsCommandOutcome {
        let alive = self
            .channels
            .get(id)
            .is_some_and(|record| self.channel_alive(record, now));
        if !alive {
            return WsCommandOutcome::ChannelGone;
        }
        let Ok(command) = serde_json::from_str::<serde_json::Value>(text) else {
            return WsCommandOutcome::Reply(frames::ws_failure_frame("Invalid JSON", None));
        };
        let correlation_id = command.get("correlationId").and_then(|c| c.as_str());
        let topics: Vec<String> = command
            .get("topics")
            .and_then(|t| t.as_array())
            .map(|topics| {
                topics
                    .iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        match command.get("message").and_then(|m| m.as_str()) {
            Some("ping") => WsCommandOutcome::Reply(frames::pong_frame()),
            Some("subscribe") => {
                match self.apply_subscription(id, &topics, SubscribeMode::Add, false, now) {
                    Ok(_) => WsCommandOutcome::Reply(frames::ws_ack_frame(
                        "subscribed",
                        &topics,
                        correlation_id,
                    )),
                    Err(NotifyError::ChannelNotFound) => WsCommandOutcome::ChannelGone,
                    Err(error) => {
                        let body = error.body("");
                        let message = body["message"].as_str().unwrap_or("subscription refused");
                        WsCommandOutcome::Reply(frames::ws_failure_frame(message, correlation_id))
                    }
                }
            }
            Some("unsubscribe") => {
                if let Some(record) = self.channels.get_mut(id) {
                    record.topics.retain(|t| !topics.contains(t));
                    record.topic_set.retain(|t| !topics.contains(t));
                    record.last_used = now;
                }
                WsCommandOutcome::Reply(frames::ws_ack_frame(
                    "unsubscribed",
                    &topics,
                    correlation_id,
                ))
            }
            _ => {
                WsCommandOutcome::Reply(frames::ws_failure_frame("Unknown message", correlation_id))
            }
        }
    }

    // ---- fan-out -----------------------------------------------------------------------

    /// Channels subscribed to the event's topic, with or without a socket.
    pub fn route(&self, event: &TopicEvent) -> Vec<ChannelId> {
        self.channels
            .iter()
            .filter(|(_, record)| record.topic_set.contains(&event.topic))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The frames to send for published events: one envelope per event and subscribed
    /// live channel with a socket. Channels without a socket get nothing and never will
    /// (no replay). Duplicate and reorder faults apply here, per channel.
    pub fn deliver(&mut self, events: &[TopicEvent], now: DateTime<Utc>) -> Vec<Delivery> {
        let mut deliveries = Vec::new();
        for event in events {
            let targets: Vec<ChannelId> = self
                .route(event)
                .into_iter()
                .filter(|id| {
                    self.channels.get(id).is_some_and(|record| {
                        record.socket.is_some() && self.channel_alive(record, now)
                    })
                })
                .collect();
            if targets.is_empty() {
                continue;
            }
            let correlation_id = self.correlation_id();
            let frame = envelope(event, &correlation_id).to_string();
            for id in targets {
                let hold = faults::draw(self.faults.reorder_ratio, &mut self.fault_draws);
                let duplicate = faults::draw(self.faults.duplicate_ratio, &mut self.fault_draws);
                let Some(record) = self.channels.get_mut(&id) else {
                    continue;
                };
                let Some(socket) = record.socket else {
                    continue;
                };
                let mut frames = Vec::with_capacity(3);
                match record.held.take() {
                    // The held event goes out after this one: that is the reordering.
                    Some(held) => {
                        frames.push(frame.clone());
                        if duplicate {
                            frames.push(frame.clone());
                        }
                        frames.push(held.frame);
                    }
                    None if hold => {
                        record.held = Some(HeldFrame {
                            frame: frame.clone(),
                            since: now,
                        });
                    }
                    None => {
                        frames.push(frame.clone());
                        if duplicate {
                            frames.push(frame.clone());
                        }
                    }
                }
                deliveries.extend(frames.into_iter().map(|frame| Delivery {
                    channel: id.clone(),
                    socket,
                    frame,
                }));
            }
        }
        deliveries
    }

    /// Releases reorder-held events that waited [`REORDER_HOLD_MS`] for a successor.
    pub fn release_held(&mut self, now: DateTime<Utc>) -> Vec<Delivery> {
        let hold = TimeDelta::milliseconds(REORDER_HOLD_MS);
        let mut deliveries = Vec::new();
        for (id, record) in &mut self.channels {
            let due = record
                .held
                .as_ref()
                .is_some_and(|held| now >= held.since + hold);
            if !due {
                continue;
            }
            if let (Some(held), Some(socket)) = (record.held.take(), record.socket) {
                deliveries.push(Delivery {
                    channel: id.clone(),
                    socket,
                    frame: held.frame,
                });
            }
        }
        deliveries
    }
}

#[cfg(test)]
mod tests;
