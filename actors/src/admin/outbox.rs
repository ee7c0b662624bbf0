//! The outbox routes: `GET /outbox` (counts), `GET /outbox/dead` (every dead letter with
//! its context), `POST /outbox/retry-dead` (`{"ids": […]}` or `{"all": true}`),
//! `GET /outbox/sla-outcomes?from=&to=` (SLA outcomes decided in `[from, to)`, RFC 3339).
//! Their bodies are `crate::outbox_cmd`'s wire types, which `convoy outbox` and
//! `convoy snapshot` read.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::AdminState;
use crate::outbox_cmd::{retry_dead as retry, DeadLettersBody, RetryDeadRequest, SlaOutcomesBody};
use crate::store::{DurableStore, StoreError};

pub(super) async fn status(state: web::Data<AdminState>) -> HttpResponse {
    with_store(&state, |store| store.status()).await
}

pub(super) async fn dead(state: web::Data<AdminState>) -> HttpResponse {
    with_store(&state, |store| {
        let dead_letters = store.dead_letters()?;
        Ok(DeadLettersBody {
            count: dead_letters.len(),
            dead_letters,
        })
    })
    .await
}

pub(super) async fn retry_dead(state: web::Data<AdminState>, body: web::Bytes) -> HttpResponse {
    let selection = serde_json::from_slice::<RetryDeadRequest>(&body)
        .map_err(|error| error.to_string())
        .and_then(|request| request.selection().map_err(|error| error.to_string()));
    match selection {
        Ok(selection) => {
            with_store(&state, move |store| {
                retry(store, &selection, chrono::Utc::now())
            })
            .await
        }
        Err(message) => HttpResponse::BadRequest()
            .json(json!({ "error": "invalid_request", "message": message })),
    }
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct OutcomesQuery {
    from: String,
    to: String,
}

pub(super) async fn sla_outcomes(
    state: web::Data<AdminState>,
    query: web::Query<OutcomesQuery>,
) -> HttpResponse {
    let parse = |name: &str, text: &str| {
        chrono::DateTime::parse_from_rfc3339(text)
            .map(|at| at.with_timezone(&chrono::Utc))
            .map_err(|_| format!("{name} must be an RFC 3339 instant, got {text:?}"))
    };
    let interval = parse("from", &query.from).and_then(|from| Ok((from, parse("to", &query.to)?)));
    match interval {
        Ok((from, to)) => {
            with_store(&state, move |store| {
                let outcomes = store.sla_outcomes(from, to)?;
                Ok(SlaOutcomesBody {
                    count: outcomes.len(),
                    outcomes,
                })
            })
            .await
        }
        Err(message) => HttpResponse::BadRequest()
            .json(json!({ "error": "invalid_request", "message": message })),
    }
}

/// Runs `work` on the attached store in the blocking pool (redb waits on the disk).
async fn with_store<T: serde::Serialize + Send + 'static>(
    state: &AdminState,
    work: impl FnOnce(&DurableStore) -> Result<T, StoreError> + Send + 'static,
) -> HttpResponse {
    let attached = state.outbox.lock().ok().and_then(|slot| slot.clone());
    let Some(store) = attached else {
        return HttpResponse::ServiceUnavailable().json(json!({
            "error": "outbox_not_open",
            "message": "the daemon has not opened its outbox yet",
        }));
    };
    match web::block(move || work(&store)).await {
        Ok(Ok(value)) => HttpResponse::Ok().json(value),
        Ok(Err(error)) => {
            tracing::error!(%error, "An outbox admin request failed.");
            HttpResponse::InternalServerError()
                .json(json!({ "error": "store_failed", "message": error.to_string() }))
        }
        Err(error) => HttpResponse::InternalServerError()
            .json(json!({ "error": "blocking_pool", "message": error.to_string() })),
    }
}
