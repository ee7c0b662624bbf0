//! The admin HTTP server: `/metrics` (Prometheus text), `/healthz` (the process is alive),
//! `/readyz` (the live path works end to end), `/conversations` (paged, filterable) and
//! `/conversations/{id}` (what Convoy currently believes about each conversation, with
//! its open SLA clocks and their deadlines). The
//! probes answer `HEAD` too, as load balancers and `curl -I` send it.
//!
//! It only reads shared snapshots: the [`HealthBoard`], the [`ConversationViews`] map and
//! the metrics registry. It must never send a message to an actor or wait on one, so a
//! stuck or overloaded actor cannot make a health probe hang.
//!
//! The outbox routes (`GET /outbox`, `GET /outbox/dead`, `POST /outbox/retry-dead`,
//! `GET /outbox/sla-outcomes`) are
//! how `convoy outbox` and `convoy snapshot` reach the durable store while the daemon holds its file (redb
//! lets one process open it). They call the store directly, on the blocking pool (redb
//! waits on the disk); `retry-dead` is the one route that writes, and only moves dead
//! letters back to the outbox. Until the daemon hands the store over
//! ([`AdminServer::attach_outbox`]) they answer 503.
//!
//! With `admin.token` set, every route but `/healthz` and `/readyz` answers 401 without
//! `Authorization: Bearer <token>` ([`convoy::admin_auth`] decides). Request bodies are
//! limited to [`MAX_BODY_BYTES`].

mod health;

mod outbox;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, App, HttpResponse, HttpServer};
use convoy::admin_auth::{admin_access, AdminAccess};
use convoy::config::Secret;
use convoy::ids::ConversationId;
use serde::Deserialize;
use serde_json::json;

pub use health::{
    Check, ClusterHealth, ConversationLoad, ConversationsCheck, FrameCheck, HealthBoard,
    LeaseCheck, Readiness, ReadinessChecks, RejectedTopic, SubscriptionsCheck,
};

use crate::conversation::view::describe;
use crate::outbox_writer::OutboxGate;
use crate::sla::SlaViews;
use crate::store::DurableStore;
use crate::telemetry::Telemetry;

pub use crate::conversation::view::{ConversationViews, WriteStatuses};

/// Everything a request handler reads.
#[derive(Clone)]
struct AdminState {
    board: Arc<HealthBoard>,
    views: ConversationViews,
    write_statuses: WriteStatuses,
    telemetry: Telemetry,
    outbox: OutboxSlot,
    pipeline: OutboxView,
    token: Option<Secret<String>>,
}

/// The largest request body accepted: only `retry-dead` reads one (a selection of record
/// ids, about 100 bytes each). Larger bodies get 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What the admin server shows of the outbox pipeline: the gate (back-pressure, pending
/// count) and the open SLA clocks per conversation.
#[derive(Clone)]
pub struct OutboxView {
    pub gate: Arc<OutboxGate>,
    pub sla: SlaViews,
}

/// The durable store once the daemon has opened it (it opens after the admin server),
/// emptied when the server stops so the file is released with the daemon's own handles.
type OutboxSlot = Arc<Mutex<Option<Arc<DurableStore>>>>;

/// The running admin server.
#[derive(Debug)]
pub struct AdminServer {
    local_addr: SocketAddr,
    handle: ServerHandle,
    outbox: OutboxSlot,
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
        pipeline: OutboxView,
        token: Option<Secret<String>>,
    ) -> std::io::Result<AdminServer> {
        if actix::System::try_current().is_none() {
            return Err(std::io::Error::other(
                "the admin server must be started inside an actix System",
            ));
        }
        let outbox = OutboxSlot::default();
        let state = web::Data::new(AdminState {
            board,
            views,
            write_statuses,
            telemetry,
            outbox: Arc::clone(&outbox),
            pipeline,
            token,
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
                .wrap(actix_web::middleware::from_fn(require_token))
                .configure(routes)
        })
        // Probes and scrapes are rare and cheap; one worker thread is plenty.
        .keep_alive(crate::SERVER_KEEP_ALIVE)
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
        Ok(AdminServer {
            local_addr,
            handle,
            outbox,
        })
    }

    /// Serves the outbox routes from `store` from now on, until [`AdminServer::stop`].
    pub fn attach_outbox(&self, store: Arc<DurableStore>) {
        if let Ok(mut slot) = self.outbox.lock() {
            *slot = Some(store);
        }
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
        // The server's state outlives its stop; the file must not (a restart in the same
        // process, or `convoy outbox` after the daemon, opens it again).
        if let Ok(mut slot) = self.outbox.lock() {
            slot.take();
        }
    }
}

/// Refuses requests without the admin token (when one is set) before any handler runs.
async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let token = req
        .app_data::<web::Data<AdminState>>()
        .and_then(|state| state.token.clone());
    let authorization = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    match admin_access(req.path(), authorization, token.as_ref()) {
        AdminAccess::Allowed => Ok(next.call(req).await?.map_into_boxed_body()),
        AdminAccess::Refused => {
            let response = HttpResponse::Unauthorized()
                .insert_header((actix_web::http::header::WWW_AUTHENTICATE, "Bearer"))
                .json(json!({ "error": "admin.token is set: send Authorization: Bearer <admin.token>" }));
            Ok(req.into_response(response))
        }
    }
}

fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/healthz", web::get().to(healthz))
        .route("/healthz", web::head().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/readyz", web::head().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .route("/conversations", web::get().to(conversations))
        .route("/conversations/{id}", web::get().to(conversation))
        .route("/outbox", web::get().to(outbox::status))
        .route("/outbox/dead", web::get().to(outbox::dead))
        .route("/outbox/retry-dead", web::post().to(outbox::retry_dead))
        .route("/outbox/sla-outcomes", web::get().to(outbox::sla_outcomes));
}

/// Alive as long as this server can answer.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "alive": true }))
}

async fn readyz(state: web::Data<AdminState>) -> HttpResponse {
    let gate = &state.pipeline.gate;
    let readiness = state
        .board
        .readiness_now()
        .with_outbox(gate.closed_because().map(|c| c.as_str()), gate.pending());
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

/// `GET /conversations?limit=N&after=ID&finished=BOOL&ended=BOOL`: views sorted by
/// conversation id, at most `limit` (default [`DEFAULT_PAGE`], at most [`MAX_PAGE`]) after
/// the id `after`; `next` names the cursor of the following page when there is one.
/// Serialised here, on request: conversations keep typed state only.
async fn conversations(
    state: web::Data<AdminState>,
    query: web::Query<ConversationsQuery>,
) -> HttpResponse {
    let query = query.into_inner();
    // Read each entry's flags under its shard lock and release it at once.
    let ids: Vec<ConversationId> = state
        .views
        .iter()
        .filter(|entry| {
            let conversation = entry.value().conversation.read();
            query.admits(
                entry.key(),
                conversation.state.is_finished(),
                conversation.state.is_ended(),
            )
        })
        .map(|entry| entry.key().clone())
        .collect();
    let page = query.page(ids);
    let views: Vec<serde_json::Value> = page
        .ids
        .iter()
        .filter_map(|id| describe(&state.views, &state.write_statuses, id))
        .collect();
    let mut body = json!({ "count": views.len(), "conversations": views });
    if let Some(next) = page.next {
        body["next"] = json!(next);
    }
    HttpResponse::Ok().json(body)
}

/// Conversations per page unless `limit` says otherwise.
pub const DEFAULT_PAGE: usize = 1_000;
/// The largest page `limit` may ask for.
pub const MAX_PAGE: usize = 10_000;

/// The query of `GET /conversations`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ConversationsQuery {
    pub limit: Option<usize>,
    /// Only ids sorting after this one (the previous page's `next`).
    pub after: Option<String>,
    pub finished: Option<bool>,
    pub ended: Option<bool>,
}

/// One page of conversation ids.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub ids: Vec<ConversationId>,
    /// The `after` of the next page; `None` on the last.
    pub next: Option<String>,
}

impl ConversationsQuery {
    /// Whether a conversation passes the cursor and the filters.
    pub fn admits(&self, id: &ConversationId, finished: bool, ended: bool) -> bool {
        let after = self
            .after
            .as_deref()
            .is_none_or(|after| id.text().as_str() > after);
        let flag = |actual: bool, wanted: Option<bool>| wanted.is_none_or(|w| w == actual);
        after && flag(finished, self.finished) && flag(ended, self.ended)
    }

    /// Sorts the admitted ids and cuts the page.
    pub fn page(&self, mut ids: Vec<ConversationId>) -> Page {
        let limit = self.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
        ids.sort();
        let next = (ids.len() > limit).then(|| ids[limit - 1].to_string());
        ids.truncate(limit);
        Page { ids, next }
    }
}

async fn conversation(state: web::Data<AdminState>, id: web::Path<String>) -> HttpResponse {
    let id = ConversationId::from(id.into_inner());
    match describe(&state.views, &state.write_statuses, &id) {
        Some(mut view) => {
            let clocks = state
                .pipeline
                .sla
                .get(&id)
                .map(|entry| entry.value().clone())
                .unwrap_or_default();
            if let Some(object) = view.as_object_mut() {
                object.insert("slaClocks".to_owned(), json!(clocks));
            }
            HttpResponse::Ok().json(view)
        }
        None => HttpResponse::NotFound()
            .json(json!({ "error": "unknown conversation", "conversationId": id })),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// `n` conversations `c-000`…, newest first; the even ones finished and ended.
    fn views(n: usize) -> Vec<(ConversationId, bool)> {
        (0..n)
            .rev()
            .map(|i| {
                (
                    ConversationId::from(format!("c-{i:03}").as_str()),
                    i % 2 == 0,
                )
            })
            .collect()
    }

    fn admitted(query: &ConversationsQuery, n: usize) -> Vec<ConversationId> {
        views(n)
            .into_iter()
            .filter(|(id, done)| query.admits(id, *done, *done))
            .map(|(id, _)| id)
            .collect()
    }

    fn ids(page: &Page) -> Vec<String> {
        page.ids.iter().map(ConversationId::to_string).collect()
    }

    #[test]
    fn pages_are_sorted_and_the_cursor_leads_to_the_rest() {
        let query = ConversationsQuery {
            limit: Some(2),
            ..ConversationsQuery::default()
        };
        let first = query.page(admitted(&query, 5));
        assert_eq!(ids(&first), vec!["c-000", "c-001"]);
        assert_eq!(first.next.as_deref(), Some("c-001"));

        let query = ConversationsQuery {
            limit: Some(2),
            after: first.next.clone(),
            ..ConversationsQuery::default()
        };
        let second = query.page(admitted(&query, 5));
        assert_eq!(ids(&second), vec!["c-002", "c-003"]);

        let everything = ConversationsQuery::default();
        let everything = everything.page(admitted(&everything, 5));
        assert_eq!(everything.ids.len(), 5);
        assert_eq!(everything.next, None);
    }

    #[test]
    fn filters_keep_only_matching_views() {
        let query = ConversationsQuery {
            finished: Some(false),
            ..ConversationsQuery::default()
        };
        assert_eq!(
            ids(&query.page(admitted(&query, 5))),
            vec!["c-001", "c-003"]
        );
    }

    #[test]
    fn a_limit_is_kept_within_one_and_the_maximum() {
        let zero = ConversationsQuery {
            limit: Some(0),
            ..ConversationsQuery::default()
        };
        assert_eq!(zero.page(admitted(&zero, 3)).ids.len(), 1);
    }
}
