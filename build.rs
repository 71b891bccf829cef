//! Compiles proto/ with the pure-Rust protox (no system protoc needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/raft.proto",
        "proto/laneq/v1/common.proto",
        "proto/laneq/v1/cluster.proto",
        "proto/laneq/v1/pool.proto",
        "proto/laneq/v1/queue.proto",
        "proto/laneq/v1/task.proto",
        "proto/laneq/v1/project.proto",
        "proto/laneq/v1/worker.proto",
        "proto/laneq/v1/watch.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
