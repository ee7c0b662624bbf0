//! `convoy bench restart`: what a restart costs when the last run left work behind.
//!
//! Before the clock starts, an outbox is written as a stopped daemon would leave it:
//! `--pending` CRM records not yet delivered, and `--conversations` conversations owed a
//! re-read (open when it stopped). The conversations exist in an in-process emulator that
//! enforces Genesys' request budget (`--requests-per-minute`, 300 by default, as does
//! Convoy's own bucket), and whose synthetic routing is left to finish first (as it would
//! have while the daemon was down). Then the daemon starts on that outbox, with a CRM test
//! server, and the bench reports, from the call that starts it:
//!
//! - when `/readyz` first said ready;
//! - when the outbox was drained (every pending record delivered to the CRM test server);
//! - when every owed conversation had been re-read (reconciliation against the budget:
//!   expect about `conversations / requests_per_minute` minutes).
//!
//! It exits 1 when something did not finish within `--max-wait`.

use std::time::{Duration, Instant};

use chrono::Utc;
use convoy::crm::CrmRecord;
use convoy::duration::parse_duration;
use convoy::ids::ConversationId;
use serde::Serialize;
use serde_json::json;

use super::{seconds, BenchError, OutputFormat};
use crate::app::{Daemon, RunOptions};
use crate::conversation::router::GetRouterStats;
use crate::crm_sink::{CrmSink, CrmSinkOptions};
use crate::demo::config_for;
use crate::emulator::{lock, Emulator, EmulatorOptions};
use crate::store::{Commit, DurableStore};

/// Records per seeding transaction.
const SEED_CHUNK: usize = 10_000;

#[derive(Debug, Clone, clap::Args)]
pub struct RestartArgs {
    /// CRM records pending in the outbox at start.
    #[arg(long, default_value_t = 100_000)]
    pub pending: usize,
    /// Conversations owed a re-read at start (they exist in the emulator).
    #[arg(long, default_value_t = 10_000)]
    pub conversations: usize,
    /// The emulator's and Convoy's request budget per minute (Genesys: 300).
    #[arg(long, default_value_t = 300)]
    pub requests_per_minute: u32,
    /// Give up (exit 1) if the drain or the reconciliation has not finished by then.
    #[arg(long, value_parser = parse_duration, default_value = "60m")]
    pub max_wait: Duration,
    /// How often to print progress on stderr (0s: never).
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub progress_every: Duration,
    /// Report format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

#[derive(Debug, Clone, Serialize)]
pub struct RestartReport {
    pub pending: usize,
    pub conversations: usize,
    pub requests_per_minute: u32,
    /// Seconds from `Daemon::start` to the first ready `/readyz`.
    pub ready_seconds: Option<f64>,
    /// Seconds until the outbox held no pending record.
    pub drained_seconds: Option<f64>,
    /// Seconds until no owed re-read was left.
    pub reconciled_seconds: Option<f64>,
    /// Records the CRM test server received.
    pub crm_records_received: u64,
    /// Owed re-reads still open at the end.
    pub rereads_left: usize,
    pub command: String,
}

impl RestartReport {
    pub fn finished(&self) -> bool {
        self.ready_seconds.is_some()
            && self.drained_seconds.is_some()
            && self.reconciled_seconds.is_some()
    }

    pub fn to_text(&self) -> String {
        let at = |value: Option<f64>| match value {
            Some(secs) => format!("{secs:.1} s"),
            None => "never (within --max-wait)".to_owned(),
        };
        format!(
            "convoy bench restart: {} records pending, {} conversations owed a re-read, \
             {} requests/minute\ncommand: {}\n\
             ready (/readyz):          {}\n\
             outbox drained to CRM:    {}\n\
             reconciliation finished:  {}\n\
             CRM records received: {}; re-reads left: {}\n",
            self.pending,
            self.conversations,
            self.requests_per_minute,
            self.command,
            at(self.ready_seconds),
            at(self.drained_seconds),
            at(self.reconciled_seconds),
            self.crm_records_received,
            self.rereads_left,
        )
    }
}

pub async fn run(args: RestartArgs) -> Result<bool, BenchError> {
    if args.requests_per_minute == 0 {
        return Err(BenchError::Usage(
            "--requests-per-minute must be above 0".to_owned(),
        ));
    }
    let emulator = Emulator::start(EmulatorOptions {
        rate_limit_per_minute: args.requests_per_minute,
        seed: 1,
        ..EmulatorOptions::default()
    })
    .await
    .map_err(|error| BenchError::Emulator(error.to_string()))?;
    let sink = match CrmSink::start(CrmSinkOptions::default()).await {
        Ok(sink) => sink,
        Err(error) => {
            emulator.stop().await;
            return Err(BenchError::Daemon(format!("CRM test server: {error}")));
        }
    };
    let result = run_against(&emulator, &sink, &args).await;
    sink.stop().await;
    emulator.stop().await;
    let report = result?;
    super::print_report(&report, args.format, |report| report.to_text())?;
    Ok(report.finished())
}

/// Opens `conversations` conversations in the emulator's org; their ids.
fn open_conversations(emulator: &Emulator, count: usize) -> Result<Vec<String>, BenchError> {
    let mut org = lock(&emulator.shared().org);
    let integrations = org.integration_ids();
    let now = Utc::now();
    let mut ids = Vec::with_capacity(count);
    for n in 0..count {
        let integration = &integrations[n % integrations.len().max(1)];
        let body = json!({
            "channel": {
                "messageId": format!("bench-restart-{n}"),
                "from": { "id": format!("customer-{n}@example.com"), "idType": "Email", "nickname": "Dana Customer" },
                "time": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            },
            "text": "Hello, my order has not arrived yet.",
        });
        let applied = org
            .open_inbound_message(integration, &body, true, now)
            .map_err(|error| BenchError::Emulator(format!("opening a conversation: {error}")))?;
        if let Some(id) = applied.body["conversationId"].as_str() {
            ids.push(id.to_owned());
        }
    }
    Ok(ids)
}

/// Longest wait for the emulator's synthetic agents to finish the opened conversations.
const ROUTING_SETTLE_LIMIT: Duration = Duration::from_secs(600);

/// Waits until the emulator's synthetic agents have finished routing the opened
/// conversations. In a real restart that happened while the daemon was down; left to run
/// after the clock starts, 10 000 conversations offered, answered and wrapped up in the
/// same few ticks would time the emulator's burst of snapshots, not Convoy's restart.
async fn settle_routing(emulator: &Emulator) -> Result<(), BenchError> {
    let started = Instant::now();
    loop {
        let routing = lock(&emulator.shared().org).conversations_being_routed();
        if routing == 0 {
            return Ok(());
        }
        if started.elapsed() >= ROUTING_SETTLE_LIMIT {
            return Err(BenchError::Emulator(format!(
                "{routing} conversations still being routed by the emulator after {} s",
                ROUTING_SETTLE_LIMIT.as_secs()
            )));
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes the outbox a stopped daemon would have left.
fn seed_outbox(
    path: &std::path::Path,
    pending: usize,
    conversations: &[String],
) -> Result<(), BenchError> {
    let fail = |error: crate::store::StoreError| {
        BenchError::Daemon(format!("seeding the outbox: {error}"))
    };
    let store = DurableStore::open(path).map_err(fail)?;
    let now = Utc::now();
    let mut written = 0;
    while written < pending {
        let chunk = SEED_CHUNK.min(pending - written);
        let records = (written..written + chunk)
            .map(|n| {
                let conversation = conversations
                    .get(n % conversations.len().max(1))
                    .cloned()
                    .unwrap_or_else(|| "bench-restart".to_owned());
                CrmRecord {
                    id: format!("{conversation}/message/bench-{n}/delivered"),
                    conversation_id: conversation,
                    kind: "message.status".to_owned(),
                    payload: json!({"schema": 1, "status": "delivered", "seq": n}).into(),
                }
            })
            .collect();
        store
            .commit(
                &[Commit {
                    records,
                    ..Commit::default()
                }],
                now,
            )
            .map_err(fail)?;
        written += chunk;
    }
    let owed: Vec<(ConversationId, u64)> = conversations
        .iter()
        .map(|id| (ConversationId::from(id.as_str()), 1))
        .collect();
    store.owe_rereads(&owed).map_err(fail)?;
    Ok(())
}

async fn run_against(
    emulator: &Emulator,
    sink: &CrmSink,
    args: &RestartArgs,
) -> Result<RestartReport, BenchError> {
    let folder = tempfile_dir()?;
    let outbox = folder.join("outbox.redb");
    let conversations = open_conversations(emulator, args.conversations)?;
    seed_outbox(&outbox, args.pending, &conversations)?;
    settle_routing(emulator).await?;
    let config = config_for(
        emulator,
        &format!(
            "write_back = \"off\"\nrequests_per_minute = {}\n",
            args.requests_per_minute
        ),
        &format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n[outbox]\npath = \"{}\"\nmax_records = {}\n[crm]\nendpoint = \"{}\"\n",
            outbox.display(),
            (args.pending as u64 * 2).max(1_000_000),
            sink.base_url()
        ),
    )
    .map_err(|error| BenchError::Daemon(error.to_string()))?;
    let started = Instant::now();
    let daemon = Daemon::start(&config, RunOptions::default())
        .await
        .map_err(|error| BenchError::Daemon(error.to_string()))?;
    let deadline = started + args.max_wait;
    let (mut ready, mut drained, mut reconciled) = (None, None, None);
    let mut rereads_left = conversations.len();
    let mut last_progress = Instant::now();
    loop {
        if ready.is_none() && daemon.board.readiness_now().ready {
            ready = Some(started.elapsed());
        }
        if drained.is_none() && daemon.gate.pending() == 0 {
            drained = Some(started.elapsed());
        }
        if let Ok(stats) = daemon.router.send(GetRouterStats).await {
            // The last run's owed ids are in the re-read queue too: not a sum.
            rereads_left = stats
                .stored_owed
                .max(stats.rereads_owed + stats.rereads_in_flight);
            if reconciled.is_none() && rereads_left == 0 {
                reconciled = Some(started.elapsed());
            }
        }
        if !args.progress_every.is_zero() && last_progress.elapsed() >= args.progress_every {
            last_progress = Instant::now();
            eprintln!(
                "bench restart: {:>6.0} s: ready {}; pending {}; re-reads left {}",
                started.elapsed().as_secs_f64(),
                ready.is_some(),
                daemon.gate.pending(),
                rereads_left
            );
        }
        let done = ready.is_some() && drained.is_some() && reconciled.is_some();
        if done || Instant::now() >= deadline {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    daemon.shutdown().await;
    let _ = std::fs::remove_dir_all(&folder);
    Ok(RestartReport {
        pending: args.pending,
        conversations: args.conversations,
        requests_per_minute: args.requests_per_minute,
        ready_seconds: ready.map(seconds),
        drained_seconds: drained.map(seconds),
        reconciled_seconds: reconciled.map(seconds),
        crm_records_received: sink.stats().records_received,
        rereads_left,
        command: format!(
            "convoy bench restart --pending {} --conversations {} --requests-per-minute {}",
            args.pending, args.conversations, args.requests_per_minute
        ),
    })
}

/// A private folder for the seeded outbox.
fn tempfile_dir() -> Result<std::path::PathBuf, BenchError> {
    let folder = std::env::temp_dir().join(format!(
        "convoy-bench-restart-{}-{}",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap_or_default()
    ));
    std::fs::create_dir_all(&folder)
        .map_err(|error| BenchError::Daemon(format!("{}: {error}", folder.display())))?;
    Ok(folder)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(drained: Option<f64>) -> RestartReport {
        RestartReport {
            pending: 100,
            conversations: 10,
            requests_per_minute: 300,
            ready_seconds: Some(0.8),
            drained_seconds: drained,
            reconciled_seconds: Some(2.5),
            crm_records_received: 100,
            rereads_left: 0,
            command: "convoy bench restart --pending 100 --conversations 10".to_owned(),
        }
    }

    #[test]
    fn a_restart_finished_only_when_ready_drained_and_reconciled() {
        assert!(report(Some(1.5)).finished());
        assert!(!report(None).finished());
        let text = report(None).to_text();
        assert!(text.contains("ready (/readyz):          0.8 s"), "{text}");
        assert!(text.contains("outbox drained to CRM:    never"), "{text}");
    }
}
