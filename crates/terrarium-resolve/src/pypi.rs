//! The PyPI part of a lock: uv resolves (`uv pip compile --format pylock.toml`), Terrarium
//! records every artifact with its sha256 (hashing the ones the index did not give a hash for).

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};
use terrarium_lock::LockedPypi;
use terrarium_spec::model::{IndexOptions, PipRequirement};

use crate::python::Interpreter;
use crate::uv::Uv;
use crate::ResolveError;

/// What to resolve for.
pub enum Target<'a> {
    /// A real interpreter on this machine (pip-only environments on the current platform).
    Interpreter(&'a Interpreter),
    /// A Python version on a platform (conda environments, other platforms).
    Platform {
        python_version: &'a str,
        platform: &'a str,
    },
}

/// uv's `--python-platform` for a conda platform name.
pub fn uv_platform(platform: &str) -> Result<&'static str, ResolveError> {
    Ok(match platform {
        "linux-64" => "x86_64-unknown-linux-gnu",
        "linux-aarch64" => "aarch64-unknown-linux-gnu",
        "osx-64" => "x86_64-apple-darwin",
        "osx-arm64" => "aarch64-apple-darwin",
        "win-64" => "x86_64-pc-windows-msvc",
        other => {
            return Err(ResolveError::Invalid(format!(
                "PyPI packages cannot be locked for platform `{other}`"
            )))
        }
    })
}

/// Resolve `requirements` and return the locked packages and the pylock.toml text.
pub fn lock(
    uv: &Uv,
    requirements: &[PipRequirement],
    index: &IndexOptions,
    target: Target<'_>,
) -> Result<(Vec<LockedPypi>, String), ResolveError> {
    let work = tempfile::tempdir().map_err(|e| {
        ResolveError::io(
            std::env::temp_dir(),
            "cannot create a temporary directory in",
            e,
        )
    })?;
    let input = work.path().join("requirements.in");
    let mut text = String::new();
    for requirement in requirements {
        // Hashes in the input constrain artifacts; uv checks them when installing, and the
        // lock records the artifact's own hash.
        let mut r = requirement.clone();
        r.hashes.clear();
        text.push_str(&r.to_line());
        text.push('\n');
    }
    std::fs::write(&input, text).map_err(|e| ResolveError::io(&input, "cannot write", e))?;
    let output = work.path().join("pylock.toml");
    let mut cmd = uv.command();
    cmd.args([
        "pip",
        "compile",
        "--quiet",
        "--no-header",
        "--format",
        "pylock.toml",
    ])
    .arg(&input)
    .arg("-o")
    .arg(&output);
    match target {
        Target::Interpreter(interp) => {
            cmd.arg("--python").arg(&interp.path);
        }
        Target::Platform {
            python_version,
            platform,
        } => {
            cmd.args([
                "--python-version",
                python_version,
                "--python-platform",
                uv_platform(platform)?,
            ]);
        }
    }
    if let Some(url) = &index.index_url {
        cmd.args(["--index-url", url]);
    }
    for url in &index.extra_index_urls {
        cmd.args(["--extra-index-url", url]);
    }
    for link in &index.find_links {
        cmd.args(["--find-links", link]);
    }
    if index.no_index {
        cmd.arg("--no-index");
    }
    let result = cmd.output().map_err(|source| ResolveError::Spawn {
        program: uv.path.clone(),
        source,
    })?;
    if !result.status.success() {
        let stderr = String::from_utf8_lossy(&result.stderr).trim().to_string();
        return Err(classify(stderr));
    }
    let pylock = std::fs::read_to_string(&output)
        .map_err(|e| ResolveError::io(&output, "cannot read", e))?;
    complete_hashes(&pylock)
}

fn classify(stderr: String) -> ResolveError {
    if stderr.contains("No solution found")
        || stderr.contains("not found in the package registry")
        || stderr.contains("not found in the provided package locations")
        || stderr.contains("was not found")
        || stderr.contains("unsatisfiable")
    {
        ResolveError::PypiUnsatisfiable(stderr)
    } else {
        ResolveError::Uv(format!("uv failed to resolve:\n{stderr}"))
    }
}

/// Parse the pylock, fill in missing sha256 hashes, and return packages + the completed text.
fn complete_hashes(pylock: &str) -> Result<(Vec<LockedPypi>, String), ResolveError> {
    let mut doc: toml::Table = pylock.parse().map_err(|e: toml::de::Error| {
        ResolveError::Format(format!("uv wrote an unreadable pylock.toml: {e}"))
    })?;
    let mut locked = Vec::new();
    if let Some(toml::Value::Array(packages)) = doc.get_mut("packages") {
        for package in packages.iter_mut() {
            let Some(table) = package.as_table_mut() else {
                continue;
            };
            let name = table
                .get("name")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string();
            let version = table
                .get("version")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string();
            // The artifact uv would install here: the first wheel, else the sdist, else a
            // local directory or VCS source (which has no artifact hash).
            let artifact = if let Some(toml::Value::Array(wheels)) = table.get_mut("wheels") {
                wheels.first_mut().and_then(|w| w.as_table_mut())
            } else {
                None
            };
            let artifact = match artifact {
                Some(a) => Some(a),
                None => table.get_mut("sdist").and_then(|s| s.as_table_mut()),
            };
            let (url, sha256) = match artifact {
                Some(artifact) => {
                    let url = artifact
                        .get("url")
                        .or_else(|| artifact.get("path"))
                        .and_then(|v| v.as_str())
                        .unwrap_or_default()
                        .to_string();
                    let existing = artifact
                        .get("hashes")
                        .and_then(|h| h.get("sha256"))
                        .and_then(|v| v.as_str())
                        .map(str::to_string);
                    let sha256 = match existing {
                        Some(h) => h,
                        None => {
                            let (h, size) = hash_artifact(&url)?;
                            let mut hashes = toml::Table::new();
                            hashes.insert("sha256".into(), toml::Value::String(h.clone()));
                            artifact.insert("hashes".into(), toml::Value::Table(hashes));
                            artifact
                                .entry("size")
                                .or_insert(toml::Value::Integer(size as i64));
                            h
                        }
                    };
                    // PEP 751 `size`, which indexes give and find-links directories do not;
                    // a local file's size is cheap to know.
                    if !artifact.contains_key("size") {
                        if let Some(size) = local_path(&url)
                            .and_then(|p| std::fs::metadata(p).ok())
                            .map(|m| m.len())
                        {
                            artifact.insert("size".into(), toml::Value::Integer(size as i64));
                        }
                    }
                    (url, sha256)
                }
                None => {
                    let source = table
                        .get("directory")
                        .or_else(|| table.get("vcs"))
                        .and_then(|d| d.get("path").or_else(|| d.get("url")))
                        .and_then(|v| v.as_str())
                        .unwrap_or_default()
                        .to_string();
                    (source, String::new())
                }
            };
            locked.push(LockedPypi {
                name,
                version,
                url,
                sha256,
            });
        }
    }
    locked.sort_by(|a, b| a.name.cmp(&b.name));
    let text = toml::to_string(&doc).map_err(|e| ResolveError::Format(e.to_string()))?;
    Ok((locked, text))
}

/// The local path of a `file://` URL or plain path.
fn local_path(url: &str) -> Option<String> {
    if let Some(path) = url.strip_prefix("file://") {
        return Some(percent_decode(path));
    }
    (!url.contains("://")).then(|| url.to_string())
}

/// sha256 and size of an artifact at a `file://` or `http(s)://` URL, streamed.
fn hash_artifact(url: &str) -> Result<(String, u64), ResolveError> {
    let fetch_err = |message: String| ResolveError::Fetch {
        url: url.to_string(),
        message,
    };
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut reader: Box<dyn Read> = if let Some(path) = url.strip_prefix("file://") {
        let path = percent_decode(path);
        Box::new(std::fs::File::open(Path::new(&path)).map_err(|e| fetch_err(e.to_string()))?)
    } else if url.starts_with("http://") || url.starts_with("https://") {
        let response = reqwest::blocking::get(url).map_err(|e| fetch_err(e.to_string()))?;
        if !response.status().is_success() {
            return Err(fetch_err(format!("HTTP {}", response.status())));
        }
        Box::new(response)
    } else {
        Box::new(std::fs::File::open(url).map_err(|e| fetch_err(e.to_string()))?)
    };
    let mut size = 0u64;
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| fetch_err(e.to_string()))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((hex::encode(hasher.finalize()), size))
}

fn percent_decode(text: &str) -> String {
    url::Url::parse(&format!("file://{text}"))
        .ok()
        .and_then(|u| u.to_file_path().ok())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| text.to_string())
}
