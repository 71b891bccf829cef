//! `laneq.v1.Watch`: live views of a node's applied state as server
//! streams, on any node, followers included (see `proto/laneq/v1/watch.proto`
//! for what each sends).
//!
//! Each watch is a `follow` loop (the looking, pacing and ending) over a
//! `views` watcher (what it sends). A node serves at most
//! `[watch] max_watchers` at once: a slot is taken before anything else and
//! held by the stream until it ends or its watcher goes.
//!
//! **Architecture Invariant:** a watch only reads: it looks at the state
//! under the read lock, never across an await, and apply never waits for a
//! watcher.

mod follow;
mod views;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{Request, Response, Status};

use self::follow::{follow, Source, Watcher};
use self::views::{QueueWatch, QueuesWatch, TaskWatch, WorkersWatch};
use super::error::model_status;
use super::read_barrier;
use crate::config::WatchSettings;
use crate::model::State;
use crate::proto::v1 as pb;
use crate::proto::v1::watch_server::{Watch, WatchServer};
use crate::raft::{AppliedFollower, RaftNode};

/// A view watch looks at most this often while the state changes: the
/// changes in between are coalesced.
pub const VIEW_PACE: Duration = Duration::from_millis(200);
/// A task watch looks at most this often: it sends every transition all the
/// same, a little later under load.
pub const TASK_PACE: Duration = Duration::from_millis(50);

type Events<E> = Pin<Box<dyn Stream<Item = Result<E, Status>> + Send + 'static>>;

/// The `Watch` service of a node.
pub fn watch_server(
    node: Arc<RaftNode>,
    settings: &WatchSettings,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> WatchServer<WatchApi> {
    WatchServer::new(WatchApi {
        node,
        slots: Arc::new(Semaphore::new(settings.max_watchers)),
        max_watchers: settings.max_watchers,
        stopping,
    })
}

pub struct WatchApi {
    node: Arc<RaftNode>,
    /// One permit per watch open on this node.
    slots: Arc<Semaphore>,
    max_watchers: usize,
    /// True once the node shuts down: every watch then ends with
    /// UNAVAILABLE, so that it resumes elsewhere and the shutdown does not
    /// wait for it.
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl WatchApi {
    /// A slot for one more watch, or RESOURCE_EXHAUSTED.
    fn slot(&self) -> Result<OwnedSemaphorePermit, Status> {
        self.slots.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "this node serves at most {} watches at once ([watch] max_watchers); watch \
                 through another node, or later",
                self.max_watchers
            ))
        })
    }

    /// Opens a watch: takes a slot, waits for the read barrier, checks what
    /// `prepare` checks on the state, and follows from there.
    async fn open<W: Watcher>(
        &self,
        consistency: i32,
        from_index: u64,
        pace: Duration,
        prepare: impl FnOnce(&State) -> Result<W, Status>,
    ) -> Result<Response<Events<W::Event>>, Status> {
        let slot = self.slot()?;
        read_barrier(&self.node, consistency).await?;
        let watcher = prepare(&self.node.sm().state())?;
        let source = NodeSource {
            node: self.node.clone(),
            follower: self.node.sm().follow(),
            stopping: self.stopping.clone(),
        };
        let events = follow(source, watcher, pace, from_index, slot);
        Ok(Response::new(Box::pin(events)))
    }
}

/// A node's applied state, as a watch reads it.
struct NodeSource {
    node: Arc<RaftNode>,
    follower: AppliedFollower,
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl Source for NodeSource {
    fn read<T>(&mut self, f: impl FnOnce(u64, &State) -> T) -> T {
        // Marked seen first: an apply after this read wakes the watch (one
        // already in the state but not yet published wakes it once more).
        self.follower.mark_seen();
        let (index, state) = self.node.sm().state_at();
        f(index, &state)
    }

    fn changed(&mut self) -> impl Future<Output = bool> + Send {
        let (follower, stopping) = (&mut self.follower, &mut self.stopping);
        async move {
            let applied = tokio::select! {
                applied = follower.changed() => applied,
                _ = stopping.wait_for(|s| *s) => false,
            };
            applied && !*stopping.borrow()
        }
    }
}

#[tonic::async_trait]
impl Watch for WatchApi {
    type WatchQueueStream = Events<pb::QueueEvent>;
    type WatchQueuesStream = Events<pb::QueuesEvent>;
    type WatchTaskStream = Events<pb::TaskEvent>;
    type WatchWorkersStream = Events<pb::WorkersEvent>;

    async fn watch_queue(
        &self,
        req: Request<pb::WatchQueueRequest>,
    ) -> Result<Response<Self::WatchQueueStream>, Status> {
        let req = req.into_inner();
        crate::model::validate::name("name", &req.name).map_err(model_status)?;
        self.open(req.consistency, req.from_index, VIEW_PACE, |state| {
            let queue = state
                .queue(&req.name)
                .ok_or_else(|| Status::not_found(format!("name: no queue named {:?}", req.name)))?;
            Ok(QueueWatch {
                id: queue.id,
                last: None,
            })
        })
        .await
    }

    async fn watch_queues(
        &self,
        req: Request<pb::WatchQueuesRequest>,
    ) -> Result<Response<Self::WatchQueuesStream>, Status> {
        let req = req.into_inner();
        self.open(req.consistency, req.from_index, VIEW_PACE, |_| {
            Ok(QueuesWatch::default())
        })
        .await
    }

    async fn watch_task(
        &self,
        req: Request<pb::WatchTaskRequest>,
    ) -> Result<Response<Self::WatchTaskStream>, Status> {
        let req = req.into_inner();
        // Transitions after `from_index` are in the timeline whatever this
        // node has applied: the watch need not wait for it.
        self.open(req.consistency, 0, TASK_PACE, |state| {
            state
                .task(req.id)
                .ok_or_else(|| Status::not_found(format!("id: no task {}", req.id)))?;
            Ok(TaskWatch {
                id: req.id,
                after: (req.from_index > 0).then_some(req.from_index),
            })
        })
        .await
    }

    async fn watch_workers(
        &self,
        req: Request<pb::WatchWorkersRequest>,
    ) -> Result<Response<Self::WatchWorkersStream>, Status> {
        let req = req.into_inner();
        self.open(req.consistency, req.from_index, VIEW_PACE, |_| {
            Ok(WorkersWatch::default())
        })
        .await
    }
}
