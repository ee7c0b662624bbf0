//! `convoy simulate` and its Rust API: drives conversations through the real REST paths
//! of a base URL, following a deterministic plan (`convoy::simulator`).
//!
//! Against the emulator it plays both sides: the customer through open messaging (the
//! integration ids come from `GET /emulator/v1/org`), the agents through the emulator's
//! synthetic agents, steered per conversation with the inbound `metadata` keys
//! `convoy.sim.*`; it learns each agent reply by reading the conversation and answers it
//! with the planned receipts. Against a real org it plays only what the API allows: the
//! customer through one open-messaging integration, agentless sends, and receipts.
//!
//! Per-conversation failures do not stop the run: they are counted and listed in the
//! [`SimulationReport`]; only set-up failures (token, discovery, options) are errors.

pub mod cli;
mod client;
mod drive;
pub mod progress;

use std::cell::RefCell;
use std::fmt;
use std::time::Duration;

use actix_web::rt::time::{sleep_until, Instant};
use convoy::config::Secret;
use convoy::simulator::expect::ExpectedOutcomes;
use convoy::simulator::plan::{Plan, PlanOptions, Script};
use convoy::simulator::{Scenario, ScenarioError, SlaThresholds};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::genesys::oauth::{TokenEndpoint, TokenError};

use client::ApiClient;
pub use client::CallError;
use drive::{drive_agentless, drive_inbound, Channel, DriveContext, DriveTally};

/// How many error messages a report keeps (the count is always complete).
const MAX_REPORTED_ERRORS: usize = 50;

/// What the simulator talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Convoy's emulator: both sides are played.
    Emulator,
    /// A real Genesys Cloud org: only the customer side, agentless sends and receipts.
    Genesys,
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct SimulatorOptions {
    /// API base URL (`http://127.0.0.1:PORT` for the emulator, `https://api.<region>`).
    pub base_url: String,
    /// Token base URL; `None` means `base_url` (the emulator serves both).
    pub login_url: Option<String>,
    pub client_id: String,
    pub client_secret: Secret<String>,
    pub target: Target,
    pub scenario: Scenario,
    pub conversations: usize,
    /// Conversations in flight at once (at least 1).
    pub concurrency: usize,
    /// Conversations started per second; `None` starts them as fast as concurrency allows.
    pub rate_per_second: Option<f64>,
    pub seed: u64,
    /// Thresholds the expected SLA breaches are computed for.
    pub sla: SlaThresholds,
    /// Open-messaging integration; required with [`Target::Genesys`], optional with the
    /// emulator (default: the integrations of its queues, round robin).
    pub integration_id: Option<String>,
    /// `fromAddress` of agentless sends; defaults to the integration id (right for the
    /// `open` messenger type).
    pub from_address: Option<String>,
    /// How often a conversation is read while waiting for agent replies and its end.
    pub poll_interval: Duration,
    /// Added to each conversation's planned duration before it is declared stuck.
    pub conversation_slack: Duration,
    /// Retries per REST call (429, 5xx, connection failures), and token fetch retries.
    pub max_retries: u32,
    /// Draw the progress bar on stderr.
    pub progress: bool,
    /// Customer ids are `<prefix>-<index>@sim.convoy.test`; default `sim-<seed>`.
    pub customer_prefix: Option<String>,
}

impl SimulatorOptions {
    /// Options for a run against `base_url` with the default scenario: 20 conversations,
    /// concurrency 10, 20 per second, seed 1, polling every 100 ms.
    pub fn new(base_url: &str, client_id: &str, client_secret: &str) -> SimulatorOptions {
        SimulatorOptions {
            base_url: base_url.to_owned(),
            login_url: None,
            client_id: client_id.to_owned(),
            client_secret: Secret::new(client_secret.to_owned()),
            target: Target::Emulator,
            scenario: Scenario::default(),
            conversations: 20,
            concurrency: 10,
            rate_per_second: Some(20.0),
            seed: 1,
            sla: SlaThresholds::default(),
            integration_id: None,
            from_address: None,
            poll_interval: Duration::from_millis(100),
            conversation_slack: Duration::from_secs(30),
            max_retries: 5,
            progress: false,
            customer_prefix: None,
        }
    }

    fn plan_options(&self) -> PlanOptions {
        PlanOptions {
            conversations: self.conversations,
            seed: self.seed,
            rate_per_second: self.rate_per_second,
            customer_prefix: self.customer_prefix.clone(),
        }
    }
}

/// Why a run could not start (or its options make no sense).
#[derive(Debug, thiserror::Error)]
pub enum SimulatorError {
    #[error("invalid simulator options: {0}")]
    Options(String),
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("could not get a token: {0}")]
    Token(#[from] TokenError),
    /// The emulator's `GET /emulator/v1/org` failed or listed no integration.
    #[error("could not discover the emulated org: {0}")]
    Discovery(String),
}

/// What a run did, and what it should have caused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimulationReport {
    pub target: Target,
    pub conversations_planned: usize,
    /// Conversations whose first message was accepted.
    pub conversations_started: usize,
    /// Conversations played to their planned end.
    pub conversations_completed: usize,
    pub conversations_failed: usize,
    pub customer_messages_sent: usize,
    pub agentless_messages_sent: usize,
    pub agent_messages_seen: usize,
    /// Agent replies beyond the plan (no receipts are sent for them).
    pub unplanned_agent_messages: usize,
    /// Receipts posted (Delivered, Read and Failed).
    pub receipts_sent: usize,
    /// Outbound messages the plan leaves without any receipt.
    pub receipts_withheld: usize,
    /// `Failed` receipts posted.
    pub receipts_failed: usize,
    pub expected_sla_breaches: usize,
    /// REST retries (429, 5xx, transport, token refresh).
    pub retries: usize,
    pub tokens_fetched: usize,
    pub error_count: usize,
    /// The first errors, in completion order.
    pub errors: Vec<String>,
    pub elapsed_ms: u64,
    /// The plan's expectations, with the conversation and message ids the run learned.
    pub expected: ExpectedOutcomes,
}

impl fmt::Display for SimulationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = match self.target {
            Target::Emulator => "emulator",
            Target::Genesys => "genesys",
        };
        writeln!(
            f,
            "simulation against {target} in {:.1} s",
            self.elapsed_ms as f64 / 1000.0
        )?;
        writeln!(
            f,
            "conversations: {} planned, {} started, {} completed, {} failed",
            self.conversations_planned,
            self.conversations_started,
            self.conversations_completed,
            self.conversations_failed
        )?;
        writeln!(
            f,
            "messages:      {} from customers, {} agentless, {} agent replies seen ({} unplanned)",
            self.customer_messages_sent,
            self.agentless_messages_sent,
            self.agent_messages_seen,
            self.unplanned_agent_messages
        )?;
        writeln!(
            f,
            "receipts:      {} sent ({} Failed), {} messages withheld",
            self.receipts_sent, self.receipts_failed, self.receipts_withheld
        )?;
        writeln!(
            f,
            "expected SLA breaches: {} (delivery {}, read {})",
            self.expected_sla_breaches,
            threshold(self.expected.sla.delivery_ms),
            threshold(self.expected.sla.read_ms)
        )?;
        write!(
            f,
            "errors:        {} ({} retries, {} tokens)",
            self.error_count, self.retries, self.tokens_fetched
        )?;
        for error in &self.errors {
            write!(f, "\n  - {error}")?;
        }
        Ok(())
    }
}

fn threshold(ms: Option<u64>) -> String {
    ms.map_or_else(|| "off".to_owned(), |ms| format!("{ms} ms"))
}

/// The part of `GET /emulator/v1/org` the simulator needs.
#[derive(Debug, Deserialize)]
struct OrgListing {
    queues: Vec<OrgQueue>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrgQueue {
    integration_id: String,
}

/// A configured simulation.
#[derive(Debug, Clone)]
pub struct Simulator {
    options: SimulatorOptions,
}

impl Simulator {
    pub fn new(options: SimulatorOptions) -> Simulator {
        Simulator { options }
    }

    pub fn options(&self) -> &SimulatorOptions {
        &self.options
    }

    /// The plan and its expectations, without sending anything.
    pub fn plan(&self) -> Result<(Plan, ExpectedOutcomes), SimulatorError> {
        self.options.scenario.validate()?;
        let plan = Plan::generate(&self.options.scenario, &self.options.plan_options());
        let expected = ExpectedOutcomes::from_plan(&plan, self.options.sla);
        Ok((plan, expected))
    }

    /// Plays the whole plan. Must run on an actix System (awc is not `Send`).
    pub async fn run(&self) -> Result<SimulationReport, SimulatorError> {
        let options = &self.options;
        if options.concurrency == 0 {
            return Err(SimulatorError::Options(
                "concurrency must be at least 1".into(),
            ));
        }
        if options.poll_interval.is_zero() {
            return Err(SimulatorError::Options(
                "poll interval must be above 0".into(),
            ));
        }
        let (plan, mut expected) = self.plan()?;
        let endpoint = TokenEndpoint {
            login_base: options
                .login_url
                .clone()
                .unwrap_or_else(|| options.base_url.clone()),
            client_id: options.client_id.clone(),
            client_secret: options.client_secret.clone(),
        };
        let client = ApiClient::new(&options.base_url, endpoint, options.max_retries);
        let channels = self.channels(&client).await?;
        client.authenticate().await?;

        let started = Instant::now();
        let ctx = DriveContext {
            client: &client,
            target: options.target,
            seed: options.seed,
            poll_interval: options.poll_interval,
            slack: options.conversation_slack,
        };
        let progress = RefCell::new(progress::ProgressBar::new(
            options.progress,
            plan.conversations.len(),
        ));
        let done = std::cell::Cell::new(0usize);
        let expectations = std::mem::take(&mut expected.conversations);
        let runs = plan
            .conversations
            .iter()
            .zip(expectations)
            .map(|(planned, mut expectation)| {
                let ctx = &ctx;
                let channel = &channels[planned.index % channels.len()];
                let progress = &progress;
                let done = &done;
                async move {
                    sleep_until(started + Duration::from_millis(planned.start_after_ms)).await;
                    let mut tally = DriveTally::default();
                    let result = match &planned.script {
                        Script::Inbound(script) => {
                            drive_inbound(
                                ctx,
                                planned,
                                script,
                                channel,
                                &mut expectation,
                                &mut tally,
                            )
                            .await
                        }
                        Script::Agentless(script) => {
                            drive_agentless(
                                ctx,
                                planned,
                                script,
                                channel,
                                &mut expectation,
                                &mut tally,
                            )
                            .await
                        }
                    };
                    done.set(done.get() + 1);
                    progress.borrow_mut().update(done.get());
                    (expectation, tally, result)
                }
            });
        let mut outcomes: Vec<_> = futures_util::stream::iter(runs)
            .buffer_unordered(options.concurrency)
            .collect()
            .await;
        progress.borrow_mut().finish();
        outcomes.sort_by_key(|(expectation, _, _)| expectation.index);

        let mut report = SimulationReport {
            target: options.target,
            conversations_planned: plan.conversations.len(),
            conversations_started: 0,
            conversations_completed: 0,
            conversations_failed: 0,
            customer_messages_sent: 0,
            agentless_messages_sent: 0,
            agent_messages_seen: 0,
            unplanned_agent_messages: 0,
            receipts_sent: 0,
            receipts_withheld: expected.totals.receipts_withheld,
            receipts_failed: 0,
            expected_sla_breaches: expected.totals.sla_breaches,
            retries: client.retries(),
            tokens_fetched: client.tokens_fetched(),
            error_count: 0,
            errors: Vec::new(),
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            expected: ExpectedOutcomes {
                conversations: Vec::new(),
                ..expected
            },
        };
        let mut errors = Vec::new();
        for (expectation, tally, result) in outcomes {
            report.conversations_started += usize::from(tally.started);
            report.customer_messages_sent += tally.customer_messages;
            report.agentless_messages_sent += tally.agentless_messages;
            report.agent_messages_seen += tally.agent_messages_seen;
            report.unplanned_agent_messages += tally.unplanned_agent_messages;
            report.receipts_sent += tally.receipts_sent;
            report.receipts_failed += tally.failed_receipts_sent;
            errors.extend(tally.errors);
            match result {
                Ok(()) => report.conversations_completed += 1,
                Err(error) => {
                    report.conversations_failed += 1;
                    errors.push(error.to_string());
                }
            }
            report.expected.conversations.push(expectation);
        }
        report.error_count = errors.len();
        errors.truncate(MAX_REPORTED_ERRORS);
        report.errors = errors;
        Ok(report)
    }

    /// Which integration (and agentless from-address) each conversation uses.
    async fn channels(&self, client: &ApiClient) -> Result<Vec<Channel>, SimulatorError> {
        let options = &self.options;
        let integrations = match (&options.integration_id, options.target) {
            (Some(id), _) => vec![id.clone()],
            (None, Target::Genesys) => {
                return Err(SimulatorError::Options(
                    "--target genesys needs --integration-id (an open-messaging integration)"
                        .into(),
                ))
            }
            (None, Target::Emulator) => {
                let listing = client
                    .get_unauthenticated("/emulator/v1/org")
                    .await
                    .map_err(|error| SimulatorError::Discovery(error.to_string()))?;
                let listing: OrgListing = serde_json::from_value(listing)
                    .map_err(|error| SimulatorError::Discovery(error.to_string()))?;
                listing
                    .queues
                    .into_iter()
                    .map(|queue| queue.integration_id)
                    .collect()
            }
        };
        if integrations.is_empty() {
            return Err(SimulatorError::Discovery(
                "the org lists no open-messaging integration".into(),
            ));
        }
        Ok(integrations
            .into_iter()
            .map(|integration_id| Channel {
                from_address: options
                    .from_address
                    .clone()
                    .unwrap_or_else(|| integration_id.clone()),
                integration_id,
            })
            .collect())
    }
}
