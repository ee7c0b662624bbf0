//! What a conversation's state requires the shell to do, as data (ARCHITECTURE.md §1,
//! anchors.md §2.2): which of Convoy's participant-state attributes Genesys does not show
//! yet. (What happened, for the SLA clocks and the CRM, is [`super::facts`].)
//!
//! Writes are derived from the *state*, never from transitions: what Genesys shows
//! (`convoy.*` attributes, joined from snapshots and REST re-reads) against each
//! participant's lifecycle. So a write that failed, a write lost to a crash or a shutdown,
//! and a write superseded by a newer state all resolve the same way: the next look at the
//! state owes exactly the writes still missing, with the latest values. Never performs an
//! effect, never writes a key outside Convoy's own `convoy.` namespace (other
//! integrations own the rest of the participant attributes), never reads the clock.

use std::collections::BTreeMap;

use serde::Serialize;

use super::lifecycle::Lifecycle;
use super::state::ConversationState;
use crate::ids::ParticipantId;

pub use super::state::Transition;

/// Prefix of every participant attribute Convoy writes.
pub const ATTRIBUTE_NAMESPACE: &str = "convoy.";
/// The participant's lifecycle (`pending`, `joined`, `active`, `left`, `failed`).
pub const PARTICIPANT_STATE_ATTRIBUTE: &str = "convoy.participant_state";
/// The conversation version the state was computed at.
pub const VERSION_ATTRIBUTE: &str = "convoy.version";

/// Convoy's attributes for one participant, as Genesys should show them:
/// `PATCH /api/v2/conversations/{id}/participants/{participant_id}/attributes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttributeWrite {
    pub participant_id: ParticipantId,
    pub lifecycle: Lifecycle,
    /// The conversation version the lifecycle was computed at.
    pub version: u64,
}

impl AttributeWrite {
    /// The PATCH body's attributes: only Convoy's namespaced keys.
    pub fn attributes(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                PARTICIPANT_STATE_ATTRIBUTE.to_owned(),
                self.lifecycle.as_str().to_owned(),
            ),
            (VERSION_ATTRIBUTE.to_owned(), self.version.to_string()),
        ])
    }
}

/// The writes Genesys is owed: one per participant whose `convoy.participant_state` is
/// missing or differs from its lifecycle, in participant order, each carrying the
/// conversation's current `version`. Only the lifecycle decides: rewriting just to bump
/// `convoy.version` would cost a REST call per event for no information.
pub fn owed_writes(state: &ConversationState, version: u64) -> Vec<AttributeWrite> {
    state
        .participants
        .iter()
        .filter_map(|(participant_id, participant)| {
            let lifecycle = participant.lifecycle();
            let shown = participant.attributes.get(PARTICIPANT_STATE_ATTRIBUTE);
            (shown.map(String::as_str) != Some(lifecycle.as_str())).then(|| AttributeWrite {
                participant_id: participant_id.clone(),
                lifecycle,
                version,
            })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::conversation::facts::{facts, Fact};
    use crate::conversation::snapshot::{
        CommunicationSnapshot, ConversationSnapshot, Medium, MessageSnapshot, ParticipantSnapshot,
    };
    use crate::conversation::state::Conversation;
    use crate::ids::ConversationId;
    use crate::ids::{CommunicationId, MessageId};
    use crate::model::{CommunicationState, MessageStatus, Purpose};

    fn participant(
        id: &str,
        state: CommunicationState,
        attributes: &[(&str, &str)],
    ) -> ParticipantSnapshot {
        ParticipantSnapshot {
            id: ParticipantId::from(id),
            purpose: Some(Purpose::Agent),
            name: None,
            user_id: None,
            queue_id: None,
            state: None,
            disconnect_type: None,
            error: false,
            connected_time: None,
            end_time: None,
            wrapup_required: Some(false),
            wrapup_skipped: None,
            wrapup: None,
            attributes: attributes
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            communications: vec![CommunicationSnapshot {
                id: CommunicationId::from(format!("{id}-leg")),
                medium: Medium::Messages,
                state: Some(state),
                direction: None,
                disconnect_type: None,
                error: false,
                connected_time: None,
                disconnected_time: None,
                message_type: None,
                transcript_uri: None,
                after_call_work: None,
                wrapup: None,
            }],
            messages: Vec::new(),
        }
    }

    fn snapshot(participants: Vec<ParticipantSnapshot>) -> ConversationSnapshot {
        ConversationSnapshot {
            conversation_id: ConversationId::from("c1"),
            start_time: None,
            end_time: None,
            participants,
        }
    }

    fn write(participant: &str, lifecycle: Lifecycle, version: u64) -> AttributeWrite {
        AttributeWrite {
            participant_id: ParticipantId::from(participant),
            lifecycle,
            version,
        }
    }

    #[test]
    fn a_lifecycle_change_owes_a_write_and_notifies_each_transition() {
        let mut conversation = Conversation::new(ConversationId::from("c1"));
        let outcome = conversation
            .apply_snapshot(&snapshot(vec![participant(
                "agent",
                CommunicationState::Connected,
                &[],
            )]))
            .unwrap();
        let facts = facts(&conversation.state, &outcome);
        assert!(facts.iter().any(|fact| matches!(
            fact,
            Fact::ParticipantReached {
                to: Lifecycle::Active,
                ..
            }
        )));
        assert_eq!(
            owed_writes(&conversation.state, conversation.version),
            vec![write("agent", Lifecycle::Active, 1)]
        );
    }

    #[test]
    fn the_write_carries_the_latest_state_not_each_intermediate_one() {
        let mut conversation = Conversation::new(ConversationId::from("c1"));
        conversation
            .apply_snapshot(&snapshot(vec![participant(
                "agent",
                CommunicationState::Alerting,
                &[],
            )]))
            .unwrap();
        conversation
            .apply_snapshot(&snapshot(vec![participant(
                "agent",
                CommunicationState::Connected,
                &[],
            )]))
            .unwrap();
        assert_eq!(
            owed_writes(&conversation.state, conversation.version),
            vec![write("agent", Lifecycle::Active, 2)]
        );
    }

    #[test]
    fn only_convoy_keys_are_written() {
        let owed = write("agent", Lifecycle::Left, 7);
        let attributes = owed.attributes();
        assert!(attributes
            .keys()
            .all(|key| key.starts_with(ATTRIBUTE_NAMESPACE)));
        assert_eq!(attributes[PARTICIPANT_STATE_ATTRIBUTE], "left");
        assert_eq!(attributes[VERSION_ATTRIBUTE], "7");
    }

    #[test]
    fn a_state_genesys_already_shows_is_not_owed() {
        // E.g. an actor rebuilt from REST after a crash: its first write had landed.
        let mut conversation = Conversation::new(ConversationId::from("c1"));
        let outcome = conversation
            .apply_snapshot(&snapshot(vec![participant(
                "agent",
                CommunicationState::Connected,
                &[
                    (PARTICIPANT_STATE_ATTRIBUTE, "active"),
                    (VERSION_ATTRIBUTE, "3"),
                    ("crm.ticket", "T-1"),
                ],
            )]))
            .unwrap();
        assert!(owed_writes(&conversation.state, conversation.version).is_empty());
        assert!(
            !facts(&conversation.state, &outcome).is_empty(),
            "the facts are still handed over"
        );
    }

    #[test]
    fn a_state_genesys_shows_differently_is_owed_even_without_a_transition() {
        // A write lost to a crash or an outage: the re-read shows the old value.
        let mut conversation = Conversation::new(ConversationId::from("c1"));
        conversation
            .apply_snapshot(&snapshot(vec![participant(
                "agent",
                CommunicationState::Disconnected,
                &[
                    (PARTICIPANT_STATE_ATTRIBUTE, "active"),
                    (VERSION_ATTRIBUTE, "2"),
                ],
            )]))
            .unwrap();
        let again = conversation
            .apply_snapshot(&snapshot(vec![participant(
                "agent",
                CommunicationState::Disconnected,
                &[
                    (PARTICIPANT_STATE_ATTRIBUTE, "active"),
                    (VERSION_ATTRIBUTE, "2"),
                ],
            )]))
            .unwrap();
        assert!(again.transitions.is_empty());
        assert_eq!(
            owed_writes(&conversation.state, conversation.version),
            vec![write("agent", Lifecycle::Left, conversation.version)]
        );
    }

    #[test]
    fn an_echo_of_convoys_own_write_costs_nothing_and_settles_the_debt() {
        let mut conversation = Conversation::new(ConversationId::from("c1"));
        conversation
            .apply_snapshot(&snapshot(vec![participant(
                "agent",
                CommunicationState::Connected,
                &[],
            )]))
            .unwrap();
        let version = conversation.version;
        let echo = conversation
            .apply_snapshot(&snapshot(vec![participant(
                "agent",
                CommunicationState::Connected,
                &[
                    (PARTICIPANT_STATE_ATTRIBUTE, "active"),
                    (VERSION_ATTRIBUTE, &version.to_string()),
                ],
            )]))
            .unwrap();
        assert!(!echo.changed);
        assert!(echo.own_attributes_changed);
        assert!(echo.transitions.is_empty());
        assert_eq!(conversation.version, version, "an echo bumps no version");
        assert!(owed_writes(&conversation.state, conversation.version).is_empty());
    }

    #[test]
    fn an_older_echo_arriving_late_does_not_hide_a_newer_write() {
        // Genesys publishes one snapshot per write; they may arrive in any order.
        let mut conversation = Conversation::new(ConversationId::from("c1"));
        let newer = [
            (PARTICIPANT_STATE_ATTRIBUTE, "left"),
            (VERSION_ATTRIBUTE, "4"),
        ];
        let older = [
            (PARTICIPANT_STATE_ATTRIBUTE, "pending"),
            (VERSION_ATTRIBUTE, "1"),
        ];
        conversation
            .apply_snapshot(&snapshot(vec![participant(
                "agent",
                CommunicationState::Disconnected,
                &newer,
            )]))
            .unwrap();
        conversation
            .apply_snapshot(&snapshot(vec![participant(
                "agent",
                CommunicationState::Disconnected,
                &older,
            )]))
            .unwrap();
        let shown = &conversation.state.participants[&ParticipantId::from("agent")].attributes;
        assert_eq!(shown[PARTICIPANT_STATE_ATTRIBUTE], "left");
        assert_eq!(shown[VERSION_ATTRIBUTE], "4");
        assert_eq!(conversation.written_version(), 4);
        assert!(owed_writes(&conversation.state, conversation.version).is_empty());
    }

    #[test]
    fn message_transitions_notify_and_owe_no_new_write() {
        let mut conversation = Conversation::new(ConversationId::from("c1"));
        let shown = [
            (PARTICIPANT_STATE_ATTRIBUTE, "active"),
            (VERSION_ATTRIBUTE, "1"),
        ];
        conversation
            .apply_snapshot(&snapshot(vec![participant(
                "agent",
                CommunicationState::Connected,
                &shown,
            )]))
            .unwrap();
        let mut agent = participant("agent", CommunicationState::Connected, &shown);
        agent.messages.push(MessageSnapshot {
            id: MessageId::from("m1"),
            communication_id: None,
            status: Some(MessageStatus::Sent),
            message_time: None,
            segment_count: None,
            media: Vec::new(),
            stickers: Vec::new(),
            transcript_uri: None,
        });
        let outcome = conversation.apply_snapshot(&snapshot(vec![agent])).unwrap();
        let facts = facts(&conversation.state, &outcome);
        assert!(facts
            .iter()
            .any(|fact| matches!(fact, Fact::MessageStatus { .. })));
        assert!(owed_writes(&conversation.state, conversation.version).is_empty());
    }

    #[test]
    fn a_stale_snapshot_has_no_events() {
        let mut conversation = Conversation::new(ConversationId::from("c1"));
        conversation
            .apply_snapshot(&snapshot(vec![participant(
                "agent",
                CommunicationState::Disconnected,
                &[],
            )]))
            .unwrap();
        let outcome = conversation
            .apply_snapshot(&snapshot(vec![participant(
                "agent",
                CommunicationState::Connected,
                &[],
            )]))
            .unwrap();
        assert!(!outcome.stale.is_empty());
        assert!(facts(&conversation.state, &outcome).is_empty());
    }
}
