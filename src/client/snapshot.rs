//! A snapshot of the whole state, for backup (`laneq cluster snapshot save`).

use futures::{Stream, StreamExt};

use super::{Client, ClientError};
use crate::proto::v1::cluster_client::ClusterClient;
use crate::proto::v1::{SaveSnapshotRequest, SnapshotInfo};

impl Client {
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
