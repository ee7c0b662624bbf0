//! The simulator's REST client: one awc client, one cached client-credentials token
//! (fetched once, refreshed once per call on a 401), `Retry-After` honoured on 429, and
//! bounded exponential backoff on 5xx and connection failures. Not `Send` (awc): it lives
//! on the thread that runs the simulation.

use std::cell::Cell;
use std::time::Duration;

use actix_web::http::{Method, StatusCode};
use awc::error::SendRequestError;

use crate::genesys::oauth::{request_token, AccessToken, TokenEndpoint, TokenError};
use crate::retry_schedule::RetrySchedule;

/// Upper bound on a response body the simulator reads (conversations are small).
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Longest `Retry-After` honoured as given; longer waits are capped (a run must end).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

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
    RetryAfter(Duration),
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
    retries: Cell<usize>,
    tokens_fetched: Cell<usize>,
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
            retries: Cell::new(0),
            tokens_fetched: Cell::new(0),
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

    pub async fn get(&self, path: &str) -> Result<serde_json::Value, CallError> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, CallError> {
        self.call(Method::POST, path, Some(body)).await
    }

    /// A GET without a token (the emulator's control API).
    pub async fn get_unauthenticated(&self, path: &str) -> Result<serde_json::Value, CallError> {
        let url = format!("{}{path}", self.api_base);
        let request = self.http.get(url);
        match self.attempt(request, "GET", path, None, true).await {
            Attempt::Done(value) => Ok(value),
            Attempt::Retry(error) | Attempt::Fail(error) => Err(error),
            Attempt::Unauthorized | Attempt::RetryAfter(_) => Err(CallError::Status {
                method: "GET".to_owned(),
                path: path.to_owned(),
                status: 401,
                body: "refused".to_owned(),
            }),
        }
    }

    /// One call with the whole retry policy: 401 → new token, once; 429 → wait
    /// `Retry-After`; 5xx and connection failures → backoff; all bounded by `max_retries`.
    /// A POST is retried after a transport failure only when the connection was never
    /// made, so a request the server may have handled is not sent twice. (A 5xx answer is
    /// retried for every method, as API.md §8 advises for 429/503/504; a simulated
    /// customer message sent twice is a smaller harm than a run that gives up.)
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, CallError> {
        let mut schedule = RetrySchedule::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut refused = None;
        let mut refreshed = false;
        let mut attempts = 0u32;
        loop {
            let (generation, token) = self.token(refused).await?;
            let url = format!("{}{path}", self.api_base);
            let request = self
                .http
                .request(method.clone(), url)
                .insert_header(("Authorization", token.bearer_header()));
            let idempotent = method == Method::GET;
            let outcome = self
                .attempt(request, method.as_str(), path, body, idempotent)
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
                Attempt::RetryAfter(wait) if !last_chance => {
                    attempts += 1;
                    self.retries.set(self.retries.get() + 1);
                    actix_web::rt::time::sleep(wait).await;
                }
                Attempt::Retry(_) if !last_chance => {
                    attempts += 1;
                    self.retries.set(self.retries.get() + 1);
                    actix_web::rt::time::sleep(schedule.next_delay()).await;
                }
                Attempt::RetryAfter(_) => {
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
        let retry_after = response
            .headers()
            .get("Retry-After")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(|secs| Duration::from_secs(secs).min(MAX_RETRY_AFTER));
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
            StatusCode::TOO_MANY_REQUESTS => {
                // API.md §7: Retry-After first, then a backoff starting around 3 s.
                Attempt::RetryAfter(retry_after.unwrap_or(Duration::from_secs(3)))
            }
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
            .post("/broken", &serde_json::json!({}))
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
