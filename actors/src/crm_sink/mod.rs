//! `convoy crm-sink`: a small HTTP server implementing the CRM contract Convoy syncs to
//! (see `convoy::crm`), for tests and rehearsals. It records what it receives, de-duplicates
//! records by id, honours idempotency keys and conditional writes, exposes what it holds
//! under `/_sink`, and injects faults (5xx, 429 with `Retry-After`, slow answers,
//! connections dropped without an answer — before handling the request, or after storing
//! it, the "maybe delivered" case) deterministically from a seed.
//!
//! Contract routes (authenticated when `auth` is set: bearer, basic, or an HMAC signature
//! of `X-Convoy-Timestamp` `.` body in `X-Convoy-Signature`, at most 5 minutes old; subject
//! to faults):
//! - `POST /records:batch` — `{"records":[{id, conversationId, kind, payload}]}` with an
//!   `Idempotency-Key` header, following the IETF Idempotency-Key draft: 400 without it;
//!   the same key with the same body after the first request finished answers the original
//!   response again (`Idempotent-Replayed: true`), with a different body 422, while the
//!   first request is still being processed 409. 200 `{"accepted", "duplicates"}`; 413
//!   above `max_batch` records. With `reject_ratio` > 0 every batch is answered 207 with
//!   one result per record: `{"accepted", "duplicates", "results": [{"id", "status": 201
//!   | 200 (duplicate) | 422, "error"?, "message"?}]}`; a 422 record is not stored, and the
//!   same record id always meets the same verdict (seeded by id).
//! - `GET /conversations/{id}` — the stored document with `ETag: "<n>"` (404 if none;
//!   304 on a matching `If-None-Match`).
//! - `PUT /conversations/{id}` — `If-Match: "<n>"` updates (412 when stale or missing),
//!   `If-None-Match: *` creates (412 if it exists); 200/201 with the new `ETag`. Without
//!   either header: an unconditional upsert, or 428 with `require_precondition`.
//!
//! Inspection routes (never authenticated or faulted): `GET /_sink/records[?conversationId=]`,
//! `DELETE /_sink/records` (forget everything but the fault settings),
//! `GET /_sink/conversations`, `GET /_sink/stats`, `GET|PUT /_sink/faults`.
//!
//! Every error body is `{"error": code, "message": text}`.

pub mod auth;
pub mod cli;
pub mod faults;
mod routes;
pub mod store;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use convoy::crm::CrmRecord;

pub use auth::{SinkAuth, SinkAuthError};
pub use faults::{FaultSettings, FaultSettingsError};
pub use routes::MAX_BODY_BYTES;
pub use store::{FaultStats, RecordJudge, SinkStats, StoredDocument, MAX_ANSWERED_KEYS};

use faults::FaultInjector;
use routes::{lock, SinkShared};
use store::SinkStore;

/// How to run a sink.
#[derive(Debug, Clone)]
pub struct CrmSinkOptions {
    /// Port 0 picks a free port; [`CrmSink::base_url`] tells which.
    pub listen: SocketAddr,
    pub auth: SinkAuth,
    pub faults: FaultSettings,
    /// Seed of the fault decisions and of the per-record verdicts.
    pub seed: u64,
    /// Share of records refused in 207 per-record answers (0 = plain 200 answers).
    pub reject_ratio: f64,
    /// Most records accepted in one batch (413 above).
    pub max_batch: usize,
    /// Refuse `PUT /conversations/{id}` without `If-Match`/`If-None-Match` (428).
    pub require_precondition: bool,
}

impl Default for CrmSinkOptions {
    fn default() -> Self {
        CrmSinkOptions {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            auth: SinkAuth::None,
            faults: FaultSettings::default(),
            seed: 0,
            reject_ratio: 0.0,
            max_batch: 1000,
            require_precondition: false,
        }
    }
}

/// A running sink. Dropping it leaves the server running until its actix System stops;
/// call [`CrmSink::stop`] to end it.
pub struct CrmSink {
    base_url: String,
    shared: web::Data<SinkShared>,
    handle: ServerHandle,
    task: actix_web::rt::task::JoinHandle<std::io::Result<()>>,
}

impl std::fmt::Debug for CrmSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrmSink")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl CrmSink {
    /// Binds and starts serving on the current actix System (one worker, no signal
    /// handling: the caller decides when to stop). Returns once the port is bound.
    pub async fn start(options: CrmSinkOptions) -> std::io::Result<CrmSink> {
        options
            .faults
            .validate()
            .map_err(|problem| std::io::Error::new(std::io::ErrorKind::InvalidInput, problem))?;
        if !(0.0..=1.0).contains(&options.reject_ratio) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "reject_ratio must be between 0 and 1, got {}",
                    options.reject_ratio
                ),
            ));
        }
        let judge = (options.reject_ratio > 0.0).then_some(RecordJudge {
            reject_ratio: options.reject_ratio,
            seed: options.seed,
        });
        let shared = web::Data::new(SinkShared {
            store: Mutex::new(SinkStore::default()),
            faults: Mutex::new(FaultInjector::new(options.faults, options.seed)),
            auth: options.auth.clone(),
            judge,
            max_batch: options.max_batch,
            require_precondition: options.require_precondition,
        });
        let app_shared = shared.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_shared.clone())
                .configure(routes::configure)
                .default_service(web::to(routes::not_found))
        })
        .keep_alive(crate::SERVER_KEEP_ALIVE)
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        // Must come before `bind`: the hook is captured per listener.
        .on_connect(routes::remember_socket)
        .bind(options.listen)?;
        let bound = server.addrs().first().copied().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, "no address bound")
        })?;
        let server = server.run();
        let handle = server.handle();
        let task = actix_web::rt::spawn(server);
        Ok(CrmSink {
            base_url: base_url(bound),
            shared,
            handle,
            task,
        })
    }

    /// `http://127.0.0.1:PORT` (a wildcard bind is reported as loopback).
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// All unique records received, in arrival order.
    pub fn records(&self) -> Vec<CrmRecord> {
        lock(&self.shared.store).records().to_vec()
    }

    /// The stored conversation document and its version.
    pub fn conversation(&self, id: &str) -> Option<StoredDocument> {
        lock(&self.shared.store).conversation(id).cloned()
    }

    pub fn stats(&self) -> SinkStats {
        lock(&self.shared.store).stats
    }

    /// Changes the fault mix while running (same as `PUT /_sink/faults`).
    pub fn set_faults(&self, faults: FaultSettings) -> Result<(), FaultSettingsError> {
        faults.validate()?;
        lock(&self.shared.faults).set(faults);
        Ok(())
    }

    /// Forgets records, idempotency keys, documents and counters (same as
    /// `DELETE /_sink/records`).
    pub fn reset(&self) {
        lock(&self.shared.store).reset();
    }

    /// Stops accepting, closes connections, waits for the server task.
    pub async fn stop(self) {
        self.handle.stop(false).await;
        let _ = self.task.await;
    }
}

fn base_url(bound: SocketAddr) -> String {
    let ip = match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, bound.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_binds_are_reported_as_loopback() {
        assert_eq!(
            base_url(SocketAddr::from(([0, 0, 0, 0], 8080))),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            base_url(SocketAddr::from(([127, 0, 0, 1], 9))),
            "http://127.0.0.1:9"
        );
        assert_eq!(
            base_url(SocketAddr::from(([0u16; 8], 7))),
            "http://127.0.0.1:7"
        );
    }
}
