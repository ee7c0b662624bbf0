//! SLA rules: which clocks a conversation starts, when they warn, breach and settle.
//!
//! Pure: time is always an argument (observation time, `observed_at`, since Genesys events
//! carry no status timestamps). The SlaActor in the shell feeds a per-conversation
//! [`SlaBook`] with [`Observation`]s, calls [`SlaBook::tick`] on a timer, persists the book
//! (it is `Serialize`/`Deserialize`) and turns the [`SlaSignal`]s into CRM records.
//!
//! # Clocks
//! - `answer` (subject: the ACD participant): starts when a [`Observation::QueueJoined`] is
//!   first seen, stops when a human agent connects ([`Observation::AgentConnected`] stops
//!   every open answer clock of the conversation). [`Observation::CustomerLeft`] or the end
//!   of the conversation first: `abandoned`. A later queue join (a transfer) with a new ACD
//!   participant starts a new clock. Voice and messaging alike.
//! - `first_response` (subject: the customer message): the customer's first inbound
//!   message starts it; the first message from a [`Sender::HumanAgent`] whose time is not
//!   before the start stops it.
//! - `next_response` (subject: the customer message): after the first response clock has
//!   settled, the next customer message starts one; customer messages while a response
//!   clock is open start nothing; a human agent's message stops it.
//!   [`Sender::Automated`] messages (bot, flow, agentless `api`) never stop a response clock.
//!   Response clocks run on the messages' own `messageTime` when present (never later than
//!   the observation), so a conversation rebuilt after a restart measures the same;
//!   otherwise on observation time. Messages seen together are taken in `messageTime`
//!   order, then by id.
//! - `delivery` (subject: the outbound message): starts when the message is first seen
//!   (whatever its status), met by `delivery-success` or `read` (read implies delivery);
//!   `delivery-failed`/`failed` settles it `failed`.
//! - `read` (subject: the outbound message): `delivery-success` (or `read`) starts it,
//!   `read` meets it; not started for messenger types in the policy's `no_read_receipt`.
//!   A failure fact after delivery settles an open read clock `failed`.
//!
//! Receipts are late, duplicated and out of order: a status seen again changes nothing,
//! and **the first terminal fact wins** (a `delivery-success` after `delivery-failed` does
//! not revive the clock). Statuses of one message seen in one batch are applied in
//! lifecycle order (`queued`, `sent`, `delivery-success`, `read`, then failures), so a
//! snapshot carrying both `read` and `delivery-failed` counts as delivered and read.
//! Receipts never touch response clocks.
//!
//! # Outcomes and signals
//! Each clock emits at most one [`SlaSignalKind::Warning`] (when `warn_share` of its
//! threshold of open time has elapsed and it is still open), at most one
//! [`SlaSignalKind::Breach`] (at its deadline, if still open) and exactly one
//! [`SlaSignalKind::Outcome`]:
//! - `compliant`: met at or before the deadline;
//! - `breached`: met after the deadline (`fulfilled_at` set: "achieved late"), or never
//!   met (`fulfilled_at` empty: a response clock open past its deadline when the
//!   conversation finished);
//! - `failed`: the delivery failed (receipt clocks);
//! - `missing_receipt`: the conversation finished and the receipt never came; settled at
//!   the deadline (a late receipt before it still counts), at once if already past;
//! - `abandoned`: the customer left before an agent connected (answer), or the
//!   conversation finished before the deadline with the customer message unanswered
//!   (response clocks: a closing "thanks, bye" is not a breach).
//!
//! When a clock settles after its warning or breach instant and the timer has not emitted
//! them yet (a restart, a late snapshot), they are emitted before the outcome, so the
//! signals of a clock never depend on when the timer ran. Warning and breach signals carry
//! the instant they became due as `at`.
//!
//! After [`Observation::ConversationFinished`] no clock starts.
//!
//! # Driving a book (the SlaActor)
//! Per conversation: `observe` the facts of each snapshot at its `observed_at`, `tick` at
//! [`SlaBook::next_due`] (or every `sla.tick`), persist the book with the records its
//! signals became, and forget it once [`SlaBook::is_settled`]. A record id derived from
//! the conversation, [`SlaSignal::clock`], [`SlaSignal::subject`] and the signal kind is
//! stable: a clock never emits the same kind twice. After a restart, `tick(now)` on the
//! restored book emits at once whatever fell due while Convoy was down, dated at its
//! instant.
//!
//! # Thresholds and calendars
//! See [`SlaPolicy`]: a queue override beats a messenger-type override beats the default;
//! a queue may have a business-hours [`Calendar`], and then only open time counts.

mod book;
mod calendar;
mod policy;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use book::{clocks_started, OpenClock, SlaBook, SlaTallies};
pub use calendar::{parse_date, parse_time_zone, Calendar, CalendarError, OpeningRange};
pub use policy::{Share, SlaPolicy, ThresholdOverrides, Thresholds};

pub use crate::conversation::MessageDirection;
pub use crate::model::MessageStatus;

/// The kinds of SLA clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockKind {
    Answer,
    FirstResponse,
    NextResponse,
    Delivery,
    Read,
}

impl ClockKind {
    pub const ALL: [ClockKind; 5] = [
        ClockKind::Answer,
        ClockKind::FirstResponse,
        ClockKind::NextResponse,
        ClockKind::Delivery,
        ClockKind::Read,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            ClockKind::Answer => "answer",
            ClockKind::FirstResponse => "first_response",
            ClockKind::NextResponse => "next_response",
            ClockKind::Delivery => "delivery",
            ClockKind::Read => "read",
        }
    }

    /// True for the receipt clocks (`delivery`, `read`).
    pub fn is_receipt(&self) -> bool {
        matches!(self, ClockKind::Delivery | ClockKind::Read)
    }

    /// True for the response clocks (`first_response`, `next_response`).
    pub fn is_response(&self) -> bool {
        matches!(self, ClockKind::FirstResponse | ClockKind::NextResponse)
    }
}

/// How a clock settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlaOutcome {
    Compliant,
    Breached,
    Failed,
    MissingReceipt,
    Abandoned,
}

impl SlaOutcome {
    pub const ALL: [SlaOutcome; 5] = [
        SlaOutcome::Compliant,
        SlaOutcome::Breached,
        SlaOutcome::Failed,
        SlaOutcome::MissingReceipt,
        SlaOutcome::Abandoned,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            SlaOutcome::Compliant => "compliant",
            SlaOutcome::Breached => "breached",
            SlaOutcome::Failed => "failed",
            SlaOutcome::MissingReceipt => "missing_receipt",
            SlaOutcome::Abandoned => "abandoned",
        }
    }
}

/// Who sent a message, as far as answering a customer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sender {
    Customer,
    /// A user (agent) participant with a user id.
    HumanAgent,
    /// A bot, a flow, an `api` participant, an agent leg without a user.
    Automated,
}

/// One fact the SlaActor saw, already mapped from the conversation.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// The ACD participant (customer waiting in `queue_id`) joined or was seen: starts
    /// `answer` (subject: that participant). Seen again: no effect.
    QueueJoined {
        participant_id: String,
        queue_id: Option<String>,
    },
    /// A human agent's participant reached active: stops every open `answer` clock.
    AgentConnected {
        participant_id: String,
        queue_id: Option<String>,
        user_id: Option<String>,
    },
    /// The customer left (or failed): an open `answer` clock settles `abandoned`.
    CustomerLeft { participant_id: String },
    /// A message reached `status` (several statuses of one message may come at once).
    Message {
        message_id: String,
        direction: MessageDirection,
        sender: Sender,
        messenger_type: Option<String>,
        queue_id: Option<String>,
        status: MessageStatus,
        message_time: Option<DateTime<Utc>>,
    },
    /// Nothing more is expected (ended, wrap-up settled).
    ConversationFinished,
}

/// What a clock is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockSubject {
    /// Message clocks: the outbound message (delivery, read) or the customer message
    /// that started a response clock.
    MessageId(String),
    /// `answer`: the ACD participant.
    ParticipantId(String),
}

impl ClockSubject {
    /// The id, whichever kind.
    pub fn id(&self) -> &str {
        match self {
            ClockSubject::MessageId(id) | ClockSubject::ParticipantId(id) => id,
        }
    }
}

/// What a signal says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlaSignalKind {
    Warning,
    Breach,
    Outcome(SlaOutcome),
}

/// One SLA fact to record (a CRM `sla.warning`, `sla.breach` or `sla.outcome`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaSignal {
    pub kind: SlaSignalKind,
    pub clock: ClockKind,
    pub subject: ClockSubject,
    pub queue_id: Option<String>,
    pub threshold: Duration,
    /// Open time measured: start → fulfilment (or settlement) for an outcome, start → `at`
    /// for a warning or breach.
    pub measured: Duration,
    pub started_at: DateTime<Utc>,
    pub deadline: DateTime<Utc>,
    /// When the clock was met (compliant, or breached but achieved late).
    pub fulfilled_at: Option<DateTime<Utc>>,
    /// The calendar the clock counts open time on, if any.
    pub calendar: Option<String>,
    /// When it happened: the warning or breach instant, or when the clock settled.
    pub at: DateTime<Utc>,
}

impl SlaSignal {
    /// How far past its threshold a breached outcome went (`None` for other signals or
    /// when the measured time is within the threshold).
    pub fn overshoot(&self) -> Option<Duration> {
        let breached = self.kind == SlaSignalKind::Outcome(SlaOutcome::Breached);
        breached
            .then(|| self.measured.checked_sub(self.threshold))
            .flatten()
            .filter(|over| !over.is_zero())
    }
}
