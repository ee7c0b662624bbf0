//! What the reliability tests that run a real `convoy run` child process share
//! (`crm_kill.rs`, `chaos.rs`): the child itself (spawned with no `CONVOY_*` variable of
//! the developer's, its stderr collected line by line across every restart, its admin
//! address read from its log, killed with SIGKILL or stopped with SIGTERM), the
//! configuration pointing it at an in-process emulator and `crm-sink`, the seed of a run,
//! and the end-of-run comparison of what the sink holds with the emulator's ground truth.
//!
//! **Why SLA outcomes are checkable against the truth.** The answer and response
//! thresholds are one hour, the receipt thresholds short enough that the receipt clocks of
//! finished conversations (which wait for their deadline) settle within the test, while the
//! fast scenario answers and receipts within a fraction of a second. Convoy times a receipt
//! by when it *observes* it (Genesys gives no receipt timestamps), so a receipt missed
//! during a gap counts from the re-read that finds it: the receipt threshold must exceed
//! the longest a fault keeps Convoy from seeing a receipt (downtime, reconnect, and the
//! reconciliation backlog of every tracked conversation re-read two at a time). Then no
//! fault can push a clock over its threshold, and the outcome of every clock is a function
//! of the emulator's truth alone — `delivery`: `failed` for a `delivery-failed` message,
//! `compliant` once delivered or read, `missing_receipt` otherwise; `read`: `compliant`
//! for a read message, `missing_receipt` for one delivered and never read, none for a
//! message never delivered; never `breached`. A run without faults produces exactly that,
//! so the tests compare each clock's outcome record with the truth.
// Each test binary compiles this module on its own and uses part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use convoy_actors::crm_sink::CrmSink;
use convoy_actors::emulator::Emulator;
use serde_json::Value;

/// The fast scenario: every conversation finishes within about a second.
pub const FAST: &str = include_str!("../../../config/examples/scenario-fast.toml");

/// The seed of a run: `var` when it is set (a replay), else the clock. Printed, so that
/// any failure replays.
pub fn seed(var: &str) -> u64 {
    let seed = std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(7, |d| d.as_secs())
        });
    println!("seeded with {var}={seed}");
    seed
}

/// A directory holding a daemon's configuration, outbox and nothing else.
pub struct DaemonFiles {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub outbox: PathBuf,
}

/// Writes a configuration for `convoy run` against this emulator and sink: wide SLA
/// thresholds (see the module doc; `receipts` is the delivery and read threshold), a CRM
/// batcher that retries quickly, an admin server on a free port, JSON logs at WARN (INFO
/// for the admin server, whose address the tests read, and for the stream and the
/// router, whose reconnects and reconciliations explain a failure).
pub fn daemon_files(emulator: &Emulator, sink: &CrmSink, receipts: &str) -> DaemonFiles {
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox.redb");
    let config = dir.path().join("convoy.toml");
    let text = format!(
        "[genesys]\napi_base = \"{base}\"\nlogin_base = \"{base}\"\nclient_id = \"{id}\"\n\
         client_secret = \"{secret}\"\nqueues = {queues}\nrequests_per_minute = 60000\n\
         [sla]\nanswer = \"1h\"\nfirst_response = \"1h\"\nnext_response = \"1h\"\n\
         delivery = \"{receipts}\"\nread = \"{receipts}\"\n\
         [crm]\nendpoint = \"{crm}\"\nbatch_size = 20\nflush_interval = \"200ms\"\n\
         retry_max_delay = \"1s\"\n\
         [outbox]\npath = {outbox:?}\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n[shutdown]\ndeadline = \"10s\"\n\
         [log]\nfilter = \"warn,convoy_actors::admin=info,convoy_actors::conversation::router=info,convoy_actors::stream::actor=info\"\nformat = \"json\"\n",
        base = emulator.base_url(),
        id = emulator.client_id(),
        secret = emulator.client_secret(),
        queues = serde_json::to_string(&emulator.queue_ids()).unwrap(),
        crm = sink.base_url(),
        outbox = outbox.display().to_string(),
        receipts = receipts,
    );
    std::fs::write(&config, text).unwrap();
    DaemonFiles {
        dir,
        config,
        outbox,
    }
}

/// Every stderr line of every `convoy run` of one test, prefixed with the run's number.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    pub fn text(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }

    /// The lines that tell of a panic (the panic hook's own line and its `Panic.` event).
    pub fn panics(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|line| line.contains("panicked") || line.contains("\"Panic.\""))
            .cloned()
            .collect()
    }

    /// Writes every line to a file in the temporary directory and names it (for a failure
    /// message: the whole log is too long to print).
    pub fn save(&self, name: &str) -> String {
        let path = std::env::temp_dir().join(name);
        match std::fs::write(&path, self.text()) {
            Ok(()) => format!("the whole log of every run: {}", path.display()),
            Err(error) => format!("could not write the log to {}: {error}", path.display()),
        }
    }

    /// The last `n` lines, for a failure message.
    pub fn tail(&self, n: usize) -> String {
        let lines = self.0.lock().unwrap();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// One `convoy run` child process.
pub struct Convoy {
    child: Child,
    run: usize,
    /// This run's lines only (the admin address is read from here).
    lines: Arc<Mutex<Vec<String>>>,
    log: Log,
}

impl Convoy {
    /// `convoy run --config CONFIG`, the `run`-th of the test, its stderr collected into
    /// `log`.
    pub fn spawn(config: &Path, run: usize, log: &Log) -> Convoy {
        let mut command = Command::new(env!("CARGO_BIN_EXE_convoy"));
        command
            .args(["run", "--config"])
            .arg(config)
            .current_dir(config.parent().unwrap())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, _) in std::env::vars_os() {
            if name
                .to_string_lossy()
                .to_ascii_uppercase()
                .starts_with("CONVOY_")
            {
                command.env_remove(name);
            }
        }
        command.env_remove("RUST_LOG");
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mine = Arc::clone(&lines);
        let all = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                all.0.lock().unwrap().push(format!("[run {run}] {line}"));
                mine.lock().unwrap().push(line);
            }
        });
        Convoy {
            child,
            run,
            lines,
            log: log.clone(),
        }
    }

    pub fn run(&self) -> usize {
        self.run
    }

    /// The admin server's address, from this run's log (polled until `deadline`).
    pub async fn admin(&mut self, deadline: Duration) -> SocketAddr {
        let until = Instant::now() + deadline;
        loop {
            let found = self.lines.lock().unwrap().iter().find_map(|line| {
                let event: Value = serde_json::from_str(line).ok()?;
                event["fields"]["local_addr"]
                    .as_str()
                    .or_else(|| event["local_addr"].as_str())?
                    .parse::<SocketAddr>()
                    .ok()
            });
            if let Some(found) = found {
                return found;
            }
            self.assert_alive();
            assert!(
                Instant::now() < until,
                "run {}: no admin address logged within {deadline:?}:\n{}",
                self.run,
                self.log.tail(50)
            );
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Panics with the log's tail if the process has exited.
    pub fn assert_alive(&mut self) {
        if let Some(exit) = self.child.try_wait().unwrap() {
            panic!(
                "run {}: convoy exited with {exit:?}:\n{}",
                self.run,
                self.log.tail(80)
            );
        }
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill_9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, and waits (at most `deadline`) for the exit. Async: the in-process
    /// emulator and sink must keep answering while the daemon drains into them.
    pub async fn terminate(&mut self, deadline: Duration) -> ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let until = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > until {
                self.kill_9();
                panic!(
                    "run {}: no exit within {deadline:?} of SIGTERM:\n{}",
                    self.run,
                    self.log.tail(80)
                );
            }
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Convoy {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The emulator's ground truth: every conversation.
pub async fn truth(http: &awc::Client, emulator: &Emulator) -> Vec<Value> {
    let mut response = http
        .get(format!("{}/emulator/v1/truth", emulator.base_url()))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().limit(256 * 1024 * 1024).await.unwrap();
    body["conversations"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Every conversation ended and every agent wrapped up: nothing more will happen.
pub fn all_finished(truth: &[Value]) -> bool {
    truth.iter().all(|c| {
        c["ended"] == true
            && c["participants"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["purpose"] != "agent" || !p["wrapup"].is_null())
    })
}

/// Every view on a daemon's `GET /conversations`, by conversation id (all pages).
pub async fn admin_views(http: &awc::Client, admin: SocketAddr) -> BTreeMap<String, Value> {
    let mut views = BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("http://{admin}/conversations?limit=1000");
        if let Some(after) = &after {
            url.push_str(&format!("&after={after}"));
        }
        let mut response = http.get(url).send().await.unwrap();
        let body: Value = response.json().limit(256 * 1024 * 1024).await.unwrap();
        for view in body["conversations"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            views.insert(
                view["conversationId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                view,
            );
        }
        match body["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return views,
        }
    }
}

/// What still differs between the sink and the truth (empty when the sink is final):
/// every participant's and message's record, every summary final and showing the true
/// lifecycles, no record held twice, SLA outcomes as the truth implies (module doc).
pub fn sink_problems(sink: &CrmSink, truth: &[Value]) -> Vec<String> {
    let records = sink.records();
    let ids: BTreeSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
    let mut problems = Vec::new();
    if ids.len() != records.len() {
        problems.push("the sink holds a record twice".to_owned());
    }
    let by_id: BTreeMap<&str, &convoy::crm::CrmRecord> =
        records.iter().map(|r| (r.id.as_str(), r)).collect();
    // The outcome record of one clock, as the sink holds it (None: no outcome yet).
    let outcome = |id: &str, clock: &str, mid: &str| {
        by_id
            .get(format!("{id}/sla/{clock}/{mid}/outcome").as_str())
            .map(|record| {
                record
                    .payload
                    .field("outcome")
                    .and_then(|o| o.as_str().map(str::to_owned))
                    .unwrap_or_else(|| "?".to_owned())
            })
    };
    for conversation in truth {
        let id = conversation["id"].as_str().unwrap();
        let document = sink.conversation(id).map(|stored| stored.document);
        match &document {
            None => problems.push(format!("{id}: no summary")),
            Some(document) if document["finished"] != true => {
                problems.push(format!("{id}: summary not finished"));
            }
            Some(_) => {}
        }
        for participant in conversation["participants"].as_array().unwrap() {
            let pid = participant["id"].as_str().unwrap();
            let lifecycle = participant["lifecycle"].as_str().unwrap();
            let record = format!("{id}/participant/{pid}/{lifecycle}");
            if !ids.contains(record.as_str()) {
                problems.push(format!("missing {record}"));
            }
            let shown = document.as_ref().and_then(|d| {
                d["participants"]
                    .as_array()?
                    .iter()
                    .find(|p| p["id"] == pid)
                    .map(|p| p["lifecycle"].clone())
            });
            if shown.as_ref().and_then(Value::as_str) != Some(lifecycle) {
                problems.push(format!(
                    "{id}: {pid} is {shown:?} in the summary, {lifecycle} in truth"
                ));
            }
        }
        for message in conversation["messages"].as_array().unwrap() {
            let mid = message["id"].as_str().unwrap();
            let status = message["status"].as_str().unwrap();
            let record = format!("{id}/message/{mid}/{status}");
            if !ids.contains(record.as_str()) {
                problems.push(format!("missing {record}"));
            }
            if message["direction"] != "outbound" {
                continue;
            }
            let delivery = match status {
                "delivery-failed" => "failed",
                "delivery-success" | "read" => "compliant",
                _ => "missing_receipt",
            };
            let read = match status {
                "read" => Some("compliant"),
                "delivery-success" => Some("missing_receipt"),
                _ => None,
            };
            for (clock, expected) in [("delivery", Some(delivery)), ("read", read)] {
                let got = outcome(id, clock, mid);
                if got.as_deref() != expected {
                    problems.push(format!(
                        "{id}/sla/{clock}/{mid}: outcome {got:?}, truth ({status}) implies {expected:?}"
                    ));
                }
            }
        }
    }
    for record in records.iter().filter(|r| r.kind == "sla.outcome") {
        if record
            .payload
            .field("outcome")
            .is_some_and(|o| o == "breached")
        {
            problems.push(format!("{}: breached with wide thresholds", record.id));
        }
    }
    problems
}
