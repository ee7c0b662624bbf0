//! What to do after a Genesys REST response, and how long to wait before trying again.
//!
//! Vector's shape (anchors.md §1.2): a *classification* of the response
//! ([`classify_status`] → [`RetryAction`]) plus a *schedule* ([`Backoff`]), kept apart so
//! each is testable alone. The table follows API.md §7–§8 and ARCHITECTURE.md §5:
//!
//! | status | action |
//! |---|---|
//! | 2xx | [`RetryAction::Successful`] |
//! | 401 | refresh the token, retry once |
//! | 409, 412 | re-read, re-apply, then write again (a conflict is not a transient fault) |
//! | 408, 429, 5xx except 501 | retry; `Retry-After` wins over the backoff |
//! | 501, other 4xx, anything else | do not retry |
//!
//! Owns decisions only: never sleeps, never reads the clock, never draws randomness — the
//! jitter's random number is an argument, so a schedule is reproducible in tests.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// What the caller should do with a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryAction {
    /// 2xx: done.
    Successful,
    /// A transient failure. `after` is the server's `Retry-After` when it sent one; it
    /// wins over the backoff. Otherwise the caller uses its [`Backoff`].
    Retry { after: Option<Duration> },
    /// 409 or 412: the write was based on a stale view. Re-read the resource, re-apply, and
    /// recompute the write; retrying the same request would fail the same way.
    RetryAfterReread,
    /// 401: the token expired or was revoked. Refresh it and retry once; a second 401 is
    /// not transient.
    RefreshTokenAndRetryOnce,
    /// Retrying cannot help.
    DontRetry { reason: &'static str },
}

impl RetryAction {
    /// Low-cardinality label for metrics and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            RetryAction::Successful => "successful",
            RetryAction::Retry { .. } => "retry",
            RetryAction::RetryAfterReread => "reread",
            RetryAction::RefreshTokenAndRetryOnce => "refresh_token",
            RetryAction::DontRetry { .. } => "dont_retry",
        }
    }
}

/// Classifies a response by its status. `retry_after` is the parsed `Retry-After` (see
/// [`parse_retry_after`]); it only matters when the status is retried.
pub fn classify_status(status: u16, retry_after: Option<Duration>) -> RetryAction {
    match status {
        200..=299 => RetryAction::Successful,
        401 => RetryAction::RefreshTokenAndRetryOnce,
        409 | 412 => RetryAction::RetryAfterReread,
        408 | 429 => RetryAction::Retry { after: retry_after },
        // 501 says the server will never support the request: permanent.
        501 => RetryAction::DontRetry {
            reason: "not implemented",
        },
        500..=599 => RetryAction::Retry { after: retry_after },
        400..=499 => RetryAction::DontRetry {
            reason: "client error",
        },
        _ => RetryAction::DontRetry {
            reason: "unexpected status",
        },
    }
}

/// Exponential backoff with full jitter and a bounded number of retries.
///
/// Retry `attempt` (0 for the first retry) waits a uniformly random time in
/// `[min, min(max, min · 2^(attempt+1))]`. Full jitter spreads the retries of many
/// conversations that failed together; the floor keeps even an unlucky draw from
/// hammering the server immediately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
    /// Retries allowed after the first try; [`Backoff::delay`] returns `None` past it.
    pub max_retries: u32,
}

impl Backoff {
    /// `max` below `min` is raised to `min`.
    pub fn new(min: Duration, max: Duration, max_retries: u32) -> Self {
        Backoff {
            min,
            max: max.max(min),
            max_retries,
        }
    }

    /// The upper bound of retry `attempt`'s wait.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_add(1))
            .unwrap_or(u32::MAX);
        self.min.saturating_mul(factor).min(self.max)
    }

    /// The wait before retry `attempt`, jittered by `random` (any u64, e.g. from the
    /// shell's RNG); `None` when the retries are used up.
    pub fn delay(&self, attempt: u32, random: u64) -> Option<Duration> {
        if attempt >= self.max_retries {
            return None;
        }
        let floor = self.min.as_nanos();
        let span = self.ceiling(attempt).as_nanos().saturating_sub(floor);
        let offset = u128::from(random) % (span + 1);
        Some(duration_from_nanos(floor + offset))
    }

    /// The wait before retry `attempt` given the server's advice: `Retry-After` wins when
    /// present (not capped: the server knows when it will accept the request), otherwise
    /// the jittered backoff. `None` when the retries are used up either way.
    pub fn next_delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        random: u64,
    ) -> Option<Duration> {
        let jittered = self.delay(attempt, random)?;
        Some(retry_after.unwrap_or(jittered))
    }
}

fn duration_from_nanos(nanos: u128) -> Duration {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    let secs = u64::try_from(nanos / NANOS_PER_SEC).unwrap_or(u64::MAX);
    // The remainder is below 10^9, so it always fits.
    let subsec = u32::try_from(nanos % NANOS_PER_SEC).unwrap_or(0);
    Duration::new(secs, subsec)
}

/// A `Retry-After` value that is neither delta-seconds nor an HTTP-date.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Retry-After value \"{value}\" is neither a number of seconds nor an HTTP-date")]
pub struct RetryAfterError {
    pub value: String,
}

/// Parses a `Retry-After` header (RFC 9110 §10.2.3): delta-seconds (`"30"`), or an
/// HTTP-date (`"Wed, 21 Oct 2015 07:28:00 GMT"`) taken relative to `now`. A date in the
/// past means "now" (zero). Genesys sends seconds (API.md §7); the date form is accepted
/// because proxies in front of it may rewrite the header.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Result<Duration, RetryAfterError> {
    let trimmed = value.trim();
    if let Some(seconds) = parse_delta_seconds(trimmed) {
        return Ok(seconds);
    }
    let date = DateTime::parse_from_rfc2822(trimmed).map_err(|_| RetryAfterError {
        value: value.to_owned(),
    })?;
    Ok((date.with_timezone(&Utc) - now)
        .to_std()
        .unwrap_or(Duration::ZERO))
}

/// Parses a non-negative integer number of seconds, as in `Retry-After` and
/// `inin-ratelimit-reset`. Too many digits saturate rather than fail: "wait very long" is
/// what the server meant.
pub fn parse_delta_seconds(value: &str) -> Option<Duration> {
    let digits = value.trim();
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    Some(Duration::from_secs(digits.parse().unwrap_or(u64::MAX)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn the_status_table() {
        let after = Some(Duration::from_secs(7));
        let cases: &[(u16, RetryAction)] = &[
            (200, RetryAction::Successful),
            (202, RetryAction::Successful),
            (401, RetryAction::RefreshTokenAndRetryOnce),
            (409, RetryAction::RetryAfterReread),
            (412, RetryAction::RetryAfterReread),
            (408, RetryAction::Retry { after }),
            (429, RetryAction::Retry { after }),
            (500, RetryAction::Retry { after }),
            (503, RetryAction::Retry { after }),
            (504, RetryAction::Retry { after }),
            (
                501,
                RetryAction::DontRetry {
                    reason: "not implemented",
                },
            ),
            (
                400,
                RetryAction::DontRetry {
                    reason: "client error",
                },
            ),
            (
                403,
                RetryAction::DontRetry {
                    reason: "client error",
                },
            ),
            (
                404,
                RetryAction::DontRetry {
                    reason: "client error",
                },
            ),
            (
                304,
                RetryAction::DontRetry {
                    reason: "unexpected status",
                },
            ),
        ];
        for (status, expected) in cases {
            assert_eq!(
                &classify_status(*status, after),
                expected,
                "status {status}"
            );
        }
    }

    #[test]
    fn a_retried_status_without_retry_after_leaves_the_wait_to_the_backoff() {
        assert_eq!(
            classify_status(503, None),
            RetryAction::Retry { after: None }
        );
    }

    #[test]
    fn the_ceiling_doubles_from_twice_the_floor_and_stops_at_the_max() {
        let backoff = Backoff::new(SECOND, Duration::from_secs(10), 10);
        let ceilings: Vec<u64> = (0..5).map(|a| backoff.ceiling(a).as_secs()).collect();
        assert_eq!(ceilings, [2, 4, 8, 10, 10]);
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn the_random_number_picks_the_point_in_the_window() {
        let backoff = Backoff::new(SECOND, Duration::from_secs(10), 10);
        assert_eq!(backoff.delay(1, 0), Some(SECOND));
        // Span of attempt 1 is 3 s = 3e9 ns; 3e9 lands on the top of the window.
        assert_eq!(
            backoff.delay(1, 3_000_000_000),
            Some(Duration::from_secs(4))
        );
        assert_eq!(
            backoff.delay(1, 1_500_000_000),
            Some(Duration::from_millis(2_500))
        );
    }

    #[test]
    fn retries_stop_after_the_maximum() {
        let backoff = Backoff::new(SECOND, Duration::from_secs(10), 2);
        assert!(backoff.delay(1, 0).is_some());
        assert_eq!(backoff.delay(2, 0), None);
        assert_eq!(backoff.next_delay(2, Some(SECOND), 0), None);
    }

    #[test]
    fn retry_after_wins_over_the_backoff() {
        let backoff = Backoff::new(SECOND, Duration::from_secs(10), 5);
        assert_eq!(
            backoff.next_delay(0, Some(Duration::from_secs(30)), 0),
            Some(Duration::from_secs(30))
        );
        assert_eq!(backoff.next_delay(0, None, 0), Some(SECOND));
    }

    #[test]
    fn retry_after_in_seconds_and_as_a_date() {
        let now = Utc.with_ymd_and_hms(2015, 10, 21, 7, 27, 30).unwrap();
        assert_eq!(parse_retry_after(" 12 ", now), Ok(Duration::from_secs(12)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Ok(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Ok(Duration::ZERO),
            "a date in the past means now"
        );
        for bad in ["", "-1", "1.5", "soon"] {
            assert_eq!(
                parse_retry_after(bad, now),
                Err(RetryAfterError {
                    value: bad.to_owned()
                })
            );
        }
    }

    #[test]
    fn absurdly_long_delta_seconds_saturate() {
        assert_eq!(
            parse_delta_seconds("99999999999999999999999"),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    proptest! {
        #[test]
        fn every_delay_stays_inside_its_window(
            min_ms in 1u64..5_000,
            extra_ms in 0u64..120_000,
            attempt in 0u32..40,
            random in any::<u64>(),
        ) {
            let backoff = Backoff::new(
                Duration::from_millis(min_ms),
                Duration::from_millis(min_ms + extra_ms),
                u32::MAX,
            );
            let delay = backoff.delay(attempt, random).unwrap();
            prop_assert!(delay >= backoff.min);
            prop_assert!(delay <= backoff.ceiling(attempt));
            prop_assert!(delay <= backoff.max);
        }
    }
}
