//! Plays one planned conversation over the real REST paths: the customer's open-messaging
//! messages, the agentless sends, and the receipts of every outbound message on the plan's
//! schedule. Agent replies are learned by reading the conversation
//! (`GET /api/v2/conversations/messages/{id}`), which is also how the end is seen.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use actix_web::rt::time::{sleep_until, Instant};
use convoy::simulator::expect::{ExpectedConversation, MessageDirection};
use convoy::simulator::plan::{
    AgentlessScript, CustomerMessage, InboundScript, PlannedConversation, ReceiptPlan,
};
use serde_json::{json, Value};

use super::client::{ApiClient, CallError};
use super::Target;

/// What the driver needs besides the plan.
pub(super) struct DriveContext<'a> {
    pub client: &'a ApiClient,
    pub target: Target,
    pub seed: u64,
    pub poll_interval: Duration,
    /// Added to the plan's own duration before a conversation is declared stuck.
    pub slack: Duration,
}

/// Where one conversation's customer lives.
#[derive(Debug, Clone)]
pub(super) struct Channel {
    /// The open-messaging integration: inbound messages and receipts go through it.
    pub integration_id: String,
    /// `fromAddress` of agentless sends.
    pub from_address: String,
}

/// Counters of one conversation, merged into the report.
#[derive(Debug, Clone, Default)]
pub(super) struct DriveTally {
    pub started: bool,
    pub customer_messages: usize,
    pub agentless_messages: usize,
    pub agent_messages_seen: usize,
    pub unplanned_agent_messages: usize,
    pub receipts_sent: usize,
    pub failed_receipts_sent: usize,
    pub errors: Vec<String>,
}

/// Why a conversation could not be played to its end.
#[derive(Debug, thiserror::Error)]
pub(super) enum DriveError {
    #[error("conversation {index}: {source}")]
    Call {
        index: usize,
        #[source]
        source: CallError,
    },
    #[error("conversation {index}: {what}")]
    Unexpected { index: usize, what: String },
}

/// A receipt waiting for its time.
struct DueReceipt {
    at: Instant,
    message_id: String,
    status: &'static str,
    last: bool,
}

fn iso_now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

fn after(start: Instant, ms: u64) -> Instant {
    start + Duration::from_millis(ms)
}

/// Queues the receipts of one outbound message seen (or sent) at `seen`.
fn schedule(pending: &mut Vec<DueReceipt>, seen: Instant, message_id: &str, plan: &ReceiptPlan) {
    let receipts = plan.receipts();
    let count = receipts.len();
    for (position, (delay, status)) in receipts.into_iter().enumerate() {
        pending.push(DueReceipt {
            at: after(seen, delay),
            message_id: message_id.to_owned(),
            status,
            last: position + 1 == count,
        });
    }
}

/// Posts every receipt that is due.
async fn post_due_receipts(
    ctx: &DriveContext<'_>,
    index: usize,
    channel: &Channel,
    customer_id: &str,
    pending: &mut Vec<DueReceipt>,
    tally: &mut DriveTally,
) -> Result<(), DriveError> {
    let now = Instant::now();
    let (due, waiting): (Vec<DueReceipt>, Vec<DueReceipt>) =
        pending.drain(..).partition(|receipt| receipt.at <= now);
    *pending = waiting;
    let mut due = due;
    due.sort_by_key(|receipt| receipt.at);
    for receipt in due {
        let mut body = json!({
            "id": receipt.message_id,
            "channel": { "to": { "id": customer_id }, "time": iso_now() },
            "status": receipt.status,
            "isFinalReceipt": receipt.last,
        });
        if receipt.status == "Failed" {
            body["reasons"] =
                json!([{ "code": "RecipientOptedOut", "message": "simulated delivery failure" }]);
        }
        let path = format!(
            "/api/v2/conversations/messages/{}/inbound/open/receipt",
            channel.integration_id
        );
        ctx.client
            .post(&path, &body)
            .await
            .map_err(|source| DriveError::Call { index, source })?;
        tally.receipts_sent += 1;
        if receipt.status == "Failed" {
            tally.failed_receipts_sent += 1;
        }
    }
    Ok(())
}

fn customer_body(
    ctx: &DriveContext<'_>,
    planned: &PlannedConversation,
    sequence: usize,
    message: &CustomerMessage,
    metadata: &BTreeMap<String, String>,
) -> Value {
    let mut body = json!({
        "channel": {
            "messageId": format!("sim-{}-{}-{sequence}", ctx.seed, planned.index),
            "from": {
                "id": planned.customer_id,
                "idType": "Email",
                "nickname": format!("Sim Customer {}", planned.index),
            },
            "time": iso_now(),
        },
        "text": message.text,
    });
    if let Some(attachment) = &message.attachment {
        body["content"] = json!([{ "attachment": {
            "mediaType": attachment.media_type,
            "url": attachment.url,
            "mime": attachment.mime,
            "filename": attachment.filename,
        }}]);
    }
    if !metadata.is_empty() {
        body["metadata"] = json!(metadata);
    }
    body
}

/// The outbound (agent) message ids of a message-conversation body, in message-time order,
/// and whether every participant has left.
fn read_conversation(body: &Value) -> (Vec<String>, bool) {
    let participants = body["participants"].as_array().cloned().unwrap_or_default();
    let mut outbound: Vec<(String, String)> = Vec::new();
    let mut ended = !participants.is_empty();
    for participant in &participants {
        let state = participant["state"].as_str().unwrap_or_default();
        let left = matches!(state, "disconnected" | "terminated")
            || participant["endTime"]
                .as_str()
                .is_some_and(|t| !t.is_empty());
        ended &= left;
        if participant["purpose"].as_str() != Some("agent") {
            continue;
        }
        for message in participant["messages"].as_array().into_iter().flatten() {
            if let Some(id) = message["messageId"].as_str() {
                let time = message["messageTime"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                outbound.push((time, id.to_owned()));
            }
        }
    }
    // ISO-8601 UTC times of one format sort as text; the sort is stable for equal times.
    outbound.sort_by(|a, b| a.0.cmp(&b.0));
    let mut seen = HashSet::new();
    let ids = outbound
        .into_iter()
        .filter_map(|(_, id)| seen.insert(id.clone()).then_some(id))
        .collect();
    (ids, ended)
}

/// Plays an inbound conversation: customer messages, then watches for agent replies and
/// answers each with its planned receipts, until everyone has left and every receipt is
/// posted.
pub(super) async fn drive_inbound(
    ctx: &DriveContext<'_>,
    planned: &PlannedConversation,
    script: &InboundScript,
    channel: &Channel,
    expected: &mut ExpectedConversation,
    tally: &mut DriveTally,
) -> Result<(), DriveError> {
    let index = planned.index;
    let start = Instant::now();
    let deadline = start + Duration::from_millis(planned.script.duration_ms()) + ctx.slack;
    // The synthetic-agent hooks only make sense against the emulator; a real org would
    // ignore them, but the simulator does not send what the real API does not define.
    let metadata = match ctx.target {
        Target::Emulator => script.routing.metadata(),
        Target::Genesys => BTreeMap::new(),
    };
    let path = format!(
        "/api/v2/conversations/messages/{}/inbound/open/message?prefetchConversationId=true",
        channel.integration_id
    );
    let mut conversation_id: Option<String> = None;
    let inbound_slots: Vec<usize> = expected
        .messages
        .iter()
        .enumerate()
        .filter(|(_, m)| m.direction == MessageDirection::Inbound)
        .map(|(position, _)| position)
        .collect();
    for (sequence, message) in script.customer_messages.iter().enumerate() {
        sleep_until(after(start, message.at_ms)).await;
        let body = customer_body(ctx, planned, sequence, message, &metadata);
        let answer = ctx
            .client
            .post(&path, &body)
            .await
            .map_err(|source| DriveError::Call { index, source })?;
        tally.started = true;
        tally.customer_messages += 1;
        let id = answer["conversationId"].as_str().map(str::to_owned);
        if let Some(slot) = inbound_slots.get(sequence) {
            expected.messages[*slot].message_id = answer["id"].as_str().map(str::to_owned);
            expected.messages[*slot].conversation_id = id.clone();
        }
        match (&conversation_id, id) {
            (None, Some(id)) => conversation_id = Some(id),
            (Some(known), Some(id)) if *known != id => {
                tally.errors.push(format!(
                    "conversation {index}: customer message {sequence} landed in conversation {id}, not {known} (the first one had already ended?)"
                ));
            }
            _ => {}
        }
    }
    let Some(conversation_id) = conversation_id else {
        return Err(DriveError::Unexpected {
            index,
            what:
                "the inbound message answer carried no conversationId (prefetchConversationId=true)"
                    .to_owned(),
        });
    };
    expected.conversation_id = Some(conversation_id.clone());

    let outbound_slots: Vec<usize> = expected
        .messages
        .iter()
        .enumerate()
        .filter(|(_, m)| m.direction == MessageDirection::Outbound)
        .map(|(position, _)| position)
        .collect();
    let mut known: Vec<String> = Vec::new();
    let mut pending: Vec<DueReceipt> = Vec::new();
    let mut ended = false;
    let mut next_poll = Instant::now();
    let conversation_path = format!("/api/v2/conversations/messages/{conversation_id}");
    loop {
        post_due_receipts(
            ctx,
            index,
            channel,
            &planned.customer_id,
            &mut pending,
            tally,
        )
        .await?;
        if ended && pending.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            return Err(DriveError::Unexpected {
                index,
                what: format!(
                    "not finished by its deadline: ended={ended}, agent replies seen {} of {}, receipts pending {}",
                    known.len(),
                    script.routing.agent_replies,
                    pending.len()
                ),
            });
        }
        if !ended && Instant::now() >= next_poll {
            let body = ctx
                .client
                .get(&conversation_path)
                .await
                .map_err(|source| DriveError::Call { index, source })?;
            let seen_at = Instant::now();
            let (outbound, now_ended) = read_conversation(&body);
            for id in outbound {
                if known.contains(&id) {
                    continue;
                }
                let sequence = known.len();
                known.push(id.clone());
                tally.agent_messages_seen += 1;
                match script.receipts.get(sequence) {
                    Some(plan) => {
                        schedule(&mut pending, seen_at, &id, plan);
                        if let Some(slot) = outbound_slots.get(sequence) {
                            expected.messages[*slot].message_id = Some(id.clone());
                            expected.messages[*slot].conversation_id =
                                Some(conversation_id.clone());
                        }
                    }
                    None => tally.unplanned_agent_messages += 1,
                }
            }
            ended = now_ended;
            if ended && known.len() < script.receipts.len() {
                tally.errors.push(format!(
                    "conversation {index} ({conversation_id}): ended with {} agent replies, {} planned",
                    known.len(),
                    script.receipts.len()
                ));
            }
            next_poll = Instant::now() + ctx.poll_interval;
        }
        if ended && pending.is_empty() {
            break;
        }
        let mut wake = deadline;
        if !ended {
            wake = wake.min(next_poll);
        }
        if let Some(first) = pending.iter().map(|receipt| receipt.at).min() {
            wake = wake.min(first);
        }
        sleep_until(wake).await;
    }
    Ok(())
}

/// Plays an agentless conversation: the sends on their schedule, each followed by its
/// planned receipts.
pub(super) async fn drive_agentless(
    ctx: &DriveContext<'_>,
    planned: &PlannedConversation,
    script: &AgentlessScript,
    channel: &Channel,
    expected: &mut ExpectedConversation,
    tally: &mut DriveTally,
) -> Result<(), DriveError> {
    let index = planned.index;
    let start = Instant::now();
    let mut pending: Vec<DueReceipt> = Vec::new();
    let outbound_slots: Vec<usize> = expected
        .messages
        .iter()
        .enumerate()
        .filter(|(_, m)| m.direction == MessageDirection::Outbound)
        .map(|(position, _)| position)
        .collect();
    for (sequence, (message, receipt)) in script.messages.iter().zip(&script.receipts).enumerate() {
        let send_at = after(start, message.at_ms);
        // Receipts of earlier sends may fall before this send.
        while let Some(first) = pending
            .iter()
            .map(|r| r.at)
            .min()
            .filter(|at| *at < send_at)
        {
            sleep_until(first).await;
            post_due_receipts(
                ctx,
                index,
                channel,
                &planned.customer_id,
                &mut pending,
                tally,
            )
            .await?;
        }
        sleep_until(send_at).await;
        let body = json!({
            "fromAddress": channel.from_address,
            "toAddress": planned.customer_id,
            "toAddressMessengerType": "open",
            "textBody": message.text,
            "useExistingActiveConversation": sequence > 0,
        });
        let answer = ctx
            .client
            .post("/api/v2/conversations/messages/agentless", &body)
            .await
            .map_err(|source| DriveError::Call { index, source })?;
        let sent_at = Instant::now();
        tally.started = true;
        tally.agentless_messages += 1;
        let landed_in = answer["conversationId"].as_str().map(str::to_owned);
        if expected.conversation_id.is_none() {
            expected.conversation_id = landed_in.clone();
        }
        let Some(message_id) = answer["message"]["id"].as_str().map(str::to_owned) else {
            return Err(DriveError::Unexpected {
                index,
                what: "the agentless send answer carried no message.id".to_owned(),
            });
        };
        if let Some(slot) = outbound_slots.get(sequence) {
            expected.messages[*slot].message_id = Some(message_id.clone());
            expected.messages[*slot].conversation_id = landed_in;
        }
        schedule(&mut pending, sent_at, &message_id, receipt);
    }
    while let Some(first) = pending.iter().map(|r| r.at).min() {
        sleep_until(first).await;
        post_due_receipts(
            ctx,
            index,
            channel,
            &planned.customer_id,
            &mut pending,
            tally,
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_agent_messages_in_time_order_and_the_end() {
        let body = json!({
            "participants": [
                { "purpose": "customer", "state": "disconnected",
                  "messages": [{ "messageId": "in1", "messageTime": "2025-01-01T00:00:00.000Z" }] },
                { "purpose": "agent", "state": "disconnected",
                  "messages": [
                    { "messageId": "out2", "messageTime": "2025-01-01T00:00:02.000Z" },
                    { "messageId": "out1", "messageTime": "2025-01-01T00:00:01.000Z" }
                  ] },
                { "purpose": "agent", "state": "terminated",
                  "messages": [{ "messageId": "out3", "messageTime": "2025-01-01T00:00:03.000Z" }] }
            ]
        });
        let (ids, ended) = read_conversation(&body);
        assert_eq!(ids, ["out1", "out2", "out3"]);
        assert!(ended);
    }

    #[test]
    fn a_connected_participant_means_not_ended() {
        let body = json!({
            "participants": [
                { "purpose": "customer", "state": "connected" },
                { "purpose": "agent", "state": "disconnected" }
            ]
        });
        assert!(!read_conversation(&body).1);
        assert!(!read_conversation(&json!({})).1);
    }
}
