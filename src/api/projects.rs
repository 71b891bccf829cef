//! `laneq.v1.Projects` and `laneq.v1.Config`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{convert, key_reused, propose, read_barrier};
use crate::model::{Op, Reply};
use crate::proto::v1 as pb;
use crate::proto::v1::config_server::Config;
use crate::proto::v1::projects_server::Projects;
use crate::raft::RaftNode;

pub struct ProjectsApi {
    pub(super) node: Arc<RaftNode>,
}

impl ProjectsApi {
    async fn change(
        &self,
        meta: Option<pb::WriteMeta>,
        op: Op,
    ) -> Result<Option<pb::Project>, Status> {
        match propose(&self.node, meta, op).await?.0 {
            Reply::Project { name } => {
                let state = self.node.sm().state();
                Ok(state.project(&name).map(|p| convert::project(&state, p)))
            }
            other => Err(key_reused(other)),
        }
    }
}

#[tonic::async_trait]
impl Projects for ProjectsApi {
    async fn create_project(
        &self,
        req: Request<pb::CreateProjectRequest>,
    ) -> Result<Response<pb::CreateProjectResponse>, Status> {
        let req = req.into_inner();
        let op = Op::CreateProject {
            name: req.name,
            settings: convert::project_settings(req.settings),
        };
        let project = self.change(req.meta, op).await?;
        Ok(Response::new(pb::CreateProjectResponse { project }))
    }

    async fn get_project(
        &self,
        req: Request<pb::GetProjectRequest>,
    ) -> Result<Response<pb::GetProjectResponse>, Status> {
        let req = req.into_inner();
        read_barrier(&self.node, req.consistency).await?;
        let state = self.node.sm().state();
        let project = state
            .project(&req.name)
            .ok_or_else(|| Status::not_found(format!("name: no project named {:?}", req.name)))?;
        Ok(Response::new(pb::GetProjectResponse {
            project: Some(convert::project(&state, project)),
        }))
    }

    async fn list_projects(
        &self,
        req: Request<pb::ListProjectsRequest>,
    ) -> Result<Response<pb::ListProjectsResponse>, Status> {
        read_barrier(&self.node, req.into_inner().consistency).await?;
        let state = self.node.sm().state();
        let projects = state
            .projects()
            .map(|p| convert::project(&state, p))
            .collect();
        Ok(Response::new(pb::ListProjectsResponse { projects }))
    }

    async fn update_project(
        &self,
        req: Request<pb::UpdateProjectRequest>,
    ) -> Result<Response<pb::UpdateProjectResponse>, Status> {
        let req = req.into_inner();
        let op = Op::UpdateProject {
            name: req.name,
            settings: convert::project_settings(req.settings),
            expected_version: req.expected_version,
        };
        let project = self.change(req.meta, op).await?;
        Ok(Response::new(pb::UpdateProjectResponse { project }))
    }
}

pub struct ConfigApi {
    pub(super) node: Arc<RaftNode>,
}

impl ConfigApi {
    fn config(&self) -> pb::OrgConfig {
        let state = self.node.sm().state();
        pb::OrgConfig {
            default_queue: state.default_queue().name.clone(),
            retention: Some(super::convert::retention(&state)),
        }
    }
}

#[tonic::async_trait]
impl Config for ConfigApi {
    async fn get_config(
        &self,
        req: Request<pb::GetConfigRequest>,
    ) -> Result<Response<pb::GetConfigResponse>, Status> {
        read_barrier(&self.node, req.into_inner().consistency).await?;
        Ok(Response::new(pb::GetConfigResponse {
            config: Some(self.config()),
        }))
    }

    async fn set_default_queue(
        &self,
        req: Request<pb::SetDefaultQueueRequest>,
    ) -> Result<Response<pb::SetDefaultQueueResponse>, Status> {
        let req = req.into_inner();
        let op = Op::SetDefaultQueue { queue: req.queue };
        match propose(&self.node, req.meta, op).await?.0 {
            Reply::Config => Ok(Response::new(pb::SetDefaultQueueResponse {
                config: Some(self.config()),
            })),
            other => Err(key_reused(other)),
        }
    }

    async fn set_retention(
        &self,
        req: Request<pb::SetRetentionRequest>,
    ) -> Result<Response<pb::SetRetentionResponse>, Status> {
        let req = req.into_inner();
        let op = Op::SetRetention {
            age_ms: req.age_ms,
            count: req.count,
            lost_worker_ttl_ms: req.lost_worker_ttl_ms,
        };
        match propose(&self.node, req.meta, op).await?.0 {
            Reply::Config => Ok(Response::new(pb::SetRetentionResponse {
                config: Some(self.config()),
            })),
            other => Err(key_reused(other)),
        }
    }
}
