//! Lease reservations: the tasks that a lease poll of this node found and
//! is proposing a lease for. The other polls look past them. Without this,
//! every waiting worker saw the same new task and wrote a lease for it, and
//! all but one of those writes leased nothing. Also how many polls wait
//! for work now, which the node's status reports.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use tokio::sync::futures::Notified;

use crate::model::State;

#[derive(Default)]
pub struct Reservations {
    reserved: Mutex<BTreeSet<u64>>,
    /// Woken when reserved tasks are let go: a lease may have taken others,
    /// and the polls that looked past them look again.
    released: tokio::sync::Notify,
    /// Lease polls of this node waiting for work now: what shows that a
    /// long poll is parked.
    waiting: AtomicU32,
}

impl Reservations {
    /// Previews the dispatcher for `worker` on `state`, past the tasks other
    /// polls reserved, and reserves what it finds until the guard drops.
    pub fn reserve(&self, state: &State, worker: &str, max_tasks: u32) -> Reserved<'_> {
        let mut reserved = self.reserved.lock().expect("reservations lock");
        let tasks = crate::model::dispatch_preview(state, worker, max_tasks, &reserved);
        reserved.extend(&tasks);
        Reserved { of: self, tasks }
    }

    /// How many lease polls of this node wait for work now.
    pub fn polls_waiting(&self) -> u32 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Counts one lease poll as waiting until the guard drops (also when
    /// the poll is dropped mid-wait, its caller gone).
    pub fn waiting(&self) -> Waiting<'_> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        Waiting { of: self }
    }

    /// Resolves when reserved tasks are let go after this call (enable it
    /// before looking, so that a release while looking still counts).
    pub fn released(&self) -> Notified<'_> {
        self.released.notified()
    }
}

/// Tasks one lease poll reserved; dropping it lets them go.
pub struct Reserved<'a> {
    of: &'a Reservations,
    tasks: Vec<u64>,
}

impl Reserved<'_> {
    /// Whether the dispatcher found anything for the poll.
    pub fn found(&self) -> bool {
        !self.tasks.is_empty()
    }
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        if self.tasks.is_empty() {
            return;
        }
        let mut reserved = self.of.reserved.lock().expect("reservations lock");
        for id in &self.tasks {
            reserved.remove(id);
        }
        drop(reserved);
        self.of.released.notify_waiters();
    }
}

/// One lease poll counted as waiting; dropping it uncounts it.
pub struct Waiting<'a> {
    of: &'a Reservations,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.of.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}
