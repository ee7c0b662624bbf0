//! The Notifications stream's decisions, as pure policies the StreamActor consults
//! (ARCHITECTURE.md §4, anchors.md §2.6): when the socket is idle or dead ([`liveness`]),
//! when to rotate to a fresh channel ([`rotation`]), how topics are spread over channels
//! and which ones Genesys refused ([`topics`]), and how WebSocket continuation frames are
//! put back together under caps ([`reassembly`]), which snapshot bodies are copies of one
//! just read ([`duplicates`]), and what bad input a link was sent ([`rejections`]).
//!
//! Owns decisions only. It never opens a socket, never sends a frame, never reads the
//! clock: every input is an observation with the time it was made, every output is what
//! the shell should do next.

pub mod duplicates;
pub mod liveness;
pub mod reassembly;
pub mod rejections;
pub mod rotation;
pub mod topics;

pub use liveness::{Liveness, LivenessDecision, LivenessPolicy, LivenessPolicyError};
pub use reassembly::{DataKind, FramePart, Reassembled, Reassembler, ReassemblyError};
pub use rejections::{Rejection, RejectionKind, Rejections};
pub use rotation::{
    rotation_margin, ChannelLease, PlannedRotation, RotationMargin, RotationReason,
    RotationSchedule,
};
pub use topics::{
    place_topic, plan_channels, subscription_verdict, RejectedTopic, SubscriptionVerdict,
    MAX_TOPICS_PER_CHANNEL,
};
