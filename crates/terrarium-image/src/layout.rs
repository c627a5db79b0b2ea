//! The OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`), which umoci, skopeo,
//! podman and buildah read (`oci:DIR:TAG`).

use std::path::Path;

use serde_json::json;

use crate::{canonical_json, Digest, Image, ImageError, MEDIA_INDEX, MEDIA_MANIFEST};

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

/// Write the image as a `docker load` archive (`docker-archive:FILE` for skopeo): the blobs
/// under `blobs/sha256/` (the layers stay gzip-compressed, which `docker load` and skopeo read)
/// and a `manifest.json` naming the config, the layers and `repo_tag`. Deterministic, like the
/// layers: sorted entries, mtime 0, uid/gid 0.
pub fn write_docker_archive(
    image: &Image,
    blobs: &Path,
    file: &Path,
    repo_tag: &str,
) -> Result<(), ImageError> {
    let blob = |digest: &Digest| {
        digest
            .blob_path(Path::new("blobs/sha256"))
            .to_string_lossy()
            .into_owned()
    };
    let manifest = json!([{
        "Config": blob(&image.config_digest),
        "RepoTags": [repo_tag],
        "Layers": image.layers.iter().map(|l| blob(&l.digest)).collect::<Vec<_>>(),
    }]);
    let manifest = serde_json::to_vec(&manifest).expect("JSON values serialize");
    let parent = file.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| ImageError::io(parent, e))?;
    let staging = tempfile::NamedTempFile::new_in(parent).map_err(|e| ImageError::io(parent, e))?;
    {
        let mut tar = tar::Builder::new(std::io::BufWriter::new(staging.as_file()));
        let header = |size: u64, kind: tar::EntryType, mode: u32| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(size);
            h.set_mode(mode);
            h.set_mtime(0);
            h.set_uid(0);
            h.set_gid(0);
            h
        };
        let io = |e: std::io::Error| ImageError::io(file, e);
        for dir in ["blobs/", "blobs/sha256/"] {
            tar.append_data(
                &mut header(0, tar::EntryType::Directory, 0o755),
                dir,
                std::io::empty(),
            )
            .map_err(io)?;
        }
        let mut digests: Vec<&Digest> = image.layers.iter().map(|l| &l.digest).collect();
        digests.push(&image.config_digest);
        digests.sort();
        digests.dedup();
        for digest in digests {
            let path = digest.blob_path(blobs);
            let reader = std::fs::File::open(&path).map_err(|e| ImageError::io(&path, e))?;
            let size = reader
                .metadata()
                .map_err(|e| ImageError::io(&path, e))?
                .len();
            tar.append_data(
                &mut header(size, tar::EntryType::Regular, 0o644),
                blob(digest),
                reader,
            )
            .map_err(io)?;
        }
        tar.append_data(
            &mut header(manifest.len() as u64, tar::EntryType::Regular, 0o644),
            "manifest.json",
            manifest.as_slice(),
        )
        .map_err(io)?;
        tar.into_inner()
            .map_err(io)?
            .into_inner()
            .map_err(|e| io(e.into_error()))?;
    }
    staging
        .persist(file)
        .map_err(|e| ImageError::io(file, e.error))?;
    Ok(())
}
