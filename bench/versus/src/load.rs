//! A closed-loop load: `clients` tasks each send one request, wait for its
//! answer, and send the next, for a fixed window. Latencies are kept whole
//! (no histogram buckets) and summarised at the end.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request: `(client index, sequence number)` to success or failure.
pub type Op = Arc<dyn Fn(usize, u64) -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

pub struct Outcome {
    pub ok: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Latencies of the successful requests, sorted.
    pub latencies: Vec<Duration>,
}

impl Outcome {
    pub fn per_s(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    pub fn pct_ms(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        ms(percentile(&self.latencies, q))
    }
}

pub async fn closed_loop(clients: usize, window: Duration, op: Op) -> Outcome {
    let start = Instant::now();
    let wall_start_ms = laneq::clock::now_ms();
    let deadline = start + window;
    let errors = Arc::new(AtomicU64::new(0));
    let all = Arc::new(Mutex::new(Vec::new()));
    // Acknowledgements by the second of the window they came in, counted by
    // each client on its own and added up at the end.
    let seconds = window.as_secs() as usize + 2;
    let per_second = Arc::new(Mutex::new(vec![0u64; seconds]));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (op, errors, all) = (op.clone(), errors.clone(), all.clone());
        let per_second = per_second.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let mut my_seconds = vec![0u64; seconds];
            let mut seq = 0;
            while Instant::now() < deadline {
                let t = Instant::now();
                if op(c, seq).await {
                    let done = Instant::now();
                    mine.push(done - t);
                    my_seconds[((done - start).as_secs() as usize).min(seconds - 1)] += 1;
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                seq += 1;
            }
            all.lock().expect("latencies").extend(mine);
            let mut total = per_second.lock().expect("per-second counts");
            for (sum, n) in total.iter_mut().zip(my_seconds) {
                *sum += n;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed();
    if std::env::var_os("LANEQ_BENCH_TIMELINE").is_some() {
        print_timeline(
            clients,
            wall_start_ms,
            &per_second.lock().expect("per-second counts"),
        );
    }
    let mut latencies = std::mem::take(&mut *all.lock().expect("latencies"));
    latencies.sort_unstable();
    Outcome {
        ok: latencies.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        elapsed,
        latencies,
    }
}

/// One line of acknowledgements per second, from the window's start in
/// UTC (to line up with node logs and RocksDB's LOG files).
fn print_timeline(clients: usize, wall_start_ms: u64, per_second: &[u64]) {
    let day = wall_start_ms / 1000 % 86_400;
    let counts: Vec<String> = per_second.iter().map(u64::to_string).collect();
    eprintln!(
        "timeline: {clients} clients from {:02}:{:02}:{:02}.{:03} UTC, acks per second: {}",
        day / 3600,
        day / 60 % 60,
        day % 60,
        wall_start_ms % 1000,
        counts.join(" ")
    );
}

/// The `q`-th percentile (0-100) of sorted samples.
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64) * q / 100.0) as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}
