//! What a conversation's transitions require the shell to do, as data (ARCHITECTURE.md
//! §1, anchors.md §2.2): write Convoy's participant-state attributes to Genesys, and tell
//! the downstream actors (SLA, CRM) what happened.
//!
//! Owns the derivation of effects, and the 409/412 path as a pure function: after a
//! conflict the actor re-reads and re-joins, and [`reapply`] recomputes the writes against
//! that fresh state. Never performs an effect, never writes a key outside Convoy's own
//! `convoy.` namespace (other integrations own the rest of the participant attributes),
//! never reads the clock.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::state::{ApplyOutcome, ConversationState, Transition};
use crate::ids::{ConversationId, ParticipantId};

/// Prefix of every participant attribute Convoy writes.
pub const ATTRIBUTE_NAMESPACE: &str = "convoy.";
/// The participant's lifecycle (`pending`, `joined`, `active`, `left`, `failed`).
pub const PARTICIPANT_STATE_ATTRIBUTE: &str = "convoy.participant_state";
/// The conversation version the state was computed at.
pub const VERSION_ATTRIBUTE: &str = "convoy.version";

/// One transition of one conversation, for the actors downstream of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DomainEvent {
    pub conversation_id: ConversationId,
    /// The conversation version right after the change.
    pub version: u64,
    pub transition: Transition,
}

/// Something the ConversationActor must do.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    /// `PATCH /api/v2/conversations/{conversation_id}/participants/{participant_id}/attributes`
    /// with these attributes — only Convoy's namespaced keys.
    PatchAttributes {
        conversation_id: ConversationId,
        participant_id: ParticipantId,
        attributes: BTreeMap<String, String>,
    },
    /// Hand the event to the SLA and CRM actors.
    Notify(DomainEvent),
}

impl Effect {
    /// A write to Genesys (as opposed to an in-process notification).
    pub fn is_write(&self) -> bool {
        matches!(self, Effect::PatchAttributes { .. })
    }
}

/// The effects of one applied input: a notification per transition, in transition order,
/// then at most one attribute write per participant whose lifecycle changed, in
/// participant order. Notifications come first because they are in-process and must not
/// wait behind a REST write.
///
/// `state` is the state *after* the apply. A stale or unchanged input yields nothing.
pub fn effects_for(state: &ConversationState, outcome: &ApplyOutcome) -> Vec<Effect> {
    let mut effects: Vec<Effect> = outcome
        .transitions
        .iter()
        .map(|transition| {
            Effect::Notify(DomainEvent {
                conversation_id: state.id.clone(),
                version: outcome.version,
                transition: transition.clone(),
            })
        })
        .collect();
    // A set: several transitions of one participant in one snapshot (added, joined and
    // left at once) still make one write, carrying where the participant is now.
    let touched: BTreeSet<&ParticipantId> = outcome
        .transitions
        .iter()
        .filter_map(lifecycle_participant)
        .collect();
    effects.extend(
        touched
            .into_iter()
            .filter_map(|participant_id| attribute_write(state, participant_id, outcome.version)),
    );
    effects
}

/// The 409/412 path: recomputes `pending` effects against `fresh`, the state re-read from
/// Genesys and re-joined, at conversation version `version`.
///
/// - each participant written in `pending` gets one write with its lifecycle in `fresh`
///   (several pending writes for one participant merge);
/// - a write `fresh` already shows (the attribute already holds that lifecycle, e.g. the
///   first attempt did land) is dropped;
/// - writes for another conversation, or a participant `fresh` does not know, are dropped;
/// - notifications pass through unchanged, in order: a conflict on a write does not
///   undo what was observed.
pub fn reapply(pending: &[Effect], fresh: &ConversationState, version: u64) -> Vec<Effect> {
    let mut effects = Vec::new();
    let mut rewrite: BTreeSet<&ParticipantId> = BTreeSet::new();
    for effect in pending {
        match effect {
            Effect::Notify(_) => effects.push(effect.clone()),
            Effect::PatchAttributes {
                conversation_id,
                participant_id,
                ..
            } if *conversation_id == fresh.id => {
                rewrite.insert(participant_id);
            }
            Effect::PatchAttributes { .. } => {}
        }
    }
    effects.extend(
        rewrite
            .into_iter()
            .filter_map(|participant_id| attribute_write(fresh, participant_id, version)),
    );
    effects
}

/// The participant whose lifecycle a transition moved.
fn lifecycle_participant(transition: &Transition) -> Option<&ParticipantId> {
    match transition {
        Transition::ParticipantAdded { participant_id, .. }
        | Transition::ParticipantJoined { participant_id, .. }
        | Transition::ParticipantBecameActive { participant_id, .. }
        | Transition::ParticipantLeft { participant_id, .. }
        | Transition::ParticipantFailed { participant_id, .. } => Some(participant_id),
        Transition::MessageSeen { .. }
        | Transition::MessageStatusAdvanced { .. }
        | Transition::AttachmentAdded { .. }
        | Transition::WrapupRecorded { .. }
        | Transition::TranscriptSegmentUpdated { .. }
        | Transition::ConversationEnded => None,
    }
}

/// The write that brings a participant's Convoy attributes in line with its lifecycle, or
/// `None` when Genesys already shows that lifecycle. Only the state decides: rewriting just
/// to bump `convoy.version` would cost a REST call per event for no information.
fn attribute_write(
    state: &ConversationState,
    participant_id: &ParticipantId,
    version: u64,
) -> Option<Effect> {
    let participant = state.participants.get(participant_id)?;
    let lifecycle = participant.lifecycle().as_str();
    let shown = participant.attributes.get(PARTICIPANT_STATE_ATTRIBUTE);
    if shown.is_some_and(|value| value == lifecycle) {
        return None;
    }
    let attributes = BTreeMap::from([
        (PARTICIPANT_STATE_ATTRIBUTE.to_owned(), lifecycle.to_owned()),
        (VERSION_ATTRIBUTE.to_owned(), version.to_string()),
    ]);
    Some(Effect::PatchAttributes {
        conversation_id: state.id.clone(),
        participant_id: participant_id.clone(),
        attributes,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::conversation::lifecycle::Lifecycle;
    use crate::conversation::snapshot::{
        CommunicationSnapshot, ConversationSnapshot, Medium, MessageSnapshot, ParticipantSnapshot,
    };
    use crate::conversation::state::Conversation;
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

    fn patch(participant: &str, lifecycle: Lifecycle, version: u64) -> Effect {
        Effect::PatchAttributes {
            conversation_id: ConversationId::from("c1"),
            participant_id: ParticipantId::from(participant),
            attributes: BTreeMap::from([
                (
                    PARTICIPANT_STATE_ATTRIBUTE.to_owned(),
                    lifecycle.as_str().to_owned(),
                ),
                (VERSION_ATTRIBUTE.to_owned(), version.to_string()),
            ]),
        }
    }

    fn writes(effects: &[Effect]) -> Vec<Effect> {
        effects.iter().filter(|e| e.is_write()).cloned().collect()
    }

    #[test]
    fn a_lifecycle_change_writes_the_state_and_version_and_notifies_each_transition() {
        let mut conversation = Conversation::new(ConversationId::from("c1"));
        let outcome = conversation
            .apply_snapshot(&snapshot(vec![participant(
                "agent",
                CommunicationState::Connected,
                &[],
            )]))
            .unwrap();
        let effects = effects_for(&conversation.state, &outcome);
        let notified: Vec<&Transition> = effects
            .iter()
            .filter_map(|effect| match effect {
                Effect::Notify(event) => {
                    assert_eq!(event.conversation_id, ConversationId::from("c1"));
                    assert_eq!(event.version, 1);
                    Some(&event.transition)
                }
                Effect::PatchAttributes { .. } => None,
            })
            .collect();
        assert_eq!(notified, outcome.transitions.iter().collect::<Vec<_>>());
        assert_eq!(writes(&effects), [patch("agent", Lifecycle::Active, 1)]);
        let first_write = effects.iter().position(Effect::is_write).unwrap();
        assert!(
            effects[first_write..].iter().all(Effect::is_write),
            "notifications come before writes"
        );
    }

    #[test]
    fn several_transitions_of_one_participant_make_one_write_with_the_latest_state() {
        let mut conversation = Conversation::new(ConversationId::from("c1"));
        // Added, joined… and already gone, all in one snapshot.
        let outcome = conversation
            .apply_snapshot(&snapshot(vec![
                participant("agent", CommunicationState::Disconnected, &[]),
                participant("customer", CommunicationState::Alerting, &[]),
            ]))
            .unwrap();
        assert!(outcome.transitions.len() > 2);
        let effects = effects_for(&conversation.state, &outcome);
        assert_eq!(
            writes(&effects),
            [
                patch("agent", Lifecycle::Left, 1),
                patch("customer", Lifecycle::Joined, 1)
            ]
        );
    }

    #[test]
    fn only_convoy_keys_are_written_even_when_others_are_present() {
        let mut conversation = Conversation::new(ConversationId::from("c1"));
        let outcome = conversation
            .apply_snapshot(&snapshot(vec![participant(
                "agent",
                CommunicationState::Connected,
                &[("crm.ticket", "T-1"), ("convoy.version", "0")],
            )]))
            .unwrap();
        let written = writes(&effects_for(&conversation.state, &outcome));
        assert_eq!(written.len(), 1);
        for effect in written {
            if let Effect::PatchAttributes { attributes, .. } = effect {
                assert!(attributes
                    .keys()
                    .all(|key| key.starts_with(ATTRIBUTE_NAMESPACE)));
            }
        }
    }

    #[test]
    fn a_state_genesys_already_shows_is_not_written_again() {
        // E.g. an actor rebuilt from REST after a crash: its first write had landed.
        let mut conversation = Conversation::new(ConversationId::from("c1"));
        let outcome = conversation
            .apply_snapshot(&snapshot(vec![participant(
                "agent",
                CommunicationState::Connected,
                &[
                    (PARTICIPANT_STATE_ATTRIBUTE, "active"),
                    (VERSION_ATTRIBUTE, "3"),
                ],
            )]))
            .unwrap();
        let effects = effects_for(&conversation.state, &outcome);
        assert!(writes(&effects).is_empty());
        assert!(!effects.is_empty(), "the transitions are still notified");
    }

    #[test]
    fn message_transitions_only_notify() {
        let mut conversation = Conversation::new(ConversationId::from("c1"));
        let mut agent = participant("agent", CommunicationState::Connected, &[]);
        conversation
            .apply_snapshot(&snapshot(vec![agent.clone()]))
            .unwrap();
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
        let effects = effects_for(&conversation.state, &outcome);
        assert_eq!(effects.len(), 1);
        assert!(matches!(
            &effects[0],
            Effect::Notify(DomainEvent {
                transition: Transition::MessageSeen { .. },
                version: 2,
                ..
            })
        ));
    }

    #[test]
    fn a_stale_snapshot_has_no_effects() {
        let mut conversation = Conversation::new(ConversationId::from("c1"));
        conversation
            .apply_snapshot(&snapshot(vec![participant(
                "agent",
                CommunicationState::Connected,
                &[],
            )]))
            .unwrap();
        let outcome = conversation
            .apply_snapshot(&snapshot(vec![participant(
                "agent",
                CommunicationState::Alerting,
                &[],
            )]))
            .unwrap();
        assert!(effects_for(&conversation.state, &outcome).is_empty());
    }

    #[test]
    fn reapply_recomputes_writes_against_the_fresh_state() {
        let mut conversation = Conversation::new(ConversationId::from("c1"));
        conversation
            .apply_snapshot(&snapshot(vec![
                participant("agent", CommunicationState::Connected, &[]),
                participant("customer", CommunicationState::Connected, &[]),
                participant("bot", CommunicationState::Connected, &[]),
            ]))
            .unwrap();
        let notify = Effect::Notify(DomainEvent {
            conversation_id: ConversationId::from("c1"),
            version: 1,
            transition: Transition::ConversationEnded,
        });
        let pending = vec![
            notify.clone(),
            patch("agent", Lifecycle::Active, 1),
            patch("customer", Lifecycle::Active, 1),
            patch("agent", Lifecycle::Active, 1),
            patch("bot", Lifecycle::Active, 1),
        ];
        // The re-read shows: the agent has since left, the customer's write landed, and
        // the bot's attribute holds another writer's stale value.
        conversation
            .apply_snapshot(&snapshot(vec![
                participant("agent", CommunicationState::Disconnected, &[]),
                participant(
                    "customer",
                    CommunicationState::Connected,
                    &[(PARTICIPANT_STATE_ATTRIBUTE, "active")],
                ),
                participant(
                    "bot",
                    CommunicationState::Connected,
                    &[(PARTICIPANT_STATE_ATTRIBUTE, "joined")],
                ),
            ]))
            .unwrap();
        let recomputed = reapply(&pending, &conversation.state, conversation.version);
        assert_eq!(
            recomputed,
            [
                notify,
                patch("agent", Lifecycle::Left, 2),
                patch("bot", Lifecycle::Active, 2),
            ]
        );
    }

    #[test]
    fn reapply_drops_writes_for_other_conversations_and_unknown_participants() {
        let mut conversation = Conversation::new(ConversationId::from("c1"));
        conversation
            .apply_snapshot(&snapshot(vec![participant(
                "agent",
                CommunicationState::Connected,
                &[],
            )]))
            .unwrap();
        let foreign = Effect::PatchAttributes {
            conversation_id: ConversationId::from("c2"),
            participant_id: ParticipantId::from("agent"),
            attributes: BTreeMap::new(),
        };
        let pending = vec![foreign, patch("ghost", Lifecycle::Active, 1)];
        assert!(reapply(&pending, &conversation.state, 1).is_empty());
    }
}
