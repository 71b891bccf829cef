//! What a running task sees (its environment) and shows (progress in the
//! task, worker and queue views of the CLI), and a drain it outlives.

use std::collections::BTreeMap;
use std::fs;
use std::time::Duration;

use laneq::proto::v1::Task;

use super::{cli_json, hold_until, sh, terminal, timings, wait_tasks, wait_usage};
use crate::support::{Agent, Cluster, BIN};

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
