//! TokenActor's state, lifecycle and handlers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::{GetToken, InvalidateToken};
use crate::genesys::oauth::{request_token, AccessToken, IssuedToken, TokenEndpoint, TokenError};
use crate::retry_schedule::RetrySchedule;
use crate::supervision::{Escalation, EscalationCause, PanicGuard};
use crate::telemetry::{names, ActorMetrics};

/// Counters the admin server reads without touching the actor.
#[derive(Debug, Default)]
pub struct TokenStats {
    pub refreshes: AtomicU64,
    pub refresh_failures: AtomicU64,
    pub invalidations: AtomicU64,
    /// When the cached token expires (`None`: no valid token). Read by `/readyz` and by
    /// the stream's token-expiry rotation.
    expires_at: Mutex<Option<Instant>>,
}

impl TokenStats {
    pub fn expires_at(&self) -> Option<Instant> {
        *self
            .expires_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn set_expires_at(&self, at: Option<Instant>) {
        *self
            .expires_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = at;
    }
}

/// How long before expiry a token is replaced: a tenth of its life, at most five
/// minutes. Genesys tokens live 5 min to 48 h, so this is 30 s to 5 min in production and
/// proportionally short for the emulator's short-lived test tokens.
pub fn refresh_margin(lifetime: Duration) -> Duration {
    (lifetime / 10).min(Duration::from_secs(300))
}

/// The longest token life believed: Genesys grants at most 48 h; a larger `expires_in`
/// (up to `u64::MAX` seconds) is a bug upstream that must not overflow a clock.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// Tokens are never requested more often than this, whatever `expires_in` says (0 would
/// otherwise mean a refresh loop) and however many 401s report a token bad.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// How long a token reported to live `expires_in` is used, and when its replacement is
/// fetched (both from the moment it was issued): the life clamped to
/// `[MIN_REFRESH_INTERVAL, MAX_TOKEN_LIFETIME]`, the refresh a [`refresh_margin`] ahead of
/// expiry but never sooner than [`MIN_REFRESH_INTERVAL`].
pub fn token_timing(expires_in: Duration) -> (Duration, Duration) {
    let lifetime = expires_in.clamp(MIN_REFRESH_INTERVAL, MAX_TOKEN_LIFETIME);
    let refresh_in = lifetime
        .saturating_sub(refresh_margin(lifetime))
        .max(MIN_REFRESH_INTERVAL);
    (lifetime, refresh_in)
}

/// When the token actor gives up on the process (see [`TokenActor::with_policy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenPolicy {
    /// Consecutive refusals of the OAuth client (400/401/403 from the token endpoint)
    /// before the process stops with `EXIT_CREDENTIALS_REFUSED`. A refusal is retried
    /// (after a short backoff) in case it was a transient glitch of the identity service.
    pub credential_attempts: u32,
    /// How long the login host may stay unreachable (transport errors, 5xx, 429) while
    /// Convoy has no valid token before the process stops with `EXIT_LOGIN_UNREACHABLE`
    /// (`genesys.login_unreachable_exit_after`).
    pub unreachable_exit_after: Duration,
    /// First delay between failed attempts (doubling, at most 30 s).
    pub retry_initial: Duration,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        TokenPolicy {
            credential_attempts: 3,
            unreachable_exit_after: convoy::config::defaults::LOGIN_UNREACHABLE_EXIT_AFTER,
            retry_initial: Duration::from_millis(200),
        }
    }
}

struct CachedToken {
    token: AccessToken,
    refresh_at: Instant,
    expires_at: Instant,
}

type Waiter = oneshot::Sender<Result<AccessToken, TokenError>>;

pub struct TokenActor {
    endpoint: TokenEndpoint,
    /// Created in `started()`: awc's client is not `Send` and belongs to this arbiter.
    http: Option<awc::Client>,
    cached: Option<CachedToken>,
    /// Askers waiting for the refresh in flight; all get its result.
    waiters: Vec<Waiter>,
    refreshing: bool,
    stats: Arc<TokenStats>,
    policy: TokenPolicy,
    escalation: Escalation,
    /// When the last token request was sent (the minimum refresh interval counts from it).
    last_request_at: Option<Instant>,
    /// Refusals of the OAuth client in a row.
    refusals: u32,
    /// Since when every attempt failed (reset by a token).
    failing_since: Option<Instant>,
    /// Backoff between failed refreshes, across refreshes (reset by a token).
    backoff: RetrySchedule,
    /// Set when the process is being stopped: the error every asker gets from then on.
    gave_up: Option<TokenError>,
    /// Every REST and socket path depends on this actor: if it dies, the process stops
    /// loudly rather than every caller silently waiting.
    _panic_guard: PanicGuard,
}

impl TokenActor {
    pub fn new(endpoint: TokenEndpoint, stats: Arc<TokenStats>) -> Self {
        let policy = TokenPolicy::default();
        TokenActor {
            endpoint,
            http: None,
            cached: None,
            waiters: Vec::new(),
            refreshing: false,
            stats,
            policy,
            escalation: Escalation::default(),
            last_request_at: None,
            refusals: 0,
            failing_since: None,
            backoff: RetrySchedule::new(policy.retry_initial, MAX_RETRY_DELAY),
            gave_up: None,
            _panic_guard: PanicGuard::essential("token"),
        }
    }

    /// When to give up on the process (defaults: [`TokenPolicy::default`]).
    pub fn with_policy(mut self, policy: TokenPolicy) -> Self {
        self.policy = policy;
        self.backoff = RetrySchedule::new(policy.retry_initial, MAX_RETRY_DELAY);
        self
    }

    /// What giving up does (default: stop the System with the cause's exit code; tests
    /// observe instead).
    pub fn with_escalation(mut self, escalation: Escalation) -> Self {
        self.escalation = escalation;
        self
    }

    fn valid_token(&self, now: Instant) -> Option<AccessToken> {
        self.cached
            .as_ref()
            .filter(|cached| now < cached.expires_at)
            .map(|cached| cached.token.clone())
    }

    /// Starts a refresh unless one is running or the process is giving up. One attempt per
    /// refresh; a failure schedules the next attempt after a backoff
    /// ([`Self::finish_refresh`]), never sooner than [`MIN_REFRESH_INTERVAL`] after the
    /// last request.
    fn start_refresh(&mut self, ctx: &mut Context<Self>) {
        if self.refreshing || self.gave_up.is_some() {
            return;
        }
        let Some(http) = self.http.clone() else {
            return;
        };
        self.refreshing = true;
        let wait = self
            .last_request_at
            .map(|last| (last + MIN_REFRESH_INTERVAL).saturating_duration_since(Instant::now()))
            .unwrap_or_default();
        let endpoint = self.endpoint.clone();
        let refresh = async move {
            if !wait.is_zero() {
                actix_rt::time::sleep(wait).await;
            }
            request_token(&http, &endpoint).await
        };
        ctx.spawn(
            refresh
                .into_actor(self)
                .map(|result, actor, ctx| actor.finish_refresh(result, ctx)),
        );
    }

    fn finish_refresh(&mut self, result: Result<IssuedToken, TokenError>, ctx: &mut Context<Self>) {
        self.refreshing = false;
        let now = Instant::now();
        self.last_request_at = Some(now);
        let outcome = match result {
            Ok(issued) => {
                self.stats.refreshes.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(names::TOKEN_REFRESHES).increment(1);
                self.refusals = 0;
                self.failing_since = None;
                self.backoff.reset();
                let (lifetime, refresh_in) = token_timing(issued.expires_in);
                if lifetime != issued.expires_in {
                    tracing::warn!(
                        expires_in_s = issued.expires_in.as_secs(),
                        used_s = lifetime.as_secs(),
                        "The token endpoint reported an implausible token lifetime; using a clamped one."
                    );
                }
                self.cached = Some(CachedToken {
                    token: issued.token.clone(),
                    refresh_at: now + refresh_in,
                    expires_at: now + lifetime,
                });
                self.stats.set_expires_at(Some(now + lifetime));
                tracing::info!(
                    expires_in_s = lifetime.as_secs(),
                    "Obtained an OAuth token."
                );
                // Refresh ahead of expiry, not at it, so no caller ever waits on an
                // expired token in steady state.
                ctx.run_later(refresh_in, |actor, ctx| {
                    let due = actor
                        .cached
                        .as_ref()
                        .is_none_or(|cached| Instant::now() >= cached.refresh_at);
                    if due {
                        actor.start_refresh(ctx);
                    }
                });
                Ok(issued.token)
            }
            Err(error) => {
                let gave_up = self.refresh_failed(&error, now, ctx);
                if error.is_retryable() && !gave_up {
                    // The askers wait for the retry, as they would for a slow endpoint.
                    return;
                }
                Err(error)
            }
        };
        for waiter in self.waiters.drain(..) {
            // A waiter that gave up (timed out) has dropped its receiver; nothing to do.
            let _ = waiter.send(outcome.clone());
        }
    }

    /// Counts a failed attempt, gives up on the process when the policy says so (returns
    /// true), and otherwise plans the next attempt.
    fn refresh_failed(
        &mut self,
        error: &TokenError,
        now: Instant,
        ctx: &mut Context<Self>,
    ) -> bool {
        self.stats.refresh_failures.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(names::TOKEN_REFRESH_FAILURES).increment(1);
        let failing_since = *self.failing_since.get_or_insert(now);
        let cause = match error {
            TokenError::Rejected { status, .. } => {
                self.refusals += 1;
                tracing::error!(%error, attempt = self.refusals, of = self.policy.credential_attempts, "Genesys refused the OAuth client.");
                (self.refusals >= self.policy.credential_attempts).then_some(
                    EscalationCause::CredentialsRefused {
                        attempts: self.refusals,
                        status: *status,
                    },
                )
            }
            _ => {
                self.refusals = 0;
                let failing_for = now.saturating_duration_since(failing_since);
                tracing::warn!(%error, failing_for_s = failing_for.as_secs(), "Token refresh failed; retrying.");
                let without_token = self.valid_token(now).is_none();
                (without_token && failing_for >= self.policy.unreachable_exit_after)
                    .then_some(EscalationCause::LoginUnreachable { failing_for })
            }
        };
        if let Some(cause) = cause {
            self.gave_up = Some(error.clone());
            match &cause {
                EscalationCause::CredentialsRefused { attempts, .. } => tracing::error!(
                    %error,
                    attempts,
                    code = cause.exit_code(),
                    "Genesys keeps refusing the OAuth client; stopping. Check genesys.client_id and the client secret."
                ),
                _ => tracing::error!(
                    %error,
                    login_base = %self.endpoint.login_base,
                    limit_s = self.policy.unreachable_exit_after.as_secs(),
                    code = cause.exit_code(),
                    "No token could be obtained for longer than genesys.login_unreachable_exit_after; stopping."
                ),
            }
            self.escalation.escalate(&cause);
            return true;
        }
        // Whatever started this refresh (expiry ahead, a 401, an asker) still needs a token.
        let delay = self.backoff.next_delay();
        ctx.run_later(delay, |actor, ctx| actor.start_refresh(ctx));
        false
    }
}

/// Longest delay between failed token requests.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

impl Actor for TokenActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.http = Some(
            awc::Client::builder()
                .timeout(Duration::from_secs(15))
                .finish(),
        );
        // Fetch eagerly so the first real caller does not pay for it.
        self.start_refresh(ctx);
    }
}

impl Handler<GetToken> for TokenActor {
    type Result = ResponseFuture<Result<AccessToken, TokenError>>;

    fn handle(&mut self, _: GetToken, ctx: &mut Self::Context) -> Self::Result {
        ActorMetrics::handled("token");
        if let Some(token) = self.valid_token(Instant::now()) {
            return Box::pin(async move { Ok(token) });
        }
        if let Some(error) = self.gave_up.clone() {
            return Box::pin(async move { Err(error) });
        }
        let (sender, receiver) = oneshot::channel();
        self.waiters.push(sender);
        self.start_refresh(ctx);
        Box::pin(async move { receiver.await.unwrap_or(Err(TokenError::ActorGone)) })
    }
}

impl Handler<InvalidateToken> for TokenActor {
    type Result = ();

    fn handle(&mut self, message: InvalidateToken, ctx: &mut Self::Context) {
        let is_current = self
            .cached
            .as_ref()
            .is_some_and(|cached| cached.token == message.token);
        if is_current {
            self.stats.invalidations.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("A call was refused with 401; dropping the cached token.");
            self.cached = None;
            self.stats.set_expires_at(None);
            self.start_refresh(ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absurd_lifetime_is_clamped_and_a_zero_one_never_loops() {
        let (lifetime, refresh_in) = token_timing(Duration::from_secs(u64::MAX));
        assert_eq!(lifetime, MAX_TOKEN_LIFETIME);
        assert_eq!(refresh_in, MAX_TOKEN_LIFETIME - Duration::from_secs(300));
        assert!(Instant::now().checked_add(lifetime).is_some());
        let (lifetime, refresh_in) = token_timing(Duration::ZERO);
        assert_eq!(lifetime, MIN_REFRESH_INTERVAL);
        assert_eq!(refresh_in, MIN_REFRESH_INTERVAL);
        assert_eq!(
            token_timing(Duration::from_secs(86_400)),
            (Duration::from_secs(86_400), Duration::from_secs(86_100))
        );
    }

    #[test]
    fn the_margin_is_a_tenth_of_the_life_capped_at_five_minutes() {
        assert_eq!(
            refresh_margin(Duration::from_secs(86_399)),
            Duration::from_secs(300)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(600)),
            Duration::from_secs(60)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(3)),
            Duration::from_millis(300)
        );
    }
}
