//! The lease actor of a worker: who owns which partition, decided by the pure rules of
//! [`convoy::cluster::lease`] against two JetStream KV buckets, and told to the consumer
//! side as [`PartitionChange`]s.
//!
//! - `<stream>_leases` (history 1): key `p<N>` holds the holder's worker id. Every write
//!   is a compare-and-set on the key's revision, so of two workers writing on one revision
//!   exactly one wins.
//! - `<stream>_workers` (history 1, entries expire after 10 TTLs): key = the worker id
//!   (encoded), rewritten every third of the TTL. A worker whose heartbeat revision has
//!   not changed for a TTL (on *our* monotonic clock) is dead. The number of live workers
//!   `W` gives the fair share `⌈P/W⌉`.
//!
//! One loop per actor: it watches both buckets (reading every partition's key once at
//! start and after any NATS failure), claims vacant or expired partitions up to the fair
//! share, renews its own every third of the TTL, releases surplus ones (highest numbers
//! first), and sends `Acquired` once a lease is written and `Lost` as soon as it stops
//! owning: a margin before anyone else may take it (`PartitionLease::owned_until`), on a
//! failed or timed-out renewal, on a lost NATS connection, and *before* a release is
//! written. Every NATS call is bounded by the time left until the earliest ownership
//! ends, so a hanging server cannot keep `Lost` from being sent in time.
//!
//! # Boot (called by the worker role's start-up code)
//!
//! ```ignore
//! let worker = this_process_worker_id(started_at);
//! let settings = LeaseSettings::from_config(&cluster_config, worker)?;
//! let actor = LeaseActor::new(settings, jetstream_context, consumer.recipient());
//! let status = actor.status(); // for metrics and /readyz (`LeaseStatus::readiness`)
//! let leases = actor.start();
//! // graceful stop (SIGTERM): releases every lease at once so others take over now
//! leases.send(ReleaseAndStop).await;
//! ```
//!
//! A process that dies (or an actor stopped by [`StopWithoutRelease`]) releases nothing:
//! its partitions pass to the others once the TTL has run out.

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix::prelude::*;
use async_nats::jetstream::{self, kv};
use chrono::{DateTime, Utc};
use convoy::cluster::{
    rebalance, KvLease, LeaseAction, Partition, PartitionLease, Partitions, WorkerId,
};
use convoy::config::ClusterConfig;
use futures_util::{Stream, StreamExt};
use tokio::sync::oneshot;

use super::kv::{encode_key, ensure_bucket, leases_bucket, workers_bucket, BucketSpec, KvError};
use super::metrics as cluster_metrics;
use super::PartitionChange;

/// What a lease actor needs to know.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub worker: WorkerId,
    pub partitions: Partitions,
    /// `cluster.lease_ttl`.
    pub ttl: Duration,
    /// `cluster.stream`: the buckets' names derive from it.
    pub stream: String,
    /// `cluster.replicas` of both buckets.
    pub replicas: u8,
}

/// Settings that cannot run a lease actor.
#[derive(Debug, thiserror::Error)]
pub enum LeaseSettingsError {
    #[error("cluster.partitions: {0}")]
    Partitions(#[from] convoy::cluster::PartitionsError),
    #[error(
        "cluster.lease_ttl must be at least 300 ms for renewals every third of it, found {0:?}"
    )]
    TtlTooShort(Duration),
}

impl LeaseSettings {
    pub fn from_config(
        config: &ClusterConfig,
        worker: WorkerId,
    ) -> Result<LeaseSettings, LeaseSettingsError> {
        LeaseSettings::new(
            worker,
            config.partitions,
            config.lease_ttl,
            &config.stream,
            config.replicas,
        )
    }

    pub fn new(
        worker: WorkerId,
        partitions: u16,
        ttl: Duration,
        stream: &str,
        replicas: u8,
    ) -> Result<LeaseSettings, LeaseSettingsError> {
        if ttl < Duration::from_millis(300) {
            return Err(LeaseSettingsError::TtlTooShort(ttl));
        }
        Ok(LeaseSettings {
            worker,
            partitions: Partitions::new(partitions)?,
            ttl,
            stream: stream.to_owned(),
            replicas,
        })
    }
}

/// This process's worker id: host name, process id and start time (microseconds, UTC),
/// so a restarted process never takes its previous incarnation's leases for its own.
pub fn this_process_worker_id(started_at: DateTime<Utc>) -> WorkerId {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|host| host.trim().to_owned())
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned());
    WorkerId(format!(
        "{host}/{}/{}",
        std::process::id(),
        started_at.format("%Y-%m-%dT%H:%M:%S%.6fZ")
    ))
}

/// The KV key of a partition's lease.
pub fn lease_key(partition: Partition) -> String {
    format!("p{}", partition.0)
}

fn partition_of_key(key: &str, partitions: Partitions) -> Option<Partition> {
    let number: u16 = key.strip_prefix('p')?.parse().ok()?;
    (number < partitions.count()).then_some(Partition(number))
}

/// What the lease actor shows the rest of the process: partitions owned now and when a
/// KV write (lease or heartbeat) last succeeded. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LeaseStatus {
    inner: Arc<Mutex<LeaseSnapshot>>,
    ttl: Duration,
}

/// A copy of the lease actor's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseSnapshot {
    pub owned: BTreeSet<u16>,
    pub last_kv_write: Option<Instant>,
    pub live_workers: usize,
}

/// Why a worker is not ready.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseNotReady {
    #[error("no lease or heartbeat written to NATS KV yet")]
    NeverWritten,
    #[error("the last lease or heartbeat write to NATS KV was {} ms ago (TTL {} ms)", .since.as_millis(), .ttl.as_millis())]
    Stale { since: Duration, ttl: Duration },
}

impl LeaseStatus {
    fn new(ttl: Duration) -> LeaseStatus {
        LeaseStatus {
            inner: Arc::new(Mutex::new(LeaseSnapshot::default())),
            ttl,
        }
    }

    pub fn snapshot(&self) -> LeaseSnapshot {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The worker role's `/readyz` check: it may own any number of partitions (zero while
    /// others hold them all), but its last KV write must be younger than the TTL, or the
    /// others already count it dead.
    pub fn readiness(&self, now: Instant) -> Result<(), LeaseNotReady> {
        let Some(last) = self.snapshot().last_kv_write else {
            return Err(LeaseNotReady::NeverWritten);
        };
        let since = now.saturating_duration_since(last);
        if since < self.ttl {
            Ok(())
        } else {
            Err(LeaseNotReady::Stale {
                since,
                ttl: self.ttl,
            })
        }
    }

    fn update(&self, change: impl FnOnce(&mut LeaseSnapshot)) {
        change(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

/// Releases every lease (after telling the consumer side `Lost`) and the heartbeat, then
/// stops the actor: the others take the partitions over at once. Answers when done.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ReleaseAndStop;

/// Stops the actor without releasing anything, as a crash would: the leases pass to the
/// others once the TTL has run out.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopWithoutRelease;

/// See the module documentation.
pub struct LeaseActor {
    settings: LeaseSettings,
    jetstream: jetstream::Context,
    consumer: Recipient<PartitionChange>,
    status: LeaseStatus,
    shutdown: Option<oneshot::Sender<oneshot::Sender<()>>>,
}

impl LeaseActor {
    pub fn new(
        settings: LeaseSettings,
        jetstream: jetstream::Context,
        consumer: Recipient<PartitionChange>,
    ) -> LeaseActor {
        let status = LeaseStatus::new(settings.ttl);
        LeaseActor {
            settings,
            jetstream,
            consumer,
            status,
            shutdown: None,
        }
    }

    /// The status the actor keeps up to date, for `/readyz` and tests.
    pub fn status(&self) -> LeaseStatus {
        self.status.clone()
    }
}

impl Actor for LeaseActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let (shutdown, requests) = oneshot::channel();
        self.shutdown = Some(shutdown);
        let worker = LeaseLoop::new(
            self.settings.clone(),
            self.jetstream.clone(),
            self.consumer.clone(),
            self.status.clone(),
        );
        ctx.spawn(
            worker
                .run(requests)
                .into_actor(self)
                .map(|(), _actor, ctx| ctx.stop()),
        );
    }
}

impl Handler<ReleaseAndStop> for LeaseActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: ReleaseAndStop, _ctx: &mut Self::Context) -> Self::Result {
        let (done, finished) = oneshot::channel();
        if let Some(shutdown) = self.shutdown.take() {
            // The loop has ended already when this fails: nothing left to release.
            let _ = shutdown.send(done);
        }
        Box::pin(async move {
            let _ = finished.await;
        })
    }
}

impl Handler<StopWithoutRelease> for LeaseActor {
    type Result = ();

    fn handle(&mut self, _: StopWithoutRelease, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// A change seen by one of the two watches.
enum Watched {
    Lease(Result<kv::Entry, kv::WatcherError>),
    Worker(Result<kv::Entry, kv::WatcherError>),
}

type Events = Pin<Box<dyn Stream<Item = Watched>>>;

/// The two buckets and their watches, while NATS answers.
struct Buckets {
    leases: kv::Store,
    workers: kv::Store,
    events: Events,
}

/// The state of one worker's leases; runs as one future inside the actor.
struct LeaseLoop {
    settings: LeaseSettings,
    jetstream: jetstream::Context,
    consumer: Recipient<PartitionChange>,
    status: LeaseStatus,
    origin: Instant,
    /// Indexed by partition number.
    leases: Vec<PartitionLease>,
    /// The newest revision seen per partition: a watch may deliver an older one after a
    /// read returned a newer one.
    newest_revision: Vec<u64>,
    /// Partitions whose entry must be read before deciding (at start, after a failed or
    /// conflicting write).
    to_read: BTreeSet<Partition>,
    /// Partitions the consumer side was told it owns.
    announced: BTreeSet<Partition>,
    /// Other workers' heartbeats: key → (revision, when we first saw it).
    heartbeats: BTreeMap<String, (u64, Duration)>,
    next_heartbeat: Duration,
    /// Where this worker starts looking for partitions to claim, so that workers starting
    /// together do not all race for partition 0.
    claim_offset: u16,
}

impl LeaseLoop {
    fn new(
        settings: LeaseSettings,
        jetstream: jetstream::Context,
        consumer: Recipient<PartitionChange>,
        status: LeaseStatus,
    ) -> LeaseLoop {
        let count = settings.partitions.count();
        let claim_offset = settings.partitions.of(&settings.worker.0).0;
        LeaseLoop {
            leases: vec![PartitionLease::new(settings.ttl); usize::from(count)],
            newest_revision: vec![0; usize::from(count)],
            to_read: settings.partitions.all().collect(),
            announced: BTreeSet::new(),
            heartbeats: BTreeMap::new(),
            next_heartbeat: Duration::ZERO,
            claim_offset,
            origin: Instant::now(),
            settings,
            jetstream,
            consumer,
            status,
        }
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn ttl(&self) -> Duration {
        self.settings.ttl
    }

    fn lease(&self, partition: Partition) -> &PartitionLease {
        &self.leases[usize::from(partition.0)]
    }

    fn lease_mut(&mut self, partition: Partition) -> &mut PartitionLease {
        &mut self.leases[usize::from(partition.0)]
    }

    async fn run(mut self, mut shutdown: oneshot::Receiver<oneshot::Sender<()>>) {
        let mut buckets: Option<Buckets> = None;
        loop {
            if buckets.is_none() {
                buckets = self.connect().await;
            }
            if let Some(connected) = &buckets {
                if let Err(error) = self.step(connected).await {
                    tracing::warn!(%error, "lease step failed; reconnecting to NATS KV");
                    cluster_metrics::lease_failure();
                    buckets = None;
                    self.to_read = self.settings.partitions.all().collect();
                }
            }
            self.announce();
            let wake = self.origin + self.next_wake(buckets.is_some());
            tokio::select! {
                biased;
                request = &mut shutdown => {
                    self.release_all(buckets.as_ref()).await;
                    if let Ok(done) = request {
                        let _ = done.send(());
                    }
                    return;
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
                event = async {
                    match buckets.as_mut() {
                        Some(connected) => connected.events.next().await,
                        None => std::future::pending().await,
                    }
                } => match event {
                    Some(event) => {
                        if let Err(error) = self.watched(event) {
                            tracing::warn!(%error, "lease watch failed; reconnecting to NATS KV");
                            cluster_metrics::lease_failure();
                            buckets = None;
                            self.to_read = self.settings.partitions.all().collect();
                        }
                    }
                    None => {
                        tracing::warn!("lease watch ended; reconnecting to NATS KV");
                        buckets = None;
                        self.to_read = self.settings.partitions.all().collect();
                    }
                },
            }
        }
    }

    /// Opens (or creates) both buckets and watches them; `None` when NATS does not answer
    /// (the loop tries again at its next wake-up).
    async fn connect(&mut self) -> Option<Buckets> {
        let budget = self.op_budget();
        let ttl = self.ttl();
        let replicas = self.settings.replicas;
        let leases_spec = BucketSpec::lasting(leases_bucket(&self.settings.stream), replicas);
        let workers_spec = BucketSpec {
            name: workers_bucket(&self.settings.stream),
            history: 1,
            replicas,
            max_age: ttl * 10,
        };
        let jetstream = self.jetstream.clone();
        let opened = tokio::time::timeout(budget, async move {
            let leases = ensure_bucket(&jetstream, &leases_spec).await?;
            let workers = ensure_bucket(&jetstream, &workers_spec).await?;
            let lease_watch = leases
                .watch_all()
                .await
                .map_err(|error| KvError::new("watch", &leases_spec.name, error))?;
            let worker_watch = workers
                .watch_all()
                .await
                .map_err(|error| KvError::new("watch", &workers_spec.name, error))?;
            let events: Events = Box::pin(futures_util::stream::select(
                lease_watch.map(Watched::Lease),
                worker_watch.map(Watched::Worker),
            ));
            Ok::<_, KvError>(Buckets {
                leases,
                workers,
                events,
            })
        })
        .await;
        match opened {
            Ok(Ok(buckets)) => Some(buckets),
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot open the lease buckets");
                cluster_metrics::lease_failure();
                None
            }
            Err(_) => {
                tracing::warn!(
                    budget_ms = budget.as_millis(),
                    "NATS did not open the lease buckets in time"
                );
                cluster_metrics::lease_failure();
                None
            }
        }
    }

    /// How long one NATS call may take: until the earliest announced ownership ends (so
    /// `Lost` goes out in time), and never more than a third of the TTL.
    fn op_budget(&self) -> Duration {
        let now = self.now();
        let mut budget = self.ttl() / 3;
        for partition in &self.announced {
            if let Some(until) = self.lease(*partition).owned_until() {
                budget = budget.min(until.saturating_sub(now));
            }
        }
        budget.max(Duration::from_millis(1))
    }

    async fn timed<T, E>(
        &self,
        operation: &'static str,
        call: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<Result<T, E>, KvError> {
        let budget = self.op_budget();
        tokio::time::timeout(budget, call).await.map_err(|_| {
            KvError::timed_out(operation, &leases_bucket(&self.settings.stream), budget)
        })
    }

    /// One round: reads owed, heartbeat due, then releases, renewals and claims.
    async fn step(&mut self, buckets: &Buckets) -> Result<(), KvError> {
        let bucket = leases_bucket(&self.settings.stream);
        while let Some(partition) = self.to_read.first().copied() {
            let entry = self
                .timed("read", buckets.leases.entry(lease_key(partition)))
                .await?
                .map_err(|error| KvError::new("read", &bucket, error))?;
            self.to_read.remove(&partition);
            let seen = match entry {
                None => KvLease::Absent,
                Some(entry) => lease_of_entry(&entry),
            };
            self.observe(partition, seen, true);
        }

        if self.now() >= self.next_heartbeat {
            let sent_at = self.now();
            let value = bytes::Bytes::from(self.settings.worker.0.clone());
            self.timed(
                "heartbeat",
                buckets
                    .workers
                    .put(encode_key(&self.settings.worker.0), value),
            )
            .await?
            .map_err(|error| {
                KvError::new("heartbeat", &workers_bucket(&self.settings.stream), error)
            })?;
            self.next_heartbeat = sent_at + self.ttl() / 3;
            self.status
                .update(|status| status.last_kv_write = Some(Instant::now()));
        }

        self.announce();
        let now = self.now();
        let owned: BTreeSet<Partition> = self
            .settings
            .partitions
            .all()
            .filter(|partition| self.lease(*partition).owns(now))
            .collect();
        let workers = self.live_workers(now);
        let plan = rebalance(&owned, self.settings.partitions, workers);

        for partition in &plan.release {
            self.release(buckets, *partition).await?;
        }
        let released: BTreeSet<Partition> = plan.release.iter().copied().collect();
        for partition in owned.difference(&released) {
            let now = self.now();
            if let LeaseAction::Update { expected_revision } =
                self.lease(*partition).next(true, now)
            {
                self.write(buckets, *partition, expected_revision).await?;
            }
        }
        let mut claims = plan.claim;
        let count = self.settings.partitions.count();
        for index in 0..count {
            if claims == 0 {
                break;
            }
            let partition = Partition((index + self.claim_offset) % count);
            if owned.contains(&partition) {
                continue;
            }
            let expected_revision = match self.lease(partition).next(true, self.now()) {
                LeaseAction::Create => 0,
                LeaseAction::Update { expected_revision } => expected_revision,
                _ => continue,
            };
            if self.write(buckets, partition, expected_revision).await? {
                claims -= 1;
            }
        }
        Ok(())
    }

    /// A compare-and-set of our id on `partition`'s key: claim, steal or renewal. True when
    /// the lease is ours now.
    async fn write(
        &mut self,
        buckets: &Buckets,
        partition: Partition,
        expected_revision: u64,
    ) -> Result<bool, KvError> {
        let renewal = self.announced.contains(&partition);
        let stealing = matches!(
            self.lease(partition).next(true, self.now()),
            LeaseAction::Update { .. }
        ) && !renewal;
        let sent_at = self.now();
        let value = bytes::Bytes::from(self.settings.worker.0.clone());
        let outcome = self
            .timed(
                "write",
                buckets
                    .leases
                    .update(lease_key(partition), value, expected_revision),
            )
            .await;
        match outcome {
            Ok(Ok(revision)) => {
                let me = self.settings.worker.clone();
                self.lease_mut(partition).written(&me, revision, sent_at);
                let newest = &mut self.newest_revision[usize::from(partition.0)];
                *newest = (*newest).max(revision);
                self.status
                    .update(|status| status.last_kv_write = Some(Instant::now()));
                if renewal {
                    cluster_metrics::lease_renewed();
                } else if stealing && expected_revision > 0 {
                    cluster_metrics::lease_taken_over();
                }
                Ok(true)
            }
            Ok(Err(error)) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                // Someone else wrote first: not ours (any more). Read it again.
                self.lease_mut(partition).conflicted();
                self.to_read.insert(partition);
                self.lose(partition);
                if renewal {
                    cluster_metrics::lease_renewal_failed();
                }
                Ok(false)
            }
            Ok(Err(error)) => {
                self.write_failed(partition, renewal);
                Err(KvError::new(
                    "write",
                    &leases_bucket(&self.settings.stream),
                    error,
                ))
            }
            Err(timed_out) => {
                self.write_failed(partition, renewal);
                Err(timed_out)
            }
        }
    }

    /// A write whose outcome is unknown: we may or may not hold the key now. Stop owning
    /// (a renewal that failed means `Lost` at once) and read the key again.
    fn write_failed(&mut self, partition: Partition, renewal: bool) {
        self.lease_mut(partition).conflicted();
        self.to_read.insert(partition);
        self.lose(partition);
        if renewal {
            cluster_metrics::lease_renewal_failed();
        }
    }

    /// Gives a partition up: `Lost` first, then the delete on our revision.
    async fn release(&mut self, buckets: &Buckets, partition: Partition) -> Result<(), KvError> {
        let LeaseAction::Release { expected_revision } =
            self.lease(partition).next(false, self.now())
        else {
            return Ok(());
        };
        self.lose(partition);
        self.lease_mut(partition).released();
        self.to_read.insert(partition);
        cluster_metrics::lease_released();
        match self
            .timed(
                "release",
                buckets
                    .leases
                    .delete_expect_revision(lease_key(partition), Some(expected_revision)),
            )
            .await?
        {
            Ok(()) => Ok(()),
            // Someone wrote after our lease: nothing of ours left to release.
            Err(error) if error.kind() == kv::DeleteErrorKind::WrongLastRevision => Ok(()),
            Err(error) => Err(KvError::new(
                "release",
                &leases_bucket(&self.settings.stream),
                error,
            )),
        }
    }

    /// Graceful stop: `Lost` for everything, then every release and the heartbeat delete,
    /// each bounded so a dead server does not hold the stop up.
    async fn release_all(&mut self, buckets: Option<&Buckets>) {
        let owned: Vec<Partition> = self.announced.iter().copied().collect();
        for partition in &owned {
            self.lose(*partition);
        }
        let Some(buckets) = buckets else {
            return;
        };
        for partition in self.settings.partitions.all() {
            if let Err(error) = self.release(buckets, partition).await {
                tracing::warn!(%error, partition = partition.0, "lease not released; it expires after the TTL");
            }
        }
        let heartbeat = buckets.workers.delete(encode_key(&self.settings.worker.0));
        if let Ok(Err(error)) = self.timed("heartbeat delete", heartbeat).await {
            tracing::warn!(%error, "worker heartbeat not deleted; it ages out");
        }
    }

    fn watched(&mut self, event: Watched) -> Result<(), KvError> {
        match event {
            Watched::Lease(entry) => {
                let entry = entry.map_err(|error| {
                    KvError::new("watch", &leases_bucket(&self.settings.stream), error)
                })?;
                if let Some(partition) = partition_of_key(&entry.key, self.settings.partitions) {
                    self.observe(partition, lease_of_entry(&entry), false);
                }
            }
            Watched::Worker(entry) => {
                let entry = entry.map_err(|error| {
                    KvError::new("watch", &workers_bucket(&self.settings.stream), error)
                })?;
                let now = self.now();
                match entry.operation {
                    kv::Operation::Put => {
                        let first_seen = match self.heartbeats.get(&entry.key) {
                            Some((revision, since)) if *revision == entry.revision => *since,
                            _ => now,
                        };
                        self.heartbeats
                            .insert(entry.key, (entry.revision, first_seen));
                    }
                    kv::Operation::Delete | kv::Operation::Purge => {
                        self.heartbeats.remove(&entry.key);
                    }
                }
            }
        }
        Ok(())
    }

    /// Records an entry; a watched one older than what we know is stale and ignored (a
    /// read is always current).
    fn observe(&mut self, partition: Partition, seen: KvLease, read: bool) {
        let revision = match &seen {
            KvLease::Absent => 0,
            KvLease::Released { revision } | KvLease::Held { revision, .. } => *revision,
        };
        let newest = &mut self.newest_revision[usize::from(partition.0)];
        if !read && revision < *newest {
            return;
        }
        *newest = (*newest).max(revision);
        let now = self.now();
        self.lease_mut(partition).observe(seen, now);
        self.announce_one(partition, now);
    }

    /// Live workers, ourselves included.
    fn live_workers(&self, now: Duration) -> usize {
        let me = encode_key(&self.settings.worker.0);
        let others = self
            .heartbeats
            .iter()
            .filter(|(key, (_, since))| **key != me && now < *since + self.ttl())
            .count();
        let workers = others + 1;
        self.status.update(|status| status.live_workers = workers);
        workers
    }

    /// Tells the consumer side what changed: `Lost` for every partition announced that we
    /// no longer own, `Acquired` for every one newly owned.
    fn announce(&mut self) {
        let now = self.now();
        for partition in self.settings.partitions.all() {
            self.announce_one(partition, now);
        }
    }

    fn announce_one(&mut self, partition: Partition, now: Duration) {
        let owns = self.lease(partition).owns(now);
        let announced = self.announced.contains(&partition);
        if owns && !announced {
            self.announced.insert(partition);
            self.send(PartitionChange::Acquired {
                partition: partition.0,
            });
            cluster_metrics::partition_acquired();
            self.publish_owned();
        } else if !owns && announced {
            self.lose(partition);
        }
    }

    fn lose(&mut self, partition: Partition) {
        if self.announced.remove(&partition) {
            self.send(PartitionChange::Lost {
                partition: partition.0,
            });
            cluster_metrics::partition_lost();
            self.publish_owned();
        }
    }

    fn send(&self, change: PartitionChange) {
        // Queued whatever the consumer's mailbox capacity: a worker acquires every
        // partition at once when it starts alone (64 by default, four times actix's
        // default capacity), and a change left out would leave a partition owned and
        // never consumed, or consumed after it was lost. A stopped consumer drops it.
        self.consumer.do_send(change);
    }

    fn publish_owned(&self) {
        let owned: BTreeSet<u16> = self.announced.iter().map(|partition| partition.0).collect();
        cluster_metrics::partitions_owned(owned.len());
        self.status.update(|status| status.owned = owned);
    }

    /// When the loop must run again even if nothing is watched: the earliest end of an
    /// ownership, the next heartbeat, and a sixth of the TTL (renewals, expiries of others'
    /// leases and rebalancing are judged then).
    fn next_wake(&self, connected: bool) -> Duration {
        let now = self.now();
        let mut wake = now + self.ttl() / 6;
        if connected {
            wake = wake.min(self.next_heartbeat);
        }
        for partition in &self.announced {
            if let Some(until) = self.lease(*partition).owned_until() {
                wake = wake.min(until);
            }
        }
        wake.max(now)
    }
}

fn lease_of_entry(entry: &kv::Entry) -> KvLease {
    match entry.operation {
        kv::Operation::Put => KvLease::Held {
            holder: WorkerId(String::from_utf8_lossy(&entry.value).into_owned()),
            revision: entry.revision,
        },
        kv::Operation::Delete | kv::Operation::Purge => KvLease::Released {
            revision: entry.revision,
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn lease_keys_round_trip_and_others_are_ignored() {
        let partitions = Partitions::new(16).unwrap();
        assert_eq!(lease_key(Partition(7)), "p7");
        assert_eq!(partition_of_key("p7", partitions), Some(Partition(7)));
        assert_eq!(partition_of_key("p16", partitions), None);
        assert_eq!(partition_of_key("w7", partitions), None);
        assert_eq!(partition_of_key("p", partitions), None);
    }

    #[test]
    fn a_worker_id_names_host_pid_and_start_time() {
        let started = DateTime::parse_from_rfc3339("2026-12-02T15:00:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        let id = this_process_worker_id(started);
        assert!(
            id.0.ends_with(&format!(
                "/{}/2026-12-02T15:00:00.123456Z",
                std::process::id()
            )),
            "{id:?}"
        );
    }

    #[test]
    fn a_ttl_too_short_for_renewals_is_refused() {
        let error =
            LeaseSettings::new(WorkerId("w".into()), 16, Duration::from_millis(100), "S", 1)
                .unwrap_err();
        assert!(error.to_string().contains("lease_ttl"), "{error}");
    }

    #[test]
    fn readiness_needs_a_recent_kv_write() {
        let status = LeaseStatus::new(Duration::from_secs(3));
        let now = Instant::now();
        assert_eq!(status.readiness(now), Err(LeaseNotReady::NeverWritten));
        status.update(|snapshot| snapshot.last_kv_write = Some(now));
        assert_eq!(status.readiness(now + Duration::from_secs(1)), Ok(()));
        assert!(matches!(
            status.readiness(now + Duration::from_secs(4)),
            Err(LeaseNotReady::Stale { .. })
        ));
    }
}
