//! Finding the workspace from flags, environment variables and the config file, and opening
//! it: a database through `terrarium-store`, a team server through its client.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use terrarium_store::{Location, Store};

use crate::env_vars;

/// The optional config file: `workspace` and `token`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub workspace: Option<String>,
    pub token: Option<String>,
}

/// Read the config file (`$TERRARIUM_CONFIG`, else `~/.config/terrarium/config.toml`), if any.
pub fn config() -> Result<Config> {
    let path = match std::env::var_os(env_vars::TERRARIUM_CONFIG).filter(|v| !v.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => match dirs::config_dir() {
            Some(dir) => dir.join("terrarium").join("config.toml"),
            None => return Ok(Config::default()),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
    };
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

/// The workspace: `--workspace`, else `$TERRARIUM_WORKSPACE`, else the config file's
/// `workspace`, else `$TERRARIUM_HOME`, else the platform's data directory.
pub fn workspace_dir(flag: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(dir) = flag {
        return Ok(dir);
    }
    if let Some(dir) = std::env::var_os(env_vars::TERRARIUM_WORKSPACE).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = config()?.workspace.filter(|w| !w.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os(env_vars::TERRARIUM_HOME).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let data = dirs::data_dir().context("cannot find a data directory; set TERRARIUM_HOME")?;
    Ok(data.join("terrarium"))
}

/// Who is acting: `$TERRARIUM_USER`, `$USER`, `$LOGNAME`, else the login name of this
/// process's user id.
pub fn actor() -> String {
    [env_vars::TERRARIUM_USER, env_vars::USER, env_vars::LOGNAME]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|u| !u.is_empty()))
        .or_else(login_name)
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(unix)]
fn login_name() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").ok()?.uid();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id: u32 = fields.nth(1)?.parse().ok()?;
        (id == uid).then(|| name.to_string())
    })
}

#[cfg(not(unix))]
fn login_name() -> Option<String> {
    None
}

/// Whether the workspace setting names a Terrarium server.
pub fn is_server_url(dir: &std::path::Path) -> bool {
    terrarium_server::client::is_server_url(&dir.to_string_lossy())
}

/// The token for a server workspace: `$TERRARIUM_TOKEN`, else the config file's `token`.
pub fn token() -> Result<Option<String>> {
    if let Some(token) = std::env::var(env_vars::TERRARIUM_TOKEN)
        .ok()
        .filter(|t| !t.is_empty())
    {
        return Ok(Some(token));
    }
    Ok(config()?.token)
}

/// A client for a server workspace.
pub fn remote(url: &str) -> Result<terrarium_server::client::RemoteStore> {
    Ok(terrarium_server::client::RemoteStore::new(url, token()?)?)
}

/// Open a workspace database directly (a directory with SQLite, or `postgres://...`), without
/// seeding: for the server and for bootstrapping tokens.
pub fn open_database(dir: &std::path::Path) -> Result<Box<dyn Store>> {
    let location = Location::parse(dir.as_os_str());
    location.open().with_context(|| match &location {
        // Never print the URL: it may hold a password.
        Location::Postgres(_) => "cannot open the PostgreSQL workspace".to_string(),
        Location::Sqlite(dir) => format!("cannot open the workspace in {}", dir.display()),
    })
}

/// Open the workspace (a directory with SQLite, `postgres://...`, or a server URL) and make
/// sure the curated environments of this binary are in it (a server seeds its own).
pub fn open(flag: Option<PathBuf>) -> Result<Box<dyn Store>> {
    let dir = workspace_dir(flag)?;
    if is_server_url(&dir) {
        return Ok(Box::new(remote(&dir.to_string_lossy())?));
    }
    let store = open_database(&dir)?;
    terrarium_store::curated::seed(store.as_ref())?;
    Ok(store)
}

/// Where run logs go: inside a directory workspace, or Terrarium's home for a database or
/// server one (the log is also stored in the workspace when the run ends).
pub fn runs_dir(flag: Option<PathBuf>) -> Result<PathBuf> {
    let dir = workspace_dir(flag)?;
    if terrarium_store::is_database_url(&dir.to_string_lossy()) || is_server_url(&dir) {
        let home = match std::env::var_os(env_vars::TERRARIUM_HOME).filter(|v| !v.is_empty()) {
            Some(home) => PathBuf::from(home),
            None => dirs::data_dir()
                .context("cannot find a data directory; set TERRARIUM_HOME")?
                .join("terrarium"),
        };
        return Ok(home.join("runs"));
    }
    Ok(dir.join("runs"))
}
