//! The `laneq` binary: the CLI (`src/cli`), which also runs a node
//! (`laneq node`) when built with the `server` feature.

/// jemalloc for the node, RocksDB's C++ included (its `malloc` is jemalloc
/// too): glibc's malloc and free were a large share of a node's CPU under
/// write load (see bench/RESULTS.md, "jemalloc"). The library leaves the
/// choice to each program built on it.
#[cfg(feature = "server")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    laneq::cli::main()
}
