//! `terrarium env lock` and `terrarium env relock`

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde::Serialize;
use terrarium_store::{RegisterRequest, Source};

use crate::commands::Context;
use crate::environments::LockArgs;
use crate::{printer, workspace};

#[derive(Debug, Args)]
pub struct LockCommandArgs {
    /// NAME, NAME:VERSION or NAME@LABEL.
    reference: String,
    #[command(flatten)]
    lock: LockArgs,
    /// Print the lock summary as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct RelockArgs {
    /// The environment (its latest version), or NAME:VERSION / NAME@LABEL.
    reference: String,
    #[command(flatten)]
    lock: LockArgs,
    /// Print the new version as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct LockSummary {
    name: String,
    version: String,
    lock_hash: String,
    kind: terrarium_lock::LockKind,
    platforms: Vec<String>,
    packages: Vec<Package>,
}

#[derive(Serialize)]
struct Package {
    platform: String,
    source: &'static str,
    name: String,
    version: String,
}

/// Lock a version that has no lock yet, or show the lock it has.
pub fn lock(context: &Context, args: LockCommandArgs) -> Result<ExitCode> {
    let reference = super::parse_reference(&args.reference)?;
    let store = context.store()?;
    let record = store.resolve(&reference)?;
    let (lock, hash) = terrarium_compute::environment::ensure_lock(
        store.as_ref(),
        &record,
        &args.lock.options()?,
        &crate::printer::Spinner::lazy(),
    )?;
    let summary = LockSummary {
        name: record.name.clone(),
        version: record.version.clone(),
        lock_hash: hash.clone(),
        kind: lock.kind,
        platforms: lock.platforms.keys().cloned().collect(),
        packages: lock
            .platforms
            .keys()
            .flat_map(|p| {
                lock.packages(p)
                    .into_iter()
                    .map(|(name, version, source)| Package {
                        platform: p.clone(),
                        source,
                        name,
                        version,
                    })
            })
            .collect(),
    };
    if args.json {
        printer::json(&summary)?;
    } else {
        printer::line(format_args!("{}:{} {hash}", record.name, record.version))?;
        for p in &summary.packages {
            printer::line(format_args!(
                "  {:<10} {:<6} {} {}",
                p.platform, p.source, p.name, p.version
            ))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Resolve again into a new version: same definition, fresh lock, history says "relock".
pub fn relock(context: &Context, args: RelockArgs) -> Result<ExitCode> {
    let reference = super::parse_reference(&args.reference)?;
    let store = context.store()?;
    let record = store.resolve(&reference)?;
    let lock = terrarium_compute::environment::make_lock(
        &record.definition,
        &args.lock.options()?,
        &crate::printer::Spinner::lazy(),
    )?;
    let hash = lock.lock_hash();
    let mut definition = record.definition.clone();
    definition.version = None;
    let outcome = store.register(RegisterRequest {
        definition,
        source: Source::new("relock"),
        parent: Some(format!("{}:{}", record.name, record.version)),
        actor: workspace::actor(),
        allow_curated: false,
        force_new: true,
        lock: Some((hash.clone(), lock.to_json())),
    })?;
    if args.json {
        printer::json(&outcome.record)?;
    } else {
        printer::line(format_args!(
            "{}:{}",
            outcome.record.name, outcome.record.version
        ))?;
        let same = record.lock_hash.as_deref() == Some(hash.as_str());
        printer::status(&format!(
            "relocked {}:{} as {}:{} ({hash}{})",
            record.name,
            record.version,
            outcome.record.name,
            outcome.record.version,
            if same { ", same packages" } else { "" }
        ));
    }
    Ok(ExitCode::SUCCESS)
}
