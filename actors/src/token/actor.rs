//! TokenActor's state, lifecycle and handlers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::{GetToken, InvalidateToken};
use crate::genesys::oauth::{request_token, AccessToken, IssuedToken, TokenEndpoint, TokenError};
use crate::retry_schedule::RetrySchedule;
use crate::supervision::PanicGuard;
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
    /// Every REST and socket path depends on this actor: if it dies, the process stops
    /// loudly rather than every caller silently waiting.
    _panic_guard: PanicGuard,
}

impl TokenActor {
    pub fn new(endpoint: TokenEndpoint, stats: Arc<TokenStats>) -> Self {
        TokenActor {
            endpoint,
            http: None,
            cached: None,
            waiters: Vec::new(),
            refreshing: false,
            stats,
            _panic_guard: PanicGuard::essential("token"),
        }
    }

    fn valid_token(&self, now: Instant) -> Option<AccessToken> {
        self.cached
            .as_ref()
            .filter(|cached| now < cached.expires_at)
            .map(|cached| cached.token.clone())
    }

    /// Starts a refresh unless one is running. Transient failures are retried with
    /// backoff inside the same refresh; a rejection (bad credentials) ends it at once.
    fn start_refresh(&mut self, ctx: &mut Context<Self>) {
        if self.refreshing {
            return;
        }
        let Some(http) = self.http.clone() else {
            return;
        };
        self.refreshing = true;
        let endpoint = self.endpoint.clone();
        let stats = Arc::clone(&self.stats);
        let refresh = async move {
            let mut schedule =
                RetrySchedule::new(Duration::from_millis(200), Duration::from_secs(30));
            loop {
                match request_token(&http, &endpoint).await {
                    Ok(issued) => return Ok(issued),
                    Err(error) if error.is_retryable() => {
                        stats.refresh_failures.fetch_add(1, Ordering::Relaxed);
                        let delay = schedule.next_delay();
                        tracing::warn!(%error, delay_ms = delay.as_millis() as u64, "Token refresh failed; retrying.");
                        actix_rt::time::sleep(delay).await;
                    }
                    Err(error) => return Err(error),
                }
            }
        };
        ctx.spawn(
            refresh
                .into_actor(self)
                .map(|result, actor, ctx| actor.finish_refresh(result, ctx)),
        );
    }

    fn finish_refresh(&mut self, result: Result<IssuedToken, TokenError>, ctx: &mut Context<Self>) {
        self.refreshing = false;
        let outcome = match result {
            Ok(issued) => {
                self.stats.refreshes.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(names::TOKEN_REFRESHES).increment(1);
                let now = Instant::now();
                let margin = refresh_margin(issued.expires_in);
                let refresh_in = issued.expires_in.saturating_sub(margin);
                self.cached = Some(CachedToken {
                    token: issued.token.clone(),
                    refresh_at: now + refresh_in,
                    expires_at: now + issued.expires_in,
                });
                self.stats.set_expires_at(Some(now + issued.expires_in));
                tracing::info!(
                    expires_in_s = issued.expires_in.as_secs(),
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
                self.stats.refresh_failures.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(names::TOKEN_REFRESH_FAILURES).increment(1);
                tracing::error!(%error, "Could not obtain an OAuth token.");
                Err(error)
            }
        };
        for waiter in self.waiters.drain(..) {
            // A waiter that gave up (timed out) has dropped its receiver; nothing to do.
            let _ = waiter.send(outcome.clone());
        }
    }
}

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
