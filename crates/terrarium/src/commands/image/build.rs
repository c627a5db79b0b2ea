//! `terrarium image build`: lock -> layers -> OCI layout, archive or registry; recorded.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use terrarium_image::layout;

use super::builder::build_with_builder;
use super::stage::{add_deployment_layers, check_scratch, image_lock, open_base, stage};
use super::{BuildArgs, Context};
use crate::environments;
use crate::printer::{self, user_error};

/// Whether the OCI layout at `dir` holds the image `digest`.
fn layout_has(dir: &Path, digest: &str) -> bool {
    // The digest comes from a record: it becomes a path only once it is a well-formed digest.
    let Ok(digest) = digest.parse::<terrarium_image::Digest>() else {
        return false;
    };
    std::fs::read_to_string(dir.join("index.json"))
        .is_ok_and(|index| index.contains(digest.as_str()))
        && digest.blob_path(&layout::blobs_dir(dir)).is_file()
}

/// What a build made, or found already made: its digest, and what `image build` prints.
pub(crate) struct Built {
    pub digest: String,
    /// The `--json` answer.
    json: serde_json::Value,
    /// The lines printed without `--json`.
    lines: Vec<String>,
}

pub(super) fn build(context: &Context, args: BuildArgs) -> Result<ExitCode> {
    let store = context.store()?;
    let record = crate::environments::resolve_or_register(
        context,
        store.as_ref(),
        &args.reference,
        "import",
        None,
    )?;
    if record.definition.docker.base_dockerfile.is_some() {
        let push = parse_push(&args)?;
        return build_with_builder(store.as_ref(), &record, &args, push.as_ref());
    }
    let built = build_image(store.as_ref(), &record, &args)?;
    if args.json {
        printer::json(&built.json)?;
    } else {
        for line in &built.lines {
            println!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_push(args: &BuildArgs) -> Result<Option<terrarium_image::registry::ImageRef>> {
    args.push
        .as_deref()
        .map(terrarium_image::registry::ImageRef::parse)
        .transpose()
        .map_err(|e| {
            user_error(
                e.to_string(),
                Some("e.g. --push 127.0.0.1:5000/team/train:v1"),
            )
        })
}

/// Build the image of `record`'s lock as `args` say (or find it built), and record it. The
/// library call behind `image build` and `run --target container`.
pub(crate) fn build_image(
    store: &dyn terrarium_store::Store,
    record: &terrarium_store::VersionRecord,
    args: &BuildArgs,
) -> Result<Built> {
    let push = parse_push(args)?;
    if record.definition.docker.base_dockerfile.is_some() {
        return Err(user_error(
            format!(
                "{}:{} is defined by a Dockerfile, which only a container builder can build",
                record.name, record.version
            ),
            Some("build it with `terrarium image build REF --builder buildah`"),
        ));
    }
    if args.builder.is_some() {
        return Err(user_error(
            format!(
                "--builder is for environments defined by a Dockerfile; {}:{} is built from its lock",
                record.name, record.version
            ),
            Some("leave out --builder"),
        ));
    }
    let (lock, lock_hash) = image_lock(store, record, args.base.is_some())?;
    let section = lock
        .platforms
        .get("linux-64")
        .expect("image_lock checks it");
    let started = std::time::Instant::now();
    let cache = environments::cache_dir()?;
    let cached_layout = cache
        .join("images")
        .join(record.name.replace('/', "--"))
        .join(&record.version);
    let requested = args
        .output
        .as_ref()
        .map(|p| p.to_string_lossy().to_string());
    let archive = requested
        .as_deref()
        .and_then(|p| p.strip_prefix("docker-archive:"))
        .map(PathBuf::from);
    let output = match (&requested, &archive) {
        (_, Some(_)) | (None, _) => cached_layout,
        (Some(p), None) => PathBuf::from(p.strip_prefix("oci:").unwrap_or(p)),
    };
    let default_tag = format!("{}-{}", record.name.replace('/', "-"), record.version);
    let tag = args.tag.clone().unwrap_or_else(|| default_tag.clone());
    let push_to = push.as_ref().map(|t| {
        format!(
            "{}/{}:{}",
            t.registry,
            t.repository,
            t.tag.clone().unwrap_or_else(|| tag.clone())
        )
    });
    let deployment = match &args.deployment {
        Some(name) => {
            let d = store.get_deployment(name)?;
            if d.environment != record.name || d.version != record.version {
                return Err(user_error(
                    format!(
                        "deployment {name} serves {}:{}, not {}:{}",
                        d.environment, d.version, record.name, record.version
                    ),
                    Some(&format!(
                        "build {}:{} --deployment {name}",
                        d.environment, d.version
                    )),
                ));
            }
            Some((d, super::front::find(args.front.as_deref())?))
        }
        None => None,
    };
    let blobs = layout::blobs_dir(&output);
    let base = open_base(args.base.as_deref(), &blobs, &args.insecure_registries)?;
    let base_digest = base.as_ref().map(|b| b.manifest_digest.clone());
    // Built before for this lock and base, and where it was asked to go: nothing to do.
    let previous = store.list_image_builds(&record.name, Some(&record.version))?;
    if let Some(done) = previous.iter().find(|b| {
        b.lock_hash == lock_hash
            && b.base_digest == base_digest
            && match &push_to {
                Some(target) => b.pushed_to.as_deref() == Some(target.as_str()),
                None => layout_has(&output, &b.digest),
            }
            && (args.output.is_none() || layout_has(&output, &b.digest))
            && archive.is_none()
            && deployment.is_none()
    }) {
        let mut json = serde_json::to_value(done)?;
        json["reused"] = serde_json::json!(true);
        return Ok(Built {
            digest: done.digest.clone(),
            json,
            lines: vec![format!(
                "{}:{} was built already: {} ({})",
                record.name,
                record.version,
                done.digest,
                done.pushed_to
                    .as_deref()
                    .or(done.output.as_deref())
                    .unwrap_or("-")
            )],
        });
    }
    // Kept until the image is written: the layers are read from it.
    let (_staging, input) = stage(
        &cache,
        record,
        &lock,
        &lock_hash,
        base.as_ref().map(|b| (b, blobs.as_path())),
    )?;
    check_scratch(record, &input)?;
    let target_prefix = input.target_prefix.clone();
    let mut input = input;
    if let Some((d, front)) = &deployment {
        add_deployment_layers(&mut input, d, front)?;
    }
    let image = terrarium_image::build(&input, &blobs)
        .with_context(|| format!("cannot build the image in {}", output.display()))?;
    layout::write_index(&output, &image, &tag)?;
    if let Some(file) = &archive {
        let repo_tag = format!("terrarium/{}:{tag}", record.name.replace('/', "-"));
        layout::write_docker_archive(&image, &blobs, file, &repo_tag)
            .with_context(|| format!("cannot write {}", file.display()))?;
    }
    let pushed = match &push {
        Some(target) => {
            let push_tag = target.tag.clone().unwrap_or_else(|| tag.clone());
            let spinner = printer::Spinner::start(&format!(
                "pushing to {}/{}:{push_tag}",
                target.registry, target.repository
            ));
            let report = terrarium_image::registry::push(
                &image,
                &blobs,
                target,
                &push_tag,
                &args.insecure_registries,
            );
            spinner.finish();
            let report = report.with_context(|| {
                format!(
                    "pushing {}:{} to {}/{} failed; the image is complete in {}, and pushing again uploads only what the registry still lacks",
                    record.name, record.version, target.registry, target.repository, output.display()
                )
            })?;
            Some((target.clone(), push_tag, report))
        }
        None => None,
    };
    let seconds = started.elapsed().as_secs_f64();
    let mut log = format!(
        "installed {} conda and {} PyPI packages for {target_prefix}; {} layers, {} bytes; written to {}",
        section.conda.len(),
        section.pypi.len(),
        image.layers.len(),
        image.size(),
        output.display()
    );
    if let Some((_, _, report)) = &pushed {
        log.push_str(&format!(
            "; pushed to {}: {} blobs uploaded ({} bytes), {} already there",
            push_to.as_deref().unwrap_or("?"),
            report.uploaded_blobs,
            report.uploaded_bytes,
            report.skipped_blobs
        ));
    }
    store.add_image_build(&terrarium_store::ImageBuildRecord {
        environment: record.name.clone(),
        version: record.version.clone(),
        lock_hash: lock_hash.clone(),
        base: args.base.clone(),
        base_digest: base_digest.clone(),
        digest: image.manifest_digest.clone(),
        pushed_to: push_to.clone(),
        output: Some(match &archive {
            Some(file) => format!("docker-archive:{}", file.display()),
            None => output.display().to_string(),
        }),
        size: image.size(),
        layers: image.layers.len() as u32,
        seconds,
        log,
        actor: crate::workspace::actor(),
        built_at: terrarium_store::now(),
    })?;
    let json = serde_json::json!({
        "environment": record.name,
        "version": record.version,
        "lock_hash": lock_hash,
        "prefix": target_prefix,
        "base": args.base,
        "base_digest": base_digest,
        "digest": image.manifest_digest,
        "config_digest": image.config_digest,
        "size": image.size(),
        "layers": image.layers.iter().map(|l| serde_json::json!({"digest": l.digest, "size": l.size, "holds": l.comment})).collect::<Vec<_>>(),
        "output": output.display().to_string(),
        "tag": tag,
        "seconds": seconds,
        "push": pushed.as_ref().map(|(target, tag, report)| serde_json::json!({
            "registry": target.registry,
            "repository": target.repository,
            "tag": tag,
            "mounted_blobs": report.mounted_blobs,
            "uploaded_blobs": report.uploaded_blobs,
            "uploaded_bytes": report.uploaded_bytes,
            "skipped_blobs": report.skipped_blobs,
        })),
    });
    let mut lines = vec![format!(
        "built {}:{} as oci:{}:{tag} ({}, {} layers, {:.1} MiB) in {seconds:.1}s",
        record.name,
        record.version,
        output.display(),
        image.manifest_digest,
        image.layers.len(),
        image.size() as f64 / (1024.0 * 1024.0)
    )];
    if let Some((target, tag, report)) = &pushed {
        lines.push(format!(
            "pushed {}/{}:{tag}: {} blobs uploaded ({} bytes), {} already there",
            target.registry,
            target.repository,
            report.uploaded_blobs,
            report.uploaded_bytes,
            report.skipped_blobs
        ));
    }
    Ok(Built {
        digest: image.manifest_digest.clone(),
        json,
        lines,
    })
}
