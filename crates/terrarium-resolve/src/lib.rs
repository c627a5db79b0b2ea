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
    Ok(list_distributions(python)?.distributions)
}

/// What an interpreter's packages were, and where it looked for them: the directories of its
/// `sys.path` with their modification times, and its own (a package installed or removed, or
/// the interpreter replaced, changes one of them).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Listing {
    interpreter: (String, u128),
    dirs: Vec<(String, u128)>,
    distributions: Vec<LockedPypi>,
}

fn modified_ns(path: &std::path::Path) -> Option<u128> {
    std::fs::metadata(path)
        .ok()?
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_nanos())
}

impl Listing {
    fn is_current(&self, python: &std::path::Path) -> bool {
        self.interpreter.0 == python.display().to_string()
            && modified_ns(python) == Some(self.interpreter.1)
            && self.dirs.iter().all(|(dir, ns)| {
                let path = std::path::Path::new(dir);
                let now = if path.is_dir() {
                    modified_ns(path)
                } else {
                    Some(0)
                };
                now == Some(*ns)
            })
    }
}

fn list_distributions(python: &std::path::Path) -> Result<Listing, ResolveError> {
    // The directories are taken before the packages, so that a package installed in between
    // makes the listing stale rather than wrong. The working directory (`''`) is not one.
    // Site directories that do not exist yet are kept too (as 0): one made later (a first
    // `pip install --user`) joins `sys.path`.
    let script = "import importlib.metadata as m, json, os, site, sys\n\
                  paths = [p for p in sys.path if p and os.path.isdir(p)]\n\
                  found = set(paths)\n\
                  found.update(getattr(site, 'getsitepackages', lambda: [])())\n\
                  found.add(getattr(site, 'getusersitepackages', lambda: '')())\n\
                  dirs = [(p, os.stat(p).st_mtime_ns if os.path.isdir(p) else 0) for p in sorted(found) if p]\n\
                  found = sorted({(d.metadata['Name'] or '', d.version) for d in m.distributions(path=paths)})\n\
                  print(json.dumps({'dirs': dirs, 'distributions': found}))";
    let interpreter_ns = modified_ns(python).unwrap_or(0);
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
    #[derive(serde::Deserialize)]
    struct Answer {
        dirs: Vec<(String, u128)>,
        distributions: Vec<(String, String)>,
    }
    let answer: Answer =
        serde_json::from_slice(&output.stdout).map_err(|e| ResolveError::Format(e.to_string()))?;
    Ok(Listing {
        interpreter: (python.display().to_string(), interpreter_ns),
        dirs: answer.dirs,
        distributions: answer
            .distributions
            .into_iter()
            .filter(|(name, _)| !name.is_empty())
            .map(|(name, version)| LockedPypi {
                name,
                version,
                url: String::new(),
                sha256: String::new(),
            })
            .collect(),
    })
}

/// [`installed_distributions`], remembered in `cache_dir` while none of the interpreter's
/// package directories, nor the interpreter, has changed: a user-managed environment's drift
/// check at every run then reads a few directory times instead of starting the interpreter.
pub fn installed_distributions_cached(
    python: &std::path::Path,
    cache_dir: &std::path::Path,
) -> Result<Vec<LockedPypi>, ResolveError> {
    let key = {
        // FNV-1a of the interpreter's path: a file name, not a secret.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in python.as_os_str().as_encoded_bytes() {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{hash:016x}.json")
    };
    let dir = cache_dir.join("interpreters");
    let file = dir.join(key);
    if let Some(listing) = std::fs::read(&file)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Listing>(&bytes).ok())
        .filter(|listing| listing.is_current(python))
    {
        return Ok(listing.distributions);
    }
    let listing = list_distributions(python)?;
    // Best effort: a cache that cannot be written is asked again next time.
    if std::fs::create_dir_all(&dir).is_ok() {
        if let Ok(temp) = tempfile::NamedTempFile::new_in(&dir) {
            if serde_json::to_writer(&temp, &listing).is_ok() {
                let _ = temp.persist(&file);
            }
        }
    }
    Ok(listing.distributions)
}
