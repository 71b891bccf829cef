//! Project and organisation-config calls, the retention among them.

use super::{required, write_meta, Client, ClientError, ReadConsistency};
use crate::proto::v1::config_client::ConfigClient;
use crate::proto::v1::projects_client::ProjectsClient;
use crate::proto::v1::*;

impl Client {
    pub async fn create_project(
        &self,
        name: &str,
        settings: ProjectSettings,
    ) -> Result<Project, ClientError> {
        let req = CreateProjectRequest {
            meta: write_meta(None),
            name: name.to_string(),
            settings: Some(settings),
        };
        let resp = self.unary(req, ProjectsClient::create_project).await?;
        required(resp.project, "create_project", "project")
    }

    pub async fn get_project(
        &self,
        name: &str,
        c: ReadConsistency,
    ) -> Result<Project, ClientError> {
        let req = GetProjectRequest {
            name: name.to_string(),
            consistency: c.proto(),
        };
        let resp = self.unary(req, ProjectsClient::get_project).await?;
        required(resp.project, "get_project", "project")
    }

    pub async fn list_projects(&self, c: ReadConsistency) -> Result<Vec<Project>, ClientError> {
        let req = ListProjectsRequest {
            consistency: c.proto(),
        };
        let resp = self.unary(req, ProjectsClient::list_projects).await?;
        Ok(resp.projects)
    }

    /// Replaces a project's settings if it is still at `expected_version`
    /// (ABORTED otherwise).
    pub async fn update_project(
        &self,
        name: &str,
        settings: ProjectSettings,
        expected_version: u64,
    ) -> Result<Project, ClientError> {
        let req = UpdateProjectRequest {
            meta: write_meta(None),
            name: name.to_string(),
            settings: Some(settings),
            expected_version,
        };
        let resp = self.unary(req, ProjectsClient::update_project).await?;
        required(resp.project, "update_project", "project")
    }

    // --- organisation config ---

    pub async fn get_config(&self, c: ReadConsistency) -> Result<OrgConfig, ClientError> {
        let req = GetConfigRequest {
            consistency: c.proto(),
        };
        let resp = self.unary(req, ConfigClient::get_config).await?;
        required(resp.config, "get_config", "config")
    }

    /// Sets the queue that tasks go to when neither they nor their project
    /// name one.
    pub async fn set_default_queue(&self, queue: &str) -> Result<OrgConfig, ClientError> {
        let req = SetDefaultQueueRequest {
            meta: write_meta(None),
            queue: queue.to_string(),
        };
        let resp = self.unary(req, ConfigClient::set_default_queue).await?;
        required(resp.config, "set_default_queue", "config")
    }

    /// Changes the organisation's retention: how long finished tasks are
    /// kept (`age_ms`), how many per queue (`count`), and how long a lost
    /// worker is kept. `None` keeps a rule; 0 turns it off.
    pub async fn set_retention(
        &self,
        age_ms: Option<u64>,
        count: Option<u64>,
        lost_worker_ttl_ms: Option<u64>,
    ) -> Result<OrgConfig, ClientError> {
        let req = SetRetentionRequest {
            meta: write_meta(None),
            age_ms,
            count,
            lost_worker_ttl_ms,
        };
        let resp = self.unary(req, ConfigClient::set_retention).await?;
        required(resp.config, "set_retention", "config")
    }

    /// Changes a queue's own retention rules: `None` keeps a rule,
    /// `Some(None)` follows the organisation's again, `Some(Some(n))` sets
    /// it (0: off for this queue).
    pub async fn set_queue_retention(
        &self,
        name: &str,
        age_ms: Option<Option<u64>>,
        count: Option<Option<u64>>,
    ) -> Result<Queue, ClientError> {
        use retention_rule::Rule;
        let rule = |r: Option<Option<u64>>| {
            r.map(|r| RetentionRule {
                rule: Some(r.map_or(Rule::Default(true), Rule::Value)),
            })
        };
        let req = SetQueueRetentionRequest {
            meta: write_meta(None),
            name: name.to_string(),
            age_ms: rule(age_ms),
            count: rule(count),
        };
        let resp = self
            .unary(
                req,
                crate::proto::v1::queues_client::QueuesClient::set_queue_retention,
            )
            .await?;
        required(resp.queue, "set_queue_retention", "queue")
    }
}
