//! The emulator-only control API under `/emulator/v1` (not bearer-checked): provoke the
//! failures a Genesys client must survive — sockets dropped or closed for maintenance,
//! tokens expired or revoked, channels expired, raw (malformed, oversized, non-UTF-8)
//! frames pushed to a socket — and set the fault-injection knobs.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use convoy::emulator::platform::{FaultSettings, SocketId};
use serde::Deserialize;
use serde_json::json;

use super::socket::{Outbound, RawFrame};
use super::{lock, EmulatorShared};

/// Grace between `v2.system.socket_closing` and the close when none is given. Genesys
/// gives about a minute; tests want it short and say so.
const DEFAULT_CLOSING_GRACE_MS: u64 = 1_000;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/sockets/drop", web::post().to(drop_sockets))
        .route("/sockets/closing", web::post().to(closing_sockets))
        .service(
            web::resource("/sockets/raw")
                .app_data(web::PayloadConfig::new(MAX_RAW_FRAME_BYTES))
                .route(web::post().to(raw_frame)),
        )
        .route("/tokens/expire", web::post().to(expire_tokens))
        .route("/tokens/revoke", web::post().to(revoke_tokens))
        .route("/channels/expire", web::post().to(expire_channels))
        .service(
            web::resource("/faults")
                .route(web::get().to(get_faults))
                .route(web::put().to(put_faults)),
        );
}

/// Every socket dies now, without a close frame, as on a network failure. The channels
/// stay: a client may reconnect to the same `connectUri` (and misses what was published
/// meanwhile).
async fn drop_sockets(shared: web::Data<EmulatorShared>) -> HttpResponse {
    let now = shared.now();
    let sockets: Vec<SocketId> = lock(&shared.platform)
        .detach_all_sockets(now)
        .into_iter()
        .map(|(_, socket)| socket)
        .collect();
    shared.signal_sockets(&sockets, || Outbound::Drop);
    HttpResponse::Ok().json(json!({ "sockets": sockets.len() }))
}

#[derive(Debug, Deserialize)]
struct ClosingQuery {
    grace_ms: Option<u64>,
}

/// `v2.system.socket_closing` on every socket, then a close after `grace_ms`.
async fn closing_sockets(
    query: web::Query<ClosingQuery>,
    shared: web::Data<EmulatorShared>,
) -> HttpResponse {
    let grace_ms = query.grace_ms.unwrap_or(DEFAULT_CLOSING_GRACE_MS);
    let (sockets, frame) = {
        let mut platform = lock(&shared.platform);
        let sockets: Vec<SocketId> = platform
            .sockets()
            .into_iter()
            .map(|(_, socket)| socket)
            .collect();
        (sockets, platform.socket_closing_frame())
    };
    shared.signal_sockets(&sockets, || Outbound::Frame(frame.clone()));
    let later = shared.clone();
    let closing = sockets.clone();
    actix_web::rt::spawn(async move {
        actix_web::rt::time::sleep(Duration::from_millis(grace_ms)).await;
        later.signal_sockets(&closing, || Outbound::Close(None));
    });
    HttpResponse::Ok().json(json!({ "sockets": sockets.len(), "grace_ms": grace_ms }))
}

/// The largest raw frame `POST /sockets/raw` takes (bigger bodies answer 413): room for
/// frames over any sensible `stream.max_frame_bytes`.
pub const MAX_RAW_FRAME_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Deserialize)]
struct RawQuery {
    /// `text` (default; the body must be UTF-8), `binary`, or `unchecked_text` (a text
    /// message whose bytes need not be UTF-8).
    kind: Option<String>,
    /// Only this channel's socket; every socket when absent.
    channel: Option<String>,
}

/// The request body, unchanged, as one WebSocket message on every socket (or on
/// `channel`'s): malformed, oversized or non-UTF-8 frames for bad-input tests. Answers how
/// many sockets it was queued on.
async fn raw_frame(
    query: web::Query<RawQuery>,
    body: web::Bytes,
    shared: web::Data<EmulatorShared>,
) -> HttpResponse {
    let frame =
        match query.kind.as_deref().unwrap_or("text") {
            "text" => match String::from_utf8(body.to_vec()) {
                Ok(text) => RawFrame::Text(text),
                Err(_) => return HttpResponse::BadRequest().json(json!({
                    "error": "a text frame must be UTF-8; use kind=unchecked_text or kind=binary"
                })),
            },
            "binary" => RawFrame::Binary(body),
            "unchecked_text" => RawFrame::UncheckedText(body),
            other => {
                return HttpResponse::BadRequest().json(json!({
                    "error": format!("unknown kind {other:?}: text, binary or unchecked_text")
                }))
            }
        };
    let sockets: Vec<SocketId> = lock(&shared.platform)
        .sockets()
        .into_iter()
        .filter(|(channel, _)| {
            query
                .channel
                .as_deref()
                .is_none_or(|wanted| channel.as_str() == wanted)
        })
        .map(|(_, socket)| socket)
        .collect();
    shared.signal_sockets(&sockets, || Outbound::Raw(frame.clone()));
    HttpResponse::Ok().json(json!({ "sockets": sockets.len() }))
}

/// Every token expires now; the channels they created die.
async fn expire_tokens(shared: web::Data<EmulatorShared>) -> HttpResponse {
    let now = shared.now();
    let closures = lock(&shared.platform).expire_tokens(now);
    let channels = closures.len();
    shared.close_channels(closures);
    HttpResponse::Ok().json(json!({ "channels_closed": channels }))
}

/// Every token is revoked; the channels they created die.
async fn revoke_tokens(shared: web::Data<EmulatorShared>) -> HttpResponse {
    let now = shared.now();
    let closures = lock(&shared.platform).revoke_tokens(now);
    let channels = closures.len();
    shared.close_channels(closures);
    HttpResponse::Ok().json(json!({ "channels_closed": channels }))
}

/// Every channel expires now.
async fn expire_channels(shared: web::Data<EmulatorShared>) -> HttpResponse {
    let now = shared.now();
    let closures = lock(&shared.platform).expire_channels(now);
    let channels = closures.len();
    shared.close_channels(closures);
    HttpResponse::Ok().json(json!({ "channels_closed": channels }))
}

async fn get_faults(shared: web::Data<EmulatorShared>) -> HttpResponse {
    let faults = lock(&shared.platform).faults().clone();
    HttpResponse::Ok().json(faults)
}

/// Replaces the fault settings; omitted fields are 0.
async fn put_faults(
    body: web::Json<FaultSettings>,
    shared: web::Data<EmulatorShared>,
) -> HttpResponse {
    let faults = body.into_inner();
    let result = lock(&shared.platform).set_faults(faults.clone());
    match result {
        Ok(()) => {
            tracing::info!(?faults, "Emulator faults set.");
            HttpResponse::Ok().json(faults)
        }
        Err(error) => HttpResponse::BadRequest().json(json!({ "error": error.to_string() })),
    }
}
