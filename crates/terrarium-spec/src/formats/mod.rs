//! Import and export of every definition format Terrarium speaks.
//!
//! | format         | import | export | file(s)                                                 |
//! |----------------|--------|--------|---------------------------------------------------------|
//! | `native`       | yes    | yes    | Terrarium YAML, a superset of the Azure ML v2 YAML      |
//! | `aml-v2`       | yes    | yes    | Azure ML v2 environment YAML (+ its conda file)         |
//! | `aml-v1`       | yes    | yes    | `Environment.save_to_directory` output                 |
//! | `conda`        | yes    | yes    | conda `environment.yml`                                 |
//! | `requirements` | yes    | yes    | pip `requirements.txt`                                  |
//! | `dockerfile`   | yes    | yes    | a Dockerfile                                            |
//! | `conda-prefix` | yes    | no     | an existing conda environment (`conda-meta/*.json`)     |
//! | `venv`         | yes    | no     | an existing virtualenv (`pyvenv.cfg`, `*.dist-info`)    |
//!
//! Exports report the fields their format cannot carry; they never drop one silently.

use std::path::{Path, PathBuf};

use crate::error::{Location, SpecError, Warning};
use crate::model::Definition;

pub mod aml_v1;
pub mod conda_env;
pub mod dockerfile;
pub mod native;
pub mod prefix;
pub mod requirements;

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
/// empty name), and the fields that the format could not carry.
#[derive(Debug, Clone, Default)]
pub struct Exported {
    pub files: Vec<(String, String)>,
    pub dropped: Vec<String>,
    pub notes: Vec<String>,
}

/// Guess the format of `path` from its name and, for YAML, its keys.
pub fn detect(path: &Path) -> Result<Format, SpecError> {
    if path.is_dir() {
        if path.join("azureml_environment.json").is_file() {
            return Ok(Format::AmlV1);
        }
        if path.join("conda-meta").is_dir() {
            return Ok(Format::CondaPrefix);
        }
        if path.join("pyvenv.cfg").is_file() {
            return Ok(Format::Venv);
        }
        if path.join("Dockerfile").is_file() {
            return Ok(Format::Dockerfile);
        }
        return Err(SpecError::invalid(
            Location::file(path),
            "cannot tell the format of this directory: expected an Azure ML v1 directory \
             (azureml_environment.json), a conda prefix (conda-meta/), a virtualenv (pyvenv.cfg) \
             or a Dockerfile; pass --format",
        ));
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    if file_name == "azureml_environment.json" {
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
    if file_name.ends_with(".yml") || file_name.ends_with(".yaml") {
        // A conda environment file has `dependencies` at the top and none of the keys of an
        // Azure ML v2 / native file.
        let source = crate::source::SourceFile::read(path)?;
        let root = crate::yaml::parse(&source)?;
        if let crate::yaml::Value::Map(entries) = &root.value {
            let has = |k: &str| entries.iter().any(|(key, _)| key == k);
            if (has("dependencies") || has("channels"))
                && ![
                    "conda_file",
                    "image",
                    "build",
                    "python",
                    "runtime",
                    "docker",
                ]
                .iter()
                .any(|k| has(k))
            {
                return Ok(Format::Conda);
            }
        }
        return Ok(Format::Native);
    }
    Err(SpecError::invalid(
        Location::file(path),
        "cannot tell the format from the file name (expected .yml/.yaml, .txt, Dockerfile or \
         azureml_environment.json); pass --format",
    ))
}

/// Read a definition from `path`, in `format` or the detected one.
pub fn import(path: &Path, format: Option<Format>) -> Result<Imported, SpecError> {
    let format = match format {
        Some(f) => f,
        None => detect(path)?,
    };
    let mut imported = match format {
        Format::Native | Format::AmlV2 => native::import(path)?,
        Format::AmlV1 => aml_v1::import(path)?,
        Format::Conda => conda_env::import(path)?,
        Format::Requirements => requirements::import(path)?,
        Format::Dockerfile => dockerfile::import(path)?,
        Format::CondaPrefix => prefix::import_conda(path)?,
        Format::Venv => prefix::import_venv(path)?,
    };
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
/// they drop. Metadata fields (`description`, `tags`) are included.
pub fn set_fields(d: &Definition) -> Vec<&'static str> {
    let mut fields = Vec::new();
    let mut add = |set: bool, name: &'static str| {
        if set {
            fields.push(name);
        }
    };
    add(d.version.is_some(), "version");
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
            "version" => d.version = None,
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
