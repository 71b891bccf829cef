//! Tokens: created once under a name, bound to projects and pools that
//! exist, the first admin only while none exists, expiry by stamped time,
//! and revoked by name.

use std::collections::BTreeSet;

use super::cmd;
use crate::model::state::State;
use crate::model::token::Role;
use crate::model::{ErrorKind, Op, Reply, BOOTSTRAP_CREATOR};

fn create(name: &str, role: Role, projects: &[&str], pools: &[&str], bootstrap: bool) -> Op {
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    Op::CreateToken {
        name: name.into(),
        role,
        projects: set(projects),
        pools: set(pools),
        secret_sha256: vec![7; 32],
        ttl_ms: 60_000,
        bootstrap,
    }
}

fn kind(s: &mut State, now_ms: u64, key: &str, op: Op) -> Result<Reply, ErrorKind> {
    s.apply(&cmd(now_ms, key, op), &mut vec![])
        .result
        .map_err(|e| e.kind)
}

#[test]
fn the_first_admin_is_given_once_and_tokens_are_named_once() {
    let mut s = State::new();
    assert!(!s.has_tokens());
    let viewer_first = create("v", Role::Viewer, &[], &[], true);
    assert_eq!(
        kind(&mut s, 1, "a", viewer_first),
        Err(ErrorKind::FailedPrecondition),
        "a bootstrap token is an admin's"
    );
    let admin = create("admin", Role::Admin, &[], &[], true);
    assert_eq!(
        kind(&mut s, 2, "b", admin.clone()),
        Ok(Reply::Token {
            name: "admin".into()
        })
    );
    let t = s.token("admin").unwrap();
    assert_eq!(
        (t.created_by.as_str(), t.expires_ms),
        (BOOTSTRAP_CREATOR, 60_002)
    );
    let again = create("admin2", Role::Admin, &[], &[], true);
    assert_eq!(
        kind(&mut s, 3, "c", again),
        Err(ErrorKind::FailedPrecondition),
        "a second bootstrap is refused once a token exists"
    );
    let same_name = create("admin", Role::Viewer, &[], &[], false);
    assert_eq!(
        kind(&mut s, 4, "d", same_name),
        Err(ErrorKind::AlreadyExists)
    );
    assert_eq!(s.tokens().count(), 1);
    s.check_invariants();
}

#[test]
fn scoped_tokens_name_projects_and_pools_that_exist() {
    let mut s = State::new();
    let submitter = |p: &str| create("ci", Role::Submitter, &[p], &[], false);
    assert_eq!(
        kind(&mut s, 1, "a", submitter("nope")),
        Err(ErrorKind::NotFound)
    );
    assert!(kind(&mut s, 2, "b", submitter("default")).is_ok());
    let worker = create("w", Role::Worker, &[], &["gpu"], false);
    assert_eq!(kind(&mut s, 3, "c", worker), Err(ErrorKind::NotFound));
    let unscoped = create("w", Role::Worker, &[], &[], false);
    assert_eq!(
        kind(&mut s, 4, "d", unscoped),
        Err(ErrorKind::InvalidArgument)
    );
    let t = s.token("ci").unwrap();
    assert_eq!(t.created_by, "tester");
    assert!(!t.expired_at(60_001) && t.expired_at(60_002));
    s.check_invariants();
}

#[test]
fn a_revoked_token_is_gone_and_a_batch_slot_is_no_operation() {
    let mut s = State::new();
    assert!(kind(&mut s, 1, "a", create("v", Role::Viewer, &[], &[], false)).is_ok());
    let revoke = || Op::RevokeToken { name: "v".into() };
    assert!(kind(&mut s, 2, "b", revoke()).is_ok());
    assert!(s.token("v").is_none());
    assert_eq!(kind(&mut s, 3, "c", revoke()), Err(ErrorKind::NotFound));
    assert_eq!(
        kind(&mut s, 4, "d", Op::BatchSlot),
        Err(ErrorKind::InvalidArgument)
    );
    let mut short = create("x", Role::Viewer, &[], &[], false);
    if let Op::CreateToken { secret_sha256, .. } = &mut short {
        secret_sha256.pop();
    }
    assert_eq!(kind(&mut s, 5, "e", short), Err(ErrorKind::InvalidArgument));
}
