//! `laneq config ...`: the organisation's settings.

use clap::Subcommand;
use serde_json::json;

use super::output::{self, Output};
use super::{Failure, GlobalArgs};
use crate::proto::v1::OrgConfig;

/// The keys `laneq config set` knows.
const KEYS: [&str; 1] = ["default-queue"];

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Show the organisation's settings.
    Get,
    /// Change one setting. Keys: `default-queue` (where tasks go whose
    /// project names no default queue).
    Set {
        /// The setting: default-queue.
        key: String,
        /// Its new value (for default-queue: a queue's name).
        value: String,
    },
}

fn print_config(g: &GlobalArgs, c: &OrgConfig) {
    match g.output {
        Output::Json => output::json(&json!({"default_queue": c.default_queue})),
        Output::Table => output::fields(&[("default queue", c.default_queue.clone())]),
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
                return Err(Failure::invalid(format!(
                    "key: {other:?} is not a setting; use one of {}",
                    KEYS.join(", ")
                )))
            }
        },
    }
    Ok(())
}
