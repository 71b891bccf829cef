//! Steady work through the model at speed: [`Steady`] submits tasks at a
//! fixed rate to a few queues, dequeues and cancels a few, leases and
//! completes the rest, keeps its workers heartbeating, and issues what the
//! leader would (lease expiry, and collects while anything is collectable),
//! each step a few commands with the stamped clock moving on. It tallies
//! what the per-queue counters must say. The retention tests use it for
//! days, the store's month run for a month.

use std::collections::BTreeMap;

use crate::model::worker::{HeartbeatReport, Registration};
use crate::model::{Command, Key, NewTask, Op, Reply, Stamp, State, Write, Writes};

/// The first stamped time.
pub(crate) const START_MS: u64 = 1_700_000_000_000;
/// A day of stamped time.
pub(crate) const DAY_MS: u64 = 24 * 3_600_000;

/// A state under steady work, and what it was given.
pub(crate) struct Steady {
    pub(crate) s: State,
    pub(crate) now_ms: u64,
    pub(crate) queues: Vec<String>,
    workers: Vec<String>,
    keys: u64,
    pub(crate) submitted: u64,
    /// Finished by outcome: succeeded, failed, canceled, dequeued.
    pub(crate) outcomes: [u64; 4],
    /// Tasks the collects removed, and lost workers.
    pub(crate) collected: (u64, u64),
    /// Commands applied.
    pub(crate) commands: u64,
    /// When each task finished, if asked to remember (the exact checks).
    pub(crate) finished_at: Option<BTreeMap<u64, u64>>,
}

impl Steady {
    /// `queues` queues (`q0`...) and `workers` workers that listen to all
    /// of them. `sink` sees the state and the keys of every command.
    pub(crate) fn new(
        queues: usize,
        workers: usize,
        sink: &mut impl FnMut(&State, &[Key]),
    ) -> Self {
        let mut w = Self {
            s: State::new(),
            now_ms: START_MS,
            queues: (0..queues).map(|i| format!("q{i}")).collect(),
            workers: (0..workers).map(|i| format!("w{i}")).collect(),
            keys: 0,
            submitted: 0,
            outcomes: [0; 4],
            collected: (0, 0),
            commands: 0,
            finished_at: None,
        };
        for name in w.queues.clone() {
            let op = Op::CreateQueue {
                name,
                pool: "default".into(),
                spec: Default::default(),
            };
            w.apply(vec![op], sink);
        }
        for name in w.workers.clone() {
            w.apply(vec![Op::RegisterWorker(w.registration(&name))], sink);
        }
        w
    }

    fn registration(&self, name: &str) -> Registration {
        Registration {
            name: name.into(),
            ip: "10.0.0.1".into(),
            pool: "default".into(),
            queues: self.queues.clone(),
            ..Default::default()
        }
    }

    /// Applies `ops` as one command (a batch if more than one) at the
    /// clock, which then moves on 1 ms. Every write must succeed.
    pub(crate) fn apply(
        &mut self,
        ops: Vec<Op>,
        sink: &mut impl FnMut(&State, &[Key]),
    ) -> Vec<Reply> {
        let mut writes: Vec<Write> = (ops.into_iter())
            .map(|op| {
                self.keys += 1;
                let idempotency_key = format!("k{}", self.keys);
                let actor = "steady".into();
                Write {
                    idempotency_key,
                    actor,
                    op,
                }
            })
            .collect();
        let writes = match writes.len() {
            1 => Writes::One(writes.pop().expect("one")),
            _ => Writes::Batch(writes),
        };
        let stamp = Stamp {
            now_ms: self.now_ms,
            seed: self.keys,
        };
        let cmd = Command { stamp, writes };
        let mut changed = Vec::new();
        let response = self.s.apply(&cmd, &mut changed);
        sink(&self.s, &changed);
        self.now_ms += 1;
        self.commands += 1;
        let replies = match response.result.expect("the batch is well formed") {
            Reply::Batch(rs) => rs.into_iter().map(|r| r.result).collect(),
            one => vec![Ok(one)],
        };
        (replies.into_iter())
            .map(|r| r.unwrap_or_else(|e| panic!("{cmd}: {e:?}")))
            .collect()
    }

    /// One step of `step_ms`: heartbeats and the leader's expiry, `n` tasks
    /// submitted round robin over the queues, 1 in 50 dequeued and 1 in 50
    /// canceled, the rest leased and completed (1 in 20 failed), then the
    /// leader's collects until nothing is collectable.
    pub(crate) fn step(&mut self, n: usize, step_ms: u64, sink: &mut impl FnMut(&State, &[Key])) {
        let start = self.now_ms;
        let reports = (self.workers.iter())
            .map(|w| HeartbeatReport {
                worker: w.clone(),
                tasks: vec![],
                usage: None,
            })
            .collect();
        let expire = Op::ExpireLeases {
            worker_timeout_ms: 15_000,
        };
        let beats = Op::WorkerHeartbeats {
            reports,
            ttl_ms: 60_000,
        };
        self.apply(vec![beats, expire], sink);
        let ids = self.submit(n, sink);
        let mut ops = Vec::new();
        for &id in &ids {
            let reason = String::new();
            match id % 50 {
                0 => ops.push(Op::DequeueTask { id, reason }),
                1 => ops.push(Op::CancelTask { id, reason }),
                _ => {}
            }
        }
        self.outcomes[2] += (ops.iter())
            .filter(|o| matches!(o, Op::CancelTask { .. }))
            .count() as u64;
        self.outcomes[3] += (ops.iter())
            .filter(|o| matches!(o, Op::DequeueTask { .. }))
            .count() as u64;
        if !ops.is_empty() {
            self.apply(ops, sink);
        }
        self.lease_and_complete(ids.len(), sink);
        if let Some(at) = self.finished_at.as_mut() {
            for id in ids {
                let t = self.s.task(id).expect("finished in this step");
                at.insert(id, t.finished_ms().expect("finished"));
            }
        }
        self.collect(sink);
        self.now_ms = self.now_ms.max(start + step_ms);
    }

    /// Submits `n` tasks, round robin over the queues; their ids.
    fn submit(&mut self, n: usize, sink: &mut impl FnMut(&State, &[Key])) -> Vec<u64> {
        let q = self.queues.len();
        let ops = (0..q)
            .map(|i| Op::SubmitTasks {
                tasks: (0..n / q + usize::from(i < n % q))
                    .map(|_| NewTask {
                        queue: self.queues[i].clone(),
                        command: vec!["train".into()],
                        ..Default::default()
                    })
                    .collect(),
            })
            .filter(|op| !matches!(op, Op::SubmitTasks { tasks } if tasks.is_empty()))
            .collect();
        self.submitted += n as u64;
        let mut ids = Vec::with_capacity(n);
        for reply in self.apply(ops, sink) {
            let Reply::TasksSubmitted { ids: some } = reply else {
                panic!("a submit answers its ids")
            };
            ids.extend(some);
        }
        ids
    }

    /// Leases every queued task (64 a worker) and completes each.
    fn lease_and_complete(&mut self, mut left: usize, sink: &mut impl FnMut(&State, &[Key])) {
        while left > 0 {
            let ops = (self.workers.iter())
                .map(|w| Op::LeaseTasks {
                    worker: w.clone(),
                    max_tasks: 64,
                    ttl_ms: 60_000,
                })
                .collect();
            let mut done = Vec::new();
            for reply in self.apply(ops, sink) {
                let Reply::Leased { leases } = reply else {
                    panic!("a lease answers its leases")
                };
                for (id, fencing_token, _) in leases {
                    let succeeded = id % 20 != 3;
                    self.outcomes[usize::from(!succeeded)] += 1;
                    done.push(Op::CompleteTask {
                        id,
                        fencing_token,
                        succeeded,
                        exit_code: Some(i32::from(!succeeded)),
                        condition: String::new(),
                    });
                }
            }
            if done.is_empty() {
                break;
            }
            left = left.saturating_sub(done.len());
            for chunk in done.chunks(100) {
                self.apply(chunk.to_vec(), sink);
            }
        }
    }

    /// The leader's collects: one while anything is collectable.
    pub(crate) fn collect(&mut self, sink: &mut impl FnMut(&State, &[Key])) {
        while self.s.collectable(self.now_ms) {
            let reply = self.apply(vec![Op::CollectExpired], sink);
            let [Reply::Collected { tasks, workers, .. }] = reply[..] else {
                panic!("a collect answers its counts")
            };
            self.collected.0 += tasks;
            self.collected.1 += workers;
        }
    }

    /// A worker that registers and then goes silent (lost at the next
    /// expiry, removed after the lost-worker TTL).
    pub(crate) fn passing_worker(&mut self, name: &str, sink: &mut impl FnMut(&State, &[Key])) {
        let r = self.registration(name);
        self.apply(vec![Op::RegisterWorker(r)], sink);
    }

    /// The per-queue counters, summed: (submitted, [succeeded, failed,
    /// canceled, dequeued]).
    pub(crate) fn counted(&self) -> (u64, [u64; 4]) {
        let mut sum = (0, [0; 4]);
        for (_, c) in self.s.all_queue_counters() {
            sum.0 += c.submitted;
            let each = [c.succeeded, c.failed, c.canceled, c.dequeued];
            for (total, n) in sum.1.iter_mut().zip(each) {
                *total += n;
            }
        }
        sum
    }
}
