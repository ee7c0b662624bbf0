//! The pure rules of running several Convoy instances on NATS JetStream (issue 12): which
//! partition and subject a conversation's frames go to ([`partition`]), the `Nats-Msg-Id`
//! that lets JetStream drop the same event seen twice ([`frame_id`]), and who owns a
//! partition ([`lease`]: the lease state machine and the fair share of partitions per
//! worker), what a published frame looks like ([`wire`]: headers, payload, consumer
//! names), and which voice calls the ingest follows the transcription of
//! ([`transcription`]). No NATS client here: the shell (`convoy-actors`) does the I/O and asks these
//! functions what to do.

pub mod frame_id;
pub mod lease;
pub mod partition;
pub mod transcription;
pub mod wire;

pub use frame_id::{frame_msg_id, FrameKind};
pub use lease::{fair_share, rebalance, KvLease, LeaseAction, PartitionLease, Rebalance, WorkerId};
pub use partition::{Partition, Partitions, PartitionsError, SUBJECT_PREFIX};
pub use transcription::{call_liveness, CallFollow, CallLiveness, WatchChange};
pub use wire::{consumer_name, FrameHeaders, PayloadKind, WireError, STREAM_SUBJECTS};
