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
//! The index is a counted B+tree keyed by rank: leaves hold up to [`CAP`]
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
//! one, and a node shifts at most [`CAP`] entries.

/// A rank change the caller must persist: (task id, new rank).
pub type Reranked = Vec<(u64, u128)>;

/// The rank of the first task of an empty queue: the middle, so both ends have room.
const START_RANK: u128 = u128::MAX / 2;
/// The step between a queue's end and a task pushed past it.
const END_GAP: u128 = 1 << 64;
/// Entries per node. Small in unit tests, so that they build deep trees.
const CAP: usize = if cfg!(test) { 8 } else { 64 };
/// A node with fewer entries than this merges with a neighbour when they fit.
const MIN_FILL: usize = CAP / 4;
/// How full a rebuild packs the leaves, leaving room for inserts.
const BUILD_FILL: usize = CAP - CAP / 4;
/// The empty link.
const NIL: u32 = u32::MAX;

/// Up to [`CAP`] tasks in rank order, linked to the leaves before and after.
#[derive(Clone, Debug)]
struct Leaf {
    prev: u32,
    next: u32,
    len: u32,
    ranks: [u128; CAP],
    ids: [u64; CAP],
}

/// Up to [`CAP`] children: each with a lower bound of its ranks (above every
/// rank of the child before) and the number of tasks under it.
#[derive(Clone, Debug)]
struct Inner {
    len: u32,
    mins: [u128; CAP],
    sizes: [u32; CAP],
    kids: [u32; CAP],
}

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

/// The child of an inner node whose range holds `rank`.
fn child_index(mins: &[u128], rank: u128) -> usize {
    mins.partition_point(|&m| m <= rank).saturating_sub(1)
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

    /// Panics if the structure is broken: ranks out of order or outside
    /// their node's bounds, wrong counts, uneven depth, broken leaf links,
    /// or arena slots leaked. (A task twice in the order, at two ranks, is
    /// for the caller to find: see `State::check_invariants`.)
    pub fn check_invariants(&self) {
        if self.root == NIL {
            assert_eq!(
                (self.len, self.height),
                (0, 0),
                "an empty tree has no length"
            );
        } else {
            if self.height > 0 {
                assert!(
                    self.inners[self.root as usize].len >= 2,
                    "a root with one child"
                );
            }
            let mut leaves = Vec::new();
            let mut inners = 0usize;
            let count = self.check_node(
                self.root,
                self.height,
                (None, None),
                &mut leaves,
                &mut inners,
            );
            assert_eq!(count, self.len, "tree size differs from the length");
            let mut prev = NIL;
            for (k, &leaf) in leaves.iter().enumerate() {
                let l = &self.leaves[leaf as usize];
                assert_eq!(l.prev, prev, "leaf links broken");
                let next = leaves.get(k + 1).copied().unwrap_or(NIL);
                assert_eq!(l.next, next, "leaf links broken");
                prev = leaf;
            }
            assert_eq!(
                leaves.len() + self.free_leaves.len(),
                self.leaves.len(),
                "leaves leaked"
            );
            assert_eq!(
                inners + self.free_inners.len(),
                self.inners.len(),
                "inner nodes leaked"
            );
        }
        let free: std::collections::BTreeSet<_> = self.free_leaves.iter().collect();
        assert_eq!(free.len(), self.free_leaves.len(), "a leaf is freed twice");
        let free: std::collections::BTreeSet<_> = self.free_inners.iter().collect();
        assert_eq!(
            free.len(),
            self.free_inners.len(),
            "an inner node is freed twice"
        );
    }

    /// Checks the subtree at `node` (`level` 0: a leaf), whose ranks must lie
    /// within `[lo, hi)`; returns how many tasks it holds.
    fn check_node(
        &self,
        node: u32,
        level: u32,
        (lo, hi): (Option<u128>, Option<u128>),
        leaves: &mut Vec<u32>,
        inners: &mut usize,
    ) -> usize {
        let within = |r: u128| lo.is_none_or(|lo| lo <= r) && hi.is_none_or(|hi| r < hi);
        if level == 0 {
            leaves.push(node);
            let l = &self.leaves[node as usize];
            let n = l.len as usize;
            assert!((1..=CAP).contains(&n), "leaf of {n} entries");
            for k in 0..n {
                assert!(within(l.ranks[k]), "rank outside its node's bounds");
                assert!(k == 0 || l.ranks[k - 1] < l.ranks[k], "ranks out of order");
            }
            return n;
        }
        *inners += 1;
        let inner = &self.inners[node as usize];
        let n = inner.len as usize;
        assert!((1..=CAP).contains(&n), "inner node of {n} children");
        let mut total = 0;
        for k in 0..n {
            assert!(
                k == 0 || inner.mins[k - 1] < inner.mins[k],
                "bounds out of order"
            );
            let child_lo = if k == 0 { lo } else { Some(inner.mins[k]) };
            let child_hi = inner.mins.get(k + 1).filter(|_| k + 1 < n).copied().or(hi);
            let count = self.check_node(
                inner.kids[k],
                level - 1,
                (child_lo, child_hi),
                leaves,
                inners,
            );
            assert_eq!(inner.sizes[k] as usize, count, "subtree count is wrong");
            total += count;
        }
        total
    }

    /// How many ranks are below `rank`, and whether `rank` is present.
    fn locate(&self, rank: u128) -> (usize, bool) {
        if self.root == NIL {
            return (0, false);
        }
        let (mut node, mut before) = (self.root, 0usize);
        for _ in 0..self.height {
            let inner = &self.inners[node as usize];
            let i = child_index(&inner.mins[..inner.len as usize], rank);
            before += inner.sizes[..i].iter().map(|&s| s as usize).sum::<usize>();
            node = inner.kids[i];
        }
        let leaf = &self.leaves[node as usize];
        let ranks = &leaf.ranks[..leaf.len as usize];
        let p = ranks.partition_point(|&r| r < rank);
        (before + p, ranks.get(p) == Some(&rank))
    }

    /// The leaf and index within it of the task at `position`.
    fn slot_at(&self, position: usize) -> Option<(u32, usize)> {
        if position >= self.len {
            return None;
        }
        let (mut node, mut pos) = (self.root, position);
        for _ in 0..self.height {
            let inner = &self.inners[node as usize];
            let mut i = 0;
            while pos >= inner.sizes[i] as usize {
                pos -= inner.sizes[i] as usize;
                i += 1;
            }
            node = inner.kids[i];
        }
        Some((node, pos))
    }

    fn iter_from(&self, position: usize) -> InOrder<'_> {
        let (leaf, i) = self.slot_at(position).unwrap_or((NIL, 0));
        InOrder {
            order: self,
            leaf,
            i,
        }
    }

    /// Gives task `id` a rank that puts it at `position` among the tasks in
    /// the tree, renumbering some of them if its neighbours are adjacent.
    fn place(&mut self, id: u64, position: usize) -> Reranked {
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

    /// Replaces the tree with `entries` (in rank order), leaves packed to
    /// `BUILD_FILL`.
    fn rebuild(&mut self, entries: &[(u64, u128)]) {
        *self = Self::new();
        let mut level: Vec<(u32, u128, u32)> = Vec::new(); // (node, min, size)
        for chunk in entries.chunks(BUILD_FILL) {
            let leaf = self.alloc_leaf();
            let prev = level.last().map_or(NIL, |&(l, _, _)| l);
            let l = &mut self.leaves[leaf as usize];
            l.len = chunk.len() as u32;
            for (k, &(id, rank)) in chunk.iter().enumerate() {
                (l.ids[k], l.ranks[k]) = (id, rank);
            }
            l.prev = prev;
            if prev != NIL {
                self.leaves[prev as usize].next = leaf;
            }
            level.push((leaf, chunk[0].1, chunk.len() as u32));
        }
        self.len = entries.len();
        while level.len() > 1 {
            let mut up = Vec::new();
            for chunk in level.chunks(BUILD_FILL) {
                let node = self.alloc_inner();
                let inner = &mut self.inners[node as usize];
                inner.len = chunk.len() as u32;
                for (k, &(kid, min, size)) in chunk.iter().enumerate() {
                    (inner.kids[k], inner.mins[k], inner.sizes[k]) = (kid, min, size);
                }
                up.push((node, chunk[0].1, chunk.iter().map(|c| c.2).sum()));
            }
            // A last node of one child would make a lopsided level; no
            // invariant forbids it, so it is left as is.
            level = up;
            self.height += 1;
        }
        self.root = level.first().map_or(NIL, |&(node, _, _)| node);
    }

    /// Entries of the node at `level`.
    fn node_len(&self, node: u32, level: u32) -> usize {
        match level {
            0 => self.leaves[node as usize].len as usize,
            _ => self.inners[node as usize].len as usize,
        }
    }

    /// Inserts a rank known to be absent.
    fn insert(&mut self, rank: u128, id: u64) {
        let total = self.len;
        self.len += 1;
        if self.root == NIL {
            let leaf = self.alloc_leaf();
            let l = &mut self.leaves[leaf as usize];
            (l.len, l.ranks[0], l.ids[0]) = (1, rank, id);
            (self.root, self.height) = (leaf, 0);
            return;
        }
        if self.node_len(self.root, self.height) == CAP {
            let min = match self.height {
                0 => self.leaves[self.root as usize].ranks[0],
                _ => self.inners[self.root as usize].mins[0],
            };
            let node = self.alloc_inner();
            let inner = &mut self.inners[node as usize];
            inner.len = 1;
            (inner.mins[0], inner.sizes[0], inner.kids[0]) = (min, total as u32, self.root);
            (self.root, self.height) = (node, self.height + 1);
            self.split_child(node, 0, self.height - 1, rank);
        }
        let (mut node, mut level) = (self.root, self.height);
        while level > 0 {
            let inner = &self.inners[node as usize];
            let mut i = child_index(&inner.mins[..inner.len as usize], rank);
            if self.node_len(inner.kids[i], level - 1) == CAP {
                self.split_child(node, i, level - 1, rank);
                if rank >= self.inners[node as usize].mins[i + 1] {
                    i += 1;
                }
            }
            let inner = &mut self.inners[node as usize];
            inner.mins[i] = inner.mins[i].min(rank);
            inner.sizes[i] += 1;
            (node, level) = (inner.kids[i], level - 1);
        }
        let l = &mut self.leaves[node as usize];
        let n = l.len as usize;
        let p = l.ranks[..n].partition_point(|&r| r < rank);
        l.ranks.copy_within(p..n, p + 1);
        l.ids.copy_within(p..n, p + 1);
        (l.ranks[p], l.ids[p], l.len) = (rank, id, l.len + 1);
    }

    /// Splits the full child `i` of inner node `parent` (which has room) in
    /// two. Where depends on `rank`, the rank about to go in: past either end,
    /// the split leaves the full side full, so that a queue filled from one
    /// end packs its nodes.
    fn split_child(&mut self, parent: u32, i: usize, level: u32, rank: u128) {
        let child = self.inners[parent as usize].kids[i];
        let (at, new, new_min, moved) = if level == 0 {
            let l = &self.leaves[child as usize];
            let at = if rank > l.ranks[CAP - 1] {
                CAP - 1
            } else if rank < l.ranks[0] {
                1
            } else {
                CAP / 2
            };
            let (ranks, ids, next) = (l.ranks, l.ids, l.next);
            let new = self.alloc_leaf();
            let n = &mut self.leaves[new as usize];
            n.ranks[..CAP - at].copy_from_slice(&ranks[at..]);
            n.ids[..CAP - at].copy_from_slice(&ids[at..]);
            (n.len, n.prev, n.next) = ((CAP - at) as u32, child, next);
            if next != NIL {
                self.leaves[next as usize].prev = new;
            }
            let c = &mut self.leaves[child as usize];
            (c.len, c.next) = (at as u32, new);
            (at, new, ranks[at], (CAP - at) as u32)
        } else {
            let c = &self.inners[child as usize];
            let at = if rank >= c.mins[CAP - 1] {
                CAP - 1
            } else if rank < c.mins[0] {
                1
            } else {
                CAP / 2
            };
            let (mins, sizes, kids) = (c.mins, c.sizes, c.kids);
            let new = self.alloc_inner();
            let n = &mut self.inners[new as usize];
            n.mins[..CAP - at].copy_from_slice(&mins[at..]);
            n.sizes[..CAP - at].copy_from_slice(&sizes[at..]);
            n.kids[..CAP - at].copy_from_slice(&kids[at..]);
            n.len = (CAP - at) as u32;
            self.inners[child as usize].len = at as u32;
            (at, new, mins[at], sizes[at..].iter().sum())
        };
        debug_assert!(at > 0 && at < CAP);
        let p = &mut self.inners[parent as usize];
        let n = p.len as usize;
        debug_assert!(n < CAP, "the parent of a split has room");
        p.mins.copy_within(i + 1..n, i + 2);
        p.sizes.copy_within(i + 1..n, i + 2);
        p.kids.copy_within(i + 1..n, i + 2);
        (p.mins[i + 1], p.sizes[i + 1], p.kids[i + 1]) = (new_min, moved, new);
        p.sizes[i] -= moved;
        p.len += 1;
    }

    /// Removes `rank`, which must belong to task `id`, then merges nodes left
    /// nearly empty.
    fn erase(&mut self, rank: u128, id: u64) {
        let mut path = Vec::with_capacity(self.height as usize);
        let mut node = self.root;
        for _ in 0..self.height {
            let inner = &mut self.inners[node as usize];
            let i = child_index(&inner.mins[..inner.len as usize], rank);
            inner.sizes[i] -= 1;
            path.push((node, i));
            node = inner.kids[i];
        }
        let l = &mut self.leaves[node as usize];
        let n = l.len as usize;
        let p = l.ranks[..n].partition_point(|&r| r < rank);
        assert!(
            p < n && l.ranks[p] == rank && l.ids[p] == id,
            "task {id} at rank {rank} is not in the queue order"
        );
        l.ranks.copy_within(p + 1..n, p);
        l.ids.copy_within(p + 1..n, p);
        l.len -= 1;
        self.len -= 1;
        if self.len == 0 {
            *self = Self::new();
            return;
        }
        let mut level = 0;
        while let Some((parent, i)) = path.pop() {
            if !self.mend(parent, i, level) {
                break;
            }
            level += 1;
        }
        while self.height > 0 && self.inners[self.root as usize].len == 1 {
            let old = self.root;
            self.root = self.inners[old as usize].kids[0];
            self.free_inners.push(old);
            self.height -= 1;
        }
    }

    /// After a removal under child `i` of `parent`: drops the child if it is
    /// empty, or merges it with a neighbour if it is nearly empty and they
    /// fit in one node. Returns whether `parent` lost a child.
    fn mend(&mut self, parent: u32, i: usize, level: u32) -> bool {
        let p = &self.inners[parent as usize];
        let n = p.len as usize;
        let child = p.kids[i];
        let len = self.node_len(child, level);
        if len == 0 {
            self.free_node(child, level);
            self.drop_kid(parent, i);
            return true;
        }
        if len >= MIN_FILL || n < 2 {
            return false;
        }
        let (a, b) = if i + 1 < n { (i, i + 1) } else { (i - 1, i) };
        let (left, right) = (p.kids[a], p.kids[b]);
        let right_len = self.node_len(right, level);
        let left_len = self.node_len(left, level);
        if left_len + right_len > CAP {
            return false;
        }
        if level == 0 {
            let r = self.leaves[right as usize].clone();
            let l = &mut self.leaves[left as usize];
            l.ranks[left_len..left_len + right_len].copy_from_slice(&r.ranks[..right_len]);
            l.ids[left_len..left_len + right_len].copy_from_slice(&r.ids[..right_len]);
            (l.len, l.next) = ((left_len + right_len) as u32, r.next);
            if r.next != NIL {
                self.leaves[r.next as usize].prev = left;
            }
            self.free_leaves.push(right);
        } else {
            let r = self.inners[right as usize].clone();
            let l = &mut self.inners[left as usize];
            l.mins[left_len..left_len + right_len].copy_from_slice(&r.mins[..right_len]);
            l.sizes[left_len..left_len + right_len].copy_from_slice(&r.sizes[..right_len]);
            l.kids[left_len..left_len + right_len].copy_from_slice(&r.kids[..right_len]);
            l.len = (left_len + right_len) as u32;
            self.free_inners.push(right);
        }
        let p = &mut self.inners[parent as usize];
        p.sizes[a] += p.sizes[b];
        self.drop_kid(parent, b);
        true
    }

    /// Removes child `k` from an inner node's arrays.
    fn drop_kid(&mut self, parent: u32, k: usize) {
        let p = &mut self.inners[parent as usize];
        let n = p.len as usize;
        p.mins.copy_within(k + 1..n, k);
        p.sizes.copy_within(k + 1..n, k);
        p.kids.copy_within(k + 1..n, k);
        p.len -= 1;
    }

    /// Returns an emptied node to its free list (a leaf leaves the links).
    fn free_node(&mut self, node: u32, level: u32) {
        if level > 0 {
            self.free_inners.push(node);
            return;
        }
        let (prev, next) = {
            let l = &self.leaves[node as usize];
            (l.prev, l.next)
        };
        if prev != NIL {
            self.leaves[prev as usize].next = next;
        }
        if next != NIL {
            self.leaves[next as usize].prev = prev;
        }
        self.free_leaves.push(node);
    }

    fn alloc_leaf(&mut self) -> u32 {
        let fresh = Leaf {
            prev: NIL,
            next: NIL,
            len: 0,
            ranks: [0; CAP],
            ids: [0; CAP],
        };
        match self.free_leaves.pop() {
            Some(x) => {
                self.leaves[x as usize] = fresh;
                x
            }
            None => {
                self.leaves.push(fresh);
                u32::try_from(self.leaves.len() - 1).expect("queue order arena is full")
            }
        }
    }

    fn alloc_inner(&mut self) -> u32 {
        let fresh = Inner {
            len: 0,
            mins: [0; CAP],
            sizes: [0; CAP],
            kids: [NIL; CAP],
        };
        match self.free_inners.pop() {
            Some(x) => {
                self.inners[x as usize] = fresh;
                x
            }
            None => {
                self.inners.push(fresh);
                u32::try_from(self.inners.len() - 1).expect("queue order arena is full")
            }
        }
    }
}

/// In-order walk along the leaf links.
struct InOrder<'a> {
    order: &'a QueueOrder,
    leaf: u32,
    i: usize,
}

impl Iterator for InOrder<'_> {
    type Item = (u64, u128);

    fn next(&mut self) -> Option<Self::Item> {
        if self.leaf == NIL {
            return None;
        }
        let l = &self.order.leaves[self.leaf as usize];
        let item = (l.ids[self.i], l.ranks[self.i]);
        self.i += 1;
        if self.i == l.len as usize {
            (self.leaf, self.i) = (l.next, 0);
        }
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeMap;
    use std::ops::Deref;

    /// The index plus the id → rank map its caller keeps (the model keeps
    /// each rank in its task), so that tests can name tasks by id alone.
    #[derive(Clone, Debug, Default, PartialEq)]
    struct Indexed {
        order: QueueOrder,
        ranks: BTreeMap<u64, u128>,
    }

    impl Deref for Indexed {
        type Target = QueueOrder;

        fn deref(&self) -> &QueueOrder {
            &self.order
        }
    }

    impl Indexed {
        fn new() -> Self {
            Self::default()
        }

        /// Keeps the ranks a change reports, as the model does.
        fn note(&mut self, reranked: Reranked) -> Reranked {
            self.ranks.extend(reranked.iter().copied());
            reranked
        }

        fn contains(&self, id: u64) -> bool {
            self.ranks.contains_key(&id)
        }

        fn rank(&self, id: u64) -> Option<u128> {
            self.ranks.get(&id).copied()
        }

        fn insert_with_rank(&mut self, id: u64, rank: u128) {
            self.order.insert_with_rank(id, rank);
            self.ranks.insert(id, rank);
        }

        fn push_back(&mut self, id: u64) -> Reranked {
            let r = self.order.push_back(id);
            self.note(r)
        }

        fn push_front(&mut self, id: u64) -> Reranked {
            let r = self.order.push_front(id);
            self.note(r)
        }

        fn insert_at(&mut self, id: u64, position: usize) -> Reranked {
            let r = self.order.insert_at(id, position);
            self.note(r)
        }

        fn remove(&mut self, id: u64) -> bool {
            let Some(rank) = self.ranks.remove(&id) else {
                return false;
            };
            assert!(self.order.remove(id, rank), "task {id} is not in the tree");
            true
        }

        fn position(&self, id: u64) -> Option<usize> {
            let p = self.order.position(id, self.rank(id)?);
            assert!(p.is_some(), "task {id} is mapped but not in the tree");
            p
        }

        fn move_to(&mut self, id: u64, position: usize) -> Option<Reranked> {
            let rank = self.rank(id)?;
            let r = (self.order.move_to(id, rank, position)).expect("a mapped task is in the tree");
            Some(self.note(r))
        }
    }

    fn ids(order: &QueueOrder) -> Vec<u64> {
        order.iter().map(|(id, _)| id).collect()
    }

    /// Applies reported ranks to `shadow` (what the caller persists), then
    /// rebuilds from it as a restart would, in id order rather than queue order.
    fn persist_and_rebuild(shadow: &mut BTreeMap<u64, u128>, reranked: &Reranked) -> QueueOrder {
        shadow.extend(reranked.iter().copied());
        let mut order = QueueOrder::new();
        for (&id, &rank) in shadow.iter() {
            order.insert_with_rank(id, rank);
        }
        order.check_invariants();
        order
    }

    #[test]
    fn empty_and_single() {
        let mut order = Indexed::default();
        order.check_invariants();
        assert!(order.is_empty() && order.first().is_none() && order.at(0).is_none());
        assert!(order.position(7).is_none() && order.rank(7).is_none() && !order.contains(7));
        assert!(!order.remove(7) && order.move_to(7, 0).is_none() && order.range(0, 9).is_empty());
        assert_eq!(order.push_back(7), vec![(7, START_RANK)]);
        assert_eq!(
            (order.len(), order.first(), order.position(7)),
            (1, Some(7), Some(0))
        );
        assert_eq!(order.move_to(7, 5), Some(Vec::new()));
        assert!(order.remove(7) && !order.remove(7) && order == Indexed::new());
        order.check_invariants();
    }

    #[test]
    fn ends_clamping_and_range() {
        let mut order = Indexed::new();
        order.push_back(2);
        order.push_back(3);
        order.push_front(1);
        assert_eq!(order.rank(1), Some(START_RANK - END_GAP));
        assert_eq!(order.rank(3), Some(START_RANK + END_GAP));
        order.insert_at(4, 99);
        assert_eq!(order.insert_at(5, 1), vec![(5, START_RANK - END_GAP / 2)]);
        assert_eq!(ids(&order), vec![1, 5, 2, 3, 4]);
        assert_eq!((order.at(4), order.at(5)), (Some(4), None));
        assert_eq!(order.range(1, 2), vec![5, 2]);
        assert_eq!(order.range(3, 100), vec![3, 4]);
        assert!(order.range(5, 1).is_empty() && order.range(0, 0).is_empty());
        order.check_invariants();
    }

    #[test]
    fn move_to_same_place_first_and_last() {
        let mut order = Indexed::new();
        (1..=5).for_each(|id| _ = order.push_back(id));
        let before = order.clone();
        assert_eq!(order.move_to(3, 2), Some(Vec::new()));
        assert_eq!(order, before);
        assert_eq!(order.move_to(1, 4).map(|r| r.len()), Some(1));
        assert_eq!(ids(&order), vec![2, 3, 4, 5, 1]);
        order.move_to(1, 0).unwrap();
        assert_eq!(order, before, "equal order and ranks, whatever the arena");
        order.move_to(5, 0).unwrap();
        order.move_to(1, usize::MAX).unwrap();
        assert_eq!(ids(&order), vec![5, 2, 3, 4, 1]);
        order.check_invariants();
    }

    #[test]
    #[should_panic(expected = "rank 10 is already in the queue order")]
    fn duplicate_rank_panics() {
        let mut order = QueueOrder::new();
        order.insert_with_rank(1, 10);
        order.insert_with_rank(2, 10);
    }

    #[test]
    fn a_task_is_named_by_its_id_and_its_rank() {
        let mut order = QueueOrder::new();
        order.insert_with_rank(1, 10);
        order.insert_with_rank(2, 20);
        assert_eq!(
            (order.position(1, 10), order.position(2, 20)),
            (Some(0), Some(1))
        );
        assert_eq!(order.position(1, 20), None, "another task's rank");
        assert_eq!(order.position(1, 15), None, "a rank nobody has");
        assert!(!order.remove(2, 10) && !order.remove(3, 30));
        assert!(order.move_to(2, 10, 0).is_none());
        assert_eq!(order.len(), 2, "nothing changed");
        order.check_invariants();
        assert!(order.remove(1, 10) && order.position(1, 10).is_none());
        assert_eq!(order.position(2, 20), Some(0));
        order.check_invariants();
    }

    #[test]
    fn full_ends_renumber_and_leave_room() {
        let mut low = Indexed::new();
        low.insert_with_rank(1, 0);
        low.insert_with_rank(2, 1);
        assert_eq!(low.push_front(3).len(), 3, "every rank changes");
        assert_eq!(ids(&low), vec![3, 1, 2]);
        let mut high = Indexed::new();
        high.insert_with_rank(1, u128::MAX);
        assert_eq!(high.push_back(2).len(), 2);
        assert_eq!(
            high.push_back(3).len(),
            1,
            "renumbering left room at the back"
        );
        assert_eq!(ids(&high), vec![1, 2, 3]);
        high.check_invariants();
    }

    #[test]
    fn renumbering_reports_every_change_and_keeps_order() {
        let (mut order, mut shadow) = (Indexed::new(), BTreeMap::new());
        let mut model = vec![1, 2];
        persist_and_rebuild(&mut shadow, &order.push_back(1));
        persist_and_rebuild(&mut shadow, &order.push_back(2));
        let mut renumbers = 0;
        for id in 100..300 {
            let reranked = order.insert_at(id, 1);
            model.insert(1, id);
            renumbers += usize::from(reranked.len() > 1);
            assert!(reranked.contains(&(id, order.rank(id).unwrap())));
            assert_eq!(persist_and_rebuild(&mut shadow, &reranked), order.order);
            assert_eq!(ids(&order), model);
            order.check_invariants();
        }
        assert!(
            renumbers >= 2,
            "200 inserts into one gap renumber more than once"
        );
    }

    /// Moving task after task into one gap of a long queue renumbers a few
    /// ranks per move on average, not the queue: the worst case of the old
    /// whole-queue renumbering (every 64 moves, 10,000 ranks).
    #[test]
    fn repeated_moves_into_one_gap_renumber_little() {
        let (mut order, mut shadow) = (Indexed::new(), BTreeMap::new());
        for id in 0..10_000 {
            persist(&mut shadow, &order.push_back(id));
        }
        let mut changed = 0;
        let mut largest = 0;
        for id in 10_000..15_000 {
            let reranked = order.insert_at(id, 1);
            changed += reranked.len();
            largest = largest.max(reranked.len());
            persist(&mut shadow, &reranked);
        }
        for id in 0..3_000 {
            // Back and forth between the two ends of the crowd.
            let at = if id % 2 == 0 { 2 } else { 5_000 };
            let reranked = order.move_to(10_000 + id, at).unwrap();
            changed += reranked.len();
            largest = largest.max(reranked.len());
            persist(&mut shadow, &reranked);
        }
        eprintln!("8,000 placements: {changed} ranks changed, at most {largest} at once");
        assert!(changed < 8_000 * 24, "{changed} ranks changed");
        assert!(largest < 15_000, "a renumbering of the whole queue");
        let mut rebuilt = QueueOrder::new();
        for (&id, &rank) in &shadow {
            rebuilt.insert_with_rank(id, rank);
        }
        assert_eq!(rebuilt, order.order);
        order.check_invariants();
    }

    /// Records reported ranks, as the caller persists them.
    fn persist(shadow: &mut BTreeMap<u64, u128>, reranked: &Reranked) {
        shadow.extend(reranked.iter().copied());
    }

    #[test]
    fn same_ops_give_equal_structures() {
        let build = || {
            let mut order = Indexed::new();
            for id in 0..500u64 {
                order.insert_at(id, (id * 7 % (id + 1)) as usize);
                if id % 5 == 0 {
                    order.remove(id / 2);
                }
                order.move_to(id / 3, (id % 11) as usize);
            }
            order
        };
        assert_eq!(build(), build());
        assert_eq!(
            build().iter().collect::<Vec<_>>(),
            build().iter().collect::<Vec<_>>()
        );
    }

    /// One random operation on both the index and a plain Vec model. Positions
    /// are often `hot`; `heavy` makes most operations insert there, to wear one
    /// gap down and force renumbering.
    fn random_op(
        rng: &mut StdRng,
        order: &mut Indexed,
        model: &mut Vec<u64>,
        hot: usize,
        heavy: bool,
    ) -> Reranked {
        let (len, id) = (model.len(), 1000 + rng.random_range(0..1_000_000u64));
        let (op, pos) = match rng.random_range(0..10) {
            _ if heavy && rng.random_bool(0.7) => (3, hot),
            op if rng.random_bool(0.5) => (op, hot),
            op => (op, rng.random_range(0..len + 2)),
        };
        match op {
            _ if order.contains(id) => Vec::new(),
            0 | 1 => {
                model.push(id);
                order.push_back(id)
            }
            2 => {
                model.insert(0, id);
                order.push_front(id)
            }
            3..=6 => {
                model.insert(pos.min(len), id);
                order.insert_at(id, pos)
            }
            7 | 8 if len > 0 => {
                let id = model.remove(rng.random_range(0..len));
                model.insert(pos.min(len - 1), id);
                order.move_to(id, pos).expect("present")
            }
            _ if len > 0 => {
                let id = model.remove(rng.random_range(0..len));
                assert!(order.remove(id) && !order.remove(id));
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// Fills a tree many levels deep from both ends and the middle, then
    /// empties it in a scrambled order: every split and merge path runs, the
    /// height grows and shrinks back, and no node leaks.
    #[test]
    fn deep_trees_split_merge_and_shrink() {
        let mut order = Indexed::new();
        let mut model = Vec::new();
        for id in 0..3000u64 {
            let pos = match id % 3 {
                0 => 0,
                1 => model.len(),
                _ => model.len() / 2,
            };
            order.insert_at(id, pos);
            model.insert(pos, id);
        }
        order.check_invariants();
        assert!(order.height >= 3, "height {}", order.height);
        assert_eq!(order.iter().map(|(id, _)| id).collect::<Vec<_>>(), model);
        for (k, id) in (0..3000u64).map(|i| i * 1237 % 3000).enumerate() {
            assert!(order.remove(id));
            model.retain(|&m| m != id);
            if k % 97 == 0 {
                order.check_invariants();
                assert_eq!(order.range(0, usize::MAX), model);
            }
        }
        assert!(order.is_empty() && order.height == 0 && order.root == NIL);
        order.check_invariants();
    }

    #[test]
    fn random_ops_match_a_vec_model() {
        let mut renumbers = 0;
        for seed in 0..200u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let (mut order, mut model, mut shadow) = (Indexed::new(), Vec::new(), BTreeMap::new());
            if seed % 2 == 1 {
                // Ranks packed against one end, as if restored from storage.
                let base = if seed % 4 == 1 { 0 } else { u128::MAX - 60 };
                for id in (0..20u64).map(|i| i * 7 % 20 + 1) {
                    order.insert_with_rank(id, base + u128::from(id) * 3);
                    shadow.insert(id, base + u128::from(id) * 3);
                }
                model.extend(1..=20);
            }
            let hot = rng.random_range(1..4);
            for _ in 0..300 {
                let reranked = random_op(&mut rng, &mut order, &mut model, hot, seed % 2 == 0);
                renumbers += usize::from(reranked.len() > 1);
                shadow.retain(|id, _| order.contains(*id));
                assert_eq!(
                    persist_and_rebuild(&mut shadow, &reranked),
                    order.order,
                    "seed {seed}"
                );
                order.check_invariants();
                assert_eq!(ids(&order), model, "seed {seed}");
                for (i, &id) in model.iter().enumerate() {
                    assert_eq!((order.position(id), order.at(i)), (Some(i), Some(id)));
                }
                assert_eq!((order.len(), order.at(model.len())), (model.len(), None));
                assert!(order
                    .iter()
                    .zip(order.iter().skip(1))
                    .all(|(a, b)| a.1 < b.1));
                let (from, limit) = (rng.random_range(0..model.len() + 2), rng.random_range(0..9));
                let expected: Vec<u64> = model.iter().skip(from).take(limit).copied().collect();
                assert_eq!(order.range(from, limit), expected);
            }
        }
        assert!(renumbers >= 150, "only {renumbers} renumberings");
    }
}
