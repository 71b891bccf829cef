//! Printing: aligned tables for people, JSON for programs.

use clap::ValueEnum;
use serde_json::Value;

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

/// Prints rows under headers with aligned columns.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_uppercase()).collect());
    for row in rows {
        line(row.clone());
    }
}

/// Prints `key: value` lines.
pub fn fields(pairs: &[(&str, String)]) {
    let w = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in pairs {
        println!("{:<w$}  {v}", format!("{k}:"), w = w + 1);
    }
}

pub fn json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("JSON values serialise")
    );
}

/// Milliseconds since the epoch as a readable UTC time.
pub fn time(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    let secs = (ms / 1000) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// A span of milliseconds in its two largest units: `850ms`, `12s`,
/// `3m20s`, `2h5m`, `3d4h`.
pub fn duration(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// How long ago a time (ms since the epoch) was: `12s ago`; `-` for 0.
pub fn age(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    let now = crate::clock::now_ms();
    format!("{} ago", duration(now.saturating_sub(ms)))
}

/// Resource amounts as `cpu=4,gpu=1,memory=16Gi`, by name (empty when none).
pub fn quantities(amounts: &std::collections::BTreeMap<String, u64>) -> String {
    amounts
        .iter()
        .map(|(k, v)| format!("{k}={}", crate::model::spec::format_quantity(k, *v)))
        .collect::<Vec<_>>()
        .join(",")
}

/// `-` for an empty string, else the string.
pub fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_readable_utc() {
        assert_eq!(super::time(0), "-");
        assert_eq!(super::time(1_000), "1970-01-01 00:00:01Z");
        assert_eq!(super::time(1_795_000_000_000), "2026-11-18 11:06:40Z");
    }

    #[test]
    fn durations_use_two_units() {
        assert_eq!(super::duration(850), "850ms");
        assert_eq!(super::duration(12_400), "12s");
        assert_eq!(super::duration(200_000), "3m20s");
        assert_eq!(super::duration(7_500_000), "2h5m");
        assert_eq!(super::duration(273_600_000), "3d4h");
    }
}
