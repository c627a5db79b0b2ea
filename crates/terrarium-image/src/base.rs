//! Base images: read from an OCI layout (`oci:DIR[:TAG]`) or a registry
//! (`REGISTRY/REPOSITORY[:TAG]`), by manifest and config; their layers are reused by digest,
//! never unpacked or rebuilt.
//!
//! A base is untrusted input. Every digest it gives is read as a [`Digest`], so none names a
//! file outside a blobs directory; every blob is checked against its digest and size before it
//! is used or takes its name in `blobs`; and of its config only the fields an image inherits
//! are kept ([`ImageConfig`]).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::registry::{ImageRef, Registry, RegistryError};
use crate::{Digest, ImageError};

/// One of the base's layers, as its manifest describes it.
#[derive(Debug, Clone)]
pub struct BaseLayer {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

#[derive(Debug, Clone)]
pub struct Base {
    /// As given.
    pub reference: String,
    /// The manifest's digest, as text (what build records keep).
    pub manifest_digest: String,
    pub config: ImageConfig,
    pub layers: Vec<BaseLayer>,
    /// `(registry, repository)` when it came from a registry (to mount its blobs).
    pub repository: Option<(String, String)>,
}

/// The fields of a base's image config that an image built on it inherits (the OCI image
/// spec's). Whatever else the base's config holds is dropped as it is read, so that nothing
/// unknown is carried into the images built on it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<RootFs>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<History>>,
}

/// How a container of the image runs (an image config's `config`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, Empty>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, Empty>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
}

/// The `{}` that `ExposedPorts` and `Volumes` map their keys to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Empty {}

/// The layers' uncompressed digests, in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

/// One step of the image's history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub empty_layer: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    /// The base is not a readable image: a bad reference, a missing file, malformed JSON or a
    /// malformed digest in it.
    #[error("base image {0}: {1}")]
    Invalid(String, String),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Includes blobs that are not what their digest names.
    #[error(transparent)]
    Image(#[from] ImageError),
}

impl BaseError {
    /// Errors in the base image named (its reference or its content) rather than failures of
    /// this machine or the network.
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::Invalid(..) => true,
            Self::Registry(err) => err.is_user_error(),
            Self::Image(err) => err.is_user_error(),
        }
    }
}

/// The largest index, manifest or image config read into memory (the OCI distribution spec
/// lets registries refuse manifests over 4 MiB): a hostile base cannot make a build read
/// gigabytes of JSON.
pub const MAX_JSON_BYTES: u64 = 4 * 1024 * 1024;

/// Read a small JSON document from a layout, refusing one larger than [`MAX_JSON_BYTES`].
fn read_json_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(file, MAX_JSON_BYTES + 1),
        &mut bytes,
    )?;
    if bytes.len() as u64 > MAX_JSON_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than {} MiB, more than an image's JSON can be",
            MAX_JSON_BYTES / (1024 * 1024)
        )));
    }
    Ok(bytes)
}

/// A content descriptor: an index's entry, a manifest's config or layer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: Option<String>,
    digest: Digest,
    size: Option<u64>,
    annotations: Option<BTreeMap<String, String>>,
    platform: Option<Platform>,
}

#[derive(Debug, Deserialize)]
struct Platform {
    os: Option<String>,
    architecture: Option<String>,
}

/// A manifest or an index (`index.json` too): which fields it has tells them apart.
#[derive(Debug, Deserialize)]
struct Manifest {
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
}

impl Manifest {
    fn is_index(&self, media_type: &str) -> bool {
        media_type.contains("index")
            || media_type.contains("manifest.list")
            || self.manifests.is_some()
    }
}

/// Where a base's manifests and blobs come from.
enum Source<'a> {
    Layout {
        reference: &'a str,
        /// The layout's `blobs/sha256`.
        blobs: PathBuf,
        /// `oci:DIR`
        origin: String,
    },
    Registry {
        registry: Registry,
        target: ImageRef,
        /// `REGISTRY/REPOSITORY`
        origin: String,
    },
}

impl Source<'_> {
    fn origin(&self) -> &str {
        match self {
            Source::Layout { origin, .. } | Source::Registry { origin, .. } => origin,
        }
    }

    /// The manifest or index `descriptor` names, checked against it.
    fn manifest(&mut self, descriptor: &Descriptor) -> Result<Vec<u8>, BaseError> {
        let bytes = match self {
            Source::Layout {
                reference, blobs, ..
            } => {
                let path = descriptor.digest.blob_path(blobs);
                read_json_file(&path).map_err(|e| {
                    BaseError::Invalid(reference.to_string(), format!("{}: {e}", path.display()))
                })?
            }
            Source::Registry {
                registry, target, ..
            } => {
                registry
                    .get_manifest(&target.repository, descriptor.digest.as_str())?
                    .0
            }
        };
        descriptor
            .digest
            .check(&bytes, descriptor.size, self.origin())?;
        Ok(bytes)
    }

    /// Make `blobs` hold the blob `descriptor` names, and give its file. A file there already is
    /// kept if it is that blob; else the blob is written again from here, checked before it
    /// takes its name.
    fn fetch(&mut self, descriptor: &Descriptor, blobs: &Path) -> Result<PathBuf, BaseError> {
        let digest = &descriptor.digest;
        let path = digest.blob_path(blobs);
        if digest
            .check_file(&path, descriptor.size, &blobs.display().to_string())
            .is_ok()
        {
            return Ok(path);
        }
        match self {
            Source::Layout {
                reference,
                blobs: from,
                origin,
            } => {
                let source = digest.blob_path(from);
                let staged = tempfile::Builder::new()
                    .make_in(blobs, |p| std::fs::hard_link(&source, p))
                    .or_else(|_| {
                        tempfile::Builder::new()
                            .make_in(blobs, |p| std::fs::copy(&source, p).map(drop))
                    })
                    .map_err(|e| {
                        BaseError::Invalid(
                            reference.to_string(),
                            format!("{}: {e}", source.display()),
                        )
                    })?;
                digest.check_file(staged.path(), descriptor.size, origin)?;
                staged
                    .persist(&path)
                    .map_err(|e| ImageError::io(&path, e.error))?;
            }
            Source::Registry {
                registry, target, ..
            } => registry.get_blob(&target.repository, digest, descriptor.size, &path)?,
        }
        Ok(path)
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    reference: &str,
    what: &str,
    bytes: &[u8],
) -> Result<T, BaseError> {
    serde_json::from_slice(bytes)
        .map_err(|e| BaseError::Invalid(reference.to_string(), format!("{what}: {e}")))
}

/// Open the base image and copy its layers and config into `blobs` (those not there yet).
pub fn open(reference: &str, blobs: &Path, insecure: &[String]) -> Result<Base, BaseError> {
    let bad = |why: String| BaseError::Invalid(reference.to_string(), why);
    std::fs::create_dir_all(blobs).map_err(|e| ImageError::io(blobs, e))?;
    let (mut source, bytes, media_type, mut digest) = match reference.strip_prefix("oci:") {
        Some(rest) => {
            let (dir, tag) = match rest.rsplit_once(':') {
                Some((dir, tag)) if !tag.contains('/') => {
                    (PathBuf::from(dir), Some(tag.to_string()))
                }
                _ => (PathBuf::from(rest), None),
            };
            let mut source = Source::Layout {
                reference,
                blobs: crate::layout::blobs_dir(&dir),
                origin: format!("oci:{}", dir.display()),
            };
            let index_path = dir.join("index.json");
            let index = read_json_file(&index_path)
                .map_err(|e| bad(format!("{}: {e}", index_path.display())))?;
            let index: Manifest = parse(reference, "index.json", &index)?;
            let entry = index
                .manifests
                .unwrap_or_default()
                .into_iter()
                .find(|m| match &tag {
                    Some(tag) => {
                        m.annotations
                            .as_ref()
                            .and_then(|a| a.get("org.opencontainers.image.ref.name"))
                            == Some(tag)
                    }
                    None => true,
                })
                .ok_or_else(|| {
                    bad(format!(
                        "no image tagged {} in {}",
                        tag.as_deref().unwrap_or("(any)"),
                        dir.display()
                    ))
                })?;
            let bytes = source.manifest(&entry)?;
            (
                source,
                bytes,
                entry.media_type.unwrap_or_default(),
                entry.digest,
            )
        }
        None => {
            let target = ImageRef::parse(reference)?;
            let tag = target.tag.clone().unwrap_or_else(|| "latest".into());
            let mut registry = Registry::new(&target.registry, insecure)?;
            let (bytes, media_type, digest) = registry.get_manifest(&target.repository, &tag)?;
            let origin = format!("{}/{}", target.registry, target.repository);
            let source = Source::Registry {
                registry,
                target,
                origin,
            };
            (source, bytes, media_type, digest)
        }
    };
    let mut manifest: Manifest = parse(reference, "the manifest", &bytes)?;
    if manifest.is_index(&media_type) {
        let entry = manifest
            .manifests
            .unwrap_or_default()
            .into_iter()
            .find(|m| {
                m.platform.as_ref().is_some_and(|p| {
                    p.os.as_deref() == Some("linux") && p.architecture.as_deref() == Some("amd64")
                })
            })
            .ok_or_else(|| bad("no linux/amd64 image in the index".into()))?;
        manifest = parse(reference, "the manifest", &source.manifest(&entry)?)?;
        digest = entry.digest;
    }
    let config = manifest
        .config
        .ok_or_else(|| bad("the manifest names no config".into()))?;
    let layers = manifest
        .layers
        .ok_or_else(|| bad("the manifest lists no layers".into()))?;
    let config_path = source.fetch(&config, blobs)?;
    let config_bytes = read_json_file(&config_path).map_err(|e| ImageError::io(&config_path, e))?;
    // The bytes parsed are the bytes checked, whatever happened to the file since.
    config
        .digest
        .check(&config_bytes, config.size, source.origin())?;
    let config: ImageConfig = parse(reference, "config", &config_bytes)?;
    let mut base_layers = Vec::new();
    for layer in layers {
        let path = source.fetch(&layer, blobs)?;
        let size = match layer.size {
            Some(size) => size,
            None => std::fs::metadata(&path)
                .map_err(|e| ImageError::io(&path, e))?
                .len(),
        };
        base_layers.push(BaseLayer {
            media_type: layer
                .media_type
                .unwrap_or_else(|| crate::MEDIA_LAYER.to_string()),
            digest: layer.digest,
            size,
        });
    }
    let repository = match &source {
        Source::Registry { target, .. } => {
            Some((target.registry.clone(), target.repository.clone()))
        }
        Source::Layout { .. } => None,
    };
    Ok(Base {
        reference: reference.to_string(),
        manifest_digest: digest.to_string(),
        config,
        layers: base_layers,
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
        let path = layer.digest.blob_path(blobs);
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
