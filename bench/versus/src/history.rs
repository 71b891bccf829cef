//! What the metrics history costs (issue #22): the same submit windows and
//! the same heartbeat load on two laneq clusters side by side, one keeping
//! the history (the default) and one without it (`[history] enabled =
//! false`), in alternating order so that a drift of the machine's speed
//! falls on both.

use std::time::Duration;

use serde_json::{json, Value};

use crate::paired::{compare, Side};
use crate::scenarios::{heartbeat_load, laneq_client, laneq_submit};
use crate::systems::Cluster;
use crate::Args;

/// The TOML that turns the history off.
const WITHOUT: &str = "\n[history]\nenabled = false\n";

pub async fn history(args: &Args) -> Vec<Value> {
    let with = Cluster::laneq_with(&args.laneq_bin, "laneq", "").await;
    let without = Cluster::laneq_with(&args.laneq_bin, "laneq-no-history", WITHOUT).await;
    let mut rows = Vec::new();
    println!("## History: the cost of keeping it\n");
    submits(args, &with, &without, &mut rows).await;
    heartbeats(args, &with, &without, &mut rows).await;
    rows
}

/// Closed-loop submits at 64 and 256 clients, each count in rounds of one
/// window per cluster.
async fn submits(args: &Args, with: &Cluster, without: &Cluster, rows: &mut Vec<Value>) {
    let counts: Vec<usize> = args.by_size(vec![4], vec![64, 256], vec![64, 256]);
    let rounds = args.by_size(1, 3, 5);
    let sides = [
        Side {
            name: "with history",
            cluster: with,
            op: laneq_submit(laneq_client(with).await),
        },
        Side {
            name: "without history",
            cluster: without,
            op: laneq_submit(laneq_client(without).await),
        },
    ];
    compare(args, "history-submit", &sides, &counts, rounds, rows).await;
}

/// The heartbeat scenario's load, with a usage sample in every heartbeat,
/// on each cluster in turn: the leader's CPU with and without the history.
async fn heartbeats(args: &Args, with: &Cluster, without: &Cluster, rows: &mut Vec<Value>) {
    let workers: usize = args.by_size(200, 10_000, 10_000);
    let window = Duration::from_secs(args.by_size(2, 10, 30));
    println!("Heartbeats with usage samples, {workers} workers:\n");
    println!(
        "| cluster | leader CPU (% of one core) | followers | heartbeats/s | Raft entries/s |"
    );
    println!("|---|---:|---|---:|---:|");
    for (name, cluster) in [("with history", with), ("without history", without)] {
        let b = heartbeat_load(cluster, workers, window, true).await;
        let pct = |c: Option<f64>| c.map_or("?".into(), |c| format!("{c:.1}%"));
        println!(
            "| {name} | {} | {} | {:.0} | {:.1} |",
            pct(b.cpu[b.leader]),
            b.follower_cpu()
                .into_iter()
                .map(pct)
                .collect::<Vec<_>>()
                .join(", "),
            b.beats_per_s,
            b.entries_per_s
        );
        rows.push(json!({"scenario": "history-heartbeats", "system": name,
            "workers": workers, "ops_per_s": b.beats_per_s.round(),
            "raft_entries_per_s": b.entries_per_s, "leader_cpu_pct": b.cpu[b.leader],
            "follower_cpu_pct": b.follower_cpu()}));
    }
    println!();
}
