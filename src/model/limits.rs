//! Named limits on every input. A value past a limit is refused with an error
//! that names the field and the limit; nothing is written.

/// Longest name of a queue, pool, project or run, in bytes.
pub const NAME_MAX_BYTES: usize = 63;
/// Most arguments in a task's command line.
pub const COMMAND_MAX_ARGS: usize = 256;
/// Most bytes in a task's command line, all arguments together.
pub const COMMAND_MAX_BYTES: usize = 64 * 1024;
/// Largest opaque task payload.
pub const PAYLOAD_MAX_BYTES: usize = 1024 * 1024;
/// Longest idempotency key.
pub const IDEMPOTENCY_KEY_MAX_BYTES: usize = 128;
/// How long an idempotency key is remembered after its first use.
pub const IDEMPOTENCY_RETENTION_MS: u64 = 24 * 60 * 60 * 1000;
/// Most expired idempotency keys forgotten by one apply, so that no single
/// command does unbounded work.
pub const IDEMPOTENCY_PRUNE_PER_APPLY: usize = 256;
/// Most queues in the store.
pub const QUEUES_MAX: usize = 100_000;
/// Most pools in the store.
pub const POOLS_MAX: usize = 1_000;
/// Most clusters in one pool.
pub const CLUSTERS_PER_POOL_MAX: usize = 1_000;
