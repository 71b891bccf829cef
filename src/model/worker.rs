//! Workers, leases and what a task's execution records. Pure data.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::spec::Resources;
use super::{limits, validate, ModelError};

/// A worker's standing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkerState {
    Active,
    /// Silent past its timeout: its leases were expired. A heartbeat or a
    /// lease makes it active again.
    Lost,
}

impl WorkerState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Active => "active",
            WorkerState::Lost => "lost",
        }
    }
}

/// One GPU as the worker last reported it. Utilisation is in per mille, so
/// that the replicated state holds no floating point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuUsage {
    pub index: u32,
    pub name: String,
    pub util_permille: u32,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
}

/// A machine's usage as last reported; what it cannot measure is None.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Usage {
    pub cpu_permille: Option<u32>,
    pub memory_used_bytes: Option<u64>,
    pub memory_total_bytes: Option<u64>,
    pub gpus: Vec<GpuUsage>,
    pub net_rx_bytes_per_s: Option<u64>,
    pub net_tx_bytes_per_s: Option<u64>,
    /// When the worker measured it (its clock).
    pub at_ms: u64,
}

/// An agent process on a machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worker {
    pub name: String,
    pub ip: String,
    pub pool: String,
    /// Empty: it takes work only from queues that select every cluster.
    pub cluster: String,
    /// Queue ids, in the worker's order.
    pub queues: Vec<u64>,
    pub capacity: Resources,
    /// Most tasks at once; 0: no limit but capacity.
    pub slots: u32,
    pub state: WorkerState,
    /// Tasks it holds leases on.
    pub tasks: BTreeSet<u64>,
    pub registered_ms: u64,
    pub last_seen_ms: u64,
    pub usage: Option<Usage>,
}

/// A registration as a worker sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Registration {
    pub name: String,
    pub ip: String,
    pub pool: String,
    pub cluster: String,
    pub queues: Vec<String>,
    pub capacity: Resources,
    pub slots: u32,
}

impl Registration {
    pub fn validate(&self) -> Result<(), ModelError> {
        validate::name("name", &self.name)?;
        validate::text("ip", &self.ip, limits::IP_MAX_BYTES)?;
        validate::name("pool", &self.pool)?;
        if !self.cluster.is_empty() {
            validate::name("cluster", &self.cluster)?;
        }
        if self.queues.is_empty() {
            return Err(ModelError::invalid(
                "queues",
                "a worker listens to at least one queue",
            ));
        }
        if self.queues.len() > limits::WORKER_QUEUES_MAX {
            return Err(ModelError::invalid(
                "queues",
                format!(
                    "{} queues; a worker listens to at most {}",
                    self.queues.len(),
                    limits::WORKER_QUEUES_MAX
                ),
            ));
        }
        for (i, q) in self.queues.iter().enumerate() {
            validate::name(&format!("queues[{i}]"), q)?;
        }
        super::spec::resources("capacity", &self.capacity)
    }
}

/// A task a worker says it holds, with the token of its lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldTask {
    pub id: u64,
    pub fencing_token: u64,
    pub iteration: Option<u64>,
}

/// The latest heartbeat of one worker, as a node passes it on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatReport {
    pub worker: String,
    pub tasks: Vec<HeldTask>,
    pub usage: Option<Usage>,
}

/// What a task's leases and run recorded. Boxed in [`super::Task`], so a
/// task that never ran costs one pointer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Execution {
    /// The worker of the current (or last) lease.
    pub worker: String,
    /// The current lease's token; every lease gets a larger one.
    pub fencing_token: u64,
    /// While leased or running: when the lease expires unless renewed.
    pub lease_expires_ms: Option<u64>,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    pub iteration: Option<u64>,
    pub exit_code: Option<i32>,
    /// The GPUs its worker gave the current (or last) run, from its start;
    /// none for a task that asked for none.
    pub gpus: Vec<AssignedGpu>,
}

/// A GPU that a worker gave a task for its run: the device's index on
/// the worker's machine (NVML's, in PCI bus order) and its UUID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignedGpu {
    pub index: u32,
    pub uuid: String,
}

impl AssignedGpu {
    /// Checks a start's GPU list: within the limits, no device twice.
    pub fn validate_list(gpus: &[AssignedGpu]) -> Result<(), ModelError> {
        if gpus.len() > limits::TASK_GPUS_MAX {
            return Err(ModelError::invalid(
                "gpus",
                format!(
                    "{} GPUs; a task runs on at most {}",
                    gpus.len(),
                    limits::TASK_GPUS_MAX
                ),
            ));
        }
        for (i, g) in gpus.iter().enumerate() {
            validate::text(
                &format!("gpus[{i}].uuid"),
                &g.uuid,
                limits::GPU_UUID_MAX_BYTES,
            )?;
            if gpus[..i].iter().any(|o| o.index == g.index) {
                return Err(ModelError::invalid(
                    "gpus",
                    format!("GPU {} is given twice", g.index),
                ));
            }
        }
        Ok(())
    }
}
