//! Issue #3's scale check: every queue operation (submit, next task, position
//! of a task, move, cancel) costs about the same with 1,000,000 queued tasks
//! as with 1,000.
//!
//! It drives the pure replicated model ([`laneq::model::State`]) directly, as
//! Raft's apply does: no Raft, no RocksDB, no network. What it times is one
//! command's apply, or one read, against a queue of N tasks kept at N.
//!
//! `cargo bench --bench queue_scale` measures queues of 1k, 10k, 100k and 1M
//! tasks, prints Markdown tables (1k against 1M, then the growth per decade),
//! the load time and the RSS per task, and writes
//! `bench/results/queue_scale.json`. Run any other way (`cargo test
//! --all-targets` runs harness-less bench targets in a debug build, whose
//! apply checks every invariant in O(n)), it is a smoke test on small queues
//! that checks each answer against a plain `Vec` model of the queue and writes
//! nothing. It never asserts on a timing.

#[path = "support/mod.rs"]
mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use laneq::model::limits::BATCH_MAX_TASKS;
use laneq::model::spec::QueueSpec;
use laneq::model::{Command, Key, MoveTo, NewTask, Op, Reply, Stamp, State, Write, Writes};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::{label, percentile, round3, vm_rss_kib};

const QUEUE: &str = "bench";
/// The first command's stamp. Each later command is 1 ms on, so no
/// idempotency key expires during a run (retention is 24 h).
const START_MS: u64 = 1_700_000_000_000;
/// Tasks that `position_hot` picks from: few enough that their tree paths
/// stay in cache, which separates the work done from the cache misses.
const HOT_TASKS: usize = 64;
const RESULTS: &str = "bench/results/queue_scale.json";

/// How one run is sized.
struct Plan {
    /// Queue lengths, smallest first; the main table compares the first and
    /// last. They run largest first, so its RSS is measured in a fresh process.
    sizes: &'static [usize],
    /// Timed samples per operation and size.
    samples: usize,
    /// Untimed samples before them.
    warmup: usize,
    /// Check every answer against a `Vec` model of the queue (O(n) per op).
    shadow: bool,
}

const BENCH: Plan = Plan {
    sizes: &[1_000, 10_000, 100_000, 1_000_000],
    samples: 10_000,
    warmup: 1_000,
    shadow: false,
};

const SMOKE: Plan = Plan {
    sizes: &[1_000, 5_000],
    samples: 30,
    warmup: 5,
    shadow: true,
};

#[derive(Clone, Copy, Debug)]
enum Operation {
    Submit,
    Next,
    Position,
    PositionHot,
    MoveFront,
    MovePosition,
    MoveSecond,
    Cancel,
}

impl Operation {
    const ALL: [Operation; 8] = [
        Operation::Submit,
        Operation::Next,
        Operation::Position,
        Operation::PositionHot,
        Operation::MoveFront,
        Operation::MovePosition,
        Operation::MoveSecond,
        Operation::Cancel,
    ];

    /// The key in the JSON results, and the label in the tables.
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Operation::Submit => ("submit", "submit 1 task (back)"),
            Operation::Next => ("next_task", "next task (read)"),
            Operation::Position => ("position", "position of task X (read)"),
            Operation::PositionHot => (
                "position_hot",
                "position of task X, X among 64 (read, cache-warm)",
            ),
            Operation::MoveFront => ("move_front", "move task to front"),
            Operation::MovePosition => ("move_position", "move task to random position"),
            Operation::MoveSecond => (
                "move_second",
                "move task to position 2 (one gap, over and over)",
            ),
            Operation::Cancel => ("cancel", "cancel queued task"),
        }
    }
}

/// One queue in a fresh state, and what the bench needs to pick its tasks.
struct Bench {
    state: State,
    /// Reused between applies; the bench drops what a store would persist.
    changed: Vec<Key>,
    queue: u64,
    /// Commands applied: makes each idempotency key and stamp unique.
    commands: u64,
    /// Every queued task, in no order: picks a random one in O(1).
    queued: Vec<u64>,
    /// The queue's order as a plain `Vec`, when checking (smoke runs only).
    shadow: Option<Vec<u64>>,
    rng: StdRng,
}

impl Bench {
    fn new(shadow: bool, seed: u64) -> Self {
        let mut bench = Self {
            state: State::new(),
            changed: Vec::new(),
            queue: 0,
            commands: 0,
            queued: Vec::new(),
            shadow: shadow.then(Vec::new),
            rng: StdRng::seed_from_u64(seed),
        };
        // Depth 0: unlimited (the default is 10,000).
        let spec = QueueSpec {
            depth: 0,
            ..Default::default()
        };
        bench.apply(Op::CreateQueue {
            name: QUEUE.into(),
            pool: "default".into(),
            spec,
        });
        bench.queue = bench.state.queue(QUEUE).expect("queue created").id;
        bench
    }

    fn len(&self) -> usize {
        self.state.queued(self.queue)
    }

    /// Applies one command, timing only the apply. Panics unless it succeeded.
    fn apply(&mut self, op: Op) -> (Reply, Duration) {
        self.commands += 1;
        let cmd = Command {
            stamp: Stamp {
                now_ms: START_MS + self.commands,
                seed: self.commands,
            },
            writes: Writes::One(Write {
                idempotency_key: format!("k{}", self.commands),
                actor: "bench".into(),
                op,
            }),
        };
        self.changed.clear();
        let start = Instant::now();
        let response = self.state.apply(&cmd, &mut self.changed);
        let took = start.elapsed();
        assert!(!response.replayed, "{cmd}: every key is new");
        let reply = response
            .result
            .unwrap_or_else(|e| panic!("{cmd} was refused: {e:?}"));
        (reply, took)
    }

    /// Submits `count` tasks to the back in one command.
    fn submit(&mut self, count: usize) -> Duration {
        let task = NewTask {
            queue: QUEUE.into(),
            command: vec!["train".into()],
            ..Default::default()
        };
        let len = self.len();
        let (reply, took) = self.apply(Op::SubmitTasks {
            tasks: vec![task; count],
        });
        let Reply::TasksSubmitted { ids } = reply else {
            panic!("a submit answered {reply:?}");
        };
        assert_eq!(ids.len(), count);
        let last = *ids.last().expect("at least one task");
        assert_eq!(
            self.position(last),
            Some(len + count - 1),
            "submit goes to the back"
        );
        if let Some(shadow) = &mut self.shadow {
            shadow.extend(&ids);
        }
        self.queued.extend(ids);
        took
    }

    /// Fills the queue to `n` tasks in the largest batches; returns each
    /// batch's apply time.
    fn load(&mut self, n: usize) -> Vec<Duration> {
        let mut took = Vec::with_capacity(n.div_ceil(BATCH_MAX_TASKS));
        while self.len() < n {
            took.push(self.submit((n - self.len()).min(BATCH_MAX_TASKS)));
        }
        took
    }

    fn position(&self, id: u64) -> Option<usize> {
        self.state.position(self.state.task(id)?)
    }

    /// A random queued task and its index in `queued`.
    fn random_task(&mut self) -> (usize, u64) {
        let i = self.rng.random_range(0..self.queued.len());
        (i, self.queued[i])
    }

    /// Cancels a random queued task.
    fn cancel_random(&mut self) -> Duration {
        let (i, id) = self.random_task();
        let (reply, took) = self.apply(Op::CancelTask {
            id,
            reason: String::new(),
        });
        assert_eq!(reply, Reply::Task { id });
        assert_eq!(
            self.position(id),
            None,
            "a canceled task has left the queue"
        );
        self.queued.swap_remove(i);
        if let Some(shadow) = &mut self.shadow {
            shadow.retain(|&t| t != id);
        }
        took
    }

    /// Moves a random task to 0-based position `to` (`MoveTo::Front` for 0).
    fn move_random(&mut self, to: usize) -> Duration {
        let (_, id) = self.random_task();
        let to_op = match to {
            0 => MoveTo::Front,
            p => MoveTo::Position(p as u64),
        };
        let (reply, took) = self.apply(Op::MoveTask { id, to: to_op });
        assert_eq!(reply, Reply::Task { id });
        assert_eq!(self.position(id), Some(to), "moved task {id}");
        if let Some(shadow) = &mut self.shadow {
            shadow.retain(|&t| t != id);
            shadow.insert(to, id);
        }
        took
    }

    /// One timed operation, its answer checked. The queue keeps its length:
    /// a submit is followed by an untimed cancel, and a cancel by a submit.
    fn sample(&mut self, op: Operation) -> Duration {
        let took = match op {
            Operation::Submit => {
                let took = self.submit(1);
                self.cancel_random();
                took
            }
            Operation::Cancel => {
                let took = self.cancel_random();
                self.submit(1);
                took
            }
            Operation::MoveFront => self.move_random(0),
            Operation::MoveSecond => self.move_random(1),
            Operation::MovePosition => {
                let to = self.rng.random_range(0..self.len());
                self.move_random(to)
            }
            Operation::Next => {
                let start = Instant::now();
                let next = black_box(self.state.next_task(black_box(self.queue)));
                let took = start.elapsed();
                let next = next.expect("the queue is not empty");
                assert_eq!(
                    self.position(next),
                    Some(0),
                    "the next task is at the front"
                );
                took
            }
            Operation::Position | Operation::PositionHot => {
                let id = match op {
                    Operation::PositionHot => self.queued[self.rng.random_range(0..HOT_TASKS)],
                    _ => self.random_task().1,
                };
                let start = Instant::now();
                let position = black_box(self.position(black_box(id)));
                let took = start.elapsed();
                let position = position.expect("a queued task has a position");
                assert!(position < self.len());
                if let Some(shadow) = &self.shadow {
                    assert_eq!(shadow[position], id, "position of task {id}");
                }
                took
            }
        };
        self.check_shadow();
        took
    }

    /// The model's whole order equals the `Vec` model's (smoke runs only).
    fn check_shadow(&self) {
        if let Some(shadow) = &self.shadow {
            assert_eq!(&self.state.queued_range(self.queue, 0, usize::MAX), shadow);
            assert_eq!(self.state.next_task(self.queue), shadow.first().copied());
        }
    }
}

/// Median and 99th percentile of some durations.
#[derive(Clone, Copy)]
struct Stats {
    p50_us: f64,
    p99_us: f64,
}

impl Stats {
    fn of(mut took: Vec<Duration>) -> Self {
        took.sort_unstable();
        let at = |q: usize| percentile(&took, q).as_secs_f64() * 1e6;
        Self {
            p50_us: at(50),
            p99_us: at(99),
        }
    }
}

/// What one queue length gave.
struct SizeResult {
    tasks: usize,
    load: Duration,
    /// Apply time of each batch submit while loading.
    load_batches: Stats,
    rss_before_kib: Option<u64>,
    rss_after_kib: Option<u64>,
    ops: Vec<(Operation, Stats)>,
}

/// Loads a queue of `n` tasks and times every operation on it. The RSS is
/// worth measuring only in a process that has not yet freed a larger state.
fn run_size(n: usize, plan: &Plan, measure_rss: bool) -> SizeResult {
    let rss_before_kib = rss_kib().filter(|_| measure_rss);
    let mut bench = Bench::new(plan.shadow, n as u64);
    let start = Instant::now();
    let batches = bench.load(n);
    let load = start.elapsed();
    let rss_after_kib = rss_kib().filter(|_| measure_rss);
    bench.check_shadow();
    let mut ops = Vec::new();
    for op in Operation::ALL {
        for _ in 0..plan.warmup {
            bench.sample(op);
        }
        let took: Vec<Duration> = (0..plan.samples).map(|_| bench.sample(op)).collect();
        assert_eq!(bench.len(), n, "{op:?} kept the queue's length");
        ops.push((op, Stats::of(took)));
    }
    SizeResult {
        tasks: n,
        load,
        load_batches: Stats::of(batches),
        rss_before_kib,
        rss_after_kib,
        ops,
    }
}

/// The process's resident set, from /proc (None where there is none).
fn rss_kib() -> Option<u64> {
    vm_rss_kib("/proc/self/status")
}

/// The median cost of reading the clock twice, which every sample includes.
fn timer_overhead_us() -> f64 {
    let took = (0..10_000)
        .map(|_| {
            let start = Instant::now();
            black_box(start.elapsed())
        })
        .collect();
    Stats::of(took).p50_us
}

fn print_table(small: &SizeResult, large: &SizeResult) {
    let (s, l) = (label(small.tasks), label(large.tasks));
    println!(
        "| op | p50 at {s} (µs) | p50 at {l} (µs) | ratio | p99 at {s} (µs) | p99 at {l} (µs) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for ((op, a), (_, b)) in small.ops.iter().zip(&large.ops) {
        println!(
            "| {} | {:.3} | {:.3} | {:.2}x | {:.3} | {:.3} |",
            op.names().1,
            a.p50_us,
            b.p50_us,
            b.p50_us / a.p50_us,
            a.p99_us,
            b.p99_us
        );
    }
}

/// The median of every operation at every size: how the cost grows.
fn print_growth(results: &[SizeResult]) {
    let sizes: Vec<String> = results.iter().map(|r| label(r.tasks)).collect();
    println!("\np50 (µs) by queue length:\n");
    println!("| op | {} |", sizes.join(" | "));
    println!("|---|{}", "---:|".repeat(sizes.len()));
    for (i, op) in Operation::ALL.iter().enumerate() {
        let cells: Vec<String> = results
            .iter()
            .map(|r| format!("{:.3}", r.ops[i].1.p50_us))
            .collect();
        println!("| {} | {} |", op.names().1, cells.join(" | "));
    }
}

fn print_load(r: &SizeResult) {
    println!(
        "\nloaded {} tasks in {:.2} s ({} submits of up to {BATCH_MAX_TASKS}; \
         per submit p50 {:.0} µs, p99 {:.0} µs)",
        r.tasks,
        r.load.as_secs_f64(),
        r.tasks.div_ceil(BATCH_MAX_TASKS),
        r.load_batches.p50_us,
        r.load_batches.p99_us
    );
    if let (Some(before), Some(after)) = (r.rss_before_kib, r.rss_after_kib) {
        let grown = after.saturating_sub(before) * 1024;
        println!(
            "RSS {:.0} MiB before loading, {:.0} MiB after: {:.0} bytes per queued task",
            before as f64 / 1024.0,
            after as f64 / 1024.0,
            grown as f64 / r.tasks as f64
        );
    }
}

const RSS_NOTE: &str = "\
note: RSS is measured for the largest queue only, before anything was freed. Per task \
it is the whole in-memory model state a queued task costs: its Task record in the task \
map (with its project, idempotency key and a one-entry timeline on the heap), its \
entries in the queue's order index, and its share of the idempotency records (one per \
submit of 1,000), plus allocator slack. Command lines and payloads are not held in \
memory: apply hands them to storage.";

fn write_json(results: &[SizeResult]) -> std::io::Result<()> {
    let mut records = Vec::new();
    for r in results {
        for (op, stats) in &r.ops {
            records.push(serde_json::json!({
                "scenario": format!("queue_scale/{}", op.names().0),
                "system": "laneq-model",
                "op": op.names().0,
                "tasks": r.tasks,
                "p50_us": round3(stats.p50_us),
                "p99_us": round3(stats.p99_us),
            }));
        }
        let rss_per_task = r
            .rss_before_kib
            .zip(r.rss_after_kib)
            .map(|(b, a)| a.saturating_sub(b) as f64 * 1024.0 / r.tasks as f64);
        records.push(serde_json::json!({
            "scenario": "queue_scale/load",
            "system": "laneq-model",
            "op": "submit_batch_1000",
            "tasks": r.tasks,
            "p50_us": round3(r.load_batches.p50_us),
            "p99_us": round3(r.load_batches.p99_us),
            "load_total_s": round3(r.load.as_secs_f64()),
            "rss_after_load_kib": r.rss_after_kib,
            "rss_bytes_per_task": rss_per_task.map(f64::round),
        }));
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(RESULTS);
    std::fs::create_dir_all(path.parent().expect("results have a directory"))?;
    let text = serde_json::to_string_pretty(&records).expect("plain JSON");
    std::fs::write(&path, text + "\n")?;
    println!("\nwrote {}", path.display());
    Ok(())
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let plan = if measuring { &BENCH } else { &SMOKE };
    if !measuring {
        println!(
            "queue_scale: smoke run, not a measurement (use `cargo bench --bench queue_scale`): \
             in a debug build every apply also checks all invariants in O(n)"
        );
    }
    let mut results: Vec<SizeResult> = (plan.sizes.iter().rev().enumerate())
        .map(|(i, &n)| run_size(n, plan, i == 0))
        .collect();
    results.reverse();
    let (small, large) = (&results[0], &results[results.len() - 1]);
    println!(
        "\n{} samples per op and size; every sample includes ~{:.3} µs of clock reads\n",
        plan.samples,
        timer_overhead_us()
    );
    print_table(small, large);
    if results.len() > 2 {
        print_growth(&results);
    }
    results.iter().for_each(print_load);
    println!(
        "{RSS_NOTE} A Task is {} bytes inline.",
        std::mem::size_of::<laneq::model::Task>()
    );
    if measuring {
        write_json(&results).expect("write the results");
    }
}
