//! The simulator against the in-process emulator: what it planned is what the emulator's
//! ground truth (`GET /emulator/v1/truth`) shows — outcomes, agents, messages and their
//! final statuses, attachments — and the same seed plans the same run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use convoy::simulator::expect::{ExpectedOutcome, MessageDirection};
use convoy::simulator::SlaThresholds;
use convoy_actors::emulator::{Emulator, EmulatorOptions};
use convoy_actors::simulator::{Simulator, SimulatorOptions};
use serde_json::Value;

async fn truth(base_url: &str) -> Value {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let mut response = client
        .get(format!("{base_url}/emulator/v1/truth"))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    response.json().limit(64 * 1024 * 1024).await.unwrap()
}

#[actix_rt::test]
async fn twenty_simulated_conversations_end_as_planned_in_the_emulator() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // No per-token rate limit: the simulator polls each conversation every 50 ms.
    let emulator = Emulator::start(EmulatorOptions {
        rate_limit_per_minute: 0,
        ..EmulatorOptions::default()
    })
    .await
    .unwrap();
    let mut options = SimulatorOptions::new(
        &emulator.base_url(),
        emulator.client_id(),
        emulator.client_secret(),
    );
    options.conversations = 20;
    options.concurrency = 20;
    options.rate_per_second = Some(100.0);
    options.seed = 7;
    options.poll_interval = Duration::from_millis(50);
    // Generous: a loaded 2-core machine may run the emulator's ticks late.
    options.conversation_slack = Duration::from_secs(60);
    options.sla = SlaThresholds {
        delivery_ms: Some(100),
        read_ms: Some(300),
    };
    let simulator = Simulator::new(options);
    let (_, planned) = simulator.plan().unwrap();
    let report = simulator.run().await.unwrap();
    assert_eq!(report.conversations_failed, 0, "{report}");
    assert_eq!(report.error_count, 0, "{report}");
    assert_eq!(report.conversations_completed, 20, "{report}");
    assert_eq!(report.unplanned_agent_messages, 0, "{report}");
    assert_eq!(report.expected_sla_breaches, planned.totals.sla_breaches);
    assert_eq!(report.receipts_sent, planned.totals.receipts, "{report}");
    assert_eq!(
        report.agent_messages_seen + report.agentless_messages_sent,
        planned.totals.outbound_messages
    );
    // The run covers the shapes the default mix is made of.
    let outcomes: Vec<ExpectedOutcome> = report
        .expected
        .conversations
        .iter()
        .map(|c| c.outcome)
        .collect();
    assert!(
        outcomes.contains(&ExpectedOutcome::Answered),
        "{outcomes:?}"
    );
    assert!(
        outcomes.contains(&ExpectedOutcome::Agentless),
        "{outcomes:?}"
    );

    let truth = truth(&emulator.base_url()).await;
    let by_id: HashMap<&str, &Value> = truth["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].as_str().unwrap(), c))
        .collect();
    for expected in &report.expected.conversations {
        let id = expected
            .conversation_id
            .as_deref()
            .unwrap_or_else(|| panic!("conversation {} has no id", expected.index));
        let actual = by_id
            .get(id)
            .unwrap_or_else(|| panic!("conversation {id} is not in the truth"));
        let label = format!("conversation {} ({}, {id})", expected.index, expected.shape);
        if let Some(ended) = expected.ended {
            assert_eq!(actual["ended"], ended, "{label}: {actual}");
        }
        let participants = actual["participants"].as_array().unwrap();
        let agents = participants
            .iter()
            .filter(|p| p["purpose"] == "agent")
            .count();
        assert_eq!(agents, expected.agent_participants, "{label}: {actual}");
        let customer = participants
            .iter()
            .find(|p| p["purpose"] == "customer")
            .unwrap_or_else(|| panic!("{label}: no customer"));
        let messages = actual["messages"].as_array().unwrap();
        for (direction, wire) in [
            (MessageDirection::Inbound, "inbound"),
            (MessageDirection::Outbound, "outbound"),
        ] {
            let mut actual_messages: Vec<&Value> =
                messages.iter().filter(|m| m["direction"] == wire).collect();
            actual_messages.sort_by_key(|m| m["time"].as_str().unwrap_or_default().to_owned());
            let wanted: Vec<_> = expected
                .messages
                .iter()
                .filter(|m| m.direction == direction)
                .collect();
            assert_eq!(
                actual_messages.len(),
                wanted.len(),
                "{label}: {wire} messages {actual}"
            );
            for wanted in wanted {
                let id = wanted.message_id.as_deref().unwrap_or_else(|| {
                    panic!("{label}: {wire} message {} has no id", wanted.sequence)
                });
                let message = actual_messages
                    .iter()
                    .find(|m| m["id"] == id)
                    .unwrap_or_else(|| panic!("{label}: message {id} missing: {actual}"));
                assert_eq!(
                    message["status"],
                    wanted.status.as_str(),
                    "{label}: {message}"
                );
                if let Some(text) = &wanted.text {
                    assert_eq!(message["text"], text.as_str(), "{label}");
                }
                let has_media = message["media"].as_array().is_some_and(|m| !m.is_empty());
                assert_eq!(has_media, wanted.has_attachment, "{label}: {message}");
                if direction == MessageDirection::Inbound {
                    assert_eq!(message["participantId"], customer["id"], "{label}");
                }
            }
        }
    }
    emulator.stop().await;
}

#[test]
fn the_same_seed_plans_the_same_run() {
    let options = |seed| {
        let mut options = SimulatorOptions::new("http://127.0.0.1:9", "id", "secret");
        options.conversations = 50;
        options.seed = seed;
        options
    };
    let (plan_a, expected_a) = Simulator::new(options(3)).plan().unwrap();
    let (plan_b, expected_b) = Simulator::new(options(3)).plan().unwrap();
    assert_eq!(plan_a, plan_b);
    assert_eq!(expected_a, expected_b);
    let (plan_c, _) = Simulator::new(options(4)).plan().unwrap();
    assert_ne!(plan_a, plan_c);
}
