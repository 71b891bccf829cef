//! `laneq queue update NAME --edit`: a queue's settings as TOML in
//! `$VISUAL` / `$EDITOR`, written back with the version they were read at,
//! so a concurrent change is refused (ABORTED) instead of overwritten.
//! Never loops: a bad edit is reported and kept in its file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Failure;
use crate::client::{Client, ReadConsistency};
use crate::model::spec::{format_quantity, parse_priority, parse_quantity, Fairness};
use crate::model::ModelError;
use crate::proto::v1::{Queue, QueueSpec};

/// What the file holds: a queue's whole spec, and its pool (shown, fixed).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QueueFile {
    pub pool: String,
    pub clusters: Vec<String>,
    pub run_concurrency: u32,
    pub action_concurrency: u32,
    pub depth: u64,
    pub priority: u32,
    pub fairness: String,
    pub description: String,
    /// Last: TOML writes it as a `[quota]` table after the plain values.
    #[serde(default)]
    pub quota: BTreeMap<String, Amount>,
}

/// A quota amount as written: `8`, `0.5` or `"256Gi"`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(untagged)]
pub enum Amount {
    Int(u64),
    Float(f64),
    Text(String),
}

impl Amount {
    fn text(&self) -> String {
        match self {
            Amount::Int(n) => n.to_string(),
            Amount::Float(f) => f.to_string(),
            Amount::Text(s) => s.clone(),
        }
    }
}

const HEADER: &str = "\
# Editable: every setting below except `pool` (a queue's pool is fixed for good).
# Save and quit to apply; quit without saving to change nothing.
#   clusters            clusters of the pool its work may run on; [\"*\"] for all
#   run_concurrency     most runs active at once (0: unlimited)
#   action_concurrency  most tasks running at once (0: unlimited; 1 serialises the queue)
#   depth               most tasks queued plus running (0: unlimited)
#   priority            1 (min) to 100 (max); 50 is medium; higher is served first
#   fairness            round_robin or shuffle_interleave
#   description         free text
#   [quota]             most resources its running tasks may hold together, e.g.
#                       cpu = \"64\" (cores, or \"500m\"), memory = \"256Gi\", gpu = 8;
#                       no line for a resource: no limit on it
";

impl QueueFile {
    pub fn from_queue(q: &Queue) -> Self {
        let s = q.spec.clone().unwrap_or_default();
        Self {
            pool: q.pool.clone(),
            clusters: s.clusters,
            run_concurrency: s.run_concurrency,
            action_concurrency: s.action_concurrency,
            depth: s.depth.unwrap_or(crate::model::spec::DEPTH_DEFAULT),
            priority: s.priority,
            fairness: s.fairness,
            description: s.description,
            quota: s
                .quota
                .iter()
                .map(|(k, v)| (k.clone(), Amount::Text(format_quantity(k, *v))))
                .collect(),
        }
    }

    /// The spec to send, after the checks the server would make on it.
    pub fn to_spec(&self) -> Result<QueueSpec, ModelError> {
        let priority = parse_priority(&self.priority.to_string())?;
        Fairness::parse("fairness", &self.fairness)?;
        let quota = self
            .quota
            .iter()
            .map(|(k, v)| Ok((k.clone(), parse_quantity("quota", k, &v.text())?)))
            .collect::<Result<_, ModelError>>()?;
        Ok(QueueSpec {
            clusters: self.clusters.clone(),
            run_concurrency: self.run_concurrency,
            action_concurrency: self.action_concurrency,
            depth: Some(self.depth),
            priority: u32::from(priority),
            fairness: self.fairness.clone(),
            quota,
            description: self.description.clone(),
        })
    }

    /// The file's text: a header saying what is editable, then the TOML.
    pub fn render(&self, name: &str, version: u64) -> String {
        let body = toml::to_string(self).expect("a queue file serialises");
        format!("# Queue {name:?}, version {version}.\n{HEADER}\n{body}")
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}

/// What an edit came to.
pub enum Edited {
    /// The file was left as it was, or says the same thing.
    Unchanged(Queue),
    Updated(Queue),
}

/// Runs the whole edit: read, write the file, edit, parse, update.
pub async fn edit_queue(client: &Client, name: &str) -> Result<Edited, Failure> {
    let q = client
        .get_queue(name, ReadConsistency::Linearizable)
        .await?;
    let original = QueueFile::from_queue(&q);
    let text = original.render(&q.name, q.version);
    let path = temp_file(&q.name, &text)?;
    run_editor(&path).inspect_err(|_| {
        let _ = std::fs::remove_file(&path);
    })?;
    let edited = std::fs::read_to_string(&path)
        .map_err(|e| Failure::from(format!("reading {}: {e}", path.display())))?;
    let kept = |message: String, code: u8| Failure {
        message: format!("{message}\n(your edit is kept in {})", path.display()),
        code,
    };
    let parsed =
        QueueFile::parse(&edited).map_err(|e| kept(format!("{}: {e}", path.display()), 2))?;
    if parsed.pool != q.pool {
        return Err(kept(
            format!(
                "pool: a queue's pool is fixed for good; leave it as {:?}",
                q.pool
            ),
            // As the server refuses `queue update --pool`: a failed precondition.
            7,
        ));
    }
    let spec = parsed.to_spec().map_err(|e| kept(e.to_string(), 2))?;
    let unchanged = original.to_spec().is_ok_and(|s| s == spec);
    if edited == text || unchanged {
        let _ = std::fs::remove_file(&path);
        return Ok(Edited::Unchanged(q));
    }
    match client
        .update_queue(name, spec, q.version, Some(&q.pool))
        .await
    {
        Ok(updated) => {
            let _ = std::fs::remove_file(&path);
            Ok(Edited::Updated(updated))
        }
        Err(e) if e.code() == tonic::Code::Aborted => Err(kept(
            format!(
                "queue {name} changed while you were editing it (you edited version {}); \
                 nothing was applied: run the command again",
                q.version
            ),
            9,
        )),
        Err(e) => {
            let f = Failure::from(e);
            Err(kept(f.message, f.code))
        }
    }
}

/// Writes `text` to a new file of its own in the temp dir.
fn temp_file(name: &str, text: &str) -> Result<PathBuf, Failure> {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let path = std::env::temp_dir().join(format!("laneq-queue-{name}-{}.toml", &tag[..8]));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| Failure::from(format!("creating {}: {e}", path.display())))?;
    f.write_all(text.as_bytes())
        .map_err(|e| Failure::from(format!("writing {}: {e}", path.display())))?;
    Ok(path)
}

/// Runs `$VISUAL`, else `$EDITOR`, else `vi` on `path` through `sh`, so an
/// editor given with arguments works (`EDITOR="code --wait"`).
fn run_editor(path: &Path) -> Result<(), Failure> {
    let editor = ["VISUAL", "EDITOR"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "vi".into());
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(path)
        .status()
        .map_err(|e| Failure::from(format!("running the editor {editor:?}: {e}")))?;
    if !status.success() {
        return Err(Failure::from(format!(
            "the editor {editor:?} exited with {status}; nothing was changed"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> Queue {
        Queue {
            name: "gpu".into(),
            pool: "gpu".into(),
            version: 3,
            spec: Some(QueueSpec {
                clusters: vec!["*".into()],
                depth: Some(500),
                priority: 50,
                fairness: "round_robin".into(),
                quota: [
                    ("cpu".to_string(), 64_000),
                    ("memory".to_string(), 256 << 30),
                ]
                .into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_file_round_trips_to_the_same_spec() {
        let q = queue();
        let file = QueueFile::from_queue(&q);
        let text = file.render("gpu", 3);
        assert!(text.starts_with("# Queue \"gpu\", version 3."));
        assert!(text.contains("memory = \"256Gi\""), "{text}");
        let back = QueueFile::parse(&text).unwrap();
        assert_eq!(back.to_spec().unwrap(), q.spec.unwrap());
    }

    #[test]
    fn edits_are_checked() {
        let text = QueueFile::from_queue(&queue()).render("gpu", 3);
        let edited = text.replace("priority = 50", "priority = 80") + "\ngpu = 8\n";
        let spec = QueueFile::parse(&edited).unwrap().to_spec().unwrap();
        assert_eq!((spec.priority, spec.quota["gpu"]), (80, 8));
        let bad = text.replace("priority = 50", "priority = 101");
        let e = QueueFile::parse(&bad).unwrap().to_spec().unwrap_err();
        assert!(e.to_string().starts_with("priority: "), "{e}");
        assert!(QueueFile::parse(&text.replace("depth", "dept")).is_err());
        assert!(QueueFile::parse("priority = ").is_err());
    }
}
