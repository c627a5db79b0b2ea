//! Which files go in which layer.
//!
//! Layers are ordered from stable to volatile, and a package that changes re-uploads only its
//! own layer. Adopted from apko, which gives each package its own layer up to a layer budget
//! and groups the rest (chainguard-dev/apko, `pkg/build/layers.go`), and from nix2container,
//! which ranks store paths to decide which get layers of their own when the budget is smaller
//! than the package count (nlewo/nix2container, `popularity` layering): here the largest
//! packages get their own layers (they are the costliest to re-upload and the most widely
//! shared), the rest share one.

use std::collections::BTreeMap;
use std::path::Path;

use crate::ImageError;

/// At most this many package layers; the base's layers and ours must stay well under the
/// 127 layers that overlay filesystems and Docker accept.
pub const MAX_PACKAGE_LAYERS: usize = 60;

/// Files the image leaves out: Terrarium's build records (times, host paths).
pub const EXCLUDED_DIRS: &[&str] = &[".terrarium"];

/// An installed package and its files (relative to the prefix).
#[derive(Debug, Clone)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub files: Vec<String>,
    pub size: u64,
}

/// The plan: package layers (largest first), then everything else.
#[derive(Debug)]
pub struct Plan {
    pub own_layers: Vec<Package>,
    pub rest: Vec<String>,
    pub rest_packages: Vec<String>,
}

/// Every regular file, symlink and empty directory under `prefix`, relative, sorted.
pub fn walk(prefix: &Path) -> Result<Vec<(String, u64)>, ImageError> {
    let mut out = Vec::new();
    let mut stack = vec![prefix.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut empty = true;
        for entry in std::fs::read_dir(&dir).map_err(|e| ImageError::io(&dir, e))? {
            let entry = entry.map_err(|e| ImageError::io(&dir, e))?;
            empty = false;
            let path = entry.path();
            let relative = path
                .strip_prefix(prefix)
                .expect("walked from the prefix")
                .to_string_lossy()
                .to_string();
            if EXCLUDED_DIRS.contains(&relative.as_str()) {
                continue;
            }
            let kind = entry.file_type().map_err(|e| ImageError::io(&path, e))?;
            if kind.is_dir() {
                stack.push(path);
            } else {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                out.push((relative, size));
            }
        }
        if empty && dir != prefix {
            let relative = dir
                .strip_prefix(prefix)
                .unwrap()
                .to_string_lossy()
                .to_string();
            out.push((relative, 0));
        }
    }
    out.sort();
    Ok(out)
}

/// Assign files to the packages that installed them: conda's `conda-meta/*.json` and PyPI's
/// `*.dist-info/RECORD`.
pub fn plan(prefix: &Path, files: &[(String, u64)]) -> Result<Plan, ImageError> {
    let sizes: BTreeMap<&str, u64> = files.iter().map(|(p, s)| (p.as_str(), *s)).collect();
    let mut owner: BTreeMap<String, usize> = BTreeMap::new();
    let mut packages: Vec<Package> = Vec::new();
    let mut own =
        |packages: &mut Vec<Package>, name: String, version: String, list: Vec<String>| {
            let index = packages.len();
            let mut kept = Vec::new();
            for file in list {
                if sizes.contains_key(file.as_str()) && !owner.contains_key(&file) {
                    owner.insert(file.clone(), index);
                    kept.push(file);
                }
            }
            let size = kept.iter().map(|f| sizes[f.as_str()]).sum();
            packages.push(Package {
                name,
                version,
                files: kept,
                size,
            });
        };
    for (path, _) in files {
        if let Some(stem) = path
            .strip_prefix("conda-meta/")
            .and_then(|p| p.strip_suffix(".json"))
        {
            let text = std::fs::read(prefix.join(path))
                .map_err(|e| ImageError::io(&prefix.join(path), e))?;
            let record: serde_json::Value = serde_json::from_slice(&text)
                .map_err(|e| ImageError::Layer(format!("{path}: {e}")))?;
            let mut list: Vec<String> = record["files"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|f| f.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            list.push(path.clone());
            let name = record["name"].as_str().unwrap_or(stem).to_string();
            let version = record["version"].as_str().unwrap_or("").to_string();
            own(&mut packages, name, version, list);
        }
    }
    for (path, _) in files {
        let Some(dist_info) = path
            .strip_suffix("/RECORD")
            .filter(|d| d.ends_with(".dist-info"))
        else {
            continue;
        };
        let site = Path::new(dist_info).parent().unwrap_or(Path::new(""));
        let text = std::fs::read_to_string(prefix.join(path))
            .map_err(|e| ImageError::io(&prefix.join(path), e))?;
        let mut list = Vec::new();
        for line in text.lines() {
            let Some(file) = line.split(',').next().filter(|f| !f.is_empty()) else {
                continue;
            };
            list.push(normalize(&site.join(file)));
        }
        let dir = Path::new(dist_info)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        let stem = dir.trim_end_matches(".dist-info");
        let (name, version) = stem.split_once('-').unwrap_or((stem, ""));
        own(
            &mut packages,
            format!("{name} (pypi)"),
            version.to_string(),
            list,
        );
    }
    // Largest first; ties by name, so the order is the same every time.
    let mut order: Vec<usize> = (0..packages.len())
        .filter(|i| !packages[*i].files.is_empty())
        .collect();
    order.sort_by(|a, b| {
        packages[*b]
            .size
            .cmp(&packages[*a].size)
            .then_with(|| packages[*a].name.cmp(&packages[*b].name))
    });
    let own_count = if order.len() <= MAX_PACKAGE_LAYERS {
        order.len()
    } else {
        MAX_PACKAGE_LAYERS - 1
    };
    let own_layers: Vec<Package> = order[..own_count]
        .iter()
        .map(|i| packages[*i].clone())
        .collect();
    let mut rest_packages = Vec::new();
    let mut rest: Vec<String> = Vec::new();
    for i in &order[own_count..] {
        rest_packages.push(format!("{} {}", packages[*i].name, packages[*i].version));
        rest.extend(packages[*i].files.iter().cloned());
    }
    for (path, _) in files {
        if !owner.contains_key(path) {
            rest.push(path.clone());
        }
    }
    rest.sort();
    Ok(Plan {
        own_layers,
        rest,
        rest_packages,
    })
}

/// `a/b/../c` -> `a/c` (RECORD paths are relative to site-packages and may climb out of it).
fn normalize(path: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                parts.pop();
            }
            std::path::Component::Normal(p) => parts.push(p.to_string_lossy().to_string()),
            _ => {}
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_paths_climbing_out_of_site_packages() {
        assert_eq!(
            normalize(Path::new("lib/python3.11/site-packages/../../../bin/tool")),
            "bin/tool"
        );
    }
}
