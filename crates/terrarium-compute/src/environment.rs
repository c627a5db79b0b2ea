//! From a registered version to a usable environment on this machine: its lock (made once, at
//! first use, for a version registered without one), its prefix in the environment cache
//! (built once per lock), and the variables a process in it gets, `${secret:NAME}` references
//! resolved. `terrarium run`, `env build`, `env shell` and job submission all go through here.
//!
//! Behind the `build` feature: it links the solver and the builder, which the team server does
//! not need.

use std::path::{Path, PathBuf};

use terrarium_env::{Env, EnvCache, Reporter};
use terrarium_lock::{Lock, LockKind};
use terrarium_resolve::LockOptions;
use terrarium_store::{Store, VersionRecord};

/// Terrarium's cache (built environments, conda packages, repodata, tools). Defaults to the
/// platform's cache directory (`~/.cache/terrarium` on Linux).
pub const TERRARIUM_CACHE_DIR: &str = "TERRARIUM_CACHE_DIR";

/// A file of `NAME=value` lines that `${secret:NAME}` references resolve from, after
/// `TERRARIUM_SECRET_<NAME>` variables.
pub const TERRARIUM_SECRETS_FILE: &str = "TERRARIUM_SECRETS_FILE";

/// Prefix of the variables that hold secrets: `${secret:HF_TOKEN}` reads
/// `TERRARIUM_SECRET_HF_TOKEN`.
pub const TERRARIUM_SECRET_PREFIX: &str = "TERRARIUM_SECRET_";

#[derive(Debug, thiserror::Error)]
pub enum EnvironmentError {
    /// Neither `TERRARIUM_CACHE_DIR` nor the platform gives a cache directory.
    #[error("cannot find a cache directory; set {TERRARIUM_CACHE_DIR}")]
    NoCacheDir,
    /// A docker-runtime definition without packages: there is nothing to lock or build here.
    #[error("a docker-runtime environment without packages has nothing to lock or build here")]
    NothingToLock,
    /// Locking a registered version failed.
    #[error("cannot lock {name}:{version}")]
    Locking {
        name: String,
        version: String,
        #[source]
        source: terrarium_resolve::ResolveError,
    },
    /// The lock has no section for this machine.
    #[error("the lock has no packages for this machine's platform ({platform})")]
    NoPlatform { platform: String },
    /// A `${secret:NAME}` reference that no variable and no secrets file answers.
    #[error("secret `{name}` is not set")]
    SecretUnset {
        name: String,
        /// The variable that would have answered it.
        var: String,
    },
    /// `${secret:` without its `}`.
    #[error("unterminated secret reference")]
    SecretUnterminated,
    /// The secrets file named by `TERRARIUM_SECRETS_FILE` could not be read.
    #[error("cannot read the secrets file {}", path.display())]
    SecretsFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Resolve(#[from] terrarium_resolve::ResolveError),
    #[error(transparent)]
    Lock(#[from] terrarium_lock::LockError),
    #[error(transparent)]
    Build(#[from] terrarium_env::EnvError),
    #[error(transparent)]
    Store(#[from] terrarium_store::StoreError),
}

impl EnvironmentError {
    /// Whether the user can fix this by changing what they asked for (exit 2), rather than a
    /// failure of this machine or the workspace (exit 1).
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::NoCacheDir
            | Self::NothingToLock
            | Self::NoPlatform { .. }
            | Self::SecretUnset { .. }
            | Self::SecretUnterminated => true,
            Self::SecretsFile { .. } => false,
            Self::Locking { source, .. } => source.is_user_error(),
            Self::Resolve(err) => err.is_user_error(),
            Self::Lock(err) => err.is_user_error(),
            Self::Build(err) => err.is_user_error(),
            Self::Store(err) => err.is_user_error(),
        }
    }
}

/// Terrarium's cache directory: `TERRARIUM_CACHE_DIR`, else the platform's.
pub fn cache_dir() -> Result<PathBuf, EnvironmentError> {
    if let Some(dir) = std::env::var_os(TERRARIUM_CACHE_DIR).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    Ok(dirs::cache_dir()
        .ok_or(EnvironmentError::NoCacheDir)?
        .join("terrarium"))
}

/// The version's lock and its hash, making the lock now if the version has none (it is then
/// fixed: a version is locked once).
pub fn ensure_lock(
    store: &dyn Store,
    record: &VersionRecord,
    options: &LockOptions,
    reporter: &dyn Reporter,
) -> Result<(Lock, String), EnvironmentError> {
    if let Some(hash) = &record.lock_hash {
        let text = store.get_lock(hash)?;
        return Ok((Lock::from_json(&text)?, hash.clone()));
    }
    let lock = make_lock(&record.definition, options, reporter).map_err(|err| match err {
        EnvironmentError::Resolve(source) => EnvironmentError::Locking {
            name: record.name.clone(),
            version: record.version.clone(),
            source,
        },
        other => other,
    })?;
    let hash = lock.lock_hash();
    let stored = store.set_lock(&record.name, &record.version, &hash, &lock.to_json())?;
    if stored != hash {
        // Another process locked this version first: theirs is the version's lock.
        let text = store.get_lock(&stored)?;
        return Ok((Lock::from_json(&text)?, stored));
    }
    Ok((lock, hash))
}

/// Resolve (system-managed) or record (user-managed) a definition.
pub fn make_lock(
    definition: &terrarium_spec::Definition,
    options: &LockOptions,
    reporter: &dyn Reporter,
) -> Result<Lock, EnvironmentError> {
    if definition.runtime == terrarium_spec::model::Runtime::Docker && !definition.has_packages() {
        return Err(EnvironmentError::NothingToLock);
    }
    reporter.step("resolving");
    Ok(if definition.python.user_managed {
        terrarium_resolve::record_user_managed(definition)?
    } else {
        terrarium_resolve::lock(definition, options)?
    })
}

/// The prefix of a locked version in this machine's environment cache ([`cache_dir`]), built
/// if it is not there.
pub fn materialize(lock: &Lock, reporter: &dyn Reporter) -> Result<Option<Env>, EnvironmentError> {
    materialize_in(lock, &cache_dir()?, reporter)
}

/// The prefix of a locked version in the environment cache at `cache`, built if it is not
/// there (none for a user-managed environment, which Terrarium does not build).
pub fn materialize_in(
    lock: &Lock,
    cache: &Path,
    reporter: &dyn Reporter,
) -> Result<Option<Env>, EnvironmentError> {
    if lock.kind == LockKind::UserManaged {
        return Ok(None);
    }
    let platform = terrarium_lock::current_platform();
    if !lock.platforms.contains_key(&platform) {
        return Err(EnvironmentError::NoPlatform { platform });
    }
    let envs = EnvCache::new(cache);
    if let Some(env) = envs.lookup(lock, &platform)? {
        return Ok(Some(env));
    }
    let uv = find_uv(lock, &platform, cache)?;
    reporter.step("building");
    Ok(Some(envs.get_or_build(
        lock,
        &platform,
        uv.as_ref(),
        reporter,
    )?))
}

/// The uv that building `lock` on `platform` needs (to make a virtual environment or install
/// PyPI packages), found or bootstrapped into `cache`'s tools; none for conda-only locks.
pub fn find_uv(
    lock: &Lock,
    platform: &str,
    cache: &Path,
) -> Result<Option<terrarium_resolve::uv::Uv>, EnvironmentError> {
    let needs_uv = lock
        .platforms
        .get(platform)
        .is_some_and(|p| p.conda.is_empty() || p.pylock.is_some());
    if !needs_uv {
        return Ok(None);
    }
    Ok(Some(terrarium_resolve::uv::find(&cache.join("tools"))?))
}

/// For a user-managed environment: what changed in its interpreter's packages since the lock
/// recorded them, as a warning for people; none when nothing did (or there is nothing to
/// compare).
pub fn user_managed_drift(lock: &Lock, record: &VersionRecord) -> Option<String> {
    let platform = terrarium_lock::current_platform();
    let section = lock.platforms.get(&platform)?;
    let interpreter = section.python.as_ref()?.interpreter.as_ref()?;
    let cache = cache_dir().ok()?;
    match terrarium_resolve::installed_distributions_cached(Path::new(interpreter), &cache) {
        Ok(now) => {
            let before: std::collections::BTreeSet<_> = section
                .pypi
                .iter()
                .map(|p| (p.name.clone(), p.version.clone()))
                .collect();
            let after: std::collections::BTreeSet<_> = now
                .iter()
                .map(|p| (p.name.clone(), p.version.clone()))
                .collect();
            if before == after {
                return None;
            }
            let list = |set: Vec<String>| {
                if set.is_empty() {
                    "none".to_string()
                } else {
                    set.join(", ")
                }
            };
            let added = after
                .difference(&before)
                .map(|(n, v)| format!("{n}=={v}"))
                .collect();
            let removed = before
                .difference(&after)
                .map(|(n, v)| format!("{n}=={v}"))
                .collect();
            Some(format!(
                "the user-managed environment {}:{} changed since it was recorded (added: {}; removed: {})",
                record.name,
                record.version,
                list(added),
                list(removed),
            ))
        }
        Err(err) => Some(format!(
            "cannot check the user-managed interpreter {interpreter}: {err}"
        )),
    }
}

/// The variables a process in the environment built at `prefix` gets (a user-managed one has
/// none): PATH first, the definition's variables with `${secret:NAME}` resolved (never
/// printed).
pub fn process_env(
    record: &VersionRecord,
    lock: &Lock,
    prefix: Option<&Path>,
) -> Result<Vec<(String, String)>, EnvironmentError> {
    let mut vars = Vec::new();
    let path = std::env::var("PATH").unwrap_or_default();
    match prefix {
        Some(prefix) => {
            vars.push((
                "PATH".to_string(),
                format!("{}:{path}", prefix.join("bin").display()),
            ));
            let prefix = prefix.display().to_string();
            if lock.platforms.values().any(|p| !p.conda.is_empty()) {
                vars.push(("CONDA_PREFIX".to_string(), prefix));
            } else {
                vars.push(("VIRTUAL_ENV".to_string(), prefix));
            }
        }
        None => {
            let platform = terrarium_lock::current_platform();
            if let Some(interp) = lock
                .platforms
                .get(&platform)
                .and_then(|p| p.python.as_ref())
                .and_then(|p| p.interpreter.as_ref())
            {
                if let Some(bin) = Path::new(interp).parent() {
                    vars.push(("PATH".to_string(), format!("{}:{path}", bin.display())));
                }
            }
        }
    }
    vars.push((
        "TERRARIUM_ENVIRONMENT".to_string(),
        format!("{}:{}", record.name, record.version),
    ));
    for (key, value) in &record.definition.environment_variables {
        vars.push((key.clone(), resolve_secrets(value)?));
    }
    Ok(vars)
}

/// The values of the secrets a definition's variables refer to, to mask them in stored logs;
/// longest first, so that a secret containing another is masked whole.
pub fn secret_values(record: &VersionRecord) -> Vec<String> {
    let mut values = Vec::new();
    for value in record.definition.environment_variables.values() {
        let mut rest = value.as_str();
        while let Some(start) = rest.find("${secret:") {
            let after = &rest[start + "${secret:".len()..];
            let Some(end) = after.find('}') else { break };
            if let Ok(secret) = lookup_secret(&after[..end]) {
                if !secret.is_empty() {
                    values.push(secret);
                }
            }
            rest = &after[end + 1..];
        }
    }
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    values
}

/// Like [`secret_values`], but `None` when a secret the definition names cannot be read here:
/// text that may hold its value cannot be masked, so it must not be kept where others read it.
pub fn secret_values_all(record: &VersionRecord) -> Option<Vec<String>> {
    for value in record.definition.environment_variables.values() {
        let mut rest = value.as_str();
        while let Some(start) = rest.find("${secret:") {
            let after = &rest[start + "${secret:".len()..];
            let Some(end) = after.find('}') else { break };
            lookup_secret(&after[..end]).ok()?;
            rest = &after[end + 1..];
        }
    }
    Some(secret_values(record))
}

/// Replace `${secret:NAME}` with `$TERRARIUM_SECRET_NAME`, else the secrets file's NAME.
pub fn resolve_secrets(value: &str) -> Result<String, EnvironmentError> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${secret:") {
        out.push_str(&rest[..start]);
        let after = &rest[start + "${secret:".len()..];
        let end = after
            .find('}')
            .ok_or(EnvironmentError::SecretUnterminated)?;
        out.push_str(&lookup_secret(&after[..end])?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn lookup_secret(name: &str) -> Result<String, EnvironmentError> {
    let var = format!("{TERRARIUM_SECRET_PREFIX}{}", name.replace('-', "_"));
    if let Ok(value) = std::env::var(&var) {
        return Ok(value);
    }
    if let Some(file) = std::env::var_os(TERRARIUM_SECRETS_FILE) {
        let path = PathBuf::from(&file);
        let text = std::fs::read_to_string(&path)
            .map_err(|source| EnvironmentError::SecretsFile { path, source })?;
        for line in text.lines() {
            if let Some((key, value)) = line.split_once('=') {
                if key.trim() == name {
                    return Ok(value.trim().to_string());
                }
            }
        }
    }
    Err(EnvironmentError::SecretUnset {
        name: name.to_string(),
        var,
    })
}
