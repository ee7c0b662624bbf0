//! The SLA policy: thresholds per clock with their overrides, the warning share, the
//! messenger types without read receipts, and the calendars assigned to queues.
//!
//! Threshold precedence, most specific first: the queue's override
//! (`sla.queues.<id>.<clock>`), then the messenger type's (`sla.messenger_types.<type>.
//! <clock>`; not for `answer`, which has no messenger type), then the default
//! (`sla.<clock>`). A queue's calendar (`sla.queues.<id>.calendar`) applies to every clock
//! of that queue; without one, wall-clock time counts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::{Calendar, ClockKind};
use crate::config::{defaults, SlaConfig};

/// A share of a threshold, in basis points (0.8 = 8000), strictly between 0 and 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Share(u16);

impl Share {
    /// `None` unless `0 < basis_points < 10_000`.
    pub fn from_basis_points(basis_points: u16) -> Option<Share> {
        (1..10_000)
            .contains(&basis_points)
            .then_some(Share(basis_points))
    }

    /// `0.8` → 80 %. `None` outside (0, 1) or below one basis point.
    pub fn from_fraction(fraction: f64) -> Option<Share> {
        if !(fraction > 0.0 && fraction < 1.0) {
            return None;
        }
        let points = (fraction * 10_000.0).round();
        // The range check above bounds `points` to 0..=10_000, so the cast is exact.
        Share::from_basis_points(points as u16)
    }

    pub fn basis_points(&self) -> u16 {
        self.0
    }

    /// This share of `duration`.
    pub fn of(&self, duration: Duration) -> Duration {
        let nanos = duration.as_nanos() * u128::from(self.0) / 10_000;
        let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
        // The remainder of a division by 10^9 always fits.
        Duration::new(secs, (nanos % 1_000_000_000) as u32)
    }
}

impl Default for Share {
    fn default() -> Share {
        Share(8_000)
    }
}

/// One threshold per clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub answer: Duration,
    pub first_response: Duration,
    pub next_response: Duration,
    pub delivery: Duration,
    pub read: Duration,
}

impl Thresholds {
    pub fn get(&self, kind: ClockKind) -> Duration {
        match kind {
            ClockKind::Answer => self.answer,
            ClockKind::FirstResponse => self.first_response,
            ClockKind::NextResponse => self.next_response,
            ClockKind::Delivery => self.delivery,
            ClockKind::Read => self.read,
        }
    }
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            answer: defaults::SLA_ANSWER,
            first_response: defaults::SLA_FIRST_RESPONSE,
            next_response: defaults::SLA_NEXT_RESPONSE,
            delivery: defaults::SLA_DELIVERY,
            read: defaults::SLA_READ,
        }
    }
}

/// Thresholds that override the defaults where set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ThresholdOverrides {
    pub answer: Option<Duration>,
    pub first_response: Option<Duration>,
    pub next_response: Option<Duration>,
    pub delivery: Option<Duration>,
    pub read: Option<Duration>,
}

impl ThresholdOverrides {
    pub fn get(&self, kind: ClockKind) -> Option<Duration> {
        match kind {
            ClockKind::Answer => self.answer,
            ClockKind::FirstResponse => self.first_response,
            ClockKind::NextResponse => self.next_response,
            ClockKind::Delivery => self.delivery,
            ClockKind::Read => self.read,
        }
    }

    pub fn set(&mut self, kind: ClockKind, threshold: Duration) {
        let slot = match kind {
            ClockKind::Answer => &mut self.answer,
            ClockKind::FirstResponse => &mut self.first_response,
            ClockKind::NextResponse => &mut self.next_response,
            ClockKind::Delivery => &mut self.delivery,
            ClockKind::Read => &mut self.read,
        };
        *slot = Some(threshold);
    }
}

/// Everything the SLA rules are configured with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SlaPolicy {
    pub thresholds: Thresholds,
    pub warn_share: Share,
    /// Messenger types (`sms`) whose outbound messages get no `read` clock.
    pub no_read_receipt: BTreeSet<String>,
    pub queue_thresholds: BTreeMap<String, ThresholdOverrides>,
    pub messenger_type_thresholds: BTreeMap<String, ThresholdOverrides>,
    /// Queue id → calendar name (a key of `calendars`).
    pub queue_calendars: BTreeMap<String, String>,
    pub calendars: BTreeMap<String, Calendar>,
}

impl SlaPolicy {
    /// The policy a validated configuration describes.
    pub fn from_config(config: &SlaConfig) -> SlaPolicy {
        SlaPolicy {
            thresholds: Thresholds {
                answer: config.answer,
                first_response: config.first_response,
                next_response: config.next_response,
                delivery: config.delivery,
                read: config.read,
            },
            warn_share: config.warn_at,
            no_read_receipt: config.no_read_receipt.iter().cloned().collect(),
            queue_thresholds: config
                .queues
                .iter()
                .map(|(id, queue)| (id.clone(), queue.thresholds))
                .collect(),
            messenger_type_thresholds: config.messenger_types.clone(),
            queue_calendars: config
                .queues
                .iter()
                .filter_map(|(id, queue)| Some((id.clone(), queue.calendar.clone()?)))
                .collect(),
            calendars: config.calendars.clone(),
        }
    }

    /// The threshold of a `kind` clock in `queue_id` for `messenger_type`.
    pub fn threshold(
        &self,
        kind: ClockKind,
        queue_id: Option<&str>,
        messenger_type: Option<&str>,
    ) -> Duration {
        let by_queue = queue_id
            .and_then(|queue| self.queue_thresholds.get(queue))
            .and_then(|overrides| overrides.get(kind));
        let by_type = messenger_type
            .filter(|_| kind != ClockKind::Answer)
            .and_then(|messenger| self.messenger_type_thresholds.get(messenger))
            .and_then(|overrides| overrides.get(kind));
        by_queue
            .or(by_type)
            .unwrap_or_else(|| self.thresholds.get(kind))
    }

    /// The calendar name assigned to `queue_id`, if any.
    pub fn calendar_of(&self, queue_id: Option<&str>) -> Option<&str> {
        queue_id
            .and_then(|queue| self.queue_calendars.get(queue))
            .map(String::as_str)
    }

    /// True when messages of `messenger_type` get a `read` clock.
    pub fn has_read_receipts(&self, messenger_type: Option<&str>) -> bool {
        messenger_type.is_none_or(|messenger| !self.no_read_receipt.contains(messenger))
    }

    /// The instant `amount` of counted time after `start`: open time on `calendar` when it
    /// names a known calendar, wall-clock time otherwise.
    pub fn add_time(
        &self,
        calendar: Option<&str>,
        start: DateTime<Utc>,
        amount: Duration,
    ) -> DateTime<Utc> {
        calendar
            .and_then(|name| self.calendars.get(name))
            .and_then(|calendar| calendar.add_open_time(start, amount))
            .unwrap_or_else(|| add_wall_time(start, amount))
    }

    /// The counted time between two instants (see [`SlaPolicy::add_time`]).
    pub fn time_between(
        &self,
        calendar: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Duration {
        match calendar.and_then(|name| self.calendars.get(name)) {
            Some(calendar) => calendar.open_time_between(from, to),
            None => (to - from).to_std().unwrap_or(Duration::ZERO),
        }
    }
}

/// `start + amount`, saturating at the end of representable time.
pub(super) fn add_wall_time(start: DateTime<Utc>, amount: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(amount)
        .ok()
        .and_then(|delta| start.checked_add_signed(delta))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_override_beats_a_messenger_type_override_beats_the_default() {
        let mut policy = SlaPolicy::default();
        policy.thresholds.delivery = Duration::from_secs(60);
        let mut by_type = ThresholdOverrides::default();
        by_type.set(ClockKind::Delivery, Duration::from_secs(120));
        by_type.set(ClockKind::Answer, Duration::from_secs(1));
        policy
            .messenger_type_thresholds
            .insert("sms".to_owned(), by_type);
        let mut by_queue = ThresholdOverrides::default();
        by_queue.set(ClockKind::Delivery, Duration::from_secs(30));
        policy.queue_thresholds.insert("q".to_owned(), by_queue);

        let delivery = |queue, messenger| policy.threshold(ClockKind::Delivery, queue, messenger);
        assert_eq!(delivery(None, None), Duration::from_secs(60));
        assert_eq!(delivery(None, Some("sms")), Duration::from_secs(120));
        assert_eq!(delivery(Some("q"), Some("sms")), Duration::from_secs(30));
        assert_eq!(
            delivery(Some("other"), Some("whatsapp")),
            Duration::from_secs(60)
        );
        // `answer` has no messenger type: a type override for it is ignored.
        assert_eq!(
            policy.threshold(ClockKind::Answer, None, Some("sms")),
            policy.thresholds.answer
        );
    }

    #[test]
    fn shares_are_strictly_between_zero_and_one() {
        assert_eq!(Share::from_fraction(0.8), Share::from_basis_points(8_000));
        assert_eq!(Share::from_fraction(0.0), None);
        assert_eq!(Share::from_fraction(1.0), None);
        assert_eq!(Share::from_fraction(f64::NAN), None);
        assert_eq!(
            Share::default().of(Duration::from_secs(100)),
            Duration::from_secs(80)
        );
        let smallest = Share::from_basis_points(1).unwrap();
        assert_eq!(
            smallest.of(Duration::from_secs(1)),
            Duration::from_micros(100)
        );
    }
}
