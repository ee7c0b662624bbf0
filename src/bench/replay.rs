//! Offered load for `convoy bench e2e`: a corpus replayed as many times as a run needs,
//! each pass under fresh conversation ids.
//!
//! Replaying the same frames again would measure nothing: every snapshot would be a
//! duplicate of a conversation Convoy already finished, joined to no change and committed
//! never. So pass `p` rewrites the first 8 hex digits of each conversation id (in place,
//! same length, wherever the id occurs in the frame) by adding `p` times an odd constant:
//! every pass is a new set of conversations with the same shapes, sizes and interleaving.
//! The offsets are found once, so a frame costs one copy and a few byte writes — the load
//! generator must stay cheap next to the daemon it measures on the same cores.

use crate::bench::corpus::Corpus;
use crate::parse::{classify, Classified};

/// Added to an id's leading 32 bits once per pass; odd, so 2^32 passes are all distinct.
const PASS_STRIDE: u32 = 0x9e37_79b1;

/// A corpus ready to be replayed ([`Replay::frame`]).
#[derive(Debug, Clone)]
pub struct Replay {
    frames: Vec<ReplayFrame>,
}

#[derive(Debug, Clone)]
struct ReplayFrame {
    text: String,
    /// Byte offsets of every occurrence of the conversation id whose first 8 characters
    /// are hex digits, and their value; empty for a frame of no conversation.
    id_offsets: Vec<usize>,
    id_prefix: u32,
}

impl Replay {
    pub fn new(corpus: &Corpus) -> Replay {
        let frames = corpus
            .frames
            .iter()
            .map(|frame| {
                let id = match classify(&frame.text) {
                    Ok(Classified::Snapshot { snapshot, .. }) => {
                        Some(snapshot.conversation_id.to_string())
                    }
                    _ => None,
                };
                let prefix = id.as_deref().and_then(hex_prefix);
                match (id, prefix) {
                    (Some(id), Some(prefix)) => ReplayFrame {
                        id_offsets: frame
                            .text
                            .match_indices(id.as_str())
                            .map(|(at, _)| at)
                            .collect(),
                        id_prefix: prefix,
                        text: frame.text.clone(),
                    },
                    _ => ReplayFrame {
                        text: frame.text.clone(),
                        id_offsets: Vec::new(),
                        id_prefix: 0,
                    },
                }
            })
            .collect();
        Replay { frames }
    }

    /// Frames per pass.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Bytes of one pass.
    pub fn bytes(&self) -> usize {
        self.frames.iter().map(|frame| frame.text.len()).sum()
    }

    /// The `n`th frame of the endless replay: frame `n % len` of pass `n / len`. Pass 0
    /// is the corpus as it is. `None` only for an empty corpus.
    pub fn frame(&self, n: usize) -> Option<String> {
        if self.frames.is_empty() {
            return None;
        }
        let frame = &self.frames[n % self.frames.len()];
        let pass = (n / self.frames.len()) as u32;
        if pass == 0 || frame.id_offsets.is_empty() {
            return Some(frame.text.clone());
        }
        let prefix = format!(
            "{:08x}",
            frame.id_prefix.wrapping_add(pass.wrapping_mul(PASS_STRIDE))
        );
        let mut bytes = frame.text.clone().into_bytes();
        for &at in &frame.id_offsets {
            bytes[at..at + 8].copy_from_slice(prefix.as_bytes());
        }
        // Hex digits replaced hex digits: still UTF-8.
        Some(String::from_utf8(bytes).unwrap_or_else(|_| frame.text.clone()))
    }
}

/// The value of an id's first 8 characters, if they are hex digits (a UUID's are).
fn hex_prefix(id: &str) -> Option<u32> {
    let head = id.get(..8)?;
    if !head.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(head, 16).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashSet;

    use super::*;
    use crate::bench::corpus::{generate, CorpusFrame};

    fn conversation_of(text: &str) -> Option<String> {
        match classify(text).unwrap() {
            Classified::Snapshot { snapshot, .. } => Some(snapshot.conversation_id.to_string()),
            _ => None,
        }
    }

    #[test]
    fn the_first_pass_is_the_corpus_itself() {
        let corpus = generate(200, 4).unwrap();
        let replay = Replay::new(&corpus);
        assert_eq!(replay.len(), 200);
        assert_eq!(replay.bytes(), corpus.bytes());
        for (n, frame) in corpus.frames.iter().enumerate() {
            assert_eq!(replay.frame(n).unwrap(), frame.text);
        }
    }

    #[test]
    fn each_later_pass_renames_every_conversation_and_keeps_everything_else() {
        let corpus = generate(300, 4).unwrap();
        let replay = Replay::new(&corpus);
        let ids = |pass: usize| -> HashSet<String> {
            (0..replay.len())
                .filter_map(|n| conversation_of(&replay.frame(pass * replay.len() + n).unwrap()))
                .collect()
        };
        let (first, second, third) = (ids(0), ids(1), ids(2));
        assert!(first.len() >= 5, "{first:?}");
        assert_eq!(first.len(), second.len(), "one new id per conversation");
        assert_eq!(second.len(), third.len());
        assert!(first.is_disjoint(&second) && second.is_disjoint(&third));
        assert!(first.is_disjoint(&third));
        for n in 0..replay.len() {
            let original = replay.frame(n).unwrap();
            let replayed = replay.frame(replay.len() + n).unwrap();
            assert_eq!(original.len(), replayed.len());
            let (Some(old), Some(new)) = (conversation_of(&original), conversation_of(&replayed))
            else {
                assert_eq!(original, replayed, "a frame of no conversation stays");
                continue;
            };
            assert_eq!(old[8..], new[8..], "only the leading 8 hex digits change");
            assert_eq!(original.replace(&old, &new), replayed, "every occurrence");
            assert!(!replayed.contains(&old));
        }
    }

    #[test]
    fn a_frame_without_a_conversation_is_replayed_unchanged_and_an_empty_corpus_has_none() {
        let heartbeat =
            r#"{"topicName":"channel.metadata","eventBody":{"message":"WebSocket Heartbeat"}}"#;
        let corpus = Corpus {
            frames: vec![CorpusFrame {
                received_at: None,
                text: heartbeat.to_owned(),
            }],
        };
        let replay = Replay::new(&corpus);
        assert_eq!(replay.frame(5).unwrap(), heartbeat);
        assert_eq!(Replay::new(&Corpus::default()).frame(0), None);
        assert!(Replay::new(&Corpus::default()).is_empty());
    }

    #[test]
    fn only_hex_prefixes_are_rewritten() {
        assert_eq!(hex_prefix("0a1b2c3d-0000"), Some(0x0a1b_2c3d));
        assert_eq!(hex_prefix("conv-12345"), None);
        assert_eq!(hex_prefix("abc"), None);
    }
}
