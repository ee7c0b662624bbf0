//! Convoy's imperative shell: actors, all I/O, the emulator server and the `convoy` binary's commands.

pub mod admin;
pub mod analytics;
pub mod app;
pub mod bench;
pub mod clock;
pub mod cluster;
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
pub mod replay;
pub mod retry_schedule;
pub mod simulator;
pub mod sla;
pub mod store;
pub mod stream;
pub mod supervision;
pub mod telemetry;
pub mod token;

/// How long the HTTP servers Convoy ships (admin, emulator, crm-sink) keep an idle
/// connection open. Longer than a client's pool keeps one (awc: 15 s; many HTTP clients:
/// 30–60 s): with actix-web's default of 5 s a client could pick a pooled connection the
/// server was just closing, and the request failed with a disconnect (seen under load).
pub const SERVER_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(75);
