//! The messages the ConversationRouter accepts. They carry domain types only (never raw
//! JSON or awc types), so the stream and the router can be tested apart.

use actix::Message;
use chrono::{DateTime, Utc};
use convoy::conversation::{ConversationSnapshot, TranscriptionEvent};
use convoy::ids::ConversationId;

/// Conversation data that arrived on the stream (or from a REST re-read).
#[derive(Debug, Clone)]
pub enum ConversationInput {
    Snapshot(ConversationSnapshot),
    Transcription(TranscriptionEvent),
}

impl ConversationInput {
    pub fn conversation_id(&self) -> &ConversationId {
        match self {
            ConversationInput::Snapshot(snapshot) => &snapshot.conversation_id,
            ConversationInput::Transcription(event) => &event.conversation_id,
        }
    }
}

/// One input for one conversation, with the time Convoy observed it (SLA clocks use the
/// observation time: Genesys events carry no timestamp).
///
/// Edge: StreamActor → router with `send().await` under a timeout, so a slow router
/// back-pressures the socket instead of growing a queue without bound.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), RouteError>")]
pub struct RouteEvent {
    pub input: ConversationInput,
    pub observed_at: DateTime<Utc>,
}

/// Why the router did not take an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The live-conversation cap is reached; the caller should slow down and retry.
    #[error("at the cap of {max_live} live conversations")]
    AtCapacity { max_live: usize },
    /// The conversation actor did not accept the event in time.
    #[error("conversation {0} did not accept the event in time")]
    Timeout(ConversationId),
    /// The router is shutting down and takes no more events.
    #[error("shutting down")]
    ShuttingDown,
}

/// After a gap in the stream (start-up, reconnect, rotation) nothing tells Convoy what it
/// missed: Genesys has no replay. So every tracked conversation is re-read through REST,
/// and conversations that started during the gap are discovered with the analytics
/// details query for `[gap_started_at, now]`.
///
/// Edge: StreamActor → router with `do_send` (rare control message; it returns at once
/// and the router runs the sweep behind live traffic).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Reconcile {
    /// When the stream stopped seeing events (or, at start-up, how far back to look).
    pub gap_started_at: DateTime<Utc>,
    /// Why: `startup`, `reconnect`, `rotation`.
    pub reason: &'static str,
}

/// The stream could not hand over an event of this conversation (the router did not take
/// it in time): re-read the conversation through REST, in the reconciliation set.
///
/// Edge: StreamActor → router with `do_send` (rare control message; it must not be lost
/// to a full mailbox, and the stream must not wait on the router it just failed to reach).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct RereadConversation {
    pub conversation_id: ConversationId,
}

/// The cluster's worker: a [`RouteEvent`] whose sender wants to know when it is done.
/// `applied` is answered once the conversation actor applied the input **and** every fact
/// it produced is committed in the outbox (the SlaActor answered the handover). If that
/// never happens (the actor crashed, shutdown closed the outbox) `applied` is dropped
/// unanswered, so the worker does not acknowledge and JetStream delivers the frame again.
///
/// Edge: cluster consumer → router with `send().await` (as the stream's `RouteEvent`).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), RouteError>")]
pub struct RouteConfirmed {
    pub event: RouteEvent,
    pub applied: Applied,
}

/// The answer half of [`RouteConfirmed`].
#[derive(Debug)]
pub struct Applied(tokio::sync::oneshot::Sender<()>);

impl Applied {
    /// A pair: the `Applied` travels with the input, the receiver resolves once it is
    /// confirmed (or errs once it was dropped).
    pub fn channel() -> (Applied, tokio::sync::oneshot::Receiver<()>) {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        (Applied(sender), receiver)
    }

    /// Done: applied, facts committed (or nothing to commit).
    pub fn confirm(self) {
        let _ = self.0.send(());
    }
}
