//! `terrarium cache list|gc`

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use terrarium_env::EnvCache;

use super::Context;
use crate::printer;

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Built environments in the cache, most recently used first.
    List(ListArgs),
    /// Remove least recently used environments until the cache fits a size budget, and the
    /// packs and shipped programs (`packs/`, `bin/`, for compute targets) no job used for 31
    /// days.
    Gc(GcArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// The size budget, e.g. `10G`, `500M`, `0`.
    #[arg(long, value_parser = parse_size, default_value = "20G")]
    max_size: u64,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(text.len()),
    );
    let number: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("invalid size `{text}`"))?;
    let factor = match unit
        .to_ascii_uppercase()
        .trim_end_matches('B')
        .trim_end_matches('I')
    {
        "" => 1.0,
        "K" => 1024.0,
        "M" => 1024.0 * 1024.0,
        "G" => 1024.0 * 1024.0 * 1024.0,
        "T" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("invalid size unit in `{text}` (use K, M, G or T)")),
    };
    Ok((number * factor) as u64)
}

pub fn run(_context: &Context, command: CacheCommand) -> Result<ExitCode> {
    let cache = EnvCache::new(&terrarium_compute::environment::cache_dir()?);
    match command {
        CacheCommand::List(args) => {
            let entries = cache.list()?;
            if args.json {
                printer::json(&entries)?;
            } else {
                println!(
                    "{:<24}  {:>10}  {:<8}  {:<6}  LOCK",
                    "KEY", "SIZE", "PLATFORM", "IN USE"
                );
                for e in &entries {
                    println!(
                        "{:<24}  {:>10}  {:<8}  {:<6}  {}",
                        e.key,
                        printer::human_size(e.size_bytes),
                        e.platform.as_deref().unwrap_or("-"),
                        if e.in_use { "yes" } else { "no" },
                        e.lock_hash.as_deref().unwrap_or("(incomplete)")
                    );
                }
            }
        }
        CacheCommand::Gc(args) => {
            let removed = cache.gc(args.max_size)?;
            let (files, files_freed) = terrarium_compute::delivery::sweep_unused(
                &terrarium_compute::environment::cache_dir()?,
                terrarium_compute::delivery::KEEP_UNUSED,
            );
            if args.json {
                printer::json(&removed)?;
            } else {
                let freed: u64 = removed.iter().map(|e| e.size_bytes).sum();
                printer::status(&format!(
                    "removed {} environment(s), freed {}",
                    removed.len(),
                    printer::human_size(freed)
                ));
            }
            if !files.is_empty() {
                printer::status(&format!(
                    "removed {} pack(s) and program(s) no job used in 31 days, freed {}",
                    files.len(),
                    printer::human_size(files_freed)
                ));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
