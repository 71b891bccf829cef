//! The `model_apply` fuzz target: see [`laneq_fuzz::model_apply`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| laneq_fuzz::model_apply::run(data));
