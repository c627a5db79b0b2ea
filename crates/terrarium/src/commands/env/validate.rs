//! `terrarium env validate`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde::Serialize;
use terrarium_spec::{Format, Warning};

use crate::commands::Context;
use crate::printer;

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The definition file or directory.
    file: PathBuf,
    /// The input format (detected when omitted).
    #[arg(long, value_parser = super::parse_format)]
    format: Option<Format>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Validation<'a> {
    file: String,
    /// The detected (or given) format: `aml-v2` for an Azure ML v2 file, `native` for one
    /// with Terrarium's keys.
    format: &'static str,
    /// Every file read, the definition first (for a folder: the file chosen in it).
    files: Vec<String>,
    name: &'a str,
    content_hash: String,
    warnings: &'a [Warning],
    definition: &'a terrarium_spec::Definition,
}

pub fn validate(_context: &Context, args: ValidateArgs) -> Result<ExitCode> {
    let imported = terrarium_spec::import(&args.file, args.format)?;
    let hash = terrarium_spec::content_hash(&imported.definition);
    if args.json {
        printer::json(&Validation {
            file: args.file.display().to_string(),
            format: imported.format.name(),
            files: imported
                .files
                .iter()
                .map(|f| f.display().to_string())
                .collect(),
            name: &imported.definition.name,
            content_hash: hash,
            warnings: &imported.warnings,
            definition: &imported.definition,
        })?;
    } else {
        printer::warnings(&imported.warnings);
        printer::line(format_args!(
            "{}: valid {} definition ({hash})",
            args.file.display(),
            imported.format
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
