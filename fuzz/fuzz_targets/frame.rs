//! Frame parsing and classification on arbitrary bytes: see `harness::frame`.
#![no_main]

// Each target calls one of the harness functions; the other is the other target's.
#[allow(dead_code)]
#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::frame(data));
