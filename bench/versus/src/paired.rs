//! Two laneq clusters measured side by side on the same load: rounds of
//! one window on each, alternating which goes first, so that a drift of
//! the machine's speed falls on both and the ratio of each round holds.

use serde_json::{json, Value};

use crate::load::Op;
use crate::scenarios::submit_window;
use crate::systems::Cluster;
use crate::Args;

/// One of the two clusters, and the request its clients send.
pub(crate) struct Side<'a> {
    pub name: &'a str,
    pub cluster: &'a Cluster,
    pub op: Op,
}

/// For each count of `clients`, `rounds` rounds of one window per side;
/// prints a Markdown table of every round (ops/s, the ratio first / second,
/// p50 and p99 of each), then the ratio's median and range. The windows'
/// JSON rows, tagged with `scenario` and their round, go into `rows`.
pub(crate) async fn compare(
    args: &Args,
    scenario: &str,
    sides: &[Side<'_>; 2],
    clients: &[usize],
    rounds: usize,
    rows: &mut Vec<Value>,
) {
    let [a, b] = [sides[0].name, sides[1].name];
    println!(
        "| clients | round | {a} ops/s | {b} ops/s | {a} / {b} | {a} p50 / p99 ms | {b} p50 / p99 ms |"
    );
    println!("|---:|---:|---:|---:|---:|---|---|");
    for &count in clients {
        let mut ratios = Vec::new();
        for round in 0..rounds {
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            let mut figures = [(0.0, 0.0, 0.0); 2];
            for i in order {
                let (this, other) = (&sides[i], &sides[1 - i]);
                let mut window_rows = Vec::new();
                let w = submit_window(
                    this.name,
                    this.cluster,
                    Some(other.cluster),
                    count,
                    args.window(),
                    this.op.clone(),
                    &mut window_rows,
                )
                .await;
                for mut r in window_rows {
                    r["scenario"] = json!(scenario);
                    r["round"] = json!(round + 1);
                    rows.push(r);
                }
                let o = &w.outcome;
                figures[i] = (o.per_s(), o.pct_ms(50.0), o.pct_ms(99.0));
            }
            let ratio = figures[0].0 / figures[1].0.max(1.0);
            ratios.push(ratio);
            println!(
                "| {count} | {} | {:.0} | {:.0} | {ratio:.3} | {:.2} / {:.2} | {:.2} / {:.2} |",
                round + 1,
                figures[0].0,
                figures[1].0,
                figures[0].1,
                figures[0].2,
                figures[1].1,
                figures[1].2
            );
        }
        ratios.sort_by(f64::total_cmp);
        println!(
            "\n{count} clients: {a} / {b}, median {:.3}, range {:.3}-{:.3} over {rounds} rounds\n",
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1]
        );
    }
}
