//! `CrmClient`: one HTTP call of the CRM contract at a time — post a batch, read or write a
//! conversation summary — with the configured credentials and request timeout. It never
//! retries and never sleeps: the caller (the CrmBatchActor) owns the schedule, the outbox
//! and the idempotency key. What an answer means is `convoy::crm::answer`'s decision.
//!
//! Failures are told apart by what the CRM may have seen: a connection that could not be
//! opened delivered nothing ([`CrmCallError::NotSent`]); a timeout or a connection lost
//! after the request was (maybe) written is [`CrmCallError::MaybeDelivered`] — resend with
//! the same `Idempotency-Key`, and the CRM answers the stored result.
//!
//! The transport is HTTP, or (`convoy replay`) an [`InProcessSink`]: the crm-sink's own
//! store in this process, answering as `convoy crm-sink` would, with no socket.
//!
//! awc's `Client` is not `Send`: build a `CrmClient` inside the actor that uses
//! it. TLS is verified against the webpki roots (awc's rustls connector). Credentials never
//! reach `Debug` or a log line.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use awc::error::{ConnectError, SendRequestError};
use awc::http::header;
use base64::Engine;
use convoy::config::{CrmAuth, CrmConfig};
use convoy::crm::answer::{classify_batch_answer, excerpt, BatchVerdict};
use convoy::crm::signing::{signature_header_value, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use convoy::crm::{
    format_etag, parse_etag, BatchRequest, BatchResponse, CrmRecord, Precondition,
    IDEMPOTENCY_KEY_HEADER,
};
use serde::Serialize;
use serde_json::Value;

/// Largest answer body read (a 207 for 1 000 records fits easily).
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// Why a CRM call produced no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrmCallError {
    /// The request never left: no connection could be made (refused, DNS, TLS handshake).
    #[error("the CRM request was not sent: {0}")]
    NotSent(String),
    /// The request may have reached the CRM, but no answer came (timeout, connection lost
    /// while sending or before the answer). Resend with the same idempotency key.
    #[error("the CRM request may have been delivered, but no answer came: {reason}")]
    MaybeDelivered { reason: String, timed_out: bool },
    /// The request could not be built (a body that does not encode, a bad URL).
    #[error("the CRM request could not be built: {0}")]
    Request(String),
    /// An answer the summary calls do not expect (anything but 2xx, 404 on read, 412 on
    /// write); `retryable` for 408/429/5xx and 401/403 (a credential an operator fixes).
    #[error("the CRM answered {status}: {excerpt}")]
    Status {
        status: u16,
        retry_after: Option<Duration>,
        excerpt: String,
    },
}

impl CrmCallError {
    /// Whether the CRM may hold the request's effect: resend with the same key.
    pub fn maybe_delivered(&self) -> bool {
        matches!(self, CrmCallError::MaybeDelivered { .. })
    }

    /// Whether the call should be tried again later (everything but a malformed request or
    /// a client error that judges the request itself).
    pub fn is_transient(&self) -> bool {
        match self {
            CrmCallError::NotSent(_) | CrmCallError::MaybeDelivered { .. } => true,
            CrmCallError::Request(_) => false,
            CrmCallError::Status { status, .. } => {
                matches!(status, 401 | 403 | 408 | 409 | 429 | 500..=599)
            }
        }
    }

    /// Whether the failure asks the sender to slow down (adaptive concurrency): timeouts,
    /// 408, 429, 5xx.
    pub fn is_back_pressure(&self) -> bool {
        match self {
            CrmCallError::MaybeDelivered { timed_out, .. } => *timed_out,
            CrmCallError::Status { status, .. } => matches!(status, 408 | 429 | 500..=599),
            _ => false,
        }
    }
}

/// The answer to `POST /records:batch`, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchAnswer {
    pub status: u16,
    pub verdict: BatchVerdict,
    /// The CRM replayed a stored answer (`Idempotent-Replayed: true`): an earlier attempt
    /// of this batch had reached it.
    pub replayed: bool,
}

/// The condition of a summary write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpsertPrecondition {
    /// `If-None-Match: *`: create; refused if a document exists.
    Create,
    /// `If-Match: <etag>`: replace the version last read.
    Match(String),
}

/// What a summary write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    /// Stored; the document's new entity tag.
    Stored { etag: String },
    /// 412: someone else wrote first (or the document does (not) exist): read, merge, retry.
    PreconditionFailed,
}

#[derive(Serialize)]
struct BatchBody<'a> {
    records: &'a [CrmRecord],
}

use crate::crm_sink::store::{BatchOutcome, BatchStart, SinkStore};
use crate::crm_sink::StoredDocument;

/// The CRM contract over HTTP, or in process.
pub struct CrmClient {
    transport: Transport,
    endpoint: String,
    auth: CrmAuth,
}

enum Transport {
    Http(awc::Client),
    InProcess(InProcessSink),
}

/// `convoy replay`'s CRM: the crm-sink's store (same idempotency, record and ETag rules),
/// shared with whoever reads the result; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct InProcessSink(Arc<Mutex<SinkStore>>);

impl InProcessSink {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every unique record received, in arrival order.
    pub fn records(&self) -> Vec<CrmRecord> {
        self.lock().records().to_vec()
    }

    /// Every conversation document, in creation order.
    pub fn conversations(&self) -> Vec<StoredDocument> {
        self.lock().conversations()
    }

    fn lock(&self) -> MutexGuard<'_, SinkStore> {
        // Plain data: a panic mid-update leaves it usable.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What `POST /records:batch` answers: status and body.
    fn post_batch(&self, records: &[CrmRecord], key: &str) -> Result<(u16, Vec<u8>), CrmCallError> {
        let body = serde_json::to_value(BatchBody { records })
            .map_err(|problem| CrmCallError::Request(problem.to_string()))?;
        let mut store = self.lock();
        let answered = |response: &BatchResponse| serde_json::to_vec(response).unwrap_or_default();
        Ok(match store.begin_batch(key, &body) {
            BatchStart::Fresh => {
                let batch = BatchRequest {
                    records: records.to_vec(),
                };
                match store.apply_batch(key, body, batch, None) {
                    BatchOutcome::Processed(response) | BatchOutcome::Replayed(response) => {
                        (200, answered(&response))
                    }
                    BatchOutcome::KeyReused => (422, Vec::new()),
                }
            }
            BatchStart::Replayed(response) => (200, answered(&response)),
            BatchStart::KeyReused => (422, Vec::new()),
            BatchStart::InProgress => (409, Vec::new()),
        })
    }
}

impl std::fmt::Debug for CrmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The endpoint is left out: a URL can carry credentials.
        f.debug_struct("CrmClient")
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl CrmClient {
    /// A client for `config.endpoint`, each request bounded by `config.request_timeout`.
    pub fn new(config: &CrmConfig) -> CrmClient {
        let http = awc::Client::builder()
            .timeout(config.request_timeout)
            .finish();
        CrmClient {
            transport: Transport::Http(http),
            endpoint: config.endpoint.trim_end_matches('/').to_owned(),
            auth: config.auth.clone(),
        }
    }

    /// A client whose every call is answered by `sink`, in process.
    pub fn in_process(config: &CrmConfig, sink: InProcessSink) -> CrmClient {
        CrmClient {
            transport: Transport::InProcess(sink),
            endpoint: config.endpoint.trim_end_matches('/').to_owned(),
            auth: config.auth.clone(),
        }
    }

    /// `POST /records:batch` with `key` as `Idempotency-Key`; the answer classified.
    pub async fn post_batch(
        &self,
        records: &[CrmRecord],
        key: &str,
    ) -> Result<BatchAnswer, CrmCallError> {
        if let Transport::InProcess(sink) = &self.transport {
            let (status, answer) = sink.post_batch(records, key)?;
            let ids: Vec<String> = records.iter().map(|record| record.id.clone()).collect();
            return Ok(BatchAnswer {
                status,
                verdict: classify_batch_answer(status, None, &answer, &ids, chrono::Utc::now()),
                replayed: false,
            });
        }
        let body = serde_json::to_vec(&BatchBody { records })
            .map_err(|problem| CrmCallError::Request(problem.to_string()))?;
        let request = self
            .request(awc::http::Method::POST, "/records:batch", &body)
            .insert_header((IDEMPOTENCY_KEY_HEADER, key))
            .insert_header((header::CONTENT_TYPE, "application/json"));
        let mut response = request.send_body(body).await.map_err(send_error)?;
        let status = response.status().as_u16();
        let retry_after = header_text(response.headers(), header::RETRY_AFTER.as_str());
        let replayed = header_text(response.headers(), "Idempotent-Replayed")
            .is_some_and(|value| value.eq_ignore_ascii_case("true"));
        let answer = read_body(&mut response, status).await?;
        let ids: Vec<String> = records.iter().map(|record| record.id.clone()).collect();
        let verdict = classify_batch_answer(
            status,
            retry_after.as_deref(),
            &answer,
            &ids,
            chrono::Utc::now(),
        );
        Ok(BatchAnswer {
            status,
            verdict,
            replayed,
        })
    }

    /// `GET /conversations/{id}`: the document and its entity tag, `None` when absent.
    pub async fn get_summary(&self, id: &str) -> Result<Option<(Value, String)>, CrmCallError> {
        if let Transport::InProcess(sink) = &self.transport {
            return Ok(sink
                .lock()
                .conversation(id)
                .map(|stored| (stored.document.clone(), format_etag(stored.version))));
        }
        let path = format!("/conversations/{}", encode_path_segment(id));
        let mut response = self
            .request(awc::http::Method::GET, &path, b"")
            .send()
            .await
            .map_err(send_error)?;
        let status = response.status().as_u16();
        let etag = header_text(response.headers(), header::ETAG.as_str());
        let retry_after = header_text(response.headers(), header::RETRY_AFTER.as_str());
        let body = read_body(&mut response, status).await?;
        match status {
            200..=299 => {
                let document =
                    serde_json::from_slice(&body).map_err(|problem| CrmCallError::Status {
                        status,
                        retry_after: None,
                        excerpt: format!("the document is not JSON: {problem}"),
                    })?;
                let etag = etag.ok_or_else(|| CrmCallError::Status {
                    status,
                    retry_after: None,
                    excerpt: "the document came without an ETag".to_owned(),
                })?;
                Ok(Some((document, etag)))
            }
            404 => Ok(None),
            _ => Err(status_error(status, retry_after.as_deref(), &body)),
        }
    }

    /// `PUT /conversations/{id}` under `precondition`.
    pub async fn put_summary(
        &self,
        id: &str,
        document: &Value,
        precondition: UpsertPrecondition,
    ) -> Result<PutOutcome, CrmCallError> {
        if let Transport::InProcess(sink) = &self.transport {
            let precondition = match &precondition {
                UpsertPrecondition::Create => Precondition::IfNoneMatchAny,
                UpsertPrecondition::Match(etag) => {
                    Precondition::IfMatch(parse_etag(etag).into_iter().collect())
                }
            };
            return Ok(
                match sink
                    .lock()
                    .put_conversation(id, &precondition, document.clone())
                {
                    Ok(
                        convoy::crm::WriteOutcome::Created { version }
                        | convoy::crm::WriteOutcome::Updated { version },
                    ) => PutOutcome::Stored {
                        etag: format_etag(version),
                    },
                    Err(_) => PutOutcome::PreconditionFailed,
                },
            );
        }
        let path = format!("/conversations/{}", encode_path_segment(id));
        let body = serde_json::to_vec(document)
            .map_err(|problem| CrmCallError::Request(problem.to_string()))?;
        let request = self
            .request(awc::http::Method::PUT, &path, &body)
            .insert_header((header::CONTENT_TYPE, "application/json"));
        let request = match &precondition {
            UpsertPrecondition::Create => request.insert_header((header::IF_NONE_MATCH, "*")),
            UpsertPrecondition::Match(etag) => {
                request.insert_header((header::IF_MATCH, etag.as_str()))
            }
        };
        let mut response = request.send_body(body).await.map_err(send_error)?;
        let status = response.status().as_u16();
        let etag = header_text(response.headers(), header::ETAG.as_str());
        let retry_after = header_text(response.headers(), header::RETRY_AFTER.as_str());
        let answer = read_body(&mut response, status).await?;
        match status {
            200..=299 => Ok(PutOutcome::Stored {
                etag: etag.ok_or_else(|| CrmCallError::Status {
                    status,
                    retry_after: None,
                    excerpt: "the write was answered without an ETag".to_owned(),
                })?,
            }),
            412 => Ok(PutOutcome::PreconditionFailed),
            _ => Err(status_error(status, retry_after.as_deref(), &answer)),
        }
    }

    /// A request to `path` with the credentials; HMAC signs `body` (the exact bytes sent).
    fn request(&self, method: awc::http::Method, path: &str, body: &[u8]) -> awc::ClientRequest {
        let request = match &self.transport {
            Transport::Http(http) => http.request(method, format!("{}{path}", self.endpoint)),
            // Never reached: every call answers in process before building a request.
            Transport::InProcess(_) => {
                awc::Client::default().request(method, format!("{}{path}", self.endpoint))
            }
        };
        match &self.auth {
            CrmAuth::None => request,
            CrmAuth::Bearer { token } => request.insert_header((
                header::AUTHORIZATION,
                format!("Bearer {}", token.expose_secret()),
            )),
            CrmAuth::Basic { username, password } => {
                let pair = format!("{username}:{}", password.expose_secret());
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                request.insert_header((header::AUTHORIZATION, format!("Basic {encoded}")))
            }
            CrmAuth::Hmac { secret } => {
                let timestamp = chrono::Utc::now().timestamp().to_string();
                let signature =
                    signature_header_value(secret.expose_secret().as_bytes(), &timestamp, body);
                request
                    .insert_header((TIMESTAMP_HEADER, timestamp))
                    .insert_header((SIGNATURE_HEADER, signature))
            }
        }
    }
}

async fn read_body<S>(
    response: &mut awc::ClientResponse<S>,
    status: u16,
) -> Result<bytes::Bytes, CrmCallError>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>> + Unpin,
{
    response
        .body()
        .limit(MAX_ANSWER_BYTES)
        .await
        .map_err(|problem| CrmCallError::MaybeDelivered {
            reason: format!("reading the answer to a {status}: {problem}"),
            timed_out: false,
        })
}

fn status_error(status: u16, retry_after: Option<&str>, body: &[u8]) -> CrmCallError {
    CrmCallError::Status {
        status,
        retry_after: retry_after
            .and_then(|value| convoy::retry::parse_retry_after(value, chrono::Utc::now()).ok()),
        excerpt: excerpt(body),
    }
}

/// Maps awc's error (not `Send`) to ours, by whether the request may have been written.
fn send_error(error: SendRequestError) -> CrmCallError {
    match error {
        SendRequestError::Url(problem) => CrmCallError::Request(problem.to_string()),
        SendRequestError::Http(problem) => CrmCallError::Request(problem.to_string()),
        SendRequestError::TunnelNotSupported => {
            CrmCallError::Request("tunnels are not supported over HTTP/2".to_owned())
        }
        // awc reports a pooled connection that died under the request as a "connector
        // disconnected" connect error, even after the request was written.
        SendRequestError::Connect(ConnectError::Disconnected) => CrmCallError::MaybeDelivered {
            reason: "the connection was lost before the answer".to_owned(),
            timed_out: false,
        },
        SendRequestError::Connect(problem) => CrmCallError::NotSent(problem.to_string()),
        SendRequestError::Timeout => CrmCallError::MaybeDelivered {
            reason: "no answer within crm.request_timeout".to_owned(),
            timed_out: true,
        },
        other => CrmCallError::MaybeDelivered {
            reason: other.to_string(),
            timed_out: false,
        },
    }
}

fn header_text(headers: &awc::http::header::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// Percent-encodes everything but RFC 3986's unreserved characters: a conversation id is a
/// UUID, but a path must never be bent by what an id contains.
fn encode_path_segment(segment: &str) -> String {
    let mut encoded = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
