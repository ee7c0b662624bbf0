//! The per-token request budget (API.md §7): a fixed one-minute window per access token,
//! as Genesys reports it through `inin-ratelimit-count/allowed/reset` and `Retry-After`.
//! Pure: the caller passes `now`; nothing here sleeps or reads a clock.

use chrono::{DateTime, TimeDelta, Utc};

/// What one request did to its token's budget; the shell turns it into headers and, when
/// `allowed` is false, into a 429 ErrorBody.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    pub allowed: bool,
    /// Requests counted in the current window, this one included (`inin-ratelimit-count`).
    pub count: u32,
    /// The budget of the window (`inin-ratelimit-allowed`); 0 means unlimited.
    pub limit: u32,
    /// Whole seconds until the window resets (`inin-ratelimit-reset`), at least 1.
    pub reset_secs: u64,
}

impl RateDecision {
    /// `Retry-After` for a refused request: the wait until the window resets.
    pub fn retry_after_secs(&self) -> u64 {
        self.reset_secs
    }
}

/// A fixed window: the first request after a reset opens a window of `window`; every
/// request inside it counts, refused ones included, so a client hammering through a 429
/// does not get a fresh budget early. Fixed rather than sliding because that is what the
/// `reset` header describes (one instant when the count returns to zero).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateWindow {
    limit: u32,
    window: TimeDelta,
    started: Option<DateTime<Utc>>,
    count: u32,
}

impl RateWindow {
    pub fn new(limit: u32, window: TimeDelta) -> RateWindow {
        RateWindow {
            limit,
            window,
            started: None,
            count: 0,
        }
    }

    /// A requests-per-minute budget.
    pub fn per_minute(limit: u32) -> RateWindow {
        RateWindow::new(limit, TimeDelta::minutes(1))
    }

    /// Counts one request at `now` and says whether it may proceed.
    pub fn hit(&mut self, now: DateTime<Utc>) -> RateDecision {
        let started = match self.started {
            Some(started) if now < started + self.window && now >= started => started,
            // No window yet, the window is over, or the clock went backwards: start afresh.
            _ => {
                self.started = Some(now);
                self.count = 0;
                now
            }
        };
        self.count = self.count.saturating_add(1);
        let remaining = (started + self.window) - now;
        // Round up: "reset in 0 seconds" while the window is still closed would make a
        // well-behaved client retry too early.
        let millis = remaining.num_milliseconds().max(0) as u64;
        let reset_secs = millis.div_ceil(1000).max(1);
        RateDecision {
            allowed: self.limit == 0 || self.count <= self.limit,
            count: self.count,
            limit: self.limit,
            reset_secs,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 4, 14, 0, 0).unwrap()
    }

    #[test]
    fn requests_within_the_budget_are_allowed_and_counted() {
        let mut window = RateWindow::per_minute(3);
        for expected in 1..=3 {
            let decision = window.hit(t0() + TimeDelta::seconds(expected.into()));
            assert!(decision.allowed);
            assert_eq!(decision.count, expected);
            assert_eq!(decision.limit, 3);
        }
    }

    #[test]
    fn the_request_past_the_budget_is_refused_until_the_window_resets() {
        let mut window = RateWindow::per_minute(2);
        window.hit(t0());
        window.hit(t0() + TimeDelta::seconds(10));
        let refused = window.hit(t0() + TimeDelta::milliseconds(20_500));
        assert!(!refused.allowed);
        assert_eq!(refused.count, 3);
        // 39.5 s left in the window: rounded up to 40.
        assert_eq!(refused.retry_after_secs(), 40);

        let still_refused = window.hit(t0() + TimeDelta::seconds(59));
        assert!(!still_refused.allowed);
        assert_eq!(still_refused.reset_secs, 1);

        let fresh = window.hit(t0() + TimeDelta::seconds(60));
        assert!(fresh.allowed);
        assert_eq!(fresh.count, 1);
        assert_eq!(fresh.reset_secs, 60);
    }

    #[test]
    fn a_zero_limit_means_unlimited() {
        let mut window = RateWindow::per_minute(0);
        for _ in 0..1000 {
            assert!(window.hit(t0()).allowed);
        }
    }

    #[test]
    fn a_clock_going_backwards_starts_a_new_window() {
        let mut window = RateWindow::per_minute(1);
        window.hit(t0());
        assert!(!window.hit(t0()).allowed);
        assert!(window.hit(t0() - TimeDelta::seconds(5)).allowed);
    }
}
