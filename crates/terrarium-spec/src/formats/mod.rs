//! Import and export of every definition format Terrarium speaks.
//!
//! | format         | import | export | file(s)                                                 |
//! |----------------|--------|--------|---------------------------------------------------------|
//! | `native`       | yes    | yes    | Terrarium YAML, a superset of the Azure ML v2 YAML      |
//! | `aml-v2`       | yes    | yes    | Azure ML v2 environment YAML (+ conda file, context)    |
//! | `aml-v1`       | yes    | yes    | `Environment.save_to_directory` output                 |
//! | `conda`        | yes    | yes    | conda `environment.yml`                                 |
//! | `requirements` | yes    | yes    | pip `requirements.txt`                                  |
//! | `dockerfile`   | yes    | yes    | a Dockerfile                                            |
//! | `conda-prefix` | yes    | no     | an existing conda environment (`conda-meta/*.json`)     |
//! | `venv`         | yes    | no     | an existing virtualenv (`pyvenv.cfg`, `*.dist-info`)    |
//!
//! Exports report the fields their format cannot carry; they never drop one silently. Every
//! export reads back with [`import`] and no format given (a folder is read from the file in
//! it), to the same content hash when nothing was dropped.
//!
//! `native` and `aml-v2` share one reader, but a file is reported as what it is: with one of
//! Terrarium's keys it is `native`, otherwise `aml-v2`.

use std::path::{Path, PathBuf};

use crate::error::{Location, SpecError, Warning};
use crate::model::Definition;

pub mod aml_v1;
pub mod conda_env;
pub mod dockerfile;
pub mod native;
mod note;
pub mod prefix;
pub mod requirements;

pub use note::ExportNote;

/// A definition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Native,
    AmlV2,
    AmlV1,
    Conda,
    Requirements,
    Dockerfile,
    CondaPrefix,
    Venv,
}

impl Format {
    pub const ALL: [Format; 8] = [
        Format::Native,
        Format::AmlV2,
        Format::AmlV1,
        Format::Conda,
        Format::Requirements,
        Format::Dockerfile,
        Format::CondaPrefix,
        Format::Venv,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::AmlV2 => "aml-v2",
            Self::AmlV1 => "aml-v1",
            Self::Conda => "conda",
            Self::Requirements => "requirements",
            Self::Dockerfile => "dockerfile",
            Self::CondaPrefix => "conda-prefix",
            Self::Venv => "venv",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    pub fn can_export(self) -> bool {
        !matches!(self, Self::CondaPrefix | Self::Venv)
    }

    /// Whether this format's export is a directory rather than one file.
    pub fn exports_directory(self) -> bool {
        matches!(self, Self::AmlV1 | Self::AmlV2)
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The result of reading a definition.
#[derive(Debug, Clone)]
pub struct Imported {
    pub definition: Definition,
    pub format: Format,
    pub warnings: Vec<Warning>,
    /// Every file that was read, the main one first.
    pub files: Vec<PathBuf>,
}

/// The result of writing a definition: files relative to the output (a single file has the
/// empty name), the fields that the format could not carry, and what else the export says
/// about them.
#[derive(Debug, Clone, Default)]
pub struct Exported {
    pub files: Vec<(String, String)>,
    pub dropped: Vec<String>,
    pub notes: Vec<ExportNote>,
}

/// The keys of an Azure ML v2 environment YAML (what the native reader knows of them).
const AML_V2_KEYS: &[&str] = &[
    "$schema",
    "name",
    "version",
    "description",
    "tags",
    "image",
    "build",
    "conda_file",
    "os_type",
    "inference_config",
];

/// The keys Terrarium adds to the Azure ML v2 YAML; a file with any of them is native.
const EXTENSION_KEYS: &[&str] = &[
    "runtime",
    "python",
    "docker",
    "spark",
    "extensions",
    "environment_variables",
];

/// The names `env export` gives the YAML of an Azure ML v2 folder, and that a conda
/// environment file usually has.
const FOLDER_YAML_NAMES: [&str; 2] = ["environment.yml", "environment.yaml"];

/// Guess the format of `path` from its name and, for YAML, its keys.
///
/// A directory is an Azure ML v1 folder, a conda prefix or a virtualenv by its marker; else the
/// Azure ML v2 / native YAML in it (see [`definition_file`]) wins over a Dockerfile beside it,
/// since such a folder's build context often holds one; a Dockerfile wins over a conda
/// `environment.yml`, which a Dockerfile often copies.
pub fn detect(path: &Path) -> Result<Format, SpecError> {
    if path.is_dir() {
        if path.join(aml_v1::DEFINITION_FILE).is_file() {
            return Ok(Format::AmlV1);
        }
        if path.join("conda-meta").is_dir() {
            return Ok(Format::CondaPrefix);
        }
        if path.join("pyvenv.cfg").is_file() {
            return Ok(Format::Venv);
        }
        let yaml = folder_yaml(path)?;
        if let Some((_, format @ (Format::AmlV2 | Format::Native))) = yaml {
            return Ok(format);
        }
        if path.join("Dockerfile").is_file() {
            return Ok(Format::Dockerfile);
        }
        if let Some((_, format)) = yaml {
            return Ok(format);
        }
        return Err(SpecError::invalid(
            Location::file(path),
            "cannot tell the format of this directory: expected an Azure ML v2 folder \
             (environment.yml), an Azure ML v1 folder (azureml_environment.json), a conda \
             prefix (conda-meta/), a virtualenv (pyvenv.cfg) or a Dockerfile; pass the \
             definition file, or --format",
        ));
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    if file_name == aml_v1::DEFINITION_FILE {
        return Ok(Format::AmlV1);
    }
    if file_name == "dockerfile"
        || file_name.starts_with("dockerfile.")
        || file_name.ends_with(".dockerfile")
        || file_name == "basedockerfile"
    {
        return Ok(Format::Dockerfile);
    }
    if file_name.ends_with(".txt") || file_name.ends_with(".in") {
        return Ok(Format::Requirements);
    }
    if is_yaml_name(&file_name) {
        return Ok(yaml_keys(path)?.format());
    }
    Err(SpecError::invalid(
        Location::file(path),
        "cannot tell the format from the file name (expected .yml/.yaml, .txt, Dockerfile or \
         azureml_environment.json); pass --format",
    ))
}

fn is_yaml_name(file_name: &str) -> bool {
    let lower = file_name.to_lowercase();
    lower.ends_with(".yml") || lower.ends_with(".yaml")
}

/// The top-level keys of a YAML definition, and its `$schema`.
struct YamlKeys {
    keys: Vec<String>,
    schema: Option<String>,
}

fn yaml_keys(path: &Path) -> Result<YamlKeys, SpecError> {
    let source = crate::source::SourceFile::read(path)?;
    let root = crate::yaml::parse(&source)?;
    let mut out = YamlKeys {
        keys: Vec::new(),
        schema: None,
    };
    if let crate::yaml::Value::Map(entries) = &root.value {
        for (key, value) in entries {
            if key == "$schema" {
                if let crate::yaml::Value::Scalar { text, .. } = &value.value {
                    out.schema = Some(text.clone());
                }
            }
            out.keys.push(key.clone());
        }
    }
    Ok(out)
}

impl YamlKeys {
    fn has(&self, key: &str) -> bool {
        self.keys.iter().any(|k| k == key)
    }

    fn extension_keys(&self) -> Vec<&str> {
        self.keys
            .iter()
            .map(String::as_str)
            .filter(|k| EXTENSION_KEYS.contains(k))
            .collect()
    }

    fn azureml_schema(&self) -> bool {
        self.schema
            .as_deref()
            .is_some_and(|s| s.to_ascii_lowercase().contains("azureml"))
    }

    /// A conda environment file has `dependencies` or `channels` and none of the keys of an
    /// Azure ML v2 / native file. Of the others, a file with a Terrarium extension key is
    /// native (Azure ML would refuse it, whatever its `$schema` says); one with an Azure ML
    /// `$schema`, or with Azure ML v2 keys only, is Azure ML v2.
    fn format(&self) -> Format {
        let definition_keys = ["conda_file", "image", "build"];
        if (self.has("dependencies") || self.has("channels"))
            && !definition_keys
                .iter()
                .chain(EXTENSION_KEYS)
                .any(|k| self.has(k))
        {
            return Format::Conda;
        }
        if !self.extension_keys().is_empty() {
            return Format::Native;
        }
        if self.azureml_schema() || self.keys.iter().all(|k| AML_V2_KEYS.contains(&k.as_str())) {
            return Format::AmlV2;
        }
        Format::Native
    }

    /// Whether the file says it is an environment definition (not any YAML that happens to
    /// lie in a folder): an Azure ML `$schema`, an image, a build or a conda file, or a
    /// Terrarium key.
    fn is_definition(&self) -> bool {
        self.azureml_schema()
            || ["conda_file", "image", "build"].iter().any(|k| self.has(k))
            || !self.extension_keys().is_empty()
    }
}

/// The YAML definition of a folder and its format: `environment.yml` or `environment.yaml` (as
/// `env export` writes an Azure ML v2 folder), else the one YAML file in it that is an Azure
/// ML v2 or native definition (an export named with `-o DIR/NAME.yml`).
fn folder_yaml(dir: &Path) -> Result<Option<(PathBuf, Format)>, SpecError> {
    let named: Vec<PathBuf> = FOLDER_YAML_NAMES
        .iter()
        .map(|n| dir.join(n))
        .filter(|p| p.is_file())
        .collect();
    match named.as_slice() {
        [one] => return Ok(Some((one.clone(), yaml_keys(one)?.format()))),
        [_, _] => {
            return Err(SpecError::invalid(
                Location::file(dir),
                "this folder holds both environment.yml and environment.yaml; pass the one to read",
            ))
        }
        _ => {}
    }
    let entries =
        std::fs::read_dir(dir).map_err(|e| SpecError::io(dir, "cannot read the folder", e))?;
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_file() || !is_yaml_name(&entry.file_name().to_string_lossy()) {
            continue;
        }
        // Other YAML files (CI, compose, a broken one) are not the definition: skip them.
        if let Ok(keys) = yaml_keys(&path) {
            if keys.is_definition() && keys.format() != Format::Conda {
                found.push((path, keys.format()));
            }
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    match found.len() {
        0 | 1 => Ok(found.pop()),
        _ => Err(SpecError::invalid(
            Location::file(dir),
            format!(
                "this folder holds several definitions ({}); pass the one to read",
                found
                    .iter()
                    .filter_map(|(p, _)| p.file_name())
                    .map(|n| n.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// The file to read for `format` when the user names a folder: the folder's YAML for the YAML
/// formats, `requirements.txt` for requirements; the folder itself for the formats that are
/// folders (and for a Dockerfile, whose reader looks inside).
pub fn definition_file(path: &Path, format: Format) -> Result<PathBuf, SpecError> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let missing = |what: &str| {
        SpecError::invalid(
            Location::file(path),
            format!("this folder has no {what}; pass the definition file"),
        )
    };
    match format {
        Format::Native | Format::AmlV2 => match folder_yaml(path)? {
            Some((file, _)) => Ok(file),
            None => Err(missing("environment.yml or environment.yaml")),
        },
        Format::Conda => FOLDER_YAML_NAMES
            .iter()
            .map(|n| path.join(n))
            .find(|p| p.is_file())
            .ok_or_else(|| missing("environment.yml or environment.yaml")),
        Format::Requirements => Some(path.join("requirements.txt"))
            .filter(|p| p.is_file())
            .ok_or_else(|| missing("requirements.txt")),
        Format::AmlV1 | Format::Dockerfile | Format::CondaPrefix | Format::Venv => {
            Ok(path.to_path_buf())
        }
    }
}

/// Read a definition from `path` (a file, or a folder: see [`detect`] and
/// [`definition_file`]), in `format` or the detected one.
pub fn import(path: &Path, format: Option<Format>) -> Result<Imported, SpecError> {
    let explicit = format.is_some();
    let format = match format {
        Some(f) => f,
        None => detect(path)?,
    };
    let file = definition_file(path, format)?;
    let mut imported = match format {
        Format::Native | Format::AmlV2 => native::import(&file)?,
        Format::AmlV1 => aml_v1::import(&file)?,
        Format::Conda => conda_env::import(&file)?,
        Format::Requirements => requirements::import(&file)?,
        Format::Dockerfile => dockerfile::import(&file)?,
        Format::CondaPrefix => prefix::import_conda(&file)?,
        Format::Venv => prefix::import_venv(&file)?,
    };
    if explicit && format == Format::AmlV2 {
        // Read by the same reader as native; say what Azure ML would refuse.
        let keys = yaml_keys(&file)?;
        let extensions = keys.extension_keys();
        if !extensions.is_empty() {
            imported.warnings.push(Warning {
                location: Location::file(&file),
                message: format!(
                    "{} {} Terrarium {}, not Azure ML v2: Azure ML refuses this file",
                    extensions
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    if extensions.len() == 1 { "is a" } else { "are" },
                    if extensions.len() == 1 {
                        "extension"
                    } else {
                        "extensions"
                    },
                ),
            });
        }
    }
    imported.format = format;
    imported.definition.normalize();
    Ok(imported)
}

/// A docker-runtime, user-managed environment around an existing image.
pub fn from_image(reference: &str) -> Result<Definition, String> {
    validate_image_reference(reference)?;
    let mut definition = Definition {
        runtime: crate::model::Runtime::Docker,
        ..Definition::default()
    };
    definition.python.user_managed = true;
    definition.docker.base_image = Some(reference.to_string());
    Ok(definition)
}

/// A light check of `[registry/]repository[:tag][@digest]`.
pub fn validate_image_reference(reference: &str) -> Result<(), String> {
    if reference.is_empty()
        || reference
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!("invalid image reference `{reference}`"));
    }
    let (name, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    if let Some(digest) = digest {
        let ok = digest.split_once(':').is_some_and(|(algo, hex)| {
            !algo.is_empty() && hex.len() >= 32 && hex.chars().all(|c| c.is_ascii_hexdigit())
        });
        if !ok {
            return Err(format!("invalid digest in image reference `{reference}`"));
        }
    }
    let repository = match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => {
            if tag.is_empty() || tag.len() > 128 {
                return Err(format!("invalid tag in image reference `{reference}`"));
            }
            repo
        }
        _ => name,
    };
    let path = match repository.split_once('/') {
        Some((host, rest)) if host.contains(['.', ':']) || host == "localhost" => rest,
        _ => repository,
    };
    if path.is_empty()
        || !path
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c))
    {
        return Err(format!(
            "invalid repository in image reference `{reference}` (lowercase letters, digits, \
             `.`, `_`, `-`, `/` only)"
        ));
    }
    Ok(())
}

/// Write `definition` in `format`.
pub fn export(definition: &Definition, format: Format) -> Result<Exported, SpecError> {
    let mut definition = definition.clone();
    definition.normalize();
    match format {
        Format::Native => Ok(native::export(&definition)),
        Format::AmlV2 => Ok(native::export_aml_v2(&definition)),
        Format::AmlV1 => Ok(aml_v1::export(&definition)),
        Format::Conda => Ok(conda_env::export(&definition)),
        Format::Requirements => Ok(requirements::export(&definition)),
        Format::Dockerfile => dockerfile::export(&definition),
        Format::CondaPrefix | Format::Venv => Err(SpecError::Unsupported {
            format: format.name(),
            message: "this is an import-only format".to_string(),
        }),
    }
}

/// Fields of `definition` that are set, by their dotted names: used by exports to name what
/// they drop. Metadata fields (`description`, `tags`) are included; `version` is not: it is the
/// registry's number for the content, which every export may write where its format has a
/// place for it, and `env create` gives anyway.
pub fn set_fields(d: &Definition) -> Vec<&'static str> {
    let mut fields = Vec::new();
    let mut add = |set: bool, name: &'static str| {
        if set {
            fields.push(name);
        }
    };
    add(d.description.is_some(), "description");
    add(!d.tags.is_empty(), "tags");
    add(d.runtime != crate::model::Runtime::Python, "runtime");
    add(d.python.version.is_some(), "python.version");
    add(d.python.interpreter.is_some(), "python.interpreter");
    add(d.python.user_managed, "python.user_managed");
    add(!d.python.pip.is_empty(), "python.pip");
    add(!d.python.index.is_empty(), "python.index");
    add(d.conda.is_some(), "conda");
    add(!d.environment_variables.is_empty(), "environment_variables");
    add(d.docker.base_image.is_some(), "docker.base_image");
    add(d.docker.base_dockerfile.is_some(), "docker.base_dockerfile");
    add(d.docker.build_context.is_some(), "docker.build_context");
    add(d.docker.dockerfile_path.is_some(), "docker.dockerfile_path");
    add(d.docker.shm_size.is_some(), "docker.shm_size");
    add(d.docker.gpu, "docker.gpu");
    add(d.docker.platform.is_some(), "docker.platform");
    add(!d.spark.repositories.is_empty(), "spark.repositories");
    add(!d.spark.packages.is_empty(), "spark.packages");
    add(!d.spark.precache, "spark.precache");
    add(d.inference.is_some(), "inference");
    add(!d.extensions.is_empty(), "extensions");
    fields
}

/// Clear the named fields: the definition an export that dropped them carries.
pub fn without_fields(d: &Definition, fields: &[String]) -> Definition {
    let mut d = d.clone();
    for field in fields {
        match field.as_str() {
            "description" => d.description = None,
            "tags" => d.tags.clear(),
            "runtime" => d.runtime = crate::model::Runtime::Python,
            "python.version" => d.python.version = None,
            "python.interpreter" => d.python.interpreter = None,
            "python.user_managed" => d.python.user_managed = false,
            "python.pip" => d.python.pip.clear(),
            "python.index" => d.python.index = Default::default(),
            "conda" => d.conda = None,
            "environment_variables" => d.environment_variables.clear(),
            "docker.base_image" => d.docker.base_image = None,
            "docker.base_dockerfile" => d.docker.base_dockerfile = None,
            "docker.build_context" => {
                d.docker.build_context = None;
                d.docker.build_context_digest = None;
            }
            "docker.dockerfile_path" => d.docker.dockerfile_path = None,
            "docker.shm_size" => d.docker.shm_size = None,
            "docker.gpu" => d.docker.gpu = false,
            "docker.platform" => d.docker.platform = None,
            "spark.repositories" => d.spark.repositories.clear(),
            "spark.packages" => d.spark.packages.clear(),
            "spark.precache" => d.spark.precache = true,
            "inference" => d.inference = None,
            "extensions" => d.extensions.clear(),
            _ => {}
        }
    }
    d
}

/// The fields in `fields` that are set in `d`.
pub(crate) fn dropped(d: &Definition, fields: &[&str]) -> Vec<String> {
    set_fields(d)
        .into_iter()
        .filter(|f| fields.contains(f))
        .map(str::to_string)
        .collect()
}

/// The folder, relative to the export's main file, where `format` expects the files of the
/// definition's build context; `None` when there are none (no digest), or the format does not
/// read a context folder. An export lists `docker.build_context` as dropped when it cannot
/// carry the context otherwise (Azure ML v2, a Dockerfile); whoever has the context's files
/// (the workspace) can write them there, and so carry it.
pub fn context_folder(d: &Definition, format: Format) -> Option<&str> {
    let context = d.docker.build_context.as_deref()?;
    d.docker.build_context_digest.as_ref()?;
    d.docker.base_dockerfile.as_ref()?;
    if !crate::names::is_local_relative_path(context) {
        return None;
    }
    match format {
        Format::Native | Format::AmlV2 => Some(context),
        // A Dockerfile is read with its own folder as its context.
        Format::Dockerfile => Some("."),
        _ => None,
    }
}

/// A file beside a missing `wanted` whose name is probably the one meant: the same name but
/// for case or `.yml`/`.yaml`, else one or two letters apart. Returns its name.
pub(crate) fn near_name(wanted: &Path) -> Option<String> {
    let dir = match wanted.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = wanted.file_name()?.to_string_lossy().into_owned();
    let key = |n: &str| {
        let lower = n.to_lowercase();
        match lower.strip_suffix(".yaml") {
            Some(stem) => format!("{stem}.yml"),
            None => lower,
        }
    };
    let wanted_key = key(&name);
    let mut best: Option<(usize, String)> = None;
    let mut entries: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| *n != name)
        .collect();
    entries.sort();
    let extension = |k: &str| k.rsplit_once('.').map(|(_, e)| e.to_string());
    for candidate in entries {
        let candidate_key = key(&candidate);
        let distance = edit_distance(&wanted_key, &candidate_key);
        // A typo keeps the kind of file; short names are too easily a letter from another.
        let limit = if extension(&candidate_key) != extension(&wanted_key) {
            0
        } else if wanted_key.len() > 8 {
            2
        } else {
            1
        };
        if distance <= limit && best.as_ref().is_none_or(|(d, _)| distance < *d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, n)| n)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = (previous + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(current + 1);
            previous = current;
        }
    }
    row[b.len()]
}

/// Shared by the formats' tests: definitions with each field set, an export written to disk
/// and read back with detection, and the check that an export names exactly what it loses.
#[cfg(test)]
pub(crate) mod testing {
    use std::collections::BTreeMap;
    use std::path::Path;

    use serde_json::{json, Value};

    use super::{export, import, set_fields, Format};
    use crate::model::{Conda, Definition, Inference, PipRequirement, Route, Runtime};

    /// What each variant starts from: a named pip-only environment (every export can write
    /// one).
    fn base() -> Definition {
        let mut d = Definition {
            name: "fields".into(),
            version: Some("3".into()),
            ..Definition::default()
        };
        d.python.pip = vec![PipRequirement::new("requests==2.32.3")];
        d
    }

    fn with(change: impl FnOnce(&mut Definition)) -> Definition {
        let mut d = base();
        change(&mut d);
        d.normalize();
        d
    }

    /// One definition per field (some fields twice, in two shapes), each with only that field
    /// set on top of [`base`] (a build context comes with its Dockerfile).
    pub fn variants() -> Vec<(&'static str, Definition)> {
        let dockerfile = |d: &mut Definition| {
            d.docker.base_dockerfile = Some("FROM python:3.11-slim\n".into());
        };
        vec![
            (
                "description",
                with(|d| d.description = Some("what it is for".into())),
            ),
            (
                "tags",
                with(|d| d.tags = BTreeMap::from([("team".into(), "ml".into())])),
            ),
            ("runtime", with(|d| d.runtime = Runtime::Spark)),
            (
                "python.version",
                with(|d| d.python.version = Some("3.11".into())),
            ),
            (
                "python.interpreter",
                with(|d| d.python.interpreter = Some("/usr/bin/python3".into())),
            ),
            (
                "python.user_managed",
                with(|d| d.python.user_managed = true),
            ),
            (
                "python.pip",
                with(|d| {
                    d.python.pip.push(PipRequirement::new(
                        "scikit-learn[alldeps]>=1.5; python_version >= \"3.10\"",
                    ));
                    d.python.pip[0].hashes = vec![format!("sha256:{}", "a".repeat(64))];
                }),
            ),
            (
                "python.index",
                with(|d| {
                    d.python.index.index_url = Some("https://pypi.example.com/simple".into());
                    d.python.index.extra_index_urls = vec!["https://extra.example.com".into()];
                }),
            ),
            (
                "conda",
                with(|d| {
                    d.conda = Some(Conda {
                        channels: vec!["conda-forge".into()],
                        dependencies: vec!["python=3.11".into(), "numpy=1.26".into()],
                    })
                }),
            ),
            (
                "environment_variables",
                with(|d| {
                    d.environment_variables =
                        BTreeMap::from([("OMP_NUM_THREADS".into(), "4".into())])
                }),
            ),
            (
                "docker.base_image",
                with(|d| d.docker.base_image = Some("python:3.11-slim".into())),
            ),
            ("docker.base_dockerfile", with(dockerfile)),
            (
                "docker.build_context",
                with(|d| {
                    dockerfile(d);
                    d.docker.build_context = Some("ctx".into());
                }),
            ),
            (
                "docker.build_context",
                with(|d| {
                    // A context with files besides the Dockerfile: only their digest is here.
                    dockerfile(d);
                    d.docker.build_context = Some("ctx".into());
                    d.docker.build_context_digest = Some(format!("sha256:{}", "b".repeat(64)));
                }),
            ),
            (
                "docker.dockerfile_path",
                with(|d| {
                    dockerfile(d);
                    d.docker.build_context = Some("ctx".into());
                    d.docker.dockerfile_path = Some("Dockerfile.gpu".into());
                }),
            ),
            (
                "docker.shm_size",
                with(|d| d.docker.shm_size = Some("8g".into())),
            ),
            ("docker.gpu", with(|d| d.docker.gpu = true)),
            (
                "docker.platform",
                with(|d| d.docker.platform = Some("linux/arm64".into())),
            ),
            (
                "docker.platform",
                with(|d| d.docker.platform = Some("windows/amd64".into())),
            ),
            (
                "spark.repositories",
                with(|d| d.spark.repositories = vec!["https://repo.example.com/maven".into()]),
            ),
            (
                "spark.packages",
                with(|d| d.spark.packages = vec!["org.example:lib:1.0".into()]),
            ),
            ("spark.precache", with(|d| d.spark.precache = false)),
            (
                "inference",
                with(|d| {
                    d.inference = Some(Inference {
                        liveness_route: Some(Route {
                            path: "/live".into(),
                            port: 5001,
                        }),
                        readiness_route: None,
                        scoring_route: Some(Route {
                            path: "/score".into(),
                            port: 5001,
                        }),
                    })
                }),
            ),
            (
                "extensions",
                with(|d| {
                    d.extensions
                        .insert("aml_v1.r".into(), json!({"cranPackages": ["ggplot2"]}));
                }),
            ),
            (
                "extensions",
                with(|d| {
                    d.extensions.insert("team.cost_center".into(), json!(42));
                }),
            ),
        ]
    }

    /// Every field at once: what the formats' lists of dropped fields are pinned against.
    pub fn full() -> Definition {
        let mut d = base();
        for (_, variant) in variants() {
            merge(&mut d, variant);
        }
        d.docker.build_context_digest = None;
        d.docker.platform = Some("linux/arm64".into());
        d.normalize();
        d
    }

    fn merge(d: &mut Definition, v: Definition) {
        let defaults = Definition::default();
        let docker_defaults = &defaults.docker;
        d.description = d.description.take().or(v.description);
        d.tags.extend(v.tags);
        if v.runtime != Runtime::Python {
            d.runtime = v.runtime;
        }
        d.python.interpreter = d.python.interpreter.take().or(v.python.interpreter);
        d.python.user_managed |= v.python.user_managed;
        for requirement in v.python.pip {
            if !d.python.pip.iter().any(|r| r.spec == requirement.spec) {
                d.python.pip.push(requirement);
            }
        }
        if !v.python.index.is_empty() {
            d.python.index = v.python.index;
        }
        d.conda = d.conda.take().or(v.conda);
        d.environment_variables.extend(v.environment_variables);
        let docker = v.docker;
        if docker != *docker_defaults {
            d.docker.base_image = d.docker.base_image.take().or(docker.base_image);
            d.docker.base_dockerfile = d.docker.base_dockerfile.take().or(docker.base_dockerfile);
            d.docker.build_context = d.docker.build_context.take().or(docker.build_context);
            d.docker.dockerfile_path = d.docker.dockerfile_path.take().or(docker.dockerfile_path);
            d.docker.shm_size = d.docker.shm_size.take().or(docker.shm_size);
            d.docker.gpu |= docker.gpu;
        }
        d.spark.repositories.extend(v.spark.repositories);
        d.spark.packages.extend(v.spark.packages);
        d.spark.precache &= v.spark.precache;
        d.inference = d.inference.take().or(v.inference);
        d.extensions.extend(v.extensions);
    }

    /// Write the export of `d` the way `env export -o` lays it out and read it back with no
    /// format given. Returns the export's dropped fields, what came back, and its format.
    pub fn round_trip(d: &Definition, format: Format) -> Option<(Vec<String>, Definition, Format)> {
        let exported = export(d, format).ok()?;
        let dir = tempfile::tempdir().unwrap();
        let target = match format {
            Format::AmlV1 | Format::AmlV2 => dir.path().join("out"),
            Format::Requirements => dir.path().join("requirements.txt"),
            Format::Dockerfile => dir.path().join("Dockerfile"),
            _ => dir.path().join("environment.yml"),
        };
        for (name, text) in &exported.files {
            let path = if name.is_empty() {
                target.clone()
            } else {
                target.join(name)
            };
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text).unwrap();
        }
        let back = import(&target, None).unwrap_or_else(|e| {
            panic!("{format}: the export does not read back: {e}\n{exported:#?}")
        });
        let mut definition = back.definition;
        definition.normalize();
        Some((exported.dropped, definition, back.format))
    }

    /// A field's value, as far as it must survive an export (the Python version wherever it
    /// is written; a build context by its digest and path).
    fn value(d: &Definition, field: &str) -> Value {
        let mut pip: Vec<String> = d.python.pip.iter().map(crate::pip::normalize).collect();
        pip.sort();
        match field {
            "description" => json!(d.description),
            "tags" => json!(d.tags),
            "runtime" => json!(d.runtime),
            "python.version" => json!(d.python_version()),
            "python.interpreter" => json!(d.python.interpreter),
            "python.user_managed" => json!(d.python.user_managed),
            "python.pip" => json!(pip),
            "python.index" => json!(d.python.index),
            "conda" => json!(d.conda.as_ref().map(|c| {
                let mut deps: Vec<String> = c
                    .dependencies
                    .iter()
                    .map(|s| crate::conda::normalize(s))
                    .collect();
                deps.sort();
                (c.channels.clone(), deps)
            })),
            "environment_variables" => json!(d.environment_variables),
            "docker.base_image" => json!(d.docker.base_image),
            "docker.base_dockerfile" => json!(d.docker.base_dockerfile),
            "docker.build_context" => {
                json!([d.docker.build_context, d.docker.build_context_digest])
            }
            "docker.dockerfile_path" => json!(d.docker.dockerfile_path),
            "docker.shm_size" => json!(d.docker.shm_size),
            "docker.gpu" => json!(d.docker.gpu),
            "docker.platform" => json!(d.docker.platform),
            "spark.repositories" => json!(d.spark.repositories),
            "spark.packages" => json!(d.spark.packages),
            "spark.precache" => json!(d.spark.precache),
            "inference" => json!(d.inference),
            "extensions" => json!(d.extensions),
            other => panic!("no test value for `{other}`"),
        }
    }

    /// The fields set in `original` whose values did not come back.
    pub fn lost(original: &Definition, back: &Definition) -> Vec<String> {
        let mut fields: Vec<String> = set_fields(original)
            .into_iter()
            .filter(|f| value(original, f) != value(back, f))
            .map(str::to_string)
            .collect();
        // Unset in the original, yet lost: a runtime the reader infers otherwise.
        if original.runtime != back.runtime && !fields.iter().any(|f| f == "runtime") {
            fields.insert(0, "runtime".into());
        }
        fields
    }

    fn sorted(mut fields: Vec<String>) -> Vec<String> {
        fields.sort();
        fields
    }

    /// `format` names exactly the fields it loses: for each field alone, and for all at once
    /// (where its list must be `full_dropped`). Returns how many definitions were compared.
    pub fn assert_drops_exactly(format: Format, full_dropped: &[&str]) -> usize {
        let mut compared = 0;
        let mut failures = Vec::new();
        let mut cases = variants();
        cases.push(("(every field)", full()));
        for (field, d) in &cases {
            let Some((dropped, back, read_as)) = round_trip(d, format) else {
                continue;
            };
            compared += 1;
            let expected_format = match (format, read_as) {
                (Format::Native, Format::AmlV2) => Format::AmlV2,
                _ => format,
            };
            assert_eq!(read_as, expected_format, "{field}: read back as {read_as}");
            let lost = lost(d, &back);
            if sorted(dropped.clone()) != sorted(lost.clone()) {
                failures.push(format!(
                    "{field}: dropped {dropped:?}, but lost {lost:?}\n{}",
                    crate::diff(d, &back)
                ));
            }
            if *field == "(every field)" {
                let expected: Vec<String> = full_dropped.iter().map(|f| f.to_string()).collect();
                if sorted(dropped.clone()) != sorted(expected.clone()) {
                    failures.push(format!(
                        "every field: dropped {dropped:?}, expected {expected:?}"
                    ));
                }
            }
        }
        assert!(failures.is_empty(), "{format}:\n{}", failures.join("\n\n"));
        compared
    }

    /// The path of a file written for a test.
    pub fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }
}

#[cfg(test)]
mod tests {
    use super::testing::write;
    use super::*;

    const AML_V2: &str = "\
$schema: https://azuremlschemas.azureedge.net/latest/environment.schema.json
name: aml-env
build:
  path: .
  dockerfile_path: Dockerfile
conda_file: conda.yml
";
    const CONDA: &str =
        "channels:\n  - conda-forge\ndependencies:\n  - python=3.11\n  - numpy=1.26\n";
    const DOCKERFILE: &str = "FROM python:3.11-slim\nCOPY conda.yml /tmp/\n";

    #[test]
    fn yaml_files_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        for (text, format) in [
            (AML_V2, Format::AmlV2),
            // Azure ML v2 keys only, no `$schema`.
            ("name: x\nimage: python:3.11-slim\ndescription: d\n", Format::AmlV2),
            // Terrarium keys make a file native, whatever its `$schema` says (native exports
            // write the Azure ML one).
            (
                "$schema: https://azuremlschemas.azureedge.net/latest/environment.schema.json\nname: x\npython:\n  version: \"3.11\"\n",
                Format::Native,
            ),
            ("name: x\nruntime: spark\n", Format::Native),
            ("name: x\nenvironment_variables:\n  A: \"1\"\n", Format::Native),
            ("name: x\nchannels: [conda-forge]\ndependencies: [numpy]\n", Format::Conda),
            ("dependencies:\n  - pip:\n      - requests\n", Format::Conda),
            // Neither: the native reader names the unknown key.
            ("name: x\nservices: {}\n", Format::Native),
        ] {
            let path = write(dir.path(), "def.yml", text);
            assert_eq!(detect(&path).unwrap(), format, "{text}");
        }
    }

    #[test]
    fn an_azure_ml_v2_folder_is_read_from_its_yaml_not_its_dockerfile() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("exported");
        write(&folder, "environment.yml", AML_V2);
        write(&folder, "conda.yml", CONDA);
        write(&folder, "Dockerfile", DOCKERFILE);
        assert_eq!(detect(&folder).unwrap(), Format::AmlV2);
        for format in [None, Some(Format::AmlV2)] {
            let imported = import(&folder, format).unwrap();
            assert_eq!(imported.format, Format::AmlV2);
            assert_eq!(imported.files[0], folder.join("environment.yml"));
            let d = &imported.definition;
            assert_eq!(d.name, "aml-env");
            assert_eq!(d.docker.base_dockerfile.as_deref(), Some(DOCKERFILE));
            assert!(d.conda.is_some());
        }
        // The YAML itself, too.
        assert_eq!(
            import(&folder.join("environment.yml"), None)
                .unwrap()
                .format,
            Format::AmlV2
        );

        // `.yaml` as well; both at once is a question, not a guess.
        std::fs::rename(
            folder.join("environment.yml"),
            folder.join("environment.yaml"),
        )
        .unwrap();
        assert_eq!(detect(&folder).unwrap(), Format::AmlV2);
        write(&folder, "environment.yml", AML_V2);
        let err = detect(&folder).unwrap_err().to_string();
        assert!(
            err.contains("both environment.yml and environment.yaml"),
            "{err}"
        );
    }

    #[test]
    fn folders_of_other_shapes() {
        let dir = tempfile::tempdir().unwrap();
        // An export named with `-o DIR/NAME.yml`, beside an unrelated YAML file.
        let named = dir.path().join("named");
        write(&named, "model-env.yaml", AML_V2);
        write(&named, "conda.yml", CONDA);
        write(&named, "Dockerfile", DOCKERFILE);
        write(&named, "ci.yml", "on: push\njobs: {}\n");
        assert_eq!(detect(&named).unwrap(), Format::AmlV2);
        assert_eq!(
            import(&named, None).unwrap().files[0],
            named.join("model-env.yaml")
        );
        write(&named, "other-env.yml", "name: other\nimage: python:3.12\n");
        let err = detect(&named).unwrap_err().to_string();
        assert!(
            err.contains("several definitions (model-env.yaml, other-env.yml)"),
            "{err}"
        );

        // A conda environment.yml: its own, or the Dockerfile's ingredient.
        let conda = dir.path().join("conda");
        write(&conda, "environment.yml", &format!("name: c\n{CONDA}"));
        assert_eq!(detect(&conda).unwrap(), Format::Conda);
        assert_eq!(import(&conda, None).unwrap().definition.name, "c");
        write(&conda, "Dockerfile", DOCKERFILE);
        assert_eq!(detect(&conda).unwrap(), Format::Dockerfile);

        // A named format finds its file in a folder.
        let reqs = dir.path().join("reqs");
        write(&reqs, "requirements.txt", "requests==2.32.3\n");
        let imported = import(&reqs, Some(Format::Requirements)).unwrap();
        assert_eq!(imported.definition.python.pip.len(), 1);
        let err = import(&reqs, Some(Format::AmlV2)).unwrap_err().to_string();
        assert!(
            err.contains("has no environment.yml or environment.yaml"),
            "{err}"
        );

        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let err = detect(&empty).unwrap_err().to_string();
        assert!(
            err.contains("an Azure ML v2 folder (environment.yml)") && err.contains("--format"),
            "{err}"
        );
    }

    #[test]
    fn reading_a_native_file_as_aml_v2_says_what_azure_ml_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "env.yml",
            "name: x\nimage: python:3.11-slim\nruntime: docker\nenvironment_variables:\n  A: \"1\"\n",
        );
        let imported = import(&path, Some(Format::AmlV2)).unwrap();
        assert_eq!(imported.format, Format::AmlV2);
        let warnings: Vec<String> = imported.warnings.iter().map(|w| w.to_string()).collect();
        assert!(
            warnings.iter().any(|w| w.contains(
                "`runtime`, `environment_variables` are Terrarium extensions, not Azure ML v2"
            )),
            "{warnings:?}"
        );
        assert_eq!(import(&path, None).unwrap().format, Format::Native);
        assert!(import(&path, None).unwrap().warnings.is_empty());
    }

    #[test]
    fn near_names() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "conda.yml",
            "Conda_Dependencies.YAML",
            "requirements.txt",
            "x.py",
        ] {
            write(dir.path(), name, "");
        }
        let near = |wanted: &str| near_name(&dir.path().join(wanted));
        assert_eq!(near("conda.yaml").as_deref(), Some("conda.yml"));
        assert_eq!(near("CONDA.yml").as_deref(), Some("conda.yml"));
        assert_eq!(near("condaa.yml").as_deref(), Some("conda.yml"));
        assert_eq!(
            near("conda_dependencies.yml").as_deref(),
            Some("Conda_Dependencies.YAML")
        );
        assert_eq!(near("requirement.txt").as_deref(), Some("requirements.txt"));
        assert_eq!(near("environment.yml"), None);
        assert_eq!(near("x.yml"), None, "another kind of file is no typo");
    }
}
