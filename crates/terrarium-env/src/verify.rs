//! Checking a prefix against its lock, with the installers' own file records: conda's
//! `conda-meta/*.json` (`paths_data` hashes) and each wheel's `RECORD` (PEP 376/627).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};
use terrarium_lock::Lock;

use crate::EnvError;

#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub prefix: String,
    pub packages_checked: usize,
    pub files_checked: usize,
    /// Each problem found; empty when the prefix matches the lock.
    pub problems: Vec<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Verify `prefix` against `lock` for `platform`.
pub fn verify(prefix: &Path, lock: &Lock, platform: &str) -> Result<VerifyReport, EnvError> {
    let mut report = VerifyReport {
        prefix: prefix.display().to_string(),
        ..VerifyReport::default()
    };
    let section = lock.platforms.get(platform).cloned().unwrap_or_default();

    // conda packages
    let mut installed_conda = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(prefix.join("conda-meta")) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let record: serde_json::Value = serde_json::from_slice(
                &std::fs::read(&path).map_err(|e| EnvError::io(&path, "cannot read", e))?,
            )
            .map_err(|e| EnvError::Build(format!("{}: {e}", path.display())))?;
            let name = record["name"].as_str().unwrap_or_default().to_string();
            installed_conda.insert(
                name.clone(),
                record["version"].as_str().unwrap_or_default().to_string(),
            );
            for file in record["paths_data"]["paths"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let Some(rel) = file["_path"].as_str() else {
                    continue;
                };
                let expected = file["sha256_in_prefix"]
                    .as_str()
                    .or_else(|| file["sha256"].as_str());
                check_file(
                    &mut report,
                    prefix,
                    &prefix.join(rel),
                    expected.map(Hash::Hex),
                    &name,
                );
            }
        }
    }
    for package in &section.conda {
        match installed_conda.remove(&package.name) {
            None => report.problems.push(format!(
                "conda package {} {} is missing",
                package.name, package.version
            )),
            Some(v) if v != package.version => report.problems.push(format!(
                "conda package {} is {v}, the lock says {}",
                package.name, package.version
            )),
            Some(_) => {}
        }
        report.packages_checked += 1;
    }
    for (name, version) in installed_conda {
        report.problems.push(format!(
            "conda package {name} {version} is installed but not in the lock"
        ));
    }

    // PyPI distributions
    let mut installed_pypi = BTreeMap::new();
    for site in site_packages(prefix) {
        let Ok(entries) = std::fs::read_dir(&site) else {
            continue;
        };
        for entry in entries.flatten() {
            let dist = entry.path();
            if dist.extension().is_none_or(|e| e != "dist-info") {
                continue;
            }
            let installer = std::fs::read_to_string(dist.join("INSTALLER")).unwrap_or_default();
            if installer.trim() == "conda" {
                continue; // owned by a conda package, checked above
            }
            let metadata = std::fs::read_to_string(dist.join("METADATA")).unwrap_or_default();
            let header = |key: &str| {
                metadata
                    .lines()
                    .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
            };
            let name = normalize(&header("Name:").unwrap_or_default());
            installed_pypi.insert(name.clone(), header("Version:").unwrap_or_default());
            let record = std::fs::read_to_string(dist.join("RECORD")).unwrap_or_default();
            for line in record.lines() {
                let mut fields = line.rsplitn(3, ',');
                let (_size, hash, path) = (fields.next(), fields.next(), fields.next());
                let (Some(hash), Some(path)) = (hash, path) else {
                    continue;
                };
                let path = path.trim_matches('"');
                let Some(b64) = hash.strip_prefix("sha256=") else {
                    continue;
                };
                check_file(
                    &mut report,
                    prefix,
                    &site.join(path),
                    Some(Hash::UrlSafeB64(b64)),
                    &name,
                );
            }
        }
    }
    // Installers seed a venv with nothing; pip/setuptools are only expected when locked.
    for package in &section.pypi {
        let name = normalize(&package.name);
        match installed_pypi.remove(&name) {
            None => report.problems.push(format!(
                "PyPI package {} {} is missing",
                package.name, package.version
            )),
            Some(v) if v != package.version => report.problems.push(format!(
                "PyPI package {} is {v}, the lock says {}",
                package.name, package.version
            )),
            Some(_) => {}
        }
        report.packages_checked += 1;
    }
    for (name, version) in installed_pypi {
        report.problems.push(format!(
            "PyPI package {name} {version} is installed but not in the lock"
        ));
    }
    Ok(report)
}

enum Hash<'a> {
    Hex(&'a str),
    UrlSafeB64(&'a str),
}

fn check_file(
    report: &mut VerifyReport,
    prefix: &Path,
    path: &Path,
    expected: Option<Hash<'_>>,
    owner: &str,
) {
    let Some(expected) = expected else { return };
    report.files_checked += 1;
    let shown = path
        .strip_prefix(prefix)
        .unwrap_or(path)
        .display()
        .to_string();
    // Symlinks are recorded by their target's content; a dangling one is a problem.
    let digest = match sha256_file(path) {
        Ok(d) => d,
        Err(_) => {
            report
                .problems
                .push(format!("{shown} ({owner}) is missing"));
            return;
        }
    };
    let matches = match expected {
        Hash::Hex(hex_digest) => hex::encode(digest).eq_ignore_ascii_case(hex_digest),
        Hash::UrlSafeB64(b64) => urlsafe_b64(&digest) == b64.trim_end_matches('='),
    };
    if !matches {
        report.problems.push(format!(
            "{shown} ({owner}) was modified: its sha256 does not match the installer's record"
        ));
    }
}

fn sha256_file(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

/// Unpadded URL-safe base64, as wheel RECORD files use.
fn urlsafe_b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn normalize(name: &str) -> String {
    terrarium_spec::pip::normalize_name(name)
}

pub(crate) fn site_packages(prefix: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for lib in ["lib", "lib64"] {
        let Ok(entries) = std::fs::read_dir(prefix.join(lib)) else {
            continue;
        };
        for entry in entries.flatten() {
            let site = entry.path().join("site-packages");
            if entry.file_name().to_string_lossy().starts_with("python")
                && site.is_dir()
                && !out.contains(&site)
            {
                out.push(site);
            }
        }
    }
    out.sort();
    out
}

/// Remove what uv records of when it saw each local wheel file (`uv_cache.json` in the wheel's
/// `.dist-info`, and its `RECORD` row): the file's ctime, which differs each time a pack is
/// unpacked, so that the same lock would otherwise build different files on each node. It is a
/// fact of one build, not of the environment.
pub(crate) fn drop_uv_cache_info(prefix: &Path) -> Result<(), EnvError> {
    const NAME: &str = "uv_cache.json";
    for site in site_packages(prefix) {
        let Ok(entries) = std::fs::read_dir(&site) else {
            continue;
        };
        for entry in entries.flatten() {
            let dist_info = entry.path();
            let info = dist_info.join(NAME);
            if dist_info.extension().is_none_or(|e| e != "dist-info") || !info.is_file() {
                continue;
            }
            std::fs::remove_file(&info).map_err(|e| EnvError::io(&info, "cannot remove", e))?;
            let record_path = dist_info.join("RECORD");
            let Ok(record) = std::fs::read_to_string(&record_path) else {
                continue;
            };
            let row = format!("{}/{NAME},", entry.file_name().to_string_lossy());
            let kept: String = record
                .lines()
                .filter(|line| !line.trim_start_matches('"').starts_with(&row))
                .map(|line| format!("{line}\n"))
                .collect();
            std::fs::write(&record_path, kept)
                .map_err(|e| EnvError::io(&record_path, "cannot write", e))?;
        }
    }
    Ok(())
}

/// Entry points that uv wrote while the prefix lived at `tmp` name `tmp`'s interpreter; point
/// them at `prefix`, and update the wheels' RECORD hashes to match.
pub(crate) fn relocate_scripts(tmp: &Path, prefix: &Path) -> Result<(), EnvError> {
    let bin = tmp.join("bin");
    let old = format!("#!{}", tmp.display());
    let new = format!("#!{}", prefix.display());
    let mut changed = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&bin) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.symlink_metadata().is_ok_and(|m| m.is_file()) {
                let Ok(bytes) = std::fs::read(&path) else {
                    continue;
                };
                if bytes.starts_with(old.as_bytes()) {
                    let mut rewritten = new.clone().into_bytes();
                    rewritten.extend_from_slice(&bytes[old.len()..]);
                    // Write a new inode: the old one may be hardlinked from a cache.
                    let _ = std::fs::remove_file(&path);
                    std::fs::write(&path, &rewritten)
                        .map_err(|e| EnvError::io(&path, "cannot write", e))?;
                    std::fs::set_permissions(
                        &path,
                        std::os::unix::fs::PermissionsExt::from_mode(0o755),
                    )
                    .map_err(|e| EnvError::io(&path, "cannot chmod", e))?;
                    changed.push(path.canonicalize().unwrap_or(path));
                }
            }
        }
    }
    if changed.is_empty() {
        return Ok(());
    }
    for site in site_packages(tmp) {
        let Ok(entries) = std::fs::read_dir(&site) else {
            continue;
        };
        for entry in entries.flatten() {
            let record_path = entry.path().join("RECORD");
            let Ok(record) = std::fs::read_to_string(&record_path) else {
                continue;
            };
            let mut dirty = false;
            let lines: Vec<String> = record
                .lines()
                .map(|line| {
                    let path = line.rsplitn(3, ',').nth(2).unwrap_or("").trim_matches('"');
                    let full = site.join(path);
                    let full = full.canonicalize().unwrap_or(full);
                    if changed.contains(&full) {
                        if let (Ok(digest), Ok(meta)) = (sha256_file(&full), full.metadata()) {
                            dirty = true;
                            return format!(
                                "{path},sha256={},{}",
                                urlsafe_b64(&digest),
                                meta.len()
                            );
                        }
                    }
                    line.to_string()
                })
                .collect();
            if dirty {
                std::fs::write(&record_path, lines.join("\n") + "\n")
                    .map_err(|e| EnvError::io(&record_path, "cannot write", e))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64() {
        // RECORD hash of the empty file.
        let digest: [u8; 32] = sha2::Sha256::digest(b"").into();
        assert_eq!(
            super::urlsafe_b64(&digest),
            "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
        );
    }
    use sha2::Digest;

    #[test]
    fn uv_cache_info_is_dropped_with_its_record_row() {
        let prefix = tempfile::tempdir().unwrap();
        let dist = prefix
            .path()
            .join("lib/python3.11/site-packages/alpha-1.0.dist-info");
        std::fs::create_dir_all(&dist).unwrap();
        std::fs::write(dist.join("uv_cache.json"), r#"{"timestamp":1}"#).unwrap();
        std::fs::write(
            dist.join("RECORD"),
            "alpha/__init__.py,sha256=x,1\nalpha-1.0.dist-info/uv_cache.json,sha256=y,15\nalpha-1.0.dist-info/RECORD,,\n",
        )
        .unwrap();
        super::drop_uv_cache_info(prefix.path()).unwrap();
        assert!(!dist.join("uv_cache.json").exists());
        assert_eq!(
            std::fs::read_to_string(dist.join("RECORD")).unwrap(),
            "alpha/__init__.py,sha256=x,1\nalpha-1.0.dist-info/RECORD,,\n"
        );
    }
}
