//! Packs: a lock and every package file it names for one platform, in one reproducible tar,
//! for machines that build environments without a network or a shared filesystem.
//!
//! Pack version 1 is a tar archive (plain, or zstd-compressed; a gzipped one is read too):
//! - `pack.json`, first: the manifest: `pack_version`, `platform`, `lock_hash`, the lock
//!   file's name, sha256 and size, and each package file's name, sha256 and size, by name;
//! - `lock.json`: the lock, as Terrarium stores it;
//! - `conda/<file name>`: each conda package archive, as its channel serves it;
//! - `wheels/<file name>`: each wheel the PyPI part installs.
//!
//! Entries come in that order (files sorted by name), with fixed modes, owners and times, so
//! the same lock packs to the same bytes.
//!
//! A pack holds package archives, not a prefix: unpacking installs them with the installers
//! and caches `env build` uses, for the prefix they end up in, so nothing is relocated after
//! the fact. Nothing is built from a pack until every file in it has been checked: the lock
//! against the manifest's lock hash, the manifest's file list against the one the lock
//! implies, and each file's size and sha256 against the lock. Entries that are not the
//! manifest's files, paths that leave the pack, links, and files larger than declared are
//! refused, and the declared sizes must fit in the archive (or, compressed, in the free space).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use terrarium_lock::{Lock, LockError, LockKind, PlatformLock};

use crate::error::PackError;
use crate::{EnvError, Reporter};

/// The pack format this Terrarium writes and reads.
pub const PACK_VERSION: u32 = 1;
/// The manifest's entry name.
pub const MANIFEST: &str = "pack.json";
/// The lock's entry name.
pub const LOCK: &str = "lock.json";
/// Where conda package archives go in a pack.
pub const CONDA_DIR: &str = "conda";
/// Where wheels go in a pack.
pub const WHEELS_DIR: &str = "wheels";

/// Bounds on what is read before the lock is known, against archive bombs.
const MAX_MANIFEST_BYTES: u64 = 16 << 20;
const MAX_LOCK_BYTES: u64 = 256 << 20;
/// zstd level for compressed packs: package archives are compressed already.
const ZSTD_LEVEL: i32 = 3;

/// The first entry of a pack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub pack_version: u32,
    /// The conda platform name the files are for (`linux-64`).
    pub platform: String,
    /// The lock hash of `lock.json`.
    pub lock_hash: String,
    /// `lock.json` itself.
    pub lock: PackedFile,
    /// The package files, sorted by name.
    pub files: Vec<PackedFile>,
}

/// One file in a pack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackedFile {
    /// The entry name, e.g. `wheels/requests-2.32.3-py3-none-any.whl`.
    pub name: String,
    /// Lowercase hex.
    pub sha256: String,
    pub size: u64,
}

/// How a pack's tar is compressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar: package archives are compressed already, and a plain tar can be checked
    /// against its own size.
    #[default]
    None,
    /// zstd, level 3.
    Zstd,
}

impl Compression {
    pub const ALL: [Compression; 2] = [Compression::None, Compression::Zstd];

    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Zstd => "zstd",
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Compression {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.name() == text)
            .ok_or_else(|| format!("unknown compression `{text}`; expected none or zstd"))
    }
}

/// What a pack holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackSummary {
    pub lock_hash: String,
    pub platform: String,
    /// Package files (the lock not counted).
    pub files: usize,
    /// The package files' bytes.
    pub content_bytes: u64,
    /// The archive's bytes.
    pub size_bytes: u64,
}

/// One file a lock's pack holds, and where the lock says it comes from.
#[derive(Debug, Clone)]
struct Planned {
    name: String,
    sha256: String,
    /// The size, when the lock records it.
    size: Option<u64>,
    url: String,
}

/// The files a pack of `lock` for `platform` holds, sorted by name.
fn plan(lock: &Lock, platform: &str) -> Result<Vec<Planned>, EnvError> {
    if lock.kind == LockKind::UserManaged {
        return Err(PackError::UserManaged.into());
    }
    let section = lock
        .platforms
        .get(platform)
        .ok_or_else(|| LockError::NoPlatform(platform.to_string()))?;
    let mut planned = Vec::new();
    for conda in &section.conda {
        let record = conda.repodata_record()?;
        let file_name = record.identifier.to_file_name();
        planned.push(Planned {
            name: format!("{CONDA_DIR}/{}", plain_file_name(&file_name)?),
            sha256: conda.sha256.to_ascii_lowercase(),
            size: record.package_record.size,
            url: conda.url.clone(),
        });
    }
    let sizes = wheel_sizes(section);
    for pypi in &section.pypi {
        let file_name = url_file_name(&pypi.url);
        if !file_name.ends_with(".whl") {
            return Err(PackError::NotAWheel {
                name: pypi.name.clone(),
                url: pypi.url.clone(),
            }
            .into());
        }
        let file_name = plain_file_name(&file_name)?;
        planned.push(Planned {
            size: sizes.get(file_name).copied(),
            name: format!("{WHEELS_DIR}/{file_name}"),
            sha256: pypi.sha256.to_ascii_lowercase(),
            url: pypi.url.clone(),
        });
    }
    planned.sort_by(|a, b| a.name.cmp(&b.name));
    for pair in planned.windows(2) {
        if pair[0].name == pair[1].name {
            return Err(PackError::DuplicateFile(pair[0].name.clone()).into());
        }
    }
    Ok(planned)
}

/// The sizes the pylock records for its wheels, by file name.
fn wheel_sizes(section: &PlatformLock) -> BTreeMap<String, u64> {
    let mut sizes = BTreeMap::new();
    let Some(doc) = section
        .pylock
        .as_deref()
        .and_then(|text| text.parse::<toml::Table>().ok())
    else {
        return sizes;
    };
    for package in doc
        .get("packages")
        .and_then(|p| p.as_array())
        .into_iter()
        .flatten()
    {
        for wheel in package
            .get("wheels")
            .and_then(|w| w.as_array())
            .into_iter()
            .flatten()
        {
            let location = wheel
                .get("url")
                .or_else(|| wheel.get("path"))
                .and_then(|v| v.as_str());
            let size = wheel.get("size").and_then(|v| v.as_integer());
            if let (Some(location), Some(size)) = (location, size) {
                sizes.insert(url_file_name(location), size as u64);
            }
        }
    }
    sizes
}

/// The last path segment of a URL or path, percent-decoded, without query or fragment.
pub(crate) fn url_file_name(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let segment = path.rsplit('/').next().unwrap_or_default();
    percent_decode(segment)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `name` if it is a plain file name: no directory, not `.` or `..`, no control characters.
fn plain_file_name(name: &str) -> Result<&str, PackError> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control);
    if plain {
        Ok(name)
    } else {
        Err(PackError::BadFileName(name.to_string()))
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Write the pack of `lock` for `platform` to `out`: fetch each file the lock names from its
/// URL (`file://` or a local path is read in place), check it against the lock's sha256, and
/// write the archive. `out` is written whole or not at all.
pub fn write(
    lock: &Lock,
    platform: &str,
    out: &Path,
    compression: Compression,
    reporter: &dyn Reporter,
) -> Result<PackSummary, EnvError> {
    let planned = plan(lock, platform)?;
    let dir = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let downloads = tempfile::Builder::new()
        .prefix(".terrarium-pack-")
        .tempdir_in(&dir)
        .map_err(|e| EnvError::io(&dir, "cannot write in", e))?;
    reporter.step(&format!("fetching {} package files", planned.len()));
    let mut client = None;
    let mut sources = Vec::with_capacity(planned.len());
    for (index, file) in planned.iter().enumerate() {
        sources.push(fetch(
            &file.url,
            &downloads.path().join(index.to_string()),
            &mut client,
        )?);
    }
    reporter.step(&format!("writing {}", out.display()));
    let mut output = tempfile::Builder::new()
        .prefix(".terrarium-pack-")
        .suffix(".tmp")
        .tempfile_in(&dir)
        .map_err(|e| EnvError::io(&dir, "cannot write in", e))?;
    let manifest = write_archive(
        lock,
        platform,
        &planned,
        &sources,
        output.as_file_mut(),
        compression,
    )?;
    output
        .as_file()
        .sync_all()
        .map_err(|e| EnvError::io(out, "cannot write", e))?;
    output
        .persist(out)
        .map_err(|e| EnvError::io(out, "cannot write", e.error))?;
    let size_bytes = std::fs::metadata(out)
        .map_err(|e| EnvError::io(out, "cannot read", e))?
        .len();
    Ok(PackSummary {
        lock_hash: manifest.lock_hash,
        platform: platform.to_string(),
        files: manifest.files.len(),
        content_bytes: manifest.files.iter().map(|f| f.size).sum(),
        size_bytes,
    })
}

/// The local path of `url`: a `file://` URL or path as it is, anything else downloaded to
/// `download`.
fn fetch(
    url: &str,
    download: &Path,
    client: &mut Option<reqwest::blocking::Client>,
) -> Result<PathBuf, EnvError> {
    let fetch_error = |source: Box<dyn std::error::Error + Send + Sync>| PackError::Fetch {
        url: url.to_string(),
        source,
    };
    let local = if url.starts_with("file://") {
        Some(
            url::Url::parse(url)
                .ok()
                .and_then(|u| u.to_file_path().ok())
                .ok_or_else(|| fetch_error("not a local file URL".into()))?,
        )
    } else if !url.starts_with("http://") && !url.starts_with("https://") {
        Some(PathBuf::from(url))
    } else {
        None
    };
    if let Some(path) = local {
        // Package caches hold unpacked packages, not the archives: the source must be there.
        return match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => Ok(path),
            Ok(_) => Err(fetch_error("not a file".into()).into()),
            Err(e) => Err(fetch_error(e.into()).into()),
        };
    }
    if client.is_none() {
        *client = Some(
            reqwest::blocking::Client::builder()
                .timeout(None)
                .build()
                .map_err(|e| fetch_error(e.into()))?,
        );
    }
    let client = client.as_ref().expect("the client was just made");
    let mut response = client
        .get(url)
        .send()
        .and_then(|r| r.error_for_status())
        .map_err(|e| fetch_error(e.into()))?;
    let mut file = File::create(download).map_err(|e| EnvError::io(download, "cannot write", e))?;
    response
        .copy_to(&mut file)
        .map_err(|e| fetch_error(e.into()))?;
    Ok(download.to_path_buf())
}

/// Write the tar to `file`; every file is checked against the lock as it is copied.
fn write_archive(
    lock: &Lock,
    platform: &str,
    planned: &[Planned],
    sources: &[PathBuf],
    file: &mut File,
    compression: Compression,
) -> Result<Manifest, EnvError> {
    let lock_json = lock.to_json();
    let mut files = Vec::with_capacity(planned.len());
    for (file, source) in planned.iter().zip(sources) {
        let size = std::fs::metadata(source)
            .map_err(|e| EnvError::io(source, "cannot read", e))?
            .len();
        if file.size.is_some_and(|s| s != size) {
            return Err(PackError::SourceChanged {
                url: file.url.clone(),
                expected: file.sha256.clone(),
                actual: hash_file(source)?,
            }
            .into());
        }
        files.push(PackedFile {
            name: file.name.clone(),
            sha256: file.sha256.clone(),
            size,
        });
    }
    let manifest = Manifest {
        pack_version: PACK_VERSION,
        platform: platform.to_string(),
        lock_hash: lock.lock_hash(),
        lock: PackedFile {
            name: LOCK.to_string(),
            sha256: sha256_hex(lock_json.as_bytes()),
            size: lock_json.len() as u64,
        },
        files,
    };
    let manifest_json = serde_json::to_string_pretty(&manifest)
        .map_err(|e| EnvError::Build(format!("cannot write the pack manifest: {e}")))?
        + "\n";
    let sink = BufWriter::with_capacity(1 << 20, &*file);
    let io_error = |e| EnvError::io(PathBuf::from("pack"), "cannot write", e);
    match compression {
        Compression::None => {
            let mut builder = tar::Builder::new(sink);
            write_entries(
                &mut builder,
                &manifest_json,
                &lock_json,
                planned,
                sources,
                &manifest,
            )?;
            builder
                .into_inner()
                .and_then(|mut w| w.flush())
                .map_err(io_error)?;
        }
        Compression::Zstd => {
            let encoder = zstd::Encoder::new(sink, ZSTD_LEVEL).map_err(io_error)?;
            let mut builder = tar::Builder::new(encoder);
            write_entries(
                &mut builder,
                &manifest_json,
                &lock_json,
                planned,
                sources,
                &manifest,
            )?;
            builder
                .into_inner()
                .and_then(|encoder| encoder.finish())
                .and_then(|mut w| w.flush())
                .map_err(io_error)?;
        }
    }
    Ok(manifest)
}

fn write_entries<W: Write>(
    builder: &mut tar::Builder<W>,
    manifest_json: &str,
    lock_json: &str,
    planned: &[Planned],
    sources: &[PathBuf],
    manifest: &Manifest,
) -> Result<(), EnvError> {
    let io_error = |e| EnvError::io(PathBuf::from("pack"), "cannot write", e);
    append(
        builder,
        MANIFEST,
        manifest_json.len() as u64,
        manifest_json.as_bytes(),
    )
    .map_err(io_error)?;
    append(builder, LOCK, lock_json.len() as u64, lock_json.as_bytes()).map_err(io_error)?;
    for ((file, source), packed) in planned.iter().zip(sources).zip(&manifest.files) {
        let input = File::open(source).map_err(|e| EnvError::io(source, "cannot read", e))?;
        let mut reader = HashingReader::new(input.take(packed.size));
        append(builder, &packed.name, packed.size, &mut reader)
            .map_err(|e| EnvError::io(source, "cannot copy into the pack", e))?;
        let (actual, copied) = reader.finish();
        if actual != file.sha256 || copied != packed.size {
            return Err(PackError::SourceChanged {
                url: file.url.clone(),
                expected: file.sha256.clone(),
                actual,
            }
            .into());
        }
    }
    Ok(())
}

/// A regular file entry of `size` bytes with fixed mode, owner and time.
fn append<W: Write>(
    builder: &mut tar::Builder<W>,
    name: &str,
    size: u64,
    data: impl Read,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(size);
    builder.append_data(&mut header, name, data)
}

fn hash_file(path: &Path) -> Result<String, EnvError> {
    let file = File::open(path).map_err(|e| EnvError::io(path, "cannot read", e))?;
    let mut reader = HashingReader::new(file);
    std::io::copy(&mut reader, &mut std::io::sink())
        .map_err(|e| EnvError::io(path, "cannot read", e))?;
    Ok(reader.finish().0)
}

/// A reader that hashes and counts what passes through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// The sha256 (lowercase hex) and the byte count.
    fn finish(self) -> (String, u64) {
        (hex::encode(self.hasher.finalize()), self.count)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// A pack whose manifest and lock have been read and checked against each other. Its package
/// files are checked when they are unpacked ([`crate::EnvCache::get_or_build_from_pack`],
/// [`crate::EnvCache::build_pack_into`]) or with [`Pack::check`].
#[derive(Debug)]
pub struct Pack {
    path: PathBuf,
    manifest: Manifest,
    manifest_bytes: Vec<u8>,
    lock: Lock,
    size_bytes: u64,
}

impl Pack {
    /// Read the pack at `path`: its manifest, its lock, and whether they agree. With
    /// `expected_lock_hash`, a pack of any other lock is refused.
    pub fn open(path: &Path, expected_lock_hash: Option<&str>) -> Result<Self, EnvError> {
        let unreadable = |source| PackError::Unreadable {
            path: path.to_path_buf(),
            source,
        };
        let size_bytes = std::fs::metadata(path)
            .map_err(|e| EnvError::io(path, "cannot read", e))?
            .len();
        let (mut archive, compressed) = open_archive(path)?;
        let mut entries = archive.entries().map_err(unreadable)?;

        let mut entry = entries
            .next()
            .ok_or(PackError::NoManifest)?
            .map_err(unreadable)?;
        if entry_name(&entry)? != MANIFEST {
            return Err(PackError::NoManifest.into());
        }
        let manifest_bytes = read_small(&mut entry, MANIFEST, MAX_MANIFEST_BYTES, path)?;
        // The version first, so that a newer format is named as such rather than unparsed.
        #[derive(Deserialize)]
        struct Version {
            pack_version: u32,
        }
        let version: Version =
            serde_json::from_slice(&manifest_bytes).map_err(PackError::BadManifest)?;
        if version.pack_version != PACK_VERSION {
            return Err(PackError::UnsupportedVersion {
                found: version.pack_version,
                supported: PACK_VERSION,
            }
            .into());
        }
        let manifest: Manifest =
            serde_json::from_slice(&manifest_bytes).map_err(PackError::BadManifest)?;

        let mut entry = entries
            .next()
            .ok_or_else(|| PackError::MissingFile(LOCK.to_string()))?
            .map_err(unreadable)?;
        let name = entry_name(&entry)?;
        if name != LOCK || manifest.lock.name != LOCK {
            return Err(PackError::MissingFile(LOCK.to_string()).into());
        }
        let lock_bytes = read_small(&mut entry, LOCK, MAX_LOCK_BYTES, path)?;
        check_bytes(&manifest.lock, &lock_bytes)?;
        let text = String::from_utf8(lock_bytes)
            .map_err(|_| PackError::ManifestMismatch("the lock is not UTF-8 text".into()))?;
        let lock = Lock::from_json(&text).map_err(|e| match e {
            LockError::Parse(source) => EnvError::Pack(PackError::BadManifest(source)),
            other => other.into(),
        })?;
        let actual = lock.lock_hash();
        if actual != manifest.lock_hash {
            return Err(PackError::LockHashMismatch {
                expected: manifest.lock_hash.clone(),
                actual,
            }
            .into());
        }
        if let Some(expected) = expected_lock_hash {
            if expected != actual {
                return Err(PackError::UnexpectedLock {
                    expected: expected.to_string(),
                    actual,
                }
                .into());
            }
        }
        check_files_against_lock(&manifest, &lock)?;
        let declared = manifest.lock.size + manifest.files.iter().map(|f| f.size).sum::<u64>();
        if !compressed && declared > size_bytes {
            return Err(PackError::TooLarge {
                declared,
                limit: size_bytes,
                what: "the size of the archive",
            }
            .into());
        }
        Ok(Self {
            path: path.to_path_buf(),
            manifest,
            manifest_bytes,
            lock,
            size_bytes,
        })
    }

    pub fn lock(&self) -> &Lock {
        &self.lock
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn platform(&self) -> &str {
        &self.manifest.platform
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn summary(&self) -> PackSummary {
        PackSummary {
            lock_hash: self.manifest.lock_hash.clone(),
            platform: self.manifest.platform.clone(),
            files: self.manifest.files.len(),
            content_bytes: self.manifest.files.iter().map(|f| f.size).sum(),
            size_bytes: self.size_bytes,
        }
    }

    /// Read the whole archive, checking every file against the manifest, without writing.
    pub fn check(&self) -> Result<(), EnvError> {
        self.read_files(None)
    }

    /// Check every file and write it under `dir` (`conda/...`, `wheels/...`). On an error,
    /// part of the files may have been written: the caller removes `dir`.
    pub(crate) fn unpack_files(&self, dir: &Path) -> Result<(), EnvError> {
        let declared: u64 = self.manifest.files.iter().map(|f| f.size).sum();
        if let Some(free) = free_space(dir) {
            if declared > free {
                return Err(PackError::TooLarge {
                    declared,
                    limit: free,
                    what: "the free space where it is unpacked",
                }
                .into());
            }
        }
        for sub in [CONDA_DIR, WHEELS_DIR] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path).map_err(|e| EnvError::io(&path, "cannot create", e))?;
        }
        self.read_files(Some(dir))
    }

    fn read_files(&self, into: Option<&Path>) -> Result<(), EnvError> {
        let unreadable = |source| PackError::Unreadable {
            path: self.path.clone(),
            source,
        };
        let (mut archive, _) = open_archive(&self.path)?;
        let mut wanted: BTreeMap<&str, (&PackedFile, bool)> = self
            .manifest
            .files
            .iter()
            .map(|f| (f.name.as_str(), (f, false)))
            .collect();
        let mut position = 0;
        for entry in archive.entries().map_err(unreadable)? {
            let mut entry = entry.map_err(unreadable)?;
            let name = entry_name(&entry)?;
            position += 1;
            match position {
                // Read again: the file may have changed since it was opened.
                1 => {
                    let bytes = read_small(&mut entry, MANIFEST, MAX_MANIFEST_BYTES, &self.path)?;
                    if name != MANIFEST || bytes != self.manifest_bytes {
                        return Err(PackError::ManifestMismatch(
                            "the pack changed while it was read".into(),
                        )
                        .into());
                    }
                    continue;
                }
                2 if name == LOCK => {
                    let bytes = read_small(&mut entry, LOCK, MAX_LOCK_BYTES, &self.path)?;
                    check_bytes(&self.manifest.lock, &bytes)?;
                    continue;
                }
                _ => {}
            }
            let Some((file, seen)) = wanted.get_mut(name.as_str()) else {
                return Err(PackError::UnexpectedEntry(name).into());
            };
            if *seen {
                return Err(PackError::DuplicateEntry(name).into());
            }
            *seen = true;
            let declared = entry.header().entry_size().map_err(unreadable)?;
            if declared != file.size {
                return Err(PackError::SizeMismatch {
                    name,
                    expected: file.size,
                    actual: declared,
                }
                .into());
            }
            let mut reader = HashingReader::new((&mut entry).take(file.size));
            match into {
                Some(dir) => {
                    let path = dir.join(&file.name);
                    let out = File::options()
                        .write(true)
                        .create_new(true)
                        .open(&path)
                        .map_err(|e| EnvError::io(&path, "cannot write", e))?;
                    let mut out = BufWriter::with_capacity(1 << 20, out);
                    std::io::copy(&mut reader, &mut out)
                        .and_then(|_| out.flush())
                        .map_err(unreadable)?;
                }
                None => {
                    std::io::copy(&mut reader, &mut std::io::sink()).map_err(unreadable)?;
                }
            }
            let (actual, count) = reader.finish();
            if count != file.size {
                return Err(cut_short(&self.path).into());
            }
            if actual != file.sha256 {
                return Err(PackError::HashMismatch {
                    name,
                    expected: file.sha256.clone(),
                    actual,
                }
                .into());
            }
        }
        if let Some((name, _)) = wanted.iter().find(|(_, (_, seen))| !seen) {
            return Err(PackError::MissingFile(name.to_string()).into());
        }
        Ok(())
    }
}

/// The manifest's files must be exactly those the lock names, with the lock's hashes (and
/// sizes, where the lock records them).
fn check_files_against_lock(manifest: &Manifest, lock: &Lock) -> Result<(), EnvError> {
    let planned = plan(lock, &manifest.platform)?;
    let listed: BTreeMap<&str, &PackedFile> = manifest
        .files
        .iter()
        .map(|f| (f.name.as_str(), f))
        .collect();
    if listed.len() != manifest.files.len() {
        return Err(PackError::ManifestMismatch("it lists a file twice".into()).into());
    }
    for file in &planned {
        let Some(packed) = listed.get(file.name.as_str()) else {
            return Err(PackError::ManifestMismatch(format!(
                "it lacks {}, which the lock names",
                file.name
            ))
            .into());
        };
        if packed.sha256 != file.sha256 {
            return Err(PackError::ManifestMismatch(format!(
                "it gives {} the sha256 {}, the lock says {}",
                file.name, packed.sha256, file.sha256
            ))
            .into());
        }
        if let Some(size) = file.size.filter(|s| *s != packed.size) {
            return Err(PackError::ManifestMismatch(format!(
                "it gives {} the size {}, the lock says {size}",
                file.name, packed.size
            ))
            .into());
        }
    }
    if let Some(extra) = manifest
        .files
        .iter()
        .find(|f| !planned.iter().any(|p| p.name == f.name))
    {
        return Err(PackError::ManifestMismatch(format!(
            "it lists {}, which the lock does not name",
            extra.name
        ))
        .into());
    }
    Ok(())
}

/// `lock.json`'s bytes against the manifest.
fn check_bytes(expected: &PackedFile, bytes: &[u8]) -> Result<(), PackError> {
    let actual = sha256_hex(bytes);
    if bytes.len() as u64 != expected.size || actual != expected.sha256 {
        return Err(PackError::LockFileChanged {
            expected: expected.sha256.clone(),
            actual,
        });
    }
    Ok(())
}

/// The tar stream of a pack file, decompressed by its magic number, and whether it was
/// compressed.
fn open_archive(path: &Path) -> Result<(tar::Archive<Box<dyn Read>>, bool), EnvError> {
    let unreadable = |source| PackError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(|e| EnvError::io(path, "cannot read", e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let magic = reader.fill_buf().map_err(unreadable)?;
    let (stream, compressed): (Box<dyn Read>, bool) =
        if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            (
                Box::new(zstd::Decoder::with_buffer(reader).map_err(unreadable)?),
                true,
            )
        } else if magic.starts_with(&[0x1f, 0x8b]) {
            (Box::new(flate2::bufread::GzDecoder::new(reader)), true)
        } else {
            (Box::new(reader), false)
        };
    Ok((tar::Archive::new(stream), compressed))
}

/// An entry's path, refused if it is not a regular file or if it leaves the pack.
fn entry_name<R: Read>(entry: &tar::Entry<'_, R>) -> Result<String, PackError> {
    let raw = entry.path_bytes();
    let name = String::from_utf8_lossy(&raw).into_owned();
    let escapes = name.starts_with('/')
        || name.starts_with('\\')
        || name.split(['/', '\\']).any(|part| part == "..");
    if escapes {
        return Err(PackError::EscapingPath(name));
    }
    if !entry.header().entry_type().is_file() {
        return Err(PackError::NotAFile(name));
    }
    Ok(name)
}

/// The whole of a small entry, refused beyond `limit` bytes.
fn read_small<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    name: &str,
    limit: u64,
    path: &Path,
) -> Result<Vec<u8>, EnvError> {
    let size = entry.header().entry_size().unwrap_or(u64::MAX);
    if size > limit {
        return Err(PackError::TooLarge {
            declared: size,
            limit,
            what: if name == MANIFEST {
                "the limit for a pack manifest"
            } else {
                "the limit for a lock"
            },
        }
        .into());
    }
    let mut bytes = Vec::with_capacity(size as usize);
    entry
        .take(limit)
        .read_to_end(&mut bytes)
        .map_err(|source| PackError::Unreadable {
            path: path.to_path_buf(),
            source,
        })?;
    if (bytes.len() as u64) < size {
        return Err(cut_short(path).into());
    }
    Ok(bytes)
}

fn cut_short(path: &Path) -> PackError {
    PackError::Unreadable {
        path: path.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the archive is cut short",
        ),
    }
}

/// Bytes available to this user on the filesystem holding `dir`.
fn free_space(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a NUL-terminated string and `stat` is written by statvfs before it is
    // read, only when the call succeeds.
    #[allow(unsafe_code)]
    unsafe {
        if libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) != 0 {
            return None;
        }
        let stat = stat.assume_init();
        // The field types differ between platforms.
        #[allow(clippy::unnecessary_cast)]
        Some((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
    }
}

/// The pylock to install a pack's checked PyPI packages with: each package's wheel is the
/// pack's file (`wheels/<file name>`, relative to the pylock written beside it), so that uv
/// installs with no index and no network.
pub(crate) fn local_pylock(section: &PlatformLock) -> Result<String, EnvError> {
    let bad = |message: String| {
        EnvError::Build(format!(
            "the lock's pylock cannot be installed from a pack: {message}"
        ))
    };
    let text = section
        .pylock
        .as_deref()
        .ok_or_else(|| bad("the lock has no pylock".into()))?;
    let mut doc: toml::Table = text.parse().map_err(|e| bad(format!("{e}")))?;
    let locked: BTreeMap<&str, &terrarium_lock::LockedPypi> =
        section.pypi.iter().map(|p| (p.name.as_str(), p)).collect();
    let packages = doc
        .get_mut("packages")
        .and_then(|p| p.as_array_mut())
        .ok_or_else(|| bad("it has no packages".into()))?;
    for package in packages.iter_mut() {
        let table = package
            .as_table_mut()
            .ok_or_else(|| bad("a package is not a table".into()))?;
        let name = table
            .get("name")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        let pypi = locked.get(name.as_str()).ok_or_else(|| {
            bad(format!(
                "it names {name}, which the lock's package list lacks"
            ))
        })?;
        let file_name = url_file_name(&pypi.url);
        let first = table
            .get("wheels")
            .and_then(|w| w.as_array())
            .and_then(|w| w.first())
            .and_then(|w| w.get("url").or_else(|| w.get("path")))
            .and_then(|v| v.as_str())
            .map(url_file_name);
        if first.as_deref() != Some(file_name.as_str()) {
            return Err(bad(format!(
                "its wheel for {name} is not the one the lock names"
            )));
        }
        // No hash: every file was checked against the lock as it was unpacked, into a
        // directory only this process writes; uv hashing each wheel again would read them
        // all twice (a third of uv's time on a 130 MB environment).
        let hashes = toml::Table::new();
        let mut wheel = toml::Table::new();
        wheel.insert(
            "path".into(),
            toml::Value::String(format!("{WHEELS_DIR}/{file_name}")),
        );
        wheel.insert("hashes".into(), toml::Value::Table(hashes));
        table.insert(
            "wheels".into(),
            toml::Value::Array(vec![toml::Value::Table(wheel)]),
        );
        for source in ["sdist", "archive", "directory", "vcs"] {
            table.remove(source);
        }
    }
    toml::to_string(&doc).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use terrarium_lock::{LockedConda, LockedPypi, LockedPython, LOCK_VERSION};

    use super::*;

    const ALPHA: &[u8] = b"alpha wheel bytes";
    const BETA: &[u8] = b"beta wheel bytes, a local version";
    const LIBALPHA: &[u8] = b"libalpha conda archive bytes";
    const ALPHA_URL: &str = "https://files.example/packages/alpha-1.0-py3-none-any.whl";
    const BETA_URL: &str = "https://files.example/packages/beta-2.1%2Blocal-py3-none-any.whl";
    const LIBALPHA_URL: &str = "https://conda.example/channel/noarch/libalpha-1.0-0.tar.bz2";

    /// A lock with one conda package and two wheels (one with a percent-encoded name), and
    /// the bytes at each URL.
    fn sample() -> (Lock, BTreeMap<&'static str, &'static [u8]>) {
        let record = serde_json::json!({
            "name": "libalpha", "version": "1.0", "build": "0", "build_number": 0,
            "subdir": "noarch", "depends": [], "sha256": sha256_hex(LIBALPHA),
            "size": LIBALPHA.len(), "url": LIBALPHA_URL, "channel": "https://conda.example/channel/",
            "fn": "libalpha-1.0-0.tar.bz2",
        });
        let pylock = format!(
            "lock-version = \"1.0\"\ncreated-by = \"uv\"\n\n[[packages]]\nname = \"alpha\"\nversion = \"1.0\"\nwheels = [{{ url = \"{ALPHA_URL}\", size = {}, hashes = {{ sha256 = \"{}\" }} }}]\n\n[[packages]]\nname = \"beta\"\nversion = \"2.1+local\"\nsdist = {{ url = \"https://files.example/beta-2.1.tar.gz\", hashes = {{ sha256 = \"00\" }} }}\nwheels = [{{ url = \"{BETA_URL}\", hashes = {{ sha256 = \"{}\" }} }}]\n",
            ALPHA.len(),
            sha256_hex(ALPHA),
            sha256_hex(BETA)
        );
        let section = PlatformLock {
            python: Some(LockedPython {
                interpreter: None,
                version: "3.11.7".into(),
            }),
            conda: vec![LockedConda {
                name: "libalpha".into(),
                version: "1.0".into(),
                build: "0".into(),
                url: LIBALPHA_URL.into(),
                sha256: sha256_hex(LIBALPHA),
                record,
            }],
            pypi: vec![
                LockedPypi {
                    name: "alpha".into(),
                    version: "1.0".into(),
                    url: ALPHA_URL.into(),
                    sha256: sha256_hex(ALPHA),
                },
                LockedPypi {
                    name: "beta".into(),
                    version: "2.1+local".into(),
                    url: BETA_URL.into(),
                    sha256: sha256_hex(BETA),
                },
            ],
            pylock: Some(pylock),
        };
        let lock = Lock {
            lock_version: LOCK_VERSION,
            kind: LockKind::Resolved,
            content_hash: "sha256:00".into(),
            platforms: BTreeMap::from([("linux-64".to_string(), section)]),
            tools: BTreeMap::new(),
        };
        let files = BTreeMap::from([
            (ALPHA_URL, ALPHA),
            (BETA_URL, BETA),
            (LIBALPHA_URL, LIBALPHA),
        ]);
        (lock, files)
    }

    /// The pack of `lock` with the files at its URLs served from memory.
    fn pack_bytes(
        lock: &Lock,
        files: &BTreeMap<&str, &[u8]>,
        compression: Compression,
    ) -> Result<Vec<u8>, EnvError> {
        let dir = tempfile::tempdir().unwrap();
        let planned = plan(lock, "linux-64")?;
        let sources: Vec<PathBuf> = planned
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let path = dir.path().join(i.to_string());
                std::fs::write(&path, files[p.url.as_str()]).unwrap();
                path
            })
            .collect();
        let mut out = tempfile::tempfile().unwrap();
        write_archive(lock, "linux-64", &planned, &sources, &mut out, compression)?;
        let mut bytes = Vec::new();
        use std::io::Seek;
        out.rewind().unwrap();
        out.read_to_end(&mut bytes).unwrap();
        Ok(bytes)
    }

    /// A pack file with `bytes`, opened; the file lives as long as the value.
    struct Opened {
        pack: Pack,
        _file: tempfile::NamedTempFile,
    }

    fn open_bytes(bytes: &[u8]) -> Result<Opened, EnvError> {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), bytes).unwrap();
        Ok(Opened {
            pack: Pack::open(file.path(), None)?,
            _file: file,
        })
    }

    /// The entries of a plain tar, in order.
    fn entries(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut archive = tar::Archive::new(bytes);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (name, data)
            })
            .collect()
    }

    /// A tar of raw entries: names as given (`..` included), any entry type.
    fn raw_tar(entries: &[(String, Vec<u8>, tar::EntryType)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data, kind) in entries {
            let mut header = tar::Header::new_gnu();
            header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
            header.set_entry_type(*kind);
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append(&header, data.as_slice()).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn regular(entries: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>, tar::EntryType)> {
        entries
            .into_iter()
            .map(|(n, d)| (n, d, tar::EntryType::Regular))
            .collect()
    }

    #[test]
    fn the_same_lock_packs_to_the_same_bytes() {
        let (lock, files) = sample();
        let plain = pack_bytes(&lock, &files, Compression::None).unwrap();
        assert_eq!(plain, pack_bytes(&lock, &files, Compression::None).unwrap());
        let zstd = pack_bytes(&lock, &files, Compression::Zstd).unwrap();
        assert_eq!(zstd, pack_bytes(&lock, &files, Compression::Zstd).unwrap());
        assert_ne!(plain, zstd);
        let names: Vec<String> = entries(&plain).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "pack.json",
                "lock.json",
                "conda/libalpha-1.0-0.tar.bz2",
                "wheels/alpha-1.0-py3-none-any.whl",
                "wheels/beta-2.1+local-py3-none-any.whl",
            ]
        );
        for bytes in [&plain, &zstd] {
            let opened = open_bytes(bytes).unwrap();
            let pack = &opened.pack;
            assert_eq!(pack.lock(), &lock);
            let summary = pack.summary();
            assert_eq!(summary.lock_hash, lock.lock_hash());
            assert_eq!(summary.files, 3);
            assert_eq!(
                summary.content_bytes,
                (ALPHA.len() + BETA.len() + LIBALPHA.len()) as u64
            );
            pack.check().unwrap();
        }
        // A gzipped pack (as `gzip pack.tar` leaves it) is read too.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&plain).unwrap();
        open_bytes(&gz.finish().unwrap())
            .unwrap()
            .pack
            .check()
            .unwrap();
    }

    /// Packs written by pack format 1 are read by every later Terrarium, and the same lock
    /// still packs to the same bytes.
    #[test]
    fn pack_format_1_fixture() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pack-v1.tar");
        let (lock, files) = sample();
        let bytes = pack_bytes(&lock, &files, Compression::None).unwrap();
        if std::env::var_os("TERRARIUM_UPDATE_FIXTURES").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let pack = Pack::open(&path, None).unwrap();
        pack.check().unwrap();
        assert_eq!(pack.manifest().pack_version, 1);
        assert_eq!(
            pack.manifest().lock_hash,
            "sha256:21d70ad085ce71baa8b578e8658e68f434eb6e4b9b923155b54e8a90acd57765",
            "the lock hash of a stored pack must never change"
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "the same lock must pack to the same bytes"
        );
    }

    #[test]
    fn damaged_packs_are_refused() {
        let (lock, files) = sample();
        let good = entries(&pack_bytes(&lock, &files, Compression::None).unwrap());
        let wheel = good
            .iter()
            .position(|(n, _)| n.starts_with("wheels/alpha"))
            .unwrap();
        let manifest: Manifest = serde_json::from_slice(&good[0].1).unwrap();
        let with_manifest = |manifest: &Manifest| {
            let mut e = good.clone();
            e[0].1 = serde_json::to_vec_pretty(manifest).unwrap();
            e
        };
        let mut cases: Vec<(&str, Vec<u8>, &str)> = Vec::new();

        let mut e = good.clone();
        e[wheel].1[3] ^= 1;
        cases.push((
            "a byte flipped in a wheel",
            raw_tar(&regular(e)),
            "wheels/alpha-1.0-py3-none-any.whl in the pack is not the file the lock names",
        ));

        let mut e = good.clone();
        let text = String::from_utf8(e[1].1.clone())
            .unwrap()
            .replace("\"version\": \"1.0\"", "\"version\": \"1.1\"");
        e[1].1 = text.into_bytes();
        cases.push((
            "the lock edited",
            raw_tar(&regular(e.clone())),
            "the pack's lock.json was changed",
        ));

        let mut m = manifest.clone();
        m.lock.sha256 = sha256_hex(&e[1].1);
        let mut e2 = with_manifest(&m);
        e2[1].1 = e[1].1.clone();
        cases.push((
            "the lock and the manifest's hash of it edited",
            raw_tar(&regular(e2)),
            "the pack's lock was changed: it hashes to",
        ));

        let mut e = good.clone();
        e.push(("../evil".into(), b"boo".to_vec()));
        cases.push((
            "an entry that climbs out",
            raw_tar(&regular(e)),
            "the pack entry `../evil` escapes",
        ));

        let mut e = good.clone();
        e.push(("/etc/evil".into(), b"boo".to_vec()));
        cases.push((
            "an absolute entry",
            raw_tar(&regular(e)),
            "the pack entry `/etc/evil` escapes",
        ));

        let mut e = regular(good.clone());
        e[wheel].2 = tar::EntryType::Symlink;
        e[wheel].1.clear();
        cases.push(("a link", raw_tar(&e), "is not a regular file"));

        let mut e = good.clone();
        e.push((
            "wheels/extra-1.0-py3-none-any.whl".into(),
            b"extra".to_vec(),
        ));
        cases.push((
            "an entry the manifest lacks",
            raw_tar(&regular(e)),
            "`wheels/extra-1.0-py3-none-any.whl` is not in its manifest",
        ));

        let mut e = good.clone();
        e.push(e[wheel].clone());
        cases.push(("an entry twice", raw_tar(&regular(e)), "appears twice"));

        let mut e = good.clone();
        e.remove(wheel);
        cases.push((
            "a file missing",
            raw_tar(&regular(e)),
            "the pack lacks wheels/alpha-1.0-py3-none-any.whl",
        ));

        let mut m = manifest.clone();
        m.files.retain(|f| !f.name.starts_with("wheels/alpha"));
        let mut e = with_manifest(&m);
        e.remove(wheel);
        cases.push((
            "a file the lock names left out of the manifest",
            raw_tar(&regular(e)),
            "lacks wheels/alpha-1.0-py3-none-any.whl, which the lock names",
        ));

        // beta's size is not in the lock: a huge declared size is caught by the archive's.
        let mut m = manifest.clone();
        let beta = m
            .files
            .iter_mut()
            .find(|f| f.name.contains("beta"))
            .unwrap();
        beta.size = 1 << 40;
        cases.push((
            "a bomb: a file declared far larger than the archive",
            raw_tar(&regular(with_manifest(&m))),
            "more than",
        ));

        let mut m = manifest.clone();
        m.files[0].size += 1;
        cases.push((
            "a size that disagrees with the lock",
            raw_tar(&regular(with_manifest(&m))),
            "the lock says",
        ));

        let mut m = manifest.clone();
        m.pack_version = 2;
        cases.push((
            "a newer format",
            raw_tar(&regular(with_manifest(&m))),
            "pack version 2 is not one this terrarium understands",
        ));

        let mut e = good.clone();
        e.swap(0, 1);
        cases.push((
            "no manifest first",
            raw_tar(&regular(e)),
            "the archive has no pack manifest",
        ));

        let plain = raw_tar(&regular(good.clone()));
        cases.push((
            "cut short",
            plain[..plain.len() - 1024 - 600].to_vec(),
            "is not a readable pack",
        ));

        cases.push((
            "not a tar",
            b"just some text".to_vec(),
            "is not a readable pack",
        ));

        let mut compared = 0;
        for (what, bytes, expected) in &cases {
            let err = open_bytes(bytes).and_then(|opened| opened.pack.check());
            let err = match err {
                Ok(()) => panic!("{what}: the pack was accepted"),
                Err(err) => err,
            };
            assert!(err.is_user_error(), "{what}: {err} is not the user's");
            let text = terrarium_spec::error::error_chain(&err);
            assert!(text.contains(expected), "{what}: {text}");
            compared += 1;
        }
        assert_eq!(compared, 16);
    }

    #[test]
    fn a_pack_of_another_lock_is_refused_when_one_is_expected() {
        let (lock, files) = sample();
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            file.path(),
            pack_bytes(&lock, &files, Compression::None).unwrap(),
        )
        .unwrap();
        Pack::open(file.path(), Some(&lock.lock_hash())).unwrap();
        let err = Pack::open(file.path(), Some("sha256:00")).unwrap_err();
        assert!(err.to_string().contains("not sha256:00"), "{err}");
    }

    #[test]
    fn unpacked_files_are_the_checked_ones() {
        let (lock, files) = sample();
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            file.path(),
            pack_bytes(&lock, &files, Compression::Zstd).unwrap(),
        )
        .unwrap();
        let pack = Pack::open(file.path(), None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        pack.unpack_files(dir.path()).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("wheels/beta-2.1+local-py3-none-any.whl")).unwrap(),
            BETA
        );
        assert_eq!(
            std::fs::read(dir.path().join("conda/libalpha-1.0-0.tar.bz2")).unwrap(),
            LIBALPHA
        );
        let pylock: toml::Table = local_pylock(&lock.platforms["linux-64"])
            .unwrap()
            .parse()
            .unwrap();
        let beta = &pylock["packages"].as_array().unwrap()[1];
        assert!(beta.get("sdist").is_none());
        let wheel = &beta["wheels"].as_array().unwrap()[0];
        assert_eq!(
            wheel["path"].as_str(),
            Some("wheels/beta-2.1+local-py3-none-any.whl")
        );
        assert_eq!(wheel["hashes"].as_table().map(|t| t.len()), Some(0));
    }

    #[test]
    fn what_cannot_be_packed() {
        let (lock, _) = sample();
        let mut user = lock.clone();
        user.kind = LockKind::UserManaged;
        assert!(matches!(
            plan(&user, "linux-64"),
            Err(EnvError::Pack(PackError::UserManaged))
        ));
        let mut sdist = lock.clone();
        sdist.platforms.get_mut("linux-64").unwrap().pypi[0].url =
            "https://files.example/alpha-1.0.tar.gz".into();
        let err = plan(&sdist, "linux-64").unwrap_err();
        assert!(err.to_string().contains("not as a wheel"), "{err}");
        assert!(err.is_user_error());
        let err = plan(&lock, "osx-arm64").unwrap_err();
        assert!(err.is_user_error(), "{err}");
        for bad in ["..", ".", "", "a/b", "a\\b"] {
            assert!(plain_file_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            url_file_name("file:///wheels/x-1.0%2Bcu121-py3-none-any.whl?x=1#sha256=00"),
            "x-1.0+cu121-py3-none-any.whl"
        );
        assert_eq!(url_file_name("/w/%2F..%zz"), "/..%zz");
    }

    #[test]
    fn a_source_that_changed_is_not_packed() {
        let (mut lock, _) = sample();
        let dir = tempfile::tempdir().unwrap();
        let section = lock.platforms.get_mut("linux-64").unwrap();
        section.conda.clear();
        section.pypi.truncate(1);
        let wheel = dir.path().join("alpha-1.0-py3-none-any.whl");
        std::fs::write(&wheel, b"not the alpha the lock names").unwrap();
        section.pypi[0].url = format!("file://{}", wheel.display());
        section.pylock = None;
        let out = dir.path().join("out.tar");
        let err = write(&lock, "linux-64", &out, Compression::None, &crate::Quiet).unwrap_err();
        assert!(
            err.to_string().contains("is not the file the lock names"),
            "{err}"
        );
        assert!(!err.is_user_error());
        assert!(!out.exists());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    }
}
