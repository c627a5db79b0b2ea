//! Environment build errors.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// Building the prefix failed.
    #[error("{0}")]
    Build(String),
    /// The lock could not be read.
    #[error(transparent)]
    Lock(#[from] terrarium_lock::LockError),
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
    /// Errors in what was asked (a lock that cannot be used here) rather than failures of this
    /// machine (a file that cannot be written, an installer that failed).
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::Lock(err) => err.is_user_error(),
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
