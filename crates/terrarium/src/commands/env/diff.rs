//! `terrarium env diff`

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use crate::commands::Context;
use crate::printer;

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The old version.
    old: String,
    /// The new version.
    new: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct DiffOutput {
    old: String,
    new: String,
    old_content_hash: String,
    new_content_hash: String,
    identical: bool,
    changes: Vec<terrarium_spec::diff::Change>,
}

pub fn diff(context: &Context, args: DiffArgs) -> Result<ExitCode> {
    let old_ref = super::parse_reference_arg("OLD", &args.old)?;
    let new_ref = super::parse_reference_arg("NEW", &args.new)?;
    let store = context.store()?;
    let old = store.resolve(&old_ref)?;
    let new = store.resolve(&new_ref)?;
    let mut diff = terrarium_spec::diff(&old.definition, &new.definition);
    // With two locks, the resolved packages too (this machine's platform).
    if let (Some(a), Some(b)) = (&old.lock_hash, &new.lock_hash) {
        if a != b {
            let old_lock = terrarium_lock::Lock::from_json(&store.get_lock(a)?)?;
            let new_lock = terrarium_lock::Lock::from_json(&store.get_lock(b)?)?;
            diff.changes
                .extend(old_lock.diff(&new_lock, &terrarium_lock::current_platform()));
        }
    }
    if args.json {
        printer::json(&DiffOutput {
            old: format!("{}:{}", old.name, old.version),
            new: format!("{}:{}", new.name, new.version),
            identical: old.content_hash == new.content_hash,
            old_content_hash: old.content_hash,
            new_content_hash: new.content_hash,
            changes: diff.changes,
        })?;
    } else {
        printer::line(format_args!(
            "--- {}:{} ({})",
            old.name, old.version, old.content_hash
        ))?;
        printer::line(format_args!(
            "+++ {}:{} ({})",
            new.name, new.version, new.content_hash
        ))?;
        printer::out(&diff)?;
    }
    Ok(ExitCode::SUCCESS)
}
