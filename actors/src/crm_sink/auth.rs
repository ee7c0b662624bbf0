//! Credentials the CRM sink demands on its contract routes: none, a bearer token, HTTP
//! Basic, or an HMAC-SHA256 signature (`convoy::crm::signing`: `X-Convoy-Signature:
//! sha256=<hex>` over `X-Convoy-Timestamp` `.` body, the timestamp at most
//! [`HMAC_MAX_SKEW_SECS`] away from the sink's clock, so a captured request cannot be
//! replayed later). Written `none`, `bearer:TOKEN`, `basic:USER:PASS` or `hmac:SECRET` on
//! the command line. The secret parts never appear in `Debug` output.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use convoy::config::Secret;
use convoy::crm::signing;

/// How far (either way) a signed request's timestamp may be from the sink's clock.
pub const HMAC_MAX_SKEW_SECS: i64 = 5 * 60;

/// What a request offers as credentials.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    pub authorization: Option<&'a str>,
    /// `X-Convoy-Timestamp`.
    pub timestamp: Option<&'a str>,
    /// `X-Convoy-Signature`.
    pub signature: Option<&'a str>,
    pub body: &'a [u8],
}

/// What the sink accepts in `Authorization`.
#[derive(Clone, Default)]
pub enum SinkAuth {
    /// Anything goes.
    #[default]
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(Secret<String>),
    /// `Authorization: Basic base64(<user>:<password>)`.
    Basic {
        user: String,
        password: Secret<String>,
    },
    /// `X-Convoy-Signature` over `X-Convoy-Timestamp` `.` body, under this key.
    Hmac(Secret<String>),
}

impl fmt::Debug for SinkAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkAuth::None => f.write_str("None"),
            SinkAuth::Bearer(_) => f.write_str("Bearer(***)"),
            SinkAuth::Basic { user, .. } => write!(f, "Basic({user}:***)"),
            SinkAuth::Hmac(_) => f.write_str("Hmac(***)"),
        }
    }
}

/// Why an `--auth` value was refused. Never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkAuthError {
    #[error("expected none, bearer:TOKEN, basic:USER:PASS or hmac:SECRET")]
    UnknownScheme,
    #[error("the HMAC secret must not be empty")]
    EmptyHmacSecret,
    #[error("the bearer token must not be empty")]
    EmptyToken,
    #[error("basic needs a non-empty user: basic:USER:PASS")]
    EmptyUser,
}

impl FromStr for SinkAuth {
    type Err = SinkAuthError;

    fn from_str(text: &str) -> Result<SinkAuth, SinkAuthError> {
        if text == "none" {
            return Ok(SinkAuth::None);
        }
        if let Some(token) = text.strip_prefix("bearer:") {
            if token.is_empty() {
                return Err(SinkAuthError::EmptyToken);
            }
            return Ok(SinkAuth::Bearer(Secret::new(token.to_owned())));
        }
        if let Some(rest) = text.strip_prefix("basic:") {
            // The password may contain ':'; the user may not (RFC 7617).
            let (user, password) = rest.split_once(':').unwrap_or((rest, ""));
            if user.is_empty() {
                return Err(SinkAuthError::EmptyUser);
            }
            return Ok(SinkAuth::Basic {
                user: user.to_owned(),
                password: Secret::new(password.to_owned()),
            });
        }
        if let Some(secret) = text.strip_prefix("hmac:") {
            if secret.is_empty() {
                return Err(SinkAuthError::EmptyHmacSecret);
            }
            return Ok(SinkAuth::Hmac(Secret::new(secret.to_owned())));
        }
        Err(SinkAuthError::UnknownScheme)
    }
}

impl SinkAuth {
    /// Whether a request's credentials satisfy this policy at `now_unix` (seconds).
    pub fn permits_request(&self, credentials: &Credentials<'_>, now_unix: i64) -> bool {
        let SinkAuth::Hmac(secret) = self else {
            return self.permits(credentials.authorization);
        };
        let (Some(timestamp), Some(signature)) = (credentials.timestamp, credentials.signature)
        else {
            return false;
        };
        let fresh = timestamp
            .trim()
            .parse::<i64>()
            .is_ok_and(|at| (now_unix - at).abs() <= HMAC_MAX_SKEW_SECS);
        fresh
            && signing::verify(
                secret.expose_secret().as_bytes(),
                timestamp.trim(),
                credentials.body,
                signature,
            )
    }

    /// Whether an `Authorization` header value (or its absence) satisfies this policy. An
    /// HMAC policy needs the whole request: see [`SinkAuth::permits_request`].
    pub fn permits(&self, authorization: Option<&str>) -> bool {
        if matches!(self, SinkAuth::Hmac(_)) {
            return false;
        }
        let Some((scheme, value)) = authorization.and_then(|header| header.trim().split_once(' '))
        else {
            return matches!(self, SinkAuth::None);
        };
        match self {
            SinkAuth::None => true,
            SinkAuth::Hmac(_) => false,
            SinkAuth::Bearer(token) => {
                scheme.eq_ignore_ascii_case("bearer") && value.trim() == token.expose_secret()
            }
            SinkAuth::Basic { user, password } => {
                if !scheme.eq_ignore_ascii_case("basic") {
                    return false;
                }
                let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(value.trim())
                else {
                    return false;
                };
                let expected = format!("{user}:{}", password.expose_secret());
                decoded == expected.as_bytes()
            }
        }
    }

    /// The `WWW-Authenticate` challenge sent with a 401.
    pub fn challenge(&self) -> Option<&'static str> {
        match self {
            SinkAuth::None => None,
            SinkAuth::Bearer(_) => Some("Bearer realm=\"crm-sink\""),
            SinkAuth::Basic { .. } => Some("Basic realm=\"crm-sink\""),
            SinkAuth::Hmac(_) => None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms_and_hides_secrets() {
        assert!(matches!("none".parse::<SinkAuth>(), Ok(SinkAuth::None)));
        let bearer: SinkAuth = "bearer:s3cret".parse().unwrap();
        assert_eq!(format!("{bearer:?}"), "Bearer(***)");
        let basic: SinkAuth = "basic:crm:pa:ss".parse().unwrap();
        assert_eq!(format!("{basic:?}"), "Basic(crm:***)");
        assert_eq!(
            "token".parse::<SinkAuth>().unwrap_err(),
            SinkAuthError::UnknownScheme
        );
        assert_eq!(
            "bearer:".parse::<SinkAuth>().unwrap_err(),
            SinkAuthError::EmptyToken
        );
        assert_eq!(
            "basic::pw".parse::<SinkAuth>().unwrap_err(),
            SinkAuthError::EmptyUser
        );
    }

    #[test]
    fn checks_the_authorization_header() {
        let bearer: SinkAuth = "bearer:s3cret".parse().unwrap();
        assert!(bearer.permits(Some("Bearer s3cret")));
        assert!(bearer.permits(Some("bearer s3cret")));
        assert!(!bearer.permits(Some("Bearer wrong")));
        assert!(!bearer.permits(None));
        let basic: SinkAuth = "basic:crm:pa:ss".parse().unwrap();
        let good = base64::engine::general_purpose::STANDARD.encode("crm:pa:ss");
        assert!(basic.permits(Some(&format!("Basic {good}"))));
        assert!(!basic.permits(Some("Basic !!!")));
        assert!(!basic.permits(Some(&format!("Bearer {good}"))));
        assert!(SinkAuth::None.permits(None));
        assert!(SinkAuth::None.permits(Some("Bearer anything")));
    }

    #[test]
    fn hmac_needs_a_fresh_timestamp_and_the_signature_of_timestamp_dot_body() {
        let auth: SinkAuth = "hmac:k3y".parse().unwrap();
        assert_eq!(format!("{auth:?}"), "Hmac(***)");
        assert_eq!(
            "hmac:".parse::<SinkAuth>().unwrap_err(),
            SinkAuthError::EmptyHmacSecret
        );
        let now = 1_700_000_000;
        let signed = |at: i64, body: &'static [u8]| {
            let timestamp = at.to_string();
            let signature = signing::signature_header_value(b"k3y", &timestamp, body);
            (timestamp, signature)
        };
        let check = |timestamp: &str, signature: &str, body: &[u8]| {
            auth.permits_request(
                &Credentials {
                    authorization: None,
                    timestamp: Some(timestamp),
                    signature: Some(signature),
                    body,
                },
                now,
            )
        };
        let (timestamp, signature) = signed(now - 10, b"{}");
        assert!(check(&timestamp, &signature, b"{}"));
        assert!(!check(&timestamp, &signature, b"{ }"), "another body");
        let (stale, stale_signature) = signed(now - HMAC_MAX_SKEW_SECS - 1, b"{}");
        assert!(
            !check(&stale, &stale_signature, b"{}"),
            "older than 5 minutes"
        );
        let (edge, edge_signature) = signed(now - HMAC_MAX_SKEW_SECS, b"{}");
        assert!(check(&edge, &edge_signature, b"{}"));
        let wrong = signing::signature_header_value(b"other", &timestamp, b"{}");
        assert!(!check(&timestamp, &wrong, b"{}"), "another key");
        assert!(!auth.permits_request(&Credentials::default(), now));
        assert!(!auth.permits(Some("Bearer k3y")));
    }
}
