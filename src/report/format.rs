//! How the report writes durations, shares and instants for people.
//!
//! Plain text only (the caller escapes); deterministic (no locale, fixed precision).

use chrono::{DateTime, SecondsFormat, Utc};

/// What a missing figure reads as.
pub const NO_DATA: &str = "—";

/// A duration in milliseconds for humans: `850 ms`, `42s`, `4m 12s`, `1h 3m`, `2d 4h`.
/// From a second on it is rounded to whole seconds, and only the two largest units are
/// kept: nobody reads a handle time of `1h 3m 12s 400ms` more accurately than `1h 3m`.
pub fn duration_ms(ms: u64) -> String {
    if ms < 1_000 {
        return format!("{ms} ms");
    }
    let seconds = (ms + 500) / 1_000;
    let (days, hours, minutes, secs) = (
        seconds / 86_400,
        seconds / 3_600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {minutes}m")
    } else if minutes > 0 {
        format!("{minutes}m {secs}s")
    } else {
        format!("{secs}s")
    }
}

/// [`duration_ms`], or [`NO_DATA`].
pub fn optional_duration_ms(ms: Option<u64>) -> String {
    ms.map_or_else(|| NO_DATA.to_owned(), duration_ms)
}

/// A fraction in `[0, 1]` as a percentage with one decimal: `0.8125` → `81.3%`.
pub fn percent(fraction: f64) -> String {
    if !fraction.is_finite() {
        return NO_DATA.to_owned();
    }
    // Rounded half away from zero (81.25 → 81.3), as people round, not to even.
    let tenths = (fraction * 1_000.0).round();
    let text = format!("{:.1}%", tenths / 10.0);
    // A tiny negative rounding artefact must not print as `-0.0%`.
    match text.strip_prefix('-') {
        Some(rest) if rest == "0.0%" => rest.to_owned(),
        _ => text,
    }
}

/// [`percent`], or [`NO_DATA`].
pub fn optional_percent(fraction: Option<f64>) -> String {
    fraction.map_or_else(|| NO_DATA.to_owned(), percent)
}

/// An instant as RFC 3339 in UTC to the second: `2026-03-02T09:00:00Z`.
pub fn instant(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_person_would_say_them() {
        assert_eq!(duration_ms(0), "0 ms");
        assert_eq!(duration_ms(850), "850 ms");
        assert_eq!(duration_ms(1_000), "1s");
        assert_eq!(duration_ms(42_400), "42s");
        assert_eq!(duration_ms(252_000), "4m 12s");
        assert_eq!(duration_ms(3_600_000), "1h 0m");
        assert_eq!(duration_ms(3_792_000), "1h 3m");
        assert_eq!(duration_ms(187_200_000), "2d 4h");
    }

    #[test]
    fn durations_round_to_the_nearest_second() {
        assert_eq!(duration_ms(59_499), "59s");
        assert_eq!(duration_ms(59_500), "1m 0s");
    }

    #[test]
    fn missing_figures_read_as_a_dash() {
        assert_eq!(optional_duration_ms(None), NO_DATA);
        assert_eq!(optional_percent(None), NO_DATA);
        assert_eq!(percent(f64::NAN), NO_DATA);
    }

    #[test]
    fn percentages_have_one_decimal() {
        assert_eq!(percent(0.8125), "81.3%");
        assert_eq!(percent(1.0), "100.0%");
        assert_eq!(percent(0.0), "0.0%");
        assert_eq!(percent(-0.000_01), "0.0%");
    }

    #[test]
    fn instants_are_utc_to_the_second() {
        let at = DateTime::<Utc>::UNIX_EPOCH + chrono::TimeDelta::milliseconds(1_772_442_000_123);
        assert_eq!(instant(at), "2026-03-02T09:00:00Z");
    }
}
