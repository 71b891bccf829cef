//! `laneq cluster ...`

use std::time::Duration;

use clap::Subcommand;
use serde_json::json;

use super::output::{self, Output};
use super::{Failure, GlobalArgs};
use crate::client::{Client, ClientError};
use crate::proto::v1::{Member, NodeStatusResponse};
use crate::wire::Role;

#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// Initialise a new cluster from the peer list of the node it reaches.
    /// Safe to repeat: an initialised cluster is left as it is.
    Init,
    /// Add a node: it joins as a learner, catches up, then becomes a voter.
    AddNode {
        /// A new id, never used before in this cluster.
        id: u64,
        /// The node's gRPC address, host:port.
        addr: String,
    },
    /// Remove a node from the membership.
    RemoveNode { id: u64 },
    /// Hand leadership to another voter.
    TransferLeader { id: u64 },
    /// Every member's role, term, log and applied index, and state digest.
    Status,
}

fn members_json(members: &[Member]) -> serde_json::Value {
    json!(members
        .iter()
        .map(|m| json!({"id": m.id, "addr": m.addr, "kind": m.kind}))
        .collect::<Vec<_>>())
}

pub async fn run(g: &GlobalArgs, cmd: ClusterCmd) -> Result<(), Failure> {
    let client = g.client()?;
    match cmd {
        ClusterCmd::Init => {
            let r = client.init().await?;
            match g.output {
                Output::Json => output::json(&json!({
                    "initialized_now": r.initialized_now,
                    "members": members_json(&r.members),
                })),
                Output::Table if r.initialized_now => println!(
                    "initialised the cluster with nodes {}",
                    r.members
                        .iter()
                        .map(|m| m.id.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Output::Table => println!("the cluster was already initialised; nothing changed"),
            }
        }
        ClusterCmd::AddNode { id, addr } => {
            let r = client.add_node(id, &addr).await?;
            print_members(g, &format!("node {id} joined"), &r.members);
        }
        ClusterCmd::RemoveNode { id } => {
            let r = client.remove_node(id).await?;
            print_members(g, &format!("node {id} removed"), &r.members);
        }
        ClusterCmd::TransferLeader { id } => {
            client.transfer_leader(id).await?;
            match g.output {
                Output::Json => output::json(&json!({"leader_id": id})),
                Output::Table => println!("leadership handed to node {id}"),
            }
        }
        ClusterCmd::Status => status(g, &client).await?,
    }
    Ok(())
}

fn print_members(g: &GlobalArgs, headline: &str, members: &[Member]) {
    match g.output {
        Output::Json => output::json(&json!({"members": members_json(members)})),
        Output::Table => {
            println!("{headline}");
            let rows: Vec<Vec<String>> = members
                .iter()
                .map(|m| vec![m.id.to_string(), m.addr.clone(), m.kind.clone()])
                .collect();
            output::table(&["id", "addr", "kind"], &rows);
        }
    }
}

/// Asks any node for the membership, then every member for its own status.
async fn status(g: &GlobalArgs, client: &Client) -> Result<(), Failure> {
    let membership = client.membership().await?;
    let mut members = membership.members.clone();
    if members.is_empty() {
        // Not initialised yet: show the nodes we were pointed at.
        members = client
            .endpoints()
            .into_iter()
            .map(|addr| Member {
                id: 0,
                addr,
                kind: "-".into(),
            })
            .collect();
    }
    let probes = members.iter().map(|m| async move {
        (
            m.clone(),
            client.node_status_at(&m.addr, Duration::from_secs(2)).await,
        )
    });
    let results = futures::future::join_all(probes).await;
    let leader_id = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .find(|s| Role::parse(&s.role) == Some(Role::Leader))
        .map(|s| s.id)
        .or(membership.leader_id);
    let rows: Vec<StatusRow> = results.iter().map(|(m, r)| StatusRow::of(m, r)).collect();
    match g.output {
        Output::Json => {
            let members: Vec<_> = rows.iter().map(StatusRow::json).collect();
            output::json(&json!({"leader_id": leader_id, "members": members}))
        }
        Output::Table => {
            println!(
                "leader: {}",
                leader_id.map_or(
                    "none (election in progress or cluster not initialised)".into(),
                    |l| format!("node {l}")
                )
            );
            let header = [
                "id", "addr", "role", "term", "last log", "applied", "digest",
            ];
            let cells: Vec<Vec<String>> = rows.iter().map(StatusRow::cells).collect();
            output::table(&header, &cells);
        }
    }
    Ok(())
}

/// One member's line of `cluster status`: what it said of itself, or
/// `unreachable`.
struct StatusRow<'a> {
    member: &'a Member,
    id: u64,
    role: String,
    term: u64,
    last_log_index: u64,
    applied_index: u64,
    digest: String,
}

impl<'a> StatusRow<'a> {
    fn of(member: &'a Member, status: &Result<NodeStatusResponse, ClientError>) -> Self {
        match status {
            Ok(s) => StatusRow {
                member,
                id: s.id,
                role: s.role.clone(),
                term: s.term,
                last_log_index: s.last_log_index,
                applied_index: s.applied_index,
                digest: s.digest.clone(),
            },
            Err(_) => StatusRow {
                member,
                id: member.id,
                role: "unreachable".to_string(),
                term: 0,
                last_log_index: 0,
                applied_index: 0,
                digest: String::new(),
            },
        }
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "id": self.id, "addr": self.member.addr, "role": self.role, "kind": self.member.kind,
            "term": self.term, "last_log_index": self.last_log_index,
            "applied_index": self.applied_index, "digest": self.digest,
        })
    }

    fn cells(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            self.member.addr.clone(),
            self.role.clone(),
            self.term.to_string(),
            self.last_log_index.to_string(),
            self.applied_index.to_string(),
            self.digest.clone(),
        ]
    }
}
