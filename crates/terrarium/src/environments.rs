//! The path from a reference (or a file) to a usable environment: resolve the version, make
//! sure it has its lock (locking once, at first use, if it was registered with `--no-lock`),
//! and build or find its prefix.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use terrarium_env::{Env, EnvCache};
use terrarium_lock::{Lock, LockKind};
use terrarium_resolve::LockOptions;
use terrarium_spec::names::Reference;
use terrarium_store::{RegisterRequest, Source, Store, VersionRecord};

use crate::commands::Context;
use crate::printer::{self, user_error};
use crate::{env_vars, workspace};

/// Terrarium's cache directory.
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(env_vars::TERRARIUM_CACHE_DIR).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    Ok(dirs::cache_dir()
        .context("cannot find a cache directory; set TERRARIUM_CACHE_DIR")?
        .join("terrarium"))
}

/// Lock settings shared by `env create`, `env lock` and `env relock`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LockArgs {
    /// Platforms to lock for, e.g. `linux-64,osx-arm64` [default: this machine's].
    #[arg(long, value_delimiter = ',', value_name = "PLATFORMS")]
    pub platform: Vec<String>,
    /// Assume a virtual package, e.g. `__cuda=12.4` (repeatable).
    #[arg(long = "virtual-package", value_name = "__NAME=VERSION")]
    pub virtual_packages: Vec<String>,
}

impl LockArgs {
    pub fn options(&self) -> Result<LockOptions> {
        Ok(LockOptions {
            platforms: self.platform.clone(),
            virtual_packages: self.virtual_packages.clone(),
            cache_dir: cache_dir()?,
        })
    }
}

/// A reference, or a definition file to register first (as Azure ML does at submission). A
/// text that names a registered environment is a reference, even if a file of that name exists.
///
/// The file is registered under `name` when given, else under its own name; a nameless file (a
/// requirements file, most conda files and Dockerfiles) is registered anonymously, under the
/// name its content gives (`anonymous/HASH`): the same content always reuses that version,
/// and two different files never become versions of one another.
///
/// `arg` names the argument in errors (`--env`, `REFERENCE`).
pub fn resolve_or_register(
    context: &Context,
    store: &dyn Store,
    arg: &str,
    text: &str,
    source_kind: &str,
    name: Option<&str>,
) -> Result<VersionRecord> {
    let path = Path::new(text);
    if name.is_some() && !path.is_file() && !path.is_dir() {
        return Err(user_error(
            format!("--name names the environment a definition file is registered as, and `{text}` is not a file"),
            Some("pass --env FILE --name NAME, or --env NAME[:VERSION] alone"),
        ));
    }
    let name = match name {
        Some(name) => {
            terrarium_spec::names::validate_name(name).map_err(|e| user_error(e, None))?;
            Some(name)
        }
        None => None,
    };
    if let Some(reference) = Reference::parse(text).ok().filter(|_| name.is_none()) {
        match store.resolve(&reference) {
            Ok(record) => return Ok(record),
            Err(err) if !path.exists() => return Err(err.into()),
            Err(_) => {}
        }
    }
    if !path.exists() {
        let reference = Reference::parse(text).map_err(|e| {
            user_error(
                format!(
                    "invalid {arg} `{}`: no such file, and not a reference: {}",
                    e.text.escape_debug(),
                    e.reason
                ),
                Some(&format!(
                    "{arg} is NAME, NAME:VERSION, NAME@LABEL or a definition file"
                )),
            )
        })?;
        return Ok(store.resolve(&reference)?);
    }
    let imported = terrarium_spec::import(path, None)?;
    printer::warnings(&imported.warnings);
    keep_context(store, &imported)?;
    let mut definition = imported.definition;
    if let Some(name) = name {
        definition.name = name.to_string();
    }
    let anonymous = definition.name.is_empty();
    if anonymous {
        definition.name =
            terrarium_spec::names::anonymous_name(&terrarium_spec::content_hash(&definition));
    }
    definition.version = None;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let outcome = store.register(RegisterRequest {
        definition,
        source: Source {
            kind: source_kind.to_string(),
            file: Some(absolute.display().to_string()),
            format: Some(imported.format.name().to_string()),
        },
        parent: None,
        actor: workspace::actor(),
        allow_curated: false,
        force_new: false,
        lock: None,
    })?;
    if outcome.created && anonymous {
        printer::status(&format!(
            "registered {} (nameless) as {}:{}; name it with `terrarium env clone {} NAME`",
            path.display(),
            outcome.record.name,
            outcome.record.version,
            outcome.record.name
        ));
    } else if outcome.created {
        printer::status(&format!(
            "registered {}:{} from {}",
            outcome.record.name,
            outcome.record.version,
            path.display()
        ));
    }
    let _ = context;
    Ok(outcome.record)
}

/// Keep the Docker build context of an imported definition in the workspace, under its
/// digest, before the version that names it is registered: builds then use it from any
/// directory and any machine, and nothing can name a context the workspace lacks.
pub fn keep_context(store: &dyn Store, imported: &terrarium_spec::Imported) -> Result<()> {
    let docker = &imported.definition.docker;
    let (Some(context), Some(digest)) = (&docker.build_context, &docker.build_context_digest)
    else {
        return Ok(());
    };
    if !terrarium_spec::names::is_local_relative_path(context) {
        return Ok(());
    }
    let base = imported
        .files
        .first()
        .and_then(|f| f.parent())
        .unwrap_or(Path::new("."));
    let dir = base.join(context);
    let dockerfile = Path::new(docker.dockerfile_path.as_deref().unwrap_or("Dockerfile"));
    if !dir.is_dir() {
        // A definition that carries its Dockerfile and context digest (an export read back
        // without its context folder): usable if the workspace already has the context.
        return match store.has_context(digest) {
            Ok(true) => Ok(()),
            Ok(false) => Err(user_error(
                format!(
                    "the build context `{context}` ({}) is not there, and this workspace does not have it",
                    dir.display()
                ),
                Some("put the context folder beside the definition, as `env export` writes it"),
            )),
            Err(err) => Err(err.into()),
        };
    }
    // Kept already (every `run` of the same file gets here): no need to pack and send it again.
    if store.has_context(digest)? {
        return Ok(());
    }
    match terrarium_spec::context::pack(&dir, dockerfile)? {
        Some((found, archive)) if found == *digest => {
            store.put_context(digest, &archive)?;
            Ok(())
        }
        Some(_) => Err(user_error(
            format!(
                "the build context {} is not the one the definition names ({digest})",
                dir.display()
            ),
            Some("it changed while it was read, or since it was exported: import the definition from its own folder again"),
        )),
        None => Ok(()),
    }
}

/// Unpack the build context stored with `record` (if it has one) into the empty folder `dir`,
/// checked against its digest: the same context from any directory and any machine.
pub fn unpack_stored_context(store: &dyn Store, record: &VersionRecord, dir: &Path) -> Result<()> {
    let Some(digest) = &record.definition.docker.build_context_digest else {
        return Ok(());
    };
    let archive = store.get_context(digest).map_err(|err| match err {
        terrarium_store::StoreError::NotFound(_) => user_error(
            format!(
                "the build context of {}:{} ({digest}) is not in this workspace",
                record.name, record.version
            ),
            Some("register the definition again from its folder (`terrarium env create -f FILE`): that stores its context"),
        ),
        other => other.into(),
    })?;
    terrarium_spec::context::unpack(&archive, dir, digest).with_context(|| {
        format!(
            "the stored build context of {}:{} is damaged",
            record.name, record.version
        )
    })
}

/// Write a Dockerfile-defined version's build as it was registered into `dir` (created; it
/// must not exist or be empty): its stored build context, checked against its digest, and
/// its Dockerfile at its `dockerfile_path`.
pub fn write_docker_build(store: &dyn Store, record: &VersionRecord, dir: &Path) -> Result<()> {
    let docker = &record.definition.docker;
    let Some(text) = &docker.base_dockerfile else {
        return Err(user_error(
            format!("{}:{} has no Dockerfile", record.name, record.version),
            None,
        ));
    };
    if dir.exists() && std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(user_error(
            format!("{} already exists and is not empty", dir.display()),
            Some("give a new or empty folder"),
        ));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    unpack_stored_context(store, record, dir)?;
    let name = docker.dockerfile_path.as_deref().unwrap_or("Dockerfile");
    if !terrarium_spec::names::is_local_relative_path(name) {
        return Err(user_error(
            format!(
                "the Dockerfile path `{}` leaves its folder",
                name.escape_debug()
            ),
            None,
        ));
    }
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The version's lock, making it now if the version has none (it is then fixed).
pub fn ensure_lock(
    store: &dyn Store,
    record: &VersionRecord,
    options: &LockOptions,
) -> Result<(Lock, String)> {
    if let Some(hash) = &record.lock_hash {
        let text = store.get_lock(hash)?;
        return Ok((Lock::from_json(&text)?, hash.clone()));
    }
    let lock = make_lock(&record.definition, options)
        .with_context(|| format!("cannot lock {}:{}", record.name, record.version))?;
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
pub fn make_lock(definition: &terrarium_spec::Definition, options: &LockOptions) -> Result<Lock> {
    if definition.runtime == terrarium_spec::model::Runtime::Docker && !definition.has_packages() {
        return Err(user_error(
            "a docker-runtime environment without packages has nothing to lock or build here",
            Some("build and run its image: `terrarium image build REF --builder buildah`"),
        ));
    }
    let spinner = printer::Spinner::start("resolving");
    let result = if definition.python.user_managed {
        terrarium_resolve::record_user_managed(definition)
    } else {
        terrarium_resolve::lock(definition, options)
    };
    spinner.finish();
    Ok(result?)
}

/// The prefix of a locked version, built if needed.
pub fn materialize(lock: &Lock) -> Result<Option<Env>> {
    materialize_in(lock, &cache_dir()?)
}

/// As [`materialize`], into the environment cache at `cache` (a compute target's, on a
/// filesystem its nodes share).
pub fn materialize_in(lock: &Lock, cache: &std::path::Path) -> Result<Option<Env>> {
    if lock.kind == LockKind::UserManaged {
        return Ok(None);
    }
    let cache = cache.to_path_buf();
    let platform = terrarium_lock::current_platform();
    if !lock.platforms.contains_key(&platform) {
        return Err(user_error(
            format!("the lock has no packages for this machine's platform ({platform})"),
            Some("relock with --platform including it"),
        ));
    }
    let envs = EnvCache::new(&cache);
    if let Some(env) = envs.lookup(lock, &platform)? {
        return Ok(Some(env));
    }
    let uv = find_uv(lock, &platform, &cache)?;
    let spinner = printer::Spinner::start("building");
    let env = envs.get_or_build(lock, &platform, uv.as_ref(), &spinner);
    spinner.finish();
    Ok(Some(env?))
}

/// The uv that building `lock` on `platform` needs (to make a virtual environment or install
/// PyPI packages), found or bootstrapped into `cache`'s tools; none for conda-only locks.
pub fn find_uv(
    lock: &Lock,
    platform: &str,
    cache: &Path,
) -> Result<Option<terrarium_resolve::uv::Uv>> {
    let needs_uv = lock
        .platforms
        .get(platform)
        .is_some_and(|p| p.conda.is_empty() || p.pylock.is_some());
    if !needs_uv {
        return Ok(None);
    }
    Ok(Some(terrarium_resolve::uv::find(&cache.join("tools"))?))
}

/// For user-managed environments: warn when the interpreter's packages changed since the lock.
pub fn check_user_managed(lock: &Lock, record: &VersionRecord) {
    let platform = terrarium_lock::current_platform();
    let Some(section) = lock.platforms.get(&platform) else {
        return;
    };
    let Some(interpreter) = section.python.as_ref().and_then(|p| p.interpreter.as_ref()) else {
        return;
    };
    match terrarium_resolve::installed_distributions(Path::new(interpreter)) {
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
            if before != after {
                let added: Vec<_> = after
                    .difference(&before)
                    .map(|(n, v)| format!("{n}=={v}"))
                    .collect();
                let removed: Vec<_> = before
                    .difference(&after)
                    .map(|(n, v)| format!("{n}=={v}"))
                    .collect();
                eprintln!(
                    "warning: the user-managed environment {}:{} changed since it was recorded (added: {}; removed: {})",
                    record.name,
                    record.version,
                    if added.is_empty() { "none".into() } else { added.join(", ") },
                    if removed.is_empty() { "none".into() } else { removed.join(", ") },
                );
            }
        }
        Err(err) => {
            eprintln!("warning: cannot check the user-managed interpreter {interpreter}: {err}")
        }
    }
}

/// The variables a process in the environment built at `prefix` gets (a user-managed one has
/// none): PATH first, the definition's variables with `${secret:NAME}` resolved (never
/// printed).
pub fn process_env(
    record: &VersionRecord,
    lock: &Lock,
    prefix: Option<&Path>,
) -> Result<Vec<(String, String)>> {
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

/// The values of the secrets a definition's variables refer to, to mask them in stored logs.
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
    // Longest first, so a secret containing another is masked whole.
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    values
}

/// Replace `${secret:NAME}` with `$TERRARIUM_SECRET_NAME`, else the secrets file's NAME.
pub fn resolve_secrets(value: &str) -> Result<String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${secret:") {
        out.push_str(&rest[..start]);
        let after = &rest[start + "${secret:".len()..];
        let end = after.find('}').context("unterminated secret reference")?;
        let name = &after[..end];
        out.push_str(&lookup_secret(name)?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn lookup_secret(name: &str) -> Result<String> {
    let var = format!(
        "{}{}",
        env_vars::TERRARIUM_SECRET_PREFIX,
        name.replace('-', "_")
    );
    if let Ok(value) = std::env::var(&var) {
        return Ok(value);
    }
    if let Some(file) = std::env::var_os(env_vars::TERRARIUM_SECRETS_FILE) {
        let text = std::fs::read_to_string(&file).with_context(|| {
            format!(
                "cannot read the secrets file {}",
                PathBuf::from(&file).display()
            )
        })?;
        for line in text.lines() {
            if let Some((key, value)) = line.split_once('=') {
                if key.trim() == name {
                    return Ok(value.trim().to_string());
                }
            }
        }
    }
    Err(user_error(
        format!("secret `{name}` is not set"),
        Some(&format!(
            "set {var}, or put `{name}=...` in the file named by {}",
            env_vars::TERRARIUM_SECRETS_FILE
        )),
    ))
}
