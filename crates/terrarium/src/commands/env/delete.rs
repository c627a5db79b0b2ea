//! `terrarium env delete`

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use terrarium_spec::names::Reference;

use crate::commands::Context;
use crate::{printer, workspace};

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// NAME:VERSION (an explicit version: deleting is never implicit).
    reference: String,
}

pub fn delete(context: &Context, args: DeleteArgs) -> Result<ExitCode> {
    let reference = super::parse_reference(&args.reference)?;
    let Reference::Version(name, version) = reference else {
        return Err(printer::user_error(
            format!("`{}` is not an explicit version", args.reference),
            Some("delete takes NAME:VERSION; to hide a whole environment use `terrarium env archive NAME`"),
        ));
    };
    let store = context.store()?;
    store.delete_version(&name, &version, &workspace::actor())?;
    printer::status(&format!("deleted {name}:{version}"));
    Ok(ExitCode::SUCCESS)
}
