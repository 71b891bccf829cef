//! The worker agent end to end: real `laneq node` processes and real
//! `laneq worker run` processes running real commands. Every task runs
//! exactly once across three agents; a failure carries its exit code; the
//! first SIGTERM lets the running task finish and the second gives it back;
//! a killed agent's task runs again on another agent after its lease runs
//! out; a task sees its environment, reports progress through the CLI and
//! finishes while its queue drains. No test here waits on the clock for an
//! outcome: each polls for it.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use laneq::client::{Client, ReadConsistency};
use laneq::proto::v1::Task;

use crate::support::{eventually, ok_if, Agent, Cluster, Timings, BIN};

/// Short leases, so that nothing here waits on the 15 s defaults.
fn timings() -> Timings {
    Timings {
        lease_ttl_ms: 3_000,
        worker_timeout_ms: 3_000,
        heartbeat_batch_ms: 200,
        ..Default::default()
    }
}

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

async fn submit(client: &Client, command: Vec<String>) -> u64 {
    client
        .submit_task("default", command, vec![], None)
        .await
        .unwrap()
        .id
}

/// Polls until every task of `ids` satisfies `done` (described by `what`),
/// or fails after `within`.
async fn wait_tasks(
    client: &Client,
    ids: &[u64],
    within: Duration,
    what: &str,
    done: impl Fn(&Task) -> bool,
) -> BTreeMap<u64, Task> {
    let what = format!("tasks {ids:?} to be {what} (their states)");
    eventually(within, &what, async || {
        let mut tasks = BTreeMap::new();
        for &id in ids {
            let t = client.get_task(id, ReadConsistency::Linearizable).await;
            tasks.insert(id, t.unwrap());
        }
        if tasks.values().all(&done) {
            return Ok(tasks);
        }
        let states: Vec<(u64, String)> = tasks.values().map(|t| (t.id, t.state.clone())).collect();
        Err(states)
    })
    .await
}

fn terminal(t: &Task) -> bool {
    matches!(t.state.as_str(), "succeeded" | "failed" | "canceled")
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

/// `sh -c script`.
fn sh(script: String) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script]
}

/// A shell fragment that waits for `gate` to exist (at most 60 s), then
/// touches `left` and exits 0; exit 1 if the gate never opens.
fn hold_until(gate: &Path, left: &Path) -> String {
    format!(
        "for i in $(seq 600); do if [ -e '{}' ]; then touch '{}'; exit 0; fi; sleep 0.1; done; exit 1",
        gate.display(),
        left.display()
    )
}

/// Polls until `path` exists.
async fn wait_file(path: &Path) {
    let what = format!("{} to appear", path.display());
    eventually(Duration::from_secs(30), &what, async || {
        ok_if(path.exists(), "absent")
    })
    .await;
}

/// Polls until every worker of `names` is registered and active.
async fn wait_active(client: &Client, names: &[&str]) {
    let what = format!("workers {names:?} to be active (the active ones)");
    eventually(Duration::from_secs(30), &what, async || {
        let workers = client.list_workers(ReadConsistency::Linearizable).await;
        let active: Vec<String> = workers
            .unwrap()
            .into_iter()
            .filter(|w| w.state == "active")
            .map(|w| w.name)
            .collect();
        ok_if(names.iter().all(|n| active.iter().any(|a| a == n)), active)
    })
    .await;
}

/// Polls until a heartbeat of worker `name` has brought its usage.
async fn wait_usage(client: &Client, name: &str) {
    let what = format!("worker {name} to report its usage");
    eventually(Duration::from_secs(30), &what, async || {
        let w = client.get_worker(name, ReadConsistency::Linearizable).await;
        ok_if(w.unwrap().usage.is_some(), "no usage")
    })
    .await;
}

/// Polls `worker get` until worker `name` is lost; it then holds nothing.
async fn wait_lost(c: &Cluster, name: &str) {
    let what = format!("worker {name} to be lost");
    let w = eventually(Duration::from_secs(30), &what, async || {
        let w = cli_json(c, &["worker", "get", name, "-o", "json"]);
        if w["state"] == "lost" {
            Ok(w)
        } else {
            Err(w)
        }
    })
    .await;
    assert_eq!(w["tasks"], serde_json::json!([]), "{w}");
}

/// Runs the CLI with `args` (which end in `-o json`), expecting exit 0.
fn cli_json(c: &Cluster, args: &[&str]) -> serde_json::Value {
    let (code, out, err) = c.cli(args);
    assert_eq!(code, Some(0), "laneq {args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("laneq {args:?}: {e}: {out}"))
}

/// The cells of the table row whose first cell is `first`, by column
/// header. Columns start where the header has a word after two spaces.
fn table_row(table: &str, first: &str) -> BTreeMap<String, String> {
    let mut lines = table.lines();
    let header = lines.next().expect("a header line");
    let bytes = header.as_bytes();
    let mut starts = vec![0];
    for i in 2..bytes.len() {
        if bytes[i] != b' ' && bytes[i - 1] == b' ' && bytes[i - 2] == b' ' {
            starts.push(i);
        }
    }
    let cell = |line: &str, k: usize| {
        let end = starts.get(k + 1).copied().unwrap_or(usize::MAX);
        let end = end.min(line.len());
        line.get(starts[k]..end).unwrap_or("").trim().to_string()
    };
    let row = lines
        .find(|l| l.split_whitespace().next() == Some(first))
        .unwrap_or_else(|| panic!("no row {first:?} in\n{table}"));
    (0..starts.len())
        .map(|k| (cell(header, k), cell(row, k)))
        .collect()
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

/// A task's command sees its id, attempt and the agent's endpoints, and
/// `laneq task progress` run from inside it shows in the task and in the
/// worker views. Its queue, drained meanwhile, refuses new tasks, lets it
/// finish, and is then `drained`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_sees_its_environment_reports_progress_and_outlives_a_drain() {
    let c = Cluster::start(3, timings());
    c.init(1).await;
    let client = c.client();
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("env.txt");
    let (gate, left) = (dir.path().join("gate"), dir.path().join("left"));
    let (code, _, err) = c.cli(&["queue", "create", "batch"]);
    assert_eq!(code, Some(0), "{err}");
    let _agent = Agent::start_on(&c, dir.path(), "w1", 1, &["batch"]);
    let script = format!(
        "echo \"$LANEQ_TASK_ID $LANEQ_ATTEMPT $LANEQ_ENDPOINTS\" > '{}'; \
         '{BIN}' task progress --iteration 7 || exit 9; {}",
        env.display(),
        hold_until(&gate, &left)
    );
    let id = client
        .submit_task("batch", sh(script), vec![], None)
        .await
        .unwrap()
        .id;
    let reported = wait_tasks(
        &client,
        &[id],
        Duration::from_secs(30),
        "at iteration 7",
        |t| t.iteration == Some(7),
    )
    .await;
    let t = &reported[&id];
    assert_eq!((t.state.as_str(), t.worker.as_str()), ("running", "w1"));
    assert_eq!(
        fs::read_to_string(&env).unwrap(),
        format!("{id} 1 {}\n", c.endpoints().join(","))
    );
    wait_usage(&client, "w1").await;
    check_views_of_running_task(&c, t);

    // Drained while the task runs: no new tasks, the running one finishes.
    let (code, _, err) = c.cli(&["queue", "drain", "batch"]);
    assert_eq!(code, Some(0), "{err}");
    let q = cli_json(&c, &["queue", "get", "batch", "-o", "json"]);
    assert_eq!(
        (&q["state"], &q["running"]),
        (&"draining".into(), &1.into())
    );
    let (code, _, err) = c.cli(&["task", "submit", "--queue", "batch", "--", "true"]);
    assert_eq!(code, Some(7), "refused: {err}");
    assert!(err.contains("draining"), "{err}");
    fs::write(&gate, "").unwrap();
    let done = wait_tasks(
        &client,
        &[id],
        Duration::from_secs(30),
        "finished",
        terminal,
    )
    .await;
    let t = &done[&id];
    assert_eq!(
        (t.state.as_str(), t.exit_code, t.attempt, t.iteration),
        ("succeeded", Some(0), 1, Some(7)),
        "{t:?}"
    );
    let log = dir.path().join("w1").join(format!("{id}-1.log"));
    let text = fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&format!("task {id} at iteration 7")),
        "{text}"
    );
    let q = cli_json(&c, &["queue", "get", "batch", "-o", "json"]);
    assert_eq!(
        (&q["state"], &q["running"], &q["queued"]),
        (&"drained".into(), &0.into(), &0.into()),
        "{q}"
    );
    let (code, _, err) = c.cli(&["task", "submit", "--queue", "batch", "--", "true"]);
    assert_eq!(code, Some(7), "refused: {err}");
}

/// What `task get`, `worker get`, `worker list` and `queue get` show of a
/// task `t` that worker w1 runs from queue batch, at iteration 7.
fn check_views_of_running_task(c: &Cluster, t: &Task) {
    let id = t.id.to_string();
    let j = cli_json(c, &["task", "get", &id, "-o", "json"]);
    assert_eq!(
        (&j["worker"], &j["attempt"], &j["iteration"]),
        (&"w1".into(), &1.into(), &7.into()),
        "{j}"
    );
    assert_eq!(j["fencing_token"], t.fencing_token, "{j}");
    assert!(t.fencing_token > 0);

    let w = cli_json(c, &["worker", "get", "w1", "-o", "json"]);
    assert_eq!(
        (&w["name"], &w["ip"], &w["pool"], &w["cluster"], &w["state"]),
        (
            &"w1".into(),
            &"127.0.0.1".into(),
            &"default".into(),
            &"".into(),
            &"active".into()
        ),
        "{w}"
    );
    assert_eq!(w["queues"], serde_json::json!(["batch"]), "{w}");
    assert_eq!(w["tasks"], serde_json::json!([t.id]), "{w}");
    assert!(
        w["last_seen"].as_str().is_some_and(|s| !s.is_empty()),
        "{w}"
    );
    assert!(w["usage"]["memory_total_bytes"].as_u64() > Some(0), "{w}");
    let held = &w["held"][0];
    assert_eq!(
        (&held["id"], &held["state"], &held["iteration"]),
        (&t.id.into(), &"running".into(), &7.into()),
        "{w}"
    );
    assert!(held["runtime_ms"].as_u64().is_some(), "{w}");

    let (code, out, err) = c.cli(&["worker", "list"]);
    assert_eq!(code, Some(0), "{err}");
    let row = table_row(&out, "w1");
    let cells: Vec<(&str, &str)> = row.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    for (column, want) in [
        ("IP", "127.0.0.1"),
        ("POOL/CLUSTER", "default/-"),
        ("QUEUES", "batch"),
        ("TASKS", id.as_str()),
        ("ITER", "7"),
        ("STATE", "active"),
    ] {
        assert_eq!(
            row.get(column).map(String::as_str),
            Some(want),
            "{cells:?}\n{out}"
        );
    }
    assert!(row["RUNTIME"] != "-" && !row["RUNTIME"].is_empty(), "{out}");
    assert!(row["LAST SEEN"].ends_with(" ago"), "{out}");

    let q = cli_json(c, &["queue", "get", "batch", "-o", "json"]);
    assert_eq!(q["workers"], serde_json::json!(["w1"]), "{q}");
    assert_eq!((&q["state"], &q["running"]), (&"active".into(), &1.into()));
}
