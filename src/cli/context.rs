//! The client config file and its named contexts, the way kubectl and flyte
//! keep them: each context holds a cluster's endpoints and a token, one is
//! current, and flags and the environment override it.
//!
//! ```toml
//! # ~/.config/laneq/config.toml ($LANEQ_CONFIG, or $XDG_CONFIG_HOME/laneq/)
//! current = "local"
//!
//! [contexts.local]
//! endpoints = "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103"
//! cacert = "/home/me/laneq/.laneq/certs/cluster-ca.pem"
//! token = "admin.3f9c..."
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::output::{self, Output};
use super::{Failure, GlobalArgs};

/// The client config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The context used when `--context` and `LANEQ_CONTEXT` name none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

/// One cluster as a client reaches it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    /// Comma-separated host:port of its nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<String>,
    /// The token calls carry (`<name>.<secret>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The CA the nodes' certificates chain to (TLS); none: plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cacert: Option<PathBuf>,
    /// A client certificate and its key, for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum ContextCmd {
    /// List the contexts of the client config; `*` marks the current one.
    List,
    /// Make a context the current one.
    Use { name: String },
    /// Create or change a context from the flags given with it, e.g.
    /// `laneq context set prod --endpoints 10.0.0.1:7101 --cacert ca.pem
    /// --token ci.4f...`. Flags not given keep the context's values.
    Set {
        name: String,
        /// Make it the current context too.
        #[arg(long = "use")]
        make_current: bool,
    },
    /// Delete a context.
    Delete { name: String },
    /// Where the client config is, and what the current context resolves to.
    Show,
}

/// Where the client config lives: `$LANEQ_CONFIG`, else
/// `$XDG_CONFIG_HOME/laneq/config.toml`, else `~/.config/laneq/config.toml`.
pub fn config_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LANEQ_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("laneq").join("config.toml"))
}

impl ClientConfig {
    /// Reads the file at `path`; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<Self, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|e| format!("client config {} is not valid: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(format!("cannot read client config {}: {e}", path.display())),
        }
    }

    /// Writes the file (mode 0600: it holds tokens), replacing it whole.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let text = toml::to_string_pretty(self).map_err(|e| e.to_string())?;
        let tmp = path.with_extension("toml.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| format!("cannot write client config {}: {e}", path.display()))
    }

    /// The context `name` names, else the current one; `None` when the
    /// config has neither (flags and defaults then decide).
    pub fn pick(&self, name: Option<&str>) -> Result<Option<&Context>, String> {
        match name.or(self.current.as_deref()) {
            None => Ok(None),
            Some(n) => self.contexts.get(n).map(Some).ok_or_else(|| {
                format!(
                    "context {n:?} is not in the client config; `laneq context list` shows them"
                )
            }),
        }
    }
}

fn load() -> Result<(PathBuf, ClientConfig), Failure> {
    let path = config_path().ok_or_else(|| {
        Failure::from("no client config path: set LANEQ_CONFIG or HOME".to_string())
    })?;
    let config = ClientConfig::load(&path)?;
    Ok((path, config))
}

/// Masks a token's secret for display.
pub fn masked(token: &str) -> String {
    match token.rsplit_once('.') {
        Some((name, _)) => format!("{name}.****"),
        None => "****".into(),
    }
}

pub async fn run(g: &GlobalArgs, cmd: ContextCmd) -> Result<(), Failure> {
    let (path, mut config) = load()?;
    match cmd {
        ContextCmd::List => list(g, &config),
        ContextCmd::Use { name } => {
            if !config.contexts.contains_key(&name) {
                return Err(Failure {
                    message: format!("context {name:?} is not in {}", path.display()),
                    code: 3,
                });
            }
            config.current = Some(name.clone());
            config.save(&path)?;
            println!("now using context {name}");
        }
        ContextCmd::Set { name, make_current } => {
            set(g, &mut config, &name, make_current)?;
            config.save(&path)?;
            println!("context {name} saved in {}", path.display());
        }
        ContextCmd::Delete { name } => {
            if config.contexts.remove(&name).is_none() {
                return Err(Failure {
                    message: format!("context {name:?} is not in {}", path.display()),
                    code: 3,
                });
            }
            if config.current.as_deref() == Some(name.as_str()) {
                config.current = None;
            }
            config.save(&path)?;
            println!("context {name} deleted");
        }
        ContextCmd::Show => show(g, &path, &config)?,
    }
    Ok(())
}

/// Saves the given flags into context `name`.
pub fn set(
    g: &GlobalArgs,
    config: &mut ClientConfig,
    name: &str,
    make_current: bool,
) -> Result<(), Failure> {
    crate::model::validate::name("context", name).map_err(|e| Failure::invalid(e.to_string()))?;
    let context = config.contexts.entry(name.to_string()).or_default();
    if let Some(e) = &g.endpoints {
        crate::client::parse_endpoints(e).map_err(Failure::invalid)?;
        context.endpoints = Some(e.clone());
    }
    if let Some(t) = &g.token {
        crate::client::credentials::token_name(t).map_err(Failure::invalid)?;
        context.token = Some(t.clone());
    }
    let absolute = |p: &PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
    if let Some(ca) = &g.cacert {
        context.cacert = Some(absolute(ca));
    }
    if let (Some(cert), Some(key)) = (&g.client_cert, &g.client_key) {
        context.cert = Some(absolute(cert));
        context.key = Some(absolute(key));
    }
    if make_current || config.current.is_none() {
        config.current = Some(name.to_string());
    }
    Ok(())
}

fn list(g: &GlobalArgs, config: &ClientConfig) {
    let current = config.current.as_deref();
    match g.output {
        Output::Json => output::json(&json!({
            "current": current,
            "contexts": config.contexts.iter().map(|(n, c)| json!({
                "name": n,
                "endpoints": c.endpoints,
                "cacert": c.cacert,
                "token": c.token.as_deref().map(masked),
            })).collect::<Vec<_>>(),
        })),
        Output::Table => {
            let rows: Vec<Vec<String>> = (config.contexts.iter())
                .map(|(n, c)| {
                    vec![
                        if Some(n.as_str()) == current { "*" } else { "" }.to_string(),
                        n.clone(),
                        output::or_dash(c.endpoints.as_deref().unwrap_or_default()),
                        c.token.as_deref().map_or("-".into(), masked),
                    ]
                })
                .collect();
            output::table(&["", "name", "endpoints", "token"], &rows);
        }
    }
}

fn show(g: &GlobalArgs, path: &Path, config: &ClientConfig) -> Result<(), Failure> {
    let resolved = g.resolve()?;
    let context = g.context.as_deref().or(config.current.as_deref());
    let token = resolved.token.as_deref().map(masked);
    match g.output {
        Output::Json => output::json(&json!({
            "config": path.display().to_string(),
            "context": context,
            "endpoints": resolved.endpoints,
            "cacert": resolved.tls.as_ref().map(|t| t.ca.display().to_string()),
            "token": token,
        })),
        Output::Table => output::fields(&[
            ("config", path.display().to_string()),
            ("context", output::or_dash(context.unwrap_or_default())),
            ("endpoints", resolved.endpoints.join(",")),
            (
                "tls",
                (resolved.tls.as_ref()).map_or("no (plaintext)".into(), |t| {
                    format!("CA {}", t.ca.display())
                }),
            ),
            ("token", token.unwrap_or_else(|| "-".into())),
        ]),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_reads_back_and_picks_its_current_context() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("laneq").join("config.toml");
        assert_eq!(ClientConfig::load(&path).unwrap(), ClientConfig::default());
        let mut c = ClientConfig::default();
        c.contexts.insert(
            "local".into(),
            Context {
                endpoints: Some("127.0.0.1:7101".into()),
                token: Some("admin.abc".into()),
                cacert: Some("/ca.pem".into()),
                ..Context::default()
            },
        );
        c.current = Some("local".into());
        c.save(&path).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(
            mode & 0o777,
            0o600,
            "a config with tokens is the user's only"
        );
        let back = ClientConfig::load(&path).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.pick(None).unwrap(), c.contexts.get("local"));
        let e = back.pick(Some("prod")).unwrap_err();
        assert!(e.contains("prod"), "{e}");
        std::fs::write(&path, "current = 1").unwrap();
        let e = ClientConfig::load(&path).unwrap_err();
        assert!(e.contains("not valid"), "{e}");
        assert_eq!(masked("ci.secret"), "ci.****");
    }
}
