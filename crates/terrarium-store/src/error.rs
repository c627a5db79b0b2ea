//! Store errors.

/// Errors from a workspace store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No environment, version or label by that reference.
    #[error("{0} not found")]
    NotFound(String),
    /// Versions are immutable: the explicit version exists with other content.
    #[error("{name}:{version} already exists with different content (content hash {existing}); versions are immutable")]
    VersionConflict {
        name: String,
        version: String,
        existing: String,
    },
    /// `curated/` names are read-only.
    #[error("`{0}` is a curated environment and is read-only")]
    Curated(String),
    /// A version cannot be deleted while something refers to it.
    #[error("{reference} cannot be deleted: {reason}")]
    Referenced { reference: String, reason: String },
    /// The request is not valid (bad name, label, ...).
    #[error("{0}")]
    Invalid(String),
    /// Every version of the environment is archived (or the environment is).
    #[error("{0}")]
    Archived(String),
    /// The database failed.
    #[error("database error")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Stored data could not be decoded.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A remote workspace refused the request (authentication, permission, validation, ...).
    #[error("{message}")]
    Remote {
        status: u16,
        code: String,
        message: String,
    },
    /// A remote workspace could not be reached, or answered something that is not the API.
    #[error("{0}")]
    Transport(String),
    /// The request was cancelled (it timed out) before its change committed; nothing changed.
    #[error("the request was cancelled before its change was made; nothing changed")]
    Cancelled,
    /// A curated definition shipped in the binary does not parse (a defect of the build).
    #[error("curated definition {file} is invalid")]
    CuratedInvalid {
        file: String,
        #[source]
        source: terrarium_spec::SpecError,
    },
    /// The workspace directory could not be created or opened.
    #[error("cannot open the workspace at {path}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        Self::Database(Box::new(err))
    }
}

impl StoreError {
    /// Errors caused by the request rather than by the system.
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::Remote { status, .. } => *status < 500,
            Self::Database(_)
            | Self::Corrupt(_)
            | Self::Open { .. }
            | Self::Transport(_)
            | Self::Cancelled
            | Self::CuratedInvalid { .. } => false,
            _ => true,
        }
    }
}

/// Records both backends keep as JSON text (deployments, image builds), decoded; `what` names
/// them in the error.
pub(crate) fn decode_records<T: serde::de::DeserializeOwned>(
    records: &[String],
    what: &str,
) -> Result<Vec<T>, StoreError> {
    records
        .iter()
        .map(|r| serde_json::from_str(r).map_err(|e| StoreError::Corrupt(format!("{what}: {e}"))))
        .collect()
}
