//! Access tokens: who may call the API, and with which role. A token is
//! stored by name with the SHA-256 of its secret, never the secret itself,
//! and replicated like every other record, so that creating or revoking
//! one takes effect on every node at the same log index.
//!
//! **Architecture Invariant:** a plain record and the pure rules of roles
//! (which role holds which permission). Checking a presented secret, and
//! mapping RPCs onto permissions, happen in the node (`auth`), not here.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// What a token may do. Scoped roles are bound to projects (a submitter)
/// or to pools (a worker) and act only on those.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Everything, including pools, projects, membership, config and tokens.
    Admin,
    /// Submits, moves, cancels and dequeues the tasks of its projects; reads
    /// queues and tasks.
    Submitter,
    /// Registers, leases, heartbeats, starts, reports, completes and
    /// releases, in its pools only.
    Worker,
    /// Every read and watch; no writes.
    Viewer,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Submitter, Role::Worker, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Submitter => "submitter",
            Role::Worker => "worker",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// Whether the role holds `permission` at all (a scoped role further
    /// checks the project or pool of what it acts on).
    pub fn allows(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => true,
            Role::Submitter => matches!(permission, Read | SubmitTasks | ManageTasks),
            Role::Worker => matches!(permission, Work),
            Role::Viewer => matches!(permission, Read),
        }
    }
}

/// A permission an RPC needs, named in a PERMISSION_DENIED answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Reads and watches of anything.
    Read,
    /// Submitting tasks (scoped by project).
    SubmitTasks,
    /// Moving, canceling and dequeuing tasks (scoped by project).
    ManageTasks,
    /// The worker protocol (scoped by pool).
    Work,
    /// Creating, changing and deleting queues, and the default queue.
    ManageQueues,
    /// Pools, projects, membership and tokens.
    Admin,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::SubmitTasks => "tasks.submit",
            Permission::ManageTasks => "tasks.manage",
            Permission::Work => "worker",
            Permission::ManageQueues => "queues.manage",
            Permission::Admin => "admin",
        }
    }
}

/// A token as stored: its secret only as a SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    pub name: String,
    pub role: Role,
    /// A submitter's projects; empty for other roles.
    pub projects: BTreeSet<String>,
    /// A worker's pools; empty for other roles.
    pub pools: BTreeSet<String>,
    #[serde(with = "serde_bytes")]
    pub secret_sha256: Vec<u8>,
    pub created_ms: u64,
    /// When it stops being accepted (stamped time, ms); 0: never.
    pub expires_ms: u64,
    /// The identity that created it ("bootstrap" for the first admin).
    pub created_by: String,
}

impl Token {
    /// Whether the token is past its expiry at `now_ms`.
    pub fn expired_at(&self, now_ms: u64) -> bool {
        self.expires_ms != 0 && now_ms >= self.expires_ms
    }
}

/// The shape of a token's scope for its role: a submitter names at least one
/// project, a worker at least one pool, and the others neither.
pub fn scope_fits_role(
    role: Role,
    projects: &BTreeSet<String>,
    pools: &BTreeSet<String>,
) -> Result<(), (&'static str, String)> {
    match role {
        Role::Submitter if projects.is_empty() => Err((
            "projects",
            "a submitter is bound to at least one project (--project)".into(),
        )),
        Role::Worker if pools.is_empty() => Err((
            "pools",
            "a worker is bound to at least one pool (--pool)".into(),
        )),
        Role::Submitter | Role::Admin | Role::Viewer if !pools.is_empty() => Err((
            "pools",
            format!("a {} token is not bound to pools", role.as_str()),
        )),
        Role::Worker | Role::Admin | Role::Viewer if !projects.is_empty() => Err((
            "projects",
            format!("a {} token is not bound to projects", role.as_str()),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_hold_what_the_spec_gives_them() {
        use Permission::*;
        let all = [Read, SubmitTasks, ManageTasks, Work, ManageQueues, Admin];
        let held =
            |r: Role| -> Vec<Permission> { all.into_iter().filter(|p| r.allows(*p)).collect() };
        assert_eq!(held(Role::Admin), all.to_vec());
        assert_eq!(held(Role::Submitter), vec![Read, SubmitTasks, ManageTasks]);
        assert_eq!(held(Role::Worker), vec![Work]);
        assert_eq!(held(Role::Viewer), vec![Read]);
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn a_scope_must_fit_its_role() {
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert!(scope_fits_role(Role::Submitter, &set(&["ml"]), &set(&[])).is_ok());
        assert_eq!(
            scope_fits_role(Role::Submitter, &set(&[]), &set(&[]))
                .unwrap_err()
                .0,
            "projects"
        );
        assert_eq!(
            scope_fits_role(Role::Worker, &set(&[]), &set(&[]))
                .unwrap_err()
                .0,
            "pools"
        );
        assert_eq!(
            scope_fits_role(Role::Viewer, &set(&[]), &set(&["gpu"]))
                .unwrap_err()
                .0,
            "pools"
        );
        assert_eq!(
            scope_fits_role(Role::Worker, &set(&["ml"]), &set(&["gpu"]))
                .unwrap_err()
                .0,
            "projects"
        );
        assert!(scope_fits_role(Role::Admin, &set(&[]), &set(&[])).is_ok());
    }
}
