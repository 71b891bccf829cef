//! Who is calling, and whether they may. [`AuthLayer`] runs before every
//! handler: it finds the caller's identity (a bearer token, or a client
//! certificate naming a token), refuses a call without one with
//! UNAUTHENTICATED and a call its role does not permit with
//! PERMISSION_DENIED, naming the permission (`methods`). A handler's
//! writes then go through [`authorize`], which checks what a scoped role
//! acts on (a submitter's projects, a worker's pools), and [`actor`],
//! which records the caller, never a name the client claims.
//!
//! The caller reaches the handler in a task-local set around it, so that
//! no handler's signature carries it.
//!
//! **Architecture Invariant:** nothing is written for a refused call: the
//! layer answers before the handler runs, and [`authorize`] before the
//! write is proposed. Which role holds which permission is the model's
//! rule (`model::token`); this module maps calls onto permissions and
//! tokens onto callers.

mod layer;
mod methods;

use std::collections::BTreeSet;
use std::sync::Arc;

use tonic::Status;

use crate::model::token::{Permission, Role};
use crate::model::{Op, State, Write, DEFAULT_PROJECT};

pub use layer::AuthLayer;
pub use methods::{permission_of, Access};

pub use crate::wire::ON_BEHALF_OF_HEADER;
/// Longest `on behalf of` note, in bytes: with the longest name and the
/// words between, an actor fits its 128 bytes.
pub const ON_BEHALF_OF_MAX_BYTES: usize = 48;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name (a client certificate's CN names a token too).
    pub name: String,
    pub role: Role,
    pub projects: BTreeSet<String>,
    pub pools: BTreeSet<String>,
    /// An admin's note of whom the call is for.
    pub on_behalf_of: Option<String>,
}

impl Caller {
    /// The actor recorded for the caller's writes.
    pub fn actor(&self) -> String {
        match &self.on_behalf_of {
            Some(whom) => format!("{} on behalf of {whom}", self.name),
            None => self.name.clone(),
        }
    }

    fn denied(&self, permission: Permission, what: String) -> Status {
        Status::permission_denied(format!(
            "token {:?} (role {}) lacks permission {:?} {what}",
            self.name,
            self.role.as_str(),
            permission.as_str()
        ))
    }

    /// Whether the caller may use `permission` on project `project`.
    fn on_project(&self, permission: Permission, project: &str) -> Result<(), Status> {
        if !self.role.allows(permission) {
            return Err(self.denied(permission, String::new()));
        }
        if self.role == Role::Submitter && !self.projects.contains(project) {
            return Err(self.denied(
                permission,
                format!(
                    "on project {project:?}: it is bound to {}",
                    list(&self.projects)
                ),
            ));
        }
        Ok(())
    }

    /// Whether the caller may use `permission` in pool `pool`.
    fn in_pool(&self, permission: Permission, pool: &str) -> Result<(), Status> {
        if !self.role.allows(permission) {
            return Err(self.denied(permission, String::new()));
        }
        if self.role == Role::Worker && !self.pools.contains(pool) {
            return Err(self.denied(
                permission,
                format!("in pool {pool:?}: it is bound to {}", list(&self.pools)),
            ));
        }
        Ok(())
    }
}

fn list(names: &BTreeSet<String>) -> String {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    format!("[{}]", names.join(", "))
}

tokio::task_local! {
    /// The caller of the request being served: `None` on a node without
    /// authentication (insecure).
    static CALLER: Option<Arc<Caller>>;
}

/// The caller of the request being served; `None` on an insecure node.
/// Outside a request (a node's own duties) it is an error: those build
/// their writes themselves.
pub fn caller() -> Result<Option<Arc<Caller>>, Status> {
    CALLER
        .try_with(Clone::clone)
        .map_err(|_| Status::internal("a write outside a request has no caller"))
}

/// The actor of a write: the authenticated caller's, or on an insecure
/// node the one the client gave.
pub fn actor(claimed: String) -> Result<String, Status> {
    Ok(match caller()? {
        Some(c) => c.actor(),
        None => claimed,
    })
}

/// Checks that the caller may make `write`, as far as it depends on what
/// it acts on: the projects of the tasks a submitter submits or changes,
/// and the pool a worker works in. Unknown tasks and workers pass: apply
/// refuses them with NOT_FOUND.
pub fn authorize(state: &State, write: &Write) -> Result<(), Status> {
    let Some(c) = caller()? else {
        return Ok(());
    };
    let task = |id: &u64| state.task(*id);
    let project_of = |id: &u64| task(id).map(|t| t.project.to_string());
    let pool_of_task = |id: &u64| {
        task(id)
            .and_then(|t| state.queue_by_id(t.queue))
            .map(|q| q.pool.clone())
    };
    let (permission, project, pool) = match &write.op {
        Op::SubmitTasks { tasks } => {
            for t in tasks {
                let project = if t.project.is_empty() {
                    DEFAULT_PROJECT
                } else {
                    &t.project
                };
                c.on_project(Permission::SubmitTasks, project)?;
            }
            return Ok(());
        }
        // Which queue a moved task may go to is its project's rule (its
        // allowed queues), which apply checks.
        Op::CancelTask { id, .. } | Op::DequeueTask { id, .. } | Op::MoveTask { id, .. } => {
            (Permission::ManageTasks, project_of(id), None)
        }
        Op::RegisterWorker(r) => (Permission::Work, None, Some(r.pool.clone())),
        Op::LeaseTasks { worker, .. } => (
            Permission::Work,
            None,
            state.worker(worker).map(|w| w.pool.clone()),
        ),
        Op::StartTask { id, .. }
        | Op::StartTaskOn { id, .. }
        | Op::ReportProgress { id, .. }
        | Op::CompleteTask { id, .. }
        | Op::ReleaseTask { id, .. } => (Permission::Work, None, pool_of_task(id)),
        // The rest are admin's, or queue managers', and the layer checked
        // the role: nothing here depends on what they act on.
        _ => return Ok(()),
    };
    match (project, pool) {
        (Some(project), _) => c.on_project(permission, &project),
        (_, Some(pool)) => c.in_pool(permission, &pool),
        (None, None) if c.role.allows(permission) => Ok(()),
        (None, None) => Err(c.denied(permission, String::new())),
    }
}

/// Checks that the caller may send heartbeats for `worker` (which the node
/// gathers and writes in batches of its own).
pub fn authorize_heartbeat(state: &State, worker: &str) -> Result<(), Status> {
    let Some(c) = caller()? else {
        return Ok(());
    };
    match state.worker(worker) {
        Some(w) => c.in_pool(Permission::Work, &w.pool),
        None if c.role.allows(Permission::Work) => Ok(()),
        None => Err(c.denied(Permission::Work, String::new())),
    }
}

/// The name a verified client certificate gives its holder (its subject's
/// common name), when the request came over TLS with one. A peer's
/// certificate (the cluster CA's, which the client port also accepts when
/// peers share it) names a node, never a caller.
fn certificate_name(
    tls: &crate::tls::NodeTls,
    extensions: &tonic::codegen::http::Extensions,
) -> Option<String> {
    let chain = crate::tls::peer_chain(extensions)?;
    if tls.is_peer(Some(chain.as_slice())) {
        return None;
    }
    crate::tls::peer_identity(extensions)
}

/// Runs `f` with `caller` as the request's caller.
pub async fn with_caller<F: std::future::Future>(caller: Option<Arc<Caller>>, f: F) -> F::Output {
    CALLER.scope(caller, f).await
}
