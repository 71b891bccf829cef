//! The dispatcher: random leases keep every limit and match the brute-force
//! reference; previews look past reserved tasks; round robin shares stay
//! within one; priority, and runs counted once and per project.

use std::collections::{BTreeMap, BTreeSet};

use rand::seq::SliceRandom;
use rand::Rng;

use super::harness::{
    complete, create, create_projects, for_seeds, register, strings, subset, Sim, Stats, SEEDS,
};
use super::reference::{check_limits, queued_tasks};
use super::steps::run_random;
use super::task_to;
use crate::model::Op;

#[test]
fn random_leases_keep_limits_placement_order_fencing_and_expiry() {
    let stats = for_seeds(SEEDS, |seed| run_random(seed, true).stats);
    let sum = |f: fn(&Stats) -> u64| stats.iter().map(f).sum::<u64>();
    let (leases, picks) = (sum(|s| s.leases), sum(|s| s.picks));
    let (stale, expired) = (sum(|s| s.stale), sum(|s| s.expired));
    eprintln!("{leases} leases, {picks} tasks leased, {stale} stale calls, {expired} expired");
    assert!(
        picks * 2 > leases && stale * expired > 0,
        "the steps did little"
    );
}

/// Property 3: the dispatcher leases exactly what the reference does.
fn matches_the_reference(run_limits: bool) {
    let stats = for_seeds(SEEDS, |seed| run_random(seed, run_limits).stats);
    let sum = |f: fn(&Stats) -> u64| stats.iter().map(f).sum::<u64>();
    let (leases, compared) = (sum(|s| s.leases), sum(|s| s.compared));
    assert!(compared * 10 > leases * 9, "{compared} of {leases}");
    let mut mismatch = stats.iter().enumerate();
    let mismatch = mismatch.find_map(|(seed, s)| Some((seed, s.mismatch.clone()?)));
    assert_eq!(mismatch, None, "(seed, the first lease that differs)");
}

#[test]
fn random_leases_match_the_reference_without_run_limits() {
    matches_the_reference(false);
}

#[test]
fn random_leases_match_the_reference() {
    matches_the_reference(true);
}

/// A node's lease polls reserve what their previews found, and the next
/// preview looks past those tasks; the lease itself, in apply, does not.
#[test]
fn a_preview_looks_past_reserved_tasks() {
    let mut sim = Sim::new(1);
    create(&mut sim, "q", 50, 0);
    register(&mut sim, "w", &["q"]);
    let tasks = (0..3).map(|_| task_to("q", "", "")).collect();
    sim.ok(Op::SubmitTasks { tasks });
    let preview = |reserved: &[u64]| {
        let reserved: BTreeSet<u64> = reserved.iter().copied().collect();
        crate::model::dispatch_preview(&sim.s, "w", 2, &reserved)
    };
    assert_eq!(preview(&[]), vec![1, 2]);
    assert_eq!(preview(&[1]), vec![2, 3]);
    assert_eq!(preview(&[2]), vec![1, 3]);
    assert!(preview(&[1, 2, 3]).is_empty());
    let leased: Vec<u64> = sim.lease("w", 2, 60_000).iter().map(|l| l.0).collect();
    assert_eq!(leased, vec![1, 2], "apply reserves nothing");
}

/// Property 4: one round-robin queue, no limits, every task queued up front:
/// after each lease, the projects that still have tasks queued got shares
/// within one of each other.
#[test]
fn round_robin_shares_stay_within_one() {
    for_seeds(SEEDS, |seed| {
        let mut sim = Sim::new(seed);
        let projects = subset(&mut sim.rng, &strings(&["pa", "pb", "pc", "pd"]));
        create(&mut sim, "rr", 50, 0);
        create_projects(&mut sim, &projects);
        register(&mut sim, "w", &["rr"]);
        let mut tasks = Vec::new();
        for p in &projects {
            let n = sim.rng.random_range(1..=25);
            tasks.extend((0..n).map(|_| task_to("rr", p, "")));
        }
        tasks.shuffle(&mut sim.rng);
        sim.ok(Op::SubmitTasks { tasks });
        let q = sim.s.queue("rr").expect("queue").id;
        let mut got = BTreeMap::<String, usize>::new();
        while sim.s.queued(q) > 0 {
            let max = sim.rng.random_range(1..=3);
            let leases = sim.lease("w", max, 60_000);
            assert!(!leases.is_empty(), "a queue without limits leased nothing");
            for (id, token, _) in leases {
                let project = sim.s.task(id).expect("task").project.to_string();
                *got.entry(project).or_default() += 1;
                if sim.rng.random_bool(0.5) {
                    sim.ok(complete(id, token, true));
                }
            }
            let waiting: BTreeSet<&str> = queued_tasks(&sim.s, q)
                .iter()
                .map(|t| &*t.project)
                .collect();
            let shares: BTreeSet<usize> = waiting
                .iter()
                .map(|p| got.get(*p).map_or(0, |n| *n))
                .collect();
            let spread = shares.last().zip(shares.first()).map(|(hi, lo)| hi - lo);
            assert!(spread.unwrap_or(0) <= 1, "{got:?}, waiting {waiting:?}");
        }
    });
}

/// A run already in flight is one run, however many of its tasks a lease
/// picks: run concurrency 2 with run `a` in flight admits `a` and `b`, and
/// the higher-priority queue is served before the lower one.
#[test]
fn a_run_in_flight_counts_once_within_a_lease() {
    let mut sim = Sim::new(0);
    create(&mut sim, "high", 90, 2);
    create(&mut sim, "low", 10, 0);
    register(&mut sim, "w", &["high", "low"]);
    let run = |r| task_to("high", "", r);
    let tasks = vec![run("a"), run("a"), run("b"), task_to("low", "", "")];
    sim.ok(Op::SubmitTasks { tasks });
    let ids = |leases: Vec<(u64, u64, u64)>| leases.iter().map(|l| l.0).collect::<Vec<_>>();
    assert_eq!(ids(sim.lease("w", 1, 60_000)), [1]);
    assert_eq!(ids(sim.lease("w", 3, 60_000)), [2, 3, 4]);
}

/// Runs belong to projects (the per-run queued limit counts by project and
/// run), so two projects' runs of one name are two runs for run concurrency.
#[test]
fn runs_of_different_projects_are_different_runs() {
    let mut sim = Sim::new(0);
    create(&mut sim, "q", 50, 1);
    create_projects(&mut sim, &strings(&["pa", "pb"]));
    register(&mut sim, "w", &["q"]);
    let tasks = vec![task_to("q", "pa", "train"), task_to("q", "pb", "train")];
    sim.ok(Op::SubmitTasks { tasks });
    let leases = sim.lease("w", 2, 60_000);
    check_limits(&sim.s);
    assert_eq!(leases.len(), 1, "two runs, and room for one");
}
