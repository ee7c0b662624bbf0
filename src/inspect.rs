//! What `convoy inspect` prints: how an input is cut into frames ([`split_frames`]) and
//! Convoy's understanding of each frame, as JSON ([`inspect_frame_report`]). Pure: the
//! binary reads the input and prints; this module decides what is shown. Every key it
//! prints is camelCase, like the Genesys payloads it describes.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::conversation::{Conversation, ConversationState};
use crate::parse::{classify, classify_value, Classified, ParseError};

/// The byte-order mark some editors put at the start of a UTF-8 file.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One frame cut from an input: the line it starts on (1-based) and its text, or why the
/// text could not be taken (not UTF-8, an incomplete document).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameText<'a> {
    pub line: usize,
    pub text: Result<&'a str, String>,
}

/// Cuts an input into frames. Two shapes are understood:
/// - JSON lines (what `convoy run --record` writes): every non-blank line is a frame, and
///   a bad line (not UTF-8, not JSON) is one malformed frame among good ones;
/// - whole documents (a payload pasted pretty-printed, or several one after another):
///   chosen when the first non-blank line is the start of a JSON value that does not end
///   on that line. A broken document is one error, not one per line.
///
/// A leading UTF-8 byte-order mark is skipped.
pub fn split_frames(input: &[u8]) -> Vec<FrameText<'_>> {
    let input = input.strip_prefix(BOM).unwrap_or(input);
    let first = input
        .split(|byte| *byte == b'\n')
        .find(|line| !line.trim_ascii().is_empty());
    let is_document = first
        .and_then(|line| std::str::from_utf8(line).ok())
        .is_some_and(|line| {
            serde_json::from_str::<serde::de::IgnoredAny>(line).is_err_and(|error| error.is_eof())
        });
    if is_document {
        split_documents(input)
    } else {
        split_lines(input)
    }
}

fn split_lines(input: &[u8]) -> Vec<FrameText<'_>> {
    input
        .split(|byte| *byte == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.trim_ascii().is_empty())
        .map(|(index, line)| FrameText {
            line: index + 1,
            text: std::str::from_utf8(line)
                .map(|text| text.trim_end_matches('\r'))
                .map_err(|error| {
                    format!(
                        "the line is not UTF-8 text (invalid byte at column {})",
                        error.valid_up_to() + 1
                    )
                }),
        })
        .collect()
}

fn split_documents(input: &[u8]) -> Vec<FrameText<'_>> {
    let text = match std::str::from_utf8(input) {
        Ok(text) => text,
        Err(error) => {
            let line = line_at(input, error.valid_up_to());
            return vec![FrameText {
                line,
                text: Err(format!("line {line} is not UTF-8 text")),
            }];
        }
    };
    let mut frames = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<serde::de::IgnoredAny>();
    let mut start = 0;
    while let Some(next) = stream.next() {
        let end = stream.byte_offset();
        let begin = start + text[start..end].len() - text[start..end].trim_start().len();
        let line = line_at(text.as_bytes(), begin);
        match next {
            Ok(_) => frames.push(FrameText {
                line,
                text: Ok(&text[begin..end]),
            }),
            Err(error) => {
                let reason = if error.is_eof() {
                    format!(
                        "unexpected end of input: the frame starting on line {line} is incomplete"
                    )
                } else {
                    format!("not JSON: {error}")
                };
                frames.push(FrameText {
                    line,
                    text: Err(reason),
                });
                // The rest cannot be cut into frames reliably: stop at the first error.
                break;
            }
        }
        start = end;
    }
    frames
}

/// The 1-based line of byte `offset`.
fn line_at(input: &[u8], offset: usize) -> usize {
    input[..offset.min(input.len())]
        .iter()
        .filter(|byte| **byte == b'\n')
        .count()
        + 1
}

/// A line `convoy run --record` wrote: the frame as received, and when.
#[derive(Deserialize)]
struct Recorded {
    #[serde(rename = "receivedAt")]
    received_at: Value,
    frame: RecordedFrame,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RecordedFrame {
    Text(String),
    Json(Value),
}

/// A REST answer `convoy run --record` wrote beside the frames (for `convoy replay`).
#[derive(Deserialize)]
struct RecordedRest {
    #[serde(rename = "receivedAt")]
    received_at: Value,
    rest: crate::recording::RestExchange,
}

/// The report `inspect` prints for the `index`-th frame (1-based) starting on `line`,
/// and whether the frame was malformed.
pub fn inspect_frame_report(index: usize, line: usize, frame: &FrameText<'_>) -> (Value, bool) {
    let result = match &frame.text {
        Err(reason) => Err(json!({ "error": reason })),
        Ok(text) => match serde_json::from_str::<Recorded>(text) {
            Ok(recorded) => {
                let classified = match recorded.frame {
                    RecordedFrame::Text(text) => classify(&text),
                    RecordedFrame::Json(value) => classify_value(value),
                };
                with_received_at(describe_result(classified), recorded.received_at)
            }
            // Not a frame: a recorded REST answer is named, not judged malformed.
            Err(_) => match serde_json::from_str::<RecordedRest>(text) {
                Ok(recorded) => Ok(json!({
                    "classification": "rest_answer",
                    "method": recorded.rest.method,
                    "path": recorded.rest.path,
                    "status": recorded.rest.status,
                    "receivedAt": recorded.received_at,
                })),
                Err(_) => describe_result(classify(text)),
            },
        },
    };
    let (mut report, failed) = match result {
        Ok(report) => (report, false),
        Err(report) => (report, true),
    };
    if let Value::Object(map) = &mut report {
        map.insert("index".to_owned(), json!(index));
        map.insert("line".to_owned(), json!(line));
    }
    (report, failed)
}

fn describe_result(result: Result<Classified, ParseError>) -> Result<Value, Value> {
    match result {
        Ok(classified) => Ok(describe(&classified)),
        Err(error) => Err(describe_error(&error)),
    }
}

fn with_received_at(result: Result<Value, Value>, received_at: Value) -> Result<Value, Value> {
    let add = |mut report: Value| {
        if let Value::Object(map) = &mut report {
            map.insert("receivedAt".to_owned(), received_at.clone());
        }
        report
    };
    result.map(add).map_err(add)
}

/// Renames every object key from snake_case to camelCase (`size_bytes` → `sizeBytes`),
/// for values serialized from Rust types; wire data (already camelCase) is left alone by
/// the callers.
pub fn camel_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| (camel_case(&key), camel_keys(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(camel_keys).collect()),
        other => other,
    }
}

fn camel_case(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' && !out.is_empty() {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

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
                    map.insert(
                        "transitions".to_owned(),
                        camel_keys(json!(outcome.transitions)),
                    );
                }
            }
            report
        }
        Classified::Transcription(event) => json!({
            "classification": kind,
            "conversationId": event.conversation_id,
            "communicationId": event.communication_id,
            "segments": camel_keys(json!(event.segments)),
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
                "purpose": participant.purpose(),
                "name": participant.name(),
                "userId": participant.user_id().map(|id| id.to_string()),
                "queueId": participant.queue_id().map(|id| id.to_string()),
                "lifecycle": participant.lifecycle(),
                "wrapup": camel_keys(json!(participant.recorded_wrapup())),
                "communications": participant.communications.iter().map(|(cid, leg)| json!({
                    "id": cid,
                    "medium": leg.medium,
                    "state": leg.state(),
                    "lifecycle": leg.lifecycle(),
                    "direction": leg.direction(),
                    "disconnectType": leg.disconnect_type(),
                    "messageType": leg.message_type(),
                    "transcriptUri": leg.transcript_uri(),
                    "afterCallWork": leg.after_call_work(),
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
                "status": message.status(),
                "messageTime": message.message_time,
                "segmentCount": message.segment_count,
                "attachments": camel_keys(json!(message.media.values().collect::<Vec<_>>())),
                "stickers": camel_keys(json!(message.stickers())),
                "transcriptUri": message.transcript_uri(),
            })
        })
        .collect();
    json!({
        "conversationId": state.id,
        "ended": state.is_ended(),
        "finished": state.is_finished(),
        "participants": participants,
        "messages": messages,
        "transcript": camel_keys(json!(state.transcript.values().collect::<Vec<_>>())),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const HEARTBEAT: &str =
        r#"{"topicName":"channel.metadata","eventBody":{"message":"WebSocket Heartbeat"}}"#;
    const PONG: &str = r#"{"topicName":"channel.metadata","eventBody":{"message":"pong"}}"#;

    fn lines_of(frames: &[FrameText<'_>]) -> Vec<usize> {
        frames.iter().map(|frame| frame.line).collect()
    }

    #[test]
    fn json_lines_are_one_frame_per_non_blank_line() {
        let input = format!("{HEARTBEAT}\n\n{PONG}\r\n");
        let frames = split_frames(input.as_bytes());
        assert_eq!(lines_of(&frames), vec![1, 3]);
        assert_eq!(frames[1].text, Ok(PONG));
    }

    #[test]
    fn a_line_that_is_not_utf8_is_one_malformed_frame_among_good_ones() {
        let mut input = format!("{HEARTBEAT}\n").into_bytes();
        input.extend_from_slice(b"{\"topicName\":\"x\xff\"}\n");
        input.extend_from_slice(PONG.as_bytes());
        let frames = split_frames(&input);
        assert_eq!(lines_of(&frames), vec![1, 2, 3]);
        let error = frames[1].text.clone().unwrap_err();
        assert!(error.contains("not UTF-8"), "{error}");
        let (report, failed) = inspect_frame_report(2, 2, &frames[1]);
        assert!(failed);
        assert_eq!(report["line"], 2);
        assert!(frames[2].text.is_ok());
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        let input = format!("\u{feff}{HEARTBEAT}\n{PONG}\n");
        let frames = split_frames(input.as_bytes());
        let reports: Vec<(Value, bool)> = frames
            .iter()
            .enumerate()
            .map(|(index, frame)| inspect_frame_report(index + 1, frame.line, frame))
            .collect();
        assert!(reports.iter().all(|(_, failed)| !failed), "{reports:?}");
        assert_eq!(reports[0].0["classification"], "heartbeat");
    }

    #[test]
    fn a_pretty_printed_document_is_one_frame_and_a_truncated_one_is_one_error() {
        let pretty =
            serde_json::to_string_pretty(&serde_json::from_str::<Value>(PONG).unwrap()).unwrap();
        let two = format!("{pretty}\n{pretty}\n");
        let frames = split_frames(two.as_bytes());
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].line, 1);
        assert_eq!(frames[1].line, pretty.lines().count() + 1);
        assert!(frames.iter().all(|frame| frame.text.is_ok()));

        let truncated = &pretty[..pretty.len() - 3];
        let frames = split_frames(truncated.as_bytes());
        assert_eq!(frames.len(), 1);
        let error = frames[0].text.clone().unwrap_err();
        assert!(error.starts_with("unexpected end of input"), "{error}");
    }

    #[test]
    fn a_recorded_rest_answer_is_named_not_judged_malformed() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-24T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let exchange =
            crate::recording::RestExchange::new("GET", "/api/v2/conversations/c1", 200, [], b"{}");
        let input = format!(
            "{HEARTBEAT}\n{}\n",
            crate::recording::rest_line(at, &exchange)
        );
        let frames = split_frames(input.as_bytes());
        let (report, failed) = inspect_frame_report(2, frames[1].line, &frames[1]);
        assert!(!failed, "{report}");
        assert_eq!(report["classification"], "rest_answer");
        assert_eq!(report["path"], "/api/v2/conversations/c1");
        assert_eq!(report["status"], 200);
        assert_eq!(report["receivedAt"], "2026-11-24T10:00:00.000Z");
    }

    #[test]
    fn reports_carry_index_and_line_and_recorded_lines_their_receive_time() {
        let recorded = json!({"receivedAt": "2026-11-24T10:00:00Z", "frame": PONG}).to_string();
        let input = format!("{HEARTBEAT}\n{recorded}\n");
        let frames = split_frames(input.as_bytes());
        let (report, failed) = inspect_frame_report(2, frames[1].line, &frames[1]);
        assert!(!failed);
        assert_eq!(report["index"], 2);
        assert_eq!(report["line"], 2);
        assert_eq!(report["classification"], "pong");
        assert_eq!(report["receivedAt"], "2026-11-24T10:00:00Z");
    }

    #[test]
    fn keys_serialized_from_rust_types_become_camel_case() {
        let value = json!({"mime_type": "image/png", "size_bytes": 3, "url": "u",
            "nested": [{"utterance_id": "x"}]});
        assert_eq!(
            camel_keys(value),
            json!({"mimeType": "image/png", "sizeBytes": 3, "url": "u",
                "nested": [{"utteranceId": "x"}]})
        );
    }
}
