//! The Notifications REST API (API.md §3.1) under `/api/v2`: channels and their
//! subscriptions. Each handler locks the platform once, asks it, and answers; channels
//! evicted or found dead on the way are closed on their sockets afterwards.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use convoy::emulator::platform::{frames, ChannelListScope, NotifyError, SubscribeMode};
use convoy::model::TopicRequest;
use serde::Deserialize;

use super::api::RequestContext;
use super::{lock, EmulatorShared};

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/notifications/channels")
            .route(web::post().to(create_channel))
            .route(web::get().to(list_channels)),
    )
    .service(
        web::resource("/notifications/channels/{channel_id}").route(web::head().to(head_channel)),
    )
    .service(
        web::resource("/notifications/channels/{channel_id}/subscriptions")
            .route(web::get().to(get_subscriptions))
            .route(web::post().to(add_subscriptions))
            .route(web::put().to(replace_subscriptions))
            .route(web::delete().to(delete_subscriptions)),
    );
}

fn notify_error(error: &NotifyError, context: &RequestContext) -> HttpResponse {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::BAD_REQUEST);
    HttpResponse::build(status).json(error.body(&context.correlation_id))
}

async fn create_channel(
    context: RequestContext,
    shared: web::Data<EmulatorShared>,
) -> HttpResponse {
    let now = shared.now();
    let (channel, closures) =
        lock(&shared.platform).create_channel(&context.caller, &shared.ws_base, now);
    shared.close_channels(closures);
    HttpResponse::Ok().json(channel)
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    includechannels: Option<String>,
}

async fn list_channels(
    context: RequestContext,
    query: web::Query<ListQuery>,
    shared: web::Data<EmulatorShared>,
) -> HttpResponse {
    let scope = match query
        .includechannels
        .as_deref()
        .map(str::to_ascii_lowercase)
    {
        None => ChannelListScope::Token,
        Some(value) if value == "token" => ChannelListScope::Token,
        Some(value) if value == "oauthclient" => ChannelListScope::OAuthClient,
        Some(other) => {
            return HttpResponse::BadRequest().json(frames::error_body(
                400,
                "invalid.query.param.value",
                &format!("includechannels must be token or oauthclient, not {other}"),
                &context.correlation_id,
            ))
        }
    };
    let now = shared.now();
    let listing = lock(&shared.platform).list_channels(&context.caller, scope, now);
    HttpResponse::Ok().json(listing)
}

async fn head_channel(
    context: RequestContext,
    path: web::Path<String>,
    shared: web::Data<EmulatorShared>,
) -> HttpResponse {
    let now = shared.now();
    if lock(&shared.platform).channel_exists(&context.caller, &path, now) {
        HttpResponse::Ok().finish()
    } else {
        HttpResponse::NotFound().finish()
    }
}

async fn get_subscriptions(
    context: RequestContext,
    path: web::Path<String>,
    shared: web::Data<EmulatorShared>,
) -> HttpResponse {
    let now = shared.now();
    match lock(&shared.platform).subscriptions(&context.caller, &path, now) {
        Ok(listing) => HttpResponse::Ok().json(listing),
        Err(error) => notify_error(&error, &context),
    }
}

#[derive(Debug, Deserialize)]
struct SubscribeQuery {
    #[serde(rename = "ignoreErrors", default)]
    ignore_errors: bool,
}

fn subscribe(
    context: RequestContext,
    channel: &str,
    topics: Vec<TopicRequest>,
    mode: SubscribeMode,
    ignore_errors: bool,
    shared: &EmulatorShared,
) -> HttpResponse {
    let topics: Vec<String> = topics.into_iter().map(|topic| topic.id).collect();
    let now = shared.now();
    let result = lock(&shared.platform).subscribe(
        &context.caller,
        channel,
        &topics,
        mode,
        ignore_errors,
        now,
    );
    match result {
        Ok(listing) => HttpResponse::Ok().json(listing),
        Err(error) => notify_error(&error, &context),
    }
}

async fn add_subscriptions(
    context: RequestContext,
    path: web::Path<String>,
    query: web::Query<SubscribeQuery>,
    body: web::Json<Vec<TopicRequest>>,
    shared: web::Data<EmulatorShared>,
) -> HttpResponse {
    subscribe(
        context,
        &path,
        body.into_inner(),
        SubscribeMode::Add,
        query.ignore_errors,
        &shared,
    )
}

async fn replace_subscriptions(
    context: RequestContext,
    path: web::Path<String>,
    query: web::Query<SubscribeQuery>,
    body: web::Json<Vec<TopicRequest>>,
    shared: web::Data<EmulatorShared>,
) -> HttpResponse {
    subscribe(
        context,
        &path,
        body.into_inner(),
        SubscribeMode::Replace,
        query.ignore_errors,
        &shared,
    )
}

async fn delete_subscriptions(
    context: RequestContext,
    path: web::Path<String>,
    shared: web::Data<EmulatorShared>,
) -> HttpResponse {
    let now = shared.now();
    match lock(&shared.platform).unsubscribe_all(&context.caller, &path, now) {
        Ok(()) => HttpResponse::NoContent().finish(),
        Err(error) => notify_error(&error, &context),
    }
}
