//! The lease actor against a real `nats-server -js`: three workers share 16 partitions
//! fairly; one stopped without releasing (as kill -9 leaves it) hands its partitions to
//! the others once the TTL has run out; a graceful stop deletes its leases at once; and
//! over the whole run no partition was ever owned by two workers at once (every
//! `Acquired`/`Lost` recorded on one monotonic clock, the owning intervals compared).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use async_nats::jetstream::{self, kv};
use convoy::cluster::WorkerId;
use convoy_actors::cluster::kv::{encode_key, leases_bucket, workers_bucket};
use convoy_actors::cluster::{
    LeaseActor, LeaseSettings, LeaseStatus, PartitionChange, ReleaseAndStop, StopWithoutRelease,
};

use crate::nats::NatsServer;
use crate::support::eventually;

const PARTITIONS: u16 = 16;
const TTL: Duration = Duration::from_secs(3);
const STREAM: &str = "LEASE_TEST";
/// Generous: three workers converging on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(90);

#[derive(Debug, Clone, Copy)]
struct Recorded {
    worker: usize,
    change: PartitionChange,
    at: Instant,
}

type Log = Arc<Mutex<Vec<Recorded>>>;

/// Stands in for a worker's consumer side: records each change with the time it arrived.
struct Recorder {
    worker: usize,
    log: Log,
}

impl Actor for Recorder {
    type Context = Context<Self>;
}

impl Handler<PartitionChange> for Recorder {
    type Result = ();

    fn handle(&mut self, change: PartitionChange, _: &mut Self::Context) {
        self.log.lock().unwrap().push(Recorded {
            worker: self.worker,
            change,
            at: Instant::now(),
        });
    }
}

struct Worker {
    id: WorkerId,
    leases: Addr<LeaseActor>,
    status: LeaseStatus,
}

async fn start_worker(url: &str, index: usize, log: &Log) -> Worker {
    let client = async_nats::connect(url)
        .await
        .expect("connect to nats-server");
    let id = WorkerId(format!("test-host/{}/worker-{index}", std::process::id()));
    let settings = LeaseSettings::new(id.clone(), PARTITIONS, TTL, STREAM, 1).unwrap();
    let recorder = Recorder {
        worker: index,
        log: log.clone(),
    }
    .start();
    let actor = LeaseActor::new(settings, jetstream::new(client), recorder.recipient());
    let status = actor.status();
    Worker {
        id,
        leases: actor.start(),
        status,
    }
}

fn owned(workers: &[&Worker]) -> Vec<BTreeSet<u16>> {
    workers
        .iter()
        .map(|worker| worker.status.snapshot().owned)
        .collect()
}

/// Every partition owned by exactly one of `workers`, each owning between `low` and
/// `high` of them, and each counting exactly these workers as live (while they still
/// count fewer, a worker may hold more than its final share for a moment).
fn shared_fairly(workers: &[&Worker], low: usize, high: usize) -> bool {
    if workers
        .iter()
        .any(|worker| worker.status.snapshot().live_workers != workers.len())
    {
        return false;
    }
    let owned = owned(workers);
    let total: usize = owned.iter().map(BTreeSet::len).sum();
    let union: BTreeSet<u16> = owned.iter().flatten().copied().collect();
    total == usize::from(PARTITIONS)
        && union.len() == usize::from(PARTITIONS)
        && owned.iter().all(|set| (low..=high).contains(&set.len()))
}

/// Owning intervals per partition: (worker, from, until). A worker stopped without
/// releasing stops processing at its stop time; one still running holds until `end`.
fn intervals(
    log: &[Recorded],
    stopped_at: &BTreeMap<usize, Instant>,
    end: Instant,
) -> BTreeMap<u16, Vec<(usize, Instant, Instant)>> {
    let mut open: BTreeMap<(u16, usize), Instant> = BTreeMap::new();
    let mut closed: BTreeMap<u16, Vec<(usize, Instant, Instant)>> = BTreeMap::new();
    for event in log {
        match event.change {
            PartitionChange::Acquired { partition } => {
                let before = open.insert((partition, event.worker), event.at);
                assert!(
                    before.is_none(),
                    "worker {} told Acquired twice for partition {partition}",
                    event.worker
                );
            }
            PartitionChange::Lost { partition } => {
                let from = open.remove(&(partition, event.worker)).unwrap_or_else(|| {
                    panic!(
                        "worker {} told Lost for partition {partition} it did not own",
                        event.worker
                    )
                });
                closed
                    .entry(partition)
                    .or_default()
                    .push((event.worker, from, event.at));
            }
        }
    }
    for ((partition, worker), from) in open {
        let until = stopped_at.get(&worker).copied().unwrap_or(end);
        closed
            .entry(partition)
            .or_default()
            .push((worker, from, until));
    }
    closed
}

#[actix_rt::test]
async fn three_workers_share_partitions_hand_them_over_and_never_own_one_twice() {
    crate::support::install_crypto();
    let server = NatsServer::start();
    let log: Log = Arc::default();
    let first = start_worker(server.url(), 0, &log).await;
    let second = start_worker(server.url(), 1, &log).await;
    let third = start_worker(server.url(), 2, &log).await;

    // Fair share: ⌈16/3⌉ = 6, so 6 + 5 + 5 or 6 + 6 + 4.
    assert!(
        eventually(DEADLINE, || async {
            shared_fairly(&[&first, &second, &third], 4, 6)
        })
        .await,
        "16 partitions not shared fairly by three workers: {:?}\nnats log:\n{}",
        owned(&[&first, &second, &third]),
        server.log()
    );
    for worker in [&first, &second, &third] {
        assert!(worker.status.readiness(Instant::now()).is_ok());
    }

    // A crash: no release. The others take its partitions once its leases expire.
    let killed = third.status.snapshot().owned;
    let killed_at = Instant::now();
    third.leases.send(StopWithoutRelease).await.unwrap();
    assert!(
        eventually(DEADLINE, || async {
            shared_fairly(&[&first, &second], 8, 8)
        })
        .await,
        "the stopped worker's partitions {killed:?} were not taken over: {:?}",
        owned(&[&first, &second])
    );
    let taken_over = log
        .lock()
        .unwrap()
        .iter()
        .filter(|event| {
            matches!(event.change, PartitionChange::Acquired { partition } if killed.contains(&partition))
                && event.at > killed_at
        })
        .count();
    assert!(
        taken_over >= killed.len(),
        "{taken_over} takeovers of {killed:?}"
    );

    // A graceful stop: its leases are deleted before the stop answers, so nobody waits
    // for a TTL (the survivor claims them at its next look).
    let released = second.status.snapshot().owned;
    assert!(!released.is_empty());
    second.leases.send(ReleaseAndStop).await.unwrap();
    let released_at = Instant::now();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client);
    let leases = js.get_key_value(leases_bucket(STREAM)).await.unwrap();
    for partition in &released {
        let entry = leases
            .entry(format!("p{partition}"))
            .await
            .unwrap()
            .expect("a lease entry");
        let survivor_holds =
            entry.operation == kv::Operation::Put && entry.value.as_ref() == first.id.0.as_bytes();
        assert!(
            entry.operation == kv::Operation::Delete || survivor_holds,
            "partition {partition} still held after the graceful stop: {entry:?}"
        );
    }
    let workers = js.get_key_value(workers_bucket(STREAM)).await.unwrap();
    let heartbeat = workers.entry(encode_key(&second.id.0)).await.unwrap();
    assert!(
        heartbeat.is_none_or(|entry| entry.operation != kv::Operation::Put),
        "the stopped worker's heartbeat is deleted"
    );
    assert!(
        eventually(DEADLINE, || async { shared_fairly(&[&first], 16, 16) }).await,
        "the survivor did not take every partition: {:?}",
        owned(&[&first])
    );

    // One owner at a time, over the whole run.
    let end = Instant::now();
    let stopped = BTreeMap::from([(2, killed_at), (1, released_at)]);
    let log = log.lock().unwrap().clone();
    for (partition, mut spans) in intervals(&log, &stopped, end) {
        spans.sort_by_key(|(_, from, _)| *from);
        for pair in spans.windows(2) {
            let (before_worker, _, before_until) = pair[0];
            let (after_worker, after_from, _) = pair[1];
            assert!(
                before_worker == after_worker || before_until <= after_from,
                "partition {partition}: worker {after_worker} acquired it {:?} before worker \
                 {before_worker} lost it",
                before_until - after_from
            );
        }
    }
    first.leases.send(ReleaseAndStop).await.unwrap();
}

/// NATS gone: renewals cannot land, so the worker tells its consumer side `Lost` for every
/// partition (before anyone else could have taken them over) and stops being ready.
#[actix_rt::test]
async fn a_worker_that_loses_nats_gives_every_partition_up() {
    crate::support::install_crypto();
    let server = NatsServer::start();
    let log: Log = Arc::default();
    let worker = start_worker(server.url(), 0, &log).await;
    assert!(
        eventually(DEADLINE, || async { shared_fairly(&[&worker], 16, 16) }).await,
        "a lone worker takes every partition: {:?}",
        owned(&[&worker])
    );
    let lost_nats_at = Instant::now();
    drop(server);
    assert!(
        eventually(DEADLINE, || async {
            worker.status.snapshot().owned.is_empty()
        })
        .await,
        "partitions still owned without NATS: {:?}",
        owned(&[&worker])
    );
    let lost: BTreeSet<u16> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|event| event.at >= lost_nats_at)
        .filter_map(|event| match event.change {
            PartitionChange::Lost { partition } => Some(partition),
            PartitionChange::Acquired { .. } => None,
        })
        .collect();
    assert_eq!(
        lost.len(),
        usize::from(PARTITIONS),
        "Lost told for each: {lost:?}"
    );
    assert!(
        eventually(DEADLINE, || async {
            worker.status.readiness(Instant::now()).is_err()
        })
        .await,
        "not ready once its writes stop landing"
    );
    worker.leases.send(StopWithoutRelease).await.unwrap();
}

/// A worker alone acquires every partition at once: at the default count (64, four times
/// an actix mailbox's default capacity) every `Acquired` still reaches its consumer — one
/// left out was a partition owned and never consumed.
#[actix_rt::test]
async fn every_change_reaches_the_consumer_at_the_default_partition_count() {
    crate::support::install_crypto();
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await.unwrap();
    let partitions = convoy::config::defaults::CLUSTER_PARTITIONS;
    let id = WorkerId(format!("test-host/{}/alone", std::process::id()));
    let settings = LeaseSettings::new(id, partitions, TTL, "LEASE_DEFAULT", 1).unwrap();
    let log: Log = Arc::default();
    let recorder = Recorder {
        worker: 0,
        log: log.clone(),
    }
    .start();
    let actor = LeaseActor::new(settings, jetstream::new(client), recorder.recipient());
    let status = actor.status();
    let _leases = actor.start();
    let acquired = || {
        log.lock()
            .unwrap()
            .iter()
            .filter(|event| matches!(event.change, PartitionChange::Acquired { .. }))
            .count()
    };
    let all = eventually(DEADLINE, || async {
        status.snapshot().owned.len() == usize::from(partitions)
            && acquired() == usize::from(partitions)
    })
    .await;
    assert!(
        all,
        "owned {}, Acquired delivered {}",
        status.snapshot().owned.len(),
        acquired()
    );
}
