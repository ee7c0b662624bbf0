//! SLA outcomes end to end: the emulator, the daemon with small SLA thresholds and a CRM
//! (`crm-sink`, in process), driven by `config/examples/scenario-sla.toml`, whose planned
//! delays sit on both sides of every threshold with wide margins (receipts late, never,
//! failed, unread; answers late; queue waits abandoned early and late; agentless notices).
//! Every `sla.outcome` record at the CRM must equal the simulator's expectation (by
//! conversation, clock and subject), exactly one per clock, and the CRM's conversation
//! summaries must show the same tallies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use convoy::crm::CrmRecord;
use convoy::simulator::expect::{compare_sla, ExpectedOutcomes, SlaThresholds};
use convoy::simulator::Scenario;
use convoy::sla::{ClockKind, SlaOutcome};
use convoy_actors::app::{Daemon, RunOptions};
use convoy_actors::crm::GetCrmStats;
use convoy_actors::crm_sink::{CrmSink, CrmSinkOptions};
use convoy_actors::demo::{config_for, discard_private_store, tallies_json};
use convoy_actors::emulator::{Emulator, EmulatorOptions};
use convoy_actors::simulator::{Simulator, SimulatorOptions};
use convoy_actors::sla::GetSlaStats;

use crate::support::eventually;

const SCENARIO: &str = include_str!("../../config/examples/scenario-sla.toml");
/// With 12 conversations, this seed plays every shape of the scenario (the unit test
/// `the_sla_scenario_covers_every_outcome_with_wide_margins` checks the same plan).
const SEED: u64 = 3717;
const CONVERSATIONS: usize = 12;
const TICK: Duration = Duration::from_millis(200);
/// How late a timer may fire on a loaded 2-core machine; a breach waiting for its receipt
/// would be seconds late or never come.
const SCHEDULING_SLACK: Duration = Duration::from_millis(1_500);

/// The thresholds of the run, as `[sla]` would give them; every planned delay is at
/// least 900 ms away from a deciding boundary.
fn thresholds(no_read_receipt: &[&str]) -> SlaThresholds {
    SlaThresholds {
        answer_ms: 2_000,
        first_response_ms: 4_000,
        next_response_ms: 4_000,
        delivery_ms: 2_000,
        read_ms: 2_000,
        no_read_receipt: no_read_receipt.iter().map(|t| (*t).to_owned()).collect(),
        margin_ms: 900,
    }
}

struct SlaRun {
    emulator: Emulator,
    sink: CrmSink,
    daemon: Daemon,
    config: convoy::config::Config,
    expected: ExpectedOutcomes,
}

/// Starts the emulator, the sink and the daemon (CRM sync on, the thresholds of
/// [`thresholds`]), plays the scenario and returns the expectations with the ids the run
/// learned.
async fn play(no_read_receipt: &[&str]) -> SlaRun {
    let sla = thresholds(no_read_receipt);
    let emulator = Emulator::start(EmulatorOptions {
        rate_limit_per_minute: 0,
        ..EmulatorOptions::default()
    })
    .await
    .unwrap();
    let sink = CrmSink::start(CrmSinkOptions::default()).await.unwrap();
    let mut config = config_for(
        &emulator,
        "",
        &format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n[crm]\nendpoint = \"{}\"\n\
             [sla]\nfirst_response = \"4s\"\ndelivery = \"2s\"\nread = \"2s\"\n",
            sink.base_url()
        ),
    )
    .unwrap();
    // `sla.answer`, `sla.next_response`, `sla.tick` and `sla.no_read_receipt` as the
    // TOML keys of the same names give them.
    config.sla.answer = Duration::from_millis(sla.answer_ms);
    config.sla.next_response = Duration::from_millis(sla.next_response_ms);
    config.sla.tick = TICK;
    config.sla.no_read_receipt = no_read_receipt.iter().map(|t| (*t).to_owned()).collect();
    assert_eq!(config.sla.first_response.as_millis(), 4_000);
    assert_eq!(config.sla.delivery.as_millis(), 2_000);
    assert_eq!(config.sla.read.as_millis(), 2_000);

    let daemon = Daemon::start(&config, RunOptions::default()).await.unwrap();
    let ready = eventually(Duration::from_secs(60), || async {
        daemon.board.readiness_now().ready
    })
    .await;
    assert!(ready, "{:?}", daemon.board.readiness_now());

    let mut options = SimulatorOptions::new(
        &emulator.base_url(),
        emulator.client_id(),
        emulator.client_secret(),
    );
    options.scenario = Scenario::from_toml(SCENARIO).unwrap();
    options.conversations = CONVERSATIONS;
    options.concurrency = CONVERSATIONS;
    options.rate_per_second = Some(20.0);
    options.seed = SEED;
    options.sla = sla;
    options.poll_interval = Duration::from_millis(100);
    options.conversation_slack = Duration::from_secs(120);
    options.max_retries = 20;
    let report = Simulator::new(options).run().await.unwrap();
    assert_eq!(report.conversations_failed, 0, "{report}");
    assert_eq!(report.error_count, 0, "{report}");
    assert_eq!(report.expected.totals.sla_close_calls, 0, "{report}");
    SlaRun {
        emulator,
        sink,
        daemon,
        config,
        expected: report.expected,
    }
}

impl SlaRun {
    /// Waits until every expected outcome record is at the sink, then returns the
    /// records (or the last comparison's differences in the panic).
    async fn all_outcomes(&self) -> Vec<CrmRecord> {
        let arrived = eventually(Duration::from_secs(120), || async {
            compare_sla(&self.expected, &self.sink.records()).missing == 0
        })
        .await;
        let records = self.sink.records();
        assert!(
            arrived,
            "{:#?}",
            compare_sla(&self.expected, &records).differences
        );
        records
    }

    /// Waits until each conversation's summary at the sink shows its expected SLA tallies.
    async fn assert_summaries(&self) {
        let expected = self.expected.tallies_by_conversation();
        assert!(!expected.is_empty());
        let wanted: BTreeMap<String, serde_json::Value> = expected
            .iter()
            .map(|(id, tallies)| (id.clone(), tallies_json(tallies)))
            .collect();
        let stored = || -> BTreeMap<String, serde_json::Value> {
            wanted
                .keys()
                .map(|id| {
                    let sla = self
                        .sink
                        .conversation(id)
                        .map(|doc| doc.document["sla"].clone())
                        .unwrap_or_default();
                    (id.clone(), sla)
                })
                .collect()
        };
        let equal = eventually(Duration::from_secs(60), || async { stored() == wanted }).await;
        assert_eq!(stored(), wanted);
        assert!(equal);
    }

    async fn stop(self) {
        let crm = self.daemon.crm.clone().unwrap();
        let stats = crm.send(GetCrmStats).await.unwrap();
        assert_eq!(stats.records_dead_lettered, 0, "{stats:?}");
        self.daemon.shutdown().await;
        discard_private_store(&self.config);
        self.sink.stop().await;
        self.emulator.stop().await;
    }
}

fn instant(record: &CrmRecord, field: &str) -> DateTime<Utc> {
    record
        .payload
        .field(field)
        .as_ref()
        .and_then(|value| value.as_str())
        .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
        .map(|time| time.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("{field} of {record:?}"))
}

#[actix_rt::test]
async fn every_sla_outcome_at_the_crm_equals_the_expectation() {
    let run = play(&[]).await;
    let records = run.all_outcomes().await;
    let comparison = compare_sla(&run.expected, &records);
    assert_eq!(comparison.differences, Vec::<String>::new());
    assert_eq!(comparison.close_calls, 0);
    assert_eq!(comparison.actual, run.expected.totals.sla_outcomes);
    // Every outcome of every clock a simulated conversation can reach is in the run.
    let reached = |clock: ClockKind| -> Vec<SlaOutcome> {
        comparison.actual[&clock].keys().copied().collect()
    };
    use SlaOutcome::*;
    assert_eq!(reached(ClockKind::Answer), [Compliant, Breached, Abandoned]);
    assert_eq!(
        reached(ClockKind::Delivery),
        [Compliant, Breached, Failed, MissingReceipt]
    );
    assert_eq!(
        reached(ClockKind::Read),
        [Compliant, Breached, MissingReceipt]
    );

    // Breaches are the timer's: each is dated at its deadline and emitted within one tick
    // of it (plus scheduling slack on a loaded machine), not when — or if — the receipt
    // finally came.
    let breaches: Vec<&CrmRecord> = records.iter().filter(|r| r.kind == "sla.breach").collect();
    assert!(!breaches.is_empty());
    for breach in &breaches {
        let dated = instant(breach, "at") - instant(breach, "deadline");
        assert!(
            dated >= chrono::TimeDelta::zero() && dated.to_std().unwrap() <= TICK,
            "{breach:?}"
        );
        let emitted = instant(breach, "emittedAt") - instant(breach, "deadline");
        assert!(
            emitted >= chrono::TimeDelta::zero()
                && emitted.to_std().unwrap() <= TICK + SCHEDULING_SLACK,
            "breach emitted {emitted} after its deadline: {breach:?}"
        );
    }
    // A clock that ended breached or missing its receipt had its breach recorded too.
    for outcome in records.iter().filter(|r| {
        r.kind == "sla.outcome"
            && matches!(
                r.payload.field("outcome").as_ref().and_then(|o| o.as_str()),
                Some("breached" | "missing_receipt")
            )
    }) {
        let breach_id = outcome.id.replace("/outcome", "/breach");
        assert!(
            breaches.iter().any(|b| b.id == breach_id),
            "no breach record for {outcome:?}"
        );
    }

    run.assert_summaries().await;
    let sla = run.daemon.sla.send(GetSlaStats).await.unwrap();
    assert_eq!(sla.outcomes, comparison.matched as u64, "{sla:?}");
    run.stop().await;
}

#[actix_rt::test]
async fn a_messenger_type_without_read_receipts_gets_no_read_clock() {
    // The emulator's open messaging is the only channel it emulates: declared without
    // read receipts, as SMS would be, it gets delivery clocks only.
    let run = play(&["open"]).await;
    assert!(!run
        .expected
        .totals
        .sla_outcomes
        .contains_key(&ClockKind::Read));
    let records = run.all_outcomes().await;
    let comparison = compare_sla(&run.expected, &records);
    assert_eq!(comparison.differences, Vec::<String>::new());
    assert!(!comparison.actual.contains_key(&ClockKind::Read));
    assert!(comparison.actual.contains_key(&ClockKind::Delivery));
    run.assert_summaries().await;
    run.stop().await;
}
