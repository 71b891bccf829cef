//! `laneq queue ...`

use clap::Subcommand;
use serde_json::json;

use super::output::{self, Output};
use super::{Failure, GlobalArgs};
use crate::proto::v1::Queue;

#[derive(Subcommand, Debug)]
pub enum QueueCmd {
    /// Create a queue.
    Create {
        /// 1-63 ASCII letters, digits, '-', '_' or '.', starting with a letter or digit.
        name: String,
        /// The pool the queue belongs to (fixed for good).
        #[arg(long, default_value = "default")]
        pool: String,
    },
    /// List every queue with its counts.
    List,
    /// Show one queue: its count of queued tasks and the next task.
    Get {
        #[arg(default_value = "default")]
        name: String,
    },
}

pub fn queue_json(q: &Queue) -> serde_json::Value {
    json!({
        "name": q.name,
        "pool": q.pool,
        "queued": q.queued,
        "next_task_id": q.next_task_id,
        "created_ms": q.created_ms,
        "updated_ms": q.updated_ms,
        "version": q.version,
    })
}

pub async fn run(g: &GlobalArgs, cmd: QueueCmd) -> Result<(), Failure> {
    let client = g.client()?;
    match cmd {
        QueueCmd::Create { name, pool } => {
            let q = client.create_queue_in(&name, Some(&pool)).await?;
            match g.output {
                Output::Json => output::json(&queue_json(&q)),
                Output::Table => println!("created queue {}", q.name),
            }
        }
        QueueCmd::List => {
            let queues = client.list_queues(g.consistency()).await?;
            match g.output {
                Output::Json => {
                    output::json(&json!(queues.iter().map(queue_json).collect::<Vec<_>>()))
                }
                Output::Table => {
                    let rows: Vec<Vec<String>> = queues
                        .iter()
                        .map(|q| {
                            vec![
                                q.name.clone(),
                                q.pool.clone(),
                                q.queued.to_string(),
                                q.next_task_id.map_or("-".into(), |id| id.to_string()),
                                output::time(q.updated_ms),
                            ]
                        })
                        .collect();
                    output::table(&["name", "pool", "queued", "next", "updated"], &rows);
                }
            }
        }
        QueueCmd::Get { name } => {
            let q = client.get_queue(&name, g.consistency()).await?;
            match g.output {
                Output::Json => output::json(&queue_json(&q)),
                Output::Table => output::fields(&[
                    ("name", q.name.clone()),
                    ("pool", q.pool.clone()),
                    ("queued", q.queued.to_string()),
                    (
                        "next task",
                        q.next_task_id.map_or("-".into(), |id| id.to_string()),
                    ),
                    ("created", output::time(q.created_ms)),
                    ("updated", output::time(q.updated_ms)),
                ]),
            }
        }
    }
    Ok(())
}
