//! What `convoy inspect` prints: Convoy's understanding of one frame, as JSON. Pure: the
//! binary reads the input and prints; this module decides what is shown.

use serde_json::{json, Value};

use crate::conversation::{Conversation, ConversationState};
use crate::parse::{classify, Classified, ParseError};

/// Classifies one frame and describes it, or returns the parse error (naming the path).
pub fn inspect_frame(text: &str) -> Result<Value, ParseError> {
    classify(text).map(|classified| describe(&classified))
}

/// The error report `inspect` prints for a frame it could not read.
pub fn describe_error(error: &ParseError) -> Value {
    json!({
        "error": error.to_string(),
        "path": error.path(),
    })
}

/// Describes a classified frame: its kind and, for conversation data, what Convoy derives
/// from it (participants with lifecycle, messages with status and attachments, transcript).
pub fn describe(classified: &Classified) -> Value {
    let kind = classified.kind().as_str();
    match classified {
        Classified::Heartbeat | Classified::Pong => json!({ "classification": kind }),
        Classified::SocketClosing { message } => {
            json!({ "classification": kind, "message": message })
        }
        Classified::System { topic, body } => {
            json!({ "classification": kind, "topic": topic, "body": body })
        }
        Classified::ChannelReply(reply) => json!({ "classification": kind, "reply": reply }),
        Classified::UnknownTopic { topic } => json!({ "classification": kind, "topic": topic }),
        Classified::Detail(event) => json!({
            "classification": kind,
            "conversationId": event.conversation_id,
            "detailKind": event.kind,
            "body": event.body,
        }),
        Classified::Snapshot { topic, snapshot } => {
            let mut conversation = Conversation::new(snapshot.conversation_id.clone());
            let outcome = conversation.apply_snapshot(snapshot);
            let mut report = describe_state(&conversation.state);
            if let Value::Object(map) = &mut report {
                map.insert("classification".to_owned(), json!(kind));
                map.insert("topic".to_owned(), json!(topic));
                if let Ok(outcome) = outcome {
                    map.insert("transitions".to_owned(), json!(outcome.transitions));
                }
            }
            report
        }
        Classified::Transcription(event) => json!({
            "classification": kind,
            "conversationId": event.conversation_id,
            "communicationId": event.communication_id,
            "segments": event.segments,
        }),
    }
}

/// Describes a joined conversation state (also used by the daemon's `/conversations`).
pub fn describe_state(state: &ConversationState) -> Value {
    let participants: Vec<Value> = state
        .participants
        .iter()
        .map(|(id, participant)| {
            json!({
                "id": id,
                "purpose": participant.purpose,
                "name": participant.name,
                "userId": participant.user_id,
                "queueId": participant.queue_id,
                "lifecycle": participant.lifecycle(),
                "wrapup": participant.recorded_wrapup(),
                "communications": participant.communications.iter().map(|(cid, leg)| json!({
                    "id": cid,
                    "medium": leg.medium,
                    "state": leg.state,
                    "lifecycle": leg.lifecycle(),
                    "direction": leg.direction,
                    "disconnectType": leg.disconnect_type,
                    "messageType": leg.message_type,
                    "transcriptUri": leg.transcript_uri,
                    "afterCallWork": leg.after_call_work,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let messages: Vec<Value> = state
        .messages
        .iter()
        .map(|(id, message)| {
            json!({
                "id": id,
                "participantId": message.participant_id,
                "communicationId": message.communication_id,
                "direction": message.direction(),
                "status": message.status,
                "messageTime": message.message_time,
                "segmentCount": message.segment_count,
                "attachments": message.media.values().collect::<Vec<_>>(),
                "stickers": message.stickers,
                "transcriptUri": message.transcript_uri,
            })
        })
        .collect();
    json!({
        "conversationId": state.id,
        "ended": state.is_ended(),
        "finished": state.is_finished(),
        "participants": participants,
        "messages": messages,
        "transcript": state.transcript.values().collect::<Vec<_>>(),
    })
}
