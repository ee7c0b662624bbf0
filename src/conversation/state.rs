//! Conversation state as a join of snapshots (ARCHITECTURE.md §4).
//!
//! Genesys sends whole-conversation snapshots, duplicated across user and queue topics, in
//! no guaranteed order, with no version. So every field of [`ConversationState`] is a small
//! join-semilattice: communication states and message statuses only move up their progress
//! order, times are set once (the earliest wins if two snapshots disagree), sets only grow,
//! and conflicting values resolve by a fixed order. Applying a snapshot is therefore
//! idempotent, commutative and associative: any order and any duplication of the same
//! snapshots converge to the same state (a property test proves it).
//!
//! Transitions are the difference between the state before and after a join. Inputs that
//! would move something backwards are reported as [`StaleInput`] and not applied.
//! [`Conversation::version`] counts accepted changes and never decreases.

use std::collections::{BTreeMap, BTreeSet};

use crate::sorted_map::SortedMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::lifecycle::{leg_lifecycle, state_rank, Lifecycle, FAILURE_DISCONNECT_TYPES};
use super::snapshot::{
    Attachment, CommunicationSnapshot, ConversationSnapshot, Medium, MessageDirection,
    MessageSnapshot, ParticipantSnapshot, Sticker, TranscriptSegment, TranscriptionEvent,
    WrapupRecord,
};
use crate::ids::{CommunicationId, ConversationId, MessageId, ParticipantId};
use crate::model::{
    AfterCallWorkState, CommunicationState, Direction, DisconnectType, MessageStatus, MessageType,
    Purpose,
};

/// Progress order of message statuses: `queued → sent → delivery-success | delivery-failed
/// → read`, with `removed` last. Unknown statuses rank lowest; ties between different
/// values cannot occur (the order is total).
pub fn message_status_rank(status: &MessageStatus) -> u8 {
    match status {
        MessageStatus::Unknown(_) => 0,
        MessageStatus::Queued => 1,
        MessageStatus::Sent => 2,
        MessageStatus::Published => 3,
        MessageStatus::Received => 4,
        MessageStatus::DeliverySuccess => 5,
        MessageStatus::Failed => 6,
        MessageStatus::DeliveryFailed => 7,
        MessageStatus::Read => 8,
        MessageStatus::Removed => 9,
    }
}

fn after_call_work_rank(state: &AfterCallWorkState) -> u8 {
    match state {
        AfterCallWorkState::Unknown(_) => 0,
        AfterCallWorkState::Unknown_ => 1,
        AfterCallWorkState::NotApplicable => 2,
        AfterCallWorkState::Pending => 3,
        AfterCallWorkState::Skipped => 4,
        AfterCallWorkState::Complete => 5,
    }
}

/// Outcome of joining one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Same,
    Advanced,
    /// The incoming value is behind the current one.
    Behind,
}

/// Joins an optional value by a progress key (higher wins; absent says nothing).
fn join_ranked<T: Clone + Ord>(
    current: &mut Option<T>,
    incoming: &Option<T>,
    rank: impl Fn(&T) -> u8,
) -> Step {
    let Some(new) = incoming else {
        return Step::Same;
    };
    match current {
        None => {
            *current = Some(new.clone());
            Step::Advanced
        }
        Some(old) => {
            // Rank first, then the value itself, so two unknown values still order totally.
            match (rank(new), new).cmp(&(rank(old), &*old)) {
                std::cmp::Ordering::Greater => {
                    *current = Some(new.clone());
                    Step::Advanced
                }
                std::cmp::Ordering::Less => Step::Behind,
                std::cmp::Ordering::Equal => Step::Same,
            }
        }
    }
}

/// Joins an optional value by its own order (higher wins; absent says nothing).
fn join_max<T: Clone + Ord>(current: &mut Option<T>, incoming: &Option<T>) -> bool {
    match (current.as_ref(), incoming) {
        (_, None) => false,
        (None, Some(new)) => {
            *current = Some(new.clone());
            true
        }
        (Some(old), Some(new)) if new > old => {
            *current = Some(new.clone());
            true
        }
        _ => false,
    }
}

/// Joins a set-once time: the earliest of two disagreeing values wins.
fn join_time(current: &mut Option<DateTime<Utc>>, incoming: &Option<DateTime<Utc>>) -> bool {
    match (current.as_ref(), incoming) {
        (_, None) => false,
        (None, Some(new)) => {
            *current = Some(*new);
            true
        }
        (Some(old), Some(new)) if new < old => {
            *current = Some(*new);
            true
        }
        _ => false,
    }
}

/// Whether a snapshot reports a failure on a leg: `errorInfo`, or a failure disconnect
/// type. Kept as a raised flag rather than re-derived from the joined `disconnect_type`:
/// two snapshots that disagree on the type would otherwise let a failed leg turn back into
/// a normal departure depending on arrival order.
fn reports_failure(error: bool, disconnect_type: Option<&DisconnectType>) -> bool {
    error || disconnect_type.is_some_and(|kind| FAILURE_DISCONNECT_TYPES.contains(kind))
}

/// Joins a flag that can only be raised.
fn join_flag(current: &mut bool, incoming: bool) -> bool {
    if incoming && !*current {
        *current = true;
        true
    } else {
        false
    }
}

/// What Convoy knows about one communication (leg).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommunicationRecord {
    pub medium: Medium,
    pub state: Option<CommunicationState>,
    pub direction: Option<Direction>,
    pub disconnect_type: Option<DisconnectType>,
    /// A failure was reported on this leg (`errorInfo` or a failure disconnect type).
    pub error: bool,
    pub connected_time: Option<DateTime<Utc>>,
    pub disconnected_time: Option<DateTime<Utc>>,
    pub message_type: Option<MessageType>,
    pub transcript_uri: Option<String>,
    pub after_call_work: Option<AfterCallWorkState>,
    pub wrapup: Option<WrapupRecord>,
}

impl CommunicationRecord {
    fn new(medium: Medium) -> Self {
        CommunicationRecord {
            medium,
            state: None,
            direction: None,
            disconnect_type: None,
            error: false,
            connected_time: None,
            disconnected_time: None,
            message_type: None,
            transcript_uri: None,
            after_call_work: None,
            wrapup: None,
        }
    }

    pub fn lifecycle(&self) -> Lifecycle {
        leg_lifecycle(self.state.as_ref(), None, self.error)
    }
}

/// What Convoy knows about one participant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParticipantRecord {
    pub purpose: Option<Purpose>,
    pub name: Option<String>,
    pub user_id: Option<String>,
    pub queue_id: Option<String>,
    /// Participant-level state (from the `.messages` shape).
    pub state: Option<CommunicationState>,
    pub disconnect_type: Option<DisconnectType>,
    pub error: bool,
    pub connected_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub wrapup_required: Option<bool>,
    pub wrapup_skipped: Option<bool>,
    pub wrapup: Option<WrapupRecord>,
    /// Participant attributes. They are informational: two snapshots that disagree on a
    /// key resolve to the greater string, which is deterministic but not "latest"; Convoy
    /// derives its own keys from the lifecycle and never reads them back.
    pub attributes: SortedMap<String, String>,
    pub communications: SortedMap<CommunicationId, CommunicationRecord>,
}

impl ParticipantRecord {
    /// Equality with Convoy's own `convoy.*` attributes left out.
    fn same_beyond_own_attributes(&self, other: &ParticipantRecord) -> bool {
        fn foreign(record: &ParticipantRecord) -> impl Iterator<Item = (&String, &String)> {
            record
                .attributes
                .iter()
                .filter(|(key, _)| !is_own_attribute(key))
        }
        // Destructured so that a field added later cannot be forgotten here.
        let ParticipantRecord {
            purpose,
            name,
            user_id,
            queue_id,
            state,
            disconnect_type,
            error,
            connected_time,
            end_time,
            wrapup_required,
            wrapup_skipped,
            wrapup,
            attributes: _,
            communications,
        } = self;
        *purpose == other.purpose
            && *name == other.name
            && *user_id == other.user_id
            && *queue_id == other.queue_id
            && *state == other.state
            && *disconnect_type == other.disconnect_type
            && *error == other.error
            && *connected_time == other.connected_time
            && *end_time == other.end_time
            && *wrapup_required == other.wrapup_required
            && *wrapup_skipped == other.wrapup_skipped
            && *wrapup == other.wrapup
            && *communications == other.communications
            && foreign(self).eq(foreign(other))
    }

    fn new() -> Self {
        ParticipantRecord {
            purpose: None,
            name: None,
            user_id: None,
            queue_id: None,
            state: None,
            disconnect_type: None,
            error: false,
            connected_time: None,
            end_time: None,
            wrapup_required: None,
            wrapup_skipped: None,
            wrapup: None,
            attributes: SortedMap::new(),
            communications: SortedMap::new(),
        }
    }

    /// The participant's lifecycle: the furthest stage of any of its legs (or of its own
    /// state); an `endTime` means it has at least left. Monotone in the joined state, so it
    /// never moves backwards as snapshots are applied.
    pub fn lifecycle(&self) -> Lifecycle {
        let own = leg_lifecycle(self.state.as_ref(), None, self.error);
        let legs = self
            .communications
            .values()
            .map(CommunicationRecord::lifecycle);
        let furthest = legs.fold(own, Lifecycle::max);
        if self.end_time.is_some() {
            furthest.max(Lifecycle::Left)
        } else {
            furthest
        }
    }

    /// The recorded wrap-up, at participant level or on any leg.
    pub fn recorded_wrapup(&self) -> Option<&WrapupRecord> {
        self.wrapup
            .as_ref()
            .or_else(|| self.communications.values().find_map(|c| c.wrapup.as_ref()))
    }

    /// True when no wrap-up is still owed: none required, one recorded, skipped, or the
    /// after-call work is complete, skipped or not applicable.
    pub fn wrapup_settled(&self) -> bool {
        if self.wrapup_required != Some(true) {
            return true;
        }
        self.recorded_wrapup().is_some()
            || self.wrapup_skipped == Some(true)
            || self.communications.values().any(|leg| {
                matches!(
                    leg.after_call_work,
                    Some(
                        AfterCallWorkState::Complete
                            | AfterCallWorkState::Skipped
                            | AfterCallWorkState::NotApplicable
                    )
                )
            })
    }
}

/// What Convoy knows about one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageRecord {
    /// The participant whose leg carries it (the smallest id if several legs show it).
    pub participant_id: ParticipantId,
    pub communication_id: Option<CommunicationId>,
    pub status: Option<MessageStatus>,
    pub message_time: Option<DateTime<Utc>>,
    pub segment_count: Option<u32>,
    /// Attachments by [`Attachment::key`].
    pub media: SortedMap<String, Attachment>,
    pub stickers: BTreeSet<Sticker>,
    pub transcript_uri: Option<String>,
}

impl MessageRecord {
    pub fn direction(&self) -> MessageDirection {
        MessageDirection::from_status(self.status.as_ref())
    }
}

/// The joined content of a conversation. Equality ignores the version (see [`Conversation`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConversationState {
    pub id: ConversationId,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub participants: SortedMap<ParticipantId, ParticipantRecord>,
    pub messages: SortedMap<MessageId, MessageRecord>,
    /// Real-time transcript segments by utterance id (a final segment replaces interim ones).
    pub transcript: SortedMap<String, TranscriptSegment>,
}

impl ConversationState {
    pub fn new(id: ConversationId) -> Self {
        ConversationState {
            id,
            start_time: None,
            end_time: None,
            participants: SortedMap::new(),
            messages: SortedMap::new(),
            transcript: SortedMap::new(),
        }
    }

    /// Every participant has left or failed (or REST reported an `endTime`). Wrap-up may
    /// still follow.
    pub fn is_ended(&self) -> bool {
        self.end_time.is_some()
            || (!self.participants.is_empty()
                && self.participants.values().all(|p| p.lifecycle().is_ended()))
    }

    /// Some outbound message still lacks a final receipt (read, delivery failed, failed,
    /// removed): a finished conversation can still change through it.
    pub fn awaits_receipts(&self) -> bool {
        self.messages.values().any(|message| {
            message.direction() == MessageDirection::Outbound
                && !matches!(
                    message.status,
                    Some(
                        MessageStatus::Read
                            | MessageStatus::DeliveryFailed
                            | MessageStatus::Failed
                            | MessageStatus::Removed
                    )
                )
        })
    }

    /// Ended and no wrap-up still owed: nothing more is expected for this conversation.
    pub fn is_finished(&self) -> bool {
        self.is_ended()
            && self
                .participants
                .values()
                .all(ParticipantRecord::wrapup_settled)
    }
}

/// Something in a snapshot that would have moved the state backwards; not applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaleInput {
    /// Where, e.g. `participants[p1].communications[c1].state`.
    pub field: String,
    pub current: String,
    pub incoming: String,
}

/// One change a snapshot caused.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Transition {
    ParticipantAdded {
        participant_id: ParticipantId,
        purpose: Option<Purpose>,
    },
    ParticipantJoined {
        participant_id: ParticipantId,
        from: Lifecycle,
    },
    ParticipantBecameActive {
        participant_id: ParticipantId,
        from: Lifecycle,
    },
    ParticipantLeft {
        participant_id: ParticipantId,
        from: Lifecycle,
    },
    ParticipantFailed {
        participant_id: ParticipantId,
        from: Lifecycle,
    },
    MessageSeen {
        message_id: MessageId,
        participant_id: ParticipantId,
        direction: MessageDirection,
        status: Option<MessageStatus>,
        message_time: Option<DateTime<Utc>>,
    },
    MessageStatusAdvanced {
        message_id: MessageId,
        from: Option<MessageStatus>,
        to: MessageStatus,
    },
    AttachmentAdded {
        message_id: MessageId,
        attachment: Attachment,
    },
    WrapupRecorded {
        participant_id: ParticipantId,
        wrapup: WrapupRecord,
    },
    TranscriptSegmentUpdated {
        utterance_id: String,
        is_final: bool,
    },
    ConversationEnded,
}

/// The result of applying one input.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ApplyOutcome {
    pub transitions: Vec<Transition>,
    pub stale: Vec<StaleInput>,
    /// Whether anything in the state changed (possibly without a transition, e.g. a name),
    /// Convoy's own attributes aside: only such a change bumps the version.
    pub changed: bool,
    /// Only Convoy's own attributes changed: an echo of its own write (or another Convoy
    /// instance's). Costs nothing downstream, but the write-back must learn what Genesys
    /// now shows.
    pub own_attributes_changed: bool,
    pub version: u64,
}

/// A snapshot for another conversation was applied to this one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("snapshot of conversation {got} applied to conversation {expected}")]
pub struct WrongConversation {
    pub expected: ConversationId,
    pub got: ConversationId,
}

/// A conversation's joined state plus its version: the number of inputs that changed it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conversation {
    pub state: ConversationState,
    pub version: u64,
}

impl Conversation {
    pub fn new(id: ConversationId) -> Self {
        Conversation {
            state: ConversationState::new(id),
            version: 0,
        }
    }

    pub fn id(&self) -> &ConversationId {
        &self.state.id
    }

    fn check_is_mine(&self, id: &ConversationId) -> Result<(), WrongConversation> {
        if *id == self.state.id {
            Ok(())
        } else {
            Err(WrongConversation {
                expected: self.state.id.clone(),
                got: id.clone(),
            })
        }
    }

    /// Joins a snapshot into the state and reports what changed.
    pub fn apply_snapshot(
        &mut self,
        snapshot: &ConversationSnapshot,
    ) -> Result<ApplyOutcome, WrongConversation> {
        self.check_is_mine(&snapshot.conversation_id)?;
        // Joined in place: the log keeps what the touched records were before, which is
        // all the transitions need (a copy of the whole state per snapshot cost more
        // than the join itself).
        let mut log = JoinLog::new(&self.state);
        let mut stale = Vec::new();
        log.beyond_own |= join_time(&mut self.state.start_time, &snapshot.start_time);
        log.beyond_own |= join_time(&mut self.state.end_time, &snapshot.end_time);
        for participant in &snapshot.participants {
            join_participant(&mut self.state, participant, &mut stale, &mut log);
        }
        let changed = log.beyond_own;
        let own_attributes_changed = log.own && !changed;
        if changed {
            self.version += 1;
        }
        Ok(ApplyOutcome {
            transitions: if changed {
                log.transitions(&self.state)
            } else {
                Vec::new()
            },
            stale,
            changed,
            own_attributes_changed,
            version: self.version,
        })
    }

    /// Joins a real-time transcription event into the state.
    pub fn apply_transcription(
        &mut self,
        event: &TranscriptionEvent,
    ) -> Result<ApplyOutcome, WrongConversation> {
        self.check_is_mine(&event.conversation_id)?;
        let before = self.state.clone();
        let mut stale = Vec::new();
        for segment in &event.segments {
            match self.state.transcript.get_mut(&segment.utterance_id) {
                None => {
                    self.state
                        .transcript
                        .insert(segment.utterance_id.clone(), segment.clone());
                }
                Some(current) => match segment_order(segment, current) {
                    std::cmp::Ordering::Greater => *current = segment.clone(),
                    std::cmp::Ordering::Less if current.is_final && !segment.is_final => {
                        stale.push(StaleInput {
                            field: format!("transcript[{}]", segment.utterance_id),
                            current: "final".to_owned(),
                            incoming: "interim".to_owned(),
                        });
                    }
                    _ => {}
                },
            }
        }
        Ok(self.finish(&before, stale))
    }

    fn finish(&mut self, before: &ConversationState, stale: Vec<StaleInput>) -> ApplyOutcome {
        let anything = *before != self.state;
        let changed = anything && differs_beyond_own_attributes(before, &self.state);
        if changed {
            self.version += 1;
        }
        ApplyOutcome {
            transitions: if changed {
                diff(before, &self.state)
            } else {
                Vec::new()
            },
            stale,
            changed,
            own_attributes_changed: anything && !changed,
            version: self.version,
        }
    }

    /// Raises the version to at least `floor`: a conversation rebuilt after an eviction, a
    /// crash or a restart continues above every version it ever wrote, never from 0.
    pub fn raise_version_to(&mut self, floor: u64) {
        self.version = self.version.max(floor);
    }

    /// The highest `convoy.version` Genesys shows on any participant: what Convoy last
    /// wrote, the floor for a conversation rebuilt from REST.
    pub fn written_version(&self) -> u64 {
        self.state
            .participants
            .values()
            .filter_map(|p| p.attributes.get(super::effects::VERSION_ATTRIBUTE))
            .filter_map(|text| text.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
    }
}

/// Total order of two versions of one utterance: final beats interim, then the later end,
/// then the text and confidence, so the join does not depend on arrival order.
fn segment_order(a: &TranscriptSegment, b: &TranscriptSegment) -> std::cmp::Ordering {
    a.is_final
        .cmp(&b.is_final)
        .then(a.end_ms.cmp(&b.end_ms))
        .then(a.start_ms.cmp(&b.start_ms))
        .then(a.text.cmp(&b.text))
        .then(a.speaker.cmp(&b.speaker))
        .then(a.communication_id.cmp(&b.communication_id))
        .then(
            a.confidence
                .unwrap_or(f64::NEG_INFINITY)
                .total_cmp(&b.confidence.unwrap_or(f64::NEG_INFINITY)),
        )
}

/// What one snapshot's join did, gathered while it mutates the state: whether anything
/// changed (beyond Convoy's own attributes, or only those), and what each record it
/// touched was before — exactly what [`diff`] would read from a copy of the whole state.
/// Records a snapshot does not touch do not change, so they have no transitions.
struct JoinLog {
    beyond_own: bool,
    own: bool,
    was_ended: bool,
    /// First touch of each participant: `None` if the join added it, else its lifecycle
    /// and whether it had a recorded wrap-up.
    participants: Vec<(ParticipantId, Option<(Lifecycle, bool)>)>,
    /// First touch of each message: `None` if the join added it, else its status and the
    /// attachment keys the join added to it.
    messages: Vec<(MessageId, Option<MessageBefore>)>,
}

/// A message's status before the join, and the attachment keys the join added to it.
type MessageBefore = (Option<MessageStatus>, Vec<String>);

impl JoinLog {
    fn new(state: &ConversationState) -> JoinLog {
        JoinLog {
            beyond_own: false,
            own: false,
            was_ended: state.is_ended(),
            participants: Vec::new(),
            messages: Vec::new(),
        }
    }

    fn touch_participant(&mut self, id: &ParticipantId, record: Option<&ParticipantRecord>) {
        if self.participants.iter().any(|(seen, _)| seen == id) {
            return;
        }
        let before = record.map(|r| (r.lifecycle(), r.recorded_wrapup().is_some()));
        self.participants.push((id.clone(), before));
    }

    /// Logs the message's first touch; returns its index in the log.
    fn touch_message(&mut self, id: &MessageId, record: Option<&MessageRecord>) -> usize {
        if let Some(at) = self.messages.iter().position(|(seen, _)| seen == id) {
            return at;
        }
        let before = record.map(|r| (r.status.clone(), Vec::new()));
        self.messages.push((id.clone(), before));
        self.messages.len() - 1
    }

    /// The transitions, in [`diff`]'s order: participants by id, messages by id, the end.
    fn transitions(mut self, after: &ConversationState) -> Vec<Transition> {
        let mut transitions = Vec::new();
        self.participants.sort_by(|a, b| a.0.cmp(&b.0));
        for (id, before) in &self.participants {
            let Some(participant) = after.participants.get(id) else {
                continue;
            };
            participant_transitions(
                id,
                participant,
                before.map(|(lifecycle, _)| lifecycle),
                before.is_some_and(|(_, had_wrapup)| had_wrapup),
                &mut transitions,
            );
        }
        self.messages.sort_by(|a, b| a.0.cmp(&b.0));
        for (id, before) in &self.messages {
            let Some(message) = after.messages.get(id) else {
                continue;
            };
            message_transitions(
                id,
                message,
                before.as_ref().map(|(status, _)| status.as_ref()),
                |key| {
                    before
                        .as_ref()
                        .is_some_and(|(_, added)| !added.iter().any(|k| k == key))
                },
                &mut transitions,
            );
        }
        if !self.was_ended && after.is_ended() {
            transitions.push(Transition::ConversationEnded);
        }
        transitions
    }
}

fn join_participant(
    state: &mut ConversationState,
    incoming: &ParticipantSnapshot,
    stale: &mut Vec<StaleInput>,
    log: &mut JoinLog,
) {
    log.touch_participant(&incoming.id, state.participants.get(&incoming.id));
    let mut changed = false;
    let record = state.participants.get_or_insert_cloned(&incoming.id, || {
        changed = true;
        ParticipantRecord::new()
    });
    changed |= join_max(&mut record.purpose, &incoming.purpose);
    changed |= join_max(&mut record.name, &incoming.name);
    changed |= join_max(&mut record.user_id, &incoming.user_id);
    changed |= join_max(&mut record.queue_id, &incoming.queue_id);
    match join_ranked(&mut record.state, &incoming.state, state_rank) {
        Step::Behind => stale.push(stale_input(
            format!("participants[{}].state", incoming.id),
            record.state.as_ref(),
            incoming.state.as_ref(),
        )),
        Step::Advanced => changed = true,
        Step::Same => {}
    }
    changed |= join_max(&mut record.disconnect_type, &incoming.disconnect_type);
    changed |= join_flag(
        &mut record.error,
        reports_failure(incoming.error, incoming.disconnect_type.as_ref()),
    );
    changed |= join_time(&mut record.connected_time, &incoming.connected_time);
    changed |= join_time(&mut record.end_time, &incoming.end_time);
    changed |= join_max(&mut record.wrapup_required, &incoming.wrapup_required);
    changed |= join_max(&mut record.wrapup_skipped, &incoming.wrapup_skipped);
    changed |= join_max(&mut record.wrapup, &incoming.wrapup);
    let (own, others) = join_attributes(&mut record.attributes, &incoming.attributes);
    log.own |= own;
    changed |= others;
    for communication in &incoming.communications {
        changed |= join_communication(record, &incoming.id, communication, stale);
    }
    log.beyond_own |= changed;
    for message in &incoming.messages {
        join_message(&mut state.messages, &incoming.id, message, stale, log);
    }
}

/// Joins participant attributes. Convoy's own keys (`convoy.*`) move as one unit, ordered
/// by the `convoy.version` they were written with: snapshots arrive in any order, and a
/// per-key "greater string" join would keep `pending` over a later `active` for good and
/// make every echo of Convoy's own write look like a write still owed. Other keys resolve
/// to the greater string: deterministic, order-independent, informational only.
///
/// Returns whether Convoy's own attributes changed and whether any other did.
fn join_attributes(
    current: &mut SortedMap<String, String>,
    incoming: &BTreeMap<String, String>,
) -> (bool, bool) {
    let mut own = false;
    if incoming.keys().any(|key| is_own_attribute(key))
        && own_attributes_rank(incoming) > own_attributes_rank(current.iter())
    {
        // A strictly higher rank is a different set of own attributes.
        own = true;
        current.retain(|key, _| !is_own_attribute(key));
        current.extend(
            incoming
                .iter()
                .filter(|(key, _)| is_own_attribute(key))
                .map(|(key, value)| (key.clone(), value.clone())),
        );
    }
    let mut others = false;
    for (key, value) in incoming {
        if is_own_attribute(key) {
            continue;
        }
        let slot = current.get_or_insert_cloned(key.as_str(), || {
            others = true;
            String::new()
        });
        if value > slot {
            slot.clone_from(value);
            others = true;
        }
    }
    (own, others)
}

fn is_own_attribute(key: &str) -> bool {
    key.starts_with(super::effects::ATTRIBUTE_NAMESPACE)
}

/// The total order of Convoy's attribute sets: by written version (a missing or unreadable
/// version ranks lowest), then by the values themselves, so the join stays commutative.
fn own_attributes_rank<'a>(
    attributes: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> (u64, Vec<(&'a String, &'a String)>) {
    let own: Vec<(&String, &String)> = attributes
        .into_iter()
        .filter(|(key, _)| is_own_attribute(key))
        .collect();
    let version = own
        .iter()
        .find(|(key, _)| key.as_str() == super::effects::VERSION_ATTRIBUTE)
        .and_then(|(_, text)| text.parse::<u64>().ok())
        .unwrap_or(0);
    (version, own)
}

/// Whether two states differ in anything but Convoy's own attributes. An echo (Genesys
/// republishing a conversation because Convoy wrote its attributes) differs only there and
/// must cost nothing: no version, no transition, no resurrection of a finished
/// conversation.
fn differs_beyond_own_attributes(before: &ConversationState, after: &ConversationState) -> bool {
    if before.id != after.id
        || before.start_time != after.start_time
        || before.end_time != after.end_time
        || before.messages != after.messages
        || before.transcript != after.transcript
        || before.participants.len() != after.participants.len()
    {
        return true;
    }
    before
        .participants
        .iter()
        .zip(after.participants.iter())
        .any(|((id_a, a), (id_b, b))| id_a != id_b || !a.same_beyond_own_attributes(b))
}

/// Returns whether the participant's communications changed.
fn join_communication(
    participant: &mut ParticipantRecord,
    participant_id: &ParticipantId,
    incoming: &CommunicationSnapshot,
    stale: &mut Vec<StaleInput>,
) -> bool {
    let mut changed = false;
    let record = participant
        .communications
        .get_or_insert_cloned(&incoming.id, || {
            changed = true;
            CommunicationRecord::new(incoming.medium)
        });
    // The medium of an id never changes in practice; keep the smaller on disagreement so the
    // join stays order-independent.
    if incoming.medium < record.medium {
        record.medium = incoming.medium;
        changed = true;
    }
    match join_ranked(&mut record.state, &incoming.state, state_rank) {
        Step::Behind => stale.push(stale_input(
            format!(
                "participants[{participant_id}].communications[{}].state",
                incoming.id
            ),
            record.state.as_ref(),
            incoming.state.as_ref(),
        )),
        Step::Advanced => changed = true,
        Step::Same => {}
    }
    changed |= join_max(&mut record.direction, &incoming.direction);
    changed |= join_max(&mut record.disconnect_type, &incoming.disconnect_type);
    changed |= join_flag(
        &mut record.error,
        reports_failure(incoming.error, incoming.disconnect_type.as_ref()),
    );
    changed |= join_time(&mut record.connected_time, &incoming.connected_time);
    changed |= join_time(&mut record.disconnected_time, &incoming.disconnected_time);
    changed |= join_max(&mut record.message_type, &incoming.message_type);
    changed |= join_max(&mut record.transcript_uri, &incoming.transcript_uri);
    match join_ranked(
        &mut record.after_call_work,
        &incoming.after_call_work,
        after_call_work_rank,
    ) {
        Step::Behind => stale.push(stale_input(
            format!(
                "participants[{participant_id}].communications[{}].afterCallWork.state",
                incoming.id
            ),
            record.after_call_work.as_ref(),
            incoming.after_call_work.as_ref(),
        )),
        Step::Advanced => changed = true,
        Step::Same => {}
    }
    changed |= join_max(&mut record.wrapup, &incoming.wrapup);
    changed
}

fn join_message(
    messages: &mut SortedMap<MessageId, MessageRecord>,
    participant_id: &ParticipantId,
    incoming: &MessageSnapshot,
    stale: &mut Vec<StaleInput>,
    log: &mut JoinLog,
) {
    let logged = log.touch_message(&incoming.id, messages.get(&incoming.id));
    let mut changed = false;
    let record = messages.get_or_insert_cloned(&incoming.id, || {
        changed = true;
        MessageRecord {
            participant_id: participant_id.clone(),
            communication_id: None,
            status: None,
            message_time: None,
            segment_count: None,
            media: SortedMap::new(),
            stickers: BTreeSet::new(),
            transcript_uri: None,
        }
    });
    if *participant_id < record.participant_id {
        record.participant_id = participant_id.clone();
        changed = true;
    }
    changed |= join_max(&mut record.communication_id, &incoming.communication_id);
    match join_ranked(&mut record.status, &incoming.status, message_status_rank) {
        Step::Behind => stale.push(stale_input(
            format!("messages[{}].status", incoming.id),
            record.status.as_ref(),
            incoming.status.as_ref(),
        )),
        Step::Advanced => changed = true,
        Step::Same => {}
    }
    changed |= join_time(&mut record.message_time, &incoming.message_time);
    changed |= join_max(&mut record.segment_count, &incoming.segment_count);
    for attachment in &incoming.media {
        match record.media.get_mut(attachment.key()) {
            None => {
                record
                    .media
                    .insert(attachment.key().to_owned(), attachment.clone());
                changed = true;
                if let Some((_, Some((_, added)))) = log.messages.get_mut(logged) {
                    added.push(attachment.key().to_owned());
                }
            }
            Some(current) if attachment > current => {
                *current = attachment.clone();
                changed = true;
            }
            Some(_) => {}
        }
    }
    for sticker in &incoming.stickers {
        if !record.stickers.contains(sticker) {
            record.stickers.insert(sticker.clone());
            changed = true;
        }
    }
    changed |= join_max(&mut record.transcript_uri, &incoming.transcript_uri);
    log.beyond_own |= changed;
}

fn stale_input<T: std::fmt::Display>(
    field: String,
    current: Option<&T>,
    incoming: Option<&T>,
) -> StaleInput {
    let show = |value: Option<&T>| value.map_or_else(|| "absent".to_owned(), ToString::to_string);
    StaleInput {
        field,
        current: show(current),
        incoming: show(incoming),
    }
}

/// What `apply_snapshot` reports, computed the way it was before the join logged its
/// changes: from a copy of the whole state before. The property tests hold the two equal.
#[cfg(test)]
pub(super) fn outcome_from_copy(
    before: &ConversationState,
    after: &ConversationState,
) -> (bool, bool, Vec<Transition>) {
    let anything = *before != *after;
    let changed = anything && differs_beyond_own_attributes(before, after);
    let transitions = if changed {
        diff(before, after)
    } else {
        Vec::new()
    };
    (changed, anything && !changed, transitions)
}

/// The transitions between two states of one conversation, in a stable order:
/// participants (by id), then messages (by id), then transcript, then the end.
pub fn diff(before: &ConversationState, after: &ConversationState) -> Vec<Transition> {
    let mut transitions = Vec::new();
    for (id, participant) in &after.participants {
        let previous = before.participants.get(id);
        participant_transitions(
            id,
            participant,
            previous.map(ParticipantRecord::lifecycle),
            previous
                .and_then(ParticipantRecord::recorded_wrapup)
                .is_some(),
            &mut transitions,
        );
    }
    for (id, message) in &after.messages {
        let previous = before.messages.get(id);
        message_transitions(
            id,
            message,
            previous.map(|p| p.status.as_ref()),
            |key| previous.is_some_and(|p| p.media.contains_key(key)),
            &mut transitions,
        );
    }
    for (utterance_id, segment) in &after.transcript {
        if before.transcript.get(utterance_id) != Some(segment) {
            transitions.push(Transition::TranscriptSegmentUpdated {
                utterance_id: utterance_id.clone(),
                is_final: segment.is_final,
            });
        }
    }
    if !before.is_ended() && after.is_ended() {
        transitions.push(Transition::ConversationEnded);
    }
    transitions
}

/// One participant's transitions: `before` is its lifecycle before (`None`: it is new),
/// `had_wrapup` whether a wrap-up was recorded before.
fn participant_transitions(
    id: &ParticipantId,
    participant: &ParticipantRecord,
    before: Option<Lifecycle>,
    had_wrapup: bool,
    transitions: &mut Vec<Transition>,
) {
    if before.is_none() {
        transitions.push(Transition::ParticipantAdded {
            participant_id: id.clone(),
            purpose: participant.purpose.clone(),
        });
    }
    let from = before.unwrap_or(Lifecycle::Pending);
    let to = participant.lifecycle();
    if to > from {
        let participant_id = id.clone();
        let transition = match to {
            Lifecycle::Pending => None,
            Lifecycle::Joined => Some(Transition::ParticipantJoined {
                participant_id,
                from,
            }),
            Lifecycle::Active => Some(Transition::ParticipantBecameActive {
                participant_id,
                from,
            }),
            Lifecycle::Left => Some(Transition::ParticipantLeft {
                participant_id,
                from,
            }),
            Lifecycle::Failed => Some(Transition::ParticipantFailed {
                participant_id,
                from,
            }),
        };
        // `Pending` is the lowest lifecycle: `to > from` never reaches it.
        transitions.extend(transition);
    }
    if let (false, Some(wrapup)) = (had_wrapup, participant.recorded_wrapup()) {
        transitions.push(Transition::WrapupRecorded {
            participant_id: id.clone(),
            wrapup: wrapup.clone(),
        });
    }
}

/// One message's transitions: `before` is its status before (`None`: it is new), `known`
/// whether an attachment key was there before.
fn message_transitions(
    id: &MessageId,
    message: &MessageRecord,
    before: Option<Option<&MessageStatus>>,
    known: impl Fn(&str) -> bool,
    transitions: &mut Vec<Transition>,
) {
    match before {
        None => transitions.push(Transition::MessageSeen {
            message_id: id.clone(),
            participant_id: message.participant_id.clone(),
            direction: message.direction(),
            status: message.status.clone(),
            message_time: message.message_time,
        }),
        Some(previous) if previous != message.status.as_ref() => {
            if let Some(to) = &message.status {
                transitions.push(Transition::MessageStatusAdvanced {
                    message_id: id.clone(),
                    from: previous.cloned(),
                    to: to.clone(),
                });
            }
        }
        Some(_) => {}
    }
    for (key, attachment) in &message.media {
        if !known(key) {
            transitions.push(Transition::AttachmentAdded {
                message_id: id.clone(),
                attachment: attachment.clone(),
            });
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::conversation::snapshot::SpeakerSide;

    fn leg(state: CommunicationState) -> CommunicationSnapshot {
        CommunicationSnapshot {
            id: CommunicationId::from("leg"),
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
        }
    }

    fn message(status: MessageStatus) -> MessageSnapshot {
        MessageSnapshot {
            id: MessageId::from("m1"),
            communication_id: Some(CommunicationId::from("leg")),
            status: Some(status),
            message_time: None,
            segment_count: Some(1),
            media: Vec::new(),
            stickers: Vec::new(),
            transcript_uri: None,
        }
    }

    fn snapshot(state: CommunicationState, status: MessageStatus) -> ConversationSnapshot {
        ConversationSnapshot {
            conversation_id: ConversationId::from("c1"),
            start_time: None,
            end_time: None,
            participants: vec![ParticipantSnapshot {
                id: ParticipantId::from("agent"),
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
                attributes: BTreeMap::new(),
                communications: vec![leg(state)],
                messages: vec![message(status)],
            }],
        }
    }

    #[test]
    fn forward_snapshots_produce_lifecycle_and_status_transitions() {
        let mut conversation = Conversation::new(ConversationId::from("c1"));
        let first = conversation
            .apply_snapshot(&snapshot(CommunicationState::Alerting, MessageStatus::Sent))
            .unwrap();
        assert_eq!(first.version, 1);
        assert!(first.transitions.contains(&Transition::ParticipantJoined {
            participant_id: ParticipantId::from("agent"),
            from: Lifecycle::Pending,
        }));
        let second = conversation
            .apply_snapshot(&snapshot(
                CommunicationState::Disconnected,
                MessageStatus::Read,
            ))
            .unwrap();
        assert_eq!(
            second.transitions,
            vec![
                Transition::ParticipantLeft {
                    participant_id: ParticipantId::from("agent"),
                    from: Lifecycle::Joined,
                },
                Transition::MessageStatusAdvanced {
                    message_id: MessageId::from("m1"),
                    from: Some(MessageStatus::Sent),
                    to: MessageStatus::Read,
                },
                Transition::ConversationEnded,
            ]
        );
        assert_eq!(second.version, 2);
    }

    #[test]
    fn a_backward_snapshot_is_reported_stale_and_not_applied() {
        let mut conversation = Conversation::new(ConversationId::from("c1"));
        conversation
            .apply_snapshot(&snapshot(
                CommunicationState::Connected,
                MessageStatus::DeliverySuccess,
            ))
            .unwrap();
        let before = conversation.clone();
        let outcome = conversation
            .apply_snapshot(&snapshot(CommunicationState::Alerting, MessageStatus::Sent))
            .unwrap();
        assert!(!outcome.changed);
        assert!(outcome.transitions.is_empty());
        assert_eq!(conversation, before);
        let fields: Vec<&str> = outcome.stale.iter().map(|s| s.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "participants[agent].communications[leg].state",
                "messages[m1].status"
            ]
        );
        assert_eq!(outcome.stale[1].current, "delivery-success");
        assert_eq!(outcome.stale[1].incoming, "sent");
    }

    #[test]
    fn a_snapshot_of_another_conversation_is_refused() {
        let mut conversation = Conversation::new(ConversationId::from("other"));
        let error = conversation
            .apply_snapshot(&snapshot(
                CommunicationState::Connected,
                MessageStatus::Sent,
            ))
            .unwrap_err();
        assert_eq!(error.got, ConversationId::from("c1"));
        assert_eq!(conversation.version, 0);
    }

    #[test]
    fn a_final_transcript_segment_replaces_the_interim_one_and_stays() {
        let segment = |is_final: bool, text: &str| TranscriptSegment {
            utterance_id: "u1".to_owned(),
            communication_id: None,
            is_final,
            speaker: SpeakerSide::External,
            text: text.to_owned(),
            start_ms: Some(10),
            end_ms: Some(20),
            confidence: Some(0.5),
        };
        let event = |segment| TranscriptionEvent {
            conversation_id: ConversationId::from("c1"),
            communication_id: None,
            segments: vec![segment],
        };
        let mut conversation = Conversation::new(ConversationId::from("c1"));
        conversation
            .apply_transcription(&event(segment(false, "hel")))
            .unwrap();
        let outcome = conversation
            .apply_transcription(&event(segment(true, "hello")))
            .unwrap();
        assert_eq!(
            outcome.transitions,
            vec![Transition::TranscriptSegmentUpdated {
                utterance_id: "u1".to_owned(),
                is_final: true
            }]
        );
        let late_interim = conversation
            .apply_transcription(&event(segment(false, "hel")))
            .unwrap();
        assert!(!late_interim.changed);
        assert_eq!(late_interim.stale.len(), 1);
        assert_eq!(conversation.state.transcript["u1"].text, "hello");
    }

    #[test]
    fn wrapup_owed_keeps_an_ended_conversation_unfinished() {
        let mut ended = snapshot(CommunicationState::Disconnected, MessageStatus::Read);
        ended.participants[0].wrapup_required = Some(true);
        let mut conversation = Conversation::new(ConversationId::from("c1"));
        conversation.apply_snapshot(&ended).unwrap();
        assert!(conversation.state.is_ended());
        assert!(!conversation.state.is_finished());
        ended.participants[0].communications[0].after_call_work =
            Some(AfterCallWorkState::Complete);
        ended.participants[0].wrapup = Some(WrapupRecord {
            end_time: None,
            code: Some("resolved".to_owned()),
            name: None,
            notes: None,
            duration_seconds: Some(12),
        });
        let outcome = conversation.apply_snapshot(&ended).unwrap();
        assert!(conversation.state.is_finished());
        assert!(matches!(
            outcome.transitions[0],
            Transition::WrapupRecorded { .. }
        ));
    }
}
