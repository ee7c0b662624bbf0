//! The records and the summary document Convoy sends to the CRM (schema version 1), built
//! from facts and SLA signals. Pure: the observation time is an argument.
//!
//! Record ids are readable and stable — the same fact always gets the same id, across
//! resends, restarts and re-derivations after a rebuild from REST — so a CRM that
//! de-duplicates by id holds each fact once:
//! - `participant.transition`: `{conversation}/participant/{participant}/{to}`;
//! - `message.status`: `{conversation}/message/{message}/{status}`;
//! - `sla.warning`, `sla.breach`, `sla.outcome`:
//!   `{conversation}/sla/{clock}/{subject}/{warning|breach|outcome}` — exactly one
//!   `sla.outcome` per clock, ever, so a CRM counts compliance by counting records.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::CrmRecord;
use crate::conversation::facts::Fact;
use crate::conversation::snapshot::MessageDirection;
use crate::conversation::state::ConversationState;
use crate::ids::ConversationId;
use crate::sla::{ClockSubject, Sender, SlaOutcome, SlaSignal, SlaSignalKind, SlaTallies};

/// The payload schema version, in every payload as `schema`.
pub const SCHEMA_VERSION: u32 = 1;

pub const KIND_PARTICIPANT_TRANSITION: &str = "participant.transition";
pub const KIND_MESSAGE_STATUS: &str = "message.status";
pub const KIND_SLA_WARNING: &str = "sla.warning";
pub const KIND_SLA_BREACH: &str = "sla.breach";
pub const KIND_SLA_OUTCOME: &str = "sla.outcome";

/// The top-level fields of the summary document Convoy owns; on a 412 the CRM's other
/// fields are kept and these are replaced.
pub const SUMMARY_OWNED_FIELDS: &[&str] = &[
    "schema",
    "conversationId",
    "convoyVersion",
    "startTime",
    "endTime",
    "finished",
    "participants",
    "messages",
    "sla",
];

fn time(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The record of one fact.
pub fn fact_record(
    conversation: &ConversationId,
    fact: &Fact,
    observed_at: DateTime<Utc>,
) -> CrmRecord {
    match fact {
        Fact::ParticipantReached {
            participant_id,
            purpose,
            queue_id,
            user_id,
            from,
            to,
        } => CrmRecord {
            id: format!(
                "{}/participant/{}/{}",
                conversation.text().as_str(),
                participant_id.text().as_str(),
                to.as_str()
            ),
            conversation_id: conversation.to_string(),
            kind: KIND_PARTICIPANT_TRANSITION.to_owned(),
            payload: json!({
                "schema": SCHEMA_VERSION,
                "participantId": participant_id.text().as_str(),
                "purpose": purpose.as_ref().map(|p| p.as_str()),
                "queueId": queue_id,
                "userId": user_id,
                "from": from.as_str(),
                "to": to.as_str(),
                "observedAt": time(&observed_at),
            }),
        },
        Fact::MessageStatus {
            message_id,
            participant_id,
            direction,
            sender,
            messenger_type,
            queue_id,
            status,
            implied,
            message_time,
            attachments,
        } => CrmRecord {
            id: format!(
                "{}/message/{}/{}",
                conversation.text().as_str(),
                message_id.text().as_str(),
                status.as_str()
            ),
            conversation_id: conversation.to_string(),
            kind: KIND_MESSAGE_STATUS.to_owned(),
            payload: json!({
                "schema": SCHEMA_VERSION,
                "messageId": message_id.text().as_str(),
                "participantId": participant_id.text().as_str(),
                "direction": direction_str(*direction),
                "sender": sender_str(*sender),
                "messengerType": messenger_type,
                "queueId": queue_id,
                "status": status.as_str(),
                "implied": implied,
                "messageTime": message_time.as_ref().map(time),
                "observedAt": time(&observed_at),
                "attachmentCount": attachments.len(),
                "attachments": attachments.iter().map(|a| json!({
                    "url": a.url,
                    "mimeType": a.mime_type,
                    "sizeBytes": a.size_bytes,
                    "name": a.name,
                })).collect::<Vec<_>>(),
            }),
        },
    }
}

fn sender_str(sender: Sender) -> &'static str {
    match sender {
        Sender::Customer => "customer",
        Sender::HumanAgent => "human_agent",
        Sender::Automated => "automated",
    }
}

fn direction_str(direction: MessageDirection) -> &'static str {
    match direction {
        MessageDirection::Inbound => "inbound",
        MessageDirection::Outbound => "outbound",
        MessageDirection::Unknown => "unknown",
    }
}

/// The record of one SLA signal, emitted at `emitted_at` (the timer's tick, or the
/// observation that caused it): `at` says when it happened by the rules (a breach: its
/// deadline), `emittedAt` when Convoy knew.
pub fn sla_record(
    conversation: &ConversationId,
    signal: &SlaSignal,
    emitted_at: DateTime<Utc>,
) -> CrmRecord {
    let (kind, suffix, outcome) = match &signal.kind {
        SlaSignalKind::Warning => (KIND_SLA_WARNING, "warning", None),
        SlaSignalKind::Breach => (KIND_SLA_BREACH, "breach", None),
        SlaSignalKind::Outcome(outcome) => (KIND_SLA_OUTCOME, "outcome", Some(*outcome)),
    };
    let (subject_key, subject) = match &signal.subject {
        ClockSubject::MessageId(id) => ("messageId", id.as_str()),
        ClockSubject::ParticipantId(id) => ("participantId", id.as_str()),
    };
    CrmRecord {
        id: format!(
            "{}/sla/{}/{}/{}",
            conversation.text().as_str(),
            signal.clock.as_str(),
            subject,
            suffix
        ),
        conversation_id: conversation.to_string(),
        kind: kind.to_owned(),
        payload: json!({
            "schema": SCHEMA_VERSION,
            "clock": signal.clock.as_str(),
            subject_key: subject,
            "queueId": signal.queue_id,
            "outcome": outcome.as_ref().map(SlaOutcome::as_str),
            "thresholdMs": duration_ms(signal.threshold),
            "measuredMs": duration_ms(signal.measured),
            "startedAt": time(&signal.started_at),
            "deadline": time(&signal.deadline),
            "fulfilledAt": signal.fulfilled_at.as_ref().map(time),
            "calendar": signal.calendar,
            "at": time(&signal.at),
            "emittedAt": time(&emitted_at),
        }),
    }
}

fn duration_ms(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// What the summary shows of the conversation itself (the SLA tallies are added by whoever
/// keeps the clocks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationSummary {
    pub conversation_id: String,
    pub convoy_version: u64,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub finished: bool,
    pub participants: Vec<SummaryParticipant>,
    /// Message counts by direction, then by status.
    pub messages: BTreeMap<String, BTreeMap<String, u32>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SummaryParticipant {
    pub id: String,
    pub purpose: Option<String>,
    pub user_id: Option<String>,
    pub queue_id: Option<String>,
    pub lifecycle: String,
}

impl ConversationSummary {
    pub fn of(state: &ConversationState, version: u64) -> ConversationSummary {
        let mut messages: BTreeMap<String, BTreeMap<String, u32>> = BTreeMap::new();
        for message in state.messages.values() {
            let status = message
                .status()
                .as_ref()
                .map_or("unknown", |s| s.as_str())
                .to_owned();
            *messages
                .entry(direction_str(message.direction()).to_owned())
                .or_default()
                .entry(status)
                .or_default() += 1;
        }
        ConversationSummary {
            conversation_id: state.id.to_string(),
            convoy_version: version,
            start_time: state.start_time.as_ref().map(time),
            end_time: state.end_time.as_ref().map(time),
            finished: state.is_finished(),
            participants: state
                .participants
                .iter()
                .map(|(id, p)| SummaryParticipant {
                    id: id.to_string(),
                    purpose: p.purpose().as_ref().map(|p| p.as_str().to_owned()),
                    user_id: p.user_id().map(|id| id.to_string()),
                    queue_id: p.queue_id().map(|id| id.to_string()),
                    lifecycle: p.lifecycle().as_str().to_owned(),
                })
                .collect(),
            messages,
        }
    }

    /// The document `PUT /conversations/{id}` carries: this summary plus the SLA tallies
    /// (clock → outcome → count).
    pub fn document(&self, sla: &SlaTallies) -> Value {
        // Infallible in practice: the view is plain strings, numbers and string-keyed maps.
        serde_json::to_value(self.document_view(sla)).unwrap_or(Value::Null)
    }

    /// [`ConversationSummary::document`] serialised straight to JSON text, for the outbox
    /// (no `Value` tree in between).
    pub fn document_json(
        &self,
        sla: &SlaTallies,
    ) -> Result<Box<serde_json::value::RawValue>, serde_json::Error> {
        serde_json::value::to_raw_value(&self.document_view(sla))
    }

    fn document_view<'a>(&'a self, sla: &'a SlaTallies) -> SummaryDocument<'a> {
        SummaryDocument {
            schema: SCHEMA_VERSION,
            summary: self,
            sla: SlaTalliesJson(sla),
        }
    }
}

/// The summary document's shape: the summary's fields, `schema` and the tallies.
#[derive(Serialize)]
struct SummaryDocument<'a> {
    schema: u32,
    #[serde(flatten)]
    summary: &'a ConversationSummary,
    sla: SlaTalliesJson<'a>,
}

/// SLA tallies as the document shows them: clock name → outcome name → count.
struct SlaTalliesJson<'a>(&'a SlaTallies);

impl Serialize for SlaTalliesJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut clocks = serializer.serialize_map(Some(self.0.len()))?;
        for (clock, outcomes) in self.0.iter() {
            let outcomes: BTreeMap<&str, u32> = outcomes
                .iter()
                .map(|(outcome, count)| (outcome.as_str(), *count))
                .collect();
            clocks.serialize_entry(clock.as_str(), &outcomes)?;
        }
        clocks.end()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::sla::ClockKind;

    fn summary() -> ConversationSummary {
        ConversationSummary {
            conversation_id: "c1".to_owned(),
            convoy_version: 7,
            start_time: Some("2026-01-01T10:00:00.000Z".to_owned()),
            end_time: None,
            finished: false,
            participants: vec![SummaryParticipant {
                id: "p1".to_owned(),
                purpose: Some("customer".to_owned()),
                user_id: None,
                queue_id: Some("q1".to_owned()),
                lifecycle: "active".to_owned(),
            }],
            messages: BTreeMap::from([(
                "inbound".to_owned(),
                BTreeMap::from([("delivered".to_owned(), 2)]),
            )]),
        }
    }

    #[test]
    fn the_summary_document_has_every_owned_field_and_the_tallies_by_name() {
        let tallies: SlaTallies = BTreeMap::from([
            (
                ClockKind::FirstResponse,
                BTreeMap::from([(SlaOutcome::Compliant, 1), (SlaOutcome::Breached, 2)]),
            ),
            (
                ClockKind::Answer,
                BTreeMap::from([(SlaOutcome::Compliant, 3)]),
            ),
        ]);
        let document = summary().document(&tallies);
        assert_eq!(
            document,
            json!({
                "schema": SCHEMA_VERSION,
                "conversationId": "c1",
                "convoyVersion": 7,
                "startTime": "2026-01-01T10:00:00.000Z",
                "endTime": null,
                "finished": false,
                "participants": [{
                    "id": "p1", "purpose": "customer", "userId": null, "queueId": "q1",
                    "lifecycle": "active",
                }],
                "messages": {"inbound": {"delivered": 2}},
                "sla": {
                    ClockKind::Answer.as_str(): {SlaOutcome::Compliant.as_str(): 3},
                    ClockKind::FirstResponse.as_str(): {
                        SlaOutcome::Compliant.as_str(): 1,
                        SlaOutcome::Breached.as_str(): 2,
                    },
                },
            })
        );
        let mut keys: Vec<&str> = document
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        let mut owned = SUMMARY_OWNED_FIELDS.to_vec();
        owned.sort_unstable();
        assert_eq!(
            keys, owned,
            "the document is exactly the fields Convoy owns"
        );
        // The outbox's text is the same document.
        let text = summary().document_json(&tallies).unwrap();
        assert_eq!(serde_json::from_str::<Value>(text.get()).unwrap(), document);
    }
}
