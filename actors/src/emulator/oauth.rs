//! `POST /oauth/token` (API.md §1.2): client credentials from the Basic header (or, as
//! RFC 6749 also allows, from the form body), `grant_type=client_credentials` in the form.
//! The decisions are the platform's; this only decodes the request. Credentials are never
//! logged.

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use convoy::emulator::platform::ClientCredentials;

use super::{lock, EmulatorShared};

/// `(client_id, client_secret)` from `Authorization: Basic base64(id:secret)`.
fn basic_credentials(req: &HttpRequest) -> Option<(String, String)> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

pub(super) async fn token(
    req: HttpRequest,
    form: web::Bytes,
    shared: web::Data<EmulatorShared>,
) -> HttpResponse {
    let fields: Vec<(String, String)> = url::form_urlencoded::parse(&form).into_owned().collect();
    let field = |name: &str| {
        fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let credentials =
        basic_credentials(&req).or_else(|| Some((field("client_id")?, field("client_secret")?)));
    let grant_type = field("grant_type");
    let now = shared.now();
    let result = lock(&shared.platform).issue_token(
        credentials.as_ref().map(|(id, secret)| ClientCredentials {
            client_id: id,
            client_secret: secret,
        }),
        grant_type.as_deref(),
        now,
    );
    match result {
        Ok(token) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(token),
        Err(refusal) => {
            tracing::info!(reason = %refusal, "Emulator refused a token request.");
            let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::BAD_REQUEST);
            HttpResponse::build(status).json(refusal.body())
        }
    }
}
