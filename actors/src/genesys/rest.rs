//! Every Genesys REST call goes through [`GenesysRest::call`]: bearer token from the
//! TokenActor, one token bucket shared by all callers (300 requests per minute per OAuth
//! client by default) whose waiters queue live-first then in arrival order,
//! `Retry-After` and `inin-ratelimit-*` honoured but clamped (5 min by default; counted,
//! logged, shown on `/readyz`), [`SharedBucket::close`] at shutdown ends every wait with
//! [`RestError::ShuttingDown`], 401 → drop the token
//! and retry once, 408/429/5xx and transport errors retried with backoff (bounded),
//! other 4xx returned to the caller as typed errors. Metrics by route template and status
//! class; never a conversation id in a label.
//!
//! `GenesysRest` owns an awc client, which is not `Send`: each actor builds its own in
//! `started()` from a [`RestContext`], which is `Send` and cheap to clone.
//!
//! Where a request leaves is the context's [`RestTransport`]: Genesys over HTTP (with
//! `--record`, every final answer to a read — a GET, an analytics query — is appended to
//! the capture, never the request's credentials), or, in `convoy replay`, the recording
//! itself ([`crate::replay::ReplayRest`]: no socket, no token, no rate limit).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix::Addr;
use awc::http::{header::HeaderMap, Method};
use bytes::Bytes;
use chrono::Utc;
use convoy::model::ErrorBody;
use convoy::ratelimit::{ServerPause, Ticket, TokenBucket, WaitQueue};
use convoy::retry::{classify_status, parse_delta_seconds, parse_retry_after, RetryAction};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::admin::HealthBoard;
use crate::genesys::oauth::TokenError;
use crate::replay::ReplayRest;
use crate::retry_schedule::RetrySchedule;
use crate::stream::recorder::Recorder;
use crate::telemetry::{names, ActorMetrics};
use crate::token::{GetToken, InvalidateToken, TokenActor};

/// Attempts per call before giving up on transient failures.
const MAX_ATTEMPTS: u32 = 6;
/// Largest response body read (analytics pages are the biggest: 100 conversations).
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The token bucket all callers share, with the monotonic origin its times count from, the
/// queue of callers waiting for a token, and the shutdown switch.
///
/// Waiting is event-driven: a caller without a token joins the [`WaitQueue`] and sleeps on
/// its own channel. Only the head of the queue holds a timer (the "alarm") for the moment
/// its token is earned; when it fires, the head dispatches, and each token wakes exactly
/// the waiter it belongs to. A waiter that gives up (its future is dropped) leaves the
/// queue and hands the alarm on.
pub struct SharedBucket {
    origin: Instant,
    state: Mutex<BucketState>,
    /// Read by `/readyz` (a paused bucket is not ready), when attached.
    board: Option<Arc<HealthBoard>>,
}

struct BucketState {
    bucket: TokenBucket,
    queue: WaitQueue,
    waiters: HashMap<Ticket, mpsc::UnboundedSender<Wake>>,
    /// The waiter holding the timer, and when (monotonic) it fires.
    alarm: Option<(Ticket, Duration)>,
    closed: bool,
    /// Wakes sleeping retries at once when the bucket is closed.
    closing: Arc<tokio::sync::Notify>,
}

/// What a waiting caller is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    /// A token is yours.
    Granted,
    /// You are the head of the queue: dispatch again after this long.
    Alarm(Duration),
    /// The bucket was closed (shutdown): give up.
    Closed,
}

impl SharedBucket {
    /// `per_minute` requests, bursting to a fifth of a minute's budget (at least 1);
    /// server pauses clamped to [`convoy::ratelimit::MAX_SERVER_PAUSE`].
    pub fn new(per_minute: u32) -> Self {
        Self::with_bucket(TokenBucket::new(per_minute, (per_minute / 5).max(1)))
    }

    /// A shared bucket around `bucket` (tests: a short server-pause clamp).
    pub fn with_bucket(bucket: TokenBucket) -> Self {
        SharedBucket {
            origin: Instant::now(),
            state: Mutex::new(BucketState {
                bucket,
                queue: WaitQueue::new(),
                waiters: HashMap::new(),
                alarm: None,
                closed: false,
                closing: Arc::new(tokio::sync::Notify::new()),
            }),
            board: None,
        }
    }

    /// Reports server pauses to `board`, so `/readyz` shows a paused bucket.
    pub fn with_health(mut self, board: Arc<HealthBoard>) -> Self {
        self.board = Some(board);
        self
    }

    /// Shutdown: every caller waiting for a token (and every retry sleeping between
    /// attempts) returns [`RestError::ShuttingDown`] at once, and so does every later call.
    /// Idempotent. The daemon calls it when its shutdown begins, so requests in flight do
    /// not wait out the rate limit past the shutdown deadline.
    pub fn close(&self) {
        let (waiters, closing) = {
            let mut state = self.lock();
            state.closed = true;
            state.queue.drain();
            state.alarm = None;
            let waiters: Vec<_> = state.waiters.drain().map(|(_, tx)| tx).collect();
            (waiters, Arc::clone(&state.closing))
        };
        for waiter in waiters {
            let _ = waiter.send(Wake::Closed);
        }
        closing.notify_waiters();
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// How long every caller is still paused by the server, if it is.
    pub fn paused_for(&self) -> Option<Duration> {
        let now = self.now();
        self.lock()
            .bucket
            .paused_until(now)
            .map(|until| until.saturating_sub(now))
    }

    /// `asked` cut to the bucket's longest server pause (no queue work: only reads).
    fn clamp_server_pause(&self, asked: Duration) -> Duration {
        asked.min(self.lock().bucket.max_server_pause())
    }

    /// Callers waiting for a token now.
    pub fn waiting(&self) -> usize {
        self.lock().queue.len()
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BucketState> {
        // A poisoned lock only means another thread panicked mid-update of plain numbers
        // and queues; the state is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn with<T>(&self, f: impl FnOnce(&mut TokenBucket, Duration) -> T) -> T {
        let now = self.now();
        let result = f(&mut self.lock().bucket, now);
        // Whatever changed (a pause, fewer tokens) may change who waits how long.
        self.dispatch(None);
        result
    }

    /// Serves the queue; re-arms the head's timer. `from_alarm`: the caller whose alarm
    /// fired (it no longer holds one).
    fn dispatch(&self, from_alarm: Option<Ticket>) {
        let now = self.now();
        let mut wakes = Vec::new();
        {
            let mut state = self.lock();
            if state.closed {
                return;
            }
            if from_alarm.is_some() && state.alarm.map(|(holder, _)| holder) == from_alarm {
                state.alarm = None;
            }
            let BucketState { bucket, queue, .. } = &mut *state;
            let dispatch = queue.dispatch(bucket, now);
            for ticket in dispatch.granted {
                if state.alarm.is_some_and(|(holder, _)| holder == ticket) {
                    state.alarm = None;
                }
                if let Some(waiter) = state.waiters.remove(&ticket) {
                    wakes.push((waiter, Wake::Granted));
                }
            }
            if let Some((head, wait)) = dispatch.head {
                let due = now.saturating_add(wait);
                // An alarm already set on the head, due no later, covers it.
                let covered = state
                    .alarm
                    .is_some_and(|(holder, at)| holder == head && at <= due);
                if !covered {
                    if let Some(waiter) = state.waiters.get(&head).cloned() {
                        state.alarm = Some((head, due));
                        wakes.push((waiter, Wake::Alarm(wait)));
                    }
                }
            }
        }
        for (waiter, wake) in wakes {
            let _ = waiter.send(wake);
        }
    }

    /// Waits for a token for `priority`, in queue order.
    pub async fn acquire(&self, priority: Priority) -> Result<(), RestError> {
        let (ticket, mut wakes) = {
            let mut state = self.lock();
            if state.closed {
                return Err(RestError::ShuttingDown);
            }
            let (tx, rx) = mpsc::unbounded_channel();
            let ticket = state.queue.push(priority);
            state.waiters.insert(ticket, tx);
            (ticket, rx)
        };
        // Leaves the queue if this future is dropped before its token came.
        let mut guard = LeaveOnDrop {
            bucket: self,
            ticket: Some(ticket),
        };
        self.dispatch(None);
        let mut alarm: Option<Duration> = None;
        loop {
            let wake = match alarm.take() {
                Some(wait) => {
                    tokio::select! {
                        wake = wakes.recv() => wake,
                        () = actix_rt::time::sleep(wait) => {
                            self.dispatch(Some(ticket));
                            continue;
                        }
                    }
                }
                None => wakes.recv().await,
            };
            match wake {
                Some(Wake::Granted) => {
                    guard.ticket = None;
                    return Ok(());
                }
                Some(Wake::Alarm(wait)) => alarm = Some(wait),
                Some(Wake::Closed) | None => {
                    guard.ticket = None;
                    return Err(RestError::ShuttingDown);
                }
            }
        }
    }

    /// Sleeps `delay` between attempts, cut short by [`Self::close`].
    async fn sleep_unless_closed(&self, delay: Duration) -> Result<(), RestError> {
        self.unless_closed(actix_rt::time::sleep(delay)).await
    }

    /// Runs `work` unless [`Self::close`] comes first (then `ShuttingDown`).
    async fn unless_closed<F: std::future::Future>(&self, work: F) -> Result<F::Output, RestError> {
        let closing = {
            let state = self.lock();
            if state.closed {
                return Err(RestError::ShuttingDown);
            }
            Arc::clone(&state.closing)
        };
        let notified = closing.notified();
        tokio::pin!(notified);
        // Registers interest before re-checking, so a close in between is not missed.
        notified.as_mut().enable();
        if self.is_closed() {
            return Err(RestError::ShuttingDown);
        }
        tokio::select! {
            output = work => Ok(output),
            () = notified => Err(RestError::ShuttingDown),
        }
    }

    /// A server pause was applied: count it, log it (with what was asked when clamped),
    /// and tell `/readyz`.
    fn report_pause(&self, pause: ServerPause, source: &'static str, route: &'static str) {
        metrics::counter!(names::REST_SERVER_PAUSES, "source" => source).increment(1);
        if pause.clamped() {
            metrics::counter!(names::REST_SERVER_PAUSES_CLAMPED, "source" => source).increment(1);
            tracing::warn!(
                route,
                source,
                asked_s = pause.asked.as_secs(),
                applied_s = pause.applied.as_secs(),
                "Genesys asked for a longer pause than allowed; pausing every REST call for the clamped time only."
            );
        } else {
            tracing::info!(
                route,
                source,
                asked_s = pause.asked.as_secs(),
                applied_s = pause.applied.as_secs(),
                "Genesys asked to pause; every REST call waits."
            );
        }
        if let Some(board) = &self.board {
            board.set_rest_paused(Instant::now() + pause.applied, pause.asked);
        }
    }
}

/// Takes a waiter out of the queue when its `acquire` is abandoned.
struct LeaveOnDrop<'a> {
    bucket: &'a SharedBucket,
    ticket: Option<Ticket>,
}

impl Drop for LeaveOnDrop<'_> {
    fn drop(&mut self) {
        let Some(ticket) = self.ticket else {
            return;
        };
        {
            let mut state = self.bucket.lock();
            state.queue.remove(ticket);
            state.waiters.remove(&ticket);
            if state.alarm.is_some_and(|(holder, _)| holder == ticket) {
                state.alarm = None;
            }
        }
        // The next waiter may be the new head and need the alarm.
        self.bucket.dispatch(None);
    }
}

/// What a REST caller needs, `Send` so it can be handed to actors at boot.
#[derive(Clone)]
pub struct RestContext {
    pub api_base: String,
    pub tokens: Addr<TokenActor>,
    pub bucket: Arc<SharedBucket>,
    pub transport: RestTransport,
}

/// Where requests go.
#[derive(Clone)]
pub enum RestTransport {
    /// Genesys over HTTP. `record`: the `--record` capture, where every final answer to a
    /// read is appended.
    Http {
        record: Option<Arc<Mutex<Recorder>>>,
    },
    /// `convoy replay`: reads are answered from the recording, writes by an in-process
    /// fake; the token actor and the bucket are never asked.
    Replay(Arc<ReplayRest>),
}

impl Default for RestTransport {
    /// HTTP, nothing recorded.
    fn default() -> Self {
        RestTransport::Http { record: None }
    }
}

/// Whether a request only reads (its answer is what a replay needs): a GET, or a query
/// POSTed to the analytics API.
fn is_read(request: &RestRequest) -> bool {
    request.method == Method::GET
        || (request.method == Method::POST && request.path.starts_with("/api/v2/analytics/"))
}

/// Live writes go first; reconciliation and discovery yield (they queue behind every live
/// waiter and leave a reserve of tokens that only live traffic may use).
pub use convoy::ratelimit::Priority;

/// One request: method, path under the API base, a route template for metrics.
#[derive(Debug, Clone)]
pub struct RestRequest {
    pub method: Method,
    pub path: String,
    pub route: &'static str,
    pub body: Option<serde_json::Value>,
    pub headers: Vec<(&'static str, String)>,
    pub priority: Priority,
}

impl RestRequest {
    fn new(method: Method, path: impl Into<String>, route: &'static str) -> Self {
        RestRequest {
            method,
            path: path.into(),
            route,
            body: None,
            headers: Vec::new(),
            priority: Priority::Live,
        }
    }

    pub fn get(path: impl Into<String>, route: &'static str) -> Self {
        RestRequest::new(Method::GET, path, route)
    }

    pub fn head(path: impl Into<String>, route: &'static str) -> Self {
        RestRequest::new(Method::HEAD, path, route)
    }

    pub fn delete(path: impl Into<String>, route: &'static str) -> Self {
        RestRequest::new(Method::DELETE, path, route)
    }

    pub fn post(path: impl Into<String>, route: &'static str, body: serde_json::Value) -> Self {
        RestRequest::new(Method::POST, path, route).with_body(body)
    }

    pub fn put(path: impl Into<String>, route: &'static str, body: serde_json::Value) -> Self {
        RestRequest::new(Method::PUT, path, route).with_body(body)
    }

    pub fn patch(path: impl Into<String>, route: &'static str, body: serde_json::Value) -> Self {
        RestRequest::new(Method::PATCH, path, route).with_body(body)
    }

    fn with_body(mut self, body: serde_json::Value) -> Self {
        self.body = Some(body);
        self
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Marks the request as background work (reconciliation, discovery).
    pub fn background(mut self) -> Self {
        self.priority = Priority::Background;
        self
    }

    /// Sets the request's priority in the token bucket's queue.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }
}

/// A response the caller gets to read: 2xx only (errors are [`RestError`]s).
#[derive(Debug, Clone)]
pub struct RestResponse {
    pub status: u16,
    pub etag: Option<String>,
    pub correlation_id: Option<String>,
    pub body: Bytes,
}

impl RestResponse {
    pub fn json<T: DeserializeOwned>(&self, route: &'static str) -> Result<T, RestError> {
        serde_json::from_slice(&self.body).map_err(|error| RestError::Malformed {
            route,
            detail: error.to_string(),
        })
    }
}

/// Why a call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestError {
    #[error("no token: {0}")]
    Token(#[from] TokenError),
    /// A 4xx that retrying cannot fix (404, 400, 403, a second 401, …).
    #[error("{route}: HTTP {status} {code:?}: {message:?} (correlation id {correlation_id:?})")]
    Rejected {
        route: &'static str,
        status: u16,
        code: Option<String>,
        message: Option<String>,
        correlation_id: Option<String>,
    },
    /// 409 or 412: the write was based on a stale view; re-read and re-apply.
    #[error("{route}: HTTP {status} conflict (correlation id {correlation_id:?})")]
    Conflict {
        route: &'static str,
        status: u16,
        correlation_id: Option<String>,
    },
    /// Transient failures persisted through every attempt.
    #[error("{route}: gave up after {attempts} attempts: {last}")]
    Exhausted {
        route: &'static str,
        attempts: u32,
        last: String,
    },
    #[error("{route}: unreadable response: {detail}")]
    Malformed { route: &'static str, detail: String },
    /// An id (from a frame, a response) that cannot be one path segment: never sent,
    /// because it would reach another resource with Convoy's token.
    #[error("{route}: not sent: the {what} {id:?} cannot be a path segment: {reason}")]
    UnsafeId {
        route: &'static str,
        what: &'static str,
        id: String,
        reason: convoy::ids::PathSegmentError,
    },
    /// The daemon is shutting down ([`SharedBucket::close`]): the call was not (or no
    /// longer) attempted.
    #[error("not sent: shutting down")]
    ShuttingDown,
}

/// `id` as one path segment of `route` ([`convoy::ids::path_segment`]), or
/// [`RestError::UnsafeId`] naming it as `what` (`"conversation id"`).
pub fn path_segment<'a>(
    id: &'a str,
    what: &'static str,
    route: &'static str,
) -> Result<std::borrow::Cow<'a, str>, RestError> {
    convoy::ids::path_segment(id).map_err(|reason| RestError::UnsafeId {
        route,
        what,
        id: id.chars().take(80).collect(),
        reason,
    })
}

impl RestError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, RestError::Rejected { status: 404, .. })
    }
}

#[derive(Clone)]
pub struct GenesysRest {
    http: awc::Client,
    context: RestContext,
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

fn status_class(status: u16) -> &'static str {
    match status {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

fn count_request(route: &'static str, class: &'static str) {
    metrics::counter!(names::REST_REQUESTS, "route" => route, "class" => class).increment(1);
}

impl GenesysRest {
    pub fn new(context: RestContext) -> Self {
        let http = awc::Client::builder()
            .timeout(Duration::from_secs(30))
            .finish();
        GenesysRest { http, context }
    }

    /// Sends `request` with retries; see the module docs for the policy.
    pub async fn call(&self, request: RestRequest) -> Result<RestResponse, RestError> {
        if let RestTransport::Replay(replay) = &self.context.transport {
            return replay.answer(&request);
        }
        let route = request.route;
        let url = format!(
            "{}{}",
            self.context.api_base.trim_end_matches('/'),
            request.path
        );
        let mut schedule = RetrySchedule::new(Duration::from_millis(100), Duration::from_secs(10));
        let mut refreshed_token = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.context.bucket.acquire(request.priority).await?;
            ActorMetrics::sent("token");
            // A token refresh may wait on an unreachable login host: shutdown cuts it short.
            let token = self
                .context
                .bucket
                .unless_closed(self.context.tokens.send(GetToken))
                .await?
                .map_err(|_| {
                    // Never enqueued: it will never be handled.
                    ActorMetrics::undelivered("token");
                    RestError::Token(TokenError::ActorGone)
                })??;
            let mut builder = self
                .http
                .request(request.method.clone(), &url)
                .insert_header(("Authorization", token.bearer_header()));
            for (name, value) in &request.headers {
                builder = builder.insert_header((*name, value.as_str()));
            }
            let sent = match &request.body {
                Some(body) => builder.send_json(body).await,
                None => builder.send().await,
            };
            let mut response = match sent {
                Ok(response) => response,
                Err(error) => {
                    count_request(route, "transport");
                    let last = error.to_string();
                    if attempt >= MAX_ATTEMPTS {
                        return Err(RestError::Exhausted {
                            route,
                            attempts: attempt,
                            last,
                        });
                    }
                    metrics::counter!(names::REST_RETRIES, "route" => route).increment(1);
                    self.context
                        .bucket
                        .sleep_unless_closed(schedule.next_delay())
                        .await?;
                    continue;
                }
            };
            let status = response.status().as_u16();
            count_request(route, status_class(status));
            let headers = response.headers().clone();
            self.observe_rate_headers(&headers, route);
            let body = match response.body().limit(MAX_BODY_BYTES).await {
                Ok(body) => body,
                Err(error) => {
                    let last = format!("reading the body: {error}");
                    if attempt >= MAX_ATTEMPTS {
                        return Err(RestError::Exhausted {
                            route,
                            attempts: attempt,
                            last,
                        });
                    }
                    self.context
                        .bucket
                        .sleep_unless_closed(schedule.next_delay())
                        .await?;
                    continue;
                }
            };
            let correlation_id = header_text(&headers, "inin-correlation-id").map(str::to_owned);
            let retry_after = header_text(&headers, "retry-after")
                .and_then(|value| parse_retry_after(value, Utc::now()).ok());
            match classify_status(status, retry_after) {
                RetryAction::Successful => {
                    self.record_answer(&request, status, &headers, &body);
                    self.context.bucket.with(|bucket, _| bucket.not_throttled());
                    return Ok(RestResponse {
                        status,
                        etag: header_text(&headers, "etag").map(str::to_owned),
                        correlation_id,
                        body,
                    });
                }
                RetryAction::RefreshTokenAndRetryOnce if !refreshed_token => {
                    refreshed_token = true;
                    self.context.tokens.do_send(InvalidateToken { token });
                    metrics::counter!(names::REST_RETRIES, "route" => route).increment(1);
                }
                RetryAction::RetryAfterReread => {
                    return Err(RestError::Conflict {
                        route,
                        status,
                        correlation_id,
                    });
                }
                RetryAction::Retry { after } => {
                    let last = format!("HTTP {status} (correlation id {correlation_id:?})");
                    if status == 429 {
                        metrics::counter!(names::REST_RATE_LIMITED, "route" => route).increment(1);
                        let reset = header_text(&headers, "inin-ratelimit-reset")
                            .and_then(parse_delta_seconds);
                        // Pause every caller, not just this one: the limit is per client.
                        let pause = self
                            .context
                            .bucket
                            .with(|bucket, now| bucket.throttled(after, reset, now));
                        let source = if after.is_some() {
                            "retry_after"
                        } else if reset.is_some() {
                            "ratelimit_reset"
                        } else {
                            "backoff"
                        };
                        self.context.bucket.report_pause(pause, source, route);
                    }
                    if attempt >= MAX_ATTEMPTS {
                        return Err(RestError::Exhausted {
                            route,
                            attempts: attempt,
                            last,
                        });
                    }
                    metrics::counter!(names::REST_RETRIES, "route" => route).increment(1);
                    // A 429's wait is the bucket's pause (clamped), which the next
                    // `acquire` honours; any other status' Retry-After is clamped alike.
                    let delay = match after {
                        _ if status == 429 => schedule.next_delay(),
                        Some(after) => self.context.bucket.clamp_server_pause(after),
                        None => schedule.next_delay(),
                    };
                    tracing::debug!(
                        route,
                        status,
                        delay_ms = delay.as_millis() as u64,
                        "Retrying a Genesys call."
                    );
                    self.context.bucket.sleep_unless_closed(delay).await?;
                }
                RetryAction::RefreshTokenAndRetryOnce | RetryAction::DontRetry { .. } => {
                    self.record_answer(&request, status, &headers, &body);
                    let error: ErrorBody = serde_json::from_slice(&body).unwrap_or_default();
                    return Err(RestError::Rejected {
                        route,
                        status,
                        code: error.code,
                        message: error.message,
                        correlation_id: correlation_id.or(error.context_id),
                    });
                }
            }
        }
    }

    /// With `--record`, appends the final answer to a read (what a replay answers from).
    fn record_answer(&self, request: &RestRequest, status: u16, headers: &HeaderMap, body: &[u8]) {
        let RestTransport::Http {
            record: Some(recorder),
        } = &self.context.transport
        else {
            return;
        };
        if !is_read(request) {
            return;
        }
        let exchange = convoy::recording::RestExchange::new(
            request.method.as_str(),
            &request.path,
            status,
            headers
                .iter()
                .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?))),
            body,
        );
        recorder
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record_rest(Utc::now(), &exchange);
    }

    fn observe_rate_headers(&self, headers: &HeaderMap, route: &'static str) {
        let number = |name| header_text(headers, name).and_then(|v| v.trim().parse::<u32>().ok());
        let count = number("inin-ratelimit-count");
        let allowed = number("inin-ratelimit-allowed");
        let reset = header_text(headers, "inin-ratelimit-reset").and_then(parse_delta_seconds);
        let pause = self
            .context
            .bucket
            .with(|bucket, now| bucket.observe_headers(count, allowed, reset, now));
        if let Some(pause) = pause {
            self.context
                .bucket
                .report_pause(pause, "ratelimit_reset", route);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::time::Instant;

    use super::*;

    /// Waits (bounded) until `bucket` has `n` callers queued.
    async fn until_waiting(bucket: &SharedBucket, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while bucket.waiting() < n {
            assert!(Instant::now() < deadline, "{n} waiters never queued");
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[actix_rt::test]
    async fn waiters_get_tokens_live_first_then_in_arrival_order() {
        // 1 200/min with a burst of 1: a token every 50 ms, no reserve.
        let bucket = Arc::new(SharedBucket::with_bucket(TokenBucket::new(1_200, 1)));
        bucket.acquire(Priority::Live).await.unwrap();
        let served = Rc::new(RefCell::new(Vec::new()));
        let mut tasks = Vec::new();
        for (n, (name, priority)) in [
            ("b1", Priority::Background),
            ("l1", Priority::Live),
            ("b2", Priority::Background),
            ("l2", Priority::Live),
        ]
        .into_iter()
        .enumerate()
        {
            let (bucket2, served2) = (Arc::clone(&bucket), Rc::clone(&served));
            tasks.push(actix_rt::spawn(async move {
                bucket2.acquire(priority).await.unwrap();
                served2.borrow_mut().push(name);
            }));
            until_waiting(&bucket, n + 1).await;
        }
        for task in tasks {
            actix_rt::time::timeout(Duration::from_secs(30), task)
                .await
                .unwrap()
                .unwrap();
        }
        assert_eq!(*served.borrow(), ["l1", "l2", "b1", "b2"]);
    }

    #[actix_rt::test]
    async fn closing_the_bucket_releases_every_waiter_at_once() {
        // One token a minute: without the close, the waiters would wait minutes.
        let bucket = Arc::new(SharedBucket::with_bucket(TokenBucket::new(1, 1)));
        bucket.acquire(Priority::Live).await.unwrap();
        let waiters: Vec<_> = (0..3)
            .map(|n| {
                let bucket = Arc::clone(&bucket);
                let priority = if n % 2 == 0 {
                    Priority::Live
                } else {
                    Priority::Background
                };
                actix_rt::spawn(async move { bucket.acquire(priority).await })
            })
            .collect();
        until_waiting(&bucket, 3).await;
        bucket.close();
        for waiter in waiters {
            let outcome = actix_rt::time::timeout(Duration::from_secs(20), waiter)
                .await
                .expect("a closed bucket releases its waiters")
                .unwrap();
            assert_eq!(outcome, Err(RestError::ShuttingDown));
        }
        assert_eq!(
            bucket.acquire(Priority::Live).await,
            Err(RestError::ShuttingDown)
        );
        assert_eq!(
            bucket.sleep_unless_closed(Duration::from_secs(600)).await,
            Err(RestError::ShuttingDown)
        );
    }

    #[actix_rt::test]
    async fn a_waiter_that_gives_up_leaves_the_queue_and_the_next_is_served() {
        let bucket = Arc::new(SharedBucket::with_bucket(TokenBucket::new(1_200, 1)));
        bucket.acquire(Priority::Live).await.unwrap();
        let impatient =
            actix_rt::time::timeout(Duration::from_millis(1), bucket.acquire(Priority::Live)).await;
        assert!(impatient.is_err(), "no token within 1 ms at 50 ms a token");
        assert_eq!(bucket.waiting(), 0);
        actix_rt::time::timeout(Duration::from_secs(30), bucket.acquire(Priority::Live))
            .await
            .expect("the next waiter is served")
            .unwrap();
    }
}
