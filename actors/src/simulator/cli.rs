//! `convoy simulate`: flags, the start notice, the progress bar, the summary, the
//! expected-outcomes file, and the exit code: 0 when every conversation played as planned
//! and no error was reported, 1 when the run reported errors or could not run, 2 when the
//! command line or the scenario is invalid (the README's exit-code table).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context};
use convoy::config::Secret;
use convoy::duration::parse_duration;
use convoy::emulator::platform::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET};
use convoy::simulator::{Scenario, SlaThresholds};

use super::{SimulationReport, Simulator, SimulatorOptions, Target};

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
    /// Prefer the environment or --client-secret-file: a command line is visible to every
    /// user of the machine (`ps`).
    #[arg(long, env = "CONVOY_SIM_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<Secret<String>>,
    /// File holding the OAuth client secret (surrounding whitespace trimmed).
    #[arg(
        long,
        env = "CONVOY_SIM_CLIENT_SECRET_FILE",
        conflicts_with = "client_secret"
    )]
    pub client_secret_file: Option<PathBuf>,
    /// Conversations to run.
    #[arg(long, default_value_t = 20)]
    pub conversations: usize,
    /// Conversations in flight at once (at least 1).
    #[arg(long, default_value_t = 10)]
    pub concurrency: usize,
    /// Conversations started per second (0: as fast as concurrency allows); capped so the
    /// planned requests fit in the server's advertised request budget.
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
    /// Queue whose conversations are followed on a notification channel (repeatable;
    /// required with --target genesys: the queues the integration routes to; the
    /// emulator's queues are followed anyway).
    #[arg(long = "queue", value_name = "QUEUE_ID")]
    pub queues: Vec<String>,
    /// `fromAddress` of agentless sends (default: the integration id).
    #[arg(long)]
    pub from_address: Option<String>,
    /// `sla.answer` the expected SLA outcomes are computed for, e.g. 20s (default: the
    /// daemon's default; the same for the other `--sla-*` thresholds).
    #[arg(long, value_parser = parse_duration)]
    pub sla_answer: Option<Duration>,
    /// `sla.first_response` the expected SLA outcomes are computed for.
    #[arg(long, value_parser = parse_duration)]
    pub sla_first_response: Option<Duration>,
    /// `sla.next_response` the expected SLA outcomes are computed for.
    #[arg(long, value_parser = parse_duration)]
    pub sla_next_response: Option<Duration>,
    /// `sla.delivery` the expected SLA outcomes are computed for, e.g. 30s.
    #[arg(long, value_parser = parse_duration)]
    pub sla_delivery: Option<Duration>,
    /// `sla.read` (counted from the delivery) the expected SLA outcomes are computed for.
    #[arg(long, value_parser = parse_duration)]
    pub sla_read: Option<Duration>,
    /// A messenger type without read receipts (`sla.no_read_receipt`; repeatable). The
    /// emulator's open messaging is `open`.
    #[arg(long = "sla-no-read-receipt", value_name = "MESSENGER_TYPE")]
    pub sla_no_read_receipt: Vec<String>,
    /// How often a waiting conversation is re-read over REST while the notification
    /// socket is down (agent replies and ends otherwise arrive on the socket).
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub poll_interval: Duration,
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

/// Why `convoy simulate` did not succeed, with its exit code.
#[derive(Debug)]
pub struct Failure {
    /// 1: the run failed or reported errors; 2: invalid command line or scenario.
    pub code: u8,
    pub error: anyhow::Error,
}

impl Failure {
    fn invalid(error: anyhow::Error) -> Failure {
        Failure { code: 2, error }
    }

    fn failed(error: anyhow::Error) -> Failure {
        Failure { code: 1, error }
    }
}

impl SimulateArgs {
    /// The run's options (reads the scenario file). Every error is the caller's: a missing
    /// or invalid scenario, missing credentials, options that make no sense.
    pub fn options(&self) -> anyhow::Result<SimulatorOptions> {
        let scenario = match &self.scenario {
            Some(path) => super::read_scenario_file(path).map_err(anyhow::Error::msg)?,
            None => Scenario::default(),
        };
        let from_file = match &self.client_secret_file {
            Some(path) => Some(
                crate::config_load::read_secret_file(path)
                    .map_err(|error| anyhow!("--client-secret-file: {error}"))?,
            ),
            None => None,
        };
        let client_secret = self.client_secret.as_ref().or(from_file.as_ref());
        let (client_id, client_secret) = match (&self.client_id, client_secret) {
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
        let mut sla = SlaThresholds::default();
        let thresholds = [
            (&mut sla.answer_ms, self.sla_answer),
            (&mut sla.first_response_ms, self.sla_first_response),
            (&mut sla.next_response_ms, self.sla_next_response),
            (&mut sla.delivery_ms, self.sla_delivery),
            (&mut sla.read_ms, self.sla_read),
        ];
        for (slot, value) in thresholds {
            if let Some(value) = value {
                *slot = millis(value);
            }
        }
        sla.no_read_receipt = self.sla_no_read_receipt.iter().cloned().collect();
        options.sla = sla;
        options.integration_id = self.integration_id.clone();
        options.queues = self.queues.clone();
        options.from_address = self.from_address.clone();
        options.poll_interval = self.poll_interval;
        options.max_retries = self.max_retries;
        options.progress = std::io::stderr().is_terminal();
        options.validate()?;
        Ok(options)
    }
}

/// `convoy simulate` as a process: runs [`run`] on an actix System, prints the error, and
/// returns the exit code.
pub fn main(args: SimulateArgs) -> ExitCode {
    let outcome = match actix_rt::System::new().block_on(run(args)) {
        Ok(()) => return ExitCode::SUCCESS,
        Err(failure) => failure,
    };
    eprintln!("convoy: {:#}", outcome.error);
    ExitCode::from(outcome.code)
}

/// Runs the simulation: notice on stderr (Genesys), progress bar on stderr (terminal
/// only), summary on stdout, expected outcomes to `--expect-out`. Fails, after printing
/// the summary, when a conversation failed or any error was reported.
pub async fn run(args: SimulateArgs) -> Result<(), Failure> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let options = args.options().map_err(Failure::invalid)?;
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
    let report = match simulator.run().await {
        Ok(report) => report,
        Err(error) if error.is_invalid_options() => return Err(Failure::invalid(error.into())),
        Err(error) => return Err(Failure::failed(error.into())),
    };
    if let Some(path) = &args.expect_out {
        let json = serde_json::to_string_pretty(&report.expected)
            .map_err(|error| Failure::failed(error.into()))?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("writing expected outcomes to {}", path.display()))
            .map_err(Failure::failed)?;
    }
    if args.json {
        match serde_json::to_string(&report) {
            Ok(json) => println!("{json}"),
            Err(error) => return Err(Failure::failed(error.into())),
        }
    } else {
        println!("{report}");
    }
    match reported_failure(&report) {
        Some(error) => Err(Failure::failed(error)),
        None => Ok(()),
    }
}

/// A run that reports any error failed, even when every conversation completed (an agent
/// reply missing, a customer message that landed in a second conversation).
fn reported_failure(report: &SimulationReport) -> Option<anyhow::Error> {
    (report.conversations_failed > 0 || report.error_count > 0).then(|| {
        anyhow!(
            "{} of {} conversations failed, {} errors reported",
            report.conversations_failed,
            report.conversations_planned,
            report.error_count
        )
    })
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
        assert_eq!(options.sla.delivery_ms, 30_000);
        assert_eq!(options.sla.answer_ms, SlaThresholds::default().answer_ms);
        assert_eq!(options.poll_interval, Duration::from_secs(2));
    }

    #[test]
    fn genesys_runs_need_credentials_an_integration_and_queues() {
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
        let error = format!("{:#}", args.options().unwrap_err());
        assert!(error.contains("--integration-id"), "{error}");
        let mut args = args;
        args.integration_id = Some("integration".to_owned());
        let error = format!("{:#}", args.options().unwrap_err());
        assert!(error.contains("--queue"), "{error}");
        args.queues = vec!["queue".to_owned()];
        assert!(!format!("{args:?}").contains("s3cret"));
        let options = args.options().unwrap();
        assert_eq!(options.queues, ["queue"]);
        assert_eq!(options.rate_per_second, None);
        assert!(!format!("{options:?}").contains("s3cret"));
    }

    #[test]
    fn the_client_secret_can_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "  s3cret-from-file\n").unwrap();
        let path_text = path.to_str().unwrap();
        let args = parse(&[
            "--base-url",
            "http://127.0.0.1:1",
            "--client-id",
            "id",
            "--client-secret-file",
            path_text,
        ])
        .unwrap();
        let options = args.options().unwrap();
        assert_eq!(options.client_secret.expose_secret(), "s3cret-from-file");

        std::fs::write(&path, "\n").unwrap();
        let error = format!("{:#}", args.options().unwrap_err());
        assert!(
            error.contains("--client-secret-file") && error.contains("empty"),
            "{error}"
        );
        assert!(parse(&[
            "--base-url",
            "http://127.0.0.1:1",
            "--client-secret",
            "x",
            "--client-secret-file",
            path_text,
        ])
        .is_err());
    }

    #[test]
    fn a_base_url_must_be_an_http_url() {
        for bad in ["notaurl", "ftp://example.com", "http://", "http://x/?q=1"] {
            let error = format!(
                "{:#}",
                parse(&["--base-url", bad]).unwrap().options().unwrap_err()
            );
            assert!(error.contains("not an http(s) URL"), "{bad}: {error}");
        }
        assert!(parse(&["--base-url", "https://api.mypurecloud.ie/"])
            .unwrap()
            .options()
            .is_ok());
    }

    #[test]
    fn concurrency_zero_is_refused() {
        let args = parse(&["--base-url", "http://x", "--concurrency", "0"]).unwrap();
        let error = format!("{:#}", args.options().unwrap_err());
        assert!(error.contains("concurrency"), "{error}");
    }

    #[test]
    fn a_run_that_reports_an_error_fails_even_when_every_conversation_completed() {
        let (_, expected) = Simulator::new(SimulatorOptions::new("http://x", "id", "s"))
            .plan()
            .unwrap();
        let mut report = SimulationReport {
            target: Target::Emulator,
            conversations_planned: 20,
            conversations_started: 20,
            conversations_completed: 20,
            conversations_failed: 0,
            customer_messages_sent: 0,
            agentless_messages_sent: 0,
            agent_messages_seen: 0,
            unplanned_agent_messages: 0,
            receipts_sent: 0,
            receipts_withheld: 0,
            receipts_failed: 0,
            expected_sla: Default::default(),
            retries: 0,
            tokens_fetched: 1,
            requests: 0,
            rate_limited: 0,
            budget_per_minute: Some(300),
            start_rate_per_second: Some(1.0),
            error_count: 0,
            errors: Vec::new(),
            elapsed_ms: 0,
            expected,
        };
        assert!(reported_failure(&report).is_none());
        report.error_count = 1;
        let error = reported_failure(&report).unwrap().to_string();
        assert!(error.contains("1 errors reported"), "{error}");
        report.error_count = 0;
        report.conversations_failed = 1;
        assert!(reported_failure(&report).is_some());
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
