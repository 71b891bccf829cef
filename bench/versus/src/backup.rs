//! Backup and restore at scale: a laneq cluster loaded with queued tasks
//! (the scale scenario's: 256 B payloads over many queues), saved with
//! `laneq cluster snapshot save` several times, then restored with `laneq
//! node restore` into a new three-node cluster, which must serve the same
//! tasks.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use laneq::client::{Client, ReadConsistency};
use laneq::proto::v1::QueueSpec;
use serde_json::{json, Value};

use crate::scale::{load, queue_name};
use crate::systems::Cluster;
use crate::Args;

/// Saves timed, one after another.
const SAVES: usize = 3;

/// Queued tasks over all queues, read linearizably.
async fn queued(client: &Client) -> u64 {
    let queues = client.list_queues(ReadConsistency::Linearizable).await;
    queues.expect("list queues").iter().map(|q| q.queued).sum()
}

/// One `laneq cluster snapshot save`: its time and its JSON summary.
fn save(bin: &Path, endpoints: &[String], file: &Path) -> (Duration, Value) {
    let start = Instant::now();
    let o = Command::new(bin)
        .args(["--endpoints", &endpoints.join(","), "--timeout", "120"])
        .args(["-o", "json", "cluster", "snapshot", "save", "--force"])
        .arg(file)
        .output()
        .expect("run laneq cluster snapshot save");
    let took = start.elapsed();
    assert!(
        o.status.success(),
        "laneq cluster snapshot save: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    (took, serde_json::from_slice(&o.stdout).expect("its JSON"))
}

fn spread(v: &[Duration]) -> String {
    let s: Vec<String> = v
        .iter()
        .map(|d| format!("{:.2}", d.as_secs_f64()))
        .collect();
    s.join(" / ")
}

pub async fn backup(args: &Args) -> Vec<Value> {
    let (queues, tasks) = args.by_size((10, 2_000), (100, 100_000), (1_000, 1_000_000));
    let cluster = Cluster::laneq(&args.laneq_bin).await;
    let client = Client::with_deadline(&cluster.endpoints, Duration::from_secs(60));
    let spec = QueueSpec {
        depth: Some(0),
        ..Default::default()
    };
    for i in 0..queues {
        let spec = Some(spec.clone());
        let q = client.create_queue_with(&queue_name(i), None, spec).await;
        q.expect("create a queue");
    }
    let (_, loading) = load(&client, queues, 0, tasks).await;
    cluster.wait_caught_up().await;
    let source = queued(&client).await;

    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("backup.lqs");
    let mut saves = Vec::new();
    let mut summary = Value::Null;
    for _ in 0..SAVES {
        let (took, s) = save(&args.laneq_bin, &cluster.endpoints, &file);
        saves.push(took);
        summary = s;
    }
    let bytes = std::fs::metadata(&file).expect("the saved file").len();
    drop(cluster);

    let start = Instant::now();
    let (restored, restores) = Cluster::laneq_restored(&args.laneq_bin, &file).await;
    let serving = start.elapsed();
    let restored_client = restored.client(Duration::from_secs(60));
    let after = queued(&restored_client).await;
    assert_eq!(after, source, "the restored cluster's queued tasks");

    println!("## Backup and restore: {source} queued tasks over {queues} queues\n");
    println!(
        "loaded in {:.1} s; the file: {:.1} MiB, index {}",
        loading.as_secs_f64(),
        bytes as f64 / (1 << 20) as f64,
        summary["index"]
    );
    println!(
        "`cluster snapshot save`, {SAVES} runs: {} s (from the command's start to the file synced and read back)",
        spread(&saves)
    );
    println!(
        "`node restore`, each of 3 members: {} s; from the first restore to a restored cluster serving a linearizable read: {:.2} s\n",
        spread(&restores),
        serving.as_secs_f64()
    );
    vec![json!({
        "scenario": "backup", "system": "laneq", "clients": 1, "tasks": source,
        "queues": queues, "file_bytes": bytes,
        "save_s": saves.iter().map(Duration::as_secs_f64).collect::<Vec<_>>(),
        "restore_s": restores.iter().map(Duration::as_secs_f64).collect::<Vec<_>>(),
        "restored_serving_s": serving.as_secs_f64(),
        "p50_ms": Value::Null, "p99_ms": Value::Null, "ops_per_s": Value::Null,
    })]
}
