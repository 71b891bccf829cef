//! GPUs given per task, on an agent with four fake GPUs (the agent's
//! LANEQ_WORKER_FAKE_GPUS test hook: these machines have no NVIDIA): four
//! one-GPU tasks run at once on four different devices, a two-GPU task
//! waits until two are free and gets the freed ones, a task that asks for
//! none sees none, and the assignment is in the task's record and the
//! worker's view. Then the flags that restrict an agent's GPUs, and the
//! one that leaves them visible to tasks that ask for none.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::Duration;

use laneq::client::{Client, ReadConsistency};
use laneq::proto::v1::{Task, TaskSpec};

use super::{cli_json, sh, timings, wait_active, wait_tasks};
use crate::support::{eventually, Agent, Cluster};

/// A task that writes what it was shown to `<dir>/seen-<id>`, then waits
/// until `<dir>/go-<id>` exists (at most 60 s).
fn shows_its_gpus(dir: &Path) -> Vec<String> {
    let d = dir.display();
    sh(format!(
        "printf '%s|%s|%s' \"${{CUDA_VISIBLE_DEVICES-unset}}\" \"${{NVIDIA_VISIBLE_DEVICES-unset}}\" \
         \"${{CUDA_DEVICE_ORDER-unset}}\" > '{d}/seen-'$LANEQ_TASK_ID.tmp; \
         mv '{d}/seen-'$LANEQ_TASK_ID.tmp '{d}/seen-'$LANEQ_TASK_ID; \
         for i in $(seq 600); do [ -e '{d}/go-'$LANEQ_TASK_ID ] && exit 0; sleep 0.1; done; exit 1"
    ))
}

async fn submit_gpus(client: &Client, dir: &Path, gpus: u64) -> u64 {
    let mut spec = TaskSpec {
        queue: "default".into(),
        command: shows_its_gpus(dir),
        ..Default::default()
    };
    if gpus > 0 {
        spec.resources.insert("gpu".into(), gpus);
    }
    client.submit(spec, None).await.unwrap().id
}

/// Polls until task `id` has written what it saw; returns it.
async fn seen(dir: &Path, id: u64) -> String {
    let path = dir.join(format!("seen-{id}"));
    let what = format!("task {id} to write {}", path.display());
    eventually(Duration::from_secs(30), &what, async || {
        fs::read_to_string(&path).map_err(|e| e.to_string())
    })
    .await
}

fn go(dir: &Path, id: u64) {
    fs::write(dir.join(format!("go-{id}")), "").unwrap();
}

async fn task(client: &Client, id: u64) -> Task {
    client
        .get_task(id, ReadConsistency::Linearizable)
        .await
        .unwrap()
}

fn indexes(t: &Task) -> Vec<u32> {
    t.gpus.iter().map(|g| g.index).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_task_gets_its_own_gpus_and_freed_ones_are_reused() {
    let c = Cluster::start(1, timings());
    c.init(1).await;
    let client = c.client();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let env = [("LANEQ_WORKER_FAKE_GPUS", "4")];
    let _agent = Agent::start_with(&c, d, "w1", 8, &["default"], &[], &env);
    wait_active(&client, &["w1"]).await;
    let w = cli_json(&c, &["worker", "get", "w1", "-o", "json"]);
    assert_eq!(w["capacity"]["gpu"], 4, "four GPUs offered: {w}");

    // Four one-GPU tasks, all running at once: four different devices.
    let mut ones = Vec::new();
    for _ in 0..4 {
        ones.push(submit_gpus(&client, d, 1).await);
    }
    let mut devices = BTreeSet::new();
    for &id in &ones {
        let text = seen(d, id).await;
        let [cuda, nvidia, order] = text.split('|').collect::<Vec<_>>()[..] else {
            panic!("task {id} wrote {text:?}");
        };
        let index: u32 = cuda.parse().unwrap_or_else(|_| panic!("{text:?}"));
        assert_eq!(nvidia, format!("GPU-fake-{index}"), "task {id}: {text:?}");
        assert_eq!(order, "PCI_BUS_ID");
        devices.insert(index);
        let t = task(&client, id).await;
        assert_eq!(indexes(&t), vec![index], "task {id}'s record: {t:?}");
        assert_eq!(t.gpus[0].uuid, nvidia);
    }
    assert_eq!(devices, BTreeSet::from([0, 1, 2, 3]), "four different GPUs");

    // A task that asks for no GPU sees none (it runs: slots are free).
    let none = submit_gpus(&client, d, 0).await;
    assert_eq!(seen(d, none).await, "|void|PCI_BUS_ID");
    assert!(task(&client, none).await.gpus.is_empty());

    // The worker's view names each running task's GPUs.
    let view = cli_json(&c, &["worker", "get", "w1", "-o", "json"]);
    let held = view["held"].as_array().unwrap();
    let with_gpus: BTreeSet<u64> = (held.iter())
        .filter(|t| t["gpus"].as_array().is_some_and(|g| g.len() == 1))
        .map(|t| t["id"].as_u64().unwrap())
        .collect();
    assert_eq!(with_gpus, ones.iter().copied().collect(), "{view}");

    // A two-GPU task waits while every GPU is held...
    let two = submit_gpus(&client, d, 2).await;
    let (first, second) = (task(&client, ones[0]).await, task(&client, ones[1]).await);
    let freed: BTreeSet<u32> = indexes(&first)
        .into_iter()
        .chain(indexes(&second))
        .collect();
    // ...and runs once two are free, on those two.
    go(d, ones[0]);
    go(d, ones[1]);
    let text = seen(d, two).await;
    let t = task(&client, two).await;
    assert_eq!(
        indexes(&t).into_iter().collect::<BTreeSet<_>>(),
        freed,
        "{t:?}"
    );
    let cuda = text.split('|').next().unwrap();
    let shown: BTreeSet<u32> = cuda.split(',').map(|i| i.parse().unwrap()).collect();
    assert_eq!(shown, freed, "it was shown the freed two: {text:?}");
    let done = wait_tasks(&client, &ones[..2], Duration::from_secs(30), "done", |t| {
        t.state == "succeeded"
    })
    .await;
    let freed_at = done.values().filter_map(|t| t.finished_ms).max().unwrap();
    assert!(
        t.started_ms.unwrap() >= freed_at,
        "started at {:?}, before its GPUs were freed at {freed_at}",
        t.started_ms
    );
    assert!(
        t.timeline
            .iter()
            .any(|e| e.reason.starts_with("started on GPU ")),
        "{:?}",
        t.timeline
    );
    // `task get` shows them to people.
    let (code, out, err) = c.cli(&["task", "get", &two.to_string()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("GPU-fake-"), "{out}");

    for id in [ones[2], ones[3], none, two] {
        go(d, id);
    }
    let all: Vec<u64> = ones.iter().copied().chain([none, two]).collect();
    wait_tasks(&client, &all, Duration::from_secs(30), "succeeded", |t| {
        t.state == "succeeded"
    })
    .await;
}

/// Runs `worker run` with `args` on four fake GPUs; it must fail at once.
fn refused(c: &Cluster, args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = c
        .command()
        .args(["worker", "run", "--name", "w9", "--queue", "default"])
        .args(args)
        .arg("--log-dir")
        .arg(dir.path())
        .env("LANEQ_WORKER_FAKE_GPUS", "4")
        .output()
        .unwrap();
    assert!(!out.status.success(), "worker run {args:?} was accepted");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpus_restrict_a_worker() {
    let c = Cluster::start(1, timings());
    c.init(1).await;
    let client = c.client();
    let e = refused(&c, &["--gpus", "1,7"]);
    assert!(e.contains("no GPU 7 (this machine has 0,1,2,3)"), "{e}");
    let e = refused(&c, &["--gpus", "0,2", "--capacity", "gpu=3"]);
    assert!(
        e.contains("gpu=3: this worker may use 2 GPU(s) (--gpus)"),
        "{e}"
    );

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let env = [("LANEQ_WORKER_FAKE_GPUS", "4")];
    let args = ["--gpus", "1,3", "--gpus-visible-to-all"];
    let _agent = Agent::start_with(&c, d, "w2", 4, &["default"], &args, &env);
    wait_active(&client, &["w2"]).await;
    let w = cli_json(&c, &["worker", "get", "w2", "-o", "json"]);
    assert_eq!(w["capacity"]["gpu"], 2, "{w}");
    let id = submit_gpus(&client, d, 2).await;
    let text = seen(d, id).await;
    assert_eq!(text, "1,3|GPU-fake-1,GPU-fake-3|PCI_BUS_ID");
    // With --gpus-visible-to-all, a task that asks for none is left the
    // machine's environment.
    let none = submit_gpus(&client, d, 0).await;
    assert_eq!(seen(d, none).await, "unset|unset|unset");
    go(d, id);
    go(d, none);
    wait_tasks(
        &client,
        &[id, none],
        Duration::from_secs(30),
        "succeeded",
        |t| t.state == "succeeded",
    )
    .await;
}
