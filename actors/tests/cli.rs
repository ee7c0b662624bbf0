//! The first hour with the real `convoy` binary: every command at its defaults, the tools
//! composed by hand as the README tells, broken input fed to each. Each test runs the
//! built binary as a user would and checks what they see: exit codes, stdout, stderr.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(unix)]

use std::borrow::BorrowMut;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CONVOY: &str = env!("CARGO_BIN_EXE_convoy");
/// Generous: the machine running the tests may be loaded.
const DEADLINE: Duration = Duration::from_secs(60);

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// `convoy ARGS` with no `CONVOY_*` variable of the developer's leaking in.
fn convoy(args: &[&str]) -> Command {
    let mut command = Command::new(CONVOY);
    command.args(args).stdin(Stdio::null());
    for (name, _) in std::env::vars_os() {
        if name
            .to_string_lossy()
            .to_ascii_uppercase()
            .starts_with("CONVOY_")
        {
            command.env_remove(name);
        }
    }
    command.env_remove("RUST_LOG").env_remove("NO_COLOR");
    command
}

fn output(mut command: impl BorrowMut<Command>) -> Output {
    command.borrow_mut().output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A child process whose stderr lines are collected as they come.
struct Running {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn spawn(mut command: impl BorrowMut<Command>) -> (Running, ChildStdout) {
        let mut child = command
            .borrow_mut()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        (
            Running {
                child,
                stderr: lines,
            },
            stdout,
        )
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Polls until `find` returns something from the stderr lines, or panics at the deadline.
    fn wait_for_stderr<T>(&mut self, what: &str, find: impl Fn(&str) -> Option<T>) -> T {
        let until = Instant::now() + DEADLINE;
        loop {
            let found = self
                .stderr
                .lock()
                .unwrap()
                .iter()
                .find_map(|line| find(line));
            if let Some(found) = found {
                return found;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "exited ({status}) before {what}; stderr:\n{}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < until,
                "no {what} within {DEADLINE:?}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let until = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > until {
                let _ = self.child.kill();
                panic!(
                    "did not exit within {DEADLINE:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `convoy emulate --write-config DIR/convoy.toml` (heartbeats far apart: readiness must
/// not wait for one) and its start-up line.
fn emulate_with_config(dir: &Path) -> (Running, serde_json::Value, PathBuf) {
    let config = dir.join("convoy.toml");
    let (emulator, stdout) = Running::spawn(convoy(&[
        "emulate",
        "--heartbeat",
        "1h",
        "--write-config",
        config.to_str().unwrap(),
    ]));
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let started: serde_json::Value = serde_json::from_str(&line)
        .unwrap_or_else(|error| panic!("start-up line {line:?}: {error}"));
    (emulator, started, config)
}

/// `convoy run --config CONFIG` on a free admin port, logging JSON; returns the process
/// and the admin address it logged.
fn run_daemon(config: &Path) -> (Running, SocketAddr) {
    let mut command = convoy(&[
        "run",
        "--config",
        config.to_str().unwrap(),
        "--admin-listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
    ]);
    // The default `outbox.path` is relative to the working directory: each daemon gets the
    // config's own folder, so parallel tests never share a store (nor write into the tree).
    command.current_dir(config.parent().unwrap());
    let (mut daemon, _stdout) = Running::spawn(command);
    let admin = daemon.wait_for_stderr("the admin address", |line| {
        let event: serde_json::Value = serde_json::from_str(line).ok()?;
        event["local_addr"].as_str()?.parse::<SocketAddr>().ok()
    });
    (daemon, admin)
}

/// A minimal HTTP/1.0 exchange: the status code and the body.
fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(stream, "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
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

fn wait_until_ready(admin: SocketAddr, daemon: &Running) {
    let until = Instant::now() + DEADLINE;
    loop {
        let (status, body) = http(admin, "GET", "/readyz");
        if status == 200 {
            return;
        }
        assert!(
            Instant::now() < until,
            "/readyz still {status} after {DEADLINE:?}: {body}\nstderr:\n{}",
            daemon.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Finding 2 and 3: the emulator writes a configuration that `config check` accepts and
/// `run` connects with; a fresh, subscribed connection is ready without waiting for a
/// heartbeat (they are an hour apart here, so only the connection can make it ready).
/// Finding 11: the probes answer HEAD, and `/conversations` pages.
#[test]
fn emulate_writes_a_config_that_runs_and_is_ready_before_any_heartbeat() {
    let dir = tempfile::tempdir().unwrap();
    let (_emulator, started, config) = emulate_with_config(dir.path());
    assert_eq!(started["config_file"], config.to_str().unwrap());

    let check = output(convoy(&[
        "config",
        "check",
        "--config",
        config.to_str().unwrap(),
    ]));
    assert!(check.status.success(), "{}", text(&check.stderr));
    let shown = text(&check.stdout);
    assert!(shown.starts_with("configuration OK"), "{shown}");
    assert!(
        shown.contains(started["base_url"].as_str().unwrap()),
        "{shown}"
    );
    // The written secret file is private, so no warning about it.
    assert!(
        !text(&check.stderr).contains("warning"),
        "{}",
        text(&check.stderr)
    );

    let (daemon, admin) = run_daemon(&config);
    wait_until_ready(admin, &daemon);

    assert_eq!(http(admin, "HEAD", "/healthz").0, 200);
    assert_eq!(http(admin, "HEAD", "/readyz").0, 200);
    let (status, body) = http(admin, "GET", "/conversations?limit=1&finished=false");
    assert_eq!(status, 200, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["count"], 0);
}

/// Finding 10: SIGHUP shuts the daemon down gracefully, says so, and exits 0.
#[test]
fn sighup_shuts_down_gracefully_with_exit_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (_emulator, _started, config) = emulate_with_config(dir.path());
    let (mut daemon, admin) = run_daemon(&config);
    wait_until_ready(admin, &daemon);
    daemon.signal("HUP");
    let status = daemon.wait_exit();
    assert_eq!(
        status.code(),
        Some(0),
        "{status}; stderr:\n{}",
        daemon.stderr()
    );
    assert!(
        daemon.stderr().contains("SIGHUP"),
        "no log line names the signal:\n{}",
        daemon.stderr()
    );
}

/// Finding 2: the shipped example names the emulator's default client, secret and queues,
/// so with the port changed it connects (`config check` of the file is not enough).
#[test]
fn the_shipped_emulator_example_connects_to_emulate_at_its_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let (_emulator, started, _config) = emulate_with_config(dir.path());
    let example = std::fs::read_to_string(repo("config/examples/emulator.toml")).unwrap();
    let example = example.replace(
        "http://127.0.0.1:18080",
        started["base_url"].as_str().unwrap(),
    );
    let config = dir.path().join("example.toml");
    std::fs::write(&config, example).unwrap();
    let (daemon, admin) = run_daemon(&config);
    wait_until_ready(admin, &daemon);
}

/// Finding 5: the tools' own variables do not break the daemon's configuration.
#[test]
fn the_tools_variables_do_not_break_the_configuration() {
    let example = repo("config/examples/emulator.toml");
    let check = output(
        convoy(&["config", "check", "--config", example.to_str().unwrap()])
            .env("CONVOY_SIM_CLIENT_SECRET", "x")
            .env("CONVOY_SIM_CLIENT_ID", "y")
            .env("CONVOY_CRM_SINK_AUTH", "bearer:t"),
    );
    assert!(check.status.success(), "{}", text(&check.stderr));
}

/// Finding 12: an environment problem names the variable as it was set.
#[test]
fn environment_problems_name_the_variable_as_set() {
    let example = repo("config/examples/emulator.toml");
    let check = output(
        convoy(&["config", "check", "--config", example.to_str().unwrap()])
            .env("CONVOY_SLAA__READ", "1m")
            .env("convoy_sla__read", "1m"),
    );
    assert_eq!(check.status.code(), Some(2));
    let stderr = text(&check.stderr);
    assert!(stderr.contains("(from env CONVOY_SLAA__READ)"), "{stderr}");
    assert!(stderr.contains("(from env convoy_sla__read)"), "{stderr}");
    assert!(
        stderr.contains("did you mean CONVOY_SLA__READ?"),
        "{stderr}"
    );
}

/// Finding 12: a plain string for a list in a file is refused.
#[test]
fn a_string_for_a_list_in_a_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(repo("config/examples/emulator.toml")).unwrap();
    let start = example.find("queues = [").unwrap();
    let end = start + example[start..].find(']').unwrap() + 1;
    let broken = format!(
        "{}queues = \"8dd0d809-2fe7-4a7c-9628-1538738b07e2,7623eae2-7852-40b9-bd12-b16a66d81610\"{}",
        &example[..start],
        &example[end..]
    );
    let config = dir.path().join("convoy.toml");
    std::fs::write(&config, broken).unwrap();
    let check = output(convoy(&[
        "config",
        "check",
        "--config",
        config.to_str().unwrap(),
    ]));
    assert_eq!(check.status.code(), Some(2));
    assert!(
        text(&check.stderr).contains("genesys.queues"),
        "{}",
        text(&check.stderr)
    );
}

/// Issue 12: `config check` shows the cluster is off by default, and describes an enabled
/// cluster's role.
#[test]
fn config_check_shows_the_cluster_off_and_each_enabled_role() {
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(repo("config/examples/emulator.toml")).unwrap();
    let config = dir.path().join("convoy.toml");
    std::fs::write(&config, &example).unwrap();
    let check = output(convoy(&[
        "config",
        "check",
        "--config",
        config.to_str().unwrap(),
    ]));
    assert!(check.status.success(), "{}", text(&check.stderr));
    assert!(
        text(&check.stdout).contains("cluster:    off (one process, no NATS)"),
        "{}",
        text(&check.stdout)
    );

    for role in ["worker", "ingest", "both"] {
        let enabled = format!(
            "{example}\n[cluster]\nenabled = true\nnats_url = \"nats://127.0.0.1:4222\"\nrole = \"{role}\"\n"
        );
        std::fs::write(&config, enabled).unwrap();
        let check = output(convoy(&[
            "config",
            "check",
            "--config",
            config.to_str().unwrap(),
        ]));
        assert!(check.status.success(), "{role}: {}", text(&check.stderr));
        let stdout = text(&check.stdout);
        assert!(
            stdout.contains(&format!(
                "cluster:    {role} via nats://127.0.0.1:4222, 64 partitions, stream CONVOY_FRAMES"
            )),
            "{stdout}"
        );
    }
}

/// Finding 13: a secret file others can read is a warning, not silence.
#[test]
fn a_secret_file_others_can_read_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "emulator-secret\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = dir.path().join("convoy.toml");
    std::fs::write(
        &config,
        "[genesys]\nregion = \"mypurecloud.ie\"\nclient_id = \"7de3af06-c0b3-4f9b-af45-72f4a1403797\"\n\
         client_secret_file = \"secret\"\nqueues = [\"4c2b6f0e-2a1d-4b8e-9f3a-0c1d2e3f4a5b\"]\n",
    )
    .unwrap();
    let check = output(convoy(&[
        "config",
        "check",
        "--config",
        config.to_str().unwrap(),
    ]));
    assert!(check.status.success(), "{}", text(&check.stderr));
    let stderr = text(&check.stderr);
    assert!(
        stderr.contains("warning") && stderr.contains("0644"),
        "{stderr}"
    );
    assert!(!stderr.contains("emulator-secret"));
}

/// Findings 7 and 12: a taken admin port stops `run` before anything starts, with one
/// error naming the address, and logs in a pipe carry no colour codes.
#[test]
fn a_taken_admin_port_is_one_clear_error_without_colour_in_a_pipe() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let example = repo("config/examples/emulator.toml");
    let run = output(convoy(&[
        "run",
        "--config",
        example.to_str().unwrap(),
        "--admin-listen",
        &address,
    ]));
    assert_eq!(run.status.code(), Some(3));
    let stderr = text(&run.stderr);
    assert!(stderr.contains(&address), "{stderr}");
    assert!(
        !stderr.contains("Starting the notification stream"),
        "{stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in a pipe: {stderr:?}"
    );
}

/// Finding 12: the emulator and the CRM sink name the address they could not listen on.
#[test]
fn a_taken_port_is_named_by_emulate_and_crm_sink() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    for tool in ["emulate", "crm-sink"] {
        let result = output(convoy(&[tool, "--listen", &address]));
        assert_eq!(result.status.code(), Some(1), "{tool}");
        let stderr = text(&result.stderr);
        assert!(stderr.contains(&address), "{tool}: {stderr}");
    }
}

/// Finding 8: usage problems exit 2, as the README's table says.
#[test]
fn usage_problems_exit_two() {
    let crm = output(convoy(&["crm-sink", "--error-ratio", "2"]));
    assert_eq!(crm.status.code(), Some(2), "{}", text(&crm.stderr));
    let inspect = output(convoy(&["inspect", "/nonexistent/capture.jsonl"]));
    assert_eq!(inspect.status.code(), Some(2), "{}", text(&inspect.stderr));
    assert!(text(&inspect.stderr).contains("/nonexistent/capture.jsonl"));
    let demo = output(convoy(&[
        "demo",
        "--scenario",
        "/nonexistent/scenario.toml",
    ]));
    assert_eq!(demo.status.code(), Some(2), "{}", text(&demo.stderr));
    assert!(text(&demo.stderr).contains("/nonexistent/scenario.toml"));
}

const HEARTBEAT: &str =
    r#"{"topicName":"channel.metadata","eventBody":{"message":"WebSocket Heartbeat"}}"#;

/// Finding 6: one bad line (not UTF-8) is one malformed frame with its line number; the
/// others are reported, each with index and line, and the run exits 2.
#[test]
fn inspect_reports_a_line_that_is_not_utf8_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.jsonl");
    let mut bytes = format!("{HEARTBEAT}\n").into_bytes();
    bytes.extend_from_slice(b"{\"topicName\":\"\xff\"}\n");
    bytes.extend_from_slice(format!("{HEARTBEAT}\n").as_bytes());
    std::fs::write(&path, bytes).unwrap();
    let result = output(convoy(&["inspect", path.to_str().unwrap()]));
    assert_eq!(result.status.code(), Some(2));
    let stderr = text(&result.stderr);
    assert!(stderr.contains("capture.jsonl:2:"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let reports: Vec<serde_json::Value> = serde_json::Deserializer::from_slice(&result.stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(reports.len(), 3);
    assert_eq!(reports[2]["index"], 3);
    assert_eq!(reports[2]["line"], 3);
    assert_eq!(reports[2]["classification"], "heartbeat");
}

/// Finding 6: a byte-order mark is no error; a truncated pretty-printed frame is one.
#[test]
fn inspect_skips_a_bom_and_reports_a_truncated_document_once() {
    let dir = tempfile::tempdir().unwrap();
    let bom = dir.path().join("bom.jsonl");
    std::fs::write(&bom, format!("\u{feff}{HEARTBEAT}\n{HEARTBEAT}\n")).unwrap();
    let result = output(convoy(&["inspect", bom.to_str().unwrap()]));
    assert!(result.status.success(), "{}", text(&result.stderr));

    let fixture = std::fs::read_to_string(repo(
        "tests/fixtures/genesys/ws_event_user_conversations_message_alerting.json",
    ))
    .unwrap();
    let truncated = dir.path().join("truncated.json");
    std::fs::write(&truncated, &fixture[..fixture.len() / 2]).unwrap();
    let result = output(convoy(&["inspect", truncated.to_str().unwrap()]));
    assert_eq!(result.status.code(), Some(2));
    let stderr = text(&result.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("unexpected end of input"), "{stderr}");
}

/// Finding 6: every key is camelCase, attachments included.
#[test]
fn inspect_output_is_camel_case() {
    let fixture = repo("tests/fixtures/genesys/ws_event_user_conversations_message_alerting.json");
    let result = output(convoy(&["inspect", fixture.to_str().unwrap()]));
    assert!(result.status.success(), "{}", text(&result.stderr));
    let stdout = text(&result.stdout);
    assert!(
        stdout.contains("\"mimeType\"") && stdout.contains("\"sizeBytes\""),
        "{stdout}"
    );
    assert!(!stdout.contains("mime_type") && !stdout.contains("size_bytes"));
}

/// Finding 9: a reader that goes away ends `inspect` quietly with 0, however much was
/// left to print (far more than a pipe holds, so the closed pipe is always met).
#[test]
fn inspect_into_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many.jsonl");
    std::fs::write(&path, format!("{HEARTBEAT}\n").repeat(20_000)).unwrap();
    let mut child = convoy(&["inspect", path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let result = child.wait_with_output().unwrap();
    assert_eq!(result.status.code(), Some(0), "{}", text(&result.stderr));
    assert_eq!(text(&result.stderr), "");
}

/// Finding 9: `config check` into a closed pipe is quiet; into a full disk it is one
/// error, never a panic.
#[test]
fn config_check_into_a_closed_pipe_or_a_full_disk_does_not_panic() {
    let example = repo("config/examples/emulator.toml");
    // A pipe whose reader is gone: the stdin of a process that has already exited.
    let mut reader = Command::new("true").stdin(Stdio::piped()).spawn().unwrap();
    let writer = reader.stdin.take().unwrap();
    assert!(reader.wait().unwrap().success());
    let closed =
        output(convoy(&["config", "check", "--config", example.to_str().unwrap()]).stdout(writer));
    assert_eq!(closed.status.code(), Some(0), "{}", text(&closed.stderr));
    assert_eq!(text(&closed.stderr), "");

    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let result =
        output(convoy(&["config", "check", "--config", example.to_str().unwrap()]).stdout(full));
    assert_eq!(result.status.code(), Some(1), "{}", text(&result.stderr));
    let stderr = text(&result.stderr);
    assert!(stderr.contains("standard output"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Finding 14: the version names the commit and the build profile; completions exist for
/// bash, zsh and fish.
#[test]
fn version_and_completions() {
    let version = output(convoy(&["--version"]));
    assert!(version.status.success());
    let version = text(&version.stdout);
    assert!(
        version.starts_with("convoy ")
            && version.contains("(commit ")
            && version.contains(" build)"),
        "{version}"
    );
    for shell in ["bash", "zsh", "fish"] {
        let script = output(convoy(&["completions", shell]));
        assert!(script.status.success(), "{shell}");
        assert!(text(&script.stdout).contains("inspect"), "{shell}");
    }
}

/// Finding 4 and 13: `demo --help` lists what the demo changes, `emulate --help` shows
/// the default credentials.
#[test]
fn help_tells_the_demo_changes_and_the_emulator_credentials() {
    let demo = text(&output(convoy(&["demo", "--help"])).stdout);
    assert!(demo.contains("admin.listen = 127.0.0.1:0"), "{demo}");
    assert!(
        demo.contains("CONVOY_* environment variables are ignored"),
        "{demo}"
    );
    let emulate = text(&output(convoy(&["emulate", "--help"])).stdout);
    assert!(emulate.contains("convoy-emulator-secret"), "{emulate}");
    assert!(
        emulate.contains("0c6f3f4e-6a3e-4c1e-9a35-2d2f1b7c9e01"),
        "{emulate}"
    );
}

/// Finding 4: the caller's `CONVOY_*` variables do not reach the demo's Convoy.
#[test]
fn demo_ignores_the_callers_convoy_variables() {
    let demo = output(
        convoy(&["demo", "--conversations", "2"])
            .env("CONVOY_GENESYS__REGION", "mypurecloud.xx")
            .env("CONVOY_ADMIN__LISTEN", "not-an-address"),
    );
    assert!(
        demo.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        text(&demo.stdout),
        text(&demo.stderr)
    );
}

/// Finding 13: the repository stands alone: a LICENSE, and every relative link of the
/// README and docs/ leads to a file in it.
#[test]
fn the_documentation_stands_alone() {
    let license = std::fs::read_to_string(repo("LICENSE")).unwrap();
    assert!(license.contains("Apache License") && license.contains("Version 2.0"));
    let mut documents = vec![repo("README.md")];
    for entry in std::fs::read_dir(repo("docs")).unwrap() {
        let path = entry.unwrap().path();
        // Documents only: docs/ also holds folders of generated charts (docs/bench/).
        if path.extension().is_some_and(|extension| extension == "md") {
            documents.push(path);
        }
    }
    for document in documents {
        let body = std::fs::read_to_string(&document).unwrap();
        assert!(
            !body.contains("shared/"),
            "{} points outside the repository",
            document.display()
        );
        for link in body.split("](").skip(1) {
            let target = link.split(')').next().unwrap_or_default();
            let target = target.split('#').next().unwrap_or_default();
            if target.is_empty() || target.contains("://") {
                continue;
            }
            let resolved = document.parent().unwrap().join(target);
            assert!(
                resolved.exists(),
                "{} links to {target}, which does not exist",
                document.display()
            );
        }
    }
}

/// The quick start composed by hand at defaults: `emulate --write-config F`, then
/// `crm-sink --write-config F` adds `[crm] endpoint` to the same file, and `run --config
/// F` syncs to that sink — no TOML edited by hand, both on free ports.
#[test]
fn crm_sink_points_the_emulators_config_at_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (_emulator, emulated, config) = emulate_with_config(dir.path());
    let before = std::fs::read_to_string(&config).unwrap();

    let (_sink, stdout) = Running::spawn(convoy(&[
        "crm-sink",
        "--write-config",
        config.to_str().unwrap(),
    ]));
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let sink: serde_json::Value = serde_json::from_str(&line)
        .unwrap_or_else(|error| panic!("start-up line {line:?}: {error}"));
    let base_url = sink["base_url"].as_str().unwrap().to_owned();
    assert_eq!(sink["config_file"], config.to_str().unwrap());
    let after = std::fs::read_to_string(&config).unwrap();
    assert!(after.starts_with(&before), "{after}");
    assert!(
        after.ends_with(&format!("[crm]\nendpoint = \"{base_url}\"\n")),
        "{after}"
    );

    let check = output(convoy(&[
        "config",
        "check",
        "--config",
        config.to_str().unwrap(),
    ]));
    assert!(check.status.success(), "{}", text(&check.stderr));

    let (daemon, admin) = run_daemon(&config);
    wait_until_ready(admin, &daemon);
    let simulate = output(convoy(&[
        "simulate",
        "--base-url",
        emulated["base_url"].as_str().unwrap(),
        "--conversations",
        "2",
        "--scenario",
        repo("config/examples/scenario-fast.toml").to_str().unwrap(),
    ]));
    assert!(simulate.status.success(), "{}", text(&simulate.stderr));
    let sink_addr: SocketAddr = base_url.trim_start_matches("http://").parse().unwrap();
    let until = Instant::now() + DEADLINE;
    loop {
        let (status, body) = http(sink_addr, "GET", "/_sink/stats");
        assert_eq!(status, 200, "{body}");
        let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
        if stats["accepted"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(
            Instant::now() < until,
            "no record reached the sink within {DEADLINE:?}: {body}\ndaemon stderr:\n{}",
            daemon.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn snapshot_names_a_bad_argument_and_reads_outcomes_through_a_running_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let (_emulator, _, config) = emulate_with_config(dir.path());
    let config = config.to_str().unwrap();
    let bad = output(convoy(&[
        "snapshot",
        "-c",
        config,
        "--from",
        "2026-01-01T00:00:00Z",
        "--to",
        "soon",
    ]));
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
    assert!(
        text(&bad.stderr).contains("--to: \"soon\""),
        "{}",
        text(&bad.stderr)
    );

    let (daemon, admin) = run_daemon(Path::new(config));
    wait_until_ready(admin, &daemon);
    let out = dir.path().join("qa");
    let now = chrono::Utc::now();
    let from = (now - chrono::Duration::hours(1))
        .format("%Y-%m-%dT%H:00:00Z")
        .to_string();
    let to = (now + chrono::Duration::hours(1))
        .format("%Y-%m-%dT%H:00:00Z")
        .to_string();
    let mut command = convoy(&[
        "snapshot",
        "-c",
        config,
        "--from",
        &from,
        "--to",
        &to,
        "--format",
        "json",
        "--out",
        out.to_str().unwrap(),
    ]);
    // The daemon holds the outbox (`outbox.path` is relative to the config's folder here):
    // the outcomes come through its admin API.
    command
        .current_dir(dir.path())
        .env("CONVOY_ADMIN__LISTEN", admin.to_string());
    let taken = output(command);
    assert_eq!(taken.status.code(), Some(0), "{}", text(&taken.stderr));
    assert!(text(&taken.stdout).contains("reconciliation with the aggregates: clean"));
    let folders: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
    assert_eq!(folders.len(), 1);
    let folder = folders[0].as_ref().unwrap().path();
    assert!(folder.join("manifest.json").is_file());
    assert!(folder.join("snapshot.json").is_file());
    assert!(!folder.join("queues.csv").exists(), "--format json: no CSV");
}
