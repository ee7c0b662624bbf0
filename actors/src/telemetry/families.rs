//! The catalogue of Convoy's metric families: what each one means (the `# HELP` line) and
//! which series exist before anything happened. It only describes and seeds; it never
//! counts a real occurrence.
//!
//! The Prometheus exporter renders a family only once a series of it exists, so every
//! family is seeded: counters and gauges at zero for each label value known in advance
//! (REST families for every route template Convoy calls), the heartbeat age as `NaN`
//! (no heartbeat yet: 0 would claim one just arrived). That keeps dashboards and alerts
//! (`rate(...) > 0`, `absent(...)`) meaningful from start-up.

use convoy::parse::FrameKind;

use super::names;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    /// Described only: a seed would record a fake observation. Rendered with the buckets
    /// `telemetry::install` sets.
    Histogram,
}

/// Which series of a family exist from start-up.
#[derive(Debug, Clone)]
enum Seed {
    /// One unlabelled gauge holding `NaN` (no value known yet).
    Unknown,
    /// One series without labels.
    Unlabeled,
    /// One series per value of one label.
    Each(&'static str, Vec<&'static str>),
    /// One series per route template and status class.
    RoutesAndClasses,
}

#[derive(Debug, Clone)]
struct Family {
    name: &'static str,
    kind: Kind,
    help: &'static str,
    seed: Seed,
}

fn counter(name: &'static str, help: &'static str, seed: Seed) -> Family {
    Family {
        name,
        kind: Kind::Counter,
        help,
        seed,
    }
}

fn histogram(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        kind: Kind::Histogram,
        help,
        seed: Seed::Unlabeled,
    }
}

fn gauge(name: &'static str, help: &'static str, seed: Seed) -> Family {
    Family {
        name,
        kind: Kind::Gauge,
        help,
        seed,
    }
}

fn per_actor() -> Seed {
    Seed::Each("actor", names::ACTOR_TYPES.to_vec())
}

fn reasons(values: &[&'static str]) -> Seed {
    Seed::Each("reason", values.to_vec())
}

/// Every `FrameKind` label value, plus `malformed` for frames that did not parse.
fn frame_kinds() -> Seed {
    let kinds = [
        FrameKind::Heartbeat,
        FrameKind::Pong,
        FrameKind::SocketClosing,
        FrameKind::System,
        FrameKind::ChannelReply,
        FrameKind::Snapshot,
        FrameKind::Transcription,
        FrameKind::Detail,
        FrameKind::UnknownTopic,
    ];
    let mut values: Vec<&'static str> = kinds.into_iter().map(FrameKind::as_str).collect();
    values.push("malformed");
    Seed::Each("kind", values)
}

fn families() -> Vec<Family> {
    use Seed::Unlabeled;
    let per_route = || Seed::Each("route", names::GENESYS_ROUTES.to_vec());
    vec![
        // Per actor type.
        counter(
            names::ACTOR_MESSAGES_SENT,
            "Messages put into an actor's mailbox, by actor type.",
            per_actor(),
        ),
        counter(
            names::ACTOR_MESSAGES_HANDLED,
            "Messages an actor finished handling, by actor type.",
            per_actor(),
        ),
        counter(
            names::ACTOR_HANDLER_ERRORS,
            "Messages whose handler returned an error, by actor type.",
            per_actor(),
        ),
        counter(
            names::ACTOR_RESTARTS,
            "Actor restarts (by a Supervisor, or a crashed conversation actor rebuilt), by actor type.",
            per_actor(),
        ),
        counter(
            names::ACTOR_PANICS,
            "Actors that died unwinding from a panic, by actor type.",
            per_actor(),
        ),
        counter(
            names::ACTOR_SEND_TIMEOUTS,
            "Sends to an actor's mailbox that timed out (back-pressure), by actor type.",
            per_actor(),
        ),
        gauge(
            names::ACTOR_QUEUE_DEPTH,
            "Messages sent to an actor type and not handled yet (sent minus handled).",
            per_actor(),
        ),
        // Stream.
        counter(
            names::STREAM_CONNECTS,
            "WebSocket connections opened to a notification channel.",
            Unlabeled,
        ),
        counter(
            names::STREAM_RECONNECTS,
            "Notification socket reconnects, by reason.",
            reasons(names::RECONNECT_REASONS),
        ),
        counter(
            names::STREAM_FRAMES,
            "Notification frames received, by kind.",
            frame_kinds(),
        ),
        counter(
            names::STREAM_DUPLICATE_SNAPSHOTS,
            "Snapshot frames whose body was byte-identical to one the socket had just read (the same change on another topic), dropped before parsing.",
            Seed::Unlabeled,
        ),
        counter(
            names::STREAM_ROTATIONS,
            "Make-before-break channel rotations, by reason.",
            reasons(names::ROTATION_REASONS),
        ),
        // Seeding 0 would claim a heartbeat just arrived.
        gauge(
            names::STREAM_HEARTBEAT_AGE,
            "Seconds since the last heartbeat frame (NaN before the first).",
            Seed::Unknown,
        ),
        gauge(
            names::STREAM_REJECTED_TOPICS,
            "Topics Genesys rejected in the last subscription.",
            Unlabeled,
        ),
        counter(
            names::STREAM_RECONCILIATIONS,
            "Reconciliations after a gap in the stream, by reason.",
            reasons(names::RECONCILE_REASONS),
        ),
        counter(
            names::CLUSTER_PUBLISHED,
            "Payloads published to the cluster's frames stream, by kind and outcome.",
            Unlabeled,
        ),
        counter(
            names::CLUSTER_PUBLISH_RETRIES,
            "Publishes to the frames stream that failed and were retried, by kind.",
            Seed::Each("kind", vec!["frame", "reread"]),
        ),
        gauge(
            names::CLUSTER_INGEST_TRACKED,
            "Conversations the ingest re-reads and publishes after a gap.",
            Unlabeled,
        ),
        counter(
            names::CLUSTER_CONSUMED,
            "Frames stream messages a worker finished with, by outcome.",
            Seed::Each(
                "outcome",
                vec!["acked", "uncommitted", "refused", "ignored", "malformed"],
            ),
        ),
        counter(
            names::CLUSTER_REDELIVERIES,
            "Frames stream messages delivered to this worker more than once.",
            Unlabeled,
        ),
        gauge(
            names::CLUSTER_CONSUMER_LAG,
            "Messages waiting in this worker's partition consumers.",
            Unlabeled,
        ),
        gauge(
            names::CLUSTER_PARTITIONS_CONSUMING,
            "Partitions with a running consumer on this worker.",
            Unlabeled,
        ),
        counter(
            names::STREAM_ROUTE_DROPPED,
            "Conversation events the router did not take, by reason (their conversations are re-read).",
            reasons(names::ROUTE_DROP_REASONS),
        ),
        counter(
            names::STREAM_OVERSIZED_FRAMES,
            "WebSocket messages refused by stream.max_frame_bytes or the fragment cap (each ends its socket), by reason.",
            reasons(&["too_large", "too_many_fragments"]),
        ),
        gauge(
            names::STREAM_TRANSCRIPTION_TOPICS,
            "Transcription topics subscribed for live voice calls.",
            Unlabeled,
        ),
        gauge(
            names::STREAM_CHANNELS_CONNECTED,
            "Notification channels with a connected socket.",
            Unlabeled,
        ),
        counter(
            names::STREAM_RECORD_ERRORS,
            "Failures opening or writing the --record capture file.",
            Unlabeled,
        ),
        // Conversations.
        counter(
            names::CONVERSATIONS_STARTED,
            "Conversation actors started.",
            Unlabeled,
        ),
        counter(
            names::CONVERSATIONS_EVICTED,
            "Conversation actors removed from the router, by reason.",
            reasons(names::EVICTION_REASONS),
        ),
        gauge(
            names::CONVERSATIONS_LIVE,
            "Conversation actors alive now.",
            Unlabeled,
        ),
        counter(
            names::CONVERSATION_STALE_INPUTS,
            "Snapshot parts ignored because they would move a state backwards.",
            Unlabeled,
        ),
        counter(
            names::CONVERSATION_TOMBSTONED_EVENTS,
            "Events for conversations that already finished and changed nothing, dropped by the router.",
            Unlabeled,
        ),
        counter(
            names::CONVERSATION_ECHOES,
            "Snapshots that changed only Convoy's own convoy.* attributes (echoes of its writes).",
            Unlabeled,
        ),
        gauge(
            names::REREADS_OWED,
            "Conversations waiting in the reconciliation set for a background re-read.",
            Unlabeled,
        ),
        counter(
            names::REREADS,
            "Background re-reads of conversations, by outcome.",
            Seed::Each("outcome", vec!["ok", "failed"]),
        ),
        counter(
            names::PARTICIPANT_TRANSITIONS,
            "Participant lifecycle transitions observed (what one write per transition would cost).",
            Unlabeled,
        ),
        gauge(
            names::WRITE_BACK_OWED,
            "Participant attribute writes owed to Genesys now (at most one per participant).",
            Unlabeled,
        ),
        gauge(
            names::WRITE_BACK_CONVERSATIONS,
            "Conversations owing at least one attribute write.",
            Unlabeled,
        ),
        counter(
            names::WRITE_BACK_WRITES,
            "Attribute writes performed, by outcome.",
            Seed::Each("outcome", names::WRITE_OUTCOMES.to_vec()),
        ),
        // Outbox.
        gauge(
            names::OUTBOX_PENDING,
            "Records accepted and not yet acknowledged by the CRM nor dead-lettered.",
            Unlabeled,
        ),
        gauge(
            names::OUTBOX_OLDEST_AGE,
            "Seconds the oldest pending outbox record has waited (0 when none).",
            Unlabeled,
        ),
        gauge(
            names::OUTBOX_BACKPRESSURE,
            "1 while the pipeline refuses frames: outbox full, commits failing or behind.",
            Unlabeled,
        ),
        counter(
            names::OUTBOX_COMMIT_FAILURES,
            "Outbox commits that failed (each is retried until it succeeds).",
            Unlabeled,
        ),
        histogram(
            names::OUTBOX_COMMIT_SECONDS,
            "Seconds per outbox group commit (one fsync).",
        ),
        histogram(
            names::OUTBOX_GROUP_SIZE,
            "Handovers committed together in one outbox transaction.",
        ),
        // CRM.
        counter(
            names::CRM_RECORDS_ACCEPTED,
            "Records handed to the outbox, by kind (a record whose id is already pending is not stored twice).",
            Seed::Each("kind", names::CRM_RECORD_KINDS.to_vec()),
        ),
        counter(
            names::CRM_RECORDS_SENT,
            "Records sent to the CRM (each attempt), by kind.",
            Seed::Each("kind", names::CRM_RECORD_KINDS.to_vec()),
        ),
        counter(
            names::CRM_RECORDS_ACKNOWLEDGED,
            "Records the CRM acknowledged (removed from the outbox), by kind.",
            Seed::Each("kind", names::CRM_RECORD_KINDS.to_vec()),
        ),
        counter(
            names::CRM_RECORDS_RETRIED,
            "Records sent again after a retryable failure, by kind.",
            Seed::Each("kind", names::CRM_RECORD_KINDS.to_vec()),
        ),
        counter(
            names::CRM_RECORDS_DEAD_LETTERED,
            "Records moved to the dead-letter table, by kind.",
            Seed::Each("kind", names::CRM_RECORD_KINDS.to_vec()),
        ),
        histogram(names::CRM_BATCH_RECORDS, "Records per batch sent to the CRM."),
        histogram(
            names::CRM_REQUEST_SECONDS,
            "Seconds per CRM batch request, by outcome.",
        ),
        gauge(
            names::CRM_CONCURRENCY_LIMIT,
            "Batches allowed in flight by the adaptive concurrency limit.",
            Unlabeled,
        ),
        gauge(
            names::CRM_BATCHES_IN_FLIGHT,
            "Batches in flight to the CRM now.",
            Unlabeled,
        ),
        counter(
            names::CRM_SUMMARY_UPSERTS,
            "Conversation summary upserts, by outcome (conflict_resolved: a 412 merged and stored).",
            Seed::Each("outcome", names::SUMMARY_OUTCOMES.to_vec()),
        ),
        gauge(
            names::CRM_SUMMARIES_PENDING,
            "Conversation summaries waiting to be upserted.",
            Unlabeled,
        ),
        // Analytics.
        counter(
            names::ANALYTICS_SNAPSHOTS,
            "Scheduled QA snapshots, by result (taken, failed; a failed one is retried and its interval covered by the next).",
            Seed::Each("result", names::SNAPSHOT_RESULTS.to_vec()),
        ),
        counter(
            names::ANALYTICS_ROWS,
            "Conversation rows written by scheduled QA snapshots.",
            Unlabeled,
        ),
        histogram(
            names::ANALYTICS_SECONDS,
            "Seconds one scheduled QA snapshot took, failed ones included.",
        ),
        gauge(
            names::ANALYTICS_MISMATCHES,
            "Detail-vs-aggregate reconciliation mismatches of the last scheduled QA snapshot.",
            Unlabeled,
        ),
        // SLA.
        counter(
            names::SLA_CLOCKS_STARTED,
            "SLA clocks started, by clock.",
            Seed::Each("clock", names::SLA_CLOCKS.to_vec()),
        ),
        counter(
            names::SLA_OUTCOMES,
            "Final SLA outcomes (exactly one per clock), by clock and outcome.",
            Seed::Each("clock", names::SLA_CLOCKS.to_vec()),
        ),
        counter(
            names::SLA_BREACHES,
            "SLA breaches emitted at their deadline, by clock.",
            Seed::Each("clock", names::SLA_CLOCKS.to_vec()),
        ),
        counter(
            names::SLA_WARNINGS,
            "SLA warnings emitted (a share of the threshold elapsed), by clock.",
            Seed::Each("clock", names::SLA_CLOCKS.to_vec()),
        ),
        gauge(
            names::SLA_OPEN_CLOCKS,
            "SLA clocks running now.",
            Unlabeled,
        ),
        // Genesys REST: labelled by route template, known only to each caller.
        counter(
            names::REST_REQUESTS,
            "Genesys REST responses, by route template and status class.",
            Seed::RoutesAndClasses,
        ),
        counter(
            names::REST_RATE_LIMITED,
            "Genesys REST 429 responses, by route template.",
            per_route(),
        ),
        counter(
            names::REST_RETRIES,
            "Genesys REST retries (429, 5xx, transport), by route template.",
            per_route(),
        ),
        counter(
            names::REST_CONFLICT_RETRIES,
            "Writes retried after a 409/412 version conflict.",
            Unlabeled,
        ),
        counter(
            names::REST_SERVER_PAUSES,
            "Pauses of every Genesys REST call asked by the server (429, used-up window), by source.",
            Seed::Each("source", names::SERVER_PAUSE_SOURCES.to_vec()),
        ),
        counter(
            names::REST_SERVER_PAUSES_CLAMPED,
            "Server-asked pauses cut to the maximum (5 min by default), by source.",
            Seed::Each("source", names::SERVER_PAUSE_SOURCES.to_vec()),
        ),
        // Token.
        counter(
            names::TOKEN_REFRESHES,
            "OAuth client-credentials tokens obtained.",
            Unlabeled,
        ),
        counter(
            names::TOKEN_REFRESH_FAILURES,
            "Failed OAuth token requests.",
            Unlabeled,
        ),
        // Cluster worker role.
        gauge(
            names::CLUSTER_PARTITIONS_OWNED,
            "Partitions this worker owns now (0 outside the cluster worker role).",
            Unlabeled,
        ),
        counter(
            names::CLUSTER_LEASE_EVENTS_TOTAL,
            "Partition lease events of this worker (acquired, lost, renewed, renewal_failed, taken_over, released, kv_failure).",
            Seed::Each("event", names::CLUSTER_LEASE_EVENTS.to_vec()),
        ),
        counter(
            names::CLUSTER_FENCES,
            "Conversation write fences asked before a write-back (held, conflict, kv_failure).",
            Seed::Each("outcome", names::CLUSTER_FENCE_OUTCOMES.to_vec()),
        ),
        counter(
            names::CLUSTER_SLA_KV,
            "SLA clock sets saved to or loaded from the cluster's KV bucket (saved, loaded, conflict, kv_failure).",
            Seed::Each("outcome", names::CLUSTER_SLA_KV_OUTCOMES.to_vec()),
        ),
        // Process.
        counter(
            names::PANICS,
            "Panics on any thread (the panic hook).",
            Unlabeled,
        ),
    ]
}

/// Describes every family to the installed recorder and creates the series known in
/// advance. Seeds use `increment(0)`, never `set`/`absolute`, so a value recorded before
/// the seed is kept.
pub(super) fn describe_and_seed() {
    for family in families() {
        match family.kind {
            Kind::Counter => metrics::describe_counter!(family.name, family.help),
            Kind::Gauge => metrics::describe_gauge!(family.name, family.help),
            Kind::Histogram => {
                metrics::describe_histogram!(family.name, family.help);
                continue;
            }
        }
        match (&family.seed, family.kind) {
            (Seed::Unknown, _) => metrics::gauge!(family.name).set(f64::NAN),
            (Seed::RoutesAndClasses, _) => {
                for route in names::GENESYS_ROUTES {
                    for class in names::STATUS_CLASSES {
                        metrics::counter!(family.name, "route" => *route, "class" => *class)
                            .increment(0);
                    }
                }
            }
            (Seed::Unlabeled, Kind::Counter) => metrics::counter!(family.name).increment(0),
            (Seed::Unlabeled, Kind::Gauge) => metrics::gauge!(family.name).increment(0.0),
            (Seed::Each(key, values), Kind::Counter) => {
                for value in values {
                    metrics::counter!(family.name, *key => *value).increment(0);
                }
            }
            (Seed::Each(key, values), Kind::Gauge) => {
                for value in values {
                    metrics::gauge!(family.name, *key => *value).increment(0.0);
                }
            }
            (_, Kind::Histogram) => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// Every metric name in `names.rs`, read from its source so a new constant cannot be
    /// forgotten here.
    fn declared_names() -> Vec<&'static str> {
        include_str!("names.rs")
            .split('"')
            .filter(|piece| piece.starts_with("convoy_"))
            .collect()
    }

    #[test]
    fn every_declared_metric_name_has_a_description() {
        let described: Vec<&str> = families().iter().map(|family| family.name).collect();
        let declared = declared_names();
        assert!(declared.len() >= 30, "{declared:?}");
        for name in declared {
            assert!(
                described.contains(&name),
                "{name} is declared in names.rs but not described in families.rs"
            );
        }
    }

    #[test]
    fn every_family_is_described_once_with_a_help_text() {
        let all = families();
        for (index, family) in all.iter().enumerate() {
            assert!(!family.help.is_empty(), "{}", family.name);
            assert!(
                all.iter()
                    .skip(index + 1)
                    .all(|other| other.name != family.name),
                "{} described twice",
                family.name
            );
        }
    }

    #[test]
    fn counters_end_in_total_and_gauges_do_not() {
        for family in families() {
            assert_eq!(
                family.kind == Kind::Counter,
                family.name.ends_with("_total"),
                "{}",
                family.name
            );
        }
    }

    #[test]
    fn every_family_exists_from_start_up() {
        for family in families() {
            let seeded = match &family.seed {
                Seed::Unknown | Seed::Unlabeled | Seed::RoutesAndClasses => true,
                Seed::Each(_, values) => !values.is_empty(),
            };
            assert!(seeded, "{} has no series before its first use", family.name);
        }
    }
}
