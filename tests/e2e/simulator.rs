//! The simulator against the in-process emulator: what it planned is what the emulator's
//! ground truth (`GET /emulator/v1/truth`) shows — outcomes, agents, messages and their
//! final statuses, attachments — and the same seed plans the same run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use convoy::simulator::expect::MessageDirection;
use convoy::simulator::scenario::ShapeKind;
use convoy::simulator::{Scenario, SlaThresholds};
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

/// The fast example scenario: every shape (answered, attachment, transfer, abandon,
/// agentless with one or two sends) within about a second per conversation.
const FAST: &str = include_str!("../../config/examples/scenario-fast.toml");

#[actix_rt::test]
async fn twenty_simulated_conversations_end_as_planned_in_the_emulator() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // No per-token rate limit: the simulator polls each conversation every 50 ms, which
    // 20 conversations at once would push past the default 300 requests per minute.
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
    options.scenario = Scenario::from_toml(FAST).unwrap();
    options.conversations = 20;
    options.concurrency = 20;
    options.rate_per_second = Some(100.0);
    options.seed = 7;
    options.poll_interval = Duration::from_millis(50);
    // Generous: a loaded 2-core machine may run the emulator's ticks late.
    options.conversation_slack = Duration::from_secs(60);
    options.sla = SlaThresholds {
        delivery_ms: Some(50),
        read_ms: Some(150),
    };
    let simulator = Simulator::new(options);
    let (plan, planned) = simulator.plan().unwrap();
    // The seed is chosen so that the run covers every shape of the scenario.
    let shapes: HashSet<&str> = plan
        .conversations
        .iter()
        .map(|c| c.shape.as_str())
        .collect();
    assert_eq!(shapes.len(), 5, "{shapes:?}");

    let report = simulator.run().await.unwrap();
    assert_eq!(report.conversations_failed, 0, "{report}");
    assert_eq!(report.error_count, 0, "{report}");
    assert_eq!(report.conversations_completed, 20, "{report}");
    assert_eq!(report.unplanned_agent_messages, 0, "{report}");
    assert_eq!(report.expected_sla_breaches, planned.totals.sla_breaches);
    assert!(report.expected_sla_breaches > 0);
    assert_eq!(report.receipts_sent, planned.totals.receipts, "{report}");
    assert_eq!(
        report.agent_messages_seen + report.agentless_messages_sent,
        planned.totals.outbound_messages
    );
    assert_eq!(
        report.customer_messages_sent,
        planned.totals.customer_messages
    );

    let truth = truth(&emulator.base_url()).await;
    let conversations: HashMap<&str, &Value> = truth["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].as_str().unwrap(), c))
        .collect();
    let messages: HashMap<&str, (&str, &Value)> = conversations
        .iter()
        .flat_map(|(id, c)| {
            c["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |m| (m["id"].as_str().unwrap(), (*id, m)))
        })
        .collect();
    for expected in &report.expected.conversations {
        let id = expected
            .conversation_id
            .as_deref()
            .unwrap_or_else(|| panic!("conversation {} has no id", expected.index));
        let actual = conversations
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
        if expected.kind == ShapeKind::Inbound {
            // Nothing beyond the plan: every message of the conversation is an expected one.
            assert_eq!(
                actual["messages"].as_array().unwrap().len(),
                expected.messages.len(),
                "{label}: {actual}"
            );
        }
        for wanted in &expected.messages {
            let message_id = wanted.message_id.as_deref().unwrap_or_else(|| {
                panic!(
                    "{label}: {:?} message {} has no id",
                    wanted.direction, wanted.sequence
                )
            });
            let (landed_in, message) = messages
                .get(message_id)
                .unwrap_or_else(|| panic!("{label}: message {message_id} is not in the truth"));
            assert_eq!(
                Some(*landed_in),
                wanted.conversation_id.as_deref(),
                "{label}"
            );
            let direction = match wanted.direction {
                MessageDirection::Inbound => "inbound",
                MessageDirection::Outbound => "outbound",
            };
            assert_eq!(message["direction"], direction, "{label}: {message}");
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
            if wanted.direction == MessageDirection::Inbound {
                assert_eq!(message["participantId"], customer["id"], "{label}");
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
