//! `laneq project ...`

use clap::{Args, Subcommand};
use serde_json::json;

use super::output::{self, Output};
use super::{Failure, GlobalArgs};
use crate::client::ReadConsistency;
use crate::proto::v1::{Project, ProjectSettings};

#[derive(Subcommand, Debug)]
pub enum ProjectCmd {
    /// Create a project: a team or product whose tasks share a default
    /// queue, an allow-list of queues and a per-run limit.
    Create {
        /// 1-63 ASCII letters, digits, '-', '_' or '.', starting with a letter or digit.
        name: String,
        /// Where its tasks go when they name no queue (default: the
        /// organisation's default queue).
        #[arg(long, value_name = "QUEUE")]
        default_queue: Option<String>,
        /// A queue its tasks may go to (repeat for several; none: any queue).
        #[arg(long = "allowed-queue", value_name = "QUEUE")]
        allowed_queues: Vec<String>,
        /// Most tasks one run may have queued at once (0: unlimited).
        #[arg(long, value_name = "N", default_value_t = 0)]
        max_queued_per_run: u64,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Show one project, with the queue its tasks go to by default.
    Get {
        /// The project.
        #[arg(default_value = "default")]
        name: String,
    },
    /// List every project.
    List,
    /// Change a project's settings: only the flags given change. It reads the
    /// project and writes it back with its version, so a concurrent edit is
    /// refused (exit 9) rather than silently overwritten.
    Update {
        /// The project.
        name: String,
        #[command(flatten)]
        changes: ProjectChanges,
    },
}

#[derive(Args, Debug)]
pub struct ProjectChanges {
    /// Where its tasks go when they name no queue.
    #[arg(long, value_name = "QUEUE", conflicts_with = "clear_default_queue")]
    default_queue: Option<String>,
    /// Use the organisation's default queue again.
    #[arg(long)]
    clear_default_queue: bool,
    /// Replace the allowed queues (repeat for several).
    #[arg(
        long = "allowed-queue",
        value_name = "QUEUE",
        conflicts_with = "clear_allowed_queues"
    )]
    allowed_queues: Vec<String>,
    /// Allow every queue again.
    #[arg(long)]
    clear_allowed_queues: bool,
    /// Most tasks one run may have queued at once (0: unlimited).
    #[arg(long, value_name = "N")]
    max_queued_per_run: Option<u64>,
    /// Free text.
    #[arg(long)]
    description: Option<String>,
}

impl ProjectChanges {
    /// The current settings with the given flags applied; None if that
    /// changes nothing.
    fn apply(&self, mut s: ProjectSettings) -> Result<Option<ProjectSettings>, Failure> {
        let before = s.clone();
        if let Some(q) = &self.default_queue {
            s.default_queue = q.clone();
        }
        if self.clear_default_queue {
            s.default_queue.clear();
        }
        if !self.allowed_queues.is_empty() {
            s.allowed_queues = self.allowed_queues.clone();
        }
        if self.clear_allowed_queues {
            s.allowed_queues.clear();
        }
        if let Some(n) = self.max_queued_per_run {
            s.max_queued_per_run = n;
        }
        if let Some(d) = &self.description {
            s.description = d.clone();
        }
        let given = self.default_queue.is_some()
            || self.clear_default_queue
            || !self.allowed_queues.is_empty()
            || self.clear_allowed_queues
            || self.max_queued_per_run.is_some()
            || self.description.is_some();
        if !given {
            return Err(Failure::invalid(
                "nothing to change: give at least one setting (see --help)",
            ));
        }
        Ok((s != before).then_some(s))
    }
}

pub fn project_json(p: &Project) -> serde_json::Value {
    let s = p.settings.clone().unwrap_or_default();
    json!({
        "name": p.name,
        "default_queue": s.default_queue,
        "allowed_queues": s.allowed_queues,
        "max_queued_per_run": s.max_queued_per_run,
        "description": s.description,
        "effective_default_queue": p.effective_default_queue,
        "version": p.version,
        "created_ms": p.created_ms,
        "updated_ms": p.updated_ms,
    })
}

fn allowed(s: &ProjectSettings) -> String {
    if s.allowed_queues.is_empty() {
        "any".into()
    } else {
        s.allowed_queues.join(",")
    }
}

fn per_run(s: &ProjectSettings) -> String {
    match s.max_queued_per_run {
        0 => "unlimited".into(),
        n => n.to_string(),
    }
}

fn print_project(g: &GlobalArgs, headline: Option<String>, p: &Project) {
    if g.output == Output::Json {
        return output::json(&project_json(p));
    }
    if let Some(line) = headline {
        println!("{line}");
    }
    let s = p.settings.clone().unwrap_or_default();
    let default_queue = match s.default_queue.as_str() {
        "" => format!("{} (the organisation's)", p.effective_default_queue),
        q => q.to_string(),
    };
    output::fields(&[
        ("name", p.name.clone()),
        ("default queue", default_queue),
        ("allowed queues", allowed(&s)),
        ("max queued per run", per_run(&s)),
        ("description", s.description.clone()),
        ("version", p.version.to_string()),
        ("created", output::time(p.created_ms)),
        ("updated", output::time(p.updated_ms)),
    ]);
}

pub async fn run(g: &GlobalArgs, cmd: ProjectCmd) -> Result<(), Failure> {
    let client = g.client()?;
    match cmd {
        ProjectCmd::Create {
            name,
            default_queue,
            allowed_queues,
            max_queued_per_run,
            description,
        } => {
            let settings = ProjectSettings {
                default_queue: default_queue.unwrap_or_default(),
                allowed_queues,
                max_queued_per_run,
                description,
            };
            let p = client.create_project(&name, settings).await?;
            print_project(g, Some(format!("created project {}", p.name)), &p);
        }
        ProjectCmd::Get { name } => {
            let p = client.get_project(&name, g.consistency()).await?;
            print_project(g, None, &p);
        }
        ProjectCmd::List => print_list(g, &client.list_projects(g.consistency()).await?),
        ProjectCmd::Update { name, changes } => {
            let current = client
                .get_project(&name, ReadConsistency::Linearizable)
                .await?;
            let Some(settings) = changes.apply(current.settings.clone().unwrap_or_default())?
            else {
                print_project(g, Some("no change".into()), &current);
                return Ok(());
            };
            let p = client
                .update_project(&name, settings, current.version)
                .await?;
            print_project(
                g,
                Some(format!(
                    "updated project {} (version {})",
                    p.name, p.version
                )),
                &p,
            );
        }
    }
    Ok(())
}

fn print_list(g: &GlobalArgs, projects: &[Project]) {
    if g.output == Output::Json {
        return output::json(&json!(projects
            .iter()
            .map(project_json)
            .collect::<Vec<_>>()));
    }
    let rows: Vec<Vec<String>> = projects
        .iter()
        .map(|p| {
            let s = p.settings.clone().unwrap_or_default();
            vec![
                p.name.clone(),
                p.effective_default_queue.clone(),
                allowed(&s),
                per_run(&s),
                s.description.clone(),
            ]
        })
        .collect();
    let header = [
        "name",
        "default queue",
        "allowed queues",
        "per run",
        "description",
    ];
    output::table(&header, &rows);
}
