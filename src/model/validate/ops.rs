//! Shape checks of whole writes: [`validate_write`], the entry point, and one
//! function per operation (or per group of operations with the same fields),
//! built from the field checks of the parent module.
//!
//! **Architecture Invariant:** no check here looks at the state. The API runs
//! them before proposing and apply runs them again; the order of the checks
//! decides which message a write with several faults gets, so it stays put.

use crate::model::limits::{self, CLUSTERS_PER_POOL_MAX};
use crate::model::spec::{self, QueueSpec};
use crate::model::validate;
use crate::model::worker::{AssignedGpu, HeartbeatReport};
use crate::model::{ModelError, MoveTo, NewTask, Op, ProjectSettings, Write, Writes};

/// Checks a write's shape without looking at any state. Shared by the API
/// (before proposing) and by apply.
pub fn validate_write(write: &Write) -> Result<(), ModelError> {
    validate::idempotency_key(&write.idempotency_key)?;
    validate::text("actor", &write.actor, limits::ACTOR_MAX_BYTES)?;
    match &write.op {
        Op::CreateQueue { name, pool, spec } => create_queue(name, pool, spec),
        Op::CreatePool { name, clusters } => create_pool(name, clusters),
        Op::DrainQueue { name }
        | Op::ActivateQueue { name }
        | Op::ClearQueue { name }
        | Op::DeleteQueue { name, .. } => validate::name("name", name),
        Op::RenameQueue { name, new_name } => rename_queue(name, new_name),
        Op::UpdateQueue {
            name, pool, spec, ..
        } => update_queue(name, pool.as_deref(), spec),
        Op::AddCluster { pool, cluster } | Op::RemoveCluster { pool, cluster } => {
            pool_cluster(pool, cluster)
        }
        Op::SubmitTasks { tasks } => submit_tasks(tasks),
        Op::CreateProject { name, settings } | Op::UpdateProject { name, settings, .. } => {
            project(name, settings)
        }
        Op::SetDefaultQueue { queue } => validate::name("queue", queue),
        Op::CancelTask { reason, .. } | Op::DequeueTask { reason, .. } => {
            validate::text("reason", reason, limits::REASON_MAX_BYTES)
        }
        Op::MoveTask { to, .. } => move_task(to),
        Op::RegisterWorker(r) => r.validate(),
        Op::LeaseTasks {
            worker,
            max_tasks,
            ttl_ms,
        } => lease_tasks(worker, *max_tasks, *ttl_ms),
        Op::WorkerHeartbeats { reports, ttl_ms } => heartbeats(reports, *ttl_ms),
        Op::StartTask { .. } | Op::ReportProgress { .. } => Ok(()),
        Op::StartTaskOn { gpus, .. } => AssignedGpu::validate_list(gpus),
        Op::CompleteTask { condition, .. } => {
            validate::text("condition", condition, limits::REASON_MAX_BYTES)
        }
        Op::ReleaseTask { reason, .. } => {
            validate::text("reason", reason, limits::REASON_MAX_BYTES)
        }
        Op::ExpireLeases { worker_timeout_ms } => ttl("worker_timeout_ms", *worker_timeout_ms),
        Op::BatchSlot => Err(ModelError::invalid(
            "op",
            "index 25 is a batch's place on the log, not an operation",
        )),
        Op::CreateToken {
            name,
            role,
            projects,
            pools,
            secret_sha256,
            ttl_ms,
            ..
        } => create_token(name, *role, projects, pools, secret_sha256, *ttl_ms),
        Op::RevokeToken { name } | Op::RemoveWorker { name, .. } => validate::name("name", name),
        Op::SetRetention {
            age_ms,
            count,
            lost_worker_ttl_ms,
        } => set_retention(*age_ms, *count, *lost_worker_ttl_ms),
        Op::SetQueueRetention {
            name,
            age_ms,
            count,
        } => set_queue_retention(name, *age_ms, *count),
        Op::CollectExpired => Ok(()),
    }
}

/// The organisation's retention: at least one rule, ages within
/// [`limits::RETENTION_AGE_MAX_MS`] (0 turns a rule off).
fn set_retention(
    age_ms: Option<u64>,
    count: Option<u64>,
    lost_worker_ttl_ms: Option<u64>,
) -> Result<(), ModelError> {
    if age_ms.is_none() && count.is_none() && lost_worker_ttl_ms.is_none() {
        return Err(nothing_to_change());
    }
    for (field, ms) in [
        ("age_ms", age_ms),
        ("lost_worker_ttl_ms", lost_worker_ttl_ms),
    ] {
        if ms.is_some_and(|ms| ms > limits::RETENTION_AGE_MAX_MS) {
            return Err(ModelError::invalid(
                field,
                format!(
                    "{} ms is over the limit of {} ms (ten years); 0 turns the rule off",
                    ms.unwrap_or_default(),
                    limits::RETENTION_AGE_MAX_MS
                ),
            ));
        }
    }
    Ok(())
}

/// A queue's own rules: its name, and at least one rule changed.
fn set_queue_retention(
    name: &str,
    age_ms: Option<Option<u64>>,
    count: Option<Option<u64>>,
) -> Result<(), ModelError> {
    validate::name("name", name)?;
    // `Some(None)`, back to the organisation's rule, is a change.
    let own = |rule: Option<Option<u64>>| rule.map(|r| r.unwrap_or(0));
    set_retention(own(age_ms), own(count), None)
}

fn nothing_to_change() -> ModelError {
    ModelError::invalid(
        "retention",
        "names no rule to change; give an age, a count or a lost-worker TTL",
    )
}

/// A token's name, its scope for its role, a digest of the right size and
/// a lifetime within [`limits::TOKEN_TTL_MAX_MS`].
fn create_token(
    name: &str,
    role: crate::model::token::Role,
    projects: &std::collections::BTreeSet<String>,
    pools: &std::collections::BTreeSet<String>,
    secret_sha256: &[u8],
    ttl_ms: u64,
) -> Result<(), ModelError> {
    validate::name("name", name)?;
    for (field, set) in [("projects", projects), ("pools", pools)] {
        if set.len() > limits::TOKEN_SCOPE_MAX {
            return Err(ModelError::invalid(
                field,
                format!(
                    "{} given; a token is bound to at most {}",
                    set.len(),
                    limits::TOKEN_SCOPE_MAX
                ),
            ));
        }
        set.iter().try_for_each(|n| validate::name(field, n))?;
    }
    crate::model::token::scope_fits_role(role, projects, pools)
        .map_err(|(field, why)| ModelError::invalid(field, why))?;
    if secret_sha256.len() != limits::SHA256_BYTES {
        return Err(ModelError::invalid(
            "secret_sha256",
            format!(
                "is {} bytes; a SHA-256 digest is {}",
                secret_sha256.len(),
                limits::SHA256_BYTES
            ),
        ));
    }
    if ttl_ms > limits::TOKEN_TTL_MAX_MS {
        return Err(ModelError::invalid(
            "ttl_ms",
            format!(
                "{ttl_ms} ms is over the limit of {} ms (ten years); 0 means it never expires",
                limits::TOKEN_TTL_MAX_MS
            ),
        ));
    }
    Ok(())
}

fn create_queue(name: &str, pool: &str, spec: &QueueSpec) -> Result<(), ModelError> {
    validate::name("name", name)?;
    validate::name("pool", pool)?;
    spec.validate()
}

fn create_pool(name: &str, clusters: &[String]) -> Result<(), ModelError> {
    validate::name("name", name)?;
    if clusters.len() > CLUSTERS_PER_POOL_MAX {
        return Err(ModelError::invalid(
            "clusters",
            format!(
                "{} clusters; a pool holds at most {CLUSTERS_PER_POOL_MAX}",
                clusters.len()
            ),
        ));
    }
    clusters
        .iter()
        .enumerate()
        .try_for_each(|(i, c)| validate::name(&format!("clusters[{i}]"), c))
}

fn rename_queue(name: &str, new_name: &str) -> Result<(), ModelError> {
    validate::name("name", name)?;
    validate::name("new_name", new_name)
}

/// `pool`, if given, must still name the queue's pool; apply checks that.
fn update_queue(name: &str, pool: Option<&str>, spec: &QueueSpec) -> Result<(), ModelError> {
    validate::name("name", name)?;
    if let Some(pool) = pool {
        validate::name("pool", pool)?;
    }
    spec.validate()
}

/// Adding a cluster to a pool, or removing one from it.
fn pool_cluster(pool: &str, cluster: &str) -> Result<(), ModelError> {
    validate::name("pool", pool)?;
    validate::name("cluster", cluster)
}

/// A batch of 1 to [`limits::BATCH_MAX_TASKS`] tasks. A task's fault is
/// named by its index (`tasks[i].field`) only in a batch of several.
fn submit_tasks(tasks: &[NewTask]) -> Result<(), ModelError> {
    if tasks.is_empty() {
        return Err(ModelError::invalid(
            "tasks",
            "a submit needs at least one task",
        ));
    }
    if tasks.len() > limits::BATCH_MAX_TASKS {
        return Err(ModelError::invalid(
            "tasks",
            format!(
                "{} tasks; a batch holds at most {}",
                tasks.len(),
                limits::BATCH_MAX_TASKS
            ),
        ));
    }
    let batch = tasks.len() > 1;
    tasks.iter().enumerate().try_for_each(|(i, t)| {
        t.validate().map_err(|e| match batch {
            true => e.within(&format!("tasks[{i}]")),
            false => e,
        })
    })
}

/// Creating a project or updating its settings.
fn project(name: &str, settings: &ProjectSettings) -> Result<(), ModelError> {
    validate::name("name", name)?;
    settings.validate()
}

fn move_task(to: &MoveTo) -> Result<(), ModelError> {
    match to {
        MoveTo::Queue(q) => validate::name("queue", q),
        _ => Ok(()),
    }
}

fn lease_tasks(worker: &str, max_tasks: u32, ttl_ms: u64) -> Result<(), ModelError> {
    validate::name("worker", worker)?;
    if !(1..=limits::LEASE_MAX_TASKS).contains(&max_tasks) {
        return Err(ModelError::invalid(
            "max_tasks",
            format!(
                "{max_tasks} is out of range; use 1 to {}",
                limits::LEASE_MAX_TASKS
            ),
        ));
    }
    ttl("ttl_ms", ttl_ms)
}

fn heartbeats(reports: &[HeartbeatReport], ttl_ms: u64) -> Result<(), ModelError> {
    ttl("ttl_ms", ttl_ms)?;
    if reports.len() > limits::HEARTBEAT_BATCH_MAX {
        return Err(ModelError::invalid(
            "reports",
            format!(
                "{} reports; the limit is {}",
                reports.len(),
                limits::HEARTBEAT_BATCH_MAX
            ),
        ));
    }
    reports.iter().try_for_each(HeartbeatReport::validate)
}

impl HeartbeatReport {
    /// Checks one worker's report: its name and how many tasks it holds.
    /// The node that takes a heartbeat checks it so, and apply again.
    pub fn validate(&self) -> Result<(), ModelError> {
        validate::name("worker", &self.worker)?;
        if self.tasks.len() > limits::HEARTBEAT_TASKS_MAX {
            return Err(ModelError::invalid(
                "tasks",
                format!(
                    "{} tasks; the limit is {}",
                    self.tasks.len(),
                    limits::HEARTBEAT_TASKS_MAX
                ),
            ));
        }
        Ok(())
    }
}

/// Checks what one entry carries: one write's shape, or a batch's size (each
/// write of a batch is validated as it applies: one malformed write is
/// refused alone).
pub fn validate_writes(writes: &Writes) -> Result<(), ModelError> {
    let batch = match writes {
        Writes::One(write) => return validate_write(write),
        Writes::Batch(batch) => batch,
    };
    if batch.len() > limits::COALESCED_WRITES_MAX {
        return Err(ModelError::invalid(
            "writes",
            format!(
                "{} writes; one entry coalesces at most {}",
                batch.len(),
                limits::COALESCED_WRITES_MAX
            ),
        ));
    }
    Ok(())
}

/// A lease time or worker timeout, in ms.
fn ttl(field: &str, ms: u64) -> Result<(), ModelError> {
    if !(limits::TTL_MIN_MS..=limits::TTL_MAX_MS).contains(&ms) {
        return Err(ModelError::invalid(
            field,
            format!(
                "{ms} ms is out of range; use {} to {} ms",
                limits::TTL_MIN_MS,
                limits::TTL_MAX_MS
            ),
        ));
    }
    Ok(())
}

impl NewTask {
    /// Checks the shape of every field (not whether the queue or project exist).
    pub fn validate(&self) -> Result<(), ModelError> {
        if !self.queue.is_empty() {
            validate::name("queue", &self.queue)?;
        }
        if !self.project.is_empty() {
            validate::name("project", &self.project)?;
        }
        if !self.run.is_empty() {
            validate::name("run", &self.run)?;
        }
        validate::text("name", &self.name, limits::TASK_NAME_MAX_BYTES)?;
        validate::command(&self.command)?;
        validate::payload(&self.payload)?;
        spec::resources("resources", &self.resources)?;
        if self.max_attempts > limits::MAX_ATTEMPTS_MAX {
            return Err(ModelError::invalid(
                "max_attempts",
                format!(
                    "{} is out of range; use 1 to {} (0 for the default, {})",
                    self.max_attempts,
                    limits::MAX_ATTEMPTS_MAX,
                    limits::MAX_ATTEMPTS_DEFAULT
                ),
            ));
        }
        validate::labels(&self.labels)
    }
}

impl ProjectSettings {
    pub fn validate(&self) -> Result<(), ModelError> {
        if !self.default_queue.is_empty() {
            validate::name("default_queue", &self.default_queue)?;
        }
        if self.allowed_queues.len() > limits::ALLOWED_QUEUES_MAX {
            return Err(ModelError::invalid(
                "allowed_queues",
                format!(
                    "{} queues; the limit is {}",
                    self.allowed_queues.len(),
                    limits::ALLOWED_QUEUES_MAX
                ),
            ));
        }
        for q in &self.allowed_queues {
            validate::name("allowed_queues", q)?;
        }
        validate::text(
            "description",
            &self.description,
            spec::DESCRIPTION_MAX_BYTES,
        )
    }
}
