//! The serving side of the peer protocol: decodes openraft messages, hands
//! them to the local Raft, and serves forwarded writes and read indexes.

use std::sync::Arc;

use futures::StreamExt;
use serde::Serialize;
use tonic::{Request, Response, Status, Streaming};

use super::{NodeError, RaftNode, SnapshotMeta, Vote};
use crate::codec::{decode, decode_as, encode, FORMAT_V2};
use crate::proto::raft::raft_peer_server::RaftPeer;
use crate::proto::raft::{
    ForwardRequest, ForwardResponse, RaftBlob, ReadIndexRequest, ReadIndexResponse, SnapshotChunk,
};

/// Largest snapshot a node accepts.
const SNAPSHOT_MAX_BYTES: usize = 8 * 1024 * 1024 * 1024;

pub struct PeerService {
    node: Arc<RaftNode>,
}

impl PeerService {
    pub fn new(node: Arc<RaftNode>) -> Self {
        Self { node }
    }
}

fn bad(e: std::io::Error) -> Status {
    Status::invalid_argument(format!("undecodable peer message: {e}"))
}

fn blob<T: Serialize>(value: &T) -> Response<RaftBlob> {
    Response::new(RaftBlob {
        data: encode(value),
    })
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    type StreamAppendStream = futures::stream::BoxStream<'static, Result<RaftBlob, Status>>;

    async fn stream_append(
        &self,
        req: Request<Streaming<RaftBlob>>,
    ) -> Result<Response<Self::StreamAppendStream>, Status> {
        // A request that cannot be read ends the input: the answers to the
        // requests before it still go back, then the stream ends, and the
        // leader starts a new one from where the answers stopped.
        let requests = req.into_inner().scan((), |(), blob| {
            let decoded = blob
                .map_err(|s| s.to_string())
                .and_then(|b| decode_as(FORMAT_V2, &b.data).map_err(|e| e.to_string()));
            futures::future::ready(match decoded {
                Ok(rpc) => Some(rpc),
                Err(e) => {
                    tracing::warn!(error = %e, "append stream ended on an unreadable request");
                    None
                }
            })
        });
        let answers = self.node.raft().stream_append(requests).map(|result| {
            Ok(RaftBlob {
                data: encode(
                    &result.map_err(openraft::errors::RaftError::<super::TypeConfig>::Fatal),
                ),
            })
        });
        Ok(Response::new(Box::pin(answers)))
    }

    async fn append_entries(&self, req: Request<RaftBlob>) -> Result<Response<RaftBlob>, Status> {
        let rpc = decode_as(FORMAT_V2, &req.into_inner().data).map_err(bad)?;
        Ok(blob(&self.node.raft().append_entries(rpc).await))
    }

    async fn vote(&self, req: Request<RaftBlob>) -> Result<Response<RaftBlob>, Status> {
        let rpc = decode(&req.into_inner().data).map_err(bad)?;
        Ok(blob(&self.node.raft().vote(rpc).await))
    }

    async fn pre_vote(&self, req: Request<RaftBlob>) -> Result<Response<RaftBlob>, Status> {
        let rpc = decode(&req.into_inner().data).map_err(bad)?;
        Ok(blob(&self.node.raft().pre_vote(rpc).await))
    }

    async fn transfer_leader(&self, req: Request<RaftBlob>) -> Result<Response<RaftBlob>, Status> {
        let rpc = decode(&req.into_inner().data).map_err(bad)?;
        let result = self.node.raft().handle_transfer_leader(rpc).await;
        Ok(blob(&result.map_err(
            openraft::errors::RaftError::<super::TypeConfig>::Fatal,
        )))
    }

    async fn install_snapshot(
        &self,
        req: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftBlob>, Status> {
        let mut stream = req.into_inner();
        let mut header: Option<(Vote, SnapshotMeta)> = None;
        let mut data = Vec::new();
        let mut done = false;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if header.is_none() {
                header = Some(decode(&chunk.header).map_err(bad)?);
            }
            if data.len() + chunk.data.len() > SNAPSHOT_MAX_BYTES {
                return Err(Status::resource_exhausted(
                    "snapshot larger than this node accepts",
                ));
            }
            data.extend_from_slice(&chunk.data);
            if chunk.done {
                done = true;
                break;
            }
        }
        let Some((vote, meta)) = header else {
            return Err(Status::invalid_argument("empty snapshot stream"));
        };
        if !done {
            return Err(Status::aborted("snapshot stream ended early"));
        }
        let snapshot = super::Snapshot {
            meta,
            snapshot: std::io::Cursor::new(data),
        };
        let result = self.node.raft().install_full_snapshot(vote, snapshot).await;
        Ok(blob(&result.map_err(
            openraft::errors::RaftError::<super::TypeConfig>::Fatal,
        )))
    }

    async fn forward(
        &self,
        req: Request<ForwardRequest>,
    ) -> Result<Response<ForwardResponse>, Status> {
        let write = decode(&req.into_inner().write).map_err(bad)?;
        match self.node.write_as_leader(write).await {
            Ok((response, index)) => Ok(Response::new(ForwardResponse {
                response: encode(&response),
                index,
                ..Default::default()
            })),
            Err(NodeError::NotLeader { leader, .. }) => {
                let (leader_id, leader_addr) = leader.unwrap_or_default();
                Ok(Response::new(ForwardResponse {
                    not_leader: true,
                    leader_id,
                    leader_addr,
                    ..Default::default()
                }))
            }
            Err(e) => Err(Status::unavailable(e.to_string())),
        }
    }

    async fn read_index(
        &self,
        _req: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexResponse>, Status> {
        let index = self
            .node
            .read_index()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(ReadIndexResponse { index }))
    }
}
