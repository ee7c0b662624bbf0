//! Shared helpers of the end-to-end tests: the rustls provider, an awc client, and
//! waiting on a condition with a generous deadline instead of sleeping and hoping.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

/// awc/rustls need exactly one process-wide crypto provider (deps.md trap 2).
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Logs when RUST_LOG asks for them (e.g. RUST_LOG=convoy_actors=debug); silent otherwise.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

pub fn client() -> awc::Client {
    install_crypto();
    awc::Client::builder()
        .timeout(Duration::from_secs(20))
        .finish()
}

/// Polls `condition` every 20 ms until it returns true or `deadline` passes; returns
/// whether it became true. Deadlines are generous: CI machines are small and loaded.
pub async fn eventually<F, Fut>(deadline: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = Instant::now() + deadline;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}
