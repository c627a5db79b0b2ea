//! Lock errors.

/// Errors from reading, writing or checking a lock.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The text is not a lock: not JSON, or not a lock's fields.
    #[error("the lock does not parse")]
    Parse(#[source] serde_json::Error),
    /// The lock was written by a newer Terrarium, in a format this one does not know.
    #[error("lock version {found} is newer than this terrarium understands ({supported})")]
    NewerVersion { found: u32, supported: u32 },
    /// A conda package's stored repodata record does not parse.
    #[error("the conda record of {name} does not parse")]
    CondaRecord {
        name: String,
        #[source]
        source: serde_json::Error,
    },
    /// A platform in the lock is not a conda platform name.
    #[error("unknown platform {0}")]
    UnknownPlatform(String),
    /// The lock cannot be written as a standard format (`pixi.lock`).
    #[error("cannot write the lock as {format}")]
    Export {
        format: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The lock has no section for the platform asked for.
    #[error("the lock has no platform {0}")]
    NoPlatform(String),
    /// The lock has no PyPI packages for the platform asked for.
    #[error("the lock has no PyPI packages for {0}")]
    NoPypi(String),
    /// The lock does not belong to the definition it was sent with; the message says why.
    #[error("{0}")]
    Mismatch(String),
}

impl LockError {
    /// Errors in what was asked (a platform the lock lacks, a lock that is not the
    /// definition's) rather than a lock that cannot be read or written.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Self::NoPlatform(_) | Self::NoPypi(_) | Self::Mismatch(_)
        )
    }
}
