//! The `laneq` command line: clap commands over the client library, plus
//! `laneq node`. Output is a table for people or JSON (`-o json`) for programs.

mod certs;
mod cluster;
mod config;
pub mod context;
mod edit;
mod logs;
mod metrics;
mod output;
mod pool;
mod project;
mod queue;
mod retention;
mod snapshot;
mod submit;
mod task;
mod token;
mod watch;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::client::{
    parse_endpoints, Client, ClientError, ClientOptions, Credentials, ReadConsistency, TlsFiles,
    DEFAULT_ENDPOINTS,
};
pub use output::Output;

#[derive(Parser, Debug)]
#[command(
    name = "laneq",
    version,
    about = "laneq: a Raft-replicated, highly available queue store for ML job scheduling",
    long_about = "laneq keeps queues of ML jobs (tasks) replicated on a small cluster of nodes.\n\
                  Run `laneq node` on each machine, then use the other commands from anywhere:\n\
                  they find the leader by themselves.\n\n\
                  Quick start:\n  \
                  scripts/cluster up\n  \
                  laneq queue create gpu --priority max\n  \
                  laneq task submit --queue gpu --gpu 1 -- python train.py\n  \
                  laneq task list --queue gpu      # the queue, next to run first\n  \
                  laneq task move 1 --to-front"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Nodes to talk to, comma-separated host:port. Any node will do; give
    /// several so that a dead one is skipped. Default: the context's, else
    /// the local cluster of `scripts/cluster up`.
    #[arg(long, global = true, env = "LANEQ_ENDPOINTS")]
    pub endpoints: Option<String>,
    /// The token to call with (`<name>.<secret>`, as `laneq token create`
    /// or `laneq cluster init` printed it). Default: the context's.
    #[arg(long, global = true, env = "LANEQ_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The client config's context to use (`laneq context list`). Default:
    /// its current one.
    #[arg(long, global = true, env = "LANEQ_CONTEXT")]
    pub context: Option<String>,
    /// An admin acting for someone: recorded beside the admin's identity in
    /// task timelines.
    #[arg(long, global = true, value_name = "WHO")]
    pub on_behalf_of: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Read consistency: `linearizable` sees every acknowledged write;
    /// `stale` answers from the contacted node's state at once.
    #[arg(long, global = true, value_enum, default_value_t = ConsistencyArg::Linearizable)]
    pub consistency: ConsistencyArg,
    /// Give up after this many seconds, retries included.
    #[arg(long, global = true, default_value_t = 15)]
    pub timeout: u64,
    /// CA certificate (PEM) that the nodes' certificates chain to: talk to
    /// the nodes over TLS. Without it, plaintext (nodes run `insecure`).
    #[arg(long, global = true, env = "LANEQ_CACERT")]
    pub cacert: Option<PathBuf>,
    /// Client certificate (PEM) to present, with `--key`.
    #[arg(
        long = "cert",
        id = "client_cert",
        global = true,
        env = "LANEQ_CERT",
        requires = "client_key"
    )]
    pub client_cert: Option<PathBuf>,
    /// Private key (PEM) of `--cert`. (Its id is not `key`: `config set`
    /// has an argument of that name.)
    #[arg(
        long = "key",
        id = "client_key",
        global = true,
        env = "LANEQ_KEY",
        requires = "client_cert"
    )]
    pub client_key: Option<PathBuf>,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum ConsistencyArg {
    Linearizable,
    Stale,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a laneq node in the foreground (until SIGTERM or Ctrl-C).
    Node(NodeArgs),
    /// Cluster membership and health.
    #[command(subcommand)]
    Cluster(cluster::ClusterCmd),
    /// Pools (isolation boundaries) and their clusters.
    #[command(subcommand)]
    Pool(pool::PoolCmd),
    /// Create, change, list, rename and delete queues.
    #[command(subcommand)]
    Queue(queue::QueueCmd),
    /// Submit, list, inspect, reorder and cancel tasks.
    #[command(subcommand)]
    Task(task::TaskCmd),
    /// Projects: default queue, allowed queues and per-run limits of a team.
    #[command(subcommand)]
    Project(project::ProjectCmd),
    /// The organisation's settings (the default queue).
    #[command(subcommand)]
    Config(config::ConfigCmd),
    /// Run a worker agent; list and show workers.
    #[command(subcommand)]
    Worker(worker::WorkerCmd),
    /// Access tokens and their roles (admin only).
    #[command(subcommand)]
    Token(token::TokenCmd),
    /// Named contexts of the client config: a cluster's endpoints and token.
    #[command(subcommand)]
    Context(context::ContextCmd),
    /// Throwaway certificates for a cluster's TLS.
    #[command(subcommand)]
    Certs(certs::CertsCmd),
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct NodeArgs {
    #[command(subcommand)]
    pub action: Option<NodeCmd>,
    /// The node's TOML config (see cluster/local/node1.toml).
    #[arg(long, required = true)]
    pub config: Option<PathBuf>,
    /// Override the config's node id.
    #[arg(long)]
    pub id: Option<u64>,
    /// Override the config's gRPC listen address.
    #[arg(long)]
    pub listen: Option<String>,
    /// Override the config's data dir.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Initialise the cluster from the config's peers if it is not yet
    /// (safe to repeat: an initialised cluster is left alone).
    #[arg(long)]
    pub init: bool,
    /// Plaintext and no authentication, whatever the config says of it
    /// (`insecure = true`): only on a trusted network. A config with a
    /// [tls] section is refused with it.
    #[arg(long)]
    pub insecure: bool,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "LANEQ_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Worker threads of the node's async runtime (default: one per core).
    /// Nodes that share a machine do better with a share each: a local
    /// 3-node cluster gives each a third of the cores (scripts/cluster).
    #[arg(long, env = "LANEQ_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
}

#[derive(Subcommand, Debug)]
pub enum NodeCmd {
    /// Build a node's data dir from a `laneq cluster snapshot save` file,
    /// for a new cluster whose voters are the config's peers. Restore each
    /// member from the same file, then start them: they serve the same
    /// queues, tasks and positions, and need no `cluster init`.
    Restore(snapshot::RestoreArgs),
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum LogFormat {
    Text,
    Json,
}

/// A command's failure: what to print and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub code: u8,
}

impl Failure {
    /// Bad input: exit code 2.
    pub fn invalid(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            code: 2,
        }
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        let code = match e.code() {
            tonic::Code::InvalidArgument => 2,
            tonic::Code::NotFound => 3,
            tonic::Code::AlreadyExists => 4,
            tonic::Code::Unavailable => 5,
            tonic::Code::ResourceExhausted => 6,
            tonic::Code::FailedPrecondition => 7,
            tonic::Code::PermissionDenied => 8,
            tonic::Code::Aborted => 9,
            tonic::Code::Unauthenticated => 10,
            _ => 1,
        };
        Failure {
            message: e.to_string(),
            code,
        }
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure { message, code: 1 }
    }
}

/// Where and as whom a command calls: flags and the environment first,
/// then the client config's context, then the local cluster's defaults.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub endpoints: Vec<String>,
    pub token: Option<String>,
    pub tls: Option<TlsFiles>,
}

impl GlobalArgs {
    pub fn resolve(&self) -> Result<Resolved, Failure> {
        let config = match context::config_path() {
            Some(path) => context::ClientConfig::load(&path)?,
            None => context::ClientConfig::default(),
        };
        let ctx = config
            .pick(self.context.as_deref())?
            .cloned()
            .unwrap_or_default();
        let tls = self.tls(&ctx)?;
        let endpoints = (self.endpoints.clone())
            .or(ctx.endpoints)
            .unwrap_or_else(|| DEFAULT_ENDPOINTS.to_string());
        Ok(Resolved {
            endpoints: parse_endpoints(&endpoints).map_err(Failure::invalid)?,
            tls,
            token: self.token.clone().or(ctx.token),
        })
    }

    pub fn client(&self) -> Result<Client, Failure> {
        let r = self.resolve()?;
        let credentials = Credentials::new(r.token.as_deref(), self.on_behalf_of.as_deref())
            .map_err(Failure::invalid)?;
        let options = ClientOptions {
            deadline: Duration::from_secs(self.timeout.max(1)),
            tls: r.tls,
            credentials,
        };
        Client::connect(&r.endpoints, options).map_err(Failure::invalid)
    }

    /// The TLS files of `--cacert`, `--cert` and `--key`, else of the
    /// context; `None` without a CA.
    fn tls(&self, ctx: &context::Context) -> Result<Option<TlsFiles>, Failure> {
        let ca = self.cacert.clone().or_else(|| ctx.cacert.clone());
        let (cert, key) = match (&self.client_cert, &self.client_key) {
            (Some(c), Some(k)) => (Some(c.clone()), Some(k.clone())),
            _ => (ctx.cert.clone(), ctx.key.clone()),
        };
        let Some(ca) = ca else {
            if cert.is_some() {
                return Err(Failure::invalid(
                    "cert: a client certificate needs --cacert too",
                ));
            }
            return Ok(None);
        };
        Ok(Some(TlsFiles {
            ca,
            cert,
            key,
            server_name: None,
        }))
    }

    pub fn consistency(&self) -> ReadConsistency {
        match self.consistency {
            ConsistencyArg::Linearizable => ReadConsistency::Linearizable,
            ConsistencyArg::Stale => ReadConsistency::Stale,
        }
    }
}

/// The node's log filter unless `RUST_LOG` says otherwise.
const NODE_LOG: &str = "info,openraft=warn";

/// Logging to stderr in `format`, filtered by `RUST_LOG` or `default`.
fn logger(
    format: LogFormat,
    default: &str,
) -> impl tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync {
    use tracing_subscriber::layer::{Layer, SubscriberExt};
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only for a terminal: node and worker logs usually go to files.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    };
    tracing_subscriber::registry().with(filter).with(fmt)
}

fn init_logging(format: LogFormat, default: &str) {
    tracing_subscriber::util::SubscriberInitExt::init(logger(format, default));
}

/// A node's logging, and with the `otel` feature its span exporter.
fn init_node_logging(format: LogFormat) {
    #[cfg(feature = "otel")]
    {
        use tracing_subscriber::layer::SubscriberExt;
        let logger = logger(format, NODE_LOG).with(crate::observe::otel::layer());
        tracing_subscriber::util::SubscriberInitExt::init(logger);
    }
    #[cfg(not(feature = "otel"))]
    init_logging(format, NODE_LOG);
}

/// Entry point of the `laneq` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Command::Node(NodeArgs {
        threads: Some(n), ..
    }) = &cli.command
    {
        runtime.worker_threads(usize::from(*n));
    }
    let runtime = runtime
        .enable_all()
        .build()
        .expect("build the tokio runtime");
    let result = runtime.block_on(run(cli));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Node(NodeArgs {
            action: Some(NodeCmd::Restore(args)),
            ..
        }) => {
            init_logging(LogFormat::Text, "warn");
            snapshot::restore(&cli.global, args)
        }
        Command::Node(args) => {
            init_node_logging(args.log_format);
            run_node(args).await
        }
        Command::Cluster(cmd) => {
            init_logging(LogFormat::Text, "warn");
            cluster::run(&cli.global, cmd).await
        }
        Command::Pool(cmd) => {
            init_logging(LogFormat::Text, "warn");
            pool::run(&cli.global, cmd).await
        }
        Command::Queue(cmd) => {
            init_logging(LogFormat::Text, "warn");
            queue::run(&cli.global, cmd).await
        }
        Command::Task(cmd) => {
            init_logging(LogFormat::Text, "warn");
            task::run(&cli.global, cmd).await
        }
        Command::Project(cmd) => {
            init_logging(LogFormat::Text, "warn");
            project::run(&cli.global, cmd).await
        }
        Command::Config(cmd) => {
            init_logging(LogFormat::Text, "warn");
            config::run(&cli.global, cmd).await
        }
        Command::Worker(cmd) => {
            match &cmd {
                worker::WorkerCmd::Run(args) => init_logging(args.log_format, "info"),
                _ => init_logging(LogFormat::Text, "warn"),
            }
            worker::run(&cli.global, cmd).await
        }
        Command::Token(cmd) => {
            init_logging(LogFormat::Text, "warn");
            token::run(&cli.global, cmd).await
        }
        Command::Context(cmd) => context::run(&cli.global, cmd).await,
        Command::Certs(cmd) => certs::run(cmd),
    }
}

async fn run_node(args: NodeArgs) -> Result<(), Failure> {
    let path = args
        .config
        .expect("clap requires --config without a subcommand");
    let mut config = crate::config::NodeConfig::load(&path)?;
    if let Some(id) = args.id {
        config.id = id;
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    config.insecure |= args.insecure;
    run_server(config, args.init).await
}

#[cfg(feature = "server")]
async fn run_server(config: crate::config::NodeConfig, init: bool) -> Result<(), Failure> {
    crate::server::run(config, init)
        .await
        .map_err(Failure::from)
}

#[cfg(not(feature = "server"))]
async fn run_server(config: crate::config::NodeConfig, _init: bool) -> Result<(), Failure> {
    Err(Failure::from(format!(
        "node {}: this laneq was built without the server (cargo feature `server`); build it \
         with default features to run a node",
        config.id
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clap's own checks of every command, e.g. that no subcommand's
    /// argument takes the id of a global one (`--token`).
    #[test]
    fn the_command_line_is_well_formed() {
        <Cli as clap::CommandFactory>::command().debug_assert();
    }
}
