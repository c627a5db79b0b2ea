//! Existing environments on disk: a conda prefix and a virtualenv, recorded as exact pins.
//!
//! This is Azure ML's `Environment.from_existing_conda_environment`, done better: Azure ML runs
//! `conda env export` and keeps loose specs; Terrarium reads the installed records and pins
//! every package to its exact version (and build, for conda), keeping the channels it came from
//! in order of use, and records PyPI packages that pip installed into the prefix.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Location, SpecError, Warning};
use crate::formats::{Format, Imported};
use crate::model::{Conda, Definition, PipRequirement};

pub fn import_conda(prefix: &Path) -> Result<Imported, SpecError> {
    let meta = prefix.join("conda-meta");
    let entries = std::fs::read_dir(&meta)
        .map_err(|e| SpecError::io(&meta, "cannot read the conda-meta directory", e))?;
    let mut records = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| SpecError::io(&meta, "cannot read", e))?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "json") {
            records.push(path);
        }
    }
    records.sort();
    if records.is_empty() {
        return Err(SpecError::invalid(
            Location::file(&meta),
            "no package records (*.json): is this a conda environment?",
        ));
    }
    let mut dependencies = Vec::new();
    let mut channel_use: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (order, path) in records.iter().enumerate() {
        let source = crate::source::SourceFile::read(path)?;
        let record: serde_json::Value = serde_json::from_str(&source.text).map_err(|e| {
            SpecError::invalid(
                Location::line(path, e.line().max(1)),
                format!("invalid package record: {e}"),
            )
        })?;
        let field = |key: &str| -> Result<String, SpecError> {
            record
                .get(key)
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| {
                    SpecError::invalid(Location::field(path, 1, key), "missing in package record")
                })
        };
        let (name, version, build) = (field("name")?, field("version")?, field("build")?);
        dependencies.push(format!("{name}=={version}={build}"));
        if let Some(channel) = record.get("channel").and_then(serde_json::Value::as_str) {
            let channel = channel_name(channel);
            if !channel.is_empty() {
                let use_ = channel_use.entry(channel).or_insert((0, order));
                use_.0 += 1;
            }
        }
    }
    // Channels: most used first (that is what the solver should prefer), ties by first use.
    let mut channels: Vec<(String, (usize, usize))> = channel_use.into_iter().collect();
    channels.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.1 .1.cmp(&b.1 .1)));
    let mut definition = Definition {
        conda: Some(Conda {
            channels: channels.into_iter().map(|(c, _)| c).collect(),
            dependencies,
        }),
        ..Definition::default()
    };
    let mut warnings = Vec::new();
    let site_packages = find_site_packages(prefix);
    for site in &site_packages {
        for dist in installed_distributions(site, &mut warnings)? {
            if dist.installer.as_deref() != Some("conda") {
                definition.python.pip.push(dist.requirement);
            }
        }
    }
    Ok(Imported {
        definition,
        format: Format::CondaPrefix,
        warnings,
        files: records,
    })
}

/// `https://conda.anaconda.org/conda-forge/linux-64` -> `conda-forge`; other URLs lose their
/// platform subdirectory.
fn channel_name(channel: &str) -> String {
    let trimmed = channel.trim_end_matches('/');
    let without_subdir = match trimmed.rsplit_once('/') {
        Some((head, subdir)) if is_subdir(subdir) => head,
        _ => trimmed,
    };
    for host in ["https://conda.anaconda.org/", "http://conda.anaconda.org/"] {
        if let Some(name) = without_subdir.strip_prefix(host) {
            return name.to_string();
        }
    }
    without_subdir.to_string()
}

fn is_subdir(s: &str) -> bool {
    s == "noarch"
        || ["linux-", "osx-", "win-", "emscripten-", "wasi-", "zos-"]
            .iter()
            .any(|p| s.starts_with(p))
}

pub fn import_venv(venv: &Path) -> Result<Imported, SpecError> {
    let cfg_path = venv.join("pyvenv.cfg");
    let cfg = crate::source::SourceFile::read(&cfg_path)?;
    let mut version = None;
    let mut home = None;
    for line in cfg.text.lines() {
        if let Some((key, value)) = line.split_once('=') {
            match key.trim() {
                "version" | "version_info" => version = Some(value.trim().to_string()),
                "home" => home = Some(value.trim().to_string()),
                _ => {}
            }
        }
    }
    let version = version.ok_or_else(|| {
        SpecError::invalid(
            Location::field(&cfg_path, 1, "version"),
            "pyvenv.cfg has no Python version",
        )
    })?;
    // `3.11.7.final.0` (uv) -> `3.11.7`
    let version: String = version.split('.').take(3).collect::<Vec<_>>().join(".");
    let mut definition = Definition::default();
    definition.python.version = Some(version);
    let _ = home;
    let mut warnings = Vec::new();
    for site in find_site_packages(venv) {
        for dist in installed_distributions(&site, &mut warnings)? {
            definition.python.pip.push(dist.requirement);
        }
    }
    definition.python.pip.sort_by(|a, b| a.spec.cmp(&b.spec));
    Ok(Imported {
        definition,
        format: Format::Venv,
        warnings,
        files: vec![cfg_path],
    })
}

fn find_site_packages(prefix: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for lib in ["lib", "lib64"] {
        let Ok(entries) = std::fs::read_dir(prefix.join(lib)) else {
            continue;
        };
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("python"))
            })
            .map(|p| p.join("site-packages"))
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        for dir in dirs {
            let canonical = dir.canonicalize().unwrap_or(dir.clone());
            if !out
                .iter()
                .any(|o: &PathBuf| o.canonicalize().unwrap_or(o.clone()) == canonical)
            {
                out.push(dir);
            }
        }
    }
    let windows = prefix.join("Lib").join("site-packages");
    if windows.is_dir() {
        out.push(windows);
    }
    out
}

struct Installed {
    requirement: PipRequirement,
    installer: Option<String>,
}

/// Every `*.dist-info` in `site`, as an exact pin (`name==version`, or `name @ url` for
/// direct-URL installs per PEP 610).
fn installed_distributions(
    site: &Path,
    warnings: &mut Vec<Warning>,
) -> Result<Vec<Installed>, SpecError> {
    let entries = std::fs::read_dir(site).map_err(|e| SpecError::io(site, "cannot read", e))?;
    let mut dists: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "dist-info"))
        .collect();
    dists.sort();
    let mut out = Vec::new();
    for dist in dists {
        let metadata_path = dist.join("METADATA");
        let Ok(metadata) = std::fs::read(&metadata_path) else {
            warnings.push(Warning {
                location: Location::file(&dist),
                message: "no METADATA file; distribution skipped".into(),
            });
            continue;
        };
        let metadata = String::from_utf8_lossy(&metadata);
        let header = |key: &str| {
            metadata
                .lines()
                .take_while(|l| !l.is_empty())
                .find_map(|l| {
                    l.strip_prefix(key)
                        .and_then(|r| r.strip_prefix(':'))
                        .map(|v| v.trim().to_string())
                })
        };
        let (Some(name), Some(version)) = (header("Name"), header("Version")) else {
            warnings.push(Warning {
                location: Location::file(&metadata_path),
                message: "METADATA has no Name or Version; distribution skipped".into(),
            });
            continue;
        };
        let installer = std::fs::read_to_string(dist.join("INSTALLER"))
            .ok()
            .map(|s| s.trim().to_string());
        let mut requirement = PipRequirement::new(format!("{name}=={version}"));
        if let Ok(direct) = std::fs::read_to_string(dist.join("direct_url.json")) {
            if let Ok(direct) = serde_json::from_str::<serde_json::Value>(&direct) {
                if let Some(url) = direct.get("url").and_then(serde_json::Value::as_str) {
                    let editable = direct
                        .pointer("/dir_info/editable")
                        .and_then(serde_json::Value::as_bool)
                        .unwrap_or(false);
                    let vcs = direct
                        .pointer("/vcs_info/vcs")
                        .and_then(serde_json::Value::as_str);
                    let commit = direct
                        .pointer("/vcs_info/commit_id")
                        .and_then(serde_json::Value::as_str);
                    let url = match (vcs, commit) {
                        (Some(vcs), Some(commit)) => format!("{vcs}+{url}@{commit}"),
                        _ => url.to_string(),
                    };
                    if editable {
                        requirement = PipRequirement {
                            spec: url.trim_start_matches("file://").to_string(),
                            hashes: Vec::new(),
                            editable: true,
                        };
                    } else if !url.starts_with("file://") || !url.ends_with(".whl") {
                        requirement = PipRequirement::new(format!("{name} @ {url}"));
                    }
                }
            }
        }
        out.push(Installed {
            requirement,
            installer,
        });
    }
    Ok(out)
}
