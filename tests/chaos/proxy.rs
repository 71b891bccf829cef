//! A fault-injecting TCP proxy in front of every node, for partitions on
//! loopback without root.
//!
//! Node `i` listens on `127.0.0.<10+i>` and its peers know it by its proxy's
//! address on 127.0.0.1. Nodes dial peers from their own listen IP (see
//! `PeerNetwork::new`), so the proxy of node `j` tells who is calling by the
//! source address: another node, or a client (anything else). A cut link
//! between two nodes black-holes both ways, like a real partition: bytes on
//! open connections are read and dropped, new connections are accepted and
//! never answered, and when the link heals those connections are closed (the
//! stream lost data; TCP would have timed out) and new ones work.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The loopback address node `id` listens on.
pub fn node_ip(id: u64) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + id as u8))
}

fn node_of(ip: IpAddr) -> Option<u64> {
    match ip {
        IpAddr::V4(v4) if v4.octets()[..3] == [127, 0, 0] && v4.octets()[3] > 10 => {
            Some(u64::from(v4.octets()[3] - 10))
        }
        _ => None,
    }
}

/// The set of cut links, shared by every proxy. Links are unordered pairs.
#[derive(Clone)]
pub struct Links {
    cut: Arc<Mutex<BTreeSet<(u64, u64)>>>,
    changed: watch::Sender<u64>,
}

impl Links {
    pub fn new() -> Self {
        Self {
            cut: Arc::default(),
            changed: watch::channel(0).0,
        }
    }

    fn pair(a: u64, b: u64) -> (u64, u64) {
        (a.min(b), a.max(b))
    }

    pub fn is_cut(&self, a: u64, b: u64) -> bool {
        self.cut.lock().unwrap().contains(&Self::pair(a, b))
    }

    /// Cuts every link between a node of `side` and a node of `other`.
    pub fn cut_between(&self, side: &[u64], other: &[u64]) {
        let mut cut = self.cut.lock().unwrap();
        for &a in side {
            for &b in other {
                if a != b {
                    cut.insert(Self::pair(a, b));
                }
            }
        }
        drop(cut);
        self.changed.send_modify(|g| *g += 1);
    }

    pub fn heal_all(&self) {
        self.cut.lock().unwrap().clear();
        self.changed.send_modify(|g| *g += 1);
    }

    pub fn describe(&self) -> Vec<(u64, u64)> {
        self.cut.lock().unwrap().iter().copied().collect()
    }
}

/// Starts the proxy of node `id`: listens on `listen`, forwards to `upstream`.
pub async fn start(id: u64, listen: SocketAddr, upstream: SocketAddr, links: Links) {
    let listener = TcpListener::bind(listen)
        .await
        .unwrap_or_else(|e| panic!("proxy of node {id} cannot listen on {listen}: {e}"));
    tokio::spawn(async move {
        loop {
            let Ok((conn, from)) = listener.accept().await else {
                continue;
            };
            let _ = conn.set_nodelay(true);
            let source = node_of(from.ip());
            tokio::spawn(relay(id, source, conn, upstream, links.clone()));
        }
    });
}

/// Relays one connection from `source` (a node, or a client when `None`) to
/// node `target`, black-holing it while their link is cut.
async fn relay(
    target: u64,
    source: Option<u64>,
    mut down: TcpStream,
    upstream: SocketAddr,
    links: Links,
) {
    let cut = || source.is_some_and(|s| links.is_cut(s, target));
    if cut() {
        return black_hole(down, None, &links, source, target).await;
    }
    let Ok(Ok(mut up)) =
        tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(upstream)).await
    else {
        return;
    };
    let _ = up.set_nodelay(true);
    let mut changes = links.changed.subscribe();
    let (mut a, mut b) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        tokio::select! {
            r = down.read(&mut a) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => if up.write_all(&a[..n]).await.is_err() { return },
            },
            r = up.read(&mut b) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => if down.write_all(&b[..n]).await.is_err() { return },
            },
            _ = changes.changed() => {}
        }
        if cut() {
            return black_hole(down, Some(up), &links, source, target).await;
        }
    }
}

/// Reads and drops whatever arrives on either side until the link heals,
/// then closes both.
async fn black_hole(
    mut down: TcpStream,
    mut up: Option<TcpStream>,
    links: &Links,
    source: Option<u64>,
    target: u64,
) {
    let mut changes = links.changed.subscribe();
    let (mut a, mut b) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    let mut down_open = true;
    let mut up_open = up.is_some();
    loop {
        if !source.is_some_and(|s| links.is_cut(s, target)) {
            return;
        }
        tokio::select! {
            r = down.read(&mut a), if down_open => down_open = matches!(r, Ok(n) if n > 0),
            r = async { up.as_mut().expect("open").read(&mut b).await }, if up_open => {
                up_open = matches!(r, Ok(n) if n > 0)
            }
            _ = changes.changed() => {}
        }
    }
}
