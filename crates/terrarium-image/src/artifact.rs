//! Packs as OCI artifacts: `env pack --push` puts a pack in a registry as an OCI 1.1 artifact
//! (an image manifest whose `artifactType` is [`PACK_ARTIFACT_TYPE`], with the empty config and
//! the pack as its one layer), and `env unpack REGISTRY/REPOSITORY@sha256:...` fetches it back,
//! so that a cluster's nodes need a registry, not a shared filesystem.
//!
//! What a node fetches is named by the manifest's digest: the manifest is checked against it,
//! the pack against the digest the manifest names, and then, as for any pack, every file in it
//! against the lock the job names.

use std::path::Path;

use serde_json::json;

use crate::registry::{ImageRef, PushReport, Registry, RegistryError};
use crate::{canonical_json, Digest, MEDIA_MANIFEST};

/// The artifact type of a Terrarium pack.
pub const PACK_ARTIFACT_TYPE: &str = "application/vnd.terrarium.pack.v1";
/// The media type of the pack, the artifact's one layer.
pub const PACK_MEDIA_TYPE: &str = "application/vnd.terrarium.pack.v1.tar";
/// The OCI empty descriptor's media type and content (`{}`), the config of artifacts.
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
const EMPTY: &[u8] = b"{}";

/// A pushed pack: the artifact's reference by digest.
#[derive(Debug, Clone)]
pub struct PushedPack {
    /// `REGISTRY/REPOSITORY@sha256:...`.
    pub reference: String,
    pub manifest_digest: Digest,
    pub report: PushReport,
}

/// The artifact manifest of a pack whose file has `digest` and `size`; the same pack always
/// gives the same manifest (and digest).
pub fn pack_manifest(
    digest: &Digest,
    size: u64,
    title: &str,
    lock_hash: &str,
    platform: &str,
) -> Vec<u8> {
    canonical_json(&json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "artifactType": PACK_ARTIFACT_TYPE,
        "config": {
            "mediaType": EMPTY_MEDIA_TYPE,
            "digest": Digest::of(EMPTY).as_str(),
            "size": EMPTY.len(),
        },
        "layers": [{
            "mediaType": PACK_MEDIA_TYPE,
            "digest": digest.as_str(),
            "size": size,
            "annotations": { "org.opencontainers.image.title": title },
        }],
        "annotations": {
            "dev.terrarium.lock-hash": lock_hash,
            "dev.terrarium.platform": platform,
        },
    }))
}

/// Push the pack at `pack` to `target` (its tag, or `tag`), uploading only what the registry
/// lacks.
pub fn push_pack(
    pack: &Path,
    target: &ImageRef,
    tag: &str,
    lock_hash: &str,
    platform: &str,
    insecure: &[String],
) -> Result<PushedPack, RegistryError> {
    let io = |e: std::io::Error| RegistryError::Io(format!("{}: {e}", pack.display()));
    let size = std::fs::metadata(pack).map_err(io)?.len();
    let digest = file_digest(pack).map_err(io)?;
    // Named by what it holds, not by where it was written: the same pack, the same manifest.
    let hex = lock_hash.strip_prefix("sha256:").unwrap_or(lock_hash);
    let title = format!("{hex}-{platform}.tpack");
    let manifest = pack_manifest(&digest, size, &title, lock_hash, platform);
    let manifest_digest = Digest::of(&manifest);
    let mut registry = Registry::new(&target.registry, insecure)?;
    let repository = &target.repository;
    let mut report = PushReport::default();
    let empty = Digest::of(EMPTY);
    if registry.has_blob(repository, &empty)? {
        report.skipped_blobs += 1;
    } else {
        let staged = tempfile::NamedTempFile::new().map_err(io)?;
        std::fs::write(staged.path(), EMPTY).map_err(io)?;
        report.uploaded_bytes += registry.upload(repository, &empty, staged.path())?;
        report.uploaded_blobs += 1;
    }
    if registry.has_blob(repository, &digest)? {
        report.skipped_blobs += 1;
    } else {
        report.uploaded_bytes += registry.upload(repository, &digest, pack)?;
        report.uploaded_blobs += 1;
    }
    registry.put_manifest(repository, tag, &manifest)?;
    Ok(PushedPack {
        reference: format!("{}/{repository}@{manifest_digest}", target.registry),
        manifest_digest,
        report,
    })
}

/// Whether `text` names a pack in a registry by digest (`REGISTRY/REPOSITORY@sha256:...`)
/// rather than a file.
pub fn is_pack_reference(text: &str) -> bool {
    text.split_once('@')
        .is_some_and(|(name, digest)| digest.starts_with("sha256:") && name.contains('/'))
        && !Path::new(text).exists()
}

/// Fetch the pack `reference` names (`REGISTRY/REPOSITORY@sha256:...`) into `dest`: the
/// manifest is checked against the digest, the pack against the manifest's.
pub fn pull_pack(reference: &str, dest: &Path, insecure: &[String]) -> Result<(), RegistryError> {
    let bad = |why: &str| RegistryError::Reference(reference.to_string(), why.to_string());
    let (name, digest) = reference
        .split_once('@')
        .ok_or_else(|| bad("expected REGISTRY/REPOSITORY@sha256:..."))?;
    let target = ImageRef::parse(name)?;
    if target.tag.is_some() {
        return Err(bad("name the pack by digest only, without a tag"));
    }
    let expected: Digest = digest.parse()?;
    let mut registry = Registry::new(&target.registry, insecure)?;
    let (bytes, _, got) = registry.get_manifest(&target.repository, expected.as_str())?;
    if got != expected {
        return Err(bad("the registry answered with another manifest"));
    }
    let manifest: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| bad(&format!("its manifest is not JSON: {e}")))?;
    if manifest["artifactType"] != PACK_ARTIFACT_TYPE {
        return Err(bad(&format!(
            "it is not a Terrarium pack (artifactType {})",
            manifest["artifactType"]
        )));
    }
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    let [layer] = layers.as_slice() else {
        return Err(bad("a pack's manifest has exactly one layer"));
    };
    if layer["mediaType"] != PACK_MEDIA_TYPE {
        return Err(bad("its layer is not a pack"));
    }
    let layer_digest: Digest = layer["digest"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .map_err(|_| bad("its layer's digest is malformed"))?;
    let size = layer["size"]
        .as_u64()
        .ok_or_else(|| bad("its layer has no size"))?;
    registry.get_blob(&target.repository, &layer_digest, Some(size), dest)
}

/// The sha256 of a file, streamed.
fn file_digest(path: &Path) -> std::io::Result<Digest> {
    use sha2::{Digest as _, Sha256};
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(Digest::from_hasher(hasher))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_is_an_oci_artifact_and_stable() {
        let digest = Digest::of(b"pack");
        let a = pack_manifest(&digest, 4, "x.tpack", "sha256:ab", "linux-64");
        let b = pack_manifest(&digest, 4, "x.tpack", "sha256:ab", "linux-64");
        assert_eq!(a, b);
        let value: serde_json::Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(value["artifactType"], PACK_ARTIFACT_TYPE);
        assert_eq!(value["config"]["mediaType"], EMPTY_MEDIA_TYPE);
        assert_eq!(
            value["config"]["digest"],
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(value["layers"][0]["digest"], digest.as_str());
    }

    #[test]
    fn references_are_told_from_files() {
        assert!(is_pack_reference(
            "127.0.0.1:5000/packs@sha256:0000000000000000000000000000000000000000000000000000000000000000"
        ));
        assert!(!is_pack_reference("/tmp/x.tpack"));
        assert!(!is_pack_reference("x.tpack"));
    }
}
