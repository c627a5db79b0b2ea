//! OCI images from environment locks: daemonless, layered, reproducible.
//!
//! [`stage`] takes an environment version (its definition and lock, as plain data) to an
//! image: its packages installed for the in-image prefix (`terrarium_env::EnvCache::install_into`),
//! on a base image ([`base`]) or scratch, a deployment's layers ([`deployment`]) on top. The
//! prefix becomes layers ([`layering`], [`layer`]) under `/opt/terrarium/envs/<name>`, an image
//! config with the environment's variables and labels, and a manifest, written as an OCI image
//! layout ([`layout`]) and pushed ([`registry`]). The same prefix gives byte-identical blobs,
//! so the same lock gives the same image digest.
//!
//! Environments defined by a Dockerfile are built by buildah or docker ([`builder`]).
//!
//! Nothing here solves a definition or reads a workspace: the caller brings the lock. Progress
//! goes to a [`Reporter`]; errors say whether they are the user's ([`StageError::is_user_error`]).

pub mod artifact;
pub mod base;
pub mod builder;
pub mod deployment;
pub mod digest;
pub mod dockerfile;
mod elf;
mod error;
pub mod layer;
pub mod layering;
pub mod layout;
pub mod registry;
mod reporter;
pub mod stage;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

pub use digest::Digest;
pub use error::{ImageError, StageError};
pub use layer::Layer;
pub use reporter::{Quiet, Reporter};

pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildInput {
    /// The installed files, as they must appear at `target_prefix`.
    pub staging: PathBuf,
    /// The in-image prefix, absolute (`/opt/terrarium/envs/<name>`).
    pub target_prefix: String,
    /// The environment's variables, secret references left as references.
    pub env: Vec<(String, String)>,
    pub labels: BTreeMap<String, String>,
    /// Files of the final metadata layer, relative to the prefix.
    pub metadata: Vec<(String, Vec<u8>)>,
    /// The command the image runs by default.
    pub cmd: Vec<String>,
    /// `amd64`, `arm64`
    pub architecture: String,
    /// The image to build on (its layers are in the blobs directory); `None` for scratch.
    pub base: Option<base::Base>,
    /// More layers, after the environment's and before the metadata (a deployment's service,
    /// model and entry script).
    pub extra: Vec<Group>,
    /// The image's entrypoint (replaces the base's entrypoint and command when set).
    pub entrypoint: Vec<String>,
    pub exposed_ports: Vec<u16>,
    /// A directory remembering layers by their contents, so that an unchanged package is not
    /// compressed again (see [`layer::write_cached`]).
    pub layer_cache: Option<PathBuf>,
}

/// A built image: its blobs are in the layout directory.
#[derive(Debug, Clone)]
pub struct Image {
    /// The manifest's digest, as text (what build records keep).
    pub manifest_digest: String,
    pub manifest: Vec<u8>,
    pub config_digest: Digest,
    pub config: Vec<u8>,
    /// Ours, built from the environment.
    pub layers: Vec<Layer>,
    /// The base's, reused by digest.
    pub base_layers: Vec<base::BaseLayer>,
    /// Where the base came from, when a registry: `(registry, repository)`.
    pub base_repository: Option<(String, String)>,
}

impl Image {
    /// Compressed size of the layers, config and manifest.
    pub fn size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum::<u64>()
            + self.base_layers.iter().map(|l| l.size).sum::<u64>()
            + self.config.len() as u64
            + self.manifest.len() as u64
    }
}

/// Build the image's layers, config and manifest into `blobs` (a directory of blobs named by
/// their hex digest).
pub fn build(input: &BuildInput, blobs: &Path) -> Result<Image, ImageError> {
    let mut layers = Vec::new();
    for (comment, entries) in groups(input)? {
        layers.push(match &input.layer_cache {
            Some(cache) => layer::write_cached(cache, blobs, entries, &comment)?,
            None => layer::write(blobs, entries, &comment)?,
        });
    }
    let base = input.base.as_ref();
    // The base's config holds only the fields an image inherits (see `base::ImageConfig`).
    let mut config = match base {
        Some(b) => serde_json::to_value(&b.config).expect("an image config serializes"),
        None => json!({}),
    };
    let base_env: Vec<(String, String)> = config["config"]["Env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| {
                    v.as_str()?
                        .split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                })
                .collect()
        })
        .unwrap_or_default();
    let base_path = base_env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone());
    let mut env: Vec<(String, String)> = base_env;
    for (key, value) in environment(input, base_path.as_deref()) {
        match env.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => env.push((key, value)),
        }
    }
    let env: Vec<String> = env.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut labels = config["config"]["Labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for (key, value) in &input.labels {
        labels.insert(key.clone(), json!(value));
    }
    if !config["config"].is_object() {
        config["config"] = json!({});
    }
    let container = &mut config["config"];
    container["Env"] = json!(env);
    container["Labels"] = Value::Object(labels);
    if container["WorkingDir"].as_str().unwrap_or("").is_empty() {
        container["WorkingDir"] = json!("/");
    }
    if !input.entrypoint.is_empty() {
        container["Entrypoint"] = json!(input.entrypoint);
        container["Cmd"] = Value::Null;
    } else if !input.cmd.is_empty() {
        container["Cmd"] = json!(input.cmd);
    }
    if !input.exposed_ports.is_empty() {
        let ports: serde_json::Map<String, Value> = input
            .exposed_ports
            .iter()
            .map(|p| (format!("{p}/tcp"), json!({})))
            .collect();
        container["ExposedPorts"] = Value::Object(ports);
    }
    let created = config["created"]
        .as_str()
        .unwrap_or("1970-01-01T00:00:00Z")
        .to_string();
    let mut history: Vec<Value> = config["history"].as_array().cloned().unwrap_or_default();
    history.extend(
        layers.iter().map(
            |l| json!({"created": created, "created_by": format!("terrarium: {}", l.comment)}),
        ),
    );
    let mut diff_ids: Vec<Value> = config["rootfs"]["diff_ids"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if base.is_none() {
        diff_ids.clear();
    }
    diff_ids.extend(layers.iter().map(|l| json!(l.diff_id)));
    config["created"] = json!(created);
    config["architecture"] = config
        .get("architecture")
        .cloned()
        .unwrap_or_else(|| json!(input.architecture));
    config["os"] = json!("linux");
    config["rootfs"] = json!({"type": "layers", "diff_ids": diff_ids});
    config["history"] = json!(history);
    let config = canonical_json(&config);
    let config_digest = Digest::of(&config);
    write_blob(blobs, &config_digest, &config)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": base
            .map(|b| b.layers.iter().map(|l| json!({"mediaType": l.media_type, "digest": l.digest, "size": l.size})).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .chain(layers.iter().map(|l| json!({"mediaType": MEDIA_LAYER, "digest": l.digest, "size": l.size})))
            .collect::<Vec<_>>(),
        "annotations": input.labels.iter().filter(|(k, _)| k.starts_with("org.opencontainers.")).collect::<BTreeMap<_, _>>(),
    });
    let manifest = canonical_json(&manifest);
    let manifest_digest = Digest::of(&manifest);
    write_blob(blobs, &manifest_digest, &manifest)?;
    Ok(Image {
        manifest_digest: manifest_digest.to_string(),
        manifest,
        config_digest,
        config,
        layers,
        base_layers: base.map(|b| b.layers.clone()).unwrap_or_default(),
        base_repository: base.and_then(|b| b.repository.clone()),
    })
}

/// One layer's contents: what it holds (for the history) and its entries.
pub type Group = (String, Vec<(String, layer::Source)>);

/// The layers' contents, in order: one group per package (largest first, up to the cap), the
/// other files, and the metadata. Each entry is an in-image path (no leading `/`) and its source.
pub fn groups(input: &BuildInput) -> Result<Vec<Group>, ImageError> {
    let files = layering::walk(&input.staging)?;
    let plan = layering::plan(&input.staging, &files)?;
    let root = input.target_prefix.trim_start_matches('/').to_string();
    let entry = |relative: &str| {
        (
            format!("{root}/{relative}"),
            layer::Source::Path(input.staging.join(relative)),
        )
    };
    let mut groups = Vec::new();
    for package in &plan.own_layers {
        let entries = package.files.iter().map(|f| entry(f)).collect();
        let comment = format!("{} {}", package.name, package.version);
        groups.push((comment.trim().to_string(), entries));
    }
    if !plan.rest.is_empty() {
        let entries = plan.rest.iter().map(|f| entry(f)).collect();
        let comment = if plan.rest_packages.is_empty() {
            "other files".to_string()
        } else {
            format!("other files and {} packages", plan.rest_packages.len())
        };
        groups.push((comment, entries));
    }
    groups.extend(input.extra.iter().cloned());
    let metadata = input
        .metadata
        .iter()
        .map(|(path, bytes)| {
            (
                format!("{root}/{path}"),
                layer::Source::Bytes(bytes.clone(), 0o100644),
            )
        })
        .collect();
    groups.push(("environment metadata".to_string(), metadata));
    Ok(groups)
}

/// The image's environment variables: `PATH` with the environment first (then the base's
/// `PATH`, or the usual one), then the others.
pub fn environment(input: &BuildInput, base_path: Option<&str>) -> Vec<(String, String)> {
    let rest = base_path.unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let mut env = vec![(
        "PATH".to_string(),
        format!("{}/bin:{rest}", input.target_prefix),
    )];
    for (key, value) in &input.env {
        if key != "PATH" {
            env.push((key.clone(), value.clone()));
        }
    }
    env
}

/// JSON with object keys sorted at every level: a stable byte form whatever the map type.
pub fn canonical_json(value: &Value) -> Vec<u8> {
    fn sort(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let sorted: BTreeMap<&String, Value> =
                    map.iter().map(|(k, v)| (k, sort(v))).collect();
                let mut out = serde_json::Map::new();
                for (k, v) in sorted {
                    out.insert(k.clone(), v);
                }
                Value::Object(out)
            }
            Value::Array(items) => Value::Array(items.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_vec(&sort(value)).expect("JSON values serialize")
}

fn write_blob(blobs: &Path, digest: &Digest, bytes: &[u8]) -> Result<(), ImageError> {
    let path = digest.blob_path(blobs);
    std::fs::create_dir_all(blobs).map_err(|e| ImageError::io(blobs, e))?;
    std::fs::write(&path, bytes).map_err(|e| ImageError::io(&path, e))
}
