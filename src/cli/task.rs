//! `laneq task ...`

use clap::{Args, Subcommand};
use serde_json::json;

use super::output::{self, Output};
use super::submit::{self, SubmitArgs};
use super::{Failure, GlobalArgs};
use crate::client::{Client, TaskFilter};
use crate::proto::v1::move_task_request::To;
use crate::proto::v1::Task;

#[derive(Subcommand, Debug)]
pub enum TaskCmd {
    /// Submit a task: `laneq task submit --queue gpu --gpu 1 -- python train.py --lr 3e-4`,
    /// or many at once from a JSON-lines file with --file.
    #[command(after_help = "Examples:
  laneq task submit --queue gpu --cpu 8 --memory 32Gi --gpu 1 --label team=vision -- python train.py
  laneq task submit --file sweep.jsonl --queue gpu --run sweep-7
    with sweep.jsonl holding lines like
    {\"name\": \"lr=3e-4\", \"command\": [\"python\", \"train.py\", \"--lr\", \"3e-4\"], \"resources\": {\"gpu\": 1}}")]
    Submit(SubmitArgs),
    /// Show a task: where it is, what it needs and its timeline.
    Get {
        /// The task's id.
        id: u64,
        /// Print each transition as it is applied, until the task ends:
        /// exit 0 if it succeeded, 10 if it failed, was canceled or dequeued.
        #[arg(long, short = 'w')]
        watch: bool,
    },
    /// Print a task's output from any machine: the worker that ran it
    /// serves its log file through the cluster. Raw bytes to stdout; with
    /// `-o json`, JSON lines `{"data": "..."}` cut at line ends. Exit 7 when
    /// the task has not run yet or its worker is not connected (its output
    /// is then only on that machine, in its log dir).
    #[command(after_help = "Examples:
  laneq task logs 42                 the latest attempt's output so far
  laneq task logs 42 -f              and what it writes, until its run ends
  laneq task logs 42 --tail 20 -f    the last 20 lines, then follow
  laneq task logs 42 --attempt 1     the first attempt's output (on its worker)")]
    Logs(super::logs::LogsArgs),
    /// List tasks, newest last. With --queue and no --state, the queued
    /// tasks of that queue in queue order (the next to run first).
    List(ListArgs),
    /// Cancel a queued, leased or running task.
    Cancel {
        /// The task's id.
        id: u64,
        /// Why, for the timeline.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Take a queued task out of its queue (it becomes `dequeued`).
    Dequeue {
        /// The task's id.
        id: u64,
        /// Why, for the timeline.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Report a running task's training iteration. Inside a task that a
    /// worker runs, the id and fencing token come from its environment
    /// (LANEQ_TASK_ID, LANEQ_FENCING_TOKEN). A stale token is refused (exit 7).
    Progress {
        /// The iteration reached.
        #[arg(long)]
        iteration: u64,
        /// The task's id.
        #[arg(long, env = "LANEQ_TASK_ID")]
        id: u64,
        /// The fencing token of the task's lease.
        #[arg(long, env = "LANEQ_FENCING_TOKEN")]
        fencing_token: u64,
    },
    /// Move a queued task within its queue, or to the back of another queue
    /// of the same pool. Give exactly one destination.
    Move {
        /// The task's id.
        id: u64,
        #[command(flatten)]
        to: MoveArgs,
    },
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only tasks of this queue.
    #[arg(long)]
    queue: Option<String>,
    /// Only tasks in this state: queued, leased, running, succeeded, failed,
    /// canceled, dequeued, or `any`. Default: `queued` with --queue, else any.
    /// Queued tasks are listed in queue order, others by id.
    #[arg(long)]
    state: Option<String>,
    /// Only tasks of this project.
    #[arg(long)]
    project: Option<String>,
    /// Only tasks of this run.
    #[arg(long)]
    run: Option<String>,
    /// Tasks per page (1 to 1000; default 100).
    #[arg(long, value_name = "N")]
    limit: Option<u32>,
    /// Continue from where a previous page ended.
    #[arg(long, value_name = "TOKEN")]
    page_token: Option<String>,
    /// Follow every page to the end (--limit is then the page size).
    #[arg(long)]
    all: bool,
}

#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct MoveArgs {
    /// To the front of its queue (next to run).
    #[arg(long)]
    to_front: bool,
    /// To the back of its queue.
    #[arg(long)]
    to_back: bool,
    /// This many places towards the front.
    #[arg(long, value_name = "N")]
    forward: Option<u64>,
    /// This many places towards the back.
    #[arg(long, value_name = "N")]
    backward: Option<u64>,
    /// To this place, counting from 1 (the front); past the end means the back.
    #[arg(long, value_name = "N")]
    position: Option<u64>,
    /// Just before another queued task of the same queue.
    #[arg(long, value_name = "ID")]
    before: Option<u64>,
    /// Just after another queued task of the same queue.
    #[arg(long, value_name = "ID")]
    after: Option<u64>,
    /// To the back of another queue of the same pool.
    #[arg(long, value_name = "QUEUE")]
    queue: Option<String>,
}

impl MoveArgs {
    fn to(&self) -> To {
        match self {
            MoveArgs { to_front: true, .. } => To::Front(true),
            MoveArgs { to_back: true, .. } => To::Back(true),
            MoveArgs {
                forward: Some(n), ..
            } => To::Forward(*n),
            MoveArgs {
                backward: Some(n), ..
            } => To::Backward(*n),
            MoveArgs {
                position: Some(n), ..
            } => To::Position(*n),
            MoveArgs {
                before: Some(id), ..
            } => To::Before(*id),
            MoveArgs {
                after: Some(id), ..
            } => To::After(*id),
            MoveArgs { queue: Some(q), .. } => To::Queue(q.clone()),
            _ => unreachable!("clap requires one destination"),
        }
    }
}

fn resources_text(t: &Task) -> String {
    output::or_dash(&output::quantities(&t.resources))
}

fn labels_text(t: &Task) -> String {
    let mut parts: Vec<String> = t.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.sort();
    output::or_dash(&parts.join(","))
}

/// A task as JSON with the proto's field names. `full`: with command and
/// payload (lists leave them out).
pub fn task_json(t: &Task, full: bool) -> serde_json::Value {
    let mut v = json!({
        "id": t.id,
        "queue": t.queue,
        "state": t.state,
        "position": t.position,
        "project": t.project,
        "run": t.run,
        "name": t.name,
        "resources": t.resources,
        "max_attempts": t.max_attempts,
        "attempt": t.attempt,
        "labels": t.labels,
        "condition": t.condition,
        "payload_bytes": t.payload_bytes,
        "worker": t.worker,
        "fencing_token": t.fencing_token,
        "lease_expires_ms": t.lease_expires_ms,
        "started_ms": t.started_ms,
        "finished_ms": t.finished_ms,
        "iteration": t.iteration,
        "exit_code": t.exit_code,
        "gpus": gpus_json(t),
        "idempotency_key": t.idempotency_key,
        "created_ms": t.created_ms,
        "updated_ms": t.updated_ms,
        "timeline": t.timeline.iter().map(|e| json!({
            "at_ms": e.at_ms,
            "state": e.state,
            "actor": e.actor,
            "reason": e.reason,
        })).collect::<Vec<_>>(),
    });
    if full {
        v["command"] = json!(t.command);
        v["payload"] = json!(String::from_utf8_lossy(&t.payload));
    }
    v
}

/// The GPUs of its run as JSON: `[{"index": 0, "uuid": "GPU-8f3c..."}]`.
pub fn gpus_json(t: &Task) -> serde_json::Value {
    (t.gpus.iter())
        .map(|g| json!({"index": g.index, "uuid": g.uuid}))
        .collect()
}

/// The GPUs of its run, as `0 (GPU-8f3c...), 2 (GPU-...)`; `-` for none.
fn gpus_text(t: &Task) -> String {
    let each: Vec<String> = (t.gpus.iter())
        .map(|g| format!("{} ({})", g.index, g.uuid))
        .collect();
    output::or_dash(&each.join(", "))
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

fn opt_time(ms: Option<u64>) -> String {
    ms.map_or("-".into(), output::time)
}

/// The current lease: its fencing token and when it expires.
fn lease_text(t: &Task) -> String {
    match (t.fencing_token, t.lease_expires_ms) {
        (0, _) => "-".into(),
        (token, Some(ms)) => format!("token {token}, expires {}", output::time(ms)),
        (token, None) => format!("token {token}"),
    }
}

fn print_task(t: &Task) {
    output::fields(&[
        ("id", t.id.to_string()),
        ("name", output::or_dash(&t.name)),
        ("queue", t.queue.clone()),
        ("state", t.state.clone()),
        ("position", t.position.map_or("-".into(), |p| p.to_string())),
        ("project", output::or_dash(&t.project)),
        ("run", output::or_dash(&t.run)),
        ("command", shell_words(&t.command)),
        ("payload", format!("{} bytes", t.payload_bytes)),
        ("resources", resources_text(t)),
        ("labels", labels_text(t)),
        ("attempt", format!("{} of {}", t.attempt, t.max_attempts)),
        ("worker", output::or_dash(&t.worker)),
        ("lease", lease_text(t)),
        ("started", opt_time(t.started_ms)),
        ("finished", opt_time(t.finished_ms)),
        ("runtime", super::worker::runtime(t)),
        ("iteration", opt(t.iteration)),
        ("exit code", opt(t.exit_code)),
        ("gpus", gpus_text(t)),
        ("condition", output::or_dash(&t.condition)),
        ("idempotency key", t.idempotency_key.clone()),
        ("created", output::time(t.created_ms)),
        ("updated", output::time(t.updated_ms)),
    ]);
    if !t.timeline.is_empty() {
        println!();
        let rows: Vec<Vec<String>> = t
            .timeline
            .iter()
            .map(|e| {
                vec![
                    output::time(e.at_ms),
                    e.state.clone(),
                    output::or_dash(&e.actor),
                    output::or_dash(&e.reason),
                ]
            })
            .collect();
        output::table(&["time", "state", "actor", "reason"], &rows);
    }
}

pub async fn run(g: &GlobalArgs, cmd: TaskCmd) -> Result<(), Failure> {
    let client = g.client()?;
    match cmd {
        TaskCmd::Submit(args) => return submit::run(g, args).await,
        TaskCmd::Get { id, watch: true } => super::watch::task(g, id).await?,
        TaskCmd::Get { id, watch: false } => {
            let t = client.get_task(id, g.consistency()).await?;
            match g.output {
                Output::Json => output::json(&task_json(&t, true)),
                Output::Table => print_task(&t),
            }
        }
        TaskCmd::List(args) => list(g, &client, args).await?,
        TaskCmd::Logs(args) => return super::logs::run(g, args).await,
        TaskCmd::Cancel { id, reason } => {
            let t = client.cancel_task(id, &reason).await?;
            match g.output {
                Output::Json => output::json(&task_json(&t, false)),
                Output::Table => println!("task {} is {}", t.id, t.state),
            }
        }
        TaskCmd::Dequeue { id, reason } => {
            let t = client.dequeue_task(id, &reason).await?;
            match g.output {
                Output::Json => output::json(&task_json(&t, false)),
                Output::Table => println!("task {} is {} (was in {})", t.id, t.state, t.queue),
            }
        }
        TaskCmd::Progress {
            iteration,
            id,
            fencing_token,
        } => {
            let t = client.report_progress(id, fencing_token, iteration).await?;
            match g.output {
                Output::Json => output::json(&task_json(&t, false)),
                Output::Table => println!(
                    "task {} at iteration {}",
                    t.id,
                    t.iteration.unwrap_or(iteration)
                ),
            }
        }
        TaskCmd::Move { id, to } => {
            let t = client.move_task(id, to.to()).await?;
            match g.output {
                Output::Json => output::json(&task_json(&t, false)),
                Output::Table => println!(
                    "task {} is in {} at position {}",
                    t.id,
                    t.queue,
                    t.position.map_or("-".into(), |p| p.to_string())
                ),
            }
        }
    }
    Ok(())
}

async fn list(g: &GlobalArgs, client: &Client, args: ListArgs) -> Result<(), Failure> {
    let state = match (args.state.as_deref(), &args.queue) {
        (Some("any"), _) => String::new(),
        (Some(s), _) => s.to_string(),
        (None, Some(_)) => "queued".to_string(),
        (None, None) => String::new(),
    };
    let filter = TaskFilter {
        queue: args.queue.unwrap_or_default(),
        state,
        project: args.project.unwrap_or_default(),
        run: args.run.unwrap_or_default(),
        page_size: args.limit.unwrap_or(0),
    };
    let mut tasks = Vec::new();
    let mut token = args.page_token.unwrap_or_default();
    loop {
        let page = client.list_tasks(&filter, &token, g.consistency()).await?;
        tasks.extend(page.tasks);
        token = page.next_page_token;
        if token.is_empty() || !args.all {
            break;
        }
    }
    match g.output {
        Output::Json => output::json(&json!({
            "tasks": tasks.iter().map(|t| task_json(t, false)).collect::<Vec<_>>(),
            "next_page_token": token,
        })),
        Output::Table => {
            let rows: Vec<Vec<String>> = tasks
                .iter()
                .map(|t| {
                    vec![
                        t.id.to_string(),
                        t.queue.clone(),
                        t.position.map_or("-".into(), |p| p.to_string()),
                        t.state.clone(),
                        output::or_dash(&t.project),
                        output::or_dash(&t.run),
                        output::or_dash(&t.name),
                        output::or_dash(&t.worker),
                        opt(t.iteration),
                        output::age(t.created_ms),
                    ]
                })
                .collect();
            output::table(
                &[
                    "id", "queue", "pos", "state", "project", "run", "name", "worker", "iter",
                    "created",
                ],
                &rows,
            );
        }
    }
    if !token.is_empty() {
        eprintln!("more tasks: add --page-token {token} for the next page, or --all");
    }
    Ok(())
}

/// Joins arguments, quoting those that need it.
fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(subcommand)]
        cmd: TaskCmd,
    }

    #[test]
    fn a_move_needs_exactly_one_destination() {
        let parse = |a: &[&str]| T::try_parse_from([&["t", "move", "7"], a].concat());
        let Ok(T {
            cmd: TaskCmd::Move { to, .. },
        }) = parse(&["--to-front"])
        else {
            panic!("--to-front parses");
        };
        assert_eq!(to.to(), To::Front(true));
        let Ok(T {
            cmd: TaskCmd::Move { to, .. },
        }) = parse(&["--position", "3"])
        else {
            panic!("--position parses");
        };
        assert_eq!(to.to(), To::Position(3));
        assert!(parse(&[]).is_err());
        assert!(parse(&["--to-front", "--to-back"]).is_err());
        assert!(parse(&["--forward", "1", "--queue", "q"]).is_err());
    }
}
