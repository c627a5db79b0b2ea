//! Environments defined by a Dockerfile: built by the container builder the user names
//! (buildah or docker), which Terrarium runs but does not replace. The builder's own output
//! goes to this process's stderr as it comes, so that stdout stays the caller's.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::registry::{is_loopback, ImageRef};
use crate::StageError;

/// A container builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builder {
    /// buildah: no daemon; writes OCI layouts and digest files itself.
    Buildah,
    /// docker: through its daemon; a layout is `docker save`'s archive.
    Docker,
}

impl Builder {
    /// The program run (looked up on `PATH`).
    pub fn program(self) -> &'static str {
        match self {
            Builder::Buildah => "buildah",
            Builder::Docker => "docker",
        }
    }
}

/// A Dockerfile to build.
#[derive(Debug, Clone, Copy)]
pub struct DockerfileBuild<'a> {
    pub builder: Builder,
    /// The Dockerfile's text.
    pub dockerfile: &'a str,
    /// The build context, unpacked.
    pub context: &'a Path,
    /// The image's name in the builder's own store (`localhost/terrarium/NAME:VERSION`).
    pub local: &'a str,
    /// Where to write the image: an OCI layout (buildah), or a directory for `image.tar`
    /// (docker's `docker save`).
    pub output: Option<&'a Path>,
    /// The image's tag in the layout, and in the registry unless the push names one.
    pub tag: &'a str,
    pub push: Option<&'a ImageRef>,
    /// Registry hosts spoken to over plain HTTP (loopback ones always are).
    pub insecure: &'a [String],
}

/// What the builder made.
#[derive(Debug, Clone)]
pub struct DockerfileBuilt {
    /// The image's digest (buildah's manifest digest, or docker's image id).
    pub digest: String,
    /// `REGISTRY/REPOSITORY:TAG`, when it was pushed.
    pub pushed_to: Option<String>,
}

/// Build `request.dockerfile` with its builder, then write it out and push it as asked.
pub fn build_dockerfile(request: &DockerfileBuild<'_>) -> Result<DockerfileBuilt, StageError> {
    let builder = request.builder;
    let program = builder.program();
    let local = request.local;
    let scratch = tempfile::tempdir().map_err(StageError::StagingDir)?;
    let dockerfile = scratch.path().join("Dockerfile");
    std::fs::write(&dockerfile, request.dockerfile)
        .map_err(|e| StageError::io("write", &dockerfile, e))?;
    let digest_file = scratch.path().join("digest");
    match builder {
        Builder::Buildah => run(
            Command::new(program)
                .args(["bud", "--layers", "-f"])
                .arg(&dockerfile)
                .args(["-t", local])
                .arg(request.context),
            program,
            "bud",
        )?,
        Builder::Docker => run(
            Command::new(program)
                .arg("build")
                .arg("-f")
                .arg(&dockerfile)
                .args(["-t", local])
                .arg(request.context),
            program,
            "build",
        )?,
    }
    if let Some(dir) = request.output {
        match builder {
            Builder::Buildah => run(
                Command::new(program)
                    .args(["push", "--quiet", "--digestfile"])
                    .arg(&digest_file)
                    .arg(local)
                    .arg(format!("oci:{}:{}", dir.display(), request.tag)),
                program,
                "push to the OCI layout",
            )?,
            Builder::Docker => {
                std::fs::create_dir_all(dir).map_err(|e| StageError::io("create", dir, e))?;
                run(
                    Command::new(program)
                        .arg("save")
                        .arg("-o")
                        .arg(dir.join("image.tar"))
                        .arg(local),
                    program,
                    "save",
                )?
            }
        }
    }
    let mut pushed_to = None;
    if let Some(target) = request.push {
        let reference = format!(
            "{}/{}:{}",
            target.registry,
            target.repository,
            target.tag.as_deref().unwrap_or(request.tag)
        );
        let plain = is_loopback(&target.registry) || request.insecure.contains(&target.registry);
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
                    command.arg(local).arg(format!("docker://{reference}")),
                    program,
                    "push",
                )?
            }
            Builder::Docker => {
                run(
                    Command::new(program).args(["tag", local, &reference]),
                    program,
                    "tag",
                )?;
                run(
                    Command::new(program).args(["push", &reference]),
                    program,
                    "push",
                )?;
            }
        }
        pushed_to = Some(reference);
    }
    let digest = match std::fs::read_to_string(&digest_file) {
        Ok(text) => text.trim().to_string(),
        Err(_) => {
            let out = Command::new(program)
                .args(["inspect", "--format", "{{.Id}}", local])
                .output()
                .map_err(|source| StageError::BuilderSpawn {
                    program: format!("{program} inspect"),
                    source,
                })?;
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        }
    };
    Ok(DockerfileBuilt { digest, pushed_to })
}

/// Run one builder step; its output goes to stderr (stdout is the caller's answer, and
/// `--json`'s).
fn run(command: &mut Command, program: &str, step: &'static str) -> Result<(), StageError> {
    let status = command
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()))
        .status()
        .map_err(|source| StageError::BuilderSpawn {
            program: program.to_string(),
            source,
        })?;
    if !status.success() {
        return Err(StageError::BuilderFailed {
            program: program.to_string(),
            step,
            status,
        });
    }
    Ok(())
}
