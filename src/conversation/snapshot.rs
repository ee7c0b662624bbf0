//! What one snapshot says about a conversation, in domain terms: validated ids, every
//! communication of every participant, every message of every communication, their
//! attachments and stickers. Both wire shapes (`ConversationBody` and
//! `MessageConversationBody`) normalise to [`ConversationSnapshot`]; `parse` builds it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::ids::{CommunicationId, ConversationId, IdText, MessageId, ParticipantId};
use crate::model::{
    AfterCallWorkState, CommunicationState, Direction, DisconnectType, MessageStatus, MessageType,
    Purpose,
};

/// One conversation as one snapshot showed it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConversationSnapshot {
    pub conversation_id: ConversationId,
    /// REST bodies only; the topics carry no conversation-level times.
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub participants: Vec<ParticipantSnapshot>,
}

/// One participant as one snapshot showed it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParticipantSnapshot {
    pub id: ParticipantId,
    pub purpose: Option<Purpose>,
    pub name: Option<String>,
    /// Held as the state holds them (a UUID inline), read once from the frame.
    pub user_id: Option<IdText>,
    pub queue_id: Option<IdText>,
    /// Participant-level state: only the `.messages` topics (and REST message
    /// conversations) carry it; elsewhere state lives on each communication.
    pub state: Option<CommunicationState>,
    pub disconnect_type: Option<DisconnectType>,
    /// `errorInfo` was present on the participant.
    pub error: bool,
    pub connected_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub wrapup_required: Option<bool>,
    pub wrapup_skipped: Option<bool>,
    pub wrapup: Option<WrapupRecord>,
    pub attributes: BTreeMap<String, String>,
    pub communications: Vec<CommunicationSnapshot>,
    /// Every message of every communication of this participant (and, on the `.messages`
    /// shape, the participant's own list).
    pub messages: Vec<MessageSnapshot>,
}

/// The media arrays of a participant, by their JSON name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Medium {
    Calls,
    Callbacks,
    Chats,
    Cobrowsesessions,
    Emails,
    Messages,
    InternalMessages,
    Screenshares,
    SocialExpressions,
    Videos,
}

impl Medium {
    /// Maps the JSON array name (`calls`, `socialExpressions`, …) to the medium.
    pub fn from_array_name(name: &str) -> Option<Medium> {
        Some(match name {
            "calls" => Medium::Calls,
            "callbacks" => Medium::Callbacks,
            "chats" => Medium::Chats,
            "cobrowsesessions" => Medium::Cobrowsesessions,
            "emails" => Medium::Emails,
            "messages" => Medium::Messages,
            "internalMessages" => Medium::InternalMessages,
            "screenshares" => Medium::Screenshares,
            "socialExpressions" => Medium::SocialExpressions,
            "videos" => Medium::Videos,
            _ => return None,
        })
    }
}

/// One communication (leg) of a participant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommunicationSnapshot {
    pub id: CommunicationId,
    pub medium: Medium,
    pub state: Option<CommunicationState>,
    pub direction: Option<Direction>,
    pub disconnect_type: Option<DisconnectType>,
    /// `errorInfo` was present: Genesys reports failed delivery on a leg this way.
    pub error: bool,
    pub connected_time: Option<DateTime<Utc>>,
    pub disconnected_time: Option<DateTime<Utc>>,
    pub message_type: Option<MessageType>,
    pub transcript_uri: Option<String>,
    pub after_call_work: Option<AfterCallWorkState>,
    pub wrapup: Option<WrapupRecord>,
}

/// A recorded wrap-up. Ordered so that joins of conflicting records are deterministic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct WrapupRecord {
    pub end_time: Option<DateTime<Utc>>,
    pub code: Option<String>,
    pub name: Option<String>,
    pub notes: Option<String>,
    pub duration_seconds: Option<i64>,
}

/// Which way a message travelled, derived from its status: customers' messages are
/// `received`; Genesys' outbound messages go `queued → sent → delivery-* → read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageDirection {
    Inbound,
    Outbound,
    Unknown,
}

impl MessageDirection {
    pub fn from_status(status: Option<&MessageStatus>) -> MessageDirection {
        match status {
            Some(MessageStatus::Received) => MessageDirection::Inbound,
            Some(
                MessageStatus::Queued
                | MessageStatus::Sent
                | MessageStatus::Failed
                | MessageStatus::DeliverySuccess
                | MessageStatus::DeliveryFailed
                | MessageStatus::Read
                | MessageStatus::Published,
            ) => MessageDirection::Outbound,
            Some(MessageStatus::Removed | MessageStatus::Unknown(_)) | None => {
                MessageDirection::Unknown
            }
        }
    }
}

/// One message as one snapshot showed it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageSnapshot {
    pub id: MessageId,
    /// Absent on the `.messages` shape, where the participant is the leg.
    pub communication_id: Option<CommunicationId>,
    pub status: Option<MessageStatus>,
    pub message_time: Option<DateTime<Utc>>,
    pub segment_count: Option<u32>,
    pub media: Vec<Attachment>,
    pub stickers: Vec<Sticker>,
    /// `messagesTranscriptUri` of the communication the message belongs to.
    pub transcript_uri: Option<String>,
}

/// A media attachment of a message.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Attachment {
    pub url: String,
    pub id: Option<String>,
    pub mime_type: Option<String>,
    pub size_bytes: Option<u64>,
    pub name: Option<String>,
}

impl Attachment {
    /// Attachments are identified by their media id when Genesys gives one, else by URL.
    pub fn key(&self) -> &str {
        self.id.as_deref().unwrap_or(&self.url)
    }
}

/// A sticker of a message.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Sticker {
    pub id: Option<String>,
    pub url: Option<String>,
}

/// Which side of a voice conversation an utterance came from.
pub use crate::model::TranscriptChannel as SpeakerSide;

/// One real-time transcript segment (API.md §3.9).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TranscriptSegment {
    pub utterance_id: String,
    pub communication_id: Option<CommunicationId>,
    pub is_final: bool,
    pub speaker: SpeakerSide,
    pub text: String,
    /// Epoch milliseconds: `sessionStartTimeMs + offsetMs`.
    pub start_ms: Option<i64>,
    /// Epoch milliseconds: start + `durationMs`.
    pub end_ms: Option<i64>,
    pub confidence: Option<f64>,
}

/// One `v2.conversations.{id}.transcription` event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TranscriptionEvent {
    pub conversation_id: ConversationId,
    pub communication_id: Option<CommunicationId>,
    pub segments: Vec<TranscriptSegment>,
}
