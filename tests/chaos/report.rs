//! The chaos run's verdict and report: the shared properties
//! (`tests/history/check/`) over the history and the nodes' final views,
//! this run's own facts (nodes that died on their own, nodes that could not
//! be read, a cluster that did not converge), the availability figures,
//! printed and as JSON. It judges; it never touches the cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use serde_json::json;

use crate::history::availability::{availability, Availability};
use crate::history::check::{
    fencing, leases, replicas, submits, Findings, DIGEST_MISMATCHES, DOUBLE_LEASES, DUPLICATES,
    LOST,
};
use crate::history::{History, Outcome, Replica};
use crate::Args;

/// The run's verdict: every violation, and the counts the report shows.
struct Verdict {
    violations: Vec<String>,
    lost: u64,
    duplicates: u64,
    double_leases: u64,
    digest_mismatches: u64,
}

/// The shared properties this run can judge (all but the idempotency
/// records and the reads, which it does not see or make), then its own
/// facts.
fn judge(
    args: &Args,
    history: &History,
    finals: &[Replica],
    crashes: &[String],
    converged: bool,
) -> Verdict {
    let tasks = finals.first().map_or(&[][..], |n| &n.tasks);
    let submits = submits::check(history, tasks);
    let mut fencing = fencing::check(history);
    fencing.extend(fencing::ends(history, tasks));
    fencing.extend(leases::after_success(history));
    // Every worker has stopped and the run waited for their leases to end.
    fencing.extend(leases::all_expired(finals));
    let mut replicas = replicas::agree(finals);
    replicas.extend(replicas::listings(finals));
    let counts = (
        submits.count(LOST),
        submits.count(DUPLICATES),
        fencing.count(DOUBLE_LEASES),
        replicas.count(DIGEST_MISMATCHES),
    );
    let mut found = Findings::default();
    found.extend(submits);
    found.extend(fencing);
    found.extend(replicas);
    let mut violations = found.violations;
    violations.extend(crashes.iter().cloned());
    if finals.len() != args.nodes as usize {
        violations.push(format!(
            "only {} of {} nodes could be read",
            finals.len(),
            args.nodes
        ));
    }
    if !converged {
        violations.push("the nodes did not converge to one index and digest within 60 s".into());
    }
    Verdict {
        violations,
        lost: counts.0,
        duplicates: counts.1,
        double_leases: counts.2,
        digest_mismatches: counts.3,
    }
}

/// Submit keys whose every attempt ended unknown.
fn unresolved_keys(history: &History) -> usize {
    let mut known = BTreeSet::new();
    let mut all = BTreeSet::new();
    for (s, _) in history.submits() {
        all.insert(&s.key);
        if !matches!(s.outcome, Outcome::Unknown(_)) {
            known.insert(&s.key);
        }
    }
    all.len() - known.len()
}

pub fn report(
    args: &Args,
    history: &History,
    finals: &[Replica],
    crashes: &[String],
    (fault_start, fault_end): (u64, u64),
    converged: bool,
    began: Instant,
) -> serde_json::Value {
    let tasks = finals.first().map_or(&[][..], |n| &n.tasks);
    let verdict = judge(args, history, finals, crashes, converged);
    let avail = availability(history, fault_start, fault_end);
    let mut faults: BTreeMap<&str, u64> = BTreeMap::new();
    for f in &history.faults {
        *faults.entry(f.kind.as_str()).or_default() += 1;
    }
    let mut states: BTreeMap<&str, u64> = BTreeMap::new();
    for t in tasks {
        *states.entry(t.state.as_str()).or_default() += 1;
    }
    let unknown_keys = unresolved_keys(history);
    let longest_failover = avail.failovers_ms.iter().copied().max().unwrap_or(0);
    let replay = format!(
        "scripts/chaos --seed {} --seconds {} --nodes {} --faults {}",
        args.seed,
        args.seconds,
        args.nodes,
        args.faults.join(",")
    );
    let ops = history.counts();
    println!("\n== chaos report (seed {})", args.seed);
    print_log(&ops, history);
    println!("tasks at the end: {states:?}; submit keys never resolved: {unknown_keys}");
    print_verdict(&verdict, &avail, &replay, began);

    json!({
        "seed": args.seed,
        "nodes": args.nodes,
        "seconds": args.seconds,
        "fault_kinds": args.faults,
        "ops": ops,
        "faults": faults,
        "fault_log": history.faults,
        "tasks": { "total": tasks.len(), "by_state": states, "submit_keys_unresolved": unknown_keys },
        "lost": verdict.lost,
        "duplicates": verdict.duplicates,
        "double_leases": verdict.double_leases,
        "digest_mismatches": verdict.digest_mismatches,
        "max_unavailable_ms": avail.max_unavailable_ms,
        "longest_failover_ms": longest_failover,
        "availability": avail,
        "violations": verdict.violations,
        "replay": replay,
        "elapsed_s": began.elapsed().as_secs_f64(),
    })
}

/// The operations by kind and outcome, and the faults in order.
fn print_log(ops: &BTreeMap<String, BTreeMap<String, u64>>, history: &History) {
    println!("operations (kind: outcome count):");
    for (kind, outcomes) in ops {
        let parts: Vec<String> = outcomes.iter().map(|(o, n)| format!("{o} {n}")).collect();
        println!("  {kind:<10} {}", parts.join(", "));
    }
    println!("faults:");
    for f in &history.faults {
        println!(
            "  {:>7.1} s  {:<17} {:>5} ms  {}{}",
            f.start_ms as f64 / 1000.0,
            f.kind,
            f.end_ms - f.start_ms,
            f.target,
            if f.hit_leader { "  (leader)" } else { "" }
        );
    }
}

fn print_verdict(verdict: &Verdict, avail: &Availability, replay: &str, began: Instant) {
    println!(
        "lost {}, duplicates {}, double leases {}, digest mismatches {}",
        verdict.lost, verdict.duplicates, verdict.double_leases, verdict.digest_mismatches
    );
    let longest_failover = avail.failovers_ms.iter().copied().max().unwrap_or(0);
    println!(
        "availability: {:.0}% of seconds had an acknowledged submit, {:.1}% of submit attempts \
         acknowledged; longest stretch without one {} ms; failovers after leader faults {:?} ms \
         (longest {longest_failover}); submit p50 {} ms, p99 {} ms during faults",
        avail.windows_with_writes * 100.0,
        avail.submits_acknowledged * 100.0,
        avail.max_unavailable_ms,
        avail.failovers_ms,
        avail.submit_p50_ms,
        avail.submit_p99_ms
    );
    let violations = &verdict.violations;
    if violations.is_empty() {
        println!(
            "no violations ({:.0} s in all)",
            began.elapsed().as_secs_f64()
        );
    } else {
        println!("{} VIOLATIONS; replay with: {replay}", violations.len());
        for v in violations.iter().take(50) {
            println!("  - {v}");
        }
    }
}
