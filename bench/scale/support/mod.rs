//! Helpers the benches share (each bench includes this file with `#[path]`).

#![allow(dead_code)]

use std::time::Duration;

/// `1000` as `1k`, `1000000` as `1M`; other numbers as they are.
pub fn label(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

/// The `q`-th percentile (0-100) of samples sorted in ascending order.
pub fn percentile(sorted: &[Duration], q: usize) -> Duration {
    assert!(!sorted.is_empty(), "no samples");
    sorted[(sorted.len() * q / 100).min(sorted.len() - 1)]
}

/// Rounded to three decimals, for the JSON results.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The resident set size in KiB from a `/proc/<pid>/status` file.
pub fn vm_rss_kib(status_file: &str) -> Option<u64> {
    let status = std::fs::read_to_string(status_file).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
