//! What the simulator reads from the conversations it plays, and how fast it may talk.
//!
//! - [`progress`] / [`Followed`]: the customer side must answer every agent message with
//!   its planned receipts and know when everyone has left. The driver learns both from the
//!   conversation snapshots of a notification channel (or, after a gap in the stream, from
//!   one REST read); these functions turn any snapshot into that progress and merge
//!   snapshots that arrive late, twice or on several topics.
//! - [`planned_requests`] / [`paced_start_rate`]: the REST budget. Genesys allows a token
//!   300 requests per minute by default; a run whose conversations start faster than the
//!   budget can carry queues its customers' messages behind its receipts and drifts from
//!   its plan. The start rate is capped so the planned requests fit in the budget.
//!
//! Pure: no clock, no I/O. The driver stamps when it saw each message.

use crate::conversation::{ConversationSnapshot, ParticipantSnapshot};
use crate::ids::MessageId;
use crate::model::{CommunicationState, Purpose};

use super::plan::{Plan, Script};

/// Share of the advertised budget a run plans to use: the rest absorbs re-reads after a
/// gap, the channel set-up and the burst at the start.
pub const BUDGET_SHARE: f64 = 0.8;

/// What one snapshot says about the conversation the simulator plays.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Progress {
    /// Ids of the messages agents sent, oldest first, each once.
    pub agent_messages: Vec<String>,
    /// Every participant has left.
    pub ended: bool,
}

fn left(state: Option<&CommunicationState>) -> bool {
    matches!(
        state,
        Some(CommunicationState::Disconnected | CommunicationState::Terminated)
    )
}

/// A participant has left when it says so, has an end time, or (on the all-media topics,
/// which carry no participant state) every one of its communications has ended.
fn participant_left(participant: &ParticipantSnapshot) -> bool {
    if participant.end_time.is_some() || left(participant.state.as_ref()) {
        return true;
    }
    participant.state.is_none()
        && !participant.communications.is_empty()
        && participant
            .communications
            .iter()
            .all(|communication| left(communication.state.as_ref()))
}

/// Reads one snapshot. Agent messages are ordered by message time (a stable sort: equal
/// times keep the snapshot's order); a message without a time sorts last.
pub fn progress(snapshot: &ConversationSnapshot) -> Progress {
    let mut messages: Vec<(Option<chrono::DateTime<chrono::Utc>>, &MessageId)> = snapshot
        .participants
        .iter()
        .filter(|participant| participant.purpose == Some(Purpose::Agent))
        .flat_map(|participant| &participant.messages)
        .map(|message| (message.message_time, &message.id))
        .collect();
    messages.sort_by_key(|(time, _)| (time.is_none(), *time));
    let mut agent_messages: Vec<String> = Vec::new();
    for (_, id) in messages {
        let id = id.text();
        if !agent_messages.iter().any(|known| known == id.as_str()) {
            agent_messages.push(id.to_string());
        }
    }
    let ended = snapshot.end_time.is_some()
        || (!snapshot.participants.is_empty()
            && snapshot.participants.iter().all(participant_left));
    Progress {
        agent_messages,
        ended,
    }
}

/// Everything seen of one conversation so far, over any number of snapshots.
///
/// Snapshots are complete as of their moment, so a stale one (a REST read that raced a
/// newer event, the same change on a second topic) adds nothing; the end, once seen, stays.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Followed {
    agent_messages: Vec<String>,
    ended: bool,
    snapshots: usize,
}

impl Followed {
    /// Merges one snapshot's progress; returns how many agent messages it revealed (they
    /// are the last ones of [`Self::agent_messages`]).
    pub fn apply(&mut self, progress: Progress) -> usize {
        self.snapshots += 1;
        let before = self.agent_messages.len();
        for id in progress.agent_messages {
            if !self.agent_messages.contains(&id) {
                self.agent_messages.push(id);
            }
        }
        self.ended |= progress.ended;
        self.agent_messages.len() - before
    }

    /// Agent message ids in the order they were first seen.
    pub fn agent_messages(&self) -> &[String] {
        &self.agent_messages
    }

    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Snapshots merged so far (0: the conversation was never seen).
    pub fn snapshots(&self) -> usize {
        self.snapshots
    }
}

/// The REST requests a plan makes: every customer message, agentless send, placed call
/// and receipt.
pub fn planned_requests(plan: &Plan) -> usize {
    plan.conversations
        .iter()
        .map(|conversation| {
            let sends = match &conversation.script {
                Script::Inbound(script) => script.customer_messages.len(),
                Script::Agentless(script) => script.messages.len(),
                // The call is placed with one request.
                Script::Voice(_) => 1,
            };
            let receipts: usize = conversation
                .script
                .receipts()
                .iter()
                .map(|receipt| receipt.receipts().len())
                .sum();
            sends + receipts
        })
        .sum()
}

/// The start rate (conversations per second) a run should use: the requested one, capped
/// so that the plan's requests fit in [`BUDGET_SHARE`] of `per_minute`. `requested`
/// `None` means "as fast as concurrency allows", which is capped too. A plan without
/// requests, or no budget (`None`), leaves the request as it is.
pub fn paced_start_rate(
    plan: &Plan,
    requested: Option<f64>,
    per_minute: Option<u32>,
) -> Option<f64> {
    let Some(per_minute) = per_minute.filter(|limit| *limit > 0) else {
        return requested;
    };
    let conversations = plan.conversations.len();
    let requests = planned_requests(plan);
    if conversations == 0 || requests == 0 {
        return requested;
    }
    let per_conversation = requests as f64 / conversations as f64;
    let budget_per_second = f64::from(per_minute) / 60.0 * BUDGET_SHARE;
    let sustainable = budget_per_second / per_conversation;
    match requested {
        Some(rate) if rate > 0.0 && rate <= sustainable => Some(rate),
        _ => Some(sustainable),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::parse::read_message_conversation_body;
    use crate::simulator::plan::PlanOptions;
    use crate::simulator::Scenario;

    fn snapshot(body: serde_json::Value) -> ConversationSnapshot {
        read_message_conversation_body(body, "$").unwrap()
    }

    fn participant(id: &str, purpose: &str, state: &str, messages: &[(&str, &str)]) -> Value {
        json!({
            "id": id, "purpose": purpose, "state": state,
            "messages": messages.iter().map(|(id, time)| json!({
                "messageId": id, "messageTime": time, "messageStatus": "sent"
            })).collect::<Vec<_>>()
        })
    }

    const CONVERSATION: &str = "5c8a7e0e-9d3c-4a57-9b1e-8a7c7d0e0001";

    #[test]
    fn agent_messages_come_in_time_order_across_agents() {
        let body = json!({
            "id": CONVERSATION,
            "participants": [
                participant("p1", "customer", "connected", &[("in1", "2025-01-01T00:00:00.000Z")]),
                participant("p2", "agent", "disconnected", &[
                    ("out2", "2025-01-01T00:00:02.000Z"),
                    ("out1", "2025-01-01T00:00:01.000Z"),
                ]),
                participant("p3", "agent", "connected", &[("out3", "2025-01-01T00:00:03.000Z")]),
            ]
        });
        let progress = progress(&snapshot(body));
        assert_eq!(progress.agent_messages, ["out1", "out2", "out3"]);
        assert!(
            !progress.ended,
            "the customer and an agent are still connected"
        );
    }

    #[test]
    fn the_conversation_ends_when_every_participant_has_left() {
        let body = json!({
            "id": CONVERSATION,
            "participants": [
                participant("p1", "customer", "disconnected", &[]),
                participant("p2", "agent", "terminated", &[("out1", "2025-01-01T00:00:01.000Z")]),
            ]
        });
        assert!(progress(&snapshot(body)).ended);
        let nobody = json!({ "id": CONVERSATION, "participants": [] });
        assert!(!progress(&snapshot(nobody)).ended);
    }

    #[test]
    fn merging_keeps_first_seen_order_and_the_end_and_ignores_stale_snapshots() {
        let mut followed = Followed::default();
        assert_eq!(followed.snapshots(), 0);
        let first = Progress {
            agent_messages: vec!["a".into()],
            ended: false,
        };
        let second = Progress {
            agent_messages: vec!["a".into(), "b".into()],
            ended: true,
        };
        assert_eq!(followed.apply(first.clone()), 1);
        assert_eq!(followed.apply(second), 1);
        // The first snapshot again, late (a REST read, a second topic): nothing new.
        assert_eq!(followed.apply(first), 0);
        assert_eq!(followed.agent_messages(), ["a", "b"]);
        assert!(followed.ended(), "the end, once seen, stays");
        assert_eq!(followed.snapshots(), 3);
    }

    fn plan(conversations: usize) -> Plan {
        Plan::generate(
            &Scenario::default(),
            &PlanOptions {
                conversations,
                seed: 3,
                rate_per_second: None,
                customer_prefix: None,
            },
        )
    }

    #[test]
    fn the_start_rate_is_capped_so_the_planned_requests_fit_the_budget() {
        let plan = plan(100);
        let requests = planned_requests(&plan) as f64;
        assert!(requests >= 100.0, "every conversation sends something");
        let rate = paced_start_rate(&plan, Some(1000.0), Some(300)).unwrap();
        // Requests per second at that start rate: 80 % of 300 per minute.
        let load = rate * requests / 100.0;
        assert!((load - 4.0).abs() < 1e-9, "{load}");
        assert_eq!(paced_start_rate(&plan, None, Some(300)), Some(rate));
    }

    #[test]
    fn a_slow_enough_rate_or_no_budget_is_left_alone() {
        let plan = plan(10);
        assert_eq!(paced_start_rate(&plan, Some(0.01), Some(300)), Some(0.01));
        assert_eq!(paced_start_rate(&plan, Some(50.0), None), Some(50.0));
        assert_eq!(paced_start_rate(&plan, None, Some(0)), None);
        assert_eq!(
            paced_start_rate(&self::plan(0), Some(5.0), Some(300)),
            Some(5.0)
        );
    }
}
