//! Logging: `tracing` events to stderr, as text for people or JSON for log shippers.
//!
//! The filter comes from `log.filter`; a non-empty `RUST_LOG` overrides it, so an operator
//! can turn on `debug` for one run without editing the deployment's config. Stdout stays
//! free for command output (`config show`, `inspect`). Text logs are coloured only on a
//! terminal and never when `NO_COLOR` is set: escape codes in a file, a pipe or journald
//! are noise.

use std::ffi::OsStr;
use std::io::IsTerminal;

use convoy::config::{LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

/// The environment variable that overrides `log.filter`.
pub const RUST_LOG: &str = "RUST_LOG";

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("RUST_LOG={directives:?} is not a valid tracing filter: {source}")]
    BadRustLog {
        directives: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("log.filter {directives:?} is not a valid tracing filter: {source}")]
    BadFilter {
        directives: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("a global tracing subscriber is already installed: {0}")]
    AlreadyInstalled(String),
}

/// The environment variable that turns colour off (<https://no-color.org>).
pub const NO_COLOR: &str = "NO_COLOR";

/// Installs the global subscriber. Call once, after the configuration loaded.
pub fn init(config: &LogConfig) -> Result<(), LoggingError> {
    let rust_log = std::env::var(RUST_LOG).ok();
    let filter = choose_filter(rust_log.as_deref(), &config.filter)?;
    let colour = use_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os(NO_COLOR).as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let installed = match config.format {
        LogFormat::Text => builder.try_init(),
        // Event fields at the top level of each JSON object: what log shippers index.
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|error| LoggingError::AlreadyInstalled(error.to_string()))
}

/// Colour only on a terminal, and not when `NO_COLOR` is set to anything non-empty.
pub fn use_colour(stderr_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(OsStr::is_empty)
}

/// `RUST_LOG` when set and non-empty, else the configured filter.
pub fn choose_filter(rust_log: Option<&str>, configured: &str) -> Result<EnvFilter, LoggingError> {
    match rust_log
        .map(str::trim)
        .filter(|directives| !directives.is_empty())
    {
        Some(directives) => {
            EnvFilter::try_new(directives).map_err(|source| LoggingError::BadRustLog {
                directives: directives.to_owned(),
                source,
            })
        }
        None => EnvFilter::try_new(configured).map_err(|source| LoggingError::BadFilter {
            directives: configured.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_overrides_the_configured_filter() {
        let filter = choose_filter(Some("convoy=trace"), "info").unwrap();
        assert_eq!(filter.to_string(), "convoy=trace");
    }

    #[test]
    fn an_empty_rust_log_leaves_the_configured_filter() {
        let filter = choose_filter(Some("  "), "warn,convoy=debug").unwrap();
        // EnvFilter prints the most specific directives first.
        assert_eq!(filter.to_string(), "convoy=debug,warn");
        assert_eq!(choose_filter(None, "info").unwrap().to_string(), "info");
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some(OsStr::new(""))));
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(!use_colour(false, None));
    }

    #[test]
    fn a_bad_filter_names_where_it_came_from() {
        let from_env = choose_filter(Some("convoy=loud"), "info").unwrap_err();
        assert!(from_env.to_string().starts_with("RUST_LOG="), "{from_env}");
        let from_config = choose_filter(None, "convoy=loud").unwrap_err();
        assert!(
            from_config.to_string().starts_with("log.filter"),
            "{from_config}"
        );
    }
}
