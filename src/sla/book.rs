//! [`SlaBook`]: one conversation's SLA clocks, the engine that applies the rules of the
//! [module docs](super) to observations and timer ticks.
//!
//! A clock's warning instant and deadline are fixed when it starts (from the policy of that
//! moment) and persisted with the book, so a restart with the same book emits the same
//! signals. A warning is due at its instant; a breach is due once the clock is still open
//! *after* its deadline (met exactly at the deadline is compliant), so [`SlaBook::next_due`]
//! reports a breach one nanosecond after the deadline.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::{
    ClockKind, ClockSubject, MessageDirection, MessageStatus, Observation, Sender, SlaOutcome,
    SlaPolicy, SlaSignal, SlaSignalKind,
};

/// Outcome counts by clock and outcome, for the conversation summary. Serializes as
/// `{"answer": {"compliant": 1}, ...}`.
pub type SlaTallies = BTreeMap<ClockKind, BTreeMap<SlaOutcome, u32>>;

/// One open clock, for the admin view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenClock {
    pub kind: ClockKind,
    pub subject: ClockSubject,
    pub queue_id: Option<String>,
    pub calendar: Option<String>,
    pub threshold: Duration,
    pub started_at: DateTime<Utc>,
    pub warn_at: DateTime<Utc>,
    pub deadline: DateTime<Utc>,
    pub warned: bool,
    pub breached: bool,
}

/// One conversation's clocks (see the [module docs](super) for the rules).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaBook {
    conversation_id: String,
    /// Every clock ever started, settled ones included: they answer "seen again" and the
    /// tallies.
    clocks: Vec<Clock>,
    /// Messages seen so far, by id.
    messages: BTreeMap<String, SeenMessage>,
    /// The latest time of a human agent's message: a customer message at or before it
    /// is already answered, whenever it is observed.
    last_human_reply: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SeenMessage {
    /// A failure fact was seen: the first terminal fact wins, no receipt clock starts or
    /// settles any more.
    failed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Clock {
    kind: ClockKind,
    subject: ClockSubject,
    queue_id: Option<String>,
    calendar: Option<String>,
    threshold: Duration,
    started_at: DateTime<Utc>,
    warn_at: DateTime<Utc>,
    deadline: DateTime<Utc>,
    warned: bool,
    breached: bool,
    settled: Option<Settlement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Settlement {
    outcome: SlaOutcome,
    at: DateTime<Utc>,
    fulfilled_at: Option<DateTime<Utc>>,
}

/// What starts a clock.
struct Start<'a> {
    kind: ClockKind,
    subject: ClockSubject,
    queue_id: Option<&'a str>,
    messenger_type: Option<&'a str>,
    at: DateTime<Utc>,
}

impl Clock {
    fn is_open(&self) -> bool {
        self.settled.is_none()
    }

    /// The first instant at which the clock counts as breached.
    fn breach_due(&self) -> DateTime<Utc> {
        self.deadline
            .checked_add_signed(TimeDelta::nanoseconds(1))
            .unwrap_or(self.deadline)
    }

    fn signal(
        &self,
        policy: &SlaPolicy,
        kind: SlaSignalKind,
        until: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> SlaSignal {
        SlaSignal {
            kind,
            clock: self.kind,
            subject: self.subject.clone(),
            queue_id: self.queue_id.clone(),
            threshold: self.threshold,
            measured: policy.time_between(self.calendar.as_deref(), self.started_at, until),
            started_at: self.started_at,
            deadline: self.deadline,
            fulfilled_at: self
                .settled
                .as_ref()
                .and_then(|settled| settled.fulfilled_at),
            calendar: self.calendar.clone(),
            at,
        }
    }

    /// Emits the warning and breach that are due at `now` (once each).
    fn due_signals(&mut self, policy: &SlaPolicy, now: DateTime<Utc>, out: &mut Vec<SlaSignal>) {
        if !self.warned && self.warn_at <= now {
            self.warned = true;
            out.push(self.signal(policy, SlaSignalKind::Warning, self.warn_at, self.warn_at));
        }
        if !self.breached && self.breach_due() <= now {
            self.breached = true;
            out.push(self.signal(policy, SlaSignalKind::Breach, self.deadline, self.deadline));
        }
    }

    /// Settles the clock at `at` (its warning and breach first, if they were due then).
    fn settle(
        &mut self,
        policy: &SlaPolicy,
        outcome: SlaOutcome,
        at: DateTime<Utc>,
        fulfilled_at: Option<DateTime<Utc>>,
        out: &mut Vec<SlaSignal>,
    ) {
        if !self.is_open() {
            return;
        }
        self.due_signals(policy, at, out);
        self.settled = Some(Settlement {
            outcome,
            at,
            fulfilled_at,
        });
        out.push(self.signal(policy, SlaSignalKind::Outcome(outcome), at, at));
    }

    /// Settles the clock as met at `at`: compliant at or before the deadline, breached
    /// (achieved late) after it.
    fn meet(&mut self, policy: &SlaPolicy, at: DateTime<Utc>, out: &mut Vec<SlaSignal>) {
        let outcome = if at <= self.deadline {
            SlaOutcome::Compliant
        } else {
            SlaOutcome::Breached
        };
        self.settle(policy, outcome, at, Some(at), out);
    }
}

/// The order in which observations seen together are applied.
fn batch_rank(observation: &Observation) -> u8 {
    match observation {
        Observation::QueueJoined { .. } => 0,
        Observation::AgentConnected { .. } => 1,
        Observation::CustomerLeft { .. } => 2,
        Observation::Message { .. } => 3,
        Observation::ConversationFinished => 4,
    }
}

/// Lifecycle order of a message's statuses, failures last (see the module docs).
fn status_rank(status: &MessageStatus) -> u8 {
    match status {
        MessageStatus::Received => 0,
        MessageStatus::Queued => 1,
        MessageStatus::Sent => 2,
        MessageStatus::Published => 3,
        MessageStatus::DeliverySuccess => 4,
        MessageStatus::Read => 5,
        MessageStatus::DeliveryFailed | MessageStatus::Failed => 6,
        MessageStatus::Removed | MessageStatus::Unknown(_) => 7,
    }
}

/// A message's own time for response clocks: its `messageTime`, never after the
/// observation; the observation time without one.
fn message_instant(message_time: Option<DateTime<Utc>>, at: DateTime<Utc>) -> DateTime<Utc> {
    message_time.map_or(at, |time| time.min(at))
}

impl SlaBook {
    pub fn new(conversation_id: &str) -> SlaBook {
        SlaBook {
            conversation_id: conversation_id.to_owned(),
            clocks: Vec::new(),
            messages: BTreeMap::new(),
            last_human_reply: None,
            finished_at: None,
        }
    }

    pub fn conversation_id(&self) -> &str {
        &self.conversation_id
    }

    /// When the conversation finished, if it did.
    pub fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.finished_at
    }

    /// Applies observations seen together at `at`, then emits what is due at `at` (as
    /// [`SlaBook::tick`] would). Idempotent: the same observations again change nothing
    /// and emit nothing.
    pub fn observe(
        &mut self,
        policy: &SlaPolicy,
        observations: &[Observation],
        at: DateTime<Utc>,
    ) -> Vec<SlaSignal> {
        let mut ordered: Vec<&Observation> = observations.iter().collect();
        // Stable: within a rank the caller's order stays, except messages, which go by
        // their own time, then id, then lifecycle order of the status.
        ordered.sort_by(|a, b| {
            batch_rank(a)
                .cmp(&batch_rank(b))
                .then_with(|| match (a, b) {
                    (
                        Observation::Message {
                            message_id: id_a,
                            message_time: time_a,
                            status: status_a,
                            ..
                        },
                        Observation::Message {
                            message_id: id_b,
                            message_time: time_b,
                            status: status_b,
                            ..
                        },
                    ) => message_instant(*time_a, at)
                        .cmp(&message_instant(*time_b, at))
                        .then_with(|| id_a.cmp(id_b))
                        .then_with(|| status_rank(status_a).cmp(&status_rank(status_b))),
                    _ => std::cmp::Ordering::Equal,
                })
        });
        let mut out = Vec::new();
        for observation in ordered {
            self.apply(policy, observation, at, &mut out);
        }
        // A clock started from an old message time may already be due.
        out.extend(self.tick(policy, at));
        out
    }

    /// Emits the warnings and breaches due at `now` and settles the receipt clocks of a
    /// finished conversation whose deadline has passed (`missing_receipt`).
    pub fn tick(&mut self, policy: &SlaPolicy, now: DateTime<Utc>) -> Vec<SlaSignal> {
        let mut out = Vec::new();
        let finished_at = self.finished_at;
        for clock in self.clocks.iter_mut().filter(|clock| clock.is_open()) {
            clock.due_signals(policy, now, &mut out);
            if let Some(finished_at) = finished_at {
                if clock.kind.is_receipt() && clock.breach_due() <= now {
                    let at = clock.deadline.max(finished_at);
                    clock.settle(policy, SlaOutcome::MissingReceipt, at, None, &mut out);
                }
            }
        }
        out
    }

    /// The earliest instant at which [`SlaBook::tick`] has something to do.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        self.clocks
            .iter()
            .filter(|clock| clock.is_open())
            .filter_map(|clock| {
                let warning = (!clock.warned).then_some(clock.warn_at);
                let breach_or_settle =
                    (!clock.breached || self.finished_at.is_some()).then(|| clock.breach_due());
                warning.into_iter().chain(breach_or_settle).min()
            })
            .min()
    }

    /// Every signal this book has emitted so far — each warning, breach and outcome, as
    /// it was emitted — rebuilt from its clocks. A worker that takes a partition over
    /// re-commits their records (same ids): the previous owner may have committed them
    /// only to its own outbox, which nobody sends any more.
    pub fn emitted_signals(&self, policy: &SlaPolicy) -> Vec<SlaSignal> {
        let mut out = Vec::new();
        for clock in &self.clocks {
            // Warnings and breaches are emitted before their clock settles: without
            // the settlement's `fulfilled_at`, as they went out.
            let before_settling = [
                (clock.warned, SlaSignalKind::Warning, clock.warn_at),
                (clock.breached, SlaSignalKind::Breach, clock.deadline),
            ];
            for (kind, at) in before_settling
                .into_iter()
                .filter_map(|(emitted, kind, at)| emitted.then_some((kind, at)))
            {
                out.push(SlaSignal {
                    fulfilled_at: None,
                    ..clock.signal(policy, kind, at, at)
                });
            }
            if let Some(settled) = &clock.settled {
                out.push(clock.signal(
                    policy,
                    SlaSignalKind::Outcome(settled.outcome),
                    settled.at,
                    settled.at,
                ));
            }
        }
        out
    }

    /// The clocks still open.
    pub fn open_clocks(&self) -> Vec<OpenClock> {
        self.clocks
            .iter()
            .filter(|clock| clock.is_open())
            .map(|clock| OpenClock {
                kind: clock.kind,
                subject: clock.subject.clone(),
                queue_id: clock.queue_id.clone(),
                calendar: clock.calendar.clone(),
                threshold: clock.threshold,
                started_at: clock.started_at,
                warn_at: clock.warn_at,
                deadline: clock.deadline,
                warned: clock.warned,
                breached: clock.breached,
            })
            .collect()
    }

    /// True once the conversation finished and every clock settled: nothing more can
    /// come out of this book.
    pub fn is_settled(&self) -> bool {
        self.finished_at.is_some() && self.clocks.iter().all(|clock| !clock.is_open())
    }

    /// Settled clocks by clock and outcome.
    pub fn tallies(&self) -> SlaTallies {
        let mut tallies = SlaTallies::new();
        for clock in &self.clocks {
            if let Some(settled) = &clock.settled {
                *tallies
                    .entry(clock.kind)
                    .or_default()
                    .entry(settled.outcome)
                    .or_default() += 1;
            }
        }
        tallies
    }

    // ---- the rules ---------------------------------------------------------------------

    fn apply(
        &mut self,
        policy: &SlaPolicy,
        observation: &Observation,
        at: DateTime<Utc>,
        out: &mut Vec<SlaSignal>,
    ) {
        match observation {
            Observation::QueueJoined {
                participant_id,
                queue_id,
            } => {
                self.start(
                    policy,
                    Start {
                        kind: ClockKind::Answer,
                        subject: ClockSubject::ParticipantId(participant_id.clone()),
                        queue_id: queue_id.as_deref(),
                        messenger_type: None,
                        at,
                    },
                );
            }
            Observation::AgentConnected { .. } => {
                for clock in self.open_mut(ClockKind::Answer) {
                    clock.meet(policy, at, out);
                }
            }
            Observation::CustomerLeft { .. } => {
                for clock in self.open_mut(ClockKind::Answer) {
                    clock.settle(policy, SlaOutcome::Abandoned, at, None, out);
                }
            }
            Observation::Message {
                message_id,
                direction,
                sender,
                messenger_type,
                queue_id,
                status,
                message_time,
            } => {
                let first_seen = !self.messages.contains_key(message_id);
                if first_seen {
                    self.messages
                        .insert(message_id.clone(), SeenMessage { failed: false });
                }
                let time = message_instant(*message_time, at);
                let context = MessageContext {
                    id: message_id,
                    messenger_type: messenger_type.as_deref(),
                    queue_id: queue_id.as_deref(),
                };
                match direction {
                    MessageDirection::Inbound if first_seen => {
                        self.customer_message(policy, &context, time);
                    }
                    MessageDirection::Outbound => {
                        if first_seen && *sender == Sender::HumanAgent {
                            self.agent_message(policy, time, out);
                        }
                        self.receipt(policy, &context, status, at, out);
                    }
                    MessageDirection::Inbound | MessageDirection::Unknown => {}
                }
            }
            Observation::ConversationFinished => self.finish(policy, at, out),
        }
    }

    fn open_mut(&mut self, kind: ClockKind) -> impl Iterator<Item = &mut Clock> {
        self.clocks
            .iter_mut()
            .filter(move |clock| clock.kind == kind && clock.is_open())
    }

    fn find(&self, kind: ClockKind, subject: &ClockSubject) -> Option<usize> {
        self.clocks
            .iter()
            .position(|clock| clock.kind == kind && &clock.subject == subject)
    }

    /// Starts a clock unless one of that kind and subject exists, or the conversation
    /// finished and it is an answer or response clock. Receipt clocks still start after
    /// the end: a reply delivered (or first seen delivered, after a restart's rebuild)
    /// once the conversation is over is still read, or not, within its SLA.
    fn start(&mut self, policy: &SlaPolicy, start: Start<'_>) -> Option<usize> {
        let after_end = self.finished_at.is_some() && !start.kind.is_receipt();
        if after_end || self.find(start.kind, &start.subject).is_some() {
            return None;
        }
        let threshold = policy.threshold(start.kind, start.queue_id, start.messenger_type);
        let calendar = policy
            .calendar_of(start.queue_id)
            .filter(|name| policy.calendars.contains_key(*name))
            .map(str::to_owned);
        let warn_at = policy.add_time(
            calendar.as_deref(),
            start.at,
            policy.warn_share.of(threshold),
        );
        let deadline = policy.add_time(calendar.as_deref(), start.at, threshold);
        self.clocks.push(Clock {
            kind: start.kind,
            subject: start.subject,
            queue_id: start.queue_id.map(str::to_owned),
            calendar,
            threshold,
            started_at: start.at,
            warn_at,
            deadline,
            warned: false,
            breached: false,
            settled: None,
        });
        Some(self.clocks.len() - 1)
    }

    /// A customer message first seen at its `time`.
    fn customer_message(
        &mut self,
        policy: &SlaPolicy,
        message: &MessageContext<'_>,
        time: DateTime<Utc>,
    ) {
        let answered = self.last_human_reply.is_some_and(|reply| time <= reply);
        let response_open = self
            .clocks
            .iter()
            .any(|clock| clock.kind.is_response() && clock.is_open());
        if answered || response_open {
            return;
        }
        let had_first = self
            .clocks
            .iter()
            .any(|clock| clock.kind == ClockKind::FirstResponse);
        let kind = if had_first {
            ClockKind::NextResponse
        } else {
            ClockKind::FirstResponse
        };
        self.start(
            policy,
            Start {
                kind,
                subject: ClockSubject::MessageId(message.id.to_owned()),
                queue_id: message.queue_id,
                messenger_type: message.messenger_type,
                at: time,
            },
        );
    }

    /// A human agent's message first seen, sent at `time`: answers the open response
    /// clock if it started no later.
    fn agent_message(&mut self, policy: &SlaPolicy, time: DateTime<Utc>, out: &mut Vec<SlaSignal>) {
        self.last_human_reply = Some(self.last_human_reply.map_or(time, |last| last.max(time)));
        for clock in self.clocks.iter_mut() {
            if clock.kind.is_response() && clock.is_open() && clock.started_at <= time {
                clock.meet(policy, time, out);
            }
        }
    }

    /// A receipt status of an outbound message, observed at `at`.
    fn receipt(
        &mut self,
        policy: &SlaPolicy,
        message: &MessageContext<'_>,
        status: &MessageStatus,
        at: DateTime<Utc>,
        out: &mut Vec<SlaSignal>,
    ) {
        if self
            .messages
            .get(message.id)
            .is_some_and(|seen| seen.failed)
        {
            return;
        }
        let subject = ClockSubject::MessageId(message.id.to_owned());
        let start = |kind| Start {
            kind,
            subject: subject.clone(),
            queue_id: message.queue_id,
            messenger_type: message.messenger_type,
            at,
        };
        let delivered = matches!(status, MessageStatus::DeliverySuccess | MessageStatus::Read);
        let failed = matches!(
            status,
            MessageStatus::DeliveryFailed | MessageStatus::Failed
        );
        let counts = matches!(
            status,
            MessageStatus::Queued | MessageStatus::Sent | MessageStatus::Published
        ) || delivered
            || failed;
        if !counts {
            return;
        }
        self.start(policy, start(ClockKind::Delivery));
        if delivered {
            if let Some(index) = self.find(ClockKind::Delivery, &subject) {
                self.clocks[index].meet(policy, at, out);
            }
            if policy.has_read_receipts(message.messenger_type) {
                self.start(policy, start(ClockKind::Read));
            }
        }
        if *status == MessageStatus::Read {
            if let Some(index) = self.find(ClockKind::Read, &subject) {
                self.clocks[index].meet(policy, at, out);
            }
        }
        if failed {
            if let Some(seen) = self.messages.get_mut(message.id) {
                seen.failed = true;
            }
            for clock in self.clocks.iter_mut() {
                if clock.kind.is_receipt() && clock.subject == subject {
                    clock.settle(policy, SlaOutcome::Failed, at, None, out);
                }
            }
        }
    }

    /// The conversation finished at `at`: answer clocks are abandoned, response clocks
    /// breached (past the deadline, never met) or abandoned, receipt clocks wait for
    /// their deadline (then `missing_receipt`, at once if already past).
    fn finish(&mut self, policy: &SlaPolicy, at: DateTime<Utc>, out: &mut Vec<SlaSignal>) {
        if self.finished_at.is_some() {
            return;
        }
        self.finished_at = Some(at);
        for clock in self.clocks.iter_mut().filter(|clock| clock.is_open()) {
            match clock.kind {
                ClockKind::Answer => clock.settle(policy, SlaOutcome::Abandoned, at, None, out),
                ClockKind::FirstResponse | ClockKind::NextResponse => {
                    let outcome = if clock.breach_due() <= at {
                        SlaOutcome::Breached
                    } else {
                        SlaOutcome::Abandoned
                    };
                    clock.settle(policy, outcome, at, None, out);
                }
                ClockKind::Delivery | ClockKind::Read => {
                    if clock.breach_due() <= at {
                        clock.settle(policy, SlaOutcome::MissingReceipt, at, None, out);
                    }
                }
            }
        }
    }
}

/// The parts of a message observation the rules read.
struct MessageContext<'a> {
    id: &'a str,
    messenger_type: Option<&'a str>,
    queue_id: Option<&'a str>,
}

/// The kinds of the clocks one observation started, for the `clocks started` metric: the
/// clocks open after it that were not open before, and the clocks it settled that were not
/// open before (started and met by the same observation).
pub fn clocks_started(
    open_before: &[OpenClock],
    open_after: &[OpenClock],
    signals: &[SlaSignal],
) -> Vec<ClockKind> {
    let was_open = |kind: ClockKind, subject: &ClockSubject| {
        open_before
            .iter()
            .any(|c| c.kind == kind && &c.subject == subject)
    };
    let opened = open_after
        .iter()
        .filter(|clock| !was_open(clock.kind, &clock.subject))
        .map(|clock| clock.kind);
    let settled_at_once = signals
        .iter()
        .filter(|signal| matches!(signal.kind, SlaSignalKind::Outcome(_)))
        .filter(|signal| !was_open(signal.clock, &signal.subject))
        .map(|signal| signal.clock);
    opened.chain(settled_at_once).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
