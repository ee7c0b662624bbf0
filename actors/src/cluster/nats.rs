//! The connection to NATS and the frames stream, shared by both roles: connect (with the
//! client's own reconnects), and create-or-update the stream as the wire contract says
//! (`convoy::cluster::wire`). Either role may start first, so both ensure the stream;
//! the update is idempotent.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use convoy::cluster::STREAM_SUBJECTS;
use convoy::config::ClusterConfig;

/// How long one connect attempt may take before the start fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the cluster side could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot connect to NATS at {url}: {detail}")]
    Connect { url: String, detail: String },
    #[error("cannot create or update the JetStream stream {stream}: {detail}")]
    Stream { stream: String, detail: String },
}

/// A connected client and its JetStream context.
#[derive(Clone)]
pub struct Nats {
    pub client: async_nats::Client,
    pub jetstream: jetstream::Context,
}

impl std::fmt::Debug for Nats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nats").finish_non_exhaustive()
    }
}

impl Nats {
    /// Whether the client is connected now (for `/readyz`).
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }
}

/// Connects to `cluster.nats_url` (credentials are refused by `config check`, so the URL
/// is safe to log) under `name` (shown by `nats-server`'s monitoring).
pub async fn connect(config: &ClusterConfig, name: &str) -> Result<Nats, ClusterError> {
    let client = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(CONNECT_TIMEOUT)
        .connect(config.nats_url.as_str())
        .await
        .map_err(|error| ClusterError::Connect {
            url: config.nats_url.clone(),
            detail: error.to_string(),
        })?;
    let jetstream = jetstream::new(client.clone());
    Ok(Nats { client, jetstream })
}

/// The stream as the wire contract describes it.
pub fn stream_config(config: &ClusterConfig) -> stream::Config {
    stream::Config {
        name: config.stream.clone(),
        subjects: vec![STREAM_SUBJECTS.to_owned()],
        storage: stream::StorageType::File,
        num_replicas: usize::from(config.replicas),
        duplicate_window: config.duplicate_window,
        ..Default::default()
    }
}

/// Creates the stream, or brings an existing one to the configured settings.
pub async fn ensure_stream(nats: &Nats, config: &ClusterConfig) -> Result<(), ClusterError> {
    nats.jetstream
        .create_or_update_stream(stream_config(config))
        .await
        .map(|_| ())
        .map_err(|error| ClusterError::Stream {
            stream: config.stream.clone(),
            detail: error.to_string(),
        })
}
