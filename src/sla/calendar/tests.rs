use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Europe::Berlin;
use chrono_tz::Tz;

use super::*;

fn range(text: &str) -> OpeningRange {
    OpeningRange::parse(text).unwrap()
}

/// Monday..Friday `hours`, weekends closed.
fn weekdays(hours: &str, closed: &[&str]) -> Calendar {
    let day = vec![range(hours)];
    let week = [
        day.clone(),
        day.clone(),
        day.clone(),
        day.clone(),
        day,
        Vec::new(),
        Vec::new(),
    ];
    Calendar::new(Berlin, week, dates(closed)).unwrap()
}

fn every_day(hours: &str) -> Calendar {
    let week: [Vec<OpeningRange>; 7] = std::array::from_fn(|_| vec![range(hours)]);
    Calendar::new(Berlin, week, BTreeSet::new()).unwrap()
}

fn dates(texts: &[&str]) -> BTreeSet<NaiveDate> {
    texts.iter().map(|text| parse_date(text).unwrap()).collect()
}

/// A Berlin wall-clock time.
fn berlin(text: &str) -> DateTime<Utc> {
    let naive = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").unwrap();
    Berlin
        .from_local_datetime(&naive)
        .earliest()
        .unwrap()
        .with_timezone(&Utc)
}

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

const FIVE_MINUTES: Duration = Duration::from_secs(5 * 60);
const HOUR: Duration = Duration::from_secs(3_600);

#[test]
fn a_message_at_1759_on_a_queue_closing_at_1800_is_due_at_0904_the_next_open_day() {
    let calendar = weekdays("09:00-18:00", &[]);
    // Thursday 2026-01-15 → Friday.
    assert_eq!(
        calendar.add_open_time(berlin("2026-01-15 17:59"), FIVE_MINUTES),
        Some(berlin("2026-01-16 09:04"))
    );
    // Friday → Monday: the weekend does not count.
    assert_eq!(
        calendar.add_open_time(berlin("2026-01-16 17:59"), FIVE_MINUTES),
        Some(berlin("2026-01-19 09:04"))
    );
    // Started while closed: counting begins at opening.
    assert_eq!(
        calendar.add_open_time(berlin("2026-01-17 11:00"), FIVE_MINUTES),
        Some(berlin("2026-01-19 09:05"))
    );
    assert_eq!(
        calendar.open_time_between(berlin("2026-01-16 17:59"), berlin("2026-01-19 09:04")),
        FIVE_MINUTES
    );
}

#[test]
fn a_deadline_falling_exactly_at_closing_stays_on_that_day() {
    let calendar = weekdays("09:00-18:00", &[]);
    assert_eq!(
        calendar.add_open_time(berlin("2026-01-15 17:55"), FIVE_MINUTES),
        Some(berlin("2026-01-15 18:00"))
    );
}

#[test]
fn closed_dates_are_skipped() {
    // Thursday 2026-12-24, Friday 2026-12-25 closed.
    let calendar = weekdays("09:00-18:00", &["2026-12-25"]);
    assert_eq!(
        calendar.add_open_time(berlin("2026-12-24 17:59"), FIVE_MINUTES),
        Some(berlin("2026-12-28 09:04"))
    );
    assert_eq!(
        calendar.open_time_between(berlin("2026-12-24 00:00"), berlin("2026-12-28 00:00")),
        Duration::from_secs(9 * 3_600)
    );
}

#[test]
fn overnight_ranges_run_into_the_next_day() {
    let calendar = every_day("22:00-06:00");
    assert_eq!(
        calendar.add_open_time(berlin("2026-01-15 05:58"), FIVE_MINUTES),
        Some(berlin("2026-01-15 22:03"))
    );
    // Started after midnight inside the range that opened the evening before.
    assert_eq!(
        calendar.add_open_time(berlin("2026-01-15 01:00"), HOUR),
        Some(berlin("2026-01-15 02:00"))
    );
    assert_eq!(
        calendar.open_time_between(berlin("2026-01-15 00:00"), berlin("2026-01-16 00:00")),
        Duration::from_secs(8 * 3_600)
    );
}

#[test]
fn a_closed_date_closes_the_ranges_starting_on_it_not_the_night_running_into_it() {
    let week: [Vec<OpeningRange>; 7] = std::array::from_fn(|_| vec![range("22:00-06:00")]);
    let calendar = Calendar::new(Berlin, week, dates(&["2026-01-16"])).unwrap();
    // Thursday night runs into the closed Friday until 06:00; Friday night is closed.
    assert_eq!(
        calendar.open_time_between(berlin("2026-01-15 12:00"), berlin("2026-01-17 12:00")),
        Duration::from_secs(8 * 3_600)
    );
}

#[test]
fn overlapping_ranges_count_once() {
    let week: [Vec<OpeningRange>; 7] =
        std::array::from_fn(|_| vec![range("08:00-12:00"), range("10:00-14:00")]);
    let calendar = Calendar::new(Berlin, week, BTreeSet::new()).unwrap();
    assert_eq!(
        calendar.open_time_between(berlin("2026-01-15 00:00"), berlin("2026-01-16 00:00")),
        Duration::from_secs(6 * 3_600)
    );
}

#[test]
fn spring_forward_counts_real_elapsed_time() {
    // Europe/Berlin jumps from 02:00 CET to 03:00 CEST on Sunday 2026-03-29.
    let always = every_day("00:00-24:00");
    assert_eq!(
        always.add_open_time(utc("2026-03-28T11:00:00Z"), 24 * HOUR),
        Some(utc("2026-03-29T11:00:00Z"))
    );
    assert_eq!(
        always.open_time_between(berlin("2026-03-29 00:00"), berlin("2026-03-30 00:00")),
        23 * HOUR
    );
    let nights = every_day("22:00-06:00");
    assert_eq!(
        nights.open_time_between(berlin("2026-03-28 12:00"), berlin("2026-03-29 12:00")),
        7 * HOUR
    );
    assert_eq!(
        nights.add_open_time(berlin("2026-03-28 22:00"), 7 * HOUR),
        Some(utc("2026-03-29T04:00:00Z"))
    );
    // Business hours across the weekend keep their local times on both offsets.
    let office = weekdays("09:00-18:00", &[]);
    assert_eq!(
        office.add_open_time(utc("2026-03-27T16:58:00Z"), FIVE_MINUTES),
        Some(utc("2026-03-30T07:03:00Z"))
    );
}

#[test]
fn a_range_bound_inside_the_spring_gap_opens_when_the_clocks_jump() {
    let calendar = every_day("02:30-05:00");
    assert_eq!(
        calendar.open_time_between(berlin("2026-03-29 00:00"), berlin("2026-03-29 12:00")),
        2 * HOUR
    );
    assert_eq!(
        calendar.add_open_time(berlin("2026-03-29 00:00"), FIVE_MINUTES),
        Some(utc("2026-03-29T01:05:00Z"))
    );
}

#[test]
fn fall_back_counts_real_elapsed_time() {
    // Europe/Berlin falls back from 03:00 CEST to 02:00 CET on Sunday 2026-10-25.
    let nights = every_day("22:00-06:00");
    assert_eq!(
        nights.open_time_between(berlin("2026-10-24 12:00"), berlin("2026-10-25 12:00")),
        9 * HOUR
    );
    assert_eq!(
        nights.add_open_time(utc("2026-10-24T20:00:00Z"), 9 * HOUR),
        Some(utc("2026-10-25T05:00:00Z"))
    );
    let always = every_day("00:00-24:00");
    assert_eq!(
        always.open_time_between(berlin("2026-10-25 00:00"), berlin("2026-10-26 00:00")),
        25 * HOUR
    );
    // A range whose bounds lie in the repeated hour opens at the first 02:30 and closes at
    // the second 02:45.
    let fold = every_day("02:30-02:45");
    assert_eq!(
        fold.open_time_between(berlin("2026-10-25 00:00"), berlin("2026-10-25 12:00")),
        Duration::from_secs(75 * 60)
    );
}

#[test]
fn time_zones_other_than_berlin_work_too() {
    let tz: Tz = parse_time_zone("America/New_York").unwrap();
    let week: [Vec<OpeningRange>; 7] = std::array::from_fn(|_| vec![range("09:00-17:00")]);
    let calendar = Calendar::new(tz, week, BTreeSet::new()).unwrap();
    // 16:58 EST = 21:58 UTC; 3 minutes left over open at 09:00 EST next day = 14:00 UTC.
    assert_eq!(
        calendar.add_open_time(utc("2026-01-15T21:58:00Z"), FIVE_MINUTES),
        Some(utc("2026-01-16T14:03:00Z"))
    );
}

#[test]
fn zero_open_time_is_reached_at_once_and_reversed_spans_are_empty() {
    let calendar = weekdays("09:00-18:00", &[]);
    let saturday = berlin("2026-01-17 11:00");
    assert_eq!(
        calendar.add_open_time(saturday, Duration::ZERO),
        Some(saturday)
    );
    assert_eq!(
        calendar.open_time_between(berlin("2026-01-15 12:00"), berlin("2026-01-15 10:00")),
        Duration::ZERO
    );
}

#[test]
fn ranges_parse_and_bad_ones_name_the_problem() {
    assert_eq!(range("09:00-18:00").to_string(), "09:00-18:00");
    assert!(range("22:00-06:00").is_overnight());
    assert!(!range("00:00-24:00").is_overnight());
    assert_eq!(range("9:30 - 17:00").to_string(), "09:30-17:00");
    for bad in [
        "09:00",
        "25:00-26:00",
        "09:60-10:00",
        "10:00-10:00",
        "24:00-06:00",
        "9-17",
        "09:00-",
        "ab:cd-10:00",
    ] {
        let error = OpeningRange::parse(bad).unwrap_err();
        assert!(
            error.to_string().contains(bad),
            "{bad}: {error} names the range"
        );
    }
    assert!(parse_time_zone("Europe/Berln").is_err());
    assert!(parse_date("2026-02-30").is_err());
    assert_eq!(
        Calendar::new(Berlin, Default::default(), BTreeSet::new()),
        Err(CalendarError::NeverOpen)
    );
}

#[test]
fn a_calendar_open_only_on_closed_dates_still_terminates() {
    // Only Mondays, and the next Monday closed: due the Monday after.
    let week = [
        vec![range("09:00-10:00")],
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    ];
    let calendar = Calendar::new(Berlin, week, dates(&["2026-01-19"])).unwrap();
    assert_eq!(
        calendar.add_open_time(berlin("2026-01-15 12:00"), FIVE_MINUTES),
        Some(berlin("2026-01-26 09:05"))
    );
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn any_range() -> impl Strategy<Value = OpeningRange> + Clone {
        (0u16..24 * 4, 1u16..24 * 4).prop_filter_map("empty range", |(start, length)| {
            let start = start * 15;
            let end = (start + length * 15) % (24 * 60);
            let end = if end == 0 { 24 * 60 } else { end };
            let text = format!(
                "{:02}:{:02}-{:02}:{:02}",
                start / 60,
                start % 60,
                end / 60,
                end % 60
            );
            OpeningRange::parse(&text).ok()
        })
    }

    fn any_calendar() -> impl Strategy<Value = Calendar> {
        let day = proptest::collection::vec(any_range(), 0..3);
        (
            [
                day.clone(),
                day.clone(),
                day.clone(),
                day.clone(),
                day.clone(),
                day.clone(),
                day,
            ],
            proptest::collection::btree_set(0u32..60, 0..5),
            prop_oneof![
                Just(chrono_tz::Europe::Berlin),
                Just(chrono_tz::America::New_York),
                Just(chrono_tz::Australia::Lord_Howe),
                Just(chrono_tz::UTC),
            ],
        )
            .prop_filter_map("never open", |(week, closed, zone)| {
                let first = NaiveDate::from_ymd_opt(2026, 3, 1)?;
                let closed = closed
                    .into_iter()
                    .filter_map(|offset| first.checked_add_days(chrono::Days::new(offset.into())))
                    .collect();
                Calendar::new(zone, week, closed).ok()
            })
    }

    proptest! {
        /// The deadline is exactly where the counted open time reaches the threshold, and
        /// no earlier instant reaches it — across DST changes in March/April and October.
        #[test]
        fn the_deadline_is_where_open_time_reaches_the_threshold(
            calendar in any_calendar(),
            start_minutes in 0i64..(60 * 24 * 240),
            threshold_minutes in 1u64..(60 * 24 * 3),
        ) {
            let start = utc("2026-03-01T00:00:00Z") + chrono::TimeDelta::minutes(start_minutes);
            let threshold = Duration::from_secs(threshold_minutes * 60);
            let deadline = calendar.add_open_time(start, threshold).unwrap();
            prop_assert!(deadline > start);
            prop_assert_eq!(calendar.open_time_between(start, deadline), threshold);
            let just_before = deadline - chrono::TimeDelta::seconds(1);
            prop_assert!(calendar.open_time_between(start, just_before) < threshold);
        }
    }
}
