//! `laneq queue metrics`, `laneq worker stats` and `laneq worker activity`:
//! the replicated metrics history as tables for people (with sparklines on a
//! terminal) or JSON for programs.

use std::io::IsTerminal;

use clap::Args;
use serde_json::{json, Value};

use super::output::{self, Output};
use super::{Failure, GlobalArgs};
use crate::client::Range;
use crate::proto::v1::{QueuePoint, Span, Stat, StatPoint, WorkerMetric};

const RANGE_HELP: &str = "The length of each point. Durations are a number and a unit, combined at will: 500ms, 30s, 15m, \
6h, 7d, 2w, 1h30m. The interval is rounded to a multiple of a stored resolution (10s, 1m and \
10m by default, kept 6h, 7d and 90d); without --interval the node picks the finest resolution \
that holds the whole range. A range older than a resolution keeps is answered with what exists, \
and the output says so.";

/// The time range of a history command.
#[derive(Args, Debug, Clone)]
pub struct RangeArgs {
    /// How far back to look, from now.
    #[arg(long, default_value = "1h", value_name = "DURATION")]
    since: String,
    /// The length of each point (default: chosen by the node).
    #[arg(long, value_name = "DURATION", long_help = RANGE_HELP)]
    interval: Option<String>,
}

impl RangeArgs {
    fn range(&self) -> Result<Range, Failure> {
        let since = parse_duration("--since", &self.since)?;
        let interval = match &self.interval {
            Some(i) => parse_duration("--interval", i)?,
            None => 0,
        };
        let now = crate::clock::now_ms();
        Ok(Range {
            from_ms: now.saturating_sub(since),
            to_ms: now,
            interval_ms: interval,
        })
    }
}

#[derive(Args, Debug)]
#[command(after_help = QUEUE_HELP)]
pub struct QueueMetricsArgs {
    /// One queue, point by point; none: every queue, one line each, after
    /// the aggregate of all queues.
    queue: Option<String>,
    #[command(flatten)]
    range: RangeArgs,
}

const QUEUE_HELP: &str = "Examples:
  laneq queue metrics --since 6h              # every queue, one line each
  laneq queue metrics gpu --since 1d --interval 10m
  laneq queue metrics gpu -o json | jq '.queues[1].points[-1]'

QUEUED is the number of tasks waiting (min, time-weighted average, max per point); WAIT is \
how long the tasks leased in a point had waited in the queue. Every node keeps the same \
history (it is replicated), so any node answers.";

#[derive(Args, Debug)]
#[command(after_help = WORKER_HELP)]
pub struct WorkerStatsArgs {
    /// The worker's name.
    worker: String,
    /// A metric to show (repeat for several): cpu, memory, gpu, gpu_memory,
    /// net_rx, net_tx, busy, alive. Default: all it reported. With one
    /// metric, the output is point by point.
    #[arg(long = "metric", value_name = "METRIC")]
    metrics: Vec<String>,
    #[command(flatten)]
    range: RangeArgs,
}

const WORKER_HELP: &str = "Examples:
  laneq worker stats gpu-7 --since 1h
  laneq worker stats gpu-7 --metric gpu --since 6h --interval 1m

cpu and gpu are percentages, memory and gpu_memory bytes used, net_rx and net_tx bytes per \
second, each as min, average and max of the samples the worker's heartbeats carried; busy and \
alive are the share of each point the worker held a task, or was not lost.";

#[derive(Args, Debug)]
pub struct ActivityArgs {
    #[command(flatten)]
    range: RangeArgs,
}

/// Milliseconds in `text`, a duration such as `90s`, `15m` or `1h30m`;
/// `flag` names it in the error.
pub fn parse_duration(flag: &str, text: &str) -> Result<u64, Failure> {
    let bad = |why: &str| {
        Failure::invalid(format!(
            "{flag}: {text:?} is not a duration ({why}); use a number and a unit, e.g. 30s, \
             15m, 6h, 7d or 1h30m"
        ))
    };
    let mut total: u64 = 0;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad("it is empty"));
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad("a number must come first"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| bad("the number is too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "" => return Err(bad("a unit must follow the number: ms, s, m, h, d or w")),
            _ => return Err(bad("the units are ms, s, m, h, d and w")),
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(unit)
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(|| bad("it is too long"))?;
    }
    if total == 0 {
        return Err(bad("it is zero"));
    }
    Ok(total)
}

/// A sparkline of `values`: one block (▁ to █) per value, scaled between
/// their minimum and maximum, at most `width` wide (neighbours merged by
/// their maximum).
pub fn sparkline(values: &[f64], width: usize) -> String {
    const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    if values.is_empty() || width == 0 {
        return String::new();
    }
    let per = values.len().div_ceil(width);
    let merged: Vec<f64> = values
        .chunks(per)
        .map(|c| c.iter().copied().fold(f64::MIN, f64::max))
        .collect();
    let lo = merged.iter().copied().fold(f64::MAX, f64::min);
    let hi = merged.iter().copied().fold(f64::MIN, f64::max);
    merged
        .iter()
        .map(|&v| {
            let i = if hi > lo {
                ((v - lo) / (hi - lo) * 7.0).round() as usize
            } else {
                0
            };
            BLOCKS[i.min(7)]
        })
        .collect()
}

fn on_terminal() -> bool {
    std::io::stdout().is_terminal()
}

fn stat_json(s: &Option<Stat>) -> Value {
    match s {
        Some(s) => json!({"min": s.min, "avg": s.avg, "max": s.max, "count": s.count}),
        None => Value::Null,
    }
}

fn span_json(s: &Option<Span>) -> Value {
    let s = s.unwrap_or_default();
    json!({
        "from_ms": s.from_ms, "to_ms": s.to_ms, "interval_ms": s.interval_ms,
        "resolution_ms": s.resolution_ms, "retained_from_ms": s.retained_from_ms,
        "partial": s.partial, "applied_ms": s.applied_ms,
    })
}

/// The lines above a table: what it covers, and what is missing.
fn print_span(s: &Option<Span>) {
    let s = s.unwrap_or_default();
    println!(
        "from {} to {}, every {} (stored every {})",
        output::time(s.from_ms),
        output::time(s.to_ms),
        output::duration(s.interval_ms),
        output::duration(s.resolution_ms)
    );
    if s.partial {
        println!(
            "note: points every {} are kept since {} only; this is what exists (ask for a \
             longer --interval to see further back)",
            output::duration(s.resolution_ms),
            output::time(s.retained_from_ms)
        );
    }
}

/// A number with at most one decimal.
fn num(v: f64) -> String {
    if v.fract().abs() < 0.05 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn ms(v: f64) -> String {
    output::duration(v.round().max(0.0) as u64)
}

/// The min, average and max of a series of stats, and its trend line.
fn summary(stats: &[&Stat]) -> Option<(f64, f64, f64)> {
    let first = stats.first()?;
    let (mut lo, mut hi, mut sum) = (first.min, first.max, 0.0);
    for s in stats {
        (lo, hi, sum) = (lo.min(s.min), hi.max(s.max), sum + s.avg);
    }
    Some((lo, sum / stats.len() as f64, hi))
}

fn queue_row(name: &str, points: &[QueuePoint], trend: bool) -> Vec<String> {
    let queued: Vec<&Stat> = points.iter().filter_map(|p| p.queued.as_ref()).collect();
    let waits: Vec<&Stat> = points.iter().filter_map(|p| p.wait_ms.as_ref()).collect();
    let leased: u64 = waits.iter().map(|s| s.count).sum();
    let wait_avg = waits.iter().map(|s| s.avg * s.count as f64).sum::<f64>() / leased.max(1) as f64;
    let mut row = vec![name.to_string()];
    match summary(&queued) {
        Some((lo, avg, hi)) => row.extend([num(lo), num(avg), num(hi)]),
        None => row.extend(["-".into(), "-".into(), "-".into()]),
    }
    row.push(leased.to_string());
    match summary(&waits) {
        Some((_, _, hi)) => row.extend([ms(wait_avg), ms(hi)]),
        None => row.extend(["-".into(), "-".into()]),
    }
    if trend {
        let avgs: Vec<f64> = queued.iter().map(|s| s.avg).collect();
        row.push(sparkline(&avgs, 40));
    }
    row
}

pub async fn queue_metrics(g: &GlobalArgs, args: QueueMetricsArgs) -> Result<(), Failure> {
    let client = g.client()?;
    let named: Vec<String> = args.queue.iter().cloned().collect();
    let resp = client
        .queue_metrics(&named, args.range.range()?, g.consistency())
        .await?;
    if g.output == Output::Json {
        let queues: Vec<Value> = resp
            .queues
            .iter()
            .map(|q| {
                let points: Vec<Value> = q
                    .points
                    .iter()
                    .map(|p| {
                        json!({"time_ms": p.time_ms, "queued": stat_json(&p.queued),
                               "wait_ms": stat_json(&p.wait_ms)})
                    })
                    .collect();
                json!({"queue": if q.queue.is_empty() { Value::Null } else { json!(q.queue) },
                       "points": points})
            })
            .collect();
        output::json(&json!({"span": span_json(&resp.span), "queues": queues}));
        return Ok(());
    }
    print_span(&resp.span);
    let trend = on_terminal();
    if let Some(name) = &args.queue {
        let q = resp.queues.iter().find(|q| &q.queue == name);
        let points = q.map(|q| q.points.as_slice()).unwrap_or_default();
        print_queue_points(name, points, trend);
        return Ok(());
    }
    let mut headers = vec![
        "queue",
        "queued min",
        "avg",
        "max",
        "leased",
        "wait avg",
        "max",
    ];
    if trend {
        headers.push("queued over time");
    }
    let rows: Vec<Vec<String>> = resp
        .queues
        .iter()
        .map(|q| {
            let name = if q.queue.is_empty() {
                "(all queues)"
            } else {
                &q.queue
            };
            queue_row(name, &q.points, trend)
        })
        .collect();
    output::table(&headers, &rows);
    Ok(())
}

fn print_queue_points(name: &str, points: &[QueuePoint], trend: bool) {
    if trend {
        let avgs: Vec<f64> = points
            .iter()
            .filter_map(|p| p.queued.as_ref())
            .map(|s| s.avg)
            .collect();
        println!("{name}: queued {}", sparkline(&avgs, 60));
    }
    let cell = |s: &Option<Stat>, f: fn(f64) -> String| -> [String; 3] {
        match s {
            Some(s) => [f(s.min), f(s.avg), f(s.max)],
            None => ["-".into(), "-".into(), "-".into()],
        }
    };
    let rows: Vec<Vec<String>> = points
        .iter()
        .map(|p| {
            let mut row = vec![output::time(p.time_ms)];
            row.extend(cell(&p.queued, num));
            row.push(p.wait_ms.as_ref().map_or(0, |s| s.count).to_string());
            let [_, avg, max] = cell(&p.wait_ms, ms);
            row.extend([avg, max]);
            row
        })
        .collect();
    let headers = [
        "time",
        "queued min",
        "avg",
        "max",
        "leased",
        "wait avg",
        "max",
    ];
    output::table(&headers, &rows);
}

/// How a worker metric's values read.
fn worker_value(metric: &str, v: f64) -> String {
    match metric {
        "cpu" | "gpu" => format!("{v:.1}%"),
        "memory" | "gpu_memory" => super::worker::bytes(v.round().max(0.0) as u64),
        "net_rx" | "net_tx" => format!("{}/s", super::worker::bytes(v.round().max(0.0) as u64)),
        _ => format!("{:.0}%", v * 100.0),
    }
}

fn metric_name(m: &WorkerMetric) -> String {
    match m.variant.as_str() {
        "" => m.metric.clone(),
        v => format!("{} {v}", m.metric),
    }
}

fn points_json(points: &[StatPoint]) -> Vec<Value> {
    points
        .iter()
        .map(|p| json!({"time_ms": p.time_ms, "stat": stat_json(&p.stat)}))
        .collect()
}

pub async fn worker_stats(g: &GlobalArgs, args: WorkerStatsArgs) -> Result<(), Failure> {
    let client = g.client()?;
    let resp = client
        .worker_stats(
            &args.worker,
            &args.metrics,
            args.range.range()?,
            g.consistency(),
        )
        .await?;
    if g.output == Output::Json {
        let metrics: Vec<Value> = resp
            .metrics
            .iter()
            .map(|m| json!({"metric": m.metric, "variant": m.variant, "points": points_json(&m.points)}))
            .collect();
        let v = json!({"span": span_json(&resp.span), "worker": resp.worker, "metrics": metrics});
        output::json(&v);
        return Ok(());
    }
    print_span(&resp.span);
    let shown: Vec<&WorkerMetric> = resp
        .metrics
        .iter()
        .filter(|m| !m.points.is_empty())
        .collect();
    if shown.is_empty() {
        println!("no samples from worker {} in this range", resp.worker);
        return Ok(());
    }
    print_worker_metrics(&shown);
    Ok(())
}

/// One metric point by point; several, one line each.
fn print_worker_metrics(shown: &[&WorkerMetric]) {
    let trend = on_terminal();
    if let [m] = shown {
        let rows: Vec<Vec<String>> = m
            .points
            .iter()
            .filter_map(|p| Some((p.time_ms, p.stat.as_ref()?)))
            .map(|(t, s)| {
                let v = |x| worker_value(&m.metric, x);
                vec![
                    output::time(t),
                    v(s.min),
                    v(s.avg),
                    v(s.max),
                    s.count.to_string(),
                ]
            })
            .collect();
        output::table(&["time", "min", "avg", "max", "samples"], &rows);
        return;
    }
    let mut headers = vec!["metric", "min", "avg", "max"];
    if trend {
        headers.push("avg over time");
    }
    let rows: Vec<Vec<String>> = shown
        .iter()
        .map(|m| {
            let stats: Vec<&Stat> = m.points.iter().filter_map(|p| p.stat.as_ref()).collect();
            let (lo, avg, hi) = summary(&stats).unwrap_or_default();
            let v = |x| worker_value(&m.metric, x);
            let mut row = vec![metric_name(m), v(lo), v(avg), v(hi)];
            if trend {
                let avgs: Vec<f64> = stats.iter().map(|s| s.avg).collect();
                row.push(sparkline(&avgs, 40));
            }
            row
        })
        .collect();
    output::table(&headers, &rows);
}

pub async fn worker_activity(g: &GlobalArgs, args: ActivityArgs) -> Result<(), Failure> {
    let client = g.client()?;
    let resp = client
        .worker_activity(args.range.range()?, g.consistency())
        .await?;
    if g.output == Output::Json {
        let points: Vec<Value> = resp
            .points
            .iter()
            .map(|p| json!({"time_ms": p.time_ms, "active": stat_json(&p.active), "total": stat_json(&p.total)}))
            .collect();
        output::json(&json!({"span": span_json(&resp.span), "points": points}));
        return Ok(());
    }
    print_span(&resp.span);
    if on_terminal() {
        let line = |f: fn(&crate::proto::v1::ActivityPoint) -> Option<&Stat>| {
            let avgs: Vec<f64> = resp.points.iter().filter_map(f).map(|s| s.avg).collect();
            sparkline(&avgs, 60)
        };
        println!("active {}", line(|p| p.active.as_ref()));
        println!("total  {}", line(|p| p.total.as_ref()));
    }
    let rows: Vec<Vec<String>> = resp
        .points
        .iter()
        .map(|p| {
            let avg = |s: &Option<Stat>| s.as_ref().map_or("-".into(), |s| num(s.avg));
            let max = |s: &Option<Stat>| s.as_ref().map_or("-".into(), |s| num(s.max));
            vec![
                output::time(p.time_ms),
                avg(&p.active),
                max(&p.active),
                avg(&p.total),
                max(&p.total),
            ]
        })
        .collect();
    output::table(&["time", "active avg", "max", "total avg", "max"], &rows);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_bad_ones_say_why() {
        assert_eq!(parse_duration("--since", "6h").unwrap(), 6 * 3_600_000);
        assert_eq!(parse_duration("--since", "1h30m").unwrap(), 5_400_000);
        assert_eq!(parse_duration("--since", "500ms").unwrap(), 500);
        assert_eq!(parse_duration("--since", "2w").unwrap(), 14 * 86_400_000);
        for (bad, why) in [
            ("6", "a unit must follow"),
            ("h", "a number must come first"),
            ("6x", "the units are"),
            ("", "empty"),
            ("0s", "zero"),
            ("99999999999999999999d", "too large"),
        ] {
            let e = parse_duration("--since", bad).unwrap_err();
            assert!(e.message.contains(why), "{bad:?}: {}", e.message);
            assert!(e.message.starts_with("--since"), "{}", e.message);
            assert_eq!(e.code, 2);
        }
    }

    #[test]
    fn sparklines_scale_and_fit() {
        assert_eq!(
            sparkline(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], 8),
            "▁▂▃▄▅▆▇█"
        );
        assert_eq!(sparkline(&[3.0, 3.0], 10), "▁▁");
        assert_eq!(sparkline(&[0.0, 7.0, 0.0, 0.0], 2), "█▁");
        assert_eq!(sparkline(&[], 5), "");
    }
}
