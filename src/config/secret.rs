//! `Secret<T>`: a value that never prints.
//!
//! `Debug` and `Display` both write `***`, so a secret survives `{:?}` of the whole
//! `Config`, of an error, or of a tracing field. The only way to the value is the explicit
//! [`Secret::expose_secret`], which is easy to find in review.

use std::fmt;

/// What every redacted value prints as.
pub const REDACTED: &str = "***";

/// A credential (client secret, CRM token, password, HMAC key).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The value itself. Call it only where the credential is sent (an `Authorization`
    /// header, an HMAC computation), never to log or display.
    pub fn expose_secret(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let secret = Secret::new("hunter2".to_owned());
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(format!("{:#?}", Some(&secret)), "Some(\n    ***,\n)");
        assert_eq!(secret.expose_secret(), "hunter2");
    }
}
