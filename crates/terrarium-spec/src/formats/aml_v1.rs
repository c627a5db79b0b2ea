//! The directory that Azure ML SDK v1 `Environment.save_to_directory` writes, and that
//! `Environment.load_from_directory` reads: `azureml_environment.json`,
//! `conda_dependencies.yml` and an optional `BaseDockerfile`.
//!
//! Every field of the JSON is kept: fields Terrarium models map onto the definition; the others
//! (`databricks`, `r`, `docker.arguments`, ...) are kept under `extensions` as `aml_v1.<path>`
//! when they differ from the SDK's defaults, and written back on export. The one exception is a
//! registry password, which is never imported (credentials come from the docker config).

use std::path::Path;

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::error::{Location, SpecError, Warning};
use crate::formats::{conda_env, dropped, ExportNote, Exported, Format, Imported};
use crate::model::Definition;
use crate::source::SourceFile;
use crate::yaml::{self, Reader};

pub const DEFINITION_FILE: &str = "azureml_environment.json";
pub const CONDA_FILE: &str = "conda_dependencies.yml";
pub const DOCKERFILE_FILE: &str = "BaseDockerfile";

const DEFAULT_SHM_SIZE: &str = "2g";

pub fn import(path: &Path) -> Result<Imported, SpecError> {
    let dir = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent().unwrap_or(Path::new(".")).to_path_buf()
    };
    let json_path = dir.join(DEFINITION_FILE);
    let source = SourceFile::read(&json_path)?;
    let root: Value = serde_json::from_str(&source.text).map_err(|e| {
        SpecError::invalid(
            Location::line(&json_path, e.line().max(1)),
            format!("invalid JSON: {e}"),
        )
    })?;
    let mut cx = Cx {
        source: &source,
        warnings: Vec::new(),
    };
    let mut d = Definition::default();
    let mut files = vec![json_path.clone()];
    let top = cx.object(&root, "")?;
    for key in top.keys() {
        if !KNOWN_TOP.contains(&key.as_str()) {
            cx.warn(key, "unknown key (ignored)");
        }
    }
    d.name = cx.opt_str(top.get("name"), "name")?.unwrap_or_default();
    d.version = cx.opt_str(top.get("version"), "version")?;
    if let Some(vars) = top.get("environmentVariables").filter(|v| !v.is_null()) {
        for (k, v) in cx.object(vars, "environmentVariables")? {
            let field = format!("environmentVariables.{k}");
            let value = cx.str(v, &field)?;
            super::native::validate_variable(k, &value).map_err(|e| cx.error(&field, e))?;
            d.environment_variables.insert(k.clone(), value);
        }
    }

    // python
    let mut conda_inline = None;
    if let Some(python) = top.get("python").filter(|v| !v.is_null()) {
        let python = cx.object(python, "python")?;
        if let Some(v) = python
            .get("userManagedDependencies")
            .filter(|v| !v.is_null())
        {
            d.python.user_managed = cx.bool(v, "python.userManagedDependencies")?;
        }
        d.python.interpreter = cx
            .opt_str(python.get("interpreterPath"), "python.interpreterPath")?
            .filter(|p| p != "python");
        for key in ["condaDependenciesFile", "baseCondaEnvironment"] {
            keep(
                &mut d,
                &format!("python.{key}"),
                python.get(key),
                &Value::Null,
            );
        }
        conda_inline = python
            .get("condaDependencies")
            .filter(|v| !v.is_null())
            .cloned();
        for key in python.keys() {
            if ![
                "userManagedDependencies",
                "interpreterPath",
                "condaDependenciesFile",
                "baseCondaEnvironment",
                "condaDependencies",
            ]
            .contains(&key.as_str())
            {
                keep(
                    &mut d,
                    &format!("python.{key}"),
                    python.get(key),
                    &Value::Null,
                );
            }
        }
    }

    // docker
    if let Some(docker) = top.get("docker").filter(|v| !v.is_null()) {
        let docker = cx.object(docker, "docker")?;
        keep(
            &mut d,
            "docker.enabled",
            docker.get("enabled"),
            &json!(false),
        );
        d.docker.base_image = cx.opt_str(docker.get("baseImage"), "docker.baseImage")?;
        if let Some(image) = &d.docker.base_image {
            super::validate_image_reference(image).map_err(|e| cx.error("docker.baseImage", e))?;
        }
        d.docker.base_dockerfile =
            cx.opt_str(docker.get("baseDockerfile"), "docker.baseDockerfile")?;
        if let Some(context) = docker.get("buildContext").filter(|v| !v.is_null()) {
            let context = cx.object(context, "docker.buildContext")?;
            d.docker.build_context =
                cx.opt_str(context.get("location"), "docker.buildContext.location")?;
            d.docker.dockerfile_path = cx.opt_str(
                context.get("dockerfilePath"),
                "docker.buildContext.dockerfilePath",
            )?;
            for (path, field) in [
                (&d.docker.build_context, "docker.buildContext.location"),
                (
                    &d.docker.dockerfile_path,
                    "docker.buildContext.dockerfilePath",
                ),
            ] {
                if let Some(path) = path {
                    crate::names::validate_relative_path(path).map_err(|e| cx.error(field, e))?;
                }
            }
            keep(
                &mut d,
                "docker.buildContext.locationType",
                context.get("locationType"),
                &Value::Null,
            );
        }
        keep(
            &mut d,
            "docker.sharedVolumes",
            docker.get("sharedVolumes"),
            &json!(true),
        );
        d.docker.shm_size = cx
            .opt_str(docker.get("shmSize"), "docker.shmSize")?
            .filter(|s| s != DEFAULT_SHM_SIZE);
        keep(
            &mut d,
            "docker.arguments",
            docker.get("arguments"),
            &json!([]),
        );
        if let Some(registry) = docker.get("baseImageRegistry").filter(|v| !v.is_null()) {
            let registry = cx.object(registry, "docker.baseImageRegistry")?;
            for key in ["address", "username", "registryIdentity"] {
                keep(
                    &mut d,
                    &format!("docker.baseImageRegistry.{key}"),
                    registry.get(key),
                    &Value::Null,
                );
            }
            if registry.get("password").is_some_and(|p| !p.is_null()) {
                cx.warn("docker.baseImageRegistry.password", "the registry password was not imported: Terrarium takes registry credentials from the docker config or environment, never from a definition");
            }
        }
        if let Some(platform) = docker.get("platform").filter(|v| !v.is_null()) {
            let platform = cx.object(platform, "docker.platform")?;
            let os = cx
                .opt_str(platform.get("os"), "docker.platform.os")?
                .unwrap_or_else(|| "Linux".into());
            let arch = cx
                .opt_str(platform.get("architecture"), "docker.platform.architecture")?
                .unwrap_or_else(|| "amd64".into());
            let joined = format!("{}/{}", os.to_ascii_lowercase(), arch);
            d.docker.platform = (joined != "linux/amd64").then_some(joined);
        }
        for key in docker.keys() {
            if ![
                "enabled",
                "baseImage",
                "baseDockerfile",
                "buildContext",
                "sharedVolumes",
                "shmSize",
                "arguments",
                "baseImageRegistry",
                "platform",
                "gpuSupport",
            ]
            .contains(&key.as_str())
            {
                keep(
                    &mut d,
                    &format!("docker.{key}"),
                    docker.get(key),
                    &Value::Null,
                );
            }
        }
        if let Some(gpu) = docker.get("gpuSupport").filter(|v| !v.is_null()) {
            d.docker.gpu = cx.bool(gpu, "docker.gpuSupport")?;
        }
    }
    let dockerfile_path = dir.join(DOCKERFILE_FILE);
    misnamed(
        &dockerfile_path,
        d.docker.base_dockerfile.is_some(),
        &mut cx,
    )?;
    if dockerfile_path.is_file() {
        let text = SourceFile::read(&dockerfile_path)?;
        super::dockerfile::validate(&text)?;
        d.docker.base_dockerfile = Some(text.text);
        files.push(dockerfile_path);
    }

    // spark
    if let Some(spark) = top.get("spark").filter(|v| !v.is_null()) {
        let spark = cx.object(spark, "spark")?;
        if let Some(repos) = spark.get("repositories").filter(|v| !v.is_null()) {
            for repo in cx.array(repos, "spark.repositories")? {
                d.spark
                    .repositories
                    .push(cx.str(repo, "spark.repositories")?);
            }
        }
        if let Some(packages) = spark.get("packages").filter(|v| !v.is_null()) {
            for package in cx.array(packages, "spark.packages")? {
                let coordinate = match package {
                    Value::Object(p) => {
                        let part = |k: &str| {
                            p.get(k)
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_string()
                        };
                        format!("{}:{}:{}", part("group"), part("artifact"), part("version"))
                    }
                    other => cx.str(other, "spark.packages")?,
                };
                super::native::validate_maven(&coordinate)
                    .map_err(|e| cx.error("spark.packages", e))?;
                d.spark.packages.push(coordinate);
            }
        }
        if let Some(precache) = spark.get("precachePackages").filter(|v| !v.is_null()) {
            d.spark.precache = cx.bool(precache, "spark.precachePackages")?;
        }
    }

    keep(
        &mut d,
        "databricks",
        top.get("databricks"),
        &default_databricks(),
    );
    for key in ["r", "inferencingStackVersion", "assetId"] {
        keep(&mut d, key, top.get(key), &Value::Null);
    }

    // conda_dependencies.yml (or inline python.condaDependencies)
    let conda_path = dir.join(CONDA_FILE);
    misnamed(&conda_path, conda_inline.is_some(), &mut cx)?;
    let conda = if conda_path.is_file() {
        let conda_source = SourceFile::read(&conda_path)?;
        let conda_root = yaml::parse(&conda_source)?;
        let mut reader = Reader::new(&conda_source);
        let file = conda_env::read(&mut reader, &conda_root, "")?;
        cx.warnings.extend(reader.warnings);
        files.push(conda_path);
        Some(file)
    } else if let Some(inline) = conda_inline {
        let text = serde_json::to_string_pretty(&inline).expect("json");
        let conda_source = SourceFile::from_text(&json_path, &text);
        let conda_root = yaml::parse(&conda_source)?;
        let mut reader = Reader::new(&conda_source);
        let file = conda_env::read(&mut reader, &conda_root, "python.condaDependencies")?;
        cx.warnings.extend(reader.warnings);
        Some(file)
    } else {
        None
    };
    if let Some(file) = conda {
        d.conda = file.conda;
        d.python.pip = file.pip;
        d.python.index = file.index;
        for (k, v) in file.variables {
            d.environment_variables.entry(k).or_insert(v);
        }
    }
    Ok(Imported {
        definition: d,
        format: Format::AmlV1,
        warnings: cx.warnings,
        files,
    })
}

/// The SDK reads `expected` by that exact name: a near name beside it (`.yaml`, other case)
/// would be ignored without a word. An error when nothing else gives what the file holds, a
/// warning when the JSON has it inline.
fn misnamed(expected: &Path, inline: bool, cx: &mut Cx<'_>) -> Result<(), SpecError> {
    if expected.exists() {
        return Ok(());
    }
    let Some(near) = super::near_name(expected) else {
        return Ok(());
    };
    let name = expected
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let found = expected.with_file_name(&near);
    let message =
        format!("Azure ML v1 reads this file only as `{name}`: rename `{near}` to `{name}`");
    if inline {
        cx.warnings.push(Warning {
            location: Location::file(&found),
            message: format!("{message}; it was ignored, the definition's inline copy was read"),
        });
        Ok(())
    } else {
        Err(SpecError::invalid(Location::file(&found), message))
    }
}

const KNOWN_TOP: &[&str] = &[
    "name",
    "version",
    "environmentVariables",
    "python",
    "docker",
    "spark",
    "databricks",
    "r",
    "inferencingStackVersion",
    "assetId",
];

fn default_databricks() -> Value {
    json!({"mavenLibraries": [], "pypiLibraries": [], "rcranLibraries": [], "jarLibraries": [], "eggLibraries": []})
}

/// Keep a field Terrarium does not model, when it is not the SDK's default.
fn keep(d: &mut Definition, path: &str, value: Option<&Value>, default: &Value) {
    if let Some(value) = value {
        if value != default && !value.is_null() {
            d.extensions.insert(format!("aml_v1.{path}"), value.clone());
        }
    }
}

struct Cx<'a> {
    source: &'a SourceFile,
    warnings: Vec<Warning>,
}

impl Cx<'_> {
    /// The line of the first `"key"` for the field's last segment: serde_json's tree has no
    /// positions, and a JSON key is rarely repeated in these small files.
    fn line_of(&self, field: &str) -> usize {
        let key = field.rsplit('.').next().unwrap_or(field);
        let needle = format!("\"{key}\"");
        self.source
            .text
            .lines()
            .position(|l| l.contains(&needle))
            .map_or(1, |i| i + 1)
    }

    fn error(&self, field: &str, message: impl Into<String>) -> SpecError {
        SpecError::invalid(
            Location::field(&self.source.path, self.line_of(field), field),
            message,
        )
    }

    fn warn(&mut self, field: &str, message: &str) {
        self.warnings.push(Warning {
            location: Location::field(&self.source.path, self.line_of(field), field),
            message: message.to_string(),
        });
    }

    fn object<'v>(&self, v: &'v Value, field: &str) -> Result<&'v Map<String, Value>, SpecError> {
        v.as_object().ok_or_else(|| {
            self.error(
                if field.is_empty() { "(root)" } else { field },
                "expected an object",
            )
        })
    }

    fn array<'v>(&self, v: &'v Value, field: &str) -> Result<&'v Vec<Value>, SpecError> {
        v.as_array()
            .ok_or_else(|| self.error(field, "expected an array"))
    }

    fn str(&self, v: &Value, field: &str) -> Result<String, SpecError> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err(self.error(field, "expected a string")),
        }
    }

    fn opt_str(&self, v: Option<&Value>, field: &str) -> Result<Option<String>, SpecError> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(v) => self.str(v, field).map(Some),
        }
    }

    fn bool(&self, v: &Value, field: &str) -> Result<bool, SpecError> {
        v.as_bool()
            .ok_or_else(|| self.error(field, "expected true or false"))
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EnvironmentJson {
    name: String,
    version: Option<String>,
    environment_variables: Value,
    python: Value,
    docker: Value,
    spark: Value,
    databricks: Value,
    r: Value,
    inferencing_stack_version: Value,
    asset_id: Value,
}

pub fn export(d: &Definition) -> Exported {
    let ext = |path: &str, default: Value| {
        d.extensions
            .get(&format!("aml_v1.{path}"))
            .cloned()
            .unwrap_or(default)
    };
    let (os, arch) = d
        .docker
        .platform
        .as_deref()
        .and_then(|p| p.split_once('/'))
        .map(|(os, arch)| (capitalize(os), arch.to_string()))
        .unwrap_or_else(|| ("Linux".into(), "amd64".into()));
    let build_context = d.docker.build_context.as_ref().map(|location| {
        json!({
            "locationType": ext("docker.buildContext.locationType", Value::Null),
            "location": location,
            "dockerfilePath": d.docker.dockerfile_path.clone().unwrap_or_else(|| "Dockerfile".into()),
        })
    });
    let mut docker = serde_json::Map::new();
    docker.insert("enabled".into(), ext("docker.enabled", json!(false)));
    docker.insert("baseImage".into(), json!(d.docker.base_image));
    docker.insert("buildContext".into(), build_context.unwrap_or(Value::Null));
    docker.insert(
        "sharedVolumes".into(),
        ext("docker.sharedVolumes", json!(true)),
    );
    docker.insert(
        "shmSize".into(),
        json!(d
            .docker
            .shm_size
            .clone()
            .unwrap_or_else(|| DEFAULT_SHM_SIZE.into())),
    );
    docker.insert("arguments".into(), ext("docker.arguments", json!([])));
    docker.insert(
        "baseImageRegistry".into(),
        json!({
            "address": ext("docker.baseImageRegistry.address", Value::Null),
            "username": ext("docker.baseImageRegistry.username", Value::Null),
            "password": null,
            "registryIdentity": ext("docker.baseImageRegistry.registryIdentity", Value::Null),
        }),
    );
    docker.insert("platform".into(), json!({"os": os, "architecture": arch}));
    if d.docker.gpu {
        docker.insert("gpuSupport".into(), json!(true));
    }
    let mut python = serde_json::Map::new();
    python.insert(
        "userManagedDependencies".into(),
        json!(d.python.user_managed),
    );
    python.insert(
        "interpreterPath".into(),
        json!(d
            .python
            .interpreter
            .clone()
            .unwrap_or_else(|| "python".into())),
    );
    python.insert(
        "condaDependenciesFile".into(),
        ext("python.condaDependenciesFile", Value::Null),
    );
    python.insert(
        "baseCondaEnvironment".into(),
        ext("python.baseCondaEnvironment", Value::Null),
    );
    for (key, value) in &d.extensions {
        let Some(rest) = key.strip_prefix("aml_v1.") else {
            continue;
        };
        if let Some(field) = rest.strip_prefix("python.") {
            python.entry(field.to_string()).or_insert(value.clone());
        } else if let Some(field) = rest.strip_prefix("docker.") {
            if !field.contains('.') {
                docker.entry(field.to_string()).or_insert(value.clone());
            }
        }
    }
    let spark_packages: Vec<Value> = d
        .spark
        .packages
        .iter()
        .map(|p| {
            let mut parts = p.splitn(3, ':');
            json!({"group": parts.next(), "artifact": parts.next(), "version": parts.next()})
        })
        .collect();
    // Sorted keys inside each section: the same definition always writes the same bytes.
    use crate::canonical::sorted;
    let doc = EnvironmentJson {
        name: d.name.clone(),
        version: d.version.clone(),
        environment_variables: sorted(json!(d.environment_variables)),
        python: sorted(Value::Object(python)),
        docker: sorted(Value::Object(docker)),
        spark: sorted(
            json!({"repositories": d.spark.repositories, "packages": spark_packages, "precachePackages": d.spark.precache}),
        ),
        databricks: sorted(ext("databricks", default_databricks())),
        r: sorted(ext("r", Value::Null)),
        inferencing_stack_version: ext("inferencingStackVersion", Value::Null),
        asset_id: ext("assetId", Value::Null),
    };
    let mut files = vec![(
        DEFINITION_FILE.to_string(),
        serde_json::to_string_pretty(&doc).expect("json") + "\n",
    )];
    let mut notes = Vec::new();
    let mut cannot = vec![
        "description",
        "tags",
        "runtime",
        "inference",
        "python.version",
    ];
    if d.extensions.keys().any(|key| !carries_extension(d, key)) {
        cannot.push("extensions");
    }
    // The folder's files are not written (Azure ML v1 takes a context from a datastore or a
    // git URL), only the Dockerfile: a context with other files is lost.
    if d.docker.build_context_digest.is_some() {
        cannot.push("docker.build_context");
    }
    let mut dropped_fields = dropped(d, &cannot);
    if d.conda.is_some() || !d.python.pip.is_empty() || !d.python.index.is_empty() {
        files.push((
            CONDA_FILE.to_string(),
            yaml::render(&conda_env::conda_yaml(
                d,
                Some("project_environment"),
                false,
            )),
        ));
        if d.conda.is_none() && d.python.version.is_some() {
            notes.push(ExportNote::PipOnlyAsConda {
                format: Format::AmlV1,
            });
            dropped_fields.retain(|f| f != "python.version");
        }
    }
    if let Some(dockerfile) = &d.docker.base_dockerfile {
        files.push((DOCKERFILE_FILE.to_string(), dockerfile.clone()));
    }
    Exported {
        files,
        dropped: dropped_fields,
        notes,
    }
}

/// Whether the export writes the preserved field `key` back (see [`export`]).
fn carries_extension(d: &Definition, key: &str) -> bool {
    let Some(rest) = key.strip_prefix("aml_v1.") else {
        return false;
    };
    if rest == "docker.buildContext.locationType" {
        return d.docker.build_context.is_some();
    }
    if let Some(field) = rest.strip_prefix("docker.") {
        return !field.contains('.')
            || [
                "baseImageRegistry.address",
                "baseImageRegistry.username",
                "baseImageRegistry.registryIdentity",
            ]
            .contains(&field);
    }
    rest.starts_with("python.")
        || ["databricks", "r", "inferencingStackVersion", "assetId"].contains(&rest)
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().collect::<String>() + chars.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::testing::{assert_drops_exactly, variants, write};

    #[test]
    fn drops_exactly_what_it_cannot_carry() {
        let compared = assert_drops_exactly(
            Format::AmlV1,
            &["description", "tags", "runtime", "inference", "extensions"],
        );
        assert_eq!(compared, variants().len() + 1);
    }

    #[test]
    fn a_misnamed_conda_file_is_named_not_ignored() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), DEFINITION_FILE, "{\"name\": \"v1\"}\n");
        let misnamed = write(
            dir.path(),
            "conda_dependencies.yaml",
            "channels: [conda-forge]\ndependencies: [numpy]\n",
        );
        let err = import(dir.path()).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}: Azure ML v1 reads this file only as `conda_dependencies.yml`: rename \
                 `conda_dependencies.yaml` to `conda_dependencies.yml`",
                misnamed.display()
            )
        );
        // With the packages inline in the JSON, the stray file is a warning.
        write(
            dir.path(),
            DEFINITION_FILE,
            "{\"name\": \"v1\", \"python\": {\"condaDependencies\": {\"dependencies\": [\"scipy\"]}}}\n",
        );
        let imported = import(dir.path()).unwrap();
        assert_eq!(
            imported.definition.conda.unwrap().dependencies,
            ["scipy".to_string()]
        );
        assert!(
            imported.warnings[0].to_string().contains("it was ignored"),
            "{:?}",
            imported.warnings
        );
    }
}
