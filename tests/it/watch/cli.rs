//! The live views run as a person runs them: `queue get --watch` in a
//! pseudo-terminal (util-linux `script`), whose bars move as tasks are
//! submitted and leased, and which Ctrl-C ends with exit 0; `task get
//! --watch`, which prints each transition and exits 0 when the task
//! succeeded and 10 when it failed or was canceled; a watch whose pipe
//! closes, which exits 0.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use laneq::proto::v1::*;

use super::run_task;
use crate::support::{eventually, ok_if, Cluster, Node, Timings, BIN};

/// A CLI process whose output is gathered as it comes. Killed on drop.
struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Arc<Mutex<Vec<u8>>>,
}

impl Running {
    fn spawn(cmd: &mut Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        for mut pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let out = out.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = pipe.read(&mut buf) {
                    out.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
        let stdin = child.stdin.take();
        Self { child, stdin, out }
    }

    /// What it printed so far, terminal escapes taken out.
    fn text(&self) -> String {
        self.text_since(0)
    }

    /// How much it has printed so far: a mark for [`Running::shows_since`].
    fn mark(&self) -> usize {
        self.out.lock().unwrap().len()
    }

    /// What it printed after `mark`, terminal escapes taken out.
    fn text_since(&self, mark: usize) -> String {
        plain(&String::from_utf8_lossy(&self.out.lock().unwrap()[mark..]))
    }

    /// Waits until its output shows every one of `parts`.
    async fn shows(&self, parts: &[&str]) {
        self.shows_since(0, parts).await
    }

    /// Waits until its output after `mark` shows every one of `parts`.
    async fn shows_since(&self, mark: usize, parts: &[&str]) {
        let what = format!("the output to show {parts:?}");
        eventually(Duration::from_secs(20), &what, async || {
            let text = self.text_since(mark);
            let tail: String = text.chars().rev().take(1500).collect();
            ok_if(parts.iter().all(|p| text.contains(p)), tail)
        })
        .await;
    }

    async fn exit(&mut self) -> ExitStatus {
        let what = "the CLI to exit (its output)";
        eventually(Duration::from_secs(20), what, async || {
            match self.child.try_wait().unwrap() {
                Some(status) => Ok(status),
                None => Err(self.text()),
            }
        })
        .await
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `text` without terminal escape sequences (CSI: ESC [ ... final byte).
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                if chars.next() == Some('[') {
                    for d in chars.by_ref() {
                        if ('@'..='~').contains(&d) {
                            break;
                        }
                    }
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// `laneq ARGS` in a pseudo-terminal of 120 columns, as in a shell.
fn in_terminal(c: &Cluster, args: &str) -> Running {
    let line = format!(
        "stty cols 120 rows 40; exec {BIN} --endpoints {} {args}",
        c.endpoints().join(",")
    );
    Running::spawn(Command::new("script").args(["-q", "-e", "-c", &line, "/dev/null"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_get_watch_draws_bars_that_move() {
    let c = Cluster::start(3, Timings::default());
    let leader = c.init(1).await;
    let l = Node::new(&c, leader);
    let spec = QueueSpec {
        run_concurrency: 4,
        depth: Some(50),
        ..Default::default()
    };
    l.create_queue_with("gpu", "default", spec).await;
    let mut view = in_terminal(&c, "queue get gpu --watch");
    view.shows(&[
        "gpu  active  queued 0",
        "runs",
        "] 0/4",
        "] 0/50",
        "(no limit)",
    ])
    .await;

    // Each step checks what was drawn after it: the bars move both ways.
    let mark = view.mark();
    for run in ["r1", "r2", "r3"] {
        l.submit_to("gpu", run).await;
    }
    view.shows_since(mark, &["queued 3", "] 3/50", "next #1"])
        .await;
    l.register("w1", &["gpu"], 0).await;
    let mark = view.mark();
    let leases = l.lease("w1", 2, 1_000).await;
    assert_eq!(leases.len(), 2);
    view.shows_since(mark, &["queued 1  running 2", "] 2/4", "2 (no limit)"])
        .await;
    let (id, token) = (leases[0].task.as_ref().unwrap().id, leases[0].fencing_token);
    l.start(id, token).await.unwrap();
    let mark = view.mark();
    l.complete(id, token, true).await.unwrap();
    view.shows_since(
        mark,
        &["queued 1  running 1", "] 1/4", "1 (no limit)", "] 2/50"],
    )
    .await;

    // Ctrl-C, typed at the terminal.
    let stdin = view.stdin.as_mut().unwrap();
    stdin.write_all(b"\x03").unwrap();
    stdin.flush().unwrap();
    let status = view.exit().await;
    assert_eq!(status.code(), Some(0), "{}", view.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_get_watch_exits_with_how_the_task_ended() {
    let c = Cluster::start(3, Timings::default());
    let leader = c.init(1).await;
    let l = Node::new(&c, leader);
    l.register("w1", &["default"], 1).await;
    let cli = |id: u64| {
        let mut cmd = c.command();
        cmd.args(["task", "get", &id.to_string(), "--watch"]);
        Running::spawn(&mut cmd)
    };

    // Not a terminal: one JSON object per transition.
    let id = l.submit_to("default", "").await;
    let mut watching = cli(id);
    watching.shows(&["\"state\":\"queued\""]).await;
    run_task(&l, "w1", id, true).await;
    assert_eq!(watching.exit().await.code(), Some(0));
    let states: Vec<String> = watching
        .text()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line"))
        .map(|v| v["state"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(states, ["queued", "leased", "running", "succeeded"]);

    // In a terminal: a line per transition, the condition on the last.
    let id = l.submit_to("default", "").await;
    let mut watching = in_terminal(&c, &format!("task get {id} --watch"));
    watching.shows(&["STATE", "queued"]).await;
    run_task(&l, "w1", id, false).await;
    assert_eq!(watching.exit().await.code(), Some(10));
    let text = watching.text();
    assert!(
        text.contains("failed") && text.contains("is failed"),
        "{text}"
    );

    let id = l.submit_to("default", "").await;
    let mut watching = cli(id);
    watching.shows(&["\"state\":\"queued\""]).await;
    let req = CancelTaskRequest {
        meta: crate::support::meta(),
        id,
        reason: "wrong lr".into(),
    };
    l.tasks().cancel_task(req).await.unwrap();
    assert_eq!(watching.exit().await.code(), Some(10));
    assert!(watching.text().contains("wrong lr"));

    // A watch of a task that is over already ends at once.
    let mut again = cli(id);
    assert_eq!(again.exit().await.code(), Some(10));
}

/// JSON lines into a pipe whose reader leaves: the next line ends the watch
/// with exit 0, as a pipeline expects (`set -o pipefail` reports it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_into_a_closed_pipe_exits_0() {
    let c = Cluster::start(1, Timings::default());
    c.init(1).await;
    let l = Node::new(&c, 1);
    let line = format!(
        "set -o pipefail; {BIN} --endpoints {} queue get default --watch | head -n 1",
        c.endpoints().join(",")
    );
    let mut piped = Running::spawn(Command::new("bash").args(["-c", &line]));
    piped.shows(&["\"name\":\"default\""]).await;
    // Once `head` has left, the next view goes nowhere; a submit makes one.
    let what = "the watch to end after head left";
    let status = eventually(Duration::from_secs(20), what, async || {
        l.submit_to("default", "").await;
        piped.child.try_wait().unwrap().ok_or_else(|| piped.text())
    })
    .await;
    assert_eq!(status.code(), Some(0), "{}", piped.text());
}
