//! Conversation id → partition → subject. **A wire contract**: every instance of a
//! cluster must compute the same partition for a conversation, and changing the function
//! (or the partition count) moves conversations between partitions and so between workers.
//!
//! The partition of a conversation id is
//! `jump_consistent_hash(fnv1a_64(lowercase(trim(id))), partitions)`:
//! FNV-1a 64-bit (offset basis `0xcbf29ce484222325`, prime `0x100000001b3`) over the id's
//! bytes, then Lamping & Veach's jump consistent hash ("A Fast, Minimal Memory, Consistent
//! Hash Algorithm", 2014). Jump hash was chosen over `hash % n` because growing the count
//! from `n` to `n + 1` moves only the conversations that land in the new partition (about
//! `1 / (n + 1)` of them), where a modulo would move almost all of them. The tests pin
//! golden values so an accidental change fails.

use std::fmt;

/// Every frame subject starts with this; the partition number follows (`convoy.frames.17`).
pub const SUBJECT_PREFIX: &str = "convoy.frames";

/// The most partitions a cluster may have (`cluster.partitions`).
pub const MAX_PARTITIONS: u16 = 4_096;

/// A partition count, 1..=[`MAX_PARTITIONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partitions(u16);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a partition count must be between 1 and {MAX_PARTITIONS}, found {0}")]
pub struct PartitionsError(pub u32);

impl Partitions {
    pub fn new(count: u16) -> Result<Partitions, PartitionsError> {
        if (1..=MAX_PARTITIONS).contains(&count) {
            Ok(Partitions(count))
        } else {
            Err(PartitionsError(u32::from(count)))
        }
    }

    pub fn count(&self) -> u16 {
        self.0
    }

    /// The partition a conversation's frames belong to. Ids are compared case-blind and
    /// without surrounding blanks: Genesys writes UUIDs in lowercase, but a reconciliation
    /// id typed by an operator must land in the same place.
    pub fn of(&self, conversation_id: &str) -> Partition {
        let key = fnv1a_64(
            conversation_id
                .trim()
                .bytes()
                .map(|b| b.to_ascii_lowercase()),
        );
        Partition(jump_consistent_hash(key, self.0))
    }

    /// Every partition, in order.
    pub fn all(&self) -> impl Iterator<Item = Partition> {
        (0..self.0).map(Partition)
    }
}

/// One partition: `0..count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Partition(pub u16);

impl Partition {
    /// `convoy.frames.<partition>`: the JetStream subject of its frames.
    pub fn subject(&self) -> String {
        format!("{SUBJECT_PREFIX}.{}", self.0)
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

fn fnv1a_64(bytes: impl Iterator<Item = u8>) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

/// Lamping & Veach's jump consistent hash, the published algorithm as is (its floating
/// point steps are exact IEEE 754 operations, the same on every platform).
fn jump_consistent_hash(mut key: u64, buckets: u16) -> u16 {
    let buckets = i64::from(buckets);
    let mut bucket: i64 = -1;
    let mut next: i64 = 0;
    while next < buckets {
        bucket = next;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        let scale = (1u64 << 31) as f64 / ((key >> 33) + 1) as f64;
        next = ((bucket + 1) as f64 * scale) as i64;
    }
    // `bucket` is in 0..buckets ≤ 4096 here.
    u16::try_from(bucket).unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn partitions(count: u16) -> Partitions {
        Partitions::new(count).unwrap()
    }

    #[test]
    fn partition_counts_outside_1_to_4096_are_refused() {
        assert_eq!(Partitions::new(0), Err(PartitionsError(0)));
        assert_eq!(Partitions::new(4_097), Err(PartitionsError(4_097)));
        assert_eq!(partitions(4_096).count(), 4_096);
    }

    #[test]
    fn the_hash_is_pinned_because_it_is_a_wire_contract() {
        // FNV-1a's published test vectors.
        assert_eq!(fnv1a_64("".bytes()), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64("a".bytes()), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64("foobar".bytes()), 0x8594_4171_f739_67e8);
        // Jump hash: one bucket takes everything.
        assert_eq!(jump_consistent_hash(u64::MAX, 1), 0);
        // Convoy's partitions of fixed ids; a change here moves live conversations.
        let id = "3f2a6c1e-8b7d-4e2f-9a1b-2c3d4e5f6a7b";
        let pinned: Vec<u16> = [1, 2, 16, 64, 4_096]
            .iter()
            .map(|&count| partitions(count).of(id).0)
            .collect();
        assert_eq!(pinned, PINNED);
    }

    const PINNED: [u16; 5] = [0, 0, 7, 31, 2_338];

    #[test]
    fn ids_are_compared_case_blind_and_trimmed() {
        let p = partitions(64);
        let id = "3f2a6c1e-8b7d-4e2f-9a1b-2c3d4e5f6a7b";
        assert_eq!(p.of(id), p.of(&id.to_uppercase()));
        assert_eq!(p.of(id), p.of(&format!(" {id}\n")));
    }

    #[test]
    fn subjects_name_the_partition() {
        assert_eq!(Partition(0).subject(), "convoy.frames.0");
        assert_eq!(Partition(4_095).subject(), "convoy.frames.4095");
        assert_eq!(
            partitions(3).all().collect::<Vec<_>>(),
            [Partition(0), Partition(1), Partition(2)]
        );
    }

    #[test]
    fn conversations_spread_over_all_partitions_roughly_evenly() {
        let p = partitions(16);
        let mut counts = [0u32; 16];
        for n in 0..16_000u32 {
            let id = format!("{n:08x}-0000-4000-8000-000000000000");
            counts[usize::from(p.of(&id).0)] += 1;
        }
        // 1 000 expected per partition; a fair hash stays well inside ±20 %.
        for (partition, count) in counts.iter().enumerate() {
            assert!(
                (800..=1_200).contains(count),
                "partition {partition}: {count}"
            );
        }
    }

    proptest! {
        #[test]
        fn every_id_lands_inside_the_count(id in ".{0,40}", count in 1u16..=4_096) {
            prop_assert!(partitions(count).of(&id).0 < count);
        }

        #[test]
        fn growing_the_count_by_one_moves_ids_only_into_the_new_partition(
            id in "[0-9a-f-]{36}",
            count in 1u16..4_096,
        ) {
            let before = partitions(count).of(&id);
            let after = partitions(count + 1).of(&id);
            prop_assert!(after == before || after == Partition(count));
        }
    }
}
