//! Every metric the README documents is on `/metrics` as soon as the daemon has started,
//! before anything happened to count: dashboards and alerts see each family (at zero, or
//! `NaN` for the heartbeat age) from the first scrape. Histograms are the exception: a
//! seed would be a fake observation, so they appear with their first real one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use convoy_actors::app::{Daemon, RunOptions};
use convoy_actors::demo::{config_for, discard_private_store};
use convoy_actors::emulator::{Emulator, EmulatorOptions};

use crate::support::client;

const README: &str = include_str!("../../README.md");

/// The names in the README's metrics table (rows starting with `` | `convoy_ ``), but
/// its histograms.
fn documented_metrics() -> Vec<&'static str> {
    README
        .lines()
        .filter_map(|line| line.strip_prefix("| `convoy_"))
        .filter_map(|rest| rest.split_once('`'))
        .filter(|(_, row)| !row.trim_start().starts_with("| histogram"))
        .map(|(name, _)| name)
        .collect()
}

#[actix_rt::test]
async fn every_documented_metric_is_exported_right_after_start() {
    let documented = documented_metrics();
    assert!(documented.len() >= 30, "{documented:?}");
    let http = client();
    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let config = config_for(&emulator, "", "[admin]\nlisten = \"127.0.0.1:0\"\n").unwrap();
    let daemon = Daemon::start(&config, RunOptions::default()).await.unwrap();
    let mut response = http
        .get(format!("http://{}/metrics", daemon.admin.local_addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let text = String::from_utf8(
        response
            .body()
            .limit(16 * 1024 * 1024)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    let exported: std::collections::HashSet<&str> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .collect();
    let missing: Vec<String> = documented
        .iter()
        .map(|name| format!("convoy_{name}"))
        .filter(|name| !exported.contains(name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "documented but not exported at start: {missing:?}"
    );
    daemon.shutdown().await;
    discard_private_store(&config);
    emulator.stop().await;
}
