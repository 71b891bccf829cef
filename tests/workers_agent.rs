//! The worker agent end to end: real `laneq node` processes and real
//! `laneq worker run` processes running real commands. Every task runs
//! exactly once across three agents; a failure carries its exit code; the
//! first SIGTERM lets the running task finish and the second gives it back.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{signal, Cluster, Timings, BIN};
use laneq::client::{Client, ReadConsistency};
use laneq::proto::v1::Task;

/// Short leases, so that nothing here waits on the 15 s defaults.
fn timings() -> Timings {
    Timings {
        lease_ttl_ms: 3_000,
        worker_timeout_ms: 3_000,
        heartbeat_batch_ms: 200,
        ..Default::default()
    }
}

/// A `laneq worker run` process, killed (SIGKILL) when dropped.
struct Agent {
    name: String,
    log: PathBuf,
    child: Option<Child>,
}

impl Agent {
    fn start(c: &Cluster, dir: &Path, name: &str, slots: u32) -> Self {
        let log = dir.join(format!("{name}.agent.log"));
        let out = fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .args(["--endpoints", &c.endpoints().join(",")])
            .args(["worker", "run", "--name", name, "--queue", "default"])
            .args(["--slots", &slots.to_string()])
            .args(["--heartbeat-ms", "300", "--lease-wait-ms", "2000"])
            .arg("--log-dir")
            .arg(dir.join(name))
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Agent {
            name: name.to_string(),
            log,
            child: Some(child),
        }
    }

    fn signal(&self, sig: &str) {
        signal(self.child.as_ref().unwrap().id(), sig);
    }

    /// Waits for the agent to exit by itself.
    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "agent {} did not exit within {within:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the agent's log says `what`.
    fn wait_log(&self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.log_text().contains(what) {
            assert!(
                Instant::now() < deadline,
                "agent {} never logged {what:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- agent {} ---\n{}", self.name, self.log_text());
        }
    }
}

/// A command that appends its task id to `ran`, reports iteration 3 and
/// exits with `code`.
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

/// Polls until every task of `ids` satisfies `done`, or fails after `within`.
async fn wait_tasks(
    client: &Client,
    ids: &[u64],
    within: Duration,
    done: impl Fn(&Task) -> bool,
) -> BTreeMap<u64, Task> {
    let deadline = Instant::now() + within;
    loop {
        let mut tasks = BTreeMap::new();
        for &id in ids {
            let t = client.get_task(id, ReadConsistency::Linearizable).await;
            tasks.insert(id, t.unwrap());
        }
        if tasks.values().all(&done) {
            return tasks;
        }
        assert!(
            Instant::now() < deadline,
            "tasks not done within {within:?}: {:?}",
            tasks
                .values()
                .map(|t| (t.id, t.state.clone()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
    let tasks = wait_tasks(&client, &ids, Duration::from_secs(90), terminal).await;

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
    let script = format!("sleep 1; echo $LANEQ_TASK_ID >> '{}'", ran.display());
    let first = submit(&client, vec!["sh".into(), "-c".into(), script]).await;
    wait_tasks(&client, &[first], Duration::from_secs(30), |t| {
        t.state == "running"
    })
    .await;
    agent.signal("TERM");
    let second = submit(&client, vec!["true".into()]).await;
    let status = agent.wait_exit(Duration::from_secs(20));
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
    let t = wait_tasks(&client, &[second], Duration::from_secs(30), terminal).await;
    assert_eq!(t[&second].state, "succeeded");
    let long = submit(&client, vec!["sleep".into(), "60".into()]).await;
    wait_tasks(&client, &[long], Duration::from_secs(30), |t| {
        t.state == "running"
    })
    .await;
    agent.signal("TERM");
    // Two signals in a row may arrive as one: the second follows the first.
    agent.wait_log("SIGTERM: Draining");
    agent.signal("TERM");
    let status = agent.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{}", agent.log_text());
    let t = client
        .get_task(long, ReadConsistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(t.state, "queued", "{t:?}");
    assert_eq!(t.position, Some(1));
    assert_eq!(t.attempt, 0, "a lease given back does not count");
}

/// An agent killed mid-task (SIGKILL: no release, no more heartbeats) loses
/// its lease after the timeout, and the task runs again on another agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agents_task_runs_again_elsewhere() {
    let c = Cluster::start(3, timings());
    c.init(1).await;
    let client = c.client();
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran.txt");
    let script = format!(
        "echo $LANEQ_WORKER >> '{}'; if [ \"$LANEQ_WORKER\" = a ]; then sleep 10; fi",
        ran.display()
    );
    let mut a = Agent::start(&c, dir.path(), "a", 1);
    let id = submit(&client, vec!["sh".into(), "-c".into(), script]).await;
    wait_tasks(&client, &[id], Duration::from_secs(20), |t| {
        t.state == "running"
    })
    .await;
    a.signal("KILL");
    a.wait_exit(Duration::from_secs(5));
    let _b = Agent::start(&c, dir.path(), "b", 1);
    let done = wait_tasks(&client, &[id], Duration::from_secs(30), terminal).await;
    let t = &done[&id];
    assert_eq!(
        (t.state.as_str(), t.worker.as_str(), t.attempt),
        ("succeeded", "b", 2)
    );
    assert!(
        t.timeline
            .iter()
            .any(|e| e.reason.contains("worker a was lost")
                || e.reason.contains("lease expired on worker a")),
        "{:?}",
        t.timeline
    );
    assert_eq!(
        fs::read_to_string(&ran).unwrap(),
        "a\nb\n",
        "once on a, then once on b"
    );
}
