//! `convoy demo`: the whole pipeline on one machine with nothing to configure. It starts
//! the emulator in-process, runs the daemon against it exactly as against Genesys (same
//! paths, same stream, same REST writes), drives simulated conversations through it, and
//! checks that what Convoy believes equals the emulator's ground truth, with Convoy's
//! participant attributes written back.
//!
//! It runs Convoy as users run it: `config/default.toml` and `convoy emulate`'s defaults
//! (300 requests a minute per token, 30 s heartbeats), except what [`CHANGES`] lists —
//! and the caller's `CONVOY_*` variables are ignored, so a shell set up for a real org
//! cannot break it.
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

/// Everything the demo sets differently from `config/default.toml` and `convoy emulate`,
/// as `demo --help` and the README list it.
pub const CHANGES: &[&str] = &[
    "the emulator runs in-process on a free port of 127.0.0.1, seeded with --seed (emulate: 0)",
    "genesys.api_base and genesys.login_base: that emulator; genesys.client_id and \
     genesys.client_secret: its default client; genesys.queues: every queue of its org",
    "admin.listen = 127.0.0.1:0 (a free port, printed), so a daemon on 9464 is no obstacle",
    "outbox.path: a fresh file in the system's temporary folder, so a daemon using \
     data/outbox.redb here is no obstacle",
    "logs: warnings and errors only, so the demo's own lines stay readable",
    "CONVOY_* environment variables are ignored (config/default.toml plus the lines above)",
];

/// How long the demo waits without any progress towards the ground truth before it
/// reports the differences.
pub const SETTLE_WITHOUT_PROGRESS: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub conversations: usize,
    pub seed: u64,
    pub scenario: Option<PathBuf>,
    /// How long to wait, after the simulation, without Convoy getting any closer to the
    /// ground truth (Convoy's writes are paced by the rate limit, so a long run may need
    /// minutes; a stuck one is given up after this).
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

/// Why the demo could not run. Each variant's text carries its cause (none is chained as
/// a `source`, so a printer walking the chain does not repeat it).
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("emulator: {0}")]
    Emulator(String),
    #[error("demo configuration: {0}")]
    Config(String),
    #[error("scenario {0}")]
    Scenario(String),
    #[error("daemon: {0}")]
    Boot(String),
    #[error("simulator: {0}")]
    Simulator(String),
    #[error("reading the emulator's truth: {0}")]
    Truth(String),
}

impl DemoError {
    /// A problem with what the caller gave (the scenario file): exit code 2, not 1.
    pub fn is_usage(&self) -> bool {
        matches!(self, DemoError::Config(_) | DemoError::Scenario(_))
    }
}

/// Runs the demo. Must run inside an actix System.
pub async fn run(options: DemoOptions) -> Result<DemoReport, DemoError> {
    // Read the scenario first: a mistake in it is the caller's, reported before anything
    // starts.
    let scenario = read_scenario(options.scenario.as_deref())?;
    // `convoy emulate`'s defaults (the org is seeded with the emulator's seed).
    let emulator = Emulator::start(EmulatorOptions {
        seed: options.seed,
        ..EmulatorOptions::default()
    })
    .await
    .map_err(|error| DemoError::Emulator(error.to_string()))?;
    let result = run_against(&emulator, &options, scenario).await;
    emulator.stop().await;
    result
}

fn read_scenario(path: Option<&std::path::Path>) -> Result<Scenario, DemoError> {
    match path {
        Some(path) => crate::simulator::read_scenario_file(path).map_err(DemoError::Scenario),
        None => Scenario::from_toml(DEMO_SCENARIO)
            .map_err(|error| DemoError::Scenario(format!("(built in): {error}"))),
    }
}

/// The daemon's configuration: `config/default.toml` and exactly the lines [`CHANGES`]
/// names, through the real loader, without the caller's environment.
fn demo_config(emulator: &Emulator) -> Result<convoy::config::Config, DemoError> {
    let text = format!(
        "{genesys}[admin]\nlisten = \"127.0.0.1:0\"\n{outbox}",
        genesys = genesys_section(emulator),
        outbox = private_store(),
    );
    load_from_text(&text, true)
}

/// The `[genesys]` lines that point a daemon at `emulator`: its bases, its default client
/// and every queue of its org. The section stays open for more keys.
fn genesys_section(emulator: &Emulator) -> String {
    format!(
        "[genesys]\napi_base = \"{base}\"\nlogin_base = \"{base}\"\nclient_id = \"{id}\"\n\
         client_secret = \"{secret}\"\nqueues = {queues}\n",
        base = emulator.base_url(),
        id = emulator.client_id(),
        secret = emulator.client_secret(),
        queues = serde_json::to_string(&emulator.queue_ids()).unwrap_or_else(|_| "[]".to_owned()),
    )
}

async fn run_against(
    emulator: &Emulator,
    options: &DemoOptions,
    scenario: Scenario,
) -> Result<DemoReport, DemoError> {
    let config = demo_config(emulator)?;

    let daemon = Daemon::start(&config, RunOptions::default())
        .await
        .map_err(|error| DemoError::Boot(error.to_string()))?;
    let ready = wait_until(Duration::from_secs(30), || async {
        daemon.board.readiness_now().ready
    })
    .await;
    if !ready {
        tracing::warn!("Convoy did not report ready within 30 s; simulating anyway.");
    }

    // The simulator at its own defaults but for what the demo's flags choose.
    let mut simulation = SimulatorOptions::new(
        &emulator.base_url(),
        emulator.client_id(),
        emulator.client_secret(),
    );
    simulation.scenario = scenario;
    simulation.conversations = options.conversations;
    simulation.seed = options.seed;
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
    let remaining = |truth: &[Value]| {
        differences(&daemon.views, truth).len() + unwritten_attributes(truth).len()
    };
    let mut least = remaining(&truth);
    let mut deadline = Instant::now() + options.settle;
    while least > 0 && Instant::now() < deadline {
        actix_rt::time::sleep(Duration::from_millis(500)).await;
        truth = read_truth(&http, &truth_url).await?;
        let now = remaining(&truth);
        if now < least {
            // Progress (writes drain at the rate limit's pace): wait on.
            least = now;
            deadline = Instant::now() + options.settle;
        }
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
    let text = format!(
        "# Written for an in-process emulator.\n{genesys}{budget}{genesys_extra}\n{outbox}{extra_toml}",
        genesys = genesys_section(emulator),
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
            private_store()
        },
    );
    load_from_text(&text, false)
}

/// Loads `text` as the file layer over the built-in defaults (through a temporary file,
/// as the loader reads files), with or without the environment layer.
fn load_from_text(
    text: &str,
    ignore_environment: bool,
) -> Result<convoy::config::Config, DemoError> {
    let path = std::env::temp_dir().join(format!(
        "convoy-{}-{}.toml",
        std::process::id(),
        CONFIG_FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::File::create(&path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|error| DemoError::Config(format!("{}: {error}", path.display())))?;
    let loaded = config_load::load(&Layers {
        file: Some(path.clone()),
        flags: Vec::new(),
        ignore_environment,
    });
    let _ = std::fs::remove_file(&path);
    loaded.map_err(|error| DemoError::Config(error.to_string()))
}

/// An `[outbox]` section naming a store no other daemon uses: a fresh folder under the
/// system's temporary folder (a second daemon cannot open the same redb file).
fn private_store() -> String {
    let folder = std::env::temp_dir().join(format!(
        "convoy-store-{}-{}",
        std::process::id(),
        STORES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    format!(
        "[outbox]\npath = {:?}\n",
        folder.join("outbox.redb").display().to_string()
    )
}

/// Distinguishes the stores of several daemons started by one process.
static STORES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

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
