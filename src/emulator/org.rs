//! The emulated org: queues and agents, message and voice conversations, routing with
//! synthetic agents, open messaging, and analytics computed from what actually ran.
//!
//! Pure state: time is an argument, ids come from a seeded RNG, so one seed and one sequence
//! of calls always give the same ids, snapshots and analytics. Never reads the clock, never
//! performs I/O; the actix shell (`convoy_actors::emulator::org_routes`) exposes each method
//! over the real Genesys path and publishes the returned [`TopicEvent`]s.
//!
//! Every change to a conversation bumps its internal version and returns the full snapshot
//! on the queue topic, its `.messages` variant (message conversations only) and the user
//! topics of every agent participant. Emulator choices the real API leaves open:
//! - message times are the emulator's `now`, not the client's `channel.time`;
//! - agentless conversations are published on the queue topics of the integration's queue
//!   (real Genesys routes them nowhere, so a daemon would never see them);
//! - a synthetic agent disconnects half-way through `wrapup_after_ms` after its last reply
//!   and records its wrap-up at the end of it, so after-call work has a real duration;
//! - receipts only move a message status forward (a late `Delivered` after `Read` is accepted
//!   and changes nothing);
//! - `If-Match` is checked (strict mode) on the participant-attributes PATCH only.

mod analytics;
mod conversations;
mod directory;
mod ids;
mod jobs;
mod messaging;
mod routing;
mod schedule;
mod writers;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::model::ErrorBody;

use super::TopicEvent;

pub use conversations::{
    Truth, TruthConversation, TruthMessage, TruthParticipant, TruthWrapup, Versioned,
};
pub use directory::{DirectoryQueue, DirectoryUser, OrgDirectory};

use conversations::Conv;
use directory::Directory;
use ids::IdSource;
use jobs::DetailsJob;
use schedule::{AgentLoad, DueIndex};
use writers::AttributeWriters;

/// How an emulated org is built and behaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgOptions {
    pub seed: u64,
    pub queues: usize,
    pub agents_per_queue: usize,
    /// Conversations carry a version: GET returns it as `ETag`, and a participant-attributes
    /// PATCH with a stale `If-Match` gets 409. Off, the emulator behaves like Genesys.
    pub strict_if_match: bool,
    /// The default routing profile of the synthetic agents.
    pub routing: RoutingProfile,
}

impl Default for OrgOptions {
    fn default() -> Self {
        OrgOptions {
            seed: 0x5eed,
            queues: 2,
            agents_per_queue: 3,
            strict_if_match: false,
            routing: RoutingProfile::default(),
        }
    }
}

/// What happens to a routed conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoutingOutcome {
    /// An agent answers, replies, disconnects and wraps up.
    Answered,
    /// The customer disconnects before any agent answers.
    Abandon,
    /// The first agent transfers to a second agent of the same queue, who finishes.
    Transfer,
}

impl RoutingOutcome {
    fn parse(text: &str) -> Option<RoutingOutcome> {
        match text {
            "answered" => Some(RoutingOutcome::Answered),
            "abandon" => Some(RoutingOutcome::Abandon),
            "transfer" => Some(RoutingOutcome::Transfer),
            _ => None,
        }
    }
}

/// Timings and outcome of the synthetic agents (JSON: these snake_case names). Per
/// conversation, the open-messaging inbound body's `metadata` may override each field with
/// `convoy.sim.answerAfterMs`, `convoy.sim.replyAfterMs`, `convoy.sim.agentReplies`,
/// `convoy.sim.wrapupAfterMs`, `convoy.sim.outcome`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingProfile {
    /// From the conversation entering the queue to an agent connecting (the agent alerts
    /// half-way through).
    pub answer_after_ms: u64,
    /// Interval between the agent connecting and each of its replies.
    pub reply_after_ms: u64,
    /// How many outbound messages the agent sends (voice: talk time is
    /// `agent_replies × reply_after_ms`).
    pub agent_replies: u32,
    /// From the last reply to the recorded wrap-up; the legs disconnect half-way through.
    pub wrapup_after_ms: u64,
    pub outcome: RoutingOutcome,
}

impl Default for RoutingProfile {
    fn default() -> Self {
        RoutingProfile {
            answer_after_ms: 2_000,
            reply_after_ms: 3_000,
            agent_replies: 2,
            wrapup_after_ms: 2_000,
            outcome: RoutingOutcome::Answered,
        }
    }
}

/// A partial [`RoutingProfile`]: `PUT /emulator/v1/routing` and the voice control route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingProfilePatch {
    #[serde(default)]
    pub answer_after_ms: Option<u64>,
    #[serde(default)]
    pub reply_after_ms: Option<u64>,
    #[serde(default)]
    pub agent_replies: Option<u32>,
    #[serde(default)]
    pub wrapup_after_ms: Option<u64>,
    #[serde(default)]
    pub outcome: Option<RoutingOutcome>,
}

impl RoutingProfile {
    /// This profile with the patch's fields replacing its own.
    pub fn patched(&self, patch: &RoutingProfilePatch) -> RoutingProfile {
        RoutingProfile {
            answer_after_ms: patch.answer_after_ms.unwrap_or(self.answer_after_ms),
            reply_after_ms: patch.reply_after_ms.unwrap_or(self.reply_after_ms),
            agent_replies: patch.agent_replies.unwrap_or(self.agent_replies),
            wrapup_after_ms: patch.wrapup_after_ms.unwrap_or(self.wrapup_after_ms),
            outcome: patch.outcome.unwrap_or(self.outcome),
        }
    }
}

/// Why a request to the org failed; each maps to the HTTP status and `ErrorBody` Genesys
/// would answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrgError {
    /// 404 `not.found`.
    #[error("{kind} {id} was not found")]
    NotFound { kind: &'static str, id: String },
    /// 400 `bad.request`, the message naming what is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// 400: `pageSize × pageNumber` beyond 100 000.
    #[error("Pagination may not exceed 100000 results.")]
    PaginationLimit,
    /// 409: strict mode, `If-Match` is not the conversation's current version.
    #[error("If-Match {given} does not match version {current}")]
    VersionMismatch { current: u64, given: String },
    /// 409: the state transition asked for is no longer possible.
    #[error("{0}")]
    Conflict(String),
}

impl OrgError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            OrgError::NotFound { .. } => 404,
            OrgError::BadRequest(_) | OrgError::PaginationLimit => 400,
            OrgError::VersionMismatch { .. } | OrgError::Conflict(_) => 409,
        }
    }

    /// The `code` of the error body.
    pub fn code(&self) -> &'static str {
        match self {
            OrgError::NotFound { .. } => "not.found",
            OrgError::BadRequest(_) | OrgError::PaginationLimit => "bad.request",
            // The real code for a version conflict was never observed; the payload
            // catalogue uses this placeholder (API.md §4.6).
            OrgError::VersionMismatch { .. } | OrgError::Conflict(_) => "general.conflict",
        }
    }

    /// The `ErrorBody` Genesys would send (without `contextId`, which the shell adds).
    pub fn error_body(&self) -> ErrorBody {
        let (message, details) = match self {
            OrgError::NotFound { kind, id } => (
                "The requested resource was not found.".to_owned(),
                vec![serde_json::json!({
                    "errorCode": "not.found",
                    "entityId": id,
                    "entityName": kind,
                })],
            ),
            OrgError::VersionMismatch { .. } => (
                "The version number of the modified resource must match the version number in the database."
                    .to_owned(),
                Vec::new(),
            ),
            other => (other.to_string(), Vec::new()),
        };
        ErrorBody {
            message: Some(message),
            code: Some(self.code().to_owned()),
            status: Some(self.status()),
            details,
            ..ErrorBody::default()
        }
    }
}

/// The result of a change: the response body and the events to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied<T> {
    pub body: T,
    pub events: Vec<TopicEvent>,
}

/// Which family of paths a participant operation came through: the generic
/// `/conversations/{id}/…` (any medium) or `/conversations/messages/{id}/…` (message
/// conversations only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathFamily {
    Any,
    Messages,
}

/// Parses a request body as JSON; an empty body reads as `{}`.
pub fn parse_json_body(bytes: &[u8]) -> Result<serde_json::Value, OrgError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Value::Object(serde_json::Map::new()));
    }
    serde_json::from_slice(bytes).map_err(|error| {
        OrgError::BadRequest(format!(
            "The request body is not valid JSON (line {}, column {}): {error}",
            error.line(),
            error.column()
        ))
    })
}

/// Reads `body` as `T`, naming the JSON path of any problem.
fn read_body<T: DeserializeOwned>(body: &serde_json::Value, what: &str) -> Result<T, OrgError> {
    serde_path_to_error::deserialize(body.clone()).map_err(|error| {
        let path = error.path().to_string();
        let reason = error.into_inner().to_string();
        if path == "." || path.is_empty() {
            OrgError::BadRequest(format!("Invalid {what}: {reason}"))
        } else {
            OrgError::BadRequest(format!("Invalid {what} at `{path}`: {reason}"))
        }
    })
}

/// Milliseconds precision, as Genesys timestamps have.
fn truncate_ms(now: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

/// `2025-03-04T14:05:12.301Z`.
fn iso(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The emulated org.
pub struct Org {
    options: OrgOptions,
    ids: IdSource,
    directory: Directory,
    /// Every conversation ever created, in creation order (the index is its sequence).
    conversations: Vec<Conv>,
    by_id: BTreeMap<String, usize>,
    /// (integration id, sender id) → the sender's conversation that has not ended.
    open_by_sender: BTreeMap<(String, String), usize>,
    /// Message id → (conversation, message index).
    messages_by_id: BTreeMap<String, (usize, usize)>,
    /// Conversations with routing steps still to run, by when the next is due.
    due: DueIndex,
    /// Per agent, its live legs in conversations with routing steps still to run.
    agent_load: AgentLoad,
    /// User id → index into `directory.agents`.
    agent_of_user: HashMap<String, usize>,
    /// Next agent to try, per queue (round robin among the least busy).
    next_agent: Vec<usize>,
    jobs: BTreeMap<String, DetailsJob>,
    last_now: DateTime<Utc>,
    /// Attribute writes refused for a stale `If-Match` (see [`Truth`]).
    if_match_conflicts: u64,
    /// Of those, the ones another writer had made stale (see [`Truth`]).
    cross_writer_conflicts: u64,
    attribute_writers: AttributeWriters,
}

impl std::fmt::Debug for Org {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Org")
            .field("options", &self.options)
            .field("conversations", &self.conversations.len())
            .field("jobs", &self.jobs.len())
            .finish()
    }
}

impl Org {
    /// Builds the org: `queues` queues named "Queue N", each with `agents_per_queue` agents
    /// and one open-messaging integration.
    pub fn new(options: OrgOptions, now: DateTime<Utc>) -> Org {
        let mut ids = IdSource::new(options.seed);
        let directory = Directory::build(&options, &mut ids);
        let queues = directory.queues.len();
        let agent_of_user = directory
            .agents
            .iter()
            .enumerate()
            .map(|(index, agent)| (agent.id.clone(), index))
            .collect();
        let agent_load = AgentLoad::new(directory.agents.len());
        Org {
            options,
            ids,
            directory,
            conversations: Vec::new(),
            by_id: BTreeMap::new(),
            open_by_sender: BTreeMap::new(),
            messages_by_id: BTreeMap::new(),
            due: DueIndex::default(),
            agent_load,
            agent_of_user,
            next_agent: vec![0; queues],
            jobs: BTreeMap::new(),
            last_now: truncate_ms(now),
            if_match_conflicts: 0,
            cross_writer_conflicts: 0,
            attribute_writers: AttributeWriters::default(),
        }
    }

    pub fn options(&self) -> &OrgOptions {
        &self.options
    }

    pub fn queue_ids(&self) -> Vec<String> {
        self.directory.queues.iter().map(|q| q.id.clone()).collect()
    }

    pub fn user_ids(&self) -> Vec<String> {
        self.directory.agents.iter().map(|a| a.id.clone()).collect()
    }

    /// Open-messaging integration ids, one per queue, in queue order.
    pub fn integration_ids(&self) -> Vec<String> {
        self.directory
            .queues
            .iter()
            .map(|q| q.integration_id.clone())
            .collect()
    }

    /// `GET /emulator/v1/org`.
    pub fn directory(&self) -> OrgDirectory {
        self.directory.describe()
    }

    /// The default routing profile.
    pub fn routing_profile(&self) -> &RoutingProfile {
        &self.options.routing
    }

    /// `PUT /emulator/v1/routing`: the body is a [`RoutingProfilePatch`] (snake_case);
    /// returns the resulting default profile.
    pub fn set_routing_profile(
        &mut self,
        body: &serde_json::Value,
    ) -> Result<RoutingProfile, OrgError> {
        let patch: RoutingProfilePatch = read_body(body, "routing profile")?;
        self.options.routing = self.options.routing.patched(&patch);
        Ok(self.options.routing.clone())
    }

    /// `GET /api/v2/routing/queues?pageSize=&pageNumber=`.
    pub fn list_queues(
        &self,
        page_size: Option<&str>,
        page_number: Option<&str>,
    ) -> Result<serde_json::Value, OrgError> {
        self.directory.list_queues(page_size, page_number)
    }

    /// `GET /api/v2/users?pageSize=&pageNumber=`.
    pub fn list_users(
        &self,
        page_size: Option<&str>,
        page_number: Option<&str>,
    ) -> Result<serde_json::Value, OrgError> {
        self.directory.list_users(page_size, page_number)
    }

    /// `GET /emulator/v1/truth`: every conversation with participant and message states.
    pub fn truth(&self) -> Truth {
        Truth {
            conversations: self.conversations.iter().map(Conv::truth).collect(),
            if_match_conflicts: self.if_match_conflicts,
            cross_writer_conflicts: self.cross_writer_conflicts,
            attribute_writers: self.attribute_writers.seen().cloned().collect(),
        }
    }

    /// Conversations whose synthetic routing still has steps to run.
    pub fn conversations_being_routed(&self) -> usize {
        self.due.len()
    }

    /// Number of conversations ever created.
    pub fn conversation_count(&self) -> usize {
        self.conversations.len()
    }

    fn conversation_index(&self, id: &str) -> Result<usize, OrgError> {
        self.by_id
            .get(id)
            .copied()
            .ok_or_else(|| OrgError::NotFound {
                kind: "conversation",
                id: id.to_owned(),
            })
    }

    /// Records a change to conversation `index`: bumps its version, brings the routing
    /// indexes up to date with it (a change may add steps or end agent legs) and returns
    /// the snapshot events.
    fn changed(&mut self, index: usize) -> Vec<TopicEvent> {
        self.reindex(index);
        let Some(conv) = self.conversations.get_mut(index) else {
            return Vec::new();
        };
        conv.version += 1;
        // Messages added by routing steps become addressable by receipts here.
        for (position, message) in conv.messages.iter().enumerate() {
            self.messages_by_id
                .entry(message.id.clone())
                .or_insert((index, position));
        }
        if conv.end.is_some() {
            if let Some(sender) = &conv.sender {
                if self.open_by_sender.get(sender) == Some(&index) {
                    self.open_by_sender.remove(sender);
                }
            }
        }
        conv.snapshot_events(&self.directory)
    }

    /// Re-derives conversation `index`'s entries in the routing indexes from its state:
    /// when its next step is due, and — while it has steps to run — which agents its live
    /// legs keep busy. Called on every change and after every tick's steps.
    fn reindex(&mut self, index: usize) {
        let Some(conv) = self.conversations.get(index) else {
            return;
        };
        let next = conv.plan.first().map(|step| step.at);
        let legs = if next.is_some() {
            conv.participants
                .iter()
                .filter(|part| part.is_live())
                .filter_map(|part| part.user_id.as_deref())
                .filter_map(|user| self.agent_of_user.get(user).copied())
                .collect()
        } else {
            Vec::new()
        };
        self.due.set(index, next);
        self.agent_load.recount(index, legs);
    }

    fn remember_now(&mut self, now: DateTime<Utc>) -> DateTime<Utc> {
        let now = truncate_ms(now);
        if now > self.last_now {
            self.last_now = now;
        }
        now
    }
}
