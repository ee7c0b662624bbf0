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
use std::fmt;

use crate::sorted_map::SortedMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::lifecycle::{leg_lifecycle, state_rank, Lifecycle, FAILURE_DISCONNECT_TYPES};
use super::snapshot::{
    Attachment, CommunicationSnapshot, ConversationSnapshot, Medium, MessageDirection,
    MessageSnapshot, ParticipantSnapshot, Sticker, TranscriptSegment, TranscriptionEvent,
    WrapupRecord,
};
use crate::ids::{CommunicationId, ConversationId, IdStr, IdText, MessageId, ParticipantId};
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

/// Joins an optional id-shaped text (a user or queue id) by its text's order (higher wins;
/// absent says nothing).
fn join_id_text(current: &mut Option<IdText>, incoming: Option<&IdText>) -> bool {
    let Some(new) = incoming else {
        return false;
    };
    if current.as_ref().is_none_or(|old| new > old) {
        *current = Some(new.clone());
        true
    } else {
        false
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

/// A wire enum of the model with its known values listed (`wire_enum!`'s `KNOWN`), so a
/// record can hold a value of it in one byte.
trait KnownValues: Clone + PartialEq + 'static {
    const KNOWN: &'static [Self];
}

macro_rules! known_values {
    ($($name:ty),+ $(,)?) => {
        $(impl KnownValues for $name {
            const KNOWN: &'static [Self] = <$name>::KNOWN;
        })+
    };
}

known_values!(
    CommunicationState,
    Direction,
    DisconnectType,
    MessageStatus,
    MessageType,
    Purpose,
    AfterCallWorkState,
);

/// An optional wire-enum value in one byte: absent, the position of a known value, or
/// "unknown" (the value's text is then kept in the record's rare part). A 24-byte
/// `Option<enum>` per field made most of a record's size, for values that are almost
/// always known.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
struct Code(u8);

impl Code {
    const ABSENT: Code = Code(0);
    const UNKNOWN: Code = Code(u8::MAX);

    fn of<E: KnownValues>(value: Option<&E>) -> Code {
        match value {
            None => Code::ABSENT,
            Some(value) => E::KNOWN
                .iter()
                .position(|known| known == value)
                .and_then(|at| u8::try_from(at + 1).ok())
                .filter(|code| *code != Code::UNKNOWN.0)
                .map_or(Code::UNKNOWN, Code),
        }
    }

    /// The value; `unknown` is where the record keeps an unknown one.
    fn value<E: KnownValues>(self, unknown: Option<&E>) -> Option<E> {
        match self {
            Code::ABSENT => None,
            Code::UNKNOWN => unknown.cloned(),
            Code(code) => E::KNOWN.get(usize::from(code) - 1).cloned(),
        }
    }

    /// Stores `value`: its code, and in `unknown` the value itself only when it is not a
    /// known one.
    fn store<E: KnownValues>(value: Option<E>, unknown: &mut Option<E>) -> Code {
        let code = Code::of(value.as_ref());
        *unknown = if code == Code::UNKNOWN { value } else { None };
        code
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Whether joining `incoming` into `current` by the value's own order (higher wins,
/// absent says nothing) changes it.
fn raises<T: Ord + ?Sized>(current: Option<&T>, incoming: Option<&T>) -> bool {
    match (current, incoming) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(old), Some(new)) => new > old,
    }
}

/// Runs `change` on a record's rare part (created if absent) and keeps it only if it
/// holds something: an empty rare part is always `None`, so records compare by value.
fn with_rare<R: Default + PartialEq>(rare: &mut Option<Box<R>>, change: impl FnOnce(&mut R)) {
    let mut part = rare.take().unwrap_or_default();
    change(&mut part);
    if *part != R::default() {
        *rare = Some(part);
    }
}

/// What a leg rarely has: unknown enum values, a transcript, a wrap-up. Boxed so a leg
/// without them (nearly all) pays one pointer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct CommunicationRare {
    state: Option<CommunicationState>,
    direction: Option<Direction>,
    disconnect_type: Option<DisconnectType>,
    message_type: Option<MessageType>,
    after_call_work: Option<AfterCallWorkState>,
    transcript_uri: Option<String>,
    wrapup: Option<WrapupRecord>,
}

/// What Convoy knows about one communication (leg). Enum values are held in one byte
/// each, the rare fields boxed; the accessors give them back as the model's types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommunicationRecord {
    pub medium: Medium,
    state: Code,
    direction: Code,
    disconnect_type: Code,
    message_type: Code,
    after_call_work: Code,
    /// A failure was reported on this leg (`errorInfo` or a failure disconnect type).
    error: bool,
    connected_time: Option<DateTime<Utc>>,
    disconnected_time: Option<DateTime<Utc>>,
    rare: Option<Box<CommunicationRare>>,
}

impl CommunicationRecord {
    /// The size of the boxed part holding the rare fields, when there is one (for memory
    /// estimates).
    pub fn rare_part_bytes(&self) -> Option<usize> {
        self.rare.as_deref().map(std::mem::size_of_val)
    }

    fn new(medium: Medium) -> Self {
        CommunicationRecord {
            medium,
            state: Code::ABSENT,
            direction: Code::ABSENT,
            disconnect_type: Code::ABSENT,
            message_type: Code::ABSENT,
            after_call_work: Code::ABSENT,
            error: false,
            connected_time: None,
            disconnected_time: None,
            rare: None,
        }
    }

    fn rare(&self) -> Option<&CommunicationRare> {
        self.rare.as_deref()
    }

    pub fn state(&self) -> Option<CommunicationState> {
        self.state.value(self.rare().and_then(|r| r.state.as_ref()))
    }

    pub fn direction(&self) -> Option<Direction> {
        self.direction
            .value(self.rare().and_then(|r| r.direction.as_ref()))
    }

    pub fn disconnect_type(&self) -> Option<DisconnectType> {
        self.disconnect_type
            .value(self.rare().and_then(|r| r.disconnect_type.as_ref()))
    }

    pub fn message_type(&self) -> Option<MessageType> {
        self.message_type
            .value(self.rare().and_then(|r| r.message_type.as_ref()))
    }

    pub fn after_call_work(&self) -> Option<AfterCallWorkState> {
        self.after_call_work
            .value(self.rare().and_then(|r| r.after_call_work.as_ref()))
    }

    /// A failure was reported on this leg (`errorInfo` or a failure disconnect type).
    pub fn error(&self) -> bool {
        self.error
    }

    pub fn connected_time(&self) -> Option<DateTime<Utc>> {
        self.connected_time
    }

    pub fn disconnected_time(&self) -> Option<DateTime<Utc>> {
        self.disconnected_time
    }

    pub fn transcript_uri(&self) -> Option<&str> {
        self.rare().and_then(|r| r.transcript_uri.as_deref())
    }

    pub fn wrapup(&self) -> Option<&WrapupRecord> {
        self.rare().and_then(|r| r.wrapup.as_ref())
    }

    fn set_state(&mut self, value: Option<CommunicationState>) {
        let mut unknown = None;
        self.state = Code::store(value, &mut unknown);
        if unknown.is_some() || self.rare.is_some() {
            with_rare(&mut self.rare, |rare| rare.state = unknown);
        }
    }

    fn set_direction(&mut self, value: Option<Direction>) {
        let mut unknown = None;
        self.direction = Code::store(value, &mut unknown);
        if unknown.is_some() || self.rare.is_some() {
            with_rare(&mut self.rare, |rare| rare.direction = unknown);
        }
    }

    fn set_disconnect_type(&mut self, value: Option<DisconnectType>) {
        let mut unknown = None;
        self.disconnect_type = Code::store(value, &mut unknown);
        if unknown.is_some() || self.rare.is_some() {
            with_rare(&mut self.rare, |rare| rare.disconnect_type = unknown);
        }
    }

    fn set_message_type(&mut self, value: Option<MessageType>) {
        let mut unknown = None;
        self.message_type = Code::store(value, &mut unknown);
        if unknown.is_some() || self.rare.is_some() {
            with_rare(&mut self.rare, |rare| rare.message_type = unknown);
        }
    }

    fn set_after_call_work(&mut self, value: Option<AfterCallWorkState>) {
        let mut unknown = None;
        self.after_call_work = Code::store(value, &mut unknown);
        if unknown.is_some() || self.rare.is_some() {
            with_rare(&mut self.rare, |rare| rare.after_call_work = unknown);
        }
    }

    pub fn lifecycle(&self) -> Lifecycle {
        leg_lifecycle(self.state().as_ref(), None, self.error)
    }
}

/// What a participant rarely has: unknown enum values, a participant-level wrap-up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ParticipantRare {
    purpose: Option<Purpose>,
    state: Option<CommunicationState>,
    disconnect_type: Option<DisconnectType>,
    wrapup: Option<WrapupRecord>,
}

/// What Convoy knows about one participant. Enum values are held in one byte each, user
/// and queue ids inline, the rare fields boxed; the accessors give them back as the
/// model's types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantRecord {
    purpose: Code,
    /// Participant-level state (from the `.messages` shape).
    state: Code,
    disconnect_type: Code,
    error: bool,
    wrapup_required: Option<bool>,
    wrapup_skipped: Option<bool>,
    connected_time: Option<DateTime<Utc>>,
    end_time: Option<DateTime<Utc>>,
    name: Option<Box<str>>,
    user_id: Option<IdText>,
    queue_id: Option<IdText>,
    rare: Option<Box<ParticipantRare>>,
    /// Participant attributes. They are informational: two snapshots that disagree on a
    /// key resolve to the greater string, which is deterministic but not "latest"; Convoy
    /// derives its own keys from the lifecycle and never reads them back.
    pub attributes: SortedMap<String, String>,
    pub communications: SortedMap<CommunicationId, CommunicationRecord>,
}

impl ParticipantRecord {
    /// The size of the boxed part holding the rare fields, when there is one (for memory
    /// estimates).
    pub fn rare_part_bytes(&self) -> Option<usize> {
        self.rare.as_deref().map(std::mem::size_of_val)
    }

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
            state,
            disconnect_type,
            error,
            wrapup_required,
            wrapup_skipped,
            connected_time,
            end_time,
            name,
            user_id,
            queue_id,
            rare,
            attributes: _,
            communications,
        } = self;
        *purpose == other.purpose
            && *state == other.state
            && *disconnect_type == other.disconnect_type
            && *error == other.error
            && *wrapup_required == other.wrapup_required
            && *wrapup_skipped == other.wrapup_skipped
            && *connected_time == other.connected_time
            && *end_time == other.end_time
            && *name == other.name
            && *user_id == other.user_id
            && *queue_id == other.queue_id
            && *rare == other.rare
            && *communications == other.communications
            && foreign(self).eq(foreign(other))
    }

    fn new() -> Self {
        ParticipantRecord {
            purpose: Code::ABSENT,
            state: Code::ABSENT,
            disconnect_type: Code::ABSENT,
            error: false,
            wrapup_required: None,
            wrapup_skipped: None,
            connected_time: None,
            end_time: None,
            name: None,
            user_id: None,
            queue_id: None,
            rare: None,
            attributes: SortedMap::new(),
            communications: SortedMap::new(),
        }
    }

    fn rare(&self) -> Option<&ParticipantRare> {
        self.rare.as_deref()
    }

    pub fn purpose(&self) -> Option<Purpose> {
        self.purpose
            .value(self.rare().and_then(|r| r.purpose.as_ref()))
    }

    /// Participant-level state (from the `.messages` shape).
    pub fn state(&self) -> Option<CommunicationState> {
        self.state.value(self.rare().and_then(|r| r.state.as_ref()))
    }

    pub fn disconnect_type(&self) -> Option<DisconnectType> {
        self.disconnect_type
            .value(self.rare().and_then(|r| r.disconnect_type.as_ref()))
    }

    pub fn error(&self) -> bool {
        self.error
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub fn user_id(&self) -> Option<IdStr<'_>> {
        self.user_id.as_ref().map(IdText::text)
    }

    pub fn queue_id(&self) -> Option<IdStr<'_>> {
        self.queue_id.as_ref().map(IdText::text)
    }

    /// [`Self::user_id`] as it is held (copied without rendering its text).
    pub fn user_id_text(&self) -> Option<&IdText> {
        self.user_id.as_ref()
    }

    /// [`Self::queue_id`] as it is held.
    pub fn queue_id_text(&self) -> Option<&IdText> {
        self.queue_id.as_ref()
    }

    pub fn connected_time(&self) -> Option<DateTime<Utc>> {
        self.connected_time
    }

    pub fn end_time(&self) -> Option<DateTime<Utc>> {
        self.end_time
    }

    pub fn wrapup_required(&self) -> Option<bool> {
        self.wrapup_required
    }

    pub fn wrapup_skipped(&self) -> Option<bool> {
        self.wrapup_skipped
    }

    /// The participant-level wrap-up (see [`Self::recorded_wrapup`] for any).
    pub fn wrapup(&self) -> Option<&WrapupRecord> {
        self.rare().and_then(|r| r.wrapup.as_ref())
    }

    fn set_purpose(&mut self, value: Option<Purpose>) {
        let mut unknown = None;
        self.purpose = Code::store(value, &mut unknown);
        if unknown.is_some() || self.rare.is_some() {
            with_rare(&mut self.rare, |rare| rare.purpose = unknown);
        }
    }

    fn set_state(&mut self, value: Option<CommunicationState>) {
        let mut unknown = None;
        self.state = Code::store(value, &mut unknown);
        if unknown.is_some() || self.rare.is_some() {
            with_rare(&mut self.rare, |rare| rare.state = unknown);
        }
    }

    fn set_disconnect_type(&mut self, value: Option<DisconnectType>) {
        let mut unknown = None;
        self.disconnect_type = Code::store(value, &mut unknown);
        if unknown.is_some() || self.rare.is_some() {
            with_rare(&mut self.rare, |rare| rare.disconnect_type = unknown);
        }
    }

    /// The participant's lifecycle: the furthest stage of any of its legs (or of its own
    /// state); an `endTime` means it has at least left. Monotone in the joined state, so it
    /// never moves backwards as snapshots are applied.
    pub fn lifecycle(&self) -> Lifecycle {
        let own = leg_lifecycle(self.state().as_ref(), None, self.error);
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
        self.wrapup()
            .or_else(|| self.communications.values().find_map(|c| c.wrapup()))
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
                    leg.after_call_work(),
                    Some(
                        AfterCallWorkState::Complete
                            | AfterCallWorkState::Skipped
                            | AfterCallWorkState::NotApplicable
                    )
                )
            })
    }
}

/// What a message rarely has: an unknown status, stickers, a transcript.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct MessageRare {
    status: Option<MessageStatus>,
    stickers: BTreeSet<Sticker>,
    transcript_uri: Option<String>,
}

/// No stickers, for messages without a rare part.
static NO_STICKERS: BTreeSet<Sticker> = BTreeSet::new();

/// What Convoy knows about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    /// The participant whose leg carries it (the smallest id if several legs show it).
    pub participant_id: ParticipantId,
    pub communication_id: Option<CommunicationId>,
    status: Code,
    pub message_time: Option<DateTime<Utc>>,
    pub segment_count: Option<u32>,
    /// Attachments by [`Attachment::key`].
    pub media: SortedMap<String, Attachment>,
    rare: Option<Box<MessageRare>>,
}

impl MessageRecord {
    /// The size of the boxed part holding the rare fields, when there is one (for memory
    /// estimates).
    pub fn rare_part_bytes(&self) -> Option<usize> {
        self.rare.as_deref().map(std::mem::size_of_val)
    }

    fn rare(&self) -> Option<&MessageRare> {
        self.rare.as_deref()
    }

    pub fn status(&self) -> Option<MessageStatus> {
        self.status
            .value(self.rare().and_then(|r| r.status.as_ref()))
    }

    pub fn stickers(&self) -> &BTreeSet<Sticker> {
        self.rare().map_or(&NO_STICKERS, |r| &r.stickers)
    }

    pub fn transcript_uri(&self) -> Option<&str> {
        self.rare().and_then(|r| r.transcript_uri.as_deref())
    }

    fn set_status(&mut self, value: Option<MessageStatus>) {
        let mut unknown = None;
        self.status = Code::store(value, &mut unknown);
        if unknown.is_some() || self.rare.is_some() {
            with_rare(&mut self.rare, |rare| rare.status = unknown);
        }
    }

    pub fn direction(&self) -> MessageDirection {
        MessageDirection::from_status(self.status().as_ref())
    }
}

/// The joined content of a conversation. Equality ignores the version (see [`Conversation`]).
#[derive(Debug, Clone, PartialEq)]
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
                    message.status(),
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
#[derive(Debug, Clone, PartialEq)]
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
        let mut log = JoinLog::new(&self.state, snapshot);
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
    /// Sized for every participant and message of `incoming` (each is touched at most
    /// once), so the log does not grow step by step on every snapshot.
    fn new(state: &ConversationState, incoming: &ConversationSnapshot) -> JoinLog {
        let messages = incoming
            .participants
            .iter()
            .map(|participant| participant.messages.len())
            .sum();
        JoinLog {
            beyond_own: false,
            own: false,
            was_ended: state.is_ended(),
            participants: Vec::with_capacity(incoming.participants.len()),
            messages: Vec::with_capacity(messages),
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
        let before = record.map(|r| (r.status(), Vec::new()));
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
    if raises(record.purpose().as_ref(), incoming.purpose.as_ref()) {
        record.set_purpose(incoming.purpose.clone());
        changed = true;
    }
    if raises(record.name(), incoming.name.as_deref()) {
        record.name = incoming.name.as_deref().map(Box::from);
        changed = true;
    }
    changed |= join_id_text(&mut record.user_id, incoming.user_id.as_ref());
    changed |= join_id_text(&mut record.queue_id, incoming.queue_id.as_ref());
    let mut own_state = record.state();
    match join_ranked(&mut own_state, &incoming.state, state_rank) {
        Step::Behind => stale.push(stale_input(
            format!("participants[{}].state", incoming.id),
            own_state.as_ref(),
            incoming.state.as_ref(),
        )),
        Step::Advanced => {
            record.set_state(own_state);
            changed = true;
        }
        Step::Same => {}
    }
    if raises(
        record.disconnect_type().as_ref(),
        incoming.disconnect_type.as_ref(),
    ) {
        record.set_disconnect_type(incoming.disconnect_type.clone());
        changed = true;
    }
    changed |= join_flag(
        &mut record.error,
        reports_failure(incoming.error, incoming.disconnect_type.as_ref()),
    );
    changed |= join_time(&mut record.connected_time, &incoming.connected_time);
    changed |= join_time(&mut record.end_time, &incoming.end_time);
    changed |= join_max(&mut record.wrapup_required, &incoming.wrapup_required);
    changed |= join_max(&mut record.wrapup_skipped, &incoming.wrapup_skipped);
    if raises(record.wrapup(), incoming.wrapup.as_ref()) {
        let wrapup = incoming.wrapup.clone();
        with_rare(&mut record.rare, |rare| rare.wrapup = wrapup);
        changed = true;
    }
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
    let mut state = record.state();
    match join_ranked(&mut state, &incoming.state, state_rank) {
        Step::Behind => stale.push(stale_input(
            format!(
                "participants[{participant_id}].communications[{}].state",
                incoming.id
            ),
            state.as_ref(),
            incoming.state.as_ref(),
        )),
        Step::Advanced => {
            record.set_state(state);
            changed = true;
        }
        Step::Same => {}
    }
    if raises(record.direction().as_ref(), incoming.direction.as_ref()) {
        record.set_direction(incoming.direction.clone());
        changed = true;
    }
    if raises(
        record.disconnect_type().as_ref(),
        incoming.disconnect_type.as_ref(),
    ) {
        record.set_disconnect_type(incoming.disconnect_type.clone());
        changed = true;
    }
    changed |= join_flag(
        &mut record.error,
        reports_failure(incoming.error, incoming.disconnect_type.as_ref()),
    );
    changed |= join_time(&mut record.connected_time, &incoming.connected_time);
    changed |= join_time(&mut record.disconnected_time, &incoming.disconnected_time);
    if raises(
        record.message_type().as_ref(),
        incoming.message_type.as_ref(),
    ) {
        record.set_message_type(incoming.message_type.clone());
        changed = true;
    }
    if raises(record.transcript_uri(), incoming.transcript_uri.as_deref()) {
        let uri = incoming.transcript_uri.clone();
        with_rare(&mut record.rare, |rare| rare.transcript_uri = uri);
        changed = true;
    }
    let mut after_call_work = record.after_call_work();
    match join_ranked(
        &mut after_call_work,
        &incoming.after_call_work,
        after_call_work_rank,
    ) {
        Step::Behind => stale.push(stale_input(
            format!(
                "participants[{participant_id}].communications[{}].afterCallWork.state",
                incoming.id
            ),
            after_call_work.as_ref(),
            incoming.after_call_work.as_ref(),
        )),
        Step::Advanced => {
            record.set_after_call_work(after_call_work);
            changed = true;
        }
        Step::Same => {}
    }
    if raises(record.wrapup(), incoming.wrapup.as_ref()) {
        let wrapup = incoming.wrapup.clone();
        with_rare(&mut record.rare, |rare| rare.wrapup = wrapup);
        changed = true;
    }
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
            status: Code::ABSENT,
            message_time: None,
            segment_count: None,
            media: SortedMap::new(),
            rare: None,
        }
    });
    if *participant_id < record.participant_id {
        record.participant_id = participant_id.clone();
        changed = true;
    }
    changed |= join_max(&mut record.communication_id, &incoming.communication_id);
    let mut status = record.status();
    match join_ranked(&mut status, &incoming.status, message_status_rank) {
        Step::Behind => stale.push(stale_input(
            format!("messages[{}].status", incoming.id),
            status.as_ref(),
            incoming.status.as_ref(),
        )),
        Step::Advanced => {
            record.set_status(status);
            changed = true;
        }
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
    let new_stickers: Vec<&Sticker> = incoming
        .stickers
        .iter()
        .filter(|sticker| !record.stickers().contains(sticker))
        .collect();
    if !new_stickers.is_empty() {
        with_rare(&mut record.rare, |rare| {
            rare.stickers.extend(new_stickers.into_iter().cloned());
        });
        changed = true;
    }
    if raises(record.transcript_uri(), incoming.transcript_uri.as_deref()) {
        let uri = incoming.transcript_uri.clone();
        with_rare(&mut record.rare, |rare| rare.transcript_uri = uri);
        changed = true;
    }
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
            previous.map(|p| p.status()).as_ref().map(Option::as_ref),
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
            purpose: participant.purpose(),
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
    let status = message.status();
    match before {
        None => transitions.push(Transition::MessageSeen {
            message_id: id.clone(),
            participant_id: message.participant_id.clone(),
            direction: message.direction(),
            status: status.clone(),
            message_time: message.message_time,
        }),
        Some(previous) if previous != status.as_ref() => {
            if let Some(to) = &status {
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
