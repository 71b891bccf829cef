//! The retention's table: the organisation's rules under `org`, a queue's
//! own under `q` and its id (`records::retention_queue_key`).

use rocksdb::IteratorMode;
use std::io;

use super::{io_err, Store};
use crate::codec::{decode, encode};
use crate::model::{Key, State};
use crate::records::{retention_queue_key, Table, RETENTION_ORG_KEY};

/// The row and value (`None`: deleted) of a retention key.
pub(super) fn change(state: &State, key: &Key) -> (Vec<u8>, Option<Vec<u8>>) {
    match key {
        Key::OrgRetention => (RETENTION_ORG_KEY.to_vec(), Some(encode(state.retention()))),
        Key::QueueRetention(id) => (
            retention_queue_key(*id),
            state.queue_retention(*id).map(encode),
        ),
        _ => unreachable!("only retention keys are written here"),
    }
}

impl Store {
    /// Loads the retention's rules into `state`.
    pub(super) fn retention_load(&self, state: &mut State) -> io::Result<()> {
        let cf = self.cf(Table::Retention.cf());
        for item in self.db().iterator_cf(cf, IteratorMode::Start) {
            let (k, v) = item.map_err(io_err)?;
            match &*k {
                RETENTION_ORG_KEY => state.load_org_retention(decode(&v)?),
                _ => state.load_queue_retention(decode(&v)?),
            }
        }
        Ok(())
    }
}
