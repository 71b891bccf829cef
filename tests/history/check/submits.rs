//! Guarantees 1 and 2: every acknowledged submit is present exactly once,
//! with the ids it was acknowledged with, whatever the retries under its
//! idempotency key; a submit whose outcome stayed unknown exists wholly or
//! not at all (a batch is atomic); a key only ever refused created nothing;
//! and no task came from nowhere.
//!
//! It judges one replica's tasks (the replicas check makes them agree).

use std::collections::{BTreeMap, BTreeSet};

use super::super::{History, Outcome, Record, Reply, TaskView};
use super::{Findings, DUPLICATES, LOST};

pub fn check(history: &History, tasks: &[TaskView]) -> Findings {
    let mut found = Findings::default();
    let mut by_key: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for t in tasks {
        by_key.entry(t.key.as_str()).or_default().push(t.id);
    }
    let mut attempts: BTreeMap<&str, Vec<(&Record, usize)>> = BTreeMap::new();
    for (r, size) in history.submits() {
        attempts.entry(r.key.as_str()).or_default().push((r, size));
    }
    for (key, tries) in &attempts {
        let present = by_key.get(key).map_or(&[][..], Vec::as_slice);
        one_key(key, tries, present, &mut found);
    }
    for t in tasks {
        if !attempts.contains_key(t.key.as_str()) {
            found.push(format!(
                "task {} (key {:?}) was never submitted by the workload",
                t.id, t.key
            ));
        }
    }
    found
}

/// The attempts at one key against the tasks that carry it.
fn one_key(key: &str, tries: &[(&Record, usize)], present: &[u64], found: &mut Findings) {
    let size = tries[0].1;
    if present.len() > size {
        found.counted(
            DUPLICATES,
            (present.len() - size) as u64,
            format!(
                "key {key}: {} tasks ({present:?}) for a submit of {size}",
                present.len()
            ),
        );
    }
    let mut acked: BTreeMap<&Vec<u64>, &Record> = BTreeMap::new();
    for (r, _) in tries {
        if let Outcome::Ok(Reply::Submitted { ids }) = &r.outcome {
            acked.entry(ids).or_insert(r);
        }
    }
    if acked.len() > 1 {
        let ids: Vec<_> = acked.keys().collect();
        found.push(format!(
            "key {key}: acknowledged with different ids {ids:?}"
        ));
    }
    if let Some((ids, ack)) = acked.first_key_value() {
        if ids.len() != size {
            found.push(format!(
                "{}: a submit of {size} was acknowledged with {} ids {ids:?}",
                ack.at(),
                ids.len()
            ));
        }
        for id in ids.iter().filter(|id| !present.contains(id)) {
            found.counted(
                LOST,
                1,
                format!(
                    "key {key}: task {id} was acknowledged and is missing ({})",
                    ack.at()
                ),
            );
        }
        let extra: BTreeSet<_> = present.iter().filter(|id| !ids.contains(id)).collect();
        if !extra.is_empty() && present.len() <= size {
            found.push(format!(
                "key {key}: tasks {extra:?} exist besides the acknowledged {ids:?} ({})",
                ack.at()
            ));
        }
    } else if tries
        .iter()
        .all(|(r, _)| matches!(r.outcome, Outcome::Refused(_)))
    {
        if !present.is_empty() {
            let (last, _) = tries[tries.len() - 1];
            found.push(format!(
                "key {key}: every attempt was refused (the last {:?}, {}), yet tasks \
                 {present:?} exist",
                last.outcome,
                last.at()
            ));
        }
    } else if !present.is_empty() && present.len() < size {
        let (last, _) = tries[tries.len() - 1];
        found.push(format!(
            "key {key}: a submit of {size} whose outcome stayed unknown ({}) left only \
             tasks {present:?}: a batch is all or nothing",
            last.at()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::*;
    use super::*;

    #[test]
    fn a_clean_history_passes() {
        let mut h = History::default();
        h.records.push(submit("a", unknown(), 0));
        h.records.push(submit("a", ok_ids(&[1]), 10));
        h.records.push(submit("b", refused(), 20));
        h.records.push(submit("c", unknown(), 30));
        h.records.push(batch("d", 3, unknown(), 40));
        let tasks = [
            task(1, "a", "succeeded"),
            task(2, "c", "queued"),
            task(3, "d", "queued"),
            task(4, "d", "queued"),
            task(5, "d", "queued"),
        ];
        assert_eq!(check(&h, &tasks), Findings::default());
    }

    #[test]
    fn a_lost_and_a_duplicated_submit_are_found() {
        let mut h = History::default();
        h.records.push(submit("a", ok_ids(&[1]), 0));
        h.records.push(submit("b", unknown(), 10));
        h.records.push(submit("b", ok_ids(&[2]), 20));
        let tasks = [task(2, "b", "queued"), task(3, "b", "queued")];
        let c = check(&h, &tasks);
        assert_eq!((c.count(LOST), c.count(DUPLICATES)), (1, 1));
        assert_eq!(c.violations.len(), 2, "{:?}", c.violations);
        assert!(c.violations[0].contains("key a: task 1"), "{c:?}");
    }

    #[test]
    fn a_refused_submit_that_exists_and_a_stray_task_are_found() {
        let mut h = History::default();
        h.records.push(submit("a", refused(), 0));
        let c = check(&h, &[task(1, "a", "queued"), task(2, "zz", "queued")]);
        assert_eq!(c.violations.len(), 2, "{:?}", c.violations);
    }

    #[test]
    fn half_an_unknown_batch_and_ids_other_than_acknowledged_are_found() {
        let mut h = History::default();
        h.records.push(batch("a", 3, unknown(), 0));
        h.records.push(submit("b", ok_ids(&[5]), 10));
        h.records.push(submit("b", ok_ids(&[6]), 20));
        let tasks = [task(1, "a", "queued"), task(5, "b", "queued")];
        let c = check(&h, &tasks);
        assert_eq!(c.violations.len(), 2, "{:?}", c.violations);
        assert!(c.violations[0].contains("all or nothing"), "{c:?}");
        assert!(c.violations[1].contains("different ids"), "{c:?}");
    }
}
