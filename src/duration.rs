//! Human durations for configuration: `"90s"`, `"5m"`, `"1h30m"`, `"500ms"`, `"2d"`.
//!
//! Owns parsing and formatting only. A bare number (`"90"`) is refused on purpose: in a
//! config file nobody can tell whether it meant seconds or milliseconds, and guessing wrong
//! turns a 90-second SLA into a 90-millisecond one.

use std::time::Duration;

/// Why a duration text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration; expected something like \"90s\", \"5m\" or \"1h30m\"")]
    Empty,
    #[error("expected a number at \"{rest}\"; durations look like \"90s\", \"5m\" or \"1h30m\"")]
    ExpectedNumber { rest: String },
    #[error("the number {number} has no unit; add one of ms, s, m, h, d (e.g. \"{number}s\")")]
    MissingUnit { number: u64 },
    #[error("unknown unit \"{unit}\"; use ms, s, m, h or d")]
    UnknownUnit { unit: String },
    #[error("duration is too large")]
    Overflow,
}

/// Parses a sequence of `<integer><unit>` parts, optionally separated by spaces, and adds
/// them up. Units: `ms`, `s`, `m`, `h`, `d`.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(DurationError::ExpectedNumber {
                rest: rest.to_owned(),
            });
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| DurationError::Overflow)?;
        rest = rest[digits..].trim_start();
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        if unit_len == 0 {
            return Err(DurationError::MissingUnit { number });
        }
        let unit = &rest[..unit_len];
        let part = match unit {
            "ms" => Some(Duration::from_millis(number)),
            "s" => Some(Duration::from_secs(number)),
            "m" => number.checked_mul(60).map(Duration::from_secs),
            "h" => number.checked_mul(3_600).map(Duration::from_secs),
            "d" => number.checked_mul(86_400).map(Duration::from_secs),
            other => {
                return Err(DurationError::UnknownUnit {
                    unit: other.to_owned(),
                })
            }
        }
        .ok_or(DurationError::Overflow)?;
        total = total.checked_add(part).ok_or(DurationError::Overflow)?;
        rest = rest[unit_len..].trim_start();
    }
    Ok(total)
}

/// Formats a duration the way [`parse_duration`] reads it, largest units first
/// (`5400s` → `"1h30m"`), so `config show` and logs print what a person would write.
pub fn format_duration(duration: Duration) -> String {
    if duration.is_zero() {
        return "0s".to_owned();
    }
    let mut out = String::new();
    let mut secs = duration.as_secs();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    let millis = duration.subsec_millis();
    if millis > 0 {
        out.push_str(&format!("{millis}ms"));
    }
    if out.is_empty() {
        // Below a millisecond: not configurable, but never print an empty string.
        out.push_str("0s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_units_parse() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7_200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    }

    #[test]
    fn compound_durations_add_up_with_or_without_spaces() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(
            parse_duration(" 1h 30m 5s "),
            Ok(Duration::from_secs(5_405))
        );
    }

    #[test]
    fn a_bare_number_is_refused_because_its_unit_is_ambiguous() {
        assert_eq!(
            parse_duration("90"),
            Err(DurationError::MissingUnit { number: 90 })
        );
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert_eq!(
            parse_duration("5 minutes"),
            Err(DurationError::UnknownUnit {
                unit: "minutes".to_owned()
            })
        );
        assert_eq!(
            parse_duration("-5s"),
            Err(DurationError::ExpectedNumber {
                rest: "-5s".to_owned()
            })
        );
        assert_eq!(
            parse_duration("99999999999999999999s"),
            Err(DurationError::Overflow)
        );
        assert_eq!(
            parse_duration("999999999999999999d"),
            Err(DurationError::Overflow)
        );
    }

    #[test]
    fn formatting_round_trips_through_parsing() {
        for text in ["0s", "90ms", "35s", "1m", "1h30m", "2d3h4m5s250ms"] {
            let parsed = parse_duration(text).unwrap_or_default();
            assert_eq!(format_duration(parsed), text);
        }
        assert_eq!(format_duration(Duration::from_secs(5_400)), "1h30m");
    }
}
