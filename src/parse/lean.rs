//! The fast read of conversation snapshot bodies: wire shapes that hold only the fields
//! the domain snapshot takes, borrowing text from the frame where JSON allows it.
//!
//! The owned wire model (`crate::model`) keeps every field Genesys documents, each string
//! in its own allocation, because the emulator builds and serialises it and `inspect`
//! shows it. A live frame needs a tenth of that: reading the full model cost a few hundred
//! allocations per 4 KB snapshot, most of them for addresses, providers and peer ids that
//! are dropped right after. Here the fields Convoy never reads are skipped by serde (parsed,
//! not stored), kept text borrows from the frame unless it holds escapes, and attributes go
//! straight into the map the snapshot keeps.
//!
//! This read never decides an error: `parse` reads a body that fails here with the owned
//! model and path tracking, so every error names its JSON path exactly as before. The
//! conversions mirror `parse::conversation_snapshot` and friends field by field (the same
//! `MissingField` paths); `parse_tests` holds both reads to the same snapshots.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use super::{join_path, required, timestamp, ParseError};
use crate::conversation::snapshot::{
    Attachment, CommunicationSnapshot, ConversationSnapshot, Medium, MessageSnapshot,
    ParticipantSnapshot, Sticker, WrapupRecord,
};
use crate::ids::{CommunicationId, ConversationId, MessageId, ParticipantId};
use crate::model::{
    AfterCallWorkState, CommunicationState, Direction, DisconnectType, MessageStatus, MessageType,
    Purpose,
};
use crate::stream::duplicates::BodyShape;

pub(super) mod scan;

/// JSON text, borrowed from the frame unless it had to be unescaped.
#[derive(Debug, Default)]
pub(super) struct Text<'a>(Cow<'a, str>);

impl<'a> Text<'a> {
    pub(super) fn as_str(&self) -> &str {
        &self.0
    }

    fn into_owned(self) -> String {
        self.0.into_owned()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                text: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(text)))
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, text: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

fn owned(text: &Option<Text<'_>>) -> Option<String> {
    text.as_ref().map(|text| text.as_str().to_owned())
}

/// `null` or absent reads as the default, as in the owned model.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Participant attributes as the owned model's `lenient_attributes` reads them (string
/// values kept, `null` dropped, any other value kept as its JSON text), built straight
/// into the snapshot's map.
#[derive(Debug, Default)]
pub(super) struct Attributes(BTreeMap<String, String>);

impl<'de> Deserialize<'de> for Attributes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor;
        impl<'de> Visitor<'de> for MapVisitor {
            type Value = Attributes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of attributes")
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(Attributes::default())
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(Attributes::default())
            }
            fn visit_some<D: Deserializer<'de>>(self, inner: D) -> Result<Self::Value, D::Error> {
                inner.deserialize_map(MapVisitor)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    match map.next_value::<AttributeValue>()? {
                        // The owned model collects, then drops nulls: a later null
                        // removes an earlier value of the same key there too.
                        AttributeValue::Null => {
                            out.remove(&key);
                        }
                        AttributeValue::Text(text) => {
                            out.insert(key, text);
                        }
                    }
                }
                Ok(Attributes(out))
            }
        }
        deserializer.deserialize_option(MapVisitor)
    }
}

/// One attribute value: text as it is, `null` dropped, anything else as its JSON text.
enum AttributeValue {
    Null,
    Text(String),
}

impl<'de> Deserialize<'de> for AttributeValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::Null => AttributeValue::Null,
            serde_json::Value::String(text) => AttributeValue::Text(text),
            other => AttributeValue::Text(other.to_string()),
        })
    }
}

#[derive(Deserialize)]
struct Ref<'a> {
    #[serde(default, borrow)]
    id: Option<Text<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wrapup<'a> {
    #[serde(default, borrow)]
    code: Option<Text<'a>>,
    #[serde(default, borrow)]
    name: Option<Text<'a>>,
    #[serde(default, borrow)]
    notes: Option<Text<'a>>,
    #[serde(default)]
    duration_seconds: Option<i64>,
    #[serde(default, deserialize_with = "timestamp::optional")]
    end_time: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct AfterCallWork {
    #[serde(default)]
    state: Option<AfterCallWorkState>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Media<'a> {
    #[serde(default, borrow)]
    id: Option<Text<'a>>,
    #[serde(default, borrow)]
    url: Option<Text<'a>>,
    #[serde(default, borrow)]
    media_type: Option<Text<'a>>,
    #[serde(default)]
    content_length_bytes: Option<u64>,
    #[serde(default, borrow)]
    name: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct StickerRef<'a> {
    #[serde(default, borrow)]
    id: Option<Text<'a>>,
    #[serde(default, borrow)]
    url: Option<Text<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageDetails<'a> {
    #[serde(default, borrow)]
    message_id: Option<Text<'a>>,
    #[serde(default, borrow)]
    message: Option<Ref<'a>>,
    #[serde(default, deserialize_with = "timestamp::optional")]
    message_time: Option<DateTime<Utc>>,
    #[serde(default)]
    message_status: Option<MessageStatus>,
    #[serde(default)]
    message_segment_count: Option<u32>,
    #[serde(default, borrow, deserialize_with = "null_as_default")]
    media: Vec<Media<'a>>,
    #[serde(default, borrow, deserialize_with = "null_as_default")]
    stickers: Vec<StickerRef<'a>>,
}

impl MessageDetails<'_> {
    fn id(&self) -> Option<&str> {
        self.message_id
            .as_ref()
            .map(Text::as_str)
            .or_else(|| self.message.as_ref()?.id.as_ref().map(Text::as_str))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Communication<'a> {
    #[serde(default, borrow)]
    id: Option<Text<'a>>,
    #[serde(default)]
    state: Option<CommunicationState>,
    #[serde(default)]
    direction: Option<Direction>,
    #[serde(default)]
    disconnect_type: Option<DisconnectType>,
    #[serde(default, deserialize_with = "timestamp::optional")]
    connected_time: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "timestamp::optional")]
    disconnected_time: Option<DateTime<Utc>>,
    /// Present and not `null`: all the snapshot keeps of `errorInfo`.
    #[serde(default)]
    error_info: Option<IgnoredAny>,
    #[serde(default, rename = "type")]
    message_type: Option<MessageType>,
    #[serde(default, borrow, deserialize_with = "null_as_default")]
    messages: Vec<MessageDetails<'a>>,
    #[serde(default, borrow)]
    messages_transcript_uri: Option<Text<'a>>,
    #[serde(default, borrow)]
    wrapup: Option<Wrapup<'a>>,
    #[serde(default)]
    after_call_work: Option<AfterCallWork>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Participant<'a> {
    #[serde(default, borrow)]
    id: Option<Text<'a>>,
    #[serde(default, deserialize_with = "timestamp::optional")]
    connected_time: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "timestamp::optional")]
    end_time: Option<DateTime<Utc>>,
    #[serde(default, borrow)]
    user_id: Option<Text<'a>>,
    #[serde(default, borrow)]
    name: Option<Text<'a>>,
    #[serde(default, borrow)]
    queue_id: Option<Text<'a>>,
    #[serde(default)]
    purpose: Option<Purpose>,
    #[serde(default)]
    wrapup_required: Option<bool>,
    #[serde(default, borrow)]
    wrapup: Option<Wrapup<'a>>,
    #[serde(default)]
    attributes: Attributes,
    #[serde(default, borrow, deserialize_with = "null_as_default")]
    calls: Vec<Communication<'a>>,
    #[serde(default, borrow, deserialize_with = "null_as_default")]
    callbacks: Vec<Communication<'a>>,
    #[serde(default, borrow, deserialize_with = "null_as_default")]
    chats: Vec<Communication<'a>>,
    #[serde(default, borrow, deserialize_with = "null_as_default")]
    cobrowsesessions: Vec<Communication<'a>>,
    #[serde(default, borrow, deserialize_with = "null_as_default")]
    emails: Vec<Communication<'a>>,
    #[serde(default, borrow, deserialize_with = "null_as_default")]
    messages: Vec<Communication<'a>>,
    #[serde(default, borrow, deserialize_with = "null_as_default")]
    internal_messages: Vec<Communication<'a>>,
    #[serde(default, borrow, deserialize_with = "null_as_default")]
    screenshares: Vec<Communication<'a>>,
    #[serde(default, borrow, deserialize_with = "null_as_default")]
    social_expressions: Vec<Communication<'a>>,
    #[serde(default, borrow, deserialize_with = "null_as_default")]
    videos: Vec<Communication<'a>>,
}

/// The all-media body: `v2.users.{id}.conversations`, `v2.routing.queues.{id}.conversations`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ConversationBody<'a> {
    #[serde(default, borrow)]
    id: Option<Text<'a>>,
    #[serde(default, deserialize_with = "timestamp::optional")]
    start_time: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "timestamp::optional")]
    end_time: Option<DateTime<Utc>>,
    #[serde(default, borrow, deserialize_with = "null_as_default")]
    participants: Vec<Participant<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageParticipant<'a> {
    #[serde(default, borrow)]
    id: Option<Text<'a>>,
    #[serde(default, borrow)]
    name: Option<Text<'a>>,
    #[serde(default, deserialize_with = "timestamp::optional")]
    connected_time: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "timestamp::optional")]
    end_time: Option<DateTime<Utc>>,
    #[serde(default)]
    purpose: Option<Purpose>,
    #[serde(default)]
    state: Option<CommunicationState>,
    #[serde(default)]
    disconnect_type: Option<DisconnectType>,
    #[serde(default)]
    wrapup_required: Option<bool>,
    #[serde(default)]
    wrapup_skipped: Option<bool>,
    #[serde(default, borrow)]
    wrapup: Option<Wrapup<'a>>,
    #[serde(default, borrow)]
    user: Option<Ref<'a>>,
    #[serde(default, borrow)]
    queue: Option<Ref<'a>>,
    #[serde(default)]
    error_info: Option<IgnoredAny>,
    #[serde(default)]
    attributes: Attributes,
    #[serde(default, borrow, deserialize_with = "null_as_default")]
    messages: Vec<MessageDetails<'a>>,
}

/// The per-participant body of the `.messages` (and other media) topics.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct MessageConversationBody<'a> {
    #[serde(default, borrow)]
    id: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "null_as_default")]
    participants: Vec<MessageParticipant<'a>>,
}

/// A snapshot body read with the lean shape of its topic.
pub(super) enum Body<'a> {
    AllMedia(ConversationBody<'a>),
    PerParticipant(MessageConversationBody<'a>),
}

impl Body<'_> {
    /// The domain snapshot, as `conversation_snapshot` or `message_conversation_snapshot`
    /// makes it.
    pub(super) fn into_snapshot(self, path: &str) -> Result<ConversationSnapshot, ParseError> {
        match self {
            Body::AllMedia(body) => conversation_snapshot(body, path),
            Body::PerParticipant(body) => message_conversation_snapshot(body, path),
        }
    }
}

/// Reads a body with the lean shape of `BodyShape`, wherever it sits in a frame (the
/// one-pass read of an envelope hands its `eventBody` value to this).
#[derive(Clone, Copy)]
pub(super) struct BodySeed(pub BodyShape);

impl<'de> DeserializeSeed<'de> for BodySeed {
    type Value = Body<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Body<'de>, D::Error> {
        match self.0 {
            BodyShape::AllMedia => ConversationBody::deserialize(deserializer).map(Body::AllMedia),
            BodyShape::PerParticipant => {
                MessageConversationBody::deserialize(deserializer).map(Body::PerParticipant)
            }
        }
    }
}

/// Reads a whole body text with the lean shape (trailing whitespace allowed, as
/// `serde_json::from_str` allows it).
pub(super) fn read(text: &str, shape: BodyShape) -> Result<Body<'_>, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let body = BodySeed(shape).deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(body)
}

/// Like `parse::each_at`, consuming: each element is converted with its own path, built
/// only when an element turns out to be wrong.
fn each_at<T, U>(
    items: Vec<T>,
    path: &str,
    name: &str,
    convert: impl Fn(T, &dyn Fn() -> String) -> Result<U, ParseError>,
) -> Result<Vec<U>, ParseError> {
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| convert(item, &|| join_path(path, &format!("{name}[{index}]"))))
        .collect()
}

fn wrapup_record(wrapup: Option<Wrapup<'_>>) -> Option<WrapupRecord> {
    wrapup.map(|w| WrapupRecord {
        end_time: w.end_time,
        code: w.code.map(Text::into_owned),
        name: w.name.map(Text::into_owned),
        notes: w.notes.map(Text::into_owned),
        duration_seconds: w.duration_seconds,
    })
}

/// Mirrors `parse::conversation_snapshot`.
pub(super) fn conversation_snapshot(
    body: ConversationBody<'_>,
    path: &str,
) -> Result<ConversationSnapshot, ParseError> {
    let conversation_id =
        ConversationId::from(required(body.id.as_ref().map(Text::as_str), || {
            join_path(path, "id")
        })?);
    let participants = each_at(
        body.participants,
        path,
        "participants",
        participant_snapshot,
    )?;
    Ok(ConversationSnapshot {
        conversation_id,
        start_time: body.start_time,
        end_time: body.end_time,
        participants,
    })
}

fn participant_snapshot(
    participant: Participant<'_>,
    path: &dyn Fn() -> String,
) -> Result<ParticipantSnapshot, ParseError> {
    let id = ParticipantId::from(required(participant.id.as_ref().map(Text::as_str), || {
        join_path(&path(), "id")
    })?);
    let media = [
        (Medium::Calls, "calls", participant.calls),
        (Medium::Callbacks, "callbacks", participant.callbacks),
        (Medium::Chats, "chats", participant.chats),
        (
            Medium::Cobrowsesessions,
            "cobrowsesessions",
            participant.cobrowsesessions,
        ),
        (Medium::Emails, "emails", participant.emails),
        (Medium::Messages, "messages", participant.messages),
        (
            Medium::InternalMessages,
            "internalMessages",
            participant.internal_messages,
        ),
        (
            Medium::Screenshares,
            "screenshares",
            participant.screenshares,
        ),
        (
            Medium::SocialExpressions,
            "socialExpressions",
            participant.social_expressions,
        ),
        (Medium::Videos, "videos", participant.videos),
    ];
    let mut communications = Vec::new();
    let mut messages = Vec::new();
    for (medium, array, list) in media {
        for (index, communication) in list.into_iter().enumerate() {
            let comm_path = || join_path(&path(), &format!("{array}[{index}]"));
            let Communication {
                id,
                state,
                direction,
                disconnect_type,
                connected_time,
                disconnected_time,
                error_info,
                message_type,
                messages: details,
                messages_transcript_uri,
                wrapup,
                after_call_work,
            } = communication;
            let id = CommunicationId::from(required(id.as_ref().map(Text::as_str), || {
                join_path(&comm_path(), "id")
            })?);
            let transcript_uri = owned(&messages_transcript_uri);
            for (message_index, details) in details.into_iter().enumerate() {
                let message_path =
                    || join_path(&comm_path(), &format!("messages[{message_index}]"));
                messages.push(message_snapshot(
                    details,
                    Some(&id),
                    transcript_uri.as_deref(),
                    &message_path,
                )?);
            }
            communications.push(CommunicationSnapshot {
                id,
                medium,
                state,
                direction,
                disconnect_type,
                error: error_info.is_some(),
                connected_time,
                disconnected_time,
                message_type,
                transcript_uri,
                after_call_work: after_call_work.and_then(|acw| acw.state),
                wrapup: wrapup_record(wrapup),
            });
        }
    }
    Ok(ParticipantSnapshot {
        id,
        purpose: participant.purpose,
        name: participant.name.map(Text::into_owned),
        user_id: participant.user_id.map(Text::into_owned),
        queue_id: participant.queue_id.map(Text::into_owned),
        state: None,
        disconnect_type: None,
        error: false,
        connected_time: participant.connected_time,
        end_time: participant.end_time,
        wrapup_required: participant.wrapup_required,
        wrapup_skipped: None,
        wrapup: wrapup_record(participant.wrapup),
        attributes: participant.attributes.0,
        communications,
        messages,
    })
}

fn message_snapshot(
    details: MessageDetails<'_>,
    communication_id: Option<&CommunicationId>,
    transcript_uri: Option<&str>,
    path: &dyn Fn() -> String,
) -> Result<MessageSnapshot, ParseError> {
    let id = MessageId::from(required(details.id(), || {
        if details.message.is_some() {
            join_path(&path(), "message.id")
        } else {
            join_path(&path(), "messageId")
        }
    })?);
    let media = details
        .media
        .into_iter()
        .enumerate()
        .map(|(index, media)| {
            let url = required(media.url.as_ref().map(Text::as_str), || {
                join_path(&path(), &format!("media[{index}].url"))
            })?
            .to_owned();
            Ok(Attachment {
                url,
                id: media.id.map(Text::into_owned),
                mime_type: media.media_type.map(Text::into_owned),
                size_bytes: media.content_length_bytes,
                name: media.name.map(Text::into_owned),
            })
        })
        .collect::<Result<Vec<_>, ParseError>>()?;
    let stickers = details
        .stickers
        .into_iter()
        .map(|sticker| Sticker {
            id: sticker.id.map(Text::into_owned),
            url: sticker.url.map(Text::into_owned),
        })
        .collect();
    Ok(MessageSnapshot {
        id,
        communication_id: communication_id.cloned(),
        status: details.message_status,
        message_time: details.message_time,
        segment_count: details.message_segment_count,
        media,
        stickers,
        transcript_uri: transcript_uri.map(str::to_owned),
    })
}

/// Mirrors `parse::message_conversation_snapshot`.
pub(super) fn message_conversation_snapshot(
    body: MessageConversationBody<'_>,
    path: &str,
) -> Result<ConversationSnapshot, ParseError> {
    let conversation_id =
        ConversationId::from(required(body.id.as_ref().map(Text::as_str), || {
            join_path(path, "id")
        })?);
    let participants = each_at(
        body.participants,
        path,
        "participants",
        message_participant_snapshot,
    )?;
    Ok(ConversationSnapshot {
        conversation_id,
        start_time: None,
        end_time: None,
        participants,
    })
}

fn message_participant_snapshot(
    participant: MessageParticipant<'_>,
    path: &dyn Fn() -> String,
) -> Result<ParticipantSnapshot, ParseError> {
    let id = ParticipantId::from(required(participant.id.as_ref().map(Text::as_str), || {
        join_path(&path(), "id")
    })?);
    let messages = participant
        .messages
        .into_iter()
        .enumerate()
        .map(|(index, details)| {
            message_snapshot(details, None, None, &|| {
                join_path(&path(), &format!("messages[{index}]"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ParticipantSnapshot {
        id,
        purpose: participant.purpose,
        name: participant.name.map(Text::into_owned),
        user_id: participant
            .user
            .and_then(|user| user.id)
            .map(Text::into_owned),
        queue_id: participant
            .queue
            .and_then(|queue| queue.id)
            .map(Text::into_owned),
        state: participant.state,
        disconnect_type: participant.disconnect_type,
        error: participant.error_info.is_some(),
        connected_time: participant.connected_time,
        end_time: participant.end_time,
        wrapup_required: participant.wrapup_required,
        wrapup_skipped: participant.wrapup_skipped,
        wrapup: wrapup_record(participant.wrapup),
        attributes: participant.attributes.0,
        communications: Vec::new(),
        messages,
    })
}
