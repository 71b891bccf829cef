//! Workers and leases through the raw gRPC API of a 3-node cluster: the long
//! poll, fencing tokens, expiry, drain with work in flight, completions in
//! one call (`leases`); heartbeats sent only to a follower across leader
//! changes, their batching, and the grace a new leader gives leases before
//! it expires any (`heartbeats`).

mod heartbeats;
mod leases;

use crate::support::Timings;

fn short_leases() -> Timings {
    Timings {
        lease_ttl_ms: 1_500,
        worker_timeout_ms: 60_000,
        heartbeat_batch_ms: 100,
        ..Timings::default()
    }
}
