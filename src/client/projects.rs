//! Project and organisation-config calls.

use super::{write_meta, Client, ClientError, ReadConsistency};
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
        let resp = self
            .call(|ch| {
                let req = req.clone();
                async move { ProjectsClient::new(ch).create_project(req).await }
            })
            .await?;
        resp.project
            .ok_or_else(|| ClientError::Protocol("create_project: no project in reply".into()))
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
        let resp = self
            .call(|ch| {
                let req = req.clone();
                async move { ProjectsClient::new(ch).get_project(req).await }
            })
            .await?;
        resp.project
            .ok_or_else(|| ClientError::Protocol("get_project: no project in reply".into()))
    }

    pub async fn list_projects(&self, c: ReadConsistency) -> Result<Vec<Project>, ClientError> {
        let req = ListProjectsRequest {
            consistency: c.proto(),
        };
        let resp = self
            .call(|ch| async move { ProjectsClient::new(ch).list_projects(req).await })
            .await?;
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
        let resp = self
            .call(|ch| {
                let req = req.clone();
                async move { ProjectsClient::new(ch).update_project(req).await }
            })
            .await?;
        resp.project
            .ok_or_else(|| ClientError::Protocol("update_project: no project in reply".into()))
    }

    // --- organisation config ---

    pub async fn get_config(&self, c: ReadConsistency) -> Result<OrgConfig, ClientError> {
        let req = GetConfigRequest {
            consistency: c.proto(),
        };
        let resp = self
            .call(|ch| async move { ConfigClient::new(ch).get_config(req).await })
            .await?;
        resp.config
            .ok_or_else(|| ClientError::Protocol("get_config: no config in reply".into()))
    }

    /// Sets the queue that tasks go to when neither they nor their project
    /// name one.
    pub async fn set_default_queue(&self, queue: &str) -> Result<OrgConfig, ClientError> {
        let req = SetDefaultQueueRequest {
            meta: write_meta(None),
            queue: queue.to_string(),
        };
        let resp = self
            .call(|ch| {
                let req = req.clone();
                async move { ConfigClient::new(ch).set_default_queue(req).await }
            })
            .await?;
        resp.config
            .ok_or_else(|| ClientError::Protocol("set_default_queue: no config in reply".into()))
    }
}
