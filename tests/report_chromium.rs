//! The QA report as a browser sees it: headless Chromium loads the page from a file and
//! dumps the DOM it built, and the test reads the page's text from that.
//!
//! CI installs Debian's `chromium` (`.ci/run`); without it this test fails and says so, it
//! never skips — a report nobody checked in a browser is the thing this test exists to
//! prevent. Set `REPORT_TEST_CHROMIUM` to use another binary.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use convoy::report::{render_html, ReportData};

/// A cold Chromium start on a loaded 2-core machine can take many seconds.
const DEADLINE: Duration = Duration::from_secs(120);

fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("REPORT_TEST_CHROMIUM") {
        return PathBuf::from(path);
    }
    for candidate in [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!(
        "headless Chromium is needed to check the QA report: install Debian's `chromium` \
         (`apt-get install -y chromium`, as .ci/run does) or set REPORT_TEST_CHROMIUM"
    );
}

/// Runs Chromium headless over `page` with `mode` (`--dump-dom`, `--screenshot=…`) and
/// returns its standard output; kills it when it outlives the deadline.
fn run_chromium(page: &Path, mode: &str, profile: &Path) -> String {
    let url = format!("file://{}", page.display());
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(mode)
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {}: {e}", chromium().display()));
    // Read both pipes on threads: a full pipe would stall Chromium and look like a hang.
    let mut stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let mut stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
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
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < DEADLINE => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium did not finish {mode} within {DEADLINE:?}; killed it");
            }
            Err(e) => panic!("waiting for chromium: {e}"),
        }
    };
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    assert!(status.success(), "chromium {mode} failed ({status}): {err}");
    out
}

/// The text a reader sees: tags removed (each leaves a space), entities decoded, runs of
/// white space collapsed.
fn visible_text(dom: &str) -> String {
    let mut text = String::with_capacity(dom.len());
    let mut in_tag = false;
    for c in dom.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn headless_chromium_renders_the_report_with_its_figures_warning_links_and_charts() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let page = dir.path().join("report.html");
    let data = ReportData::example();
    std::fs::write(&page, render_html(&data)).unwrap_or_else(|e| panic!("write page: {e}"));
    let profile = dir.path().join("profile");

    let dom = run_chromium(&page, "--dump-dom", &profile);
    let text = visible_text(&dom);

    // The browser built the page, not an error page.
    assert!(
        text.contains("Convoy QA report — Acme Contact Centre"),
        "{dom}"
    );
    // Queue names arrive as text, markup characters included, never as elements.
    assert!(text.contains("Support & Returns <EU>"), "{text}");
    assert!(!dom.contains("<eu>"), "a queue name was parsed as markup");
    for figure in [
        "Sales",
        "Billing",
        "5m 12s / 10m 18s",
        "81.0%",
        "78.6%",
        "(33 of 42)",
    ] {
        assert!(text.contains(figure), "the page lacks {figure:?}");
    }
    // The warning box, with both reasons.
    assert!(dom.contains("class=\"warning\""));
    assert!(text.contains("Data may be incomplete."));
    assert!(text.contains("complete up to 2026-03-02T14:00:00Z"));
    assert!(text.contains("disagree in 1 figure"));
    // Each breach links to an anchor that exists in the page.
    for breach in &data.breaches {
        let id = &breach.conversation_id;
        assert!(
            dom.contains(&format!("href=\"#conv-{id}\"")),
            "no link to {id}"
        );
        assert!(
            dom.contains(&format!("id=\"conv-{id}\"")),
            "no anchor for {id}"
        );
    }
    // Three inline charts with their bars and labels.
    assert_eq!(dom.matches("<svg").count(), 3, "three charts");
    assert!(dom.contains("<rect"));
    assert!(text.contains("Offered, answered and abandoned per queue"));
    assert!(text.contains("SLA outcomes by clock"));
    assert!(text.contains("first_response"));
    assert!(text.contains("164 conversations started."));
}
