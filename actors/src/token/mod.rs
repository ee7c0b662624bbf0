//! TokenActor: owns the client-credentials token. It caches the token, refreshes it a
//! margin ahead of expiry, lets concurrent askers share one in-flight refresh, drops a
//! token that a 401 proved bad, and never logs the secret or the token.
//!
//! Every REST and WebSocket adapter asks it with `send(GetToken)`; it is a leaf of the
//! actor graph (it asks nobody), so no request cycle can form through it.

mod actor;

pub use actor::{refresh_margin, TokenActor, TokenStats};

use actix::Message;

use crate::genesys::oauth::{AccessToken, TokenError};

/// Asks for a valid token, waiting for a refresh if one is needed.
#[derive(Debug, Message)]
#[rtype(result = "Result<AccessToken, TokenError>")]
pub struct GetToken;

/// Reports that a call made with `token` got 401. If it is still the cached token it is
/// dropped, so the next `GetToken` fetches a fresh one; a stale report for an older
/// token does nothing (many callers may report the same 401).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct InvalidateToken {
    pub token: AccessToken,
}
