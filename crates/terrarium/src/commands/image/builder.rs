//! Environments defined by a Dockerfile: built by the builder the user names.

use std::process::ExitCode;

use anyhow::{Context as _, Result};

use super::{BuildArgs, Builder};
use crate::printer::{self, user_error};

/// A user-managed environment defined by a Dockerfile: built by the builder the user names
/// (buildah or docker), which Terrarium runs but does not replace.
pub(super) fn build_with_builder(
    store: &dyn terrarium_store::Store,
    record: &terrarium_store::VersionRecord,
    args: &BuildArgs,
    push: Option<&terrarium_image::registry::ImageRef>,
) -> Result<ExitCode> {
    use std::process::Command;
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
    let program = builder.program();
    if crate::commands::container::find_program(program).is_none() {
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
    let scratch = tempfile::tempdir()?;
    let dockerfile = scratch.path().join("Dockerfile");
    std::fs::write(
        &dockerfile,
        docker.base_dockerfile.as_deref().unwrap_or_default(),
    )?;
    // The build context is the one stored with the version, content-addressed: the same from
    // any directory and any machine, and checked against its digest as it is unpacked.
    let context_dir = scratch.path().join("context");
    std::fs::create_dir(&context_dir)?;
    crate::environments::unpack_stored_context(store, record, &context_dir)?;
    let local = format!(
        "localhost/terrarium/{}:{}",
        record.name.replace('/', "-"),
        record.version
    );
    let run = |command: &mut Command, what: &str| -> Result<()> {
        // The builder's own output goes to stderr: stdout is for our answer (and --json).
        let status = command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::from(std::io::stderr()))
            .status()
            .with_context(|| format!("cannot run {program}"))?;
        if !status.success() {
            return Err(user_error(
                format!("{program} {what} failed ({status}); its output is above"),
                None,
            ));
        }
        Ok(())
    };
    let digest_file = scratch.path().join("digest");
    match builder {
        Builder::Buildah => run(
            Command::new(program)
                .args(["bud", "--layers", "-f"])
                .arg(&dockerfile)
                .args(["-t", &local])
                .arg(&context_dir),
            "bud",
        )?,
        Builder::Docker => run(
            Command::new(program)
                .arg("build")
                .arg("-f")
                .arg(&dockerfile)
                .args(["-t", &local])
                .arg(&context_dir),
            "build",
        )?,
    }
    let output = args.output.clone();
    let tag = args
        .tag
        .clone()
        .unwrap_or_else(|| format!("{}-{}", record.name.replace('/', "-"), record.version));
    if let Some(dir) = &output {
        match builder {
            Builder::Buildah => run(
                Command::new(program)
                    .args(["push", "--quiet", "--digestfile"])
                    .arg(&digest_file)
                    .arg(&local)
                    .arg(format!("oci:{}:{tag}", dir.display())),
                "push to the OCI layout",
            )?,
            Builder::Docker => {
                std::fs::create_dir_all(dir)?;
                run(
                    Command::new(program)
                        .arg("save")
                        .arg("-o")
                        .arg(dir.join("image.tar"))
                        .arg(&local),
                    "save",
                )?
            }
        }
    }
    let mut pushed_to = None;
    if let Some(target) = push {
        let reference = format!(
            "{}/{}:{}",
            target.registry,
            target.repository,
            target.tag.clone().unwrap_or_else(|| tag.clone())
        );
        let plain = terrarium_image::registry::is_loopback(&target.registry)
            || args.insecure_registries.contains(&target.registry);
        match builder {
            Builder::Buildah => {
                let mut command = Command::new(program);
                command
                    .args(["push", "--quiet", "--digestfile"])
                    .arg(&digest_file);
                if plain {
                    command.arg("--tls-verify=false");
                }
                run(
                    command.arg(&local).arg(format!("docker://{reference}")),
                    "push",
                )?
            }
            Builder::Docker => {
                run(
                    Command::new(program).args(["tag", &local, &reference]),
                    "tag",
                )?;
                run(Command::new(program).args(["push", &reference]), "push")?;
            }
        }
        pushed_to = Some(reference);
    }
    let digest = match std::fs::read_to_string(&digest_file) {
        Ok(text) => text.trim().to_string(),
        Err(_) => {
            let out = Command::new(program)
                .args(["inspect", "--format", "{{.Id}}", &local])
                .output()
                .with_context(|| format!("cannot run {program} inspect"))?;
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        }
    };
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
