//! The counted B+tree under [`QueueOrder`]: leaves of (rank, id) pairs
//! linked both ways, inner nodes of children with a lower bound and a count
//! each, both kept in arenas of fixed-size nodes with free lists. It finds
//! positions and ranks, inserts, erases and merges; which rank a task gets is
//! `respace`'s business.
//!
//! **Architecture Invariant:** operations touch one root-to-leaf path (and a
//! neighbour when merging) and shift at most [`CAP`] entries per node; only
//! [`QueueOrder::rebuild`] visits every entry.

use super::QueueOrder;

/// Entries per node. Small in unit tests, so that they build deep trees.
pub(super) const CAP: usize = if cfg!(test) { 8 } else { 64 };
/// A node with fewer entries than this merges with a neighbour when they fit.
const MIN_FILL: usize = CAP / 4;
/// How full a rebuild packs the leaves, leaving room for inserts.
const BUILD_FILL: usize = CAP - CAP / 4;
/// The empty link.
pub(super) const NIL: u32 = u32::MAX;

/// Up to [`CAP`] tasks in rank order, linked to the leaves before and after.
#[derive(Clone, Debug)]
pub(super) struct Leaf {
    pub(super) prev: u32,
    pub(super) next: u32,
    pub(super) len: u32,
    pub(super) ranks: [u128; CAP],
    pub(super) ids: [u64; CAP],
}

/// Up to [`CAP`] children: each with a lower bound of its ranks (above every
/// rank of the child before) and the number of tasks under it.
#[derive(Clone, Debug)]
pub(super) struct Inner {
    pub(super) len: u32,
    pub(super) mins: [u128; CAP],
    pub(super) sizes: [u32; CAP],
    pub(super) kids: [u32; CAP],
}

/// The child of an inner node whose range holds `rank`.
fn child_index(mins: &[u128], rank: u128) -> usize {
    mins.partition_point(|&m| m <= rank).saturating_sub(1)
}

impl QueueOrder {
    /// How many ranks are below `rank`, and whether `rank` is present.
    pub(super) fn locate(&self, rank: u128) -> (usize, bool) {
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
    pub(super) fn slot_at(&self, position: usize) -> Option<(u32, usize)> {
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

    pub(super) fn iter_from(&self, position: usize) -> InOrder<'_> {
        let (leaf, i) = self.slot_at(position).unwrap_or((NIL, 0));
        InOrder {
            order: self,
            leaf,
            i,
        }
    }

    /// Replaces the tree with `entries` (in rank order), leaves packed to
    /// `BUILD_FILL`.
    pub(super) fn rebuild(&mut self, entries: &[(u64, u128)]) {
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
    pub(super) fn insert(&mut self, rank: u128, id: u64) {
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
    pub(super) fn erase(&mut self, rank: u128, id: u64) {
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
pub(super) struct InOrder<'a> {
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
