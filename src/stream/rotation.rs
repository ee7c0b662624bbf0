//! Make-before-break rotation planning: when the StreamActor must move to a fresh channel.
//!
//! A channel dies at its `expires` (24 h), when the token that created it expires, and
//! shortly after Genesys sends `v2.system.socket_closing` (about one minute, API.md §3.3,
//! §3.4). Nothing is replayed after a gap, so the daemon rotates *before* each of these:
//! new channel, subscribe, connect, and only then close the old one. This module decides
//! when and why; the shell does the rotation and reports back.
//!
//! Owns the schedule only; never creates channels or reads the clock. Times are wall-clock
//! `DateTime<Utc>` because both expiries are wall-clock facts from Genesys.
//!
//! Idempotence: an overdue rotation is planned for `now` (never in the past), and once
//! [`RotationSchedule::start_due`] has handed it out, nothing more is planned until the
//! shell reports [`RotationSchedule::completed`] or [`RotationSchedule::abandoned`], so a
//! timer that fires twice cannot start two rotations.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

/// How long a Genesys channel lives when its `expires` is not reported (API.md §3.4).
pub const CHANNEL_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// Why the stream rotates. Low-cardinality: usable as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RotationReason {
    /// Genesys announced it will close the socket: rotate now.
    SocketClosing,
    /// The channel's `expires` is near.
    ChannelExpiry,
    /// The token the channel was created with is near its expiry; the channel dies with it.
    TokenExpiry,
}

impl RotationReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RotationReason::SocketClosing => "socket_closing",
            RotationReason::ChannelExpiry => "channel_expiry",
            RotationReason::TokenExpiry => "token_expiry",
        }
    }
}

/// What the current channel's life depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelLease {
    pub channel_expires: DateTime<Utc>,
    /// Expiry of the token that *created* the channel. A token refreshed later does not
    /// extend this channel: only a new channel created with the new token does. So a
    /// `TokenExpiry` rotation needs a token that outlives this one (the shell refreshes
    /// before it creates the new channel), or the next plan is due at once again.
    pub token_expires: Option<DateTime<Utc>>,
}

impl ChannelLease {
    /// The lease of a channel opened at `opened_at`. A missing `expires` is taken to be
    /// the documented 24 h lifetime rather than "never", so rotation still happens.
    pub fn new(
        opened_at: DateTime<Utc>,
        channel_expires: Option<DateTime<Utc>>,
        token_expires: Option<DateTime<Utc>>,
    ) -> Self {
        let channel_expires = channel_expires.unwrap_or_else(|| {
            opened_at
                .checked_add_signed(to_time_delta(CHANNEL_LIFETIME))
                .unwrap_or(DateTime::<Utc>::MAX_UTC)
        });
        ChannelLease {
            channel_expires,
            token_expires,
        }
    }
}

/// The next rotation: when, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedRotation {
    /// Never earlier than the `now` it was planned at.
    pub at: DateTime<Utc>,
    pub reason: RotationReason,
}

/// The margin to rotate with before an expiry that is `lifetime` away when it is granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationMargin {
    pub margin: Duration,
    /// The configured margin did not fit the lifetime and was replaced by a quarter of it.
    pub fell_back: bool,
}

/// Checks `stream.rotate_before_expiry` against a lifetime the server actually granted. A
/// margin of half the lifetime or more would rotate at once, again and again (each rotation
/// costs a channel, a subscription and a socket): such a margin falls back to a quarter of
/// the lifetime, which leaves three quarters of it between rotations.
pub fn rotation_margin(configured: Duration, lifetime: Duration) -> RotationMargin {
    if configured.saturating_mul(2) < lifetime {
        RotationMargin {
            margin: configured,
            fell_back: false,
        }
    } else {
        RotationMargin {
            margin: lifetime / 4,
            fell_back: true,
        }
    }
}

/// The rotation schedule of one stream (one channel at a time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationSchedule {
    margin: TimeDelta,
    /// Before the token's expiry (its own margin: tokens may live far shorter than
    /// channels).
    token_margin: TimeDelta,
    lease: ChannelLease,
    socket_closing_at: Option<DateTime<Utc>>,
    in_progress: Option<RotationReason>,
}

impl RotationSchedule {
    /// `rotate_before_expiry`: how long before an expiry the rotation starts; it must cover
    /// creating a channel, subscribing and connecting, with room for a retry.
    pub fn new(rotate_before_expiry: Duration, lease: ChannelLease) -> Self {
        Self::with_margins(rotate_before_expiry, rotate_before_expiry, lease)
    }

    /// A schedule rotating `channel_margin` before the channel's expiry and `token_margin`
    /// before the token's (each checked with [`rotation_margin`] by the caller).
    pub fn with_margins(
        channel_margin: Duration,
        token_margin: Duration,
        lease: ChannelLease,
    ) -> Self {
        RotationSchedule {
            margin: to_time_delta(channel_margin),
            token_margin: to_time_delta(token_margin),
            lease,
            socket_closing_at: None,
            in_progress: None,
        }
    }

    pub fn lease(&self) -> ChannelLease {
        self.lease
    }

    /// The rotation handed out by [`Self::start_due`] and not yet finished.
    pub fn in_progress(&self) -> Option<RotationReason> {
        self.in_progress
    }

    /// `v2.system.socket_closing` arrived on the *current* socket. (One that arrives on the
    /// old socket during the overlap concerns a socket that is being dropped anyway; the
    /// shell should not report it.)
    pub fn socket_closing(&mut self, at: DateTime<Utc>) {
        // Keep the earliest notice: a repeated notice does not postpone anything.
        self.socket_closing_at = Some(self.socket_closing_at.map_or(at, |first| first.min(at)));
    }

    /// When the next rotation is due and why; `None` while one is in progress.
    pub fn next_rotation_at(&self, now: DateTime<Utc>) -> Option<PlannedRotation> {
        if self.in_progress.is_some() {
            return None;
        }
        let planned = self.earliest_due();
        Some(PlannedRotation {
            at: planned.at.max(now),
            reason: planned.reason,
        })
    }

    /// If a rotation is due at `now`, hands it out once and marks it in progress.
    pub fn start_due(&mut self, now: DateTime<Utc>) -> Option<RotationReason> {
        let planned = self.next_rotation_at(now)?;
        if planned.at > now {
            return None;
        }
        self.in_progress = Some(planned.reason);
        Some(planned.reason)
    }

    /// The new channel is subscribed and connected and the old one is closed: plan from
    /// the new channel's lease. A `socket_closing` concerned the old socket and is cleared.
    pub fn completed(&mut self, lease: ChannelLease) {
        self.lease = lease;
        self.socket_closing_at = None;
        self.in_progress = None;
    }

    /// The rotation failed and the old channel is still the current one: the same reason
    /// is due again at once. The shell's backoff paces the next attempt.
    pub fn abandoned(&mut self) {
        self.in_progress = None;
    }

    /// The earliest reason to rotate, unclamped. A socket_closing wins: it means now.
    fn earliest_due(&self) -> PlannedRotation {
        if let Some(at) = self.socket_closing_at {
            return PlannedRotation {
                at,
                reason: RotationReason::SocketClosing,
            };
        }
        let channel = PlannedRotation {
            at: self.before(self.lease.channel_expires),
            reason: RotationReason::ChannelExpiry,
        };
        match self.lease.token_expires {
            Some(token_expires) if self.before_token(token_expires) < channel.at => {
                PlannedRotation {
                    at: self.before_token(token_expires),
                    reason: RotationReason::TokenExpiry,
                }
            }
            _ => channel,
        }
    }

    fn before(&self, expiry: DateTime<Utc>) -> DateTime<Utc> {
        expiry
            .checked_sub_signed(self.margin)
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    fn before_token(&self, expiry: DateTime<Utc>) -> DateTime<Utc> {
        expiry
            .checked_sub_signed(self.token_margin)
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
}

/// A std duration as a chrono delta; saturates (a margin beyond chrono's range means
/// "always due", which is the safe side).
fn to_time_delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(minute: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_741_000_000 + minute * 60, 0).unwrap()
    }

    const MARGIN: Duration = Duration::from_secs(10 * 60);

    fn schedule(channel_expires: i64, token_expires: Option<i64>) -> RotationSchedule {
        RotationSchedule::new(
            MARGIN,
            ChannelLease::new(at(0), Some(at(channel_expires)), token_expires.map(at)),
        )
    }

    #[test]
    fn rotation_is_planned_a_margin_before_the_channel_expires() {
        let schedule = schedule(1_440, None);
        assert_eq!(
            schedule.next_rotation_at(at(5)),
            Some(PlannedRotation {
                at: at(1_430),
                reason: RotationReason::ChannelExpiry
            })
        );
    }

    #[test]
    fn a_token_expiring_first_plans_a_token_rotation() {
        let schedule = schedule(1_440, Some(600));
        assert_eq!(
            schedule.next_rotation_at(at(5)),
            Some(PlannedRotation {
                at: at(590),
                reason: RotationReason::TokenExpiry
            })
        );
    }

    #[test]
    fn a_missing_channel_expiry_means_the_documented_24_hours() {
        let lease = ChannelLease::new(at(0), None, None);
        assert_eq!(lease.channel_expires, at(1_440));
    }

    #[test]
    fn socket_closing_means_rotate_now() {
        let mut schedule = schedule(1_440, Some(2_000));
        schedule.socket_closing(at(30));
        assert_eq!(
            schedule.next_rotation_at(at(30)),
            Some(PlannedRotation {
                at: at(30),
                reason: RotationReason::SocketClosing
            })
        );
        assert_eq!(
            schedule.start_due(at(30)),
            Some(RotationReason::SocketClosing)
        );
    }

    #[test]
    fn an_overdue_rotation_is_planned_for_now_not_the_past() {
        let schedule = schedule(1_440, None);
        assert_eq!(
            schedule.next_rotation_at(at(1_435)).map(|plan| plan.at),
            Some(at(1_435))
        );
    }

    #[test]
    fn a_due_rotation_is_handed_out_only_once() {
        let mut schedule = schedule(1_440, None);
        assert_eq!(schedule.start_due(at(1_429)), None, "not due yet");
        assert_eq!(
            schedule.start_due(at(1_431)),
            Some(RotationReason::ChannelExpiry)
        );
        assert_eq!(schedule.start_due(at(1_432)), None);
        assert_eq!(schedule.next_rotation_at(at(1_432)), None);
        // A socket_closing during the rotation does not start a second one.
        schedule.socket_closing(at(1_433));
        assert_eq!(schedule.start_due(at(1_433)), None);
        assert_eq!(schedule.in_progress(), Some(RotationReason::ChannelExpiry));
    }

    #[test]
    fn completing_plans_from_the_new_lease_and_forgets_the_old_socket_closing() {
        let mut schedule = schedule(1_440, None);
        schedule.socket_closing(at(100));
        assert_eq!(
            schedule.start_due(at(100)),
            Some(RotationReason::SocketClosing)
        );
        schedule.completed(ChannelLease::new(at(101), Some(at(1_541)), None));
        assert_eq!(
            schedule.next_rotation_at(at(102)),
            Some(PlannedRotation {
                at: at(1_531),
                reason: RotationReason::ChannelExpiry
            })
        );
    }

    #[test]
    fn an_abandoned_rotation_is_due_again() {
        let mut schedule = schedule(1_440, None);
        schedule.socket_closing(at(100));
        schedule.start_due(at(100));
        schedule.abandoned();
        assert_eq!(
            schedule.start_due(at(101)),
            Some(RotationReason::SocketClosing)
        );
    }

    #[test]
    fn a_repeated_socket_closing_does_not_postpone_the_rotation() {
        let mut schedule = schedule(1_440, None);
        schedule.socket_closing(at(100));
        schedule.socket_closing(at(120));
        assert_eq!(
            schedule.start_due(at(100)),
            Some(RotationReason::SocketClosing)
        );
    }

    #[test]
    fn a_huge_margin_saturates_to_always_due() {
        let mut schedule = RotationSchedule::new(
            Duration::MAX,
            ChannelLease::new(at(0), Some(at(1_440)), None),
        );
        assert_eq!(
            schedule.start_due(at(1)),
            Some(RotationReason::ChannelExpiry)
        );
    }

    #[test]
    fn a_margin_that_fits_the_granted_lifetime_is_kept() {
        let check = rotation_margin(Duration::from_secs(600), Duration::from_secs(86_400));
        assert_eq!(
            check,
            RotationMargin {
                margin: Duration::from_secs(600),
                fell_back: false
            }
        );
    }

    #[test]
    fn a_margin_too_long_for_the_lifetime_falls_back_to_a_quarter_of_it() {
        // A 5-minute token with the 10-minute default margin.
        let check = rotation_margin(Duration::from_secs(600), Duration::from_secs(300));
        assert_eq!(
            check,
            RotationMargin {
                margin: Duration::from_secs(75),
                fell_back: true
            }
        );
        // Exactly half would rotate every half-life: also refused.
        assert!(rotation_margin(Duration::from_secs(5), Duration::from_secs(10)).fell_back);
    }

    #[test]
    fn a_short_token_still_gets_a_token_expiry_rotation_well_before_it_dies() {
        let now = at(0);
        let token_life = Duration::from_secs(300);
        let token_margin = rotation_margin(Duration::from_secs(600), token_life).margin;
        let lease = ChannelLease::new(now, None, Some(now + TimeDelta::seconds(300)));
        let mut schedule =
            RotationSchedule::with_margins(Duration::from_secs(600), token_margin, lease);
        let planned = schedule.next_rotation_at(now).unwrap();
        assert_eq!(planned.reason, RotationReason::TokenExpiry);
        assert_eq!(planned.at, now + TimeDelta::seconds(225));
        assert_eq!(schedule.start_due(now), None, "not due at once");
    }
}
