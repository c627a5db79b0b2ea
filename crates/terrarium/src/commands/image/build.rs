//! `terrarium image build`: find the version and its lock, have `terrarium_image::stage` build
//! the image (or find it built), record it on the version, print.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use terrarium_image::deployment::{check_front, Deployment};
use terrarium_image::{layout, stage};

use super::builder::build_with_builder;
use super::{environment, image_lock, image_uv, BuildArgs, Context};
use crate::env_vars;
use crate::printer::{self, user_error};

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
        "REFERENCE",
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
    let started = std::time::Instant::now();
    let cache = terrarium_compute::environment::cache_dir()?;
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
    let repo_tag = format!("terrarium/{}:{tag}", record.name.replace('/', "-"));
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
            let (front, origin) = locate_front(args.front.as_deref())?;
            check_front(&front, origin)?;
            Some((d, front))
        }
        None => None,
    };
    let blobs = layout::blobs_dir(&output);
    let progress = printer::Progress::default();
    let base = stage::open_base(
        args.base.as_deref(),
        &blobs,
        &args.insecure_registries,
        &progress,
    )?;
    let base_digest = base.as_ref().map(|b| b.manifest_digest.clone());
    let mut request = stage::ImageRequest {
        environment: environment(record, &lock, &lock_hash),
        cache_dir: &cache,
        base: base.as_ref(),
        uv: None,
        layout: &output,
        layout_requested: args.output.is_some(),
        tag: &tag,
        archive: archive.as_deref().map(|file| (file, repo_tag.as_str())),
        push: push.as_ref().map(|target| stage::Push {
            target,
            insecure: &args.insecure_registries,
        }),
        deployment: deployment.as_ref().map(|(d, front)| Deployment {
            name: &d.name,
            model_path: Path::new(&d.model_path),
            model_hash: &d.model_hash,
            entry: d.entry.as_deref().map(Path::new),
            workers: d.workers,
            front,
            shim: terrarium_serve::shim::FILES,
        }),
    };
    let push_to = request.pushed_to();
    // Built before for this lock and base, and where it was asked to go: nothing to do.
    let previous = store.list_image_builds(&record.name, Some(&record.version))?;
    let prior: Vec<stage::PriorBuild> = previous
        .iter()
        .map(|b| stage::PriorBuild {
            lock_hash: &b.lock_hash,
            base_digest: b.base_digest.as_deref(),
            digest: &b.digest,
            pushed_to: b.pushed_to.as_deref(),
        })
        .collect();
    if let Some(done) = request.reusable(&prior).map(|i| &previous[i]) {
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
    let uv = image_uv(&cache, &lock)?;
    request.uv = uv.as_ref();
    let built = stage::build_image(&request, &progress)?;
    let image = &built.image;
    let target_prefix = &built.target_prefix;
    let pushed = built.pushed.as_ref();
    let seconds = started.elapsed().as_secs_f64();
    let mut log = format!(
        "installed {} conda and {} PyPI packages for {target_prefix}; {} layers, {} bytes; written to {}",
        built.conda_packages,
        built.pypi_packages,
        image.layers.len(),
        image.size(),
        output.display()
    );
    if let Some(pushed) = pushed {
        let report = &pushed.report;
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
        "push": pushed.map(|p| serde_json::json!({
            "registry": p.registry,
            "repository": p.repository,
            "tag": p.tag,
            "mounted_blobs": p.report.mounted_blobs,
            "uploaded_blobs": p.report.uploaded_blobs,
            "uploaded_bytes": p.report.uploaded_bytes,
            "skipped_blobs": p.report.skipped_blobs,
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
    if let Some(p) = pushed {
        lines.push(format!(
            "pushed {}/{}:{}: {} blobs uploaded ({} bytes), {} already there",
            p.registry,
            p.repository,
            p.tag,
            p.report.uploaded_blobs,
            p.report.uploaded_bytes,
            p.report.skipped_blobs
        ));
    }
    Ok(Built {
        digest: image.manifest_digest.clone(),
        json,
        lines,
    })
}

/// Where the service front for `--deployment` is, and where that came from: `--front`, else
/// `TERRARIUM_FRONT`, else `terrarium-serve` next to this executable. `check_front`
/// checks that it is one.
fn locate_front(explicit: Option<&Path>) -> Result<(PathBuf, &'static str)> {
    Ok(
        match (explicit, std::env::var_os(env_vars::TERRARIUM_FRONT)) {
            (Some(path), _) => (path.to_path_buf(), "--front"),
            (None, Some(path)) if !path.is_empty() => (PathBuf::from(path), "TERRARIUM_FRONT"),
            _ => {
                let exe = std::env::current_exe().context("cannot find the terrarium binary")?;
                (exe.with_file_name("terrarium-serve"), "next to terrarium")
            }
        },
    )
}
