//! Which permission each call needs. Every method of the public API is
//! listed by name, so that a new one is refused to all but admins until it
//! is given its permission here (a test checks that every method of
//! `proto/laneq/v1` is listed).

use crate::model::token::Permission;

/// What a call needs before its handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: health probes, and `Init`, whose first admin token the
    /// model accepts only while the cluster has none.
    Open,
    /// The peer protocol: a peer certificate, checked by the transport.
    Peer,
    /// An identity holding this permission.
    Needs(Permission),
}

/// The access a request path needs (`/package.Service/Method` for gRPC,
/// or an HTTP route).
pub fn permission_of(path: &str) -> Access {
    use Permission::*;
    let needs = Access::Needs;
    if path.starts_with("/laneq.raft.") {
        return Access::Peer;
    }
    let Some(rest) = path.strip_prefix("/laneq.v1.") else {
        return match path {
            "/healthz" | "/readyz" => Access::Open,
            p if p.starts_with("/grpc.health.v1.Health/") => Access::Open,
            // Reflection, /metrics, and any other route: reads.
            _ => needs(Read),
        };
    };
    let (service, method) = rest.split_once('/').unwrap_or((rest, ""));
    match (service, method) {
        ("Cluster", "Init") => Access::Open,
        ("Cluster", "Membership" | "NodeStatus") => needs(Read),
        ("Cluster", _) => needs(Admin),
        ("Pools", "GetPool" | "ListPools") => needs(Read),
        ("Pools", _) => needs(Admin),
        ("Projects", "GetProject" | "ListProjects") => needs(Read),
        ("Projects", _) => needs(Admin),
        ("Config", "GetConfig") => needs(Read),
        ("Config", "SetDefaultQueue") => needs(ManageQueues),
        ("Config", "SetRetention") => needs(Admin),
        ("Queues", "GetQueue" | "ListQueues") => needs(Read),
        (
            "Queues",
            "CreateQueue" | "UpdateQueue" | "DrainQueue" | "ActivateQueue" | "RenameQueue"
            | "ClearQueue" | "DeleteQueue" | "SetQueueRetention",
        ) => needs(ManageQueues),
        ("Tasks", "SubmitTask" | "SubmitTasks" | "SubmitEach") => needs(SubmitTasks),
        ("Tasks", "GetTask" | "ListTasks" | "TaskLogs") => needs(Read),
        ("Tasks", "CancelTask" | "DequeueTask" | "MoveTask") => needs(ManageTasks),
        ("Workers", "GetWorker" | "ListWorkers") => needs(Read),
        (
            "Workers",
            "RegisterWorker" | "Lease" | "Heartbeat" | "StartTask" | "ReportProgress"
            | "CompleteTask" | "CompleteEach" | "ReleaseTask" | "ServeLogs",
        ) => needs(Work),
        ("Workers", "RemoveWorker") => needs(Admin),
        ("Metrics", _) | ("Watch", _) => needs(Read),
        // Tokens, and any method not listed above.
        _ => needs(Admin),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// Every method of the public API, as `/laneq.v1.Service/Method`.
    fn public_methods() -> Vec<String> {
        let set =
            prost_types::FileDescriptorSet::decode(crate::proto::v1::FILE_DESCRIPTOR_SET).unwrap();
        let mut paths = Vec::new();
        for file in set.file.iter().filter(|f| f.package() == "laneq.v1") {
            for s in &file.service {
                for m in &s.method {
                    paths.push(format!("/laneq.v1.{}/{}", s.name(), m.name()));
                }
            }
        }
        paths
    }

    #[test]
    fn every_public_method_has_a_permission_of_its_own() {
        let methods = public_methods();
        assert!(methods.len() >= 54, "{} methods", methods.len());
        let admin_only: Vec<&String> = methods
            .iter()
            .filter(|m| permission_of(m) == Access::Needs(Permission::Admin))
            .collect();
        // Admin's own: membership, backups, pools, projects, tokens, the
        // retention and removing a worker. A method
        // that falls through to admin by accident shows up here.
        let expected = [
            "/laneq.v1.Cluster/AddNode",
            "/laneq.v1.Cluster/RemoveNode",
            "/laneq.v1.Cluster/TransferLeader",
            "/laneq.v1.Cluster/SaveSnapshot",
            "/laneq.v1.Pools/CreatePool",
            "/laneq.v1.Pools/AddCluster",
            "/laneq.v1.Pools/RemoveCluster",
            "/laneq.v1.Projects/CreateProject",
            "/laneq.v1.Projects/UpdateProject",
            "/laneq.v1.Tokens/CreateToken",
            "/laneq.v1.Tokens/ListTokens",
            "/laneq.v1.Tokens/RevokeToken",
            "/laneq.v1.Config/SetRetention",
            "/laneq.v1.Workers/RemoveWorker",
        ];
        let mut admin_only: Vec<&str> = admin_only.iter().map(|s| s.as_str()).collect();
        let mut expected = expected.to_vec();
        admin_only.sort();
        expected.sort();
        assert_eq!(admin_only, expected);
        for m in &methods {
            assert_ne!(permission_of(m), Access::Peer, "{m}");
        }
    }

    #[test]
    fn probes_are_open_and_peers_go_to_the_transport() {
        assert_eq!(permission_of("/healthz"), Access::Open);
        assert_eq!(permission_of("/readyz"), Access::Open);
        assert_eq!(permission_of("/grpc.health.v1.Health/Check"), Access::Open);
        assert_eq!(permission_of("/laneq.v1.Cluster/Init"), Access::Open);
        assert_eq!(permission_of("/metrics"), Access::Needs(Permission::Read));
        assert_eq!(
            permission_of("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            Access::Needs(Permission::Read)
        );
        assert_eq!(permission_of("/laneq.raft.RaftPeer/Vote"), Access::Peer);
        assert_eq!(
            permission_of("/laneq.v1.Tasks/Nope"),
            Access::Needs(Permission::Admin)
        );
    }
}
