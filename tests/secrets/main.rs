//! Issue 11's "no secret in any output": a full scenario (emulator, two CRM sinks, two
//! daemons, simulated conversations, token refreshes, CRM 401s) logged at `trace` in text
//! and JSON into a buffer, which must contain none of the credentials that were in play:
//! the OAuth client secret, every bearer token the emulator issued, the CRM password,
//! bearer token and the ones the sink expected — raw, or base64-encoded as in a Basic
//! `Authorization` header.
//!
//! Its own test binary: the subscriber is process-wide and must see every thread (actix
//! arbiters, the outbox writer, server workers), which the e2e binary's shared subscriber
//! would not allow.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use convoy::config::Secret;
use convoy::simulator::Scenario;
use convoy_actors::app::{Daemon, RunOptions};
use convoy_actors::crm_sink::{CrmSink, CrmSinkOptions, SinkAuth};
use convoy_actors::demo::{config_for, discard_private_store};
use convoy_actors::emulator::{Emulator, EmulatorOptions};
use convoy_actors::simulator::{Simulator, SimulatorOptions};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

const FAST: &str = include_str!("../../config/examples/scenario-fast.toml");
const CLIENT_SECRET: &str = "emu-client-secret-9f8e7d6c5b4a";
const CRM_USER: &str = "convoy-crm";
const CRM_PASSWORD: &str = "crm-basic-password-1a2b3c";
const CRM_RIGHT_TOKEN: &str = "crm-expected-bearer-4d5e6f";
const CRM_WRONG_TOKEN: &str = "crm-stale-bearer-7a8b9c";

/// Everything every subscriber layer wrote.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

fn install_capture() -> Captured {
    let captured = Captured::default();
    tracing_subscriber::registry()
        .with(EnvFilter::new("trace"))
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(captured.clone()),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_writer(captured.clone()),
        )
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    captured
}

/// Standard base64 with padding: how a Basic `Authorization` header carries `user:pass`.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

async fn eventually<F, Fut>(deadline: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + deadline;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() > until {
            return false;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every access token the emulator holds now.
fn live_tokens(emulator: &Emulator) -> Vec<String> {
    emulator.shared().platform.lock().unwrap().access_tokens()
}

#[actix_rt::test]
async fn a_trace_level_run_prints_no_credential() {
    let captured = install_capture();
    let emulator = Emulator::start(EmulatorOptions {
        client_secret: CLIENT_SECRET.to_owned(),
        // Short-lived tokens: the daemons and the simulator refresh them during the run.
        token_ttl: Duration::from_secs(4),
        rate_limit_per_minute: 0,
        ..EmulatorOptions::default()
    })
    .await
    .unwrap();

    // Collect every token while the run goes: the emulator forgets expired ones.
    let tokens = Arc::new(Mutex::new(BTreeSet::new()));
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    {
        let tokens = Arc::clone(&tokens);
        let sampling = Arc::clone(&sampling);
        let shared = emulator.shared().clone();
        actix_rt::spawn(async move {
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                let now = shared.platform.lock().unwrap().access_tokens();
                tokens.lock().unwrap().extend(now);
                actix_rt::time::sleep(Duration::from_millis(10)).await;
            }
        });
    }

    let good_sink = CrmSink::start(CrmSinkOptions {
        auth: SinkAuth::Basic {
            user: CRM_USER.to_owned(),
            password: Secret::new(CRM_PASSWORD.to_owned()),
        },
        ..CrmSinkOptions::default()
    })
    .await
    .unwrap();
    let refusing_sink = CrmSink::start(CrmSinkOptions {
        auth: SinkAuth::Bearer(Secret::new(CRM_RIGHT_TOKEN.to_owned())),
        ..CrmSinkOptions::default()
    })
    .await
    .unwrap();
    let crm = "batch_size = 5\nflush_interval = \"100ms\"\nretry_max_delay = \"1s\"\n";
    let good = config_for(
        &emulator,
        "",
        &format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n[crm]\nendpoint = \"{}\"\nauth = \"basic\"\n\
             username = \"{CRM_USER}\"\npassword = \"{CRM_PASSWORD}\"\n{crm}",
            good_sink.base_url()
        ),
    )
    .unwrap();
    // The second daemon holds a stale CRM token: every CRM call is a 401 (retried).
    let stale = config_for(
        &emulator,
        "write_back = \"off\"",
        &format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n[crm]\nendpoint = \"{}\"\nauth = \"bearer\"\n\
             token = \"{CRM_WRONG_TOKEN}\"\n{crm}",
            refusing_sink.base_url()
        ),
    )
    .unwrap();
    let good_daemon = Daemon::start(&good, RunOptions::default()).await.unwrap();
    let stale_daemon = Daemon::start(&stale, RunOptions::default()).await.unwrap();
    let ready = eventually(Duration::from_secs(60), || async {
        good_daemon.board.readiness_now().ready && stale_daemon.board.readiness_now().ready
    })
    .await;
    assert!(ready, "{:?}", good_daemon.board.readiness_now());

    let mut options = SimulatorOptions::new(
        &emulator.base_url(),
        emulator.client_id(),
        emulator.client_secret(),
    );
    options.scenario = Scenario::from_toml(FAST).unwrap();
    options.conversations = 4;
    options.concurrency = 4;
    options.rate_per_second = Some(20.0);
    options.seed = 11;
    options.poll_interval = Duration::from_millis(100);
    options.conversation_slack = Duration::from_secs(60);
    options.max_retries = 20;
    let simulation = actix_rt::spawn(async move { Simulator::new(options).run().await });

    // Tokens also die early: every holder gets a 401 and logs in again.
    actix_rt::time::sleep(Duration::from_secs(2)).await;
    let expired = awc::Client::default()
        .post(format!("{}/emulator/v1/tokens/expire", emulator.base_url()))
        .send()
        .await
        .unwrap();
    assert!(expired.status().is_success());

    let report = simulation.await.unwrap().unwrap();
    assert_eq!(report.conversations_failed, 0, "{report}");
    let synced = eventually(Duration::from_secs(60), || async {
        good_sink.stats().accepted > 0 && refusing_sink.stats().unauthorized > 0
    })
    .await;
    assert!(
        synced,
        "good sink {:?}, refusing sink {:?}",
        good_sink.stats(),
        refusing_sink.stats()
    );

    good_daemon.shutdown().await;
    stale_daemon.shutdown().await;
    discard_private_store(&good);
    discard_private_store(&stale);
    tokens.lock().unwrap().extend(live_tokens(&emulator));
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    good_sink.stop().await;
    refusing_sink.stop().await;
    emulator.stop().await;

    let tokens = tokens.lock().unwrap().clone();
    assert!(
        tokens.len() >= 3,
        "the run should have issued tokens to two daemons, the simulator and again after \
         the expiry: {}",
        tokens.len()
    );
    let mut forbidden: Vec<(String, String)> = vec![
        ("the OAuth client secret".into(), CLIENT_SECRET.into()),
        ("the CRM password".into(), CRM_PASSWORD.into()),
        ("the CRM bearer token".into(), CRM_WRONG_TOKEN.into()),
        ("the sink's expected token".into(), CRM_RIGHT_TOKEN.into()),
        (
            "the CRM Basic credentials".into(),
            base64(format!("{CRM_USER}:{CRM_PASSWORD}").as_bytes()),
        ),
        (
            "the OAuth Basic credentials".into(),
            base64(format!("{}:{CLIENT_SECRET}", good.genesys.client_id).as_bytes()),
        ),
    ];
    forbidden.extend(
        tokens
            .iter()
            .map(|token| ("an emulator access token".to_owned(), token.clone())),
    );
    let output = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(
        output.len() > 100_000 && output.contains("TRACE"),
        "the capture should hold a trace-level run: {} bytes",
        output.len()
    );
    let mut leaks = Vec::new();
    for (what, value) in &forbidden {
        if let Some(at) = output.find(value.as_str()) {
            let line_start = output[..at].rfind('\n').map_or(0, |i| i + 1);
            let line_end = output[at..].find('\n').map_or(output.len(), |i| at + i);
            let line: String = output[line_start..line_end].chars().take(400).collect();
            leaks.push(format!("{what} in: {line}"));
        }
    }
    assert!(
        leaks.is_empty(),
        "{} leaks in {} bytes of trace output:\n{}",
        leaks.len(),
        output.len(),
        leaks.join("\n")
    );
}
