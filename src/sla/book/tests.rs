use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use proptest::prelude::*;

use super::*;
use crate::sla::{Calendar, OpeningRange, Share, SlaPolicy, Thresholds};

const QUEUE: &str = "q-sales";

/// Synthetic time: `s` seconds after a fixed Thursday noon (UTC).
fn t(seconds: f64) -> DateTime<Utc> {
    let base = Utc.with_ymd_and_hms(2026, 1, 15, 12, 0, 0).unwrap();
    base + TimeDelta::milliseconds((seconds * 1_000.0).round() as i64)
}

fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

/// answer 20 s, responses 60 s, delivery 60 s, read 600 s; warnings at 80 %; SMS has no
/// read receipts.
fn policy() -> SlaPolicy {
    SlaPolicy {
        thresholds: Thresholds {
            answer: secs(20),
            first_response: secs(60),
            next_response: secs(60),
            delivery: secs(60),
            read: secs(600),
        },
        warn_share: Share::default(),
        no_read_receipt: BTreeSet::from(["sms".to_owned()]),
        ..SlaPolicy::default()
    }
}

fn joined(participant: &str) -> Observation {
    Observation::QueueJoined {
        participant_id: participant.to_owned(),
        queue_id: Some(QUEUE.to_owned()),
    }
}

fn agent_connected() -> Observation {
    Observation::AgentConnected {
        participant_id: "agent-leg".to_owned(),
        queue_id: Some(QUEUE.to_owned()),
        user_id: Some("user-1".to_owned()),
    }
}

fn customer_left() -> Observation {
    Observation::CustomerLeft {
        participant_id: "customer".to_owned(),
    }
}

fn message(
    id: &str,
    direction: MessageDirection,
    sender: Sender,
    status: MessageStatus,
    time: Option<DateTime<Utc>>,
) -> Observation {
    Observation::Message {
        message_id: id.to_owned(),
        direction,
        sender,
        messenger_type: Some("whatsapp".to_owned()),
        queue_id: Some(QUEUE.to_owned()),
        status,
        message_time: time,
    }
}

fn from_customer(id: &str, time: DateTime<Utc>) -> Observation {
    message(
        id,
        MessageDirection::Inbound,
        Sender::Customer,
        MessageStatus::Received,
        Some(time),
    )
}

fn from_agent(id: &str, time: DateTime<Utc>) -> Observation {
    message(
        id,
        MessageDirection::Outbound,
        Sender::HumanAgent,
        MessageStatus::Sent,
        Some(time),
    )
}

fn from_bot(id: &str, time: DateTime<Utc>) -> Observation {
    message(
        id,
        MessageDirection::Outbound,
        Sender::Automated,
        MessageStatus::Sent,
        Some(time),
    )
}

fn receipt(id: &str, status: MessageStatus) -> Observation {
    message(
        id,
        MessageDirection::Outbound,
        Sender::Automated,
        status,
        None,
    )
}

fn sms_receipt(id: &str, status: MessageStatus) -> Observation {
    match receipt(id, status) {
        Observation::Message {
            message_id,
            direction,
            sender,
            queue_id,
            status,
            message_time,
            ..
        } => Observation::Message {
            message_id,
            direction,
            sender,
            messenger_type: Some("sms".to_owned()),
            queue_id,
            status,
            message_time,
        },
        other => other,
    }
}

/// Observations one at a time, each at its instant.
fn run(book: &mut SlaBook, steps: &[(f64, Observation)]) -> Vec<SlaSignal> {
    let policy = policy();
    let mut signals = Vec::new();
    for (at, observation) in steps {
        signals.extend(book.tick(&policy, t(*at)));
        signals.extend(book.observe(&policy, std::slice::from_ref(observation), t(*at)));
    }
    signals
}

type Verdict = (ClockKind, String, SlaSignalKind);

fn verdicts(signals: &[SlaSignal]) -> Vec<Verdict> {
    signals
        .iter()
        .map(|signal| (signal.clock, signal.subject.id().to_owned(), signal.kind))
        .collect()
}

fn outcome(kind: SlaOutcome) -> SlaSignalKind {
    SlaSignalKind::Outcome(kind)
}

fn v(clock: ClockKind, subject: &str, kind: SlaSignalKind) -> Verdict {
    (clock, subject.to_owned(), kind)
}

// ---- answer ---------------------------------------------------------------------------

#[test]
fn answer_met_exactly_at_the_threshold_is_compliant_and_just_above_is_breached_late() {
    let mut on_time = SlaBook::new("c");
    let signals = run(
        &mut on_time,
        &[(0.0, joined("acd")), (20.0, agent_connected())],
    );
    // The warning (at 16 s) was due while the clock was still open.
    assert_eq!(
        verdicts(&signals),
        vec![
            v(ClockKind::Answer, "acd", SlaSignalKind::Warning),
            v(ClockKind::Answer, "acd", outcome(SlaOutcome::Compliant)),
        ]
    );
    let last = signals.last().unwrap();
    assert_eq!(last.measured, secs(20));
    assert_eq!(last.threshold, secs(20));
    assert_eq!(last.fulfilled_at, Some(t(20.0)));
    assert_eq!(last.queue_id.as_deref(), Some(QUEUE));

    let mut late = SlaBook::new("c");
    let signals = run(
        &mut late,
        &[(0.0, joined("acd")), (20.001, agent_connected())],
    );
    assert_eq!(
        verdicts(&signals),
        vec![
            v(ClockKind::Answer, "acd", SlaSignalKind::Warning),
            v(ClockKind::Answer, "acd", SlaSignalKind::Breach),
            v(ClockKind::Answer, "acd", outcome(SlaOutcome::Breached)),
        ]
    );
    let breach = &signals[1];
    assert_eq!((breach.at, breach.deadline), (t(20.0), t(20.0)));
    let last = signals.last().unwrap();
    assert_eq!(last.measured, Duration::from_millis(20_001));
    assert_eq!(last.fulfilled_at, Some(t(20.001)), "achieved late");
    assert_eq!(last.overshoot(), Some(Duration::from_millis(1)));
    assert_eq!(
        signals[1].overshoot(),
        None,
        "a breach signal is not an outcome"
    );
}

#[test]
fn the_timer_warns_once_and_breaches_once() {
    let policy = policy();
    let mut book = SlaBook::new("c");
    assert!(book.observe(&policy, &[joined("acd")], t(0.0)).is_empty());
    assert_eq!(book.next_due(), Some(t(16.0)));
    assert!(book.tick(&policy, t(15.999)).is_empty());
    let warning = book.tick(&policy, t(16.0));
    assert_eq!(
        verdicts(&warning),
        vec![v(ClockKind::Answer, "acd", SlaSignalKind::Warning)]
    );
    assert_eq!(warning[0].measured, secs(16));
    assert!(book.tick(&policy, t(17.0)).is_empty());
    // Open exactly at the deadline is not yet a breach.
    assert!(book.tick(&policy, t(20.0)).is_empty());
    assert_eq!(book.next_due(), Some(t(20.0) + TimeDelta::nanoseconds(1)));
    let breach = book.tick(&policy, t(20.5));
    assert_eq!(
        verdicts(&breach),
        vec![v(ClockKind::Answer, "acd", SlaSignalKind::Breach)]
    );
    assert_eq!(breach[0].at, t(20.0), "a breach is dated at its deadline");
    assert_eq!(breach[0].measured, secs(20));
    assert!(book.tick(&policy, t(60.0)).is_empty());
    assert_eq!(book.next_due(), None);
    assert_eq!(book.open_clocks().len(), 1);
    assert!(book.open_clocks()[0].breached);

    let settled = book.observe(&policy, &[agent_connected()], t(90.0));
    assert_eq!(
        verdicts(&settled),
        vec![v(ClockKind::Answer, "acd", outcome(SlaOutcome::Breached))]
    );
    assert_eq!(settled[0].fulfilled_at, Some(t(90.0)));
    assert_eq!(settled[0].measured, secs(90));
    assert!(book.open_clocks().is_empty());
}

#[test]
fn a_clock_settled_before_its_warning_emits_neither_warning_nor_breach() {
    let mut book = SlaBook::new("c");
    let signals = run(
        &mut book,
        &[(0.0, joined("acd")), (15.9, agent_connected())],
    );
    assert_eq!(
        verdicts(&signals),
        vec![v(ClockKind::Answer, "acd", outcome(SlaOutcome::Compliant))]
    );
    assert!(book.tick(&policy(), t(100.0)).is_empty());
}

#[test]
fn the_customer_leaving_the_queue_abandons_the_answer_clock() {
    let mut book = SlaBook::new("c");
    let signals = run(&mut book, &[(0.0, joined("acd")), (5.0, customer_left())]);
    assert_eq!(
        verdicts(&signals),
        vec![v(ClockKind::Answer, "acd", outcome(SlaOutcome::Abandoned))]
    );
    assert_eq!(signals[0].fulfilled_at, None);
    assert_eq!(signals[0].measured, secs(5));

    // Waiting past the deadline and then hanging up: breach, then abandoned.
    let mut book = SlaBook::new("c");
    let signals = run(
        &mut book,
        &[
            (0.0, joined("acd")),
            (30.0, Observation::ConversationFinished),
        ],
    );
    assert_eq!(
        verdicts(&signals),
        vec![
            v(ClockKind::Answer, "acd", SlaSignalKind::Warning),
            v(ClockKind::Answer, "acd", SlaSignalKind::Breach),
            v(ClockKind::Answer, "acd", outcome(SlaOutcome::Abandoned)),
        ]
    );
    assert!(book.is_settled());
}

#[test]
fn a_transfer_to_another_queue_starts_a_new_answer_clock_and_a_repeat_starts_none() {
    let mut book = SlaBook::new("c");
    let signals = run(
        &mut book,
        &[
            (0.0, joined("acd-1")),
            (5.0, agent_connected()),
            (6.0, joined("acd-1")),
            (40.0, joined("acd-2")),
            (50.0, agent_connected()),
            (51.0, agent_connected()),
        ],
    );
    assert_eq!(
        verdicts(&signals),
        vec![
            v(ClockKind::Answer, "acd-1", outcome(SlaOutcome::Compliant)),
            v(ClockKind::Answer, "acd-2", outcome(SlaOutcome::Compliant)),
        ]
    );
}

// ---- responses ------------------------------------------------------------------------

#[test]
fn first_and_next_response_follow_the_customer_and_only_a_human_agent_answers() {
    let mut book = SlaBook::new("c");
    let signals = run(
        &mut book,
        &[
            (0.0, from_customer("c1", t(0.0))),
            (1.0, from_bot("bot-1", t(1.0))),
            (50.0, from_agent("a1", t(50.0))),
            (100.0, from_customer("c2", t(100.0))),
            (110.0, from_customer("c3", t(110.0))),
            (120.0, from_bot("bot-2", t(120.0))),
            (200.0, from_agent("a2", t(200.0))),
            (210.0, from_agent("a3", t(210.0))),
        ],
    );
    let responses: Vec<Verdict> = verdicts(&signals)
        .into_iter()
        .filter(|(clock, ..)| clock.is_response())
        .collect();
    assert_eq!(
        responses,
        vec![
            v(ClockKind::FirstResponse, "c1", SlaSignalKind::Warning),
            v(
                ClockKind::FirstResponse,
                "c1",
                outcome(SlaOutcome::Compliant)
            ),
            v(ClockKind::NextResponse, "c2", SlaSignalKind::Warning),
            v(ClockKind::NextResponse, "c2", SlaSignalKind::Breach),
            v(ClockKind::NextResponse, "c2", outcome(SlaOutcome::Breached)),
        ]
    );
    let late = signals
        .iter()
        .find(|signal| signal.kind == outcome(SlaOutcome::Breached))
        .unwrap();
    assert_eq!(late.fulfilled_at, Some(t(200.0)));
    assert_eq!(late.measured, secs(100));
    assert_eq!(late.started_at, t(100.0));
    assert_eq!(late.deadline, t(160.0));
}

#[test]
fn a_customer_message_and_its_reply_first_seen_together_are_ordered_by_their_own_times() {
    let policy = policy();
    let mut book = SlaBook::new("c");
    // Reply listed first, written later: it answers.
    let signals = book.observe(
        &policy,
        &[from_agent("a1", t(90.0)), from_customer("c1", t(30.0))],
        t(100.0),
    );
    let responses: Vec<&SlaSignal> = signals
        .iter()
        .filter(|signal| signal.clock.is_response())
        .collect();
    assert_eq!(responses.len(), 2, "{responses:?}");
    assert_eq!(responses[0].kind, SlaSignalKind::Warning);
    assert_eq!(responses[1].kind, outcome(SlaOutcome::Compliant));
    assert_eq!(responses[1].measured, secs(60));
    assert_eq!(responses[1].started_at, t(30.0));

    // A reply written before the customer's message answers nothing.
    let mut book = SlaBook::new("c");
    book.observe(
        &policy,
        &[from_customer("c1", t(30.0)), from_agent("a0", t(20.0))],
        t(100.0),
    );
    let open = book.open_clocks();
    assert!(open
        .iter()
        .any(|clock| clock.kind == ClockKind::FirstResponse && clock.subject.id() == "c1"));
}

#[test]
fn a_customer_message_observed_after_a_later_reply_is_already_answered() {
    let mut book = SlaBook::new("c");
    let signals = run(
        &mut book,
        &[
            (0.0, from_customer("c1", t(0.0))),
            (10.0, from_agent("a1", t(10.0))),
            // Written at 5 s, before the reply, but only seen now.
            (20.0, from_customer("c-late", t(5.0))),
        ],
    );
    assert!(!signals
        .iter()
        .any(|signal| signal.clock == ClockKind::NextResponse));
    assert!(book
        .open_clocks()
        .iter()
        .all(|clock| !clock.kind.is_response()));
}

#[test]
fn without_message_times_observation_order_decides() {
    let policy = policy();
    let mut book = SlaBook::new("c");
    let customer = message(
        "c1",
        MessageDirection::Inbound,
        Sender::Customer,
        MessageStatus::Received,
        None,
    );
    let reply = message(
        "a1",
        MessageDirection::Outbound,
        Sender::HumanAgent,
        MessageStatus::Queued,
        None,
    );
    book.observe(&policy, &[customer], t(0.0));
    let signals = book.observe(&policy, &[reply], t(61.0));
    let response = signals
        .iter()
        .find(|signal| {
            signal.clock == ClockKind::FirstResponse
                && matches!(signal.kind, SlaSignalKind::Outcome(_))
        })
        .unwrap();
    assert_eq!(response.kind, outcome(SlaOutcome::Breached));
    assert_eq!(response.fulfilled_at, Some(t(61.0)));
}

#[test]
fn an_unanswered_message_when_the_conversation_ends_is_abandoned_before_and_breached_after_the_deadline(
) {
    let mut book = SlaBook::new("c");
    let signals = run(
        &mut book,
        &[
            (0.0, from_customer("bye", t(0.0))),
            (30.0, Observation::ConversationFinished),
        ],
    );
    assert_eq!(
        verdicts(&signals),
        vec![v(
            ClockKind::FirstResponse,
            "bye",
            outcome(SlaOutcome::Abandoned)
        )]
    );

    let policy = policy();
    let mut book = SlaBook::new("c");
    book.observe(&policy, &[from_customer("c1", t(0.0))], t(0.0));
    // No tick ran (the daemon was down): the warning and breach come before the outcome.
    let signals = book.observe(&policy, &[Observation::ConversationFinished], t(90.0));
    assert_eq!(
        verdicts(&signals),
        vec![
            v(ClockKind::FirstResponse, "c1", SlaSignalKind::Warning),
            v(ClockKind::FirstResponse, "c1", SlaSignalKind::Breach),
            v(
                ClockKind::FirstResponse,
                "c1",
                outcome(SlaOutcome::Breached)
            ),
        ]
    );
    assert_eq!(signals[2].fulfilled_at, None, "never met");
    assert_eq!(signals[2].measured, secs(90));
    assert!(book.is_settled());
}

#[test]
fn an_undelivered_agent_reply_still_answers_the_customer() {
    let mut book = SlaBook::new("c");
    let signals = run(
        &mut book,
        &[
            (0.0, from_customer("c1", t(0.0))),
            (10.0, from_agent("a1", t(10.0))),
            (11.0, receipt("a1", MessageStatus::DeliveryFailed)),
        ],
    );
    assert_eq!(
        verdicts(&signals),
        vec![
            v(
                ClockKind::FirstResponse,
                "c1",
                outcome(SlaOutcome::Compliant)
            ),
            v(ClockKind::Delivery, "a1", outcome(SlaOutcome::Failed)),
        ]
    );
}

// ---- receipts -------------------------------------------------------------------------

#[test]
fn a_receipt_after_the_conversation_finished_still_starts_and_settles_the_read_clock() {
    // E.g. a conversation rebuilt after a restart: the book knows it finished, and the
    // delivery receipt is first seen now.
    let mut book = SlaBook::new("c");
    let mut signals = run(
        &mut book,
        &[
            (0.0, from_bot("m", t(0.0))),
            (10.0, Observation::ConversationFinished),
            (30.0, receipt("m", MessageStatus::DeliverySuccess)),
            (40.0, receipt("m", MessageStatus::Read)),
        ],
    );
    signals.extend(book.tick(&policy(), t(5_000.0)));
    let outcomes: Vec<Verdict> = verdicts(&signals)
        .into_iter()
        .filter(|(_, _, kind)| matches!(kind, SlaSignalKind::Outcome(_)))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            v(ClockKind::Delivery, "m", outcome(SlaOutcome::Compliant)),
            v(ClockKind::Read, "m", outcome(SlaOutcome::Compliant)),
        ]
    );
    assert!(book.is_settled());

    // A delivery first seen after the end whose read never comes: missing_receipt.
    let mut book = SlaBook::new("c");
    let mut signals = run(
        &mut book,
        &[
            (0.0, from_bot("m", t(0.0))),
            (10.0, Observation::ConversationFinished),
            (30.0, receipt("m", MessageStatus::DeliverySuccess)),
        ],
    );
    signals.extend(book.tick(&policy(), t(5_000.0)));
    assert!(verdicts(&signals).contains(&v(
        ClockKind::Read,
        "m",
        outcome(SlaOutcome::MissingReceipt)
    )));
    assert!(book.is_settled());
}

#[test]
fn no_response_clock_starts_after_the_conversation_finished() {
    let mut book = SlaBook::new("c");
    let signals = run(
        &mut book,
        &[
            (0.0, Observation::ConversationFinished),
            (5.0, from_customer("late", t(5.0))),
        ],
    );
    assert!(signals.is_empty(), "{signals:?}");
    assert!(book.open_clocks().is_empty());
}

#[test]
fn delivery_and_read_are_compliant_at_the_threshold_and_breached_just_above() {
    let mut book = SlaBook::new("c");
    let signals = run(
        &mut book,
        &[
            (0.0, from_bot("m", t(0.0))),
            (60.0, receipt("m", MessageStatus::DeliverySuccess)),
            (660.0, receipt("m", MessageStatus::Read)),
        ],
    );
    let outcomes: Vec<Verdict> = verdicts(&signals)
        .into_iter()
        .filter(|(_, _, kind)| matches!(kind, SlaSignalKind::Outcome(_)))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            v(ClockKind::Delivery, "m", outcome(SlaOutcome::Compliant)),
            v(ClockKind::Read, "m", outcome(SlaOutcome::Compliant)),
        ]
    );

    let mut book = SlaBook::new("c");
    let signals = run(
        &mut book,
        &[
            (0.0, from_bot("m", t(0.0))),
            (60.001, receipt("m", MessageStatus::DeliverySuccess)),
            (660.002, receipt("m", MessageStatus::Read)),
        ],
    );
    let breached: Vec<&SlaSignal> = signals
        .iter()
        .filter(|signal| signal.kind == outcome(SlaOutcome::Breached))
        .collect();
    assert_eq!(breached.len(), 2);
    assert_eq!(breached[0].clock, ClockKind::Delivery);
    assert_eq!(breached[0].fulfilled_at, Some(t(60.001)));
    assert_eq!(breached[1].clock, ClockKind::Read);
    assert_eq!(breached[1].started_at, t(60.001));
    assert_eq!(breached[1].measured, Duration::from_millis(600_001));
}

#[test]
fn a_failed_delivery_settles_failed_and_a_later_delivered_does_not_revive_it() {
    let mut book = SlaBook::new("c");
    let signals = run(
        &mut book,
        &[
            (0.0, receipt("m", MessageStatus::Sent)),
            (5.0, receipt("m", MessageStatus::DeliveryFailed)),
            (6.0, receipt("m", MessageStatus::DeliverySuccess)),
            (7.0, receipt("m", MessageStatus::Read)),
            (8.0, receipt("m", MessageStatus::Failed)),
        ],
    );
    assert_eq!(
        verdicts(&signals),
        vec![v(ClockKind::Delivery, "m", outcome(SlaOutcome::Failed))]
    );
    assert!(
        book.open_clocks().is_empty(),
        "no read clock after a failure"
    );
}

#[test]
fn a_failure_after_delivery_fails_the_open_read_clock() {
    let mut book = SlaBook::new("c");
    let signals = run(
        &mut book,
        &[
            (0.0, receipt("m", MessageStatus::Sent)),
            (5.0, receipt("m", MessageStatus::DeliverySuccess)),
            (6.0, receipt("m", MessageStatus::DeliveryFailed)),
        ],
    );
    assert_eq!(
        verdicts(&signals),
        vec![
            v(ClockKind::Delivery, "m", outcome(SlaOutcome::Compliant)),
            v(ClockKind::Read, "m", outcome(SlaOutcome::Failed)),
        ]
    );
}

#[test]
fn read_and_failure_in_one_snapshot_count_as_delivered_and_read() {
    let policy = policy();
    let mut book = SlaBook::new("c");
    book.observe(&policy, &[receipt("m", MessageStatus::Sent)], t(0.0));
    let signals = book.observe(
        &policy,
        &[
            receipt("m", MessageStatus::DeliveryFailed),
            receipt("m", MessageStatus::Read),
            receipt("m", MessageStatus::DeliverySuccess),
        ],
        t(10.0),
    );
    assert_eq!(
        verdicts(&signals),
        vec![
            v(ClockKind::Delivery, "m", outcome(SlaOutcome::Compliant)),
            v(ClockKind::Read, "m", outcome(SlaOutcome::Compliant)),
        ]
    );
}

#[test]
fn a_message_first_seen_read_is_delivered_and_read_at_once() {
    let policy = policy();
    let mut book = SlaBook::new("c");
    let signals = book.observe(
        &policy,
        &[
            receipt("m", MessageStatus::Read),
            receipt("m", MessageStatus::DeliverySuccess),
            receipt("m", MessageStatus::Sent),
        ],
        t(3.0),
    );
    assert_eq!(
        verdicts(&signals),
        vec![
            v(ClockKind::Delivery, "m", outcome(SlaOutcome::Compliant)),
            v(ClockKind::Read, "m", outcome(SlaOutcome::Compliant)),
        ]
    );
    assert!(signals
        .iter()
        .all(|signal| signal.measured == Duration::ZERO));
}

#[test]
fn messenger_types_without_read_receipts_get_no_read_clock() {
    let mut book = SlaBook::new("c");
    let signals = run(
        &mut book,
        &[
            (0.0, sms_receipt("m", MessageStatus::Sent)),
            (5.0, sms_receipt("m", MessageStatus::DeliverySuccess)),
            (10.0, Observation::ConversationFinished),
        ],
    );
    assert_eq!(
        verdicts(&signals),
        vec![v(ClockKind::Delivery, "m", outcome(SlaOutcome::Compliant))]
    );
    assert!(book.is_settled());
}

#[test]
fn a_blocked_recipient_breaches_at_the_deadline_then_misses_its_receipt_when_the_conversation_ends()
{
    let policy = policy();
    let mut book = SlaBook::new("c");
    book.observe(&policy, &[receipt("m", MessageStatus::Sent)], t(0.0));
    // Finished before the deadline: a late receipt could still come, so the clock waits.
    assert!(book
        .observe(&policy, &[Observation::ConversationFinished], t(10.0))
        .is_empty());
    assert!(!book.is_settled());
    assert_eq!(
        verdicts(&book.tick(&policy, t(48.0))),
        vec![v(ClockKind::Delivery, "m", SlaSignalKind::Warning)]
    );
    let signals = book.tick(&policy, t(61.0));
    assert_eq!(
        verdicts(&signals),
        vec![
            v(ClockKind::Delivery, "m", SlaSignalKind::Breach),
            v(
                ClockKind::Delivery,
                "m",
                outcome(SlaOutcome::MissingReceipt)
            ),
        ]
    );
    assert_eq!(
        signals[1].at,
        t(60.0),
        "settled at the deadline, not at the tick"
    );
    assert!(book.is_settled());
    assert_eq!(book.next_due(), None);

    // Breached by the timer long before the conversation ended: settled at the end.
    let mut book = SlaBook::new("c");
    book.observe(&policy, &[receipt("m", MessageStatus::Sent)], t(0.0));
    assert_eq!(book.tick(&policy, t(100.0)).len(), 2);
    let signals = book.observe(&policy, &[Observation::ConversationFinished], t(300.0));
    assert_eq!(
        verdicts(&signals),
        vec![v(
            ClockKind::Delivery,
            "m",
            outcome(SlaOutcome::MissingReceipt)
        )]
    );
    assert_eq!(signals[0].at, t(300.0));
    assert!(book.is_settled());
}

#[test]
fn a_receipt_arriving_after_the_end_but_before_the_deadline_still_counts() {
    let mut book = SlaBook::new("c");
    let signals = run(
        &mut book,
        &[
            (0.0, receipt("m", MessageStatus::Sent)),
            (10.0, Observation::ConversationFinished),
            (20.0, receipt("m", MessageStatus::DeliverySuccess)),
            (21.0, receipt("other", MessageStatus::Sent)),
        ],
    );
    assert_eq!(
        verdicts(&signals),
        vec![v(ClockKind::Delivery, "m", outcome(SlaOutcome::Compliant))]
    );
    // Receipt clocks still start after the end (the read clock of `m`, the delivery clock
    // of `other`) and settle once their deadlines pass.
    assert!(!book.is_settled());
    let late = book.tick(&policy(), t(5_000.0));
    let outcomes: Vec<Verdict> = verdicts(&late)
        .into_iter()
        .filter(|(_, _, kind)| matches!(kind, SlaSignalKind::Outcome(_)))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            v(ClockKind::Read, "m", outcome(SlaOutcome::MissingReceipt)),
            v(
                ClockKind::Delivery,
                "other",
                outcome(SlaOutcome::MissingReceipt)
            ),
        ]
    );
    assert!(book.is_settled());
}

// ---- policy: overrides and calendars --------------------------------------------------

#[test]
fn queue_overrides_and_calendars_shape_the_deadline() {
    let mut policy = policy();
    let mut overrides = crate::sla::ThresholdOverrides::default();
    overrides.set(ClockKind::FirstResponse, secs(5 * 60));
    policy.queue_thresholds.insert(QUEUE.to_owned(), overrides);
    let office: [Vec<OpeningRange>; 7] = std::array::from_fn(|day| {
        if day < 5 {
            vec![OpeningRange::parse("09:00-18:00").unwrap()]
        } else {
            Vec::new()
        }
    });
    let calendar = Calendar::new(chrono_tz::Europe::Berlin, office, BTreeSet::new()).unwrap();
    policy.calendars.insert("office".to_owned(), calendar);
    policy
        .queue_calendars
        .insert(QUEUE.to_owned(), "office".to_owned());

    // Thursday 2026-01-15 17:59 Berlin = 16:59 UTC.
    let start = Utc.with_ymd_and_hms(2026, 1, 15, 16, 59, 0).unwrap();
    let mut book = SlaBook::new("c");
    book.observe(&policy, &[from_customer("c1", start)], start);
    let open = book.open_clocks();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].calendar.as_deref(), Some("office"));
    assert_eq!(open[0].threshold, secs(300));
    // Friday 09:04 Berlin.
    let due = Utc.with_ymd_and_hms(2026, 1, 16, 8, 4, 0).unwrap();
    assert_eq!(open[0].deadline, due);
    // A reply the next morning at 09:03 Berlin: 4 minutes of open time, compliant.
    let reply = Utc.with_ymd_and_hms(2026, 1, 16, 8, 3, 0).unwrap();
    let signals = book.observe(&policy, &[from_agent("a1", reply)], reply);
    let settled = signals.last().unwrap();
    assert_eq!(settled.kind, outcome(SlaOutcome::Compliant));
    assert_eq!(settled.measured, secs(4 * 60));
    assert_eq!(settled.calendar.as_deref(), Some("office"));
}

// ---- the book as a whole --------------------------------------------------------------

/// A conversation touching every clock and outcome.
fn full_scenario() -> Vec<(f64, Vec<Observation>)> {
    vec![
        (0.0, vec![joined("acd"), from_customer("c1", t(0.0))]),
        (12.0, vec![agent_connected()]),
        (
            20.0,
            vec![from_agent("a1", t(20.0)), from_bot("b1", t(20.0))],
        ),
        (25.0, vec![receipt("a1", MessageStatus::DeliverySuccess)]),
        (30.0, vec![receipt("b1", MessageStatus::DeliveryFailed)]),
        (40.0, vec![from_customer("c2", t(40.0))]),
        (45.0, vec![sms_receipt("s1", MessageStatus::Sent)]),
        (130.0, vec![from_agent("a2", t(130.0))]),
        (140.0, vec![receipt("a2", MessageStatus::Read)]),
        (150.0, vec![from_customer("c3", t(150.0))]),
        (160.0, vec![joined("acd-2")]),
        (170.0, vec![customer_left()]),
        (200.0, vec![Observation::ConversationFinished]),
    ]
}

fn play(
    book: &mut SlaBook,
    policy: &SlaPolicy,
    steps: &[(f64, Vec<Observation>)],
) -> Vec<SlaSignal> {
    let mut signals = Vec::new();
    for (at, observations) in steps {
        signals.extend(book.tick(policy, t(*at)));
        signals.extend(book.observe(policy, observations, t(*at)));
    }
    signals.extend(book.tick(policy, t(10_000.0)));
    signals
}

#[test]
fn every_clock_settles_with_exactly_one_outcome_and_the_tallies_count_them() {
    let policy = policy();
    let mut book = SlaBook::new("conv-1");
    let signals = play(&mut book, &policy, &full_scenario());
    assert!(book.is_settled());

    let mut outcomes: BTreeMap<(ClockKind, String), Vec<SlaOutcome>> = BTreeMap::new();
    for signal in &signals {
        if let SlaSignalKind::Outcome(result) = signal.kind {
            outcomes
                .entry((signal.clock, signal.subject.id().to_owned()))
                .or_default()
                .push(result);
        }
    }
    let expected: BTreeMap<(ClockKind, String), Vec<SlaOutcome>> = [
        ((ClockKind::Answer, "acd"), SlaOutcome::Compliant),
        ((ClockKind::Answer, "acd-2"), SlaOutcome::Abandoned),
        ((ClockKind::FirstResponse, "c1"), SlaOutcome::Compliant),
        ((ClockKind::NextResponse, "c2"), SlaOutcome::Breached),
        ((ClockKind::NextResponse, "c3"), SlaOutcome::Abandoned),
        ((ClockKind::Delivery, "a1"), SlaOutcome::Compliant),
        ((ClockKind::Read, "a1"), SlaOutcome::MissingReceipt),
        ((ClockKind::Delivery, "b1"), SlaOutcome::Failed),
        ((ClockKind::Delivery, "s1"), SlaOutcome::MissingReceipt),
        ((ClockKind::Delivery, "a2"), SlaOutcome::Compliant),
        ((ClockKind::Read, "a2"), SlaOutcome::Compliant),
    ]
    .into_iter()
    .map(|((clock, subject), result)| ((clock, subject.to_owned()), vec![result]))
    .collect();
    assert_eq!(outcomes, expected);

    let tallies = book.tallies();
    assert_eq!(tallies[&ClockKind::Delivery][&SlaOutcome::Compliant], 2);
    assert_eq!(
        tallies[&ClockKind::Delivery][&SlaOutcome::MissingReceipt],
        1
    );
    assert_eq!(tallies[&ClockKind::Answer][&SlaOutcome::Abandoned], 1);
    let total: u32 = tallies.values().flat_map(BTreeMap::values).sum();
    assert_eq!(total as usize, expected.len());
    assert_eq!(
        serde_json::to_value(&tallies).unwrap()["next_response"]["breached"],
        1
    );

    // Warnings and breaches at most once per clock.
    let mut seen = BTreeSet::new();
    for signal in &signals {
        if !matches!(signal.kind, SlaSignalKind::Outcome(_)) {
            let key = (
                signal.clock,
                signal.subject.clone(),
                format!("{:?}", signal.kind),
            );
            assert!(seen.insert(key), "twice: {signal:?}");
        }
    }
}

#[test]
fn a_book_restored_from_json_mid_flight_emits_the_same_future_signals() {
    let policy = policy();
    let steps = full_scenario();
    for split in 1..steps.len() {
        let mut book = SlaBook::new("conv-1");
        play_prefix(&mut book, &policy, &steps[..split]);
        let json = serde_json::to_string(&book).unwrap();
        let mut restored: SlaBook = serde_json::from_str(&json).unwrap();
        assert_eq!(restored, book);
        assert_eq!(restored.next_due(), book.next_due());
        let original = play(&mut book, &policy, &steps[split..]);
        let resumed = play(&mut restored, &policy, &steps[split..]);
        assert_eq!(original, resumed, "split at {split}");
    }
}

fn play_prefix(book: &mut SlaBook, policy: &SlaPolicy, steps: &[(f64, Vec<Observation>)]) {
    for (at, observations) in steps {
        book.tick(policy, t(*at));
        book.observe(policy, observations, t(*at));
    }
}

#[test]
fn signals_serialize_with_snake_case_names() {
    let mut book = SlaBook::new("c");
    let signals = run(&mut book, &[(0.0, joined("acd")), (5.0, agent_connected())]);
    let json = serde_json::to_value(&signals[0]).unwrap();
    assert_eq!(json["kind"], serde_json::json!({"outcome": "compliant"}));
    assert_eq!(json["clock"], "answer");
    assert_eq!(
        json["subject"],
        serde_json::json!({"participant_id": "acd"})
    );
    assert_eq!(ClockKind::FirstResponse.as_str(), "first_response");
    assert_eq!(SlaOutcome::MissingReceipt.as_str(), "missing_receipt");
}

// ---- properties -----------------------------------------------------------------------

fn any_status() -> impl Strategy<Value = MessageStatus> {
    prop_oneof![
        Just(MessageStatus::Queued),
        Just(MessageStatus::Sent),
        Just(MessageStatus::DeliverySuccess),
        Just(MessageStatus::Read),
        Just(MessageStatus::DeliveryFailed),
        Just(MessageStatus::Failed),
    ]
}

fn is_failure(status: &MessageStatus) -> bool {
    matches!(
        status,
        MessageStatus::DeliveryFailed | MessageStatus::Failed
    )
}

fn is_success(status: &MessageStatus) -> bool {
    matches!(status, MessageStatus::DeliverySuccess | MessageStatus::Read)
}

/// Outcome and fulfilment per clock: what the order must not change.
type Settled = BTreeMap<ClockKind, (SlaSignalKind, Option<DateTime<Utc>>)>;

/// Outcomes only, keyed by clock.
fn settled(signals: &[SlaSignal]) -> Settled {
    signals
        .iter()
        .filter(|signal| matches!(signal.kind, SlaSignalKind::Outcome(_)))
        .map(|signal| (signal.clock, (signal.kind, signal.fulfilled_at)))
        .collect()
}

/// The message is first seen `sent` at 0; the receipts come at `at`, in `batches`.
fn receipts_outcome(
    messenger: &str,
    batches: &[Vec<MessageStatus>],
    at: f64,
) -> (Settled, SlaBook) {
    let policy = policy();
    let observe = |status: &MessageStatus| {
        if messenger == "sms" {
            sms_receipt("m", status.clone())
        } else {
            receipt("m", status.clone())
        }
    };
    let mut book = SlaBook::new("c");
    let mut signals = book.observe(&policy, &[observe(&MessageStatus::Sent)], t(0.0));
    for batch in batches {
        let batch: Vec<Observation> = batch.iter().map(observe).collect();
        signals.extend(book.observe(&policy, &batch, t(at)));
    }
    signals.extend(book.observe(&policy, &[Observation::ConversationFinished], t(at)));
    signals.extend(book.tick(&policy, t(at + 10_000.0)));
    (settled(&signals), book)
}

proptest! {
    /// Any order and duplication of one message's receipts, seen in one snapshot, gives the
    /// outcomes of the same receipts applied once in lifecycle order.
    #[test]
    fn receipts_in_one_snapshot_give_the_same_outcomes_in_any_order(
        statuses in proptest::collection::vec(any_status(), 1..6),
        duplicates in proptest::collection::vec(0usize..6, 0..6),
        shuffle in any::<u64>(),
        at in prop_oneof![Just(30.0), Just(60.0), Just(60.001), Just(700.0)],
        messenger in prop_oneof![Just("whatsapp"), Just("sms")],
    ) {
        let mut canonical = statuses.clone();
        canonical.sort_by_key(status_rank);
        canonical.dedup();
        let mut shuffled = statuses.clone();
        for index in duplicates {
            shuffled.push(statuses[index % statuses.len()].clone());
        }
        shuffle_with(&mut shuffled, shuffle);
        let (expected, _) = receipts_outcome(messenger, &[canonical], at);
        let (actual, _) = receipts_outcome(messenger, &[shuffled], at);
        prop_assert_eq!(actual, expected);
    }

    /// Without conflicting terminal facts (success and failure), the receipts may also be
    /// split over several snapshots, in any order, duplicated: same outcomes.
    #[test]
    fn receipts_over_several_snapshots_give_the_same_outcomes_in_any_order(
        statuses in proptest::collection::vec(any_status(), 1..6),
        duplicates in proptest::collection::vec(0usize..6, 0..6),
        cuts in proptest::collection::vec(0usize..12, 0..4),
        shuffle in any::<u64>(),
        at in prop_oneof![Just(30.0), Just(60.0), Just(60.001), Just(700.0)],
        messenger in prop_oneof![Just("whatsapp"), Just("sms")],
    ) {
        let conflicting = statuses.iter().any(is_failure) && statuses.iter().any(is_success);
        prop_assume!(!conflicting);
        let mut shuffled = statuses.clone();
        for index in duplicates {
            shuffled.push(statuses[index % statuses.len()].clone());
        }
        shuffle_with(&mut shuffled, shuffle);
        let mut batches = Vec::new();
        let mut rest = shuffled.as_slice();
        for cut in cuts {
            let (head, tail) = rest.split_at(cut.min(rest.len()));
            batches.push(head.to_vec());
            rest = tail;
        }
        batches.push(rest.to_vec());
        let (expected, _) = receipts_outcome(messenger, &[statuses], at);
        let (actual, book) = receipts_outcome(messenger, &batches, at);
        prop_assert_eq!(actual, expected);
        prop_assert!(book.is_settled());
    }

    /// `observe` with the same input twice emits nothing the second time, and the book is
    /// unchanged; the same holds for `tick`.
    #[test]
    fn observing_the_same_input_twice_changes_nothing(
        steps in proptest::collection::vec(
            (proptest::collection::vec(any_observation(), 0..5), 0.0f64..100.0),
            1..12,
        ),
    ) {
        let policy = policy();
        let mut book = SlaBook::new("c");
        let mut now = 0.0;
        for (observations, advance) in steps {
            now += advance;
            book.tick(&policy, t(now));
            book.observe(&policy, &observations, t(now));
            let before = book.clone();
            prop_assert!(book.observe(&policy, &observations, t(now)).is_empty());
            prop_assert!(book.tick(&policy, t(now)).is_empty());
            prop_assert_eq!(&book, &before);
        }
    }
}

fn any_observation() -> impl Strategy<Value = Observation> {
    let ids = prop_oneof![Just("m1"), Just("m2"), Just("m3")];
    let time = proptest::option::of(0.0f64..400.0);
    prop_oneof![
        prop_oneof![Just("acd-1"), Just("acd-2")].prop_map(joined),
        Just(agent_connected()),
        Just(customer_left()),
        Just(Observation::ConversationFinished),
        (ids.clone(), time.clone()).prop_map(|(id, time)| message(
            &format!("c-{id}"),
            MessageDirection::Inbound,
            Sender::Customer,
            MessageStatus::Received,
            time.map(t),
        )),
        (
            ids,
            any_status(),
            prop_oneof![Just(Sender::HumanAgent), Just(Sender::Automated)],
            time,
        )
            .prop_map(|(id, status, sender, time)| message(
                id,
                MessageDirection::Outbound,
                sender,
                status,
                time.map(t),
            )),
    ]
}

/// Fisher–Yates with a seeded generator, so a failing case replays.
fn shuffle_with<T>(items: &mut [T], seed: u64) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for i in (1..items.len()).rev() {
        let j = rng.gen_range(0..=i);
        items.swap(i, j);
    }
}

/// The `clocks started` metric counts each clock once, when it starts: not the clocks that
/// were already open, and also those started and settled by the same observation.
#[test]
fn clocks_started_names_only_the_clocks_an_observation_started() {
    let policy = policy();
    let mut book = SlaBook::new("c1");
    let before = book.open_clocks();
    let signals = book.observe(&policy, &[from_customer("m1", t(0.0))], t(0.0));
    let after = book.open_clocks();
    assert_eq!(
        clocks_started(&before, &after, &signals),
        vec![ClockKind::FirstResponse]
    );

    // The agent's reply settles first_response and starts delivery; a second reply
    // delivered at once starts and settles its own delivery clock in the same observation.
    let before = book.open_clocks();
    let signals = book.observe(
        &policy,
        &[
            from_agent("m2", t(1.0)),
            from_agent("m3", t(1.0)),
            receipt("m3", MessageStatus::DeliverySuccess),
        ],
        t(1.0),
    );
    let after = book.open_clocks();
    let mut started = clocks_started(&before, &after, &signals);
    started.sort();
    let mut expected = vec![ClockKind::Delivery, ClockKind::Delivery];
    expected.extend(
        after
            .iter()
            .filter(|c| c.kind == ClockKind::Read)
            .map(|c| c.kind),
    );
    expected.sort();
    assert_eq!(started, expected, "open after: {after:?}");
}

#[test]
fn the_signals_a_book_emitted_are_rebuilt_from_its_clocks_exactly() {
    let policy = policy();
    let scenario = full_scenario();
    // At every point of the conversation, not only at its end: a partition may be taken
    // over while clocks are open, warned or breached.
    for cut in 0..=scenario.len() {
        let mut book = SlaBook::new("conv-1");
        let mut emitted = Vec::new();
        for (at, observations) in &scenario[..cut] {
            emitted.extend(book.tick(&policy, t(*at)));
            emitted.extend(book.observe(&policy, observations, t(*at)));
        }
        if cut == scenario.len() {
            emitted.extend(book.tick(&policy, t(10_000.0)));
        }
        let key = |signal: &SlaSignal| format!("{signal:?}");
        let mut expected: Vec<String> = emitted.iter().map(key).collect();
        let mut rebuilt: Vec<String> = book.emitted_signals(&policy).iter().map(key).collect();
        expected.sort();
        rebuilt.sort();
        assert_eq!(rebuilt, expected, "after {cut} steps");
        // A book read back from JSON (the outbox, NATS KV) rebuilds the same.
        let stored: SlaBook = serde_json::from_value(serde_json::to_value(&book).unwrap()).unwrap();
        let mut reread: Vec<String> = stored.emitted_signals(&policy).iter().map(key).collect();
        reread.sort();
        assert_eq!(reread, expected, "after {cut} steps, read back");
    }
}
