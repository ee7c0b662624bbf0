//! The admin HTTP server: `/metrics` (Prometheus text), `/healthz` (the process is alive),
//! `/readyz` (the live path works end to end), `/conversations` and
//! `/conversations/{id}` (what Convoy currently believes about each conversation).
//!
//! It only reads shared snapshots: the [`HealthBoard`], the [`ConversationViews`] map and
//! the metrics registry. It must never send a message to an actor or wait on one, so a
//! stuck or overloaded actor cannot make a health probe hang, and it never writes.

mod health;

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpResponse, HttpServer};
use convoy::ids::ConversationId;
use serde_json::json;

pub use health::{
    Check, FrameCheck, HealthBoard, Readiness, ReadinessChecks, RejectedTopic, SubscriptionsCheck,
};

use crate::conversation::view::describe;
use crate::telemetry::Telemetry;

pub use crate::conversation::view::{ConversationViews, WriteStatuses};

/// Everything a request handler reads.
#[derive(Clone)]
struct AdminState {
    board: Arc<HealthBoard>,
    views: ConversationViews,
    write_statuses: WriteStatuses,
    telemetry: Telemetry,
}

/// The running admin server.
#[derive(Debug)]
pub struct AdminServer {
    local_addr: SocketAddr,
    handle: ServerHandle,
}

impl AdminServer {
    /// Binds `listen` (use port 0 in tests) and serves from one worker. Must be called
    /// inside an actix System, which runs the server until [`AdminServer::stop`] or the
    /// System's end. The process's signals are left to the daemon's own shutdown.
    pub fn start(
        listen: SocketAddr,
        board: Arc<HealthBoard>,
        views: ConversationViews,
        write_statuses: WriteStatuses,
        telemetry: Telemetry,
    ) -> std::io::Result<AdminServer> {
        if actix::System::try_current().is_none() {
            return Err(std::io::Error::other(
                "the admin server must be started inside an actix System",
            ));
        }
        let state = web::Data::new(AdminState {
            board,
            views,
            write_statuses,
            telemetry,
        });
        let server = HttpServer::new(move || App::new().app_data(state.clone()).configure(routes))
            // Probes and scrapes are rare and cheap; one worker thread is plenty.
            .workers(1)
            // SIGTERM belongs to the daemon's ordered shutdown, which keeps this server up
            // (answering 503 on /readyz) while conversations drain.
            .disable_signals()
            .bind(listen)?;
        let local_addr = server
            .addrs()
            .first()
            .copied()
            .ok_or_else(|| std::io::Error::other("the admin server bound no address"))?;
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(async move {
            if let Err(error) = server.await {
                tracing::error!(%error, "Admin server failed.");
            }
        });
        tracing::info!(%local_addr, "Admin server listening.");
        Ok(AdminServer { local_addr, handle })
    }

    /// The bound address (the real port when `listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops serving at once. Not graceful on purpose: every endpoint is a read-only
    /// snapshot with nothing to drain, and a graceful stop would wait for idle keep-alive
    /// connections.
    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .route("/conversations", web::get().to(conversations))
        .route("/conversations/{id}", web::get().to(conversation));
}

/// Alive as long as this server can answer.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "alive": true }))
}

async fn readyz(state: web::Data<AdminState>) -> HttpResponse {
    let readiness = state.board.readiness_now();
    if readiness.ready {
        HttpResponse::Ok().json(readiness)
    } else {
        HttpResponse::ServiceUnavailable().json(readiness)
    }
}

async fn metrics(state: web::Data<AdminState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.telemetry.render())
}

/// Every view, sorted by conversation id so two reads of an unchanged map are equal.
/// Serialised here, on request: conversations keep typed state only.
async fn conversations(state: web::Data<AdminState>) -> HttpResponse {
    let mut ids: Vec<ConversationId> = state
        .views
        .iter()
        .map(|entry| entry.key().clone())
        .collect();
    ids.sort();
    let views: Vec<serde_json::Value> = ids
        .iter()
        .filter_map(|id| describe(&state.views, &state.write_statuses, id))
        .collect();
    HttpResponse::Ok().json(json!({ "count": views.len(), "conversations": views }))
}

async fn conversation(state: web::Data<AdminState>, id: web::Path<String>) -> HttpResponse {
    let id = ConversationId::from(id.into_inner());
    match describe(&state.views, &state.write_statuses, &id) {
        Some(view) => HttpResponse::Ok().json(view),
        None => HttpResponse::NotFound()
            .json(json!({ "error": "unknown conversation", "conversationId": id })),
    }
}
