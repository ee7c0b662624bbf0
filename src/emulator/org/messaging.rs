//! The conversation REST operations: GET (with `ETag` in strict mode), participant and
//! participant-attributes PATCH (with the `If-Match` check), message-conversation
//! disconnect, send message, agentless send, open-messaging inbound message / receipt /
//! event, and the "another writer" touch of the control API. Each validates everything
//! before changing anything, so a 4xx never leaves a half-applied change behind.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::conversation::message_status_rank;
use crate::model::{
    CommunicationState, ConversationBody, Direction, DisconnectType, MessageConversationBody,
    MessageMedia, MessageStatus, Purpose, Wrapup,
};

use super::conversations::{Conv, Media, Msg, Part, Versioned};
use super::routing::{self, Action, Step};
use super::{read_body, Applied, Org, OrgError, PathFamily};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChannelParty {
    id: String,
    #[serde(default)]
    id_type: Option<String>,
    #[serde(default)]
    nickname: Option<String>,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InboundChannel {
    from: ChannelParty,
    time: DateTime<Utc>,
    #[serde(default)]
    message_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InboundAttachment {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    mime: Option<String>,
    #[serde(default)]
    filename: Option<String>,
    #[serde(default)]
    content_size_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InboundContent {
    #[serde(default)]
    attachment: Option<InboundAttachment>,
}

/// `OpenInboundNormalizedMessage`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InboundMessage {
    channel: InboundChannel,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    content: Vec<InboundContent>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct ReceiptTo {
    id: String,
}

#[derive(Debug, Deserialize)]
struct ReceiptChannel {
    to: ReceiptTo,
    time: DateTime<Utc>,
}

/// `OpenInboundNormalizedReceipt`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InboundReceipt {
    id: String,
    channel: ReceiptChannel,
    status: String,
    #[serde(default)]
    reasons: Vec<Value>,
    #[serde(default)]
    is_final_receipt: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InboundEventItem {
    event_type: String,
}

#[derive(Debug, Deserialize)]
struct EventChannel {
    from: ChannelParty,
    time: DateTime<Utc>,
}

/// `OpenInboundNormalizedEvent`.
#[derive(Debug, Deserialize)]
struct InboundEvent {
    channel: EventChannel,
    events: Vec<InboundEventItem>,
}

/// `AdditionalMessage`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AdditionalMessage {
    #[serde(default)]
    text_body: Option<String>,
    #[serde(default)]
    media_ids: Option<Vec<String>>,
    #[serde(default)]
    messaging_template: Option<Value>,
}

/// `SendAgentlessOutboundMessageRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AgentlessRequest {
    from_address: String,
    to_address: String,
    to_address_messenger_type: String,
    #[serde(default)]
    text_body: Option<String>,
    #[serde(default)]
    messaging_template: Option<Value>,
    #[serde(default)]
    use_existing_active_conversation: Option<bool>,
}

/// `MediaParticipantRequest` (the fields the emulator acts on).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MediaParticipantRequest {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    wrapup: Option<Wrapup>,
    #[serde(default)]
    wrapup_skipped: Option<bool>,
}

/// `ParticipantAttributes`.
#[derive(Debug, Deserialize)]
struct ParticipantAttributes {
    attributes: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct ConversationStateRequest {
    state: String,
}

/// The longest text an open-messaging outbound message may carry.
const MAX_TEXT_BODY: usize = 2_000;

/// Where downloadable media of outbound messages claim to live.
const DOWNLOADS_BASE: &str = "https://api-downloads.emulator.invalid/api/v2/downloads";

fn receipt_status(text: &str) -> Option<MessageStatus> {
    Some(match text {
        "Sent" => MessageStatus::Sent,
        "Delivered" => MessageStatus::DeliverySuccess,
        "Read" => MessageStatus::Read,
        "Failed" => MessageStatus::DeliveryFailed,
        "Published" => MessageStatus::Published,
        "Removed" => MessageStatus::Removed,
        _ => return None,
    })
}

fn check_id_type(party: &ChannelParty, path: &str) -> Result<(), OrgError> {
    match party.id_type.as_deref() {
        Some("Email" | "Phone" | "Opaque") => Ok(()),
        Some(other) => Err(OrgError::BadRequest(format!(
            "{path}.idType must be one of Email, Phone, Opaque; got {other:?}."
        ))),
        None => Err(OrgError::BadRequest(format!("{path}.idType is required."))),
    }
}

fn mime_for(media_type: Option<&str>) -> &'static str {
    match media_type {
        Some("Image") => "image/jpeg",
        Some("Video") => "video/mp4",
        Some("Audio") => "audio/mpeg",
        _ => "application/octet-stream",
    }
}

fn media_type_for(mime: Option<&str>) -> &'static str {
    match mime.and_then(|m| m.split('/').next()) {
        Some("image") => "Image",
        Some("video") => "Video",
        Some("audio") => "Audio",
        _ => "File",
    }
}

/// Strips an entity tag to its value: `W/"3"` and `"3"` both read `3`.
fn entity_tag_value(tag: &str) -> &str {
    let tag = tag.trim();
    let tag = tag.strip_prefix("W/").unwrap_or(tag);
    tag.trim_matches('"')
}

/// Inserts a step keeping the plan in time order (after steps due at the same time). The
/// caller then reports the change (`Org::changed`), which puts the conversation in the due
/// index.
fn schedule(conv: &mut Conv, step: Step) {
    let position = conv
        .plan
        .iter()
        .position(|s| s.at > step.at)
        .unwrap_or(conv.plan.len());
    conv.plan.insert(position, step);
}

impl Org {
    /// The conversation's ETag now (strict mode only), without building its body.
    pub fn conversation_etag(&self, id: &str) -> Option<String> {
        let index = self.conversation_index(id).ok()?;
        self.etag(self.conversations.get(index)?)
    }

    fn etag(&self, conv: &Conv) -> Option<String> {
        self.options
            .strict_if_match
            .then(|| format!("\"{}\"", conv.version))
    }

    fn conversation_in(&self, id: &str, family: PathFamily) -> Result<usize, OrgError> {
        let index = self.conversation_index(id)?;
        match (family, self.conversations.get(index).map(|c| c.media)) {
            (PathFamily::Messages, Some(Media::Voice)) | (_, None) => Err(OrgError::NotFound {
                kind: "message conversation",
                id: id.to_owned(),
            }),
            _ => Ok(index),
        }
    }

    fn participant_in(&self, conversation: usize, participant_id: &str) -> Result<usize, OrgError> {
        self.conversations
            .get(conversation)
            .and_then(|conv| conv.participant_index(participant_id))
            .ok_or_else(|| OrgError::NotFound {
                kind: "participant",
                id: participant_id.to_owned(),
            })
    }

    /// `GET /api/v2/conversations/{id}`.
    pub fn get_conversation(&self, id: &str) -> Result<Versioned<ConversationBody>, OrgError> {
        let index = self.conversation_index(id)?;
        let conv = &self.conversations[index];
        Ok(Versioned {
            body: conv.conversation_body(&self.directory, true),
            etag: self.etag(conv),
        })
    }

    /// `GET /api/v2/conversations/messages/{id}`.
    pub fn get_message_conversation(
        &self,
        id: &str,
    ) -> Result<Versioned<MessageConversationBody>, OrgError> {
        let index = self.conversation_in(id, PathFamily::Messages)?;
        let conv = &self.conversations[index];
        Ok(Versioned {
            body: conv.message_body(&self.directory, true),
            etag: self.etag(conv),
        })
    }

    /// `GET /api/v2/conversations/messages/{id}/messages/{messageId}` → `MessageData`.
    pub fn get_message(&self, conversation_id: &str, message_id: &str) -> Result<Value, OrgError> {
        let index = self.conversation_in(conversation_id, PathFamily::Messages)?;
        let message = self.conversations[index]
            .messages
            .iter()
            .position(|m| m.id == message_id)
            .ok_or_else(|| OrgError::NotFound {
                kind: "message",
                id: message_id.to_owned(),
            })?;
        Ok(self.message_data(index, message))
    }

    /// `MessageData` of one message.
    fn message_data(&self, conversation: usize, message: usize) -> Value {
        let Some(conv) = self.conversations.get(conversation) else {
            return Value::Null;
        };
        let Some(msg) = conv.messages.get(message) else {
            return Value::Null;
        };
        let integration = self
            .directory
            .queues
            .get(conv.queue)
            .map(|q| q.integration_id.clone())
            .unwrap_or_default();
        let queue_name = self
            .directory
            .queues
            .get(conv.queue)
            .map(|q| q.name.clone())
            .unwrap_or_default();
        let inbound = msg.direction == Direction::Inbound;
        let customer = json!({ "id": conv.address, "idType": "Opaque" });
        let business = json!({ "id": integration, "idType": "Opaque", "nickname": queue_name });
        let (from, to) = if inbound {
            (customer, business)
        } else {
            (business, customer)
        };
        let content: Vec<Value> = msg
            .media
            .iter()
            .map(|m| {
                json!({
                    "contentType": "Attachment",
                    "attachment": {
                        "id": m.id,
                        "mediaType": media_type_for(m.media_type.as_deref()),
                        "url": m.url,
                        "mime": m.media_type,
                        "filename": m.name,
                    }
                })
            })
            .collect();
        let mut channel = json!({
            "id": integration,
            "platform": "Open",
            "type": "Private",
            "to": to,
            "from": from,
            "time": super::iso(msg.time),
        });
        if let (Some(provider_id), Some(object)) =
            (&msg.provider_message_id, channel.as_object_mut())
        {
            object.insert("messageId".to_owned(), json!(provider_id));
        }
        let mut normalized = json!({
            "id": msg.id,
            "channel": channel,
            "type": "Text",
            "direction": if inbound { "Inbound" } else { "Outbound" },
        });
        if let Some(object) = normalized.as_object_mut() {
            if let Some(text) = &msg.text {
                object.insert("text".to_owned(), json!(text));
            }
            if !content.is_empty() {
                object.insert("content".to_owned(), Value::Array(content));
            }
            if !inbound {
                object.insert(
                    "originatingEntity".to_owned(),
                    json!(msg.originating_entity),
                );
            }
        }
        let (from_address, to_address) = if inbound {
            (conv.address.clone(), integration)
        } else {
            (integration, conv.address.clone())
        };
        let mut data = json!({
            "id": msg.id,
            "timestamp": super::iso(msg.time),
            "fromAddress": from_address,
            "toAddress": to_address,
            "direction": msg.direction.as_str(),
            "messengerType": "open",
            "status": msg.status.as_str(),
            "normalizedMessage": normalized,
            "conversationId": conv.id,
            "selfUri": format!("/api/v2/conversations/messages/{}/messages/{}", conv.id, msg.id),
        });
        if let Some(object) = data.as_object_mut() {
            if let Some(provider_id) = &msg.provider_message_id {
                object.insert("providerMessageId".to_owned(), json!(provider_id));
            }
            let author = conv.participants.get(msg.participant);
            if let Some((user, name)) =
                author.and_then(|p| p.user_id.as_ref().map(|u| (u, &p.name)))
            {
                object.insert(
                    "createdBy".to_owned(),
                    json!({ "id": user, "name": name, "selfUri": format!("/api/v2/users/{user}") }),
                );
            }
        }
        data
    }

    /// `PATCH /api/v2/conversations/{id}/participants/{pid}` (and the messages variant):
    /// `MediaParticipantRequest` with `state: disconnected`, `wrapup`, `wrapupSkipped`.
    /// 202 with no body; the change shows in the snapshot events.
    pub fn patch_participant(
        &mut self,
        family: PathFamily,
        conversation_id: &str,
        participant_id: &str,
        body: &Value,
        now: DateTime<Utc>,
    ) -> Result<Applied<()>, OrgError> {
        let index = self.conversation_in(conversation_id, family)?;
        let participant = self.participant_in(index, participant_id)?;
        let request: MediaParticipantRequest = read_body(body, "MediaParticipantRequest")?;
        if request.state.is_none() && request.wrapup.is_none() && request.wrapup_skipped.is_none() {
            return Err(OrgError::BadRequest(
                "The request names no change: expected state, wrapup or wrapupSkipped.".to_owned(),
            ));
        }
        let disconnect = match request.state.as_deref() {
            None => false,
            Some("disconnected") => true,
            Some(other) => {
                return Err(OrgError::BadRequest(format!(
                    "state {other:?} is not supported: only \"disconnected\"."
                )))
            }
        };
        let conv = &self.conversations[index];
        if disconnect && !conv.participants[participant].is_live() {
            return Err(OrgError::Conflict(format!(
                "Participant {participant_id} is already disconnected."
            )));
        }
        let now = self.remember_now(now);
        let conv = &mut self.conversations[index];
        if disconnect {
            conv.disconnect(participant, now, DisconnectType::Client);
            conv.cascade(now);
            if conv.media == Media::Voice {
                schedule(
                    conv,
                    Step {
                        at: now,
                        action: Action::Terminate,
                    },
                );
            }
        }
        if let Some(wrapup) = request.wrapup {
            conv.record_wrapup(participant, wrapup, now);
        }
        if request.wrapup_skipped == Some(true) {
            conv.skip_wrapup(participant, now);
        }
        let events = self.changed(index);
        Ok(Applied { body: (), events })
    }

    /// `PATCH /api/v2/conversations/{id}/participants/{pid}/attributes` (and the messages
    /// variant): merges `{"attributes": {…}}`. Returns the participant's attributes after
    /// the merge (`ParticipantAttributes`). Strict mode: an `If-Match` other than the
    /// current version (or `*`) → 409.
    pub fn patch_participant_attributes(
        &mut self,
        family: PathFamily,
        conversation_id: &str,
        participant_id: &str,
        body: &Value,
        if_match: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Applied<Value>, OrgError> {
        self.patch_participant_attributes_by(
            family,
            conversation_id,
            participant_id,
            body,
            if_match,
            None,
            now,
        )
    }

    /// [`Org::patch_participant_attributes`] by a named writer (the request's
    /// `User-Agent`): a strict-mode 409 whose stale `If-Match` was made stale by another
    /// writer's attribute write is also counted as a cross-writer conflict — two writers
    /// of one conversation at once, which a cluster's write fence must make impossible.
    #[allow(clippy::too_many_arguments)]
    pub fn patch_participant_attributes_by(
        &mut self,
        family: PathFamily,
        conversation_id: &str,
        participant_id: &str,
        body: &Value,
        if_match: Option<&str>,
        writer: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Applied<Value>, OrgError> {
        let index = self.conversation_in(conversation_id, family)?;
        let participant = self.participant_in(index, participant_id)?;
        let request: ParticipantAttributes = read_body(body, "ParticipantAttributes")?;
        let current = self.conversations[index].version;
        if let (true, Some(given)) = (self.options.strict_if_match, if_match) {
            let value = entity_tag_value(given);
            if value != "*" && value != current.to_string() {
                self.if_match_conflicts += 1;
                if let (Some(writer), Ok(read)) = (writer, value.parse::<u64>()) {
                    if self
                        .attribute_writers
                        .overtaken_by_another(index, read, writer)
                    {
                        self.cross_writer_conflicts += 1;
                    }
                }
                return Err(OrgError::VersionMismatch {
                    current,
                    given: given.to_owned(),
                });
            }
        }
        self.remember_now(now);
        let part = &mut self.conversations[index].participants[participant];
        part.attributes.extend(request.attributes);
        let body = json!({ "attributes": part.attributes });
        let events = self.changed(index);
        if let Some(writer) = writer {
            let written = self.conversations[index].version;
            self.attribute_writers.record(index, written, writer);
        }
        Ok(Applied { body, events })
    }

    /// `PATCH /api/v2/conversations/messages/{id}` with `{"state":"disconnected"}`: every
    /// leg disconnects. 200 with the `Conversation`.
    pub fn disconnect_message_conversation(
        &mut self,
        conversation_id: &str,
        body: &Value,
        now: DateTime<Utc>,
    ) -> Result<Applied<ConversationBody>, OrgError> {
        let index = self.conversation_in(conversation_id, PathFamily::Messages)?;
        let request: ConversationStateRequest = read_body(body, "Conversation")?;
        if request.state != "disconnected" {
            return Err(OrgError::BadRequest(format!(
                "state {:?} is not supported: only \"disconnected\".",
                request.state
            )));
        }
        if self.conversations[index].end.is_some() {
            return Err(OrgError::Conflict(format!(
                "Conversation {conversation_id} is already disconnected."
            )));
        }
        let now = self.remember_now(now);
        let conv = &mut self.conversations[index];
        for participant in 0..conv.participants.len() {
            if conv.participants[participant].purpose != Purpose::Customer {
                conv.disconnect(participant, now, DisconnectType::Client);
            }
        }
        conv.cascade(now);
        let events = self.changed(index);
        let body = self.conversations[index].conversation_body(&self.directory, true);
        Ok(Applied { body, events })
    }

    /// `POST /api/v2/conversations/messages/{id}/communications/{cid}/messages` with an
    /// `AdditionalMessage` (one of `textBody`, `mediaIds`, `messagingTemplate`) →
    /// `MessageData`. The message is `queued`, then `sent` on the next tick.
    pub fn send_message(
        &mut self,
        conversation_id: &str,
        communication_id: &str,
        body: &Value,
        now: DateTime<Utc>,
    ) -> Result<Applied<Value>, OrgError> {
        let index = self.conversation_in(conversation_id, PathFamily::Messages)?;
        let participant = self.conversations[index]
            .participants
            .iter()
            .position(|p| p.comm_id == communication_id)
            .ok_or_else(|| OrgError::NotFound {
                kind: "communication",
                id: communication_id.to_owned(),
            })?;
        let request: AdditionalMessage = read_body(body, "AdditionalMessage")?;
        let text = request.text_body.filter(|t| !t.is_empty());
        let media_ids = request.media_ids.filter(|ids| !ids.is_empty());
        let given = [
            text.is_some(),
            media_ids.is_some(),
            request.messaging_template.is_some(),
        ]
        .iter()
        .filter(|&&g| g)
        .count();
        if given != 1 {
            return Err(OrgError::BadRequest(
                "Exactly one of textBody, mediaIds or messagingTemplate is required.".to_owned(),
            ));
        }
        if let Some(ids) = &media_ids {
            if ids.len() > 1 {
                return Err(OrgError::BadRequest(
                    "mediaIds may name only one media per message.".to_owned(),
                ));
            }
        }
        if text
            .as_ref()
            .is_some_and(|t| t.chars().count() > MAX_TEXT_BODY)
        {
            return Err(OrgError::BadRequest(format!(
                "textBody exceeds {MAX_TEXT_BODY} characters."
            )));
        }
        let part = &self.conversations[index].participants[participant];
        if part.purpose == Purpose::Customer {
            return Err(OrgError::BadRequest(format!(
                "Communication {communication_id} is the customer's; send on an agent's communication."
            )));
        }
        if !part.is_live() {
            return Err(OrgError::Conflict(format!(
                "Communication {communication_id} is disconnected."
            )));
        }
        let now = self.remember_now(now);
        let id = self.ids.hex32();
        let media = media_ids
            .unwrap_or_default()
            .into_iter()
            .map(|media_id| MessageMedia {
                url: Some(format!("{DOWNLOADS_BASE}/{media_id}")),
                id: Some(media_id),
                media_type: Some("application/octet-stream".to_owned()),
                ..MessageMedia::default()
            })
            .collect();
        let text = text.or_else(|| {
            request
                .messaging_template
                .as_ref()
                .map(|template| format!("template {template}"))
        });
        let message = self.push_message(
            index,
            Msg {
                id,
                participant,
                direction: Direction::Outbound,
                status: MessageStatus::Queued,
                time: now,
                text,
                media,
                provider_message_id: None,
                originating_entity: "Human",
            },
        );
        if let Some(conv) = self.conversations.get_mut(index) {
            schedule(
                conv,
                Step {
                    at: now,
                    action: Action::MarkSent { message },
                },
            );
        }
        let events = self.changed(index);
        Ok(Applied {
            body: self.message_data(index, message),
            events,
        })
    }

    fn push_message(&mut self, conversation: usize, message: Msg) -> usize {
        let Some(conv) = self.conversations.get_mut(conversation) else {
            return 0;
        };
        self.messages_by_id
            .insert(message.id.clone(), (conversation, conv.messages.len()));
        conv.messages.push(message);
        conv.messages.len() - 1
    }

    /// `POST /api/v2/conversations/messages/agentless`: creates an outbound conversation
    /// whose message is `queued`, `sent` on the next tick, when the conversation also ends.
    pub fn send_agentless(
        &mut self,
        body: &Value,
        now: DateTime<Utc>,
    ) -> Result<Applied<Value>, OrgError> {
        let request: AgentlessRequest = read_body(body, "SendAgentlessOutboundMessageRequest")?;
        match request.to_address_messenger_type.as_str() {
            "open" => {}
            "sms" | "whatsapp" | "webmessaging" | "apple" => {
                return Err(OrgError::BadRequest(format!(
                    "toAddressMessengerType {:?} is valid but not emulated: only \"open\".",
                    request.to_address_messenger_type
                )))
            }
            other => {
                return Err(OrgError::BadRequest(format!(
                    "toAddressMessengerType must be one of sms, whatsapp, open, webmessaging, apple; got {other:?}."
                )))
            }
        }
        let queue = self
            .directory
            .queue_of_integration(&request.from_address)
            .ok_or_else(|| {
                OrgError::BadRequest(format!(
                    "fromAddress {:?} is not an open messaging integration of this org.",
                    request.from_address
                ))
            })?;
        if request.to_address.trim().is_empty() {
            return Err(OrgError::BadRequest(
                "toAddress must not be empty.".to_owned(),
            ));
        }
        let text = match (&request.text_body, &request.messaging_template) {
            (Some(text), _) if !text.is_empty() => text.clone(),
            (_, Some(template)) => format!("template {template}"),
            _ => {
                return Err(OrgError::BadRequest(
                    "textBody or messagingTemplate is required.".to_owned(),
                ))
            }
        };
        if text.chars().count() > MAX_TEXT_BODY {
            return Err(OrgError::BadRequest(format!(
                "textBody exceeds {MAX_TEXT_BODY} characters."
            )));
        }
        let now = self.remember_now(now);
        let conversation_id = self.ids.uuid();
        let customer_comm = self.ids.uuid();
        let customer = Part {
            id: self.ids.uuid(),
            purpose: Purpose::Customer,
            name: request.to_address.clone(),
            user_id: None,
            queue_id: None,
            address: request.to_address.clone(),
            comm_id: customer_comm.clone(),
            state: CommunicationState::Connected,
            initial_state: CommunicationState::Connected,
            direction: Direction::Outbound,
            start: now,
            connected: Some(now),
            end: None,
            disconnect_type: None,
            peer: None,
            wrapup_required: false,
            wrapup: None,
            wrapup_skipped: false,
            acw_start: None,
            acw_end: None,
            attributes: BTreeMap::new(),
            offered_at: now,
        };
        let sender = Part {
            id: self.ids.uuid(),
            purpose: Purpose::Api,
            name: "Agentless".to_owned(),
            address: request.from_address.clone(),
            comm_id: self.ids.uuid(),
            peer: Some(customer_comm),
            ..customer.clone()
        };
        let conv = Conv {
            id: conversation_id.clone(),
            media: Media::Message,
            queue,
            originating: Direction::Outbound,
            start: now,
            end: None,
            version: 0,
            address: request.to_address.clone(),
            participants: vec![customer, sender],
            messages: Vec::new(),
            plan: Vec::new(),
            slots: Vec::new(),
            sender: None,
            agentless: true,
        };
        let index = self.add_conversation(conv, None);
        let id = self.ids.hex32();
        let message = self.push_message(
            index,
            Msg {
                id,
                participant: 1,
                direction: Direction::Outbound,
                status: MessageStatus::Queued,
                time: now,
                text: Some(text),
                media: Vec::new(),
                provider_message_id: None,
                originating_entity: "Bot",
            },
        );
        if let Some(conv) = self.conversations.get_mut(index) {
            schedule(
                conv,
                Step {
                    at: now,
                    action: Action::MarkSent { message },
                },
            );
            schedule(
                conv,
                Step {
                    at: now,
                    action: Action::EndAgentless,
                },
            );
        }
        let events = self.changed(index);
        let request_id = self.ids.uuid();
        let body = json!({
            "id": request_id,
            "conversationId": conversation_id,
            "fromAddress": request.from_address,
            "toAddress": request.to_address,
            "messengerType": "open",
            "useExistingActiveConversation": request.use_existing_active_conversation.unwrap_or(false),
            "message": self.message_data(index, message),
            "timestamp": super::iso(now),
            "selfUri": format!("/api/v2/conversations/messages/agentless/{request_id}"),
        });
        Ok(Applied { body, events })
    }

    fn integration_queue(&self, integration_id: &str) -> Result<usize, OrgError> {
        self.directory
            .queue_of_integration(integration_id)
            .ok_or_else(|| OrgError::NotFound {
                kind: "integration",
                id: integration_id.to_owned(),
            })
    }

    /// `POST /api/v2/conversations/messages/{integrationId}/inbound/open/message`: creates
    /// the sender's conversation (routed with the default profile, overridden by
    /// `metadata["convoy.sim.*"]`) or continues the open one. `content[].attachment`
    /// becomes `media[]`. Returns the echo with Genesys' message id, and `conversationId`
    /// when `prefetch_conversation_id`.
    pub fn open_inbound_message(
        &mut self,
        integration_id: &str,
        body: &Value,
        prefetch_conversation_id: bool,
        now: DateTime<Utc>,
    ) -> Result<Applied<Value>, OrgError> {
        let queue = self.integration_queue(integration_id)?;
        let request: InboundMessage = read_body(body, "open message")?;
        check_id_type(&request.channel.from, "channel.from")?;
        let has_text = request.text.as_ref().is_some_and(|t| !t.is_empty());
        if !has_text && request.content.is_empty() {
            return Err(OrgError::BadRequest(
                "An open message needs text or content.".to_owned(),
            ));
        }
        for (position, content) in request.content.iter().enumerate() {
            if let Some(attachment) = &content.attachment {
                if attachment.url.as_deref().is_none_or(str::is_empty) {
                    return Err(OrgError::BadRequest(format!(
                        "content[{position}].attachment.url is required."
                    )));
                }
            }
        }
        let overrides = routing::metadata_overrides(&request.metadata)?;
        let now = self.remember_now(now);
        let sender_key = (integration_id.to_owned(), request.channel.from.id.clone());
        let existing = self
            .open_by_sender
            .get(&sender_key)
            .copied()
            .filter(|&i| self.conversations.get(i).is_some_and(|c| c.end.is_none()));
        let index = match existing {
            Some(index) => index,
            None => {
                let from = &request.channel.from;
                let name = from.nickname.clone().unwrap_or_else(|| {
                    match (&from.first_name, &from.last_name) {
                        (Some(first), Some(last)) => format!("{first} {last}"),
                        (Some(first), None) => first.clone(),
                        (None, Some(last)) => last.clone(),
                        (None, None) => from.id.clone(),
                    }
                });
                let profile = self.options.routing.patched(&overrides);
                self.create_message_conversation(queue, sender_key, name, &profile, now)
            }
        };
        let media: Vec<MessageMedia> = request
            .content
            .iter()
            .filter_map(|content| content.attachment.as_ref())
            .map(|attachment| MessageMedia {
                id: Some(attachment.id.clone().unwrap_or_else(|| self.ids.uuid())),
                url: attachment.url.clone(),
                media_type: Some(
                    attachment
                        .mime
                        .clone()
                        .unwrap_or_else(|| mime_for(attachment.media_type.as_deref()).to_owned()),
                ),
                content_length_bytes: attachment.content_size_bytes,
                name: attachment.filename.clone(),
            })
            .collect();
        let customer = self
            .conversations
            .get(index)
            .and_then(Conv::customer)
            .unwrap_or(0);
        let id = self.ids.hex32();
        self.push_message(
            index,
            Msg {
                id: id.clone(),
                participant: customer,
                direction: Direction::Inbound,
                status: MessageStatus::Received,
                time: now,
                text: request.text.clone(),
                media,
                provider_message_id: request.channel.message_id.clone(),
                originating_entity: "Human",
            },
        );
        let events = self.changed(index);
        let mut echo = body.clone();
        if let Some(object) = echo.as_object_mut() {
            object.insert("id".to_owned(), json!(id));
            object.insert("type".to_owned(), json!("Text"));
            object.insert("direction".to_owned(), json!("Inbound"));
            if let Some(channel) = object.get_mut("channel").and_then(Value::as_object_mut) {
                channel.insert("id".to_owned(), json!(integration_id));
                channel.insert("platform".to_owned(), json!("Open"));
                channel.insert("type".to_owned(), json!("Private"));
                channel.insert("to".to_owned(), json!({ "id": integration_id }));
                channel.insert("time".to_owned(), json!(super::iso(request.channel.time)));
            }
            if !object.contains_key("content") {
                object.insert("content".to_owned(), json!([]));
            }
            if prefetch_conversation_id {
                if let Some(conv) = self.conversations.get(index) {
                    object.insert("conversationId".to_owned(), json!(conv.id));
                }
            }
        }
        Ok(Applied { body: echo, events })
    }

    fn create_message_conversation(
        &mut self,
        queue: usize,
        sender: (String, String),
        name: String,
        profile: &super::RoutingProfile,
        now: DateTime<Utc>,
    ) -> usize {
        let queue_id = self.directory.queues.get(queue).map(|q| q.id.clone());
        let id = self.ids.uuid();
        let customer_comm = self.ids.uuid();
        let customer = Part {
            id: self.ids.uuid(),
            purpose: Purpose::Customer,
            name,
            user_id: None,
            queue_id,
            address: sender.1.clone(),
            comm_id: customer_comm.clone(),
            state: CommunicationState::Connected,
            initial_state: CommunicationState::Connected,
            direction: Direction::Inbound,
            start: now,
            connected: Some(now),
            end: None,
            disconnect_type: None,
            peer: None,
            wrapup_required: false,
            wrapup: None,
            wrapup_skipped: false,
            acw_start: None,
            acw_end: None,
            attributes: BTreeMap::new(),
            offered_at: now,
        };
        let acd = self.acd_part(queue, &customer_comm, CommunicationState::Connected, now);
        let conv = Conv {
            id,
            media: Media::Message,
            queue,
            originating: Direction::Inbound,
            start: now,
            end: None,
            version: 0,
            address: sender.1.clone(),
            participants: vec![customer, acd],
            messages: Vec::new(),
            plan: Vec::new(),
            slots: Vec::new(),
            sender: Some(sender),
            agentless: false,
        };
        self.add_conversation(conv, Some(profile))
    }

    /// `POST /api/v2/conversations/messages/{integrationId}/inbound/open/receipt`: moves the
    /// outbound message's `messageStatus` (`Delivered` → `delivery-success`, `Read` →
    /// `read`, `Failed` → `delivery-failed`, `Sent` → `sent`) forward and publishes the
    /// snapshot; a receipt that would move it backwards changes nothing.
    pub fn open_inbound_receipt(
        &mut self,
        integration_id: &str,
        body: &Value,
        now: DateTime<Utc>,
    ) -> Result<Applied<Value>, OrgError> {
        let queue = self.integration_queue(integration_id)?;
        let request: InboundReceipt = read_body(body, "open receipt")?;
        let status = receipt_status(&request.status).ok_or_else(|| {
            OrgError::BadRequest(format!(
                "status must be one of Sent, Delivered, Read, Failed, Published, Removed; got {:?}.",
                request.status
            ))
        })?;
        let not_found = || OrgError::NotFound {
            kind: "message",
            id: request.id.clone(),
        };
        let (conversation, message) = self
            .messages_by_id
            .get(&request.id)
            .copied()
            .ok_or_else(not_found)?;
        let conv = self.conversations.get(conversation).ok_or_else(not_found)?;
        let msg = conv.messages.get(message).ok_or_else(not_found)?;
        if conv.queue != queue || msg.direction != Direction::Outbound {
            return Err(not_found());
        }
        let advanced = message_status_rank(&status) > message_status_rank(&msg.status);
        self.remember_now(now);
        let events = if advanced {
            if let Some(msg) = self
                .conversations
                .get_mut(conversation)
                .and_then(|c| c.messages.get_mut(message))
            {
                msg.status = status;
            }
            self.changed(conversation)
        } else {
            Vec::new()
        };
        let mut echo = json!({
            "id": request.id,
            "channel": {
                "id": integration_id,
                "platform": "Open",
                "type": "Private",
                "to": { "id": request.channel.to.id },
                "time": super::iso(request.channel.time),
            },
            "type": "Receipt",
            "status": request.status,
            "direction": "Outbound",
        });
        if let Some(object) = echo.as_object_mut() {
            if !request.reasons.is_empty() {
                object.insert("reasons".to_owned(), Value::Array(request.reasons));
            }
            if let Some(last) = request.is_final_receipt {
                object.insert("isFinalReceipt".to_owned(), json!(last));
            }
        }
        Ok(Applied { body: echo, events })
    }

    /// `POST /api/v2/conversations/messages/{integrationId}/inbound/open/event` (typing):
    /// accepted and echoed; no state changes.
    pub fn open_inbound_event(
        &mut self,
        integration_id: &str,
        body: &Value,
        now: DateTime<Utc>,
    ) -> Result<Value, OrgError> {
        self.integration_queue(integration_id)?;
        let request: InboundEvent = read_body(body, "open event")?;
        check_id_type(&request.channel.from, "channel.from")?;
        if request.events.is_empty() {
            return Err(OrgError::BadRequest("events must not be empty.".to_owned()));
        }
        if let Some((position, event)) = request.events.iter().enumerate().find(|(_, e)| {
            !matches!(
                e.event_type.as_str(),
                "Typing" | "Presence" | "CoBrowse" | "Video"
            )
        }) {
            return Err(OrgError::BadRequest(format!(
                "events[{position}].eventType {:?} is not one of Typing, Presence, CoBrowse, Video.",
                event.event_type
            )));
        }
        self.remember_now(now);
        let mut echo = body.clone();
        if let Some(object) = echo.as_object_mut() {
            object.insert("id".to_owned(), json!(self.ids.hex32()));
            object.insert("type".to_owned(), json!("Event"));
            object.insert("direction".to_owned(), json!("Inbound"));
            if let Some(channel) = object.get_mut("channel").and_then(Value::as_object_mut) {
                channel.insert("id".to_owned(), json!(integration_id));
                channel.insert("platform".to_owned(), json!("Open"));
                channel.insert("type".to_owned(), json!("Private"));
                channel.insert("to".to_owned(), json!({ "id": integration_id }));
                channel.insert("time".to_owned(), json!(super::iso(request.channel.time)));
            }
        }
        Ok(echo)
    }

    /// `POST /emulator/v1/conversations/{id}/touch`: another writer changes the
    /// conversation — bumps its version and sets attribute `other.writer` on the customer
    /// (else the first participant). Returns `{"id", "version"}`.
    pub fn touch(
        &mut self,
        conversation_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Applied<Value>, OrgError> {
        let index = self.conversation_index(conversation_id)?;
        self.remember_now(now);
        let conv = &mut self.conversations[index];
        let target = conv.customer().unwrap_or(0);
        let next_version = conv.version + 1;
        if let Some(part) = conv.participants.get_mut(target) {
            part.attributes
                .insert("other.writer".to_owned(), format!("touch-{next_version}"));
        }
        let events = self.changed(index);
        let version = self.conversations[index].version;
        Ok(Applied {
            body: json!({ "id": conversation_id, "version": version }),
            events,
        })
    }
}
