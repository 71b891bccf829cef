//! The physical floor: what one fsync and one loopback round trip cost on
//! this machine. A replicated write needs at least one of each.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
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

pub async fn run() -> Vec<Value> {
    let (mut fsync, mut rtt) =
        tokio::task::spawn_blocking(|| (fsync_latencies(300), loopback_latencies(5000)))
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
    vec![
        json!({"scenario": "floor", "system": "disk", "probe": "fsync_4k",
               "p50_ms": ms(percentile(&fsync, 50.0)), "p99_ms": ms(percentile(&fsync, 99.0))}),
        json!({"scenario": "floor", "system": "loopback", "probe": "tcp_round_trip",
               "p50_ms": ms(percentile(&rtt, 50.0)), "p99_ms": ms(percentile(&rtt, 99.0))}),
    ]
}
