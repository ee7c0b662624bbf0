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

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{CrmRecord, Payload};
use crate::conversation::facts::Fact;
use crate::conversation::lifecycle::Lifecycle;
use crate::conversation::snapshot::MessageDirection;
use crate::conversation::state::ConversationState;
use crate::ids::{ConversationId, IdText, ParticipantId};
use crate::model::Purpose;
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
    with_time(at, str::to_owned)
}

/// Gives `write` the time as [`time`] writes it: laid out on the stack where
/// [`millis_layout`] can, so serialising one allocates nothing.
fn with_time<R>(at: &DateTime<Utc>, write: impl FnOnce(&str) -> R) -> R {
    let layout = millis_layout(at);
    match layout
        .as_ref()
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
    {
        Some(text) => write(text),
        None => write(&at.to_rfc3339_opts(SecondsFormat::Millis, true)),
    }
}

/// A time as `2026-03-01T10:00:00.123Z`, written digit by digit (chrono's formatter is a
/// general format machine: records and summaries are made by the thousand a second).
/// `None` for a year outside 0..=9999, which chrono writes otherwise.
fn millis_layout(at: &DateTime<Utc>) -> Option<[u8; 24]> {
    use chrono::{Datelike, Timelike};
    // The naive time once: each field of a `DateTime` read on its own applies its offset.
    let at = at.naive_utc();
    let year = at.year();
    if !(0..=9999).contains(&year) {
        return None;
    }
    let mut text = *b"0000-00-00T00:00:00.000Z";
    let mut put = |from: usize, digits: usize, mut value: u32| {
        for index in (from..from + digits).rev() {
            text[index] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    // `year` is within 0..=9999, so it fits.
    put(0, 4, year.unsigned_abs());
    put(5, 2, at.month());
    put(8, 2, at.day());
    put(11, 2, at.hour());
    put(14, 2, at.minute());
    // A leap second is written as second 60, as chrono writes it.
    let nanos = at.nanosecond();
    put(17, 2, at.second() + nanos / 1_000_000_000);
    put(20, 3, nanos % 1_000_000_000 / 1_000_000);
    Some(text)
}

/// A time as [`time`] writes it, serialised as a string.
struct Millis<'a>(&'a DateTime<Utc>);

impl Serialize for Millis<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        with_time(self.0, |text| serializer.serialize_str(text))
    }
}

/// The payload of a `participant.transition` record (fields in the order of their names,
/// as the records always had them).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TransitionPayload<'a> {
    from: &'static str,
    observed_at: Millis<'a>,
    participant_id: &'a str,
    purpose: Option<&'a str>,
    queue_id: &'a Option<String>,
    schema: u32,
    to: &'static str,
    user_id: &'a Option<String>,
}

/// The payload of a `message.status` record.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MessageStatusPayload<'a> {
    attachment_count: usize,
    attachments: Vec<AttachmentPayload<'a>>,
    direction: &'static str,
    implied: bool,
    message_id: &'a str,
    message_time: Option<Millis<'a>>,
    messenger_type: &'a Option<String>,
    observed_at: Millis<'a>,
    participant_id: &'a str,
    queue_id: &'a Option<String>,
    schema: u32,
    sender: &'static str,
    status: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AttachmentPayload<'a> {
    mime_type: &'a Option<String>,
    name: &'a Option<String>,
    size_bytes: Option<u64>,
    url: &'a str,
}

/// The payload of an `sla.*` record: the subject is a `messageId` or a `participantId`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SlaPayload<'a> {
    at: Millis<'a>,
    calendar: &'a Option<String>,
    clock: &'static str,
    deadline: Millis<'a>,
    emitted_at: Millis<'a>,
    fulfilled_at: Option<Millis<'a>>,
    measured_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_id: Option<&'a str>,
    outcome: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    participant_id: Option<&'a str>,
    queue_id: &'a Option<String>,
    schema: u32,
    started_at: Millis<'a>,
    threshold_ms: u64,
}

/// A payload made of plain strings, numbers and options: serialising it cannot fail.
fn payload<T: Serialize>(value: &T) -> Payload {
    Payload::of(value).unwrap_or_default()
}

/// The record of one fact.
pub fn fact_record(
    conversation: &ConversationId,
    fact: &Fact,
    observed_at: DateTime<Utc>,
) -> CrmRecord {
    // Rendered once, its text taken once (each `as_str` of a rendered id checks it
    // again): the id and the record's conversation both show it.
    let rendered_conversation = conversation.text();
    let conversation = rendered_conversation.as_str();
    match fact {
        Fact::ParticipantReached {
            participant_id,
            purpose,
            queue_id,
            user_id,
            from,
            to,
        } => {
            let rendered_participant = participant_id.text();
            let participant = rendered_participant.as_str();
            CrmRecord {
                id: [conversation, "participant", participant, to.as_str()].join("/"),
                conversation_id: conversation.to_owned(),
                kind: KIND_PARTICIPANT_TRANSITION.to_owned(),
                payload: payload(&TransitionPayload {
                    from: from.as_str(),
                    observed_at: Millis(&observed_at),
                    participant_id: participant,
                    purpose: purpose.as_ref().map(|p| p.as_str()),
                    queue_id,
                    schema: SCHEMA_VERSION,
                    to: to.as_str(),
                    user_id,
                }),
            }
        }
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
        } => {
            let (rendered_message, rendered_participant) =
                (message_id.text(), participant_id.text());
            let (message, participant) = (rendered_message.as_str(), rendered_participant.as_str());
            CrmRecord {
                id: [conversation, "message", message, status.as_str()].join("/"),
                conversation_id: conversation.to_owned(),
                kind: KIND_MESSAGE_STATUS.to_owned(),
                payload: payload(&MessageStatusPayload {
                    attachment_count: attachments.len(),
                    attachments: attachments
                        .iter()
                        .map(|a| AttachmentPayload {
                            mime_type: &a.mime_type,
                            name: &a.name,
                            size_bytes: a.size_bytes,
                            url: &a.url,
                        })
                        .collect(),
                    direction: direction_str(*direction),
                    implied: *implied,
                    message_id: message,
                    message_time: message_time.as_ref().map(Millis),
                    messenger_type,
                    observed_at: Millis(&observed_at),
                    participant_id: participant,
                    queue_id,
                    schema: SCHEMA_VERSION,
                    sender: sender_str(*sender),
                    status: status.as_str(),
                }),
            }
        }
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
    let rendered_conversation = conversation.text();
    let conversation = rendered_conversation.as_str();
    let (message_id, participant_id, subject) = match &signal.subject {
        ClockSubject::MessageId(id) => (Some(id.as_str()), None, id.as_str()),
        ClockSubject::ParticipantId(id) => (None, Some(id.as_str()), id.as_str()),
    };
    CrmRecord {
        id: [conversation, "sla", signal.clock.as_str(), subject, suffix].join("/"),
        conversation_id: conversation.to_owned(),
        kind: kind.to_owned(),
        payload: payload(&SlaPayload {
            at: Millis(&signal.at),
            calendar: &signal.calendar,
            clock: signal.clock.as_str(),
            deadline: Millis(&signal.deadline),
            emitted_at: Millis(&emitted_at),
            fulfilled_at: signal.fulfilled_at.as_ref().map(Millis),
            measured_ms: duration_ms(signal.measured),
            message_id,
            outcome: outcome.as_ref().map(SlaOutcome::as_str),
            participant_id,
            queue_id: &signal.queue_id,
            schema: SCHEMA_VERSION,
            started_at: Millis(&signal.started_at),
            threshold_ms: duration_ms(signal.threshold),
        }),
    }
}

fn duration_ms(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// What the summary shows of the conversation itself (the SLA tallies are added by whoever
/// keeps the clocks). Built on every change that produced facts, so it holds what the
/// state holds as it is held — inline ids, one-byte enums, names borrowed for good — and
/// is turned into text once, by [`Self::document_json`]; its JSON is the same as with
/// plain strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationSummary {
    pub conversation_id: ConversationId,
    pub convoy_version: u64,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub finished: bool,
    pub participants: Vec<SummaryParticipant>,
    /// Message counts by direction, then by status.
    pub messages: BTreeMap<Cow<'static, str>, BTreeMap<Cow<'static, str>, u32>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SummaryParticipant {
    pub id: ParticipantId,
    pub purpose: Option<Purpose>,
    pub user_id: Option<IdText>,
    pub queue_id: Option<IdText>,
    pub lifecycle: Lifecycle,
}

impl ConversationSummary {
    pub fn of(state: &ConversationState, version: u64) -> ConversationSummary {
        let mut messages: BTreeMap<Cow<'static, str>, BTreeMap<Cow<'static, str>, u32>> =
            BTreeMap::new();
        for message in state.messages.values() {
            let status = message.status();
            let by_status = messages
                .entry(Cow::Borrowed(direction_str(message.direction())))
                .or_default();
            let status: Cow<'static, str> = match &status {
                None => Cow::Borrowed("unknown"),
                Some(status) => match status.known_str() {
                    Some(known) => Cow::Borrowed(known),
                    None => Cow::Owned(status.as_str().to_owned()),
                },
            };
            *by_status.entry(status).or_default() += 1;
        }
        ConversationSummary {
            conversation_id: state.id.clone(),
            convoy_version: version,
            start_time: state.start_time.as_ref().map(time),
            end_time: state.end_time.as_ref().map(time),
            finished: state.is_finished(),
            participants: state
                .participants
                .iter()
                .map(|(id, p)| SummaryParticipant {
                    id: id.clone(),
                    purpose: p.purpose(),
                    user_id: p.user_id_text().cloned(),
                    queue_id: p.queue_id_text().cloned(),
                    lifecycle: p.lifecycle(),
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

/// The summary document's shape: `schema`, the summary's fields and the tallies.
struct SummaryDocument<'a> {
    schema: u32,
    summary: &'a ConversationSummary,
    sla: SlaTalliesJson<'a>,
}

impl Serialize for SummaryDocument<'_> {
    // Written out rather than `#[serde(flatten)]`, which goes through serde's generic
    // flattening machinery for every summary; a test holds the two to the same text.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let ConversationSummary {
            conversation_id,
            convoy_version,
            start_time,
            end_time,
            finished,
            participants,
            messages,
        } = self.summary;
        let mut document = serializer.serialize_map(Some(9))?;
        document.serialize_entry("schema", &self.schema)?;
        document.serialize_entry("conversationId", conversation_id)?;
        document.serialize_entry("convoyVersion", convoy_version)?;
        document.serialize_entry("startTime", start_time)?;
        document.serialize_entry("endTime", end_time)?;
        document.serialize_entry("finished", finished)?;
        document.serialize_entry("participants", participants)?;
        document.serialize_entry("messages", messages)?;
        document.serialize_entry("sla", &self.sla)?;
        document.end()
    }
}

/// SLA tallies as the document shows them: clock name → outcome name → count.
struct SlaTalliesJson<'a>(&'a SlaTallies);

impl Serialize for SlaTalliesJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut clocks = serializer.serialize_map(Some(self.0.len()))?;
        for (clock, outcomes) in self.0.iter() {
            clocks.serialize_entry(clock.as_str(), &OutcomesByName(outcomes))?;
        }
        clocks.end()
    }
}

/// One clock's outcome counts, by outcome name in the order of the names (as a map keyed
/// by name writes them), without building that map for every summary.
struct OutcomesByName<'a>(&'a BTreeMap<SlaOutcome, u32>);

/// `SlaOutcome::ALL` in the order of their names, fixed here rather than sorted again for
/// every clock of every summary (a test holds the two together).
const OUTCOMES_BY_NAME: [SlaOutcome; 5] = [
    SlaOutcome::Abandoned,
    SlaOutcome::Breached,
    SlaOutcome::Compliant,
    SlaOutcome::Failed,
    SlaOutcome::MissingReceipt,
];

impl Serialize for OutcomesByName<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut outcomes = serializer.serialize_map(Some(self.0.len()))?;
        for outcome in &OUTCOMES_BY_NAME {
            if let Some(count) = self.0.get(outcome) {
                outcomes.serialize_entry(outcome.as_str(), count)?;
            }
        }
        outcomes.end()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::conversation::lifecycle::Lifecycle;
    use crate::conversation::snapshot::Attachment;
    use crate::ids::{MessageId, ParticipantId};
    use crate::model::{MessageStatus, Purpose};
    use crate::sla::ClockKind;
    use serde_json::json;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    /// The payloads are written as text, field by field: the same text, byte for byte, as
    /// the JSON tree (sorted keys) the records were built from before, so a record made
    /// again hashes to the same `Idempotency-Key`.
    #[test]
    fn record_payloads_are_the_text_of_their_json_tree() {
        let conversation = ConversationId::from("c0ffee00-0000-4000-8000-000000000001");
        let observed = at("2026-03-01T10:00:00.123456Z");
        let transition = fact_record(
            &conversation,
            &Fact::ParticipantReached {
                participant_id: ParticipantId::from("p-1"),
                purpose: Some(Purpose::Agent),
                queue_id: Some("q\"1".to_owned()),
                user_id: None,
                from: Lifecycle::Joined,
                to: Lifecycle::Active,
            },
            observed,
        );
        assert_eq!(
            transition.payload.text(),
            json!({
                "schema": SCHEMA_VERSION, "participantId": "p-1", "purpose": "agent",
                "queueId": "q\"1", "userId": null, "from": "joined", "to": "active",
                "observedAt": "2026-03-01T10:00:00.123Z",
            })
            .to_string()
        );
        let status = fact_record(
            &conversation,
            &Fact::MessageStatus {
                message_id: MessageId::from("0123456789abcdef0123456789abcdef"),
                participant_id: ParticipantId::from("p-2"),
                direction: MessageDirection::Outbound,
                sender: Sender::HumanAgent,
                messenger_type: Some("whatsapp".to_owned()),
                queue_id: None,
                status: MessageStatus::DeliverySuccess,
                implied: true,
                message_time: Some(at("1999-12-31T23:59:59Z")),
                attachments: vec![Attachment {
                    url: "https://media.example/ü.png".to_owned(),
                    id: Some("m1".to_owned()),
                    mime_type: Some("image/png".to_owned()),
                    size_bytes: Some(2048),
                    name: None,
                }],
            },
            observed,
        );
        assert_eq!(
            status.payload.text(),
            json!({
                "schema": SCHEMA_VERSION,
                "messageId": "0123456789abcdef0123456789abcdef", "participantId": "p-2",
                "direction": "outbound", "sender": "human_agent", "messengerType": "whatsapp",
                "queueId": null, "status": "delivery-success", "implied": true,
                "messageTime": "1999-12-31T23:59:59.000Z",
                "observedAt": "2026-03-01T10:00:00.123Z",
                "attachmentCount": 1,
                "attachments": [{
                    "url": "https://media.example/ü.png", "mimeType": "image/png",
                    "sizeBytes": 2048, "name": null,
                }],
            })
            .to_string()
        );
        for (subject, key) in [
            (ClockSubject::MessageId("m-1".to_owned()), "messageId"),
            (
                ClockSubject::ParticipantId("p-3".to_owned()),
                "participantId",
            ),
        ] {
            for (kind, outcome) in [
                (SlaSignalKind::Warning, None),
                (
                    SlaSignalKind::Outcome(SlaOutcome::Breached),
                    Some("breached"),
                ),
            ] {
                let signal = SlaSignal {
                    kind,
                    clock: ClockKind::FirstResponse,
                    subject: subject.clone(),
                    queue_id: Some("q1".to_owned()),
                    threshold: std::time::Duration::from_millis(60_000),
                    measured: std::time::Duration::from_millis(61_500),
                    started_at: at("2026-03-01T09:59:00Z"),
                    deadline: at("2026-03-01T10:00:00Z"),
                    fulfilled_at: outcome.map(|_| at("2026-03-01T10:00:01.5Z")),
                    calendar: None,
                    at: at("2026-03-01T10:00:00Z"),
                };
                let record = sla_record(&conversation, &signal, observed);
                assert_eq!(
                    record.payload.text(),
                    json!({
                        "schema": SCHEMA_VERSION, "clock": "first_response", key: subject.id(),
                        "queueId": "q1", "outcome": outcome, "thresholdMs": 60_000,
                        "measuredMs": 61_500, "startedAt": "2026-03-01T09:59:00.000Z",
                        "deadline": "2026-03-01T10:00:00.000Z",
                        "fulfilledAt": outcome.map(|_| "2026-03-01T10:00:01.500Z"),
                        "calendar": null, "at": "2026-03-01T10:00:00.000Z",
                        "emittedAt": "2026-03-01T10:00:00.123Z",
                    })
                    .to_string()
                );
            }
        }
    }

    /// The document written field by field is the text `#[serde(flatten)]` gave.
    #[test]
    fn the_summary_document_is_the_flattened_summary_with_schema_and_tallies() {
        #[derive(Serialize)]
        struct Flattened<'a> {
            schema: u32,
            #[serde(flatten)]
            summary: &'a ConversationSummary,
            sla: SlaTalliesJson<'a>,
        }
        let mut conversations = std::collections::HashMap::new();
        let corpus = crate::bench::corpus::generate(300, 4).unwrap();
        let mut documents = 0;
        for frame in &corpus.frames {
            let Ok(crate::parse::Classified::Snapshot { snapshot, .. }) =
                crate::parse::classify(&frame.text)
            else {
                continue;
            };
            let conversation = conversations
                .entry(snapshot.conversation_id.clone())
                .or_insert_with(|| {
                    crate::conversation::Conversation::new(snapshot.conversation_id.clone())
                });
            conversation.apply_snapshot(&snapshot).unwrap();
            let summary = ConversationSummary::of(&conversation.state, conversation.version);
            let mut tallies = SlaTallies::default();
            tallies
                .entry(ClockKind::Delivery)
                .or_default()
                .insert(crate::sla::SlaOutcome::Compliant, 2);
            tallies
                .entry(ClockKind::Read)
                .or_default()
                .insert(crate::sla::SlaOutcome::MissingReceipt, 1);
            let flattened = serde_json::to_string(&Flattened {
                schema: SCHEMA_VERSION,
                summary: &summary,
                sla: SlaTalliesJson(&tallies),
            })
            .unwrap();
            assert_eq!(summary.document_json(&tallies).unwrap().get(), flattened);
            assert_eq!(
                summary.document(&tallies),
                serde_json::from_str::<Value>(&flattened).unwrap()
            );
            documents += 1;
        }
        assert!(documents > 100, "{documents}");
    }

    proptest::proptest! {
        /// Times are written as chrono writes them, to the millisecond, at any instant
        /// (leap seconds and years past 9999 included).
        #[test]
        fn times_are_written_as_rfc3339_with_milliseconds(
            seconds in -70_000_000_000i64..300_000_000_000,
            nanos in 0u32..2_000_000_000,
        ) {
            if let Some(instant) = DateTime::<Utc>::from_timestamp(seconds, nanos) {
                let chrono = instant.to_rfc3339_opts(SecondsFormat::Millis, true);
                proptest::prop_assert_eq!(time(&instant), chrono.clone());
                let written = serde_json::to_string(&Millis(&instant)).unwrap();
                proptest::prop_assert_eq!(written, format!("\"{chrono}\""));
            }
        }
    }

    fn summary() -> ConversationSummary {
        ConversationSummary {
            conversation_id: ConversationId::from("c1"),
            convoy_version: 7,
            start_time: Some("2026-01-01T10:00:00.000Z".to_owned()),
            end_time: None,
            finished: false,
            participants: vec![SummaryParticipant {
                id: ParticipantId::from("p1"),
                purpose: Some(Purpose::Customer),
                user_id: None,
                queue_id: Some(IdText::new("q1")),
                lifecycle: Lifecycle::Active,
            }],
            messages: BTreeMap::from([(
                Cow::Borrowed("inbound"),
                BTreeMap::from([(Cow::Borrowed("delivered"), 2)]),
            )]),
        }
    }

    /// Every outcome's count is written, under its name, in the order of the names (the
    /// text a map keyed by name gives). The match makes a new outcome a compile error
    /// here until `SlaOutcome::ALL`, which the writer walks, is checked to hold it.
    #[test]
    fn every_outcome_count_is_written_in_the_order_of_the_names() {
        let index = |outcome: SlaOutcome| match outcome {
            SlaOutcome::Compliant => 0,
            SlaOutcome::Breached => 1,
            SlaOutcome::Failed => 2,
            SlaOutcome::MissingReceipt => 3,
            SlaOutcome::Abandoned => 4,
        };
        let mut seen = [false; 5];
        for outcome in SlaOutcome::ALL {
            seen[index(outcome)] = true;
        }
        assert_eq!(seen, [true; 5], "SlaOutcome::ALL holds every outcome");
        let mut by_name = SlaOutcome::ALL;
        by_name.sort_unstable_by_key(SlaOutcome::as_str);
        assert_eq!(OUTCOMES_BY_NAME, by_name);
        let counts: BTreeMap<SlaOutcome, u32> = SlaOutcome::ALL
            .iter()
            .zip(1..)
            .map(|(outcome, count)| (*outcome, count))
            .collect();
        for keep in 0..32u32 {
            let subset: BTreeMap<SlaOutcome, u32> = counts
                .iter()
                .filter(|(outcome, _)| keep & (1 << index(**outcome)) != 0)
                .map(|(outcome, count)| (*outcome, *count))
                .collect();
            let by_name: BTreeMap<&str, u32> = subset
                .iter()
                .map(|(outcome, count)| (outcome.as_str(), *count))
                .collect();
            assert_eq!(
                serde_json::to_string(&OutcomesByName(&subset)).unwrap(),
                serde_json::to_string(&by_name).unwrap()
            );
        }
    }

    /// A summary handed over between workers (the cluster's KV) reads back as it was,
    /// an unknown purpose and message status included.
    #[test]
    fn a_summary_reads_back_from_its_json() {
        let mut summary = summary();
        summary.participants[0].purpose = Some(Purpose::Unknown("robot".to_owned()));
        summary.messages.insert(
            Cow::Borrowed("outbound"),
            BTreeMap::from([(Cow::Owned("teleported".to_owned()), 1)]),
        );
        let text = serde_json::to_string(&summary).unwrap();
        assert!(text.contains(r#""purpose":"robot""#), "{text}");
        let read: ConversationSummary = serde_json::from_str(&text).unwrap();
        assert_eq!(read, summary);
        assert_eq!(serde_json::to_string(&read).unwrap(), text);
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
