//! `terrarium curated list`

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};

use super::Context;
use crate::printer;

#[derive(Debug, Subcommand)]
pub enum CuratedCommand {
    /// List the curated environments and their latest versions.
    List(ListArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(context: &Context, command: CuratedCommand) -> Result<ExitCode> {
    match command {
        CuratedCommand::List(args) => list(context, args),
    }
}

fn list(context: &Context, args: ListArgs) -> Result<ExitCode> {
    let store = context.store()?;
    let records: Vec<_> = store
        .list(false)?
        .into_iter()
        .filter(|r| r.curated)
        .collect();
    if args.json {
        printer::json(&records)?;
    } else {
        super::env::list::print_table(&records);
    }
    Ok(ExitCode::SUCCESS)
}
