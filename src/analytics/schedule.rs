//! When a scheduled snapshot runs and what it covers: the previous whole interval of
//! `analytics.schedule`, aligned to multiples of it since the Unix epoch (an hourly
//! schedule covers 13:00–14:00, taken after 14:00), starting where the last covered
//! interval ended — so a run that failed or a daemon that was down is caught up by the
//! next run, never skipped. Backoff of a failed run: 30 s doubling, capped at the schedule.

use chrono::{DateTime, Duration, Utc};

use super::model::Interval;

/// The interval the next scheduled snapshot covers at `now`, if a whole one has ended
/// since `covered_to`. Without a `covered_to` (first run) only the previous interval.
pub fn due_interval(
    now: DateTime<Utc>,
    every: Duration,
    covered_to: Option<DateTime<Utc>>,
) -> Option<Interval> {
    let step = every.num_milliseconds();
    if step <= 0 {
        return None;
    }
    let end_ms = now.timestamp_millis().div_euclid(step) * step;
    let end = DateTime::from_timestamp_millis(end_ms)?;
    let from = covered_to.unwrap_or(end - every);
    (from < end).then_some(Interval { from, to: end })
}

/// The wait before retrying after `failures` consecutive failed runs.
pub fn retry_after(failures: u32, every: Duration) -> Duration {
    let base = Duration::seconds(30);
    let doubled = base * 2_i32.saturating_pow(failures.saturating_sub(1).min(16));
    doubled.min(every).max(Duration::seconds(1))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn the_first_run_covers_the_previous_whole_aligned_interval() {
        let due = due_interval(at("2025-03-04T14:07:31Z"), Duration::hours(1), None).unwrap();
        assert_eq!(
            (due.from, due.to),
            (at("2025-03-04T13:00:00Z"), at("2025-03-04T14:00:00Z"))
        );
    }

    #[test]
    fn nothing_is_due_until_the_next_boundary_passes() {
        let covered = Some(at("2025-03-04T14:00:00Z"));
        assert_eq!(
            due_interval(at("2025-03-04T14:59:59Z"), Duration::hours(1), covered),
            None
        );
        assert!(due_interval(at("2025-03-04T15:00:00Z"), Duration::hours(1), covered).is_some());
    }

    #[test]
    fn missed_intervals_are_covered_by_the_next_run() {
        // Runs at 14:00 and 15:00 failed (or the daemon was down): 16:05 covers 13:00–16:00.
        let covered = Some(at("2025-03-04T13:00:00Z"));
        let due = due_interval(at("2025-03-04T16:05:00Z"), Duration::hours(1), covered).unwrap();
        assert_eq!(
            (due.from, due.to),
            (at("2025-03-04T13:00:00Z"), at("2025-03-04T16:00:00Z"))
        );
    }

    #[test]
    fn retries_back_off_up_to_the_schedule() {
        let hour = Duration::hours(1);
        assert_eq!(retry_after(1, hour), Duration::seconds(30));
        assert_eq!(retry_after(3, hour), Duration::seconds(120));
        assert_eq!(retry_after(30, hour), hour);
        assert_eq!(retry_after(5, Duration::minutes(2)), Duration::minutes(2));
    }
}
