//! `terrarium audit`: the audit trail of a workspace's mutating requests.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::Context;
use crate::{printer, workspace};

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// How many entries, newest first.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Skip this many of the newest entries.
    #[arg(long, default_value_t = 0)]
    offset: usize,
    /// Read the database directly (`sqlite://DIR` or `postgres://...`).
    #[arg(long, value_name = "URL")]
    db: Option<String>,
    #[arg(long)]
    json: bool,
}

pub fn run(context: &Context, args: AuditArgs) -> Result<ExitCode> {
    let store = match &args.db {
        Some(db) => workspace::open_database(std::path::Path::new(db))?,
        None => context.store()?,
    };
    let entries = store.list_audit(args.limit, args.offset)?;
    if args.json {
        printer::json(&entries)?;
    } else {
        for e in entries {
            println!(
                "{}  {:<32} {:<48} {:>3}  {}  {}",
                e.at,
                e.actor,
                e.action,
                e.status,
                e.target.as_deref().unwrap_or("-"),
                e.remote
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
