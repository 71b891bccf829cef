//! `laneq task ...`

use clap::Subcommand;
use serde_json::json;

use super::output::{self, Output};
use super::{Failure, GlobalArgs};

#[derive(Subcommand, Debug)]
pub enum TaskCmd {
    /// Submit a task: `laneq task submit --queue gpu -- python train.py --lr 3e-4`.
    Submit {
        /// The queue to put the task in.
        #[arg(long, default_value = "default")]
        queue: String,
        /// An opaque payload handed to the worker (UTF-8 text).
        #[arg(long, default_value = "")]
        payload: String,
        /// Reuse a key to make a retried submit create the task only once
        /// (default: a fresh key per invocation).
        #[arg(long)]
        idempotency_key: Option<String>,
        /// The command line to run, after `--`.
        #[arg(last = true, required = true, num_args = 1..)]
        command: Vec<String>,
    },
    /// Show a task.
    Get { id: u64 },
}

pub async fn run(g: &GlobalArgs, cmd: TaskCmd) -> Result<(), Failure> {
    let client = g.client()?;
    match cmd {
        TaskCmd::Submit {
            queue,
            payload,
            idempotency_key,
            command,
        } => {
            let r = client
                .submit_task(&queue, command, payload.into_bytes(), idempotency_key)
                .await?;
            match g.output {
                Output::Json => output::json(&json!({"id": r.id, "created": r.created})),
                Output::Table if r.created => println!("{}", r.id),
                Output::Table => println!("{} (already submitted with this idempotency key)", r.id),
            }
        }
        TaskCmd::Get { id } => {
            let t = client.get_task(id, g.consistency()).await?;
            match g.output {
                Output::Json => output::json(&json!({
                    "id": t.id,
                    "queue": t.queue,
                    "state": t.state,
                    "command": t.command,
                    "payload": String::from_utf8_lossy(&t.payload),
                    "created_ms": t.created_ms,
                    "position": t.position,
                    "idempotency_key": t.idempotency_key,
                })),
                Output::Table => output::fields(&[
                    ("id", t.id.to_string()),
                    ("queue", t.queue.clone()),
                    ("state", t.state.clone()),
                    ("position", t.position.map_or("-".into(), |p| p.to_string())),
                    ("command", shell_words(&t.command)),
                    ("created", output::time(t.created_ms)),
                ]),
            }
        }
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
