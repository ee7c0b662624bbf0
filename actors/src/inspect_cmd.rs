//! `convoy inspect FILE|-`: prints, one JSON document per frame, what Convoy understood
//! of frames captured from an org (one frame per file, or one JSON frame per line, as
//! `--record` writes them). A malformed frame prints its error with the JSON path and the
//! run exits 2 at the end; the other frames are still processed.

use std::io::{BufReader, Read, Write};
use std::process::ExitCode;

use anyhow::Context;
use serde_json::Value;

/// Reads `path` (`-` for standard input) and inspects every frame in it.
pub fn run(path: &str) -> anyhow::Result<ExitCode> {
    let reader: Box<dyn Read> = if path == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path).with_context(|| format!("cannot open {path}"))?)
    };
    let mut text = String::new();
    BufReader::new(reader)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {path} as UTF-8 text"))?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut failures = 0usize;
    for (line, report) in inspect_text(&text) {
        if report.get("error").is_some() {
            failures += 1;
            eprintln!(
                "{path}:{line}: {}",
                report["error"].as_str().unwrap_or("unreadable frame")
            );
        }
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    }
    out.flush()?;
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// One report per frame with the line it started on. A whole-file JSON document (a
/// pretty-printed payload) is one frame; otherwise every non-empty line is a frame. Lines
/// written by `--record` wrap the frame as `{"receivedAt": …, "frame": …}`.
pub fn inspect_text(text: &str) -> Vec<(usize, Value)> {
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        return vec![(1, inspect_value(value))];
    }
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            let report = match serde_json::from_str::<Value>(line) {
                Ok(value) => inspect_value(value),
                Err(_) => inspect_frame_text(line),
            };
            (index + 1, report)
        })
        .collect()
}

fn inspect_value(value: Value) -> Value {
    // A recorded line: keep the receive time next to the report.
    if let (Some(frame), Some(received_at)) = (value.get("frame"), value.get("receivedAt")) {
        let received_at = received_at.clone();
        let mut report = match frame {
            Value::String(text) => inspect_frame_text(text),
            other => describe(convoy::parse::classify_value(other.clone())),
        };
        if let Value::Object(map) = &mut report {
            map.insert("receivedAt".to_owned(), received_at);
        }
        return report;
    }
    describe(convoy::parse::classify_value(value))
}

fn inspect_frame_text(text: &str) -> Value {
    describe(convoy::parse::classify(text))
}

fn describe(result: Result<convoy::parse::Classified, convoy::parse::ParseError>) -> Value {
    match result {
        Ok(classified) => convoy::inspect::describe(&classified),
        Err(error) => convoy::inspect::describe_error(&error),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_pretty_printed_payload_is_one_frame() {
        let text = "{\n  \"topicName\": \"channel.metadata\",\n  \"eventBody\": {\"message\": \"pong\"}\n}\n";
        let reports = inspect_text(text);
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].1["classification"], "pong");
    }

    #[test]
    fn a_broken_line_is_reported_and_the_others_still_processed() {
        let text = concat!(
            "{\"topicName\":\"channel.metadata\",\"eventBody\":{\"message\":\"WebSocket Heartbeat\"}}\n",
            "{\"topicName\":\"v2.users.u1.conversations\",\"eventBody\":{\"participants\":[]}}\n",
            "{\"receivedAt\":\"2026-11-24T10:00:00Z\",\"frame\":\"{\\\"topicName\\\":\\\"channel.metadata\\\",\\\"eventBody\\\":{\\\"message\\\":\\\"pong\\\"}}\"}\n",
        );
        let reports = inspect_text(text);
        assert_eq!(reports.len(), 3);
        assert_eq!(reports[0].1["classification"], "heartbeat");
        assert_eq!(reports[1].0, 2);
        assert_eq!(reports[1].1["path"], "eventBody.id");
        assert_eq!(reports[2].1["classification"], "pong");
        assert_eq!(reports[2].1["receivedAt"], "2026-11-24T10:00:00Z");
    }
}
