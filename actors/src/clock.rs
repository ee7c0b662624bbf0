//! The wall clock of the pipeline actors that stamp or decide on time, swappable for a
//! virtual one: `convoy run` reads the system clock; `convoy replay` moves a virtual clock
//! to the receive times of a recording, so a replay decides exactly as it would have at
//! those instants, whatever the machine's time and speed.
//!
//! Only the instants that reach decisions or output go through it (observation times of
//! re-reads, SLA ticks and settlements, summary revisions); monotonic timers (back-offs,
//! idle sweeps) stay on `Instant`.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};

/// System or virtual time; cheap to clone (clones of a virtual clock share its time).
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// `Utc::now()`.
    #[default]
    System,
    /// Set by its driver; microseconds since the Unix epoch.
    Virtual(Arc<AtomicI64>),
}

impl Clock {
    /// A virtual clock standing at `at`.
    pub fn virtual_at(at: DateTime<Utc>) -> Clock {
        Clock::Virtual(Arc::new(AtomicI64::new(at.timestamp_micros())))
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Virtual(micros) => {
                DateTime::from_timestamp_micros(micros.load(Ordering::SeqCst)).unwrap_or_default()
            }
        }
    }

    pub fn is_virtual(&self) -> bool {
        matches!(self, Clock::Virtual(_))
    }

    /// Moves a virtual clock forward to `at` (never back: a recording's lines may be a
    /// few milliseconds out of order). No effect on the system clock.
    pub fn advance_to(&self, at: DateTime<Utc>) {
        if let Clock::Virtual(micros) = self {
            micros.fetch_max(at.timestamp_micros(), Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_virtual_clock_moves_only_forward_and_is_shared_by_its_clones() {
        let start = DateTime::parse_from_rfc3339("2026-11-24T10:00:00.250Z")
            .unwrap()
            .with_timezone(&Utc);
        let clock = Clock::virtual_at(start);
        let clone = clock.clone();
        clock.advance_to(start + chrono::TimeDelta::seconds(5));
        assert_eq!(clone.now(), start + chrono::TimeDelta::seconds(5));
        clock.advance_to(start);
        assert_eq!(clone.now(), start + chrono::TimeDelta::seconds(5));
        assert!(clock.is_virtual());
        assert!(!Clock::System.is_virtual());
    }
}
