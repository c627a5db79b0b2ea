//! `terrarium env pack`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use terrarium_env::pack::Compression;

use crate::commands::Context;
use crate::environments::LockArgs;
use crate::printer::{self, human_size, user_error};

#[derive(Debug, Args)]
pub struct PackArgs {
    /// NAME, NAME:VERSION or NAME@LABEL.
    reference: String,
    /// The pack to write (a tar archive) [default with --push: none kept].
    #[arg(short, long, value_name = "FILE", required_unless_present = "push")]
    output: Option<PathBuf>,
    /// Push the pack to a registry as an OCI artifact, `REGISTRY/REPOSITORY[:TAG]` [tag default:
    /// the lock hash's first 12 digits and the platform], and print its reference by digest,
    /// which `env unpack` takes.
    #[arg(long, value_name = "REGISTRY/REPO[:TAG]")]
    push: Option<String>,
    /// Speak plain HTTP to this registry host[:port] (repeatable; loopback registries always).
    #[arg(long = "insecure-registry", value_name = "HOST")]
    insecure_registries: Vec<String>,
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
    let (lock, _) = terrarium_compute::environment::ensure_lock(
        store.as_ref(),
        &record,
        &LockArgs::default().options()?,
        &crate::printer::Spinner::lazy(),
    )?;
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
    let push = args
        .push
        .as_deref()
        .map(terrarium_image::registry::ImageRef::parse)
        .transpose()
        .map_err(|e| user_error(e.to_string(), Some("e.g. --push 127.0.0.1:5000/team/packs")))?;
    // Without -o the pack is written beside the cache for the push, then removed.
    let staged;
    let output = match &args.output {
        Some(output) => output.clone(),
        None => {
            let dir = terrarium_compute::environment::cache_dir()?.join("packs");
            std::fs::create_dir_all(&dir)?;
            staged = tempfile::Builder::new()
                .prefix(".push-")
                .suffix(".tpack")
                .tempfile_in(&dir)?
                .into_temp_path();
            staged.to_path_buf()
        }
    };
    let spinner = printer::Spinner::start("packing");
    let summary = terrarium_env::pack::write(&lock, &platform, &output, args.compression, &spinner);
    spinner.finish();
    let summary = summary?;
    let pushed = match &push {
        Some(target) => {
            let hex = summary
                .lock_hash
                .strip_prefix("sha256:")
                .unwrap_or(&summary.lock_hash);
            let tag = target
                .tag
                .clone()
                .unwrap_or_else(|| format!("{}-{platform}", &hex[..12.min(hex.len())]));
            let spinner = printer::Spinner::start("pushing");
            let pushed = terrarium_image::artifact::push_pack(
                &output,
                target,
                &tag,
                &summary.lock_hash,
                &platform,
                &args.insecure_registries,
            );
            spinner.finish();
            Some(pushed.map_err(|e| {
                anyhow::anyhow!(
                    "cannot push the pack to {}/{}: {e}",
                    target.registry,
                    target.repository
                )
            })?)
        }
        None => None,
    };
    if args.json {
        printer::json(&serde_json::json!({
            "name": record.name,
            "version": record.version,
            "path": args.output,
            "pushed": pushed.as_ref().map(|p| serde_json::json!({
                "reference": p.reference,
                "uploaded_blobs": p.report.uploaded_blobs,
                "uploaded_bytes": p.report.uploaded_bytes,
                "skipped_blobs": p.report.skipped_blobs,
            })),
            "lock_hash": summary.lock_hash,
            "platform": summary.platform,
            "files": summary.files,
            "content_bytes": summary.content_bytes,
            "size_bytes": summary.size_bytes,
        }))?;
    } else {
        printer::status(&format!(
            "packed {}:{} for {}{}: {} files, {}",
            record.name,
            record.version,
            summary.platform,
            args.output
                .as_ref()
                .map(|o| format!(" into {}", o.display()))
                .unwrap_or_default(),
            summary.files,
            human_size(summary.size_bytes)
        ));
        if let Some(pushed) = &pushed {
            printer::status(&format!(
                "pushed: {} blobs uploaded ({}), {} already there",
                pushed.report.uploaded_blobs,
                human_size(pushed.report.uploaded_bytes),
                pushed.report.skipped_blobs
            ));
            printer::line(&pushed.reference)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
