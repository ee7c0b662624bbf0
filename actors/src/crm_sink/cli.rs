//! `convoy crm-sink`: flags, start-up line, serve until SIGINT/SIGTERM. With
//! `--write-config FILE` it also points a Convoy configuration at itself: it sets (adds or
//! replaces) `[crm] endpoint` in FILE — typically the one `convoy emulate --write-config`
//! wrote — keeping every other line, so the two test servers compose without editing
//! TOML by hand.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;

use convoy::crm::config_file::with_crm_endpoint;

use super::{CrmSink, CrmSinkOptions, FaultSettings, SinkAuth};

/// Run a CRM test server: records what it receives, de-duplicates, injects faults.
#[derive(Debug, Clone, clap::Args)]
pub struct CrmSinkArgs {
    /// Address to listen on; port 0 picks a free port (printed on start).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Credentials required on the contract routes: none, bearer:TOKEN, basic:USER:PASS or
    /// hmac:SECRET (X-Convoy-Signature over X-Convoy-Timestamp.body, at most 5 min old).
    #[arg(
        long,
        default_value = "none",
        env = "CONVOY_CRM_SINK_AUTH",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub auth: SinkAuth,
    /// File holding the --auth value (surrounding whitespace trimmed), so the credential
    /// stays off the command line, which every user of the machine can see (`ps`).
    #[arg(
        long,
        env = "CONVOY_CRM_SINK_AUTH_FILE",
        conflicts_with = "auth",
        value_name = "FILE"
    )]
    pub auth_file: Option<std::path::PathBuf>,
    /// Seed of the fault decisions.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Share of contract requests answered 500/503.
    #[arg(long, default_value_t = 0.0)]
    pub error_ratio: f64,
    /// Share of contract requests answered 429 with Retry-After.
    #[arg(long, default_value_t = 0.0)]
    pub rate_limit_ratio: f64,
    /// Retry-After seconds on injected 429s.
    #[arg(long, default_value_t = 1)]
    pub retry_after: u64,
    /// Milliseconds added to every contract request.
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    /// Share of contract requests whose connection is dropped without a response.
    #[arg(long, default_value_t = 0.0)]
    pub reset_ratio: f64,
    /// Share of contract requests handled (records stored) and then dropped without a
    /// response: the client cannot know they were delivered.
    #[arg(long, default_value_t = 0.0)]
    pub reset_after_store_ratio: f64,
    /// Share of records refused one by one: batches are answered 207 with per-record
    /// results, refused records are not stored (the same id is always refused).
    #[arg(long, default_value_t = 0.0)]
    pub reject_ratio: f64,
    /// Most records accepted in one batch (413 above).
    #[arg(long, default_value_t = 1000)]
    pub max_batch: usize,
    /// Answer 428 to PUT /conversations/{id} without If-Match or If-None-Match.
    #[arg(long)]
    pub require_precondition: bool,
    /// Set `[crm] endpoint` to this sink's URL in this Convoy configuration file (e.g. the
    /// one `convoy emulate --write-config` wrote), keeping everything else; created if
    /// missing. Credentials (`--auth`) are not written.
    #[arg(long, value_name = "FILE")]
    pub write_config: Option<PathBuf>,
}

impl CrmSinkArgs {
    /// What is wrong with the flags beyond what clap checks (ratios outside 0..=1 or
    /// adding up past 1): a usage error, reported before anything starts.
    pub fn check(&self) -> Result<(), String> {
        self.auth()?;
        if !(0.0..=1.0).contains(&self.reject_ratio) {
            return Err(format!(
                "--reject-ratio must be between 0 and 1, got {}",
                self.reject_ratio
            ));
        }
        self.options()?
            .faults
            .validate()
            .map_err(|problem| problem.to_string())
    }

    /// `--auth`, or the content of `--auth-file`.
    pub fn auth(&self) -> Result<SinkAuth, String> {
        let Some(path) = &self.auth_file else {
            return Ok(self.auth.clone());
        };
        let text = crate::config_load::read_secret_file(path)
            .map_err(|error| format!("--auth-file: {error}"))?;
        text.expose_secret()
            .parse()
            .map_err(|error| format!("--auth-file {}: {error}", path.display()))
    }

    pub fn options(&self) -> Result<CrmSinkOptions, String> {
        Ok(CrmSinkOptions {
            listen: self.listen,
            auth: self.auth()?,
            faults: FaultSettings {
                error_ratio: self.error_ratio,
                rate_limit_ratio: self.rate_limit_ratio,
                retry_after_secs: self.retry_after,
                delay_ms: self.delay_ms,
                reset_ratio: self.reset_ratio,
                reset_after_store_ratio: self.reset_after_store_ratio,
            },
            seed: self.seed,
            reject_ratio: self.reject_ratio,
            max_batch: self.max_batch,
            require_precondition: self.require_precondition,
        })
    }
}

/// Starts the sink, prints `{"base_url": ...}` as one line on stdout, serves until SIGINT
/// or SIGTERM.
pub async fn run(args: CrmSinkArgs) -> anyhow::Result<()> {
    let options = args.options().map_err(anyhow::Error::msg)?;
    let sink = CrmSink::start(options)
        .await
        .with_context(|| format!("cannot serve the CRM sink on {}", args.listen))?;
    if let Some(path) = &args.write_config {
        if let Err(error) = write_endpoint(path, &sink.base_url()) {
            sink.stop().await;
            return Err(error);
        }
    }
    let line = serde_json::json!({
        "base_url": sink.base_url(),
        "config_file": args.write_config,
    });
    // A closed stdout (nobody reads the line) does not stop the sink.
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
    drop(stdout);
    wait_for_shutdown_signal().await?;
    sink.stop().await;
    Ok(())
}

/// Sets `[crm] endpoint` in the file at `path` (created if missing); written to a
/// temporary file beside it and renamed, so a reader never sees half a file.
fn write_endpoint(path: &Path, endpoint: &str) -> anyhow::Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
    };
    let edited = with_crm_endpoint(&text, endpoint)
        .with_context(|| format!("cannot set crm.endpoint in {}", path.display()))?;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".crm-sink.tmp");
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, edited)
        .and_then(|()| std::fs::rename(&temporary, path))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Resolves on SIGINT or (on Unix) SIGTERM.
pub(crate) async fn wait_for_shutdown_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut sigterm =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let interrupt = Box::pin(tokio::signal::ctrl_c());
        let terminate = Box::pin(sigterm.recv());
        let result = match futures_util::future::select(interrupt, terminate).await {
            futures_util::future::Either::Left((result, _)) => result,
            futures_util::future::Either::Right(_) => Ok(()),
        };
        result
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Command {
        #[command(flatten)]
        args: CrmSinkArgs,
    }

    #[test]
    fn flags_become_options_and_secrets_stay_hidden() {
        let command = Command::try_parse_from([
            "crm-sink",
            "--auth",
            "bearer:t0ken",
            "--error-ratio",
            "0.1",
            "--rate-limit-ratio",
            "0.2",
            "--retry-after",
            "4",
            "--reset-ratio",
            "0.05",
            "--delay-ms",
            "20",
            "--seed",
            "9",
            "--require-precondition",
            "--reset-after-store-ratio",
            "0.1",
            "--reject-ratio",
            "0.25",
        ])
        .unwrap();
        assert!(!format!("{command:?}").contains("t0ken"));
        let options = command.args.options().unwrap();
        assert_eq!(options.listen.port(), 0);
        assert_eq!(options.faults.retry_after_secs, 4);
        assert_eq!(options.faults.delay_ms, 20);
        assert_eq!(options.seed, 9);
        assert!(options.require_precondition);
        assert_eq!(options.faults.reset_after_store_ratio, 0.1);
        assert_eq!(options.reject_ratio, 0.25);
        assert!(options.auth.permits(Some("Bearer t0ken")));
    }

    #[test]
    fn ratios_outside_zero_to_one_are_usage_errors() {
        let parse = |flags: &[&str]| {
            let mut argv = vec!["crm-sink"];
            argv.extend_from_slice(flags);
            Command::try_parse_from(argv).unwrap().args
        };
        assert!(parse(&["--error-ratio", "2"]).check().is_err());
        assert!(parse(&["--error-ratio", "0.6", "--reset-ratio", "0.6"])
            .check()
            .is_err());
        assert!(parse(&["--error-ratio", "0.5"]).check().is_ok());
        assert!(parse(&["--reject-ratio", "1.5"]).check().is_err());
        assert!(parse(&["--reject-ratio", "1"]).check().is_ok());
    }

    #[test]
    fn the_credential_can_come_from_a_file_instead_of_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth");
        std::fs::write(&path, "basic:convoy:pa55word\n").unwrap();
        let path_text = path.to_str().unwrap();
        let command = Command::try_parse_from(["crm-sink", "--auth-file", path_text]).unwrap();
        let auth = command.args.options().unwrap().auth;
        // base64("convoy:pa55word")
        assert!(auth.permits(Some("Basic Y29udm95OnBhNTV3b3Jk")));
        assert!(!auth.permits(None));

        std::fs::write(&path, "token:x").unwrap();
        let command = Command::try_parse_from(["crm-sink", "--auth-file", path_text]).unwrap();
        let refused = command.args.check().unwrap_err();
        assert!(
            refused.contains("--auth-file") && !refused.contains("token:x"),
            "{refused}"
        );
        assert!(
            Command::try_parse_from(["crm-sink", "--auth", "none", "--auth-file", path_text])
                .is_err()
        );
    }

    #[test]
    fn a_bad_auth_value_is_refused() {
        assert!(Command::try_parse_from(["crm-sink", "--auth", "token:x"]).is_err());
    }
}
