//! `convoy simulate`: flags, the start notice, the progress bar, the summary, and the
//! expected-outcomes file.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use convoy::config::Secret;
use convoy::duration::parse_duration;
use convoy::emulator::platform::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET};
use convoy::simulator::{Scenario, SlaThresholds};

use super::{Simulator, SimulatorOptions, Target};

/// Drive simulated conversations through the emulator (both sides) or a real org (customer
/// side, agentless sends and receipts only).
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// API base URL, e.g. the emulator's `base_url`.
    #[arg(long)]
    pub base_url: String,
    /// Token base URL (`https://login.<region>`); default: the base URL.
    #[arg(long)]
    pub login_url: Option<String>,
    /// OAuth client id (client credentials); default with --target emulator: the
    /// emulator's default client.
    #[arg(long, env = "CONVOY_SIM_CLIENT_ID")]
    pub client_id: Option<String>,
    /// OAuth client secret; default with --target emulator: the emulator's default secret.
    #[arg(long, env = "CONVOY_SIM_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<Secret<String>>,
    /// Conversations to run.
    #[arg(long, default_value_t = 20)]
    pub conversations: usize,
    /// Conversations in flight at once.
    #[arg(long, default_value_t = 10)]
    pub concurrency: usize,
    /// Conversations started per second (0: as fast as concurrency allows).
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Seed of the plan: same seed, same conversations.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Scenario file (TOML); default: a built-in mix.
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// Write the expected outcomes (JSON) to this file.
    #[arg(long)]
    pub expect_out: Option<PathBuf>,
    /// What the base URL is.
    #[arg(long, value_enum, default_value_t = Target::Emulator)]
    pub target: Target,
    /// Open-messaging integration id (required with --target genesys).
    #[arg(long)]
    pub integration_id: Option<String>,
    /// `fromAddress` of agentless sends (default: the integration id).
    #[arg(long)]
    pub from_address: Option<String>,
    /// Delivery SLA the expected breaches are computed for, e.g. 30s.
    #[arg(long, value_parser = parse_duration)]
    pub sla_delivery: Option<Duration>,
    /// Read SLA (from the send) the expected breaches are computed for, e.g. 5m.
    #[arg(long, value_parser = parse_duration)]
    pub sla_read: Option<Duration>,
    /// How often a conversation is read while waiting for agent replies
    /// (default: 100ms against the emulator, 2s against Genesys, whose rate limit is
    /// 300 requests per minute per token).
    #[arg(long, value_parser = parse_duration)]
    pub poll_interval: Option<Duration>,
    /// Retries per REST call (429, 5xx, connection failures).
    #[arg(long, default_value_t = 5)]
    pub max_retries: u32,
    /// Print the report as JSON on stdout instead of the text summary.
    #[arg(long)]
    pub json: bool,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl SimulateArgs {
    /// The run's options (reads the scenario file).
    pub fn options(&self) -> anyhow::Result<SimulatorOptions> {
        let scenario = match &self.scenario {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading scenario {}", path.display()))?;
                Scenario::from_toml(&text)
                    .with_context(|| format!("scenario {}", path.display()))?
            }
            None => Scenario::default(),
        };
        let (client_id, client_secret) = match (&self.client_id, &self.client_secret) {
            (Some(id), Some(secret)) => (id.clone(), secret.expose_secret().clone()),
            (None, None) if self.target == Target::Emulator => (
                DEFAULT_CLIENT_ID.to_owned(),
                DEFAULT_CLIENT_SECRET.to_owned(),
            ),
            _ => anyhow::bail!(
                "give both --client-id and --client-secret (they default to the emulator's only with --target emulator)"
            ),
        };
        let mut options = SimulatorOptions::new(&self.base_url, &client_id, &client_secret);
        options.login_url = self.login_url.clone();
        options.target = self.target;
        options.scenario = scenario;
        options.conversations = self.conversations;
        options.concurrency = self.concurrency;
        options.rate_per_second = (self.rate > 0.0).then_some(self.rate);
        options.seed = self.seed;
        options.sla = SlaThresholds {
            delivery_ms: self.sla_delivery.map(millis),
            read_ms: self.sla_read.map(millis),
        };
        options.integration_id = self.integration_id.clone();
        options.from_address = self.from_address.clone();
        options.poll_interval = self.poll_interval.unwrap_or(match self.target {
            Target::Emulator => Duration::from_millis(100),
            Target::Genesys => Duration::from_secs(2),
        });
        options.max_retries = self.max_retries;
        options.progress = std::io::stderr().is_terminal();
        Ok(options)
    }
}

/// Runs the simulation: notice on stderr (Genesys), progress bar on stderr (terminal
/// only), summary on stdout, expected outcomes to `--expect-out`. Fails when a
/// conversation failed, after printing the summary.
pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let options = args.options()?;
    if options.target == Target::Genesys {
        eprintln!(
            "simulate: target is a real Genesys Cloud org; playing only what its API allows: \
             the customer side through open-messaging integration {}, agentless sends, and \
             receipts. Agents, routing and outcomes are the org's own, so expected outcomes \
             cover messages and receipts, not who answers.",
            options.integration_id.as_deref().unwrap_or("(none given)")
        );
    }
    let simulator = Simulator::new(options);
    let report = simulator.run().await?;
    if let Some(path) = &args.expect_out {
        let json = serde_json::to_string_pretty(&report.expected)?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("writing expected outcomes to {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{report}");
    }
    if report.conversations_failed > 0 {
        anyhow::bail!(
            "{} of {} conversations failed",
            report.conversations_failed,
            report.conversations_planned
        );
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Command {
        #[command(flatten)]
        args: SimulateArgs,
    }

    fn parse(args: &[&str]) -> Result<SimulateArgs, clap::Error> {
        let mut argv = vec!["simulate"];
        argv.extend_from_slice(args);
        Command::try_parse_from(argv).map(|command| command.args)
    }

    #[test]
    fn emulator_runs_default_to_the_emulator_credentials() {
        let args = parse(&["--base-url", "http://127.0.0.1:1", "--sla-delivery", "30s"]).unwrap();
        let options = args.options().unwrap();
        assert_eq!(options.client_id, DEFAULT_CLIENT_ID);
        assert_eq!(options.target, Target::Emulator);
        assert_eq!(options.sla.delivery_ms, Some(30_000));
        assert_eq!(options.poll_interval, Duration::from_millis(100));
    }

    #[test]
    fn genesys_runs_need_credentials_and_poll_slowly() {
        let args = parse(&["--base-url", "https://api.example", "--target", "genesys"]).unwrap();
        assert!(args.options().is_err());
        let args = parse(&[
            "--base-url",
            "https://api.example",
            "--target",
            "genesys",
            "--client-id",
            "id",
            "--client-secret",
            "s3cret",
            "--rate",
            "0",
        ])
        .unwrap();
        assert!(!format!("{args:?}").contains("s3cret"));
        let options = args.options().unwrap();
        assert_eq!(options.poll_interval, Duration::from_secs(2));
        assert_eq!(options.rate_per_second, None);
        assert!(!format!("{options:?}").contains("s3cret"));
    }

    #[test]
    fn sla_durations_need_a_unit() {
        assert!(parse(&["--base-url", "http://x", "--sla-read", "30"]).is_err());
    }

    #[test]
    fn a_bad_scenario_file_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[[shapes]]\nname='a'\nkind='inbound'\nweight=0\n").unwrap();
        let args = parse(&[
            "--base-url",
            "http://x",
            "--scenario",
            path.to_str().unwrap(),
        ])
        .unwrap();
        let error = format!("{:#}", args.options().unwrap_err());
        assert!(error.contains("bad.toml"), "{error}");
        assert!(error.contains("shapes"), "{error}");
    }
}
