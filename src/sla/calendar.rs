//! Business-hours calendars: which instants count as open time for an SLA clock.
//!
//! A [`Calendar`] is a time zone, weekly opening hours (several [`OpeningRange`]s per day)
//! and closed dates. It answers two questions, both on real elapsed time:
//! - [`Calendar::add_open_time`]: the instant when `amount` of open time has elapsed since
//!   `start` (a clock's warning instant and deadline);
//! - [`Calendar::open_time_between`]: how much open time lies between two instants (what a
//!   clock measured).
//!
//! Rules, made precise:
//! - Opening hours are local wall-clock times of the calendar's zone. A range belongs to
//!   the day it starts on: `22:00-06:00` on Friday is open from Friday 22:00 to Saturday
//!   06:00; `00:00-24:00` is the whole day. A closed date closes the ranges that *start*
//!   on it (an overnight range from the evening before still runs into it).
//! - Open time is real elapsed time: on the night clocks spring forward, `22:00-06:00`
//!   holds 7 hours of open time, on the night they fall back 9.
//! - A range bound that does not exist locally (inside a spring-forward gap) is the first
//!   instant after the gap; a bound that exists twice (fall back) opens at the earlier and
//!   closes at the later of the two instants, so no open time is lost.
//! - Overlapping ranges count once.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::{GapInfo, Tz};

const MINUTES_PER_DAY: u16 = 24 * 60;

/// Why a calendar setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("unknown time zone \"{0}\"; expected an IANA name such as \"Europe/Berlin\"")]
    UnknownTimeZone(String),
    #[error("bad opening range \"{text}\": {reason}; expected \"HH:MM-HH:MM\" such as \"09:00-18:00\" (\"22:00-06:00\" runs overnight)")]
    BadRange { text: String, reason: &'static str },
    #[error("bad date \"{0}\"; expected YYYY-MM-DD such as \"2026-12-25\"")]
    BadDate(String),
    #[error("the calendar has no opening hours on any day: a clock on it could never run")]
    NeverOpen,
}

/// One opening range of a day, in minutes after local midnight. `end <= start` runs past
/// midnight into the next day; `end` may be 24:00.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct OpeningRange {
    start: u16,
    end: u16,
}

impl OpeningRange {
    /// Parses `"HH:MM-HH:MM"`. `"09:00-18:00"`, `"22:00-06:00"` (overnight) and
    /// `"00:00-24:00"` (the whole day) are ranges; `"10:00-10:00"` is not.
    pub fn parse(text: &str) -> Result<OpeningRange, CalendarError> {
        let bad = |reason| CalendarError::BadRange {
            text: text.to_owned(),
            reason,
        };
        let (start, end) = text.trim().split_once('-').ok_or(bad("no \"-\""))?;
        let start = parse_clock_time(start.trim()).ok_or(bad("bad start time"))?;
        let end = parse_clock_time(end.trim()).ok_or(bad("bad end time"))?;
        if start == MINUTES_PER_DAY {
            return Err(bad("a range cannot start at 24:00"));
        }
        if start == end {
            return Err(bad("empty range; write \"00:00-24:00\" for the whole day"));
        }
        Ok(OpeningRange { start, end })
    }

    /// Minutes of the day at which the range opens.
    pub fn start_minutes(&self) -> u16 {
        self.start
    }

    /// True when the range closes on the next day.
    pub fn is_overnight(&self) -> bool {
        self.end <= self.start
    }
}

impl fmt::Display for OpeningRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

/// `HH:MM`, 00:00 through 24:00.
fn parse_clock_time(text: &str) -> Option<u16> {
    let (hours, minutes) = text.split_once(':')?;
    if hours.is_empty() || hours.len() > 2 || minutes.len() != 2 {
        return None;
    }
    let hours: u16 = hours.parse().ok()?;
    let minutes: u16 = minutes.parse().ok()?;
    if minutes >= 60 || hours > 24 || (hours == 24 && minutes != 0) {
        return None;
    }
    Some(hours * 60 + minutes)
}

/// Parses a closed date, `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> Result<NaiveDate, CalendarError> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| CalendarError::BadDate(text.to_owned()))
}

/// Parses an IANA time zone name (`Europe/Berlin`, `UTC`).
pub fn parse_time_zone(name: &str) -> Result<Tz, CalendarError> {
    name.trim()
        .parse::<Tz>()
        .map_err(|_| CalendarError::UnknownTimeZone(name.to_owned()))
}

/// A business-hours calendar (see the module docs for its rules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    time_zone: Tz,
    /// Monday first; each day's ranges sorted by start.
    week: [Vec<OpeningRange>; 7],
    closed: BTreeSet<NaiveDate>,
}

impl Calendar {
    /// `week` is Monday first. Refused when no day has a range.
    pub fn new(
        time_zone: Tz,
        mut week: [Vec<OpeningRange>; 7],
        closed: BTreeSet<NaiveDate>,
    ) -> Result<Calendar, CalendarError> {
        if week.iter().all(Vec::is_empty) {
            return Err(CalendarError::NeverOpen);
        }
        for day in &mut week {
            day.sort();
            day.dedup();
        }
        Ok(Calendar {
            time_zone,
            week,
            closed,
        })
    }

    pub fn time_zone(&self) -> Tz {
        self.time_zone
    }

    /// The instant when `amount` of open time has elapsed since `start`. `None` only if
    /// the calendar stops opening (impossible for a calendar built by [`Calendar::new`],
    /// kept total rather than looping).
    pub fn add_open_time(&self, start: DateTime<Utc>, amount: Duration) -> Option<DateTime<Utc>> {
        let mut remaining = TimeDelta::from_std(amount).ok()?;
        if remaining.is_zero() {
            // Zero open time is reached at once, even while closed.
            return Some(start);
        }
        let mut due = None;
        self.walk(start, |open, close| {
            let length = close - open;
            if length >= remaining {
                due = Some(open + remaining);
                return false;
            }
            remaining -= length;
            true
        });
        due
    }

    /// The open time between `from` and `to` (zero when `to <= from`).
    pub fn open_time_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
        let mut total = TimeDelta::zero();
        if to <= from {
            return Duration::ZERO;
        }
        self.walk(from, |open, close| {
            if open >= to {
                return false;
            }
            total += close.min(to) - open;
            close < to
        });
        total.to_std().unwrap_or(Duration::ZERO)
    }

    /// Calls `visit(open, close)` for each open interval after `from`, in time order,
    /// clipped to start no earlier than `from` and not to overlap earlier ones, until
    /// `visit` returns false. Gives up after more consecutive days without opening than
    /// the closed dates could explain (each can cost a week if only one weekday opens).
    fn walk(
        &self,
        from: DateTime<Utc>,
        mut visit: impl FnMut(DateTime<Utc>, DateTime<Utc>) -> bool,
    ) {
        let local_date = from.with_timezone(&self.time_zone).date_naive();
        // An overnight range of the day before may still be open at `from`.
        let Some(mut date) = local_date.pred_opt() else {
            return;
        };
        let mut cursor = from;
        let mut days_without_opening = 0;
        let limit = 7 * (self.closed.len() + 1) + 1;
        while days_without_opening <= limit {
            let mut opened = false;
            if !self.closed.contains(&date) {
                let day = date.weekday().num_days_from_monday() as usize;
                for range in &self.week[day] {
                    let (open, close) = self.interval(date, *range);
                    let open = open.max(cursor);
                    if close <= open {
                        continue;
                    }
                    opened = true;
                    if !visit(open, close) {
                        return;
                    }
                    cursor = close;
                }
            }
            days_without_opening = if opened { 0 } else { days_without_opening + 1 };
            let Some(next) = date.succ_opt() else {
                return;
            };
            date = next;
        }
    }

    /// The UTC interval of `range` on local `date`.
    fn interval(&self, date: NaiveDate, range: OpeningRange) -> (DateTime<Utc>, DateTime<Utc>) {
        let midnight = date.and_time(chrono::NaiveTime::MIN);
        let open = midnight + TimeDelta::minutes(i64::from(range.start));
        let mut close = midnight + TimeDelta::minutes(i64::from(range.end));
        if range.is_overnight() {
            close += TimeDelta::days(1);
        }
        (self.instant(open, false), self.instant(close, true))
    }

    /// The instant of a local wall-clock time (see the module docs for gaps and folds).
    fn instant(&self, local: NaiveDateTime, latest: bool) -> DateTime<Utc> {
        match self.time_zone.from_local_datetime(&local) {
            LocalResult::Single(instant) => instant.with_timezone(&Utc),
            LocalResult::Ambiguous(earlier, later) => {
                if latest {
                    later.with_timezone(&Utc)
                } else {
                    earlier.with_timezone(&Utc)
                }
            }
            LocalResult::None => GapInfo::new(&local, &self.time_zone)
                .and_then(|gap| gap.end)
                .map_or_else(
                    || Utc.from_utc_datetime(&local),
                    |end| end.with_timezone(&Utc),
                ),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
