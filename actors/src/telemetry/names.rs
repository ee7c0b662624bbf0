//! Every metric name and label key Convoy exports, in one place. Labels stay
//! low-cardinality: actor type, outcome, frame kind, route template, status class —
//! never a conversation, participant or message id.

// Per actor type (label `actor`: token, stream, router, conversation, sla, crm, analytics).
pub const ACTOR_MESSAGES_SENT: &str = "convoy_actor_messages_sent_total";
pub const ACTOR_MESSAGES_HANDLED: &str = "convoy_actor_messages_handled_total";
pub const ACTOR_HANDLER_ERRORS: &str = "convoy_actor_handler_errors_total";
pub const ACTOR_RESTARTS: &str = "convoy_actor_restarts_total";
pub const ACTOR_PANICS: &str = "convoy_actor_panics_total";
pub const ACTOR_SEND_TIMEOUTS: &str = "convoy_actor_mailbox_send_timeouts_total";
/// Gauge: sent − handled, per actor type (actix has no queue-length API).
pub const ACTOR_QUEUE_DEPTH: &str = "convoy_actor_queue_depth";

// Stream.
pub const STREAM_CONNECTS: &str = "convoy_stream_connects_total";
/// Label `reason`: one of [`RECONNECT_REASONS`] (`convoy_actors::stream::GapReason`).
pub const STREAM_RECONNECTS: &str = "convoy_stream_reconnects_total";
/// Label `kind`: `convoy::parse::FrameKind::as_str()` or `malformed`.
pub const STREAM_FRAMES: &str = "convoy_stream_frames_total";
/// Snapshot frames (also counted in [`STREAM_FRAMES`]) whose body was byte-identical to
/// one the socket just read (the same change on another topic): not parsed or routed.
pub const STREAM_DUPLICATE_SNAPSHOTS: &str = "convoy_stream_duplicate_snapshots_total";
/// Label `reason`: socket_closing, channel_expiry, token_expiry.
pub const STREAM_ROTATIONS: &str = "convoy_stream_rotations_total";
/// Gauge: seconds since the last heartbeat frame.
pub const STREAM_HEARTBEAT_AGE: &str = "convoy_stream_heartbeat_age_seconds";
/// Gauge: topics rejected by the last subscription.
pub const STREAM_REJECTED_TOPICS: &str = "convoy_stream_rejected_topics";
pub const STREAM_RECONCILIATIONS: &str = "convoy_stream_reconciliations_total";
/// Label `reason`: at_capacity, timeout, send_timeout (each one's conversation is re-read
/// through REST), router_gone, shutting_down.
pub const STREAM_ROUTE_DROPPED: &str = "convoy_stream_route_dropped_total";
/// Messages refused by the reassembly caps (`stream.max_frame_bytes`, fragment count);
/// each one ends its socket. Label `reason`: too_large, too_many_fragments, …
pub const STREAM_OVERSIZED_FRAMES: &str = "convoy_stream_refused_messages_total";
/// Gauge: `v2.conversations.{id}.transcription` topics subscribed (live voice calls).
pub const STREAM_TRANSCRIPTION_TOPICS: &str = "convoy_stream_transcription_topics";
/// Gauge: channels with a connected socket.
pub const STREAM_CHANNELS_CONNECTED: &str = "convoy_stream_channels_connected";
/// `--record` capture file open or write failures.
pub const STREAM_RECORD_ERRORS: &str = "convoy_stream_record_errors_total";

// Cluster (`cluster.enabled = true`).
/// Payloads published to the frames stream. Labels `kind` (frame, reread) and `outcome`
/// (stored, duplicate: JetStream's duplicate window dropped it, gave_up: reported and
/// re-read).
pub const CLUSTER_PUBLISHED: &str = "convoy_cluster_published_total";
/// Publish attempts that failed and were retried. Label `kind`.
pub const CLUSTER_PUBLISH_RETRIES: &str = "convoy_cluster_publish_retries_total";
/// Gauge: conversations the ingest re-reads after a gap.
pub const CLUSTER_INGEST_TRACKED: &str = "convoy_cluster_ingest_tracked_conversations";
/// Messages a worker finished with. Label `outcome`: acked (applied and committed),
/// uncommitted and refused (given back for redelivery), ignored, malformed (dropped).
pub const CLUSTER_CONSUMED: &str = "convoy_cluster_consumed_total";
/// Messages delivered more than once (redeliveries after a nak, a timeout or a handover).
pub const CLUSTER_REDELIVERIES: &str = "convoy_cluster_redeliveries_total";
/// Gauge: messages waiting in this worker's consumers (JetStream's pending count).
pub const CLUSTER_CONSUMER_LAG: &str = "convoy_cluster_consumer_lag";
/// Gauge: partitions with a running consumer on this worker.
pub const CLUSTER_PARTITIONS_CONSUMING: &str = "convoy_cluster_partitions_consuming";

// Conversations.
pub const CONVERSATIONS_STARTED: &str = "convoy_conversations_started_total";
/// Label `reason`: finished, idle, capacity, crashed.
pub const CONVERSATIONS_EVICTED: &str = "convoy_conversations_evicted_total";
/// Gauge.
pub const CONVERSATIONS_LIVE: &str = "convoy_conversations_live";
pub const CONVERSATION_STALE_INPUTS: &str = "convoy_conversation_stale_inputs_total";
pub const CONVERSATION_TOMBSTONED_EVENTS: &str = "convoy_conversation_tombstoned_events_total";
/// Echo snapshots (only Convoy's own attributes changed): applied, cost nothing else.
pub const CONVERSATION_ECHOES: &str = "convoy_conversation_echoes_total";
/// Gauge: conversations waiting in the reconciliation set (background re-reads owed).
pub const REREADS_OWED: &str = "convoy_conversation_rereads_owed";
/// Label `outcome`: ok, failed.
pub const REREADS: &str = "convoy_conversation_rereads_total";

// Attribute write-back.
/// Gauge: participant writes owed now (at most one per participant).
pub const WRITE_BACK_OWED: &str = "convoy_write_back_owed";
/// Gauge: conversations owing at least one write.
pub const WRITE_BACK_CONVERSATIONS: &str = "convoy_write_back_conversations";
/// Label `outcome`: landed, conflict, transient, refused.
pub const WRITE_BACK_WRITES: &str = "convoy_write_back_writes_total";
/// Lifecycle transitions of participants (what a write per transition would have cost).
pub const PARTICIPANT_TRANSITIONS: &str = "convoy_participant_transitions_total";

// Outbox (the redb file: records, summaries and SLA clocks waiting for the CRM).
/// Gauge: records accepted and not yet acknowledged by the CRM nor dead-lettered.
pub const OUTBOX_PENDING: &str = "convoy_outbox_pending_records";
/// Gauge: seconds the oldest pending record has waited.
pub const OUTBOX_OLDEST_AGE: &str = "convoy_outbox_oldest_pending_age_seconds";
/// Gauge: 1 while the pipeline refuses frames (outbox full, commits failing or behind).
pub const OUTBOX_BACKPRESSURE: &str = "convoy_outbox_backpressure";
pub const OUTBOX_COMMIT_FAILURES: &str = "convoy_outbox_commit_failures_total";
/// Histogram: seconds per group commit (one fsync).
pub const OUTBOX_COMMIT_SECONDS: &str = "convoy_outbox_commit_seconds";
/// Histogram: handovers per group commit.
pub const OUTBOX_GROUP_SIZE: &str = "convoy_outbox_group_size";

// CRM. Label `kind`: the record kind (participant.transition, message.status, sla.*).
pub const CRM_RECORDS_ACCEPTED: &str = "convoy_crm_records_accepted_total";
pub const CRM_RECORDS_SENT: &str = "convoy_crm_records_sent_total";
pub const CRM_RECORDS_ACKNOWLEDGED: &str = "convoy_crm_records_acknowledged_total";
pub const CRM_RECORDS_RETRIED: &str = "convoy_crm_records_retried_total";
pub const CRM_RECORDS_DEAD_LETTERED: &str = "convoy_crm_records_dead_lettered_total";
/// Histogram: records per batch sent.
pub const CRM_BATCH_RECORDS: &str = "convoy_crm_batch_records";
/// Histogram: seconds per CRM request. Label `outcome`: ok, retry, dead_letter, error.
pub const CRM_REQUEST_SECONDS: &str = "convoy_crm_request_seconds";
/// Gauge: the adaptive concurrency limit (batches in flight allowed).
pub const CRM_CONCURRENCY_LIMIT: &str = "convoy_crm_concurrency_limit";
/// Gauge: batches in flight.
pub const CRM_BATCHES_IN_FLIGHT: &str = "convoy_crm_batches_in_flight";
/// Label `outcome`: stored, conflict_resolved, failed.
pub const CRM_SUMMARY_UPSERTS: &str = "convoy_crm_summary_upserts_total";
/// Gauge: conversation summaries waiting to be upserted.
pub const CRM_SUMMARIES_PENDING: &str = "convoy_crm_summaries_pending";

// SLA. Label `clock`: answer, first_response, next_response, delivery, read.
pub const SLA_CLOCKS_STARTED: &str = "convoy_sla_clocks_started_total";
/// Labels `clock`, `outcome`.
pub const SLA_OUTCOMES: &str = "convoy_sla_outcomes_total";

// Analytics (QA snapshots).
/// Label `result`: [`SNAPSHOT_RESULTS`].
pub const ANALYTICS_SNAPSHOTS: &str = "convoy_analytics_snapshots_total";
/// Conversation rows written by snapshots.
pub const ANALYTICS_ROWS: &str = "convoy_analytics_snapshot_rows_total";
/// Histogram: seconds one scheduled snapshot took (success or failure).
pub const ANALYTICS_SECONDS: &str = "convoy_analytics_snapshot_seconds";
/// Gauge: reconciliation mismatches of the last scheduled snapshot.
pub const ANALYTICS_MISMATCHES: &str = "convoy_analytics_snapshot_mismatches";
pub const SLA_BREACHES: &str = "convoy_sla_breaches_total";
pub const SLA_WARNINGS: &str = "convoy_sla_warnings_total";
/// Gauge: clocks running now.
pub const SLA_OPEN_CLOCKS: &str = "convoy_sla_open_clocks";

// Genesys REST. Labels `route` (a template such as `GET /api/v2/conversations/{id}`) and
// `class` (2xx, 3xx, 4xx, 5xx, transport).
pub const REST_REQUESTS: &str = "convoy_genesys_requests_total";
pub const REST_RATE_LIMITED: &str = "convoy_genesys_rate_limited_total";
pub const REST_RETRIES: &str = "convoy_genesys_retries_total";
pub const REST_CONFLICT_RETRIES: &str = "convoy_genesys_conflict_retries_total";
/// Label `source`: retry_after, ratelimit_reset, backoff. Every pause of the shared bucket
/// the server asked for (429 or a used-up `inin-ratelimit-*` window).
pub const REST_SERVER_PAUSES: &str = "convoy_genesys_server_pauses_total";
/// Label `source`: the pauses cut to the maximum (`Retry-After` far beyond 5 minutes).
pub const REST_SERVER_PAUSES_CLAMPED: &str = "convoy_genesys_server_pauses_clamped_total";

// Token.
pub const TOKEN_REFRESHES: &str = "convoy_token_refreshes_total";
pub const TOKEN_REFRESH_FAILURES: &str = "convoy_token_refresh_failures_total";

// Process.
/// Every panic on any thread, counted by the panic hook. `ACTOR_PANICS` says which actor
/// died, when a `PanicGuard` saw it.
pub const PANICS: &str = "convoy_panics_total";

// Label values known before the first occurrence. `/metrics` shows these series at zero
// from start-up, so dashboards and alerts see a family (and a rate of 0) before anything
// has happened. Add an actor type here when its actor lands.
pub const ACTOR_TYPES: &[&str] = &[
    "token",
    "stream",
    "router",
    "conversation",
    "writer",
    "sla",
    "crm",
];
pub const SLA_CLOCKS: &[&str] = &[
    "answer",
    "first_response",
    "next_response",
    "delivery",
    "read",
];
pub const SLA_OUTCOME_NAMES: &[&str] = &[
    "compliant",
    "breached",
    "failed",
    "missing_receipt",
    "abandoned",
];
pub const CRM_RECORD_KINDS: &[&str] = &[
    "participant.transition",
    "message.status",
    "sla.warning",
    "sla.breach",
    "sla.outcome",
];
pub const SNAPSHOT_RESULTS: &[&str] = &["taken", "failed"];
pub const SUMMARY_OUTCOMES: &[&str] = &["stored", "conflict_resolved", "failed"];
pub const RECONNECT_REASONS: &[&str] = &[
    "dropped",
    "silence",
    "socket_closing",
    "channel_expiry",
    "token_expiry",
    "error",
    "no_longer_subscribed",
    "closed",
    "channel_gone",
    "token_revoked",
    "system",
    "restart",
];
pub const ROTATION_REASONS: &[&str] = &["socket_closing", "channel_expiry", "token_expiry"];
pub const EVICTION_REASONS: &[&str] = &["finished", "idle", "capacity", "crashed"];
pub const WRITE_OUTCOMES: &[&str] = &["landed", "conflict", "transient", "refused"];
pub const RECONCILE_REASONS: &[&str] = &["startup", "reconnect"];
pub const ROUTE_DROP_REASONS: &[&str] = &[
    "at_capacity",
    "timeout",
    "send_timeout",
    "router_gone",
    "shutting_down",
];
/// Every Genesys REST route template Convoy calls (the `route` label), so the REST
/// families exist from start-up.
pub const GENESYS_ROUTES: &[&str] = &[
    "POST /api/v2/notifications/channels",
    "HEAD /api/v2/notifications/channels/{id}",
    "PUT /api/v2/notifications/channels/{id}/subscriptions",
    "GET /api/v2/conversations/{id}",
    "PATCH /api/v2/conversations/{id}/participants/{id}/attributes",
    "POST /api/v2/analytics/conversations/details/query",
    "GET /api/v2/analytics/conversations/details/jobs/availability",
    "POST /api/v2/analytics/conversations/details/jobs",
    "GET /api/v2/analytics/conversations/details/jobs/{id}",
    "GET /api/v2/analytics/conversations/details/jobs/{id}/results",
    "POST /api/v2/analytics/conversations/aggregates/query",
];
/// The `class` label of `REST_REQUESTS`.
pub const STATUS_CLASSES: &[&str] = &["2xx", "3xx", "4xx", "5xx", "transport"];
pub const SERVER_PAUSE_SOURCES: &[&str] = &["retry_after", "ratelimit_reset", "backoff"];

// Cluster worker role (`actors/src/cluster`): leases, write fences, SLA clocks in KV.
/// Gauge: partitions this worker owns now.
pub const CLUSTER_PARTITIONS_OWNED: &str = "convoy_cluster_partitions_owned";
/// Label `event`: one of [`CLUSTER_LEASE_EVENTS`].
pub const CLUSTER_LEASE_EVENTS_TOTAL: &str = "convoy_cluster_lease_events_total";
/// `acquired`/`lost`: partitions started/stopped; `renewed`/`renewal_failed`: our own
/// leases; `taken_over`: an expired or released lease of another worker claimed;
/// `released`: surplus or shutdown; `kv_failure`: a NATS KV call failed or timed out.
pub const CLUSTER_LEASE_EVENTS: &[&str] = &[
    "acquired",
    "lost",
    "renewed",
    "renewal_failed",
    "taken_over",
    "released",
    "kv_failure",
];
/// Label `outcome`: one of [`CLUSTER_FENCE_OUTCOMES`].
pub const CLUSTER_FENCES: &str = "convoy_cluster_fences_total";
/// `held`: the fence was ours or taken; `conflict`: another worker holds it (no write);
/// `kv_failure`: NATS did not answer (no write).
pub const CLUSTER_FENCE_OUTCOMES: &[&str] = &["held", "conflict", "kv_failure"];
/// Label `outcome`: one of [`CLUSTER_SLA_KV_OUTCOMES`].
pub const CLUSTER_SLA_KV: &str = "convoy_cluster_sla_kv_total";
/// `saved`, `loaded` (clock sets), `conflict` (a newer revision won), `kv_failure`.
pub const CLUSTER_SLA_KV_OUTCOMES: &[&str] = &["saved", "loaded", "conflict", "kv_failure"];
