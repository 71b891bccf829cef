//! The client side of the peer protocol: openraft's `RaftNetworkV2` over one
//! reused tonic channel per peer. Channels connect lazily, every call honours
//! openraft's RPC deadline, and a peer that cannot be reached is reported as
//! `Unreachable` so that openraft backs off. A secure node dials over mutual
//! TLS with its peer certificate; a certificate reload drops the channels,
//! so that the next call connects with the new files.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use openraft::errors::{
    NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::StreamAppendResult;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend};
use serde::de::DeserializeOwned;
use tonic::transport::Channel;

use super::{Snapshot, SnapshotData, TypeConfig, Vote};
use crate::codec::{decode, encode, encode_as, FORMAT_V2};
use crate::proto::raft::raft_peer_client::RaftPeerClient;
use crate::proto::raft::{RaftBlob, SnapshotChunk};
use crate::tls::NodeTls;

/// Largest gRPC message between peers. An append batch holds at most
/// [`MAX_PAYLOAD_ENTRIES`] entries of at most ~1.1 MiB each (a task's payload
/// and command at their limits), so a batch always fits.
pub const PEER_MESSAGE_MAX_BYTES: usize = 256 * 1024 * 1024;

// Whatever a peer's message holds decodes within the codec's bound.
const _: () = assert!(PEER_MESSAGE_MAX_BYTES <= crate::codec::DECODE_MAX_BYTES);

/// Most entries in one append RPC.
pub const MAX_PAYLOAD_ENTRIES: u64 = 128;
/// An append message stops growing past this many bytes (estimated, and
/// never fewer than one entry): the rest goes in the next. A follower that
/// fell behind is otherwise sent up to [`MAX_PAYLOAD_ENTRIES`] large entries
/// at once, a message too big to send and store within the RPC deadline,
/// sent again and again, and never catches up.
const APPEND_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Time allowed to an append at least. openraft's deadline for it is the
/// heartbeat interval (25 ms by default), which a loaded machine misses now
/// and then; each miss counts the follower unreachable and pauses its
/// replication with a backoff, and when both followers miss, commits wait.
const APPEND_MIN_TIMEOUT: Duration = Duration::from_millis(250);
/// Time allowed to an append, per MiB, on top of that.
const APPEND_MS_PER_MIB: u64 = 100;
/// Size of one snapshot chunk on the wire.
const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;
/// Time allowed to send a snapshot, per MiB, on top of the RPC deadline.
const SNAPSHOT_MS_PER_MIB: u64 = 200;

/// Makes and caches one lazily connected channel per peer address.
#[derive(Clone)]
pub struct PeerNetwork {
    channels: Arc<Mutex<Channels>>,
    /// The source address of connections to peers (see [`PeerNetwork::new`]).
    local_ip: Option<IpAddr>,
    /// Mutual TLS to peers; `None` on an insecure node.
    tls: Option<Arc<NodeTls>>,
}

/// The cached channels, made with the TLS files of `generation`.
#[derive(Default)]
struct Channels {
    generation: u64,
    by_addr: HashMap<String, Channel>,
}

impl PeerNetwork {
    /// A network whose connections to peers leave from the IP the node
    /// listens on, when that is one address rather than a wildcard. Peers
    /// then see each node's traffic coming from the address they know it by,
    /// on a multi-homed host as on loopback (the chaos harness tells nodes
    /// apart by it to cut links between them).
    pub fn new(listen: &str, tls: Option<Arc<NodeTls>>) -> Self {
        let local_ip = listen
            .parse::<SocketAddr>()
            .ok()
            .map(|a| a.ip())
            .filter(|ip| !ip.is_unspecified());
        Self {
            channels: Arc::default(),
            local_ip,
            tls,
        }
    }

    /// The shared channel to `addr`. Connecting happens on first use.
    pub fn channel(&self, addr: &str) -> Channel {
        let mut map = self.channels.lock().expect("channel map poisoned");
        let generation = self.tls.as_ref().map_or(0, |t| t.generation());
        if map.generation != generation {
            map.by_addr.clear();
            map.generation = generation;
        }
        if let Some(c) = map.by_addr.get(addr) {
            return c.clone();
        }
        let endpoint = match &self.tls {
            None => crate::wire::endpoint(addr),
            Some(tls) => crate::wire::tls_endpoint(addr, &tls.dial()).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "peer {addr}: no TLS endpoint; calls will fail");
                crate::wire::endpoint("invalid.address.invalid:1")
            }),
        };
        let channel = endpoint.local_address(self.local_ip).connect_lazy();
        map.by_addr.insert(addr.to_string(), channel.clone());
        channel
    }

    pub fn client(&self, addr: &str) -> RaftPeerClient<Channel> {
        RaftPeerClient::new(self.channel(addr))
            .max_decoding_message_size(PEER_MESSAGE_MAX_BYTES)
            .max_encoding_message_size(PEER_MESSAGE_MAX_BYTES)
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Self::Network {
        PeerClient {
            target,
            network: self.clone(),
            addr: node.addr.clone(),
        }
    }
}

/// openraft's client of one peer. It asks the network for the channel at
/// each call (a map lookup), so that a certificate reload reaches it.
pub struct PeerClient {
    target: u64,
    network: PeerNetwork,
    addr: String,
}

fn status_to_rpc(target: u64, s: tonic::Status) -> RPCError<TypeConfig> {
    match s.code() {
        tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::DeadlineExceeded => {
            RPCError::Unreachable(Unreachable::new(&openraft::AnyError::error(format!(
                "node {target}: {}",
                s.message()
            ))))
        }
        _ => RPCError::Network(NetworkError::new(&openraft::AnyError::error(format!(
            "node {target}: {s}"
        )))),
    }
}

fn request<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.set_timeout(timeout);
    req
}

impl PeerClient {
    /// Sends one request, encoded, and decodes the remote `Result`.
    async fn call<Resp, F, Fut>(
        &mut self,
        data: Vec<u8>,
        timeout: Duration,
        f: F,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Resp: DeserializeOwned,
        F: FnOnce(RaftPeerClient<Channel>, tonic::Request<RaftBlob>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<RaftBlob>, tonic::Status>>,
    {
        let blob = RaftBlob { data };
        let reply = f(self.network.client(&self.addr), request(blob, timeout))
            .await
            .map_err(|s| status_to_rpc(self.target, s))?;
        remote_result(&reply.into_inner().data)
    }
}

/// A peer's answer: the `Result` its Raft returned, encoded. An answer that
/// cannot be read is a network error; a refusal makes the peer unreachable
/// for now, so that openraft backs off.
fn remote_result<Resp: DeserializeOwned>(data: &[u8]) -> Result<Resp, RPCError<TypeConfig>> {
    let result: Result<Resp, RaftError<TypeConfig>> =
        decode(data).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
    result.map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
}

/// The time allowed to an append of `bytes` (see [`APPEND_MIN_TIMEOUT`]).
fn append_timeout(option: &RPCOption, bytes: usize) -> Duration {
    option.hard_ttl().max(APPEND_MIN_TIMEOUT)
        + Duration::from_millis(APPEND_MS_PER_MIB * (bytes >> 20) as u64)
}

/// Cuts `rpc` to the entries that fit in [`APPEND_MAX_BYTES`] (at least
/// one): whether it cut any, and the estimated size of those kept.
fn cut_to_budget(rpc: &mut AppendEntriesRequest<TypeConfig>) -> (bool, usize) {
    let (keep, bytes) = within_budget(&rpc.entries, APPEND_MAX_BYTES);
    let cut = keep < rpc.entries.len();
    rpc.entries.truncate(keep);
    (cut, bytes)
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let (partial, bytes) = cut_to_budget(&mut rpc);
        let last = rpc.entries.last().map(|e| e.log_id);
        let timeout = append_timeout(&option, bytes);
        let reply = self
            .call(encode_as(FORMAT_V2, &rpc), timeout, |mut c, r| async move {
                c.append_entries(r).await
            })
            .await?;
        Ok(match reply {
            // The follower has the prefix sent; openraft sends the rest next.
            AppendEntriesResponse::Success if partial => {
                AppendEntriesResponse::PartialSuccess(last)
            }
            other => other,
        })
    }

    /// Appends over one gRPC stream per replication session, one at a time:
    /// a request with entries goes out, its answer comes back, and only then
    /// is the next request taken from openraft. Taking it late is what
    /// batches: openraft builds a request when asked, from every entry the
    /// follower lacks, so entries that arrive while an append is out travel
    /// together in the next, as with openraft's sequential calls. A request
    /// without entries, which only carries a new commit index, goes out at
    /// once and holds nobody up (see [`Turn`]). The stream spares each
    /// append the setup of a call of its own.
    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<
            BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>,
            RPCError<TypeConfig>,
        >,
    >
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + OptionalSend + Unpin + 'static,
    {
        let target = self.target;
        let mut client = self.network.client(&self.addr);
        // The longest an answer may take once its request is out: the
        // deadline of an append of the largest size sent.
        let patience = append_timeout(&option, APPEND_MAX_BYTES);
        Box::pin(async move {
            let mut input = Box::pin(input);
            // The first request before the connection: making it is where
            // openraft waits out its backoff after an error, so a follower
            // that is down is not called in a tight loop.
            let Some(first) = input.next().await else {
                return Ok(Box::pin(futures::stream::empty()) as BoxStream<'s, _>);
            };
            let turn = Arc::new(Turn::default());
            let requests = futures::stream::once(futures::future::ready(first)).chain(input);
            let answers = client
                .stream_append(outgoing(requests, turn.clone()))
                .await
                .map_err(|s| status_to_rpc(target, s))?
                .into_inner();
            let answers = futures::stream::unfold(Some(answers), move |answers| {
                let turn = turn.clone();
                async move {
                    let mut answers = answers?;
                    let item = loop {
                        // Nothing asked, the whole patience; else what is left of it.
                        let wait = patience.saturating_sub(turn.waited().unwrap_or_default());
                        match tokio::time::timeout(wait, answers.next()).await {
                            // An idle stream is no fault, nor a request sent
                            // while the wait ran.
                            Err(_) if turn.waited().is_none_or(|w| w < patience) => continue,
                            Err(_) => {
                                break Err(RPCError::Unreachable(Unreachable::new(
                                    &openraft::AnyError::error(format!(
                                        "node {target}: no answer to an append within {patience:?}"
                                    )),
                                )))
                            }
                            Ok(None) => return None,
                            Ok(Some(Err(status))) => break Err(status_to_rpc(target, status)),
                            Ok(Some(Ok(blob))) => {
                                turn.answered();
                                match remote_result(&blob.data) {
                                    Ok(answer) => return Some((Ok(answer), Some(answers))),
                                    Err(e) => break Err(e),
                                }
                            }
                        }
                    };
                    // After an error the stream ends.
                    Some((item, None))
                }
            });
            Ok(Box::pin(answers) as BoxStream<'s, _>)
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(encode(&rpc), option.hard_ttl(), |mut c, r| async move {
            c.vote(r).await
        })
        .await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(encode(&rpc), option.hard_ttl(), |mut c, r| async move {
            c.pre_vote(r).await
        })
        .await
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(encode(&req), option.hard_ttl(), |mut c, r| async move {
            c.transfer_leader(r).await
        })
        .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let header = encode(&(vote, snapshot.meta));
        let blob = snapshot.snapshot.into_inner();
        let mib = (blob.len() / (1024 * 1024)) as u64 + 1;
        let timeout = option.hard_ttl() + Duration::from_millis(SNAPSHOT_MS_PER_MIB * mib);
        let mut chunks: Vec<SnapshotChunk> = blob
            .chunks(SNAPSHOT_CHUNK_BYTES)
            .map(|c| SnapshotChunk {
                header: vec![],
                data: c.to_vec(),
                done: false,
            })
            .collect();
        if chunks.is_empty() {
            chunks.push(SnapshotChunk::default());
        }
        chunks[0].header = header;
        chunks.last_mut().expect("at least one chunk").done = true;
        let mut client = self.network.client(&self.addr);
        let target = self.target;
        let send = async move {
            let reply = client
                .install_snapshot(request(tokio_stream::iter(chunks), timeout))
                .await
                .map_err(|s| status_to_rpc(target, s))?;
            remote_result::<SnapshotResponse<TypeConfig>>(&reply.into_inner().data)
        };
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            res = send => res.map_err(StreamingError::from),
        }
    }
}

/// Whose turn it is on an append stream: the next request waits until the
/// answer to the last one with entries has come back. A request without
/// entries only advances the follower's commit index: it goes out as soon
/// as openraft makes it, and the next request need not wait for its answer,
/// so that a follower learns of a commit at once (and applies it, for
/// follower reads and leases) without delaying the next entries.
#[derive(Default)]
struct Turn {
    /// The requests whose answers have not come back, oldest first: when
    /// each went out, and whether it carried entries. Answers come in order.
    out: Mutex<VecDeque<(Instant, bool)>>,
    answered: tokio::sync::Notify,
}

impl Turn {
    fn sent(&self, entries: bool) {
        let mut out = self.out.lock().expect("turn lock");
        out.push_back((Instant::now(), entries));
    }

    fn answered(&self) {
        self.out.lock().expect("turn lock").pop_front();
        self.answered.notify_one();
    }

    /// How long the oldest request out has waited for its answer, if one is
    /// out.
    fn waited(&self) -> Option<Duration> {
        let out = self.out.lock().expect("turn lock");
        out.front().map(|(at, _)| at.elapsed())
    }

    /// Waits until no request with entries is out.
    async fn wait(&self) {
        loop {
            let answered = self.answered.notified();
            let busy = {
                let out = self.out.lock().expect("turn lock");
                out.iter().any(|&(_, entries)| entries)
            };
            if !busy {
                return;
            }
            answered.await;
        }
    }
}

/// The messages of an append stream, each once the answer to the last one
/// with entries has come back ([`Turn`]). A request over the size budget goes out cut short and
/// ends the stream: openraft sends the rest in a new one.
fn outgoing<S>(input: S, turn: Arc<Turn>) -> impl Stream<Item = RaftBlob> + Send + 'static
where
    S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Unpin + Send + 'static,
{
    futures::stream::unfold((input, false), move |(mut input, cut)| {
        let turn = turn.clone();
        async move {
            if cut {
                return None;
            }
            turn.wait().await;
            let mut rpc = input.next().await?;
            turn.sent(!rpc.entries.is_empty());
            let (cut, _) = cut_to_budget(&mut rpc);
            let blob = RaftBlob {
                data: encode_as(FORMAT_V2, &rpc),
            };
            Some((blob, (input, cut)))
        }
    })
}

/// How many of `entries`, from the first, fit in `budget` bytes (at least
/// one), and their estimated size.
fn within_budget(entries: &[super::Entry], budget: usize) -> (usize, usize) {
    let mut bytes = 0;
    for (i, e) in entries.iter().enumerate() {
        let size = super::log_store::entry_bytes(e);
        if i > 0 && bytes + size > budget {
            return (i, bytes);
        }
        bytes += size;
    }
    (entries.len(), bytes)
}
