//! `task get ID --watch`: each transition of the task as a line, as it is
//! applied (Polyaxon's `ops statuses -w`), and the exit code its end gives.

use serde_json::json;

use super::{json_line, Mode};
use crate::cli::output;
use crate::cli::Failure;
use crate::proto::v1::TaskEvent;

/// The exit code of a watched task that ended without succeeding (failed,
/// canceled or dequeued).
pub const NOT_SUCCEEDED: u8 = 10;

pub struct Printer {
    mode: Mode,
    header: bool,
    /// The terminal transition's state and condition, once seen.
    end: Option<(String, String)>,
}

impl Printer {
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            header: false,
            end: None,
        }
    }

    pub fn event(&mut self, e: &TaskEvent) -> Result<(), Failure> {
        let t = e.transition.clone().unwrap_or_default();
        if e.terminal {
            self.end = Some((t.state.clone(), e.condition.clone()));
        }
        match self.mode {
            Mode::JsonLines => json_line(&event_json(e)),
            Mode::Live => {
                if !self.header {
                    self.header = true;
                    println!("{}", row(&["TIME", "STATE", "ACTOR", "REASON", "INDEX"]));
                }
                println!("{}", line(e));
            }
        }
        Ok(())
    }

    /// Success if the task succeeded; else the exit code for the others.
    pub fn outcome(&self, id: u64) -> Result<(), Failure> {
        outcome(id, self.end.as_ref())
    }
}

/// The exit of a watch that ended after `end` (the terminal state and its
/// condition); none means the stream ended before the task did.
pub fn outcome(id: u64, end: Option<&(String, String)>) -> Result<(), Failure> {
    match end {
        Some((state, _)) if state == "succeeded" => Ok(()),
        Some((state, condition)) => Err(Failure {
            message: match condition.as_str() {
                "" => format!("task {id} is {state}"),
                c => format!("task {id} is {state}: {c}"),
            },
            code: NOT_SUCCEEDED,
        }),
        None => Err(Failure::from(format!(
            "the watch of task {id} ended before the task did"
        ))),
    }
}

fn row(cells: &[&str]) -> String {
    format!(
        "{:<21} {:<10} {:<16} {:<40} {}",
        cells[0], cells[1], cells[2], cells[3], cells[4]
    )
    .trim_end()
    .to_string()
}

/// One transition: time, state, actor, reason (and the condition on the
/// terminal one), index.
pub fn line(e: &TaskEvent) -> String {
    let t = e.transition.clone().unwrap_or_default();
    let reason = match (t.reason.as_str(), e.condition.as_str()) {
        (r, "") => output::or_dash(r),
        (r, c) if r == c => c.to_string(),
        ("", c) => format!("condition: {c}"),
        (r, c) => format!("{r} (condition: {c})"),
    };
    row(&[
        &output::time(t.at_ms),
        &t.state,
        &output::or_dash(&t.actor),
        &reason,
        &e.index.to_string(),
    ])
}

pub fn event_json(e: &TaskEvent) -> serde_json::Value {
    let t = e.transition.clone().unwrap_or_default();
    json!({
        "index": e.index,
        "task_id": e.task_id,
        "at_ms": t.at_ms,
        "state": t.state,
        "actor": t.actor,
        "reason": t.reason,
        "condition": e.condition,
        "terminal": e.terminal,
        "exit_code": e.exit_code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1::Transition;

    fn event(state: &str, reason: &str, condition: &str) -> TaskEvent {
        TaskEvent {
            index: 12,
            task_id: 4,
            transition: Some(Transition {
                at_ms: 1_000,
                state: state.into(),
                actor: "w1".into(),
                reason: reason.into(),
                index: 12,
            }),
            condition: condition.into(),
            terminal: !condition.is_empty() || state == "succeeded",
            exit_code: None,
        }
    }

    #[test]
    fn a_line_shows_the_transition_and_its_condition() {
        let l = line(&event("leased", "leased by w1", ""));
        assert!(l.contains("leased by w1") && l.ends_with("12"), "{l}");
        let l = line(&event("failed", "exit code 3", "out of memory"));
        assert!(l.contains("exit code 3 (condition: out of memory)"), "{l}");
        let l = line(&event("failed", "out of memory", "out of memory"));
        assert!(!l.contains("condition"), "{l}");
    }

    #[test]
    fn only_success_exits_zero() {
        let end = |s: &str, c: &str| Some((s.to_string(), c.to_string()));
        assert!(outcome(4, end("succeeded", "").as_ref()).is_ok());
        for state in ["failed", "canceled", "dequeued"] {
            let f = outcome(4, end(state, "why").as_ref()).unwrap_err();
            assert_eq!(f.code, NOT_SUCCEEDED, "{state}");
            assert!(f.message.contains(state) && f.message.contains("why"));
        }
        assert_eq!(outcome(4, None).unwrap_err().code, 1);
    }
}
