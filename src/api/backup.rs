//! `Cluster.SaveSnapshot`: a consistent copy of the whole state, streamed
//! from the leader in pieces (see `raft::backup`).

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

use super::error::node_status;
use crate::proto::v1 as pb;
use crate::raft::{RaftNode, Taken};

/// The blob goes out in pieces of this many bytes, well under the message
/// size limits.
const PIECE_BYTES: usize = 1 << 20;

pub type SnapshotStream =
    Pin<Box<dyn Stream<Item = Result<pb::SaveSnapshotResponse, Status>> + Send>>;

/// Checks leadership before answering, then takes the copy inside the
/// stream, so that a copy that takes long runs past no call deadline. One
/// save at a time per node (`saving`): each holds a whole copy in memory.
pub async fn save_snapshot(
    node: Arc<RaftNode>,
    saving: Arc<Semaphore>,
) -> Result<SnapshotStream, Status> {
    let permit = saving.try_acquire_owned().map_err(|_| {
        Status::resource_exhausted(
            "a snapshot save is already under way on this node; retry when it ends",
        )
    })?;
    node.check_backup().await.map_err(node_status)?;
    let taken = futures::stream::once(async move {
        let info = |t: &Taken| pb::SnapshotInfo {
            cluster: node.cluster.clone(),
            node_id: node.id,
            index: t.index,
            term: t.term,
            bytes: t.blob.len() as u64,
            tasks: t.tasks,
            queues: t.queues,
            taken_at_ms: crate::clock::now_ms(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let taken = node.take_backup().await;
        taken.map(|t| (info(&t), t.blob, permit))
    });
    Ok(Box::pin(taken.flat_map(|taken| match taken {
        Ok((info, blob, permit)) => pieces(info, blob, permit).boxed(),
        Err(e) => futures::stream::once(async move { Err(node_status(e)) }).boxed(),
    })))
}

/// `info`, then the blob in pieces; the permit goes with the last.
fn pieces(
    info: pb::SnapshotInfo,
    blob: Vec<u8>,
    permit: OwnedSemaphorePermit,
) -> impl Stream<Item = Result<pb::SaveSnapshotResponse, Status>> + Send {
    let first = pb::SaveSnapshotResponse {
        info: Some(info),
        data: Vec::new(),
    };
    let count = blob.len().div_ceil(PIECE_BYTES);
    let rest = (0..count).map(move |i| {
        let _held = &permit;
        let end = ((i + 1) * PIECE_BYTES).min(blob.len());
        pb::SaveSnapshotResponse {
            info: None,
            data: blob[i * PIECE_BYTES..end].to_vec(),
        }
    });
    futures::stream::iter(std::iter::once(first).chain(rest).map(Ok))
}
