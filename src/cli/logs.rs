//! `laneq task logs`: a task's output from any machine, as its worker
//! wrote it, raw to stdout (or as JSON lines with `-o json`).

use std::io::Write;

use clap::Args;
use futures::StreamExt;

use super::output::Output;
use super::{Failure, GlobalArgs};

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// The task's id.
    id: u64,
    /// Keep printing what the task writes until its run ends (Ctrl-C to
    /// stop reading; the task goes on).
    #[arg(long, short = 'f')]
    follow: bool,
    /// Which attempt, counting from 1 (default: the latest).
    #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true)]
    attempt: u32,
    /// Only the last N lines (then, with -f, what follows).
    #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true)]
    tail: u64,
}

pub async fn run(g: &GlobalArgs, args: LogsArgs) -> Result<(), Failure> {
    let client = g.client()?;
    let mut chunks = Box::pin(client.task_logs(args.id, args.attempt, args.follow, args.tail));
    let mut lines = JsonLines::default();
    let mut stdout = std::io::stdout().lock();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        match g.output {
            Output::Table => {
                // Once stdout is closed (`laneq task logs 7 -f | head`), the
                // reader is gone: done.
                if stdout
                    .write_all(&chunk)
                    .and_then(|()| stdout.flush())
                    .is_err()
                {
                    return Ok(());
                }
            }
            Output::Json => {
                if let Some(text) = lines.feed(&chunk) {
                    super::watch::json_line(&serde_json::json!({ "data": text }));
                }
            }
        }
    }
    if let Some(text) = lines.finish() {
        super::watch::json_line(&serde_json::json!({ "data": text }));
    }
    Ok(())
}

/// Cuts the output at line ends, so that a character split between two
/// chunks is never turned into two replacement characters.
#[derive(Default)]
struct JsonLines {
    pending: Vec<u8>,
}

impl JsonLines {
    /// The complete lines so far, as (lossy) UTF-8.
    fn feed(&mut self, chunk: &[u8]) -> Option<String> {
        self.pending.extend_from_slice(chunk);
        let end = self.pending.iter().rposition(|&b| b == b'\n')? + 1;
        let lines: Vec<u8> = self.pending.drain(..end).collect();
        Some(String::from_utf8_lossy(&lines).into_owned())
    }

    /// What is left after the last line end.
    fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.pending);
        (!rest.is_empty()).then(|| String::from_utf8_lossy(&rest).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_never_split_a_character() {
        let mut l = JsonLines::default();
        let text = "é\nß";
        let bytes = text.as_bytes();
        assert_eq!(l.feed(&bytes[..1]), None);
        assert_eq!(l.feed(&bytes[1..4]).as_deref(), Some("é\n"));
        assert_eq!(l.feed(&bytes[4..]), None);
        assert_eq!(l.finish().as_deref(), Some("ß"));
        assert_eq!(l.finish(), None);
    }
}
