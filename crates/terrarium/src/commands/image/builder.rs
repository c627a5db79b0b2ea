//! Environments defined by a Dockerfile: built by the builder the user names
//! (`terrarium_image::builder`), from the build context stored with the version; recorded.

use std::process::ExitCode;

use anyhow::Result;
use terrarium_image::builder::DockerfileBuild;

use super::{BuildArgs, Builder};
use crate::printer::{self, user_error};

/// A user-managed environment defined by a Dockerfile: built by the builder the user names
/// (buildah or docker), which must be installed.
pub(super) fn build_with_builder(
    store: &dyn terrarium_store::Store,
    record: &terrarium_store::VersionRecord,
    args: &BuildArgs,
    push: Option<&terrarium_image::registry::ImageRef>,
) -> Result<ExitCode> {
    let docker = &record.definition.docker;
    let Some(builder) = args.builder else {
        return Err(user_error(
            format!(
                "{}:{} is defined by a Dockerfile, which only a container builder can build",
                record.name, record.version
            ),
            Some("pass --builder buildah or --builder docker"),
        ));
    };
    let program = terrarium_image::builder::Builder::from(builder).program();
    if terrarium_compute::container::find_program(program).is_none() {
        return Err(user_error(
            format!("--builder {program}: no `{program}` on PATH"),
            Some(match builder {
                Builder::Buildah => {
                    "install buildah (Debian: apt-get install buildah), or use --builder docker"
                }
                Builder::Docker => "install Docker, or use --builder buildah (no daemon needed)",
            }),
        ));
    }
    let started = std::time::Instant::now();
    // The build context is the one stored with the version, content-addressed: the same from
    // any directory and any machine, and checked against its digest as it is unpacked.
    let context_dir = tempfile::tempdir()?;
    crate::environments::unpack_stored_context(store, record, context_dir.path())?;
    let local = format!(
        "localhost/terrarium/{}:{}",
        record.name.replace('/', "-"),
        record.version
    );
    let output = args.output.clone();
    let tag = args
        .tag
        .clone()
        .unwrap_or_else(|| format!("{}-{}", record.name.replace('/', "-"), record.version));
    let built = terrarium_image::builder::build_dockerfile(&DockerfileBuild {
        builder: builder.into(),
        dockerfile: docker.base_dockerfile.as_deref().unwrap_or_default(),
        context: context_dir.path(),
        local: &local,
        output: output.as_deref(),
        tag: &tag,
        push,
        insecure: &args.insecure_registries,
    })?;
    let (digest, pushed_to) = (built.digest, built.pushed_to);
    let seconds = started.elapsed().as_secs_f64();
    store.add_image_build(&terrarium_store::ImageBuildRecord {
        environment: record.name.clone(),
        version: record.version.clone(),
        lock_hash: String::new(),
        base: docker.base_image.clone(),
        base_digest: None,
        digest: digest.clone(),
        pushed_to: pushed_to.clone(),
        output: output.as_ref().map(|d| d.display().to_string()),
        size: 0,
        layers: 0,
        seconds,
        log: format!("built by {program} from the version's Dockerfile as {local}"),
        actor: crate::workspace::actor(),
        built_at: terrarium_store::now(),
    })?;
    if args.json {
        printer::json(&serde_json::json!({
            "environment": record.name,
            "version": record.version,
            "builder": program,
            "digest": digest,
            "output": output.as_ref().map(|d| d.display().to_string()),
            "pushed_to": pushed_to,
            "seconds": seconds,
        }))?;
    } else {
        println!(
            "built {}:{} with {program}: {digest} in {seconds:.1}s",
            record.name, record.version
        );
    }
    Ok(ExitCode::SUCCESS)
}
