//! The one place the shell builds retry delays. The design card names the `backoff` crate;
//! it is unmaintained upstream (RUSTSEC-2025-0012), so every use goes through this module
//! and swapping it for `backon` later touches nothing else.

use std::time::Duration;

use backoff::backoff::Backoff;
use backoff::ExponentialBackoffBuilder;

/// Exponential delays with jitter between `initial` and `max`, for as long as the caller
/// keeps asking (bounding attempts is the caller's decision).
pub struct RetrySchedule {
    inner: backoff::ExponentialBackoff,
}

impl RetrySchedule {
    pub fn new(initial: Duration, max: Duration) -> Self {
        let inner = ExponentialBackoffBuilder::new()
            .with_initial_interval(initial)
            .with_max_interval(max)
            .with_multiplier(2.0)
            .with_randomization_factor(0.3)
            // Unbounded elapsed time: callers bound attempts themselves.
            .with_max_elapsed_time(None)
            .build();
        RetrySchedule { inner }
    }

    /// The next delay; grows until `max`.
    pub fn next_delay(&mut self) -> Duration {
        self.inner.next_backoff().unwrap_or(self.inner.max_interval)
    }

    /// Back to the initial delay after a success.
    pub fn reset(&mut self) {
        self.inner.reset();
    }
}

/// The delay before attempt `failures + 1` of a schedule from `initial` to `max`, for
/// callers that keep only a failure count (one per conversation, not a schedule each).
pub fn nth_delay(initial: Duration, max: Duration, failures: u32) -> Duration {
    let mut schedule = RetrySchedule::new(initial, max);
    let mut delay = schedule.next_delay();
    // The schedule saturates at `max` after a few doublings: bound the loop by that.
    for _ in 0..failures.min(32) {
        delay = schedule.next_delay();
    }
    delay
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_within_bounds() {
        let mut schedule = RetrySchedule::new(Duration::from_millis(100), Duration::from_secs(2));
        let delays: Vec<Duration> = (0..12).map(|_| schedule.next_delay()).collect();
        assert!(delays[0] <= Duration::from_millis(130), "{delays:?}");
        assert!(
            delays.iter().all(|d| *d <= Duration::from_millis(2600)),
            "{delays:?}"
        );
        assert!(delays[8] > delays[0], "{delays:?}");
        schedule.reset();
        assert!(schedule.next_delay() <= Duration::from_millis(130));
    }
}
