//! `terrarium env label` and `terrarium env unlabel`

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use terrarium_spec::names::{Reference, LATEST};

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
    let (name, label) = match args.label {
        Some(label) => (args.name.clone(), label),
        None => match super::parse_reference_arg("NAME", &args.name)? {
            Reference::Label(name, label) => (name, label),
            // `NAME@latest`: the store says why that label cannot be removed.
            Reference::Latest(name) if args.name.contains('@') => (name, LATEST.to_string()),
            _ => {
                return Err(printer::user_error(
                    "which label?",
                    Some("terrarium env unlabel NAME LABEL"),
                ))
            }
        },
    };
    let store = context.store()?;
    store.remove_label(&name, &label, &workspace::actor())?;
    printer::status(&format!("removed {name}@{label}"));
    Ok(ExitCode::SUCCESS)
}
