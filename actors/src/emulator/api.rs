//! The gate in front of every `/api/v2` route, doing what Genesys does before a handler
//! runs (API.md §1.3, §2.2, §2.3, §7): bearer check (401 `authentication.required` /
//! `bad.credentials`), the per-token rate limit (429 `too.many.requests.retry.after` with
//! `Retry-After`), injected faults and latency, and on every response the
//! `ININ-Correlation-Id` and `inin-ratelimit-*` headers. Error responses of the handlers
//! behind it are completed into a full `ErrorBody` carrying the request's `contextId`.
//!
//! Handlers read the authenticated caller and the correlation id through the
//! [`RequestContext`] extractor.

use std::future::{ready, Ready};

use actix_web::body::{self, BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::{InternalError, JsonPayloadError};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, HttpResponse};
use convoy::emulator::platform::{frames, AuthError, Caller, RateDecision, RequestFault};
use serde_json::Value;

use super::{lock, EmulatorShared};

/// Correlation id header, sent on every response and echoed as `contextId` in errors.
pub const CORRELATION_HEADER: &str = "ININ-Correlation-Id";

/// What the gate established about an `/api/v2` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    /// The `ININ-Correlation-Id` of this request (the `contextId` of its errors).
    pub correlation_id: String,
    pub caller: Caller,
}

impl FromRequest for RequestContext {
    type Error = actix_web::Error;
    type Future = Ready<Result<RequestContext, actix_web::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<RequestContext>()
                .cloned()
                .ok_or_else(|| {
                    // Only reachable on a route mounted outside the gated scope.
                    let body = frames::authentication_required(&context_id(req));
                    InternalError::from_response(
                        "route outside the /api/v2 gate",
                        HttpResponse::Unauthorized().json(body),
                    )
                    .into()
                }),
        )
    }
}

/// The request's correlation id: the gate's, else a fresh one.
pub fn context_id(req: &HttpRequest) -> String {
    req.extensions()
        .get::<RequestContext>()
        .map(|context| context.correlation_id.clone())
        .unwrap_or_else(new_correlation_id)
}

fn new_correlation_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The client's own correlation id is echoed when it is a sane header value, so a test can
/// follow one request through; otherwise the emulator makes one.
fn correlation_id_of(req: &ServiceRequest) -> String {
    req.headers()
        .get(CORRELATION_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|value| {
            !value.is_empty()
                && value.len() <= 128
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        })
        .map(str::to_owned)
        .unwrap_or_else(new_correlation_id)
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive).
fn bearer_token(req: &ServiceRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

fn insert_header(headers: &mut HeaderMap, name: &str, value: &str) {
    // `from_bytes` lower-cases the name, as HTTP/2 and actix expect.
    if let (Ok(name), Ok(value)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        headers.insert(name, value);
    }
}

fn rate_headers(headers: &mut HeaderMap, rate: &RateDecision) {
    // `--rate-limit 0` switches the limit off; real Genesys always has one, and a client
    // reading `allowed: 0` would rightly conclude it may send nothing. So an unlimited
    // emulator reports no budget at all.
    if rate.limit == 0 {
        return;
    }
    insert_header(headers, "inin-ratelimit-count", &rate.count.to_string());
    insert_header(headers, "inin-ratelimit-allowed", &rate.limit.to_string());
    insert_header(
        headers,
        "inin-ratelimit-reset",
        &rate.reset_secs.to_string(),
    );
}

fn error_response(status: StatusCode, body: Value) -> HttpResponse {
    HttpResponse::build(status).json(body)
}

/// What the gate decided before the handler.
enum Verdict {
    Refuse(HttpResponse),
    Proceed(Caller),
}

/// The `/api/v2` middleware (see the module docs).
pub async fn gate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(shared) = req.app_data::<web::Data<EmulatorShared>>().cloned() else {
        return Err(actix_web::error::ErrorInternalServerError(
            "emulator state missing",
        ));
    };
    let correlation_id = correlation_id_of(&req);
    let bearer = bearer_token(&req);
    let now = shared.now();

    // One short critical section: authentication, budget, fault draw.
    let (verdict, rate, latency_ms) = {
        let mut platform = lock(&shared.platform);
        match platform.authenticate(bearer.as_deref(), now) {
            Err(AuthError::Missing) => (
                Verdict::Refuse(error_response(
                    StatusCode::UNAUTHORIZED,
                    frames::authentication_required(&correlation_id),
                )),
                None,
                0,
            ),
            Err(AuthError::BadCredentials) => (
                Verdict::Refuse(error_response(
                    StatusCode::UNAUTHORIZED,
                    frames::bad_credentials(&correlation_id),
                )),
                None,
                0,
            ),
            Ok(caller) => {
                let rate = platform.check_rate(caller.token, now);
                let latency_ms = platform.faults().latency_ms;
                // An injected 429 that names its own `inin-ratelimit-*` window keeps it.
                let mut report_rate = true;
                let verdict = if !rate.allowed {
                    let mut response = error_response(
                        StatusCode::TOO_MANY_REQUESTS,
                        frames::too_many_requests(rate.retry_after_secs(), &correlation_id),
                    );
                    insert_header(
                        response.headers_mut(),
                        "retry-after",
                        &rate.retry_after_secs().to_string(),
                    );
                    Verdict::Refuse(response)
                } else {
                    match platform.draw_request_fault() {
                        None => Verdict::Proceed(caller),
                        Some(fault) => {
                            report_rate = !matches!(
                                fault,
                                RequestFault::RateLimited {
                                    reset_s: Some(_),
                                    ..
                                }
                            );
                            Verdict::Refuse(fault_response(fault, &correlation_id))
                        }
                    }
                };
                (verdict, report_rate.then_some(rate), latency_ms)
            }
        }
    };

    if latency_ms > 0 {
        actix_rt::time::sleep(std::time::Duration::from_millis(latency_ms)).await;
    }

    let response = match verdict {
        Verdict::Refuse(response) => req.into_response(response).map_into_boxed_body(),
        Verdict::Proceed(caller) => {
            req.extensions_mut().insert(RequestContext {
                correlation_id: correlation_id.clone(),
                caller,
            });
            let response = next.call(req).await?.map_into_boxed_body();
            complete_error_body(response, &correlation_id).await?
        }
    };
    let mut response = response;
    let headers = response.headers_mut();
    insert_header(headers, CORRELATION_HEADER, &correlation_id);
    if let Some(rate) = rate {
        rate_headers(headers, &rate);
    }
    Ok(response)
}

fn fault_response(fault: RequestFault, correlation_id: &str) -> HttpResponse {
    match fault {
        RequestFault::InternalServerError => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            frames::internal_server_error(correlation_id),
        ),
        RequestFault::ServiceUnavailable => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            frames::service_unavailable(correlation_id),
        ),
        RequestFault::RateLimited {
            retry_after_s,
            reset_s,
        } => {
            let mut response = error_response(
                StatusCode::TOO_MANY_REQUESTS,
                frames::too_many_requests(retry_after_s, correlation_id),
            );
            let headers = response.headers_mut();
            insert_header(headers, "retry-after", &retry_after_s.to_string());
            if let Some(reset_s) = reset_s {
                insert_header(headers, "inin-ratelimit-count", "300");
                insert_header(headers, "inin-ratelimit-allowed", "300");
                insert_header(headers, "inin-ratelimit-reset", &reset_s.to_string());
            }
            response
        }
    }
}

/// The catalogue code of a status, for error responses a handler left without a body.
fn code_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 405 => "bad.request",
        401 => "bad.credentials",
        403 => "not.authorized",
        404 => "not.found",
        408 => "client.timeout",
        409 => "conflict",
        413 => "request.entity.too.large",
        415 => "unsupported.media.type",
        429 => "too.many.requests",
        503 => "service.unavailable",
        504 => "request.timeout",
        _ => "internal.server.error",
    }
}

/// Makes every error response an `ErrorBody` with this request's `contextId`: handlers
/// that already answer an ErrorBody only get the id filled in; other bodies (actix's own
/// plain-text errors, empty 405s) are replaced.
async fn complete_error_body(
    response: ServiceResponse<BoxBody>,
    correlation_id: &str,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return Ok(response);
    }
    let (req, response) = response.into_parts();
    let (mut head, body) = response.into_parts();
    let bytes = body::to_bytes(body)
        .await
        .map_err(|_| actix_web::error::ErrorInternalServerError("unreadable response body"))?;
    let completed = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(mut object)) => {
            let missing = object
                .get("contextId")
                .is_none_or(|id| id.as_str().is_none_or(str::is_empty));
            if missing {
                object.insert("contextId".to_owned(), Value::from(correlation_id));
            }
            Value::Object(object)
        }
        _ => {
            let message = String::from_utf8_lossy(&bytes);
            let message = if message.trim().is_empty() {
                status.canonical_reason().unwrap_or("Error").to_owned()
            } else {
                message.into_owned()
            };
            frames::error_body(status.as_u16(), code_of(status), &message, correlation_id)
        }
    };
    head.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let response = head.set_body(completed.to_string()).map_into_boxed_body();
    Ok(ServiceResponse::new(req, response))
}

/// Default service of `/api/v2`: an unknown path is a 404 ErrorBody.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    error_response(StatusCode::NOT_FOUND, frames::not_found(&context_id(&req)))
}

/// The largest JSON body any route reads (a message, a subscription list of 1 000
/// topics); larger ones answer 413 before they are buffered.
pub const MAX_JSON_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Malformed JSON bodies answer a 400 ErrorBody (415 for a wrong Content-Type), as the API
/// does, rather than actix's plain text.
pub(crate) fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(MAX_JSON_BODY_BYTES)
        .error_handler(|error, req| {
            let context = context_id(req);
            let response = match &error {
                JsonPayloadError::ContentType => error_response(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    frames::error_body(
                        415,
                        "unsupported.media.type",
                        "Unsupported Media Type - Unsupported or incorrect media type, such as an incorrect Content-Type value in the header.",
                        &context,
                    ),
                ),
                JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
                    error_response(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        frames::error_body(
                            413,
                            "request.entity.too.large",
                            &error.to_string(),
                            &context,
                        ),
                    )
                }
                other => error_response(
                    StatusCode::BAD_REQUEST,
                    frames::bad_request(&other.to_string(), &context),
                ),
            };
            InternalError::from_response(error, response).into()
        })
}

/// Bad query parameters answer a 400 ErrorBody.
pub(crate) fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|error, req| {
        let body = frames::error_body(
            400,
            "invalid.query.param.value",
            &error.to_string(),
            &context_id(req),
        );
        InternalError::from_response(error, error_response(StatusCode::BAD_REQUEST, body)).into()
    })
}

/// Path segments that do not parse name nothing: 404 ErrorBody.
pub(crate) fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|error, req| {
        let body = frames::not_found(&context_id(req));
        InternalError::from_response(error, error_response(StatusCode::NOT_FOUND, body)).into()
    })
}
