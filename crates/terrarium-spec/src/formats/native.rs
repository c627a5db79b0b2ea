//! Terrarium's native YAML: the Azure ML v2 environment YAML plus extension keys.
//!
//! Azure ML v2 keys: `$schema`, `name`, `version`, `description`, `tags`, `image`,
//! `build.path` + `build.dockerfile_path`, `conda_file` (a path or an inline mapping), `os_type`,
//! `inference_config`. An Azure ML v2 file therefore imports unchanged.
//!
//! Extension keys: `runtime`, `python` (`version`, `interpreter`, `user_managed`, `pip`,
//! `index_url`, `extra_index_urls`, `find_links`, `no_index`), `environment_variables`,
//! `docker` (`base_dockerfile`, `shm_size`, `gpu`, `platform`), `spark` (`repositories`,
//! `packages`, `precache`) and `extensions` (preserved fields of other formats).

use std::path::{Path, PathBuf};

use crate::error::SpecError;
use crate::formats::{conda_env, dropped, ExportNote, Exported, Format, Imported};
use crate::model::{Definition, Inference, PipRequirement, Route, Runtime};
use crate::pip::{self, Requirements};
use crate::source::SourceFile;
use crate::yaml::{self, MapBuilder, Node, Reader, Value, Y};

const AML_SCHEMA: &str = "https://azuremlschemas.azureedge.net/latest/environment.schema.json";

pub fn import(path: &Path) -> Result<Imported, SpecError> {
    import_source(&SourceFile::read(path)?)
}

/// Import from text already read; relative paths resolve against `source.path`.
pub fn import_source(source: &SourceFile) -> Result<Imported, SpecError> {
    let path = source.path.as_path();
    let source = source.clone();
    let root = yaml::parse(&source)?;
    let mut reader = Reader::new(&source);
    let mut files = vec![path.to_path_buf()];
    let mut d = Definition::default();
    if root.value == Value::Null {
        return Err(reader.error(root.line, "name", "the file is empty"));
    }
    let mut map = reader.map(&root, "")?;
    let _ = map.get("$schema");
    d.name = reader
        .opt_string(map.get("name"), "name")?
        .unwrap_or_default();
    if let Some(node) = map.get("version") {
        d.version = reader.opt_string(Some(node), "version")?;
        if let Some(v) = &d.version {
            crate::names::validate_version(v).map_err(|e| reader.error(node.line, "version", e))?;
        }
    }
    d.description = reader.opt_string(map.get("description"), "description")?;
    if let Some(node) = map.get("tags") {
        for (k, v, _) in reader.string_map(node, "tags")? {
            d.tags.insert(k, v);
        }
    }
    if let Some(node) = map.get("image") {
        d.docker.base_image = reader.opt_string(Some(node), "image")?;
        if let Some(image) = &d.docker.base_image {
            super::validate_image_reference(image)
                .map_err(|e| reader.error(node.line, "image", e))?;
        }
    }
    if let Some(node) = map.get("build") {
        let mut build = reader.map(node, "build")?;
        let context_node = build
            .get("path")
            .ok_or_else(|| reader.error(node.line, "build.path", "missing build context path"))?;
        let context = reader.string(context_node, "build.path")?;
        crate::names::validate_relative_path(&context)
            .map_err(|e| reader.error(context_node.line, "build.path", e))?;
        let dockerfile_node = build.get("dockerfile_path");
        let dockerfile = reader.opt_string(dockerfile_node, "build.dockerfile_path")?;
        if let (Some(file), Some(node)) = (&dockerfile, dockerfile_node) {
            crate::names::validate_relative_path(file)
                .map_err(|e| reader.error(node.line, "build.dockerfile_path", e))?;
        }
        build.finish(&mut reader);
        d.docker.build_context = Some(context.clone());
        d.docker.dockerfile_path = dockerfile.clone();
        // Terrarium's own export carries the Dockerfile's text inline as well; then the text is
        // the definition and the context is only recorded.
        let inline = root_has_inline_dockerfile(&root);
        let file = resolve(path, &context).join(dockerfile.as_deref().unwrap_or("Dockerfile"));
        if inline {
            // Written by Terrarium: the document carries the Dockerfile and the context digest.
            let digest = root_docker_key(&root, "build_context_digest");
            d.docker.build_context_digest =
                reader.opt_string(digest, "docker.build_context_digest")?;
        } else {
            let dir = resolve(path, &context);
            let rel = Path::new(dockerfile.as_deref().unwrap_or("Dockerfile"));
            d.docker.build_context_digest =
                crate::context::context_digest(&dir, rel).map_err(|e| match e {
                    SpecError::Io {
                        source: io,
                        path: p,
                        ..
                    } => reader.error(
                        context_node.line,
                        "build.path",
                        format!("cannot read the build context {}: {io}", p.display()),
                    ),
                    other => other,
                })?;
        }
        if !inline {
            let text = SourceFile::read(&file).map_err(|e| match e {
                SpecError::Io { source: io, .. } => reader.error(
                    context_node.line,
                    "build.path",
                    format!("cannot read the Dockerfile {}: {io}", file.display()),
                ),
                other => other,
            })?;
            super::dockerfile::validate(&text)?;
            files.push(file);
            d.docker.base_dockerfile = Some(text.text);
        }
    }
    if let Some(node) = map.get("conda_file") {
        let file = match &node.value {
            Value::Map(_) => conda_env::read(&mut reader, node, "conda_file")?,
            _ => {
                let rel = reader.string(node, "conda_file")?;
                let conda_path = resolve(path, &rel);
                let conda_source = SourceFile::read(&conda_path).map_err(|e| match e {
                    SpecError::Io { source: io, .. } => {
                        let mut message = format!("cannot read {}: {io}", conda_path.display());
                        if io.kind() == std::io::ErrorKind::NotFound {
                            if let Some(near) = super::near_name(&conda_path) {
                                // Said as the user would write it in `conda_file`.
                                let meant = match rel.rsplit_once('/') {
                                    Some((dir, _)) => format!("{dir}/{near}"),
                                    None => near,
                                };
                                message.push_str(&format!("; did you mean `{meant}`?"));
                            }
                        }
                        reader.error(node.line, "conda_file", message)
                    }
                    other => other,
                })?;
                let conda_root = yaml::parse(&conda_source)?;
                let mut conda_reader = Reader::new(&conda_source);
                let file = conda_env::read(&mut conda_reader, &conda_root, "")?;
                reader.warnings.extend(conda_reader.warnings);
                files.push(conda_path);
                file
            }
        };
        d.conda = file.conda;
        d.python.pip = file.pip;
        d.python.index = file.index;
        d.environment_variables = file.variables;
    }
    if let Some(node) = map.get("os_type") {
        let os = reader.string(node, "os_type")?.to_ascii_lowercase();
        match os.as_str() {
            "linux" => {}
            "windows" => d.docker.platform = Some("windows/amd64".into()),
            other => {
                return Err(reader.error(
                    node.line,
                    "os_type",
                    format!("expected `linux` or `windows`, found `{other}`"),
                ))
            }
        }
    }
    if let Some(node) = map.get("inference_config") {
        d.inference = Some(read_inference(&mut reader, node)?);
    }

    // Extension keys.
    let runtime = match map.get("runtime") {
        Some(node) => {
            let text = reader.string(node, "runtime")?;
            Some(Runtime::parse(&text).ok_or_else(|| {
                reader.error(
                    node.line,
                    "runtime",
                    format!("expected python, spark or docker, found `{text}`"),
                )
            })?)
        }
        None => None,
    };
    if let Some(node) = map.get("python") {
        read_python(&mut reader, node, &mut d)?;
    }
    if let Some(node) = map.get("environment_variables") {
        for (k, v, line) in reader.string_map(node, "environment_variables")? {
            let field = format!("environment_variables.{k}");
            validate_variable(&k, &v).map_err(|e| reader.error(line, &field, e))?;
            d.environment_variables.insert(k, v);
        }
    }
    if let Some(node) = map.get("docker") {
        let mut docker = reader.map(node, "docker")?;
        if let Some(n) = docker.get("base_dockerfile") {
            let text = reader.string(n, "docker.base_dockerfile")?;
            super::dockerfile::validate(&SourceFile::from_text(path, &text))
                .map_err(|e| reader.error(n.line, "docker.base_dockerfile", e.to_string()))?;
            d.docker.base_dockerfile = Some(text);
        }
        // Read above, with `build`; marked as used here.
        let _ = docker.get("build_context_digest");
        d.docker.shm_size = reader.opt_string(docker.get("shm_size"), "docker.shm_size")?;
        if let Some(n) = docker.get("gpu") {
            d.docker.gpu = reader.bool(n, "docker.gpu")?;
        }
        if let Some(n) = docker.get("platform") {
            let platform = reader.string(n, "docker.platform")?;
            if !platform.contains('/') {
                return Err(reader.error(
                    n.line,
                    "docker.platform",
                    "expected OS/ARCH, e.g. linux/arm64",
                ));
            }
            d.docker.platform = (platform != "linux/amd64").then_some(platform);
        }
        docker.finish(&mut reader);
    }
    if let Some(node) = map.get("spark") {
        let mut spark = reader.map(node, "spark")?;
        if let Some(n) = spark.get("repositories") {
            d.spark.repositories = reader
                .string_list(n, "spark.repositories")?
                .into_iter()
                .map(|(_, s)| s)
                .collect();
        }
        if let Some(n) = spark.get("packages") {
            for (line, coordinate) in reader.string_list(n, "spark.packages")? {
                validate_maven(&coordinate).map_err(|e| reader.error(line, "spark.packages", e))?;
                d.spark.packages.push(coordinate);
            }
        }
        if let Some(n) = spark.get("precache") {
            d.spark.precache = reader.bool(n, "spark.precache")?;
        }
        spark.finish(&mut reader);
    }
    if let Some(node) = map.get("extensions") {
        let ext = reader.map(node, "extensions")?;
        if let Value::Map(entries) = &node.value {
            for (key, value) in entries {
                d.extensions.insert(key.clone(), to_json(value));
            }
        }
        drop(ext);
    }
    map.finish(&mut reader);
    d.runtime = runtime.unwrap_or_else(|| inferred_runtime(&d));
    Ok(Imported {
        definition: d,
        format: Format::Native,
        warnings: reader.warnings,
        files,
    })
}

fn root_has_inline_dockerfile(root: &Node) -> bool {
    root_docker_key(root, "base_dockerfile").is_some()
}

/// `docker.<key>` of the document, read before the `docker` section is walked.
fn root_docker_key<'n>(root: &'n Node, key: &str) -> Option<&'n Node> {
    let Value::Map(entries) = &root.value else {
        return None;
    };
    let (_, docker) = entries.iter().find(|(k, _)| k == "docker")?;
    let Value::Map(docker) = &docker.value else {
        return None;
    };
    docker.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn resolve(base: &Path, rel: &str) -> PathBuf {
    let rel = Path::new(rel);
    if rel.is_absolute() {
        rel.to_path_buf()
    } else {
        base.parent().unwrap_or(Path::new(".")).join(rel)
    }
}

fn read_python(reader: &mut Reader<'_>, node: &Node, d: &mut Definition) -> Result<(), SpecError> {
    let mut python = reader.map(node, "python")?;
    d.python.version = reader.opt_string(python.get("version"), "python.version")?;
    if let (Some(v), Some(n)) = (&d.python.version, python.get("version")) {
        let ok = v
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit() || c == '*'));
        if !ok {
            return Err(reader.error(
                n.line,
                "python.version",
                format!("invalid Python version `{v}`; expected e.g. 3.11"),
            ));
        }
    }
    d.python.interpreter = reader.opt_string(python.get("interpreter"), "python.interpreter")?;
    if let Some(n) = python.get("user_managed") {
        d.python.user_managed = reader.bool(n, "python.user_managed")?;
    }
    let mut requirements = Requirements::default();
    if let Some(n) = python.get("pip") {
        let lines = reader.string_list(n, "python.pip")?;
        pip::parse_lines(&reader.source.path, lines, &mut requirements, 0).map_err(
            |e| match e {
                SpecError::Invalid {
                    mut location,
                    message,
                } => {
                    location.field.get_or_insert_with(|| "python.pip".into());
                    SpecError::Invalid { location, message }
                }
                other => other,
            },
        )?;
    }
    reader.warnings.append(&mut requirements.warnings);
    d.python.pip.extend(requirements.requirements);
    let index = &mut d.python.index;
    if requirements.index.index_url.is_some() {
        index.index_url = requirements.index.index_url;
    }
    index
        .extra_index_urls
        .extend(requirements.index.extra_index_urls);
    index.find_links.extend(requirements.index.find_links);
    index.no_index |= requirements.index.no_index;
    if let Some(url) = reader.opt_string(python.get("index_url"), "python.index_url")? {
        index.index_url = Some(url);
    }
    if let Some(n) = python.get("extra_index_urls") {
        index.extra_index_urls.extend(
            reader
                .string_list(n, "python.extra_index_urls")?
                .into_iter()
                .map(|(_, s)| s),
        );
    }
    if let Some(n) = python.get("find_links") {
        index.find_links.extend(
            reader
                .string_list(n, "python.find_links")?
                .into_iter()
                .map(|(_, s)| s),
        );
    }
    if let Some(n) = python.get("no_index") {
        index.no_index |= reader.bool(n, "python.no_index")?;
    }
    python.finish(reader);
    Ok(())
}

fn read_inference(reader: &mut Reader<'_>, node: &Node) -> Result<Inference, SpecError> {
    let mut map = reader.map(node, "inference_config")?;
    let mut route = |reader: &mut Reader<'_>, key: &str| -> Result<Option<Route>, SpecError> {
        let field = format!("inference_config.{key}");
        let Some(n) = map.get(key) else {
            return Ok(None);
        };
        let mut r = reader.map(n, &field)?;
        let path_node = r
            .get("path")
            .ok_or_else(|| reader.error(n.line, &format!("{field}.path"), "missing route path"))?;
        let path = reader.string(path_node, &format!("{field}.path"))?;
        if !path.starts_with('/') {
            return Err(reader.error(
                path_node.line,
                &format!("{field}.path"),
                "a route path starts with `/`",
            ));
        }
        let port_node = r
            .get("port")
            .ok_or_else(|| reader.error(n.line, &format!("{field}.port"), "missing route port"))?;
        let port = reader.u16(port_node, &format!("{field}.port"))?;
        r.finish(reader);
        Ok(Some(Route { path, port }))
    };
    let inference = Inference {
        liveness_route: route(reader, "liveness_route")?,
        readiness_route: route(reader, "readiness_route")?,
        scoring_route: route(reader, "scoring_route")?,
    };
    map.finish(reader);
    Ok(inference)
}

/// Environment variable names are POSIX-ish; `${secret:NAME}` references must be well formed.
pub fn validate_variable(name: &str, value: &str) -> Result<(), String> {
    let name_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !name_ok {
        return Err(format!(
            "invalid variable name `{name}`: use letters, digits and `_`"
        ));
    }
    let mut rest = value;
    while let Some(start) = rest.find("${secret:") {
        let after = &rest[start + "${secret:".len()..];
        let end = after.find('}').ok_or_else(|| {
            "unterminated secret reference: expected `${secret:NAME}`".to_string()
        })?;
        let secret = &after[..end];
        if secret.is_empty()
            || !secret
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(format!("invalid secret reference `${{secret:{secret}}}`: names use letters, digits, `_` and `-`"));
        }
        rest = &after[end + 1..];
    }
    Ok(())
}

/// `group:artifact:version`.
pub fn validate_maven(coordinate: &str) -> Result<(), String> {
    let parts: Vec<&str> = coordinate.split(':').collect();
    if parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && !p.contains(char::is_whitespace))
    {
        Ok(())
    } else {
        Err(format!(
            "invalid Spark package `{coordinate}`: expected group:artifact:version"
        ))
    }
}

/// Plain scalars become JSON booleans, numbers and null where they read as such.
fn to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value as J;
    match &node.value {
        Value::Null => J::Null,
        Value::Scalar { text, plain: false } => J::String(text.clone()),
        Value::Scalar { text, plain: true } => match text.as_str() {
            "true" => J::Bool(true),
            "false" => J::Bool(false),
            _ => serde_json::from_str::<serde_json::Number>(text)
                .map(J::Number)
                .unwrap_or_else(|_| J::String(text.clone())),
        },
        Value::Seq(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => J::Object(
            entries
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect(),
        ),
    }
}

fn inference_yaml(inference: &Inference) -> Y {
    let mut map = MapBuilder::new();
    for (key, route) in [
        ("liveness_route", &inference.liveness_route),
        ("readiness_route", &inference.readiness_route),
        ("scoring_route", &inference.scoring_route),
    ] {
        if let Some(route) = route {
            map.put(
                key,
                Y::Map(vec![
                    ("path".into(), Y::str(route.path.clone())),
                    ("port".into(), Y::Int(route.port.into())),
                ]),
            );
        }
    }
    map.build()
}

/// The Azure ML v2 part, shared by both exports. `conda_file` is given by the caller.
fn aml_v2_fields(d: &Definition, map: &mut MapBuilder, conda_file: Option<Y>) {
    map.put("$schema", Y::str(AML_SCHEMA));
    map.put("name", Y::str(d.name.clone()));
    map.opt("version", d.version.as_ref());
    map.opt("description", d.description.as_ref());
    if !d.tags.is_empty() {
        map.put(
            "tags",
            Y::Map(
                d.tags
                    .iter()
                    .map(|(k, v)| (k.clone(), Y::str(v.clone())))
                    .collect(),
            ),
        );
    }
    map.opt("image", d.docker.base_image.as_ref());
    if let Some(context) = &d.docker.build_context {
        let mut build = MapBuilder::new();
        build.put("path", Y::str(context.clone()));
        build.opt("dockerfile_path", d.docker.dockerfile_path.as_ref());
        map.put("build", build.build());
    }
    if let Some(conda_file) = conda_file {
        map.put("conda_file", conda_file);
    }
    if d.docker
        .platform
        .as_deref()
        .is_some_and(|p| p.starts_with("windows/"))
    {
        map.put("os_type", Y::str("windows"));
    }
    if let Some(inference) = &d.inference {
        map.put("inference_config", inference_yaml(inference));
    }
}

fn has_conda_part(d: &Definition) -> bool {
    d.conda.is_some()
}

pub fn export(d: &Definition) -> Exported {
    let mut map = MapBuilder::new();
    let conda_file = has_conda_part(d).then(|| {
        let mut with_pip = d.clone();
        with_pip.python.version = None;
        conda_env::conda_yaml(&with_pip, None, false)
    });
    aml_v2_fields(d, &mut map, conda_file);
    // Written unless it is python and would be read back as python: a user-managed Python
    // environment on a Dockerfile (Azure ML v1's shape) would otherwise come back as docker.
    if d.runtime != Runtime::Python || inferred_runtime(d) != Runtime::Python {
        map.put("runtime", Y::str(d.runtime.as_str()));
    }
    let mut python = MapBuilder::new();
    python.opt("version", d.python.version.as_ref());
    python.opt("interpreter", d.python.interpreter.as_ref());
    if d.python.user_managed {
        python.put("user_managed", Y::Bool(true));
    }
    if !has_conda_part(d) {
        let mut lines = d.python.index.to_lines();
        lines.extend(d.python.pip.iter().map(PipRequirement::to_line));
        if !lines.is_empty() {
            python.put("pip", Y::strs(&lines));
        }
    }
    if !python.is_empty() {
        map.put("python", python.build());
    }
    if !d.environment_variables.is_empty() {
        map.put(
            "environment_variables",
            Y::Map(
                d.environment_variables
                    .iter()
                    .map(|(k, v)| (k.clone(), Y::str(v.clone())))
                    .collect(),
            ),
        );
    }
    let mut docker = MapBuilder::new();
    docker.opt("base_dockerfile", d.docker.base_dockerfile.as_ref());
    if d.docker.build_context.is_some() {
        docker.opt(
            "build_context_digest",
            d.docker.build_context_digest.as_ref(),
        );
    }
    docker.opt("shm_size", d.docker.shm_size.as_ref());
    if d.docker.gpu {
        docker.put("gpu", Y::Bool(true));
    }
    if d.docker
        .platform
        .as_deref()
        .is_some_and(|p| p != "windows/amd64")
    {
        docker.opt("platform", d.docker.platform.as_ref());
    }
    if !docker.is_empty() {
        map.put("docker", docker.build());
    }
    if !d.spark.is_empty() {
        let mut spark = MapBuilder::new();
        if !d.spark.repositories.is_empty() {
            spark.put("repositories", Y::strs(&d.spark.repositories));
        }
        if !d.spark.packages.is_empty() {
            spark.put("packages", Y::strs(&d.spark.packages));
        }
        spark.put("precache", Y::Bool(d.spark.precache));
        map.put("spark", spark.build());
    }
    if !d.extensions.is_empty() {
        map.put(
            "extensions",
            Y::Map(
                d.extensions
                    .iter()
                    .map(|(k, v)| (k.clone(), Y::Json(v.clone())))
                    .collect(),
            ),
        );
    }
    Exported {
        files: vec![(String::new(), yaml::render(&map.build()))],
        dropped: Vec::new(),
        notes: Vec::new(),
    }
}

/// Azure ML v2: a directory with `environment.yml`; `conda.yml` when there are packages; the
/// Dockerfile in its build context folder (`docker-context/` for an inline Dockerfile).
///
/// The context's other files are not in the definition, only their digest: the export lists
/// `docker.build_context` as dropped when there are any ([`super::context_folder`] says where
/// a caller that has them writes them).
pub fn export_aml_v2(d: &Definition) -> Exported {
    let mut files = Vec::new();
    let mut notes = Vec::new();
    let mut cannot = vec![
        "python.interpreter",
        "python.user_managed",
        "docker.shm_size",
        "docker.gpu",
        "spark.repositories",
        "spark.packages",
        "spark.precache",
        "extensions",
    ];
    if d.docker
        .platform
        .as_deref()
        .is_some_and(|p| p != "windows/amd64")
    {
        cannot.push("docker.platform");
    }
    let needs_conda = d.conda.is_some() || !d.python.pip.is_empty() || !d.python.index.is_empty();
    if needs_conda {
        files.push((
            "conda.yml".to_string(),
            yaml::render(&conda_env::conda_yaml(d, None, true)),
        ));
        if d.conda.is_none() && d.python.version.is_some() {
            notes.push(ExportNote::PipOnlyAsConda {
                format: Format::AmlV2,
            });
        }
    } else {
        // Variables and a pip-only Python version live in the conda file; without packages a
        // conda file would make Azure ML build a conda environment the definition lacks.
        cannot.extend(["environment_variables", "python.version"]);
    }

    // The build: a Dockerfile written into a local context folder. A context without its
    // Dockerfile's text, or a remote one, cannot be written or read back.
    let mut written = d.clone();
    let dockerfile = d.docker.dockerfile_path.as_deref().unwrap_or("Dockerfile");
    let local_context = d.docker.build_context.as_deref().filter(|context| {
        d.docker.base_dockerfile.is_some()
            && crate::names::is_local_relative_path(context)
            && crate::names::is_local_relative_path(dockerfile)
    });
    if d.docker.build_context.is_some() && local_context.is_none() {
        cannot.extend(["docker.build_context", "docker.dockerfile_path"]);
        written.docker.build_context = None;
        written.docker.dockerfile_path = None;
    }
    if let Some(text) = &d.docker.base_dockerfile {
        match local_context {
            Some(context) => {
                files.push((
                    format!("{}/{dockerfile}", context.trim_end_matches('/')),
                    text.clone(),
                ));
                if d.docker.build_context_digest.is_some() {
                    cannot.push("docker.build_context");
                }
            }
            None => {
                files.push(("docker-context/Dockerfile".to_string(), text.clone()));
                written.docker.build_context = Some("docker-context".to_string());
                written.docker.dockerfile_path = None;
                notes.push(ExportNote::InlineDockerfileInContext);
            }
        }
    }

    let mut map = MapBuilder::new();
    aml_v2_fields(&written, &mut map, needs_conda.then(|| Y::str("conda.yml")));
    let mut dropped_fields = dropped(d, &cannot);
    // Azure ML v2 has no runtime; importing infers docker for an image or Dockerfile without
    // packages, so only other cases lose it (a Python runtime included). A pip-only Python
    // version written into the conda file is a package there.
    let writes_packages = d.has_packages()
        || notes.contains(&ExportNote::PipOnlyAsConda {
            format: Format::AmlV2,
        });
    let inferred = if !writes_packages
        && (d.docker.base_image.is_some() || d.docker.base_dockerfile.is_some())
    {
        Runtime::Docker
    } else {
        Runtime::Python
    };
    if d.runtime != inferred {
        dropped_fields.insert(0, "runtime".to_string());
    }
    files.insert(
        0,
        ("environment.yml".to_string(), yaml::render(&map.build())),
    );
    Exported {
        files,
        dropped: dropped_fields,
        notes,
    }
}

/// The runtime a definition without a `runtime` key has: an image or Dockerfile with no
/// packages is a docker environment (as Azure ML treats it), anything else python.
fn inferred_runtime(d: &Definition) -> Runtime {
    if !d.has_packages() && (d.docker.base_image.is_some() || d.docker.base_dockerfile.is_some()) {
        Runtime::Docker
    } else {
        Runtime::Python
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::testing::{assert_drops_exactly, variants, write};

    #[test]
    fn native_drops_nothing() {
        let compared = assert_drops_exactly(Format::Native, &[]);
        assert_eq!(compared, variants().len() + 1);
    }

    #[test]
    fn aml_v2_drops_exactly_what_it_cannot_carry() {
        let compared = assert_drops_exactly(
            Format::AmlV2,
            &[
                "runtime",
                "python.interpreter",
                "python.user_managed",
                "docker.shm_size",
                "docker.gpu",
                "docker.platform",
                "spark.repositories",
                "spark.packages",
                "spark.precache",
                "extensions",
            ],
        );
        assert_eq!(compared, variants().len() + 1);
    }

    /// A user-managed Python environment on a Dockerfile (as Azure ML v1 writes it) keeps its
    /// runtime through the native format, which a team server re-reads every definition in.
    #[test]
    fn a_user_managed_python_on_a_dockerfile_keeps_its_runtime() {
        let d = Definition {
            name: "dk".into(),
            runtime: Runtime::Python,
            python: crate::model::Python {
                user_managed: true,
                ..Default::default()
            },
            docker: crate::model::Docker {
                base_dockerfile: Some("FROM debian:12\n".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(crate::validate(&d).is_ok());
        let exported = export(&d);
        assert!(
            exported.files[0].1.contains("runtime: python"),
            "{:?}",
            exported.files
        );
    }

    /// An image with a Python version and an index but no packages is a docker environment;
    /// Azure ML v2 writes the version into the conda file, where it is a package, so the
    /// runtime does not come back and the export says so.
    #[test]
    fn aml_v2_names_the_runtime_a_conda_python_loses() {
        let mut d = Definition {
            name: "index-only".into(),
            runtime: Runtime::Docker,
            ..Definition::default()
        };
        d.docker.base_image = Some("python:3.11-slim".into());
        d.python.version = Some("3.10".into());
        d.python.index.index_url = Some("https://pypi.example.org/simple".into());
        let (dropped, back, _) = crate::formats::testing::round_trip(&d, Format::AmlV2).unwrap();
        assert_eq!(back.runtime, Runtime::Python);
        assert_eq!(dropped, ["runtime"]);
    }

    fn conda_file_error(yaml_name: &str, neighbour: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "env/environment.yml",
            &format!("name: near\nimage: python:3.11-slim\nconda_file: {yaml_name}\n"),
        );
        write(
            dir.path(),
            &format!("env/{neighbour}"),
            "channels: [conda-forge]\ndependencies: [numpy]\n",
        );
        import(&dir.path().join("env/environment.yml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_missing_conda_file_names_its_near_neighbour() {
        for (wanted, present) in [
            ("conda.yaml", "conda.yml"),
            ("conda.yml", "conda.yaml"),
            ("conda_dependencies.yml", "conda_dependencies.yaml"),
            ("Conda.yml", "conda.yml"),
            ("conda.yml", "condaa.yml"),
        ] {
            let err = conda_file_error(wanted, present);
            assert!(
                err.contains("environment.yml:3: field `conda_file`: cannot read")
                    && err.contains(wanted)
                    && err.ends_with(&format!("did you mean `{present}`?")),
                "{wanted} vs {present}: {err}"
            );
        }
        // In a subfolder, said as the user writes it.
        let err = conda_file_error("deps/conda.yaml", "deps/conda.yml");
        assert!(err.ends_with("did you mean `deps/conda.yml`?"), "{err}");
        // Nothing near: no guess.
        let err = conda_file_error("conda.yml", "requirements.txt");
        assert!(!err.contains("did you mean"), "{err}");
        let err = conda_file_error("conda.yml", "conda.py");
        assert!(!err.contains("did you mean"), "{err}");
    }
}
