//! `convoy inspect`'s core path on an arbitrary capture: see `harness::inspect`.
#![no_main]

// Each target calls one of the harness functions; the other is the other target's.
#[allow(dead_code)]
#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::inspect(data));
