//! Issue 9's "the CRM sync loses nothing": the whole daemon against the emulator and an
//! in-process `crm-sink`, driven by the simulator, while the sink misbehaves.
//!
//! **What "every expected record" means here.** A fault-free run of the same seed is not a
//! reference (the simulator's timing, hence some SLA verdicts, differ from run to run), so
//! the expectation is derived from two independent sides and both must hold:
//! - *the emulator's truth*: for every conversation, a `participant.transition` record of
//!   each participant's final lifecycle and a `message.status` record of each message's
//!   final status; and a summary document that is `finished` with every participant's
//!   final lifecycle;
//! - *what Convoy accepted*: every unique record at the sink or in the dead letters was
//!   appended to the outbox (`OutboxGate::appended` bounds them: a fact derived again
//!   after its record left the outbox is appended again under the same id) — and each summary's SLA tallies equal the `sla.outcome` records of that
//!   conversation, clock by clock and outcome by outcome.
//!
//! The sink de-duplicates by record id, so "none twice after dedupe" is checked on its
//! unique list (and that the replays really happened, on its stats). Dead letters must be
//! empty unless the sink refused records (`reject_ratio`), and then they must be exactly
//! the refused records.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;
use std::time::Duration;

use convoy_actors::crm::{CrmStats, GetCrmStats};
use convoy_actors::crm_sink::{CrmSink, CrmSinkOptions, FaultSettings, SinkStats};
use convoy_actors::emulator::EmulatorOptions;
use convoy_actors::sla::{GetSlaStats, SlaStats};
use convoy_actors::store::OutboxStatus;
use serde_json::{json, Value};

use crate::daemon::Run;
use crate::support::eventually;

/// CRM settings that keep a faulty run short: small batches so there are many requests
/// to fault, a short flush, a 1 s backoff cap (an outage is noticed to have ended fast).
/// Receipt clocks of a finished conversation stay open until their deadline (a late
/// receipt may still come), so short receipt thresholds let every clock settle
/// (`missing_receipt`) within the test.
const CRM_KEYS: &str = "batch_size = 20\nflush_interval = \"200ms\"\nretry_max_delay = \"1s\"\nrequest_timeout = \"5s\"\n";

/// The daemon, its emulator and the CRM sink it syncs to.
struct SyncRun {
    run: Run,
    sink: CrmSink,
}

impl SyncRun {
    /// `extra_toml` follows the `[crm]` section (start it with a section header).
    async fn start(sink: CrmSinkOptions, extra_toml: &str) -> SyncRun {
        let sink = CrmSink::start(sink).await.unwrap();
        let toml = format!(
            "[sla]\ndelivery = \"3s\"\nread = \"3s\"\n[crm]\nendpoint = \"{}\"\n{CRM_KEYS}{extra_toml}",
            sink.base_url()
        );
        let run = Run::start(EmulatorOptions::default(), &toml).await;
        SyncRun { run, sink }
    }

    async fn crm_stats(&self) -> CrmStats {
        let crm = self.run.daemon.crm.as_ref().expect("CRM sync is on");
        crm.send(GetCrmStats).await.unwrap()
    }

    async fn sla_stats(&self) -> SlaStats {
        self.run.daemon.sla.send(GetSlaStats).await.unwrap()
    }

    /// `GET /outbox` on the admin API (the daemon holds the store).
    async fn outbox(&self) -> OutboxStatus {
        admin_json(&self.run, "/outbox").await
    }

    async fn simulate(&self, conversations: usize, seed: u64) {
        let report = self.run.simulate_at(conversations, seed, 20.0).await;
        assert_eq!(report.conversations_failed, 0, "{report}");
    }

    /// Waits until every conversation of the truth is finished and followed by Convoy,
    /// every clock settled, and the outbox empty (records and summaries) with nothing in
    /// flight; panics with the counts after a generous deadline.
    async fn wait_drained(&self) {
        self.run.assert_converges().await;
        let drained = eventually(Duration::from_secs(180), || async {
            let outbox = self.outbox().await;
            let crm = self.crm_stats().await;
            let sla = self.sla_stats().await;
            outbox.pending == 0
                && outbox.summaries_pending == 0
                && crm.in_flight == 0
                && crm.waiting_retry == 0
                && crm.summaries_pending == 0
                && sla.records_accepted > 0
                && sla.open_clocks == 0
        })
        .await;
        assert!(
            drained,
            "not drained: outbox {:?}, crm {:?}, sla {:?}",
            self.outbox().await,
            self.crm_stats().await,
            self.sla_stats().await
        );
        // The timer's last outcomes (a receipt's deadline) are counted as settled as soon
        // as they are computed; their records and the summaries that tally them land
        // right after: wait until the sink's summaries tally every outcome record.
        let truth = self.run.truth().await;
        let tallied = eventually(Duration::from_secs(60), || async {
            let outcomes = self
                .sink
                .records()
                .iter()
                .filter(|r| r.kind == "sla.outcome")
                .count() as u64;
            let in_summaries: u64 = truth
                .iter()
                .filter_map(|c| self.sink.conversation(c["id"].as_str()?))
                .map(|doc| {
                    doc.document["sla"]
                        .as_object()
                        .map(|clocks| {
                            clocks
                                .values()
                                .filter_map(Value::as_object)
                                .flat_map(|by| by.values())
                                .filter_map(Value::as_u64)
                                .sum::<u64>()
                        })
                        .unwrap_or(0)
                })
                .sum();
            let outbox = self.outbox().await;
            // (`>=`: with per-record rejections some outcome records are dead letters.)
            in_summaries >= outcomes && outbox.pending == 0 && outbox.summaries_pending == 0
        })
        .await;
        assert!(tallied, "summaries never tallied every sla.outcome record");
        // A finished conversation settles every clock (its outcome is final).
        let mut open = Vec::new();
        for conversation in self.run.truth().await {
            let id = conversation["id"].as_str().unwrap();
            let view: Value = admin_json(&self.run, &format!("/conversations/{id}")).await;
            if view["slaClocks"].as_array().is_some_and(|c| !c.is_empty()) {
                open.push(json!({"view": view, "truth": conversation}));
            }
        }
        assert!(
            open.is_empty(),
            "clocks open after the end: {}",
            Value::from(open)
        );
    }

    /// Every check of the module doc but the dead letters; returns the sink's unique
    /// record ids.
    async fn assert_every_expected_record(&self) -> BTreeSet<String> {
        let truth = self.run.truth().await;
        let records = self.sink.records();
        let ids: BTreeSet<String> = records.iter().map(|r| r.id.clone()).collect();
        assert_eq!(ids.len(), records.len(), "the sink holds a record twice");
        // Every record appended to the outbox is at the sink or a dead letter; a fact
        // derived again after its record left the outbox (a conversation rebuilt from
        // REST) is appended again under the same id, which the sink holds once.
        let appended = self.run.daemon.gate.appended();
        let dead = self.outbox().await.dead_lettered;
        assert!(
            ids.len() as u64 + dead <= appended && appended > 0,
            "unique records at the sink {} + dead letters {dead} vs records appended {appended}",
            ids.len()
        );
        let mut missing = Vec::new();
        for conversation in &truth {
            let id = conversation["id"].as_str().unwrap();
            for participant in conversation["participants"].as_array().unwrap() {
                let record = format!(
                    "{id}/participant/{}/{}",
                    participant["id"].as_str().unwrap(),
                    participant["lifecycle"].as_str().unwrap()
                );
                if !ids.contains(&record) {
                    missing.push(record);
                }
            }
            for message in conversation["messages"].as_array().unwrap() {
                if let Some(status) = message["status"].as_str() {
                    let record =
                        format!("{id}/message/{}/{status}", message["id"].as_str().unwrap());
                    if !ids.contains(&record) {
                        missing.push(record);
                    }
                }
            }
        }
        assert!(
            missing.is_empty(),
            "{} expected records missing, first: {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
        assert_final_summaries(&self.sink, &truth, &records);
        ids
    }

    async fn stop(self) {
        self.run.stop().await;
        self.sink.stop().await;
    }
}

/// Every conversation of the truth has a summary document at the sink that is finished,
/// shows each participant's final lifecycle, and tallies exactly the `sla.outcome` records
/// the sink holds for it.
fn assert_final_summaries(sink: &CrmSink, truth: &[Value], records: &[convoy::crm::CrmRecord]) {
    let mut outcomes: HashMap<&str, BTreeMap<(String, String), u64>> = HashMap::new();
    for record in records.iter().filter(|r| r.kind == "sla.outcome") {
        *outcomes
            .entry(record.conversation_id.as_str())
            .or_default()
            .entry((
                record
                    .payload
                    .field("clock")
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned(),
                record
                    .payload
                    .field("outcome")
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned(),
            ))
            .or_default() += 1;
    }
    for conversation in truth {
        let id = conversation["id"].as_str().unwrap();
        let document = sink
            .conversation(id)
            .unwrap_or_else(|| panic!("{id}: no summary at the sink"))
            .document;
        assert_eq!(document["finished"], true, "{id}: {document}");
        for participant in conversation["participants"].as_array().unwrap() {
            let mine = document["participants"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["id"] == participant["id"])
                .unwrap_or_else(|| panic!("{id}: participant missing in {document}"));
            assert_eq!(
                mine["lifecycle"], participant["lifecycle"],
                "{id}: {document}"
            );
        }
        let mut tallies = BTreeMap::new();
        for (clock, by_outcome) in document["sla"].as_object().unwrap() {
            for (outcome, count) in by_outcome.as_object().unwrap() {
                tallies.insert((clock.clone(), outcome.clone()), count.as_u64().unwrap());
            }
        }
        assert_eq!(
            tallies,
            outcomes.remove(id).unwrap_or_default(),
            "{id}: summary tallies vs sla.outcome records"
        );
    }
}

async fn admin_json<T: serde::de::DeserializeOwned>(run: &Run, path: &str) -> T {
    let mut response = run
        .http
        .get(format!("http://{}{path}", run.daemon.admin.local_addr()))
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().limit(64 * 1024 * 1024).await.unwrap()
}

/// The sink's dead letters as record ids (`GET /outbox/dead`).
async fn dead_letter_ids(run: &Run) -> BTreeSet<String> {
    let body: Value = admin_json(run, "/outbox/dead").await;
    body["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|letter| letter["record"]["id"].as_str().unwrap().to_owned())
        .collect()
}

fn sink_stats_line(stats: &SinkStats) -> String {
    serde_json::to_string(stats).unwrap()
}

/// The CRM misbehaves in every way at once for the first part of the run — 30 % 5xx,
/// 429 with `Retry-After`, connections dropped before and after the batch was stored,
/// slow answers — and is down entirely (every connection dropped) for about 25 s in the
/// middle. Nothing is lost, nothing is stored twice, nothing is dead-lettered, and the
/// "maybe delivered" batches were resent under their key and answered from the sink's
/// idempotency cache.
#[actix_rt::test]
async fn faults_and_an_outage_lose_nothing_and_dead_letter_nothing() {
    let faulty = FaultSettings {
        error_ratio: 0.3,
        rate_limit_ratio: 0.1,
        retry_after_secs: 1,
        delay_ms: 30,
        reset_ratio: 0.1,
        reset_after_store_ratio: 0.1,
    };
    let sync = SyncRun::start(
        CrmSinkOptions {
            faults: faulty,
            seed: 91,
            ..CrmSinkOptions::default()
        },
        "",
    )
    .await;
    let simulation = sync.simulate(40, 91);
    let chaos = async {
        // Let some traffic meet the mixed faults, then take the CRM down, then heal it
        // back into the mix, and finally clear the faults so the run can end.
        let seen = eventually(Duration::from_secs(60), || async {
            sync.sink.stats().faults.total() >= 10
        })
        .await;
        assert!(
            seen,
            "no faults met: {}",
            sink_stats_line(&sync.sink.stats())
        );
        sync.sink
            .set_faults(FaultSettings {
                reset_ratio: 1.0,
                ..FaultSettings::default()
            })
            .unwrap();
        actix_rt::time::sleep(Duration::from_secs(25)).await;
        sync.sink.set_faults(faulty).unwrap();
    };
    futures_util::future::join(simulation, chaos).await;
    sync.run.assert_converges().await;
    // The mix stays on until the replays and resets have demonstrably happened.
    let replayed = eventually(Duration::from_secs(60), || async {
        let stats = sync.sink.stats();
        stats.idempotent_replays > 0 && stats.faults.resets_after_store > 0
    })
    .await;
    sync.sink.set_faults(FaultSettings::default()).unwrap();
    sync.wait_drained().await;
    let stats = sync.sink.stats();
    assert!(
        replayed,
        "no idempotent replay: {}",
        sink_stats_line(&stats)
    );
    assert!(stats.faults.errors > 0 && stats.faults.rate_limited > 0);
    assert!(stats.faults.resets > 0 && stats.faults.delayed > 0);
    sync.assert_every_expected_record().await;
    let crm = sync.crm_stats().await;
    assert!(crm.retries > 0, "{crm:?}");
    assert_eq!(crm.records_dead_lettered, 0, "{crm:?}");
    assert_eq!(sync.outbox().await.dead_lettered, 0);
    assert!(dead_letter_ids(&sync.run).await.is_empty());
    sync.stop().await;
}

/// `--reject-ratio`: the sink answers 207 and refuses a seeded share of records one by
/// one. Exactly the refused records are dead letters; every other record arrived.
#[actix_rt::test]
async fn per_record_rejections_dead_letter_exactly_the_rejected_records() {
    let sync = SyncRun::start(
        CrmSinkOptions {
            reject_ratio: 0.2,
            seed: 92,
            ..CrmSinkOptions::default()
        },
        "",
    )
    .await;
    sync.simulate(30, 92).await;
    sync.wait_drained().await;
    // A conversation's last facts may still be on their way to the outbox when it first
    // reads empty, and a refused record becomes a dead letter only once its 207 answer is
    // back: wait until every refusal the sink made is a dead letter.
    let settled = eventually(Duration::from_secs(60), || async {
        dead_letter_ids(&sync.run).await.len() as u64 == sync.sink.stats().records_rejected
    })
    .await;
    let stats = sync.sink.stats();
    let dead = dead_letter_ids(&sync.run).await;
    assert!(
        settled,
        "{} dead letters, {}",
        dead.len(),
        sink_stats_line(&stats)
    );
    assert!(stats.records_rejected > 0, "{}", sink_stats_line(&stats));
    let stored = sync.assert_every_expected_record_but_rejected().await;
    assert_eq!(dead.len() as u64, stats.records_rejected);
    assert!(
        dead.is_disjoint(&stored),
        "a stored record is a dead letter"
    );
    assert_eq!(
        sync.crm_stats().await.records_dead_lettered,
        dead.len() as u64
    );
    sync.stop().await;
}

impl SyncRun {
    /// With per-record rejections, the records the truth implies may be dead letters
    /// instead of stored; everything Convoy accepted is one or the other, never both.
    async fn assert_every_expected_record_but_rejected(&self) -> BTreeSet<String> {
        let records = self.sink.records();
        let ids: BTreeSet<String> = records.iter().map(|r| r.id.clone()).collect();
        assert_eq!(ids.len(), records.len(), "the sink holds a record twice");
        let dead = dead_letter_ids(&self.run).await;
        let dead_letters = self.outbox().await.dead_lettered as usize;
        // A fact derived again after its record left the outbox is appended again under
        // the same id (the sink and the dead letters hold it once): an upper bound.
        let accepted = self.run.daemon.gate.appended() as usize;
        assert!(
            ids.len() + dead_letters <= accepted,
            "stored {} + dead-lettered {dead_letters} ({} distinct ids) vs accepted {accepted}; sink {}",
            ids.len(),
            dead.len(),
            sink_stats_line(&self.sink.stats())
        );
        let truth = self.run.truth().await;
        for conversation in &truth {
            let id = conversation["id"].as_str().unwrap();
            for participant in conversation["participants"].as_array().unwrap() {
                let record = format!(
                    "{id}/participant/{}/{}",
                    participant["id"].as_str().unwrap(),
                    participant["lifecycle"].as_str().unwrap()
                );
                assert!(
                    ids.contains(&record) || dead.contains(&record),
                    "{record} neither stored nor dead-lettered"
                );
            }
        }
        ids
    }
}

/// Another writer edits the CRM's conversation documents while Convoy upserts them: it
/// reads each document and writes it back under `If-Match` with a field Convoy does not
/// own. Convoy's conditional writes then meet 412s, which it resolves by reading,
/// merging and retrying: at the end every document carries both Convoy's final fields
/// and the foreign one.
#[actix_rt::test]
async fn foreign_edits_of_summaries_are_merged_and_kept() {
    let sync = SyncRun::start(CrmSinkOptions::default(), "").await;
    let done = Rc::new(Cell::new(false));
    let base = sync.sink.base_url();
    let editor = {
        let done = done.clone();
        let http = sync.run.http.clone();
        let base = base.clone();
        async move {
            let mut edits = 0u64;
            // At least a few rounds after the simulation ends, so late upserts meet edits too.
            let mut rounds_after = 0;
            while rounds_after < 5 {
                if done.get() {
                    rounds_after += 1;
                }
                let Ok(mut listing) = http.get(format!("{base}/_sink/conversations")).send().await
                else {
                    continue;
                };
                let Ok(documents) = listing.json::<Value>().limit(64 * 1024 * 1024).await else {
                    continue;
                };
                for stored in documents["conversations"].as_array().into_iter().flatten() {
                    let id = stored["id"].as_str().unwrap_or_default().to_owned();
                    edits += u64::from(foreign_edit(&http, &base, &id).await);
                }
                actix_rt::time::sleep(Duration::from_millis(100)).await;
            }
            edits
        }
    };
    let simulation = async {
        sync.simulate(30, 93).await;
        done.set(true);
    };
    let (edits, ()) = futures_util::future::join(editor, simulation).await;
    assert!(edits > 0, "the other writer never wrote");
    sync.wait_drained().await;
    // One last edit of every document, then Convoy has nothing more to write: the foreign
    // field is on every document, along with Convoy's final fields.
    let truth = sync.run.truth().await;
    for conversation in &truth {
        let id = conversation["id"].as_str().unwrap();
        assert!(foreign_edit(&sync.run.http, &base, id).await, "{id}");
    }
    sync.assert_every_expected_record().await;
    for conversation in &truth {
        let id = conversation["id"].as_str().unwrap();
        let document = sync.sink.conversation(id).unwrap().document;
        assert!(document["foreign"]["note"].is_string(), "{id}: {document}");
    }
    let crm = sync.crm_stats().await;
    assert!(crm.summary_conflicts_resolved > 0, "{crm:?}");
    assert!(sync.sink.stats().precondition_failures > 0);
    sync.stop().await;
}

/// GET a document and PUT it back under `If-Match` with a `foreign` field; whether the
/// write went through (a 412 means Convoy wrote in between: fine, try next round).
async fn foreign_edit(http: &awc::Client, base: &str, id: &str) -> bool {
    let Ok(mut response) = http.get(format!("{base}/conversations/{id}")).send().await else {
        return false;
    };
    if !response.status().is_success() {
        return false;
    }
    let Some(etag) = response
        .headers()
        .get("ETag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return false;
    };
    let Ok(mut document) = response.json::<Value>().limit(16 * 1024 * 1024).await else {
        return false;
    };
    document["foreign"] = json!({ "note": format!("edited by another writer at {etag}") });
    match http
        .put(format!("{base}/conversations/{id}"))
        .insert_header(("If-Match", etag))
        .send_json(&document)
        .await
    {
        Ok(response) => response.status().is_success(),
        Err(_) => false,
    }
}

/// `/readyz`: status and the outbox check's verdict.
async fn readyz(run: &Run) -> (u16, Value) {
    let mut response = run
        .http
        .get(format!("http://{}/readyz", run.daemon.admin.local_addr()))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    (response.status().as_u16(), body)
}

fn down() -> FaultSettings {
    FaultSettings {
        reset_ratio: 1.0,
        ..FaultSettings::default()
    }
}

/// With `outbox.max_records` at its lowest allowed value (1 000) and the CRM down, the
/// outbox fills up to about the cap and stops there: the stream stops reading, `/readyz`
/// fails its outbox check, nothing is dropped. Once the CRM is back, everything drains,
/// `/readyz` recovers, and every expected record arrives.
#[actix_rt::test]
async fn a_full_outbox_applies_back_pressure_and_drains_without_loss() {
    let sync = SyncRun::start(
        CrmSinkOptions {
            faults: down(),
            ..CrmSinkOptions::default()
        },
        "[outbox]\nmax_records = 1000\n",
    )
    .await;
    // More records than the cap: about 10 to 20 per conversation.
    let simulation = sync.run.simulate_at(150, 94, 20.0);
    let full = async {
        let full = eventually(Duration::from_secs(120), || async {
            let (status, body) = readyz(&sync.run).await;
            status == 503 && body["checks"]["outbox"]["ok"] == false
        })
        .await;
        let pending = sync.outbox().await.pending;
        (full, pending)
    };
    let (report, (full, pending_at_full)) = futures_util::future::join(simulation, full).await;
    assert_eq!(report.conversations_failed, 0, "{report}");
    assert!(
        full,
        "/readyz never failed on the outbox: {:?}",
        readyz(&sync.run).await
    );
    // The cap holds: commits already queued may land, but the outbox stays about the cap.
    // (The moment `/readyz` turned and the read of `/outbox` after it are not one atomic
    // observation, so the cap is judged on the settled count.)
    let pending = sync.outbox().await.pending;
    assert!(
        (1000..1500).contains(&pending),
        "pending {pending} (when /readyz turned: {pending_at_full})"
    );
    assert_eq!(sync.outbox().await.dead_lettered, 0);
    assert_eq!(sync.sink.stats().accepted, 0);
    sync.sink.set_faults(FaultSettings::default()).unwrap();
    sync.wait_drained().await;
    let recovered = eventually(Duration::from_secs(60), || async {
        readyz(&sync.run).await.0 == 200
    })
    .await;
    assert!(recovered, "{:?}", readyz(&sync.run).await);
    sync.assert_every_expected_record().await;
    assert_eq!(sync.outbox().await.dead_lettered, 0);
    sync.stop().await;
}

/// A graceful shutdown while the CRM is down leaves the unsent records in the outbox;
/// the next start on the same file sends them.
#[actix_rt::test]
async fn a_graceful_shutdown_with_the_crm_down_keeps_the_rest_for_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.redb");
    let outbox = format!("[outbox]\npath = {:?}\n", path.display().to_string());
    let sync = SyncRun::start(
        CrmSinkOptions {
            faults: down(),
            ..CrmSinkOptions::default()
        },
        &format!("{outbox}[shutdown]\ndeadline = \"3s\"\n"),
    )
    .await;
    sync.simulate(10, 95).await;
    sync.run.assert_converges().await;
    let accepted = eventually(Duration::from_secs(60), || async {
        sync.outbox().await.pending > 0
    })
    .await;
    assert!(accepted);
    let SyncRun { run, sink } = sync;
    run.stop().await;
    let pending = {
        let store = convoy_actors::store::DurableStore::open(&path).unwrap();
        let status = store.status().unwrap();
        assert!(status.pending > 0, "{status:?}");
        assert_eq!(status.dead_lettered, 0);
        store.pending_records(None, 100_000).unwrap()
    };
    assert_eq!(sink.stats().accepted, 0);
    // The CRM is back; a new daemon on the same outbox (and a fresh emulator) sends them.
    sink.set_faults(FaultSettings::default()).unwrap();
    let toml = format!(
        "[crm]\nendpoint = \"{}\"\n{CRM_KEYS}{outbox}",
        sink.base_url()
    );
    let run = Run::start(EmulatorOptions::default(), &toml).await;
    let ids: BTreeSet<String> = pending.iter().map(|r| r.record.id.clone()).collect();
    let sent = eventually(Duration::from_secs(120), || async {
        let held: BTreeSet<String> = sink.records().into_iter().map(|r| r.id).collect();
        ids.is_subset(&held)
    })
    .await;
    assert!(
        sent,
        "{} pending records, sink holds {}",
        ids.len(),
        sink.records().len()
    );
    let status: OutboxStatus = admin_json(&run, "/outbox").await;
    assert_eq!(status.dead_lettered, 0);
    run.stop().await;
    sink.stop().await;
}
