//! What security costs (issue #23): a laneq cluster as `scripts/cluster up`
//! runs it (TLS on the client port, mutual TLS between the nodes, every
//! call checked against a token) beside one with `insecure = true`, on the
//! same loads: submits, linearizable reads, and a new client's first call
//! (where the TLS handshake is paid, as by each `laneq` command).

use std::sync::Arc;
use std::time::{Duration, Instant};

use laneq::client::{Client, ReadConsistency};
use serde_json::{json, Value};

use crate::load::{ms, percentile, Op};
use crate::paired::{compare, Side};
use crate::scenarios::{laneq_client, laneq_submit, QUEUE};
use crate::systems::{Cluster, Security};
use crate::Args;

const INSECURE: &str = "insecure";
const SECURE: &str = "TLS + token";

pub async fn security(args: &Args) -> Vec<Value> {
    let bin = &args.laneq_bin;
    let insecure = Cluster::laneq_secured(bin, INSECURE, "", Security::Off).await;
    let secure = Cluster::laneq_secured(bin, SECURE, "", Security::On).await;
    let rounds = args.by_size(1, 3, 5);
    let mut rows = Vec::new();
    println!("## Security: the cost of TLS and tokens\n");

    println!("Submits (laneq's client, 256 B):\n");
    let submits = [
        Side {
            name: SECURE,
            cluster: &secure,
            op: laneq_submit(laneq_client(&secure).await),
        },
        Side {
            name: INSECURE,
            cluster: &insecure,
            op: laneq_submit(laneq_client(&insecure).await),
        },
    ];
    let counts = args.by_size(vec![1, 4], vec![1, 64, 256], vec![1, 64, 256]);
    compare(
        args,
        "security-submit",
        &submits,
        &counts,
        rounds,
        &mut rows,
    )
    .await;

    println!("Linearizable reads of one queue (GetQueue):\n");
    let reads = [
        Side {
            name: SECURE,
            cluster: &secure,
            op: get_queue(laneq_client(&secure).await),
        },
        Side {
            name: INSECURE,
            cluster: &insecure,
            op: get_queue(laneq_client(&insecure).await),
        },
    ];
    let counts = args.by_size(vec![1, 4], vec![1, 64], vec![1, 64]);
    compare(args, "security-read", &reads, &counts, rounds, &mut rows).await;

    first_calls(args, [&secure, &insecure], &mut rows).await;
    rows
}

fn get_queue(client: Client) -> Op {
    Arc::new(move |_, _| {
        let client = client.clone();
        Box::pin(
            async move { (client.get_queue(QUEUE, ReadConsistency::Linearizable).await).is_ok() },
        )
    })
}

/// A new client's first call, one after the other, alternating between the
/// clusters: connection, handshake (TLS on the secure one) and one stale
/// read, as a `laneq queue get` pays them.
async fn first_calls(args: &Args, clusters: [&Cluster; 2], rows: &mut Vec<Value>) {
    let n = args.by_size(5, 100, 300);
    let mut took: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for i in 0..n {
        for side in [i % 2, 1 - i % 2] {
            let client = clusters[side].client(Duration::from_secs(5));
            let t = Instant::now();
            (client.get_queue(QUEUE, ReadConsistency::Stale).await)
                .expect("a first call on a new connection");
            took[side].push(t.elapsed());
        }
    }
    println!("A new client's first call (connect, handshake, one read), {n} each:\n");
    println!("| cluster | p50 ms | p99 ms |\n|---|---:|---:|");
    for (cluster, mut t) in clusters.into_iter().zip(took) {
        t.sort();
        let (p50, p99) = (ms(percentile(&t, 50.0)), ms(percentile(&t, 99.0)));
        println!("| {} | {p50:.2} | {p99:.2} |", cluster.name);
        rows.push(
            json!({"scenario": "security-first-call", "system": cluster.name,
            "calls": n, "p50_ms": p50, "p99_ms": p99}),
        );
    }
    println!();
}
