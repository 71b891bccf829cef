//! Commands built from fuzz input: a structured sequence over a small
//! alphabet of names and ids, so that most operations hit pools, queues,
//! projects, workers and tasks that exist, with the fencing tokens they hold,
//! and now and then a stale token, an unknown id or a malformed name.

use std::collections::BTreeMap;

use arbitrary::{Result, Unstructured};
use laneq::model::spec::{ClusterSelector, Fairness, QueueSpec, Resources};
use laneq::model::worker::{AssignedGpu, GpuUsage, HeartbeatReport, HeldTask, Registration, Usage};
use laneq::model::{Command, MoveTo, NewTask, Op, ProjectSettings, Stamp, State, Write, Writes};

pub const POOLS: &[&str] = &["default", "p1", "p2"];
pub const CLUSTERS: &[&str] = &["c1", "c2", "c3"];
pub const QUEUES: &[&str] = &["default", "q1", "q2", "q3"];
pub const PROJECTS: &[&str] = &["default", "pr1", "pr2"];
pub const WORKERS: &[&str] = &["w1", "w2", "w3"];
const RUNS: &[&str] = &["", "r1", "r2"];
const RESOURCES: &[&str] = &["cpu", "memory", "gpu"];

/// What the generator keeps between commands: the stamped clock and a
/// counter for fresh idempotency keys.
#[derive(Debug, Default)]
pub struct Gen {
    pub now_ms: u64,
    keys: u64,
}

impl Gen {
    pub fn new() -> Self {
        Self {
            now_ms: 1_000_000,
            keys: 0,
        }
    }

    /// The next command: a later (or equal) stamp, and one write or a batch.
    pub fn command(&mut self, u: &mut Unstructured, state: &State) -> Result<Command> {
        self.now_ms += match u.int_in_range(0..=15u8)? {
            0 => u.int_in_range(0..=3 * 86_400_000u64)?, // past idempotency retention
            1..=3 => u.int_in_range(0..=600_000u64)?,
            _ => u.int_in_range(0..=5_000u64)?,
        };
        let stamp = Stamp {
            now_ms: self.now_ms,
            seed: u.arbitrary()?,
        };
        let writes = if u.ratio(1, 6)? {
            let n = u.int_in_range(1..=4)?;
            let mut batch = Vec::with_capacity(n);
            for _ in 0..n {
                batch.push(self.write(u, state)?);
            }
            Writes::Batch(batch)
        } else {
            Writes::One(self.write(u, state)?)
        };
        Ok(Command { stamp, writes })
    }

    fn write(&mut self, u: &mut Unstructured, state: &State) -> Result<Write> {
        let idempotency_key = match u.int_in_range(0..=31u8)? {
            0 => u.arbitrary()?,
            1..=4 => format!("k{}", u.int_in_range(0..=7u8)?),
            _ => {
                self.keys += 1;
                format!("u{}", self.keys)
            }
        };
        let actor = match u.int_in_range(0..=15u8)? {
            0 => u.arbitrary()?,
            1..=7 => String::new(),
            _ => "alice".into(),
        };
        Ok(Write {
            idempotency_key,
            actor,
            op: op(u, state)?,
        })
    }
}

/// One operation of any kind, weighted towards the task lifecycle.
pub fn op(u: &mut Unstructured, s: &State) -> Result<Op> {
    Ok(match u.int_in_range(0..=35u8)? {
        0 | 1 => Op::CreateQueue {
            name: pick(u, QUEUES)?,
            pool: pool(u)?,
            spec: spec(u)?,
        },
        2..=7 => Op::SubmitTasks {
            tasks: {
                let n = u.int_in_range(1..=3)?;
                (0..n).map(|_| new_task(u)).collect::<Result<_>>()?
            },
        },
        8 => Op::CreatePool {
            name: pick(u, POOLS)?,
            clusters: some(u, CLUSTERS)?,
        },
        9 => Op::AddCluster {
            pool: pick(u, POOLS)?,
            cluster: pick(u, CLUSTERS)?,
        },
        10 => Op::RemoveCluster {
            pool: pick(u, POOLS)?,
            cluster: pick(u, CLUSTERS)?,
        },
        11 => match u.int_in_range(0..=5u8)? {
            0 | 1 => Op::DrainQueue {
                name: pick(u, QUEUES)?,
            },
            2 | 3 => Op::ActivateQueue {
                name: pick(u, QUEUES)?,
            },
            4 => Op::ClearQueue {
                name: pick(u, QUEUES)?,
            },
            _ => Op::DeleteQueue {
                name: pick(u, QUEUES)?,
                force: u.arbitrary()?,
            },
        },
        12 => {
            let name = pick(u, QUEUES)?;
            let version = s.queue(&name).map_or(0, |q| q.version);
            Op::UpdateQueue {
                name,
                pool: if u.arbitrary()? {
                    Some(pick(u, POOLS)?)
                } else {
                    None
                },
                spec: spec(u)?,
                expected_version: near(u, version)?,
            }
        }
        13 => Op::RenameQueue {
            name: pick(u, QUEUES)?,
            new_name: pick(u, QUEUES)?,
        },
        14 => Op::CreateProject {
            name: pick(u, PROJECTS)?,
            settings: settings(u)?,
        },
        15 => {
            let name = pick(u, PROJECTS)?;
            let version = s.project(&name).map_or(0, |p| p.version);
            Op::UpdateProject {
                name,
                settings: settings(u)?,
                expected_version: near(u, version)?,
            }
        }
        16 => Op::SetDefaultQueue {
            queue: pick(u, QUEUES)?,
        },
        17 => Op::CancelTask {
            id: task_id(u, s)?,
            reason: text(u)?,
        },
        18 => Op::DequeueTask {
            id: task_id(u, s)?,
            reason: text(u)?,
        },
        19 => Op::MoveTask {
            id: task_id(u, s)?,
            to: move_to(u, s)?,
        },
        20 | 21 => Op::RegisterWorker(registration(u, s)?),
        22 | 23 => Op::LeaseTasks {
            worker: worker(u, s)?,
            max_tasks: match u.ratio(1, 16)? {
                true => 0,
                false => u.int_in_range(1..=5)?,
            },
            ttl_ms: ttl(u)?,
        },
        24 => Op::WorkerHeartbeats {
            reports: {
                let n = u.int_in_range(0..=3)?;
                (0..n).map(|_| report(u, s)).collect::<Result<_>>()?
            },
            ttl_ms: ttl(u)?,
        },
        25 => {
            let (id, fencing_token) = held(u, s)?;
            Op::StartTask { id, fencing_token }
        }
        26 => {
            let (id, fencing_token) = held(u, s)?;
            let n = u.int_in_range(0..=3)?;
            let gpus = (0..n)
                .map(|_| {
                    Ok(AssignedGpu {
                        index: u.int_in_range(0..=3)?,
                        uuid: format!("GPU-{}", u.int_in_range(0..=3u8)?),
                    })
                })
                .collect::<Result<_>>()?;
            Op::StartTaskOn {
                id,
                fencing_token,
                gpus,
            }
        }
        27 => {
            let (id, fencing_token) = held(u, s)?;
            Op::ReportProgress {
                id,
                fencing_token,
                iteration: u.int_in_range(0..=1_000)?,
            }
        }
        28 | 29 => {
            let (id, fencing_token) = held(u, s)?;
            Op::CompleteTask {
                id,
                fencing_token,
                succeeded: u.arbitrary()?,
                exit_code: u.arbitrary()?,
                condition: text(u)?,
            }
        }
        30 => {
            let (id, fencing_token) = held(u, s)?;
            Op::ReleaseTask {
                id,
                fencing_token,
                reason: text(u)?,
            }
        }
        32..=35 => retention(u)?,
        _ => Op::ExpireLeases {
            worker_timeout_ms: ttl(u)?,
        },
    })
}

/// A retention change (short rules, so that collects find work), a
/// collect, or a worker's removal.
fn retention(u: &mut Unstructured) -> Result<Op> {
    let rule = |u: &mut Unstructured| -> Result<Option<u64>> {
        Ok(match u.int_in_range(0..=3u8)? {
            0 => None,
            1 => Some(0),
            2 => Some(u.int_in_range(0..=5)?),
            _ => Some(ttl(u)?),
        })
    };
    Ok(match u.int_in_range(0..=4u8)? {
        0 => Op::SetRetention {
            age_ms: rule(u)?,
            count: rule(u)?,
            lost_worker_ttl_ms: rule(u)?,
        },
        1 => Op::SetQueueRetention {
            name: pick(u, QUEUES)?,
            age_ms: u.arbitrary::<bool>()?.then(|| rule(u)).transpose()?,
            count: u.arbitrary::<bool>()?.then(|| rule(u)).transpose()?,
        },
        2 => Op::RemoveWorker {
            name: pick(u, WORKERS)?,
            force: u.arbitrary()?,
        },
        _ => Op::CollectExpired,
    })
}

/// A name of the alphabet, now and then any string (mostly refused).
fn pick(u: &mut Unstructured, names: &[&str]) -> Result<String> {
    if u.ratio(1, 32)? {
        return u.arbitrary();
    }
    Ok(u.choose(names)?.to_string())
}

/// A pool: mostly the default one, where the defaults and most queues are.
fn pool(u: &mut Unstructured) -> Result<String> {
    match u.int_in_range(0..=7u8)? {
        0..=4 => Ok("default".into()),
        _ => pick(u, POOLS),
    }
}

/// A worker's capacity or a queue's quota: often none (no limit), else
/// room for a few tasks of `amounts`.
fn limits(u: &mut Unstructured) -> Result<Resources> {
    let mut out = Resources::new();
    if u.arbitrary()? {
        for r in RESOURCES {
            if u.ratio(1, 2)? {
                out.insert(r.to_string(), u.int_in_range(0..=16)?);
            }
        }
    }
    Ok(out)
}

/// A subset of `names` (possibly empty).
fn some(u: &mut Unstructured, names: &[&str]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for n in names {
        if u.arbitrary()? {
            out.push(n.to_string());
        }
    }
    Ok(out)
}

/// Short free text, now and then anything.
fn text(u: &mut Unstructured) -> Result<String> {
    Ok(match u.int_in_range(0..=7u8)? {
        0 => u.arbitrary()?,
        1 => "why".into(),
        _ => String::new(),
    })
}

/// `value`, or one off it, or anything.
fn near(u: &mut Unstructured, value: u64) -> Result<u64> {
    Ok(match u.int_in_range(0..=7u8)? {
        0 => u.arbitrary()?,
        1 => value.wrapping_add(1),
        2 => value.wrapping_sub(1),
        _ => value,
    })
}

fn ttl(u: &mut Unstructured) -> Result<u64> {
    Ok(match u.int_in_range(0..=15u8)? {
        0 => u.arbitrary()?,
        _ => u.int_in_range(1_000..=20_000)?,
    })
}

fn amounts(u: &mut Unstructured) -> Result<Resources> {
    let mut out = Resources::new();
    for r in RESOURCES {
        if u.ratio(1, 3)? {
            out.insert(r.to_string(), u.int_in_range(0..=8)?);
        }
    }
    Ok(out)
}

fn spec(u: &mut Unstructured) -> Result<QueueSpec> {
    Ok(QueueSpec {
        clusters: if u.arbitrary()? {
            ClusterSelector::All
        } else {
            ClusterSelector::Only(some(u, CLUSTERS)?.into_iter().collect())
        },
        run_concurrency: u.int_in_range(0..=3)?,
        action_concurrency: u.int_in_range(0..=3)?,
        depth: u.int_in_range(0..=20)?,
        priority: u.int_in_range(0..=101)?,
        fairness: if u.arbitrary()? {
            Fairness::RoundRobin
        } else {
            Fairness::ShuffleInterleave
        },
        quota: limits(u)?,
        description: text(u)?,
    })
}

fn settings(u: &mut Unstructured) -> Result<ProjectSettings> {
    Ok(ProjectSettings {
        default_queue: if u.arbitrary()? {
            String::new()
        } else {
            pick(u, QUEUES)?
        },
        allowed_queues: some(u, QUEUES)?.into_iter().collect(),
        max_queued_per_run: u.int_in_range(0..=3)?,
        description: text(u)?,
    })
}

fn new_task(u: &mut Unstructured) -> Result<NewTask> {
    let mut labels = BTreeMap::new();
    if u.ratio(1, 4)? {
        labels.insert(pick(u, &["team", "kind"])?, text(u)?);
    }
    Ok(NewTask {
        queue: if u.ratio(1, 4)? {
            String::new()
        } else {
            pick(u, QUEUES)?
        },
        project: if u.ratio(1, 3)? {
            String::new()
        } else {
            pick(u, PROJECTS)?
        },
        run: pick(u, RUNS)?,
        name: text(u)?,
        command: match u.int_in_range(0..=15u8)? {
            0 => u.arbitrary()?,
            _ => vec!["run".into()],
        },
        payload: match u.int_in_range(0..=7u8)? {
            0 => u.arbitrary()?,
            _ => Vec::new(),
        },
        resources: match u.arbitrary()? {
            true => amounts(u)?,
            false => Resources::new(),
        },
        max_attempts: u.int_in_range(0..=3)?,
        labels,
    })
}

/// A worker: mostly in a pool that exists, on one of its clusters or
/// none, listening to queues of that pool; now and then anything.
fn registration(u: &mut Unstructured, s: &State) -> Result<Registration> {
    let pools: Vec<&str> = s.pools().map(|p| p.name.as_str()).collect();
    let pool = match u.ratio(1, 8)? {
        true => pool(u)?,
        false => u.choose(&pools)?.to_string(),
    };
    let clusters: Vec<&str> = s
        .pool(&pool)
        .map(|p| p.clusters.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let cluster = match u.int_in_range(0..=7u8)? {
        0 => pick(u, CLUSTERS)?,
        1 | 2 if !clusters.is_empty() => u.choose(&clusters)?.to_string(),
        _ => String::new(),
    };
    let mut queues = Vec::new();
    if u.ratio(1, 8)? {
        queues = some(u, QUEUES)?;
    } else {
        let mine: Vec<&str> = (s.queues().filter(|q| q.pool == pool))
            .map(|q| q.name.as_str())
            .collect();
        for q in &mine {
            if u.ratio(1, 2)? {
                queues.push(q.to_string());
            }
        }
        if queues.is_empty() && !mine.is_empty() {
            queues.push(u.choose(&mine)?.to_string());
        }
    }
    Ok(Registration {
        name: pick(u, WORKERS)?,
        ip: "10.0.0.1".into(),
        pool,
        cluster,
        queues,
        capacity: limits(u)?,
        slots: u.int_in_range(0..=4)?,
    })
}

/// A worker: mostly one that is registered.
fn worker(u: &mut Unstructured, s: &State) -> Result<String> {
    let names: Vec<&str> = s.workers().map(|w| w.name.as_str()).collect();
    match names.is_empty() || u.ratio(1, 8)? {
        true => pick(u, WORKERS),
        false => Ok(u.choose(&names)?.to_string()),
    }
}

/// A task id: mostly one that exists, now and then one that does not.
fn task_id(u: &mut Unstructured, s: &State) -> Result<u64> {
    let next = s.meta().next_task_id;
    Ok(match u.int_in_range(0..=15u8)? {
        0 => u.arbitrary()?,
        1 => next,
        _ => u.int_in_range(1..=next.max(2) - 1)?,
    })
}

/// A task held by some worker with its current token, or else any task
/// with a token that may be stale.
fn held(u: &mut Unstructured, s: &State) -> Result<(u64, u64)> {
    let holders: Vec<u64> = s.workers().flat_map(|w| w.tasks.iter().copied()).collect();
    let id = if !holders.is_empty() && !u.ratio(1, 6)? {
        *u.choose(&holders)?
    } else {
        task_id(u, s)?
    };
    let token = s.task(id).map_or(0, |t| t.fencing_token());
    Ok((id, near(u, token)?))
}

fn move_to(u: &mut Unstructured, s: &State) -> Result<MoveTo> {
    Ok(match u.int_in_range(0..=7u8)? {
        0 => MoveTo::Front,
        1 => MoveTo::Back,
        2 => MoveTo::Forward(u.int_in_range(0..=4)?),
        3 => MoveTo::Backward(u.int_in_range(0..=4)?),
        4 => MoveTo::Position(u.int_in_range(0..=6)?),
        5 => MoveTo::Before(task_id(u, s)?),
        6 => MoveTo::After(task_id(u, s)?),
        _ => MoveTo::Queue(pick(u, QUEUES)?),
    })
}

/// A worker's heartbeat: the tasks it holds with their tokens, maybe one
/// stale or foreign, and maybe a usage report.
fn report(u: &mut Unstructured, s: &State) -> Result<HeartbeatReport> {
    let worker = worker(u, s)?;
    let mut tasks = Vec::new();
    if let Some(w) = s.worker(&worker) {
        for &id in &w.tasks {
            if !u.ratio(1, 5)? {
                let token = s.task(id).map_or(0, |t| t.fencing_token());
                tasks.push(HeldTask {
                    id,
                    fencing_token: token,
                    iteration: u.arbitrary()?,
                });
            }
        }
    }
    if u.ratio(1, 4)? {
        let (id, fencing_token) = held(u, s)?;
        tasks.push(HeldTask {
            id,
            fencing_token,
            iteration: None,
        });
    }
    let usage = match u.ratio(1, 3)? {
        true => Some(Usage {
            cpu_permille: u.arbitrary()?,
            memory_used_bytes: u.arbitrary()?,
            memory_total_bytes: u.arbitrary()?,
            gpus: match u.arbitrary()? {
                true => vec![GpuUsage {
                    index: 0,
                    name: "gpu".into(),
                    util_permille: u.int_in_range(0..=1_000)?,
                    memory_used_bytes: 1 << 30,
                    memory_total_bytes: 80 << 30,
                }],
                false => Vec::new(),
            },
            net_rx_bytes_per_s: u.arbitrary()?,
            net_tx_bytes_per_s: None,
            at_ms: u.arbitrary()?,
        }),
        false => None,
    };
    Ok(HeartbeatReport {
        worker,
        tasks,
        usage,
    })
}
