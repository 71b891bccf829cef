//! A `laneq worker run` agent process pointed at a test cluster, with its
//! log in a file; killed (SIGKILL) when its handle drops, never left behind.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::Duration;

use super::{eventually, ok_if, signal, Cluster};

/// A `laneq worker run` process, killed (SIGKILL) when dropped.
pub struct Agent {
    name: String,
    log: PathBuf,
    child: Option<Child>,
}

impl Agent {
    pub fn start(c: &Cluster, dir: &Path, name: &str, slots: u32) -> Self {
        Self::start_on(c, dir, name, slots, &["default"])
    }

    /// An agent leasing from `queues`, in that order.
    pub fn start_on(c: &Cluster, dir: &Path, name: &str, slots: u32, queues: &[&str]) -> Self {
        Self::start_with(c, dir, name, slots, queues, &[], &[])
    }

    /// An agent leasing from `queues`, with more `args` for `worker run`
    /// and more `env`.
    pub fn start_with(
        c: &Cluster,
        dir: &Path,
        name: &str,
        slots: u32,
        queues: &[&str],
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        Self::spawn(c.command(), dir, name, slots, queues, args, env)
    }

    /// An agent that knows node `node` only, so that it talks to that one.
    pub fn start_via(c: &Cluster, dir: &Path, name: &str, node: u64) -> Self {
        let command = c.command_on(&[c.addr(node)]);
        Self::spawn(command, dir, name, 1, &["default"], &[], &[])
    }

    fn spawn(
        mut command: std::process::Command,
        dir: &Path,
        name: &str,
        slots: u32,
        queues: &[&str],
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let log = dir.join(format!("{name}.agent.log"));
        let out = fs::File::create(&log).unwrap();
        let child = command
            .args(["worker", "run", "--name", name])
            .args(queues.iter().flat_map(|q| ["--queue", q]))
            .args(["--slots", &slots.to_string()])
            .args(["--heartbeat-ms", "300", "--lease-wait-ms", "2000"])
            .args(args)
            .arg("--log-dir")
            .arg(dir.join(name))
            .current_dir(dir)
            .envs(env.iter().copied())
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

    pub fn signal(&self, sig: &str) {
        signal(self.child.as_ref().unwrap().id(), sig);
    }

    /// Waits for the agent to exit by itself.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        let what = format!("agent {} to exit", self.name);
        let status = eventually(within, &what, async || {
            child.try_wait().unwrap().ok_or("running")
        })
        .await;
        self.child = None;
        status
    }

    /// Waits until the agent's log says `line`.
    pub async fn wait_log(&self, line: &str) {
        let what = format!("agent {} to log {line:?}", self.name);
        eventually(Duration::from_secs(10), &what, async || {
            ok_if(self.log_text().contains(line), "not in its log")
        })
        .await;
    }

    /// Whether the agent has not been seen to exit.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn log_text(&self) -> String {
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
