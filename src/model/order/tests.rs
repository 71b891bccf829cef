//! The queue order against a plain model: fixed cases of each operation,
//! renumbering, rebuilds from persisted ranks, and random operation
//! sequences on deep trees.

use super::respace::{END_GAP, START_RANK};
use super::tree::NIL;
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
