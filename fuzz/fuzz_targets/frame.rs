//! Frame parsing and classification on arbitrary bytes: see `harness::frame`.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::frame(data));
