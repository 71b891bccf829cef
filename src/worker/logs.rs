//! The agent's side of task logs: it keeps one `ServeLogs` stream open to
//! a node (opened again, with backoff, when it breaks), and answers each
//! ask of the node by reading the task attempt's log file in the log dir:
//! its last lines or all of it, then, when following, what the file gains
//! every `FOLLOW_POLL` until the attempt's runner is done and the file is
//! read to its end. A canceled ask (its reader went away) stops at once.
//!
//! It only reads files: it never touches the runners, and a log is sent
//! nowhere but to the node that asked.

use std::collections::HashMap;
use std::io::SeekFrom;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};

use super::Agent;
use crate::proto::v1::{LogAsk, LogUpload};

/// The most bytes one upload carries.
pub const LOG_CHUNK_MAX_BYTES: usize = 64 * 1024;
/// How often a followed log is looked at for more.
pub const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// The most asks the agent answers at once (the node asks no more).
const ASKS_MAX: usize = 16;
/// Uploads waiting for the stream, for all asks together.
const UPLOAD_QUEUE: usize = 16;
/// Waits between two tries to open the stream.
const RECONNECT_MIN: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// Serves logs until the agent ends this task (it is aborted).
pub(super) async fn run(agent: Arc<Agent>) {
    let mut backoff = RECONNECT_MIN;
    loop {
        let opened = Instant::now();
        match serve(&agent).await {
            Ok(()) => tracing::info!("log stream ended; opening another"),
            Err(e) => tracing::warn!("log stream: {e}"),
        }
        if opened.elapsed() > RECONNECT_MAX {
            backoff = RECONNECT_MIN;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RECONNECT_MAX);
    }
}

/// One stream: open it, answer its asks until it ends.
async fn serve(agent: &Arc<Agent>) -> Result<(), String> {
    let (tx, rx) = mpsc::channel(UPLOAD_QUEUE);
    let hello = LogUpload {
        worker: agent.name().to_string(),
        ..Default::default()
    };
    tx.try_send(hello).expect("an empty queue takes one");
    let uploads = tokio_stream::wrappers::ReceiverStream::new(rx);
    let mut asks = agent
        .client
        .serve_logs(uploads)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!("log stream open");
    let mut answering: HashMap<u64, AbortHandle> = HashMap::new();
    let mut answers = JoinSet::new();
    loop {
        tokio::select! {
            ask = asks.message() => match ask.map_err(|s| s.message().to_string())? {
                None => return Ok(()),
                Some(ask) if ask.cancel => {
                    if let Some(a) = answering.remove(&ask.ask_id) {
                        a.abort();
                    }
                }
                Some(ask) if answering.len() >= ASKS_MAX => {
                    let error = format!("worker {} answers at most {ASKS_MAX} asks at once", agent.name());
                    let _ = tx.send(error_upload(ask.ask_id, error)).await;
                }
                Some(ask) => {
                    let id = ask.ask_id;
                    let handle = answers.spawn(answer(agent.clone(), ask, tx.clone()));
                    answering.insert(id, handle);
                }
            },
            Some(Ok(id)) = answers.join_next() => {
                answering.remove(&id);
            }
        }
    }
}

fn error_upload(ask_id: u64, error: String) -> LogUpload {
    LogUpload {
        ask_id,
        error,
        ..Default::default()
    }
}

/// Answers one ask to its end; returns its id.
async fn answer(agent: Arc<Agent>, ask: LogAsk, tx: mpsc::Sender<LogUpload>) -> u64 {
    let id = ask.ask_id;
    let last = match send_log(&agent, &ask, &tx).await {
        Ok(()) => LogUpload {
            ask_id: id,
            end: true,
            ..Default::default()
        },
        Err(e) => error_upload(id, e),
    };
    let _ = tx.send(last).await;
    id
}

async fn send_log(agent: &Agent, ask: &LogAsk, tx: &mpsc::Sender<LogUpload>) -> Result<(), String> {
    let (task, attempt) = (ask.task, ask.attempt);
    let path = agent.config.log_dir.join(format!("{task}-{attempt}.log"));
    let running = || ask.follow && agent.runs(task, attempt);
    // A run that has just been leased has no file yet.
    let mut file = loop {
        match tokio::fs::File::open(&path).await {
            Ok(f) => break f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && running() => {
                tokio::time::sleep(FOLLOW_POLL).await;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(format!(
                    "no output for task {task} attempt {attempt} on worker {}",
                    agent.name()
                ));
            }
            Err(e) => return Err(cannot_read(agent, &path, e)),
        }
    };
    if ask.tail_lines > 0 {
        let start = tail_start(&mut file, ask.tail_lines)
            .await
            .map_err(|e| cannot_read(agent, &path, e))?;
        file.seek(SeekFrom::Start(start))
            .await
            .map_err(|e| cannot_read(agent, &path, e))?;
    }
    let mut buf = vec![0; LOG_CHUNK_MAX_BYTES];
    loop {
        // Looked at before the read: once the run is over, this read
        // reaches the file's final end.
        let more_to_come = running();
        let n = file
            .read(&mut buf)
            .await
            .map_err(|e| cannot_read(agent, &path, e))?;
        if n > 0 {
            let upload = LogUpload {
                ask_id: ask.ask_id,
                data: buf[..n].to_vec(),
                ..Default::default()
            };
            tx.send(upload).await.map_err(|_| "the stream closed")?;
        } else if more_to_come {
            tokio::time::sleep(FOLLOW_POLL).await;
        } else {
            return Ok(());
        }
    }
}

fn cannot_read(agent: &Agent, path: &Path, e: std::io::Error) -> String {
    format!(
        "worker {}: cannot read {}: {e}",
        agent.name(),
        path.display()
    )
}

/// Where the last `lines` lines of `file` begin (a last line without its
/// newline counts as one), reading backwards a block at a time.
async fn tail_start(file: &mut tokio::fs::File, lines: u64) -> std::io::Result<u64> {
    let len = file.metadata().await?.len();
    let mut scan = TailScan::new(len, lines);
    let mut end = len;
    let mut buf = vec![0; LOG_CHUNK_MAX_BYTES];
    while end > 0 {
        let start = end.saturating_sub(LOG_CHUNK_MAX_BYTES as u64);
        let block = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start)).await?;
        file.read_exact(block).await?;
        if let Some(at) = scan.feed(start, block) {
            return Ok(at);
        }
        end = start;
    }
    Ok(0)
}

/// Counts newlines from the end of a file of `len` bytes, fed blocks from
/// the last to the first.
struct TailScan {
    len: u64,
    /// Newlines still to pass before the first line wanted.
    left: u64,
}

impl TailScan {
    fn new(len: u64, lines: u64) -> Self {
        Self { len, left: lines }
    }

    /// The block at `start`; `Some(offset)` once the start is found.
    fn feed(&mut self, start: u64, block: &[u8]) -> Option<u64> {
        for (i, &b) in block.iter().enumerate().rev() {
            let at = start + i as u64;
            // The newline that ends the last line starts no line after it.
            if b != b'\n' || at + 1 == self.len {
                continue;
            }
            self.left -= 1;
            if self.left == 0 {
                return Some(at + 1);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail(text: &str, lines: u64, block: usize) -> String {
        let bytes = text.as_bytes();
        let mut scan = TailScan::new(bytes.len() as u64, lines);
        let mut end = bytes.len();
        while end > 0 {
            let start = end.saturating_sub(block);
            if let Some(at) = scan.feed(start as u64, &bytes[start..end]) {
                return text[at as usize..].to_string();
            }
            end = start;
        }
        text.to_string()
    }

    #[test]
    fn the_tail_is_the_last_lines_whatever_the_blocks() {
        for block in [1, 2, 3, 64] {
            assert_eq!(tail("a\nb\nc\n", 2, block), "b\nc\n", "block {block}");
            assert_eq!(tail("a\nb\nc", 2, block), "b\nc", "no final newline");
            assert_eq!(tail("a\nb\nc\n", 1, block), "c\n");
            assert_eq!(tail("a\nb\nc\n", 3, block), "a\nb\nc\n");
            assert_eq!(tail("a\nb\nc\n", 9, block), "a\nb\nc\n", "fewer lines");
            assert_eq!(tail("", 2, block), "");
            assert_eq!(tail("\n\n", 1, block), "\n", "an empty last line");
        }
    }
}
