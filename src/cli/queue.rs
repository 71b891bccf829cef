//! `laneq queue ...`

use clap::{Args, Subcommand};
use serde_json::json;

use super::edit::{self, Edited};
use super::output::{self, Output};
use super::{Failure, GlobalArgs};
use crate::model::spec::{parse_priority, parse_resources, Fairness};
use crate::proto::v1::{Queue, QueueSpec};

#[derive(Subcommand, Debug)]
pub enum QueueCmd {
    /// Create a queue. Unset settings take their defaults: every cluster of
    /// the pool, depth 10000, priority medium (50), round_robin, no limits.
    Create {
        /// 1-63 ASCII letters, digits, '-', '_' or '.', starting with a letter or digit.
        name: String,
        /// The pool the queue belongs to (fixed for good).
        #[arg(long, default_value = "default")]
        pool: String,
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// List every queue with its state, priority and counts.
    List {
        /// Live bars for every queue (see `queue get --watch`), until Ctrl-C.
        #[arg(long, short = 'w')]
        watch: bool,
    },
    /// Change a queue's settings: only the flags given change, or with
    /// --edit all of them in an editor. It reads the queue and writes it back
    /// with its version, so a concurrent edit is refused (exit 9) rather than
    /// silently overwritten.
    Update {
        /// The queue.
        name: String,
        /// Edit the whole spec as TOML in $VISUAL, else $EDITOR, else vi.
        /// An unchanged file changes nothing; a bad one is reported (exit 2)
        /// and kept.
        #[arg(
            long,
            conflicts_with_all = [
                "pool", "clusters", "run_concurrency", "action_concurrency", "depth",
                "priority", "fairness", "quota", "description",
            ]
        )]
        edit: bool,
        #[command(flatten)]
        changes: UpdateArgs,
    },
    /// Stop admitting submissions; queued and running work finishes, then the
    /// queue is drained. The default queue cannot be drained.
    Drain {
        /// The queue.
        name: String,
    },
    /// Put a draining or drained queue back in rotation.
    Activate {
        /// The queue.
        name: String,
    },
    /// Show one queue: settings, counts and the next task.
    Get {
        /// The queue.
        #[arg(default_value = "default")]
        name: String,
        /// Live bars of run concurrency, action concurrency and depth
        /// against their limits (a spinner where there is none), with the
        /// state and the next task, until Ctrl-C. JSON lines with -o json or
        /// when stdout is not a terminal.
        #[arg(long, short = 'w')]
        watch: bool,
    },
    /// Rename a queue; its tasks, settings and id stay. The default queue
    /// cannot be renamed.
    Rename {
        /// The queue's name now.
        name: String,
        /// Its new name.
        new_name: String,
    },
    /// Dequeue every queued task of a queue; leased and running tasks go on.
    Clear {
        /// The queue.
        name: String,
    },
    /// Delete an empty queue. The default queue cannot be deleted, nor one
    /// with leased or running tasks.
    Delete {
        /// The queue.
        name: String,
        /// Dequeue its queued tasks first.
        #[arg(long)]
        force: bool,
    },
    /// Queued tasks and waits over time, per queue and for all queues
    /// (the replicated history every node keeps).
    Metrics(super::metrics::QueueMetricsArgs),
    /// Show or change how long the queue keeps finished tasks.
    Retention(super::retention::QueueRetentionArgs),
}

#[derive(Args, Debug)]
pub struct SpecArgs {
    /// A cluster of the pool the queue's work may run on (repeat for several;
    /// `*` or none: all).
    #[arg(long = "cluster", value_name = "CLUSTER")]
    clusters: Vec<String>,
    /// Most runs active on the queue at once (0: unlimited).
    #[arg(long, default_value_t = 0)]
    run_concurrency: u32,
    /// Most tasks running at once (0: unlimited; 1 serialises the queue).
    #[arg(long, default_value_t = 0)]
    action_concurrency: u32,
    /// Most tasks queued plus running; a submit past it is refused (0: unlimited).
    #[arg(long, default_value_t = 10_000)]
    depth: u64,
    /// min, medium, max, or 1 to 100. Higher is served first.
    #[arg(long, default_value = "medium")]
    priority: String,
    /// How tasks of different projects are interleaved: round_robin or shuffle_interleave.
    #[arg(long, default_value = "round_robin")]
    fairness: String,
    /// Most resources running tasks may hold together, e.g. cpu=64,memory=256Gi,gpu=8.
    #[arg(long, default_value = "")]
    quota: String,
    /// Free text.
    #[arg(long, default_value = "")]
    description: String,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// The queue's pool; only its current pool is accepted (a pool is fixed).
    #[arg(long)]
    pool: Option<String>,
    /// Replace the cluster selector (repeat for several; `*` for all).
    #[arg(long = "cluster", value_name = "CLUSTER")]
    clusters: Vec<String>,
    /// Most runs active on the queue at once (0: unlimited).
    #[arg(long)]
    run_concurrency: Option<u32>,
    /// Most tasks running at once (0: unlimited; 1 serialises the queue).
    #[arg(long)]
    action_concurrency: Option<u32>,
    /// Most tasks queued plus running (0: unlimited).
    #[arg(long)]
    depth: Option<u64>,
    /// min, medium, max, or 1 to 100.
    #[arg(long)]
    priority: Option<String>,
    /// round_robin or shuffle_interleave.
    #[arg(long)]
    fairness: Option<String>,
    /// Replace the quota, e.g. cpu=64,memory=256Gi,gpu=8 ("" for unlimited).
    #[arg(long)]
    quota: Option<String>,
    /// Free text.
    #[arg(long)]
    description: Option<String>,
}

impl UpdateArgs {
    /// The current spec with the given flags applied.
    fn apply(&self, mut spec: QueueSpec) -> Result<QueueSpec, Failure> {
        let invalid = |e: crate::model::ModelError| Failure {
            message: e.to_string(),
            code: 2,
        };
        if !self.clusters.is_empty() {
            spec.clusters = self.clusters.clone();
        }
        if let Some(n) = self.run_concurrency {
            spec.run_concurrency = n;
        }
        if let Some(n) = self.action_concurrency {
            spec.action_concurrency = n;
        }
        if let Some(n) = self.depth {
            spec.depth = Some(n);
        }
        if let Some(p) = &self.priority {
            spec.priority = u32::from(parse_priority(p).map_err(invalid)?);
        }
        if let Some(f) = &self.fairness {
            Fairness::parse("fairness", f).map_err(invalid)?;
            spec.fairness = f.clone();
        }
        if let Some(q) = &self.quota {
            spec.quota = parse_resources("quota", q)
                .map_err(invalid)?
                .into_iter()
                .collect();
        }
        if let Some(d) = &self.description {
            spec.description = d.clone();
        }
        Ok(spec)
    }
}

impl SpecArgs {
    fn to_proto(&self) -> Result<QueueSpec, Failure> {
        let invalid = |e: crate::model::ModelError| Failure {
            message: e.to_string(),
            code: 2,
        };
        Fairness::parse("fairness", &self.fairness).map_err(invalid)?;
        Ok(QueueSpec {
            clusters: self.clusters.clone(),
            run_concurrency: self.run_concurrency,
            action_concurrency: self.action_concurrency,
            depth: Some(self.depth),
            priority: u32::from(parse_priority(&self.priority).map_err(invalid)?),
            fairness: self.fairness.clone(),
            quota: parse_resources("quota", &self.quota)
                .map_err(invalid)?
                .into_iter()
                .collect(),
            description: self.description.clone(),
        })
    }
}

/// The state, and a clear or forced delete under way.
fn state_text(q: &Queue) -> String {
    match q.clearing.as_str() {
        "" => q.state.clone(),
        "delete" => format!("{} (deleting)", q.state),
        _ => format!("{} (clearing)", q.state),
    }
}

/// The concurrency limits and quota that are set, in short ("-": none).
fn limits_text(spec: &QueueSpec) -> String {
    let mut parts = Vec::new();
    if spec.run_concurrency > 0 {
        parts.push(format!("runs={}", spec.run_concurrency));
    }
    if spec.action_concurrency > 0 {
        parts.push(format!("tasks={}", spec.action_concurrency));
    }
    if !spec.quota.is_empty() {
        parts.push(format!("quota {}", quota_text(spec)));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}

fn limit(n: u64) -> String {
    if n == 0 {
        "unlimited".into()
    } else {
        n.to_string()
    }
}

fn quota_text(spec: &QueueSpec) -> String {
    if spec.quota.is_empty() {
        return "unlimited".into();
    }
    output::quantities(&spec.quota)
}

pub fn queue_json(q: &Queue) -> serde_json::Value {
    let spec = q.spec.clone().unwrap_or_default();
    json!({
        "name": q.name,
        "pool": q.pool,
        "state": q.state,
        "clearing": (!q.clearing.is_empty()).then_some(&q.clearing),
        "priority": spec.priority,
        "queued": q.queued,
        "running": q.running,
        "depth": spec.depth,
        "run_concurrency": spec.run_concurrency,
        "action_concurrency": spec.action_concurrency,
        "fairness": spec.fairness,
        "quota": spec.quota,
        "clusters": spec.clusters,
        "description": spec.description,
        "next_task_id": q.next_task_id,
        "runs_active": q.runs_active,
        "workers": q.workers,
        "avg_wait_ms": q.avg_wait_ms,
        "activity_ms": q.activity_ms,
        "id": q.id,
        "created_ms": q.created_ms,
        "updated_ms": q.updated_ms,
        "version": q.version,
    })
}

fn print_queue(q: &Queue) {
    let spec = q.spec.clone().unwrap_or_default();
    output::fields(&[
        ("name", q.name.clone()),
        ("pool", q.pool.clone()),
        ("clusters", spec.clusters.join(",")),
        ("state", state_text(q)),
        ("priority", spec.priority.to_string()),
        ("queued", q.queued.to_string()),
        ("running", q.running.to_string()),
        ("runs active", q.runs_active.to_string()),
        ("workers", output::or_dash(&q.workers.join(","))),
        ("avg wait", avg_wait(q)),
        ("depth", limit(spec.depth.unwrap_or(0))),
        ("run concurrency", limit(u64::from(spec.run_concurrency))),
        (
            "action concurrency",
            limit(u64::from(spec.action_concurrency)),
        ),
        ("fairness", spec.fairness.clone()),
        ("quota", quota_text(&spec)),
        (
            "next task",
            q.next_task_id.map_or("-".into(), |id| id.to_string()),
        ),
        ("description", spec.description.clone()),
        ("last change", last_change(q)),
        ("created", output::time(q.created_ms)),
        ("updated", output::time(q.updated_ms)),
    ]);
}

/// The average wait of recently started tasks; "—" before any started.
fn avg_wait(q: &Queue) -> String {
    q.avg_wait_ms.map_or("—".into(), output::duration)
}

/// When a task last entered, left or moved within the queue.
fn last_change(q: &Queue) -> String {
    match q.activity_ms {
        0 => "-".into(),
        ms => format!("{} ({})", output::time(ms), output::age(ms)),
    }
}

pub async fn run(g: &GlobalArgs, cmd: QueueCmd) -> Result<(), Failure> {
    let client = g.client()?;
    match cmd {
        QueueCmd::Create { name, pool, spec } => {
            let spec = spec.to_proto()?;
            let q = client
                .create_queue_with(&name, Some(&pool), Some(spec))
                .await?;
            match g.output {
                Output::Json => output::json(&queue_json(&q)),
                Output::Table => {
                    println!("created queue {}", q.name);
                    print_queue(&q);
                }
            }
        }
        QueueCmd::List { watch: true } => super::watch::queues(g).await?,
        QueueCmd::List { watch: false } => {
            print_list(g, &client.list_queues(g.consistency()).await?)
        }
        QueueCmd::Metrics(args) => super::metrics::queue_metrics(g, args).await?,
        QueueCmd::Retention(args) => super::retention::queue(g, args).await?,
        QueueCmd::Update {
            name, edit: true, ..
        } => match edit::edit_queue(&client, &name).await? {
            Edited::Unchanged(q) => print_change(g, &q, |_| "no change".into()),
            Edited::Updated(q) => print_updated(g, &q),
        },
        QueueCmd::Update { name, changes, .. } => {
            let current = client
                .get_queue(&name, crate::client::ReadConsistency::Linearizable)
                .await?;
            let spec = changes.apply(current.spec.clone().unwrap_or_default())?;
            let q = client
                .update_queue(&name, spec, current.version, changes.pool.as_deref())
                .await?;
            print_updated(g, &q);
        }
        QueueCmd::Drain { name } => set_active(g, &client, &name, false).await?,
        QueueCmd::Activate { name } => set_active(g, &client, &name, true).await?,
        QueueCmd::Get { name, watch } => get(g, &client, &name, watch).await?,
        QueueCmd::Rename { name, new_name } => {
            let q = client.rename_queue(&name, &new_name).await?;
            print_change(g, &q, |q| format!("renamed queue {name} to {}", q.name));
        }
        QueueCmd::Clear { name } => {
            let r = client.clear_queue(&name).await?;
            match g.output {
                Output::Json => output::json(&json!({
                    "queue": r.queue.as_ref().map(queue_json),
                    "dequeued": r.dequeued,
                })),
                Output::Table => println!("cleared queue {name}: {} dequeued", r.dequeued),
            }
        }
        QueueCmd::Delete { name, force } => {
            let dequeued = client.delete_queue(&name, force).await?;
            match g.output {
                Output::Json => output::json(&json!({"name": name, "dequeued": dequeued})),
                Output::Table if dequeued > 0 => {
                    println!("deleted queue {name} ({dequeued} queued tasks dequeued)")
                }
                Output::Table => println!("deleted queue {name}"),
            }
        }
    }
    Ok(())
}

/// `queue get`: the queue once, or live with `--watch`.
async fn get(
    g: &GlobalArgs,
    client: &crate::client::Client,
    name: &str,
    watch: bool,
) -> Result<(), Failure> {
    if watch {
        return super::watch::queue(g, name).await;
    }
    let q = client.get_queue(name, g.consistency()).await?;
    match g.output {
        Output::Json => output::json(&queue_json(&q)),
        Output::Table => print_queue(&q),
    }
    Ok(())
}

/// Activates (`active`) or drains a queue, and shows its state.
async fn set_active(
    g: &GlobalArgs,
    client: &crate::client::Client,
    name: &str,
    active: bool,
) -> Result<(), Failure> {
    let q = client.set_queue_active(name, active).await?;
    print_change(g, &q, |q| format!("queue {} is {}", q.name, q.state));
    Ok(())
}

/// A changed queue: as JSON, or the line `line` makes of it.
fn print_change(g: &GlobalArgs, q: &Queue, line: impl FnOnce(&Queue) -> String) {
    match g.output {
        Output::Json => output::json(&queue_json(q)),
        Output::Table => println!("{}", line(q)),
    }
}

fn print_list(g: &GlobalArgs, queues: &[Queue]) {
    if let Output::Json = g.output {
        return output::json(&json!(queues.iter().map(queue_json).collect::<Vec<_>>()));
    }
    let rows: Vec<Vec<String>> = queues
        .iter()
        .map(|q| {
            let spec = q.spec.clone().unwrap_or_default();
            vec![
                q.name.clone(),
                q.pool.clone(),
                state_text(q),
                spec.priority.to_string(),
                q.queued.to_string(),
                q.running.to_string(),
                q.runs_active.to_string(),
                limit(spec.depth.unwrap_or(0)),
                limits_text(&spec),
                avg_wait(q),
                output::age(q.activity_ms),
                q.next_task_id.map_or("-".into(), |id| id.to_string()),
            ]
        })
        .collect();
    let header = [
        "name",
        "pool",
        "state",
        "priority",
        "queued",
        "running",
        "runs",
        "depth",
        "limits",
        "avg wait",
        "last change",
        "next",
    ];
    output::table(&header, &rows);
}

fn print_updated(g: &GlobalArgs, q: &Queue) {
    match g.output {
        Output::Json => output::json(&queue_json(q)),
        Output::Table => {
            println!("updated queue {} (version {})", q.name, q.version);
            print_queue(q);
        }
    }
}
