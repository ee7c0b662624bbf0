//! Issue 10's QA snapshots against the emulator: simulated traffic through the whole
//! daemon with CRM sync, then `convoy snapshot`'s own function (`run_snapshot`, what the
//! binary calls) while the daemon holds the outbox, so the SLA outcomes come through the
//! admin API. The snapshot must hold exactly the emulator's conversations (read over
//! several pages), reconcile clean with the aggregates, tally the same SLA outcomes as
//! the `sla.outcome` records the CRM received, and be byte-identical when taken again.
//! The same data read over an interval longer than seven days goes through a details job.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use convoy::analytics::output::Manifest;
use convoy::analytics::Snapshot;
use convoy_actors::analytics::cli::{run_snapshot, SnapshotArgs, SnapshotReport};
use convoy_actors::crm_sink::{CrmSink, CrmSinkOptions};
use convoy_actors::emulator::EmulatorOptions;
use convoy_actors::sla::GetSlaStats;
use convoy_actors::store::OutboxStatus;

use crate::daemon::Run;
use crate::support::eventually;

/// More than one details page (100 per page).
const CONVERSATIONS: usize = 130;

fn rfc3339(at: chrono::DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

async fn snapshot(run: &Run, from: &str, to: &str, out: &Path) -> SnapshotReport {
    // The admin API is where the daemon listens now (the config asked for port 0).
    let mut config = run.config.clone();
    config.admin.listen = run.daemon.admin.local_addr();
    let args = SnapshotArgs {
        from: from.to_owned(),
        to: to.to_owned(),
        out: Some(out.to_path_buf()),
        format: "json,csv".to_owned(),
        progress: false,
    };
    run_snapshot(&config, &args).await.unwrap()
}

fn files(folder: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(folder)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            (
                entry.file_name().to_string_lossy().into_owned(),
                std::fs::read(entry.path()).unwrap(),
            )
        })
        .collect()
}

fn read_snapshot(folder: &Path) -> Snapshot {
    serde_json::from_slice(&std::fs::read(folder.join("snapshot.json")).unwrap()).unwrap()
}

fn read_manifest(folder: &Path) -> Manifest {
    serde_json::from_slice(&std::fs::read(folder.join("manifest.json")).unwrap()).unwrap()
}

#[actix_rt::test]
async fn a_snapshot_of_simulated_traffic_equals_the_truth_and_the_crm_outcomes() {
    let sink = CrmSink::start(CrmSinkOptions::default()).await.unwrap();
    let toml = format!(
        "[sla]\ndelivery = \"3s\"\nread = \"3s\"\n[crm]\nendpoint = \"{}\"\nbatch_size = 50\nflush_interval = \"200ms\"\n[analytics]\nschedule = \"off\"\n",
        sink.base_url()
    );
    let run = Run::start(EmulatorOptions::default(), &toml).await;
    let started = Utc::now() - chrono::Duration::seconds(5);
    let report = run.simulate_at(CONVERSATIONS, 10, 20.0).await;
    assert_eq!(report.conversations_failed, 0, "{report}");
    run.assert_converges().await;
    // Every clock settled and every record (the outcomes among them) at the CRM.
    let admin = format!("http://{}/outbox", run.daemon.admin.local_addr());
    let drained = eventually(Duration::from_secs(180), || async {
        let sla = run.daemon.sla.send(GetSlaStats).await.unwrap();
        let outbox: OutboxStatus = run
            .http
            .get(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        sla.open_clocks == 0 && sla.outcomes > 0 && outbox.pending == 0
    })
    .await;
    assert!(
        drained,
        "the SLA clocks or the outbox never drained: {:?}",
        run.daemon.sla.send(GetSlaStats).await.unwrap()
    );
    // An interval that has ended: Genesys' data lake (the emulator's is current) has all
    // of it, so taking it again reads exactly the same data.
    let to = Utc::now() + chrono::Duration::seconds(2);
    while Utc::now() <= to {
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    let (from, to) = (rfc3339(started), rfc3339(to));

    let out = tempfile::tempdir().unwrap();
    let first = snapshot(&run, &from, &to, &out.path().join("a")).await;
    let snap = read_snapshot(&first.folder);
    assert_eq!(snap, first.snapshot, "snapshot.json holds what was built");

    // Rows: exactly the emulator's conversations, each once.
    let truth: BTreeSet<String> = run
        .truth()
        .await
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    // (The scenario adds conversations of its own: transfers, outbound messages.)
    assert!(
        truth.len() >= CONVERSATIONS,
        "{} conversations",
        truth.len()
    );
    let rows: Vec<String> = snap
        .conversations
        .iter()
        .map(|c| c.conversation_id.clone())
        .collect();
    assert_eq!(
        rows.iter().cloned().collect::<BTreeSet<_>>(),
        truth,
        "the snapshot's conversations are the emulator's"
    );
    assert_eq!(rows.len(), truth.len(), "no conversation twice");
    let offered: u64 = snap.queues.iter().map(|q| q.offered).sum();
    assert!(offered > 0, "queue rows were counted: {:?}", snap.queues);

    // Reconciliation against the aggregates.
    assert!(
        snap.trust.reconciliation.clean,
        "mismatches: {:?}",
        snap.trust.reconciliation.mismatches
    );
    assert!(snap.trust.data_availability_date.is_some());

    // Several pages of the details query, each recorded in the manifest.
    let manifest = read_manifest(&first.folder);
    let pages: Vec<u64> = manifest
        .queries
        .iter()
        .filter(|q| q.endpoint.ends_with("/details/query"))
        .map(|q| q.body["paging"]["pageNumber"].as_u64().unwrap())
        .collect();
    let expected_pages: Vec<u64> = (1..=truth.len() as u64 / 100 + 1).collect();
    assert_eq!(pages, expected_pages, "pages of 100 until a short one");
    assert!(manifest
        .queries
        .iter()
        .any(|q| q.endpoint.ends_with("/aggregates/query")));
    assert_eq!(manifest.row_counts["conversations"], truth.len() as u64);

    // SLA tallies: the outcomes in the outbox database equal the sla.outcome records the
    // CRM received, clock by clock and outcome by outcome.
    let mut at_crm: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut breached_at_crm = BTreeSet::new();
    for record in sink.records().iter().filter(|r| r.kind == "sla.outcome") {
        let clock = record
            .payload
            .field("clock")
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned();
        let outcome = record
            .payload
            .field("outcome")
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned();
        if outcome == "breached" {
            breached_at_crm.insert((record.conversation_id.clone(), clock.clone()));
        }
        *at_crm.entry((clock, outcome)).or_default() += 1;
    }
    let mut in_snapshot: BTreeMap<(String, String), u64> = BTreeMap::new();
    for row in &snap.sla {
        for (outcome, count) in [
            ("compliant", row.compliant),
            ("breached", row.breached),
            ("failed", row.failed),
            ("missing_receipt", row.missing_receipt),
            ("abandoned", row.abandoned),
        ] {
            if count > 0 {
                in_snapshot.insert((row.clock.clone(), outcome.to_owned()), count);
            }
        }
    }
    assert!(!at_crm.is_empty());
    assert_eq!(in_snapshot, at_crm);
    let breaches: BTreeSet<(String, String)> = snap
        .breaches
        .iter()
        .map(|b| (b.conversation_id.clone(), b.clock.clone()))
        .collect();
    assert_eq!(breaches, breached_at_crm);

    // The same data again: byte-identical files, the manifest included.
    assert_eq!(
        manifest.data_availability_date,
        Some(
            chrono::DateTime::parse_from_rfc3339(&to)
                .unwrap()
                .with_timezone(&Utc)
        ),
        "the whole interval was in the data lake"
    );
    let second = snapshot(&run, &from, &to, &out.path().join("b")).await;
    let (a, b) = (files(&first.folder), files(&second.folder));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, bytes) in &a {
        assert!(bytes == &b[name], "{name} differs between two snapshots");
    }

    // Longer than seven days: a details job up to the watermark, the query after it.
    let long_from = rfc3339(started - chrono::Duration::days(8));
    let long = snapshot(&run, &long_from, &to, &out.path().join("c")).await;
    let long_manifest = read_manifest(&long.folder);
    assert!(
        long_manifest
            .queries
            .iter()
            .any(|q| q.endpoint.ends_with("/details/jobs")),
        "{:?}",
        long_manifest.queries
    );
    let long_rows: BTreeSet<String> = long
        .snapshot
        .conversations
        .iter()
        .map(|c| c.conversation_id.clone())
        .collect();
    assert_eq!(long_rows, truth, "the job read the same conversations");
    assert!(long.snapshot.trust.reconciliation.clean);

    run.stop().await;
    sink.stop().await;
}

#[actix_rt::test]
async fn the_daemon_snapshots_the_previous_whole_interval_on_its_schedule() {
    use convoy_actors::analytics::GetAnalyticsStats;
    let out = tempfile::tempdir().unwrap();
    let toml = format!(
        "[analytics]\nschedule = \"1m\"\noutput_dir = \"{}\"\n",
        out.path().display()
    );
    let run = Run::start(EmulatorOptions::default(), &toml).await;
    // The first run covers the last whole minute at once.
    let taken = eventually(Duration::from_secs(60), || async {
        run.daemon
            .analytics
            .send(GetAnalyticsStats)
            .await
            .unwrap()
            .taken
            >= 1
    })
    .await;
    let stats = run.daemon.analytics.send(GetAnalyticsStats).await.unwrap();
    assert!(taken, "no scheduled snapshot: {stats:?}");
    assert_eq!(stats.failed, 0);
    let folder = stats.last_folder.unwrap();
    let manifest = read_manifest(&folder);
    let length = manifest.interval.to - manifest.interval.from;
    assert!(
        length >= chrono::Duration::minutes(1),
        "{:?}",
        manifest.interval
    );
    assert_eq!(
        manifest.interval.to.timestamp() % 60,
        0,
        "aligned to the minute"
    );
    assert_eq!(stats.covered_to, Some(manifest.interval.to));
    assert!(folder.starts_with(out.path()));
    run.stop().await;
}

#[actix_rt::test]
async fn a_failed_scheduled_snapshot_is_retried_and_its_interval_covered() {
    use convoy_actors::analytics::GetAnalyticsStats;
    let folder = tempfile::tempdir().unwrap();
    // The output folder cannot be created: a file is in the way.
    let out = folder.path().join("snapshots");
    std::fs::write(&out, b"in the way").unwrap();
    let toml = format!(
        "[analytics]\nschedule = \"1m\"\noutput_dir = \"{}\"\n",
        out.display()
    );
    let run = Run::start(EmulatorOptions::default(), &toml).await;
    let stats = || async { run.daemon.analytics.send(GetAnalyticsStats).await.unwrap() };
    let failed = eventually(Duration::from_secs(60), || async {
        stats().await.failed >= 1
    })
    .await;
    assert!(failed, "{:?}", stats().await);
    let after_failure = stats().await;
    assert_eq!(after_failure.taken, 0);
    assert_eq!(after_failure.covered_to, None, "nothing is marked covered");
    // The obstacle goes; the retry (30 s later) covers what failed.
    std::fs::remove_file(&out).unwrap();
    let taken = eventually(Duration::from_secs(120), || async {
        stats().await.taken >= 1
    })
    .await;
    let stats = stats().await;
    assert!(taken, "never retried: {stats:?}");
    let manifest = read_manifest(stats.last_folder.as_ref().unwrap());
    assert_eq!(stats.covered_to, Some(manifest.interval.to));
    assert_eq!(manifest.interval.to.timestamp() % 60, 0);
    run.stop().await;
}
