//! What goes into an image: the environment installed for its in-image prefix (or a built
//! virtual environment relocated onto the base's Python), a deployment's layers, the base.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use terrarium_env::EnvCache;
use terrarium_image::BuildInput;

use crate::environments;
use crate::printer::{self, user_error};

/// Install the lock's packages for the in-image prefix into a staging directory, and describe
/// the image: what `image build` and `image dockerfile` share.
pub(super) fn stage(
    cache: &Path,
    record: &terrarium_store::VersionRecord,
    lock: &terrarium_lock::Lock,
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
        let Some((base, blobs)) = base else {
            return Err(user_error(
                format!(
                    "{}:{} is a pip-only environment: its image needs a base image with Python",
                    record.name, record.version
                ),
                Some("pass --base IMAGE, e.g. --base python:3.11-slim"),
            ));
        };
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
        // A user-managed environment was installed by its user on their machine: there is
        // nothing Terrarium can put in an image.
        let Some(env) = environments::materialize(lock)? else {
            return Err(user_error(
                format!(
                    "{}:{} is user-managed: Terrarium records what is installed but cannot build it into an image",
                    record.name, record.version
                ),
                Some("build its image with the Dockerfile you install it with (`image build --builder buildah` for a Dockerfile environment), or register a system-managed definition"),
            ));
        };
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
        layer_cache: Some(cache.join("images").join("layer-index")),
    };
    Ok((staging, input))
}

/// The version's lock, checked to be one an image can be built from.
pub(super) fn image_lock(
    store: &dyn terrarium_store::Store,
    record: &terrarium_store::VersionRecord,
    has_base: bool,
) -> Result<(terrarium_lock::Lock, String)> {
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
    // conda packages take the C library from the system: a scratch image has none to give.
    if !has_base {
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
            return Err(user_error(
                format!(
                    "{}:{}: {} {} depends on `{constraint}`, the system's C library, which a scratch image does not have",
                    record.name, record.version, package.name, package.version
                ),
                Some("pass --base IMAGE, an image with glibc (e.g. Debian or Ubuntu)"),
            ));
        }
    }
    Ok((lock, lock_hash))
}

/// On a scratch base the environment is all there is: a program that needs the C library's
/// loader (conda's `python`, say, from a package that does not declare `__glibc`) would not
/// start. Refused, naming the file.
pub(super) fn check_scratch(
    record: &terrarium_store::VersionRecord,
    input: &BuildInput,
) -> Result<()> {
    if input.base.is_some() {
        return Ok(());
    }
    let missing = super::elf::missing_interpreter(&input.staging, &input.target_prefix)
        .context("cannot read the staged environment")?;
    if let Some((file, loader)) = missing {
        return Err(user_error(
            format!(
                "{}:{}: {}/{} needs {loader}, the system C library's loader, which a scratch image does not have",
                record.name,
                record.version,
                input.target_prefix,
                file.display()
            ),
            Some("pass --base IMAGE, an image with glibc (e.g. Debian or Ubuntu)"),
        ));
    }
    Ok(())
}

/// A deployment's layers (the service front, the worker shim, the model, the entry script) and
/// the entrypoint that starts it.
pub(super) fn add_deployment_layers(
    input: &mut BuildInput,
    d: &terrarium_store::DeploymentRecord,
    front: &Path,
) -> Result<()> {
    use terrarium_image::layer::Source;
    input.extra.push((
        format!("terrarium {} service front", env!("CARGO_PKG_VERSION")),
        vec![
            (
                "opt/terrarium/bin/terrarium-serve".into(),
                Source::Path(front.to_path_buf()),
            ),
            // The workers' sockets go in a temporary directory; a scratch image has none.
            ("tmp".into(), Source::Bytes(Vec::new(), 0o41777)),
        ],
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
        "/opt/terrarium/bin/terrarium-serve".to_string(),
        "--python".into(),
        format!("{}/bin/python", input.target_prefix),
        "--model".into(),
        "/opt/terrarium/model".into(),
        "--shim".into(),
        "/opt/terrarium/shim".into(),
        "--workers".into(),
        d.workers.to_string(),
        // Inside the container's own network namespace: reachable only through the port
        // the runtime publishes.
        "--host".into(),
        "0.0.0.0".into(),
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
pub(super) fn open_base(
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
        Err(terrarium_image::base::BaseError::Registry(
            err @ terrarium_image::registry::RegistryError::Reference(..),
        )) => Err(user_error(
            err.to_string(),
            Some("give REGISTRY/REPOSITORY[:TAG] or oci:DIR[:TAG]"),
        )),
        // A base that cannot be read or is not what its digests say: the message names the
        // base and why; `printer::report` picks exit 2 for the base's fault.
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
