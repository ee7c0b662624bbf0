//! Reading Genesys timestamps without `chrono`'s general parser.
//!
//! Every time in a Genesys payload is written the same way: `2026-03-01T10:00:00.123Z`
//! (milliseconds, UTC), sometimes without the fraction, rarely with an offset. `chrono`'s
//! RFC 3339 reader (what `DateTime<Utc>`'s `Deserialize` calls) accepts far more — spaces,
//! a lower-case `t`, `UTC`, leap seconds, long fractions — through a general format
//! machine that cost ~17 000 instructions per snapshot, a sixth of the serde read it was written for. Here the
//! fixed layout is read byte by byte; anything else goes to `chrono`, so every text it
//! accepted is still accepted, with the same value, and every text it refused is still
//! refused (the tests hold the two to the same answer).

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Utc};

/// Reads an RFC 3339 time as `DateTime<Utc>`'s `Deserialize` does: the Genesys layout on
/// the fast path, anything else through `chrono`.
pub(crate) fn parse(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    match parse_genesys(text) {
        Some(time) => Ok(time),
        None => text.parse(),
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.f…](Z|±HH:MM)` with 1 to 9 fraction digits and a valid date,
/// time and offset; `None` for any other text (which may still be a time `chrono` reads,
/// such as a leap second or a space for the `T`).
fn parse_genesys(text: &str) -> Option<DateTime<Utc>> {
    let bytes = text.as_bytes();
    if bytes.len() < 20
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || bytes[10] != b'T'
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return None;
    }
    let year = digits(&bytes[0..4])?;
    let month = digits(&bytes[5..7])?;
    let day = digits(&bytes[8..10])?;
    let hour = digits(&bytes[11..13])?;
    let minute = digits(&bytes[14..16])?;
    let second = digits(&bytes[17..19])?;
    let mut rest = &bytes[19..];
    let mut nanosecond = 0;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let count = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if count == 0 || count > 9 {
            return None;
        }
        nanosecond = digits(&fraction[..count])? * NANOS_PER_DIGIT[count];
        rest = &fraction[count..];
    }
    let offset_seconds = match rest {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hours = digits(&[*h1, *h2])?;
            let minutes = digits(&[*m1, *m2])?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let seconds = (hours * 3600 + minutes * 60) as i32;
            if *sign == b'-' {
                -seconds
            } else {
                seconds
            }
        }
        _ => return None,
    };
    // A leap second (`:60`) is left to chrono, which has its own way of holding it.
    if second > 59 {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(year as i32, month, day)?;
    let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanosecond)?;
    let local = NaiveDateTime::new(date, time);
    let utc = if offset_seconds == 0 {
        local
    } else {
        local.checked_sub_offset(FixedOffset::east_opt(offset_seconds)?)?
    };
    Some(utc.and_utc())
}

/// What one unit of a fraction with that many digits is in nanoseconds.
const NANOS_PER_DIGIT: [u32; 10] = [
    1_000_000_000,
    100_000_000,
    10_000_000,
    1_000_000,
    100_000,
    10_000,
    1_000,
    100,
    10,
    1,
];

/// The decimal value of a run of ASCII digits (at most nine), `None` if any is not one.
fn digits(bytes: &[u8]) -> Option<u32> {
    bytes.iter().try_fold(0u32, |value, byte| {
        let digit = byte.wrapping_sub(b'0');
        (digit < 10).then(|| value * 10 + u32::from(digit))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn chrono_reads(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
        text.parse::<DateTime<Utc>>()
    }

    #[test]
    fn the_genesys_layouts_are_read_on_the_fast_path_with_chrono_s_value() {
        for text in [
            "2026-03-01T10:00:00.123Z",
            "2026-03-01T10:00:00Z",
            "2026-03-01T10:00:00.1Z",
            "2026-03-01T10:00:00.123456789Z",
            "2026-03-01T10:00:00.123+02:00",
            "2026-03-01T00:30:00-05:30",
            "2024-02-29T23:59:59.999Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999-23:59",
            "2026-12-31T23:00:00-01:00",
        ] {
            let fast = parse_genesys(text);
            assert!(fast.is_some(), "{text} takes the fast path");
            assert_eq!(fast, Some(chrono_reads(text).unwrap()), "{text}");
        }
    }

    #[test]
    fn other_texts_chrono_reads_are_still_read_the_same() {
        for text in [
            "2026-03-01 10:00:00Z",
            "2026-03-01t10:00:00z",
            "2026-03-01T10:00:00UTC",
            "2026-03-01T10:00:00.1234567891Z",
            "2026-03-01T10:00:00+0200",
            "2016-12-31T23:59:60Z",
            "2026-03-01T10:00:00 +02:00",
            "+2026-03-01T10:00:00Z",
        ] {
            let chrono = chrono_reads(text);
            assert_eq!(parse(text).ok(), chrono.ok(), "{text}");
        }
    }

    #[test]
    fn texts_chrono_refuses_are_refused() {
        for text in [
            "",
            "2026-03-01",
            "2026-02-29T10:00:00Z",
            "2026-13-01T10:00:00Z",
            "2026-03-00T10:00:00Z",
            "2026-03-01T24:00:00Z",
            "2026-03-01T10:60:00Z",
            "2026-03-01T10:00:00",
            "2026-03-01T10:00:00.Z",
            "2026-03-01T10:00:00+24:00",
            "2026-03-01T10:00:00Zjunk",
            "2026-03-01T10:00:00.123+02:00x",
            "2026-03-01T1a:00:00Z",
            "２０２６-03-01T10:00:00Z",
        ] {
            assert!(chrono_reads(text).is_err(), "chrono refuses {text}");
            assert!(parse(text).is_err(), "{text}");
        }
    }

    /// Texts near the Genesys layout: every field drawn from a range wider than valid,
    /// the separators sometimes replaced, fractions of 0 to 11 digits, several offsets.
    fn near_genesys() -> impl Strategy<Value = String> {
        (
            (0u32..=10_000, 0u32..=13, 0u32..=32),
            (0u32..=25, 0u32..=61, 0u32..=61),
            prop::option::of("[0-9]{0,11}"),
            prop_oneof![
                Just("Z".to_owned()),
                Just("z".to_owned()),
                Just(String::new()),
                Just(" Z".to_owned()),
                (any::<bool>(), 0u32..=25, 0u32..=61).prop_map(|(west, h, m)| format!(
                    "{}{h:02}:{m:02}",
                    if west { '-' } else { '+' }
                )),
                (0u32..=25, 0u32..=61).prop_map(|(h, m)| format!("+{h:02}{m:02}")),
            ],
            prop_oneof![Just('T'), Just('T'), Just('T'), Just(' '), Just('x')],
        )
            .prop_map(
                |((year, month, day), (hour, minute, second), fraction, offset, separator)| {
                    let fraction = fraction.map(|digits| format!(".{digits}"));
                    format!(
                        "{year:04}-{month:02}-{day:02}{separator}{hour:02}:{minute:02}:{second:02}{}{offset}",
                        fraction.unwrap_or_default()
                    )
                },
            )
    }

    proptest! {
        #[test]
        fn every_text_near_the_layout_reads_as_chrono_reads_it(text in near_genesys()) {
            let chrono = chrono_reads(&text).ok();
            prop_assert_eq!(parse(&text).ok(), chrono);
            if let Some(fast) = parse_genesys(&text) {
                prop_assert_eq!(Some(fast), chrono);
            }
        }

        #[test]
        fn any_text_reads_as_chrono_reads_it(text in "\\PC{0,40}") {
            prop_assert_eq!(parse(&text).ok(), chrono_reads(&text).ok());
        }

        #[test]
        fn every_valid_instant_round_trips_through_the_genesys_layout(
            seconds in -62_000_000_000i64..253_000_000_000i64,
            nanos in 0u32..1_000_000_000,
            offset_minutes in -1439i32..=1439,
        ) {
            let offset = FixedOffset::east_opt(offset_minutes * 60).unwrap();
            let instant = DateTime::<Utc>::from_timestamp(seconds, nanos).unwrap();
            let local = instant.with_timezone(&offset);
            for text in [
                local.to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
                local.to_rfc3339_opts(chrono::SecondsFormat::Nanos, false),
                instant.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                instant.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ] {
                prop_assert_eq!(parse_genesys(&text), Some(chrono_reads(&text).unwrap()), "{}", text);
            }
        }
    }
}
