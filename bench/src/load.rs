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
    let deadline = start + window;
    let errors = Arc::new(AtomicU64::new(0));
    let all = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (op, errors, all) = (op.clone(), errors.clone(), all.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let mut seq = 0;
            while Instant::now() < deadline {
                let t = Instant::now();
                if op(c, seq).await {
                    mine.push(t.elapsed());
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                seq += 1;
            }
            all.lock().expect("latencies").extend(mine);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed();
    let mut latencies = std::mem::take(&mut *all.lock().expect("latencies"));
    latencies.sort_unstable();
    Outcome {
        ok: latencies.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        elapsed,
        latencies,
    }
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
