//! This node's own figures, read at each scrape: its Raft position and
//! role, the replication of each follower (on the leader), and the bytes
//! its data dir holds on disk. They differ from node to node; the
//! histograms and counters that storage and Raft record as they work are
//! in `crate::meter`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::replicated::{gauge, gauges};
use crate::raft::{NodeStatus, RaftNode};
use crate::wire::Role;

/// Exports a node's Raft figures and its size on disk.
pub struct NodeCollector {
    pub node: Arc<RaftNode>,
    pub data_dir: PathBuf,
}

impl fmt::Debug for NodeCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NodeCollector")
    }
}

/// How far each follower is behind the leader's log, in entries: the
/// leader's last index less the follower's matched one (all of it before a
/// first match).
pub fn replication_lag(status: &NodeStatus) -> Vec<(String, f64)> {
    (status.replication.iter())
        .map(|(peer, matched)| {
            let lag = status.last_log_index.saturating_sub(matched.unwrap_or(0));
            (peer.to_string(), lag as f64)
        })
        .collect()
}

/// The bytes of every file under `dir`, recursively; what cannot be read
/// (a file removed meanwhile, such as a RocksDB compaction's input) is
/// left out.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

impl Collector for NodeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let s = self.node.status();
        let id = s.id.to_string();
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let e = &mut encoder;
        let info = [(
            vec![
                ("node_id", id.as_str()),
                ("cluster", self.node.cluster.as_str()),
            ],
            1.0,
        )];
        gauges(e, "node_info", "This node's id and cluster", info)?;
        let help = "1 if this node knows a leader, else 0";
        gauge(e, "raft_has_leader", help, flag(s.leader_id.is_some()))?;
        gauge(
            e,
            "raft_is_leader",
            "1 if this node leads, else 0",
            flag(s.role == Role::Leader),
        )?;
        gauge(
            e,
            "raft_term",
            "This node's current Raft term",
            s.term as f64,
        )?;
        encode_indexes(e, &s)?;
        let voters = s.members.iter().filter(|m| m.2).count();
        let members = [
            (vec![("kind", "voter")], voters as f64),
            (vec![("kind", "learner")], (s.members.len() - voters) as f64),
        ];
        gauges(
            e,
            "raft_members",
            "Members of the cluster, as this node knows them",
            members,
        )?;
        let lag = replication_lag(&s);
        let help = "On the leader: entries each follower is behind its log";
        let samples = lag
            .iter()
            .map(|(peer, v)| (vec![("peer", peer.as_str())], *v));
        gauges(e, "raft_replication_lag_entries", help, samples)?;
        let help = "Bytes on disk under the data dir: RocksDB (log, tables, write-ahead log) and \
                    the snapshot";
        gauge(
            e,
            "store_disk_bytes",
            help,
            dir_bytes(&self.data_dir) as f64,
        )
    }
}

/// The log's indexes as this node sees them.
fn encode_indexes(e: &mut DescriptorEncoder<'_>, s: &NodeStatus) -> fmt::Result {
    let indexes = [
        (
            "raft_last_log_index",
            "The last index in this node's log",
            s.last_log_index,
        ),
        (
            "raft_committed_index",
            "The last index this node knows committed",
            s.committed_index,
        ),
        (
            "raft_applied_index",
            "The last index this node has applied",
            s.applied_index,
        ),
        (
            "raft_snapshot_index",
            "The last index in this node's snapshot",
            s.snapshot_index,
        ),
        (
            "raft_purged_index",
            "The last index purged from this node's log",
            s.purged_index,
        ),
    ];
    for (name, help, value) in indexes {
        gauge(e, name, help, value as f64)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(last: u64, replication: Vec<(u64, Option<u64>)>) -> NodeStatus {
        NodeStatus {
            id: 1,
            addr: String::new(),
            role: Role::Leader,
            term: 2,
            leader_id: Some(1),
            last_log_index: last,
            applied_index: last,
            committed_index: last,
            cluster_committed_index: last,
            snapshot_index: 0,
            purged_index: 0,
            digest: String::new(),
            members: vec![],
            replication,
        }
    }

    #[test]
    fn lag_is_the_leader_log_less_each_match() {
        let s = status(100, vec![(2, Some(100)), (3, Some(40)), (4, None)]);
        assert_eq!(
            replication_lag(&s),
            vec![("2".into(), 0.0), ("3".into(), 60.0), ("4".into(), 100.0)]
        );
        assert!(replication_lag(&status(5, vec![])).is_empty());
    }

    #[test]
    fn a_dir_size_adds_up_its_files_at_every_depth() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 100]).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub").join("b"), [0u8; 23]).unwrap();
        assert_eq!(dir_bytes(dir.path()), 123);
        assert_eq!(dir_bytes(&dir.path().join("missing")), 0);
    }
}
