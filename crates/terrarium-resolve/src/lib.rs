//! Definition to lock: the exact artifacts an environment version installs, per platform.
//!
//! - conda: rattler's repodata gateway over the definition's channels in order, solved by
//!   resolvo with strict channel priority, against detected or given virtual packages;
//! - PyPI: uv at a pinned version (PATH, or bootstrapped from PyPI), against the conda
//!   environment's Python or the chosen base interpreter, honouring the index options;
//!   every artifact is recorded with its sha256;
//! - user-managed environments are never resolved: their lock records the interpreter and
//!   what is installed in it.
//!
//! The lock itself (types, hash, formats, diff, the check against a definition) is
//! `terrarium-lock`'s; this crate makes one.
//!
//! Design goal: the same inputs give a byte-identical lock (sorted packages, canonical JSON),
//! and resolution happens once per environment version.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use terrarium_spec::Definition;

use terrarium_lock::{Lock, LockKind, LockedPypi, LockedPython, PlatformLock, LOCK_VERSION};

pub mod conda;
mod error;
pub mod pypi;
pub mod python;
pub mod uv;

pub use error::ResolveError;
pub use terrarium_lock::current_platform;

/// How to lock.
#[derive(Debug, Clone, Default)]
pub struct LockOptions {
    /// Conda platform names; empty means this machine's platform.
    pub platforms: Vec<String>,
    /// Virtual packages to assume (`__cuda=12.4`), added to the detected ones.
    pub virtual_packages: Vec<String>,
    /// Terrarium's cache directory (repodata cache, tools).
    pub cache_dir: PathBuf,
}

/// Resolve a system-managed definition.
pub fn lock(definition: &Definition, options: &LockOptions) -> Result<Lock, ResolveError> {
    if definition.python.user_managed {
        return Err(ResolveError::Invalid(
            "user-managed environments are never resolved; their lock records what is installed"
                .into(),
        ));
    }
    let current = current_platform();
    let platforms = if options.platforms.is_empty() {
        vec![current.clone()]
    } else {
        options.platforms.clone()
    };
    let mut tools = BTreeMap::new();
    let mut out = BTreeMap::new();
    let mut uv_cache: Option<uv::Uv> = None;
    for platform in &platforms {
        let subdir: rattler_conda_types::Subdir = platform.parse().map_err(|_| {
            ResolveError::Invalid(format!(
                "unknown platform `{platform}` (e.g. linux-64, osx-arm64, win-64)"
            ))
        })?;
        let mut section = PlatformLock::default();
        let conda_part = definition
            .conda
            .as_ref()
            .filter(|c| !c.dependencies.is_empty());
        if let Some(conda_section) = conda_part {
            let vps = conda::virtual_packages(subdir, &options.virtual_packages)?;
            section.conda = conda::solve(conda_section, subdir, vps, &options.cache_dir)?;
            tools.insert("rattler_solve".to_string(), "resolvo".to_string());
            section.python =
                section
                    .conda
                    .iter()
                    .find(|p| p.name == "python")
                    .map(|p| LockedPython {
                        interpreter: None,
                        version: p.version.clone(),
                    });
        }
        let interpreter = if conda_part.is_none() && *platform == current {
            let interp = python::find(definition)?;
            section.python = Some(LockedPython {
                interpreter: Some(interp.path.display().to_string()),
                version: interp.version.clone(),
            });
            Some(interp)
        } else {
            None
        };
        if !definition.python.pip.is_empty() {
            let uv = match &uv_cache {
                Some(uv) => uv.clone(),
                None => {
                    let found = uv::find(&options.cache_dir.join("tools"))?;
                    tools.insert("uv".to_string(), found.version.clone());
                    uv_cache = Some(found.clone());
                    found
                }
            };
            let python_version = match (&interpreter, &section.python, &definition.python.version) {
                (Some(_), _, _) => None,
                (None, Some(p), _) => Some(p.version.clone()),
                (None, None, Some(v)) => Some(v.clone()),
                (None, None, None) => {
                    return Err(ResolveError::Invalid(if conda_part.is_some() {
                        "PyPI packages in a conda environment need `python` in the conda dependencies".into()
                    } else {
                        format!("locking PyPI packages for {platform} needs python.version in the definition")
                    }))
                }
            };
            let target = match (&interpreter, &python_version) {
                (Some(interp), _) => pypi::Target::Interpreter(interp),
                (None, Some(version)) => pypi::Target::Platform {
                    python_version: version,
                    platform,
                },
                (None, None) => unreachable!(),
            };
            let (packages, pylock) = pypi::lock(
                &uv,
                &definition.python.pip,
                &definition.python.index,
                target,
            )?;
            section.pypi = packages;
            section.pylock = Some(pylock);
            if section.python.is_none() {
                section.python = python_version.map(|version| LockedPython {
                    interpreter: None,
                    version,
                });
            }
        }
        out.insert(platform.clone(), section);
    }
    Ok(Lock {
        lock_version: LOCK_VERSION,
        kind: LockKind::Resolved,
        content_hash: terrarium_spec::content_hash(definition),
        platforms: out,
        tools,
    })
}

/// Record what a user-managed environment's interpreter has installed.
pub fn record_user_managed(definition: &Definition) -> Result<Lock, ResolveError> {
    let interp = python::find(definition)?;
    let pypi = installed_distributions(&interp.path)?;
    let mut platforms = BTreeMap::new();
    platforms.insert(
        current_platform(),
        PlatformLock {
            python: Some(LockedPython {
                interpreter: Some(interp.path.display().to_string()),
                version: interp.version.clone(),
            }),
            pypi,
            ..PlatformLock::default()
        },
    );
    Ok(Lock {
        lock_version: LOCK_VERSION,
        kind: LockKind::UserManaged,
        content_hash: terrarium_spec::content_hash(definition),
        platforms,
        tools: BTreeMap::new(),
    })
}

/// Every distribution an interpreter can import, as (name, version), sorted.
pub fn installed_distributions(python: &std::path::Path) -> Result<Vec<LockedPypi>, ResolveError> {
    let script = "import importlib.metadata as m, json\n\
                  print(json.dumps(sorted({(d.metadata['Name'] or '', d.version) for d in m.distributions()})))";
    let output = Command::new(python)
        .args(["-c", script])
        .output()
        .map_err(|source| ResolveError::Spawn {
            program: python.to_path_buf(),
            source,
        })?;
    if !output.status.success() {
        return Err(ResolveError::Interpreter(format!(
            "{} could not list its packages: {}",
            python.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let pairs: Vec<(String, String)> =
        serde_json::from_slice(&output.stdout).map_err(|e| ResolveError::Format(e.to_string()))?;
    Ok(pairs
        .into_iter()
        .filter(|(name, _)| !name.is_empty())
        .map(|(name, version)| LockedPypi {
            name,
            version,
            url: String::new(),
            sha256: String::new(),
        })
        .collect())
}
