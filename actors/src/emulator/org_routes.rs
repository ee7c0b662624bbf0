//! The org's HTTP routes: the conversation, messaging, directory and analytics paths under
//! `/api/v2` (behind the gate), and the org's control routes under `/emulator/v1` (org
//! directory, routing profile, ground truth, voice calls, "another writer" touch).
//!
//! Every handler is the same three steps: read the request (body as JSON, path, query,
//! `If-Match`), call the pure `Org` method with `shared.now()` while holding the org lock,
//! then — with the lock released — publish the returned events and answer. Errors answer
//! the `ErrorBody` of [`OrgError`]; the gate adds the request's `contextId`.

use std::collections::HashMap;

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use convoy::emulator::org::{parse_json_body, Applied, Org, OrgError, PathFamily, Versioned};
use serde::Serialize;

use super::{lock, EmulatorShared};

type Shared = web::Data<EmulatorShared>;
type Query = web::Query<HashMap<String, String>>;

/// The org's `/api/v2` routes (paths relative to `/api/v2`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/routing/queues", web::get().to(list_queues))
        .route("/users", web::get().to(list_users))
        // Message-specific paths before the generic `/conversations/{id}` family.
        .route(
            "/conversations/messages/agentless",
            web::post().to(send_agentless),
        )
        .route(
            "/conversations/messages/{integration_id}/inbound/open/message",
            web::post().to(open_message),
        )
        .route(
            "/conversations/messages/{integration_id}/inbound/open/receipt",
            web::post().to(open_receipt),
        )
        .route(
            "/conversations/messages/{integration_id}/inbound/open/event",
            web::post().to(open_event),
        )
        .route(
            "/conversations/messages/{id}/communications/{communication_id}/messages",
            web::post().to(send_message),
        )
        .route(
            "/conversations/messages/{id}/messages/{message_id}",
            web::get().to(get_message),
        )
        .route(
            "/conversations/messages/{id}/participants/{participant_id}/attributes",
            web::patch().to(patch_message_participant_attributes),
        )
        .route(
            "/conversations/messages/{id}/participants/{participant_id}",
            web::patch().to(patch_message_participant),
        )
        .service(
            web::resource("/conversations/messages/{id}")
                .route(web::get().to(get_message_conversation))
                .route(web::patch().to(disconnect_message_conversation)),
        )
        .route(
            "/conversations/{id}/participants/{participant_id}/attributes",
            web::patch().to(patch_participant_attributes),
        )
        .route(
            "/conversations/{id}/participants/{participant_id}",
            web::patch().to(patch_participant),
        )
        .route("/conversations/{id}", web::get().to(get_conversation))
        .route(
            "/analytics/conversations/details/query",
            web::post().to(details_query),
        )
        .route(
            "/analytics/conversations/aggregates/query",
            web::post().to(aggregates_query),
        )
        .route(
            "/analytics/conversations/details/jobs",
            web::post().to(create_job),
        )
        .route(
            "/analytics/conversations/details/jobs/availability",
            web::get().to(jobs_availability),
        )
        .route(
            "/analytics/conversations/details/jobs/{job_id}/results",
            web::get().to(job_results),
        )
        .service(
            web::resource("/analytics/conversations/details/jobs/{job_id}")
                .route(web::get().to(job_status))
                .route(web::delete().to(cancel_job)),
        );
}

/// The org's `/emulator/v1` routes (paths relative to `/emulator/v1`).
pub fn configure_control(cfg: &mut web::ServiceConfig) {
    cfg.route("/org", web::get().to(org_directory))
        .service(
            web::resource("/routing")
                .route(web::get().to(get_routing))
                .route(web::put().to(put_routing)),
        )
        .route("/truth", web::get().to(truth))
        .route("/conversations/voice", web::post().to(create_voice))
        .route("/conversations/{id}/touch", web::post().to(touch));
}

fn error_response(error: &OrgError) -> HttpResponse {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::BAD_REQUEST);
    HttpResponse::build(status).json(error.error_body())
}

fn json_response(status: StatusCode, body: &impl Serialize) -> HttpResponse {
    HttpResponse::build(status).json(body)
}

/// Runs `operation` on the locked org at the emulator's `now`; the guard is dropped before
/// the result is returned.
fn with_org<T>(
    shared: &Shared,
    operation: impl FnOnce(&mut Org, chrono::DateTime<chrono::Utc>) -> Result<T, OrgError>,
) -> Result<T, OrgError> {
    let now = shared.now();
    let mut org = lock(&shared.org);
    operation(&mut org, now)
}

/// Publishes the events of a change and answers `status` with its body.
fn applied_response<T: Serialize>(
    shared: &Shared,
    result: Result<Applied<T>, OrgError>,
    status: StatusCode,
) -> HttpResponse {
    match result {
        Ok(applied) => {
            shared.publish(applied.events);
            json_response(status, &applied.body)
        }
        Err(error) => error_response(&error),
    }
}

/// Publishes the events of a change and answers 202 with no body.
fn accepted<T>(shared: &Shared, result: Result<Applied<T>, OrgError>) -> HttpResponse {
    match result {
        Ok(applied) => {
            shared.publish(applied.events);
            HttpResponse::Accepted().finish()
        }
        Err(error) => error_response(&error),
    }
}

fn versioned_response<T: Serialize>(result: Result<Versioned<T>, OrgError>) -> HttpResponse {
    match result {
        Ok(versioned) => {
            let mut response = HttpResponse::Ok();
            if let Some(etag) = versioned.etag {
                response.insert_header((header::ETAG, etag));
            }
            response.json(versioned.body)
        }
        Err(error) => error_response(&error),
    }
}

fn value_response(result: Result<serde_json::Value, OrgError>, status: StatusCode) -> HttpResponse {
    match result {
        Ok(body) => json_response(status, &body),
        Err(error) => error_response(&error),
    }
}

fn if_match(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get(header::IF_MATCH)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

async fn list_queues(shared: Shared, query: Query) -> HttpResponse {
    let result = with_org(&shared, |org, _| {
        org.list_queues(
            query.get("pageSize").map(String::as_str),
            query.get("pageNumber").map(String::as_str),
        )
    });
    value_response(result, StatusCode::OK)
}

async fn list_users(shared: Shared, query: Query) -> HttpResponse {
    let result = with_org(&shared, |org, _| {
        org.list_users(
            query.get("pageSize").map(String::as_str),
            query.get("pageNumber").map(String::as_str),
        )
    });
    value_response(result, StatusCode::OK)
}

async fn get_conversation(shared: Shared, path: web::Path<String>) -> HttpResponse {
    versioned_response(with_org(&shared, |org, _| org.get_conversation(&path)))
}

async fn get_message_conversation(shared: Shared, path: web::Path<String>) -> HttpResponse {
    versioned_response(with_org(&shared, |org, _| {
        org.get_message_conversation(&path)
    }))
}

async fn get_message(shared: Shared, path: web::Path<(String, String)>) -> HttpResponse {
    let (id, message_id) = path.into_inner();
    value_response(
        with_org(&shared, |org, _| org.get_message(&id, &message_id)),
        StatusCode::OK,
    )
}

async fn participant_patch(
    shared: Shared,
    family: PathFamily,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let (id, participant_id) = path.into_inner();
    let result = parse_json_body(&body).and_then(|body| {
        with_org(&shared, |org, now| {
            org.patch_participant(family, &id, &participant_id, &body, now)
        })
    });
    accepted(&shared, result)
}

async fn patch_participant(
    shared: Shared,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    participant_patch(shared, PathFamily::Any, path, body).await
}

async fn patch_message_participant(
    shared: Shared,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    participant_patch(shared, PathFamily::Messages, path, body).await
}

fn attributes_patch(
    shared: &Shared,
    family: PathFamily,
    req: &HttpRequest,
    path: web::Path<(String, String)>,
    body: &web::Bytes,
) -> Result<(Applied<serde_json::Value>, Option<String>), OrgError> {
    let (id, participant_id) = path.into_inner();
    let if_match = if_match(req);
    // Writers are told apart by their `User-Agent` (a cluster worker names itself
    // there), so the truth can count conflicts between two writers of one conversation.
    let writer = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body = parse_json_body(body)?;
    with_org(shared, |org, now| {
        let applied = org.patch_participant_attributes_by(
            family,
            &id,
            &participant_id,
            &body,
            if_match.as_deref(),
            writer.as_deref(),
            now,
        )?;
        // Strict mode answers a write with the conversation's new version as its ETag,
        // as ETag-aware APIs do, so a client can chain writes without re-reading.
        let etag = org.conversation_etag(&id);
        Ok((applied, etag))
    })
}

/// 202 with no body (`PATCH /conversations/{id}/participants/{pid}/attributes`).
async fn patch_participant_attributes(
    shared: Shared,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let (result, etag) = split_etag(attributes_patch(
        &shared,
        PathFamily::Any,
        &req,
        path,
        &body,
    ));
    with_etag(accepted(&shared, result), etag)
}

fn split_etag<T>(
    result: Result<(Applied<T>, Option<String>), OrgError>,
) -> (Result<Applied<T>, OrgError>, Option<String>) {
    match result {
        Ok((applied, etag)) => (Ok(applied), etag),
        Err(error) => (Err(error), None),
    }
}

fn with_etag(mut response: HttpResponse, etag: Option<String>) -> HttpResponse {
    if let Some(value) = etag.and_then(|etag| header::HeaderValue::from_str(&etag).ok()) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// 202 with the `ParticipantAttributes` (the messages variant).
async fn patch_message_participant_attributes(
    shared: Shared,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let (result, etag) = split_etag(attributes_patch(
        &shared,
        PathFamily::Messages,
        &req,
        path,
        &body,
    ));
    with_etag(
        applied_response(&shared, result, StatusCode::ACCEPTED),
        etag,
    )
}

async fn disconnect_message_conversation(
    shared: Shared,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let result = parse_json_body(&body).and_then(|body| {
        with_org(&shared, |org, now| {
            org.disconnect_message_conversation(&path, &body, now)
        })
    });
    applied_response(&shared, result, StatusCode::OK)
}

async fn send_message(
    shared: Shared,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let (id, communication_id) = path.into_inner();
    let result = parse_json_body(&body).and_then(|body| {
        with_org(&shared, |org, now| {
            org.send_message(&id, &communication_id, &body, now)
        })
    });
    applied_response(&shared, result, StatusCode::OK)
}

async fn send_agentless(shared: Shared, body: web::Bytes) -> HttpResponse {
    let result = parse_json_body(&body)
        .and_then(|body| with_org(&shared, |org, now| org.send_agentless(&body, now)));
    applied_response(&shared, result, StatusCode::ACCEPTED)
}

async fn open_message(
    shared: Shared,
    path: web::Path<String>,
    query: Query,
    body: web::Bytes,
) -> HttpResponse {
    let prefetch = query
        .get("prefetchConversationId")
        .is_some_and(|value| value.eq_ignore_ascii_case("true"));
    let result = parse_json_body(&body).and_then(|body| {
        with_org(&shared, |org, now| {
            org.open_inbound_message(&path, &body, prefetch, now)
        })
    });
    applied_response(&shared, result, StatusCode::OK)
}

async fn open_receipt(shared: Shared, path: web::Path<String>, body: web::Bytes) -> HttpResponse {
    let result = parse_json_body(&body).and_then(|body| {
        with_org(&shared, |org, now| {
            org.open_inbound_receipt(&path, &body, now)
        })
    });
    applied_response(&shared, result, StatusCode::OK)
}

async fn open_event(shared: Shared, path: web::Path<String>, body: web::Bytes) -> HttpResponse {
    let result = parse_json_body(&body).and_then(|body| {
        with_org(&shared, |org, now| {
            org.open_inbound_event(&path, &body, now)
        })
    });
    value_response(result, StatusCode::OK)
}

async fn details_query(shared: Shared, body: web::Bytes) -> HttpResponse {
    let result = parse_json_body(&body)
        .and_then(|body| with_org(&shared, |org, _| org.details_query(&body)));
    value_response(result, StatusCode::OK)
}

async fn aggregates_query(shared: Shared, body: web::Bytes) -> HttpResponse {
    let result = parse_json_body(&body)
        .and_then(|body| with_org(&shared, |org, _| org.aggregates_query(&body)));
    value_response(result, StatusCode::OK)
}

async fn create_job(shared: Shared, body: web::Bytes) -> HttpResponse {
    let result = parse_json_body(&body)
        .and_then(|body| with_org(&shared, |org, now| org.create_details_job(&body, now)));
    value_response(result, StatusCode::ACCEPTED)
}

async fn jobs_availability(shared: Shared) -> HttpResponse {
    let result = with_org(&shared, |org, now| Ok(org.details_jobs_availability(now)));
    value_response(result, StatusCode::OK)
}

async fn job_status(shared: Shared, path: web::Path<String>) -> HttpResponse {
    value_response(
        with_org(&shared, |org, now| org.details_job_status(&path, now)),
        StatusCode::OK,
    )
}

async fn job_results(shared: Shared, path: web::Path<String>, query: Query) -> HttpResponse {
    let result = with_org(&shared, |org, now| {
        org.details_job_results(
            &path,
            query.get("cursor").map(String::as_str),
            query.get("pageSize").map(String::as_str),
            now,
        )
    });
    value_response(result, StatusCode::OK)
}

async fn cancel_job(shared: Shared, path: web::Path<String>) -> HttpResponse {
    match with_org(&shared, |org, now| org.cancel_details_job(&path, now)) {
        Ok(()) => HttpResponse::NoContent().finish(),
        Err(error) => error_response(&error),
    }
}

async fn org_directory(shared: Shared) -> HttpResponse {
    let directory = lock(&shared.org).directory();
    json_response(StatusCode::OK, &directory)
}

async fn get_routing(shared: Shared) -> HttpResponse {
    let profile = lock(&shared.org).routing_profile().clone();
    json_response(StatusCode::OK, &profile)
}

async fn put_routing(shared: Shared, body: web::Bytes) -> HttpResponse {
    let result = parse_json_body(&body)
        .and_then(|body| with_org(&shared, |org, _| org.set_routing_profile(&body)));
    match result {
        Ok(profile) => json_response(StatusCode::OK, &profile),
        Err(error) => error_response(&error),
    }
}

async fn truth(shared: Shared) -> HttpResponse {
    let truth = lock(&shared.org).truth();
    json_response(StatusCode::OK, &truth)
}

async fn create_voice(shared: Shared, body: web::Bytes) -> HttpResponse {
    let result = parse_json_body(&body).and_then(|body| {
        with_org(&shared, |org, now| {
            org.create_voice_conversation(&body, now)
        })
    });
    applied_response(&shared, result, StatusCode::CREATED)
}

async fn touch(shared: Shared, path: web::Path<String>) -> HttpResponse {
    let result = with_org(&shared, |org, now| org.touch(&path, now));
    applied_response(&shared, result, StatusCode::OK)
}
