//! The one token bucket all Genesys REST calls go through (API.md §7, ARCHITECTURE.md §4).
//!
//! Genesys limits a client-credentials token to 300 requests per minute by default, with
//! lower per-endpoint limits reported in `inin-ratelimit-*` headers, and answers 429 with
//! `Retry-After` when a limit is hit. One shared bucket keeps the whole daemon under the
//! configured rate; server feedback tightens it:
//!
//! - a 429 pauses every caller: `Retry-After` first, then `inin-ratelimit-reset`, then a
//!   backoff starting at 3 s ([`TokenBucket::throttled`]);
//! - headers saying the server's window is used up pause until it resets
//!   ([`TokenBucket::observe_headers`]);
//! - low-priority work (reconciliation re-reads) leaves a reserve of tokens to live writes,
//!   so a catch-up sweep after a gap never delays the writes of conversations happening
//!   now ([`TokenBucket::try_acquire_low_priority`]).
//!
//! Owns the arithmetic only: never sleeps, never reads the clock. Time is a monotonic
//! offset (`Duration` since an arbitrary origin the shell picks, e.g. its start `Instant`),
//! so a wall-clock step neither floods nor stalls Genesys. Integer arithmetic throughout:
//! no float drift over a long-running daemon.

use std::time::Duration;

/// The fallback pause after a 429 that named no wait: 3 s, doubling per consecutive 429.
pub const THROTTLE_BACKOFF_START: Duration = Duration::from_secs(3);
/// The fallback pause never exceeds this.
pub const THROTTLE_BACKOFF_MAX: Duration = Duration::from_secs(60);

/// No token now; try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Wait(pub Duration);

/// A token bucket refilled at `per_minute`, holding at most `burst` tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBucket {
    /// Time to earn one token: a minute divided by the rate.
    interval: Duration,
    burst: u32,
    /// Tokens low-priority callers must leave in the bucket.
    low_priority_reserve: u32,
    tokens: u32,
    /// Tokens are earned in whole `interval`s counted from here. `None` until first use,
    /// so the bucket needs no clock to be built and starts full.
    refilled_at: Option<Duration>,
    paused_until: Option<Duration>,
    consecutive_throttles: u32,
}

impl TokenBucket {
    /// A full bucket. `per_minute` and `burst` of 0 are raised to 1. Low-priority callers
    /// leave a quarter of the burst to live writes by default (none when `burst` < 4;
    /// see [`Self::with_low_priority_reserve`]).
    pub fn new(per_minute: u32, burst: u32) -> Self {
        let per_minute = per_minute.max(1);
        let burst = burst.max(1);
        TokenBucket {
            interval: Duration::from_secs(60) / per_minute,
            burst,
            low_priority_reserve: burst / 4,
            tokens: burst,
            refilled_at: None,
            paused_until: None,
            consecutive_throttles: 0,
        }
    }

    /// Sets how many tokens low-priority callers leave for live ones; at most `burst - 1`,
    /// so low-priority work can still make progress when live traffic is quiet.
    pub fn with_low_priority_reserve(mut self, reserve: u32) -> Self {
        self.low_priority_reserve = reserve.min(self.burst - 1);
        self
    }

    pub fn burst(&self) -> u32 {
        self.burst
    }

    pub fn low_priority_reserve(&self) -> u32 {
        self.low_priority_reserve
    }

    /// Tokens a caller could take at `now` (ignoring a pause).
    pub fn available(&self, now: Duration) -> u32 {
        self.refilled(now).0
    }

    /// When all callers are paused, if they are at `now`.
    pub fn paused_until(&self, now: Duration) -> Option<Duration> {
        self.paused_until.filter(|until| *until > now)
    }

    /// Takes a token for a live request (conversation writes, rebuilds).
    pub fn try_acquire(&mut self, now: Duration) -> Result<(), Wait> {
        self.acquire_leaving(0, now)
    }

    /// Takes a token for background work (reconciliation), only if `low_priority_reserve`
    /// tokens remain afterwards for live requests.
    pub fn try_acquire_low_priority(&mut self, now: Duration) -> Result<(), Wait> {
        self.acquire_leaving(self.low_priority_reserve, now)
    }

    /// Pauses every caller until `until` (monotonic). Never shortens an existing pause.
    /// The bucket restarts empty with one token at `until`, so the end of a pause is not a
    /// burst that trips the limit again.
    pub fn pause_until(&mut self, until: Duration) {
        if self.paused_until.is_some_and(|current| current >= until) {
            return;
        }
        self.paused_until = Some(until);
        self.tokens = 0;
        self.refilled_at = Some(until.saturating_sub(self.interval));
    }

    /// A 429 arrived: pause everyone for `Retry-After`, else `inin-ratelimit-reset`, else
    /// the fallback backoff (3 s, doubling per consecutive 429, at most 60 s). Returns the
    /// pause chosen.
    pub fn throttled(
        &mut self,
        retry_after: Option<Duration>,
        ratelimit_reset: Option<Duration>,
        now: Duration,
    ) -> Duration {
        let fallback = THROTTLE_BACKOFF_START
            .saturating_mul(
                1u32.checked_shl(self.consecutive_throttles)
                    .unwrap_or(u32::MAX),
            )
            .min(THROTTLE_BACKOFF_MAX);
        let pause = retry_after.or(ratelimit_reset).unwrap_or(fallback);
        self.consecutive_throttles = self.consecutive_throttles.saturating_add(1);
        self.pause_until(now.saturating_add(pause));
        pause
    }

    /// A response that was not a 429: the fallback backoff starts over.
    pub fn not_throttled(&mut self) {
        self.consecutive_throttles = 0;
    }

    /// Reads `inin-ratelimit-count`, `-allowed` and `-reset` (seconds until the server's
    /// window resets) from any response. A used-up window pauses until the reset; a nearly
    /// used-up one caps the local tokens at what the server still allows, so a burst cannot
    /// overrun it.
    pub fn observe_headers(
        &mut self,
        count: Option<u32>,
        allowed: Option<u32>,
        reset: Option<Duration>,
        now: Duration,
    ) {
        let (Some(count), Some(allowed)) = (count, allowed) else {
            return;
        };
        let remaining = allowed.saturating_sub(count);
        if remaining == 0 {
            if let Some(reset) = reset {
                self.pause_until(now.saturating_add(reset));
            }
            return;
        }
        let (tokens, refilled_at) = self.refilled(now);
        self.tokens = tokens.min(remaining);
        self.refilled_at = Some(refilled_at);
    }

    fn acquire_leaving(&mut self, reserve: u32, now: Duration) -> Result<(), Wait> {
        if let Some(until) = self.paused_until(now) {
            return Err(Wait(until - now));
        }
        let (tokens, refilled_at) = self.refilled(now);
        self.tokens = tokens;
        self.refilled_at = Some(refilled_at);
        if tokens > reserve {
            self.tokens -= 1;
            return Ok(());
        }
        // Tokens still to earn before one can be taken, counted from the refill anchor.
        let missing = reserve + 1 - tokens;
        let ready_at = refilled_at.saturating_add(self.interval.saturating_mul(missing));
        Err(Wait(ready_at.saturating_sub(now)))
    }

    /// Tokens and refill anchor at `now`, without changing the bucket.
    fn refilled(&self, now: Duration) -> (u32, Duration) {
        let Some(anchor) = self.refilled_at else {
            return (self.tokens, now);
        };
        if now <= anchor {
            return (self.tokens, anchor);
        }
        if self.tokens >= self.burst {
            // A full bucket does not bank time: the next token is earned from now.
            return (self.burst, now);
        }
        let earned = (now - anchor).as_nanos() / self.interval.as_nanos().max(1);
        let earned = u32::try_from(earned).unwrap_or(u32::MAX);
        let tokens = self.tokens.saturating_add(earned).min(self.burst);
        if tokens >= self.burst {
            (self.burst, now)
        } else {
            // Keep the fraction of a token already earned.
            (
                tokens,
                anchor.saturating_add(self.interval.saturating_mul(earned)),
            )
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_new_bucket_allows_a_burst_then_waits_one_interval() {
        // 300/min: one token every 200 ms.
        let mut bucket = TokenBucket::new(300, 3);
        for _ in 0..3 {
            assert_eq!(bucket.try_acquire(secs(10)), Ok(()));
        }
        assert_eq!(bucket.try_acquire(secs(10)), Err(Wait(ms(200))));
        assert_eq!(bucket.try_acquire(secs(10) + ms(150)), Err(Wait(ms(50))));
        assert_eq!(bucket.try_acquire(secs(10) + ms(200)), Ok(()));
    }

    #[test]
    fn a_partly_earned_token_is_not_lost_between_calls() {
        let mut bucket = TokenBucket::new(300, 1);
        bucket.try_acquire(secs(0)).unwrap();
        assert!(bucket.try_acquire(ms(120)).is_err());
        // 80 ms more completes the token that started earning at 0.
        assert_eq!(bucket.try_acquire(ms(200)), Ok(()));
    }

    #[test]
    fn an_idle_bucket_refills_only_up_to_the_burst() {
        let mut bucket = TokenBucket::new(60, 2);
        bucket.try_acquire(secs(0)).unwrap();
        bucket.try_acquire(secs(0)).unwrap();
        assert_eq!(bucket.available(secs(3_600)), 2);
        bucket.try_acquire(secs(3_600)).unwrap();
        bucket.try_acquire(secs(3_600)).unwrap();
        assert_eq!(bucket.try_acquire(secs(3_600)), Err(Wait(secs(1))));
    }

    #[test]
    fn the_long_run_rate_is_the_configured_rate() {
        let mut bucket = TokenBucket::new(300, 10);
        let granted = (0..60_000u64)
            .filter(|t| bucket.try_acquire(ms(*t)).is_ok())
            .count();
        // The initial burst plus one token per 200 ms; the 300th lands at 60 s, just outside.
        assert_eq!(granted, 10 + 299);
    }

    #[test]
    fn low_priority_work_leaves_the_reserve_to_live_writes() {
        let mut bucket = TokenBucket::new(60, 8).with_low_priority_reserve(2);
        for _ in 0..6 {
            assert_eq!(bucket.try_acquire_low_priority(secs(0)), Ok(()));
        }
        // Two tokens left: reconciliation must wait for a third, live writes go ahead.
        assert_eq!(bucket.try_acquire_low_priority(secs(0)), Err(Wait(secs(1))));
        assert_eq!(bucket.try_acquire(secs(0)), Ok(()));
        assert_eq!(bucket.try_acquire(secs(0)), Ok(()));
        assert_eq!(bucket.try_acquire_low_priority(secs(0)), Err(Wait(secs(3))));
    }

    #[test]
    fn the_reserve_never_blocks_low_priority_work_for_good() {
        let bucket = TokenBucket::new(60, 4).with_low_priority_reserve(10);
        assert_eq!(bucket.low_priority_reserve(), 3);
    }

    #[test]
    fn a_pause_stops_every_caller_and_restarts_with_one_token() {
        let mut bucket = TokenBucket::new(300, 10);
        bucket.pause_until(secs(30));
        assert_eq!(bucket.try_acquire(secs(25)), Err(Wait(secs(5))));
        assert_eq!(
            bucket.try_acquire_low_priority(secs(25)),
            Err(Wait(secs(5)))
        );
        assert_eq!(bucket.try_acquire(secs(30)), Ok(()));
        assert_eq!(bucket.try_acquire(secs(30)), Err(Wait(ms(200))));
    }

    #[test]
    fn a_pause_is_never_shortened() {
        let mut bucket = TokenBucket::new(300, 10);
        bucket.pause_until(secs(30));
        bucket.pause_until(secs(20));
        assert_eq!(bucket.paused_until(secs(0)), Some(secs(30)));
    }

    #[test]
    fn on_429_retry_after_wins_then_the_reset_header_then_the_backoff() {
        let mut bucket = TokenBucket::new(300, 10);
        assert_eq!(
            bucket.throttled(Some(secs(7)), Some(secs(40)), secs(0)),
            secs(7)
        );
        assert_eq!(bucket.throttled(None, Some(secs(40)), secs(0)), secs(40));
        assert_eq!(bucket.paused_until(secs(0)), Some(secs(40)));
        bucket.not_throttled();
        let fallbacks: Vec<u64> = (0..7)
            .map(|_| bucket.throttled(None, None, secs(0)).as_secs())
            .collect();
        assert_eq!(fallbacks, [3, 6, 12, 24, 48, 60, 60]);
    }

    #[test]
    fn a_used_up_server_window_pauses_until_its_reset() {
        let mut bucket = TokenBucket::new(300, 10);
        bucket.observe_headers(Some(180), Some(180), Some(secs(12)), secs(100));
        assert_eq!(bucket.try_acquire(secs(101)), Err(Wait(secs(11))));
    }

    #[test]
    fn a_nearly_used_up_server_window_caps_the_burst() {
        let mut bucket = TokenBucket::new(300, 10);
        bucket.observe_headers(Some(178), Some(180), Some(secs(12)), secs(100));
        assert_eq!(bucket.available(secs(100)), 2);
        bucket.observe_headers(Some(1), Some(180), Some(secs(59)), secs(100));
        assert_eq!(bucket.available(secs(100)), 2, "headers never add tokens");
        bucket.observe_headers(None, Some(180), None, secs(100));
        assert_eq!(bucket.available(secs(100)), 2);
    }

    proptest! {
        #[test]
        fn never_more_than_burst_plus_rate_in_any_window(
            per_minute in 1u32..600,
            burst in 1u32..20,
            steps in prop::collection::vec(0u64..2_000, 1..300),
        ) {
            let mut bucket = TokenBucket::new(per_minute, burst);
            let interval = Duration::from_secs(60) / per_minute;
            let mut now = Duration::ZERO;
            let mut granted = 0u128;
            for step in steps {
                now += ms(step);
                if bucket.try_acquire(now).is_ok() {
                    granted += 1;
                }
            }
            let earned = now.as_nanos() / interval.as_nanos();
            prop_assert!(granted <= u128::from(burst) + earned);
        }

        #[test]
        fn a_wait_is_honest(
            per_minute in 1u32..600,
            burst in 1u32..5,
            reserve in 0u32..5,
            start_ms in 0u64..10_000,
        ) {
            let mut bucket = TokenBucket::new(per_minute, burst).with_low_priority_reserve(reserve);
            let start = ms(start_ms);
            while bucket.try_acquire(start).is_ok() {}
            let Err(Wait(wait)) = bucket.try_acquire_low_priority(start) else {
                return Err(TestCaseError::fail("an empty bucket granted a token"));
            };
            prop_assert!(bucket.try_acquire_low_priority(start + wait).is_ok());
        }
    }
}
