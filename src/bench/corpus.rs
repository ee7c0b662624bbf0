//! Benchmark corpora: the frames `convoy bench core` feeds the pipeline.
//!
//! [`generate`] runs the emulated org ([`crate::emulator::org::Org`]) on synthetic time:
//! customers write in on several queues, agents answer after a while and reply several
//! times, customers acknowledge (delivered, read) and sometimes write again, some
//! conversations are abandoned or transferred, agents wrap up. Every topic event becomes
//! one frame in Genesys' envelope, so conversations are interleaved and each change
//! arrives several times, on the queue topic, its `.messages` variant and the agent's user
//! topic, as a channel subscribed to queues and users receives it. Snapshots grow with
//! the conversation (2–20 KB). The same seed gives the same bytes.
//!
//! [`read_frames`] reads a capture: one frame per line, either as `convoy run --record`
//! writes it (`{"receivedAt", "frame"}`; its REST lines are skipped) or the bare frame.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::emulator::org::{Org, OrgError, OrgOptions};
use crate::emulator::{envelope, TopicEvent};

/// One frame as received: its text and, when known, when it arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct CorpusFrame {
    pub received_at: Option<DateTime<Utc>>,
    pub text: String,
}

/// The frames of one benchmark run, in arrival order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Corpus {
    pub frames: Vec<CorpusFrame>,
}

impl Corpus {
    /// The frames' text bytes (what the socket delivered, envelope included).
    pub fn bytes(&self) -> usize {
        self.frames.iter().map(|frame| frame.text.len()).sum()
    }
}

/// Why a corpus could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CorpusError {
    #[error("line {line}: {reason}")]
    Unreadable { line: usize, reason: String },
    #[error("the input holds no frame")]
    Empty,
    #[error("the emulated org refused the generator's request ({step}): {detail}")]
    Emulator { step: &'static str, detail: String },
    #[error("the emulated org went quiet after {frames} frames of the {wanted} asked for")]
    Stalled { frames: usize, wanted: usize },
}

/// A line `convoy run --record` wrote.
#[derive(Deserialize)]
struct Recorded {
    #[serde(rename = "receivedAt")]
    received_at: DateTime<Utc>,
    frame: RecordedFrame,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RecordedFrame {
    Text(String),
    Json(Value),
}

/// Reads one frame per non-blank line: a `--record` line or a bare frame. A line that is
/// not UTF-8 is an error (a capture is meant to be replayed whole); a line that is not
/// JSON is kept as it is, since measuring how Convoy rejects it is part of the work.
pub fn read_frames(input: &[u8]) -> Result<Corpus, CorpusError> {
    let input = input.strip_prefix(b"\xef\xbb\xbf").unwrap_or(input);
    let mut frames = Vec::new();
    for (index, line) in input.split(|byte| *byte == b'\n').enumerate() {
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        let text = std::str::from_utf8(line).map_err(|error| CorpusError::Unreadable {
            line: index + 1,
            reason: format!("not UTF-8 at byte {}", error.valid_up_to()),
        })?;
        let frame = match serde_json::from_str::<Recorded>(text) {
            Ok(recorded) => CorpusFrame {
                received_at: Some(recorded.received_at),
                text: match recorded.frame {
                    RecordedFrame::Text(text) => text,
                    RecordedFrame::Json(value) => value.to_string(),
                },
            },
            // A recorded REST answer is not a frame: the stream never sees it.
            Err(_) if crate::recording::parse_line(index + 1, text).is_ok() => continue,
            Err(_) => CorpusFrame {
                received_at: None,
                text: text.to_owned(),
            },
        };
        frames.push(frame);
    }
    if frames.is_empty() {
        return Err(CorpusError::Empty);
    }
    Ok(Corpus { frames })
}

/// Synthetic time advances in steps of this size.
const STEP_MS: i64 = 100;
/// A new customer writes in every this many milliseconds (on average): with answers after
/// seconds and conversations lasting tens of seconds, a few dozen are live at once.
const ARRIVAL_MS: i64 = 700;
/// Synthetic time after which a generator that still lacks frames gives up (a bug in the
/// org, not a slow run: ~1 frame per 10 ms is produced).
const MAX_SYNTHETIC_HOURS: i64 = 24 * 30;

fn epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 4, 9, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// A receipt or a customer message due at a synthetic instant.
#[derive(Debug, Clone)]
enum Due {
    Receipt {
        integration: String,
        sender: String,
        message_id: String,
        status: &'static str,
    },
    CustomerMessage {
        integration: String,
        sender: String,
    },
}

/// `frames` realistic frames from the emulated org, the same for the same `seed`.
pub fn generate(frames: usize, seed: u64) -> Result<Corpus, CorpusError> {
    let start = epoch();
    let queues = 4;
    let mut org = Org::new(
        OrgOptions {
            seed,
            queues,
            agents_per_queue: 40,
            ..OrgOptions::default()
        },
        start,
    );
    let integrations = org.integration_ids();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x00c0_ffee_be7c);
    let mut out: Vec<CorpusFrame> = Vec::with_capacity(frames);
    // Keyed by the instant (ms since start) they are due; ordered for determinism.
    let mut due: BTreeMap<i64, VecDeque<Due>> = BTreeMap::new();
    let mut integration_of: HashMap<String, (String, String)> = HashMap::new();
    let mut receipted: HashSet<String> = HashSet::new();
    let mut customers = 0u64;
    let mut next_arrival = 0i64;
    let mut correlation = 0u64;
    let mut now_ms = 0i64;
    while out.len() < frames {
        if now_ms > MAX_SYNTHETIC_HOURS * 3_600_000 {
            return Err(CorpusError::Stalled {
                frames: out.len(),
                wanted: frames,
            });
        }
        let now = start + Duration::milliseconds(now_ms);
        let mut events = Vec::new();
        while next_arrival <= now_ms {
            customers += 1;
            let integration = integrations[rng.gen_range(0..integrations.len())].clone();
            let sender = format!("customer-{customers}@example.com");
            let outcome = match rng.gen_range(0..20) {
                0 => "abandon",
                1 | 2 => "transfer",
                _ => "answered",
            };
            let metadata = json!({
                "convoy.sim.answerAfterMs": rng.gen_range(500..8_000).to_string(),
                "convoy.sim.replyAfterMs": rng.gen_range(800..5_000).to_string(),
                "convoy.sim.agentReplies": rng.gen_range(1..7).to_string(),
                "convoy.sim.wrapupAfterMs": rng.gen_range(1_000..6_000).to_string(),
                "convoy.sim.outcome": outcome,
            });
            let applied = org
                .open_inbound_message(
                    &integration,
                    &inbound_body(&sender, customers, now, Some(metadata)),
                    true,
                    now,
                )
                .map_err(|error| org_error("first customer message", &error))?;
            if let Some(id) = applied.body["conversationId"].as_str() {
                integration_of.insert(id.to_owned(), (integration, sender));
            }
            events.extend(applied.events);
            next_arrival += rng.gen_range(ARRIVAL_MS / 4..ARRIVAL_MS * 7 / 4);
        }
        if let Some(list) = due.remove(&now_ms) {
            for item in list {
                events.extend(play(&mut org, item, &mut rng, customers, now)?);
            }
        }
        events.extend(org.tick(now));
        for event in &events {
            schedule_receipts(
                event,
                now_ms,
                &integration_of,
                &mut receipted,
                &mut due,
                &mut rng,
            );
            correlation += 1;
            let frame = envelope(event, &format!("{seed:x}-{correlation:08x}"));
            out.push(CorpusFrame {
                received_at: Some(now),
                text: frame.to_string(),
            });
        }
        now_ms += STEP_MS;
    }
    out.truncate(frames);
    Ok(Corpus { frames: out })
}

fn org_error(step: &'static str, error: &OrgError) -> CorpusError {
    CorpusError::Emulator {
        step,
        detail: error.to_string(),
    }
}

fn inbound_body(sender: &str, serial: u64, now: DateTime<Utc>, metadata: Option<Value>) -> Value {
    let mut body = json!({
        "channel": {
            "messageId": format!("ext-{serial}-{}", now.timestamp_millis()),
            "from": { "id": sender, "idType": "Email", "nickname": "Dana Customer" },
            "time": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        },
        "text": "Hello, my order A-1029 has not arrived yet; could you check where it is?",
    });
    if let (Some(metadata), Value::Object(map)) = (metadata, &mut body) {
        map.insert("metadata".to_owned(), metadata);
    }
    body
}

/// Plays a due receipt or customer message. A conversation that ended in between refuses
/// them as Genesys would; that is no error of the generator.
fn play(
    org: &mut Org,
    item: Due,
    rng: &mut StdRng,
    serial: u64,
    now: DateTime<Utc>,
) -> Result<Vec<TopicEvent>, CorpusError> {
    let result = match item {
        Due::Receipt {
            integration,
            sender,
            message_id,
            status,
        } => {
            let receipt = json!({
                "id": message_id,
                "channel": {
                    "to": { "id": sender },
                    "time": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                },
                "status": status,
            });
            org.open_inbound_receipt(&integration, &receipt, now)
        }
        Due::CustomerMessage {
            integration,
            sender,
        } => org.open_inbound_message(
            &integration,
            &inbound_body(&sender, serial + rng.gen_range(0..1_000_000), now, None),
            true,
            now,
        ),
    };
    match result {
        Ok(applied) => Ok(applied.events),
        Err(OrgError::NotFound { .. }) | Err(OrgError::Conflict(_)) => Ok(Vec::new()),
        Err(error) => Err(org_error("customer receipt or reply", &error)),
    }
}

/// Schedules Delivered and (mostly) Read receipts for agent messages first seen `sent` in
/// this event, and sometimes a customer's answer after the read.
fn schedule_receipts(
    event: &TopicEvent,
    now_ms: i64,
    integration_of: &HashMap<String, (String, String)>,
    receipted: &mut HashSet<String>,
    due: &mut BTreeMap<i64, VecDeque<Due>>,
    rng: &mut StdRng,
) {
    let Some((integration, sender)) = event.body["id"]
        .as_str()
        .and_then(|id| integration_of.get(id))
    else {
        return;
    };
    let Some(participants) = event.body["participants"].as_array() else {
        return;
    };
    let at = |delay: i64| now_ms + (delay / STEP_MS + 1) * STEP_MS;
    for participant in participants.iter().filter(|p| p["purpose"] == "agent") {
        let communications = participant["messages"].as_array().into_iter().flatten();
        for message in communications.flat_map(|c| c["messages"].as_array().into_iter().flatten()) {
            let (Some(id), Some("sent")) = (
                message["messageId"].as_str(),
                message["messageStatus"].as_str(),
            ) else {
                continue;
            };
            if !receipted.insert(id.to_owned()) {
                continue;
            }
            let receipt = |status| Due::Receipt {
                integration: integration.clone(),
                sender: sender.clone(),
                message_id: id.to_owned(),
                status,
            };
            let delivered = at(rng.gen_range(200..1_500));
            due.entry(delivered)
                .or_default()
                .push_back(receipt("Delivered"));
            if rng.gen_range(0..10) < 8 {
                let read = delivered + at(rng.gen_range(500..6_000)) - now_ms;
                due.entry(read).or_default().push_back(receipt("Read"));
                if rng.gen_range(0..3) == 0 {
                    let answer = read + at(rng.gen_range(1_000..4_000)) - now_ms;
                    due.entry(answer)
                        .or_default()
                        .push_back(Due::CustomerMessage {
                            integration: integration.clone(),
                            sender: sender.clone(),
                        });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::parse::{classify, Classified};

    #[test]
    fn the_same_seed_generates_the_same_frames_and_another_seed_others() {
        let a = generate(300, 7).unwrap();
        assert_eq!(a.frames.len(), 300);
        assert_eq!(a, generate(300, 7).unwrap());
        assert_ne!(a, generate(300, 8).unwrap());
    }

    #[test]
    fn generated_frames_are_interleaved_snapshots_sent_on_several_topics() {
        let corpus = generate(2_000, 1).unwrap();
        let mut conversations = HashSet::new();
        let mut topics_per_change: HashMap<(String, String), usize> = HashMap::new();
        let mut switches = 0;
        let mut previous = None;
        for frame in &corpus.frames {
            let Classified::Snapshot { snapshot, .. } = classify(&frame.text).unwrap() else {
                continue;
            };
            let id = snapshot.conversation_id.to_string();
            if previous.as_ref().is_some_and(|p| p != &id) {
                switches += 1;
            }
            previous = Some(id.clone());
            conversations.insert(id.clone());
            // The envelope's correlation id differs per frame; the body is the change.
            let envelope: Value = serde_json::from_str(&frame.text).unwrap();
            *topics_per_change
                .entry((id, envelope["eventBody"].to_string()))
                .or_default() += 1;
        }
        assert!(conversations.len() >= 20, "{}", conversations.len());
        assert!(switches >= 200, "conversations interleave: {switches}");
        assert!(
            topics_per_change.values().any(|count| *count >= 2),
            "the same body arrives on more than one topic"
        );
    }

    #[test]
    fn generated_frames_are_between_two_and_twenty_kilobytes_with_receipts_and_follow_ups() {
        let corpus = generate(3_000, 3).unwrap();
        let sizes: Vec<usize> = corpus.frames.iter().map(|f| f.text.len()).collect();
        let big = sizes.iter().filter(|size| **size >= 2_000).count();
        assert!(big * 10 >= sizes.len() * 9, "most frames ≥ 2 KB");
        assert!(
            sizes.iter().all(|size| *size <= 20_000),
            "{:?}",
            sizes.iter().max()
        );
        let text: String = corpus.frames.iter().map(|f| f.text.as_str()).collect();
        assert!(text.contains("\"read\""), "read receipts played");
        assert!(
            text.contains("delivery-success"),
            "delivery receipts played"
        );
        assert_eq!(corpus.bytes(), sizes.iter().sum::<usize>());
    }

    #[test]
    fn a_capture_reads_recorded_lines_and_bare_frames_and_skips_blank_lines() {
        let bare =
            r#"{"topicName":"channel.metadata","eventBody":{"message":"WebSocket Heartbeat"}}"#;
        let recorded = json!({"receivedAt": "2026-11-24T10:00:00Z", "frame": bare}).to_string();
        let embedded = json!({"receivedAt": "2026-11-24T10:00:01Z", "frame": {"a": 1}}).to_string();
        let rest = crate::recording::rest_line(
            Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 2).unwrap(),
            &crate::recording::RestExchange::new("GET", "/api/v2/conversations/c", 200, [], b"{}"),
        );
        let input = format!("\u{feff}{recorded}\n\n{bare}\r\n{embedded}\n{rest}\nnot json\n");
        let corpus = read_frames(input.as_bytes()).unwrap();
        assert_eq!(corpus.frames.len(), 4);
        assert_eq!(corpus.frames[0].text, bare);
        assert_eq!(
            corpus.frames[0].received_at,
            Some(Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap())
        );
        assert_eq!(corpus.frames[1].text, bare);
        assert_eq!(corpus.frames[1].received_at, None);
        assert_eq!(corpus.frames[2].text, r#"{"a":1}"#);
        assert_eq!(corpus.frames[3].text, "not json");
    }

    #[test]
    fn a_capture_with_a_line_that_is_not_utf8_or_without_frames_is_refused() {
        assert_eq!(
            read_frames(b"{}\n{\"x\":\"\xff\"}\n"),
            Err(CorpusError::Unreadable {
                line: 2,
                reason: "not UTF-8 at byte 6".to_owned()
            })
        );
        assert_eq!(read_frames(b"\n  \n"), Err(CorpusError::Empty));
    }
}
