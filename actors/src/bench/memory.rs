//! `convoy bench memory`: resident memory per live conversation.
//!
//! One process, one actix System: the conversation side of the live path
//! ([`start_conversations`], write-back off: nothing here writes) pointed at an in-process
//! emulator it never needs to call, fed N synthetic but realistic conversation snapshots
//! (a customer, a queue leg that transferred, agents; one messaging communication and two
//! messages each; ids shaped like Genesys' UUIDs) as the stream would route them. The
//! process's RSS is read before and once all N are live and applied; the difference over
//! N is the figure the goal is about (≤ 4 KiB per live conversation). Then every
//! conversation is finished (a closing snapshot each) and retired, and the time that took
//! and the RSS after it are reported too.
//!
//! RSS is what the operator pays for: it includes the allocator's slack and the transient
//! copies made while applying, not only the bytes the structures hold.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, Addr};
use chrono::{DateTime, Utc};
use convoy::conversation::snapshot::{
    CommunicationSnapshot, ConversationSnapshot, Medium, MessageSnapshot, ParticipantSnapshot,
    WrapupRecord,
};
use convoy::conversation::state::{
    CommunicationRecord, ConversationState, MessageRecord, ParticipantRecord,
};
use convoy::conversation::Conversation;
use convoy::ids::{CommunicationId, ConversationId, IdText, MessageId, ParticipantId};
use convoy::model::{
    CommunicationState, Direction, DisconnectType, MessageStatus, MessageType, Purpose,
};
use dashmap::DashMap;
use serde::Serialize;

use super::{human_bytes, resident_bytes, seconds, BenchError, OutputFormat};
use crate::app::{router_settings, writer_settings};
use crate::conversation::actor::{ConversationActor, SharedConversation};
use crate::conversation::router::{GetRouterStats, RouterStats};
use crate::conversation::view::ConversationView;
use crate::conversation::{
    start_conversations, ConversationInput, ConversationRouter, ConversationViews,
    ConversationsSetup, RouteEvent,
};
use crate::emulator::{Emulator, EmulatorOptions};
use crate::genesys::oauth::TokenEndpoint;
use crate::genesys::rest::{RestContext, SharedBucket};
use crate::token::{TokenActor, TokenStats};

/// The goal: at most 4 KiB per live conversation (250 000 in under 1 GiB).
pub const GOAL_BYTES_PER_CONVERSATION: u64 = 4096;

/// How long any phase may take before the bench gives up (a stuck router, not a slow one:
/// 250 000 conversations spawn in seconds in a release build).
const PHASE_DEADLINE: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Clone, clap::Args)]
pub struct MemoryArgs {
    /// Live conversations to hold at once.
    #[arg(long, default_value_t = 10_000)]
    pub conversations: usize,
    /// Participants per conversation: a customer, then (from 3) a queue leg, then agents.
    #[arg(long, default_value_t = 3)]
    pub participants: usize,
    /// Report format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// What `convoy bench memory` measured.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryReport {
    pub conversations: usize,
    pub participants_per_conversation: usize,
    pub messages_per_conversation: usize,
    /// RSS with the router running and no conversation.
    pub resident_before_bytes: u64,
    /// RSS with every conversation live and applied.
    pub resident_live_bytes: u64,
    /// RSS after every conversation finished and retired (their final states stay, up to
    /// the tombstone capacity, for late receipts).
    pub resident_after_retirement_bytes: u64,
    /// `(live - before) / conversations`.
    pub bytes_per_live_conversation: f64,
    pub goal_bytes_per_live_conversation: u64,
    /// From the first input to every conversation live with its snapshot applied.
    pub spawn_seconds: f64,
    /// From the first closing snapshot to no conversation live or retiring.
    pub retire_seconds: f64,
    /// The heap one conversation's joined state holds, estimated by walking it.
    pub state_heap_estimate: HeapEstimate,
    /// `bytes_per_live_conversation` less the state (inline and estimated heap): the
    /// actor and its mailbox, the router's and registry's entries, the view, allocator
    /// slack.
    pub other_bytes_per_live_conversation: f64,
    /// `std::mem::size_of` of the types a live conversation is made of (inline sizes;
    /// their heap parts come on top).
    pub type_sizes: Vec<TypeSize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TypeSize {
    pub name: &'static str,
    pub bytes: usize,
}

/// The inline sizes of what one live conversation holds.
pub fn type_sizes() -> Vec<TypeSize> {
    let size = |name, bytes| TypeSize { name, bytes };
    vec![
        size("ConversationId", std::mem::size_of::<ConversationId>()),
        size("Conversation", std::mem::size_of::<Conversation>()),
        size(
            "ConversationState",
            std::mem::size_of::<ConversationState>(),
        ),
        size(
            "ParticipantRecord",
            std::mem::size_of::<ParticipantRecord>(),
        ),
        size(
            "CommunicationRecord",
            std::mem::size_of::<CommunicationRecord>(),
        ),
        size("MessageRecord", std::mem::size_of::<MessageRecord>()),
        size("WrapupRecord", std::mem::size_of::<WrapupRecord>()),
        size("ConversationView", std::mem::size_of::<ConversationView>()),
        size(
            "SharedConversation",
            std::mem::size_of::<SharedConversation>(),
        ),
        size(
            "ConversationActor",
            std::mem::size_of::<ConversationActor>(),
        ),
        size(
            "Addr<ConversationActor>",
            std::mem::size_of::<Addr<ConversationActor>>(),
        ),
    ]
}

impl MemoryReport {
    pub fn meets_goal(&self) -> bool {
        self.bytes_per_live_conversation <= GOAL_BYTES_PER_CONVERSATION as f64
    }

    pub fn to_text(&self) -> String {
        let per = self.bytes_per_live_conversation;
        let verdict = if self.meets_goal() {
            "within the goal"
        } else {
            "above the goal"
        };
        let rate = |secs: f64| {
            if secs > 0.0 {
                format!("{:.0}/s", self.conversations as f64 / secs)
            } else {
                "-".to_owned()
            }
        };
        let mut out = format!(
            "convoy bench memory: {} live conversations, {} participants and {} messages each\n\
             resident before:            {}\n\
             resident with all live:     {}\n\
             bytes per live conversation: {:.0} ({}); goal <= {} ({}): {verdict}\n\
             projected for 250 000 live: {}\n\
             spawned and applied in:     {:.3} s ({})\n\
             finished and retired in:    {:.3} s ({})\n\
             resident after retirement:  {}\n\
             of each live conversation, estimated: joined state {} on the heap in {} \
             allocations (map storage {}, strings {}, rare parts {}) plus {} inline; the \
             rest (actor, mailbox, router, registry, view, allocator slack) {}\n\
             ids in the state: {} held inline (no heap), {} with their text on the heap\n\
             inline sizes (heap parts come on top):\n",
            self.conversations,
            self.participants_per_conversation,
            self.messages_per_conversation,
            human_bytes(self.resident_before_bytes as f64),
            human_bytes(self.resident_live_bytes as f64),
            per,
            human_bytes(per),
            GOAL_BYTES_PER_CONVERSATION,
            human_bytes(GOAL_BYTES_PER_CONVERSATION as f64),
            human_bytes(per * 250_000.0),
            self.spawn_seconds,
            rate(self.spawn_seconds),
            self.retire_seconds,
            rate(self.retire_seconds),
            human_bytes(self.resident_after_retirement_bytes as f64),
            human_bytes(self.state_heap_estimate.bytes as f64),
            self.state_heap_estimate.allocations,
            human_bytes(self.state_heap_estimate.map_bytes as f64),
            human_bytes(self.state_heap_estimate.string_bytes as f64),
            human_bytes(self.state_heap_estimate.rare_bytes as f64),
            human_bytes(state_inline_bytes() as f64),
            human_bytes(self.other_bytes_per_live_conversation),
            self.state_heap_estimate.inline_ids,
            self.state_heap_estimate.heap_ids,
        );
        for size in &self.type_sizes {
            out.push_str(&format!("  {:<26} {:>5} B\n", size.name, size.bytes));
        }
        out
    }
}

/// Runs the bench and prints its report. Must run inside an actix System.
pub async fn run(args: MemoryArgs) -> Result<bool, BenchError> {
    if args.conversations == 0 {
        return Err(BenchError::Usage(
            "--conversations must be at least 1".to_owned(),
        ));
    }
    if !(1..=MAX_PARTICIPANTS).contains(&args.participants) {
        return Err(BenchError::Usage(format!(
            "--participants must be between 1 and {MAX_PARTICIPANTS}"
        )));
    }
    let report = measure(args.conversations, args.participants).await?;
    super::print_report(&report, args.format, |report| report.to_text())?;
    Ok(true)
}

/// The most participants a synthetic conversation has (ids are derived per slot).
pub const MAX_PARTICIPANTS: usize = 100;

/// Spawns `conversations` live conversations of `participants` each, measures, retires
/// them. Must run inside an actix System.
pub async fn measure(
    conversations: usize,
    participants: usize,
) -> Result<MemoryReport, BenchError> {
    let emulator = Emulator::start(EmulatorOptions {
        rate_limit_per_minute: 0,
        ..EmulatorOptions::default()
    })
    .await
    .map_err(|error| BenchError::Emulator(error.to_string()))?;
    let result = measure_against(&emulator, conversations, participants).await;
    emulator.stop().await;
    result
}

async fn measure_against(
    emulator: &Emulator,
    conversations: usize,
    participants: usize,
) -> Result<MemoryReport, BenchError> {
    let tokens = TokenActor::new(
        TokenEndpoint {
            login_base: emulator.base_url(),
            client_id: emulator.client_id().to_owned(),
            client_secret: convoy::config::Secret::new(emulator.client_secret().to_owned()),
        },
        Arc::new(TokenStats::default()),
    )
    .start();
    let views: ConversationViews = Arc::new(DashMap::new());
    // The daemon's settings (app.rs) with the cap at N, so all N stay live.
    let (router, _writer) = start_conversations(ConversationsSetup {
        rest: RestContext {
            api_base: emulator.base_url(),
            tokens,
            bucket: Arc::new(SharedBucket::new(60_000)),
            transport: Default::default(),
        },
        views: Arc::clone(&views),
        write_statuses: Arc::new(DashMap::new()),
        router: router_settings(
            conversations,
            convoy::config::defaults::CONVERSATIONS_IDLE_TIMEOUT,
        ),
        writer: writer_settings(false),
        write_back: false,
        store: None,
        handover: None,
        census: None,
        board: None,
    });
    // Let start-up work (the token fetch, first metrics) finish before the baseline.
    stats(&router).await?;
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    let resident_before_bytes = resident_bytes()?;

    let origin = Utc::now();
    let started = Instant::now();
    for index in 0..conversations {
        let conversation = SyntheticConversation::new(index as u64, participants, origin);
        route(&router, conversation.opening()).await?;
    }
    let all_applied = wait_until(PHASE_DEADLINE, || {
        views.len() >= conversations
            && views
                .iter()
                .all(|view| view.conversation.read().version >= 1)
    })
    .await;
    let spawn = started.elapsed();
    let live = stats(&router).await?;
    if !all_applied || live.live != conversations {
        return Err(BenchError::Stalled(format!(
            "{} of {conversations} conversations live after {:?} ({} views)",
            live.live,
            spawn,
            views.len()
        )));
    }
    let resident_live_bytes = resident_bytes()?;

    let started = Instant::now();
    for index in 0..conversations {
        let conversation = SyntheticConversation::new(index as u64, participants, origin);
        route(&router, conversation.closing()).await?;
    }
    let mut last = RouterStats::default();
    let deadline = Instant::now() + PHASE_DEADLINE;
    while Instant::now() < deadline {
        last = stats(&router).await?;
        if last.live == 0 && last.retiring == 0 {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    let retire = started.elapsed();
    if last.live != 0 || last.retiring != 0 {
        return Err(BenchError::Stalled(format!(
            "{} conversations still live and {} retiring after {retire:?}",
            last.live, last.retiring
        )));
    }
    let resident_after_retirement_bytes = resident_bytes()?;

    let grown = resident_live_bytes as f64 - resident_before_bytes as f64;
    let bytes_per_live_conversation = (grown / conversations as f64).round();
    let state_heap_estimate = state_estimate(participants);
    Ok(MemoryReport {
        conversations,
        participants_per_conversation: participants,
        messages_per_conversation: participants * MESSAGES_PER_PARTICIPANT,
        resident_before_bytes,
        resident_live_bytes,
        resident_after_retirement_bytes,
        bytes_per_live_conversation,
        goal_bytes_per_live_conversation: GOAL_BYTES_PER_CONVERSATION,
        spawn_seconds: seconds(spawn),
        retire_seconds: seconds(retire),
        state_heap_estimate,
        other_bytes_per_live_conversation: bytes_per_live_conversation
            - (state_heap_estimate.bytes + state_inline_bytes()) as f64,
        type_sizes: type_sizes(),
    })
}

/// The state of one synthetic conversation of `participants`, as the bench holds it live.
pub fn state_estimate(participants: usize) -> HeapEstimate {
    let synthetic = SyntheticConversation::new(0, participants, Utc::now());
    let mut conversation = Conversation::new(synthetic.conversation_id());
    // A synthetic snapshot always belongs to its own conversation.
    let _ = conversation.apply_snapshot(&synthetic.opening());
    HeapEstimate::of(&conversation)
}

/// A conversation's state sits inline in its `Arc<RwLock<Conversation>>` allocation.
pub fn state_inline_bytes() -> usize {
    // Two reference counts, then the lock and the conversation.
    malloc_chunk(16 + std::mem::size_of::<std::sync::RwLock<Conversation>>())
}

async fn stats(router: &Addr<ConversationRouter>) -> Result<RouterStats, BenchError> {
    router
        .send(GetRouterStats)
        .await
        .map_err(|error| BenchError::Stalled(format!("the router stopped: {error}")))
}

/// Routes one snapshot as the stream would (waiting on the router's bounded mailbox).
async fn route(
    router: &Addr<ConversationRouter>,
    snapshot: ConversationSnapshot,
) -> Result<(), BenchError> {
    router
        .send(RouteEvent {
            input: ConversationInput::Snapshot(snapshot),
            observed_at: Utc::now(),
        })
        .await
        .map_err(|error| BenchError::Stalled(format!("the router stopped: {error}")))?
        .map_err(|error| BenchError::Stalled(format!("the router refused an input: {error}")))
}

/// Polls `condition` (every 20 ms, yielding to the actors in between) until it holds or
/// `deadline` passes.
async fn wait_until(deadline: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + deadline;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What one conversation's joined state holds on the heap, estimated by walking it: every
/// map's storage, string, boxed rare part and B-tree node is one allocation, sized as
/// glibc rounds it. An estimate (B-tree node counts above one leaf are approximate; the
/// text of unknown enum values is not counted), good enough to split the RSS figure into
/// "state" and "the rest".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HeapEstimate {
    pub allocations: usize,
    pub bytes: usize,
    /// Of `bytes`, in the maps' storage: the sorted vectors of exactly their entries
    /// (`SortedMap`), and the B-tree nodes of the rare sticker sets (a node has room for 11
    /// entries whatever the length).
    pub map_bytes: usize,
    /// Of `bytes`, in the text of strings and of ids that are not UUID- or hex-shaped.
    pub string_bytes: usize,
    /// Of `string_bytes`, in the text of ids.
    pub id_string_bytes: usize,
    /// Of `bytes`, in the boxed rare parts of records (unknown enum values, wrap-ups,
    /// transcripts, stickers).
    pub rare_bytes: usize,
    /// Ids (keys and references) held inline as their 128 bits: no heap.
    pub inline_ids: usize,
    /// Ids whose text is on the heap (not a UUID or 32 hex digits in one case).
    pub heap_ids: usize,
}

/// The chunk glibc's malloc hands out for `request` bytes (8 bytes of header, 16-byte
/// granularity, 32 bytes at least).
pub fn malloc_chunk(request: usize) -> usize {
    if request == 0 {
        return 0;
    }
    ((request + 8 + 15) & !15).max(32)
}

/// Capacity of a B-tree node (std's `B = 6`).
const BTREE_CAPACITY: usize = 11;

/// Bytes of the nodes of a std `BTreeMap<K, V>` with `len` entries: one leaf up to 11
/// entries; beyond, leaves about two-thirds full plus internal nodes.
pub fn btree_node_bytes(len: usize, key: usize, value: usize) -> (usize, usize) {
    if len == 0 {
        return (0, 0);
    }
    // parent pointer, parent index, length, then the key and value arrays.
    let leaf = 8 + 2 + 2 + BTREE_CAPACITY * key + BTREE_CAPACITY * value;
    let leaf = (leaf + 7) & !7;
    if len <= BTREE_CAPACITY {
        return (1, malloc_chunk(leaf));
    }
    let leaves = len.div_ceil(7);
    let internal = leaves.div_ceil(7);
    let edges = (BTREE_CAPACITY + 1) * 8;
    (
        leaves + internal,
        leaves * malloc_chunk(leaf) + internal * malloc_chunk(leaf + edges),
    )
}

impl HeapEstimate {
    fn string(&mut self, text: &str) {
        let chunk = malloc_chunk(text.len());
        if chunk > 0 {
            self.allocations += 1;
            self.bytes += chunk;
            self.string_bytes += chunk;
        }
    }

    fn id(&mut self, id: &IdText) {
        if id.is_inline() {
            self.inline_ids += 1;
        } else {
            let text = id.text();
            self.heap_ids += 1;
            self.string(&text);
            self.id_string_bytes += malloc_chunk(text.len());
        }
    }

    fn optional(&mut self, text: Option<&str>) {
        if let Some(text) = text {
            self.string(text);
        }
    }

    fn rare(&mut self, bytes: Option<usize>) {
        if let Some(bytes) = bytes {
            let chunk = malloc_chunk(bytes);
            self.allocations += 1;
            self.bytes += chunk;
            self.rare_bytes += chunk;
        }
    }

    /// A `SortedMap` of `len` entries: one allocation of exactly its entries.
    fn map<K, V>(&mut self, len: usize) {
        let bytes = malloc_chunk(len * std::mem::size_of::<(K, V)>());
        self.allocations += usize::from(len > 0);
        self.bytes += bytes;
        self.map_bytes += bytes;
    }

    /// A std `BTreeSet`/`BTreeMap` of `len` entries (node capacity 11).
    fn btree<K, V>(&mut self, len: usize) {
        let (key, value) = (std::mem::size_of::<K>(), std::mem::size_of::<V>());
        let (nodes, bytes) = btree_node_bytes(len, key, value);
        self.allocations += nodes;
        self.bytes += bytes;
        self.map_bytes += bytes;
    }

    fn wrapup(&mut self, wrapup: Option<&WrapupRecord>) {
        if let Some(wrapup) = wrapup {
            self.optional(wrapup.code.as_deref());
            self.optional(wrapup.name.as_deref());
            self.optional(wrapup.notes.as_deref());
        }
    }

    /// Walks one conversation's state.
    pub fn of(conversation: &Conversation) -> HeapEstimate {
        let state = &conversation.state;
        let mut heap = HeapEstimate::default();
        heap.id(state.id.id_text());
        heap.map::<ParticipantId, ParticipantRecord>(state.participants.len());
        for (id, participant) in &state.participants {
            heap.id(id.id_text());
            heap.optional(participant.name());
            // User and queue ids are held as ids too (inline when UUIDs).
            for other in [participant.user_id(), participant.queue_id()]
                .into_iter()
                .flatten()
            {
                heap.id(&IdText::new(&other));
            }
            heap.rare(participant.rare_part_bytes());
            heap.wrapup(participant.wrapup());
            heap.map::<String, String>(participant.attributes.len());
            for (key, value) in &participant.attributes {
                heap.string(key);
                heap.string(value);
            }
            heap.map::<CommunicationId, CommunicationRecord>(participant.communications.len());
            for (id, leg) in &participant.communications {
                heap.id(id.id_text());
                heap.rare(leg.rare_part_bytes());
                heap.optional(leg.transcript_uri());
                heap.wrapup(leg.wrapup());
            }
        }
        heap.map::<MessageId, MessageRecord>(state.messages.len());
        for (id, message) in &state.messages {
            heap.id(id.id_text());
            heap.id(message.participant_id.id_text());
            if let Some(leg) = &message.communication_id {
                heap.id(leg.id_text());
            }
            heap.rare(message.rare_part_bytes());
            heap.optional(message.transcript_uri());
            heap.map::<String, convoy::conversation::Attachment>(message.media.len());
            for (key, attachment) in &message.media {
                heap.string(key);
                heap.string(&attachment.url);
                heap.optional(attachment.id.as_deref());
                heap.optional(attachment.mime_type.as_deref());
                heap.optional(attachment.name.as_deref());
            }
            heap.btree::<convoy::conversation::Sticker, ()>(message.stickers().len());
            for sticker in message.stickers() {
                heap.optional(sticker.id.as_deref());
                heap.optional(sticker.url.as_deref());
            }
        }
        heap.map::<String, convoy::conversation::TranscriptSegment>(state.transcript.len());
        for (key, segment) in &state.transcript {
            heap.string(key);
            heap.string(&segment.utterance_id);
            heap.string(&segment.text);
            if let Some(leg) = &segment.communication_id {
                heap.id(leg.id_text());
            }
        }
        heap
    }
}

/// Messages on each participant's communication.
pub const MESSAGES_PER_PARTICIPANT: usize = 2;

/// One synthetic messaging conversation, derived entirely from its index: the same index
/// gives the same ids, so its closing snapshot needs nothing kept from its opening one.
#[derive(Debug, Clone, Copy)]
pub struct SyntheticConversation {
    index: u64,
    participants: usize,
    started: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Customer,
    Queue,
    Agent,
}

impl SyntheticConversation {
    pub fn new(index: u64, participants: usize, origin: DateTime<Utc>) -> Self {
        SyntheticConversation {
            index,
            participants: participants.clamp(1, MAX_PARTICIPANTS),
            started: origin + chrono::Duration::milliseconds(index as i64),
        }
    }

    pub fn conversation_id(&self) -> ConversationId {
        ConversationId::from(synthetic_uuid(self.index, 0))
    }

    /// A customer first; from three participants on, a queue leg second; agents after.
    fn role(&self, position: usize) -> Role {
        match position {
            0 => Role::Customer,
            1 if self.participants >= 3 => Role::Queue,
            _ => Role::Agent,
        }
    }

    /// The conversation in progress: customer and agents connected, the queue leg
    /// transferred away, every message sent or received.
    pub fn opening(&self) -> ConversationSnapshot {
        self.snapshot(false)
    }

    /// The same conversation finished: every leg disconnected, agents' wrap-ups recorded.
    pub fn closing(&self) -> ConversationSnapshot {
        self.snapshot(true)
    }

    fn snapshot(&self, closed: bool) -> ConversationSnapshot {
        ConversationSnapshot {
            conversation_id: self.conversation_id(),
            // The topics carry no conversation-level times.
            start_time: None,
            end_time: None,
            participants: (0..self.participants)
                .map(|position| self.participant(position, closed))
                .collect(),
        }
    }

    fn at(&self, seconds: i64) -> DateTime<Utc> {
        self.started + chrono::Duration::seconds(seconds)
    }

    fn participant(&self, position: usize, closed: bool) -> ParticipantSnapshot {
        let slot = 1 + 10 * position as u64;
        let role = self.role(position);
        let communication_id = CommunicationId::from(synthetic_uuid(self.index, slot + 1));
        let joined = self.at(position as i64 * 5);
        let left = self.at(60 + position as i64);
        let ended = closed || role == Role::Queue;
        let queue_id = || Some(synthetic_uuid(u64::MAX, 1));
        let (purpose, name, user_id, queue_id, direction) = match role {
            Role::Customer => (
                Purpose::Customer,
                format!("Customer {}", self.index),
                None,
                None,
                Direction::Inbound,
            ),
            Role::Queue => (
                Purpose::Acd,
                "Support".to_owned(),
                None,
                queue_id(),
                Direction::Inbound,
            ),
            Role::Agent => (
                Purpose::Agent,
                format!("Agent {}", position),
                Some(synthetic_uuid(u64::MAX, slot + 2)),
                queue_id(),
                Direction::Outbound,
            ),
        };
        let messages = (0..MESSAGES_PER_PARTICIPANT)
            .map(|n| MessageSnapshot {
                id: MessageId::from(synthetic_message_id(self.index, slot + 3 + n as u64)),
                communication_id: Some(communication_id.clone()),
                status: Some(match (role, closed) {
                    (Role::Agent, false) => MessageStatus::Sent,
                    (Role::Agent, true) => MessageStatus::Read,
                    _ => MessageStatus::Received,
                }),
                message_time: Some(joined + chrono::Duration::seconds(1 + n as i64)),
                segment_count: Some(1),
                media: Vec::new(),
                stickers: Vec::new(),
                transcript_uri: None,
            })
            .collect();
        let wrapup = (role == Role::Agent && closed).then(|| WrapupRecord {
            end_time: Some(left + chrono::Duration::seconds(30)),
            code: Some(synthetic_uuid(u64::MAX, 2)),
            name: Some("Resolved".to_owned()),
            notes: None,
            duration_seconds: Some(30),
        });
        ParticipantSnapshot {
            id: ParticipantId::from(synthetic_uuid(self.index, slot)),
            purpose: Some(purpose),
            name: Some(name),
            user_id: user_id.as_deref().map(IdText::new),
            queue_id: queue_id.as_deref().map(IdText::new),
            state: None,
            disconnect_type: None,
            error: false,
            connected_time: Some(joined),
            end_time: ended.then_some(left),
            wrapup_required: (role == Role::Agent).then_some(true),
            wrapup_skipped: None,
            wrapup,
            attributes: Default::default(),
            communications: vec![CommunicationSnapshot {
                id: communication_id,
                medium: Medium::Messages,
                state: Some(if ended {
                    CommunicationState::Disconnected
                } else {
                    CommunicationState::Connected
                }),
                direction: Some(direction),
                disconnect_type: ended.then_some(match role {
                    Role::Queue => DisconnectType::Transfer,
                    Role::Customer => DisconnectType::Peer,
                    Role::Agent => DisconnectType::Client,
                }),
                error: false,
                connected_time: Some(joined),
                disconnected_time: ended.then_some(left),
                message_type: Some(MessageType::Open),
                transcript_uri: None,
                after_call_work: None,
                wrapup: None,
            }],
            messages,
        }
    }
}

/// splitmix64: a well-spread, deterministic mix of a 64-bit value.
fn mix(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_4476_D1CE_4E5B);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn synthetic_bits(index: u64, slot: u64) -> [u8; 16] {
    let high = mix(index ^ mix(slot));
    let low = mix(high ^ slot.wrapping_add(0x5151_5151));
    let mut bytes = [0; 16];
    bytes[..8].copy_from_slice(&high.to_be_bytes());
    bytes[8..].copy_from_slice(&low.to_be_bytes());
    bytes
}

/// A version-4 UUID (`8-4-4-4-12` lowercase hex, as Genesys writes its ids) determined by
/// `(index, slot)`.
pub fn synthetic_uuid(index: u64, slot: u64) -> String {
    uuid::Builder::from_random_bytes(synthetic_bits(index, slot))
        .into_uuid()
        .to_string()
}

/// A 32-hex message id, the shape message ids have in captures.
pub fn synthetic_message_id(index: u64, slot: u64) -> String {
    synthetic_bits(index, slot)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashSet;

    use super::*;
    use convoy::conversation::lifecycle::Lifecycle;

    fn conversation(index: u64, participants: usize) -> SyntheticConversation {
        SyntheticConversation::new(index, participants, Utc::now())
    }

    #[test]
    fn synthetic_ids_are_version_4_uuids_and_stable_per_index_and_slot() {
        let id = synthetic_uuid(7, 3);
        let parsed = uuid::Uuid::parse_str(&id).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(id.len(), 36);
        assert_eq!(id, id.to_lowercase());
        assert_eq!(id, synthetic_uuid(7, 3));
        assert_ne!(id, synthetic_uuid(7, 4));
        assert_ne!(id, synthetic_uuid(8, 3));
        let message = synthetic_message_id(7, 3);
        assert_eq!(message.len(), 32);
        assert!(message.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn every_id_of_many_conversations_is_distinct() {
        let mut seen = HashSet::new();
        for index in 0..500 {
            let snapshot = conversation(index, 4).opening();
            assert!(seen.insert(snapshot.conversation_id.to_string()));
            for participant in &snapshot.participants {
                assert!(seen.insert(participant.id.to_string()));
                for leg in &participant.communications {
                    assert!(seen.insert(leg.id.to_string()));
                }
                for message in &participant.messages {
                    assert!(seen.insert(message.id.to_string()));
                }
            }
        }
    }

    #[test]
    fn an_opening_snapshot_makes_a_live_conversation_of_the_requested_size() {
        let synthetic = conversation(3, 3);
        let mut state = Conversation::new(synthetic.conversation_id());
        let outcome = state.apply_snapshot(&synthetic.opening()).unwrap();
        assert!(outcome.changed);
        assert_eq!(state.version, 1);
        assert_eq!(state.state.participants.len(), 3);
        assert_eq!(state.state.messages.len(), 3 * MESSAGES_PER_PARTICIPANT);
        assert!(!state.state.is_ended());
        let lifecycles: Vec<Lifecycle> = state
            .state
            .participants
            .values()
            .map(ParticipantRecord::lifecycle)
            .collect();
        assert_eq!(
            lifecycles.iter().filter(|l| l.is_ended()).count(),
            1,
            "only the queue leg has left: {lifecycles:?}"
        );
    }

    #[test]
    fn the_closing_snapshot_of_the_same_index_finishes_it() {
        for participants in [1, 2, 3, 5] {
            let synthetic = conversation(11, participants);
            let mut state = Conversation::new(synthetic.conversation_id());
            state.apply_snapshot(&synthetic.opening()).unwrap();
            assert!(!state.state.is_finished());
            let outcome = state.apply_snapshot(&synthetic.closing()).unwrap();
            assert!(outcome.changed);
            assert!(state.state.is_finished(), "{participants} participants");
            assert_eq!(state.state.participants.len(), participants);
        }
    }

    #[test]
    fn malloc_chunks_round_up_to_sixteen_bytes_with_a_header_and_a_minimum() {
        assert_eq!(malloc_chunk(0), 0);
        assert_eq!(malloc_chunk(1), 32);
        assert_eq!(malloc_chunk(24), 32);
        assert_eq!(malloc_chunk(36), 48);
        assert_eq!(malloc_chunk(3360), 3376);
    }

    #[test]
    fn a_btree_of_up_to_eleven_entries_is_one_full_size_leaf() {
        assert_eq!(btree_node_bytes(0, 24, 280), (0, 0));
        // 8 + 2 + 2 + 11 * 24 + 11 * 280 = 3356, aligned to 3360.
        assert_eq!(btree_node_bytes(1, 24, 280), (1, 3376));
        assert_eq!(btree_node_bytes(11, 24, 280), (1, 3376));
        let (nodes, bytes) = btree_node_bytes(100, 24, 280);
        assert!(
            nodes > 10 && bytes > 10 * 3376,
            "{nodes} nodes, {bytes} bytes"
        );
    }

    #[test]
    fn an_empty_conversation_holds_nothing_on_the_heap() {
        let id = ConversationId::from(synthetic_uuid(1, 0));
        let heap = HeapEstimate::of(&Conversation::new(id));
        assert_eq!(
            heap,
            HeapEstimate {
                allocations: 0,
                bytes: 0,
                map_bytes: 0,
                string_bytes: 0,
                id_string_bytes: 0,
                rare_bytes: 0,
                inline_ids: 1,
                heap_ids: 0,
            }
        );
    }

    #[test]
    fn each_participant_adds_its_nodes_and_strings_to_the_estimate() {
        let one = state_estimate(1);
        let two = state_estimate(2);
        // The second participant grows the participants and messages vectors and brings a
        // communications vector of its own (one entry), its name; its ids are inline.
        let one_leg = malloc_chunk(std::mem::size_of::<(CommunicationId, CommunicationRecord)>());
        assert!(two.map_bytes - one.map_bytes > one_leg);
        assert!(two.string_bytes > one.string_bytes);
        assert_eq!(one.bytes, one.map_bytes + one.string_bytes);
        assert_eq!(one.heap_ids, 0);
        assert!(two.inline_ids > one.inline_ids);
    }

    #[test]
    fn the_text_report_states_the_figure_and_the_goal() {
        let report = MemoryReport {
            conversations: 1000,
            participants_per_conversation: 3,
            messages_per_conversation: 6,
            resident_before_bytes: 10 << 20,
            resident_live_bytes: (10 << 20) + 5_000_000,
            resident_after_retirement_bytes: 12 << 20,
            bytes_per_live_conversation: 5000.0,
            goal_bytes_per_live_conversation: GOAL_BYTES_PER_CONVERSATION,
            spawn_seconds: 0.5,
            retire_seconds: 0.25,
            state_heap_estimate: state_estimate(3),
            other_bytes_per_live_conversation: 1000.0,
            type_sizes: type_sizes(),
        };
        let text = report.to_text();
        assert!(
            text.contains("bytes per live conversation: 5000 (4.9 KiB)"),
            "{text}"
        );
        assert!(
            text.contains("goal <= 4096 (4.0 KiB): above the goal"),
            "{text}"
        );
        assert!(text.contains("(2000/s)"), "{text}");
        assert!(text.contains("(4000/s)"), "{text}");
        assert!(!report.meets_goal());
    }
}
