//! The chaos run: simulated traffic for a fixed number of conversations through a real
//! `convoy run` child process, against an in-process emulator and `crm-sink`, while on a
//! seeded schedule
//! - the emulator drops every socket (no close frame), sends `v2.system.socket_closing`
//!   (then closes), expires or revokes every token (their channels die);
//! - the emulator duplicates and reorders published events all along (the same event
//!   twice; an event held back and sent after the next one on its channel, so an older
//!   snapshot arrives after a newer one);
//! - the CRM answers 5xx (some after storing the batch: "maybe delivered"), 429 with
//!   `Retry-After`, slowly, or is down for a stretch (every connection dropped unanswered);
//! - the `convoy run` process is killed with SIGKILL and restarted on the same outbox.
//!
//! At the end: Convoy's conversation states (`GET /conversations` of the last run) equal
//! the emulator's ground truth and its attributes are written back; the CRM holds every
//! expected record (de-duplicated by id) and every final summary; the SLA outcomes equal
//! those of a run without faults (see `support`'s module doc); nothing is pending or
//! dead-lettered in the outbox after a graceful stop; no run's stderr tells of a panic.
//!
//! The seed is printed; `CHAOS_SEED=N` replays it (the schedule, the emulator's ids and
//! fault draws, the sink's fault draws, the simulator's plan). `CHAOS_LONG=1` runs the long
//! variant: 300 conversations, a two-minute CRM outage, six kills.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(unix)]

mod support;

use std::time::{Duration, Instant};

use convoy::simulator::Scenario;
use convoy_actors::crm_sink::{CrmSink, CrmSinkOptions, FaultSettings};
use convoy_actors::demo::{differences_by, unwritten_attributes};
use convoy_actors::emulator::{Emulator, EmulatorOptions};
use convoy_actors::simulator::{Simulator, SimulatorOptions};
use convoy_actors::store::DurableStore;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;
use support::{admin_views, all_finished, daemon_files, sink_problems, truth, Convoy, Log, FAST};

/// One thing the schedule does.
#[derive(Debug, Clone, PartialEq)]
enum Fault {
    DropSockets,
    SocketClosing {
        grace_ms: u64,
    },
    ExpireTokens,
    RevokeTokens,
    /// The CRM's weather from now on.
    Crm(Weather),
    /// SIGKILL, `down_ms` without a daemon, then a new `convoy run`.
    Kill {
        down_ms: u64,
    },
}

/// How the CRM answers during a stretch.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Weather {
    Fair,
    /// 5xx, some after storing the batch, some connections dropped before handling.
    Errors,
    /// 429 with `Retry-After`.
    RateLimited {
        retry_after_secs: u64,
    },
    Slow {
        delay_ms: u64,
    },
    /// Every connection dropped without an answer.
    Down,
}

impl Weather {
    fn faults(self) -> FaultSettings {
        let fair = FaultSettings::default();
        match self {
            Weather::Fair => fair,
            Weather::Errors => FaultSettings {
                error_ratio: 0.4,
                reset_ratio: 0.1,
                reset_after_store_ratio: 0.1,
                ..fair
            },
            Weather::RateLimited { retry_after_secs } => FaultSettings {
                rate_limit_ratio: 0.6,
                retry_after_secs,
                ..fair
            },
            Weather::Slow { delay_ms } => FaultSettings { delay_ms, ..fair },
            Weather::Down => FaultSettings {
                reset_ratio: 1.0,
                ..fair
            },
        }
    }
}

/// The size of a run.
struct Variant {
    conversations: usize,
    rate_per_second: f64,
    /// Stream faults and kills fall within the first this-many milliseconds.
    horizon_ms: u64,
    drops: usize,
    closings: usize,
    expiries: usize,
    revocations: usize,
    kills: usize,
    /// Stretches of each bad CRM weather, and their length range (ms).
    crm_stretches: usize,
    stretch_ms: (u64, u64),
    /// One long CRM outage (ms), if any.
    outage_ms: Option<u64>,
    /// `sla.delivery` and `sla.read`: longer than any fault keeps a receipt unseen (see
    /// `support`'s module doc).
    receipts: &'static str,
    deadline: Duration,
}

const SHORT: Variant = Variant {
    conversations: 50,
    rate_per_second: 3.0,
    horizon_ms: 16_000,
    drops: 1,
    closings: 1,
    expiries: 1,
    revocations: 0,
    kills: 2,
    crm_stretches: 1,
    stretch_ms: (1_500, 3_500),
    outage_ms: None,
    receipts: "20s",
    deadline: Duration::from_secs(240),
};

const LONG: Variant = Variant {
    conversations: 300,
    rate_per_second: 2.0,
    horizon_ms: 150_000,
    drops: 5,
    closings: 3,
    expiries: 2,
    revocations: 2,
    kills: 6,
    crm_stretches: 2,
    stretch_ms: (3_000, 10_000),
    outage_ms: Some(120_000),
    // Kills, reconnects and token expiries overlap here, and each makes Convoy re-read a
    // few hundred conversations two at a time (receipts still awaited go first, after a
    // restart they are not known yet): some margin over the short run.
    receipts: "30s",
    deadline: Duration::from_secs(900),
};

/// The seeded schedule: (milliseconds after the start, fault), in time order. The CRM's
/// stretches follow one another (each ends in fair weather); everything else falls
/// anywhere in the horizon, so faults overlap (a kill during an outage, a drop during a
/// restart) as they would.
fn schedule(variant: &Variant, rng: &mut StdRng) -> Vec<(u64, Fault)> {
    let mut steps = Vec::new();
    let at = |rng: &mut StdRng, fault: Fault, steps: &mut Vec<(u64, Fault)>| {
        steps.push((rng.gen_range(1_000..variant.horizon_ms), fault));
    };
    for _ in 0..variant.drops {
        at(rng, Fault::DropSockets, &mut steps);
    }
    for _ in 0..variant.closings {
        let grace_ms = rng.gen_range(200..3_000);
        at(rng, Fault::SocketClosing { grace_ms }, &mut steps);
    }
    for _ in 0..variant.expiries {
        at(rng, Fault::ExpireTokens, &mut steps);
    }
    for _ in 0..variant.revocations {
        at(rng, Fault::RevokeTokens, &mut steps);
    }
    for _ in 0..variant.kills {
        let down_ms = rng.gen_range(100..3_000);
        at(rng, Fault::Kill { down_ms }, &mut steps);
    }
    let mut weather = Vec::new();
    for _ in 0..variant.crm_stretches {
        weather.push((
            Weather::Errors,
            rng.gen_range(variant.stretch_ms.0..variant.stretch_ms.1),
        ));
        let retry_after_secs = rng.gen_range(1..=2);
        weather.push((
            Weather::RateLimited { retry_after_secs },
            rng.gen_range(variant.stretch_ms.0..variant.stretch_ms.1),
        ));
        let delay_ms = rng.gen_range(200..1_500);
        weather.push((
            Weather::Slow { delay_ms },
            rng.gen_range(variant.stretch_ms.0..variant.stretch_ms.1),
        ));
        weather.push((
            Weather::Down,
            rng.gen_range(variant.stretch_ms.0..variant.stretch_ms.1),
        ));
    }
    if let Some(outage) = variant.outage_ms {
        weather.push((Weather::Down, outage));
    }
    weather.shuffle(rng);
    let mut clock = rng.gen_range(500..2_000);
    for (kind, length) in weather {
        steps.push((clock, Fault::Crm(kind)));
        clock += length;
        steps.push((clock, Fault::Crm(Weather::Fair)));
        clock += rng.gen_range(500..2_000);
    }
    steps.sort_by_key(|(at, _)| *at);
    steps
}

/// The schedule replays from its seed, and each variant's holds every kind of fault, each
/// CRM stretch ending in fair weather.
#[test]
fn the_schedule_is_a_function_of_the_seed_and_holds_every_fault() {
    for variant in [&SHORT, &LONG] {
        let steps = |seed| schedule(variant, &mut StdRng::seed_from_u64(seed));
        assert_eq!(steps(11), steps(11));
        assert_ne!(steps(11), steps(12));
        let steps = steps(11);
        let count = |wanted: fn(&Fault) -> bool| steps.iter().filter(|(_, f)| wanted(f)).count();
        assert_eq!(count(|f| *f == Fault::DropSockets), variant.drops);
        assert_eq!(
            count(|f| matches!(f, Fault::SocketClosing { .. })),
            variant.closings
        );
        assert_eq!(count(|f| *f == Fault::ExpireTokens), variant.expiries);
        assert_eq!(count(|f| *f == Fault::RevokeTokens), variant.revocations);
        assert_eq!(count(|f| matches!(f, Fault::Kill { .. })), variant.kills);
        let stretches = variant.crm_stretches * 4 + usize::from(variant.outage_ms.is_some());
        assert_eq!(count(|f| *f == Fault::Crm(Weather::Fair)), stretches);
        assert_eq!(
            count(|f| matches!(f, Fault::Crm(w) if *w != Weather::Fair)),
            stretches
        );
        assert!(steps.windows(2).all(|pair| pair[0].0 <= pair[1].0));
        let weather: Vec<&Weather> = steps
            .iter()
            .filter_map(|(_, f)| match f {
                Fault::Crm(w) => Some(w),
                _ => None,
            })
            .collect();
        assert!(weather
            .chunks(2)
            .all(|pair| pair[0] != &Weather::Fair && pair[1] == &Weather::Fair));
    }
}

async fn control(http: &awc::Client, emulator: &Emulator, path: &str) {
    let response = http
        .post(format!("{}/emulator/v1/{path}", emulator.base_url()))
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
}

#[actix_rt::test]
async fn chaos_run_loses_nothing_and_converges_on_the_truth() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let long = std::env::var("CHAOS_LONG").is_ok_and(|v| v == "1");
    let variant = if long { &LONG } else { &SHORT };
    let seed = support::seed("CHAOS_SEED");
    let mut rng = StdRng::seed_from_u64(seed);
    let steps = schedule(variant, &mut rng);
    println!(
        "chaos ({}): {} conversations; schedule: {steps:?}",
        if long { "long" } else { "short" },
        variant.conversations
    );
    let began = Instant::now();
    let http = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let emulator = Emulator::start(EmulatorOptions {
        rate_limit_per_minute: 0,
        heartbeat: Duration::from_secs(1),
        seed,
        ..EmulatorOptions::default()
    })
    .await
    .unwrap();
    let faults = http
        .put(format!("{}/emulator/v1/faults", emulator.base_url()))
        .send_json(&json!({ "duplicate_ratio": 0.1, "reorder_ratio": 0.1 }))
        .await
        .unwrap();
    assert!(faults.status().is_success(), "{}", faults.status());
    let sink = CrmSink::start(CrmSinkOptions {
        seed,
        ..CrmSinkOptions::default()
    })
    .await
    .unwrap();
    let files = daemon_files(&emulator, &sink, variant.receipts);
    let log = Log::default();
    let mut runs = 0;
    let mut child = Convoy::spawn(&files.config, runs, &log);

    let mut options = SimulatorOptions::new(
        &emulator.base_url(),
        emulator.client_id(),
        emulator.client_secret(),
    );
    options.scenario = Scenario::from_toml(FAST).unwrap();
    options.conversations = variant.conversations;
    options.concurrency = 10;
    options.rate_per_second = Some(variant.rate_per_second);
    options.seed = seed;
    options.poll_interval = Duration::from_millis(100);
    options.conversation_slack = Duration::from_secs(120);
    options.max_retries = 30;
    let simulation = actix_rt::spawn(async move { Simulator::new(options).run().await });

    let start = Instant::now();
    for (at, fault) in &steps {
        let due = start + Duration::from_millis(*at);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            actix_rt::time::sleep(wait).await;
        }
        println!(
            "{:>7.1} s: {fault:?} ({} records at the sink)",
            start.elapsed().as_secs_f64(),
            sink.records().len()
        );
        match fault {
            Fault::DropSockets => control(&http, &emulator, "sockets/drop").await,
            Fault::SocketClosing { grace_ms } => {
                control(
                    &http,
                    &emulator,
                    &format!("sockets/closing?grace_ms={grace_ms}"),
                )
                .await;
            }
            Fault::ExpireTokens => control(&http, &emulator, "tokens/expire").await,
            Fault::RevokeTokens => control(&http, &emulator, "tokens/revoke").await,
            Fault::Crm(weather) => sink.set_faults(weather.faults()).unwrap(),
            Fault::Kill { down_ms } => {
                child.kill_9();
                actix_rt::time::sleep(Duration::from_millis(*down_ms)).await;
                runs += 1;
                child = Convoy::spawn(&files.config, runs, &log);
            }
        }
    }
    sink.set_faults(FaultSettings::default()).unwrap();
    let report = simulation.await.unwrap().unwrap();
    println!(
        "{:>7.1} s: simulation done: {} conversations completed, {} failed, {} retries",
        start.elapsed().as_secs_f64(),
        report.conversations_completed,
        report.conversations_failed,
        report.retries
    );
    assert_eq!(report.conversations_failed, 0, "seed {seed}: {report}");

    let admin = child.admin(Duration::from_secs(60)).await;
    let settling = Instant::now();
    let mut reported = Instant::now();
    let mut last: Vec<String>;
    let settled = loop {
        child.assert_alive();
        let truth = truth(&http, &emulator).await;
        last = Vec::new();
        if !all_finished(&truth) {
            last.push("the emulator still has conversations going".to_owned());
        }
        let views = admin_views(&http, admin).await;
        last.extend(differences_by(|id| views.get(id).cloned(), &truth));
        last.extend(unwritten_attributes(&truth));
        last.extend(sink_problems(&sink, &truth));
        if last.is_empty() {
            break true;
        }
        if settling.elapsed() > variant.deadline {
            break false;
        }
        if reported.elapsed() > Duration::from_secs(10) {
            reported = Instant::now();
            println!(
                "{:>7.1} s: {} problems left, first: {:?}",
                start.elapsed().as_secs_f64(),
                last.len(),
                &last[..last.len().min(5)]
            );
        }
        actix_rt::time::sleep(Duration::from_millis(500)).await;
    };
    println!(
        "{:>7.1} s: settled {settled} after {:.1} s ({} records at the sink)",
        start.elapsed().as_secs_f64(),
        settling.elapsed().as_secs_f64(),
        sink.records().len()
    );
    // The last run ends gracefully: everything sent, nothing left or dead-lettered.
    let exit = child.terminate(Duration::from_secs(60)).await;
    assert!(
        settled,
        "seed {seed} (replay: CHAOS_SEED={seed}): {} problems, first: {:#?}\n{}\n{}",
        last.len(),
        &last[..last.len().min(20)],
        log.tail(80),
        log.save(&format!("convoy-chaos-{seed}.log"))
    );
    let panics = log.panics();
    assert!(
        panics.is_empty(),
        "seed {seed}: {panics:#?}\n{}",
        log.save(&format!("convoy-chaos-{seed}.log"))
    );
    assert_eq!(exit.code(), Some(0), "seed {seed}: {}", log.tail(40));
    let status = DurableStore::open(&files.outbox).unwrap().status().unwrap();
    assert_eq!(status.pending, 0, "seed {seed}: {status:?}");
    assert_eq!(status.dead_lettered, 0, "seed {seed}: {status:?}");
    assert_eq!(status.summaries_pending, 0, "seed {seed}: {status:?}");
    sink.stop().await;
    emulator.stop().await;
    println!(
        "chaos seed {seed}: {} conversations, {} runs of convoy, {:.1} s",
        variant.conversations,
        runs + 1,
        began.elapsed().as_secs_f64()
    );
}
