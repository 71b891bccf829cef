//! The replicated queue model: domain types, commands and their pure,
//! deterministic apply.
//!
//! **Architecture Invariant:** nothing here reads a clock, a random source, the
//! environment or any IO, and nothing here knows about openraft, tonic or
//! RocksDB. Time and seeds arrive stamped inside each [`Command`] by the leader.
//! The same log therefore yields the same state on every replica.
//!
//! A map, in reading order:
//! - `command`: what a client writes ([`Write`], [`Op`]), what the leader logs
//!   ([`Command`], one write or a batch) and what apply answers
//!   ([`Response`]); `layout`, how a batch is laid out on the log.
//! - `validate`: shape checks of writes and their fields, before any state.
//! - `task`, `queue`, `pool`, `project`, `worker`, `spec`, `token`: the
//!   records the state holds (`token` also the permissions of roles).
//! - `state`: the [`State`] and its apply, one file per area, and its
//!   invariants; `order` is its index of each queue's order, `dispatch` the
//!   choice of tasks to lease.
//! - `retention`: how long finished tasks and lost workers are kept.
//! - `history`: the metrics history and per-queue counters apply keeps.
//! - `limits`, `error`: every bound, and the refusals apply returns.

mod command;
mod dispatch;
pub mod error;
pub mod history;
mod layout;
pub mod limits;
pub mod order;
mod pool;
mod project;
mod queue;
pub mod retention;
pub mod spec;
pub(crate) mod state;
mod task;
pub mod token;
pub mod validate;
pub mod worker;

pub use command::{
    Command, IdempotencyRecord, MoveTo, NewTask, Op, ProjectSettings, Reply, Response, Stamp,
    Write, Writes, ACTOR_ANONYMOUS,
};
pub use compact_str::CompactString;
pub use dispatch::dispatch_preview;
pub use error::{ErrorKind, ModelError};
pub use pool::Pool;
pub use project::Project;
pub use queue::{Clearing, Queue};
pub use state::{
    InFlight, Key, MetaRecord, State, BOOTSTRAP_CREATOR, DEFAULT_POOL, DEFAULT_PROJECT,
    DEFAULT_QUEUE, DEFAULT_QUEUE_ID,
};
pub use task::{LeaseView, Task, TaskBody, TaskState, Timeline, Transition};
pub use token::{Permission, Role, Token};
pub use validate::{validate_write, validate_writes};
