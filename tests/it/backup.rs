//! Backup and restore through the CLI: `laneq cluster snapshot save` while
//! clients write, `laneq node restore` of every member of a new three-node
//! cluster from the file, and files that are cut short or corrupt.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use laneq::client::{Client, ReadConsistency, TaskFilter};
use laneq::proto::v1::move_task_request::To;
use laneq::proto::v1::{QueueSpec, Task};

use crate::support::{eventually, Cluster, Timings, BIN};

/// Every task the client sees, in id order, page by page.
async fn all_tasks(client: &Client) -> Vec<Task> {
    let filter = TaskFilter {
        page_size: 500,
        ..Default::default()
    };
    let (mut tasks, mut token) = (vec![], String::new());
    loop {
        let page = client
            .list_tasks(&filter, &token, ReadConsistency::Linearizable)
            .await
            .unwrap();
        tasks.extend(page.tasks);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    tasks.sort_by_key(|t| t.id);
    tasks
}

/// `laneq -o json node restore FILE --config CONFIG`: exit code, JSON or
/// stderr.
fn restore(file: &Path, config: &Path) -> (Option<i32>, String, String) {
    let o = Command::new(BIN)
        .args(["-o", "json", "node", "restore"])
        .arg(file)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (o.status.code(), text(&o.stdout), text(&o.stderr))
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_saved_under_load_restores_into_a_new_cluster() {
    let c = Cluster::start(3, Timings::default());
    let leader = c.init(1).await;
    let client = c.client();
    let spec = QueueSpec {
        depth: Some(100_000),
        priority: 80,
        ..Default::default()
    };
    client
        .create_queue_with("gpu", None, Some(spec))
        .await
        .unwrap();
    let early = c.submit_many(&client, "gpu", 20).await;
    client.move_task(early[15], To::Front(true)).await.unwrap();
    client.move_task(early[3], To::Position(9)).await.unwrap();
    client.cancel_task(early[7], "not needed").await.unwrap();

    // Writers that go on through the save; each acknowledged id is kept.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let writers: Vec<_> = ["gpu", "default"]
        .into_iter()
        .map(|queue| {
            let (client, stop, acked) = (c.client(), stop.clone(), acked.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let r = client.submit_task(queue, vec!["true".into()], vec![1; 64], None);
                    let id = r.await.unwrap().id;
                    acked.lock().unwrap().push(id);
                }
            })
        })
        .collect();
    eventually(
        Duration::from_secs(20),
        "100 writes under load",
        async || {
            let n = acked.lock().unwrap().len();
            if n >= 100 {
                Ok(())
            } else {
                Err(n)
            }
        },
    )
    .await;

    // Saved through a follower: the call goes to the leader.
    let file = c.dir.path().join("backup.lqs");
    let before_save: Vec<u64> = acked.lock().unwrap().clone();
    let follower = c.addr(c.followers(leader)[0]);
    let o = c
        .command_on(&[follower])
        .args(["-o", "json", "cluster", "snapshot", "save"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let saved = json(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(saved["node_id"], leader, "taken on the leader");
    let after_save = acked.lock().unwrap().len();
    eventually(
        Duration::from_secs(20),
        "writes after the save",
        async || {
            let n = acked.lock().unwrap().len();
            if n >= after_save + 20 {
                Ok(())
            } else {
                Err(n)
            }
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let source = all_tasks(&client).await;
    let source_queues = client
        .list_queues(ReadConsistency::Linearizable)
        .await
        .unwrap();

    // `inspect` reads the same file without a cluster.
    let (code, out, err) = c.cli(&[
        "-o",
        "json",
        "cluster",
        "snapshot",
        "inspect",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(json(&out)["index"], saved["index"]);

    // A new cluster on other ports and dirs, each member restored from the
    // file, started without `cluster init`.
    let mut n = Cluster::configure(3, Timings::default());
    for id in 1..=3 {
        let (code, out, err) = restore(&file, &n.nodes[&id].config);
        assert_eq!(code, Some(0), "node {id}: {err}");
        let r = json(&out);
        assert_eq!(
            (&r["index"], &r["tasks"]),
            (&saved["index"], &saved["tasks"])
        );
        assert_eq!(r["members"].as_array().unwrap().len(), 3);
    }
    for id in 1..=3 {
        n.start_node(id);
    }
    n.wait_leader(&[1, 2, 3]).await;
    let restored_client = n.client();
    let restored = all_tasks(&restored_client).await;

    // Every task of the backup is as it was at the save: state, queue,
    // position, timeline; and the backup holds exactly the tasks the
    // source had applied by its index, a prefix of the source's ids that
    // includes every write acknowledged before the save.
    assert_eq!(restored.len() as u64, saved["tasks"].as_u64().unwrap());
    let last = restored.last().unwrap().id;
    let prefix: Vec<&Task> = source.iter().filter(|t| t.id <= last).collect();
    assert_eq!(
        restored.iter().collect::<Vec<_>>(),
        prefix,
        "the tasks differ"
    );
    let ids: std::collections::BTreeSet<u64> = restored.iter().map(|t| t.id).collect();
    for id in early.iter().chain(&before_save) {
        assert!(
            ids.contains(id),
            "task {id}, acknowledged before the save, is missing"
        );
    }
    assert!(
        source.len() > restored.len(),
        "writes went on after the save"
    );

    // Queues: the same names and settings, and counts that match the tasks.
    let queues = restored_client
        .list_queues(ReadConsistency::Linearizable)
        .await
        .unwrap();
    let specs = |qs: &[laneq::proto::v1::Queue]| -> Vec<_> {
        qs.iter()
            .map(|q| (q.name.clone(), q.spec.clone(), q.pool.clone()))
            .collect()
    };
    assert_eq!(specs(&queues), specs(&source_queues));
    for q in &queues {
        let queued = restored
            .iter()
            .filter(|t| t.queue == q.name && t.state == "queued")
            .count();
        assert_eq!(q.queued as usize, queued, "queue {}", q.name);
    }

    // The new cluster takes writes after the restored ones, and its
    // members agree on one state.
    let next = restored_client.submit_task("gpu", vec!["true".into()], vec![], None);
    let next = next.await.unwrap();
    assert!(next.id > last, "new id {} after {last}", next.id);
    n.wait_converged(&[1, 2, 3], saved["index"].as_u64().unwrap() + 1)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_or_corrupt_snapshot_is_refused() {
    let c = Cluster::start(1, Timings::default());
    c.init(1).await;
    c.submit_many(&c.client(), "default", 50).await;
    let good = c.dir.path().join("good.lqs");
    let (code, _, err) = c.cli(&["cluster", "snapshot", "save", good.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = c.cli(&["cluster", "snapshot", "save", good.to_str().unwrap()]);
    assert_eq!(code, Some(4), "an existing file is kept: {err}");
    assert!(err.contains("give --force"), "{err}");

    let bytes = std::fs::read(&good).unwrap();
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x01;
    let cases = [
        ("cut", bytes[..bytes.len() * 2 / 3].to_vec(), "truncated"),
        ("flipped", flipped, "corrupt"),
        (
            "other",
            b"not a backup at all".to_vec(),
            "not a laneq backup",
        ),
    ];
    let mut n = Cluster::configure(1, Timings::default());
    let config = n.nodes[&1].config.clone();
    let data_dir = n.nodes[&1].data_dir.clone();
    for (name, content, says) in cases {
        let file = c.dir.path().join(format!("{name}.lqs"));
        std::fs::write(&file, content).unwrap();
        let (code, _, err) = c.cli(&["cluster", "snapshot", "inspect", file.to_str().unwrap()]);
        assert_eq!(code, Some(2), "{name}: {err}");
        assert!(err.contains(says), "{name}: {err}");
        let (code, _, err) = restore(&file, &config);
        assert_eq!(code, Some(2), "{name}: {err}");
        assert!(err.contains(says), "{name}: {err}");
        assert!(!data_dir.exists(), "{name}: restore wrote a data dir");
    }

    let (code, _, err) = restore(&good, &config);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = restore(&good, &config);
    assert_eq!(code, Some(4), "a used data dir: {err}");
    assert!(err.contains("is not empty"), "{err}");
    n.start_node(1);
    n.wait_leader(&[1]).await;
    assert_eq!(all_tasks(&n.client()).await.len(), 50);
}
