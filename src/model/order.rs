//! [`QueueOrder`]: the order-statistics index of the tasks queued in one queue.
//!
//! Each task has a persisted, unique `rank: u128`; lower ranks run first. The
//! index finds a task's position, the task at a position, and moves tasks, in
//! O(log n) of the queue's length. Placing a task picks a rank between its
//! neighbours' ranks; when they are adjacent, the whole queue is renumbered
//! evenly (O(n), rare) and every changed rank is reported for the caller to
//! persist.
//!
//! The index is a weight-balanced search tree keyed by rank (Adams' tree with
//! the verified parameters delta = 3, gamma = 2, weight = size + 1), held in an
//! arena of nodes linked by `u32` slots with an intrusive free list, plus a
//! `BTreeMap` from task id to slot.
//!
//! **Architecture Invariant:** this is part of the replicated state machine. It
//! never reads a clock or a random source, never uses floating point and never
//! lets hash order leak: the same operations in the same order give the same
//! ranks on every replica. Equality compares only the (id, rank) order, never
//! the arena layout, so an index rebuilt from storage equals the live one.
//! Nothing but the rare renumbering scans or shifts the whole queue.

use std::cmp::Ordering;
use std::collections::BTreeMap;

/// A rank change the caller must persist: (task id, new rank).
pub type Reranked = Vec<(u64, u128)>;

/// The rank of the first task of an empty queue: the middle, so both ends have room.
const START_RANK: u128 = u128::MAX / 2;
/// The step between a queue's end and a task pushed past it.
const END_GAP: u128 = 1 << 64;
/// Balance: a subtree weighs at most `DELTA` times its sibling.
const DELTA: u64 = 3;
/// Rebalancing uses a single rotation when the inner grandchild weighs less
/// than `GAMMA` times the outer one, a double rotation otherwise.
const GAMMA: u64 = 2;
/// The empty link.
const NIL: u32 = u32::MAX;
/// Index of the left and right child in [`Node::kids`].
const L: usize = 0;
const R: usize = 1;

/// One task in the arena. The rank is split in halves so that the node is
/// 8-byte aligned (40 bytes) instead of 16-byte aligned (48 bytes).
#[derive(Clone, Debug)]
struct Node {
    rank_hi: u64,
    rank_lo: u64,
    id: u64,
    /// Left and right child; a free slot links the free list through `kids[L]`.
    kids: [u32; 2],
    /// Nodes in this subtree, this one included; 0 marks a free slot.
    size: u32,
}

impl Node {
    fn rank(&self) -> u128 {
        (u128::from(self.rank_hi) << 64) | u128::from(self.rank_lo)
    }
}

/// The order of the tasks queued in one queue. See the module docs.
#[derive(Clone, Debug)]
pub struct QueueOrder {
    /// Every slot is either in the tree or on the free list.
    nodes: Vec<Node>,
    /// Head of the free list, or NIL.
    free: u32,
    root: u32,
    /// Task id to its slot: finds a task's rank without a scan.
    slot_by_id: BTreeMap<u64, u32>,
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

impl QueueOrder {
    pub fn new() -> Self {
        Self {
            nodes: Vec::new(),
            free: NIL,
            root: NIL,
            slot_by_id: BTreeMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.slot_by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slot_by_id.is_empty()
    }

    pub fn contains(&self, id: u64) -> bool {
        self.slot_by_id.contains_key(&id)
    }

    pub fn rank(&self, id: u64) -> Option<u128> {
        self.slot_by_id.get(&id).map(|&x| self.node(x).rank())
    }

    /// Rebuild from storage: insert with a known rank.
    ///
    /// # Panics
    /// If the id or the rank is already present: a corrupt state must not be served.
    pub fn insert_with_rank(&mut self, id: u64, rank: u128) {
        let taken = self.locate(rank).1.is_some();
        assert!(!taken, "rank {rank} is already in the queue order");
        let x = self.alloc(id);
        self.attach(x, rank);
    }

    /// Append at the back. Returns the ranks to persist (the new task's, plus any renumbered).
    /// Panics if the id is already present.
    pub fn push_back(&mut self, id: u64) -> Reranked {
        self.insert_at(id, self.len())
    }

    /// Append at the front. Returns the ranks to persist (the new task's, plus any renumbered).
    /// Panics if the id is already present.
    pub fn push_front(&mut self, id: u64) -> Reranked {
        self.insert_at(id, 0)
    }

    /// Remove; returns whether it was present.
    pub fn remove(&mut self, id: u64) -> bool {
        let Some(x) = self.slot_by_id.remove(&id) else {
            return false;
        };
        self.detach(x);
        let next_free = self.free;
        let node = self.node_mut(x);
        (node.kids, node.size) = ([next_free, NIL], 0);
        self.free = x;
        true
    }

    /// 0-based position of a task.
    pub fn position(&self, id: u64) -> Option<usize> {
        let (before, found) = self.locate(self.rank(id)?);
        assert!(found.is_some(), "task {id} is mapped but not in the tree");
        Some(before)
    }

    /// The task at a 0-based position.
    pub fn at(&self, position: usize) -> Option<u64> {
        self.slot_at(position).map(|x| self.node(x).id)
    }

    pub fn first(&self) -> Option<u64> {
        self.at(0)
    }

    /// Move an already-present task so that it ends at 0-based `position`
    /// (clamped to len-1). Returns the ranks to persist (empty when it is
    /// already there), or None if id is absent.
    pub fn move_to(&mut self, id: u64, position: usize) -> Option<Reranked> {
        let current = self.position(id)?;
        let target = position.min(self.len() - 1);
        if target == current {
            return Some(Vec::new());
        }
        let x = self.slot_by_id[&id];
        self.detach(x);
        Some(self.place(x, target))
    }

    /// Insert a new (absent) task at 0-based position (clamped to len).
    /// Returns the ranks to persist (the new task's, plus any renumbered).
    /// Panics if the id is already present.
    pub fn insert_at(&mut self, id: u64, position: usize) -> Reranked {
        let target = position.min(self.len());
        let x = self.alloc(id);
        self.place(x, target)
    }

    /// Ids in queue order starting at 0-based `from`, at most `limit`. O(log n + limit).
    pub fn range(&self, from: usize, limit: usize) -> Vec<u64> {
        let taken = limit.min(self.len().saturating_sub(from));
        let mut out = Vec::with_capacity(taken);
        out.extend(self.iter_from(from).take(taken).map(|(id, _)| id));
        out
    }

    /// All (id, rank) in order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u128)> + '_ {
        self.iter_from(0)
    }

    /// Panics if internal invariants do not hold: subtree sizes, weight
    /// balance, strictly increasing ranks, the id map and the free list.
    pub fn check_invariants(&self) {
        let mut seen = 0usize;
        let size = self.check_subtree(self.root, (None, None), &mut seen);
        assert_eq!(
            size as usize,
            self.len(),
            "tree size differs from the id map"
        );
        assert_eq!(seen, self.len(), "tree node count differs from the id map");
        let (mut free, mut cur) = (0usize, self.free);
        while cur != NIL {
            free += 1;
            assert!(free <= self.nodes.len(), "free list has a cycle");
            assert_eq!(self.node(cur).size, 0, "a free slot is in use");
            cur = self.node(cur).kids[L];
        }
        assert_eq!(free + self.len(), self.nodes.len(), "arena slots leaked");
    }

    /// Checks subtree `t`, whose ranks must lie strictly within `bounds`; returns its size.
    fn check_subtree(&self, t: u32, bounds: (Option<u128>, Option<u128>), seen: &mut usize) -> u32 {
        if t == NIL {
            return 0;
        }
        *seen += 1;
        assert!(*seen <= self.nodes.len(), "tree has a cycle");
        let node = self.node(t);
        let rank = node.rank();
        assert!(bounds.0.is_none_or(|lo| lo < rank), "ranks out of order");
        assert!(bounds.1.is_none_or(|hi| rank < hi), "ranks out of order");
        assert_eq!(self.slot_by_id.get(&node.id), Some(&t), "id map is stale");
        let left = self.check_subtree(node.kids[L], (bounds.0, Some(rank)), seen);
        let right = self.check_subtree(node.kids[R], (Some(rank), bounds.1), seen);
        assert_eq!(node.size, left + right + 1, "subtree size is wrong");
        let (wl, wr) = (u64::from(left) + 1, u64::from(right) + 1);
        assert!(
            wl <= DELTA * wr && wr <= DELTA * wl,
            "tree is out of balance"
        );
        node.size
    }

    fn node(&self, x: u32) -> &Node {
        &self.nodes[x as usize]
    }

    fn node_mut(&mut self, x: u32) -> &mut Node {
        &mut self.nodes[x as usize]
    }

    fn size(&self, t: u32) -> u32 {
        if t == NIL {
            0
        } else {
            self.node(t).size
        }
    }

    fn weight(&self, t: u32) -> u64 {
        u64::from(self.size(t)) + 1
    }

    /// How many ranks are below `rank`, and the slot holding `rank` if any.
    fn locate(&self, rank: u128) -> (usize, Option<u32>) {
        let (mut cur, mut before) = (self.root, 0usize);
        while cur != NIL {
            let node = self.node(cur);
            let left_size = self.size(node.kids[L]) as usize;
            match rank.cmp(&node.rank()) {
                Ordering::Less => cur = node.kids[L],
                Ordering::Equal => return (before + left_size, Some(cur)),
                Ordering::Greater => (before, cur) = (before + left_size + 1, node.kids[R]),
            }
        }
        (before, None)
    }

    fn slot_at(&self, position: usize) -> Option<u32> {
        let (mut cur, mut pos) = (self.root, position);
        while cur != NIL {
            let node = self.node(cur);
            let left_size = self.size(node.kids[L]) as usize;
            match pos.cmp(&left_size) {
                Ordering::Less => cur = node.kids[L],
                Ordering::Equal => return Some(cur),
                Ordering::Greater => (pos, cur) = (pos - left_size - 1, node.kids[R]),
            }
        }
        None
    }

    /// In-order walk from `position`: the stack holds the slot at `position`
    /// and the ancestors whose left subtree the path entered.
    fn iter_from(&self, position: usize) -> InOrder<'_> {
        let (mut stack, mut cur, mut pos) = (Vec::new(), self.root, position);
        while cur != NIL {
            let node = self.node(cur);
            let left_size = self.size(node.kids[L]) as usize;
            if pos <= left_size {
                stack.push(cur);
                if pos == left_size {
                    break;
                }
                cur = node.kids[L];
            } else {
                (pos, cur) = (pos - left_size - 1, node.kids[R]);
            }
        }
        InOrder { order: self, stack }
    }

    /// Takes a slot for task `id` and maps the id to it; the slot is not in the tree yet.
    fn alloc(&mut self, id: u64) -> u32 {
        assert!(
            !self.contains(id),
            "task {id} is already in the queue order"
        );
        let fresh = Node {
            rank_hi: 0,
            rank_lo: 0,
            id,
            kids: [NIL; 2],
            size: 1,
        };
        let x = if self.free != NIL {
            let x = self.free;
            self.free = self.node(x).kids[L];
            *self.node_mut(x) = fresh;
            x
        } else {
            let x = u32::try_from(self.nodes.len()).ok().filter(|&x| x != NIL);
            self.nodes.push(fresh);
            x.expect("queue order arena is full")
        };
        self.slot_by_id.insert(id, x);
        x
    }

    /// Gives detached slot `x` a rank that puts it at `position` among the
    /// tasks in the tree, renumbering them all if its neighbours are adjacent.
    fn place(&mut self, x: u32, position: usize) -> Reranked {
        let len = self.size(self.root) as usize;
        assert!(position <= len, "position past the end");
        let rank_at = |p: usize| self.node(self.slot_at(p).expect("in the tree")).rank();
        let lo = position.checked_sub(1).map(rank_at);
        let hi = (position < len).then(|| rank_at(position));
        let id = self.node(x).id;
        let (rank, reranked) = match rank_between(lo, hi) {
            Some(rank) => (rank, vec![(id, rank)]),
            None => self.renumber_around(id, position),
        };
        self.attach(x, rank);
        reranked
    }

    /// Evenly renumbers the tasks in the tree, in place and in order, leaving a
    /// free rank at `position` for task `id`. Ranks span the middle half of the
    /// range, so both ends keep room. Returns that free rank and every changed
    /// (id, rank) in queue order, `id`'s included. O(n).
    fn renumber_around(&mut self, id: u64, position: usize) -> (u128, Reranked) {
        let n = self.size(self.root) as usize;
        let spacing = (u128::MAX / 2) / (n as u128 + 2);
        assert!(spacing >= 2, "queue too long to renumber");
        let rank_of = |i: usize| u128::MAX / 4 + spacing * (i as u128 + 1);
        let mut walk = self.iter_from(0);
        let slots: Vec<u32> = std::iter::from_fn(|| walk.next_slot()).collect();
        let mut reranked = Vec::with_capacity(n + 1);
        for (i, &slot) in slots.iter().enumerate() {
            if i == position {
                reranked.push((id, rank_of(i)));
            }
            let new_rank = rank_of(if i < position { i } else { i + 1 });
            let node = self.node_mut(slot);
            if node.rank() != new_rank {
                (node.rank_hi, node.rank_lo) = ((new_rank >> 64) as u64, new_rank as u64);
                reranked.push((node.id, new_rank));
            }
        }
        if position == n {
            reranked.push((id, rank_of(n)));
        }
        (rank_of(position), reranked)
    }

    /// Links detached slot `x` into the tree with `rank`.
    fn attach(&mut self, x: u32, rank: u128) {
        let node = self.node_mut(x);
        (node.rank_hi, node.rank_lo) = ((rank >> 64) as u64, rank as u64);
        (node.kids, node.size) = ([NIL; 2], 1);
        self.root = self.insert_node(self.root, x);
    }

    /// Unlinks slot `x` from the tree, keeping its slot and id mapping.
    fn detach(&mut self, x: u32) {
        self.root = self.remove_node(self.root, self.node(x).rank());
    }

    /// Inserts detached slot `x` into subtree `t`; returns the new subtree root.
    fn insert_node(&mut self, t: u32, x: u32) -> u32 {
        if t == NIL {
            return x;
        }
        let (rank, here) = (self.node(x).rank(), self.node(t).rank());
        assert!(rank != here, "rank {rank} is already in the queue order");
        let side = if rank < here { L } else { R };
        let kid = self.insert_node(self.node(t).kids[side], x);
        self.node_mut(t).kids[side] = kid;
        self.balance(t)
    }

    /// Unlinks the node with `rank` from subtree `t`; returns the new subtree root.
    fn remove_node(&mut self, t: u32, rank: u128) -> u32 {
        assert!(t != NIL, "rank {rank} is not in the tree");
        let [left, right] = self.node(t).kids;
        let side = match rank.cmp(&self.node(t).rank()) {
            Ordering::Less => L,
            Ordering::Greater => R,
            Ordering::Equal => return self.glue(left, right),
        };
        let kid = self.remove_node(self.node(t).kids[side], rank);
        self.node_mut(t).kids[side] = kid;
        self.balance(t)
    }

    /// Joins two balanced siblings whose parent was removed by lifting the
    /// nearest node of the larger one into the root.
    fn glue(&mut self, left: u32, right: u32) -> u32 {
        if left == NIL || right == NIL {
            return if left == NIL { right } else { left };
        }
        let kids = if self.size(left) > self.size(right) {
            let (m, rest) = self.pop_extreme(left, R);
            (m, [rest, right])
        } else {
            let (m, rest) = self.pop_extreme(right, L);
            (m, [left, rest])
        };
        self.node_mut(kids.0).kids = kids.1;
        self.balance(kids.0)
    }

    /// Unlinks the leftmost (`side` L) or rightmost node of subtree `t`;
    /// returns it and the new subtree root.
    fn pop_extreme(&mut self, t: u32, side: usize) -> (u32, u32) {
        let kids = self.node(t).kids;
        if kids[side] == NIL {
            return (t, kids[1 - side]);
        }
        let (m, rest) = self.pop_extreme(kids[side], side);
        self.node_mut(t).kids[side] = rest;
        (m, self.balance(t))
    }

    /// Restores balance and size at `t` after one insertion or removal below it.
    fn balance(&mut self, t: u32) -> u32 {
        let [left, right] = self.node(t).kids;
        let (wl, wr) = (self.weight(left), self.weight(right));
        let heavy = if DELTA * wl < wr {
            R
        } else if DELTA * wr < wl {
            L
        } else {
            self.update_size(t);
            return t;
        };
        let child = self.node(t).kids[heavy];
        let grandkids = self.node(child).kids;
        if self.weight(grandkids[1 - heavy]) >= GAMMA * self.weight(grandkids[heavy]) {
            let up = self.rotate(child, 1 - heavy);
            self.node_mut(t).kids[heavy] = up;
        }
        self.rotate(t, heavy)
    }

    /// Lifts `t`'s child on `side` above `t`; returns the new subtree root.
    fn rotate(&mut self, t: u32, side: usize) -> u32 {
        let up = self.node(t).kids[side];
        self.node_mut(t).kids[side] = self.node(up).kids[1 - side];
        self.node_mut(up).kids[1 - side] = t;
        self.update_size(t);
        self.update_size(up);
        up
    }

    fn update_size(&mut self, t: u32) {
        let [left, right] = self.node(t).kids;
        self.node_mut(t).size = self.size(left) + self.size(right) + 1;
    }
}

/// In-order walk with an explicit stack of O(log n) slots.
struct InOrder<'a> {
    order: &'a QueueOrder,
    stack: Vec<u32>,
}

impl InOrder<'_> {
    fn next_slot(&mut self) -> Option<u32> {
        let x = self.stack.pop()?;
        let mut cur = self.order.node(x).kids[R];
        while cur != NIL {
            self.stack.push(cur);
            cur = self.order.node(cur).kids[L];
        }
        Some(x)
    }
}

impl Iterator for InOrder<'_> {
    type Item = (u64, u128);

    fn next(&mut self) -> Option<Self::Item> {
        let node = self.order.node(self.next_slot()?);
        Some((node.id, node.rank()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

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
        let mut order = QueueOrder::default();
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
        assert!(order.remove(7) && !order.remove(7) && order == QueueOrder::new());
        assert_eq!(std::mem::size_of::<Node>(), 40);
    }

    #[test]
    fn ends_clamping_and_range() {
        let mut order = QueueOrder::new();
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
        let mut order = QueueOrder::new();
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
    #[should_panic(expected = "task 1 is already in the queue order")]
    fn duplicate_id_panics() {
        let mut order = QueueOrder::new();
        order.push_back(1);
        order.insert_at(1, 0);
    }

    #[test]
    fn full_ends_renumber_and_leave_room() {
        let mut low = QueueOrder::new();
        low.insert_with_rank(1, 0);
        low.insert_with_rank(2, 1);
        assert_eq!(low.push_front(3).len(), 3, "every rank changes");
        assert_eq!(ids(&low), vec![3, 1, 2]);
        let mut high = QueueOrder::new();
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
        let (mut order, mut shadow) = (QueueOrder::new(), BTreeMap::new());
        let mut model = vec![1, 2];
        persist_and_rebuild(&mut shadow, &order.push_back(1));
        persist_and_rebuild(&mut shadow, &order.push_back(2));
        let mut renumbers = 0;
        for id in 100..300 {
            let reranked = order.insert_at(id, 1);
            model.insert(1, id);
            renumbers += usize::from(reranked.len() > 1);
            assert!(reranked.contains(&(id, order.rank(id).unwrap())));
            assert_eq!(persist_and_rebuild(&mut shadow, &reranked), order);
            assert_eq!(ids(&order), model);
            order.check_invariants();
        }
        assert!(
            renumbers >= 2,
            "200 inserts into one gap renumber more than once"
        );
    }

    #[test]
    fn same_ops_give_equal_structures() {
        let build = || {
            let mut order = QueueOrder::new();
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
        order: &mut QueueOrder,
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

    #[test]
    fn random_ops_match_a_vec_model() {
        let mut renumbers = 0;
        for seed in 0..200u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let (mut order, mut model, mut shadow) =
                (QueueOrder::new(), Vec::new(), BTreeMap::new());
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
                    order,
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
