//! Metrics for the whole process: installs the one `metrics` recorder behind `/metrics`,
//! describes every family Convoy exports so it is visible before its first occurrence, and
//! gives every actor the same way to count its mailbox traffic ([`ActorMetrics`]).
//!
//! Metric names and label keys live in [`names`]. Nothing here may label a series with a
//! value that grows with traffic (a conversation, participant or message id): every label
//! value is an actor type, a reason, a frame kind, a route template or a status class.

mod families;
pub mod names;
pub mod sample;

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// How often the recorder's upkeep runs. Without its built-in HTTP listener (disabled, see
/// `deps.md`) nothing else drains histogram buckets, so they would grow between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Buckets of every histogram: seconds from 1 ms to 1 min, and counts up to 1 000 (batch
/// and group sizes) share one ladder.
const HISTOGRAM_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    100.0, 250.0, 500.0, 1000.0,
];

/// Why metrics could not be installed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TelemetryError {
    /// Something else (a test's debugging recorder, another library) installed the global
    /// `metrics` recorder first; there can be only one per process.
    #[error("another metrics recorder is already installed in this process: {detail}")]
    RecorderTaken { detail: String },
    #[error("cannot start the metrics upkeep thread: {detail}")]
    UpkeepThread { detail: String },
}

/// The process-wide Prometheus recorder. Cheap to clone; every clone renders the same
/// registry.
#[derive(Clone)]
pub struct Telemetry {
    handle: PrometheusHandle,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

/// The `metrics` facade accepts one global recorder per process, and every test in a
/// binary shares the process: the first `install` wins and later calls get the same
/// handle (or the same error).
static INSTALLED: OnceLock<Result<Telemetry, TelemetryError>> = OnceLock::new();

impl Telemetry {
    /// Installs the Prometheus recorder (once per process), describes every metric family
    /// and starts its upkeep. Safe to call from `main` and from any number of tests.
    pub fn install() -> Result<Telemetry, TelemetryError> {
        INSTALLED.get_or_init(install_once).clone()
    }

    /// The Prometheus text exposition of every series recorded so far.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}

fn install_once() -> Result<Telemetry, TelemetryError> {
    let handle = PrometheusBuilder::new()
        .set_buckets(HISTOGRAM_BUCKETS)
        .map_err(|error| TelemetryError::RecorderTaken {
            detail: error.to_string(),
        })?
        .install_recorder()
        .map_err(|error| TelemetryError::RecorderTaken {
            detail: error.to_string(),
        })?;
    families::describe_and_seed();
    // A plain thread rather than an actix timer: the recorder outlives any System (tests
    // start several), and upkeep is a few microseconds of lock-free work.
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("convoy-metrics-upkeep".to_owned())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_EVERY);
            upkeep.run_upkeep();
        })
        .map_err(|error| TelemetryError::UpkeepThread {
            detail: error.to_string(),
        })?;
    Ok(Telemetry { handle })
}

/// What every actor counts about its mailbox, by actor type (`names::ACTOR_TYPES`).
///
/// actix has no queue-length API, so the queue depth gauge is kept as `sent − handled`:
/// `sent` raises it, `handled` lowers it. A message lost with an actor that died before
/// handling it stays in the depth; the restart and panic counters explain that drift.
pub struct ActorMetrics;

impl ActorMetrics {
    /// A message was put into `actor`'s mailbox (`send`, `try_send` that succeeded, or
    /// `do_send`).
    pub fn sent(actor: &'static str) {
        metrics::counter!(names::ACTOR_MESSAGES_SENT, "actor" => actor).increment(1);
        metrics::gauge!(names::ACTOR_QUEUE_DEPTH, "actor" => actor).increment(1.0);
    }

    /// `actor` finished handling one message, successfully or not.
    pub fn handled(actor: &'static str) {
        metrics::counter!(names::ACTOR_MESSAGES_HANDLED, "actor" => actor).increment(1);
        metrics::gauge!(names::ACTOR_QUEUE_DEPTH, "actor" => actor).decrement(1.0);
    }

    /// A message counted as [`Self::sent`] never reached `actor`'s mailbox (closed): it will
    /// never be handled, so it leaves the queue depth.
    pub fn undelivered(actor: &'static str) {
        metrics::gauge!(names::ACTOR_QUEUE_DEPTH, "actor" => actor).decrement(1.0);
    }

    /// `actor`'s handler returned an error (count `handled` as well).
    pub fn handler_error(actor: &'static str) {
        metrics::counter!(names::ACTOR_HANDLER_ERRORS, "actor" => actor).increment(1);
    }

    /// A `send` to `actor` did not get into its mailbox (or get an answer) in time.
    pub fn send_timeout(actor: &'static str) {
        metrics::counter!(names::ACTOR_SEND_TIMEOUTS, "actor" => actor).increment(1);
    }

    /// `actor` was restarted by its `Supervisor` (see `crate::supervision`).
    pub fn restarted(actor: &'static str) {
        metrics::counter!(names::ACTOR_RESTARTS, "actor" => actor).increment(1);
    }

    /// `actor` died unwinding from a panic (see `crate::supervision::PanicGuard`).
    pub fn panicked(actor: &'static str) {
        metrics::counter!(names::ACTOR_PANICS, "actor" => actor).increment(1);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn value(telemetry: &Telemetry, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        sample::value(&telemetry.render(), name, labels)
    }

    #[test]
    fn install_is_idempotent_and_every_install_renders_the_same_registry() {
        let first = Telemetry::install().unwrap();
        let second = Telemetry::install().unwrap();
        metrics::counter!(names::ACTOR_HANDLER_ERRORS, "actor" => "test_idempotent").increment(2);
        assert_eq!(
            value(
                &first,
                names::ACTOR_HANDLER_ERRORS,
                &[("actor", "test_idempotent")]
            ),
            Some(2.0)
        );
        assert_eq!(
            value(
                &second,
                names::ACTOR_HANDLER_ERRORS,
                &[("actor", "test_idempotent")]
            ),
            Some(2.0)
        );
    }

    #[test]
    fn families_with_known_label_values_are_exported_at_zero_before_first_use() {
        let telemetry = Telemetry::install().unwrap();
        let text = telemetry.render();
        for actor in names::ACTOR_TYPES {
            for family in [
                names::ACTOR_MESSAGES_SENT,
                names::ACTOR_MESSAGES_HANDLED,
                names::ACTOR_HANDLER_ERRORS,
                names::ACTOR_RESTARTS,
                names::ACTOR_PANICS,
                names::ACTOR_SEND_TIMEOUTS,
                names::ACTOR_QUEUE_DEPTH,
            ] {
                assert!(
                    sample::value(&text, family, &[("actor", actor)]).is_some(),
                    "{family}{{actor={actor}}} missing from:\n{text}"
                );
            }
        }
        for reason in names::RECONNECT_REASONS {
            assert!(
                sample::value(&text, names::STREAM_RECONNECTS, &[("reason", reason)]).is_some()
            );
        }
        assert!(sample::value(&text, names::STREAM_FRAMES, &[("kind", "snapshot")]).is_some());
        assert!(sample::value(&text, names::STREAM_FRAMES, &[("kind", "malformed")]).is_some());
        assert!(sample::value(&text, names::CONVERSATIONS_STARTED, &[]).is_some());
        assert!(text.contains(&format!("# HELP {} ", names::ACTOR_RESTARTS)));
        assert!(text.contains(&format!("# TYPE {} counter", names::ACTOR_RESTARTS)));
        assert!(text.contains(&format!("# TYPE {} gauge", names::CONVERSATIONS_LIVE)));
    }

    #[test]
    fn a_message_that_never_reached_the_mailbox_leaves_the_queue_depth() {
        let telemetry = Telemetry::install().unwrap();
        let actor = "test_undelivered";
        ActorMetrics::sent(actor);
        ActorMetrics::sent(actor);
        ActorMetrics::handled(actor);
        // The second send found the mailbox closed.
        ActorMetrics::undelivered(actor);
        let labels = [("actor", actor)];
        assert_eq!(
            value(&telemetry, names::ACTOR_QUEUE_DEPTH, &labels),
            Some(0.0)
        );
    }

    #[test]
    fn queue_depth_is_sent_minus_handled() {
        let telemetry = Telemetry::install().unwrap();
        let actor = "test_queue_depth";
        for _ in 0..5 {
            ActorMetrics::sent(actor);
        }
        for _ in 0..3 {
            ActorMetrics::handled(actor);
        }
        ActorMetrics::handler_error(actor);
        ActorMetrics::send_timeout(actor);
        let labels = [("actor", actor)];
        assert_eq!(
            value(&telemetry, names::ACTOR_MESSAGES_SENT, &labels),
            Some(5.0)
        );
        assert_eq!(
            value(&telemetry, names::ACTOR_MESSAGES_HANDLED, &labels),
            Some(3.0)
        );
        assert_eq!(
            value(&telemetry, names::ACTOR_QUEUE_DEPTH, &labels),
            Some(2.0)
        );
        assert_eq!(
            value(&telemetry, names::ACTOR_HANDLER_ERRORS, &labels),
            Some(1.0)
        );
        assert_eq!(
            value(&telemetry, names::ACTOR_SEND_TIMEOUTS, &labels),
            Some(1.0)
        );
    }
}
