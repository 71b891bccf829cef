//! `laneq task submit`: one task from flags, or many from a JSON-lines file
//! in one atomic batch. A file is checked line by line before anything is
//! sent, so a bad line is named by its number and nothing is submitted.

use std::collections::BTreeMap;
use std::io::Read;

use clap::Args;
use prost::Message;
use serde::Deserialize;
use serde_json::json;

use super::output::{self, Output};
use super::{Failure, GlobalArgs};
use crate::model::limits::BATCH_MAX_TASKS;
use crate::model::spec::{self, parse_quantity, Resources};
use crate::model::{ModelError, NewTask};
use crate::proto::v1::TaskSpec;

#[derive(Args, Debug)]
pub struct SubmitArgs {
    /// The queue. Default: the project's default queue, else the
    /// organisation's (`laneq config get`). With --file: for lines without one.
    #[arg(long)]
    queue: Option<String>,
    /// The project (default: `default`). With --file: for lines without one.
    #[arg(long)]
    project: Option<String>,
    /// The run: groups the tasks of one workflow or experiment. With --file:
    /// for lines without one.
    #[arg(long)]
    run: Option<String>,
    /// A name for people (at most 256 bytes).
    #[arg(long)]
    name: Option<String>,
    /// CPU cores the task needs: `4`, `0.5` or `500m`.
    #[arg(long)]
    cpu: Option<String>,
    /// Memory the task needs: `16Gi`, `512M` or bytes.
    #[arg(long)]
    memory: Option<String>,
    /// GPUs the task needs.
    #[arg(long)]
    gpu: Option<String>,
    /// Another resource the task needs, NAME=AMOUNT (repeat for several).
    #[arg(long = "resource", value_name = "NAME=AMOUNT")]
    resources: Vec<String>,
    /// Leases allowed before the task fails for good (default 3, at most 100).
    #[arg(long)]
    max_attempts: Option<u32>,
    /// A label, KEY=VALUE (repeat for several; at most 32).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// An opaque payload handed to the worker (UTF-8 text, at most 1 MiB).
    #[arg(long)]
    payload: Option<String>,
    /// Reuse a key to make a retried submit create the task(s) only once
    /// (default: a fresh key per invocation).
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Submit every task of a JSON-lines file (`-`: stdin) in one atomic
    /// batch of at most 1000. One object per line with the fields queue,
    /// project, run, name, command (array of strings), payload (string),
    /// resources (object of amounts: 4, "500m", "16Gi"), max_attempts and
    /// labels (object); blank lines are skipped.
    #[arg(
        long,
        value_name = "PATH",
        conflicts_with_all = [
            "name", "cpu", "memory", "gpu", "resources", "max_attempts", "labels", "payload",
            "command",
        ]
    )]
    file: Option<String>,
    /// The command line to run, after `--`.
    #[arg(last = true, num_args = 1.., required_unless_present = "file")]
    command: Vec<String>,
}

fn invalid(e: ModelError) -> Failure {
    Failure::invalid(e.to_string())
}

pub async fn run(g: &GlobalArgs, args: SubmitArgs) -> Result<(), Failure> {
    let client = g.client()?;
    if let Some(path) = &args.file {
        let tasks = read_tasks(path, &args)?;
        let r = client.submit_batch(tasks, args.idempotency_key).await?;
        match g.output {
            Output::Json => output::json(&json!({"ids": r.ids, "created": r.created})),
            Output::Table => {
                r.ids.iter().for_each(|id| println!("{id}"));
                if !r.created {
                    eprintln!("(already submitted with this idempotency key)");
                }
            }
        }
        return Ok(());
    }
    let spec = spec_from_flags(&args)?;
    let r = client.submit(spec, args.idempotency_key).await?;
    match g.output {
        Output::Json => output::json(&json!({"id": r.id, "created": r.created, "queue": r.queue})),
        // The id alone on stdout, so that `id=$(laneq task submit ...)` works.
        Output::Table => {
            println!("{}", r.id);
            match r.created {
                true => eprintln!("queued in {}", r.queue),
                false => eprintln!(
                    "already submitted with this idempotency key (queue {})",
                    r.queue
                ),
            }
        }
    }
    Ok(())
}

fn spec_from_flags(a: &SubmitArgs) -> Result<TaskSpec, Failure> {
    let mut resources = Resources::new();
    let named = [("cpu", &a.cpu), ("memory", &a.memory), ("gpu", &a.gpu)];
    for (name, value) in named {
        if let Some(value) = value {
            add_resource(&mut resources, name, value)?;
        }
    }
    for r in &a.resources {
        let (name, value) = r
            .split_once('=')
            .ok_or_else(|| Failure::invalid(format!("resources: {r:?}: write NAME=AMOUNT")))?;
        add_resource(&mut resources, name.trim(), value.trim())?;
    }
    spec::resources("resources", &resources).map_err(invalid)?;
    let mut labels = BTreeMap::new();
    for l in &a.labels {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| Failure::invalid(format!("labels: {l:?}: write KEY=VALUE")))?;
        if labels.insert(k.to_string(), v.to_string()).is_some() {
            return Err(Failure::invalid(format!("labels: {k} is given twice")));
        }
    }
    Ok(TaskSpec {
        queue: a.queue.clone().unwrap_or_default(),
        project: a.project.clone().unwrap_or_default(),
        run: a.run.clone().unwrap_or_default(),
        name: a.name.clone().unwrap_or_default(),
        command: a.command.clone(),
        payload: a.payload.clone().unwrap_or_default().into_bytes(),
        resources: resources.into_iter().collect(),
        max_attempts: a.max_attempts.unwrap_or(0),
        labels: labels.into_iter().collect(),
    })
}

fn add_resource(out: &mut Resources, name: &str, value: &str) -> Result<(), Failure> {
    let amount = parse_quantity("resources", name, value).map_err(invalid)?;
    if out.insert(name.to_string(), amount).is_some() {
        return Err(Failure::invalid(format!(
            "resources: {name} is given twice"
        )));
    }
    Ok(())
}

/// One line of a `--file`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Line {
    queue: Option<String>,
    project: Option<String>,
    run: Option<String>,
    name: Option<String>,
    #[serde(default)]
    command: Vec<String>,
    payload: Option<String>,
    #[serde(default)]
    resources: BTreeMap<String, serde_json::Value>,
    max_attempts: Option<u32>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// Reads, parses and checks every task of `path`; the command line's
/// queue, project and run fill in for lines without them.
fn read_tasks(path: &str, a: &SubmitArgs) -> Result<Vec<TaskSpec>, Failure> {
    let text = if path == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| Failure::invalid(format!("file: reading stdin: {e}")))?;
        s
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| Failure::invalid(format!("file: cannot read {path}: {e}")))?
    };
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    if lines.is_empty() {
        return Err(Failure::invalid(format!("file: {path} holds no tasks")));
    }
    if lines.len() > BATCH_MAX_TASKS {
        return Err(Failure::invalid(format!(
            "file: {path} holds {} tasks; a batch holds at most {BATCH_MAX_TASKS}, so split it",
            lines.len()
        )));
    }
    let tasks = lines
        .into_iter()
        .map(|(n, l)| {
            parse_line(l, a).map_err(|m| Failure::invalid(format!("{path} line {n}: {m}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let bytes: usize = tasks
        .iter()
        .map(|t| 1 + prost::length_delimiter_len(t.encoded_len()) + t.encoded_len())
        .sum();
    if bytes > crate::wire::CLIENT_MESSAGE_MAX_BYTES {
        return Err(Failure::invalid(format!(
            "file: {path} is {bytes} bytes as a request; the limit is {}, so split it",
            crate::wire::CLIENT_MESSAGE_MAX_BYTES
        )));
    }
    Ok(tasks)
}

fn parse_line(line: &str, a: &SubmitArgs) -> Result<TaskSpec, String> {
    let l: Line = serde_json::from_str(line).map_err(|e| {
        let text = e.to_string();
        // The position is within the line; the column is what helps.
        match text.rsplit_once(" at line ") {
            Some((msg, _)) => format!("{msg} (column {})", e.column()),
            None => text,
        }
    })?;
    let or = |v: Option<String>, d: &Option<String>| {
        v.filter(|s| !s.is_empty())
            .or_else(|| d.clone())
            .unwrap_or_default()
    };
    let mut resources = Resources::new();
    for (name, v) in &l.resources {
        let value = match v {
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::String(s) => s.clone(),
            _ => {
                return Err(format!(
                    "resources: {name}: give a number or a string like \"16Gi\""
                ))
            }
        };
        let amount = parse_quantity("resources", name, &value).map_err(|e| e.to_string())?;
        resources.insert(name.clone(), amount);
    }
    let task = NewTask {
        queue: or(l.queue, &a.queue),
        project: or(l.project, &a.project),
        run: or(l.run, &a.run),
        name: l.name.unwrap_or_default(),
        command: l.command,
        payload: l.payload.unwrap_or_default().into_bytes(),
        resources,
        max_attempts: l.max_attempts.unwrap_or(0),
        labels: l.labels,
    };
    task.validate().map_err(|e| e.to_string())?;
    Ok(TaskSpec {
        queue: task.queue,
        project: task.project,
        run: task.run,
        name: task.name,
        command: task.command,
        payload: task.payload,
        resources: task.resources.into_iter().collect(),
        max_attempts: task.max_attempts,
        labels: task.labels.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: SubmitArgs,
    }

    fn args(extra: &[&str]) -> SubmitArgs {
        let mut v = vec!["t"];
        v.extend_from_slice(extra);
        T::try_parse_from(v).unwrap().a
    }

    #[test]
    fn flags_become_a_spec() {
        let a = args(&[
            "--cpu",
            "500m",
            "--memory",
            "16Gi",
            "--gpu",
            "1",
            "--resource",
            "ib=2",
            "--label",
            "team=vision",
            "--",
            "python",
            "train.py",
        ]);
        let s = spec_from_flags(&a).unwrap();
        assert_eq!(s.queue, "", "the server picks the queue");
        assert_eq!(s.resources["cpu"], 500);
        assert_eq!(s.resources["memory"], 16 << 30);
        assert_eq!((s.resources["gpu"], s.resources["ib"]), (1, 2));
        assert_eq!(s.labels["team"], "vision");
        assert_eq!(s.command, ["python", "train.py"]);
        let twice = args(&["--cpu", "4", "--resource", "cpu=2", "--", "x"]);
        assert!(spec_from_flags(&twice).is_err());
    }

    #[test]
    fn lines_take_defaults_and_name_their_faults() {
        let a = args(&["--file", "f", "--queue", "gpu", "--run", "r1"]);
        let t = parse_line(
            r#"{"command":["echo"],"resources":{"cpu":4,"memory":"1Gi"},"queue":"cpu"}"#,
            &a,
        )
        .unwrap();
        assert_eq!((t.queue.as_str(), t.run.as_str()), ("cpu", "r1"));
        assert_eq!((t.resources["cpu"], t.resources["memory"]), (4000, 1 << 30));
        assert!(parse_line(r#"{"command":[]}"#, &a)
            .unwrap_err()
            .starts_with("command"));
        assert!(parse_line(r#"{"command":["x"],"bogus":1}"#, &a)
            .unwrap_err()
            .contains("bogus"));
        assert!(parse_line("{", &a).is_err());
    }

    #[test]
    fn file_and_command_exclude_each_other() {
        assert!(T::try_parse_from(["t", "--file", "f", "--", "x"]).is_err());
        assert!(T::try_parse_from(["t"]).is_err());
    }
}
