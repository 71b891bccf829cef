//! The client library shared by the CLI, the tests, the worker agent and the
//! benchmarks. It knows a list of endpoints, finds the leader by itself,
//! retries with backoff on a leader change or an unreachable node until a
//! deadline, and puts an idempotency key on every write so that a retried
//! write is applied once.

mod batch;
mod cluster;
pub mod credentials;
pub mod metrics;
mod projects;
mod retry;
mod tasks;
mod watch;
pub mod workers;

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::transport::{Channel, ClientTlsConfig};

use crate::proto::v1::cluster_client::ClusterClient;
use crate::proto::v1::pools_client::PoolsClient;
use crate::proto::v1::queues_client::QueuesClient;
use crate::proto::v1::tokens_client::TokensClient;
use crate::proto::v1::*;

pub use crate::wire::TlsFiles;
pub use credentials::{new_token, Credentials};
pub use metrics::Range;
pub use retry::ClientError;
pub use tasks::TaskFilter;

/// The local 3-node cluster of `scripts/cluster up`.
pub const DEFAULT_ENDPOINTS: &str = "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103";
/// How long one call may take, retries included, unless set otherwise.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(15);

#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    /// Known endpoints; a leader hint may add one.
    endpoints: Mutex<Vec<(String, Channel)>>,
    /// Index of the endpoint tried first: the last one that answered.
    preferred: AtomicUsize,
    deadline: Duration,
    /// TLS for every channel, leader hints' included; `None`: plaintext.
    tls: Option<ClientTlsConfig>,
    /// The token (and note) every call carries.
    credentials: Credentials,
    /// Send concurrent submits, and completions, together (see `batch`).
    submits: batch::Batcher<batch::Submits>,
    completes: batch::Batcher<batch::Completes>,
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadConsistency {
    #[default]
    Linearizable,
    Stale,
}

impl ReadConsistency {
    fn proto(self) -> i32 {
        match self {
            ReadConsistency::Linearizable => Consistency::Linearizable as i32,
            ReadConsistency::Stale => Consistency::Stale as i32,
        }
    }
}

/// The meta of one logical write: `idempotency_key`, or a fresh one, and
/// this process's actor. Retries of the write reuse it.
fn write_meta(idempotency_key: Option<String>) -> Option<WriteMeta> {
    Some(WriteMeta {
        idempotency_key: idempotency_key.unwrap_or_else(crate::wire::new_idempotency_key),
        actor: default_actor(),
    })
}

/// `field` of a `call`'s reply, which the server always sets: a reply
/// without it is a protocol error.
fn required<T>(field: Option<T>, call: &str, what: &str) -> Result<T, ClientError> {
    field.ok_or_else(|| ClientError::Protocol(format!("{call}: no {what} in reply")))
}

/// Who this process acts as in task timelines: `$LANEQ_ACTOR`, else `$USER`,
/// else empty (the server records "anonymous"). Read once per process:
/// every write carries it.
pub fn default_actor() -> String {
    static ACTOR: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ACTOR
        .get_or_init(|| {
            let actor = std::env::var("LANEQ_ACTOR")
                .or_else(|_| std::env::var("USER"))
                .unwrap_or_default();
            actor
                .chars()
                .filter(|c| !c.is_control())
                .take(128)
                .collect()
        })
        .clone()
}

/// Splits a comma-separated endpoint list, checking each is host:port.
pub fn parse_endpoints(list: &str) -> Result<Vec<String>, String> {
    let eps: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_start_matches("http://").to_string())
        .collect();
    if eps.is_empty() {
        return Err("endpoints: give at least one host:port".into());
    }
    for ep in &eps {
        let ok = ep
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !ok {
            return Err(format!("endpoints: {ep:?} is not host:port"));
        }
    }
    Ok(eps)
}

/// How a [`Client`] reaches the nodes. A plain struct with public fields:
/// set what differs from [`Default`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// How long one call may take, retries included.
    pub deadline: Duration,
    /// TLS to the nodes; `None`: plaintext (nodes with `insecure = true`).
    pub tls: Option<TlsFiles>,
    /// The token every call carries; none for an insecure cluster.
    pub credentials: Credentials,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            deadline: DEFAULT_DEADLINE,
            tls: None,
            credentials: Credentials::default(),
        }
    }
}

impl Client {
    /// A plaintext client with the default deadline.
    pub fn new(endpoints: &[String]) -> Self {
        Self::with_deadline(endpoints, DEFAULT_DEADLINE)
    }

    /// A plaintext client.
    pub fn with_deadline(endpoints: &[String], deadline: Duration) -> Self {
        Self::build(endpoints, deadline, None, Credentials::default())
    }

    /// A client with `options`; fails when a TLS file cannot be read or
    /// parsed. Connecting happens at the first call.
    pub fn connect(endpoints: &[String], options: ClientOptions) -> Result<Self, String> {
        let tls = options.tls.as_ref().map(TlsFiles::load).transpose()?;
        Ok(Self::build(
            endpoints,
            options.deadline,
            tls,
            options.credentials,
        ))
    }

    fn build(
        endpoints: &[String],
        deadline: Duration,
        tls: Option<ClientTlsConfig>,
        credentials: Credentials,
    ) -> Self {
        let endpoints = endpoints
            .iter()
            .map(|e| (e.clone(), crate::wire::channel(e, tls.as_ref())))
            .collect();
        Self {
            inner: Arc::new(Inner {
                endpoints: Mutex::new(endpoints),
                preferred: AtomicUsize::new(0),
                deadline,
                tls,
                credentials,
                submits: Default::default(),
                completes: Default::default(),
            }),
        }
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.inner
            .endpoints
            .lock()
            .expect("endpoints poisoned")
            .iter()
            .map(|(e, _)| e.clone())
            .collect()
    }

    // --- queues ---

    /// Creates a queue in `pool` (None: the `default` pool) with default settings.
    pub async fn create_queue_in(
        &self,
        name: &str,
        pool: Option<&str>,
    ) -> Result<Queue, ClientError> {
        self.create_queue_with(name, pool, None).await
    }

    /// Creates a queue; unset fields of `spec` take their defaults.
    pub async fn create_queue_with(
        &self,
        name: &str,
        pool: Option<&str>,
        spec: Option<QueueSpec>,
    ) -> Result<Queue, ClientError> {
        let req = CreateQueueRequest {
            meta: write_meta(None),
            name: name.to_string(),
            pool: pool.unwrap_or_default().to_string(),
            spec,
        };
        let resp = self.unary(req, QueuesClient::create_queue).await?;
        required(resp.queue, "create_queue", "queue")
    }

    /// Creates a queue in the `default` pool.
    pub async fn create_queue(&self, name: &str) -> Result<Queue, ClientError> {
        self.create_queue_in(name, None).await
    }

    /// Replaces a queue's settings if it is still at `expected_version`.
    pub async fn update_queue(
        &self,
        name: &str,
        spec: QueueSpec,
        expected_version: u64,
        pool: Option<&str>,
    ) -> Result<Queue, ClientError> {
        let req = UpdateQueueRequest {
            meta: write_meta(None),
            name: name.to_string(),
            spec: Some(spec),
            expected_version,
            pool: pool.map(str::to_string),
        };
        let resp = self.unary(req, QueuesClient::update_queue).await?;
        required(resp.queue, "update_queue", "queue")
    }

    /// Activates (`active` true) or drains a queue.
    pub async fn set_queue_active(&self, name: &str, active: bool) -> Result<Queue, ClientError> {
        let (meta, name) = (write_meta(None), name.to_string());
        let queue = if active {
            let req = ActivateQueueRequest { meta, name };
            self.unary(req, QueuesClient::activate_queue).await?.queue
        } else {
            let req = DrainQueueRequest { meta, name };
            self.unary(req, QueuesClient::drain_queue).await?.queue
        };
        required(queue, "queue state", "queue")
    }

    pub async fn get_queue(&self, name: &str, c: ReadConsistency) -> Result<Queue, ClientError> {
        let req = GetQueueRequest {
            name: name.to_string(),
            consistency: c.proto(),
        };
        let resp = self.unary(req, QueuesClient::get_queue).await?;
        required(resp.queue, "get_queue", "queue")
    }

    pub async fn list_queues(&self, c: ReadConsistency) -> Result<Vec<Queue>, ClientError> {
        let req = ListQueuesRequest {
            consistency: c.proto(),
        };
        let resp = self.unary(req, QueuesClient::list_queues).await?;
        Ok(resp.queues)
    }

    /// Renames a queue; its tasks, settings and id stay.
    pub async fn rename_queue(&self, name: &str, new_name: &str) -> Result<Queue, ClientError> {
        let req = RenameQueueRequest {
            meta: write_meta(None),
            name: name.to_string(),
            new_name: new_name.to_string(),
        };
        let resp = self.unary(req, QueuesClient::rename_queue).await?;
        required(resp.queue, "rename_queue", "queue")
    }

    /// Dequeues every queued task of a queue; leased and running ones go on.
    pub async fn clear_queue(&self, name: &str) -> Result<ClearQueueResponse, ClientError> {
        let req = ClearQueueRequest {
            meta: write_meta(None),
            name: name.to_string(),
        };
        // A clear of a long queue is many commands: one attempt may take long.
        self.unary_long(req, QueuesClient::clear_queue).await
    }

    /// Deletes an empty queue (`force`: dequeue its queued tasks first).
    /// Returns how many tasks were dequeued.
    pub async fn delete_queue(&self, name: &str, force: bool) -> Result<u64, ClientError> {
        let req = DeleteQueueRequest {
            meta: write_meta(None),
            name: name.to_string(),
            force,
        };
        let resp = self.unary_long(req, QueuesClient::delete_queue).await?;
        Ok(resp.dequeued)
    }

    // --- pools ---

    pub async fn create_pool(&self, name: &str, clusters: &[String]) -> Result<Pool, ClientError> {
        let req = CreatePoolRequest {
            meta: write_meta(None),
            name: name.to_string(),
            clusters: clusters.to_vec(),
        };
        let resp = self.unary(req, PoolsClient::create_pool).await?;
        required(resp.pool, "create_pool", "pool")
    }

    pub async fn get_pool(&self, name: &str, c: ReadConsistency) -> Result<Pool, ClientError> {
        let req = GetPoolRequest {
            name: name.to_string(),
            consistency: c.proto(),
        };
        let resp = self.unary(req, PoolsClient::get_pool).await?;
        required(resp.pool, "get_pool", "pool")
    }

    pub async fn list_pools(&self, c: ReadConsistency) -> Result<Vec<Pool>, ClientError> {
        let req = ListPoolsRequest {
            consistency: c.proto(),
        };
        let resp = self.unary(req, PoolsClient::list_pools).await?;
        Ok(resp.pools)
    }

    /// Adds (`add` true) or removes a cluster of a pool.
    pub async fn change_cluster(
        &self,
        pool: &str,
        cluster: &str,
        add: bool,
    ) -> Result<Pool, ClientError> {
        let (meta, pool, cluster) = (write_meta(None), pool.to_string(), cluster.to_string());
        let resp = if add {
            let req = AddClusterRequest {
                meta,
                pool,
                cluster,
            };
            self.unary(req, PoolsClient::add_cluster).await?.pool
        } else {
            let req = RemoveClusterRequest {
                meta,
                pool,
                cluster,
            };
            self.unary(req, PoolsClient::remove_cluster).await?.pool
        };
        required(resp, "change_cluster", "pool")
    }

    // --- cluster ---

    /// Initialises the cluster from its nodes' peer lists, storing the
    /// first admin token's digest (`new_token`) when the cluster has no
    /// token yet.
    pub async fn init(
        &self,
        admin_token_sha256: Option<Vec<u8>>,
    ) -> Result<InitResponse, ClientError> {
        let req = InitRequest {
            admin_token_sha256: admin_token_sha256.unwrap_or_default(),
            meta: write_meta(None),
        };
        self.unary(req, ClusterClient::init).await
    }

    // --- tokens ---

    /// Stores a token whose secret's digest is `secret_sha256` (see
    /// [`new_token`]); `ttl` 0 never expires.
    pub async fn create_token(
        &self,
        name: &str,
        role: &str,
        projects: &[String],
        pools: &[String],
        secret_sha256: Vec<u8>,
        ttl: Duration,
    ) -> Result<TokenInfo, ClientError> {
        let req = CreateTokenRequest {
            meta: write_meta(None),
            name: name.to_string(),
            role: role.to_string(),
            projects: projects.to_vec(),
            pools: pools.to_vec(),
            secret_sha256,
            ttl_ms: ttl.as_millis() as u64,
        };
        let resp = self.unary(req, TokensClient::create_token).await?;
        required(resp.token, "create_token", "token")
    }

    pub async fn list_tokens(&self, c: ReadConsistency) -> Result<Vec<TokenInfo>, ClientError> {
        let req = ListTokensRequest {
            consistency: c.proto(),
        };
        Ok(self.unary(req, TokensClient::list_tokens).await?.tokens)
    }

    pub async fn revoke_token(&self, name: &str) -> Result<(), ClientError> {
        let req = RevokeTokenRequest {
            meta: write_meta(None),
            name: name.to_string(),
        };
        self.unary(req, TokensClient::revoke_token)
            .await
            .map(|_| ())
    }
}
