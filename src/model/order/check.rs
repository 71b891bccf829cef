//! [`QueueOrder::check_invariants`]: the structure checked against every
//! rule it must keep, for tests and the state's debug checks.
//!
//! **Architecture Invariant:** read-only; a violation panics, because a
//! replica with a broken index must stop, not serve.

use super::tree::{CAP, NIL};
use super::QueueOrder;

impl QueueOrder {
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
}
