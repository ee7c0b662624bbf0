//! A real `nats-server -js` for the cluster tests: loopback only, an ephemeral port, a
//! fresh JetStream store directory, killed (and its directory removed) on drop.
//!
//! The tests never skip when `nats-server` is missing: CI (`.ci/run`) installs Debian's
//! package, and a missing server must fail loudly rather than pass silently.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the server may take to write its ports file on a loaded 2-core machine.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// A running `nats-server -js`.
pub struct NatsServer {
    child: Child,
    /// The store (`-sd`), the log and the ports file; removed with the server.
    dir: tempfile::TempDir,
    url: String,
}

impl NatsServer {
    /// Starts `nats-server -js` on 127.0.0.1 with a port the OS picks (`-p -1`), and
    /// returns once it accepts connections.
    pub fn start() -> NatsServer {
        let dir = tempfile::tempdir().expect("a temporary directory for nats-server");
        let store = dir.path().join("store");
        let child = Command::new("nats-server")
            .arg("-js")
            .args(["-a", "127.0.0.1", "-p", "-1"])
            .arg("-sd")
            .arg(&store)
            .arg("--ports_file_dir")
            .arg(dir.path())
            .arg("-l")
            .arg(dir.path().join("nats.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start nats-server ({error}): the cluster tests need it on PATH \
                     (Debian: apt-get install nats-server; .ci/run installs it)"
                )
            });
        let mut server = NatsServer {
            child,
            dir,
            url: String::new(),
        };
        server.url = server.wait_for_url();
        server
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }

    fn wait_for_url(&mut self) -> String {
        let until = Instant::now() + START_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("nats-server's status") {
                panic!("nats-server exited at start ({status}):\n{}", self.log());
            }
            if let Some(url) = read_ports_file(self.dir.path(), self.child.id()) {
                if TcpStream::connect(url.trim_start_matches("nats://")).is_ok() {
                    return url;
                }
            }
            assert!(
                Instant::now() < until,
                "nats-server did not listen within {START_DEADLINE:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The `INFO` line a client receives on connecting: the server's view of itself.
    pub fn info(&self) -> serde_json::Value {
        let stream = TcpStream::connect(self.url.trim_start_matches("nats://"))
            .expect("connect to nats-server");
        stream
            .set_read_timeout(Some(START_DEADLINE))
            .expect("a read timeout");
        let mut line = String::new();
        BufReader::new(stream)
            .read_line(&mut line)
            .expect("nats-server's INFO line");
        let json = line
            .strip_prefix("INFO ")
            .unwrap_or_else(|| panic!("expected an INFO line, got {line:?}"));
        serde_json::from_str(json.trim()).expect("INFO is JSON")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `nats-server_<pid>.ports` holds `{"nats":["nats://127.0.0.1:<port>"], ...}`.
fn read_ports_file(dir: &Path, pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(format!("nats-server_{pid}.ports"))).ok()?;
    let ports: serde_json::Value = serde_json::from_str(&text).ok()?;
    ports["nats"][0].as_str().map(str::to_owned)
}

#[test]
fn a_started_nats_server_listens_on_loopback_with_jetstream_and_is_gone_after_drop() {
    let server = NatsServer::start();
    let address = server.url().trim_start_matches("nats://").to_owned();
    assert!(
        address.starts_with("127.0.0.1:"),
        "bound to loopback: {address}"
    );
    let info = server.info();
    assert_eq!(info["jetstream"], true, "JetStream enabled: {info}");
    let store = server.dir.path().join("store");
    assert!(
        store.is_dir(),
        "JetStream writes to the fresh -sd directory"
    );

    let second = NatsServer::start();
    assert_ne!(second.url(), server.url(), "each server gets its own port");

    drop(server);
    let until = Instant::now() + START_DEADLINE;
    while TcpStream::connect(&address).is_ok() {
        assert!(
            Instant::now() < until,
            "nats-server still listens after drop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !store.exists(),
        "the store directory is removed with the server"
    );
}
