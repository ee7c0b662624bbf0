//! `convoy simulate` and its Rust API: drives conversations through the real REST paths
//! of a base URL, following a deterministic plan (`convoy::simulator`).
//!
//! Against the emulator it plays both sides: the customer through open messaging (the
//! integration ids come from `GET /emulator/v1/org`), the agents through the emulator's
//! synthetic agents, steered per conversation with the inbound `metadata` keys
//! `convoy.sim.*`; it learns each agent reply from a notification channel subscribed to
//! the queues' conversation topics (one WebSocket, as the daemon does) and answers it with
//! the planned receipts. Against a real org it plays only what the API allows: the
//! customer through one open-messaging integration, agentless sends, and receipts; it
//! follows the queues it is told (`--queue`).
//!
//! The run stays inside the token's request budget: every REST call goes through one token
//! bucket at the budget the server advertises (`inin-ratelimit-allowed`, 300 per minute
//! on Genesys by default), and conversations start no faster than their planned requests
//! fit in it (`convoy::simulator::follow::paced_start_rate`). Time a conversation spends
//! waiting for the budget never counts against its deadline.
//!
//! Per-conversation failures do not stop the run: they are counted and listed in the
//! [`SimulationReport`]; only set-up failures (token, discovery, channel, options) are
//! errors.

pub mod cli;
mod client;
mod drive;
mod follow;
pub mod progress;

use std::cell::RefCell;
use std::fmt;
use std::time::Duration;

use actix_web::rt::time::{sleep_until, Instant};
use convoy::config::Secret;
use convoy::simulator::expect::{describe_tallies, ExpectedOutcomes};
use convoy::simulator::follow::paced_start_rate;
use convoy::simulator::plan::{Plan, PlanOptions, Script};
use convoy::simulator::{Scenario, ScenarioError, SlaThresholds};
use convoy::sla::SlaTallies;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::genesys::oauth::{TokenEndpoint, TokenError};

use client::ApiClient;
pub use client::CallError;
use drive::{drive_agentless, drive_inbound, drive_voice, Channel, DriveContext, DriveTally};
use follow::Feed;
pub use follow::FollowError;

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
    /// A run caps either so the planned requests fit in the server's advertised budget.
    pub rate_per_second: Option<f64>,
    pub seed: u64,
    /// Thresholds the expected SLA breaches are computed for.
    pub sla: SlaThresholds,
    /// Open-messaging integration; required with [`Target::Genesys`], optional with the
    /// emulator (default: the integrations of its queues, round robin).
    pub integration_id: Option<String>,
    /// Queues whose conversation topics are followed; required with [`Target::Genesys`]
    /// (the queues the integration's flow routes to); with the emulator, added to every
    /// queue it lists.
    pub queues: Vec<String>,
    /// `fromAddress` of agentless sends; defaults to the integration id (right for the
    /// `open` messenger type).
    pub from_address: Option<String>,
    /// How often a waiting conversation is re-read over REST while the notification
    /// socket is down (after it reconnects, each is re-read once).
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
    /// concurrency 10, 20 per second (capped by the request budget), seed 1.
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
            queues: Vec::new(),
            from_address: None,
            poll_interval: Duration::from_secs(2),
            conversation_slack: Duration::from_secs(30),
            max_retries: 5,
            progress: false,
            customer_prefix: None,
        }
    }

    fn plan_options(&self, rate_per_second: Option<f64>) -> PlanOptions {
        PlanOptions {
            conversations: self.conversations,
            seed: self.seed,
            rate_per_second,
            customer_prefix: self.customer_prefix.clone(),
        }
    }

    /// Checks what can be checked without a server: every problem here is the caller's
    /// (exit code 2 on the command line).
    pub fn validate(&self) -> Result<(), SimulatorError> {
        let invalid = |what: &str| Err(SimulatorError::Options(what.to_owned()));
        if self.concurrency == 0 {
            return invalid("concurrency must be at least 1");
        }
        if self.poll_interval.is_zero() {
            return invalid("poll interval must be above 0");
        }
        for (name, value) in [
            ("base URL", Some(&self.base_url)),
            ("login URL", self.login_url.as_ref()),
        ] {
            if let Some(value) = value {
                check_http_url(name, value)?;
            }
        }
        if self.target == Target::Genesys {
            if self.integration_id.is_none() {
                return invalid(
                    "--target genesys needs --integration-id (an open-messaging integration)",
                );
            }
            if self.queues.is_empty() {
                return invalid(
                    "--target genesys needs --queue (the queues the integration routes to, whose conversations are followed)",
                );
            }
        }
        self.scenario.validate()?;
        if self.target == Target::Genesys && self.scenario.uses_voice() {
            return invalid(
                "voice shapes need the emulator (calls are placed through its control API)",
            );
        }
        Ok(())
    }
}

/// An `http://` or `https://` URL with a host, and nothing after the path.
fn check_http_url(name: &str, value: &str) -> Result<(), SimulatorError> {
    let problem = match url::Url::parse(value) {
        Err(error) => Some(error.to_string()),
        Ok(url) if !matches!(url.scheme(), "http" | "https") => {
            Some(format!("scheme {:?} is not http or https", url.scheme()))
        }
        Ok(url) if url.host_str().is_none_or(str::is_empty) => Some("no host".to_owned()),
        Ok(url) if url.query().is_some() || url.fragment().is_some() => {
            Some("a query or fragment is not allowed".to_owned())
        }
        Ok(_) => None,
    };
    match problem {
        Some(problem) => Err(SimulatorError::Options(format!(
            "the {name} {value:?} is not an http(s) URL: {problem}"
        ))),
        None => Ok(()),
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
    #[error("could not follow the conversations: {0}")]
    Follow(#[from] FollowError),
}

impl SimulatorError {
    /// The options (or the scenario) are wrong, not the server or the network.
    pub fn is_invalid_options(&self) -> bool {
        matches!(
            self,
            SimulatorError::Options(_) | SimulatorError::Scenario(_)
        )
    }
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
    /// Expected `sla.outcome` records by clock and outcome.
    pub expected_sla: SlaTallies,
    /// REST retries (429, 5xx, transport, token refresh).
    pub retries: usize,
    pub tokens_fetched: usize,
    /// API requests sent (retries included).
    pub requests: usize,
    /// 429 answers.
    pub rate_limited: usize,
    /// The request budget paced at (`None`: the server advertised none).
    pub budget_per_minute: Option<u32>,
    /// Conversations started per second, after the budget's cap (`None`: all at once).
    pub start_rate_per_second: Option<f64>,
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
        let sla = &self.expected.sla;
        writeln!(
            f,
            "expected SLA outcomes (answer {} ms, first response {} ms, delivery {} ms, read {} ms): {}{}",
            sla.answer_ms,
            sla.first_response_ms,
            sla.delivery_ms,
            sla.read_ms,
            describe_tallies(&self.expected_sla),
            match self.expected.totals.sla_close_calls {
                0 => String::new(),
                n => format!(" ({n} within {} ms of a threshold)", sla.margin_ms),
            }
        )?;
        let budget = self
            .budget_per_minute
            .map_or_else(|| "none advertised".to_owned(), |n| format!("{n}/min"));
        let starts = self
            .start_rate_per_second
            .map_or_else(|| "all at once".to_owned(), |rate| format!("{rate:.2}/s"));
        writeln!(
            f,
            "requests:      {} (budget {budget}, {} answered 429; conversations started at {starts})",
            self.requests, self.rate_limited
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

/// The part of `GET /emulator/v1/org` the simulator needs.
#[derive(Debug, Deserialize)]
struct OrgListing {
    queues: Vec<OrgQueue>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrgQueue {
    id: String,
    integration_id: String,
}

/// The channels conversations use and the queues to follow.
struct Routing {
    channels: Vec<Channel>,
    queues: Vec<String>,
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

    /// The plan and its expectations, without sending anything, at the requested start
    /// rate (a run caps it to the server's budget; only the start times change).
    pub fn plan(&self) -> Result<(Plan, ExpectedOutcomes), SimulatorError> {
        self.plan_at(self.options.rate_per_second)
    }

    fn plan_at(
        &self,
        rate_per_second: Option<f64>,
    ) -> Result<(Plan, ExpectedOutcomes), SimulatorError> {
        self.options.scenario.validate()?;
        let plan = Plan::generate(
            &self.options.scenario,
            &self.options.plan_options(rate_per_second),
        );
        let expected = ExpectedOutcomes::from_plan(&plan, self.options.sla.clone());
        Ok((plan, expected))
    }

    /// Plays the whole plan. Must run on an actix System (awc is not `Send`).
    pub async fn run(&self) -> Result<SimulationReport, SimulatorError> {
        let options = &self.options;
        options.validate()?;
        let endpoint = TokenEndpoint {
            login_base: options
                .login_url
                .clone()
                .unwrap_or_else(|| options.base_url.clone()),
            client_id: options.client_id.clone(),
            client_secret: options.client_secret.clone(),
        };
        let client = ApiClient::new(&options.base_url, endpoint, options.max_retries);
        let routing = self.routing(&client).await?;
        client.authenticate().await?;

        // Follow before the first conversation starts: Genesys replays nothing.
        let topics: Vec<String> = routing
            .queues
            .iter()
            .map(|queue| format!("v2.routing.queues.{queue}.conversations.messages"))
            .collect();
        let ws = follow::ws_client();
        let notification_channel = follow::open_channel(&client, &topics).await?;
        let socket = follow::connect(&ws, &notification_channel)
            .await
            .map_err(FollowError::from)?;
        let feed = Feed::default();

        // The channel calls told the budget: start conversations no faster than it allows.
        let budget = client.budget_per_minute();
        let (unpaced, _) = self.plan()?;
        let start_rate = paced_start_rate(&unpaced, options.rate_per_second, budget);
        let (plan, mut expected) = self.plan_at(start_rate)?;

        let started = Instant::now();
        let ctx = DriveContext {
            client: &client,
            feed: &feed,
            target: options.target,
            seed: options.seed,
            poll_interval: options.poll_interval,
            slack: options.conversation_slack,
        };
        let channels = &routing.channels;
        let queues = &routing.queues;
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
                        Script::Voice(script) => {
                            let queue = &queues[planned.index % queues.len()];
                            drive_voice(ctx, planned, script, queue, &mut expectation, &mut tally)
                                .await
                        }
                    };
                    done.set(done.get() + 1);
                    progress.borrow_mut().update(done.get());
                    (expectation, tally, result)
                }
            });
        let drivers = futures_util::stream::iter(runs)
            .buffer_unordered(options.concurrency)
            .collect::<Vec<_>>();
        let follower = follow::follow(&client, &ws, &topics, &feed, notification_channel, socket);
        // The follower loops until dropped (it cannot return): the run is over when the
        // drivers are.
        let mut outcomes = tokio::select! {
            outcomes = drivers => outcomes,
            never = follower => match never {},
        };
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
            expected_sla: expected.totals.sla_outcomes.clone(),
            retries: client.retries(),
            tokens_fetched: client.tokens_fetched(),
            requests: client.requests(),
            rate_limited: client.rate_limited(),
            budget_per_minute: client.budget_per_minute(),
            start_rate_per_second: start_rate,
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

    /// Which integration (and agentless from-address) each conversation uses, and which
    /// queues to follow.
    async fn routing(&self, client: &ApiClient) -> Result<Routing, SimulatorError> {
        let options = &self.options;
        let mut queues = options.queues.clone();
        let integrations = match options.target {
            Target::Genesys => options.integration_id.iter().cloned().collect(),
            Target::Emulator => {
                let listing = client
                    .get_unauthenticated("/emulator/v1/org")
                    .await
                    .map_err(|error| SimulatorError::Discovery(error.to_string()))?;
                let listing: OrgListing = serde_json::from_value(listing)
                    .map_err(|error| SimulatorError::Discovery(error.to_string()))?;
                let mut integrations = Vec::new();
                for queue in listing.queues {
                    queues.push(queue.id);
                    integrations.push(queue.integration_id);
                }
                match &options.integration_id {
                    Some(id) => vec![id.clone()],
                    None => integrations,
                }
            }
        };
        if integrations.is_empty() {
            return Err(SimulatorError::Discovery(
                "the org lists no open-messaging integration".into(),
            ));
        }
        queues.sort();
        queues.dedup();
        if queues.is_empty() {
            return Err(SimulatorError::Discovery(
                "no queue to follow: the org lists none".into(),
            ));
        }
        let channels = integrations
            .into_iter()
            .map(|integration_id| Channel {
                from_address: options
                    .from_address
                    .clone()
                    .unwrap_or_else(|| integration_id.clone()),
                integration_id,
            })
            .collect();
        Ok(Routing { channels, queues })
    }
}

/// Reads a scenario file (`--scenario FILE` of simulate, demo and bench); the error names
/// the file and what is wrong with it.
pub fn read_scenario_file(path: &std::path::Path) -> Result<Scenario, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("scenario {}: {error}", path.display()))?;
    Scenario::from_toml(&text).map_err(|error| format!("scenario {}: {error}", path.display()))
}
