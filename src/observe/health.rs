//! Whether this node should be sent requests: the `grpc.health.v1.Health`
//! service (overall, under the empty name, and for each `laneq.v1`
//! service) and `/readyz` answer from the one [`Health`].
//!
//! A node serves once it knows a leader and has applied every entry it
//! knew to be committed one poll earlier. The poll's lag is the point: under
//! steady writes the commit index is always a little ahead of apply, and a
//! node that keeps up applies, within a poll, what was committed at its
//! start; one that falls behind (restarting, catching up from a snapshot)
//! does not. From the first SIGTERM it is draining, and says so for good,
//! while it goes on serving until the server stops (see `server::run`).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tonic_health::server::{HealthReporter, HealthService};
use tonic_health::ServingStatus;

use crate::proto::v1::SERVICES;
use crate::raft::RaftNode;

/// How often the node's readiness is recomputed, and so the most a commit
/// index may be ahead of apply in a node that counts as caught up.
pub const HEALTH_POLL: Duration = Duration::from_millis(100);

/// Why a node serves or does not; what `/readyz` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Readiness {
    /// Not yet decided: the first poll has not run.
    Starting = 0,
    /// No leader is known: an uninitialised cluster, or an election.
    NoLeader = 1,
    /// A leader is known, but the node has not applied what was committed.
    CatchingUp = 2,
    Serving = 3,
    /// SIGTERM received: load balancers should move away.
    Draining = 4,
}

impl Readiness {
    fn of(code: u8) -> Self {
        match code {
            1 => Readiness::NoLeader,
            2 => Readiness::CatchingUp,
            3 => Readiness::Serving,
            4 => Readiness::Draining,
            _ => Readiness::Starting,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Readiness::Starting => "starting",
            Readiness::NoLeader => "no leader is known",
            Readiness::CatchingUp => "catching up with the committed log",
            Readiness::Serving => "serving",
            Readiness::Draining => "draining: shutting down",
        }
    }
}

/// The readiness of a node that is not draining: it knows a leader
/// (`leader`) and has applied (`applied`) at least what it knew to be
/// committed at the previous poll (`committed_before`).
pub fn readiness(leader: Option<u64>, applied: u64, committed_before: u64) -> Readiness {
    match leader {
        None => Readiness::NoLeader,
        Some(_) if applied < committed_before => Readiness::CatchingUp,
        Some(_) => Readiness::Serving,
    }
}

/// The node's readiness, and the gRPC health service's statuses kept equal
/// to it.
pub struct Health {
    reporter: HealthReporter,
    readiness: AtomicU8,
}

impl Health {
    /// Starts NOT_SERVING, overall and for every `laneq.v1` service.
    pub async fn new() -> Arc<Self> {
        let health = Arc::new(Health {
            reporter: HealthReporter::new(),
            readiness: AtomicU8::new(Readiness::Starting as u8),
        });
        health.publish(false).await;
        health
    }

    /// The `grpc.health.v1.Health` service over these statuses.
    pub fn service(&self) -> tonic_health::pb::health_server::HealthServer<HealthService> {
        tonic_health::pb::health_server::HealthServer::new(HealthService::from_health_reporter(
            self.reporter.clone(),
        ))
    }

    pub fn readiness(&self) -> Readiness {
        Readiness::of(self.readiness.load(Ordering::Acquire))
    }

    pub fn serving(&self) -> bool {
        self.readiness() == Readiness::Serving
    }

    /// From now on NOT_SERVING, whatever the node's state.
    pub async fn drain(&self) {
        super::systemd::stopping();
        self.readiness
            .store(Readiness::Draining as u8, Ordering::Release);
        self.publish(false).await;
    }

    /// Recomputes readiness every [`HEALTH_POLL`] until the node drains.
    pub fn spawn_watch(self: &Arc<Self>, node: Arc<RaftNode>) {
        let health = self.clone();
        tokio::spawn(async move {
            let mut committed_before = node.status().cluster_committed_index;
            loop {
                let status = node.status();
                let now = readiness(status.leader_id, status.applied_index, committed_before);
                committed_before = status.cluster_committed_index;
                if !health.update(now).await {
                    return;
                }
                tokio::time::sleep(HEALTH_POLL).await;
            }
        });
    }

    /// Moves to `now` unless draining; publishes a change of serving.
    /// Returns false once draining.
    async fn update(&self, now: Readiness) -> bool {
        let before = self
            .readiness
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                (b != Readiness::Draining as u8).then_some(now as u8)
            });
        let Ok(before) = before else {
            return false;
        };
        let before = Readiness::of(before);
        let serving = now == Readiness::Serving;
        if before != now {
            tracing::info!(readiness = now.as_str(), "health");
            super::systemd::status(now.as_str());
        }
        if (before == Readiness::Serving) != serving || before == Readiness::Starting {
            self.publish(serving).await;
        }
        true
    }

    /// Sets the overall status and every `laneq.v1` service's.
    async fn publish(&self, serving: bool) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for name in std::iter::once("").chain(SERVICES.iter().copied()) {
            self.reporter.set_service_status(name, status).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_serves_once_it_knows_a_leader_and_has_caught_up() {
        assert_eq!(readiness(None, 10, 10), Readiness::NoLeader);
        assert_eq!(readiness(None, 0, 0), Readiness::NoLeader);
        assert_eq!(readiness(Some(2), 9, 10), Readiness::CatchingUp);
        assert_eq!(readiness(Some(2), 10, 10), Readiness::Serving);
        assert_eq!(readiness(Some(2), 11, 10), Readiness::Serving);
    }

    #[test]
    fn readiness_codes_round_trip() {
        for r in [
            Readiness::Starting,
            Readiness::NoLeader,
            Readiness::CatchingUp,
            Readiness::Serving,
            Readiness::Draining,
        ] {
            assert_eq!(Readiness::of(r as u8), r);
        }
    }

    /// What the gRPC health service answers for `service`.
    async fn check(health: &Health, service: &str) -> ServingStatus {
        use tonic_health::pb::health_server::Health as _;
        let grpc = HealthService::from_health_reporter(health.reporter.clone());
        let req = tonic_health::pb::HealthCheckRequest {
            service: service.into(),
        };
        let status = grpc.check(tonic::Request::new(req)).await.unwrap();
        match status.into_inner().status() {
            tonic_health::pb::health_check_response::ServingStatus::Serving => {
                ServingStatus::Serving
            }
            _ => ServingStatus::NotServing,
        }
    }

    #[tokio::test]
    async fn the_health_service_follows_readiness_and_draining_is_for_good() {
        let health = Health::new().await;
        assert_eq!(health.readiness(), Readiness::Starting);
        assert_eq!(check(&health, "").await, ServingStatus::NotServing);
        assert!(health.update(Readiness::Serving).await);
        assert!(health.serving());
        for service in std::iter::once("").chain(SERVICES.iter().copied()) {
            assert_eq!(
                check(&health, service).await,
                ServingStatus::Serving,
                "{service}"
            );
        }
        health.drain().await;
        assert!(!health.serving());
        assert!(!health.update(Readiness::Serving).await, "stays draining");
        assert_eq!(health.readiness(), Readiness::Draining);
        assert_eq!(
            check(&health, "laneq.v1.Tasks").await,
            ServingStatus::NotServing
        );
    }
}
