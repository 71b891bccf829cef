//! What a node tells systemd when it runs as a `Type=notify` service
//! (`deploy/systemd/laneq.service`): READY=1 once it takes calls, its
//! readiness as STATUS= whenever it changes, and STOPPING=1 when a graceful
//! stop begins. Outside systemd (no `NOTIFY_SOCKET`) each is a no-op.
//!
//! READY=1 comes when the listeners serve, not when a leader is known: a
//! new cluster's nodes have none until `laneq cluster init`, which needs
//! them started. `/readyz` and the gRPC health service say when a node
//! serves requests.

use sd_notify::NotifyState;

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd (NOTIFY_SOCKET)");
    }
}

/// The node takes calls.
pub fn ready() {
    notify(&[NotifyState::Ready, NotifyState::Status("started")]);
}

/// The node's readiness changed (`serving`, `no leader`, ...).
pub fn status(readiness: &str) {
    notify(&[NotifyState::Status(readiness)]);
}

/// A graceful stop began.
pub fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}
