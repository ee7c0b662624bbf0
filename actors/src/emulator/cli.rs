//! `convoy emulate`: flags, the one JSON start-up line on stdout, serve until SIGINT or
//! SIGTERM. The start-up line deliberately carries the (emulator-only) client secret so a
//! script can log in; nothing else prints it.

use std::net::SocketAddr;
use std::time::Duration;

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
    /// The accepted OAuth client secret.
    #[arg(long, default_value = DEFAULT_CLIENT_SECRET, hide_default_value = true)]
    pub client_secret: String,
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
    let emulator = Emulator::start(args.options()).await?;
    let (queues, users) = {
        let org = lock(&emulator.shared().org);
        (org.queue_ids(), org.user_ids())
    };
    println!(
        "{}",
        serde_json::json!({
            "base_url": emulator.base_url(),
            "client_id": emulator.client_id(),
            "client_secret": emulator.client_secret(),
            "queues": queues,
            "users": users,
        })
    );
    wait_for_shutdown_signal().await?;
    emulator.stop().await;
    Ok(())
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
    fn debug_output_hides_the_client_secret() {
        let args = Command::try_parse_from(["emulate", "--client-secret", "s3cr3t-value"])
            .unwrap()
            .args;
        assert!(!format!("{args:?}").contains("s3cr3t-value"));
        assert!(!format!("{:?}", args.options()).contains("s3cr3t-value"));
    }
}
