//! Linearizable reads: a read observes every write whose answer came back
//! before the read was sent (its observed applied index is at least each
//! such write's log index, where the history knows log indexes), and reads
//! answered by one replica never go back (one sent after another was
//! answered observed at least the same index).

use std::collections::BTreeMap;

use super::super::{History, Outcome, ReadView, Record, Reply};
use super::Findings;

/// Points (answered at ms, index, record), sorted by answer time, with the
/// place of the highest index among the first n + 1 of them.
struct Answered<'h> {
    points: Vec<(u64, u64, &'h Record)>,
    highest: Vec<usize>,
}

impl<'h> Answered<'h> {
    fn new(mut points: Vec<(u64, u64, &'h Record)>) -> Self {
        points.sort_by_key(|p| p.0);
        let mut highest: Vec<usize> = Vec::with_capacity(points.len());
        for (i, p) in points.iter().enumerate() {
            let keep = highest.last().copied().filter(|&j| points[j].1 >= p.1);
            highest.push(keep.unwrap_or(i));
        }
        Self { points, highest }
    }

    /// The point of highest index answered before `sent_ms`.
    fn highest_before(&self, sent_ms: u64) -> Option<(u64, &'h Record)> {
        let n = self.points.partition_point(|p| p.0 < sent_ms);
        let i = self.highest[n.checked_sub(1)?];
        Some((self.points[i].1, self.points[i].2))
    }
}

/// The answered reads, with what they observed.
fn reads(history: &History) -> Vec<(&Record, &ReadView)> {
    (history.records.iter())
        .filter_map(|r| match &r.outcome {
            Outcome::Ok(Reply::Read(view)) => Some((r, view)),
            _ => None,
        })
        .collect()
}

pub fn check(history: &History) -> Findings {
    let mut found = Findings::default();
    let reads = reads(history);
    if reads.is_empty() {
        return found;
    }
    let writes = Answered::new(
        (history.records.iter())
            .filter_map(|w| Some((w.done_ms, w.entry.as_ref()?.index, w)))
            .collect(),
    );
    for &(r, view) in &reads {
        let Some((index, w)) = writes.highest_before(r.sent_ms) else {
            continue;
        };
        if view.applied < index {
            found.push(format!(
                "a read ({}) on node {} observed index {}, but a write answered before it was \
                 sent is at index {index} ({})",
                r.at(),
                view.node,
                view.applied,
                w.at()
            ));
        }
    }
    let mut by_node: BTreeMap<u64, Vec<(u64, u64, &Record)>> = BTreeMap::new();
    for &(r, view) in &reads {
        let points = by_node.entry(view.node).or_default();
        points.push((r.done_ms, view.applied, r));
    }
    for (node, points) in by_node {
        let earlier = Answered::new(points);
        for &(_, applied, r) in &earlier.points {
            let Some((seen, before)) = earlier.highest_before(r.sent_ms) else {
                continue;
            };
            if applied < seen {
                found.push(format!(
                    "node {node} went back: a read ({}) observed index {applied} after a read \
                     answered before it was sent ({}) observed {seen}",
                    r.at(),
                    before.at()
                ));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::super::fixture::*;
    use super::*;

    /// A write at `index` answered at `at + 2`, and reads that see it.
    fn history() -> History {
        let mut h = History::default();
        h.records.push(at_index(submit("a", ok_ids(&[1]), 0), 4));
        h.records.push(read(1, 4, 10));
        h.records.push(read(2, 5, 12));
        h.records.push(read(1, 6, 20));
        h
    }

    #[test]
    fn reads_that_see_every_earlier_write_pass() {
        let mut h = history();
        // Sent before the write was answered: it may miss it.
        h.records.push(read(3, 1, 1));
        assert_eq!(check(&h), Findings::default());
    }

    #[test]
    fn a_read_that_misses_an_answered_write_is_found() {
        let mut h = history();
        h.records.push(read(3, 3, 30));
        let c = check(&h);
        assert_eq!(c.violations.len(), 1, "{:?}", c.violations);
        assert!(
            c.violations[0].contains("on node 3 observed index 3"),
            "{c:?}"
        );
        assert!(c.violations[0].contains("at index 4 (key a"), "{c:?}");
    }

    #[test]
    fn a_replica_whose_reads_go_back_is_found() {
        let mut h = history();
        h.records.push(read(1, 5, 40));
        // Overlapping reads on one node may come back in either order.
        h.records.push(read(2, 7, 50));
        let mut overlapping = read(2, 6, 49);
        overlapping.done_ms = 60;
        h.records.push(overlapping);
        let c = check(&h);
        assert_eq!(c.violations.len(), 1, "{:?}", c.violations);
        assert!(c.violations[0].contains("node 1 went back"), "{c:?}");
        assert!(c.violations[0].contains("observed 6"), "{c:?}");
    }
}
