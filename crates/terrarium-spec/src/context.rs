//! A Docker build context is part of its environment's content: its digest is in the content
//! hash, so changing a file the Dockerfile copies makes a new version, and the context itself
//! is kept in the workspace, content-addressed by that digest ([`pack`], [`unpack`]), so that
//! a build works from any directory and any machine.
//!
//! The context is what Docker would send: every file under the context directory except the
//! Dockerfile, `.git`, and what `.dockerignore` excludes.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::SpecError;

/// The largest context kept (packed), and the most bytes and files one may unpack to: a
/// context is source files and small assets, never datasets (`.dockerignore` them).
pub const MAX_PACKED_BYTES: u64 = 256 * 1024 * 1024;
pub const MAX_UNPACKED_BYTES: u64 = 1024 * 1024 * 1024;
pub const MAX_FILES: usize = 100_000;

/// The files of the context in `dir` (relative paths, sorted) for the Dockerfile at
/// `dockerfile` (relative to `dir`).
pub fn context_files(dir: &Path, dockerfile: &Path) -> Result<Vec<PathBuf>, SpecError> {
    let ignore = DockerIgnore::read(dir)?;
    let mut files = Vec::new();
    collect(dir, dir, &ignore, &mut files)?;
    files.retain(|rel| rel != dockerfile);
    files.sort();
    Ok(files)
}

/// SHA-256 over the context's files (see [`context_files`]): for each, in byte order of its
/// relative path, the path, an executable flag and the content (symlinks: their target).
/// `None` when there is no such file. Files are streamed, never held whole in memory.
pub fn context_digest(dir: &Path, dockerfile: &Path) -> Result<Option<String>, SpecError> {
    let files = context_files(dir, dockerfile)?;
    digest_files(dir, &files)
}

fn digest_files(dir: &Path, files: &[PathBuf]) -> Result<Option<String>, SpecError> {
    if files.is_empty() {
        return Ok(None);
    }
    let mut hasher = Sha256::new();
    for rel in files {
        let path = dir.join(rel);
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

fn collect(
    root: &Path,
    dir: &Path,
    ignore: &DockerIgnore,
    out: &mut Vec<PathBuf>,
) -> Result<(), SpecError> {
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
        let rel = path.strip_prefix(root).expect("under root").to_path_buf();
        if file_type.is_dir() {
            // A directory is walked even when excluded: an exception (`!dir/keep`) may bring
            // back a file inside it, as Docker does.
            if ignore.excludes(&rel) && !ignore.has_exceptions() {
                continue;
            }
            collect(root, &path, ignore, out)?;
        } else if (file_type.is_file() || file_type.is_symlink()) && !ignore.excludes(&rel) {
            out.push(rel);
        }
    }
    Ok(())
}

/// `.dockerignore` patterns, as Docker reads them: one per line, `#` comments, a leading `/`
/// and surrounding spaces dropped, `!` for an exception; the last pattern that matches a path
/// (or one of its parent directories) decides. Patterns are Go `filepath.Match` globs (`*`,
/// `?`, `[...]`) with `**` for any number of directories.
#[derive(Debug, Default)]
struct DockerIgnore {
    patterns: Vec<(bool, Vec<String>)>,
}

impl DockerIgnore {
    fn read(dir: &Path) -> Result<Self, SpecError> {
        let path = dir.join(".dockerignore");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(SpecError::io(&path, "cannot read", e)),
        };
        Ok(Self::parse(&text))
    }

    fn parse(text: &str) -> Self {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, pattern) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let segments: Vec<String> = pattern
                .split('/')
                .filter(|s| !s.is_empty() && *s != ".")
                .map(str::to_string)
                .collect();
            if !segments.is_empty() {
                patterns.push((exception, segments));
            }
        }
        Self { patterns }
    }

    fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|(exception, _)| *exception)
    }

    fn excludes(&self, rel: &Path) -> bool {
        let parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let mut excluded = false;
        for (exception, pattern) in &self.patterns {
            // A pattern excludes a path when it matches the path or one of its parents.
            let matched = (1..=parts.len()).any(|n| match_segments(pattern, &parts[..n]));
            if matched {
                excluded = !exception;
            }
        }
        excluded
    }
}

fn match_segments(pattern: &[String], path: &[String]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=path.len()).any(|skip| match_segments(rest, &path[skip..]))
        }
        Some((first, rest)) => match path.split_first() {
            Some((segment, path_rest)) => {
                glob(first.as_bytes(), segment.as_bytes()) && match_segments(rest, path_rest)
            }
            None => false,
        },
    }
}

/// One path segment against a glob: `*`, `?`, `[...]` (with `^` or `!` to negate, ranges),
/// `\` escapes.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| glob(rest, &text[skip..])),
        Some((b'?', rest)) => !text.is_empty() && glob(rest, &text[1..]),
        Some((b'[', rest)) => {
            let Some(close) = rest.iter().position(|&c| c == b']') else {
                return false;
            };
            let Some((&c, text_rest)) = text.split_first() else {
                return false;
            };
            let mut class = &rest[..close];
            let negate = matches!(class.first(), Some(b'^' | b'!'));
            if negate {
                class = &class[1..];
            }
            let mut found = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == b'-' {
                    found |= class[i] <= c && c <= class[i + 2];
                    i += 3;
                } else {
                    found |= class[i] == c;
                    i += 1;
                }
            }
            found != negate && glob(&rest[close + 1..], text_rest)
        }
        Some((b'\\', rest)) if !rest.is_empty() => {
            text.first() == Some(&rest[0]) && glob(&rest[1..], &text[1..])
        }
        Some((&p, rest)) => text.first() == Some(&p) && glob(rest, &text[1..]),
    }
}

/// Pack the context in `dir` as a gzipped tar of its files (sorted, no times or owners, so
/// the same context is the same bytes). Returns its digest ([`context_digest`]) and the
/// archive; `None` when the context has no files.
pub fn pack(dir: &Path, dockerfile: &Path) -> Result<Option<(String, Vec<u8>)>, SpecError> {
    let files = context_files(dir, dockerfile)?;
    let Some(digest) = digest_files(dir, &files)? else {
        return Ok(None);
    };
    let io = |e: std::io::Error| SpecError::io(dir, "cannot pack the build context", e);
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut archive = tar::Builder::new(encoder);
    archive.mode(tar::HeaderMode::Deterministic);
    archive.follow_symlinks(false);
    for rel in &files {
        archive
            .append_path_with_name(dir.join(rel), rel)
            .map_err(io)?;
    }
    let bytes = archive.into_inner().map_err(io)?.finish().map_err(io)?;
    if bytes.len() as u64 > MAX_PACKED_BYTES {
        return Err(SpecError::invalid(
            crate::error::Location::file(dir),
            format!(
                "the build context is {} MiB packed, more than {} MiB: list what the Dockerfile does not copy in .dockerignore",
                bytes.len() / (1024 * 1024),
                MAX_PACKED_BYTES / (1024 * 1024)
            ),
        ));
    }
    Ok(Some((digest, bytes)))
}

/// Unpack a packed context into `dest` (an empty directory) and check that it is the context
/// `digest` names. The archive is untrusted: only regular files and symlinks, with plain
/// relative paths, none of them under a symlink, within [`MAX_UNPACKED_BYTES`] and
/// [`MAX_FILES`].
pub fn unpack(archive: &[u8], dest: &Path, digest: &str) -> Result<(), UnpackError> {
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    let mut files = Vec::new();
    let mut links: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut total = 0u64;
    let entries = tar.entries().map_err(UnpackError::Archive)?;
    for entry in entries {
        let mut entry = entry.map_err(UnpackError::Archive)?;
        let rel = entry.path().map_err(UnpackError::Archive)?.into_owned();
        if rel.components().next().is_none()
            || !rel.components().all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(UnpackError::Unsafe(rel.display().to_string()));
        }
        if files.len() + links.len() >= MAX_FILES {
            return Err(UnpackError::TooLarge);
        }
        let kind = entry.header().entry_type();
        if kind.is_symlink() {
            let target = entry
                .link_name()
                .map_err(UnpackError::Archive)?
                .ok_or_else(|| UnpackError::Unsafe(rel.display().to_string()))?
                .into_owned();
            links.push((rel, target));
        } else if kind.is_file() {
            total += entry.size();
            if total > MAX_UNPACKED_BYTES {
                return Err(UnpackError::TooLarge);
            }
            if links.iter().any(|(link, _)| rel.starts_with(link)) {
                return Err(UnpackError::Unsafe(rel.display().to_string()));
            }
            let path = dest.join(&rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(UnpackError::Io)?;
            }
            let mode = entry.header().mode().unwrap_or(0o644) & 0o755;
            let mut out = std::fs::File::create(&path).map_err(UnpackError::Io)?;
            std::io::copy(&mut (&mut entry).take(MAX_UNPACKED_BYTES), &mut out)
                .map_err(UnpackError::Io)?;
            set_mode(&path, mode).map_err(UnpackError::Io)?;
            files.push(rel);
        } else if !kind.is_dir() {
            return Err(UnpackError::Unsafe(rel.display().to_string()));
        }
    }
    // Symlinks last, so no file is written through one.
    for (rel, target) in &links {
        if files.iter().any(|f| f.starts_with(rel)) {
            return Err(UnpackError::Unsafe(rel.display().to_string()));
        }
        let path = dest.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(UnpackError::Io)?;
        }
        make_symlink(target, &path).map_err(UnpackError::Io)?;
        files.push(rel.clone());
    }
    files.sort();
    let found = digest_files(dest, &files)
        .map_err(|e| UnpackError::Io(std::io::Error::other(e.to_string())))?;
    if found.as_deref() != Some(digest) {
        return Err(UnpackError::Digest {
            expected: digest.to_string(),
            found: found.unwrap_or_default(),
        });
    }
    Ok(())
}

/// Why a packed context could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// Not a gzipped tar.
    #[error("the build context archive is not readable")]
    Archive(#[source] std::io::Error),
    /// An entry that could write outside the folder, or is not a file or symlink.
    #[error("the build context archive holds `{0}`, which is not a plain file path")]
    Unsafe(String),
    #[error("the build context archive unpacks to more than its limits ({MAX_FILES} files, {} MiB)", MAX_UNPACKED_BYTES / (1024 * 1024))]
    TooLarge,
    /// The files are not the context the digest names.
    #[error("the build context archive is {found}, not {expected}")]
    Digest { expected: String, found: String },
    #[error("cannot unpack the build context")]
    Io(#[source] std::io::Error),
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn make_symlink(target: &Path, path: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, path)
}

#[cfg(not(unix))]
fn make_symlink(_target: &Path, _path: &Path) -> std::io::Result<()> {
    Err(std::io::Error::other("symlinks need unix"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn dockerignore_as_docker_reads_it() {
        let ignore = DockerIgnore::parse(
            "# comment\n*.pyc\n/data\n**/__pycache__\nlogs/*.log\n!logs/keep.log\n.venv\n",
        );
        let excluded = |p: &str| ignore.excludes(Path::new(p));
        assert!(excluded("a.pyc"));
        assert!(!excluded("src/a.pyc"), "`*.pyc` matches at the root only");
        assert!(excluded("data/x.csv"));
        assert!(excluded("src/pkg/__pycache__/m.cpython-311.pyc"));
        assert!(excluded("logs/run.log"));
        assert!(!excluded("logs/keep.log"));
        assert!(excluded(".venv/bin/python"));
        assert!(!excluded("requirements.txt"));
        assert!(glob(b"file[0-9].t?t", b"file3.txt"));
        assert!(!glob(b"file[!0-9].txt", b"file3.txt"));
    }

    #[test]
    fn pack_and_unpack_round_trip_and_the_digest_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path().join("ctx");
        write(&ctx, "Dockerfile", "FROM python:3.11\nCOPY . /app\n");
        write(&ctx, "requirements.txt", "numpy==1.26.4\n");
        write(&ctx, "src/app.py", "print('hi')\n");
        write(&ctx, "data/big.csv", "1,2,3\n");
        write(&ctx, ".dockerignore", "data\n");
        #[cfg(unix)]
        std::os::unix::fs::symlink("src/app.py", ctx.join("link.py")).unwrap();
        let (digest, archive) = pack(&ctx, Path::new("Dockerfile")).unwrap().unwrap();
        assert_eq!(
            Some(digest.clone()),
            context_digest(&ctx, Path::new("Dockerfile")).unwrap()
        );
        // The same context is the same bytes.
        let (_, again) = pack(&ctx, Path::new("Dockerfile")).unwrap().unwrap();
        assert_eq!(archive, again);
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        unpack(&archive, &out, &digest).unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join("src/app.py")).unwrap(),
            "print('hi')\n"
        );
        assert!(
            !out.join("data").exists(),
            ".dockerignore'd files are not kept"
        );
        assert!(!out.join("Dockerfile").exists());
        // Another digest: refused.
        let other = dir.path().join("other");
        std::fs::create_dir(&other).unwrap();
        let err = unpack(&archive, &other, "sha256:00").unwrap_err();
        assert!(matches!(err, UnpackError::Digest { .. }), "{err}");
        // Changing a file changes the digest.
        write(&ctx, "requirements.txt", "numpy==2.0.0\n");
        assert_ne!(
            Some(digest),
            context_digest(&ctx, Path::new("Dockerfile")).unwrap()
        );
    }

    #[test]
    fn an_archive_that_climbs_out_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        // A symlink to outside, then a file written "through" it.
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::default(),
        ));
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        builder
            .append_link(&mut header, "escape", dir.path().join("outside"))
            .unwrap();
        let mut header = tar::Header::new_gnu();
        header.set_size(1);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, "escape/pwned", &b"x"[..])
            .unwrap();
        let archive = builder.into_inner().unwrap().finish().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::fs::create_dir(dir.path().join("outside")).unwrap();
        let err = unpack(&archive, &out, "sha256:00").unwrap_err();
        assert!(matches!(err, UnpackError::Unsafe(_)), "{err}");
        assert!(!dir.path().join("outside/pwned").exists());
    }
}
