//! Replays every input of the committed fuzz corpus (`fuzz/corpus/{frame,inspect}/`)
//! through the same harness the `cargo fuzz` targets run (`fuzz/harness.rs`), on stable
//! Rust: CI exercises every input the fuzzer found interesting, and a crash it found and
//! that was fixed stays fixed. Inputs that once crashed are kept in the corpus.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()));
    files.sort();
    files
}

fn replay(target: &str, run: fn(&[u8])) {
    let files = corpus(target);
    assert!(
        files.len() >= 20,
        "the {target} corpus is missing or nearly empty ({} files)",
        files.len()
    );
    for file in files {
        let data =
            std::fs::read(&file).unwrap_or_else(|error| panic!("{}: {error}", file.display()));
        // A panic names the file, so `cargo +nightly fuzz run TARGET FILE` reproduces it.
        eprintln!("replaying {}", file.display());
        run(&data);
    }
}

#[test]
fn every_frame_corpus_input_is_classified_without_a_panic() {
    replay("frame", harness::frame);
}

#[test]
fn every_inspect_corpus_input_is_reported_without_a_panic() {
    replay("inspect", harness::inspect);
}
