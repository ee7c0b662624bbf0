//! Which conversation snapshot bodies a socket has just seen, so a byte-identical copy is
//! dropped before its typed parse.
//!
//! Genesys sends one change of a conversation to every subscribed topic it concerns: the
//! queue's topic, the `.messages` variant of it, and each involved user's topics, each a
//! frame of its own with the same `eventBody` bytes (only `topicName` and the envelope's
//! `metadata` differ). Joining a snapshot is idempotent (`conversation::state`), so every
//! copy after the first changes nothing — but reading one costs the full typed parse.
//!
//! A copy is the same change only when the conversation and the body bytes are equal: the
//! conversation id is read from the body, so equal bytes mean an equal id, and the
//! comparison is on the bytes themselves (a hash only finds the candidates; two bodies
//! with the same hash but other bytes are both read). The body's shape is part of the
//! key: the same bytes on an all-media topic and on a `.messages` topic are read as
//! different snapshots. Only the most recent bodies are kept (bounded in count and
//! bytes): the copies of one change arrive together, and a copy that arrives after its
//! body was forgotten is simply read again, as without this filter.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// How a body is read: the all-media shape, or the per-participant shape of the
/// `.messages` and other media topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyShape {
    AllMedia,
    PerParticipant,
}

/// The key of one body: its shape, length and hashes of its first and last bytes. Not a
/// hash of every byte: the key only picks candidates, and a candidate's bytes are compared
/// anyway — a comparison reads at most what a whole hash would, and stops at the first
/// difference (for a fresh body, that is the common case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyKey {
    shape: BodyShape,
    len: usize,
    /// The hash of its first `PREFIX_LEN` bytes: the bucket `RecentBodies` keeps it in.
    prefix: u64,
    /// The hash of its last `PREFIX_LEN` bytes: revisions of one conversation share their
    /// start, and mostly differ towards the end (message lists grow there).
    suffix: u64,
}

impl BodyKey {
    pub fn shape(&self) -> BodyShape {
        self.shape
    }

    /// The length of the body in bytes.
    pub fn body_len(&self) -> usize {
        self.len
    }

    pub fn of(shape: BodyShape, body: &[u8]) -> BodyKey {
        BodyKey {
            shape,
            len: body.len(),
            prefix: prefix_hash(body),
            suffix: hash_bytes(&body[body.len().saturating_sub(PREFIX_LEN)..]),
        }
    }
}

/// Bodies kept by default: the copies of one change arrive within a few frames of each
/// other, while a busy channel interleaves dozens of conversations.
pub const DEFAULT_MAX_BODIES: usize = 256;
/// Bytes of bodies kept by default (per socket): 256 bodies of ~4 KB, or 50 of the
/// largest (20 KB), still many more than the few frames between the copies of one
/// change. Small enough that the ring stays in a core's cache: every fresh body is
/// written into it and every copy is compared with it (at 4 MiB, `convoy bench core`
/// spent ~2.5 % more time, in cache misses of the ring).
pub const DEFAULT_MAX_BYTES: usize = 1024 * 1024;

/// How many of a body's first bytes pick its bucket: enough to take in the start of the
/// conversation id that Genesys writes first, so the earlier revisions of other
/// conversations are not even looked at.
const PREFIX_LEN: usize = 64;

/// The most recent distinct snapshot bodies of one socket, oldest first.
///
/// The bodies sit one after another in one buffer used as a ring (a body that does not
/// fit before the end starts again at the front; the bodies it overwrites are the oldest
/// and are forgotten): remembering a fresh body costs a copy, not an allocation and a
/// free of its own per frame. They are found by a hash of their first bytes
/// (`PREFIX_LEN`), so a frame is compared with the few bodies that start like it — mostly
/// the recent revisions of its own conversation — not with every body kept.
#[derive(Clone)]
pub struct RecentBodies {
    /// The kept bodies, oldest first; the first has sequence number `first_seq`.
    entries: VecDeque<Entry>,
    first_seq: u64,
    /// Prefix hash → the sequence numbers of the bodies that start so, oldest first.
    by_prefix: HashMap<u64, VecDeque<u64>, BuildHasherDefault<PrefixHasher>>,
    /// Bodies shorter than `PREFIX_LEN` (never a real snapshot): a frame's first bytes
    /// cannot find them by hash, so they are looked through one by one.
    short: usize,
    buffer: Vec<u8>,
    /// Where the next body is written.
    head: usize,
    bytes: usize,
    max_bodies: usize,
    max_bytes: usize,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    key: BodyKey,
    /// Where the body starts in the buffer.
    start: usize,
}

/// The prefix hashes are hashes already: the map uses them as they are.
#[derive(Default)]
struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

fn prefix_hash(bytes: &[u8]) -> u64 {
    hash_bytes(&bytes[..bytes.len().min(PREFIX_LEN)])
}

impl Default for RecentBodies {
    fn default() -> Self {
        RecentBodies::new(DEFAULT_MAX_BODIES, DEFAULT_MAX_BYTES)
    }
}

impl RecentBodies {
    /// Keeps at most `max_bodies` bodies and `max_bytes` of them; a body larger than
    /// `max_bytes` is never kept.
    pub fn new(max_bodies: usize, max_bytes: usize) -> RecentBodies {
        RecentBodies {
            entries: VecDeque::new(),
            first_seq: 0,
            by_prefix: HashMap::default(),
            short: 0,
            buffer: Vec::new(),
            head: 0,
            bytes: 0,
            max_bodies,
            max_bytes,
        }
    }

    fn body(&self, entry: &Entry) -> &[u8] {
        &self.buffer[entry.start..entry.start + entry.key.len]
    }

    /// The kept bodies, newest first.
    fn newest_first(&self) -> impl Iterator<Item = (&BodyKey, &[u8])> {
        self.entries
            .iter()
            .rev()
            .map(|entry| (&entry.key, self.body(entry)))
    }

    /// The kept bodies whose first bytes hash to `prefix`, newest first.
    fn starting_like(&self, prefix: u64) -> impl Iterator<Item = &Entry> {
        self.by_prefix
            .get(&prefix)
            .into_iter()
            .flat_map(|seqs| seqs.iter().rev())
            .filter_map(|seq| {
                let index = usize::try_from(seq.checked_sub(self.first_seq)?).ok()?;
                self.entries.get(index)
            })
    }

    /// Whether exactly these bytes, read with this shape, were seen recently.
    pub fn contains(&self, key: &BodyKey, body: &[u8]) -> bool {
        self.starting_like(key.prefix)
            .any(|entry| entry.key == *key && self.body(entry) == body)
    }

    /// The key of a recent body that `bytes` starts with, if any (the newest such). A body
    /// is one whole JSON value, so a frame whose body position starts with it holds
    /// exactly that body there; the caller still checks the shape and the rest of the
    /// frame.
    pub fn prefix_of(&self, bytes: &[u8]) -> Option<&BodyKey> {
        // The same conversation's earlier revisions share a long prefix with a fresh body:
        // their last bytes tell them apart before a comparison from the start does.
        let ends_alike = |body: &[u8]| {
            let tail = body.len().saturating_sub(8);
            bytes.get(tail..body.len()) == Some(&body[tail..])
        };
        let found = if bytes.len() >= PREFIX_LEN {
            self.starting_like(prefix_hash(bytes)).find(|entry| {
                let body = self.body(entry);
                ends_alike(body) && bytes.starts_with(body)
            })
        } else {
            None
        };
        let found = found.or_else(|| {
            if self.short == 0 {
                return None;
            }
            self.entries.iter().rev().find(|entry| {
                let body = self.body(entry);
                body.len() < PREFIX_LEN && bytes.starts_with(body)
            })
        });
        found.map(|entry| &entry.key)
    }

    /// Remembers a body that was read (and found to be a snapshot), forgetting the oldest
    /// ones beyond the bounds.
    pub fn remember(&mut self, key: BodyKey, body: &[u8]) {
        let len = body.len();
        if len > self.max_bytes || self.max_bodies == 0 {
            return;
        }
        while self.entries.len() >= self.max_bodies {
            self.forget_oldest();
        }
        if self.head + len > self.max_bytes {
            // The space between the head and the end is too short: the bodies there are
            // the oldest (written a lap ago) and are forgotten with it.
            while self
                .entries
                .front()
                .is_some_and(|entry| entry.start >= self.head)
            {
                self.forget_oldest();
            }
            self.head = 0;
        }
        // The oldest bodies follow the head: forget those the new one overwrites.
        while self
            .entries
            .front()
            .is_some_and(|entry| entry.start >= self.head && entry.start < self.head + len)
        {
            self.forget_oldest();
        }
        let end = self.head + len;
        if self.buffer.len() < end {
            self.buffer.resize(end, 0);
        }
        self.buffer[self.head..end].copy_from_slice(body);
        let seq = self.first_seq + self.entries.len() as u64;
        self.by_prefix.entry(key.prefix).or_default().push_back(seq);
        self.entries.push_back(Entry {
            key,
            start: self.head,
        });
        self.short += usize::from(len < PREFIX_LEN);
        self.head = end;
        self.bytes += len;
    }

    fn forget_oldest(&mut self) {
        let Some(entry) = self.entries.pop_front() else {
            return;
        };
        let prefix = entry.key.prefix;
        if let Some(seqs) = self.by_prefix.get_mut(&prefix) {
            // The oldest body is the oldest of its bucket too.
            seqs.pop_front();
            if seqs.is_empty() {
                self.by_prefix.remove(&prefix);
            }
        }
        self.first_seq += 1;
        self.short -= usize::from(entry.key.len < PREFIX_LEN);
        self.bytes -= entry.key.len;
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of the bodies kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl PartialEq for RecentBodies {
    /// The same bodies, with the same keys, in the same order (where they sit in the
    /// buffer does not matter).
    fn eq(&self, other: &Self) -> bool {
        self.entries.len() == other.entries.len() && self.newest_first().eq(other.newest_first())
    }
}

impl Eq for RecentBodies {}

impl std::fmt::Debug for RecentBodies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecentBodies")
            .field("bodies", &self.entries.len())
            .field("bytes", &self.bytes)
            .field("max_bodies", &self.max_bodies)
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

/// A fast, non-cryptographic hash of the bytes (FxHash's mixing, eight bytes at a time):
/// it only picks candidates, the bytes decide. Four words at a time go into four
/// independent lanes, so a 4 KB body is not one chain of 512 dependent multiplications.
fn hash_bytes(bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mix = |hash: u64, word: u64| (hash.rotate_left(5) ^ word).wrapping_mul(K);
    let word = |chunk: &[u8]| {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        u64::from_le_bytes(word)
    };
    let mut blocks = bytes.chunks_exact(32);
    let mut lanes = [0u64, 1, 2, 3];
    for block in &mut blocks {
        for (lane, chunk) in lanes.iter_mut().zip(block.chunks_exact(8)) {
            *lane = mix(*lane, word(chunk));
        }
    }
    let mut hash = lanes.into_iter().fold(0, mix);
    let mut words = blocks.remainder().chunks_exact(8);
    for chunk in &mut words {
        hash = mix(hash, word(chunk));
    }
    let mut tail = [0u8; 8];
    let rest = words.remainder();
    tail[..rest.len()].copy_from_slice(rest);
    mix(mix(hash, u64::from_le_bytes(tail)), bytes.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(recent: &mut RecentBodies, shape: BodyShape, body: &str) -> bool {
        let key = BodyKey::of(shape, body.as_bytes());
        let duplicate = recent.contains(&key, body.as_bytes());
        if !duplicate {
            recent.remember(key, body.as_bytes());
        }
        duplicate
    }

    #[test]
    fn the_same_bytes_with_the_same_shape_are_a_duplicate() {
        let mut recent = RecentBodies::default();
        let body = r#"{"id":"c1","participants":[{"id":"p1"}]}"#;
        assert!(!seen(&mut recent, BodyShape::AllMedia, body));
        assert!(seen(&mut recent, BodyShape::AllMedia, body));
        assert!(seen(&mut recent, BodyShape::AllMedia, body));
        assert_eq!(recent.len(), 1);
    }

    #[test]
    fn another_shape_another_conversation_or_any_other_byte_is_not() {
        let mut recent = RecentBodies::default();
        let body = r#"{"id":"c1","participants":[{"id":"p1"}]}"#;
        assert!(!seen(&mut recent, BodyShape::AllMedia, body));
        assert!(!seen(&mut recent, BodyShape::PerParticipant, body));
        assert!(!seen(
            &mut recent,
            BodyShape::AllMedia,
            r#"{"id":"c2","participants":[{"id":"p1"}]}"#
        ));
        // Same length, one byte apart; and the same content spelled with other spacing.
        assert!(!seen(
            &mut recent,
            BodyShape::AllMedia,
            r#"{"id":"c1","participants":[{"id":"p2"}]}"#
        ));
        assert!(!seen(
            &mut recent,
            BodyShape::AllMedia,
            r#"{"id": "c1","participants":[{"id":"p1"}]}"#
        ));
    }

    #[test]
    fn equal_hashes_of_different_bytes_are_told_apart_by_the_bytes() {
        let mut recent = RecentBodies::default();
        let first = b"aaaaaaaa";
        let key = BodyKey::of(BodyShape::AllMedia, first);
        recent.remember(key, first);
        // A forged collision: the same key, other bytes of the same length.
        assert!(!recent.contains(&key, b"bbbbbbbb"));
        assert!(recent.contains(&key, first));
    }

    #[test]
    fn a_recent_body_is_found_at_the_start_of_a_longer_text() {
        let mut recent = RecentBodies::default();
        let body = br#"{"id":"c1"}"#;
        recent.remember(BodyKey::of(BodyShape::AllMedia, body), body);
        assert_eq!(
            recent
                .prefix_of(br#"{"id":"c1"},"metadata":{}}"#)
                .map(BodyKey::body_len),
            Some(body.len())
        );
        assert_eq!(recent.prefix_of(br#"{"id":"c2"},"metadata":{}}"#), None);
        assert_eq!(recent.prefix_of(br#"{"id":"c1""#), None);
    }

    #[test]
    fn the_oldest_bodies_are_forgotten_beyond_the_count_and_byte_bounds() {
        let mut recent = RecentBodies::new(2, 1_000);
        assert!(!seen(&mut recent, BodyShape::AllMedia, "one"));
        assert!(!seen(&mut recent, BodyShape::AllMedia, "two"));
        assert!(!seen(&mut recent, BodyShape::AllMedia, "three"));
        assert_eq!(recent.len(), 2);
        // "one" was forgotten: read again (and remembered again).
        assert!(!seen(&mut recent, BodyShape::AllMedia, "one"));
        assert!(seen(&mut recent, BodyShape::AllMedia, "three"));

        let mut recent = RecentBodies::new(100, 10);
        assert!(!seen(&mut recent, BodyShape::AllMedia, "123456"));
        assert!(!seen(&mut recent, BodyShape::AllMedia, "abcdef"));
        assert_eq!((recent.len(), recent.bytes()), (1, 6));
        assert!(!seen(&mut recent, BodyShape::AllMedia, "123456"));
        // Larger than the whole budget: never kept, always read.
        assert!(!seen(&mut recent, BodyShape::AllMedia, "0123456789ab"));
        assert!(!seen(&mut recent, BodyShape::AllMedia, "0123456789ab"));
        assert!(recent.bytes() <= 10);
    }

    proptest::proptest! {
        /// Whatever the lengths, the kept bodies are the most recent ones, byte for byte,
        /// within both bounds, and each is found (as itself and at the start of a longer
        /// text) while a forgotten one is not; and the most recent bodies that fit in the
        /// bytes bound, less one body's length (the space a wrap may leave unused), are
        /// all kept. Bodies share their first bytes in threes, so buckets hold several.
        #[test]
        fn the_ring_keeps_exactly_the_most_recent_bodies(
            lengths in proptest::collection::vec(1usize..160, 1..60),
            max_bodies in 1usize..10,
        ) {
            const MAX_BYTES: usize = 500;
            // Like JSON values, no body is the start of another: each ends with a byte
            // found nowhere else in a body.
            let body_of = |index: usize, len: usize| -> Vec<u8> {
                (0..len)
                    .map(|at| match at {
                        _ if at + 1 == len => 255,
                        0..70 => ((index % 3 * 7 + at) % 255) as u8,
                        _ => ((index * 31 + at) % 255) as u8,
                    })
                    .collect()
            };
            let mut recent = RecentBodies::new(max_bodies, MAX_BYTES);
            let mut seen: Vec<Vec<u8>> = Vec::new();
            for (index, len) in lengths.iter().enumerate() {
                let body = body_of(index, *len);
                let key = BodyKey::of(BodyShape::AllMedia, &body);
                if recent.contains(&key, &body) {
                    // A short body equal to an earlier one: remembered once.
                    continue;
                }
                recent.remember(key, &body);
                seen.push(body);
                let kept: Vec<&[u8]> = recent.newest_first().map(|(_, body)| body).collect();
                let newest: Vec<&[u8]> = seen.iter().rev().take(kept.len()).map(Vec::as_slice).collect();
                proptest::prop_assert_eq!(&kept, &newest);
                proptest::prop_assert!(kept.len() <= max_bodies);
                let indexed: usize = recent.by_prefix.values().map(VecDeque::len).sum();
                proptest::prop_assert_eq!(indexed, recent.len(), "the index holds only kept bodies");
                let bytes: usize = kept.iter().map(|body| body.len()).sum();
                proptest::prop_assert_eq!(bytes, recent.bytes());
                proptest::prop_assert!(bytes <= MAX_BYTES);
                for (age, body) in seen.iter().rev().enumerate() {
                    let key = BodyKey::of(BodyShape::AllMedia, body);
                    let mut longer = body.clone();
                    longer.extend_from_slice(b",\"topicName\":\"t\"}");
                    let found = recent.prefix_of(&longer).map(BodyKey::body_len);
                    if age < kept.len() {
                        proptest::prop_assert!(recent.contains(&key, body));
                        proptest::prop_assert_eq!(found, Some(body.len()));
                    } else if !kept.contains(&body.as_slice()) {
                        proptest::prop_assert!(!recent.contains(&key, body));
                    }
                }
                let mut fitting = 0;
                let mut total = 0;
                for body in seen.iter().rev().take(max_bodies) {
                    total += body.len();
                    if total > MAX_BYTES - 160 {
                        break;
                    }
                    fitting += 1;
                }
                proptest::prop_assert!(kept.len() >= fitting, "kept {} of {} fitting", kept.len(), fitting);
            }
        }
    }

    #[test]
    fn the_hash_depends_on_every_byte_and_the_length() {
        let base = hash_bytes(b"0123456789abcdefg");
        assert_ne!(base, hash_bytes(b"0123456789abcdefh"));
        assert_ne!(base, hash_bytes(b"1123456789abcdefg"));
        assert_ne!(hash_bytes(b"ab"), hash_bytes(b"ab\0"));
        // Past the four-lane blocks: a byte changed in any lane, or two lanes swapped.
        let long: Vec<u8> = (0..100u8).collect();
        let base = hash_bytes(&long);
        for at in 0..long.len() {
            let mut changed = long.clone();
            changed[at] ^= 1;
            assert_ne!(base, hash_bytes(&changed), "byte {at}");
        }
        let mut swapped = long.clone();
        swapped[..8].copy_from_slice(&long[8..16]);
        swapped[8..16].copy_from_slice(&long[..8]);
        assert_ne!(base, hash_bytes(&swapped));
    }

    #[test]
    fn a_key_tells_apart_bodies_that_differ_at_either_end_or_in_length() {
        let body: Vec<u8> = (0..200u8).collect();
        let key = BodyKey::of(BodyShape::AllMedia, &body);
        for at in (0..PREFIX_LEN).chain(body.len() - PREFIX_LEN..body.len()) {
            let mut changed = body.clone();
            changed[at] ^= 1;
            assert_ne!(key, BodyKey::of(BodyShape::AllMedia, &changed), "byte {at}");
        }
        assert_ne!(key, BodyKey::of(BodyShape::AllMedia, &body[..199]));
        // A difference in the middle is found by the comparison of the bytes.
        let mut middle = body.clone();
        middle[100] ^= 1;
        let mut recent = RecentBodies::default();
        recent.remember(key, &body);
        let middle_key = BodyKey::of(BodyShape::AllMedia, &middle);
        assert!(!recent.contains(&middle_key, &middle));
        assert!(recent.contains(&key, &body));
        assert_eq!(recent.prefix_of(&middle), None);
    }
}
