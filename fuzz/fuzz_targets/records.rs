//! The `records` fuzz target: see [`laneq_fuzz::records`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| laneq_fuzz::records::run(data));
