//! Running one leased task: take its GPUs, StartTask, spawn its command (no
//! shell) with its environment (its GPUs only) and its output going to
//! `<log-dir>/<id>-<attempt>.log`,
//! report its iteration now and then, and report how it ended. A refusal
//! of the lease (FAILED_PRECONDITION: a stale fencing token) or a
//! revocation kills the child and forgets the task without reporting
//! anything more. The runner never retries a refused call.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;
use tonic::Code;
use tracing::Instrument;

use super::assign::Holder;
use super::output::{self, Progress};
use super::process::{self, KILL_GRACE};
use super::{Agent, Phase, Stop};
use crate::client::workers::Outcome;
use crate::client::{ClientError, ReadConsistency};
use crate::proto::v1::{AssignedGpu, Lease, Task};
use crate::wire::new_idempotency_key;

/// ReportProgress is sent at most this often (heartbeats carry the
/// iteration too).
pub const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// How long the output of an exited command may keep coming (from what it
/// left running in the background) before its log is closed.
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);
/// The wait between two tries of a completion the cluster could not take.
const COMPLETE_RETRY: Duration = Duration::from_secs(1);
/// How long a completion or release in flight may still take once the agent
/// aborts.
const ABORT_REPORT_WAIT: Duration = Duration::from_secs(3);

/// One lease to run, with what the agent shares about it.
pub(super) struct Job {
    pub lease: Lease,
    pub progress: Arc<Progress>,
    pub stop: Arc<watch::Sender<Stop>>,
    pub stop_rx: watch::Receiver<Stop>,
}

/// Whether an error means the lease is no longer ours.
fn refused(e: &ClientError) -> bool {
    matches!(e.code(), Code::FailedPrecondition | Code::NotFound)
}

pub(super) async fn run_task(agent: Arc<Agent>, job: Job) {
    let Some(task) = job.lease.task.clone() else {
        return;
    };
    let (id, token) = (task.id, job.lease.fencing_token);
    // Forgotten however the runner ends, so no heartbeat renews a lease
    // that nothing runs any more.
    let _forget = Forget(&agent, id, token);
    let span = tracing::info_span!("task", id, attempt = task.attempt);
    run_leased(&agent, task, token, job).instrument(span).await;
}

struct Forget<'a>(&'a Agent, u64, u64);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.forget(self.1, self.2);
    }
}

async fn run_leased(agent: &Arc<Agent>, task: Task, token: u64, mut job: Job) {
    let id = task.id;
    if *job.stop_rx.borrow() == Stop::Release {
        return release(agent, id, token).await;
    }
    let wanted = task.resources.get("gpu").copied().unwrap_or(0) as usize;
    let Some(gpus) = Grant::take(agent, (id, token), wanted) else {
        // The cluster counts this worker's GPUs as the agent does, so this
        // is a capacity set above what the agent holds free: the task goes
        // back to be run elsewhere.
        tracing::warn!("{wanted} GPU(s) asked for, fewer free: given back");
        return release(agent, id, token).await;
    };
    if let Err(e) = agent.client.start_task(id, token, gpus.list.clone()).await {
        if refused(&e) {
            tracing::warn!("start refused ({e}): dropped");
        } else {
            tracing::warn!("cannot start ({e}): left to expire");
        }
        return;
    }
    let ended = run_started(agent, task, token, &mut job, &gpus.list).await;
    // Free before the cluster hears of it: it may lease them again at once.
    drop(gpus);
    match ended {
        Ended::Complete(outcome) => complete(agent, id, token, outcome).await,
        Ended::Release => release(agent, id, token).await,
        Ended::Dropped => {}
    }
}

/// How a started task's run ended, to be reported once its GPUs are free.
enum Ended {
    Complete(Outcome),
    /// The agent is aborting: give the lease back.
    Release,
    /// The lease is no longer ours: report nothing.
    Dropped,
}

/// The GPUs a task's run holds; given back when dropped.
struct Grant<'a> {
    agent: &'a Agent,
    holder: Holder,
    list: Vec<AssignedGpu>,
}

impl<'a> Grant<'a> {
    fn take(agent: &'a Agent, holder: Holder, n: usize) -> Option<Self> {
        let list = agent.gpus.lock().expect("gpus poisoned").take(holder, n)?;
        Some(Self {
            agent,
            holder,
            list,
        })
    }
}

impl Drop for Grant<'_> {
    fn drop(&mut self) {
        let mut pool = self.agent.gpus.lock().expect("gpus poisoned");
        pool.give_back(self.holder);
    }
}

async fn run_started(
    agent: &Arc<Agent>,
    task: Task,
    token: u64,
    job: &mut Job,
    gpus: &[AssignedGpu],
) -> Ended {
    let id = task.id;
    let task = match with_body(agent, task).await {
        Ok(t) => t,
        Err(e) => return Ended::Complete(failure(e)),
    };
    let files = match prepare(agent, &task).await {
        Ok(f) => f,
        Err(e) => return Ended::Complete(failure(e)),
    };
    let mut child = match spawn(agent, &task, token, &files, gpus) {
        Ok(c) => c,
        Err(e) => return Ended::Complete(process::spawn_failure(&task.command[0], &e)),
    };
    tracing::info!(log = %files.log.display(), command = ?task.command, "started");
    let pumps = pump_output(&mut child, files.log_file, &job.progress);
    let reported = Arc::new(Progress::default());
    let reporter = tokio::spawn(report_progress(
        agent.clone(),
        (id, token),
        job.progress.clone(),
        reported.clone(),
        job.stop.clone(),
    ));
    let ended = tokio::select! {
        status = child.wait() => Ok(status),
        stop = job.stop_rx.wait_for(|s| *s != Stop::No) => Err(stop.map_or(Stop::Revoked, |s| *s)),
    };
    reporter.abort();
    match ended {
        Ok(status) => {
            drain(pumps).await;
            let outcome = match status {
                Ok(s) => process::outcome_of(s),
                Err(e) => failure(format!("worker: cannot wait for the command: {e}")),
            };
            final_progress(agent, (id, token), &job.progress, &reported).await;
            Ended::Complete(outcome)
        }
        Err(stop) => {
            let status = process::stop(&mut child, KILL_GRACE).await;
            drain(pumps).await;
            let how = match status.map(process::outcome_of) {
                Some(o) if o.succeeded => "exit code 0".to_string(),
                Some(o) => o.condition,
                None => "gone".to_string(),
            };
            tracing::warn!("stopped ({stop:?}): {how}");
            match stop {
                Stop::Release => Ended::Release,
                _ => Ended::Dropped,
            }
        }
    }
}

fn failure(condition: String) -> Outcome {
    Outcome {
        succeeded: false,
        exit_code: None,
        condition,
    }
}

/// The task with its command line: a lease may come without it.
async fn with_body(agent: &Agent, task: Task) -> Result<Task, String> {
    let task = if task.command.is_empty() {
        agent
            .client
            .get_task(task.id, ReadConsistency::Linearizable)
            .await
            .map_err(|e| format!("worker: cannot read the task's command: {e}"))?
    } else {
        task
    };
    if task.command.is_empty() || task.command[0].is_empty() {
        return Err("worker: the task has no command".into());
    }
    Ok(task)
}

struct Files {
    log: PathBuf,
    log_file: tokio::fs::File,
    payload: PathBuf,
}

/// Creates the task's log file and writes its payload file.
async fn prepare(agent: &Agent, task: &Task) -> Result<Files, String> {
    let dir = &agent.config.log_dir;
    let stem = format!("{}-{}", task.id, task.attempt);
    let log = dir.join(format!("{stem}.log"));
    let payload = dir.join(format!("{stem}.payload"));
    tokio::fs::write(&payload, &task.payload)
        .await
        .map_err(|e| format!("worker: cannot write {}: {e}", payload.display()))?;
    let log_file = tokio::fs::File::create(&log)
        .await
        .map_err(|e| format!("worker: cannot create {}: {e}", log.display()))?;
    Ok(Files {
        log,
        log_file,
        payload,
    })
}

fn spawn(
    agent: &Agent,
    task: &Task,
    token: u64,
    files: &Files,
    gpus: &[AssignedGpu],
) -> std::io::Result<Child> {
    let mut command = Command::new(&task.command[0]);
    if !gpus.is_empty() || !agent.config.gpus_visible_to_all {
        for (name, value) in gpu_env(gpus) {
            command.env(name, value);
        }
    }
    // A task that calls laneq reaches the nodes as the agent does.
    if let Some(t) = &agent.config.token {
        command.env("LANEQ_TOKEN", t);
    }
    if let Some(tls) = &agent.config.tls {
        command.env("LANEQ_CACERT", &tls.ca);
        if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
            command.env("LANEQ_CERT", cert).env("LANEQ_KEY", key);
        }
    }
    command
        .args(&task.command[1..])
        .env("LANEQ_TASK_ID", task.id.to_string())
        .env("LANEQ_ATTEMPT", task.attempt.to_string())
        .env("LANEQ_FENCING_TOKEN", token.to_string())
        .env("LANEQ_ENDPOINTS", agent.config.endpoints.join(","))
        .env("LANEQ_PAYLOAD_FILE", &files.payload)
        .env("LANEQ_WORKER", agent.name())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: see process.rs.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
}

/// The environment that shows a task its GPUs and hides the others: CUDA
/// by index, in PCI bus order (NVML's order, which `nvidia-smi` shows; CUDA's
/// own default order puts the fastest first), and the NVIDIA container
/// runtime by UUID. A task given none sees none.
pub fn gpu_env(gpus: &[AssignedGpu]) -> [(&'static str, String); 3] {
    let indexes: Vec<String> = gpus.iter().map(|g| g.index.to_string()).collect();
    let uuids: Vec<&str> = gpus.iter().map(|g| g.uuid.as_str()).collect();
    let nvidia = match uuids.is_empty() {
        true => "void".to_string(),
        false => uuids.join(","),
    };
    [
        ("CUDA_DEVICE_ORDER", "PCI_BUS_ID".to_string()),
        ("CUDA_VISIBLE_DEVICES", indexes.join(",")),
        ("NVIDIA_VISIBLE_DEVICES", nvidia),
    ]
}

/// Copies stdout and stderr into the log file.
fn pump_output(
    child: &mut Child,
    log: tokio::fs::File,
    progress: &Arc<Progress>,
) -> Vec<JoinHandle<std::io::Result<()>>> {
    let log = Arc::new(Mutex::new(log));
    let mut pumps = Vec::new();
    if let Some(out) = child.stdout.take() {
        pumps.push(tokio::spawn(output::pump(
            out,
            log.clone(),
            progress.clone(),
        )));
    }
    if let Some(err) = child.stderr.take() {
        pumps.push(tokio::spawn(output::pump(err, log, progress.clone())));
    }
    pumps
}

/// Waits for the output to end, at most `OUTPUT_DRAIN` once the command is
/// gone (a background process may hold the pipes open).
async fn drain(pumps: Vec<JoinHandle<std::io::Result<()>>>) {
    let deadline = tokio::time::Instant::now() + OUTPUT_DRAIN;
    for mut pump in pumps {
        match tokio::time::timeout_at(deadline, &mut pump).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!("output: {e}"),
            Ok(Err(e)) => tracing::warn!("output copier failed: {e}"),
            Err(_) => {
                tracing::warn!("output still open {OUTPUT_DRAIN:?} after the exit: log closed");
                pump.abort();
            }
        }
    }
}

/// Sends the iteration every `PROGRESS_EVERY` when it changed. A refusal
/// means the lease is gone: the runner is told to stop.
async fn report_progress(
    agent: Arc<Agent>,
    (id, token): (u64, u64),
    progress: Arc<Progress>,
    reported: Arc<Progress>,
    stop: Arc<watch::Sender<Stop>>,
) {
    loop {
        tokio::time::sleep(PROGRESS_EVERY).await;
        let Some(it) = progress.get().filter(|&it| reported.get() != Some(it)) else {
            continue;
        };
        match agent.client.report_progress(id, token, it).await {
            Ok(_) => reported.set(it),
            Err(e) if refused(&e) => {
                tracing::warn!("progress refused ({e}): stopping");
                stop.send_replace(Stop::Revoked);
                return;
            }
            Err(e) => tracing::warn!("progress: {e}"),
        }
    }
}

/// The last iteration, if it changed since the last report, so that the
/// finished task shows it.
async fn final_progress(
    agent: &Agent,
    (id, token): (u64, u64),
    progress: &Progress,
    reported: &Progress,
) {
    if let Some(it) = progress.get().filter(|&it| reported.get() != Some(it)) {
        if let Err(e) = agent.client.report_progress(id, token, it).await {
            tracing::warn!("final progress: {e}");
        }
    }
}

/// Reports the outcome. While the cluster cannot be reached it tries again
/// with the same idempotency key (the lease is renewed meanwhile). Once the
/// agent aborts, a try gets `ABORT_REPORT_WAIT` more; a refusal ends it.
async fn complete(agent: &Agent, id: u64, token: u64, outcome: Outcome) {
    let key = new_idempotency_key();
    loop {
        let call = agent
            .client
            .complete_task(id, token, &outcome, Some(key.clone()));
        tokio::pin!(call);
        let result = tokio::select! {
            r = &mut call => r,
            _ = agent.reached(Phase::Aborting) => {
                match tokio::time::timeout(ABORT_REPORT_WAIT, &mut call).await {
                    Ok(r) => r,
                    Err(_) => {
                        tracing::warn!("aborting: the completion is not reported; the lease will expire");
                        return;
                    }
                }
            }
        };
        match result {
            Ok(t) => {
                tracing::info!(state = %t.state, condition = %outcome.condition, "finished");
                return;
            }
            Err(e) if refused(&e) => {
                tracing::warn!("completion refused ({e}): dropped");
                return;
            }
            Err(e) if e.code() == Code::Unavailable && agent.phase() < Phase::Aborting => {
                tracing::warn!("cannot report the completion yet: {e}");
                tokio::time::sleep(COMPLETE_RETRY).await;
            }
            Err(e) => {
                tracing::error!("completion failed: {e}; the lease will expire");
                return;
            }
        }
    }
}

/// Gives the lease back so the task is queued again at once.
async fn release(agent: &Agent, id: u64, token: u64) {
    let reason = format!("worker {} stopped", agent.name());
    match agent.client.release_task(id, token, &reason).await {
        Ok(_) => tracing::info!("given back"),
        Err(e) => tracing::warn!("cannot give the lease back ({e}): left to expire"),
    }
}
