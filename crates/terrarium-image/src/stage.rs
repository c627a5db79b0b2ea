//! An environment version's image, from its lock: the packages installed for the in-image
//! prefix (or, for a pip-only environment, its built virtual environment relocated onto the
//! base image's Python), checked for what a scratch image lacks, a deployment's layers on
//! top, then the image written to an OCI layout, a `docker load` archive and a registry.
//!
//! The caller brings plain data: the version's name, definition and lock, the base opened with
//! [`open_base`], and uv when [`needs_uv`] says the lock needs it. Nothing here solves a
//! definition, reads a workspace or prints; progress goes to a [`Reporter`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use terrarium_env::{Env, EnvCache};
use terrarium_lock::uv::Uv;
use terrarium_lock::{Lock, LockKind, PlatformLock};
use terrarium_spec::Definition;

use crate::base::{Base, BaseError};
use crate::deployment::{add_layers, Deployment};
use crate::registry::{ImageRef, PushReport, RegistryError};
use crate::reporter::Steps;
use crate::{layout, BuildInput, Image, Reporter, StageError};

/// The platform images are built for.
pub const PLATFORM: &str = "linux-64";

/// The environment version an image is made of, as its caller's records give it.
#[derive(Debug, Clone, Copy)]
pub struct Environment<'a> {
    pub name: &'a str,
    pub version: &'a str,
    /// The definition's content hash (a label of the image).
    pub content_hash: &'a str,
    pub definition: &'a Definition,
    pub lock: &'a Lock,
    pub lock_hash: &'a str,
}

impl Environment<'_> {
    /// `NAME:VERSION`, as errors name it.
    fn id(&self) -> String {
        format!("{}:{}", self.name, self.version)
    }

    /// The lock's packages for [`PLATFORM`].
    fn section(&self) -> Result<&PlatformLock, StageError> {
        self.lock
            .platforms
            .get(PLATFORM)
            .ok_or_else(|| StageError::NoImagePlatform {
                environment: self.id(),
                platform: PLATFORM.to_string(),
            })
    }

    /// The in-image prefix. It is the environment's name, not its lock hash: conda packages
    /// hold their prefix in their files, so a prefix that changed with every lock would change
    /// every layer, and a one-package change must re-upload one package's layer.
    pub fn target_prefix(&self) -> String {
        format!("/opt/terrarium/envs/{}", self.name.replace('/', "--"))
    }
}

/// Check that an image can be built from the lock, on a base image or (`has_base` false) on
/// scratch: it has packages for [`PLATFORM`], and a scratch image gets a self-contained conda
/// environment that does not ask for the system's C library.
pub fn check_lock(environment: &Environment<'_>, has_base: bool) -> Result<(), StageError> {
    let section = environment.section()?;
    if has_base {
        return Ok(());
    }
    if section.conda.is_empty() {
        return Err(StageError::NotConda {
            environment: environment.id(),
        });
    }
    // conda packages take the C library from the system: a scratch image has none to give.
    let needs_libc = section.conda.iter().find_map(|p| {
        p.record["depends"]
            .as_array()?
            .iter()
            .filter_map(|d| d.as_str())
            .find(|d| {
                // The name ends where the version spec begins: `__glibc >=2.17`, `__glibc>=2.17`.
                d.split(|c: char| c.is_whitespace() || "<>=!~,[".contains(c))
                    .next()
                    == Some("__glibc")
            })
            .map(|d| (p, d.to_string()))
    });
    if let Some((package, constraint)) = needs_libc {
        return Err(StageError::NeedsGlibc {
            environment: environment.id(),
            package: package.name.clone(),
            version: package.version.clone(),
            constraint,
        });
    }
    Ok(())
}

/// Whether staging the lock runs uv: to install its PyPI packages, or to build a pip-only
/// environment's virtual environment. The caller finds uv only then.
pub fn needs_uv(lock: &Lock) -> bool {
    lock.platforms.get(PLATFORM).is_some_and(|section| {
        section.pylock.is_some() || (section.conda.is_empty() && lock.kind != LockKind::UserManaged)
    })
}

/// Open (pull) the base image named by `reference`, its layers into `blobs`; `None` for a
/// scratch image. For [`build_image`], `blobs` is the layout's ([`layout::blobs_dir`]).
pub fn open_base(
    reference: Option<&str>,
    blobs: &Path,
    insecure: &[String],
    reporter: &dyn Reporter,
) -> Result<Option<Base>, StageError> {
    let Some(reference) = reference else {
        return Ok(None);
    };
    reporter.start(&format!("reading the base image {reference}"));
    let base = crate::base::open(reference, blobs, insecure);
    reporter.finish();
    match base {
        Ok(base) => Ok(Some(base)),
        Err(BaseError::Registry(err @ RegistryError::Reference(..))) => {
            Err(StageError::BaseReference(err))
        }
        Err(source) => Err(StageError::Base {
            reference: reference.to_string(),
            source: Box::new(source),
        }),
    }
}

/// What to stage: an environment, on a base (or scratch).
#[derive(Debug, Clone, Copy)]
pub struct Staging<'a> {
    pub environment: Environment<'a>,
    /// Terrarium's cache directory: staging directories, built environments, the layer index.
    pub cache_dir: &'a Path,
    /// The base image, from [`open_base`]; `None` for scratch.
    pub base: Option<&'a Base>,
    /// The directory [`open_base`] put the base's layers in.
    pub base_blobs: &'a Path,
    /// uv, when [`needs_uv`] says so.
    pub uv: Option<&'a Uv>,
}

/// A staged environment: the image's description, and the directory holding its files (kept
/// until the image is written).
pub struct Staged {
    _dir: tempfile::TempDir,
    pub input: BuildInput,
}

/// Install the lock's packages for the in-image prefix into a staging directory, and describe
/// the image: what [`build_image`] and [`write_dockerfile`] share. On a scratch base, a program
/// that needs a loader outside the environment is refused.
pub fn stage(request: &Staging<'_>, reporter: &dyn Reporter) -> Result<Staged, StageError> {
    let environment = &request.environment;
    let section = environment.section()?;
    let cache = request.cache_dir;
    let target_prefix = environment.target_prefix();
    std::fs::create_dir_all(cache).map_err(|e| StageError::io("create", cache, e))?;
    let staging = tempfile::Builder::new()
        .prefix(".image-")
        .tempdir_in(cache)
        .map_err(StageError::StagingDir)?;
    if section.conda.is_empty() {
        // A pip-only environment runs on the base image's Python: its (relocatable) virtual
        // environment, with `home` and the `python` links pointing at the image's interpreter.
        let Some(base) = request.base else {
            return Err(StageError::PipOnlyWithoutBase {
                environment: environment.id(),
            });
        };
        let version = section
            .python
            .as_ref()
            .map(|p| p.version.clone())
            .unwrap_or_default();
        let minor: String = version.split('.').take(2).collect::<Vec<_>>().join(".");
        let python =
            crate::base::find_python(base, request.base_blobs, &minor)?.ok_or_else(|| {
                StageError::NoPython {
                    base: base.reference.clone(),
                    minor: minor.clone(),
                    environment: environment.id(),
                    version: version.clone(),
                }
            })?;
        let env = built_venv(environment, cache, request.uv, reporter)?;
        relocate_venv(&env.prefix, staging.path(), &python)?;
    } else {
        reporter.start("installing for the image");
        let installed = EnvCache::new(cache).install_into(
            environment.lock,
            PLATFORM,
            staging.path(),
            Path::new(&target_prefix),
            request.uv,
            &Steps(reporter),
        );
        reporter.finish();
        installed?;
    }

    // The definition as one line of JSON: a label value a Dockerfile can say exactly too.
    let definition_text =
        serde_json::to_string(environment.definition).map_err(StageError::Definition)?;
    let mut labels = BTreeMap::new();
    labels.insert(
        "org.opencontainers.image.title".into(),
        environment.name.to_string(),
    );
    labels.insert(
        "org.opencontainers.image.version".into(),
        environment.version.to_string(),
    );
    labels.insert(
        "org.terrarium.environment.name".into(),
        environment.name.to_string(),
    );
    labels.insert(
        "org.terrarium.environment.version".into(),
        environment.version.to_string(),
    );
    labels.insert(
        "org.terrarium.environment.content-hash".into(),
        environment.content_hash.to_string(),
    );
    labels.insert(
        "org.terrarium.environment.lock-hash".into(),
        environment.lock_hash.to_string(),
    );
    labels.insert(
        "org.terrarium.environment.definition".into(),
        definition_text.clone(),
    );
    let prefix_variable = if section.conda.is_empty() {
        "VIRTUAL_ENV"
    } else {
        "CONDA_PREFIX"
    };
    let mut env: Vec<(String, String)> = vec![(prefix_variable.into(), target_prefix.clone())];
    for (key, value) in &environment.definition.environment_variables {
        // Secret references stay references: they are resolved when a container starts.
        env.push((key.clone(), value.clone()));
    }
    let cmd = if staging.path().join("bin/python").exists() {
        vec![format!("{target_prefix}/bin/python")]
    } else {
        Vec::new()
    };
    let input = BuildInput {
        staging: staging.path().to_path_buf(),
        target_prefix,
        env,
        labels,
        metadata: vec![
            (
                ".terrarium-image/environment.yml".into(),
                definition_text.into_bytes(),
            ),
            (
                ".terrarium-image/lock.json".into(),
                environment.lock.to_json().into_bytes(),
            ),
        ],
        cmd,
        architecture: "amd64".into(),
        base: request.base.cloned(),
        extra: Vec::new(),
        entrypoint: Vec::new(),
        exposed_ports: Vec::new(),
        layer_cache: Some(cache.join("images").join("layer-index")),
    };
    check_scratch(environment, &input)?;
    Ok(Staged {
        _dir: staging,
        input,
    })
}

/// Write a Dockerfile and build context into `dir` that build the staged image with
/// `docker build` (see [`crate::dockerfile`]).
pub fn write_dockerfile(
    request: &Staging<'_>,
    dir: &Path,
    reporter: &dyn Reporter,
) -> Result<(), StageError> {
    let staged = stage(request, reporter)?;
    crate::dockerfile::write(&staged.input, dir)?;
    Ok(())
}

/// An image to build: an environment, on a base (or scratch), written to an OCI layout, and
/// perhaps archived and pushed.
#[derive(Debug, Clone, Copy)]
pub struct ImageRequest<'a> {
    pub environment: Environment<'a>,
    /// Terrarium's cache directory (see [`Staging::cache_dir`]).
    pub cache_dir: &'a Path,
    /// The base image, opened with [`open_base`] into the layout's blobs.
    pub base: Option<&'a Base>,
    /// uv, when [`needs_uv`] says so; only [`build_image`] uses it.
    pub uv: Option<&'a Uv>,
    /// The OCI layout the image is written to.
    pub layout: &'a Path,
    /// Whether the layout was asked for rather than a default: an image reused then must be
    /// in it, even when it is pushed.
    pub layout_requested: bool,
    /// The image's tag in the layout, and in the registry unless the push names another.
    pub tag: &'a str,
    /// A `docker load` archive to write too, and the `REPOSITORY:TAG` it names.
    pub archive: Option<(&'a Path, &'a str)>,
    pub push: Option<Push<'a>>,
    /// A deployment's layers and entrypoint on top of the environment.
    pub deployment: Option<Deployment<'a>>,
}

/// Where to push an image.
#[derive(Debug, Clone, Copy)]
pub struct Push<'a> {
    pub target: &'a ImageRef,
    /// Registry hosts spoken to over plain HTTP.
    pub insecure: &'a [String],
}

/// An image built before, as its build record says: what [`ImageRequest::reusable`] compares.
#[derive(Debug, Clone, Copy)]
pub struct PriorBuild<'a> {
    pub lock_hash: &'a str,
    pub base_digest: Option<&'a str>,
    /// The image's manifest digest.
    pub digest: &'a str,
    /// `REGISTRY/REPOSITORY:TAG`, when it was pushed.
    pub pushed_to: Option<&'a str>,
}

impl ImageRequest<'_> {
    /// The tag the push gives: its own, else the image's.
    pub fn push_tag(&self) -> Option<&str> {
        self.push
            .map(|p| p.target.tag.as_deref().unwrap_or(self.tag))
    }

    /// `REGISTRY/REPOSITORY:TAG` the image is pushed to, as build records keep it.
    pub fn pushed_to(&self) -> Option<String> {
        let push = self.push?;
        Some(format!(
            "{}/{}:{}",
            push.target.registry,
            push.target.repository,
            self.push_tag()?
        ))
    }

    /// Which of `prior` (the version's earlier builds) is this image, already where it is
    /// asked to go: the same lock and base, pushed to the same place or present in the layout.
    /// A deployment's image or an archive is made again.
    pub fn reusable(&self, prior: &[PriorBuild<'_>]) -> Option<usize> {
        if self.archive.is_some() || self.deployment.is_some() {
            return None;
        }
        let base_digest = self.base.map(|b| b.manifest_digest.as_str());
        let pushed_to = self.pushed_to();
        prior.iter().position(|b| {
            b.lock_hash == self.environment.lock_hash
                && b.base_digest == base_digest
                && match &pushed_to {
                    Some(target) => b.pushed_to == Some(target.as_str()),
                    None => layout_has(self.layout, b.digest),
                }
                && (!self.layout_requested || layout_has(self.layout, b.digest))
        })
    }
}

/// Whether the OCI layout at `dir` holds the image `digest`.
fn layout_has(dir: &Path, digest: &str) -> bool {
    // The digest comes from a record: it becomes a path only once it is a well-formed digest.
    let Ok(digest) = digest.parse::<crate::Digest>() else {
        return false;
    };
    std::fs::read_to_string(dir.join("index.json"))
        .is_ok_and(|index| index.contains(digest.as_str()))
        && digest.blob_path(&layout::blobs_dir(dir)).is_file()
}

/// What [`build_image`] made.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// Digests, layers and size.
    pub image: Image,
    /// The environment's in-image prefix.
    pub target_prefix: String,
    /// How many packages the lock installed.
    pub conda_packages: usize,
    pub pypi_packages: usize,
    pub pushed: Option<Pushed>,
}

/// Where an image was pushed, and what the push sent.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub registry: String,
    pub repository: String,
    pub tag: String,
    pub report: PushReport,
}

/// Build the image `request` asks for: stage the environment, add a deployment's layers,
/// write the layout (and the archive), push. A push sends only the blobs the registry lacks;
/// one cut short leaves the layout whole, and pushing again sends the rest.
pub fn build_image(
    request: &ImageRequest<'_>,
    reporter: &dyn Reporter,
) -> Result<BuiltImage, StageError> {
    let environment = &request.environment;
    let section = environment.section()?;
    let blobs = layout::blobs_dir(request.layout);
    // Kept until the image is written: the layers are read from it.
    let mut staged = stage(
        &Staging {
            environment: *environment,
            cache_dir: request.cache_dir,
            base: request.base,
            base_blobs: &blobs,
            uv: request.uv,
        },
        reporter,
    )?;
    if let Some(deployment) = &request.deployment {
        add_layers(&mut staged.input, deployment)?;
    }
    let image = crate::build(&staged.input, &blobs).map_err(|source| StageError::Build {
        output: request.layout.to_path_buf(),
        source,
    })?;
    layout::write_index(request.layout, &image, request.tag)?;
    if let Some((file, repo_tag)) = request.archive {
        layout::write_docker_archive(&image, &blobs, file, repo_tag).map_err(|source| {
            StageError::Archive {
                path: file.to_path_buf(),
                source,
            }
        })?;
    }
    let pushed = match (request.push, request.push_tag()) {
        (Some(push), Some(tag)) => {
            let target = push.target;
            reporter.start(&format!(
                "pushing to {}/{}:{tag}",
                target.registry, target.repository
            ));
            let report = crate::registry::push(&image, &blobs, target, tag, push.insecure);
            reporter.finish();
            let report = report.map_err(|source| StageError::Push {
                environment: environment.id(),
                registry: target.registry.clone(),
                repository: target.repository.clone(),
                layout: request.layout.to_path_buf(),
                source: Box::new(source),
            })?;
            Some(Pushed {
                registry: target.registry.clone(),
                repository: target.repository.clone(),
                tag: tag.to_string(),
                report,
            })
        }
        _ => None,
    };
    Ok(BuiltImage {
        target_prefix: staged.input.target_prefix.clone(),
        conda_packages: section.conda.len(),
        pypi_packages: section.pypi.len(),
        image,
        pushed,
    })
}

/// On a scratch base the environment is all there is: a program that needs the C library's
/// loader (conda's `python`, say, from a package that does not declare `__glibc`) would not
/// start. Refused, naming the file.
fn check_scratch(environment: &Environment<'_>, input: &BuildInput) -> Result<(), StageError> {
    if input.base.is_some() {
        return Ok(());
    }
    let missing = crate::elf::missing_interpreter(&input.staging, &input.target_prefix)
        .map_err(StageError::Staged)?;
    if let Some((file, loader)) = missing {
        return Err(StageError::NeedsLoader {
            environment: environment.id(),
            prefix: input.target_prefix.clone(),
            file,
            loader,
        });
    }
    Ok(())
}

/// A pip-only environment's virtual environment, built for this machine (or found built).
fn built_venv(
    environment: &Environment<'_>,
    cache: &Path,
    uv: Option<&Uv>,
    reporter: &dyn Reporter,
) -> Result<Env, StageError> {
    let lock = environment.lock;
    // A user-managed environment was installed by its user on their machine: there is
    // nothing Terrarium can put in an image.
    if lock.kind == LockKind::UserManaged {
        return Err(StageError::UserManaged {
            environment: environment.id(),
        });
    }
    let platform = terrarium_lock::current_platform();
    if !lock.platforms.contains_key(&platform) {
        return Err(StageError::NoPlatform { platform });
    }
    let envs = EnvCache::new(cache);
    if let Some(env) = envs.lookup(lock, &platform)? {
        return Ok(env);
    }
    reporter.start("building");
    let env = envs.get_or_build(lock, &platform, uv, &Steps(reporter));
    reporter.finish();
    Ok(env?)
}

/// Copy a built virtual environment into `staging` (hard links where possible), pointing its
/// `pyvenv.cfg` home and its `bin/python*` links at the image's interpreter `python`.
fn relocate_venv(prefix: &Path, staging: &Path, python: &str) -> Result<(), StageError> {
    let home = Path::new(python).parent().unwrap_or(Path::new("/usr/bin"));
    let mut stack = vec![prefix.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let read = |e| StageError::io("read", &dir, e);
        for entry in std::fs::read_dir(&dir).map_err(read)? {
            let entry = entry.map_err(read)?;
            let path = entry.path();
            let relative = path.strip_prefix(prefix).expect("walked from the prefix");
            if relative.starts_with(".terrarium") {
                continue;
            }
            let target = staging.join(relative);
            let kind = entry
                .file_type()
                .map_err(|e| StageError::io("read", &path, e))?;
            if kind.is_dir() {
                std::fs::create_dir_all(&target)
                    .map_err(|e| StageError::io("create", &target, e))?;
                stack.push(path);
            } else if kind.is_symlink() {
                let link =
                    std::fs::read_link(&path).map_err(|e| StageError::io("read", &path, e))?;
                let in_bin = relative.parent() == Some(Path::new("bin"));
                let name = relative.file_name().unwrap_or_default().to_string_lossy();
                let link = if in_bin && link.is_absolute() && name.starts_with("python") {
                    PathBuf::from(python)
                } else {
                    link
                };
                std::os::unix::fs::symlink(link, &target)
                    .map_err(|e| StageError::io("create", &target, e))?;
            } else if relative == Path::new("pyvenv.cfg") {
                let text =
                    std::fs::read_to_string(&path).map_err(|e| StageError::io("read", &path, e))?;
                let text: String = text
                    .lines()
                    .map(|line| {
                        if line.trim_start().starts_with("home") && line.contains('=') {
                            format!("home = {}\n", home.display())
                        } else {
                            format!("{line}\n")
                        }
                    })
                    .collect();
                std::fs::write(&target, text).map_err(|e| StageError::io("write", &target, e))?;
            } else if std::fs::hard_link(&path, &target).is_err() {
                std::fs::copy(&path, &target).map_err(|e| StageError::io("write", &target, e))?;
            }
        }
    }
    Ok(())
}
