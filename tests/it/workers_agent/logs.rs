//! Task logs from anywhere: an agent that knows one node serves its
//! tasks' output, read through another node (relayed between nodes), in
//! whole, its tail, and followed live until the run ends; an earlier
//! attempt's worker that is gone gives a clear refusal; and what has not
//! run has no output.

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use laneq::client::{Client, ClientError};
use tonic::Code;

use super::{hold_until, sh, submit, timings, wait_lost, wait_tasks};
use crate::support::{eventually, ok_if, Agent, Cluster};

/// Reads a whole task log (no follow).
async fn read(client: &Client, id: u64, attempt: u32, tail: u64) -> Result<String, ClientError> {
    let mut chunks = Box::pin(client.task_logs(id, attempt, false, tail));
    let mut text = Vec::new();
    while let Some(c) = chunks.next().await {
        text.extend(c?);
    }
    Ok(String::from_utf8(text).unwrap())
}

/// The node whose log says that worker `name`'s log stream is open there.
async fn stream_node(c: &Cluster, name: &str) -> u64 {
    let what = format!("worker {name}'s log stream to open on a node");
    eventually(Duration::from_secs(30), &what, async || {
        let on: Vec<u64> = (1..=3)
            .filter(|&id| {
                c.log_text(id).lines().any(|l| {
                    l.contains("a worker's log stream is open")
                        && l.contains(&format!("\"{name}\""))
                })
            })
            .collect();
        ok_if(on.len() == 1, on.clone()).map(|()| on[0])
    })
    .await
}

/// A script that prints three lines, waits for `gate`, prints a fourth.
fn three_then_four(gate: &Path, left: &Path) -> Vec<String> {
    sh(format!(
        "echo one; echo two; echo three; {}",
        hold_until(gate, left).replace("exit 0", "echo four; exit 0")
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_log_is_read_and_followed_through_a_node_its_worker_does_not_use() {
    let c = Cluster::start(3, timings());
    c.init(1).await;
    let client = c.client();
    let dir = tempfile::tempdir().unwrap();
    let (gate, left) = (dir.path().join("gate"), dir.path().join("left"));
    let _agent = Agent::start_via(&c, dir.path(), "w1", 1);
    let on = stream_node(&c, "w1").await;
    let other = c.client_for(if on == 3 { 2 } else { 3 });

    let id = submit(&client, three_then_four(&gate, &left)).await;
    let what = format!("task {id}'s first lines through another node");
    eventually(Duration::from_secs(30), &what, async || {
        let text = read(&other, id, 0, 0).await.map_err(|e| e.to_string())?;
        ok_if(text == "one\ntwo\nthree\n", text)
    })
    .await;
    assert_eq!(read(&other, id, 0, 2).await.unwrap(), "two\nthree\n");
    assert_eq!(read(&other, id, 1, 1).await.unwrap(), "three\n");

    // Followed: the first lines, then the last once the gate opens, then
    // the end once the run is over.
    let mut follow = Box::pin(other.task_logs(id, 0, true, 1));
    let first = follow.next().await.unwrap().unwrap();
    assert_eq!(first, b"three\n");
    std::fs::write(&gate, "").unwrap();
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(c) = follow.next().await {
            rest.extend(c.unwrap());
        }
    })
    .await;
    assert!(ended.is_ok(), "the follow ended with the run: {rest:?}");
    assert_eq!(String::from_utf8(rest).unwrap(), "four\n");
    let done = wait_tasks(&client, &[id], Duration::from_secs(30), "done", |t| {
        t.state == "succeeded"
    })
    .await;
    assert_eq!(done[&id].worker, "w1");

    // The CLI: raw bytes, JSON lines.
    let id_s = id.to_string();
    let (code, out, err) = c.cli(&["task", "logs", &id_s, "--tail", "2"]);
    assert_eq!((code, out.as_str()), (Some(0), "three\nfour\n"), "{err}");
    let (code, out, err) = c.cli(&["task", "logs", &id_s, "-o", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let line: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(line["data"], "one\ntwo\nthree\nfour\n", "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_attempt_on_a_gone_worker_and_a_task_not_run_are_refused_clearly() {
    let c = Cluster::start(3, timings());
    c.init(1).await;
    let client = c.client();
    let dir = tempfile::tempdir().unwrap();
    let (gate, left) = (dir.path().join("gate"), dir.path().join("left"));
    let _open_at_end = OpenAtEnd(gate.clone());

    client.create_queue("idle").await.unwrap();
    let not_run = client
        .submit_task("idle", sh("true".into()), vec![], None)
        .await
        .unwrap()
        .id;
    let id = submit(
        &client,
        sh(format!(
            "echo attempt $LANEQ_ATTEMPT; [ $LANEQ_ATTEMPT = 1 ] && {{ {}; }}; exit 0",
            hold_until(&gate, &left)
        )),
    )
    .await;
    let w1 = Agent::start_via(&c, dir.path(), "w1", 1);
    let what = format!("task {id}'s first attempt to print");
    eventually(Duration::from_secs(30), &what, async || {
        let text = read(&client, id, 0, 0).await.map_err(|e| e.to_string())?;
        ok_if(text == "attempt 1\n", text)
    })
    .await;
    drop(w1);
    wait_lost(&c, "w1").await;
    let _w2 = Agent::start_via(&c, dir.path(), "w2", 2);
    wait_tasks(&client, &[id], Duration::from_secs(60), "run again", |t| {
        t.state == "succeeded"
    })
    .await;

    assert_eq!(read(&client, id, 2, 0).await.unwrap(), "attempt 2\n");
    assert_eq!(read(&client, id, 0, 0).await.unwrap(), "attempt 2\n");
    let gone = read(&client, id, 1, 0).await.unwrap_err();
    assert_eq!(gone.code(), Code::FailedPrecondition, "{gone}");
    let expected = format!(
        "worker w1 is not connected to the cluster (it is lost): task {id}'s output is on \
         that machine, in its log dir, as {id}-1.log"
    );
    assert!(gone.to_string().contains(&expected), "{gone}");
    let (code, _, err) = c.cli(&["task", "logs", &id.to_string(), "--attempt", "1"]);
    assert_eq!(code, Some(7), "{err}");
    assert!(err.contains("is not connected to the cluster"), "{err}");

    let no_attempt = read(&client, id, 3, 0).await.unwrap_err();
    assert_eq!(no_attempt.code(), Code::NotFound, "{no_attempt}");
    let (code, _, err) = c.cli(&["task", "logs", "999999"]);
    assert_eq!(code, Some(3), "{err}");
    let e = read(&client, not_run, 0, 0).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    assert!(e.to_string().contains("has not run yet: no output"), "{e}");
}

/// Opens the gate when the test ends, so that no held command outlives it.
struct OpenAtEnd(std::path::PathBuf);

impl Drop for OpenAtEnd {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.0, "");
    }
}
