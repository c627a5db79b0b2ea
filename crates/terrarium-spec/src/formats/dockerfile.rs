//! Dockerfiles, in both directions.
//!
//! Import: a Dockerfile is a docker-runtime, user-managed environment whose build is the file
//! itself (Azure ML's `Environment.from_dockerfile`). Export: the file that builds the
//! environment: verbatim for a Dockerfile environment, otherwise a recipe that installs the
//! packages with micromamba or pip on top of the base image.

use std::path::Path;

use crate::error::{Location, SpecError};
use crate::formats::{dropped, Exported, Format, Imported};
use crate::model::{Definition, Runtime};
use crate::source::SourceFile;

const INSTRUCTIONS: &[&str] = &[
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "MAINTAINER",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
];

pub fn import(path: &Path) -> Result<Imported, SpecError> {
    let path = if path.is_dir() {
        path.join("Dockerfile")
    } else {
        path.to_path_buf()
    };
    let source = SourceFile::read(&path)?;
    let base_image = validate(&source)?;
    let mut definition = Definition {
        runtime: Runtime::Docker,
        ..Definition::default()
    };
    definition.python.user_managed = true;
    definition.docker.base_dockerfile = Some(source.text);
    let _ = base_image;
    Ok(Imported {
        definition,
        format: Format::Dockerfile,
        warnings: Vec::new(),
        files: vec![path],
    })
}

/// Check that every instruction is known and that there is a `FROM`; returns the first stage's
/// base image.
pub fn validate(source: &SourceFile) -> Result<String, SpecError> {
    let mut from = None;
    let mut heredoc: Option<String> = None;
    let mut continued = false;
    for (index, raw) in source.text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim();
        if let Some(end) = &heredoc {
            if line == end {
                heredoc = None;
            }
            continue;
        }
        if line.starts_with('#') || (line.is_empty() && !continued) {
            continue;
        }
        let was_continued = continued;
        continued = line.ends_with('\\');
        if was_continued {
            continue;
        }
        let mut words = line.split_whitespace();
        let instruction = words.next().unwrap_or_default().to_ascii_uppercase();
        if !INSTRUCTIONS.contains(&instruction.as_str()) {
            return Err(SpecError::invalid(
                Location::line(&source.path, line_no),
                format!(
                    "unknown Dockerfile instruction `{}`",
                    line.split_whitespace().next().unwrap_or_default()
                ),
            ));
        }
        if instruction == "FROM" && from.is_none() {
            let image = words.find(|w| !w.starts_with("--")).ok_or_else(|| {
                SpecError::invalid(
                    Location::line(&source.path, line_no),
                    "`FROM` needs an image",
                )
            })?;
            from = Some(image.to_string());
        } else if from.is_none() && instruction != "ARG" {
            return Err(SpecError::invalid(
                Location::line(&source.path, line_no),
                format!("`{instruction}` before the first `FROM`"),
            ));
        }
        if let Some(pos) = line.find("<<") {
            let marker = line[pos + 2..]
                .trim_start_matches('-')
                .trim_matches(['"', '\'']);
            let marker: String = marker
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !marker.is_empty() {
                heredoc = Some(marker);
            }
        }
    }
    from.ok_or_else(|| SpecError::invalid(Location::file(&source.path), "no `FROM` instruction"))
}

pub fn export(d: &Definition) -> Result<Exported, SpecError> {
    let mut notes = Vec::new();
    // A Dockerfile environment with nothing on top: the file itself, byte for byte.
    if let Some(text) = &d.docker.base_dockerfile {
        if !d.has_packages() && d.environment_variables.is_empty() {
            return Ok(Exported {
                files: vec![(String::new(), text.clone())],
                dropped: dropped(
                    d,
                    &[
                        "version",
                        "description",
                        "tags",
                        "runtime",
                        "python.version",
                        "python.interpreter",
                        "python.user_managed",
                        "python.index",
                        "conda",
                        "docker.base_image",
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
                )
                .into_iter()
                .filter(|f| !matches!(f.as_str(), "runtime" | "python.user_managed"))
                .collect(),
                notes,
            });
        }
        return Err(SpecError::Unsupported {
            format: "dockerfile",
            message: "the environment has both a base Dockerfile and packages or variables; \
                      build it with `terrarium image` or export as aml-v1/aml-v2"
                .to_string(),
        });
    }
    let mut out = String::new();
    out.push_str("# syntax=docker/dockerfile:1.7\n");
    out.push_str(&format!("# Environment {}", d.name));
    if let Some(v) = &d.version {
        out.push_str(&format!(":{v}"));
    }
    out.push_str(&format!(
        " ({}), written by terrarium.\n",
        crate::content_hash(d)
    ));
    if let Some(conda) = &d.conda {
        let base = d
            .docker
            .base_image
            .clone()
            .unwrap_or_else(|| "mambaorg/micromamba:2.0.5".to_string());
        out.push_str(&format!("FROM {base}\n"));
        if d.docker.base_image.is_some() {
            out.push_str("# The base image must provide micromamba on PATH.\n");
        }
        let env_yaml =
            crate::yaml::render(&super::conda_env::conda_yaml(d, Some("terrarium"), false));
        out.push_str("COPY <<'TERRARIUM_ENV' /tmp/terrarium-environment.yml\n");
        out.push_str(&env_yaml);
        out.push_str("TERRARIUM_ENV\n");
        out.push_str("RUN micromamba create -y -p /opt/terrarium/env -f /tmp/terrarium-environment.yml \\\n    && micromamba clean -a -y\n");
        out.push_str("ENV PATH=/opt/terrarium/env/bin:$PATH\n");
        let _ = conda;
    } else if d.has_packages() {
        let base = d.docker.base_image.clone().unwrap_or_else(|| {
            format!(
                "python:{}-slim",
                d.python.version.clone().unwrap_or_else(|| "3.11".into())
            )
        });
        out.push_str(&format!("FROM {base}\n"));
        out.push_str("COPY <<'TERRARIUM_REQUIREMENTS' /tmp/terrarium-requirements.txt\n");
        out.push_str(&crate::pip::write_requirements(
            &d.python.index,
            &d.python.pip,
        ));
        out.push_str("TERRARIUM_REQUIREMENTS\n");
        out.push_str("RUN python -m venv /opt/terrarium/env \\\n    && /opt/terrarium/env/bin/pip install --no-cache-dir -r /tmp/terrarium-requirements.txt\n");
        out.push_str("ENV PATH=/opt/terrarium/env/bin:$PATH\n");
    } else {
        let base = d
            .docker
            .base_image
            .clone()
            .ok_or_else(|| SpecError::Unsupported {
                format: "dockerfile",
                message: "the environment has no base image, Dockerfile or packages".to_string(),
            })?;
        out.push_str(&format!("FROM {base}\n"));
    }
    let mut secret_refs = Vec::new();
    for (key, value) in &d.environment_variables {
        if value.contains("${secret:") {
            secret_refs.push(key.clone());
            continue;
        }
        out.push_str(&format!(
            "ENV {key}={}\n",
            serde_json::to_string(value).expect("string")
        ));
    }
    if !secret_refs.is_empty() {
        notes.push(format!(
            "variables that reference secrets are not written into an image: {}",
            secret_refs.join(", ")
        ));
    }
    notes.push("a Dockerfile carries the packages as build steps; importing it back gives a user-managed docker environment".into());
    Ok(Exported {
        files: vec![(String::new(), out)],
        dropped: dropped(
            d,
            &[
                "version",
                "description",
                "tags",
                "python.interpreter",
                "python.user_managed",
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<String, SpecError> {
        validate(&SourceFile::from_text(Path::new("Dockerfile"), text))
    }

    #[test]
    fn validates() {
        assert_eq!(
            check("ARG V=1\nFROM --platform=linux/amd64 python:3.11 AS base\nRUN a \\\n  b\n")
                .unwrap(),
            "python:3.11"
        );
        assert_eq!(
            check("FROM x\nRUN <<EOF\nnot an instruction\nEOF\n").unwrap(),
            "x"
        );
        let err = check("FROM x\nRUNN y\n").unwrap_err().to_string();
        assert!(
            err.starts_with("Dockerfile:2: unknown Dockerfile instruction `RUNN`"),
            "{err}"
        );
        assert!(check("RUN x\n").is_err());
        assert!(check("# nothing\n").is_err());
    }
}
