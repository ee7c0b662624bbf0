//! `convoy outbox status|dead|retry-dead` with the real binary, on an outbox file whose
//! content is committed through the store API: first on the file itself (no daemon), then
//! with the file held open by an admin server in this process, which forces the command
//! through the admin routes (the path a running daemon takes).
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(unix)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use convoy::crm::CrmRecord;
use convoy_actors::admin::{AdminServer, ConversationViews, HealthBoard, WriteStatuses};
use convoy_actors::store::{Commit, DeadLetterNew, DeliveryFailure, DurableStore};
use convoy_actors::telemetry::Telemetry;
use serde_json::Value;

const CONVOY: &str = env!("CARGO_BIN_EXE_convoy");
/// Generous: the machine running the tests may be loaded.
const DEADLINE: Duration = Duration::from_secs(60);

fn at(second: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + second, 0).unwrap()
}

/// A JSON document as a commit carries it.
fn raw(value: Value) -> Box<serde_json::value::RawValue> {
    serde_json::value::to_raw_value(&value).unwrap()
}

fn record(id: &str) -> CrmRecord {
    CrmRecord {
        id: id.to_owned(),
        conversation_id: "conv-1".to_owned(),
        kind: "message.status".to_owned(),
        payload: serde_json::json!({ "schema": 1 }).into(),
    }
}

/// Three records (r2 dead-lettered after a 422), one pending summary, one open SLA book.
fn fill(store: &DurableStore) {
    store
        .commit(
            &[Commit {
                records: vec![record("r1"), record("r2"), record("r3")],
                summaries: vec![("conv-1".to_owned(), raw(serde_json::json!({ "n": 1 })), 1)],
                sla_books: vec![(
                    "conv-1".to_owned(),
                    Some(raw(serde_json::json!({ "open": 1 }))),
                )],
                ..Commit::default()
            }],
            at(0),
        )
        .unwrap();
    store
        .dead_letter(&[DeadLetterNew {
            seq: 2,
            failure: DeliveryFailure {
                status: Some(422),
                reason: "the CRM refused the record".to_owned(),
                body_excerpt: Some(r#"{"error":"invalid_payload"}"#.to_owned()),
                attempts: 1,
                first_attempt_at: at(5),
                last_attempt_at: at(5),
                idempotency_key: Some("batch-key-1".to_owned()),
            },
        }])
        .unwrap();
}

/// A complete configuration naming `outbox` and `admin`.
/// The admin API's bearer token in these tests (`admin.token`).
const ADMIN_TOKEN: &str = "adm1n-t0ken";

fn config(dir: &Path, outbox: &Path, admin: SocketAddr) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let secret = dir.join("secret");
    std::fs::write(&secret, "a-secret\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let path = dir.join("convoy.toml");
    std::fs::write(
        &path,
        format!(
            "[genesys]\nregion = \"mypurecloud.ie\"\n\
             client_id = \"7de3af06-c0b3-4f9b-af45-72f4a1403797\"\n\
             client_secret_file = \"secret\"\nqueues = [\"4c2b6f0e-2a1d-4b8e-9f3a-0c1d2e3f4a5b\"]\n\
             [outbox]\npath = {:?}\n[admin]\nlisten = \"{admin}\"\ntoken = \"{ADMIN_TOKEN}\"\n",
            outbox.display().to_string()
        ),
    )
    .unwrap();
    path
}

/// `convoy outbox ARGS --config CONFIG`, no `CONVOY_*` variable leaking in.
fn outbox(config: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(CONVOY);
    command
        .arg("outbox")
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null());
    for (name, _) in std::env::vars_os() {
        if name
            .to_string_lossy()
            .to_ascii_uppercase()
            .starts_with("CONVOY_")
        {
            command.env_remove(name);
        }
    }
    command.output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// An address nothing listens on (bound, then released).
fn unused_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[test]
fn without_a_daemon_the_commands_read_and_fix_the_file_itself() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.redb");
    fill(&DurableStore::open(&path).unwrap());
    let config = config(dir.path(), &path, unused_address());

    let status = json(&outbox(&config, &["status", "--format", "json"]));
    assert_eq!(status["through_daemon"], false, "{status}");
    assert_eq!(status["status"]["pending"], 2, "{status}");
    assert_eq!(status["status"]["dead_lettered"], 1);
    assert_eq!(status["status"]["summaries_pending"], 1);
    assert_eq!(status["status"]["sla_books"], 1);
    assert!(status["oldest_pending_age_seconds"].as_u64().unwrap() > 0);
    let text = stdout(&outbox(&config, &["status"]));
    assert!(text.contains("pending records:    2"), "{text}");
    assert!(text.contains("read directly"), "{text}");

    let dead = json(&outbox(&config, &["dead", "--format", "json"]));
    assert_eq!(dead["count"], 1);
    let letter = &dead["dead_letters"][0];
    assert_eq!(letter["record"]["id"], "r2");
    assert_eq!(letter["record"]["conversationId"], "conv-1");
    assert_eq!(letter["status"], 422);
    assert_eq!(letter["idempotency_key"], "batch-key-1");
    let text = stdout(&outbox(&config, &["dead"]));
    for expected in [
        "r2 (conversation conv-1, kind message.status)",
        "the CRM refused the record",
        "422",
        "invalid_payload",
        "batch-key-1",
    ] {
        assert!(text.contains(expected), "{expected} in\n{text}");
    }

    let retry = outbox(&config, &["retry-dead", "--id", "r2", "--id", "typo"]);
    assert_eq!(
        retry.status.code(),
        Some(1),
        "an unknown id fails the command"
    );
    let text = stdout(&retry);
    assert!(text.contains("moved 1 dead letter(s)"), "{text}");
    assert!(text.contains("not a dead letter: typo"), "{text}");

    let store = DurableStore::open(&path).unwrap();
    let pending: Vec<String> = store
        .pending_records(None, 10)
        .unwrap()
        .into_iter()
        .map(|pending| pending.record.id)
        .collect();
    assert_eq!(pending, vec!["r1", "r3", "r2"], "r2 is back, at the end");
    assert!(store.dead_letters().unwrap().is_empty());
}

#[test]
fn retry_dead_needs_ids_or_all_and_a_missing_file_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("never-written.redb");
    let config = config(dir.path(), &path, unused_address());

    let neither = outbox(&config, &["retry-dead"]);
    assert_eq!(neither.status.code(), Some(2), "a usage error");

    let missing = outbox(&config, &["status"]);
    assert_eq!(missing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("never-written.redb") && stderr.contains("does not exist"),
        "{stderr}"
    );
    assert!(!path.exists());
}

/// Sends one HTTP/1.0 request (with `Authorization: Bearer TOKEN` when `token` is given)
/// and returns the status and body.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let authorization = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         {authorization}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// An admin server in its own actix System, holding the outbox file open as the daemon
/// does; the store is attached when `attach` fires, the System ends when `stop` fires.
struct HeldOutbox {
    addr: SocketAddr,
    attach: Option<tokio::sync::oneshot::Sender<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HeldOutbox {
    fn start(store: DurableStore) -> HeldOutbox {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (attach, attach_rx) = tokio::sync::oneshot::channel::<()>();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let server = AdminServer::start(
                    "127.0.0.1:0".parse().unwrap(),
                    Arc::new(HealthBoard::new(Duration::from_secs(60))),
                    ConversationViews::default(),
                    WriteStatuses::default(),
                    Telemetry::install().unwrap(),
                    convoy_actors::admin::OutboxView {
                        gate: Arc::new(convoy_actors::outbox_writer::OutboxGate::new(1_000, 0)),
                        sla: convoy_actors::sla::SlaViews::default(),
                    },
                    Some(convoy::config::Secret::new(ADMIN_TOKEN.to_owned())),
                )
                .unwrap();
                addr_tx.send(server.local_addr()).unwrap();
                let store = Arc::new(store);
                if attach_rx.await.is_ok() {
                    server.attach_outbox(store);
                    let _ = stop_rx.await;
                }
                server.stop().await;
            });
        });
        let addr = addr_rx.recv_timeout(DEADLINE).unwrap();
        HeldOutbox {
            addr,
            attach: Some(attach),
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for HeldOutbox {
    fn drop(&mut self) {
        drop(self.attach.take());
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn while_the_file_is_held_the_commands_go_through_the_admin_api() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.redb");
    let store = DurableStore::open(&path).unwrap();
    fill(&store);
    let mut held = HeldOutbox::start(store);
    let config = config(dir.path(), &path, held.addr);

    let (status, body) = http(held.addr, "GET", "/outbox", "", Some(ADMIN_TOKEN));
    assert_eq!(status, 503, "no store attached yet: {body}");
    // admin.token is set: nothing but the probes answers without it.
    let (status, body) = http(held.addr, "GET", "/outbox", "", None);
    assert_eq!(status, 401, "{body}");
    let (status, _) = http(held.addr, "GET", "/outbox", "", Some("wrong"));
    assert_eq!(status, 401);
    let (status, _) = http(held.addr, "POST", "/outbox/retry-dead", "{}", None);
    assert_eq!(status, 401);
    let (status, _) = http(held.addr, "GET", "/healthz", "", None);
    assert_eq!(status, 200);
    held.attach.take().unwrap().send(()).unwrap();

    let status = json(&outbox(&config, &["status", "--format", "json"]));
    assert_eq!(status["through_daemon"], true, "{status}");
    assert_eq!(status["status"]["pending"], 2);
    assert_eq!(status["status"]["dead_lettered"], 1);
    let text = stdout(&outbox(&config, &["status"]));
    assert!(text.contains("held by the daemon"), "{text}");

    let dead = json(&outbox(&config, &["dead", "--format", "json"]));
    assert_eq!(dead["dead_letters"][0]["record"]["id"], "r2");
    assert_eq!(
        dead["dead_letters"][0]["reason"],
        "the CRM refused the record"
    );

    let (status, body) = http(
        held.addr,
        "POST",
        "/outbox/retry-dead",
        r#"{"ids":[]}"#,
        Some(ADMIN_TOKEN),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid_request"), "{body}");

    let retry = outbox(&config, &["retry-dead", "--all"]);
    assert!(
        retry.status.success(),
        "{}",
        String::from_utf8_lossy(&retry.stderr)
    );
    assert!(stdout(&retry).contains("moved 1 dead letter(s)"));

    let (status, body) = http(held.addr, "GET", "/outbox", "", Some(ADMIN_TOKEN));
    assert_eq!(status, 200);
    let counts: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (counts["pending"].as_u64(), counts["dead_lettered"].as_u64()),
        (Some(3), Some(0))
    );
}

#[test]
fn a_held_file_without_a_reachable_daemon_names_both() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.redb");
    let _held = DurableStore::open(&path).unwrap();
    let config = config(dir.path(), &path, unused_address());
    let output = outbox(&config, &["status"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("held by another process") && stderr.contains("did not answer"),
        "{stderr}"
    );
}
