//! `terrarium env update`

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use terrarium_store::MetadataUpdate;

use crate::commands::Context;
use crate::{printer, workspace};

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// NAME, NAME:VERSION or NAME@LABEL.
    reference: String,
    /// A new description ("" clears it).
    #[arg(long)]
    description: Option<String>,
    /// Set a tag KEY=VALUE (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = super::parse_key_value)]
    tags: Vec<(String, String)>,
    /// Remove a tag (repeatable).
    #[arg(long = "untag", value_name = "KEY")]
    untag: Vec<String>,
    /// Print the version as JSON.
    #[arg(long)]
    json: bool,
}

pub fn update(context: &Context, args: UpdateArgs) -> Result<ExitCode> {
    if args.description.is_none() && args.tags.is_empty() && args.untag.is_empty() {
        return Err(printer::user_error(
            "nothing to update",
            Some("pass --description, --tag or --untag"),
        ));
    }
    let reference = super::parse_reference(&args.reference)?;
    let store = context.store()?;
    let record = store.resolve(&reference)?;
    let update = MetadataUpdate {
        description: args.description.map(|d| (!d.is_empty()).then_some(d)),
        set_tags: args.tags.into_iter().collect(),
        remove_tags: args.untag,
    };
    let updated =
        store.update_metadata(&record.name, &record.version, &update, &workspace::actor())?;
    if args.json {
        printer::json(&updated)?;
    } else {
        printer::status(&format!(
            "updated {}:{} (same version, same content hash)",
            updated.name, updated.version
        ));
    }
    Ok(ExitCode::SUCCESS)
}
