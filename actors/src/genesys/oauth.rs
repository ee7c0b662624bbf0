//! `POST {login_base}/oauth/token` with client credentials (API.md §1.2): credentials in the
//! Basic header, `grant_type=client_credentials` in a form body. OAuth errors use their own
//! three-field body, not the API's `ErrorBody`.

use std::time::Duration;

use convoy::config::Secret;
use convoy::model::{OAuthError, TokenResponse};

/// A bearer token. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(Secret<String>);

impl AccessToken {
    pub fn new(value: String) -> Self {
        AccessToken(Secret::new(value))
    }

    /// The `Authorization` header value.
    pub fn bearer_header(&self) -> String {
        format!("Bearer {}", self.0.expose_secret())
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(***)")
    }
}

/// A token and how long Genesys said it lives.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: AccessToken,
    pub expires_in: Duration,
}

/// Where and as whom to ask for tokens.
#[derive(Clone)]
pub struct TokenEndpoint {
    pub login_base: String,
    pub client_id: String,
    pub client_secret: Secret<String>,
}

impl std::fmt::Debug for TokenEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenEndpoint")
            .field("login_base", &self.login_base)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .finish()
    }
}

/// Why no token was issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The OAuth client is wrong (unknown id, wrong secret, grant not allowed): a
    /// configuration error that retrying cannot fix.
    #[error("Genesys rejected OAuth client {client_id} (HTTP {status}, {error}: {description}); check genesys.client_id and genesys.client_secret")]
    Rejected {
        client_id: String,
        status: u16,
        error: String,
        description: String,
    },
    /// The token endpoint could not be reached or failed on its side; worth retrying.
    #[error("token endpoint unavailable: {0}")]
    Unavailable(String),
    /// A 2xx whose body is not a token response.
    #[error("token endpoint answered with an unreadable body: {0}")]
    Malformed(String),
    /// The token actor is gone (the process is shutting down).
    #[error("the token actor has stopped")]
    ActorGone,
}

impl TokenError {
    /// Whether asking again later can help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, TokenError::Unavailable(_) | TokenError::Malformed(_))
    }
}

/// Upper bound on a token response body: they are a few hundred bytes.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Asks for one token. No retry here: the caller owns the schedule.
pub async fn request_token(
    client: &awc::Client,
    endpoint: &TokenEndpoint,
) -> Result<IssuedToken, TokenError> {
    let url = format!("{}/oauth/token", endpoint.login_base.trim_end_matches('/'));
    let mut response = client
        .post(url)
        .basic_auth(&endpoint.client_id, endpoint.client_secret.expose_secret())
        .send_form(&[("grant_type", "client_credentials")])
        .await
        .map_err(|error| TokenError::Unavailable(error.to_string()))?;
    let status = response.status();
    let body = response
        .body()
        .limit(MAX_BODY_BYTES)
        .await
        .map_err(|error| TokenError::Unavailable(error.to_string()))?;
    if status.is_success() {
        let token: TokenResponse = serde_json::from_slice(&body)
            .map_err(|error| TokenError::Malformed(error.to_string()))?;
        return Ok(IssuedToken {
            token: AccessToken::new(token.access_token),
            expires_in: Duration::from_secs(token.expires_in),
        });
    }
    // 400/401/403 are the client's fault (unknown client, wrong secret, bad grant);
    // anything else (408, 429, 5xx) is the service's and worth retrying.
    if matches!(status.as_u16(), 400 | 401 | 403) {
        let oauth: OAuthError = serde_json::from_slice(&body).unwrap_or_default();
        return Err(TokenError::Rejected {
            client_id: endpoint.client_id.clone(),
            status: status.as_u16(),
            error: if oauth.error.is_empty() {
                "unknown".to_owned()
            } else {
                oauth.error
            },
            description: oauth
                .error_description
                .or(oauth.description)
                .unwrap_or_else(|| "no description".to_owned()),
        });
    }
    Err(TokenError::Unavailable(format!("HTTP {}", status.as_u16())))
}
