//! The OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`), which umoci, skopeo,
//! podman and buildah read (`oci:DIR:TAG`).

use std::path::Path;

use serde_json::json;

use crate::{canonical_json, Image, ImageError, MEDIA_INDEX, MEDIA_MANIFEST};

/// The directory that [`crate::build`] writes blobs into, for a layout at `dir`.
pub fn blobs_dir(dir: &Path) -> std::path::PathBuf {
    dir.join("blobs").join("sha256")
}

/// Write `oci-layout` and an `index.json` naming the image `tag`.
pub fn write_index(dir: &Path, image: &Image, tag: &str) -> Result<(), ImageError> {
    std::fs::create_dir_all(dir).map_err(|e| ImageError::io(dir, e))?;
    let layout = dir.join("oci-layout");
    std::fs::write(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)
        .map_err(|e| ImageError::io(&layout, e))?;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [{
            "mediaType": MEDIA_MANIFEST,
            "digest": image.manifest_digest,
            "size": image.manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    let path = dir.join("index.json");
    std::fs::write(&path, canonical_json(&index)).map_err(|e| ImageError::io(&path, e))
}
