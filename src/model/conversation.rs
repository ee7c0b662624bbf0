//! Conversation bodies exactly as Genesys sends them (API.md §3.6, §3.7, §4.2, §4.3).
//!
//! Two shapes exist:
//! - [`ConversationBody`]: `v2.users.{id}.conversations`, `v2.routing.queues.{id}.conversations`
//!   and `GET /api/v2/conversations/{id}`. Participants carry no `state`; state lives on each
//!   communication (`participants[].messages[].state`, `participants[].calls[].state`, …).
//! - [`MessageConversationBody`]: the `.messages` topic variants and
//!   `GET /api/v2/conversations/messages/{id}`. Here each participant *is* one message leg and
//!   carries `state`; its messages name the message as `message: {id}` (topics) or
//!   `messageId` (REST).
//!
//! Everything the API may omit is optional, unknown fields are ignored, unknown enum values are
//! kept, and `null` is read as absent (Genesys omits nulls, but proxies and users' captures do
//! not always). Serialization omits absent fields, as Genesys does; the emulator relies on that.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use super::enums::{
    AfterCallWorkState, CommunicationState, Direction, DisconnectType, MessageStatus, MessageType,
    Purpose,
};

/// Reads `null` or an absent field as the type's default (empty list, empty map).
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Participant attributes are documented as string → string, but captures from proxies and
/// older integrations sometimes carry numbers or booleans; keep their JSON text instead of
/// rejecting the whole snapshot.
fn lenient_attributes<'de, D>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: Deserializer<'de>,
{
    let raw: Option<BTreeMap<String, serde_json::Value>> = Option::deserialize(deserializer)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, value)| !value.is_null())
        .map(|(key, value)| match value {
            serde_json::Value::String(text) => (key, text),
            other => (key, other.to_string()),
        })
        .collect())
}

/// `{id, name?, selfUri?}` references to users, queues, messages.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntityRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_uri: Option<String>,
}

/// `toAddress` / `fromAddress` / `self` / `other`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_raw: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_normalized: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_raw: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_displayable: Option<String>,
}

/// A recorded wrap-up (`wrapup`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Wrapup {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<DateTime<Utc>>,
}

/// `afterCallWork` of a communication.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AfterCallWork {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<AfterCallWorkState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<DateTime<Utc>>,
}

/// One attachment of a message (`media[]`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageMedia {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A MIME type such as `image/jpeg`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_length_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// One sticker of a message (`stickers[]`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageSticker {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// One message of a message communication. The conversation topics and REST name it
/// `messageId`; the `.messages` topics name it `message: {id}`. Both are accepted.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<EntityRef>,
    #[serde(
        default,
        rename = "messageURI",
        skip_serializing_if = "Option::is_none"
    )]
    pub message_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_status: Option<MessageStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_segment_count: Option<u32>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub media: Vec<MessageMedia>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub stickers: Vec<MessageSticker>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_info: Option<serde_json::Value>,
}

impl MessageDetails {
    /// The message id, whichever of the two spellings carried it.
    pub fn id(&self) -> Option<&str> {
        self.message_id
            .as_deref()
            .or_else(|| self.message.as_ref().and_then(|m| m.id.as_deref()))
    }
}

/// One communication (a leg of one medium) of a participant: `calls[]`, `messages[]`, …
/// The media share this superset shape; fields a medium does not use stay absent.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Communication {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<CommunicationState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_state: Option<CommunicationState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnect_type: Option<DisconnectType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnected_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_info: Option<serde_json::Value>,
    /// Messaging platform of a message communication.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub message_type: Option<MessageType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_address: Option<Address>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_address: Option<Address>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub messages: Vec<MessageDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages_transcript_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapup: Option<Wrapup>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_call_work: Option<AfterCallWork>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_call_work_required: Option<bool>,
}

/// A participant of [`ConversationBody`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_contact_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<Purpose>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapup_required: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapup_prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapup: Option<Wrapup>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_acw_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_acw_time: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "lenient_attributes")]
    pub attributes: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub calls: Vec<Communication>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub callbacks: Vec<Communication>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub chats: Vec<Communication>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub cobrowsesessions: Vec<Communication>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub emails: Vec<Communication>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub messages: Vec<Communication>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub internal_messages: Vec<Communication>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub screenshares: Vec<Communication>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub social_expressions: Vec<Communication>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub videos: Vec<Communication>,
}

impl Participant {
    /// Every communication of every medium, with the medium's array name
    /// (`calls`, `messages`, …) — the JSON path segment it came from.
    pub fn communications(&self) -> impl Iterator<Item = (&'static str, usize, &Communication)> {
        let media: [(&'static str, &Vec<Communication>); 10] = [
            ("calls", &self.calls),
            ("callbacks", &self.callbacks),
            ("chats", &self.chats),
            ("cobrowsesessions", &self.cobrowsesessions),
            ("emails", &self.emails),
            ("messages", &self.messages),
            ("internalMessages", &self.internal_messages),
            ("screenshares", &self.screenshares),
            ("socialExpressions", &self.social_expressions),
            ("videos", &self.videos),
        ];
        media.into_iter().flat_map(|(medium, list)| {
            list.iter()
                .enumerate()
                .map(move |(index, communication)| (medium, index, communication))
        })
    }
}

/// Body of the all-media conversation topics and of `GET /api/v2/conversations/{id}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// REST only: the snapshot topics have no conversation-level times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_participants: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inactivity_timeout: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub participants: Vec<Participant>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_uri: Option<String>,
}

/// A participant of [`MessageConversationBody`]: one message leg, with its own `state`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageParticipant {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<Purpose>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<CommunicationState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_state: Option<CommunicationState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnect_type: Option<DisconnectType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapup_required: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapup_prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapup_skipped: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapup: Option<Wrapup>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_acw_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_acw_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<EntityRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<EntityRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_info: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "lenient_attributes")]
    pub attributes: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Id of the matching communication on the other leg.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub message_type: Option<MessageType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_address: Option<Address>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_address: Option<Address>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub messages: Vec<MessageDetails>,
}

/// Body of the `.messages` conversation topics and of `GET /api/v2/conversations/messages/{id}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageConversationBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub participants: Vec<MessageParticipant>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub other_media_uris: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inactivity_timeout: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_uri: Option<String>,
}
