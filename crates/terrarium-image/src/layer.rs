//! One layer: a tar archive of files at their in-image paths, gzip-compressed, streamed to a
//! file while both digests are computed (the compressed blob's `digest` and the uncompressed
//! tar's `diff_id`). Never held in memory.
//!
//! Reproducible: entries sorted by path, parent directories present, mtime 0, uid/gid 0, no
//! user or group names, permissions kept (less setuid/setgid/sticky), a gzip header without a
//! timestamp or file name. The same files give the same bytes.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::{Digest, ImageError};

/// Where a file in the layer comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A file, directory or symlink on disk (symlinks are kept as symlinks).
    Path(PathBuf),
    /// Bytes written by the builder (metadata).
    Bytes(Vec<u8>, u32),
}

/// A finished layer blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// Of the compressed blob.
    pub digest: Digest,
    /// Of the uncompressed tar.
    pub diff_id: Digest,
    pub size: u64,
    /// The blob's file.
    pub path: PathBuf,
    /// What the layer holds, for the image's history (`numpy 2.1.0`, `packages`, ...).
    pub comment: String,
}

struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Write a layer holding `entries` (in-image path without a leading `/`, source) to a new file
/// in `dir`, named by its digest.
pub fn write(
    dir: &Path,
    mut entries: Vec<(String, Source)>,
    comment: &str,
) -> Result<Layer, ImageError> {
    // Every parent directory gets an entry, so that extraction never invents one with other
    // permissions.
    let mut dirs = std::collections::BTreeSet::new();
    for (path, _) in &entries {
        let mut parent = Path::new(path).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            dirs.insert(p.to_string_lossy().to_string());
            parent = p.parent();
        }
    }
    let existing: std::collections::BTreeSet<String> =
        entries.iter().map(|(p, _)| p.clone()).collect();
    for dir_path in dirs {
        if !existing.contains(&dir_path) {
            entries.push((dir_path, Source::Bytes(Vec::new(), 0o40755)));
        }
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries.dedup_by(|a, b| a.0 == b.0);

    std::fs::create_dir_all(dir).map_err(|e| ImageError::io(dir, e))?;
    let staging = tempfile::NamedTempFile::new_in(dir).map_err(|e| ImageError::io(dir, e))?;
    let file = staging
        .reopen()
        .map_err(|e| ImageError::io(staging.path(), e))?;
    let compressed = Hashing {
        inner: BufWriter::with_capacity(1 << 20, file),
        hasher: Sha256::new(),
        written: 0,
    };
    let gzip = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(compressed, flate2::Compression::new(6));
    let uncompressed = Hashing {
        inner: gzip,
        hasher: Sha256::new(),
        written: 0,
    };
    let mut tar = tar::Builder::new(uncompressed);
    tar.mode(tar::HeaderMode::Deterministic);
    tar.follow_symlinks(false);
    for (path, source) in &entries {
        append(&mut tar, path, source)?;
    }
    let uncompressed = tar
        .into_inner()
        .map_err(|e| ImageError::io(staging.path(), e))?;
    let diff_id = Digest::from_hasher(uncompressed.hasher);
    let mut compressed = uncompressed
        .inner
        .finish()
        .map_err(|e| ImageError::io(staging.path(), e))?;
    compressed
        .flush()
        .map_err(|e| ImageError::io(staging.path(), e))?;
    let size = compressed.written;
    let Hashing { inner, hasher, .. } = compressed;
    inner
        .into_inner()
        .map_err(|e| ImageError::io(staging.path(), e.into_error()))?
        .sync_all()
        .map_err(|e| ImageError::io(staging.path(), e))?;
    let digest = Digest::from_hasher(hasher);
    let path = digest.blob_path(dir);
    staging
        .persist(&path)
        .map_err(|e| ImageError::io(&path, e.error))?;
    Ok(Layer {
        digest,
        diff_id,
        size,
        path,
        comment: comment.to_string(),
    })
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    // Permission bits with setuid, setgid and sticky (a scratch image's /tmp is 1777).
    header.set_mode(mode & 0o7777);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    source: &Source,
) -> Result<(), ImageError> {
    let io = |e: std::io::Error| ImageError::Layer(format!("{path}: {e}"));
    match source {
        Source::Bytes(_, mode) if mode & 0o170000 == 0o40000 => {
            let mut h = header(tar::EntryType::Directory, *mode, 0);
            tar.append_data(&mut h, format!("{path}/"), std::io::empty())
                .map_err(io)
        }
        Source::Bytes(bytes, mode) => {
            let mut h = header(tar::EntryType::Regular, *mode, bytes.len() as u64);
            tar.append_data(&mut h, path, bytes.as_slice()).map_err(io)
        }
        Source::Path(file) => {
            let meta = std::fs::symlink_metadata(file).map_err(|e| ImageError::io(file, e))?;
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(file).map_err(|e| ImageError::io(file, e))?;
                let mut h = header(tar::EntryType::Symlink, 0o777, 0);
                tar.append_link(&mut h, path, target).map_err(io)
            } else if meta.is_dir() {
                let mut h = header(tar::EntryType::Directory, mode, 0);
                tar.append_data(&mut h, format!("{path}/"), std::io::empty())
                    .map_err(io)
            } else {
                let reader = File::open(file).map_err(|e| ImageError::io(file, e))?;
                let mut h = header(tar::EntryType::Regular, mode, meta.len());
                tar.append_data(&mut h, path, reader).map_err(io)
            }
        }
    }
}

/// What the layer cache remembers of a layer (`<content key>.json`).
#[derive(serde::Deserialize)]
struct Record {
    digest: Digest,
    diff_id: Digest,
    size: u64,
    path: PathBuf,
}

/// Like [`write`], but a layer whose entries were written before (same paths, modes, link
/// targets and bytes: hence the same tar) is taken from `cache` instead of compressed again.
/// The contents are hashed (fast) to find it; the blob is hard-linked (or copied) into `dir`.
/// A record that does not parse (a malformed digest included), or a blob that is not the one
/// it names, is a miss: the layer is written again.
pub fn write_cached(
    cache: &Path,
    dir: &Path,
    entries: Vec<(String, Source)>,
    comment: &str,
) -> Result<Layer, ImageError> {
    let key = content_key(&entries)?;
    let record = cache.join(format!("{key}.json"));
    let known = std::fs::read(&record)
        .ok()
        .and_then(|text| serde_json::from_slice::<Record>(&text).ok());
    if let Some(known) = known {
        let target = known.digest.blob_path(dir);
        let present = target.is_file()
            || (known.path.is_file()
                && std::fs::create_dir_all(dir).is_ok()
                && (std::fs::hard_link(&known.path, &target).is_ok()
                    || std::fs::copy(&known.path, &target).is_ok()));
        let origin = dir.display().to_string();
        if present
            && known
                .digest
                .check_file(&target, Some(known.size), &origin)
                .is_ok()
        {
            return Ok(Layer {
                digest: known.digest,
                diff_id: known.diff_id,
                size: known.size,
                path: target,
                comment: comment.to_string(),
            });
        }
    }
    write_and_remember(cache, &record, dir, entries, comment)
}

fn write_and_remember(
    cache: &Path,
    record: &Path,
    dir: &Path,
    entries: Vec<(String, Source)>,
    comment: &str,
) -> Result<Layer, ImageError> {
    let layer = write(dir, entries, comment)?;
    let _ = std::fs::create_dir_all(cache);
    let known = serde_json::json!({
        "digest": layer.digest, "diff_id": layer.diff_id, "size": layer.size,
        "path": layer.path, "format": FORMAT,
    });
    if let Ok(mut staging) = tempfile::NamedTempFile::new_in(cache) {
        if staging.write_all(known.to_string().as_bytes()).is_ok() {
            let _ = staging.persist(record);
        }
    }
    Ok(layer)
}

/// Bumped when the tar or gzip form of a layer changes, so that old records are not reused.
const FORMAT: &str = "terrarium-layer-1";

fn content_key(entries: &[(String, Source)]) -> Result<String, ImageError> {
    let mut sorted: Vec<&(String, Source)> = entries.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut hasher = Sha256::new();
    hasher.update(FORMAT.as_bytes());
    for (path, source) in sorted {
        hasher.update(path.as_bytes());
        hasher.update([0]);
        match source {
            Source::Bytes(bytes, mode) => {
                hasher.update(mode.to_be_bytes());
                hasher.update(bytes);
            }
            Source::Path(file) => {
                use std::os::unix::fs::PermissionsExt;
                let meta = std::fs::symlink_metadata(file).map_err(|e| ImageError::io(file, e))?;
                hasher.update(meta.permissions().mode().to_be_bytes());
                if meta.file_type().is_symlink() {
                    let target = std::fs::read_link(file).map_err(|e| ImageError::io(file, e))?;
                    hasher.update(target.to_string_lossy().as_bytes());
                } else if meta.is_file() {
                    let mut reader = File::open(file).map_err(|e| ImageError::io(file, e))?;
                    std::io::copy(&mut reader, &mut hasher).map_err(|e| ImageError::io(file, e))?;
                }
            }
        }
        hasher.update([0]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256(bytes: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
    }

    /// The layer cache is read back like any other input: a record whose digest climbs out of
    /// the blobs directory, or whose blob is not that digest, is a miss, and the layer is
    /// written again.
    #[test]
    fn a_poisoned_cache_record_is_a_miss() {
        let root = tempfile::tempdir().unwrap();
        let cache = root.path().join("cache");
        let dir = root.path().join("out/blobs/sha256");
        let entries = || {
            vec![(
                "a/file".to_string(),
                Source::Bytes(b"hello".to_vec(), 0o100644),
            )]
        };
        let layer = write_cached(&cache, &dir, entries(), "first").unwrap();
        let record = std::fs::read_dir(&cache)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let known: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
        // Of the layer's size, so that only the digest can tell.
        let other = root.path().join("other");
        std::fs::write(&other, vec![0u8; layer.size as usize]).unwrap();

        let mut climbing = known.clone();
        climbing["digest"] = serde_json::json!("sha256:../../../escaped");
        climbing["path"] = serde_json::json!(other);
        let mut corrupt = known.clone();
        corrupt["path"] = serde_json::json!(other);
        let mut compared = 0;
        for poisoned in [climbing, corrupt] {
            std::fs::write(&record, poisoned.to_string()).unwrap();
            std::fs::remove_file(&layer.path).unwrap();
            let again = write_cached(&cache, &dir, entries(), "again").unwrap();
            assert_eq!(again.digest, layer.digest, "{poisoned}");
            assert_eq!(
                sha256(&std::fs::read(&again.path).unwrap()),
                again.digest.to_string(),
                "{poisoned}"
            );
            assert!(!root.path().join("escaped").exists(), "{poisoned}");
            compared += 1;
        }
        assert_eq!(compared, 2);
    }
}
