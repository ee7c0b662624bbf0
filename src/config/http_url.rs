//! Just enough URL checking for configuration: `http(s)://host[:port][/path]`.
//!
//! Hand-written rather than the `url` crate, whose IDNA tables would add some thirty
//! crates to the pure core for three config keys. It checks shape only and never
//! resolves anything.

/// The parts of an http(s) URL that configuration cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpUrl<'a> {
    /// True for `http://`, false for `https://`.
    pub(crate) plain_http: bool,
    /// The host as written, without brackets for IPv6.
    pub(crate) host: &'a str,
    /// Everything after the authority: path, query, fragment (may be empty).
    pub(crate) rest: &'a str,
}

impl HttpUrl<'_> {
    /// True when there is nothing after the host and port but an optional `/`.
    pub(crate) fn is_origin(&self) -> bool {
        self.rest.is_empty() || self.rest == "/"
    }

    /// True when the host is this machine: `localhost`, `127.0.0.0/8` or `::1`. Traffic
    /// to it never crosses a network, so plain http there exposes nothing.
    pub(crate) fn is_loopback(&self) -> bool {
        if self.host.eq_ignore_ascii_case("localhost") {
            return true;
        }
        self.host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
    }
}

/// Why a text is not an http(s) URL. The messages never quote the text: it may carry
/// credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UrlError {
    NotHttp,
    HasCredentials,
    NoHost,
    BadHost,
    BadPort,
    Whitespace,
}

impl UrlError {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            UrlError::NotHttp => "must be an http:// or https:// URL",
            UrlError::HasCredentials => "must not carry credentials; use crm.auth and its keys",
            UrlError::NoHost => "has no host",
            UrlError::BadHost => "has an invalid host",
            UrlError::BadPort => "has an invalid port (expected 1..=65535)",
            UrlError::Whitespace => "must not contain whitespace",
        }
    }
}

pub(crate) fn parse_http_url(text: &str) -> Result<HttpUrl<'_>, UrlError> {
    if text.chars().any(char::is_whitespace) {
        return Err(UrlError::Whitespace);
    }
    let (scheme, after) = text.split_once("://").ok_or(UrlError::NotHttp)?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(UrlError::NotHttp);
    }
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    if authority.contains('@') {
        return Err(UrlError::HasCredentials);
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (inside, after_bracket) = bracketed.split_once(']').ok_or(UrlError::BadHost)?;
        let ipv6 = !inside.is_empty()
            && inside
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
        if !ipv6 {
            return Err(UrlError::BadHost);
        }
        match after_bracket {
            "" => (inside, None),
            other => (
                inside,
                Some(other.strip_prefix(':').ok_or(UrlError::BadHost)?),
            ),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(UrlError::NoHost);
    }
    let host_ok = authority.starts_with('[')
        || host.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !host_ok {
        return Err(UrlError::BadHost);
    }
    if let Some(port) = port {
        let valid = !port.is_empty()
            && port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u32>().is_ok_and(|n| (1..=65_535).contains(&n));
        if !valid {
            return Err(UrlError::BadPort);
        }
    }
    Ok(HttpUrl {
        plain_http: scheme.eq_ignore_ascii_case("http"),
        host,
        rest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_endpoints_parse() {
        let emulator = parse_http_url("http://127.0.0.1:18080");
        assert_eq!(emulator.map(|u| u.is_origin()), Ok(true));
        assert_eq!(
            parse_http_url("https://api.mypurecloud.ie/").map(|u| u.is_origin()),
            Ok(true)
        );
        assert_eq!(parse_http_url("http://[::1]:8080").map(|u| u.rest), Ok(""));
        let endpoint = parse_http_url("https://crm.example.com/api/in?x=1");
        assert_eq!(
            endpoint.map(|u| (u.is_origin(), u.rest)),
            Ok((false, "/api/in?x=1"))
        );
    }

    #[test]
    fn loopback_hosts_are_told_apart_from_the_network() {
        for text in [
            "http://127.0.0.1:18080",
            "http://127.5.6.7",
            "http://localhost:8080/in",
            "http://LocalHost",
            "http://[::1]:8080",
        ] {
            let url = parse_http_url(text);
            assert_eq!(
                url.map(|u| (u.plain_http, u.is_loopback())),
                Ok((true, true)),
                "{text}"
            );
        }
        for text in [
            "http://crm.example.com",
            "http://10.0.0.1:8080",
            "http://128.0.0.1",
            "http://localhost.example.com",
            "http://[::2]",
            "http://0.0.0.0:80",
        ] {
            let url = parse_http_url(text);
            assert_eq!(
                url.map(|u| (u.plain_http, u.is_loopback())),
                Ok((true, false)),
                "{text}"
            );
        }
        assert_eq!(
            parse_http_url("HTTPS://api.mypurecloud.ie").map(|u| u.plain_http),
            Ok(false)
        );
    }

    #[test]
    fn malformed_urls_are_refused_with_a_reason() {
        for (text, error) in [
            ("ftp://host", UrlError::NotHttp),
            ("api.mypurecloud.ie", UrlError::NotHttp),
            ("https://user:pw@host", UrlError::HasCredentials),
            ("https://", UrlError::NoHost),
            ("https://:8080", UrlError::NoHost),
            ("https://ho st", UrlError::Whitespace),
            ("https://host_name", UrlError::BadHost),
            ("https://host..com", UrlError::BadHost),
            ("http://[zz]:1", UrlError::BadHost),
            ("http://127.0.0.1:0", UrlError::BadPort),
            ("http://127.0.0.1:70000", UrlError::BadPort),
            ("http://127.0.0.1:", UrlError::BadPort),
        ] {
            assert_eq!(parse_http_url(text), Err(error), "{text}");
        }
    }
}
