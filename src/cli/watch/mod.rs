//! The live views: `queue get Q --watch`, `queue list --watch` (progress
//! bars, `bars`) and `task get ID --watch` (each transition as a line,
//! `timeline`). On a terminal they draw for people; with `-o json`, or when
//! stdout is not a terminal, they print one JSON object per event and line.
//! Ctrl-C ends a watch with exit code 0.

mod bars;
mod timeline;

use std::future::Future;
use std::io::IsTerminal;

use futures::{Stream, StreamExt};

use super::output::Output;
use super::{Failure, GlobalArgs};
use crate::client::ClientError;

/// How a watch prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bars and lines for a person at a terminal.
    Live,
    /// One JSON object per line, for programs and pipes.
    JsonLines,
}

impl Mode {
    pub fn of(output: Output, stdout_is_terminal: bool) -> Self {
        match (output, stdout_is_terminal) {
            (Output::Table, true) => Mode::Live,
            _ => Mode::JsonLines,
        }
    }
}

fn mode(g: &GlobalArgs) -> Mode {
    Mode::of(g.output, std::io::stdout().is_terminal())
}

/// Runs `watch` until it ends, or until Ctrl-C (which is success). Where
/// Ctrl-C cannot be caught, the watch runs on and SIGINT ends the process.
async fn until_interrupted(
    watch: impl Future<Output = Result<(), Failure>>,
) -> Result<(), Failure> {
    tokio::select! {
        r = watch => r,
        Ok(()) = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// Hands each event of `events` to `show` until the stream or `show` ends.
async fn each<E>(
    events: impl Stream<Item = Result<E, ClientError>>,
    mut show: impl FnMut(E) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        show(event?)?;
    }
    Ok(())
}

/// Prints one JSON object on a line of its own (stdout is flushed at each
/// newline). Once stdout is closed (`laneq ... --watch | head -3`), the
/// watch is over: the process exits 0 (where `println!` would panic).
pub(super) fn json_line(value: &serde_json::Value) {
    use std::io::Write;
    if writeln!(std::io::stdout().lock(), "{value}").is_err() {
        std::process::exit(0);
    }
}

/// `laneq queue get NAME --watch`.
pub async fn queue(g: &GlobalArgs, name: &str) -> Result<(), Failure> {
    let client = g.client()?;
    let events = client.watch_queue(name, 0, g.consistency());
    let mode = mode(g);
    until_interrupted(async move {
        let mut view = bars::Board::new(mode);
        each(events, |e| {
            view.queue_event(&e);
            Ok(())
        })
        .await
    })
    .await
}

/// `laneq queue list --watch`.
pub async fn queues(g: &GlobalArgs) -> Result<(), Failure> {
    let client = g.client()?;
    let events = client.watch_queues(0, g.consistency());
    let mode = mode(g);
    until_interrupted(async move {
        let mut view = bars::Board::new(mode);
        each(events, |e| {
            view.queues_event(&e);
            Ok(())
        })
        .await
    })
    .await
}

/// `laneq task get ID --watch`: exits 0 once the task succeeded, with
/// [`timeline::NOT_SUCCEEDED`] once it ended otherwise.
pub async fn task(g: &GlobalArgs, id: u64) -> Result<(), Failure> {
    let client = g.client()?;
    let events = client.watch_task(id, 0, g.consistency());
    let mode = mode(g);
    until_interrupted(async move {
        let mut printer = timeline::Printer::new(mode);
        each(events, |e| printer.event(&e)).await?;
        printer.outcome(id)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_gets_live_views_and_anything_else_json_lines() {
        assert_eq!(Mode::of(Output::Table, true), Mode::Live);
        assert_eq!(Mode::of(Output::Table, false), Mode::JsonLines);
        assert_eq!(Mode::of(Output::Json, true), Mode::JsonLines);
    }
}
