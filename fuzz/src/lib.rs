//! laneq's fuzz targets, one module each; `fuzz_targets/*.rs` are their
//! libFuzzer entry points and `src/bin/seeds.rs` writes their seed corpus.
//! `scripts/fuzz --help` says how to build and run them on stable Rust.
//!
//! - [`requests`]: every request message of `laneq.v1` decoded, turned into
//!   the model writes its handler makes, and checked as the server checks.
//! - [`model_apply`]: command sequences applied to `model::State`; its
//!   invariants hold after each, apply is deterministic, and the state
//!   reloads from its records.
//! - [`records`]: stored records, log entries and snapshot blobs decoded.
//! - [`config`]: node configs, endpoint lists, resource amounts and the CLI's
//!   arguments parsed and checked.
//!
//! A target's only verdict is a panic (or an abort): each must return for
//! any input, whatever it decides about it.

pub mod config;
pub mod gen;
pub mod model_apply;
pub mod records;
pub mod requests;

/// The first byte picks what the rest of the input is; an empty input is
/// choice 0 of nothing.
pub fn split(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((&first, rest)) => (first, rest),
        None => (0, &[]),
    }
}

/// Every input of the seed corpus (`fuzz/corpus/<target>/`), among them the
/// inputs that once crashed a target, replayed through its target as a
/// plain test: `cargo test --release` in `fuzz/` (no fuzzing flags needed).
#[cfg(test)]
mod tests {
    fn replay(target: &str, run: fn(&[u8])) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("corpus")
            .join(target);
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("a corpus dir") {
            let path = entry.expect("an entry").path();
            run(&std::fs::read(&path).expect("a seed"));
            n += 1;
        }
        assert!(n > 0, "{} holds no seed", dir.display());
    }

    /// The structured generator reaches the task lifecycle: from plain
    /// pseudo-random bytes, some sequences lease, start, complete, release
    /// and expire tasks (each accepted by apply), not only refusals.
    #[test]
    fn the_generator_reaches_the_task_lifecycle() {
        use laneq::model::{Op, Reply, State, Writes};
        let mut accepted = std::collections::BTreeMap::<String, u32>::new();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..300 {
            let bytes: Vec<u8> = (0..1_500)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let mut u = arbitrary::Unstructured::new(&bytes);
            let (mut gen, mut state) = (crate::gen::Gen::new(), State::new());
            for _ in 0..crate::model_apply::COMMANDS_MAX {
                let Ok(cmd) = gen.command(&mut u, &state) else {
                    break;
                };
                let r = state.apply(&cmd, &mut Vec::new());
                if let (Writes::One(w), Ok(reply)) = (&cmd.writes, &r.result) {
                    let kind = format!("{}", w.op);
                    let kind = kind.split(' ').next().unwrap_or("").to_string();
                    let leased = matches!(reply, Reply::Leased { leases } if !leases.is_empty());
                    if !matches!(w.op, Op::LeaseTasks { .. }) || leased {
                        *accepted.entry(kind).or_default() += 1;
                    }
                }
            }
        }
        println!("{accepted:?}");
        for kind in [
            "submit",
            "lease-tasks",
            "start-task",
            "complete-task",
            "release-task",
        ] {
            assert!(
                accepted.get(kind).copied().unwrap_or(0) > 0,
                "no {kind}: {accepted:?}"
            );
        }
    }

    #[test]
    fn the_seed_corpus_replays_without_a_crash() {
        replay("requests", crate::requests::run);
        replay("model_apply", crate::model_apply::run);
        replay("records", crate::records::run);
        replay("config", crate::config::run);
    }
}
