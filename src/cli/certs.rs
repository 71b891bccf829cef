//! `laneq certs create`: throwaway CAs and certificates for a cluster (see
//! `crate::certs` for what it writes and what each file is for).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::Failure;
use crate::certs::NodeHosts;

#[derive(Subcommand, Debug)]
pub enum CertsCmd {
    /// Write a cluster CA, a client CA, a certificate for each node and for
    /// each client. Keys are written 0600.
    ///
    /// Nodes use `cluster-ca.pem` as `peer_ca`, `client-ca.pem` as
    /// `client_ca`, and `node-ID.pem`/`.key` as `cert`/`key`; clients pass
    /// `--cacert cluster-ca.pem` and, for an identity,
    /// `--cert client-NAME.pem --key client-NAME.key`.
    Create(CreateArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Where to write the files (created if missing; files there are replaced).
    #[arg(long)]
    dir: PathBuf,
    /// A node as ID:HOST[,HOST...]: the host names and IP addresses it is
    /// reached at (127.0.0.1 and localhost are always added). Repeat per node.
    #[arg(long = "node", required = true)]
    nodes: Vec<NodeHosts>,
    /// A client certificate with this common name (its identity). Repeatable.
    #[arg(long = "client")]
    clients: Vec<String>,
}

pub fn run(cmd: CertsCmd) -> Result<(), Failure> {
    match cmd {
        CertsCmd::Create(args) => {
            let written = crate::certs::create(&args.dir, &args.nodes, &args.clients)
                .map_err(Failure::from)?;
            for path in written {
                println!("{}", path.display());
            }
            Ok(())
        }
    }
}
