//! Backups: a consistent copy of the whole state, taken on the leader
//! (`laneq cluster snapshot save`), and a fresh data dir built from one for
//! a new cluster (`laneq node restore`), as `etcdutl snapshot restore` does.
//!
//! A restored data dir looks like that of a node which has just installed
//! the backup as a snapshot: the state machine at the backup's log id, the
//! log purged up to it, and the snapshot file saved. Only the membership is
//! new: the voters of the restoring config. Every node of the new cluster is
//! restored from the same file with the same peers, so they agree on the
//! log id, the state and its digest, and elect a leader in the next term.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;

use openraft::{BasicNode, Membership};

use super::log_store::{COMMITTED, PURGED, VOTE};
use super::state_machine::{export, save_snapshot_file, APPLIED, MEMBERSHIP, SNAPSHOT_PATH};
use super::{NodeError, RaftNode, SnapshotMeta, StoredMembership, Vote};
use crate::codec::{decode, encode, invalid};
use crate::config::NodeConfig;
use crate::records::{SnapshotReader, Table};
use crate::store::{Identity, SmBatch, Store};

/// A consistent copy of the whole state, as a snapshot blob.
pub struct Taken {
    pub index: u64,
    pub term: u64,
    pub tasks: u64,
    pub queues: u64,
    pub blob: Vec<u8>,
}

impl RaftNode {
    /// Refused but on the leader; there, passes a linearizable read
    /// barrier, so that a copy taken after it holds every write
    /// acknowledged before the call.
    pub async fn check_backup(&self) -> Result<(), NodeError> {
        if !self.raft.is_leader() {
            return Err(self.not_leader());
        }
        self.linearize().await.map(drop)
    }

    /// Takes the copy (after [`RaftNode::check_backup`]), from one
    /// consistent RocksDB view on a background thread while apply goes on.
    pub async fn take_backup(&self) -> Result<Taken, NodeError> {
        let store = self.sm.store().clone();
        let failed = |e: io::Error| NodeError::Unavailable(format!("take the snapshot: {e}"));
        let (meta, exported) = store
            .clone()
            .background(move || export(&store))
            .await
            .map_err(failed)?;
        let log_id = meta
            .last_log_id
            .ok_or_else(|| NodeError::Unavailable("nothing is applied yet".into()))?;
        Ok(Taken {
            index: log_id.index(),
            term: log_id.committed_leader_id().term,
            tasks: exported.records(Table::Tasks),
            queues: exported.records(Table::Queues),
            blob: exported.blob,
        })
    }
}

/// What [`restore`] built.
#[derive(Debug)]
pub struct Restored {
    pub index: u64,
    pub term: u64,
    pub tasks: u64,
    pub queues: u64,
    /// The new cluster's voters: (id, address).
    pub members: Vec<(u64, String)>,
}

/// Builds `config`'s data dir from a snapshot blob, for a new cluster of
/// the config's peers. The dir must not exist or be empty. Its identity
/// file is written last: a restore cut short leaves a database without one,
/// which a node refuses to start on.
pub fn restore(blob: &[u8], config: &NodeConfig) -> io::Result<Restored> {
    config
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("config: {e}")))?;
    let dir = &config.data_dir;
    refuse_non_empty(dir)?;
    let reader = SnapshotReader::parse(blob)?;
    let meta: SnapshotMeta = decode(reader.header())?;
    let log_id = meta
        .last_log_id
        .ok_or_else(|| invalid("the snapshot holds no applied entry"))?;
    let peers = config.peer_map();
    let store = Store::open(dir)?;
    let state = store.sm_import(&reader)?;
    let membership = StoredMembership::new(Some(log_id), voters(&peers)?);
    let mut batch = SmBatch::default();
    batch.meta(APPLIED, encode(&Some(log_id)));
    batch.meta(MEMBERSHIP, encode(&membership));
    store.sm_commit(batch)?;
    let term = log_id.committed_leader_id().term;
    // The log as a snapshot install leaves it: purged up to the backup's
    // entry, and a vote in its term, so that the first election is for the
    // next term and every new entry's log id comes after the backup's.
    store.raft_meta_put(PURGED, &encode(&log_id), false)?;
    store.raft_meta_put(COMMITTED, &encode(&Some(log_id)), false)?;
    store.raft_meta_put(VOTE, &encode(&Vote::new(term, config.id)), false)?;
    let (snapshot_meta, snapshot) = export(&store)?;
    debug_assert_eq!(snapshot_meta.last_log_id, Some(log_id));
    save_snapshot_file(&store, &dir.join(SNAPSHOT_PATH), &snapshot.blob)?;
    store.sync()?;
    drop(store);
    Identity::new(config.id, &config.cluster).write(dir)?;
    Ok(Restored {
        index: log_id.index(),
        term,
        tasks: state.tasks_after(0).count() as u64,
        queues: state.queues().count() as u64,
        members: peers.into_iter().collect(),
    })
}

fn voters(peers: &BTreeMap<u64, String>) -> io::Result<Membership<u64, BasicNode>> {
    let ids: BTreeSet<u64> = peers.keys().copied().collect();
    let nodes = peers
        .iter()
        .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }));
    Membership::new(vec![ids], nodes.collect::<BTreeMap<_, _>>())
        .map_err(|e| invalid(format!("peers: {e}")))
}

fn refuse_non_empty(dir: &Path) -> io::Result<()> {
    match std::fs::read_dir(dir).map(|mut entries| entries.next()) {
        Ok(Some(_)) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "data dir {} is not empty: a restore builds a new one; move it away first \
                 (one that a cut-short restore left, without laneq-identity.toml, is safe to delete)",
                dir.display()
            ),
        )),
        Ok(None) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use openraft::storage::{RaftLogReader, RaftLogStorage, RaftStateMachine};
    use openraft::vote::RaftLeaderId;

    use super::*;
    use crate::model::state::tests::{cmd, submit};
    use crate::model::{Op, State};
    use crate::raft::state_machine::DIGEST;
    use crate::raft::{LogId, LogStore, StateMachine};

    /// A data dir whose state machine holds `tasks` tasks, applied up to a
    /// log id of term 4 by node 9 of a one-node membership.
    fn source(dir: &Path, tasks: u64) -> (State, LogId) {
        let store = Store::open(dir).unwrap();
        let mut state = State::new();
        let mut batch = SmBatch::default();
        let mut changed = vec![];
        let gpu = Op::CreateQueue {
            name: "gpu".into(),
            pool: "default".into(),
            spec: Default::default(),
        };
        state.apply(&cmd(1, "q", gpu), &mut changed);
        for i in 0..tasks {
            let queue = if i % 2 == 0 { "gpu" } else { "default" };
            state.apply(&cmd(10 + i, &format!("t{i}"), submit(queue)), &mut changed);
        }
        changed.sort();
        changed.dedup();
        for key in &changed {
            batch.record(&state, key);
        }
        let leader = openraft::alias::CommittedLeaderIdOf::<super::super::TypeConfig>::new(4, 9);
        let log_id = LogId::new(leader, 77);
        let old = BTreeMap::from([(9, "10.0.0.9:7000".to_string())]);
        let membership = StoredMembership::new(Some(log_id), voters(&old).unwrap());
        batch.meta(APPLIED, encode(&Some(log_id)));
        batch.meta(MEMBERSHIP, encode(&membership));
        batch.meta(DIGEST, encode(&[7u8; 32]));
        store.sm_commit(batch).unwrap();
        (state, log_id)
    }

    fn config(dir: &Path, id: u64, cluster: &str) -> NodeConfig {
        let text = format!(
            "id = {id}\ncluster = \"{cluster}\"\ninsecure = true\nlisten = \"127.0.0.1:7101\"\n\
             data_dir = \"{}\"\n\
             [[peers]]\nid = 1\naddr = \"127.0.0.1:7101\"\n\
             [[peers]]\nid = 2\naddr = \"127.0.0.1:7102\"\n\
             [[peers]]\nid = 3\naddr = \"127.0.0.1:7103\"\n",
            dir.display()
        );
        toml::from_str(&text).unwrap()
    }

    #[tokio::test]
    async fn a_restored_dir_is_a_snapshot_install_with_the_new_membership() {
        let tmp = tempfile::tempdir().unwrap();
        let (state, log_id) = source(&tmp.path().join("old"), 25);
        let (_, exported) = export(&Store::open(&tmp.path().join("old")).unwrap()).unwrap();
        let counts = (
            exported.records(Table::Tasks),
            exported.records(Table::Queues),
        );
        assert_eq!(counts, (25, 2), "the export counts its records");
        let blob = exported.blob;

        let dir = tmp.path().join("new");
        let r = restore(&blob, &config(&dir, 2, "restored")).unwrap();
        assert_eq!((r.index, r.term, r.tasks, r.queues), (77, 4, 25, 2));
        assert_eq!(r.members.len(), 3);

        Identity::new(2, "restored").claim(&dir).unwrap();
        assert!(Identity::new(2, "old").claim(&dir).is_err());
        let store = Store::open(&dir).unwrap();
        let mut sm = StateMachine::open(store.clone()).unwrap();
        let (applied, membership) = sm.applied_state().await.unwrap();
        assert_eq!(applied, Some(log_id));
        assert_eq!(membership.log_id(), &Some(log_id));
        let voters: Vec<u64> = membership.membership().voter_ids().collect();
        assert_eq!(voters, vec![1, 2, 3]);
        assert_eq!(*sm.shared().state(), state, "the same state");
        assert_eq!(
            sm.shared().applied().digest,
            [7u8; 32],
            "the digest goes on"
        );

        let snapshot = sm
            .get_current_snapshot()
            .await
            .unwrap()
            .expect("a snapshot file");
        assert_eq!(snapshot.meta.last_log_id, Some(log_id));
        assert_eq!(snapshot.meta.last_membership, membership);

        let mut log = LogStore::new(store);
        let s = log.get_log_state().await.unwrap();
        assert_eq!(
            (s.last_purged_log_id, s.last_log_id),
            (Some(log_id), Some(log_id))
        );
        assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(4, 2)));
    }

    #[test]
    fn a_restore_refuses_a_used_dir_and_a_node_outside_its_peers() {
        let tmp = tempfile::tempdir().unwrap();
        source(&tmp.path().join("old"), 1);
        let blob = export(&Store::open(&tmp.path().join("old")).unwrap())
            .unwrap()
            .1
            .blob;
        let used = tmp.path().join("old");
        let e = restore(&blob, &config(&used, 1, "x")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
        assert!(e.to_string().contains("is not empty"), "{e}");

        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let e = restore(&blob, &config(&empty, 4, "x")).unwrap_err();
        assert!(
            e.to_string().contains("must be in its own peer list"),
            "{e}"
        );
        let mut bad = blob.clone();
        bad[20] ^= 1;
        let e = restore(&bad, &config(&empty, 1, "x")).unwrap_err();
        assert!(e.to_string().contains("corrupt"), "{e}");
        assert_eq!(
            std::fs::read_dir(&empty).unwrap().count(),
            0,
            "nothing written"
        );
        restore(&blob, &config(&empty, 1, "x")).unwrap();
    }
}
