//! The checker: pure functions over the recorded history and the final state
//! of every node. Each returns counts and the violations it found, described
//! so that a person can find the task and the times in the node logs.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::history::{FinalNode, FinalTask, History, Outcome, TaskOpKind};

/// What the submit check found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SubmitCheck {
    /// Acknowledged tasks missing from the final state.
    pub lost: u64,
    /// Tasks beyond the one (or the batch) an idempotency key asked for.
    pub duplicates: u64,
    pub violations: Vec<String>,
}

/// Guarantee 1: every acknowledged submit is present exactly once, with the
/// id it was acknowledged with; retries (same key) made no duplicates; a key
/// only ever refused created nothing; and no task came from nowhere.
pub fn check_submits(history: &History, tasks: &[FinalTask]) -> SubmitCheck {
    let mut out = SubmitCheck::default();
    let mut by_key: HashMap<&str, Vec<&FinalTask>> = HashMap::new();
    for t in tasks {
        by_key.entry(t.key.as_str()).or_default().push(t);
    }
    let mut attempts: BTreeMap<&str, Vec<&crate::history::Submit>> = BTreeMap::new();
    for s in &history.submits {
        attempts.entry(s.key.as_str()).or_default().push(s);
    }
    for (key, tries) in &attempts {
        let present = by_key.get(key).map_or(&[][..], |v| v.as_slice());
        let size = tries[0].tasks;
        if present.len() > size {
            out.duplicates += (present.len() - size) as u64;
            out.violations.push(format!(
                "key {key}: {} tasks ({:?}) for a submit of {size}",
                present.len(),
                present.iter().map(|t| t.id).collect::<Vec<_>>()
            ));
        }
        let acked: BTreeSet<&Vec<u64>> = tries
            .iter()
            .filter(|s| s.outcome == Outcome::Ok)
            .map(|s| &s.ids)
            .collect();
        if acked.len() > 1 {
            out.violations.push(format!(
                "key {key}: acknowledged with different ids {acked:?}"
            ));
        }
        if let Some(ids) = acked.first() {
            for id in ids.iter() {
                if !present.iter().any(|t| t.id == *id) {
                    out.lost += 1;
                    out.violations.push(format!(
                        "key {key}: task {id} was acknowledged and is missing"
                    ));
                }
            }
        } else if tries
            .iter()
            .all(|s| matches!(s.outcome, Outcome::Refused(_)))
            && !present.is_empty()
        {
            out.violations.push(format!(
                "key {key}: every attempt was refused, yet tasks {:?} exist",
                present.iter().map(|t| t.id).collect::<Vec<_>>()
            ));
        }
    }
    for t in tasks {
        if !attempts.contains_key(t.key.as_str()) {
            out.violations.push(format!(
                "task {} (key {:?}) was never submitted by the workload",
                t.id, t.key
            ));
        }
    }
    out
}

/// What the lease check found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LeaseCheck {
    pub double_leases: u64,
    pub violations: Vec<String>,
}

/// Guarantees 2 and 3, from what the workers saw in real time:
/// - a fencing token is never handed to two workers;
/// - once a worker has received token B for a task, no start or completion
///   with an older token A < B sent after that moment is accepted (the two
///   leases would have been valid at once);
/// - no task completes twice, and no task is leased again after a
///   completion was acknowledged.
pub fn check_leases(history: &History) -> LeaseCheck {
    let mut out = LeaseCheck::default();
    let mut grants: BTreeMap<u64, Vec<&crate::history::Grant>> = BTreeMap::new();
    for g in &history.grants {
        grants.entry(g.task).or_default().push(g);
    }
    for (task, gs) in &grants {
        let mut holder: BTreeMap<u64, &str> = BTreeMap::new();
        for g in gs {
            if let Some(other) = holder.insert(g.token, &g.worker) {
                if other != g.worker {
                    out.double_leases += 1;
                    out.violations.push(format!(
                        "task {task}: token {} was given to {other} and to {}",
                        g.token, g.worker
                    ));
                }
            }
        }
    }
    let mut completions: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    let mut first_completion: BTreeMap<u64, u64> = BTreeMap::new();
    for op in history.task_ops.iter().filter(|o| o.outcome == Outcome::Ok) {
        let newer = grants.get(&op.task).and_then(|gs| {
            gs.iter()
                .find(|g| g.token > op.token && g.done_ms < op.sent_ms)
        });
        if let Some(g) = newer {
            out.double_leases += 1;
            out.violations.push(format!(
                "task {}: {:?} by {} with token {} sent at {} ms was accepted, but {} had \
                 received token {} at {} ms",
                op.task, op.kind, op.worker, op.token, op.sent_ms, g.worker, g.token, g.done_ms
            ));
        }
        if op.kind == TaskOpKind::Complete {
            completions.entry(op.task).or_default().insert(op.token);
            let at = first_completion.entry(op.task).or_insert(op.done_ms);
            *at = (*at).min(op.done_ms);
        }
    }
    for (task, tokens) in &completions {
        if tokens.len() > 1 {
            out.violations.push(format!(
                "task {task}: completions with tokens {tokens:?} were all accepted"
            ));
        }
    }
    for g in &history.grants {
        if let Some(done) = first_completion.get(&g.task) {
            if g.sent_ms > *done {
                out.double_leases += 1;
                out.violations.push(format!(
                    "task {}: leased to {} (token {}) at {} ms after its completion was \
                     acknowledged at {done} ms",
                    g.task, g.worker, g.token, g.done_ms
                ));
            }
        }
    }
    out
}

/// What the final-state check found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FinalCheck {
    /// Nodes whose applied index or digest differs from the first node's.
    pub digest_mismatches: u64,
    pub violations: Vec<String>,
}

/// Guarantees 4 and 5 on the healed cluster: every node has applied the same
/// index to the same digest and holds the same tasks; on every node each
/// queue's positions are 1..=n, the queued listing matches the tasks' states
/// and no task sits in two queues; with the workers gone and their leases
/// expired, nothing is left leased or running.
pub fn check_final(nodes: &[FinalNode]) -> FinalCheck {
    let mut out = FinalCheck::default();
    let Some(first) = nodes.first() else {
        out.violations.push("no node could be read".into());
        return out;
    };
    for n in &nodes[1..] {
        if (n.applied, &n.digest) != (first.applied, &first.digest) {
            out.digest_mismatches += 1;
            out.violations.push(format!(
                "node {} is at index {} with digest {}, node {} at {} with {}",
                n.id, n.applied, n.digest, first.id, first.applied, first.digest
            ));
        } else if n.tasks != first.tasks {
            out.violations.push(format!(
                "nodes {} and {} report the same digest but different tasks",
                first.id, n.id
            ));
        }
    }
    for n in nodes {
        let mut seen: BTreeMap<u64, &str> = BTreeMap::new();
        for (queue, entries) in &n.queued {
            for (i, (id, position)) in entries.iter().enumerate() {
                if *position != i as u64 + 1 {
                    out.violations.push(format!(
                        "node {}: queue {queue} lists task {id} {} but reports position {position}",
                        n.id,
                        i + 1
                    ));
                }
                if let Some(other) = seen.insert(*id, queue) {
                    out.violations.push(format!(
                        "node {}: task {id} is queued in {other} and in {queue}",
                        n.id
                    ));
                }
            }
        }
        for t in &n.tasks {
            let listed = seen.get(&t.id).copied();
            match (t.state.as_str(), listed) {
                ("queued", Some(q)) if q == t.queue => {}
                ("queued", _) => out.violations.push(format!(
                    "node {}: task {} is queued in {} but listed in {listed:?}",
                    n.id, t.id, t.queue
                )),
                (state, Some(q)) => out.violations.push(format!(
                    "node {}: task {} is {state} yet listed in queue {q}",
                    n.id, t.id
                )),
                ("leased" | "running", None) => out.violations.push(format!(
                    "node {}: task {} is still {} after every lease should have expired",
                    n.id, t.id, t.state
                )),
                _ => {}
            }
        }
    }
    out
}

/// Availability during the fault phase, from the submits' times.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct Availability {
    /// Share of the phase's one-second windows with an acknowledged submit.
    pub windows_with_writes: f64,
    /// Share of submit attempts that were acknowledged.
    pub submits_acknowledged: f64,
    /// Longest stretch without an acknowledged submit.
    pub max_unavailable_ms: u64,
    /// For each fault that hit the leader: how long after it began the first
    /// submit sent after it was acknowledged.
    pub failovers_ms: Vec<u64>,
    pub submit_p50_ms: u64,
    pub submit_p99_ms: u64,
}

pub fn availability(history: &History, start_ms: u64, end_ms: u64) -> Availability {
    let mut acks: Vec<u64> = history
        .submits
        .iter()
        .filter(|s| s.outcome == Outcome::Ok && s.done_ms >= start_ms && s.done_ms <= end_ms)
        .map(|s| s.done_ms)
        .collect();
    acks.sort_unstable();
    let in_phase: Vec<_> = (history.submits.iter())
        .filter(|s| s.sent_ms >= start_ms && s.sent_ms <= end_ms)
        .collect();
    let mut max_gap = 0;
    let mut prev = start_ms;
    for &t in acks.iter().chain(std::iter::once(&end_ms)) {
        max_gap = max_gap.max(t - prev);
        prev = t;
    }
    let windows = (end_ms - start_ms).div_ceil(1000).max(1);
    let with_writes: BTreeSet<u64> = acks.iter().map(|t| (t - start_ms) / 1000).collect();
    let failovers_ms = (history.faults.iter())
        .filter(|f| f.hit_leader && f.start_ms >= start_ms && f.start_ms <= end_ms)
        .filter_map(|f| {
            (history.submits.iter())
                .filter(|s| s.outcome == Outcome::Ok && s.sent_ms >= f.start_ms)
                .map(|s| s.done_ms - f.start_ms)
                .min()
        })
        .collect();
    let mut latencies: Vec<u64> = (in_phase.iter())
        .filter(|s| s.outcome == Outcome::Ok)
        .map(|s| s.done_ms - s.sent_ms)
        .collect();
    latencies.sort_unstable();
    let pct = |q: usize| {
        latencies
            .get((latencies.len() * q / 100).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let acknowledged = in_phase.iter().filter(|s| s.outcome == Outcome::Ok).count();
    Availability {
        windows_with_writes: with_writes.len() as f64 / windows as f64,
        submits_acknowledged: acknowledged as f64 / in_phase.len().max(1) as f64,
        max_unavailable_ms: max_gap,
        failovers_ms,
        submit_p50_ms: pct(50),
        submit_p99_ms: pct(99),
    }
}
