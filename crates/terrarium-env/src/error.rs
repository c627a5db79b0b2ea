//! Environment build and pack errors.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// Building the prefix failed.
    #[error("{0}")]
    Build(String),
    /// The lock could not be read.
    #[error(transparent)]
    Lock(#[from] terrarium_lock::LockError),
    /// Writing or reading a pack failed, or a pack was refused.
    #[error(transparent)]
    Pack(#[from] PackError),
    /// A file operation failed.
    #[error("{}: {action}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl EnvError {
    /// Errors in what was asked (a lock that cannot be used here, a pack that does not match
    /// its lock) rather than failures of this machine (a file that cannot be written, an
    /// installer that failed).
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::Lock(err) => err.is_user_error(),
            Self::Pack(err) => err.is_user_error(),
            Self::Build(_) | Self::Io { .. } => false,
        }
    }

    pub fn io(path: impl Into<PathBuf>, action: &'static str, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            action,
            source,
        }
    }
}

/// Why a lock cannot be packed, or why a pack is refused. Every refusal happens before
/// anything is built.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// A user-managed environment is recorded, not built by Terrarium: there is nothing to pack.
    #[error("a user-managed environment cannot be packed: Terrarium does not build it")]
    UserManaged,
    /// A PyPI package is locked as a source distribution, a directory or a VCS checkout, which
    /// cannot be installed without building it (and fetching its build dependencies).
    #[error("PyPI package {name} is locked as `{url}`, not as a wheel; a pack holds only built packages")]
    NotAWheel { name: String, url: String },
    /// A package's file name, taken from the lock, is not a plain file name.
    #[error("the lock names a package file `{0}` that is not a plain file name")]
    BadFileName(String),
    /// Two packages of the lock have the same file name.
    #[error("the lock names {0} twice")]
    DuplicateFile(String),
    /// An artifact could not be fetched from the URL the lock gives.
    #[error("cannot fetch {url}")]
    Fetch {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An artifact fetched while packing is not the one the lock names: its source changed.
    #[error(
        "{url} is not the file the lock names: its sha256 is {actual}, the lock says {expected}"
    )]
    SourceChanged {
        url: String,
        expected: String,
        actual: String,
    },
    /// The pack is not a (plain, gzip or zstd) tar archive, or is cut short.
    #[error("{} is not a readable pack", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The archive does not start with the pack's manifest.
    #[error("the archive has no pack manifest (`pack.json` must be its first entry)")]
    NoManifest,
    /// The manifest is not JSON, or lacks a pack's fields.
    #[error("the pack manifest does not parse")]
    BadManifest(#[source] serde_json::Error),
    /// The pack was written by a newer Terrarium, in a format this one does not know.
    #[error("pack version {found} is not one this terrarium understands ({supported})")]
    UnsupportedVersion { found: u32, supported: u32 },
    /// `lock.json` is not the file the manifest lists.
    #[error(
        "the pack's lock.json was changed: its sha256 is {actual}, the manifest says {expected}"
    )]
    LockFileChanged { expected: String, actual: String },
    /// The lock in the pack does not hash to the lock hash its manifest gives.
    #[error("the pack's lock was changed: it hashes to {actual}, the manifest says {expected}")]
    LockHashMismatch { expected: String, actual: String },
    /// The pack holds another lock than the one asked for.
    #[error("the pack holds lock {actual}, not {expected}")]
    UnexpectedLock { expected: String, actual: String },
    /// The pack was made for another platform than the one it is installed on.
    #[error("the pack is for {pack}, not for {wanted}")]
    WrongPlatform { pack: String, wanted: String },
    /// The manifest's file list is not the one the lock implies.
    #[error("the pack manifest does not match its lock: {0}")]
    ManifestMismatch(String),
    /// An archive entry's path is absolute or climbs out with `..`.
    #[error("the pack entry `{0}` escapes the pack's directory")]
    EscapingPath(String),
    /// An archive entry is a link, a directory or a device rather than a file.
    #[error("the pack entry `{0}` is not a regular file")]
    NotAFile(String),
    /// An archive entry the manifest does not list.
    #[error("the pack entry `{0}` is not in its manifest")]
    UnexpectedEntry(String),
    /// An archive entry appears twice.
    #[error("the pack entry `{0}` appears twice")]
    DuplicateEntry(String),
    /// A file the manifest lists is not in the archive.
    #[error("the pack lacks {0}")]
    MissingFile(String),
    /// A file in the pack is not the size the manifest gives.
    #[error("{name} in the pack is {actual} bytes, the manifest says {expected}")]
    SizeMismatch {
        name: String,
        expected: u64,
        actual: u64,
    },
    /// A file in the pack is not the file the lock names.
    #[error("{name} in the pack is not the file the lock names: its sha256 is {actual}, the lock says {expected}")]
    HashMismatch {
        name: String,
        expected: String,
        actual: String,
    },
    /// The files the pack declares would not fit: more than the archive holds (a plain tar),
    /// or more than the free space where they are unpacked.
    #[error("the pack declares {declared} bytes of files, more than {limit} ({what})")]
    TooLarge {
        declared: u64,
        limit: u64,
        what: &'static str,
    },
    /// `--prefix` names a directory that already has files in it.
    #[error("{} exists and is not empty", .0.display())]
    PrefixNotEmpty(PathBuf),
}

impl PackError {
    /// A refused pack, a lock that cannot be packed or a prefix in use are the user's to fix;
    /// a fetch that failed or a source that changed under its lock are failures.
    pub fn is_user_error(&self) -> bool {
        !matches!(self, Self::Fetch { .. } | Self::SourceChanged { .. })
    }
}
