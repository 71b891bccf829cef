//! The `config` fuzz target: see [`laneq_fuzz::config`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| laneq_fuzz::config::run(data));
