//! The business facts of one applied input: what the SLA clocks and the CRM records are
//! computed from. Derived from the transitions *and* the state they happened in, so each
//! fact carries its context (the participant's purpose and queue, the message's sender
//! and messaging platform), and the consumers never need the conversation itself.
//!
//! Two rules make the facts the same whether Convoy watched every event or rebuilt the
//! conversation from one REST read after a gap or a crash:
//! - a message status implies the ones before it on the outbound path
//!   (`sent → delivery-success → read`): a message first seen `read` also yields
//!   `sent` and `delivery-success`, marked `implied`. `queued` is never implied (a
//!   message may be first seen `sent`);
//! - a participant's fact names the lifecycle it *reached*, so the record of "agent X
//!   left" is the same fact whether it came from `active` or, after a gap, from `pending`.
//!
//! Pure: no clock (the observation time is an argument of the consumers), no I/O.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::lifecycle::Lifecycle;
use super::snapshot::{Attachment, MessageDirection};
use super::state::{
    message_status_rank, ApplyOutcome, CommunicationRecord, ConversationState, Transition,
};
use crate::ids::{MessageId, ParticipantId};
use crate::model::{MessageStatus, Purpose};
use crate::sla::{Observation, Sender};

/// One fact about one conversation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fact {
    /// A participant reached a lifecycle (each participant reaches each at most once).
    ParticipantReached {
        participant_id: ParticipantId,
        purpose: Option<Purpose>,
        queue_id: Option<String>,
        user_id: Option<String>,
        from: Lifecycle,
        to: Lifecycle,
    },
    /// A message reached a status (each message reaches each status at most once).
    MessageStatus {
        message_id: MessageId,
        participant_id: ParticipantId,
        direction: MessageDirection,
        sender: Sender,
        /// The messaging platform of the leg (`sms`, `whatsapp`, `open`, ...).
        messenger_type: Option<String>,
        /// The queue the conversation waits or waited in.
        queue_id: Option<String>,
        status: MessageStatus,
        /// Not seen itself, but implied by a later status.
        implied: bool,
        message_time: Option<DateTime<Utc>>,
        attachments: Vec<Attachment>,
    },
}

/// The facts of one applied input, in transition order (implied statuses before the
/// status that implies them).
pub fn facts(state: &ConversationState, outcome: &ApplyOutcome) -> Vec<Fact> {
    let mut facts = Vec::new();
    for transition in &outcome.transitions {
        match transition {
            Transition::ParticipantJoined {
                participant_id,
                from,
            } => facts.extend(reached(state, participant_id, *from, Lifecycle::Joined)),
            Transition::ParticipantBecameActive {
                participant_id,
                from,
            } => facts.extend(reached(state, participant_id, *from, Lifecycle::Active)),
            Transition::ParticipantLeft {
                participant_id,
                from,
            } => facts.extend(reached(state, participant_id, *from, Lifecycle::Left)),
            Transition::ParticipantFailed {
                participant_id,
                from,
            } => facts.extend(reached(state, participant_id, *from, Lifecycle::Failed)),
            Transition::MessageSeen {
                message_id, status, ..
            } => {
                if let Some(status) = status {
                    message_statuses(state, message_id, None, status, &mut facts);
                }
            }
            Transition::MessageStatusAdvanced {
                message_id,
                from,
                to,
            } => {
                message_statuses(state, message_id, from.as_ref(), to, &mut facts);
            }
            Transition::ParticipantAdded { .. }
            | Transition::AttachmentAdded { .. }
            | Transition::WrapupRecorded { .. }
            | Transition::TranscriptSegmentUpdated { .. }
            | Transition::ConversationEnded => {}
        }
    }
    facts
}

fn reached(
    state: &ConversationState,
    participant_id: &ParticipantId,
    from: Lifecycle,
    to: Lifecycle,
) -> Option<Fact> {
    let participant = state.participants.get(participant_id)?;
    Some(Fact::ParticipantReached {
        participant_id: participant_id.clone(),
        purpose: participant.purpose(),
        queue_id: participant.queue_id().map(|id| id.to_string()),
        user_id: participant.user_id().map(|id| id.to_string()),
        from,
        to,
    })
}

/// The outbound path a status implies the earlier steps of.
const OUTBOUND_PATH: [MessageStatus; 3] = [
    MessageStatus::Sent,
    MessageStatus::DeliverySuccess,
    MessageStatus::Read,
];

/// The statuses `to` implies that were not reached before (`from`), in path order.
fn implied_statuses(from: Option<&MessageStatus>, to: &MessageStatus) -> Vec<MessageStatus> {
    let implied_up_to = match to {
        MessageStatus::Read => 2,
        MessageStatus::DeliverySuccess | MessageStatus::DeliveryFailed => 1,
        _ => 0,
    };
    let reached = from.map_or(0, message_status_rank);
    OUTBOUND_PATH[..implied_up_to]
        .iter()
        .filter(|status| message_status_rank(status) > reached && Some(*status) != from)
        .cloned()
        .collect()
}

fn message_statuses(
    state: &ConversationState,
    message_id: &MessageId,
    from: Option<&MessageStatus>,
    to: &MessageStatus,
    facts: &mut Vec<Fact>,
) {
    let Some(message) = state.messages.get(message_id) else {
        return;
    };
    let direction = message.direction();
    let participant = state.participants.get(&message.participant_id);
    let sender = match direction {
        MessageDirection::Inbound => Sender::Customer,
        _ => match participant {
            Some(p)
                if matches!(p.purpose(), Some(Purpose::Agent | Purpose::User))
                    && p.user_id().is_some() =>
            {
                Sender::HumanAgent
            }
            Some(p) if matches!(p.purpose(), Some(Purpose::Customer | Purpose::External)) => {
                Sender::Customer
            }
            _ => Sender::Automated,
        },
    };
    let messenger_type = participant.and_then(|p| {
        let on_leg = message
            .communication_id
            .as_ref()
            .and_then(|id| p.communications.get(id))
            .and_then(CommunicationRecord::message_type);
        on_leg
            .or_else(|| {
                p.communications
                    .values()
                    .find_map(CommunicationRecord::message_type)
            })
            .map(|t| t.as_str().to_owned())
    });
    let messenger_type = messenger_type.or_else(|| {
        state
            .participants
            .values()
            .flat_map(|p| p.communications.values())
            .find_map(CommunicationRecord::message_type)
            .map(|t| t.as_str().to_owned())
    });
    let queue_id = conversation_queue(state);
    let attachments: Vec<Attachment> = message.media.values().cloned().collect();
    let fact = |status: MessageStatus, implied: bool| Fact::MessageStatus {
        message_id: message_id.clone(),
        participant_id: message.participant_id.clone(),
        direction,
        sender,
        messenger_type: messenger_type.clone(),
        queue_id: queue_id.clone(),
        status,
        implied,
        message_time: message.message_time,
        attachments: attachments.clone(),
    };
    if direction == MessageDirection::Outbound {
        for status in implied_statuses(from, to) {
            facts.push(fact(status, true));
        }
    }
    facts.push(fact(to.clone(), false));
}

/// The queue the conversation waits or waited in: the ACD participant's, else the first
/// queue any participant names.
pub fn conversation_queue(state: &ConversationState) -> Option<String> {
    state
        .participants
        .values()
        .filter(|p| p.purpose() == Some(Purpose::Acd))
        .find_map(|p| p.queue_id().map(|id| id.to_string()))
        .or_else(|| {
            state
                .participants
                .values()
                .find_map(|p| p.queue_id().map(|id| id.to_string()))
        })
}

/// What the SLA clocks learn from the facts. `finished`: nothing more is expected of the
/// conversation (ended, wrap-up settled).
pub fn sla_observations(facts: &[Fact], finished: bool) -> Vec<Observation> {
    let mut observations: Vec<Observation> = facts.iter().filter_map(observation).collect();
    if finished {
        observations.push(Observation::ConversationFinished);
    }
    observations
}

fn observation(fact: &Fact) -> Option<Observation> {
    match fact {
        Fact::ParticipantReached {
            participant_id,
            purpose,
            queue_id,
            user_id,
            to,
            ..
        } => match (purpose, to) {
            (Some(Purpose::Acd), Lifecycle::Joined | Lifecycle::Active) => {
                Some(Observation::QueueJoined {
                    participant_id: participant_id.to_string(),
                    queue_id: queue_id.clone(),
                })
            }
            (Some(Purpose::Agent | Purpose::User), Lifecycle::Active) if user_id.is_some() => {
                Some(Observation::AgentConnected {
                    participant_id: participant_id.to_string(),
                    queue_id: queue_id.clone(),
                    user_id: user_id.clone(),
                })
            }
            (Some(Purpose::Customer | Purpose::External), Lifecycle::Left | Lifecycle::Failed) => {
                Some(Observation::CustomerLeft {
                    participant_id: participant_id.to_string(),
                })
            }
            _ => None,
        },
        Fact::MessageStatus {
            message_id,
            direction,
            sender,
            messenger_type,
            queue_id,
            status,
            message_time,
            ..
        } => Some(Observation::Message {
            message_id: message_id.to_string(),
            direction: *direction,
            sender: *sender,
            messenger_type: messenger_type.clone(),
            queue_id: queue_id.clone(),
            status: status.clone(),
            message_time: *message_time,
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn read_first_seen_implies_sent_and_delivered() {
        assert_eq!(
            implied_statuses(None, &MessageStatus::Read),
            vec![MessageStatus::Sent, MessageStatus::DeliverySuccess]
        );
        assert_eq!(
            implied_statuses(Some(&MessageStatus::Sent), &MessageStatus::Read),
            vec![MessageStatus::DeliverySuccess]
        );
        assert_eq!(
            implied_statuses(Some(&MessageStatus::DeliverySuccess), &MessageStatus::Read),
            Vec::<MessageStatus>::new()
        );
    }

    #[test]
    fn queued_is_never_implied_and_failures_imply_only_sent() {
        assert!(implied_statuses(None, &MessageStatus::Sent).is_empty());
        assert!(implied_statuses(None, &MessageStatus::Queued).is_empty());
        assert_eq!(
            implied_statuses(Some(&MessageStatus::Queued), &MessageStatus::DeliveryFailed),
            vec![MessageStatus::Sent]
        );
        assert!(implied_statuses(Some(&MessageStatus::Queued), &MessageStatus::Failed).is_empty());
    }
}
