//! `laneq token ...`: access tokens (admin only).

use std::time::Duration;

use clap::Subcommand;
use serde_json::json;

use super::output::{self, Output};
use super::{Failure, GlobalArgs};
use crate::proto::v1::TokenInfo;

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Create a token and print it, once: the cluster keeps only a digest of
    /// its secret. Roles: admin (everything), submitter (tasks of its
    /// projects), worker (the worker protocol in its pools), viewer (reads).
    Create {
        /// Its name, recorded as the actor of what it does.
        #[arg(long)]
        name: String,
        /// admin, submitter, worker or viewer.
        #[arg(long)]
        role: String,
        /// A submitter's project (repeat for several).
        #[arg(long = "project", value_name = "PROJECT")]
        projects: Vec<String>,
        /// A worker's pool (repeat for several).
        #[arg(long = "pool", value_name = "POOL")]
        pools: Vec<String>,
        /// Lifetime, e.g. 30d, 12h, 90m; default: it never expires.
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<Duration>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token: every node refuses it from then on.
    Revoke { name: String },
}

/// A lifetime: a number and a unit (s, m, h or d).
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let err = || format!("{text:?}: give a number and a unit, e.g. 30d, 12h, 90m or 3600s");
    let unit = text.chars().last().ok_or_else(err)?;
    let n: u64 = text[..text.len() - unit.len_utf8()]
        .parse()
        .map_err(|_| err())?;
    let secs = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => return Err(err()),
    };
    if n == 0 {
        return Err(format!("{text:?}: a lifetime must be more than 0"));
    }
    n.checked_mul(secs).map(Duration::from_secs).ok_or_else(err)
}

pub fn token_json(t: &TokenInfo) -> serde_json::Value {
    json!({
        "name": t.name,
        "role": t.role,
        "projects": t.projects,
        "pools": t.pools,
        "created_ms": t.created_ms,
        "expires_ms": (t.expires_ms != 0).then_some(t.expires_ms),
        "created_by": t.created_by,
    })
}

fn scope(t: &TokenInfo) -> String {
    let mut parts = Vec::new();
    if !t.projects.is_empty() {
        parts.push(format!("projects {}", t.projects.join(",")));
    }
    if !t.pools.is_empty() {
        parts.push(format!("pools {}", t.pools.join(",")));
    }
    output::or_dash(&parts.join("; "))
}

fn expires(t: &TokenInfo) -> String {
    match t.expires_ms {
        0 => "never".into(),
        ms => output::time(ms),
    }
}

pub async fn run(g: &GlobalArgs, cmd: TokenCmd) -> Result<(), Failure> {
    let client = g.client()?;
    match cmd {
        TokenCmd::Create {
            name,
            role,
            projects,
            pools,
            ttl,
        } => {
            let (token, digest) = crate::client::new_token(&name);
            let ttl = ttl.unwrap_or_default();
            let info = client
                .create_token(&name, &role, &projects, &pools, digest, ttl)
                .await?;
            print_created(g, &info, &token);
        }
        TokenCmd::List => print_list(g, &client.list_tokens(g.consistency()).await?),
        TokenCmd::Revoke { name } => {
            client.revoke_token(&name).await?;
            match g.output {
                Output::Json => output::json(&json!({"revoked": name})),
                Output::Table => println!("token {name} revoked"),
            }
        }
    }
    Ok(())
}

/// A new token, with its secret: the one time it is shown.
fn print_created(g: &GlobalArgs, info: &TokenInfo, token: &str) {
    match g.output {
        Output::Json => {
            let mut v = token_json(info);
            v["token"] = json!(token);
            output::json(&v)
        }
        Output::Table => {
            println!(
                "token {} created (role {}, {}, expires {}). Its secret is shown only now:\n\n  \
                 {token}\n",
                info.name,
                info.role,
                scope(info),
                expires(info)
            );
            println!("Use it with --token, LANEQ_TOKEN or `laneq context set NAME --token ...`.");
        }
    }
}

fn print_list(g: &GlobalArgs, tokens: &[TokenInfo]) {
    match g.output {
        Output::Json => output::json(&json!(tokens.iter().map(token_json).collect::<Vec<_>>())),
        Output::Table => {
            let rows: Vec<Vec<String>> = tokens
                .iter()
                .map(|t| {
                    vec![
                        t.name.clone(),
                        t.role.clone(),
                        scope(t),
                        output::time(t.created_ms),
                        expires(t),
                        t.created_by.clone(),
                    ]
                })
                .collect();
            output::table(
                &["name", "role", "scope", "created", "expires", "created by"],
                &rows,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_read_with_their_unit() {
        assert_eq!(parse_ttl("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_ttl("90m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_ttl("3600s"), Ok(Duration::from_secs(3_600)));
        for bad in ["", "d", "30", "30w", "-1h", "0h", "99999999999999999999d"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }
}
