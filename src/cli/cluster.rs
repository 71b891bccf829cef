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
    /// Initialise a new cluster from the peer list of the node it reaches,
    /// and create its first admin token, printed once (a cluster that has
    /// tokens already gets none). Safe to repeat: an initialised cluster is
    /// left as it is.
    Init {
        /// Save the endpoints and the new admin token as this context of the
        /// client config, and make it current.
        #[arg(long, value_name = "NAME")]
        save_context: Option<String>,
    },
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
    /// Every member's role, term, log and applied index, and state digest;
    /// a member that does not answer is shown as unreachable.
    Status,
    /// Exits 0 only when every member answers, a leader is known and no
    /// member's applied index lags the leader's log by more than
    /// --max-lag entries; otherwise prints each problem and exits 11. For
    /// monitoring scripts and deploy checks.
    Health {
        /// The most log entries a member may have left to apply, behind the
        /// end of the leader's log.
        #[arg(long, default_value_t = HEALTH_MAX_LAG_DEFAULT, value_name = "ENTRIES")]
        max_lag: u64,
    },
    /// Back up the whole cluster to a file, and check such files (restore
    /// one with `laneq node restore`).
    #[command(subcommand)]
    Snapshot(super::snapshot::SnapshotCmd),
}

/// `cluster health --max-lag` by default: at full load a member is a few
/// hundred entries behind between two probes; a member thousands behind is
/// catching up after a restart or is too slow.
const HEALTH_MAX_LAG_DEFAULT: u64 = 1_000;
/// The exit code of `cluster health` when it found a problem.
const UNHEALTHY: u8 = 11;

fn members_json(members: &[Member]) -> serde_json::Value {
    json!(members
        .iter()
        .map(|m| json!({"id": m.id, "addr": m.addr, "kind": m.kind}))
        .collect::<Vec<_>>())
}

pub async fn run(g: &GlobalArgs, cmd: ClusterCmd) -> Result<(), Failure> {
    let client = g.client()?;
    match cmd {
        ClusterCmd::Init { save_context } => init(g, &client, save_context).await?,
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
        ClusterCmd::Health { max_lag } => health(g, &client, max_lag).await?,
        ClusterCmd::Snapshot(cmd) => super::snapshot::run(g, &client, cmd).await?,
    }
    Ok(())
}

/// `cluster init`: initialises, and prints the first admin token once.
async fn init(g: &GlobalArgs, client: &Client, save: Option<String>) -> Result<(), Failure> {
    let (token, digest) = crate::client::new_token("admin");
    let r = client.init(Some(digest)).await?;
    let token = r.admin_token_created.then_some(token);
    if let (Some(name), Some(token)) = (&save, &token) {
        save_context(g, name, token)?;
    }
    let ids = r
        .members
        .iter()
        .map(|m| m.id.to_string())
        .collect::<Vec<_>>();
    match g.output {
        Output::Json => output::json(&json!({
            "initialized_now": r.initialized_now,
            "members": members_json(&r.members),
            "admin_token": token,
        })),
        Output::Table => {
            match r.initialized_now {
                true => println!("initialised the cluster with nodes {}", ids.join(", ")),
                false => println!("the cluster was already initialised; nothing changed"),
            }
            match (&token, &save) {
                (Some(t), None) => println!(
                    "its admin token, shown only now (keep it safe):\n\n  {t}\n\n\
                     Use it with --token, LANEQ_TOKEN or `laneq context set NAME --token ...`."
                ),
                (Some(_), Some(name)) => {
                    println!("its admin token is saved in context {name} (now current)")
                }
                (None, _) => println!("the cluster has tokens already: no new admin token"),
            }
        }
    }
    Ok(())
}

/// Saves the endpoints used and `token` as context `name`.
fn save_context(g: &GlobalArgs, name: &str, token: &str) -> Result<(), Failure> {
    use super::context::{config_path, ClientConfig};
    let path = config_path().ok_or_else(|| {
        Failure::from("no client config path: set LANEQ_CONFIG or HOME".to_string())
    })?;
    let mut config = ClientConfig::load(&path)?;
    let mut with_token = g.clone();
    with_token.token = Some(token.to_string());
    with_token.endpoints = Some(g.resolve()?.endpoints.join(","));
    super::context::set(&with_token, &mut config, name, true)?;
    config.save(&path)?;
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

/// What every member said of itself, and which is the leader.
struct Probe {
    results: Vec<(Member, Result<NodeStatusResponse, ClientError>)>,
    leader_id: Option<u64>,
    initialised: bool,
}

impl Probe {
    /// The leader's own status, when it answered.
    fn leader(&self) -> Option<&NodeStatusResponse> {
        (self.results.iter())
            .filter_map(|(_, r)| r.as_ref().ok())
            .find(|s| Some(s.id) == self.leader_id)
    }
}

/// Asks any node for the membership, then every member for its own status.
async fn probe(client: &Client) -> Result<Probe, ClientError> {
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
            client.status_of(&m.addr, Duration::from_secs(2)).await,
        )
    });
    let results = futures::future::join_all(probes).await;
    let leader_id = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .find(|s| Role::parse(&s.role) == Some(Role::Leader))
        .map(|s| s.id)
        .or(membership.leader_id);
    Ok(Probe {
        initialised: !membership.members.is_empty(),
        results,
        leader_id,
    })
}

async fn status(g: &GlobalArgs, client: &Client) -> Result<(), Failure> {
    let Probe {
        results, leader_id, ..
    } = probe(client).await?;
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

/// `cluster health`: every problem found, exit [`UNHEALTHY`] when any.
async fn health(g: &GlobalArgs, client: &Client, max_lag: u64) -> Result<(), Failure> {
    let (problems, probe) = match probe(client).await {
        Ok(p) => (health_problems(&p, max_lag), Some(p)),
        Err(e) => (vec![format!("no node answers: {e}")], None),
    };
    let leader_id = probe.as_ref().and_then(|p| p.leader_id);
    let healthy = problems.is_empty();
    match g.output {
        Output::Json => {
            let members: Vec<_> = (probe.iter().flat_map(|p| &p.results))
                .map(|(m, r)| StatusRow::of(m, r).json())
                .collect();
            output::json(&json!({
                "healthy": healthy, "leader_id": leader_id, "max_lag": max_lag,
                "problems": problems, "members": members,
            }))
        }
        Output::Table if healthy => {
            let p = probe.as_ref().expect("a healthy cluster answered");
            let leader = leader_id.expect("a healthy cluster has a leader");
            println!(
                "healthy: {} members answer, node {leader} leads, none lags by more than {max_lag} entries",
                p.results.len()
            );
        }
        Output::Table => {
            println!("unhealthy:");
            for problem in &problems {
                println!("  - {problem}");
            }
        }
    }
    match healthy {
        true => Ok(()),
        false => Err(Failure {
            message: format!("the cluster is unhealthy ({} problem(s))", problems.len()),
            code: UNHEALTHY,
        }),
    }
}

/// What keeps a probed cluster from being healthy, in words.
fn health_problems(p: &Probe, max_lag: u64) -> Vec<String> {
    if !p.initialised {
        return vec!["the cluster is not initialised (laneq cluster init)".into()];
    }
    let mut problems = Vec::new();
    for (m, r) in &p.results {
        if let Err(e) = r {
            problems.push(format!("node {} ({}) is unreachable: {e}", m.id, m.addr));
        }
    }
    let Some(leader) = p.leader() else {
        problems.push(match p.leader_id {
            Some(id) => format!("node {id} is said to lead but does not answer"),
            None => "no leader: an election is under way, or a majority is down".into(),
        });
        return problems;
    };
    for (m, r) in &p.results {
        let Ok(s) = r else { continue };
        let lag = leader.last_log_index.saturating_sub(s.applied_index);
        if lag > max_lag {
            problems.push(format!(
                "node {} lags the leader by {lag} entries (applied {}, the leader's log ends at {}; --max-lag {max_lag})",
                m.id, s.applied_index, leader.last_log_index
            ));
        }
    }
    problems
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

#[cfg(test)]
mod tests {
    use super::*;

    fn status(id: u64, role: &str, last_log: u64, applied: u64) -> NodeStatusResponse {
        NodeStatusResponse {
            id,
            role: role.into(),
            last_log_index: last_log,
            applied_index: applied,
            ..Default::default()
        }
    }

    fn member(id: u64) -> Member {
        Member {
            id,
            addr: format!("n{id}:7100"),
            kind: "voter".into(),
        }
    }

    fn probe(results: Vec<Result<NodeStatusResponse, ClientError>>) -> Probe {
        let leader_id = (results.iter())
            .filter_map(|r| r.as_ref().ok())
            .find(|s| s.role == "leader")
            .map(|s| s.id);
        Probe {
            results: (1..).map(member).zip(results).collect(),
            leader_id,
            initialised: true,
        }
    }

    #[test]
    fn a_member_past_the_lag_is_a_problem() {
        let p = probe(vec![
            Ok(status(1, "leader", 5_000, 5_000)),
            Ok(status(2, "follower", 4_990, 4_990)),
            Ok(status(3, "follower", 5_000, 3_000)),
        ]);
        assert_eq!(health_problems(&p, 1_000).len(), 1);
        assert!(health_problems(&p, 1_000)[0].starts_with("node 3 lags the leader by 2000 entries"));
        assert!(health_problems(&p, 2_000).is_empty());
    }

    #[test]
    fn no_leader_is_a_problem() {
        let p = probe(vec![
            Ok(status(1, "candidate", 5, 5)),
            Ok(status(2, "follower", 5, 5)),
        ]);
        let problems = health_problems(&p, 1_000);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].starts_with("no leader"), "{problems:?}");
        let mut p = probe(vec![]);
        p.initialised = false;
        assert!(health_problems(&p, 0)[0].contains("not initialised"));
    }
}
