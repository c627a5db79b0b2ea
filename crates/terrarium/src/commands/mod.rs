//! One module per command group; one file per command.

use std::path::PathBuf;

pub mod audit;
pub mod cache;
pub mod compute;
pub mod curated;
pub mod deploy;
pub mod deployments;
pub mod env;
pub mod image;
pub mod jobs;
pub mod run;
pub mod runs;
pub mod server;
pub mod token;

/// What every command gets: the global options.
#[derive(Debug)]
pub struct Context {
    pub workspace: Option<PathBuf>,
}

impl Context {
    pub fn store(&self) -> anyhow::Result<Box<dyn terrarium_store::Store>> {
        crate::workspace::open(self.workspace.clone())
    }

    /// Where run logs are saved.
    pub fn runs_dir(&self) -> anyhow::Result<PathBuf> {
        crate::workspace::runs_dir(self.workspace.clone())
    }
}
