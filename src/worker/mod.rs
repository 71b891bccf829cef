//! The worker agent behind `laneq worker run`: it registers, long-polls
//! Lease for as many tasks as it has free slots, runs each leased task as a
//! child process (`run.rs`), and heartbeats the tasks it holds with the
//! machine's usage (`heartbeat.rs`, `usage.rs`, `gpus.rs`). Each task that
//! asks for GPUs is given its own (`assign.rs`). It serves its tasks' log
//! files to the cluster over one stream (`logs.rs`).
//!
//! Its life has three phases. `Running` leases and runs. The first SIGTERM
//! (or Ctrl-C) moves to `Draining`: no new leases, running tasks finish and
//! are reported, then the agent returns. The second moves to `Aborting`:
//! every task is stopped and its lease given back, so it is queued again at
//! once. A task whose lease is refused (a stale fencing token) or revoked
//! is stopped and forgotten, never completed.
//!
//! The agent never decides where a task goes and never retries a refusal:
//! the cluster's dispatcher and fencing tokens do that.

mod assign;
mod cgroup;
mod gpus;
mod heartbeat;
mod logs;
pub mod output;
pub mod process;
mod run;
pub mod usage;

use std::collections::BTreeMap;
use std::net::{IpAddr, ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tonic::Code;

use crate::client::workers::WorkerProfile;
use crate::client::{Client, ClientError};
use crate::proto::v1::{HeldTask, Lease};
use output::Progress;

/// The most tasks one agent runs at once, whatever its slots say: as many
/// as one heartbeat may carry.
pub const AGENT_TASKS_MAX: usize = crate::model::limits::HEARTBEAT_TASKS_MAX;
/// How long the agent waits after a failed Lease before polling again.
const LEASE_ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// What `laneq worker run` was asked to do.
#[derive(Debug, Clone)]
pub struct Config {
    /// Empty `ip` or `capacity` are filled in from the machine.
    pub registration: WorkerProfile,
    pub endpoints: Vec<String>,
    /// The worker's token (a worker role's, bound to its pool). Its tasks
    /// get it too, as LANEQ_TOKEN, so that `laneq task progress` works
    /// from inside them, as clearml-agent hands its credentials on.
    pub token: Option<String>,
    pub credentials: crate::client::Credentials,
    /// Where each task's log (`<id>-<attempt>.log`) and payload go.
    pub log_dir: PathBuf,
    pub heartbeat: Duration,
    pub lease_wait: Duration,
    /// How long one call may keep retrying (Lease waits within it).
    pub deadline: Duration,
    /// TLS to the nodes (the CLI's `--cacert`, `--cert`, `--key`); `None`:
    /// plaintext. Tasks are given the same files (`LANEQ_CACERT`, ...).
    pub tls: Option<crate::client::TlsFiles>,
    /// Only these GPUs (NVML indices); `None`: all of the machine's.
    pub gpus: Option<Vec<u32>>,
    /// Tasks that ask for no GPU still see them all.
    pub gpus_visible_to_all: bool,
}

impl Config {
    /// A client of the configured nodes with `deadline`.
    pub fn client(&self, deadline: Duration) -> Result<Client, AgentError> {
        let options = crate::client::ClientOptions {
            deadline,
            tls: self.tls.clone(),
            credentials: self.credentials.clone(),
        };
        Client::connect(&self.endpoints, options).map_err(AgentError::Setup)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// Where the agent is in its life; only moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Running,
    Draining,
    Aborting,
}

/// What a task's runner is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    No,
    /// The lease is no longer ours: kill the child, report nothing.
    Revoked,
    /// The agent is aborting: kill the child and give the lease back.
    Release,
}

/// A task the agent holds a lease on.
struct Held {
    token: u64,
    /// Which attempt of the task this lease runs (its log file's name).
    attempt: u32,
    progress: Arc<Progress>,
    stop: Arc<watch::Sender<Stop>>,
}

/// What the agent's loops share.
pub(crate) struct Agent {
    client: Client,
    config: Config,
    /// Leased tasks by id, from the Lease reply until the runner is done.
    held: Mutex<BTreeMap<u64, Held>>,
    /// A runner finished: a slot may be free.
    slot_freed: Notify,
    /// The GPUs it may use, and which task holds which.
    gpus: Mutex<assign::GpuPool>,
    phase: watch::Sender<Phase>,
}

impl Agent {
    fn name(&self) -> &str {
        &self.config.registration.name
    }

    fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Waits until the agent's phase is at least `p`.
    async fn reached(&self, p: Phase) {
        let mut rx = self.phase.subscribe();
        let _ = rx.wait_for(|now| *now >= p).await;
    }

    /// How many tasks to ask for now.
    fn free_slots(&self) -> u32 {
        let held = self.held.lock().expect("held poisoned").len();
        let room = AGENT_TASKS_MAX.saturating_sub(held) as u32;
        match self.config.registration.slots {
            // Only capacity limits it, which the dispatcher knows: one at a time.
            0 => room.min(1),
            slots => room.min(slots.saturating_sub(held as u32)),
        }
    }

    /// The held tasks as a heartbeat carries them.
    fn held_tasks(&self) -> Vec<HeldTask> {
        let held = self.held.lock().expect("held poisoned");
        held.iter()
            .map(|(&id, h)| HeldTask {
                id,
                fencing_token: h.token,
                iteration: h.progress.get(),
            })
            .collect()
    }

    /// Whether attempt `attempt` of task `id` is held (its runner may still
    /// write its log).
    fn runs(&self, id: u64, attempt: u32) -> bool {
        let held = self.held.lock().expect("held poisoned");
        held.get(&id).is_some_and(|h| h.attempt == attempt)
    }

    /// Tells the runner of task `id` to stop if it still holds `token`.
    fn tell(&self, id: u64, token: u64, stop: Stop) {
        let held = self.held.lock().expect("held poisoned");
        if let Some(h) = held.get(&id).filter(|h| h.token == token) {
            h.stop.send_replace(stop);
        }
    }

    /// Forgets task `id` if it is still held with `token`.
    fn forget(&self, id: u64, token: u64) {
        let mut held = self.held.lock().expect("held poisoned");
        if held.get(&id).is_some_and(|h| h.token == token) {
            held.remove(&id);
        }
        drop(held);
        self.slot_freed.notify_one();
    }

    /// Registers, retrying while the cluster cannot be reached.
    async fn register(&self) -> Result<(), AgentError> {
        loop {
            match self.client.register_worker(&self.config.registration).await {
                Ok(w) => {
                    tracing::info!(
                        worker = %w.name, ip = %w.ip, pool = %w.pool, cluster = %w.cluster,
                        queues = ?w.queues, slots = w.slots, "registered"
                    );
                    return Ok(());
                }
                Err(e) if e.code() == Code::Unavailable => {
                    tracing::warn!("cannot register yet: {e}");
                }
                Err(e) => return Err(e.into()),
            }
            if self.phase() > Phase::Running {
                return Err(AgentError::Setup("stopped before registering".into()));
            }
        }
    }
}

/// The local address this machine uses to reach `endpoint` (a UDP
/// "connect" sends nothing; it only picks the route).
pub fn local_ip_towards(endpoint: &str) -> Option<IpAddr> {
    let addr = endpoint.to_socket_addrs().ok()?.next()?;
    let any = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(any).ok()?;
    socket.connect(addr).ok()?;
    Some(socket.local_addr().ok()?.ip())
}

/// Runs the agent until it has been told to stop and its tasks are done.
pub async fn run(mut config: Config) -> Result<(), AgentError> {
    std::fs::create_dir_all(&config.log_dir).map_err(|e| {
        AgentError::Setup(format!(
            "log dir: cannot create {}: {e}",
            config.log_dir.display()
        ))
    })?;
    let mut sampler = tokio::task::spawn_blocking(usage::UsageSampler::new)
        .await
        .map_err(|e| AgentError::Setup(format!("usage sampler: {e}")))?;
    let devices = assign::restrict(sampler.gpu_devices(), config.gpus.as_deref())
        .map_err(AgentError::Setup)?;
    let reg = &mut config.registration;
    if reg.capacity.is_empty() {
        reg.capacity = sampler.machine_capacity();
        if !devices.is_empty() {
            reg.capacity.insert("gpu".to_string(), devices.len() as u64);
        }
    }
    if let Some(&n) = reg.capacity.get("gpu") {
        if n > devices.len() as u64 {
            return Err(AgentError::Setup(format!(
                "--capacity gpu={n}: this worker may use {} GPU(s){}",
                devices.len(),
                if config.gpus.is_some() {
                    " (--gpus)"
                } else {
                    ""
                }
            )));
        }
    }
    if reg.ip.is_empty() {
        reg.ip = config
            .endpoints
            .first()
            .and_then(|e| local_ip_towards(e))
            .map_or("127.0.0.1".to_string(), |ip| ip.to_string());
    }
    let client = config.client(config.deadline)?;
    let (phase, _) = watch::channel(Phase::Running);
    let agent = Arc::new(Agent {
        client,
        config,
        held: Mutex::new(BTreeMap::new()),
        slot_freed: Notify::new(),
        gpus: Mutex::new(assign::GpuPool::new(devices)),
        phase,
    });
    let signals = tokio::spawn(watch_signals(agent.clone()));
    let result = serve(agent.clone(), sampler).await;
    signals.abort();
    result
}

async fn serve(agent: Arc<Agent>, sampler: usage::UsageSampler) -> Result<(), AgentError> {
    tokio::select! {
        r = agent.register() => r?,
        _ = agent.reached(Phase::Draining) => return Ok(()),
    }
    let beats = tokio::spawn(heartbeat::run(agent.clone(), sampler));
    let logs = tokio::spawn(logs::run(agent.clone()));
    let mut runners = JoinSet::new();
    lease_loop(&agent, &mut runners).await;
    finish(&agent, &mut runners).await;
    beats.abort();
    logs.abort();
    tracing::info!("stopped");
    Ok(())
}

/// Leases and starts tasks until the agent stops running.
async fn lease_loop(agent: &Arc<Agent>, runners: &mut JoinSet<()>) {
    let wait = agent.config.lease_wait;
    while agent.phase() == Phase::Running {
        while let Some(r) = runners.try_join_next() {
            log_join(r);
        }
        let freed = agent.slot_freed.notified();
        let free = agent.free_slots();
        if free == 0 {
            tokio::select! {
                _ = freed => {}
                _ = agent.reached(Phase::Draining) => {}
            }
            continue;
        }
        // A poll in flight is not cut short by the first signal: its
        // leases are given back below instead of expiring unseen.
        let leases = tokio::select! {
            r = agent.client.lease(agent.name(), free, wait) => r,
            _ = agent.reached(Phase::Aborting) => return,
        };
        match leases {
            Ok(leases) => {
                for lease in leases {
                    take(agent, runners, lease);
                }
            }
            Err(e) => {
                tracing::warn!("lease: {e}");
                if e.code() == Code::NotFound {
                    // The cluster does not know us (a wiped store): again.
                    let _ = agent.register().await;
                }
                tokio::select! {
                    _ = tokio::time::sleep(LEASE_ERROR_BACKOFF) => {}
                    _ = agent.reached(Phase::Draining) => {}
                }
            }
        }
    }
}

/// Starts a runner for a new lease (or gives it back when stopping).
fn take(agent: &Arc<Agent>, runners: &mut JoinSet<()>, lease: Lease) {
    let Some(task) = lease.task.as_ref() else {
        tracing::warn!("a lease without its task: ignored");
        return;
    };
    let (id, token) = (task.id, lease.fencing_token);
    let (stop_tx, stop_rx) = watch::channel(Stop::No);
    if agent.phase() > Phase::Running {
        stop_tx.send_replace(Stop::Release);
    }
    let progress = Arc::new(Progress::default());
    let stop = Arc::new(stop_tx);
    let replaced = agent.held.lock().expect("held poisoned").insert(
        id,
        Held {
            token,
            attempt: task.attempt,
            progress: progress.clone(),
            stop: stop.clone(),
        },
    );
    if let Some(old) = replaced {
        // Leased to us again under a new token: the old lease is stale.
        old.stop.send_replace(Stop::Revoked);
    }
    tracing::info!(task = id, fencing_token = token, "leased");
    let job = run::Job {
        lease,
        progress,
        stop,
        stop_rx,
    };
    runners.spawn(run::run_task(agent.clone(), job));
}

/// Waits for the running tasks; on `Aborting`, stops them and releases
/// their leases first.
async fn finish(agent: &Arc<Agent>, runners: &mut JoinSet<()>) {
    let running = runners.len();
    if running > 0 && agent.phase() < Phase::Aborting {
        tracing::info!("not leasing any more; waiting for {running} running task(s) (signal again to stop them)");
    }
    let mut aborting = false;
    loop {
        if !aborting && agent.phase() == Phase::Aborting {
            aborting = true;
            let held = agent.held.lock().expect("held poisoned");
            tracing::info!("stopping {} task(s) and giving them back", held.len());
            for h in held.values() {
                h.stop.send_replace(Stop::Release);
            }
        }
        tokio::select! {
            r = runners.join_next() => match r {
                Some(r) => log_join(r),
                None => return,
            },
            _ = agent.reached(Phase::Aborting), if !aborting => {}
        }
    }
}

fn log_join(r: Result<(), tokio::task::JoinError>) {
    if let Err(e) = r {
        tracing::error!("a task runner failed: {e}");
    }
}

/// First SIGTERM or Ctrl-C: drain. Second: abort.
async fn watch_signals(agent: Arc<Agent>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for SIGTERM and SIGINT");
        return;
    };
    loop {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        let next = match agent.phase() {
            Phase::Running => Phase::Draining,
            _ => Phase::Aborting,
        };
        tracing::info!("{name}: {next:?}");
        agent.phase.send_replace(next);
    }
}
