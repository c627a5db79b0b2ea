//! Digest of a Docker build context, so that changing a file the Dockerfile copies changes the
//! environment's content hash.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::SpecError;

/// SHA-256 over every regular file and symlink under `dir` except `dockerfile` and `.git`:
/// for each, in byte order of its relative path, the path, an executable flag and the content
/// (symlinks: their target). `None` when there is no such file. Files are streamed, never held
/// whole in memory.
pub fn context_digest(dir: &Path, dockerfile: &Path) -> Result<Option<String>, SpecError> {
    let mut files = Vec::new();
    collect(dir, dir, &mut files)?;
    files.retain(|rel| rel != dockerfile);
    files.sort();
    if files.is_empty() {
        return Ok(None);
    }
    let mut hasher = Sha256::new();
    for rel in files {
        let path = dir.join(&rel);
        let meta =
            std::fs::symlink_metadata(&path).map_err(|e| SpecError::io(&path, "cannot read", e))?;
        hasher.update(rel.to_string_lossy().as_bytes());
        hasher.update([0]);
        if meta.file_type().is_symlink() {
            let target =
                std::fs::read_link(&path).map_err(|e| SpecError::io(&path, "cannot read", e))?;
            hasher.update(b"l");
            hasher.update(target.to_string_lossy().as_bytes());
        } else {
            hasher.update(if is_executable(&meta) { b"x" } else { b"f" });
            let mut file =
                std::fs::File::open(&path).map_err(|e| SpecError::io(&path, "cannot read", e))?;
            let mut buf = [0u8; 64 * 1024];
            loop {
                let n = file
                    .read(&mut buf)
                    .map_err(|e| SpecError::io(&path, "cannot read", e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
        }
        hasher.update([0]);
    }
    Ok(Some(format!("sha256:{}", hex::encode(hasher.finalize()))))
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_meta: &std::fs::Metadata) -> bool {
    false
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), SpecError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| SpecError::io(dir, "cannot read the build context", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| SpecError::io(dir, "cannot read the build context", e))?;
        let path = entry.path();
        let file_type = entry
            .file_type()
            .map_err(|e| SpecError::io(&path, "cannot read", e))?;
        if entry.file_name() == ".git" {
            continue;
        }
        if file_type.is_dir() {
            collect(root, &path, out)?;
        } else if file_type.is_file() || file_type.is_symlink() {
            out.push(path.strip_prefix(root).expect("under root").to_path_buf());
        }
    }
    Ok(())
}
