//! What to do after a Genesys REST response, and how long to wait before trying again.
//!
//! Vector's shape (anchors.md §1.2): a *classification* of the response
//! ([`classify_status`] → [`RetryAction`]) kept apart from the retry *schedule*, which
//! the shell owns (`convoy_actors::retry_schedule`, the design card's `backoff` crate). The table follows API.md §7–§8 and ARCHITECTURE.md §5:
//!
//! | status | action |
//! |---|---|
//! | 2xx | [`RetryAction::Successful`] |
//! | 401 | refresh the token, retry once |
//! | 409, 412 | re-read, re-apply, then write again (a conflict is not a transient fault) |
//! | 408, 429, 5xx except 501 | retry; `Retry-After` wins over the backoff |
//! | 501, other 4xx, anything else | do not retry |
//!
//! Owns decisions only: never sleeps, never reads the clock.

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

    use super::*;

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
}
