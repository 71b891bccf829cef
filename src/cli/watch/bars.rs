//! `queue get --watch` and `queue list --watch`: per queue, a line with its
//! state and next task, then bars for run concurrency, action (task)
//! concurrency and depth against their limits, as `flyte get queue --watch`
//! draws them; a spinner stands for a bar whose limit is 0 (unlimited).

use std::collections::BTreeMap;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use super::{json_line, Mode};
use crate::proto::v1::{QueueEvent, QueueView, QueuesEvent};

/// How often a spinner turns.
const SPIN: Duration = Duration::from_millis(120);
/// How often the other lines are drawn again: indicatif drops a draw that
/// comes too soon after the last, and a view that then stops changing
/// must still show its latest figures.
const REDRAW: Duration = Duration::from_millis(250);

/// The three gauges of a queue: (label, in use, limit).
pub fn gauges(v: &QueueView) -> [(&'static str, u64, u64); 3] {
    [
        ("runs", v.runs_active, u64::from(v.run_concurrency)),
        ("actions", v.running, u64::from(v.action_concurrency)),
        ("depth", v.queued + v.running, v.depth),
    ]
}

/// The line above a queue's bars.
pub fn header(v: &QueueView) -> String {
    let state = match v.clearing.as_str() {
        "" => v.state.clone(),
        "delete" => format!("{} (deleting)", v.state),
        _ => format!("{} (clearing)", v.state),
    };
    let next = match (v.next_task_id, v.next_task_name.as_str()) {
        (None, _) => "-".to_string(),
        (Some(id), "") => format!("#{id}"),
        (Some(id), name) => format!("#{id} {name}"),
    };
    format!(
        "{}  {state}  queued {}  running {}  next {next}",
        v.name, v.queued, v.running
    )
}

/// A bar against a limit, or a spinner where there is none.
fn style(limit: u64) -> ProgressStyle {
    let template = match limit {
        0 => "  {prefix:<8} {spinner} {pos} (no limit)",
        _ => "  {prefix:<8} [{bar:30}] {pos}/{len}",
    };
    ProgressStyle::with_template(template)
        .expect("a valid template")
        .progress_chars("#>-")
}

/// One queue's lines on the board.
struct Lines {
    header: ProgressBar,
    gauges: [ProgressBar; 3],
    /// The limits the gauges are drawn for.
    limits: [Option<u64>; 3],
}

impl Lines {
    fn new(board: &MultiProgress) -> Self {
        let header = board.add(ProgressBar::new(0));
        header.set_style(ProgressStyle::with_template("{msg}").expect("a valid template"));
        header.enable_steady_tick(REDRAW);
        let gauges = std::array::from_fn(|_| board.add(ProgressBar::new(0)));
        Self {
            header,
            gauges,
            limits: [None; 3],
        }
    }

    fn show(&mut self, v: &QueueView) {
        self.header.set_message(header(v));
        for (i, (label, used, limit)) in gauges(v).into_iter().enumerate() {
            let bar = &self.gauges[i];
            // Length and position first: a tick between would draw a
            // bar of the new style at the old length.
            bar.set_length(limit);
            bar.set_position(used);
            if self.limits[i] != Some(limit) {
                bar.set_style(style(limit));
                bar.set_prefix(label);
                bar.enable_steady_tick(if limit == 0 { SPIN } else { REDRAW });
                self.limits[i] = Some(limit);
            }
        }
    }

    fn clear(&self, board: &MultiProgress) {
        for bar in std::iter::once(&self.header).chain(&self.gauges) {
            bar.finish_and_clear();
            board.remove(bar);
        }
    }
}

/// What a queue watch shows: bars on a terminal, else JSON lines.
pub struct Board {
    mode: Mode,
    board: MultiProgress,
    /// By queue id.
    queues: BTreeMap<u64, Lines>,
}

impl Board {
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            board: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
            queues: BTreeMap::new(),
        }
    }

    /// An event of `queue get --watch`.
    pub fn queue_event(&mut self, e: &QueueEvent) {
        if self.mode == Mode::JsonLines {
            return json_line(&json!({
                "index": e.index,
                "queue": e.queue.as_ref().map(view_json),
                "deleted": e.deleted,
            }));
        }
        match (&e.queue, e.deleted) {
            (Some(v), false) => self.show(v),
            (Some(v), true) => {
                self.remove(v.id);
                let _ = self.board.println(format!("queue {} was deleted", v.name));
            }
            (None, _) => {
                let _ = self.board.println("the queue was deleted");
            }
        }
    }

    /// An event of `queue list --watch`.
    pub fn queues_event(&mut self, e: &QueuesEvent) {
        if self.mode == Mode::JsonLines {
            return json_line(&json!({
                "index": e.index,
                "full": e.full,
                "changed": e.changed.iter().map(view_json).collect::<Vec<_>>(),
                "removed": e.removed,
            }));
        }
        if e.full {
            let ids: Vec<u64> = self.queues.keys().copied().collect();
            for id in ids {
                self.remove(id);
            }
        }
        for v in &e.changed {
            self.show(v);
        }
        for id in &e.removed {
            self.remove(*id);
        }
    }

    fn show(&mut self, v: &QueueView) {
        let board = &self.board;
        self.queues
            .entry(v.id)
            .or_insert_with(|| Lines::new(board))
            .show(v);
    }

    fn remove(&mut self, id: u64) {
        if let Some(lines) = self.queues.remove(&id) {
            lines.clear(&self.board);
        }
    }
}

pub fn view_json(v: &QueueView) -> serde_json::Value {
    json!({
        "id": v.id,
        "name": v.name,
        "pool": v.pool,
        "state": v.state,
        "clearing": (!v.clearing.is_empty()).then_some(&v.clearing),
        "queued": v.queued,
        "running": v.running,
        "runs_active": v.runs_active,
        "run_concurrency": v.run_concurrency,
        "action_concurrency": v.action_concurrency,
        "depth": v.depth,
        "next_task_id": v.next_task_id,
        "next_task_name": v.next_task_name,
        "avg_wait_ms": v.avg_wait_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> QueueView {
        QueueView {
            id: 2,
            name: "gpu".into(),
            state: "active".into(),
            queued: 5,
            running: 2,
            runs_active: 1,
            run_concurrency: 4,
            action_concurrency: 0,
            depth: 500,
            next_task_id: Some(9),
            next_task_name: "train".into(),
            ..Default::default()
        }
    }

    #[test]
    fn depth_counts_queued_and_running_and_zero_means_no_limit() {
        assert_eq!(
            gauges(&view()),
            [("runs", 1, 4), ("actions", 2, 0), ("depth", 7, 500)]
        );
    }

    #[test]
    fn the_header_names_the_state_and_the_next_task() {
        let h = header(&view());
        assert_eq!(h, "gpu  active  queued 5  running 2  next #9 train");
        let v = QueueView {
            next_task_id: None,
            clearing: "clear".into(),
            ..view()
        };
        assert!(header(&v).contains("active (clearing)") && header(&v).ends_with("next -"));
    }

    /// Bars and spinners swap as a limit is set or lifted; a hidden board
    /// (not a terminal) draws nothing but keeps the lines.
    #[test]
    fn a_board_keeps_one_set_of_lines_per_queue() {
        let mut board = Board {
            mode: Mode::Live,
            board: MultiProgress::with_draw_target(ProgressDrawTarget::hidden()),
            queues: BTreeMap::new(),
        };
        let full = QueuesEvent {
            index: 3,
            full: true,
            changed: vec![view(), QueueView { id: 1, ..view() }],
            removed: vec![],
        };
        board.queues_event(&full);
        assert_eq!(board.queues.len(), 2);
        let lifted = QueueView {
            run_concurrency: 0,
            ..view()
        };
        board.queues_event(&QueuesEvent {
            index: 4,
            changed: vec![lifted],
            removed: vec![1],
            ..Default::default()
        });
        let lines = &board.queues[&2];
        assert_eq!(lines.limits, [Some(0), Some(0), Some(500)]);
        assert_eq!(lines.gauges[2].position(), 7);
        assert_eq!(board.queues.keys().collect::<Vec<_>>(), [&2]);
    }
}
