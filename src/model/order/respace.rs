//! Choosing ranks: a new or moved task gets a rank between its neighbours',
//! and when they are adjacent a small range around them is renumbered evenly
//! (the order-maintenance scheme of Bender et al., 2002).
//!
//! **Architecture Invariant:** integer arithmetic only, no clock and no
//! randomness: the same placements give the same ranks on every replica, and
//! every rank changed is reported for the caller to persist.

use super::{QueueOrder, Reranked};

/// The rank of the first task of an empty queue: the middle, so both ends have room.
pub(super) const START_RANK: u128 = u128::MAX / 2;
/// The step between a queue's end and a task pushed past it.
pub(super) const END_GAP: u128 = 1 << 64;

/// A rank strictly between `lo` and `hi` (None: that side is open), or None
/// when there is none. An open side steps by `END_GAP` or half the room left.
fn rank_between(lo: Option<u128>, hi: Option<u128>) -> Option<u128> {
    let step = |room: u128| room.div_ceil(2).min(END_GAP);
    match (lo, hi) {
        (None, None) => Some(START_RANK),
        (Some(a), None) => (a < u128::MAX).then(|| a + step(u128::MAX - a)),
        (None, Some(b)) => (b > 0).then(|| b - step(b)),
        (Some(a), Some(b)) => {
            assert!(a < b, "neighbours out of order");
            (b - a >= 2).then(|| a + (b - a) / 2)
        }
    }
}

impl QueueOrder {
    /// Gives task `id` a rank that puts it at `position` among the tasks in
    /// the tree, renumbering some of them if its neighbours are adjacent.
    pub(super) fn place(&mut self, id: u64, position: usize) -> Reranked {
        assert!(position <= self.len, "position past the end");
        let lo = position.checked_sub(1).map(|p| self.rank_at(p));
        let hi = (position < self.len).then(|| self.rank_at(position));
        match rank_between(lo, hi) {
            Some(rank) => {
                self.insert(rank, id);
                vec![(id, rank)]
            }
            None => self.respace_around(id, position, lo.or(hi).expect("a neighbour")),
        }
    }

    fn rank_at(&self, position: usize) -> u128 {
        let (leaf, i) = self.slot_at(position).expect("in the tree");
        self.leaves[leaf as usize].ranks[i]
    }

    /// Places task `id` at `position`, where its neighbours' ranks leave no
    /// room, by evenly renumbering the tasks of the smallest aligned rank
    /// range around `near` (a neighbour's rank) that is sparse enough: the
    /// range of 2^i ranks may hold at most 2^(i/2) tasks. The allowed density
    /// falls as ranges grow, so a renumbering leaves room in proportion to
    /// its size, and the work is amortized O(log n) ranks per placement
    /// (the order-maintenance scheme of Bender et al., 2002). Returns every
    /// changed (id, rank), `id`'s included.
    fn respace_around(&mut self, id: u64, position: usize, near: u128) -> Reranked {
        for bits in 1..128u32 {
            let size = 1u128 << bits;
            let start = near & !(size - 1);
            let first = self.locate(start).0;
            let end = match start.checked_add(size) {
                Some(past) => self.locate(past).0,
                None => self.len,
            };
            let count = (end - first + 1) as u128;
            if count > 1u128 << (bits / 2) {
                continue;
            }
            debug_assert!((first..=end).contains(&position));
            let spacing = size / (count + 1);
            let old: Vec<(u64, u128)> = self.iter_from(first).take(end - first).collect();
            for &(other, rank) in &old {
                self.erase(rank, other);
            }
            let mut ids = old.into_iter().map(|(other, _)| other).collect::<Vec<_>>();
            ids.insert(position - first, id);
            let reranked: Reranked = ids
                .into_iter()
                .enumerate()
                .map(|(k, task)| (task, start + spacing * (k as u128 + 1)))
                .collect();
            for &(task, rank) in &reranked {
                self.insert(rank, task);
            }
            return reranked;
        }
        self.renumber_around(id, position)
    }

    /// Evenly renumbers the queue, in order, with task `id` at `position`.
    /// Ranks span the middle half of the range, so both ends keep room.
    /// Returns every changed (id, rank) in queue order, `id`'s included. O(n):
    /// the tree is rebuilt from the new ranks. Only a queue too dense for
    /// [`Self::respace_around`] (2^63 tasks) would need it.
    fn renumber_around(&mut self, id: u64, position: usize) -> Reranked {
        let n = self.len;
        let spacing = (u128::MAX / 2) / (n as u128 + 2);
        assert!(spacing >= 2, "queue too long to renumber");
        let rank_of = |i: usize| u128::MAX / 4 + spacing * (i as u128 + 1);
        let old: Vec<(u64, u128)> = self.iter().collect();
        let mut all = Vec::with_capacity(n + 1);
        let mut reranked = Vec::with_capacity(n + 1);
        for (i, (other, rank)) in old.into_iter().enumerate() {
            if i == position {
                all.push((id, rank_of(i)));
                reranked.push((id, rank_of(i)));
            }
            let new_rank = rank_of(if i < position { i } else { i + 1 });
            if rank != new_rank {
                reranked.push((other, new_rank));
            }
            all.push((other, new_rank));
        }
        if position == n {
            all.push((id, rank_of(n)));
            reranked.push((id, rank_of(n)));
        }
        self.rebuild(&all);
        reranked
    }
}
