//! What each watch sends for a state: a queue's view, every queue's, a
//! task's transitions, every worker. Each keeps what it last sent, and a
//! look sends only what differs from it.

use std::collections::BTreeMap;

use tonic::Status;

use super::follow::{Look, Watcher};
use crate::api::convert;
use crate::model::{Queue, State, Task, Transition};
use crate::proto::v1 as pb;

/// A queue's live figures.
pub fn queue_view(state: &State, q: &Queue) -> pb::QueueView {
    let next = state.next_task(q.id);
    pb::QueueView {
        id: q.id,
        name: q.name.clone(),
        state: q.state.as_str().to_string(),
        queued: state.queued(q.id) as u64,
        running: state.running(q.id),
        runs_active: state.runs_active(q.id),
        run_concurrency: q.spec.run_concurrency,
        action_concurrency: q.spec.action_concurrency,
        depth: q.spec.depth,
        next_task_id: next,
        next_task_name: next
            .and_then(|id| state.task(id))
            .map_or_else(String::new, |t| t.name.to_string()),
        avg_wait_ms: q.avg_wait_ms(),
        clearing: q.clearing.map_or("", |c| c.as_str()).to_string(),
        pool: q.pool.clone(),
    }
}

/// What changed from `old` to `new`: the values added or different, in key
/// order, and the keys gone.
pub fn diff<K: Ord + Clone, V: PartialEq + Clone>(
    old: &BTreeMap<K, V>,
    new: &BTreeMap<K, V>,
) -> (Vec<V>, Vec<K>) {
    let changed = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(*v))
        .map(|(_, v)| v.clone())
        .collect();
    let removed = old
        .keys()
        .filter(|k| !new.contains_key(*k))
        .cloned()
        .collect();
    (changed, removed)
}

/// `WatchQueue`: one queue, by id (a rename is a change, not an end).
pub struct QueueWatch {
    pub id: u64,
    pub last: Option<pb::QueueView>,
}

impl Watcher for QueueWatch {
    type Event = pb::QueueEvent;

    fn look(&mut self, index: u64, state: &State) -> Look<pb::QueueEvent> {
        let Some(q) = state.queue_by_id(self.id) else {
            return Look::Last(vec![pb::QueueEvent {
                index,
                queue: self.last.take(),
                deleted: true,
            }]);
        };
        let view = queue_view(state, q);
        if self.last.as_ref() == Some(&view) {
            return Look::Same;
        }
        self.last = Some(view.clone());
        Look::Send(vec![pb::QueueEvent {
            index,
            queue: Some(view),
            deleted: false,
        }])
    }
}

/// `WatchQueues`: every queue; the first event has them all.
#[derive(Default)]
pub struct QueuesWatch {
    last: Option<BTreeMap<u64, pb::QueueView>>,
}

impl Watcher for QueuesWatch {
    type Event = pb::QueuesEvent;

    fn look(&mut self, index: u64, state: &State) -> Look<pb::QueuesEvent> {
        let views: BTreeMap<u64, pb::QueueView> = state
            .queues()
            .map(|q| (q.id, queue_view(state, q)))
            .collect();
        let event = match &self.last {
            None => pb::QueuesEvent {
                index,
                full: true,
                changed: views.values().cloned().collect(),
                removed: vec![],
            },
            Some(last) => {
                let (changed, removed) = diff(last, &views);
                if changed.is_empty() && removed.is_empty() {
                    return Look::Same;
                }
                pb::QueuesEvent {
                    index,
                    full: false,
                    changed,
                    removed,
                }
            }
        };
        self.last = Some(views);
        Look::Send(vec![event])
    }
}

/// `WatchTask`: the transitions of one task applied after `after` (all of
/// them while `after` is None), ending with the terminal one.
pub struct TaskWatch {
    pub id: u64,
    pub after: Option<u64>,
}

impl Watcher for TaskWatch {
    type Event = pb::TaskEvent;

    fn look(&mut self, _index: u64, state: &State) -> Look<pb::TaskEvent> {
        let Some(task) = state.task(self.id) else {
            return Look::Fail(Status::not_found(format!("id: no task {}", self.id)));
        };
        let after = self.after;
        let events: Vec<pb::TaskEvent> = task
            .timeline
            .iter()
            .filter(|e| after.is_none_or(|a| e.index > a))
            .map(|e| task_event(task, e))
            .collect();
        if let Some(last) = events.last() {
            self.after = Some(last.index);
        }
        if task.state.terminal() {
            Look::Last(events)
        } else if events.is_empty() {
            Look::Same
        } else {
            Look::Send(events)
        }
    }
}

fn task_event(task: &Task, e: &Transition) -> pb::TaskEvent {
    let terminal = e.state.terminal();
    pb::TaskEvent {
        index: e.index,
        task_id: task.id,
        transition: Some(convert::transition(e)),
        condition: match terminal {
            true => task.condition.clone().unwrap_or_default(),
            false => String::new(),
        },
        terminal,
        exit_code: task
            .execution
            .as_ref()
            .and_then(|x| x.exit_code)
            .filter(|_| terminal),
    }
}

/// `WatchWorkers`: every worker; the first event has them all.
#[derive(Default)]
pub struct WorkersWatch {
    last: Option<BTreeMap<String, pb::Worker>>,
}

impl Watcher for WorkersWatch {
    type Event = pb::WorkersEvent;

    fn look(&mut self, index: u64, state: &State) -> Look<pb::WorkersEvent> {
        let workers: BTreeMap<String, pb::Worker> = state
            .workers()
            .map(|w| (w.name.clone(), convert::worker(state, w)))
            .collect();
        let full = self.last.is_none();
        let last = self.last.take().unwrap_or_default();
        let (changed, _) = diff(&last, &workers);
        self.last = Some(workers);
        if changed.is_empty() && !full {
            return Look::Same;
        }
        let changed = changed
            .into_iter()
            .map(|w| pb::WorkerChange {
                what: match full {
                    true => vec![],
                    false => what_changed(last.get(&w.name), &w),
                },
                worker: Some(w),
            })
            .collect();
        Look::Send(vec![pb::WorkersEvent {
            index,
            full,
            changed,
        }])
    }
}

/// What differs between a worker as last sent and as it is now.
pub fn what_changed(old: Option<&pb::Worker>, new: &pb::Worker) -> Vec<String> {
    let Some(old) = old.filter(|o| o.registered_ms == new.registered_ms) else {
        return vec!["registered".into()];
    };
    let settings = (&old.queues, &old.capacity, old.slots, &old.ip, &old.cluster)
        != (&new.queues, &new.capacity, new.slots, &new.ip, &new.cluster);
    let what: Vec<String> = [
        ("state", old.state != new.state),
        ("tasks", old.tasks != new.tasks),
        ("usage", old.usage != new.usage),
        ("settings", settings || old.pool != new.pool),
    ]
    .into_iter()
    .filter(|(_, differs)| *differs)
    .map(|(name, _)| name.to_string())
    .collect();
    if what.is_empty() {
        vec!["seen".into()]
    } else {
        what
    }
}

#[cfg(test)]
mod tests;
