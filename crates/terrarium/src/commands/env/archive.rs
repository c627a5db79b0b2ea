//! `terrarium env archive` and `terrarium env restore`

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use terrarium_spec::names::Reference;

use crate::commands::Context;
use crate::{printer, workspace};

#[derive(Debug, Args)]
pub struct ArchiveArgs {
    /// NAME for the whole environment, or NAME:VERSION / NAME@LABEL for one version.
    reference: String,
}

pub fn archive(context: &Context, args: ArchiveArgs, archived: bool) -> Result<ExitCode> {
    let reference = super::parse_reference(&args.reference)?;
    let store = context.store()?;
    let verb = if archived { "archived" } else { "restored" };
    match &reference {
        Reference::Latest(name) => {
            store.set_archived(name, None, archived, &workspace::actor())?;
            printer::status(&format!("{verb} environment {name}"));
        }
        _ => {
            let record = store.resolve(&reference)?;
            store.set_archived(
                &record.name,
                Some(&record.version),
                archived,
                &workspace::actor(),
            )?;
            printer::status(&format!("{verb} {}:{}", record.name, record.version));
        }
    }
    Ok(ExitCode::SUCCESS)
}
