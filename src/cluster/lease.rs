//! Who owns a partition: leases in a JetStream KV bucket, decided here as a pure state
//! machine, and the fair share of partitions per worker.
//!
//! One KV key per partition holds the holder's [`WorkerId`]; every write is a
//! compare-and-set on the key's revision (`create` when absent, `update` with the expected
//! revision otherwise), so of two workers writing on one revision exactly one wins.
//! NATS 2.9's KV has no per-key TTL, and machines' wall clocks disagree, so expiry is
//! judged by each observer on its **own monotonic clock**: a lease is expired when its
//! revision has not changed for `ttl` since this worker first saw that revision.
//!
//! Why two owners can never overlap: a holder counts its lease from the moment it *sent*
//! the write that produced its revision, and stops owning `ttl` minus a margin later
//! unless a renewal succeeded. Any other worker can only have first seen that revision
//! after the write, so it waits until at least `sent + ttl` before it may steal (and the
//! steal is a CAS on that revision, which fails if the holder renewed). The margin (a
//! tenth of the TTL) absorbs the clocks of two machines running at slightly different
//! rates. Renewals are due every third of the TTL, so two lost renewals still leave time.
//!
//! Times are `Duration`s since any fixed origin of the caller's monotonic clock.

use std::collections::BTreeSet;
use std::time::Duration;

use super::partition::{Partition, Partitions};

/// One running worker process. A restarted process must take a new id (e.g. host, pid and
/// start time), so it never mistakes its previous incarnation's lease for its own.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkerId(pub String);

/// A partition's KV entry as read (or watched).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvLease {
    /// No entry ever: claim with `create`.
    Absent,
    /// Deleted (a released lease's tombstone) at this revision.
    Released {
        revision: u64,
    },
    Held {
        holder: WorkerId,
        revision: u64,
    },
}

impl KvLease {
    fn revision(&self) -> Option<u64> {
        match self {
            KvLease::Absent => None,
            KvLease::Released { revision } | KvLease::Held { revision, .. } => Some(*revision),
        }
    }
}

/// What the shell should do next for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseAction {
    /// `kv.create(key, me)`: succeeds only if the key never existed.
    Create,
    /// `kv.update(key, me, revision)`: claim a released lease, steal an expired one, or
    /// renew our own.
    Update { expected_revision: u64 },
    /// Release our lease: `kv.delete(key)` with the expected revision.
    Release { expected_revision: u64 },
    /// Nothing to do before this time (a renewal or an expiry is due then).
    WaitUntil(Duration),
    /// Nothing to do until the entry changes (someone else's live lease, and we do not
    /// want it, or it is not ours to want).
    Idle,
}

/// One worker's knowledge of one partition's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLease {
    ttl: Duration,
    /// The entry as last seen, and when (our clock) its revision was first seen.
    seen: Option<(KvLease, Duration)>,
    /// Our lease: its revision and when we sent the write that produced it.
    mine: Option<(u64, Duration)>,
}

impl PartitionLease {
    pub fn new(ttl: Duration) -> PartitionLease {
        PartitionLease {
            ttl,
            seen: None,
            mine: None,
        }
    }

    /// Records the entry read or watched at `now`. A revision's expiry clock starts when
    /// it is first seen; the same revision seen again keeps its start.
    pub fn observe(&mut self, entry: KvLease, now: Duration) {
        let since = match &self.seen {
            Some((old, since)) if old.revision() == entry.revision() => *since,
            _ => now,
        };
        if let Some((revision, _)) = self.mine {
            if entry.revision().is_some_and(|seen| seen > revision) {
                // Someone wrote after our lease: it is no longer ours.
                self.mine = None;
            }
        }
        self.seen = Some((entry, since));
    }

    /// Our write (create, update), sent at `sent_at`, succeeded with `revision`.
    pub fn written(&mut self, me: &WorkerId, revision: u64, sent_at: Duration) {
        self.mine = Some((revision, sent_at));
        let entry = KvLease::Held {
            holder: me.clone(),
            revision,
        };
        // Our own write starts no expiry clock of ours: we judge our lease by `sent_at`.
        self.seen = Some((entry, sent_at));
    }

    /// Our write failed its revision check: someone else wrote first. Read the entry
    /// again before the next decision.
    pub fn conflicted(&mut self) {
        self.mine = None;
        self.seen = None;
    }

    /// Our release succeeded (or the shell gave the partition up).
    pub fn released(&mut self) {
        self.mine = None;
        self.seen = None;
    }

    /// True while we may process the partition's frames: our lease was written less than
    /// `ttl - margin` ago (measured from when the write was sent).
    pub fn owns(&self, now: Duration) -> bool {
        self.mine
            .is_some_and(|(_, sent_at)| now < sent_at + self.ttl - self.margin())
    }

    /// When our ownership ends unless a renewal succeeds first (`owns` is false from then
    /// on); `None` when no lease of ours is known. The shell wakes up at this instant to
    /// tell its consumers that the partition is lost before anyone may take it.
    pub fn owned_until(&self) -> Option<Duration> {
        self.mine
            .map(|(_, sent_at)| sent_at + self.ttl - self.margin())
    }

    /// The next step for a worker that does (`want`) or does not want this partition.
    pub fn next(&self, want: bool, now: Duration) -> LeaseAction {
        if let Some((revision, sent_at)) = self.mine {
            if !self.owns(now) {
                // We stopped processing: our renewals were late. Nobody may have taken it
                // yet, so claim it afresh on our revision; the CAS fails if someone did.
                return if want {
                    LeaseAction::Update {
                        expected_revision: revision,
                    }
                } else {
                    LeaseAction::Idle
                };
            }
            if !want {
                return LeaseAction::Release {
                    expected_revision: revision,
                };
            }
            let renew_at = sent_at + self.ttl / 3;
            return if now >= renew_at {
                LeaseAction::Update {
                    expected_revision: revision,
                }
            } else {
                LeaseAction::WaitUntil(renew_at)
            };
        }
        let Some((entry, since)) = &self.seen else {
            // Unknown entry: the shell reads it first (a watch delivers it).
            return LeaseAction::Idle;
        };
        if !want {
            return LeaseAction::Idle;
        }
        match entry {
            KvLease::Absent => LeaseAction::Create,
            KvLease::Released { revision } => LeaseAction::Update {
                expected_revision: *revision,
            },
            KvLease::Held { revision, .. } => {
                let expires = *since + self.ttl;
                if now >= expires {
                    LeaseAction::Update {
                        expected_revision: *revision,
                    }
                } else {
                    LeaseAction::WaitUntil(expires)
                }
            }
        }
    }

    fn margin(&self) -> Duration {
        self.ttl / 10
    }
}

/// The most partitions one of `workers` live workers should own: `ceil(partitions /
/// workers)`. Shares are then `floor` or `ceil` of the even split, and every partition is
/// coverable. With no live worker (only ourselves unseen) it is every partition.
pub fn fair_share(partitions: Partitions, workers: usize) -> usize {
    let partitions = usize::from(partitions.count());
    match workers {
        0 => partitions,
        n => partitions.div_ceil(n),
    }
}

/// What a worker should change to move toward its fair share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebalance {
    /// How many more partitions to claim (vacant or expired ones).
    pub claim: usize,
    /// Which owned partitions to release (the highest numbers, so that workers releasing
    /// at once do not all release the same low ones others then fight over).
    pub release: Vec<Partition>,
}

/// The change that brings `owned` to the fair share among `workers` live workers.
pub fn rebalance(owned: &BTreeSet<Partition>, partitions: Partitions, workers: usize) -> Rebalance {
    let share = fair_share(partitions, workers);
    Rebalance {
        claim: share.saturating_sub(owned.len()),
        release: owned
            .iter()
            .rev()
            .take(owned.len().saturating_sub(share))
            .copied()
            .collect(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
