//! The retry loop: try the preferred endpoint, follow leader hints, back off
//! and move on when a node is unreachable, until the deadline.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tonic::{Code, Status};

use super::Client;
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

impl Client {
    /// Runs `f` against the cluster with leader discovery and retries.
    /// Writes are safe to retry because every write carries an idempotency key.
    pub(super) async fn call<T, F, Fut>(&self, f: F) -> Result<T, ClientError>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.call_with(ATTEMPT_TIMEOUT, f).await
    }

    /// Like [`Client::call`], for operations whose one attempt may take long
    /// (a learner catching up): each attempt may use the whole deadline.
    pub(super) async fn call_long<T, F, Fut>(&self, f: F) -> Result<T, ClientError>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.call_with(self.inner.deadline, f).await
    }

    async fn call_with<T, F, Fut>(&self, attempt_timeout: Duration, f: F) -> Result<T, ClientError>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let start = Instant::now();
        let mut backoff = BACKOFF_START;
        let mut last_error;
        let mut tries_since_backoff = 0;
        loop {
            let (index, addr, channel) = self.pick();
            let left = self.inner.deadline.saturating_sub(start.elapsed());
            let attempt = tokio::time::timeout(left.min(attempt_timeout), f(channel)).await;
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

    fn pick(&self) -> (usize, String, Channel) {
        let eps = self.inner.endpoints.lock().expect("endpoints poisoned");
        let i = self.inner.preferred.load(Ordering::Relaxed) % eps.len();
        (i, eps[i].0.clone(), eps[i].1.clone())
    }

    fn advance(&self, from: usize) {
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
                eps.push((addr.to_string(), crate::wire::endpoint_channel(addr)));
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
