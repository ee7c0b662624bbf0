//! Specifications of the lease rules: each decision, then a simulated KV with several
//! workers in random interleavings, where two owners at once must never happen.

use proptest::prelude::*;

use super::*;

const TTL: Duration = Duration::from_secs(15);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn worker(name: &str) -> WorkerId {
    WorkerId(name.to_owned())
}

fn held(by: &str, revision: u64) -> KvLease {
    KvLease::Held {
        holder: worker(by),
        revision,
    }
}

#[test]
fn a_worker_decides_nothing_before_it_has_read_the_entry() {
    assert_eq!(
        PartitionLease::new(TTL).next(true, secs(0)),
        LeaseAction::Idle
    );
}

#[test]
fn an_absent_lease_is_created_and_a_released_one_claimed_on_its_revision() {
    let mut lease = PartitionLease::new(TTL);
    lease.observe(KvLease::Absent, secs(0));
    assert_eq!(lease.next(true, secs(0)), LeaseAction::Create);
    assert_eq!(lease.next(false, secs(0)), LeaseAction::Idle);
    lease.observe(KvLease::Released { revision: 7 }, secs(1));
    assert_eq!(
        lease.next(true, secs(1)),
        LeaseAction::Update {
            expected_revision: 7
        }
    );
}

#[test]
fn anothers_lease_may_be_stolen_only_a_full_ttl_after_its_revision_was_first_seen() {
    let mut lease = PartitionLease::new(TTL);
    lease.observe(held("b", 3), secs(100));
    assert_eq!(
        lease.next(true, secs(100)),
        LeaseAction::WaitUntil(secs(115))
    );
    lease.observe(held("b", 3), secs(110));
    assert_eq!(
        lease.next(true, secs(114)),
        LeaseAction::WaitUntil(secs(115))
    );
    assert_eq!(
        lease.next(true, secs(115)),
        LeaseAction::Update {
            expected_revision: 3
        }
    );
    // A renewal (new revision) restarts the clock.
    lease.observe(held("b", 4), secs(116));
    assert_eq!(
        lease.next(true, secs(116)),
        LeaseAction::WaitUntil(secs(131))
    );
    assert!(!lease.owns(secs(116)));
}

#[test]
fn an_owner_renews_every_third_of_the_ttl_and_stops_owning_before_others_may_steal() {
    let me = worker("a");
    let mut lease = PartitionLease::new(TTL);
    lease.observe(KvLease::Absent, secs(0));
    lease.written(&me, 1, secs(10));
    assert!(lease.owns(secs(10)));
    assert_eq!(lease.next(true, secs(12)), LeaseAction::WaitUntil(secs(15)));
    assert_eq!(
        lease.next(true, secs(15)),
        LeaseAction::Update {
            expected_revision: 1
        }
    );
    // Renewals failed to arrive: ownership ends at ttl minus a tenth (13.5 s after 10 s).
    assert!(lease.owns(Duration::from_millis(23_499)));
    assert!(!lease.owns(Duration::from_millis(23_500)));
    // Then it is claimed afresh on our revision (the CAS fails if someone took it).
    assert_eq!(
        lease.next(true, secs(24)),
        LeaseAction::Update {
            expected_revision: 1
        }
    );
    assert_eq!(lease.next(false, secs(24)), LeaseAction::Idle);
    // A renewal sent in time extends it from when it was sent.
    lease.written(&me, 2, secs(20));
    assert!(lease.owns(secs(30)));
}

#[test]
fn an_owner_that_no_longer_wants_a_partition_releases_it_on_its_revision() {
    let mut lease = PartitionLease::new(TTL);
    lease.written(&worker("a"), 5, secs(0));
    assert_eq!(
        lease.next(false, secs(1)),
        LeaseAction::Release {
            expected_revision: 5
        }
    );
    lease.released();
    assert!(!lease.owns(secs(1)));
}

#[test]
fn a_later_write_by_anyone_else_or_a_failed_cas_ends_ownership() {
    let mut lease = PartitionLease::new(TTL);
    lease.written(&worker("a"), 5, secs(0));
    lease.observe(held("a", 5), secs(1));
    assert!(
        lease.owns(secs(1)),
        "seeing our own revision changes nothing"
    );
    lease.observe(held("b", 6), secs(2));
    assert!(!lease.owns(secs(2)));

    let mut lease = PartitionLease::new(TTL);
    lease.written(&worker("a"), 5, secs(0));
    lease.conflicted();
    assert!(!lease.owns(secs(1)));
    assert_eq!(
        lease.next(true, secs(1)),
        LeaseAction::Idle,
        "read again first"
    );
}

fn partitions(count: u16) -> Partitions {
    Partitions::new(count).unwrap()
}

#[test]
fn fair_shares_split_partitions_as_evenly_as_whole_numbers_allow() {
    assert_eq!(fair_share(partitions(64), 0), 64);
    assert_eq!(fair_share(partitions(64), 1), 64);
    assert_eq!(fair_share(partitions(64), 3), 22);
    assert_eq!(fair_share(partitions(64), 64), 1);
    assert_eq!(fair_share(partitions(2), 3), 1);
}

#[test]
fn a_new_worker_makes_the_others_release_their_highest_partitions() {
    let owned: BTreeSet<Partition> = (0..32).map(Partition).collect();
    let change = rebalance(&owned, partitions(64), 3);
    assert_eq!(change.claim, 0);
    assert_eq!(
        change.release,
        (22..32).rev().map(Partition).collect::<Vec<_>>()
    );
    let change = rebalance(&BTreeSet::new(), partitions(64), 3);
    assert_eq!(
        change,
        Rebalance {
            claim: 22,
            release: vec![]
        }
    );
}

proptest! {
    #[test]
    fn fair_shares_cover_every_partition_and_differ_from_the_even_split_by_less_than_one(
        count in 1u16..=4_096,
        workers in 1usize..100,
    ) {
        let share = fair_share(partitions(count), workers);
        prop_assert!(share * workers >= usize::from(count));
        prop_assert!(share * workers < usize::from(count) + workers);
    }
}

/// One step of the simulation.
#[derive(Debug, Clone)]
enum Step {
    /// Worker `n` reads the entry.
    Observe(usize),
    /// Worker `n` does what `next` says (its write is a CAS on the shared entry).
    Act(usize, bool),
    /// Time passes.
    Advance(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0usize..3).prop_map(Step::Observe),
        ((0usize..3), any::<bool>()).prop_map(|(n, want)| Step::Act(n, want)),
        (0u64..8_000).prop_map(Step::Advance),
    ]
}

/// The KV entry: the CAS every write goes through.
struct Kv {
    entry: KvLease,
    revision: u64,
}

impl Kv {
    fn write(&mut self, expected: Option<u64>, value: Option<&WorkerId>) -> Option<u64> {
        let current = match &self.entry {
            KvLease::Absent => None,
            KvLease::Released { revision } | KvLease::Held { revision, .. } => Some(*revision),
        };
        if current != expected {
            return None;
        }
        self.revision += 1;
        self.entry = match value {
            Some(holder) => KvLease::Held {
                holder: holder.clone(),
                revision: self.revision,
            },
            None => KvLease::Released {
                revision: self.revision,
            },
        };
        Some(self.revision)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn two_workers_never_own_a_partition_at_once(steps in prop::collection::vec(step(), 1..300)) {
        let ids: Vec<WorkerId> = ["a", "b", "c"].iter().map(|n| worker(n)).collect();
        let mut leases = vec![PartitionLease::new(TTL); 3];
        let mut kv = Kv { entry: KvLease::Absent, revision: 0 };
        let mut now = Duration::ZERO;
        for step in steps {
            match step {
                Step::Observe(n) => leases[n].observe(kv.entry.clone(), now),
                Step::Act(n, want) => match leases[n].next(want, now) {
                    LeaseAction::Create => match kv.write(None, Some(&ids[n])) {
                        Some(revision) => leases[n].written(&ids[n], revision, now),
                        None => leases[n].conflicted(),
                    },
                    LeaseAction::Update { expected_revision } => {
                        match kv.write(Some(expected_revision), Some(&ids[n])) {
                            Some(revision) => leases[n].written(&ids[n], revision, now),
                            None => leases[n].conflicted(),
                        }
                    }
                    LeaseAction::Release { expected_revision } => {
                        match kv.write(Some(expected_revision), None) {
                            Some(_) => leases[n].released(),
                            None => leases[n].conflicted(),
                        }
                    }
                    LeaseAction::WaitUntil(_) | LeaseAction::Idle => {}
                },
                Step::Advance(millis) => now += Duration::from_millis(millis),
            }
            let owners = leases.iter().filter(|lease| lease.owns(now)).count();
            prop_assert!(owners <= 1, "{owners} owners at {now:?}");
        }
    }

    #[test]
    fn a_lone_worker_that_keeps_wanting_a_stale_lease_gets_it_within_one_ttl(
        stale_revision in 1u64..100,
    ) {
        let me = worker("a");
        let mut lease = PartitionLease::new(TTL);
        let mut kv = Kv { entry: held("dead", stale_revision), revision: stale_revision };
        let mut now = Duration::ZERO;
        while now <= TTL {
            lease.observe(kv.entry.clone(), now);
            if let LeaseAction::Update { expected_revision } = lease.next(true, now) {
                let revision = kv.write(Some(expected_revision), Some(&me)).unwrap();
                lease.written(&me, revision, now);
            }
            now += Duration::from_secs(1);
        }
        prop_assert!(lease.owns(now));
    }
}

#[test]
fn ownership_ends_a_tenth_of_the_ttl_before_anyone_may_steal() {
    let me = worker("a");
    let mut lease = PartitionLease::new(TTL);
    assert_eq!(lease.owned_until(), None);
    lease.written(&me, 4, secs(100));
    let until = lease.owned_until().unwrap();
    assert_eq!(until, secs(100) + TTL - TTL / 10);
    assert!(lease.owns(until - Duration::from_millis(1)));
    assert!(!lease.owns(until));
    lease.conflicted();
    assert_eq!(lease.owned_until(), None);
}
