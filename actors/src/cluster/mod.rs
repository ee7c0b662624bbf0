//! The cluster roles (`cluster.enabled = true`): instances sharing the work through NATS
//! JetStream. The decisions (partition of a conversation, frame ids, lease rules) are pure
//! code in `convoy::cluster`; this module holds the parts that talk to NATS. With the
//! cluster off (the default) nothing here runs.

pub mod ingest;
pub mod nats;
pub mod worker;

use actix::Message;

pub mod fence;
pub mod kv;
pub mod lease_actor;
pub mod metrics;
pub mod sla_kv;

pub use lease_actor::{
    this_process_worker_id, LeaseActor, LeaseNotReady, LeaseSettings, LeaseSnapshot, LeaseStatus,
    ReleaseAndStop, StopWithoutRelease,
};

/// A change in which partitions this worker owns, sent by the lease side to the consumer
/// side. `Lost` arrives before any other worker may legally take the partition over
/// (the holder stops a margin before its lease could be judged expired), so the consumer
/// stops acknowledging that partition's frames in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub enum PartitionChange {
    Acquired { partition: u16 },
    Lost { partition: u16 },
}
