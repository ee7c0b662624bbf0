//! What each fuzz target does with one input, shared word for word by the targets
//! (`fuzz_targets/*.rs`) and by the stable replay of the committed corpus
//! (`tests/fuzz_corpus.rs` in the core crate), so CI exercises exactly what was fuzzed.
//! Only public entry points of `convoy::parse` and `convoy::inspect` are called.

/// One WebSocket message, as the stream's socket task receives it: `classify_bytes` on
/// the raw bytes (text or binary, UTF-8 or not); when the bytes are JSON, the same frame
/// through `classify_value` (the decoded-frame path `convoy inspect` takes for recorded
/// lines); `inspect::describe` of whatever was understood, or `describe_error` of the
/// error; and the topic reader `snapshot_topic` on the text. Nothing may panic.
pub fn frame(data: &[u8]) {
    match convoy::parse::classify_bytes(data) {
        Ok(classified) => {
            let _ = convoy::inspect::describe(&classified);
            let _ = (classified.kind().as_str(), classified.conversation_id());
        }
        Err(error) => {
            let _ = convoy::inspect::describe_error(&error);
            let _ = (error.path(), error.to_string());
        }
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Ok(classified) = convoy::parse::classify_value(value) {
            let _ = convoy::inspect::describe(&classified);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = convoy::parse::snapshot_topic(text);
    }
}

/// `convoy inspect`'s core path on an arbitrary capture: cut into frames
/// (`inspect::split_frames`: JSON lines or whole documents, a BOM, bad UTF-8), then one
/// report per frame (`inspect::inspect_frame_report`: recorded `{"receivedAt","frame"}`
/// lines with a text or a JSON frame, or bare frames), serialised as `inspect` prints it.
/// Nothing may panic.
pub fn inspect(data: &[u8]) {
    for (index, frame) in convoy::inspect::split_frames(data).iter().enumerate() {
        let (report, _failed) = convoy::inspect::inspect_frame_report(index + 1, frame.line, frame);
        let _ = serde_json::to_vec(&report);
    }
}
