//! Finding and opening the workspace, and seeding curated environments into it.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use sha2::{Digest, Sha256};
use terrarium_store::{PostgresStore, RegisterRequest, Source, SqliteStore, Store};

use crate::env_vars;

/// Curated definitions shipped inside the binary: (file name, YAML).
pub const CURATED: &[(&str, &str)] = &[
    (
        "python-minimal.yml",
        include_str!("../../../curated/python-minimal.yml"),
    ),
    ("sklearn.yml", include_str!("../../../curated/sklearn.yml")),
    (
        "pytorch-cpu.yml",
        include_str!("../../../curated/pytorch-cpu.yml"),
    ),
    (
        "tensorflow-cpu.yml",
        include_str!("../../../curated/tensorflow-cpu.yml"),
    ),
    (
        "lightgbm-xgboost.yml",
        include_str!("../../../curated/lightgbm-xgboost.yml"),
    ),
    (
        "inference-minimal.yml",
        include_str!("../../../curated/inference-minimal.yml"),
    ),
    ("spark.yml", include_str!("../../../curated/spark.yml")),
];

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

/// Whether the workspace setting names a PostgreSQL database rather than a directory.
pub fn is_database_url(dir: &std::path::Path) -> bool {
    let text = dir.to_string_lossy();
    text.starts_with("postgres://") || text.starts_with("postgresql://")
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
    let text = dir.to_string_lossy();
    if is_database_url(dir) {
        // Never print the URL: it may hold a password.
        return Ok(Box::new(
            PostgresStore::connect(&text).context("cannot open the PostgreSQL workspace")?,
        ));
    }
    let dir = match text.strip_prefix("sqlite://") {
        Some(path) => PathBuf::from(path),
        None => dir.to_path_buf(),
    };
    Ok(Box::new(SqliteStore::open(&dir).with_context(|| {
        format!("cannot open the workspace in {}", dir.display())
    })?))
}

/// Open the workspace (a directory with SQLite, `postgres://...`, or a server URL) and make
/// sure the curated environments of this binary are in it (a server seeds its own).
pub fn open(flag: Option<PathBuf>) -> Result<Box<dyn Store>> {
    let dir = workspace_dir(flag)?;
    if is_server_url(&dir) {
        return Ok(Box::new(remote(&dir.to_string_lossy())?));
    }
    let store = open_database(&dir)?;
    seed_curated(store.as_ref())?;
    Ok(store)
}

/// Where run logs go: inside a directory workspace, or Terrarium's home for a database or
/// server one (the log is also stored in the workspace when the run ends).
pub fn runs_dir(flag: Option<PathBuf>) -> Result<PathBuf> {
    let dir = workspace_dir(flag)?;
    if is_database_url(&dir) || is_server_url(&dir) {
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

/// The curated definitions, parsed.
pub fn curated_definitions() -> Result<Vec<terrarium_spec::Definition>> {
    CURATED
        .iter()
        .map(|(file, text)| {
            let path = PathBuf::from("curated").join(file);
            let source = terrarium_spec::source::SourceFile::from_text(&path, text);
            let imported = terrarium_spec::formats::native::import_source(&source)
                .with_context(|| format!("curated definition {file} is invalid"))?;
            let mut definition = imported.definition;
            definition.normalize();
            Ok(definition)
        })
        .collect()
}

/// Register curated definitions whose content changed. Cheap when nothing changed: one read of
/// a stored hash of the whole bundle.
pub fn seed_curated(store: &dyn Store) -> Result<()> {
    let mut hasher = Sha256::new();
    for (file, text) in CURATED {
        hasher.update(file.as_bytes());
        hasher.update([0]);
        hasher.update(text.as_bytes());
        hasher.update([0]);
    }
    let bundle = hex::encode(hasher.finalize());
    if store.meta_get("curated_bundle")?.as_deref() == Some(bundle.as_str()) {
        return Ok(());
    }
    for definition in curated_definitions()? {
        store.register(RegisterRequest {
            definition,
            source: Source::new("curated"),
            parent: None,
            actor: "terrarium".to_string(),
            allow_curated: true,
            force_new: false,
            lock: None,
        })?;
    }
    store.meta_set("curated_bundle", &bundle)?;
    Ok(())
}
