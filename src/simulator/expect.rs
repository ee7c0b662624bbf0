//! The expected outcomes of a plan: per conversation the customer's sender id, how the
//! conversation ends, every message with the status it should end in, and the `sla.outcome`
//! each SLA clock should settle with for given thresholds. Tests compare these with what
//! the emulator's ground truth shows and with what Convoy produced.
//!
//! # SLA expectations
//! The rules are the SLA engine's ([`crate::sla`]), applied to the planned timings *as the
//! emulator's synthetic agents realise them* (`src/emulator/org/routing.rs`), in plan time
//! counted from the conversation's start `t0` (its first customer message):
//! - the ACD participant joins at `t0`; the first agent connects at `A = answer_after_ms`
//!   (a transfer goes agent to agent, with no new ACD participant, so there is one
//!   `answer` clock); abandon: the customer leaves at `A`;
//! - reply `k` (1-based) is sent at `talking_since + k · reply_after_ms`; the conversation
//!   finishes (ended, wrap-up recorded) at `F = talking_since + replies · reply_after_ms +
//!   wrapup_after_ms`, or at `A` when abandoned;
//! - every customer message is planned in the first half of the wait, before any reply:
//!   only `first_response` starts (on the first customer message); `next_response` never
//!   does in a simulated conversation;
//! - receipts are posted `after_ms` after the send (`Delivered`, `Failed`), `Read`
//!   `read_after_ms` after `Delivered`; the `read` clock counts from delivery;
//! - an agentless message is in a conversation of its own that finishes when the message
//!   is sent (`F` = the send).
//!
//! What the engine does with that (and so what is expected):
//! - `answer`: `compliant` when `A <= answer`, `breached` (achieved late) otherwise;
//!   `abandoned` when the customer leaves first, whatever the wait;
//! - `first_response`: met by the first reply (`compliant`/`breached`); no reply before the
//!   conversation finishes: `breached` when it finished past the deadline, else
//!   `abandoned` (the engine settles an open response clock at the finish that way);
//! - `delivery`: `failed` on a `Failed` receipt before the deadline or before `F`;
//!   `compliant` when delivered within the threshold; delivered late: `breached` when the
//!   receipt comes before `F`, else `missing_receipt` (a finished conversation's receipt
//!   clock settles at its deadline); no receipt: `missing_receipt`;
//! - `read`: started by the delivery, only for messenger types with read receipts (the
//!   emulator's open messaging is `open`), after the finish too — as long as the
//!   conversation's book is open: once every clock of a finished conversation settled, the
//!   SlaActor keeps only its tallies and a late fact starts nothing (so a delivery that
//!   came late *and* after the finish starts a read clock only while another clock still
//!   runs); read within the threshold `compliant`, late `breached` before `F` else
//!   `missing_receipt`, never read `missing_receipt`.
//!
//! Every comparison that decides an outcome (a measured time against a threshold, a
//! receipt against `F`) within `margin_ms` of its boundary marks the clock a
//! [`ExpectedClock::close_call`]: a real run's latencies may tip it either way (even make a
//! `read` clock that is expected not start), so checks skip close calls and say how many.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::plan::{Plan, PlannedConversation, ReceiptPlan, RoutingPlan, Script};
use super::scenario::{Outcome, ShapeKind};
use crate::sla::{ClockKind, SlaOutcome, SlaTallies, Thresholds};

/// The messenger type of everything the emulator's open messaging carries.
pub const EMULATED_MESSENGER_TYPE: &str = "open";

/// The SLA thresholds expectations are computed for (the daemon's `sla.*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaThresholds {
    pub answer_ms: u64,
    pub first_response_ms: u64,
    pub next_response_ms: u64,
    pub delivery_ms: u64,
    pub read_ms: u64,
    /// Messenger types without read receipts (`sla.no_read_receipt`).
    #[serde(default)]
    pub no_read_receipt: BTreeSet<String>,
    /// A deciding comparison this close to its boundary is a close call.
    pub margin_ms: u64,
}

/// The default margin: latencies of a loaded machine stay well within it.
pub const DEFAULT_MARGIN_MS: u64 = 500;

impl Default for SlaThresholds {
    /// The daemon's default thresholds.
    fn default() -> SlaThresholds {
        SlaThresholds::from_thresholds(&Thresholds::default(), [])
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl SlaThresholds {
    /// From the engine's thresholds (`SlaPolicy::thresholds`) and no-read-receipt types.
    pub fn from_thresholds(
        thresholds: &Thresholds,
        no_read_receipt: impl IntoIterator<Item = String>,
    ) -> SlaThresholds {
        SlaThresholds {
            answer_ms: millis(thresholds.answer),
            first_response_ms: millis(thresholds.first_response),
            next_response_ms: millis(thresholds.next_response),
            delivery_ms: millis(thresholds.delivery),
            read_ms: millis(thresholds.read),
            no_read_receipt: no_read_receipt.into_iter().collect(),
            margin_ms: DEFAULT_MARGIN_MS,
        }
    }

    pub fn get(&self, clock: ClockKind) -> u64 {
        match clock {
            ClockKind::Answer => self.answer_ms,
            ClockKind::FirstResponse => self.first_response_ms,
            ClockKind::NextResponse => self.next_response_ms,
            ClockKind::Delivery => self.delivery_ms,
            ClockKind::Read => self.read_ms,
        }
    }

    /// Whether the emulated messenger type gets `read` clocks.
    pub fn has_read_receipts(&self) -> bool {
        !self.no_read_receipt.contains(EMULATED_MESSENGER_TYPE)
    }
}

/// What an SLA clock is about, by position in the plan (the ids are the platform's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "index", rename_all = "snake_case")]
pub enum SlaSubject {
    /// `answer`: the conversation's ACD participant (the record's `participantId`).
    Acd,
    /// Response clocks: the customer message (index among the inbound messages).
    CustomerMessage(usize),
    /// `delivery`, `read`: the outbound message (index among the outbound messages).
    Outbound(usize),
}

/// The `sla.outcome` one clock should settle with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedClock {
    pub clock: ClockKind,
    pub subject: SlaSubject,
    pub outcome: SlaOutcome,
    /// A deciding comparison is within the margin: the outcome (or, for `read`, whether
    /// the clock starts at all) may go either way in a real run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub close_call: bool,
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
    /// The `sla.outcome` of every clock the conversation should start. The clocks of an
    /// agentless message live in that message's own conversation
    /// ([`ExpectedMessage::conversation_id`]).
    pub sla: Vec<ExpectedClock>,
    /// Voice calls: the utterances transcribed in real time (two per talk turn).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub utterances: u64,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Expected `sla.outcome` records by clock and outcome (close calls included).
    pub sla_outcomes: SlaTallies,
    /// Of those, the close calls (see [`ExpectedClock::close_call`]).
    pub sla_close_calls: usize,
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
            .map(|conversation| expect_conversation(conversation, &sla))
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
        for clock in conversations.iter().flat_map(|c| &c.sla) {
            *totals
                .sla_outcomes
                .entry(clock.clock)
                .or_default()
                .entry(clock.outcome)
                .or_default() += 1;
            totals.sla_close_calls += usize::from(clock.close_call);
        }
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
    sla: &SlaThresholds,
) -> ExpectedConversation {
    let (outcome, ended, agent_participants, messages) = match &conversation.script {
        Script::Inbound(script) => {
            let (outcome, agents) = routed_outcome(script.routing.outcome);
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
        Script::Voice(script) => {
            let (outcome, agents) = routed_outcome(script.routing.outcome);
            (outcome, Some(true), agents, Vec::new())
        }
    };
    let sla_clocks = match &conversation.script {
        Script::Inbound(script) => inbound_clocks(&script.routing, &script.receipts, sla),
        // A call has no messages: only its answer clock.
        Script::Voice(script) => vec![answer_clock(&script.routing, sla)],
        // Each agentless message is a conversation (and a book) of its own.
        Script::Agentless(script) => script
            .receipts
            .iter()
            .enumerate()
            .flat_map(|(index, receipt)| {
                let (planned, read) = receipt_clocks(index, receipt, 0, 0, sla);
                resolve(planned, read.into_iter().collect(), sla)
            })
            .collect(),
    };
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
        sla: sla_clocks,
        utterances: match &conversation.script {
            Script::Voice(script) => script.utterances(),
            Script::Inbound(_) | Script::Agentless(_) => 0,
        },
    }
}

/// How a routed conversation ends, and the agent participants it has.
fn routed_outcome(outcome: Outcome) -> (ExpectedOutcome, usize) {
    match outcome {
        Outcome::Answered => (ExpectedOutcome::Answered, 1),
        Outcome::Abandon => (ExpectedOutcome::Abandoned, 0),
        Outcome::Transfer => (ExpectedOutcome::Transferred, 2),
    }
}

/// The `answer` clock of a routed conversation: stopped when the first agent connects.
fn answer_clock(routing: &RoutingPlan, sla: &SlaThresholds) -> ExpectedClock {
    let mut judge = Judge::new(sla);
    let outcome = if routing.outcome == Outcome::Abandon {
        SlaOutcome::Abandoned
    } else if judge.at_most(routing.answer_after_ms, sla.answer_ms) {
        SlaOutcome::Compliant
    } else {
        SlaOutcome::Breached
    };
    judge.expect(ClockKind::Answer, SlaSubject::Acd, outcome)
}

/// Decides the comparisons of one clock, noting whether any was within the margin.
struct Judge {
    margin_ms: u64,
    close_call: bool,
}

impl Judge {
    fn new(sla: &SlaThresholds) -> Judge {
        Judge {
            margin_ms: sla.margin_ms,
            close_call: false,
        }
    }

    /// `value <= limit` (met at the deadline is compliant).
    fn at_most(&mut self, value: u64, limit: u64) -> bool {
        self.note(value, limit);
        value <= limit
    }

    /// `value < limit` (a receipt before the finish).
    fn before(&mut self, value: u64, limit: u64) -> bool {
        self.note(value, limit);
        value < limit
    }

    fn note(&mut self, value: u64, limit: u64) {
        if value.abs_diff(limit) < self.margin_ms {
            self.close_call = true;
        }
    }

    fn expect(self, clock: ClockKind, subject: SlaSubject, outcome: SlaOutcome) -> ExpectedClock {
        ExpectedClock {
            clock,
            subject,
            outcome,
            close_call: self.close_call,
        }
    }
}

/// The clocks of a routed inbound conversation (times from its first customer message).
fn inbound_clocks(
    routing: &RoutingPlan,
    receipts: &[ReceiptPlan],
    sla: &SlaThresholds,
) -> Vec<ExpectedClock> {
    let answered = routing.outcome != Outcome::Abandon;
    let talking = routing.talking_since_ms();
    let finish = routing.duration_ms();
    let mut clocks = vec![answer_clock(routing, sla)];

    let mut judge = Judge::new(sla);
    let outcome = if answered && routing.agent_replies > 0 {
        let first_reply = talking.saturating_add(routing.reply_after_ms);
        if judge.at_most(first_reply, sla.first_response_ms) {
            SlaOutcome::Compliant
        } else {
            SlaOutcome::Breached
        }
    } else if judge.at_most(finish, sla.first_response_ms) {
        SlaOutcome::Abandoned
    } else {
        SlaOutcome::Breached
    };
    clocks.push(judge.expect(
        ClockKind::FirstResponse,
        SlaSubject::CustomerMessage(0),
        outcome,
    ));

    // Answer and first response settle by the finish at the latest.
    let mut planned: Vec<Planned> = clocks
        .into_iter()
        .map(|clock| Planned {
            clock,
            settles_at: finish,
        })
        .collect();
    let mut pending = Vec::new();
    for (index, receipt) in receipts.iter().enumerate() {
        let sent = talking.saturating_add(routing.reply_after_ms.saturating_mul(index as u64 + 1));
        let (clocks, read) = receipt_clocks(index, receipt, sent, finish, sla);
        planned.extend(clocks);
        pending.extend(read);
    }
    resolve(planned, pending, sla)
}

/// An expected clock and the plan time it settles at.
struct Planned {
    clock: ExpectedClock,
    settles_at: u64,
}

/// A `read` clock whose delivery came late and after the finish: it starts only if the
/// conversation's book is still open then (some other clock still running); once every
/// clock settled, the SlaActor keeps only the tallies and a late fact starts nothing.
struct PendingRead {
    read: Planned,
    starts_at: u64,
}

/// The clocks of one conversation's book: the planned ones, and each pending `read`
/// clock that finds the book still open (in start order; a started one keeps it open).
fn resolve(
    planned: Vec<Planned>,
    mut pending: Vec<PendingRead>,
    sla: &SlaThresholds,
) -> Vec<ExpectedClock> {
    let mut open_until = planned.iter().map(|p| p.settles_at).max().unwrap_or(0);
    let mut clocks: Vec<ExpectedClock> = planned.into_iter().map(|p| p.clock).collect();
    pending.sort_by_key(|read| read.starts_at);
    for PendingRead {
        mut read,
        starts_at,
    } in pending
    {
        let mut judge = Judge::new(sla);
        if judge.before(starts_at, open_until) {
            open_until = open_until.max(read.settles_at);
            read.clock.close_call |= judge.close_call;
            clocks.push(read.clock);
        } else if judge.close_call {
            read.clock.close_call = true;
            clocks.push(read.clock);
        }
    }
    clocks
}

/// The `delivery` and `read` clocks of outbound message `index`, sent at `sent` in a
/// conversation that finishes at `finish` (same time origin), with when they settle; a
/// `read` clock delivered late after the finish is pending (see [`PendingRead`]).
fn receipt_clocks(
    index: usize,
    receipt: &ReceiptPlan,
    sent: u64,
    finish: u64,
    sla: &SlaThresholds,
) -> (Vec<Planned>, Option<PendingRead>) {
    let subject = SlaSubject::Outbound(index);
    // A receipt clock of a finished conversation that misses its deadline settles then.
    let missing_at = |start: u64, threshold: u64| start.saturating_add(threshold).max(finish);
    let mut judge = Judge::new(sla);
    let (outcome, settles_at, delivered) = match *receipt {
        ReceiptPlan::Never => (
            SlaOutcome::MissingReceipt,
            missing_at(sent, sla.delivery_ms),
            None,
        ),
        ReceiptPlan::Failed { after_ms } => {
            let failed_at = sent.saturating_add(after_ms);
            let in_time = judge.at_most(after_ms, sla.delivery_ms);
            if in_time || judge.before(failed_at, finish) {
                (SlaOutcome::Failed, failed_at, None)
            } else {
                (
                    SlaOutcome::MissingReceipt,
                    missing_at(sent, sla.delivery_ms),
                    None,
                )
            }
        }
        ReceiptPlan::Delivered {
            after_ms,
            read_after_ms,
        } => {
            let delivered = sent.saturating_add(after_ms);
            let (outcome, settles_at) = if judge.at_most(after_ms, sla.delivery_ms) {
                (SlaOutcome::Compliant, delivered)
            } else if judge.before(delivered, finish) {
                (SlaOutcome::Breached, delivered)
            } else {
                (
                    SlaOutcome::MissingReceipt,
                    missing_at(sent, sla.delivery_ms),
                )
            };
            (outcome, settles_at, Some((delivered, read_after_ms)))
        }
    };
    let delivery_close = judge.close_call;
    let delivery = Planned {
        clock: judge.expect(ClockKind::Delivery, subject, outcome),
        settles_at,
    };
    let Some((delivered, read_after_ms)) = delivered.filter(|_| sla.has_read_receipts()) else {
        return (vec![delivery], None);
    };
    let mut judge = Judge::new(sla);
    let (outcome, settles_at) = match read_after_ms {
        None => (
            SlaOutcome::MissingReceipt,
            missing_at(delivered, sla.read_ms),
        ),
        Some(read) if judge.at_most(read, sla.read_ms) => {
            (SlaOutcome::Compliant, delivered.saturating_add(read))
        }
        Some(read) if judge.before(delivered.saturating_add(read), finish) => {
            (SlaOutcome::Breached, delivered.saturating_add(read))
        }
        Some(_) => (
            SlaOutcome::MissingReceipt,
            missing_at(delivered, sla.read_ms),
        ),
    };
    // Whether the delivery was met (so the book was open at it) may itself be a close call.
    judge.close_call |= delivery_close;
    let read = Planned {
        clock: judge.expect(ClockKind::Read, subject, outcome),
        settles_at,
    };
    if outcome_of_delivery_keeps_book_open(&delivery.clock) {
        (vec![delivery, read], None)
    } else {
        (
            vec![delivery],
            Some(PendingRead {
                read,
                starts_at: delivered,
            }),
        )
    }
}

/// A delivery met (on time, or late before the finish) was open when the delivery came,
/// so its read clock starts; a delivery that settled `missing_receipt` was not.
fn outcome_of_delivery_keeps_book_open(delivery: &ExpectedClock) -> bool {
    matches!(
        delivery.outcome,
        SlaOutcome::Compliant | SlaOutcome::Breached
    )
}

impl ExpectedOutcomes {
    /// Every expected clock with the conversation id its records carry (known once the
    /// driver filled the ids in), in plan order.
    pub fn clocks(&self) -> Vec<(Option<&str>, &ExpectedConversation, &ExpectedClock)> {
        let mut all = Vec::new();
        for conversation in &self.conversations {
            for clock in &conversation.sla {
                let id = match clock.subject {
                    SlaSubject::Outbound(index) => conversation
                        .outbound()
                        .nth(index)
                        .and_then(|message| message.conversation_id.as_deref())
                        .or(conversation.conversation_id.as_deref()),
                    SlaSubject::Acd | SlaSubject::CustomerMessage(_) => {
                        conversation.conversation_id.as_deref()
                    }
                };
                all.push((id, conversation, clock));
            }
        }
        all
    }
}

impl ExpectedConversation {
    /// The platform's message id of a clock's subject, once known (`None` for `answer`,
    /// whose ACD participant id only the conversation knows).
    pub fn subject_message_id(&self, subject: SlaSubject) -> Option<&str> {
        let nth = |direction: MessageDirection, index: usize| {
            self.messages
                .iter()
                .filter(|message| message.direction == direction)
                .nth(index)
                .and_then(|message| message.message_id.as_deref())
        };
        match subject {
            SlaSubject::Acd => None,
            SlaSubject::CustomerMessage(index) => nth(MessageDirection::Inbound, index),
            SlaSubject::Outbound(index) => nth(MessageDirection::Outbound, index),
        }
    }
}

/// How the `sla.outcome` records a run produced compare with the expectations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SlaComparison {
    /// Expected clocks whose outcome record arrived with the expected outcome.
    pub matched: usize,
    /// Close calls not checked (whatever arrived, or nothing for a `read` clock).
    pub close_calls: usize,
    /// Expected clocks without an outcome record yet.
    pub missing: usize,
    /// Everything that differs: wrong outcomes, missing and unexpected records, clocks
    /// with more than one outcome. Empty when the run equals the expectation.
    pub differences: Vec<String>,
    /// The outcome records by clock and outcome, as they arrived.
    pub actual: SlaTallies,
}

/// The parts of an `sla.outcome` record the comparison reads.
struct OutcomeRecord<'a> {
    conversation: &'a str,
    clock: &'a str,
    subject: &'a str,
    outcome: &'a str,
}

fn outcome_record(record: &crate::crm::CrmRecord) -> Option<OutcomeRecord<'_>> {
    if record.kind != crate::crm::records::KIND_SLA_OUTCOME {
        return None;
    }
    // Clock and outcome names and Genesys ids hold no escapes: read borrowed from the text.
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Fields<'a> {
        clock: &'a str,
        message_id: Option<&'a str>,
        participant_id: Option<&'a str>,
        outcome: &'a str,
    }
    let fields: Fields<'_> = serde_json::from_str(record.payload.text()).ok()?;
    Some(OutcomeRecord {
        conversation: &record.conversation_id,
        clock: fields.clock,
        subject: fields.message_id.or(fields.participant_id)?,
        outcome: fields.outcome,
    })
}

/// Compares the `sla.outcome` records among `records` (as a CRM received them, any
/// order, other kinds ignored) with the expectations, by conversation, clock and subject:
/// the message id for message clocks (filled in by the driver), the one `answer` clock of
/// the conversation for [`SlaSubject::Acd`].
pub fn compare_sla(
    expected: &ExpectedOutcomes,
    records: &[crate::crm::CrmRecord],
) -> SlaComparison {
    let mut comparison = SlaComparison::default();
    // (conversation, clock, subject) → outcomes seen (more than one is a difference).
    let mut actual: BTreeMap<(&str, &str, &str), Vec<&str>> = BTreeMap::new();
    for record in records.iter().filter_map(outcome_record) {
        actual
            .entry((record.conversation, record.clock, record.subject))
            .or_default()
            .push(record.outcome);
        if let (Some(clock), Some(outcome)) =
            (clock_kind(record.clock), sla_outcome(record.outcome))
        {
            *comparison
                .actual
                .entry(clock)
                .or_default()
                .entry(outcome)
                .or_default() += 1;
        }
    }
    for ((conversation, clock, subject), outcomes) in &actual {
        if outcomes.len() > 1 {
            comparison.differences.push(format!(
                "{conversation}: {clock} {subject} has {} outcomes: {outcomes:?}",
                outcomes.len()
            ));
        }
    }
    let mut claimed: BTreeSet<(&str, &str, &str)> = BTreeSet::new();
    for (conversation_id, conversation, clock) in expected.clocks() {
        let what = format!(
            "conversation {} ({}) {} {:?}",
            conversation.index,
            conversation.shape,
            clock.clock.as_str(),
            clock.subject
        );
        let Some(conversation_id) = conversation_id else {
            comparison
                .differences
                .push(format!("{what}: the run never learned its conversation id"));
            continue;
        };
        let key = match clock.subject {
            SlaSubject::Acd => actual
                .keys()
                .find(|(c, k, _)| *c == conversation_id && *k == clock.clock.as_str())
                .copied(),
            subject => conversation.subject_message_id(subject).and_then(|id| {
                actual
                    .get_key_value(&(conversation_id, clock.clock.as_str(), id))
                    .map(|(key, _)| *key)
            }),
        };
        let found = key.and_then(|key| {
            claimed.insert(key);
            actual.get(&key).and_then(|outcomes| outcomes.first())
        });
        match found {
            _ if clock.close_call => comparison.close_calls += 1,
            Some(outcome) if *outcome == clock.outcome.as_str() => comparison.matched += 1,
            Some(outcome) => comparison.differences.push(format!(
                "{what} in {conversation_id}: {outcome}, expected {}",
                clock.outcome.as_str()
            )),
            None => {
                comparison.missing += 1;
                comparison.differences.push(format!(
                    "{what} in {conversation_id}: no outcome yet, expected {}",
                    clock.outcome.as_str()
                ));
            }
        }
    }
    for (conversation, clock, subject) in actual.keys() {
        if !claimed.contains(&(*conversation, *clock, *subject)) {
            comparison.differences.push(format!(
                "{conversation}: unexpected {clock} outcome for {subject}"
            ));
        }
    }
    comparison
}

fn clock_kind(text: &str) -> Option<ClockKind> {
    ClockKind::ALL
        .into_iter()
        .find(|clock| clock.as_str() == text)
}

fn sla_outcome(text: &str) -> Option<SlaOutcome> {
    SlaOutcome::ALL
        .into_iter()
        .find(|outcome| outcome.as_str() == text)
}

impl ExpectedOutcomes {
    /// Expected outcome counts per conversation id (the summary's `sla` tallies), for the
    /// conversations whose clocks are all decided (no close call) and whose id is known.
    pub fn tallies_by_conversation(&self) -> BTreeMap<String, SlaTallies> {
        let mut by_conversation: BTreeMap<String, SlaTallies> = BTreeMap::new();
        let mut undecided: BTreeSet<String> = BTreeSet::new();
        for (id, _, clock) in self.clocks() {
            let Some(id) = id else { continue };
            if clock.close_call {
                undecided.insert(id.to_owned());
            }
            *by_conversation
                .entry(id.to_owned())
                .or_default()
                .entry(clock.clock)
                .or_default()
                .entry(clock.outcome)
                .or_default() += 1;
        }
        by_conversation.retain(|id, _| !undecided.contains(id));
        by_conversation
    }
}

/// Expected outcomes by clock as one line: `answer 3 compliant, 1 abandoned; read …`.
pub fn describe_tallies(tallies: &SlaTallies) -> String {
    let clocks: Vec<String> = tallies
        .iter()
        .map(|(clock, outcomes)| {
            let parts: Vec<String> = outcomes
                .iter()
                .map(|(outcome, count)| format!("{count} {}", outcome.as_str()))
                .collect();
            format!("{} {}", clock.as_str(), parts.join(", "))
        })
        .collect();
    if clocks.is_empty() {
        "none".to_owned()
    } else {
        clocks.join("; ")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::simulator::plan::PlanOptions;
    use crate::simulator::scenario::Scenario;

    /// Thresholds in seconds: answer 2, first response 3, delivery 2, read 2.
    fn sla() -> SlaThresholds {
        SlaThresholds {
            answer_ms: 2_000,
            first_response_ms: 3_000,
            next_response_ms: 3_000,
            delivery_ms: 2_000,
            read_ms: 2_000,
            no_read_receipt: BTreeSet::new(),
            margin_ms: 500,
        }
    }

    fn routing(outcome: Outcome, answer: u64, replies: u32) -> RoutingPlan {
        RoutingPlan {
            answer_after_ms: answer,
            reply_after_ms: 300,
            agent_replies: replies,
            wrapup_after_ms: 8_000,
            outcome,
        }
    }

    fn delivered(after_ms: u64, read_after_ms: Option<u64>) -> ReceiptPlan {
        ReceiptPlan::Delivered {
            after_ms,
            read_after_ms,
        }
    }

    fn outcome_of(clocks: &[ExpectedClock], clock: ClockKind, subject: SlaSubject) -> SlaOutcome {
        let found: Vec<&ExpectedClock> = clocks
            .iter()
            .filter(|c| c.clock == clock && c.subject == subject)
            .collect();
        assert_eq!(found.len(), 1, "{clock:?} {subject:?} in {clocks:?}");
        assert!(!found[0].close_call, "{:?}", found[0]);
        found[0].outcome
    }

    #[test]
    fn answer_is_compliant_or_achieved_late_or_abandoned() {
        let quick = inbound_clocks(&routing(Outcome::Answered, 300, 1), &[], &sla());
        assert_eq!(
            outcome_of(&quick, ClockKind::Answer, SlaSubject::Acd),
            SlaOutcome::Compliant
        );
        let slow = inbound_clocks(&routing(Outcome::Answered, 5_000, 1), &[], &sla());
        assert_eq!(
            outcome_of(&slow, ClockKind::Answer, SlaSubject::Acd),
            SlaOutcome::Breached
        );
        // A transfer goes agent to agent: still one answer clock, met by the first agent.
        let transfer = inbound_clocks(&routing(Outcome::Transfer, 300, 1), &[], &sla());
        assert_eq!(
            transfer
                .iter()
                .filter(|c| c.clock == ClockKind::Answer)
                .count(),
            1
        );
        for wait in [300, 5_000] {
            let left = inbound_clocks(&routing(Outcome::Abandon, wait, 0), &[], &sla());
            assert_eq!(
                outcome_of(&left, ClockKind::Answer, SlaSubject::Acd),
                SlaOutcome::Abandoned
            );
        }
    }

    #[test]
    fn first_response_counts_to_the_first_reply_and_an_unanswered_one_settles_at_the_finish() {
        let first = |routing: RoutingPlan| {
            let clocks = inbound_clocks(&routing, &[], &sla());
            assert!(clocks.iter().all(|c| c.clock != ClockKind::NextResponse));
            outcome_of(
                &clocks,
                ClockKind::FirstResponse,
                SlaSubject::CustomerMessage(0),
            )
        };
        // Answer 300 + reply 300 = 600 ms <= 3 s.
        assert_eq!(
            first(routing(Outcome::Answered, 300, 2)),
            SlaOutcome::Compliant
        );
        // 5 000 + 300 > 3 000: achieved late.
        assert_eq!(
            first(routing(Outcome::Answered, 5_000, 1)),
            SlaOutcome::Breached
        );
        // The customer left at 300 ms, before the deadline: not a breach.
        assert_eq!(
            first(routing(Outcome::Abandon, 300, 0)),
            SlaOutcome::Abandoned
        );
        // The customer left at 5 s, past the 3 s deadline: never met.
        assert_eq!(
            first(routing(Outcome::Abandon, 5_000, 0)),
            SlaOutcome::Breached
        );
    }

    /// The clocks of a book holding only this one message (as an agentless send's).
    fn book_of_one(
        receipt: ReceiptPlan,
        sent: u64,
        finish: u64,
        sla: &SlaThresholds,
    ) -> Vec<ExpectedClock> {
        let (planned, read) = receipt_clocks(0, &receipt, sent, finish, sla);
        resolve(planned, read.into_iter().collect(), sla)
    }

    #[test]
    fn receipt_clocks_follow_the_engine() {
        // Sent at 1 s, the conversation finishes at 20 s.
        let clocks = |receipt: ReceiptPlan| book_of_one(receipt, 1_000, 20_000, &sla());
        let delivery = |receipt| {
            outcome_of(
                &clocks(receipt),
                ClockKind::Delivery,
                SlaSubject::Outbound(0),
            )
        };
        let read = |receipt| outcome_of(&clocks(receipt), ClockKind::Read, SlaSubject::Outbound(0));
        assert_eq!(delivery(delivered(300, None)), SlaOutcome::Compliant);
        assert_eq!(delivery(delivered(5_000, None)), SlaOutcome::Breached);
        assert_eq!(delivery(ReceiptPlan::Never), SlaOutcome::MissingReceipt);
        assert_eq!(
            delivery(ReceiptPlan::Failed { after_ms: 300 }),
            SlaOutcome::Failed
        );
        assert_eq!(
            delivery(ReceiptPlan::Failed { after_ms: 5_000 }),
            SlaOutcome::Failed
        );
        // Read counts from the delivery, not from the send.
        assert_eq!(read(delivered(1_500, Some(1_000))), SlaOutcome::Compliant);
        assert_eq!(read(delivered(300, Some(5_000))), SlaOutcome::Breached);
        assert_eq!(read(delivered(300, None)), SlaOutcome::MissingReceipt);
        // No delivery, no read clock.
        assert_eq!(clocks(ReceiptPlan::Never).len(), 1);
        assert_eq!(clocks(ReceiptPlan::Failed { after_ms: 300 }).len(), 1);
    }

    #[test]
    fn after_the_finish_receipt_clocks_start_while_the_book_is_open() {
        // Sent at 1 s, finished at 2 s (an agentless send finishes at once).
        let clocks = |receipt: ReceiptPlan| book_of_one(receipt, 1_000, 2_000, &sla());
        // Delivered within its deadline, after the finish: the delivery clock kept the
        // book open, so the read clock starts.
        let on_time = clocks(delivered(1_000, Some(300)));
        assert_eq!(
            on_time
                .iter()
                .map(|c| (c.clock, c.outcome))
                .collect::<Vec<_>>(),
            vec![
                (ClockKind::Delivery, SlaOutcome::Compliant),
                (ClockKind::Read, SlaOutcome::Compliant)
            ]
        );
        // Read too late after the finish: settled missing_receipt at its deadline.
        assert_eq!(
            clocks(delivered(1_000, Some(5_000)))[1].outcome,
            SlaOutcome::MissingReceipt
        );
        // Delivered after the deadline and the finish: the book settled (missing receipt)
        // before, and a settled book starts nothing.
        let late = clocks(delivered(5_000, Some(300)));
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].outcome, SlaOutcome::MissingReceipt);
        assert_eq!(
            clocks(ReceiptPlan::Failed { after_ms: 5_000 })[0].outcome,
            SlaOutcome::MissingReceipt
        );
        // Unless another clock keeps the book open: a first reply delivered but unread
        // keeps its read clock running until 11.3 s (read threshold 10 s).
        let mut slow_read = sla();
        slow_read.read_ms = 10_000;
        let (mut planned, mut pending) = (Vec::new(), Vec::new());
        for (index, (receipt, sent)) in [
            (delivered(300, None), 1_000),
            (delivered(2_500, Some(300)), 1_500),
        ]
        .into_iter()
        .enumerate()
        {
            let (clocks, read) = receipt_clocks(index, &receipt, sent, 2_000, &slow_read);
            planned.extend(clocks);
            pending.extend(read);
        }
        assert_eq!(pending.len(), 1);
        let book = resolve(planned, pending, &slow_read);
        let second_read = book
            .iter()
            .find(|c| c.clock == ClockKind::Read && c.subject == SlaSubject::Outbound(1))
            .expect("started while the first read clock ran");
        assert_eq!(second_read.outcome, SlaOutcome::Compliant);
    }

    #[test]
    fn no_read_receipt_types_get_no_read_clock() {
        let mut sla = sla();
        sla.no_read_receipt
            .insert(EMULATED_MESSENGER_TYPE.to_owned());
        let clocks = book_of_one(delivered(300, Some(300)), 1_000, 20_000, &sla);
        assert_eq!(clocks.len(), 1);
        assert_eq!(clocks[0].clock, ClockKind::Delivery);
    }

    #[test]
    fn comparisons_within_the_margin_are_close_calls() {
        let near = book_of_one(delivered(1_800, None), 1_000, 20_000, &sla());
        assert!(near[0].close_call);
        // The read clock's start depends on that delivery being met: a close call too.
        assert!(near[1].close_call);
        let decided = book_of_one(delivered(300, None), 1_000, 20_000, &sla());
        assert!(decided.iter().all(|c| !c.close_call), "{decided:?}");
        // Delivered late, just before the finish: breached or missing, a close call.
        let edge = book_of_one(delivered(3_000, Some(100)), 1_000, 4_100, &sla());
        assert!(edge[0].close_call);
        assert_eq!(edge[0].outcome, SlaOutcome::Breached);
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
        let expected = ExpectedOutcomes::from_plan(&plan, sla());
        let mut outbound = 0;
        for (planned, expected) in plan.conversations.iter().zip(&expected.conversations) {
            assert_eq!(planned.customer_id, expected.customer_id);
            assert_eq!(expected.outbound().count(), planned.script.receipts().len());
            outbound += planned.script.receipts().len();
            // One delivery clock per outbound message, one answer clock per inbound
            // conversation.
            let count = |kind| expected.sla.iter().filter(|c| c.clock == kind).count();
            assert_eq!(count(ClockKind::Delivery), planned.script.receipts().len());
            match (&planned.script, expected.outcome) {
                (Script::Inbound(script), outcome) => {
                    assert_eq!(expected.ended, Some(true));
                    assert_eq!(count(ClockKind::Answer), 1);
                    assert_eq!(count(ClockKind::FirstResponse), 1);
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
                    assert_eq!(count(ClockKind::Answer), 0);
                }
                (Script::Voice(_), _) => panic!("the default scenario places no calls"),
            }
        }
        assert_eq!(expected.totals.outbound_messages, outbound);
        let delivery: u32 = expected.totals.sla_outcomes[&ClockKind::Delivery]
            .values()
            .sum();
        assert_eq!(delivery as usize, outbound);
        // Default timings are hundreds of milliseconds: every answer within 2 s.
        assert_eq!(
            expected.totals.sla_outcomes[&ClockKind::Answer].get(&SlaOutcome::Breached),
            None
        );
        let json = serde_json::to_value(&expected).unwrap();
        assert_eq!(json["sla"]["delivery_ms"], 2_000);
        let back: ExpectedOutcomes = serde_json::from_value(json).unwrap();
        assert_eq!(back, expected);
        assert!(describe_tallies(&expected.totals.sla_outcomes).starts_with("answer "));
    }

    #[test]
    fn comparing_records_names_every_difference() {
        use crate::crm::CrmRecord;
        let plan = Plan::generate(
            &Scenario::from_toml(
                "[[shapes]]\nname = \"one\"\nkind = \"inbound\"\nweight = 1\n\
                 [shapes.agents]\nanswer_after_ms = 300\nreply_after_ms = 300\n\
                 wrapup_after_ms = 8000\n[shapes.receipts]\ndelivered_after_ms = 300\n\
                 read_after_ms = 300\nread_share = 1.0\nnever_share = 0.0\nfailed_share = 0.0\n",
            )
            .unwrap(),
            &PlanOptions {
                conversations: 1,
                seed: 1,
                rate_per_second: None,
                customer_prefix: None,
            },
        );
        let mut expected = ExpectedOutcomes::from_plan(&plan, sla());
        let conversation = &mut expected.conversations[0];
        conversation.conversation_id = Some("c1".into());
        conversation.messages[0].message_id = Some("in-1".into());
        conversation.messages[1].message_id = Some("out-1".into());
        let record = |clock: &str, subject: (&str, &str), outcome: &str| CrmRecord {
            id: format!("c1/sla/{clock}/{}/outcome", subject.1),
            conversation_id: "c1".into(),
            kind: "sla.outcome".into(),
            payload: serde_json::json!({
                "clock": clock, subject.0: subject.1, "outcome": outcome,
            })
            .into(),
        };
        let mut records = vec![
            record("answer", ("participantId", "acd-1"), "compliant"),
            record("first_response", ("messageId", "in-1"), "compliant"),
            record("delivery", ("messageId", "out-1"), "compliant"),
        ];
        let partial = compare_sla(&expected, &records);
        assert_eq!(partial.matched, 3);
        assert_eq!(partial.missing, 1, "{partial:?}");
        records.push(record("read", ("messageId", "out-1"), "breached"));
        records.push(record("next_response", ("messageId", "in-1"), "abandoned"));
        let wrong = compare_sla(&expected, &records);
        assert_eq!(wrong.matched, 3);
        assert_eq!(wrong.differences.len(), 2, "{:?}", wrong.differences);
        assert!(wrong.differences[0].contains("breached, expected compliant"));
        assert!(wrong.differences[1].contains("unexpected next_response"));
        records.pop();
        records.pop();
        records.push(record("read", ("messageId", "out-1"), "compliant"));
        let equal = compare_sla(&expected, &records);
        assert_eq!(equal.differences, Vec::<String>::new());
        assert_eq!(equal.matched, 4);
        assert_eq!(equal.actual, expected.totals.sla_outcomes);
        assert_eq!(
            expected.tallies_by_conversation()["c1"],
            expected.totals.sla_outcomes
        );
    }

    /// The end-to-end SLA test's plan (tests/e2e/sla.rs): every outcome of every clock a
    /// simulation can produce, none a close call even with a 900 ms margin.
    #[test]
    fn the_demo_scenario_adds_calls_with_their_answer_clock_and_utterances() {
        let scenario =
            Scenario::from_toml(include_str!("../../config/examples/scenario-demo.toml")).unwrap();
        let plan = Plan::generate(
            &scenario,
            &PlanOptions {
                conversations: 300,
                seed: 7,
                rate_per_second: None,
                customer_prefix: None,
            },
        );
        let shapes: BTreeSet<&str> = plan
            .conversations
            .iter()
            .map(|c| c.shape.as_str())
            .collect();
        assert_eq!(shapes.len(), scenario.shapes.len(), "{shapes:?}");
        let thresholds = SlaThresholds {
            answer_ms: 2_000,
            first_response_ms: 4_000,
            next_response_ms: 4_000,
            delivery_ms: 2_000,
            read_ms: 2_000,
            no_read_receipt: BTreeSet::new(),
            margin_ms: 900,
        };
        let expected = ExpectedOutcomes::from_plan(&plan, thresholds);
        assert_eq!(expected.totals.sla_close_calls, 0);
        let calls: Vec<&ExpectedConversation> = expected
            .conversations
            .iter()
            .filter(|c| c.kind == ShapeKind::Voice)
            .collect();
        assert!(!calls.is_empty());
        for call in calls {
            // A call has no messages: its answer clock only, and no first response.
            assert_eq!(call.sla.len(), 1, "{call:?}");
            assert!(call.messages.is_empty());
            assert_eq!(call.ended, Some(true));
            let (outcome, utterances, agents) = match call.shape.as_str() {
                "call" => (SlaOutcome::Compliant, 4, 1),
                "slow-call" => (SlaOutcome::Breached, 2, 1),
                _ => (SlaOutcome::Abandoned, 0, 0),
            };
            assert_eq!(call.sla[0].clock, ClockKind::Answer);
            assert_eq!(call.sla[0].outcome, outcome, "{call:?}");
            assert_eq!(call.utterances, utterances, "{call:?}");
            assert_eq!(call.agent_participants, agents);
        }
        assert!(expected
            .conversations
            .iter()
            .flat_map(|c| &c.messages)
            .any(|m| m.has_attachment));
    }

    #[test]
    fn the_sla_scenario_covers_every_outcome_with_wide_margins() {
        let scenario =
            Scenario::from_toml(include_str!("../../config/examples/scenario-sla.toml")).unwrap();
        scenario.validate().unwrap();
        let plan = Plan::generate(
            &scenario,
            &PlanOptions {
                conversations: 12,
                seed: 3717,
                rate_per_second: None,
                customer_prefix: None,
            },
        );
        let shapes: BTreeSet<&str> = plan
            .conversations
            .iter()
            .map(|c| c.shape.as_str())
            .collect();
        assert_eq!(shapes.len(), scenario.shapes.len(), "{shapes:?}");
        let thresholds = SlaThresholds {
            answer_ms: 2_000,
            first_response_ms: 4_000,
            next_response_ms: 4_000,
            delivery_ms: 2_000,
            read_ms: 2_000,
            no_read_receipt: BTreeSet::new(),
            margin_ms: 900,
        };
        let expected = ExpectedOutcomes::from_plan(&plan, thresholds);
        assert_eq!(expected.totals.sla_close_calls, 0);
        let outcomes = |clock| -> Vec<SlaOutcome> {
            expected.totals.sla_outcomes[&clock]
                .keys()
                .copied()
                .collect()
        };
        use SlaOutcome::*;
        assert_eq!(
            outcomes(ClockKind::Answer),
            vec![Compliant, Breached, Abandoned]
        );
        assert_eq!(
            outcomes(ClockKind::FirstResponse),
            vec![Compliant, Breached, Abandoned]
        );
        assert_eq!(
            outcomes(ClockKind::Delivery),
            vec![Compliant, Breached, Failed, MissingReceipt]
        );
        assert_eq!(
            outcomes(ClockKind::Read),
            vec![Compliant, Breached, MissingReceipt]
        );
        // Agentless notices finish when sent: delivered on time afterwards, they start a
        // read clock; delivered late, after the book settled, none.
        for conversation in expected
            .conversations
            .iter()
            .filter(|c| c.kind == ShapeKind::Agentless)
        {
            let read = conversation.sla.iter().any(|c| c.clock == ClockKind::Read);
            assert_eq!(read, conversation.shape == "notice", "{conversation:?}");
        }
    }
}
