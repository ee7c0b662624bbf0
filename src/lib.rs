//! Convoy's pure core: everything that decides, nothing that waits.
//!
//! - [`model`]: Genesys Cloud wire types exactly as sent;
//! - [`parse`]: frame text → classified, typed domain events, errors naming JSON paths;
//! - [`conversation`]: conversation state as a join of snapshots, the participant
//!   lifecycle, and the transitions a snapshot causes;
//! - [`config`]: the total, validated configuration;
//! - [`sla`]: the SLA clocks, their outcomes and business-hours calendars.
//! - [`bench`]: the corpus and the per-frame work `convoy bench core` measures.
//! - [`report`]: the QA report, one self-contained HTML page over a snapshot's figures.
//! - [`svg`]: deterministic SVG charts (line, grouped bars, counts over time) as text.
//!
//! This crate never performs I/O and never reads the clock: time is an argument. CI fails if
//! its normal dependencies include actix, awc or tokio.

pub mod admin_auth;
pub mod analytics;
pub mod bench;
pub mod canonical;
pub mod cluster;
pub mod config;
pub mod conversation;
pub mod crm;
pub mod duration;
pub mod emulator;
pub mod ids;
pub mod inspect;
pub mod model;
pub mod parse;
pub mod ratelimit;
pub mod recording;
pub mod report;
pub mod retry;
pub mod simulator;
pub mod sla;
pub mod sorted_map;
pub mod stream;
pub mod svg;
