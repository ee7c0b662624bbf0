//! `convoy simulate` as a user runs it: the real binary, its exit codes (README: 0 success,
//! 1 a failure at run time, 2 invalid configuration or command line) and a run against an
//! emulator at its defaults. A test binary of the `convoy-actors` package, because only
//! here does cargo provide the path of the built `convoy` binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output, Stdio};

use convoy_actors::emulator::{Emulator, EmulatorOptions};

fn simulate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_convoy"))
        .arg("simulate")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn assert_exit(output: &Output, code: i32, stderr_mentions: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {stderr}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(
        stderr.contains(stderr_mentions),
        "stderr does not mention {stderr_mentions:?}: {stderr}"
    );
}

#[test]
fn invalid_options_exit_2_before_any_request() {
    // Port 9 (discard) is never contacted: every case is refused before the first request.
    let base = "http://127.0.0.1:9";
    let dir = tempfile::tempdir().unwrap();
    let invalid = dir.path().join("invalid.toml");
    std::fs::write(
        &invalid,
        "[[shapes]]\nname = \"a\"\nkind = \"inbound\"\nweight = 0\n",
    )
    .unwrap();
    let invalid = invalid.to_str().unwrap();
    let missing = dir.path().join("missing.toml");
    let missing = missing.to_str().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (&["--base-url", base, "--concurrency", "0"], "concurrency"),
        (&["--base-url", base, "--scenario", missing], "missing.toml"),
        (&["--base-url", base, "--scenario", invalid], "invalid.toml"),
        (
            &[
                "--base-url",
                base,
                "--target",
                "genesys",
                "--client-id",
                "id",
                "--client-secret",
                "s",
            ],
            "--integration-id",
        ),
        (&["--base-url", "notaurl"], "notaurl"),
        (
            &["--base-url", base, "--conversations", "x"],
            "invalid value",
        ),
    ];
    for (args, mention) in cases {
        assert_exit(&simulate(args), 2, mention);
    }
}

#[test]
fn a_server_that_cannot_be_reached_exits_1() {
    // Bind and drop: the port is free, nobody listens.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let output = simulate(&[
        "--base-url",
        &base,
        "--conversations",
        "1",
        "--max-retries",
        "0",
    ]);
    assert_exit(&output, 1, "could not discover the emulated org");
}

#[actix_rt::test]
async fn a_run_against_the_emulator_at_its_defaults_exits_0() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The real default budget: 300 requests per minute per token.
    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let base = emulator.base_url();
    // The child blocks this thread while it runs; the emulator must keep serving.
    let output = actix_web::rt::task::spawn_blocking(move || {
        simulate(&["--base-url", &base, "--conversations", "8"])
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("8 completed, 0 failed"), "{stdout}");
    assert!(stdout.contains("budget 300/min"), "{stdout}");
    emulator.stop().await;
}
