//! The simulator's REST client: one awc client, one cached client-credentials token
//! (fetched once, refreshed once per call on a 401), every request paced through one token
//! bucket at the budget the server advertises, `Retry-After` honoured on 429, and bounded
//! exponential backoff on 5xx and connection failures. Not `Send` (awc): it lives on the
//! thread that runs the simulation.
//!
//! Pacing: Genesys allows a token 300 requests per minute by default and says so on every
//! answer (`inin-ratelimit-allowed/-count/-reset`). The bucket starts at that default, takes
//! the budget from the first answer that advertises one, and pauses every caller when the
//! server's window is used up or a 429 arrives (the arithmetic is `convoy::ratelimit`, the
//! daemon's own). A server whose first successful answer advertises no budget (`convoy
//! emulate --rate-limit 0`) is not paced, and a 429 from it (an injected fault) delays only
//! the request it answered. Receipts are background work: they leave a
//! reserve of the burst to customer messages and agentless sends, whose timing matters
//! more (a customer message sent after the agent has left opens a new conversation).

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use actix_web::http::header::HeaderMap;
use actix_web::http::{Method, StatusCode};
use awc::error::SendRequestError;
use convoy::ratelimit::TokenBucket;
use convoy::retry::{parse_delta_seconds, parse_retry_after};

use crate::genesys::oauth::{request_token, AccessToken, TokenEndpoint, TokenError};
use crate::retry_schedule::RetrySchedule;

/// Upper bound on a response body the simulator reads (conversations are small).
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Longest `Retry-After` honoured as given; longer waits are capped (a run must end).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Genesys' default budget per token, used until the server advertises its own.
pub const DEFAULT_BUDGET_PER_MINUTE: u32 = 300;

/// Whether a request may use the whole burst (customer messages, agentless sends, channel
/// set-up, re-reads) or must leave a reserve to live traffic (receipts): the daemon's own
/// bucket priorities.
pub use convoy::ratelimit::Priority;

/// The request budget as far as the server has told it.
struct Pacer {
    bucket: TokenBucket,
    /// Requests per minute being paced at; `None`: the server advertises no budget.
    budget: Option<u32>,
    /// A successful answer has been seen, so an absent budget means "unlimited".
    learned: bool,
}

impl Pacer {
    fn new(per_minute: u32) -> Pacer {
        Pacer {
            bucket: TokenBucket::new(per_minute, (per_minute / 5).max(1)),
            budget: Some(per_minute),
            learned: false,
        }
    }

    /// A bucket that never runs dry: kept so that a 429 still pauses every caller.
    fn unlimited() -> TokenBucket {
        TokenBucket::new(u32::MAX, u32::MAX)
    }

    /// Reads the `inin-ratelimit-*` headers of one answer.
    fn observe(&mut self, headers: &HeaderMap, success: bool, now: Duration) {
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().parse::<u32>().ok())
        };
        let allowed = number("inin-ratelimit-allowed").filter(|allowed| *allowed > 0);
        let count = number("inin-ratelimit-count");
        let reset = headers
            .get("inin-ratelimit-reset")
            .and_then(|value| value.to_str().ok())
            .and_then(parse_delta_seconds);
        match allowed {
            Some(allowed) if self.budget != Some(allowed) => {
                self.bucket = TokenBucket::new(allowed, (allowed / 5).max(1));
                self.budget = Some(allowed);
            }
            None if success && !self.learned => {
                self.bucket = Pacer::unlimited();
                self.budget = None;
            }
            _ => {}
        }
        self.learned |= success || allowed.is_some();
        self.bucket.observe_headers(count, allowed, reset, now);
    }
}

/// Why a call failed after its retries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// A non-retryable answer (4xx other than 401-then-refreshed and 429), or the last
    /// retryable one when retries ran out.
    #[error("{method} {path} answered HTTP {status}: {body}")]
    Status {
        method: String,
        path: String,
        status: u16,
        body: String,
    },
    /// No answer: connection refused, reset, timeout.
    #[error("{method} {path} failed: {message}")]
    Transport {
        method: String,
        path: String,
        message: String,
    },
    /// A 2xx whose body is not JSON.
    #[error("{method} {path} answered a body that is not JSON: {message}")]
    Malformed {
        method: String,
        path: String,
        message: String,
    },
    #[error("no token: {0}")]
    Token(#[from] TokenError),
}

/// One answer before the retry decision.
enum Attempt {
    Done(serde_json::Value),
    Unauthorized,
    /// A 429. With an advertised budget the bucket is paused already; without one, only
    /// this request waits, this long.
    RateLimited(Duration),
    Retry(CallError),
    Fail(CallError),
}

/// REST client against one base URL.
pub struct ApiClient {
    http: awc::Client,
    api_base: String,
    endpoint: TokenEndpoint,
    /// The cached token and a generation number, so concurrent callers that all saw a 401
    /// refresh it once, not once each.
    token: tokio::sync::Mutex<(u64, Option<AccessToken>)>,
    max_retries: u32,
    /// Origin of the bucket's monotonic time.
    origin: Instant,
    pacer: RefCell<Pacer>,
    retries: Cell<usize>,
    tokens_fetched: Cell<usize>,
    requests: Cell<usize>,
    rate_limited: Cell<usize>,
}

impl ApiClient {
    pub fn new(api_base: &str, endpoint: TokenEndpoint, max_retries: u32) -> ApiClient {
        let http = awc::Client::builder()
            .timeout(Duration::from_secs(30))
            .finish();
        ApiClient {
            http,
            api_base: api_base.trim_end_matches('/').to_owned(),
            endpoint,
            token: tokio::sync::Mutex::new((0, None)),
            max_retries,
            origin: Instant::now(),
            pacer: RefCell::new(Pacer::new(DEFAULT_BUDGET_PER_MINUTE)),
            retries: Cell::new(0),
            tokens_fetched: Cell::new(0),
            requests: Cell::new(0),
            rate_limited: Cell::new(0),
        }
    }

    /// Retries performed so far (429, 5xx, transport, token refresh).
    pub fn retries(&self) -> usize {
        self.retries.get()
    }

    /// Tokens requested so far.
    pub fn tokens_fetched(&self) -> usize {
        self.tokens_fetched.get()
    }

    /// API requests sent so far (retries included, token requests not).
    pub fn requests(&self) -> usize {
        self.requests.get()
    }

    /// 429 answers so far.
    pub fn rate_limited(&self) -> usize {
        self.rate_limited.get()
    }

    /// The budget requests are paced at: the server's advertised one once known, Genesys'
    /// default before; `None` when the server advertises none.
    pub fn budget_per_minute(&self) -> Option<u32> {
        self.pacer.borrow().budget
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// Waits until the bucket grants a request.
    async fn acquire(&self, priority: Priority) {
        loop {
            let now = self.now();
            let verdict = self
                .pacer
                .borrow_mut()
                .bucket
                .try_acquire_for(priority, now);
            match verdict {
                Ok(()) => return,
                Err(wait) => {
                    actix_web::rt::time::sleep(wait.0.max(Duration::from_millis(5))).await;
                }
            }
        }
    }

    /// The current token with its generation; fetches one when there is none (or when the
    /// caller's generation is the one that was refused).
    async fn token(&self, refused: Option<u64>) -> Result<(u64, AccessToken), TokenError> {
        let mut guard = self.token.lock().await;
        let (generation, current) = &mut *guard;
        if let Some(token) = current.as_ref() {
            if refused != Some(*generation) {
                return Ok((*generation, token.clone()));
            }
        }
        let mut schedule = RetrySchedule::new(Duration::from_millis(200), Duration::from_secs(5));
        let mut attempt = 0;
        let issued = loop {
            self.tokens_fetched.set(self.tokens_fetched.get() + 1);
            match request_token(&self.http, &self.endpoint).await {
                Ok(issued) => break issued,
                Err(error) if error.is_retryable() && attempt < self.max_retries => {
                    attempt += 1;
                    self.retries.set(self.retries.get() + 1);
                    actix_web::rt::time::sleep(schedule.next_delay()).await;
                }
                Err(error) => return Err(error),
            }
        };
        *generation += 1;
        *current = Some(issued.token.clone());
        Ok((*generation, issued.token))
    }

    /// Makes sure a token is at hand (a configuration error shows before any traffic).
    pub async fn authenticate(&self) -> Result<(), TokenError> {
        self.token(None).await.map(|_| ())
    }

    /// A POST without a body (`POST /api/v2/notifications/channels`).
    pub async fn post_empty(&self, path: &str) -> Result<serde_json::Value, CallError> {
        self.call(Method::POST, path, None, Priority::Live).await
    }

    pub async fn put(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, CallError> {
        self.call(Method::PUT, path, Some(body), Priority::Live)
            .await
    }

    /// A GET without a token (the emulator's control API), not paced: it is no Genesys
    /// API and counts against no budget.
    pub async fn get_unauthenticated(&self, path: &str) -> Result<serde_json::Value, CallError> {
        let url = format!("{}{path}", self.api_base);
        let request = self.http.get(url);
        match self.attempt(request, "GET", path, None, true, false).await {
            Attempt::Done(value) => Ok(value),
            Attempt::Retry(error) | Attempt::Fail(error) => Err(error),
            Attempt::Unauthorized | Attempt::RateLimited(_) => Err(CallError::Status {
                method: "GET".to_owned(),
                path: path.to_owned(),
                status: 401,
                body: "refused".to_owned(),
            }),
        }
    }

    /// One call with the whole policy: paced by the bucket; 401 → new token, once; 429 →
    /// every caller pauses (`Retry-After`, else `inin-ratelimit-reset`, else a backoff;
    /// only this request when the server advertises no budget);
    /// 5xx and connection failures → backoff; all bounded by `max_retries`. A POST is
    /// retried after a transport failure only when the connection was never made, so a
    /// request the server may have handled is not sent twice. (A 5xx answer is retried for
    /// every method, as Genesys advises for 429/503/504; a simulated customer message sent
    /// twice is a smaller harm than a run that gives up.)
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        priority: Priority,
    ) -> Result<serde_json::Value, CallError> {
        let mut schedule = RetrySchedule::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut refused = None;
        let mut refreshed = false;
        let mut attempts = 0u32;
        loop {
            // The budget first, then the token: a token taken before a long wait may have
            // expired by the time the request goes out.
            self.acquire(priority).await;
            let (generation, token) = self.token(refused).await?;
            let url = format!("{}{path}", self.api_base);
            let request = self
                .http
                .request(method.clone(), url)
                .insert_header(("Authorization", token.bearer_header()));
            let idempotent = method == Method::GET;
            self.requests.set(self.requests.get() + 1);
            let outcome = self
                .attempt(request, method.as_str(), path, body, idempotent, true)
                .await;
            let last_chance = attempts >= self.max_retries;
            match outcome {
                Attempt::Done(value) => return Ok(value),
                Attempt::Unauthorized if !refreshed => {
                    // Expired or revoked: one fresh token, then the call again.
                    refreshed = true;
                    refused = Some(generation);
                    self.retries.set(self.retries.get() + 1);
                }
                Attempt::Unauthorized => {
                    return Err(CallError::Status {
                        method: method.to_string(),
                        path: path.to_owned(),
                        status: 401,
                        body: "the token was refused again after a refresh".to_owned(),
                    })
                }
                Attempt::RateLimited(wait) if !last_chance => {
                    attempts += 1;
                    self.retries.set(self.retries.get() + 1);
                    actix_web::rt::time::sleep(wait).await;
                }
                Attempt::Retry(_) if !last_chance => {
                    attempts += 1;
                    self.retries.set(self.retries.get() + 1);
                    actix_web::rt::time::sleep(schedule.next_delay()).await;
                }
                Attempt::RateLimited(_) => {
                    return Err(CallError::Status {
                        method: method.to_string(),
                        path: path.to_owned(),
                        status: 429,
                        body: format!("still rate limited after {attempts} retries"),
                    })
                }
                Attempt::Retry(error) | Attempt::Fail(error) => return Err(error),
            }
        }
    }

    async fn attempt(
        &self,
        request: awc::ClientRequest,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
        idempotent: bool,
        paced: bool,
    ) -> Attempt {
        let sent = match body {
            Some(body) => request.send_json(body).await,
            None => request.send().await,
        };
        let transport = |message: String| CallError::Transport {
            method: method.to_owned(),
            path: path.to_owned(),
            message,
        };
        let mut response = match sent {
            Ok(response) => response,
            Err(error) => {
                // awc reports a connection dropped before any response as
                // `Connect(Disconnected)` even when the request went out, so only the other
                // connect errors prove the server never saw it.
                let never_connected = matches!(
                    error,
                    SendRequestError::Connect(ref connect)
                        if !matches!(connect, awc::error::ConnectError::Disconnected)
                );
                let error = transport(error.to_string());
                return if idempotent || never_connected {
                    Attempt::Retry(error)
                } else {
                    Attempt::Fail(error)
                };
            }
        };
        let status = response.status();
        let now = self.now();
        if paced {
            self.pacer
                .borrow_mut()
                .observe(response.headers(), status.is_success(), now);
        }
        let mut own_wait = Duration::ZERO;
        if paced && status == StatusCode::TOO_MANY_REQUESTS {
            self.rate_limited.set(self.rate_limited.get() + 1);
            let header_secs = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|value| value.to_str().ok())
                    // Seconds or an HTTP date, as the daemon reads it.
                    .and_then(|value| parse_retry_after(value, chrono::Utc::now()).ok())
                    .map(|wait| wait.min(MAX_RETRY_AFTER))
            };
            let retry_after = header_secs("Retry-After");
            let reset = header_secs("inin-ratelimit-reset");
            let mut pacer = self.pacer.borrow_mut();
            if pacer.budget.is_some() {
                // The token's budget is spent: every caller waits, not just this one.
                pacer.bucket.throttled(retry_after, reset, now);
            } else {
                // No budget advertised, so nothing shared to protect: only this request
                // waits (Genesys advises a backoff from about 3 s without a header).
                own_wait = retry_after.or(reset).unwrap_or(Duration::from_secs(3));
            }
        }
        let bytes = match response.body().limit(MAX_BODY_BYTES).await {
            Ok(bytes) => bytes,
            Err(error) => {
                let error = transport(format!("reading the body: {error}"));
                return if idempotent {
                    Attempt::Retry(error)
                } else {
                    Attempt::Fail(error)
                };
            }
        };
        if status.is_success() {
            if paced {
                self.pacer.borrow_mut().bucket.not_throttled();
            }
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Attempt::Done(serde_json::Value::Null);
            }
            return match serde_json::from_slice(&bytes) {
                Ok(value) => Attempt::Done(value),
                Err(error) => Attempt::Fail(CallError::Malformed {
                    method: method.to_owned(),
                    path: path.to_owned(),
                    message: error.to_string(),
                }),
            };
        }
        let error = CallError::Status {
            method: method.to_owned(),
            path: path.to_owned(),
            status: status.as_u16(),
            body: String::from_utf8_lossy(&bytes).chars().take(500).collect(),
        };
        match status {
            StatusCode::UNAUTHORIZED => Attempt::Unauthorized,
            StatusCode::TOO_MANY_REQUESTS => Attempt::RateLimited(own_wait),
            status if status.is_server_error() => Attempt::Retry(error),
            _ => Attempt::Fail(error),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    use convoy::config::Secret;

    use super::*;

    /// Call counters of the fake API.
    #[derive(Default)]
    struct Counts {
        tokens: AtomicUsize,
        flaky: AtomicUsize,
        broken: AtomicUsize,
        limited: AtomicUsize,
    }

    fn bearer(req: &HttpRequest) -> String {
        req.headers()
            .get("Authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    /// A fake API: tokens `t1`, `t2`, …; `/flaky` answers 503, then 429 (Retry-After 1),
    /// then 200; `/fresh` only accepts the second token; `/broken` always answers 500.
    async fn fake_api() -> (String, Arc<Counts>, actix_web::dev::ServerHandle) {
        let counts = Arc::new(Counts::default());
        let shared = web::Data::from(counts.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .route(
                    "/oauth/token",
                    web::post().to(|counts: web::Data<Counts>| async move {
                        let n = counts.tokens.fetch_add(1, Ordering::SeqCst) + 1;
                        HttpResponse::Ok().json(serde_json::json!({
                            "access_token": format!("t{n}"), "token_type": "bearer", "expires_in": 86399
                        }))
                    }),
                )
                .route(
                    "/flaky",
                    web::get().to(|counts: web::Data<Counts>| async move {
                        match counts.flaky.fetch_add(1, Ordering::SeqCst) {
                            0 => HttpResponse::ServiceUnavailable().finish(),
                            1 => HttpResponse::TooManyRequests()
                                .insert_header(("Retry-After", "1"))
                                .finish(),
                            _ => HttpResponse::Ok().json(serde_json::json!({ "ok": true })),
                        }
                    }),
                )
                .route(
                    "/fresh",
                    web::get().to(|req: HttpRequest| async move {
                        if bearer(&req) == "Bearer t2" {
                            HttpResponse::Ok().json(serde_json::json!({ "ok": true }))
                        } else {
                            HttpResponse::Unauthorized().finish()
                        }
                    }),
                )
                .route(
                    "/limited",
                    web::get().to(|counts: web::Data<Counts>| async move {
                        // A budget of 60 per minute, used up by the first request; the
                        // window resets 1 s later.
                        let n = counts.limited.fetch_add(1, Ordering::SeqCst) + 1;
                        HttpResponse::Ok()
                            .insert_header(("inin-ratelimit-allowed", "60"))
                            .insert_header(("inin-ratelimit-count", if n == 1 { "60" } else { "1" }))
                            .insert_header(("inin-ratelimit-reset", "1"))
                            .json(serde_json::json!({ "n": n }))
                    }),
                )
                .route(
                    "/broken",
                    web::post().to(|counts: web::Data<Counts>| async move {
                        counts.broken.fetch_add(1, Ordering::SeqCst);
                        HttpResponse::InternalServerError().body("nope")
                    }),
                )
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .unwrap();
        let address = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        (format!("http://{address}"), counts, handle)
    }

    impl ApiClient {
        async fn get(&self, path: &str) -> Result<serde_json::Value, CallError> {
            self.call(Method::GET, path, None, Priority::Live).await
        }
    }

    fn client(base: &str, max_retries: u32) -> ApiClient {
        ApiClient::new(
            base,
            TokenEndpoint {
                login_base: base.to_owned(),
                client_id: "sim".to_owned(),
                client_secret: Secret::new("secret".to_owned()),
            },
            max_retries,
        )
    }

    #[actix_rt::test]
    async fn retries_5xx_then_honours_retry_after() {
        let (base, counts, handle) = fake_api().await;
        let client = client(&base, 5);
        let started = Instant::now();
        let answer = client.get("/flaky").await.unwrap();
        assert_eq!(answer["ok"], true);
        assert_eq!(counts.flaky.load(Ordering::SeqCst), 3);
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "Retry-After ignored"
        );
        assert_eq!(client.retries(), 2);
        assert_eq!(
            counts.tokens.load(Ordering::SeqCst),
            1,
            "the token is cached"
        );
        handle.stop(false).await;
    }

    #[actix_rt::test]
    async fn requests_are_paced_at_the_advertised_budget_and_wait_for_a_used_up_window() {
        let (base, counts, handle) = fake_api().await;
        let client = client(&base, 5);
        assert_eq!(client.budget_per_minute(), Some(DEFAULT_BUDGET_PER_MINUTE));
        client.get("/limited").await.unwrap();
        assert_eq!(client.budget_per_minute(), Some(60));
        let started = Instant::now();
        let answer = client.get("/limited").await.unwrap();
        assert_eq!(answer["n"], 2);
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "the used-up window was not waited out"
        );
        assert_eq!(client.rate_limited(), 0, "pacing avoided the 429");
        assert_eq!(client.requests(), 2);
        assert_eq!(counts.limited.load(Ordering::SeqCst), 2);
        handle.stop(false).await;
    }

    #[actix_rt::test]
    async fn a_server_that_advertises_no_budget_is_not_paced() {
        let (base, _counts, handle) = fake_api().await;
        let client = client(&base, 5);
        client.get("/fresh").await.unwrap();
        assert_eq!(client.budget_per_minute(), None);
        handle.stop(false).await;
    }

    #[actix_rt::test]
    async fn a_refused_token_is_refreshed_once() {
        let (base, counts, handle) = fake_api().await;
        let client = client(&base, 5);
        client.authenticate().await.unwrap();
        let answer = client.get("/fresh").await.unwrap();
        assert_eq!(answer["ok"], true);
        assert_eq!(counts.tokens.load(Ordering::SeqCst), 2);
        assert_eq!(client.tokens_fetched(), 2);
        handle.stop(false).await;
    }

    #[actix_rt::test]
    async fn retries_are_bounded() {
        let (base, counts, handle) = fake_api().await;
        let client = client(&base, 2);
        let error = client
            .call(
                Method::POST,
                "/broken",
                Some(&serde_json::json!({})),
                Priority::Live,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(error, CallError::Status { status: 500, .. }),
            "{error}"
        );
        assert_eq!(counts.broken.load(Ordering::SeqCst), 3);
        handle.stop(false).await;
    }
}
