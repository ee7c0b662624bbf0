//! SLA clock state that moves with a partition (cluster worker role): each conversation's
//! SLA book — the very JSON the SlaActor keeps in the outbox's SLA table (open clocks, or
//! the final tallies of a settled conversation) — is mirrored into `<stream>_sla`, key
//! `p<partition>.<encoded conversation id>`, so the worker that takes a partition over
//! loads its conversations' clocks ([`SlaClockStore::load_partition`]) and a clock
//! survives a handover. The SlaActor answers a handover only once its books are written
//! here as well as to the outbox, and the frame is acknowledged only then: the books a
//! new owner loads are never older than the frames the stream will not deliver again.
//!
//! Writes are compare-and-set on the revision this worker last wrote or loaded, and only
//! while this worker owns the partition (the lease actor's [`LeaseStatus`]): the old
//! owner stops writing when it is told `Lost`. A CAS that fails while we own the
//! partition means the previous owner wrote late (before it noticed its loss): we read
//! the newest revision and write our state over it once, since the lease holder's state
//! is the one that counts.
//!
//! # Boot (worker role)
//!
//! `app.rs` opens the store on the lease actor's status before the SlaActor starts and
//! gives it to the actor (`SlaActor::with_cluster_clocks`); the partition consumers
//! (`worker.rs`) send `LoadPartitionClocks` on every acquired partition before they
//! rebuild or consume it, and `DropPartitionClocks` on every lost one.
//!
//! [`LeaseStatus`]: super::lease_actor::LeaseStatus

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use convoy::cluster::Partitions;
use convoy::config::ClusterConfig;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::kv::{
    configured_partitions, encode_key, ensure_bucket, sla_bucket, BucketSpec, KvError,
};
use super::lease_actor::LeaseStatus;
use super::metrics as cluster_metrics;

/// How long a partition's load may wait for its next entry before it fails (and is
/// retried by the consumer side): entries come at once from a live server.
const LOAD_IDLE: Duration = Duration::from_secs(10);

/// Whether this worker owns a partition now.
pub type OwnsPartition = Arc<dyn Fn(u16) -> bool + Send + Sync>;

impl LeaseStatus {
    /// The ownership test of the SLA mirror: owned per the lease actor's last word.
    pub fn owns_partition(&self) -> OwnsPartition {
        let status = self.clone();
        Arc::new(move |partition| status.snapshot().owned.contains(&partition))
    }
}

/// One conversation's entry in `<stream>_sla`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredClocks {
    pub conversation: String,
    /// The SlaActor's book, as the outbox keeps it.
    pub book: Value,
}

/// [`StoredClocks`] as it is written: the book as the caller serialises it (the SlaActor
/// passes the JSON text it committed, so a book is not parsed and written again).
#[derive(Serialize)]
struct StoredClocksOut<'a, B: ?Sized> {
    conversation: &'a str,
    book: &'a B,
}

/// What became of a save.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveOutcome {
    Saved,
    /// Not ours: the partition is not owned by this worker (nothing written).
    NotOwner,
}

/// A worker's handle on `<stream>_sla`; cheap to clone.
#[derive(Clone)]
pub struct SlaClockStore {
    store: kv::Store,
    /// For the inbox a partition's load is delivered to.
    client: async_nats::Client,
    bucket: String,
    partitions: Partitions,
    owns: OwnsPartition,
    /// The revision we last wrote or loaded, per key: the expected revision of our next CAS.
    revisions: Arc<Mutex<HashMap<String, u64>>>,
}

impl std::fmt::Debug for SlaClockStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlaClockStore")
            .field("bucket", &self.bucket)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl SlaClockStore {
    pub async fn open(
        jetstream: &jetstream::Context,
        config: &ClusterConfig,
        leases: LeaseStatus,
    ) -> Result<SlaClockStore, KvError> {
        let partitions = configured_partitions(config, &sla_bucket(&config.stream))?;
        SlaClockStore::open_with(
            jetstream,
            &config.stream,
            config.replicas,
            partitions,
            leases.owns_partition(),
        )
        .await
    }

    pub async fn open_with(
        jetstream: &jetstream::Context,
        stream: &str,
        replicas: u8,
        partitions: Partitions,
        owns: OwnsPartition,
    ) -> Result<SlaClockStore, KvError> {
        let bucket = sla_bucket(stream);
        let store =
            ensure_bucket(jetstream, &BucketSpec::lasting(bucket.clone(), replicas)).await?;
        Ok(SlaClockStore {
            store,
            client: jetstream.client(),
            bucket,
            partitions,
            owns,
            revisions: Arc::default(),
        })
    }

    /// The partition of a conversation (the same hash as the frames' subjects).
    pub fn partition_of(&self, conversation: &str) -> u16 {
        self.partitions.of(conversation).0
    }

    fn key(&self, conversation: &str) -> String {
        format!(
            "p{}.{}",
            self.partition_of(conversation),
            encode_key(conversation)
        )
    }

    fn known_revision(&self, key: &str) -> Option<u64> {
        self.revisions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .copied()
    }

    fn remember_revision(&self, key: &str, revision: Option<u64>) {
        let mut revisions = self
            .revisions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match revision {
            Some(revision) => revisions.insert(key.to_owned(), revision),
            None => revisions.remove(key),
        };
    }

    /// Writes (`Some`) or deletes (`None`) a conversation's book, if its partition is ours.
    pub async fn save<B: Serialize + ?Sized>(
        &self,
        conversation: &str,
        book: Option<&B>,
    ) -> Result<SaveOutcome, KvError> {
        let outcome = self.try_save(conversation, book).await;
        cluster_metrics::sla_kv(match &outcome {
            Ok(SaveOutcome::Saved) => "saved",
            Ok(SaveOutcome::NotOwner) => "conflict",
            Err(_) => "kv_failure",
        });
        outcome
    }

    async fn try_save<B: Serialize + ?Sized>(
        &self,
        conversation: &str,
        book: Option<&B>,
    ) -> Result<SaveOutcome, KvError> {
        if !(self.owns)(self.partition_of(conversation)) {
            return Ok(SaveOutcome::NotOwner);
        }
        let key = self.key(conversation);
        let Some(book) = book else {
            self.store
                .delete(&key)
                .await
                .map_err(|error| KvError::new("delete", &self.bucket, error))?;
            self.remember_revision(&key, None);
            return Ok(SaveOutcome::Saved);
        };
        let value: bytes::Bytes = serde_json::to_vec(&StoredClocksOut { conversation, book })
            .map_err(|error| KvError::new("encode", &self.bucket, error))?
            .into();
        let expected = match self.known_revision(&key) {
            Some(revision) => revision,
            None => self.current_revision(&key).await?,
        };
        let written = match self.store.update(&key, value.clone(), expected).await {
            Ok(revision) => revision,
            Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                // The previous owner wrote after we loaded. We hold the lease: our state
                // wins, once, on the newest revision.
                cluster_metrics::sla_kv("conflict");
                let newest = self.current_revision(&key).await?;
                if !(self.owns)(self.partition_of(conversation)) {
                    return Ok(SaveOutcome::NotOwner);
                }
                self.store
                    .update(&key, value, newest)
                    .await
                    .map_err(|error| KvError::new("write", &self.bucket, error))?
            }
            Err(error) => return Err(KvError::new("write", &self.bucket, error)),
        };
        self.remember_revision(&key, Some(written));
        Ok(SaveOutcome::Saved)
    }

    /// The key's newest revision (0 when it never existed).
    async fn current_revision(&self, key: &str) -> Result<u64, KvError> {
        let entry = self
            .store
            .entry(key)
            .await
            .map_err(|error| KvError::new("read", &self.bucket, error))?;
        Ok(entry.map_or(0, |entry| entry.revision))
    }

    /// Every conversation book of `partition`, to resume its clocks after a takeover.
    pub async fn load_partition(&self, partition: u16) -> Result<Vec<StoredClocks>, KvError> {
        let failed = |what: &'static str, error: String| KvError::new(what, &self.bucket, error);
        // Only this partition's keys (`p<N>.…`), each at its last revision, values
        // included: one consumer on the bucket's stream instead of listing every
        // partition's keys and reading each value with a request of its own.
        let consumer = self
            .store
            .stream
            .create_consumer(jetstream::consumer::push::OrderedConfig {
                deliver_subject: self.client.new_inbox(),
                description: Some(format!("convoy: SLA clocks of partition {partition}")),
                filter_subject: format!("{}p{partition}.>", self.store.prefix),
                replay_policy: jetstream::consumer::ReplayPolicy::Instant,
                deliver_policy: jetstream::consumer::DeliverPolicy::LastPerSubject,
                ..Default::default()
            })
            .await
            .map_err(|error| failed("list partition", error.to_string()))?;
        let mut loaded = Vec::new();
        if consumer.cached_info().num_pending == 0 {
            return Ok(loaded);
        }
        let mut messages = consumer
            .messages()
            .await
            .map_err(|error| failed("list partition", error.to_string()))?;
        loop {
            let message = match tokio::time::timeout(LOAD_IDLE, messages.next()).await {
                Ok(Some(Ok(message))) => message,
                Ok(Some(Err(error))) => return Err(failed("read partition", error.to_string())),
                Ok(None) => return Err(failed("read partition", "the consumer ended".into())),
                Err(_) => {
                    return Err(failed(
                        "read partition",
                        format!("no entry within {LOAD_IDLE:?}"),
                    ))
                }
            };
            let (revision, pending) = message
                .info()
                .map(|info| (info.stream_sequence, info.pending))
                .map_err(|error| failed("read partition", error.to_string()))?;
            let key = message
                .subject
                .strip_prefix(self.store.prefix.as_str())
                .unwrap_or(message.subject.as_str());
            self.remember_revision(key, Some(revision));
            let removed = message
                .headers
                .as_ref()
                .and_then(|headers| headers.get("KV-Operation"))
                .is_some_and(|operation| matches!(operation.as_str(), "DEL" | "PURGE"));
            if !removed {
                match serde_json::from_slice::<StoredClocks>(&message.payload) {
                    Ok(clocks) => {
                        cluster_metrics::sla_kv("loaded");
                        loaded.push(clocks);
                    }
                    Err(error) => {
                        tracing::error!(%key, %error, "Unreadable SLA clocks in NATS KV; skipped.");
                        cluster_metrics::sla_kv("kv_failure");
                    }
                }
            }
            if pending == 0 {
                return Ok(loaded);
            }
        }
    }
}
