//! `terrarium env show`

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::commands::Context;
use crate::printer;

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// NAME, NAME:VERSION or NAME@LABEL.
    reference: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// With --json: add the version exported in this format (native, aml-v2, aml-v1, conda,
    /// requirements, dockerfile) as `export`, with its files as `env export` writes them.
    #[arg(long, value_name = "FORMAT", requires = "json", value_parser = super::export::parse_definition_format)]
    export: Option<terrarium_spec::Format>,
}

pub fn show(context: &Context, args: ShowArgs) -> Result<ExitCode> {
    let reference = super::parse_reference(&args.reference)?;
    let store = context.store()?;
    let record = store.resolve(&reference)?;
    if args.json {
        printer::json(&super::export::RecordJson::new(&record, args.export)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    printer::line(format_args!("name:         {}", record.name))?;
    printer::line(format_args!("version:      {}", record.version))?;
    printer::line(format_args!("labels:       {}", record.labels.join(", ")))?;
    printer::line(format_args!("content hash: {}", record.content_hash))?;
    printer::line(format_args!(
        "created:      {} by {}",
        record.created_at, record.created_by
    ))?;
    let mut source = record.source.kind.clone();
    if let Some(file) = &record.source.file {
        source.push_str(&format!(" from {file}"));
    }
    if let Some(format) = &record.source.format {
        source.push_str(&format!(" ({format})"));
    }
    printer::line(format_args!("source:       {source}"))?;
    if let Some(parent) = &record.parent {
        printer::line(format_args!("parent:       {parent}"))?;
    }
    if record.archived {
        printer::line("archived:     yes")?;
    }
    if record.curated {
        printer::line("curated:      yes (read-only)")?;
    }
    printer::line("")?;
    let exported = terrarium_spec::export(&record.definition, terrarium_spec::Format::Native)?;
    printer::out(&exported.files[0].1)?;
    Ok(ExitCode::SUCCESS)
}
