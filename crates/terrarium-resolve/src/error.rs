//! Resolution errors.

use std::path::PathBuf;

/// Errors from locking a definition.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The PyPI requirements cannot be satisfied; the message is uv's explanation, which names
    /// the conflicting packages.
    #[error("the PyPI requirements cannot be resolved:\n{0}")]
    PypiUnsatisfiable(String),
    /// The conda dependencies cannot be satisfied; the message names the conflicting packages.
    #[error("the conda dependencies cannot be resolved:\n{0}")]
    CondaUnsatisfiable(String),
    /// A channel could not be read.
    #[error("cannot read conda channel `{channel}`: {message}")]
    Channel { channel: String, message: String },
    /// No interpreter matches the definition.
    #[error("{0}")]
    Interpreter(String),
    /// uv could not be found or installed.
    #[error("{0}")]
    Uv(String),
    /// An external tool failed to start.
    #[error("cannot run {program}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An artifact could not be fetched to hash it.
    #[error("cannot fetch {url} to record its hash: {message}")]
    Fetch { url: String, message: String },
    /// Reading or writing a file failed.
    #[error("{}: {action}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A part of a lock could not be read or written: uv's `pylock.toml`, a conda record, an
    /// interpreter's list of installed packages.
    #[error("lock format error: {0}")]
    Format(String),
    /// The request is not possible (e.g. an unknown platform).
    #[error("{0}")]
    Invalid(String),
}

impl ResolveError {
    pub fn io(path: impl Into<PathBuf>, action: &'static str, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            action,
            source,
        }
    }

    /// Errors caused by the definition or request rather than by the system.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Self::PypiUnsatisfiable(_)
                | Self::CondaUnsatisfiable(_)
                | Self::Channel { .. }
                | Self::Interpreter(_)
                | Self::Invalid(_)
        )
    }
}
