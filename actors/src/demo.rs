//! `convoy demo`: the whole pipeline on one machine with nothing to configure. It starts
//! the emulator in-process, runs the daemon against it exactly as against Genesys (same
//! paths, same stream, same REST writes), drives simulated conversations through it, and
//! checks that what Convoy believes equals the emulator's ground truth, with Convoy's
//! participant attributes written back.
//!
//! [`differences`] and [`unwritten_attributes`] are the comparison the end-to-end tests
//! use too.

use std::io::Write;
use std::path::PathBuf;

use std::time::{Duration, Instant};

use crate::conversation::ConversationViews;
use convoy::ids::ConversationId;
use convoy::simulator::Scenario;
use serde_json::Value;

use crate::app::{Daemon, RunOptions};
use crate::config_load::{self, Layers};
use crate::emulator::{Emulator, EmulatorOptions};
use crate::simulator::{Simulator, SimulatorOptions};

/// The scenario the demo plays unless told otherwise: every conversation shape, fast.
pub const DEMO_SCENARIO: &str = include_str!("../../config/examples/scenario-fast.toml");

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub conversations: usize,
    pub seed: u64,
    pub scenario: Option<PathBuf>,
    /// How long to wait for Convoy to converge after the simulation.
    pub settle: Duration,
}

/// What the demo found.
#[derive(Debug, Clone)]
pub struct DemoReport {
    pub conversations: usize,
    pub differences: Vec<String>,
    pub unwritten: Vec<String>,
    pub admin: std::net::SocketAddr,
    pub metrics: Vec<String>,
}

impl DemoReport {
    pub fn converged(&self) -> bool {
        self.differences.is_empty() && self.unwritten.is_empty()
    }
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("emulator: {0}")]
    Emulator(std::io::Error),
    #[error("demo configuration: {0}")]
    Config(String),
    #[error("daemon: {0}")]
    Boot(#[from] crate::app::BootError),
    #[error("simulator: {0}")]
    Simulator(String),
    #[error("reading the emulator's truth: {0}")]
    Truth(String),
}

/// Runs the demo. Must run inside an actix System.
pub async fn run(options: DemoOptions) -> Result<DemoReport, DemoError> {
    let emulator = Emulator::start(EmulatorOptions {
        // The demo shows behaviour, not Genesys' 300 requests per minute: no limit here,
        // and Convoy's own bucket is opened up to match.
        rate_limit_per_minute: 0,
        heartbeat: Duration::from_secs(5),
        seed: options.seed,
        ..EmulatorOptions::default()
    })
    .await
    .map_err(DemoError::Emulator)?;
    let result = run_against(&emulator, &options).await;
    emulator.stop().await;
    result
}

async fn run_against(emulator: &Emulator, options: &DemoOptions) -> Result<DemoReport, DemoError> {
    let config = config_for(
        emulator,
        "",
        "[admin]\nlisten = \"127.0.0.1:0\"\n\
         [stream]\nping_after_idle = \"10s\"\nreconnect_after_silence = \"30s\"\n\
         [shutdown]\ndeadline = \"10s\"\n",
    )?;

    let daemon = Daemon::start(&config, RunOptions::default()).await?;
    let ready = wait_until(Duration::from_secs(30), || async {
        daemon.board.readiness_now().ready
    })
    .await;
    if !ready {
        tracing::warn!("Convoy did not report ready within 30 s; simulating anyway.");
    }

    let scenario = match &options.scenario {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|error| DemoError::Simulator(format!("{}: {error}", path.display())))
            .and_then(|text| {
                Scenario::from_toml(&text).map_err(|error| DemoError::Simulator(error.to_string()))
            })?,
        None => Scenario::from_toml(DEMO_SCENARIO)
            .map_err(|error| DemoError::Simulator(error.to_string()))?,
    };
    let mut simulation = SimulatorOptions::new(
        &emulator.base_url(),
        emulator.client_id(),
        emulator.client_secret(),
    );
    simulation.scenario = scenario;
    simulation.conversations = options.conversations;
    simulation.concurrency = options.conversations.clamp(1, 20);
    simulation.seed = options.seed;
    simulation.poll_interval = Duration::from_millis(100);
    let report = Simulator::new(simulation)
        .run()
        .await
        .map_err(|error| DemoError::Simulator(error.to_string()))?;
    tracing::info!(
        completed = report.conversations_completed,
        "Simulation finished."
    );

    let http = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let truth_url = format!("{}/emulator/v1/truth", emulator.base_url());
    let mut truth = read_truth(&http, &truth_url).await?;
    let deadline = Instant::now() + options.settle;
    while Instant::now() < deadline
        && !(differences(&daemon.views, &truth).is_empty()
            && unwritten_attributes(&truth).is_empty())
    {
        actix_rt::time::sleep(Duration::from_millis(200)).await;
        truth = read_truth(&http, &truth_url).await?;
    }
    let rendered = daemon.telemetry.render();
    let metrics = rendered
        .lines()
        .filter(|line| {
            !line.starts_with('#')
                && (line.starts_with("convoy_stream_frames_total")
                    || line.starts_with("convoy_conversations_started_total")
                    || line.starts_with("convoy_genesys_requests_total")
                    || line.starts_with("convoy_genesys_conflict_retries_total"))
                && !line.ends_with(" 0")
        })
        .map(str::to_owned)
        .collect();
    let report = DemoReport {
        conversations: truth.len(),
        differences: differences(&daemon.views, &truth),
        unwritten: unwritten_attributes(&truth),
        admin: daemon.admin.local_addr(),
        metrics,
    };
    daemon.shutdown().await;
    Ok(report)
}

/// The configuration of a daemon following every queue of `emulator`, loaded through
/// the real loader (embedded defaults, then a file): a `[genesys]` section pointing at the
/// emulator with a generous request budget and `genesys_extra` lines, plus `extra_toml`
/// (other sections).
pub fn config_for(
    emulator: &Emulator,
    genesys_extra: &str,
    extra_toml: &str,
) -> Result<convoy::config::Config, DemoError> {
    let queues = emulator.queue_ids();
    let path = std::env::temp_dir().join(format!(
        "convoy-{}-{}.toml",
        std::process::id(),
        CONFIG_FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let text = format!(
        "# Written for an in-process emulator.\n\
         [genesys]\napi_base = \"{base}\"\nlogin_base = \"{base}\"\nclient_id = \"{id}\"\n\
         client_secret = \"{secret}\"\n{budget}queues = {queues}\n{genesys_extra}\n{outbox}{extra_toml}",
        base = emulator.base_url(),
        id = emulator.client_id(),
        secret = emulator.client_secret(),
        queues = serde_json::to_string(&queues).unwrap_or_else(|_| "[]".to_owned()),
        budget = if genesys_extra.contains("requests_per_minute") {
            ""
        } else {
            "requests_per_minute = 60000\n"
        },
        // Each in-process daemon gets a durable store of its own (a second daemon cannot
        // open the same redb file).
        outbox = if extra_toml.contains("[outbox]") {
            String::new()
        } else {
            format!(
                "[outbox]\npath = {:?}\n",
                std::env::temp_dir()
                    .join(format!("convoy-{}-{}", std::process::id(), CONFIG_FILES.load(std::sync::atomic::Ordering::Relaxed)))
                    .join("outbox.redb")
                    .display()
                    .to_string()
            )
        },
    );
    std::fs::File::create(&path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|error| DemoError::Config(format!("{}: {error}", path.display())))?;
    let loaded = config_load::load(&Layers {
        file: Some(path.clone()),
        flags: Vec::new(),
    });
    let _ = std::fs::remove_file(&path);
    loaded.map_err(|error| DemoError::Config(error.to_string()))
}

/// Distinguishes the temporary files of several configurations built by one process.
static CONFIG_FILES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

async fn read_truth(http: &awc::Client, url: &str) -> Result<Vec<Value>, DemoError> {
    let mut response = http
        .get(url)
        .send()
        .await
        .map_err(|error| DemoError::Truth(error.to_string()))?;
    let body: Value = response
        .json()
        .limit(256 * 1024 * 1024)
        .await
        .map_err(|error| DemoError::Truth(error.to_string()))?;
    Ok(body
        .get("conversations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default())
}

async fn wait_until<F, Fut>(deadline: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + deadline;
    while Instant::now() < until {
        if condition().await {
            return true;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

fn list(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// Differences between what Convoy believes (the `/conversations` views) and the
/// emulator's ground truth (`GET /emulator/v1/truth`): whether each conversation ended,
/// each participant's lifecycle, each message's status. Empty when they agree.
pub fn differences(views: &ConversationViews, truth: &[Value]) -> Vec<String> {
    let mut problems = Vec::new();
    for conversation in truth {
        let id = text(&conversation["id"]);
        let Some(view) = views
            .get(&ConversationId::from(id))
            .map(|view| view.value().clone().to_json(None))
        else {
            problems.push(format!("{id}: not tracked"));
            continue;
        };
        if view["ended"] != conversation["ended"] {
            problems.push(format!(
                "{id}: ended {} vs truth {}",
                view["ended"], conversation["ended"]
            ));
        }
        for participant in list(&conversation["participants"]) {
            let pid = &participant["id"];
            match list(&view["participants"])
                .iter()
                .find(|mine| &mine["id"] == pid)
            {
                None => problems.push(format!("{id}: participant {pid} missing")),
                Some(mine) if mine["lifecycle"] != participant["lifecycle"] => {
                    problems.push(format!(
                        "{id}: participant {pid} lifecycle {} vs truth {}",
                        mine["lifecycle"], participant["lifecycle"]
                    ))
                }
                Some(_) => {}
            }
        }
        for message in list(&conversation["messages"]) {
            let mid = &message["id"];
            match list(&view["messages"])
                .iter()
                .find(|mine| &mine["id"] == mid)
            {
                None => problems.push(format!("{id}: message {mid} missing")),
                Some(mine) if mine["status"] != message["status"] => problems.push(format!(
                    "{id}: message {mid} status {} vs truth {}",
                    mine["status"], message["status"]
                )),
                Some(_) => {}
            }
        }
    }
    problems
}

/// Participants whose `convoy.participant_state` attribute (as the truth shows it) is not
/// their final lifecycle.
pub fn unwritten_attributes(truth: &[Value]) -> Vec<String> {
    truth
        .iter()
        .flat_map(|conversation| {
            list(&conversation["participants"])
                .iter()
                .map(move |participant| (conversation, participant))
        })
        .filter(|(_, participant)| {
            participant["attributes"]["convoy.participant_state"] != participant["lifecycle"]
        })
        .map(|(conversation, participant)| {
            format!(
                "{}/{}: attribute {} vs lifecycle {}",
                text(&conversation["id"]),
                text(&participant["id"]),
                participant["attributes"]["convoy.participant_state"],
                participant["lifecycle"]
            )
        })
        .collect()
}
