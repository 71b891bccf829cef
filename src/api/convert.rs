//! Model types to protobuf messages.

use crate::model::{Queue, State, Task};
use crate::proto::v1;

pub fn queue(state: &State, q: &Queue) -> v1::Queue {
    v1::Queue {
        name: q.name.clone(),
        pool: q.pool.clone(),
        queued: state.queued(&q.name) as u64,
        next_task_id: state.next_task(&q.name),
        created_ms: q.created_ms,
        updated_ms: q.updated_ms,
        version: q.version,
    }
}

pub fn task(state: &State, t: &Task) -> v1::Task {
    v1::Task {
        id: t.id,
        queue: t.queue.clone(),
        state: t.state.as_str().to_string(),
        command: t.command.clone(),
        payload: t.payload.clone(),
        created_ms: t.created_ms,
        idempotency_key: t.idempotency_key.clone(),
        position: state.position(t).map(|p| p as u64 + 1),
    }
}
