//! The CRM sink's HTTP routes. Contract routes (`/records:batch`, `/conversations/{id}`)
//! pass the gate first — delay, credentials, injected fault — then do their work against
//! the store under one short lock (never held across an `.await`). A batch is admitted
//! under its idempotency key before the delay and the fault, so a second request with the
//! same key meanwhile meets "in progress" (409). Inspection routes under `/_sink` are
//! neither authenticated nor faulted: they are the test's window.

use std::any::Any;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use actix_web::dev::Extensions;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use convoy::crm::{
    format_etag, parse_batch, parse_etag, BatchError, CrmErrorBody, Precondition, WriteOutcome,
    IDEMPOTENCY_KEY_HEADER,
};
use serde::Deserialize;

use super::auth::{Credentials, SinkAuth};
use super::faults::{FaultDecision, FaultInjector, FaultSettings};
use super::store::{BatchOutcome, BatchStart, RecordJudge, SinkStore};
use convoy::crm::signing::{SIGNATURE_HEADER, TIMESTAMP_HEADER};

/// Largest request body accepted (a batch of 1 000 records of a few KiB fits).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// State shared by all requests of one sink.
#[derive(Debug)]
pub(super) struct SinkShared {
    pub store: Mutex<SinkStore>,
    pub faults: Mutex<FaultInjector>,
    pub auth: SinkAuth,
    /// `--reject-ratio`: answer 207 with per-record results.
    pub judge: Option<RecordJudge>,
    pub max_batch: usize,
    pub require_precondition: bool,
}

/// A panic elsewhere must not wedge the sink: a poisoned lock still holds usable data.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
        .route("/records:batch", web::post().to(post_batch))
        .route("/conversations/{id}", web::get().to(get_conversation))
        .route("/conversations/{id}", web::put().to(put_conversation))
        .service(
            web::scope("/_sink")
                .route("/records", web::get().to(list_records))
                .route("/records", web::delete().to(reset))
                .route("/conversations", web::get().to(list_conversations))
                .route("/stats", web::get().to(stats))
                .route("/faults", web::get().to(get_faults))
                .route("/faults", web::put().to(put_faults)),
        );
}

/// JSON 404 for every unknown path.
pub(super) async fn not_found(req: HttpRequest) -> HttpResponse {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {} {}", req.method(), req.path()),
    )
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(CrmErrorBody::new(code, message))
}

/// A duplicate of the connection's socket, taken when the connection is accepted, so a
/// handler can cut the connection off (see [`reset_connection`]).
#[derive(Clone)]
struct ConnectionSocket(std::sync::Arc<std::net::TcpStream>);

/// `HttpServer::on_connect` hook: remembers the plain-TCP socket of each connection.
pub(super) fn remember_socket(connection: &dyn Any, data: &mut Extensions) {
    #[cfg(unix)]
    if let Some(stream) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
        use std::os::fd::AsFd;
        if let Ok(owned) = stream.as_fd().try_clone_to_owned() {
            data.insert(ConnectionSocket(std::sync::Arc::new(
                std::net::TcpStream::from(owned),
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = (connection, data);
}

/// Drops the connection without a response: `shutdown(Both)` on the socket sends FIN and
/// makes the server's own write of the response fail, so actix closes the connection and
/// the client reads end-of-stream where a response should be ("connection closed before
/// message completed"). Where no socket was remembered (not Unix), the fallback is a
/// bodiless 503 with `Connection: close`.
fn reset_connection(req: &HttpRequest) -> HttpResponse {
    if let Some(socket) = req.conn_data::<ConnectionSocket>() {
        let _ = socket.0.shutdown(std::net::Shutdown::Both);
    }
    HttpResponse::ServiceUnavailable().force_close().finish()
}

/// What the gate lets through.
enum Gate {
    /// Answer this instead of handling the request.
    Answer(HttpResponse),
    /// Handle the request; then, when `reset_after`, drop the connection instead of
    /// answering (the "maybe delivered" fault).
    Proceed { reset_after: bool },
}

/// Delay, credentials, injected fault — in that order.
async fn gate(shared: &SinkShared, req: &HttpRequest, body: &[u8]) -> Gate {
    count_request(shared);
    delay(shared).await;
    if let Some(refused) = authorize(shared, req, body) {
        return Gate::Answer(refused);
    }
    let decision = lock(&shared.faults).decide();
    match fault_answer(shared, req, decision) {
        Some(answer) => Gate::Answer(answer),
        None => Gate::Proceed {
            reset_after: decision == FaultDecision::ResetAfterStore,
        },
    }
}

fn count_request(shared: &SinkShared) {
    lock(&shared.store).stats.requests += 1;
}

async fn delay(shared: &SinkShared) {
    let delay_ms = lock(&shared.faults).settings().delay_ms;
    if delay_ms > 0 {
        lock(&shared.store).stats.faults.delayed += 1;
        actix_web::rt::time::sleep(Duration::from_millis(delay_ms)).await;
    }
}

/// `Some(401)` when the request's credentials do not satisfy the sink's policy.
fn authorize(shared: &SinkShared, req: &HttpRequest, body: &[u8]) -> Option<HttpResponse> {
    let credentials = Credentials {
        authorization: header_text(req, header::AUTHORIZATION),
        timestamp: header_text(req, TIMESTAMP_HEADER),
        signature: header_text(req, SIGNATURE_HEADER),
        body,
    };
    if shared
        .auth
        .permits_request(&credentials, chrono::Utc::now().timestamp())
    {
        return None;
    }
    lock(&shared.store).stats.unauthorized += 1;
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing or wrong credentials",
    );
    if let Some(challenge) = shared.auth.challenge() {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
    }
    Some(response)
}

/// The answer an injected fault gives instead of handling the request; `None` to handle
/// it (a pass, or a reset that comes after handling, counted here).
fn fault_answer(
    shared: &SinkShared,
    req: &HttpRequest,
    decision: FaultDecision,
) -> Option<HttpResponse> {
    let mut store = lock(&shared.store);
    match decision {
        FaultDecision::Pass => None,
        FaultDecision::ResetAfterStore => {
            store.stats.faults.resets_after_store += 1;
            None
        }
        FaultDecision::ServerError(code) => {
            store.stats.faults.errors += 1;
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Some(error(
                status,
                "injected_fault",
                "fault injected by crm-sink",
            ))
        }
        FaultDecision::RateLimited { retry_after_secs } => {
            store.stats.faults.rate_limited += 1;
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("rate limit injected by crm-sink; retry in {retry_after_secs} s"),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            Some(response)
        }
        FaultDecision::Reset => {
            store.stats.faults.resets += 1;
            drop(store);
            Some(reset_connection(req))
        }
    }
}

fn header_text(req: &HttpRequest, name: impl header::AsHeaderName) -> Option<&str> {
    req.headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
}

async fn post_batch(
    shared: web::Data<SinkShared>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    count_request(&shared);
    if let Some(refused) = authorize(&shared, &req, &body) {
        return refused;
    }
    let rejected = |status, code: &str, message: String| {
        lock(&shared.store).stats.rejected += 1;
        error(status, code, message)
    };
    let key = match header_text(&req, IDEMPOTENCY_KEY_HEADER).map(str::trim) {
        Some(key) if !key.is_empty() => key.to_owned(),
        _ => {
            return rejected(
                StatusCode::BAD_REQUEST,
                "missing_idempotency_key",
                format!("the {IDEMPOTENCY_KEY_HEADER} header is required"),
            )
        }
    };
    let batch = match parse_batch(&body, shared.max_batch) {
        Ok(batch) => batch,
        Err(problem @ BatchError::TooLarge { .. }) => {
            return rejected(
                StatusCode::PAYLOAD_TOO_LARGE,
                "batch_too_large",
                problem.to_string(),
            )
        }
        Err(problem) => {
            return rejected(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                problem.to_string(),
            )
        }
    };
    // Parsed once more as a plain value: the idempotency check compares bodies by meaning,
    // not by bytes. It parsed as a batch, so it parses as a value.
    let value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let start = lock(&shared.store).begin_batch(&key, &value);
    match start {
        BatchStart::Fresh => {}
        BatchStart::Replayed(response) => return respond_batch(response, true),
        BatchStart::KeyReused => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                format!("{IDEMPOTENCY_KEY_HEADER} `{key}` was already used with a different body"),
            )
        }
        BatchStart::InProgress => {
            return error(
                StatusCode::CONFLICT,
                "idempotency_key_in_progress",
                format!("a request with {IDEMPOTENCY_KEY_HEADER} `{key}` is still being processed; retry later"),
            )
        }
    }
    // The key is "in progress" from here until the batch is applied or abandoned.
    delay(&shared).await;
    let decision = lock(&shared.faults).decide();
    if let Some(answer) = fault_answer(&shared, &req, decision) {
        lock(&shared.store).abandon_batch(&key);
        return answer;
    }
    let outcome = lock(&shared.store).apply_batch(&key, value, batch, shared.judge.as_ref());
    if decision == FaultDecision::ResetAfterStore {
        return reset_connection(&req);
    }
    match outcome {
        BatchOutcome::Processed(response) => respond_batch(response, false),
        BatchOutcome::Replayed(response) => respond_batch(response, true),
        BatchOutcome::KeyReused => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            format!("{IDEMPOTENCY_KEY_HEADER} `{key}` was already used with a different body"),
        ),
    }
}

/// 200 with the counts, or 207 when the answer carries per-record results.
fn respond_batch(response: convoy::crm::BatchResponse, replayed: bool) -> HttpResponse {
    let mut builder = if response.results.is_empty() {
        HttpResponse::Ok()
    } else {
        HttpResponse::build(StatusCode::MULTI_STATUS)
    };
    if replayed {
        builder.insert_header(("Idempotent-Replayed", "true"));
    }
    builder.json(response)
}

async fn get_conversation(
    shared: web::Data<SinkShared>,
    req: HttpRequest,
    id: web::Path<String>,
) -> HttpResponse {
    match gate(&shared, &req, &[]).await {
        Gate::Answer(response) => return response,
        // Nothing to store on a read: the connection is just dropped.
        Gate::Proceed { reset_after: true } => return reset_connection(&req),
        Gate::Proceed { reset_after: false } => {}
    }
    let mut store = lock(&shared.store);
    store.stats.conversation_reads += 1;
    let Some(stored) = store.conversation(&id) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no conversation document `{id}`"),
        );
    };
    let etag = format_etag(stored.version);
    let unchanged = header_text(&req, header::IF_NONE_MATCH).is_some_and(|value| {
        value
            .split(',')
            .any(|tag| tag.trim() == "*" || parse_etag(tag) == Some(stored.version))
    });
    if unchanged {
        return HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .finish();
    }
    HttpResponse::Ok()
        .insert_header((header::ETAG, etag))
        .json(&stored.document)
}

async fn put_conversation(
    shared: web::Data<SinkShared>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let reset_after = match gate(&shared, &req, &body).await {
        Gate::Answer(response) => return response,
        Gate::Proceed { reset_after } => reset_after,
    };
    let rejected = |status, code: &str, message: String| {
        lock(&shared.store).stats.rejected += 1;
        error(status, code, message)
    };
    let precondition = match Precondition::from_headers(
        header_text(&req, header::IF_MATCH),
        header_text(&req, header::IF_NONE_MATCH),
    ) {
        Ok(precondition) => precondition,
        Err(problem) => {
            return rejected(
                StatusCode::BAD_REQUEST,
                "invalid_precondition",
                problem.to_string(),
            )
        }
    };
    if precondition == Precondition::None && shared.require_precondition {
        return rejected(
            StatusCode::PRECONDITION_REQUIRED,
            "precondition_required",
            "send If-Match with the ETag last read, or If-None-Match: * to create".to_owned(),
        );
    }
    let document: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(document @ serde_json::Value::Object(_)) => document,
        Ok(_) => {
            return rejected(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the document must be a JSON object".to_owned(),
            )
        }
        Err(problem) => {
            return rejected(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("the document is not JSON: {problem}"),
            )
        }
    };
    let mut store = lock(&shared.store);
    let outcome = store.put_conversation(&id, &precondition, document.clone());
    if reset_after {
        drop(store);
        return reset_connection(&req);
    }
    match outcome {
        Ok(WriteOutcome::Created { version }) => HttpResponse::Created()
            .insert_header((header::ETAG, format_etag(version)))
            .json(document),
        Ok(WriteOutcome::Updated { version }) => HttpResponse::Ok()
            .insert_header((header::ETAG, format_etag(version)))
            .json(document),
        Err(refused) => {
            let mut response = error(
                StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                format!("conversation `{id}`: {refused}"),
            );
            if let Some(current) = store.conversation(&id) {
                if let Ok(value) = HeaderValue::from_str(&format_etag(current.version)) {
                    response.headers_mut().insert(header::ETAG, value);
                }
            }
            response
        }
    }
}

#[derive(Debug, Deserialize)]
struct RecordsQuery {
    #[serde(rename = "conversationId")]
    conversation_id: Option<String>,
}

async fn list_records(
    shared: web::Data<SinkShared>,
    query: web::Query<RecordsQuery>,
) -> HttpResponse {
    let store = lock(&shared.store);
    let records: Vec<_> = store
        .records()
        .iter()
        .filter(|record| {
            query
                .conversation_id
                .as_ref()
                .is_none_or(|id| *id == record.conversation_id)
        })
        .collect();
    HttpResponse::Ok().json(serde_json::json!({ "records": records }))
}

async fn list_conversations(shared: web::Data<SinkShared>) -> HttpResponse {
    let conversations = lock(&shared.store).conversations();
    HttpResponse::Ok().json(serde_json::json!({ "conversations": conversations }))
}

async fn reset(shared: web::Data<SinkShared>) -> HttpResponse {
    lock(&shared.store).reset();
    HttpResponse::NoContent().finish()
}

async fn stats(shared: web::Data<SinkShared>) -> HttpResponse {
    let stats = lock(&shared.store).stats;
    HttpResponse::Ok().json(stats)
}

async fn get_faults(shared: web::Data<SinkShared>) -> HttpResponse {
    let settings = lock(&shared.faults).settings();
    HttpResponse::Ok().json(settings)
}

async fn put_faults(shared: web::Data<SinkShared>, body: web::Bytes) -> HttpResponse {
    let settings: FaultSettings = match serde_json::from_slice(&body) {
        Ok(settings) => settings,
        Err(problem) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("fault settings: {problem}"),
            )
        }
    };
    if let Err(problem) = settings.validate() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            problem.to_string(),
        );
    }
    lock(&shared.faults).set(settings);
    HttpResponse::Ok().json(settings)
}
