//! Lock to prefix: a content-addressed cache of built environments.
//!
//! - Keyed by lock hash, platform and interpreter: identical locks share one prefix.
//! - Built from the lock alone (never re-resolved). Files are hardlinked from the package
//!   caches: rattler's for conda packages, uv's for wheels.
//! - Atomic: a prefix is built in a temporary directory beside the cache and renamed into
//!   place after its completion marker is written; a crash or `kill -9` leaves only a
//!   temporary directory, which the next build removes. Conda files are patched for the final
//!   path while being written to the temporary one (rattler's alternative target prefix).
//! - Concurrent builders of one prefix serialize on a per-key file lock and the work is done
//!   once. Processes using a prefix hold a shared lock on it, so `gc` never removes one in use.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use terrarium_lock::uv::Uv;
use terrarium_lock::{Lock, LockKind, PlatformLock};
use terrarium_spec::error::error_chain;

mod error;
pub mod pack;
mod verify;

/// Make a helper process (uv) die with us: a `kill -9` of Terrarium mid-build must not leave
/// an orphan still writing into the temporary prefix.
fn die_with_parent(cmd: &mut std::process::Command) -> &mut std::process::Command {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd
}

pub use error::{EnvError, PackError};
pub use verify::{verify, VerifyReport};

/// Where the marker and metadata live inside a prefix.
pub const META_DIR: &str = ".terrarium";
const MARKER: &str = "env.json";
const LAST_USED: &str = "last-used";

/// What the completion marker records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvMeta {
    pub key: String,
    pub lock_hash: String,
    pub platform: String,
    pub prefix: String,
    pub built_at_unix: u64,
    pub build_seconds: f64,
}

/// A built environment, held in use until dropped.
#[derive(Debug)]
pub struct Env {
    pub prefix: PathBuf,
    pub key: String,
    /// True when this call built it, false when it was already in the cache.
    pub built: bool,
    /// Shared lock that keeps `gc` away while the environment is in use.
    _in_use: File,
}

impl Env {
    /// The environment's `bin` directory (first on PATH when running in it).
    pub fn bin_dir(&self) -> PathBuf {
        self.prefix.join("bin")
    }

    pub fn python(&self) -> PathBuf {
        self.prefix.join("bin").join("python")
    }
}

/// Progress of a build, for a spinner or a log.
pub trait Reporter {
    fn step(&self, message: &str);
}

/// A reporter that says nothing.
pub struct Quiet;

impl Reporter for Quiet {
    fn step(&self, _message: &str) {}
}

/// The cache of built environments under `root` (usually `$TERRARIUM_CACHE_DIR/envs`).
#[derive(Debug, Clone)]
pub struct EnvCache {
    root: PathBuf,
    /// rattler's package cache.
    pkgs: PathBuf,
}

/// One cached environment, for `cache list`.
#[derive(Debug, Clone, Serialize)]
pub struct CacheEntry {
    pub key: String,
    pub prefix: String,
    pub lock_hash: Option<String>,
    pub platform: Option<String>,
    pub size_bytes: u64,
    /// Milliseconds since the Unix epoch.
    pub last_used_unix_ms: u64,
    pub in_use: bool,
    pub complete: bool,
}

impl EnvCache {
    pub fn new(cache_dir: &Path) -> Self {
        Self {
            root: cache_dir.join("envs"),
            pkgs: cache_dir.join("pkgs"),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The cache key of a lock on a platform.
    pub fn key(lock: &Lock, platform: &str) -> String {
        let interpreter = lock
            .platforms
            .get(platform)
            .and_then(|p| p.python.as_ref())
            .and_then(|p| p.interpreter.clone())
            .unwrap_or_default();
        let mut hasher = Sha256::new();
        for part in [lock.lock_hash().as_str(), platform, interpreter.as_str()] {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        hex::encode(hasher.finalize())[..24].to_string()
    }

    fn lock_file(&self, key: &str) -> Result<File, EnvError> {
        std::fs::create_dir_all(&self.root)
            .map_err(|e| EnvError::io(&self.root, "cannot create", e))?;
        let path = self.root.join(format!("{key}.lock"));
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| EnvError::io(&path, "cannot open", e))
    }

    /// Install `lock`'s packages for `platform` into `staging` as they must be at
    /// `target_prefix` (an image's in-image path): conda packages are linked for that prefix
    /// and no package script runs. Nothing is cached; the caller owns `staging`.
    pub fn install_into(
        &self,
        lock: &Lock,
        platform: &str,
        staging: &Path,
        target_prefix: &Path,
        uv: Option<&Uv>,
        reporter: &dyn Reporter,
    ) -> Result<(), EnvError> {
        let section = lock
            .platforms
            .get(platform)
            .ok_or_else(|| EnvError::Build(format!("the lock has no packages for {platform}")))?;
        self.install(
            section,
            platform,
            staging,
            target_prefix,
            uv,
            reporter,
            None,
        )
    }

    /// The environment for `lock` on `platform`, building it if it is not cached.
    pub fn get_or_build(
        &self,
        lock: &Lock,
        platform: &str,
        uv: Option<&Uv>,
        reporter: &dyn Reporter,
    ) -> Result<Env, EnvError> {
        self.get_or_build_from(lock, platform, uv, reporter, None)
    }

    /// The environment for a pack's lock on `platform`, built from the pack's files alone if
    /// it is not cached, exactly as [`Self::get_or_build`] builds it. The whole pack is checked
    /// first, whether or not the environment is cached; a pack that does not match its lock is
    /// refused before anything is built, and its files are not kept.
    pub fn get_or_build_from_pack(
        &self,
        pack: &pack::Pack,
        platform: &str,
        uv: Option<&Uv>,
        reporter: &dyn Reporter,
    ) -> Result<Env, EnvError> {
        check_pack_platform(pack, platform)?;
        let lock = pack.lock();
        // Already built: check the pack without writing its files anywhere.
        if is_complete(&self.root.join(Self::key(lock, platform))) {
            reporter.step("checking the pack");
            pack.check()?;
            if let Some(env) = self.lookup(lock, platform)? {
                return Ok(env);
            }
        }
        reporter.step(&format!(
            "checking and unpacking {} files",
            pack.manifest().files.len()
        ));
        std::fs::create_dir_all(&self.root)
            .map_err(|e| EnvError::io(&self.root, "cannot create", e))?;
        let files = Staging::new(&self.root)?;
        pack.unpack_files(files.path())?;
        self.get_or_build_from(lock, platform, uv, reporter, Some(files.path()))
    }

    /// Build a pack's environment into `prefix`, outside the cache: `prefix` must not exist
    /// or be empty. It is built beside `prefix` and moved into place when complete; the pack is
    /// checked whole before anything is built.
    pub fn build_pack_into(
        &self,
        pack: &pack::Pack,
        platform: &str,
        prefix: &Path,
        uv: Option<&Uv>,
        reporter: &dyn Reporter,
    ) -> Result<EnvMeta, EnvError> {
        check_pack_platform(pack, platform)?;
        let lock = pack.lock();
        if lock.kind == LockKind::UserManaged {
            return Err(PackError::UserManaged.into());
        }
        if prefix.exists()
            && std::fs::read_dir(prefix)
                .map_err(|e| EnvError::io(prefix, "cannot read", e))?
                .next()
                .is_some()
        {
            return Err(PackError::PrefixNotEmpty(prefix.to_path_buf()).into());
        }
        let prefix =
            std::path::absolute(prefix).map_err(|e| EnvError::io(prefix, "cannot resolve", e))?;
        let (Some(parent), Some(name)) = (prefix.parent(), prefix.file_name()) else {
            return Err(PackError::PrefixNotEmpty(prefix.clone()).into());
        };
        std::fs::create_dir_all(parent).map_err(|e| EnvError::io(parent, "cannot create", e))?;
        let started = std::time::Instant::now();
        reporter.step(&format!(
            "checking and unpacking {} files",
            pack.manifest().files.len()
        ));
        let files = Staging::new(parent)?;
        pack.unpack_files(files.path())?;
        let section = lock.platforms.get(platform).ok_or_else(|| {
            EnvError::Build(format!("the lock has no packages for platform {platform}"))
        })?;
        let tmp = parent.join(format!(
            ".{}.tmp-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&tmp);
        let result = self
            .install(
                section,
                platform,
                &tmp,
                &prefix,
                uv,
                reporter,
                Some(files.path()),
            )
            .and_then(|()| {
                write_marker(
                    &tmp,
                    &prefix,
                    lock,
                    platform,
                    &Self::key(lock, platform),
                    started,
                )
            });
        let meta = match result {
            Ok(meta) => meta,
            Err(err) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(err);
            }
        };
        if prefix.exists() {
            // Empty (checked above): rename cannot replace it on every filesystem.
            let _ = std::fs::remove_dir(&prefix);
        }
        if let Err(e) = std::fs::rename(&tmp, &prefix) {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(EnvError::io(
                &prefix,
                "cannot move the built environment into",
                e,
            ));
        }
        Ok(meta)
    }

    /// As [`Self::get_or_build`]; a build installs from the package files under `files` (a
    /// checked pack's) and never from the network.
    fn get_or_build_from(
        &self,
        lock: &Lock,
        platform: &str,
        uv: Option<&Uv>,
        reporter: &dyn Reporter,
        files: Option<&Path>,
    ) -> Result<Env, EnvError> {
        let key = Self::key(lock, platform);
        let prefix = self.root.join(&key);
        let guard = self.lock_file(&key)?;
        // Fast path: hold it shared, then check that it is complete.
        guard
            .lock_shared()
            .map_err(|e| EnvError::io(&prefix, "cannot lock", e))?;
        if is_complete(&prefix) {
            touch(&prefix);
            return Ok(Env {
                prefix,
                key,
                built: false,
                _in_use: guard,
            });
        }
        guard
            .unlock()
            .map_err(|e| EnvError::io(&prefix, "cannot unlock", e))?;
        guard
            .lock()
            .map_err(|e| EnvError::io(&prefix, "cannot lock", e))?;
        // Another process may have built it while we waited.
        let built = if is_complete(&prefix) {
            false
        } else {
            self.build(lock, platform, &key, uv, reporter, files)?;
            true
        };
        guard
            .unlock()
            .map_err(|e| EnvError::io(&prefix, "cannot unlock", e))?;
        guard
            .lock_shared()
            .map_err(|e| EnvError::io(&prefix, "cannot lock", e))?;
        if !is_complete(&prefix) {
            return Err(EnvError::Build(format!(
                "{} vanished after it was built",
                prefix.display()
            )));
        }
        touch(&prefix);
        Ok(Env {
            prefix,
            key,
            built,
            _in_use: guard,
        })
    }

    /// The environment if it is cached and complete, without building.
    pub fn lookup(&self, lock: &Lock, platform: &str) -> Result<Option<Env>, EnvError> {
        let key = Self::key(lock, platform);
        let prefix = self.root.join(&key);
        let guard = self.lock_file(&key)?;
        guard
            .lock_shared()
            .map_err(|e| EnvError::io(&prefix, "cannot lock", e))?;
        if !is_complete(&prefix) {
            return Ok(None);
        }
        touch(&prefix);
        Ok(Some(Env {
            prefix,
            key,
            built: false,
            _in_use: guard,
        }))
    }

    /// Build under the exclusive lock: temporary directory, install, marker, rename.
    fn build(
        &self,
        lock: &Lock,
        platform: &str,
        key: &str,
        uv: Option<&Uv>,
        reporter: &dyn Reporter,
        files: Option<&Path>,
    ) -> Result<(), EnvError> {
        let started = std::time::Instant::now();
        let section = lock.platforms.get(platform).ok_or_else(|| {
            EnvError::Build(format!("the lock has no packages for platform {platform}"))
        })?;
        if lock.kind == LockKind::UserManaged {
            return Err(EnvError::Build(
                "user-managed environments are not built by Terrarium".into(),
            ));
        }
        let prefix = self.root.join(key);
        // Leftovers of a crashed build: an incomplete prefix or temporary directories.
        if prefix.exists() {
            std::fs::remove_dir_all(&prefix)
                .map_err(|e| EnvError::io(&prefix, "cannot remove the incomplete", e))?;
        }
        self.remove_temporaries(key);
        let tmp = self.root.join(format!(".tmp-{key}-{}", std::process::id()));
        let result = self
            .install(section, platform, &tmp, &prefix, uv, reporter, files)
            .and_then(|()| write_marker(&tmp, &prefix, lock, platform, key, started));
        let meta = match result {
            Ok(meta) => meta,
            Err(err) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(err);
            }
        };
        std::fs::rename(&tmp, &prefix)
            .map_err(|e| EnvError::io(&prefix, "cannot move the built environment into", e))?;
        reporter.step(&format!(
            "built {} in {:.2}s",
            prefix.display(),
            meta.build_seconds
        ));
        Ok(())
    }

    /// Install `section` into `tmp` as it must be at `prefix`. With `files` (a checked pack's
    /// package files), conda packages and wheels come from there and nothing from the network.
    #[allow(clippy::too_many_arguments)]
    fn install(
        &self,
        section: &PlatformLock,
        platform: &str,
        tmp: &Path,
        prefix: &Path,
        uv: Option<&Uv>,
        reporter: &dyn Reporter,
        files: Option<&Path>,
    ) -> Result<(), EnvError> {
        let has_conda = !section.conda.is_empty();
        if has_conda {
            reporter.step(&format!("linking {} conda packages", section.conda.len()));
            let records = section.conda_records()?;
            let subdir: rattler_conda_types::Subdir = platform
                .parse()
                .map_err(|_| EnvError::Build(format!("unknown platform {platform}")))?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| EnvError::io(tmp, "cannot start the async runtime for", e))?;
            let cache = rattler_cache::package_cache::PackageCache::new(&self.pkgs);
            runtime.block_on(async {
                if let Some(files) = files {
                    // Into the package cache under the keys the installer looks up, so
                    // that it finds every package there and fetches none.
                    let mut tasks = tokio::task::JoinSet::new();
                    for record in &records {
                        let cache = cache.clone();
                        let path = files
                            .join(pack::CONDA_DIR)
                            .join(record.identifier.to_file_name());
                        let package = record.package_record.clone();
                        tasks.spawn(async move {
                            cache
                                .get_or_fetch_from_path(&path, Some(&package), None)
                                .await
                                .map(|_| ())
                        });
                    }
                    while let Some(result) = tasks.join_next().await {
                        result
                            .map_err(|e| EnvError::Build(format!("conda unpack failed: {e}")))?
                            .map_err(|e| {
                                EnvError::Build(format!("conda unpack failed: {}", error_chain(&e)))
                            })?;
                    }
                }
                rattler::install::Installer::new()
                    .with_package_cache(cache)
                    .with_target_platform(subdir)
                    .with_alternative_target_prefix(prefix)
                    .with_execute_link_scripts(false)
                    .install(tmp, records)
                    .await
                    .map_err(|e| {
                        EnvError::Build(format!("conda install failed: {}", error_chain(&e)))
                    })
            })?;
        } else {
            let python = section
                .python
                .as_ref()
                .and_then(|p| p.interpreter.clone())
                .ok_or_else(|| EnvError::Build("the lock names no base interpreter".into()))?;
            let uv =
                uv.ok_or_else(|| EnvError::Build("uv is needed to create the environment".into()))?;
            reporter.step("creating the virtual environment");
            let output = die_with_parent(&mut uv.command())
                .args([
                    "venv",
                    "--quiet",
                    "--relocatable",
                    "--no-project",
                    "--python",
                ])
                .arg(&python)
                .arg(tmp)
                .output()
                .map_err(|e| EnvError::io(&uv.path, "cannot run", e))?;
            if !output.status.success() {
                return Err(EnvError::Build(format!(
                    "uv venv failed: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                )));
            }
            // With --relocatable every activate script finds its own directory but the csh
            // one, which names `tmp`: name the prefix instead, so that the same lock builds the
            // same files wherever and whenever it is built.
            let csh = tmp.join("bin").join("activate.csh");
            if let Ok(text) = std::fs::read_to_string(&csh) {
                let temporary = tmp.display().to_string();
                if text.contains(&temporary) {
                    std::fs::write(
                        &csh,
                        text.replace(&temporary, &prefix.display().to_string()),
                    )
                    .map_err(|e| EnvError::io(&csh, "cannot write", e))?;
                }
            }
        }
        if let Some(pylock) = &section.pylock {
            let uv =
                uv.ok_or_else(|| EnvError::Build("uv is needed to install PyPI packages".into()))?;
            reporter.step(&format!("installing {} PyPI packages", section.pypi.len()));
            let meta_dir = tmp.join(META_DIR);
            std::fs::create_dir_all(&meta_dir)
                .map_err(|e| EnvError::io(&meta_dir, "cannot create", e))?;
            let pylock_path = meta_dir.join("pylock.toml");
            std::fs::write(&pylock_path, pylock)
                .map_err(|e| EnvError::io(&pylock_path, "cannot write", e))?;
            let mut command = uv.command();
            command.args([
                "pip",
                "sync",
                "--quiet",
                "--preview-features",
                "pylock",
                "--python",
            ]);
            command.arg(tmp.join("bin").join("python"));
            match files {
                Some(files) => {
                    // The pack's wheels, named relative to this pylock beside them.
                    let local = files.join("pylock.toml");
                    std::fs::write(&local, pack::local_pylock(section)?)
                        .map_err(|e| EnvError::io(&local, "cannot write", e))?;
                    command.args(["--offline", "--no-index"]).arg(&local);
                }
                None => {
                    command.arg(&pylock_path);
                }
            }
            let output = die_with_parent(&mut command)
                .output()
                .map_err(|e| EnvError::io(&uv.path, "cannot run", e))?;
            if !output.status.success() {
                return Err(EnvError::Build(format!(
                    "installing the locked PyPI packages failed: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                )));
            }
            verify::drop_uv_cache_info(tmp)?;
            if has_conda {
                // uv wrote entry points for the temporary path; point them at the final one.
                verify::relocate_scripts(tmp, prefix)?;
            }
        }
        Ok(())
    }

    fn remove_temporaries(&self, key: &str) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(&format!(".tmp-{key}-"))
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    /// Every cached environment.
    pub fn list(&self) -> Result<Vec<CacheEntry>, EnvError> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Ok(out);
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let path = entry.path();
            if !path.is_dir() || name.starts_with('.') {
                continue;
            }
            let meta: Option<EnvMeta> = std::fs::read(path.join(META_DIR).join(MARKER))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let in_use = match self.lock_file(&name) {
                Ok(f) => match f.try_lock() {
                    Ok(()) => {
                        let _ = f.unlock();
                        false
                    }
                    Err(_) => true,
                },
                Err(_) => false,
            };
            out.push(CacheEntry {
                key: name,
                prefix: path.display().to_string(),
                lock_hash: meta.as_ref().map(|m| m.lock_hash.clone()),
                platform: meta.as_ref().map(|m| m.platform.clone()),
                size_bytes: disk_usage(&path),
                last_used_unix_ms: last_used(&path),
                in_use,
                complete: meta.is_some(),
            });
        }
        out.sort_by(|a, b| {
            b.last_used_unix_ms
                .cmp(&a.last_used_unix_ms)
                .then(a.key.cmp(&b.key))
        });
        Ok(out)
    }

    /// Remove least recently used environments until the cache fits `budget_bytes`; never one in
    /// use. Incomplete prefixes and temporaries of dead builds go first. Returns what was removed.
    pub fn gc(&self, budget_bytes: u64) -> Result<Vec<CacheEntry>, EnvError> {
        let mut entries = self.list()?;
        let mut total: u64 = entries.iter().map(|e| e.size_bytes).sum();
        // Oldest first; incomplete ones before everything else.
        entries.sort_by(|a, b| {
            a.complete
                .cmp(&b.complete)
                .then(a.last_used_unix_ms.cmp(&b.last_used_unix_ms))
        });
        let mut removed = Vec::new();
        for entry in entries {
            if total <= budget_bytes && entry.complete {
                break;
            }
            let guard = self.lock_file(&entry.key)?;
            if guard.try_lock().is_err() {
                continue; // in use or being built
            }
            let path = PathBuf::from(&entry.prefix);
            // Move aside first so that a crash mid-delete never leaves a half prefix that
            // still has its marker.
            let doomed = self
                .root
                .join(format!(".gc-{}-{}", entry.key, std::process::id()));
            std::fs::rename(&path, &doomed).map_err(|e| EnvError::io(&path, "cannot remove", e))?;
            let _ = std::fs::remove_dir_all(&doomed);
            let _ = guard.unlock();
            total = total.saturating_sub(entry.size_bytes);
            removed.push(entry);
        }
        // Temporaries of builds that died.
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                if name.starts_with(".unpack-") {
                    // A pack's files, staged by an unpack that died (a live one holds its lock).
                    if Staging::is_abandoned(&entry.path()) {
                        let _ = std::fs::remove_dir_all(entry.path());
                    }
                } else if name.starts_with(".gc-") || name.starts_with(".tmp-") {
                    let key = name
                        .trim_start_matches(".tmp-")
                        .trim_start_matches(".gc-")
                        .split('-')
                        .next()
                        .unwrap_or("")
                        .to_string();
                    if let Ok(guard) = self.lock_file(&key) {
                        if guard.try_lock().is_ok() {
                            let _ = std::fs::remove_dir_all(entry.path());
                            let _ = guard.unlock();
                        }
                    }
                }
            }
        }
        Ok(removed)
    }
}

/// Write the completion marker (and the lock) into `tmp`, the prefix being built for `prefix`.
fn write_marker(
    tmp: &Path,
    prefix: &Path,
    lock: &Lock,
    platform: &str,
    key: &str,
    started: std::time::Instant,
) -> Result<EnvMeta, EnvError> {
    let meta = EnvMeta {
        key: key.to_string(),
        lock_hash: lock.lock_hash(),
        platform: platform.to_string(),
        prefix: prefix.display().to_string(),
        built_at_unix: unix_now(),
        build_seconds: started.elapsed().as_secs_f64(),
    };
    let meta_dir = tmp.join(META_DIR);
    std::fs::create_dir_all(&meta_dir).map_err(|e| EnvError::io(&meta_dir, "cannot create", e))?;
    std::fs::write(meta_dir.join("lock.json"), lock.to_json())
        .map_err(|e| EnvError::io(&meta_dir, "cannot write", e))?;
    let marker = meta_dir.join(MARKER);
    let file = File::create(&marker).map_err(|e| EnvError::io(&marker, "cannot write", e))?;
    serde_json::to_writer_pretty(&file, &meta).map_err(|e| EnvError::Build(e.to_string()))?;
    file.sync_all()
        .map_err(|e| EnvError::io(&marker, "cannot sync", e))?;
    Ok(meta)
}

fn check_pack_platform(pack: &pack::Pack, platform: &str) -> Result<(), EnvError> {
    if pack.platform() != platform {
        return Err(PackError::WrongPlatform {
            pack: pack.platform().to_string(),
            wanted: platform.to_string(),
        }
        .into());
    }
    Ok(())
}

/// A directory a pack's files are unpacked into, removed when dropped. It holds a lock on
/// itself while in use, so that `gc` removes only those of unpacks that died.
struct Staging {
    dir: tempfile::TempDir,
    _lock: File,
}

impl Staging {
    fn new(parent: &Path) -> Result<Self, EnvError> {
        let dir = tempfile::Builder::new()
            .prefix(".unpack-")
            .tempdir_in(parent)
            .map_err(|e| EnvError::io(parent, "cannot write in", e))?;
        let lock =
            File::open(dir.path()).map_err(|e| EnvError::io(dir.path(), "cannot open", e))?;
        lock.lock()
            .map_err(|e| EnvError::io(dir.path(), "cannot lock", e))?;
        Ok(Self { dir, _lock: lock })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn is_abandoned(dir: &Path) -> bool {
        File::open(dir).is_ok_and(|f| f.try_lock().is_ok())
    }
}

fn is_complete(prefix: &Path) -> bool {
    prefix.join(META_DIR).join(MARKER).is_file()
}

fn touch(prefix: &Path) {
    let _ = std::fs::write(
        prefix.join(META_DIR).join(LAST_USED),
        unix_now_millis().to_string(),
    );
}

fn unix_now_millis() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn last_used(prefix: &Path) -> u64 {
    std::fs::read_to_string(prefix.join(META_DIR).join(LAST_USED))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Bytes on disk, counting each hardlinked inode once per environment.
fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if seen.insert((meta.dev(), meta.ino())) {
                total += meta.blocks() * 512;
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pack's staged files are removed by `gc` only once their unpack has died.
    #[test]
    fn gc_removes_the_staging_of_dead_unpacks_only() {
        let dir = tempfile::tempdir().unwrap();
        let cache = EnvCache::new(dir.path());
        std::fs::create_dir_all(cache.root()).unwrap();
        let live = Staging::new(cache.root()).unwrap();
        let dead = cache.root().join(".unpack-dead");
        std::fs::create_dir_all(dead.join("wheels")).unwrap();
        cache.gc(0).unwrap();
        assert!(
            live.path().is_dir(),
            "an unpack in progress keeps its files"
        );
        assert!(!dead.exists(), "a dead unpack's files are removed");
        let path = live.path().to_path_buf();
        drop(live);
        assert!(!path.exists(), "an unpack removes its own files");
    }
}
