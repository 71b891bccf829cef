//! The worker agent end to end: real `laneq node` processes and real
//! `laneq worker run` processes running real commands. Every task runs
//! exactly once across three agents; a failure carries its exit code; the
//! first SIGTERM lets the running task finish and the second gives it back;
//! a killed agent's task runs again on another agent after its lease runs
//! out; a task sees its environment, reports progress through the CLI and
//! finishes while its queue drains. No test here waits on the clock for an
//! outcome: each polls for it.

mod gpus;
mod logs;
mod runs;
mod views;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use laneq::client::{Client, ReadConsistency};
use laneq::proto::v1::Task;

use crate::support::{eventually, ok_if, Cluster, Timings};

/// Short leases, so that nothing here waits on the 15 s defaults.
fn timings() -> Timings {
    Timings {
        lease_ttl_ms: 3_000,
        worker_timeout_ms: 3_000,
        heartbeat_batch_ms: 200,
        ..Default::default()
    }
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
