//! A snapshot's files, byte for byte: canonical JSON (object keys sorted at every level,
//! two-space indent, integers and fixed-point strings only, a final newline), one CSV per
//! table (RFC 4180 quoting, `\n` line ends, a header row), and `manifest.json` naming the
//! interval, the exact queries sent, the availability watermark, row counts, the
//! reconciliation result and the SHA-256 of every other file.
//!
//! Nothing here reads a clock or the environment: the same snapshot and queries always
//! give the same bytes. The shell writes the files into the snapshot's own folder.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::model::{millis_time, DetailsSource, Interval, Reconciliation, Snapshot};
use super::plan::SentQuery;

pub const SNAPSHOT_JSON: &str = "snapshot.json";
pub const MANIFEST_JSON: &str = "manifest.json";
pub const QUEUES_CSV: &str = "queues.csv";
pub const SLA_CSV: &str = "sla.csv";
pub const BREACHES_CSV: &str = "breaches.csv";
pub const TIMELINE_CSV: &str = "timeline.csv";
pub const CONVERSATIONS_CSV: &str = "conversations.csv";
pub const RECONCILIATION_CSV: &str = "reconciliation.csv";

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot encode {file}: {source}")]
    Encode {
        file: &'static str,
        source: serde_json::Error,
    },
}

/// Which files to write (`--format json,csv,html`); the manifest is always written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Formats {
    pub json: bool,
    pub csv: bool,
    pub html: bool,
}

impl Default for Formats {
    fn default() -> Self {
        Formats {
            json: true,
            csv: true,
            html: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--format: {0:?} is not one of json, csv, html")]
pub struct UnknownFormat(pub String);

impl Formats {
    /// `json,csv,html` (any subset, any order; empty items ignored).
    pub fn parse(text: &str) -> Result<Formats, UnknownFormat> {
        let mut formats = Formats {
            json: false,
            csv: false,
            html: false,
        };
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item {
                "json" => formats.json = true,
                "csv" => formats.csv = true,
                "html" => formats.html = true,
                other => return Err(UnknownFormat(other.to_owned())),
            }
        }
        Ok(formats)
    }
}

/// One file of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema: u32,
    pub interval: Interval,
    /// Every details query page, job and aggregates query sent, with its exact body.
    pub queries: Vec<SentQuery>,
    #[serde(with = "millis_time::option", default)]
    pub data_availability_date: Option<DateTime<Utc>>,
    pub details_source: DetailsSource,
    pub row_counts: BTreeMap<String, u64>,
    pub reconciliation: Reconciliation,
    /// Every other file of the folder, by name.
    pub files: Vec<FileEntry>,
}

/// `value` as canonical JSON text (see the module docs).
pub fn canonical_json(value: &impl Serialize, file: &'static str) -> Result<String, OutputError> {
    let value =
        serde_json::to_value(value).map_err(|source| OutputError::Encode { file, source })?;
    let mut text = serde_json::to_string_pretty(&crate::canonical::sorted_keys(value))
        .map_err(|source| OutputError::Encode { file, source })?;
    text.push('\n');
    Ok(text)
}

pub use crate::canonical::sha256_hex;

fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

fn csv(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> Vec<u8> {
    let mut text = header.join(",");
    text.push('\n');
    for row in rows {
        let fields: Vec<String> = row.iter().map(|f| csv_field(f)).collect();
        text.push_str(&fields.join(","));
        text.push('\n');
    }
    text.into_bytes()
}

fn opt<T: ToString>(value: &Option<T>) -> String {
    value.as_ref().map(ToString::to_string).unwrap_or_default()
}

fn time(at: &DateTime<Utc>) -> String {
    millis_time::text(at)
}

/// The CSV tables of `snapshot`, by file name.
pub fn csv_tables(snapshot: &Snapshot) -> Vec<OutputFile> {
    let queues = csv(
        &[
            "queueId",
            "mediaType",
            "offered",
            "answered",
            "abandoned",
            "transferred",
            "handleMedianMs",
            "handleP90Ms",
            "talkMedianMs",
            "talkP90Ms",
            "acwMedianMs",
            "acwP90Ms",
            "answerMedianMs",
            "answerP90Ms",
            "serviceLevelTargetMs",
            "answeredWithinTarget",
            "serviceLevelPercent",
        ],
        snapshot.queues.iter().map(|q| {
            vec![
                q.queue_id.clone(),
                q.media_type.clone(),
                q.offered.to_string(),
                q.answered.to_string(),
                q.abandoned.to_string(),
                q.transferred.to_string(),
                opt(&q.handle.median_ms),
                opt(&q.handle.p90_ms),
                opt(&q.talk.median_ms),
                opt(&q.talk.p90_ms),
                opt(&q.acw.median_ms),
                opt(&q.acw.p90_ms),
                opt(&q.answer.median_ms),
                opt(&q.answer.p90_ms),
                q.service_level.target_ms.to_string(),
                q.service_level.answered_within_target.to_string(),
                opt(&q.service_level.percent),
            ]
        }),
    );
    let sla = csv(
        &[
            "clock",
            "compliant",
            "breached",
            "failed",
            "missingReceipt",
            "abandoned",
            "total",
            "compliancePercent",
        ],
        snapshot.sla.iter().map(|r| {
            vec![
                r.clock.clone(),
                r.compliant.to_string(),
                r.breached.to_string(),
                r.failed.to_string(),
                r.missing_receipt.to_string(),
                r.abandoned.to_string(),
                r.total.to_string(),
                opt(&r.compliance_percent),
            ]
        }),
    );
    let breaches = csv(
        &[
            "conversationId",
            "clock",
            "subject",
            "queueId",
            "deadline",
            "fulfilledAt",
        ],
        snapshot.breaches.iter().map(|b| {
            vec![
                b.conversation_id.clone(),
                b.clock.clone(),
                b.subject.clone(),
                opt(&b.queue_id),
                time(&b.deadline),
                b.fulfilled_at.as_ref().map(time).unwrap_or_default(),
            ]
        }),
    );
    let timeline = csv(
        &["start", "end", "conversations"],
        snapshot
            .timeline
            .iter()
            .map(|b| vec![time(&b.start), time(&b.end), b.conversations.to_string()]),
    );
    let conversations = csv(
        &[
            "conversationId",
            "start",
            "end",
            "queueId",
            "mediaType",
            "offered",
            "answered",
            "abandoned",
            "transferred",
            "handleMs",
            "talkMs",
            "acwMs",
            "answerMs",
        ],
        snapshot.conversations.iter().map(|c| {
            vec![
                c.conversation_id.clone(),
                time(&c.start),
                c.end.as_ref().map(time).unwrap_or_default(),
                opt(&c.queue_id),
                opt(&c.media_type),
                c.offered.to_string(),
                c.answered.to_string(),
                c.abandoned.to_string(),
                c.transferred.to_string(),
                opt(&c.handle_ms),
                opt(&c.talk_ms),
                opt(&c.acw_ms),
                opt(&c.answer_ms),
            ]
        }),
    );
    let reconciliation = csv(
        &["queueId", "mediaType", "measure", "details", "aggregates"],
        snapshot.trust.reconciliation.mismatches.iter().map(|m| {
            let measure = match m.measure {
                super::model::Measure::Offered => "offered",
                super::model::Measure::Answered => "answered",
                super::model::Measure::Abandoned => "abandoned",
            };
            vec![
                m.queue_id.clone(),
                m.media_type.clone(),
                measure.to_owned(),
                m.details.to_string(),
                m.aggregates.to_string(),
            ]
        }),
    );
    [
        (QUEUES_CSV, queues),
        (SLA_CSV, sla),
        (BREACHES_CSV, breaches),
        (TIMELINE_CSV, timeline),
        (CONVERSATIONS_CSV, conversations),
        (RECONCILIATION_CSV, reconciliation),
    ]
    .into_iter()
    .map(|(name, bytes)| OutputFile {
        name: name.to_owned(),
        bytes,
    })
    .collect()
}

/// Every file of a snapshot's folder, the manifest last. `extra` are files rendered
/// elsewhere (the HTML report), listed and hashed in the manifest like the others.
pub fn render(
    snapshot: &Snapshot,
    queries: &[SentQuery],
    formats: Formats,
    extra: Vec<OutputFile>,
) -> Result<Vec<OutputFile>, OutputError> {
    let mut files = Vec::new();
    if formats.json {
        files.push(OutputFile {
            name: SNAPSHOT_JSON.to_owned(),
            bytes: canonical_json(snapshot, SNAPSHOT_JSON)?.into_bytes(),
        });
    }
    if formats.csv {
        files.extend(csv_tables(snapshot));
    }
    files.extend(extra);
    files.sort_by(|a, b| a.name.cmp(&b.name));
    let row_counts: BTreeMap<String, u64> = [
        ("queues", snapshot.queues.len()),
        ("sla", snapshot.sla.len()),
        ("breaches", snapshot.breaches.len()),
        ("timeline", snapshot.timeline.len()),
        ("conversations", snapshot.conversations.len()),
        ("mismatches", snapshot.trust.reconciliation.mismatches.len()),
    ]
    .into_iter()
    .map(|(name, count)| (name.to_owned(), count as u64))
    .collect();
    let manifest = Manifest {
        schema: snapshot.schema,
        interval: snapshot.interval,
        queries: queries.to_vec(),
        data_availability_date: snapshot.trust.data_availability_date,
        details_source: snapshot.trust.details_source,
        row_counts,
        reconciliation: snapshot.trust.reconciliation.clone(),
        files: files
            .iter()
            .map(|file| FileEntry {
                name: file.name.clone(),
                bytes: file.bytes.len() as u64,
                sha256: sha256_hex(&file.bytes),
            })
            .collect(),
    };
    files.push(OutputFile {
        name: MANIFEST_JSON.to_owned(),
        bytes: canonical_json(&manifest, MANIFEST_JSON)?.into_bytes(),
    });
    Ok(files)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::analytics::build::build_snapshot;
    use crate::analytics::build::tests::inputs;
    use crate::analytics::plan::aggregates_body;
    use proptest::prelude::*;

    fn queries(snapshot: &Snapshot) -> Vec<SentQuery> {
        vec![SentQuery {
            endpoint: "POST /api/v2/analytics/conversations/aggregates/query".to_owned(),
            body: aggregates_body(&snapshot.interval),
        }]
    }

    #[test]
    fn the_same_inputs_give_byte_identical_files() {
        let first = build_snapshot(&inputs());
        let second = build_snapshot(&inputs());
        let a = render(&first, &queries(&first), Formats::default(), Vec::new()).unwrap();
        let b = render(&second, &queries(&second), Formats::default(), Vec::new()).unwrap();
        assert_eq!(a, b);
        let names: Vec<_> = a.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                BREACHES_CSV,
                CONVERSATIONS_CSV,
                QUEUES_CSV,
                RECONCILIATION_CSV,
                SLA_CSV,
                SNAPSHOT_JSON,
                TIMELINE_CSV,
                MANIFEST_JSON
            ]
        );
    }

    #[test]
    fn json_keys_are_sorted_at_every_level() {
        let text = canonical_json(
            &serde_json::json!({"b": {"z": 1, "a": 2}, "a": [{"y": 1, "x": 2}]}),
            "t",
        )
        .unwrap();
        assert_eq!(
            text,
            "{\n  \"a\": [\n    {\n      \"x\": 2,\n      \"y\": 1\n    }\n  ],\n  \"b\": {\n    \"a\": 2,\n    \"z\": 1\n  }\n}\n"
        );
    }

    #[test]
    fn the_manifest_hashes_every_other_file_and_states_trust() {
        let snapshot = build_snapshot(&inputs());
        let report = OutputFile {
            name: "report.html".to_owned(),
            bytes: b"<html></html>".to_vec(),
        };
        let files = render(
            &snapshot,
            &queries(&snapshot),
            Formats::default(),
            vec![report],
        )
        .unwrap();
        let manifest: Manifest = serde_json::from_slice(&files.last().unwrap().bytes).unwrap();
        assert_eq!(manifest.files.len(), files.len() - 1);
        for (entry, file) in manifest.files.iter().zip(&files) {
            assert_eq!(entry.name, file.name);
            assert_eq!(entry.sha256, sha256_hex(&file.bytes));
        }
        assert!(manifest.files.iter().any(|f| f.name == "report.html"));
        assert_eq!(manifest.row_counts["conversations"], 5);
        assert!(manifest.reconciliation.clean);
        assert_eq!(
            manifest.data_availability_date,
            snapshot.trust.data_availability_date
        );
        assert_eq!(manifest.queries, queries(&snapshot));
    }

    #[test]
    fn sha256_matches_the_known_digest() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn formats_parse_any_subset_and_name_an_unknown_one() {
        assert_eq!(
            Formats::parse("csv").unwrap(),
            Formats {
                json: false,
                csv: true,
                html: false
            }
        );
        assert!(Formats::parse("html, json").unwrap().json);
        assert_eq!(
            Formats::parse("json,pdf").unwrap_err(),
            UnknownFormat("pdf".to_owned())
        );
    }

    proptest! {
        #[test]
        fn input_order_never_changes_a_byte(seed in any::<u64>()) {
            let base = inputs();
            let mut shuffled = base.clone();
            // A deterministic permutation from the seed.
            let n = shuffled.conversations.len();
            for i in (1..n).rev() {
                let j = (seed.wrapping_mul(6364136223846793005).wrapping_add(i as u64) % (i as u64 + 1)) as usize;
                shuffled.conversations.swap(i, j);
            }
            let m = shuffled.outcomes.len();
            for i in (1..m).rev() {
                let j = (seed.rotate_left(17).wrapping_add(i as u64) % (i as u64 + 1)) as usize;
                shuffled.outcomes.swap(i, j);
            }
            let a = build_snapshot(&base);
            let b = build_snapshot(&shuffled);
            prop_assert_eq!(
                render(&a, &queries(&a), Formats::default(), Vec::new()).unwrap(),
                render(&b, &queries(&b), Formats::default(), Vec::new()).unwrap()
            );
        }
    }
}
