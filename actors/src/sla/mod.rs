//! The SlaActor: timekeeper of the SLA clocks and the gate into the outbox.
//!
//! Conversation actors hand their facts over here ([`Handover`]); this actor runs the
//! pure SLA rules (`convoy::sla`), builds the CRM records (`convoy::crm::records`) and the
//! conversation summary, and commits all of it — records, summary, the clocks' state —
//! in one outbox transaction (through the group-commit writer). It answers a handover
//! only once that commit is durable. A timer (`sla.tick`) emits warnings and breaches at
//! their deadlines, whether or not a receipt ever comes.

mod actor;

pub use actor::{
    DropPartitionClocks, GetSlaStats, Handover, HandoverRefused, HandoverStep, LoadPartitionClocks,
    NextDue, SlaActor, SlaSettings, SlaStats, SlaViews, StopSla, TickNow,
};
