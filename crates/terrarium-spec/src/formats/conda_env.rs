//! conda `environment.yml`: `name`, `channels`, `dependencies` with a nested `pip:` list,
//! `variables`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::SpecError;
use crate::formats::{dropped, ExportNote, Exported, Format, Imported};
use crate::model::{Conda, Definition, IndexOptions, PipRequirement};
use crate::pip::{self, Requirements};
use crate::source::SourceFile;
use crate::yaml::{self, Node, Reader, Value, Y};

/// The contents of a conda environment file.
#[derive(Debug, Default)]
pub struct CondaFile {
    pub name: Option<String>,
    pub conda: Option<Conda>,
    pub pip: Vec<PipRequirement>,
    pub index: IndexOptions,
    pub variables: BTreeMap<String, String>,
}

pub fn import(path: &Path) -> Result<Imported, SpecError> {
    let source = SourceFile::read(path)?;
    let root = yaml::parse(&source)?;
    let mut reader = Reader::new(&source);
    let file = read(&mut reader, &root, "")?;
    let mut definition = Definition {
        name: file.name.unwrap_or_default(),
        conda: file.conda,
        environment_variables: file.variables,
        ..Definition::default()
    };
    definition.python.pip = file.pip;
    definition.python.index = file.index;
    Ok(Imported {
        definition,
        format: Format::Conda,
        warnings: reader.warnings,
        files: vec![path.to_path_buf()],
    })
}

/// Read a conda environment mapping (a file's root, or an inline `conda_file:`). `prefix` is
/// prepended to field names in messages.
pub fn read(reader: &mut Reader<'_>, node: &Node, prefix: &str) -> Result<CondaFile, SpecError> {
    let mut map = reader.map(node, prefix)?;
    let field = |key: &str| {
        if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}.{key}")
        }
    };
    let mut out = CondaFile {
        name: reader.opt_string(map.get("name"), &field("name"))?,
        ..CondaFile::default()
    };
    // `prefix` is machine-specific output of `conda env export`; it says nothing about content.
    let _ = map.get("prefix");
    let mut channels = Vec::new();
    if let Some(node) = map.get("channels") {
        for (line, channel) in reader.string_list(node, &field("channels"))? {
            if channel.trim().is_empty() {
                return Err(reader.error(line, &field("channels"), "empty channel name"));
            }
            channels.push(channel.trim().to_string());
        }
    }
    let mut dependencies = Vec::new();
    let mut requirements = Requirements::default();
    if let Some(node) = map.get("dependencies") {
        let deps_field = field("dependencies");
        for (i, item) in reader.seq(node, &deps_field)?.iter().enumerate() {
            let item_field = format!("{deps_field}[{i}]");
            match &item.value {
                Value::Map(_) => {
                    let mut pip_map = reader.map(item, &item_field)?;
                    if let Some(pip_node) = pip_map.get("pip") {
                        let pip_field = format!("{item_field}.pip");
                        let lines = reader.string_list(pip_node, &pip_field)?;
                        pip::parse_lines(&reader.source.path, lines, &mut requirements, 0)
                            .map_err(|e| with_field(e, &pip_field))?;
                    }
                    pip_map.finish(reader);
                }
                _ => {
                    let spec = reader.string(item, &item_field)?;
                    crate::conda::parse(&spec).map_err(|reason| {
                        reader.error(
                            item.line,
                            &item_field,
                            format!("invalid conda match spec `{spec}`: {reason}"),
                        )
                    })?;
                    dependencies.push(spec.trim().to_string());
                }
            }
        }
    }
    if let Some(node) = map.get("variables") {
        for (key, value, _) in reader.string_map(node, &field("variables"))? {
            out.variables.insert(key, value);
        }
    }
    map.finish(reader);
    reader.warnings.extend(requirements.warnings);
    out.pip = requirements.requirements;
    out.index = requirements.index;
    if !channels.is_empty() || !dependencies.is_empty() {
        out.conda = Some(Conda {
            channels,
            dependencies,
        });
    }
    Ok(out)
}

/// Add the field name to an error from the requirements parser.
fn with_field(err: SpecError, field: &str) -> SpecError {
    match err {
        SpecError::Invalid {
            mut location,
            message,
        } => {
            location.field.get_or_insert_with(|| field.to_string());
            SpecError::Invalid { location, message }
        }
        other => other,
    }
}

/// The conda environment file body (without `name`) as a YAML value.
pub fn conda_yaml(definition: &Definition, name: Option<&str>, with_variables: bool) -> Y {
    let mut map = yaml::MapBuilder::new();
    if let Some(name) = name {
        map.put("name", Y::str(name));
    }
    let conda = definition.conda.clone().unwrap_or_default();
    map.put("channels", Y::strs(&conda.channels));
    let mut deps: Vec<Y> = conda
        .dependencies
        .iter()
        .map(|d| Y::str(d.clone()))
        .collect();
    if conda.dependencies.is_empty() {
        if let Some(version) = &definition.python.version {
            deps.push(Y::str(format!("python={version}")));
        }
    }
    let mut pip_lines = definition.python.index.to_lines();
    pip_lines.extend(definition.python.pip.iter().map(PipRequirement::to_line));
    if !pip_lines.is_empty() {
        deps.push(Y::Map(vec![("pip".into(), Y::strs(&pip_lines))]));
    }
    map.put("dependencies", Y::Seq(deps));
    if with_variables && !definition.environment_variables.is_empty() {
        map.put(
            "variables",
            Y::Map(
                definition
                    .environment_variables
                    .iter()
                    .map(|(k, v)| (k.clone(), Y::str(v.clone())))
                    .collect(),
            ),
        );
    }
    map.build()
}

pub fn export(definition: &Definition) -> Exported {
    let text = yaml::render(&conda_yaml(definition, Some(&definition.name), true));
    let mut notes = Vec::new();
    if definition.conda.is_none() && definition.python.version.is_some() {
        notes.push(ExportNote::PipOnlyAsConda {
            format: Format::Conda,
        });
    }
    Exported {
        files: vec![(String::new(), text)],
        dropped: dropped(
            definition,
            &[
                "description",
                "tags",
                "runtime",
                "python.interpreter",
                "python.user_managed",
                "docker.base_image",
                "docker.base_dockerfile",
                "docker.build_context",
                "docker.dockerfile_path",
                "docker.shm_size",
                "docker.gpu",
                "docker.platform",
                "spark.repositories",
                "spark.packages",
                "spark.precache",
                "inference",
                "extensions",
            ],
        ),
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::testing::{assert_drops_exactly, variants};

    #[test]
    fn drops_exactly_what_it_cannot_carry() {
        let compared = assert_drops_exactly(
            Format::Conda,
            &[
                "description",
                "tags",
                "runtime",
                "python.interpreter",
                "python.user_managed",
                "docker.base_image",
                "docker.base_dockerfile",
                "docker.build_context",
                "docker.dockerfile_path",
                "docker.shm_size",
                "docker.gpu",
                "docker.platform",
                "spark.repositories",
                "spark.packages",
                "spark.precache",
                "inference",
                "extensions",
            ],
        );
        assert_eq!(compared, variants().len() + 1);
    }
}
