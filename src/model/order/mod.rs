//! [`QueueOrder`]: the order-statistics index of the tasks queued in one queue.
//!
//! Each task has a persisted, unique `rank: u128`; lower ranks run first. The
//! index finds a task's position, the task at a position, and moves tasks, in
//! O(log n) of the queue's length. Placing a task picks a rank between its
//! neighbours' ranks; when they are adjacent, the tasks of a small rank range
//! around them are renumbered evenly (amortized O(log n) tasks per placement:
//! see `respace_around`) and every changed rank is reported for the caller to
//! persist. The caller keeps each task's rank (it is persisted with the task)
//! and names a task by (id, rank): the index holds no map from id to rank,
//! which would cost as much memory as the tree itself.
//!
//! The index is a counted B+tree keyed by rank: leaves hold up to [`CAP`](tree::CAP)
//! (rank, id) pairs in order and are linked both ways; an inner node holds,
//! for each child, a lower bound of its ranks and the number of tasks under
//! it. A lookup touches about log_64(n) nodes (4 for a million tasks), each a
//! few contiguous cache lines, so a long queue costs little more than a short
//! one. Nodes live in two arenas of fixed-size nodes with free lists.
//!
//! **Architecture Invariant:** this is part of the replicated state machine. It
//! never reads a clock or a random source and never uses floating point: the
//! same operations in the same order give the same ranks on every replica.
//! Equality compares only the (id, rank) order, never the tree's shape, so an
//! index rebuilt from storage equals the live one. Nothing scans or shifts
//! the whole queue: only the tasks of a renumbered range are visited one by
//! one, and a node shifts at most [`CAP`](tree::CAP) entries.
//!
//! Files: `tree` is the counted B+tree and its arenas, `respace` picks ranks
//! and renumbers a crowded range, `check` verifies the structure, `tests`
//! drives it against a plain model.

mod check;
mod respace;
#[cfg(test)]
mod tests;
mod tree;

use tree::{Inner, Leaf, NIL};

/// A rank change the caller must persist: (task id, new rank).
pub type Reranked = Vec<(u64, u128)>;

/// The order of the tasks queued in one queue. See the module docs.
#[derive(Clone, Debug)]
pub struct QueueOrder {
    leaves: Vec<Leaf>,
    inners: Vec<Inner>,
    free_leaves: Vec<u32>,
    free_inners: Vec<u32>,
    /// NIL when empty.
    root: u32,
    /// Levels of inner nodes above the leaves (0: the root is a leaf).
    height: u32,
    len: usize,
}

impl PartialEq for QueueOrder {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for QueueOrder {}

impl Default for QueueOrder {
    fn default() -> Self {
        Self::new()
    }
}

impl QueueOrder {
    pub fn new() -> Self {
        Self {
            leaves: Vec::new(),
            inners: Vec::new(),
            free_leaves: Vec::new(),
            free_inners: Vec::new(),
            root: NIL,
            height: 0,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Rebuild from storage: insert with a known rank.
    ///
    /// # Panics
    /// If the rank is already present: a corrupt state must not be served.
    pub fn insert_with_rank(&mut self, id: u64, rank: u128) {
        assert!(
            !self.locate(rank).1,
            "rank {rank} is already in the queue order"
        );
        self.insert(rank, id);
    }

    /// Append at the back. Returns the ranks to persist (the new task's, plus any renumbered).
    /// The task must not be in the order already.
    pub fn push_back(&mut self, id: u64) -> Reranked {
        self.insert_at(id, self.len)
    }

    /// Append at the front. Returns the ranks to persist (the new task's, plus any renumbered).
    /// The task must not be in the order already.
    pub fn push_front(&mut self, id: u64) -> Reranked {
        self.insert_at(id, 0)
    }

    /// Removes task `id` at `rank`; returns whether it was there.
    pub fn remove(&mut self, id: u64, rank: u128) -> bool {
        if self.position(id, rank).is_none() {
            return false;
        }
        self.erase(rank, id);
        true
    }

    /// 0-based position of task `id` at `rank` (None: not there).
    pub fn position(&self, id: u64, rank: u128) -> Option<usize> {
        let (before, found) = self.locate(rank);
        (found && self.at(before) == Some(id)).then_some(before)
    }

    /// The task at a 0-based position.
    pub fn at(&self, position: usize) -> Option<u64> {
        let (leaf, i) = self.slot_at(position)?;
        Some(self.leaves[leaf as usize].ids[i])
    }

    pub fn first(&self) -> Option<u64> {
        self.at(0)
    }

    /// Move task `id`, at `rank`, so that it ends at 0-based `position`
    /// (clamped to len-1). Returns the ranks to persist (empty when it is
    /// already there), or None if it is not there.
    pub fn move_to(&mut self, id: u64, rank: u128, position: usize) -> Option<Reranked> {
        let current = self.position(id, rank)?;
        let target = position.min(self.len - 1);
        if target == current {
            return Some(Vec::new());
        }
        self.erase(rank, id);
        Some(self.place(id, target))
    }

    /// Insert a new (absent) task at 0-based position (clamped to len).
    /// Returns the ranks to persist (the new task's, plus any renumbered).
    /// The task must not be in the order already.
    pub fn insert_at(&mut self, id: u64, position: usize) -> Reranked {
        self.place(id, position.min(self.len))
    }

    /// Ids in queue order starting at 0-based `from`, at most `limit`. O(log n + limit).
    pub fn range(&self, from: usize, limit: usize) -> Vec<u64> {
        let taken = limit.min(self.len.saturating_sub(from));
        let mut out = Vec::with_capacity(taken);
        out.extend(self.iter_from(from).take(taken).map(|(id, _)| id));
        out
    }

    /// All (id, rank) in order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u128)> + '_ {
        self.iter_from(0)
    }
}
