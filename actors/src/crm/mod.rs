//! Convoy's side of the CRM contract (`convoy::crm`): the HTTP client and the
//! CrmBatchActor that delivers the outbox through it. The decisions — batching, adaptive
//! concurrency, what an answer means — live in the core; this folder does the I/O.

pub mod batcher;
pub mod client;

pub use batcher::{
    CrmBatchActor, CrmSettings, CrmStats, FlushAndStop, GetCrmStats, OutboxChanged, ReloadOutbox,
};
