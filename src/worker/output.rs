//! A task's output: both of its streams copied byte for byte into its log
//! file, and scanned for `laneq:iteration=N` lines on the way. It never
//! changes what the task printed and never holds more than one short line
//! in memory, whatever the task prints.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;

/// The marker a task prints to report its training iteration.
pub const ITERATION_MARKER: &str = "laneq:iteration=";
/// How much of a line is scanned for the marker; the rest of a longer line
/// is still logged, only not scanned.
pub const SCANNED_LINE_MAX_BYTES: usize = 4096;
const READ_CHUNK_BYTES: usize = 8192;

/// The iteration a task last reported, shared by its runner and the
/// heartbeat loop. `u64::MAX` stands for "none yet".
#[derive(Debug)]
pub struct Progress(AtomicU64);

impl Default for Progress {
    fn default() -> Self {
        Progress(AtomicU64::new(u64::MAX))
    }
}

impl Progress {
    pub fn get(&self) -> Option<u64> {
        match self.0.load(Ordering::Relaxed) {
            u64::MAX => None,
            n => Some(n),
        }
    }

    pub fn set(&self, iteration: u64) {
        // u64::MAX itself cannot be told apart from "none": keep the last
        // value instead of losing the progress.
        if iteration != u64::MAX {
            self.0.store(iteration, Ordering::Relaxed);
        }
    }
}

/// The iteration a line reports: the number after the last
/// `laneq:iteration=` in it, if digits follow. The marker may stand
/// anywhere in the line, after a logger's prefix for example.
pub fn parse_iteration(line: &[u8]) -> Option<u64> {
    let marker = ITERATION_MARKER.as_bytes();
    let at = line.windows(marker.len()).rposition(|w| w == marker)?;
    let rest = &line[at + marker.len()..];
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// Splits a byte stream into lines (of which it keeps the first
/// `SCANNED_LINE_MAX_BYTES`) and finds the iterations they report.
#[derive(Debug, Default)]
pub struct LineScanner {
    line: Vec<u8>,
    /// The current line went past the scanned length.
    overlong: bool,
}

impl LineScanner {
    /// Feeds bytes; returns the latest iteration among the lines they end.
    pub fn feed(&mut self, bytes: &[u8]) -> Option<u64> {
        let mut latest = None;
        for &b in bytes {
            if b == b'\n' {
                latest = self.end_line().or(latest);
            } else if self.line.len() < SCANNED_LINE_MAX_BYTES {
                self.line.push(b);
            } else {
                self.overlong = true;
            }
        }
        latest
    }

    /// The stream ended: the iteration its unterminated last line reports.
    pub fn finish(&mut self) -> Option<u64> {
        self.end_line()
    }

    fn end_line(&mut self) -> Option<u64> {
        let found = parse_iteration(&self.line);
        if self.overlong {
            tracing::debug!(
                "a task printed a line over {SCANNED_LINE_MAX_BYTES} bytes; scanned its start"
            );
        }
        self.line.clear();
        self.overlong = false;
        found
    }
}

/// Copies one stream of a task into `log` until it ends, recording the
/// iterations it reports in `progress`. A log write error stops the copy
/// (and is returned); the stream is then drained so the task never blocks
/// on a full pipe.
pub async fn pump<R: AsyncRead + Unpin>(
    mut stream: R,
    log: Arc<Mutex<tokio::fs::File>>,
    progress: Arc<Progress>,
) -> std::io::Result<()> {
    let mut scanner = LineScanner::default();
    let mut buf = vec![0u8; READ_CHUNK_BYTES];
    let mut write_error = None;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        if let Some(it) = scanner.feed(&buf[..n]) {
            progress.set(it);
        }
        if write_error.is_none() {
            if let Err(e) = log.lock().await.write_all(&buf[..n]).await {
                write_error = Some(e);
            }
        }
    }
    if let Some(it) = scanner.finish() {
        progress.set(it);
    }
    log.lock().await.flush().await?;
    write_error.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iterations_are_read_from_marker_lines() {
        assert_eq!(parse_iteration(b"laneq:iteration=5"), Some(5));
        assert_eq!(parse_iteration(b"laneq:iteration=12 loss=0.3"), Some(12));
        assert_eq!(
            parse_iteration(b"2026-01-01 INFO laneq:iteration=340"),
            Some(340)
        );
        assert_eq!(
            parse_iteration(b"laneq:iteration=1 laneq:iteration=2"),
            Some(2)
        );
        assert_eq!(parse_iteration(b"laneq:iteration=\r"), None);
        assert_eq!(parse_iteration(b"laneq:iteration=x"), None);
        assert_eq!(parse_iteration(b"iteration=5"), None);
        assert_eq!(parse_iteration(b""), None);
        assert_eq!(
            parse_iteration(b"laneq:iteration=99999999999999999999999"),
            None,
            "an overflowing number is no iteration"
        );
    }

    #[test]
    fn the_scanner_finds_markers_across_chunks() {
        let mut s = LineScanner::default();
        assert_eq!(s.feed(b"epoch 1\nlaneq:itera"), None);
        assert_eq!(s.feed(b"tion=7\nmore\n"), Some(7));
        assert_eq!(s.feed(b"laneq:iteration=8\nlaneq:iteration=9\n"), Some(9));
        assert_eq!(s.feed(b"laneq:iteration=10"), None, "the line is not over");
        assert_eq!(s.finish(), Some(10));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn a_long_line_is_scanned_only_at_its_start() {
        let mut s = LineScanner::default();
        let mut long = b"laneq:iteration=3 ".to_vec();
        long.extend(std::iter::repeat_n(b'x', SCANNED_LINE_MAX_BYTES * 2));
        long.extend(b" laneq:iteration=4\n");
        assert_eq!(s.feed(&long), Some(3));
        assert_eq!(
            s.feed(b"laneq:iteration=5\n"),
            Some(5),
            "the next line is fresh"
        );
    }

    #[test]
    fn progress_starts_empty_and_keeps_the_latest() {
        let p = Progress::default();
        assert_eq!(p.get(), None);
        p.set(0);
        assert_eq!(p.get(), Some(0));
        p.set(41);
        p.set(u64::MAX);
        assert_eq!(p.get(), Some(41));
    }

    #[tokio::test]
    async fn pump_logs_every_byte_and_records_progress() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.log");
        let log = Arc::new(Mutex::new(tokio::fs::File::create(&path).await.unwrap()));
        let progress = Arc::new(Progress::default());
        let text: &[u8] = b"start\nlaneq:iteration=3\n\xffbinary\nlaneq:iteration=4";
        pump(text, log, progress.clone()).await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), text);
        assert_eq!(progress.get(), Some(4));
    }
}
