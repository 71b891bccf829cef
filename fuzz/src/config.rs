//! What laneq parses from text a person writes. The first byte picks:
//!
//! - 0: a node config (`toml::from_str::<NodeConfig>`, then `validate()`;
//!   a valid one also gives its peer map and snapshot intervals);
//! - 1: an endpoint list (`client::parse_endpoints`, as `--endpoints` and
//!   `LANEQ_ENDPOINTS` are read);
//! - 2: resource amounts (`spec::parse_resources`, as `--resources` and
//!   `--quota` are read) and priorities (`spec::parse_priority`); an amount
//!   that parses formats (`format_quantity`) to text that parses to it;
//! - 3: the CLI's command line (`Cli::try_parse_from`, arguments split at
//!   NUL bytes): clap and laneq's value parsers, nothing run.
//!
//! Text that is not UTF-8 is read lossily. Any input gets an answer, never a
//! panic.

use clap::Parser;
use laneq::config::NodeConfig;
use laneq::model::spec;

pub fn run(data: &[u8]) {
    let (mode, rest) = crate::split(data);
    let text = String::from_utf8_lossy(rest);
    match mode % 4 {
        0 => node_config(&text),
        1 => {
            if let Ok(eps) = laneq::client::parse_endpoints(&text) {
                assert!(!eps.is_empty(), "an endpoint list that parses names one");
            }
        }
        2 => amounts(&text),
        _ => cli(&text),
    }
}

fn node_config(text: &str) {
    let Ok(config) = toml::from_str::<NodeConfig>(text) else {
        return;
    };
    if config.validate().is_ok() {
        let peers = config.peer_map();
        assert!(peers.contains_key(&config.id), "a node is in its peer map");
        for id in peers.keys() {
            let _ = config.raft.snapshot_interval(*id);
        }
    }
}

fn amounts(text: &str) {
    let _ = spec::parse_priority(text);
    let Ok(resources) = spec::parse_resources("resources", text) else {
        return;
    };
    for (name, &amount) in &resources {
        let written = spec::format_quantity(name, amount);
        let read = spec::parse_quantity("resources", name, &written);
        assert_eq!(
            read.ok(),
            Some(amount),
            "{name}={amount} formats as {written:?}, which reads otherwise"
        );
    }
}

fn cli(text: &str) {
    let args = std::iter::once("laneq").chain(text.split('\0'));
    let _ = laneq::cli::Cli::try_parse_from(args);
}
