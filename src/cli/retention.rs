//! Retention on the command line: `laneq config set retention-age |
//! retention-count | lost-worker-ttl`, `laneq queue retention` (a queue's
//! own rules) and `laneq worker remove`, and how their values read.

use clap::Args;
use serde_json::json;

use super::output::{self, Output};
use super::{Failure, GlobalArgs};
use crate::proto::v1::{OrgConfig, Queue, Retention};

/// A rule as typed: a duration or a count, `off` (0), or, for a queue,
/// `default` (the organisation's rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Default,
    Value(u64),
}

/// Parses a rule of `flag`: `default` (only if `queue`), `off`, `none` or
/// 0, else a duration (`age`) or a count.
pub fn parse_rule(flag: &str, text: &str, age: bool, queue: bool) -> Result<Rule, Failure> {
    match text.trim() {
        "default" if queue => Ok(Rule::Default),
        "default" => Err(Failure::invalid(format!(
            "{flag}: \"default\" is for a queue's rule; the organisation's rule takes a value \
             or off"
        ))),
        "off" | "none" | "0" => Ok(Rule::Value(0)),
        t if age => super::metrics::parse_duration(flag, t).map(Rule::Value),
        t => t
            .replace(['_', ','], "")
            .parse()
            .map(Rule::Value)
            .map_err(|_| {
                Failure::invalid(format!(
                    "{flag}: {t:?} is not a count; give a number, or off{}",
                    if queue { " or default" } else { "" }
                ))
            }),
    }
}

/// What `laneq config set` does with a retention key, if `key` is one:
/// the organisation's config after the change.
pub async fn set_org(g: &GlobalArgs, key: &str, value: &str) -> Result<Option<OrgConfig>, Failure> {
    let (mut age, mut count, mut ttl) = (None, None, None);
    let rule = |age| match parse_rule(key, value, age, false)? {
        Rule::Value(v) => Ok::<_, Failure>(Some(v)),
        Rule::Default => unreachable!("refused for the organisation"),
    };
    match key {
        "retention-age" | "retention_age" => age = rule(true)?,
        "retention-count" | "retention_count" => count = rule(false)?,
        "lost-worker-ttl" | "lost_worker_ttl" => ttl = rule(true)?,
        _ => return Ok(None),
    }
    let client = g.client()?;
    Ok(Some(client.set_retention(age, count, ttl).await?))
}

/// A rule for display: a duration or a count, or `off`.
fn shown(v: u64, age: bool) -> String {
    match (v, age) {
        (0, _) => "off".into(),
        (ms, true) => output::duration(ms),
        (n, false) => n.to_string(),
    }
}

/// The organisation's retention as fields of `laneq config get`.
pub fn org_fields(r: Option<&Retention>) -> Vec<(&'static str, String)> {
    let r = r.copied().unwrap_or_default();
    vec![
        ("retention age", shown(r.age_ms, true)),
        ("retention count", shown(r.count, false)),
        ("lost worker TTL", shown(r.lost_worker_ttl_ms, true)),
    ]
}

pub fn org_json(r: Option<&Retention>) -> serde_json::Value {
    let r = r.copied().unwrap_or_default();
    json!({
        "age_ms": r.age_ms,
        "count": r.count,
        "lost_worker_ttl_ms": r.lost_worker_ttl_ms,
    })
}

/// `laneq queue retention`.
#[derive(Args, Debug)]
#[command(
    after_help = "A queue's finished tasks (succeeded, failed, canceled, dequeued) are \
removed once older than the age, and past the count the oldest go first; the leader collects \
them within seconds of a change. A rule the queue does not set follows the organisation's \
(laneq config set retention-age 7d). A removed task is gone: `laneq task get` says not found.

Examples:
  laneq queue retention train --age 2d --count 1000
  laneq queue retention train --age default     # the organisation's age again
  laneq queue retention train                   # show it"
)]
pub struct QueueRetentionArgs {
    /// The queue.
    name: String,
    /// Keep finished tasks this long after they finished (e.g. 2d, 12h),
    /// `off` for ever, `default` for the organisation's rule.
    #[arg(long)]
    age: Option<String>,
    /// Keep at most this many finished tasks, `off` for no limit,
    /// `default` for the organisation's rule.
    #[arg(long)]
    count: Option<String>,
}

/// A change to one rule of a queue: `None` keeps it, `Some(None)` follows
/// the organisation's again, `Some(Some(v))` sets it.
type RuleChange = Option<Option<u64>>;

impl QueueRetentionArgs {
    fn rules(&self) -> Result<(RuleChange, RuleChange), Failure> {
        let rule = |flag: &str, text: &Option<String>, age| {
            (text.as_deref())
                .map(|t| match parse_rule(flag, t, age, true)? {
                    Rule::Default => Ok::<_, Failure>(None),
                    Rule::Value(v) => Ok(Some(v)),
                })
                .transpose()
        };
        Ok((
            rule("--age", &self.age, true)?,
            rule("--count", &self.count, false)?,
        ))
    }
}

/// Shows a queue's retention, changing it first if asked.
pub async fn queue(g: &GlobalArgs, args: QueueRetentionArgs) -> Result<(), Failure> {
    let (age, count) = args.rules()?;
    let client = g.client()?;
    let q = match (age, count) {
        (None, None) => client.get_queue(&args.name, g.consistency()).await?,
        _ => client.set_queue_retention(&args.name, age, count).await?,
    };
    print_queue(g, &q);
    Ok(())
}

fn print_queue(g: &GlobalArgs, q: &Queue) {
    let r = q.retention.unwrap_or_default();
    let rule = |own: Option<u64>, v: u64, age| match own {
        Some(_) => shown(v, age),
        None => format!("{} (organisation)", shown(v, age)),
    };
    match g.output {
        Output::Json => output::json(&json!({
            "queue": q.name,
            "own_age_ms": r.own_age_ms,
            "own_count": r.own_count,
            "age_ms": r.age_ms,
            "count": r.count,
            "finished_kept": r.finished_kept,
        })),
        Output::Table => output::fields(&[
            ("queue", q.name.clone()),
            ("age", rule(r.own_age_ms, r.age_ms, true)),
            ("count", rule(r.own_count, r.count, false)),
            ("finished kept", r.finished_kept.to_string()),
        ]),
    }
}

/// `laneq worker remove`.
pub async fn remove_worker(g: &GlobalArgs, name: &str, force: bool) -> Result<(), Failure> {
    let requeued = g.client()?.remove_worker(name, force).await?;
    match g.output {
        Output::Json => output::json(&json!({"removed": name, "requeued": requeued})),
        Output::Table => match requeued {
            0 => println!("removed worker {name}"),
            n => println!("removed worker {name}; {n} task(s) went back to their queues"),
        },
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_durations_counts_off_and_default() {
        let day = 86_400_000;
        assert_eq!(
            parse_rule("--age", "7d", true, true).unwrap(),
            Rule::Value(7 * day)
        );
        assert_eq!(
            parse_rule("--age", "off", true, true).unwrap(),
            Rule::Value(0)
        );
        assert_eq!(
            parse_rule("--age", "default", true, true).unwrap(),
            Rule::Default
        );
        assert_eq!(
            parse_rule("--count", "100_000", false, true).unwrap(),
            Rule::Value(100_000)
        );
        assert_eq!(
            parse_rule("--count", "none", false, false).unwrap(),
            Rule::Value(0)
        );
        let bad = [("--age", "7", true, true), ("--count", "lots", false, true)];
        for (flag, text, age, queue) in bad {
            let e = parse_rule(flag, text, age, queue).unwrap_err();
            assert!(e.message.contains(flag), "{}", e.message);
        }
        let e = parse_rule("retention-age", "default", true, false).unwrap_err();
        assert!(e.message.contains("queue"), "{}", e.message);
    }

    #[test]
    fn queue_retention_flags_parse_with_clap() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: QueueRetentionArgs,
        }
        let cli = Cli::try_parse_from(["x", "train", "--age", "2d", "--count", "default"]).unwrap();
        assert_eq!(
            cli.args.rules().unwrap(),
            (Some(Some(2 * 86_400_000)), Some(None))
        );
        let show = Cli::try_parse_from(["x", "train"]).unwrap();
        assert_eq!(show.args.rules().unwrap(), (None, None));
    }
}
