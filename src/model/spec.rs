//! A queue's settings (its spec) and resource quantities, with their
//! defaults, limits and checks. Pure data: no IO.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::validate;
use super::ModelError;

/// The priority given when none is: `medium`.
pub const PRIORITY_DEFAULT: u8 = 50;
/// The depth given when none is.
pub const DEPTH_DEFAULT: u64 = 10_000;
/// Longest queue description, in bytes.
pub const DESCRIPTION_MAX_BYTES: usize = 1024;
/// Most named resources in a quota or a request.
pub const RESOURCES_MAX: usize = 32;

/// Which clusters of its pool a queue's work may run on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ClusterSelector {
    /// `*`: every cluster of the pool, present and future.
    #[default]
    All,
    /// Only these clusters of the pool.
    Only(BTreeSet<String>),
}

/// How tasks of different projects that share a queue are interleaved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Fairness {
    #[default]
    RoundRobin,
    ShuffleInterleave,
}

impl Fairness {
    pub fn as_str(self) -> &'static str {
        match self {
            Fairness::RoundRobin => "round_robin",
            Fairness::ShuffleInterleave => "shuffle_interleave",
        }
    }

    pub fn parse(field: &str, s: &str) -> Result<Self, ModelError> {
        match s {
            "" | "round_robin" => Ok(Fairness::RoundRobin),
            "shuffle_interleave" => Ok(Fairness::ShuffleInterleave),
            other => Err(ModelError::invalid(
                field,
                format!("{other:?} is not a fairness mode; use round_robin or shuffle_interleave"),
            )),
        }
    }
}

/// A queue's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum QueueState {
    #[default]
    Active,
    Draining,
    Drained,
}

impl QueueState {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueState::Active => "active",
            QueueState::Draining => "draining",
            QueueState::Drained => "drained",
        }
    }
}

/// Resource amounts by name: `cpu` in millicores, `memory` in bytes, `gpu`
/// and custom resources in units.
pub type Resources = BTreeMap<String, u64>;

/// The settings of a queue. 0 means unlimited for every limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSpec {
    pub clusters: ClusterSelector,
    /// Most runs active on the queue at once.
    pub run_concurrency: u32,
    /// Most tasks running at once; 1 serialises the queue.
    pub action_concurrency: u32,
    /// Most tasks queued plus running; a submit past it is refused.
    pub depth: u64,
    /// 1 (min) to 100 (max); among competing queues the higher goes first.
    pub priority: u8,
    pub fairness: Fairness,
    /// Most resources that running tasks may hold together.
    pub quota: Resources,
    pub description: String,
}

impl Default for QueueSpec {
    fn default() -> Self {
        Self {
            clusters: ClusterSelector::All,
            run_concurrency: 0,
            action_concurrency: 0,
            depth: DEPTH_DEFAULT,
            priority: PRIORITY_DEFAULT,
            fairness: Fairness::RoundRobin,
            quota: Resources::new(),
            description: String::new(),
        }
    }
}

impl QueueSpec {
    /// Checks the shape of every field (not whether clusters exist).
    pub fn validate(&self) -> Result<(), ModelError> {
        if !(1..=100).contains(&self.priority) {
            return Err(ModelError::invalid(
                "priority",
                format!(
                    "{} is out of range; use 1 to 100, or min, medium, max",
                    self.priority
                ),
            ));
        }
        if self.description.len() > DESCRIPTION_MAX_BYTES {
            return Err(ModelError::invalid(
                "description",
                format!(
                    "is {} bytes long; the limit is {DESCRIPTION_MAX_BYTES}",
                    self.description.len()
                ),
            ));
        }
        if let ClusterSelector::Only(clusters) = &self.clusters {
            if clusters.is_empty() {
                return Err(ModelError::invalid(
                    "clusters",
                    "an empty list selects nothing; give clusters or `*` for all",
                ));
            }
            for c in clusters {
                validate::name("clusters", c)?;
            }
        }
        resources("quota", &self.quota)
    }
}

/// Checks resource names and count.
pub fn resources(field: &str, r: &Resources) -> Result<(), ModelError> {
    if r.len() > RESOURCES_MAX {
        return Err(ModelError::invalid(
            field,
            format!("{} resources; the limit is {RESOURCES_MAX}", r.len()),
        ));
    }
    r.keys().try_for_each(|name| validate::name(field, name))
}

/// Parses a priority: `min`, `medium`, `max` or 1 to 100.
pub fn parse_priority(s: &str) -> Result<u8, ModelError> {
    match s {
        "min" => Ok(1),
        "medium" => Ok(PRIORITY_DEFAULT),
        "max" => Ok(100),
        n => n
            .parse::<u8>()
            .ok()
            .filter(|p| (1..=100).contains(p))
            .ok_or_else(|| {
                ModelError::invalid(
                    "priority",
                    format!("{n:?}: use min, medium, max or 1 to 100"),
                )
            }),
    }
}

/// Parses `cpu=4,memory=16Gi,gpu=1,ib=2` into amounts (cpu in millicores,
/// memory in bytes). `field` names the flag in errors.
pub fn parse_resources(field: &str, s: &str) -> Result<Resources, ModelError> {
    let mut out = Resources::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((name, value)) = part.split_once('=') else {
            return Err(ModelError::invalid(
                field,
                format!("{part:?}: write NAME=AMOUNT"),
            ));
        };
        let amount = parse_quantity(field, name.trim(), value.trim())?;
        if out.insert(name.trim().to_string(), amount).is_some() {
            return Err(ModelError::invalid(field, format!("{name} is given twice")));
        }
    }
    resources(field, &out)?;
    Ok(out)
}

/// One amount: cpu accepts cores with up to 3 decimals (`0.5`) or `500m`;
/// memory accepts a binary or decimal suffix (`16Gi`, `512M`); others are
/// plain counts.
pub fn parse_quantity(field: &str, name: &str, value: &str) -> Result<u64, ModelError> {
    let bad = || ModelError::invalid(field, format!("{name}={value:?} is not an amount"));
    match name {
        "cpu" => {
            if let Some(m) = value.strip_suffix('m') {
                return m.parse::<u64>().map_err(|_| bad());
            }
            let (whole, frac) = value.split_once('.').unwrap_or((value, ""));
            if frac.len() > 3 || !frac.chars().all(|c| c.is_ascii_digit()) {
                return Err(bad());
            }
            let whole: u64 = whole.parse().map_err(|_| bad())?;
            let frac: u64 = format!("{frac:0<3}").parse().map_err(|_| bad())?;
            whole
                .checked_mul(1000)
                .and_then(|w| w.checked_add(frac))
                .ok_or_else(bad)
        }
        "memory" => {
            const UNITS: [(&str, u64); 8] = [
                ("Ki", 1 << 10),
                ("Mi", 1 << 20),
                ("Gi", 1 << 30),
                ("Ti", 1 << 40),
                ("K", 1_000),
                ("M", 1_000_000),
                ("G", 1_000_000_000),
                ("T", 1_000_000_000_000),
            ];
            let (digits, unit) = UNITS
                .iter()
                .find_map(|(suffix, mult)| value.strip_suffix(suffix).map(|d| (d, *mult)))
                .unwrap_or((value, 1));
            let n: u64 = digits.parse().map_err(|_| bad())?;
            n.checked_mul(unit).ok_or_else(bad)
        }
        _ => value.parse().map_err(|_| bad()),
    }
}

/// Formats an amount the way it is written: cpu in cores, memory with a
/// binary suffix when exact.
pub fn format_quantity(name: &str, amount: u64) -> String {
    match name {
        "cpu" if amount % 1000 == 0 => (amount / 1000).to_string(),
        "cpu" => format!("{amount}m"),
        "memory" => {
            for (suffix, mult) in [
                ("Ti", 1u64 << 40),
                ("Gi", 1 << 30),
                ("Mi", 1 << 20),
                ("Ki", 1 << 10),
            ] {
                if amount >= mult && amount % mult == 0 {
                    return format!("{}{suffix}", amount / mult);
                }
            }
            amount.to_string()
        }
        _ => amount.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_parse_by_name_or_number() {
        assert_eq!(parse_priority("min").unwrap(), 1);
        assert_eq!(parse_priority("medium").unwrap(), 50);
        assert_eq!(parse_priority("max").unwrap(), 100);
        assert_eq!(parse_priority("7").unwrap(), 7);
        for bad in ["0", "101", "high", ""] {
            let e = parse_priority(bad).unwrap_err();
            assert!(e.to_string().starts_with("priority: "), "{e}");
        }
    }

    #[test]
    fn quantities_parse_and_format() {
        let r = parse_resources("quota", "cpu=64, memory=256Gi,gpu=8,ib=2").unwrap();
        assert_eq!(r["cpu"], 64_000);
        assert_eq!(r["memory"], 256 << 30);
        assert_eq!((r["gpu"], r["ib"]), (8, 2));
        assert_eq!(parse_quantity("q", "cpu", "0.5").unwrap(), 500);
        assert_eq!(parse_quantity("q", "cpu", "250m").unwrap(), 250);
        assert_eq!(parse_quantity("q", "memory", "512M").unwrap(), 512_000_000);
        assert_eq!(format_quantity("cpu", 64_000), "64");
        assert_eq!(format_quantity("cpu", 500), "500m");
        assert_eq!(format_quantity("memory", 256 << 30), "256Gi");
        for bad in [
            "cpu",
            "cpu=x",
            "cpu=1.2345",
            "memory=1Qi",
            "gpu=-1",
            "cpu=1,cpu=2",
            "bad name=1",
        ] {
            let e = parse_resources("quota", bad).unwrap_err();
            assert!(e.to_string().starts_with("quota: "), "{bad}: {e}");
        }
        assert!(parse_quantity("q", "memory", "99999999999Ti").is_err());
    }

    #[test]
    fn specs_check_their_fields() {
        assert!(QueueSpec::default().validate().is_ok());
        let mut s = QueueSpec {
            priority: 0,
            ..QueueSpec::default()
        };
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("priority: "));
        s.priority = 100;
        s.clusters = ClusterSelector::Only(BTreeSet::new());
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("clusters: "));
        s.clusters = ClusterSelector::Only(["a100".to_string()].into());
        s.description = "x".repeat(DESCRIPTION_MAX_BYTES + 1);
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("description: "));
        assert_eq!(
            Fairness::parse("f", "shuffle_interleave").unwrap(),
            Fairness::ShuffleInterleave
        );
        assert!(Fairness::parse("f", "fifo").is_err());
    }
}
