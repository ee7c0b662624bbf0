//! The conversation simulator's pure half: what to simulate, decided before anything is
//! sent. The driver in `convoy_actors::simulator` performs it against a base URL.
//! - [`scenario`]: the TOML scenario format (a weighted mix of conversation shapes, agent
//!   timings, receipt behaviour) and its validation;
//! - [`plan`]: the deterministic plan drawn from a scenario and a seed;
//! - [`expect`]: the outcomes the plan implies, SLA breaches included;
//! - [`follow`]: what a snapshot of a played conversation says (agent messages, the end),
//!   and the start rate that keeps a plan inside a REST budget.
//!
//! No I/O, no clock, no OS randomness: the seed is the only source of variation.

pub mod expect;
pub mod follow;
pub mod plan;
pub mod scenario;

pub use expect::{
    ExpectedClock, ExpectedConversation, ExpectedOutcomes, SlaSubject, SlaThresholds,
};
pub use plan::{Plan, PlanOptions, PlannedConversation, ReceiptPlan, Script};
pub use scenario::{Scenario, ScenarioError};
