//! The `requests` fuzz target: see [`laneq_fuzz::requests`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| laneq_fuzz::requests::run(data));
