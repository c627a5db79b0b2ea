//! Errors of the deployment module: its local folder, the liveness checks, stopping.

use std::path::PathBuf;
use std::time::Duration;

/// Errors from running, checking or stopping a deployment on this machine.
#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    /// The name cannot name a deployment's files (empty, a path, or hidden).
    #[error("invalid deployment name `{}`", .0.escape_debug())]
    InvalidName(String),
    /// A file or folder could not be read (the model's, the deployment's log).
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file or folder of the deployments folder could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// What the pidfile needs from the system (this process's start time, random bytes)
    /// could not be read.
    #[error("cannot read {what}")]
    System {
        what: &'static str,
        #[source]
        source: Option<std::io::Error>,
    },
    /// The service could not start serving (an address in use, an invalid `swagger.json`).
    #[error("cannot serve")]
    Serve(#[source] std::io::Error),
    /// A change of the deployment's state could not be recorded.
    #[error("cannot record the deployment's state")]
    Record(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The record says the deployment runs on another machine: its process and log are there.
    #[error("deployment {name} runs on {host}")]
    Elsewhere { name: String, host: String },
    /// A live process that cannot be confirmed as the deployment (its record may have been
    /// changed by someone else); `why` says why, and nothing was signalled.
    #[error("{why}; the record of deployment {name} may have been changed by someone else; nothing was signalled")]
    Unverified { name: String, why: String },
    /// `kill` could not be started.
    #[error("cannot run kill")]
    Kill(#[source] std::io::Error),
    /// The deployment's process could not be signalled.
    #[error("cannot signal process {pid} of deployment {name}")]
    Signal { name: String, pid: u32 },
    /// The deployment's process still runs after the wait, finishing requests.
    #[error("deployment {name} (pid {pid}) is still finishing requests after {} s", wait.as_secs())]
    StillRunning {
        name: String,
        pid: u32,
        wait: Duration,
    },
}

impl DeploymentError {
    /// Errors in the request (a name, a port in use, a deployment that runs elsewhere or
    /// cannot be confirmed) rather than failures of the system.
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::InvalidName(_)
            | Self::Serve(_)
            | Self::Elsewhere { .. }
            | Self::Unverified { .. }
            | Self::Signal { .. }
            | Self::StillRunning { .. } => true,
            Self::Read { .. }
            | Self::Write { .. }
            | Self::System { .. }
            | Self::Record(_)
            | Self::Kill(_) => false,
        }
    }
}
