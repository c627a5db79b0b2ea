//! `terrarium env list`

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use terrarium_store::VersionRecord;

use crate::commands::Context;
use crate::printer;

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Include archived environments.
    #[arg(long)]
    archived: bool,
    /// Include anonymous environments (`anonymous/HASH`: nameless files registered by `run`,
    /// `deploy`, `env build`, ...; `env clone` gives one a name).
    #[arg(long)]
    anonymous: bool,
    /// Only environments with this tag KEY=VALUE (or KEY).
    #[arg(long, value_name = "KEY[=VALUE]")]
    tag: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// With --json: add each version exported in this format (native, aml-v2, aml-v1, conda,
    /// requirements, dockerfile) as `export`, with its files as `env export` writes them.
    #[arg(long, value_name = "FORMAT", requires = "json", value_parser = super::export::parse_definition_format)]
    export: Option<terrarium_spec::Format>,
}

pub fn list(context: &Context, args: ListArgs) -> Result<ExitCode> {
    let store = context.store()?;
    let mut records = store.list(args.archived)?;
    let hidden = records
        .iter()
        .filter(|r| terrarium_spec::names::is_anonymous(&r.name))
        .count();
    if !args.anonymous {
        records.retain(|r| !terrarium_spec::names::is_anonymous(&r.name));
    }
    if let Some(tag) = &args.tag {
        records.retain(|r| match tag.split_once('=') {
            Some((k, v)) => r.tags.get(k).is_some_and(|x| x == v),
            None => r.tags.contains_key(tag),
        });
    }
    if args.json {
        let records = records
            .iter()
            .map(|record| super::export::RecordJson::new(record, args.export))
            .collect::<Result<Vec<_>>>()?;
        printer::json(&records)?;
    } else {
        write_table(&records)?;
        if hidden > 0 && !args.anonymous {
            printer::status(&format!(
                "and {hidden} anonymous environment{} (--anonymous lists them)",
                if hidden == 1 { "" } else { "s" }
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The table for `curated list`, printed as `println!` prints: a reader that has gone ends the
/// process quietly, another failure to write panics.
pub fn print_table(records: &[VersionRecord]) {
    if let Err(err) = write_table(records) {
        printer::print_failed(&err);
    }
}

/// The records as a table on stdout: name, version, labels, created, description.
pub fn write_table(records: &[VersionRecord]) -> anyhow::Result<()> {
    let rows: Vec<[String; 5]> = records
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.version.clone(),
                if r.archived {
                    "(archived)".into()
                } else {
                    r.labels.join(",")
                },
                r.created_at.get(..10).unwrap_or(&r.created_at).to_string(),
                r.description.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let header = ["NAME", "VERSION", "LABELS", "CREATED", "DESCRIPTION"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (cell, w))| {
                if i == 4 {
                    cell.clone()
                } else {
                    format!("{cell:w$}")
                }
            })
            .collect();
        printer::line(line.join("  ").trim_end())?;
    }
    Ok(())
}
