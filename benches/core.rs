//! `cargo bench`: the pieces of `convoy bench core`, each over the same generated corpus
//! (2 000 frames, seed 1): parsing and classifying, joining the snapshots into their
//! conversations, and the whole per-frame pipeline (join, facts, SLA clocks, CRM records
//! and summary), next to the `IgnoredAny` baseline. CI builds this (clippy's
//! `--all-targets`) but never runs it; numbers belong in the README, not in tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::hint::black_box;

use chrono::{DateTime, Utc};
use convoy::bench::{generate, CorePipeline};
use convoy::config::SlaConfig;
use convoy::conversation::{Conversation, ConversationSnapshot};
use convoy::parse::{classify_bytes, Classified};
use convoy::sla::SlaPolicy;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn pieces(c: &mut Criterion) {
    let corpus = generate(2_000, 1).expect("the generator runs");
    let frames: Vec<(&[u8], DateTime<Utc>)> = corpus
        .frames
        .iter()
        .map(|frame| {
            (
                frame.text.as_bytes(),
                frame.received_at.unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
            )
        })
        .collect();
    let snapshots: Vec<ConversationSnapshot> = frames
        .iter()
        .filter_map(|(bytes, _)| match classify_bytes(bytes) {
            Ok(Classified::Snapshot { snapshot, .. }) => Some(snapshot),
            _ => None,
        })
        .collect();
    let policy = SlaPolicy::from_config(&SlaConfig::default());

    let mut group = c.benchmark_group("core");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(corpus.bytes() as u64));
    group.bench_function("ignored_any", |b| {
        b.iter(|| {
            for (bytes, _) in &frames {
                let _ = black_box(serde_json::from_slice::<serde::de::IgnoredAny>(bytes));
            }
        })
    });
    group.bench_function("parse", |b| {
        b.iter(|| {
            for (bytes, _) in &frames {
                let _ = black_box(classify_bytes(bytes));
            }
        })
    });
    group.bench_function("apply", |b| {
        b.iter(|| {
            let mut conversations: HashMap<_, Conversation> = HashMap::new();
            for snapshot in &snapshots {
                let conversation = conversations
                    .entry(snapshot.conversation_id.clone())
                    .or_insert_with(|| Conversation::new(snapshot.conversation_id.clone()));
                let _ = black_box(conversation.apply_snapshot(snapshot));
            }
            conversations
        })
    });
    group.bench_function("pipeline", |b| {
        b.iter(|| {
            let mut pipeline = CorePipeline::new(policy.clone());
            for (bytes, at) in &frames {
                pipeline.process(bytes, *at);
            }
            pipeline.totals()
        })
    });
    group.finish();
}

criterion_group!(benches, pieces);
criterion_main!(benches);
