//! Bad input through the whole daemon (issue 11, reliability suite "Bad input"): real
//! Genesys frames (`tests/fixtures/genesys/ws_*.json`) mutated — truncated, a field of the
//! wrong type, a huge array, deep nesting, invalid UTF-8 (in a binary frame and in a text
//! frame), a giant string — are pushed through the emulator's socket
//! (`POST /emulator/v1/sockets/raw`) while the simulator runs real conversations over the
//! same socket. The daemon must skip each bad frame without a panic or a reconnect, count
//! it for this daemon with the JSON path its parse error names, keep its state bounded
//! (no conversation invented, the rejection log capped), stay ready, and follow every
//! good conversation to the emulator's truth.
//!
//! The mutants come from a proptest strategy run with a fixed seed ([`SEED`]), so a
//! failure replays; the parser itself is the oracle for which mutants are bad (a mutant
//! the parser still accepts — an unknown field of another type — is not sent: it would be
//! a real event about a conversation the emulator never ran).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use convoy::stream::rejections::{RejectionKind, RECENT_REJECTIONS};
use convoy_actors::emulator::EmulatorOptions;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, RngSeed, TestRng, TestRunner};
use serde_json::Value;

use crate::daemon::Run;
use crate::support::{client, eventually, push_raw_frame, RawKind};

/// The mutants' seed (ChaCha). Printed by the test so a failure names it.
const SEED: [u8; 32] = *b"convoy-issue-11-bad-input-seed!!";
/// The seed of the parser-only property below.
const PARSER_SEED: u64 = 11;
/// Mutants drawn; those the parser still accepts are not sent.
const MUTANTS: usize = 48;
/// Real conversations run while the mutants are pushed.
const CONVERSATIONS: usize = 16;

/// Every real frame the fixtures hold, compact, as Genesys sends them.
fn real_frames() -> Vec<Value> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/genesys");
    let mut frames: Vec<(String, Value)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("ws_") && name.ends_with(".json"))
        })
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            (
                path.display().to_string(),
                serde_json::from_str(&text).unwrap(),
            )
        })
        .collect();
    frames.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(frames.len() >= 10, "the ws_* fixtures are missing");
    frames.into_iter().map(|(_, frame)| frame).collect()
}

/// One way to break a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mutation {
    /// Cut at a byte offset (the end of a socket read that never came).
    Truncate,
    /// One value replaced by a value of another JSON type.
    WrongType,
    /// One value replaced by an array of `size` numbers.
    HugeArray,
    /// One value replaced by `size` nested arrays (serde_json's depth limit is 128).
    DeepNesting,
    /// A byte that can never be UTF-8 inserted; sent as a binary frame.
    InvalidUtf8Binary,
    /// A byte that can never be UTF-8 inserted; sent as a text message.
    InvalidUtf8Text,
    /// One value replaced by a string of `size` bytes (`size * 8` for a huge one).
    GiantString,
}

const MUTATIONS: [Mutation; 7] = [
    Mutation::Truncate,
    Mutation::WrongType,
    Mutation::HugeArray,
    Mutation::DeepNesting,
    Mutation::InvalidUtf8Binary,
    Mutation::InvalidUtf8Text,
    Mutation::GiantString,
];

/// A mutated frame and how it goes on the wire.
#[derive(Debug, Clone)]
pub struct Mutant {
    pub mutation: Mutation,
    pub base: usize,
    pub bytes: Vec<u8>,
    pub kind: RawKind,
}

/// The JSON paths of every value in `value` (object keys and array indexes), root first.
fn value_paths(value: &Value) -> Vec<Vec<PathStep>> {
    let mut paths = vec![Vec::new()];
    let mut index = 0;
    while index < paths.len() {
        let path = paths[index].clone();
        match at(value, &path) {
            Some(Value::Object(map)) => {
                for key in map.keys() {
                    let mut child = path.clone();
                    child.push(PathStep::Key(key.clone()));
                    paths.push(child);
                }
            }
            Some(Value::Array(items)) => {
                for item in 0..items.len() {
                    let mut child = path.clone();
                    child.push(PathStep::Index(item));
                    paths.push(child);
                }
            }
            _ => {}
        }
        index += 1;
    }
    paths
}

#[derive(Debug, Clone)]
enum PathStep {
    Key(String),
    Index(usize),
}

fn at<'a>(value: &'a Value, path: &[PathStep]) -> Option<&'a Value> {
    path.iter().try_fold(value, |value, step| match step {
        PathStep::Key(key) => value.get(key),
        PathStep::Index(index) => value.get(index),
    })
}

fn at_mut<'a>(value: &'a mut Value, path: &[PathStep]) -> Option<&'a mut Value> {
    path.iter().try_fold(value, |value, step| match step {
        PathStep::Key(key) => value.get_mut(key),
        PathStep::Index(index) => value.get_mut(index),
    })
}

/// A value of another JSON type than `value`.
fn other_type(value: &Value) -> Value {
    match value {
        Value::String(_) => Value::from(42),
        Value::Number(_) => Value::from("forty-two"),
        Value::Bool(_) => Value::from("true"),
        Value::Null => serde_json::json!({"unexpected": true}),
        Value::Array(_) => Value::from("not an array"),
        Value::Object(_) => serde_json::json!([1, 2, 3]),
    }
}

/// Applies `mutation` to `frame`; `pick` chooses the value or offset, `size` scales it.
pub fn mutate(
    frames: &[Value],
    base: usize,
    mutation: Mutation,
    pick: prop::sample::Index,
    size: usize,
) -> Mutant {
    let frame = &frames[base % frames.len()];
    let text = serde_json::to_string(frame).unwrap();
    let replace = |make: &dyn Fn(&Value) -> Value| {
        let mut frame = frame.clone();
        let paths = value_paths(&frame);
        let path = &paths[pick.index(paths.len())];
        let slot = at_mut(&mut frame, path).unwrap();
        *slot = make(slot);
        serde_json::to_vec(&frame).unwrap()
    };
    let invalid_utf8 = || {
        let mut bytes = text.clone().into_bytes();
        let offset = pick.index(bytes.len() + 1);
        // 0xFF never occurs in UTF-8; 0xC3 opens a two-byte sequence the next byte (ASCII
        // in these frames, or the end) cannot continue.
        let bad: &[u8] = if size.is_multiple_of(2) {
            b"\xff"
        } else {
            b"\xc3"
        };
        bytes.splice(offset..offset, bad.iter().copied());
        bytes
    };
    let (bytes, kind) = match mutation {
        Mutation::Truncate => {
            let cut = 1 + pick.index(text.len() - 1);
            (text.as_bytes()[..cut].to_vec(), RawKind::Text)
        }
        Mutation::WrongType => (replace(&other_type), RawKind::Text),
        Mutation::HugeArray => {
            let len = 1_000 + size * 20;
            (
                replace(&|_| Value::Array(vec![Value::from(0); len])),
                RawKind::Text,
            )
        }
        Mutation::DeepNesting => {
            let depth = 129 + size;
            let nested: String = "[".repeat(depth) + &"]".repeat(depth);
            let mut bytes = replace(&|_| Value::from("__nest__"));
            let marker = b"\"__nest__\"";
            let offset = bytes
                .windows(marker.len())
                .position(|window| window == marker)
                .unwrap();
            bytes.splice(offset..offset + marker.len(), nested.bytes());
            (bytes, RawKind::Text)
        }
        Mutation::InvalidUtf8Binary => (invalid_utf8(), RawKind::Binary),
        Mutation::InvalidUtf8Text => (invalid_utf8(), RawKind::UncheckedText),
        Mutation::GiantString => {
            let len = 16 * 1024 + size * 64;
            (replace(&|_| Value::from("g".repeat(len))), RawKind::Text)
        }
    };
    // Only UTF-8 goes out as a plain text frame.
    let kind = match kind {
        RawKind::Text if std::str::from_utf8(&bytes).is_err() => RawKind::UncheckedText,
        kind => kind,
    };
    Mutant {
        mutation,
        base,
        bytes,
        kind,
    }
}

fn mutant_strategy(frames: Vec<Value>) -> impl Strategy<Value = Mutant> {
    let count = frames.len();
    (
        0..count,
        prop::sample::select(MUTATIONS.to_vec()),
        any::<prop::sample::Index>(),
        0usize..8_000,
    )
        .prop_map(move |(base, mutation, pick, size)| mutate(&frames, base, mutation, pick, size))
}

/// The mutants for [`SEED`], in order.
fn seeded_mutants() -> Vec<Mutant> {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &SEED),
    );
    let strategy = mutant_strategy(real_frames());
    (0..MUTANTS)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect()
}

proptest! {
    #![proptest_config(Config {
        cases: 64,
        rng_seed: RngSeed::Fixed(PARSER_SEED),
        ..Config::default()
    })]

    /// The parser on its own (cheap, shrinks): every mutant is answered — accepted or an
    /// error naming where — and never panics; an invalid UTF-8 mutant is always refused.
    #[test]
    fn every_mutant_of_a_real_frame_is_classified_or_refused_with_a_path(mutant in mutant_strategy(real_frames())) {
        match convoy::parse::classify_bytes(&mutant.bytes) {
            Ok(_) => prop_assert!(
                !matches!(mutant.mutation, Mutation::InvalidUtf8Binary | Mutation::InvalidUtf8Text),
                "{:?} of fixture {} was accepted",
                mutant.mutation,
                mutant.base
            ),
            Err(error) => {
                let path = error.path().unwrap_or("$");
                prop_assert!(!path.contains('\n'), "{path}");
                prop_assert!(error.to_string().len() < mutant.bytes.len() + 4_096);
            }
        }
    }
}

#[actix_rt::test]
async fn mutated_real_frames_are_skipped_with_their_path_while_good_frames_reach_the_truth() {
    println!("bad input seed: {:?}", String::from_utf8_lossy(&SEED));
    let run = Run::start(EmulatorOptions::default(), "").await;
    let before = run.stream_status().await;
    assert_eq!(before.rejections.total(), 0);
    // The default org needs more than one channel; the bad frames go down the first.
    let channel = before.links[0].channel_id.clone().unwrap();

    // The parser decides which mutants are bad; only those are sent.
    let bad: Vec<(Mutant, String)> = seeded_mutants()
        .into_iter()
        .filter_map(|mutant| {
            let error = convoy::parse::classify_bytes(&mutant.bytes).err()?;
            Some((mutant, error.path().unwrap_or("$").to_owned()))
        })
        .collect();
    let kinds: std::collections::HashSet<_> = bad.iter().map(|(m, _)| m.mutation).collect();
    assert_eq!(
        kinds.len(),
        MUTATIONS.len(),
        "every mutation is exercised: {kinds:?}"
    );
    println!("{} of {MUTANTS} mutants are bad frames", bad.len());

    // Good traffic and bad frames on the same socket, interleaved.
    let simulate = run.simulate_at(CONVERSATIONS, 1111, 8.0);
    let inject = async {
        let mut sent = Vec::new();
        for (mutant, path) in &bad {
            let sockets = push_raw_frame(
                &run.http,
                &run.emulator,
                Some(&channel),
                mutant.kind,
                &mutant.bytes,
            )
            .await;
            assert_eq!(sockets, 1, "one socket on the channel");
            sent.push(path.clone());
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
        sent
    };
    let (report, sent_paths) = futures_util::future::join(simulate, inject).await;
    assert_eq!(report.conversations_failed, 0, "{report}");

    // Each bad frame is counted, with its path, for this daemon.
    let counted = eventually(Duration::from_secs(60), || async {
        let status = run.stream_status().await;
        status.rejections.malformed >= sent_paths.len() as u64
    })
    .await;
    let status = run.stream_status().await;
    assert!(counted, "{:?}", status.rejections);
    assert_eq!(status.rejections.malformed, sent_paths.len() as u64);
    assert_eq!(status.rejections.refused, 0, "nothing was over the caps");
    // All of them on the link of that channel.
    let link = status
        .links
        .iter()
        .find(|link| link.channel_id.as_deref() == Some(channel.as_str()))
        .unwrap();
    assert_eq!(link.rejections, status.rejections);
    let recent: Vec<&str> = status
        .rejections
        .recent
        .iter()
        .map(|rejection| {
            assert_eq!(rejection.kind, RejectionKind::Malformed);
            rejection.path.as_str()
        })
        .collect();
    assert_eq!(recent.len(), sent_paths.len().min(RECENT_REJECTIONS));
    let expected: Vec<&str> = sent_paths[sent_paths.len() - recent.len()..]
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(
        recent, expected,
        "the most recent, in order, with their paths"
    );
    assert!(
        status
            .rejections
            .recent
            .iter()
            .all(|r| r.detail.len() < 1_024),
        "a rejection's text is bounded"
    );
    // No bad frame cost the connection.
    assert_eq!(status.totals.reconnects, 0, "{:?}", status.totals);

    // The good frames around them were processed.
    run.assert_converges().await;
    // Bounded: nothing invented from a bad frame, nothing over the cap.
    let truth = run.truth().await;
    assert_eq!(run.daemon.views.len(), truth.len());
    let stats = run.router_stats().await;
    assert!(stats.live <= run.config.conversations.max_live);
    let ready = eventually(Duration::from_secs(60), || async {
        run.daemon.board.readiness_now().ready
    })
    .await;
    assert!(ready, "{:?}", run.daemon.board.readiness_now());
    run.stop().await;
}

#[actix_rt::test]
async fn the_raw_frame_route_refuses_non_utf8_text_and_unknown_kinds() {
    let emulator = convoy_actors::emulator::Emulator::start(EmulatorOptions::default())
        .await
        .unwrap();
    let http = client();
    let status = |kind: &'static str, body: &'static [u8]| {
        let request = http
            .post(format!(
                "{}/emulator/v1/sockets/raw?kind={kind}",
                emulator.base_url()
            ))
            .insert_header(("Content-Type", "application/octet-stream"));
        async move { request.send_body(body).await.unwrap().status().as_u16() }
    };
    assert_eq!(
        status("text", b"\xff").await,
        400,
        "a text frame must be UTF-8"
    );
    assert_eq!(status("morse", b"{}").await, 400);
    // Accepted (on no socket: nothing is connected).
    assert_eq!(status("unchecked_text", b"\xff").await, 200);
    assert_eq!(status("binary", b"\xff").await, 200);
    assert_eq!(
        push_raw_frame(&http, &emulator, None, RawKind::Text, b"{}").await,
        0
    );
    emulator.stop().await;
}
