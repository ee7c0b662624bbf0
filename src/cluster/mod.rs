//! The pure rules of running several Convoy instances on NATS JetStream (issue 12): which
//! partition and subject a conversation's frames go to ([`partition`]), the `Nats-Msg-Id`
//! that lets JetStream drop the same event seen twice ([`frame_id`]), and who owns a
//! partition ([`lease`]: the lease state machine and the fair share of partitions per
//! worker). No NATS client here: the shell (`convoy-actors`) does the I/O and asks these
//! functions what to do. Only the rules are built so far; the roles are refused by
//! `config::validate` until they are.

pub mod frame_id;
pub mod lease;
pub mod partition;

pub use frame_id::{frame_msg_id, FrameKind};
pub use lease::{fair_share, rebalance, KvLease, LeaseAction, PartitionLease, Rebalance, WorkerId};
pub use partition::{Partition, Partitions, PartitionsError, SUBJECT_PREFIX};
