//! `convoy bench core`: how fast Convoy's pure live path is, against the limit set by
//! merely parsing the same bytes.
//!
//! The corpus is generated from the emulated org (`--generate N --seed S`) or read from a
//! capture (`--input FILE`, `convoy run --record` lines or bare frames); see
//! [`convoy::bench::corpus`]. Each pass feeds every frame to a fresh
//! [`CorePipeline`] (parse, classify, join, transitions, facts, SLA clocks, CRM records
//! and summary: everything but I/O) and, alternately, parses every frame into
//! `serde::de::IgnoredAny`, the baseline. The fastest pass of each is reported (the
//! machine is shared: the fastest pass is the one least disturbed), with the ratio of the
//! two rates. Only the processing is timed: the corpus is in memory before the clock starts.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use convoy::bench::{generate, read_frames, CorePipeline, Corpus, PipelineTotals};
use convoy::config::SlaConfig;
use convoy::sla::SlaPolicy;
use serde::Serialize;

use super::{human_bytes, print_report, BenchError, OutputFormat};

/// The target: the core at least half as fast as parsing into `IgnoredAny`.
pub const TARGET_RATIO: f64 = 0.5;

#[derive(Debug, Clone, clap::Args)]
pub struct CoreArgs {
    /// A capture to measure on: one frame per line, as `convoy run --record` writes them
    /// (`{"receivedAt","frame"}`) or bare frames.
    #[arg(long, value_name = "FRAMES.jsonl", conflicts_with_all = ["generate", "seed"])]
    pub input: Option<PathBuf>,
    /// Generate this many frames from the emulated org (the default corpus).
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    pub generate: usize,
    /// Seed of the generated corpus.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Timed passes over the corpus, each for the pipeline and the baseline; the fastest
    /// of each is reported.
    #[arg(long, default_value_t = 5)]
    pub passes: usize,
    /// Report format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// What `convoy bench core` measured.
#[derive(Debug, Clone, Serialize)]
pub struct CoreReport {
    /// `generate N seed S` or the input's path.
    pub corpus: String,
    pub frames: usize,
    pub bytes: usize,
    pub mean_frame_bytes: f64,
    pub passes: usize,
    /// The fastest pipeline pass.
    pub seconds: f64,
    pub frames_per_second: f64,
    pub megabytes_per_second: f64,
    /// The fastest `serde_json::from_slice::<IgnoredAny>` pass over the same frames.
    pub baseline_seconds: f64,
    pub baseline_frames_per_second: f64,
    pub baseline_megabytes_per_second: f64,
    /// `frames_per_second / baseline_frames_per_second`.
    pub ratio: f64,
    pub target_ratio: f64,
    /// What the pipeline did in one pass.
    pub totals: PipelineTotals,
    /// Frames the baseline could not parse (not JSON).
    pub baseline_errors: u64,
    /// Whether this binary was built with optimisations (a debug build's figures mean
    /// little).
    pub optimized: bool,
}

impl CoreReport {
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "convoy bench core: {} frames ({}, mean {:.0} B) from {}, fastest of {} passes{}\n",
            self.frames,
            human_bytes(self.bytes as f64),
            self.mean_frame_bytes,
            self.corpus,
            self.passes,
            if self.optimized { "" } else { " (DEBUG BUILD)" }
        ));
        out.push_str(&format!(
            "  pipeline  {:>12.0} frames/s  {:>8.1} MB/s  ({:.3} s)\n",
            self.frames_per_second, self.megabytes_per_second, self.seconds
        ));
        out.push_str(&format!(
            "  IgnoredAny {:>11.0} frames/s  {:>8.1} MB/s  ({:.3} s)\n",
            self.baseline_frames_per_second,
            self.baseline_megabytes_per_second,
            self.baseline_seconds
        ));
        out.push_str(&format!(
            "  ratio     {:.3} (target ≥ {})\n",
            self.ratio, self.target_ratio
        ));
        let t = &self.totals;
        out.push_str(&format!(
            "  per pass: {} snapshots read ({} changed their conversation), {} copies dropped unread, \
             {} other, {} malformed; {} conversations, {} transitions, {} facts, {} SLA signals, \
             {} records, {} summaries\n",
            t.snapshots,
            t.changed,
            t.duplicates,
            t.other_frames,
            t.malformed,
            t.conversations,
            t.transitions,
            t.facts,
            t.sla_signals,
            t.records,
            t.summaries
        ));
        out
    }
}

/// Builds the corpus, measures, prints the report.
pub async fn run(args: CoreArgs) -> Result<bool, BenchError> {
    if args.passes == 0 {
        return Err(BenchError::Usage("--passes must be at least 1".to_owned()));
    }
    let (corpus, name) = match &args.input {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|error| {
                BenchError::Usage(format!("cannot read {}: {error}", path.display()))
            })?;
            let corpus = read_frames(&bytes)
                .map_err(|error| BenchError::Usage(format!("{}: {error}", path.display())))?;
            (corpus, path.display().to_string())
        }
        None => {
            if args.generate == 0 {
                return Err(BenchError::Usage(
                    "--generate must be at least 1".to_owned(),
                ));
            }
            let corpus = generate(args.generate, args.seed)
                .map_err(|error| BenchError::Corpus(error.to_string()))?;
            (
                corpus,
                format!("generate {} seed {}", args.generate, args.seed),
            )
        }
    };
    let report = measure(&corpus, name, args.passes);
    print_report(&report, args.format, |report| report.to_text())?;
    Ok(true)
}

/// Times `passes` pipeline passes and as many baseline passes, alternating.
pub fn measure(corpus: &Corpus, name: String, passes: usize) -> CoreReport {
    let policy = SlaPolicy::from_config(&SlaConfig::default());
    // Frames without a receipt time (bare captures) take the last known one.
    let mut last = DateTime::<Utc>::UNIX_EPOCH;
    let frames: Vec<(&[u8], DateTime<Utc>)> = corpus
        .frames
        .iter()
        .map(|frame| {
            last = frame.received_at.unwrap_or(last);
            (frame.text.as_bytes(), last)
        })
        .collect();
    let mut fastest = Duration::MAX;
    let mut fastest_baseline = Duration::MAX;
    let mut totals = PipelineTotals::default();
    let mut baseline_errors = 0;
    for _ in 0..passes {
        let started = Instant::now();
        let mut pipeline = CorePipeline::new(policy.clone());
        for (bytes, at) in &frames {
            pipeline.process(bytes, *at);
        }
        let elapsed = started.elapsed();
        totals = black_box(pipeline).totals();
        fastest = fastest.min(elapsed);

        let started = Instant::now();
        let mut errors = 0u64;
        for (bytes, _) in &frames {
            if black_box(serde_json::from_slice::<serde::de::IgnoredAny>(black_box(
                bytes,
            )))
            .is_err()
            {
                errors += 1;
            }
        }
        fastest_baseline = fastest_baseline.min(started.elapsed());
        baseline_errors = errors;
    }
    let bytes = corpus.bytes();
    let count = frames.len();
    let rate = |duration: Duration, amount: f64| amount / duration.as_secs_f64().max(1e-9);
    let frames_per_second = rate(fastest, count as f64);
    let baseline_frames_per_second = rate(fastest_baseline, count as f64);
    CoreReport {
        corpus: name,
        frames: count,
        bytes,
        mean_frame_bytes: bytes as f64 / count.max(1) as f64,
        passes,
        seconds: fastest.as_secs_f64(),
        frames_per_second,
        megabytes_per_second: rate(fastest, bytes as f64) / 1e6,
        baseline_seconds: fastest_baseline.as_secs_f64(),
        baseline_frames_per_second,
        baseline_megabytes_per_second: rate(fastest_baseline, bytes as f64) / 1e6,
        ratio: frames_per_second / baseline_frames_per_second,
        target_ratio: TARGET_RATIO,
        totals,
        baseline_errors,
        optimized: !cfg!(debug_assertions),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_measurement_counts_every_frame_and_byte_and_relates_the_two_rates() {
        let corpus = generate(300, 2).unwrap();
        let report = measure(&corpus, "generate 300 seed 2".to_owned(), 2);
        assert_eq!(report.frames, 300);
        assert_eq!(report.bytes, corpus.bytes());
        assert_eq!(report.totals.frames, 300);
        assert_eq!(report.baseline_errors, 0);
        assert!(report.frames_per_second > 0.0 && report.baseline_frames_per_second > 0.0);
        let ratio = report.frames_per_second / report.baseline_frames_per_second;
        assert!((report.ratio - ratio).abs() < 1e-9);
        let text = report.to_text();
        assert!(
            text.contains("300 frames") && text.contains("ratio"),
            "{text}"
        );
    }
}
