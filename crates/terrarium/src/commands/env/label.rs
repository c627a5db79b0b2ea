//! `terrarium env label` and `terrarium env unlabel`

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::commands::Context;
use crate::{printer, workspace};

#[derive(Debug, Args)]
pub struct LabelArgs {
    /// The version to label: NAME:VERSION, NAME@LABEL or NAME (its latest version).
    reference: String,
    /// The label, e.g. `production`.
    label: String,
}

#[derive(Debug, Args)]
pub struct UnlabelArgs {
    /// The environment's name (or NAME@LABEL, with no LABEL argument).
    name: String,
    /// The label to remove.
    label: Option<String>,
}

pub fn label(context: &Context, args: LabelArgs) -> Result<ExitCode> {
    let reference = super::parse_reference(&args.reference)?;
    let store = context.store()?;
    let record = store.resolve(&reference)?;
    store.set_label(
        &record.name,
        &record.version,
        &args.label,
        &workspace::actor(),
    )?;
    printer::status(&format!(
        "{}@{} -> {}:{}",
        record.name, args.label, record.name, record.version
    ));
    Ok(ExitCode::SUCCESS)
}

pub fn unlabel(context: &Context, args: UnlabelArgs) -> Result<ExitCode> {
    let (name, label) = match (args.name.split_once('@'), args.label) {
        (_, Some(label)) => (args.name.clone(), label),
        (Some((name, label)), None) => (name.to_string(), label.to_string()),
        (None, None) => {
            return Err(printer::user_error(
                "which label?",
                Some("terrarium env unlabel NAME LABEL"),
            ))
        }
    };
    let store = context.store()?;
    store.remove_label(&name, &label, &workspace::actor())?;
    printer::status(&format!("removed {name}@{label}"));
    Ok(ExitCode::SUCCESS)
}
