//! The conversation store's records and how they render: the all-media body
//! (`ConversationBody`), the message body (`MessageConversationBody`), the topic events of a
//! full snapshot, and the ground truth. Also the participant transitions every writer uses
//! (disconnect with its cascade, wrap-up, termination of voice legs), so REST commands and
//! synthetic agents change conversations the same way.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::conversation::lifecycle::leg_lifecycle;
use crate::emulator::TopicEvent;
use crate::model::{
    Address, AfterCallWork, AfterCallWorkState, Communication, CommunicationState,
    ConversationBody, Direction, DisconnectType, EntityRef, MessageConversationBody,
    MessageDetails, MessageMedia, MessageParticipant, MessageStatus, MessageType, Participant,
    Purpose, Wrapup,
};

use super::directory::Directory;
use super::routing::Step;

/// A response body with, in strict mode, the conversation's version as an `ETag` value.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub body: T,
    /// `"3"` (quoted, as an HTTP entity tag) when `strict_if_match` is on.
    pub etag: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Media {
    Message,
    Voice,
}

impl Media {
    pub(super) fn analytics_name(self) -> &'static str {
        match self {
            Media::Message => "message",
            Media::Voice => "voice",
        }
    }
}

/// One participant: in this emulator every participant has exactly one communication (leg).
#[derive(Debug, Clone)]
pub(super) struct Part {
    pub id: String,
    pub purpose: Purpose,
    pub name: String,
    pub user_id: Option<String>,
    pub queue_id: Option<String>,
    pub address: String,
    pub comm_id: String,
    pub state: CommunicationState,
    pub initial_state: CommunicationState,
    pub direction: Direction,
    pub start: DateTime<Utc>,
    pub connected: Option<DateTime<Utc>>,
    /// When the leg disconnected.
    pub end: Option<DateTime<Utc>>,
    pub disconnect_type: Option<DisconnectType>,
    /// The customer's communication id (on every other leg).
    pub peer: Option<String>,
    pub wrapup_required: bool,
    pub wrapup: Option<Wrapup>,
    pub wrapup_skipped: bool,
    pub acw_start: Option<DateTime<Utc>>,
    pub acw_end: Option<DateTime<Utc>>,
    pub attributes: BTreeMap<String, String>,
    /// When the conversation was offered toward this participant (queue entry for the first
    /// agent, the transfer for the next): the base of `tAnswered`.
    pub offered_at: DateTime<Utc>,
}

impl Part {
    pub(super) fn is_live(&self) -> bool {
        self.end.is_none()
    }

    fn after_call_work(&self) -> Option<AfterCallWork> {
        if !self.wrapup_required {
            return None;
        }
        let start = self.acw_start?;
        let state = if self.wrapup_skipped {
            AfterCallWorkState::Skipped
        } else if self.wrapup.is_some() {
            AfterCallWorkState::Complete
        } else {
            AfterCallWorkState::Pending
        };
        Some(AfterCallWork {
            state: Some(state),
            start_time: Some(start),
            end_time: self.acw_end,
        })
    }

    fn is_agent(&self) -> bool {
        self.purpose == Purpose::Agent
    }
}

#[derive(Debug, Clone)]
pub(super) struct Msg {
    pub id: String,
    /// Index of the participant whose leg carries the message.
    pub participant: usize,
    pub direction: Direction,
    pub status: MessageStatus,
    pub time: DateTime<Utc>,
    pub text: Option<String>,
    pub media: Vec<MessageMedia>,
    pub provider_message_id: Option<String>,
    /// `Human` or `Bot` (`normalizedMessage.originatingEntity`).
    pub originating_entity: &'static str,
}

#[derive(Debug, Clone)]
pub(super) struct Conv {
    pub id: String,
    pub media: Media,
    pub queue: usize,
    pub originating: Direction,
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
    /// Bumped on every change; `ETag` in strict mode.
    pub version: u64,
    /// The customer's address (open messaging sender id, phone number).
    pub address: String,
    pub participants: Vec<Part>,
    pub messages: Vec<Msg>,
    /// Routing steps still to run, in time order.
    pub plan: Vec<Step>,
    /// Participant indices of the synthetic agents, in the order they were offered.
    pub slots: Vec<usize>,
    /// (integration id, sender id) for open-messaging conversations.
    pub sender: Option<(String, String)>,
    /// Created by an agentless send.
    pub agentless: bool,
}

impl Conv {
    pub(super) fn participant_index(&self, id: &str) -> Option<usize> {
        self.participants.iter().position(|p| p.id == id)
    }

    pub(super) fn customer(&self) -> Option<usize> {
        self.participants
            .iter()
            .position(|p| p.purpose == Purpose::Customer)
    }

    /// Ends one leg. Agents that owe a wrap-up enter after-call work. Returns false when the
    /// leg had already ended.
    pub(super) fn disconnect(
        &mut self,
        index: usize,
        now: DateTime<Utc>,
        kind: DisconnectType,
    ) -> bool {
        let Some(part) = self.participants.get_mut(index) else {
            return false;
        };
        if !part.is_live() {
            return false;
        }
        part.state = CommunicationState::Disconnected;
        part.end = Some(now);
        part.disconnect_type = Some(kind);
        if part.wrapup_required && part.wrapup.is_none() && !part.wrapup_skipped {
            part.acw_start = Some(now);
        }
        true
    }

    /// Keeps the conversation consistent after a leg ended: when the customer has gone,
    /// every other leg ends (`peer`); when nobody is left on the business side, the
    /// customer's leg ends (`peer`); when every leg has ended, so has the conversation.
    pub(super) fn cascade(&mut self, now: DateTime<Utc>) {
        if let Some(customer) = self.customer() {
            let customer_live = self.participants[customer].is_live();
            let business_live = self
                .participants
                .iter()
                .enumerate()
                .any(|(i, p)| i != customer && p.is_live());
            if !customer_live {
                for index in 0..self.participants.len() {
                    self.disconnect(index, now, DisconnectType::Peer);
                }
            } else if !business_live {
                self.disconnect(customer, now, DisconnectType::Peer);
            }
        }
        if self.end.is_none() && self.participants.iter().all(|p| !p.is_live()) {
            self.end = Some(now);
        }
    }

    /// Voice legs are torn down after they disconnect: `disconnected → terminated`.
    /// Returns whether any leg changed.
    pub(super) fn terminate_voice_legs(&mut self) -> bool {
        if self.media != Media::Voice {
            return false;
        }
        let mut changed = false;
        for part in &mut self.participants {
            if part.state == CommunicationState::Disconnected {
                part.state = CommunicationState::Terminated;
                changed = true;
            }
        }
        changed
    }

    /// Records a wrap-up on a participant and completes its after-call work.
    pub(super) fn record_wrapup(&mut self, index: usize, mut wrapup: Wrapup, now: DateTime<Utc>) {
        let Some(part) = self.participants.get_mut(index) else {
            return;
        };
        if wrapup.end_time.is_none() {
            wrapup.end_time = Some(now);
        }
        if wrapup.duration_seconds.is_none() {
            if let Some(start) = part.acw_start {
                wrapup.duration_seconds = Some((now - start).num_seconds().max(0));
            }
        }
        part.wrapup = Some(wrapup);
        if part.wrapup_required {
            part.acw_start.get_or_insert(now);
            part.acw_end = Some(now);
        }
    }

    pub(super) fn skip_wrapup(&mut self, index: usize, now: DateTime<Utc>) {
        let Some(part) = self.participants.get_mut(index) else {
            return;
        };
        part.wrapup_skipped = true;
        if part.wrapup_required {
            part.acw_start.get_or_insert(now);
            part.acw_end = Some(now);
        }
    }

    /// Users of every agent participant, each once, in participant order.
    pub(super) fn agent_users(&self) -> Vec<String> {
        let mut users: Vec<String> = Vec::new();
        for part in &self.participants {
            if let (true, Some(user)) = (part.is_agent(), part.user_id.as_ref()) {
                if !users.contains(user) {
                    users.push(user.clone());
                }
            }
        }
        users
    }

    fn integration_address(&self, directory: &Directory) -> Address {
        match directory.queues.get(self.queue) {
            Some(queue) => address(&queue.integration_id, Some(&queue.integration_name)),
            None => Address::default(),
        }
    }

    fn customer_address(&self) -> Address {
        let name = self
            .customer()
            .and_then(|index| self.participants.get(index))
            .map(|p| p.name.as_str());
        address(&self.address, name)
    }

    fn message_details(
        &self,
        index: usize,
        rest: bool,
        topic_message_ref: bool,
    ) -> Vec<MessageDetails> {
        self.messages
            .iter()
            .filter(|m| m.participant == index)
            .map(|m| {
                let uri = format!(
                    "/api/v2/conversations/messages/{}/messages/{}",
                    self.id, m.id
                );
                MessageDetails {
                    message_id: (!topic_message_ref).then(|| m.id.clone()),
                    message: topic_message_ref.then(|| EntityRef {
                        id: Some(m.id.clone()),
                        ..EntityRef::default()
                    }),
                    message_uri: rest.then_some(uri),
                    message_time: Some(m.time),
                    message_status: Some(m.status.clone()),
                    message_segment_count: Some(1),
                    media: m.media.clone(),
                    ..MessageDetails::default()
                }
            })
            .collect()
    }

    fn communication(&self, index: usize, directory: &Directory, rest: bool) -> Communication {
        let part = &self.participants[index];
        let (to_address, from_address) = match self.media {
            Media::Voice => (None, None),
            Media::Message if part.purpose == Purpose::Customer => (
                Some(self.integration_address(directory)),
                Some(self.customer_address()),
            ),
            Media::Message => (
                Some(self.customer_address()),
                Some(self.integration_address(directory)),
            ),
        };
        Communication {
            id: Some(part.comm_id.clone()),
            state: Some(part.state.clone()),
            initial_state: Some(part.initial_state.clone()),
            direction: Some(part.direction.clone()),
            held: Some(false),
            provider: Some(match self.media {
                Media::Message => "PureCloud Messaging".to_owned(),
                Media::Voice => "Edge".to_owned(),
            }),
            peer_id: part.peer.clone(),
            disconnect_type: part.disconnect_type.clone(),
            connected_time: part.connected,
            disconnected_time: part.end,
            message_type: (self.media == Media::Message).then_some(MessageType::Open),
            to_address,
            from_address,
            messages: match self.media {
                Media::Message => self.message_details(index, rest, false),
                Media::Voice => Vec::new(),
            },
            after_call_work: part.after_call_work(),
            after_call_work_required: part.is_agent().then_some(part.wrapup_required),
            ..Communication::default()
        }
    }

    /// The all-media body: topic snapshots (`rest == false`) carry no conversation times
    /// and no `selfUri`; `GET /api/v2/conversations/{id}` does.
    pub(super) fn conversation_body(&self, directory: &Directory, rest: bool) -> ConversationBody {
        let participants = self
            .participants
            .iter()
            .enumerate()
            .map(|(index, part)| {
                let leg = self.communication(index, directory, rest);
                let mut participant = Participant {
                    id: Some(part.id.clone()),
                    start_time: Some(part.start),
                    connected_time: part.connected,
                    end_time: part.end,
                    user_id: part.user_id.clone(),
                    name: Some(part.name.clone()),
                    queue_id: part.queue_id.clone(),
                    purpose: Some(part.purpose.clone()),
                    address: Some(part.address.clone()),
                    wrapup_required: Some(part.wrapup_required),
                    wrapup_prompt: part.wrapup_required.then(|| "mandatory".to_owned()),
                    wrapup: part.wrapup.clone(),
                    start_acw_time: part.acw_start,
                    end_acw_time: part.acw_end,
                    attributes: part.attributes.clone(),
                    ..Participant::default()
                };
                match self.media {
                    Media::Message => participant.messages.push(leg),
                    Media::Voice => participant.calls.push(leg),
                }
                participant
            })
            .collect();
        ConversationBody {
            id: Some(self.id.clone()),
            start_time: rest.then_some(self.start),
            end_time: if rest { self.end } else { None },
            address: Some(self.address.clone()),
            max_participants: (!rest).then_some(0),
            recording_state: Some(if rest { "NONE" } else { "none" }.to_owned()),
            participants,
            self_uri: rest.then(|| format!("/api/v2/conversations/{}", self.id)),
            ..ConversationBody::default()
        }
    }

    /// The message body: topics name messages `message: {id}`; REST `messageId` with its
    /// `messageURI`.
    pub(super) fn message_body(
        &self,
        directory: &Directory,
        rest: bool,
    ) -> MessageConversationBody {
        let participants = self
            .participants
            .iter()
            .enumerate()
            .map(|(index, part)| {
                let leg = self.communication(index, directory, rest);
                MessageParticipant {
                    id: Some(part.id.clone()),
                    name: Some(part.name.clone()),
                    address: Some(part.address.clone()),
                    start_time: Some(part.start),
                    connected_time: part.connected,
                    end_time: part.end,
                    purpose: Some(part.purpose.clone()),
                    state: Some(part.state.clone()),
                    initial_state: Some(part.initial_state.clone()),
                    direction: Some(part.direction.clone()),
                    disconnect_type: part.disconnect_type.clone(),
                    held: Some(false),
                    wrapup_required: Some(part.wrapup_required),
                    wrapup_prompt: part.wrapup_required.then(|| "mandatory".to_owned()),
                    wrapup_skipped: part.wrapup_skipped.then_some(true),
                    wrapup: part.wrapup.clone(),
                    start_acw_time: part.acw_start,
                    end_acw_time: part.acw_end,
                    user: part.user_id.as_ref().map(|id| EntityRef {
                        id: Some(id.clone()),
                        name: Some(part.name.clone()),
                        self_uri: None,
                    }),
                    queue: part.queue_id.as_ref().map(|id| EntityRef {
                        id: Some(id.clone()),
                        ..EntityRef::default()
                    }),
                    attributes: part.attributes.clone(),
                    provider: leg.provider,
                    peer: part.peer.clone(),
                    message_type: Some(MessageType::Open),
                    to_address: leg.to_address,
                    from_address: leg.from_address,
                    messages: self.message_details(index, rest, !rest),
                    ..MessageParticipant::default()
                }
            })
            .collect();
        MessageConversationBody {
            id: Some(self.id.clone()),
            address: Some(self.address.clone()),
            participants,
            self_uri: rest.then(|| format!("/api/v2/conversations/messages/{}", self.id)),
            ..MessageConversationBody::default()
        }
    }

    /// The full snapshot on every topic that carries this conversation: the queue topic and
    /// its `.messages` variant, then each agent's user topics.
    pub(super) fn snapshot_events(&self, directory: &Directory) -> Vec<TopicEvent> {
        let all_media =
            serde_json::to_value(self.conversation_body(directory, false)).unwrap_or_default();
        let messages = match self.media {
            Media::Message => {
                Some(serde_json::to_value(self.message_body(directory, false)).unwrap_or_default())
            }
            Media::Voice => None,
        };
        let mut subjects = Vec::new();
        if let Some(queue) = directory.queues.get(self.queue) {
            subjects.push(format!("v2.routing.queues.{}", queue.id));
        }
        for user in self.agent_users() {
            subjects.push(format!("v2.users.{user}"));
        }
        let mut events = Vec::with_capacity(subjects.len() * 2);
        for subject in subjects {
            events.push(TopicEvent {
                topic: format!("{subject}.conversations"),
                body: all_media.clone(),
            });
            if let Some(body) = &messages {
                events.push(TopicEvent {
                    topic: format!("{subject}.conversations.messages"),
                    body: body.clone(),
                });
            }
        }
        events
    }

    pub(super) fn truth(&self) -> TruthConversation {
        TruthConversation {
            id: self.id.clone(),
            ended: self.end.is_some(),
            media_type: self.media.analytics_name().to_owned(),
            version: self.version,
            start_time: self.start,
            end_time: self.end,
            participants: self
                .participants
                .iter()
                .map(|p| TruthParticipant {
                    id: p.id.clone(),
                    purpose: p.purpose.as_str().to_owned(),
                    user_id: p.user_id.clone(),
                    queue_id: p.queue_id.clone(),
                    communication_id: p.comm_id.clone(),
                    state: p.state.as_str().to_owned(),
                    lifecycle: leg_lifecycle(Some(&p.state), p.disconnect_type.as_ref(), false)
                        .as_str()
                        .to_owned(),
                    attributes: p.attributes.clone(),
                    wrapup: p.wrapup.clone(),
                })
                .collect(),
            messages: self
                .messages
                .iter()
                .map(|m| TruthMessage {
                    id: m.id.clone(),
                    participant_id: self
                        .participants
                        .get(m.participant)
                        .map(|p| p.id.clone())
                        .unwrap_or_default(),
                    status: m.status.as_str().to_owned(),
                    direction: m.direction.as_str().to_owned(),
                    time: m.time,
                    text: m.text.clone(),
                    media: m.media.clone(),
                })
                .collect(),
        }
    }
}

fn address(value: &str, name: Option<&str>) -> Address {
    Address {
        name: name.map(str::to_owned),
        name_raw: name.map(str::to_owned),
        address_normalized: Some(value.to_owned()),
        address_raw: Some(value.to_owned()),
        address_displayable: Some(value.to_owned()),
    }
}

/// `GET /emulator/v1/truth`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Truth {
    pub conversations: Vec<TruthConversation>,
    /// Attribute writes refused because their `If-Match` named a stale version
    /// (`strict_if_match`): a writer working from an outdated state, e.g. two writers of
    /// one conversation at once.
    #[serde(default, rename = "ifMatchConflicts")]
    pub if_match_conflicts: u64,
    /// Of those, the ones whose stale version another writer (told apart by
    /// `User-Agent`) had moved on: two writers of one conversation at once. A cluster of
    /// fenced workers keeps this at 0 through any handover.
    #[serde(default, rename = "crossWriterConflicts")]
    pub cross_writer_conflicts: u64,
    /// Every `User-Agent` that has written participant attributes.
    #[serde(default, rename = "attributeWriters")]
    pub attribute_writers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TruthConversation {
    pub id: String,
    /// Every leg has ended (wrap-up may still follow).
    pub ended: bool,
    /// `message` or `voice`.
    pub media_type: String,
    pub version: u64,
    pub start_time: DateTime<Utc>,
    pub end_time: Option<DateTime<Utc>>,
    pub participants: Vec<TruthParticipant>,
    pub messages: Vec<TruthMessage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TruthParticipant {
    pub id: String,
    pub purpose: String,
    pub user_id: Option<String>,
    pub queue_id: Option<String>,
    pub communication_id: String,
    /// The communication state (`alerting`, `connected`, `disconnected`, `terminated`, …).
    pub state: String,
    /// `pending | joined | active | left | failed`, by Convoy's own table.
    pub lifecycle: String,
    pub attributes: BTreeMap<String, String>,
    pub wrapup: Option<TruthWrapup>,
}

/// A recorded wrap-up, in the wire shape.
pub type TruthWrapup = Wrapup;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TruthMessage {
    pub id: String,
    pub participant_id: String,
    /// The `messageStatus` (`received`, `sent`, `delivery-success`, `read`, …).
    pub status: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    pub time: DateTime<Utc>,
    pub text: Option<String>,
    pub media: Vec<MessageMedia>,
}
