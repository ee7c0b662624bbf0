//! Convoy's imperative shell: actors, all I/O, the emulator server and the `convoy` binary's commands.

pub mod admin;
pub mod analytics;
pub mod app;
pub mod bench;
pub mod config_load;
pub mod conversation;
pub mod crm;
pub mod crm_sink;
pub mod demo;
pub mod emulator;
pub mod genesys;
pub mod logging;
pub mod outbox_cmd;
pub mod outbox_writer;
pub mod retry_schedule;
pub mod simulator;
pub mod sla;
pub mod store;
pub mod stream;
pub mod supervision;
pub mod telemetry;
pub mod token;
