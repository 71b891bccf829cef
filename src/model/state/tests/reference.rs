//! What the dispatcher must do, by brute force: in-flight loads summed from
//! the tasks, the limits they must stay within, placement (pools, selectors,
//! queue order), and a reference dispatcher written from the rules in
//! `dispatch`'s docs.
//!
//! The reference must never call into `dispatch`: it would check the
//! dispatcher against itself.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use crate::model::limits::DISPATCH_LOOKAHEAD;
use crate::model::spec::{ClusterSelector, Fairness, QueueState, Resources};
use crate::model::state::State;
use crate::model::worker::Worker;
use crate::model::{Queue, Task};

/// In-flight work summed by brute force. A run is (project, run); a task
/// without a run is a run of its own.
#[derive(Default, Clone, Debug)]
pub(super) struct Load {
    pub(super) tasks: usize,
    pub(super) runs: BTreeSet<(String, String)>,
    pub(super) resources: Resources,
}

impl Load {
    pub(super) fn add(&mut self, t: &Task) {
        self.tasks += 1;
        let run = match t.run.as_str() {
            "" => format!("#{}", t.id),
            run => run.to_string(),
        };
        self.runs.insert((t.project.to_string(), run));
        for (name, n) in &t.resources {
            *self.resources.entry(name.clone()).or_default() += n;
        }
    }

    pub(super) fn with(&self, t: &Task) -> Load {
        let mut l = self.clone();
        l.add(t);
        l
    }
}

pub(super) fn within(limit: u32, n: usize) -> bool {
    limit == 0 || n <= limit as usize
}

/// A queue's load is within its action and run concurrency and its quota.
pub(super) fn queue_ok(q: &Queue, l: &Load) -> bool {
    let quota_ok = |(r, max): (&String, &u64)| l.resources.get(r).is_none_or(|n| n <= max);
    within(q.spec.action_concurrency, l.tasks)
        && within(q.spec.run_concurrency, l.runs.len())
        && q.spec.quota.iter().all(quota_ok)
}

/// A worker's load is within its slots and, when it states one, its capacity
/// (it has none of a resource it does not list).
pub(super) fn worker_ok(w: &Worker, l: &Load) -> bool {
    let cap = |r: &String| w.capacity.get(r).copied().unwrap_or(0);
    within(w.slots, l.tasks)
        && (w.capacity.is_empty() || l.resources.iter().all(|(r, &n)| n <= cap(r)))
}

/// In-flight loads by queue id and by worker name.
pub(super) fn loads(s: &State) -> (BTreeMap<u64, Load>, BTreeMap<String, Load>) {
    let mut queues = BTreeMap::<u64, Load>::new();
    let mut workers = BTreeMap::<String, Load>::new();
    for t in s.tasks_after(0).filter(|t| t.state.in_flight()) {
        queues.entry(t.queue).or_default().add(t);
        let worker = t.worker().expect("an in-flight task has a worker");
        workers.entry(worker.to_string()).or_default().add(t);
    }
    (queues, workers)
}

/// Property 1: no queue and no worker is ever past a limit.
pub(super) fn check_limits(s: &State) {
    let (queues, workers) = loads(s);
    for (id, l) in &queues {
        let q = s.queue_by_id(*id).expect("queue");
        assert!(queue_ok(q, l), "queue {} past {:?}: {l:?}", q.name, q.spec);
    }
    for w in s.workers() {
        let l = workers.get(&w.name).cloned().unwrap_or_default();
        assert_eq!(l.tasks, w.tasks.len(), "worker {} holds its tasks", w.name);
        let limits = (w.slots, &w.capacity);
        assert!(worker_ok(w, &l), "worker {} past {limits:?}: {l:?}", w.name);
    }
}

pub(super) fn selects(selector: &ClusterSelector, cluster: &str) -> bool {
    match selector {
        ClusterSelector::All => true,
        ClusterSelector::Only(clusters) => clusters.contains(cluster),
    }
}

/// The queued tasks of a queue, in order.
pub(super) fn queued_tasks(s: &State, queue: u64) -> Vec<&Task> {
    let ids = s.queued_range(queue, 0, usize::MAX).into_iter();
    ids.map(|id| s.task(id).expect("a queued task")).collect()
}

/// No project has `DISPATCH_LOOKAHEAD` tasks queued in one queue: the
/// dispatcher sees every queued task, and the reference needs no bound.
pub(super) fn lookahead_cannot_matter(s: &State) -> bool {
    s.queues().all(|q| {
        let mut per_project = BTreeMap::<&str, usize>::new();
        for t in queued_tasks(s, q.id) {
            *per_project.entry(&t.project).or_default() += 1;
        }
        per_project.values().all(|&n| n < DISPATCH_LOOKAHEAD)
    })
}

/// The dispatcher by brute force, from the rules in `dispatch`'s docs: the
/// worker's queues of its pool that select its cluster, by priority, then
/// its own order; from each, while a task fits, round robin takes the first
/// fitting task of the first project after the last served (by name,
/// wrapping). Shuffle interleave's order is the seed's: `real`'s next pick
/// is taken if it is the first fitting task of its project.
pub(super) fn reference(pre: &State, worker: &str, max: usize, real: &[u64]) -> Vec<u64> {
    let w = pre.worker(worker).expect("worker");
    let (mut queue_loads, mut worker_loads) = loads(pre);
    let mut held = worker_loads.remove(worker).unwrap_or_default();
    let mut queues: Vec<&Queue> = (w.queues.iter().filter_map(|id| pre.queue_by_id(*id)))
        .filter(|q| q.pool == w.pool && q.state != QueueState::Drained)
        .filter(|q| selects(&q.spec.clusters, &w.cluster))
        .collect();
    queues.sort_by_key(|q| Reverse(q.spec.priority)); // stable: the worker's order
    let mut picked: Vec<u64> = Vec::new();
    for q in queues {
        let mut load = queue_loads.remove(&q.id).unwrap_or_default();
        let mut last = q.rr_last_project.clone();
        while picked.len() < max {
            let fitting: Vec<&Task> = (queued_tasks(pre, q.id).into_iter())
                .filter(|t| !picked.contains(&t.id))
                .filter(|t| queue_ok(q, &load.with(t)) && worker_ok(w, &held.with(t)))
                .collect();
            let first_of_project = |t: &Task| fitting.iter().find(|f| f.project == t.project);
            let next = match q.spec.fairness {
                Fairness::RoundRobin => {
                    let after_last =
                        |t: &&&Task| (t.project.as_str() <= last.as_str(), t.project.to_string());
                    fitting.iter().min_by_key(after_last)
                }
                Fairness::ShuffleInterleave => (real.get(picked.len()))
                    .and_then(|id| fitting.iter().find(|t| t.id == *id))
                    .filter(|t| first_of_project(t).map(|f| f.id) == Some(t.id))
                    .or(fitting.first()),
            };
            let Some(t) = next.copied() else { break };
            load.add(t);
            held.add(t);
            picked.push(t.id);
            last = t.project.to_string();
        }
    }
    picked
}

/// Property 2, and property 5 within a lease: a worker gets only tasks of
/// queues it listens to, in its pool and selecting its cluster, and one
/// project's picks from one queue come in the queue's order.
pub(super) fn check_placement(pre: &State, worker: &str, picks: &[u64]) {
    let w = pre.worker(worker).expect("worker");
    let mut last = BTreeMap::<(u64, &str), usize>::new();
    for &id in picks {
        let t = pre.task(id).expect("task");
        let q = pre.queue_by_id(t.queue).expect("queue");
        assert!(w.queues.contains(&q.id), "{worker} hears no {}", q.name);
        assert_eq!(q.pool, w.pool, "task {id} crossed pools");
        let cluster = &w.cluster;
        assert!(
            selects(&q.spec.clusters, cluster),
            "{cluster:?}: {}",
            q.name
        );
        let position = pre.position(t).expect("a picked task was queued");
        if let Some(before) = last.insert((q.id, &t.project), position) {
            assert!(before < position, "{} out of queue order", t.project);
        }
    }
}
