//! Plays one planned conversation over the real REST paths: the customer's open-messaging
//! messages, the agentless sends, and the receipts of every outbound message on the plan's
//! schedule. Voice calls are placed through the emulator's control API (Genesys has no
//! API that places an inbound call) and read over REST until they ended. Agent replies and the end are learned from the notification [`Feed`]; the
//! conversation is read over REST (`GET /api/v2/conversations/messages/{id}`) only after
//! the socket reconnected (events may have been lost) or while it is down.
//!
//! Deadlines count plan time only: a conversation has its planned length plus the slack,
//! counted from its first accepted message (the emulator's agents start their timers
//! then), plus every moment its own REST calls took — waiting on the request budget or a
//! `Retry-After` included — since those delay the conversation without anything being
//! wrong with it.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::http::Method;
use actix_web::rt::time::{sleep_until, Instant};
use convoy::simulator::expect::{ExpectedConversation, MessageDirection};
use convoy::simulator::plan::{
    AgentlessScript, CustomerMessage, InboundScript, PlannedConversation, ReceiptPlan, VoiceScript,
};
use serde_json::{json, Value};

use super::client::{ApiClient, CallError, Priority};
use super::follow::Feed;
use super::Target;

/// What the driver needs besides the plan.
pub(super) struct DriveContext<'a> {
    pub client: &'a ApiClient,
    pub feed: &'a Feed,
    pub target: Target,
    pub seed: u64,
    /// How often a waiting conversation is re-read while the notification socket is down.
    pub poll_interval: Duration,
    /// Added to the plan's own duration before a conversation is declared stuck.
    pub slack: Duration,
}

/// Time spent in one conversation's REST calls: it moves the deadline.
#[derive(Debug, Default)]
struct RestTime(Duration);

impl RestTime {
    async fn call(
        &mut self,
        ctx: &DriveContext<'_>,
        method: Method,
        path: &str,
        body: Option<&Value>,
        priority: Priority,
    ) -> Result<Value, CallError> {
        let started = Instant::now();
        let result = ctx.client.call(method, path, body, priority).await;
        self.0 += started.elapsed();
        result
    }
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
    rest: &mut RestTime,
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
        rest.call(ctx, Method::POST, &path, Some(&body), Priority::Background)
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

/// Plays an inbound conversation: customer messages, then watches the feed for agent
/// replies and answers each with its planned receipts, until everyone has left and every
/// receipt is posted.
pub(super) async fn drive_inbound(
    ctx: &DriveContext<'_>,
    planned: &PlannedConversation,
    script: &InboundScript,
    channel: &Channel,
    expected: &mut ExpectedConversation,
    tally: &mut DriveTally,
) -> Result<(), DriveError> {
    let index = planned.index;
    let mut rest = RestTime::default();
    // The feed generation this conversation is up to date with: taken before the first
    // message, so a reconnect at any moment after it (events possibly lost) forces a
    // re-read.
    let mut generation = ctx.feed.generation();
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
    // When the first message was accepted, and the REST time spent before it (which the
    // deadline does not count: it starts then).
    let mut first_accepted: Option<(Instant, Duration)> = None;
    let inbound_slots: Vec<usize> = expected
        .messages
        .iter()
        .enumerate()
        .filter(|(_, m)| m.direction == MessageDirection::Inbound)
        .map(|(position, _)| position)
        .collect();
    let first_at_ms = script
        .customer_messages
        .first()
        .map_or(0, |message| message.at_ms);
    for (sequence, message) in script.customer_messages.iter().enumerate() {
        // Later messages keep their planned gap to the first one as the emulator saw it,
        // however long the first one waited for the request budget.
        if let Some((accepted, _)) = first_accepted {
            sleep_until(after(accepted, message.at_ms.saturating_sub(first_at_ms))).await;
        }
        let body = customer_body(ctx, planned, sequence, message, &metadata);
        let answer = rest
            .call(ctx, Method::POST, &path, Some(&body), Priority::Live)
            .await
            .map_err(|source| DriveError::Call { index, source })?;
        if first_accepted.is_none() {
            first_accepted = Some((Instant::now(), rest.0));
        }
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
    let (Some(conversation_id), Some((accepted, rest_before))) = (conversation_id, first_accepted)
    else {
        return Err(DriveError::Unexpected {
            index,
            what:
                "the inbound message answer carried no conversationId (prefetchConversationId=true)"
                    .to_owned(),
        });
    };
    expected.conversation_id = Some(conversation_id.clone());
    let planned_length =
        Duration::from_millis(planned.script.duration_ms().saturating_sub(first_at_ms)) + ctx.slack;
    let deadline = |rest: &RestTime| accepted + planned_length + rest.0.saturating_sub(rest_before);

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
    let mut next_poll = Instant::now() + ctx.poll_interval;
    // The id comes from the server's answer: escaped, so it cannot point the token-carrying
    // polls at another path.
    let segment =
        convoy::ids::path_segment(&conversation_id).map_err(|error| DriveError::Unexpected {
            index,
            what: format!("the conversation id {conversation_id:?} cannot go into a path: {error}"),
        })?;
    let conversation_path = format!("/api/v2/conversations/messages/{segment}");
    let outcome = loop {
        if let Err(error) = post_due_receipts(
            ctx,
            index,
            channel,
            &planned.customer_id,
            &mut pending,
            tally,
            &mut rest,
        )
        .await
        {
            break Err(error);
        }
        // Registered before the look, so a change between the look and the wait wakes it.
        let changed = ctx.feed.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let look = ctx.feed.look(&conversation_id, known.len());
        for (id, seen_at) in look.new_agent_messages {
            let sequence = known.len();
            known.push(id.clone());
            tally.agent_messages_seen += 1;
            match script.receipts.get(sequence) {
                Some(plan) => {
                    schedule(&mut pending, seen_at, &id, plan);
                    if let Some(slot) = outbound_slots.get(sequence) {
                        expected.messages[*slot].message_id = Some(id.clone());
                        expected.messages[*slot].conversation_id = Some(conversation_id.clone());
                    }
                }
                None => tally.unplanned_agent_messages += 1,
            }
        }
        if look.ended && !ended {
            ended = true;
            if known.len() < script.receipts.len() {
                tally.errors.push(format!(
                    "conversation {index} ({conversation_id}): ended with {} agent replies, {} planned",
                    known.len(),
                    script.receipts.len()
                ));
            }
        }
        if ended && pending.is_empty() {
            break Ok(());
        }
        let now = Instant::now();
        // Events may have been lost while the socket was away: read the conversation once
        // after a reconnect, and at the poll interval while it is down.
        let stale = generation != look.generation || (!look.connected && now >= next_poll);
        if !ended && stale {
            match rest
                .call(ctx, Method::GET, &conversation_path, None, Priority::Live)
                .await
            {
                Ok(body) => {
                    if let Err(error) = ctx.feed.apply_rest(body, Instant::now()) {
                        break Err(DriveError::Unexpected {
                            index,
                            what: format!("reading {conversation_path}: {error}"),
                        });
                    }
                }
                Err(source) => break Err(DriveError::Call { index, source }),
            }
            generation = look.generation;
            next_poll = Instant::now() + ctx.poll_interval;
            continue;
        }
        let deadline = deadline(&rest);
        if now >= deadline {
            let hint = if look.snapshots == 0 {
                " (no notification was seen for it: is its queue among the followed ones?)"
            } else {
                ""
            };
            break Err(DriveError::Unexpected {
                index,
                what: format!(
                    "not finished by its deadline: ended={ended}, agent replies seen {} of {}, receipts pending {}{hint}",
                    known.len(),
                    script.routing.agent_replies,
                    pending.len()
                ),
            });
        }
        let mut wake = deadline;
        if !look.connected && !ended {
            wake = wake.min(next_poll);
        }
        if let Some(first) = pending.iter().map(|receipt| receipt.at).min() {
            wake = wake.min(first);
        }
        tokio::select! {
            () = &mut changed => {}
            () = sleep_until(wake) => {}
        }
    };
    ctx.feed.forget(&conversation_id);
    outcome
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
    let mut rest = RestTime::default();
    let start = Instant::now();
    let mut pending: Vec<DueReceipt> = Vec::new();
    let mut landed: Vec<String> = Vec::new();
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
                &mut rest,
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
        let answer = rest
            .call(
                ctx,
                Method::POST,
                "/api/v2/conversations/messages/agentless",
                Some(&body),
                Priority::Live,
            )
            .await
            .map_err(|source| DriveError::Call { index, source })?;
        let sent_at = Instant::now();
        tally.started = true;
        tally.agentless_messages += 1;
        let landed_in = answer["conversationId"].as_str().map(str::to_owned);
        if expected.conversation_id.is_none() {
            expected.conversation_id = landed_in.clone();
        }
        landed.extend(landed_in.clone());
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
            &mut rest,
        )
        .await?;
    }
    // Agentless conversations are published on their queue's topics too.
    for id in &landed {
        ctx.feed.forget(id);
    }
    Ok(())
}

/// Places a voice call on `queue_id` (`POST /emulator/v1/conversations/voice` with the
/// plan's routing), then reads the call over REST from its planned end on, at the poll
/// interval, until every participant has left.
pub(super) async fn drive_voice(
    ctx: &DriveContext<'_>,
    planned: &PlannedConversation,
    script: &VoiceScript,
    queue_id: &str,
    expected: &mut ExpectedConversation,
    tally: &mut DriveTally,
) -> Result<(), DriveError> {
    let index = planned.index;
    if ctx.target != Target::Emulator {
        return Err(DriveError::Unexpected {
            index,
            what: "voice calls can only be placed on the emulator".to_owned(),
        });
    }
    let mut rest = RestTime::default();
    let routing = &script.routing;
    let body = json!({
        "queueId": queue_id,
        "answer_after_ms": routing.answer_after_ms,
        "reply_after_ms": routing.reply_after_ms,
        "agent_replies": routing.agent_replies,
        "wrapup_after_ms": routing.wrapup_after_ms,
        "outcome": routing.outcome.as_str(),
    });
    let answer = rest
        .call(
            ctx,
            Method::POST,
            "/emulator/v1/conversations/voice",
            Some(&body),
            Priority::Live,
        )
        .await
        .map_err(|source| DriveError::Call { index, source })?;
    let placed = Instant::now();
    tally.started = true;
    let Some(conversation_id) = answer["id"].as_str().map(str::to_owned) else {
        return Err(DriveError::Unexpected {
            index,
            what: "the voice call answer carried no id".to_owned(),
        });
    };
    expected.conversation_id = Some(conversation_id.clone());
    let segment =
        convoy::ids::path_segment(&conversation_id).map_err(|error| DriveError::Unexpected {
            index,
            what: format!("the conversation id {conversation_id:?} cannot go into a path: {error}"),
        })?;
    let path = format!("/api/v2/conversations/{segment}");
    let planned_end = after(placed, planned.script.duration_ms());
    let deadline = planned_end + ctx.slack;
    sleep_until(planned_end).await;
    loop {
        let body = rest
            .call(ctx, Method::GET, &path, None, Priority::Background)
            .await
            .map_err(|source| DriveError::Call { index, source })?;
        if body["endTime"].is_string() {
            return Ok(());
        }
        // The deadline moves with the time spent in this call's own requests.
        if Instant::now() >= deadline + rest.0 {
            return Err(DriveError::Unexpected {
                index,
                what: format!("voice call {conversation_id} not ended by its deadline"),
            });
        }
        sleep_until(Instant::now() + ctx.poll_interval.min(Duration::from_millis(500))).await;
    }
}
