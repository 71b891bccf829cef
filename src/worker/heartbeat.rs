//! The heartbeat loop: every `--heartbeat-ms` it sends the tasks the agent
//! holds (id, fencing token, iteration) and the machine's usage to any
//! node, and stops the tasks the reply says are no longer this worker's.
//! A failed heartbeat is only logged: the next one carries the same
//! information, and a lease outlives several missed beats.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tonic::Code;

use super::usage::UsageSampler;
use super::{Agent, Stop};

/// The least time one heartbeat may keep retrying, whatever the interval.
const HEARTBEAT_DEADLINE_MIN: Duration = Duration::from_secs(2);

pub(super) async fn run(agent: Arc<Agent>, mut sampler: UsageSampler) {
    let every = agent.config.heartbeat;
    // Its own client, so a slow heartbeat never waits behind a long poll
    // and gives up before the next one is due.
    let client = match agent.config.client(every.max(HEARTBEAT_DEADLINE_MIN)) {
        Ok(c) => c,
        // The agent's own client loaded the same files a moment ago.
        Err(e) => return tracing::error!(error = %e, "heartbeats cannot start"),
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (s, usage) = match tokio::task::spawn_blocking(move || {
            let usage = sampler.sample();
            (sampler, usage)
        })
        .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("usage sampler failed: {e}; heartbeats stop");
                return;
            }
        };
        sampler = s;
        let tasks = agent.held_tasks();
        let sent: Vec<(u64, u64)> = tasks.iter().map(|t| (t.id, t.fencing_token)).collect();
        match client.heartbeat(agent.name(), tasks, Some(usage)).await {
            Ok(reply) => {
                for id in reply.revoked {
                    // Only the lease this heartbeat spoke for: a newer lease
                    // of the same task is not touched.
                    if let Some(&(_, token)) = sent.iter().find(|(t, _)| *t == id) {
                        tracing::warn!(task = id, "revoked: stopping it");
                        agent.tell(id, token, Stop::Revoked);
                    }
                }
            }
            Err(e) if e.code() == Code::NotFound => {
                tracing::warn!("heartbeat: {e}; registering again");
                if let Err(e) = agent.register().await {
                    tracing::warn!("register: {e}");
                }
            }
            Err(e) => tracing::warn!("heartbeat: {e}"),
        }
    }
}
