//! TokenActor: owns the client-credentials token. It caches the token, refreshes it a
//! margin ahead of expiry, lets concurrent askers share one in-flight refresh, drops a
//! token that a 401 proved bad, and never logs the secret or the token.
//!
//! It believes a token's `expires_in` only within sane bounds (at most a week, at least
//! [`MIN_REFRESH_INTERVAL`], which is also the least time between two token requests), and
//! it ends the process when no token can be had ([`TokenPolicy`]): after
//! `credential_attempts` refusals of the OAuth client in a row (exit code 4,
//! `EXIT_CREDENTIALS_REFUSED`) or after `genesys.login_unreachable_exit_after` without a
//! valid token and without a successful request (exit code 5, `EXIT_LOGIN_UNREACHABLE`),
//! so the service manager reports the failure instead of a daemon that is forever unready.
//!
//! Every REST and WebSocket adapter asks it with `send(GetToken)`; it is a leaf of the
//! actor graph (it asks nobody), so no request cycle can form through it.

mod actor;

pub use actor::{
    refresh_margin, token_timing, TokenActor, TokenPolicy, TokenStats, MAX_TOKEN_LIFETIME,
    MIN_REFRESH_INTERVAL,
};

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
