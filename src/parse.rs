//! Frame text → typed domain events. Never panics: every problem is a [`ParseError`] that
//! names the JSON path of the offending field (`eventBody.participants[2].messages[0].messageTime`).
//!
//! Two stages: serde reads the wire models (`model`), tolerating unknown fields and enum
//! values, with `serde_path_to_error` recording where a type mismatch happened; then the
//! conversion to domain types checks the fields Convoy cannot work without (ids, attachment
//! URLs) and reports a missing one as [`ParseError::MissingField`] with its path.
//!
//! On the live path snapshot bodies are read first by `scan`, by hand, straight into the
//! domain snapshot (only the fields it takes, text borrowed until then); a body that read
//! declines is read again with the owned model and path tracking, so errors are named as
//! above. And
//! [`classify_bytes_fresh`] drops a snapshot body byte-identical to a recent one (the same
//! change on another topic) before any typed read.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::conversation::snapshot::{
    Attachment, CommunicationSnapshot, ConversationSnapshot, Medium, MessageSnapshot,
    ParticipantSnapshot, Sticker, TranscriptSegment, TranscriptionEvent, WrapupRecord,
};
use crate::ids::{CommunicationId, ConversationId, IdText, MessageId, ParticipantId};
use crate::model::{
    ChannelReply, Communication, ConversationBody, DetailEventBody, Envelope,
    MessageConversationBody, MessageDetails, MessageParticipant, MetadataMessage, Participant,
    SystemMessage, TranscriptChannel, TranscriptionBody, Wrapup,
};
use crate::stream::duplicates::BodyShape;

mod fresh;
mod scan;
mod timestamp;

pub use fresh::{classify_bytes_fresh, Fresh};

/// Why a frame or body could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("frame is not UTF-8 text (invalid byte at offset {offset})")]
    NotUtf8 { offset: usize },
    #[error("frame is not JSON (line {line}, column {column}): {reason}")]
    NotJson {
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("{path}: expected a JSON object")]
    NotAnObject { path: String },
    #[error("{path}: {reason}")]
    Malformed { path: String, reason: String },
    #[error("{path}: required field is missing")]
    MissingField { path: String },
}

impl ParseError {
    /// The JSON path the error names, when it names one.
    pub fn path(&self) -> Option<&str> {
        match self {
            ParseError::NotAnObject { path }
            | ParseError::Malformed { path, .. }
            | ParseError::MissingField { path } => Some(path),
            ParseError::NotUtf8 { .. } | ParseError::NotJson { .. } => None,
        }
    }
}

/// Which subscription a snapshot arrived on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum TopicSubject {
    Queue(String),
    User(String),
}

/// The body shape of a conversation topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotShape {
    /// `….conversations`: all media, state on each communication.
    AllMedia,
    /// `….conversations.messages`: one leg per participant, state on the participant.
    Messages,
    /// `….conversations.{calls|chats|…}`: media-specific, read with the same per-participant
    /// shape as `.messages`.
    Medium(String),
}

/// Where a conversation snapshot came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotTopic {
    pub subject: TopicSubject,
    pub shape: SnapshotShape,
}

/// A detail event (`v2.detail.events.conversation.{id}.{kind}`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetailEvent {
    pub conversation_id: ConversationId,
    /// The topic suffix: `acd.start`, `user.end`, `acw`, …
    pub kind: String,
    pub body: DetailEventBody,
}

/// What a frame is. Only conversation snapshots, transcription and detail events carry
/// conversation data; the rest steer the stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Classified {
    Heartbeat,
    Pong,
    SocketClosing {
        message: Option<String>,
    },
    /// Any other `v2.system.*` frame (`no_longer_subscribed`, `token_revoked`, …).
    System {
        topic: String,
        body: SystemMessage,
    },
    /// A reply of the WebSocket-side subscribe protocol (`{"result": "404", …}`).
    ChannelReply(ChannelReply),
    Snapshot {
        topic: SnapshotTopic,
        snapshot: ConversationSnapshot,
    },
    Transcription(TranscriptionEvent),
    Detail(DetailEvent),
    /// A well-formed frame on a topic Convoy does not follow.
    UnknownTopic {
        topic: String,
    },
}

/// Low-cardinality label of a classification, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameKind {
    Heartbeat,
    Pong,
    SocketClosing,
    System,
    ChannelReply,
    Snapshot,
    Transcription,
    Detail,
    UnknownTopic,
}

impl FrameKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FrameKind::Heartbeat => "heartbeat",
            FrameKind::Pong => "pong",
            FrameKind::SocketClosing => "socket_closing",
            FrameKind::System => "system",
            FrameKind::ChannelReply => "channel_reply",
            FrameKind::Snapshot => "snapshot",
            FrameKind::Transcription => "transcription",
            FrameKind::Detail => "detail",
            FrameKind::UnknownTopic => "unknown_topic",
        }
    }
}

impl Classified {
    pub fn kind(&self) -> FrameKind {
        match self {
            Classified::Heartbeat => FrameKind::Heartbeat,
            Classified::Pong => FrameKind::Pong,
            Classified::SocketClosing { .. } => FrameKind::SocketClosing,
            Classified::System { .. } => FrameKind::System,
            Classified::ChannelReply(_) => FrameKind::ChannelReply,
            Classified::Snapshot { .. } => FrameKind::Snapshot,
            Classified::Transcription(_) => FrameKind::Transcription,
            Classified::Detail(_) => FrameKind::Detail,
            Classified::UnknownTopic { .. } => FrameKind::UnknownTopic,
        }
    }

    /// The conversation this frame is about, if any.
    pub fn conversation_id(&self) -> Option<&ConversationId> {
        match self {
            Classified::Snapshot { snapshot, .. } => Some(&snapshot.conversation_id),
            Classified::Transcription(event) => Some(&event.conversation_id),
            Classified::Detail(event) => Some(&event.conversation_id),
            _ => None,
        }
    }
}

/// Classifies raw frame bytes (a WebSocket text frame, or a line of a capture).
pub fn classify_bytes(bytes: &[u8]) -> Result<Classified, ParseError> {
    classify(frame_text(bytes)?)
}

/// A frame's bytes as text, or the offset of the first byte that is not UTF-8.
pub(crate) fn frame_text(bytes: &[u8]) -> Result<&str, ParseError> {
    std::str::from_utf8(bytes).map_err(|error| ParseError::NotUtf8 {
        offset: error.valid_up_to(),
    })
}

/// Classifies one frame of text. The envelope is read without building a JSON tree of the
/// body: `eventBody` is kept as the raw text and deserialised straight into its typed
/// shape, so a large snapshot costs one typed copy, not a `Value` tree besides it.
pub fn classify(text: &str) -> Result<Classified, ParseError> {
    if !text.trim_start().starts_with('{') {
        // Not an object: say so precisely (valid JSON of another type) or report the
        // syntax error.
        serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(not_json)?;
        return Err(ParseError::NotAnObject {
            path: "$".to_owned(),
        });
    }
    let envelope = read_envelope(text)?;
    classify_envelope(text, envelope)
}

/// Reads the envelope of a frame that starts with `{`, its body left as raw text. Path
/// tracking only when the fast read fails (see `Body::read`).
fn read_envelope(text: &str) -> Result<RawEnvelope<'_>, ParseError> {
    match serde_json::from_str(text) {
        Ok(envelope) => Ok(envelope),
        Err(_) => {
            let mut deserializer = serde_json::Deserializer::from_str(text);
            let envelope: RawEnvelope<'_> = serde_path_to_error::deserialize(&mut deserializer)
                .map_err(|error| {
                    let path = error.path().to_string();
                    let inner = error.into_inner();
                    match inner.classify() {
                        serde_json::error::Category::Data => ParseError::Malformed {
                            path,
                            reason: inner.to_string(),
                        },
                        _ => not_json(inner),
                    }
                })?;
            deserializer.end().map_err(not_json)?;
            Ok(envelope)
        }
    }
}

fn classify_envelope(text: &str, envelope: RawEnvelope<'_>) -> Result<Classified, ParseError> {
    if envelope.topic_name.is_none() && envelope.result.is_some() {
        return Body::Raw(text).read("").map(Classified::ChannelReply);
    }
    let topic = envelope.topic_name.ok_or_else(|| missing("topicName"))?;
    classify_body(topic, envelope.event_body.map(Body::from_raw))
}

fn not_json(error: serde_json::Error) -> ParseError {
    ParseError::NotJson {
        line: error.line(),
        column: error.column(),
        reason: error.to_string(),
    }
}

/// Classifies an already-decoded frame.
pub fn classify_value(value: Value) -> Result<Classified, ParseError> {
    if !value.is_object() {
        return Err(ParseError::NotAnObject {
            path: "$".to_owned(),
        });
    }
    if value.get("topicName").is_none() && value.get("result").is_some() {
        let reply: ChannelReply = read_at(value, "")?;
        return Ok(Classified::ChannelReply(reply));
    }
    let envelope: Envelope = read_at(value, "")?;
    let topic = envelope.topic_name.ok_or_else(|| missing("topicName"))?;
    classify_body(topic, envelope.event_body.map(Body::Value))
}

/// The envelope with its body left as raw text.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEnvelope<'a> {
    #[serde(default)]
    topic_name: Option<String>,
    #[serde(default, borrow)]
    event_body: Option<&'a serde_json::value::RawValue>,
    #[serde(default, borrow)]
    result: Option<&'a serde_json::value::RawValue>,
}

/// An event body, decoded (`classify_value`) or still raw text (`classify`).
enum Body<'a> {
    Value(Value),
    Raw(&'a str),
}

impl<'a> Body<'a> {
    fn from_raw(raw: &'a serde_json::value::RawValue) -> Body<'a> {
        Body::Raw(raw.get())
    }

    fn is_null(&self) -> bool {
        match self {
            Body::Value(value) => value.is_null(),
            Body::Raw(text) => text.trim() == "null",
        }
    }

    fn read<T: DeserializeOwned>(self, prefix: &str) -> Result<T, ParseError> {
        match self {
            Body::Value(value) => read_at(value, prefix),
            Body::Raw(text) => {
                // The fast path first: tracking the path of every value costs ~a fifth of
                // the parse; it is only needed to name where a body is wrong, so a body
                // that fails is read again with tracking.
                if let Ok(value) = serde_json::from_str(text) {
                    return Ok(value);
                }
                let mut deserializer = serde_json::Deserializer::from_str(text);
                serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
                    let path = join_path(prefix, &error.path().to_string());
                    ParseError::Malformed {
                        path,
                        reason: error.into_inner().to_string(),
                    }
                })
            }
        }
    }
}

/// Like [`Body::read`] for an optional body; an absent or null body reads as the default.
fn read_optional<T: DeserializeOwned + Default>(
    body: Option<Body<'_>>,
    prefix: &str,
) -> Result<T, ParseError> {
    match body {
        None => Ok(T::default()),
        Some(body) if body.is_null() => Ok(T::default()),
        Some(body) => body.read(prefix),
    }
}

fn classify_body(topic: String, body: Option<Body<'_>>) -> Result<Classified, ParseError> {
    if topic == "channel.metadata" {
        let message: MetadataMessage = read_optional(body, "eventBody")?;
        return Ok(match message.message.as_deref() {
            Some("pong") => Classified::Pong,
            // The heartbeat text is "WebSocket Heartbeat"; any other metadata frame is also
            // proof of life and is treated the same way.
            _ => Classified::Heartbeat,
        });
    }
    if topic == "v2.system.socket_closing" {
        let message: MetadataMessage = read_optional(body, "eventBody")?;
        return Ok(Classified::SocketClosing {
            message: message.message,
        });
    }
    if topic.starts_with("v2.system.") {
        let system: SystemMessage = read_optional(body, "eventBody")?;
        return Ok(Classified::System {
            topic,
            body: system,
        });
    }
    if let Some(snapshot_topic) = snapshot_topic(&topic) {
        let body = body.ok_or_else(|| missing("eventBody"))?;
        let snapshot = read_snapshot(body, &snapshot_topic.shape)?;
        return Ok(Classified::Snapshot {
            topic: snapshot_topic,
            snapshot,
        });
    }
    if let Some(conversation_id) = topic
        .strip_prefix("v2.conversations.")
        .and_then(|rest| rest.strip_suffix(".transcription"))
    {
        let body = body.ok_or_else(|| missing("eventBody"))?;
        let wire: TranscriptionBody = body.read("eventBody")?;
        let event = transcription_event(&wire, conversation_id, "eventBody")?;
        return Ok(Classified::Transcription(event));
    }
    if let Some(rest) = topic.strip_prefix("v2.detail.events.conversation.") {
        if let Some((conversation_id, kind)) = rest.split_once('.') {
            let body = body.ok_or_else(|| missing("eventBody"))?;
            let wire: DetailEventBody = body.read("eventBody")?;
            return Ok(Classified::Detail(DetailEvent {
                conversation_id: ConversationId::from(conversation_id),
                kind: kind.to_owned(),
                body: wire,
            }));
        }
    }
    Ok(Classified::UnknownTopic { topic })
}

/// Reads a snapshot body of the given shape: the hand-written read first (see [`scan`]);
/// a body it declines is read again with the owned model and path tracking, which names
/// the problem (or, should the owned model accept what the scan declined, gives the
/// snapshot).
fn read_snapshot(
    body: Body<'_>,
    shape: &SnapshotShape,
) -> Result<ConversationSnapshot, ParseError> {
    if let Body::Raw(text) = &body {
        if let Some(snapshot) = scan::body(text, fresh::body_shape(shape)) {
            return Ok(snapshot);
        }
    }
    read_snapshot_owned(body, shape)
}

/// The owned read of a snapshot body: every documented field, path tracking on failure.
fn read_snapshot_owned(
    body: Body<'_>,
    shape: &SnapshotShape,
) -> Result<ConversationSnapshot, ParseError> {
    match shape {
        SnapshotShape::AllMedia => {
            let wire: ConversationBody = body.read("eventBody")?;
            conversation_snapshot(&wire, "eventBody")
        }
        SnapshotShape::Messages | SnapshotShape::Medium(_) => {
            let wire: MessageConversationBody = body.read("eventBody")?;
            message_conversation_snapshot(&wire, "eventBody")
        }
    }
}

/// Recognises `v2.users.{id}.conversations[.medium]` and
/// `v2.routing.queues.{id}.conversations[.medium]`.
pub fn snapshot_topic(topic: &str) -> Option<SnapshotTopic> {
    let parts = snapshot_topic_parts(topic)?;
    let subject = if parts.user {
        TopicSubject::User(parts.id.to_owned())
    } else {
        TopicSubject::Queue(parts.id.to_owned())
    };
    let shape = match parts.medium {
        None => SnapshotShape::AllMedia,
        Some("messages") => SnapshotShape::Messages,
        Some(medium) => SnapshotShape::Medium(medium.to_owned()),
    };
    Some(SnapshotTopic { subject, shape })
}

/// A snapshot topic's parts, borrowed from its text: what [`snapshot_topic`] owns, for a
/// caller that needs only the shape (a duplicate's check, once per frame).
pub(crate) struct SnapshotTopicParts<'a> {
    pub user: bool,
    pub id: &'a str,
    /// `None`: `….conversations` (all media); else the medium after it.
    pub medium: Option<&'a str>,
}

impl SnapshotTopicParts<'_> {
    pub fn body_shape(&self) -> BodyShape {
        match self.medium {
            None => BodyShape::AllMedia,
            Some(_) => BodyShape::PerParticipant,
        }
    }
}

pub(crate) fn snapshot_topic_parts(topic: &str) -> Option<SnapshotTopicParts<'_>> {
    let (user, rest) = if let Some(rest) = topic.strip_prefix("v2.users.") {
        (true, rest)
    } else {
        (false, topic.strip_prefix("v2.routing.queues.")?)
    };
    let (id, rest) = rest.split_once('.')?;
    let medium = match rest {
        "conversations" => None,
        other => {
            let medium = other.strip_prefix("conversations.")?;
            if medium.is_empty() || medium.contains('.') {
                return None;
            }
            Some(medium)
        }
    };
    Some(SnapshotTopicParts { user, id, medium })
}

fn missing(path: &str) -> ParseError {
    ParseError::MissingField {
        path: path.to_owned(),
    }
}

fn join_path(prefix: &str, inner: &str) -> String {
    match (prefix.is_empty(), inner.is_empty() || inner == ".") {
        (true, true) => "$".to_owned(),
        (true, false) => inner.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) if inner.starts_with('[') => format!("{prefix}{inner}"),
        (false, false) => format!("{prefix}.{inner}"),
    }
}

/// Deserializes `value` as `T`, naming the path (under `prefix`) of any mismatch.
fn read_at<T: DeserializeOwned>(value: Value, prefix: &str) -> Result<T, ParseError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = join_path(prefix, &error.path().to_string());
        ParseError::Malformed {
            path,
            reason: error.into_inner().to_string(),
        }
    })
}

fn required(value: Option<&str>, path: impl FnOnce() -> String) -> Result<&str, ParseError> {
    match value {
        Some(text) if !text.is_empty() => Ok(text),
        _ => Err(ParseError::MissingField { path: path() }),
    }
}

/// Converts every element of the array `name` under `path`, naming each element's path
/// (`participants[2]`) so errors inside it point at it.
fn each_at<T, U>(
    items: &[T],
    path: &str,
    name: &str,
    convert: impl Fn(&T, &str) -> Result<U, ParseError>,
) -> Result<Vec<U>, ParseError> {
    items
        .iter()
        .enumerate()
        .map(|(index, item)| convert(item, &join_path(path, &format!("{name}[{index}]"))))
        .collect()
}

/// Reads a REST `Conversation` or an all-media topic body (`path` is where it sits).
pub fn read_conversation_body(
    value: Value,
    path: &str,
) -> Result<ConversationSnapshot, ParseError> {
    let wire: ConversationBody = read_at(value, path)?;
    conversation_snapshot(&wire, path)
}

/// Reads a REST `MessageConversation` or a `.messages` topic body.
pub fn read_message_conversation_body(
    value: Value,
    path: &str,
) -> Result<ConversationSnapshot, ParseError> {
    let wire: MessageConversationBody = read_at(value, path)?;
    message_conversation_snapshot(&wire, path)
}

/// Converts an all-media body to the domain snapshot.
pub fn conversation_snapshot(
    body: &ConversationBody,
    path: &str,
) -> Result<ConversationSnapshot, ParseError> {
    let conversation_id = required(body.id.as_deref(), || join_path(path, "id"))?;
    let participants = each_at(
        &body.participants,
        path,
        "participants",
        participant_snapshot,
    )?;
    Ok(ConversationSnapshot {
        conversation_id: ConversationId::from(conversation_id),
        start_time: body.start_time,
        end_time: body.end_time,
        participants,
    })
}

fn wrapup_record(wrapup: &Option<Wrapup>) -> Option<WrapupRecord> {
    wrapup.as_ref().map(|w| WrapupRecord {
        end_time: w.end_time,
        code: w.code.clone(),
        name: w.name.clone(),
        notes: w.notes.clone(),
        duration_seconds: w.duration_seconds,
    })
}

fn participant_snapshot(
    participant: &Participant,
    path: &str,
) -> Result<ParticipantSnapshot, ParseError> {
    let id = required(participant.id.as_deref(), || join_path(path, "id"))?;
    let mut communications = Vec::new();
    let mut messages = Vec::new();
    for (array, index, communication) in participant.communications() {
        let comm_path = join_path(path, &format!("{array}[{index}]"));
        let Some(medium) = Medium::from_array_name(array) else {
            continue;
        };
        let snapshot = communication_snapshot(communication, medium, &comm_path)?;
        for (message_index, details) in communication.messages.iter().enumerate() {
            let message_path = join_path(&comm_path, &format!("messages[{message_index}]"));
            messages.push(message_snapshot(
                details,
                Some(&snapshot.id),
                communication.messages_transcript_uri.as_deref(),
                &message_path,
            )?);
        }
        communications.push(snapshot);
    }
    Ok(ParticipantSnapshot {
        id: ParticipantId::from(id),
        purpose: participant.purpose.clone(),
        name: participant.name.clone(),
        user_id: participant.user_id.as_deref().map(IdText::new),
        queue_id: participant.queue_id.as_deref().map(IdText::new),
        state: None,
        disconnect_type: None,
        error: false,
        connected_time: participant.connected_time,
        end_time: participant.end_time,
        wrapup_required: participant.wrapup_required,
        wrapup_skipped: None,
        wrapup: wrapup_record(&participant.wrapup),
        attributes: participant.attributes.clone(),
        communications,
        messages,
    })
}

fn communication_snapshot(
    communication: &Communication,
    medium: Medium,
    path: &str,
) -> Result<CommunicationSnapshot, ParseError> {
    let id = required(communication.id.as_deref(), || join_path(path, "id"))?;
    Ok(CommunicationSnapshot {
        id: CommunicationId::from(id),
        medium,
        state: communication.state.clone(),
        direction: communication.direction.clone(),
        disconnect_type: communication.disconnect_type.clone(),
        error: communication
            .error_info
            .as_ref()
            .is_some_and(|info| !info.is_null()),
        connected_time: communication.connected_time,
        disconnected_time: communication.disconnected_time,
        message_type: communication.message_type.clone(),
        transcript_uri: communication.messages_transcript_uri.clone(),
        after_call_work: communication
            .after_call_work
            .as_ref()
            .and_then(|acw| acw.state.clone()),
        wrapup: wrapup_record(&communication.wrapup),
    })
}

fn message_snapshot(
    details: &MessageDetails,
    communication_id: Option<&CommunicationId>,
    transcript_uri: Option<&str>,
    path: &str,
) -> Result<MessageSnapshot, ParseError> {
    let id = required(details.id(), || {
        if details.message.is_some() {
            join_path(path, "message.id")
        } else {
            join_path(path, "messageId")
        }
    })?;
    let media = details
        .media
        .iter()
        .enumerate()
        .map(|(index, media)| {
            let url = required(media.url.as_deref(), || {
                join_path(path, &format!("media[{index}].url"))
            })?;
            Ok(Attachment {
                url: url.to_owned(),
                id: media.id.clone(),
                mime_type: media.media_type.clone(),
                size_bytes: media.content_length_bytes,
                name: media.name.clone(),
            })
        })
        .collect::<Result<Vec<_>, ParseError>>()?;
    let stickers = details
        .stickers
        .iter()
        .map(|sticker| Sticker {
            id: sticker.id.clone(),
            url: sticker.url.clone(),
        })
        .collect();
    Ok(MessageSnapshot {
        id: MessageId::from(id),
        communication_id: communication_id.cloned(),
        status: details.message_status.clone(),
        message_time: details.message_time,
        segment_count: details.message_segment_count,
        media,
        stickers,
        transcript_uri: transcript_uri.map(str::to_owned),
    })
}

/// Converts a `.messages`-shaped body to the domain snapshot. Each participant is one
/// message leg; it has no communication id of its own, so its messages carry none.
pub fn message_conversation_snapshot(
    body: &MessageConversationBody,
    path: &str,
) -> Result<ConversationSnapshot, ParseError> {
    let conversation_id = required(body.id.as_deref(), || join_path(path, "id"))?;
    let participants = each_at(
        &body.participants,
        path,
        "participants",
        message_participant_snapshot,
    )?;
    Ok(ConversationSnapshot {
        conversation_id: ConversationId::from(conversation_id),
        start_time: None,
        end_time: None,
        participants,
    })
}

fn message_participant_snapshot(
    participant: &MessageParticipant,
    path: &str,
) -> Result<ParticipantSnapshot, ParseError> {
    let id = required(participant.id.as_deref(), || join_path(path, "id"))?;
    let messages = participant
        .messages
        .iter()
        .enumerate()
        .map(|(index, details)| {
            message_snapshot(
                details,
                None,
                None,
                &join_path(path, &format!("messages[{index}]")),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ParticipantSnapshot {
        id: ParticipantId::from(id),
        purpose: participant.purpose.clone(),
        name: participant.name.clone(),
        user_id: participant
            .user
            .as_ref()
            .and_then(|user| user.id.as_deref().map(IdText::new)),
        queue_id: participant
            .queue
            .as_ref()
            .and_then(|queue| queue.id.as_deref().map(IdText::new)),
        state: participant.state.clone(),
        disconnect_type: participant.disconnect_type.clone(),
        error: participant
            .error_info
            .as_ref()
            .is_some_and(|info| !info.is_null()),
        connected_time: participant.connected_time,
        end_time: participant.end_time,
        wrapup_required: participant.wrapup_required,
        wrapup_skipped: participant.wrapup_skipped,
        wrapup: wrapup_record(&participant.wrapup),
        attributes: participant.attributes.clone(),
        communications: Vec::new(),
        messages,
    })
}

/// Converts a transcription body. The topic names the conversation; a body that names a
/// different one is malformed.
pub fn transcription_event(
    body: &TranscriptionBody,
    topic_conversation_id: &str,
    path: &str,
) -> Result<TranscriptionEvent, ParseError> {
    if let Some(body_id) = body.conversation_id.as_deref() {
        if body_id != topic_conversation_id {
            return Err(ParseError::Malformed {
                path: join_path(path, "conversationId"),
                reason: format!(
                    "names conversation {body_id} but the topic is for {topic_conversation_id}"
                ),
            });
        }
    }
    let communication_id = body.communication_id.as_deref().map(CommunicationId::from);
    let segments = body
        .transcripts
        .iter()
        .enumerate()
        .map(|(index, result)| {
            let result_path = join_path(path, &format!("transcripts[{index}]"));
            let utterance_id = required(result.utterance_id.as_deref(), || {
                join_path(&result_path, "utteranceId")
            })?;
            let best = result
                .alternatives
                .first()
                .ok_or_else(|| ParseError::MissingField {
                    path: join_path(&result_path, "alternatives[0]"),
                })?;
            let text = best
                .transcript
                .clone()
                .ok_or_else(|| ParseError::MissingField {
                    path: join_path(&result_path, "alternatives[0].transcript"),
                })?;
            let start_ms = match (body.session_start_time_ms, best.offset_ms) {
                (Some(session), Some(offset)) => session.checked_add(offset),
                _ => None,
            };
            let end_ms = match (start_ms, best.duration_ms) {
                (Some(start), Some(duration)) => start.checked_add(duration),
                _ => None,
            };
            Ok(TranscriptSegment {
                utterance_id: utterance_id.to_owned(),
                communication_id: communication_id.clone(),
                is_final: result.is_final.unwrap_or(false),
                speaker: result
                    .channel
                    .clone()
                    .unwrap_or(TranscriptChannel::Unknown_),
                text,
                start_ms,
                end_ms,
                confidence: best.confidence,
            })
        })
        .collect::<Result<Vec<_>, ParseError>>()?;
    Ok(TranscriptionEvent {
        conversation_id: ConversationId::from(topic_conversation_id),
        communication_id,
        segments,
    })
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
