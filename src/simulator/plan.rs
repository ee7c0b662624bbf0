//! The deterministic simulation plan: from a scenario, a conversation count, a rate and a
//! seed, exactly which conversations run, when they start, what the customer sends, how the
//! synthetic agents behave, and what happens to every outbound message's receipts. Same
//! inputs, same plan — and conversation `i` is planned from `(seed, i)` alone, so the plan
//! of 20 conversations is the first 20 of the plan of 200.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::scenario::{Outcome, ReceiptBehaviour, Scenario, Shape, ShapeKind, Span};

/// Inbound `metadata` keys the emulator reads to drive its synthetic agents per
/// conversation (real Genesys ignores them).
pub const META_ANSWER_AFTER_MS: &str = "convoy.sim.answerAfterMs";
pub const META_REPLY_AFTER_MS: &str = "convoy.sim.replyAfterMs";
pub const META_AGENT_REPLIES: &str = "convoy.sim.agentReplies";
pub const META_WRAPUP_AFTER_MS: &str = "convoy.sim.wrapupAfterMs";
pub const META_OUTCOME: &str = "convoy.sim.outcome";

/// What the plan is generated from (besides the scenario).
#[derive(Debug, Clone, PartialEq)]
pub struct PlanOptions {
    pub conversations: usize,
    pub seed: u64,
    /// Conversations started per second; `None` (or not above 0) starts them all at once
    /// (subject to the driver's concurrency).
    pub rate_per_second: Option<f64>,
    /// Customer ids are `<prefix>-<index>@sim.convoy.test`; defaults to `sim-<seed>`.
    pub customer_prefix: Option<String>,
}

/// The whole run, one entry per conversation in start order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub seed: u64,
    pub scenario: Option<String>,
    pub conversations: Vec<PlannedConversation>,
}

/// One conversation of the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedConversation {
    pub index: usize,
    /// The customer's open-messaging sender id (`channel.from.id`, idType Email).
    pub customer_id: String,
    pub shape: String,
    /// When the conversation starts, counted from the start of the run.
    pub start_after_ms: u64,
    pub script: Script,
}

/// What happens in a conversation, by kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Script {
    Inbound(InboundScript),
    Agentless(AgentlessScript),
    Voice(VoiceScript),
}

/// A voice call routed to agents, transcribed in real time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoiceScript {
    /// `agent_replies` counts talk turns: the customer speaks, the agent answers, each
    /// utterance published on the call's transcription topic.
    pub routing: RoutingPlan,
}

impl VoiceScript {
    /// Utterances the emulator transcribes: two per talk turn of an answered call.
    pub fn utterances(&self) -> u64 {
        match self.routing.outcome {
            Outcome::Abandon => 0,
            Outcome::Answered | Outcome::Transfer => u64::from(self.routing.agent_replies) * 2,
        }
    }
}

/// An inbound open-messaging conversation routed to agents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboundScript {
    pub customer_messages: Vec<CustomerMessage>,
    pub routing: RoutingPlan,
    /// One entry per expected agent reply, in order.
    pub receipts: Vec<ReceiptPlan>,
}

/// Agentless outbound messages to one customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentlessScript {
    pub messages: Vec<AgentlessMessage>,
    /// One entry per message, in order.
    pub receipts: Vec<ReceiptPlan>,
}

/// A message the customer sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerMessage {
    /// Counted from the conversation's start.
    pub at_ms: u64,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Attachment>,
}

/// An open-messaging attachment (`content[].attachment`), by URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// `Image`, `Video`, `Audio`, `File` or `Link`.
    pub media_type: String,
    pub url: String,
    pub mime: String,
    pub filename: String,
}

/// An agentless message the business sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentlessMessage {
    /// Counted from the conversation's start.
    pub at_ms: u64,
    pub text: String,
}

/// How the emulator's synthetic agents handle the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingPlan {
    pub answer_after_ms: u64,
    pub reply_after_ms: u64,
    pub agent_replies: u32,
    pub wrapup_after_ms: u64,
    pub outcome: Outcome,
}

impl RoutingPlan {
    /// The inbound `metadata` entries that ask the emulator for this routing.
    pub fn metadata(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                META_ANSWER_AFTER_MS.to_owned(),
                self.answer_after_ms.to_string(),
            ),
            (
                META_REPLY_AFTER_MS.to_owned(),
                self.reply_after_ms.to_string(),
            ),
            (
                META_AGENT_REPLIES.to_owned(),
                self.agent_replies.to_string(),
            ),
            (
                META_WRAPUP_AFTER_MS.to_owned(),
                self.wrapup_after_ms.to_string(),
            ),
            (META_OUTCOME.to_owned(), self.outcome.as_str().to_owned()),
        ])
    }

    /// When the (last) agent starts talking, counted from the first customer message. The
    /// emulator answers after `answer_after_ms`; a transfer happens half a reply interval
    /// later and the second agent answers after another half `answer_after_ms`.
    pub fn talking_since_ms(&self) -> u64 {
        match self.outcome {
            Outcome::Abandon | Outcome::Answered => self.answer_after_ms,
            Outcome::Transfer => self
                .answer_after_ms
                .saturating_add(self.reply_after_ms / 2)
                .saturating_add(self.answer_after_ms / 2),
        }
    }

    /// How long the routing takes until the agent side is done, in plan time.
    pub fn duration_ms(&self) -> u64 {
        match self.outcome {
            Outcome::Abandon => self.answer_after_ms,
            Outcome::Answered | Outcome::Transfer => self
                .talking_since_ms()
                .saturating_add(
                    self.reply_after_ms
                        .saturating_mul(self.agent_replies.into()),
                )
                .saturating_add(self.wrapup_after_ms),
        }
    }
}

/// What the customer's platform reports for one outbound message. Delays count from when
/// the message is sent (the simulator sees it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "receipt", rename_all = "snake_case")]
pub enum ReceiptPlan {
    /// No receipt ever.
    Never,
    /// A `Failed` receipt.
    Failed { after_ms: u64 },
    /// A `Delivered` receipt, then (maybe) a `Read` receipt `read_after_ms` later.
    Delivered {
        after_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        read_after_ms: Option<u64>,
    },
}

impl ReceiptPlan {
    /// When the last receipt is due, counted from the send.
    pub fn last_due_ms(&self) -> u64 {
        match *self {
            ReceiptPlan::Never => 0,
            ReceiptPlan::Failed { after_ms } => after_ms,
            ReceiptPlan::Delivered {
                after_ms,
                read_after_ms,
            } => after_ms.saturating_add(read_after_ms.unwrap_or(0)),
        }
    }

    /// The receipts to post, as (delay from send, status as sent on the wire).
    pub fn receipts(&self) -> Vec<(u64, &'static str)> {
        match *self {
            ReceiptPlan::Never => Vec::new(),
            ReceiptPlan::Failed { after_ms } => vec![(after_ms, "Failed")],
            ReceiptPlan::Delivered {
                after_ms,
                read_after_ms,
            } => {
                let mut receipts = vec![(after_ms, "Delivered")];
                if let Some(read) = read_after_ms {
                    receipts.push((after_ms.saturating_add(read), "Read"));
                }
                receipts
            }
        }
    }

    /// The message status the receipts leave behind (`messageStatus` wire value).
    pub fn final_status(&self) -> &'static str {
        match self {
            ReceiptPlan::Never => "sent",
            ReceiptPlan::Failed { .. } => "delivery-failed",
            ReceiptPlan::Delivered {
                read_after_ms: Some(_),
                ..
            } => "read",
            ReceiptPlan::Delivered { .. } => "delivery-success",
        }
    }
}

impl Script {
    pub fn kind(&self) -> ShapeKind {
        match self {
            Script::Inbound(_) => ShapeKind::Inbound,
            Script::Agentless(_) => ShapeKind::Agentless,
            Script::Voice(_) => ShapeKind::Voice,
        }
    }

    /// The receipt plan of each expected outbound message, in order.
    pub fn receipts(&self) -> &[ReceiptPlan] {
        match self {
            Script::Inbound(script) => &script.receipts,
            Script::Agentless(script) => &script.receipts,
            Script::Voice(_) => &[],
        }
    }

    /// Plan-time length of the conversation: from its start until the last planned event
    /// (agent wrap-up or last receipt) is due.
    pub fn duration_ms(&self) -> u64 {
        match self {
            Script::Inbound(script) => {
                let routing = script.routing.duration_ms();
                let last_customer = script
                    .customer_messages
                    .last()
                    .map_or(0, |message| message.at_ms);
                // Reply k is sent at talking-since + k·reply; its receipts follow.
                let receipts = script
                    .receipts
                    .iter()
                    .enumerate()
                    .map(|(k, receipt)| {
                        let sent = script.routing.talking_since_ms().saturating_add(
                            script.routing.reply_after_ms.saturating_mul(k as u64 + 1),
                        );
                        sent.saturating_add(receipt.last_due_ms())
                    })
                    .max()
                    .unwrap_or(0);
                routing.max(last_customer).max(receipts)
            }
            Script::Agentless(script) => script
                .messages
                .iter()
                .zip(&script.receipts)
                .map(|(message, receipt)| message.at_ms.saturating_add(receipt.last_due_ms()))
                .max()
                .unwrap_or(0),
            Script::Voice(script) => script.routing.duration_ms(),
        }
    }
}

impl Plan {
    /// Plans a run. The scenario must be valid ([`Scenario::validate`]); an invalid one
    /// still yields a plan (ranges and shares are clamped) but not a meaningful one.
    pub fn generate(scenario: &Scenario, options: &PlanOptions) -> Plan {
        let prefix = options
            .customer_prefix
            .clone()
            .unwrap_or_else(|| format!("sim-{}", options.seed));
        let total_weight: u64 = scenario
            .shapes
            .iter()
            .map(|shape| u64::from(shape.weight))
            .sum();
        let conversations = (0..options.conversations)
            .filter_map(|index| {
                let mut rng = StdRng::seed_from_u64(mix(options.seed, index as u64));
                let shape = pick_shape(&scenario.shapes, total_weight, &mut rng)?;
                Some(PlannedConversation {
                    index,
                    customer_id: format!("{prefix}-{index:05}@sim.convoy.test"),
                    shape: shape.name.clone(),
                    start_after_ms: start_offset(index, options.rate_per_second),
                    script: plan_script(scenario, shape, index, &mut rng),
                })
            })
            .collect();
        Plan {
            seed: options.seed,
            scenario: scenario.name.clone(),
            conversations,
        }
    }
}

/// SplitMix64 of the seed and the conversation index: independent, well-spread RNG seeds.
fn mix(seed: u64, index: u64) -> u64 {
    let mut z = seed
        .wrapping_add(index.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn start_offset(index: usize, rate_per_second: Option<f64>) -> u64 {
    match rate_per_second {
        Some(rate) if rate > 0.0 && rate.is_finite() => {
            // Saturating float-to-int cast; a run long enough to overflow is not a run.
            (index as f64 * 1000.0 / rate).round() as u64
        }
        _ => 0,
    }
}

fn pick_shape<'a>(shapes: &'a [Shape], total_weight: u64, rng: &mut StdRng) -> Option<&'a Shape> {
    if total_weight == 0 {
        return None;
    }
    let mut ticket = rng.gen_range(0..total_weight);
    for shape in shapes {
        let weight = u64::from(shape.weight);
        if ticket < weight {
            return Some(shape);
        }
        ticket -= weight;
    }
    None
}

fn sample(span: Span, rng: &mut StdRng) -> u64 {
    let (min, max) = (span.min(), span.max());
    if min >= max {
        min
    } else {
        rng.gen_range(min..=max)
    }
}

fn chance(share: f64, rng: &mut StdRng) -> bool {
    rng.gen_bool(share.clamp(0.0, 1.0))
}

fn plan_receipt(behaviour: &ReceiptBehaviour, rng: &mut StdRng) -> ReceiptPlan {
    // One draw decides never / failed / delivered, so the shares are exact proportions.
    let draw: f64 = rng.gen();
    if draw < behaviour.never_share {
        ReceiptPlan::Never
    } else if draw < behaviour.never_share + behaviour.failed_share {
        ReceiptPlan::Failed {
            after_ms: sample(behaviour.failed_after_ms, rng),
        }
    } else {
        let after_ms = sample(behaviour.delivered_after_ms, rng);
        let read_after_ms =
            chance(behaviour.read_share, rng).then(|| sample(behaviour.read_after_ms, rng));
        ReceiptPlan::Delivered {
            after_ms,
            read_after_ms,
        }
    }
}

/// How the synthetic agents handle a routed conversation (inbound message or call).
fn plan_routing(scenario: &Scenario, shape: &Shape, rng: &mut StdRng) -> RoutingPlan {
    let agents = scenario.agents_for(shape);
    let outcome = shape.outcome();
    RoutingPlan {
        answer_after_ms: sample(agents.answer_after_ms, rng),
        reply_after_ms: sample(agents.reply_after_ms, rng),
        agent_replies: match outcome {
            Outcome::Abandon => 0,
            Outcome::Answered | Outcome::Transfer => {
                let replies = shape.agent_replies.unwrap_or(Span::Fixed(1));
                u32::try_from(sample(replies, rng)).unwrap_or(u32::MAX)
            }
        },
        wrapup_after_ms: sample(agents.wrapup_after_ms, rng),
        outcome,
    }
}

fn plan_script(scenario: &Scenario, shape: &Shape, index: usize, rng: &mut StdRng) -> Script {
    let receipts_behaviour = scenario.receipts_for(shape);
    match shape.kind {
        ShapeKind::Voice => Script::Voice(VoiceScript {
            routing: plan_routing(scenario, shape, rng),
        }),
        ShapeKind::Inbound => {
            let routing = plan_routing(scenario, shape, rng);
            let count = sample(shape.customer_messages.unwrap_or(Span::Fixed(1)), rng).max(1);
            let mut offsets = vec![0u64];
            for _ in 1..count {
                let gap = sample(scenario.customer.message_gap_ms, rng);
                let last = offsets.last().copied().unwrap_or(0);
                offsets.push(last.saturating_add(gap));
            }
            // The synthetic agent answers after `answer_after_ms` and the conversation ends
            // after its wrap-up; a customer message after that would open a NEW
            // conversation. Keep every customer message in the first half of the wait.
            let budget = routing.answer_after_ms / 2;
            let last = offsets.last().copied().unwrap_or(0);
            if last > budget {
                for offset in &mut offsets {
                    *offset = offset.saturating_mul(budget) / last;
                }
            }
            let attachment_share = shape.attachment_share.unwrap_or(0.0);
            let customer_messages = offsets
                .iter()
                .enumerate()
                .map(|(k, &at_ms)| {
                    let attachment = chance(attachment_share, rng).then(|| Attachment {
                        media_type: "Image".to_owned(),
                        url: format!("https://files.sim.convoy.test/{index}/{k}/photo.jpg"),
                        mime: "image/jpeg".to_owned(),
                        filename: format!("photo-{index}-{k}.jpg"),
                    });
                    CustomerMessage {
                        at_ms,
                        text: format!("[sim {index}] customer message {} of {count}", k + 1),
                        attachment,
                    }
                })
                .collect();
            let receipts = (0..routing.agent_replies)
                .map(|_| plan_receipt(&receipts_behaviour, rng))
                .collect();
            Script::Inbound(InboundScript {
                customer_messages,
                routing,
                receipts,
            })
        }
        ShapeKind::Agentless => {
            let count = sample(shape.messages.unwrap_or(Span::Fixed(1)), rng).max(1);
            let gap = shape.message_gap_ms.unwrap_or(Span::Fixed(0));
            let mut at_ms = 0u64;
            let mut messages = Vec::new();
            for k in 0..count {
                if k > 0 {
                    at_ms = at_ms.saturating_add(sample(gap, rng));
                }
                messages.push(AgentlessMessage {
                    at_ms,
                    text: format!("[sim {index}] notice {} of {count}", k + 1),
                });
            }
            let receipts = messages
                .iter()
                .map(|_| plan_receipt(&receipts_behaviour, rng))
                .collect();
            Script::Agentless(AgentlessScript { messages, receipts })
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn options(conversations: usize, seed: u64) -> PlanOptions {
        PlanOptions {
            conversations,
            seed,
            rate_per_second: Some(10.0),
            customer_prefix: None,
        }
    }

    #[test]
    fn same_seed_same_plan() {
        let scenario = Scenario::default();
        let a = Plan::generate(&scenario, &options(50, 7));
        let b = Plan::generate(&scenario, &options(50, 7));
        assert_eq!(a, b);
        let c = Plan::generate(&scenario, &options(50, 8));
        assert_ne!(a, c);
    }

    #[test]
    fn a_shorter_run_is_a_prefix_of_a_longer_one() {
        let scenario = Scenario::default();
        let short = Plan::generate(&scenario, &options(20, 3));
        let long = Plan::generate(&scenario, &options(200, 3));
        assert_eq!(short.conversations[..], long.conversations[..20]);
    }

    #[test]
    fn rate_spaces_the_starts() {
        let plan = Plan::generate(&Scenario::default(), &options(4, 1));
        let starts: Vec<u64> = plan
            .conversations
            .iter()
            .map(|c| c.start_after_ms)
            .collect();
        assert_eq!(starts, vec![0, 100, 200, 300]);
        let all_at_once = Plan::generate(
            &Scenario::default(),
            &PlanOptions {
                rate_per_second: None,
                ..options(3, 1)
            },
        );
        assert!(all_at_once
            .conversations
            .iter()
            .all(|c| c.start_after_ms == 0));
    }

    #[test]
    fn customer_ids_are_unique_and_carry_the_seed() {
        let plan = Plan::generate(&Scenario::default(), &options(100, 42));
        let mut ids: Vec<&str> = plan
            .conversations
            .iter()
            .map(|c| c.customer_id.as_str())
            .collect();
        assert!(ids[0].starts_with("sim-42-"));
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 100);
    }

    #[test]
    fn weights_shape_the_mix() {
        let scenario = Scenario::from_toml(
            r#"
[[shapes]]
name = "heavy"
kind = "inbound"
weight = 9
[[shapes]]
name = "light"
kind = "agentless"
weight = 1
[[shapes]]
name = "off"
kind = "inbound"
weight = 0
"#,
        )
        .unwrap();
        let plan = Plan::generate(&scenario, &options(2000, 5));
        let heavy = plan
            .conversations
            .iter()
            .filter(|c| c.shape == "heavy")
            .count();
        assert!(plan.conversations.iter().all(|c| c.shape != "off"));
        assert!((1700..=1900).contains(&heavy), "heavy = {heavy}");
    }

    #[test]
    fn receipt_shares_are_respected() {
        let scenario = Scenario::from_toml(
            r#"
[receipts]
never_share = 0.25
failed_share = 0.25
read_share = 0.5
[[shapes]]
name = "notice"
kind = "agentless"
weight = 1
"#,
        )
        .unwrap();
        let plan = Plan::generate(&scenario, &options(4000, 9));
        let receipts: Vec<ReceiptPlan> = plan
            .conversations
            .iter()
            .flat_map(|c| c.script.receipts().to_vec())
            .collect();
        let never = receipts
            .iter()
            .filter(|r| matches!(r, ReceiptPlan::Never))
            .count();
        let failed = receipts
            .iter()
            .filter(|r| matches!(r, ReceiptPlan::Failed { .. }))
            .count();
        let read = receipts
            .iter()
            .filter(|r| r.final_status() == "read")
            .count();
        assert!((850..=1150).contains(&never), "never = {never}");
        assert!((850..=1150).contains(&failed), "failed = {failed}");
        assert!((850..=1150).contains(&read), "read = {read}");
    }

    #[test]
    fn customer_messages_all_come_before_the_answer() {
        let scenario = Scenario::from_toml(
            r#"
[agents]
answer_after_ms = [40, 60]
[customer]
message_gap_ms = [100, 200]
[[shapes]]
name = "chatty"
kind = "inbound"
weight = 1
customer_messages = 5
agent_replies = [0, 3]
"#,
        )
        .unwrap();
        let plan = Plan::generate(&scenario, &options(50, 11));
        for conversation in &plan.conversations {
            let Script::Inbound(script) = &conversation.script else {
                panic!("inbound only")
            };
            assert_eq!(script.customer_messages.len(), 5);
            let last = script.customer_messages.last().unwrap().at_ms;
            assert!(last <= script.routing.answer_after_ms / 2);
            assert_eq!(script.receipts.len(), script.routing.agent_replies as usize);
        }
    }

    #[test]
    fn abandon_has_no_replies_and_metadata_names_the_outcome() {
        let scenario = Scenario::from_toml(
            "[[shapes]]\nname='gone'\nkind='inbound'\nweight=1\noutcome='abandon'\n",
        )
        .unwrap();
        let plan = Plan::generate(&scenario, &options(3, 2));
        let Script::Inbound(script) = &plan.conversations[0].script else {
            panic!("inbound only")
        };
        assert_eq!(script.routing.agent_replies, 0);
        assert!(script.receipts.is_empty());
        let metadata = script.routing.metadata();
        assert_eq!(metadata[META_OUTCOME], "abandon");
        assert_eq!(metadata[META_AGENT_REPLIES], "0");
        assert_eq!(
            metadata[META_ANSWER_AFTER_MS],
            script.routing.answer_after_ms.to_string()
        );
    }

    #[test]
    fn attachments_follow_the_share() {
        let scenario = Scenario::from_toml(
            "[[shapes]]\nname='pics'\nkind='inbound'\nweight=1\nattachment_share=1.0\ncustomer_messages=2\n",
        )
        .unwrap();
        let plan = Plan::generate(&scenario, &options(5, 2));
        for conversation in &plan.conversations {
            let Script::Inbound(script) = &conversation.script else {
                panic!("inbound only")
            };
            assert!(script
                .customer_messages
                .iter()
                .all(|m| m.attachment.is_some()));
        }
    }

    #[test]
    fn a_transfer_adds_the_second_answer_to_the_duration() {
        let answered = RoutingPlan {
            answer_after_ms: 100,
            reply_after_ms: 40,
            agent_replies: 2,
            wrapup_after_ms: 10,
            outcome: Outcome::Answered,
        };
        assert_eq!(answered.duration_ms(), 100 + 80 + 10);
        let transfer = RoutingPlan {
            outcome: Outcome::Transfer,
            ..answered
        };
        assert_eq!(transfer.talking_since_ms(), 100 + 20 + 50);
        assert_eq!(transfer.duration_ms(), 170 + 80 + 10);
        let abandon = RoutingPlan {
            outcome: Outcome::Abandon,
            agent_replies: 0,
            ..answered
        };
        assert_eq!(abandon.duration_ms(), 100);
    }

    #[test]
    fn receipts_list_in_order_with_their_final_status() {
        let delivered = ReceiptPlan::Delivered {
            after_ms: 10,
            read_after_ms: Some(5),
        };
        assert_eq!(delivered.receipts(), vec![(10, "Delivered"), (15, "Read")]);
        assert_eq!(delivered.final_status(), "read");
        assert_eq!(delivered.last_due_ms(), 15);
        assert_eq!(ReceiptPlan::Never.final_status(), "sent");
        assert!(ReceiptPlan::Never.receipts().is_empty());
        assert_eq!(
            ReceiptPlan::Failed { after_ms: 3 }.receipts(),
            vec![(3, "Failed")]
        );
    }
}
