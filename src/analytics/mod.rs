//! QA analytics snapshots, pure: the typed Genesys analytics responses ([`wire`]), the
//! plan that reads every detail row of an interval ([`plan`]), the snapshot built from
//! detail rows, aggregates and Convoy's stored SLA outcomes ([`build`]), its model
//! ([`model`]) and its canonical files ([`output`]).
//!
//! No I/O and no clock: the shell (`convoy snapshot`, the AnalyticsActor) sends the
//! requests the plan asks for, feeds the answers back, and writes the files it is given.

pub mod build;
pub mod model;
pub mod output;
pub mod plan;
pub mod report_data;
pub mod schedule;
pub mod wire;

pub use model::Snapshot;
