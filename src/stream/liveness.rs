//! The socket watchdog: is the Notifications WebSocket alive, idle, or dead?
//!
//! Genesys sends an application-level heartbeat about every 30 s and answers the text frame
//! `{"message":"ping"}` with a pong (API.md §3.3). A receive-only client never notices a
//! silently dead TCP connection (anchors.md §3 #13), so liveness is judged from *any*
//! inbound frame — heartbeat, pong or event — never from RFC 6455 ping/pong:
//!
//! - a frame resets the watchdog;
//! - idle for `ping_after_idle` → send one ping (one per idle spell, not one per check);
//! - silent for `reconnect_after_silence` → reconnect.
//!
//! Owns the decision only; never sends the ping or closes the socket. Time is a monotonic
//! offset (`Duration` since an arbitrary origin the shell chooses, e.g. its start
//! `Instant`): a watchdog must not fire, or stay quiet, because the wall clock stepped.

use std::time::Duration;

/// How long the watchdog tolerates quiet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LivenessPolicy {
    /// Send `{"message":"ping"}` after this long without any frame.
    pub ping_after_idle: Duration,
    /// Treat the socket as dead after this long without any frame.
    pub reconnect_after_silence: Duration,
}

/// A policy that could never work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LivenessPolicyError {
    #[error("ping_after_idle must be longer than zero")]
    ZeroPingInterval,
    #[error(
        "reconnect_after_silence ({reconnect_after_silence:?}) must be longer than \
         ping_after_idle ({ping_after_idle:?}), or the watchdog gives up before a ping can be answered"
    )]
    ReconnectBeforePing {
        ping_after_idle: Duration,
        reconnect_after_silence: Duration,
    },
}

impl LivenessPolicy {
    /// Checks that the ping comes strictly before the give-up deadline.
    pub fn new(
        ping_after_idle: Duration,
        reconnect_after_silence: Duration,
    ) -> Result<Self, LivenessPolicyError> {
        if ping_after_idle.is_zero() {
            return Err(LivenessPolicyError::ZeroPingInterval);
        }
        if reconnect_after_silence <= ping_after_idle {
            return Err(LivenessPolicyError::ReconnectBeforePing {
                ping_after_idle,
                reconnect_after_silence,
            });
        }
        Ok(LivenessPolicy {
            ping_after_idle,
            reconnect_after_silence,
        })
    }
}

/// What the shell should do about the socket now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LivenessDecision {
    /// Nothing to do; ask again at `next_check_at` (or when a frame arrives).
    Healthy { next_check_at: Duration },
    /// Idle: send `{"message":"ping"}` and report it with [`Liveness::ping_sent`].
    SendPing,
    /// No frame for too long: the socket is dead, reconnect.
    Reconnect { silent_for: Duration },
}

/// The watchdog of one socket connection. Build a new one per connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Liveness {
    policy: LivenessPolicy,
    /// The last sign of life: the connect itself, then the latest frame. Starting at the
    /// connect means a socket that never sends anything is declared dead too.
    last_activity_at: Duration,
    last_frame_at: Option<Duration>,
    last_heartbeat_at: Option<Duration>,
    /// A ping sent since the last frame, still unanswered. Cleared by any frame, so the
    /// next idle spell gets its own ping.
    unanswered_ping_at: Option<Duration>,
}

impl Liveness {
    pub fn new(policy: LivenessPolicy, connected_at: Duration) -> Self {
        Liveness {
            policy,
            last_activity_at: connected_at,
            last_frame_at: None,
            last_heartbeat_at: None,
            unanswered_ping_at: None,
        }
    }

    pub fn policy(&self) -> LivenessPolicy {
        self.policy
    }

    /// Any inbound frame — event, pong, system message, even one that fails to parse: the
    /// connection carried bytes, so it is alive.
    pub fn frame_received(&mut self, at: Duration) {
        // `max`: a late-reported observation must not move the watchdog backwards.
        self.last_activity_at = self.last_activity_at.max(at);
        self.last_frame_at = Some(self.last_frame_at.map_or(at, |last| last.max(at)));
        self.unanswered_ping_at = None;
    }

    /// A Genesys heartbeat frame: a frame like any other, also timed for the heartbeat-age
    /// metric.
    pub fn heartbeat_received(&mut self, at: Duration) {
        self.frame_received(at);
        self.last_heartbeat_at = Some(self.last_heartbeat_at.map_or(at, |last| last.max(at)));
    }

    /// The shell sent `{"message":"ping"}`.
    pub fn ping_sent(&mut self, at: Duration) {
        self.unanswered_ping_at = Some(at);
    }

    /// How long since the last sign of life (frame, or the connect).
    pub fn silent_for(&self, now: Duration) -> Duration {
        now.saturating_sub(self.last_activity_at)
    }

    /// How old the latest heartbeat is; `None` before the first one.
    pub fn heartbeat_age(&self, now: Duration) -> Option<Duration> {
        self.last_heartbeat_at.map(|at| now.saturating_sub(at))
    }

    /// When the last frame of any kind arrived; `None` before the first one.
    pub fn last_frame_at(&self) -> Option<Duration> {
        self.last_frame_at
    }

    /// A ping is out and nothing has arrived since.
    pub fn ping_outstanding(&self) -> bool {
        self.unanswered_ping_at.is_some()
    }

    pub fn decide(&self, now: Duration) -> LivenessDecision {
        let silent_for = self.silent_for(now);
        if silent_for >= self.policy.reconnect_after_silence {
            return LivenessDecision::Reconnect { silent_for };
        }
        if silent_for < self.policy.ping_after_idle {
            return LivenessDecision::Healthy {
                next_check_at: self
                    .last_activity_at
                    .saturating_add(self.policy.ping_after_idle),
            };
        }
        if self.ping_outstanding() {
            // One ping per idle spell: the pong (or any frame) is now awaited until the
            // give-up deadline.
            LivenessDecision::Healthy {
                next_check_at: self
                    .last_activity_at
                    .saturating_add(self.policy.reconnect_after_silence),
            }
        } else {
            LivenessDecision::SendPing
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn watchdog() -> Liveness {
        let policy = LivenessPolicy::new(secs(35), secs(60)).unwrap();
        Liveness::new(policy, secs(100))
    }

    #[test]
    fn a_policy_must_ping_before_it_gives_up() {
        assert_eq!(
            LivenessPolicy::new(secs(60), secs(60)),
            Err(LivenessPolicyError::ReconnectBeforePing {
                ping_after_idle: secs(60),
                reconnect_after_silence: secs(60),
            })
        );
        assert_eq!(
            LivenessPolicy::new(Duration::ZERO, secs(60)),
            Err(LivenessPolicyError::ZeroPingInterval)
        );
    }

    #[test]
    fn a_fresh_connection_is_healthy_until_the_idle_deadline() {
        let liveness = watchdog();
        assert_eq!(
            liveness.decide(secs(110)),
            LivenessDecision::Healthy {
                next_check_at: secs(135)
            }
        );
    }

    #[test]
    fn any_frame_resets_the_watchdog() {
        let mut liveness = watchdog();
        liveness.frame_received(secs(130));
        assert_eq!(
            liveness.decide(secs(150)),
            LivenessDecision::Healthy {
                next_check_at: secs(165)
            }
        );
        assert_eq!(liveness.silent_for(secs(150)), secs(20));
    }

    #[test]
    fn idle_past_the_threshold_asks_for_exactly_one_ping() {
        let mut liveness = watchdog();
        assert_eq!(liveness.decide(secs(135)), LivenessDecision::SendPing);
        liveness.ping_sent(secs(135));
        // Later checks in the same idle spell wait for the pong instead of pinging again.
        for now in [136, 140, 159] {
            assert_eq!(
                liveness.decide(secs(now)),
                LivenessDecision::Healthy {
                    next_check_at: secs(160)
                },
                "at {now}s"
            );
        }
    }

    #[test]
    fn a_pong_ends_the_idle_spell_and_the_next_spell_gets_its_own_ping() {
        let mut liveness = watchdog();
        liveness.ping_sent(secs(135));
        liveness.frame_received(secs(136));
        assert!(!liveness.ping_outstanding());
        assert!(matches!(
            liveness.decide(secs(150)),
            LivenessDecision::Healthy { .. }
        ));
        assert_eq!(liveness.decide(secs(171)), LivenessDecision::SendPing);
    }

    #[test]
    fn silence_past_the_deadline_means_reconnect_even_with_a_ping_out() {
        let mut liveness = watchdog();
        liveness.frame_received(secs(110));
        liveness.ping_sent(secs(145));
        assert_eq!(
            liveness.decide(secs(170)),
            LivenessDecision::Reconnect {
                silent_for: secs(60)
            }
        );
    }

    #[test]
    fn a_connection_that_never_speaks_is_dead_after_the_deadline() {
        let liveness = watchdog();
        assert_eq!(
            liveness.decide(secs(161)),
            LivenessDecision::Reconnect {
                silent_for: secs(61)
            }
        );
    }

    #[test]
    fn a_late_reported_frame_does_not_move_the_watchdog_back() {
        let mut liveness = watchdog();
        liveness.frame_received(secs(150));
        liveness.frame_received(secs(120));
        assert_eq!(liveness.last_frame_at(), Some(secs(150)));
        assert_eq!(liveness.silent_for(secs(160)), secs(10));
    }

    #[test]
    fn heartbeat_age_counts_from_the_last_heartbeat_only() {
        let mut liveness = watchdog();
        assert_eq!(liveness.heartbeat_age(secs(120)), None);
        liveness.heartbeat_received(secs(120));
        liveness.frame_received(secs(140));
        assert_eq!(liveness.heartbeat_age(secs(145)), Some(secs(25)));
        // The heartbeat is also a frame.
        assert_eq!(liveness.silent_for(secs(145)), secs(5));
    }
}
