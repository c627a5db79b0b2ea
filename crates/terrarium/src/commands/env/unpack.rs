//! `terrarium env unpack`

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Args;
use terrarium_env::pack::Pack;
use terrarium_env::EnvCache;

use crate::commands::Context;
use crate::printer::{self, human_size, user_error};

#[derive(Debug, Args)]
pub struct UnpackArgs {
    /// The pack: a file written by `terrarium env pack`, one it pushed to a registry,
    /// `REGISTRY/REPOSITORY@sha256:...`, or a team server's signed link to one,
    /// `https://HOST/api/v1/packs/sha256:...?...` (either fetched, checked against the digest,
    /// then unpacked).
    #[arg(value_name = "FILE|REGISTRY/REPO@DIGEST|LINK")]
    file: String,
    /// Speak plain HTTP to this registry host[:port] (repeatable; loopback registries always).
    #[arg(long = "insecure-registry", value_name = "HOST")]
    insecure_registries: Vec<String>,
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
    let cache_dir = terrarium_compute::environment::cache_dir()?;
    // A pack in a registry or on a team server is fetched beside the cache, and removed once
    // unpacked. A link's signature is not shown.
    let link = terrarium_server::client::is_server_url(&args.file);
    let shown = terrarium_compute::delivery::redacted(&args.file);
    let fetched = if link || terrarium_image::artifact::is_pack_reference(&args.file) {
        let dir = cache_dir.join("packs");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let file = tempfile::Builder::new()
            .prefix(".fetched-")
            .suffix(".tpack")
            .tempfile_in(&dir)
            .with_context(|| format!("cannot write in {}", dir.display()))?
            .into_temp_path();
        let spinner = printer::Spinner::start("fetching the pack");
        let pulled = if link {
            terrarium_server::client::download_pack(&args.file, &file).map_err(|e| {
                let user = matches!(
                    e,
                    terrarium_store::StoreError::Invalid(_)
                        | terrarium_store::StoreError::Remote { .. }
                );
                (user, e.to_string())
            })
        } else {
            terrarium_image::artifact::pull_pack(&args.file, &file, &args.insecure_registries)
                .map_err(|e| (e.is_user_error(), e.to_string()))
        };
        spinner.finish();
        pulled.map_err(|(user, e)| {
            let message = format!("cannot fetch the pack {shown}: {e}");
            if user {
                user_error(
                    message,
                    Some(if link {
                        "submit the job again for a new link (`terrarium run --target ...`)"
                    } else {
                        "name a pack `terrarium env pack --push` printed"
                    }),
                )
            } else {
                anyhow::anyhow!(message)
            }
        })?;
        Some(file)
    } else {
        None
    };
    let path = fetched
        .as_deref()
        .map_or_else(|| PathBuf::from(&args.file), Path::to_path_buf);
    let pack = Pack::open(&path, args.lock_hash.as_deref())?;
    let platform = terrarium_lock::current_platform();
    let uv = terrarium_compute::environment::find_uv(pack.lock(), &platform, &cache_dir)?;
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
            shown,
            summary.files,
            human_size(summary.size_bytes)
        ));
    }
    Ok(ExitCode::SUCCESS)
}
