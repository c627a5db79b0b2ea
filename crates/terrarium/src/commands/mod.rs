//! One module per command group; one file per command.

use std::path::PathBuf;

pub mod cache;
pub mod curated;
pub mod env;
pub mod run;
pub mod runs;

/// What every command gets: the global options.
#[derive(Debug)]
pub struct Context {
    pub workspace: Option<PathBuf>,
}

impl Context {
    pub fn store(&self) -> anyhow::Result<terrarium_store::SqliteStore> {
        crate::workspace::open(self.workspace.clone())
    }

    pub fn workspace_dir(&self) -> anyhow::Result<PathBuf> {
        crate::workspace::workspace_dir(self.workspace.clone())
    }
}
