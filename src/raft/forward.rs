//! The write path of any node: [`RaftNode::write`] proposes on the leader,
//! forwards from a follower, waits out an election, gives up on a leader
//! that is cut off, and answers only once this node has applied the write
//! (read-your-writes on whichever node was asked).
//!
//! Every step may leave a write's outcome unknown (a leader lost mid-flight,
//! a forward that timed out); the client then retries under the same
//! idempotency key, which apply honours once. How the timeouts here relate
//! to the client's is in ARCHITECTURE.md ("Timeouts and limits").

use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;

use super::peers::Forwarded;
use super::{NodeError, RaftNode};
use crate::model::{Response, Write, Writes};

/// How long a forwarded write or a read index may take before the caller
/// is told to retry.
pub(super) const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a write waits for a reachable leader during an election.
const LEADER_WAIT: Duration = Duration::from_secs(3);
/// How often a waiting write tries again when the leader does not change,
/// and how often a write in flight on the leader checks that it is not cut
/// off.
pub(super) const LEADER_POLL: Duration = Duration::from_millis(50);
/// How long a node waits for its own apply to reach an index it was told
/// of (a write's, or a read's).
pub(super) const READ_APPLY_TIMEOUT: Duration = Duration::from_secs(5);

tokio::task_local! {
    /// The leader that the writes of the request being served were forwarded
    /// to, if they were (see [`noting_forwards`]).
    static FORWARDED_TO: std::cell::RefCell<Option<(u64, String)>>;
}

/// Runs `serve` (the handling of one request) and tells which leader, if
/// any, its writes were forwarded to. The server passes that on to the
/// client, which sends its next writes there directly instead of through
/// this node: a forward costs a hop, and this node's work, on every write.
pub async fn noting_forwards<T>(
    serve: impl std::future::Future<Output = T>,
) -> (T, Option<(u64, String)>) {
    FORWARDED_TO
        .scope(std::cell::RefCell::new(None), async move {
            let out = serve.await;
            (out, FORWARDED_TO.with(|f| f.borrow_mut().take()))
        })
        .await
}

impl RaftNode {
    /// Applies a client write through Raft, and returns its outcome and the
    /// index of the entry that carried it. On a follower it is forwarded to
    /// the leader. While no leader is reachable (an election is under way)
    /// it waits for the next leader, up to [`LEADER_WAIT`]; the caller
    /// retries after that. Retrying is safe: the idempotency key applies a
    /// write once.
    pub async fn write(&self, write: Write) -> Result<(Response, u64), NodeError> {
        self.write_all(Writes::One(write)).await
    }

    /// Applies independent writes in one entry (one `SubmitEach` call's):
    /// one forward, one entry, one wait. Each applies under its own key; the
    /// response's reply is [`Reply::Batch`](crate::model::Reply::Batch), one
    /// response per write.
    pub async fn write_batch(&self, writes: Vec<Write>) -> Result<(Response, u64), NodeError> {
        self.write_all(Writes::Batch(writes)).await
    }

    /// The write path of [`RaftNode::write`] and [`RaftNode::write_batch`].
    async fn write_all(&self, writes: Writes) -> Result<(Response, u64), NodeError> {
        crate::model::validate_writes(&writes)
            .map_err(|e| NodeError::InvalidArgument(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        let (response, index) = loop {
            if let Some(e) = self.cut_off_leader() {
                // Waiting here would not help: let the client try another node.
                return Err(e);
            }
            let known = self.leader_id();
            let result = match self.write_as_leader(writes.clone()).await {
                Err(NodeError::NotLeader {
                    leader: Some((leader, addr)),
                    ..
                }) if !addr.is_empty() => self.forward_to(leader, addr, writes.clone()).await,
                other => other,
            };
            let retry = matches!(
                &result,
                Err(NodeError::NotLeader { .. }) | Err(NodeError::Unavailable(_))
            );
            if !retry || tokio::time::Instant::now() >= deadline {
                break result?;
            }
            self.wait_leader_change(known, deadline).await;
        };
        // Read-your-writes: whoever answers this write also reads it locally.
        self.sm
            .wait_applied(index, READ_APPLY_TIMEOUT)
            .await
            .map_err(|()| {
                NodeError::Unavailable(format!(
                    "the write was applied at index {index} but this node has not caught up \
                     yet; retry with the same idempotency key"
                ))
            })?;
        Ok((response, index))
    }

    /// Waits until this node sees a leader other than `old`, or a short poll
    /// interval (a leader we could not reach may be back), or `deadline`.
    async fn wait_leader_change(&self, old: Option<u64>, deadline: tokio::time::Instant) {
        // The server metrics change only with the leader, the vote, the
        // state or the membership; the full metrics change on every write.
        let mut rx = self.raft.server_metrics();
        let changed = async {
            loop {
                let now = rx.borrow_watched().current_leader;
                if now.is_some() && now != old {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        let poll = deadline.min(tokio::time::Instant::now() + LEADER_POLL);
        let _ = tokio::time::timeout_at(poll, changed).await;
    }

    /// Forwards to `leader`, giving up as soon as this node learns of another
    /// leader: a leader that froze or was cut off would otherwise hold the
    /// write until the forward times out. The caller then retries with the new
    /// leader, under the same idempotency key.
    async fn forward_to(
        &self,
        leader: u64,
        addr: String,
        writes: Writes,
    ) -> Result<(Response, u64), NodeError> {
        // The server metrics, not the full ones: those change on every write
        // and would wake every forward in flight each time.
        let mut rx = self.raft.server_metrics();
        let replaced = async {
            loop {
                let now = rx.borrow_watched().current_leader;
                if now.is_some_and(|l| l != leader) || rx.changed().await.is_err() {
                    return;
                }
            }
        };
        let forward = self.peers.forward(leader, &addr, writes, FORWARD_TIMEOUT);
        // Biased: when both are ready, the answer wins, and a run of the
        // simulation does not depend on tokio's random choice.
        let reply = tokio::select! {
            biased;
            reply = forward => reply?,
            () = replaced => return Err(NodeError::Unavailable(format!(
                "node {leader} stopped leading while the write was forwarded to it; its outcome \
                 is unknown: retry with the same idempotency key"
            ))),
        };
        match reply {
            Forwarded::Applied(response, index) => {
                // Outside `noting_forwards` (a write of the node's own, not
                // a request's) there is nobody to tell.
                let _ = FORWARDED_TO.try_with(|f| *f.borrow_mut() = Some((leader, addr)));
                Ok((response, index))
            }
            Forwarded::NotLeader(leader) => Err(NodeError::NotLeader {
                node: self.id,
                leader,
            }),
        }
    }
}
