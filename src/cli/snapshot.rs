//! Backup and restore: `laneq cluster snapshot save|inspect` and `laneq
//! node restore`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, Subcommand};
use futures::StreamExt;
use serde_json::json;

use super::output::{self, Output};
use super::worker::bytes;
use super::{Failure, GlobalArgs};
use crate::client::Client;
use crate::proto::v1::SnapshotInfo;
use crate::records::{Backup, BackupInfo, BackupWriter, SnapshotReader};

#[derive(Subcommand, Debug)]
pub enum SnapshotCmd {
    /// Save a consistent copy of the whole cluster (queues, tasks, workers,
    /// pools, projects, tokens, settings and the metrics history) to FILE,
    /// streamed from the leader; every write acknowledged before the
    /// command started is in it. Admin only. The file is checksummed and
    /// read back before the command succeeds. Restore it into a new cluster
    /// with `laneq node restore`.
    Save {
        /// Where to write it (written as FILE.partial, then renamed).
        file: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Check a saved file's checksums and show what it holds. Needs no
    /// cluster.
    Inspect { file: PathBuf },
}

/// `laneq node restore`.
#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// A file that `laneq cluster snapshot save` wrote.
    pub file: PathBuf,
    /// The config of the node to restore: its id, its data dir (which must
    /// not exist yet, or be empty), its cluster name and its peers, which
    /// become the new cluster's voters. Keep the snapshot's cluster name to
    /// keep its identity, or give another for a new one.
    #[arg(long)]
    pub config: PathBuf,
}

pub async fn run(g: &GlobalArgs, client: &Client, cmd: SnapshotCmd) -> Result<(), Failure> {
    match cmd {
        SnapshotCmd::Save { file, force } => save(g, client, &file, force).await,
        SnapshotCmd::Inspect { file } => {
            let bytes = read(&file)?;
            let (info, blob) = check(&bytes)?;
            print_info(g, "checked", &file, &info, blob.len() as u64, None);
            Ok(())
        }
    }
}

async fn save(g: &GlobalArgs, client: &Client, file: &Path, force: bool) -> Result<(), Failure> {
    if file.exists() && !force {
        return Err(Failure {
            message: format!("{} exists; give --force to replace it", file.display()),
            code: 4,
        });
    }
    let start = Instant::now();
    let (info, pieces) = client.save_snapshot().await?;
    let partial = PathBuf::from(format!("{}.partial", file.display()));
    let written = write(g, &partial, &info, pieces).await;
    if let Err(e) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    let bytes = read(&partial)?;
    let checked = check(&bytes).map(|(info, blob)| (info, blob.len() as u64));
    let (backup, blob_bytes) = match checked {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    std::fs::rename(&partial, file).map_err(|e| io_failure(file, e))?;
    sync_dir(file)?;
    print_info(g, "saved", file, &backup, blob_bytes, Some(start));
    Ok(())
}

/// Writes the backup file as its pieces arrive, with a progress bar on a
/// terminal, and syncs it.
async fn write(
    g: &GlobalArgs,
    path: &Path,
    info: &SnapshotInfo,
    mut pieces: impl futures::Stream<Item = Result<Vec<u8>, crate::client::ClientError>> + Unpin,
) -> Result<(), Failure> {
    let f = std::fs::File::create(path).map_err(|e| io_failure(path, e))?;
    let io = |e| io_failure(path, e);
    let backup = BackupInfo {
        cluster: info.cluster.clone(),
        node: info.node_id,
        index: info.index,
        term: info.term,
        taken_at_ms: info.taken_at_ms,
        tasks: info.tasks,
        queues: info.queues,
        version: info.version.clone(),
    };
    let mut w = BackupWriter::new(std::io::BufWriter::new(f), &backup, info.bytes).map_err(io)?;
    let bar = progress(g, info.bytes);
    while let Some(piece) = pieces.next().await {
        let piece = piece?;
        w.blob(&piece).map_err(io)?;
        bar.inc(piece.len() as u64);
    }
    bar.finish_and_clear();
    let f = w.finish().map_err(io)?;
    let f = f.into_inner().map_err(|e| io(e.into_error()))?;
    f.sync_all().map_err(io)
}

fn progress(g: &GlobalArgs, total: u64) -> indicatif::ProgressBar {
    if g.output != Output::Table || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    let style = indicatif::ProgressStyle::with_template(
        "saving {bytes}/{total_bytes} [{wide_bar}] {bytes_per_sec}, {eta} left",
    )
    .expect("a valid template")
    .progress_chars("=> ");
    bar.set_style(style);
    bar
}

fn read(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| io_failure(path, e))
}

/// Both checksums: the file's and its snapshot's own.
fn check(file: &[u8]) -> Result<(BackupInfo, &[u8]), Failure> {
    let backup = Backup::parse(file).map_err(|e| Failure::invalid(e.to_string()))?;
    SnapshotReader::parse(backup.blob).map_err(|e| Failure::invalid(format!("{e}")))?;
    Ok((backup.info, backup.blob))
}

/// "3 tasks in 1 queue".
fn holds(info: &BackupInfo) -> String {
    let s = |n: u64| if n == 1 { "" } else { "s" };
    format!(
        "{} task{} in {} queue{}",
        info.tasks,
        s(info.tasks),
        info.queues,
        s(info.queues)
    )
}

fn io_failure(path: &Path, e: std::io::Error) -> Failure {
    Failure::from(format!("{}: {e}", path.display()))
}

fn sync_dir(file: &Path) -> Result<(), Failure> {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_failure(dir, e))
}

fn print_info(
    g: &GlobalArgs,
    what: &str,
    file: &Path,
    info: &BackupInfo,
    blob_bytes: u64,
    start: Option<Instant>,
) {
    let seconds = start.map(|s| s.elapsed().as_secs_f64());
    match g.output {
        Output::Json => output::json(&json!({
            "file": file.display().to_string(),
            "cluster": info.cluster,
            "node_id": info.node,
            "index": info.index,
            "term": info.term,
            "bytes": blob_bytes,
            "tasks": info.tasks,
            "queues": info.queues,
            "taken_at_ms": info.taken_at_ms,
            "version": info.version,
            "seconds": seconds,
        })),
        Output::Table => {
            let mut rows = vec![
                (
                    what,
                    format!(
                        "{} ({}, checksums match)",
                        file.display(),
                        bytes(blob_bytes)
                    ),
                ),
                ("cluster", info.cluster.clone()),
                (
                    "index",
                    format!(
                        "{} (term {}), taken on node {}",
                        info.index, info.term, info.node
                    ),
                ),
                ("taken", output::time(info.taken_at_ms)),
                ("holds", holds(info)),
                ("version", info.version.clone()),
            ];
            if let Some(s) = seconds {
                rows.push(("took", format!("{s:.1} s")));
            }
            output::fields(&rows);
        }
    }
    let _ = std::io::stdout().flush();
}

/// `laneq node restore FILE --config node.toml`.
pub fn restore(g: &GlobalArgs, args: RestoreArgs) -> Result<(), Failure> {
    let config = crate::config::NodeConfig::load(&args.config)?;
    let bytes = read(&args.file)?;
    let (info, blob) = check(&bytes)?;
    let restored = restore_into(blob, &config)?;
    let members: Vec<String> = restored
        .iter()
        .map(|(id, addr)| format!("{id} {addr}"))
        .collect();
    let identity = match info.cluster == config.cluster {
        true => format!("{:?}, the snapshot's", config.cluster),
        false => format!(
            "{:?}, a new one (the snapshot's is {:?})",
            config.cluster, info.cluster
        ),
    };
    match g.output {
        Output::Json => output::json(&json!({
            "data_dir": config.data_dir.display().to_string(),
            "node_id": config.id,
            "cluster": config.cluster,
            "snapshot_cluster": info.cluster,
            "index": info.index,
            "term": info.term,
            "tasks": info.tasks,
            "queues": info.queues,
            "members": restored.iter().map(|(id, addr)| json!({"id": id, "addr": addr})).collect::<Vec<_>>(),
        })),
        Output::Table => {
            output::fields(&[
                (
                    "restored",
                    format!("{} into {}", args.file.display(), config.data_dir.display()),
                ),
                ("node", config.id.to_string()),
                ("cluster", identity),
                ("index", format!("{} (term {})", info.index, info.term)),
                ("holds", holds(&info)),
                ("members", members.join(", ")),
            ]);
            println!(
                "\nRestore every other member from the same file, each with its own config and \
                 the same peers, then start each node as usual (laneq node --config ...). \
                 No `cluster init` is needed."
            );
        }
    }
    Ok(())
}

#[cfg(feature = "server")]
fn restore_into(
    blob: &[u8],
    config: &crate::config::NodeConfig,
) -> Result<Vec<(u64, String)>, Failure> {
    crate::raft::restore(blob, config)
        .map(|r| r.members)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Failure {
                message: e.to_string(),
                code: 4,
            },
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput => {
                Failure::invalid(e.to_string())
            }
            _ => Failure::from(format!("restore into {}: {e}", config.data_dir.display())),
        })
}

#[cfg(not(feature = "server"))]
fn restore_into(
    _blob: &[u8],
    _config: &crate::config::NodeConfig,
) -> Result<Vec<(u64, String)>, Failure> {
    Err(Failure::from(
        "this laneq was built without the server (cargo feature `server`); build it with \
         default features to restore a node"
            .to_string(),
    ))
}
