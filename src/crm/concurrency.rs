//! How many batches may be in flight to the CRM at once: adaptive request concurrency
//! (AIMD), after Vector's `adaptive_concurrency` controller.
//!
//! The limit starts at 1. Answers are observed in windows, each about one average RTT
//! long. At the end of a window:
//! - if the limit was reached during it, no answer asked to slow down, and the window's
//!   mean RTT is not above the long-run RTT average (an EWMA), the limit grows by one —
//!   there is evidence the CRM takes more;
//! - if an answer asked to slow down (429, 503, a timeout) or the window's mean RTT rose
//!   above the average by more than `rtt_deviation_scale` standard deviations, the limit is
//!   multiplied by `decrease_ratio` (at least 1);
//! - the window's mean RTT then joins the EWMA.
//!
//! Only successful answers measure RTT (an error's latency says little about the CRM's
//! load). Bounded by `[1, max]`. Owns the arithmetic only: time is an argument, a monotonic
//! offset (`Duration` since an origin the shell picks, as in `convoy::ratelimit`).

use std::time::Duration;

/// Tuning of the controller; [`AimdSettings::new`] gives Vector's defaults except the
/// decrease ratio, halved as the issue asks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AimdSettings {
    /// Ceiling of the limit (`crm.max_in_flight`), at least 1.
    pub max: usize,
    /// Multiplier applied on back pressure, in (0, 1).
    pub decrease_ratio: f64,
    /// Weight of the newest window in the RTT average, in (0, 1].
    pub ewma_alpha: f64,
    /// How many standard deviations above the average RTT count as "RTT growth".
    pub rtt_deviation_scale: f64,
}

impl AimdSettings {
    pub fn new(max: usize) -> AimdSettings {
        AimdSettings {
            max: max.max(1),
            decrease_ratio: 0.5,
            ewma_alpha: 0.4,
            rtt_deviation_scale: 2.5,
        }
    }
}

/// How a request ended, for the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    /// Answered without asking to slow down; its RTT counts.
    Success,
    /// 429, 503 or another overload answer, or a timeout.
    BackPressure,
    /// Any other failure (a 4xx, a refused connection): neither speeds up nor slows down.
    Other,
}

/// The AIMD controller. The shell calls [`Aimd::start`] when it sends a batch,
/// [`Aimd::finish`] when the answer (or the failure) comes, and sends only while
/// [`Aimd::has_room`].
#[derive(Debug, Clone)]
pub struct Aimd {
    settings: AimdSettings,
    limit: usize,
    in_flight: usize,
    /// Long-run RTT average and variance, in microseconds; `None` before the first success.
    past: Option<MeanVariance>,
    window_end: Duration,
    /// RTTs are summed in whole microseconds: identical RTTs then average to exactly
    /// themselves, where summed float seconds drift by an epsilon that reads as "slower".
    window_rtt_sum: u128,
    window_rtt_count: u32,
    window_back_pressure: bool,
    window_reached_limit: bool,
}

fn micros(value: f64) -> Duration {
    Duration::from_micros(value.max(0.0) as u64)
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct MeanVariance {
    mean: f64,
    variance: f64,
}

impl Aimd {
    pub fn new(settings: AimdSettings) -> Aimd {
        Aimd {
            settings,
            limit: 1,
            in_flight: 0,
            past: None,
            window_end: Duration::ZERO,
            window_rtt_sum: 0,
            window_rtt_count: 0,
            window_back_pressure: false,
            window_reached_limit: false,
        }
    }

    /// How many requests may be in flight now.
    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Whether one more request may start.
    pub fn has_room(&self) -> bool {
        self.in_flight < self.limit
    }

    /// The long-run average RTT, once measured.
    pub fn average_rtt(&self) -> Option<Duration> {
        self.past.map(|past| micros(past.mean))
    }

    /// A request starts.
    pub fn start(&mut self) {
        self.in_flight = self.in_flight.saturating_add(1);
        if self.in_flight >= self.limit {
            self.window_reached_limit = true;
        }
    }

    /// A request that started at `started` ended at `now` with `outcome`. Returns the limit
    /// after any adjustment.
    pub fn finish(&mut self, started: Duration, now: Duration, outcome: RequestOutcome) -> usize {
        self.in_flight = self.in_flight.saturating_sub(1);
        match outcome {
            RequestOutcome::Success => {
                self.window_rtt_sum += now.saturating_sub(started).as_micros();
                self.window_rtt_count += 1;
            }
            RequestOutcome::BackPressure => self.window_back_pressure = true,
            RequestOutcome::Other => {}
        }
        let current = self.window_mean();
        match self.past {
            None => {
                // The first measurement sets the average; no judgement without a baseline.
                if let Some(current) = current {
                    self.past = Some(MeanVariance {
                        mean: current,
                        variance: 0.0,
                    });
                    self.window_end = now + micros(current);
                    self.reset_window();
                } else if self.window_back_pressure {
                    // Back pressure before any success still slows down.
                    self.decrease();
                    self.reset_window();
                }
            }
            Some(past) => {
                if now >= self.window_end {
                    self.adjust(past, current);
                    let past = match current {
                        Some(current) => self.update_average(past, current),
                        None => past,
                    };
                    self.window_end = now + micros(past.mean);
                    self.reset_window();
                }
            }
        }
        self.limit
    }

    fn window_mean(&self) -> Option<f64> {
        (self.window_rtt_count > 0)
            .then(|| self.window_rtt_sum as f64 / f64::from(self.window_rtt_count))
    }

    fn adjust(&mut self, past: MeanVariance, current: Option<f64>) {
        let threshold = past.variance.sqrt() * self.settings.rtt_deviation_scale;
        let fast = current.is_some_and(|current| current <= past.mean);
        let slow = current.is_some_and(|current| current > past.mean + threshold);
        if self.limit < self.settings.max
            && self.window_reached_limit
            && !self.window_back_pressure
            && fast
        {
            self.limit += 1;
        } else if self.window_back_pressure || slow {
            self.decrease();
        }
    }

    fn decrease(&mut self) {
        // Truncation makes the new limit strictly smaller while above 1.
        let scaled = (self.limit as f64 * self.settings.decrease_ratio) as usize;
        self.limit = scaled.clamp(1, self.settings.max);
    }

    fn update_average(&mut self, past: MeanVariance, current: f64) -> MeanVariance {
        // Exponentially weighted mean and variance (Finch 2009), as Vector's `EwmaVar`.
        let alpha = self.settings.ewma_alpha;
        let difference = current - past.mean;
        let increment = alpha * difference;
        let updated = MeanVariance {
            mean: past.mean + increment,
            variance: (1.0 - alpha) * (past.variance + difference * increment),
        };
        self.past = Some(updated);
        updated
    }

    fn reset_window(&mut self) {
        self.window_rtt_sum = 0;
        self.window_rtt_count = 0;
        self.window_back_pressure = false;
        self.window_reached_limit = self.in_flight >= self.limit;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    /// Runs `rounds` windows where the sender keeps the limit full and every request takes
    /// `rtt(round)`; returns the limit after each round.
    fn drive(
        aimd: &mut Aimd,
        rounds: usize,
        rtt: impl Fn(usize) -> u64,
        clock: &mut u64,
    ) -> Vec<usize> {
        let mut limits = Vec::new();
        for round in 0..rounds {
            let started = ms(*clock);
            let count = aimd.limit();
            for _ in 0..count {
                aimd.start();
            }
            *clock += rtt(round);
            for _ in 0..count {
                aimd.finish(started, ms(*clock), RequestOutcome::Success);
            }
            limits.push(aimd.limit());
        }
        limits
    }

    #[test]
    fn starts_at_one() {
        let aimd = Aimd::new(AimdSettings::new(8));
        assert_eq!(aimd.limit(), 1);
        assert!(aimd.has_room());
    }

    #[test]
    fn steady_fast_answers_grow_the_limit_by_one_per_window_up_to_the_ceiling() {
        let mut aimd = Aimd::new(AimdSettings::new(4));
        let mut clock = 0;
        let limits = drive(&mut aimd, 8, |_| 100, &mut clock);
        // Round 0 sets the baseline; each later window adds one.
        assert_eq!(limits, [1, 2, 3, 4, 4, 4, 4, 4]);
    }

    #[test]
    fn back_pressure_halves_the_limit_but_never_below_one() {
        let mut aimd = Aimd::new(AimdSettings::new(16));
        let mut clock = 0;
        drive(&mut aimd, 9, |_| 100, &mut clock);
        assert_eq!(aimd.limit(), 9);
        aimd.start();
        clock += 100;
        assert_eq!(
            aimd.finish(ms(clock - 100), ms(clock), RequestOutcome::BackPressure),
            4
        );
        for _ in 0..5 {
            aimd.start();
            clock += 100;
            aimd.finish(ms(clock - 100), ms(clock), RequestOutcome::BackPressure);
        }
        assert_eq!(aimd.limit(), 1);
    }

    #[test]
    fn a_jump_in_latency_shrinks_the_limit() {
        let mut aimd = Aimd::new(AimdSettings::new(16));
        let mut clock = 0;
        drive(&mut aimd, 6, |_| 100, &mut clock);
        assert_eq!(aimd.limit(), 6);
        let limits = drive(&mut aimd, 1, |_| 1_000, &mut clock);
        assert_eq!(limits, [3]);
    }

    #[test]
    fn the_limit_does_not_grow_without_evidence_that_it_was_reached() {
        let mut aimd = Aimd::new(AimdSettings::new(8));
        let mut clock = 0;
        drive(&mut aimd, 3, |_| 100, &mut clock);
        assert_eq!(aimd.limit(), 3);
        // One request at a time, well under the limit: no growth.
        for _ in 0..10 {
            aimd.start();
            clock += 100;
            aimd.finish(ms(clock - 100), ms(clock), RequestOutcome::Success);
        }
        assert_eq!(aimd.limit(), 3);
    }

    #[test]
    fn other_failures_neither_grow_nor_shrink() {
        let mut aimd = Aimd::new(AimdSettings::new(8));
        let mut clock = 0;
        drive(&mut aimd, 3, |_| 100, &mut clock);
        let mut limits = Vec::new();
        for _ in 0..6 {
            let count = aimd.limit();
            for _ in 0..count {
                aimd.start();
            }
            clock += 200;
            for _ in 0..count {
                aimd.finish(ms(clock - 200), ms(clock), RequestOutcome::Other);
            }
            limits.push(aimd.limit());
        }
        // The first window still judges the successes that ended the last round; after it,
        // failures that are not back pressure move nothing.
        assert!(limits[0] >= 3);
        assert!(limits.iter().all(|limit| *limit == limits[0]), "{limits:?}");
        assert_eq!(aimd.in_flight(), 0);
    }

    #[test]
    fn back_pressure_before_any_success_keeps_the_floor() {
        let mut aimd = Aimd::new(AimdSettings::new(8));
        aimd.start();
        assert_eq!(aimd.finish(ms(0), ms(5), RequestOutcome::BackPressure), 1);
        assert_eq!(aimd.average_rtt(), None);
    }
}
