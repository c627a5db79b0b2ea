//! Environment build errors.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// Building the prefix failed.
    #[error("{0}")]
    Build(String),
    /// The lock could not be read.
    #[error(transparent)]
    Resolve(#[from] terrarium_resolve::ResolveError),
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
    pub fn io(path: impl Into<PathBuf>, action: &'static str, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            action,
            source,
        }
    }
}
