//! Routing with synthetic agents. A routed conversation gets a plan: timed steps computed
//! once from its [`RoutingProfile`] when it is created (offer to an agent, answer, replies,
//! transfer, hang-up, wrap-up, or the customer abandoning). `Org::tick(now)` runs the steps
//! that are due. Every step re-checks the conversation first, so a REST command that got
//! there before (an agent disconnected by PATCH, a conversation disconnected) makes the
//! remaining steps do nothing instead of contradicting it.

use chrono::{DateTime, Duration, Utc};

use crate::emulator::TopicEvent;
use crate::model::{CommunicationState, Direction, DisconnectType, MessageStatus, Purpose, Wrapup};

use super::conversations::{Conv, Media, Msg, Part};
use super::{Org, OrgError, RoutingOutcome, RoutingProfile, RoutingProfilePatch};

/// One timed routing step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Step {
    pub at: DateTime<Utc>,
    pub action: Action,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    /// Voice: the offered call connects (customer and queue legs).
    ConnectCall,
    /// Offers the conversation to a new synthetic agent (alerting). Slot 0 takes it from the
    /// queue leg; a later slot is a transfer from the previous agent.
    Offer { slot: usize },
    /// The alerting agent answers.
    Answer { slot: usize },
    /// The connected agent sends an outbound message.
    Reply { slot: usize, number: u32 },
    /// Voice: one utterance of the call is transcribed in real time (customer and agent
    /// take turns), published on `v2.conversations.{id}.transcription`.
    Utterance { slot: usize, number: u32 },
    /// The agent ends the interaction; the customer's leg follows.
    HangUp { slot: usize },
    /// Voice legs are torn down.
    Terminate,
    /// The agent records its wrap-up.
    WrapUp { slot: usize },
    /// The customer leaves before any agent answered.
    Abandon,
    /// A queued outbound message is handed to the channel.
    MarkSent { message: usize },
    /// An agentless conversation ends once its message is sent.
    EndAgentless,
}

fn after(start: DateTime<Utc>, ms: u64) -> DateTime<Utc> {
    let ms = i64::try_from(ms).unwrap_or(i64::MAX / 2);
    start
        .checked_add_signed(Duration::milliseconds(ms))
        .unwrap_or(start)
}

/// The steps of a routed conversation created at `t0`.
pub(super) fn plan(profile: &RoutingProfile, t0: DateTime<Utc>, media: Media) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut push = |at: DateTime<Utc>, action: Action| steps.push(Step { at, action });
    if media == Media::Voice {
        push(t0, Action::ConnectCall);
    }
    let half_answer = profile.answer_after_ms / 2;
    match profile.outcome {
        RoutingOutcome::Abandon => push(after(t0, profile.answer_after_ms), Action::Abandon),
        RoutingOutcome::Answered | RoutingOutcome::Transfer => {
            push(after(t0, half_answer), Action::Offer { slot: 0 });
            let mut talking_since = after(t0, profile.answer_after_ms);
            push(talking_since, Action::Answer { slot: 0 });
            let mut slot = 0;
            if profile.outcome == RoutingOutcome::Transfer {
                let transfer_at = after(talking_since, profile.reply_after_ms / 2);
                push(transfer_at, Action::Offer { slot: 1 });
                talking_since = after(transfer_at, half_answer);
                push(talking_since, Action::Answer { slot: 1 });
                slot = 1;
            }
            let talk_ms = profile
                .reply_after_ms
                .saturating_mul(u64::from(profile.agent_replies));
            for number in 1..=profile.agent_replies {
                let at = after(
                    talking_since,
                    profile.reply_after_ms.saturating_mul(u64::from(number)),
                );
                match media {
                    Media::Message => push(at, Action::Reply { slot, number }),
                    // Two utterances per turn: the customer speaks, the agent answers.
                    Media::Voice => {
                        push(
                            at,
                            Action::Utterance {
                                slot,
                                number: number * 2 - 1,
                            },
                        );
                        push(
                            at,
                            Action::Utterance {
                                slot,
                                number: number * 2,
                            },
                        );
                    }
                }
            }
            let last = after(talking_since, talk_ms);
            let hang_up = after(last, profile.wrapup_after_ms / 2);
            push(hang_up, Action::HangUp { slot });
            if media == Media::Voice {
                push(hang_up, Action::Terminate);
            }
            push(
                after(last, profile.wrapup_after_ms),
                Action::WrapUp { slot },
            );
        }
    }
    steps
}

/// Reads the per-conversation overrides from an inbound message's `metadata`.
pub(super) fn metadata_overrides(
    metadata: &std::collections::BTreeMap<String, String>,
) -> Result<RoutingProfilePatch, OrgError> {
    fn number<T: std::str::FromStr>(
        metadata: &std::collections::BTreeMap<String, String>,
        key: &str,
    ) -> Result<Option<T>, OrgError> {
        match metadata.get(key) {
            None => Ok(None),
            Some(text) => text.trim().parse::<T>().map(Some).map_err(|_| {
                OrgError::BadRequest(format!(
                    "metadata.{key} must be a non-negative integer, got {text:?}."
                ))
            }),
        }
    }
    let outcome = match metadata.get("convoy.sim.outcome") {
        None => None,
        Some(text) => Some(RoutingOutcome::parse(text.trim()).ok_or_else(|| {
            OrgError::BadRequest(format!(
                "metadata.convoy.sim.outcome must be answered, abandon or transfer, got {text:?}."
            ))
        })?),
    };
    Ok(RoutingProfilePatch {
        answer_after_ms: number(metadata, "convoy.sim.answerAfterMs")?,
        reply_after_ms: number(metadata, "convoy.sim.replyAfterMs")?,
        agent_replies: number(metadata, "convoy.sim.agentReplies")?,
        wrapup_after_ms: number(metadata, "convoy.sim.wrapupAfterMs")?,
        outcome,
    })
}

impl Org {
    /// Advances synthetic agents, queued messages and analytics jobs to `now`; returns the
    /// events to publish.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<TopicEvent> {
        let now = self.remember_now(now);
        self.advance_jobs(now);
        let mut events = Vec::new();
        for index in self.due.take_due(now) {
            while let Some(step) = self.next_due_step(index, now) {
                if let Action::Utterance { slot, number } = step.action {
                    events.extend(self.transcription(index, slot, number, step.at));
                } else if self.run_step(index, &step) {
                    events.extend(self.changed(index));
                }
            }
            // Steps that changed nothing still consumed the plan.
            self.reindex(index);
        }
        events
    }

    /// The real-time transcription event of one utterance (API.md §3.9): odd utterances
    /// are the customer's (`EXTERNAL`), even ones the agent's (`INTERNAL`). Transcription
    /// does not change the conversation, so no snapshot follows.
    fn transcription(
        &self,
        index: usize,
        slot: usize,
        number: u32,
        at: DateTime<Utc>,
    ) -> Option<TopicEvent> {
        let conv = self.conversations.get(index)?;
        if conv.end.is_some() {
            return None;
        }
        let customer = conv.customer().and_then(|i| conv.participants.get(i))?;
        let agent = conv
            .slots
            .get(slot)
            .and_then(|&i| conv.participants.get(i))?;
        let (leg, channel, text) = if number % 2 == 1 {
            (
                customer,
                "EXTERNAL",
                format!("Customer utterance {number}: I have a question about my order."),
            )
        } else {
            (
                agent,
                "INTERNAL",
                format!("Agent utterance {number}: let me check that for you."),
            )
        };
        let session_start = conv.start.timestamp_millis();
        let offset = (at - conv.start).num_milliseconds().max(0);
        let body = serde_json::json!({
            "eventTime": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "conversationId": conv.id,
            "communicationId": leg.comm_id,
            "sessionStartTimeMs": session_start,
            "transcriptionStartTimeMs": session_start,
            "transcripts": [{
                "utteranceId": format!("{}-u{number}", conv.id),
                "isFinal": true,
                "channel": channel,
                "alternatives": [{
                    "confidence": 0.9,
                    "offsetMs": offset,
                    "durationMs": 1200,
                    "transcript": text,
                }],
                "engineProvider": "GENESYS",
                "dialect": "en-US",
                // The org transcribes its voice calls (Genesys sets it per result).
                "voiceTranscriptionEnabled": true,
            }],
        });
        Some(TopicEvent {
            topic: format!("v2.conversations.{}.transcription", conv.id),
            body,
        })
    }

    /// Removes and returns the conversation's first step when it is due.
    fn next_due_step(&mut self, index: usize, now: DateTime<Utc>) -> Option<Step> {
        let conv = self.conversations.get_mut(index)?;
        if conv.plan.first()?.at > now {
            return None;
        }
        Some(conv.plan.remove(0))
    }

    /// Runs one step at its own time; returns whether the conversation changed.
    fn run_step(&mut self, index: usize, step: &Step) -> bool {
        let at = step.at;
        match step.action {
            Action::Offer { slot } => self.offer(index, slot, at),
            action => {
                let Some(conv) = self.conversations.get_mut(index) else {
                    return false;
                };
                run_on_conversation(conv, &action, at, &self.directory)
            }
        }
    }

    /// Offers the conversation to a new agent: takes it from the queue leg (slot 0) or
    /// transfers it from the previous agent.
    fn offer(&mut self, index: usize, slot: usize, at: DateTime<Utc>) -> bool {
        let Some(conv) = self.conversations.get(index) else {
            return false;
        };
        if conv.end.is_some() || conv.slots.len() != slot {
            return false;
        }
        let previous_user = match slot {
            0 => None,
            _ => match conv
                .slots
                .get(slot - 1)
                .and_then(|&p| conv.participants.get(p))
            {
                Some(previous) if previous.state == CommunicationState::Connected => {
                    previous.user_id.clone()
                }
                _ => return false,
            },
        };
        let queue = conv.queue;
        let Some(agent) = self.pick_agent(queue, previous_user.as_deref()) else {
            return false;
        };
        let participant_id = self.ids.uuid();
        let comm_id = self.ids.uuid();
        let Some(agent_record) = self.directory.agents.get(agent) else {
            return false;
        };
        let (agent_id, agent_name) = (agent_record.id.clone(), agent_record.name.clone());
        let queue_id = self.directory.queues.get(queue).map(|q| q.id.clone());
        let transferred = self.directory.transferred_wrapup();
        let Some(conv) = self.conversations.get_mut(index) else {
            return false;
        };
        let offered_at = if slot == 0 {
            // Queue entry: the queue leg's start.
            conv.participants
                .iter()
                .find(|p| p.purpose == Purpose::Acd)
                .map_or(conv.start, |p| p.start)
        } else {
            at
        };
        if slot == 0 {
            if let Some(acd) = conv
                .participants
                .iter()
                .position(|p| p.purpose == Purpose::Acd && p.is_live())
            {
                conv.disconnect(acd, at, DisconnectType::Transfer);
            }
        } else if let Some(&previous) = conv.slots.get(slot - 1) {
            conv.disconnect(previous, at, DisconnectType::Transfer);
            conv.record_wrapup(previous, transferred, at);
        }
        let peer = conv
            .customer()
            .and_then(|c| conv.participants.get(c))
            .map(|c| c.comm_id.clone());
        let direction = conv.originating.clone();
        conv.participants.push(Part {
            id: participant_id,
            purpose: Purpose::Agent,
            name: agent_name,
            user_id: Some(agent_id),
            queue_id,
            address: String::new(),
            comm_id,
            state: CommunicationState::Alerting,
            initial_state: CommunicationState::Alerting,
            direction,
            start: at,
            connected: None,
            end: None,
            disconnect_type: None,
            peer,
            wrapup_required: true,
            wrapup: None,
            wrapup_skipped: false,
            acw_start: None,
            acw_end: None,
            attributes: Default::default(),
            offered_at,
        });
        conv.slots.push(conv.participants.len() - 1);
        conv.cascade(at);
        true
    }

    /// The least busy agent of the queue (live agent legs in conversations still being
    /// routed, as [`super::schedule::AgentLoad`] keeps them), ties broken round robin;
    /// `avoid` is skipped when another agent exists.
    fn pick_agent(&mut self, queue: usize, avoid: Option<&str>) -> Option<usize> {
        let members = self.directory.queues.get(queue)?.agents.clone();
        if members.is_empty() {
            return None;
        }
        let start = self.next_agent.get(queue).copied().unwrap_or(0);
        let candidates: Vec<usize> = (0..members.len())
            .map(|offset| members[(start + offset) % members.len()])
            .filter(|&agent| {
                members.len() == 1
                    || avoid.is_none()
                    || self.directory.agents.get(agent).map(|a| a.id.as_str()) != avoid
            })
            .collect();
        let chosen = candidates
            .into_iter()
            .min_by_key(|&agent| self.agent_load.of(agent))?;
        if let Some(next) = self.next_agent.get_mut(queue) {
            let position = members.iter().position(|&a| a == chosen).unwrap_or(0);
            *next = (position + 1) % members.len();
        }
        Some(chosen)
    }

    /// Creates a routed conversation and registers it; returns its index.
    pub(super) fn add_conversation(
        &mut self,
        mut conv: Conv,
        profile: Option<&RoutingProfile>,
    ) -> usize {
        if let Some(profile) = profile {
            conv.plan = plan(profile, conv.start, conv.media);
        }
        let index = self.conversations.len();
        self.by_id.insert(conv.id.clone(), index);
        if let (Some(sender), None) = (&conv.sender, conv.end) {
            self.open_by_sender.insert(sender.clone(), index);
        }
        self.conversations.push(conv);
        self.reindex(index);
        index
    }

    /// `POST /emulator/v1/conversations/voice` with `{"queueId": …}` plus optional
    /// [`RoutingProfilePatch`] fields: a routed voice call, offering → connected →
    /// disconnected → terminated, then wrap-up. Returns `{"id", "queueId"}`.
    pub fn create_voice_conversation(
        &mut self,
        body: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<super::Applied<serde_json::Value>, OrgError> {
        // `queueId` plus optional profile fields (snake_case, as `PUT /emulator/v1/routing`).
        let mut object = body.as_object().cloned().ok_or_else(|| {
            OrgError::BadRequest("The voice conversation request must be a JSON object.".to_owned())
        })?;
        let queue_value = object.remove("queueId").unwrap_or(serde_json::Value::Null);
        let queue_id: String = super::read_body(&queue_value, "queueId")?;
        let patch: RoutingProfilePatch = super::read_body(
            &serde_json::Value::Object(object),
            "voice conversation request",
        )?;
        let now = self.remember_now(now);
        let queue = self
            .directory
            .queue_index(&queue_id)
            .ok_or_else(|| OrgError::NotFound {
                kind: "queue",
                id: queue_id.clone(),
            })?;
        let profile = self.options.routing.patched(&patch);
        let address = format!("tel:+1555{}", self.ids.digits(7));
        let id = self.ids.uuid();
        let customer_comm = self.ids.uuid();
        let customer = Part {
            id: self.ids.uuid(),
            purpose: Purpose::Customer,
            name: "Mobile Caller".to_owned(),
            user_id: None,
            queue_id: Some(queue_id.clone()),
            address: address.clone(),
            comm_id: customer_comm.clone(),
            state: CommunicationState::Offering,
            initial_state: CommunicationState::Offering,
            direction: Direction::Inbound,
            start: now,
            connected: None,
            end: None,
            disconnect_type: None,
            peer: None,
            wrapup_required: false,
            wrapup: None,
            wrapup_skipped: false,
            acw_start: None,
            acw_end: None,
            attributes: Default::default(),
            offered_at: now,
        };
        let acd = self.acd_part(queue, &customer_comm, CommunicationState::Offering, now);
        let conv = Conv {
            id: id.clone(),
            media: Media::Voice,
            queue,
            originating: Direction::Inbound,
            start: now,
            end: None,
            version: 0,
            address,
            participants: vec![customer, acd],
            messages: Vec::new(),
            plan: Vec::new(),
            slots: Vec::new(),
            sender: None,
            agentless: false,
        };
        let index = self.add_conversation(conv, Some(&profile));
        let events = self.changed(index);
        Ok(super::Applied {
            body: serde_json::json!({ "id": id, "queueId": queue_id }),
            events,
        })
    }

    /// The queue (`acd`) leg of a new conversation on `queue`.
    pub(super) fn acd_part(
        &mut self,
        queue: usize,
        customer_comm: &str,
        state: CommunicationState,
        now: DateTime<Utc>,
    ) -> Part {
        let (queue_id, queue_name) = self
            .directory
            .queues
            .get(queue)
            .map(|q| (q.id.clone(), q.name.clone()))
            .unwrap_or_default();
        let connected = (state == CommunicationState::Connected).then_some(now);
        Part {
            id: self.ids.uuid(),
            purpose: Purpose::Acd,
            name: queue_name,
            user_id: None,
            queue_id: Some(queue_id),
            address: String::new(),
            comm_id: self.ids.uuid(),
            initial_state: state.clone(),
            state,
            direction: Direction::Inbound,
            start: now,
            connected,
            end: None,
            disconnect_type: None,
            peer: Some(customer_comm.to_owned()),
            wrapup_required: false,
            wrapup: None,
            wrapup_skipped: false,
            acw_start: None,
            acw_end: None,
            attributes: Default::default(),
            offered_at: now,
        }
    }
}

/// Runs a step that needs only the conversation itself.
fn run_on_conversation(
    conv: &mut Conv,
    action: &Action,
    at: DateTime<Utc>,
    directory: &super::directory::Directory,
) -> bool {
    let slot_participant = |conv: &Conv, slot: usize| conv.slots.get(slot).copied();
    match *action {
        Action::ConnectCall => {
            let mut changed = false;
            for part in &mut conv.participants {
                if part.state == CommunicationState::Offering {
                    part.state = CommunicationState::Connected;
                    part.connected = Some(at);
                    changed = true;
                }
            }
            changed
        }
        Action::Offer { .. } | Action::Utterance { .. } => false,
        Action::Answer { slot } => {
            let Some(index) = slot_participant(conv, slot) else {
                return false;
            };
            match conv.participants.get_mut(index) {
                Some(part) if part.state == CommunicationState::Alerting => {
                    part.state = CommunicationState::Connected;
                    part.connected = Some(at);
                    true
                }
                _ => false,
            }
        }
        Action::Reply { slot, number } => {
            let Some(index) = slot_participant(conv, slot) else {
                return false;
            };
            let agent_connected = conv
                .participants
                .get(index)
                .is_some_and(|p| p.state == CommunicationState::Connected);
            let customer_live = conv
                .customer()
                .and_then(|c| conv.participants.get(c))
                .is_some_and(Part::is_live);
            if !(agent_connected && customer_live) {
                return false;
            }
            // The message id is derived, not drawn, so a step that does nothing leaves the
            // id sequence alone; it is unique per conversation, slot and reply.
            let id = reply_message_id(&conv.id, slot, number);
            let name = conv
                .participants
                .get(index)
                .map(|p| p.name.clone())
                .unwrap_or_default();
            conv.messages.push(Msg {
                id,
                participant: index,
                direction: Direction::Outbound,
                status: MessageStatus::Sent,
                time: at,
                text: Some(format!("Reply {number} from {name}")),
                media: Vec::new(),
                provider_message_id: None,
                originating_entity: "Human",
            });
            true
        }
        Action::HangUp { slot } => {
            let Some(index) = slot_participant(conv, slot) else {
                return false;
            };
            if !conv.disconnect(index, at, DisconnectType::Client) {
                return false;
            }
            conv.cascade(at);
            true
        }
        Action::Terminate => conv.terminate_voice_legs(),
        Action::WrapUp { slot } => {
            let Some(index) = slot_participant(conv, slot) else {
                return false;
            };
            let owes = conv
                .participants
                .get(index)
                .is_some_and(|p| !p.is_live() && p.wrapup.is_none() && !p.wrapup_skipped);
            if !owes {
                return false;
            }
            conv.record_wrapup(index, directory.resolved_wrapup(), at);
            true
        }
        Action::Abandon => {
            let answered = conv
                .participants
                .iter()
                .any(|p| p.purpose == Purpose::Agent && p.connected.is_some());
            let Some(customer) = conv.customer() else {
                return false;
            };
            if answered || !conv.disconnect(customer, at, DisconnectType::Endpoint) {
                return false;
            }
            conv.cascade(at);
            conv.terminate_voice_legs();
            true
        }
        Action::MarkSent { message } => match conv.messages.get_mut(message) {
            Some(msg) if msg.status == MessageStatus::Queued => {
                msg.status = MessageStatus::Sent;
                true
            }
            _ => false,
        },
        Action::EndAgentless => {
            let live: Vec<usize> = conv
                .participants
                .iter()
                .enumerate()
                .filter(|(_, p)| p.purpose != Purpose::Customer && p.is_live())
                .map(|(i, _)| i)
                .collect();
            if live.is_empty() {
                return false;
            }
            for index in live {
                conv.disconnect(index, at, DisconnectType::Client);
            }
            conv.cascade(at);
            true
        }
    }
}

/// A 32-hex message id derived from the conversation id, the agent slot and the reply
/// number (FNV-1a, twice, with different offsets).
fn reply_message_id(conversation: &str, slot: usize, number: u32) -> String {
    let text = format!("{conversation}/{slot}/{number}");
    let hash = |offset: u64| -> u64 {
        text.bytes().fold(offset, |acc, byte| {
            (acc ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    format!(
        "{:016x}{:016x}",
        hash(0xcbf2_9ce4_8422_2325),
        hash(0x6c62_272e_07bb_0142)
    )
}

impl super::directory::Directory {
    pub(super) fn resolved_wrapup(&self) -> Wrapup {
        Wrapup {
            code: Some(self.resolved.id.clone()),
            name: Some(self.resolved.name.clone()),
            notes: Some("Handled by a synthetic agent".to_owned()),
            ..Wrapup::default()
        }
    }

    pub(super) fn transferred_wrapup(&self) -> Wrapup {
        Wrapup {
            code: Some(self.transferred.id.clone()),
            name: Some(self.transferred.name.clone()),
            notes: Some("Transferred by a synthetic agent".to_owned()),
            ..Wrapup::default()
        }
    }
}
