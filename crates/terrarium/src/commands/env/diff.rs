//! `terrarium env diff`

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde::Serialize;
use terrarium_store::Store;

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
    let old_ref = super::parse_reference(&args.old)?;
    let new_ref = super::parse_reference(&args.new)?;
    let store = context.store()?;
    let old = store.resolve(&old_ref)?;
    let new = store.resolve(&new_ref)?;
    let diff = terrarium_spec::diff(&old.definition, &new.definition);
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
        println!("--- {}:{} ({})", old.name, old.version, old.content_hash);
        println!("+++ {}:{} ({})", new.name, new.version, new.content_hash);
        print!("{diff}");
    }
    Ok(ExitCode::SUCCESS)
}
