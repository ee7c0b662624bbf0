//! Fault-injection settings of the emulator (`PUT /emulator/v1/faults`) and the seeded draws
//! that apply them: REST calls answered 500/503/429 (with a chosen `Retry-After` and
//! `inin-ratelimit-reset`), added latency, duplicated and reordered publication, and the
//! `expires_in` the token endpoint reports. Deterministic: the same seed and the same sequence of calls give
//! the same faults.

use rand::rngs::StdRng;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// The fault knobs. Ratios are probabilities in `[0, 1]`; `error_ratio + rate_limit_ratio`
/// must not exceed 1 (they share one draw per request).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultSettings {
    /// Share of `/api/v2` calls answered 500 `internal.server.error` or 503
    /// `service.unavailable` (half each, drawn).
    pub error_ratio: f64,
    /// Share of `/api/v2` calls answered 429 `too.many.requests.retry.after` regardless of
    /// the token's budget.
    pub rate_limit_ratio: f64,
    /// Delay added before every `/api/v2` call is handled.
    pub latency_ms: u64,
    /// Share of published events sent twice on a channel.
    pub duplicate_ratio: f64,
    /// Share of published events held back and sent after the next event on that channel
    /// (or released after a short hold if no next event comes).
    pub reorder_ratio: f64,
    /// The next this-many `/api/v2` calls are answered 429, before any ratio is drawn
    /// (counts down; `GET /faults` shows what is left, nothing once it is 0).
    #[serde(skip_serializing_if = "is_zero")]
    pub rate_limit_next: u32,
    /// `Retry-After` (seconds) of injected 429s; 1 when not set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u64>,
    /// When set, injected 429s also carry `inin-ratelimit-reset` (seconds) with a used-up
    /// window (`inin-ratelimit-count` = `-allowed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratelimit_reset_s: Option<u64>,
    /// `expires_in` reported by `/oauth/token` instead of the token's real lifetime (the
    /// token still dies at its real expiry): probes a client's arithmetic on extreme values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_expires_in_s: Option<u64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Why a fault setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultSettingsError {
    #[error("{field} must be a number between 0 and 1")]
    RatioOutOfRange { field: &'static str },
    #[error("error_ratio + rate_limit_ratio must not exceed 1")]
    RatiosExceedOne,
}

impl FaultSettings {
    pub fn validate(&self) -> Result<(), FaultSettingsError> {
        for (field, ratio) in [
            ("error_ratio", self.error_ratio),
            ("rate_limit_ratio", self.rate_limit_ratio),
            ("duplicate_ratio", self.duplicate_ratio),
            ("reorder_ratio", self.reorder_ratio),
        ] {
            // `contains` is false for NaN too.
            if !(0.0..=1.0).contains(&ratio) {
                return Err(FaultSettingsError::RatioOutOfRange { field });
            }
        }
        if self.error_ratio + self.rate_limit_ratio > 1.0 {
            return Err(FaultSettingsError::RatiosExceedOne);
        }
        Ok(())
    }
}

/// A fault to answer one REST call with instead of handling it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFault {
    /// 500 `internal.server.error`.
    InternalServerError,
    /// 503 `service.unavailable`.
    ServiceUnavailable,
    /// 429 `too.many.requests.retry.after` with `Retry-After: retry_after_s` and, when set,
    /// a used-up `inin-ratelimit-*` window resetting in `reset_s`.
    RateLimited {
        retry_after_s: u64,
        reset_s: Option<u64>,
    },
}

/// Draws whether a request gets a fault. No draw is made while both ratios are zero, so
/// turning faults on later does not depend on how many calls came before. A pending
/// `rate_limit_next` is served first and counted down.
pub(crate) fn draw_request_fault(
    settings: &mut FaultSettings,
    rng: &mut StdRng,
) -> Option<RequestFault> {
    let rate_limited = RequestFault::RateLimited {
        retry_after_s: settings.retry_after_s.unwrap_or(1),
        reset_s: settings.ratelimit_reset_s,
    };
    if settings.rate_limit_next > 0 {
        settings.rate_limit_next -= 1;
        return Some(rate_limited);
    }
    if settings.error_ratio <= 0.0 && settings.rate_limit_ratio <= 0.0 {
        return None;
    }
    let roll: f64 = rng.gen();
    if roll < settings.error_ratio {
        if rng.gen_bool(0.5) {
            Some(RequestFault::InternalServerError)
        } else {
            Some(RequestFault::ServiceUnavailable)
        }
    } else if roll < settings.error_ratio + settings.rate_limit_ratio {
        Some(rate_limited)
    } else {
        None
    }
}

/// One Bernoulli draw, skipped when the ratio is zero.
pub(crate) fn draw(ratio: f64, rng: &mut StdRng) -> bool {
    ratio > 0.0 && rng.gen::<f64>() < ratio
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn settings_parse_with_defaults_and_reject_unknown_fields() {
        let settings: FaultSettings = serde_json::from_str(r#"{"error_ratio":0.2}"#).unwrap();
        assert_eq!(settings.error_ratio, 0.2);
        assert_eq!(settings.latency_ms, 0);
        assert!(serde_json::from_str::<FaultSettings>(r#"{"eror_ratio":0.2}"#).is_err());
    }

    #[test]
    fn ratios_outside_zero_to_one_are_refused() {
        let settings = FaultSettings {
            duplicate_ratio: 1.5,
            ..FaultSettings::default()
        };
        assert_eq!(
            settings.validate(),
            Err(FaultSettingsError::RatioOutOfRange {
                field: "duplicate_ratio"
            })
        );
        let settings = FaultSettings {
            error_ratio: 0.7,
            rate_limit_ratio: 0.7,
            ..FaultSettings::default()
        };
        assert_eq!(
            settings.validate(),
            Err(FaultSettingsError::RatiosExceedOne)
        );
        assert!(FaultSettings::default().validate().is_ok());
    }

    #[test]
    fn the_same_seed_draws_the_same_faults_at_roughly_the_configured_ratio() {
        let settings = FaultSettings {
            error_ratio: 0.2,
            rate_limit_ratio: 0.1,
            ..FaultSettings::default()
        };
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut settings = settings.clone();
            (0..1000)
                .map(|_| draw_request_fault(&mut settings, &mut rng))
                .collect::<Vec<_>>()
        };
        let first = run(7);
        assert_eq!(first, run(7));
        let errors = first
            .iter()
            .filter(|f| {
                matches!(
                    f,
                    Some(RequestFault::InternalServerError | RequestFault::ServiceUnavailable)
                )
            })
            .count();
        let limited = first
            .iter()
            .filter(|f| matches!(f, Some(RequestFault::RateLimited { .. })))
            .count();
        assert!((150..250).contains(&errors), "{errors}");
        assert!((60..140).contains(&limited), "{limited}");
    }

    #[test]
    fn zero_ratios_never_fault() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut settings = FaultSettings::default();
        assert!((0..100).all(|_| draw_request_fault(&mut settings, &mut rng).is_none()));
        assert!((0..100).all(|_| !draw(0.0, &mut rng)));
        assert!((0..100).all(|_| draw(1.0, &mut rng)));
    }

    #[test]
    fn the_next_calls_are_rate_limited_with_the_chosen_headers_then_no_more() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut settings: FaultSettings = serde_json::from_str(
            r#"{"rate_limit_next":2,"retry_after_s":315360000,"ratelimit_reset_s":86400}"#,
        )
        .unwrap();
        let limited = RequestFault::RateLimited {
            retry_after_s: 315_360_000,
            reset_s: Some(86_400),
        };
        assert_eq!(draw_request_fault(&mut settings, &mut rng), Some(limited));
        assert_eq!(draw_request_fault(&mut settings, &mut rng), Some(limited));
        assert_eq!(settings.rate_limit_next, 0);
        assert_eq!(draw_request_fault(&mut settings, &mut rng), None);
    }
}
