//! Credentials the CRM sink demands on its contract routes: none, a bearer token, or HTTP
//! Basic. Written `none`, `bearer:TOKEN` or `basic:USER:PASS` on the command line. The
//! secret parts never appear in `Debug` output.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use convoy::config::Secret;

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
}

impl fmt::Debug for SinkAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkAuth::None => f.write_str("None"),
            SinkAuth::Bearer(_) => f.write_str("Bearer(***)"),
            SinkAuth::Basic { user, .. } => write!(f, "Basic({user}:***)"),
        }
    }
}

/// Why an `--auth` value was refused. Never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkAuthError {
    #[error("expected none, bearer:TOKEN or basic:USER:PASS")]
    UnknownScheme,
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
        Err(SinkAuthError::UnknownScheme)
    }
}

impl SinkAuth {
    /// Whether an `Authorization` header value (or its absence) satisfies this policy.
    pub fn permits(&self, authorization: Option<&str>) -> bool {
        let Some((scheme, value)) = authorization.and_then(|header| header.trim().split_once(' '))
        else {
            return matches!(self, SinkAuth::None);
        };
        match self {
            SinkAuth::None => true,
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
}
