//! The one token bucket all Genesys REST calls go through (API.md §7, ARCHITECTURE.md §4).
//!
//! Genesys limits a client-credentials token to 300 requests per minute by default, with
//! lower per-endpoint limits reported in `inin-ratelimit-*` headers, and answers 429 with
//! `Retry-After` when a limit is hit. One shared bucket keeps the whole daemon under the
//! configured rate; server feedback tightens it:
//!
//! - a 429 pauses every caller: `Retry-After` first, then `inin-ratelimit-reset`, then a
//!   backoff starting at 3 s ([`TokenBucket::throttled`]);
//! - headers saying the server's window is used up pause until it resets
//!   ([`TokenBucket::observe_headers`]);
//! - low-priority work (reconciliation re-reads) leaves a reserve of tokens to live writes,
//!   so a catch-up sweep after a gap never delays the writes of conversations happening
//!   now ([`TokenBucket::try_acquire_low_priority`]);
//! - a pause the server asks for is clamped to [`MAX_SERVER_PAUSE`] (configurable per
//!   bucket): one absurd `Retry-After` (a year, a decade) must not freeze the daemon. The
//!   caller learns both the asked and the applied pause ([`ServerPause`]) to log and count.
//!
//! Callers that find no token queue in a [`WaitQueue`]: live before background, first come
//! first served within a priority, and only the head of the queue needs a timer — a new
//! token is handed to exactly the waiter whose turn it is ([`WaitQueue::dispatch`]).
//!
//! Owns the arithmetic only: never sleeps, never reads the clock. Time is a monotonic
//! offset (`Duration` since an arbitrary origin the shell picks, e.g. its start `Instant`),
//! so a wall-clock step neither floods nor stalls Genesys. Integer arithmetic throughout:
//! no float drift over a long-running daemon.

use std::time::Duration;

/// The fallback pause after a 429 that named no wait: 3 s, doubling per consecutive 429.
pub const THROTTLE_BACKOFF_START: Duration = Duration::from_secs(3);
/// The fallback pause never exceeds this.
pub const THROTTLE_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// The longest pause a server may impose through `Retry-After` or `inin-ratelimit-reset`.
/// Genesys' windows are a minute; anything far beyond a few minutes is a bug or a hostile
/// proxy, and obeying it would stop every conversation write for that long.
pub const MAX_SERVER_PAUSE: Duration = Duration::from_secs(5 * 60);

/// Who is asking for a token. Live work (conversation writes, rebuilds) is served before
/// background work (reconciliation, discovery), which also leaves a reserve of tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Priority {
    Live,
    Background,
}

/// A pause the server asked for and the one applied after clamping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerPause {
    pub asked: Duration,
    pub applied: Duration,
}

impl ServerPause {
    /// Whether the server asked for more than the clamp allows.
    pub fn clamped(&self) -> bool {
        self.applied < self.asked
    }
}

/// No token now; try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Wait(pub Duration);

/// A token bucket refilled at `per_minute`, holding at most `burst` tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBucket {
    /// Time to earn one token: a minute divided by the rate.
    interval: Duration,
    burst: u32,
    /// Tokens low-priority callers must leave in the bucket.
    low_priority_reserve: u32,
    tokens: u32,
    /// Tokens are earned in whole `interval`s counted from here. `None` until first use,
    /// so the bucket needs no clock to be built and starts full.
    refilled_at: Option<Duration>,
    paused_until: Option<Duration>,
    consecutive_throttles: u32,
    /// Server-requested pauses are cut to this ([`MAX_SERVER_PAUSE`] by default).
    max_server_pause: Duration,
}

impl TokenBucket {
    /// A full bucket. `per_minute` and `burst` of 0 are raised to 1. Low-priority callers
    /// leave a quarter of the burst to live writes by default (none when `burst` < 4;
    /// see [`Self::with_low_priority_reserve`]).
    pub fn new(per_minute: u32, burst: u32) -> Self {
        let per_minute = per_minute.max(1);
        let burst = burst.max(1);
        TokenBucket {
            interval: Duration::from_secs(60) / per_minute,
            burst,
            low_priority_reserve: burst / 4,
            tokens: burst,
            refilled_at: None,
            paused_until: None,
            consecutive_throttles: 0,
            max_server_pause: MAX_SERVER_PAUSE,
        }
    }

    /// Sets the longest pause a server may impose (at least one token interval).
    pub fn with_max_server_pause(mut self, max: Duration) -> Self {
        self.max_server_pause = max.max(self.interval);
        self
    }

    pub fn max_server_pause(&self) -> Duration {
        self.max_server_pause
    }

    fn clamp_server_pause(&self, asked: Duration) -> ServerPause {
        ServerPause {
            asked,
            applied: asked.min(self.max_server_pause),
        }
    }

    /// Sets how many tokens low-priority callers leave for live ones; at most `burst - 1`,
    /// so low-priority work can still make progress when live traffic is quiet.
    pub fn with_low_priority_reserve(mut self, reserve: u32) -> Self {
        self.low_priority_reserve = reserve.min(self.burst - 1);
        self
    }

    pub fn burst(&self) -> u32 {
        self.burst
    }

    pub fn low_priority_reserve(&self) -> u32 {
        self.low_priority_reserve
    }

    /// Tokens a caller could take at `now` (ignoring a pause).
    pub fn available(&self, now: Duration) -> u32 {
        self.refilled(now).0
    }

    /// When all callers are paused, if they are at `now`.
    pub fn paused_until(&self, now: Duration) -> Option<Duration> {
        self.paused_until.filter(|until| *until > now)
    }

    /// Takes a token for a live request (conversation writes, rebuilds).
    pub fn try_acquire(&mut self, now: Duration) -> Result<(), Wait> {
        self.acquire_leaving(0, now)
    }

    /// Takes a token for background work (reconciliation), only if `low_priority_reserve`
    /// tokens remain afterwards for live requests.
    pub fn try_acquire_low_priority(&mut self, now: Duration) -> Result<(), Wait> {
        self.acquire_leaving(self.low_priority_reserve, now)
    }

    /// Pauses every caller until `until` (monotonic). Never shortens an existing pause.
    /// The bucket restarts empty with one token at `until`, so the end of a pause is not a
    /// burst that trips the limit again.
    pub fn pause_until(&mut self, until: Duration) {
        if self.paused_until.is_some_and(|current| current >= until) {
            return;
        }
        self.paused_until = Some(until);
        self.tokens = 0;
        self.refilled_at = Some(until.saturating_sub(self.interval));
    }

    /// A 429 arrived: pause everyone for `Retry-After`, else `inin-ratelimit-reset` (both
    /// clamped to the bucket's maximum server pause), else the fallback backoff (3 s,
    /// doubling per consecutive 429, at most 60 s). Returns the pause asked and applied.
    pub fn throttled(
        &mut self,
        retry_after: Option<Duration>,
        ratelimit_reset: Option<Duration>,
        now: Duration,
    ) -> ServerPause {
        let fallback = THROTTLE_BACKOFF_START
            .saturating_mul(
                1u32.checked_shl(self.consecutive_throttles)
                    .unwrap_or(u32::MAX),
            )
            .min(THROTTLE_BACKOFF_MAX);
        let pause = self.clamp_server_pause(retry_after.or(ratelimit_reset).unwrap_or(fallback));
        self.consecutive_throttles = self.consecutive_throttles.saturating_add(1);
        self.pause_until(now.saturating_add(pause.applied));
        pause
    }

    /// A response that was not a 429: the fallback backoff starts over.
    pub fn not_throttled(&mut self) {
        self.consecutive_throttles = 0;
    }

    /// Reads `inin-ratelimit-count`, `-allowed` and `-reset` (seconds until the server's
    /// window resets) from any response. A used-up window pauses until the reset (clamped;
    /// the pause is returned); a nearly used-up one caps the local tokens at what the server
    /// still allows, so a burst cannot overrun it.
    pub fn observe_headers(
        &mut self,
        count: Option<u32>,
        allowed: Option<u32>,
        reset: Option<Duration>,
        now: Duration,
    ) -> Option<ServerPause> {
        let (Some(count), Some(allowed)) = (count, allowed) else {
            return None;
        };
        let remaining = allowed.saturating_sub(count);
        if remaining == 0 {
            let pause = self.clamp_server_pause(reset?);
            self.pause_until(now.saturating_add(pause.applied));
            return Some(pause);
        }
        let (tokens, refilled_at) = self.refilled(now);
        self.tokens = tokens.min(remaining);
        self.refilled_at = Some(refilled_at);
        None
    }

    /// Takes a token for `priority` (see [`Self::try_acquire`] and
    /// [`Self::try_acquire_low_priority`]).
    pub fn try_acquire_for(&mut self, priority: Priority, now: Duration) -> Result<(), Wait> {
        match priority {
            Priority::Live => self.try_acquire(now),
            Priority::Background => self.try_acquire_low_priority(now),
        }
    }

    fn acquire_leaving(&mut self, reserve: u32, now: Duration) -> Result<(), Wait> {
        if let Some(until) = self.paused_until(now) {
            return Err(Wait(until - now));
        }
        let (tokens, refilled_at) = self.refilled(now);
        self.tokens = tokens;
        self.refilled_at = Some(refilled_at);
        if tokens > reserve {
            self.tokens -= 1;
            return Ok(());
        }
        // Tokens still to earn before one can be taken, counted from the refill anchor.
        let missing = reserve + 1 - tokens;
        let ready_at = refilled_at.saturating_add(self.interval.saturating_mul(missing));
        Err(Wait(ready_at.saturating_sub(now)))
    }

    /// Tokens and refill anchor at `now`, without changing the bucket.
    fn refilled(&self, now: Duration) -> (u32, Duration) {
        let Some(anchor) = self.refilled_at else {
            return (self.tokens, now);
        };
        if now <= anchor {
            return (self.tokens, anchor);
        }
        if self.tokens >= self.burst {
            // A full bucket does not bank time: the next token is earned from now.
            return (self.burst, now);
        }
        let earned = (now - anchor).as_nanos() / self.interval.as_nanos().max(1);
        let earned = u32::try_from(earned).unwrap_or(u32::MAX);
        let tokens = self.tokens.saturating_add(earned).min(self.burst);
        if tokens >= self.burst {
            (self.burst, now)
        } else {
            // Keep the fraction of a token already earned.
            (
                tokens,
                anchor.saturating_add(self.interval.saturating_mul(earned)),
            )
        }
    }
}

/// A place in the [`WaitQueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(pub u64);

/// What one [`WaitQueue::dispatch`] decided.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dispatch {
    /// Waiters that now hold a token, in the order they were served.
    pub granted: Vec<Ticket>,
    /// The waiter at the head of the queue and how long until its token (or the end of a
    /// pause). Only it needs a timer: every other waiter is behind it.
    pub head: Option<(Ticket, Duration)>,
}

/// Callers waiting for a token: all live waiters before any background one, first come
/// first served within a priority. Tokens go to the head only, so a burst of waiters costs
/// one timer, not one poll per waiter per token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WaitQueue {
    live: std::collections::VecDeque<Ticket>,
    background: std::collections::VecDeque<Ticket>,
    next: u64,
}

impl WaitQueue {
    pub fn new() -> Self {
        WaitQueue::default()
    }

    /// Joins the end of the queue of `priority`.
    pub fn push(&mut self, priority: Priority) -> Ticket {
        let ticket = Ticket(self.next);
        self.next = self.next.wrapping_add(1);
        match priority {
            Priority::Live => self.live.push_back(ticket),
            Priority::Background => self.background.push_back(ticket),
        }
        ticket
    }

    /// Leaves the queue (the caller gave up). Returns whether it was waiting.
    pub fn remove(&mut self, ticket: Ticket) -> bool {
        for queue in [&mut self.live, &mut self.background] {
            if let Some(position) = queue.iter().position(|t| *t == ticket) {
                queue.remove(position);
                return true;
            }
        }
        false
    }

    pub fn len(&self) -> usize {
        self.live.len() + self.background.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Everyone waiting, in serving order (the queue is emptied).
    pub fn drain(&mut self) -> Vec<Ticket> {
        self.live
            .drain(..)
            .chain(self.background.drain(..))
            .collect()
    }

    fn head_of_line(&self) -> Option<(Ticket, Priority)> {
        self.live
            .front()
            .map(|ticket| (*ticket, Priority::Live))
            .or_else(|| {
                self.background
                    .front()
                    .map(|ticket| (*ticket, Priority::Background))
            })
    }

    /// Serves the head of the queue from `bucket` while it has tokens for it. Stops at the
    /// first waiter that must wait: a background waiter never overtakes a live one, and a
    /// later waiter never overtakes an earlier one of its priority.
    pub fn dispatch(&mut self, bucket: &mut TokenBucket, now: Duration) -> Dispatch {
        let mut dispatch = Dispatch::default();
        while let Some((ticket, priority)) = self.head_of_line() {
            match bucket.try_acquire_for(priority, now) {
                Ok(()) => {
                    match priority {
                        Priority::Live => self.live.pop_front(),
                        Priority::Background => self.background.pop_front(),
                    };
                    dispatch.granted.push(ticket);
                }
                Err(Wait(wait)) => {
                    dispatch.head = Some((ticket, wait));
                    break;
                }
            }
        }
        dispatch
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_new_bucket_allows_a_burst_then_waits_one_interval() {
        // 300/min: one token every 200 ms.
        let mut bucket = TokenBucket::new(300, 3);
        for _ in 0..3 {
            assert_eq!(bucket.try_acquire(secs(10)), Ok(()));
        }
        assert_eq!(bucket.try_acquire(secs(10)), Err(Wait(ms(200))));
        assert_eq!(bucket.try_acquire(secs(10) + ms(150)), Err(Wait(ms(50))));
        assert_eq!(bucket.try_acquire(secs(10) + ms(200)), Ok(()));
    }

    #[test]
    fn a_partly_earned_token_is_not_lost_between_calls() {
        let mut bucket = TokenBucket::new(300, 1);
        bucket.try_acquire(secs(0)).unwrap();
        assert!(bucket.try_acquire(ms(120)).is_err());
        // 80 ms more completes the token that started earning at 0.
        assert_eq!(bucket.try_acquire(ms(200)), Ok(()));
    }

    #[test]
    fn an_idle_bucket_refills_only_up_to_the_burst() {
        let mut bucket = TokenBucket::new(60, 2);
        bucket.try_acquire(secs(0)).unwrap();
        bucket.try_acquire(secs(0)).unwrap();
        assert_eq!(bucket.available(secs(3_600)), 2);
        bucket.try_acquire(secs(3_600)).unwrap();
        bucket.try_acquire(secs(3_600)).unwrap();
        assert_eq!(bucket.try_acquire(secs(3_600)), Err(Wait(secs(1))));
    }

    #[test]
    fn the_long_run_rate_is_the_configured_rate() {
        let mut bucket = TokenBucket::new(300, 10);
        let granted = (0..60_000u64)
            .filter(|t| bucket.try_acquire(ms(*t)).is_ok())
            .count();
        // The initial burst plus one token per 200 ms; the 300th lands at 60 s, just outside.
        assert_eq!(granted, 10 + 299);
    }

    #[test]
    fn low_priority_work_leaves_the_reserve_to_live_writes() {
        let mut bucket = TokenBucket::new(60, 8).with_low_priority_reserve(2);
        for _ in 0..6 {
            assert_eq!(bucket.try_acquire_low_priority(secs(0)), Ok(()));
        }
        // Two tokens left: reconciliation must wait for a third, live writes go ahead.
        assert_eq!(bucket.try_acquire_low_priority(secs(0)), Err(Wait(secs(1))));
        assert_eq!(bucket.try_acquire(secs(0)), Ok(()));
        assert_eq!(bucket.try_acquire(secs(0)), Ok(()));
        assert_eq!(bucket.try_acquire_low_priority(secs(0)), Err(Wait(secs(3))));
    }

    #[test]
    fn the_reserve_never_blocks_low_priority_work_for_good() {
        let bucket = TokenBucket::new(60, 4).with_low_priority_reserve(10);
        assert_eq!(bucket.low_priority_reserve(), 3);
    }

    #[test]
    fn a_pause_stops_every_caller_and_restarts_with_one_token() {
        let mut bucket = TokenBucket::new(300, 10);
        bucket.pause_until(secs(30));
        assert_eq!(bucket.try_acquire(secs(25)), Err(Wait(secs(5))));
        assert_eq!(
            bucket.try_acquire_low_priority(secs(25)),
            Err(Wait(secs(5)))
        );
        assert_eq!(bucket.try_acquire(secs(30)), Ok(()));
        assert_eq!(bucket.try_acquire(secs(30)), Err(Wait(ms(200))));
    }

    #[test]
    fn a_pause_is_never_shortened() {
        let mut bucket = TokenBucket::new(300, 10);
        bucket.pause_until(secs(30));
        bucket.pause_until(secs(20));
        assert_eq!(bucket.paused_until(secs(0)), Some(secs(30)));
    }

    #[test]
    fn on_429_retry_after_wins_then_the_reset_header_then_the_backoff() {
        let mut bucket = TokenBucket::new(300, 10);
        assert_eq!(
            bucket.throttled(Some(secs(7)), Some(secs(40)), secs(0)),
            ServerPause {
                asked: secs(7),
                applied: secs(7)
            }
        );
        assert_eq!(
            bucket.throttled(None, Some(secs(40)), secs(0)).applied,
            secs(40)
        );
        assert_eq!(bucket.paused_until(secs(0)), Some(secs(40)));
        bucket.not_throttled();
        let fallbacks: Vec<u64> = (0..7)
            .map(|_| bucket.throttled(None, None, secs(0)).applied.as_secs())
            .collect();
        assert_eq!(fallbacks, [3, 6, 12, 24, 48, 60, 60]);
    }

    #[test]
    fn a_used_up_server_window_pauses_until_its_reset() {
        let mut bucket = TokenBucket::new(300, 10);
        bucket.observe_headers(Some(180), Some(180), Some(secs(12)), secs(100));
        assert_eq!(bucket.try_acquire(secs(101)), Err(Wait(secs(11))));
    }

    #[test]
    fn a_nearly_used_up_server_window_caps_the_burst() {
        let mut bucket = TokenBucket::new(300, 10);
        bucket.observe_headers(Some(178), Some(180), Some(secs(12)), secs(100));
        assert_eq!(bucket.available(secs(100)), 2);
        bucket.observe_headers(Some(1), Some(180), Some(secs(59)), secs(100));
        assert_eq!(bucket.available(secs(100)), 2, "headers never add tokens");
        bucket.observe_headers(None, Some(180), None, secs(100));
        assert_eq!(bucket.available(secs(100)), 2);
    }

    #[test]
    fn an_absurd_retry_after_is_clamped_and_reported() {
        let mut bucket = TokenBucket::new(300, 10);
        let decade = secs(315_360_000);
        let pause = bucket.throttled(Some(decade), None, secs(100));
        assert_eq!(
            pause,
            ServerPause {
                asked: decade,
                applied: MAX_SERVER_PAUSE
            }
        );
        assert!(pause.clamped());
        assert_eq!(
            bucket.paused_until(secs(100)),
            Some(secs(100) + MAX_SERVER_PAUSE)
        );
        assert_eq!(bucket.try_acquire(secs(100) + MAX_SERVER_PAUSE), Ok(()));
    }

    #[test]
    fn an_absurd_ratelimit_reset_is_clamped_too() {
        let mut bucket = TokenBucket::new(300, 10).with_max_server_pause(secs(2));
        let pause = bucket.observe_headers(Some(5), Some(5), Some(secs(u64::MAX / 4)), secs(1));
        assert_eq!(pause.map(|p| p.applied), Some(secs(2)));
        assert_eq!(bucket.try_acquire(secs(3)), Ok(()));
        let pause = bucket.throttled(None, Some(secs(86_400)), secs(10));
        assert_eq!(pause.applied, secs(2));
        assert!(!bucket.throttled(Some(secs(1)), None, secs(20)).clamped());
    }

    #[test]
    fn waiters_are_served_live_first_then_in_arrival_order() {
        // 60/min, burst 1, no reserve: one token a second.
        let mut bucket = TokenBucket::new(60, 1).with_low_priority_reserve(0);
        let mut queue = WaitQueue::new();
        let b1 = queue.push(Priority::Background);
        let l1 = queue.push(Priority::Live);
        let b2 = queue.push(Priority::Background);
        let l2 = queue.push(Priority::Live);
        let mut served = Vec::new();
        let first = queue.dispatch(&mut bucket, secs(0));
        served.extend(first.granted);
        assert_eq!(
            first.head,
            Some((l2, secs(1))),
            "only the head waits on a timer"
        );
        let mut now = secs(0);
        while !queue.is_empty() {
            now += secs(1);
            let dispatch = queue.dispatch(&mut bucket, now);
            assert_eq!(dispatch.granted.len(), 1, "one token, one waiter woken");
            served.extend(dispatch.granted);
        }
        assert_eq!(served, [l1, l2, b1, b2]);
    }

    #[test]
    fn a_live_arrival_overtakes_waiting_background_work() {
        let mut bucket = TokenBucket::new(60, 1).with_low_priority_reserve(0);
        let mut queue = WaitQueue::new();
        bucket.try_acquire(secs(0)).unwrap();
        let background = queue.push(Priority::Background);
        assert_eq!(
            queue.dispatch(&mut bucket, secs(0)).head,
            Some((background, secs(1)))
        );
        let live = queue.push(Priority::Live);
        let dispatch = queue.dispatch(&mut bucket, secs(1));
        assert_eq!(dispatch.granted, [live]);
        assert_eq!(dispatch.head, Some((background, secs(1))));
    }

    #[test]
    fn a_waiter_that_leaves_hands_the_head_to_the_next() {
        let mut bucket = TokenBucket::new(60, 1);
        bucket.try_acquire(secs(0)).unwrap();
        let mut queue = WaitQueue::new();
        let first = queue.push(Priority::Live);
        let second = queue.push(Priority::Live);
        assert!(queue.remove(first));
        assert!(!queue.remove(first));
        assert_eq!(
            queue.dispatch(&mut bucket, secs(0)).head,
            Some((second, secs(1)))
        );
        assert_eq!(queue.drain(), [second]);
        assert!(queue.is_empty());
    }

    proptest! {
        #[test]
        fn dispatch_serves_in_priority_then_arrival_order(
            arrivals in prop::collection::vec(any::<bool>(), 1..40),
            per_minute in 1u32..600,
        ) {
            let mut bucket = TokenBucket::new(per_minute, 1).with_low_priority_reserve(0);
            let mut queue = WaitQueue::new();
            let tickets: Vec<(Ticket, Priority)> = arrivals
                .iter()
                .map(|live| {
                    let priority = if *live { Priority::Live } else { Priority::Background };
                    (queue.push(priority), priority)
                })
                .collect();
            let mut served = Vec::new();
            let mut now = Duration::ZERO;
            for _ in 0..1_000 {
                let dispatch = queue.dispatch(&mut bucket, now);
                served.extend(dispatch.granted);
                match dispatch.head {
                    Some((_, wait)) => now += wait,
                    None => break,
                }
            }
            let expected: Vec<Ticket> = tickets
                .iter()
                .filter(|(_, p)| *p == Priority::Live)
                .chain(tickets.iter().filter(|(_, p)| *p == Priority::Background))
                .map(|(t, _)| *t)
                .collect();
            prop_assert_eq!(served, expected);
        }


        #[test]
        fn never_more_than_burst_plus_rate_in_any_window(
            per_minute in 1u32..600,
            burst in 1u32..20,
            steps in prop::collection::vec(0u64..2_000, 1..300),
        ) {
            let mut bucket = TokenBucket::new(per_minute, burst);
            let interval = Duration::from_secs(60) / per_minute;
            let mut now = Duration::ZERO;
            let mut granted = 0u128;
            for step in steps {
                now += ms(step);
                if bucket.try_acquire(now).is_ok() {
                    granted += 1;
                }
            }
            let earned = now.as_nanos() / interval.as_nanos();
            prop_assert!(granted <= u128::from(burst) + earned);
        }

        #[test]
        fn a_wait_is_honest(
            per_minute in 1u32..600,
            burst in 1u32..5,
            reserve in 0u32..5,
            start_ms in 0u64..10_000,
        ) {
            let mut bucket = TokenBucket::new(per_minute, burst).with_low_priority_reserve(reserve);
            let start = ms(start_ms);
            while bucket.try_acquire(start).is_ok() {}
            let Err(Wait(wait)) = bucket.try_acquire_low_priority(start) else {
                return Err(TestCaseError::fail("an empty bucket granted a token"));
            };
            prop_assert!(bucket.try_acquire_low_priority(start + wait).is_ok());
        }
    }
}
