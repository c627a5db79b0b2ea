//! `terrarium env clone`

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use terrarium_store::{RegisterRequest, Source};

use crate::commands::Context;
use crate::{printer, workspace};

#[derive(Debug, Args)]
pub struct CloneArgs {
    /// The version to copy: NAME, NAME:VERSION or NAME@LABEL (curated ones too).
    reference: String,
    /// The new environment's name.
    new_name: String,
    /// Print the new version as JSON.
    #[arg(long)]
    json: bool,
}

pub fn clone(context: &Context, args: CloneArgs) -> Result<ExitCode> {
    let reference = super::parse_reference(&args.reference)?;
    let store = context.store()?;
    let record = store.resolve(&reference)?;
    let mut definition = record.definition.clone();
    definition.name = args.new_name;
    definition.version = None;
    let outcome = store.register(RegisterRequest {
        definition,
        source: Source::new("clone"),
        parent: Some(format!("{}:{}", record.name, record.version)),
        actor: workspace::actor(),
        allow_curated: false,
        force_new: false,
        lock: None,
    })?;
    if args.json {
        printer::json(&outcome.record)?;
    } else {
        printer::line(format_args!(
            "{}:{}",
            outcome.record.name, outcome.record.version
        ))?;
        printer::status(&format!(
            "{} {}:{} from {}:{}",
            if outcome.created {
                "cloned"
            } else {
                "unchanged:"
            },
            outcome.record.name,
            outcome.record.version,
            record.name,
            record.version
        ));
    }
    Ok(ExitCode::SUCCESS)
}
