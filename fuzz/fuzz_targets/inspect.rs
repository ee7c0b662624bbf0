//! `convoy inspect`'s core path on an arbitrary capture: see `harness::inspect`.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::inspect(data));
