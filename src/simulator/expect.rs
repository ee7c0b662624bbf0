//! The expected outcomes of a plan: per conversation the customer's sender id, how the
//! conversation ends, every message with the status it should end in, and the SLA breaches
//! the planned receipt timings imply for given thresholds. Tests compare these with what
//! the emulator's ground truth shows and with what Convoy produced.
//!
//! SLA rules (the simulator's expectation, in plan time; a receipt planned within a few
//! milliseconds of a threshold may land on either side of it in a real run):
//! - delivery: an outbound message breaches when its `Delivered` receipt is planned later
//!   than `delivery_ms` after the send (`late`), fails (`failed`) or never comes (`never`);
//! - read: counted from the send as well: breached when `Read` is planned later than
//!   `read_ms` (`late`) or is never sent (`never`, including failed and unanswered messages).

use serde::{Deserialize, Serialize};

use super::plan::{Plan, PlannedConversation, ReceiptPlan, Script};
use super::scenario::{Outcome, ShapeKind};

/// SLA thresholds the expectations are computed for; `None` disables that SLA.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaThresholds {
    pub delivery_ms: Option<u64>,
    pub read_ms: Option<u64>,
}

/// Which SLA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlaKind {
    Delivery,
    Read,
}

/// Why the SLA is breached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreachReason {
    /// The receipt comes, but after the threshold.
    Late,
    /// The receipt never comes.
    Never,
    /// A `Failed` receipt comes instead of `Delivered`.
    Failed,
}

/// One expected SLA breach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedBreach {
    /// Index of the outbound message within the conversation (0-based, send order).
    pub outbound_index: usize,
    pub sla: SlaKind,
    pub reason: BreachReason,
    pub threshold_ms: u64,
    /// When the receipt is planned, counted from the send (`late` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt_after_ms: Option<u64>,
}

/// How the conversation should end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpectedOutcome {
    /// One agent answered, replied and wrapped up; everyone left.
    Answered,
    /// The customer left before any agent answered.
    Abandoned,
    /// The first agent transferred to a second, who finished the conversation.
    Transferred,
    /// Agentless outbound only: no agent, no routing.
    Agentless,
}

/// Direction of a message, as in `MessageData.direction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageDirection {
    Inbound,
    Outbound,
}

/// One message and the status it should end in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedMessage {
    pub direction: MessageDirection,
    /// Index within its direction (0-based, send order).
    pub sequence: usize,
    /// The text, when the simulator writes it (customer and agentless messages); agent
    /// replies are written by the emulator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    pub has_attachment: bool,
    /// Final `messageStatus`: `received` for inbound; for outbound the status the planned
    /// receipts leave (`sent`, `delivery-success`, `delivery-failed`, `read`).
    pub status: String,
    /// Receipts the simulator will post, in order (`Delivered`, `Read`, `Failed`).
    pub receipts: Vec<String>,
    /// The Genesys message id, filled in by the driver once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The conversation the message landed in, filled in by the driver. Usually the
    /// conversation's own id; a later agentless send may open a new conversation when the
    /// earlier one has already ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
}

/// Everything expected of one conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedConversation {
    pub index: usize,
    /// The customer's open-messaging sender id (`channel.from.id` / agentless `toAddress`).
    pub customer_id: String,
    pub shape: String,
    pub kind: ShapeKind,
    /// The Genesys conversation id, filled in by the driver once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    pub outcome: ExpectedOutcome,
    /// Whether every participant should have left by the end; `None` where the platform
    /// decides (agentless conversations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<bool>,
    /// Agent participants expected (answered 1, transfer 2, abandon and agentless 0).
    pub agent_participants: usize,
    pub messages: Vec<ExpectedMessage>,
    pub sla_breaches: Vec<ExpectedBreach>,
}

impl ExpectedConversation {
    /// The outbound messages in send order.
    pub fn outbound(&self) -> impl Iterator<Item = &ExpectedMessage> {
        self.messages
            .iter()
            .filter(|message| message.direction == MessageDirection::Outbound)
    }
}

/// Totals over the whole plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedTotals {
    pub conversations: usize,
    pub customer_messages: usize,
    pub outbound_messages: usize,
    /// Receipts the simulator will post (Delivered + Read + Failed).
    pub receipts: usize,
    /// Outbound messages that get no receipt at all.
    pub receipts_withheld: usize,
    /// Outbound messages that get a `Failed` receipt.
    pub receipts_failed: usize,
    pub sla_breaches: usize,
}

/// The file `--expect-out` writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedOutcomes {
    pub seed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
    pub sla: SlaThresholds,
    pub totals: ExpectedTotals,
    pub conversations: Vec<ExpectedConversation>,
}

impl ExpectedOutcomes {
    /// Derives the expectations of a plan under the given SLA thresholds.
    pub fn from_plan(plan: &Plan, sla: SlaThresholds) -> ExpectedOutcomes {
        let conversations: Vec<ExpectedConversation> = plan
            .conversations
            .iter()
            .map(|conversation| expect_conversation(conversation, sla))
            .collect();
        let mut totals = ExpectedTotals {
            conversations: conversations.len(),
            ..ExpectedTotals::default()
        };
        for conversation in &plan.conversations {
            if let Script::Inbound(script) = &conversation.script {
                totals.customer_messages += script.customer_messages.len();
            }
            for receipt in conversation.script.receipts() {
                totals.outbound_messages += 1;
                totals.receipts += receipt.receipts().len();
                match receipt {
                    ReceiptPlan::Never => totals.receipts_withheld += 1,
                    ReceiptPlan::Failed { .. } => totals.receipts_failed += 1,
                    ReceiptPlan::Delivered { .. } => {}
                }
            }
        }
        totals.sla_breaches = conversations.iter().map(|c| c.sla_breaches.len()).sum();
        ExpectedOutcomes {
            seed: plan.seed,
            scenario: plan.scenario.clone(),
            sla,
            totals,
            conversations,
        }
    }
}

fn outbound_message(
    sequence: usize,
    text: Option<String>,
    receipt: &ReceiptPlan,
) -> ExpectedMessage {
    ExpectedMessage {
        direction: MessageDirection::Outbound,
        sequence,
        text,
        has_attachment: false,
        status: receipt.final_status().to_owned(),
        receipts: receipt
            .receipts()
            .into_iter()
            .map(|(_, status)| status.to_owned())
            .collect(),
        message_id: None,
        conversation_id: None,
    }
}

fn expect_conversation(
    conversation: &PlannedConversation,
    sla: SlaThresholds,
) -> ExpectedConversation {
    let (outcome, ended, agent_participants, messages) = match &conversation.script {
        Script::Inbound(script) => {
            let (outcome, agents) = match script.routing.outcome {
                Outcome::Answered => (ExpectedOutcome::Answered, 1),
                Outcome::Abandon => (ExpectedOutcome::Abandoned, 0),
                Outcome::Transfer => (ExpectedOutcome::Transferred, 2),
            };
            let inbound = script
                .customer_messages
                .iter()
                .enumerate()
                .map(|(sequence, message)| ExpectedMessage {
                    direction: MessageDirection::Inbound,
                    sequence,
                    text: Some(message.text.clone()),
                    has_attachment: message.attachment.is_some(),
                    status: "received".to_owned(),
                    receipts: Vec::new(),
                    message_id: None,
                    conversation_id: None,
                });
            let outbound = script
                .receipts
                .iter()
                .enumerate()
                .map(|(sequence, receipt)| outbound_message(sequence, None, receipt));
            (
                outcome,
                Some(true),
                agents,
                inbound.chain(outbound).collect(),
            )
        }
        Script::Agentless(script) => {
            let messages = script
                .messages
                .iter()
                .zip(&script.receipts)
                .enumerate()
                .map(|(sequence, (message, receipt))| {
                    outbound_message(sequence, Some(message.text.clone()), receipt)
                })
                .collect();
            (ExpectedOutcome::Agentless, None, 0, messages)
        }
    };
    let sla_breaches = conversation
        .script
        .receipts()
        .iter()
        .enumerate()
        .flat_map(|(index, receipt)| breaches(index, receipt, sla))
        .collect();
    ExpectedConversation {
        index: conversation.index,
        customer_id: conversation.customer_id.clone(),
        shape: conversation.shape.clone(),
        kind: conversation.script.kind(),
        conversation_id: None,
        outcome,
        ended,
        agent_participants,
        messages,
        sla_breaches,
    }
}

/// The breaches one outbound message's receipt plan implies.
pub fn breaches(
    outbound_index: usize,
    receipt: &ReceiptPlan,
    sla: SlaThresholds,
) -> Vec<ExpectedBreach> {
    let breach = |sla, reason, threshold_ms, receipt_after_ms| ExpectedBreach {
        outbound_index,
        sla,
        reason,
        threshold_ms,
        receipt_after_ms,
    };
    let mut found = Vec::new();
    if let Some(threshold) = sla.delivery_ms {
        match *receipt {
            ReceiptPlan::Never => found.push(breach(
                SlaKind::Delivery,
                BreachReason::Never,
                threshold,
                None,
            )),
            ReceiptPlan::Failed { .. } => found.push(breach(
                SlaKind::Delivery,
                BreachReason::Failed,
                threshold,
                None,
            )),
            ReceiptPlan::Delivered { after_ms, .. } if after_ms > threshold => found.push(breach(
                SlaKind::Delivery,
                BreachReason::Late,
                threshold,
                Some(after_ms),
            )),
            ReceiptPlan::Delivered { .. } => {}
        }
    }
    if let Some(threshold) = sla.read_ms {
        match *receipt {
            ReceiptPlan::Delivered {
                after_ms,
                read_after_ms: Some(read_after),
            } => {
                let read_at = after_ms.saturating_add(read_after);
                if read_at > threshold {
                    found.push(breach(
                        SlaKind::Read,
                        BreachReason::Late,
                        threshold,
                        Some(read_at),
                    ));
                }
            }
            _ => found.push(breach(SlaKind::Read, BreachReason::Never, threshold, None)),
        }
    }
    found
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::simulator::plan::PlanOptions;
    use crate::simulator::scenario::Scenario;

    #[test]
    fn delivery_breaches_name_their_reason() {
        let sla = SlaThresholds {
            delivery_ms: Some(100),
            read_ms: None,
        };
        let on_time = ReceiptPlan::Delivered {
            after_ms: 100,
            read_after_ms: None,
        };
        assert!(breaches(0, &on_time, sla).is_empty());
        let late = ReceiptPlan::Delivered {
            after_ms: 101,
            read_after_ms: None,
        };
        assert_eq!(
            breaches(2, &late, sla),
            vec![ExpectedBreach {
                outbound_index: 2,
                sla: SlaKind::Delivery,
                reason: BreachReason::Late,
                threshold_ms: 100,
                receipt_after_ms: Some(101)
            }]
        );
        assert_eq!(
            breaches(0, &ReceiptPlan::Never, sla)[0].reason,
            BreachReason::Never
        );
        assert_eq!(
            breaches(0, &ReceiptPlan::Failed { after_ms: 1 }, sla)[0].reason,
            BreachReason::Failed
        );
    }

    #[test]
    fn read_sla_counts_from_the_send() {
        let sla = SlaThresholds {
            delivery_ms: None,
            read_ms: Some(100),
        };
        let read_in_time = ReceiptPlan::Delivered {
            after_ms: 40,
            read_after_ms: Some(60),
        };
        assert!(breaches(0, &read_in_time, sla).is_empty());
        let read_late = ReceiptPlan::Delivered {
            after_ms: 40,
            read_after_ms: Some(61),
        };
        assert_eq!(breaches(0, &read_late, sla)[0].receipt_after_ms, Some(101));
        let unread = ReceiptPlan::Delivered {
            after_ms: 1,
            read_after_ms: None,
        };
        assert_eq!(breaches(0, &unread, sla)[0].reason, BreachReason::Never);
    }

    #[test]
    fn no_thresholds_no_breaches() {
        let plan = Plan::generate(
            &Scenario::default(),
            &PlanOptions {
                conversations: 50,
                seed: 1,
                rate_per_second: None,
                customer_prefix: None,
            },
        );
        let expected = ExpectedOutcomes::from_plan(&plan, SlaThresholds::default());
        assert_eq!(expected.totals.sla_breaches, 0);
        assert_eq!(expected.totals.conversations, 50);
    }

    #[test]
    fn expectations_mirror_the_plan() {
        let plan = Plan::generate(
            &Scenario::default(),
            &PlanOptions {
                conversations: 200,
                seed: 4,
                rate_per_second: None,
                customer_prefix: Some("t".into()),
            },
        );
        let sla = SlaThresholds {
            delivery_ms: Some(150),
            read_ms: Some(400),
        };
        let expected = ExpectedOutcomes::from_plan(&plan, sla);
        let mut outbound = 0;
        for (planned, expected) in plan.conversations.iter().zip(&expected.conversations) {
            assert_eq!(planned.customer_id, expected.customer_id);
            assert_eq!(expected.outbound().count(), planned.script.receipts().len());
            outbound += planned.script.receipts().len();
            match (&planned.script, expected.outcome) {
                (Script::Inbound(script), outcome) => {
                    assert_eq!(expected.ended, Some(true));
                    let inbound = expected
                        .messages
                        .iter()
                        .filter(|m| m.direction == MessageDirection::Inbound)
                        .count();
                    assert_eq!(inbound, script.customer_messages.len());
                    let wanted = match script.routing.outcome {
                        Outcome::Answered => ExpectedOutcome::Answered,
                        Outcome::Abandon => ExpectedOutcome::Abandoned,
                        Outcome::Transfer => ExpectedOutcome::Transferred,
                    };
                    assert_eq!(outcome, wanted);
                }
                (Script::Agentless(_), outcome) => {
                    assert_eq!(outcome, ExpectedOutcome::Agentless);
                    assert_eq!(expected.agent_participants, 0);
                }
            }
        }
        assert_eq!(expected.totals.outbound_messages, outbound);
        assert!(expected.totals.sla_breaches > 0);
        // Every message without a Read receipt breaches the read SLA.
        let unread = expected
            .conversations
            .iter()
            .flat_map(|c| c.outbound())
            .filter(|m| m.status != "read")
            .count();
        let never_read = expected
            .conversations
            .iter()
            .flat_map(|c| &c.sla_breaches)
            .filter(|b| b.sla == SlaKind::Read && b.reason == BreachReason::Never)
            .count();
        assert_eq!(unread, never_read);
        let json = serde_json::to_value(&expected).unwrap();
        assert_eq!(json["sla"]["delivery_ms"], 150);
        let back: ExpectedOutcomes = serde_json::from_value(json).unwrap();
        assert_eq!(back, expected);
    }
}
