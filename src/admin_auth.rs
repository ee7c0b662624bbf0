//! Who may use the admin API: the decision of its optional bearer-token check.
//!
//! With `admin.token` set, every route but the health probes needs `Authorization: Bearer
//! <token>`: `/conversations` shows customer names and attachment URLs, `/metrics` the
//! shape of the traffic, `/outbox/retry-dead` writes. The probes stay open because load
//! balancers and service managers call them without credentials and they reveal nothing.
//! Without a token the API is open, which is why it listens on loopback by default.

use sha2::{Digest, Sha256};

use crate::config::Secret;

/// Paths answered without a token, whatever `admin.token` says.
pub const OPEN_PATHS: &[&str] = &["/healthz", "/readyz"];

/// The verdict on one admin request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminAccess {
    /// Serve it.
    Allowed,
    /// Answer 401 with `WWW-Authenticate: Bearer`.
    Refused,
}

/// Whether a request for `path` carrying `authorization` (the header's value, if any) may
/// be served when the admin token is `token`.
pub fn admin_access(
    path: &str,
    authorization: Option<&str>,
    token: Option<&Secret<String>>,
) -> AdminAccess {
    let Some(token) = token else {
        return AdminAccess::Allowed;
    };
    if OPEN_PATHS.contains(&path) {
        return AdminAccess::Allowed;
    }
    let offered = authorization.and_then(|value| {
        let (scheme, credentials) = value.trim().split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| credentials.trim())
    });
    match offered {
        Some(offered) if same_secret(offered, token.expose_secret()) => AdminAccess::Allowed,
        _ => AdminAccess::Refused,
    }
}

/// Compares digests rather than the texts, byte by byte without an early exit, so the time
/// a refusal takes says nothing about how much of the token was right (nor its length).
fn same_secret(offered: &str, expected: &str) -> bool {
    let offered = Sha256::digest(offered.as_bytes());
    let expected = Sha256::digest(expected.as_bytes());
    offered
        .iter()
        .zip(expected.iter())
        .fold(0u8, |difference, (a, b)| difference | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> Secret<String> {
        Secret::new("adm1n-t0ken".to_owned())
    }

    #[test]
    fn without_a_token_everything_is_open() {
        for path in [
            "/metrics",
            "/conversations",
            "/outbox/retry-dead",
            "/healthz",
        ] {
            assert_eq!(
                admin_access(path, None, None),
                AdminAccess::Allowed,
                "{path}"
            );
        }
    }

    #[test]
    fn with_a_token_only_the_probes_are_open() {
        let token = token();
        for path in OPEN_PATHS {
            assert_eq!(admin_access(path, None, Some(&token)), AdminAccess::Allowed);
        }
        for path in ["/metrics", "/conversations", "/conversations/x", "/outbox"] {
            assert_eq!(
                admin_access(path, None, Some(&token)),
                AdminAccess::Refused,
                "{path}"
            );
            assert_eq!(
                admin_access(path, Some("Bearer adm1n-t0ken"), Some(&token)),
                AdminAccess::Allowed,
                "{path}"
            );
        }
    }

    #[test]
    fn only_the_exact_token_as_a_bearer_credential_is_accepted() {
        let token = token();
        for header in [
            "Bearer adm1n-t0ke",
            "Bearer adm1n-t0ken2",
            "Bearer ",
            "Basic adm1n-t0ken",
            "adm1n-t0ken",
            "",
        ] {
            assert_eq!(
                admin_access("/metrics", Some(header), Some(&token)),
                AdminAccess::Refused,
                "{header:?}"
            );
        }
        assert_eq!(
            admin_access("/metrics", Some("bearer  adm1n-t0ken "), Some(&token)),
            AdminAccess::Allowed
        );
    }
}
