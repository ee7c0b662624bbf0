//! Every Genesys REST call goes through [`GenesysRest::call`]: bearer token from the
//! TokenActor, one token bucket shared by all callers (300 requests per minute per OAuth
//! client by default), `Retry-After` and `inin-ratelimit-*` honoured, 401 → drop the token
//! and retry once, 408/429/5xx and transport errors retried with backoff (bounded),
//! other 4xx returned to the caller as typed errors. Metrics by route template and status
//! class; never a conversation id in a label.
//!
//! `GenesysRest` owns an awc client, which is not `Send`: each actor builds its own in
//! `started()` from a [`RestContext`], which is `Send` and cheap to clone.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix::Addr;
use awc::http::{header::HeaderMap, Method};
use bytes::Bytes;
use chrono::Utc;
use convoy::model::ErrorBody;
use convoy::ratelimit::TokenBucket;
use convoy::retry::{classify_status, parse_delta_seconds, parse_retry_after, RetryAction};
use serde::de::DeserializeOwned;

use crate::genesys::oauth::TokenError;
use crate::retry_schedule::RetrySchedule;
use crate::telemetry::{names, ActorMetrics};
use crate::token::{GetToken, InvalidateToken, TokenActor};

/// Attempts per call before giving up on transient failures.
const MAX_ATTEMPTS: u32 = 6;
/// Largest response body read (analytics pages are the biggest: 100 conversations).
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The token bucket all callers share, with the monotonic origin its times count from.
pub struct SharedBucket {
    origin: Instant,
    bucket: Mutex<TokenBucket>,
}

impl SharedBucket {
    /// `per_minute` requests, bursting to a fifth of a minute's budget (at least 1).
    pub fn new(per_minute: u32) -> Self {
        SharedBucket {
            origin: Instant::now(),
            bucket: Mutex::new(TokenBucket::new(per_minute, (per_minute / 5).max(1))),
        }
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn with<T>(&self, f: impl FnOnce(&mut TokenBucket, Duration) -> T) -> T {
        let now = self.now();
        // A poisoned lock only means another thread panicked mid-update of plain numbers;
        // the bucket is still usable.
        let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut bucket, now)
    }
}

/// What a REST caller needs, `Send` so it can be handed to actors at boot.
#[derive(Clone)]
pub struct RestContext {
    pub api_base: String,
    pub tokens: Addr<TokenActor>,
    pub bucket: Arc<SharedBucket>,
}

/// Live writes go first; reconciliation and discovery yield (they leave a reserve of
/// tokens that only live traffic may use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Live,
    Background,
}

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

    /// Waits for a token from the shared bucket; background calls leave the reserve alone.
    async fn acquire(&self, priority: Priority) {
        loop {
            let verdict = self.context.bucket.with(|bucket, now| match priority {
                Priority::Live => bucket.try_acquire(now),
                Priority::Background => bucket.try_acquire_low_priority(now),
            });
            match verdict {
                Ok(()) => return,
                Err(wait) => actix_rt::time::sleep(wait.0.max(Duration::from_millis(5))).await,
            }
        }
    }

    /// Sends `request` with retries; see the module docs for the policy.
    pub async fn call(&self, request: RestRequest) -> Result<RestResponse, RestError> {
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
            self.acquire(request.priority).await;
            ActorMetrics::sent("token");
            let token = self
                .context
                .tokens
                .send(GetToken)
                .await
                .map_err(|_| RestError::Token(TokenError::ActorGone))??;
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
                    actix_rt::time::sleep(schedule.next_delay()).await;
                    continue;
                }
            };
            let status = response.status().as_u16();
            count_request(route, status_class(status));
            let headers = response.headers().clone();
            self.observe_rate_headers(&headers);
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
                    actix_rt::time::sleep(schedule.next_delay()).await;
                    continue;
                }
            };
            let correlation_id = header_text(&headers, "inin-correlation-id").map(str::to_owned);
            let retry_after = header_text(&headers, "retry-after")
                .and_then(|value| parse_retry_after(value, Utc::now()).ok());
            match classify_status(status, retry_after) {
                RetryAction::Successful => {
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
                        self.context
                            .bucket
                            .with(|bucket, now| bucket.throttled(after, reset, now));
                    }
                    if attempt >= MAX_ATTEMPTS {
                        return Err(RestError::Exhausted {
                            route,
                            attempts: attempt,
                            last,
                        });
                    }
                    metrics::counter!(names::REST_RETRIES, "route" => route).increment(1);
                    let delay = after.unwrap_or_else(|| schedule.next_delay());
                    tracing::debug!(
                        route,
                        status,
                        delay_ms = delay.as_millis() as u64,
                        "Retrying a Genesys call."
                    );
                    actix_rt::time::sleep(delay).await;
                }
                RetryAction::RefreshTokenAndRetryOnce | RetryAction::DontRetry { .. } => {
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

    fn observe_rate_headers(&self, headers: &HeaderMap) {
        let number = |name| header_text(headers, name).and_then(|v| v.trim().parse::<u32>().ok());
        let count = number("inin-ratelimit-count");
        let allowed = number("inin-ratelimit-allowed");
        let reset = header_text(headers, "inin-ratelimit-reset").and_then(parse_delta_seconds);
        self.context
            .bucket
            .with(|bucket, now| bucket.observe_headers(count, allowed, reset, now));
    }
}
