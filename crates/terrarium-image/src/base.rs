//! Base images: read from an OCI layout (`oci:DIR[:TAG]`) or a registry
//! (`REGISTRY/REPOSITORY[:TAG]`), by manifest and config; their layers are reused by digest,
//! never unpacked or rebuilt.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::registry::{ImageRef, Registry, RegistryError};
use crate::ImageError;

/// One of the base's layers, as its manifest describes it.
#[derive(Debug, Clone)]
pub struct BaseLayer {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

#[derive(Debug, Clone)]
pub struct Base {
    /// As given.
    pub reference: String,
    pub manifest_digest: String,
    pub config: Value,
    pub layers: Vec<BaseLayer>,
    /// `(registry, repository)` when it came from a registry (to mount its blobs).
    pub repository: Option<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    #[error("base image {0}: {1}")]
    Invalid(String, String),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Image(#[from] ImageError),
}

fn choose_platform(index: &Value) -> Option<String> {
    index["manifests"].as_array()?.iter().find_map(|m| {
        let p = &m["platform"];
        (p["os"] == "linux" && p["architecture"] == "amd64")
            .then(|| m["digest"].as_str().map(String::from))
            .flatten()
    })
}

fn is_index(manifest: &Value, media_type: &str) -> bool {
    media_type.contains("index")
        || media_type.contains("manifest.list")
        || manifest["manifests"].is_array()
}

/// Open the base image and copy its layers and config into `blobs` (those not there yet).
pub fn open(reference: &str, blobs: &Path, insecure: &[String]) -> Result<Base, BaseError> {
    let bad = |why: String| BaseError::Invalid(reference.to_string(), why);
    std::fs::create_dir_all(blobs).map_err(|e| ImageError::io(blobs, e))?;
    if let Some(rest) = reference.strip_prefix("oci:") {
        let (dir, tag) = match rest.rsplit_once(':') {
            Some((dir, tag)) if !tag.contains('/') => (PathBuf::from(dir), Some(tag.to_string())),
            _ => (PathBuf::from(rest), None),
        };
        let read = |digest: &str| -> Result<Vec<u8>, BaseError> {
            let path = dir
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:"));
            std::fs::read(&path).map_err(|e| bad(format!("{}: {e}", path.display())))
        };
        let index: Value = serde_json::from_slice(
            &std::fs::read(dir.join("index.json"))
                .map_err(|e| bad(format!("{}: {e}", dir.join("index.json").display())))?,
        )
        .map_err(|e| bad(format!("index.json: {e}")))?;
        let entries = index["manifests"].as_array().cloned().unwrap_or_default();
        let entry = entries
            .iter()
            .find(|m| match &tag {
                Some(tag) => m["annotations"]["org.opencontainers.image.ref.name"] == tag.as_str(),
                None => true,
            })
            .ok_or_else(|| {
                bad(format!(
                    "no image tagged {} in {}",
                    tag.as_deref().unwrap_or("(any)"),
                    dir.display()
                ))
            })?;
        let mut digest = entry["digest"].as_str().unwrap_or("").to_string();
        let mut manifest: Value =
            serde_json::from_slice(&read(&digest)?).map_err(|e| bad(e.to_string()))?;
        if is_index(&manifest, entry["mediaType"].as_str().unwrap_or("")) {
            digest = choose_platform(&manifest)
                .ok_or_else(|| bad("no linux/amd64 image in the index".into()))?;
            manifest = serde_json::from_slice(&read(&digest)?).map_err(|e| bad(e.to_string()))?;
        }
        let base = from_manifest(
            reference,
            digest,
            &manifest,
            &read(manifest["config"]["digest"].as_str().unwrap_or(""))?,
            None,
        )?;
        for digest in base
            .layers
            .iter()
            .map(|l| &l.digest)
            .chain([&config_digest(&manifest)])
        {
            let target = blobs.join(digest.trim_start_matches("sha256:"));
            if !target.exists() {
                let source = dir
                    .join("blobs/sha256")
                    .join(digest.trim_start_matches("sha256:"));
                if std::fs::hard_link(&source, &target).is_err() {
                    std::fs::copy(&source, &target)
                        .map_err(|e| bad(format!("{}: {e}", source.display())))?;
                }
            }
        }
        return Ok(base);
    }
    let target = ImageRef::parse(reference)?;
    let tag = target.tag.clone().unwrap_or_else(|| "latest".into());
    let mut registry = Registry::new(&target.registry, insecure)?;
    let (bytes, media_type) = registry.get_manifest(&target.repository, &tag)?;
    let mut manifest: Value = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    let mut digest = crate::sha256(&bytes);
    if is_index(&manifest, &media_type) {
        digest = choose_platform(&manifest)
            .ok_or_else(|| bad("no linux/amd64 image in the index".into()))?;
        let (bytes, _) = registry.get_manifest(&target.repository, &digest)?;
        manifest = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    }
    let config_digest = config_digest(&manifest);
    let config_path = blobs.join(config_digest.trim_start_matches("sha256:"));
    if !config_path.exists() {
        registry.get_blob(&target.repository, &config_digest, &config_path)?;
    }
    let config = std::fs::read(&config_path).map_err(|e| ImageError::io(&config_path, e))?;
    let base = from_manifest(
        reference,
        digest,
        &manifest,
        &config,
        Some((target.registry.clone(), target.repository.clone())),
    )?;
    for layer in &base.layers {
        let path = blobs.join(layer.digest.trim_start_matches("sha256:"));
        if !path.exists() {
            registry.get_blob(&target.repository, &layer.digest, &path)?;
        }
    }
    Ok(base)
}

fn config_digest(manifest: &Value) -> String {
    manifest["config"]["digest"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn from_manifest(
    reference: &str,
    manifest_digest: String,
    manifest: &Value,
    config: &[u8],
    repository: Option<(String, String)>,
) -> Result<Base, BaseError> {
    let bad = |why: String| BaseError::Invalid(reference.to_string(), why);
    let config: Value = serde_json::from_slice(config).map_err(|e| bad(format!("config: {e}")))?;
    let layers = manifest["layers"]
        .as_array()
        .ok_or_else(|| bad("the manifest lists no layers".into()))?
        .iter()
        .map(|l| BaseLayer {
            media_type: l["mediaType"]
                .as_str()
                .unwrap_or(crate::MEDIA_LAYER)
                .to_string(),
            digest: l["digest"].as_str().unwrap_or("").to_string(),
            size: l["size"].as_u64().unwrap_or(0),
        })
        .collect();
    Ok(Base {
        reference: reference.to_string(),
        manifest_digest,
        config,
        layers,
        repository,
    })
}

/// The base's `python3.X` for `minor` (`3.11`): the first of `usr/local/bin`, `usr/bin` that a
/// layer holds (a regular file or a symlink), found by reading the layers' tar headers.
pub fn find_python(base: &Base, blobs: &Path, minor: &str) -> Result<Option<String>, ImageError> {
    let wanted = [
        format!("usr/local/bin/python{minor}"),
        format!("usr/bin/python{minor}"),
    ];
    let mut found: Vec<String> = Vec::new();
    for layer in &base.layers {
        let path = blobs.join(layer.digest.trim_start_matches("sha256:"));
        let file = std::fs::File::open(&path).map_err(|e| ImageError::io(&path, e))?;
        // OCI `tar+gzip` and Docker's `tar.gzip`.
        let reader: Box<dyn Read> = if layer.media_type.contains("gzip") {
            Box::new(flate2::read::GzDecoder::new(file))
        } else {
            Box::new(file)
        };
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries().map_err(|e| ImageError::io(&path, e))? {
            let entry = entry.map_err(|e| ImageError::io(&path, e))?;
            let name = entry
                .path()
                .map_err(|e| ImageError::io(&path, e))?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_string();
            if wanted.contains(&name) && !found.contains(&name) {
                found.push(name);
            }
        }
    }
    Ok(wanted
        .into_iter()
        .find(|w| found.contains(w))
        .map(|p| format!("/{p}")))
}
