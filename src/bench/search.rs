//! The search of `convoy bench e2e` for the highest offered rate Convoy sustains within
//! its latency target.
//!
//! A rate *passes* when Convoy kept up with it and the p99 latency stayed under the target
//! (the shell decides that; this module only steers). From the rates already measured it
//! doubles the highest pass until one fails (or the ceiling is reached), then bisects
//! between the highest pass and the lowest failure — geometrically, as rates span
//! decades — until they are within [`RateSearch::resolution`] of each other or the step
//! budget is spent. Rates are rounded to [`GRAIN`] frames/s so reports read cleanly.

/// Rates are multiples of this.
pub const GRAIN: u32 = 100;

/// Where the search stands.
#[derive(Debug, Clone, PartialEq)]
pub struct RateSearch {
    /// Highest rate that passed.
    passed: Option<u32>,
    /// Lowest rate that failed.
    failed: Option<u32>,
    /// Never offer more than this.
    ceiling: u32,
    /// Where to start when nothing was measured yet.
    start: u32,
    /// Steps still allowed.
    steps_left: usize,
    /// Stop once `failed / passed` is at most `1 + resolution`.
    resolution: f64,
}

impl RateSearch {
    pub fn new(start: u32, ceiling: u32, steps: usize) -> RateSearch {
        RateSearch {
            passed: None,
            failed: None,
            ceiling: ceiling.max(GRAIN),
            start: round(start).clamp(GRAIN, ceiling.max(GRAIN)),
            steps_left: steps,
            resolution: 0.1,
        }
    }

    /// Takes a measured rate into account (also one the search did not propose).
    pub fn record(&mut self, rate: u32, passed: bool) {
        if passed {
            if self.passed.is_none_or(|best| rate > best) {
                self.passed = Some(rate);
            }
            // A pass above an earlier failure (a noisy machine): the failure no longer
            // bounds the search.
            if self.failed.is_some_and(|failed| failed <= rate) {
                self.failed = None;
            }
        } else if self.failed.is_none_or(|lowest| rate < lowest) {
            self.failed = Some(rate);
            if self.passed.is_some_and(|passed| passed >= rate) {
                self.passed = None;
            }
        }
    }

    /// Spends one step: the next rate to measure, or `None` when the search is done.
    pub fn next_rate(&mut self) -> Option<u32> {
        if self.steps_left == 0 {
            return None;
        }
        let next = match (self.passed, self.failed) {
            (None, None) => Some(self.start),
            (Some(passed), None) => {
                (passed < self.ceiling).then(|| round(passed.saturating_mul(2)).min(self.ceiling))
            }
            (None, Some(failed)) => {
                let half = round(failed / 2);
                (half < failed && failed > GRAIN).then_some(half)
            }
            (Some(passed), Some(failed)) => {
                let close = f64::from(failed) <= f64::from(passed) * (1.0 + self.resolution);
                let middle = round((f64::from(passed) * f64::from(failed)).sqrt() as u32);
                (!close && middle > passed && middle < failed).then_some(middle)
            }
        };
        if next.is_some() {
            self.steps_left -= 1;
        }
        next
    }

    /// The highest rate that passed, once the search is over (or so far).
    pub fn best(&self) -> Option<u32> {
        self.passed
    }
}

fn round(rate: u32) -> u32 {
    (rate.saturating_add(GRAIN / 2) / GRAIN * GRAIN).max(GRAIN)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Runs the search against a machine that passes every rate up to `capacity`.
    fn search(
        capacity: u32,
        measured: &[u32],
        ceiling: u32,
        steps: usize,
    ) -> (Option<u32>, Vec<u32>) {
        let mut search = RateSearch::new(1_000, ceiling, steps);
        for &rate in measured {
            search.record(rate, rate <= capacity);
        }
        let mut tried = Vec::new();
        while let Some(rate) = search.next_rate() {
            tried.push(rate);
            search.record(rate, rate <= capacity);
        }
        (search.best(), tried)
    }

    #[test]
    fn from_two_passes_it_doubles_then_bisects_to_within_ten_percent() {
        let (best, tried) = search(23_000, &[1_000, 5_000], 100_000, 20);
        assert_eq!(&tried[..2], &[10_000, 20_000]);
        assert_eq!(tried[2], 40_000, "doubling until a failure");
        let best = best.unwrap();
        assert!(best <= 23_000 && best as f64 >= 23_000.0 / 1.1, "{best}");
        assert!(tried.len() < 12, "{tried:?}");
    }

    #[test]
    fn a_failure_at_the_start_halves_down_to_a_pass() {
        let (best, tried) = search(700, &[1_000, 5_000], 100_000, 20);
        assert_eq!(tried[0], 500);
        let best = best.unwrap();
        assert!((637..=700).contains(&best), "{best}: {tried:?}");
    }

    #[test]
    fn it_stops_at_the_ceiling_and_when_the_budget_is_spent() {
        let (best, tried) = search(u32::MAX, &[1_000], 8_000, 20);
        assert_eq!(tried, vec![2_000, 4_000, 8_000]);
        assert_eq!(best, Some(8_000));
        let (_, tried) = search(23_000, &[], 100_000, 3);
        assert_eq!(tried, vec![1_000, 2_000, 4_000]);
    }

    #[test]
    fn nothing_passes_means_no_best_rate() {
        let (best, tried) = search(0, &[], 100_000, 30);
        assert_eq!(best, None);
        assert_eq!(
            tried.last(),
            Some(&GRAIN),
            "halved down to the grain: {tried:?}"
        );
    }

    #[test]
    fn a_pass_above_an_earlier_failure_lifts_the_bound() {
        let mut search = RateSearch::new(1_000, 100_000, 10);
        search.record(8_000, false);
        search.record(9_000, true);
        assert_eq!(search.best(), Some(9_000));
        assert_eq!(search.next_rate(), Some(18_000));
        search.record(4_000, false);
        assert_eq!(
            search.best(),
            None,
            "a failure below it: the pass was noise"
        );
    }
}
