//! The retry loop that every unary call goes through: try the preferred
//! endpoint, follow leader hints, back off and move on when a node is
//! unreachable, until the deadline. A call is a generated client's method
//! and its request (`self.unary(req, QueuesClient::create_queue)`); each
//! attempt builds that client on its endpoint's channel and sends its own
//! copy of the request. It never retries a refusal: only a status that
//! says the node could not serve the call now.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tonic::{Code, Status};

use super::credentials::{Credentials, Transport};
use super::Client;
use crate::proto::v1::cluster_client::ClusterClient;
use crate::proto::v1::config_client::ConfigClient;
use crate::proto::v1::metrics_client::MetricsClient;
use crate::proto::v1::pools_client::PoolsClient;
use crate::proto::v1::projects_client::ProjectsClient;
use crate::proto::v1::queues_client::QueuesClient;
use crate::proto::v1::tasks_client::TasksClient;
use crate::proto::v1::tokens_client::TokensClient;
use crate::proto::v1::watch_client::WatchClient;
use crate::proto::v1::workers_client::WorkersClient;
use crate::wire::{LEADER_ADDR_HEADER, LEADER_ID_HEADER};

const BACKOFF_START: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_millis(200);
/// Time allowed to one attempt against one node.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The cluster answered with a refusal (bad input, not found, ...).
    #[error("{}", .0.message())]
    Status(Status),
    /// No node could serve the call before the deadline.
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl ClientError {
    pub fn code(&self) -> Code {
        match self {
            ClientError::Status(s) => s.code(),
            ClientError::Unavailable(_) => Code::Unavailable,
            ClientError::Protocol(_) => Code::Internal,
        }
    }
}

/// Whether a status means "try again, maybe elsewhere". ABORTED is not: in
/// laneq it means a read-modify-write lost to a concurrent change, which the
/// caller must redo from a fresh read.
fn retryable(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled
    ) || (s.code() == Code::Unknown && s.message().contains("transport"))
}

/// Whether the node's answer was not HTTP/2 at all: most often a node
/// that speaks TLS called in plaintext. Not retried: every node of a
/// cluster is set up alike, and the caller must change its settings.
fn garbled(s: &Status) -> bool {
    s.code() == Code::Internal && s.message().starts_with("h2 protocol error")
}

/// A generated gRPC client, built afresh on each attempt's channel (cheap:
/// it wraps the channel), since each attempt may go to another endpoint.
pub(super) trait Service {
    fn connect(channel: Channel, credentials: Credentials) -> Self;
}

macro_rules! services {
    ($($client:ident),* $(,)?) => {$(
        impl Service for $client<Transport> {
            fn connect(channel: Channel, credentials: Credentials) -> Self {
                $client::with_interceptor(channel, credentials)
            }
        }
    )*};
}

services!(
    ClusterClient,
    ConfigClient,
    MetricsClient,
    PoolsClient,
    ProjectsClient,
    QueuesClient,
    TasksClient,
    TokensClient,
    WatchClient,
    WorkersClient,
);

impl Client {
    /// Makes the unary call `f` against the cluster with leader discovery
    /// and retries, giving each attempt a client of service `S` and its own
    /// copy of `req`. Writes are safe to retry because every write carries
    /// an idempotency key.
    pub(super) async fn unary<S, Req, T, F>(&self, req: Req, f: F) -> Result<T, ClientError>
    where
        S: Service,
        Req: Clone,
        F: AsyncFn(&mut S, Req) -> Result<tonic::Response<T>, Status>,
    {
        self.call_with(ATTEMPT_TIMEOUT, req, f).await
    }

    /// Like [`Client::unary`], for operations whose one attempt may take
    /// long (a learner catching up): each attempt may use the whole deadline.
    pub(super) async fn unary_long<S, Req, T, F>(&self, req: Req, f: F) -> Result<T, ClientError>
    where
        S: Service,
        Req: Clone,
        F: AsyncFn(&mut S, Req) -> Result<tonic::Response<T>, Status>,
    {
        self.call_with(self.inner.deadline, req, f).await
    }

    async fn call_with<S, Req, T, F>(
        &self,
        attempt_timeout: Duration,
        req: Req,
        f: F,
    ) -> Result<T, ClientError>
    where
        S: Service,
        Req: Clone,
        F: AsyncFn(&mut S, Req) -> Result<tonic::Response<T>, Status>,
    {
        let start = Instant::now();
        let mut backoff = BACKOFF_START;
        let mut last_error;
        let mut tries_since_backoff = 0;
        loop {
            let (index, addr, channel) = self.pick();
            let left = self.inner.deadline.saturating_sub(start.elapsed());
            let mut service = S::connect(channel, self.inner.credentials.clone());
            let call = f(&mut service, req.clone());
            let attempt = tokio::time::timeout(left.min(attempt_timeout), call).await;
            match attempt {
                Ok(Ok(resp)) => {
                    // A node that forwarded this call's writes names their
                    // leader: the next calls go there directly.
                    match leader_hint(resp.metadata()) {
                        Some(leader) if leader != addr => self.prefer(&leader),
                        _ => self.inner.preferred.store(index, Ordering::Relaxed),
                    }
                    return Ok(resp.into_inner());
                }
                Ok(Err(status)) if retryable(&status) => {
                    last_error = format!("{addr}: {}", status.message());
                    match leader_hint(status.metadata()) {
                        Some(leader) if leader != addr => self.prefer(&leader),
                        _ => self.advance(index),
                    }
                }
                Ok(Err(status)) if garbled(&status) => {
                    let hint = match self.inner.tls {
                        None => " (does it speak TLS? give its CA: --cacert, LANEQ_CACERT)",
                        Some(_) => "",
                    };
                    let message = format!("{addr}: {}{hint}", status.message());
                    return Err(ClientError::Unavailable(message));
                }
                Ok(Err(status)) => return Err(ClientError::Status(status)),
                Err(_) => {
                    last_error = format!("{addr}: no answer within {attempt_timeout:?}");
                    self.advance(index);
                }
            }
            if start.elapsed() >= self.inner.deadline {
                return Err(ClientError::Unavailable(last_error));
            }
            tries_since_backoff += 1;
            if tries_since_backoff >= self.len() {
                tries_since_backoff = 0;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }

    fn len(&self) -> usize {
        self.inner
            .endpoints
            .lock()
            .expect("endpoints poisoned")
            .len()
    }

    pub(super) fn pick(&self) -> (usize, String, Channel) {
        let eps = self.inner.endpoints.lock().expect("endpoints poisoned");
        let i = self.inner.preferred.load(Ordering::Relaxed) % eps.len();
        (i, eps[i].0.clone(), eps[i].1.clone())
    }

    /// Moves on from the endpoint tried first (a watch whose stream broke
    /// there resumes elsewhere).
    pub(super) fn skip_preferred(&self) {
        let n = self.len();
        self.advance(self.inner.preferred.load(Ordering::Relaxed) % n);
    }

    pub(super) fn advance(&self, from: usize) {
        let n = self.len();
        let _ = self.inner.preferred.compare_exchange(
            from,
            (from + 1) % n,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Makes `addr` the endpoint tried next, adding it when unknown.
    fn prefer(&self, addr: &str) {
        let mut eps = self.inner.endpoints.lock().expect("endpoints poisoned");
        let index = match eps.iter().position(|(e, _)| e == addr) {
            Some(i) => i,
            None => {
                let channel = crate::wire::channel(addr, self.inner.tls.as_ref());
                eps.push((addr.to_string(), channel));
                eps.len() - 1
            }
        };
        self.inner.preferred.store(index, Ordering::Relaxed);
    }
}

fn leader_hint(md: &tonic::metadata::MetadataMap) -> Option<String> {
    md.get(LEADER_ID_HEADER)?;
    md.get(LEADER_ADDR_HEADER)?
        .to_str()
        .ok()
        .map(str::to_string)
}
