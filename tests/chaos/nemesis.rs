//! The nemesis: injects one fault at a time on a schedule drawn from the
//! seed (gaps, kinds, durations and targets), heals it, and watches that no
//! node dies unless it killed it.

use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

use laneq::proto::v1::NodeStatusResponse;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::common::{signal, Cluster};
use crate::history::Fault;
use crate::proxy::Links;
use crate::workload::Recorder;

/// Every fault kind, as `--faults` names them.
pub const KINDS: [&str; 8] = [
    "kill-leader",
    "kill-follower",
    "pause",
    "partition-leader",
    "partition-split",
    "partition-bridge",
    "restart-all",
    "snapshot-kill",
];

pub struct Nemesis {
    pub cluster: Cluster,
    links: Links,
    rec: Recorder,
    rng: StdRng,
    kinds: Vec<String>,
    /// Nodes the nemesis killed and has not restarted.
    down: BTreeSet<u64>,
    paused: BTreeSet<u64>,
    /// Nodes that exited without being killed, with the end of their log.
    pub crashes: Vec<String>,
}

impl Nemesis {
    pub fn new(
        cluster: Cluster,
        links: Links,
        rec: Recorder,
        seed: u64,
        kinds: Vec<String>,
    ) -> Self {
        Self {
            cluster,
            links,
            rec,
            rng: StdRng::seed_from_u64(seed ^ 0x006e_656d_6573_6973),
            kinds,
            down: BTreeSet::new(),
            paused: BTreeSet::new(),
            crashes: Vec::new(),
        }
    }

    fn ids(&self) -> Vec<u64> {
        self.cluster.nodes.keys().copied().collect()
    }

    /// Injects faults until `until_ms` on the run's clock.
    pub async fn run(&mut self, until_ms: u64) {
        while self.rec.now() < until_ms {
            let gap = self.rng.random_range(500..2000);
            self.watch(gap).await;
            if self.rec.now() >= until_ms || self.kinds.is_empty() {
                break;
            }
            let kind = self.kinds[self.rng.random_range(0..self.kinds.len())].clone();
            let hold = self.rng.random_range(1000..3000);
            self.inject(&kind, hold).await;
        }
    }

    async fn inject(&mut self, kind: &str, hold_ms: u64) {
        let leader = self.leader().await;
        let mut ids = self.ids();
        ids.shuffle(&mut self.rng);
        let follower = ids.iter().copied().find(|id| Some(*id) != leader);
        let start_ms = self.rec.now();
        let (target, hit_leader) = match kind {
            "kill-leader" | "kill-follower" => {
                let id = if kind == "kill-leader" {
                    leader
                } else {
                    follower
                };
                let id = id.unwrap_or(ids[0]);
                self.kill(id);
                self.watch(hold_ms).await;
                self.start(id);
                (format!("node {id}"), Some(id) == leader)
            }
            "pause" => {
                let id = if self.rng.random_bool(0.5) {
                    leader
                } else {
                    follower
                };
                let id = id.unwrap_or(ids[0]);
                self.pause(id, true);
                self.watch(hold_ms).await;
                self.pause(id, false);
                (format!("node {id}"), Some(id) == leader)
            }
            "partition-leader" | "partition-split" | "partition-bridge" => {
                let (a, b) = match kind {
                    "partition-leader" => {
                        let l = leader.unwrap_or(ids[0]);
                        (vec![l], ids.iter().copied().filter(|&i| i != l).collect())
                    }
                    "partition-split" => {
                        let small = self.rng.random_range(1..=(ids.len() - 1) / 2);
                        (ids[..small].to_vec(), ids[small..].to_vec())
                    }
                    // A bridge: two sides that only the middle node joins.
                    _ => {
                        let side = (ids.len() - 1) / 2;
                        (ids[..side].to_vec(), ids[side + 1..].to_vec())
                    }
                };
                self.links.cut_between(&a, &b);
                let cut = self.links.describe();
                // The leader is hit when it no longer reaches a majority.
                let hit = leader.is_some_and(|l| {
                    let reach = ids.iter().filter(|&&o| o == l || !self.links.is_cut(l, o));
                    reach.count() * 2 <= ids.len()
                });
                self.watch(hold_ms).await;
                self.links.heal_all();
                (format!("{a:?} | {b:?}, cut {cut:?}"), hit)
            }
            "restart-all" => {
                for &id in &ids {
                    self.kill(id);
                }
                self.watch(300).await;
                for &id in &ids {
                    self.start(id);
                }
                ("all".to_string(), true)
            }
            "snapshot-kill" => {
                let id = follower.unwrap_or(ids[0]);
                (self.snapshot_kill(id, leader).await, false)
            }
            other => panic!("unknown fault kind {other}"),
        };
        let end_ms = self.rec.now();
        self.rec.with(|h| {
            h.faults.push(Fault {
                kind: kind.to_string(),
                target,
                hit_leader,
                start_ms,
                end_ms,
            })
        });
    }

    /// Kills `id`, waits until the leader has compacted its log past what
    /// `id` holds (so it must catch up from a snapshot), restarts it and
    /// kills it again as soon as it logs that it is installing one.
    async fn snapshot_kill(&mut self, id: u64, leader: Option<u64>) -> String {
        let held = self.status(id).await.map_or(0, |s| s.last_log_index);
        self.kill(id);
        let mut compacted = false;
        for _ in 0..100 {
            let purged = match leader {
                Some(l) => self.status(l).await.map_or(0, |s| s.purged_index),
                None => 0,
            };
            if purged > held {
                compacted = true;
                break;
            }
            self.watch(100).await;
        }
        let mut log = LogTail::new(&self.cluster.nodes[&id].log);
        self.start(id);
        let mut seen = "no snapshot install seen; killed after 3 s";
        let mut text = String::new();
        for _ in 0..600 {
            text += &log.read_new();
            if text.contains("installing snapshot") {
                seen = if text.contains("installed snapshot") {
                    "killed just after an install"
                } else {
                    "killed while installing a snapshot"
                };
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.kill(id);
        self.watch(500).await;
        self.start(id);
        let lag = if compacted {
            ""
        } else {
            ", log not compacted past it"
        };
        format!("node {id}: {seen}{lag}")
    }

    /// Ends every fault: links heal, paused nodes resume, killed nodes start.
    pub async fn heal(&mut self) {
        self.links.heal_all();
        for id in self.paused.clone() {
            self.pause(id, false);
        }
        for id in self.down.clone() {
            self.start(id);
        }
        self.watch(100).await;
    }

    fn kill(&mut self, id: u64) {
        // A stopped process dies of SIGKILL all the same.
        self.paused.remove(&id);
        self.cluster.kill(id);
        self.down.insert(id);
    }

    fn start(&mut self, id: u64) {
        if self.down.remove(&id) {
            self.cluster.start_node(id);
        }
    }

    fn pause(&mut self, id: u64, stop: bool) {
        let Some(pid) = self.cluster.pid(id) else {
            return;
        };
        if stop {
            signal(pid, "STOP");
            self.paused.insert(id);
        } else if self.paused.remove(&id) {
            signal(pid, "CONT");
        }
    }

    /// Sleeps `ms`, checking every 100 ms that every node the nemesis did not
    /// kill is alive; a node that died on its own is a finding, and is
    /// restarted so that the run goes on.
    pub async fn watch(&mut self, ms: u64) {
        let until = self.rec.now() + ms;
        loop {
            for id in self.ids() {
                if !self.down.contains(&id) && !self.cluster.is_running(id) {
                    let log = self.cluster.log_text(id);
                    let tail: Vec<&str> = log.lines().rev().take(20).collect();
                    let tail: Vec<&str> = tail.into_iter().rev().collect();
                    self.crashes.push(format!(
                        "node {id} exited on its own at {} ms; its log ends:\n{}",
                        self.rec.now(),
                        tail.join("\n")
                    ));
                    self.cluster.kill(id);
                    self.cluster.start_node(id);
                }
            }
            let now = self.rec.now();
            if now >= until {
                return;
            }
            tokio::time::sleep(Duration::from_millis((until - now).min(100))).await;
        }
    }

    async fn status(&self, id: u64) -> Option<NodeStatusResponse> {
        if self.down.contains(&id) || self.paused.contains(&id) {
            return None;
        }
        (self.cluster.status_within(id, Duration::from_millis(500)))
            .await
            .ok()
    }

    /// The node that claims leadership in the highest term, if any.
    pub async fn leader(&self) -> Option<u64> {
        let mut best: Option<(u64, u64)> = None;
        for id in self.ids() {
            if let Some(s) = self.status(id).await {
                if s.role == "leader" && best.is_none_or(|(term, _)| s.term > term) {
                    best = Some((s.term, id));
                }
            }
        }
        best.map(|(_, id)| id)
    }
}

/// Reads what a log file gained since the last read.
struct LogTail {
    path: std::path::PathBuf,
    offset: u64,
}

impl LogTail {
    fn new(path: &std::path::Path) -> Self {
        let offset = std::fs::metadata(path).map_or(0, |m| m.len());
        Self {
            path: path.to_path_buf(),
            offset,
        }
    }

    fn read_new(&mut self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.path) {
            if f.seek(SeekFrom::Start(self.offset)).is_ok() {
                let _ = f.read_to_string(&mut text);
            }
        }
        self.offset += text.len() as u64;
        text
    }
}
