//! An answered write's idempotency record holds the answer the client got,
//! so that a retry under its key would have been answered the same. It
//! needs what only a program that sees the log and the model can give: the
//! apply's own answer (`Record::entry`) and the replica's records
//! (`Replica::records`); elsewhere it finds nothing.

use super::super::{Call, History, Replica};
use super::Findings;

/// Heartbeat batches and expiry leave no idempotency record (by design).
fn remembered(call: &Call) -> bool {
    !matches!(call, Call::Heartbeat { .. } | Call::Expire)
}

pub fn check(history: &History, replica: &Replica) -> Findings {
    let mut found = Findings::default();
    let Some(records) = &replica.records else {
        return found;
    };
    for rec in history.records.iter().filter(|r| remembered(&r.call)) {
        let Some(entry) = &rec.entry else {
            continue;
        };
        let got = &entry.response.result;
        match records.get(&rec.key) {
            Some(kept) if kept == got => {}
            Some(kept) => found.push(format!(
                "{}: the client got {got:?}, node {} remembers {kept:?}",
                rec.at(),
                replica.id
            )),
            None => found.push(format!(
                "{}: acknowledged ({got:?}) but not remembered by node {}: the write was lost",
                rec.at(),
                replica.id
            )),
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::super::fixture::*;
    use super::*;

    #[test]
    fn a_clean_history_passes() {
        let (history, replica) = clean();
        assert_eq!(check(&history, &replica), Findings::default());
    }

    #[test]
    fn a_forgotten_or_different_answer_is_found() {
        let (mut history, mut replica) = clean();
        let mut lost = history.records[0].clone();
        lost.key = "s-9".into();
        history.records.push(lost);
        let records = replica.records.as_mut().expect("the model's view");
        let changed = records.get_mut("w-3").expect("the completion");
        *changed = Ok(laneq::model::Reply::None);
        let c = check(&history, &replica);
        assert_eq!(c.violations.len(), 2, "{:?}", c.violations);
        assert!(c.violations[0].contains("key w-3 ("), "{c:?}");
        assert!(c.violations[1].contains("key s-9 ("), "{c:?}");
        assert!(c.violations[1].contains("the write was lost"), "{c:?}");
        // A program that cannot see the records finds nothing.
        replica.records = None;
        assert_eq!(check(&history, &replica), Findings::default());
    }
}
