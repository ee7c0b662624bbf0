//! SIGTERM during load: the `convoy run` process drains and exits 0 within its shutdown
//! deadline. A separate test binary of the `convoy-actors` package, because only here does
//! cargo provide the path of the built `convoy` binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(unix)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use convoy::simulator::Scenario;
use convoy_actors::emulator::{Emulator, EmulatorOptions};
use convoy_actors::simulator::{Simulator, SimulatorOptions};

const FAST: &str = include_str!("../../config/examples/scenario-fast.toml");

#[actix_rt::test]
async fn sigterm_during_load_exits_zero_within_the_deadline() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let emulator = Emulator::start(EmulatorOptions {
        rate_limit_per_minute: 0,
        heartbeat: Duration::from_secs(1),
        ..EmulatorOptions::default()
    })
    .await
    .unwrap();
    let queues = emulator.queue_ids();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("convoy.toml");
    let mut file = std::fs::File::create(&config).unwrap();
    write!(
        file,
        "[genesys]\napi_base = \"{base}\"\nlogin_base = \"{base}\"\nclient_id = \"{id}\"\n\
         client_secret = \"{secret}\"\nqueues = {queues}\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n[shutdown]\ndeadline = \"10s\"\n[log]\nfilter = \"warn\"\n",
        base = emulator.base_url(),
        id = emulator.client_id(),
        secret = emulator.client_secret(),
        queues = serde_json::to_string(&queues).unwrap(),
    )
    .unwrap();
    drop(file);
    let mut child = Command::new(env!("CARGO_BIN_EXE_convoy"))
        .args(["run", "--config"])
        .arg(&config)
        // Relative default paths (outbox.path, analytics.output_dir) land in the test's own
        // folder, never in the source tree.
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // Load: conversations in flight while the signal arrives (the default 300 requests a
    // minute keeps attribute writes queued, so there is work to drain).
    let mut options = SimulatorOptions::new(
        &emulator.base_url(),
        emulator.client_id(),
        emulator.client_secret(),
    );
    options.scenario = Scenario::from_toml(FAST).unwrap();
    options.conversations = 40;
    options.concurrency = 20;
    options.seed = 31;
    options.conversation_slack = Duration::from_secs(60);
    let report = Simulator::new(options).run().await.unwrap();
    assert_eq!(report.conversations_failed, 0, "{report}");

    let signalled = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // The deadline is 10 s; allow generous slack for a loaded machine, then fail.
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if signalled.elapsed() > Duration::from_secs(40) {
            let _ = child.kill();
            panic!("convoy did not exit within 40 s of SIGTERM");
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(exit.code(), Some(0), "exit status {exit:?}");
    emulator.stop().await;
}
