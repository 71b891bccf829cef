//! The dispatcher: which queued tasks a worker gets. A pure function of the
//! replicated state, the worker and the seed the leader stamped, run inside
//! apply, so every replica leases the same tasks.
//!
//! Rules, in order:
//! - **Pool and cluster.** Only queues of the worker's pool whose selector
//!   includes its cluster (and that no clear under way empties).
//! - **Queue order.** Higher queue priority first; at equal priority, the
//!   worker's own order of its queues.
//! - **Limits.** Never past a queue's action concurrency (in-flight tasks),
//!   run concurrency (distinct runs in flight; a run belongs to its project,
//!   and a task without a run is a run of its own) or quota (summed requests of in-flight tasks), nor the
//!   worker's capacity and slots. A task that does not fit is skipped for
//!   one that does, looking at most [`DISPATCH_LOOKAHEAD`] tasks (beyond those
//!   already picked in this lease) deep per
//!   project, so the queue does not block at its head.
//! - **Fairness within a queue**, across projects: `round_robin` serves the
//!   project after the last one served (by name, wrapping); `shuffle_interleave`
//!   orders projects by a hash of the stamped seed. Each project's tasks
//!   keep the queue's order.
//!
//! Cost: per task picked, O(queues the worker listens to × projects queued
//! in a queue × lookahead × log n); nothing scans a whole queue or every queue.

use std::cmp::Reverse;
use std::collections::BTreeSet;

use super::limits::DISPATCH_LOOKAHEAD;
use super::spec::{ClusterSelector, Fairness, QueueState, Resources};
use super::state::run_key;
use super::worker::Worker;
use super::{Queue, State, Task};

/// The tasks the dispatcher would lease to `worker` now, other than those in
/// `reserved` (a read-only preview; the lease itself runs the dispatcher
/// again inside apply).
pub fn dispatch_preview(
    state: &State,
    worker: &str,
    max_tasks: u32,
    reserved: &BTreeSet<u64>,
) -> Vec<u64> {
    pick(state, worker, max_tasks as usize, 0, reserved)
        .into_iter()
        .map(|p| p.task)
        .collect()
}

/// One task the dispatcher picked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pick {
    pub task: u64,
    pub queue: u64,
    /// Under round-robin fairness, the project it was picked for (the
    /// queue's new round-robin position).
    pub round_robin: Option<String>,
}

/// What the picks so far add to a queue's in-flight work.
#[derive(Default)]
struct Added {
    tasks: u64,
    /// Runs the picks start that were not in flight before.
    runs: BTreeSet<String>,
    resources: Resources,
    picked: BTreeSet<u64>,
}

/// Up to `max` tasks for `worker`, in the order they should be leased,
/// passing over the tasks in `reserved` (empty in apply; a node's lease
/// polls fill it with the tasks their own leases are about to take).
pub(crate) fn pick(
    state: &State,
    worker: &str,
    max: usize,
    seed: u64,
    reserved: &BTreeSet<u64>,
) -> Vec<Pick> {
    let Some(w) = state.worker(worker) else {
        return Vec::new();
    };
    let mut held: Resources = Resources::new();
    for t in w.tasks.iter().filter_map(|id| state.task(*id)) {
        add(&mut held, &t.resources);
    }
    let mut held_count = w.tasks.len();
    let mut picks = Vec::new();
    for q in queues_for(state, w) {
        let mut added = Added::default();
        let mut last_project = q.rr_last_project.clone();
        while picks.len() < max && (w.slots == 0 || held_count < w.slots as usize) {
            let Some(t) = next_in_queue(
                state,
                w,
                q,
                (&added, reserved),
                &held,
                &last_project,
                seed,
                picks.len(),
            ) else {
                break;
            };
            added.tasks += 1;
            // Only a run not already in flight is a new run.
            let run = run_key(t);
            if !state
                .in_flight(q.id)
                .is_some_and(|f| f.runs.contains_key(&run))
            {
                added.runs.insert(run);
            }
            add(&mut added.resources, &t.resources);
            added.picked.insert(t.id);
            add(&mut held, &t.resources);
            held_count += 1;
            last_project = t.project.to_string();
            picks.push(Pick {
                task: t.id,
                queue: q.id,
                round_robin: (q.spec.fairness == Fairness::RoundRobin)
                    .then(|| t.project.to_string()),
            });
        }
        if picks.len() >= max {
            break;
        }
    }
    picks
}

/// The queues `w` may take work from, in the order it should: higher
/// priority first, then the worker's own order.
fn queues_for<'s>(state: &'s State, w: &Worker) -> Vec<&'s Queue> {
    let mut queues: Vec<(usize, &Queue)> = w
        .queues
        .iter()
        .enumerate()
        .filter_map(|(i, id)| state.queue_by_id(*id).map(|q| (i, q)))
        .filter(|(_, q)| {
            q.pool == w.pool
                && q.state != QueueState::Drained
                && q.clearing.is_none()
                && selects(q, w)
        })
        .collect();
    queues.sort_by_key(|&(i, q)| (Reverse(q.spec.priority), i));
    queues.into_iter().map(|(_, q)| q).collect()
}

/// Whether a queue's selector takes the worker's cluster.
fn selects(q: &Queue, w: &Worker) -> bool {
    match &q.spec.clusters {
        ClusterSelector::All => true,
        ClusterSelector::Only(clusters) => clusters.contains(&w.cluster),
    }
}

fn add(into: &mut Resources, r: &Resources) {
    for (name, amount) in r {
        *into.entry(name.clone()).or_default() += amount;
    }
}

/// The next task of queue `q` that fits, by the queue's fairness.
#[allow(clippy::too_many_arguments)]
fn next_in_queue<'s>(
    state: &'s State,
    w: &Worker,
    q: &Queue,
    (added, reserved): (&Added, &BTreeSet<u64>),
    held: &Resources,
    last_project: &str,
    seed: u64,
    round: usize,
) -> Option<&'s Task> {
    let in_flight = state.in_flight(q.id);
    let running = in_flight.map_or(0, |f| f.tasks) + added.tasks;
    let limit = u64::from(q.spec.action_concurrency);
    if limit > 0 && running >= limit {
        return None;
    }
    let mut projects: Vec<&str> = state.projects_queued_in(q.id).collect();
    match q.spec.fairness {
        Fairness::RoundRobin => {
            // Those after the last served come first, then from the start.
            let split = projects.partition_point(|p| *p <= last_project);
            projects.rotate_left(split);
        }
        Fairness::ShuffleInterleave => {
            projects.sort_by_key(|p| mix(seed, q.id, round as u64, p));
        }
    }
    for project in projects {
        let order = state.project_order(q.id, project)?;
        let passed = added.picked.len() + reserved.len();
        for id in order.range(0, DISPATCH_LOOKAHEAD + passed) {
            if added.picked.contains(&id) || reserved.contains(&id) {
                continue;
            }
            let t = state.task(id).expect("a queued id is a task");
            if fits(t, w, q, added, held, state) {
                return Some(t);
            }
        }
    }
    None
}

/// Whether `t` fits the queue's run concurrency and quota and the worker's
/// capacity, given what is in flight and what was picked already.
fn fits(t: &Task, w: &Worker, q: &Queue, added: &Added, held: &Resources, state: &State) -> bool {
    let in_flight = state.in_flight(q.id);
    let run_limit = q.spec.run_concurrency as usize;
    if run_limit > 0 {
        let run = run_key(t);
        let known =
            in_flight.is_some_and(|f| f.runs.contains_key(&run)) || added.runs.contains(&run);
        let runs = in_flight.map_or(0, |f| f.runs.len()) + added.runs.len();
        if !known && runs >= run_limit {
            return false;
        }
    }
    for (name, &limit) in &q.spec.quota {
        let used = in_flight
            .and_then(|f| f.resources.get(name))
            .copied()
            .unwrap_or(0)
            + added.resources.get(name).copied().unwrap_or(0);
        if used + t.resources.get(name).copied().unwrap_or(0) > limit {
            return false;
        }
    }
    if !w.capacity.is_empty() {
        for (name, &amount) in &t.resources {
            // A resource the worker does not offer fits only when none is asked.
            let cap = w.capacity.get(name).copied().unwrap_or(0);
            if held.get(name).copied().unwrap_or(0) + amount > cap {
                return false;
            }
        }
    }
    true
}

/// A deterministic 64-bit mix of the seed, the queue, the round and a
/// project name (splitmix64 over FNV-1a).
fn mix(seed: u64, queue: u64, round: u64, project: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in project.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = seed ^ h ^ queue.rotate_left(17) ^ round.rotate_left(41);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
