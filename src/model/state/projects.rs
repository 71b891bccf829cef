//! Projects: who submits, with a default queue and optional allowed queues.

use std::collections::BTreeSet;

use super::{Key, State};
use crate::model::limits::PROJECTS_MAX;
use crate::model::{ModelError, Project, ProjectSettings, Reply};

impl State {
    pub(super) fn create_project(
        &mut self,
        name: &str,
        settings: &ProjectSettings,
        changed: &mut Vec<Key>,
    ) -> Result<Reply, ModelError> {
        if self.projects.contains_key(name) {
            return Err(ModelError::exists(
                "name",
                format!("project {name:?} already exists"),
            ));
        }
        if self.projects.len() >= PROJECTS_MAX {
            return Err(ModelError::exhausted(
                "name",
                format!("the store holds {PROJECTS_MAX} projects, the limit"),
            ));
        }
        let (default_queue, allowed_queues) = self.resolve_settings(settings)?;
        self.projects.insert(
            name.to_string(),
            Project {
                name: name.to_string(),
                default_queue,
                allowed_queues,
                max_queued_per_run: settings.max_queued_per_run,
                description: settings.description.clone(),
                created_ms: self.clock_ms,
                updated_ms: self.clock_ms,
                version: 1,
            },
        );
        changed.push(Key::Project(name.to_string()));
        Ok(Reply::Project {
            name: name.to_string(),
        })
    }

    pub(super) fn update_project(
        &mut self,
        name: &str,
        settings: &ProjectSettings,
        expected_version: u64,
        changed: &mut Vec<Key>,
    ) -> Result<Reply, ModelError> {
        let p = self
            .projects
            .get(name)
            .ok_or_else(|| ModelError::not_found("name", format!("no project named {name:?}")))?;
        if p.version != expected_version {
            return Err(ModelError::aborted(
                "expected_version",
                format!(
                    "project {name:?} is at version {}, the update was based on version \
                     {expected_version}; read it again and redo the change",
                    p.version
                ),
            ));
        }
        let (default_queue, allowed_queues) = self.resolve_settings(settings)?;
        let now = self.clock_ms;
        let p = self.projects.get_mut(name).expect("checked above");
        p.default_queue = default_queue;
        p.allowed_queues = allowed_queues;
        p.max_queued_per_run = settings.max_queued_per_run;
        p.description = settings.description.clone();
        p.updated_ms = now;
        p.version += 1;
        changed.push(Key::Project(name.to_string()));
        Ok(Reply::Project {
            name: name.to_string(),
        })
    }

    /// Queue names to ids; the default queue must be among the allowed ones.
    fn resolve_settings(
        &self,
        settings: &ProjectSettings,
    ) -> Result<(Option<u64>, BTreeSet<u64>), ModelError> {
        let default_queue = match settings.default_queue.as_str() {
            "" => None,
            q => Some(self.queue_id("default_queue", q)?),
        };
        let allowed = settings
            .allowed_queues
            .iter()
            .map(|q| self.queue_id("allowed_queues", q))
            .collect::<Result<BTreeSet<u64>, _>>()?;
        let effective = default_queue.unwrap_or(self.default_queue);
        if !allowed.is_empty() && !allowed.contains(&effective) && default_queue.is_some() {
            return Err(ModelError::invalid(
                "default_queue",
                format!(
                    "{:?} is not among the allowed queues",
                    settings.default_queue
                ),
            ));
        }
        Ok((default_queue, allowed))
    }
}
