//! The wall clock, in ms since the epoch. The leader stamps commands with
//! it; the CLI, the worker agent and the expiry loop read it. The model
//! never does: time reaches apply only inside a command's stamp.

/// Now, in ms since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
