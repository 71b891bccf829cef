//! `laneq cluster ...`

use std::time::Duration;

use clap::Subcommand;
use serde_json::json;

use super::output::{self, Output};
use super::{Failure, GlobalArgs};
use crate::client::Client;
use crate::proto::v1::Member;

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
            Client::node_status(&m.addr, Duration::from_secs(2)).await,
        )
    });
    let results = futures::future::join_all(probes).await;
    let leader_id = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .find(|s| s.role == "leader")
        .map(|s| s.id)
        .or(membership.leader_id);
    let mut rows_json = vec![];
    let mut rows = vec![];
    for (m, r) in &results {
        let (id, role, term, last, applied, digest) = match r {
            Ok(s) => (
                s.id,
                s.role.clone(),
                s.term,
                s.last_log_index,
                s.applied_index,
                s.digest.clone(),
            ),
            Err(_) => (m.id, "unreachable".to_string(), 0, 0, 0, String::new()),
        };
        rows_json.push(json!({
            "id": id, "addr": m.addr, "role": role, "kind": m.kind, "term": term,
            "last_log_index": last, "applied_index": applied, "digest": digest,
        }));
        rows.push(vec![
            id.to_string(),
            m.addr.clone(),
            role,
            term.to_string(),
            last.to_string(),
            applied.to_string(),
            digest,
        ]);
    }
    match g.output {
        Output::Json => output::json(&json!({"leader_id": leader_id, "members": rows_json})),
        Output::Table => {
            println!(
                "leader: {}",
                leader_id.map_or(
                    "none (election in progress or cluster not initialised)".into(),
                    |l| format!("node {l}")
                )
            );
            output::table(
                &[
                    "id", "addr", "role", "term", "last log", "applied", "digest",
                ],
                &rows,
            );
        }
    }
    Ok(())
}
