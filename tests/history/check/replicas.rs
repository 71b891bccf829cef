//! Guarantee 5 on the healed cluster: every replica has applied the same
//! index to the same digest and holds the same tasks ([`agree`]); on every
//! replica each queue's positions are 1..=n, the queued listing matches the
//! tasks' states and no task sits in two queues ([`listings`]); and a
//! replica loads back from its disk what it served ([`reloaded`], for a
//! program that can stop its nodes and read their disks).

use std::collections::BTreeMap;

use super::super::Replica;
use super::{Findings, DIGEST_MISMATCHES};

pub fn agree(replicas: &[Replica]) -> Findings {
    let mut found = Findings::default();
    let Some(first) = replicas.first() else {
        found.push("no node could be read".into());
        return found;
    };
    for n in &replicas[1..] {
        if (n.applied, &n.digest) != (first.applied, &first.digest) {
            found.counted(
                DIGEST_MISMATCHES,
                1,
                format!(
                    "node {} is at index {} with digest {}, node {} at {} with {}",
                    n.id, n.applied, n.digest, first.id, first.applied, first.digest
                ),
            );
        } else if n.tasks != first.tasks {
            found.push(format!(
                "nodes {} and {} report the same digest but different tasks",
                first.id, n.id
            ));
        } else if n.queued != first.queued {
            found.push(format!(
                "nodes {} and {} report the same digest but different queue orders",
                first.id, n.id
            ));
        }
    }
    found
}

pub fn listings(replicas: &[Replica]) -> Findings {
    let mut found = Findings::default();
    for n in replicas {
        let mut seen: BTreeMap<u64, &str> = BTreeMap::new();
        for (queue, entries) in &n.queued {
            for (i, (id, position)) in entries.iter().enumerate() {
                if *position != i as u64 + 1 {
                    found.push(format!(
                        "node {}: queue {queue} lists task {id} {} but reports position {position}",
                        n.id,
                        i + 1
                    ));
                }
                if let Some(other) = seen.insert(*id, queue) {
                    found.push(format!(
                        "node {}: task {id} is queued in {other} and in {queue}",
                        n.id
                    ));
                }
            }
        }
        for t in &n.tasks {
            let listed = seen.get(&t.id).copied();
            match (t.state.as_str(), listed) {
                ("queued", Some(q)) if q == t.queue => {}
                ("queued", _) => found.push(format!(
                    "node {}: task {} is queued in {} but listed in {listed:?}",
                    n.id, t.id, t.queue
                )),
                (state, Some(q)) => found.push(format!(
                    "node {}: task {} is {state} yet listed in queue {q}",
                    n.id, t.id
                )),
                _ => {}
            }
        }
    }
    found
}

/// `reloaded` holds what each node of `served` loaded from its disk.
pub fn reloaded(served: &[Replica], reloaded: &[Replica]) -> Findings {
    let mut found = Findings::default();
    for n in served {
        match reloaded.iter().find(|r| r.id == n.id) {
            Some(r) if r == n => {}
            Some(r) if (r.applied, &r.digest) != (n.applied, &n.digest) => found.push(format!(
                "node {} reloads index {} with digest {} from disk, not the index {} with \
                 digest {} it served",
                n.id, r.applied, r.digest, n.applied, n.digest
            )),
            Some(_) => found.push(format!(
                "node {} reloads from disk the index and digest it served, but other tasks, \
                 queues or idempotency records",
                n.id
            )),
            None => found.push(format!("node {} was not reloaded", n.id)),
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::super::fixture::*;
    use super::*;

    #[test]
    fn consistent_nodes_pass() {
        let tasks = vec![task(1, "a", "queued"), task(2, "b", "succeeded")];
        let n1 = node(1, "d", tasks.clone(), &[(1, 1)]);
        let n2 = node(2, "d", tasks, &[(1, 1)]);
        let nodes = [n1, n2];
        assert_eq!(agree(&nodes), Findings::default());
        assert_eq!(listings(&nodes), Findings::default());
        assert_eq!(reloaded(&nodes, &nodes), Findings::default());
    }

    #[test]
    fn divergence_and_bad_positions_are_found() {
        let tasks = vec![task(1, "a", "queued"), task(2, "b", "queued")];
        let n1 = node(1, "d", tasks.clone(), &[(1, 1), (2, 3)]);
        let n2 = node(2, "e", tasks, &[(1, 1), (2, 2)]);
        let nodes = [n1, n2];
        let c = agree(&nodes);
        assert_eq!(c.count(DIGEST_MISMATCHES), 1);
        assert_eq!(c.violations.len(), 1, "{:?}", c.violations);
        assert_eq!(listings(&nodes).violations.len(), 1);

        let same = node(3, "d", vec![task(1, "a", "queued")], &[(1, 1)]);
        let c = agree(&[nodes[0].clone(), same]);
        assert!(c.violations[0].contains("different tasks"), "{c:?}");
    }

    #[test]
    fn a_task_in_two_queues_or_listed_when_not_queued_is_found() {
        let tasks = vec![task(1, "a", "queued"), task(2, "b", "running")];
        let mut n = node(1, "d", tasks, &[(1, 1), (2, 2)]);
        n.queued.insert("q1".into(), vec![(1, 1)]);
        let c = listings(&[n]);
        assert_eq!(c.violations.len(), 3, "{:?}", c.violations);
        assert!(c.violations[0].contains("in default and in q1"), "{c:?}");
        assert!(
            c.violations[2].contains("task 2 is running yet listed"),
            "{c:?}"
        );
    }

    #[test]
    fn a_replica_that_reloads_something_else_is_found() {
        let n = node(1, "d", vec![task(1, "a", "queued")], &[(1, 1)]);
        let mut back = n.clone();
        back.applied = 9;
        let c = reloaded(std::slice::from_ref(&n), &[back]);
        assert!(c.violations[0].contains("reloads index 9"), "{c:?}");
        let c = reloaded(&[n], &[]);
        assert!(c.violations[0].contains("was not reloaded"), "{c:?}");
    }
}
