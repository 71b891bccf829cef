//! Writes the seed corpus of every fuzz target from real values: encoded
//! requests, the records and log commands of a short scripted history, a
//! snapshot blob of them, and the local cluster's node configs.
//! `scripts/fuzz --seeds` runs it (built without the fuzzing flags):
//!
//!     seeds DIR        (DIR/<target>/<name> for each seed)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use laneq::codec::{self, FORMAT_V2};
use laneq::model::spec::QueueSpec;
use laneq::model::worker::{AssignedGpu, HeartbeatReport, HeldTask, Registration};
use laneq::model::{Command, Key, NewTask, Op, Stamp, State, Write, Writes};
use laneq::proto::v1 as pb;
use laneq::records::{SnapshotWriter, Table, TASK_FORMAT};
use laneq_fuzz::records::{KINDS, MAGIC};
use laneq_fuzz::requests::REQUESTS;
use prost::Message;

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).expect("usage: seeds DIR"));
    requests(&dir.join("requests"));
    let (log, state, changed) = history();
    model_apply(&dir.join("model_apply"), &log);
    records(&dir.join("records"), &log, &state, &changed);
    config(&dir.join("config"));
}

fn put(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("a corpus dir");
    std::fs::write(dir.join(name), bytes).expect("a seed written");
}

fn meta(key: &str) -> Option<pb::WriteMeta> {
    Some(pb::WriteMeta {
        idempotency_key: key.into(),
        actor: "alice".into(),
    })
}

/// A request's seed, in the file `name`: the message's name, or that name
/// and `-` and what the seed is about.
fn request<T: Message>(dir: &Path, name: &str, msg: T) {
    let kind = name.split('-').next().expect("a name");
    let i = REQUESTS.iter().position(|r| *r == kind).expect(name);
    let mut bytes = vec![i as u8];
    bytes.extend(msg.encode_to_vec());
    put(dir, name, &bytes);
}

fn task_spec(queue: &str) -> pb::TaskSpec {
    pb::TaskSpec {
        queue: queue.into(),
        project: "ml".into(),
        run: "r1".into(),
        name: "train".into(),
        command: vec!["python".into(), "train.py".into()],
        payload: b"{\"lr\": 0.1}".to_vec(),
        resources: [("gpu".to_string(), 1u64), ("cpu".to_string(), 4000)].into(),
        max_attempts: 3,
        labels: [("team".to_string(), "vision".to_string())].into(),
    }
}

fn requests(dir: &Path) {
    request(
        dir,
        "CreatePoolRequest",
        pb::CreatePoolRequest {
            meta: meta("k1"),
            name: "gpu".into(),
            clusters: vec!["a100".into(), "h100".into()],
        },
    );
    let spec = pb::QueueSpec {
        clusters: vec!["a100".into()],
        run_concurrency: 2,
        action_concurrency: 8,
        depth: Some(100),
        priority: 80,
        fairness: "shuffle_interleave".into(),
        quota: [("gpu".to_string(), 8u64)].into(),
        description: "training".into(),
    };
    request(
        dir,
        "CreateQueueRequest",
        pb::CreateQueueRequest {
            meta: meta("k2"),
            name: "train".into(),
            pool: "gpu".into(),
            spec: Some(spec.clone()),
        },
    );
    request(
        dir,
        "UpdateQueueRequest",
        pb::UpdateQueueRequest {
            meta: meta("k3"),
            name: "train".into(),
            spec: Some(spec),
            expected_version: 1,
            pool: Some("gpu".into()),
        },
    );
    request(
        dir,
        "CreateProjectRequest",
        pb::CreateProjectRequest {
            meta: meta("k4"),
            name: "ml".into(),
            settings: Some(pb::ProjectSettings {
                default_queue: "train".into(),
                allowed_queues: vec!["train".into()],
                max_queued_per_run: 10,
                description: "models".into(),
            }),
        },
    );
    request(
        dir,
        "SubmitTaskRequest",
        pb::SubmitTaskRequest {
            meta: meta("k5"),
            task: Some(task_spec("train")),
        },
    );
    request(
        dir,
        "SubmitEachRequest",
        pb::SubmitEachRequest {
            submits: (0..3)
                .map(|i| pb::SubmitTaskRequest {
                    meta: meta(&format!("e{i}")),
                    task: Some(task_spec("")),
                })
                .collect(),
        },
    );
    request(
        dir,
        "MoveTaskRequest",
        pb::MoveTaskRequest {
            meta: meta("k6"),
            id: 1,
            to: Some(pb::move_task_request::To::Position(2)),
        },
    );
    request(
        dir,
        "RegisterWorkerRequest",
        pb::RegisterWorkerRequest {
            meta: meta("k7"),
            name: "w1".into(),
            ip: "10.0.0.7".into(),
            pool: "gpu".into(),
            cluster: "a100".into(),
            queues: vec!["train".into()],
            capacity: [("gpu".to_string(), 8u64)].into(),
            slots: 4,
        },
    );
    request(
        dir,
        "LeaseRequest",
        pb::LeaseRequest {
            meta: meta("k8"),
            worker: "w1".into(),
            max_tasks: 2,
            wait_ms: 1_000,
        },
    );
    request(
        dir,
        "HeartbeatRequest",
        pb::HeartbeatRequest {
            worker: "w1".into(),
            tasks: vec![pb::HeldTask {
                id: 1,
                fencing_token: 1,
                iteration: Some(10),
            }],
            usage: Some(pb::Usage {
                cpu_pct: Some(55.5),
                memory_used_bytes: Some(1 << 30),
                memory_total_bytes: Some(64 << 30),
                gpus: vec![pb::GpuUsage {
                    index: 0,
                    name: "H100".into(),
                    util_pct: 97.0,
                    memory_used_bytes: 70 << 30,
                    memory_total_bytes: 80 << 30,
                }],
                net_rx_bytes_per_s: Some(1_000),
                net_tx_bytes_per_s: None,
                at_ms: 1_700_000_000_000,
            }),
        },
    );
    // Not a number where a usage figure goes: the node drops it, and its
    // encoding round-trips though it never equals itself.
    request(
        dir,
        "HeartbeatRequest-nan",
        pb::HeartbeatRequest {
            worker: "w1".into(),
            tasks: Vec::new(),
            usage: Some(pb::Usage {
                cpu_pct: Some(f64::NAN),
                gpus: vec![pb::GpuUsage {
                    index: 0,
                    name: "H100".into(),
                    util_pct: f64::NAN,
                    memory_used_bytes: 1,
                    memory_total_bytes: 2,
                }],
                at_ms: 1_700_000_000_000,
                ..Default::default()
            }),
        },
    );
    request(
        dir,
        "CompleteEachRequest",
        pb::CompleteEachRequest {
            completes: (1..3)
                .map(|id| pb::CompleteTaskRequest {
                    meta: meta(&format!("c{id}")),
                    id,
                    fencing_token: id,
                    succeeded: id == 1,
                    exit_code: Some(id as i32 - 1),
                    condition: String::new(),
                })
                .collect(),
        },
    );
    request(
        dir,
        "ListTasksRequest",
        pb::ListTasksRequest {
            queue: "train".into(),
            state: "queued".into(),
            project: "ml".into(),
            run: String::new(),
            page_size: 50,
            page_token: "train:50".into(),
            consistency: 1,
        },
    );
    request(
        dir,
        "GetQueueMetricsRequest",
        pb::GetQueueMetricsRequest {
            queues: vec!["train".into()],
            from_ms: 1,
            to_ms: 3_600_000,
            interval_ms: 60_000,
            consistency: 0,
        },
    );
    request(
        dir,
        "AddNodeRequest",
        pb::AddNodeRequest {
            id: 4,
            addr: "127.0.0.1:7104".into(),
        },
    );
    retention_requests(dir);
}

/// The retention's requests: the organisation's, a queue's, a removal.
fn retention_requests(dir: &Path) {
    request(
        dir,
        "SetRetentionRequest",
        pb::SetRetentionRequest {
            meta: meta("k-retention"),
            age_ms: Some(7 * 86_400_000),
            count: Some(100_000),
            lost_worker_ttl_ms: None,
        },
    );
    use pb::retention_rule::Rule;
    request(
        dir,
        "SetQueueRetentionRequest",
        pb::SetQueueRetentionRequest {
            meta: meta("k-queue-retention"),
            name: "train".into(),
            age_ms: Some(pb::RetentionRule {
                rule: Some(Rule::Value(2 * 86_400_000)),
            }),
            count: Some(pb::RetentionRule {
                rule: Some(Rule::Default(true)),
            }),
        },
    );
    request(
        dir,
        "RemoveWorkerRequest",
        pb::RemoveWorkerRequest {
            meta: meta("k-remove"),
            name: "gpu-7".into(),
            force: true,
        },
    );
}

/// A short scripted history: a pool, a queue, a project, a worker, tasks
/// submitted, leased, started, reported, completed and released, a batch,
/// and an expiry. Returns its log, the state and the keys it changed.
fn history() -> (Vec<Command>, State, Vec<Key>) {
    let task = |queue: &str| NewTask {
        queue: queue.into(),
        project: "pr1".into(),
        run: "r1".into(),
        name: "t".into(),
        command: vec!["run".into()],
        payload: vec![1, 2, 3],
        resources: [("gpu".to_string(), 1u64)].into(),
        max_attempts: 2,
        labels: BTreeMap::new(),
    };
    let ops = vec![
        Op::CreatePool {
            name: "p1".into(),
            clusters: vec!["c1".into()],
        },
        Op::CreateQueue {
            name: "q1".into(),
            pool: "p1".into(),
            spec: QueueSpec::default(),
        },
        Op::CreateProject {
            name: "pr1".into(),
            settings: Default::default(),
        },
        Op::RegisterWorker(Registration {
            name: "w1".into(),
            ip: "10.0.0.1".into(),
            pool: "p1".into(),
            cluster: "c1".into(),
            queues: vec!["q1".into()],
            capacity: [("gpu".to_string(), 4u64)].into(),
            slots: 2,
        }),
        Op::SubmitTasks {
            tasks: vec![task("q1"), task("q1"), task("q1")],
        },
        Op::LeaseTasks {
            worker: "w1".into(),
            max_tasks: 2,
            ttl_ms: 10_000,
        },
        Op::StartTaskOn {
            id: 1,
            fencing_token: 1,
            gpus: vec![AssignedGpu {
                index: 0,
                uuid: "GPU-0".into(),
            }],
        },
        Op::ReportProgress {
            id: 1,
            fencing_token: 1,
            iteration: 5,
        },
        Op::WorkerHeartbeats {
            reports: vec![HeartbeatReport {
                worker: "w1".into(),
                tasks: vec![HeldTask {
                    id: 1,
                    fencing_token: 1,
                    iteration: Some(6),
                }],
                usage: None,
            }],
            ttl_ms: 10_000,
        },
        Op::CompleteTask {
            id: 1,
            fencing_token: 1,
            succeeded: true,
            exit_code: Some(0),
            condition: String::new(),
        },
        Op::ReleaseTask {
            id: 2,
            fencing_token: 2,
            reason: "preempted".into(),
        },
        Op::MoveTask {
            id: 3,
            to: laneq::model::MoveTo::Front,
        },
        Op::ExpireLeases {
            worker_timeout_ms: 60_000,
        },
        Op::DrainQueue { name: "q1".into() },
    ];
    let mut state = State::new();
    let mut changed = Vec::new();
    let mut log = Vec::new();
    let write = |i: usize, op| Write {
        idempotency_key: format!("k{i}"),
        actor: "alice".into(),
        op,
    };
    for (i, op) in ops.into_iter().enumerate() {
        let cmd = Command {
            stamp: Stamp {
                now_ms: 1_000_000 + 15_000 * i as u64,
                seed: i as u64,
            },
            writes: Writes::One(write(i, op)),
        };
        let r = state.apply_at(i as u64 + 1, &cmd, &mut changed);
        assert!(r.result.is_ok(), "scripted command {i} ({cmd}): {r:?}");
        log.push(cmd);
    }
    let batch = Command {
        stamp: Stamp {
            now_ms: 2_000_000,
            seed: 99,
        },
        writes: Writes::Batch(vec![
            write(100, Op::ActivateQueue { name: "q1".into() }),
            write(
                101,
                Op::SubmitTasks {
                    tasks: vec![task("q1")],
                },
            ),
            write(
                102,
                Op::CancelTask {
                    id: 3,
                    reason: "no longer needed".into(),
                },
            ),
        ]),
    };
    state.apply_at(100, &batch, &mut changed);
    log.push(batch);
    (log, state, changed)
}

fn model_apply(dir: &Path, log: &[Command]) {
    // Raw mode: the scripted log as length-prefixed format-1 commands.
    let mut raw = vec![1u8];
    for cmd in log {
        let bytes = codec::encode(cmd);
        raw.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
        raw.extend_from_slice(&bytes);
    }
    put(dir, "raw-scripted-log", &raw);
    // Structured mode: bytes the generator reads as choices.
    for (name, len, step) in [("structured-a", 512, 7u8), ("structured-b", 1024, 13)] {
        let mut bytes = vec![0u8];
        let mut x = 1u8;
        for _ in 0..len {
            x = x.wrapping_mul(31).wrapping_add(step);
            bytes.push(x);
        }
        put(dir, name, &bytes);
    }
}

fn kind(name: &str) -> u8 {
    KINDS.iter().position(|k| *k == name).expect(name) as u8
}

fn record(dir: &Path, name: &str, bytes: Vec<u8>) {
    let mut seed = vec![kind(name)];
    seed.extend(bytes);
    put(dir, name, &seed);
}

fn records(dir: &Path, log: &[Command], state: &State, changed: &[Key]) {
    let mut snapshot = SnapshotWriter::new(b"header");
    for key in changed {
        match key {
            Key::Task(id) => {
                let t = codec::encode_as(TASK_FORMAT, state.task(*id).expect("task"));
                snapshot.record(Table::Tasks, &id.to_be_bytes(), &t);
                record(dir, "task", t);
            }
            Key::Queue(id) => {
                let q = codec::encode_as(FORMAT_V2, state.queue_by_id(*id).expect("queue"));
                snapshot.record(Table::Queues, &id.to_be_bytes(), &q);
                record(dir, "queue", q);
            }
            Key::Pool(name) => {
                let p = codec::encode(state.pool(name).expect("pool"));
                snapshot.record(Table::Pools, name.as_bytes(), &p);
                record(dir, "pool", p);
            }
            Key::Project(name) => {
                let p = codec::encode(state.project(name).expect("project"));
                snapshot.record(Table::Projects, name.as_bytes(), &p);
                record(dir, "project", p);
            }
            Key::Worker(name) => {
                let w = codec::encode(state.worker(name).expect("worker"));
                snapshot.record(Table::Workers, name.as_bytes(), &w);
                record(dir, "worker", w);
            }
            Key::Idempotency(_, k) => {
                if let Some(r) = state.idempotency(k) {
                    let r = codec::encode(r);
                    snapshot.record(Table::Idempotency, k.as_bytes(), &r);
                    record(dir, "idempotency", r);
                }
            }
            Key::Body(id, body) => {
                let b = codec::encode(body);
                snapshot.record(Table::Bodies, &id.to_be_bytes(), &b);
                record(dir, "body", b);
            }
            Key::HistoryRow(row) => record(dir, "point", codec::encode(&row.point)),
            _ => {}
        }
    }
    let meta = codec::encode(&state.meta());
    snapshot.record(Table::Meta, b"model", &meta);
    record(dir, "meta", meta);
    for (entity, track) in state.history().tracks() {
        let t = codec::encode(&(entity.clone(), track.clone()));
        snapshot.record(Table::History, b"t", &t);
        record(dir, "track", t);
    }
    for (id, counters) in state.all_queue_counters() {
        let c = codec::encode(&(id, counters.clone()));
        snapshot.record(Table::History, b"c", &c);
        record(dir, "counters", c);
    }
    let last = log.last().expect("a log");
    record(dir, "command", codec::encode(last));
    if let Writes::Batch(writes) = &last.writes {
        record(dir, "write", codec::encode(&writes[1]));
    }
    let mut replay = State::new();
    let response = replay.apply(&log[0], &mut Vec::new());
    record(dir, "response", codec::encode(&response));

    let blob = snapshot.finish();
    let mut whole = vec![14u8];
    whole.extend_from_slice(&blob);
    put(dir, "snapshot-blob", &whole);
    // Mode 15: the content between the magic and the checksum.
    let mut content = vec![15u8];
    content.extend_from_slice(&blob[MAGIC.len()..blob.len() - 32]);
    put(dir, "snapshot-content", &content);
}

fn config(dir: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for n in 1..=3 {
        let text = std::fs::read(root.join(format!("cluster/local/node{n}.toml"))).expect("config");
        let mut seed = vec![0u8];
        seed.extend(text);
        put(dir, &format!("node{n}.toml"), &seed);
    }
    let full =
        "id = 2\ncluster = \"prod\"\nlisten = \"0.0.0.0:7100\"\ndata_dir = \"/var/lib/laneq\"\n\
                shutdown_drain_ms = 5000\n[[peers]]\nid = 2\naddr = \"10.0.0.2:7100\"\n\
                [workers]\nlease_ttl_ms = 30000\n[history]\nenabled = true\n\
                [[history.resolutions]]\nstep_ms = 10000\nretention_ms = 3600000\n\
                [watch]\nmax_watchers = 64\n";
    put(
        dir,
        "node-full.toml",
        &[&[0u8][..], full.as_bytes()].concat(),
    );
    put(
        dir,
        "endpoints",
        b"\x01127.0.0.1:7101, http://127.0.0.1:7102,node3:7103",
    );
    put(dir, "resources", b"\x02cpu=4.5,memory=16Gi,gpu=1,ib=2");
    put(dir, "resources-milli", b"\x02cpu=500m,memory=1500M");
    let cli = [
        (
            "cli-submit",
            "submit\0--queue\0train\0--resources\0gpu=1,cpu=2\0--\0echo\0hi",
        ),
        (
            "cli-queue-create",
            "queue\0create\0gpu\0--pool\0p1\0--priority\0max\0--quota\0gpu=8",
        ),
        ("cli-task-move", "task\0move\x001\0--to-front"),
        ("cli-metrics", "metrics\0queue\0train\0--since\x001h30m"),
        (
            "cli-endpoints",
            "--endpoints\0127.0.0.1:7101\0-o\0json\0worker\0list",
        ),
    ];
    for (name, args) in cli {
        put(dir, name, &[&[3u8][..], args.as_bytes()].concat());
    }
}
