//! The health board: what the live path reports about itself (token, sockets,
//! subscriptions, last frame, shutdown) and the readiness verdict `/readyz` serves.
//!
//! Writers are actors on any thread; the reader is the admin server. Every field is an
//! atomic or a short `Mutex` held only to copy a value in or out: never across an
//! `.await`, never while calling out. The board never reads actor state or sends a
//! message, so a stuck actor cannot stall a health probe.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Shared by the actors that write it and the admin server that reads it (`Arc`).
#[derive(Debug)]
pub struct HealthBoard {
    /// Frames older than this make `/readyz` fail (see [`HealthBoard::new`]).
    max_frame_age: Duration,
    token_valid_until: Mutex<Option<Instant>>,
    channels_expected: AtomicUsize,
    channels_connected: AtomicUsize,
    /// Since when every expected channel has had a connected socket; `None` while one is
    /// missing. A fresh connection counts as heard from: Genesys sends nothing on a quiet
    /// org until the first heartbeat (~30 s), and a socket that just connected and
    /// subscribed is healthy.
    connected_since: Mutex<Option<Instant>>,
    subscriptions: Mutex<Option<Subscriptions>>,
    last_frame_at: Mutex<Option<Instant>>,
    shutting_down: AtomicBool,
    /// Until when Genesys paused every REST call (429 / used-up window), and what it
    /// asked for before clamping.
    rest_paused: Mutex<Option<(Instant, Duration)>>,
    /// The router's load against `conversations.max_live`; `None` until it first reports.
    conversations: Mutex<Option<ConversationLoad>>,
    /// `cluster.enabled`: the role and whether NATS is connected now.
    cluster: Mutex<Option<ClusterHealth>>,
}

/// What `/readyz` checks of a cluster instance.
#[derive(Clone)]
pub struct ClusterHealth {
    pub role: convoy::config::ClusterRole,
    /// Whether the NATS client is connected now (reads the client's state; never waits).
    pub nats_connected: Arc<dyn Fn() -> bool + Send + Sync>,
    /// Partitions with a running consumer (workers), updated by the consumers.
    pub consuming: Arc<AtomicUsize>,
    /// Workers: whether the lease actor's KV writes are recent (else it may own nothing
    /// it believes it owns).
    pub leases_ready: Option<LeaseCheck>,
}

/// A worker's lease readiness, as text when not ready.
pub type LeaseCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

impl std::fmt::Debug for ClusterHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterHealth")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// What the router last reported about its live conversations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConversationLoad {
    pub live: usize,
    pub max_live: usize,
    /// Conversations retired to make room at the cap since boot.
    pub evicted_at_capacity: u64,
    /// When the last one was.
    pub last_eviction_at: Option<Instant>,
}

#[derive(Debug, Clone)]
struct Subscriptions {
    permitted: usize,
    rejected: Vec<RejectedTopic>,
}

impl Default for HealthBoard {
    /// Three Genesys heartbeat periods (~30 s each) without any frame.
    fn default() -> Self {
        HealthBoard::new(Duration::from_secs(90))
    }
}

/// A mutex that only guards a copy in or out cannot be left half-written by a panic, so
/// a poisoned lock still holds a coherent value.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl HealthBoard {
    /// `max_frame_age`: how long the stream may be silent before Convoy is not ready; the
    /// stream's own reconnect deadline (`stream.reconnect_after_silence`) is the natural
    /// value.
    pub fn new(max_frame_age: Duration) -> Self {
        HealthBoard {
            max_frame_age,
            token_valid_until: Mutex::new(None),
            channels_expected: AtomicUsize::new(0),
            channels_connected: AtomicUsize::new(0),
            connected_since: Mutex::new(None),
            subscriptions: Mutex::new(None),
            last_frame_at: Mutex::new(None),
            shutting_down: AtomicBool::new(false),
            rest_paused: Mutex::new(None),
            conversations: Mutex::new(None),
            cluster: Mutex::new(None),
        }
    }

    /// This instance runs a cluster role: `/readyz` checks NATS, and a worker (which holds
    /// no Genesys channel) is not judged on channels, subscriptions or frames.
    pub fn set_cluster(&self, cluster: ClusterHealth) {
        *lock(&self.cluster) = Some(cluster);
    }

    pub fn max_frame_age(&self) -> Duration {
        self.max_frame_age
    }

    /// Until when the current access token is valid; `None` when there is none (not
    /// obtained yet, revoked, refresh failed).
    pub fn set_token_valid_until(&self, until: Option<Instant>) {
        *lock(&self.token_valid_until) = until;
    }

    /// How many notification channels the stream needs (topics / 1 000, rounded up) and
    /// how many have a connected socket now.
    pub fn set_channels(&self, expected: usize, connected: usize) {
        self.set_channels_at(expected, connected, Instant::now());
    }

    /// [`HealthBoard::set_channels`] at a given time (tests).
    pub fn set_channels_at(&self, expected: usize, connected: usize, at: Instant) {
        self.channels_expected.store(expected, Ordering::Relaxed);
        self.channels_connected.store(connected, Ordering::Relaxed);
        let all_connected = expected > 0 && connected >= expected;
        let mut since = lock(&self.connected_since);
        match (all_connected, *since) {
            (true, None) => *since = Some(at),
            (false, Some(_)) => *since = None,
            _ => {}
        }
    }

    /// The outcome of the last subscription: how many topics Genesys permitted and which
    /// it rejected, as `(topic, reason)`.
    pub fn set_subscriptions(&self, permitted: usize, rejected: Vec<(String, String)>) {
        let rejected = rejected
            .into_iter()
            .map(|(topic, reason)| RejectedTopic { topic, reason })
            .collect();
        *lock(&self.subscriptions) = Some(Subscriptions {
            permitted,
            rejected,
        });
    }

    /// Any frame arrived (heartbeats included) at `at`.
    pub fn frame_seen(&self, at: Instant) {
        let mut last = lock(&self.last_frame_at);
        // Two sockets overlap during rotation; never move the time backwards.
        if last.is_none_or(|previous| at > previous) {
            *last = Some(at);
        }
    }

    /// Genesys paused every REST call until `until` (clamped); it asked for `asked`. A
    /// later pause replaces an earlier one only if it ends later.
    pub fn set_rest_paused(&self, until: Instant, asked: Duration) {
        let mut paused = lock(&self.rest_paused);
        if paused.is_none_or(|(current, _)| until > current) {
            *paused = Some((until, asked));
        }
    }

    /// The router's live count against its cap, and the evictions the cap caused.
    pub fn set_conversations(&self, load: ConversationLoad) {
        *lock(&self.conversations) = Some(load);
    }

    /// Shutdown began: not ready from now on, so load balancers stop sending traffic.
    pub fn set_shutting_down(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    /// The readiness verdict at `now` with the board's own frame age limit.
    pub fn readiness_now(&self) -> Readiness {
        self.readiness(Instant::now(), self.max_frame_age)
    }

    /// The readiness verdict at `now`: ready only when the token is valid, every channel
    /// is connected, the subscriptions were accepted without a rejected topic, a frame
    /// arrived within `max_frame_age` (or the sockets connected within it: frame age is
    /// judged only once a heartbeat is due), and shutdown has not begun.
    pub fn readiness(&self, now: Instant, max_frame_age: Duration) -> Readiness {
        let token = token_check(*lock(&self.token_valid_until), now);
        let socket = socket_check(
            self.channels_expected.load(Ordering::Relaxed),
            self.channels_connected.load(Ordering::Relaxed),
        );
        let subscriptions = subscriptions_check(lock(&self.subscriptions).clone());
        let last_frame = frame_check(
            *lock(&self.last_frame_at),
            *lock(&self.connected_since),
            now,
            max_frame_age,
        );
        let shutdown = if self.shutting_down.load(Ordering::Relaxed) {
            Check::failing("shutting down".to_owned())
        } else {
            Check::passing()
        };
        let rest = rest_check(*lock(&self.rest_paused), now);
        let conversations = conversations_check(*lock(&self.conversations), now);
        let cluster_health = lock(&self.cluster).clone();
        let (socket, subscriptions, last_frame) = match &cluster_health {
            Some(health) if health.role == convoy::config::ClusterRole::Worker => {
                let no_channels = "cluster worker: holds no Genesys channel".to_owned();
                (
                    Check {
                        ok: true,
                        detail: Some(no_channels.clone()),
                    },
                    SubscriptionsCheck {
                        ok: true,
                        detail: Some(no_channels.clone()),
                        permitted: 0,
                        rejected: Vec::new(),
                    },
                    FrameCheck {
                        ok: true,
                        detail: Some(no_channels),
                        age_ms: None,
                    },
                )
            }
            _ => (socket, subscriptions, last_frame),
        };
        let cluster = cluster_health.map(|health| cluster_check(&health));
        let ready = token.ok
            && socket.ok
            && subscriptions.ok
            && last_frame.ok
            && shutdown.ok
            && rest.ok
            && cluster.as_ref().is_none_or(|check| check.ok);
        Readiness {
            ready,
            checks: ReadinessChecks {
                token,
                socket,
                subscriptions,
                last_frame,
                shutdown,
                rest,
                conversations,
                outbox: Check::passing(),
                cluster,
            },
        }
    }
}

impl Readiness {
    /// Adds the outbox check: failing while the pipeline refuses frames (`closed` says
    /// why: the outbox is at `outbox.max_records`, or commits fail or lag).
    pub fn with_outbox(mut self, closed: Option<&str>, pending: u64) -> Readiness {
        self.checks.outbox = match closed {
            None => Check {
                ok: true,
                detail: Some(format!("{pending} records pending")),
            },
            Some(reason) => Check::failing(format!(
                "back-pressure ({reason}): {pending} records pending; the stream is paused"
            )),
        };
        self.ready = self.ready && self.checks.outbox.ok;
        self
    }
}

/// `/readyz`'s body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub checks: ReadinessChecks,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadinessChecks {
    pub token: Check,
    pub socket: Check,
    pub subscriptions: SubscriptionsCheck,
    pub last_frame: FrameCheck,
    pub shutdown: Check,
    /// Failing while Genesys has paused every REST call (writes wait).
    pub rest: Check,
    /// Live conversations against `conversations.max_live`. Never failing: at the cap the
    /// least recently active conversation is retired to make room (and rebuilt on its next
    /// event), so nothing is turned away; the detail says it is happening.
    pub conversations: ConversationsCheck,
    /// Failing while the outbox applies back-pressure (full, or commits failing).
    pub outbox: Check,
    /// `cluster.enabled` only: NATS connected, and for a worker its partition consumers
    /// running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<Check>,
}

fn cluster_check(health: &ClusterHealth) -> Check {
    use convoy::config::ClusterRole;
    if !(health.nats_connected)() {
        return Check::failing(format!("{}: NATS not connected", health.role.as_str()));
    }
    let consuming = health.consuming.load(Ordering::Relaxed);
    if let Some(Err(why)) = health.leases_ready.as_ref().map(|check| check()) {
        return Check::failing(format!("{}: leases: {why}", health.role.as_str()));
    }
    match health.role {
        ClusterRole::Worker | ClusterRole::Both => Check {
            ok: true,
            detail: Some(format!(
                "{}: NATS connected, consuming {consuming} partitions",
                health.role.as_str()
            )),
        },
        ClusterRole::Ingest => Check {
            ok: true,
            detail: Some("ingest: NATS connected".to_owned()),
        },
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConversationsCheck {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub live: usize,
    pub max_live: usize,
    /// `live` has reached `max_live`: every new conversation retires an older one.
    pub at_capacity: bool,
    /// Conversations retired to make room since boot.
    pub evicted_at_capacity: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub ok: bool,
    /// Why it fails (or a useful fact when it passes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Check {
    fn passing() -> Self {
        Check {
            ok: true,
            detail: None,
        }
    }

    fn failing(detail: String) -> Self {
        Check {
            ok: false,
            detail: Some(detail),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubscriptionsCheck {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub permitted: usize,
    pub rejected: Vec<RejectedTopic>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectedTopic {
    pub topic: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FrameCheck {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Milliseconds since the last frame; absent before the first one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_ms: Option<u64>,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn token_check(valid_until: Option<Instant>, now: Instant) -> Check {
    match valid_until {
        None => Check::failing("no valid access token".to_owned()),
        Some(until) if until <= now => Check::failing(format!(
            "access token expired {} ms ago",
            millis(now.saturating_duration_since(until))
        )),
        Some(_) => Check::passing(),
    }
}

fn socket_check(expected: usize, connected: usize) -> Check {
    if expected == 0 {
        Check::failing("no notification channel yet".to_owned())
    } else if connected < expected {
        Check::failing(format!("{connected} of {expected} channels connected"))
    } else {
        Check::passing()
    }
}

fn subscriptions_check(subscriptions: Option<Subscriptions>) -> SubscriptionsCheck {
    let Some(Subscriptions {
        permitted,
        rejected,
    }) = subscriptions
    else {
        return SubscriptionsCheck {
            ok: false,
            detail: Some("not subscribed yet".to_owned()),
            permitted: 0,
            rejected: Vec::new(),
        };
    };
    let detail = if !rejected.is_empty() {
        Some(format!("{} topics rejected", rejected.len()))
    } else if permitted == 0 {
        Some("no topic permitted".to_owned())
    } else {
        None
    };
    SubscriptionsCheck {
        ok: detail.is_none(),
        detail,
        permitted,
        rejected,
    }
}

fn conversations_check(load: Option<ConversationLoad>, now: Instant) -> ConversationsCheck {
    let Some(load) = load else {
        return ConversationsCheck {
            ok: true,
            detail: None,
            live: 0,
            max_live: 0,
            at_capacity: false,
            evicted_at_capacity: 0,
        };
    };
    let at_capacity = load.max_live > 0 && load.live >= load.max_live;
    let detail = match (at_capacity, load.last_eviction_at) {
        (true, _) => Some(format!(
            "at conversations.max_live ({} of {} live): {} conversations retired to make room so far; each is rebuilt on its next event",
            load.live, load.max_live, load.evicted_at_capacity
        )),
        (false, Some(at)) => Some(format!(
            "{} of {} live; {} conversations retired at the cap so far, the last {} s ago",
            load.live,
            load.max_live,
            load.evicted_at_capacity,
            now.saturating_duration_since(at).as_secs()
        )),
        (false, None) => None,
    };
    ConversationsCheck {
        ok: true,
        detail,
        live: load.live,
        max_live: load.max_live,
        at_capacity,
        evicted_at_capacity: load.evicted_at_capacity,
    }
}

fn rest_check(paused: Option<(Instant, Duration)>, now: Instant) -> Check {
    match paused {
        Some((until, asked)) if until > now => Check::failing(format!(
            "Genesys paused REST calls: {} ms left (asked for {} s)",
            millis(until.saturating_duration_since(now)),
            asked.as_secs()
        )),
        _ => Check::passing(),
    }
}

/// Frames must keep arriving; the clock starts at the last frame or, when later, at the
/// moment every socket was connected.
fn frame_check(
    last: Option<Instant>,
    connected_since: Option<Instant>,
    now: Instant,
    max_age: Duration,
) -> FrameCheck {
    // `None` orders below any time: the later of the two that are known.
    let Some(heard_from) = last.max(connected_since) else {
        return FrameCheck {
            ok: false,
            detail: Some("no frame received yet".to_owned()),
            age_ms: None,
        };
    };
    let ok = now.saturating_duration_since(heard_from) <= max_age;
    let detail = if !ok {
        Some(match last {
            Some(_) => format!("no frame for more than {} ms", millis(max_age)),
            None => format!("no frame within {} ms of connecting", millis(max_age)),
        })
    } else if last.is_none() {
        Some("connected; no frame yet, none due".to_owned())
    } else {
        None
    };
    FrameCheck {
        ok,
        detail,
        age_ms: last.map(|last| millis(now.saturating_duration_since(last))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::json;

    use super::*;

    const MAX_AGE: Duration = Duration::from_secs(60);

    /// A board where every check passes at `now`.
    fn healthy(now: Instant) -> HealthBoard {
        let board = HealthBoard::new(MAX_AGE);
        board.set_token_valid_until(Some(now + Duration::from_secs(3600)));
        board.set_channels_at(1, 1, now - Duration::from_millis(1200));
        board.set_subscriptions(4, Vec::new());
        board.frame_seen(now - Duration::from_millis(1200));
        board
    }

    #[test]
    fn an_empty_board_is_not_ready_and_names_every_failing_check() {
        let now = Instant::now();
        let readiness = HealthBoard::new(MAX_AGE).readiness(now, MAX_AGE);
        assert_eq!(
            serde_json::to_value(&readiness).unwrap(),
            json!({
                "ready": false,
                "checks": {
                    "token": {"ok": false, "detail": "no valid access token"},
                    "socket": {"ok": false, "detail": "no notification channel yet"},
                    "subscriptions": {"ok": false, "detail": "not subscribed yet", "permitted": 0, "rejected": []},
                    "last_frame": {"ok": false, "detail": "no frame received yet"},
                    "shutdown": {"ok": true},
                    "rest": {"ok": true},
                    "conversations": {"ok": true, "live": 0, "max_live": 0, "at_capacity": false, "evicted_at_capacity": 0},
                    "outbox": {"ok": true},
                }
            })
        );
    }

    #[test]
    fn outbox_back_pressure_makes_a_ready_board_unready_and_says_why() {
        let now = Instant::now();
        let ready = healthy(now).readiness(now, MAX_AGE).with_outbox(None, 12);
        assert!(ready.ready);
        assert_eq!(
            ready.checks.outbox.detail.as_deref(),
            Some("12 records pending")
        );
        let held = healthy(now)
            .readiness(now, MAX_AGE)
            .with_outbox(Some("outbox_full"), 1_000);
        assert!(!held.ready);
        let detail = held.checks.outbox.detail.unwrap_or_default();
        assert!(
            detail.contains("outbox_full") && detail.contains("1000 records pending"),
            "{detail}"
        );
    }

    #[test]
    fn the_live_cap_is_reported_but_never_makes_the_board_unready() {
        let now = Instant::now();
        let board = healthy(now);
        board.set_conversations(ConversationLoad {
            live: 3,
            max_live: 10,
            evicted_at_capacity: 0,
            last_eviction_at: None,
        });
        let below = board.readiness(now, MAX_AGE).checks.conversations;
        assert!(below.ok && !below.at_capacity && below.detail.is_none());
        board.set_conversations(ConversationLoad {
            live: 10,
            max_live: 10,
            evicted_at_capacity: 7,
            last_eviction_at: Some(now),
        });
        let readiness = board.readiness(now, MAX_AGE);
        assert!(readiness.ready, "turn-taking loses nothing: {readiness:?}");
        let check = readiness.checks.conversations;
        assert!(check.at_capacity);
        assert_eq!(
            (check.live, check.max_live, check.evicted_at_capacity),
            (10, 10, 7)
        );
        let detail = check.detail.unwrap_or_default();
        assert!(
            detail.contains("conversations.max_live") && detail.contains("7 conversations retired"),
            "{detail}"
        );
        board.set_conversations(ConversationLoad {
            live: 4,
            max_live: 10,
            evicted_at_capacity: 7,
            last_eviction_at: Some(now - Duration::from_secs(5)),
        });
        let after = board.readiness(now, MAX_AGE).checks.conversations;
        assert!(!after.at_capacity);
        assert!(
            after
                .detail
                .unwrap_or_default()
                .contains("the last 5 s ago"),
            "the evictions stay visible after the flood"
        );
    }

    #[test]
    fn a_filled_board_is_ready() {
        let now = Instant::now();
        let readiness = healthy(now).readiness(now, MAX_AGE);
        assert_eq!(
            serde_json::to_value(&readiness).unwrap(),
            json!({
                "ready": true,
                "checks": {
                    "token": {"ok": true},
                    "socket": {"ok": true},
                    "subscriptions": {"ok": true, "permitted": 4, "rejected": []},
                    "last_frame": {"ok": true, "age_ms": 1200},
                    "shutdown": {"ok": true},
                    "rest": {"ok": true},
                    "conversations": {"ok": true, "live": 0, "max_live": 0, "at_capacity": false, "evicted_at_capacity": 0},
                    "outbox": {"ok": true},
                }
            })
        );
    }

    #[test]
    fn an_expired_token_fails_only_the_token_check() {
        let now = Instant::now();
        let board = healthy(now);
        board.set_token_valid_until(Some(now - Duration::from_secs(2)));
        let readiness = board.readiness(now, MAX_AGE);
        assert!(!readiness.ready);
        assert_eq!(
            readiness.checks.token,
            Check::failing("access token expired 2000 ms ago".to_owned())
        );
        assert!(readiness.checks.socket.ok && readiness.checks.last_frame.ok);
        // A token valid until exactly now is already expired: requests would race it.
        board.set_token_valid_until(Some(now));
        assert!(!board.readiness(now, MAX_AGE).checks.token.ok);
    }

    #[test]
    fn a_missing_channel_fails_the_socket_check() {
        let now = Instant::now();
        let board = healthy(now);
        board.set_channels(2, 1);
        let readiness = board.readiness(now, MAX_AGE);
        assert!(!readiness.ready);
        assert_eq!(
            readiness.checks.socket.detail.as_deref(),
            Some("1 of 2 channels connected")
        );
    }

    #[test]
    fn a_rejected_topic_fails_the_subscriptions_check_with_its_reason() {
        let now = Instant::now();
        let board = healthy(now);
        board.set_subscriptions(
            3,
            vec![(
                "v2.users.u1.conversations".to_owned(),
                "Permission denied".to_owned(),
            )],
        );
        let readiness = board.readiness(now, MAX_AGE);
        assert!(!readiness.ready);
        assert_eq!(
            serde_json::to_value(&readiness.checks.subscriptions).unwrap(),
            json!({
                "ok": false,
                "detail": "1 topics rejected",
                "permitted": 3,
                "rejected": [{"topic": "v2.users.u1.conversations", "reason": "Permission denied"}],
            })
        );
    }

    #[test]
    fn a_subscription_that_permitted_nothing_is_not_ready() {
        let now = Instant::now();
        let board = healthy(now);
        board.set_subscriptions(0, Vec::new());
        assert!(!board.readiness(now, MAX_AGE).ready);
    }

    #[test]
    fn the_last_frame_must_be_recent() {
        let start = Instant::now();
        let board = healthy(start);
        board.frame_seen(start);
        assert!(board.readiness(start + MAX_AGE, MAX_AGE).ready);
        let late = board.readiness(start + MAX_AGE + Duration::from_millis(1), MAX_AGE);
        assert!(!late.ready);
        assert_eq!(late.checks.last_frame.age_ms, Some(60_001));
        assert_eq!(
            late.checks.last_frame.detail.as_deref(),
            Some("no frame for more than 60000 ms")
        );
    }

    #[test]
    fn a_fresh_connection_is_ready_before_its_first_frame() {
        let start = Instant::now();
        let board = HealthBoard::new(MAX_AGE);
        board.set_token_valid_until(Some(start + Duration::from_secs(3600)));
        board.set_subscriptions(4, Vec::new());
        board.set_channels_at(1, 1, start);
        // Connected and subscribed, no heartbeat due yet: ready at once.
        let fresh = board.readiness(start + Duration::from_millis(4), MAX_AGE);
        assert!(fresh.ready, "{fresh:?}");
        assert_eq!(fresh.checks.last_frame.age_ms, None);
        assert!(board.readiness(start + MAX_AGE, MAX_AGE).ready);
        // A heartbeat was due and none came.
        let silent = board.readiness(start + MAX_AGE + Duration::from_millis(1), MAX_AGE);
        assert!(!silent.ready);
        assert_eq!(
            silent.checks.last_frame.detail.as_deref(),
            Some("no frame within 60000 ms of connecting")
        );
    }

    #[test]
    fn a_reconnect_restarts_the_frame_clock_and_a_drop_stops_it() {
        let start = Instant::now();
        let board = healthy(start);
        board.set_channels_at(1, 0, start + Duration::from_secs(100));
        assert!(
            !board
                .readiness(start + Duration::from_secs(100), MAX_AGE)
                .ready
        );
        board.set_channels_at(1, 1, start + Duration::from_secs(101));
        // The last frame is 101 s old, but the socket is 1 s old.
        let readiness = board.readiness(start + Duration::from_secs(102), MAX_AGE);
        assert!(readiness.ready, "{readiness:?}");
        // Staying connected does not move the connection time.
        board.set_channels_at(1, 1, start + Duration::from_secs(150));
        assert!(
            !board
                .readiness(start + Duration::from_secs(170), MAX_AGE)
                .ready
        );
    }

    #[test]
    fn an_older_frame_time_never_moves_the_last_frame_backwards() {
        let start = Instant::now();
        let board = healthy(start);
        board.frame_seen(start + Duration::from_secs(10));
        board.frame_seen(start);
        let readiness = board.readiness(start + Duration::from_secs(10), MAX_AGE);
        assert_eq!(readiness.checks.last_frame.age_ms, Some(0));
    }

    #[test]
    fn shutting_down_is_never_ready() {
        let now = Instant::now();
        let board = healthy(now);
        board.set_shutting_down();
        let readiness = board.readiness(now, MAX_AGE);
        assert!(!readiness.ready);
        assert_eq!(
            readiness.checks.shutdown,
            Check::failing("shutting down".to_owned())
        );
    }

    #[test]
    fn a_paused_rest_bucket_is_not_ready_until_the_pause_ends() {
        let now = Instant::now();
        let board = healthy(now);
        board.set_rest_paused(
            now + Duration::from_secs(300),
            Duration::from_secs(315_360_000),
        );
        let readiness = board.readiness(now, MAX_AGE);
        assert!(!readiness.ready);
        assert_eq!(
            readiness.checks.rest,
            Check::failing(
                "Genesys paused REST calls: 300000 ms left (asked for 315360000 s)".to_owned()
            )
        );
        // A shorter pause reported later does not shorten it.
        board.set_rest_paused(now + Duration::from_secs(1), Duration::from_secs(1));
        assert!(!board.readiness(now + Duration::from_secs(2), MAX_AGE).ready);
        assert!(
            board
                .readiness(now + Duration::from_secs(300), MAX_AGE)
                .checks
                .rest
                .ok
        );
    }
}
