//! Everything Convoy does with a received frame except I/O, in one place, as the live path
//! does it: parse and classify (`parse::classify_bytes_fresh`: a snapshot body
//! byte-identical to a recent one is dropped before its typed parse), route by conversation id and
//! join the snapshot into the conversation (`Conversation::apply_snapshot`: transitions),
//! derive the facts, run the conversation's SLA clocks on them (`SlaBook::observe`), and
//! build the CRM records of facts and SLA signals and the conversation's summary document.
//!
//! This mirrors the conversation actor and the SlaActor (`convoy_actors::conversation::
//! actor`, `convoy_actors::sla::actor`) without their mailboxes, metrics, write-back and
//! outbox: what `convoy bench core` measures is the cost of the decisions themselves.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::conversation::facts::{facts, sla_observations};
use crate::conversation::Conversation;
use crate::crm::records::{fact_record, sla_record, ConversationSummary};
use crate::ids::ConversationId;
use crate::parse::{classify_bytes, classify_bytes_fresh, Classified, Fresh};
use crate::sla::{SlaBook, SlaPolicy};
use crate::stream::duplicates::RecentBodies;

/// What the pipeline did with the frames it was given; a run that did nothing measures
/// nothing, so the bench prints these next to its rates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PipelineTotals {
    pub frames: u64,
    pub snapshots: u64,
    /// Snapshot frames whose body was byte-identical to a recent one (the same change on
    /// another topic): dropped before the typed parse, not counted in `snapshots`.
    pub duplicates: u64,
    /// Heartbeats, pongs, system messages, detail events, unknown topics.
    pub other_frames: u64,
    pub malformed: u64,
    /// Frames that changed their conversation (the rest are duplicates).
    pub changed: u64,
    pub transitions: u64,
    pub facts: u64,
    pub sla_signals: u64,
    pub records: u64,
    /// Summary documents built (one per frame that produced facts or finished).
    pub summaries: u64,
    pub conversations: u64,
}

struct Tracked {
    conversation: Conversation,
    book: SlaBook,
}

/// The per-conversation state of the live path, fed one frame at a time.
pub struct CorePipeline {
    policy: SlaPolicy,
    conversations: HashMap<ConversationId, Tracked>,
    /// `None`: every frame is read in full (the comparison the dedupe is tested against).
    recent: Option<RecentBodies>,
    totals: PipelineTotals,
}

impl CorePipeline {
    /// The live path: byte-identical snapshot bodies are dropped before the typed parse,
    /// as the stream's socket does.
    pub fn new(policy: SlaPolicy) -> CorePipeline {
        CorePipeline {
            policy,
            conversations: HashMap::new(),
            recent: Some(RecentBodies::default()),
            totals: PipelineTotals::default(),
        }
    }

    /// Reads every frame in full, duplicates included.
    pub fn reading_every_frame(policy: SlaPolicy) -> CorePipeline {
        CorePipeline {
            recent: None,
            ..CorePipeline::new(policy)
        }
    }

    pub fn totals(&self) -> PipelineTotals {
        self.totals
    }

    /// Processes one frame received at `observed_at`.
    pub fn process(&mut self, frame: &[u8], observed_at: DateTime<Utc>) {
        self.totals.frames += 1;
        let classified = match &mut self.recent {
            Some(recent) => classify_bytes_fresh(frame, recent),
            None => classify_bytes(frame).map(Fresh::Frame),
        };
        let snapshot = match classified {
            Ok(Fresh::Duplicate) => {
                self.totals.duplicates += 1;
                return;
            }
            Ok(Fresh::Frame(Classified::Snapshot { snapshot, .. })) => snapshot,
            Ok(_) => {
                self.totals.other_frames += 1;
                return;
            }
            Err(_) => {
                self.totals.malformed += 1;
                return;
            }
        };
        self.totals.snapshots += 1;
        let tracked = match self.conversations.get_mut(&snapshot.conversation_id) {
            Some(tracked) => tracked,
            None => {
                self.totals.conversations += 1;
                let id = snapshot.conversation_id.clone();
                self.conversations.entry(id.clone()).or_insert(Tracked {
                    book: SlaBook::new(id.text().as_str()),
                    conversation: Conversation::new(id),
                })
            }
        };
        let Ok(outcome) = tracked.conversation.apply_snapshot(&snapshot) else {
            // Routed by the snapshot's own id: it cannot be another conversation's.
            return;
        };
        if !outcome.changed && !outcome.own_attributes_changed {
            return;
        }
        self.totals.changed += 1;
        self.totals.transitions += outcome.transitions.len() as u64;
        let state = &tracked.conversation.state;
        let facts = facts(state, &outcome);
        let finished = state.is_finished();
        if facts.is_empty() && !finished {
            return;
        }
        self.totals.facts += facts.len() as u64;
        let id = &snapshot.conversation_id;
        let summary = ConversationSummary::of(state, tracked.conversation.version);
        let mut records: Vec<_> = facts
            .iter()
            .map(|fact| fact_record(id, fact, observed_at))
            .collect();
        let observations = sla_observations(&facts, finished);
        let signals = tracked
            .book
            .observe(&self.policy, &observations, observed_at);
        self.totals.sla_signals += signals.len() as u64;
        records.extend(
            signals
                .iter()
                .map(|signal| sla_record(id, signal, observed_at)),
        );
        // As the SlaActor does for the outbox: straight to JSON text, no `Value` tree.
        let document = summary.document_json(&tracked.book.tallies());
        self.totals.records += records.len() as u64;
        self.totals.summaries += u64::from(document.is_ok());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::bench::corpus::generate;
    use crate::config::SlaConfig;

    #[test]
    fn a_generated_corpus_goes_through_every_stage_of_the_pipeline() {
        let corpus = generate(2_000, 5).unwrap();
        let mut pipeline = CorePipeline::new(SlaPolicy::from_config(&SlaConfig::default()));
        for frame in &corpus.frames {
            pipeline.process(frame.text.as_bytes(), frame.received_at.unwrap());
        }
        let totals = pipeline.totals();
        assert_eq!(totals.frames, 2_000);
        assert_eq!(totals.malformed, 0);
        assert_eq!(
            totals.snapshots + totals.duplicates + totals.other_frames,
            2_000
        );
        assert!(
            totals.duplicates > 0 && totals.changed <= totals.snapshots,
            "the same change arrives on several topics: {totals:?}"
        );
        assert!(totals.transitions > 0 && totals.facts > 0, "{totals:?}");
        assert!(totals.sla_signals > 0, "{totals:?}");
        assert!(
            totals.records >= totals.facts + totals.sla_signals,
            "{totals:?}"
        );
        assert!(
            totals.summaries > 0 && totals.conversations >= 20,
            "{totals:?}"
        );
    }

    #[test]
    fn dropping_byte_identical_bodies_changes_nothing_but_the_parse_count() {
        let corpus = generate(3_000, 11).unwrap();
        let policy = SlaPolicy::from_config(&SlaConfig::default());
        let mut deduplicated = CorePipeline::new(policy.clone());
        let mut every_frame = CorePipeline::reading_every_frame(policy);
        for frame in &corpus.frames {
            let at = frame.received_at.unwrap();
            deduplicated.process(frame.text.as_bytes(), at);
            every_frame.process(frame.text.as_bytes(), at);
        }
        let (with, without) = (deduplicated.totals(), every_frame.totals());
        assert!(with.duplicates > 1_000, "{with:?}");
        assert_eq!(without.duplicates, 0);
        assert_eq!(with.snapshots + with.duplicates, without.snapshots);
        assert_eq!(
            PipelineTotals {
                snapshots: 0,
                duplicates: 0,
                ..with
            },
            PipelineTotals {
                snapshots: 0,
                ..without
            }
        );
        // And the conversations end in the same state and version.
        assert_eq!(
            deduplicated.conversations.len(),
            every_frame.conversations.len()
        );
        for (id, tracked) in &deduplicated.conversations {
            let other = &every_frame.conversations[id];
            assert_eq!(tracked.conversation, other.conversation, "{id}");
            assert_eq!(tracked.book.tallies(), other.book.tallies(), "{id}");
        }
    }

    #[test]
    fn malformed_and_non_snapshot_frames_are_counted_and_change_nothing() {
        let mut pipeline = CorePipeline::new(SlaPolicy::from_config(&SlaConfig::default()));
        let at = DateTime::<Utc>::UNIX_EPOCH;
        pipeline.process(b"{\"topicName\":", at);
        pipeline.process(
            br#"{"topicName":"channel.metadata","eventBody":{"message":"WebSocket Heartbeat"}}"#,
            at,
        );
        let totals = pipeline.totals();
        assert_eq!(
            (totals.frames, totals.malformed, totals.other_frames),
            (2, 1, 1)
        );
        assert_eq!(
            (totals.snapshots, totals.conversations, totals.records),
            (0, 0, 0)
        );
    }
}
