//! The shipped service files: `contrib/convoy.service` passes `systemd-analyze verify`, and
//! the settings the unit and the `Containerfile` hand Convoy name keys Convoy really reads.
//!
//! `systemd-analyze` exists on CI (`.ci/run` installs it when missing), so there a missing
//! binary fails the test; elsewhere (env `CI` unset) the verify test says it could not run
//! and passes. The container image cannot be built here (no registry), so the
//! `Containerfile` is checked by reading it.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(unix)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use convoy::config::defaults::SHUTDOWN_DEADLINE;
use convoy::config::key_spec;
use convoy::duration::parse_duration;

const CONVOY: &str = env!("CARGO_BIN_EXE_convoy");
/// Generous: the machine running the tests may be loaded.
const DEADLINE: Duration = Duration::from_secs(60);
const UNIT_EXEC: &str = "/usr/local/bin/convoy run --config /etc/convoy/convoy.toml";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn unit() -> String {
    std::fs::read_to_string(repo("contrib/convoy.service")).expect("read contrib/convoy.service")
}

/// The values of every `Key=` line of the unit, in order.
fn settings<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|line| line.trim().strip_prefix(key)?.strip_prefix('='))
        .collect()
}

/// `CONVOY_OUTBOX__PATH` → `outbox.path`.
fn dotted_key(env_name: &str) -> String {
    env_name
        .trim_start_matches("CONVOY_")
        .to_ascii_lowercase()
        .replace("__", ".")
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let version = Command::new("systemd-analyze")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if version.is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-analyze is not installed, and CI is set: install systemd (.ci/run does) \
             so contrib/convoy.service is verified"
        );
        eprintln!("systemd-analyze is not installed; contrib/convoy.service was not verified");
        return;
    }
    // verify checks that ExecStart's program exists and is executable: point a copy of the
    // unit, under the same name, at the binary this build made.
    let dir = tempfile::tempdir().expect("temp dir");
    let unit = unit();
    assert_eq!(settings(&unit, "ExecStart"), [UNIT_EXEC]);
    let copy = dir.path().join("convoy.service");
    std::fs::write(
        &copy,
        unit.replace(
            "ExecStart=/usr/local/bin/convoy ",
            &format!("ExecStart={CONVOY} "),
        ),
    )
    .expect("write the unit's copy");

    let mut child = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start systemd-analyze");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for systemd-analyze") {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("systemd-analyze verify did not finish within {DEADLINE:?}; killed it");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = format!("{}{}", out.join().unwrap(), err.join().unwrap());
    // verify exits 0 even for unknown keys and unparsable values (it ignores them, as
    // systemd would), so any line about the unit counts as a failure too.
    let complaints: Vec<&str> = output
        .lines()
        .filter(|line| line.contains("convoy.service"))
        .collect();
    assert!(
        status.success() && complaints.is_empty(),
        "systemd-analyze verify ({status}) objects to contrib/convoy.service:\n{output}"
    );
}

#[test]
fn the_unit_and_the_containerfile_set_only_real_configuration_keys() {
    let unit = unit();
    let containerfile = std::fs::read_to_string(repo("Containerfile")).expect("read Containerfile");
    let mut names: Vec<String> = settings(&unit, "Environment")
        .into_iter()
        .filter_map(|value| value.split_once('=').map(|(name, _)| name.to_owned()))
        .collect();
    names.extend(
        containerfile
            .split_whitespace()
            .filter_map(|word| word.split_once('='))
            .map(|(name, _)| name)
            .filter(|name| name.starts_with("CONVOY_"))
            .map(str::to_owned),
    );
    for wanted in ["CONVOY_OUTBOX__PATH", "CONVOY_GENESYS__CLIENT_SECRET_FILE"] {
        assert!(
            names.iter().any(|name| name == wanted),
            "{wanted} missing: {names:?}"
        );
    }
    for name in &names {
        assert!(
            key_spec(&dotted_key(name)).is_some(),
            "{name} is not a configuration key Convoy reads"
        );
    }
}

#[test]
fn the_unit_keeps_state_in_its_state_directory_and_waits_out_a_graceful_shutdown() {
    let unit = unit();
    assert_eq!(settings(&unit, "StateDirectory"), ["convoy"]);
    assert!(settings(&unit, "Environment").contains(&"CONVOY_OUTBOX__PATH=%S/convoy/outbox.redb"));
    assert_eq!(settings(&unit, "KillSignal"), ["SIGTERM"]);
    assert_eq!(settings(&unit, "Restart"), ["on-failure"]);
    let stop = settings(&unit, "TimeoutStopSec");
    let [stop] = stop.as_slice() else {
        panic!("one TimeoutStopSec expected, got {stop:?}")
    };
    let stop = parse_duration(stop).expect("TimeoutStopSec written like 60s");
    assert!(
        stop > SHUTDOWN_DEADLINE,
        "TimeoutStopSec {stop:?} must exceed shutdown.deadline {SHUTDOWN_DEADLINE:?}"
    );
    // The credential the unit loads is the file Convoy is told to read.
    assert_eq!(
        settings(&unit, "LoadCredential"),
        ["genesys-client-secret:/etc/convoy/genesys-client-secret"]
    );
    assert!(settings(&unit, "Environment")
        .contains(&"CONVOY_GENESYS__CLIENT_SECRET_FILE=%d/genesys-client-secret"));
}
