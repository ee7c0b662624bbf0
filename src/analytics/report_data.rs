//! A snapshot as the QA report shows it: [`report_data`] maps a [`Snapshot`] and the
//! queries that read it onto [`ReportData`], so `report.html` is a function of the same
//! data as the snapshot's other files (no wall-clock time: the same data gives the same
//! bytes).

use std::collections::BTreeMap;

use super::model::{QueueSla, SlaClockRow, Snapshot};
use super::plan::SentQuery;
use crate::report::{
    Breach, Bucket, ClockOutcomes, DurationStats, Interval, Mismatch, OutcomeCounts, QuerySummary,
    QueueRow, ReportData, Trust,
};
use crate::sla::ClockKind;

/// The report of `snapshot`, read with `queries` (as the manifest lists them).
pub fn report_data(snapshot: &Snapshot, queries: &[SentQuery]) -> ReportData {
    let answer_by_queue: BTreeMap<&str, &QueueSla> = snapshot
        .answer_sla_by_queue
        .iter()
        .map(|row| (row.queue_id.as_str(), row))
        .collect();
    let queues = snapshot
        .queues
        .iter()
        .map(|row| QueueRow {
            queue: row.queue_id.clone(),
            media_type: row.media_type.clone(),
            offered: row.offered,
            answered: row.answered,
            abandoned: row.abandoned,
            transferred: row.transferred,
            handle: durations(&row.handle),
            talk: durations(&row.talk),
            acw: durations(&row.acw),
            service_level: row
                .service_level
                .percent
                .as_ref()
                .and_then(|percent| percent.0.parse::<f64>().ok())
                .map(|percent| percent / 100.0),
            answer_sla: answer_by_queue
                .get(row.queue_id.as_str())
                .map(|queue| counts(&queue.outcomes))
                .unwrap_or_default(),
        })
        .collect();
    let sla_by_clock = snapshot
        .sla
        .iter()
        .filter_map(|row| {
            Some(ClockOutcomes {
                clock: clock_kind(&row.clock)?,
                outcomes: counts(row),
            })
        })
        .collect();
    let breaches = snapshot
        .breaches
        .iter()
        .filter_map(|breach| {
            Some(Breach {
                conversation_id: breach.conversation_id.clone(),
                clock: clock_kind(&breach.clock)?,
                subject: breach.subject.clone(),
                deadline: breach.deadline,
                fulfilled_at: breach.fulfilled_at,
            })
        })
        .collect();
    ReportData {
        title: "Convoy QA report".to_owned(),
        interval: Interval {
            from: snapshot.interval.from,
            to: snapshot.interval.to,
        },
        trust: Trust {
            data_availability_date: snapshot.trust.data_availability_date,
            generated_at: None,
            queries: query_summaries(snapshot, queries),
            mismatches: snapshot
                .trust
                .reconciliation
                .mismatches
                .iter()
                .map(|mismatch| Mismatch {
                    queue: mismatch.queue_id.clone(),
                    media_type: mismatch.media_type.clone(),
                    metric: serde_json::to_value(mismatch.measure)
                        .ok()
                        .and_then(|value| value.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    details_count: mismatch.details,
                    aggregates_count: mismatch.aggregates,
                })
                .collect(),
        },
        queues,
        sla_by_clock,
        breaches,
        conversations_over_time: snapshot
            .timeline
            .iter()
            .map(|bucket| Bucket {
                start: bucket.start,
                count: bucket.conversations,
            })
            .collect(),
        conversation_ids: snapshot
            .conversations
            .iter()
            .map(|row| row.conversation_id.clone())
            .collect(),
    }
}

/// One line per endpoint, in the order first used: how many requests, and the rows they
/// gave (conversations for the details endpoints together, compared groups for the
/// aggregates).
fn query_summaries(snapshot: &Snapshot, queries: &[SentQuery]) -> Vec<QuerySummary> {
    let mut summaries: Vec<QuerySummary> = Vec::new();
    for query in queries {
        match summaries
            .iter_mut()
            .find(|s| s.description == query.endpoint)
        {
            Some(summary) => summary.requests += 1,
            None => summaries.push(QuerySummary {
                name: query_name(&query.endpoint).to_owned(),
                description: query.endpoint.clone(),
                requests: 1,
                rows: 0,
            }),
        }
    }
    if let Some(details) = summaries
        .iter_mut()
        .find(|s| s.name != AGGREGATES && s.name != OTHER)
    {
        details.rows = snapshot.conversations.len() as u64;
    }
    if let Some(aggregates) = summaries.iter_mut().find(|s| s.name == AGGREGATES) {
        aggregates.rows = snapshot.trust.reconciliation.groups_compared;
    }
    summaries
}

const AGGREGATES: &str = "aggregates query";
const OTHER: &str = "analytics request";

fn query_name(endpoint: &str) -> &'static str {
    if endpoint.contains("aggregates") {
        AGGREGATES
    } else if endpoint.contains("details/jobs") {
        "conversation details job"
    } else if endpoint.contains("details/query") {
        "conversation details query"
    } else {
        OTHER
    }
}

fn durations(stats: &super::model::DurationStats) -> DurationStats {
    DurationStats {
        median_ms: stats.median_ms,
        p90_ms: stats.p90_ms,
    }
}

fn counts(row: &SlaClockRow) -> OutcomeCounts {
    OutcomeCounts {
        compliant: row.compliant,
        breached: row.breached,
        failed: row.failed,
        missing_receipt: row.missing_receipt,
        abandoned: row.abandoned,
    }
}

fn clock_kind(name: &str) -> Option<ClockKind> {
    ClockKind::ALL
        .into_iter()
        .find(|clock| clock.as_str() == name)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::analytics::build::{build_snapshot, tests::inputs};
    use crate::report::render_html;
    use serde_json::json;

    #[test]
    fn the_report_shows_the_snapshots_figures_and_nothing_of_the_wall_clock() {
        let snapshot = build_snapshot(&inputs());
        let queries = vec![
            SentQuery {
                endpoint: "/api/v2/analytics/conversations/details/query".to_owned(),
                body: json!({"paging": {"pageNumber": 1}}),
            },
            SentQuery {
                endpoint: "/api/v2/analytics/conversations/details/query".to_owned(),
                body: json!({"paging": {"pageNumber": 2}}),
            },
            SentQuery {
                endpoint: "/api/v2/analytics/conversations/aggregates/query".to_owned(),
                body: json!({}),
            },
        ];
        let report = report_data(&snapshot, &queries);

        assert_eq!(report.queues.len(), snapshot.queues.len());
        let q1 = report.queues.iter().find(|q| q.queue == "q1").unwrap();
        // Every outcome of the fixture is in q1: its answer column is the answer row.
        let answer = &snapshot.sla[0];
        assert_eq!(
            (
                q1.answer_sla.compliant,
                q1.answer_sla.breached,
                q1.answer_sla.abandoned
            ),
            (answer.compliant, answer.breached, answer.abandoned)
        );
        assert_eq!(report.sla_by_clock.len(), ClockKind::ALL.len());
        assert_eq!(report.breaches.len(), snapshot.breaches.len());
        assert_eq!(
            report.breaches[0].clock.as_str(),
            snapshot.breaches[0].clock
        );
        assert_eq!(report.conversation_ids.len(), snapshot.conversations.len());
        assert_eq!(
            report
                .trust
                .queries
                .iter()
                .map(|q| (q.name.as_str(), q.requests, q.rows))
                .collect::<Vec<_>>(),
            vec![
                (
                    "conversation details query",
                    2,
                    snapshot.conversations.len() as u64
                ),
                (
                    "aggregates query",
                    1,
                    snapshot.trust.reconciliation.groups_compared
                ),
            ]
        );
        assert_eq!(report.trust.generated_at, None);
        // The same data renders the same bytes.
        assert_eq!(
            render_html(&report),
            render_html(&report_data(&snapshot, &queries))
        );
    }
}
