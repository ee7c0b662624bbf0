//! Fault injection of the CRM sink: per request, one seeded draw decides whether the
//! request is answered normally, with a 5xx, with a 429 + `Retry-After`, by dropping the
//! connection before handling it, or by handling it (the records are stored, the document
//! written) and then dropping the connection instead of answering — the "maybe delivered"
//! case a client must survive by resending with the same `Idempotency-Key`; `delay_ms`
//! slows every contract request down (a batch is "in progress" for its idempotency key
//! during the delay). The same seed and the same
//! request order give the same faults.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// The fault mix, set by CLI flags or `PUT /_sink/faults`. Ratios are shares of contract
/// requests (0..=1, summing to at most 1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultSettings {
    /// Share answered 500 or 503 (half each, by the draw).
    pub error_ratio: f64,
    /// Share answered 429 with `Retry-After: retry_after_secs`.
    pub rate_limit_ratio: f64,
    pub retry_after_secs: u64,
    /// Added to every contract request before it is handled.
    pub delay_ms: u64,
    /// Share whose connection is dropped without any response, before handling.
    pub reset_ratio: f64,
    /// Share handled (stored) and then dropped without any response.
    pub reset_after_store_ratio: f64,
}

impl Default for FaultSettings {
    fn default() -> Self {
        FaultSettings {
            error_ratio: 0.0,
            rate_limit_ratio: 0.0,
            retry_after_secs: 1,
            delay_ms: 0,
            reset_ratio: 0.0,
            reset_after_store_ratio: 0.0,
        }
    }
}

/// Why fault settings were refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FaultSettingsError {
    #[error("{name} must be between 0 and 1, got {value}")]
    RatioOutOfRange { name: &'static str, value: f64 },
    #[error("error_ratio + rate_limit_ratio + reset_ratio + reset_after_store_ratio must not exceed 1, got {0}")]
    RatiosAboveOne(f64),
}

impl FaultSettings {
    pub fn validate(&self) -> Result<(), FaultSettingsError> {
        for (name, value) in [
            ("error_ratio", self.error_ratio),
            ("rate_limit_ratio", self.rate_limit_ratio),
            ("reset_ratio", self.reset_ratio),
            ("reset_after_store_ratio", self.reset_after_store_ratio),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(FaultSettingsError::RatioOutOfRange { name, value });
            }
        }
        let sum = self.error_ratio
            + self.rate_limit_ratio
            + self.reset_ratio
            + self.reset_after_store_ratio;
        if sum > 1.0 + f64::EPSILON {
            return Err(FaultSettingsError::RatiosAboveOne(sum));
        }
        Ok(())
    }
}

/// What to do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultDecision {
    /// Handle it normally.
    Pass,
    /// Answer with this 5xx status.
    ServerError(u16),
    /// Answer 429 with `Retry-After` in seconds.
    RateLimited { retry_after_secs: u64 },
    /// Drop the connection without answering.
    Reset,
    /// Handle the request, then drop the connection without answering.
    ResetAfterStore,
}

/// The seeded decision source.
#[derive(Debug)]
pub struct FaultInjector {
    settings: FaultSettings,
    rng: StdRng,
}

impl FaultInjector {
    pub fn new(settings: FaultSettings, seed: u64) -> FaultInjector {
        FaultInjector {
            settings,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    pub fn settings(&self) -> FaultSettings {
        self.settings
    }

    /// Replaces the mix; the random sequence goes on (no reseed).
    pub fn set(&mut self, settings: FaultSettings) {
        self.settings = settings;
    }

    /// Decides the next request's fate. Draws nothing when no ratio is set, so a sink
    /// without faults never consumes the sequence.
    pub fn decide(&mut self) -> FaultDecision {
        let FaultSettings {
            error_ratio,
            rate_limit_ratio,
            reset_ratio,
            reset_after_store_ratio,
            retry_after_secs,
            ..
        } = self.settings;
        if error_ratio + rate_limit_ratio + reset_ratio + reset_after_store_ratio <= 0.0 {
            return FaultDecision::Pass;
        }
        let draw: f64 = self.rng.gen();
        // The after-store band sits above every other band, so a mix without it draws the
        // same sequence of faults as before it existed.
        let others = reset_ratio + error_ratio + rate_limit_ratio;
        if draw < reset_ratio {
            FaultDecision::Reset
        } else if draw >= others && draw < others + reset_after_store_ratio {
            FaultDecision::ResetAfterStore
        } else if draw < reset_ratio + error_ratio {
            // Which 5xx comes from the same draw: the lower half of the band is 500.
            let band = (draw - reset_ratio) / error_ratio;
            FaultDecision::ServerError(if band < 0.5 { 500 } else { 503 })
        } else if draw < reset_ratio + error_ratio + rate_limit_ratio {
            FaultDecision::RateLimited { retry_after_secs }
        } else {
            FaultDecision::Pass
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn mix() -> FaultSettings {
        FaultSettings {
            error_ratio: 0.2,
            rate_limit_ratio: 0.2,
            reset_ratio: 0.1,
            reset_after_store_ratio: 0.1,
            retry_after_secs: 3,
            delay_ms: 0,
        }
    }

    #[test]
    fn same_seed_same_faults() {
        let run = |seed| {
            let mut injector = FaultInjector::new(mix(), seed);
            (0..200).map(|_| injector.decide()).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn ratios_are_respected() {
        let mut injector = FaultInjector::new(mix(), 9);
        let decisions: Vec<_> = (0..10_000).map(|_| injector.decide()).collect();
        let count = |f: fn(&FaultDecision) -> bool| decisions.iter().filter(|d| f(d)).count();
        let errors = count(|d| matches!(d, FaultDecision::ServerError(_)));
        let limited = count(|d| {
            *d == FaultDecision::RateLimited {
                retry_after_secs: 3,
            }
        });
        let resets = count(|d| *d == FaultDecision::Reset);
        let after_store = count(|d| *d == FaultDecision::ResetAfterStore);
        assert!(
            (800..=1200).contains(&after_store),
            "after store = {after_store}"
        );
        assert!((1800..=2200).contains(&errors), "errors = {errors}");
        assert!((1800..=2200).contains(&limited), "limited = {limited}");
        assert!((800..=1200).contains(&resets), "resets = {resets}");
        assert!(decisions.contains(&FaultDecision::ServerError(500)));
        assert!(decisions.contains(&FaultDecision::ServerError(503)));
    }

    #[test]
    fn no_faults_pass_everything() {
        let mut injector = FaultInjector::new(FaultSettings::default(), 1);
        assert!((0..100).all(|_| injector.decide() == FaultDecision::Pass));
    }

    #[test]
    fn invalid_settings_are_refused() {
        let too_much = FaultSettings {
            error_ratio: 0.6,
            rate_limit_ratio: 0.6,
            ..FaultSettings::default()
        };
        assert!(matches!(
            too_much.validate(),
            Err(FaultSettingsError::RatiosAboveOne(_))
        ));
        let negative = FaultSettings {
            reset_ratio: -0.1,
            ..FaultSettings::default()
        };
        assert!(negative.validate().is_err());
        assert!(mix().validate().is_ok());
    }
}
