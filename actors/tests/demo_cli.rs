//! `convoy demo` as a newcomer runs it: the real binary with a small count, its built-in
//! scenario (messages with photos, every receipt case, voice calls with transcripts,
//! abandoned queue waits) and its faults in the middle (a CRM outage, a socket drop).
//! It must exit 0 with a summary table whose every checked line agrees, and stay quiet on
//! stderr when stderr is not a terminal (no progress line).
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(unix)]

use std::process::{Command, Output, Stdio};

const CONVOY: &str = env!("CARGO_BIN_EXE_convoy");

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
    command.env_remove("RUST_LOG");
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The table line starting with `what`, its columns joined by single spaces.
fn row(table: &str, what: &str) -> String {
    table
        .lines()
        .find(|line| line.starts_with(what))
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| panic!("no line {what:?} in\n{table}"))
}

#[test]
fn a_small_demo_exits_zero_with_a_checked_summary_table() {
    // The demo bounds its own waits (a minute without progress); the test only runs it.
    let Output {
        status,
        stdout,
        stderr,
    } = convoy(&["demo", "--conversations", "12", "--seed", "11"])
        .output()
        .unwrap();
    let (stdout, stderr) = (text(&stdout), text(&stderr));
    assert_eq!(
        status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );

    assert!(stdout.contains("simulating 12 conversations"), "{stdout}");
    // Every checked line agrees with the ground truth or the expectation.
    for line in stdout.lines() {
        assert!(!line.ends_with("DIFF"), "{line}\n{stdout}");
    }
    assert!(
        row(&stdout, "conversations tracked (ground truth)").ends_with(" ok"),
        "{stdout}"
    );
    assert_eq!(
        row(&stdout, "  played to their end by the simulator"),
        "played to their end by the simulator 12 12 ok"
    );
    for what in [
        "participants, final lifecycle at the CRM",
        "SLA outcomes equal to the expectation",
        "summaries with the expected SLA tallies",
        "reconnects survived",
    ] {
        assert!(row(&stdout, what).ends_with(" ok"), "{what}\n{stdout}");
    }
    assert!(row(&stdout, "dead letters").ends_with("0 0 ok"), "{stdout}");
    assert!(
        row(&stdout, "outbox pending at the end").ends_with("0 0 ok"),
        "{stdout}"
    );
    // Both faults happened in the middle of the run and are counted.
    assert!(
        row(&stdout, "CRM outage (fault)").contains("answered 5xx"),
        "{stdout}"
    );
    assert!(row(&stdout, "sockets dropped (fault)") != "sockets dropped (fault) 0");
    for what in [
        "participant transitions synced",
        "voice calls",
        "  transcript segments",
        "records synced to the CRM",
        "CRM retries",
        "wall time",
    ] {
        row(&stdout, what);
    }
    assert!(stdout.contains("OK: all"), "{stdout}");
    // Not a terminal: no progress line.
    assert!(!stderr.contains('\r'), "{stderr}");
}
