//! The cluster worker role's metrics (names and help in `telemetry::names`/`families`).

use crate::telemetry::names;

fn lease_event(event: &'static str) {
    metrics::counter!(names::CLUSTER_LEASE_EVENTS_TOTAL, "event" => event).increment(1);
}

pub fn partitions_owned(count: usize) {
    metrics::gauge!(names::CLUSTER_PARTITIONS_OWNED).set(count as f64);
}

pub fn partition_acquired() {
    lease_event("acquired");
}

pub fn partition_lost() {
    lease_event("lost");
}

pub fn lease_renewed() {
    lease_event("renewed");
}

pub fn lease_renewal_failed() {
    lease_event("renewal_failed");
}

/// A lease another worker held (expired) or released, now ours: a handover.
pub fn lease_taken_over() {
    lease_event("taken_over");
}

pub fn lease_released() {
    lease_event("released");
}

pub fn lease_failure() {
    lease_event("kv_failure");
}

pub fn fence(outcome: &'static str) {
    metrics::counter!(names::CLUSTER_FENCES, "outcome" => outcome).increment(1);
}

pub fn sla_kv(outcome: &'static str) {
    metrics::counter!(names::CLUSTER_SLA_KV, "outcome" => outcome).increment(1);
}
