//! The simulation's judgement once the healed cluster has converged: the
//! shared properties (`tests/history/check/`) over the history and every
//! replica's view, and what only this program can see, the model `State` of
//! every replica:
//!
//! - the model's invariants hold on every node;
//! - nodes at the same applied index hold equal states, and each loads that
//!   same state back from its disk.
//!
//! The simulation sees the log and the model, so it feeds the properties
//! everything the format allows: each write's log entry and answer, each
//! replica's idempotency records, and what each node reloads from disk.

use std::collections::BTreeMap;

use laneq::model::State;
use laneq::raft::Applied;

use super::history::check::{fencing, leases, outcomes, reads, replicas, submits, Findings};
use super::history::{model, History, Replica};

pub type Replicas = BTreeMap<u64, (Applied, State)>;

/// Every violation found, or nothing.
pub fn check(history: &History, served: &Replicas, reloaded: &Replicas) -> Vec<String> {
    let keys: Vec<&str> = history.records.iter().map(|r| r.key.as_str()).collect();
    let views = |nodes: &Replicas| -> Vec<Replica> {
        (nodes.iter())
            .map(|(&id, (applied, state))| model::replica(id, applied, state, keys.clone()))
            .collect()
    };
    let (views, back) = (views(served), views(reloaded));
    let mut errors = states_agree(served, reloaded);
    let mut found = Findings::default();
    found.extend(replicas::agree(&views));
    found.extend(replicas::listings(&views));
    found.extend(replicas::reloaded(&views, &back));
    found.extend(fencing::check(history));
    found.extend(leases::after_success(history));
    found.extend(reads::check(history));
    if let Some(first) = views.first() {
        found.extend(submits::check(history, &first.tasks));
        found.extend(fencing::ends(history, &first.tasks));
        found.extend(outcomes::check(history, first));
    }
    errors.extend(found.violations);
    errors
}

/// The model's invariants on every node, and equal states where the applied
/// positions are equal (which the replicas property compares).
fn states_agree(served: &Replicas, reloaded: &Replicas) -> Vec<String> {
    let mut errors = Vec::new();
    let Some((first_id, (first_applied, first_state))) = served.iter().next() else {
        return errors;
    };
    for (id, (applied, state)) in served {
        if let Err(panic) = std::panic::catch_unwind(|| state.check_invariants()) {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
            errors.push(format!("node {id}: invariants broken: {why:?}"));
        }
        if applied == first_applied && state != first_state {
            errors.push(format!(
                "node {id} and node {first_id} have different states at the same index {}",
                applied.index
            ));
        }
        match reloaded.get(id) {
            Some((a, s)) if a == applied && s != state => errors.push(format!(
                "node {id} reloads from disk another state than it served at index {}",
                applied.index
            )),
            _ => {}
        }
    }
    errors
}
