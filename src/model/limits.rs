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
/// Most projects in the store.
pub const PROJECTS_MAX: usize = 10_000;
/// Most queues in a project's allow list.
pub const ALLOWED_QUEUES_MAX: usize = 1_000;
/// Most tasks in one submit; the whole request must also fit in 4 MiB.
pub const BATCH_MAX_TASKS: usize = 1_000;
/// Longest task name, in bytes.
pub const TASK_NAME_MAX_BYTES: usize = 256;
/// Attempts a task gets when the submit names none.
pub const MAX_ATTEMPTS_DEFAULT: u32 = 3;
/// Most attempts a task may ask for.
pub const MAX_ATTEMPTS_MAX: u32 = 100;
/// Most labels on a task.
pub const LABELS_MAX: usize = 32;
/// Longest label value, in bytes (keys are names).
pub const LABEL_VALUE_MAX_BYTES: usize = 256;
/// Longest actor, in bytes.
pub const ACTOR_MAX_BYTES: usize = 128;
/// Most tokens the store holds.
pub const TOKENS_MAX: usize = 10_000;
/// Most projects, or pools, one token is bound to.
pub const TOKEN_SCOPE_MAX: usize = 64;
/// Longest lifetime a token may be given: ten years, in ms.
pub const TOKEN_TTL_MAX_MS: u64 = 10 * 366 * 24 * 3_600_000;
/// Bytes of a SHA-256 digest (a token's stored secret).
pub const SHA256_BYTES: usize = 32;
/// Longest reason given for a cancel or dequeue, in bytes.
pub const REASON_MAX_BYTES: usize = 1024;
/// Most entries kept in a task's timeline.
pub const TIMELINE_MAX: usize = 64;
/// How many recent start waits a queue keeps for its average wait.
pub const RECENT_WAITS: usize = 32;
/// Most tasks in one page of a task list.
pub const LIST_PAGE_MAX: usize = 1_000;
/// Tasks in a page of a task list when the request names no size.
pub const LIST_PAGE_DEFAULT: usize = 100;
/// Most tasks one clear (or forced delete) dequeues; the API repeats the
/// command until the queue is empty, so no single apply does unbounded work.
pub const CLEAR_MAX_PER_COMMAND: usize = 10_000;
/// Longest worker IP (or host) text, in bytes.
pub const IP_MAX_BYTES: usize = 64;
/// Most queues one worker listens to.
pub const WORKER_QUEUES_MAX: usize = 64;
/// Most workers in the store.
pub const WORKERS_MAX: usize = 100_000;
/// Most tasks one lease hands out.
pub const LEASE_MAX_TASKS: u32 = 64;
/// Most tasks in a worker's heartbeat.
pub const HEARTBEAT_TASKS_MAX: usize = 1_024;
/// The most GPUs one task may be started on.
pub const TASK_GPUS_MAX: usize = 64;
/// The longest GPU UUID a worker may report (NVML's are 40 bytes).
pub const GPU_UUID_MAX_BYTES: usize = 96;
/// Most client writes in one log entry (coalesced by the leader, or one
/// `SubmitEach` call of at most [`BATCH_MAX_TASKS`]).
pub const COALESCED_WRITES_MAX: usize = 1_000;
/// Most heartbeat reports in one batch command.
pub const HEARTBEAT_BATCH_MAX: usize = 10_000;
/// Most leases or workers one expiry command handles; the leader repeats.
pub const EXPIRE_MAX_PER_COMMAND: usize = 1_000;
/// Queued tasks the dispatcher looks at per project of a queue for one that
/// fits, before it moves on: a task that does not fit is skipped, but the
/// search stays bounded.
pub const DISPATCH_LOOKAHEAD: usize = 16;
/// Shortest and longest lease TTL and worker timeout a node may ask for.
pub const TTL_MIN_MS: u64 = 100;
pub const TTL_MAX_MS: u64 = 3_600_000;
/// Most finished tasks one collect removes; the leader repeats while more
/// is collectable, so no single apply does unbounded work.
pub const COLLECT_MAX_PER_COMMAND: usize = 1_000;
/// Most lost workers one collect removes.
pub const COLLECT_WORKERS_MAX_PER_COMMAND: usize = 1_000;
/// The organisation's retention until it sets one: a finished task is kept
/// 7 days after it finished...
pub const RETENTION_AGE_DEFAULT_MS: u64 = 7 * 24 * 3_600_000;
/// ...and a queue keeps at most its last 100,000 finished tasks.
pub const RETENTION_COUNT_DEFAULT: u64 = 100_000;
/// A lost worker is removed once it has not come back for a day.
pub const LOST_WORKER_TTL_DEFAULT_MS: u64 = 24 * 3_600_000;
/// Longest retention age or lost-worker TTL: ten years, in ms (0 turns a
/// rule off instead).
pub const RETENTION_AGE_MAX_MS: u64 = 10 * 366 * 24 * 3_600_000;
