//! `laneq pool ...`

use clap::Subcommand;
use serde_json::json;

use super::output::{self, Output};
use super::{Failure, GlobalArgs};
use crate::proto::v1::Pool;

#[derive(Subcommand, Debug)]
pub enum PoolCmd {
    /// Create a pool: an isolation boundary that holds clusters. Work never
    /// crosses pools.
    Create {
        /// 1-63 ASCII letters, digits, '-', '_' or '.', starting with a letter or digit.
        name: String,
        /// A cluster of the pool (repeat for several).
        #[arg(long = "cluster", value_name = "CLUSTER")]
        clusters: Vec<String>,
    },
    /// List every pool with its clusters and number of queues.
    List,
    /// Show one pool.
    Get {
        #[arg(default_value = "default")]
        name: String,
    },
    /// Add a cluster to a pool.
    AddCluster { name: String, cluster: String },
    /// Remove a cluster from a pool.
    RemoveCluster { name: String, cluster: String },
}

pub fn pool_json(p: &Pool) -> serde_json::Value {
    json!({
        "name": p.name,
        "clusters": p.clusters,
        "queues": p.queues,
        "created_ms": p.created_ms,
        "updated_ms": p.updated_ms,
        "version": p.version,
    })
}

fn clusters(p: &Pool) -> String {
    if p.clusters.is_empty() {
        "-".into()
    } else {
        p.clusters.join(",")
    }
}

fn print_pool(g: &GlobalArgs, headline: Option<String>, p: &Pool) {
    match g.output {
        Output::Json => output::json(&pool_json(p)),
        Output::Table => {
            if let Some(line) = headline {
                println!("{line}");
            }
            output::fields(&[
                ("name", p.name.clone()),
                ("clusters", clusters(p)),
                ("queues", p.queues.to_string()),
                ("created", output::time(p.created_ms)),
                ("updated", output::time(p.updated_ms)),
            ]);
        }
    }
}

pub async fn run(g: &GlobalArgs, cmd: PoolCmd) -> Result<(), Failure> {
    let client = g.client()?;
    match cmd {
        PoolCmd::Create { name, clusters } => {
            let p = client.create_pool(&name, &clusters).await?;
            print_pool(g, Some(format!("created pool {}", p.name)), &p);
        }
        PoolCmd::List => {
            let pools = client.list_pools(g.consistency()).await?;
            match g.output {
                Output::Json => {
                    output::json(&json!(pools.iter().map(pool_json).collect::<Vec<_>>()))
                }
                Output::Table => {
                    let rows: Vec<Vec<String>> = pools
                        .iter()
                        .map(|p| vec![p.name.clone(), clusters(p), p.queues.to_string()])
                        .collect();
                    output::table(&["name", "clusters", "queues"], &rows);
                }
            }
        }
        PoolCmd::Get { name } => {
            let p = client.get_pool(&name, g.consistency()).await?;
            print_pool(g, None, &p);
        }
        PoolCmd::AddCluster { name, cluster } => {
            let p = client.change_cluster(&name, &cluster, true).await?;
            print_pool(
                g,
                Some(format!("added cluster {cluster} to pool {name}")),
                &p,
            );
        }
        PoolCmd::RemoveCluster { name, cluster } => {
            let p = client.change_cluster(&name, &cluster, false).await?;
            print_pool(
                g,
                Some(format!("removed cluster {cluster} from pool {name}")),
                &p,
            );
        }
    }
    Ok(())
}
