//! `terrarium env unpack`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use terrarium_env::pack::Pack;
use terrarium_env::EnvCache;

use crate::commands::Context;
use crate::environments;
use crate::printer::{self, human_size};

#[derive(Debug, Args)]
pub struct UnpackArgs {
    /// The pack (written by `terrarium env pack`).
    file: PathBuf,
    /// Install into this directory (new or empty) instead of the environment cache.
    #[arg(long, value_name = "DIR")]
    prefix: Option<PathBuf>,
    /// Refuse the pack unless it holds this lock (`sha256:...`, as `env show` gives it).
    #[arg(long, value_name = "HASH")]
    lock_hash: Option<String>,
    /// Print the prefix and what was unpacked as JSON.
    #[arg(long)]
    json: bool,
}

/// Needs no workspace: a pack carries its lock.
pub fn unpack(_context: &Context, args: UnpackArgs) -> Result<ExitCode> {
    let pack = Pack::open(&args.file, args.lock_hash.as_deref())?;
    let cache_dir = environments::cache_dir()?;
    let platform = terrarium_lock::current_platform();
    let uv = environments::find_uv(pack.lock(), &platform, &cache_dir)?;
    let cache = EnvCache::new(&cache_dir);
    let spinner = printer::Spinner::start("unpacking");
    let result = match &args.prefix {
        Some(prefix) => cache
            .build_pack_into(&pack, &platform, prefix, uv.as_ref(), &spinner)
            .map(|meta| (PathBuf::from(meta.prefix), true)),
        None => cache
            .get_or_build_from_pack(&pack, &platform, uv.as_ref(), &spinner)
            .map(|env| (env.prefix.clone(), env.built)),
    };
    spinner.finish();
    let (prefix, built) = result?;
    let summary = pack.summary();
    if args.json {
        printer::json(&serde_json::json!({
            "prefix": prefix,
            "built": built,
            "lock_hash": summary.lock_hash,
            "platform": summary.platform,
            "files": summary.files,
            "content_bytes": summary.content_bytes,
            "size_bytes": summary.size_bytes,
        }))?;
    } else {
        printer::line(prefix.display())?;
        printer::status(&format!(
            "{} {} from {} ({} files, {})",
            if built { "built" } else { "already built:" },
            summary.lock_hash,
            args.file.display(),
            summary.files,
            human_size(summary.size_bytes)
        ));
    }
    Ok(ExitCode::SUCCESS)
}
