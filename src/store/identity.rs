//! The identity of a data dir: which node of which cluster it belongs to.
//! Starting a node on another node's or another cluster's data is refused
//! before anything is written.

use serde::{Deserialize, Serialize};
use std::io;
use std::path::Path;

const FILE: &str = "laneq-identity.toml";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub format: u32,
    pub node_id: u64,
    pub cluster: String,
}

impl Identity {
    pub fn new(node_id: u64, cluster: &str) -> Self {
        Self {
            format: 1,
            node_id,
            cluster: cluster.to_string(),
        }
    }

    /// Checks `dir` against `self`, writing the identity when the dir is new.
    pub fn claim(&self, dir: &Path) -> io::Result<()> {
        let path = dir.join(FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let found: Identity = toml::from_str(&text).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: unreadable identity: {e}", path.display()),
                    )
                })?;
                if found.node_id != self.node_id {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "data dir {} belongs to node {}, not node {}; \
                             give each node its own data dir",
                            dir.display(),
                            found.node_id,
                            self.node_id
                        ),
                    ));
                }
                if found.cluster != self.cluster {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "data dir {} belongs to cluster {:?}, not {:?}",
                            dir.display(),
                            found.cluster,
                            self.cluster
                        ),
                    ));
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if dir.join("db").exists() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "data dir {} holds a database but no {FILE}; refusing to guess whose it is",
                            dir.display()
                        ),
                    ));
                }
                self.write(dir)
            }
            Err(e) => Err(e),
        }
    }

    /// Writes the identity into `dir` (durably), whatever it holds.
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!("{FILE}.tmp"));
        let text = toml::to_string(self).map_err(io::Error::other)?;
        std::fs::write(&tmp, text)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, dir.join(FILE))?;
        std::fs::File::open(dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dir_is_claimed_once_and_checked_after() {
        let dir = tempfile::tempdir().unwrap();
        Identity::new(1, "local").claim(dir.path()).unwrap();
        Identity::new(1, "local").claim(dir.path()).unwrap();
        let e = Identity::new(2, "local").claim(dir.path()).unwrap_err();
        assert!(
            e.to_string().contains("belongs to node 1, not node 2"),
            "{e}"
        );
        let e = Identity::new(1, "prod").claim(dir.path()).unwrap_err();
        assert!(e.to_string().contains("cluster \"local\""), "{e}");
    }
}
