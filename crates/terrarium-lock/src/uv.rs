//! The uv that a lock's PyPI part is made with and installed with (the lock's `tools` name its
//! version), and the settings it always runs under. Finding or bootstrapping uv is
//! `terrarium-resolve`'s job (`terrarium_resolve::uv::find`); here is only the handle, so that
//! locking and installing run uv the same way.

use std::path::PathBuf;
use std::process::Command;

/// A uv binary and its version.
#[derive(Debug, Clone)]
pub struct Uv {
    pub path: PathBuf,
    pub version: String,
}

impl Uv {
    /// A `uv` command with the settings that keep it reproducible and offline-friendly: never
    /// download interpreters, ignore user and project configuration files.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.path);
        cmd.env("UV_PYTHON_DOWNLOADS", "never");
        cmd.env("UV_NO_CONFIG", "1");
        cmd.env_remove("VIRTUAL_ENV");
        cmd.env_remove("CONDA_PREFIX");
        cmd
    }
}
