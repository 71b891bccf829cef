//! Every request message of `proto/laneq/v1`, decoded from any bytes as a
//! node decodes a call (prost), then checked as far as no server is needed.
//! The first byte picks the message ([`REQUESTS`], by index modulo their
//! number); the rest is its protobuf encoding.
//!
//! A message that decodes must encode to one that decodes to it again. A
//! write request becomes the model writes its handler makes (the
//! conversions of `src/api`, which is server-only, are mirrored here
//! field by field), each checked with `validate_write` as `RaftNode::write`
//! does, and a batch with `validate_writes` as the leader does. What
//! passes must survive the log's encoding (`codec`, with a batch's layout),
//! and is applied to a new `State`, whose invariants must hold.

use laneq::codec;
use laneq::model::spec::{ClusterSelector, Fairness, QueueSpec, DEPTH_DEFAULT, PRIORITY_DEFAULT};
use laneq::model::worker::{AssignedGpu, GpuUsage, HeartbeatReport, HeldTask, Registration, Usage};
use laneq::model::{
    validate, validate_write, validate_writes, Command, ModelError, MoveTo, NewTask, Op,
    ProjectSettings, Stamp, State, Write, Writes, DEFAULT_POOL,
};
use laneq::proto::v1 as pb;
use prost::Message;

/// What a request comes to: the writes its handler proposes (one, or a
/// batch), a refusal before any write, or a read.
enum Outcome {
    Writes(Vec<Write>, bool),
    Refused,
    Read,
}

/// A request message: decoded, then turned into what its handler does.
trait Request: Message + Default + Sized {
    fn outcome(self) -> Outcome {
        Outcome::Read
    }
}

macro_rules! requests {
    ($($t:ident),* $(,)?) => {
        /// Every request message, in the order of the first byte's choice.
        pub const REQUESTS: &[&str] = &[$(stringify!($t)),*];

        fn decode_nth(n: usize, bytes: &[u8]) {
            let mut i = 0;
            $(
                if n == i {
                    return check::<pb::$t>(bytes);
                }
                i += 1;
            )*
            let _ = i;
        }
    };
}

requests!(
    InitRequest,
    AddNodeRequest,
    RemoveNodeRequest,
    TransferLeaderRequest,
    MembershipRequest,
    NodeStatusRequest,
    GetQueueMetricsRequest,
    GetWorkerStatsRequest,
    GetWorkerActivityRequest,
    CreatePoolRequest,
    GetPoolRequest,
    ListPoolsRequest,
    AddClusterRequest,
    RemoveClusterRequest,
    CreateProjectRequest,
    GetProjectRequest,
    ListProjectsRequest,
    UpdateProjectRequest,
    GetConfigRequest,
    SetDefaultQueueRequest,
    CreateQueueRequest,
    GetQueueRequest,
    ListQueuesRequest,
    DrainQueueRequest,
    ActivateQueueRequest,
    UpdateQueueRequest,
    RenameQueueRequest,
    ClearQueueRequest,
    DeleteQueueRequest,
    SubmitTaskRequest,
    SubmitTasksRequest,
    SubmitEachRequest,
    GetTaskRequest,
    ListTasksRequest,
    CancelTaskRequest,
    DequeueTaskRequest,
    MoveTaskRequest,
    WatchQueueRequest,
    WatchQueuesRequest,
    WatchTaskRequest,
    WatchWorkersRequest,
    RegisterWorkerRequest,
    LeaseRequest,
    HeartbeatRequest,
    StartTaskRequest,
    ReportProgressRequest,
    CompleteTaskRequest,
    CompleteEachRequest,
    ReleaseTaskRequest,
    GetWorkerRequest,
    ListWorkersRequest,
    SetRetentionRequest,
    SetQueueRetentionRequest,
    RemoveWorkerRequest,
);

pub fn run(data: &[u8]) {
    let (choice, rest) = crate::split(data);
    decode_nth(usize::from(choice) % REQUESTS.len(), rest);
}

fn check<T: Request>(bytes: &[u8]) {
    let Ok(req) = T::decode(bytes) else {
        return;
    };
    // Compared as bytes, not with `==`: a double field may hold a NaN,
    // which is never equal to itself, though it survives the encoding.
    let bytes = req.encode_to_vec();
    let again = T::decode(bytes.as_slice()).expect("a re-encoded request decodes");
    assert_eq!(
        again.encode_to_vec(),
        bytes,
        "a request changed through its encoding"
    );
    if let Outcome::Writes(writes, batch) = req.outcome() {
        propose(writes, batch);
    }
}

/// What `RaftNode::write` (one) or `write_batch` (a batch) then does with
/// the writes: check their shape, and log what passes.
fn propose(writes: Vec<Write>, batch: bool) {
    let good: Vec<Write> = writes
        .into_iter()
        .filter(|w| validate_write(w).is_ok())
        .collect();
    let writes = match (batch, good.len()) {
        (_, 0) => return,
        (false, _) => Writes::One(good.into_iter().next().expect("one")),
        (true, _) => Writes::Batch(good),
    };
    if validate_writes(&writes).is_err() {
        return;
    }
    let cmd = Command {
        stamp: Stamp {
            now_ms: 1_000_000,
            seed: 7,
        },
        writes,
    };
    let logged: Command = codec::decode(&codec::encode(&cmd)).expect("a logged command decodes");
    assert_eq!(logged, cmd, "a command changed through the log's encoding");
    let mut state = State::new();
    state.apply_at(1, &cmd, &mut Vec::new());
    state.check_invariants();
}

/// The write of `op` under a request's meta; none without a key
/// (`api::write_of`).
fn write_of(meta: Option<pb::WriteMeta>, op: Op) -> Outcome {
    match one(meta, op) {
        Some(w) => Outcome::Writes(vec![w], false),
        None => Outcome::Refused,
    }
}

fn one(meta: Option<pb::WriteMeta>, op: Op) -> Option<Write> {
    let meta = meta.unwrap_or_default();
    if meta.idempotency_key.is_empty() {
        return None;
    }
    Some(Write {
        idempotency_key: meta.idempotency_key,
        actor: meta.actor,
        op,
    })
}

/// `api::convert::spec_from_proto`.
fn spec_from_proto(s: Option<pb::QueueSpec>) -> Result<QueueSpec, ModelError> {
    let s = s.unwrap_or_default();
    let clusters = if s.clusters.is_empty() || s.clusters == ["*"] {
        ClusterSelector::All
    } else {
        ClusterSelector::Only(s.clusters.into_iter().collect())
    };
    let priority = match s.priority {
        0 => PRIORITY_DEFAULT,
        p => u8::try_from(p).map_err(|_| ModelError::invalid("priority", "out of range"))?,
    };
    Ok(QueueSpec {
        clusters,
        run_concurrency: s.run_concurrency,
        action_concurrency: s.action_concurrency,
        depth: s.depth.unwrap_or(DEPTH_DEFAULT),
        priority,
        fairness: Fairness::parse("fairness", &s.fairness)?,
        quota: s.quota.into_iter().collect(),
        description: s.description,
    })
}

/// `api::convert::new_task`.
fn new_task(s: pb::TaskSpec) -> NewTask {
    NewTask {
        queue: s.queue,
        project: s.project,
        run: s.run,
        name: s.name,
        command: s.command,
        payload: s.payload,
        resources: s.resources.into_iter().collect(),
        max_attempts: s.max_attempts,
        labels: s.labels.into_iter().collect(),
    }
}

/// `api::convert::project_settings`.
fn project_settings(s: Option<pb::ProjectSettings>) -> ProjectSettings {
    let s = s.unwrap_or_default();
    ProjectSettings {
        default_queue: s.default_queue,
        allowed_queues: s.allowed_queues.into_iter().collect(),
        max_queued_per_run: s.max_queued_per_run,
        description: s.description,
    }
}

/// `api::convert::usage_from_proto`.
fn usage_from_proto(u: pb::Usage) -> Usage {
    let permille = |pct: f64| {
        (pct.is_finite() && (0.0..=100_000.0).contains(&pct)).then(|| (pct * 10.0).round() as u32)
    };
    Usage {
        cpu_permille: u.cpu_pct.and_then(permille),
        memory_used_bytes: u.memory_used_bytes,
        memory_total_bytes: u.memory_total_bytes,
        gpus: u
            .gpus
            .into_iter()
            .take(64)
            .map(|g| GpuUsage {
                index: g.index,
                name: g.name.chars().take(128).collect(),
                util_permille: permille(g.util_pct).unwrap_or(0),
                memory_used_bytes: g.memory_used_bytes,
                memory_total_bytes: g.memory_total_bytes,
            })
            .collect(),
        net_rx_bytes_per_s: u.net_rx_bytes_per_s,
        net_tx_bytes_per_s: u.net_tx_bytes_per_s,
        at_ms: u.at_ms,
    }
}

/// Reads and cluster calls: what a handler checks before it reads.
macro_rules! reads {
    ($($t:ident),* $(,)?) => { $(impl Request for pb::$t {})* };
}

reads!(
    InitRequest,
    AddNodeRequest,
    RemoveNodeRequest,
    TransferLeaderRequest,
    MembershipRequest,
    NodeStatusRequest,
    GetQueueMetricsRequest,
    GetWorkerStatsRequest,
    GetWorkerActivityRequest,
    ListPoolsRequest,
    ListProjectsRequest,
    GetConfigRequest,
    ListQueuesRequest,
    GetTaskRequest,
    ListTasksRequest,
    WatchQueueRequest,
    WatchQueuesRequest,
    WatchTaskRequest,
    WatchWorkersRequest,
    ListWorkersRequest,
);

/// Reads by name: the name's shape is checked first.
macro_rules! named_reads {
    ($($t:ident),* $(,)?) => {
        $(impl Request for pb::$t {
            fn outcome(self) -> Outcome {
                let _ = validate::name("name", &self.name);
                Outcome::Read
            }
        })*
    };
}

named_reads!(
    GetPoolRequest,
    GetProjectRequest,
    GetQueueRequest,
    GetWorkerRequest
);

/// Writes that are their request's meta and one operation, field for field.
macro_rules! writes {
    ($($t:ident => |$r:ident| $op:expr;)*) => {
        $(impl Request for pb::$t {
            fn outcome(mut self) -> Outcome {
                let meta = self.meta.take();
                let $r = self;
                write_of(meta, $op)
            }
        })*
    };
}

writes! {
    CreatePoolRequest => |r| Op::CreatePool { name: r.name, clusters: r.clusters };
    AddClusterRequest => |r| Op::AddCluster { pool: r.pool, cluster: r.cluster };
    RemoveClusterRequest => |r| Op::RemoveCluster { pool: r.pool, cluster: r.cluster };
    CreateProjectRequest => |r| Op::CreateProject {
        name: r.name,
        settings: project_settings(r.settings),
    };
    UpdateProjectRequest => |r| Op::UpdateProject {
        name: r.name,
        settings: project_settings(r.settings),
        expected_version: r.expected_version,
    };
    SetDefaultQueueRequest => |r| Op::SetDefaultQueue { queue: r.queue };
    DrainQueueRequest => |r| Op::DrainQueue { name: r.name };
    ActivateQueueRequest => |r| Op::ActivateQueue { name: r.name };
    RenameQueueRequest => |r| Op::RenameQueue { name: r.name, new_name: r.new_name };
    ClearQueueRequest => |r| Op::ClearQueue { name: r.name };
    DeleteQueueRequest => |r| Op::DeleteQueue { name: r.name, force: r.force };
    SubmitTasksRequest => |r| Op::SubmitTasks {
        tasks: r.tasks.into_iter().map(new_task).collect(),
    };
    CancelTaskRequest => |r| Op::CancelTask { id: r.id, reason: r.reason };
    DequeueTaskRequest => |r| Op::DequeueTask { id: r.id, reason: r.reason };
    StartTaskRequest => |r| Op::StartTaskOn {
        id: r.id,
        fencing_token: r.fencing_token,
        gpus: (r.gpus.into_iter())
            .map(|g| AssignedGpu { index: g.index, uuid: g.uuid })
            .collect(),
    };
    ReportProgressRequest => |r| Op::ReportProgress {
        id: r.id,
        fencing_token: r.fencing_token,
        iteration: r.iteration,
    };
    ReleaseTaskRequest => |r| Op::ReleaseTask {
        id: r.id,
        fencing_token: r.fencing_token,
        reason: r.reason,
    };
    SetRetentionRequest => |r| Op::SetRetention {
        age_ms: r.age_ms,
        count: r.count,
        lost_worker_ttl_ms: r.lost_worker_ttl_ms,
    };
    SetQueueRetentionRequest => |r| Op::SetQueueRetention {
        name: r.name,
        age_ms: retention_rule(r.age_ms),
        count: retention_rule(r.count),
    };
    RemoveWorkerRequest => |r| Op::RemoveWorker { name: r.name, force: r.force };
}

/// `api::queues::rule`.
fn retention_rule(r: Option<pb::RetentionRule>) -> Option<Option<u64>> {
    use pb::retention_rule::Rule;
    match r?.rule? {
        Rule::Default(_) => Some(None),
        Rule::Value(v) => Some(Some(v)),
    }
}

impl Request for pb::CreateQueueRequest {
    fn outcome(self) -> Outcome {
        let Ok(spec) = spec_from_proto(self.spec) else {
            return Outcome::Refused;
        };
        let pool = match self.pool.as_str() {
            "" => DEFAULT_POOL.to_string(),
            _ => self.pool,
        };
        let op = Op::CreateQueue {
            name: self.name,
            pool,
            spec,
        };
        write_of(self.meta, op)
    }
}

impl Request for pb::UpdateQueueRequest {
    fn outcome(self) -> Outcome {
        let Ok(spec) = spec_from_proto(self.spec) else {
            return Outcome::Refused;
        };
        let op = Op::UpdateQueue {
            name: self.name,
            pool: self.pool,
            spec,
            expected_version: self.expected_version,
        };
        write_of(self.meta, op)
    }
}

/// `api::tasks::submit_write`.
fn submit_write(req: pb::SubmitTaskRequest) -> Option<Write> {
    let tasks = vec![new_task(req.task?)];
    one(req.meta, Op::SubmitTasks { tasks })
}

impl Request for pb::SubmitTaskRequest {
    fn outcome(self) -> Outcome {
        match submit_write(self) {
            Some(w) => Outcome::Writes(vec![w], false),
            None => Outcome::Refused,
        }
    }
}

impl Request for pb::SubmitEachRequest {
    fn outcome(self) -> Outcome {
        if self.submits.len() > laneq::model::limits::BATCH_MAX_TASKS {
            return Outcome::Refused;
        }
        let writes = self.submits.into_iter().filter_map(submit_write).collect();
        Outcome::Writes(writes, true)
    }
}

impl Request for pb::MoveTaskRequest {
    fn outcome(self) -> Outcome {
        use pb::move_task_request::To;
        let to = match self.to {
            None | Some(To::Position(0)) => return Outcome::Refused,
            Some(To::Front(_)) => MoveTo::Front,
            Some(To::Back(_)) => MoveTo::Back,
            Some(To::Forward(n)) => MoveTo::Forward(n),
            Some(To::Backward(n)) => MoveTo::Backward(n),
            Some(To::Position(p)) => MoveTo::Position(p - 1),
            Some(To::Before(id)) => MoveTo::Before(id),
            Some(To::After(id)) => MoveTo::After(id),
            Some(To::Queue(q)) => MoveTo::Queue(q),
        };
        write_of(self.meta, Op::MoveTask { id: self.id, to })
    }
}

impl Request for pb::RegisterWorkerRequest {
    fn outcome(self) -> Outcome {
        let registration = Registration {
            name: self.name,
            ip: self.ip,
            pool: match self.pool.as_str() {
                "" => DEFAULT_POOL.to_string(),
                _ => self.pool,
            },
            cluster: self.cluster,
            queues: self.queues,
            capacity: self.capacity.into_iter().collect(),
            slots: self.slots,
        };
        write_of(self.meta, Op::RegisterWorker(registration))
    }
}

impl Request for pb::LeaseRequest {
    fn outcome(self) -> Outcome {
        // A long poll writes its n-th lease under the n-th derived key.
        let Some(meta) = self.meta.filter(|m| !m.idempotency_key.is_empty()) else {
            return Outcome::Refused;
        };
        let key = laneq::wire::nth_key(&meta.idempotency_key, u64::from(self.max_tasks % 3));
        let op = Op::LeaseTasks {
            worker: self.worker,
            max_tasks: self.max_tasks,
            ttl_ms: 10_000,
        };
        let meta = pb::WriteMeta {
            idempotency_key: key,
            actor: meta.actor,
        };
        write_of(Some(meta), op)
    }
}

impl Request for pb::HeartbeatRequest {
    fn outcome(self) -> Outcome {
        let report = HeartbeatReport {
            worker: self.worker,
            tasks: (self.tasks.iter())
                .map(|h| HeldTask {
                    id: h.id,
                    fencing_token: h.fencing_token,
                    iteration: h.iteration,
                })
                .collect(),
            usage: self.usage.map(usage_from_proto),
        };
        if report.validate().is_err() {
            return Outcome::Refused;
        }
        // A node batches the reports it took into one internal write.
        let op = Op::WorkerHeartbeats {
            reports: vec![report],
            ttl_ms: 10_000,
        };
        write_of(Some(internal_meta()), op)
    }
}

/// The meta of a write a node makes by itself.
fn internal_meta() -> pb::WriteMeta {
    pb::WriteMeta {
        idempotency_key: "node-1-heartbeats-1".into(),
        actor: String::new(),
    }
}

/// `api::workers::complete_op`.
fn complete_op(req: pb::CompleteTaskRequest) -> (Option<pb::WriteMeta>, Op) {
    let op = Op::CompleteTask {
        id: req.id,
        fencing_token: req.fencing_token,
        succeeded: req.succeeded,
        exit_code: req.exit_code,
        condition: req.condition,
    };
    (req.meta, op)
}

impl Request for pb::CompleteTaskRequest {
    fn outcome(self) -> Outcome {
        let (meta, op) = complete_op(self);
        write_of(meta, op)
    }
}

impl Request for pb::CompleteEachRequest {
    fn outcome(self) -> Outcome {
        if self.completes.len() > laneq::model::limits::BATCH_MAX_TASKS {
            return Outcome::Refused;
        }
        let writes = (self.completes.into_iter())
            .filter_map(|c| {
                let (meta, op) = complete_op(c);
                one(meta, op)
            })
            .collect();
        Outcome::Writes(writes, true)
    }
}
