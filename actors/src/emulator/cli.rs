//! `convoy emulate`: flags, the one JSON start-up line on stdout, serve until SIGINT or
//! SIGTERM. The start-up line deliberately carries the (emulator-only) client secret so a
//! script can log in; nothing else prints it. `--write-config FILE` writes a ready Convoy
//! configuration for the org being served (its secret in a file beside it), so
//! `convoy run --config FILE` follows the emulator with nothing to copy by hand.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use convoy::emulator::org::OrgOptions;
use convoy::emulator::platform::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET};

use super::{lock, Emulator, EmulatorOptions};

/// Run a Genesys Cloud emulator: OAuth, /api/v2, Notifications WebSockets, a control API.
#[derive(Clone, clap::Args)]
pub struct EmulateArgs {
    /// Address to listen on; port 0 picks a free port (printed on start).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// The accepted OAuth client id.
    #[arg(long, default_value = DEFAULT_CLIENT_ID)]
    pub client_id: String,
    /// The accepted OAuth client secret (the default is public: it is the emulator's, and
    /// `config/examples/emulator.toml` uses it).
    #[arg(long, default_value = DEFAULT_CLIENT_SECRET)]
    pub client_secret: String,
    /// Write a Convoy configuration for this emulator to FILE (its client secret goes to
    /// FILE's name + `.client-secret`, mode 0600), then `convoy run --config FILE`.
    #[arg(long, value_name = "FILE")]
    pub write_config: Option<PathBuf>,
    /// Access-token lifetime (`expires_in`), e.g. 24h, 10m, 30s.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub token_ttl: Duration,
    /// Channel lifetime from creation or last re-subscription.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub channel_ttl: Duration,
    /// Interval of WebSocket heartbeat frames.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub heartbeat: Duration,
    /// Requests per minute per token on /api/v2 (0: unlimited).
    #[arg(long, default_value_t = 300)]
    pub rate_limit: u32,
    /// Seed of every generated id, token and fault decision.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Give conversations versions (ETag) and answer 409 to a stale If-Match.
    #[arg(long)]
    pub strict_if_match: bool,
    /// Queues of the emulated org.
    #[arg(long, default_value_t = 2)]
    pub queues: usize,
    /// Synthetic agents per queue.
    #[arg(long, default_value_t = 3)]
    pub agents_per_queue: usize,
}

impl std::fmt::Debug for EmulateArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulateArgs")
            .field("listen", &self.listen)
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("write_config", &self.write_config)
            .field("token_ttl", &self.token_ttl)
            .field("channel_ttl", &self.channel_ttl)
            .field("heartbeat", &self.heartbeat)
            .field("rate_limit", &self.rate_limit)
            .field("seed", &self.seed)
            .field("strict_if_match", &self.strict_if_match)
            .field("queues", &self.queues)
            .field("agents_per_queue", &self.agents_per_queue)
            .finish()
    }
}

impl EmulateArgs {
    pub fn options(&self) -> EmulatorOptions {
        EmulatorOptions {
            listen: self.listen,
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            token_ttl: self.token_ttl,
            channel_ttl: self.channel_ttl,
            heartbeat: self.heartbeat,
            socket_outbox: crate::emulator::socket::OUTBOX_CAPACITY,
            rate_limit_per_minute: self.rate_limit,
            seed: self.seed,
            strict_if_match: self.strict_if_match,
            org: OrgOptions {
                seed: self.seed,
                queues: self.queues,
                agents_per_queue: self.agents_per_queue,
                strict_if_match: self.strict_if_match,
                ..OrgOptions::default()
            },
        }
    }
}

/// Starts the emulator, prints
/// `{"base_url", "client_id", "client_secret", "queues": [...], "users": [...]}` as one
/// line on stdout, serves until SIGINT or SIGTERM.
pub async fn run(args: EmulateArgs) -> anyhow::Result<()> {
    let emulator = Emulator::start(args.options())
        .await
        .with_context(|| format!("cannot serve the emulator on {}", args.listen))?;
    let (queues, users) = {
        let org = lock(&emulator.shared().org);
        (org.queue_ids(), org.user_ids())
    };
    if let Some(path) = &args.write_config {
        let written = write_convoy_config(
            path,
            &emulator.base_url(),
            emulator.client_id(),
            emulator.client_secret(),
            &queues,
        );
        if let Err(error) = written {
            emulator.stop().await;
            return Err(error);
        }
    }
    let line = serde_json::json!({
        "base_url": emulator.base_url(),
        "client_id": emulator.client_id(),
        "client_secret": emulator.client_secret(),
        "queues": queues,
        "users": users,
        "config_file": args.write_config,
    });
    // A closed stdout (nobody reads the line) does not stop the emulator.
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
    drop(stdout);
    wait_for_shutdown_signal().await?;
    emulator.stop().await;
    Ok(())
}

/// The file beside `config` that holds the client secret: `convoy.toml` →
/// `convoy.toml.client-secret`.
pub fn secret_file_for(config: &Path) -> PathBuf {
    let mut name = config.file_name().unwrap_or_default().to_os_string();
    name.push(".client-secret");
    config.with_file_name(name)
}

/// A Convoy configuration following every queue of the emulated org; everything not
/// written here keeps `config/default.toml`'s value.
pub fn convoy_config_toml(
    base_url: &str,
    client_id: &str,
    secret_file_name: &str,
    queues: &[String],
) -> String {
    let quoted = |text: &str| serde_json::Value::String(text.to_owned()).to_string();
    let queues: Vec<String> = queues.iter().map(|queue| quoted(queue)).collect();
    format!(
        "# Written by `convoy emulate --write-config` for the emulator at {base_url}.\n\
         # Run Convoy against it (while the emulator runs):\n\
         #   convoy run --config <this file>\n\
         # Everything not set here keeps its built-in default (config/default.toml).\n\
         \n\
         [genesys]\n\
         api_base = {base}\n\
         login_base = {base}\n\
         client_id = {client_id}\n\
         # Relative to this file's directory.\n\
         client_secret_file = {secret}\n\
         queues = [{queues}]\n",
        base = quoted(base_url),
        client_id = quoted(client_id),
        secret = quoted(secret_file_name),
        queues = queues.join(", "),
    )
}

fn write_convoy_config(
    path: &Path,
    base_url: &str,
    client_id: &str,
    client_secret: &str,
    queues: &[String],
) -> anyhow::Result<()> {
    let secret_path = secret_file_for(path);
    let secret_name = secret_path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    write_private(&secret_path, format!("{client_secret}\n").as_bytes())
        .with_context(|| format!("cannot write {}", secret_path.display()))?;
    std::fs::write(
        path,
        convoy_config_toml(base_url, client_id, &secret_name, queues),
    )
    .with_context(|| format!("cannot write {}", path.display()))
}

/// Writes a file only its owner can read (0600 on Unix), also when it existed before.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let file = options.open(path)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        let mut file = file;
        file.write_all(bytes)
    }
    #[cfg(not(unix))]
    {
        options.open(path)?.write_all(bytes)
    }
}

/// Resolves on SIGINT or (on Unix) SIGTERM.
async fn wait_for_shutdown_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            interrupted = tokio::signal::ctrl_c() => interrupted,
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        args: EmulateArgs,
    }

    #[test]
    fn defaults_match_the_emulator_defaults() {
        let args = Command::try_parse_from(["emulate"]).unwrap().args;
        let options = args.options();
        let defaults = EmulatorOptions::default();
        assert_eq!(options.listen, defaults.listen);
        assert_eq!(options.client_id, defaults.client_id);
        assert_eq!(options.client_secret, defaults.client_secret);
        assert_eq!(options.token_ttl, defaults.token_ttl);
        assert_eq!(options.channel_ttl, defaults.channel_ttl);
        assert_eq!(options.heartbeat, defaults.heartbeat);
        assert_eq!(options.rate_limit_per_minute, 300);
        assert_eq!(options.org.queues, 2);
        assert_eq!(options.org.agents_per_queue, 3);
    }

    #[test]
    fn durations_are_human_readable() {
        let args = Command::try_parse_from([
            "emulate",
            "--token-ttl",
            "10m",
            "--channel-ttl",
            "1h 30m",
            "--heartbeat",
            "250ms",
            "--seed",
            "9",
            "--strict-if-match",
        ])
        .unwrap()
        .args;
        assert_eq!(args.token_ttl, Duration::from_secs(600));
        assert_eq!(args.channel_ttl, Duration::from_secs(5400));
        assert_eq!(args.heartbeat, Duration::from_millis(250));
        let options = args.options();
        assert_eq!(options.org.seed, 9);
        assert!(options.org.strict_if_match);
        assert!(Command::try_parse_from(["emulate", "--heartbeat", "soon"]).is_err());
    }

    #[test]
    fn the_written_config_follows_every_queue_and_keeps_the_secret_out() {
        let queues = vec!["q-1".to_owned(), "q-2".to_owned()];
        let text = convoy_config_toml(
            "http://127.0.0.1:5",
            DEFAULT_CLIENT_ID,
            "convoy.toml.client-secret",
            &queues,
        );
        let tree: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(
            tree["genesys"]["api_base"].as_str(),
            Some("http://127.0.0.1:5")
        );
        assert_eq!(
            tree["genesys"]["login_base"].as_str(),
            Some("http://127.0.0.1:5")
        );
        assert_eq!(
            tree["genesys"]["client_id"].as_str(),
            Some(DEFAULT_CLIENT_ID)
        );
        assert_eq!(
            tree["genesys"]["client_secret_file"].as_str(),
            Some("convoy.toml.client-secret")
        );
        assert_eq!(tree["genesys"]["queues"].as_array().map(Vec::len), Some(2));
        assert!(!text.contains(DEFAULT_CLIENT_SECRET));
        assert_eq!(
            secret_file_for(Path::new("/etc/convoy/convoy.toml")),
            Path::new("/etc/convoy/convoy.toml.client-secret")
        );
    }

    /// `config/examples/emulator.toml` works against `convoy emulate` at its defaults
    /// (only the port differs): the same client, the same secret, queues of its org.
    #[actix_rt::test]
    async fn the_shipped_example_matches_the_emulator_defaults() {
        let example: toml::Value =
            toml::from_str(include_str!("../../../config/examples/emulator.toml")).unwrap();
        let genesys = &example["genesys"];
        assert_eq!(genesys["client_id"].as_str(), Some(DEFAULT_CLIENT_ID));
        assert_eq!(
            genesys["client_secret"].as_str(),
            Some(DEFAULT_CLIENT_SECRET)
        );
        let args = Command::try_parse_from(["emulate"]).unwrap().args;
        let emulator = Emulator::start(args.options()).await.unwrap();
        let org_queues = emulator.queue_ids();
        emulator.stop().await;
        let example_queues: Vec<&str> = genesys["queues"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(toml::Value::as_str)
            .collect();
        assert_eq!(example_queues, org_queues);
    }

    #[test]
    fn debug_output_hides_the_client_secret() {
        let args = Command::try_parse_from(["emulate", "--client-secret", "s3cr3t-value"])
            .unwrap()
            .args;
        assert!(!format!("{args:?}").contains("s3cr3t-value"));
        assert!(!format!("{:?}", args.options()).contains("s3cr3t-value"));
    }
}
