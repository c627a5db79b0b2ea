//! `terrarium env pack`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use terrarium_env::pack::Compression;

use crate::commands::Context;
use crate::environments::{self, LockArgs};
use crate::printer::{self, human_size, user_error};

#[derive(Debug, Args)]
pub struct PackArgs {
    /// NAME, NAME:VERSION or NAME@LABEL.
    reference: String,
    /// The pack to write (a tar archive).
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// The platform whose packages to pack [default: this machine's].
    #[arg(long, value_name = "PLATFORM")]
    platform: Option<String>,
    /// Compress the archive: `none` (package files are compressed already) or `zstd`.
    #[arg(long, default_value = "none", value_name = "none|zstd")]
    compression: Compression,
    /// Print what was packed as JSON.
    #[arg(long)]
    json: bool,
}

pub fn pack(context: &Context, args: PackArgs) -> Result<ExitCode> {
    let reference = super::parse_reference(&args.reference)?;
    let store = context.store()?;
    let record = store.resolve(&reference)?;
    let (lock, _) =
        environments::ensure_lock(store.as_ref(), &record, &LockArgs::default().options()?)?;
    let platform = args
        .platform
        .unwrap_or_else(terrarium_lock::current_platform);
    if !lock.platforms.contains_key(&platform) {
        return Err(user_error(
            format!(
                "the lock of {}:{} has no packages for {platform}",
                record.name, record.version
            ),
            Some("relock with --platform including it (`terrarium env relock REF --platform ...`)"),
        ));
    }
    let spinner = printer::Spinner::start("packing");
    let summary =
        terrarium_env::pack::write(&lock, &platform, &args.output, args.compression, &spinner);
    spinner.finish();
    let summary = summary?;
    if args.json {
        printer::json(&serde_json::json!({
            "name": record.name,
            "version": record.version,
            "path": args.output,
            "lock_hash": summary.lock_hash,
            "platform": summary.platform,
            "files": summary.files,
            "content_bytes": summary.content_bytes,
            "size_bytes": summary.size_bytes,
        }))?;
    } else {
        printer::status(&format!(
            "packed {}:{} for {} into {}: {} files, {}",
            record.name,
            record.version,
            summary.platform,
            args.output.display(),
            summary.files,
            human_size(summary.size_bytes)
        ));
    }
    Ok(ExitCode::SUCCESS)
}
