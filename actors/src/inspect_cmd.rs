//! `convoy inspect FILE|-`: prints, one JSON document per frame, what Convoy understood
//! of frames captured from an org (whole documents, or one JSON frame per line as
//! `--record` writes them). Each report carries the frame's `index` and `line`. A
//! malformed frame prints its error with the JSON path and the run exits 2 at the end;
//! the other frames are still processed. How the input is cut into frames and what a
//! report says is decided in `convoy::inspect`; this module reads and prints.

use std::io::{BufWriter, Read, Write};
use std::process::ExitCode;

/// The stdout buffer: a few dozen reports per `write` call.
const OUTPUT_BUFFER_BYTES: usize = 64 * 1024;

/// Reads `path` (`-` for standard input) and inspects every frame in it. An input that
/// cannot be read is a usage error (exit 2, like every frame being malformed); a failed
/// write to stdout is returned (a closed pipe ends the command quietly in `main`).
pub fn run(path: &str) -> std::io::Result<ExitCode> {
    let input = match read_input(path) {
        Ok(input) => input,
        Err(error) => {
            eprintln!("convoy: cannot read {path}: {error}");
            return Ok(ExitCode::from(2));
        }
    };
    // Reports are serialised token by token; unbuffered, that was ~160 `write` calls per
    // frame. Buffered, a capture of thousands of frames costs one call per buffer. Every
    // return below flushes (`flush` on success, the writer's drop on an error).
    let mut out = BufWriter::with_capacity(OUTPUT_BUFFER_BYTES, std::io::stdout().lock());
    let mut failures = 0usize;
    for (index, frame) in convoy::inspect::split_frames(&input).iter().enumerate() {
        let (report, failed) = convoy::inspect::inspect_frame_report(index + 1, frame.line, frame);
        if failed {
            failures += 1;
            eprintln!(
                "{path}:{}: {}",
                frame.line,
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

fn read_input(path: &str) -> std::io::Result<Vec<u8>> {
    let mut input = Vec::new();
    if path == "-" {
        std::io::stdin().lock().read_to_end(&mut input)?;
    } else {
        std::fs::File::open(path)?.read_to_end(&mut input)?;
    }
    Ok(input)
}
