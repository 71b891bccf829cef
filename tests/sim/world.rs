//! What every part of one simulated run shares: the seeded random source,
//! the network's faults, the handles of the nodes that are up, the clock,
//! the trace and the history. One run lives on one thread, so the locks
//! here are never contended; they exist because openraft wants its network
//! `Send + Sync`.
//!
//! A node that is up is its `RaftNode` and its [`Life`]: a crash ends the
//! life, and every call in flight on the node (a client's, a peer's) ends
//! with it, as its connections would, so that nothing holds the node's
//! store open when it restarts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use laneq::model::{Response, Write};
use laneq::raft::{Raft, RaftNode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use super::history::{self, Call, History, Outcome, ReadView, Record, Reply};

/// The simulated wall clock starts here (ms since the epoch), so stamps look
/// like real ones.
const EPOCH_MS: u64 = 1_700_000_000_000;
/// How far a node's wall clock may be off the simulated time.
const SKEW_MAX_MS: i64 = 300;
/// A message's one-way delay on a healthy link.
const DELAY_HEALTHY_MS: u64 = 5;

/// The links' faults, as the nemesis sets them.
#[derive(Debug, Clone)]
pub struct Faults {
    /// Directed links (from, to) that carry nothing.
    pub cut: BTreeSet<(u64, u64)>,
    /// Messages lost, per thousand, on every link (clients' too).
    pub loss_permille: u32,
    /// The longest one-way delay of a message.
    pub delay_max_ms: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            cut: BTreeSet::new(),
            loss_permille: 0,
            delay_max_ms: DELAY_HEALTHY_MS,
        }
    }
}

/// A node that is up: its Raft half and what ends when it crashes.
pub type Up = (Arc<RaftNode>, Arc<Life>);

pub struct World {
    /// Node ids, 1..=size.
    pub ids: Vec<u64>,
    rng: Mutex<StdRng>,
    pub faults: Mutex<Faults>,
    /// Every node that is up.
    up: Mutex<BTreeMap<u64, Up>>,
    /// Each node's wall clock offset.
    skew_ms: BTreeMap<u64, i64>,
    start: Instant,
    trace: Mutex<Trace>,
    /// Every client operation, in the shared format (`tests/history/`).
    pub history: Mutex<History>,
    /// Tells the workload to finish its current write and stop.
    stop: AtomicBool,
    /// Print every event as it is recorded (`LANEQ_SIM_TRACE`).
    echo: bool,
}

/// A running hash of what happened and when; with `events`, the events too
/// (to show where two runs of a seed part).
struct Trace {
    hasher: blake3::Hasher,
    count: u64,
    events: Option<Vec<String>>,
}

impl World {
    pub fn new(seed: u64, size: u64, keep_events: bool) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let ids: Vec<u64> = (1..=size).collect();
        let skew_ms = ids
            .iter()
            .map(|&id| (id, rng.random_range(-SKEW_MAX_MS..=SKEW_MAX_MS)))
            .collect();
        Self {
            ids,
            rng: Mutex::new(rng),
            faults: Mutex::new(Faults::default()),
            up: Mutex::new(BTreeMap::new()),
            skew_ms,
            start: Instant::now(),
            trace: Mutex::new(Trace {
                hasher: blake3::Hasher::new(),
                count: 0,
                events: keep_events.then(Vec::new),
            }),
            history: Mutex::new(History::default()),
            stop: AtomicBool::new(false),
            echo: std::env::var_os("LANEQ_SIM_TRACE").is_some(),
        }
    }

    /// A draw from the run's random source.
    pub fn rand<T>(&self, draw: impl FnOnce(&mut StdRng) -> T) -> T {
        draw(&mut self.rng.lock().unwrap())
    }

    /// True `permille` times in a thousand.
    pub fn chance(&self, permille: u32) -> bool {
        self.rand(|r| r.random_range(0..1000) < permille)
    }

    /// Node `id`, if it is up, and its life.
    pub fn node(&self, id: u64) -> Option<Up> {
        self.up.lock().unwrap().get(&id).cloned()
    }

    pub fn raft(&self, id: u64) -> Option<Raft> {
        self.node(id).map(|(node, _)| node.raft().clone())
    }

    pub fn up_ids(&self) -> Vec<u64> {
        self.up.lock().unwrap().keys().copied().collect()
    }

    pub fn set_up(&self, id: u64, node: Arc<RaftNode>) {
        let up = (node, Arc::new(Life::default()));
        self.up.lock().unwrap().insert(id, up);
    }

    /// Takes node `id` down: its life ends, so every call in flight on it
    /// ends too.
    pub fn take_down(&self, id: u64) -> Option<Arc<RaftNode>> {
        let (node, life) = self.up.lock().unwrap().remove(&id)?;
        life.end();
        Some(node)
    }

    /// Simulated time since the run began.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Simulated ms since the run began: the history's clock.
    pub fn now_ms(&self) -> u64 {
        self.elapsed().as_millis() as u64
    }

    /// Node `id`'s wall clock, for the stamps it puts on commands.
    pub fn wall_ms(&self, id: u64) -> u64 {
        let now = EPOCH_MS + self.elapsed().as_millis() as u64;
        now.saturating_add_signed(self.skew_ms[&id])
    }

    /// A random one-way delay under the current faults.
    pub fn delay(&self) -> Duration {
        let max = self.faults.lock().unwrap().delay_max_ms;
        Duration::from_millis(self.rand(|r| r.random_range(0..=max)))
    }

    /// Whether a message from `from` to `to` (0: a client) gets through now:
    /// the link is not cut and the message is not lost.
    pub fn passes(&self, from: u64, to: u64) -> bool {
        let (cut, loss) = {
            let f = self.faults.lock().unwrap();
            (f.cut.contains(&(from, to)), f.loss_permille)
        };
        !cut && !self.chance(loss)
    }

    /// Adds an event to the trace, stamped with the simulated time.
    pub fn record(&self, event: std::fmt::Arguments<'_>) {
        let line = format!("{} {event}", self.elapsed().as_micros());
        if self.echo {
            eprintln!("{line}");
        }
        let mut t = self.trace.lock().unwrap();
        t.hasher.update(line.as_bytes());
        t.hasher.update(b"\n");
        t.count += 1;
        if let Some(events) = &mut t.events {
            events.push(line);
        }
    }

    /// What `client` learned of `write`, sent at `sent_ms` and given up or
    /// answered now: the response and the log index of the entry that
    /// answered it, `None` when the outcome stayed unknown (every attempt
    /// was lost, timed out or refused for want of a leader). Goes into the
    /// trace and the history.
    pub fn record_write(
        &self,
        client: &str,
        write: &Write,
        sent_ms: u64,
        answer: Option<(Response, u64)>,
    ) {
        let shown = match &answer {
            Some((r, index)) if r.replayed => format!("{:?} at {index}, replayed", r.result),
            Some((r, index)) => format!("{:?} at {index}", r.result),
            None => "unknown".to_string(),
        };
        let key = &write.idempotency_key;
        self.record(format_args!("write {key}: {shown}"));
        let times = (sent_ms, self.now_ms());
        let record = history::model::record(client, write, times, answer);
        self.history.lock().unwrap().records.push(record);
    }

    /// What `client` learned of a linearizable read sent at `sent_ms` and
    /// answered (or given up) now: what it observed, or why not.
    pub fn record_read(&self, client: &str, sent_ms: u64, answer: Result<ReadView, String>) {
        let shown = match &answer {
            Ok(view) => format!("node {} at {}", view.node, view.applied),
            Err(why) => why.clone(),
        };
        self.record(format_args!("read {client}: {shown}"));
        let record = Record {
            client: client.to_string(),
            key: String::new(),
            call: Call::Read {
                what: "the applied index".into(),
            },
            sent_ms,
            done_ms: self.now_ms(),
            outcome: match answer {
                Ok(view) => Outcome::Ok(Reply::Read(view)),
                Err(why) => Outcome::Unknown(why),
            },
            entry: None,
        };
        self.history.lock().unwrap().records.push(record);
    }

    /// The trace's hash, its length and, if kept, its events.
    pub fn trace(&self) -> (String, u64, Option<Vec<String>>) {
        let t = self.trace.lock().unwrap();
        (
            t.hasher.finalize().to_hex().to_string(),
            t.count,
            t.events.clone(),
        )
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A node's life from its start to its crash. Calls in flight on the node
/// race [`Life::ended`] and lose to it.
#[derive(Default)]
pub struct Life {
    ended: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Life {
    fn end(&self) {
        self.ended.store(true, Ordering::Relaxed);
        // Wakes the waiters in the order they began to wait: replayable.
        self.notify.notify_waiters();
    }

    /// Resolves once the node has crashed.
    pub async fn ended(&self) {
        loop {
            let notified = self.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.ended.load(Ordering::Relaxed) {
                return;
            }
            notified.await;
        }
    }
}
