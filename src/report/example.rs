//! Sample report data: a plausible six-hour morning of a small contact centre.
//!
//! Used by tests (including the headless-Chromium one), the demo and anyone wiring the
//! report who wants to look at a page before a snapshot exists. It exercises what the page
//! must handle: a queue name full of markup characters, a media type without talk time, a
//! reconciliation mismatch, a watermark before the interval end, a breach fulfilled late
//! and one never fulfilled.

use chrono::{DateTime, TimeDelta, Utc};

use super::{
    Breach, Bucket, ClockOutcomes, DurationStats, Interval, Mismatch, OutcomeCounts, QuerySummary,
    QueueRow, ReportData, Trust,
};
use crate::sla::ClockKind;

/// 2026-03-02T09:00:00Z.
const START_SECONDS: i64 = 1_772_442_000;

/// Conversations started per 15-minute bucket; 164 in all, the sum of the queues' offered.
const PER_BUCKET: [u64; 24] = [
    2, 4, 6, 8, 9, 11, 12, 10, 9, 8, 7, 6, 7, 8, 9, 10, 9, 8, 6, 5, 4, 3, 2, 1,
];

fn at(minutes: i64) -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH + TimeDelta::seconds(START_SECONDS + minutes * 60)
}

fn conversation_id(n: usize) -> String {
    format!("7c1e{n:04x}-5a3b-4c2d-9e8f-0a1b2c3d4e5f")
}

fn stats(median_ms: u64, p90_ms: u64) -> DurationStats {
    DurationStats {
        median_ms: Some(median_ms),
        p90_ms: Some(p90_ms),
    }
}

fn outcomes(
    compliant: u64,
    breached: u64,
    failed: u64,
    missing_receipt: u64,
    abandoned: u64,
) -> OutcomeCounts {
    OutcomeCounts {
        compliant,
        breached,
        failed,
        missing_receipt,
        abandoned,
    }
}

impl ReportData {
    /// Sample data for tests, demos and previews — not from any real org.
    pub fn example() -> ReportData {
        let total: u64 = PER_BUCKET.iter().sum();
        let conversation_ids: Vec<String> = (0..total as usize).map(conversation_id).collect();
        ReportData {
            title: "Convoy QA report — Acme Contact Centre".into(),
            interval: Interval {
                from: at(0),
                to: at(360),
            },
            trust: Trust {
                data_availability_date: Some(at(300)),
                generated_at: Some(at(365)),
                queries: vec![
                    QuerySummary {
                        name: "conversation details query".into(),
                        description: "POST /api/v2/analytics/conversations/details/query, \
                                      interval 2026-03-02T09:00:00Z/2026-03-02T15:00:00Z, \
                                      100 per page, ordered by conversationStart"
                            .into(),
                        requests: 2,
                        rows: total,
                    },
                    QuerySummary {
                        name: "aggregates query".into(),
                        description: "POST /api/v2/analytics/conversations/aggregates/query, \
                                      groupBy queueId, mediaType; metrics nOffered, nConnected, \
                                      nTransferred, tHandle, tTalk, tAcw, tAnswered, tAbandon, \
                                      oServiceLevel"
                            .into(),
                        requests: 1,
                        rows: 4,
                    },
                ],
                mismatches: vec![Mismatch {
                    queue: "Support & Returns <EU>".into(),
                    media_type: "message".into(),
                    metric: "abandoned".into(),
                    details_count: 3,
                    aggregates_count: 4,
                }],
            },
            queues: vec![
                QueueRow {
                    queue: "Sales".into(),
                    media_type: "voice".into(),
                    offered: 42,
                    answered: 38,
                    abandoned: 4,
                    transferred: 3,
                    handle: stats(312_000, 618_000),
                    talk: stats(251_000, 502_000),
                    acw: stats(45_000, 88_000),
                    service_level: Some(0.81),
                    answer_sla: outcomes(33, 5, 0, 0, 4),
                },
                QueueRow {
                    queue: "Sales".into(),
                    media_type: "message".into(),
                    offered: 51,
                    answered: 49,
                    abandoned: 2,
                    transferred: 1,
                    handle: stats(1_254_000, 3_010_000),
                    talk: stats(980_000, 2_400_000),
                    acw: stats(30_000, 61_000),
                    service_level: Some(0.902),
                    answer_sla: outcomes(46, 3, 0, 0, 2),
                },
                QueueRow {
                    queue: "Support & Returns <EU>".into(),
                    media_type: "message".into(),
                    offered: 62,
                    answered: 59,
                    abandoned: 3,
                    transferred: 6,
                    handle: stats(1_622_000, 4_105_000),
                    talk: stats(1_401_000, 3_550_000),
                    acw: stats(52_000, 120_000),
                    service_level: Some(0.774),
                    answer_sla: outcomes(51, 8, 0, 0, 3),
                },
                QueueRow {
                    queue: "Billing".into(),
                    media_type: "email".into(),
                    offered: 9,
                    answered: 9,
                    abandoned: 0,
                    transferred: 0,
                    handle: stats(7_380_000, 14_900_000),
                    talk: DurationStats::default(),
                    acw: stats(95_000, 180_000),
                    service_level: None,
                    answer_sla: outcomes(9, 0, 0, 0, 0),
                },
            ],
            sla_by_clock: vec![
                ClockOutcomes {
                    clock: ClockKind::Answer,
                    outcomes: outcomes(139, 16, 0, 0, 9),
                },
                ClockOutcomes {
                    clock: ClockKind::FirstResponse,
                    outcomes: outcomes(101, 7, 0, 0, 2),
                },
                ClockOutcomes {
                    clock: ClockKind::NextResponse,
                    outcomes: outcomes(388, 21, 0, 0, 5),
                },
                ClockOutcomes {
                    clock: ClockKind::Delivery,
                    outcomes: outcomes(402, 3, 4, 6, 0),
                },
                ClockOutcomes {
                    clock: ClockKind::Read,
                    outcomes: outcomes(311, 12, 0, 41, 0),
                },
            ],
            breaches: vec![
                Breach {
                    conversation_id: conversation_id(3),
                    clock: ClockKind::Answer,
                    subject: "participant/0d5e9a10-2b1c-4d3e-8f70-1a2b3c4d5e6f".into(),
                    deadline: at(31),
                    fulfilled_at: Some(at(35) + TimeDelta::seconds(12)),
                },
                Breach {
                    conversation_id: conversation_id(17),
                    clock: ClockKind::FirstResponse,
                    subject: "participant/5f0c7d21-8e9a-4b1c-a2d3-e4f5a6b7c8d9".into(),
                    deadline: at(78),
                    fulfilled_at: Some(at(78) + TimeDelta::seconds(47)),
                },
                Breach {
                    conversation_id: conversation_id(58),
                    clock: ClockKind::NextResponse,
                    subject: "participant/91aa4e02-7c3b-4d5e-9f60-718293a4b5c6".into(),
                    deadline: at(142),
                    fulfilled_at: Some(at(171) + TimeDelta::seconds(3)),
                },
                Breach {
                    conversation_id: conversation_id(90),
                    clock: ClockKind::Delivery,
                    subject: "message/0b8f2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d".into(),
                    deadline: at(201),
                    fulfilled_at: None,
                },
                Breach {
                    conversation_id: conversation_id(131),
                    clock: ClockKind::Read,
                    subject: "message/6e7f8091-a2b3-4c4d-9e5f-60718293a4b5".into(),
                    deadline: at(287),
                    fulfilled_at: Some(at(287) + TimeDelta::seconds(3_725)),
                },
            ],
            conversations_over_time: PER_BUCKET
                .iter()
                .enumerate()
                .map(|(i, &count)| Bucket {
                    start: at(15 * i as i64),
                    count,
                })
                .collect(),
            conversation_ids,
        }
    }
}
