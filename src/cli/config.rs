//! `laneq config ...`: the organisation's settings.

use clap::Subcommand;
use serde_json::json;

use super::output::{self, Output};
use super::{Failure, GlobalArgs};
use crate::proto::v1::OrgConfig;

/// The keys `laneq config set` knows.
const KEYS: [&str; 4] = [
    "default-queue",
    "retention-age",
    "retention-count",
    "lost-worker-ttl",
];

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Show the organisation's settings.
    Get,
    /// Change one setting. Keys: `default-queue` (where tasks go whose
    /// project names no default queue), `retention-age` (how long a
    /// finished task is kept after it finished: 7d by default),
    /// `retention-count` (how many finished tasks a queue keeps at most:
    /// 100000 by default), `lost-worker-ttl` (how long a lost worker is
    /// kept: 1d by default). `off` turns a rule off.
    #[command(
        after_help = "Finished tasks (succeeded, failed, canceled, dequeued) past the retention are removed by the leader within seconds of a change, without a restart; a queue may have its own rules (laneq queue retention). A removed task is gone: `laneq task get` says not found, and a retried submit whose key is still remembered (24 h) answers ids that no longer exist, so keep the retention longer than any client's retry window.

Examples:
  laneq config set retention-age 14d
  laneq config set retention-count 50000
  laneq config set lost-worker-ttl 6h"
    )]
    Set {
        /// The setting: default-queue, retention-age, retention-count or
        /// lost-worker-ttl.
        key: String,
        /// Its new value: a queue's name, a duration (30m, 12h, 7d), a
        /// count, or off.
        value: String,
    },
}

fn print_config(g: &GlobalArgs, c: &OrgConfig) {
    let retention = c.retention.as_ref();
    match g.output {
        Output::Json => output::json(&json!({
            "default_queue": c.default_queue,
            "retention": super::retention::org_json(retention),
        })),
        Output::Table => {
            let mut fields = vec![("default queue", c.default_queue.clone())];
            fields.extend(super::retention::org_fields(retention));
            output::fields(&fields);
        }
    }
}

pub async fn run(g: &GlobalArgs, cmd: ConfigCmd) -> Result<(), Failure> {
    let client = g.client()?;
    match cmd {
        ConfigCmd::Get => {
            let c = client.get_config(g.consistency()).await?;
            print_config(g, &c);
        }
        ConfigCmd::Set { key, value } => match key.as_str() {
            "default-queue" | "default_queue" => {
                let c = client.set_default_queue(&value).await?;
                print_config(g, &c);
            }
            other => {
                if let Some(c) = super::retention::set_org(g, other, &value).await? {
                    print_config(g, &c);
                    return Ok(());
                }
                return Err(Failure::invalid(format!(
                    "key: {other:?} is not a setting; use one of {}",
                    KEYS.join(", ")
                )));
            }
        },
    }
    Ok(())
}
