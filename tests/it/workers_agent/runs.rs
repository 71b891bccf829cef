//! Agents running tasks: every task exactly once across three agents, the
//! two SIGTERMs, and a killed agent's task run again elsewhere.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use laneq::client::ReadConsistency;

use super::{
    cli_json, hold_until, sh, submit, terminal, timings, wait_active, wait_file, wait_lost,
    wait_tasks,
};
use crate::support::{Agent, Cluster};

/// A command that appends its task id to `ran`, reports iteration 3 and
/// exits with `code`. Its `sleep` is the scenario's: a task that takes a
/// moment, so that the agents share the work.
fn command(ran: &Path, code: i32) -> Vec<String> {
    let script = format!(
        "echo $LANEQ_TASK_ID >> '{}'; echo laneq:iteration=3; sleep 0.2; exit {code}",
        ran.display()
    );
    vec!["sh".into(), "-c".into(), script]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_agents_run_every_task_exactly_once() {
    let c = Cluster::start(3, timings());
    c.init(1).await;
    let client = c.client();
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran.txt");
    let _agents: Vec<Agent> = (1..=3)
        .map(|i| Agent::start(&c, dir.path(), &format!("w{i}"), 2))
        .collect();

    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(submit(&client, command(&ran, if i == 7 { 3 } else { 0 })).await);
    }
    let failing = ids[7];
    let tasks = wait_tasks(&client, &ids, Duration::from_secs(90), "finished", terminal).await;

    let lines = fs::read_to_string(&ran).unwrap();
    let mut runs: BTreeMap<u64, usize> = BTreeMap::new();
    for line in lines.lines() {
        *runs.entry(line.trim().parse().unwrap()).or_default() += 1;
    }
    for &id in &ids {
        assert_eq!(
            runs.get(&id),
            Some(&1),
            "task {id} ran {:?} times",
            runs.get(&id)
        );
    }
    assert_eq!(runs.len(), ids.len(), "nothing else ran: {runs:?}");

    let mut workers = std::collections::BTreeSet::new();
    for t in tasks.values() {
        assert_eq!(t.attempt, 1, "task {} took one attempt", t.id);
        assert!(["w1", "w2", "w3"].contains(&t.worker.as_str()), "{t:?}");
        assert!(t.started_ms.is_some() && t.finished_ms.is_some(), "{t:?}");
        assert_eq!(t.iteration, Some(3), "task {} reported its iteration", t.id);
        workers.insert(t.worker.clone());
        if t.id == failing {
            assert_eq!(t.state, "failed");
            assert_eq!(t.exit_code, Some(3));
            assert_eq!(t.condition, "exit code 3");
        } else {
            assert_eq!(t.state, "succeeded", "{t:?}");
            assert_eq!(t.exit_code, Some(0));
        }
        let log = dir
            .path()
            .join(&t.worker)
            .join(format!("{}-{}.log", t.id, t.attempt));
        let text = fs::read_to_string(&log).unwrap();
        assert_eq!(text, "laneq:iteration=3\n", "{}", log.display());
    }
    assert!(workers.len() >= 2, "the work was shared: {workers:?}");

    // What people see: every agent is active and reports real usage.
    let (code, out, err) = c.cli(&["worker", "list", "-o", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let listed = list["workers"].as_array().unwrap();
    assert_eq!(listed.len(), 3, "{out}");
    for w in listed {
        assert_eq!(w["state"], "active", "{w}");
        assert_eq!(w["ip"], "127.0.0.1", "{w}");
        assert!(
            w["usage"]["memory_total_bytes"].as_u64().unwrap() > 0,
            "{w}"
        );
    }
    let (code, out, err) = c.cli(&["worker", "get", "w1"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("memory:") && out.contains("queues:"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_running_task_and_a_second_gives_it_back() {
    let c = Cluster::start(1, timings());
    c.init(1).await;
    let client = c.client();
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran.txt");

    // First SIGTERM: the running task finishes and is reported, nothing
    // more is leased, and the agent exits 0.
    let mut agent = Agent::start(&c, dir.path(), "w1", 1);
    // A task that still runs when the SIGTERM comes: the scenario's sleep.
    let script = format!("sleep 1; echo $LANEQ_TASK_ID >> '{}'", ran.display());
    let first = submit(&client, vec!["sh".into(), "-c".into(), script]).await;
    wait_tasks(&client, &[first], Duration::from_secs(30), "running", |t| {
        t.state == "running"
    })
    .await;
    agent.signal("TERM");
    let second = submit(&client, vec!["true".into()]).await;
    let status = agent.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(0), "{}", agent.log_text());
    let t = client
        .get_task(first, ReadConsistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(t.state, "succeeded", "{t:?}");
    assert_eq!(fs::read_to_string(&ran).unwrap(), format!("{first}\n"));
    let t = client
        .get_task(second, ReadConsistency::Linearizable)
        .await
        .unwrap();
    assert_eq!((t.state.as_str(), t.attempt), ("queued", 0), "{t:?}");

    // Second SIGTERM: the running task is killed and given back at once,
    // at the front of its queue, its attempt not counted.
    let mut agent = Agent::start(&c, dir.path(), "w2", 1);
    let t = wait_tasks(
        &client,
        &[second],
        Duration::from_secs(30),
        "finished",
        terminal,
    )
    .await;
    assert_eq!(t[&second].state, "succeeded");
    // A task that runs until it is killed.
    let long = submit(&client, vec!["sleep".into(), "60".into()]).await;
    wait_tasks(&client, &[long], Duration::from_secs(30), "running", |t| {
        t.state == "running"
    })
    .await;
    agent.signal("TERM");
    // Two signals in a row may arrive as one: the second follows the first.
    agent.wait_log("SIGTERM: Draining").await;
    agent.signal("TERM");
    let status = agent.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(0), "{}", agent.log_text());
    let t = client
        .get_task(long, ReadConsistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(t.state, "queued", "{t:?}");
    assert_eq!(t.position, Some(1));
    assert_eq!(t.attempt, 0, "a lease given back does not count");
}

/// An agent killed mid-task (SIGKILL: no release, no more heartbeats) keeps
/// its lease until the lease runs out; then one of the two agents that ran
/// all along leases the task again and runs it to success, as attempt 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agents_task_runs_again_on_another_running_agent() {
    let c = Cluster::start(3, timings());
    c.init(1).await;
    let client = c.client();
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran.txt");
    let (gate, left) = (dir.path().join("gate"), dir.path().join("left"));
    let mut agents: BTreeMap<String, Agent> = ["a", "b", "c"]
        .into_iter()
        .map(|n| (n.to_string(), Agent::start(&c, dir.path(), n, 1)))
        .collect();
    wait_active(&client, &["a", "b", "c"]).await;

    // The first attempt holds on until the gate opens; the next ends at once.
    let script = format!(
        "echo $LANEQ_WORKER $LANEQ_ATTEMPT >> '{}'; [ $LANEQ_ATTEMPT = 1 ] || exit 0; {}",
        ran.display(),
        hold_until(&gate, &left)
    );
    let id = submit(&client, sh(script)).await;
    let running = wait_tasks(&client, &[id], Duration::from_secs(30), "running", |t| {
        t.state == "running"
    })
    .await;
    let first = running[&id].clone();
    let victim = first.worker.clone();
    let t = cli_json(&c, &["task", "get", &id.to_string(), "-o", "json"]);
    assert_eq!(
        (
            &t["state"],
            &t["worker"],
            &t["attempt"],
            &t["fencing_token"]
        ),
        (
            &"running".into(),
            &victim.as_str().into(),
            &1.into(),
            &first.fencing_token.into()
        ),
        "{t}"
    );

    let agent = agents.get_mut(&victim).unwrap();
    agent.signal("KILL");
    agent.wait_exit(Duration::from_secs(10)).await;
    let done = wait_tasks(
        &client,
        &[id],
        Duration::from_secs(60),
        "finished",
        terminal,
    )
    .await;
    let t = &done[&id];
    assert_eq!((t.state.as_str(), t.attempt), ("succeeded", 2), "{t:?}");
    assert!(
        t.worker != victim && agents[&t.worker].is_running(),
        "attempt 2 ran on {:?}, one of the agents running all along",
        t.worker
    );
    assert!(t.fencing_token > first.fencing_token, "{t:?}");
    // Taken from the victim no earlier than its lease's expiry as last seen
    // (a lease and a renewal also mark the worker seen, and its timeout
    // here equals the TTL, so being lost does not come sooner either).
    let lost = format!("worker {victim} was lost");
    let expired = format!("lease expired on worker {victim}");
    let taken = t
        .timeline
        .iter()
        .find(|e| e.reason.contains(&lost) || e.reason.contains(&expired))
        .unwrap_or_else(|| panic!("no expiry in {:?}", t.timeline));
    assert!(
        taken.at_ms >= first.lease_expires_ms.unwrap(),
        "{taken:?} before {first:?}"
    );
    assert_eq!(
        fs::read_to_string(&ran).unwrap(),
        format!("{victim} 1\n{} 2\n", t.worker),
        "once on the victim, then once elsewhere"
    );

    wait_lost(&c, &victim).await;
    // Its orphaned first attempt ends.
    fs::write(&gate, "").unwrap();
    wait_file(&left).await;
}
