//! `terrarium image build`: an OCI image of an environment version, without a daemon.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use terrarium_env::EnvCache;
use terrarium_image::{layout, BuildInput};

use super::Context;
use crate::environments;
use crate::printer::{self, user_error};

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

impl Builder {
    fn program(self) -> &'static str {
        match self {
            Builder::Buildah => "buildah",
            Builder::Docker => "docker",
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
    /// The environment: NAME, NAME:VERSION or NAME@LABEL.
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

pub fn run(context: &Context, command: ImageCommand) -> Result<ExitCode> {
    match command {
        ImageCommand::Build(args) => build(context, args),
        ImageCommand::List(args) => list(context, args),
        ImageCommand::Dockerfile(args) => dockerfile(context, args),
    }
}

fn dockerfile(context: &Context, args: DockerfileArgs) -> Result<ExitCode> {
    let store = context.store()?;
    let reference = terrarium_spec::names::Reference::parse(&args.reference)
        .map_err(|e| user_error(e, None))?;
    let record = store.resolve(&reference)?;
    let (lock, lock_hash) = image_lock(store.as_ref(), &record, args.base.is_some())?;
    let cache = environments::cache_dir()?;
    std::fs::create_dir_all(&cache)?;
    let base_blobs = cache.join("images").join("base-blobs");
    let base = open_base(args.base.as_deref(), &base_blobs, &args.insecure_registries)?;
    let (_staging, input) = stage(
        &cache,
        &record,
        &lock,
        &lock_hash,
        base.as_ref().map(|b| (b, base_blobs.as_path())),
    )?;
    terrarium_image::dockerfile::write(&input, &args.output)
        .map_err(|e| user_error(e.to_string(), None))?;
    println!(
        "wrote {}/Dockerfile and its build context: docker build -t IMAGE {}",
        args.output.display(),
        args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn list(context: &Context, args: ListArgs) -> Result<ExitCode> {
    let store = context.store()?;
    let (name, version) = match args.reference.split_once(':') {
        Some((name, version)) => (name.to_string(), Some(version.to_string())),
        None => (args.reference.clone(), None),
    };
    // The environment must exist: an unknown name is an error, not an empty list.
    store.versions(&name)?;
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
                human_size(b.size),
                b.layers,
                b.built_at,
                b.pushed_to.as_deref().unwrap_or("-")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// Install the lock's packages for the in-image prefix into a staging directory, and describe
/// the image: what `image build` and `image dockerfile` share.
fn stage(
    cache: &Path,
    record: &terrarium_store::VersionRecord,
    lock: &terrarium_resolve::Lock,
    lock_hash: &str,
    base: Option<(&terrarium_image::base::Base, &Path)>,
) -> Result<(tempfile::TempDir, BuildInput)> {
    let platform = "linux-64";
    let section = lock.platforms.get(platform).expect("checked by the caller");
    // The in-image prefix is the environment's name, not its lock hash: conda packages hold
    // their prefix in their files, so a prefix that changed with every lock would change every
    // layer, and a one-package change must re-upload one package's layer.
    let target_prefix = format!("/opt/terrarium/envs/{}", record.name.replace('/', "--"));
    let envs = EnvCache::new(cache);
    std::fs::create_dir_all(cache)?;
    let staging = tempfile::Builder::new()
        .prefix(".image-")
        .tempdir_in(cache)
        .context("cannot create a staging directory")?;
    let uv = if section.pylock.is_some() {
        Some(terrarium_resolve::uv::find(&cache.join("tools"))?)
    } else {
        None
    };
    if section.conda.is_empty() {
        // A pip-only environment runs on the base image's Python: its (relocatable) virtual
        // environment, with `home` and the `python` links pointing at the image's interpreter.
        let (base, blobs) = base.expect("image_lock requires a base for pip-only environments");
        let version = section
            .python
            .as_ref()
            .map(|p| p.version.clone())
            .unwrap_or_default();
        let minor: String = version.split('.').take(2).collect::<Vec<_>>().join(".");
        let python = terrarium_image::base::find_python(base, blobs, &minor)?.ok_or_else(|| {
            user_error(
                format!(
                    "the base image {} has no python{minor} in /usr/local/bin or /usr/bin; {}:{} was locked for Python {version}",
                    base.reference, record.name, record.version
                ),
                Some("choose a base image with that Python"),
            )
        })?;
        let env = environments::materialize(lock)?.expect("a system-managed environment");
        relocate_venv(&env.prefix, staging.path(), &python)?;
    } else {
        let spinner = printer::Spinner::start("installing for the image");
        let installed = envs.install_into(
            lock,
            platform,
            staging.path(),
            Path::new(&target_prefix),
            uv.as_ref(),
            &spinner,
        );
        spinner.finish();
        installed?;
    }

    // The definition as one line of JSON: a label value a Dockerfile can say exactly too.
    let definition_text = serde_json::to_string(&record.definition)?;
    let mut labels = BTreeMap::new();
    labels.insert("org.opencontainers.image.title".into(), record.name.clone());
    labels.insert(
        "org.opencontainers.image.version".into(),
        record.version.clone(),
    );
    labels.insert("org.terrarium.environment.name".into(), record.name.clone());
    labels.insert(
        "org.terrarium.environment.version".into(),
        record.version.clone(),
    );
    labels.insert(
        "org.terrarium.environment.content-hash".into(),
        record.content_hash.clone(),
    );
    labels.insert(
        "org.terrarium.environment.lock-hash".into(),
        lock_hash.to_string(),
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
    for (key, value) in &record.definition.environment_variables {
        // Secret references stay references: they are resolved when a container starts.
        env.push((key.clone(), value.clone()));
    }
    let python = staging.path().join("bin/python");
    let cmd = if python.exists() {
        vec![format!("{target_prefix}/bin/python")]
    } else {
        Vec::new()
    };
    let input = BuildInput {
        staging: staging.path().to_path_buf(),
        target_prefix: target_prefix.clone(),
        env,
        labels,
        metadata: vec![
            (
                ".terrarium-image/environment.yml".into(),
                definition_text.into_bytes(),
            ),
            (
                ".terrarium-image/lock.json".into(),
                lock.to_json().into_bytes(),
            ),
        ],
        cmd,
        architecture: "amd64".into(),
        base: base.map(|(b, _)| b.clone()),
        extra: Vec::new(),
        entrypoint: Vec::new(),
        exposed_ports: Vec::new(),
    };
    Ok((staging, input))
}

/// The version's lock, checked to be one an image can be built from.
fn image_lock(
    store: &dyn terrarium_store::Store,
    record: &terrarium_store::VersionRecord,
    has_base: bool,
) -> Result<(terrarium_resolve::Lock, String)> {
    let (lock, lock_hash) =
        environments::ensure_lock(store, record, &environments::LockArgs::default().options()?)?;
    let platform = "linux-64";
    let Some(section) = lock.platforms.get(platform) else {
        return Err(user_error(
            format!(
                "{}:{} has no lock for {platform}, the platform images are built for",
                record.name, record.version
            ),
            Some("relock with --platform linux-64"),
        ));
    };
    if section.conda.is_empty() && !has_base {
        return Err(user_error(
            format!(
                "{}:{} is not a conda environment: a scratch image holds only a self-contained conda environment; a pip-only environment needs a base image with its Python",
                record.name, record.version
            ),
            Some("pass --base IMAGE (an image with the Python the environment was locked for), or add python to its conda dependencies"),
        ));
    }
    Ok((lock, lock_hash))
}

/// A user-managed environment defined by a Dockerfile: built by the builder the user names
/// (buildah or docker), which Terrarium runs but does not replace.
fn build_with_builder(
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
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()));
    if !found {
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
    let context_dir = match &docker.build_context {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if !dir.is_dir() {
                return Err(user_error(
                    format!(
                        "the build context {} of {}:{} is gone",
                        dir.display(),
                        record.name,
                        record.version
                    ),
                    None,
                ));
            }
            let relative = PathBuf::from(docker.dockerfile_path.as_deref().unwrap_or("Dockerfile"));
            let digest = terrarium_spec::context::context_digest(&dir, &relative)
                .map_err(|e| user_error(e.to_string(), None))?;
            if digest != docker.build_context_digest {
                return Err(user_error(
                    format!(
                        "the build context {} changed since {}:{} was registered; the image would not be that version's",
                        dir.display(),
                        record.name,
                        record.version
                    ),
                    Some("register the changed context as a new version"),
                ));
            }
            dir
        }
        None => scratch.path().to_path_buf(),
    };
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

/// A deployment's layers (the service front, the worker shim, the model, the entry script) and
/// the entrypoint that starts it.
fn add_deployment_layers(
    input: &mut BuildInput,
    d: &terrarium_store::DeploymentRecord,
) -> Result<()> {
    use terrarium_image::layer::Source;
    let front = std::env::current_exe().context("cannot find the terrarium binary")?;
    input.extra.push((
        format!("terrarium {} service front", env!("CARGO_PKG_VERSION")),
        vec![("opt/terrarium/bin/terrarium".into(), Source::Path(front))],
    ));
    input.extra.push((
        "worker shim".into(),
        terrarium_serve::shim::FILES
            .iter()
            .map(|(path, text)| {
                (
                    format!("opt/terrarium/shim/{path}"),
                    Source::Bytes(text.as_bytes().to_vec(), 0o100644),
                )
            })
            .collect(),
    ));
    let model = PathBuf::from(&d.model_path);
    let mut entries = Vec::new();
    let mut stack = vec![model.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)
            .with_context(|| format!("cannot read the model directory {}", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let relative = path.strip_prefix(&model).expect("walked from the model");
                entries.push((
                    format!("opt/terrarium/model/{}", relative.display()),
                    Source::Path(path.clone()),
                ));
            }
        }
    }
    input
        .extra
        .push((format!("model {}", d.model_hash), entries));
    let mut entrypoint = vec![
        "/opt/terrarium/bin/terrarium".to_string(),
        "serve".into(),
        "--python".into(),
        format!("{}/bin/python", input.target_prefix),
        "--model".into(),
        "/opt/terrarium/model".into(),
        "--shim".into(),
        "/opt/terrarium/shim".into(),
        "--workers".into(),
        d.workers.to_string(),
        "--port".into(),
        "5001".into(),
    ];
    if let Some(entry) = &d.entry {
        let name = Path::new(entry)
            .file_name()
            .context("the entry script has no file name")?
            .to_string_lossy()
            .to_string();
        input.extra.push((
            "entry script".into(),
            vec![(
                format!("opt/terrarium/app/{name}"),
                Source::Path(PathBuf::from(entry)),
            )],
        ));
        entrypoint.push("--entry".into());
        entrypoint.push(format!("/opt/terrarium/app/{name}"));
    }
    input.entrypoint = entrypoint;
    input.exposed_ports = vec![5001];
    input
        .labels
        .insert("org.terrarium.deployment.name".into(), d.name.clone());
    input.labels.insert(
        "org.terrarium.deployment.model-hash".into(),
        d.model_hash.clone(),
    );
    Ok(())
}

/// Open (pull) the base image, its layers into `blobs`.
fn open_base(
    reference: Option<&str>,
    blobs: &Path,
    insecure: &[String],
) -> Result<Option<terrarium_image::base::Base>> {
    let Some(reference) = reference else {
        return Ok(None);
    };
    let spinner = printer::Spinner::start(&format!("reading the base image {reference}"));
    let base = terrarium_image::base::open(reference, blobs, insecure);
    spinner.finish();
    match base {
        Ok(base) => Ok(Some(base)),
        Err(err @ terrarium_image::base::BaseError::Invalid(..)) => Err(user_error(
            err.to_string(),
            Some("give REGISTRY/REPOSITORY[:TAG] or oci:DIR[:TAG]"),
        )),
        Err(terrarium_image::base::BaseError::Registry(
            err @ terrarium_image::registry::RegistryError::Reference(..),
        )) => Err(user_error(
            err.to_string(),
            Some("give REGISTRY/REPOSITORY[:TAG] or oci:DIR[:TAG]"),
        )),
        Err(err) => {
            Err(anyhow::Error::new(err).context(format!("cannot read the base image {reference}")))
        }
    }
}

/// Copy a built virtual environment into `staging` (hard links where possible), pointing its
/// `pyvenv.cfg` home and its `bin/python*` links at the image's interpreter `python`.
fn relocate_venv(prefix: &Path, staging: &Path, python: &str) -> Result<()> {
    let home = Path::new(python).parent().unwrap_or(Path::new("/usr/bin"));
    let mut stack = vec![prefix.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?
        {
            let entry = entry?;
            let path = entry.path();
            let relative = path.strip_prefix(prefix).expect("walked from the prefix");
            if relative.starts_with(".terrarium") {
                continue;
            }
            let target = staging.join(relative);
            let kind = entry.file_type()?;
            if kind.is_dir() {
                std::fs::create_dir_all(&target)?;
                stack.push(path);
            } else if kind.is_symlink() {
                let link = std::fs::read_link(&path)?;
                let in_bin = relative.parent() == Some(Path::new("bin"));
                let name = relative.file_name().unwrap_or_default().to_string_lossy();
                let link = if in_bin && link.is_absolute() && name.starts_with("python") {
                    PathBuf::from(python)
                } else {
                    link
                };
                std::os::unix::fs::symlink(link, &target)?;
            } else if relative == Path::new("pyvenv.cfg") {
                let text = std::fs::read_to_string(&path)?;
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
                std::fs::write(&target, text)?;
            } else if std::fs::hard_link(&path, &target).is_err() {
                std::fs::copy(&path, &target)?;
            }
        }
    }
    Ok(())
}

/// Whether the OCI layout at `dir` holds the image `digest`.
fn layout_has(dir: &Path, digest: &str) -> bool {
    std::fs::read_to_string(dir.join("index.json")).is_ok_and(|index| index.contains(digest))
        && layout::blobs_dir(dir)
            .join(digest.trim_start_matches("sha256:"))
            .is_file()
}

fn build(context: &Context, args: BuildArgs) -> Result<ExitCode> {
    let store = context.store()?;
    let reference = terrarium_spec::names::Reference::parse(&args.reference)
        .map_err(|e| user_error(e, None))?;
    let record = store.resolve(&reference)?;
    let push = args
        .push
        .as_deref()
        .map(terrarium_image::registry::ImageRef::parse)
        .transpose()
        .map_err(|e| {
            user_error(
                e.to_string(),
                Some("e.g. --push 127.0.0.1:5000/team/train:v1"),
            )
        })?;
    if record.definition.docker.base_dockerfile.is_some() {
        return build_with_builder(store.as_ref(), &record, &args, push.as_ref());
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
    let (lock, lock_hash) = image_lock(store.as_ref(), &record, args.base.is_some())?;
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
            if args.base.is_none() {
                return Err(user_error(
                    format!("the image of deployment {name} needs --base: an image with the C library the service front links to (e.g. Debian)"),
                    None,
                ));
            }
            Some(d)
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
        if args.json {
            let mut value = serde_json::to_value(done)?;
            value["reused"] = serde_json::json!(true);
            printer::json(&value)?;
        } else {
            println!(
                "{}:{} was built already: {} ({})",
                record.name,
                record.version,
                done.digest,
                done.pushed_to
                    .as_deref()
                    .or(done.output.as_deref())
                    .unwrap_or("-")
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Kept until the image is written: the layers are read from it.
    let (_staging, input) = stage(
        &cache,
        &record,
        &lock,
        &lock_hash,
        base.as_ref().map(|b| (b, blobs.as_path())),
    )?;
    let target_prefix = input.target_prefix.clone();
    let mut input = input;
    if let Some(d) = &deployment {
        add_deployment_layers(&mut input, d)?;
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
    if args.json {
        printer::json(&serde_json::json!({
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
        }))?;
    } else {
        println!(
            "built {}:{} as oci:{}:{tag} ({}, {} layers, {:.1} MiB) in {seconds:.1}s",
            record.name,
            record.version,
            output.display(),
            image.manifest_digest,
            image.layers.len(),
            image.size() as f64 / (1024.0 * 1024.0)
        );
    }
    if let (false, Some((target, tag, report))) = (args.json, &pushed) {
        println!(
            "pushed {}/{}:{tag}: {} blobs uploaded ({} bytes), {} already there",
            target.registry,
            target.repository,
            report.uploaded_blobs,
            report.uploaded_bytes,
            report.skipped_blobs
        );
    }
    Ok(ExitCode::SUCCESS)
}
