//! Write fencing of conversations in cluster mode: before a worker PATCHes a
//! conversation's participant attributes it must hold the conversation's fence, a key in
//! `<stream>_conversations` (the conversation id, [`encode_key`]d) holding
//! `{worker, partition, lease_revision, version}`.
//!
//! The fencing token is the revision of the partition's lease in `<stream>_leases`: lease
//! revisions of one key only grow, and each handover writes a new one. [`Fence::acquire`]
//! reads the lease (it must name this worker, else [`FenceError::NotOwner`]), then
//! compare-and-sets the fence: taking it from another worker only when that worker's
//! lease revision is older than ours. So a worker that lost the partition — even one that
//! has not noticed yet — cannot take the fence back from the new owner, and once the new
//! owner has written the fence, the old owner's CAS on its own token fails
//! ([`FenceError::Conflict`]): it does not write. [`Fence::advance`] records a landed
//! write (the conversation's version) with a CAS on the token's revision.
//!
//! A fence narrows the window of two writers to the instant between a CAS and its PATCH;
//! Genesys's If-Match (`genesys.if_match = "etag"`) closes it: a PATCH on a version the
//! other worker already changed gets 409/412.
//!
//! # Boot (worker role)
//!
//! `app.rs` opens the fence with the worker's id (`ClusterWorker::prepare`) and puts it
//! into the attribute writer's settings; the writer then takes the fence before each
//! PATCH, sends [`Fence::user_agent`] with it (so Genesys, or the emulator, can tell the
//! workers apart), and drops a write the fence refuses (`WriteOutcome::HandedOff`).
//! Single-process mode passes `fence: None`: the writer is unchanged.

use async_nats::jetstream::{self, kv};
use convoy::cluster::{Partition, Partitions, WorkerId};
use convoy::config::ClusterConfig;
use serde::{Deserialize, Serialize};

use super::kv::{
    configured_partitions, conversations_bucket, encode_key, ensure_bucket, leases_bucket,
    BucketSpec, KvError,
};
use super::lease_actor::lease_key;
use super::metrics as cluster_metrics;

/// A fence's value in KV.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceRecord {
    pub worker: String,
    pub partition: u16,
    /// The revision of the holder's lease of `partition` when it took the fence.
    pub lease_revision: u64,
    /// Attribute writes landed for this conversation under fences.
    pub version: u64,
}

/// Proof that this worker held the conversation's fence at the token's revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceToken {
    pub conversation: String,
    pub revision: u64,
    pub record: FenceRecord,
}

/// Why this worker may not write the conversation now.
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    #[error("this worker does not hold the lease of partition {partition} (conversation {conversation})")]
    NotOwner {
        conversation: String,
        partition: u16,
    },
    #[error("another worker holds the write fence of conversation {conversation}")]
    Conflict { conversation: String },
    #[error("the write fence of conversation {conversation} holds unreadable JSON: {reason}")]
    Corrupt {
        conversation: String,
        reason: String,
    },
    #[error(transparent)]
    Kv(#[from] KvError),
}

/// A worker's handle on the fences; cheap to clone.
#[derive(Debug, Clone)]
pub struct Fence {
    worker: WorkerId,
    partitions: Partitions,
    leases: kv::Store,
    fences: kv::Store,
    fences_name: String,
    leases_name: String,
    /// See [`Fence::user_agent`]; fixed for the worker's life.
    user_agent: String,
}

impl Fence {
    /// Opens (creating if need be) `<stream>_conversations` and `<stream>_leases`.
    pub async fn open(
        jetstream: &jetstream::Context,
        config: &ClusterConfig,
        worker: WorkerId,
    ) -> Result<Fence, KvError> {
        let partitions = configured_partitions(config, &conversations_bucket(&config.stream))?;
        Fence::open_with(
            jetstream,
            &config.stream,
            config.replicas,
            partitions,
            worker,
        )
        .await
    }

    pub async fn open_with(
        jetstream: &jetstream::Context,
        stream: &str,
        replicas: u8,
        partitions: Partitions,
        worker: WorkerId,
    ) -> Result<Fence, KvError> {
        let fences_name = conversations_bucket(stream);
        let leases_name = leases_bucket(stream);
        let fences = ensure_bucket(
            jetstream,
            &BucketSpec::lasting(fences_name.clone(), replicas),
        )
        .await?;
        let leases = ensure_bucket(
            jetstream,
            &BucketSpec::lasting(leases_name.clone(), replicas),
        )
        .await?;
        Ok(Fence {
            user_agent: user_agent_of(&worker),
            worker,
            partitions,
            leases,
            fences,
            fences_name,
            leases_name,
        })
    }

    /// The `User-Agent` of this worker's fenced writes: it names the worker, so the
    /// Genesys side (its logs; the emulator's count of writers racing on one
    /// conversation) can tell the cluster's writers apart.
    pub fn user_agent(&self) -> &str {
        &self.user_agent
    }

    /// Takes (or confirms) the conversation's fence for this worker. See the module doc.
    pub async fn acquire(&self, conversation: &str) -> Result<FenceToken, FenceError> {
        let outcome = self.try_acquire(conversation).await;
        cluster_metrics::fence(match &outcome {
            Ok(_) => "held",
            Err(FenceError::NotOwner { .. } | FenceError::Conflict { .. }) => "conflict",
            Err(FenceError::Corrupt { .. } | FenceError::Kv(_)) => "kv_failure",
        });
        outcome
    }

    async fn try_acquire(&self, conversation: &str) -> Result<FenceToken, FenceError> {
        let partition = self.partitions.of(conversation);
        let lease_revision = self.lease_revision(conversation, partition).await?;
        let key = encode_key(conversation);
        let current = self
            .fences
            .entry(key.clone())
            .await
            .map_err(|error| KvError::new("read", &self.fences_name, error))?;
        let (expected_revision, version) = match current {
            None => (0, 0),
            Some(entry) if entry.operation != kv::Operation::Put => (entry.revision, 0),
            Some(entry) => {
                let held: FenceRecord =
                    serde_json::from_slice(&entry.value).map_err(|error| FenceError::Corrupt {
                        conversation: conversation.to_owned(),
                        reason: error.to_string(),
                    })?;
                let mine = held.worker == self.worker.0;
                if !mine && held.partition == partition.0 && held.lease_revision >= lease_revision {
                    return Err(FenceError::Conflict {
                        conversation: conversation.to_owned(),
                    });
                }
                (entry.revision, held.version)
            }
        };
        let record = FenceRecord {
            worker: self.worker.0.clone(),
            partition: partition.0,
            lease_revision,
            version,
        };
        self.write(conversation, &key, expected_revision, record)
            .await
    }

    /// Records a landed write as `version`; fails with [`FenceError::Conflict`] when
    /// another worker took the fence since `token`.
    pub async fn advance(
        &self,
        token: &FenceToken,
        version: u64,
    ) -> Result<FenceToken, FenceError> {
        let record = FenceRecord {
            version,
            ..token.record.clone()
        };
        let outcome = self
            .write(
                &token.conversation,
                &encode_key(&token.conversation),
                token.revision,
                record,
            )
            .await;
        if matches!(outcome, Err(FenceError::Conflict { .. })) {
            cluster_metrics::fence("conflict");
        }
        outcome
    }

    /// The revision of our lease of `partition`; [`FenceError::NotOwner`] when the lease
    /// names another worker or none.
    async fn lease_revision(
        &self,
        conversation: &str,
        partition: Partition,
    ) -> Result<u64, FenceError> {
        let lease = self
            .leases
            .entry(lease_key(partition))
            .await
            .map_err(|error| KvError::new("read", &self.leases_name, error))?;
        match lease {
            Some(entry)
                if entry.operation == kv::Operation::Put
                    && entry.value.as_ref() == self.worker.0.as_bytes() =>
            {
                Ok(entry.revision)
            }
            _ => Err(FenceError::NotOwner {
                conversation: conversation.to_owned(),
                partition: partition.0,
            }),
        }
    }

    async fn write(
        &self,
        conversation: &str,
        key: &str,
        expected_revision: u64,
        record: FenceRecord,
    ) -> Result<FenceToken, FenceError> {
        let value = serde_json::to_vec(&record).map_err(|error| FenceError::Corrupt {
            conversation: conversation.to_owned(),
            reason: error.to_string(),
        })?;
        match self
            .fences
            .update(key, value.into(), expected_revision)
            .await
        {
            Ok(revision) => Ok(FenceToken {
                conversation: conversation.to_owned(),
                revision,
                record,
            }),
            Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                Err(FenceError::Conflict {
                    conversation: conversation.to_owned(),
                })
            }
            Err(error) => Err(KvError::new("write", &self.fences_name, error).into()),
        }
    }
}

/// `convoy/<version> (worker <id>)`, header-safe: any byte of the id that is not
/// printable ASCII becomes `_`.
fn user_agent_of(worker: &WorkerId) -> String {
    let worker: String = worker
        .0
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    format!("convoy/{} (worker {worker})", env!("CARGO_PKG_VERSION"))
}
