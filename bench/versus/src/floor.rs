//! The physical floor: what one fsync and one loopback round trip cost on
//! this machine (a replicated write needs at least one of each), and what
//! the first write to a fresh page of memory costs (a store that grows or
//! appends takes new pages all the time).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::load::{ms, percentile};

/// fsync of a 4 KiB write, in the directory the clusters use (the temp dir).
fn fsync_latencies(n: usize) -> Vec<Duration> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut f = std::fs::File::create(dir.path().join("probe")).expect("probe file");
    let block = [0x5au8; 4096];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f.write_all(&block).expect("write");
        f.sync_data().expect("fdatasync");
        out.push(t.elapsed());
    }
    out
}

/// Round trips of one byte over a loopback TCP connection with NODELAY.
fn loopback_latencies(n: usize) -> Vec<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let echo = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_nodelay(true).expect("nodelay");
        let mut b = [0u8; 1];
        while s.read_exact(&mut b).is_ok() {
            if s.write_all(&b).is_err() {
                break;
            }
        }
    });
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let mut out = Vec::with_capacity(n);
    let mut b = [1u8; 1];
    for _ in 0..n {
        let t = Instant::now();
        s.write_all(&b).expect("send");
        s.read_exact(&mut b).expect("receive");
        out.push(t.elapsed());
    }
    drop(s);
    let _ = echo.join();
    out
}

/// Pages in one first-touch probe: 64 MiB.
const PROBE_PAGES: usize = 16 * 1024;

/// The CPU time, in µs, of the first write to each 4 KiB page of fresh
/// anonymous memory: a page fault and the zeroing of the page, and on a
/// virtual machine whose host takes back the memory the guest frees, a
/// fault on the host as well. This machine's varies from run to run, and so
/// does every store's CPU per write with it (see bench/RESULTS.md, "Why
/// some runs are slow: fresh memory"). It is the
/// calling thread's CPU time, so that a loaded machine's preemptions do not
/// count.
pub fn first_touch_us(pages: usize) -> f64 {
    const PAGE: usize = 4096;
    let len = pages * PAGE;
    // SAFETY: a private anonymous mapping of `len` bytes, written only
    // inside its bounds and unmapped before returning.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert!(p != libc::MAP_FAILED, "mmap of {len} bytes failed");
        let base = p.cast::<u8>();
        let t = thread_cpu_us();
        for i in 0..pages {
            std::ptr::write_volatile(base.add(i * PAGE), 1);
        }
        let us = (thread_cpu_us() - t) / pages as f64;
        libc::munmap(p, len);
        us
    }
}

/// The mean time, in µs, of appending a 4 KiB block to a new file, without
/// fsync: the page cache takes a fresh page for each (a log's appends).
fn page_cache_append_us(pages: usize) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut f = std::fs::File::create(dir.path().join("append")).expect("probe file");
    let block = [0x5au8; 4096];
    let t = Instant::now();
    for _ in 0..pages {
        f.write_all(&block).expect("write");
    }
    t.elapsed().as_secs_f64() * 1e6 / pages as f64
}

/// Samples [`first_touch_us`] on a thread of its own while a window runs:
/// 4 MiB every 250 ms (about 2 ms of one core a second).
pub struct TouchSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<f64>>,
}

impl TouchSampler {
    pub fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                samples.push(first_touch_us(1024));
                std::thread::sleep(Duration::from_millis(250));
            }
            samples
        });
        Self { stop, thread }
    }

    /// The mean of the samples taken, in µs per page.
    pub fn finish(self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self.thread.join().expect("first-touch sampler");
        samples.iter().sum::<f64>() / samples.len().max(1) as f64
    }
}

pub async fn run() -> Vec<Value> {
    let (mut fsync, mut rtt, touch, append) = tokio::task::spawn_blocking(|| {
        (
            fsync_latencies(300),
            loopback_latencies(5000),
            first_touch_us(PROBE_PAGES),
            page_cache_append_us(PROBE_PAGES),
        )
    })
    .await
    .expect("probes");
    fsync.sort_unstable();
    rtt.sort_unstable();
    println!("## The physical floor\n");
    println!("| probe | p50 | p99 |\n|---|---:|---:|");
    println!(
        "| fsync of a 4 KiB write (fdatasync) | {:.3} ms | {:.3} ms |",
        ms(percentile(&fsync, 50.0)),
        ms(percentile(&fsync, 99.0))
    );
    println!(
        "| loopback TCP round trip | {:.3} ms | {:.3} ms |\n",
        ms(percentile(&rtt, 50.0)),
        ms(percentile(&rtt, 99.0))
    );
    println!(
        "First write to a fresh 4 KiB page, mean of 64 MiB: {touch:.2} µs of CPU in anonymous \
         memory, {append:.2} µs appended to a new file (page cache, no fsync).\n"
    );
    vec![
        json!({"scenario": "floor", "system": "disk", "probe": "fsync_4k",
               "p50_ms": ms(percentile(&fsync, 50.0)), "p99_ms": ms(percentile(&fsync, 99.0))}),
        json!({"scenario": "floor", "system": "loopback", "probe": "tcp_round_trip",
               "p50_ms": ms(percentile(&rtt, 50.0)), "p99_ms": ms(percentile(&rtt, 99.0))}),
        json!({"scenario": "floor", "system": "memory", "probe": "first_touch_4k",
               "mean_us": round2(touch)}),
        json!({"scenario": "floor", "system": "disk", "probe": "page_cache_append_4k",
               "mean_us": round2(append)}),
    ]
}

/// `x` to two decimals, for the JSON.
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The calling thread's CPU time, in µs.
fn thread_cpu_us() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `t` is.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    t.tv_sec as f64 * 1e6 + t.tv_nsec as f64 / 1e3
}
