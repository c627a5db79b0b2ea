//! What users name, to a registered version: a reference, or a definition file registered
//! first (as Azure ML does at submission), and the Docker build contexts kept with them.
//! Locking, building and entering the version's environment are
//! [`terrarium_compute::environment`]'s.

use std::path::Path;

use anyhow::{Context as _, Result};
use terrarium_compute::environment;
use terrarium_resolve::LockOptions;
use terrarium_spec::names::Reference;
use terrarium_store::{RegisterRequest, Source, Store, VersionRecord};

use crate::commands::Context;
use crate::printer::{self, user_error};
use crate::workspace;

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
            cache_dir: environment::cache_dir()?,
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

/// For a user-managed environment: warn when its interpreter's packages changed since the
/// lock recorded them.
pub fn check_user_managed(lock: &terrarium_lock::Lock, record: &VersionRecord) {
    if let Some(warning) = environment::user_managed_drift(lock, record) {
        printer::warn(&warning);
    }
}
