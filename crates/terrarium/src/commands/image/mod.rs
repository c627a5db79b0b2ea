//! `terrarium image build|list|dockerfile`: OCI images of environment versions, without a
//! daemon. The images are `terrarium_image::stage`'s; these commands find the version and its
//! lock, call it, record and print. `build.rs` is `image build`, `builder.rs` runs buildah or
//! docker for Dockerfile environments.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use terrarium_image::stage;
use terrarium_lock::uv::Uv;
use terrarium_lock::Lock;
use terrarium_store::{Store, VersionRecord};

use super::Context;
use crate::environments;
use crate::printer;

mod build;
mod builder;

use build::build;

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build an OCI image from an environment version's lock.
    Build(BuildArgs),
    /// The images built from an environment (NAME) or one version (NAME:VERSION).
    List(ListArgs),
    /// Write a Dockerfile and build context that build the same image with `docker build`.
    Dockerfile(DockerfileArgs),
}

#[derive(Debug, Args)]
pub struct DockerfileArgs {
    /// The environment: NAME, NAME:VERSION or NAME@LABEL.
    reference: String,
    /// The directory to write `Dockerfile` and `layers/` into (new or empty).
    #[arg(long, short = 'o', value_name = "DIR")]
    output: PathBuf,
    /// The base image, as for `image build --base` (the Dockerfile starts `FROM` it).
    #[arg(long, value_name = "IMAGE")]
    base: Option<String>,
    /// Speak plain HTTP to this registry host[:port] (repeatable).
    #[arg(long = "insecure-registry", value_name = "HOST")]
    insecure_registries: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Builder {
    Buildah,
    Docker,
}

impl From<Builder> for terrarium_image::builder::Builder {
    fn from(builder: Builder) -> Self {
        match builder {
            Builder::Buildah => Self::Buildah,
            Builder::Docker => Self::Docker,
        }
    }
}

#[derive(Debug, Args)]
pub struct ListArgs {
    reference: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The environment: NAME, NAME:VERSION, NAME@LABEL, or a definition file (registered
    /// first; anonymously when it has no name).
    reference: String,
    /// Where to write the image: `DIR` or `oci:DIR`, an OCI image layout (`oci:DIR:TAG` for
    /// skopeo, umoci, podman), or `docker-archive:FILE`, a `docker load` archive
    /// [default: an OCI layout in Terrarium's cache, images/NAME/VERSION].
    #[arg(long, value_name = "[oci:]DIR|docker-archive:FILE")]
    output: Option<PathBuf>,
    /// Push it to a registry: `REGISTRY/REPOSITORY[:TAG]`. Only the blobs the registry lacks are
    /// uploaded. Loopback registries are spoken to over HTTP, others over HTTPS.
    #[arg(long, value_name = "REGISTRY/REPO[:TAG]")]
    push: Option<String>,
    /// Speak plain HTTP to this registry host[:port] (repeatable).
    #[arg(long = "insecure-registry", value_name = "HOST")]
    insecure_registries: Vec<String>,
    /// Build on this image: `REGISTRY/REPOSITORY[:TAG]` or an OCI layout `oci:DIR[:TAG]`. Its
    /// layers are reused by digest. Needed for pip-only environments (the image's Python runs
    /// them); conda environments default to a scratch image.
    #[arg(long, value_name = "IMAGE")]
    base: Option<String>,
    /// Make the image of this deployment (its environment version must be REF's): the
    /// environment, then layers with Terrarium's service front, the worker shim, the model and
    /// the entry script, and an entrypoint that starts the service on port 5001.
    #[arg(long, value_name = "NAME")]
    deployment: Option<String>,
    /// The statically linked service front for `--deployment` (`scripts/build-front.sh`)
    /// [default: $TERRARIUM_FRONT, else `terrarium-serve` next to terrarium].
    #[arg(long, value_name = "PATH", requires = "deployment")]
    front: Option<PathBuf>,
    /// For environments defined by a Dockerfile (user-managed): build it with this builder,
    /// which must be installed.
    #[arg(long, value_enum)]
    builder: Option<Builder>,
    /// The image's tag in the layout [default: NAME-VERSION].
    #[arg(long)]
    tag: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl BuildArgs {
    /// The image `run --target container` runs: the version's own, into `output`, on `base`.
    pub(crate) fn for_container(reference: String, output: PathBuf, base: Option<String>) -> Self {
        Self {
            reference,
            output: Some(output),
            push: None,
            insecure_registries: Vec::new(),
            base,
            deployment: None,
            front: None,
            builder: None,
            tag: None,
            json: true,
        }
    }
}

impl BuildArgs {
    /// The image a Kubernetes target runs: the version's own, in Terrarium's cache, pushed to
    /// `push`, on `base`.
    pub(crate) fn for_push(reference: String, push: String, base: Option<String>) -> Self {
        Self {
            push: Some(push),
            output: None,
            ..Self::for_container(reference, PathBuf::new(), base)
        }
    }
}

pub(crate) use build::build_image;

/// The version as `terrarium_image::stage` takes it.
fn environment<'a>(
    record: &'a VersionRecord,
    lock: &'a Lock,
    lock_hash: &'a str,
) -> stage::Environment<'a> {
    stage::Environment {
        name: &record.name,
        version: &record.version,
        content_hash: &record.content_hash,
        definition: &record.definition,
        lock,
        lock_hash,
    }
}

/// The version's lock (made now if it has none), checked to be one an image can be built from.
fn image_lock(store: &dyn Store, record: &VersionRecord, has_base: bool) -> Result<(Lock, String)> {
    let (lock, lock_hash) = terrarium_compute::environment::ensure_lock(
        store,
        record,
        &environments::LockArgs::default().options()?,
        &crate::printer::Spinner::lazy(),
    )?;
    stage::check_lock(&environment(record, &lock, &lock_hash), has_base)?;
    Ok((lock, lock_hash))
}

/// uv, when staging the lock needs it (found, or fetched into the cache's tools, only then).
fn image_uv(cache: &Path, lock: &Lock) -> Result<Option<Uv>> {
    if !stage::needs_uv(lock) {
        return Ok(None);
    }
    Ok(Some(terrarium_resolve::uv::find(&cache.join("tools"))?))
}

pub fn run(context: &Context, command: ImageCommand) -> Result<ExitCode> {
    match command {
        ImageCommand::Build(args) => build(context, args),
        ImageCommand::List(args) => list(context, args),
        ImageCommand::Dockerfile(args) => dockerfile(context, args),
    }
}

fn dockerfile(context: &Context, args: DockerfileArgs) -> Result<ExitCode> {
    let store = context.store()?;
    let reference = super::env::parse_reference(&args.reference)?;
    let record = store.resolve(&reference)?;
    // A Dockerfile-defined environment: its own Dockerfile and build context, as registered.
    let docker = &record.definition.docker;
    if docker.base_dockerfile.is_some() && !record.definition.has_packages() {
        environments::write_docker_build(store.as_ref(), &record, &args.output)?;
        let name = docker.dockerfile_path.as_deref().unwrap_or("Dockerfile");
        println!(
            "wrote {}/{name} and its build context: docker build -t IMAGE -f {}/{name} {}",
            args.output.display(),
            args.output.display(),
            args.output.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let (lock, lock_hash) = image_lock(store.as_ref(), &record, args.base.is_some())?;
    let cache = terrarium_compute::environment::cache_dir()?;
    std::fs::create_dir_all(&cache)?;
    let base_blobs = cache.join("images").join("base-blobs");
    let progress = printer::Progress::default();
    let base = stage::open_base(
        args.base.as_deref(),
        &base_blobs,
        &args.insecure_registries,
        &progress,
    )?;
    let uv = image_uv(&cache, &lock)?;
    let staging = stage::Staging {
        environment: environment(&record, &lock, &lock_hash),
        cache_dir: &cache,
        base: base.as_ref(),
        base_blobs: &base_blobs,
        uv: uv.as_ref(),
    };
    stage::write_dockerfile(&staging, &args.output, &progress)?;
    println!(
        "wrote {}/Dockerfile and its build context: docker build -t IMAGE {}",
        args.output.display(),
        args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn list(context: &Context, args: ListArgs) -> Result<ExitCode> {
    let store = context.store()?;
    // NAME lists every version's images; NAME:VERSION and NAME@LABEL one version's. The
    // environment (and the version) must exist: an unknown one is an error, not an empty list.
    use terrarium_spec::names::Reference;
    let reference = super::env::parse_reference(&args.reference)?;
    let (name, version) = match &reference {
        Reference::Latest(name) => {
            store.versions(name)?;
            (name.clone(), None)
        }
        Reference::Version(..) | Reference::Label(..) => {
            let record = store.resolve(&reference)?;
            (record.name, Some(record.version))
        }
    };
    let builds = store.list_image_builds(&name, version.as_deref())?;
    if args.json {
        printer::json(&builds)?;
    } else {
        println!(
            "{:<8}  {:<71}  {:>9}  {:>6}  {:<24}  PUSHED TO",
            "VERSION", "DIGEST", "SIZE", "LAYERS", "BUILT"
        );
        for b in builds {
            println!(
                "{:<8}  {:<71}  {:>9}  {:>6}  {:<24}  {}",
                b.version,
                b.digest,
                printer::human_size(b.size),
                b.layers,
                b.built_at,
                b.pushed_to.as_deref().unwrap_or("-")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
