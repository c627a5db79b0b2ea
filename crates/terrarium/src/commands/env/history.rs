//! `terrarium env history`

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde::Serialize;
use terrarium_store::{Event, VersionRecord};

use crate::commands::Context;
use crate::printer;

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The environment's name.
    name: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct History {
    versions: Vec<VersionRecord>,
    events: Vec<Event>,
}

pub fn history(context: &Context, args: HistoryArgs) -> Result<ExitCode> {
    let store = context.store()?;
    let versions = store.versions(&args.name)?;
    let events = store.events(&args.name)?;
    if args.json {
        printer::json(&History { versions, events })?;
        return Ok(ExitCode::SUCCESS);
    }
    for v in &versions {
        let mut source = v.source.kind.clone();
        if let Some(file) = &v.source.file {
            source.push_str(&format!(" {file}"));
        }
        printer::line(format_args!(
            "{}:{}  {}  {}  by {}  {}{}{}",
            v.name,
            v.version,
            &v.content_hash[..v.content_hash.len().min(19)],
            v.created_at,
            v.created_by,
            source,
            v.parent
                .as_ref()
                .map(|p| format!("  parent {p}"))
                .unwrap_or_default(),
            if v.archived { "  (archived)" } else { "" },
        ))?;
    }
    if !events.is_empty() {
        printer::line("")?;
        for e in &events {
            printer::line(format_args!(
                "{}  {}{}  {}  by {}",
                e.at,
                e.action,
                e.version
                    .as_ref()
                    .map(|v| format!(" {}:{v}", e.name))
                    .unwrap_or_else(|| format!(" {}", e.name)),
                e.detail
                    .as_ref()
                    .map(|d| format!("({d})"))
                    .unwrap_or_default(),
                e.actor
            ))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
