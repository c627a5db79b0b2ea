//! Errors of compute targets and the jobs run on them.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ComputeError {
    /// The target's kind is not one this version knows.
    #[error("unknown compute kind `{given}` (known: {known})")]
    UnknownKind { given: String, known: String },
    /// A target option is unknown to its kind, or its value is malformed.
    #[error("compute target `{target}`: option `{option}`: {reason}")]
    Option {
        target: String,
        option: String,
        reason: String,
    },
    /// A job's resource request is malformed.
    #[error("{what}: {reason}")]
    Resources { what: &'static str, reason: String },
    /// An engine program the target needs is not installed here.
    #[error("compute target `{target}`: `{program}` was not found on PATH")]
    MissingProgram { target: String, program: String },
    /// The engine answered with a refusal or could not be reached.
    #[error("compute target `{target}`: {message}")]
    Engine { target: String, message: String },
    /// An engine's client program did not answer in time (a Slurm controller that is down).
    #[error("compute target `{target}`: `{program}` did not answer within {seconds} s: is the engine running and reachable?")]
    Silent {
        target: String,
        program: String,
        seconds: u64,
    },

    /// The engine's address did not answer (refused, timed out, no such host).
    #[error("compute target `{target}`: {url} (option `{option}`) cannot be reached: {why}")]
    Unreachable {
        target: String,
        option: &'static str,
        url: String,
        /// What went wrong, in a few words (`connection refused`, `no answer within 5 s`).
        why: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The environment's locked `ray` is not the version the Ray cluster runs: a script that
    /// imports ray could not join the cluster.
    #[error("compute target `{target}` runs ray {cluster}, but the environment {environment} holds ray {locked}; they must be the same version")]
    RayVersion {
        target: String,
        environment: String,
        cluster: String,
        locked: String,
    },
    /// The lock a built prefix records could not be read.
    #[error("cannot read the lock of the built environment at {}", path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: terrarium_lock::LockError,
    },
    /// The engine's answer could not be read.
    #[error("compute target `{target}`: cannot read the engine's answer to `{request}`: {reason}")]
    Answer {
        target: String,
        request: String,
        reason: String,
    },
    /// Running in a container needs a program this machine lacks.
    #[error("running in a container needs `{program}` on PATH")]
    ContainerTool { program: &'static str },
    /// Running in a container needs root here (runc without rootless setup).
    #[error("running in a container runs runc, which needs root here")]
    ContainerNeedsRoot,
    /// An image could not be unpacked into a bundle.
    #[error("cannot unpack {image}: {reason}")]
    Unpack { image: String, reason: String },
    /// The workspace refused or failed.
    #[error(transparent)]
    Store(#[from] terrarium_store::StoreError),
    /// A file of the job could not be read or written.
    #[error("cannot {action} {}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl ComputeError {
    /// Whether the user can fix this by changing what they asked for (exit 2), rather than a
    /// failure of the engine or this machine (exit 1).
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Self::UnknownKind { .. }
                | Self::Option { .. }
                | Self::Resources { .. }
                | Self::RayVersion { .. }
                | Self::ContainerTool { .. }
                | Self::ContainerNeedsRoot
        ) || matches!(self, Self::Store(err) if err.is_user_error())
    }

    pub(crate) fn io(
        path: impl Into<PathBuf>,
        action: &'static str,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            path: path.into(),
            action,
            source,
        }
    }
}
