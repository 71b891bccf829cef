//! Heartbeats: sent only to a follower, they keep leases across leader
//! changes and are batched into the log; a new leader gives every lease one
//! TTL of grace before it expires any.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use laneq::proto::v1::*;

use super::short_leases;
use crate::support::{always, eventually, ok_if, Cluster, Node, Timings};

/// The role of node `id` and the leader it knows.
async fn role(c: &Cluster, id: u64) -> (String, Option<u64>) {
    let s = c.status(id).await.expect("node answers");
    (s.role, s.leader_id)
}

/// Moves leadership to `to` with `laneq cluster transfer-leader` and waits
/// for it; `via`, which workers talk to, is a follower before and after.
async fn move_leader(c: &Cluster, via: u64, to: u64) {
    assert_eq!(role(c, via).await.0, "follower", "node {via} before");
    let (code, _, err) = c.cli(&["cluster", "transfer-leader", &to.to_string()]);
    assert_eq!(code, Some(0), "{err}");
    let what = format!("node {to} to lead and node {via} to follow it (their roles)");
    let via_role = eventually(Duration::from_secs(30), &what, async || {
        let (to_role, _) = role(c, to).await;
        let (via_role, via_leader) = role(c, via).await;
        if to_role == "leader" && via_leader == Some(to) {
            Ok(via_role)
        } else {
            Err((to_role, via_role, via_leader))
        }
    })
    .await;
    assert_eq!(via_role, "follower", "node {via} after");
}

/// Heartbeats for every (worker, task, token) of `held` every 300 ms until
/// `stop`; returns every task an answer revoked. The pause is the workers'
/// heartbeat period, part of the scenario: it synchronises nothing.
async fn heartbeat_until(
    f: Node,
    held: Vec<(String, u64, u64)>,
    stop: Arc<AtomicBool>,
) -> Vec<u64> {
    let mut revoked = vec![];
    while !stop.load(Ordering::Relaxed) {
        for (worker, id, token) in &held {
            revoked.extend(f.heartbeat(worker, &[(*id, *token)]).await.revoked);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    revoked
}

/// Polls until every lease of `held` expires after `after_ms`: renewed by a
/// leader that stamped it later than `after_ms` minus the TTL.
async fn wait_renewed(f: &Node, held: &[(String, u64, u64)], after_ms: u64) {
    let what = format!("every lease of {held:?} to expire after {after_ms} (the expiries)");
    eventually(Duration::from_secs(30), &what, async || {
        let mut expiries = vec![];
        for (_, id, _) in held {
            expiries.push(f.task(*id).await.lease_expires_ms);
        }
        let renewed = expiries.iter().all(|&e| e > Some(after_ms));
        ok_if(renewed, expiries)
    })
    .await;
}

/// Registers each worker of `names` through `f`, submits a task for it and
/// has it lease and start that task; returns (worker, task, token, expiry).
async fn running_tasks(f: &Node, names: &[&str]) -> Vec<(String, u64, u64, u64)> {
    let mut held = vec![];
    for name in names {
        f.register(name, &["default"], 1).await;
        let id = f.submit_to("default", "").await;
        let lease = f.lease(name, 1, 2_000).await.remove(0);
        assert_eq!(lease.task.unwrap().id, id);
        let t = f.start(id, lease.fencing_token).await.unwrap();
        let expires = t.lease_expires_ms.unwrap();
        held.push((name.to_string(), id, lease.fencing_token, expires));
    }
    held
}

/// Two workers heartbeat only to one follower while leadership moves twice
/// between the other two nodes. The follower stays a follower, its batches
/// renew the leases under each new leader, and no lease expires: both tasks
/// complete with their first tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_through_a_follower_keep_leases_across_leader_changes() {
    let timings = short_leases();
    let ttl_ms = timings.lease_ttl_ms;
    let c = Cluster::start(3, timings);
    let first = c.init(1).await;
    let others = c.followers(first);
    let (via, second) = (others[0], others[1]);
    let f = Node::new(&c, via);
    let held: Vec<(String, u64, u64)> = running_tasks(&f, &["w1", "w2"])
        .await
        .into_iter()
        .map(|(w, id, token, _)| (w, id, token))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let beats = tokio::spawn(heartbeat_until(f.clone(), held.clone(), stop.clone()));

    for to in [second, first] {
        move_leader(&c, via, to).await;
        wait_renewed(&f, &held, laneq::clock::now_ms() + ttl_ms).await;
    }
    // Past the last leader's grace and then some: a lease not renewed
    // would have expired by now.
    let during = Duration::from_millis(3 * ttl_ms);
    always(
        during,
        "every lease held with its first token",
        async || {
            for (_, id, token) in &held {
                let t = f.task(*id).await;
                if (t.state.as_str(), t.fencing_token) != ("running", *token) {
                    return Err(t);
                }
            }
            Ok(())
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    assert_eq!(beats.await.unwrap(), Vec::<u64>::new(), "nothing revoked");
    assert_eq!(role(&c, via).await, ("follower".to_string(), Some(first)));
    for (worker, id, token) in &held {
        let t = f.task(*id).await;
        assert_eq!(
            (t.state.as_str(), t.worker.as_str(), t.attempt, t.iteration),
            ("running", worker.as_str(), 1, Some(7)),
            "{t:?}"
        );
        assert!(
            !t.timeline.iter().any(|e| e.reason.contains("expired")),
            "{:?}",
            t.timeline
        );
        let t = f.complete(*id, *token, true).await.unwrap();
        assert_eq!(t.state, "succeeded");
    }
}

/// How many simulated workers heartbeat in the batching test.
const SIMULATED_WORKERS: usize = 200;

/// The highest last log index among the nodes.
async fn last_log_index(c: &Cluster) -> u64 {
    let mut last = 0;
    for id in [1, 2, 3] {
        last = last.max(c.status(id).await.expect("node answers").last_log_index);
    }
    last
}

/// What simulated worker `i` reports as its memory use in round `round`:
/// tells every report apart.
fn report(i: usize, round: u64) -> u64 {
    i as u64 * 1_000_000 + round
}

/// Each simulated worker heartbeats once a round, in turn, for at least 3
/// rounds and 3 s; the first also holds `task` (id, token) at iteration
/// `round`. Returns the last round and the heartbeats sent.
async fn heartbeat_rounds(f: &Node, names: &[String], task: (u64, u64)) -> (u64, u64) {
    let start = Instant::now();
    let (mut round, mut sent) = (0, 0);
    while round < 3 || start.elapsed() < Duration::from_secs(3) {
        round += 1;
        for (i, name) in names.iter().enumerate() {
            let tasks = match i {
                0 => vec![HeldTask {
                    id: task.0,
                    fencing_token: task.1,
                    iteration: Some(round),
                }],
                _ => vec![],
            };
            let usage = Some(Usage {
                memory_used_bytes: Some(report(i, round)),
                ..Default::default()
            });
            let req = HeartbeatRequest {
                worker: name.clone(),
                tasks,
                usage,
            };
            let r = f.send_heartbeat(req).await;
            assert!(r.revoked.is_empty(), "{r:?}");
            sent += 1;
        }
    }
    (round, sent)
}

/// Polls until every simulated worker shows its report of `round`, and
/// task `id` its iteration.
async fn wait_latest_reports(f: &Node, round: u64, id: u64) {
    let what = format!("round {round}'s reports, and iteration {round} on task {id}");
    eventually(Duration::from_secs(30), &what, async || {
        let workers = f.list_workers().await;
        let behind: Vec<(String, Option<u64>)> = workers
            .iter()
            .filter_map(|w| {
                let i: usize = w.name.strip_prefix("sim-")?.parse().ok()?;
                let seen = w.usage.as_ref().and_then(|u| u.memory_used_bytes);
                (seen != Some(report(i, round))).then(|| (w.name.clone(), seen))
            })
            .collect();
        let iteration = f.task(id).await.iteration;
        let caught_up =
            workers.len() == SIMULATED_WORKERS && behind.is_empty() && iteration == Some(round);
        let behind = &behind[..behind.len().min(5)];
        ok_if(
            caught_up,
            format!("task at {iteration:?}, behind: {behind:?}"),
        )
    })
    .await;
}

/// Many workers heartbeating over and over to one follower cost the log
/// about one entry per batch period, not one per heartbeat, and each
/// worker's latest report (its usage, its task's iteration) is what sticks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_to_a_follower_are_batched_and_the_latest_report_wins() {
    let timings = Timings::default();
    let batch_ms = timings.heartbeat_batch_ms;
    let c = Cluster::start(3, timings);
    let leader = c.init(1).await;
    let f = Node::new(&c, c.followers(leader)[0]);
    let names: Vec<String> = (0..SIMULATED_WORKERS).map(|i| format!("sim-{i}")).collect();
    futures::future::join_all(names.iter().map(|n| f.register(n, &["default"], 1))).await;
    let id = f.submit_to("default", "").await;
    let token = f.lease(&names[0], 1, 2_000).await[0].fencing_token;
    c.wait_converged(&[1, 2, 3], 0).await;
    let before = last_log_index(&c).await;

    let start = Instant::now();
    let (round, sent) = heartbeat_rounds(&f, &names, (id, token)).await;
    wait_latest_reports(&f, round, id).await;
    let periods = start.elapsed().as_millis() as u64 / batch_ms + 1;
    let grown = last_log_index(&c).await - before;
    assert!(
        grown <= 2 * periods + 4,
        "{sent} heartbeats over {periods} batch periods took {grown} log entries"
    );
    assert!(sent >= 20 * grown, "{sent} heartbeats, {grown} log entries");
    let last = SIMULATED_WORKERS - 1;
    let w = f.worker(&names[last]).await;
    let seen = w.usage.and_then(|u| u.memory_used_bytes);
    assert_eq!(
        seen,
        Some(report(last, round)),
        "worker get shows the last report"
    );
    assert_eq!(w.state, "active");
    let t = f.task(id).await;
    assert_eq!((t.state.as_str(), t.fencing_token), ("leased", token));
}

/// Waits until the wall clock reaches `at_ms`: the scenario's own timeline
/// (a worker staying silent until then), not a wait for anything to happen.
async fn wait_until_ms(at_ms: u64) {
    let now = laneq::clock::now_ms();
    if at_ms > now {
        tokio::time::sleep(Duration::from_millis(at_ms - now)).await;
    }
}

/// A new leader expires nothing for one lease TTL. A worker silent across
/// the leader change, whose lease ran out meanwhile, keeps the lease by
/// renewing within that TTL; a worker that stays silent loses its lease
/// once the grace is over, and the first still holds its own then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_lets_a_worker_silent_across_the_change_renew() {
    const TTL_MS: u64 = 10_000;
    let c = Cluster::start(
        3,
        Timings {
            lease_ttl_ms: TTL_MS,
            worker_timeout_ms: 120_000,
            heartbeat_batch_ms: 100,
            ..Timings::default()
        },
    );
    let first = c.init(1).await;
    let others = c.followers(first);
    let (via, second) = (others[0], others[1]);
    let f = Node::new(&c, via);
    let held = running_tasks(&f, &["late", "silent"]).await;
    let (late, token, expires, silent) = (held[0].1, held[0].2, held[0].3, held[1].1);

    // Silent for half a TTL under the old leader; then the leader changes,
    // so the new one's grace outlasts the lease by about half a TTL. The
    // worker renews a fifth of a TTL after its lease ran out: without the
    // grace, the lease would be gone by then.
    wait_until_ms(expires - TTL_MS / 2).await;
    move_leader(&c, via, second).await;
    wait_until_ms(expires + TTL_MS / 5).await;
    let t = f.task(late).await;
    assert_eq!(
        (t.state.as_str(), t.fencing_token, t.lease_expires_ms),
        ("running", token, Some(expires)),
        "past its expiry, not expired"
    );
    let r = f.heartbeat("late", &[(late, token)]).await;
    assert!(r.revoked.is_empty(), "{r:?}");

    // Renewing on, until the new leader's grace is over and it expires the
    // silent worker's lease.
    let what = "the silent worker's lease to expire (its task's state)";
    eventually(Duration::from_millis(4 * TTL_MS), what, async || {
        let state = f.task(silent).await.state;
        if state != "queued" {
            let r = f.heartbeat("late", &[(late, token)]).await;
            assert!(r.revoked.is_empty(), "{r:?}");
        }
        ok_if(state == "queued", state)
    })
    .await;
    check_grace_outcome(&f, (late, token, expires), silent).await;
    assert_eq!(role(&c, second).await.0, "leader", "one leader change");
}

/// After the grace: `silent`'s lease expired, and the late renewer's
/// (task, token, first expiry) stays renewed and completes.
async fn check_grace_outcome(f: &Node, (late, token, expires): (u64, u64, u64), silent: u64) {
    let t = f.task(silent).await;
    assert_eq!((t.attempt, t.position), (1, Some(1)));
    assert!(
        t.timeline
            .iter()
            .any(|e| e.reason.contains("lease expired on worker silent")),
        "{:?}",
        t.timeline
    );
    let t = f.task(late).await;
    assert_eq!(
        (t.state.as_str(), t.fencing_token, t.attempt),
        ("running", token, 1),
        "{t:?}"
    );
    assert!(t.lease_expires_ms > Some(expires), "renewed: {t:?}");
    assert!(!t.timeline.iter().any(|e| e.reason.contains("expired")));
    let t = f.complete(late, token, true).await.unwrap();
    assert_eq!(t.state, "succeeded");
}
