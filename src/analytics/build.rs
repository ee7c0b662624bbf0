//! Detail rows + aggregates + Convoy's stored SLA outcomes → a [`Snapshot`].
//!
//! Detail rows are counted per session, the way Genesys' aggregates count them, so the two
//! reconcile when they hold the same data: an ACD session (`purpose: acd`) is one offer
//! (`nOffered`) and, if it carries `tAbandon`, one abandon; an agent session is one answer
//! when it carries `nConnected`, one transfer with `nTransferred`, and gives its `tHandle`,
//! `tTalk`, `tAcw` and `tAnswered`. A session belongs to the queue its first segment
//! names, and to its `mediaType`; sessions with no queue are left out of the queue rows.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use super::model::{
    Breach, ConversationRow, DetailsSource, DurationStats, Interval, Measure, Mismatch, Percent,
    QueueRow, QueueSla, Reconciliation, ServiceLevel, SlaClockRow, Snapshot, StoredOutcome,
    TimelineBucket, Trust, SNAPSHOT_SCHEMA,
};
use super::wire::{AggregatesResponse, AnalyticsConversation};
use crate::sla::{ClockKind, SlaOutcome};

/// Everything a snapshot is built from. The same inputs always build the same snapshot,
/// whatever the order of `conversations` and `outcomes`.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotInputs {
    pub interval: Interval,
    /// Detail rows (duplicates by id are kept once: the last one given).
    pub conversations: Vec<AnalyticsConversation>,
    pub aggregates: AggregatesResponse,
    /// Outcomes read from the outbox; those decided outside the interval are ignored.
    pub outcomes: Vec<StoredOutcome>,
    pub data_availability_date: Option<DateTime<Utc>>,
    pub details_source: DetailsSource,
    /// The service level's answer target.
    pub service_level_target_ms: u64,
}

/// Nearest-rank percentile of sorted `values` (see [`DurationStats`]).
pub fn nearest_rank(sorted: &[u64], percent: u64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len() as u64;
    let rank = (percent * n).div_ceil(100).max(1);
    usize::try_from(rank - 1)
        .ok()
        .and_then(|index| sorted.get(index))
        .copied()
}

fn stats(mut values: Vec<u64>) -> DurationStats {
    values.sort_unstable();
    DurationStats {
        count: values.len() as u64,
        median_ms: nearest_rank(&values, 50),
        p90_ms: nearest_rank(&values, 90),
    }
}

fn non_negative(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

#[derive(Default)]
struct Group {
    offered: u64,
    answered: u64,
    abandoned: u64,
    transferred: u64,
    within_target: u64,
    handle: Vec<u64>,
    talk: Vec<u64>,
    acw: Vec<u64>,
    answer: Vec<u64>,
}

/// The timeline's bucket width: the smallest of these giving at most 48 buckets.
const BUCKET_WIDTHS_MINUTES: [i64; 10] = [1, 5, 15, 30, 60, 180, 360, 720, 1_440, 10_080];
const MAX_BUCKETS: i64 = 48;

fn timeline(interval: &Interval, starts: &[DateTime<Utc>]) -> Vec<TimelineBucket> {
    let length = interval.to - interval.from;
    let width = BUCKET_WIDTHS_MINUTES
        .iter()
        .map(|minutes| Duration::minutes(*minutes))
        .find(|width| {
            let ms = width.num_milliseconds().max(1);
            length.num_milliseconds().div_euclid(ms)
                + i64::from(length.num_milliseconds() % ms != 0)
                <= MAX_BUCKETS
        })
        .unwrap_or_else(|| length / 48 + Duration::milliseconds(1));
    let mut buckets = Vec::new();
    let mut start = interval.from;
    while start < interval.to {
        let end = (start + width).min(interval.to);
        let conversations = starts
            .iter()
            .filter(|at| start <= **at && **at < end)
            .count();
        buckets.push(TimelineBucket {
            start,
            end,
            conversations: conversations as u64,
        });
        start = end;
    }
    buckets
}

fn conversation_row(conversation: &AnalyticsConversation) -> ConversationRow {
    let mut row = ConversationRow {
        conversation_id: conversation.conversation_id.clone(),
        start: conversation.conversation_start,
        end: conversation.conversation_end,
        queue_id: None,
        media_type: None,
        offered: 0,
        answered: 0,
        abandoned: 0,
        transferred: 0,
        handle_ms: None,
        talk_ms: None,
        acw_ms: None,
        answer_ms: None,
    };
    let add = |total: &mut Option<u64>, value: Option<i64>| {
        if let Some(value) = value {
            *total = Some(total.unwrap_or(0) + non_negative(value));
        }
    };
    for participant in &conversation.participants {
        for session in &participant.sessions {
            if row.media_type.is_none() {
                row.media_type = Some(session.media_type.clone());
            }
            match participant.purpose.as_deref() {
                Some("acd") => {
                    if row.queue_id.is_none() {
                        row.queue_id = session.queue_id().map(str::to_owned);
                    }
                    row.offered += u64::from(session.metric("nOffered").is_some());
                    row.abandoned += u64::from(session.metric("tAbandon").is_some());
                }
                Some("agent") => {
                    row.answered += u64::from(session.metric("nConnected").is_some());
                    row.transferred += u64::from(session.metric("nTransferred").is_some());
                    add(&mut row.handle_ms, session.metric("tHandle"));
                    add(&mut row.talk_ms, session.metric("tTalk"));
                    add(&mut row.acw_ms, session.metric("tAcw"));
                    if row.answer_ms.is_none() {
                        row.answer_ms = session.metric("tAnswered").map(non_negative);
                    }
                }
                _ => {}
            }
        }
    }
    row
}

/// One clock's tallies over `outcomes` (those of other clocks are skipped). Compliance is
/// over the decided clocks: abandoned ones measured nothing.
fn clock_row<'a>(
    clock: ClockKind,
    outcomes: impl Iterator<Item = &'a StoredOutcome>,
) -> SlaClockRow {
    let mut row = SlaClockRow {
        clock: clock.as_str().to_owned(),
        ..SlaClockRow::default()
    };
    for outcome in outcomes.filter(|o| o.clock == clock) {
        row.total += 1;
        match outcome.outcome {
            SlaOutcome::Compliant => row.compliant += 1,
            SlaOutcome::Breached => row.breached += 1,
            SlaOutcome::Failed => row.failed += 1,
            SlaOutcome::MissingReceipt => row.missing_receipt += 1,
            SlaOutcome::Abandoned => row.abandoned += 1,
        }
    }
    row.compliance_percent = Percent::of(row.compliant, row.total - row.abandoned);
    row
}

/// Builds the snapshot; see the module docs for how rows count.
pub fn build_snapshot(inputs: &SnapshotInputs) -> Snapshot {
    let interval = inputs.interval;
    let mut by_id: BTreeMap<&str, &AnalyticsConversation> = BTreeMap::new();
    for conversation in &inputs.conversations {
        if interval.contains(conversation.conversation_start) {
            by_id.insert(&conversation.conversation_id, conversation);
        }
    }
    let target = inputs.service_level_target_ms;
    let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
    for conversation in by_id.values() {
        for participant in &conversation.participants {
            for session in &participant.sessions {
                let Some(queue) = session.queue_id() else {
                    continue;
                };
                let key = (queue.to_owned(), session.media_type.clone());
                match participant.purpose.as_deref() {
                    Some("acd") => {
                        let group = groups.entry(key).or_default();
                        group.offered += u64::from(session.metric("nOffered").is_some());
                        group.abandoned += u64::from(session.metric("tAbandon").is_some());
                    }
                    Some("agent") => {
                        let group = groups.entry(key).or_default();
                        if session.metric("nConnected").is_some() {
                            group.answered += 1;
                        }
                        group.transferred += u64::from(session.metric("nTransferred").is_some());
                        let push = |values: &mut Vec<u64>, name: &str| {
                            if let Some(value) = session.metric(name) {
                                values.push(non_negative(value));
                            }
                        };
                        push(&mut group.handle, "tHandle");
                        push(&mut group.talk, "tTalk");
                        push(&mut group.acw, "tAcw");
                        push(&mut group.answer, "tAnswered");
                        if session
                            .metric("tAnswered")
                            .is_some_and(|answered| non_negative(answered) <= target)
                        {
                            group.within_target += 1;
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    let aggregate_counts = inputs.aggregates.counts();
    let mut mismatches = Vec::new();
    let mut keys: Vec<(String, String)> = groups
        .keys()
        .chain(aggregate_counts.keys())
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    for key in &keys {
        let details = groups.get(key);
        let aggregates = aggregate_counts.get(key).copied().unwrap_or_default();
        let measured = [
            (
                Measure::Offered,
                details.map_or(0, |g| g.offered),
                aggregates.offered,
            ),
            (
                Measure::Answered,
                details.map_or(0, |g| g.answered),
                aggregates.answered,
            ),
            (
                Measure::Abandoned,
                details.map_or(0, |g| g.abandoned),
                aggregates.abandoned,
            ),
        ];
        for (measure, details, aggregates) in measured {
            if details != aggregates {
                mismatches.push(Mismatch {
                    queue_id: key.0.clone(),
                    media_type: key.1.clone(),
                    measure,
                    details,
                    aggregates,
                });
            }
        }
    }

    let queues = groups
        .into_iter()
        .map(|((queue_id, media_type), group)| QueueRow {
            queue_id,
            media_type,
            offered: group.offered,
            answered: group.answered,
            abandoned: group.abandoned,
            transferred: group.transferred,
            service_level: ServiceLevel {
                target_ms: target,
                answered_within_target: group.within_target,
                answered: group.answered,
                abandoned: group.abandoned,
                percent: Percent::of(group.within_target, group.answered + group.abandoned),
            },
            handle: stats(group.handle),
            talk: stats(group.talk),
            acw: stats(group.acw),
            answer: stats(group.answer),
        })
        .collect();

    // Outcomes: one per key (a duplicate read keeps the last), decided in the interval.
    let mut outcomes: BTreeMap<String, &StoredOutcome> = BTreeMap::new();
    for outcome in &inputs.outcomes {
        if interval.contains(outcome.decided_at) {
            outcomes.insert(outcome.key(), outcome);
        }
    }
    let sla = ClockKind::ALL
        .iter()
        .map(|clock| clock_row(*clock, outcomes.values().copied()))
        .collect();
    let mut answer_by_queue: BTreeMap<&str, Vec<&StoredOutcome>> = BTreeMap::new();
    for outcome in outcomes.values() {
        if let (ClockKind::Answer, Some(queue)) = (outcome.clock, outcome.queue_id.as_deref()) {
            answer_by_queue.entry(queue).or_default().push(outcome);
        }
    }
    let answer_sla_by_queue = answer_by_queue
        .into_iter()
        .map(|(queue, outcomes)| QueueSla {
            queue_id: queue.to_owned(),
            outcomes: clock_row(ClockKind::Answer, outcomes.into_iter()),
        })
        .collect();
    let mut breaches: Vec<Breach> = outcomes
        .values()
        .filter(|o| o.outcome == SlaOutcome::Breached)
        .map(|o| Breach {
            conversation_id: o.conversation_id.clone(),
            clock: o.clock.as_str().to_owned(),
            subject: o.subject.clone(),
            queue_id: o.queue_id.clone(),
            deadline: o.deadline,
            fulfilled_at: o.fulfilled_at,
        })
        .collect();
    breaches.sort();

    let starts: Vec<DateTime<Utc>> = by_id.values().map(|c| c.conversation_start).collect();
    let conversations: Vec<ConversationRow> = by_id.values().map(|c| conversation_row(c)).collect();
    let in_progress = conversations.iter().filter(|c| c.end.is_none()).count() as u64;

    Snapshot {
        schema: SNAPSHOT_SCHEMA,
        interval,
        queues,
        sla,
        answer_sla_by_queue,
        breaches,
        timeline: timeline(&interval, &starts),
        conversations,
        trust: Trust {
            data_availability_date: inputs.data_availability_date,
            details_source: inputs.details_source,
            conversations_in_progress: in_progress,
            reconciliation: Reconciliation {
                clean: mismatches.is_empty(),
                groups_compared: keys.len() as u64,
                mismatches,
            },
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod tests {
    use super::*;
    use crate::analytics::wire::{self, AggregateCounts};
    use serde_json::json;

    pub(crate) fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    /// A conversation offered to `queue`: answered after `answer_ms` with the given
    /// talk and ACW, or abandoned when `answer_ms` is `None`.
    pub(crate) fn conversation(
        id: &str,
        start: &str,
        queue: &str,
        answer_ms: Option<i64>,
        talk_ms: i64,
        acw_ms: i64,
    ) -> AnalyticsConversation {
        let segment = json!([{ "segmentStart": start, "segmentType": "delay", "queueId": queue }]);
        let mut acd_metrics = vec![json!({ "name": "nOffered", "value": 1 })];
        let mut participants = vec![json!({
            "purpose": "customer",
            "sessions": [{ "mediaType": "message", "metrics": [{ "name": "nConnected", "value": 1 }] }],
        })];
        match answer_ms {
            Some(answer) => participants.push(json!({
                "purpose": "agent",
                "sessions": [{
                    "mediaType": "message",
                    "segments": segment,
                    "metrics": [
                        { "name": "nConnected", "value": 1 },
                        { "name": "tAnswered", "value": answer },
                        { "name": "tTalk", "value": talk_ms },
                        { "name": "tAcw", "value": acw_ms },
                        { "name": "tHandle", "value": talk_ms + acw_ms },
                    ],
                }],
            })),
            None => acd_metrics.push(json!({ "name": "tAbandon", "value": 9_000 })),
        }
        participants.push(json!({
            "purpose": "acd",
            "sessions": [{ "mediaType": "message", "segments": segment, "metrics": acd_metrics }],
        }));
        let body = json!({
            "conversations": [{
                "conversationId": id,
                "conversationStart": start,
                "conversationEnd": start,
                "participants": participants,
            }],
        });
        wire::details_page(body.to_string().as_bytes())
            .unwrap()
            .conversations
            .remove(0)
    }

    pub(crate) fn aggregates(groups: &[(&str, AggregateCounts)]) -> AggregatesResponse {
        let results: Vec<_> = groups
            .iter()
            .map(|(queue, counts)| {
                json!({
                    "group": { "queueId": queue, "mediaType": "message" },
                    "data": [{ "interval": "x", "metrics": [
                        { "metric": "nOffered", "stats": { "count": counts.offered } },
                        { "metric": "nConnected", "stats": { "count": counts.answered } },
                        { "metric": "tAbandon", "stats": { "count": counts.abandoned } },
                    ]}],
                })
            })
            .collect();
        wire::aggregates(json!({ "results": results }).to_string().as_bytes()).unwrap()
    }

    pub(crate) fn outcome(
        conversation: &str,
        clock: ClockKind,
        outcome: SlaOutcome,
        decided_at: &str,
    ) -> StoredOutcome {
        StoredOutcome {
            conversation_id: conversation.to_owned(),
            clock,
            subject: format!("{conversation}-subject"),
            outcome,
            deadline: at(decided_at),
            fulfilled_at: None,
            queue_id: Some("q1".to_owned()),
            messenger_type: None,
            decided_at: at(decided_at),
        }
    }

    pub(crate) fn inputs() -> SnapshotInputs {
        SnapshotInputs {
            interval: Interval {
                from: at("2025-03-04T14:00:00Z"),
                to: at("2025-03-04T15:00:00Z"),
            },
            conversations: vec![
                conversation(
                    "c3",
                    "2025-03-04T14:20:00Z",
                    "q1",
                    Some(30_000),
                    100_000,
                    10_000,
                ),
                conversation(
                    "c1",
                    "2025-03-04T14:05:00Z",
                    "q1",
                    Some(5_000),
                    200_000,
                    20_000,
                ),
                conversation("c2", "2025-03-04T14:10:00Z", "q1", None, 0, 0),
                conversation(
                    "c4",
                    "2025-03-04T14:40:00Z",
                    "q1",
                    Some(10_000),
                    300_000,
                    30_000,
                ),
                conversation("c5", "2025-03-04T14:50:00Z", "q2", Some(1_000), 50_000, 0),
                // Started before the interval: not part of it.
                conversation("c0", "2025-03-04T13:59:59Z", "q1", Some(1_000), 1, 1),
            ],
            aggregates: aggregates(&[
                (
                    "q1",
                    AggregateCounts {
                        offered: 4,
                        answered: 3,
                        abandoned: 1,
                    },
                ),
                (
                    "q2",
                    AggregateCounts {
                        offered: 1,
                        answered: 1,
                        abandoned: 0,
                    },
                ),
            ]),
            outcomes: vec![
                outcome(
                    "c1",
                    ClockKind::Answer,
                    SlaOutcome::Compliant,
                    "2025-03-04T14:05:05Z",
                ),
                outcome(
                    "c3",
                    ClockKind::Answer,
                    SlaOutcome::Breached,
                    "2025-03-04T14:20:30Z",
                ),
                outcome(
                    "c2",
                    ClockKind::Answer,
                    SlaOutcome::Abandoned,
                    "2025-03-04T14:10:09Z",
                ),
                outcome(
                    "c1",
                    ClockKind::Read,
                    SlaOutcome::MissingReceipt,
                    "2025-03-04T14:30:00Z",
                ),
                outcome(
                    "c9",
                    ClockKind::Answer,
                    SlaOutcome::Breached,
                    "2025-03-04T15:00:00Z",
                ),
            ],
            data_availability_date: Some(at("2025-03-04T14:30:00Z")),
            details_source: DetailsSource::Query,
            service_level_target_ms: 20_000,
        }
    }

    #[test]
    fn queue_rows_count_sessions_and_take_nearest_rank_percentiles() {
        let snapshot = build_snapshot(&inputs());
        let q1 = &snapshot.queues[0];
        assert_eq!(
            (q1.queue_id.as_str(), q1.media_type.as_str()),
            ("q1", "message")
        );
        assert_eq!((q1.offered, q1.answered, q1.abandoned), (4, 3, 1));
        // Talk 100 000, 200 000, 300 000: median the 2nd, p90 rank ceil(2.7) = 3rd.
        assert_eq!(q1.talk.median_ms, Some(200_000));
        assert_eq!(q1.talk.p90_ms, Some(300_000));
        assert_eq!(q1.handle.median_ms, Some(220_000));
        assert_eq!(q1.acw.count, 3);
        // Answered within 20 s: 5 s and 10 s; 30 s is late. 2 / (3 answered + 1 abandoned).
        assert_eq!(q1.service_level.answered_within_target, 2);
        assert_eq!(q1.service_level.percent, Percent::of(2, 4));
        assert_eq!(snapshot.queues[1].queue_id, "q2");
    }

    #[test]
    fn nearest_rank_takes_the_lower_median_of_an_even_count() {
        assert_eq!(nearest_rank(&[1, 2, 3, 4], 50), Some(2));
        assert_eq!(nearest_rank(&[1, 2, 3, 4], 90), Some(4));
        assert_eq!(nearest_rank(&[7], 90), Some(7));
        assert_eq!(nearest_rank(&[], 50), None);
    }

    #[test]
    fn matching_aggregates_reconcile_clean() {
        let snapshot = build_snapshot(&inputs());
        assert!(snapshot.trust.reconciliation.clean);
        assert_eq!(snapshot.trust.reconciliation.groups_compared, 2);
    }

    #[test]
    fn every_disagreement_with_the_aggregates_is_listed() {
        let mut inputs = inputs();
        inputs.aggregates = aggregates(&[
            (
                "q1",
                AggregateCounts {
                    offered: 5,
                    answered: 3,
                    abandoned: 2,
                },
            ),
            (
                "q3",
                AggregateCounts {
                    offered: 1,
                    answered: 0,
                    abandoned: 0,
                },
            ),
        ]);
        let reconciliation = build_snapshot(&inputs).trust.reconciliation;
        assert!(!reconciliation.clean);
        let found: Vec<_> = reconciliation
            .mismatches
            .iter()
            .map(|m| (m.queue_id.as_str(), m.measure, m.details, m.aggregates))
            .collect();
        assert_eq!(
            found,
            vec![
                ("q1", Measure::Offered, 4, 5),
                ("q1", Measure::Abandoned, 1, 2),
                ("q2", Measure::Offered, 1, 0),
                ("q2", Measure::Answered, 1, 0),
                ("q3", Measure::Offered, 0, 1),
            ]
        );
    }

    #[test]
    fn sla_tallies_count_outcomes_decided_in_the_interval_by_clock() {
        let snapshot = build_snapshot(&inputs());
        let answer = &snapshot.sla[0];
        assert_eq!(answer.clock, "answer");
        assert_eq!(
            (
                answer.compliant,
                answer.breached,
                answer.abandoned,
                answer.total
            ),
            (1, 1, 1, 3)
        );
        // Abandoned clocks are neither met nor missed: 1 of 2.
        assert_eq!(answer.compliance_percent, Percent::of(1, 2));
        let read = snapshot.sla.iter().find(|r| r.clock == "read").unwrap();
        assert_eq!(read.missing_receipt, 1);
        assert_eq!(
            snapshot.sla.len(),
            ClockKind::ALL.len(),
            "every clock has a row"
        );
        let breached: Vec<_> = snapshot
            .breaches
            .iter()
            .map(|b| b.conversation_id.as_str())
            .collect();
        assert_eq!(
            breached,
            vec!["c3"],
            "c9 was decided at the interval's end: outside"
        );
    }

    #[test]
    fn conversations_are_sorted_by_id_and_bucketed_by_start() {
        let snapshot = build_snapshot(&inputs());
        let ids: Vec<_> = snapshot
            .conversations
            .iter()
            .map(|c| c.conversation_id.as_str())
            .collect();
        assert_eq!(ids, vec!["c1", "c2", "c3", "c4", "c5"]);
        assert_eq!(snapshot.conversations[1].abandoned, 1);
        assert_eq!(snapshot.conversations[0].answer_ms, Some(5_000));
        // One hour: 5-minute buckets, 12 of them.
        assert_eq!(snapshot.timeline.len(), 12);
        let counts: Vec<u64> = snapshot.timeline.iter().map(|b| b.conversations).collect();
        assert_eq!(counts, vec![0, 1, 1, 0, 1, 0, 0, 0, 1, 0, 1, 0]);
    }
}
