//! The `Cluster` service's calls: membership changes, a node's own status,
//! and a snapshot of the whole state for backup (`laneq cluster snapshot
//! save`).

use std::time::Duration;

use futures::{Stream, StreamExt};
use tonic::transport::Channel;

use super::{Client, ClientError, Credentials};
use crate::proto::v1::cluster_client::ClusterClient;
use crate::proto::v1::*;

impl Client {
    pub async fn add_node(&self, id: u64, addr: &str) -> Result<AddNodeResponse, ClientError> {
        let req = AddNodeRequest {
            id,
            addr: addr.to_string(),
        };
        self.unary_long(req, ClusterClient::add_node).await
    }

    pub async fn remove_node(&self, id: u64) -> Result<RemoveNodeResponse, ClientError> {
        let req = RemoveNodeRequest { id };
        self.unary(req, ClusterClient::remove_node).await
    }

    pub async fn transfer_leader(&self, id: u64) -> Result<TransferLeaderResponse, ClientError> {
        let req = TransferLeaderRequest { id };
        self.unary(req, ClusterClient::transfer_leader).await
    }

    pub async fn membership(&self) -> Result<MembershipResponse, ClientError> {
        self.unary(MembershipRequest {}, ClusterClient::membership)
            .await
    }

    /// Asks one node, and only that node, for its own status (no retries),
    /// over plaintext.
    pub async fn node_status(
        addr: &str,
        timeout: Duration,
    ) -> Result<NodeStatusResponse, ClientError> {
        let ch = crate::wire::endpoint_channel(addr);
        Self::status_over(ch, addr, timeout, Credentials::default()).await
    }

    /// [`Client::node_status`] with this client's transport (TLS or not)
    /// and credentials.
    pub async fn status_of(
        &self,
        addr: &str,
        timeout: Duration,
    ) -> Result<NodeStatusResponse, ClientError> {
        let ch = crate::wire::channel(addr, self.inner.tls.as_ref());
        Self::status_over(ch, addr, timeout, self.inner.credentials.clone()).await
    }

    async fn status_over(
        ch: Channel,
        addr: &str,
        timeout: Duration,
        credentials: Credentials,
    ) -> Result<NodeStatusResponse, ClientError> {
        let mut req = tonic::Request::new(NodeStatusRequest {});
        req.set_timeout(timeout);
        let mut c = ClusterClient::with_interceptor(ch, credentials);
        match tokio::time::timeout(timeout, c.node_status(req)).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) => Err(ClientError::Status(s)),
            Err(_) => Err(ClientError::Unavailable(format!(
                "{addr}: no answer within {timeout:?}"
            ))),
        }
    }

    /// Asks the leader for a consistent copy of the whole state (admin
    /// only): what it holds, then its bytes (a snapshot blob, `info.bytes`
    /// in all) in pieces. Opening follows the leader through the retry
    /// loop; a stream that breaks ends with its error, and the caller
    /// starts again.
    pub async fn save_snapshot(
        &self,
    ) -> Result<
        (
            SnapshotInfo,
            impl Stream<Item = Result<Vec<u8>, ClientError>> + Send + 'static,
        ),
        ClientError,
    > {
        let mut parts = self
            .unary(SaveSnapshotRequest {}, ClusterClient::save_snapshot)
            .await?;
        let info = match parts.next().await {
            Some(Ok(first)) => first.info.ok_or_else(|| {
                ClientError::Protocol("a snapshot stream began without its info".into())
            })?,
            Some(Err(s)) => return Err(ClientError::Status(s)),
            None => {
                return Err(ClientError::Protocol(
                    "the snapshot stream ended before it began".into(),
                ))
            }
        };
        Ok((
            info,
            parts.map(|p| p.map(|p| p.data).map_err(ClientError::Status)),
        ))
    }
}
